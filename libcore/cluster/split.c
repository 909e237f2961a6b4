/* split.c - clusters that are chains of identities, re-clustered on their own edges.
 *
 * A method with one threshold for the whole graph can chain: at the threshold that suits
 * most identities, a run of borderline edges (low-quality faces, look-alikes, a weak
 * model's overlapping identities) joins hundreds of identities into one cluster. Such a
 * cluster is told by its coherence, the mean cosine between two of its rows:
 *     coherence = (|sum u|^2 - S) / (S (S - 1))      (u: unit embeddings, S rows)
 * Rows of one identity are on average more alike than two neighbouring rows of different
 * identities; a chain's rows are mostly pairs of different identities, so its coherence
 * falls below the graph's different-identity mode (mf_cluster_scale.lo). Measured over the mf-synth grid of bench/bench_robust.sh
 * (docs/CLUSTER.md): every cluster of > k rows below that mode was a chain (purity
 * <= 0.35), and no cluster of one identity (purity >= 0.9, 2,223 of them) came within
 * 0.02 of it.
 * A chain is clustered again by the same method on the edges between its own rows, with
 * tau raised to the valley (if below) plus a quarter of the span between the valley and
 * the same-identity mode; pieces that are still chains are split again (one pass over
 * the store per round), up to the same-identity mode. Only clusters of more than k rows
 * are judged: below that a neighbourhood can hold the whole cluster, and the estimate is
 * noisy. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "mf/status.h"
#include "mf/store.h"

#define RAISE_SHARE 0.25 /* tau step per round, share of (mode - valley) */
#define MAX_ROUNDS 8

/* The graph restricted to `rows` (sorted): each row keeps its neighbours inside, in
 * order, the rest of its list padded as missing. local[] maps a graph row to its index
 * in rows (valid for members only). */
static int subgraph(const mf_knn_graph *g, const int64_t *rows, size_t m, const int64_t *local,
                    const int64_t *label, int64_t c, mf_knn_graph **out)
{
    size_t k = (size_t)g->k;
    int64_t *nbr = malloc(m * k * sizeof *nbr);
    float *sim = malloc(m * k * sizeof *sim);
    int rc = nbr && sim ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory for a subgraph");
    for (size_t i = 0; rc == 0 && i < m; i++) {
        size_t at = 0;
        for (size_t r = 0; r < k; r++) {
            int64_t j = g->nbr[(size_t)rows[i] * k + r];
            if (j >= 0 && label[j] == c) {
                nbr[i * k + at] = local[j];
                sim[i * k + at++] = g->sim[(size_t)rows[i] * k + r];
            }
        }
        for (; at < k; at++)
            nbr[i * k + at] = -1, sim[i * k + at] = -2;
    }
    if (rc == 0)
        rc = mf_knn_from_arrays(out, m, g->k, nbr, sim);
    free(nbr), free(sim);
    return rc;
}

/* Cluster the m rows of cluster c (sorted; label says who is in c) again at tau, into dst:
 * pieces get ids from *next on, rows the method leaves unassigned get -1. */
static int recluster(const mf_knn_graph *g, const float *mag, const mf_cluster_params *p,
                     float tau, float anchor_cut, int64_t c, const int64_t *rows, size_t m,
                     const int64_t *label, int64_t *local, int64_t *dst, int64_t *next)
{
    int64_t *sub_label = malloc(m * sizeof *sub_label);
    float *sub_mag = mag ? malloc(m * sizeof *sub_mag) : NULL;
    mf_knn_graph *sub = NULL;
    int rc = sub_label && (!mag || sub_mag)
                 ? 0
                 : mf_set_error(MF_ERR_NOMEM, "out of memory re-clustering %zu rows", m);
    size_t below = 0;
    for (size_t at = 0; rc == 0 && at < m; at++) {
        local[rows[at]] = (int64_t)at;
        if (mag) {
            sub_mag[at] = mag[rows[at]];
            below += mag[rows[at]] < anchor_cut;
        }
    }
    mf_cluster_params q = *p;
    q.tau = tau;
    /* anchors: the same rows are anchors as in the whole graph, through the quantile that
     * puts the sub-cluster's cut at the global one (the half keeps the index off a
     * rounding edge); a chain of leaves only has no anchor to hang from */
    int anchored = mf_cluster_uses_leaves(p);
    q.anchor_quantile = anchored ? ((double)below + 0.5) / (double)m : p->anchor_quantile;
    if (rc == 0 && anchored && below == m)
        for (size_t i = 0; i < m; i++)
            sub_label[i] = -1;
    else if (rc == 0 && (rc = subgraph(g, rows, m, local, label, c, &sub)) == 0)
        rc = mf_cluster_run(sub, sub_mag, &q, sub_label, NULL);
    int64_t most = -1;
    for (size_t i = 0; rc == 0 && i < m; i++)
        most = sub_label[i] > most ? sub_label[i] : most;
    for (size_t i = 0; rc == 0 && i < m; i++)
        dst[rows[i]] = sub_label[i] < 0 ? -1 : *next + sub_label[i];
    if (rc == 0)
        *next += most + 1;
    mf_knn_free(sub);
    free(sub_label), free(sub_mag);
    return rc;
}

/* Rows grouped by cluster: rows of cluster c are order[first[c] .. first[c + 1]), in
 * row order (a counting sort). */
static void group_rows(const int64_t *label, size_t n, const size_t *size, size_t clusters,
                       size_t *first, int64_t *order)
{
    first[0] = 0;
    for (size_t c = 0; c < clusters; c++)
        first[c + 1] = first[c] + size[c];
    for (size_t i = 0; i < n; i++)
        if (label[i] >= 0)
            order[first[label[i]]++] = (int64_t)i;
    for (size_t c = clusters; c > 0; c--) /* first[] was advanced to the ends: shift back */
        first[c] = first[c - 1];
    first[0] = 0;
}

