#!/usr/bin/env bash
# mf-inspect and mf-merge against stores written by h5py, and h5py reading ours.
source "$(dirname "$0")/lib.sh"
need_python_module h5py
FIX="$MF_SOURCE_DIR/tests/cli/store_fixture.py"

# --- mf-inspect figures equal numpy's on a foreign (h5py-written) store
"$PY" "$FIX" write full.h5 1000 7 --shards 3 --dup 25
expect_exit 0 mf-inspect --json full.h5
"$PY" - "$T/out" <<'PY' < <("$PY" "$FIX" stats full.h5)
import json, sys
ours = json.load(open(sys.argv[1])); ref = json.load(sys.stdin)
assert ours["rows"] == ref["rows"], (ours["rows"], ref["rows"])
for k, v in ref["magnitude"].items():
    assert abs(ours["magnitude"][k] - v) <= 1e-5 * max(1, abs(v)), (k, ours["magnitude"][k], v)
assert ours["labels"]["identities"] == ref["identities"]
assert ours["labels"]["unlabelled"] == ref["unlabelled"]
assert ours["labels"]["largest"][0]["count"] == ref["largest_count"]
assert sum(ours["histogram"]["counts"]) == ref["rows"]
assert ours["model"] == "magface-test" and ours["dim"] == 16 and ours["failed"] == 1
PY
expect_exit 0 mf-inspect full.h5
grep -q "^rows *1000" "$T/out" || fail "text summary lacks the row count"
grep -q "#" "$T/out" || fail "text summary lacks the histogram"
expect_exit 0 mf-inspect --head 3 full.h5
[ "$(head -1 "$T/out")" = "$(printf 'id\tlabel\tmagnitude')" ] || fail "--head header"
[ "$(wc -l <"$T/out")" -eq 4 ] || fail "--head 3 must print 3 rows"
grep -q "^dir/ÿ00002.jpg	" "$T/out" || fail "--head ids (UTF-8)"

# --- mf-merge of the shards equals the unsharded store (repeated ids dropped)
expect_exit 0 mf-merge -o merged.h5 full.h5.0 full.h5.1 full.h5.2
grep -q "50 duplicate ids dropped" "$T/err" || { cat "$T/err"; fail "duplicate count"; }
[ ! -e merged.h5.partial ] || fail "a .partial was left behind"
"$PY" - <<'PY'
import h5py, numpy as np
a, b = h5py.File("full.h5"), h5py.File("merged.h5")
for k in ("embedding", "magnitude", "label", "quality_note"):
    assert np.array_equal(a[k][:], b[k][:]), k
assert list(a["id"].asstr()[:]) == list(b["id"].asstr()[:])
assert list(b["failed/id"].asstr()[:]) == ["bad0.jpg", "bad1.jpg", "bad2.jpg"]
assert b.attrs["mf_format"] == "mfkit-store" and b.attrs["model"] == "magface-test"
PY

# --- the h5py snippet in docs/FORMAT.md runs on a store mfkit wrote
cp merged.h5 faces.h5
sed -n '/^```python/,/^```/p' "$MF_SOURCE_DIR/docs/FORMAT.md" | sed '1d;$d' > snippet.py
"$PY" snippet.py > snippet.out || fail "docs/FORMAT.md snippet failed"
grep -q "^1000 rows, dim 16, model magface-test, 3 failed$" snippet.out || { cat snippet.out; fail "snippet output"; }

# --- mismatched inputs are refused before anything is written
"$PY" - <<'PY'
import h5py
import shutil
shutil.copy("full.h5.1", "other_model.h5")
with h5py.File("other_model.h5", "a") as f:
    f.attrs["model"] = "magface-iresnet18"
PY
expect_exit 1 mf-merge -o bad.h5 full.h5.0 other_model.h5
expect_one_line_error other_model.h5
[ ! -e bad.h5 ] && [ ! -e bad.h5.partial ] || fail "failed merge left files"
expect_exit 2 mf-merge -o merged.h5 full.h5.0       # exists, no --overwrite
expect_exit 2 mf-merge full.h5.0                    # no -o

# --- broken stores: exit 1, one line naming the file
echo "not hdf5" > junk.h5
expect_exit 1 mf-inspect junk.h5; expect_one_line_error junk.h5
head -c 2000 full.h5 > trunc.h5
expect_exit 1 mf-inspect trunc.h5; expect_one_line_error trunc.h5
expect_exit 1 mf-inspect missing.h5; expect_one_line_error missing.h5
"$PY" -c "
import h5py, shutil
shutil.copy('full.h5', 'nolabel.h5')
with h5py.File('nolabel.h5', 'a') as f: del f['label']
shutil.copy('full.h5', 'strmag.h5')
with h5py.File('strmag.h5', 'a') as f:
    del f['magnitude']; f.create_dataset('magnitude', data=['x'] * 1000, dtype=h5py.string_dtype())
shutil.copy('full.h5', 'short.h5')
with h5py.File('short.h5', 'a') as f:
    l = f['label'][:999]; del f['label']; f['label'] = l
shutil.copy('full.h5', 'wrongdim.h5')
with h5py.File('wrongdim.h5', 'a') as f: f.attrs['dim'] = 512
"
for f in nolabel strmag short wrongdim; do
  expect_exit 1 mf-inspect $f.h5; expect_one_line_error $f.h5
done
grep -q "/embedding" "$T/err" || fail "dim error must name /embedding"
echo "ok"
