#!/usr/bin/env bash
# Fuzzing (issue 7, item 7): runs each cargo-fuzz target in fuzz/ for a bounded time, starting
# from its committed corpus (fuzz/corpus/<target>, read only: new inputs go to a scratch dir).
# Fails on any crash, panic, timeout or out-of-memory, and prints the input that caused it.
#
# Targets: spec_load (the .forkr/*.yaml loader, validator and planner), name_ref (names and
# refs), tar_import (the base tarball importer, which must write nothing outside its root).
#
# CI has the stable toolchain only: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the instrumentation
# flags it needs, and `-s none` builds without a sanitizer (AddressSanitizer needs nightly std;
# the engine has no unsafe parsing code for it to watch).
#
# Environment:
#   FUZZ_SECONDS   seconds per target (default 30)
#   FUZZ_TARGETS   space-separated targets to run (default: all)
#   FUZZ_KEEP      keep the scratch corpus and artifacts dir (default: removed on exit)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${FUZZ_SECONDS:-30}
TARGETS=${FUZZ_TARGETS:-spec_load name_ref tar_import}
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

SCRATCH=$(mktemp -d /tmp/forkr-fuzz-XXXXXX)
cleanup() {
  local rc=$?
  if [ -n "${FUZZ_KEEP:-}" ]; then
    echo "fuzz scratch dir kept: $SCRATCH"
  else
    rm -rf "$SCRATCH"
  fi
  exit "$rc"
}
trap cleanup EXIT

cd "$ROOT/fuzz"
# The target dir beside the workspace's, so the instrumented build is kept between runs.
FUZZ_TARGET_DIR=$ROOT/target/fuzz
cargo fuzz build -s none --target-dir "$FUZZ_TARGET_DIR"

failed=0
summary=()
for t in $TARGETS; do
  mkdir -p "$SCRATCH/corpus/$t" "$SCRATCH/artifacts/$t"
  log=$SCRATCH/$t.log
  echo "fuzzing $t for ${SECONDS_PER_TARGET}s (seed corpus: fuzz/corpus/$t, $(ls "corpus/$t" | wc -l) inputs)"
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: memory blow-ups fail.
  if cargo fuzz run "$t" -s none --target-dir "$FUZZ_TARGET_DIR" "$SCRATCH/corpus/$t" "corpus/$t" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$SCRATCH/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | tr -dc 0-9)
    summary+=("$t: ${runs:-?} executions in ${SECONDS_PER_TARGET}s, coverage ${cov:-?} edges, no crash")
  else
    failed=1
    summary+=("$t: FAILED")
    echo "--- $t failed; the end of its log: ---" >&2
    tail -40 "$log" >&2
    for a in "$SCRATCH/artifacts/$t/"*; do
      [ -e "$a" ] || continue
      echo "crashing input $(basename "$a") (base64; reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t -s none <file>):" >&2
      base64 "$a" | head -c 4000 >&2
      echo >&2
    done
  fi
done
printf '%s\n' "${summary[@]}"
exit "$failed"
