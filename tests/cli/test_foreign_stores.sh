#!/usr/bin/env bash
# Any valid store works as input to every tool, whatever string and numeric types the
# program that wrote it chose (issue 16, item 2): stores written by h5py with fixed- and
# variable-length, ASCII and UTF-8 ids, integer labels of every width, float16/32/64
# embeddings. Derived stores come out in mfkit's own types and read back equal.
source "$(dirname "$0")/lib.sh"
need_python_module h5py

"$PY" - <<'PY'
import h5py, numpy as np
rng = np.random.default_rng(1)
n, d = 60, 16
ids = [f"dir/img_{i:04d}.jpg" for i in range(n)]
variants = {
    "fixed_bytes":  ("S24", np.int64, np.float32),
    "vlen_ascii":   (h5py.string_dtype("ascii"), np.int32, np.float64),
    "vlen_utf8":    (h5py.string_dtype("utf-8"), np.int16, np.float32),
    "fixed_utf8":   (h5py.string_dtype("utf-8", 24), np.int8, np.float16),
    "uint_labels":  ("S24", np.uint16, np.float32),
}
for name, (id_type, label_type, emb_type) in variants.items():
    with h5py.File(f"{name}.h5", "w") as f:
        e = rng.normal(size=(n, d)).astype(emb_type)
        f["embedding"] = e
        f["magnitude"] = np.linalg.norm(e.astype(np.float64), axis=1).astype(emb_type)
        data = [s.encode() for s in ids] if getattr(id_type, "kind", "S") != "O" else ids
        f.create_dataset("id", data=data, dtype=id_type)
        f["label"] = (np.arange(n) % 6).astype(label_type)
        f.attrs["mf_format"] = "mfkit-store"
        f.attrs["mf_format_version"] = np.int32(1)
        f.attrs["dim"] = np.int16(d)
PY

for s in fixed_bytes vlen_ascii vlen_utf8 fixed_utf8 uint_labels; do
    expect_exit 0 mf-inspect --head 2 $s.h5
    grep -q "^dir/img_0000.jpg	0	" "$T/out" || fail "$s: ids or labels misread: $(cat "$T/out")"
    expect_exit 0 mf-filter $s.h5 -o f_$s.h5 --drop-lowest 10
    expect_exit 0 mf-cluster $s.h5 -o c_$s.h5
    expect_exit 0 mf-eval --pred cluster c_$s.h5
    expect_exit 0 mf-merge -o m_$s.h5 $s.h5 f_$s.h5
    expect_exit 0 mf-export -f featlist -o $s.feat $s.h5
    expect_exit 3 mf-report -o $s.html c_$s.h5 # the ids name no images: exit 3
    "$PY" - "$s" <<'PY'
import sys, h5py, numpy as np
s = sys.argv[1]
src, merged, clus = h5py.File(f"{s}.h5"), h5py.File(f"m_{s}.h5"), h5py.File(f"c_{s}.h5")
want = [x.decode() if isinstance(x, bytes) else x for x in src["id"][:]]
assert list(merged["id"].asstr()[:]) == want, s
assert list(clus["id"].asstr()[:]) == want, s
assert merged["label"].dtype == np.int64 or merged["label"].dtype == src["label"].dtype, s
assert np.array_equal(clus["label"][:], src["label"][:].astype(np.int64)), s
assert np.allclose(clus["embedding"][:], src["embedding"][:].astype(np.float32)), s
lines = open(f"{s}.feat").read().splitlines()
assert len(lines) == 60 and lines[0].startswith("dir/img_0000.jpg "), s
PY
done
echo "foreign stores: every tool reads every variant"
