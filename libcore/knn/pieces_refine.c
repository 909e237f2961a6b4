/* pieces_refine.c - a refinement round of the graph in pieces (see mf/knn_pieces.h).
 *
 * The candidates of a row are those of refine.c: its neighbours, its first REFINE_REVERSE_CAP
 * reverse edges (sources in increasing row order) and the first fan neighbours of its
 * first fan neighbours, all from the previous round's graph. Each is scored exactly
 * (mf_knn_dot of the normalised float32 rows) and kept under the total order of
 * mf_knn_offer, so a row's result depends only on the previous graph: the same for any
 * number of shards, waves or threads.
 *
 * Why this needs no random reads: a shard holds its own rows' embeddings (one contiguous
 * range of the store) and the list of (row, candidate) pairs grouped by candidate; one
 * pass over the store then meets every candidate once, in order. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "knn_internal.h"
#include "mf/knn_pieces.h"
#include "mf/log.h"
#include "mf/progress.h"
#include "mf/status.h"
#include "mf/store.h"


void mf_knn_graph_id(char out[32], const char *job)
{
    uint64_t h = mf_knn_fnv(MF_KNN_FNV_BASIS, job ? job : "", job ? strlen(job) : 0);
    snprintf(out, 32, "%016llx", (unsigned long long)h);
}

/* One wave: rows [w0, w1) of the graph. */
typedef struct {
    const mf_knn_graph *g;
    mf_knn_part *part;
    size_t w0, w1, part0; /* part0: the part's row of w0 */
    int dim, nt;
    float *x;             /* (w1 - w0, dim) the wave's rows */
    size_t *istart;       /* (n + 1) pairs grouped by candidate */
    int32_t *irow;        /* wave row (minus w0) of each pair */
    mf_knn_meter *meter;
} wave;

static int load_own(void *ctx, size_t start, size_t n, float *x)
{
    wave *w = ctx;
    memcpy(w->x + (start - w->w0) * w->dim, x, n * w->dim * sizeof(float));
    return 0;
}

