/* Synthetic generator: determinism (seed, row ranges, thread counts), the statistics it
 * promises, and a store written through the store API. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "mf/store.h"
#include "mf/synth.h"

#define ROWS 6000
#define IDS 200
#define DIM 128

static mf_synth_params small_params(void)
{
    mf_synth_params p = mf_synth_default_params();
    p.rows = ROWS;
    p.identities = IDS;
    p.dim = DIM;
    p.seed = 11;
    return p;
}

typedef struct rows_buf {
    float emb[ROWS * DIM], mag[ROWS], quality[ROWS];
    int64_t label[ROWS], truth[ROWS], junk[ROWS], dup[ROWS], mis[ROWS], dup_of[ROWS];
    int64_t kind[ROWS];
} rows_buf;

static rows_buf *generate(const mf_synth_params *p, uint64_t start, size_t n)
{
    rows_buf *b = calloc(1, sizeof *b);
    mf_synth *g;
    cr_assert_eq(mf_synth_new(&g, p), 0, "%s", mf_last_error());
    mf_synth_batch o = {b->emb, b->mag, b->label,  b->truth,   b->junk,
                        b->dup, b->mis, b->dup_of, b->quality, b->kind};
    cr_assert_eq(mf_synth_rows(g, start, n, &o), 0, "%s", mf_last_error());
    mf_synth_free(g);
    return b;
}

static double cosine(const float *a, const float *b, int dim)
{
    double ab = 0, aa = 0, bb = 0;
    for (int d = 0; d < dim; d++) {
        ab += (double)a[d] * b[d];
        aa += (double)a[d] * a[d];
        bb += (double)b[d] * b[d];
    }
    return ab / sqrt(aa * bb);
}

Test(synth, same_rows_whatever_threads_and_range)
{
    mf_synth_params p = small_params();
    omp_set_num_threads(1);
    rows_buf *a = generate(&p, 0, ROWS);
    omp_set_num_threads(2);
    rows_buf *b = generate(&p, 0, ROWS);
    rows_buf *c = generate(&p, 3000, 1000); /* rows 3000..3999 alone */
    cr_assert(memcmp(a, b, sizeof *a) == 0, "thread count changed the rows");
    cr_assert(memcmp(a->emb + 3000 * DIM, c->emb, 1000 * DIM * sizeof(float)) == 0);
    cr_assert(memcmp(a->label + 3000, c->label, 1000 * sizeof(int64_t)) == 0);
    p.seed = 12;
    rows_buf *d = generate(&p, 0, ROWS);
    cr_assert(memcmp(a->emb, d->emb, sizeof a->emb) != 0, "seed had no effect");
    free(a), free(b), free(c), free(d);
}

Test(synth, sizes_cover_rows_and_stay_in_bounds)
{
    mf_synth_params p = small_params();
    mf_synth *g;
    cr_assert_eq(mf_synth_new(&g, &p), 0);
    uint64_t sum = 0, big = 0;
    for (int64_t k = 0; k < IDS; k++) {
        uint64_t n = mf_synth_identity_size(g, k);
        cr_assert_eq(mf_synth_identity_start(g, k), sum);
        cr_assert(n >= 5, "identity %lld has %llu rows", (long long)k, (unsigned long long)n);
        big += n > 60;
        sum += n;
    }
    cr_assert_eq(sum, ROWS);
    cr_assert(big > 0 && big < IDS / 4, "sizes are not heavy-tailed (%llu large)",
              (unsigned long long)big);
    mf_synth_free(g);
}

