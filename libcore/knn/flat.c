/* flat.c - an exact inner-product index (FAISS IndexFlatIP) for searches other than the
 * graph: near-duplicates and label overlap (see mf/knn.h). FAISS runs on the calling
 * thread and parallelises inside. */
#include <stdlib.h>

#include "knn_internal.h"
#include "mf/knn.h"
#include "mf/status.h"

#ifdef MF_HAVE_FAISS
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>

struct mf_knn_flat {
    FaissIndexFlatIP *idx;
};

int mf_knn_flat_new(mf_knn_flat **out, int dim)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (faiss_IndexFlatIP_new_with(&(*out)->idx, dim)) {
        free(*out);
        *out = NULL;
        return mf_knn_faiss_fail("IndexFlatIP");
    }
    return 0;
}

int mf_knn_flat_add(mf_knn_flat *f, const float *x, size_t n)
{
    return n == 0 || !faiss_Index_add(f->idx, (idx_t)n, x) ? 0 : mf_knn_faiss_fail("add");
}

int mf_knn_flat_search(mf_knn_flat *f, const float *q, size_t nq, int k, float *sim,
                       int64_t *id)
{
    if (nq == 0)
        return 0;
    return faiss_Index_search(f->idx, (idx_t)nq, q, k, sim, (idx_t *)id)
               ? mf_knn_faiss_fail("search")
               : 0;
}

int mf_knn_flat_range(mf_knn_flat *f, const float *q, size_t nq, int64_t first, float thr,
                      mf_knn_pair_fn fn, void *ctx)
{
    if (nq == 0)
        return 0;
    FaissRangeSearchResult *res = NULL;
    if (faiss_RangeSearchResult_new(&res, (idx_t)nq))
        return mf_knn_faiss_fail("range search result");
    /* An inner-product range search returns similarities strictly above the radius. */
    if (faiss_Index_range_search(f->idx, (idx_t)nq, q, thr - 1e-6f, res)) {
        faiss_RangeSearchResult_free(res);
        return mf_knn_faiss_fail("range search");
    }
    size_t *lims;
    idx_t *labels;
    float *dist;
    faiss_RangeSearchResult_lims(res, &lims);
    faiss_RangeSearchResult_labels(res, &labels, &dist);
    int rc = 0;
    for (size_t i = 0; i < nq && rc == 0; i++)
        for (size_t j = lims[i]; j < lims[i + 1] && rc == 0; j++)
            if (labels[j] >= 0)
                rc = fn(ctx, first + (int64_t)i, labels[j], dist[j]);
    faiss_RangeSearchResult_free(res);
    return rc;
}

void mf_knn_flat_free(mf_knn_flat *f)
{
    if (!f)
        return;
    faiss_Index_free(f->idx);
    free(f);
}

#else /* built without the FAISS C API */

int mf_knn_flat_new(mf_knn_flat **out, int dim)
{
    *out = NULL;
    return mf_set_error(MF_ERR_UNSUPPORTED, "built without the FAISS C API");
}
int mf_knn_flat_add(mf_knn_flat *f, const float *x, size_t n) { return MF_ERR_UNSUPPORTED; }
int mf_knn_flat_search(mf_knn_flat *f, const float *q, size_t nq, int k, float *sim,
                       int64_t *id)
{
    return MF_ERR_UNSUPPORTED;
}
int mf_knn_flat_range(mf_knn_flat *f, const float *q, size_t nq, int64_t first, float thr,
                      mf_knn_pair_fn fn, void *ctx)
{
    return MF_ERR_UNSUPPORTED;
}
void mf_knn_flat_free(mf_knn_flat *f) {}

#endif
