/* clean_dedup.c - rule 3 (near-duplicates) and the FAISS range searches behind it and
 * behind rule 4.
 *
 * Duplicates: the rows still kept, as unit vectors, go into an inner-product index
 * (exact IndexFlatIP up to dedup_flat_max rows; above, IVF with ~2 sqrt(n) lists trained
 * on a strided sample, probing dedup_nprobe lists: near-duplicates are so close that
 * they almost always share a list). Every kept row then queries the index in batches
 * (range search, cosine >= COS). Groups are the connected components of those pairs;
 * each keeps its highest-magnitude row (ties: the first row). FAISS runs on this thread
 * and parallelises inside. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean/clean_internal.h"
#include "clean/clean_pairs.h"
#include "mf/status.h"

#ifdef MF_HAVE_FAISS
#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexFlat_c.h>
#include <faiss/c_api/IndexIVF_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#endif

/* Refuse to collect more pairs than this: a threshold so low that most rows match. */
#define MAX_PAIRS (200u * 1000u * 1000u)
#define TRAIN_PER_LIST 30

void clean_pairs_release(clean_pairs *p)
{
    free(p->a), free(p->b), free(p->sim);
    memset(p, 0, sizeof *p);
}

static int push_pair(clean_pairs *p, int64_t a, int64_t b, float sim)
{
    if (p->n == p->cap) {
        if (p->cap >= MAX_PAIRS)
            return mf_set_error(MF_ERR_LIMIT, "more than %u pairs above the cosine threshold: "
                                "raise it", MAX_PAIRS);
        size_t nc = p->cap ? p->cap * 2 : 1024;
        int64_t *na = realloc(p->a, nc * sizeof *na);
        if (na) p->a = na;
        int64_t *nb = realloc(p->b, nc * sizeof *nb);
        if (nb) p->b = nb;
        float *ns = realloc(p->sim, nc * sizeof *ns);
        if (ns) p->sim = ns;
        if (!na || !nb || !ns)
            return mf_set_error(MF_ERR_NOMEM, "cannot store %zu similar pairs", nc);
        p->cap = nc;
    }
    p->a[p->n] = a, p->b[p->n] = b, p->sim[p->n] = sim;
    p->n++;
    return 0;
}

#ifdef MF_HAVE_FAISS

static int faiss_fail(const char *what)
{
    const char *e = faiss_get_last_error();
    return mf_set_error(MF_ERR_INTERNAL, "FAISS %s failed: %s", what, e ? e : "unknown error");
}

/* Range-search m query vectors (global ids first..first+m) and collect the pairs. */
static int query_batch(FaissIndex *idx, const float *v, size_t m, int64_t first, double thr,
                       clean_pairs *out)
{
    FaissRangeSearchResult *res = NULL;
    if (faiss_RangeSearchResult_new(&res, (idx_t)m))
        return faiss_fail("range search result");
    /* Inner-product range search returns similarities strictly above the radius. */
    if (faiss_Index_range_search(idx, (idx_t)m, v, (float)(thr - 1e-6), res)) {
        faiss_RangeSearchResult_free(res);
        return faiss_fail("range search");
    }
    size_t *lims;
    idx_t *labels;
    float *dist;
    faiss_RangeSearchResult_lims(res, &lims);
    faiss_RangeSearchResult_labels(res, &labels, &dist);
    int rc = 0;
    for (size_t q = 0; q < m && rc == 0; q++)
        for (size_t j = lims[q]; j < lims[q + 1] && rc == 0; j++)
            if (labels[j] >= 0 && labels[j] != first + (int64_t)q)
                rc = push_pair(out, first + (int64_t)q, labels[j], dist[j]);
    faiss_RangeSearchResult_free(res);
    return rc;
}

int clean_pairs_in_memory(const float *x, size_t n, int dim, double thr, clean_pairs *out)
{
    FaissIndexFlatIP *idx = NULL;
    if (n == 0)
        return 0;
    if (faiss_IndexFlatIP_new_with(&idx, dim))
        return faiss_fail("IndexFlatIP");
    int rc = faiss_Index_add(idx, (idx_t)n, x) ? faiss_fail("add") : 0;
    const size_t batch = 4096;
    for (size_t s = 0; s < n && rc == 0; s += batch)
        rc = query_batch(idx, x + s * (size_t)dim, n - s < batch ? n - s : batch, (int64_t)s,
                         thr, out);
    faiss_Index_free(idx);
    return rc;
}

