#!/usr/bin/env bash
# mf-export: every format read back by independent Python readers; missing sources give
# exit 3 with each id named; outputs are atomic; the store is never modified.
source "$(dirname "$0")/lib.sh"
need_python_module h5py
need_python_module cv2
FIX="$MF_SOURCE_DIR/tests/cli/export_fixture.py"

"$PY" "$FIX" make s.h5 40 1
sum_before=$(sha256sum s.h5)

# --- wds: shards of 4 samples, labels, metadata and bytes as in the sources
expect_exit 0 mf-export -f wds --shard-size 4 -o wds/shard s.h5
"$PY" "$FIX" checkwds wds/shard s.h5 4 > n || fail "wds read-back"
[ "$(cat n)" -gt 20 ] || fail "too few samples"
grep -q "left out" "$T/err" || fail "unlabelled rows not reported"
ls wds | grep -q partial && fail "temporaries left behind"
expect_exit 2 mf-export -f wds -o wds/shard s.h5          # exists
expect_exit 0 mf-export -f wds --shard-size 100 --overwrite -o wds/shard s.h5
[ "$(ls wds | wc -l)" -eq 1 ] || fail "stale shards of the earlier export left"
"$PY" "$FIX" checkwds wds/shard s.h5 100 >/dev/null || fail "wds after overwrite"

# --- rec: insightface layout read by a reader written from the format
expect_exit 0 mf-export -f rec -o rec/train s.h5
"$PY" "$FIX" checkrec rec/train.rec s.h5 || fail "rec read-back"
ls rec | grep -qv -e '^train.rec$' -e '^train.idx$' && fail "rec temporaries left"
expect_exit 2 mf-export -f rec -o rec/train.rec s.h5      # exists
# ids that point into a .rec are read through its .idx; an absent key is reported
"$PY" "$FIX" recstore rec/train.rec fromrec.h5
expect_exit 3 mf-export -f wds -o fromrec/shard fromrec.h5
grep -q "missing 'rec/train.rec//99999'" "$T/err" || fail "absent key not reported"
"$PY" "$FIX" checkwds fromrec/shard fromrec.h5 10000 >/dev/null || fail "wds from rec ids"

# --- featlist: MagFace feature text, every row, exact floats
expect_exit 0 mf-export -f featlist -o feat.txt s.h5
"$PY" "$FIX" checkfeat feat.txt s.h5 || fail "featlist"

# --- list: plain files only; archive members are skipped, each named, exit 3
expect_exit 3 mf-export -f list -o list.txt s.h5
n_arch=$("$PY" -c "
import json, sys; e = json.load(open('/dev/stdin'))
print(sum('//' in v[1] for v in e.values()))" < <("$PY" "$FIX" expect s.h5))
[ "$(grep -c "skipped 'src/pack.tar//" "$T/err")" -eq "$n_arch" ] || fail "skipped members not all named"
"$PY" - <<'PY' < <("$PY" "$FIX" expect s.h5)
import json, sys
exp = {v[1]: v[0] for v in json.load(sys.stdin).values() if "//" not in v[1]}
got = dict(l.rstrip("\n").split("\t") for l in open("list.txt"))
assert {k: int(v) for k, v in got.items()} == exp, "list differs"
PY

# --- tree: symlinks by default, copies with --copy; archive members written as files
expect_exit 0 mf-export -f tree -o tree s.h5
expect_exit 0 mf-export -f tree --copy --label cluster -o treec s.h5
"$PY" - <<'PY' < <("$PY" "$FIX" expect s.h5; "$PY" "$FIX" expect s.h5 --column cluster)
import json, os, sys
sys.path.insert(0, os.environ["MF_SOURCE_DIR"] + "/tests/cli")
from export_fixture import source_bytes
lab, clu = (json.loads(l) for l in sys.stdin)
for root, exp, link in (("tree", lab, True), ("treec", clu, False)):
    files = {}
    for d in sorted(os.listdir(root)):
        for f in os.listdir(f"{root}/{d}"):
            files[int(f.split("_")[0])] = (int(d), f"{root}/{d}/{f}")
    assert set(files) == {int(r) for r in exp}, root
    for r, (cls, path) in files.items():
        assert cls == exp[str(r)][0], (root, r)
        plain = "//" not in exp[str(r)][1]
        assert os.path.islink(path) == (link and plain), path
        assert open(path, "rb").read() == source_bytes(exp[str(r)][1]), path
PY
expect_exit 2 mf-export -f tree -o tree s.h5              # never into an existing folder

# --- sources moved: exit 3, one warning per missing id, a summary, the rest exported
mv src/pack.tar moved.tar
expect_exit 3 mf-export -f wds -o miss/shard s.h5
want=$("$PY" -c "
import json, sys; e = json.load(open('/dev/stdin'))
print(''.join(sorted(v[1] + '\n' for v in e.values() if '//' in v[1])), end='')" < <("$PY" "$FIX" expect s.h5))
got=$(sed -n "s/^mf-export: warning: missing '\(.*\)': .*/\1/p" "$T/err" | sort)
[ "$got" = "$want" ] || { cat "$T/err"; fail "missing ids not listed one per line"; }
grep -q "source images missing" "$T/err" || fail "no summary line"
"$PY" "$FIX" checkwds miss/shard s.h5 10000 >/dev/null || fail "rows that exist must be exported"
mv moved.tar src/pack.tar
mkdir elsewhere && mv src elsewhere/
expect_exit 3 mf-export -f tree -o gone s.h5
[ "$(grep -c "missing '" "$T/err")" -gt 20 ] || fail "each missing id must be listed"
expect_exit 0 mf-export -f wds --root elsewhere -o moved/shard s.h5   # --root finds them
mv elsewhere/src .

# --- usage errors and the input store untouched
expect_exit 2 mf-export -o x s.h5
expect_exit 2 mf-export -f zip -o x s.h5
expect_exit 2 mf-export -f wds s.h5
expect_exit 1 mf-export -f wds -o x nothere.h5; expect_one_line_error nothere.h5
[ "$(sha256sum s.h5)" = "$sum_before" ] || fail "the input store was modified"
echo ok
