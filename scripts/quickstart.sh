#!/usr/bin/env bash
# The kbs quickstart: on a fresh machine, sets up what it needs (Apache Kafka's jars and the
# Python venv only), builds kbs, starts a local Apache Kafka node (KRaft) with sample data,
# backs it up to a local folder,
# validates the backup, restores it into renamed topics, and checks the copy against the
# original with an independent client (confluent-kafka). Prints what it did at each step.
#
#   scripts/quickstart.sh            # work folder under $TMPDIR, removed at the end
#   KBS_QUICKSTART_DIR=./demo scripts/quickstart.sh   # keep the backup in ./demo
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

step() { printf '\n==> %s\n' "$*"; }

step "set-up (Apache Kafka and the Python venv, installed once, outside this folder)"
KBS_SETUP_ONLY="kafka python" scripts/setup.sh
python="${KBS_CACHE:-$HOME/.cache/kbs}/venv/bin/python"

step "building kbs (release)"
cargo build --release --locked -p kbs-cli
kbs="$root/target/release/kbs"

if [ -n "${KBS_QUICKSTART_DIR:-}" ]; then
    work="$(mkdir -p "$KBS_QUICKSTART_DIR" && cd "$KBS_QUICKSTART_DIR" && pwd)"
else
    work="$(mktemp -d)"
fi
port="$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
bootstrap="127.0.0.1:$port"

step "starting a local Apache Kafka node (KRaft) on $bootstrap (log: $work/kafka/kafka.log)"
cleanup() {
    scripts/kafka/single-node.sh stop "$work/kafka" || true
    if [ -z "${KBS_QUICKSTART_DIR:-}" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
scripts/kafka/single-node.sh start "$work/kafka" "$port" 512 >/dev/null

step "producing sample data with confluent-kafka: orders (3 partitions), payments (2 partitions)"
"$python" kbs-testkit/py/seed.py "$bootstrap" simple orders 20000 3 --value-size 300 --codec lz4
"$python" kbs-testkit/py/seed.py "$bootstrap" simple payments 5000 2 --value-size 120 --codec zstd

step "kbs backup to $work/backups (the filesystem is the default store)"
"$kbs" backup --bootstrap-servers "$bootstrap" --storage "$work/backups" --backup-id quickstart --compression zstd

step "kbs list"
"$kbs" list --storage "$work/backups"

step "kbs describe"
"$kbs" describe --storage "$work/backups" --backup-id quickstart | head -20

step "kbs validate --deep (every checksum of every segment)"
"$kbs" validate --storage "$work/backups" --backup-id quickstart --deep

step "kbs restore into renamed topics (orders -> orders-restored, payments -> payments-restored)"
"$kbs" restore --bootstrap-servers "$bootstrap" --storage "$work/backups" --backup-id quickstart \
    --topic-map orders=orders-restored,payments=payments-restored --create-topics

step "checking the restored topics against the originals with confluent-kafka"
"$python" kbs-testkit/py/consume.py "$bootstrap" "$work/original.jsonl" orders payments
"$python" kbs-testkit/py/consume.py "$bootstrap" "$work/restored.jsonl" orders-restored payments-restored
"$python" - "$work/original.jsonl" "$work/restored.jsonl" <<'PY'
import json, sys
def load(path):
    rows = [json.loads(line) for line in open(path)]
    return sorted([(r[0].replace("-restored", ""), r[1], r[2], r[3], r[4], r[5], json.dumps(r[6])) for r in rows])
a, b = load(sys.argv[1]), load(sys.argv[2])
print(f"original: {len(a)} records, restored: {len(b)} records, identical: {a == b}")
sys.exit(0 if a == b else 1)
PY

step "done"
cat <<MSG
Against a real cluster and S3:
  kbs backup --bootstrap-servers kafka-1:9092,kafka-2:9092 --storage s3://my-bucket/kafka \\
      --s3-region eu-central-1 --backup-id nightly-\$(date +%F) --compression zstd
  kbs validate --storage s3://my-bucket/kafka --backup-id nightly-2026-11-21 --deep
  kbs restore --bootstrap-servers dr-kafka:9092 --storage s3://my-bucket/kafka \\
      --backup-id nightly-2026-11-21 --create-topics --consumer-groups
(credentials come from the standard AWS chain: environment, profile, web identity, instance metadata)
MSG
