#!/usr/bin/env bash
# Installs what the build and the tests need (Apache Kafka's jars, Garage, GNU time, the Python
# venv with confluent-kafka and the other test peers), once, outside the clone (~/.cargo/bin, ~/.cache/kbs)
# so later clones reuse it. Safe to run repeatedly: every step is skipped when its tool is present.
# Each piece of the project that needs a tool adds a fragment under scripts/setup.d/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo is required (a Rust stable toolchain); none was found on PATH" >&2
    exit 1
fi
if ! command -v cc >/dev/null 2>&1; then
    echo "setup: a C compiler (cc) is required to build the zstd and lz4 libraries" >&2
    exit 1
fi
# rustfmt and clippy ship with the machine's stable toolchain; add them if a minimal install lacks them.
for component in rustfmt clippy; do
    if ! rustup component list --installed 2>/dev/null | grep -q "^${component}"; then
        rustup component add "$component"
    fi
done

export KBS_CACHE="${KBS_CACHE:-$HOME/.cache/kbs}"
mkdir -p "$KBS_CACHE"
# KBS_SETUP_ONLY="kafka python" runs only those fragments (the quickstart needs no more).
for fragment in "$here"/setup.d/*.sh; do
    [ -e "$fragment" ] || continue
    if [ -n "${KBS_SETUP_ONLY:-}" ] && ! [[ " $KBS_SETUP_ONLY " == *" $(basename "$fragment" .sh) "* ]]; then
        continue
    fi
    # shellcheck source=/dev/null
    bash "$fragment"
done
