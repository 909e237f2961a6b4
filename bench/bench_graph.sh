#!/usr/bin/env bash
# bench_graph.sh - the kNN graph in pieces at scale (docs/CLUSTER.md, "The graph in
# pieces"): for each size, an mf-synth store (n/32 identities, seed 5), then
#   one process:  mf-graph build (plan + join + refinement) with --mem-limit
#   sharded:      mf-graph plan, N x shard, merge, (N x refine, merge) per round
#   clustering:   mf-cluster --graph (default method), mf-eval against /true_label
# and prints wall/CPU seconds and peak RSS of every step (/usr/bin/time), recall@30
# (1000 rows against an exact scan) and BCubed F.
#   bench/bench_graph.sh [SIZES...]        (default: 1000000 3000000)
# Environment: MF_BIN (tools, default build/bin), MF_BENCH_DIR (stores and graphs,
# default /tmp/mf-bench-graph; a 1M x 512 store is 2.2 GB), J (threads, 2), SHARDS (4),
# MEM (--mem-limit, 4G), PIECES_ARGS (extra mf-graph plan/build options), STEPS=0 to
# skip the sharded run, BUILD=0 to skip the one-process run (its graph must exist).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MF_BIN:-$root/build/bin}
DIR=${MF_BENCH_DIR:-/tmp/mf-bench-graph}
J=${J:-2}
SHARDS=${SHARDS:-4}
MEM=${MEM:-4G}
ROUNDS=${ROUNDS:-2}
mkdir -p "$DIR"
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}

# timed NAME CMD...: run CMD under /usr/bin/time; print "NAME wall_s cpu_s peak_MB".
timed() {
    local name=$1; shift
    /usr/bin/time -f "%e %U %S %M" -o "$DIR/time.txt" "$@" > "$DIR/out.txt"
    read -r wall user sys kb < "$DIR/time.txt"
    printf "%-18s %9.1f %9.1f %9.0f\n" "$name" "$wall" "$(echo "$user + $sys" | bc)" \
        "$((kb / 1024))"
}
jget() { /usr/bin/python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

for n in "${@:-1000000 3000000}"; do
    s=$DIR/s$n.h5
    [ -f "$s" ] || "$BIN/mf-synth" -q -j "$J" -o "$s" --rows "$n" --identities $((n / 32)) --seed 5
    echo "# $n rows x 512 ($(date -u +%F), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
    printf "%-18s %9s %9s %9s\n" step wall_s cpu_s peak_MB
    g=$DIR/g$n.h5
    [ "${BUILD:-1}" = 0 ] || timed build "$BIN/mf-graph" build -q -j "$J" --json --overwrite --mem-limit "$MEM" \
        --refine "$ROUNDS" ${PIECES_ARGS:-} -o "$g" "$s"
    [ "${BUILD:-1}" = 0 ] || echo "recall@30 $(jget recall < "$DIR/out.txt")  $(cat "$DIR/out.txt")"
    if [ "${STEPS:-1}" != 0 ]; then
        d=$DIR/steps$n
        mkdir -p "$d"   # steps already done there are no-ops (same job): remove it to re-time
        timed plan "$BIN/mf-graph" plan -q -j "$J" ${PIECES_ARGS:-} -o "$d/plan.h5" "$s"
        for ((K = 0; K < SHARDS; K++)); do
            timed "shard $K/$SHARDS" "$BIN/mf-graph" shard -q -j "$J" --mem-limit "$MEM" \
                -p "$d/plan.h5" --shard $K/$SHARDS -o "$d/part$K.h5" "$s"
        done
        timed merge "$BIN/mf-graph" merge -q -j "$J" --recall-sample 0 -o "$d/g0.h5" "$s" "$d"/part*.h5
        for ((r = 1; r <= ROUNDS; r++)); do
            for ((K = 0; K < SHARDS; K++)); do
                timed "refine$r $K/$SHARDS" "$BIN/mf-graph" refine -q -j "$J" --mem-limit "$MEM" \
                    -g "$d/g$((r - 1)).h5" --shard $K/$SHARDS -o "$d/r$r-$K.h5" "$s"
            done
            timed "merge$r" "$BIN/mf-graph" merge -q -j "$J" --recall-sample 0 -o "$d/g$r.h5" \
                "$s" "$d"/r$r-*.h5
        done
        /usr/bin/python3 - "$g" "$d/g$ROUNDS.h5" <<'PY'
import sys, h5py
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
same = all((a[d][:] == b[d][:]).all() for d in ("neighbors", "similarities"))
print("sharded graph == one-process graph:", same)
PY
    fi
    timed cluster "$BIN/mf-cluster" -q -j "$J" --graph "$g" --overwrite -o "$DIR/c$n.h5" "$s"
    "$BIN/mf-eval" --json --truth true_label "$DIR/c$n.h5" > "$DIR/eval.json"
    echo "BCubed F $(jget bcubed_f < "$DIR/eval.json")"
done
