/* groups.c - the cluster sections of mf-report: the largest clusters, identities that
 * clustering split (a label whose rows went to several clusters) and clusters that
 * merged labels (a cluster holding rows of several labels). Rows are sorted once by
 * (key, secondary key, magnitude descending) so each group's best faces come first.
 * Unassigned (-1) and unlabelled rows take no part. Ranking: by the size of the second
 * largest part, i.e. how much of the identity went elsewhere, then by total size. */
#define _GNU_SOURCE /* qsort_r */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "report_internal.h"

#define PARTS_SHOWN 4 /* parts of a split / merged group shown */

typedef struct sort_ctx {
    const int64_t *k1, *k2; /* k2 may be NULL */
    const float *mag;
} sort_ctx;

static int cmp3(int64_t a, int64_t b) { return (a > b) - (a < b); }

static int cmp_rows(const void *a, const void *b, void *ctx)
{
    const sort_ctx *c = ctx;
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    int r = cmp3(c->k1[x], c->k1[y]);
    if (!r && c->k2)
        r = cmp3(c->k2[x], c->k2[y]);
    float mx = isnan(c->mag[x]) ? -INFINITY : c->mag[x];
    float my = isnan(c->mag[y]) ? -INFINITY : c->mag[y];
    if (!r && mx != my)
        r = mx > my ? -1 : 1;
    return r ? r : cmp3((int64_t)x, (int64_t)y);
}

static int cmp3_ptr(const void *a, const void *b)
{
    return cmp3(*(const int64_t *)a, *(const int64_t *)b);
}

typedef struct run {
    int64_t a, b;          /* primary and secondary key */
    uint64_t start, count; /* into the sorted rows */
    uint64_t rank;         /* for groups: second-largest part */
} run;

/* Runs of equal (k1[row], k2[row]) over the sorted rows; malloc'ed. */
static run *make_runs(const uint64_t *rows, uint64_t n, const int64_t *k1, const int64_t *k2,
                      size_t *n_runs)
{
    run *r = malloc((n ? n : 1) * sizeof *r);
    size_t m = 0;
    for (uint64_t i = 0; r && i < n; i++) {
        int64_t a = k1[rows[i]], b = k2 ? k2[rows[i]] : 0;
        if (m && r[m - 1].a == a && r[m - 1].b == b)
            r[m - 1].count++;
        else
            r[m++] = (run){a, b, i, 1, 0};
    }
    *n_runs = m;
    return r;
}

static int cmp_run_size(const void *a, const void *b)
{
    const run *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? 1 : -1;
    if (x->count != y->count)
        return x->count < y->count ? 1 : -1;
    return cmp3(x->a, y->a);
}

static int cmp_run_b(const void *a, const void *b)
{
    const run *x = a, *y = b;
    int r = cmp3(x->b, y->b);
    return r ? r : cmp3(x->a, y->a);
}

/* Sorted rows whose keys are all >= 0. */
static uint64_t *sorted_rows(const rp_data *d, const int64_t *k1, const int64_t *k2,
                             uint64_t *n_out)
{
    uint64_t *rows = malloc((d->n ? d->n : 1) * sizeof *rows), m = 0;
    if (!rows)
        return NULL;
    for (uint64_t i = 0; i < d->n; i++)
        if (k1[i] >= 0 && (!k2 || k2[i] >= 0))
            rows[m++] = i;
    sort_ctx c = {k1, k2, d->mag};
    qsort_r(rows, (size_t)m, sizeof *rows, cmp_rows, &c);
    *n_out = m;
    return rows;
}

static int fill_part(rp_data *d, rp_part *p, int64_t key, const uint64_t *rows, const run *r,
                     size_t want)
{
    size_t k = r->count < want ? (size_t)r->count : want;
    *p = (rp_part){key, r->count, calloc(k ? k : 1, sizeof(rp_face)), 0};
    if (!p->faces)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++)
        if ((rc = rp_row_face(d, rows[r->start + i], &p->faces[i])) == 0)
            p->n_faces++;
    return rc;
}

/* Label statistics of one cluster: distinct labels and the majority. */
static void cluster_labels(const rp_data *d, const uint64_t *rows, const run *r, rp_group *g)
{
    int64_t *l = malloc((r->count ? r->count : 1) * sizeof *l);
    double sum = 0;
    for (uint64_t i = 0; i < r->count; i++)
        sum += d->mag[rows[r->start + i]];
    g->mean_mag = r->count ? sum / (double)r->count : 0;
    g->majority = -1;
    if (!l)
        return;
    for (uint64_t i = 0; i < r->count; i++)
        l[i] = d->label[rows[r->start + i]];
    qsort(l, (size_t)r->count, sizeof *l, cmp3_ptr);
    for (uint64_t i = 0, run_len = 0; i < r->count; i++) {
        run_len = i && l[i] == l[i - 1] ? run_len + 1 : 1;
        if (l[i] >= 0 && run_len == 1)
            g->distinct++;
        if (l[i] >= 0 && run_len > g->majority_count)
            g->majority = l[i], g->majority_count = run_len;
    }
    free(l);
}

