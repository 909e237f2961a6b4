/* synth_rows.c - one row of the synthetic generator: what it is (face, junk, duplicate,
 * wrong label) and its embedding (see include/mf/synth.h for the model). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "mf/status.h"
#include "synth_internal.h"

/* How far back a duplicate looks for the sample it copies. */
#define DUP_LOOKBACK 64
/* Floor of the cosine to the centre (q = 0) and the steepness of its rise with q. */
#define FLOOR_COS 0.05
#define RISE 3.0
/* A non-face: a little of the face direction, mostly an unrecognisable one. */
#define JUNK_FACE 0.15
#define JUNK_DRIFT 0.70

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
    int junk;         /* 0 face, 1 non-face, 2 distractor face */
    int64_t dup_of;   /* -1 unless a duplicate */
    int64_t label;    /* given label */
} row_kind;

/* The per-row draws that decide what a row is. */
typedef struct row_draws {
    double junk, dup, mis, lab, twin;
} row_draws;

static row_draws draws_at(const mf_synth *g, uint64_t r)
{
    synth_rng s = synth_rng_at(g->p.seed, S_KIND, r);
    row_draws d;
    d.junk = synth_uniform(&s);
    d.dup = synth_uniform(&s);
    d.mis = synth_uniform(&s);
    d.lab = synth_uniform(&s);
    d.twin = synth_uniform(&s);
    return d;
}

/* Junk kind of a row from its draw: 1 non-face, 2 distractor, 0 a face. */
static int junk_kind(const mf_synth_params *p, double u)
{
    return u < p->junk ? 1 : u < p->junk + p->distractors ? 2 : 0;
}

/* A label drawn like the label of a random row, so that identities receive wrong
 * samples in proportion to their size (as scraping noise does), never `avoid`. */
static int64_t random_label(const mf_synth *g, double u, int64_t avoid)
{
    int64_t k = identity_of(g, (uint64_t)(u * (double)g->p.rows));
    return k == avoid ? (k + 1) % g->p.identities : k;
}

/* The look-alike partner of identity k, or -1. */
static int64_t partner(const mf_synth *g, int64_t k)
{
    if (g->twin[k])
        return k - 1;
    if (k + 1 < g->p.identities && g->twin[k + 1])
        return k + 1;
    return -1;
}

/* Label of a face that is not a duplicate. */
static int64_t plain_label(const mf_synth *g, int64_t k, const row_draws *d)
{
    if (g->p.identities < 2 || d->mis >= g->p.mislabel)
        return k;
    int64_t t = partner(g, k);
    if (t >= 0 && d->twin < g->p.mislabel_lookalike)
        return t;
    return random_label(g, d->lab, k);
}

static void kind_of(const mf_synth *g, uint64_t r, row_kind *out)
{
    const mf_synth_params *p = &g->p;
    int64_t k = identity_of(g, r);
    row_draws d = draws_at(g, r);
    out->identity = k;
    out->junk = junk_kind(p, d.junk);
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
            if (!junk_kind(p, e.junk) && e.dup >= p->dup) {
                out->dup_of = (int64_t)j;
                out->label = plain_label(g, k, &e);
                return;
            }
        }
    }
    out->label = plain_label(g, k, &d);
}

/* ---- embeddings ------------------------------------------------------------------------- */

