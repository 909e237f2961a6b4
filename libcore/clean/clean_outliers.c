/* clean_outliers.c - rule 2: rows that do not fit their label.
 *
 * Every test compares a row with the centre of the OTHER rows of its label (leave-one-
 * out: S - w x, with S the quality-weighted sum of the label's unit embeddings), since in
 * a small identity a wrong row would pull its own centre towards itself.
 *
 * - floor (min_center_cos): that cosine below a fixed value.
 * - spread (outlier_k): MagFace faces of low magnitude sit further from their centre AND
 *   scatter more, so the cosine is judged against faces of the same magnitude, in
 *   location and in scale, pooled over all identities and then shrunk per identity:
 *     1. the cosine is first divided by rho, the estimated cosine between the
 *        leave-one-out centre and the identity's true direction (a centre of four noisy
 *        samples is itself noisy: rho^2 = 1 - sum w_j^2 (1 - c_j^2) / |S|^2);
 *     2. mu(m) and s(m): median and robust sd (1.4826 MAD) of that cosine over
 *        equal-count magnitude bins, interpolated: z = (cos - mu(m)) / s(m);
 *     3. per identity, the median d and robust sd l of z, shrunk towards the pool by
 *        empirical Bayes: d' = B d with B = tau^2 / (tau^2 + (pi/2) l0^2 / n), tau^2 the
 *        between-identity variance of d net of its sampling variance; log l likewise
 *        towards log l0, l0 the pooled within-identity spread (identities of 8+ rows);
 *     4. flag when (z - d') / l' < -k.
 * - nearer identity (nearer): a row that is closer to the centre of one of its label's
 *   NEARER_CANDIDATES most similar identities than to its own leave-one-out centre: the
 *   look-alike a wrong label most often names. Only where faces are recognisable: the
 *   typical own cosine at that magnitude must exceed the typical best other one by
 *   NEARER_SEPARATION within-identity spreads, otherwise a blurry face is close to
 *   everything and nothing and the comparison says nothing.
 * Two passes: the second recomputes centres and statistics without the rows the first
 * flagged, and decides. */
#define _GNU_SOURCE /* qsort_r */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean_internal.h"
#include "mf/knn.h"
#include "mf/status.h"

#define BINS 20
#define MIN_BIN_ROWS 50
/* Smallest within-identity spread of cosines believed (cosine units): identical samples
 * would otherwise make any rounding difference an outlier. */
#define MIN_SPREAD 0.02
#define POOL_ROWS 8 /* identities this large give the pooled within-identity spread */
#define OWN_ROWS 3  /* fewer rows: no identity-specific spread at all */
#define NEARER_CANDIDATES 10
#define NEARER_SEPARATION 3.0
#define MEDIAN_VAR 1.5708 /* n var(sample median) / sigma^2 for a normal sample */
#define LOG_MAD_VAR 1.35  /* n var(log MAD) for a normal sample */
#define RHO_ITERATIONS 3

/* A function of magnitude: values at bin centres, linear in between, flat outside. */
typedef struct curve {
    int n;
    double x[BINS], y[BINS];
} curve;

static double curve_at(const curve *cv, double m)
{
    if (cv->n <= 1 || m <= cv->x[0])
        return cv->n ? cv->y[0] : 0;
    for (int b = 1; b < cv->n; b++)
        if (m <= cv->x[b]) {
            double t =
                cv->x[b] > cv->x[b - 1] ? (m - cv->x[b - 1]) / (cv->x[b] - cv->x[b - 1]) : 1;
            return cv->y[b - 1] + t * (cv->y[b] - cv->y[b - 1]);
        }
    return cv->y[cv->n - 1];
}

