#!/usr/bin/env bash
# fuzz.sh - build and run the libFuzzer harnesses (tests/fuzz/fuzz_*.c, docs/FUZZING.md).
#
#   scripts/fuzz.sh build               configure build-fuzz/ with clang, build the fuzzers
#   scripts/fuzz.sh smoke [SECONDS]     each harness SECONDS (default 60), two at a time;
#                                       fails on any crash, leak, timeout or sanitizer report
#   scripts/fuzz.sh long [RUNS [NAME...]] each harness (or those named) until RUNS
#                                       executions (default 1M), one at a time at nice 19;
#                                       prints the figures (MF_FUZZ_MAX_SECONDS=N: stop
#                                       each one after N seconds even if RUNS is not reached)
#   scripts/fuzz.sh run NAME [ARGS...]  one harness with libFuzzer ARGS (e.g. a crash file)
#
# Seeds are generated into build-fuzz/seeds by scripts/make_fuzz_seeds.py (nothing
# generated is committed); each harness grows its corpus in build-fuzz/corpus/NAME, and
# reproducers land in build-fuzz/artifacts/. MF_FUZZ_DIR overrides build-fuzz/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir="${MF_FUZZ_DIR:-$root/build-fuzz}"
harnesses=(checkpoint filter_report recordio list image archive store)
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:allocator_may_return_null=1:symbolize=1"
export OMP_NUM_THREADS=1 # one core per harness: two run at once on the shared machine
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$root/tests/fuzz/lsan.supp:print_suppressions=0"

build() {
  command -v clang >/dev/null || { echo "fuzz: clang missing (scripts/setup.sh installs it)" >&2; exit 1; }
  CC=clang CXX=clang++ cmake -S "$root" -B "$dir" -DMF_FUZZ=ON -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$dir" --target fuzzers -j 2 >/dev/null
  rm -rf "$dir/seeds"
  /usr/bin/python3 "$root/scripts/make_fuzz_seeds.py" "$dir/seeds"
  for h in "${harnesses[@]}"; do
    mkdir -p "$dir/corpus/$h"
    cp -n "$dir/seeds/fuzz_$h/"* "$dir/corpus/$h/"
  done
  mkdir -p "$dir/artifacts"
}

# run_one NAME LOG ARGS...: libFuzzer over the harness's corpus; its exit status.
run_one() {
  local h=$1 log=$2; shift 2
  local extra=()
  # The store harness: no leak check after each input. libhdf5 keeps library state
  # across files, so every input would trigger a full LeakSanitizer scan (6x slower);
  # leaks are still checked once at exit, and by the MF_SANITIZE unit tests.
  [ "$h" = store ] && extra=(-detect_leaks=0)
  "$dir/fuzz/fuzz_$h" "$dir/corpus/$h" -artifact_prefix="$dir/artifacts/$h-" -timeout=25 \
    -rss_limit_mb=2560 -print_final_stats=1 "${extra[@]}" "$@" >"$log" 2>&1
}

# figures LOG: executions, exec/s, coverage and features from libFuzzer's final lines.
figures() {
  local execs rate cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$1")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$1")
  cov=$(grep -E '^#[0-9]+.*cov: ' "$1" | tail -1 | sed -E 's/.*cov: ([0-9]+) ft: ([0-9]+).*/cov \1 ft \2/')
  echo "${execs:-?} execs, ${rate:-?} exec/s, ${cov:-?}"
}

smoke() {
  local secs=${1:-60} failed=0
  build
  mkdir -p "$dir/logs"
  local i=0
  for h in "${harnesses[@]}"; do
    ( if run_one "$h" "$dir/logs/smoke_$h.log" -max_total_time="$secs"; then
        echo "fuzz smoke: $h: ok ($(figures "$dir/logs/smoke_$h.log"))"
      else
        echo "fuzz smoke: $h: FAILED, see $dir/logs/smoke_$h.log" >&2
        grep -E 'ERROR|SUMMARY|runtime error' "$dir/logs/smoke_$h.log" | head -5 >&2
        exit 1
      fi ) &
    i=$((i + 1))
    if [ $((i % 2)) -eq 0 ]; then wait -n || failed=1; wait -n || failed=1; fi
  done
  while [ "$(jobs -r | wc -l)" -gt 0 ]; do wait -n || failed=1; done
  [ "$failed" -eq 0 ] || { echo "fuzz smoke: failures (reproducers in $dir/artifacts)" >&2; exit 1; }
  echo "${#harnesses[@]} passed, 0 failed"
}

long() {
  local runs=${1:-1000000}
  shift || true
  [ $# -gt 0 ] || set -- "${harnesses[@]}"
  build
  mkdir -p "$dir/logs"
  renice -n 19 $$ >/dev/null # the fuzzers below inherit it: the machine is shared
  echo "| harness | executions | exec/s | coverage (cov, ft) | result |"
  echo "|---------|-----------:|-------:|--------------------|--------|"
  for h in "$@"; do
    local log="$dir/logs/long_$h.log" result=ok
    run_one "$h" "$log" -runs="$runs" ${MF_FUZZ_MAX_SECONDS:+-max_total_time=$MF_FUZZ_MAX_SECONDS} ||
      result=FAILED
    local f; f=$(figures "$log")
    echo "| $h | ${f%% execs*} | $(echo "$f" | sed -E 's/.*execs, ([^ ]+) exec.*/\1/') | $(echo "$f" | sed -E 's/.*exec\/s, //') | $result |"
  done
}

case "${1:-}" in
  build) build ;;
  smoke) smoke "${2:-60}" ;;
  long) shift; long "$@" ;;
  run) shift; h=$1; shift; build; "$dir/fuzz/fuzz_$h" "$@" ;;
  *) sed -n '2,14p' "$0"; exit 2 ;;
esac
