/* knn.c - kNN graph through the FAISS C API (see mf/knn.h).
 *
 * The index holds its own copy of the vectors; queries are taken from the caller's array
 * in batches, so peak memory is about 2 n dim floats plus the graph. */
#include "mf/knn.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knn_internal.h"
#include "mf/log.h"
#include "mf/progress.h"
#include "mf/status.h"

#ifdef MF_HAVE_FAISS
#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>
#endif

mf_knn_params mf_knn_default_params(void)
{
    return (mf_knn_params){.k = 30, .batch = 8192, .exact_below = 50000, .recall_sample = 1000};
}

void mf_knn_normalize(float *x, size_t n, int dim)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float *r = x + i * (size_t)dim;
        double s = 0;
        for (int j = 0; j < dim; j++)
            s += (double)r[j] * r[j];
        /* A zero or non-finite row (NaN/inf from a broken input) becomes all zeros, so
         * it matches nothing instead of poisoning inner products. */
        float inv = s > 0 && isfinite(s) ? (float)(1.0 / sqrt(s)) : 0.f;
        for (int j = 0; j < dim; j++)
            r[j] = inv ? r[j] * inv : 0.f;
    }
}

void mf_knn_free(mf_knn_graph *g)
{
    if (!g)
        return;
    free(g->nbr);
    free(g->sim);
    free(g);
}

/* Allocate an n x k graph with every entry empty. */
int mf_knn_graph_alloc(mf_knn_graph **out, size_t n, int k)
{
    size_t cells, b64, b32;
    if (k < 1 || mf_size_mul(n, (size_t)k, &cells, "kNN graph") < 0 ||
        mf_size_mul(cells, 8, &b64, "kNN graph") < 0 ||
        mf_size_mul(cells, 4, &b32, "kNN graph") < 0)
        return k < 1 ? mf_set_error(MF_ERR_ARG, "kNN graph: k must be >= 1") : MF_ERR_NOMEM;
    mf_knn_graph *g = calloc(1, sizeof *g);
    if (g) {
        g->nbr = malloc(b64 ? b64 : 1);
        g->sim = malloc(b32 ? b32 : 1);
    }
    if (!g || !g->nbr || !g->sim) {
        mf_knn_free(g);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for a kNN graph of %zu x %d", n, k);
    }
    g->n = n;
    g->k = k;
    for (size_t i = 0; i < cells; i++)
        g->nbr[i] = -1, g->sim[i] = -2.0f;
    *out = g;
    return 0;
}

int mf_knn_from_arrays(mf_knn_graph **out, size_t n, int k, const int64_t *nbr,
                       const float *sim)
{
    mf_knn_graph *g;
    int rc = mf_knn_graph_alloc(&g, n, k);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n * (size_t)k; i++) {
        if (nbr[i] < -1 || nbr[i] >= (int64_t)n)
            return mf_knn_free(g), mf_set_error(MF_ERR_ARG,
                                                "kNN graph: neighbour %lld of "
                                                "row %zu out of range",
                                                (long long)nbr[i], i / k);
        g->nbr[i] = nbr[i];
        g->sim[i] = nbr[i] < 0 ? -2.0f : sim[i];
    }
    snprintf(g->index, sizeof g->index, "given");
    *out = g;
    return 0;
}

void mf_knn_fingerprint(char out[64], size_t n, int dim, const float *magnitude)
{
    uint64_t h = mf_knn_fnv(MF_KNN_FNV_BASIS, magnitude, magnitude ? n * sizeof(float) : 0);
    snprintf(out, 64, "rows=%zu dim=%d fnv1a64=%016llx", n, dim, (unsigned long long)h);
}

#ifdef MF_HAVE_FAISS

/* Copy the first k results that are not the query itself into the graph row. */
static void store_row(mf_knn_graph *g, size_t row, const idx_t *lab, const float *dist, int kk)
{
    int64_t *nb = g->nbr + row * (size_t)g->k;
    float *sm = g->sim + row * (size_t)g->k;
    int r = 0;
    for (int j = 0; j < kk && r < g->k; j++) {
        if (lab[j] < 0 || (size_t)lab[j] == row)
            continue;
        nb[r] = lab[j];
        sm[r++] = dist[j];
    }
}

/* Automatic index: exact below the threshold, else the list-grouped IVF join
 * (ivf_join.c) with ~4 sqrt(n) lists rounded to a power of two. */
static void choose_index(char *buf, size_t len, size_t n, const mf_knn_params *p)
{
    if (p->index && *p->index) {
        snprintf(buf, len, "%s", p->index);
        return;
    }
    if (n < p->exact_below) {
        snprintf(buf, len, "Flat");
        return;
    }
    size_t nlist = 1;
    while (nlist * 2 <= 4 * sqrt((double)n) && nlist < 65536)
        nlist *= 2;
    snprintf(buf, len, "IVFJoin%zu", nlist);
}

/* Train on an evenly strided sample: FAISS's k-means needs ~40 points per list at most;
 * more only costs time. */
