/* pipeline.c - producer/consumer embedding pipeline (see include/mf/embed.h).
 *
 * Three batches circulate between two queues: `empty` (for the producer to fill) and
 * `full` (for the consumer to embed). The producer (a pthread) reads samples, decodes
 * and prepares faces; the consumer (the caller's thread) runs the network, which uses
 * OpenMP internally, and calls the sink. With three batches the producer can fill one
 * while the consumer embeds another and a third waits, so neither side stalls on the
 * other unless it is genuinely slower. */
#include "mf/embed.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf/progress.h"
#include "mf/log.h"
#include "mf/status.h"
#include "vec.h"

#define N_BATCHES 3
#define FACE_BYTES (MF_FACE_SIZE * MF_FACE_SIZE * 3)
/* Failures handed to the sink at once when no faces come between them (a corrupt
 * archive, a folder of non-images): they are recorded without waiting for a full batch. */
#define FAILURE_RUN 64

typedef struct batch {
    int n;          /* faces filled */
    uint8_t *faces; /* capacity x FACE_BYTES */
    char **ids;     /* capacity, malloc'ed strings */
    int64_t *labels;
    char **fail_id, **fail_reason; /* failures met while filling, in input order */
    size_t n_fail, cap_fail;
    int last;  /* the producer is done after this batch */
    int fatal; /* 0, or the mf_status of the producer's fatal error (message in `error`) */
    char error[512];
} batch;

typedef struct queue {
    batch *items[N_BATCHES];
    int head, count;
} queue;

typedef struct pipeline {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    queue empty, full;
    batch batches[N_BATCHES];
    int capacity;
    mf_source *src;
    mf_idset *seen;
    const mf_embed_params *params;
    volatile sig_atomic_t *stop;
    int consumer_quit; /* the consumer failed: the producer must stop */
    uint64_t skipped;
} pipeline;

mf_embed_params mf_embed_default_params(void)
{
    mf_embed_params p = {0};
    p.batch = MF_EMBED_BATCH;
    p.decode = mf_decode_default_params();
    return p;
}

static void push(queue *q, batch *b) { q->items[(q->head + q->count++) % N_BATCHES] = b; }

static batch *pop(queue *q)
{
    batch *b = q->items[q->head];
    q->head = (q->head + 1) % N_BATCHES;
    q->count--;
    return b;
}

/* Block until `q` has an item (or the other side quit, for the producer). */
static batch *take(pipeline *pl, queue *q, int producer)
{
    pthread_mutex_lock(&pl->lock);
    while (q->count == 0 && !(producer && pl->consumer_quit))
        pthread_cond_wait(&pl->changed, &pl->lock);
    batch *b = q->count ? pop(q) : NULL;
    pthread_mutex_unlock(&pl->lock);
    return b;
}

static void give(pipeline *pl, queue *q, batch *b)
{
    pthread_mutex_lock(&pl->lock);
    push(q, b);
    pthread_cond_broadcast(&pl->changed);
    pthread_mutex_unlock(&pl->lock);
}

static void batch_clear(batch *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->ids[i]);
    for (size_t i = 0; i < b->n_fail; i++) {
        free(b->fail_id[i]);
        free(b->fail_reason[i]);
    }
    b->n = 0;
    b->n_fail = 0;
    b->last = b->fatal = 0;
    b->error[0] = '\0';
}

static int batch_init(batch *b, int capacity)
{
    memset(b, 0, sizeof *b);
    b->faces = malloc((size_t)capacity * FACE_BYTES);
    b->ids = calloc((size_t)capacity, sizeof *b->ids);
    b->labels = calloc((size_t)capacity, sizeof *b->labels);
    return b->faces && b->ids && b->labels ? 0 : MF_ERR_NOMEM;
}

static void batch_release(batch *b)
{
    batch_clear(b);
    free(b->faces);
    free(b->ids);
    free(b->labels);
    free(b->fail_id);
    free(b->fail_reason);
}

