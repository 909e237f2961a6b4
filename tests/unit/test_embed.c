/* test_embed.c - the embedding pipeline with a stand-in network: rows and failures reach
 * the sink in input order, and faces the network asks to run again (int8's faces off the
 * calibrated ranges) are gathered across batches, run together, and replace their rows'
 * outputs before those rows are stored. Fixtures: tests/fixtures/source/raw. */
#include "mf/embed.h"
#include "mf/idset.h"
#include "mf/source.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "temp_dir.h"

#define DIM 4
#define MAX_EVENTS 512
#define MARK_AGAIN -7.0f

/* The stand-in network: face number k (in the order faces reach it, which is input
 * order) gets feature[0] = k; every `every`-th face from `first` on is to run again,
 * which sets feature[0] = MARK_AGAIN. */
typedef struct net {
    int faces, every, first;
    int wanted[MF_EMBED_MAX_BATCH]; /* of the last forward call */
    int again_calls, again_faces, again_largest;
} net;

static int fake_forward(void *ctx, int n, const uint8_t *faces, float *feat, float *mag)
{
    (void)faces;
    net *w = ctx;
    for (int i = 0; i < n; i++, w->faces++) {
        memset(feat + i * DIM, 0, DIM * sizeof *feat);
        feat[i * DIM] = (float)w->faces;
        mag[i] = 1.0f;
        w->wanted[i] =
            w->every && w->faces >= w->first && (w->faces - w->first) % w->every == 0;
    }
    return 0;
}

static int fake_wanted(void *ctx, int i) { return ((net *)ctx)->wanted[i]; }

static int fake_again(void *ctx, int n, const uint8_t *faces, float *feat, float *mag)
{
    (void)faces;
    net *w = ctx;
    cr_assert_leq(n, MF_EMBED_MAX_BATCH);
    for (int i = 0; i < n; i++) {
        memset(feat + i * DIM, 0, DIM * sizeof *feat);
        feat[i * DIM] = MARK_AGAIN;
        mag[i] = 2.0f;
    }
    w->again_calls++, w->again_faces += n;
    w->again_largest = n > w->again_largest ? n : w->again_largest;
    return 0;
}

/* What the sink saw: ids in order, each row's feature[0], and batch_done calls. */
typedef struct seen_by_sink {
    char id[MAX_EVENTS][64];
    float first[MAX_EVENTS]; /* feature[0], or NAN for a failure */
    int n, batches;
} seen_by_sink;

static const char *base(const char *id)
{
    const char *slash = strrchr(id, '/');
    return slash ? slash + 1 : id;
}

static int sink_rows(void *ctx, size_t n, const float *feat, const float *mag,
                     const char *const *ids, const int64_t *labels)
{
    (void)mag, (void)labels;
    seen_by_sink *s = ctx;
    for (size_t i = 0; i < n; i++, s->n++) {
        cr_assert_lt(s->n, MAX_EVENTS);
        snprintf(s->id[s->n], sizeof s->id[0], "%s", base(ids[i]));
        s->first[s->n] = feat[i * DIM];
    }
    return 0;
}

static int sink_failed(void *ctx, const char *id, const char *reason)
{
    (void)reason;
    seen_by_sink *s = ctx;
    cr_assert_lt(s->n, MAX_EVENTS);
    snprintf(s->id[s->n], sizeof s->id[0], "%s", base(id));
    s->first[s->n++] = NAN;
    return 0;
}

static int sink_done(void *ctx)
{
    ((seen_by_sink *)ctx)->batches++;
    return 0;
}

static void setup(void) { temp_dir_make("embed"); }
TestSuite(embed, .init = setup, .fini = temp_dir_remove);

/* A list of `n` inputs f000.jpg...: links to the two fixture faces, except that input
 * number `broken` (if >= 0) is not an image. Returns the list's path. */
static const char *make_inputs(int n, int broken)
{
    const char *fx = getenv("MF_FIXTURES");
    if (!fx)
        cr_skip_test("MF_FIXTURES not set");
    static char list[128];
    snprintf(list, sizeof list, "%s/faces.list", dir);
    FILE *f = fopen(list, "w");
    cr_assert_not_null(f);
    for (int i = 0; i < n; i++) {
        char path[128], target[1024];
        snprintf(path, sizeof path, "%s/f%03d.jpg", dir, i);
        if (i == broken) {
            FILE *b = fopen(path, "w");
            cr_assert_not_null(b);
            fputs("not an image\n", b);
            fclose(b);
        } else {
            snprintf(target, sizeof target, "%s/source/raw/id%02d.jpg", fx, i % 2);
            cr_assert_eq(symlink(target, path), 0, "cannot link %s", path);
        }
        fprintf(f, "f%03d.jpg %d\n", i, i % 2);
    }
    fclose(f);
    return list;
}

