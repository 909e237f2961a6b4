/* synth.c - the synthetic embedding generator's parameters, profiles and identities
 * (sizes, centres, per-identity traits); rows are made in synth_rows.c. See
 * include/mf/synth.h for the model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "synth_internal.h"

/* Size limits that keep the precomputed tables sane. */
#define MAX_DIM 65536
#define MAX_IDENTITIES (1LL << 26)
#define MAX_DRIFT_DIRS 64

/* ---- parameters and profiles ---------------------------------------------------------- */

/* The "default" profile: a scraped set of celebrity photos as MagFace iresnet100 sees it
 * (continuous quality with a blurry tail, one unrecognisable direction, jitter that
 * triples at the lowest quality, a few identities with a second look, look-alikes that
 * attract half of the wrong labels, both kinds of junk). */
static void profile_default(mf_synth_params *p)
{
    p->quality = MF_SYNTH_Q_CONTINUOUS;
    p->low_quality = 0.10;
    p->quality_identity_sd = 0.05;
    p->mag_base = 10.0, p->mag_slope = 25.0, p->mag_noise = 0.8;
    p->center_cos = 0.82, p->inter_cos = 0.10;
    p->noise = 0.04, p->noise_growth = 2.0;
    p->identity_spread = 0.15, p->modes = 0.10, p->mode_cos = 0.75;
    p->drift = 0.60, p->drift_dirs = 1;
    p->lookalike = 0.05, p->lookalike_mix = 0.45;
    p->mislabel = 0.03, p->mislabel_lookalike = 0.5;
    p->junk = 0.02, p->junk_quality = 0.15, p->distractors = 0.01;
    p->dup = 0.02;
    p->min_size = 5, p->max_size = 200, p->size_alpha = 0;
}

static void profile_clean(mf_synth_params *p)
{
    p->low_quality = 0.05;
    p->mislabel = 0.005, p->junk = 0.003, p->distractors = 0.002, p->dup = 0.005;
}

static void profile_noisy(mf_synth_params *p)
{
    p->mislabel = 0.10, p->junk = 0.05, p->distractors = 0.03, p->dup = 0.04;
}

static void profile_blurry(mf_synth_params *p)
{
    p->quality = MF_SYNTH_Q_BIMODAL;
    p->low_quality = 0.35;
    p->drift = 0.70, p->noise_growth = 3.0;
}

static void profile_multidrift(mf_synth_params *p)
{
    p->low_quality = 0.20;
    p->drift = 0.80, p->drift_dirs = 4;
}

static void profile_tight(mf_synth_params *p)
{
    p->center_cos = 0.90, p->inter_cos = 0.05, p->noise = 0.03;
}

static void profile_loose(mf_synth_params *p)
{
    p->center_cos = 0.68, p->inter_cos = 0.20;
    p->mag_base = 8.0, p->mag_slope = 14.0, p->mag_noise = 1.0;
}

static void profile_lookalikes(mf_synth_params *p)
{
    p->lookalike = 0.25, p->lookalike_mix = 0.60;
    p->mislabel = 0.05, p->mislabel_lookalike = 0.8;
}

static void profile_varied(mf_synth_params *p)
{
    p->identity_spread = 0.35, p->modes = 0.40, p->mode_cos = 0.60;
    p->quality_identity_sd = 0.12;
}

static void profile_heavytail(mf_synth_params *p) { p->max_size = 3000, p->size_alpha = 0.8; }

static void profile_magnoise(mf_synth_params *p)
{
    p->quality = MF_SYNTH_Q_UNIFORM;
    p->mag_noise = 3.5;
}

static void profile_hard(mf_synth_params *p)
{
    p->quality = MF_SYNTH_Q_BIMODAL, p->low_quality = 0.30;
    p->quality_identity_sd = 0.10, p->mag_noise = 1.5;
    p->center_cos = 0.74, p->inter_cos = 0.15;
    p->noise_growth = 3.0, p->identity_spread = 0.30, p->modes = 0.30, p->mode_cos = 0.65;
    p->drift = 0.80, p->drift_dirs = 3;
    p->lookalike = 0.15, p->lookalike_mix = 0.55;
    p->mislabel = 0.08, p->mislabel_lookalike = 0.6;
    p->junk = 0.04, p->distractors = 0.03, p->dup = 0.03;
    p->max_size = 1000, p->size_alpha = 1.0;
}

