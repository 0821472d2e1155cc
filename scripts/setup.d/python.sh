#!/usr/bin/env bash
# A Python venv with confluent-kafka (librdkafka), the independent client that produces and
# checks Kafka data in the quickstart, the tests and benches/e2e. Lives in $KBS_CACHE/venv,
# outside the clone. The peers only the tests use are added by test-peers.sh.
set -euo pipefail
venv="${KBS_CACHE:-$HOME/.cache/kbs}/venv"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import confluent_kafka" 2>/dev/null; then
    exit 0
fi
echo "setup: creating the Python venv with confluent-kafka in $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check confluent-kafka
