#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, and all tests (unit, store suites on redb and a
# real local etcd, end-to-end hub and emcoctl tests, the upstream conformance replay).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source scripts/ensure-deps.sh

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo nextest run --workspace --locked --no-fail-fast "$@"
