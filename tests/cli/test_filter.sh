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
