/* refine.c - improve an approximate kNN graph from its own edges (see knn_internal.h).
 *
 * An inverted-list join misses neighbours that sit in lists the row did not probe; the
 * typical case on face data is a sharp face whose own identity's blurred samples drifted
 * into the lists of the shared 'unrecognisable' direction. Two cheap sources find most of
 * them again: the reverse edges (the blurred sample did probe the sharp face's list) and
 * the neighbours of neighbours (what is close to my close neighbours is likely close to
 * me), as in NN-descent. Every candidate is scored exactly in float32, so the result's
 * similarities are exact whatever produced the input graph.
 *
 * Each row is computed by one thread from the previous round's graph only, so the result
 * does not depend on the thread count or on the order rows are visited in (which only
 * decides what stays in cache: rows of one inverted list share most candidates). Work per
 * row is bounded: its input row, at most REFINE_REVERSE_CAP reverse edges and fan x fan neighbours of neighbours. */
#include <stdlib.h>
#include <string.h>

#include "knn_internal.h"
#include "mf/status.h"

/* Inner product with 16 independent partial sums, which the compiler vectorises (one
 * running sum would have to be added in order). */
float mf_knn_dot(const float *a, const float *b, int dim)
{
    float acc[16] = {0};
    int d = 0;
    for (; d + 16 <= dim; d += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += a[d + l] * b[d + l];
    float s = 0;
    for (; d < dim; d++)
        s += a[d] * b[d];
    for (int l = 0; l < 16; l++)
        s += acc[l];
    return s;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Reverse edges of g as CSR: rstart[n+1], rrow[] (sources in increasing row order). */
static int reverse_edges(const mf_knn_graph *g, size_t **rstart, int64_t **rrow)
{
    size_t n = g->n, cells = n * (size_t)g->k;
    size_t *start = calloc(n + 1, sizeof *start);
    int64_t *row = malloc((cells ? cells : 1) * sizeof *row);
    size_t *fill = malloc((n ? n : 1) * sizeof *fill);
    if (!start || !row || !fill) {
        free(start), free(row), free(fill);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for reverse kNN edges");
    }
    for (size_t c = 0; c < cells; c++)
        if (g->nbr[c] >= 0)
            start[g->nbr[c] + 1]++;
    for (size_t i = 0; i < n; i++)
        start[i + 1] += start[i];
    memcpy(fill, start, n * sizeof *fill);
    for (size_t c = 0; c < cells; c++)
        if (g->nbr[c] >= 0)
            row[fill[g->nbr[c]]++] = (int64_t)(c / g->k);
    free(fill);
    *rstart = start;
    *rrow = row;
    return 0;
}

/* One round: out (k columns) from in (any width). */
static int refine_round(mf_knn_graph *out, const mf_knn_graph *in, const float *x, int dim,
                        int fan, const int32_t *order, mf_knn_meter *meter)
{
    size_t n = in->n, *rs;
    int64_t *rr;
    int rc = reverse_edges(in, &rs, &rr);
    if (rc < 0)
        return rc;
    int kin = in->k, k = out->k, f = fan < kin ? fan : kin;
    size_t cap = (size_t)kin + REFINE_REVERSE_CAP + (size_t)f * f;
    int failed = 0;
#pragma omp parallel
    {
        int64_t *cand = malloc(cap * sizeof *cand);
        if (!cand) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 256)
        for (size_t t = 0; t < n; t++) {
            if (!cand)
                continue;
            size_t i = order ? (size_t)order[t] : t;
            const int64_t *row = in->nbr + i * kin;
            size_t m = 0;
            for (int r = 0; r < kin && row[r] >= 0; r++)
                cand[m++] = row[r];
            for (size_t e = rs[i]; e < rs[i + 1] && e < rs[i] + REFINE_REVERSE_CAP; e++)
                cand[m++] = rr[e];
            for (int r = 0; r < f && row[r] >= 0; r++) {
                const int64_t *nn = in->nbr + row[r] * kin;
                for (int u = 0; u < f && nn[u] >= 0; u++)
                    cand[m++] = nn[u];
            }
            qsort(cand, m, sizeof *cand, cmp_i64);
            int64_t *nb = out->nbr + i * k;
            float *sm = out->sim + i * k;
            for (int r = 0; r < k; r++)
                nb[r] = -1, sm[r] = -2.0f;
            const float *xi = x + i * (size_t)dim;
            for (size_t c = 0; c < m; c++) {
                if ((c > 0 && cand[c] == cand[c - 1]) || cand[c] == (int64_t)i)
                    continue;
                mf_knn_topk_push(nb, sm, k, cand[c],
                                 mf_knn_dot(xi, x + cand[c] * (size_t)dim, dim));
            }
            mf_knn_meter_add(meter, 1);
        }
        free(cand);
    }
    free(rs), free(rr);
    return failed ? mf_set_error(MF_ERR_NOMEM, "out of memory refining the kNN graph") : 0;
}

int mf_knn_refine(mf_knn_graph *g, const mf_knn_graph *in, const float *x, int dim, int rounds,
                  int fan, const int32_t *order, mf_knn_meter *meter)
{
    /* Rounds alternate between g and one scratch graph, ending in g; every round rewrites
     * each row of its output, so neither needs clearing. */
    mf_knn_graph *scratch = NULL;
    int rc = rounds > 1 ? mf_knn_graph_alloc(&scratch, g->n, g->k) : 0;
    const mf_knn_graph *cur = in;
    for (int r = 0; rc == 0 && r < rounds; r++) {
        mf_knn_graph *next = (rounds - 1 - r) % 2 ? scratch : g;
        rc = refine_round(next, cur, x, dim, fan, order, meter);
        cur = next;
    }
    mf_knn_free(scratch);
    return rc;
}
