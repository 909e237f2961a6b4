/* knn_internal.h - shared between the kNN builder and the graph file reader. */
#ifndef MF_KNN_INTERNAL_H
#define MF_KNN_INTERNAL_H

#include "mf/knn.h"

/* Allocate an n x k graph with every entry empty (nbr -1, sim -2). */
int mf_knn_graph_alloc(mf_knn_graph **out, size_t n, int k);

#include <omp.h>
#include <stdint.h>

#include "mf/progress.h"

/* A progress bar fed from inside an OpenMP region: every thread adds its work to an
 * atomic count, only thread 0 redraws (mf_progress is single-threaded). bar may be NULL
 * (nothing shown). Work is counted in `per` units of one shown unit. */
typedef struct {
    mf_progress *bar;
    uint64_t per;
    uint64_t done, shown; /* done: atomic, in work units; shown: in bar units */
} mf_knn_meter;

static inline void mf_knn_meter_add(mf_knn_meter *m, uint64_t work)
{
    if (!m || !m->bar)
        return;
    uint64_t d = __atomic_add_fetch(&m->done, work, __ATOMIC_RELAXED) / m->per;
    if (omp_get_thread_num() == 0 && d > m->shown) {
        mf_progress_add(m->bar, d - m->shown);
        m->shown = d;
    }
}

/* After the parallel region: show what the other threads did last, finish the line. */
static inline void mf_knn_meter_end(mf_knn_meter *m)
{
    if (m->bar && m->done / m->per > m->shown)
        mf_progress_add(m->bar, m->done / m->per - m->shown);
    mf_progress_free(m->bar);
    m->bar = NULL;
}

/* Approximate self-join kNN grouped by inverted list (ivf_join.c): FAISS spherical
 * k-means into nlist lists (oversized ones split), each row probes its nprobe nearest
 * lists, each list is scanned by one product per block of probing rows (AMX int8 where
 * the CPU has it, else float32 sgemm), then refine_rounds (>= 1) rounds of mf_knn_refine
 * give exact float32 similarities. Fills g (allocated, empty). progress: 0 none, 1 bars
 * on a terminal, 2 bars always (mf_knn_params.progress). */
int mf_knn_ivf_join(mf_knn_graph *g, const float *x, int dim, int nlist, int nprobe,
                    int refine_rounds, int progress);
/* m rows of x (n rows of dim) at an even stride, copied (m <= n); NULL when out of memory
 * (lists.c). */
float *mf_knn_strided_sample(const float *x, size_t n, int dim, size_t m);

/* Set and return MF_ERR_INTERNAL naming the FAISS call that failed and FAISS's message. */
int mf_knn_faiss_fail(const char *what);

/* Inverted lists (lists.c). make_lists: FAISS spherical k-means on a sample into nlist
 * centroids, then lists holding over 3x the mean share of a sample split by k-means of
 * their own; *centroids (malloc'd, *nlist_out x dim) and *nlist_out are the result.
 * assign_lists: probe[i * nprobe + j] = the nprobe nearest lists of row i, its nearest
 * first (sgemm + quickselect; ties to the lower list). group_rows: CSR of rows by the
 * lists probe[i * stride + j], j < per: start[nlist + 1], rows (int32; n < 2^31). */
int mf_knn_make_lists(const float *x, size_t n, int dim, int nlist, float **centroids,
                      int *nlist_out);
int mf_knn_assign_lists(const float *x, size_t n, int dim, const float *centroids, int nlist,
                        int nprobe, int32_t *probe);
int mf_knn_group_rows(size_t n, const int32_t *probe, int per, int stride, int nlist,
                      size_t **start_out, int32_t **rows_out);

/* Default lists probed: an eighth of them (at least 32). On face data at 1M rows this is
 * what reaches recall@30 0.95 after refinement (docs/CLUSTER.md). */
static inline int mf_knn_join_nprobe(int nlist) { return nlist / 8 > 32 ? nlist / 8 : 32; }
#define MF_KNN_REFINE_ROUNDS 4

/* Refine (refine.c): rounds >= 1 of: every row's candidates are its row in the previous
 * graph (in, first round; any width), its reverse edges and the first fan neighbours of
 * its first fan neighbours, all scored exactly; the best g->k go to g (in != g). Rows
 * are visited in `order` (a permutation of 0..n-1, or NULL: 0..n-1), which changes only
 * the speed. meter (may be NULL) counts rows x rounds. */
int mf_knn_refine(mf_knn_graph *g, const mf_knn_graph *in, const float *x, int dim, int rounds,
                  int fan, const int32_t *order, mf_knn_meter *meter);
#define REFINE_FAN 10
/* Reverse edges a row takes as refinement candidates (both refiners). */
#define REFINE_REVERSE_CAP 64

/* recall@k of g on m strided query rows (row i * (n / m)) against an exact scan. rows(ctx,
 * start, n, &x) points x at n normalised rows from `start` (valid until the next call):
 * 0 or a negative mf_status. */
typedef int (*mf_knn_rows_fn)(void *ctx, size_t start, size_t n, const float **out);
int mf_knn_recall(const mf_knn_graph *g, int dim, size_t m, mf_knn_rows_fn rows, void *ctx,
                  double *recall);

/* Inner product of two float rows, vectorised. */
float mf_knn_dot(const float *a, const float *b, int dim);

/* Insert candidate j with similarity s into a descending top-k row (nb, sm) if it
 * belongs there; ties keep the earlier candidate. */
static inline void mf_knn_topk_push(int64_t *nb, float *sm, int k, int64_t j, float s)
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

/* Stream rows [first, end) of a store's /embedding in blocks, normalised in place (the
 * cursor's buffer): fn(ctx, first row, rows, x) per block; 0 or the first error. */
struct mf_store;
typedef int (*mf_knn_block_fn)(void *ctx, size_t start, size_t n, float *x);
int mf_knn_stream_rows(struct mf_store *s, size_t first, size_t end, mf_knn_block_fn fn,
                       void *ctx);
/* Bytes reserved besides what a shard counts: store blocks, BLAS buffers, libraries. */
#define MF_KNN_OVERHEAD ((size_t)256 << 20)

/* 64-bit FNV-1a of len bytes, continuing from h (start: MF_KNN_FNV_BASIS). */
#define MF_KNN_FNV_BASIS 1469598103934665603ULL
static inline uint64_t mf_knn_fnv(uint64_t h, const void *v, size_t len)
{
    const unsigned char *b = (const unsigned char *)v;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Is (s, j) better than (t, i)? Higher similarity, then lower row (i = -1: an empty
 * entry, worse than anything): a total order, so a top k kept with it depends only on
 * the set of candidates offered, not on their order (the graph in pieces). */
static inline int mf_knn_better(float s, int64_t j, float t, int64_t i)
{
    return s > t || (s == t && (i < 0 || j < i));
}

/* Offer candidate j with exact similarity s to a top-k row kept in that order; a
 * candidate already present is not added twice (its similarity is the same). */
static inline void mf_knn_offer(int64_t *nb, float *sm, int k, int64_t j, float s)
{
    if (!mf_knn_better(s, j, sm[k - 1], nb[k - 1]))
        return;
    for (int r = 0; r < k && nb[r] >= 0; r++)
        if (nb[r] == j)
            return;
    int r = k - 1;
    while (r > 0 && mf_knn_better(s, j, sm[r - 1], nb[r - 1])) {
        sm[r] = sm[r - 1];
        nb[r] = nb[r - 1];
        r--;
    }
    sm[r] = s;
    nb[r] = j;
}

#endif
