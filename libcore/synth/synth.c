/* synth.c - the synthetic embedding generator (see include/mf/synth.h).
 *
 * Every random number comes from a counter-based stream: splitmix64 seeded by (seed,
 * stream, index). Row r's values depend only on the parameters and r, so any row range
 * can be generated in any order, by any number of threads, with the same result. */
#include "mf/synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"

/* Independent streams: one per kind of decision. */
enum { S_SIZE = 1, S_CENTRE, S_TWIN, S_FACE, S_UNREC, S_KIND, S_ROW, S_DUP };

/* How far back a duplicate looks for the sample it copies. */
#define DUP_LOOKBACK 64
/* Quality of typical faces: N(mean, sd) clipped; the low tail is uniform below. */
#define Q_MEAN 0.70
#define Q_SD 0.12
#define Q_GOOD_MIN 0.30
#define Q_LOW_MAX 0.45
#define JUNK_Q_MAX 0.15
#define MAG_NOISE 0.8
/* Size limits that keep the precomputed tables sane. */
#define MAX_DIM 65536
#define MAX_IDENTITIES (1LL << 26)

struct mf_synth {
    mf_synth_params p;
    uint64_t *start; /* identities + 1: first row of each identity block */
    float *centre;   /* (identities, dim) unit identity centres */
    uint8_t *twin;   /* identities: 1 if a look-alike of identity k - 1 */
    float *face;     /* (dim) the direction all faces share a little of */
    float *unrec;    /* (dim) the "unrecognisable" direction */
};

mf_synth_params mf_synth_default_params(void)
{
    mf_synth_params p = {
        .rows = 65000,
        .identities = 2000,
        .dim = 512,
        .seed = 1,
        .junk = 0.02,
        .dup = 0.02,
        .mislabel = 0.03,
        .lookalike = 0.05,
        .low_quality = 0.10,
        .min_size = 5,
        .max_size = 200,
        .inter_cos = 0.10,
        .lookalike_mix = 0.45,
        .center_cos = 0.82,
        .drift = 0.60,
        .mag_base = 10.0,
        .mag_slope = 25.0,
    };
    return p;
}

/* ---- counter-based random numbers ---------------------------------------------------- */

static inline uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s;
    int has_spare;
    double spare;
} rng;

static inline rng rng_at(uint64_t seed, uint64_t stream, uint64_t index)
{
    rng r = {mix64(seed ^ mix64(stream * 0x2545f4914f6cdd1dULL ^ mix64(index))), 0, 0};
    return r;
}

/* SplitMix64: the next state's mix (mix64 adds the increment itself). */
static inline uint64_t rng_next(rng *r)
{
    uint64_t z = mix64(r->s);
    r->s += 0x9e3779b97f4a7c15ULL;
    return z;
}

/* Uniform in [0, 1). */
static inline double rng_uniform(rng *r) { return (double)(rng_next(r) >> 11) * 0x1p-53; }

/* Standard normal (Box-Muller; the second value of each pair is kept). */
static inline double rng_gauss(rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u = 1.0 - rng_uniform(r), v = rng_uniform(r);
    double rad = sqrt(-2.0 * log(u)), th = 6.283185307179586 * v;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return rad * cos(th);
}

/* Fill v with standard normals; returns the L2 norm. */
static double fill_gauss(rng *r, float *v, int dim)
{
    double ss = 0;
    for (int d = 0; d < dim; d++) {
        v[d] = (float)rng_gauss(r);
        ss += (double)v[d] * v[d];
    }
    return sqrt(ss);
}

static void normalise(float *v, int dim)
{
    double ss = 0;
    for (int d = 0; d < dim; d++)
        ss += (double)v[d] * v[d];
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.f;
    for (int d = 0; d < dim; d++)
        v[d] *= inv;
}

static void random_unit(uint64_t seed, int stream, uint64_t index, float *v, int dim)
{
    rng r = rng_at(seed, stream, index);
    fill_gauss(&r, v, dim);
    normalise(v, dim);
}

/* ---- identity sizes and centres ------------------------------------------------------ */

/* Heavy-tailed sizes lo + (hi - lo) u^a with mean rows/identities, scaled to sum exactly
 * to rows, none below lo. `real` is scratch for `identities` doubles. */
