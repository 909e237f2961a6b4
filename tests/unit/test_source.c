/* test_source.c - every input kind yields the same samples; failures carry reasons;
 * sharding partitions the samples. Fixtures: scripts/make_source_fixtures.py. */
#include "mf/image.h"
#include "mf/source.h"
#include "mf/status.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct got {
    char id[256], error[256];
    int64_t label;
    uint32_t pixels; /* hash of the decoded image, 0 if not decodable */
    int has_lm;
} got;

static void go_to_fixtures(void)
{
    const char *fx = getenv("MF_FIXTURES");
    if (!fx)
        cr_skip_test("MF_FIXTURES not set");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/source", fx);
    cr_assert_eq(chdir(dir), 0, "cannot chdir to %s", dir);
}

static uint32_t pixel_hash(const mf_sample *s)
{
    mf_image im;
    mf_decode_params dp = mf_decode_default_params();
    if (mf_image_decode(&im, s->data, s->size, &dp) < 0)
        return 0;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < (size_t)im.width * im.height * 3; i++)
        h = (h ^ im.data[i]) * 16777619u;
    mf_image_release(&im);
    return h;
}

/* Run a source over inputs (a leading '@' marks a list file); returns the count. */
static int run(const char **inputs, int n, mf_source_params p, got *out, int max)
{
    mf_source *s;
    cr_assert_eq(mf_source_new(&s, &p), 0);
    for (int i = 0; i < n; i++)
        cr_assert_eq(mf_source_add(s, inputs[i] + (inputs[i][0] == '@'),
                                   inputs[i][0] == '@' ? MF_INPUT_LIST : MF_INPUT_AUTO),
                     0);
    mf_sample x;
    int k = 0, rc;
    while ((rc = mf_source_next(s, &x)) > 0) {
        cr_assert_lt(k, max);
        got *g = &out[k++];
        memset(g, 0, sizeof *g);
        snprintf(g->id, sizeof g->id, "%s", x.id);
        snprintf(g->error, sizeof g->error, "%s", x.error ? x.error : "");
        g->label = x.label;
        g->has_lm = x.has_landmarks;
        if (!x.error)
            g->pixels = pixel_hash(&x);
    }
    cr_assert_eq(rc, 0, "%s", mf_last_error());
    mf_source_free(s);
    return k;
}

Test(source, every_kind_yields_the_same_images)
{
    go_to_fixtures();
    static const char *kinds[] = {"tree",           "faces.tar",     "faces.tar.gz",
                                  "faces.tar.xz",   "faces.tar.zst", "faces.zip",
                                  "wds-000000.tar", "train.rec"};
    static const char *first_id[] = {"tree/id00/0.jpg",
                                     "faces.tar//id00/0.jpg",
                                     "faces.tar.gz//id00/0.jpg",
                                     "faces.tar.xz//id00/0.jpg",
                                     "faces.tar.zst//id00/0.jpg",
                                     "faces.zip//id00/0.jpg",
                                     "wds-000000.tar//id00_0.jpg",
                                     "train.rec//1"};
    got ref[16], g[16];
    mf_source_params p = mf_source_default_params();
    p.label_from_dir = 1;
    cr_assert_eq(run(kinds, 1, p, ref, 16), 8);
    for (int i = 0; i < 8; i++) {
        cr_assert_neq(ref[i].pixels, 0, "%s", ref[i].id);
        cr_assert_eq(ref[i].label, i / 2, "%s label %lld", ref[i].id, (long long)ref[i].label);
    }
    for (size_t k = 1; k < sizeof kinds / sizeof *kinds; k++) {
        cr_assert_eq(run(&kinds[k], 1, p, g, 16), 8, "%s", kinds[k]);
        cr_assert_str_eq(g[0].id, first_id[k]);
        for (int i = 0; i < 8; i++) {
            cr_assert_str_eq(g[i].error, "", "%s: %s", g[i].id, g[i].error);
            cr_assert_eq(g[i].pixels, ref[i].pixels, "%s differs from %s", g[i].id, ref[i].id);
            cr_assert_eq(g[i].label, i / 2, "%s label %lld", g[i].id, (long long)g[i].label);
        }
    }
}

