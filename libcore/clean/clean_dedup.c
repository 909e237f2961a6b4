/* clean_dedup.c - rule 3 (near-duplicates) and the range searches behind it and behind
 * rule 4, on knn's exact index (mf_knn_flat; FAISS stays inside libcore/knn).
 *
 * Duplicates: the rows still kept, as unit vectors, are searched exactly (cosine >= COS):
 * one index over all of them up to dedup_flat_max rows (streamed from the store), above
 * that inside k-means cells (see below; the kept vectors are then held in memory,
 * n * dim floats). Groups are the connected components of the pairs; each keeps its
 * highest-magnitude row (ties: the first row). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean_internal.h"
#include "clean_pairs.h"
#include "mf/knn.h"
#include "mf/status.h"
#include "vec.h"

/* Refuse to collect more pairs than this: a threshold so low that most rows match. */
#define MAX_PAIRS (200u * 1000u * 1000u)

void clean_pairs_release(clean_pairs *p)
{
    free(p->a), free(p->b), free(p->sim);
    memset(p, 0, sizeof *p);
}

static int push_pair(clean_pairs *p, int64_t a, int64_t b, float sim)
{
    if (p->n == p->cap) {
        if (p->cap >= MAX_PAIRS)
            return mf_set_error(MF_ERR_LIMIT,
                                "more than %u pairs above the cosine threshold: "
                                "raise it",
                                MAX_PAIRS);
        size_t cap_a = p->cap, cap_b = p->cap, cap_s = p->cap;
        if (MF_GROW(p->a, cap_a, p->n + 1, "similar pairs") < 0 ||
            MF_GROW(p->b, cap_b, p->n + 1, "similar pairs") < 0 ||
            MF_GROW(p->sim, cap_s, p->n + 1, "similar pairs") < 0)
            return MF_ERR_NOMEM;
        p->cap = cap_a; /* all three grew alike */
    }
    p->a[p->n] = a, p->b[p->n] = b, p->sim[p->n] = sim;
    p->n++;
    return 0;
}

/* Range-search callback: collect the pair, never a row with itself. */
static int collect_pair(void *ctx, int64_t query, int64_t id, float sim)
{
    return query == id ? 0 : push_pair(ctx, query, id, sim);
}

/* Rows are queried in batches of this many (the result lists of a batch are in memory). */
#define QUERY_BATCH ((size_t)4096)

