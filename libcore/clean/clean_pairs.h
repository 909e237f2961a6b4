/* clean_pairs.h - all pairs of unit vectors with cosine >= a threshold, through exact
 * range searches (mf_knn_flat). */
#ifndef MF_CLEAN_PAIRS_H
#define MF_CLEAN_PAIRS_H

#include <stddef.h>
#include <stdint.h>

typedef struct clean_pairs {
    int64_t *a, *b; /* indices into the vector set; a != b; a pair may appear both ways */
    float *sim;     /* their inner product */
    size_t n, cap;
} clean_pairs;

void clean_pairs_release(clean_pairs *p);

/* Exact search over x[0..n) (n x dim unit vectors in memory). */
int clean_pairs_in_memory(const float *x, size_t n, int dim, double thr, clean_pairs *out);

#endif
