#!/usr/bin/env python3
"""Consumer groups through confluent-kafka (librdkafka).

    groups.py commit BOOTSTRAP GROUP TOPIC:PARTITION=OFFSET ...   commit offsets for an idle group
    groups.py read BOOTSTRAP GROUP OUT TOPIC [TOPIC ...]          read, as member of GROUP, from its
        committed offsets to the end of every partition; JSON lines as consume.py
    groups.py describe BOOTSTRAP TOPIC                             {"partitions": N, "configs": {...}}
        (every config the broker reports for the topic, with its value)
"""
import base64
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def consumer(bootstrap, group):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 10,
        "auto.offset.reset": "earliest",
    })


def commit(bootstrap, group, specs):
    c = consumer(bootstrap, group)
    offsets = []
    for spec in specs:
        tp, offset = spec.split("=")
        topic, partition = tp.rsplit(":", 1)
        offsets.append(TopicPartition(topic, int(partition), int(offset)))
    c.commit(offsets=offsets, asynchronous=False)
    c.close()


def read(bootstrap, group, out, topics):
    c = consumer(bootstrap, group)
    md = c.list_topics(timeout=30)
    tps = [TopicPartition(t, p) for t in topics for p in md.topics[t].partitions]
    committed = c.committed(tps, timeout=30)
    assignments = []
    for tp in committed:
        low, _ = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)
        start = tp.offset if tp.offset >= 0 else low
        assignments.append(TopicPartition(tp.topic, tp.partition, start))
    c.assign(assignments)
    pending = {(tp.topic, tp.partition) for tp in assignments}
    # ListOffsets(latest) can be wrong (tansu), and a partition whose committed offset is its
    # end may never get a fetch response to learn the end from: a partition idle for 5 s whose
    # position is at or past what ListOffsets says is finished too.
    listed_high = {}
    for tp in assignments:
        listed_high[(tp.topic, tp.partition)] = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)[1]
    last_message = {key: time.monotonic() for key in pending}
    starts = {(tp.topic, tp.partition): tp.offset for tp in assignments}
    rows = []
    deadline = time.monotonic() + 120
    while pending:
        if time.monotonic() > deadline:
            sys.exit(f"read: no progress to the end of {sorted(pending)} within 120 s")
        msg = c.poll(0.2)
        if msg is not None:
            if msg.error():
                raise KafkaException(msg.error())
            rows.append([msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1], b64(msg.key()), b64(msg.value()),
                         [[b64(k.encode()), b64(v)] for k, v in (msg.headers() or [])]])
            last_message[(msg.topic(), msg.partition())] = time.monotonic()
            if len(rows) % 1000 != 0:
                continue
        for tp in c.position([TopicPartition(t, p) for (t, p) in pending]):
            _, high = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
            key = (tp.topic, tp.partition)
            if high is not None and high >= 0 and tp.offset >= 0 and tp.offset >= high:
                pending.discard(key)
            elif time.monotonic() - last_message[key] > 5 and (tp.offset if tp.offset >= 0 else starts[key]) >= listed_high[key]:
                pending.discard(key)
    c.close()
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    with open(out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def describe(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(timeout=30)
    partitions = len(md.topics[topic].partitions)
    res = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])
    configs = {}
    for _, future in res.items():
        for name, entry in future.result().items():
            if entry.value is not None:
                configs[name] = entry.value
    print(json.dumps({"partitions": partitions, "configs": configs}))


def main():
    mode = sys.argv[1]
    if mode == "commit":
        commit(sys.argv[2], sys.argv[3], sys.argv[4:])
    elif mode == "read":
        read(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    elif mode == "describe":
        describe(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
