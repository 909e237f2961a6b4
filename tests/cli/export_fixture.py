"""Test inputs and independent readers for mf-export / mf-report (no mfkit code used).

  export_fixture.py make STORE.h5 N SEED
        images under src/ (JPEG files, a few PNGs, and a tar archive of members) and a
        store written with h5py whose ids point at them (relative paths); some rows have
        label -1; adds /cluster (labels, one identity split in two, two merged)
  export_fixture.py expect STORE.h5 [--missing-ok] [--column label|cluster]
        print JSON {row: [class, id]} for rows with a class and an image on disk
  export_fixture.py checkwds PREFIX STORE.h5 SHARD_SIZE
        read the shards with tarfile: keys, .cls, .json and image bytes vs the sources
  export_fixture.py checkrec OUT.rec STORE.h5
        read the insightface RecordIO with a reader written from the format
        (../shared/FORMATS.md): header record, identity ranges, labels, image bytes
  export_fixture.py recstore OUT.rec STORE.h5
        a store whose ids are the records of OUT.rec (`OUT.rec//<key>`), one key absent
  export_fixture.py checkfeat FILE STORE.h5
        the MagFace feature text holds every row's embedding exactly
"""
import glob
import io
import json
import os
import struct
import sys
import tarfile

import cv2
import h5py
import numpy as np


