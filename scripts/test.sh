#!/usr/bin/env bash
# The whole test suite: formatting, lints, schema freshness, unit, snapshot, CLI and end-to-end tests.
# Needs root (the tests make btrfs images, loop devices, namespaces and cgroups, and clean them up).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
  echo "scripts/test.sh must run as root (it creates loop devices, mounts and namespaces)" >&2
  exit 1
fi
FORKR_APT_UPDATE=1 bash scripts/deps.sh
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
# The crash tests' server: the same program with fault injection compiled in (never shipped).
cargo build -p forkr-server --features fault-injection --bin forkr-server-faults --locked
cargo test --workspace --locked --no-fail-fast -- --test-threads="${FORKR_TEST_THREADS:-4}"
# Property-based API tests against the served OpenAPI document (a few minutes), then every fuzz
# target for a bounded time from its committed corpus (the first instrumented build takes ~6 min).
bash scripts/schemathesis.sh
bash scripts/fuzz.sh