/* Do the large pieces of trial ids [lo_id, hi_id) include two that are as unlike as
 * rows of different identities? */
static int separated(const mf_cluster_sums *ps, const size_t *piece_size, int64_t lo_id, int64_t hi_id,
                     double lo)
{
    for (int64_t a = lo_id; a < hi_id; a++)
        for (int64_t b = a + 1; ps->slot[a] >= 0 && b < hi_id; b++)
            if (ps->slot[b] >= 0 && mf_cluster_mean_cosine(ps, (size_t)a, (double)piece_size[a], (size_t)b,
                                                (double)piece_size[b]) < lo)
                return 1;
    return 0;
}

int mf_cluster_split_chains(const mf_knn_graph *g, const float *magnitude,
                            const mf_cluster_params *p, const mf_cluster_scale *sc,
                            mf_store *s, int64_t *label, mf_cluster_chains *out)
{
    memset(out, 0, sizeof *out);
    size_t n = g->n, k = (size_t)g->k;
    if (mf_store_rows(s) != n)
        return mf_set_error(MF_ERR_ARG, "split chains: the store has %zu rows, the graph %zu",
                            (size_t)mf_store_rows(s), n);
    /* only methods with leaves re-cluster around the anchor cut: the others need no sort */
    float anchor_cut = -INFINITY;
    if (mf_cluster_uses_leaves(p) &&
        mf_cluster_quantile(magnitude, n, p->anchor_quantile, &anchor_cut) < 0)
        return MF_ERR_NOMEM;
    int64_t next = 0;
    for (size_t i = 0; i < n; i++)
        next = label[i] >= next ? label[i] + 1 : next;
    int64_t *local = malloc(n * sizeof *local), *trial = malloc(n * sizeof *trial);
    int64_t *order = malloc(n * sizeof *order);
    int rc = local && trial && order ? 0
                                     : mf_set_error(MF_ERR_NOMEM, "out of memory for %zu rows", n);
    double step = RAISE_SHARE * (sc->hi - sc->valley);
    float tau = p->tau;
    for (int round = 0; rc == 0 && round < MAX_ROUNDS; round++) {
        size_t clusters = (size_t)next;
        size_t *size = mf_cluster_sizes(label, n, clusters), *piece_size = NULL;
        size_t *first = malloc((clusters + 1) * sizeof *first);
        int64_t *trial_from = malloc((clusters + 1) * sizeof *trial_from);
        mf_cluster_sums cs = {0}, ps = {0};
        if (!size || !first || !trial_from)
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory for %zu clusters", clusters);
        if (rc == 0)
            rc = mf_cluster_sums_of(s, label, size, clusters, k, &cs);
        if (rc == 0)
            group_rows(label, n, size, clusters, first, order);
        /* a chain's edges below the valley are the suspect ones: from there, by steps */
        tau = (float)(fmax(tau, sc->valley) + step);
        int can_raise = step > 0 && tau < sc->hi;
        /* every large cluster is clustered again at tau, on trial */
        int64_t trials = 0;
        for (size_t i = 0; i < n; i++)
            trial[i] = -1;
        for (size_t c = 0; rc == 0 && c < clusters; c++) {
            trial_from[c] = trials;
            if (can_raise && cs.slot[c] >= 0)
                rc = recluster(g, magnitude, p, tau, anchor_cut, (int64_t)c, order + first[c],
                               size[c], label, local, trial, &trials);
        }
        trial_from[clusters] = trials;
        if (rc == 0 && can_raise) {
            piece_size = mf_cluster_sizes(trial, n, (size_t)trials);
            rc = piece_size ? mf_cluster_sums_of(s, trial, piece_size, (size_t)trials, k, &ps)
                            : mf_set_error(MF_ERR_NOMEM, "out of memory for pieces");
        }
        /* kept: a chain (its rows less alike than different identities), or a cluster
         * whose trial holds two large pieces that unlike */
        size_t split = 0;
        for (size_t c = 0; rc == 0 && c < clusters; c++) {
            if (cs.slot[c] < 0)
                continue;
            double coh = mf_cluster_mean_cosine(&cs, c, (double)size[c], c, (double)size[c]);
            int chain = coh < sc->lo;
            if (chain && round == 0) {
                out->found++, out->rows += size[c];
                if (out->largest_rows < size[c])
                    out->largest_rows = size[c], out->largest_coherence = coh;
            }
            if (!can_raise) {
                if (chain)
                    out->left++, out->left_rows += size[c];
                continue;
            }
            if (!chain && !separated(&ps, piece_size, trial_from[c], trial_from[c + 1], sc->lo))
                continue;
            out->merged += !chain;
            for (size_t r = first[c]; r < first[c] + size[c]; r++) {
                int64_t t = trial[order[r]];
                label[order[r]] = t < 0 ? -1 : next + (t - trial_from[c]);
            }
            next += trial_from[c + 1] - trial_from[c];
            out->pieces += (size_t)(trial_from[c + 1] - trial_from[c]);
            split++;
        }
        free(size), free(first), free(trial_from), free(piece_size);
        mf_cluster_sums_free(&cs), mf_cluster_sums_free(&ps);
        if (!split)
            break;
        out->rounds = round + 1;
        out->tau = tau;
    }
    free(local), free(trial), free(order);
    if (rc == 0 && (out->found || out->merged))
        rc = mf_cluster_renumber(label, n, next);
    return rc;
}
