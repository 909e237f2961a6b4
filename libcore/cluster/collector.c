/* collector.c - drift collectors: clusters of the low-quality rows of many identities.
 *
 * Low-quality faces drift towards shared 'unrecognisable' directions (MagFace puts
 * low-magnitude features near a class-agnostic centre), so they are alike across
 * identities, and a method can gather hundreds of them into one cluster. Such a cluster
 * is coherent (its rows drifted the same way), so the chain check (split.c) keeps it;
 * it is told instead by where it points and what it holds. With d the mean of the unit
 * embeddings of the rows below the anchor cut (the leaves), r = |d|, a cluster of m > k
 * rows is a collector when
 *   - its mean direction is as close to d's as that of a random sample of m leaves
 *     would be, within MARGIN: a sample's expected cosine is r / sqrt(r^2 + (1 - r^2) / m);
 *     an identity points its own way, pulled towards d only by its blurred faces; and
 *   - fewer than half of its rows are anchors (an identity has about 1 - q of them):
 *     a component chained through whole identities can also point along d, but is made
 *     of them.
 * Its rows are then left unassigned (-1), like leaves that found no anchor: nothing in
 * the graph says whose faces they are. Measured on bench_robust's grid (both draws,
 * docs/CLUSTER.md): the clusters so found held 0-30% anchors under every method (under
 * anchors: purity 0.02-0.37); the identity that came closest to d (1,370 rows, cosine
 * 0.63) stayed far from the bound (0.90). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "mf/status.h"
#include "mf/store.h"

#define MARGIN 0.1

/* d: the sum of the unit embeddings of the rows with magnitude below cut (one pass). */
static int leaves_sum(mf_store *s, const float *mag, float cut, double *d, size_t *count)
{
    size_t dim = mf_store_dim(s), n = mf_store_rows(s);
    mf_store_cursor *cur = NULL;
    const mf_store_block *b;
    memset(d, 0, dim * sizeof *d);
    *count = 0;
    int rc = mf_store_cursor_open(&cur, s, MF_COL_EMBEDDING, 0, n);
    while (rc == 0 && (rc = mf_store_cursor_next(cur, &b)) > 0) {
        rc = 0;
        for (size_t i = 0; i < b->n; i++) {
            if (!(mag[b->start + i] < cut))
                continue;
            mf_cluster_add_unit(d, b->embedding + i * dim, dim);
            (*count)++;
        }
    }
    mf_store_cursor_close(cur);
    return rc < 0 ? rc : 0;
}

int mf_cluster_find_collectors(const mf_knn_graph *g, const float *magnitude,
                               const mf_cluster_params *p, mf_store *s, int keep,
                               int64_t *label, mf_cluster_collectors *out)
{
    memset(out, 0, sizeof *out);
    size_t n = g->n, k = (size_t)g->k, dim = mf_store_dim(s);
    if (mf_store_rows(s) != n)
        return mf_set_error(MF_ERR_ARG, "collectors: the store has %zu rows, the graph %zu",
                            (size_t)mf_store_rows(s), n);
    if (!p->weight || !magnitude || p->anchor_quantile <= 0 || n == 0)
        return 0; /* without quality there are no leaves to point anywhere */
    float cut;
    if (mf_cluster_quantile(magnitude, n, p->anchor_quantile, &cut) < 0)
        return MF_ERR_NOMEM;
    size_t clusters = 0, leaves = 0;
    for (size_t i = 0; i < n; i++)
        clusters =
            label[i] >= 0 && (size_t)label[i] >= clusters ? (size_t)label[i] + 1 : clusters;
    double *d = malloc((dim + 1) * sizeof *d);
    size_t *size = mf_cluster_sizes(label, n, clusters),
           *anchors = calloc(clusters + 1, sizeof *anchors);
    mf_cluster_sums cs = {0};
    int rc = d && size && anchors
                 ? 0
                 : mf_set_error(MF_ERR_NOMEM, "out of memory for %zu clusters", clusters);
    if (rc == 0)
        rc = leaves_sum(s, magnitude, cut, d, &leaves);
    if (rc == 0)
        rc = mf_cluster_sums_of(s, label, size, clusters, k, &cs);
    double r = 0;
    for (size_t j = 0; rc == 0 && j < dim; j++)
        r += d[j] * d[j];
    r = leaves ? sqrt(r) / (double)leaves : 0; /* |mean of unit leaves| */
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (label[i] >= 0 && magnitude[i] >= cut)
            anchors[label[i]]++;
    unsigned char *is_collector = rc == 0 ? calloc(clusters + 1, 1) : NULL;
    if (rc == 0 && !is_collector)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for %zu clusters", clusters);
    for (size_t c = 0; rc == 0 && r > 0 && c < clusters; c++) {
        if (cs.slot[c] < 0 || 2 * anchors[c] >= size[c])
            continue;
        const double *u = cs.sum + (size_t)cs.slot[c] * dim;
        double dot = 0, uu = 0;
        for (size_t j = 0; j < dim; j++)
            dot += u[j] * d[j], uu += u[j] * u[j];
        double cosine = uu > 0 ? dot / (sqrt(uu) * r * (double)leaves) : 0;
        double m = (double)size[c], sample = r / sqrt(r * r + (1 - r * r) / m);
        if (cosine < sample - MARGIN)
            continue;
        is_collector[c] = 1;
        out->found++, out->rows += size[c];
        if (out->largest_rows < size[c])
            out->largest_rows = size[c], out->largest_cosine = cosine;
    }
    for (size_t i = 0; rc == 0 && !keep && out->found && i < n; i++)
        if (label[i] >= 0 && is_collector[label[i]])
            label[i] = -1;
    if (rc == 0 && !keep && out->found)
        rc = mf_cluster_renumber(label, n, (int64_t)clusters);
    mf_cluster_sums_free(&cs);
    free(d), free(size), free(anchors), free(is_collector);
    return rc;
}
