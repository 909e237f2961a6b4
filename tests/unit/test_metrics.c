/* test_metrics.c - pairwise/BCubed/NMI against hand-computed values and extremes. */
#include <criterion/criterion.h>
#include <math.h>

#include "mf/metrics.h"
#include "mf/status.h"

#define N(a) (sizeof(a) / sizeof(a[0]))
#define NEAR(x, y) cr_expect(fabs((x) - (y)) < 1e-9, "%s = %.12f, expected %.12f", #x, (x), (y))

/* truth {0,1,2} {3,4}; pred {0,1} {2,3,4}: c = [[2,1],[0,2]], a = (3,2), b = (2,3).
 * pairwise TP = 9 - 5 = 4, predicted pairs 4 + 9 - 5 = 8, true pairs 8 -> P = R = 1/2.
 * BCubed P = (4/2 + 1/3 + 4/3) / 5 = 11/15 = R.
 * NMI: MI = .4 ln(10/6) + .2 ln(5/9) + .4 ln(10/6), H = -(.6 ln .6 + .4 ln .4). */
Test(metrics, hand_computed)
{
    int64_t t[] = {0, 0, 0, 1, 1}, p[] = {7, 7, 3, 3, 3};
    mf_cluster_metrics m;
    cr_assert_eq(mf_metrics_compute(N(t), t, p, &m), 0);
    NEAR(m.pairwise_p, 0.5);
    NEAR(m.pairwise_r, 0.5);
    NEAR(m.pairwise_f, 0.5);
    NEAR(m.bcubed_p, 11.0 / 15);
    NEAR(m.bcubed_r, 11.0 / 15);
    double mi = .8 * log(10.0 / 6) + .2 * log(5.0 / 9), h = -(.6 * log(.6) + .4 * log(.4));
    NEAR(m.nmi, mi / h);
    cr_expect_eq(m.truth_classes, 2);
    cr_expect_eq(m.pred_clusters, 2);
}

/* Negative labels are singletons on both sides. truth {0,1} {2} {3} {4,5,6};
 * pred {0,1,2} {3,4,5} {6}: TP = 11 - 7 = 4, pred pairs 19 - 7 = 12, true pairs 15 - 7 = 8. */
Test(metrics, negative_labels_are_singletons)
{
    int64_t t[] = {0, 0, -1, -1, 1, 1, 1}, p[] = {5, 5, 5, 2, 2, 2, -1};
    mf_cluster_metrics m;
    cr_assert_eq(mf_metrics_compute(N(t), t, p, &m), 0);
    NEAR(m.pairwise_p, 1.0 / 3);
    NEAR(m.pairwise_r, 0.5);
    cr_expect_eq(m.truth_classes, 4);
    cr_expect_eq(m.pred_clusters, 3);
    /* BCubed P = (4/3 + 1/3 + 1/3 + 4/3 + 1)/7, R = (4/2 + 1 + 1 + 4/3 + 1/3)/7 */
    NEAR(m.bcubed_p, (4.0 / 3 + 1.0 / 3 + 1.0 / 3 + 4.0 / 3 + 1) / 7);
    NEAR(m.bcubed_r, (2 + 1 + 1 + 4.0 / 3 + 1.0 / 3) / 7);
}

Test(metrics, all_singletons_both)
{
    int64_t t[] = {-1, -1, -1, -1}, p[] = {0, 1, 2, 3};
    mf_cluster_metrics m;
    cr_assert_eq(mf_metrics_compute(N(t), t, p, &m), 0);
    NEAR(m.pairwise_p, 1.0);
    NEAR(m.pairwise_r, 1.0);
    NEAR(m.bcubed_f, 1.0);
    NEAR(m.nmi, 1.0);
}

Test(metrics, one_cluster_vs_singletons)
{
    int64_t one[] = {4, 4, 4, 4}, single[] = {0, 1, 2, 3};
    mf_cluster_metrics m;
    cr_assert_eq(mf_metrics_compute(N(one), one, single, &m), 0);
    NEAR(m.pairwise_p, 1.0); /* nothing predicted together: no wrong claim */
    NEAR(m.pairwise_r, 0.0);
    NEAR(m.pairwise_f, 0.0);
    NEAR(m.bcubed_p, 1.0);
    NEAR(m.bcubed_r, 0.25);
    NEAR(m.nmi, 0.0);
    cr_assert_eq(mf_metrics_compute(N(one), single, one, &m), 0);
    NEAR(m.pairwise_p, 0.0);
    NEAR(m.pairwise_r, 1.0);
    NEAR(m.bcubed_p, 0.25);
    NEAR(m.bcubed_r, 1.0);
    NEAR(m.nmi, 0.0);
    cr_assert_eq(mf_metrics_compute(N(one), one, one, &m), 0);
    NEAR(m.pairwise_f, 1.0);
    NEAR(m.bcubed_f, 1.0);
    NEAR(m.nmi, 1.0);
    int64_t a[] = {9}, b[] = {-1};
    cr_assert_eq(mf_metrics_compute(1, a, b, &m), 0);
    NEAR(m.pairwise_f, 1.0);
    NEAR(m.nmi, 1.0);
}

Test(metrics, labelled_subset_and_errors)
{
    int64_t t[] = {-1, 0, 0, -1, 1}, p[] = {0, 0, 0, 0, 1};
    mf_cluster_metrics m;
    cr_assert_eq(mf_metrics_compute_labelled(N(t), t, p, &m), 0);
    cr_expect_eq(m.n, 3);
    NEAR(m.bcubed_f, 1.0);
    int64_t none[] = {-1, -1};
    cr_expect_eq(mf_metrics_compute_labelled(2, none, p, &m), MF_ERR_ARG);
    cr_expect_eq(mf_metrics_compute(0, t, p, &m), MF_ERR_ARG);
}

Test(metrics, densify_first_appearance)
{
    int64_t l[] = {40, -1, 7, 40, -1, 7, 3}, out[7];
    cr_assert_eq(mf_labels_densify(7, l, out), 5);
    int64_t want[] = {0, 1, 2, 0, 3, 2, 4};
    for (int i = 0; i < 7; i++)
        cr_expect_eq(out[i], want[i], "row %d: %ld", i, (long)out[i]);
}