typedef struct profile {
    const char *name, *what;
    void (*apply)(mf_synth_params *p); /* on top of the default profile */
} profile;

static const profile profiles[] = {
    {"default", "scraped celebrity photos, MagFace iresnet100-like", NULL},
    {"clean", "a curated set: few wrong labels, little junk", profile_clean},
    {"noisy", "10% wrong labels, 5% non-faces, 3% unrelated faces", profile_noisy},
    {"blurry", "bimodal quality: 35% blurry faces, stronger drift", profile_blurry},
    {"multidrift", "four unrecognisable directions, 20% low quality", profile_multidrift},
    {"tight", "a stronger model: identities compact and far apart", profile_tight},
    {"loose", "a weaker model (iresnet18-like): loose identities, magnitudes 8-22",
     profile_loose},
    {"lookalikes", "25% look-alike identities drawing 80% of the wrong labels",
     profile_lookalikes},
    {"varied", "identities that vary a lot (age, pose: second modes)", profile_varied},
    {"heavytail", "identity sizes up to 3000, a Pareto(0.8) tail (many tiny, a few huge)",
     profile_heavytail},
    {"magnoise", "magnitude a poor proxy of quality (uniform quality, noise 3.5)",
     profile_magnoise},
    {"hard", "everything at once", profile_hard},
};
#define N_PROFILES (sizeof profiles / sizeof profiles[0])

int mf_synth_profile(mf_synth_params *p, const char *name)
{
    for (size_t i = 0; i < N_PROFILES; i++)
        if (strcmp(name, profiles[i].name) == 0) {
            profile_default(p);
            if (profiles[i].apply)
                profiles[i].apply(p);
            return 0;
        }
    return mf_set_error(MF_ERR_ARG, "synth: unknown profile '%s'", name);
}

const char *mf_synth_profile_name(int i, const char **what)
{
    if (i < 0 || (size_t)i >= N_PROFILES)
        return NULL;
    if (what)
        *what = profiles[i].what;
    return profiles[i].name;
}

static const char *quality_names[] = {"continuous", "bimodal", "uniform"};

int mf_synth_quality_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, quality_names[i]) == 0)
            return i;
    return -1;
}

const char *mf_synth_quality_name(mf_synth_quality q)
{
    return (unsigned)q < 3 ? quality_names[q] : "?";
}

mf_synth_params mf_synth_default_params(void)
{
    mf_synth_params p = {.rows = 65000, .identities = 2000, .dim = 512, .seed = 1};
    profile_default(&p);
    return p;
}

/* ---- vectors ---------------------------------------------------------------------------- */

double synth_fill_gauss(synth_rng *r, float *v, int dim)
{
    double ss = 0;
    for (int d = 0; d < dim; d++) {
        v[d] = (float)synth_gauss(r);
        ss += (double)v[d] * v[d];
    }
    return sqrt(ss);
}

void synth_normalise(float *v, int dim)
{
    double ss = 0;
    for (int d = 0; d < dim; d++)
        ss += (double)v[d] * v[d];
    float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.f;
    for (int d = 0; d < dim; d++)
        v[d] *= inv;
}

void synth_random_unit(uint64_t seed, int stream, uint64_t index, float *v, int dim)
{
    synth_rng r = synth_rng_at(seed, stream, index);
    synth_fill_gauss(&r, v, dim);
    synth_normalise(v, dim);
}

/* ---- identity sizes, centres and traits ------------------------------------------------ */

/* Mean of a Pareto of exponent a truncated to [lo, hi]. */
static double pareto_mean(double lo, double hi, double a)
{
    double r = lo / hi;
    if (fabs(a - 1.0) < 1e-9)
        return lo * log(hi / lo) / (1.0 - r);
    return a / (a - 1.0) * lo * (1.0 - pow(r, a - 1.0)) / (1.0 - pow(r, a));
}

