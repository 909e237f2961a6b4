#!/usr/bin/env bash
# bench_robust.sh - mf-filter and mf-cluster at their defaults on stores nobody tuned them
# to: a grid of mf-synth generators (every profile plus extreme corners), each scored
# against its ground truth; prints one line per setting, then the worst case and the
# median of every column.
#
#   bench/bench_robust.sh              the grid (17 settings, 8,000 rows each; ~20 min
#                                      on 2 busy cores)
#   MF_ROBUST_ROWS=65000 MF_ROBUST_IDS=2000 bench/bench_robust.sh default
#                                      named settings only, at another size
#   MF_ROBUST_SEED=100 bench/bench_robust.sh
#                                      the same grid drawn again (setting i uses seed
#                                      MF_ROBUST_SEED + i; default 0): defaults chosen on
#                                      one draw are checked on another
#
# Columns: rule 1 (--auto) precision/recall against junk and unusable faces (quality
# below 0.25); rule 2 (--outliers, the default) precision/recall against wrong rows
# (mislabelled or junk) among the labelled rows that reached it. Then BCubed F of each
# clustering method at its defaults (thresholds from the graph) against /true_label, and
# "gap" = the same method calibrated on the store's own noisy /label minus the default.
# $MF_BENCH_DIR/thresholds.tsv keeps the thresholds each run used.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${MF_BIN_DIR:-$root/build/bin}
work=${MF_BENCH_DIR:-/tmp/mf_bench_robust}
rows=${MF_ROBUST_ROWS:-8000}
ids=${MF_ROBUST_IDS:-260}
methods=${MF_ROBUST_METHODS:-anchors components peaks infomap leiden}
py=/usr/bin/python3
[ -x "$bin/mf-cluster" ] || { echo "build first: scripts/build.sh" >&2; exit 1; }
mkdir -p "$work"
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=Haswell # Debian's OpenBLAS misreads some virtual CPUs
fi

# name|mf-synth options. Profiles first, then corners no profile reaches.
grid=(
  "default|--profile default"
  "clean|--profile clean"
  "noisy|--profile noisy"
  "blurry|--profile blurry"
  "multidrift|--profile multidrift"
  "tight|--profile tight"
  "loose|--profile loose"
  "lookalikes|--profile lookalikes"
  "varied|--profile varied"
  "heavytail|--profile heavytail"
  "magnoise|--profile magnoise"
  "hard|--profile hard"
  "loose-blurry|--profile blurry --center-cos 0.68 --inter-cos 0.2 --mag-base 8 --mag-slope 14"
  "tight-noisy|--profile noisy --center-cos 0.9 --inter-cos 0.05"
  "low-scale|--center-cos 0.6 --inter-cos 0.25 --noise 0.05"
  "drift-8|--profile multidrift --drift 0.95 --drift-dirs 8 --low-quality 0.3"
  "mislabel-20|--profile noisy --mislabel 0.2 --mislabel-lookalike 0.9"
)

cluster_runs() { # cluster_runs NAME: default and calibrated per method; prints F columns
  local name=$1 s="$work/$1.h5" m out f
  for m in $methods; do
    for mode in default calibrated; do
      out="$work/$name.$m.$mode.h5"
      "$bin/mf-cluster" -q --overwrite --graph "$work/$name.knn.h5" --method "$m" \
        $([ $mode = calibrated ] && echo --calibrate) -o "$out" --json "$s" |
        $py -c 'import json, sys; j = json.load(sys.stdin); print(sys.argv[1], j["tau"],
                j.get("tau2", ""), j["largest"], j["suspect_clusters"], sep="\t")' \
          "$name $m $mode" >>"$work/thresholds.tsv"
    done
  done
  for m in $methods; do
    f=$($py "$root/bench/robust_eval.py" cluster "$work/$name.$m.default.h5" \
          "$work/$name.$m.calibrated.h5" | cut -f1 | paste -sd' ')
    set -- $f
    printf '\t%s\t%s' "$1" "$(awk -v a="$1" -v b="$2" 'BEGIN{printf "%.4f", b - a}')"
  done
  rm -f "$work/$name".*.default.h5 "$work/$name".*.calibrated.h5
}

only=" $* "
header="setting\tr1_p\tr1_r\tr2_p\tr2_r"
for m in $methods; do header="$header\t${m}_F\t${m}_gap"; done
printf "%b\n" "$header" | tee "$work/table.tsv"
printf "setting method mode\ttau\ttau2\tlargest\tsuspect\n" >"$work/thresholds.tsv"
seed=${MF_ROBUST_SEED:-0}
for entry in "${grid[@]}"; do
  name=${entry%%|*} opts=${entry#*|}
  seed=$((seed + 1))
  [ -n "${*:-}" ] && [[ "$only" != *" $name "* ]] && continue
  s="$work/$name.h5"
  rm -f "$s" "$work/$name.knn.h5"
  "$bin/mf-synth" -q -o "$s" $opts --rows "$rows" --identities "$ids" --seed "$seed"
  "$bin/mf-filter" -q --overwrite "$s" --dry-run --report "$work/$name.filter.tsv"
  line="$name\t$($py "$root/bench/robust_eval.py" filter "$s" "$work/$name.filter.tsv" |
                 cut -f1-4)"
  line="$line$(cluster_runs "$name")"
  printf "%b\n" "$line" | tee -a "$work/table.tsv"
  rm -f "$s" "$work/$name.knn.h5"
done
# Worst and median per column: the lowest precision/recall/F, the largest gap.
$py - "$work/table.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter="\t"))
head, body = rows[0], rows[1:]
for what in ("worst", "median"):
    out = [what]
    for i, h in enumerate(head[1:], 1):
        v = [float(r[i]) for r in body]
        x = statistics.median(v) if what == "median" else max(v) if h.endswith("_gap") else min(v)
        at = "" if what == "median" else " (" + body[v.index(x)][0] + ")"
        out.append(f"{x:.4f}{at}" if h.endswith(("_F", "_gap")) else f"{x:.3f}{at}")
    print("\t".join(out))
PY
