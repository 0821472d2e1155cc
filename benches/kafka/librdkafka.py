#!/usr/bin/env python3
"""The librdkafka (confluent-kafka) side of `cargo bench -p kbs-benches --bench kafka`.

    librdkafka.py seed    BOOTSTRAP TOPIC PARTITIONS COUNT VALUE_BYTES
    librdkafka.py consume BOOTSTRAP TOPIC PARTITIONS COUNT
    librdkafka.py produce BOOTSTRAP TOPIC PARTITIONS COUNT VALUE_BYTES

seed writes COUNT records (key `key-N`, VALUE_BYTES-byte value, round-robin over partitions);
consume reads COUNT records from the beginning (fetch.wait.max.ms=10); produce writes like
seed with an idempotent producer (acks=all). consume and produce print one JSON object:
{"records": N, "bytes": key+value bytes, "seconds": wall time from client creation to done}.
"""
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition


def value_of(i, size):
    base = (f"{i:010d}" + "kbs-bench-" * 8).encode()
    return (base * (size // len(base) + 1))[:size]


def produce(bootstrap, topic, partitions, count, size, idempotent):
    start = time.perf_counter()
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": idempotent,
        "acks": "all",
        "linger.ms": 5,
        "batch.size": 1 << 20,
        "batch.num.messages": 100000,
        "queue.buffering.max.kbytes": 1 << 20,
        "compression.type": "none",
    })
    nbytes = 0
    for i in range(count):
        key = f"key-{i}".encode()
        value = value_of(i, size)
        nbytes += len(key) + len(value)
        while True:
            try:
                producer.produce(topic, value=value, key=key, partition=i % partitions)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(120) != 0:
        sys.exit("produce did not complete")
    return {"records": count, "bytes": nbytes, "seconds": time.perf_counter() - start}


def consume(bootstrap, topic, partitions, count):
    start = time.perf_counter()
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "kbs-bench",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 10,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    records = 0
    nbytes = 0
    deadline = time.time() + 300
    while records < count and time.time() < deadline:
        for msg in consumer.consume(num_messages=10000, timeout=0.5):
            if msg.error():
                sys.exit(f"consume failed: {msg.error()}")
            records += 1
            nbytes += len(msg.key() or b"") + len(msg.value() or b"")
    seconds = time.perf_counter() - start
    consumer.close()
    if records < count:
        sys.exit(f"read {records} of {count} records")
    return {"records": records, "bytes": nbytes, "seconds": seconds}


def main():
    mode, bootstrap, topic, partitions, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    if mode == "seed":
        produce(bootstrap, topic, partitions, count, int(sys.argv[6]), False)
    elif mode == "produce":
        print(json.dumps(produce(bootstrap, topic, partitions, count, int(sys.argv[6]), True)))
    elif mode == "consume":
        print(json.dumps(consume(bootstrap, topic, partitions, count)))
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
