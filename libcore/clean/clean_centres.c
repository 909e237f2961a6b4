/* clean_centres.c - identity centres: rule 2 (per-identity outliers) and rule 4 (labels
 * whose centres coincide).
 *
 * Centre of a label = the quality-weighted sum of its unit embeddings (weights from
 * magnitude, clean_weight), so blurry samples barely move it. A sample is compared with
 * the centre of the OTHER samples of its label (leave-one-out: S - w x), otherwise in a
 * small identity a wrong sample would pull its own centre towards itself.
 *
 * Rule 2 flags a sample when its cosine is below --min-center-cos, or when it is an
 * outlier for its own identity: MagFace samples of low magnitude are expected to sit
 * further from their centre, so the cosine is first corrected by the cosine expected at
 * the sample's magnitude (a curve fitted on all samples), and the residual is compared
 * with the identity's own median and spread (robust z below -k). Two passes: the second
 * recomputes centres and statistics without the samples the first pass flagged. */
#define _GNU_SOURCE /* qsort_r */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clean_internal.h"
#include "clean_pairs.h"
#include "mf/status.h"

#define DIM_BLOCK 32
#define CURVE_BINS 20
#define MIN_ROWS_FOR_OWN_SPREAD 5
/* Smallest spread of cosines believed (identical samples would otherwise make any
 * rounding difference an outlier). */
#define MIN_SPREAD 0.02

int clean_label_sums(clean_ctx *c, const uint8_t *use, const float *w, double *sums)
{
    int dim = c->dim;
    memset(sums, 0, c->lab.n * (size_t)dim * sizeof *sums);
    const int32_t *dense = c->lab.dense;
    for (uint64_t s = 0; s < c->rows; s += c->chunk) {
        size_t m = c->rows - s < c->chunk ? (size_t)(c->rows - s) : c->chunk, any = 0;
        for (size_t i = 0; i < m && !any; i++)
            any = use[s + i];
        if (!any)
            continue;
        int rc = clean_read_unit(c, s, m);
        if (rc < 0)
            return rc;
        const float *buf = c->buf;
        int blocks = (dim + DIM_BLOCK - 1) / DIM_BLOCK;
        /* Threads own disjoint dimension ranges: no two write the same sum. */
#pragma omp parallel for schedule(static)
        for (int b = 0; b < blocks; b++) {
            int d0 = b * DIM_BLOCK, d1 = d0 + DIM_BLOCK < dim ? d0 + DIM_BLOCK : dim;
            for (size_t i = 0; i < m; i++) {
                if (!use[s + i])
                    continue;
                double *S = sums + (size_t)dense[s + i] * dim;
                const float *x = buf + i * (size_t)dim;
                double wi = w[s + i];
                for (int d = d0; d < d1; d++)
                    S[d] += wi * x[d];
            }
        }
    }
    return 0;
}

/* Cosine of each candidate row to its label's centre, leaving the row out of the sum
 * when it is part of it (in_sum). NAN when there is no other sample. */
static int centre_cosines(clean_ctx *c, const uint8_t *cand, const uint8_t *in_sum,
                          const float *w, const double *sums, const double *ss, float *cosv)
{
    int dim = c->dim;
    const int32_t *dense = c->lab.dense;
    for (uint64_t s = 0; s < c->rows; s += c->chunk) {
        size_t m = c->rows - s < c->chunk ? (size_t)(c->rows - s) : c->chunk;
        int rc = clean_read_unit(c, s, m);
        if (rc < 0)
            return rc;
        const float *buf = c->buf;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < m; i++) {
            uint64_t r = s + i;
            if (!cand[r])
                continue;
            const double *S = sums + (size_t)dense[r] * dim;
            const float *x = buf + i * (size_t)dim;
            double dot = 0, sq = ss[dense[r]], wi = in_sum[r] ? w[r] : 0;
            for (int d = 0; d < dim; d++)
                dot += S[d] * x[d];
            double den2 = sq - 2 * wi * dot + wi * wi;
            cosv[r] = den2 > 1e-12 ? (float)((dot - wi) / sqrt(den2)) : NAN;
        }
    }
    return 0;
}

typedef struct curve {
    int n;
    double x[CURVE_BINS], y[CURVE_BINS]; /* median magnitude, median cosine per bin */
} curve;

typedef struct by_mag_ctx {
    const float *mag;
} by_mag_ctx;

