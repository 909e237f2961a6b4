/* Filter rules on small crafted stores with exactly known answers, and their order. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf/clean.h"
#include "mf/status.h"
#include "mf/store.h"
#include "temp_dir.h"

#define DIM 32
#define MAXROWS 512

static char path[512];

static void setup(void)
{
    temp_dir_make("clean");
    snprintf(path, sizeof path, "%s/in.h5", dir);
}

TestSuite(clean, .init = setup, .fini = temp_dir_remove);

typedef struct crafted {
    size_t n;
    float emb[MAXROWS * DIM];
    float mag[MAXROWS];
    int64_t label[MAXROWS];
} crafted;

/* Row with unit direction v (DIM values, normalised here) scaled to magnitude m. */
static void add_row(crafted *c, const float *v, float m, int64_t label)
{
    double ss = 0;
    for (int d = 0; d < DIM; d++)
        ss += (double)v[d] * v[d];
    for (int d = 0; d < DIM; d++)
        c->emb[c->n * DIM + d] = (float)(v[d] / sqrt(ss) * m);
    c->mag[c->n] = m;
    c->label[c->n] = label;
    c->n++;
}

/* Identity `axis` (0..3): the axis plus 0.3 along a noise axis (4..7), with signs chosen
 * so the eight samples' noise cancels. */
static void add_identity(crafted *c, int axis, int64_t label, int count, float mag)
{
    for (int i = 0; i < count; i++) {
        float v[DIM] = {0};
        v[axis] = 1.f;
        v[4 + i % 4] = i % 8 < 4 ? 0.3f : -0.3f;
        add_row(c, v, mag, label);
    }
}

static mf_store *write_and_open(const crafted *c)
{
    mf_store_params p = mf_store_default_params();
    p.dim = DIM;
    p.overwrite = 1; /* tests write the same path several times */
    mf_store *s;
    static char ids[MAXROWS][32];
    static const char *idp[MAXROWS];
    for (size_t i = 0; i < c->n; i++) {
        snprintf(ids[i], sizeof ids[i], "row%zu", i);
        idp[i] = ids[i];
    }
    cr_assert_eq(mf_store_create(&s, path, &p), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_append(s, c->n, c->emb, c->mag, idp, c->label), 0, "%s",
                 mf_last_error());
    cr_assert_eq(mf_store_commit(s), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_open(&s, path), 0, "%s", mf_last_error());
    return s;
}

static void run(const crafted *c, const mf_clean_params *p, mf_clean_result *r)
{
    mf_store *s = write_and_open(c);
    cr_assert_eq(mf_clean_run(s, p, r), 0, "%s", mf_last_error());
    mf_store_close(s);
}

/* The rows dropped, as a string "i:rule i:rule ..." for readable assertions. */
static const char *dropped(const mf_clean_result *r)
{
    static char buf[4096];
    size_t k = 0;
    buf[0] = '\0';
    for (uint64_t i = 0; i < r->rows; i++)
        if (r->rule[i] != MF_RULE_KEEP)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%llu:%s", k ? " " : "",
                                  (unsigned long long)i, mf_clean_rule_name(r->rule[i]));
    return buf;
}

Test(clean, min_magnitude_drops_below_the_threshold)
{
    crafted c = {0};
    for (int i = 0; i < 10; i++)
        add_row(&c, (float[DIM]){1, (float)i}, (float)(i + 1), 0);
    mf_clean_params p = mf_clean_default_params();
    p.min_magnitude = 5.5;
    mf_clean_result r;
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "0:min-magnitude 1:min-magnitude 2:min-magnitude "
                                  "3:min-magnitude 4:min-magnitude");
    cr_assert_float_eq(r.figure[4], 5.0f, 1e-4);
    cr_assert_eq(r.dropped[MF_RULE_KEEP], 5);
    mf_clean_result_release(&r);
}

Test(clean, drop_lowest_global_and_per_label)
{
    crafted c = {0};
    float mags[10] = {30, 12, 25, 11, 40, 10, 22, 21, 35, 13};
    int64_t labels[10] = {0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
    for (int i = 0; i < 10; i++)
        add_row(&c, (float[DIM]){1, (float)i}, mags[i], labels[i]);
    mf_clean_params p = mf_clean_default_params();
    p.drop_lowest = 30; /* 3 of 10: magnitudes 10, 11, 12 */
    mf_clean_result r;
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "1:drop-lowest 3:drop-lowest 5:drop-lowest");
    mf_clean_result_release(&r);

    p = mf_clean_default_params();
    p.drop_lowest_per_label = 50; /* label 0: 2 of 4 (11, 12); label 1: 3 of 6 (10, 13, 21) */
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r),
                     "1:drop-lowest-per-label 3:drop-lowest-per-label "
                     "5:drop-lowest-per-label 7:drop-lowest-per-label 9:drop-lowest-per-label");
    mf_clean_result_release(&r);
}