Test(synth, statistics_match_the_model)
{
    mf_synth_params p = small_params();
    rows_buf *b = generate(&p, 0, ROWS);
    int64_t junk = 0, dup = 0, mis = 0, nonface = 0, other = 0;
    double junk_mag = 0, other_mag = 0, good_mag = 0;
    int64_t good = 0;
    for (int i = 0; i < ROWS; i++) {
        cr_assert_float_eq(b->mag[i], sqrtf(b->mag[i] * b->mag[i]), 1e-3);
        junk += b->junk[i];
        dup += b->dup[i];
        mis += b->mis[i];
        cr_assert_eq(b->mis[i], !b->junk[i] && b->label[i] != b->truth[i]);
        cr_assert_eq(b->junk[i], b->kind[i] != 0);
        if (b->junk[i]) {
            cr_assert_eq(b->truth[i], -1);
            nonface += b->kind[i] == 1;
            other += b->kind[i] == 2;
            if (b->kind[i] == 1)
                junk_mag += b->mag[i];
            else
                other_mag += b->mag[i];
        } else if (b->quality[i] > 0.6) {
            good_mag += b->mag[i];
            good++;
        }
        if (b->dup[i]) {
            int64_t s = b->dup_of[i];
            cr_assert(s >= 0 && s < i && b->truth[s] == b->truth[i]);
            cr_assert_geq(cosine(b->emb + i * DIM, b->emb + s * DIM, DIM), 0.97);
            cr_assert_eq(b->label[i], b->label[s], "a copy keeps its source's label");
        }
    }
    /* 2% + 1%, 2%, 3% of 6000 rows: binomial counts well inside these bounds */
    cr_assert(junk > 120 && junk < 260, "junk %lld", (long long)junk);
    cr_assert(other > 30 && other < 100, "unrelated faces %lld", (long long)other);
    cr_assert(dup > 60 && dup < 200, "dup %lld", (long long)dup);
    cr_assert(mis > 100 && mis < 280, "mislabeled %lld", (long long)mis);
    junk_mag /= (double)nonface;
    other_mag /= (double)other;
    good_mag /= (double)good;
    cr_assert(junk_mag < 16 && good_mag > 24, "junk %.1f good %.1f", junk_mag, good_mag);
    cr_assert(other_mag > 22, "unrelated faces are good-quality faces: %.1f", other_mag);
    free(b);
}

Test(synth, identities_are_compact_and_apart)
{
    mf_synth_params p = small_params();
    p.dim = 512; /* cosines between random directions depend on the width */
    mf_synth *g;
    cr_assert_eq(mf_synth_new(&g, &p), 0);
    size_t n = (size_t)mf_synth_identity_size(g, 3);
    uint64_t s0 = mf_synth_identity_start(g, 3);
    float *emb = malloc(n * 512 * sizeof(float));
    int64_t *junk = malloc(n * sizeof(int64_t)), *dup = malloc(n * sizeof(int64_t));
    float *q = malloc(n * sizeof(float));
    mf_synth_batch o = {.emb = emb, .is_junk = junk, .is_dup = dup, .quality = q};
    cr_assert_eq(mf_synth_rows(g, s0, n, &o), 0);
    const float *c = mf_synth_centre(g, 3);
    for (size_t i = 0; i < n; i++)
        if (!junk[i] && !dup[i] && q[i] > 0.6) {
            double cc = cosine(emb + i * 512, c, 512);
            cr_assert(cc > 0.55 && cc < 0.95, "sample %zu: cosine %.3f to its centre", i, cc);
        }
    double sum = 0;
    for (int64_t k = 10; k < 60; k++)
        sum += cosine(mf_synth_centre(g, k), mf_synth_centre(g, k + 1), 512);
    double mean = sum / 50;
    cr_assert(mean > 0.0 && mean < 0.3, "mean inter-identity cosine %.3f", mean);
    free(emb), free(junk), free(dup), free(q);
    mf_synth_free(g);
}

