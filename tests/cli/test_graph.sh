#!/usr/bin/env bash
# test_graph.sh - mf-graph (the kNN graph in pieces): the sharded graph equals the
# one-process graph byte for byte (N = 1, 3, 4; 1 and 2 threads; a --mem-limit that
# makes several passes over the store),
# merge refuses a missing, repeated or foreign part, re-runs are no-ops, recall on a
# small store, and mf-cluster on the merged graph gives the direct path's clusters.
source "$(dirname "$0")/lib.sh"
command -v mf-graph >/dev/null && command -v mf-synth >/dev/null || skip "tools not built"
need_python_module h5py

mf-synth -q -o s.h5 --rows 3000 --identities 100 --dim 64 --seed 4
mf-synth -q -o other.h5 --rows 3000 --identities 100 --dim 64 --seed 5

# One process: plan, one shard, merge (in memory), two refinement rounds.
mf-graph build -q --refine 2 --lists 30 -o one.h5 --json s.h5 >build.json
"$PY" - build.json <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["recall"] >= 0.95, r          # recall@30 on 1000 rows against an exact scan
PY

# The same through the steps: N shards, merge, refine shards per round, merge.
mf-graph plan -q --lists 30 -o plan.h5 s.h5
same_graph() {
  "$PY" - "$1" "$2" <<'PY'
import sys, h5py
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
for d in ("neighbors", "similarities"):
    assert a[d].shape == b[d].shape, d
    assert (a[d][:] == b[d][:]).all(), (sys.argv[1], sys.argv[2], d)
assert a.attrs["fingerprint"] == b.attrs["fingerprint"]
assert a.attrs["index"] == b.attrs["index"], (a.attrs["index"], b.attrs["index"])
PY
}
steps() { # steps N THREADS [MEM]: the graph through N shards
  local N=$1 j=$2 mem=${3:+--mem-limit $3} d=n$1j$2
  mkdir -p $d
  for ((K = 0; K < N; K++)); do
    mf-graph shard -q -j $j -p plan.h5 --shard $K/$N $mem -o $d/p$K.h5 s.h5
  done
  mf-graph merge -q --recall-sample 0 -o $d/g0.h5 s.h5 $d/p*.h5
  for r in 1 2; do
    for ((K = 0; K < N; K++)); do
      mf-graph refine -q -j $j -g $d/g$((r - 1)).h5 --shard $K/$N $mem -o $d/r$r-$K.h5 s.h5
    done
    mf-graph merge -q --recall-sample 0 -o $d/g$r.h5 s.h5 $d/r$r-*.h5
  done
  same_graph one.h5 $d/g2.h5 || fail "$N shards, $j threads: graph differs from one process"
}
steps 1 1
steps 3 2
steps 4 1
# A memory limit that leaves room for a few lists at a time: several passes over the
# store (waves), the same graph. (4 probes, so that a wave is not every row.)
mf-graph plan -q --lists 30 --probes 4 -o planw.h5 s.h5
mf-graph shard -q -p planw.h5 --shard 0/1 -o w.h5 s.h5
mf-graph merge -q --recall-sample 0 -o gw.h5 s.h5 w.h5
lim=$(((256 << 20) + 2300 * 1024))   # the fixed part (256 MiB reserve + ~2 MB) + ~1/3 of the rows
for K in 0 1; do
  mf-graph shard --verbose -p planw.h5 --shard $K/2 --mem-limit $lim -o w$K-2.h5 s.h5 2>waves.txt
  passes=$(grep -oE '[0-9]+ passes' waves.txt | cut -d' ' -f1)
  [ "${passes:-0}" -gt 1 ] || fail "--mem-limit $lim: $passes pass(es) over the store, expected several"
done
mf-graph merge -q --recall-sample 0 -o gw2.h5 s.h5 w0-2.h5 w1-2.h5
same_graph gw.h5 gw2.h5 || fail "waves changed the graph"
mkdir -p slurm
SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_COUNT=3 \
  mf-graph shard -q -p plan.h5 -o slurm/p1.h5 s.h5
"$PY" -c "import h5py; a, b = h5py.File('n3j2/p1.h5'), h5py.File('slurm/p1.h5')
assert (a['rows'][:] == b['rows'][:]).all() and (a['neighbors'][:] == b['neighbors'][:]).all()" ||
  fail "the SLURM array task 5 of 4..6 is not shard 1/3"

# Re-running a finished step is a no-op (exit 0); other inputs are refused (exit 2).
before=$(stat -c %Y n3j2/p0.h5)
expect_exit 0 mf-graph shard -p plan.h5 --shard 0/3 -o n3j2/p0.h5 s.h5
grep -q "nothing to do" "$T/err" || fail "no-op re-run says nothing"
[ "$(stat -c %Y n3j2/p0.h5)" = "$before" ] || fail "a no-op re-run rewrote its output"
expect_exit 0 mf-graph merge -o n3j2/g0.h5 s.h5 n3j2/p*.h5
expect_exit 0 mf-graph plan --lists 30 -o plan.h5 s.h5
expect_exit 2 mf-graph shard -p plan.h5 --shard 1/3 -o n3j2/p0.h5 s.h5

# merge checks the set: missing, repeated, foreign (another N, another plan): exit 1.
expect_exit 1 mf-graph merge -o bad.h5 s.h5 n3j2/p0.h5 n3j2/p2.h5
expect_one_line_error "shard 1/3"
[ ! -e bad.h5 ] || fail "a refused merge left an output"
expect_exit 0 mf-graph merge -q --allow-partial --recall-sample 0 -o partial.h5 s.h5 n3j2/p0.h5 n3j2/p2.h5
expect_exit 1 mf-graph merge -o bad.h5 s.h5 n3j2/p0.h5 n3j2/p1.h5 n3j2/p1.h5
expect_one_line_error "n3j2/p1.h5"
expect_exit 1 mf-graph merge -o bad.h5 s.h5 n3j2/p0.h5 n3j2/p1.h5 n4j1/p2.h5
expect_one_line_error "n4j1/p2.h5"
mf-graph plan -q --lists 31 -o plan2.h5 s.h5
mf-graph shard -q -p plan2.h5 --shard 2/3 -o foreign.h5 s.h5
expect_exit 1 mf-graph merge -o bad.h5 s.h5 n3j2/p0.h5 n3j2/p1.h5 foreign.h5
expect_one_line_error "foreign.h5"
# a plan or parts of other embeddings
expect_exit 1 mf-graph shard -p plan.h5 --shard 0/3 -o x.h5 other.h5
expect_one_line_error "plan.h5"
expect_exit 1 mf-graph merge -o bad.h5 other.h5 n3j2/p*.h5
expect_exit 2 mf-graph shard -p plan.h5 --shard 3/3 -o x.h5 s.h5
expect_exit 1 mf-graph shard -p plan.h5 --mem-limit 1K --shard 0/3 -o x.h5 s.h5
expect_exit 2 mf-graph frobnicate s.h5

# mf-cluster on the merged graph: the same clusters as on the one-process graph, and
# the embeddings are not read (the graph is reused).
mf-cluster -q --graph one.h5 --tsv s.h5 >c_one.tsv
mf-cluster -q --graph n4j1/g2.h5 --tsv s.h5 >c_four.tsv
cmp -s c_one.tsv c_four.tsv || fail "clusters on the merged graph differ"
expect_exit 1 mf-cluster --graph one.h5 --tsv other.h5
echo ok
