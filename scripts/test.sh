#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, the quick start (the README's main command), and
# all tests (unit, store suites on redb and a real local etcd, end-to-end hub and emcoctl tests,
# the upstream conformance replay). Extra arguments go to `cargo nextest run`.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
source scripts/ensure-deps.sh

# A fresh clone (CI) builds once: incremental caches would only add about 2.4 GB to its disk.
# Local runs on an existing target keep them.
[ -d target/debug ] || export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# CI's disk has run out before; say what the run used, whatever its outcome.
trap 'echo "disk: target $(du -sh target 2>/dev/null | cut -f1), free $(df -h . | awk "NR==2{print \$4}")"' EXIT

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The README's main command must keep working: run the quick start once, non-interactively, on a
# free port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mkdir -p target
QUICKSTART_EXIT=1 EMCO_LISTEN="127.0.0.1:$(free_port)" EMCO_SIM_LISTEN="127.0.0.1:$(free_port)" scripts/quickstart.sh > target/quickstart.log 2>&1 \
  || { tail -50 target/quickstart.log; echo "quickstart failed"; exit 1; }
echo "quickstart: ok"

cargo nextest run --workspace --locked --no-fail-fast "$@"
