#!/usr/bin/env python3
"""Administration of the test Kafka cluster through confluent-kafka's AdminClient.

    kafka_admin.py scram-users INTERNAL_BOOTSTRAP USER PASSWORD PROTOCOL CLIENT_ADDRS [CA_FILE]
    kafka_admin.py describe BOOTSTRAP                  JSON: cluster id, broker ids, partition leaders
    kafka_admin.py create-topic BOOTSTRAP TOPIC PARTITIONS REPLICAS [KEY=VALUE ...]
    kafka_admin.py create-topic-on BOOTSTRAP TOPIC PARTITIONS NODE
                                                       every partition's one replica on broker NODE
    kafka_admin.py wait-leaders BOOTSTRAP TOPIC IDS    until every partition is led by one of IDS
    kafka_admin.py acl BOOTSTRAP allow|deny USER OPERATION RESOURCE_TYPE NAME
                                                       CreateAcls (e.g. deny kbs READ TOPIC secret; NAME * is any)
    kafka_admin.py delete-topic BOOTSTRAP TOPIC        DeleteTopics, then wait until Metadata no longer lists it
    kafka_admin.py offsets BOOTSTRAP TOPIC             JSON: {partition: [log start, high watermark]}
    kafka_admin.py delete-records BOOTSTRAP TOPIC PARTITION=OFFSET ...
                                                       DeleteRecords before OFFSET (-1: the high watermark)
    kafka_admin.py try-login BOOTSTRAP PROTOCOL MECHANISM USER PASSWORD [CA_FILE]
                                                       prints "admitted" or "refused: ERROR"
    kafka_admin.py placement BOOTSTRAP TOPIC PARTITIONS KEYS
                                                       KEYS: a file of keys in base64, one per line (an empty line
                                                       is the empty key); JSON {base64: partition}: where
                                                       librdkafka's murmur2_random partitioner put each key when
                                                       producing it to TOPIC, created with PARTITIONS

Creates USER's SCRAM-SHA-256 and SCRAM-SHA-512 credentials through the admin API
(AlterUserScramCredentials) on the PLAINTEXT INTERNAL listener, then waits (30 s at most) until
USER authenticates with PLAIN, both SCRAM mechanisms and OAUTHBEARER (unsecured JWS) on every
CLIENT address (comma-separated), which use PROTOCOL (SASL_PLAINTEXT or SASL_SSL, with CA_FILE).
"""
import base64
import json
import sys
import time

from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)


def scram_users(internal, user, password, protocol, addrs, ca_file=None):
    admin = AdminClient({"bootstrap.servers": internal})
    upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, 4096), password.encode())
               for mechanism in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)]
    for upsert in upserts:  # one request each: Kafka refuses two changes of one user in one request
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result()
    deadline = time.time() + 30
    for addr in addrs.split(","):
        for mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"):
            config = {"bootstrap.servers": addr, "security.protocol": protocol, "sasl.mechanism": mechanism}
            if mechanism == "OAUTHBEARER":
                config["enable.sasl.oauthbearer.unsecure.jwt"] = True
                config["sasl.oauthbearer.config"] = f"principal={user}"
            else:
                config["sasl.username"] = user
                config["sasl.password"] = password
            if ca_file:
                config["ssl.ca.location"] = ca_file
            while True:
                try:
                    AdminClient(config).list_topics(timeout=5)
                    break
                except Exception as e:  # credentials not yet propagated to this broker
                    if time.time() > deadline:
                        sys.exit(f"{user} cannot authenticate with {mechanism} on {addr}: {e}")
                    time.sleep(0.2)


def describe(bootstrap):
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=20)
    print(json.dumps({
        "cluster_id": metadata.cluster_id,
        "brokers": sorted(metadata.brokers),
        "topics": {name: [p.leader for _, p in sorted(t.partitions.items())]
                   for name, t in metadata.topics.items() if not name.startswith("__")},
    }))


def create_topic(bootstrap, topic, partitions, replicas, *configs):
    config = dict(c.split("=", 1) for c in configs)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = NewTopic(topic, num_partitions=int(partitions), replication_factor=int(replicas), config=config)
    for future in admin.create_topics([new]).values():
        future.result()
    wait_leaders(bootstrap, topic, None)


