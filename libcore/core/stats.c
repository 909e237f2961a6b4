/* stats.c - percentiles and histograms (see include/mf/stats.h). */
#include "mf/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void mf_sort_floats(float *v, size_t n) { qsort(v, n, sizeof *v, cmp_float); }

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

void mf_histogram_build(mf_histogram *h, const float *v, size_t n, int bins)
{
    memset(h, 0, sizeof *h);
    h->bins = bins < 1 ? 1 : bins > MF_HIST_MAX_BINS ? MF_HIST_MAX_BINS : bins;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (!isnan(v[i])) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
    if (lo > hi)
        lo = hi = 0;
    if (hi == lo)
        hi = lo + 1; /* one value: a single non-empty bin, not a division by zero */
    h->lo = lo;
    h->hi = hi;
    double scale = h->bins / (hi - lo);
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i]))
            continue;
        int b = (int)((v[i] - lo) * scale);
        h->count[b >= h->bins ? h->bins - 1 : b]++;
    }
}