/* Draw of identity k's size before scaling: lo + (hi - lo) u^a (mean m), or a Pareto tail
 * of exponent size_alpha truncated to [lo, hi]. */
static double raw_size(const mf_synth_params *p, int64_t k, double lo, double hi, double a)
{
    synth_rng r = synth_rng_at(p->seed, S_SIZE, (uint64_t)k);
    double u = synth_uniform(&r);
    if (p->size_alpha > 0) {
        double t = 1.0 - u * (1.0 - pow(lo / hi, p->size_alpha));
        return lo * pow(t, -1.0 / p->size_alpha);
    }
    return lo + (hi - lo) * pow(u, a);
}

/* Heavy-tailed sizes scaled to sum exactly to rows, none below lo. The power-of-uniform
 * law starts at min_size and has mean m = rows/identities by its exponent; the Pareto
 * law has its exponent given, so its lower end is chosen (bisection) to give mean m.
 * `real` is scratch for `identities` doubles. */
static void make_sizes(mf_synth *g, double *real)
{
    const mf_synth_params *p = &g->p;
    int64_t k_n = p->identities;
    double m = (double)p->rows / (double)k_n;
    double lo = fmin(p->min_size, fmax(1.0, floor(m))), hi = fmax(p->max_size, ceil(m) + 1);
    double a = m - lo < 1e-9 ? 1e9 : (hi - lo) / (m - lo) - 1.0;
    if (p->size_alpha > 0) {
        double l0 = 1e-3, l1 = m;
        for (int it = 0; it < 100; it++) {
            double mid = 0.5 * (l0 + l1);
            if (pareto_mean(mid, hi, p->size_alpha) < m)
                l0 = mid;
            else
                l1 = mid;
        }
        lo = 0.5 * (l0 + l1);
    }
    double sum = 0;
    for (int64_t k = 0; k < k_n; k++) {
        real[k] = raw_size(p, k, lo, hi, a);
        sum += real[k];
    }
    lo = fmax(1.0, floor(lo));
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
        synth_rng r = synth_rng_at(p->seed, S_TWIN, (uint64_t)k);
        g->twin[k] = k > 0 && !g->twin[k - 1] && synth_uniform(&r) < p->lookalike;
    }
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < k_n; k++) {
        float *c = g->centre + (size_t)k * dim;
        synth_random_unit(p->seed, S_CENTRE, (uint64_t)k, c, dim);
        for (int d = 0; d < dim; d++)
            c[d] = a * g->face[d] + b * c[d];
        synth_normalise(c, dim);
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
        synth_normalise(c, dim);
    }
}

/* Per-identity traits: angle factor exp(spread N(0,1)) clipped to [0.6, 1.5], quality
 * shift, and the share of samples in a second mode (0, or 0.2-0.5 for a share `modes` of
 * identities). */
static void make_traits(mf_synth *g)
{
    const mf_synth_params *p = &g->p;
    for (int64_t k = 0; k < p->identities; k++) {
        synth_rng r = synth_rng_at(p->seed, S_IDENT, (uint64_t)k);
        double f = exp(p->identity_spread * synth_gauss(&r));
        g->angle[k] = (float)fmin(1.5, fmax(0.6, f));
        g->qshift[k] = (float)(p->quality_identity_sd * synth_gauss(&r));
        double u = synth_uniform(&r), v = synth_uniform(&r);
        g->mode2[k] = u < p->modes ? (float)(0.2 + 0.3 * v) : 0.f;
    }
}

