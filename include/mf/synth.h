/* synth.h - synthetic embedding stores with known ground truth, for tests and benchmarks.
 *
 *     mf_synth_params p = mf_synth_default_params();     // the "default" profile
 *     mf_synth_profile(&p, "blurry");                    // or another named profile
 *     p.rows = 65000; p.identities = 2000; p.seed = 7;
 *     if (mf_synth_write(&p, "synth.h5", NULL) < 0) die(mf_last_error());
 *
 * or, in memory (any row range, in any order, with any thread count: row r depends only
 * on the parameters and r):
 *
 *     mf_synth *g;
 *     mf_synth_new(&g, &p);
 *     mf_synth_rows(g, start, n, &batch);    // caller-allocated arrays, see mf_synth_batch
 *     mf_synth_free(g);
 *
 * A family of generators, not one point: every statistic that cleaning and clustering
 * rely on is a parameter, so that a rule can be tried on data it was not tuned to
 * (docs/FILTER.md lists the profiles and bench/bench_robust.sh runs a grid of them).
 * The model imitates MagFace embeddings of a scraped training set:
 * - identity centres on the unit sphere sharing a common "face" direction, so two
 *   identities have cosine ~inter_cos; a share of identities are look-alikes of the
 *   previous identity (their centres mix in lookalike_mix of the twin's);
 * - each face sample has a quality q in [0,1] (continuous, bimodal clean/blurry, or
 *   uniform; identities may be shifted as a whole: some people only have poor photos);
 *   its magnitude is mag_base + mag_slope q + mag_noise N(0,1) (real iresnet100 ~10-35);
 * - its cosine to its identity centre rises with q to center_cos, with a per-identity
 *   angle factor (identity_spread: some identities vary a lot) and an optional second
 *   mode per identity (modes, at cosine mode_cos to the first: age, pose), plus jitter
 *   whose sd grows as quality falls (noise at q = 1, x (1 + noise_growth (1 - q)));
 * - low-q samples drift towards one of drift_dirs shared "unrecognisable" directions
 *   with weight drift (1 - q)^2;
 * - junk of two kinds, both with true label -1: non-faces (junk: near the drift
 *   directions, quality below junk_quality) and unrelated good-quality faces
 *   (distractors: people who are not any identity), each given a random label;
 * - near-duplicates: a copy (cosine >= 0.97, magnitude within a few %) of an earlier
 *   face of the same identity block, with that sample's label;
 * - mislabelled faces: identity A given label B, B the look-alike twin of A with
 *   probability mislabel_lookalike when A has one, else drawn like the identity of a
 *   random row (identities get wrong samples in proportion to their size);
 * - identity sizes heavy-tailed between min_size and max_size with mean
 *   rows/identities: a power of a uniform (size_alpha = 0) or a truncated Pareto tail of
 *   exponent size_alpha (smaller = heavier).
 * Rows are grouped by true identity (as a folder-per-identity dataset would be); junk,
 * duplicates and mislabels are spread through the blocks. Shares are probabilities per
 * row, so counts vary around them; mf_synth_write reports the exact counts.
 *
 * Store columns written (besides /embedding, /magnitude, /id, /label = given label):
 * /true_label (int64, -1 for junk), /is_junk, /is_dup, /is_mislabeled (int64 0/1),
 * /junk_kind (int64: 0 face, 1 non-face, 2 distractor face), /dup_of (int64: the row a
 * duplicate copies, else -1), /quality (float32). Ids: "synth/<label>/<row>.jpg". */
#ifndef MF_SYNTH_H
#define MF_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "mf/durable.h"

typedef enum mf_synth_quality {
    MF_SYNTH_Q_CONTINUOUS = 0, /* N(0.70, 0.12) on [0.3, 1], low_quality share U(0, 0.45) */
    MF_SYNTH_Q_BIMODAL,        /* clean N(0.75, 0.10) and blurry N(0.20, 0.08) modes,
                                  low_quality = share of the blurry mode */
    MF_SYNTH_Q_UNIFORM,        /* U(0, 1) (low_quality unused) */
} mf_synth_quality;