static int train_index(FaissIndex *idx, const float *x, size_t n, int dim)
{
    if (faiss_Index_is_trained(idx))
        return 0;
    size_t m = n < 65536 ? n : 65536;
    float *s = mf_knn_strided_sample(x, n, dim, m);
    if (!s)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for the index training sample");
    int rc = faiss_Index_train(idx, (idx_t)m, s) ? mf_knn_faiss_fail("training") : 0;
    free(s);
    return rc;
}

static int set_search_params(FaissIndex *idx, const char *factory, const mf_knn_params *p)
{
    FaissParameterSpace *ps;
    if (faiss_ParameterSpace_new(&ps))
        return mf_knn_faiss_fail("parameter space");
    int rc = 0;
    if (strstr(factory, "IVF")) {
        int nprobe = p->nprobe > 0 ? p->nprobe : 32;
        if (faiss_ParameterSpace_set_index_parameter(ps, idx, "nprobe", nprobe))
            rc = mf_knn_faiss_fail("setting nprobe");
    }
    if (rc == 0 && strstr(factory, "HNSW")) {
        int ef = p->ef > 0 ? p->ef : (2 * p->k > 64 ? 2 * p->k : 64);
        if (faiss_ParameterSpace_set_index_parameter(ps, idx, "efSearch", ef))
            rc = mf_knn_faiss_fail("setting efSearch");
    }
    faiss_ParameterSpace_free(ps);
    return rc;
}

/* Search rows [0,n) of x in batches into g. */
static int search_all(const FaissIndex *idx, const float *x, size_t n, int dim, mf_knn_graph *g,
                      size_t batch)
{
    int kk = g->k + 1;
    idx_t *lab = malloc(batch * kk * sizeof *lab);
    float *dist = malloc(batch * kk * sizeof *dist);
    int rc = 0;
    if (!lab || !dist)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for search results");
    for (size_t s = 0; rc == 0 && s < n; s += batch) {
        size_t b = n - s < batch ? n - s : batch;
        if (faiss_Index_search(idx, (idx_t)b, x + s * dim, kk, dist, lab)) {
            rc = mf_knn_faiss_fail("search");
            break;
        }
        for (size_t i = 0; i < b; i++)
            store_row(g, s + i, lab + i * kk, dist + i * kk, kk);
        mf_log(MF_LOG_DEBUG, "knn: searched %zu/%zu rows", s + b, n);
    }
    free(lab);
    free(dist);
    return rc;
}

/* Merge two descending top-k lists (a: current, b: candidates) into a. */
static void merge_topk(int64_t *an, float *as, const idx_t *bn, const float *bs, int k,
                       int64_t self)
{
    int64_t tn[512];
    float ts[512];
    int i = 0, j = 0, r = 0;
    while (r < k) {
        while (j < k + 1 && (bn[j] < 0 || bn[j] == self))
            j++;
        int take_b = j < k + 1 && (i >= k || an[i] < 0 || bs[j] > as[i]);
        if (take_b)
            tn[r] = bn[j], ts[r++] = bs[j++];
        else if (i < k && an[i] >= 0)
            tn[r] = an[i], ts[r++] = as[i++];
        else
            break;
    }
    for (int t = 0; t < k; t++)
        an[t] = t < r ? tn[t] : -1, as[t] = t < r ? ts[t] : -2.0f;
}

/* recall@k of g on m strided query rows, against an exact scan in blocks of rows given
 * by `rows` (each block is a temporary flat index: no second full copy of the data). */
int mf_knn_recall(const mf_knn_graph *g, int dim, size_t m, mf_knn_rows_fn rows, void *ctx,
                  double *recall)
{
    size_t n = g->n;
    int k = g->k, rc = 0;
    if (k > 511)
        return *recall = -1, 0;
    size_t block = 65536;
    float *q = malloc(m * dim * sizeof *q), *es = malloc(m * k * sizeof *es);
    int64_t *en = malloc(m * k * sizeof *en);
    idx_t *lab = malloc(m * (k + 1) * sizeof *lab);
    float *dist = malloc(m * (k + 1) * sizeof *dist);
    if (!q || !es || !en || !lab || !dist)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for the recall check");
    for (size_t i = 0; rc == 0 && i < m; i++) {
        const float *r;
        if ((rc = rows(ctx, i * (n / m), 1, &r)) == 0)
            memcpy(q + i * dim, r, (size_t)dim * sizeof *q);
        for (int t = 0; t < k; t++)
            en[i * k + t] = -1, es[i * k + t] = -2.0f;
    }
    for (size_t s = 0; rc == 0 && s < n; s += block) {
        size_t b = n - s < block ? n - s : block;
        const float *xb;
        if ((rc = rows(ctx, s, b, &xb)) < 0)
            break;
        FaissIndex *flat;
        if (faiss_index_factory(&flat, dim, "Flat", METRIC_INNER_PRODUCT)) {
            rc = mf_knn_faiss_fail("creating the exact index");
            break;
        }
        if (faiss_Index_add(flat, (idx_t)b, xb) ||
            faiss_Index_search(flat, (idx_t)m, q, k + 1, dist, lab))
            rc = mf_knn_faiss_fail("exact search");
        faiss_Index_free(flat);
        for (size_t i = 0; rc == 0 && i < m; i++) {
            for (int t = 0; t <= k; t++)
                lab[i * (k + 1) + t] += lab[i * (k + 1) + t] >= 0 ? (idx_t)s : 0;
            merge_topk(en + i * k, es + i * k, lab + i * (k + 1), dist + i * (k + 1), k,
                       (int64_t)(i * (n / m)));
        }
    }
    if (rc == 0) {
        size_t hit = 0, total = 0;
        for (size_t i = 0; i < m; i++) {
            const int64_t *an = g->nbr + (i * (n / m)) * (size_t)k;
            for (int t = 0; t < k; t++) {
                if (en[i * k + t] < 0)
                    continue;
                total++;
                for (int u = 0; u < k; u++)
                    if (an[u] == en[i * k + t]) {
                        hit++;
                        break;
                    }
            }
        }
        *recall = total ? (double)hit / total : 1.0;
    }
    free(q), free(es), free(en), free(lab), free(dist);
    return rc;
}

