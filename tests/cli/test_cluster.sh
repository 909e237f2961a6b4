#!/bin/bash
# test_cluster.sh - mf-cluster and mf-eval end to end on small synthetic stores:
# exit codes, output store, graph reuse and stale graphs, thread-count independence,
# clear errors, and mf-eval against an independent numpy computation.
set -u
PY=/usr/bin/python3
command -v mf-cluster >/dev/null && command -v mf-eval >/dev/null && command -v mf-synth >/dev/null || exit 77
$PY -c 'import h5py, numpy' 2>/dev/null || exit 77
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail=0
check() { if "$@"; then :; else echo "FAIL: $*" >&2; fail=1; fi; }
code() { "$@" >/dev/null 2>&1; echo $?; }

mf-synth -q -o "$T/s.h5" --rows 800 --identities 40 --dim 128 --seed 3 || exit 1
mf-synth -q -o "$T/d64.h5" --rows 800 --identities 40 --dim 64 --seed 3 || exit 1

check [ "$(code mf-cluster --help)" = 0 ]
check [ "$(code mf-eval --help)" = 0 ]
check [ "$(code mf-cluster --no-such-option "$T/s.h5")" = 2 ]
check [ "$(code mf-cluster --method nope "$T/s.h5")" = 2 ]
check [ "$(code mf-cluster --tau 7 "$T/s.h5")" = 2 ]
check [ "$(code mf-eval "$T/s.h5" extra)" = 2 ]

# Output store: all rows plus /cluster; mf-eval reads it.
check mf-cluster -q -o "$T/c.h5" -g "$T/g.h5" "$T/s.h5"
check [ -f "$T/g.h5" ]
check $PY - "$T/s.h5" "$T/c.h5" <<'PY'
import sys, h5py, json
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
assert b["cluster"].shape == (800,), b["cluster"].shape
assert (a["embedding"][:] == b["embedding"][:]).all()
assert (a["true_label"][:] == b["true_label"][:]).all()
meta = json.loads(b.attrs["mf_cluster"])
assert meta["method"] == "anchors" and meta["rows"] == 800, meta
PY

# mf-eval against an independent numpy implementation of the same definitions.
mf-eval --json --truth true_label "$T/c.h5" > "$T/eval.json" || fail=1
check $PY - "$T/c.h5" "$T/eval.json" <<'PY'
import sys, json, h5py, numpy as np
f = h5py.File(sys.argv[1]); got = json.load(open(sys.argv[2]))
t, p = f["true_label"][:], f["cluster"][:]
n = len(t)
t = np.where(t < 0, -1 - np.arange(n) - 2**40, t)   # negatives are singletons
p = np.where(p < 0, -1 - np.arange(n) - 2**40, p)
_, ti = np.unique(t, return_inverse=True); _, pi = np.unique(p, return_inverse=True)
C = np.zeros((ti.max() + 1, pi.max() + 1)); np.add.at(C, (ti, pi), 1)
a, b = C.sum(1), C.sum(0)
tp = (C**2).sum() - n
P, R = tp / ((b**2).sum() - n), tp / ((a**2).sum() - n)
bp, br = ((C**2) / b[None, :]).sum() / n, ((C**2) / a[:, None]).sum() / n
nz = C > 0
mi = (C[nz] / n * np.log(C[nz] * n / np.outer(a, b)[nz])).sum()
h = lambda x: -(x / n * np.log(x / n)).sum()
want = dict(pairwise_p=P, pairwise_r=R, bcubed_p=bp, bcubed_r=br, nmi=mi / ((h(a) + h(b)) / 2))
for k, v in want.items():
    assert abs(got[k] - v) < 1e-9, (k, got[k], v)
assert got["bcubed_f"] > 0.5, got
PY

