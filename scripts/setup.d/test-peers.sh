#!/usr/bin/env bash
# The Python test peers besides confluent-kafka, in the same venv: moto's S3 server, and DuckDB,
# fastavro and cramjam to read exports. Only the tests use them, so the quickstart skips this.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${KBS_CACHE:-$HOME/.cache/kbs}/venv"
bash "$here/python.sh"
if "$venv/bin/python" -c "import moto, duckdb, fastavro, cramjam" 2>/dev/null; then
    exit 0
fi
echo "setup: adding the test peers (moto, DuckDB, fastavro, cramjam) to $venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]" duckdb fastavro cramjam
