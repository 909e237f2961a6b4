/* calibrate.c - choose a method's thresholds by BCubed F on the labelled rows.
 *
 * Coordinate search: each parameter in turn scans its grid with the others fixed,
 * twice round; then tau is refined on a finer grid around the best value (Infomap and
 * Leiden: one coarse round, as each run takes seconds). Users'
 * labels are noisy, so an exhaustive fit would chase the noise anyway. */
#include <stdlib.h>

#include "cluster_internal.h"
#include "mf/metrics.h"
#include "mf/status.h"

typedef struct {
    const mf_knn_graph *g;
    const float *mag;
    const int64_t *truth;
    int64_t *label;
} calib_ctx;

static int score(calib_ctx *c, const mf_cluster_params *p, double *f)
{
    int rc = mf_cluster_run(c->g, c->mag, p, c->label, NULL);
    mf_cluster_metrics m;
    if (rc == 0)
        rc = mf_metrics_compute_labelled(c->g->n, c->truth, c->label, &m);
    *f = rc == 0 ? m.bcubed_f : -1;
    return rc;
}

/* Scan *param over [lo, hi] by step (as float or double); keep the best. */
static int scan(calib_ctx *c, mf_cluster_params *p, float *fparam, double *dparam, double lo,
                double hi, double step, double *best)
{
    double keep = fparam ? *fparam : *dparam;
    for (double v = lo; v <= hi + 1e-9; v += step) {
        if (fparam)
            *fparam = (float)v;
        else
            *dparam = v;
        double f;
        int rc = score(c, p, &f);
        if (rc < 0)
            return rc;
        if (f > *best + 1e-12)
            *best = f, keep = v;
    }
    if (fparam)
        *fparam = (float)keep;
    else
        *dparam = keep;
    return 0;
}

/* Leiden's CPM resolution is a density: a community of S rows holds while about
 * k w / S (w: mean edge weight) exceeds it, so its useful values span two orders of
 * magnitude (large identities need small ones): scanned on a doubling grid. */
static int scan_resolution(calib_ctx *c, mf_cluster_params *p, double *best)
{
    double keep = p->resolution;
    for (double r = 0.005; r <= 0.65; r *= 2) {
        p->resolution = r;
        double f;
        int rc = score(c, p, &f);
        if (rc < 0)
            return rc;
        if (f > *best + 1e-12)
            *best = f, keep = r;
    }
    p->resolution = keep;
    return 0;
}

int mf_cluster_calibrate(const mf_knn_graph *g, const float *magnitude, const int64_t *truth,
                         mf_cluster_params *p, double *best_f)
{
    calib_ctx c = {g, magnitude, truth, malloc((g->n ? g->n : 1) * sizeof(int64_t))};
    if (!c.label)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for calibration");
    double best = -1;
    int rc = score(&c, p, &best);
    int igraph = p->method == MF_CLUSTER_INFOMAP || p->method == MF_CLUSTER_LEIDEN;
    double step = igraph ? 0.1 : 0.05;
    /* igraph methods cost seconds per run: one coarse round only. */
    for (int round = 0; rc == 0 && round < (igraph ? 1 : 2); round++) {
        rc = scan(&c, p, &p->tau, NULL, 0.2, 0.9, step, &best);
        if (rc == 0 && mf_cluster_uses_leaves(p)) {
            rc = scan(&c, p, &p->tau2, NULL, 0.1, 0.8, 0.05, &best);
            if (rc == 0 && p->weight)
                rc = scan(&c, p, NULL, &p->anchor_quantile, 0.0, 0.6, 0.1, &best);
        }
        if (rc == 0 && p->method == MF_CLUSTER_LEIDEN)
            rc = scan_resolution(&c, p, &best);
    }
    double t = p->tau;
    if (rc == 0 && !igraph)
        rc = scan(&c, p, &p->tau, NULL, t - step / 2, t + step / 2, step / 5, &best);
    free(c.label);
    if (rc == 0 && best_f)
        *best_f = best;
    return rc;
}
