/* test_cluster_split.c - the checks after clustering, on crafted stores whose answer is
 * known exactly: chains of identities told by coherence and split, clusters of a few
 * identities parted, drift collectors told by direction and left unassigned.
 *
 * Rows 0-5: one identity (unit vectors near e3, pairwise cosine >= 0.9).
 * Rows 6-17: a chain of six pairs in the e0-e1 plane at angles 0,10, 40,50, ..., 200,210
 * degrees: within a pair cos 10 deg = 0.985, between consecutive pairs cos 30 deg =
 * 0.866, and the chain's ends point nearly opposite ways (mean pairwise cosine 0.102).
 * With k = 4 and components at tau 0.8 the chain is one cluster of 12 rows. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf/cluster.h"
#include "mf/status.h"
#include "mf/store.h"
#include "temp_dir.h"

#define DIM 8
#define ROWS 18
#define K 4

static char path[512];
static float emb[ROWS * DIM];
static float mag[ROWS];

static void setup(void)
{
    temp_dir_make("split");
    snprintf(path, sizeof path, "%s/in.h5", dir);
}

TestSuite(cluster_split, .init = setup, .fini = temp_dir_remove);

static void make_rows(void)
{
    for (int i = 0; i < ROWS * DIM; i++)
        emb[i] = 0;
    for (int i = 0; i < 6; i++) { /* the identity */
        float *v = emb + i * DIM;
        v[3] = 0.97f;
        v[4 + i % 4] = i < 4 ? 0.24f : -0.24f;
        mag[i] = 30;
    }
    for (int p = 0; p < 6; p++)
        for (int h = 0; h < 2; h++) { /* the chain */
            double a = (40.0 * p + 10.0 * h) * M_PI / 180;
            float *v = emb + (6 + 2 * p + h) * DIM;
            v[0] = (float)cos(a), v[1] = (float)sin(a);
            mag[6 + 2 * p + h] = 25;
        }
}

/* Exact k nearest neighbours by cosine (rows are unit length). */
static mf_knn_graph *exact_graph(void)
{
    int64_t nbr[ROWS * K];
    float sim[ROWS * K];
    for (int i = 0; i < ROWS; i++) {
        float s[ROWS];
        int used[ROWS] = {0};
        for (int j = 0; j < ROWS; j++) {
            s[j] = 0;
            for (int d = 0; d < DIM; d++)
                s[j] += emb[i * DIM + d] * emb[j * DIM + d];
        }
        used[i] = 1;
        for (int r = 0; r < K; r++) {
            int best = -1;
            for (int j = 0; j < ROWS; j++)
                if (!used[j] && (best < 0 || s[j] > s[best]))
                    best = j;
            used[best] = 1;
            nbr[i * K + r] = best, sim[i * K + r] = s[best];
        }
    }
    mf_knn_graph *g;
    cr_assert_eq(mf_knn_from_arrays(&g, ROWS, K, nbr, sim), 0);
    return g;
}

static mf_store *write_store(void)
{
    static char ids[ROWS][16];
    static const char *idp[ROWS];
    for (int i = 0; i < ROWS; i++) {
        snprintf(ids[i], sizeof ids[i], "row%d", i);
        idp[i] = ids[i];
    }
    mf_store_params sp = mf_store_default_params();
    sp.dim = DIM;
    mf_store *s;
    cr_assert_eq(mf_store_create(&s, path, &sp), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_append(s, ROWS, emb, mag, idp, NULL), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_commit(s), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_open(&s, path), 0, "%s", mf_last_error());
    return s;
}

static const mf_cluster_scale scale = {.lo = 0.2, .valley = 0.4, .hi = 0.96, .two_modes = 1};

/* Cluster with method m at tau (and tau2) 0.8; returns the parameters, for the split. */
static mf_cluster_params cluster(mf_cluster_method m, mf_knn_graph *g, int64_t *label)
{
    mf_cluster_params p = mf_cluster_default_params();
    mf_cluster_method_defaults(&p, m);
    p.tau = 0.8f, p.tau2 = 0.8f;
    cr_assert_eq(mf_cluster_run(g, mag, &p, label, NULL), 0, "%s", mf_last_error());
    return p;
}