static int add_failure(batch *b, const char *id, const char *reason)
{
    size_t cap_id = b->cap_fail, cap_reason = b->cap_fail;
    if (MF_GROW(b->fail_id, cap_id, b->n_fail + 1, "failed inputs") < 0 ||
        MF_GROW(b->fail_reason, cap_reason, b->n_fail + 1, "failed inputs") < 0)
        return MF_ERR_NOMEM;
    b->cap_fail = cap_id; /* both grew alike */
    b->fail_id[b->n_fail] = strdup(id);
    b->fail_reason[b->n_fail] = strdup(reason);
    if (!b->fail_id[b->n_fail] || !b->fail_reason[b->n_fail]) {
        free(b->fail_id[b->n_fail]);
        free(b->fail_reason[b->n_fail]);
        return mf_set_error(MF_ERR_NOMEM, "out of memory recording a failed input");
    }
    b->n_fail++;
    return 0;
}

int mf_embed_prepare_face(uint8_t *face, const mf_image *img, const float *landmarks,
                          int resize)
{
    if (landmarks)
        return mf_image_align(face, img, landmarks);
    if (img->width == MF_FACE_SIZE && img->height == MF_FACE_SIZE) {
        memcpy(face, img->data, FACE_BYTES);
        return 0;
    }
    if (resize)
        return mf_image_resize(face, MF_FACE_SIZE, MF_FACE_SIZE, img);
    return mf_set_error(MF_ERR_FORMAT,
                        "image is %dx%d, not an aligned 112x112 face (give "
                        "5 landmarks in a list, or --resize)",
                        img->width, img->height);
}