static int cmp_by_mag(const void *a, const void *b, void *ctx)
{
    const float *m = ((const by_mag_ctx *)ctx)->mag;
    uint64_t i = *(const uint64_t *)a, j = *(const uint64_t *)b;
    return (m[i] > m[j]) - (m[i] < m[j]);
}

/* Expected cosine as a function of magnitude: medians over equal-count magnitude bins of
 * the rows in `stats` (finite cosines only). */
static int fit_curve(clean_ctx *c, const uint8_t *stats, const float *cosv, curve *cv)
{
    uint64_t n = 0, *idx = malloc((c->rows ? c->rows : 1) * sizeof *idx);
    float *tmp = malloc((c->rows ? c->rows : 1) * sizeof *tmp);
    if (!idx || !tmp) {
        free(idx), free(tmp);
        return mf_set_error(MF_ERR_NOMEM, "cannot fit the cosine/magnitude curve");
    }
    for (uint64_t i = 0; i < c->rows; i++)
        if (stats[i] && isfinite(cosv[i]))
            idx[n++] = i;
    by_mag_ctx ctx = {c->r->magnitude};
    qsort_r(idx, n, sizeof *idx, cmp_by_mag, &ctx);
    cv->n = n / 50 < 1 ? 1 : n / 50 > CURVE_BINS ? CURVE_BINS : (int)(n / 50);
    for (int b = 0; b < cv->n; b++) {
        uint64_t lo = n * (uint64_t)b / (uint64_t)cv->n,
                 hi = n * (uint64_t)(b + 1) / (uint64_t)cv->n;
        size_t m = 0;
        for (uint64_t j = lo; j < hi; j++)
            tmp[m++] = c->r->magnitude[idx[j]];
        cv->x[b] = clean_median(tmp, m);
        m = 0;
        for (uint64_t j = lo; j < hi; j++)
            tmp[m++] = cosv[idx[j]];
        cv->y[b] = m ? clean_median(tmp, m) : 0;
    }
    if (n == 0)
        cv->x[0] = 0, cv->y[0] = 0;
    free(idx), free(tmp);
    return 0;
}

static double curve_at(const curve *cv, double m)
{
    if (cv->n == 1 || m <= cv->x[0])
        return cv->y[0];
    for (int b = 1; b < cv->n; b++)
        if (m <= cv->x[b]) {
            double t =
                cv->x[b] > cv->x[b - 1] ? (m - cv->x[b - 1]) / (cv->x[b] - cv->x[b - 1]) : 1;
            return cv->y[b - 1] + t * (cv->y[b] - cv->y[b - 1]);
        }
    return cv->y[cv->n - 1];
}

/* Median and robust sd (1.4826 MAD) of v[0..n) (reordered). */
static void robust_stats(float *v, size_t n, double *med, double *sd)
{
    *med = clean_median(v, n);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)fabs(v[i] - *med);
    *sd = 1.4826 * clean_median(v, n);
}

/* Flag candidates: absolute floor, and quality-corrected residual below its identity's
 * median - k * spread (statistics from the rows in `stats`). */
static int flag_rows(clean_ctx *c, const uint8_t *cand, const uint8_t *stats, const float *cosv,
                     uint8_t *flag)
{
    const mf_clean_params *p = c->p;
    const float *mag = c->r->magnitude;
    curve cv = {0};
    int rc = fit_curve(c, stats, cosv, &cv);
    float *res = malloc((c->rows ? c->rows : 1) * sizeof *res);
    float *tmp = malloc((c->rows ? c->rows : 1) * sizeof *tmp);
    if (rc < 0 || !res || !tmp) {
        free(res), free(tmp);
        return rc < 0 ? rc : mf_set_error(MF_ERR_NOMEM, "cannot allocate residuals");
    }
    size_t m = 0;
    for (uint64_t i = 0; i < c->rows; i++) {
        res[i] = cand[i] && isfinite(cosv[i]) ? (float)(cosv[i] - curve_at(&cv, mag[i])) : NAN;
        if (stats[i] && isfinite(res[i]))
            tmp[m++] = res[i];
    }
    double gmed, gsd;
    robust_stats(tmp, m, &gmed, &gsd);
    gsd = fmax(gsd, MIN_SPREAD);
    for (size_t k = 0; k < c->lab.n; k++) {
        const uint64_t *rows = c->lab.order + c->lab.offset[k];
        size_t n = (size_t)(c->lab.offset[k + 1] - c->lab.offset[k]);
        m = 0;
        for (size_t j = 0; j < n; j++)
            if (stats[rows[j]] && isfinite(res[rows[j]]))
                tmp[m++] = res[rows[j]];
        double med = gmed, sd = gsd;
        if (m >= MIN_ROWS_FOR_OWN_SPREAD) {
            robust_stats(tmp, m, &med, &sd);
            /* A few samples say little about a spread: stay within [0.5, 2] x global. */
            sd = fmin(fmax(sd, 0.5 * gsd), 2.0 * gsd);
        }
        for (size_t j = 0; j < n; j++) {
            uint64_t r = rows[j];
            flag[r] = 0;
            if (!cand[r] || !isfinite(cosv[r]))
                continue;
            if (p->min_center_cos > 0 && cosv[r] < p->min_center_cos)
                flag[r] = MF_RULE_CENTER_COS;
            else if (p->outlier_k > 0 && res[r] < med - p->outlier_k * sd)
                flag[r] = MF_RULE_SPREAD;
        }
    }
    free(res), free(tmp);
    return 0;
}

