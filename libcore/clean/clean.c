/* clean.c - the filter's driver, the magnitude rules and --min-per-label (see
 * include/mf/clean.h for the order of the rules and why). */
#define _GNU_SOURCE /* qsort_r */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean_internal.h"
#include "mf/progress.h"
#include "mf/knn.h"
#include "mf/stats.h"
#include "mf/status.h"

#define DEFAULT_CHUNK 16384

static const char *rule_names[MF_RULE_COUNT] = {
    "keep",          "min-magnitude",         "auto",
    "drop-lowest",   "drop-lowest-per-label", "center-cos",
    "spread",        "nearer-identity",       "dedup",
    "min-per-label", "not-finite",
};

const char *mf_clean_rule_name(int rule)
{
    return rule >= 0 && rule < MF_RULE_COUNT ? rule_names[rule] : "?";
}

mf_clean_params mf_clean_default_params(void)
{
    mf_clean_params p = {0};
    p.outlier_k = 5.0;
    p.nearer = 1;
    p.dedup_flat_max = 50000;
    p.chunk_rows = DEFAULT_CHUNK;
    return p;
}

static int rule2_on(const mf_clean_params *p) { return p->outliers || p->min_center_cos > 0; }

int mf_clean_needs_labels(const mf_clean_params *p)
{
    return p->drop_lowest_per_label > 0 || rule2_on(p) || p->merge_cos > 0 ||
           p->min_per_label > 0;
}

/* ---- small statistics ------------------------------------------------------------------ */

double clean_median(float *v, size_t n)
{
    if (n == 0)
        return NAN;
    mf_sort_floats(v, n);
    return n % 2 ? v[n / 2] : 0.5 * ((double)v[n / 2 - 1] + v[n / 2]);
}

