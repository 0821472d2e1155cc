#!/usr/bin/env bash
# A Python venv with the independent test peers: confluent-kafka (librdkafka) to produce and
# check Kafka data, moto's S3 server, and DuckDB and fastavro to read exports. Lives in
# $KBS_CACHE/venv, outside the clone.
set -euo pipefail
venv="${KBS_CACHE:-$HOME/.cache/kbs}/venv"
want="confluent-kafka moto[server] duckdb fastavro cramjam"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import confluent_kafka, moto, duckdb, fastavro, cramjam" 2>/dev/null; then
    exit 0
fi
echo "setup: creating the Python venv for test peers in $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check $want