int rp_gather_clusters(rp_data *d)
{
    uint64_t m;
    uint64_t *rows = sorted_rows(d, d->cluster, NULL, &m);
    size_t nr = 0;
    run *r = rows ? make_runs(rows, m, d->cluster, NULL, &nr) : NULL;
    size_t k = nr < (size_t)d->p->top_groups ? nr : (size_t)d->p->top_groups;
    d->big = r ? calloc(k ? k : 1, sizeof *d->big) : NULL;
    int rc = d->big ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (rc == 0)
        qsort(r, nr, sizeof *r, cmp_run_size);
    for (size_t i = 0; i < k && rc == 0; i++) {
        rp_group *g = &d->big[d->n_big++];
        *g =
            (rp_group){.key = r[i].a, .total = r[i].count, .parts = calloc(1, sizeof(rp_part))};
        if (!g->parts) {
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
            break;
        }
        cluster_labels(d, rows, &r[i], g);
        g->n_parts = 1;
        rc = fill_part(d, &g->parts[0], r[i].a, rows, &r[i], (size_t)d->p->per_group);
    }
    free(rows);
    free(r);
    return rc;
}

/* Groups of consecutive runs with the same key (a when by_a, else b) that have two or
 * more parts; the top ones become rp_groups with their parts largest first. */
static int disagreements(rp_data *d, const uint64_t *rows, run *p, size_t np, int by_a,
                         rp_group **out, size_t *n_out, uint64_t *all)
{
    run *cand = malloc((np ? np : 1) * sizeof *cand); /* a = first part, b = parts */
    size_t nc = 0;
    if (!cand)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (size_t i = 0, j; i < np; i = j) {
        uint64_t total = 0, first = 0, second = 0;
        for (j = i; j < np && (by_a ? p[j].a == p[i].a : p[j].b == p[i].b); j++) {
            total += p[j].count;
            if (p[j].count > first)
                second = first, first = p[j].count;
            else if (p[j].count > second)
                second = p[j].count;
        }
        if (j - i >= 2)
            cand[nc++] = (run){(int64_t)i, (int64_t)(j - i), 0, total, second};
    }
    *all = nc;
    qsort(cand, nc, sizeof *cand, cmp_run_size);
    size_t k = nc < (size_t)d->p->top_groups ? nc : (size_t)d->p->top_groups;
    *out = calloc(k ? k : 1, sizeof **out);
    int rc = *out ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < k && rc == 0; i++) {
        run *parts = p + cand[i].a;
        size_t n_parts = (size_t)cand[i].b,
               shown = n_parts < PARTS_SHOWN ? n_parts : PARTS_SHOWN;
        qsort(parts, n_parts, sizeof *parts, cmp_run_size); /* all rank 0: by count */
        rp_group *g = &(*out)[(*n_out)++];
        *g = (rp_group){.key = by_a ? parts[0].a : parts[0].b,
                        .total = cand[i].count,
                        .distinct = n_parts,
                        .majority = -1,
                        .parts = calloc(shown, sizeof(rp_part))};
        if (!g->parts) {
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
            break;
        }
        for (size_t q = 0; q < shown && rc == 0; q++, g->n_parts++)
            rc = fill_part(d, &g->parts[q], by_a ? parts[q].b : parts[q].a, rows, &parts[q],
                           (size_t)(d->p->per_group + 1) / 2);
    }
    free(cand);
    return rc;
}

int rp_gather_disagreements(rp_data *d)
{
    uint64_t m;
    uint64_t *rows = sorted_rows(d, d->label, d->cluster, &m);
    size_t np = 0;
    run *p = rows ? make_runs(rows, m, d->label, d->cluster, &np) : NULL;
    int rc = p ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    /* Runs are (label, cluster) pairs sorted by label: split identities first. The
     * group's parts are re-sorted in place, so merged clusters use a copy. */
    run *byb = rc == 0 ? malloc((np ? np : 1) * sizeof *byb) : NULL;
    if (rc == 0 && !byb)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (rc == 0) {
        memcpy(byb, p, np * sizeof *byb);
        qsort(byb, np, sizeof *byb, cmp_run_b);
        rc = disagreements(d, rows, p, np, 1, &d->split, &d->n_split, &d->all_split);
    }
    if (rc == 0)
        rc = disagreements(d, rows, byb, np, 0, &d->merged, &d->n_merged, &d->all_merged);
    free(rows);
    free(p);
    free(byb);
    return rc;
}