typedef struct {
    const float *x;
    int dim;
} memory_rows;

static int rows_in_memory(void *ctx, size_t start, size_t n, const float **out)
{
    const memory_rows *m = ctx;
    *out = m->x + start * (size_t)m->dim;
    return 0;
}

/* Build, fill and free a FAISS index of x; t_trained/t_added: when those steps ended. */
static int faiss_search_graph(mf_knn_graph *g, const char *factory, const float *x, size_t n,
                              int dim, const mf_knn_params *p, double *t_trained,
                              double *t_added)
{
    FaissIndex *idx = NULL;
    if (faiss_index_factory(&idx, dim, factory, METRIC_INNER_PRODUCT))
        return mf_set_error(MF_ERR_ARG, "FAISS cannot build index '%s': %s", factory,
                            faiss_get_last_error());
    int rc = train_index(idx, x, n, dim);
    *t_trained = mf_now();
    if (rc == 0 && faiss_Index_add(idx, (idx_t)n, x))
        rc = mf_knn_faiss_fail("adding vectors");
    *t_added = mf_now();
    if (rc == 0)
        rc = set_search_params(idx, factory, p);
    if (rc == 0)
        rc = search_all(idx, x, n, dim, g, p->batch ? p->batch : 8192);
    faiss_Index_free(idx);
    return rc;
}

int mf_knn_build(mf_knn_graph **out, const float *x, size_t n, int dim, const mf_knn_params *p,
                 mf_knn_info *info)
{
    mf_knn_info dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof *info);
    if (n < 2 || dim < 1 || p->k < 1 || (size_t)p->k >= n)
        return mf_set_error(MF_ERR_ARG, "kNN: need k (%d) in [1, rows-1] with rows = %zu", p->k,
                            n);
    if (n > ((size_t)1 << 40))
        return mf_set_error(MF_ERR_LIMIT, "kNN: %zu rows is beyond the limit", n);
    char factory[64];
    choose_index(factory, sizeof factory, n, p);
    mf_knn_graph *g;
    int rc = mf_knn_graph_alloc(&g, n, p->k);
    if (rc < 0)
        return rc;
    snprintf(g->index, sizeof g->index, "%s", factory);
    double t0 = mf_now(), t1 = t0, t2 = t0;
    if (strncmp(factory, "IVFJoin", 7) == 0) {
        int nlist = atoi(factory + 7);
        int nprobe = p->nprobe > 0 ? p->nprobe : mf_knn_join_nprobe(nlist);
        int rounds = p->refine > 0 ? p->refine : MF_KNN_REFINE_ROUNDS;
        rc = mf_knn_ivf_join(g, x, dim, nlist, nprobe, rounds, p->progress);
    } else {
        rc = faiss_search_graph(g, factory, x, n, dim, p, &t1, &t2);
    }
    double t3 = mf_now();
    info->exact = strcmp(factory, "Flat") == 0;
    info->recall = info->exact ? 1.0 : -1.0;
    if (rc == 0 && !info->exact && p->recall_sample > 0) {
        size_t m = p->recall_sample < n ? p->recall_sample : n;
        info->recall_queries = m;
        memory_rows mr = {x, dim};
        rc = mf_knn_recall(g, dim, m, rows_in_memory, &mr, &info->recall);
    }
    info->seconds_train = t1 - t0;
    info->seconds_add = t2 - t1;
    info->seconds_search = t3 - t2;
    info->seconds_recall = mf_now() - t3;
    if (rc < 0) {
        mf_knn_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

#else /* !MF_HAVE_FAISS */

int mf_knn_build(mf_knn_graph **out, const float *x, size_t n, int dim, const mf_knn_params *p,
                 mf_knn_info *info)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "kNN: built without the FAISS C API "
                                            "(run scripts/setup.sh)");
}

#endif
