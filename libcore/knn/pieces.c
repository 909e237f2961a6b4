/* pieces.c - the kNN graph in pieces (see mf/knn_pieces.h): a plan of inverted lists
 * (each row a member of its nearest list and a prober of the next P), shards that join
 * their share of the lists with bounded memory, and a merge of partial neighbour lists.
 *
 * Why shards own lists (not rows): a list is scanned as one product of its members
 * against every row that meets it, so a shard reads each of its rows' embeddings once,
 * streamed from the store in row order, in waves that fit its memory limit.
 *
 * Why the result is the same however it is cut: every product only decides which pairs
 * are scored exactly; a pair whose exact similarity could enter a row's top k always
 * passes (PRODUCT_SLACK covers the difference between a product and the exact dot), and
 * rows keep their k best by (exact similarity, then lower row), a total order. A row's
 * final neighbours are then the top k of the union of the members of its lists, and the
 * top k of a union is the top k of the parts' top k. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "knn_internal.h"
#include "mf/knn_pieces.h"
#include "mf/log.h"
#include "mf/progress.h"
#include "mf/shardset.h"
#include "mf/status.h"
#include "mf/store.h"

/* Parameters, job descriptions and row streaming need no FAISS. */

mf_knn_plan_params mf_knn_plan_default_params(void)
{
    return (mf_knn_plan_params){.k = 30, .lists_per_sqrt = 2, .probes = 32, .sample = 64};
}

void mf_knn_plan_job(char *buf, size_t len, const char *fingerprint,
                     const mf_knn_plan_params *p)
{
    snprintf(buf, len, "plan %s k=%d lists=%d per-sqrt=%g probes=%d sample=%d", fingerprint,
             p->k, p->nlist, p->lists_per_sqrt, p->probes, p->sample);
}

int mf_knn_stream_rows(mf_store *s, size_t first, size_t end, mf_knn_block_fn fn, void *ctx)
{
    mf_store_cursor *c;
    const mf_store_block *b;
    int rc = mf_store_cursor_open(&c, s, MF_COL_EMBEDDING, first, end);
    while (rc == 0 && (rc = mf_store_cursor_next(c, &b)) > 0) {
        /* the block's buffer is the cursor's until the next call: normalised in place */
        mf_knn_normalize(b->embedding, b->n, mf_store_dim(s));
        rc = fn(ctx, (size_t)b->start, b->n, b->embedding);
    }
    mf_store_cursor_close(c);
    return rc < 0 ? rc : 0;
}

#ifdef MF_HAVE_FAISS

/* A float32 product of two unit rows differs from mf_knn_dot of the same rows by a few
 * ulps of the 512 partial sums (< 3e-5); anything within this of a row's k-th best is
 * scored exactly. */
#define PRODUCT_SLACK 1e-4f
#define TILE 256 /* rows of a list per product: fixed, so the products do not depend on -j */

typedef struct {
    float *out;
    size_t m, stride;
    int dim;
} sample_ctx;

/* Row j * stride of the store is sample row j (j < m): the even stride of lists.c. */
static int take_sample(void *ctx, size_t start, size_t n, float *x)
{
    sample_ctx *c = ctx;
    for (size_t i = 0; i < n; i++) {
        size_t r = start + i;
        if (r % c->stride == 0 && r / c->stride < c->m)
            memcpy(c->out + (r / c->stride) * c->dim, x + i * c->dim, c->dim * sizeof(float));
    }
    return 0;
}

static int assign_block(void *ctx, size_t start, size_t n, float *x)
{
    const mf_knn_plan *p = ctx;
    return mf_knn_assign_lists(x, n, p->dim, p->centroids, p->nlist, p->assign,
                               p->lists + start * p->assign);
}