typedef struct outl {
    clean_ctx *c;
    uint64_t n;
    size_t labels;
    int nb_k;              /* neighbour identities per label (0: no nearer test) */
    uint8_t *cand, *use;   /* rows tested; rows that make the centres and statistics */
    uint8_t *flag;         /* rows: mf_clean_rule that flagged it, 0 if none */
    float *w;              /* rows: quality weights */
    float *raw, *den2;     /* rows: leave-one-out cosine, |S - w x|^2 */
    float *corr, *z;       /* rows: cosine / rho, standardised score */
    float *best;           /* rows: best cosine to a neighbour identity's centre */
    float *tmp;            /* rows: scratch */
    uint64_t *idx;         /* rows: scratch (rows sorted by magnitude) */
    double *sums, *ss, *q; /* (labels, dim) weighted sums; labels: |S|^2, sum w^2 (1-c^2) */
    float *cent;           /* (labels, dim) unit centres, for the nearer test */
    int64_t *nb;           /* (labels, nb_k) most similar labels */
    double *d, *l;         /* labels: shrunk location and spread */
    curve mu, s, gate;     /* location, scale, own-minus-other separation */
    double lam0, tau, tau_l, k;
} outl;

/* ---- per-row cosines ------------------------------------------------------------------- */

/* Unit centres of the labels and each label's most similar others (a kNN of centres). */
static int neighbour_labels(outl *o)
{
    size_t L = o->labels, dim = (size_t)o->c->dim;
    for (size_t k = 0; k < L; k++) {
        const double *S = o->sums + k * dim;
        float inv = o->ss[k] > 0 ? (float)(1.0 / sqrt(o->ss[k])) : 0.f;
        for (size_t d = 0; d < dim; d++)
            o->cent[k * dim + d] = (float)S[d] * inv;
    }
    mf_knn_params kp = mf_knn_default_params();
    kp.k = o->nb_k;
    kp.recall_sample = 0;
    mf_knn_graph *g;
    int rc = mf_knn_build(&g, o->cent, L, (int)dim, &kp, NULL);
    if (rc < 0)
        return rc;
    memcpy(o->nb, g->nbr, L * (size_t)o->nb_k * sizeof *o->nb);
    mf_knn_free(g);
    return 0;
}

/* For each candidate: leave-one-out cosine (NAN without another sample), |S - w x|^2
 * and the best cosine to a neighbour label's centre (-2 if none). */
static int row_cosines(outl *o)
{
    clean_ctx *c = o->c;
    int dim = c->dim;
    const int32_t *dense = c->lab.dense;
    for (uint64_t s = 0; s < c->rows; s += c->chunk) {
        size_t m = c->rows - s < c->chunk ? (size_t)(c->rows - s) : c->chunk;
        int rc = clean_read_unit_wanted(c, s, m, o->cand);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        const float *buf = c->buf;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < m; i++) {
            uint64_t r = s + i;
            if (!o->cand[r])
                continue;
            size_t k = (size_t)dense[r];
            const double *S = o->sums + k * dim;
            const float *x = buf + i * (size_t)dim;
            double dot = 0, wi = o->use[r] ? o->w[r] : 0;
            for (int d = 0; d < dim; d++)
                dot += S[d] * x[d];
            double den2 = o->ss[k] - 2 * wi * dot + wi * wi;
            o->den2[r] = (float)den2;
            o->raw[r] = den2 > 1e-12 ? (float)((dot - wi) / sqrt(den2)) : NAN;
            float best = -2.f;
            for (int j = 0; j < o->nb_k; j++) {
                int64_t t = o->nb[k * o->nb_k + j];
                if (t < 0 || !(o->ss[t] > 0))
                    continue;
                const float *ct = o->cent + (size_t)t * dim;
                float e = 0;
                for (int d = 0; d < dim; d++)
                    e += ct[d] * x[d];
                best = e > best ? e : best;
            }
            o->best[r] = best;
        }
    }
    return 0;
}

/* corr = raw / rho (see the top of the file), by fixed-point iteration on the c_j. */
static void correct_for_centre_noise(outl *o)
{
    const int32_t *dense = o->c->lab.dense;
    for (uint64_t i = 0; i < o->n; i++)
        o->corr[i] = o->raw[i];
    for (int it = 0; it < RHO_ITERATIONS; it++) {
        memset(o->q, 0, o->labels * sizeof *o->q);
        for (uint64_t i = 0; i < o->n; i++)
            if (o->use[i] && isfinite(o->corr[i])) {
                double cj = fmin(1.0, fmax(0.0, o->corr[i]));
                o->q[dense[i]] += (double)o->w[i] * o->w[i] * (1.0 - cj * cj);
            }
        for (uint64_t i = 0; i < o->n; i++) {
            if (!o->cand[i] || !isfinite(o->raw[i]))
                continue;
            double ci = fmin(1.0, fmax(0.0, o->corr[i]));
            double own = o->use[i] ? (double)o->w[i] * o->w[i] * (1.0 - ci * ci) : 0;
            double rho2 = 1.0 - (o->q[dense[i]] - own) / o->den2[i];
            o->corr[i] = (float)(o->raw[i] / sqrt(fmin(1.0, fmax(0.05, rho2))));
        }
    }
}

