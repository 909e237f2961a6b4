/* cluster.h - group samples into identities on a kNN graph, weighting by quality
 * (MagFace magnitude).
 *
 *     mf_cluster_params p = mf_cluster_default_params();   // method "anchors"
 *     char why[512];                                      // thresholds from the graph
 *     if (mf_cluster_auto(g, magnitude, &p, why, sizeof why) < 0) die(mf_last_error());
 *     int64_t *label = malloc(g->n * sizeof *label);
 *     mf_cluster_stats st;
 *     if (mf_cluster_run(g, magnitude, &p, label, &st) < 0) die(mf_last_error());
 *     // label[i]: cluster of row i (0.., numbered by first row), -1 = unassigned
 *
 * Methods (all read the same graph; sim = cosine):
 *   anchors    (default) samples with magnitude at or above the `anchor_quantile`
 *              quantile are anchors; anchors joined by a kNN edge with sim >= tau
 *              form the identity backbone (connected components). Every
 *              other sample joins the cluster of its most similar anchor neighbour if
 *              sim >= tau2, else stays unassigned (-1): a low-quality sample never links
 *              two clusters. Without weighting every sample is an anchor (then it is
 *              `components`). (Mutual-kNN backbones were tried: in large identities
 *              hubness leaves many good samples without a mutual neighbour.)
 *   components edges with sim >= tau; connected components.
 *   peaks      each sample links to its most similar neighbour of higher confidence
 *              with sim >= tau (confidence = magnitude, or local density = mean sim of
 *              its neighbours without weighting); union-find.
 *   infomap    igraph's Infomap on the edges with sim >= tau (edge weight sim, vertex
 *              weight magnitude).
 *   leiden     igraph's Leiden (CPM objective, `resolution`) on the same edges, with
 *              node weights magnitude / mean magnitude.
 * Results do not depend on the thread count (igraph's random generator is seeded). */
#ifndef MF_CLUSTER_H
#define MF_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include "mf/knn.h"

typedef enum mf_cluster_method {
    MF_CLUSTER_ANCHORS = 0,
    MF_CLUSTER_COMPONENTS,
    MF_CLUSTER_PEAKS,
    MF_CLUSTER_INFOMAP,
    MF_CLUSTER_LEIDEN,
    MF_CLUSTER_METHODS
} mf_cluster_method;

typedef struct mf_cluster_params {
    mf_cluster_method method;
    int weight;             /* 1: magnitude is quality (default); 0: ignore it */
    float tau;              /* edge threshold (cosine); NAN: chosen from the graph */
    float tau2;             /* leaf attachment threshold (methods with leaves, below);
                               NAN: from the graph */
    double anchor_quantile; /* share of samples (lowest magnitude) that are not anchors,
                               in [0, 1) (methods with leaves) */
    double resolution;      /* leiden: CPM resolution */
} mf_cluster_params;

typedef struct mf_cluster_stats {
    size_t clusters;   /* clusters with >= 1 sample */
    size_t singletons; /* clusters of exactly one sample */
    size_t unassigned; /* rows left at -1 */
    size_t largest;
    size_t size_hist[8]; /* sizes 1, 2-3, 4-7, 8-15, 16-31, 32-63, 64-127, >= 128 */
    size_t suspect;      /* anchors: clusters of > k rows with MF_CLUSTER_SUSPECT_RATIO
                            times the leaves per anchor that the anchor quantile gives
                            an identity (likely collectors of junk) */
    size_t suspect_rows; /* rows in them */
} mf_cluster_stats;

#define MF_CLUSTER_SUSPECT_RATIO 10

mf_cluster_params mf_cluster_default_params(void);
/* Whether p's method works on anchors and leaves: anchors, infomap and leiden with
 * quality weighting cluster only the anchors (rows at or above the anchor_quantile's
 * magnitude) and hang every other row, as a leaf, from its nearest anchor neighbour at
 * >= tau2 (or from an attached leaf); a leaf never joins two clusters. Low-quality rows
 * drift towards shared 'unrecognisable' directions and are alike between identities:
 * let them vote and they bind identities into collectors. */
int mf_cluster_uses_leaves(const mf_cluster_params *p);
/* Default thresholds of a method filled into p: tau and tau2 NAN (chosen from the graph
 * by mf_cluster_auto), anchor_quantile 0.3, resolution 0.015. */
void mf_cluster_method_defaults(mf_cluster_params *p, mf_cluster_method m);

/* Choose the thresholds of p that are NAN (tau, tau2) from the graph, without labels:
 * the valley between the different-identity and same-identity modes of the edge cosines
 * between anchors (libcore/cluster/auto.c tells how), so that a model's cosine scale
 * does not matter. why (may be NULL) receives one sentence saying what was found and
 * chosen. mf_cluster_run calls it for thresholds left NAN. Returns 0 or a negative
 * mf_status (MF_ERR_ARG when the graph has too few edges to tell). */
