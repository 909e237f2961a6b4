/* clean_auto.c - --auto: a magnitude cut proposed from the magnitude distribution.
 *
 * A store of scraped faces often has a low-magnitude mode (non-faces, unrecognisable
 * faces) below the bulk of usable faces, but not always: a curated set, or a model whose
 * magnitudes track quality loosely, has one mode with a long or short left tail. A
 * two-component Gaussian mixture always finds two components, so it alone cannot say
 * which case a store is; the density itself must dip between them. Both must hold:
 *  - the mixture (EM) has a low component of 0.2-45% of the rows, separated from the
 *    bulk (Ashman's D > 2);
 *  - a kernel density estimate of the magnitudes has a valley between the two means
 *    deeper than its own sampling noise (3 sd) below the highest density on the low
 *    side: a real low mode, not a shoulder or a wobble.
 * Then the cut is where the low component stops being the more likely. Otherwise there
 * is no low mode, and the cut is where the distribution departs from its bulk: median -
 * 4 robust sd (1.4826 MAD), which on a tidy store drops nothing. The sentence returned
 * says which, with the numbers. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clean_internal.h"
#include "mf/stats.h"
#include "mf/status.h"

#define AUTO_SAMPLE 200000 /* magnitudes used to fit the mixture and the density */
#define GRID 512           /* density grid points */
#define DIP_SD 3.0         /* a valley must be this many sampling sd deep */

static double normal_logpdf(double x, double m, double s)
{
    double z = (x - m) / s;
    return -0.5 * z * z - log(s);
}

/* EM for two 1-D Gaussians on x[0..n); returns the final parameters (m[0] < m[1]). */
static void fit_two_gaussians(const float *x, size_t n, double q25, double q50, double q75,
                              double q5, double *pi, double *m, double *s)
{
    double s0 = fmax((q75 - q25) / 1.349, 1e-6);
    pi[0] = 0.1, pi[1] = 0.9, m[0] = q5, m[1] = q50, s[0] = s[1] = s0;
    for (int it = 0; it < 200; it++) {
        double sw[2] = {0}, sx[2] = {0}, sxx[2] = {0};
        for (size_t i = 0; i < n; i++) {
            double l0 = log(pi[0]) + normal_logpdf(x[i], m[0], s[0]);
            double l1 = log(pi[1]) + normal_logpdf(x[i], m[1], s[1]);
            double g0 = 1.0 / (1.0 + exp(l1 - l0));
            double g[2] = {g0, 1.0 - g0};
            for (int c = 0; c < 2; c++) {
                sw[c] += g[c];
                sx[c] += g[c] * x[i];
                sxx[c] += g[c] * x[i] * x[i];
            }
        }
        double moved = 0;
        for (int c = 0; c < 2; c++) {
            if (sw[c] < 1e-9)
                return;
            double nm = sx[c] / sw[c];
            moved += fabs(nm - m[c]);
            m[c] = nm;
            s[c] = fmax(sqrt(fmax(sxx[c] / sw[c] - nm * nm, 0)), s0 * 0.02);
            pi[c] = sw[c] / (double)n;
        }
        if (moved < 1e-6 * s0)
            break;
    }
    if (m[0] > m[1]) {
        double t;
        t = pi[0], pi[0] = pi[1], pi[1] = t;
        t = m[0], m[0] = m[1], m[1] = t;
        t = s[0], s[0] = s[1], s[1] = t;
    }
}

/* Cut below the bulk (median - 4 robust sd) with the sentence saying why. */
static double bulk_edge(float *x, size_t m, double med, const char *why_no, const float *mag,
                        size_t n, char *why, size_t why_len)
{
    for (size_t i = 0; i < m; i++)
        x[i] = (float)fabs(x[i] - med);
    double mad = 1.4826 * clean_median(x, m), cut = med - 4.0 * mad;
    size_t below = 0;
    for (size_t i = 0; i < n; i++)
        below += mag[i] < cut;
    char tail[64] = "below every row: nothing dropped";
    if (below)
        snprintf(tail, sizeof tail, "%zu rows below it", below);
    snprintf(why, why_len,
             "no low mode found (%s); instead, cut where the distribution departs from its "
             "bulk: median %.2f - 4 x robust sd %.2f = %.2f, %s",
             why_no, med, mad, cut, tail);
    return cut;
}

