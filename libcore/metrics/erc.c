/* erc.c - error-versus-reject curves: how false non-matches fall as the lowest-quality
 * pairs are rejected (the protocol is stated in include/mf/metrics.h). */
#define _GNU_SOURCE /* qsort_r */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf/metrics.h"
#include "mf/status.h"

mf_erc_params mf_erc_default_params(void)
{
    mf_erc_params p = {0};
    p.fmr = 1e-3;
    p.reject_max = 0.5;
    p.steps = 11;
    p.max_genuine = 10000000;
    p.max_impostor = 10000000;
    return p;
}

typedef struct pair {
    int32_t a, b; /* rows, a < b */
} pair;

typedef struct erc_data {
    const float *unit, *mag;
    const int64_t *label;
    int dim;
    int32_t *rows; /* labelled rows, by (label, row) */
    size_t m;      /* how many */
    size_t *start; /* [groups + 1] each label's run in rows */
    size_t groups;
    uint64_t *cum; /* [groups + 1] genuine pairs before each group */
    uint64_t rng;
} erc_data;

static uint64_t next_random(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int cmp_label_row(const void *x, const void *y, void *ctx)
{
    const int64_t *label = ctx;
    int32_t a = *(const int32_t *)x, b = *(const int32_t *)y;
    return label[a] != label[b] ? (label[a] > label[b]) - (label[a] < label[b])
                                : (a > b) - (a < b);
}

/* Labelled rows grouped by label, and the genuine pairs each group holds. */
static int group_rows(erc_data *d, size_t n)
{
    d->rows = malloc((n ? n : 1) * sizeof *d->rows);
    if (!d->rows)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (d->label[i] >= 0)
            d->rows[d->m++] = (int32_t)i;
    qsort_r(d->rows, d->m, sizeof *d->rows, cmp_label_row, (void *)d->label);
    d->start = malloc((d->m + 1) * sizeof *d->start);
    d->cum = malloc((d->m + 1) * sizeof *d->cum);
    if (!d->start || !d->cum)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < d->m; i++)
        if (i == 0 || d->label[d->rows[i]] != d->label[d->rows[i - 1]])
            d->start[d->groups++] = i;
    d->start[d->groups] = d->m;
    d->cum[0] = 0;
    for (size_t g = 0; g < d->groups; g++) {
        uint64_t k = d->start[g + 1] - d->start[g];
        d->cum[g + 1] = d->cum[g] + k * (k - 1) / 2;
    }
    return 0;
}

static pair make_pair(int32_t a, int32_t b) { return a < b ? (pair){a, b} : (pair){b, a}; }

/* All genuine pairs in (label, first row, second row) order, or `want` drawn at random:
 * a group with probability proportional to its pairs, then two distinct rows of it. */
static pair *genuine_pairs(erc_data *d, uint64_t want, uint64_t *count, int *sampled)
{
    uint64_t all = d->cum[d->groups];
    *sampled = all > want;
    *count = *sampled ? want : all;
    pair *p = malloc((*count ? *count : 1) * sizeof *p);
    if (!p)
        return NULL;
    if (!*sampled) {
        uint64_t k = 0;
        for (size_t g = 0; g < d->groups; g++)
            for (size_t i = d->start[g]; i < d->start[g + 1]; i++)
                for (size_t j = i + 1; j < d->start[g + 1]; j++)
                    p[k++] = make_pair(d->rows[i], d->rows[j]);
        return p;
    }
    for (uint64_t k = 0; k < *count; k++) {
        uint64_t r = next_random(&d->rng) % all;
        size_t lo = 0, hi = d->groups; /* the group g with cum[g] <= r < cum[g + 1] */
        while (hi - lo > 1) {
            size_t mid = (lo + hi) / 2;
            if (d->cum[mid] <= r)
                lo = mid;
            else
                hi = mid;
        }
        size_t base = d->start[lo], size = d->start[lo + 1] - base;
        size_t i = next_random(&d->rng) % size, j = next_random(&d->rng) % (size - 1);
        j += j >= i;
        p[k] = make_pair(d->rows[base + i], d->rows[base + j]);
    }
    return p;
}

/* All impostor pairs (rows in order) or `want` drawn at random. */
static pair *impostor_pairs(erc_data *d, uint64_t want, uint64_t *count, int *sampled)
{
    uint64_t m = d->m, all = m * (m - 1) / 2 - d->cum[d->groups];
    *sampled = all > want;
    *count = *sampled ? want : all;
    pair *p = malloc((*count ? *count : 1) * sizeof *p);
    if (!p)
        return NULL;
    uint64_t k = 0;
    if (!*sampled) {
        for (size_t i = 0; i < m; i++)
            for (size_t j = i + 1; j < m; j++)
                if (d->label[d->rows[i]] != d->label[d->rows[j]])
                    p[k++] = make_pair(d->rows[i], d->rows[j]);
        return p;
    }
    while (k < *count) {
        int32_t a = d->rows[next_random(&d->rng) % m], b = d->rows[next_random(&d->rng) % m];
        if (d->label[a] != d->label[b])
            p[k++] = make_pair(a, b);
    }
    return p;
}