/* ---- curves over magnitude --------------------------------------------------------------- */

static int cmp_by_mag(const void *a, const void *b, void *ctx)
{
    const float *m = ctx;
    uint64_t i = *(const uint64_t *)a, j = *(const uint64_t *)b;
    return (m[i] > m[j]) - (m[i] < m[j]);
}

/* Rows with sel[i] and finite v[i] (and v2[i], if given) into o->idx, sorted by
 * magnitude; returns their count. */
static uint64_t rows_by_mag(outl *o, const uint8_t *sel, const float *v, const float *v2)
{
    uint64_t m = 0;
    for (uint64_t i = 0; i < o->n; i++)
        if (sel[i] && isfinite(v[i]) && (!v2 || v2[i] > -2.f))
            o->idx[m++] = i;
    qsort_r(o->idx, m, sizeof *o->idx, cmp_by_mag, o->c->r->magnitude);
    return m;
}

/* 1.4826 x the median absolute deviation of v[0..n) from `centre`: a robust sd (v is
 * overwritten with the deviations). */
static double spread_about(float *v, size_t n, double centre)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (float)fabs(v[i] - centre);
    return 1.4826 * clean_median(v, n);
}

/* Over equal-count bins of idx[0..m) (sorted by magnitude): x = median magnitude, y =
 * median of v - minus(row) (minus NULL: of v), or with `mad` its robust sd. */
static void bin_curve(outl *o, uint64_t m, const float *v, const curve *minus, int mad,
                      curve *out)
{
    const float *mag = o->c->r->magnitude;
    uint64_t nb = m / MIN_BIN_ROWS;
    out->n = nb < 1 ? (m ? 1 : 0) : nb > BINS ? BINS : (int)nb;
    for (int b = 0; b < out->n; b++) {
        uint64_t lo = m * (uint64_t)b / (uint64_t)out->n, hi = m * (uint64_t)(b + 1) / out->n;
        size_t k = 0;
        for (uint64_t j = lo; j < hi; j++)
            o->tmp[k++] = mag[o->idx[j]];
        out->x[b] = clean_median(o->tmp, k);
        k = 0;
        for (uint64_t j = lo; j < hi; j++) {
            uint64_t r = o->idx[j];
            o->tmp[k++] = (float)(v[r] - (minus ? curve_at(minus, mag[r]) : 0));
        }
        double med = clean_median(o->tmp, k);
        out->y[b] = mad ? spread_about(o->tmp, k, med) : med;
    }
}

/* ---- the spread test's statistics ----------------------------------------------------- */

/* Median and robust sd of z over label k's rows in `use` (count in *n). */
static void label_stats(outl *o, size_t k, double *med, double *sd, size_t *n)
{
    const clean_labels *l = &o->c->lab;
    size_t m = 0;
    for (uint64_t j = l->offset[k]; j < l->offset[k + 1]; j++) {
        uint64_t r = l->order[j];
        if (o->use[r] && isfinite(o->z[r]))
            o->tmp[m++] = o->z[r];
    }
    *n = m;
    *med = m ? clean_median(o->tmp, m) : 0;
    *sd = m >= OWN_ROWS ? fmax(spread_about(o->tmp, m, *med), 0.05) : NAN;
}

/* Robust sd (1.4826 MAD) of v[0..n) (reordered), 0 when empty. */
static double robust_sd(float *v, size_t n)
{
    return n ? spread_about(v, n, clean_median(v, n)) : 0;
}

