/* auto.c - clustering thresholds chosen from the graph itself, without labels.
 *
 * The cosine of a kNN edge between two good samples comes from one of two populations:
 * two faces of one identity (high) or of two identities (low: in a small identity, the
 * k nearest rows run out of its own faces). Where those two modes sit depends on the
 * model (a stronger model: tighter identities, further apart) and on the data, so no
 * fixed cosine is right for every store. The graph's own edges show both modes: a kernel
 * density of the cosines of edges between anchors (samples at or above the anchor
 * magnitude quantile; all edges without weighting, since low-quality faces drift
 * together and blur both modes) has a low peak and a valley above it deeper than its
 * sampling noise (find_modes says which valley). Each threshold is then placed on that scale: the valley v,
 * moved a method-specific share towards the same-identity mode h (tau = v + s (h - v)):
 * a method that chains (components) needs to sit further up than one that only links a
 * sample to a single neighbour (peaks), because one wrong edge merges two identities
 * while a missing one rarely splits anything; Infomap and Leiden, on anchors only, weigh
 * the edges themselves and do best right at the valley. Leaves (tau2) attach at the
 * valley itself: there a low-quality face is as likely to be its neighbour's identity as
 * not, and it joins only one cluster. The shares were measured over the mf-synth grid
 * of bench/bench_robust.sh (docs/CLUSTER.md), not on one store: each is the share whose
 * worst gap to the method calibrated on labels, over all 17 settings, is smallest, with
 * its neighbours on the grid of shares no worse than 0.03 where one exists (with chains
 * split, split.c, anchors and peaks do best right at the valley: 0.05 and -0.05);
 * components', infomap's and leiden's shares were chosen over both draws of the grid
 * and checked on a third.
 * When the density shows no valley (a weak model: the two populations overlap), the
 * median edge stands for the valley, the 90th percentile for the same-identity mode and
 * the 25th for the different-identity one, and the sentence says so; the tool then warns
 * if one giant cluster results. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster_internal.h"
#include "mf/stats.h"
#include "mf/status.h"

#define AUTO_SAMPLE 400000 /* edge cosines used for the density */
#define GRID 512           /* density grid points */
#define DIP_SD 3.0         /* a valley must be this many sampling sd deep on both sides */
#define MAX_PEAKS 16
#define MIN_SIDE 0.01 /* share of the edges each mode must hold */

/* Share of the way from the valley to the same-identity mode, per method. */
static const double tau_share[MF_CLUSTER_METHODS] = {
    [MF_CLUSTER_ANCHORS] = 0.05, [MF_CLUSTER_COMPONENTS] = 0.4, [MF_CLUSTER_PEAKS] = -0.05,
    [MF_CLUSTER_INFOMAP] = 0.0,  [MF_CLUSTER_LEIDEN] = 0.0,
};
static const double tau2_share = 0.0;

/* Cosines of the edges between rows at or above `cut`, every step-th edge. */
static float *edge_sample(const mf_knn_graph *g, const float *mag, float cut, size_t *m)
{
    size_t total = 0, k = (size_t)g->k;
    for (size_t i = 0; i < g->n; i++)
        if (!mag || mag[i] >= cut)
            for (size_t r = 0; r < k; r++) {
                int64_t j = g->nbr[i * k + r];
                total += j >= 0 && (!mag || mag[j] >= cut);
            }
    size_t step = total > AUTO_SAMPLE ? (total + AUTO_SAMPLE - 1) / AUTO_SAMPLE : 1, e = 0;
    float *x = malloc((total / step + 1) * sizeof *x);
    *m = 0;
    if (!x)
        return NULL;
    for (size_t i = 0; i < g->n; i++)
        if (!mag || mag[i] >= cut)
            for (size_t r = 0; r < k; r++) {
                int64_t j = g->nbr[i * k + r];
                if (j >= 0 && (!mag || mag[j] >= cut) && e++ % step == 0)
                    x[(*m)++] = g->sim[i * k + r];
            }
    return x;
}

/* Local maxima of f, highest first; returns how many (at most MAX_PEAKS). */
static int peaks_of(const double *f, int *at)
{
    int n = 0;
    for (int g = 1; g < GRID - 1; g++) {
        if (!(f[g] > f[g - 1] && f[g] >= f[g + 1]))
            continue;
        if (n == MAX_PEAKS && f[g] <= f[at[n - 1]])
            continue;
        int p = n < MAX_PEAKS ? n++ : n - 1; /* a full list drops its lowest */
        for (; p > 0 && f[at[p - 1]] < f[g]; p--)
            at[p] = at[p - 1];
        at[p] = g;
    }
    return n;
}

typedef struct modes {
    double lo, valley, hi; /* lo = NAN when only one mode was found */
} modes;

/* The valley: the lowest one with a real mode on each side (a pair of peaks further apart
 * than the kernel's reach, the density dipping between them deeper than its sampling noise
 * below both, each side holding MIN_SIDE of the edges). The lowest, because above the
 * different-identity mode the same-identity edges may have modes of their own (an
 * identity's second look, a look-alike's twin); and a spike of near-duplicates at cosine
 * ~1 is a sharp peak but holds too few edges. The same-identity mode is then the highest
 * peak above the valley. */
