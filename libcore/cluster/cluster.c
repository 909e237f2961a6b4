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
    /* CPM: a community of S rows in a kNN graph holds while about k w / S (w: its mean
     * edge cosine) exceeds the resolution (measured: ~500 rows at 0.04), so 0.015 lets
     * identities of ~1,400 rows stay whole. The minimax of the gap to calibration over
     * bench_robust's grid, both draws, among 0.005-0.04: below it look-alike
     * identities merge, above it large identities break. */
    p->resolution = 0.015;
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

int mf_cluster_uses_leaves(const mf_cluster_params *p)
{
    return p->weight && (p->method == MF_CLUSTER_ANCHORS || p->method == MF_CLUSTER_INFOMAP ||
                         p->method == MF_CLUSTER_LEIDEN);
}

/* is_anchor[i]: row i's magnitude is at or above the anchor quantile's (every row
 * without quality weighting). Malloc'ed into *out. */
static int anchor_mask(const float *mag, size_t n, const mf_cluster_params *p,
                       unsigned char **out)
{
    float cut = -INFINITY;
    if (p->weight && mf_cluster_quantile(mag, n, p->anchor_quantile, &cut) < 0)
        return MF_ERR_NOMEM;
    unsigned char *is_anchor = malloc(n ? n : 1);
    if (!is_anchor)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu anchor flags", n);
    for (size_t i = 0; i < n; i++)
        is_anchor[i] = !p->weight || mag[i] >= cut;
    *out = is_anchor;
    return 0;
}

/* anchors: the anchors' edges at >= tau, joined. */
static int join_anchors(const mf_knn_graph *g, const unsigned char *is_anchor, float tau,
                        int64_t *parent)
{
    size_t n = g->n;
    int k = g->k;
    unsigned char *keep = malloc(n * (size_t)k);
    if (!keep)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu x %d edge flags", n, k);
#pragma omp parallel for schedule(dynamic, 256)
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < k; r++) {
            int64_t j = g->nbr[i * k + r];
            keep[i * k + r] =
                j >= 0 && is_anchor[i] && is_anchor[j] && g->sim[i * k + r] >= tau;
        }
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < k; r++)
            if (keep[i * k + r])
                mf_uf_union(parent, (int64_t)i, g->nbr[i * k + r]);
    free(keep);
    return 0;
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

/* Every row that is no anchor hangs from its best anchor neighbour at >= tau2, else
 * (attach_via_leaves) from an attached leaf; parent holds the anchors' clusters.
 * assigned[i] = 0 for leaves that found nothing. Leaves never join anything else, so the
 * order of attachment does not matter. */
static int hang_leaves(const mf_knn_graph *g, const unsigned char *is_anchor, float tau2,
                       int64_t *parent, unsigned char *assigned)
{
    size_t n = g->n;
    int k = g->k;
    for (size_t i = 0; i < n; i++) {
        if (is_anchor[i])
            continue;
        for (int r = 0; r < k; r++) {
            int64_t j = g->nbr[i * k + r];
            if (j < 0 || g->sim[i * k + r] < tau2)
                break;
            if (is_anchor[j]) {
                parent[i] = mf_uf_find(parent, j);
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        assigned[i] = is_anchor[i] || parent[i] != (int64_t)i;
    return attach_via_leaves(g, tau2, parent, assigned);
}

/* igraph's communities (of the anchors, or of every row) as union-find sets. */
static int join_communities(const mf_knn_graph *g, const unsigned char *is_anchor,
                            const mf_cluster_params *p, int64_t *parent)
{
    size_t n = g->n;
    int64_t *community = malloc(n * sizeof *community), *first = malloc(n * sizeof *first);
    int rc = community && first
                 ? mf_cluster_igraph(g, is_anchor, p, community)
                 : mf_set_error(MF_ERR_NOMEM, "out of memory for %zu community labels", n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        first[i] = -1;
    for (size_t i = 0; rc == 0 && i < n; i++) { /* ids are dense: 0 .. communities - 1 */
        int64_t c = community[i];
        if (c < 0)
            continue;
        if (first[c] < 0)
            first[c] = (int64_t)i;
        else
            mf_uf_union(parent, first[c], (int64_t)i);
    }
    free(community), free(first);
    return rc;
}

/* Every method: the clusters of the anchors (every row, for methods without leaves) as
 * union-find sets, then the leaves hung from them. */
static int run_method(const mf_knn_graph *g, const float *mag, const mf_cluster_params *p,
                      int64_t *label)
{
    size_t n = g->n;
    int64_t *parent = malloc(n * sizeof *parent);
    unsigned char *assigned = malloc(n), *is_anchor = NULL;
    float *conf = NULL;
    int leaves = mf_cluster_uses_leaves(p);
    int rc = parent && assigned
                 ? 0
                 : mf_set_error(MF_ERR_NOMEM, "out of memory clustering %zu rows", n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        parent[i] = (int64_t)i, assigned[i] = 1;
    if (rc == 0 && (leaves || p->method == MF_CLUSTER_ANCHORS))
        rc = anchor_mask(mag, n, p, &is_anchor);
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
    } else if (rc == 0 && p->method == MF_CLUSTER_ANCHORS)
        rc = join_anchors(g, is_anchor, p->tau, parent);
    else if (rc == 0)
        rc = join_communities(g, leaves ? is_anchor : NULL, p, parent);
    if (rc == 0 && leaves)
        rc = hang_leaves(g, is_anchor, p->tau2, parent, assigned);
    if (rc == 0)
        mf_uf_labels(parent, assigned, n, label);
    free(parent), free(assigned), free(conf), free(is_anchor);
    return rc;
}

/* Collectors: an identity has about q / (1 - q) leaves per anchor (q = anchor_quantile);
 * a cluster of more than k rows with MF_CLUSTER_SUSPECT_RATIO times that many has
 * gathered low-quality rows (junk near the drift direction) that no identity's
 * neighbourhood accounts for. */
static int suspect_clusters(const mf_knn_graph *g, const float *mag, const mf_cluster_params *p,
                            const int64_t *label, mf_cluster_stats *st)
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
    if (rc == 0)
        rc = run_method(g, magnitude, p, label);
    if (rc == 0 && stats)
        rc = mf_cluster_stats_of(g->n, label, stats);
    if (rc == 0 && stats && mf_cluster_uses_leaves(p))
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
