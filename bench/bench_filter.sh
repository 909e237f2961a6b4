#!/usr/bin/env bash
# bench_filter.sh - how well and how fast mf-filter cleans a synthetic store.
#
#   bench/bench_filter.sh            65k rows, 2000 identities (about a minute)
#   bench/bench_filter.sh --big      also 1M rows x 512-d, 33000 identities (~2 GB of
#                                    disk in $MF_BENCH_DIR, several minutes)
#
# Prints precision/recall (bench/filter_eval.py) of: junk flagged by the magnitude rules,
# mislabelled rows flagged by rule 2, duplicates flagged by --dedup; then time (wall and
# CPU) and peak RSS of each run (/usr/bin/time -v). Machines here are shared: compare the
# CPU seconds, the wall clock depends on the load.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MF_BIN_DIR:-$root/build/bin}
work=${MF_BENCH_DIR:-/tmp/mf_bench_filter}
big=0
[ "${1:-}" = "--big" ] && big=1
[ -x "$bin/mf-filter" ] || { echo "build first: scripts/build.sh" >&2; exit 1; }
mkdir -p "$work"
# Debian's OpenBLAS does not recognise some virtual CPUs and falls back to its slowest
# (Prescott) kernels; FAISS's flat search runs on its sgemm.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=Haswell
fi

timed() { # timed NAME cmd... : run, keep /usr/bin/time -v output in $work/NAME.time
  local name=$1; shift
  /usr/bin/time -v -o "$work/$name.time" "$@"
}

resources() { # resources NAME
  awk -v n="$1" -F': ' '
    /Elapsed/ {split($2, t, ":"); wall = (length(t) == 3) ? t[1]*3600 + t[2]*60 + t[3] : t[1]*60 + t[2]}
    /User time/ {u = $2} /System time/ {s = $2} /Maximum resident/ {rss = $2}
    END {printf "%s\twall %.1f s\tcpu %.1f s\tpeak RSS %.0f MB\n", n, wall, u + s, rss / 1024}' \
    "$work/$1.time"
}

run_set() { # run_set TAG ROWS IDENTITIES
  local tag=$1 rows=$2 ids=$3 store="$work/$1.h5"
  [ -e "$store" ] || timed "$tag-synth" "$bin/mf-synth" -q -o "$store" --rows "$rows" \
      --identities "$ids" --seed 1
  [ -e "$work/$tag-synth.time" ] && resources "$tag-synth"
  rm -f "$work/$tag-"*.out.h5
  timed "$tag-defaults" "$bin/mf-filter" -q "$store" -o "$work/$tag-defaults.out.h5" \
      --report "$work/$tag-defaults.tsv"
  timed "$tag-outliers" "$bin/mf-filter" -q "$store" --dry-run --outliers \
      --report "$work/$tag-outliers.tsv"
  timed "$tag-all" "$bin/mf-filter" -q "$store" -o "$work/$tag-all.out.h5" --auto --outliers \
      --dedup 0.95 --merge-labels 0.7 --min-per-label 3 --report "$work/$tag-all.tsv" \
      --json >"$work/$tag-all.json"
  /usr/bin/python3 "$root/bench/filter_eval.py" "$store" "$work/$tag-defaults.tsv" \
      "$tag defaults (--auto --outliers)"
  /usr/bin/python3 "$root/bench/filter_eval.py" "$store" "$work/$tag-outliers.tsv" \
      "$tag --outliers alone" | tail -n +2
  /usr/bin/python3 "$root/bench/filter_eval.py" "$store" "$work/$tag-all.tsv" \
      "$tag all rules, --dedup 0.95" | tail -n +2 | grep duplicates
  for r in defaults outliers all; do resources "$tag-$r"; done
  rm -f "$work/$tag-"*.out.h5
}

echo "# mf-filter on synthetic stores (OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}," \
     "$(nproc) cores)"
run_set s65k 65000 2000
[ $big -eq 1 ] && run_set s1m 1000000 33000
exit 0