Test(synth, writes_a_valid_store)
{
    char dir[] = "/tmp/mf_test_synth_XXXXXX", path[300], cmd[400];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/s.h5", dir);
    mf_synth_params p = small_params();
    mf_synth_counts n;
    cr_assert_eq(mf_synth_write(&p, path, &n), 0, "%s", mf_last_error());
    mf_store *s;
    cr_assert_eq(mf_store_open(&s, path), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_rows(s), ROWS);
    cr_assert_eq(mf_store_dim(s), DIM);
    cr_assert(mf_store_has(s, "true_label") && mf_store_has(s, "quality") &&
              mf_store_has(s, "is_dup") && mf_store_has(s, "dup_of"));
    cr_assert_not_null(mf_store_attr(s, "mf_synth"));
    rows_buf *b = generate(&p, 0, ROWS);
    static float emb[100 * DIM];
    int64_t junk[100];
    cr_assert_eq(mf_store_read_embedding(s, 5000, 100, emb), 0);
    cr_assert_eq(mf_store_read_int64(s, "is_junk", 5000, 100, junk), 0);
    cr_assert(memcmp(emb, b->emb + 5000 * DIM, sizeof emb) == 0);
    cr_assert(memcmp(junk, b->junk + 5000, sizeof junk) == 0);
    char *id;
    cr_assert_eq(mf_store_read_ids(s, 17, 1, &id), 0);
    char want[64];
    snprintf(want, sizeof want, "synth/%lld/17.jpg", (long long)b->label[17]);
    cr_assert_str_eq(id, want);
    free(id);
    int64_t sum = 0;
    for (int i = 0; i < ROWS; i++)
        sum += b->mis[i];
    cr_assert_eq((int64_t)n.mislabeled, sum);
    mf_store_close(s);
    free(b);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void)!system(cmd);
}

Test(synth, rejects_bad_parameters)
{
    mf_synth_params p = small_params();
    mf_synth *g;
    p.rows = 10;
    cr_assert_eq(mf_synth_new(&g, &p), MF_ERR_ARG);
    p = small_params();
    p.junk = 1.5;
    cr_assert_eq(mf_synth_new(&g, &p), MF_ERR_ARG);
    p = small_params();
    p.dim = 0;
    cr_assert_eq(mf_synth_new(&g, &p), MF_ERR_ARG);
}

Test(synth, every_profile_is_valid_and_distinct)
{
    const char *name, *what;
    mf_synth_params base = small_params();
    int n = 0;
    for (int i = 0; (name = mf_synth_profile_name(i, &what)); i++, n++) {
        mf_synth_params p = small_params();
        cr_assert_eq(mf_synth_profile(&p, name), 0, "%s", name);
        cr_assert(what && *what);
        cr_assert_eq(p.rows, base.rows, "a profile keeps the size");
        mf_synth *g;
        cr_assert_eq(mf_synth_new(&g, &p), 0, "%s: %s", name, mf_last_error());
        mf_synth_free(g);
        if (i > 0)
            cr_assert(memcmp(&p, &base, sizeof p) != 0, "profile %s is the default", name);
    }
    cr_assert_geq(n, 10);
    mf_synth_params p = small_params();
    cr_assert_eq(mf_synth_profile(&p, "nope"), MF_ERR_ARG);
    cr_assert_eq(mf_synth_quality_parse("bimodal"), MF_SYNTH_Q_BIMODAL);
    cr_assert_eq(mf_synth_quality_parse("x"), -1);
}

/* Median and spread of the faces' cosine to their true centre in a quality band. */
static void cos_in_band(const mf_synth *g, const rows_buf *b, double lo, double hi,
                        double *mean, double *sd)
{
    double s = 0, ss = 0;
    int n = 0;
    for (int i = 0; i < ROWS; i++)
        if (!b->junk[i] && !b->dup[i] && b->quality[i] >= lo && b->quality[i] < hi) {
            double c = cosine(b->emb + i * DIM, mf_synth_centre(g, b->truth[i]), DIM);
            s += c, ss += c * c, n++;
        }
    cr_assert(n > 50, "band %.2f-%.2f has %d faces", lo, hi, n);
    *mean = s / n;
    *sd = sqrt(fmax(ss / n - *mean * *mean, 0));
}

