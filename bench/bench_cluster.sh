#!/bin/bash
# bench_cluster.sh - clustering quality and speed on synthetic MagFace-like stores.
#
#   bench/bench_cluster.sh [quality|scale|anchor|all]     (default: quality)
#
# quality: one store of ~2000 identities / 65k rows x 512 (mf-synth, seed 1); one exact
#   kNN graph; every method with quality weighting on and off, (a) at its defaults and
#   (b) calibrated on the store's given, noisy /label (as a user would), all scored
#   against /true_label: pairwise F, BCubed F, NMI, clustering time.
# scale: 100k, 300k, 1M rows x 512 end to end (kNN + clustering, default method) on
#   MF_BENCH_THREADS (2) threads: time, peak RSS, recall@k of the approximate graph; and
#   100k again on the float32 path (no AMX) for the ratio.
# anchor: the same kNN graph by FAISS from Python (exact Flat and IVF,Flat), recall over
#   all rows and our time / theirs (bench/knn_anchor.py).
# MF_BENCH_METHODS limits the quality table (e.g. "anchors peaks"), MF_BENCH_SIZES the
# scale runs (e.g. "100000"). Tools from MF_BIN_DIR (default build/bin); work files in MF_BENCH_DIR
# (default /tmp/mf-bench-cluster, ~2.5 GB for the 1M store).
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MF_BIN_DIR:-$here/build/bin}
DIR=${MF_BENCH_DIR:-/tmp/mf-bench-cluster}
J=${MF_BENCH_THREADS:-2}
SIZES=${MF_BENCH_SIZES:-"100000 300000 1000000"}
mkdir -p "$DIR"
# Debian's OpenBLAS may not recognise a virtual CPU and fall back to its slowest
# (Prescott) kernels; name the core unless the user did.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo; then
    export OPENBLAS_CORETYPE=Haswell
fi
jget() { /usr/bin/python3 -c "import json,sys; d=json.loads(sys.stdin.readline()); print(d['$1'])"; }

# The method's own extra parameter: anchor quantile (anchors, weighted), resolution (leiden).
extra() {
    if [ $1 = anchors ] && [ $2 = magnitude ]; then printf 'q=%.2f' "$(jget anchor_quantile <<< "$3")"
    elif [ $1 = leiden ]; then printf 'r=%.2f' "$(jget resolution <<< "$3")"
    else echo -; fi
}

quality() {
    local s=$DIR/q65k.h5 g=$DIR/q65k.knn.h5
    [ -f "$s" ] || "$BIN/mf-synth" -q -j "$J" -o "$s" --rows 65000 --identities 2000 --seed 1
    local t0=$(date +%s.%N)
    [ -f "$g" ] || "$BIN/mf-cluster" -q -j "$J" --index Flat -g "$g" "$s" > /dev/null
    echo "# store: 65000 rows x 512, 2000 identities (mf-synth seed 1); kNN graph (exact, k=30):" \
         "$(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc)") s"
    printf "%-10s %-9s %-10s %6s %6s %6s %10s %10s %7s %8s\n" method weight params tau tau2 \
        extra pairwise_F bcubed_F NMI time_s
    for m in ${MF_BENCH_METHODS:-anchors peaks components leiden infomap}; do
        for w in magnitude none; do
            for mode in default calibrated; do
                local cal=""
                [ $mode = calibrated ] && cal="--calibrate --truth label"
                local js
                js=$("$BIN/mf-cluster" -q -j "$J" --method $m -w $w -g "$g" $cal --json \
                     -o "$DIR/q.out.h5" "$s")
                local ev
                ev=$("$BIN/mf-eval" --json --truth true_label "$DIR/q.out.h5")
                printf "%-10s %-9s %-10s %6.3f %6s %6s %10.4f %10.4f %7.4f %8.2f\n" $m $w $mode \
                    "$(jget tau <<< "$js")" \
                    "$( [ $m = anchors ] && printf '%.3f' "$(jget tau2 <<< "$js")" || echo -)" \
                    "$(extra $m $w "$js")" \
                    "$(jget pairwise_f <<< "$ev")" "$(jget bcubed_f <<< "$ev")" \
                    "$(jget nmi <<< "$ev")" "$(jget cluster_seconds <<< "$js")"
            done
        done
    done
}