static int check_share(double v, const char *what)
{
    if (v >= 0 && v < 1)
        return 0;
    return mf_set_error(MF_ERR_ARG, "synth: %s must be in [0, 1) (got %g)", what, v);
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
    struct {
        double v;
        const char *what;
    } shares[] = {
        {p->junk, "junk"},
        {p->distractors, "distractors"},
        {p->dup, "dup"},
        {p->mislabel, "mislabel"},
        {p->mislabel_lookalike, "mislabel_lookalike"},
        {p->lookalike, "lookalike"},
        {p->low_quality, "low_quality"},
        {p->inter_cos, "inter_cos"},
        {p->lookalike_mix, "lookalike_mix"},
        {p->center_cos, "center_cos"},
        {p->drift, "drift"},
        {p->modes, "modes"},
        {p->mode_cos, "mode_cos"},
        {p->noise, "noise"},
        {p->junk_quality, "junk_quality"},
        {p->quality_identity_sd, "quality_identity_sd"},
    };
    for (size_t i = 0; i < sizeof shares / sizeof shares[0]; i++)
        if (check_share(shares[i].v, shares[i].what) < 0)
            return MF_ERR_ARG;
    if (p->junk + p->distractors >= 1)
        return mf_set_error(MF_ERR_ARG, "synth: junk + distractors must be below 1");
    if ((unsigned)p->quality > MF_SYNTH_Q_UNIFORM)
        return mf_set_error(MF_ERR_ARG, "synth: unknown quality distribution %d", p->quality);
    if (p->drift_dirs < 1 || p->drift_dirs > MAX_DRIFT_DIRS)
        return mf_set_error(MF_ERR_ARG, "synth: drift_dirs must be in 1..%d (got %d)",
                            MAX_DRIFT_DIRS, p->drift_dirs);
    if (!(p->noise_growth >= 0 && p->noise_growth <= 20) ||
        !(p->identity_spread >= 0 && p->identity_spread <= 2) ||
        !(p->mag_noise >= 0 && p->mag_noise <= 100))
        return mf_set_error(MF_ERR_ARG, "synth: noise_growth must be in [0, 20], "
                                        "identity_spread in [0, 2], mag_noise in [0, 100]");
    if (p->min_size < 1 || p->max_size < p->min_size)
        return mf_set_error(MF_ERR_ARG, "synth: need 1 <= min_size <= max_size");
    if (!(p->size_alpha >= 0 && p->size_alpha <= 100))
        return mf_set_error(MF_ERR_ARG, "synth: size_alpha must be in [0, 100]");
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
    size_t centre_bytes, k_n = (size_t)p->identities;
    if (mf_size_mul(k_n, (size_t)p->dim * sizeof(float), &centre_bytes,
                    "synthetic identity centres") < 0)
        return MF_ERR_NOMEM;
    mf_synth *g = calloc(1, sizeof *g);
    if (!g)
        return mf_set_error(MF_ERR_NOMEM, "synth: out of memory");
    g->p = *p;
    g->start = calloc(k_n + 1, sizeof *g->start);
    g->centre = malloc(centre_bytes);
    g->twin = calloc(k_n, 1);
    g->angle = malloc(k_n * sizeof *g->angle);
    g->qshift = malloc(k_n * sizeof *g->qshift);
    g->mode2 = malloc(k_n * sizeof *g->mode2);
    g->face = malloc((size_t)p->dim * sizeof(float));
    g->unrec = malloc((size_t)p->drift_dirs * (size_t)p->dim * sizeof(float));
    if (!g->start || !g->centre || !g->twin || !g->angle || !g->qshift || !g->mode2 ||
        !g->face || !g->unrec) {
        mf_synth_free(g);
        return mf_set_error(MF_ERR_NOMEM, "synth: cannot allocate %zu bytes of centres",
                            centre_bytes);
    }
    /* The centres' buffer is not filled yet: use it as scratch for the real sizes (it
     * holds identities x dim floats, dim >= 2, so at least one double per identity). */
    make_sizes(g, (double *)(void *)g->centre);
    synth_random_unit(p->seed, S_FACE, 0, g->face, p->dim);
    for (int j = 0; j < p->drift_dirs; j++)
        synth_random_unit(p->seed, S_UNREC, (uint64_t)j, g->unrec + (size_t)j * p->dim, p->dim);
    make_centres(g);
    make_traits(g);
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
    free(g->angle);
    free(g->qshift);
    free(g->mode2);
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
