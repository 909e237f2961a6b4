/* metrics.c - clustering quality against a truth labelling (see mf/metrics.h).
 *
 * Everything derives from the contingency table c_ij, built by sorting (class, cluster)
 * keys: memory stays O(n) however many groups there are. */
#include "mf/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"

typedef struct {
    int64_t label;
    size_t idx;
} label_idx;

static int cmp_label_idx(const void *a, const void *b)
{
    const label_idx *x = a, *y = b;
    if (x->label != y->label)
        return x->label < y->label ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Groups are numbered by first appearance, so a densified clustering reads naturally
 * (the first row is in group 0) and does not depend on the raw label values. */
int64_t mf_labels_densify(size_t n, const int64_t *labels, int64_t *out)
{
    if (n == 0)
        return 0;
    if (!labels || !out)
        return mf_set_error(MF_ERR_ARG, "densify: NULL array");
    size_t bytes;
    if (mf_size_mul(n, sizeof(label_idx), &bytes, "label table") < 0)
        return MF_ERR_NOMEM;
    label_idx *v = malloc(bytes);
    if (!v)
        return mf_set_error(MF_ERR_NOMEM, "out of memory sorting %zu labels", n);
    for (size_t i = 0; i < n; i++)
        v[i] = (label_idx){labels[i], i};
    qsort(v, n, sizeof *v, cmp_label_idx);
    /* Mark each group's first row; a negative label starts a group at every row. */
    for (size_t i = 0; i < n; i++)
        out[i] = -1;
    for (size_t i = 0; i < n; i++)
        if (i == 0 || v[i].label < 0 || v[i].label != v[i - 1].label)
            out[v[i].idx] = -2; /* first row of its group */
    int64_t groups = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] == -2)
            out[i] = groups++;
    /* Propagate each group's id from its first row (sorted runs, first = lowest idx). */
    int64_t id = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || v[i].label < 0 || v[i].label != v[i - 1].label)
            id = out[v[i].idx];
        else
            out[v[i].idx] = id;
    }
    free(v);
    return groups;
}

static double entropy_of_counts(const uint64_t *cnt, size_t k, double n)
{
    double h = 0;
    for (size_t i = 0; i < k; i++)
        if (cnt[i])
            h -= (double)cnt[i] / n * log((double)cnt[i] / n);
    return h;
}

static double f_of(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0; }

/* Fill out from dense ids t (kt groups) and p (kp groups). */
static int metrics_dense(size_t n, const int64_t *t, int64_t kt, const int64_t *p, int64_t kp,
                         mf_cluster_metrics *out)
{
    uint64_t *a = calloc((size_t)kt, sizeof *a), *b = calloc((size_t)kp, sizeof *b);
    uint64_t *keys = malloc(n * sizeof *keys);
    if (!a || !b || !keys) {
        free(a), free(b), free(keys);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for metrics over %zu rows", n);
    }
    for (size_t i = 0; i < n; i++) {
        a[t[i]]++, b[p[i]]++;
        keys[i] = (uint64_t)t[i] * (uint64_t)kp + (uint64_t)p[i];
    }
    qsort(keys, n, sizeof *keys, cmp_u64);
    double dn = (double)n, sum_c2 = 0, sum_a2 = 0, sum_b2 = 0, bp = 0, br = 0, mi = 0;
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && keys[j] == keys[i]; j++)
            ;
        double c = (double)(j - i);
        double ai = (double)a[keys[i] / (uint64_t)kp], bj = (double)b[keys[i] % (uint64_t)kp];
        sum_c2 += c * c;
        bp += c * c / bj;
        br += c * c / ai;
        mi += c / dn * log(c * dn / (ai * bj));
    }
    for (int64_t i = 0; i < kt; i++)
        sum_a2 += (double)a[i] * (double)a[i];
    for (int64_t j = 0; j < kp; j++)
        sum_b2 += (double)b[j] * (double)b[j];
    double ht = entropy_of_counts(a, (size_t)kt, dn), hp = entropy_of_counts(b, (size_t)kp, dn);
    free(a), free(b), free(keys);

    double tp = sum_c2 - dn, pred_pairs = sum_b2 - dn, true_pairs = sum_a2 - dn;
    out->n = n;
    out->truth_classes = (size_t)kt;
    out->pred_clusters = (size_t)kp;
    out->pairwise_p = pred_pairs > 0 ? tp / pred_pairs : 1.0;
    out->pairwise_r = true_pairs > 0 ? tp / true_pairs : 1.0;
    out->pairwise_f = f_of(out->pairwise_p, out->pairwise_r);
    out->bcubed_p = bp / dn;
    out->bcubed_r = br / dn;
    out->bcubed_f = f_of(out->bcubed_p, out->bcubed_r);
    if (kt == kp && kt == 1)
        out->nmi = 1.0;
    else if (ht + hp <= 0)
        out->nmi = 0.0;
    else
        out->nmi = fmax(0.0, fmin(1.0, mi / ((ht + hp) / 2)));
    return 0;
}

int mf_metrics_compute(size_t n, const int64_t *truth, const int64_t *pred,
                       mf_cluster_metrics *out)
{
    if (n == 0 || !truth || !pred || !out)
        return mf_set_error(MF_ERR_ARG, "metrics: no samples to compare");
    if (n > (size_t)1 << 31)
        return mf_set_error(MF_ERR_LIMIT, "metrics: %zu rows exceed the limit of 2^31", n);
    int64_t *t = malloc(n * sizeof *t), *p = malloc(n * sizeof *p);
    if (!t || !p) {
        free(t), free(p);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for metrics over %zu rows", n);
    }
    int rc;
    int64_t kt = mf_labels_densify(n, truth, t),
            kp = kt < 0 ? kt : mf_labels_densify(n, pred, p);
    if (kt < 0 || kp < 0)
        rc = (int)(kt < 0 ? kt : kp);
    else
        rc = metrics_dense(n, t, kt, p, kp, out);
    free(t), free(p);
    return rc;
}

int mf_metrics_compute_labelled(size_t n, const int64_t *truth, const int64_t *pred,
                                mf_cluster_metrics *out)
{
    if (!truth || !pred || !out)
        return mf_set_error(MF_ERR_ARG, "metrics: NULL array");
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        m += truth[i] >= 0;
    if (m == 0)
        return mf_set_error(MF_ERR_ARG, "metrics: no row carries a label (label >= 0)");
    int64_t *t = malloc(m * sizeof *t), *p = malloc(m * sizeof *p);
    if (!t || !p) {
        free(t), free(p);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for metrics over %zu rows", m);
    }
    for (size_t i = 0, k = 0; i < n; i++)
        if (truth[i] >= 0)
            t[k] = truth[i], p[k++] = pred[i];
    int rc = mf_metrics_compute(m, t, p, out);
    free(t), free(p);
    return rc;
}
