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
ls rec | grep -qv -e '^train.rec$' -e '^train.idx$' -e '^property$' && fail "rec temporaries left"
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

# --- training-ready: identity names, the property file, shuffled shards, nothing to export
MODEL="$MF_FIXTURES/model/tiny.h5"
mkdir -p named && for who in "Ana Lima" "Bo/Ye" ".." "Ana Lima " "x"; do
    d="named/$who"; [ "$who" = "Bo/Ye" ] && d="named/Bo_Ye"; [ "$who" = ".." ] && d="named/dotdot"
    mkdir -p "$d" && cp "$MF_SOURCE_DIR"/data/faces/id00/*.jpg "$d/"
done
mf-embed -q -m "$MODEL" -o named.h5 --label-from-dir named
"$PY" - <<'PY'
import h5py
f = h5py.File("named.h5", "r+")
names = f["labels/name"]
# names as another program may have written them: a slash, "..", two that sanitise alike
v = names.asstr()[:]
v[2], v[3], v[4] = "Bo/Ye", "..", "Bo_Ye"
del f["labels/name"]
f["labels"].create_dataset("name", data=list(v), dtype=h5py.string_dtype())
PY
expect_exit 0 mf-export -f tree -o byname named.h5
ls byname > folders
grep -qx "Ana Lima" folders && grep -qx "Ana Lima " folders || fail "names as folders: $(cat folders)"
grep -qx "_." folders || fail "'..' must not name a folder: $(cat folders)"
[ "$(grep -c '^Bo_Ye~' folders)" = 2 ] || fail "colliding names must get their class: $(cat folders)"
expect_exit 0 mf-export -f rec -o named_rec/train named.h5
"$PY" - <<'PY' || fail "property file"
# insightface's load_property: "num_classes,h,w" in the folder of the .rec
line = open("named_rec/property").read().strip().split(",")
assert [int(x) for x in line] == [5, 112, 112], line
PY
expect_exit 0 mf-export -f wds --shard-size 5 -o plain/s named.h5
expect_exit 0 mf-export -f wds --shard-size 5 --shuffle --seed 7 -o mixed/s named.h5
expect_exit 0 mf-export -f wds --shard-size 5 --shuffle --seed 7 -o again/s named.h5
expect_exit 0 mf-export -f wds --shard-size 5 --shuffle --seed 8 -o other/s named.h5
"$PY" - <<'PY' || fail "shuffled shards"
import tarfile, json, glob
def shards(prefix):
    out = []
    for p in sorted(glob.glob(prefix + "-*.tar")):
        with tarfile.open(p) as t:
            out.append([json.loads(t.extractfile(m).read()) for m in t.getmembers()
                        if m.name.endswith(".json")])
    return out
plain, mixed, again, other = (shards(p) for p in ("plain/s", "mixed/s", "again/s", "other/s"))
assert len({j["class"] for j in plain[0]}) == 1, "store order: the first shard is one identity"
assert len({j["class"] for j in mixed[0]}) > 1, "shuffled: the first shard mixes identities"
key = lambda s: [[j["row"] for j in shard] for shard in s]
assert key(mixed) == key(again), "the same seed must give the same order"
assert key(mixed) != key(other), "another seed, another order"
assert sorted(r for s in key(mixed) for r in s) == sorted(r for s in key(plain) for r in s)
names = {j["label_name"] for s in mixed for j in s}
assert "Ana Lima" in names and "Bo/Ye" in names, names   # .json carries the name as given
PY
expect_exit 0 mf-export -f rec --shuffle --seed 3 -o shuffled_rec/train named.h5
"$PY" "$FIX" checkrec shuffled_rec/train.rec named.h5 >/dev/null 2>&1 ||
    "$PY" - <<'PY' || fail "shuffled rec must stay grouped by class"
import struct
# a shuffled .rec keeps each identity's images together (the format's ranges)
data = open("shuffled_rec/train.rec", "rb").read()
labels, at = [], 0
while at < len(data):
    magic, lrec = struct.unpack("<II", data[at:at + 8]); n = lrec & ((1 << 29) - 1)
    flag, label = struct.unpack("<If", data[at + 8:at + 16])
    if flag == 0: labels.append(label)
    at += 8 + n + (4 - n % 4) % 4
assert labels == sorted(labels), labels
PY
"$PY" -c "import h5py; f = h5py.File('named.h5', 'r+'); f['label'][:] = -1"
expect_exit 1 mf-export -f wds -o none/s named.h5
grep -q "nothing would be exported" "$T/err" || fail "an unlabelled store exported nothing with exit 0"
[ ! -e none ] || [ -z "$(ls none)" ] || fail "an empty export left files"

# --- usage errors and the input store untouched
expect_exit 2 mf-export -o x s.h5
expect_exit 2 mf-export -f zip -o x s.h5
expect_exit 2 mf-export -f wds s.h5
expect_exit 1 mf-export -f wds -o x nothere.h5; expect_one_line_error nothere.h5
[ "$(sha256sum s.h5)" = "$sum_before" ] || fail "the input store was modified"
echo ok
