#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test and doc test, and a build check of the
# fuzz targets. `.ci/run` calls exactly this. It installs what the tests need (scripts/setup.sh)
# first, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (unit, integration, doc)"
cargo test --workspace --locked

step "the crates' examples that need no server (the Kafka ones run in the integration tests)"
examples_dir="$(mktemp -d)"
trap 'rm -rf "$examples_dir"' EXIT
cargo run --locked -q -p kbs-format --example segment -- "$examples_dir/example.kbs"
cargo run --locked -q -p kbs-manifest --example summarize -- kbs-manifest/tests/data/manifest-full.json
cargo run --locked -q -p kbs-storage --example conditional_writes -- "$examples_dir/store"

step "cargo check of the fuzz targets (outside the workspace)"
(cd fuzz && cargo check --locked --bins)

step "the fuzz crate's own tests (random edits of an encrypted segment)"
(cd fuzz && cargo test --locked)

step "all checks passed"
