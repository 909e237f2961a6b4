/* ivf_join.c - approximate all-pairs kNN (every row is a query) grouped by inverted list.
 *
 * Why not FAISS's own IVF search: it scans the lists one query at a time with scalar
 * inner products (Debian's generic build), ~10x below what the same flops reach through
 * sgemm. In a self-join, every list is scanned by the ~n nprobe / nlist queries that
 * probe it, so the scan of one list is one matrix product (queries x members), on AMX
 * int8 tiles where the CPU has them (amx.c), else float32 sgemm. The lists come from
 * lists.c; the join's candidates are re-scored exactly by refine.c.
 *
 * Each row's top-k is updated only by the thread that owns the row: no locks, and the
 * candidate order (list by list, member by member) is fixed, so the neighbour lists do
 * not depend on the thread count. */
#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "knn_internal.h"
#include "mf/log.h"
#include "mf/progress.h"
#include "mf/status.h"

#ifdef MF_HAVE_FAISS /* the lists come from FAISS k-means (lists.c) */

#define QBLOCK 2048 /* query rows per product: bounds the score buffer */

/* Offer the nm scores sc of members mem to one row's top-k (skipping the row itself).
 * Almost every score is below the row's current k-th: the AVX-512 variant compares 16 at
 * a time and only walks the few that pass. */
static void push_scores(int64_t *nb, float *sm, int k, const int32_t *mem, const float *sc,
                        size_t nm, int64_t self)
{
    for (size_t j = 0; j < nm; j++)
        if (sc[j] > sm[k - 1] && mem[j] != self)
            mf_knn_topk_push(nb, sm, k, mem[j], sc[j]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static void push_scores_avx512(int64_t *nb, float *sm, int k,
                                                                  const int32_t *mem,
                                                                  const float *sc, size_t nm,
                                                                  int64_t self)
{
    size_t j = 0;
    for (; j + 16 <= nm; j += 16) {
        __mmask16 m =
            _mm512_cmp_ps_mask(_mm512_loadu_ps(sc + j), _mm512_set1_ps(sm[k - 1]), _CMP_GT_OQ);
        while (m) {
            int b = __builtin_ctz(m);
            m &= m - 1;
            if (mem[j + b] != self)
                mf_knn_topk_push(nb, sm, k, mem[j + b], sc[j + b]);
        }
    }
    push_scores(nb, sm, k, mem + j, sc + j, nm - j, self);
}
#define HAVE_PUSH_AVX512 1
#endif

typedef void (*push_fn)(int64_t *, float *, int, const int32_t *, const float *, size_t,
                        int64_t);

static push_fn choose_push(void)
{
#ifdef HAVE_PUSH_AVX512
    if (__builtin_cpu_supports("avx512f"))
        return push_scores_avx512;
#endif
    return push_scores;
}

/* What the list scans read: float32 rows (sgemm) or, with AMX, int8 rows and scales. */
typedef struct {
    const float *x;
    const int8_t *xq;   /* n x dimp quantised rows, or NULL: float32 sgemm */
    const float *scale; /* n row scales of xq */
    int dim;
    size_t dimp;
    push_fn push;
} scan_input;

/* Per-thread scratch for list scans, allocated before the parallel region. */
typedef struct {
    void *bm;      /* gathered members: (maxm, dim) floats; AMX: packed int8 */
    void *bq;      /* gathered queries: (QBLOCK, dim) floats; AMX: int8 rows */
    void *score;   /* products: (QBLOCK, maxm) floats; AMX: int32 */
    float *row;    /* AMX: one row of products as similarities (maxm) */
    float *mscale; /* AMX: the members' scales (maxm) */
    int32_t *sel;  /* (maxq) this thread's queries of the current list */
} scratch;

static void gather(const float *x, int dim, const int32_t *rows, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * dim, x + rows[i] * (size_t)dim, (size_t)dim * sizeof *out);
}

/* Scan list members `mem` against the query rows `qry` (all owned by this thread). */
static void scan_list(mf_knn_graph *g, const scan_input *in, const int32_t *mem, size_t nm,
                      const int32_t *qry, size_t nq, scratch *w)
{
    int k = g->k, dim = in->dim;
    float *bm = w->bm, *bq = w->bq, *score = w->score;
    gather(in->x, dim, mem, nm, bm);
    for (size_t q0 = 0; q0 < nq; q0 += QBLOCK) {
        size_t b = nq - q0 < QBLOCK ? nq - q0 : QBLOCK;
        gather(in->x, dim, qry + q0, b, bq);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)nm, dim, 1.0f, bq,
                    dim, bm, dim, 0.0f, score, (int)nm);
        for (size_t i = 0; i < b; i++)
            in->push(g->nbr + (size_t)qry[q0 + i] * k, g->sim + (size_t)qry[q0 + i] * k, k, mem,
                     score + i * nm, nm, qry[q0 + i]);
    }
}