/* Weights for the rows in `use`, from their magnitudes' 5th percentile and median. */
static int make_weights(clean_ctx *c, const uint8_t *use, float *w)
{
    uint8_t *mask = malloc(c->rows ? c->rows : 1);
    if (!mask)
        return mf_set_error(MF_ERR_NOMEM, "cannot allocate weights");
    for (uint64_t i = 0; i < c->rows; i++)
        mask[i] = !use[i];
    double q[2], qs[2] = {0.05, 0.5};
    int rc = mf_clean_quantiles(c->r->magnitude, mask, c->rows, qs, 2, q);
    free(mask);
    for (uint64_t i = 0; rc == 0 && i < c->rows; i++)
        w[i] = clean_weight(c->r->magnitude[i], q[0], q[1]);
    return rc;
}

static double *alloc_sums(clean_ctx *c)
{
    size_t n;
    if (mf_size_mul(c->lab.n ? c->lab.n : 1, (size_t)c->dim * sizeof(double), &n,
                    "identity centres") < 0)
        return NULL;
    double *s = malloc(n);
    if (!s)
        mf_set_error(MF_ERR_NOMEM, "cannot allocate %zu bytes of identity centres", n);
    return s;
}

static void squared_norms(const clean_ctx *c, const double *sums, double *ss)
{
    for (size_t k = 0; k < c->lab.n; k++) {
        const double *S = sums + k * (size_t)c->dim;
        double q = 0;
        for (int d = 0; d < c->dim; d++)
            q += S[d] * S[d];
        ss[k] = q;
    }
}

int clean_outliers(clean_ctx *c)
{
    uint64_t n = c->rows;
    mf_clean_result *r = c->r;
    uint8_t *cand = malloc(n ? n : 1), *use = malloc(n ? n : 1), *flag = calloc(n ? n : 1, 1);
    float *w = malloc((n ? n : 1) * sizeof *w), *cosv = malloc((n ? n : 1) * sizeof *cosv);
    double *ss = malloc((c->lab.n ? c->lab.n : 1) * sizeof *ss);
    double *sums = alloc_sums(c);
    int rc = 0;
    if (!cand || !use || !flag || !w || !cosv || !ss || !sums) {
        rc = sums ? mf_set_error(MF_ERR_NOMEM, "cannot allocate the outlier rule's arrays")
                  : MF_ERR_NOMEM;
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        cand[i] = use[i] = r->rule[i] == MF_RULE_KEEP && c->lab.dense[i] >= 0;
        cosv[i] = NAN;
    }
    rc = make_weights(c, cand, w);
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        rc = clean_label_sums(c, use, w, sums);
        if (rc == 0) {
            squared_norms(c, sums, ss);
            rc = centre_cosines(c, cand, use, w, sums, ss, cosv);
        }
        if (rc == 0)
            rc = flag_rows(c, cand, use, cosv, flag);
        for (uint64_t i = 0; rc == 0 && pass == 0 && i < n; i++)
            use[i] = cand[i] && !flag[i];
    }
    for (uint64_t i = 0; rc == 0 && i < n; i++)
        if (flag[i] && r->rule[i] == MF_RULE_KEEP) {
            r->rule[i] = flag[i];
            r->figure[i] = cosv[i];
        }