Test(clean, auto_cut_finds_the_low_mode_or_the_bulk_edge)
{
    enum { N = 2000 };
    static float m[N];
    /* 10% around 12, 90% around 28 */
    for (int i = 0; i < N; i++) {
        /* sum of three equidistributed sequences: close to a standard normal */
        double u =
            fmod(i * 0.6180339887, 1) + fmod(i * 0.4142135624, 1) + fmod(i * 0.7320508076, 1);
        double z = 2.0 * (u - 1.5);
        m[i] = (float)(i % 10 == 0 ? 12 + 1.5 * z : 28 + 2.5 * z);
    }
    char why[512];
    double cut = mf_clean_auto_cut(m, N, why, sizeof why);
    cr_assert(cut > 15 && cut < 23, "cut %.2f: %s", cut, why);
    cr_assert(strstr(why, "two modes"), "%s", why);
    for (int i = 0; i < N; i++)
        m[i] = i % 10 == 0 ? m[i] + 16 : m[i]; /* one mode only */
    cut = mf_clean_auto_cut(m, N, why, sizeof why);
    cr_assert(strstr(why, "no low mode found") && strstr(why, "instead"), "%s", why);
    cr_assert(cut < 22, "cut %.2f", cut);
    /* uniform magnitudes (a model whose magnitude tracks quality loosely): a mixture
     * fit finds two components, but the density has no valley; nothing is dropped */
    for (int i = 0; i < N; i++)
        m[i] = 10.f + 25.f * (float)fmod(i * 0.6180339887, 1);
    cut = mf_clean_auto_cut(m, N, why, sizeof why);
    cr_assert(strstr(why, "no low mode found") && strstr(why, "nothing dropped"), "%s", why);
    cr_assert(cut < 10, "cut %.2f", cut);
}

static void outlier_store(crafted *c)
{
    add_identity(c, 0, 10, 8, 20.f);
    add_identity(c, 1, 11, 8, 20.f);
    add_identity(c, 2, 12, 8, 20.f);
    float v[DIM] = {0.1f, 0, 1, 0, 0.3f}; /* an identity-12 face labelled 10: row 24 */
    add_row(c, v, 20.f, 10);
}

Test(clean, outliers_flag_exactly_the_wrong_sample)
{
    crafted c = {0};
    outlier_store(&c);
    mf_clean_params p = mf_clean_default_params();
    p.outliers = 1;
    mf_clean_result r;
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "24:spread");
    cr_assert(r.figure[24] < 0.2f, "cosine %.3f", r.figure[24]);
    mf_clean_result_release(&r);

    p.min_center_cos = 0.5; /* the floor is tested first */
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "24:center-cos");
    mf_clean_result_release(&r);
}

Test(clean, dedup_keeps_the_highest_magnitude_of_each_group)
{
    crafted c = {0};
    add_row(&c, (float[DIM]){1, 0, 0, 0, 0, 0, 0, 0}, 20, 0);       /* 0: group A */
    add_row(&c, (float[DIM]){0, 1, 0, 0, 0, 0, 0, 0}, 20, 0);       /* 1 */
    add_row(&c, (float[DIM]){0, 0, 1, 0, 0, 0, 0, 0}, 20, 1);       /* 2: group B */
    add_row(&c, (float[DIM]){1, 0.02f, 0, 0, 0, 0, 0, 0}, 25, 0);   /* 3: group A, best */
    add_row(&c, (float[DIM]){0, 0, 0, 1, 0, 0, 0, 0}, 20, 1);       /* 4 */
    add_row(&c, (float[DIM]){0, 0, 1, 0.05f, 0, 0, 0, 0}, 30, 1);   /* 5: group B, best */
    add_row(&c, (float[DIM]){0, 0, 1, 0, 0.05f, 0, 0, 0}, 22, 1);   /* 6: group B */
    add_row(&c, (float[DIM]){0, 0.7f, 0.7f, 0, 0, 0, 0, 0}, 40, 1); /* 7: cos 0.7 to 1, 2 */
    mf_clean_params p = mf_clean_default_params();
    p.dedup_cos = 0.95;
    mf_clean_result r;
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "0:dedup 2:dedup 6:dedup");
    cr_assert(r.figure[0] > 0.99f && r.figure[0] <= 1.0f);
    mf_clean_result_release(&r);

    /* the same through k-means cells (the large-store path) */
    p.dedup_flat_max = 2;
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "0:dedup 2:dedup 6:dedup");
    mf_clean_result_release(&r);
}