Test(source, label_from_dir_names_are_sorted_and_shared)
{
    go_to_fixtures();
    const char *in[] = {"faces.tar", "tree"};
    mf_source_params p = mf_source_default_params();
    p.label_from_dir = 1;
    mf_source *s;
    cr_assert_eq(mf_source_new(&s, &p), 0);
    for (int i = 0; i < 2; i++)
        mf_source_add(s, in[i], MF_INPUT_AUTO);
    mf_sample x;
    int n = 0;
    while (mf_source_next(s, &x) > 0)
        n++;
    cr_assert_eq(n, 16);
    cr_assert_eq(mf_source_label_count(s), 4);
    cr_assert_str_eq(mf_source_label_name(s, 0), "id00");
    cr_assert_str_eq(mf_source_label_name(s, 3), "id03");
    cr_assert_null(mf_source_label_name(s, 4));
    mf_source_free(s);
}

Test(source, list_labels_landmarks_and_bad_lines)
{
    go_to_fixtures();
    const char *in[] = {"@faces.list"};
    got g[16];
    int n = run(in, 1, mf_source_default_params(), g, 16);
    cr_assert_eq(n, 5);
    cr_assert_str_eq(g[0].id, "raw/id00.jpg"); /* resolved against the list's folder (here .) */
    cr_assert_eq(g[0].label, 0);
    cr_assert(g[0].has_lm);
    cr_assert_eq(g[1].label, 1);
    cr_assert_eq(g[2].label, 0);
    cr_assert_not(g[2].has_lm);
    cr_assert_eq(g[3].label, -1);
    /* "tree/id01/0.jpg 7 not numbers": no trailing fields parse, so the whole line is a
     * path; it does not exist, and the reason names the list and line */
    cr_assert(strstr(g[4].error, "line 6 of 'faces.list'"), "%s", g[4].error);
}

Test(source, broken_inputs_give_reasons_and_iteration_goes_on)
{
    go_to_fixtures();
    const char *in[] = {"broken/empty.jpg",     "broken/truncated.jpg", "broken/badcrc.png",
                        "broken/huge.png",      "broken/huge.jpg",      "broken/notimage.jpg",
                        "broken/truncated.tar", "broken/badmagic.rec",  "broken/missing.jpg",
                        "broken/good.png"};
    got g[32];
    int n = run(in, 10, mf_source_default_params(), g, 32);
    struct {
        const char *id, *reason;
    } want[] = {
        {"broken/empty.jpg", "empty file"},
        {"broken/truncated.jpg", "truncated JPEG"},
        {"broken/badcrc.png", "PNG CRC error"},
        {"broken/huge.png", "image 70000x70000 exceeds the 50 MP limit"},
        {"broken/huge.jpg", "image 60000x60000 exceeds the 50 MP limit"},
        {"broken/notimage.jpg", "not an image (unknown signature)"},
        {"broken/truncated.tar//a.jpg", ""},
        {"broken/truncated.tar//b.jpg", "truncated archive member"},
        {"broken/badmagic.rec//1", ""},
        {"broken/badmagic.rec//2", ""},
        {"broken/badmagic.rec//@", "bad RecordIO magic at offset"},
        {"broken/missing.jpg", "cannot open: No such file or directory"},
        {"broken/good.png", ""},
    };
    cr_assert_eq(n, (int)(sizeof want / sizeof *want));
    for (int i = 0; i < n; i++) {
        cr_assert(!strncmp(g[i].id, want[i].id, strlen(want[i].id)), "%d: %s", i, g[i].id);
        if (want[i].reason[0] && g[i].error[0])
            cr_assert(strstr(g[i].error, want[i].reason), "%s: %s", g[i].id, g[i].error);
        if (!want[i].reason[0])
            cr_assert_neq(g[i].pixels, 0, "%s should decode", g[i].id);
    }
    /* The first six files read fine: their reasons come from the decoder. */
    for (int i = 0; i < 6; i++) {
        if (g[i].error[0])
            continue;
        FILE *f = fopen(want[i].id, "rb");
        static uint8_t buf[1 << 16];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        mf_image im;
        mf_decode_params dp = mf_decode_default_params();
        cr_assert_lt(mf_image_decode(&im, buf, len, &dp), 0, "%s decoded", want[i].id);
        cr_assert_str_eq(mf_last_error(), want[i].reason, "%s", want[i].id);
    }
}

