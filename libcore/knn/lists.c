/* lists.c - the inverted lists of the kNN join (see knn_internal.h): FAISS spherical
 * k-means, oversized lists split, every row's nearest lists, rows grouped by list. */
#include <cblas.h>
#include <limits.h>
#include <math.h>
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

int mf_knn_faiss_fail(const char *what)
{
    const char *m = faiss_get_last_error();
    return mf_set_error(MF_ERR_INTERNAL, "FAISS %s failed: %s", what, m ? m : "unknown error");
}

/* m rows of x at an even stride (m <= n), copied; NULL when out of memory. */
float *mf_knn_strided_sample(const float *x, size_t n, int dim, size_t m)
{
    float *s = malloc(m * (size_t)dim * sizeof *s);
    for (size_t i = 0; s && i < m; i++)
        memcpy(s + i * dim, x + (i * (n / m)) * (size_t)dim, (size_t)dim * sizeof *s);
    return s;
}

int mf_knn_kmeans(const float *x, size_t n, int dim, int k, int per_centroid, int niter,
                  float *centroids)
{
    size_t m = (size_t)k * (size_t)per_centroid < n ? (size_t)k * (size_t)per_centroid : n;
    float *s = mf_knn_strided_sample(x, n, dim, m);
    if (!s)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for the k-means sample");
    FaissClusteringParameters cp;
    faiss_ClusteringParameters_init(&cp);
    cp.niter = niter;
    cp.spherical = 1;
    cp.min_points_per_centroid = 1; /* a small sample is deliberate: no warning */
    cp.max_points_per_centroid = 1 << 30;
    cp.seed = 1234;
    FaissClustering *c = NULL;
    FaissIndex *ip = NULL;
    int rc = 0;
    if (faiss_Clustering_new_with_params(&c, dim, k, &cp) ||
        faiss_index_factory(&ip, dim, "Flat", METRIC_INNER_PRODUCT) ||
        faiss_Clustering_train(c, (idx_t)m, s, ip))
        rc = mf_knn_faiss_fail("k-means");
    if (rc == 0) {
        float *cen;
        size_t sz;
        faiss_Clustering_centroids(c, &cen, &sz);
        memcpy(centroids, cen, (size_t)k * dim * sizeof *cen);
    }
    if (c)
        faiss_Clustering_free(c);
    if (ip)
        faiss_Index_free(ip);
    free(s);
    return rc;
}

/* The lists' centroids: k-means on 16 sample rows per list. */
static int train_lists(const float *x, size_t n, int dim, int nlist, float *centroids)
{
    return mf_knn_kmeans(x, n, dim, nlist, 16, 8, centroids);
}

/* (declared below) */
static int split_large_lists(const float *x, size_t n, int dim, float **cen, int *nlist);

int mf_knn_make_lists(const float *x, size_t n, int dim, int nlist, float **centroids,
                      int *nlist_out)
{
    float *cen = malloc((size_t)nlist * dim * sizeof *cen);
    if (!cen)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for lists");
    int rc = train_lists(x, n, dim, nlist, cen);
    if (rc == 0)
        rc = split_large_lists(x, n, dim, &cen, &nlist);
    if (rc < 0) {
        free(cen);
        return rc;
    }
    *centroids = cen;
    *nlist_out = nlist;
    return 0;
}

/* k-means leaves a tight blob in one list (on face data: the low-quality faces that all
 * drift towards the same 'unrecognisable' direction; 31k rows in one list of 2048 at 1M
 * rows, 64x the mean), and a list's cost in the join grows with the square of its size.
 * So every list holding more than SPLIT_OVER times the mean share of a sample is split
 * into parts of about the mean size by a k-means of its own sample rows. *cen is
 * replaced and *nlist grows. */