Test(clean, merge_reports_and_relabels_to_the_larger_label)
{
    crafted c = {0};
    add_identity(&c, 0, 5, 8, 20.f);
    add_identity(&c, 0, 9, 4, 20.f); /* same person as label 5, fewer rows */
    add_identity(&c, 1, 7, 8, 20.f);
    mf_clean_params p = mf_clean_default_params();
    p.merge_cos = 0.9;
    mf_clean_result r;
    run(&c, &p, &r);
    cr_assert_eq(r.n_merges, 1);
    cr_assert_eq(r.merges[0].a, 5);
    cr_assert_eq(r.merges[0].b, 9);
    cr_assert_eq(r.label[10], 9, "without --apply-merge labels stay");
    mf_clean_result_release(&r);
    p.apply_merge = 1;
    run(&c, &p, &r);
    cr_assert_eq(r.label[10], 5);
    cr_assert_eq(r.label[16], 7);
    cr_assert_eq(r.identities_out, 2);
    mf_clean_result_release(&r);
}

Test(clean, rules_combine_in_the_documented_order)
{
    crafted c = {0};
    add_identity(&c, 0, 1, 8, 20.f); /* rows 0-7: label 1 */
    for (int i = 0; i < 4; i++) {    /* rows 8-11: label 2, the same person as label 1 */
        float v[DIM] = {1, 0, 0, 0, 0, 0, 0, 0};
        v[4 + i] = 0.2f;
        add_row(&c, v, 20.f, 2);
    }
    float copy[DIM] = {1, 0, 0, 0, 0, 0.3f};
    add_row(&c, copy, 25.f, 1);      /* 12: a copy of row 1 with a higher magnitude */
    add_identity(&c, 1, 3, 3, 20.f); /* rows 13-15: a small label */
    float v[DIM] = {0, 0, 0, 1, 0.3f};
    add_row(&c, v, 2.f, 3); /* 16: low magnitude AND an outlier of label 3 */
    mf_clean_params p = mf_clean_default_params();
    p.min_magnitude = 5;
    p.outliers = 1;
    p.dedup_cos = 0.999;
    p.merge_cos = 0.9;
    p.apply_merge = 1;
    p.min_per_label = 5;
    mf_clean_result r;
    run(&c, &p, &r);
    /* 16 is charged to the magnitude rule (first); the copy keeps the higher magnitude;
     * label 2 (4 rows < 5) survives because it was merged into label 1 first; label 3
     * keeps 3 rows < 5 */
    cr_assert_str_eq(dropped(&r), "1:dedup 13:min-per-label 14:min-per-label "
                                  "15:min-per-label 16:min-magnitude");
    cr_assert_float_eq(r.figure[13], 3.0f, 1e-6);
    cr_assert_eq(r.n_merges, 1);
    cr_assert_eq(r.label[8], 1);
    mf_clean_result_release(&r);
}

Test(clean, label_rules_need_labels)
{
    crafted c = {0};
    for (int i = 0; i < 6; i++)
        add_row(&c, (float[DIM]){1, (float)i}, 10.f + i, -1);
    mf_store *s = write_and_open(&c);
    mf_clean_params p = mf_clean_default_params();
    p.min_per_label = 2;
    mf_clean_result r;
    cr_assert_eq(mf_clean_run(s, &p, &r), MF_ERR_ARG);
    cr_assert(strstr(mf_last_error(), "no labels"), "%s", mf_last_error());
    p = mf_clean_default_params();
    p.min_magnitude = 12;
    cr_assert_eq(mf_clean_run(s, &p, &r), 0, "magnitude rules work without labels");
    cr_assert_eq(r.dropped[MF_RULE_MIN_MAGNITUDE], 2);
    mf_clean_result_release(&r);
    mf_store_close(s);
}

/* ---- rule 2 on stores whose cosines are set exactly ------------------------------------ */

/* A row at cosine `cos` to the unit direction u (DIM floats; zero on axes 8..31), the rest
 * along noise axis 8 + j % 24 with a sign that alternates every 24 rows, so that the
 * noise of an identity's rows cancels in its centre. */