def face(rng, label, k):
    img = np.full((112, 112, 3), (label * 37 % 255, 90, 160), np.uint8)
    img = (img.astype(np.int16) + rng.integers(-30, 30, img.shape)).clip(0, 255).astype(np.uint8)
    cv2.putText(img, f"{label}/{k}", (8, 60), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
    return img


def encode(img, ext):
    ok, buf = cv2.imencode("." + ext, img)
    assert ok
    return buf.tobytes()


def cmd_make(args):
    out, n, seed = args[0], int(args[1]), int(args[2])
    rng = np.random.default_rng(seed)
    os.makedirs("src/img", exist_ok=True)
    ids, labels, members = [], [], []
    for i in range(n):
        label = int(i % 6) if i % 11 != 5 else -1
        ext = "png" if i % 7 == 3 else "jpg"
        data = encode(face(rng, label, i), ext)
        if i % 4 == 1:  # every fourth image lives in the archive
            name = f"m/{label}_{i}.{ext}"
            members.append((name, data))
            ids.append(f"src/pack.tar//{name}")
        else:
            os.makedirs(f"src/img/{label}", exist_ok=True)
            path = f"src/img/{label}/{i}.{ext}"
            with open(path, "wb") as f:
                f.write(data)
            ids.append(path)
        labels.append(label)
    with tarfile.open("src/pack.tar", "w") as t:
        for name, data in reversed(members):  # archive order differs from row order
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    labels = np.array(labels, np.int64)
    cluster = labels.copy()
    cluster[(labels == 2) & ((np.arange(n) // 6) % 2 == 0)] = 7   # identity 2 split in two
    cluster[labels == 4] = 3                                # identities 3, 4 merged
    emb = rng.normal(size=(n, 8)).astype(np.float32) * rng.uniform(5, 30, (n, 1)).astype(np.float32)
    with h5py.File(out, "w") as f:
        f.attrs["mf_format"] = "mfkit-store"
        f.attrs["mf_format_version"] = 1
        f.attrs["dim"] = 8
        f.attrs["model"] = "magface-test"
        f["embedding"] = emb
        f["magnitude"] = np.linalg.norm(emb, axis=1).astype(np.float32)
        f.create_dataset("id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f["label"] = labels
        f["cluster"] = cluster


def load(store, column="label"):
    with h5py.File(store, "r") as f:
        return (list(f["id"].asstr()[:]), f[column][:], f["magnitude"][:], f["embedding"][:])


def source_bytes(id_):
    if ".rec//" in id_:
        rec, key = id_.split("//", 1)
        recs = read_recordio(rec) if os.path.exists(rec) else {}
        return unpack(recs[int(key)])[2] if int(key) in recs else None
    if "//" in id_:
        tar, member = id_.split("//", 1)
        if not os.path.exists(tar):
            return None
        with tarfile.open(tar) as t:
            try:
                return t.extractfile(member).read()
            except KeyError:
                return None
    return open(id_, "rb").read() if os.path.exists(id_) else None


def expected(store, column="label"):
    """row -> (class, id) for exported rows: classes rank the distinct labels >= 0."""
    ids, labels, _, _ = load(store, column)
    ranks = {v: k for k, v in enumerate(sorted(set(int(x) for x in labels if x >= 0)))}
    return {r: (ranks[int(labels[r])], ids[r]) for r in range(len(ids)) if labels[r] >= 0}


def cmd_checkwds(args):
    prefix, store, shard_size = args[0], args[1], int(args[2])
    exp = expected(store)
    _, _, mag, _ = load(store)
    shards = sorted(glob.glob(prefix + "-*.tar"))
    assert shards, "no shards"
    assert [os.path.basename(s) for s in shards] == \
        [os.path.basename(f"{prefix}-{k:06d}.tar") for k in range(len(shards))], shards
    seen = {}
    for k, path in enumerate(shards):
        samples = {}
        with tarfile.open(path) as t:
            for m in t.getmembers():
                base = os.path.basename(m.name)
                key, ext = m.name[:len(m.name) - len(base)] + base.split(".")[0], base.split(".", 1)[1]
                samples.setdefault(key, {})[ext] = t.extractfile(m).read()
        if k < len(shards) - 1:
            assert len(samples) == shard_size, (path, len(samples))
        for key, s in samples.items():
            meta = json.loads(s["json"])
            row = meta["row"]
            cls, id_ = exp[row]
            assert int(s["cls"]) == cls == meta["class"], (key, s["cls"], cls)
            assert meta["id"] == id_ and abs(meta["magnitude"] - mag[row]) < 1e-4 * mag[row]
            img = s.get("jpg", s.get("png"))
            assert img == source_bytes(id_), f"image bytes differ for {id_}"
            assert ("png" in s) == img.startswith(b"\x89PNG"), (key, list(s))
            seen[row] = cls
    want = {r for r, (c, i) in exp.items() if source_bytes(i) is not None}
    assert set(seen) == want, (sorted(set(seen) ^ want))
    print(len(seen))


def read_recordio(rec_path):
    """{key: payload} using the .idx (key<TAB>offset), joining split records."""
    data = open(rec_path, "rb").read()
    idx_path = rec_path[:-4] + ".idx"
    out = {}
    for line in open(idx_path):
        key, off = line.split("\t")
        pos, parts = int(off), []
        while True:
            magic, lrec = struct.unpack_from("<II", data, pos)
            assert magic == 0xced7230a, f"bad magic at {pos}"
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            parts.append(data[pos + 8:pos + 8 + length])
            pos += 8 + length + (-length % 4)
            if cflag in (0, 3):
                break
            assert cflag in (1, 2)
        out[int(key)] = struct.pack("<I", 0xced7230a).join(parts)
    return out


def unpack(payload):
    flag, label, id1, id2 = struct.unpack_from("<IfQQ", payload, 0)
    labels = list(struct.unpack_from(f"<{flag}f", payload, 24)) if flag else [label]
    return flag, labels, payload[24 + 4 * flag:]


def cmd_checkrec(args):
    rec_path, store = args[0], args[1]
    recs = read_recordio(rec_path)
    flag, lab, img = unpack(recs[0])
    assert flag == 2 and img == b"", (flag, lab)
    first_id, end_id = int(lab[0]), int(lab[1])
    n = first_id - 1
    k = end_id - first_id
    assert sorted(recs) == list(range(end_id)), "keys must be 0..N+K"
    exp = expected(store)
    present = {r: v for r, v in exp.items() if source_bytes(v[1]) is not None}
    # classes re-ranked over the images present
    ranks = {c: j for j, c in enumerate(sorted(set(c for c, _ in present.values())))}
    want = sorted((ranks[c], source_bytes(i)) for c, i in present.values())
    got, prev = [], -1
    for key in range(1, n + 1):
        f, labels, img = unpack(recs[key])
        cls = int(labels[0])
        assert cls >= prev, "images must be grouped by class"
        prev = cls
        got.append((cls, img))
    assert sorted(got) == want, "class/image pairs differ"
    assert k == len(ranks)
    for j, key in enumerate(range(first_id, end_id)):
        f, (a, b), img = unpack(recs[key])
        members = [c for c, _ in got[int(a) - 1:int(b) - 1]]
        assert members and set(members) == {j} and img == b"", (key, a, b)
        assert (int(a) == 1) if j == 0 else int(a) == prev_end
        prev_end = int(b)
    assert prev_end == n + 1
    print(n, k)


def cmd_checkfeat(args):
    path, store = args[0], args[1]
    ids, _, _, emb = load(store)
    lines = open(path).read().split("\n")
    assert lines[-1] == "" and len(lines) == len(ids) + 1, len(lines)
    for r, line in enumerate(lines[:-1]):
        assert line.endswith(" ")
        parts = line.split(" ")[:-1]
        assert parts[0] == ids[r] and len(parts) == 1 + emb.shape[1]
        assert np.array_equal(np.array(parts[1:], np.float32), emb[r]), r


def cmd_recstore(args):
    """A store whose ids are the images of REC (`REC//<key>`), labels = their classes
    (+7, so that classes are renumbered), plus one id for a key the file lacks."""
    rec, out = args[0], args[1]
    recs = read_recordio(rec)
    _, lab, _ = unpack(recs[0])
    keys = list(range(1, int(lab[0])))
    ids = [f"{rec}//{k}" for k in keys] + [f"{rec}//99999"]
    labels = [int(unpack(recs[k])[1][0]) + 7 for k in keys] + [7]
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(len(ids), 8)).astype(np.float32)
    with h5py.File(out, "w") as f:
        f.attrs["mf_format"] = "mfkit-store"
        f.attrs["mf_format_version"] = 1
        f.attrs["dim"] = 8
        f["embedding"] = emb
        f["magnitude"] = np.linalg.norm(emb, axis=1).astype(np.float32)
        f.create_dataset("id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f["label"] = np.array(labels, np.int64)


def cmd_expect(args):
    column = args[args.index("--column") + 1] if "--column" in args else "label"
    print(json.dumps({r: v for r, v in expected(args[0], column).items()}))


if __name__ == "__main__":
    {"make": cmd_make, "checkwds": cmd_checkwds, "checkrec": cmd_checkrec,
     "checkfeat": cmd_checkfeat, "expect": cmd_expect, "recstore": cmd_recstore}[sys.argv[1]](sys.argv[2:])
