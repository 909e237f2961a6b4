#!/usr/bin/env bash
# mf-embed: every input kind, sharding, SIGKILL + resume, bad inputs, feature text.
# Uses the small reduced-width checkpoint from tests/fixtures/model (the network's
# fidelity is tested in unit/test_model; here the pipeline around it is).
source "$(dirname "$0")/lib.sh"
need_python_module h5py
M="$MF_FIXTURES/model/tiny_dp.pth"
S="$MF_FIXTURES/source"
CHECK="$MF_SOURCE_DIR/tests/cli/embed_check.py"
embed() { mf-embed -q -j 2 -m "$M" "$@"; }

# --- each input kind; the same image through each gives the same embedding and label
expect_exit 0 embed -o dir.h5 --label-from-dir "$S/tree"
"$PY" "$CHECK" rows dir.h5 8
# --label-from-dir keeps the mapping: label i <-> folder name, in sorted order
"$PY" -c "
import h5py; f = h5py.File('dir.h5')
assert list(f['labels/name'].asstr()[:]) == ['id00', 'id01', 'id02', 'id03'], f['labels/name'][:]
assert sorted(set(f['label'][:])) == [0, 1, 2, 3]"
for kind in faces.tar faces.tar.gz faces.zip wds-000000.tar train.rec; do
  expect_exit 0 embed -o "$kind.h5" --label-from-dir "$S/$kind"
done
"$PY" "$CHECK" same-by-key dir.h5 faces.tar.h5 faces.tar.gz.h5 faces.zip.h5 \
  wds-000000.tar.h5 train.rec.h5
grep -q "train.rec//1" <(mf-inspect --head 1 train.rec.h5) || fail "RecordIO ids"

# --- list with labels and landmarks; a bad line is a failed input, not a stop
expect_exit 3 embed -o list.h5 --list "$S/faces.list"
"$PY" "$CHECK" failed list.h5 "tree/id01/0.jpg:"
expect_exit 0 mf-inspect --head 100 list.h5
grep -q "raw/id00.jpg	0	" "$T/out" || fail "aligned list entry with label 0 missing"

# --- images that are not 112x112: failed unless --resize
expect_exit 3 embed -o raw.h5 "$S/raw"
"$PY" "$CHECK" failed raw.h5 "id00.jpg:112x112"
expect_exit 0 embed -o raw_resized.h5 --resize "$S/raw"
"$PY" "$CHECK" rows raw_resized.h5 2

# --- shards 0..2 merged equal the unsharded run (as sets: merge keeps shard order)
FACES="$MF_SOURCE_DIR/data/faces"
expect_exit 0 embed -o all.h5 --label-from-dir "$FACES"
for k in 0 1 2; do expect_exit 0 embed -o "s$k.h5" --label-from-dir --shard "$k/3" "$FACES"; done
expect_exit 0 mf-merge -q -o merged.h5 s0.h5 s1.h5 s2.h5
"$PY" "$CHECK" same-sorted all.h5 merged.h5
# SLURM array variables choose the shard by the task's position in the array
SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=1 SLURM_ARRAY_TASK_COUNT=3 SLURM_ARRAY_TASK_STEP=2 \
  mf-embed -q -m "$M" -o slurm.h5 --label-from-dir "$FACES"
"$PY" "$CHECK" same slurm.h5 s2.h5