static void add_at_cos(crafted *c, const float *u, double cos, int j, float mag, int64_t label)
{
    float v[DIM];
    double s = sqrt(1 - cos * cos), sign = (j / 24) % 2 ? -1 : 1;
    for (int d = 0; d < DIM; d++)
        v[d] = (float)(cos * u[d]);
    v[8 + j % 24] += (float)(sign * s);
    add_row(c, v, mag, label);
}

static void axis(float *u, int a)
{
    memset(u, 0, DIM * sizeof *u);
    u[a] = 1.f;
}

/* Four identities on axes 0-3: 25 blurry rows each (magnitude 10-14, cosine 0.35-0.75:
 * far from the centre and scattered) and 40 sharp ones (26-34, cosine 0.88-0.92). Then
 * row 260: sharp, label 0, cosine 0.62 (an outlier for a sharp face); row 261: blurry,
 * label 1, cosine 0.30 (ordinary for a blurry face, though far below the label's sharp
 * faces). */
static void quality_store(crafted *c)
{
    float u[DIM];
    for (int k = 0; k < 4; k++) {
        axis(u, k);
        for (int i = 0; i < 25; i++)
            add_at_cos(c, u, 0.35 + 0.4 * ((i * 7) % 25) / 24.0, 2 * i, 10.f + 4.f * i / 24.f,
                       k);
        for (int i = 0; i < 40; i++)
            add_at_cos(c, u, 0.88 + 0.04 * ((i * 7) % 40) / 39.0, 2 * i + 1,
                       26.f + 8.f * i / 39.f, k);
    }
    axis(u, 0);
    add_at_cos(c, u, 0.62, 5, 30.f, 0);
    axis(u, 1);
    add_at_cos(c, u, 0.30, 6, 12.f, 1);
}

Test(clean, spread_judges_a_blurry_face_against_blurry_faces)
{
    crafted c = {0};
    quality_store(&c);
    mf_clean_params p = mf_clean_default_params();
    p.outliers = 1;
    mf_clean_result r;
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "260:spread");
    cr_assert_float_eq(r.figure[260], 0.62f, 0.02f);
    cr_assert(strstr(r.rule2_reason, "spread") && strstr(r.rule2_reason, "nearer-identity"),
              "%s", r.rule2_reason);
    mf_clean_result_release(&r);
}

Test(clean, min_center_cos_alone_runs_only_the_floor)
{
    crafted c = {0};
    quality_store(&c);
    mf_clean_params p = mf_clean_default_params();
    p.min_center_cos = 0.32; /* only row 261 (0.30) is below; 260 is a spread outlier */
    mf_clean_result r;
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "261:center-cos");
    cr_assert(strstr(r.rule2_reason, "floor") && !strstr(r.rule2_reason, "spread") &&
                  !strstr(r.rule2_reason, "nearer"),
              "%s", r.rule2_reason);
    mf_clean_result_release(&r);
    p.outliers = 1; /* both, floor first */
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "260:spread 261:center-cos");
    mf_clean_result_release(&r);
}

/* A on axis 0, its look-alike B at cosine 0.6 to A, C on axis 2: 40 sharp rows each;
 * row 120 is a face of A (cosine 0.9 to A, so 0.54 to B) labelled B. */
static void lookalike_store(crafted *c)
{
    float a[DIM], b[DIM], cc[DIM];
    axis(a, 0), axis(cc, 2);
    memset(b, 0, sizeof b);
    b[0] = 0.6f, b[1] = 0.8f;
    const float *u[3] = {a, b, cc};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 40; i++)
            add_at_cos(c, u[k], 0.88 + 0.04 * ((i * 7) % 40) / 39.0, i, 26.f + 8.f * i / 39.f,
                       k);
    add_at_cos(c, a, 0.9, 7, 30.f, 1);
}

Test(clean, nearer_identity_names_the_lookalike)
{
    crafted c = {0};
    lookalike_store(&c);
    mf_clean_params p = mf_clean_default_params();
    p.outliers = 1;
    p.outlier_k = 0; /* the nearer-identity test alone */
    mf_clean_result r;
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "120:nearer-identity");
    cr_assert_float_eq(r.figure[120], 0.9f, 0.03f, "cosine to A's centre %.3f", r.figure[120]);
    mf_clean_result_release(&r);
    p.nearer = 0; /* nothing left to run */
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "");
    mf_clean_result_release(&r);
    p = mf_clean_default_params();
    p.outliers = 1; /* both: the spread test sees it first */
    run(&c, &p, &r);
    cr_assert_str_eq(dropped(&r), "120:spread");
    mf_clean_result_release(&r);
}