double mf_clean_auto_cut(const float *mag, size_t n, char *why, size_t why_len)
{
    char dummy[8], no[160];
    if (!why)
        why = dummy, why_len = sizeof dummy;
    size_t step = n > AUTO_SAMPLE ? (n + AUTO_SAMPLE - 1) / AUTO_SAMPLE : 1, m = 0;
    float *x = malloc(((n + step - 1) / step + 1) * sizeof *x);
    double *f = malloc(2 * GRID * sizeof *f); /* density and its scratch (mf_kde) */
    if (!x || !f || n < 10) {
        snprintf(why, why_len, "too few rows (%zu) to propose a cut: nothing dropped", n);
        free(x), free(f);
        return -INFINITY;
    }
    for (size_t i = 0; i < n; i += step)
        x[m++] = mag[i];
    double qs[6] = {0.001, 0.05, 0.25, 0.5, 0.75, 0.999}, q[6];
    mf_clean_quantiles(x, NULL, m, qs, 6, q);
    double pi[2], mu[2], sd[2], valley = NAN;
    fit_two_gaussians(x, m, q[2], q[3], q[4], q[1], pi, mu, sd);
    double d = M_SQRT2 * (mu[1] - mu[0]) / sqrt(sd[0] * sd[0] + sd[1] * sd[1]);
    double spread =
        fmin(sqrt(pi[0] * sd[0] * sd[0] + pi[1] * sd[1] * sd[1]), (q[4] - q[2]) / 1.349);
    double h = mf_kde(x, m, spread, q[0], q[5], GRID, f);
    int dip = mf_kde_dip(f, GRID, q[0], q[5], mu[0], mu[1], m, h, DIP_SD, &valley);
    double cut;
    if (d > 2.0 && pi[0] > 0.002 && pi[0] < 0.45 && dip) {
        /* Bisect for the point between the modes where the low one stops winning. */
        double lo = mu[0], hi = mu[1];
        for (int it = 0; it < 60; it++) {
            double mid = 0.5 * (lo + hi);
            double g = log(pi[0]) + normal_logpdf(mid, mu[0], sd[0]) - log(pi[1]) -
                       normal_logpdf(mid, mu[1], sd[1]);
            if (g > 0)
                lo = mid;
            else
                hi = mid;
        }
        cut = 0.5 * (lo + hi);
        snprintf(why, why_len,
                 "two modes: low mode at %.2f (sd %.2f, %.1f%% of rows), bulk at %.2f "
                 "(sd %.2f), separation D=%.1f, density valley at %.2f; cut where the low "
                 "mode stops being the more likely: %.2f",
                 mu[0], sd[0], 100 * pi[0], mu[1], sd[1], d, valley, cut);
    } else {
        if (!(d > 2.0))
            snprintf(no, sizeof no,
                     "a two-component fit does not separate: D=%.1f, low weight %.1f%%", d,
                     100 * pi[0]);
        else if (!(pi[0] > 0.002 && pi[0] < 0.45))
            snprintf(no, sizeof no, "the lower of two components holds %.1f%% of the rows",
                     100 * pi[0]);
        else
            snprintf(no, sizeof no,
                     "a two-component fit puts a component at %.2f (%.1f%% of rows), but the "
                     "density does not dip between %.2f and %.2f",
                     mu[0], 100 * pi[0], mu[0], mu[1]);
        cut = bulk_edge(x, m, q[3], no, mag, n, why, why_len);
    }
    free(x), free(f);
    return cut;
}