int mf_cluster_auto(const mf_knn_graph *g, const float *magnitude, mf_cluster_params *p,
                    char *why, size_t why_len);

/* The graph's cosine scale, from the edges between anchors (all edges without weighting):
 * the different-identity mode, the valley above it and the same-identity mode. When the
 * density has no valley (the populations overlap) two_modes is 0 and the three are the
 * 25th, 50th and 90th percentiles of the edge cosines. mf_cluster_auto places the
 * thresholds on this scale; mf_cluster_split_chains judges clusters by it. */
typedef struct mf_cluster_scale {
    double lo, valley, hi;
    int two_modes;
    int between_anchors; /* 1: edges between anchors; 0: all edges */
    size_t edges;        /* edge cosines sampled */
} mf_cluster_scale;

int mf_cluster_scale_of(const mf_knn_graph *g, const float *magnitude,
                        const mf_cluster_params *p, mf_cluster_scale *out);

/* The thresholds of p that are NAN placed on a scale already measured (what
 * mf_cluster_auto does after mf_cluster_scale_of), with the sentence in why. */
void mf_cluster_place(const mf_cluster_scale *sc, mf_cluster_params *p, char *why,
                      size_t why_len);

/* Chains: clusters of more than k rows whose rows are on average less alike than two
 * neighbouring rows of different identities (coherence, the mean cosine between two of
 * their rows, below scale->lo). Each is clustered again by p's method on its own edges
 * with tau raised by a quarter of (hi - valley) (from the valley, if tau was below it),
 * round after round, until its pieces are coherent or tau reaches hi
 * (libcore/cluster/split.c). label (from mf_cluster_run with
 * the same p, thresholds filled in) is updated and renumbered by first row; s must hold
 * the graph's rows (its embeddings are read once per round). */
struct mf_store;
typedef struct mf_cluster_chains {
    size_t found, rows;        /* chains in the method's result, rows in them */
    size_t largest_rows;       /* the largest chain's rows and coherence */
    double largest_coherence;
    size_t merged;             /* clusters of a few identities split (all rounds): raising
                                  tau parted them into large pieces as unlike as
                                  different identities */
    size_t pieces;             /* clusters the splits made (all rounds) */
    size_t left, left_rows;    /* chains still there when tau reached the mode */
    int rounds;                /* rounds that split something */
    float tau;                 /* tau of the last round */
} mf_cluster_chains;

int mf_cluster_split_chains(const mf_knn_graph *g, const float *magnitude,
                            const mf_cluster_params *p, const mf_cluster_scale *sc,
                            struct mf_store *s, int64_t *label, mf_cluster_chains *out);

/* Drift collectors: clusters of more than k rows, most of them leaves (below the anchor
 * cut), whose mean direction is as close to the leaves' mean direction as a random
 * sample of leaves of that size would be: the low-quality rows of many identities,
 * alike because they drifted the same way (libcore/cluster/collector.c). Their rows are
 * left unassigned (-1) and label renumbered by first row; keep: only count them. Needs
 * quality weighting (nothing is found without it); s must hold the graph's rows. */
typedef struct mf_cluster_collectors {
    size_t found, rows;  /* collectors, rows in them */
    size_t largest_rows; /* the largest one's rows and the cosine of its mean direction */
    double largest_cosine; /* to the leaves' */
} mf_cluster_collectors;

int mf_cluster_find_collectors(const mf_knn_graph *g, const float *magnitude,
                               const mf_cluster_params *p, struct mf_store *s, int keep,
                               int64_t *label, mf_cluster_collectors *out);

/* "anchors" -> MF_CLUSTER_ANCHORS, ...; -1 if unknown. */
int mf_cluster_method_parse(const char *name);
const char *mf_cluster_method_name(mf_cluster_method m);

/* Cluster the n = g->n samples. magnitude: n floats (may be NULL when p->weight == 0).
 * label: n int64, caller-allocated. stats may be NULL. Returns 0 or a negative
 * mf_status (MF_ERR_UNSUPPORTED for infomap/leiden without igraph). */
int mf_cluster_run(const mf_knn_graph *g, const float *magnitude, const mf_cluster_params *p,
                   int64_t *label, mf_cluster_stats *stats);

/* Count clusters, singletons and sizes of a labelling. */
int mf_cluster_stats_of(size_t n, const int64_t *label, mf_cluster_stats *stats);

/* Pick the method's thresholds (tau, tau2, anchor_quantile or resolution) that maximise
 * BCubed F on the rows with truth >= 0, by coordinate search over a grid. p is updated
 * in place; *best_f receives the BCubed F reached. */
int mf_cluster_calibrate(const mf_knn_graph *g, const float *magnitude, const int64_t *truth,
                         mf_cluster_params *p, double *best_f);

#endif