typedef struct mf_synth_params {
    uint64_t rows;      /* total rows, junk included */
    int64_t identities; /* number of true identities (labels 0..identities-1) */
    int dim;            /* embedding width */
    uint64_t seed;
    /* quality and magnitude */
    mf_synth_quality quality;   /* distribution of q (continuous) */
    double low_quality;         /* share of low-quality / blurry faces (0.10) */
    double quality_identity_sd; /* sd of a per-identity shift of q (0.05) */
    double mag_base, mag_slope; /* magnitude = base + slope * q (10, 25) */
    double mag_noise;           /* + mag_noise * N(0,1) (0.8) */
    /* geometry */
    double center_cos;      /* cosine of a q = 1 sample to its centre (0.82) */
    double inter_cos;       /* mean cosine between two identity centres (0.10) */
    double noise;           /* sd of a q = 1 sample's cosine to its centre (0.04) */
    double noise_growth;    /* the sd grows to noise * (1 + growth) at q = 0 (2) */
    double identity_spread; /* sd of the log of a per-identity angle factor (0.15) */
    double modes;           /* share of identities with a second mode (0.10) */
    double mode_cos;        /* cosine between an identity's two modes (0.75) */
    double drift;           /* weight of the unrecognisable direction at q = 0 (0.60) */
    int drift_dirs;         /* number of unrecognisable directions (1) */
    /* label noise and junk */
    double lookalike;          /* per-identity probability of being a look-alike (0.05) */
    double lookalike_mix;      /* weight of the twin's centre in a look-alike's (0.45) */
    double mislabel;           /* per-row probability of a wrong label (0.03) */
    double mislabel_lookalike; /* share of wrong labels that go to the twin (0.5) */
    double junk;               /* per-row probability of a non-face (0.02) */
    double junk_quality;       /* non-faces have quality below this (0.15) */
    double distractors;        /* per-row probability of an unrelated face (0.01) */
    double dup;                /* per-row probability of a near-duplicate (0.02) */
    int min_size, max_size;    /* identity sizes (5, 200), widened if rows/identities needs */
    double size_alpha;         /* 0: power of a uniform; > 0: Pareto tail exponent (0) */
} mf_synth_params;

/* The "default" profile at 65000 rows, 2000 identities, 512 dimensions, seed 1. */
mf_synth_params mf_synth_default_params(void);

/* Set the generator fields of p (everything but rows, identities, dim, seed) to a named
 * profile. Returns 0, or MF_ERR_ARG for an unknown name. */
int mf_synth_profile(mf_synth_params *p, const char *name);
/* Profile i (0..): its name and one line saying what it models; NULL past the last. */
const char *mf_synth_profile_name(int i, const char **what);

/* "continuous" -> MF_SYNTH_Q_CONTINUOUS, ...; -1 if unknown. */
int mf_synth_quality_parse(const char *name);
const char *mf_synth_quality_name(mf_synth_quality q);

typedef struct mf_synth mf_synth;

/* Outputs of mf_synth_rows for n rows; any pointer but emb may be NULL (not wanted). */
typedef struct mf_synth_batch {
    float *emb;          /* n * dim raw embeddings (magnitude * unit direction) */
    float *mag;          /* n: L2 norm of each row of emb */
    int64_t *label;      /* n: given (noisy) label */
    int64_t *true_label; /* n: true identity, -1 for junk */
    int64_t *is_junk, *is_dup, *is_mislabeled; /* n: 0/1 */
    int64_t *dup_of;                           /* n: row a duplicate copies, else -1 */
    float *quality;                            /* n: q in [0,1] */
    int64_t *junk_kind;                        /* n: 0 face, 1 non-face, 2 distractor face */
} mf_synth_batch;

/* Validate the parameters and precompute identity sizes and centres
 * (identities * dim floats). Returns 0 or MF_ERR_ARG / MF_ERR_NOMEM. */
int mf_synth_new(mf_synth **out, const mf_synth_params *p);
void mf_synth_free(mf_synth *g);

/* Generate rows [start, start+n) (must lie within p.rows). Uses OpenMP threads; the
 * result does not depend on the thread count. */
int mf_synth_rows(const mf_synth *g, uint64_t start, size_t n, const mf_synth_batch *out);

/* Number of rows of identity k (0 <= k < identities) and its first row. */
uint64_t mf_synth_identity_size(const mf_synth *g, int64_t k);
uint64_t mf_synth_identity_start(const mf_synth *g, int64_t k);
/* 1 if identity k is a look-alike of identity k - 1. */
int mf_synth_is_lookalike(const mf_synth *g, int64_t k);
/* Unit centre of identity k (dim floats, owned by g). */
const float *mf_synth_centre(const mf_synth *g, int64_t k);

/* Counts of a generated store. */
typedef struct mf_synth_counts {
    uint64_t rows, junk, distractors, dup, mislabeled, lookalike_identities;
} mf_synth_counts;

/* Write a whole store to `path` (atomically, through the store API), generating it in
 * chunks. `counts` (may be NULL) receives what was generated; junk counts both kinds. */
int mf_synth_write(const mf_synth_params *p, const char *path, mf_synth_counts *counts);
/* The same into an output opened by the caller (mf/durable.h, MF_OUTPUT_SEEKABLE); taken
 * over: published on success, removed on failure. */
int mf_synth_write_to(const mf_synth_params *p, mf_output *out, mf_synth_counts *counts);

#endif