# Same result whatever the thread count, for every method; graph reuse changes nothing.
for m in anchors components peaks infomap leiden; do
    mf-cluster -q -j1 --method $m --tsv "$T/s.h5" > "$T/j1.tsv" || { echo "FAIL: $m -j1" >&2; fail=1; }
    mf-cluster -q -j2 --method $m --tsv "$T/s.h5" > "$T/j2.tsv" || fail=1
    mf-cluster -q -j2 --method $m -g "$T/g.h5" --tsv "$T/s.h5" > "$T/g.tsv" || fail=1
    check cmp -s "$T/j1.tsv" "$T/j2.tsv"
    check cmp -s "$T/j1.tsv" "$T/g.tsv"
    check [ "$(wc -l < "$T/j1.tsv")" = 801 ]
done
check [ "$(head -1 "$T/j1.tsv")" = "$(printf 'id\tcluster\tmagnitude')" ]

# The approximate graph (list join, AMX int8 products where the CPU has them, then
# refinement): same graph for any thread count, the float32 path finds the same
# neighbours, and the recall against exact search is reported and high.
mf-synth -q -o "$T/big.h5" --rows 6000 --identities 200 --dim 128 --seed 4 || exit 1
check mf-cluster -q -j1 --index IVFJoin64 --nprobe 8 -g "$T/a1.h5" --json "$T/big.h5" > "$T/a1.json"
check mf-cluster -q -j2 --index IVFJoin64 --nprobe 8 -g "$T/a2.h5" "$T/big.h5" > /dev/null
MF_NO_AMX=1 check mf-cluster -q -j2 --index IVFJoin64 --nprobe 8 -g "$T/af.h5" "$T/big.h5" > /dev/null
check /usr/bin/python3 - "$T" <<'PY'
import json, sys, h5py, numpy as np
t = sys.argv[1]
rec = json.loads(open(f"{t}/a1.json").readline())["recall"]
assert 0.95 <= rec <= 1, rec
a, b, f = (h5py.File(f"{t}/{n}.h5", "r")["neighbors"][:] for n in ("a1", "a2", "af"))
assert (a == b).all(), "graph depends on the thread count"
same = np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, f)])
assert same > 0.99, f"AMX and float32 paths share only {same:.4f} of neighbours"
PY

# Weighting off and calibration run and report.
check mf-cluster -q -w none -g "$T/g.h5" --json "$T/s.h5" > "$T/none.json"
check grep -q '"weight":"none"' "$T/none.json"
mf-cluster --calibrate --truth true_label -g "$T/g.h5" "$T/s.h5" 2> "$T/cal.err" >/dev/null || fail=1
check grep -q "calibrated on /true_label: tau" "$T/cal.err"

# A graph of other embeddings (other dim) is refused with a clear message.
out=$(mf-cluster -q -g "$T/g.h5" "$T/d64.h5" 2>&1); rc=$?
check [ $rc = 1 ]
check grep -q "built from other embeddings" <<< "$out"

# Empty store and a store whose embedding width disagrees with dim: clear errors.
$PY - "$T" <<'PY'
import sys, h5py, numpy as np
for name, rows, width in (("empty", 0, 128), ("baddim", 4, 16)):
    f = h5py.File(f"{sys.argv[1]}/{name}.h5", "w")
    f["embedding"] = np.ones((rows, width), np.float32)
    f["magnitude"] = np.ones(rows, np.float32)
    f.create_dataset("id", data=[f"r{i}" for i in range(rows)], dtype=h5py.string_dtype())
    f["label"] = np.zeros(rows, np.int64)
    f.attrs["mf_format"] = "mfkit-store"; f.attrs["mf_format_version"] = 1; f.attrs["dim"] = 128
PY
for s in empty baddim; do
    out=$(mf-cluster -o "$T/x.h5" "$T/$s.h5" 2>&1); rc=$?
    check [ $rc = 1 ]
    check grep -q "error: .*$s.h5" <<< "$out"
    check [ ! -e "$T/x.h5" ]
done
out=$(mf-eval "$T/empty.h5" 2>&1); check [ $? = 1 ]
out=$(mf-eval --pred nosuch "$T/c.h5" 2>&1); check [ $? = 1 ]
check grep -q "no dataset /nosuch" <<< "$out"
exit $fail
