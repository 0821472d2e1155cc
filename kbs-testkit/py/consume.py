#!/usr/bin/env python3
"""Reads whole topics with a confluent-kafka (librdkafka) consumer, read_committed, from each
partition's low to high watermark, and writes one JSON line per record:

    [topic, partition, offset, timestamp, key, value, [[header_key, header_value], ...], timestamp_type]

bytes as base64, null as null, timestamp_type 1 for CreateTime and 2 for LogAppendTime, sorted by
topic, partition, offset. Fails if the topics are not read within DEADLINE_S seconds.

    consume.py BOOTSTRAP OUT TOPIC [TOPIC ...]
"""
import base64
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition, KafkaException

DEADLINE_S = 300


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def main():
    bootstrap, out, topics = sys.argv[1], sys.argv[2], sys.argv[3:]
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "kbs-test-reader",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 10,
        "enable.partition.eof": False,
        "fetch.message.max.bytes": 16 * 1024 * 1024,
        "receive.message.max.bytes": 64 * 1024 * 1024,
    })
    md = c.list_topics(timeout=30)
    assignments, ends = [], {}
    for t in topics:
        if t not in md.topics:
            sys.exit(f"no topic {t}")
        for p in md.topics[t].partitions:
            low, high = c.get_watermark_offsets(TopicPartition(t, p), timeout=30)
            if high > low:
                assignments.append(TopicPartition(t, p, low))
                ends[(t, p)] = high
    rows = []
    if assignments:
        c.assign(assignments)
        # A partition is finished when the consumer's position reaches the high watermark of the
        # latest fetch response (librdkafka's cached watermark): records written while it reads
        # are read too, and transaction markers at the end are stepped over.
        pending = dict(ends)
        deadline = time.monotonic() + DEADLINE_S
        while pending:
            if time.monotonic() > deadline:
                sys.exit(f"read {len(rows)} records; partitions not read to the end within {DEADLINE_S} s: {sorted(pending)}")
            msg = c.poll(0.2)
            if msg is not None:
                if msg.error():
                    raise KafkaException(msg.error())
                headers = msg.headers() or []
                timestamp_type, timestamp = msg.timestamp()
                rows.append([msg.topic(), msg.partition(), msg.offset(), timestamp, b64(msg.key()),
                             b64(msg.value()), [[b64(k.encode()), b64(v)] for k, v in headers], timestamp_type])
                if len(rows) % 1000 != 0:
                    continue
            tps = [TopicPartition(t, p) for (t, p) in pending]
            for tp in c.position(tps):
                key = (tp.topic, tp.partition)
                _, cached_high = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
                if cached_high is None or cached_high < 0:
                    continue
                if tp.offset >= 0 and tp.offset >= cached_high:
                    del pending[key]
    c.close()
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    with open(out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