static void make_sizes(mf_synth *g, double *real)
{
    const mf_synth_params *p = &g->p;
    int64_t k_n = p->identities;
    double m = (double)p->rows / (double)k_n;
    double lo = fmin(p->min_size, fmax(1.0, floor(m))), hi = fmax(p->max_size, ceil(m) + 1);
    double a = m - lo < 1e-9 ? 1e9 : (hi - lo) / (m - lo) - 1.0;
    double sum = 0;
    for (int64_t k = 0; k < k_n; k++) {
        rng r = rng_at(p->seed, S_SIZE, (uint64_t)k);
        real[k] = lo + (hi - lo) * pow(rng_uniform(&r), a);
        sum += real[k];
    }
    uint64_t total = 0, *size = g->start + 1;
    for (int64_t k = 0; k < k_n; k++) {
        uint64_t n = (uint64_t)floor(real[k] * (double)p->rows / sum);
        size[k] = n < (uint64_t)lo ? (uint64_t)lo : n;
        total += size[k];
    }
    /* Hand out the rounding remainder one row at a time (or take rows back). */
    for (int64_t k = 0; total < p->rows; k = (k + 1) % k_n, total++)
        size[k]++;
    for (int64_t k = 0; total > p->rows; k = (k + 1) % k_n)
        if (size[k] > (uint64_t)lo) {
            size[k]--;
            total--;
        }
    g->start[0] = 0;
    for (int64_t k = 0; k < k_n; k++)
        g->start[k + 1] += g->start[k];
}

/* Centre k = unit(sqrt(inter) * face + sqrt(1 - inter) * z_k), so two centres have
 * cosine ~inter; a look-alike then leans towards its twin (identity k - 1). */
static void make_centres(mf_synth *g)
{
    const mf_synth_params *p = &g->p;
    int dim = p->dim;
    int64_t k_n = p->identities;
    float a = (float)sqrt(p->inter_cos), b = (float)sqrt(1.0 - p->inter_cos);
    for (int64_t k = 0; k < k_n; k++) {
        rng r = rng_at(p->seed, S_TWIN, (uint64_t)k);
        g->twin[k] = k > 0 && !g->twin[k - 1] && rng_uniform(&r) < p->lookalike;
    }
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < k_n; k++) {
        float *c = g->centre + (size_t)k * dim;
        random_unit(p->seed, S_CENTRE, (uint64_t)k, c, dim);
        for (int d = 0; d < dim; d++)
            c[d] = a * g->face[d] + b * c[d];
        normalise(c, dim);
    }
    /* A twin's partner is never a twin itself, so its centre is final: no race. */
    float tm = (float)p->lookalike_mix,
          tn = (float)sqrt(1.0 - p->lookalike_mix * p->lookalike_mix);
#pragma omp parallel for schedule(static)
    for (int64_t k = 1; k < k_n; k++) {
        if (!g->twin[k])
            continue;
        float *c = g->centre + (size_t)k * dim;
        const float *t = c - dim;
        for (int d = 0; d < dim; d++)
            c[d] = tm * t[d] + tn * c[d];
        normalise(c, dim);
    }
}

static int check_params(const mf_synth_params *p)
{
    if (p->dim < 2 || p->dim > MAX_DIM)
        return mf_set_error(MF_ERR_ARG, "synth: dim must be in 2..%d (got %d)", MAX_DIM,
                            p->dim);
    if (p->identities < 1 || p->identities > MAX_IDENTITIES)
        return mf_set_error(MF_ERR_ARG, "synth: identities must be in 1..%lld (got %lld)",
                            MAX_IDENTITIES, (long long)p->identities);
    if (p->rows < (uint64_t)p->identities)
        return mf_set_error(MF_ERR_ARG, "synth: %llu rows cannot hold %lld identities",
                            (unsigned long long)p->rows, (long long)p->identities);
    double shares[] = {p->junk,          p->dup,         p->mislabel,
                       p->lookalike,     p->low_quality, p->inter_cos,
                       p->lookalike_mix, p->center_cos,  p->drift};
    for (size_t i = 0; i < sizeof shares / sizeof shares[0]; i++)
        if (!(shares[i] >= 0 && shares[i] < 1))
            return mf_set_error(MF_ERR_ARG,
                                "synth: probabilities and cosines must be in "
                                "[0, 1) (got %g)",
                                shares[i]);
    if (p->min_size < 1 || p->max_size < p->min_size)
        return mf_set_error(MF_ERR_ARG, "synth: need 1 <= min_size <= max_size");
    if (!(p->mag_base > 0) || !(p->mag_slope >= 0))
        return mf_set_error(MF_ERR_ARG, "synth: magnitude base must be > 0, slope >= 0");
    return 0;
}

