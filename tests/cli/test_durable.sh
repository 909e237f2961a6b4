#!/usr/bin/env bash
# The cases of issue 12 ("no input is ever destroyed, nothing incomplete is ever
# published"), each as a user or an attacker would meet it. docs/DURABILITY.md lists them.
source "$(dirname "$0")/lib.sh"
need_python_module h5py
SAME="$PY $MF_SOURCE_DIR/tests/cli/h5_same.py"
MODEL="$MF_FIXTURES/model/tiny.h5"
FACES="$MF_FIXTURES/source/tree"

mf-synth -q -o base.h5 --identities 50 --rows 2000 --dim 64 --seed 3
cp base.h5 s.h5
sum_inputs() { sha256sum s.h5 base.h5 "$@"; }
sum_inputs >inputs.sha

# 1. a report named like the input: refused, input intact (was truncated by fopen "w")
expect_exit 2 mf-filter s.h5 -o out.h5 --report s.h5
expect_one_line_error s.h5
expect_exit 2 mf-filter s.h5 --dry-run --report s.h5
[ ! -e out.h5 ] || fail "refused run left an output"

# 3. an output that is an input, by any name
ln -s s.h5 alias.h5
expect_exit 2 mf-report -o s.h5 s.h5
expect_exit 2 mf-export -f featlist -o s.h5 s.h5
expect_exit 2 mf-export -f list -o alias.h5 s.h5
expect_exit 2 mf-cluster s.h5 -o alias.h5
expect_exit 2 mf-merge -o s.h5 base.h5 s.h5
expect_exit 2 mf-cluster s.h5 -o g.h5 -g g.h5          # two outputs of one run
grep -q "named twice" "$T/err" || fail "-g = -o: $(cat "$T/err")"
cp "$FACES/id00/0.jpg" in.jpg
expect_exit 2 mf-embed -m "$MODEL" -o e.h5 --feat-list in.jpg in.jpg
cp "$MF_FIXTURES/model/tiny_dp.pth" c.pth
expect_exit 2 mf-convert c.pth -o c.pth
sha256sum -c --quiet inputs.sha || fail "an input changed"
cmp -s in.jpg "$FACES/id00/0.jpg" && cmp -s c.pth "$MF_FIXTURES/model/tiny_dp.pth" ||
    fail "an input changed"
# existing text outputs are refused as documented (exit 2), replaced with --overwrite
echo keep >list.txt
expect_exit 2 mf-export -f list -o list.txt s.h5
[ "$(cat list.txt)" = keep ] || fail "list.txt overwritten without --overwrite"
expect_exit 3 mf-export -f list -o list.txt --overwrite s.h5 # ids are not files: exit 3

# 5. symlinks, FIFOs and devices are written through, never replaced
touch target.txt
ln -s target.txt link.txt
expect_exit 0 mf-export -f featlist -o link.txt --overwrite s.h5
[ -L link.txt ] && [ "$(wc -l <target.txt)" = 2000 ] || fail "symlink replaced or target not written"
mkfifo pipe
cat pipe >from_pipe &
reader=$!
expect_exit 0 mf-export -f featlist -o pipe s.h5
wait $reader
[ -p pipe ] && [ "$(wc -l <from_pipe)" = 2000 ] || fail "FIFO output"
expect_exit 0 mf-export -f featlist -o /dev/null s.h5
[ -c /dev/null ] || fail "/dev/null is no longer a device"
out=$(mf-export -q -f featlist -o /dev/stdout s.h5 | wc -l)
[ "$out" = 2000 ] && [ -L /dev/stdout ] || fail "/dev/stdout output ($out lines)"
expect_exit 2 mf-filter s.h5 -o pipe --auto                 # a store needs a regular file

# 9. a killed run leaves a temporary that the next run recognises and removes
# (the report goes to a FIFO nobody reads: the run waits there, its temporary made)
mkfifo hold
( mf-filter -q s.h5 -o k.h5 --auto --report hold & pid=$!; sleep 1; kill -9 $pid ) 2>/dev/null || true
python_temp=$(ls k.h5.partial-* 2>/dev/null | head -1 || true)
[ -n "$python_temp" ] || fail "the killed run left no temporary to find"
expect_exit 0 mf-filter s.h5 -o k.h5 --auto
[ -z "$(ls k.h5.partial-* 2>/dev/null)" ] || fail "stale temporary not removed"
[ -z "$python_temp" ] || grep -q "left by a run that did not finish" "$T/err" ||
    fail "the removal of '$python_temp' was not reported"
expect_exit 2 mf-filter s.h5 -o k.h5 --auto                 # exists: refused ...
expect_exit 0 mf-filter s.h5 -o k.h5 --auto --overwrite     # ... unless --overwrite
expect_exit 0 mf-merge -o m.h5 s.h5
expect_exit 0 mf-merge -o m.h5 --overwrite s.h5 base.h5