done:
    free(cand), free(use), free(flag), free(w), free(cosv), free(ss), free(sums);
    return rc;
}

/* ---- rule 4 ---------------------------------------------------------------------------------- */

typedef struct uf {
    int64_t *parent;
} uf;

static int64_t uf_find(uf *u, int64_t x)
{
    while (u->parent[x] != x)
        x = u->parent[x] = u->parent[u->parent[x]];
    return x;
}

static int add_merge(mf_clean_result *r, size_t *cap, int64_t a, int64_t b, float cos)
{
    if (r->n_merges == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        mf_clean_merge *m = realloc(r->merges, nc * sizeof *m);
        if (!m)
            return mf_set_error(MF_ERR_NOMEM, "cannot record label merges");
        r->merges = m, *cap = nc;
    }
    r->merges[r->n_merges++] = (mf_clean_merge){a < b ? a : b, a < b ? b : a, cos};
    return 0;
}

/* Relabel every labelled row to the label of its group with most kept rows. */
static void apply_groups(clean_ctx *c, uf *u, const int64_t *kept)
{
    size_t L = c->lab.n;
    int64_t *best = malloc(L * sizeof *best);
    if (!best)
        return;
    for (size_t k = 0; k < L; k++)
        best[k] = -1;
    for (size_t k = 0; k < L; k++) {
        int64_t root = uf_find(u, (int64_t)k), b = best[root];
        if (b < 0 || kept[k] > kept[b] || (kept[k] == kept[b] && (int64_t)k < b))
            best[root] = (int64_t)k;
    }
    for (uint64_t i = 0; i < c->rows; i++)
        if (c->lab.dense[i] >= 0)
            c->r->label[i] = c->lab.values[best[uf_find(u, c->lab.dense[i])]];
    free(best);
}

int clean_merge(clean_ctx *c)
{
    uint64_t n = c->rows;
    size_t L = c->lab.n, dim = (size_t)c->dim, cap = 0;
    mf_clean_result *r = c->r;
    uint8_t *use = malloc(n ? n : 1);
    float *w = malloc((n ? n : 1) * sizeof *w), *cent = malloc(L * dim * sizeof *cent + 1);
    int64_t *kept = calloc(L + 1, sizeof *kept);
    uf u = {malloc((L + 1) * sizeof(int64_t))};
    double *sums = alloc_sums(c);
    clean_pairs pairs = {0};
    int rc = 0;
    if (!use || !w || !cent || !kept || !u.parent || !sums) {
        rc = sums ? mf_set_error(MF_ERR_NOMEM, "cannot allocate label centres") : MF_ERR_NOMEM;
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        use[i] = r->rule[i] == MF_RULE_KEEP && c->lab.dense[i] >= 0;
        if (use[i])
            kept[c->lab.dense[i]]++;
    }
    rc = make_weights(c, use, w);
    if (rc == 0)
        rc = clean_label_sums(c, use, w, sums);
    for (size_t k = 0; rc == 0 && k < L; k++) {
        double q = 0;
        for (size_t d = 0; d < dim; d++)
            q += sums[k * dim + d] * sums[k * dim + d];
        float inv = q > 0 ? (float)(1.0 / sqrt(q)) : 0.f;
        for (size_t d = 0; d < dim; d++)
            cent[k * dim + d] = (float)sums[k * dim + d] * inv;
    }
    if (rc == 0)
        rc = clean_pairs_in_memory(cent, L, c->dim, c->p->merge_cos, &pairs);
    for (size_t k = 0; k <= L; k++)
        u.parent[k] = (int64_t)k;
    for (size_t i = 0; rc == 0 && i < pairs.n; i++) {
        int64_t a = pairs.a[i], b = pairs.b[i];
        if (a >= b || !kept[a] || !kept[b])
            continue; /* each pair once; empty labels have no centre */
        rc = add_merge(r, &cap, c->lab.values[a], c->lab.values[b], pairs.sim[i]);
        u.parent[uf_find(&u, a)] = uf_find(&u, b);
    }
    if (rc == 0 && c->p->apply_merge)
        apply_groups(c, &u, kept);
done:
    clean_pairs_release(&pairs);
    free(use), free(w), free(cent), free(kept), free(u.parent), free(sums);
    return rc;
}