/* Score the pairs whose candidate is in this block; thread t takes rows i % nt == t. */
static int score_block(void *ctx, size_t start, size_t n, float *x)
{
    wave *w = ctx;
    int k = w->part->k, dim = w->dim;
#pragma omp parallel num_threads(w->nt)
    {
        int t = omp_get_thread_num();
        uint64_t done = 0;
        for (size_t c = start; c < start + n; c++)
            for (size_t e = w->istart[c]; e < w->istart[c + 1]; e++) {
                size_t i = (size_t)w->irow[e];
                if ((int)(i % w->nt) != t)
                    continue;
                size_t lr = w->part0 + i;
                mf_knn_offer(w->part->nbr + lr * k, w->part->sim + lr * k, k, (int64_t)c,
                             mf_knn_dot(w->x + i * dim, x + (c - start) * dim, dim));
                done++;
            }
        mf_knn_meter_add(w->meter, done);
    }
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Each wave row's candidates, sorted and distinct (the row itself left out): CSR. */
static int candidates(const mf_knn_graph *g, size_t w0, size_t w1, int fan, size_t **cs_out,
                      int32_t **cand_out)
{
    size_t n = g->n, m = w1 - w0, k = (size_t)g->k, f = (size_t)fan < k ? (size_t)fan : k;
    size_t per = k + REFINE_REVERSE_CAP + f * f;
    size_t *rs = calloc(m + 1, sizeof *rs), *cs = calloc(m + 1, sizeof *cs);
    int32_t *rev = NULL, *cand = malloc(m * per * sizeof *cand + 1);
    int rc = rs && cs && cand ? 0 : MF_ERR_NOMEM;
    /* reverse edges into the wave, capped, sources increasing */
    for (size_t c = 0; rc == 0 && c < n * k; c++)
        if (g->nbr[c] >= (int64_t)w0 && g->nbr[c] < (int64_t)w1 &&
            rs[g->nbr[c] - w0 + 1] < REFINE_REVERSE_CAP)
            rs[g->nbr[c] - w0 + 1]++;
    for (size_t i = 0; rc == 0 && i < m; i++)
        rs[i + 1] += rs[i];
    if (rc == 0 && !(rev = malloc(rs[m] * sizeof *rev + 1)))
        rc = MF_ERR_NOMEM;
    size_t *fill = rc == 0 ? calloc(m, sizeof *fill) : NULL;
    for (size_t c = 0; fill && c < n * k; c++) {
        int64_t d = g->nbr[c];
        if (d >= (int64_t)w0 && d < (int64_t)w1 && fill[d - w0] < rs[d - w0 + 1] - rs[d - w0])
            rev[rs[d - w0] + fill[d - w0]++] = (int32_t)(c / k);
    }
    if (rc == 0 && !fill)
        rc = MF_ERR_NOMEM;
    free(fill);
#pragma omp parallel for schedule(dynamic, 256) if (rc == 0)
    for (size_t i = 0; i < m; i++) {
        int32_t *o = cand + i * per;
        size_t q = 0;
        const int64_t *row = g->nbr + (w0 + i) * k;
        for (size_t r = 0; r < k && row[r] >= 0; r++)
            o[q++] = (int32_t)row[r];
        for (size_t e = rs[i]; e < rs[i + 1]; e++)
            o[q++] = rev[e];
        for (size_t r = 0; r < f && row[r] >= 0; r++)
            for (size_t u = 0; u < f && g->nbr[row[r] * k + u] >= 0; u++)
                o[q++] = (int32_t)g->nbr[row[r] * k + u];
        qsort(o, q, sizeof *o, cmp_i32);
        size_t d = 0;
        for (size_t e = 0; e < q; e++)
            if ((!d || o[e] != o[d - 1]) && o[e] != (int32_t)(w0 + i))
                o[d++] = o[e];
        cs[i + 1] = d;
    }
    free(rs), free(rev);
    if (rc < 0) {
        free(cs), free(cand);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for refinement candidates");
    }
    /* compact: row i's candidates were at cand + i * per */
    for (size_t i = 0; i < m; i++) {
        memmove(cand + cs[i], cand + i * per, cs[i + 1] * sizeof *cand);
        cs[i + 1] += cs[i];
    }
    *cs_out = cs;
    *cand_out = cand;
    return 0;
}

/* Group the wave's pairs by candidate: istart[n + 1], irow[]. */
static int group_by_candidate(wave *w, const size_t *cs, const int32_t *cand)
{
    size_t n = w->g->n, m = w->w1 - w->w0;
    w->istart = calloc(n + 1, sizeof *w->istart);
    w->irow = malloc(cs[m] * sizeof *w->irow + 1);
    if (!w->istart || !w->irow)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for refinement pairs");
    for (size_t e = 0; e < cs[m]; e++)
        w->istart[cand[e] + 1]++;
    for (size_t c = 0; c < n; c++)
        w->istart[c + 1] += w->istart[c];
    size_t *fill = malloc(n * sizeof *fill);
    if (!fill)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for refinement pairs");
    memcpy(fill, w->istart, n * sizeof *fill);
    for (size_t i = 0; i < m; i++)
        for (size_t e = cs[i]; e < cs[i + 1]; e++)
            w->irow[fill[cand[e]]++] = (int32_t)i;
    free(fill);
    return 0;
}

static int run_wave(wave *w, mf_store *s)
{
    size_t m = w->w1 - w->w0, *cs = NULL;
    int32_t *cand = NULL;
    int rc = candidates(w->g, w->w0, w->w1, REFINE_FAN, &cs, &cand);
    if (rc == 0)
        rc = group_by_candidate(w, cs, cand);
    size_t first = w->g->n, end = 0;
    for (size_t e = 0; rc == 0 && e < cs[m]; e++) {
        first = (size_t)cand[e] < first ? (size_t)cand[e] : first;
        end = (size_t)cand[e] + 1 > end ? (size_t)cand[e] + 1 : end;
    }
    free(cs), free(cand);
    if (rc == 0 && !(w->x = malloc(m * w->dim * sizeof *w->x + 1)))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for the refined rows");
    if (rc == 0)
        rc = mf_knn_stream_rows(s, w->w0, w->w1, load_own, w);
    if (rc == 0 && end > first)
        rc = mf_knn_stream_rows(s, first, end, score_block, w);
    free(w->x), free(w->istart), free(w->irow);
    w->x = NULL, w->istart = NULL, w->irow = NULL;
    return rc;
}

int mf_knn_refine_shard(mf_knn_part **out, const mf_knn_graph *g, const char *graph_id,
                        mf_store *s, int shard, int shards, size_t mem_limit, int progress)
{
    size_t n = g->n, k = (size_t)g->k;
    int dim = mf_store_dim(s);
    if (shards < 1 || shard < 0 || shard >= shards)
        return mf_set_error(MF_ERR_ARG, "shard %d/%d: need 0 <= K < N", shard, shards);
    if (mf_store_rows(s) != n)
        return mf_set_error(MF_ERR_MISMATCH, "the graph has %zu rows, the store '%s' %zu", n,
                            mf_store_path(s), (size_t)mf_store_rows(s));
    size_t lo = n * (size_t)shard / shards, hi = n * (size_t)(shard + 1) / shards, m = hi - lo;
    size_t per_row = (size_t)dim * 4 + (k + REFINE_REVERSE_CAP + REFINE_FAN * REFINE_FAN) * 8 +
                     k * 12 + 16;
    size_t fixed = n * k * 12 + (n + 1) * 8 * 2 + m * (k * 12 + 8) + MF_KNN_OVERHEAD;
    size_t cap = m ? m : 1;
    if (mem_limit) {
        if (mem_limit < fixed + per_row * 1024)
            return mf_set_error(MF_ERR_LIMIT,
                                "--mem-limit %.2f GB is too small to refine shard %d/%d: it "
                                "needs at least %.2f GB",
                                mem_limit / 1e9, shard, shards, (fixed + per_row * 1024) / 1e9);
        cap = (mem_limit - fixed) / per_row < cap ? (mem_limit - fixed) / per_row : cap;
    }
    mf_knn_part *part = calloc(1, sizeof *part);
    if (!part)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    *part = (mf_knn_part){.n = n, .m = m, .k = g->k, .shard = shard, .shards = shards};
    snprintf(part->fingerprint, sizeof part->fingerprint, "%s", g->fingerprint);
    snprintf(part->plan, sizeof part->plan, "%s", graph_id);
    /* the index names the rounds: "IVFPieces2048x4" -> "...+r1" -> "...+r2" */
    const char *r = strstr(g->index, "+r");
    snprintf(part->index, sizeof part->index, "%.*s+r%d", r ? (int)(r - g->index) : 48,
             g->index, r ? atoi(r + 2) + 1 : 1);
    part->rows = malloc((m ? m : 1) * sizeof *part->rows);
    part->nbr = malloc((m ? m : 1) * k * sizeof *part->nbr);
    part->sim = malloc((m ? m : 1) * k * sizeof *part->sim);
    int rc = part->rows && part->nbr && part->sim
                 ? 0
                 : mf_set_error(MF_ERR_NOMEM, "out of memory for a refined part");
    for (size_t i = 0; rc == 0 && i < m; i++) {
        part->rows[i] = (int64_t)(lo + i);
        for (size_t t = 0; t < k; t++)
            part->nbr[i * k + t] = -1, part->sim[i * k + t] = -2.0f;
    }
    mf_knn_meter meter = {.per = 1000};
    if (rc == 0 && progress)
        meter.bar = mf_progress_new("graph refine", (uint64_t)m * (k + 60) / 1000, "kpairs",
                                    progress > 1);
    int waves = 0;
    for (size_t w0 = lo; rc == 0 && w0 < hi; w0 += cap, waves++) {
        wave w = {.g = g, .part = part, .w0 = w0, .w1 = hi - w0 < cap ? hi : w0 + cap,
                  .part0 = w0 - lo, .dim = dim, .nt = omp_get_max_threads(), .meter = &meter};
        rc = run_wave(&w, s);
    }
    mf_knn_meter_end(&meter);
    mf_log(MF_LOG_DEBUG, "graph refine %d/%d: rows %zu..%zu in %d waves", shard, shards, lo, hi,
           waves);
    if (rc < 0) {
        mf_knn_part_free(part);
        return rc;
    }
    *out = part;
    return 0;
}
