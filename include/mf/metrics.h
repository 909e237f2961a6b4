/* metrics.h - how well a clustering matches the truth: pairwise and BCubed
 * precision/recall/F and NMI, as the face-clustering literature computes them.
 *
 *     mf_cluster_metrics m;
 *     if (mf_metrics_compute(n, truth, pred, &m) < 0) die(mf_last_error());
 *     printf("pairwise F %.4f  BCubed F %.4f  NMI %.4f\n",
 *            m.pairwise_f, m.bcubed_f, m.nmi);
 *
 * Definitions (c_ij = samples of truth class i in predicted cluster j, a_i = class size,
 * b_j = cluster size, n = samples):
 *   pairwise: over ordered pairs of distinct samples in the same group;
 *             TP = sum c_ij^2 - n, P = TP / (sum b_j^2 - n), R = TP / (sum a_i^2 - n);
 *   BCubed:   P = (1/n) sum c_ij^2 / b_j,  R = (1/n) sum c_ij^2 / a_i;
 *   NMI:      I(T;C) / ((H(T) + H(C)) / 2)   (natural log; arithmetic-mean
 *             normalisation, as scikit-learn's default).
 * F is the harmonic mean of P and R (0 if both are 0).
 *
 * Negative labels (truth -1 = unlabelled, prediction -1 = unassigned) are singletons:
 * each such sample is a group of its own. Degenerate cases never divide by zero: when no
 * pair is predicted together, pairwise precision is 1 (no wrong claim); when no pair is
 * together in the truth, pairwise recall is 1; NMI is 1 when both sides are one single
 * group (scikit-learn's convention), 0 when one side is a single group and the other not. */
#ifndef MF_METRICS_H
#define MF_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct mf_cluster_metrics {
    size_t n;             /* samples compared */
    size_t truth_classes; /* distinct truth groups (negative labels counted singly) */
    size_t pred_clusters; /* distinct predicted groups (same rule) */
    double pairwise_p, pairwise_r, pairwise_f;
    double bcubed_p, bcubed_r, bcubed_f;
    double nmi;
} mf_cluster_metrics;

/* Compare pred against truth over n samples. Returns 0, MF_ERR_ARG for n == 0 or NULL
 * arrays, MF_ERR_NOMEM. Cost O(n log n), memory O(n). */
int mf_metrics_compute(size_t n, const int64_t *truth, const int64_t *pred,
                       mf_cluster_metrics *out);

/* Same, over the samples with truth >= 0 only (the rows that carry labels); fails with
 * MF_ERR_ARG if there is none. */
int mf_metrics_compute_labelled(size_t n, const int64_t *truth, const int64_t *pred,
                                mf_cluster_metrics *out);

/* Map labels to dense group ids 0..groups-1 (negative labels each get a group of their
 * own). out: n entries, caller-allocated. Returns the number of groups or a negative
 * mf_status. Used by the metrics and by clustering to renumber results. */
int64_t mf_labels_densify(size_t n, const int64_t *labels, int64_t *out);

#endif
