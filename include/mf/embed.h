/* embed.h - the embedding pipeline: a producer thread reads and decodes inputs into
 * batches of aligned 112x112 BGR faces while the calling thread runs the network on
 * the previous batch and hands results to a sink (the store). Decoding overlaps the
 * network, so end-to-end throughput is the network's.
 *
 *     mf_embed_params p = mf_embed_default_params();
 *     mf_embed_sink sink = {write_rows, write_failed, after_batch, &job};
 *     mf_embed_stats st;
 *     rc = mf_embed_run(src, seen, &p, 512, forward, runner, &sink, &stop_flag, &st);
 *
 * `seen` holds ids to skip (rows already in a store being resumed); the producer adds
 * every id it meets, so an id given twice is embedded once. The sink's functions are
 * called on the calling thread only (so HDF5 stays on one thread), in input order.
 * Failed inputs (unreadable, undecodable, wrong size, and images whose features come out
 * NaN or Inf) go to sink.failed with a short reason; they never stop the run. */
#ifndef MF_EMBED_H
#define MF_EMBED_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "mf/idset.h"
#include "mf/image.h"
#include "mf/source.h"

/* Faces per network call by default: enough to keep both cores' kernels busy, small
 * enough that a killed run loses little (docs/MODEL.md). */
#define MF_EMBED_BATCH 16
#define MF_EMBED_MAX_BATCH 1024

/* Run the network on n faces (n x 112 x 112 x 3 BGR u8): n x dim raw features and n
 * magnitudes. Returns 0 or a negative mf_status. */
typedef int (*mf_embed_forward_fn)(void *ctx, int n, const uint8_t *faces, float *features,
                                   float *magnitudes);

/* Rows may wait for faces run again (mf_embed_params.again_run): at most this many
 * batches, and no more once this many rows wait. */
#define MF_EMBED_HOLD 16
#define MF_EMBED_HOLD_ROWS 256

typedef struct mf_embed_params {
    int batch;               /* faces per network call; MF_EMBED_BATCH */
    int resize;              /* resize images that are not 112x112 and have no landmarks */
    mf_decode_params decode; /* pixel limit, orientation */
    /* Optional second pass (int8's faces off the calibrated ranges, run in fp32): after
     * each forward call, again_wanted(ctx, i) says whether face i is to run again. Such
     * faces are gathered across batches and run together through again_run (at most
     * `batch` at once, with forward's ctx), since a network runs one face at a time far
     * slower than a batch. Rows wait, in input order, until their faces are done (at
     * most MF_EMBED_HOLD batches or about MF_EMBED_HOLD_ROWS rows: what a kill can cost
     * on top of the batch at hand). NULL: none. */
    int (*again_wanted)(void *ctx, int i);
    mf_embed_forward_fn again_run;
} mf_embed_params;

mf_embed_params mf_embed_default_params(void);

typedef struct mf_embed_sink {
    int (*rows)(void *ctx, size_t n, const float *features, const float *magnitudes,
                const char *const *ids, const int64_t *labels);
    int (*failed)(void *ctx, const char *id, const char *reason);
    int (*batch_done)(void *ctx); /* after each batch's rows and failures: flush, progress */
    void *ctx;
} mf_embed_sink;

typedef struct mf_embed_stats {
    uint64_t embedded;      /* rows handed to sink.rows */
    uint64_t failed;        /* inputs handed to sink.failed */
    uint64_t skipped;       /* ids already in `seen` (resumed, or given twice) */
    double network_seconds; /* time inside forward() */
    double wall_seconds;
} mf_embed_stats;

/* Returns 0 when the inputs are exhausted or *stop became nonzero (then the batches
 * already decoded are still embedded and handed over), or a negative mf_status if the
 * network, the sink or the source failed fatally. */
int mf_embed_run(mf_source *src, mf_idset *seen, const mf_embed_params *p, int dim,
                 mf_embed_forward_fn forward, void *forward_ctx, const mf_embed_sink *sink,
                 volatile sig_atomic_t *stop, mf_embed_stats *stats);

/* Turn one decoded image into a 112x112 network input: align with landmarks (may be
 * NULL), copy a 112x112 image, resize if `resize`, else fail with a reason. */
int mf_embed_prepare_face(uint8_t *face, const mf_image *img, const float *landmarks,
                          int resize);

#endif
