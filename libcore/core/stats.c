/* stats.c - percentiles and histograms (see include/mf/stats.h). */
#include "mf/stats.h"

#include "mf/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void mf_sort_floats(float *v, size_t n) { qsort(v, n, sizeof *v, cmp_float); }

size_t mf_finite_floats(float *v, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i]))
            v[k++] = v[i];
    return k;
}

double mf_percentile_sorted(const float *v, size_t n, double p)
{
    if (n == 0)
        return NAN;
    double pos = p / 100.0 * (double)(n - 1);
    size_t i = (size_t)floor(pos);
    if (i >= n - 1)
        return v[n - 1];
    double frac = pos - (double)i;
    return (double)v[i] + frac * ((double)v[i + 1] - (double)v[i]);
}

void mf_histogram_build_range(mf_histogram *h, const float *v, size_t n, int bins, double lo,
                              double hi)
{
    memset(h, 0, sizeof *h);
    h->bins = bins < 1 ? 1 : bins > MF_HIST_MAX_BINS ? MF_HIST_MAX_BINS : bins;
    if (!(hi > lo))
        hi = lo + 1; /* one value: a single non-empty bin, not a division by zero */
    h->lo = lo;
    h->hi = hi;
    double scale = h->bins / (hi - lo);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) {
            h->nonfinite++;
            continue;
        }
        double b = (v[i] - lo) * scale;
        h->count[b < 0 ? 0 : b >= h->bins ? h->bins - 1 : (int)b]++;
    }
}

void mf_histogram_build(mf_histogram *h, const float *v, size_t n, int bins)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
    if (lo > hi)
        lo = hi = 0;
    mf_histogram_build_range(h, v, n, bins, lo, hi);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void mf_sort_int64(int64_t *v, size_t n) { qsort(v, n, sizeof *v, cmp_i64); }

size_t mf_unique_int64(int64_t *v, size_t n)
{
    mf_sort_int64(v, n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

long mf_search_int64(const int64_t *sorted, size_t n, int64_t key)
{
    const int64_t *hit = bsearch(&key, sorted, n, sizeof *sorted, cmp_i64);
    return hit ? (long)(hit - sorted) : -1;
}

int mf_count_distinct(const int64_t *v, size_t n, uint64_t *distinct, uint64_t *negative)
{
    size_t groups;
    int64_t *copy = malloc((n ? n : 1) * sizeof *copy);
    if (!copy)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu values", n);
    memcpy(copy, v, n * sizeof *copy);
    mf_group_count *g = mf_count_groups(copy, n, &groups, negative);
    free(copy);
    if (!g)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu values", n);
    free(g);
    *distinct = groups;
    return 0;
}

static int cmp_group_desc(const void *a, const void *b)
{
    const mf_group_count *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return (x->key > y->key) - (x->key < y->key);
}

mf_group_count *mf_count_groups(int64_t *keys, size_t n, size_t *n_groups, uint64_t *negative)
{
    mf_sort_int64(keys, n);
    size_t neg = 0, g = 0;
    while (neg < n && keys[neg] < 0)
        neg++;
    for (size_t i = neg; i < n; i++)
        g += i == neg || keys[i] != keys[i - 1];
    mf_group_count *groups = calloc(g ? g : 1, sizeof *groups);
    if (!groups)
        return NULL;
    for (size_t i = neg, at = 0; i < n; i++) {
        if (i == neg || keys[i] != keys[i - 1])
            groups[at++].key = keys[i];
        groups[at - 1].count++;
    }
    qsort(groups, g, sizeof *groups, cmp_group_desc);
    *n_groups = g;
    *negative = neg;
    return groups;
}

/* ---- densities ------------------------------------------------------------------- */

double mf_kde(const float *x, size_t n, double sd, double lo, double hi, int grid, double *f)
{
    double h = fmax(0.9 * sd * pow((double)n, -0.2), 1e-6), step = (hi - lo) / (grid - 1);
    double *hist = f + grid; /* the fine histogram, in the second half of f; f gets the
                              * smoothed density */
    for (int g = 0; g < grid; g++)
        hist[g] = 0;
    for (size_t i = 0; i < n; i++) {
        long b = lround((x[i] - lo) / step);
        if (b >= 0 && b < grid)
            hist[b] += 1;
    }
    int reach = (int)ceil(4 * h / step);
    for (int g = 0; g < grid; g++) {
        double s = 0;
        for (int b = g - reach < 0 ? 0 : g - reach; b <= g + reach && b < grid; b++) {
            double z = (b - g) * step / h;
            s += hist[b] * exp(-0.5 * z * z);
        }
        f[g] = s / ((double)n * h * 2.5066282746);
    }
    return h;
}

int mf_kde_dip(const double *f, int grid, double lo, double hi, double a, double b, size_t n,
               double h, double dip_sd, double *valley)
{
    double step = (hi - lo) / (grid - 1);
    int ga = (int)fmax(0, ceil((a - lo) / step)),
        gb = (int)fmin(grid - 1, floor((b - lo) / step));
    if (gb <= ga)
        return 0;
    int gv = ga;
    for (int g = ga; g <= gb; g++)
        if (f[g] < f[gv])
            gv = g;
    double peak = 0;
    for (int g = 0; g <= gv; g++)
        peak = fmax(peak, f[g]);
    *valley = lo + gv * step;
    /* var f(x) = f(x) R(K) / (n h), R(K) = 1 / (2 sqrt(pi)) for a Gaussian kernel */
    double k = 1.0 / (2.0 * sqrt(M_PI) * (double)n * h);
    return peak - f[gv] > dip_sd * sqrt(k * (peak + f[gv]));
}
