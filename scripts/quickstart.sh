#!/usr/bin/env bash
# Builds kbs and shows what it does today: inspects the golden segments shipped with the
# format crate. (The full quickstart - local broker, backup, validate, restore - grows here
# as those commands land.)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked -p kbs-cli
for segment in kbs-format/tests/data/tiny.kbs kbs-format/tests/data/mixed-lz4.kbs; do
    echo "== kbs inspect $segment"
    target/release/kbs inspect "$segment"
done
