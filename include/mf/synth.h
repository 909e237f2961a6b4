/* synth.h - synthetic embedding stores with known ground truth, for tests and benchmarks.
 *
 *     mf_synth_params p = mf_synth_default_params();
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
 * The statistics imitate MagFace (iresnet100) embeddings of a scraped training set:
 * - identity centres on the unit sphere; centres share a common "face" direction so that
 *   two identities have cosine ~inter_cos (0-0.2); a share of identities are look-alikes
 *   of the previous identity (centre cosine ~0.5);
 * - each sample has a quality q in [0,1]; its cosine to its identity centre grows with q
 *   (~0.75 for good faces, so two good samples of one identity have cosine ~0.4-0.65)
 *   and low-q samples drift towards a shared "unrecognisable" direction;
 * - magnitude = mag_base + mag_slope * q + noise (10 + 25 q: good faces 20-35);
 * - junk rows (not faces): near the unrecognisable direction, low magnitude, a random
 *   label (drawn the same way), true label -1;
 * - near-duplicates: a copy (cosine >= 0.97, magnitude within a few %) of an earlier
 *   sample of the same identity block, with that sample's label;
 * - mislabelled rows: a sample of identity A given label B (B drawn like the identity
 *   of a random row, so identities get wrong samples in proportion to their size);
 * - identity sizes heavy-tailed between min_size and max_size with mean rows/identities.
 * Rows are grouped by true identity (as a folder-per-identity dataset would be); junk,
 * duplicates and mislabels are spread through the blocks. Shares are probabilities per
 * row, so counts vary around them; mf_synth_write reports the exact counts.
 *
 * Store columns written (besides /embedding, /magnitude, /id, /label = given label):
 * /true_label (int64, -1 for junk), /is_junk, /is_dup, /is_mislabeled (int64 0/1),
 * /dup_of (int64: the row a duplicate copies, else -1), /quality (float32).
 * Ids: "synth/<label>/<row>.jpg". */
#ifndef MF_SYNTH_H
#define MF_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "mf/durable.h"

typedef struct mf_synth_params {
    uint64_t rows;      /* total rows, junk included */
    int64_t identities; /* number of true identities (labels 0..identities-1) */
    int dim;            /* embedding width */
    uint64_t seed;
    double junk;            /* per-row probability of a junk row (0.02) */
    double dup;             /* per-row probability of a near-duplicate (0.02) */
    double mislabel;        /* per-row probability of a wrong label (0.03) */
    double lookalike;       /* per-identity probability of being a look-alike (0.05) */
    double low_quality;     /* share of faces drawn from the low-quality tail (0.10) */
    int min_size, max_size; /* identity sizes (5, 200), widened if rows/identities needs */
    double inter_cos;       /* mean cosine between two identity centres (0.10) */
    double lookalike_mix;   /* weight of the twin's centre in a look-alike's centre (0.45) */
    double center_cos;      /* cosine of a q = 1 sample to its centre (0.82) */
    double drift;           /* weight of the unrecognisable direction at q = 0 (0.60) */
    double mag_base, mag_slope; /* magnitude = base + slope * q (10, 25) */
} mf_synth_params;

mf_synth_params mf_synth_default_params(void);

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
    uint64_t rows, junk, dup, mislabeled, lookalike_identities;
} mf_synth_counts;

/* Write a whole store to `path` (atomically, through the store API), generating it in
 * chunks. `counts` (may be NULL) receives what was generated. */
int mf_synth_write(const mf_synth_params *p, const char *path, mf_synth_counts *counts);
/* The same into an output opened by the caller (mf/durable.h, MF_OUTPUT_SEEKABLE); taken
 * over: published on success, removed on failure. */
int mf_synth_write_to(const mf_synth_params *p, mf_output *out, mf_synth_counts *counts);

#endif