Test(cluster_split, a_chain_splits_into_its_pairs_and_the_identity_stays)
{
    make_rows();
    mf_knn_graph *g = exact_graph();
    mf_store *s = write_store();
    int64_t label[ROWS];
    mf_cluster_params p = cluster(MF_CLUSTER_COMPONENTS, g, label);
    for (int i = 7; i < ROWS; i++)
        cr_assert_eq(label[i], label[6], "the chain is one cluster before the split");
    mf_cluster_chains ch;
    cr_assert_eq(mf_cluster_split_chains(g, mag, &p, &scale, s, label, &ch), 0, "%s",
                 mf_last_error());
    const int64_t want[ROWS] = {0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6};
    for (int i = 0; i < ROWS; i++)
        cr_expect_eq(label[i], want[i], "row %d: cluster %ld, want %ld", i, (long)label[i],
                     (long)want[i]);
    cr_expect_eq(ch.found, 1);
    cr_expect_eq(ch.rows, 12);
    cr_expect_eq(ch.largest_rows, 12);
    cr_expect(fabs(ch.largest_coherence - 0.102) < 0.002, "coherence %g",
              ch.largest_coherence);
    cr_expect_eq(ch.pieces, 6);
    cr_expect_eq(ch.rounds, 1);
    cr_expect(fabsf(ch.tau - 0.94f) < 1e-6f, "tau %g", ch.tau);
    cr_expect_eq(ch.left, 0);
    mf_store_close(s);
    mf_knn_free(g);
}

Test(cluster_split, anchors_split_the_same_chain)
{
    make_rows();
    mf_knn_graph *g = exact_graph();
    mf_store *s = write_store();
    int64_t label[ROWS];
    mf_cluster_params p = cluster(MF_CLUSTER_ANCHORS, g, label);
    mf_cluster_chains ch;
    cr_assert_eq(mf_cluster_split_chains(g, mag, &p, &scale, s, label, &ch), 0, "%s",
                 mf_last_error());
    cr_expect_eq(ch.found, 1);
    for (int i = 1; i < 6; i++)
        cr_expect_eq(label[i], label[0], "the identity stays whole");
    for (int i = 6; i < ROWS; i += 2)
        cr_expect(label[i] != label[i + 2 < ROWS ? i + 2 : 0],
                  "pair at row %d no longer joins the next", i);
    mf_store_close(s);
    mf_knn_free(g);
}

Test(cluster_split, no_room_to_raise_tau_leaves_the_chain_and_says_so)
{
    make_rows();
    mf_knn_graph *g = exact_graph();
    mf_store *s = write_store();
    int64_t label[ROWS], before[ROWS];
    mf_cluster_params p = cluster(MF_CLUSTER_COMPONENTS, g, label);
    for (int i = 0; i < ROWS; i++)
        before[i] = label[i];
    mf_cluster_scale flat = scale;
    flat.hi = flat.valley; /* what mf-cluster --keep-chains passes */
    mf_cluster_chains ch;
    cr_assert_eq(mf_cluster_split_chains(g, mag, &p, &flat, s, label, &ch), 0);
    cr_expect_eq(ch.found, 1);
    cr_expect_eq(ch.left, 1);
    cr_expect_eq(ch.left_rows, 12);
    for (int i = 0; i < ROWS; i++)
        cr_expect_eq(label[i], before[i], "row %d unchanged", i);
    mf_store_close(s);
    mf_knn_free(g);
}

Test(cluster_split, a_store_of_other_rows_is_refused)
{
    make_rows();
    mf_knn_graph *g;
    int64_t nbr[2] = {1, 0};
    float sim[2] = {0.9f, 0.9f};
    cr_assert_eq(mf_knn_from_arrays(&g, 2, 1, nbr, sim), 0);
    mf_store *s = write_store();
    int64_t label[2] = {0, 0};
    mf_cluster_params p = mf_cluster_default_params();
    p.tau = 0.8f, p.tau2 = 0.8f;
    mf_cluster_chains ch;
    cr_expect_eq(mf_cluster_split_chains(g, mag, &p, &scale, s, label, &ch), MF_ERR_ARG);
    mf_store_close(s);
    mf_knn_free(g);
}

/* A chain whose rows all sit below the anchor magnitude, clustered by peaks (which needs
 * no anchors): the anchor quantile handed down to the re-clustering must stay in [0, 1)
 * (it was (rows below the cut + 0.5) / rows for every method: > 1 here, and mf-cluster
 * failed with "anchor quantile must be in [0, 1)"). */