static void plan_id(mf_knn_plan *p)
{
    uint64_t h = mf_knn_fnv(MF_KNN_FNV_BASIS, p->fingerprint, strlen(p->fingerprint));
    int hdr[4] = {p->dim, p->k, p->nlist, p->assign};
    h = mf_knn_fnv(h, hdr, sizeof hdr);
    h = mf_knn_fnv(h, p->centroids, (size_t)p->nlist * p->dim * sizeof(float));
    h = mf_knn_fnv(h, p->lists, p->n * p->assign * sizeof(int32_t));
    snprintf(p->id, sizeof p->id, "%016llx", (unsigned long long)h);
}

int mf_knn_plan_build(mf_knn_plan **out, mf_store *s, const mf_knn_plan_params *pp)
{
    size_t n = mf_store_rows(s), cells;
    int dim = mf_store_dim(s);
    if (n < 2 || pp->k < 1 || (size_t)pp->k >= n || pp->probes < 0 || pp->sample < 1)
        return mf_set_error(MF_ERR_ARG,
                            "graph plan: need k (%d) in [1, rows-1] with rows = %zu", pp->k, n);
    if (n > INT32_MAX)
        return mf_set_error(MF_ERR_LIMIT, "graph plan: at most %d rows", INT32_MAX);
    size_t nl =
        pp->nlist > 0 ? (size_t)pp->nlist : (size_t)ceil(pp->lists_per_sqrt * sqrt((double)n));
    nl = nl < 1 ? 1 : nl > n / 2 ? (n / 2 ? n / 2 : 1) : nl;
    size_t m = nl * (size_t)pp->sample < n ? nl * (size_t)pp->sample : n;
    mf_knn_plan *p = calloc(1, sizeof *p);
    float *mag = NULL, *sample = NULL;
    int rc = p ? mf_store_load_float(s, "magnitude", &mag) : MF_ERR_NOMEM;
    if (rc < 0) {
        free(p);
        return rc == MF_ERR_NOMEM ? mf_set_error(rc, "out of memory for the plan") : rc;
    }
    p->n = n, p->dim = dim, p->k = pp->k;
    mf_knn_fingerprint(p->fingerprint, n, dim, mag);
    mf_knn_plan_job(p->job, sizeof p->job, p->fingerprint, pp);
    free(mag);
    if (!(sample = malloc(m * dim * sizeof *sample)))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for the k-means sample");
    sample_ctx sc = {sample, m, n / m, dim};
    double t0 = mf_now();
    if (rc == 0)
        rc = mf_knn_stream_rows(s, 0, n, take_sample, &sc);
    if (rc == 0)
        rc = mf_knn_make_lists(sample, m, dim, (int)nl, &p->centroids, &p->nlist);
    free(sample);
    double t1 = mf_now();
    if (rc == 0) {
        p->assign = 1 + (pp->probes < p->nlist - 1 ? pp->probes : p->nlist - 1);
        rc = mf_size_mul(n, (size_t)p->assign * sizeof(int32_t), &cells, "list assignments");
    }
    if (rc == 0 && !(p->lists = malloc(cells)))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for list assignments");
    if (rc == 0)
        rc = mf_knn_stream_rows(s, 0, n, assign_block, p);
    if (rc < 0) {
        mf_knn_plan_free(p);
        return rc;
    }
    plan_id(p);
    mf_log(MF_LOG_DEBUG,
           "graph plan: %d lists (%zu asked) from %zu sample rows in %.1f s, "
           "%d lists per row in %.1f s",
           p->nlist, nl, m, t1 - t0, p->assign, mf_now() - t1);
    *out = p;
    return 0;
}

/* ---- shards ------------------------------------------------------------------------ */

/* Which shard owns list l: lists are cut into `shards` contiguous runs of about equal
 * join cost (the sum of squared sizes), each list going to the run holding its middle. */
static int list_owner(double before, double cost, double total, int shards)
{
    int o = total > 0 ? (int)(shards * (before + cost / 2) / total) : 0;
    return o < shards ? o : shards - 1;
}

