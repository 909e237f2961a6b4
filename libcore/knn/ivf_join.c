/* ivf_join.c - approximate all-pairs kNN (every row is a query) grouped by inverted list.
 *
 * Why not FAISS's own IVF search: it scans the lists one query at a time with scalar
 * inner products (Debian's generic build), ~10x below what the same flops reach through
 * sgemm. In a self-join, every list is scanned by the ~n nprobe / nlist queries that
 * probe it, so the scan of one list is one matrix product (queries x members). FAISS
 * still does the parts it is good at: spherical k-means for the lists and the exact
 * search of each row's nprobe nearest centroids.
 *
 * Each row's top-k is updated only by the thread that owns the row: no locks, and the
 * candidate order (list by list, member by member) is fixed, so the neighbour lists do
 * not depend on the thread count (a similarity may differ in its last bit, as sgemm's
 * blocking follows the rows a thread owns). */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "knn_internal.h"
#include "mf/log.h"
#include "mf/status.h"

#ifdef MF_HAVE_FAISS
#include <faiss/c_api/Clustering_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/index_factory_c.h>

#define QBLOCK 2048 /* query rows per product: bounds the score buffer */

static int ffail(const char *what)
{
    const char *m = faiss_get_last_error();
    return mf_set_error(MF_ERR_INTERNAL, "FAISS %s failed: %s", what, m ? m : "unknown");
}

/* Spherical k-means on an evenly strided sample; centroids: nlist * dim floats. */
static int train_lists(const float *x, size_t n, int dim, int nlist, float *centroids)
{
    size_t m = (size_t)nlist * 16 < n ? (size_t)nlist * 16 : n;
    float *s = malloc(m * (size_t)dim * sizeof *s);
    if (!s)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for the k-means sample");
    for (size_t i = 0; i < m; i++)
        memcpy(s + i * dim, x + (i * (n / m)) * (size_t)dim, (size_t)dim * sizeof *s);
    FaissClusteringParameters cp;
    faiss_ClusteringParameters_init(&cp);
    cp.niter = 8;
    cp.spherical = 1;
    cp.min_points_per_centroid = 1; /* a small sample is deliberate: no warning */
    cp.max_points_per_centroid = 1 << 30;
    cp.seed = 1234;
    FaissClustering *c = NULL;
    FaissIndex *ip = NULL;
    int rc = 0;
    if (faiss_Clustering_new_with_params(&c, dim, nlist, &cp) ||
        faiss_index_factory(&ip, dim, "Flat", METRIC_INNER_PRODUCT) ||
        faiss_Clustering_train(c, (idx_t)m, s, ip))
        rc = ffail("k-means");
    if (rc == 0) {
        float *cen;
        size_t sz;
        faiss_Clustering_centroids(c, &cen, &sz);
        memcpy(centroids, cen, (size_t)nlist * dim * sizeof *cen);
    }
    if (c)
        faiss_Clustering_free(c);
    if (ip)
        faiss_Index_free(ip);
    free(s);
    return rc;
}

/* probe[i*nprobe + j]: j-th nearest list of row i (the first is its own list). */
static int assign_lists(const float *x, size_t n, int dim, const float *centroids, int nlist,
                        int nprobe, int64_t *probe)
{
    FaissIndex *q;
    if (faiss_index_factory(&q, dim, "Flat", METRIC_INNER_PRODUCT))
        return ffail("creating the list quantizer");
    int rc = faiss_Index_add(q, nlist, centroids) ? ffail("adding centroids") : 0;
    float *d = malloc(65536 * (size_t)nprobe * sizeof *d);
    if (!d)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory assigning lists");
    for (size_t s = 0; rc == 0 && s < n; s += 65536) {
        size_t b = n - s < 65536 ? n - s : 65536;
        if (faiss_Index_search(q, (idx_t)b, x + s * dim, nprobe, d, probe + s * nprobe))
            rc = ffail("assigning lists");
    }
    free(d);
    faiss_Index_free(q);
    return rc;
}

/* CSR of rows grouped by key: start[nlist+1], rows[]; key(i, j) for j < per. */
static int group(size_t n, const int64_t *probe, int per, int stride, int nlist,
                 size_t **start_out, int64_t **rows_out)
{
    size_t *start = calloc((size_t)nlist + 1, sizeof *start);
    int64_t *rows = malloc(n * (size_t)per * sizeof *rows);
    if (!start || !rows) {
        free(start), free(rows);
        return mf_set_error(MF_ERR_NOMEM, "out of memory grouping rows by list");
    }
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < per; j++)
            if (probe[i * stride + j] >= 0)
                start[probe[i * stride + j] + 1]++;
    for (int l = 0; l < nlist; l++)
        start[l + 1] += start[l];
    size_t *fill = malloc((size_t)nlist * sizeof *fill);
    if (!fill) {
        free(start), free(rows);
        return mf_set_error(MF_ERR_NOMEM, "out of memory grouping rows by list");
    }
    memcpy(fill, start, (size_t)nlist * sizeof *fill);
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < per; j++)
            if (probe[i * stride + j] >= 0)
                rows[fill[probe[i * stride + j]]++] = (int64_t)i;
    free(fill);
    *start_out = start;
    *rows_out = rows;
    return 0;
}

/* Insert candidate (s, j) into row i's descending top-k if it belongs there. */
static inline void topk_push(int64_t *nb, float *sm, int k, int64_t j, float s)
{
    if (s <= sm[k - 1])
        return;
    int r = k - 1;
    while (r > 0 && sm[r - 1] < s) {
        sm[r] = sm[r - 1];
        nb[r] = nb[r - 1];
        r--;
    }
    sm[r] = s;
    nb[r] = j;
}