Test(synth, quality_drives_cosine_noise_and_magnitude)
{
    mf_synth_params p = small_params();
    mf_synth_profile(&p, "blurry"); /* bimodal quality, jitter x4 at q = 0 */
    p.identity_spread = 0, p.modes = 0, p.quality_identity_sd = 0;
    mf_synth *g;
    cr_assert_eq(mf_synth_new(&g, &p), 0);
    rows_buf *b = generate(&p, 0, ROWS);
    int low = 0, mid = 0, high = 0;
    for (int i = 0; i < ROWS; i++)
        if (!b->junk[i]) {
            low += b->quality[i] < 0.35;
            mid += b->quality[i] >= 0.4 && b->quality[i] < 0.5;
            high += b->quality[i] >= 0.6;
        }
    /* two modes: blurry ~35%, clean ~60%, few in between */
    cr_assert(low > ROWS / 4 && high > ROWS / 2 && mid < ROWS / 20, "%d %d %d", low, mid, high);
    double m_lo, sd_lo, m_hi, sd_hi;
    cos_in_band(g, b, 0.1, 0.3, &m_lo, &sd_lo);
    cos_in_band(g, b, 0.7, 0.9, &m_hi, &sd_hi);
    cr_assert(m_lo < m_hi - 0.2, "cosine to centre %.3f (blurry) vs %.3f", m_lo, m_hi);
    cr_assert(sd_lo > 2 * sd_hi, "spread %.3f (blurry) vs %.3f", sd_lo, sd_hi);
    free(b);
    mf_synth_free(g);
}

Test(synth, wrong_labels_prefer_lookalikes)
{
    mf_synth_params p = small_params();
    mf_synth_profile(&p, "lookalikes"); /* 25% twins, 80% of their wrong labels */
    mf_synth *g;
    cr_assert_eq(mf_synth_new(&g, &p), 0);
    rows_buf *b = generate(&p, 0, ROWS);
    int twin_side = 0, to_twin = 0;
    for (int i = 0; i < ROWS; i++) {
        if (!b->mis[i])
            continue;
        int64_t t = b->truth[i], l = b->label[i];
        int has =
            mf_synth_is_lookalike(g, t) || (t + 1 < IDS && mf_synth_is_lookalike(g, t + 1));
        if (!has)
            continue;
        twin_side++;
        to_twin += (l == t - 1 && mf_synth_is_lookalike(g, t)) ||
                   (l == t + 1 && mf_synth_is_lookalike(g, t + 1));
    }
    cr_assert(twin_side > 20 && to_twin > 0.65 * twin_side, "%d of %d", to_twin, twin_side);
    free(b);
    mf_synth_free(g);
}

Test(synth, pareto_sizes_keep_the_mean_and_a_heavy_tail)
{
    mf_synth_params p = small_params();
    mf_synth_profile(&p, "heavytail");
    mf_synth *g;
    cr_assert_eq(mf_synth_new(&g, &p), 0);
    uint64_t sum = 0, largest = 0, tiny = 0;
    for (int64_t k = 0; k < IDS; k++) {
        uint64_t n = mf_synth_identity_size(g, k);
        sum += n;
        largest = n > largest ? n : largest;
        tiny += n <= 5;
    }
    cr_assert_eq(sum, ROWS);
    cr_assert(largest > 10 * ROWS / IDS, "largest %llu", (unsigned long long)largest);
    cr_assert(tiny > IDS / 4, "%llu identities of 5 rows or fewer", (unsigned long long)tiny);
    mf_synth_free(g);
}

Test(synth, several_drift_directions_and_unrelated_faces)
{
    mf_synth_params p = small_params();
    p.drift_dirs = 3, p.distractors = 0.05, p.junk = 0.05;
    rows_buf *b = generate(&p, 0, ROWS);
    /* non-faces sit near one of three directions: pairs of them are either close
     * (same direction) or not (different ones), in about a 1:2 ratio */
    int idx[64], n = 0;
    for (int i = 0; i < ROWS && n < 64; i++)
        if (b->kind[i] == 1)
            idx[n++] = i;
    int close = 0, pairs = 0;
    for (int a = 0; a < n; a++)
        for (int c = a + 1; c < n; c++, pairs++)
            close += cosine(b->emb + idx[a] * DIM, b->emb + idx[c] * DIM, DIM) > 0.3;
    cr_assert(close > pairs / 5 && close < pairs / 2, "%d of %d pairs close", close, pairs);
    free(b);
}
