/* cluster_internal.h - pieces shared by the clustering methods and calibration. */
#ifndef MF_CLUSTER_INTERNAL_H
#define MF_CLUSTER_INTERNAL_H

#include "mf/cluster.h"

int64_t mf_uf_find(int64_t *parent, int64_t i);
/* Join the sets of a and b; the lower root index becomes the root (order-free result). */
void mf_uf_union(int64_t *parent, int64_t a, int64_t b);
/* Final labels from a union-find forest (see cluster.c). */
void mf_uf_labels(int64_t *parent, const unsigned char *assigned, size_t n, int64_t *label);

/* Magnitude at the q-quantile of v[0..n) (q in [0,1)) into *out; -inf for q == 0. */
int mf_cluster_quantile(const float *v, size_t n, double q, float *out);

/* infomap / leiden through igraph (igraph.c) on the edges between anchors (every row
 * when is_anchor is NULL); label[i] = community (dense ids), -1 for rows that are not
 * anchors. MF_ERR_UNSUPPORTED without igraph. */
int mf_cluster_igraph(const mf_knn_graph *g, const unsigned char *is_anchor,
                      const mf_cluster_params *p, int64_t *label);

/* ---- sums.c: cluster sums of unit embeddings (one pass over the store) ---------------- */

struct mf_store;

/* slot[c] indexes sum (dim values per tracked cluster), -1 if not tracked. */
typedef struct mf_cluster_sums {
    int64_t *slot;
    double *sum;
    size_t dim;
} mf_cluster_sums;

/* Sums of every cluster of more than min_rows rows (size[c]: rows of cluster c). */
int mf_cluster_sums_of(struct mf_store *s, const int64_t *label, const size_t *size,
                       size_t clusters, size_t min_rows, mf_cluster_sums *cs);
void mf_cluster_sums_free(mf_cluster_sums *cs);
/* acc[0..dim) += x / |x| (nothing for a zero x). */
void mf_cluster_add_unit(double *acc, const float *x, size_t dim);
/* Mean cosine between a row of tracked cluster a (size sa) and one of b: s_a . s_b /
 * (sa sb); with a == b, between two distinct rows: (|s_a|^2 - sa) / (sa (sa - 1)), the
 * coherence. */
double mf_cluster_mean_cosine(const mf_cluster_sums *cs, size_t a, double sa, size_t b,
                              double sb);
/* Sizes of the clusters 0..clusters-1 of label (rows at -1 count nowhere); malloc'ed. */
size_t *mf_cluster_sizes(const int64_t *label, size_t n, size_t clusters);
/* Labels (all < next) numbered 0.. by first row again, after a check left gaps. */
int mf_cluster_renumber(int64_t *label, size_t n, int64_t next);

#endif