Test(source, shards_partition_the_samples)
{
    go_to_fixtures();
    const char *in[] = {"tree", "faces.tar", "wds-000000.tar", "train.rec", "@faces.list"};
    got all[64], part[64];
    int n = run(in, 5, mf_source_default_params(), all, 64);
    cr_assert_eq(n, 8 * 4 + 5);
    int seen[64] = {0}, total = 0;
    for (int k = 0; k < 3; k++) {
        mf_source_params p = mf_source_default_params();
        p.shard_index = k;
        p.shard_count = 3;
        int m = run(in, 5, p, part, 64);
        total += m;
        for (int j = 0; j < m; j++) {
            int hit = -1;
            for (int i = 0; i < n && hit < 0; i++)
                if (!seen[i] && !strcmp(all[i].id, part[j].id))
                    hit = i; /* ids may repeat */
            cr_assert_geq(hit, 0, "%s not in the unsharded run", part[j].id);
            seen[hit] = 1;
            cr_assert_eq(mf_shard_of(part[j].id, 3), k);
        }
    }
    cr_assert_eq(total, n);
}

static const char *fake_env_vals[8];
static const char *fake_env(const char *name)
{
    static const char *names[] = {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
                                  "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_STEP"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i]))
            return fake_env_vals[i];
    return NULL;
}

Test(source, shard_spec_and_slurm_position)
{
    int k, n;
    cr_assert_eq(mf_shard_parse("2/5", &k, &n), 0);
    cr_assert(k == 2 && n == 5);
    cr_assert_lt(mf_shard_parse("5/5", &k, &n), 0);
    cr_assert_lt(mf_shard_parse("1/0", &k, &n), 0);
    cr_assert_lt(mf_shard_parse("a/3", &k, &n), 0);
    memset(fake_env_vals, 0, sizeof fake_env_vals);
    cr_assert_eq(mf_shard_from_slurm(&k, &n, fake_env), 0);
    /* --array=1-7:2: ids 1,3,5,7, COUNT 4, STEP 2 -> positions 0..3 */
    fake_env_vals[0] = "5";
    fake_env_vals[1] = "1";
    fake_env_vals[2] = "4";
    fake_env_vals[3] = "2";
    cr_assert_eq(mf_shard_from_slurm(&k, &n, fake_env), 1);
    cr_assert(k == 2 && n == 4, "%d/%d", k, n);
    /* dense array without STEP */
    fake_env_vals[0] = "12";
    fake_env_vals[1] = "10";
    fake_env_vals[2] = "3";
    fake_env_vals[3] = NULL;
    cr_assert_eq(mf_shard_from_slurm(&k, &n, fake_env), 1);
    cr_assert(k == 2 && n == 3);
    /* irregular list (--array=1,4,9): refused rather than guessed */
    fake_env_vals[0] = "9";
    fake_env_vals[1] = "1";
    fake_env_vals[2] = "3";
    cr_assert_lt(mf_shard_from_slurm(&k, &n, fake_env), 0);
}

/* Damaged copies of every fixture kind (truncations, flipped bytes): the iterator and
 * the decoder must report and go on, never crash (this is the test to run under ASan). */
