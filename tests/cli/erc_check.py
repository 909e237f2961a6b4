"""erc_check.py STORE TRUTH FMR STEPS REJECT_MAX OURS.json: the error-versus-reject curve
of a store computed in numpy from the protocol in include/mf/metrics.h (all pairs), and
compared with mfkit's. Scores differ in the last bits (float32 sums in another order), so a
genuine pair within 1e-5 of the threshold may land on the other side: FNMR is compared to
within two such pairs."""
import json
import sys

import h5py
import numpy as np

path, truth, fmr, steps, reject_max, ours_path = sys.argv[1:7]
fmr, steps, reject_max = float(fmr), int(steps), float(reject_max)
with h5py.File(path, "r") as f:
    emb = f["embedding"][:].astype(np.float64)
    mag = f["magnitude"][:].astype(np.float32)
    label = f[truth][:].astype(np.int64)
unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
rows = np.flatnonzero(label >= 0)
rows = rows[np.lexsort((rows, label[rows]))]          # by (label, row)
scores = unit[rows] @ unit[rows].T
same = label[rows][:, None] == label[rows][None, :]
i, j = np.triu_indices(len(rows), k=1)
genuine = same[i, j]
gi, gj = rows[i[genuine]], rows[j[genuine]]            # (label, first, second) order
gs = scores[i[genuine], j[genuine]]
imp = np.sort(scores[i[~genuine], j[~genuine]])[::-1]
t = imp[int(np.floor(fmr * len(imp)))]
q = np.minimum(mag[gi], mag[gj])
order = np.lexsort((np.arange(len(q)), q))             # quality, ties in pair order
miss = ~(gs[order] > t)
ours = json.load(open(ours_path))
assert ours["genuine_pairs"] == len(gs) and ours["impostor_pairs"] == len(imp), \
    (ours["genuine_pairs"], len(gs), ours["impostor_pairs"], len(imp))
assert abs(ours["threshold"] - t) < 1e-5, (ours["threshold"], t)
near = int(np.sum(np.abs(gs - t) < 1e-5))
for k in range(steps):
    r = reject_max * k / (steps - 1)
    drop = int(np.floor(r * len(gs)))
    kept = len(gs) - drop
    fnmr = miss[drop:].mean()
    cut = q[order][drop]
    pt = ours["curve"][k]
    assert pt["genuine_pairs"] == kept, (k, pt, kept)
    assert abs(pt["quality_cut"] - cut) <= 1e-6 * max(1, abs(cut)), (k, pt, cut)
    assert abs(pt["fnmr"] - fnmr) <= (near + 0.5) / kept, (k, pt["fnmr"], fnmr, near)
print(f"erc: numpy agrees over {steps} points ({len(gs)} genuine, {len(imp)} impostor pairs)")