# --- SIGKILL mid-run, then the same command resumes: equal to an uninterrupted run.
# 10 copies of the sample faces (symlinks, distinct ids) make a run long enough to
# kill while it works; the progress counter says when rows have been written.
for c in $(seq -w 10); do
  for d in "$FACES"/*/; do
    mkdir -p "big/c$c/$(basename "$d")"
    ln -s "$d"*.jpg "big/c$c/$(basename "$d")/"
  done
done
expect_exit 0 embed -o straight.h5 -b 8 big
mf-embed -j 2 -m "$M" -o killed.h5 -b 8 --progress big 2> progress.txt &
pid=$!
done_rows=0
for _ in $(seq 3000); do
  done_rows=$( (grep -aoE "embedding (\[[#.]+\] )?[0-9]+" progress.txt || true) | tail -n 1 | tr -dc 0-9)
  [ "${done_rows:-0}" -ge 40 ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
kill -9 "$pid" 2>/dev/null || fail "the run ended before it could be killed"
wait "$pid" 2>/dev/null || true
[ "${done_rows:-0}" -ge 40 ] || fail "no progress seen before the kill"
[ -e killed.h5.partial ] && [ ! -e killed.h5 ] || fail "a killed run must leave only .partial"
# Resuming with another model or other inputs is refused, and leaves the run intact.
expect_exit 1 mf-embed -q -m "$MF_FIXTURES/model/tiny_bare.pth" -o killed.h5 -b 8 big
grep -q "different model, inputs or settings" "$T/err" || fail "resume clash message (model)"
expect_exit 1 mf-embed -q -m "$M" -o killed.h5 -b 8 big "$S/tree"
grep -q "different model, inputs or settings" "$T/err" || fail "resume clash message (inputs)"
# Resuming passes over stored samples without reading them: break one that is stored.
first=$("$PY" -c "import h5py; print(h5py.File('killed.h5.partial')['id'].asstr()[0])")
ln -sf "$S/broken/truncated.jpg" "$first"
expect_exit 0 embed -o killed.h5 -b 8 big
[ ! -e killed.h5.partial ] || fail ".partial left after completion"
"$PY" "$CHECK" same straight.h5 killed.h5
# A finished output is not replaced without --overwrite, which starts over.
expect_exit 2 mf-embed -q -m "$M" -o killed.h5 "$S/tree"
expect_exit 0 mf-embed -q -m "$M" -o killed.h5 "$S/tree" --overwrite
"$PY" "$CHECK" rows killed.h5 8

# --- broken inputs: recorded with reasons, exit 3, the run goes on
expect_exit 3 mf-embed -j 2 -m "$M" -o broken.h5 "$S/broken" "$S/broken/truncated.tar" \
  "$S/broken/badmagic.rec" "$S/tree/id00/0.jpg" /nonexistent.jpg
"$PY" "$CHECK" failed broken.h5 "truncated.jpg:truncated" "badcrc.png:crc" \
  "empty.jpg:empty" "notimage.jpg:not an image" "huge.png:limit" "huge.jpg:limit" \
  "nonexistent.jpg:no such file" "truncated.tar//b.jpg:truncated archive member" "badmagic.rec//@:magic"
# rows: the good jpeg, and what the .rec and .tar held before their damage
"$PY" "$CHECK" rows broken.h5 "$("$PY" -c "
import h5py; f = h5py.File('broken.h5'); ids = list(f['id'].asstr()[:])
assert any(i.endswith('tree/id00/0.jpg') for i in ids), ids
assert any('badmagic.rec//' in i for i in ids), 'records before the damage are kept'
print(len(ids))")"
"$PY" "$CHECK" failed broken.h5 "good.png:112x112"
[ "$(grep -c "warning" "$T/err")" -ge 6 ] || fail "each failed input gets a warning line"

# --- the official MagFace feature text
expect_exit 0 embed -o feat.h5 --feat-list feat.txt "$S/tree"
[ "$(wc -l < feat.txt)" -eq 8 ] || fail "feat list: one line per image"
"$PY" - <<'PY'
import h5py, numpy as np
f = h5py.File("feat.h5")
ids, emb = f["id"].asstr()[:], f["embedding"][:]
for line, i, e in zip(open("feat.txt"), ids, emb):
    assert line.endswith(" \n"), "each value is followed by a space"
    parts = line.split()
    assert parts[0] == i and len(parts) == 1 + emb.shape[1]
    assert np.allclose(np.array(parts[1:], dtype=np.float32), e, rtol=1e-7, atol=0)
PY

# --- usage errors
expect_exit 2 mf-embed -m "$M" "$S/tree"                  # no -o
expect_exit 2 mf-embed -m "$M" -o x.h5                    # no inputs
expect_exit 2 mf-embed -m "$M" -o x.h5 --shard 3/3 "$S/tree"
expect_exit 1 mf-embed -m "$S/faces.zip" -o x.h5 "$S/tree"   # not a checkpoint
expect_one_line_error faces.zip
echo ok
