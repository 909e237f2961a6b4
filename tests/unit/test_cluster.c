/* test_cluster.c - each method on crafted graphs with known components. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "mf/cluster.h"
#include "mf/status.h"

/* Two triangles {0,1,2} {3,4,5} of strong edges (0.9), joined by a weak bridge 2-3
 * (0.3), plus an isolated sample 6. k = 3; -1 pads. */
static mf_knn_graph *two_triangles(void)
{
    int64_t nbr[7 * 3] = {1, 2, -1, 0, 2, -1, 0, 1, 3, 4, 5, 2, 3, 5, -1, 3, 4, -1, -1, -1, -1};
    float sim[7 * 3] = {.9f, .9f, 0,   .9f, .9f, 0,   .9f, .9f, .3f, .9f, .9f,
                        .3f, .9f, .9f, 0,   .9f, .9f, 0,   0,   0,   0};
    mf_knn_graph *g;
    cr_assert_eq(mf_knn_from_arrays(&g, 7, 3, nbr, sim), 0);
    return g;
}

static void expect_labels(const int64_t *got, const int64_t *want, int n)
{
    for (int i = 0; i < n; i++)
        cr_expect_eq(got[i], want[i], "row %d: got %ld want %ld", i, (long)got[i],
                     (long)want[i]);
}

static const float mag7[7] = {30, 20, 10, 10, 20, 30, 25};

Test(cluster, components_threshold)
{
    mf_knn_graph *g = two_triangles();
    mf_cluster_params p = mf_cluster_default_params();
    mf_cluster_method_defaults(&p, MF_CLUSTER_COMPONENTS);
    int64_t l[7];
    p.tau = 0.5f;
    cr_assert_eq(mf_cluster_run(g, mag7, &p, l, NULL), 0);
    expect_labels(l, (int64_t[]){0, 0, 0, 1, 1, 1, 2}, 7);
    p.tau = 0.2f; /* the bridge joins the triangles */
    mf_cluster_stats st;
    cr_assert_eq(mf_cluster_run(g, mag7, &p, l, &st), 0);
    expect_labels(l, (int64_t[]){0, 0, 0, 0, 0, 0, 1}, 7);
    cr_expect_eq(st.clusters, 2);
    cr_expect_eq(st.singletons, 1);
    cr_expect_eq(st.largest, 6);
    mf_knn_free(g);
}

Test(cluster, peaks_follow_confidence)
{
    mf_knn_graph *g = two_triangles();
    mf_cluster_params p = mf_cluster_default_params();
    mf_cluster_method_defaults(&p, MF_CLUSTER_PEAKS);
    int64_t l[7];
    /* Even with the bridge admitted, 2 (mag 10) links to 0 (its most similar higher
     * neighbour), and 3 (mag 10) to 4: the low-quality ends do not join the peaks. */
    p.tau = 0.2f;
    cr_assert_eq(mf_cluster_run(g, mag7, &p, l, NULL), 0);
    expect_labels(l, (int64_t[]){0, 0, 0, 1, 1, 1, 2}, 7);
    mf_knn_free(g);
}

Test(cluster, anchors_leaves_never_bridge)
{
    mf_knn_graph *g = two_triangles();
    mf_cluster_params p = mf_cluster_default_params();
    int64_t l[7];
    p.tau = 0.5f, p.tau2 = 0.2f, p.anchor_quantile = 0.3; /* rows 2 and 3 are leaves */
    mf_cluster_stats st;
    cr_assert_eq(mf_cluster_run(g, mag7, &p, l, &st), 0);
    expect_labels(l, (int64_t[]){0, 0, 0, 1, 1, 1, 2}, 7);
    p.tau2 = 0.95f; /* leaves find no anchor close enough: unassigned */
    cr_assert_eq(mf_cluster_run(g, mag7, &p, l, &st), 0);
    expect_labels(l, (int64_t[]){0, 0, -1, -1, 1, 1, 2}, 7);
    cr_expect_eq(st.unassigned, 2);
    /* Without weighting all are anchors; the bridge is mutual, so tau decides. */
    p.weight = 0, p.tau = 0.2f;
    cr_assert_eq(mf_cluster_run(g, NULL, &p, l, NULL), 0);
    expect_labels(l, (int64_t[]){0, 0, 0, 0, 0, 0, 1}, 7);
    mf_knn_free(g);
}

#ifdef MF_HAVE_IGRAPH
Test(cluster, igraph_methods_split_triangles)
{
    mf_knn_graph *g = two_triangles();
    mf_cluster_params p = mf_cluster_default_params();
    int64_t l[7];
    for (int m = MF_CLUSTER_INFOMAP; m <= MF_CLUSTER_LEIDEN; m++) {
        mf_cluster_method_defaults(&p, m);
        p.tau = 0.2f;
        cr_assert_eq(mf_cluster_run(g, mag7, &p, l, NULL), 0, "%s", mf_last_error());
        expect_labels(l, (int64_t[]){0, 0, 0, 1, 1, 1, 2}, 7);
    }
    mf_knn_free(g);
}
#endif

Test(cluster, calibrate_finds_separating_tau)
{
    mf_knn_graph *g = two_triangles();
    mf_cluster_params p = mf_cluster_default_params();
    mf_cluster_method_defaults(&p, MF_CLUSTER_COMPONENTS);
    p.tau = 0.1f;
    int64_t truth[7] = {5, 5, 5, 8, 8, 8, -1};
    double f = 0;
    cr_assert_eq(mf_cluster_calibrate(g, mag7, truth, &p, &f), 0);
    cr_expect_float_eq(f, 1.0, 1e-9);
    cr_expect(p.tau > 0.3f && p.tau <= 0.9f, "tau %f", p.tau);
    mf_knn_free(g);
}

Test(cluster, method_names_and_errors)
{
    cr_expect_eq(mf_cluster_method_parse("leiden"), MF_CLUSTER_LEIDEN);
    cr_expect_eq(mf_cluster_method_parse("nope"), -1);
    mf_knn_graph *g = two_triangles();
    mf_cluster_params p = mf_cluster_default_params();
    int64_t l[7];
    cr_expect_eq(mf_cluster_run(g, NULL, &p, l, NULL), MF_ERR_ARG);
    int64_t bad[3] = {0, 7, 1};
    float s[3] = {1, 1, 1};
    mf_knn_graph *h;
    cr_expect_eq(mf_knn_from_arrays(&h, 3, 1, bad, s), MF_ERR_ARG);
    mf_knn_free(g);
}
