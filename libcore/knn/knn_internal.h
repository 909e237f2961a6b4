/* knn_internal.h - shared between the kNN builder and the graph file reader. */
#ifndef MF_KNN_INTERNAL_H
#define MF_KNN_INTERNAL_H

#include "mf/knn.h"

/* Allocate an n x k graph with every entry empty (nbr -1, sim -2). */
int mf_knn_graph_alloc(mf_knn_graph **out, size_t n, int k);

/* Approximate self-join kNN grouped by inverted list (ivf_join.c): FAISS spherical
 * k-means into nlist lists, each row probes its nprobe nearest lists, each list is
 * scanned by one sgemm per block of probing rows. Fills g (allocated, empty). */
int mf_knn_ivf_join(mf_knn_graph *g, const float *x, int dim, int nlist, int nprobe,
                    double *t_train);
#define MF_KNN_JOIN_NPROBE 32

#endif
