#!/usr/bin/env python3
"""Reads partitions from the beginning with a confluent-kafka consumer (librdkafka) and writes
the records as JSON lines:

    [partition, offset, timestamp_type, timestamp, key, value, [[header_key, header_value], ...]]

bytes as base64, null as null, sorted by partition and offset. Stops after COUNT records.

    consume.py BOOTSTRAP TOPIC PARTITIONS COUNT OUT
"""
import base64
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def main():
    bootstrap, topic, partitions, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "kbs-test-reader",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "fetch.wait.max.ms": 10,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    records = []
    deadline = time.time() + 60
    while len(records) < count and time.time() < deadline:
        for msg in consumer.consume(num_messages=10000, timeout=0.5):
            if msg.error():
                sys.exit(f"consume failed: {msg.error()}")
            ts_type, ts = msg.timestamp()
            headers = msg.headers() or []
            records.append([msg.partition(), msg.offset(), ts_type, ts, b64(msg.key()), b64(msg.value()),
                            [[b64(k.encode()), b64(v)] for k, v in headers]])
    consumer.close()
    if len(records) < count:
        sys.exit(f"read {len(records)} of {count} records before the deadline")
    records.sort(key=lambda r: (r[0], r[1]))
    with open(out, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
