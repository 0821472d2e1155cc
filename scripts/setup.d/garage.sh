#!/usr/bin/env bash
# Garage, the real S3-compatible server of the kbs-storage tests (it ignores conditional
# headers, which the capability probe must detect). Installed into ~/.cargo/bin, outside the
# clone; a clean build takes about ten minutes. Skipped when a garage binary is already there.
set -euo pipefail
if command -v garage >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/garage" ]; then
    exit 0
fi
echo "setup: installing garage (cargo install garage --locked; about ten minutes)"
cargo install garage --version 2.5.0 --locked