/* Pooled within-identity spread l0, then each label's shrunk location d and spread l. */
static void shrink_labels(outl *o, size_t *cnt)
{
    const clean_labels *l = &o->c->lab;
    size_t L = o->labels;
    for (size_t k = 0; k < L; k++)
        label_stats(o, k, &o->d[k], &o->l[k], &cnt[k]);
    /* l0: pooled |z - d_k| over identities of POOL_ROWS+ rows (else any with 2+). */
    for (size_t min_rows = POOL_ROWS;; min_rows = 2) {
        size_t m = 0;
        for (size_t k = 0; k < L; k++)
            for (uint64_t j = l->offset[k]; cnt[k] >= min_rows && j < l->offset[k + 1]; j++) {
                uint64_t r = l->order[j];
                if (o->use[r] && isfinite(o->z[r]))
                    o->tmp[m++] = (float)fabs(o->z[r] - o->d[k]);
            }
        if (m >= 20 || min_rows == 2) {
            o->lam0 = m ? fmax(1.4826 * clean_median(o->tmp, m), 0.05) : 1.0;
            break;
        }
    }
    /* tau^2: spread of the identities' medians net of their sampling variance. */
    size_t m = 0, mv = 0;
    float *vs = (float *)o->idx; /* idx is free here; holds n >= L floats */
    for (size_t k = 0; k < L; k++)
        if (cnt[k] >= OWN_ROWS) {
            o->tmp[m++] = (float)o->d[k];
            vs[mv++] = (float)(MEDIAN_VAR * o->lam0 * o->lam0 / (double)cnt[k]);
        }
    double sd = robust_sd(o->tmp, m), v0 = mv ? clean_median(vs, mv) : 0;
    o->tau = sqrt(fmax(sd * sd - v0, 0.01));
    m = mv = 0;
    for (size_t k = 0; k < L; k++)
        if (cnt[k] >= POOL_ROWS) {
            o->tmp[m++] = (float)log(o->l[k] / o->lam0);
            vs[mv++] = (float)(LOG_MAD_VAR / (double)cnt[k]);
        }
    sd = robust_sd(o->tmp, m), v0 = mv ? clean_median(vs, mv) : 0;
    o->tau_l = sqrt(fmax(sd * sd - v0, 0.001));
    double t2 = o->tau * o->tau, tl2 = o->tau_l * o->tau_l;
    for (size_t k = 0; k < L; k++) {
        double n = (double)cnt[k];
        o->d[k] = n > 0 ? o->d[k] * t2 / (t2 + MEDIAN_VAR * o->lam0 * o->lam0 / n) : 0;
        double b = cnt[k] >= OWN_ROWS ? tl2 / (tl2 + LOG_MAD_VAR / n) : 0;
        o->l[k] = o->lam0 * (cnt[k] >= OWN_ROWS ? exp(b * log(o->l[k] / o->lam0)) : 1.0);
    }
}

/* Curves, standardised scores and shrunk identity statistics from the rows in `use`.
 * Returns 0 with o->mu.n == 0 when there are too few rows for any statistics. */
static int fit_model(outl *o, size_t *cnt)
{
    const float *mag = o->c->r->magnitude;
    correct_for_centre_noise(o);
    uint64_t m = rows_by_mag(o, o->use, o->corr, NULL);
    bin_curve(o, m, o->corr, NULL, 0, &o->mu);
    bin_curve(o, m, o->corr, &o->mu, 1, &o->s);
    for (int b = 0; b < o->s.n; b++)
        o->s.y[b] = fmax(o->s.y[b], 1e-6);
    if (o->mu.n == 0)
        return 0;
    for (uint64_t i = 0; i < o->n; i++)
        o->z[i] =
            o->cand[i] && isfinite(o->corr[i])
                ? (float)((o->corr[i] - curve_at(&o->mu, mag[i])) / curve_at(&o->s, mag[i]))
                : NAN;
    shrink_labels(o, cnt);
    if (o->nb_k) {
        /* separation of own and best other cosine per magnitude, in within-identity
         * spreads: the typical row's (median) own cosine minus its best other one */
        float *diff = malloc((o->n ? o->n : 1) * sizeof *diff);
        if (!diff)
            return mf_set_error(MF_ERR_NOMEM, "cannot allocate the nearer-identity gate");
        for (uint64_t i = 0; i < o->n; i++)
            diff[i] = o->raw[i] - o->best[i];
        m = rows_by_mag(o, o->cand, o->raw, o->best);
        bin_curve(o, m, diff, NULL, 0, &o->gate);
        free(diff);
        for (int b = 0; b < o->gate.n; b++)
            o->gate.y[b] /= fmax(curve_at(&o->s, o->gate.x[b]) * o->lam0, MIN_SPREAD);
    }
    return 0;
}