typedef struct {
    const mf_knn_plan *plan;
    int32_t *slot; /* (n) row -> place in wave, -1 */
    float *wave;   /* (slots, dim) normalised rows of the wave */
} wave_ctx;

static int load_wave(void *ctx, size_t start, size_t n, float *x)
{
    wave_ctx *w = ctx;
    int dim = w->plan->dim;
    for (size_t i = 0; i < n; i++)
        if (w->slot[start + i] >= 0)
            memcpy(w->wave + (size_t)w->slot[start + i] * dim, x + i * dim,
                   dim * sizeof(float));
    return 0;
}

/* Per-thread buffers of a wave's joins, allocated before the parallel region. */
typedef struct {
    float *all;   /* (maxm, dim) the list's members */
    float *own;   /* (TILE, dim) a tile of this thread's rows */
    float *score; /* (TILE, maxm) */
    int32_t *sel; /* (maxq) this thread's rows of the list */
} join_buf;

/* The shard's state while it runs. */
typedef struct {
    const mf_knn_plan *plan;
    size_t *ms, *qs;        /* (nlist + 1) CSR by list: members, probing rows */
    int32_t *mrows, *qrows; /* (n), (n * (assign - 1)) */
    int lo, hi;             /* the shard's lists [lo, hi) */
    int32_t *loc;           /* (n) row -> local row of the part, -1 */
    size_t maxm, maxq;      /* largest list: members; members + probing rows */
} shard_state;

/* Join this thread's rows (row % nt == t) among the members and probing rows of list l
 * with every member of l: one product per tile of TILE rows, whose scores only filter
 * (exact scores decide). No two threads touch one row. */
static void join_list(mf_knn_part *part, const shard_state *st, int l, const float *wave,
                      const int32_t *slot, int t, int nt, join_buf *w)
{
    int k = part->k, dim = st->plan->dim;
    const int32_t *mem = st->mrows + st->ms[l];
    size_t nm = st->ms[l + 1] - st->ms[l], ns = 0, row_bytes = (size_t)dim * sizeof(float);
    if (!nm)
        return;
    for (size_t j = 0; j < nm; j++)
        if (mem[j] % nt == t)
            w->sel[ns++] = mem[j];
    for (size_t e = st->qs[l]; e < st->qs[l + 1]; e++)
        if (st->qrows[e] % nt == t)
            w->sel[ns++] = st->qrows[e];
    if (!ns)
        return;
    for (size_t j = 0; j < nm; j++)
        memcpy(w->all + j * dim, wave + (size_t)slot[mem[j]] * dim, row_bytes);
    for (size_t t0 = 0; t0 < ns; t0 += TILE) {
        size_t b = ns - t0 < TILE ? ns - t0 : TILE;
        for (size_t i = 0; i < b; i++)
            memcpy(w->own + i * dim, wave + (size_t)slot[w->sel[t0 + i]] * dim, row_bytes);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)nm, dim, 1.0f, w->own,
                    dim, w->all, dim, 0.0f, w->score, (int)nm);
        for (size_t i = 0; i < b; i++) {
            int32_t row = w->sel[t0 + i];
            size_t lr = (size_t)st->loc[row];
            int64_t *nb = part->nbr + lr * k;
            float *sm = part->sim + lr * k;
            const float *sc = w->score + i * nm, *xr = w->own + i * dim;
            for (size_t j = 0; j < nm; j++)
                if (mem[j] != row && sc[j] > sm[k - 1] - PRODUCT_SLACK)
                    mf_knn_offer(nb, sm, k, mem[j], mf_knn_dot(xr, w->all + j * dim, dim));
        }
    }
}

/* A list's join cost: its m members against its members and q probing rows. */
static double join_cost(size_t m, size_t q) { return (double)m * ((double)m + (double)q); }

static double list_cost(const shard_state *st, int l)
{
    return join_cost(st->ms[l + 1] - st->ms[l], st->qs[l + 1] - st->qs[l]);
}

