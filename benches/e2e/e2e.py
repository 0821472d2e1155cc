#!/usr/bin/env python3
"""The confluent-kafka (librdkafka) side of benches/e2e/run.sh, plus its small utilities.

    e2e.py port                                   print a free loopback TCP port
    e2e.py wait     BOOTSTRAP [--timeout S]       poll until the broker answers Metadata
    e2e.py seed     BOOTSTRAP TOPIC --partitions P --records N --value-bytes B [--codec C]
    e2e.py consume  BOOTSTRAP TOPIC               read the whole topic, discard it
    e2e.py produce  BOOTSTRAP TOPIC --partitions P --records N --value-bytes B [--codec C]
                                                  (creates TOPIC and TOPIC-warmup; idempotent, acks=all)
    e2e.py count    BOOTSTRAP TOPIC               records and key+value bytes of a topic
    e2e.py measure  OUT_JSON -- COMMAND [ARG...]  run COMMAND, write its wall time, peak RSS, CPU
    e2e.py table    RESULTS_JSONL                 markdown tables (medians) of the measurements

seed, consume, produce and count print one JSON object on stdout:
{"records": N, "bytes": key+value bytes, "seconds": timed part, "rss_kb": this process's peak RSS,
"cpu_s": CPU seconds of the process (all threads) during the timed part}.

The records (seed and produce write the same ones): key `user-NNNNN` (small, repeating), a
JSON-ish value of exactly B bytes (an event with an id, a timestamp, a user, an amount and a
text note drawn from a word list, so it compresses like real JSON), two headers
(`source`, `trace-id`), round-robin over the partitions.
"""
import argparse
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

WORDS = ("order created shipped delivered customer premium berlin lisbon express payment refund warehouse "
         "invoice pending cancelled priority standard returned gift card discount coupon europe north south "
         "mobile web checkout basket item quantity price currency eur usd note customer-service").split()
EVENTS = ["order_created", "order_paid", "order_shipped", "order_delivered", "order_cancelled", "refund_issued"]


class Records:
    """Deterministic records: record i is the same in every process."""

    def __init__(self, value_bytes):
        rng = random.Random(20251121)
        self.corpus = " ".join(rng.choice(WORDS) for _ in range(200_000))
        self.size = value_bytes

    def key(self, i):
        return f"user-{i % 100_000:05d}".encode()

    def value(self, i):
        head = (f'{{"id":{i},"ts":{1_763_700_000_000 + i},"user":"user-{i % 100_000:05d}",'
                f'"event":"{EVENTS[i % len(EVENTS)]}","amount":{(i * 7919) % 100_000 / 100:.2f},"note":"')
        tail = '"}'
        fill = max(self.size - len(head) - len(tail), 0)
        start = (i * 104_729) % (len(self.corpus) - fill - 1)
        return (head + self.corpus[start:start + fill] + tail).encode()[:self.size]

    @staticmethod
    def headers(i):
        return [("source", b"kbs-e2e"), ("trace-id", f"{i * 2_654_435_761 % (1 << 64):016x}".encode())]


def rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_s():
    """CPU seconds of this process so far (the Python thread and librdkafka's threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(bootstrap, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000})
            admin.list_topics(timeout=2)
            return
        except KafkaException as e:
            last = e
            time.sleep(0.2)
    sys.exit(f"e2e: the broker at {bootstrap} did not answer within {timeout} s: {last}")


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for _, future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).items():
        future.result(timeout=30)


def produce(bootstrap, topic, partitions, count, value_bytes, codec, idempotent, warmup_topic=None):
    """Writes records 0..count; returns the JSON result.

    With `warmup_topic` (the restore peer), the records are built and the producer is made ready
    before the clock starts: one record written to `warmup_topic` and flushed, which waits out
    librdkafka's idempotent start-up (InitProducerId and metadata before the first delivery, a
    constant that would swamp smaller runs); `startup_seconds` reports that wait."""
    gen = Records(value_bytes)
    created = time.perf_counter()
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": idempotent,
        "acks": "all",
        "linger.ms": 10,
        "batch.size": 1 << 20,
        "batch.num.messages": 10_000,
        "queue.buffering.max.kbytes": 1 << 20,
        "compression.type": codec,
    })
    errors = []

    def on_delivery(err, _msg):
        if err is not None:
            errors.append(str(err))

    startup = None
    if warmup_topic is not None:
        producer.produce(warmup_topic, value=b"warm-up", on_delivery=on_delivery)
        if producer.flush(60) != 0 or errors:
            sys.exit(f"e2e: the warm-up write to {warmup_topic} failed: {errors[:5]}")
        startup = time.perf_counter() - created
        source = iter([(gen.key(i), gen.value(i), gen.headers(i)) for i in range(count)])
    else:
        source = ((gen.key(i), gen.value(i), gen.headers(i)) for i in range(count))
    nbytes = 0
    start, cpu_start = time.perf_counter(), cpu_s()
    for i, (key, value, headers) in enumerate(source):
        nbytes += len(key) + len(value)
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers, partition=i % partitions,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 10_000 == 0:
            producer.poll(0)
    remaining = producer.flush(300)
    seconds = time.perf_counter() - start
    if remaining or errors:
        sys.exit(f"e2e: produce to {topic} failed: {remaining} undelivered, errors {errors[:5]}")
    return {"records": count, "bytes": nbytes, "seconds": seconds, "rss_kb": rss_kb(), "cpu_s": cpu_s() - cpu_start,
            "startup_seconds": startup}


def consume(bootstrap, topic, timeout=600):
    """Reads every partition of `topic` from its start to its true end and discards the data.

    The end is the high watermark of the latest fetch response (librdkafka's cached
    watermark), so no ListOffsets round trip is timed. The clock covers client creation,
    metadata and the read."""
    start, cpu_start = time.perf_counter(), cpu_s()
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "kbs-e2e-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
        "fetch.wait.max.ms": 10,
        # librdkafka pauses fetching for fetch.queue.backoff.ms (1 s by default) whenever its
        # pre-fetch queue is full, which happens when Python drains it a little late: the
        # consumer's time then jumped between ~1 s and ~2 s from round to round. 10 ms, like
        # its fetch wait, gives its steady best.
        "fetch.queue.backoff.ms": 10,
    })
    metadata = consumer.list_topics(topic, timeout=30)
    if topic not in metadata.topics or metadata.topics[topic].error is not None:
        sys.exit(f"e2e: no topic {topic}")
    partitions = sorted(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    next_offset = {}
    pending = set(partitions)
    records = 0
    nbytes = 0
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            sys.exit(f"e2e: reading {topic} did not finish within {timeout} s ({records} records read)")
        for msg in consumer.consume(num_messages=10_000, timeout=0.1):
            if msg.error():
                raise KafkaException(msg.error())
            records += 1
            key, value = msg.key(), msg.value()
            nbytes += (len(key) if key else 0) + (len(value) if value else 0)
            next_offset[msg.partition()] = msg.offset() + 1
        for p in list(pending):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
            if high is None or high < 0:
                continue  # no fetch response for this partition yet
            position = next_offset.get(p)
            if position is None:
                position = consumer.position([TopicPartition(topic, p)])[0].offset
            if high == 0 or (position is not None and position >= high):
                pending.discard(p)
    seconds = time.perf_counter() - start
    consumer.close()
    return {"records": records, "bytes": nbytes, "seconds": seconds, "rss_kb": rss_kb(), "cpu_s": cpu_s() - cpu_start}


def measure(out, command):
    """Runs `command` (stdout to `out`.stdout) and writes its wall time, peak RSS and CPU time:
    the fallback of run.sh when /usr/bin/time is missing. The peak RSS is the child's VmHWM
    polled from /proc every 10 ms (wait4's ru_maxrss would include the RSS this Python process
    had when it forked the child), so only a peak in the last 10 ms before exit could be missed."""
    with open(out + ".stdout", "wb") as stdout:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=stdout)
        peak = None
        while True:
            try:
                with open(f"/proc/{child.pid}/status") as status_file:
                    for line in status_file:
                        if line.startswith("VmHWM:"):
                            peak = max(peak or 0, int(line.split()[1]))
            except OSError:
                pass
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid == child.pid:
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    with open(out, "w") as f:
        json.dump({"seconds": seconds, "rss_kb": peak, "cpu_s": usage.ru_utime + usage.ru_stime,
                   "exit": child.returncode}, f)
    sys.exit(child.returncode)


def table(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    sections = []
    for r in rows:
        if r["section"] not in sections:
            sections.append(r["section"])
    for section in sections:
        in_section = [r for r in rows if r["section"] == section]
        tools = []
        for r in in_section:
            if r["tool"] not in tools:
                tools.append(r["tool"])
        print(f"### {section}\n")
        print("| tool | MB/s (key+value) | MB/s stored | records/s | seconds (median) | peak RSS MiB | CPU s "
              "| broker CPU s | rounds | MB/s ratio to " + tools[0] + " |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        base = None
        for tool in tools:
            runs = [r for r in in_section if r["tool"] == tool]
            seconds = statistics.median(r["seconds"] for r in runs)
            records = runs[0]["records"]
            nbytes = runs[0]["bytes"]
            rate = nbytes / 1e6 / seconds
            if base is None:
                base = rate
            stored = [r["stored_bytes"] for r in runs if r.get("stored_bytes") is not None]
            stored_rate = f"{statistics.median(stored) / 1e6 / seconds:.1f}" if stored else "–"
            rss = max((r["rss_kb"] for r in runs if r.get("rss_kb") is not None), default=None)
            cpu = [r["cpu_s"] for r in runs if r.get("cpu_s") is not None]
            broker = [r["broker_cpu_s"] for r in runs if r.get("broker_cpu_s") is not None]
            print(f"| {tool} | {rate:.1f} | {stored_rate} | {records / seconds:,.0f} | {seconds:.2f} "
                  f"| {'–' if rss is None else f'{rss / 1024:.0f}'} "
                  f"| {f'{statistics.median(cpu):.2f}' if cpu else '–'} "
                  f"| {f'{statistics.median(broker):.2f}' if broker else '–'} | {len(runs)} | {rate / base:.2f} |")
        print()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    sub.add_parser("port")
    w = sub.add_parser("wait")
    w.add_argument("bootstrap")
    w.add_argument("--timeout", type=float, default=60)
    for name in ("seed", "produce"):
        s = sub.add_parser(name)
        s.add_argument("bootstrap")
        s.add_argument("topic")
        s.add_argument("--partitions", type=int, required=True)
        s.add_argument("--records", type=int, required=True)
        s.add_argument("--value-bytes", type=int, required=True)
        s.add_argument("--codec", default="none")
    for name in ("consume", "count"):
        c = sub.add_parser(name)
        c.add_argument("bootstrap")
        c.add_argument("topic")
    m = sub.add_parser("measure")
    m.add_argument("out")
    m.add_argument("command", nargs=argparse.REMAINDER)
    t = sub.add_parser("table")
    t.add_argument("results")
    args = p.parse_args()

    if args.mode == "port":
        print(free_port())
    elif args.mode == "wait":
        wait(args.bootstrap, args.timeout)
    elif args.mode == "seed":
        create_topic(args.bootstrap, args.topic, args.partitions)
        print(json.dumps(produce(args.bootstrap, args.topic, args.partitions, args.records, args.value_bytes,
                                 args.codec, idempotent=False)))
    elif args.mode == "produce":
        # The comparison peer of `kbs restore`: an idempotent producer (acks=all) writing the
        # seeded records again into a new topic; topic, records and producer are made ready
        # before the clock starts.
        create_topic(args.bootstrap, args.topic, args.partitions)
        create_topic(args.bootstrap, args.topic + "-warmup", 1)
        print(json.dumps(produce(args.bootstrap, args.topic, args.partitions, args.records, args.value_bytes,
                                 args.codec, idempotent=True, warmup_topic=args.topic + "-warmup")))
    elif args.mode in ("consume", "count"):
        print(json.dumps(consume(args.bootstrap, args.topic)))
    elif args.mode == "measure":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        measure(args.out, command)
    elif args.mode == "table":
        table(args.results)


if __name__ == "__main__":
    main()