#define SPLIT_SAMPLE 64 /* sample rows per list */
#define SPLIT_OVER 3
static int split_large_lists(const float *x, size_t n, int dim, float **cen, int *nlist)
{
    int nl = *nlist, extra = 0, rc = 0;
    size_t m = (size_t)nl * SPLIT_SAMPLE < n ? (size_t)nl * SPLIT_SAMPLE : n, most = 0;
    double mean = (double)m / nl;
    float *s = mf_knn_strided_sample(x, n, dim, m), *part = NULL, *nc = NULL, *pc = NULL;
    int32_t *lab = malloc(m * sizeof *lab);
    size_t *cnt = calloc((size_t)nl, sizeof *cnt);
    if (!s || !lab || !cnt)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory splitting lists");
    if (rc == 0)
        rc = mf_knn_assign_lists(s, m, dim, *cen, nl, 1, lab);
    for (size_t i = 0; rc == 0 && i < m; i++)
        cnt[lab[i]]++;
    for (int l = 0; rc == 0 && l < nl; l++)
        if (cnt[l] > SPLIT_OVER * mean) {
            extra += (int)ceil(cnt[l] / mean) - 1;
            most = cnt[l] > most ? cnt[l] : most;
        }
    if (rc == 0 && extra > 0) {
        nc = malloc(((size_t)nl + extra) * dim * sizeof *nc);
        part = malloc(most * (size_t)dim * sizeof *part);
        pc = malloc(most * (size_t)dim * sizeof *pc);
        if (!nc || !part || !pc)
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory splitting lists");
    }
    int next = nl;
    for (int l = 0; rc == 0 && extra > 0 && l < nl; l++) {
        memcpy(nc + (size_t)l * dim, *cen + (size_t)l * dim, (size_t)dim * sizeof *nc);
        if (cnt[l] <= SPLIT_OVER * mean)
            continue;
        size_t pm = 0;
        for (size_t i = 0; i < m; i++)
            if (lab[i] == l)
                memcpy(part + pm++ * dim, s + i * dim, (size_t)dim * sizeof *part);
        int parts = (int)ceil(cnt[l] / mean);
        rc = mf_knn_kmeans(part, pm, dim, parts, INT_MAX, 8, pc); /* every sample row */
        /* part 0 keeps the list's number, the others are appended */
        memcpy(nc + (size_t)l * dim, pc, (size_t)dim * sizeof *nc);
        memcpy(nc + (size_t)next * dim, pc + dim, (size_t)(parts - 1) * dim * sizeof *nc);
        next += parts - 1;
    }
    if (rc == 0 && extra > 0) {
        mf_log(MF_LOG_DEBUG, "knn: split oversized lists: %d -> %d lists", nl, nl + extra);
        free(*cen);
        *cen = nc, nc = NULL;
        *nlist = nl + extra;
    }
    free(s), free(lab), free(cnt), free(part), free(pc), free(nc);
    return rc;
}

/* Is list a nearer than list b by score s? Ties go to the lower number: a total order,
 * so the selection below is deterministic. */
static inline int nearer(const float *s, int a, int b)
{
    return s[a] > s[b] || (s[a] == s[b] && a < b);
}

/* Put the nprobe nearest of nlist lists by score s first in idx (filled here), the
 * nearest of all at idx[0]; the order of the others is unspecified. Quickselect. */
static void select_lists(const float *s, int nlist, int nprobe, int *idx)
{
    for (int l = 0; l < nlist; l++)
        idx[l] = l;
    int lo = 0, hi = nlist - 1, kth = nprobe - 1;
    while (lo < hi) {
        int pivot = idx[lo + (hi - lo) / 2], i = lo, j = hi;
        while (i <= j) {
            while (nearer(s, idx[i], pivot))
                i++;
            while (nearer(s, pivot, idx[j]))
                j--;
            if (i <= j) {
                int t = idx[i];
                idx[i++] = idx[j];
                idx[j--] = t;
            }
        }
        if (kth <= j)
            hi = j;
        else if (kth >= i)
            lo = i;
        else
            break;
    }
    int best = 0;
    for (int r = 1; r < nprobe; r++)
        if (nearer(s, idx[r], idx[best]))
            best = r;
    int t = idx[0];
    idx[0] = idx[best];
    idx[best] = t;
}

/* probe[i*nprobe + j]: the nprobe nearest lists of row i, its own (nearest) list first.
 * One sgemm per block of rows against all centroids, then a selection per row (FAISS's
 * heap of nprobe entries per row costs several times the product here). */
#define ABLOCK 1024
int mf_knn_assign_lists(const float *x, size_t n, int dim, const float *centroids, int nlist,
                        int nprobe, int32_t *probe)
{
    int nt = omp_get_max_threads(), failed = 0;
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
    {
        float *sc = malloc((size_t)ABLOCK * nlist * sizeof *sc);
        int *idx = malloc((size_t)nlist * sizeof *idx);
        if (!sc || !idx) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (size_t s0 = 0; s0 < n; s0 += ABLOCK) {
            if (!sc || !idx)
                continue;
            size_t b = n - s0 < ABLOCK ? n - s0 : ABLOCK;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, nlist, dim, 1.0f,
                        x + s0 * dim, dim, centroids, dim, 0.0f, sc, nlist);
            for (size_t i = 0; i < b; i++) {
                select_lists(sc + i * nlist, nlist, nprobe, idx);
                for (int r = 0; r < nprobe; r++)
                    probe[(s0 + i) * nprobe + r] = idx[r];
            }
        }
        free(sc), free(idx);
    }
    openblas_set_num_threads(blas_threads);
    return failed ? mf_set_error(MF_ERR_NOMEM, "out of memory assigning lists") : 0;
}

/* CSR of rows grouped by key: start[nlist+1], rows[]; key(i, j) for j < per. */
int mf_knn_group_rows(size_t n, const int32_t *probe, int per, int stride, int nlist,
                      size_t **start_out, int32_t **rows_out)
{
    size_t *start = calloc((size_t)nlist + 1, sizeof *start);
    int32_t *rows = malloc(n * (size_t)per * sizeof *rows);
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
                rows[fill[probe[i * stride + j]]++] = (int32_t)i;
    free(fill);
    *start_out = start;
    *rows_out = rows;
    return 0;
}

#else /* built without the FAISS C API */

int mf_knn_kmeans(const float *x, size_t n, int dim, int k, int per_centroid, int niter,
                  float *centroids)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "k-means needs FAISS (built without its C API)");
}

#endif /* MF_HAVE_FAISS */