Test(cluster_split, peaks_splits_a_chain_of_low_magnitude_rows)
{
    make_rows();
    for (int i = 6; i < ROWS; i++)
        mag[i] = 10.0f + 0.1f * (float)i;
    mf_knn_graph *g = exact_graph();
    mf_store *s = write_store();
    mf_cluster_params p = mf_cluster_default_params();
    mf_cluster_method_defaults(&p, MF_CLUSTER_PEAKS);
    p.tau = 0.8f, p.anchor_quantile = 0.7; /* the cut is the identity's magnitude, 30 */
    int64_t label[ROWS];
    cr_assert_eq(mf_cluster_run(g, mag, &p, label, NULL), 0, "%s", mf_last_error());
    mf_cluster_chains ch;
    cr_assert_eq(mf_cluster_split_chains(g, mag, &p, &scale, s, label, &ch), 0, "%s",
                 mf_last_error());
    cr_expect_eq(ch.found, 1);
    cr_expect_gt(ch.pieces, 1);
    for (int i = 0; i < 6; i++)
        cr_expect_eq(label[i], 0, "row %d: the identity stays", i);
    mf_store_close(s);
    mf_knn_free(g);
}

/* Two identities of 6 rows at 84 degrees (cosine 0.1 between them) and one row on their
 * bisector (cosine 0.73 to both) that bridges them at tau 0.7; rows 13-17 a third
 * identity. The bridged cluster is no chain (mean cosine 0.5), but one step up the
 * bridge parts it into two pieces of more than k rows whose rows are as unlike as
 * different identities: it is split, the third identity is not. */
static void make_bridged_rows(void)
{
    const double turn = 84 * M_PI / 180;
    /* each row's small private part: A on e4/e5, B on e6/e7, the third on e4..e7; the
     * bridge leans towards rows 0, 1 (+e4) and 6, 7 (+e6), so its k = 4 nearest rows are
     * two of each identity */
    static const int axis[ROWS] = {4, 4, 5, 5, 5, 5, 6, 6, 7, 7, 7, 7, 0, 4, 5, 6, 7, 4};
    static const float sign[ROWS] = {1, 1, 1, 1, -1, -1, 1, 1, 1, 1, -1, -1, 0, 1, 1, 1, 1, -1};
    for (int i = 0; i < ROWS * DIM; i++)
        emb[i] = 0;
    for (int i = 0; i < ROWS; i++) {
        float *v = emb + i * DIM;
        mag[i] = 30;
        if (i == 12) { /* the bridge */
            v[0] = (float)cos(turn / 2), v[1] = (float)sin(turn / 2), v[4] = v[6] = 0.1f;
            continue;
        }
        double a = i < 6 ? 0 : turn;
        if (i < 12)
            v[0] = (float)(0.975 * cos(a)), v[1] = (float)(0.975 * sin(a));
        else
            v[2] = 0.975f;
        v[axis[i]] = 0.22f * sign[i];
    }
}

Test(cluster_split, two_identities_joined_by_a_bridge_are_parted)
{
    make_bridged_rows();
    mf_knn_graph *g = exact_graph();
    mf_store *s = write_store();
    int64_t label[ROWS];
    mf_cluster_params p = mf_cluster_default_params();
    mf_cluster_method_defaults(&p, MF_CLUSTER_COMPONENTS);
    p.tau = 0.7f;
    cr_assert_eq(mf_cluster_run(g, mag, &p, label, NULL), 0, "%s", mf_last_error());
    for (int i = 1; i < 13; i++)
        cr_assert_eq(label[i], label[0], "row %d: the bridge joins both before the split", i);
    mf_cluster_chains ch;
    cr_assert_eq(mf_cluster_split_chains(g, mag, &p, &scale, s, label, &ch), 0, "%s",
                 mf_last_error());
    const int64_t want[ROWS] = {0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 3, 3, 3, 3, 3};
    for (int i = 0; i < ROWS; i++)
        cr_expect_eq(label[i], want[i], "row %d: cluster %ld, want %ld", i, (long)label[i],
                     (long)want[i]);
    cr_expect_eq(ch.found, 0, "no chain");
    cr_expect_eq(ch.merged, 1);
    cr_expect_eq(ch.pieces, 3);
    mf_store_close(s);
    mf_knn_free(g);
}