int mf_synth_new(mf_synth **out, const mf_synth_params *p)
{
    *out = NULL;
    int rc = check_params(p);
    if (rc < 0)
        return rc;
    size_t centre_bytes;
    if (mf_size_mul((size_t)p->identities, (size_t)p->dim * sizeof(float), &centre_bytes,
                    "synthetic identity centres") < 0)
        return MF_ERR_NOMEM;
    mf_synth *g = calloc(1, sizeof *g);
    if (!g)
        return mf_set_error(MF_ERR_NOMEM, "synth: out of memory");
    g->p = *p;
    g->start = calloc((size_t)p->identities + 1, sizeof *g->start);
    g->centre = malloc(centre_bytes);
    g->twin = calloc((size_t)p->identities, 1);
    g->face = malloc((size_t)p->dim * sizeof(float));
    g->unrec = malloc((size_t)p->dim * sizeof(float));
    if (!g->start || !g->centre || !g->twin || !g->face || !g->unrec) {
        mf_synth_free(g);
        return mf_set_error(MF_ERR_NOMEM, "synth: cannot allocate %zu bytes of centres",
                            centre_bytes);
    }
    /* The centres' buffer is not filled yet: use it as scratch for the real sizes (it
     * holds identities x dim floats, dim >= 2, so at least one double per identity). */
    make_sizes(g, (double *)(void *)g->centre);
    random_unit(p->seed, S_FACE, 0, g->face, p->dim);
    random_unit(p->seed, S_UNREC, 0, g->unrec, p->dim);
    make_centres(g);
    *out = g;
    return 0;
}

void mf_synth_free(mf_synth *g)
{
    if (!g)
        return;
    free(g->start);
    free(g->centre);
    free(g->twin);
    free(g->face);
    free(g->unrec);
    free(g);
}

uint64_t mf_synth_identity_size(const mf_synth *g, int64_t k)
{
    return g->start[k + 1] - g->start[k];
}

uint64_t mf_synth_identity_start(const mf_synth *g, int64_t k) { return g->start[k]; }

int mf_synth_is_lookalike(const mf_synth *g, int64_t k) { return g->twin[k]; }

const float *mf_synth_centre(const mf_synth *g, int64_t k)
{
    return g->centre + (size_t)k * g->p.dim;
}

/* ---- rows ------------------------------------------------------------------------------ */

