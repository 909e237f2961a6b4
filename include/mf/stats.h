/* stats.h - small descriptive statistics shared by the tools (inspect, filter, report).
 *
 *     mf_sort_floats(mag, n);
 *     float p5 = mf_percentile_sorted(mag, n, 5.0);    // numpy's default (linear)
 *     mf_histogram h;
 *     mf_histogram_build(&h, mag, n, 40);              // 40 equal-width bins, min..max
 */
#ifndef MF_STATS_H
#define MF_STATS_H

#include <stddef.h>
#include <stdint.h>

#define MF_HIST_MAX_BINS 256

typedef struct mf_histogram {
    int bins;
    double lo, hi; /* range covered; bin width (hi-lo)/bins */
    uint64_t count[MF_HIST_MAX_BINS];
    uint64_t nonfinite; /* values left out: NaN or +-Inf */
} mf_histogram;

void mf_sort_floats(float *v, size_t n);
/* Move the finite values of v to v[0..k) (order not kept) and return k: NaN and Inf have
 * no place in a sort or a percentile. */
size_t mf_finite_floats(float *v, size_t n);

/* Percentile p in [0, 100] of ascending `v` with linear interpolation between closest
 * ranks (numpy.percentile's default). n must be > 0. */
double mf_percentile_sorted(const float *v, size_t n, double p);

/* Equal-width histogram of the finite values of v over their [min, max] (NaN and Inf are
 * counted in h->nonfinite). bins in 1..MF_HIST_MAX_BINS. */
void mf_histogram_build(mf_histogram *h, const float *v, size_t n, int bins);

/* The same over a given range [lo, hi] (values outside fall in the end bins), so that two
 * histograms can share their bins. */
void mf_histogram_build_range(mf_histogram *h, const float *v, size_t n, int bins, double lo,
                              double hi);

/* ---- densities ------------------------------------------------------------------- */

/* Gaussian kernel density of x[0..n) at `grid` points from lo to hi, with Silverman's
 * bandwidth h = 0.9 sd n^-1/5 (sd: a robust spread of x given by the caller); returns h.
 * f: 2 * grid doubles, caller-allocated (the second half is scratch). */
double mf_kde(const float *x, size_t n, double sd, double lo, double hi, int grid, double *f);

/* Does the density f (from mf_kde over the same lo, hi, grid, n, h) dip between a and b
 * (a < b) deeper than dip_sd sampling sd below the highest density between lo and the
 * dip? *valley receives the lowest point between a and b. Returns 1 or 0. */
int mf_kde_dip(const double *f, int grid, double lo, double hi, double a, double b, size_t n,
               double h, double dip_sd, double *valley);

/* ---- integer groups (labels, clusters) ---------------------------------------------- */

void mf_sort_int64(int64_t *v, size_t n);
/* Sort v and keep each value once: returns the number of distinct values, now in
 * v[0..k) ascending. */
size_t mf_unique_int64(int64_t *v, size_t n);

/* Index of key in ascending sorted[0..n), or -1. */
long mf_search_int64(const int64_t *sorted, size_t n, int64_t key);

typedef struct mf_group_count {
    int64_t key;
    uint64_t count;
} mf_group_count;

/* Distinct non-negative values of v[0..n) and rows with a negative one (v is not
 * changed). Returns 0 or MF_ERR_NOMEM. */
int mf_count_distinct(const int64_t *v, size_t n, uint64_t *distinct, uint64_t *negative);

/* Rows per non-negative key, largest group first (ties: smaller key first). Sorts `keys`
 * in place. Returns the groups (malloc'ed; NULL when out of memory) and sets *n_groups
 * and *negative (rows with a key < 0: unlabelled, unassigned). */
mf_group_count *mf_count_groups(int64_t *keys, size_t n, size_t *n_groups, uint64_t *negative);

#endif
