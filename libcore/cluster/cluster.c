/* cluster.c - graph clustering methods on a kNN graph (see mf/cluster.h).
 *
 * The union-find methods (anchors, components, peaks) are sequential over edges with a
 * fixed order and union by lower root index, so their result is unique; the per-edge
 * tests that dominate the cost run in parallel and only fill flags. */
#include "mf/cluster.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "mf/stats.h"
#include "mf/status.h"

static const char *method_names[MF_CLUSTER_METHODS] = {"anchors", "components", "peaks",
                                                       "infomap", "leiden"};

int mf_cluster_method_parse(const char *name)
{
    for (int m = 0; m < MF_CLUSTER_METHODS; m++)
        if (strcmp(name, method_names[m]) == 0)
            return m;
    return -1;
}

const char *mf_cluster_method_name(mf_cluster_method m)
{
    return (unsigned)m < MF_CLUSTER_METHODS ? method_names[m] : "?";
}

void mf_cluster_method_defaults(mf_cluster_params *p, mf_cluster_method m)
{
    p->method = m;
    /* Cosine thresholds depend on the model and the data: chosen from the graph
     * (auto.c) unless set. */
    p->tau = NAN;
    p->tau2 = NAN;
    p->anchor_quantile = 0.3;
    p->resolution = 0.04;
}

mf_cluster_params mf_cluster_default_params(void)
{
    mf_cluster_params p = {.weight = 1};
    mf_cluster_method_defaults(&p, MF_CLUSTER_ANCHORS);
    return p;
}

/* ---- union-find ---------------------------------------------------------------------- */

int64_t mf_uf_find(int64_t *parent, int64_t i)
{
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

void mf_uf_union(int64_t *parent, int64_t a, int64_t b)
{
    a = mf_uf_find(parent, a);
    b = mf_uf_find(parent, b);
    if (a < b)
        parent[b] = a;
    else if (b < a)
        parent[a] = b;
}

/* label[i] = cluster of i numbered by first row, or -1 where assigned[i] == 0
 * (assigned NULL = all). Uses label as scratch for the root -> id map. */
void mf_uf_labels(int64_t *parent, const unsigned char *assigned, size_t n, int64_t *label)
{
    for (size_t i = 0; i < n; i++)
        parent[i] = mf_uf_find(parent, (int64_t)i);
    for (size_t i = 0; i < n; i++)
        label[i] = -1;
    /* Number roots by the first row of their cluster (label[root] is the map), then
     * copy the root's id to every member. Unassigned rows are roots nobody joins. */
    int64_t next = 0;
    for (size_t i = 0; i < n; i++)
        if ((!assigned || assigned[i]) && label[parent[i]] < 0)
            label[parent[i]] = next++;
    for (size_t i = 0; i < n; i++)
        if ((!assigned || assigned[i]) && (size_t)parent[i] != i)
            label[i] = label[parent[i]];
}

/* ---- methods ------------------------------------------------------------------------- */

static void components(const mf_knn_graph *g, float tau, int64_t *parent)
{
    for (size_t i = 0; i < g->n; i++)
        for (int r = 0; r < g->k; r++) {
            int64_t j = g->nbr[i * g->k + r];
            if (j >= 0 && g->sim[i * g->k + r] >= tau)
                mf_uf_union(parent, (int64_t)i, j);
        }
}

/* Local density: mean similarity to the listed neighbours. */
static void density(const mf_knn_graph *g, float *conf)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < g->n; i++) {
        double s = 0;
        int c = 0;
        for (int r = 0; r < g->k; r++)
            if (g->nbr[i * g->k + r] >= 0)
                s += g->sim[i * g->k + r], c++;
        conf[i] = c ? (float)(s / c) : 0.0f;
    }
}

static int higher(const float *conf, int64_t j, int64_t i)
{
    return conf[j] > conf[i] || (conf[j] == conf[i] && j < i);
}

static void peaks(const mf_knn_graph *g, const float *conf, float tau, int64_t *parent)
{
    for (size_t i = 0; i < g->n; i++)
        for (int r = 0; r < g->k; r++) {
            int64_t j = g->nbr[i * g->k + r];
            if (j < 0 || g->sim[i * g->k + r] < tau)
                break; /* rows are sorted: nothing similar enough further on */
            if (higher(conf, j, (int64_t)i)) {
                mf_uf_union(parent, (int64_t)i, j);
                break;
            }
        }
}