/* First pass over the plan's lists: each list's members and probing rows, counted at
 * ms[l + 1] and qs[l + 1]. */
static int count_block(void *ctx, size_t first, size_t n, const int32_t *lists)
{
    (void)first;
    shard_state *st = ctx;
    int A = st->plan->assign;
    for (size_t i = 0; i < n; i++) {
        st->ms[lists[i * A] + 1]++;
        for (int j = 1; j < A; j++)
            st->qs[lists[i * A + j] + 1]++;
    }
    return 0;
}

/* Second pass: the rows of the shard's lists [lo, hi) only, in row order per list
 * (fill: the next free place of each of those lists, members then probing rows). */
typedef struct {
    shard_state *st;
    size_t *mfill, *qfill;
} fill_ctx;

static int fill_block(void *ctx, size_t first, size_t n, const int32_t *lists)
{
    fill_ctx *c = ctx;
    shard_state *st = c->st;
    int A = st->plan->assign, lo = st->lo, hi = st->hi;
    for (size_t i = 0; i < n; i++) {
        const int32_t *li = lists + i * A;
        if (li[0] >= lo && li[0] < hi)
            st->mrows[c->mfill[li[0] - lo]++] = (int32_t)(first + i);
        for (int j = 1; j < A; j++)
            if (li[j] >= lo && li[j] < hi)
                st->qrows[c->qfill[li[j] - lo]++] = (int32_t)(first + i);
    }
    return 0;
}

/* Turn the counts at start[l + 1] into CSR starts of the lists [lo, hi) only: lists
 * before lo start (and end) at 0, lists from hi on at the end of hi - 1. */
static size_t own_starts(size_t *start, int nlist, int lo, int hi)
{
    size_t total = 0;
    for (int l = 0; l < nlist; l++) {
        size_t c = l >= lo && l < hi ? start[l + 1] : 0;
        start[l] = total;
        total += c;
    }
    start[nlist] = total;
    return total;
}

/* The shard's lists (contiguous, of about equal join cost) and their rows, from two
 * passes over the plan's lists, which may stay in the plan's file: a shard holds the
 * rows of its own lists only (1 + probes entries per row in all, over all shards). */
static int find_lists(shard_state *st, int shard, int shards)
{
    const mf_knn_plan *p = st->plan;
    st->ms = calloc((size_t)p->nlist + 1, sizeof *st->ms);
    st->qs = calloc((size_t)p->nlist + 1, sizeof *st->qs);
    if (!st->ms || !st->qs)
        return mf_set_error(MF_ERR_NOMEM, "out of memory grouping rows by list");
    int rc = mf_knn_plan_each_block(p, count_block, st);
    if (rc < 0)
        return rc;
    double total = 0, before = 0;
    for (int l = 0; l < p->nlist; l++)
        total += join_cost(st->ms[l + 1], st->qs[l + 1]); /* counts, not yet starts */
    st->lo = p->nlist, st->hi = 0;
    for (int l = 0; l < p->nlist; l++) {
        double cost = join_cost(st->ms[l + 1], st->qs[l + 1]);
        if (list_owner(before, cost, total, shards) == shard) {
            st->lo = l < st->lo ? l : st->lo;
            st->hi = l + 1;
        }
        before += cost;
    }
    if (st->hi < st->lo)
        st->hi = st->lo;
    for (int l = st->lo; l < st->hi; l++) {
        size_t m = st->ms[l + 1], q = st->qs[l + 1];
        st->maxm = m > st->maxm ? m : st->maxm;
        st->maxq = m + q > st->maxq ? m + q : st->maxq;
    }
    size_t nm = own_starts(st->ms, p->nlist, st->lo, st->hi);
    size_t nq = own_starts(st->qs, p->nlist, st->lo, st->hi);
    int span = st->hi - st->lo;
    fill_ctx c = {st, malloc((span ? span : 1) * sizeof(size_t)),
                  malloc((span ? span : 1) * sizeof(size_t))};
    st->mrows = malloc((nm ? nm : 1) * sizeof *st->mrows);
    st->qrows = malloc((nq ? nq : 1) * sizeof *st->qrows);
    if (!c.mfill || !c.qfill || !st->mrows || !st->qrows)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for the rows of the shard's lists");
    for (int l = st->lo; rc == 0 && l < st->hi; l++)
        c.mfill[l - st->lo] = st->ms[l], c.qfill[l - st->lo] = st->qs[l];
    if (rc == 0)
        rc = mf_knn_plan_each_block(p, fill_block, &c);
    free(c.mfill), free(c.qfill);
    return rc;
}

