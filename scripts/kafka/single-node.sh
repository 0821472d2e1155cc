#!/usr/bin/env bash
# One Apache Kafka node in KRaft mode (combined broker and controller) on loopback, for the
# quickstart and the end-to-end benchmark; the tests use kbs-testkit's KafkaCluster instead.
#
#   scripts/kafka/single-node.sh start DIR PORT [HEAP_MIB]   format DIR, start the node in the
#                                                            background, wait until it serves
#                                                            Metadata on 127.0.0.1:PORT; prints
#                                                            its pid
#   scripts/kafka/single-node.sh stop DIR                    stop it (SIGTERM, then wait)
#
# The jars come from scripts/setup.d/kafka.sh ($KBS_CACHE/kafka-<version>/libs). The node's
# log is DIR/kafka.log; time-based retention is off (as in the tests).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
libs="${KBS_CACHE:-$HOME/.cache/kbs}/kafka-$version/libs"
python="${KBS_CACHE:-$HOME/.cache/kbs}/venv/bin/python"

usage() {
    echo "usage: $0 start DIR PORT [HEAP_MIB] | stop DIR" >&2
    exit 2
}

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir="$1" port="$2" heap="${3:-1024}"
    [ -f "$libs/kafka_2.13-$version.jar" ] || {
        echo "no Apache Kafka $version in $libs: run scripts/setup.sh" >&2
        exit 1
    }
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local controller
    controller="$(free_port)"
    cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.ms=-1
PROPS
    cat >"$dir/log4j2.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
PROPS
    local java=(java "-Xmx${heap}m" "-Xms${heap}m" -XX:-UsePerfData -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$dir/log4j2.properties" -cp "$libs/*")
    # A KRaft cluster id: 16 random bytes, base64url without padding (what `kafka-storage
    # random-uuid` prints; made here so no log line of that tool can slip into it).
    local cluster_id
    cluster_id="$("$python" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))')"
    "${java[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >"$dir/kafka.log" 2>&1
    "${java[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/kafka.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$dir/kafka.pid"
    "$python" - "$port" "$pid" <<'PY' || { tail -n 30 "$dir/kafka.log" >&2; exit 1; }
import os, socket, sys, time
from confluent_kafka.admin import AdminClient
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 90
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("Kafka exited before it was ready")
    try:
        socket.create_connection(("127.0.0.1", int(port)), 0.5).close()
        if AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=5).brokers:
            break
    except Exception:
        pass
    if time.time() > deadline:
        sys.exit("Kafka not ready within 90 s")
    time.sleep(0.2)
PY
    echo "$pid"
}

stop() {
    local dir="$1" pid
    [ -f "$dir/kafka.pid" ] || return 0
    pid="$(cat "$dir/kafka.pid")"
    if kill -TERM "$pid" 2>/dev/null; then
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$dir/kafka.pid"
}

case "${1:-}" in
start) [ $# -ge 3 ] || usage; start "$2" "$3" "${4:-}" ;;
stop) [ $# -ge 2 ] || usage; stop "$2" ;;
*) usage ;;
esac
