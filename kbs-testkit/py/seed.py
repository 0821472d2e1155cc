#!/usr/bin/env python3
"""Seeds a broker with data through confluent-kafka (librdkafka), the independent client.

    seed.py BOOTSTRAP varied [--scale N]     the varied dataset of the backup/restore tests
    seed.py BOOTSTRAP simple TOPIC COUNT PARTITIONS [--value-size N] [--codec lz4] [--start-ts MS] [--ts-step MS]
    seed.py BOOTSTRAP compacted TOPIC COUNT PARTITIONS [--keys N] [--round R] [--no-create]
        a compacted topic (cleanup.policy=compact, segments rolled after 100 ms, min.cleanable.dirty.ratio
        0.01, tombstones kept 1 s): COUNT records over N keys (key-<i % N>), every seventh a tombstone;
        values name the round R so that later rounds supersede earlier ones
    seed.py BOOTSTRAP keyed TOPIC COUNT PARTITIONS [--keys N] [--value-size B]
        a keyed topic as real producers fill it: keyed records placed by librdkafka's murmur2_random
        partitioner (so each key lives in one partition), over N keys (2000), with records without a
        key (about 15 %, spread over the partitions), empty keys, tombstones, headers and
        out-of-order timestamps; each keyed value starts with "<key>#<n>", the key's n-th record,
        followed by up to B random bytes (120)

varied: 12 topics, every one with 3 or more partitions, over 200k records at --scale 1:
  v-none, v-gzip, v-snappy, v-lz4, v-zstd  one producer codec each
  v-mixed       keys and null keys, tombstones, empty values and keys, duplicate and null
                headers, out-of-order timestamps (explicit CreateTime)
  v-large       values near 1 MB
  v-compacted   cleanup.policy=compact, repeated keys
  v-idempotent  an idempotent producer
  v-headers     many headers per record, binary header values
  v-binary      arbitrary binary keys and values
  v-empty       no records at all
Prints one JSON line: {"topics": {...: partitions}, "records": N}.
"""
import argparse
import json
import random
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

# The datasets' CreateTime base: the start of the hour one day ago, so that topics with a
# retention.ms of days (v-headers has 7) keep every record on a real broker, before and after a
# restore. (A fixed date would age past the retention and the broker would delete the records.)
T0 = (int(time.time()) // 3600 - 24) * 3600 * 1000


def create(bootstrap, topics):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=parts, replication_factor=-1, config=config)
                                   for name, parts, config in topics])
    for name, future in futures.items():
        try:
            future.result()
        except Exception as e:  # an existing topic is fine for reruns
            if "TOPIC_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
                raise


def producer(bootstrap, codec="none", idempotent=False):
    return Producer({
        "bootstrap.servers": bootstrap,
        "compression.type": codec,
        "enable.idempotence": idempotent,
        "acks": "all",
        "linger.ms": 10,
        "batch.num.messages": 5000,
        "message.max.bytes": 8 * 1024 * 1024,
        "queue.buffering.max.kbytes": 512 * 1024,
    })


class Sender:
    def __init__(self, prod):
        self.prod = prod
        self.errors = []
        self.count = 0

    def cb(self, err, msg):
        if err is not None:
            self.errors.append(str(err))

    def send(self, topic, partition, key, value, headers=None, ts=None):
        kwargs = {"key": key, "value": value, "partition": partition, "on_delivery": self.cb}
        if headers:
            kwargs["headers"] = headers
        if ts is not None:
            kwargs["timestamp"] = ts
        while True:
            try:
                self.prod.produce(topic, **kwargs)
                break
            except BufferError:
                self.prod.poll(0.05)
        self.count += 1
        if self.count % 5000 == 0:
            self.prod.poll(0)

    def finish(self):
        remaining = self.prod.flush(60)
        if remaining or self.errors:
            sys.exit(f"delivery failed: {remaining} undelivered, errors {self.errors[:5]}")


