/* clean_internal.h - state shared by the rule implementations of libcore/clean. */
#ifndef MF_CLEAN_INTERNAL_H
#define MF_CLEAN_INTERNAL_H

#include <stdint.h>

#include "mf/clean.h"
#include "mf/store.h"

/* Labels >= 0 mapped to dense indices 0..n-1. */
typedef struct clean_labels {
    int64_t *values; /* n sorted distinct labels */
    size_t n;
    int32_t *dense;   /* rows: index into values, -1 if unlabelled */
    uint64_t *offset; /* n + 1: rows of label k are order[offset[k] .. offset[k+1]) */
    uint64_t *order;  /* labelled rows grouped by label, increasing within a label */
} clean_labels;

/* Build the index from labels[0..rows); release with clean_labels_release. */
int clean_labels_build(clean_labels *l, const int64_t *labels, uint64_t rows);
void clean_labels_release(clean_labels *l);
/* Median of v[0..n) (partially reorders v); NAN for n = 0. */
double clean_median(float *v, size_t n);

typedef struct clean_ctx {
    mf_store *in;
    const mf_clean_params *p;
    mf_clean_result *r;
    uint64_t rows;
    int dim;
    size_t chunk; /* rows per read */
    float *buf;   /* chunk * dim: unit embeddings of the current chunk */
    clean_labels lab;
} clean_ctx;

/* Read rows [start, start+n) into ctx->buf as unit vectors (zero rows stay zero). */
int clean_read_unit(clean_ctx *c, uint64_t start, size_t n);
/* The same, only when wanted[i] is set for some row of the range (passes over a store
 * skip the chunks they have nothing to do in): 1 read, 0 skipped, or an error. */
int clean_read_unit_wanted(clean_ctx *c, uint64_t start, size_t n, const uint8_t *wanted);

/* Quality weight of a sample from its magnitude: 1 at or above the median `m50` of the
 * rows considered, falling linearly to 0.05 at their 5th percentile `m5`. */
static inline float clean_weight(float mag, double m5, double m50)
{
    if (!(m50 > m5))
        return 1.f;
    double w = (mag - m5) / (m50 - m5);
    return (float)(w < 0.05 ? 0.05 : w > 1 ? 1 : w);
}

/* Weighted sums of unit embeddings per dense label over rows with use[i] != 0:
 * sums (lab.n * dim doubles, zeroed here). */
int clean_label_sums(clean_ctx *c, const uint8_t *use, const float *w, double *sums);

/* Quality weights (clean_weight) of all rows, from the magnitudes of the rows in `use`. */
int clean_make_weights(clean_ctx *c, const uint8_t *use, float *w);
/* lab.n * dim doubles for label sums (NULL, with the error set, if out of memory). */
double *clean_alloc_sums(clean_ctx *c);
/* ss[k] = |sums_k|^2 for every label. */
void clean_squared_norms(const clean_ctx *c, const double *sums, double *ss);

/* Rule 2 on the rows still kept (r->rule == KEEP and labelled): clean_outliers.c. */
int clean_outliers(clean_ctx *c);
/* Rule 3. */
int clean_dedup(clean_ctx *c);
/* Rule 4: fills r->merges and, with apply_merge, rewrites r->label. */
int clean_merge(clean_ctx *c);

#endif