def create_topic_on(bootstrap, topic, partitions, node):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # This confluent-kafka wants the partition count with an assignment (despite its docs).
    new = NewTopic(topic, num_partitions=int(partitions),
                   replica_assignment=[[int(node)] for _ in range(int(partitions))])
    for future in admin.create_topics([new]).values():
        future.result()
    wait_leaders(bootstrap, topic, node)


def wait_leaders(bootstrap, topic, ids):
    wanted = None if ids is None else {int(i) for i in ids.split(",")}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.time() + 60
    while True:
        topics = admin.list_topics(topic, timeout=10).topics
        leaders = [p.leader for p in topics[topic].partitions.values()] if topic in topics else []
        if leaders and all(l >= 0 and (wanted is None or l in wanted) for l in leaders):
            return
        if time.time() > deadline:
            sys.exit(f"partitions of {topic} not led by {ids or 'any broker'} within 60 s: {leaders}")
        time.sleep(0.1)


def acl(bootstrap, permission, user, operation, resource_type, name):
    from confluent_kafka.admin import (AclBinding, AclOperation, AclPermissionType, ResourcePatternType,
                                       ResourceType)
    binding = AclBinding(ResourceType[resource_type], name, ResourcePatternType.LITERAL, f"User:{user}", "*",
                         AclOperation[operation], AclPermissionType[permission.upper()])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_acls([binding]).values():
        future.result()


def delete_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        future.result()
    deadline = time.time() + 60
    while topic in admin.list_topics(timeout=10).topics:
        if time.time() > deadline:
            sys.exit(f"{topic} still listed 60 s after DeleteTopics")
        time.sleep(0.1)


def offsets(bootstrap, topic):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "kbs-test-offsets"})
    partitions = c.list_topics(topic, timeout=30).topics[topic].partitions
    print(json.dumps({p: list(c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)) for p in partitions}))
    c.close()


def delete_records(bootstrap, topic, *cuts):
    from confluent_kafka import TopicPartition
    admin = AdminClient({"bootstrap.servers": bootstrap})
    partitions = [TopicPartition(topic, int(p), int(o)) for p, o in (c.split("=") for c in cuts)]
    for future in admin.delete_records(partitions).values():
        future.result()


def try_login(bootstrap, protocol, mechanism, user, password, ca_file=None):
    config = {"bootstrap.servers": bootstrap, "security.protocol": protocol, "sasl.mechanism": mechanism,
              "sasl.username": user, "sasl.password": password}
    if ca_file:
        config["ssl.ca.location"] = ca_file
    errors = []
    config["error_cb"] = lambda e: errors.append(str(e))
    admin = AdminClient(config)
    try:
        admin.list_topics(timeout=5)
        print("admitted")
    except Exception as e:
        deadline = time.time() + 5
        while not errors and time.time() < deadline:  # error callbacks are served by poll
            admin.poll(0.1)
        print(f"refused: {'; '.join(errors) or e}")


def placement(bootstrap, topic, partitions, keys_file):
    from confluent_kafka import Producer
    with open(keys_file) as f:
        keys = [base64.b64decode(line.strip()) for line in f.read().split("\n")[:-1]]
    create_topic(bootstrap, topic, partitions, "1")
    prod = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "acks": "all"})
    placed, errors = {}, []

    def delivered(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            placed[base64.b64encode(msg.key()).decode()] = msg.partition()

    for key in keys:
        prod.produce(topic, key=key, value=b"", on_delivery=delivered)
    if prod.flush(60) or errors or len(placed) != len(set(keys)):
        sys.exit(f"placement failed: {errors[:3]}, {len(placed)} of {len(set(keys))} keys placed")
    print(json.dumps(placed))


def main():
    command, *args = sys.argv[1:]
    commands = {"scram-users": scram_users, "describe": describe, "create-topic": create_topic,
                "create-topic-on": create_topic_on,
                "wait-leaders": wait_leaders, "try-login": try_login,
                "delete-records": delete_records, "offsets": offsets, "acl": acl,
                "delete-topic": delete_topic, "placement": placement}
    if command not in commands:
        sys.exit(f"unknown command {command}")
    commands[command](*args)


if __name__ == "__main__":
    main()