int clean_pairs_in_memory(const float *x, size_t n, int dim, double thr, clean_pairs *out)
{
    if (n == 0)
        return 0;
    mf_knn_flat *f;
    int rc = mf_knn_flat_new(&f, dim);
    if (rc == 0)
        rc = mf_knn_flat_add(f, x, n);
    for (size_t s = 0; s < n && rc == 0; s += QUERY_BATCH)
        rc =
            mf_knn_flat_range(f, x + s * (size_t)dim, n - s < QUERY_BATCH ? n - s : QUERY_BATCH,
                              (int64_t)s, (float)thr, collect_pair, out);
    mf_knn_flat_free(f);
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

/* ---- large stores: exact range search inside k-means cells ------------------------------
 *
 * FAISS's IVF scan has no SIMD in Debian's generic build, so for large stores the
 * vectors are partitioned with spherical k-means (~CELL_ROWS per cell) and each cell is
 * searched exactly with an IndexFlatIP range search (BLAS). A vector is stored in its
 * two nearest cells and queries only its nearest one: two near-duplicates sit almost on
 * top of each other, so the nearest cell of one is among the two nearest of the other. */

#define CELL_ROWS 500
#define KMEANS_SAMPLE_PER_CELL 16

typedef struct gather_state {
    float *all; /* n * dim, the kept unit vectors in row order */
    int dim;
} gather_state;

static int gather_batch(void *ctx, const float *v, size_t m, uint64_t first)
{
    gather_state *g = ctx;
    memcpy(g->all + first * (size_t)g->dim, v, m * (size_t)g->dim * sizeof(float));
    return 0;
}

/* An exact index over the centroids of `cells` spherical k-means cells of the rows. */
static int train_cells(const float *all, uint64_t n, int dim, int cells, mf_knn_flat **quant)
{
    float *cent = malloc((size_t)cells * (size_t)dim * sizeof *cent);
    int rc = cent ? mf_knn_kmeans(all, n, dim, cells, KMEANS_SAMPLE_PER_CELL, 10, cent)
                  : mf_set_error(MF_ERR_NOMEM, "out of memory for %d centroids", cells);
    *quant = NULL;
    if (rc == 0)
        rc = mf_knn_flat_new(quant, dim);
    if (rc == 0)
        rc = mf_knn_flat_add(*quant, cent, (size_t)cells);
    free(cent);
    return rc;
}

/* Counting sort of entries (cell[e], id[e]) into offsets[cells + 1] and members. */
static int group_by_cell(const int64_t *cell, size_t entries, size_t step, int cells,
                         uint64_t **offsets, uint64_t **members)
{
    *offsets = calloc((size_t)cells + 1, sizeof **offsets);
    *members = malloc((entries / step + 1) * sizeof **members);
    uint64_t *fill = calloc((size_t)cells + 1, sizeof *fill);
    if (!*offsets || !*members || !fill) {
        free(fill);
        return mf_set_error(MF_ERR_NOMEM, "cannot group vectors by cell");
    }
    for (size_t e = 0; e < entries; e++)
        if (cell[e] >= 0 && (step == 1 || e % step == 0))
            (*offsets)[cell[e] + 1]++;
    for (int c = 0; c < cells; c++)
        (*offsets)[c + 1] += (*offsets)[c];
    for (size_t e = 0; e < entries; e++)
        if (cell[e] >= 0 && (step == 1 || e % step == 0))
            (*members)[(*offsets)[cell[e]] + fill[cell[e]]++] = e / 2; /* entries: 2 per id */
    free(fill);
    return 0;
}

/* A cell's pairs, numbered by position in the cell's queries and stored rows, mapped
 * back to the kept rows' numbers. */
typedef struct cell_pairs {
    const uint64_t *qs, *db;
    clean_pairs *out;
} cell_pairs;

static int collect_cell_pair(void *ctx, int64_t query, int64_t id, float sim)
{
    const cell_pairs *c = ctx;
    uint64_t a = c->qs[query], b = c->db[id];
    return a == b ? 0 : push_pair(c->out, (int64_t)a, (int64_t)b, sim);
}

/* Range search the cell's queries against the cell's stored vectors. */
static int search_cell(const float *all, int dim, const uint64_t *db, size_t ndb,
                       const uint64_t *qs, size_t nq, float *dbuf, float *qbuf, double thr,
                       clean_pairs *out)
{
    if (nq == 0 || ndb < 2)
        return 0;
    size_t row = (size_t)dim * sizeof(float);
    for (size_t i = 0; i < ndb; i++)
        memcpy(dbuf + i * (size_t)dim, all + db[i] * (size_t)dim, row);
    for (size_t i = 0; i < nq; i++)
        memcpy(qbuf + i * (size_t)dim, all + qs[i] * (size_t)dim, row);
    mf_knn_flat *f;
    cell_pairs cp = {qs, db, out};
    int rc = mf_knn_flat_new(&f, dim);
    if (rc == 0)
        rc = mf_knn_flat_add(f, dbuf, ndb);
    if (rc == 0)
        rc = mf_knn_flat_range(f, qbuf, nq, 0, (float)thr, collect_cell_pair, &cp);
    mf_knn_flat_free(f);
    return rc;
}

static int search_cells(const float *all, uint64_t n, int dim, int cells, const int64_t *top2,
                        double thr, clean_pairs *pairs)
{
    uint64_t *db_off = NULL, *db = NULL, *q_off = NULL, *q = NULL;
    int rc = group_by_cell(top2, (size_t)n * 2, 1, cells, &db_off, &db);
    if (rc == 0)
        rc = group_by_cell(top2, (size_t)n * 2, 2, cells, &q_off, &q);
    size_t max_db = 0, max_q = 0;
    for (int c = 0; rc == 0 && c < cells; c++) {
        max_db = db_off[c + 1] - db_off[c] > max_db ? db_off[c + 1] - db_off[c] : max_db;
        max_q = q_off[c + 1] - q_off[c] > max_q ? q_off[c + 1] - q_off[c] : max_q;
    }
    float *dbuf = malloc((max_db + 1) * (size_t)dim * sizeof(float));
    float *qbuf = malloc((max_q + 1) * (size_t)dim * sizeof(float));
    if (rc == 0 && (!dbuf || !qbuf))
        rc = mf_set_error(MF_ERR_NOMEM, "cannot allocate a cell of %zu vectors", max_db);
    for (int c = 0; rc == 0 && c < cells; c++)
        rc = search_cell(all, dim, db + db_off[c], db_off[c + 1] - db_off[c], q + q_off[c],
                         q_off[c + 1] - q_off[c], dbuf, qbuf, thr, pairs);
    free(dbuf), free(qbuf), free(db_off), free(db), free(q_off), free(q);
    return rc;
}

static int find_pairs_cells(clean_ctx *c, const uint8_t *keep, uint64_t n, clean_pairs *pairs)
{
    size_t bytes;
    if (mf_size_mul((size_t)n, (size_t)c->dim * sizeof(float), &bytes, "duplicate search") < 0)
        return MF_ERR_NOMEM;
    gather_state g = {malloc(bytes), c->dim};
    int64_t *top2 = malloc((size_t)n * 2 * sizeof *top2);
    float *sim2 = malloc((size_t)n * 2 * sizeof *sim2);
    int cells = (int)fmin(65536, fmax(2, (double)n / CELL_ROWS));
    mf_knn_flat *quant = NULL;
    int rc = g.all && top2 && sim2 ? 0
                                   : mf_set_error(MF_ERR_NOMEM,
                                                  "cannot hold %llu "
                                                  "vectors for the duplicate search",
                                                  (unsigned long long)n);
    if (rc == 0)
        rc = for_each_kept(c, keep, gather_batch, &g);
    if (rc == 0)
        rc = train_cells(g.all, n, c->dim, cells, &quant);
    const uint64_t batch = 65536;
    for (uint64_t s = 0; rc == 0 && s < n; s += batch)
        rc = mf_knn_flat_search(quant, g.all + s * (size_t)c->dim,
                                (size_t)(n - s < batch ? n - s : batch), 2, sim2 + 2 * s,
                                top2 + 2 * s);
    if (rc == 0)
        rc = search_cells(g.all, n, c->dim, cells, top2, c->p->dedup_cos, pairs);
    mf_knn_flat_free(quant);
    free(g.all), free(top2), free(sim2);
    return rc;
}

typedef struct flat_state {
    mf_knn_flat *idx;
    double thr;
    clean_pairs *pairs;
} flat_state;

static int add_batch(void *ctx, const float *v, size_t m, uint64_t first)
{
    flat_state *st = ctx;
    return mf_knn_flat_add(st->idx, v, m);
}

static int search_batch(void *ctx, const float *v, size_t m, uint64_t first)
{
    flat_state *st = ctx;
    return mf_knn_flat_range(st->idx, v, m, (int64_t)first, (float)st->thr, collect_pair,
                             st->pairs);
}

static int find_pairs(clean_ctx *c, const uint8_t *keep, uint64_t n, clean_pairs *pairs)
{
    if (n > c->p->dedup_flat_max)
        return find_pairs_cells(c, keep, n, pairs);
    flat_state st = {NULL, c->p->dedup_cos, pairs};
    int rc = mf_knn_flat_new(&st.idx, c->dim);
    if (rc == 0)
        rc = for_each_kept(c, keep, add_batch, &st);
    if (rc == 0)
        rc = for_each_kept(c, keep, search_batch, &st);
    mf_knn_flat_free(st.idx);
    return rc;
}

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
        return mf_set_error(MF_ERR_NOMEM, "cannot group %llu duplicates",
                            (unsigned long long)n);
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
            if (fig[a] < 2)
                fig[a] = fmaxf(fig[a], pairs->sim[j]);
            if (fig[b] < 2)
                fig[b] = fmaxf(fig[b], pairs->sim[j]);
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
