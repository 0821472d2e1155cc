#!/usr/bin/env python3
"""Writes committed and aborted transactions interleaved with non-transactional records, with
confluent-kafka (librdkafka), the independent client.

    transactions.py BOOTSTRAP TOPIC PARTITIONS ROUNDS [--tag TAG] [--open]

Creates TOPIC (PARTITIONS partitions) if missing. Each round writes, to every partition: a
committed transaction ("TAG-c<round>-<i>"), a non-transactional record ("TAG-p<round>"), an
aborted transaction ("TAG-a<round>-<i>") and another non-transactional record. With --open, a
last transaction ("TAG-open-<i>") is written and flushed but left open: the script prints
{"open": true} and waits for a line on stdin, "commit" or "abort", then ends the transaction.
Prints {"committed": N, "aborted": N, "plain": N} (records) at the end.
"""
import argparse
import json
import sys

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("partitions", type=int)
    ap.add_argument("rounds", type=int)
    ap.add_argument("--tag", default="t")
    ap.add_argument("--open", action="store_true")
    a = ap.parse_args()
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for future in admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions,
                                                replication_factor=-1)]).values():
        try:
            future.result()
        except Exception as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e) and "already exists" not in str(e):
                raise
    tx = Producer({"bootstrap.servers": a.bootstrap, "transactional.id": f"kbs-test-{a.topic}-{a.tag}",
                   "linger.ms": 5})
    plain = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "linger.ms": 0})
    tx.init_transactions(30)
    counts = {"committed": 0, "aborted": 0, "plain": 0}

    def transaction(prefix, commit):
        tx.begin_transaction()
        for p in range(a.partitions):
            for i in range(5):
                tx.produce(a.topic, value=f"{prefix}-{i}".encode(), key=f"k{i}".encode(), partition=p,
                           headers=[("round", prefix.encode())])
        if commit:
            tx.commit_transaction(30)
            counts["committed"] += 5 * a.partitions
        else:
            tx.flush(30)  # the records reach the log before the abort marker
            tx.abort_transaction(30)
            counts["aborted"] += 5 * a.partitions

    def record(value):
        for p in range(a.partitions):
            plain.produce(a.topic, value=value.encode(), partition=p)
        plain.flush(30)
        counts["plain"] += a.partitions

    for r in range(a.rounds):
        transaction(f"{a.tag}-c{r}", True)
        record(f"{a.tag}-p{r}")
        transaction(f"{a.tag}-a{r}", False)
        record(f"{a.tag}-q{r}")
    if a.open:
        tx.begin_transaction()
        for p in range(a.partitions):
            for i in range(5):
                tx.produce(a.topic, value=f"{a.tag}-open-{i}".encode(), partition=p)
        tx.flush(30)
        print(json.dumps({"open": True}), flush=True)
        decision = sys.stdin.readline().strip()
        if decision == "commit":
            tx.commit_transaction(30)
            counts["committed"] += 5 * a.partitions
        elif decision == "abort":
            tx.abort_transaction(30)
            counts["aborted"] += 5 * a.partitions
        else:
            sys.exit(f"expected commit or abort on stdin, got {decision!r}")
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