static void run(const char *list, int batch, net *w, seen_by_sink *s, int with_again)
{
    mf_source_params sp = mf_source_default_params();
    mf_source *src;
    cr_assert_eq(mf_source_new(&src, &sp), 0);
    cr_assert_eq(mf_source_add(src, list, MF_INPUT_LIST), 0);
    mf_idset *ids = mf_idset_new(64);
    mf_embed_params p = mf_embed_default_params();
    p.batch = batch, p.resize = 1;
    if (with_again)
        p.again_wanted = fake_wanted, p.again_run = fake_again;
    mf_embed_sink sink = {sink_rows, sink_failed, sink_done, s};
    mf_embed_stats st;
    cr_assert_eq(mf_embed_run(src, ids, &p, DIM, fake_forward, w, &sink, NULL, &st), 0);
    mf_idset_free(ids);
    mf_source_free(src);
}

/* Every input reaches the sink once; rows in input order (a batch's failures follow its
 * rows); row k (the k-th face) carries the again-mark exactly when face k was asked to
 * run again, else its own number. */
static void check_order(const seen_by_sink *s, int n, int broken, const net *w)
{
    cr_assert_eq(s->n, n, "the sink saw %d of %d inputs", s->n, n);
    int face = 0, failures = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(s->first[i])) {
            char want[16];
            snprintf(want, sizeof want, "f%03d.jpg", broken);
            cr_assert_str_eq(s->id[i], want, "only input %d fails", broken);
            failures++;
            continue;
        }
        char want[16];
        snprintf(want, sizeof want, "f%03d.jpg", face + (broken >= 0 && face >= broken));
        cr_assert_str_eq(s->id[i], want, "row %d out of order", face);
        int again = w->every && face >= w->first && (face - w->first) % w->every == 0;
        cr_assert_float_eq(s->first[i], again ? MARK_AGAIN : (float)face, 0, "face %d (%s): %g",
                           face, s->id[i], s->first[i]);
        face++;
    }
    cr_assert_eq(failures, broken >= 0);
}

Test(embed, faces_run_again_together_and_rows_keep_their_order)
{
    int n = 75, broken = 33;
    const char *list = make_inputs(n, broken);
    net w = {.every = 3, .first = 1};
    seen_by_sink s = {0};
    run(list, 4, &w, &s, 1);
    check_order(&s, n, broken, &w);
    cr_assert_eq(w.again_faces, 25, "%d faces ran again", w.again_faces); /* 1, 4 .. 73 */
    cr_assert_eq(w.again_largest, 4, "faces run again were gathered to a full batch");
    cr_assert_lt(w.again_calls, w.again_faces / 2);
}

Test(embed, a_rare_face_waits_at_most_the_hold_limit)
{
    /* One face to run again, early: the rows after it wait, but no more than
     * MF_EMBED_HOLD batches of them; the face runs alone, the rest is handed over. */
    int n = 4 * (MF_EMBED_HOLD + 4);
    const char *list = make_inputs(n, -1);
    net w = {.every = 10000, .first = 2};
    seen_by_sink s = {0};
    run(list, 4, &w, &s, 1);
    check_order(&s, n, -1, &w);
    cr_assert_eq(w.again_faces, 1);
    cr_assert_eq(w.again_calls, 1);
    net plain = {0};
    seen_by_sink s0 = {0};
    run(list, 4, &plain, &s0, 0);
    cr_assert_eq(s.batches, s0.batches, "every batch is reported done once");
}

Test(embed, without_a_second_pass_wanted_faces_keep_the_first_outputs)
{
    int n = 20;
    const char *list = make_inputs(n, 5);
    net w = {.every = 2, .first = 0};
    seen_by_sink s = {0};
    run(list, 4, &w, &s, 0);
    cr_assert_eq(w.again_calls, 0);
    net plain = {0}; /* the marks never come: every row has its own number */
    check_order(&s, n, 5, &plain);
}
