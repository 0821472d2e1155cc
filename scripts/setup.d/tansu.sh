#!/usr/bin/env bash
# tansu, the Kafka-compatible broker the kbs-kafka integration tests and the Kafka benchmark
# start on loopback (in-memory storage). Built from crates.io (~12 minutes) into ~/.cargo/bin,
# once.
set -euo pipefail
if command -v tansu >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/tansu" ]; then
    exit 0
fi
echo "setup: installing tansu (Kafka-compatible test broker) with cargo install; this takes a while"
cargo install tansu --version 0.6.0 --locked --features dynostore
