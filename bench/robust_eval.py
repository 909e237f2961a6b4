#!/usr/bin/python3
"""robust_eval.py filter STORE REPORT.tsv | cluster STORE.h5 ... - scores for bench_robust.sh.

filter: rule 1 (magnitude rules) against junk and unusable faces (quality < 0.25); rule 2 (centre-cos, spread, nearer) against
the rows that are wrong for their label (mislabelled or junk) among the labelled rows
that reached rule 2 (not dropped by rule 1); rule 3 (dedup) against near-duplicate copies.
Prints one line: rule1_p rule1_r rule2_p rule2_r flagged2.
cluster: BCubed F of /cluster against /true_label (junk: singletons), and the largest
cluster's share of rows. Rows are matched to the report by the row number in the id
"synth/<label>/<row>.jpg"."""
import os
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from filter_eval import LABEL_RULES, MAG_RULES, read_rules  # noqa: E402


def pr(flagged, truth):
    tp = int((flagged & truth).sum())
    return tp / max(int(flagged.sum()), 1), tp / max(int(truth.sum()), 1)


def filter_scores(store, report):
    f = h5py.File(store, "r")
    n = len(f["label"])
    junk = f["is_junk"][:].astype(bool)
    wrong = junk | f["is_mislabeled"][:].astype(bool)
    labelled = f["label"][:] >= 0
    rule = read_rules(report, n)
    by_mag = np.isin(rule, MAG_RULES)
    by_label = np.isin(rule, LABEL_RULES)
    p1, r1 = pr(by_mag, junk | (f["quality"][:] < 0.25))
    reach = labelled & ~by_mag
    p2, r2 = pr(by_label & reach, wrong & reach)
    print(f"{p1:.3f}\t{r1:.3f}\t{p2:.3f}\t{r2:.3f}\t{int(by_label.sum())}")


def bcubed(truth, pred):
    n = len(truth)
    t = truth.copy()
    p = pred.copy()
    # negatives are singletons on either side
    t[t < 0] = -1 - np.arange(int((t < 0).sum()))
    p[p < 0] = -1 - np.arange(int((p < 0).sum())) - n
    _, ti = np.unique(t, return_inverse=True)
    _, pi = np.unique(p, return_inverse=True)
    pair = ti.astype(np.int64) * (pi.max() + 1) + pi
    _, pair_i, c = np.unique(pair, return_inverse=True, return_counts=True)
    c_row = c[pair_i].astype(float)
    a = np.bincount(ti)[ti].astype(float)
    b = np.bincount(pi)[pi].astype(float)
    prec, rec = (c_row / b).mean(), (c_row / a).mean()
    return 2 * prec * rec / (prec + rec), np.bincount(pi).max() / n


def cluster_scores(stores):
    for s in stores:
        f = h5py.File(s, "r")
        fb, big = bcubed(f["true_label"][:], f["cluster"][:])
        print(f"{fb:.4f}\t{big:.3f}")


if __name__ == "__main__":
    if sys.argv[1] == "filter":
        filter_scores(sys.argv[2], sys.argv[3])
    else:
        cluster_scores(sys.argv[2:])