/* Per-thread scratch for list scans, allocated before the parallel region. */
typedef struct {
    float *bm;    /* (maxm, dim) gathered members */
    float *bq;    /* (QBLOCK, dim) gathered queries */
    float *score; /* (QBLOCK, maxm) products */
    int64_t *sel; /* (maxq) this thread's queries of the current list */
} scratch;

static void gather(const float *x, int dim, const int64_t *rows, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * dim, x + rows[i] * (size_t)dim, (size_t)dim * sizeof *out);
}

/* Scan list members `mem` against the query rows `qry` (all owned by this thread). */
static void scan_list(mf_knn_graph *g, const float *x, int dim, const int64_t *mem,
                      size_t nm, const int64_t *qry, size_t nq, scratch *w)
{
    int k = g->k;
    gather(x, dim, mem, nm, w->bm);
    for (size_t q0 = 0; q0 < nq; q0 += QBLOCK) {
        size_t b = nq - q0 < QBLOCK ? nq - q0 : QBLOCK;
        gather(x, dim, qry + q0, b, w->bq);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)nm, dim, 1.0f,
                    w->bq, dim, w->bm, dim, 0.0f, w->score, (int)nm);
        for (size_t i = 0; i < b; i++) {
            int64_t row = qry[q0 + i];
            int64_t *nb = g->nbr + (size_t)row * k;
            float *sm = g->sim + (size_t)row * k;
            const float *sc = w->score + i * nm;
            for (size_t j = 0; j < nm; j++)
                if (mem[j] != row)
                    topk_push(nb, sm, k, mem[j], sc[j]);
        }
    }
}

static void free_scratch(scratch *w, int nt)
{
    for (int t = 0; w && t < nt; t++)
        free(w[t].bm), free(w[t].bq), free(w[t].score), free(w[t].sel);
    free(w);
}

static scratch *alloc_scratch(int nt, size_t maxm, size_t maxq, int dim)
{
    scratch *w = calloc((size_t)nt, sizeof *w);
    for (int t = 0; w && t < nt; t++) {
        w[t].bm = malloc(maxm * dim * sizeof(float));
        w[t].bq = malloc((size_t)QBLOCK * dim * sizeof(float));
        w[t].score = malloc((size_t)QBLOCK * maxm * sizeof(float));
        w[t].sel = malloc(maxq * sizeof(int64_t));
        if (!w[t].bm || !w[t].bq || !w[t].score || !w[t].sel) {
            free_scratch(w, nt);
            return NULL;
        }
    }
    return w;
}

/* Thread t owns the rows with row % nt == t and scans every list for them with a
 * single-threaded sgemm: no two threads touch one row, no BLAS threads compete with
 * OpenMP's, and each row sees its candidates in list order whatever nt is. */
static int join(mf_knn_graph *g, const float *x, int dim, int nlist, int nprobe,
                const int64_t *probe)
{
    size_t n = g->n, *ms = NULL, *qs = NULL, maxm = 1, maxq = 1;
    int64_t *mrows = NULL, *qrows = NULL;
    int rc = group(n, probe, 1, nprobe, nlist, &ms, &mrows);
    if (rc == 0)
        rc = group(n, probe, nprobe, nprobe, nlist, &qs, &qrows);
    for (int l = 0; rc == 0 && l < nlist; l++) {
        maxm = ms[l + 1] - ms[l] > maxm ? ms[l + 1] - ms[l] : maxm;
        maxq = qs[l + 1] - qs[l] > maxq ? qs[l + 1] - qs[l] : maxq;
    }
    int nt = omp_get_max_threads();
    scratch *w = rc == 0 ? alloc_scratch(nt, maxm, maxq, dim) : NULL;
    if (rc == 0 && !w)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for list scans (largest list %zu "
                          "rows, %d threads)", maxm, nt);
    int blas_threads = openblas_get_num_threads();
    if (rc == 0) {
        openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
        {
            int t = omp_get_thread_num();
            for (int l = 0; l < nlist; l++) {
                size_t nq = 0;
                for (size_t i = qs[l]; i < qs[l + 1]; i++)
                    if (qrows[i] % nt == t)
                        w[t].sel[nq++] = qrows[i];
                if (nq && ms[l + 1] > ms[l])
                    scan_list(g, x, dim, mrows + ms[l], ms[l + 1] - ms[l], w[t].sel, nq,
                              &w[t]);
            }
        }
        openblas_set_num_threads(blas_threads);
    }
    free_scratch(w, nt);
    free(ms), free(qs), free(mrows), free(qrows);
    return rc;
}

int mf_knn_ivf_join(mf_knn_graph *g, const float *x, int dim, int nlist, int nprobe,
                    double *t_train)
{
    size_t n = g->n, cells;
    if (nlist < 1 || (size_t)nlist > n)
        return mf_set_error(MF_ERR_ARG, "kNN: %d lists for %zu rows", nlist, n);
    if (nprobe > nlist)
        nprobe = nlist;
    if (mf_size_mul(n, (size_t)nprobe * sizeof(int64_t), &cells, "list assignments") < 0)
        return MF_ERR_NOMEM;
    float *cen = malloc((size_t)nlist * dim * sizeof *cen);
    int64_t *probe = malloc(cells);
    int rc = cen && probe ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory for lists");
    if (rc == 0)
        rc = train_lists(x, n, dim, nlist, cen);
    if (rc == 0)
        rc = assign_lists(x, n, dim, cen, nlist, nprobe, probe);
    if (t_train)
        *t_train = 0;
    if (rc == 0)
        rc = join(g, x, dim, nlist, nprobe, probe);
    free(cen), free(probe);
    return rc;
}

#else

int mf_knn_ivf_join(mf_knn_graph *g, const float *x, int dim, int nlist, int nprobe,
                    double *t_train)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "kNN: built without the FAISS C API");
}

#endif