/* The same with AMX int8 products; query blocks are smaller so that they stay in L2
 * while the packed members stream past. */
#define QBLOCK_AMX 512
static void scan_list_amx(mf_knn_graph *g, const scan_input *in, const int32_t *mem, size_t nm,
                          const int32_t *qry, size_t nq, scratch *w)
{
    int k = g->k;
    size_t dimp = in->dimp, ld = MF_AMX_PAD(nm);
    int8_t *pm = w->bm, *bq = w->bq;
    int32_t *acc = w->score;
    mf_amx_pack(pm, in->xq, dimp, mem, nm);
    for (size_t j = 0; j < nm; j++)
        w->mscale[j] = in->scale[mem[j]];
    for (size_t q0 = 0; q0 < nq; q0 += QBLOCK_AMX) {
        size_t b = nq - q0 < QBLOCK_AMX ? nq - q0 : QBLOCK_AMX;
        for (size_t i = 0; i < b; i++)
            memcpy(bq + i * dimp, in->xq + qry[q0 + i] * dimp, dimp);
        memset(bq + b * dimp, 0, (MF_AMX_PAD(b) - b) * dimp);
        mf_amx_products(acc, ld, bq, b, pm, nm, dimp);
        for (size_t i = 0; i < b; i++) {
            int64_t row = qry[q0 + i];
            float sq = in->scale[row];
            const int32_t *a = acc + i * ld;
            for (size_t j = 0; j < nm; j++)
                w->row[j] = (float)a[j] * sq * w->mscale[j];
            in->push(g->nbr + (size_t)row * k, g->sim + (size_t)row * k, k, mem, w->row, nm,
                     row);
        }
    }
}

static void free_scratch(scratch *w, int nt)
{
    for (int t = 0; w && t < nt; t++)
        free(w[t].bm), free(w[t].bq), free(w[t].score), free(w[t].row), free(w[t].mscale),
            free(w[t].sel);
    free(w);
}

static scratch *alloc_scratch(int nt, size_t maxm, size_t maxq, const scan_input *in)
{
    size_t bm, bq, sc, extra = 0;
    if (in->xq) {
        bm = MF_AMX_PAD(maxm) * in->dimp;
        bq = MF_AMX_PAD(QBLOCK_AMX) * in->dimp;
        sc = MF_AMX_PAD(QBLOCK_AMX) * MF_AMX_PAD(maxm) * sizeof(int32_t);
        extra = maxm * sizeof(float);
    } else {
        bm = maxm * in->dim * sizeof(float);
        bq = (size_t)QBLOCK * in->dim * sizeof(float);
        sc = (size_t)QBLOCK * maxm * sizeof(float);
    }
    scratch *w = calloc((size_t)nt, sizeof *w);
    for (int t = 0; w && t < nt; t++) {
        w[t].bm = malloc(bm);
        w[t].bq = malloc(bq);
        w[t].score = malloc(sc);
        w[t].row = extra ? malloc(extra) : NULL;
        w[t].mscale = extra ? malloc(extra) : NULL;
        w[t].sel = malloc(maxq * sizeof(int32_t));
        if (!w[t].bm || !w[t].bq || !w[t].score || !w[t].sel ||
            (extra && (!w[t].row || !w[t].mscale))) {
            free_scratch(w, nt);
            return NULL;
        }
    }
    return w;
}

