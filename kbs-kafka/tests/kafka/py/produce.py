#!/usr/bin/env python3
"""Produces records with confluent-kafka (librdkafka), the independent client of the kbs-kafka
tests, and writes what was delivered as JSON lines in the layout of kbs-testkit's consume.py:

    [topic, partition, offset, timestamp, key, value, [[header_key, header_value], ...], 1]

bytes as base64 strings, null as null, 1 for CreateTime; sorted by partition and offset.

    produce.py BOOTSTRAP TOPIC OUT --mode fixture --compression gzip [--idempotent]
    produce.py BOOTSTRAP TOPIC OUT --mode bulk --partition-codecs none,gzip,snappy,lz4,zstd --count 20000

fixture: a few batches of hand-picked edge cases into partition 0 (duplicate and null headers,
tombstones, null vs empty keys and values, binary and UTF-8 bytes, a value spanning several
LZ4 blocks, with --big). bulk: COUNT pseudo-random records per partition, partition i written by a
producer using the i-th codec.
"""
import argparse
import base64
import json
import random
import sys

from confluent_kafka import Producer

T0 = 1_700_000_000_000
CREATE_TIME = 1  # confluent_kafka.TIMESTAMP_CREATE_TIME


def b64(b):
    return None if b is None else base64.b64encode(b).decode()


def fixture_batches(big):
    first = [
        (b"user-1", b'{"n":1}', [("trace", b"a"), ("trace", b"b"), ("null", None)], T0),
        (None, b"no key", [], T0 + 1),
        (b"", b"", [("", b"")], T0 + 2),
        (b"tomb", None, [("reason", None)], T0 + 3),
        (bytes(range(256)), bytes(range(255, -1, -1)), [("bin", bytes([0, 255, 0]))], T0 - 5000),
        ("ключ".encode(), "значение ✓".encode(), [("ключ", b"v"), ("ключ", None), ("ключ", b"v")], T0 + 10),
        # Compressible, so librdkafka really compresses this batch (it sends a batch
        # uncompressed when compression does not make it smaller).
        (b"text", b"kafka backup and restore " * 40, [("trace", b"a"), ("trace", None)], T0 + 4),
    ]
    # 67,200 bytes: more than one 64 KiB LZ4 frame block (only with --big, to keep fixtures small).
    second = [(b"big", b"0123456789abcdef" * 4200, [("size", b"67200")], T0 + 11)] if big else [(b"small", b"x", [], T0 + 11)]
    rng = random.Random(5)
    third = []
    for i in range(40):
        key = None if i % 7 == 0 else f"k{i}".encode()
        value = None if i % 11 == 0 else bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        headers = [(rng.choice(["a", "b", "a"]), None if rng.random() < 0.2 else f"v{j}".encode()) for j in range(rng.randrange(0, 4))]
        third.append((key, value, headers, T0 + 100 + i * 3 - (i % 5)))
    return [first, second, third]


def bulk_records(partition, count):
    rng = random.Random(1000 + partition)
    words = [b"order", b"created", b"shipped", b"customer", b"premium", b"berlin", b"lisbon", b"express"]
    for i in range(count):
        r = rng.random()
        key = None if r < 0.08 else (b"" if r < 0.12 else f"user-{rng.randrange(100000)}".encode())
        r = rng.random()
        if r < 0.04:
            value = None
        elif r < 0.07:
            value = b""
        elif r < 0.5:
            value = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))
        else:
            value = b" ".join(rng.choice(words) for _ in range(rng.randrange(5, 200)))
        headers = []
        for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
            headers.append((rng.choice(["trace", "type", "trace", "ünï"]), None if rng.random() < 0.15 else rng.randbytes(rng.randrange(0, 20))))
        ts = T0 + i * 7 + rng.randrange(-3, 4)
        yield key, value, headers, ts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bootstrap")
    p.add_argument("topic")
    p.add_argument("out")
    p.add_argument("--mode", choices=["fixture", "bulk"], required=True)
    p.add_argument("--compression", default="none")
    p.add_argument("--idempotent", action="store_true")
    p.add_argument("--big", action="store_true", help="fixture mode: include a 67,200-byte value")
    p.add_argument("--partition-codecs", default="none")
    p.add_argument("--count", type=int, default=1000)
    args = p.parse_args()

    delivered = []
    errors = []

    def report(record, partition):
        def callback(err, msg):
            if err is not None:
                errors.append(str(err))
            else:
                key, value, headers, ts = record
                delivered.append([args.topic, partition, msg.offset(), ts, b64(key), b64(value),
                                  [[b64(k.encode()), b64(v)] for k, v in headers], CREATE_TIME])
        return callback

    def producer(codec):
        return Producer({
            "bootstrap.servers": args.bootstrap,
            "compression.type": codec,
            "enable.idempotence": args.idempotent,
            "acks": "all",
            "linger.ms": 20,
            "batch.num.messages": 2000,
            "message.max.bytes": 4 * 1024 * 1024,
        })

    def send(prod, partition, record):
        key, value, headers, ts = record
        while True:
            try:
                prod.produce(args.topic, value=value, key=key, partition=partition, headers=headers, timestamp=ts,
                             on_delivery=report(record, partition))
                break
            except BufferError:
                prod.poll(0.05)
        prod.poll(0)

    if args.mode == "fixture":
        prod = producer(args.compression)
        for batch in fixture_batches(args.big):
            for record in batch:
                send(prod, 0, record)
            prod.flush(30)
    else:
        codecs = args.partition_codecs.split(",")
        producers = [producer(c) for c in codecs]
        generators = [bulk_records(p, args.count) for p in range(len(codecs))]
        for _ in range(args.count):
            for p, gen in enumerate(generators):
                send(producers[p], p, next(gen))
        for prod in producers:
            prod.flush(60)

    if errors:
        sys.exit(f"delivery failed: {errors[:5]}")
    delivered.sort(key=lambda r: (r[1], r[2]))
    with open(args.out, "w") as f:
        for r in delivered:
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