/* ---- streaming the kept rows ------------------------------------------------------------ */

typedef int (*kept_fn)(void *ctx, const float *v, size_t m, uint64_t first);

/* Call fn on successive batches of the unit embeddings of rows with keep[i] set; `first`
 * numbers them 0, 1, ... in row order. */
static int for_each_kept(clean_ctx *c, const uint8_t *keep, kept_fn fn, void *ctx)
{
    uint64_t done = 0;
    size_t dim = (size_t)c->dim;
    for (uint64_t s = 0; s < c->rows; s += c->chunk) {
        size_t m = c->rows - s < c->chunk ? (size_t)(c->rows - s) : c->chunk, k = 0;
        for (size_t i = 0; i < m; i++)
            k += keep[s + i];
        if (!k)
            continue;
        int rc = clean_read_unit(c, s, m);
        k = 0;
        for (size_t i = 0; rc == 0 && i < m; i++)
            if (keep[s + i]) {
                if (k != i)
                    memcpy(c->buf + k * dim, c->buf + i * dim, dim * sizeof(float));
                k++;
            }
        if (rc == 0)
            rc = fn(ctx, c->buf, k, done);
        if (rc < 0)
            return rc;
        done += k;
    }
    return 0;
}

typedef struct dedup_state {
    FaissIndex *idx;
    int dim;
    double thr;
    clean_pairs *pairs;
    float *train;         /* ntrain * dim */
    uint64_t stride, ntrain, cap_train;
} dedup_state;

static int take_sample(void *ctx, const float *v, size_t m, uint64_t first)
{
    dedup_state *st = ctx;
    for (size_t i = 0; i < m; i++)
        if ((first + i) % st->stride == 0 && st->ntrain < st->cap_train)
            memcpy(st->train + st->ntrain++ * (size_t)st->dim, v + i * (size_t)st->dim,
                   (size_t)st->dim * sizeof(float));
    return 0;
}

static int add_batch(void *ctx, const float *v, size_t m, uint64_t first)
{
    dedup_state *st = ctx;
    return faiss_Index_add(st->idx, (idx_t)m, v) ? faiss_fail("add") : 0;
}

static int search_batch(void *ctx, const float *v, size_t m, uint64_t first)
{
    dedup_state *st = ctx;
    return query_batch(st->idx, v, m, (int64_t)first, st->thr, st->pairs);
}

/* An IVF index trained on a strided sample of the kept rows. */
static int make_ivf(clean_ctx *c, const uint8_t *keep, uint64_t n, dedup_state *st)
{
    int nlist = (int)fmin(8192, fmax(64, round(2 * sqrt((double)n))));
    char desc[32];
    snprintf(desc, sizeof desc, "IVF%d,Flat", nlist);
    if (faiss_index_factory(&st->idx, c->dim, desc, METRIC_INNER_PRODUCT))
        return faiss_fail("index_factory");
    st->cap_train = (uint64_t)nlist * TRAIN_PER_LIST;
    st->stride = n / st->cap_train > 1 ? n / st->cap_train : 1;
    st->train = malloc(st->cap_train * (size_t)c->dim * sizeof(float));
    if (!st->train)
        return mf_set_error(MF_ERR_NOMEM, "cannot allocate the IVF training sample");
    int rc = for_each_kept(c, keep, take_sample, st);
    if (rc == 0 && faiss_Index_train(st->idx, (idx_t)st->ntrain, st->train))
        rc = faiss_fail("IVF training");
    free(st->train);
    st->train = NULL;
    FaissIndexIVF *ivf = faiss_IndexIVF_cast(st->idx);
    if (rc == 0 && ivf)
        faiss_IndexIVF_set_nprobe(ivf, (size_t)(c->p->dedup_nprobe > 0 ? c->p->dedup_nprobe : 1));
    return rc;
}