int mf_clean_quantiles(const float *v, const uint8_t *mask, size_t n, const double *q,
                       size_t nq, double *out)
{
    float *tmp = malloc((n ? n : 1) * sizeof *tmp);
    if (!tmp)
        return mf_set_error(MF_ERR_NOMEM, "cannot allocate %zu values for quantiles", n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if ((!mask || !mask[i]) && isfinite(v[i])) /* a NaN would break the order */
            tmp[m++] = v[i];
    mf_sort_floats(tmp, m);
    for (size_t j = 0; j < nq; j++) {
        double pos = q[j] * (double)(m ? m - 1 : 0);
        out[j] = m ? tmp[(size_t)llround(pos)] : NAN;
    }
    free(tmp);
    return 0;
}

/* ---- labels ------------------------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void clean_labels_release(clean_labels *l)
{
    free(l->values);
    free(l->dense);
    free(l->offset);
    free(l->order);
    memset(l, 0, sizeof *l);
}

int clean_labels_build(clean_labels *l, const int64_t *labels, uint64_t rows)
{
    memset(l, 0, sizeof *l);
    size_t n = 0;
    l->values = malloc((rows ? rows : 1) * sizeof *l->values);
    l->dense = malloc((rows ? rows : 1) * sizeof *l->dense);
    l->order = malloc((rows ? rows : 1) * sizeof *l->order);
    if (!l->values || !l->dense || !l->order)
        goto nomem;
    for (uint64_t i = 0; i < rows; i++)
        if (labels[i] >= 0)
            l->values[n++] = labels[i];
    qsort(l->values, n, sizeof *l->values, cmp_i64);
    size_t u = 0;
    for (size_t i = 0; i < n; i++)
        if (u == 0 || l->values[i] != l->values[u - 1])
            l->values[u++] = l->values[i];
    l->n = u;
    if (u > INT32_MAX)
        return clean_labels_release(l), mf_set_error(MF_ERR_LIMIT, "more than 2^31 labels");
    l->offset = calloc(u + 1, sizeof *l->offset);
    if (!l->offset)
        goto nomem;
    for (uint64_t i = 0; i < rows; i++) {
        l->dense[i] = -1;
        if (labels[i] < 0)
            continue;
        int64_t *hit = bsearch(&labels[i], l->values, u, sizeof *l->values, cmp_i64);
        l->dense[i] = (int32_t)(hit - l->values);
        l->offset[l->dense[i] + 1]++;
    }
    for (size_t k = 0; k < u; k++)
        l->offset[k + 1] += l->offset[k];
    uint64_t *fill = calloc(u + 1, sizeof *fill);
    if (!fill)
        goto nomem;
    for (uint64_t i = 0; i < rows; i++)
        if (l->dense[i] >= 0) {
            int32_t k = l->dense[i];
            l->order[l->offset[k] + fill[k]++] = i;
        }
    free(fill);
    return 0;
nomem:
    clean_labels_release(l);
    return mf_set_error(MF_ERR_NOMEM, "cannot index the labels of %llu rows",
                        (unsigned long long)rows);
}

/* ---- rule 1: magnitude --------------------------------------------------------------------- */

static void drop(mf_clean_result *r, uint64_t i, int rule, float figure)
{
    if (r->rule[i] == MF_RULE_KEEP) {
        r->rule[i] = (uint8_t)rule;
        r->figure[i] = figure;
    }
}

typedef struct by_mag {
    const float *mag;
} by_mag;

static int cmp_rows_by_mag(const void *a, const void *b, void *ctx)
{
    const float *mag = ((const by_mag *)ctx)->mag;
    uint64_t i = *(const uint64_t *)a, j = *(const uint64_t *)b;
    if (mag[i] != mag[j])
        return mag[i] < mag[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* Drop the floor(n * percent / 100) lowest-magnitude rows of rows[0..n) (sorted here). */
static void drop_lowest_of(mf_clean_result *r, uint64_t *rows, size_t n, double percent,
                           int rule)
{
    by_mag ctx = {r->magnitude};
    size_t k = (size_t)floor((double)n * percent / 100.0);
    qsort_r(rows, n, sizeof *rows, cmp_rows_by_mag, &ctx);
    for (size_t i = 0; i < k; i++)
        drop(r, rows[i], rule, r->magnitude[rows[i]]);
}

static int magnitude_rules(clean_ctx *c)
{
    const mf_clean_params *p = c->p;
    mf_clean_result *r = c->r;
    uint64_t n = c->rows;
    if (p->min_magnitude > 0)
        for (uint64_t i = 0; i < n; i++)
            if (r->magnitude[i] < p->min_magnitude)
                drop(r, i, MF_RULE_MIN_MAGNITUDE, r->magnitude[i]);
    if (p->auto_cut || p->drop_lowest > 0) {
        /* the rows with a number for a magnitude (see MF_RULE_NOT_FINITE) */
        uint64_t *rows = malloc((n ? n : 1) * sizeof *rows);
        float *mags = malloc((n ? n : 1) * sizeof *mags);
        size_t m = 0;
        if (!rows || !mags) {
            free(rows), free(mags);
            return mf_set_error(MF_ERR_NOMEM, "cannot sort %llu magnitudes",
                                (unsigned long long)n);
        }
        for (uint64_t i = 0; i < n; i++)
            if (r->rule[i] != MF_RULE_NOT_FINITE)
                mags[m] = r->magnitude[i], rows[m++] = i;
        if (p->auto_cut) {
            r->auto_cut = mf_clean_auto_cut(mags, m, r->auto_reason, sizeof r->auto_reason);
            for (uint64_t i = 0; i < n; i++)
                if (r->magnitude[i] < r->auto_cut)
                    drop(r, i, MF_RULE_AUTO, r->magnitude[i]);
        }
        if (p->drop_lowest > 0)
            drop_lowest_of(r, rows, m, p->drop_lowest, MF_RULE_DROP_LOWEST);
        free(rows), free(mags);
    }
    if (p->drop_lowest_per_label > 0) {
        /* order[] is grouped by label; sort each group in place on a copy */
        uint64_t *rows = malloc((n ? n : 1) * sizeof *rows);
        if (!rows)
            return mf_set_error(MF_ERR_NOMEM, "cannot sort %llu magnitudes",
                                (unsigned long long)n);
        for (size_t k = 0; k < c->lab.n; k++) {
            size_t m = 0;
            for (uint64_t j = c->lab.offset[k]; j < c->lab.offset[k + 1]; j++)
                if (r->rule[c->lab.order[j]] != MF_RULE_NOT_FINITE)
                    rows[m++] = c->lab.order[j];
            drop_lowest_of(r, rows, m, p->drop_lowest_per_label, MF_RULE_DROP_LOWEST_LABEL);
        }
        free(rows);
    }
    return 0;
}

/* ---- rule 5 ------------------------------------------------------------------------------------ */

static int min_per_label(clean_ctx *c)
{
    mf_clean_result *r = c->r;
    clean_labels l;
    int rc = clean_labels_build(&l, r->label, c->rows); /* labels after any merge */
    if (rc < 0)
        return rc;
    for (size_t k = 0; k < l.n; k++) {
        int64_t kept = 0;
        for (uint64_t j = l.offset[k]; j < l.offset[k + 1]; j++)
            kept += r->rule[l.order[j]] == MF_RULE_KEEP;
        if (kept >= c->p->min_per_label)
            continue;
        for (uint64_t j = l.offset[k]; j < l.offset[k + 1]; j++)
            drop(r, l.order[j], MF_RULE_MIN_PER_LABEL, (float)kept);
    }
    clean_labels_release(&l);
    return 0;
}

/* ---- driver ---------------------------------------------------------------------------------- */

int clean_read_unit(clean_ctx *c, uint64_t start, size_t n)
{
    int rc = mf_store_read_embedding(c->in, start, n, c->buf);
    if (rc < 0)
        return rc;
    mf_knn_normalize(c->buf, n, c->dim);
    return 0;
}

int clean_read_unit_wanted(clean_ctx *c, uint64_t start, size_t n, const uint8_t *wanted)
{
    int any = 0;
    for (size_t i = 0; i < n && !any; i++)
        any = wanted[start + i];
    int rc = any ? clean_read_unit(c, start, n) : 0;
    return rc < 0 ? rc : any;
}

void mf_clean_result_release(mf_clean_result *r)
{
    free(r->rule);
    free(r->figure);
    free(r->magnitude);
    free(r->label);
    free(r->merges);
    memset(r, 0, sizeof *r);
}

static int64_t count_identities(const mf_clean_result *r, const uint8_t *rule_filter)
{
    clean_labels l;
    int64_t *tmp = malloc((r->rows ? r->rows : 1) * sizeof *tmp);
    if (!tmp)
        return 0;
    for (uint64_t i = 0; i < r->rows; i++)
        tmp[i] = rule_filter && rule_filter[i] != MF_RULE_KEEP ? -1 : r->label[i];
    int64_t n = clean_labels_build(&l, tmp, r->rows) < 0 ? 0 : (int64_t)l.n;
    clean_labels_release(&l);
    free(tmp);
    return n;
}

static int load_columns(clean_ctx *c)
{
    mf_clean_result *r = c->r;
    size_t n = (size_t)c->rows, cells;
    if (mf_size_mul(c->chunk, (size_t)c->dim * sizeof(float), &cells, "filter chunk") < 0)
        return MF_ERR_NOMEM;
    r->rule = calloc(n ? n : 1, 1);
    r->figure = calloc(n ? n : 1, sizeof *r->figure);
    r->magnitude = malloc((n ? n : 1) * sizeof *r->magnitude);
    r->label = malloc((n ? n : 1) * sizeof *r->label);
    c->buf = malloc(cells);
    if (!r->rule || !r->figure || !r->magnitude || !r->label || !c->buf)
        return mf_set_error(MF_ERR_NOMEM, "cannot allocate the filter's columns for %zu rows",
                            n);
    for (uint64_t s = 0; s < c->rows; s += c->chunk) {
        size_t m = c->rows - s < c->chunk ? (size_t)(c->rows - s) : c->chunk;
        int rc = mf_store_read_magnitude(c->in, s, m, r->magnitude + s);
        if (rc == 0)
            rc = mf_store_read_label(c->in, s, m, r->label + s);
        if (rc < 0)
            return rc;
    }
    return clean_labels_build(&c->lab, r->label, c->rows);
}

/* ---- rule 0: values that are not numbers ------------------------------------------------ */

static int not_finite_rule(clean_ctx *c)
{
    mf_clean_result *r = c->r;
    size_t dim = (size_t)c->dim;
    for (uint64_t s = 0; s < c->rows; s += c->chunk) {
        size_t m = c->rows - s < c->chunk ? (size_t)(c->rows - s) : c->chunk;
        int rc = mf_store_read_embedding(c->in, s, m, c->buf);
        if (rc < 0)
            return rc;
        for (size_t i = 0; i < m; i++) {
            int ok = isfinite(r->magnitude[s + i]);
            for (size_t d = 0; d < dim && ok; d++)
                ok = isfinite(c->buf[i * dim + d]);
            if (!ok)
                drop(r, s + i, MF_RULE_NOT_FINITE, r->magnitude[s + i]);
        }
    }
    return 0;
}

static int run_rules(clean_ctx *c)
{
    const mf_clean_params *p = c->p;
    mf_clean_result *r = c->r;
    double t = mf_now();
    int rc = not_finite_rule(c);
    if (rc == 0)
        rc = magnitude_rules(c);
    if (rc == 0 && rule2_on(p))
        rc = clean_outliers(c);
    r->seconds[0] = mf_now() - t, t = mf_now();
    if (rc == 0 && p->dedup_cos > 0)
        rc = clean_dedup(c);
    r->seconds[1] = mf_now() - t, t = mf_now();
    if (rc == 0 && p->merge_cos > 0)
        rc = clean_merge(c);
    r->seconds[2] = mf_now() - t, t = mf_now();
    if (rc == 0 && p->min_per_label > 0)
        rc = min_per_label(c);
    r->seconds[3] = mf_now() - t;
    return rc;
}

int mf_clean_run(mf_store *in, const mf_clean_params *p, mf_clean_result *out)
{
    memset(out, 0, sizeof *out);
    clean_ctx c = {.in = in,
                   .p = p,
                   .r = out,
                   .rows = mf_store_rows(in),
                   .dim = mf_store_dim(in),
                   .chunk = p->chunk_rows ? p->chunk_rows : DEFAULT_CHUNK};
    out->rows = c.rows;
    int rc = load_columns(&c);
    if (rc == 0) {
        out->has_labels = c.lab.n > 0;
        out->identities_in = (int64_t)c.lab.n;
        if (mf_clean_needs_labels(p) && !out->has_labels)
            rc = mf_set_error(MF_ERR_ARG,
                              "'%s' has no labels (every /label is -1); the "
                              "label rules (per-label percentile, outliers, merge, "
                              "min-per-label) need them",
                              mf_store_path(in));
    }
    if (rc == 0)
        rc = run_rules(&c);
    free(c.buf);
    clean_labels_release(&c.lab);
    if (rc < 0) {
        mf_clean_result_release(out);
        return rc;
    }
    for (uint64_t i = 0; i < c.rows; i++)
        out->dropped[out->rule[i]]++;
    out->identities_out = count_identities(out, out->rule);
    return 0;
}
