#!/usr/bin/python3
"""knn_anchor.py - the kNN graph of a store made by FAISS from Python, as the anchor for
mf-cluster's graph (bench/bench_cluster.sh anchor).

    knn_anchor.py STORE.h5 OUR_GRAPH.h5 OUR_KNN_SECONDS NLIST NPROBE

Builds (1) the exact graph with faiss.IndexFlatIP (BLAS), on every row, and (2) an IVF
graph with faiss.IndexIVFFlat(NLIST) searched at NPROBE; FAISS's IVF scan is scalar in
Debian's generic build (hours for all rows at these probes), so its search is timed on
IVF_QUERIES strided rows and scaled to all rows (training and adding are timed whole).
Same k as our graph, normalised embeddings. Prints one line per graph: seconds, recall@k
against the exact graph (all rows; the sampled rows for IVF), our time over theirs."""
import sys
import time

import faiss
import h5py
import numpy as np

IVF_QUERIES = 2000


def recall(graph, exact):
    hit = sum(len(set(a) & set(b)) for a, b in zip(graph, exact))
    return hit / exact.size


def search_all(index, x, k):
    _, nb = index.search(x, k + 1)
    out = np.empty((len(x), k), dtype=np.int64)
    for i, row in enumerate(nb):  # drop the row itself (first unless ties)
        out[i] = [j for j in row if j != i][:k]
    return out


def main():
    store, graph, ours_s, nlist, nprobe = sys.argv[1:6]
    ours_s, nlist, nprobe = float(ours_s), int(nlist), int(nprobe)
    with h5py.File(store, "r") as f:
        x = f["embedding"][:].astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    with h5py.File(graph, "r") as g:
        ours = g["neighbors"][:]
    n, d = x.shape
    k = ours.shape[1]

    t = time.perf_counter()
    flat = faiss.IndexFlatIP(d)
    flat.add(x)
    exact = search_all(flat, x, k)
    t_flat = time.perf_counter() - t

    t = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x[:: max(1, n // (nlist * 16))][: nlist * 16])
    ivf.add(x)
    ivf.nprobe = nprobe
    t_build = time.perf_counter() - t
    rows = np.arange(0, n, max(1, n // IVF_QUERIES))[:IVF_QUERIES]
    t = time.perf_counter()
    _, nb = ivf.search(x[rows], k + 1)
    t_ivf = t_build + (time.perf_counter() - t) * n / len(rows)
    approx = np.array([[j for j in row if j != i][:k] for i, row in zip(rows, nb)])

    print(f"{'graph':<34} {'seconds':>9} {'recall@%d' % k:>10} {'ours/anchor time':>17}")
    print(f"{'mf-cluster (this build)':<34} {ours_s:9.1f} {recall(ours, exact):10.4f} {1.0:17.3f}")
    print(f"{'FAISS IndexFlatIP (exact)':<34} {t_flat:9.1f} {1.0:10.4f} {ours_s / t_flat:17.3f}")
    print(f"{'FAISS IVF%d,Flat nprobe %d (scaled)' % (nlist, nprobe):<34} {t_ivf:9.1f} "
          f"{recall(approx, exact[rows]):10.4f} {ours_s / t_ivf:17.3f}")


if __name__ == "__main__":
    main()
