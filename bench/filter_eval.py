#!/usr/bin/python3
"""filter_eval.py STORE REPORT.tsv [LABEL] - precision/recall of mf-filter's drops against
the ground truth columns of an mf-synth store (rows are found by the row number in the
id "synth/<label>/<row>.jpg"). Prints one TSV line per measure."""
import csv
import sys
from collections import Counter

import h5py
import numpy as np

MAG_RULES = ("min-magnitude", "auto", "drop-lowest", "drop-lowest-per-label")
LABEL_RULES = ("center-cos", "spread", "nearer-identity")


def read_rules(report, n):
    """The rule that dropped each of n rows ("keep" if none), from a --report TSV."""
    rule = np.full(n, "keep", dtype=object)
    with open(report) as fh:
        rows = csv.reader(fh, delimiter="\t")
        next(rows)
        for r in rows:
            rule[int(r[0].rsplit("/", 1)[1].split(".")[0])] = r[3]
    return rule


def main():
    store, report = sys.argv[1], sys.argv[2]
    tag = sys.argv[3] if len(sys.argv) > 3 else ""
    f = h5py.File(store, "r")
    n = len(f["label"])
    junk = f["is_junk"][:].astype(bool)
    dup = f["is_dup"][:].astype(bool)
    mis = f["is_mislabeled"][:].astype(bool)
    quality = f["quality"][:]
    dup_of = f["dup_of"][:]
    rule = read_rules(report, n)
    by_mag = np.isin(rule, MAG_RULES)
    by_label = np.isin(rule, LABEL_RULES)
    by_dedup = rule == "dedup"

    def line(what, flagged, truth):
        tp = int((flagged & truth).sum())
        p = tp / max(int(flagged.sum()), 1)
        r = tp / max(int(truth.sum()), 1)
        print(f"{tag}\t{what}\t{int(flagged.sum())}\t{int(truth.sum())}\t{p:.3f}\t{r:.3f}")

    print("run\tmeasure\tflagged\ttrue\tprecision\trecall")
    line("junk by magnitude rules", by_mag, junk)
    line("junk or q<0.25 by magnitude rules", by_mag, junk | (quality < 0.25))
    if by_label.any() or "outliers" in tag:
        line("mislabelled by rule 2 (of all)", by_label, mis)
        line("mislabelled by rule 2 (of those reaching it)", by_label, mis & ~by_mag)
    if by_dedup.any() or "dedup" in tag:
        # a duplicate group = a source row and its copies; it should lose size-1 rows
        group = np.full(n, -1)
        group[dup] = dup_of[dup]
        group[dup_of[dup]] = dup_of[dup]
        reach = (group >= 0) & ~by_mag & ~by_label
        should = sum(k - 1 for k in Counter(group[reach].tolist()).values())
        tp = int((by_dedup & (group >= 0)).sum())
        p = tp / max(int(by_dedup.sum()), 1)
        r = min(tp, should) / max(should, 1)
        print(f"{tag}\tduplicates by dedup (groups reaching it)\t{int(by_dedup.sum())}\t"
              f"{should}\t{p:.3f}\t{r:.3f}")


if __name__ == "__main__":
    main()