/* ---- flags ------------------------------------------------------------------------------- */

static void flag_rows(outl *o)
{
    const mf_clean_params *p = o->c->p;
    const float *mag = o->c->r->magnitude;
    const int32_t *dense = o->c->lab.dense;
    int spread = p->outliers && p->outlier_k > 0 && o->mu.n > 0;
    int nearer = o->nb_k > 0 && o->gate.n > 0;
    for (uint64_t i = 0; i < o->n; i++) {
        o->flag[i] = 0;
        if (!o->cand[i] || !isfinite(o->raw[i]))
            continue;
        int32_t k = dense[i];
        /* the row's expected spread in cosine units, at least MIN_SPREAD */
        double s = curve_at(&o->s, mag[i]), sd = fmax(o->l[k] * s, MIN_SPREAD);
        if (p->min_center_cos > 0 && o->raw[i] < p->min_center_cos)
            o->flag[i] = MF_RULE_CENTER_COS;
        else if (spread && isfinite(o->z[i]) && (o->z[i] - o->d[k]) * s / sd < -o->k)
            o->flag[i] = MF_RULE_SPREAD;
        else if (nearer && o->best[i] > o->raw[i] &&
                 curve_at(&o->gate, mag[i]) >= NEARER_SEPARATION)
            o->flag[i] = MF_RULE_NEARER;
    }
}

/* One sentence on what ran and what it estimated, for the summary and the record. */
static void describe(const outl *o, char *out, size_t len)
{
    const mf_clean_params *p = o->c->p;
    size_t k = 0;
    out[0] = '\0';
    if (p->min_center_cos > 0)
        k += (size_t)snprintf(out + k, len - k, "floor: cosine to the centre below %g",
                              p->min_center_cos);
    if (k < len && p->outliers && p->outlier_k > 0) {
        if (o->mu.n)
            k += (size_t)snprintf(
                out + k, len - k,
                "%sspread: below -%g within-identity spreads (pooled %.2f of the spread at "
                "equal magnitude, %.3f-%.3f from lowest to highest magnitude; identity "
                "location sd %.2f, log-spread sd %.2f, shrunk per identity)",
                k ? "; " : "", p->outlier_k, o->lam0, o->s.y[0] * o->lam0,
                o->s.y[o->s.n - 1] * o->lam0, o->tau, o->tau_l);
        else
            k += (size_t)snprintf(out + k, len - k,
                                  "%sspread: not run, too few rows for statistics",
                                  k ? "; " : "");
    }
    if (k < len && p->outliers && p->nearer) {
        double from = NAN;
        for (int b = 0; b < o->gate.n && isnan(from); b++)
            if (o->gate.y[b] >= NEARER_SEPARATION)
                from = o->gate.x[b];
        if (o->nb_k && isfinite(from))
            snprintf(out + k, len - k,
                     "%snearer-identity: closer to one of the label's %d most similar "
                     "identities than to its own, tested where faces are recognisable "
                     "(magnitude above about %.2f)",
                     k ? "; " : "", o->nb_k, from);
        else
            snprintf(out + k, len - k, "%snearer-identity: not run (%s)", k ? "; " : "",
                     o->nb_k ? "no magnitude where own and other identities separate"
                             : "fewer than two identities");
    }
}

/* ---- driver ------------------------------------------------------------------------------- */

static void outl_release(outl *o)
{
    free(o->cand), free(o->use), free(o->flag), free(o->w), free(o->raw), free(o->den2);
    free(o->corr), free(o->z), free(o->best), free(o->tmp), free(o->idx), free(o->sums);
    free(o->ss), free(o->q), free(o->cent), free(o->nb), free(o->d), free(o->l);
}