int mf_cluster_quantile(const float *v, size_t n, double q, float *out)
{
    if (q <= 0) {
        *out = -INFINITY;
        return 0;
    }
    float *s = malloc(n * sizeof *s);
    if (!s)
        return mf_set_error(MF_ERR_NOMEM, "out of memory sorting magnitudes");
    memcpy(s, v, n * sizeof *s);
    mf_sort_floats(s, n);
    size_t at = (size_t)(q * (double)n);
    *out = s[at < n ? at : n - 1];
    free(s);
    return 0;
}

static int attach_via_leaves(const mf_knn_graph *g, float tau2, int64_t *parent,
                             unsigned char *assigned);

/* anchors: see cluster.h. assigned[i] = 0 for leaves that found no anchor. */
static int anchors(const mf_knn_graph *g, const float *mag, const mf_cluster_params *p,
                   int64_t *parent, unsigned char *assigned)
{
    size_t n = g->n;
    int k = g->k;
    float cut = -INFINITY;
    if (p->weight && mf_cluster_quantile(mag, n, p->anchor_quantile, &cut) < 0)
        return MF_ERR_NOMEM;
    unsigned char *is_anchor = malloc(n), *keep = malloc(n * (size_t)k);
    if (!is_anchor || !keep) {
        free(is_anchor), free(keep);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu x %d edge flags", n, k);
    }
    for (size_t i = 0; i < n; i++)
        is_anchor[i] = !p->weight || mag[i] >= cut;
#pragma omp parallel for schedule(dynamic, 256)
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < k; r++) {
            int64_t j = g->nbr[i * k + r];
            keep[i * k + r] =
                j >= 0 && is_anchor[i] && is_anchor[j] && g->sim[i * k + r] >= p->tau;
        }
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < k; r++)
            if (keep[i * k + r])
                mf_uf_union(parent, (int64_t)i, g->nbr[i * k + r]);
    free(keep);
    /* Leaves hang from their best anchor neighbour; they never join anything else, so
     * the order of attachment does not matter. */
    for (size_t i = 0; i < n; i++) {
        if (is_anchor[i])
            continue;
        for (int r = 0; r < k; r++) {
            int64_t j = g->nbr[i * k + r];
            if (j < 0 || g->sim[i * k + r] < p->tau2)
                break;
            if (is_anchor[j]) {
                parent[i] = mf_uf_find(parent, j);
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        assigned[i] = is_anchor[i] || parent[i] != (int64_t)i;
    free(is_anchor);
    return attach_via_leaves(g, p->tau2, parent, assigned);
}

/* Leaves whose neighbours are all leaves (the lowest-quality faces crowd together near
 * the unrecognisable direction) may still hang from an attached leaf: a few rounds, each
 * seeing only the previous round's attachments (order-free), still never merging. */
static int attach_via_leaves(const mf_knn_graph *g, float tau2, int64_t *parent,
                             unsigned char *assigned)
{
    size_t n = g->n;
    int k = g->k;
    int64_t *target = malloc(n * sizeof *target);
    if (!target)
        return mf_set_error(MF_ERR_NOMEM, "out of memory attaching leaves");
    for (int round = 0; round < 3; round++) {
        size_t moved = 0;
        for (size_t i = 0; i < n; i++) {
            target[i] = -1;
            for (int r = 0; !assigned[i] && r < k; r++) {
                int64_t j = g->nbr[i * k + r];
                if (j < 0 || g->sim[i * k + r] < tau2)
                    break;
                if (assigned[j]) {
                    target[i] = j;
                    break;
                }
            }
        }
        for (size_t i = 0; i < n; i++)
            if (target[i] >= 0) {
                parent[i] = mf_uf_find(parent, target[i]);
                assigned[i] = 1;
                moved++;
            }
        if (!moved)
            break;
    }
    free(target);
    return 0;
}

static int run_union_find(const mf_knn_graph *g, const float *mag, const mf_cluster_params *p,
                          int64_t *label)
{
    size_t n = g->n;
    int64_t *parent = malloc(n * sizeof *parent);
    unsigned char *assigned = malloc(n);
    float *conf = NULL;
    int rc = 0;
    if (!parent || !assigned)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory clustering %zu rows", n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        parent[i] = (int64_t)i, assigned[i] = 1;
    if (rc == 0 && p->method == MF_CLUSTER_COMPONENTS)
        components(g, p->tau, parent);
    else if (rc == 0 && p->method == MF_CLUSTER_PEAKS) {
        if (!p->weight) {
            conf = malloc(n * sizeof *conf);
            if (!conf)
                rc = mf_set_error(MF_ERR_NOMEM, "out of memory for densities");
            else
                density(g, conf);
        }
        if (rc == 0)
            peaks(g, p->weight ? mag : conf, p->tau, parent);
    } else if (rc == 0)
        rc = anchors(g, mag, p, parent, assigned);
    if (rc == 0)
        mf_uf_labels(parent, assigned, n, label);
    free(parent), free(assigned), free(conf);
    return rc;
}

/* Collectors: an identity has about q / (1 - q) leaves per anchor (q = anchor_quantile);
 * a cluster of more than k rows with MF_CLUSTER_SUSPECT_RATIO times that many has
 * gathered low-quality rows (junk near the drift direction) that no identity's
 * neighbourhood accounts for. */
static int suspect_clusters(const mf_knn_graph *g, const float *mag,
                            const mf_cluster_params *p, const int64_t *label,
                            mf_cluster_stats *st)
{
    size_t n = g->n;
    float cut = -INFINITY;
    double expect = p->anchor_quantile / (1 - p->anchor_quantile);
    size_t *cnt = calloc(2 * n, sizeof *cnt); /* [c]: anchors, [n + c]: leaves */
    if (!cnt || mf_cluster_quantile(mag, n, p->anchor_quantile, &cut) < 0) {
        free(cnt);
        return mf_set_error(MF_ERR_NOMEM, "out of memory counting leaves");
    }
    for (size_t i = 0; i < n; i++)
        if (label[i] >= 0)
            cnt[(mag[i] >= cut ? 0 : n) + (size_t)label[i]]++;
    for (size_t c = 0; c < n; c++) {
        size_t a = cnt[c], l = cnt[n + c];
        if (a + l > (size_t)g->k && (double)l > MF_CLUSTER_SUSPECT_RATIO * expect * (double)a) {
            st->suspect++;
            st->suspect_rows += a + l;
        }
    }
    free(cnt);
    return 0;
}

int mf_cluster_run(const mf_knn_graph *g, const float *magnitude, const mf_cluster_params *p,
                   int64_t *label, mf_cluster_stats *stats)
{
    if (!g || !label || (unsigned)p->method >= MF_CLUSTER_METHODS)
        return mf_set_error(MF_ERR_ARG, "cluster: bad arguments");
    if (p->weight && !magnitude)
        return mf_set_error(MF_ERR_ARG, "cluster: quality weighting needs magnitudes");
    if (!(p->anchor_quantile >= 0 && p->anchor_quantile < 1))
        return mf_set_error(MF_ERR_ARG, "cluster: anchor quantile must be in [0, 1)");
    if (g->n == 0)
        return mf_cluster_stats_of(0, label, stats);
    mf_cluster_params chosen = *p;
    int rc = mf_cluster_auto(g, magnitude, &chosen, NULL, 0);
    p = &chosen;
    if (rc == 0 && (p->method == MF_CLUSTER_INFOMAP || p->method == MF_CLUSTER_LEIDEN))
        rc = mf_cluster_igraph(g, magnitude, p, label);
    else if (rc == 0)
        rc = run_union_find(g, magnitude, p, label);
    if (rc == 0 && stats)
        rc = mf_cluster_stats_of(g->n, label, stats);
    if (rc == 0 && stats && p->method == MF_CLUSTER_ANCHORS && p->weight)
        rc = suspect_clusters(g, magnitude, p, label, stats);
    return rc;
}

int mf_cluster_stats_of(size_t n, const int64_t *label, mf_cluster_stats *st)
{
    if (!st)
        return 0;
    memset(st, 0, sizeof *st);
    int64_t maxl = -1;
    for (size_t i = 0; i < n; i++)
        maxl = label[i] > maxl ? label[i] : maxl;
    if (maxl >= (int64_t)n)
        return mf_set_error(MF_ERR_ARG, "cluster stats: labels must be dense (< rows)");
    size_t *size = calloc((size_t)(maxl + 1) + 1, sizeof *size);
    if (!size)
        return mf_set_error(MF_ERR_NOMEM, "out of memory counting clusters");
    for (size_t i = 0; i < n; i++) {
        if (label[i] < 0)
            st->unassigned++;
        else
            size[label[i]]++;
    }
    for (int64_t c = 0; c <= maxl; c++) {
        size_t s = size[c];
        if (!s)
            continue;
        st->clusters++;
        st->singletons += s == 1;
        st->largest = s > st->largest ? s : st->largest;
        int b = 0;
        while (b < 7 && s >= ((size_t)2 << b))
            b++;
        st->size_hist[b]++;
    }
    free(size);
    return 0;
}
