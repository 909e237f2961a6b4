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

#endif
