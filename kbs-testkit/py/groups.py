#!/usr/bin/env python3
"""Consumer groups through confluent-kafka (librdkafka).

    groups.py commit BOOTSTRAP GROUP TOPIC:PARTITION=OFFSET ...   commit offsets for an idle group
    groups.py read BOOTSTRAP GROUP OUT TOPIC [TOPIC ...]          read, as member of GROUP, from its
        committed offsets to the end of every partition; JSON lines as consume.py
    groups.py describe BOOTSTRAP TOPIC                             {"partitions": N, "configs": {...}}
        (every config the broker reports for the topic, with its value)
    groups.py member-commit BOOTSTRAP GROUP PROTOCOL TOPIC TOPIC:PARTITION=OFFSET ...
        join GROUP as a subscribed member of TOPIC with group.protocol PROTOCOL (classic, or
        consumer for KIP-848), wait for every partition to be assigned, commit the offsets, leave
    groups.py member-read BOOTSTRAP GROUP PROTOCOL OUT TOPIC
        read TOPIC as a subscribed member of GROUP from its committed offsets to the end of every
        partition; JSON lines as consume.py
"""
import base64
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def consumer(bootstrap, group, protocol=None):
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 10,
        "auto.offset.reset": "earliest",
    }
    if protocol is not None:
        config["group.protocol"] = protocol
    return Consumer(config)


def row(msg):
    return [msg.topic(), msg.partition(), msg.offset(), msg.timestamp()[1], b64(msg.key()), b64(msg.value()),
            [[b64(k.encode()), b64(v)] for k, v in (msg.headers() or [])]]


def join(c, topic, deadline_s=60):
    """Subscribes to `topic` and polls until every partition of it is assigned to `c`; returns
    the partitions and the rows of the records polled meanwhile."""
    partitions = set(c.list_topics(topic, timeout=30).topics[topic].partitions)
    c.subscribe([topic])
    deadline = time.monotonic() + deadline_s
    rows = []
    while {tp.partition for tp in c.assignment()} != partitions:
        if time.monotonic() > deadline:
            sys.exit(f"not assigned every partition of {topic} within {deadline_s} s: {c.assignment()}")
        msg = c.poll(0.1)
        if msg is not None:
            if msg.error():
                raise KafkaException(msg.error())
            rows.append(row(msg))
    return partitions, rows


def member_commit(bootstrap, group, protocol, topic, specs):
    c = consumer(bootstrap, group, protocol)
    join(c, topic)  # records polled while joining do not matter: the offsets are explicit
    offsets = []
    for spec in specs:
        tp, offset = spec.split("=")
        t, partition = tp.rsplit(":", 1)
        offsets.append(TopicPartition(t, int(partition), int(offset)))
    c.commit(offsets=offsets, asynchronous=False)
    c.close()


def member_read(bootstrap, group, protocol, out, topic):
    c = consumer(bootstrap, group, protocol)
    partitions, rows = join(c, topic)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}
    committed = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in partitions], timeout=30)}
    pending = set(partitions)
    deadline = time.monotonic() + 120
    while pending:
        if time.monotonic() > deadline:
            sys.exit(f"member-read: partitions {sorted(pending)} of {topic} not read to the end within 120 s")
        for tp in c.position([TopicPartition(topic, p) for p in pending]):
            position = tp.offset if tp.offset >= 0 else committed.get(tp.partition, -1)
            if position >= ends[tp.partition]:
                pending.discard(tp.partition)
        if not pending:
            break
        msg = c.poll(0.2)
        if msg is not None:
            if msg.error():
                raise KafkaException(msg.error())
            rows.append(row(msg))
    c.close()
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    with open(out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


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
    ends = {(tp.topic, tp.partition): c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)[1]
            for tp in assignments}
    starts = {(tp.topic, tp.partition): tp.offset for tp in assignments}
    pending = {key for key in ends if starts[key] < ends[key]}
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
        for tp in c.position([TopicPartition(t, p) for (t, p) in pending]):
            if tp.offset >= 0 and tp.offset >= ends[(tp.topic, tp.partition)]:
                pending.discard((tp.topic, tp.partition))
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
    elif mode == "member-commit":
        member_commit(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
    elif mode == "member-read":
        member_read(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