def varied(bootstrap, scale):
    parts = 3
    n = 30000 * scale  # per codec topic
    topics = [(f"v-{c}", parts, {}) for c in ["none", "gzip", "snappy", "lz4", "zstd"]]
    topics += [("v-mixed", 4, {}), ("v-large", parts, {"max.message.bytes": str(8 * 1024 * 1024)}),
               ("v-compacted", parts, {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.5"}),
               ("v-idempotent", parts, {}), ("v-headers", parts, {"retention.ms": "604800000"}),
               ("v-binary", parts, {}), ("v-empty", parts, {})]
    create(bootstrap, topics)
    total = 0
    words = [b"order", b"created", b"shipped", b"customer", b"premium", b"berlin", b"lisbon", b"express"]
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        rng = random.Random(codec)
        s = Sender(producer(bootstrap, codec))
        for i in range(n):
            value = b" ".join(rng.choice(words) for _ in range(rng.randrange(3, 60)))
            s.send(f"v-{codec}", i % parts, f"k{i}".encode(), value, [("codec", codec.encode())], T0 + i)
        s.finish()
        total += n
    rng = random.Random(7)
    s = Sender(producer(bootstrap, "lz4"))
    for i in range(20000 * scale):
        r = rng.random()
        key = None if r < 0.2 else (b"" if r < 0.25 else f"user-{rng.randrange(1000)}".encode())
        r = rng.random()
        value = None if r < 0.1 else (b"" if r < 0.2 else rng.randbytes(rng.randrange(1, 300)))
        headers = []
        for _ in range(rng.choice([0, 1, 2, 3])):
            headers.append((rng.choice(["dup", "dup", "n", "ünï"]), None if rng.random() < 0.3 else rng.randbytes(rng.randrange(0, 8))))
        ts = T0 + i * 10 + rng.randrange(-5000, 5000)  # out of order
        s.send("v-mixed", i % 4, key, value, headers, ts)
    s.finish()
    total += 20000 * scale
    s = Sender(producer(bootstrap, "zstd"))
    for i in range(6):
        size = 1_000_000 - rng.randrange(0, 60_000)
        s.send("v-large", i % parts, f"big{i}".encode(), rng.randbytes(size // 4) * 4, [("size", str(size).encode())], T0 + i)
    s.finish()
    total += 6
    s = Sender(producer(bootstrap, "snappy"))
    for i in range(5000 * scale):
        s.send("v-compacted", i % parts, f"key-{i % 500}".encode(), None if i % 97 == 0 else f"state-{i}".encode(), None, T0 + i)
    s.finish()
    total += 5000 * scale
    s = Sender(producer(bootstrap, "gzip", idempotent=True))
    for i in range(10000 * scale):
        s.send("v-idempotent", i % parts, f"id-{i}".encode(), f"payload-{i}".encode() * 3, [("seq", str(i).encode())], T0 + i)
    s.finish()
    total += 10000 * scale
    s = Sender(producer(bootstrap, "none"))
    for i in range(10000 * scale):
        headers = [(f"h{j % 3}", None if j % 4 == 3 else rng.randbytes(j)) for j in range(rng.randrange(0, 12))]
        s.send("v-headers", i % parts, None, f"{i}".encode(), headers, T0 - i)
    s.finish()
    total += 10000 * scale
    s = Sender(producer(bootstrap, "lz4"))
    for i in range(10000 * scale):
        s.send("v-binary", i % parts, rng.randbytes(rng.randrange(0, 40)), rng.randbytes(rng.randrange(0, 2000)), None, T0 + i)
    s.finish()
    total += 10000 * scale
    print(json.dumps({"topics": {name: p for name, p, _ in topics}, "records": total}))


def simple(bootstrap, topic, count, partitions, value_size, codec, start_ts, ts_step, create_topic):
    if create_topic:
        create(bootstrap, [(topic, partitions, {})])
    rng = random.Random(topic)
    s = Sender(producer(bootstrap, codec))
    for i in range(count):
        value = (f"{i}:".encode() + rng.randbytes(8).hex().encode() * (value_size // 16 + 1))[:value_size]
        ts = None if start_ts is None else start_ts + i * ts_step
        s.send(topic, i % partitions, f"key-{i}".encode(), value, [("i", str(i).encode())], ts)
    s.finish()
    print(json.dumps({"topic": topic, "records": count}))


def compacted(bootstrap, topic, count, partitions, keys, round_, create_topic):
    if create_topic:
        create(bootstrap, [(topic, partitions, {"cleanup.policy": "compact", "segment.ms": "100",
                                                "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1000",
                                                "min.compaction.lag.ms": "0"})])
    s = Sender(producer(bootstrap, "lz4"))
    for i in range(count):
        key = f"key-{i % keys}".encode()
        value = None if i % 7 == 3 else f"round {round_} record {i}".encode() * 4
        s.send(topic, i % partitions, key, value, [("round", str(round_).encode())])
    s.finish()
    print(json.dumps({"topic": topic, "records": count}))


def keyed(bootstrap, topic, count, partitions, keys, value_size):
    create(bootstrap, [(topic, partitions, {})])
    rng = random.Random(f"keyed-{topic}")
    prod = Producer({
        "bootstrap.servers": bootstrap,
        "partitioner": "murmur2_random",
        "compression.type": "lz4",
        "acks": "all",
        # Keeps each partition in production order even when a batch is retried (a new
        # topic's first batches may meet a leader not yet ready): the tests derive offsets,
        # and merge orders by timestamp, from that order.
        "enable.idempotence": True,
        "linger.ms": 10,
        "batch.num.messages": 5000,
        "queue.buffering.max.kbytes": 512 * 1024,
    })
    s = Sender(prod)
    seen = {}
    for i in range(count):
        r = rng.random()
        key = None if r < 0.15 else (b"" if r < 0.17 else f"user-{rng.randrange(keys)}".encode())
        n = seen.get(key, 0)
        seen[key] = n + 1
        if key is not None and rng.random() < 0.05:
            value = None  # a tombstone
        else:
            prefix = b"" if key is None else key + b"#" + str(n).encode() + b" "
            value = prefix + rng.randbytes(rng.randrange(0, value_size + 1))
        headers = [("n", str(i).encode())] + ([("dup", None), ("dup", b"x")] if i % 11 == 0 else [])
        ts = T0 + i * 10 + rng.randrange(-3000, 3000)  # out of order
        # Records without a key go to an explicit partition (librdkafka would pick one at random).
        partition = i % partitions if key is None else -1
        kwargs = {"key": key, "value": value, "headers": headers, "timestamp": ts, "on_delivery": s.cb}
        if partition >= 0:
            kwargs["partition"] = partition
        while True:
            try:
                prod.produce(topic, **kwargs)
                break
            except BufferError:
                prod.poll(0.05)
        s.count += 1
        if s.count % 5000 == 0:
            prod.poll(0)
    s.finish()
    print(json.dumps({"topic": topic, "records": count}))


def wide(bootstrap, topics, partitions, records):
    """`topics` topics w-00.. of `partitions` partitions, unevenly filled: topic i holds about
    `records` * (i + 1) / sum records of its own value size (2**(i % 7) * 16 bytes at most),
    null, empty and binary keys, headers, tombstones; the last partition of the last topic stays
    empty. Records go to explicit partitions, so every partition's offsets are known."""
    names = [f"w-{i:02}" for i in range(topics)]
    create(bootstrap, [(name, partitions, {}) for name in names])
    weight_sum = sum(range(1, topics + 1))
    total = 0
    for i, name in enumerate(names):
        rng = random.Random(name)
        s = Sender(producer(bootstrap, ["none", "lz4", "zstd", "gzip", "snappy"][i % 5]))
        count = records * (i + 1) // weight_sum
        max_size = 2 ** (i % 7) * 16
        usable = partitions - 1 if i == topics - 1 else partitions
        for n in range(count):
            r = rng.random()
            key = None if r < 0.1 else (b"" if r < 0.12 else rng.randbytes(rng.randrange(1, 24)))
            value = None if rng.random() < 0.03 else rng.randbytes(rng.randrange(0, max_size + 1))
            headers = [("n", str(n).encode())] + ([("dup", None), ("dup", b"")] if n % 13 == 0 else [])
            # Skewed: partition 0 gets about a third of a topic's records.
            partition = 0 if rng.random() < 0.3 else rng.randrange(usable)
            s.send(name, partition, key, value, headers, T0 + n)
        s.finish()
        total += count
    print(json.dumps({"topics": names, "records": total}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("bootstrap")
    sub = p.add_subparsers(dest="mode", required=True)
    v = sub.add_parser("varied")
    v.add_argument("--scale", type=int, default=1)
    s = sub.add_parser("simple")
    s.add_argument("topic")
    s.add_argument("count", type=int)
    s.add_argument("partitions", type=int)
    s.add_argument("--value-size", type=int, default=100)
    s.add_argument("--codec", default="none")
    s.add_argument("--start-ts", type=int)
    s.add_argument("--ts-step", type=int, default=1)
    s.add_argument("--no-create", action="store_true")
    c = sub.add_parser("compacted")
    c.add_argument("topic")
    c.add_argument("count", type=int)
    c.add_argument("partitions", type=int)
    c.add_argument("--keys", type=int, default=500)
    c.add_argument("--round", type=int, default=0)
    c.add_argument("--no-create", action="store_true")
    k = sub.add_parser("keyed")
    k.add_argument("topic")
    k.add_argument("count", type=int)
    k.add_argument("partitions", type=int)
    k.add_argument("--keys", type=int, default=2000)
    k.add_argument("--value-size", type=int, default=120)
    w = sub.add_parser("wide")
    w.add_argument("--topics", type=int, default=12)
    w.add_argument("--partitions", type=int, default=8)
    w.add_argument("--records", type=int, default=60000)
    args = p.parse_args()
    if args.mode == "wide":
        wide(args.bootstrap, args.topics, args.partitions, args.records)
    elif args.mode == "keyed":
        keyed(args.bootstrap, args.topic, args.count, args.partitions, args.keys, args.value_size)
    elif args.mode == "varied":
        varied(args.bootstrap, args.scale)
    elif args.mode == "compacted":
        compacted(args.bootstrap, args.topic, args.count, args.partitions, args.keys, args.round, not args.no_create)
    else:
        simple(args.bootstrap, args.topic, args.count, args.partitions, args.value_size, args.codec, args.start_ts,
               args.ts_step, not args.no_create)


if __name__ == "__main__":
    main()
