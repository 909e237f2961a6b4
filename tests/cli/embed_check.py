"""Checks on mf-embed stores (h5py, independent of mfkit's reader).

  embed_check.py same-by-key A.h5 B.h5...   embeddings equal per sample key (the image's
                                            identity folder and file stem: id00/0)
  embed_check.py same-sorted A.h5 B.h5      same rows after sorting by id (shard merges)
  embed_check.py same A.h5 B.h5             same rows in the same order
  embed_check.py failed A.h5 ID:WORDS...    /failed has ID with a reason containing WORDS
  embed_check.py rows A.h5 N                exactly N rows
"""
import re
import sys

import h5py
import numpy as np


def load(path):
    with h5py.File(path, "r") as f:
        return (f["id"].asstr()[:], f["embedding"][:], f["label"][:],
                list(f["failed/id"].asstr()[:]), list(f["failed/reason"].asstr()[:]))


def key(sample_id):
    # tree/id00/0.jpg, faces.tar//id00/0.jpg, wds-000000.tar//id00_0.jpg, train.rec//1
    m = re.search(r"(id\d\d)[/_](\d+)\.jpg$", sample_id)
    return f"{m.group(1)}/{m.group(2)}" if m else None


def same_by_key(paths):
    ref_ids, ref_emb, ref_lab, _, _ = load(paths[0])
    ref = {key(i): (e, l) for i, e, l in zip(ref_ids, ref_emb, ref_lab)}
    assert len(ref) == len(ref_ids) and None not in ref, "reference keys"
    # RecordIO fixtures hold the reference images in sorted key order as records 1..N
    by_record = sorted(ref)
    for p in paths[1:]:
        ids, emb, lab, _, _ = load(p)
        assert len(ids) == len(ref), f"{p}: {len(ids)} rows, expected {len(ref)}"
        for i, e, l in zip(ids, emb, lab):
            rec = re.search(r"\.rec//(\d+)$", i)
            k = by_record[int(rec.group(1)) - 1] if rec else key(i)
            assert k in ref, f"{p}: unexpected id {i}"
            assert np.array_equal(e, ref[k][0]), f"{p}: {i} embedding differs"
            assert l == ref[k][1], f"{p}: {i} label {l}, expected {ref[k][1]}"


def same(a, b, sort):
    A, B = load(a), load(b)
    oa = np.argsort(A[0]) if sort else np.arange(len(A[0]))
    ob = np.argsort(B[0]) if sort else np.arange(len(B[0]))
    assert list(A[0][oa]) == list(B[0][ob]), "ids differ"
    assert np.array_equal(A[1][oa], B[1][ob]), "embeddings differ"
    assert np.array_equal(A[2][oa], B[2][ob]), "labels differ"
    assert sorted(A[3]) == sorted(B[3]), "failed lists differ"


def failed(path, specs):
    _, _, _, fid, reason = load(path)
    got = dict(zip(fid, reason))
    for spec in specs:
        ident, words = spec.split(":", 1)
        hits = [r for i, r in got.items() if ident in i]
        assert hits, f"no failed entry for {ident}: {got}"
        assert words.lower() in hits[0].lower(), f"{ident}: reason '{hits[0]}' lacks '{words}'"


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "same-by-key":
        same_by_key(args)
    elif cmd in ("same", "same-sorted"):
        same(args[0], args[1], cmd == "same-sorted")
    elif cmd == "failed":
        failed(args[0], args[1:])
    elif cmd == "rows":
        n = len(load(args[0])[0])
        assert n == int(args[1]), f"{args[0]}: {n} rows, expected {args[1]}"
