#!/usr/bin/env bash
# mf-filter end to end on a small synthetic store: exit codes, input never modified,
# output columns and record, report, dry run, labels missing, kill -9 leaves no output.
set -euo pipefail
command -v mf-filter >/dev/null && command -v mf-synth >/dev/null || { echo "tools not built"; exit 1; }
py=/usr/bin/python3
$py -c 'import h5py' 2>/dev/null || { echo "skip: no python3-h5py"; exit 77; }

tmp=$(mktemp -d /tmp/mf_test_filter_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
fail() { echo "FAIL: $*" >&2; exit 1; }

mf-synth -q -o in.h5 --identities 60 --rows 2400 --dim 64 --seed 5
sum_before=$(sha256sum in.h5 | cut -d' ' -f1)

# --help and usage errors
mf-filter --help | grep -q -- '--min-center-cos' || fail "--help lacks the rules"
set +e
mf-filter --no-such-option in.h5 -o x.h5 2>err; rc=$?
[ $rc -eq 2 ] || fail "bad option exited $rc"
mf-filter in.h5 2>err; rc=$?
[ $rc -eq 2 ] || fail "missing -o exited $rc"
mf-filter in.h5 -o in.h5 --auto 2>err; rc=$?
[ $rc -eq 2 ] && grep -q "never writes over its inputs" err || fail "output = input exited $rc"
mf-filter in.h5 -o x.h5 --apply-merge 2>err; rc=$?
[ $rc -eq 2 ] || fail "--apply-merge alone exited $rc"
mf-filter missing.h5 -o x.h5 --auto 2>err; rc=$?
[ $rc -eq 1 ] && grep -q "missing.h5" err || fail "missing input exited $rc"
set -e

# defaults: --auto --outliers; all columns carried; the record attribute
mf-filter in.h5 -o out.h5 --report rep.tsv --json >sum.json 2>err
grep -q "using --auto --outliers" err || fail "defaults not announced"
$py - <<'EOF'
import h5py, json
s = json.load(open("sum.json"))
i, o = h5py.File("in.h5", "r"), h5py.File("out.h5", "r")
n_in, n_out = len(i["label"]), len(o["label"])
assert s["rows_in"] == n_in and s["rows_out"] == n_out, (s, n_in, n_out)
assert n_out + sum(s["dropped"].values()) == n_in
assert s["dropped"]["auto"] > 0 and s["dropped"]["spread"] > 0, s["dropped"]
for col in ("true_label", "is_junk", "quality", "dup_of", "embedding", "id"):
    assert col in o and len(o[col]) == n_out, col
rec = json.loads(o.attrs["mf_filter"])
assert rec["rules"]["auto"] and rec["rows_out"] == n_out
rows = open("rep.tsv").read().splitlines()
assert rows[0] == "id\tlabel\tmagnitude\trule\tfigure"
assert len(rows) - 1 == n_in - n_out
kept = set(x.decode() for x in o["id"][:])
for line in rows[1:]:
    assert line.split("\t")[0] not in kept
EOF
[ "$(sha256sum in.h5 | cut -d' ' -f1)" = "$sum_before" ] || fail "input modified"

# --min-center-cos alone runs only the floor: exactly the rows whose cosine to their
# label's leave-one-out, magnitude-weighted centre is below it (centres recomputed once
# without the rows below the floor), computed here independently
mf-filter in.h5 --dry-run --min-center-cos 0.45 --report floor.tsv --json >floor.json 2>floor.err
grep -q "rule 2: floor: cosine to the centre below 0.45" floor.err || fail "floor not named"
grep -q "spread\|nearer" floor.err && fail "--min-center-cos alone ran more than the floor"
$py - <<'EOF2'
import csv, json, h5py, numpy as np
f = h5py.File("in.h5", "r")
x = f["embedding"][:].astype(np.float64)
x /= np.linalg.norm(x, axis=1, keepdims=True)
mag, lab = f["magnitude"][:], f["label"][:]
n, K = len(lab), lab.max() + 1
cand = lab >= 0
srt = np.sort(mag[cand])
q5, q50 = (srt[int(round(q * (len(srt) - 1)))] for q in (0.05, 0.5))
w = np.clip((mag - q5) / (q50 - q5), 0.05, 1.0)
use = cand.copy()
for _ in range(2):
    S = np.zeros((K, x.shape[1]))
    np.add.at(S, lab[use], w[use, None] * x[use])
    dot = np.einsum("ij,ij->i", S[lab], x)
    wi = np.where(use, w, 0)
    cos = (dot - wi) / np.sqrt((S[lab] ** 2).sum(1) - 2 * wi * dot + wi * wi)
    below = cand & (cos < 0.45)
    use = cand & ~below
assert np.abs(cos[cand] - 0.45).min() > 1e-4, "a row sits on the floor: pick another"
rep = list(csv.reader(open("floor.tsv"), delimiter="\t"))[1:]
got = {int(r[0].rsplit("/", 1)[1].split(".")[0]) for r in rep}
assert all(r[3] == "center-cos" for r in rep), {r[3] for r in rep}
want = set(np.flatnonzero(below).tolist())
assert got == want, (len(got), len(want), sorted(got ^ want)[:10])
assert len(want) > 20, len(want)
figs = {int(r[0].rsplit("/", 1)[1].split(".")[0]): float(r[4]) for r in rep}
assert max(abs(figs[i] - cos[i]) for i in got) < 1e-3
s = json.load(open("floor.json"))
assert s["rules"]["outliers"] is False and s["rules"]["nearer_identity"] is False, s["rules"]
assert s["dropped"]["spread"] == 0 and s["dropped"]["nearer-identity"] == 0, s["dropped"]
EOF2

# --dry-run writes the report only
mf-filter in.h5 -o dry.h5 --dry-run --min-magnitude 20 --report dry.tsv -q
[ ! -e dry.h5 ] && [ ! -e dry.h5.partial ] || fail "--dry-run wrote a store"
[ "$(wc -l <dry.tsv)" -gt 1 ] || fail "--dry-run report empty"
awk -F'\t' 'NR > 1 && ($3 >= 20 || $4 != "min-magnitude") {exit 1}' dry.tsv ||
    fail "--min-magnitude dropped a row at or above 20"

# --apply-merge writes the merged /label
mf-filter in.h5 -o merged.h5 --merge-labels 0.35 --apply-merge --json -q >m.json
$py - <<'EOF'
import h5py, json
s = json.load(open("m.json"))
assert s["merges"], "no look-alike pair found at 0.35"
o = h5py.File("merged.h5", "r")
labels = set(o["label"][:].tolist())
for a, b, c in s["merges"]:
    assert not (a in labels and b in labels), (a, b)
EOF

# labels missing + a label rule = usage error; magnitude rules still work
cp in.h5 nolab.h5
$py -c 'import h5py; f = h5py.File("nolab.h5", "r+"); f["label"][:] = -1'
set +e
mf-filter nolab.h5 -o x.h5 --outliers 2>err; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "no labels" err || fail "label rule without labels exited $rc"
[ ! -e x.h5 ] || fail "output written despite the usage error"
mf-filter nolab.h5 -o nl.h5 -q 2>err   # defaults: --auto only
[ -e nl.h5 ] || fail "defaults on an unlabelled store"

# NaN and infinite values (a damaged or foreign store): those rows are dropped by their
# own rule and poison no estimate (the --auto fit, the percentiles, the summary)
cp in.h5 nonfinite.h5
$py -c '
import h5py, numpy as np
f = h5py.File("nonfinite.h5", "r+")
e = f["embedding"][0]; e[3] = np.nan; f["embedding"][0] = e
m = f["magnitude"][:]; m[1] = np.inf; m[2] = np.nan; f["magnitude"][:] = m'
for rules in "" "--drop-lowest 5" "--drop-lowest-per-label 5 --outliers" "--dedup 0.95"; do
    rm -f nanout.h5
    mf-filter nonfinite.h5 -o nanout.h5 $rules --json >s.json 2>err || fail "NaN store ($rules): $(cat err)"
    ! grep -qiw nan err || fail "a NaN reached the summary ($rules): $(cat err)"
    $py -c '
import h5py, json, sys, numpy as np
s = json.load(open("s.json"))
assert s["dropped"]["not-finite"] == 3, (sys.argv[1], s["dropped"])
o = h5py.File("nanout.h5")
assert np.isfinite(o["magnitude"][:]).all() and np.isfinite(o["embedding"][:]).all(), sys.argv[1]
assert all(np.isfinite(v) for v in s["magnitude_before"].values()), s["magnitude_before"]' "$rules"
done

# kill -9 in the middle leaves no output (at most a .partial)
mf-synth -q -o big.h5 --identities 400 --rows 40000 --dim 256 --seed 6
mf-filter big.h5 -o killed.h5 --auto --outliers --dedup 0.95 -j 1 -q &
pid=$!
sleep 1
if kill -0 $pid 2>/dev/null; then
    kill -9 $pid
    wait $pid 2>/dev/null || true
    [ ! -e killed.h5 ] || fail "a killed run left killed.h5"
else
    wait $pid || true
    echo "note: the run finished before the kill; kill -9 check not exercised"
fi
echo "ok"