static void find_modes(const float *x, size_t m, const double *q, modes *out, double *f)
{
    /* a margin so that a mode at the edge of the data still shows as a peak */
    double spread = fmax((q[3] - q[1]) / 1.349, 1e-4), margin = 0.1 * (q[4] - q[0]) + 1e-3;
    double lo = q[0] - margin, hi = q[4] + margin;
    double h = mf_kde(x, m, spread, lo, hi, GRID, f), step = (hi - lo) / (GRID - 1);
    double var = 1.0 / (2.0 * sqrt(M_PI) * (double)m * h); /* var f(x) = f(x) var */
    int at[MAX_PEAKS], np = peaks_of(f, at);
    double total = 0, *cum = f + GRID; /* mf_kde's scratch half */
    for (int g = 0; g < GRID; g++)
        cum[g] = total += f[g];
    out->lo = NAN, out->hi = np ? lo + at[0] * step : q[2], out->valley = INFINITY;
    for (int a = 0; a < np; a++)
        for (int b = 0; b < np; b++) {
            double pa = lo + at[a] * step, pb = lo + at[b] * step, v;
            if (pb - pa < 8 * h || !mf_kde_dip(f, GRID, lo, hi, pa, pb, m, h, DIP_SD, &v))
                continue;
            int gv = (int)lround((v - lo) / step);
            double low = fmin(f[at[a]], f[at[b]]), side = fmin(cum[gv], total - cum[gv]) / total;
            if (low - f[gv] > DIP_SD * sqrt(var * (low + f[gv])) && side >= MIN_SIDE &&
                v < out->valley)
                out->lo = pa, out->valley = v;
        }
    if (isnan(out->lo)) {
        out->valley = NAN;
        return;
    }
    int gv = (int)lround((out->valley - lo) / step), top = gv;
    for (int g = gv; g < GRID; g++)
        if (f[g] > f[top])
            top = g;
    out->hi = lo + top * step;
}

int mf_cluster_scale_of(const mf_knn_graph *g, const float *magnitude,
                        const mf_cluster_params *p, mf_cluster_scale *out)
{
    float cut = -INFINITY;
    int weight = p->weight && magnitude;
    if (weight && mf_cluster_quantile(magnitude, g->n, p->anchor_quantile, &cut) < 0)
        return MF_ERR_NOMEM;
    size_t m;
    float *x = edge_sample(g, weight ? magnitude : NULL, cut, &m);
    double *f = malloc(2 * GRID * sizeof *f);
    if (!x || !f) {
        free(x), free(f);
        return mf_set_error(MF_ERR_NOMEM, "out of memory sampling edge cosines");
    }
    if (m < 50) {
        free(x), free(f);
        return mf_set_error(MF_ERR_ARG,
                            "cannot choose thresholds from %zu edges: give --tau (and --tau2)",
                            m);
    }
    mf_sort_floats(x, m);
    double q[5];
    const double at[5] = {0.1, 25, 50, 75, 99.9};
    for (int i = 0; i < 5; i++)
        q[i] = mf_percentile_sorted(x, m, at[i]);
    modes md;
    find_modes(x, m, q, &md, f);
    out->two_modes = !isnan(md.lo);
    if (!out->two_modes) { /* the two populations overlap: split the edges at the median */
        md.lo = q[1];
        md.valley = q[2];
        md.hi = mf_percentile_sorted(x, m, 90);
    }
    out->lo = md.lo, out->valley = md.valley, out->hi = md.hi;
    out->edges = m;
    out->between_anchors = weight;
    free(x), free(f);
    return 0;
}

int mf_cluster_auto(const mf_knn_graph *g, const float *magnitude, mf_cluster_params *p,
                    char *why, size_t why_len)
{
    if (!isnan(p->tau) && (!mf_cluster_uses_leaves(p) || !isnan(p->tau2))) {
        if (why)
            snprintf(why, why_len, "thresholds given");
        return 0;
    }
    mf_cluster_scale sc;
    int rc = mf_cluster_scale_of(g, magnitude, p, &sc);
    if (rc == 0)
        mf_cluster_place(&sc, p, why, why_len);
    return rc;
}

void mf_cluster_place(const mf_cluster_scale *sc, mf_cluster_params *p, char *why,
                      size_t why_len)
{
    char dummy[8];
    if (!why)
        why = dummy, why_len = sizeof dummy;
    double span = sc->hi - sc->valley;
    int tau_auto = isnan(p->tau), tau2_auto = isnan(p->tau2);
    if (tau_auto)
        p->tau = (float)(sc->valley + tau_share[p->method] * span);
    if (tau2_auto)
        p->tau2 = (float)(sc->valley + tau2_share * span);
    if (!tau_auto && (!tau2_auto || !mf_cluster_uses_leaves(p))) {
        snprintf(why, why_len, "thresholds given");
        return;
    }
    const char *between = sc->between_anchors ? "anchors" : "rows";
    char head[200];
    if (sc->two_modes)
        snprintf(head, sizeof head,
                 "edge cosines between %s (%zu sampled) have a different-identity mode at "
                 "%.3f and a same-identity mode at %.3f, valley at %.3f",
                 between, sc->edges, sc->lo, sc->hi, sc->valley);
    else
        snprintf(head, sizeof head,
                 "no valley found in the edge cosines between %s (%zu sampled): the two "
                 "populations overlap; median %.3f taken as the valley, 90th percentile "
                 "%.3f as the mode",
                 between, sc->edges, sc->valley, sc->hi);
    char rule[96] = "tau given";
    if (tau_auto)
        snprintf(rule, sizeof rule, "tau = valley + %.2f x (mode - valley) = %.3f",
                 tau_share[p->method], p->tau);
    snprintf(why, why_len, "%s; %s%s", head, rule,
             tau2_auto && mf_cluster_uses_leaves(p) ? "; leaves attach at the valley" : "");
}
