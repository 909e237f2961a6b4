/* knn_internal.h - shared between the kNN builder and the graph file reader. */
#ifndef MF_KNN_INTERNAL_H
#define MF_KNN_INTERNAL_H

#include "mf/knn.h"

/* Allocate an n x k graph with every entry empty (nbr -1, sim -2). */
int mf_knn_graph_alloc(mf_knn_graph **out, size_t n, int k);

#endif