/* Drift collectors, on other rows (same store shape): e0 is the 'unrecognisable'
 * direction. Rows 0-5: an identity near e3 (anchors, magnitude 30); rows 6-13: 0.9 e0
 * plus a private part, low-quality rows of many identities (6 and 7 anchors, 8-13
 * leaves at magnitude 10); rows 14-17: blurred faces of the identity, 0.8 e3 + 0.6 e0
 * (leaves at 11). With anchor quantile 0.6 the leaves are rows 8-17; their mean has
 * length r = 0.845 and points at cosine 0.923 to e0. */
static void make_drift_rows(void)
{
    make_rows(); /* rows 0-5 as before */
    for (int i = 6; i < ROWS; i++) {
        float *v = emb + i * DIM;
        for (int d = 0; d < DIM; d++)
            v[d] = 0;
        if (i < 14) {
            v[0] = 0.9f, v[4 + (i - 6) % 4] = i < 10 ? 0.436f : -0.436f;
            mag[i] = i < 8 ? 30 : 10;
        } else {
            v[3] = 0.8f, v[0] = 0.6f;
            mag[i] = 11;
        }
    }
}

static mf_cluster_params drift_params(void)
{
    mf_cluster_params p = mf_cluster_default_params();
    p.anchor_quantile = 0.6;
    return p;
}

/* Rows 6-13 point where the leaves point (0.923 against 0.876 for a random sample of 8
 * leaves, less the margin) with 2 anchors of 8: a collector, left unassigned. Rows 4, 5
 * and 14-17 are also mostly leaves (2 anchors of 6) but point at the identity (0.73):
 * kept. Rows 0-3 have no leaf at all. */
Test(cluster_split, a_drift_collector_is_left_unassigned)
{
    make_drift_rows();
    mf_knn_graph *g = exact_graph();
    mf_store *s = write_store();
    int64_t label[ROWS] = {0, 0, 0, 0, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2};
    mf_cluster_params p = drift_params();
    mf_cluster_collectors co;
    cr_assert_eq(mf_cluster_find_collectors(g, mag, &p, s, 0, label, &co), 0, "%s",
                 mf_last_error());
    const int64_t want[ROWS] = {0, 0, 0, 0, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1};
    for (int i = 0; i < ROWS; i++)
        cr_expect_eq(label[i], want[i], "row %d: cluster %ld, want %ld", i, (long)label[i],
                     (long)want[i]);
    cr_expect_eq(co.found, 1);
    cr_expect_eq(co.rows, 8);
    cr_expect_eq(co.largest_rows, 8);
    cr_expect(fabs(co.largest_cosine - 0.923) < 0.002, "cosine %g", co.largest_cosine);
    mf_store_close(s);
    mf_knn_free(g);
}

/* The same cluster with half its rows anchors is made of identities (a component chained
 * through them can point along the drift too): kept; and keep = 1 only counts. */
Test(cluster_split, a_cluster_of_anchors_is_no_collector_and_keep_only_counts)
{
    make_drift_rows();
    mf_knn_graph *g = exact_graph();
    mf_store *s = write_store();
    const int64_t before[ROWS] = {0, 0, 0, 0, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2};
    int64_t label[ROWS];
    mf_cluster_params p = drift_params();
    mf_cluster_collectors co;
    memcpy(label, before, sizeof label);
    cr_assert_eq(mf_cluster_find_collectors(g, mag, &p, s, 1, label, &co), 0);
    cr_expect_eq(co.found, 1, "keep still finds it");
    for (int i = 0; i < ROWS; i++)
        cr_expect_eq(label[i], before[i], "row %d changed under keep", i);
    mag[8] = mag[9] = 30; /* 4 anchors of 8 (the quantile's cut stays at 30) */
    cr_assert_eq(mf_cluster_find_collectors(g, mag, &p, s, 0, label, &co), 0);
    cr_expect_eq(co.found, 0);
    for (int i = 0; i < ROWS; i++)
        cr_expect_eq(label[i], before[i], "row %d changed", i);
    p.weight = 0; /* no quality, no leaves: nothing to find */
    cr_assert_eq(mf_cluster_find_collectors(g, NULL, &p, s, 0, label, &co), 0);
    cr_expect_eq(co.found, 0);
    mf_store_close(s);
    mf_knn_free(g);
}
