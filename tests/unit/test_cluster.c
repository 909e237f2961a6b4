/* test_cluster.c - each method on crafted graphs with known components. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

/* anchors, and infomap and leiden when igraph is there: the methods with leaves. */
static const mf_cluster_method leaf_methods[] = {MF_CLUSTER_ANCHORS,
#ifdef MF_HAVE_IGRAPH
                                                 MF_CLUSTER_INFOMAP, MF_CLUSTER_LEIDEN
#endif
};

Test(cluster, leaves_never_bridge)
{
    mf_knn_graph *g = two_triangles();
    for (size_t m = 0; m < sizeof leaf_methods / sizeof *leaf_methods; m++) {
        mf_cluster_params p = mf_cluster_default_params();
        mf_cluster_method_defaults(&p, leaf_methods[m]);
        const char *name = mf_cluster_method_name(p.method);
        cr_assert(mf_cluster_uses_leaves(&p), "%s", name);
        int64_t l[7];
        p.tau = 0.5f, p.tau2 = 0.2f, p.anchor_quantile = 0.3; /* rows 2 and 3 are leaves */
        mf_cluster_stats st;
        cr_assert_eq(mf_cluster_run(g, mag7, &p, l, &st), 0, "%s: %s", name, mf_last_error());
        expect_labels(l, (int64_t[]){0, 0, 0, 1, 1, 1, 2}, 7);
        /* at tau 0 every edge counts, yet the bridge (2-3) is between leaves: no join */
        p.tau = 0.0f;
        cr_assert_eq(mf_cluster_run(g, mag7, &p, l, &st), 0, "%s", name);
        expect_labels(l, (int64_t[]){0, 0, 0, 1, 1, 1, 2}, 7);
        p.tau = 0.5f, p.tau2 = 0.95f; /* leaves find no anchor close enough: unassigned */
        cr_assert_eq(mf_cluster_run(g, mag7, &p, l, &st), 0, "%s", name);
        expect_labels(l, (int64_t[]){0, 0, -1, -1, 1, 1, 2}, 7);
        cr_expect_eq(st.unassigned, 2, "%s", name);
    }
    /* Without weighting all are anchors; the bridge is mutual, so tau decides. */
    mf_cluster_params p = mf_cluster_default_params();
    int64_t l[7];
    p.weight = 0, p.tau = 0.2f;
    cr_assert(!mf_cluster_uses_leaves(&p));
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
        p.weight = 0, p.tau = 0.2f; /* every row votes: the communities, not tau, part them */
        p.resolution = 0.05; /* CPM joins two triangles over a 0.3 bridge below 2 x 0.3 / 18 */
        cr_assert_eq(mf_cluster_run(g, NULL, &p, l, NULL), 0, "%s", mf_last_error());
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

/* A graph of n rows whose k edges have cosines a + s * u, u from the list `base`
 * (cycled), neighbours the next rows. */
static mf_knn_graph *graph_with_cosines(int n, int k, const float *base, int nb, float a,
                                        float s)
{
    int64_t *nbr = malloc((size_t)n * k * sizeof *nbr);
    float *sim = malloc((size_t)n * k * sizeof *sim);
    for (int i = 0; i < n; i++) {
        float row[64];
        for (int r = 0; r < k; r++)
            row[r] = a + s * base[(i * k + r) % nb];
        for (int r = 1; r < k; r++) /* rows are sorted by similarity, highest first */
            for (int t = r; t > 0 && row[t] > row[t - 1]; t--) {
                float x = row[t];
                row[t] = row[t - 1], row[t - 1] = x;
            }
        for (int r = 0; r < k; r++) {
            nbr[i * k + r] = (i + 1 + r) % n;
            sim[i * k + r] = row[r];
        }
    }
    mf_knn_graph *g;
    cr_assert_eq(mf_knn_from_arrays(&g, (size_t)n, k, nbr, sim), 0);
    free(nbr), free(sim);
    return g;
}

/* Two populations of edge cosines: around 0.2 (other identities) and 0.7 (the same),
 * equal in number and spread: the valley is half-way, 0.45, the modes at 0.2 and 0.7. */
static const float bimodal[] = {0.16f, 0.18f, 0.20f, 0.20f, 0.22f, 0.24f, 0.19f, 0.21f,
                                0.66f, 0.68f, 0.70f, 0.70f, 0.72f, 0.74f, 0.69f, 0.71f};

Test(cluster, auto_thresholds_sit_in_the_valley)
{
    mf_knn_graph *g = graph_with_cosines(400, 16, bimodal, 16, 0.0f, 1.0f);
    mf_cluster_params p = mf_cluster_default_params();
    p.weight = 0;
    char why[512];
    cr_assert_eq(mf_cluster_auto(g, NULL, &p, why, sizeof why), 0, "%s", mf_last_error());
    /* anchors: tau = valley + 0.05 (mode - valley) = 0.45 + 0.05 x 0.25 = 0.4625 */
    cr_expect(fabsf(p.tau2 - 0.45f) < 0.02f, "tau2 %f (%s)", p.tau2, why);
    cr_expect(fabsf(p.tau - 0.4625f) < 0.02f, "tau %f (%s)", p.tau, why);
    cr_expect(p.tau > p.tau2, "tau %f above the valley %f", p.tau, p.tau2);
    cr_expect(strstr(why, "valley at 0.4") != NULL, "%s", why);
    /* a threshold given is kept */
    mf_cluster_method_defaults(&p, MF_CLUSTER_COMPONENTS);
    p.tau = 0.6f;
    cr_assert_eq(mf_cluster_auto(g, NULL, &p, why, sizeof why), 0);
    cr_expect_eq(p.tau, 0.6f);
    mf_knn_free(g);
}

Test(cluster, auto_thresholds_follow_the_cosine_scale)
{
    /* Another model: every cosine c becomes 0.1 + 0.5 c (modes 0.2 and 0.45). The
     * thresholds must move the same way: tau' = 0.1 + 0.5 tau. */
    mf_knn_graph *g1 = graph_with_cosines(400, 16, bimodal, 16, 0.0f, 1.0f);
    mf_knn_graph *g2 = graph_with_cosines(400, 16, bimodal, 16, 0.1f, 0.5f);
    for (int m = 0; m < MF_CLUSTER_METHODS; m++) {
        mf_cluster_params a = mf_cluster_default_params(), b;
        mf_cluster_method_defaults(&a, m);
        a.weight = 0, b = a;
        cr_assert_eq(mf_cluster_auto(g1, NULL, &a, NULL, 0), 0);
        cr_assert_eq(mf_cluster_auto(g2, NULL, &b, NULL, 0), 0);
        cr_expect(fabsf(b.tau - (0.1f + 0.5f * a.tau)) < 0.01f, "%s: %f vs %f",
                  mf_cluster_method_name(m), b.tau, a.tau);
    }
    mf_knn_free(g1), mf_knn_free(g2);
}

Test(cluster, auto_thresholds_say_when_there_is_one_mode)
{
    /* one smooth mode: the mean of two uniform draws on [0.55, 0.75] (a triangle) */
    float one[256];
    for (int i = 0; i < 256; i++)
        one[i] = 0.55f + 0.1f * ((float)(i % 16) / 15 + (float)(i / 16) / 15);
    mf_knn_graph *g = graph_with_cosines(400, 16, one, 256, 0.0f, 1.0f);
    mf_cluster_params p = mf_cluster_default_params();
    p.weight = 0;
    char why[512];
    cr_assert_eq(mf_cluster_auto(g, NULL, &p, why, sizeof why), 0);
    cr_expect(strstr(why, "no valley found") != NULL, "%s", why);
    /* the median (0.65) stands for the valley, the 90th percentile for the mode */
    cr_expect(fabsf(p.tau2 - 0.65f) < 0.01f, "tau2 %f", p.tau2);
    cr_expect(p.tau > p.tau2 && p.tau < 0.7f, "tau %f", p.tau);
    mf_knn_free(g);
}

Test(cluster, anchors_flag_collectors)
{
    /* 100 anchors (rows 0-99) with no edges among them, and 40 leaves (100-139) all
     * hanging from anchor 0: a cluster of > k rows with 40 leaves per anchor, where a 0.3
     * anchor quantile gives an identity about 0.43. */
    enum { N = 140, K = 2 };
    int64_t nbr[N * K];
    float sim[N * K], mag[N];
    for (int i = 0; i < N; i++) {
        int leaf = i >= 100;
        nbr[i * K] = leaf ? 0 : -1, nbr[i * K + 1] = -1;
        sim[i * K] = leaf ? 0.8f : 0, sim[i * K + 1] = 0;
        mag[i] = leaf ? 10.0f : 30.0f;
    }
    mf_knn_graph *g;
    cr_assert_eq(mf_knn_from_arrays(&g, N, K, nbr, sim), 0);
    mf_cluster_params p = mf_cluster_default_params();
    p.tau = 0.5f, p.tau2 = 0.5f;
    int64_t l[N];
    mf_cluster_stats st;
    cr_assert_eq(mf_cluster_run(g, mag, &p, l, &st), 0);
    cr_expect_eq(st.largest, 41);
    cr_expect_eq(st.suspect, 1);
    cr_expect_eq(st.suspect_rows, 41);
    p.tau2 = 0.9f; /* the leaves stay unassigned: nothing to flag */
    cr_assert_eq(mf_cluster_run(g, mag, &p, l, &st), 0);
    cr_expect_eq(st.suspect, 0);
    mf_knn_free(g);
}
