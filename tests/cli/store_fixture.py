"""Write stores with h5py (an independent writer) and check what mfkit wrote.

  store_fixture.py write OUT.h5 ROWS SEED [--shards K] [--dup D]
      a store following docs/FORMAT.md, with an extra column; with --shards, also
      OUT.h5.0 .. OUT.h5.K-1 splitting the rows in order, where each shard after the
      first repeats D rows of the previous one (ids repeat: mf-merge must drop them)
  store_fixture.py same A.h5 B.h5     exit 1 unless the stores hold the same rows
  store_fixture.py stats A.h5         print numpy's figures as JSON (for mf-inspect)
"""
import json
import sys

import h5py
import numpy as np


def make(rows, seed):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(rows, 16)).astype(np.float32) * rng.uniform(0.5, 2, (rows, 1)).astype(np.float32)
    ids = np.array([f"dir/ÿ{i:05d}.jpg" for i in range(rows)], dtype=object)
    labels = rng.integers(-1, 7, rows).astype(np.int64)
    extra = rng.integers(0, 100, rows).astype(np.int32)
    return emb, ids, labels, extra


def write(path, emb, ids, labels, extra, failed):
    with h5py.File(path, "w") as f:
        f.attrs["mf_format"] = "mfkit-store"
        f.attrs["mf_format_version"] = 1
        f.attrs["dim"] = emb.shape[1]
        f.attrs["model"] = "magface-test"
        f["embedding"] = emb
        f["magnitude"] = np.linalg.norm(emb, axis=1).astype(np.float32)
        f.create_dataset("id", data=ids, dtype=h5py.string_dtype())
        f["label"] = labels
        f["quality_note"] = extra
        f.create_dataset("failed/id", data=np.array([x[0] for x in failed], dtype=object),
                         dtype=h5py.string_dtype())
        f.create_dataset("failed/reason", data=np.array([x[1] for x in failed], dtype=object),
                         dtype=h5py.string_dtype())


def cmd_write(args):
    out, rows, seed = args[0], int(args[1]), int(args[2])
    shards = int(args[args.index("--shards") + 1]) if "--shards" in args else 0
    dup = int(args[args.index("--dup") + 1]) if "--dup" in args else 0
    emb, ids, labels, extra = make(rows, seed)
    failed = [(f"bad{i}.jpg", "truncated JPEG") for i in range(shards or 1)]
    write(out, emb, ids, labels, extra, failed)
    bounds = np.linspace(0, rows, shards + 1).astype(int) if shards else []
    for k in range(shards):
        lo = max(0, bounds[k] - (dup if k else 0))
        sl = slice(lo, bounds[k + 1])
        write(f"{out}.{k}", emb[sl], ids[sl], labels[sl], extra[sl], [failed[k]])


def read(path):
    with h5py.File(path, "r") as f:
        return {k: (f[k].asstr()[:] if k in ("id", "failed/id", "failed/reason") else f[k][:])
                for k in ("embedding", "magnitude", "id", "label", "quality_note",
                          "failed/id", "failed/reason")}


def cmd_same(args):
    a, b = read(args[0]), read(args[1])
    for k in a:
        if a[k].shape != b[k].shape or not np.array_equal(a[k], b[k]):
            print(f"{k} differs: {a[k].shape} vs {b[k].shape}", file=sys.stderr)
            sys.exit(1)


def cmd_stats(args):
    with h5py.File(args[0], "r") as f:
        mag = f["magnitude"][:]
        labels = f["label"][:]
    pct = {k: float(np.percentile(mag, p)) for k, p in
           [("min", 0), ("p1", 1), ("p5", 5), ("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)]}
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    print(json.dumps({"rows": int(mag.size), "magnitude": pct, "identities": int(ids.size),
                      "unlabelled": int((labels < 0).sum()),
                      "largest_count": int(counts.max()) if counts.size else 0}))


if __name__ == "__main__":
    {"write": cmd_write, "same": cmd_same, "stats": cmd_stats}[sys.argv[1]](sys.argv[2:])
