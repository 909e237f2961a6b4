/* sums.c - what the cluster checks (split.c, collector.c) share: each large cluster's sum
 * of unit embeddings (one pass over the store), from which mean cosines follow without
 * pairs; cluster sizes; labels renumbered after a check changed them. */
#include <math.h>
#include <stdlib.h>

#include "cluster_internal.h"
#include "mf/status.h"
#include "mf/store.h"

void mf_cluster_add_unit(double *acc, const float *x, size_t dim)
{
    double norm = 0;
    for (size_t d = 0; d < dim; d++)
        norm += (double)x[d] * x[d];
    norm = norm > 0 ? 1 / sqrt(norm) : 0;
    for (size_t d = 0; d < dim; d++)
        acc[d] += x[d] * norm;
}

void mf_cluster_sums_free(mf_cluster_sums *cs) { free(cs->slot), free(cs->sum); }

int mf_cluster_sums_of(mf_store *s, const int64_t *label, const size_t *size, size_t clusters,
                       size_t min_rows, mf_cluster_sums *cs)
{
    size_t dim = mf_store_dim(s), n = mf_store_rows(s), tracked = 0;
    cs->dim = dim;
    cs->sum = NULL;
    cs->slot = malloc((clusters + 1) * sizeof *cs->slot);
    if (!cs->slot)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu clusters", clusters);
    for (size_t c = 0; c < clusters; c++)
        cs->slot[c] = size[c] > min_rows ? (int64_t)tracked++ : -1;
    cs->sum = calloc(tracked * dim + 1, sizeof *cs->sum);
    mf_store_cursor *cur = NULL;
    const mf_store_block *b;
    int rc = cs->sum
                 ? mf_store_cursor_open(&cur, s, MF_COL_EMBEDDING, 0, n)
                 : mf_set_error(MF_ERR_NOMEM, "out of memory for %zu cluster sums", tracked);
    while (rc == 0 && tracked && (rc = mf_store_cursor_next(cur, &b)) > 0) {
        rc = 0;
        for (size_t i = 0; i < b->n; i++) {
            int64_t l = label[b->start + i];
            if (l < 0 || cs->slot[l] < 0)
                continue;
            mf_cluster_add_unit(cs->sum + (size_t)cs->slot[l] * dim, b->embedding + i * dim,
                                dim);
        }
    }
    mf_store_cursor_close(cur);
    return rc < 0 ? rc : 0;
}

double mf_cluster_mean_cosine(const mf_cluster_sums *cs, size_t a, double sa, size_t b,
                              double sb)
{
    const double *x = cs->sum + (size_t)cs->slot[a] * cs->dim;
    const double *y = cs->sum + (size_t)cs->slot[b] * cs->dim;
    double dot = 0;
    for (size_t d = 0; d < cs->dim; d++)
        dot += x[d] * y[d];
    return a == b ? (dot - sa) / (sa * (sa - 1)) : dot / (sa * sb);
}

size_t *mf_cluster_sizes(const int64_t *label, size_t n, size_t clusters)
{
    size_t *size = calloc(clusters + 1, sizeof *size);
    for (size_t i = 0; size && i < n; i++)
        if (label[i] >= 0)
            size[label[i]]++;
    return size;
}

int mf_cluster_renumber(int64_t *label, size_t n, int64_t next)
{
    int64_t *map = malloc((size_t)next * sizeof *map);
    if (!map)
        return mf_set_error(MF_ERR_NOMEM, "out of memory renumbering clusters");
    for (int64_t c = 0; c < next; c++)
        map[c] = -1;
    int64_t id = 0;
    for (size_t i = 0; i < n; i++)
        if (label[i] >= 0) {
            if (map[label[i]] < 0)
                map[label[i]] = id++;
            label[i] = map[label[i]];
        }
    free(map);
    return 0;
}