/* The identity whose block holds row r. */
static int64_t identity_of(const mf_synth *g, uint64_t r)
{
    int64_t lo = 0, hi = g->p.identities; /* start[lo] <= r < start[hi] */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (g->start[mid] <= r)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

typedef struct row_kind {
    int64_t identity; /* true identity block */
    int junk;
    int64_t dup_of; /* -1 unless a duplicate */
    int64_t label;  /* given label */
} row_kind;

/* The per-row draws that decide what a row is. */
typedef struct row_draws {
    double junk, dup, mis, lab;
} row_draws;

static row_draws draws_at(const mf_synth *g, uint64_t r)
{
    rng s = rng_at(g->p.seed, S_KIND, r);
    row_draws d;
    d.junk = rng_uniform(&s);
    d.dup = rng_uniform(&s);
    d.mis = rng_uniform(&s);
    d.lab = rng_uniform(&s);
    return d;
}

/* A label drawn like the label of a random row, so that identities receive wrong
 * samples in proportion to their size (as scraping noise does), never `avoid`. */
static int64_t random_label(const mf_synth *g, double u, int64_t avoid)
{
    int64_t k = identity_of(g, (uint64_t)(u * (double)g->p.rows));
    return k == avoid ? (k + 1) % g->p.identities : k;
}

/* Label of a row that is neither junk nor a duplicate. */
static int64_t plain_label(const mf_synth *g, int64_t k, const row_draws *d)
{
    if (g->p.identities > 1 && d->mis < g->p.mislabel)
        return random_label(g, d->lab, k);
    return k;
}

static void kind_of(const mf_synth *g, uint64_t r, row_kind *out)
{
    const mf_synth_params *p = &g->p;
    int64_t k = identity_of(g, r);
    row_draws d = draws_at(g, r);
    out->identity = k;
    out->junk = d.junk < p->junk;
    out->dup_of = -1;
    if (out->junk) {
        out->label = random_label(g, d.lab, -1);
        return;
    }
    if (d.dup < p->dup) {
        /* Copy the nearest earlier plain face of the same block (none: a plain row). */
        uint64_t lo = g->start[k] + DUP_LOOKBACK < r ? r - DUP_LOOKBACK : g->start[k];
        for (uint64_t j = r; j-- > lo;) {
            row_draws e = draws_at(g, j);
            if (e.junk >= p->junk && e.dup >= p->dup) {
                out->dup_of = (int64_t)j;
                out->label = plain_label(g, k, &e);
                return;
            }
        }
    }
    out->label = plain_label(g, k, &d);
}

/* Cosine of a sample of quality q to its centre (before per-sample jitter): rises
 * steeply at low q and saturates at center_cos for q = 1. */
static double identity_strength(const mf_synth_params *p, double q)
{
    const double floor_cos = 0.05;
    return floor_cos + (p->center_cos - floor_cos) * (1.0 - exp(-3.0 * q)) / (1.0 - exp(-3.0));
}

/* Unit direction of a plain face (identity k) or a junk row into v; returns magnitude
 * and quality. */
static double face_row(const mf_synth *g, uint64_t r, int64_t k, int junk, float *v,
                       double *quality)
{
    const mf_synth_params *p = &g->p;
    int dim = p->dim;
    rng s = rng_at(p->seed, S_ROW, r);
    double q, a, b, ca;
    const float *c;
    if (junk) {
        q = JUNK_Q_MAX * rng_uniform(&s);
        c = g->face, ca = 0.15, b = 0.70;
    } else {
        if (rng_uniform(&s) < p->low_quality)
            q = Q_LOW_MAX * rng_uniform(&s);
        else
            q = fmin(1.0, fmax(Q_GOOD_MIN, Q_MEAN + Q_SD * rng_gauss(&s)));
        c = g->centre + (size_t)k * dim;
        ca = fmin(0.98, fmax(0.0, identity_strength(p, q) + 0.04 * rng_gauss(&s)));
        b = p->drift * (1.0 - q) * (1.0 - q);
    }
    a = sqrt(fmax(0.01, 1.0 - ca * ca - b * b));
    double mag = fmax(1.0, p->mag_base + p->mag_slope * q + MAG_NOISE * rng_gauss(&s));
    double nn = fill_gauss(&s, v, dim);
    float fa = (float)(a / nn), fc = (float)ca, fb = (float)b;
    for (int d = 0; d < dim; d++)
        v[d] = fc * c[d] + fb * g->unrec[d] + fa * v[d];
    normalise(v, dim);
    *quality = q;
    return mag;
}

/* Near-duplicate of row `src`: its direction plus a small random offset (cosine
 * 0.985-0.9995), its magnitude within a few percent. */
static double dup_row(const mf_synth *g, uint64_t r, const row_kind *src_kind, uint64_t src,
                      float *v, double *quality)
{
    int dim = g->p.dim;
    double mag = face_row(g, src, src_kind->identity, 0, v, quality);
    rng s = rng_at(g->p.seed, S_DUP, r);
    double eps = 0.03 + 0.14 * rng_uniform(&s);
    mag *= 1.0 + 0.03 * rng_gauss(&s);
    float f = (float)(eps / sqrt((double)dim));
    for (int d = 0; d < dim; d++)
        v[d] += f * (float)rng_gauss(&s);
    normalise(v, dim);
    return mag;
}

static void one_row(const mf_synth *g, uint64_t r, size_t i, const mf_synth_batch *o)
{
    int dim = g->p.dim;
    float *v = o->emb + i * (size_t)dim;
    row_kind kd;
    kind_of(g, r, &kd);
    double q, mag;
    if (kd.dup_of >= 0) {
        row_kind sk = {kd.identity, 0, -1, kd.label};
        mag = dup_row(g, r, &sk, (uint64_t)kd.dup_of, v, &q);
    } else {
        mag = face_row(g, r, kd.identity, kd.junk, v, &q);
    }
    double ss = 0;
    for (int d = 0; d < dim; d++) {
        v[d] *= (float)mag;
        ss += (double)v[d] * v[d];
    }
    int64_t truth = kd.junk ? -1 : kd.identity;
    if (o->mag)
        o->mag[i] = (float)sqrt(ss);
    if (o->label)
        o->label[i] = kd.label;
    if (o->true_label)
        o->true_label[i] = truth;
    if (o->is_junk)
        o->is_junk[i] = kd.junk;
    if (o->is_dup)
        o->is_dup[i] = kd.dup_of >= 0;
    if (o->is_mislabeled)
        o->is_mislabeled[i] = !kd.junk && kd.label != truth;
    if (o->dup_of)
        o->dup_of[i] = kd.dup_of;
    if (o->quality)
        o->quality[i] = (float)q;
}

int mf_synth_rows(const mf_synth *g, uint64_t start, size_t n, const mf_synth_batch *out)
{
    if (!out->emb)
        return mf_set_error(MF_ERR_ARG, "synth: no embedding buffer");
    if (start > g->p.rows || n > g->p.rows - start)
        return mf_set_error(MF_ERR_ARG, "synth: rows %llu..%llu are beyond the %llu rows",
                            (unsigned long long)start, (unsigned long long)(start + n),
                            (unsigned long long)g->p.rows);
#pragma omp parallel for schedule(dynamic, 64)
    for (size_t i = 0; i < n; i++)
        one_row(g, start + i, i, out);
    return 0;
}
