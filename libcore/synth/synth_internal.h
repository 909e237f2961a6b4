/* synth_internal.h - the generator's state and its counter-based random numbers, shared
 * by synth.c (parameters, identities) and synth_rows.c (rows).
 *
 * Every random number comes from a counter-based stream: splitmix64 seeded by (seed,
 * stream, index). Row r's values depend only on the parameters and r, so any row range
 * can be generated in any order, by any number of threads, with the same result. */
#ifndef MF_SYNTH_INTERNAL_H
#define MF_SYNTH_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "mf/synth.h"

/* Independent streams: one per kind of decision. */
enum {
    S_SIZE = 1,
    S_CENTRE,
    S_TWIN,
    S_FACE,
    S_UNREC,
    S_KIND,
    S_ROW,
    S_DUP,
    S_IDENT, /* per-identity traits: angle factor, quality shift, second mode */
    S_MODE,  /* direction of an identity's second mode */
    S_OTHER, /* centre of a distractor face */
};

struct mf_synth {
    mf_synth_params p;
    uint64_t *start; /* identities + 1: first row of each identity block */
    float *centre;   /* (identities, dim) unit identity centres */
    uint8_t *twin;   /* identities: 1 if a look-alike of identity k - 1 */
    float *angle;    /* identities: factor on the angle of a sample to its centre */
    float *qshift;   /* identities: shift of the quality of its samples */
    float *mode2;    /* identities: probability of a sample being in the second mode */
    float *face;     /* (dim) the direction all faces share a little of */
    float *unrec;    /* (drift_dirs, dim) the "unrecognisable" directions */
};

static inline uint64_t synth_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct synth_rng {
    uint64_t s;
    int has_spare;
    double spare;
} synth_rng;

static inline synth_rng synth_rng_at(uint64_t seed, uint64_t stream, uint64_t index)
{
    synth_rng r = {
        synth_mix64(seed ^ synth_mix64(stream * 0x2545f4914f6cdd1dULL ^ synth_mix64(index))), 0,
        0};
    return r;
}

/* SplitMix64: the next state's mix (mix64 adds the increment itself). */
static inline uint64_t synth_next(synth_rng *r)
{
    uint64_t z = synth_mix64(r->s);
    r->s += 0x9e3779b97f4a7c15ULL;
    return z;
}

/* Uniform in [0, 1). */
static inline double synth_uniform(synth_rng *r)
{
    return (double)(synth_next(r) >> 11) * 0x1p-53;
}

/* Standard normal (Box-Muller; the second value of each pair is kept). */
static inline double synth_gauss(synth_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u = 1.0 - synth_uniform(r), v = synth_uniform(r);
    double rad = sqrt(-2.0 * log(u)), th = 6.283185307179586 * v;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return rad * cos(th);
}

/* Fill v with standard normals; returns the L2 norm. */
double synth_fill_gauss(synth_rng *r, float *v, int dim);
void synth_normalise(float *v, int dim);
/* A random unit vector of stream (seed, stream, index). */
void synth_random_unit(uint64_t seed, int stream, uint64_t index, float *v, int dim);

#endif