static int find_pairs(clean_ctx *c, const uint8_t *keep, uint64_t n, clean_pairs *pairs)
{
    dedup_state st = {.dim = c->dim, .thr = c->p->dedup_cos, .pairs = pairs};
    int rc = 0;
    if (n <= c->p->dedup_flat_max) {
        FaissIndexFlatIP *flat;
        rc = faiss_IndexFlatIP_new_with(&flat, c->dim) ? faiss_fail("IndexFlatIP") : 0;
        st.idx = flat;
    } else {
        rc = make_ivf(c, keep, n, &st);
    }
    if (rc == 0)
        rc = for_each_kept(c, keep, add_batch, &st);
    if (rc == 0)
        rc = for_each_kept(c, keep, search_batch, &st);
    if (st.idx)
        faiss_Index_free(st.idx);
    return rc;
}

#else /* no FAISS */

int clean_pairs_in_memory(const float *x, size_t n, int dim, double thr, clean_pairs *out)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "built without the FAISS C API");
}

static int find_pairs(clean_ctx *c, const uint8_t *keep, uint64_t n, clean_pairs *pairs)
{
    return mf_set_error(MF_ERR_UNSUPPORTED, "--dedup needs FAISS (built without its C API)");
}

#endif

static int64_t find_root(int64_t *parent, int64_t x)
{
    while (parent[x] != x)
        x = parent[x] = parent[parent[x]];
    return x;
}

/* Keep the highest-magnitude row of each connected group; drop the others, with the
 * cosine to the kept row when they were paired with it (else their best pair). */
static int resolve_groups(clean_ctx *c, const uint64_t *row_of, uint64_t n,
                          const clean_pairs *pairs)
{
    mf_clean_result *r = c->r;
    int64_t *parent = malloc((n ? n : 1) * sizeof *parent);
    int64_t *best = malloc((n ? n : 1) * sizeof *best);
    float *fig = calloc(n ? n : 1, sizeof *fig);
    if (!parent || !best || !fig) {
        free(parent), free(best), free(fig);
        return mf_set_error(MF_ERR_NOMEM, "cannot group %llu duplicates", (unsigned long long)n);
    }
    for (uint64_t i = 0; i < n; i++)
        parent[i] = (int64_t)i, best[i] = -1;
    for (size_t j = 0; j < pairs->n; j++)
        parent[find_root(parent, pairs->a[j])] = find_root(parent, pairs->b[j]);
    for (uint64_t i = 0; i < n; i++) {
        int64_t root = find_root(parent, (int64_t)i), b = best[root];
        if (b < 0 || r->magnitude[row_of[i]] > r->magnitude[row_of[b]])
            best[root] = (int64_t)i;
    }
    for (size_t j = 0; j < pairs->n; j++) {
        int64_t a = pairs->a[j], b = pairs->b[j], k = best[find_root(parent, a)];
        if (b == k || a == k)
            fig[a == k ? b : a] = 2 + pairs->sim[j]; /* marks "paired with the kept row" */
        else {
            if (fig[a] < 2) fig[a] = fmaxf(fig[a], pairs->sim[j]);
            if (fig[b] < 2) fig[b] = fmaxf(fig[b], pairs->sim[j]);
        }
    }
    for (uint64_t i = 0; i < n; i++)
        if (best[find_root(parent, (int64_t)i)] != (int64_t)i) {
            r->rule[row_of[i]] = MF_RULE_DEDUP;
            r->figure[row_of[i]] = fig[i] >= 2 ? fig[i] - 2 : fig[i];
        }
    free(parent), free(best), free(fig);
    return 0;
}

int clean_dedup(clean_ctx *c)
{
    mf_clean_result *r = c->r;
    uint64_t n = 0;
    uint8_t *keep = malloc(c->rows ? c->rows : 1);
    uint64_t *row_of = malloc((c->rows ? c->rows : 1) * sizeof *row_of);
    clean_pairs pairs = {0};
    int rc = 0;
    if (!keep || !row_of)
        rc = mf_set_error(MF_ERR_NOMEM, "cannot allocate the duplicate search");
    for (uint64_t i = 0; rc == 0 && i < c->rows; i++)
        if ((keep[i] = r->rule[i] == MF_RULE_KEEP))
            row_of[n++] = i;
    if (rc == 0 && n > 1)
        rc = find_pairs(c, keep, n, &pairs);
    if (rc == 0)
        rc = resolve_groups(c, row_of, n, &pairs);
    clean_pairs_release(&pairs);
    free(keep), free(row_of);
    return rc;
}
