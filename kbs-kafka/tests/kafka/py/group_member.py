#!/usr/bin/env python3
"""Joins consumer group GROUP on TOPIC with confluent-kafka and stays a member: prints
"assigned" once it has partitions, then keeps polling until stdin closes.

    group_member.py BOOTSTRAP GROUP TOPIC
"""
import sys
import threading

from confluent_kafka import Consumer


def main():
    bootstrap, group, topic = sys.argv[1:4]
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "session.timeout.ms": 30000,
        "fetch.wait.max.ms": 10,
    })
    assigned = threading.Event()

    def on_assign(c, partitions):
        assigned.set()

    consumer.subscribe([topic], on_assign=on_assign)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    announced = False
    while not stop.is_set():
        consumer.poll(0.1)
        if assigned.is_set() and not announced:
            print("assigned", flush=True)
            announced = True
    consumer.close()


if __name__ == "__main__":
    main()
