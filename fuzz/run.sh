#!/usr/bin/env bash
# fuzz/run.sh [MINUTES] [TARGET...] — runs each fuzz target (default: all of
# wire gateway gre pipeline) for MINUTES minutes (default 5), one after the
# other at nice 19, and prints executions and coverage per target.
#
# cargo-fuzz needs nightly compiler flags (-Cpasses=sancov-module, -Z...).
# Where only a stable toolchain is installed, RUSTC_BOOTSTRAP=1 lets stable
# rustc accept them; this script sets it for the fuzz build only. Install
# cargo-fuzz once with `cargo install cargo-fuzz`.
#
# Sanitizer: none (FUZZ_SANITIZER=address to try ASan). The code under test
# has no unsafe (yard-wire, yard-nat and yard-tunnel forbid it; the memory
# ports never reach switch/src/sys), so what libFuzzer can find here is a
# panic: the build keeps debug assertions and overflow checks on, and the
# targets assert their own invariants (see fuzz/harness/src/*.rs).
#
# Before fuzzing, the seeds are (re)written to fuzz/corpus/<target>/ by
# `cargo run -p yard-fuzz --bin yard-fuzz-seed`. A crash lands in
# fuzz/artifacts/<target>/; to keep it, fix the bug and copy the input to
# fuzz/regressions/<target>/, which `cargo test -p yard-fuzz` replays.
# Logs: fuzz/logs/<target>.log. Exit status 1 when any target crashed.
set -euo pipefail

minutes="${1:-5}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(wire gateway gre pipeline)
case "$minutes" in
  ''|*[!0-9]*|0) echo "fuzz/run.sh: MINUTES must be a whole number of at least 1, not '$minutes'" >&2; exit 2 ;;
esac
# Bounded: at most 8 hours per target.
[ "$minutes" -le 480 ] || { echo "fuzz/run.sh: at most 480 minutes per target" >&2; exit 2; }
seconds=$((minutes * 60))
sanitizer="${FUZZ_SANITIZER:-none}"

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
command -v cargo-fuzz >/dev/null || {
  echo "fuzz/run.sh: cargo-fuzz not found — install it with 'cargo install cargo-fuzz'" >&2
  exit 2
}

# Largest input per target: enough for a GSO frame or a few conversations.
max_len() {
  case "$1" in
    wire|pipeline) echo 8192 ;;
    gateway) echo 4096 ;;
    *) echo 2048 ;;
  esac
}

cd "$root"
nice -n 19 cargo run -q -p yard-fuzz --bin yard-fuzz-seed -- "$here/corpus"

cd "$here"
mkdir -p logs
build=(--sanitizer "$sanitizer" -O --debug-assertions)
echo "building the fuzz targets (sanitizer: $sanitizer) ..."
RUSTC_BOOTSTRAP=1 nice -n 19 cargo fuzz build "${build[@]}" 2>"logs/build.log" || {
  tail -n 20 logs/build.log >&2
  exit 2
}

failed=0
printf '%-10s %12s %10s %8s %8s %8s  %s\n' target execs exec/s cov ft corpus result
for t in "${targets[@]}"; do
  log="logs/$t.log"
  status=0
  # timeout: libFuzzer stops itself at -max_total_time; this is the bound
  # should it not.
  RUSTC_BOOTSTRAP=1 nice -n 19 timeout $((seconds + 120)) \
    cargo fuzz run "${build[@]}" "$t" "corpus/$t" -- \
      -max_total_time="$seconds" -max_len="$(max_len "$t")" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corpus=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
  result=ok
  if [ "$status" -eq 124 ]; then
    result="did not stop in time (killed) — see $log"
    failed=1
  elif [ "$status" -ne 0 ]; then
    result="CRASH (exit $status): $(grep -o 'artifacts/[^ ]*' "$log" | tail -n 1) — see $log"
    failed=1
  fi
  printf '%-10s %12s %10s %8s %8s %8s  %s\n' "$t" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "${corpus:--}" "$result"
done
exit "$failed"