static int outl_alloc(outl *o, clean_ctx *c)
{
    memset(o, 0, sizeof *o);
    o->c = c;
    o->n = c->rows;
    o->labels = c->lab.n;
    o->k = c->p->outlier_k;
    if (c->p->outliers && c->p->nearer && o->labels >= 2)
        o->nb_k = o->labels - 1 < NEARER_CANDIDATES ? (int)o->labels - 1 : NEARER_CANDIDATES;
    size_t n = o->n ? o->n : 1, L = o->labels ? o->labels : 1, cells;
    o->cand = malloc(n), o->use = malloc(n), o->flag = calloc(n, 1);
    o->w = malloc(n * sizeof *o->w), o->raw = malloc(n * sizeof *o->raw);
    o->den2 = malloc(n * sizeof *o->den2), o->corr = malloc(n * sizeof *o->corr);
    o->z = malloc(n * sizeof *o->z), o->best = malloc(n * sizeof *o->best);
    o->tmp = malloc(n * sizeof *o->tmp);
    o->idx = malloc((n > L ? n : L) * sizeof *o->idx);
    o->ss = malloc(L * sizeof *o->ss), o->q = malloc(L * sizeof *o->q);
    o->d = malloc(L * sizeof *o->d), o->l = malloc(L * sizeof *o->l);
    o->sums = clean_alloc_sums(c);
    if (!o->sums)
        return MF_ERR_NOMEM;
    if (o->nb_k) {
        if (mf_size_mul(L, (size_t)c->dim * sizeof(float), &cells, "identity centres") < 0)
            return MF_ERR_NOMEM;
        o->cent = malloc(cells);
        o->nb = malloc(L * (size_t)o->nb_k * sizeof *o->nb);
    }
    if (!o->cand || !o->use || !o->w || !o->raw || !o->den2 || !o->corr || !o->z || !o->best ||
        !o->tmp || !o->idx || !o->ss || !o->q || !o->d || !o->l ||
        (o->nb_k && (!o->cent || !o->nb)))
        return mf_set_error(MF_ERR_NOMEM, "cannot allocate the outlier rule's arrays");
    return 0;
}

static int one_pass(outl *o, size_t *cnt)
{
    int rc = clean_label_sums(o->c, o->use, o->w, o->sums);
    if (rc < 0)
        return rc;
    clean_squared_norms(o->c, o->sums, o->ss);
    if (o->nb_k && (rc = neighbour_labels(o)) < 0)
        return rc;
    if ((rc = row_cosines(o)) < 0)
        return rc;
    if ((rc = fit_model(o, cnt)) < 0)
        return rc;
    flag_rows(o);
    return 0;
}

int clean_outliers(clean_ctx *c)
{
    mf_clean_result *r = c->r;
    outl o;
    size_t *cnt = calloc(c->lab.n ? c->lab.n : 1, sizeof *cnt);
    int rc = cnt ? outl_alloc(&o, c) : mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (uint64_t i = 0; rc == 0 && i < o.n; i++) {
        o.cand[i] = o.use[i] = r->rule[i] == MF_RULE_KEEP && c->lab.dense[i] >= 0;
        o.raw[i] = o.corr[i] = o.z[i] = NAN;
        o.best[i] = -2.f;
    }
    if (rc == 0)
        rc = clean_make_weights(c, o.cand, o.w);
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        rc = one_pass(&o, cnt);
        for (uint64_t i = 0; rc == 0 && pass == 0 && i < o.n; i++)
            o.use[i] = o.cand[i] && !o.flag[i];
    }
    for (uint64_t i = 0; rc == 0 && i < o.n; i++)
        if (o.flag[i] && r->rule[i] == MF_RULE_KEEP) {
            r->rule[i] = o.flag[i];
            r->figure[i] = o.flag[i] == MF_RULE_NEARER ? o.best[i] : o.raw[i];
        }
    if (rc == 0)
        describe(&o, r->rule2_reason, sizeof r->rule2_reason);
    if (cnt)
        outl_release(&o);
    free(cnt);
    return rc;
}