static void write_file(const char *path, const uint8_t *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    uint8_t *b = malloc(*n + 1);
    cr_assert_eq(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

Test(source, damaged_copies_never_crash)
{
    go_to_fixtures();
    static const char *files[] = {"faces.tar",      "faces.tar.gz", "faces.zip",
                                  "wds-000000.tar", "train.rec",    "tree/id00/0.jpg",
                                  "broken/good.png"};
    static const char *names[] = {"x.tar",     "x.tar.gz", "x.zip", "w.tar",
                                  "train.rec", "x.jpg",    "x.png"};
    char dir[128], path[256], cmd[300];
    snprintf(dir, sizeof dir, "/tmp/mf_test_source_%d", (int)getpid());
    cr_assert_eq(mkdir(dir, 0700), 0);
    mf_source *s;
    mf_source_params p = mf_source_default_params();
    p.label_from_dir = 1; /* also runs the archive-header pass over the damage */
    cr_assert_eq(mf_source_new(&s, &p), 0);
    uint32_t lcg = 12345;
    /* MF_FUZZ_ROUNDS=N for a longer run by hand (e.g. under the ASan build). */
    const char *env_rounds = getenv("MF_FUZZ_ROUNDS");
    int rounds = env_rounds && atoi(env_rounds) > 16 ? atoi(env_rounds) : 48;
    int n_inputs = 0;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        size_t n;
        uint8_t *orig = read_all(files[f], &n), *b = malloc(n);
        for (int v = 0; v < rounds; v++) {
            memcpy(b, orig, n);
            size_t len = n;
            if (v < 16)
                len = n * (size_t)(v + 1) / 17; /* truncations */
            else
                for (int k = 0; k < 1 + v % 4; k++) { /* 1-4 flipped bytes */
                    lcg = lcg * 1103515245u + 12345u;
                    b[(lcg >> 8) % n] ^= (uint8_t)(1u << (lcg % 8) | 1u);
                }
            char sub[160];
            snprintf(sub, sizeof sub, "%s/%zu_%d", dir, f, v);
            cr_assert_eq(mkdir(sub, 0700), 0);
            snprintf(path, sizeof path, "%s/%s", sub, names[f]);
            write_file(path, b, len);
            if (!strcmp(names[f], "train.rec")) {
                snprintf(cmd, sizeof cmd, "cp train.idx %s/train.idx", sub);
                cr_assert_eq(system(cmd), 0);
            }
            cr_assert_eq(mf_source_add(s, path, MF_INPUT_AUTO), 0);
            n_inputs++;
        }
        free(orig);
        free(b);
    }
    mf_sample x;
    int rc, ok = 0, failed = 0;
    while ((rc = mf_source_next(s, &x)) > 0) {
        cr_assert_not_null(x.id);
        if (x.error) {
            failed++;
            continue;
        }
        cr_assert(x.size == 0 || x.data != NULL);
        if (pixel_hash(&x))
            ok++;
        else
            failed++;
    }
    cr_assert_eq(rc, 0, "%s", mf_last_error());
    cr_assert_gt(ok, 0);
    cr_assert_gt(failed, 0);
    cr_log_info("%d damaged inputs: %d samples decoded, %d failed with a reason", n_inputs, ok,
                failed);
    mf_source_free(s);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(source, reading_off_walks_the_same_ids_then_resumes)
{
    go_to_fixtures();
    const char *in[] = {"tree", "faces.tar", "@faces.list"};
    got all[64];
    int n = run(in, 3, mf_source_default_params(), all, 64);
    mf_source *s;
    cr_assert_eq(mf_source_new(&s, NULL), 0);
    mf_source_add(s, "tree", MF_INPUT_AUTO);
    mf_source_add(s, "faces.tar", MF_INPUT_AUTO);
    mf_source_add(s, "faces.list", MF_INPUT_LIST);
    mf_source_set_reading(s, 0);
    mf_sample x;
    int i = 0;
    for (; i < 5; i++) { /* skip into the middle of the tree */
        cr_assert_eq(mf_source_next(s, &x), 1);
        cr_assert_str_eq(x.id, all[i].id);
        cr_assert_null(x.data);
    }
    mf_source_set_reading(s, 1);
    for (; mf_source_next(s, &x) > 0; i++) {
        cr_assert_str_eq(x.id, all[i].id);
        if (!x.error)
            cr_assert_eq(pixel_hash(&x), all[i].pixels, "%s", x.id);
    }
    cr_assert_eq(i, n);
    mf_source_free(s);
}

Test(source, list_paths_with_spaces_after_a_tab_and_relative_to_the_list)
{
    go_to_fixtures();
    char dir[128], path[256], cmd[512];
    snprintf(dir, sizeof dir, "/tmp/mf_test_list_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "mkdir -p '%s/sub' && cp tree/id01/1.jpg '%s/sub/with space.jpg'",
             dir, dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/my.list", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "sub/with space.jpg\t3\n# comment\n\nsub/with space.jpg 3\n");
    fclose(f);
    mf_source *s;
    cr_assert_eq(mf_source_new(&s, NULL), 0);
    mf_source_add(s, path, MF_INPUT_LIST);
    mf_sample x;
    char want[300];
    snprintf(want, sizeof want, "%s/sub/with space.jpg", dir);
    cr_assert_eq(mf_source_next(s, &x), 1);
    cr_assert_str_eq(x.id, want);
    cr_assert_null(x.error, "%s", x.error);
    cr_assert_eq(x.label, 3);
    cr_assert_eq(mf_source_next(s, &x), 1); /* without a tab: the label still parses */
    cr_assert_str_eq(x.id, want);
    cr_assert_null(x.error, "%s", x.error);
    cr_assert_eq(x.label, 3);
    cr_assert_eq(mf_source_next(s, &x), 0);
    mf_source_free(s);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(source, count_matches_iteration)
{
    go_to_fixtures();
    const char *sets[2][3] = {{"tree", "train.rec", "@faces.list"},
                              {"tree", "faces.zip", "train.rec"}};
    for (int k = 0; k < 2; k++) {
        for (int shard = 0; shard < 2; shard++) {
            mf_source_params p = mf_source_default_params();
            p.shard_index = shard;
            p.shard_count = 2;
            got g[64];
            int n = run(sets[k], 3, p, g, 64);
            mf_source *s;
            cr_assert_eq(mf_source_new(&s, &p), 0);
            for (int i = 0; i < 3; i++)
                mf_source_add(s, sets[k][i] + (sets[k][i][0] == '@'),
                              sets[k][i][0] == '@' ? MF_INPUT_LIST : MF_INPUT_AUTO);
            uint64_t c;
            int exact = mf_source_count(s, &c);
            mf_source_free(s);
            if (k == 0) {
                cr_assert_eq(exact, 1);
                cr_assert_eq(c, (uint64_t)n, "shard %d: counted %llu, iterated %d", shard,
                             (unsigned long long)c, n);
            } else {
                cr_assert_eq(exact, 0); /* the zip is not counted */
                cr_assert_leq(c, (uint64_t)n);
            }
        }
    }
}

Test(source, recordio_without_idx_uses_positions_and_a_bad_idx_is_reported)
{
    go_to_fixtures();
    char dir[128], cmd[400], rec[200];
    snprintf(dir, sizeof dir, "/tmp/mf_test_rec_%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/a' '%s/b' && cp train.rec '%s/a/' && cp train.rec '%s/b/' && "
             "echo garbage > '%s/b/train.idx'",
             dir, dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    got g[16];
    snprintf(rec, sizeof rec, "%s/a/train.rec", dir);
    const char *in[] = {rec};
    cr_assert_eq(run(in, 1, mf_source_default_params(), g, 16), 8);
    for (int i = 0; i < 8; i++) {
        char want[256];
        snprintf(want, sizeof want, "%s//%d", rec, i + 1); /* insightface: position == key */
        cr_assert_str_eq(g[i].id, want);
        cr_assert_eq(g[i].label, i / 2);
    }
    snprintf(rec, sizeof rec, "%s/b/train.rec", dir);
    cr_assert_eq(run(in, 1, mf_source_default_params(), g, 16), 1);
    cr_assert_str_eq(g[0].id, rec);
    cr_assert(strstr(g[0].error, "train.idx' line 1"), "%s", g[0].error);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Two sources in two threads at once (the producer-thread pattern): no shared state,
 * so both see exactly what a single-threaded run sees. */
typedef struct thread_job {
    const char **inputs;
    int n_inputs, n;
    got out[64];
} thread_job;

static void *thread_run(void *arg)
{
    thread_job *j = arg;
    for (int rep = 0; rep < 5; rep++)
        j->n = run(j->inputs, j->n_inputs, mf_source_default_params(), j->out, 64);
    return NULL;
}

Test(source, independent_sources_in_threads)
{
    go_to_fixtures();
    const char *a[] = {"faces.tar.gz", "train.rec", "broken/truncated.jpg"};
    const char *b[] = {"faces.zip", "wds-000000.tar", "broken/badcrc.png", "@faces.list"};
    thread_job ja = {.inputs = a, .n_inputs = 3}, jb = {.inputs = b, .n_inputs = 4};
    got ra[64], rb[64];
    int na = run(a, 3, mf_source_default_params(), ra, 64),
        nb = run(b, 4, mf_source_default_params(), rb, 64);
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, thread_run, &ja), 0);
    cr_assert_eq(pthread_create(&tb, NULL, thread_run, &jb), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_assert(ja.n == na && jb.n == nb);
    for (int i = 0; i < na; i++)
        cr_assert(!strcmp(ja.out[i].id, ra[i].id) && ja.out[i].pixels == ra[i].pixels);
    for (int i = 0; i < nb; i++)
        cr_assert(!strcmp(jb.out[i].id, rb[i].id) && jb.out[i].pixels == rb[i].pixels);
}

Test(source, directory_symlink_loops_are_not_followed)
{
    go_to_fixtures();
    char dir[128], cmd[600];
    snprintf(dir, sizeof dir, "/tmp/mf_test_loop_%d", (int)getpid());
    /* two links back up: without loop detection the walk would be exponential */
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/a/b' && cp tree/id00/0.jpg '%s/a/b/x.jpg' && "
             "ln -s .. '%s/a/b/up1' && ln -s .. '%s/a/b/up2' && ln -s ../a '%s/a/b/again'",
             dir, dir, dir, dir, dir);
    cr_assert_eq(system(cmd), 0);
    got g[8];
    const char *in[] = {dir};
    cr_assert_eq(run(in, 1, mf_source_default_params(), g, 8), 1);
    cr_assert(strstr(g[0].id, "/a/b/x.jpg"), "%s", g[0].id);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