static void score_pairs(const erc_data *d, const pair *p, uint64_t n, float *score)
{
#pragma omp parallel for schedule(static)
    for (uint64_t k = 0; k < n; k++) {
        const float *x = d->unit + (size_t)p[k].a * d->dim,
                    *y = d->unit + (size_t)p[k].b * d->dim;
        float s = 0;
        for (int j = 0; j < d->dim; j++)
            s += x[j] * y[j];
        score[k] = s;
    }
}

static int cmp_float_desc(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a < b) - (a > b);
}

typedef struct ranked {
    float quality;
    uint64_t index;
} ranked;

static int cmp_ranked(const void *x, const void *y)
{
    const ranked *a = x, *b = y;
    if (a->quality != b->quality)
        return (a->quality > b->quality) - (a->quality < b->quality);
    return (a->index > b->index) - (a->index < b->index);
}

/* The curve from genuine scores and pair qualities at threshold t. */
static int fill_curve(mf_erc *e, const erc_data *d, const pair *gp, const float *gs,
                      const mf_erc_params *p)
{
    uint64_t g = e->genuine;
    ranked *r = malloc(g * sizeof *r);
    uint64_t *misses = malloc((g + 1) * sizeof *misses); /* non-matches from i on */
    if (!r || !misses) {
        free(r), free(misses);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %llu pairs",
                            (unsigned long long)g);
    }
    for (uint64_t k = 0; k < g; k++)
        r[k] = (ranked){fminf(d->mag[gp[k].a], d->mag[gp[k].b]), k};
    qsort(r, g, sizeof *r, cmp_ranked);
    misses[g] = 0;
    for (uint64_t k = g; k-- > 0;)
        misses[k] = misses[k + 1] + !(gs[r[k].index] > e->threshold);
    e->steps = p->steps;
    for (int s = 0; s < p->steps; s++) {
        double rate = p->steps > 1 ? p->reject_max * s / (p->steps - 1) : 0;
        uint64_t drop = (uint64_t)floor(rate * (double)g);
        e->reject[s] = rate;
        e->kept[s] = g - drop;
        e->cut[s] = drop < g ? r[drop].quality : NAN;
        e->fnmr[s] = drop < g ? (double)misses[drop] / (double)(g - drop) : NAN;
    }
    free(r), free(misses);
    return 0;
}

int mf_erc_compute(mf_erc *out, const float *unit, const float *mag, const int64_t *label,
                   size_t n, int dim, const mf_erc_params *p)
{
    memset(out, 0, sizeof *out);
    if (p->steps < 1 || p->steps > MF_ERC_MAX_STEPS || !(p->fmr > 0 && p->fmr < 1) ||
        !(p->reject_max >= 0 && p->reject_max < 1) || n > INT32_MAX)
        return mf_set_error(MF_ERR_ARG, "bad quality-curve parameters");
    erc_data d = {.unit = unit, .mag = mag, .label = label, .dim = dim, .rng = p->seed};
    pair *gp = NULL, *ip = NULL;
    float *gs = NULL, *is = NULL;
    int gs_sampled = 0, is_sampled = 0;
    int rc = group_rows(&d, n);
    if (rc == 0 && (!(gp = genuine_pairs(&d, p->max_genuine, &out->genuine, &gs_sampled)) ||
                    !(ip = impostor_pairs(&d, p->max_impostor, &out->impostor, &is_sampled))))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for the pairs");
    if (rc == 0 && (out->genuine == 0 || out->impostor == 0))
        rc = mf_set_error(MF_ERR_FORMAT,
                          "no %s pair: the quality curve needs labels with two rows or more "
                          "and two labels or more",
                          out->genuine == 0 ? "genuine" : "impostor");
    if (rc == 0 && (!(gs = malloc(out->genuine * sizeof *gs)) ||
                    !(is = malloc(out->impostor * sizeof *is))))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for the scores");
    if (rc == 0) {
        score_pairs(&d, gp, out->genuine, gs);
        score_pairs(&d, ip, out->impostor, is);
        qsort(is, out->impostor, sizeof *is, cmp_float_desc);
        out->threshold = is[(uint64_t)floor(p->fmr * (double)out->impostor)];
        out->sampled = gs_sampled || is_sampled;
        rc = fill_curve(out, &d, gp, gs, p);
    }
    free(gp), free(ip), free(gs), free(is);
    free(d.rows), free(d.start), free(d.cum);
    return rc;
}