/* Scan every list l for this thread's rows among qrows[qs[l] .. qs[l+1]). */
static void scan_pass(mf_knn_graph *g, const scan_input *in, int nlist, const size_t *ms,
                      const int32_t *mrows, const size_t *qs, const int32_t *qrows, int t,
                      int nt, scratch *w, mf_knn_meter *meter)
{
    for (int l = 0; l < nlist; l++) {
        size_t nq = 0;
        for (size_t i = qs[l]; i < qs[l + 1]; i++)
            if (qrows[i] % nt == t)
                w->sel[nq++] = qrows[i];
        if (nq && ms[l + 1] > ms[l])
            (in->xq ? scan_list_amx : scan_list)(g, in, mrows + ms[l], ms[l + 1] - ms[l],
                                                 w->sel, nq, w);
        mf_knn_meter_add(meter, (uint64_t)nq * (ms[l + 1] - ms[l]));
    }
}

/* The join's view of the probes: per list, its members (rows whose nearest list it is)
 * and its other probing rows, as CSR. */
typedef struct {
    size_t *ms, *qs; /* nlist + 1 offsets each; qs NULL when nprobe is 1 */
    int32_t *mrows, *qrows;
} list_rows;

static void free_list_rows(list_rows *lr)
{
    free(lr->ms), free(lr->qs), free(lr->mrows), free(lr->qrows);
}

/* Thread t owns the rows with row % nt == t and scans every list for them with a
 * single-threaded product: no two threads touch one row, no BLAS threads compete with
 * OpenMP's, and each row sees its candidates in list order whatever nt is. Each row
 * first meets the members of its own list (its best candidates, so its k-th similarity
 * rises at once and later scores rarely enter the top k), then its other probed lists. */
static int join(mf_knn_graph *g, const scan_input *in, int nlist, const list_rows *lr,
                int progress)
{
    size_t n = g->n, maxm = 1, maxq = 1;
    const size_t *ms = lr->ms, *qs = lr->qs;
    const int32_t *mrows = lr->mrows, *qrows = lr->qrows;
    double pairs = 0;
    for (int l = 0; l < nlist; l++) {
        size_t m = ms[l + 1] - ms[l], q = qs ? qs[l + 1] - qs[l] : 0;
        maxm = m > maxm ? m : maxm;
        maxq = q > maxq ? q : maxq;
        maxq = m > maxq ? m : maxq;
        pairs += (double)m * (m + q);
    }
    mf_log(MF_LOG_DEBUG,
           "knn: scanning %.3g pairs (%.1f%% of all), largest list %zu rows "
           "(mean %.0f)",
           pairs, 100 * pairs / ((double)n * n), maxm, (double)n / nlist);
    int nt = omp_get_max_threads();
    scratch *w = alloc_scratch(nt, maxm, maxq, in);
    if (!w)
        return mf_set_error(MF_ERR_NOMEM,
                            "out of memory for list scans (largest list %zu "
                            "rows, %d threads)",
                            maxm, nt);
    mf_knn_meter meter = {.per = 1000000};
    if (progress)
        meter.bar =
            mf_progress_new("kNN join", (uint64_t)(pairs / 1e6), "Mpairs", progress > 1);
    int blas_threads = openblas_get_num_threads();
    openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
    {
        int t = omp_get_thread_num();
        if (in->xq)
            mf_amx_begin();
        scan_pass(g, in, nlist, ms, mrows, ms, mrows, t, nt, &w[t], &meter);
        if (qs)
            scan_pass(g, in, nlist, ms, mrows, qs, qrows, t, nt, &w[t], &meter);
        if (in->xq)
            mf_amx_end();
    }
    openblas_set_num_threads(blas_threads);
    free_scratch(w, nt);
    mf_knn_meter_end(&meter);
    return 0;
}

/* Spare candidates kept per row when products are int8: the k-th and the (k+1)-th exact
 * neighbours are typically 8e-4 apart and quantisation moves a product by ~5e-4 (at most
 * ~3e-3), so the true top k is within the approximate top k + 8 for nearly every row;
 * the refinement re-scores them all in float32. */
#define AMX_SPARE 8