scale() {
    # cpu_s (user + system) tells the machine's share apart: on a busy shared machine
    # total_s grows, cpu_s does not.
    printf "%-9s %-6s %-16s %9s %9s %9s %9s %9s %8s %9s %8s\n" rows path index knn_s \
        cluster_s total_s cpu_s peak_MB recall bcubed_F nmi
    # Each size on the automatic path (AMX int8 where the CPU has it), then the float32 path
    # (MF_NO_AMX=1) on the sizes in MF_BENCH_FLOAT_SIZES (default 100000): the ratio of the
    # two knn_s is what AMX buys.
    local runs="" n
    for n in $SIZES; do runs="$runs $n:auto"; done
    for n in ${MF_BENCH_FLOAT_SIZES-100000}; do runs="$runs $n:float"; done
    for r in $runs; do
        n=${r%%:*}
        local path=${r##*:} s=$DIR/s$n.h5 ids=$((n / 32))
        [ -f "$s" ] || "$BIN/mf-synth" -q -j "$J" -o "$s" --rows "$n" --identities "$ids" --seed 5
        local js ev
        MF_NO_AMX=$([ "$path" = float ] && echo 1 || echo 0) \
        /usr/bin/time -v -o "$DIR/time.$n" "$BIN/mf-cluster" -q -j "$J" --json \
            -o "$DIR/s$n.out.h5" "$s" > "$DIR/sum.$n"
        js=$(cat "$DIR/sum.$n")
        ev=$("$BIN/mf-eval" --json --truth true_label "$DIR/s$n.out.h5")
        local wall rss cpu
        wall=$(awk -F': ' '/Elapsed \(wall/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$DIR/time.$n")
        cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {print s}' "$DIR/time.$n")
        rss=$(awk -F': ' '/Maximum resident/ {print int($2/1024)}' "$DIR/time.$n")
        printf "%-9s %-6s %-16s %9.1f %9.1f %9.1f %9.1f %9s %8.4f %9.4f %8.4f\n" "$n" "$path" \
            "$(jget index <<< "$js")" "$(jget knn_seconds <<< "$js")" \
            "$(jget cluster_seconds <<< "$js")" "$wall" "$cpu" "$rss" "$(jget recall <<< "$js")" \
            "$(jget bcubed_f <<< "$ev")" "$(jget nmi <<< "$ev")"
        rm -f "$DIR/s$n.out.h5"
    done
}

anchor() {
    # The same graph from FAISS in Python (exact IndexFlatIP, and IndexIVFFlat with the
    # nominal lists and probes our join uses), recall over every row against the exact
    # graph, and our kNN time over theirs. Sizes: MF_BENCH_ANCHOR_SIZES (default 100000).
    for n in ${MF_BENCH_ANCHOR_SIZES:-100000}; do
        local s=$DIR/s$n.h5 ids=$((n / 32)) g=$DIR/anchor$n.knn.h5
        [ -f "$s" ] || "$BIN/mf-synth" -q -j "$J" -o "$s" --rows "$n" --identities "$ids" --seed 5
        rm -f "$g"
        local js
        js=$("$BIN/mf-cluster" -q -j "$J" --json -g "$g" --recall-sample 0 "$s")
        local nlist=${js#*\"index\":\"IVFJoin}
        nlist=${nlist%%\"*}
        echo "# $n rows, k=30, $J threads; our lists: $nlist nominal, probes: $((nlist / 8 > 32 ? nlist / 8 : 32))"
        OMP_NUM_THREADS=$J /usr/bin/python3 "$here/bench/knn_anchor.py" "$s" "$g" \
            "$(jget knn_seconds <<< "$js")" "$nlist" $((nlist / 8 > 32 ? nlist / 8 : 32))
    done
}

case "${1:-quality}" in
quality) quality ;;
scale) scale ;;
anchor) anchor ;;
all) quality; scale; anchor ;;
*) echo "usage: $0 [quality|scale|anchor|all]" >&2; exit 2 ;;
esac
