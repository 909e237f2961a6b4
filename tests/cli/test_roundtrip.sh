#!/usr/bin/env bash
# Round trips through the formats trainers read: embed -> export (RecordIO, WebDataset)
# -> embed the export again gives the same embeddings with labels renumbered 0..K-1.
source "$(dirname "$0")/lib.sh"
need_python_module h5py
M="$MF_FIXTURES/model/tiny_dp.pth"
embed() { mf-embed -q -j 2 -m "$M" "$@"; }

# Labels 3,5,7,.. (not 0..K-1) so renumbering is visible: a list with explicit labels.
i=0
for f in "$MF_SOURCE_DIR"/data/faces/id0[0-4]/*.jpg; do
  echo "$f $(( (i / 8) * 2 + 3 ))"; i=$((i + 1))
done > in.list
expect_exit 0 embed -o a.h5 --list in.list
expect_exit 0 mf-export a.h5 --format rec -o rec/train
expect_exit 0 embed -o from_rec.h5 rec/train.rec
expect_exit 0 mf-export a.h5 --format wds --shard-size 16 -o wds/faces
expect_exit 0 embed -o from_wds.h5 wds/faces-*.tar

"$PY" - <<'PY'
import h5py, numpy as np
a = h5py.File("a.h5")
emb, lab = a["embedding"][:], a["label"][:]
classes = {l: k for k, l in enumerate(sorted(set(lab)))}
want = sorted((classes[l], e.tobytes()) for l, e in zip(lab, emb))
for name in ("from_rec.h5", "from_wds.h5"):
    b = h5py.File(name)
    got = sorted((int(l), e.tobytes()) for l, e in zip(b["label"][:], b["embedding"][:]))
    assert len(got) == len(want), (name, len(got), len(want))
    assert got == want, f"{name}: embeddings or labels differ after the round trip"
print("round trips ok:", len(want), "rows,", len(classes), "classes")
PY
echo ok