static double clip(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

/* A good face's quality: the clean mode of every distribution but the uniform one. */
static double good_quality(synth_rng *s) { return clip(0.70 + 0.12 * synth_gauss(s), 0.3, 1); }

static double draw_quality(const mf_synth_params *p, synth_rng *s)
{
    double u = synth_uniform(s);
    switch (p->quality) {
    case MF_SYNTH_Q_UNIFORM: return u;
    case MF_SYNTH_Q_BIMODAL:
        if (u < p->low_quality)
            return clip(0.20 + 0.08 * synth_gauss(s), 0, 0.45);
        return clip(0.75 + 0.10 * synth_gauss(s), 0.4, 1);
    default:
        if (u < p->low_quality)
            return 0.45 * synth_uniform(s);
        return good_quality(s);
    }
}

/* Cosine of a sample of quality q to its centre (before the jitter): rises steeply at
 * low q and saturates for q = 1 at the identity's own top cosine, center_cos with its
 * angle scaled by the identity's factor. */
static double identity_strength(const mf_synth_params *p, double q, double angle)
{
    double top = cos(acos(p->center_cos) * angle);
    return FLOOR_COS + (top - FLOOR_COS) * (1.0 - exp(-RISE * q)) / (1.0 - exp(-RISE));
}

/* v = unit(mc * c + ms * R), R the unit direction of stream (stream, index): a second
 * mode of an identity, or (with c the face direction) a distractor's centre. */
static void mixed_centre(const mf_synth *g, const float *c, double mc, int stream,
                         uint64_t index, float *v)
{
    int dim = g->p.dim;
    synth_random_unit(g->p.seed, stream, index, v, dim);
    float a = (float)mc, b = (float)sqrt(fmax(0.0, 1.0 - mc * mc));
    for (int d = 0; d < dim; d++)
        v[d] = a * c[d] + b * v[d];
    synth_normalise(v, dim);
}

/* Unit direction of a face of identity k (k < 0: a distractor, a person of no identity)
 * into v, with tmp as dim floats of scratch; returns the magnitude and the quality. */
static double face_row(const mf_synth *g, uint64_t r, int64_t k, float *v, float *tmp,
                       double *quality)
{
    const mf_synth_params *p = &g->p;
    int dim = p->dim;
    synth_rng s = synth_rng_at(p->seed, S_ROW, r);
    double q, angle = 1;
    const float *c;
    if (k < 0) {
        q = good_quality(&s);
        mixed_centre(g, g->face, sqrt(p->inter_cos), S_OTHER, r, v);
        c = v;
    } else {
        q = clip(draw_quality(p, &s) + g->qshift[k], 0, 1);
        angle = g->angle[k];
        c = g->centre + (size_t)k * dim;
        if (synth_uniform(&s) < g->mode2[k]) {
            mixed_centre(g, c, p->mode_cos, S_MODE, (uint64_t)k, v);
            c = v;
        }
    }
    double sd = p->noise * (1.0 + p->noise_growth * (1.0 - q));
    double ca = clip(identity_strength(p, q, angle) + sd * synth_gauss(&s), 0.0, 0.98);
    double b = p->drift * (1.0 - q) * (1.0 - q);
    const float *u = g->unrec + (size_t)(synth_next(&s) % (uint64_t)p->drift_dirs) * dim;
    double mag = fmax(1.0, p->mag_base + p->mag_slope * q + p->mag_noise * synth_gauss(&s));
    double a = sqrt(fmax(0.01, 1.0 - ca * ca - b * b));
    double nn = synth_fill_gauss(&s, tmp, dim);
    float fa = (float)(a / nn), fc = (float)ca, fb = (float)b;
    for (int d = 0; d < dim; d++)
        v[d] = fc * c[d] + fb * u[d] + fa * tmp[d];
    synth_normalise(v, dim);
    *quality = q;
    return mag;
}

/* A non-face: low quality, near one of the unrecognisable directions. */
static double junk_row(const mf_synth *g, uint64_t r, float *v, double *quality)
{
    const mf_synth_params *p = &g->p;
    int dim = p->dim;
    synth_rng s = synth_rng_at(p->seed, S_ROW, r);
    double q = p->junk_quality * synth_uniform(&s);
    const float *u = g->unrec + (size_t)(synth_next(&s) % (uint64_t)p->drift_dirs) * dim;
    double mag = fmax(1.0, p->mag_base + p->mag_slope * q + p->mag_noise * synth_gauss(&s));
    double a = sqrt(1.0 - JUNK_FACE * JUNK_FACE - JUNK_DRIFT * JUNK_DRIFT);
    double nn = synth_fill_gauss(&s, v, dim);
    float fa = (float)(a / nn);
    for (int d = 0; d < dim; d++)
        v[d] = (float)JUNK_FACE * g->face[d] + (float)JUNK_DRIFT * u[d] + fa * v[d];
    synth_normalise(v, dim);
    *quality = q;
    return mag;
}

/* Near-duplicate of face `src` of identity k: its direction plus a small random offset
 * (cosine 0.985-0.9995), its magnitude within a few percent. */
static double dup_row(const mf_synth *g, uint64_t r, int64_t k, uint64_t src, float *v,
                      float *tmp, double *quality)
{
    int dim = g->p.dim;
    double mag = face_row(g, src, k, v, tmp, quality);
    synth_rng s = synth_rng_at(g->p.seed, S_DUP, r);
    double eps = 0.03 + 0.14 * synth_uniform(&s);
    mag *= 1.0 + 0.03 * synth_gauss(&s);
    float f = (float)(eps / sqrt((double)dim));
    for (int d = 0; d < dim; d++)
        v[d] += f * (float)synth_gauss(&s);
    synth_normalise(v, dim);
    return mag;
}

static void one_row(const mf_synth *g, uint64_t r, size_t i, float *tmp,
                    const mf_synth_batch *o)
{
    int dim = g->p.dim;
    float *v = o->emb + i * (size_t)dim;
    row_kind kd;
    kind_of(g, r, &kd);
    double q, mag;
    if (kd.dup_of >= 0)
        mag = dup_row(g, r, kd.identity, (uint64_t)kd.dup_of, v, tmp, &q);
    else if (kd.junk == 1)
        mag = junk_row(g, r, v, &q);
    else
        mag = face_row(g, r, kd.junk == 2 ? -1 : kd.identity, v, tmp, &q);
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
        o->is_junk[i] = kd.junk != 0;
    if (o->junk_kind)
        o->junk_kind[i] = kd.junk;
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
    /* One noise vector of scratch per thread, allocated before the parallel region. */
    int threads = omp_get_max_threads();
    float *scratch = malloc((size_t)threads * (size_t)g->p.dim * sizeof *scratch);
    if (!scratch)
        return mf_set_error(MF_ERR_NOMEM, "synth: cannot allocate %d rows of scratch", threads);
#pragma omp parallel for schedule(dynamic, 64)
    for (size_t i = 0; i < n; i++)
        one_row(g, start + i, i, scratch + (size_t)omp_get_thread_num() * g->p.dim, out);
    free(scratch);
    return 0;
}