/* Call fn(ctx, row) for every member and probing row of lists [l0, l1). */
#define FOR_ROWS_OF(st, l0, l1, r, body)                                                       \
    do {                                                                                       \
        for (size_t e_ = (st)->ms[l0]; e_ < (st)->ms[l1]; e_++) {                              \
            int32_t r = (st)->mrows[e_];                                                       \
            body;                                                                              \
        }                                                                                      \
        for (size_t e_ = (st)->qs[l0]; e_ < (st)->qs[l1]; e_++) {                              \
            int32_t r = (st)->qrows[e_];                                                       \
            body;                                                                              \
        }                                                                                      \
    } while (0)

/* The part's rows: members and probing rows of the shard's lists, increasing. */
static int make_part(shard_state *st, mf_knn_part *part)
{
    size_t n = st->plan->n, m = 0, cells;
    if (!(st->loc = malloc(n * sizeof *st->loc)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory for the shard's rows");
    for (size_t i = 0; i < n; i++)
        st->loc[i] = -1;
    FOR_ROWS_OF(st, st->lo, st->hi, r, st->loc[r] = 0);
    for (size_t i = 0; i < n; i++)
        m += st->loc[i] == 0;
    part->m = m;
    if (mf_size_mul(m ? m : 1, (size_t)part->k * 8, &cells, "graph part") < 0)
        return MF_ERR_NOMEM;
    part->rows = malloc((m ? m : 1) * sizeof *part->rows);
    part->nbr = malloc(cells);
    part->sim = malloc(cells / 2);
    if (!part->rows || !part->nbr || !part->sim)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for a graph part of %zu rows", m);
    m = 0;
    for (size_t i = 0; i < n; i++)
        if (st->loc[i] == 0) {
            st->loc[i] = (int32_t)m;
            part->rows[m++] = (int64_t)i;
        }
    for (size_t c = 0; c < part->m * part->k; c++)
        part->nbr[c] = -1, part->sim[c] = -2.0f;
    return 0;
}

/* Lists [l0, *l1) whose distinct rows fit `cap` (at least one list); slots are given in
 * order of first appearance. */
static void plan_wave(const shard_state *st, int l0, int *l1, size_t cap, int32_t *slot)
{
    size_t used = 0;
    int l = l0;
    for (; l < st->hi; l++) {
        size_t add = 0;
        FOR_ROWS_OF(st, l, l + 1, r, add += slot[r] < 0);
        if (l > l0 && used + add > cap)
            break;
        FOR_ROWS_OF(st, l, l + 1, r, if (slot[r] < 0) slot[r] = (int32_t)used++);
    }
    *l1 = l;
}

/* Bytes the shard holds besides the wave buffer. */
static size_t fixed_bytes(const mf_knn_plan *p, const shard_state *st, size_t m, int nt)
{
    size_t own = (st->ms[p->nlist] + st->qs[p->nlist]) * 4; /* the shard's lists' rows */
    return (p->lists ? p->n * p->assign * 4 : 0) + own + (size_t)p->nlist * (p->dim * 4 + 24) +
           p->n * 8 + m * (8 + (size_t)p->k * 12) +
           (size_t)nt * ((TILE + p->dim) * st->maxm * 4 + TILE * p->dim * 4 + st->maxq * 4) +
           MF_KNN_OVERHEAD;
}

static int run_waves(shard_state *st, mf_knn_part *part, mf_store *s, size_t mem_limit,
                     int progress)
{
    const mf_knn_plan *p = st->plan;
    int dim = p->dim, nt = omp_get_max_threads(), rc = 0;
    size_t fixed = fixed_bytes(p, st, part->m, nt), row_bytes = (size_t)dim * 4;
    size_t cap = (size_t)-1 / row_bytes / 2;
    if (mem_limit) {
        if (mem_limit < fixed + (st->maxq + 1) * row_bytes)
            return mf_set_error(MF_ERR_LIMIT,
                                "--mem-limit %.2f GB is too small for shard %d/%d: it needs "
                                "at least %.2f GB (or more shards)",
                                mem_limit / 1e9, part->shard, part->shards,
                                (fixed + (st->maxq + 1) * row_bytes) / 1e9);
        cap = (mem_limit - fixed) / row_bytes;
    }
    size_t distinct = part->m < cap ? part->m : cap;
    size_t maxm = st->maxm ? st->maxm : 1, maxq = st->maxq ? st->maxq : 1;
    wave_ctx w = {p, malloc(p->n * sizeof(int32_t)),
                  malloc((distinct ? distinct : 1) * row_bytes)};
    join_buf *jb = calloc(nt, sizeof *jb);
    int ok = w.slot && w.wave && jb;
    for (int t = 0; ok && t < nt; t++) {
        jb[t].all = malloc(maxm * row_bytes);
        jb[t].own = malloc(TILE * row_bytes);
        jb[t].score = malloc((size_t)TILE * maxm * sizeof(float));
        jb[t].sel = malloc(maxq * sizeof(int32_t));
        ok = jb[t].all && jb[t].own && jb[t].score && jb[t].sel;
    }
    if (!ok)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for the shard's embeddings");
    for (size_t i = 0; rc == 0 && i < p->n; i++)
        w.slot[i] = -1;
    double pairs = 0;
    for (int l = st->lo; l < st->hi; l++)
        pairs += list_cost(st, l);
    mf_knn_meter meter = {.per = 1000000};
    if (rc == 0 && progress)
        meter.bar =
            mf_progress_new("graph shard", (uint64_t)(pairs / 1e6), "Mpairs", progress > 1);
    int blas_threads = openblas_get_num_threads(), waves = 0;
    openblas_set_num_threads(1);
    for (int l0 = st->lo, l1; rc == 0 && l0 < st->hi; l0 = l1, waves++) {
        plan_wave(st, l0, &l1, distinct, w.slot);
        size_t first = p->n, end = 0;
        FOR_ROWS_OF(st, l0, l1, r, {
            first = (size_t)r < first ? (size_t)r : first;
            end = (size_t)r + 1 > end ? (size_t)r + 1 : end;
        });
        rc = mf_knn_stream_rows(s, first, end, load_wave, &w);
#pragma omp parallel num_threads(nt) if (rc == 0)
        {
            int t = omp_get_thread_num();
            for (int l = l0; rc == 0 && l < l1; l++) {
                join_list(part, st, l, w.wave, w.slot, t, nt, &jb[t]);
                mf_knn_meter_add(&meter, (uint64_t)(list_cost(st, l) / nt));
            }
        }
        FOR_ROWS_OF(st, l0, l1, r, w.slot[r] = -1);
    }
    openblas_set_num_threads(blas_threads);
    mf_knn_meter_end(&meter);
    mf_log(MF_LOG_DEBUG,
           "graph shard %d/%d: lists %d..%d, %zu rows, %.3g pairs, %d passes "
           "over the store",
           part->shard, part->shards, st->lo, st->hi, part->m, pairs, waves);
    for (int t = 0; jb && t < nt; t++)
        free(jb[t].all), free(jb[t].own), free(jb[t].score), free(jb[t].sel);
    free(jb), free(w.slot), free(w.wave);
    return rc;
}

int mf_knn_shard_build(mf_knn_part **out, const mf_knn_plan *plan, mf_store *s, int shard,
                       int shards, size_t mem_limit, int progress)
{
    if (shards < 1 || shard < 0 || shard >= shards)
        return mf_set_error(MF_ERR_ARG, "shard %d/%d: need 0 <= K < N", shard, shards);
    if (mf_store_rows(s) != plan->n || mf_store_dim(s) != plan->dim)
        return mf_set_error(MF_ERR_MISMATCH,
                            "the plan is for %zu rows x %d, the store '%s' "
                            "has %zu x %d",
                            plan->n, plan->dim, mf_store_path(s), (size_t)mf_store_rows(s),
                            mf_store_dim(s));
    mf_knn_part *part = calloc(1, sizeof *part);
    if (!part)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    *part = (mf_knn_part){.n = plan->n, .k = plan->k, .shard = shard, .shards = shards};
    snprintf(part->fingerprint, sizeof part->fingerprint, "%s", plan->fingerprint);
    snprintf(part->plan, sizeof part->plan, "%s", plan->id);
    snprintf(part->index, sizeof part->index, "IVFPieces%dx%d", plan->nlist, plan->assign);
    shard_state st = {.plan = plan};
    int rc = find_lists(&st, shard, shards);
    if (rc == 0)
        rc = make_part(&st, part);
    if (rc == 0)
        rc = run_waves(&st, part, s, mem_limit, progress);
    free(st.ms), free(st.qs), free(st.mrows), free(st.qrows), free(st.loc);
    if (rc < 0) {
        mf_knn_part_free(part);
        return rc;
    }
    *out = part;
    return 0;
}

/* ---- merge ------------------------------------------------------------------------- */

/* Check that the parts' headers form one set of one plan (mf_shard_set_check: the group
 * is the plan, the embeddings and the graph's shape); order[K] = index of part K. */
static int check_set(mf_knn_part **hdr, const char *const *paths, size_t np, int allow_partial,
                     int *order)
{
    mf_shard_part *parts = calloc(np, sizeof *parts);
    char(*groups)[160] = calloc(np, sizeof *groups);
    int rc = parts && groups ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < np && rc == 0; i++) {
        const mf_knn_part *b = hdr[i];
        snprintf(groups[i], sizeof groups[i], "plan %s of %s, %lld rows, k %d", b->plan,
                 b->fingerprint, (long long)b->n, b->k);
        parts[i] = (mf_shard_part){
            .name = paths[i], .k = b->shard, .n = b->shards, .group = groups[i]};
    }
    if (rc == 0 && (rc = mf_shard_set_check(parts, np, allow_partial)) > 0)
        rc = 0; /* shards missing, allowed: their rows keep what the others found */
    free(parts);
    free(groups);
    if (rc < 0)
        return rc;
    for (int K = 0; K < hdr[0]->shards; K++)
        order[K] = -1;
    for (size_t i = 0; i < np; i++)
        order[hdr[i]->shard] = (int)i;
    return 0;
}

/* Offer every neighbour of the part's rows to the graph's rows. */
static void merge_part(mf_knn_graph *g, const mf_knn_part *p)
{
    int k = p->k;
    for (size_t i = 0; i < p->m; i++) {
        int64_t *nb = g->nbr + p->rows[i] * k;
        float *sm = g->sim + p->rows[i] * k;
        for (int r = 0; r < k && p->nbr[i * k + r] >= 0; r++)
            mf_knn_offer(nb, sm, k, p->nbr[i * k + r], p->sim[i * k + r]);
    }
}

static void name_graph(mf_knn_graph *g, const mf_knn_part *p)
{
    snprintf(g->fingerprint, sizeof g->fingerprint, "%s", p->fingerprint);
    snprintf(g->index, sizeof g->index, "%s", p->index);
}

int mf_knn_graph_from_part(mf_knn_graph **out, const mf_knn_part *p)
{
    mf_knn_graph *g;
    int rc = mf_knn_graph_alloc(&g, p->n, p->k);
    if (rc < 0)
        return rc;
    merge_part(g, p);
    name_graph(g, p);
    *out = g;
    return 0;
}

int mf_knn_merge(mf_knn_graph **out, const char *const *paths, size_t np, int allow_partial)
{
    if (np < 1)
        return mf_set_error(MF_ERR_ARG, "merge: no parts");
    mf_knn_part **hdr = calloc(np, sizeof *hdr);
    int *order = NULL, rc = hdr ? 0 : MF_ERR_NOMEM;
    for (size_t i = 0; rc == 0 && i < np; i++)
        rc = mf_knn_part_load(&hdr[i], paths[i], 0);
    if (rc == 0 && !(order = malloc(hdr[0]->shards * sizeof *order)))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = check_set(hdr, paths, np, allow_partial, order);
    mf_knn_graph *g = NULL;
    if (rc == 0)
        rc = mf_knn_graph_alloc(&g, hdr[0]->n, hdr[0]->k);
    for (int K = 0; rc == 0 && K < hdr[0]->shards; K++) {
        mf_knn_part *p;
        if (order[K] < 0 || (rc = mf_knn_part_load(&p, paths[order[K]], 1)) < 0)
            continue;
        merge_part(g, p);
        mf_knn_part_free(p);
    }
    if (rc == 0)
        name_graph(g, hdr[0]);
    for (size_t i = 0; hdr && i < np; i++)
        mf_knn_part_free(hdr[i]);
    free(hdr), free(order);
    if (rc < 0) {
        mf_knn_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* ---- recall against the store ------------------------------------------------------ */

typedef struct {
    mf_store *s;
    float *buf;
    size_t cap;
} store_rows;

static int read_store_rows(void *ctx, size_t start, size_t n, const float **out)
{
    store_rows *r = ctx;
    int dim = mf_store_dim(r->s);
    if (n > r->cap) {
        float *b = realloc(r->buf, n * dim * sizeof *b);
        if (!b)
            return mf_set_error(MF_ERR_NOMEM, "out of memory for the recall check");
        r->buf = b, r->cap = n;
    }
    int rc = mf_store_read_embedding(r->s, start, n, r->buf);
    if (rc < 0)
        return rc;
    mf_knn_normalize(r->buf, n, dim);
    *out = r->buf;
    return 0;
}

int mf_knn_store_recall(const mf_knn_graph *g, mf_store *s, size_t m, double *recall)
{
    store_rows r = {s, NULL, 0};
    m = m < g->n ? m : g->n;
    int rc = mf_knn_recall(g, mf_store_dim(s), m, read_store_rows, &r, recall);
    free(r.buf);
    return rc;
}

#else /* built without the FAISS C API */

int mf_knn_plan_build(mf_knn_plan **out, mf_store *s, const mf_knn_plan_params *p)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "graph plan: built without the FAISS C API");
}
int mf_knn_shard_build(mf_knn_part **out, const mf_knn_plan *plan, mf_store *s, int shard,
                       int shards, size_t mem_limit, int progress)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "graph shard: built without the FAISS C API");
}
int mf_knn_merge(mf_knn_graph **out, const char *const *paths, size_t n_paths,
                 int allow_partial)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "graph merge: built without the FAISS C API");
}
int mf_knn_graph_from_part(mf_knn_graph **out, const mf_knn_part *p)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "graph merge: built without the FAISS C API");
}
int mf_knn_store_recall(const mf_knn_graph *g, mf_store *s, size_t m, double *recall)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "recall: built without the FAISS C API");
}

#endif