int mf_knn_ivf_join(mf_knn_graph *g, const float *x, int dim, int nlist, int nprobe,
                    int refine_rounds, int progress)
{
    size_t n = g->n, cells = 0;
    if (nlist < 1 || (size_t)nlist > n)
        return mf_set_error(MF_ERR_ARG, "kNN: %d lists for %zu rows", nlist, n);
    if (n > INT32_MAX) /* rows are kept as int32 (the probes are n x nprobe of them) */
        return mf_set_error(MF_ERR_LIMIT,
                            "kNN: the list join takes at most %d rows; use "
                            "--index with a FAISS index",
                            INT32_MAX);
    int all = nprobe >= nlist; /* every list: an exact graph, whatever the split adds */
    float *cen = NULL;
    int32_t *probe = NULL;
    double t0 = mf_now();
    int rc = mf_knn_make_lists(x, n, dim, nlist, &cen, &nlist);
    if (all)
        nprobe = nlist;
    if (rc == 0 &&
        mf_size_mul(n, (size_t)nprobe * sizeof(int32_t), &cells, "list assignments") < 0)
        rc = MF_ERR_NOMEM;
    if (rc == 0 && !(probe = malloc(cells)))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for list assignments");
    double t1 = mf_now();
    if (rc == 0)
        rc = mf_knn_assign_lists(x, n, dim, cen, nlist, nprobe, probe);
    free(cen);
    /* Group the probes by list, then drop them: n x nprobe entries, the largest block. */
    list_rows lr = {0};
    if (rc == 0)
        rc = mf_knn_group_rows(n, probe, 1, nprobe, nlist, &lr.ms, &lr.mrows);
    if (rc == 0 && nprobe > 1)
        rc = mf_knn_group_rows(n, probe + 1, nprobe - 1, nprobe, nlist, &lr.qs, &lr.qrows);
    free(probe);
    double t2 = mf_now();
    scan_input in = {.x = x, .dim = dim, .dimp = MF_AMX_DIM(dim), .push = choose_push()};
    int8_t *xq = NULL;
    float *scale = NULL;
    int spare = 0;
    if (rc == 0 && mf_amx_available() && (size_t)g->k + AMX_SPARE < n) {
        size_t bytes;
        /* Without room for the int8 copy, fall back to float32 rather than fail. */
        if (mf_size_mul(n, in.dimp, &bytes, "int8 rows") == 0 && (xq = malloc(bytes)) &&
            (scale = malloc(n * sizeof *scale))) {
            mf_i8_from_f32(xq, scale, x, n, dim, in.dimp);
            in.xq = xq, in.scale = scale;
            spare = AMX_SPARE;
        } else {
            free(xq), xq = NULL;
            mf_log(MF_LOG_INFO, "knn: no memory for int8 products, using float32");
        }
    }
    mf_knn_graph *wide = NULL;
    if (rc == 0)
        rc = mf_knn_graph_alloc(&wide, n, g->k + spare);
    if (rc == 0)
        rc = join(wide, &in, nlist, &lr, progress);
    free(xq), free(scale);
    free(lr.qs), free(lr.qrows);
    lr.qs = NULL, lr.qrows = NULL;
    double t3 = mf_now();
    /* Refine list by list (members in list order): rows of one list share most of their
     * candidates, so they stay in cache. */
    mf_knn_meter meter = {.per = 1};
    if (rc == 0 && progress)
        meter.bar =
            mf_progress_new("kNN refine", (uint64_t)n * refine_rounds, "rows", progress > 1);
    if (rc == 0)
        rc = mf_knn_refine(g, wide, x, dim, refine_rounds, REFINE_FAN, lr.mrows, &meter);
    mf_knn_meter_end(&meter);
    free_list_rows(&lr);
    mf_log(MF_LOG_DEBUG,
           "knn: %d lists: k-means %.1f s, probes %.1f s, scan (%s) %.1f s, "
           "%d refinement rounds %.1f s",
           nlist, t1 - t0, t2 - t1, spare ? "AMX int8" : "float32 sgemm", t3 - t2,
           refine_rounds, mf_now() - t3);
    mf_knn_free(wide);
    return rc;
}

#else

int mf_knn_ivf_join(mf_knn_graph *g, const float *x, int dim, int nlist, int nprobe,
                    int refine_rounds, int progress)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "kNN: built without the FAISS C API");
}

#endif
