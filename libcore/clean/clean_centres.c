/* clean_centres.c - identity centres: quality-weighted sums of a label's unit embeddings
 * (weights from magnitude, clean_weight, so blurry samples barely move them), shared by
 * rule 2 (clean_outliers.c), and rule 4: labels whose centres coincide. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clean_internal.h"
#include "clean_pairs.h"
#include "mf/status.h"

#define DIM_BLOCK 32

int clean_label_sums(clean_ctx *c, const uint8_t *use, const float *w, double *sums)
{
    int dim = c->dim;
    memset(sums, 0, c->lab.n * (size_t)dim * sizeof *sums);
    const int32_t *dense = c->lab.dense;
    for (uint64_t s = 0; s < c->rows; s += c->chunk) {
        size_t m = c->rows - s < c->chunk ? (size_t)(c->rows - s) : c->chunk;
        int rc = clean_read_unit_wanted(c, s, m, use);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        const float *buf = c->buf;
        int blocks = (dim + DIM_BLOCK - 1) / DIM_BLOCK;
        /* Threads own disjoint dimension ranges: no two write the same sum. */
#pragma omp parallel for schedule(static)
        for (int b = 0; b < blocks; b++) {
            int d0 = b * DIM_BLOCK, d1 = d0 + DIM_BLOCK < dim ? d0 + DIM_BLOCK : dim;
            for (size_t i = 0; i < m; i++) {
                if (!use[s + i])
                    continue;
                double *S = sums + (size_t)dense[s + i] * dim;
                const float *x = buf + i * (size_t)dim;
                double wi = w[s + i];
                for (int d = d0; d < d1; d++)
                    S[d] += wi * x[d];
            }
        }
    }
    return 0;
}

/* Weights for the rows in `use`, from their magnitudes' 5th percentile and median. */
int clean_make_weights(clean_ctx *c, const uint8_t *use, float *w)
{
    uint8_t *mask = malloc(c->rows ? c->rows : 1);
    if (!mask)
        return mf_set_error(MF_ERR_NOMEM, "cannot allocate weights");
    for (uint64_t i = 0; i < c->rows; i++)
        mask[i] = !use[i];
    double q[2], qs[2] = {0.05, 0.5};
    int rc = mf_clean_quantiles(c->r->magnitude, mask, c->rows, qs, 2, q);
    free(mask);
    for (uint64_t i = 0; rc == 0 && i < c->rows; i++)
        w[i] = clean_weight(c->r->magnitude[i], q[0], q[1]);
    return rc;
}

double *clean_alloc_sums(clean_ctx *c)
{
    size_t n;
    if (mf_size_mul(c->lab.n ? c->lab.n : 1, (size_t)c->dim * sizeof(double), &n,
                    "identity centres") < 0)
        return NULL;
    double *s = malloc(n);
    if (!s)
        mf_set_error(MF_ERR_NOMEM, "cannot allocate %zu bytes of identity centres", n);
    return s;
}

void clean_squared_norms(const clean_ctx *c, const double *sums, double *ss)
{
    for (size_t k = 0; k < c->lab.n; k++) {
        const double *S = sums + k * (size_t)c->dim;
        double q = 0;
        for (int d = 0; d < c->dim; d++)
            q += S[d] * S[d];
        ss[k] = q;
    }
}

/* ---- rule 4 ---------------------------------------------------------------------------------- */

typedef struct uf {
    int64_t *parent;
} uf;

static int64_t uf_find(uf *u, int64_t x)
{
    while (u->parent[x] != x)
        x = u->parent[x] = u->parent[u->parent[x]];
    return x;
}

static int add_merge(mf_clean_result *r, size_t *cap, int64_t a, int64_t b, float cos)
{
    if (r->n_merges == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        mf_clean_merge *m = realloc(r->merges, nc * sizeof *m);
        if (!m)
            return mf_set_error(MF_ERR_NOMEM, "cannot record label merges");
        r->merges = m, *cap = nc;
    }
    r->merges[r->n_merges++] = (mf_clean_merge){a < b ? a : b, a < b ? b : a, cos};
    return 0;
}

/* Relabel every labelled row to the label of its group with most kept rows. */
static void apply_groups(clean_ctx *c, uf *u, const int64_t *kept)
{
    size_t L = c->lab.n;
    int64_t *best = malloc(L * sizeof *best);
    if (!best)
        return;
    for (size_t k = 0; k < L; k++)
        best[k] = -1;
    for (size_t k = 0; k < L; k++) {
        int64_t root = uf_find(u, (int64_t)k), b = best[root];
        if (b < 0 || kept[k] > kept[b] || (kept[k] == kept[b] && (int64_t)k < b))
            best[root] = (int64_t)k;
    }
    for (uint64_t i = 0; i < c->rows; i++)
        if (c->lab.dense[i] >= 0)
            c->r->label[i] = c->lab.values[best[uf_find(u, c->lab.dense[i])]];
    free(best);
}

int clean_merge(clean_ctx *c)
{
    uint64_t n = c->rows;
    size_t L = c->lab.n, dim = (size_t)c->dim, cap = 0;
    mf_clean_result *r = c->r;
    uint8_t *use = malloc(n ? n : 1);
    float *w = malloc((n ? n : 1) * sizeof *w), *cent = malloc(L * dim * sizeof *cent + 1);
    int64_t *kept = calloc(L + 1, sizeof *kept);
    uf u = {malloc((L + 1) * sizeof(int64_t))};
    double *sums = clean_alloc_sums(c);
    clean_pairs pairs = {0};
    int rc = 0;
    if (!use || !w || !cent || !kept || !u.parent || !sums) {
        rc = sums ? mf_set_error(MF_ERR_NOMEM, "cannot allocate label centres") : MF_ERR_NOMEM;
        goto done;
    }
    for (uint64_t i = 0; i < n; i++) {
        use[i] = r->rule[i] == MF_RULE_KEEP && c->lab.dense[i] >= 0;
        if (use[i])
            kept[c->lab.dense[i]]++;
    }
    rc = clean_make_weights(c, use, w);
    if (rc == 0)
        rc = clean_label_sums(c, use, w, sums);
    for (size_t k = 0; rc == 0 && k < L; k++) {
        double q = 0;
        for (size_t d = 0; d < dim; d++)
            q += sums[k * dim + d] * sums[k * dim + d];
        float inv = q > 0 ? (float)(1.0 / sqrt(q)) : 0.f;
        for (size_t d = 0; d < dim; d++)
            cent[k * dim + d] = (float)sums[k * dim + d] * inv;
    }
    if (rc == 0)
        rc = clean_pairs_in_memory(cent, L, c->dim, c->p->merge_cos, &pairs);
    for (size_t k = 0; k <= L; k++)
        u.parent[k] = (int64_t)k;
    for (size_t i = 0; rc == 0 && i < pairs.n; i++) {
        int64_t a = pairs.a[i], b = pairs.b[i];
        if (a >= b || !kept[a] || !kept[b])
            continue; /* each pair once; empty labels have no centre */
        rc = add_merge(r, &cap, c->lab.values[a], c->lab.values[b], pairs.sim[i]);
        u.parent[uf_find(&u, a)] = uf_find(&u, b);
    }
    if (rc == 0 && c->p->apply_merge)
        apply_groups(c, &u, kept);
done:
    clean_pairs_release(&pairs);
    free(use), free(w), free(cent), free(kept), free(u.parent), free(sums);
    return rc;
}
