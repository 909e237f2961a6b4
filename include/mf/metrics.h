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

/* ---- quality: error-versus-reject curves (MagFace's quality evaluation) -------------
 *
 *     mf_erc_params p = mf_erc_default_params();      // FMR 1e-3, rejections 0..50%
 *     mf_erc e;
 *     if (mf_erc_compute(&e, unit, mag, label, n, dim, &p) < 0) die(mf_last_error());
 *     for (int i = 0; i < e.steps; i++) printf("%g %g\n", e.reject[i], e.fnmr[i]);
 *
 * The protocol, exactly (docs/CLUSTER.md, "Quality"; tests/cli/erc_check.py does the same
 * in numpy):
 *  - pairs: genuine = two rows with the same label >= 0, impostor = two rows with
 *    different labels >= 0 (rows with label < 0 take no part). All of them when their
 *    number is at most max_genuine / max_impostor, else that many drawn at random with
 *    `seed` (a pair is an unordered pair of distinct rows; draws may repeat);
 *  - score = cosine of the two embeddings (unit rows given); pair quality = min of the
 *    two magnitudes;
 *  - threshold t: impostor scores sorted from high to low, t = the one at position
 *    floor(fmr * impostors) (0-based), so that at most fmr of them score above t; a pair
 *    "matches" when its score is above t;
 *  - for each rejection rate r in reject[]: genuine pairs sorted by quality (ties in
 *    pair order, a stable sort), the lowest floor(r * genuine) rejected; fnmr = the share
 *    of the kept genuine pairs that do not match; cut = the quality of the first pair
 *    kept. The threshold is not recomputed: the curve shows what rejecting low-quality
 *    pairs does at the operating point chosen on all of them. */

#define MF_ERC_MAX_STEPS 64

typedef struct mf_erc_params {
    double fmr;            /* false match rate of the operating point (1e-3) */
    double reject_max;     /* largest rejection rate (0.5) */
    int steps;             /* rates 0, reject_max/(steps-1), ..., reject_max (11) */
    uint64_t max_genuine;  /* all genuine pairs up to this many, else sampled (1e7) */
    uint64_t max_impostor; /* the same for impostor pairs (1e7) */
    uint64_t seed;         /* for sampled pairs (0) */
} mf_erc_params;

mf_erc_params mf_erc_default_params(void);

typedef struct mf_erc {
    double threshold;           /* t */
    uint64_t genuine, impostor; /* pairs used */
    int sampled;                /* pairs were drawn at random */
    int steps;
    double reject[MF_ERC_MAX_STEPS]; /* rejection rate */
    double cut[MF_ERC_MAX_STEPS];    /* pair quality of the first genuine pair kept */
    double fnmr[MF_ERC_MAX_STEPS];   /* over the genuine pairs kept */
    uint64_t kept[MF_ERC_MAX_STEPS]; /* genuine pairs kept */
} mf_erc;

/* unit: n x dim L2-normalised embeddings; mag: n magnitudes; label: n labels. Fails with
 * MF_ERR_FORMAT when there is no genuine or no impostor pair, MF_ERR_ARG on bad params. */
int mf_erc_compute(mf_erc *out, const float *unit, const float *mag, const int64_t *label,
                   size_t n, int dim, const mf_erc_params *p);

#endif