/* Decode and prepare one sample into slot b->n, or record why it failed. */
static int fill_one(pipeline *pl, batch *b, const mf_sample *s)
{
    if (s->error)
        return add_failure(b, s->id, s->error);
    if (s->warning) /* usable, but the user should know (a name that was not UTF-8) */
        mf_log(MF_LOG_WARN, "'%s': %s", s->id, s->warning);
    mf_image img = {0};
    int rc = mf_image_decode(&img, s->data, s->size, &pl->params->decode);
    if (rc == 0)
        rc = mf_embed_prepare_face(b->faces + (size_t)b->n * FACE_BYTES, &img,
                                   s->has_landmarks ? s->landmarks : NULL, pl->params->resize);
    mf_image_release(&img);
    if (rc == MF_ERR_NOMEM)
        return rc;
    if (rc < 0)
        return add_failure(b, s->id, mf_last_error());
    if (!(b->ids[b->n] = strdup(s->id)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    b->labels[b->n++] = s->label;
    return 0;
}

/* Fill `b` until it holds `capacity` faces or the inputs end. Failures ride along with
 * the batch so the sink sees everything in input order. */
static void fill_batch(pipeline *pl, batch *b)
{
    mf_sample s;
    while (b->n < pl->capacity) {
        if (*pl->stop) {
            b->last = 1;
            return;
        }
        int rc = mf_source_next(pl->src, &s);
        if (rc == 0) {
            b->last = 1; /* the inputs are exhausted */
            return;
        }
        if (rc > 0) {
            /* 0 only for ids the predicate cannot see (an archive-level failure). */
            int added = mf_idset_add(pl->seen, s.id);
            if (added == 0)
                continue;
            rc = added < 0 ? added : fill_one(pl, b, &s);
        }
        if (rc < 0) { /* every path that returns < 0 has recorded its message */
            b->fatal = rc;
            snprintf(b->error, sizeof b->error, "%s", mf_last_error());
            return;
        }
        /* Hand over a run of failures without waiting for a full batch of faces. */
        if (b->n_fail >= FAILURE_RUN)
            return;
    }
}

/* The source's skip predicate: ids already stored (resume) or already met (an input
 * given twice) are passed over before their bytes are read. */
static int already_seen(const char *id, void *ctx)
{
    pipeline *pl = ctx;
    int seen = mf_idset_contains(pl->seen, id);
    pl->skipped += (uint64_t)seen;
    return seen;
}

static void *producer(void *arg)
{
    pipeline *pl = arg;
    for (;;) {
        batch *b = take(pl, &pl->empty, 1);
        if (!b)
            return NULL; /* the consumer quit */
        batch_clear(b);
        fill_batch(pl, b);
        int done = b->last || b->fatal;
        give(pl, &pl->full, b);
        if (done)
            return NULL;
    }
}

/* A row whose features or magnitude are not finite (a model with huge or NaN weights, an
 * overflow on one image) must never reach a store as data: it becomes a failed input. */
static int row_is_finite(const float *feat, float mag, int dim)
{
    float sum = mag;
    for (int j = 0; j < dim; j++)
        sum += feat[j] * 0.0f; /* NaN or Inf anywhere makes the sum NaN */
    return isfinite(sum);
}

#define NONFINITE_REASON                                                                       \
    "the network's output is not finite (NaN or Inf): check the model's weights"

/* Hand the batch's finite rows to the sink (compacted in place, order kept) and the
 * others as failed inputs. */
static int sink_batch_rows(const batch *b, float *feat, float *mag, int dim,
                           const mf_embed_sink *sink, mf_embed_stats *st)
{
    const char *ids[MF_EMBED_MAX_BATCH];
    int64_t labels[MF_EMBED_MAX_BATCH];
    int n = 0, rc = 0;
    for (int i = 0; i < b->n && rc == 0; i++) {
        if (!row_is_finite(feat + (size_t)i * dim, mag[i], dim)) {
            rc = sink->failed(sink->ctx, b->ids[i], NONFINITE_REASON);
            st->failed++;
            continue;
        }
        if (n != i) {
            memmove(feat + (size_t)n * dim, feat + (size_t)i * dim, (size_t)dim * sizeof *feat);
            mag[n] = mag[i];
        }
        ids[n] = b->ids[i];
        labels[n++] = b->labels[i];
    }
    if (rc == 0 && n > 0)
        rc = sink->rows(sink->ctx, (size_t)n, feat, mag, ids, labels);
    if (rc == 0)
        st->embedded += (uint64_t)n;
    return rc;
}

/* The batch's rows, then its failures, then batch_done: what the sink sees of a batch. */
static int hand_over(const batch *b, float *feat, float *mag, int dim,
                     const mf_embed_sink *sink, mf_embed_stats *st)
{
    int rc = b->n > 0 ? sink_batch_rows(b, feat, mag, dim, sink, st) : 0;
    for (size_t i = 0; i < b->n_fail && rc == 0; i++) {
        rc = sink->failed(sink->ctx, b->fail_id[i], b->fail_reason[i]);
        st->failed++;
    }
    if (rc == 0 && sink->batch_done)
        rc = sink->batch_done(sink->ctx);
    return rc;
}

/* ---- faces run again (mf_embed_params.again_run) ------------------------------------ */

/* A batch waiting for faces of its own to run again, with its network outputs. */
typedef struct held {
    batch b; /* swapped with the consumer's batch, whose buffers go back to the producer */
    float *feat, *mag;
} held;

typedef struct again {
    held slots[MF_EMBED_HOLD];
    int count, rows; /* batches and rows held, in input order */
    int (*wanted)(void *ctx, int i);
    mf_embed_forward_fn run;
    void *ctx;
    int capacity, dim;
    int pending, *who; /* faces to run again: slot * capacity + row */
    uint8_t *faces;    /* (capacity) faces gathered for one run */
    float *feat, *mag; /* (capacity) their outputs */
} again;

static void again_release(again *ag)
{
    for (int i = 0; i < MF_EMBED_HOLD; i++) {
        batch_release(&ag->slots[i].b);
        free(ag->slots[i].feat);
        free(ag->slots[i].mag);
    }
    free(ag->who);
    free(ag->faces);
    free(ag->feat);
    free(ag->mag);
}

static int again_init(again *ag, const mf_embed_params *p, void *ctx, int capacity, int dim)
{
    memset(ag, 0, sizeof *ag);
    ag->wanted = p->again_wanted, ag->run = p->again_run, ag->ctx = ctx;
    ag->capacity = capacity, ag->dim = dim;
    ag->who = malloc((size_t)MF_EMBED_HOLD * capacity * sizeof *ag->who);
    ag->faces = malloc((size_t)capacity * FACE_BYTES);
    ag->feat = malloc((size_t)capacity * dim * sizeof *ag->feat);
    ag->mag = malloc((size_t)capacity * sizeof *ag->mag);
    return ag->who && ag->faces && ag->feat && ag->mag ? 0 : MF_ERR_NOMEM;
}

/* Slot i's buffers, allocated when first used (most runs never hold a batch). */
static int again_slot(again *ag, int i)
{
    held *h = &ag->slots[i];
    if (h->feat)
        return 0;
    if (batch_init(&h->b, ag->capacity) < 0 ||
        !(h->feat = malloc((size_t)ag->capacity * ag->dim * sizeof *h->feat)) ||
        !(h->mag = malloc((size_t)ag->capacity * sizeof *h->mag)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory holding rows for faces run again");
    return 0;
}

static int any_wanted(const again *ag, const batch *b)
{
    for (int i = 0; i < b->n; i++)
        if (ag->wanted(ag->ctx, i))
            return 1;
    return 0;
}

/* Run the pending faces again, in runs of up to `capacity`, into their held rows; then
 * hand every held batch over in order. */
static int again_flush(again *ag, const mf_embed_sink *sink, mf_embed_stats *st)
{
    int rc = 0, cap = ag->capacity, dim = ag->dim;
    for (int s = 0; s < ag->pending && rc == 0; s += cap) {
        int m = ag->pending - s < cap ? ag->pending - s : cap;
        for (int j = 0; j < m; j++) {
            const held *h = &ag->slots[ag->who[s + j] / cap];
            memcpy(ag->faces + (size_t)j * FACE_BYTES,
                   h->b.faces + (size_t)(ag->who[s + j] % cap) * FACE_BYTES, FACE_BYTES);
        }
        double t0 = mf_now();
        rc = ag->run(ag->ctx, m, ag->faces, ag->feat, ag->mag);
        st->network_seconds += mf_now() - t0;
        for (int j = 0; j < m && rc == 0; j++) {
            held *h = &ag->slots[ag->who[s + j] / cap];
            int row = ag->who[s + j] % cap;
            memcpy(h->feat + (size_t)row * dim, ag->feat + (size_t)j * dim,
                   (size_t)dim * sizeof *h->feat);
            h->mag[row] = ag->mag[j];
        }
    }
    for (int i = 0; i < ag->count; i++) {
        if (rc == 0)
            rc = hand_over(&ag->slots[i].b, ag->slots[i].feat, ag->slots[i].mag, dim, sink, st);
        batch_clear(&ag->slots[i].b);
    }
    ag->count = ag->rows = ag->pending = 0;
    return rc;
}

/* Hold `b` (its contents move to a slot; b gets the slot's empty buffers) with its
 * outputs, noting the faces to run again; flush once enough wait. */
static int again_hold(again *ag, batch *b, const float *feat, const float *mag,
                      const mf_embed_sink *sink, mf_embed_stats *st)
{
    int i = ag->count, cap = ag->capacity;
    int rc = again_slot(ag, i);
    if (rc < 0)
        return rc;
    held *h = &ag->slots[i];
    batch t = h->b;
    h->b = *b;
    *b = t;
    memcpy(h->feat, feat, (size_t)h->b.n * ag->dim * sizeof *feat);
    memcpy(h->mag, mag, (size_t)h->b.n * sizeof *mag);
    for (int r = 0; r < h->b.n; r++)
        if (ag->wanted(ag->ctx, r))
            ag->who[ag->pending++] = i * cap + r;
    ag->count++, ag->rows += h->b.n;
    if (ag->pending >= cap || ag->count == MF_EMBED_HOLD || ag->rows >= MF_EMBED_HOLD_ROWS)
        return again_flush(ag, sink, st);
    return 0;
}

/* Consumer side of one batch: the network, then the sink (or the wait for faces run
 * again, when some are pending or this batch has some). */
static int consume(batch *b, float *feat, float *mag, int dim, mf_embed_forward_fn forward,
                   void *fctx, again *ag, const mf_embed_sink *sink, mf_embed_stats *st)
{
    if (b->n > 0) {
        double t0 = mf_now();
        int rc = forward(fctx, b->n, b->faces, feat, mag);
        st->network_seconds += mf_now() - t0;
        if (rc < 0)
            return rc;
    }
    if (ag && (ag->count || any_wanted(ag, b)))
        return again_hold(ag, b, feat, mag, sink, st);
    return hand_over(b, feat, mag, dim, sink, st);
}

int mf_embed_run(mf_source *src, mf_idset *seen, const mf_embed_params *p, int dim,
                 mf_embed_forward_fn forward, void *forward_ctx, const mf_embed_sink *sink,
                 volatile sig_atomic_t *stop, mf_embed_stats *stats)
{
    static volatile sig_atomic_t never;
    memset(stats, 0, sizeof *stats);
    double t0 = mf_now();
    pipeline pl = {.src = src,
                   .seen = seen,
                   .params = p,
                   .stop = stop ? stop : &never,
                   .capacity = p->batch > 0 && p->batch <= MF_EMBED_MAX_BATCH ? p->batch
                                                                              : MF_EMBED_BATCH};
    size_t nfeat;
    if (mf_size_mul((size_t)pl.capacity, (size_t)dim, &nfeat, "feature buffer") < 0)
        return MF_ERR_NOMEM;
    float *feat = malloc(nfeat * sizeof *feat),
          *mag = malloc((size_t)pl.capacity * sizeof *mag);
    int rc = feat && mag ? 0 : MF_ERR_NOMEM; /* the message is set below */
    for (int i = 0; i < N_BATCHES && rc == 0; i++)
        rc = batch_init(&pl.batches[i], pl.capacity);
    again again_state, *ag = NULL;
    if (rc == 0 && p->again_wanted && p->again_run) {
        ag = &again_state;
        rc = again_init(ag, p, forward_ctx, pl.capacity, dim);
    }
    if (rc < 0) {
        for (int i = 0; i < N_BATCHES; i++) /* zeroed or initialised: both release */
            batch_release(&pl.batches[i]);
        if (ag)
            again_release(ag);
        free(feat);
        free(mag);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %d-image batches", pl.capacity);
    }
    pthread_mutex_init(&pl.lock, NULL);
    pthread_cond_init(&pl.changed, NULL);
    for (int i = 0; i < N_BATCHES; i++)
        push(&pl.empty, &pl.batches[i]);
    mf_source_set_skip(src, already_seen, &pl);
    pthread_t thread;
    int started = pthread_create(&thread, NULL, producer, &pl) == 0;
    if (!started)
        rc = mf_set_error(MF_ERR_INTERNAL, "cannot start the decoding thread");
    for (int done = rc < 0; !done;) {
        batch *b = take(&pl, &pl.full, 0);
        int last = b->last, fatal = b->fatal; /* b's contents may move to a held slot */
        if (fatal) {
            rc = ag ? again_flush(ag, sink, stats) : 0; /* what was read before stays */
            if (rc == 0)
                rc = mf_set_error(fatal, "reading inputs: %s", b->error);
        } else {
            rc = consume(b, feat, mag, dim, forward, forward_ctx, ag, sink, stats);
            if (rc == 0 && ag && last)
                rc = again_flush(ag, sink, stats);
        }
        done = last || fatal || rc < 0;
        if (rc < 0) {
            pthread_mutex_lock(&pl.lock);
            pl.consumer_quit = 1;
            pthread_cond_broadcast(&pl.changed);
            pthread_mutex_unlock(&pl.lock);
        }
        give(&pl, &pl.empty, b);
    }
    if (started)
        pthread_join(thread, NULL);
    mf_source_set_skip(src, NULL, NULL); /* `pl` goes out of scope */
    stats->skipped = pl.skipped;
    stats->wall_seconds = mf_now() - t0;
    for (int i = 0; i < N_BATCHES; i++)
        batch_release(&pl.batches[i]);
    if (ag)
        again_release(ag); /* rows still held here: the run failed, they were not stored */
    pthread_cond_destroy(&pl.changed);
    pthread_mutex_destroy(&pl.lock);
    free(feat);
    free(mag);
    return rc;
}