# 10. a user's folder that looks like our temporary is never touched
mkdir keep.partial && echo precious >keep.partial/x
expect_exit 0 mf-cluster -q -o c.h5 s.h5
mf-export -q -f tree -o keep c.h5 || true
[ "$(cat keep.partial/x)" = precious ] || fail "a user's keep.partial/ was deleted"

# 4. two runs of one job: the second never takes the first's partial
mkfifo slow.list
mf-embed -q -m "$MODEL" -o job.h5 --list slow.list -b 1 2>job1.err &
first=$!
exec 7>slow.list
for f in "$FACES"/id0*/0.jpg; do echo "$f" >&7; done
sleep 1 # the first run holds job.h5.partial now
expect_exit 1 mf-embed -m "$MODEL" -o job.h5 --list slow.list -b 1 --overwrite
grep -q "being written by another running process" "$T/err" || fail "concurrent run: $(cat "$T/err")"
for f in "$FACES"/id0*/1.jpg; do echo "$f" >&7; done
exec 7>&-
wait $first || fail "the first run failed: $(cat job1.err)"
rows=$($PY -c "import h5py; print(len(h5py.File('job.h5')['id']))")
[ "$rows" = 8 ] || fail "the first run published $rows of 8 rows"

# 4b. a run killed between creating its partial and the first flush left a bare HDF5
# superblock: it holds nothing, so the same command starts over (it used to refuse it
# as "cannot be read" until --overwrite); a damaged partial of some size is still refused
$PY -c "
import h5py, os
f = h5py.File('unflushed.h5.partial', 'w')
f.create_dataset('a', shape=(0, 8), maxshape=(None, 8), dtype='f4')
os._exit(0)"
expect_exit 0 mf-embed -q -m "$MODEL" -o unflushed.h5 "$FACES/id00"
[ -e unflushed.h5 ] && [ ! -e unflushed.h5.partial ] || fail "a never-flushed partial blocked the run"
head -c 8192 /dev/urandom >damaged.h5.partial
expect_exit 1 mf-embed -q -m "$MODEL" -o damaged.h5 "$FACES/id00"
grep -q "cannot be read" "$T/err" || fail "damaged partial: $(cat "$T/err")"
[ "$(stat -c %s damaged.h5.partial)" = 8192 ] || fail "a damaged partial was touched"

# 7. NaN/Inf magnitudes and embeddings: reported, never a crash
cp s.h5 inf.h5
$PY - <<'PY'
import h5py, numpy as np
f = h5py.File("inf.h5", "r+")
m = f["magnitude"]; m[3] = np.inf; m[7] = -np.inf; m[11] = np.nan
PY
expect_exit 0 mf-inspect inf.h5
grep -q "not finite 3 rows" "$T/out" || fail "mf-inspect does not count non-finite rows"
expect_exit 3 mf-report -o inf.html inf.h5                  # ids are not images: exit 3
grep -q "3 rows have a NaN or infinite magnitude" inf.html || fail "report"
$PY - <<'PY'
# a checkpoint with a NaN weight is refused at load
import torch
sd = torch.load("c.pth", map_location="cpu")
state = sd["state_dict"] if "state_dict" in sd else sd
key = next(k for k in state if k.endswith("conv1.weight"))
state[key].view(-1)[0] = float("nan")
torch.save(sd, "nan.pth")
PY
expect_exit 1 mf-convert --info nan.pth
grep -q "NaN or infinite" "$T/err" || fail "NaN weights: $(cat "$T/err")"

# 11. a corrupted byte in HDF5's string heap: one line naming the file, no crash
$PY - <<'PY'
import struct
data = bytearray(open("s.h5", "rb").read())
first = data.find(b"GCOL")          # the collection holding the string attributes
d = bytearray(data); d[first + 16 + 8 + 3] ^= 0x40; open("heap_attr.h5", "wb").write(d)
last = data.rfind(b"GCOL")          # a collection of ids
o = last + 16
for _ in range(5):
    size = struct.unpack("<Q", data[o + 8:o + 16])[0]
    o += 16 + (size + 7) // 8 * 8
d = bytearray(data); d[o + 8 + 2] ^= 0x7f; open("heap_id.h5", "wb").write(d)
PY
for bad in heap_attr.h5 heap_id.h5; do
    expect_exit 1 mf-inspect --head 5000 "$bad"
    expect_one_line_error "$bad"
    grep -q "damaged" "$T/err" || fail "$bad: $(cat "$T/err")"
    expect_exit 1 mf-filter "$bad" -o never.h5 --auto
    [ ! -e never.h5 ] || fail "output from a damaged input"
done

sha256sum -c --quiet inputs.sha || fail "an input changed"
echo "durable: all cases hold"
