/* test_model.c - the iResNet engine against our PyTorch reference
 * (scripts/magface_reference.py): the committed reduced-width fixture, and the real
 * iresnet18/34/50/100 shapes generated at test time (skipped without python3-torch). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mf/model.h"
#include "mf/status.h"
#include "model/iresnet.h"

typedef struct refset {
    int n, dim;
    uint8_t *images; /* n x 112x112x3 BGR */
    float *features; /* n x dim, PyTorch float32 */
} refset;

static void read_refset(const char *path, refset *rs)
{
    mf_checkpoint *ck;
    cr_assert_eq(mf_iresnet_load_group(&ck, path, "reference"), 0, "%s", mf_last_error());
    const mf_tensor *im = mf_checkpoint_find(ck, "images"),
                    *fe = mf_checkpoint_find(ck, "features");
    cr_assert(im && fe && fe->ndim == 2 && im->numel == (size_t)fe->shape[0] * 112 * 112 * 3);
    rs->n = (int)fe->shape[0], rs->dim = (int)fe->shape[1];
    rs->features = malloc(fe->numel * sizeof(float));
    memcpy(rs->features, fe->data, fe->numel * sizeof(float));
    rs->images = malloc(im->numel);
    for (size_t i = 0; i < im->numel; i++)
        rs->images[i] = (uint8_t)im->data[i];
    mf_checkpoint_free(ck);
}

static void free_refset(refset *rs) { free(rs->images), free(rs->features); }

/* cosine >= 0.99999 and magnitude relative error <= 1e-4 on every image */
static void check_close(const char *what, const refset *rs, const float *got)
{
    double min_cos = 1, max_rel = 0;
    for (int i = 0; i < rs->n; i++) {
        const float *a = got + (size_t)i * rs->dim, *b = rs->features + (size_t)i * rs->dim;
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < rs->dim; j++)
            ab += (double)a[j] * b[j], aa += (double)a[j] * a[j], bb += (double)b[j] * b[j];
        double cosv = ab / sqrt(aa * bb), rel = fabs(sqrt(aa) - sqrt(bb)) / sqrt(bb);
        min_cos = cosv < min_cos ? cosv : min_cos;
        max_rel = rel > max_rel ? rel : max_rel;
        cr_expect(cosv >= 0.99999, "%s image %d: cosine %.8f", what, i, cosv);
        cr_expect(rel <= 1e-4, "%s image %d: magnitude rel err %.3g", what, i, rel);
    }
    fprintf(stderr, "%s: min cosine %.9f (1-cos %.1e), max magnitude rel err %.2e\n", what,
            min_cos, 1 - min_cos, max_rel);
}

static void fixture(char *buf, size_t len, const char *name)
{
    const char *dir = getenv("MF_FIXTURES");
    snprintf(buf, len, "%s/model/%s", dir ? dir : "tests/fixtures", name);
}

/* the engine's features for every image of rs in one batch; checks the magnitudes */
static float *run_engine(const mf_model *m, const refset *rs, int threads)
{
    mf_runner *r;
    float *feat = malloc((size_t)rs->n * rs->dim * sizeof(float));
    float *mag = malloc(rs->n * sizeof(float));
    cr_assert_eq(mf_runner_new(&r, m, rs->n, threads), 0, "%s", mf_last_error());
    cr_assert_eq(mf_runner_forward(r, rs->n, 112, 112, rs->images, feat, mag), 0, "%s",
                 mf_last_error());
    for (int i = 0; i < rs->n; i++) {
        double ss = 0;
        for (int j = 0; j < rs->dim; j++)
            ss += (double)feat[i * rs->dim + j] * feat[i * rs->dim + j];
        cr_expect(fabs(sqrt(ss) - mag[i]) <= 1e-5 * mag[i], "magnitude %d", i);
    }
    mf_runner_free(r);
    free(mag);
    return feat;
}

Test(model, tiny_fixture_matches_pytorch)
{
    char path[4096];
    refset rs;
    mf_model *m;
    fixture(path, sizeof path, "tiny.h5");
    read_refset(path, &rs);
    cr_assert_eq(mf_model_load(&m, path, NULL), 0, "%s", mf_last_error());
    cr_expect_str_eq(mf_model_arch(m), "iresnet18-w8-8-8-16-16-d32");
    cr_expect_eq(mf_model_dim(m), 32);
    cr_expect_eq(mf_model_tensors(m), 187);
    cr_expect_eq(strlen(mf_model_sha256(m)), 64);
    for (int threads = 1; threads <= 2; threads++) {
        float *f = run_engine(m, &rs, threads);
        check_close("tiny engine", &rs, f);
        free(f);
    }
    mf_model_free(m);
    free_refset(&rs);
}

/* the official layouts, read by the checkpoint reader: same features */
Test(model, tiny_pth_layouts_match_pytorch)
{
    static const char *files[] = {"tiny_dp.pth", "tiny_legacy_ddp.pth", "tiny_bare.pth"};
    char path[4096];
    refset rs;
    fixture(path, sizeof path, "tiny.h5");
    read_refset(path, &rs);
    for (int i = 0; i < 3; i++) {
        mf_model *m;
        fixture(path, sizeof path, files[i]);
        cr_assert_eq(mf_model_load(&m, path, NULL), 0, "%s", mf_last_error());
        cr_expect_eq(mf_model_tensors(m), 187, "%s", files[i]);
        float *f = run_engine(m, &rs, 2);
        check_close(files[i], &rs, f);
        free(f), mf_model_free(m);
    }
    free_refset(&rs);
}

Test(model, reference_path_matches_pytorch)
{
    char path[4096];
    refset rs;
    mf_checkpoint *ck;
    mf_model *m;
    mf_runner *r;
    fixture(path, sizeof path, "tiny.h5");
    read_refset(path, &rs);
    cr_assert_eq(mf_iresnet_load_dump(&ck, path), 0, "%s", mf_last_error());
    float *in = malloc((size_t)rs.n * 3 * 112 * 112 * sizeof(float));
    float *f = malloc((size_t)rs.n * rs.dim * sizeof(float));
    for (int i = 0; i < rs.n; i++)
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 112 * 112; p++)
                in[((size_t)i * 3 + ch) * 112 * 112 + p] =
                    rs.images[((size_t)i * 112 * 112 + p) * 3 + ch] / 255.0f;
    cr_assert_eq(mf_iresnet_reference(ck, rs.n, in, f), 0, "%s", mf_last_error());
    check_close("tiny reference", &rs, f);
    /* the float-input entry point agrees too */
    cr_assert_eq(mf_model_from_checkpoint(&m, ck, "tiny", NULL), 0, "%s", mf_last_error());
    cr_assert_eq(mf_runner_new(&r, m, rs.n, 2), 0);
    cr_assert_eq(mf_runner_forward_f32(r, rs.n, in, f, NULL), 0);
    check_close("tiny engine f32", &rs, f);
    mf_runner_free(r), mf_model_free(m);
    mf_checkpoint_free(ck);
    free(in), free(f);
    free_refset(&rs);
}

Test(model, batch_split_gives_same_features)
{
    char path[4096];
    refset rs;
    mf_model *m;
    mf_runner *r;
    float one[64];
    fixture(path, sizeof path, "tiny.h5");
    read_refset(path, &rs);
    cr_assert_eq(mf_model_load(&m, path, NULL), 0, "%s", mf_last_error());
    float *all = run_engine(m, &rs, 2);
    cr_assert_eq(mf_runner_new(&r, m, 1, 1), 0);
    for (int i = 0; i < rs.n; i++) {
        cr_assert_eq(
            mf_runner_forward(r, 1, 112, 112, rs.images + (size_t)i * 112 * 112 * 3, one, NULL),
            0);
        for (int j = 0; j < rs.dim; j++)
            cr_expect(fabsf(one[j] - all[i * rs.dim + j]) <= 1e-5f * (1 + fabsf(one[j])));
    }
    cr_expect_lt(mf_runner_forward(r, 2, 112, 112, rs.images, one, NULL), 0, "batch > max");
    mf_runner_free(r), mf_model_free(m), free(all);
    free_refset(&rs);
}

Test(model, native_file_round_trip)
{
    char path[4096], dir[] = "/tmp/mf-test-model-XXXXXX", file[4200];
    refset rs;
    mf_model *m, *n;
    fixture(path, sizeof path, "tiny.h5");
    read_refset(path, &rs);
    cr_assert(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/tiny.mfmodel", dir);
    cr_assert_eq(mf_model_load(&m, path, NULL), 0, "%s", mf_last_error());
    cr_assert_eq(mf_model_save(m, file, 1), 0, "%s", mf_last_error());
    cr_assert_eq(mf_model_load(&n, file, NULL), 0, "%s", mf_last_error());
    cr_expect_str_eq(mf_model_arch(n), mf_model_arch(m));
    cr_expect_str_eq(mf_model_sha256(n), mf_model_sha256(m));
    cr_expect_eq(mf_model_params(n), mf_model_params(m));
    cr_expect_eq(mf_model_tensors(n), mf_model_tensors(m));
    float *a = run_engine(m, &rs, 2), *b = run_engine(n, &rs, 2);
    cr_expect_arr_eq(a, b, (size_t)rs.n * rs.dim * sizeof(float), "native != source");
    mf_model *bad = NULL;
    cr_expect_lt(mf_model_load(&bad, file, "iresnet50"), 0);
    cr_expect_null(bad);
    unlink(file), rmdir(dir);
    mf_model_free(m), mf_model_free(n), free(a), free(b);
    free_refset(&rs);
}

Test(model, bad_inputs_fail_with_one_line_errors)
{
    char path[4096];
    mf_checkpoint *ck;
    mf_model *m;
    mf_runner *r;
    static uint8_t img[100 * 100 * 3];
    float f[64];
    fixture(path, sizeof path, "tiny.h5");
    cr_assert_eq(mf_model_load(&m, path, NULL), 0, "%s", mf_last_error());
    cr_assert_eq(mf_runner_new(&r, m, 1, 1), 0);
    cr_expect_eq(mf_runner_forward(r, 1, 100, 100, img, f, NULL), MF_ERR_ARG);
    cr_expect(strstr(mf_last_error(), "100x100"), "%s", mf_last_error());
    mf_runner_free(r), mf_model_free(m);

    cr_expect_eq(mf_model_load(&m, path, "iresnet100"), MF_ERR_MISMATCH);
    cr_expect(strstr(mf_last_error(),
                     "checkpoint has 187 backbone tensors "
                     "(iresnet18-w8-8-8-16-16-d32), expected 925 (iresnet100)"),
              "%s", mf_last_error());
    cr_expect_lt(mf_model_load(&m, path, "resnet9"), 0);

    cr_assert_eq(mf_iresnet_load_dump(&ck, path), 0);
    mf_tensor *t = (mf_tensor *)mf_checkpoint_find(ck, "layer2.1.conv1.weight");
    cr_assert(t);
    t->shape[1] = 4; /* [8,8,3,3] -> [8,4,3,3] */
    cr_expect_eq(mf_model_from_checkpoint(&m, ck, "x.pth", NULL), MF_ERR_SCHEMA);
    cr_expect_str_eq(mf_last_error(), "x.pth: tensor 'layer2.1.conv1.weight' has shape "
                                      "[8,4,3,3], expected [8,8,3,3]");
    t->shape[1] = 8;
    t = (mf_tensor *)mf_checkpoint_find(ck, "layer2.1.conv2.weight");
    free(t->name), t->name = strdup("renamed");
    cr_expect_eq(mf_model_from_checkpoint(&m, ck, "x.pth", NULL), MF_ERR_SCHEMA);
    cr_expect(strstr(mf_last_error(), "missing tensor 'layer2.1.conv2.weight'"), "%s",
              mf_last_error());
    mf_checkpoint_free(ck);
    cr_expect_lt(mf_model_load(&m, "/nonexistent/x.pth", NULL), 0);
    cr_expect(!strchr(mf_last_error(), '\n'));
}

/* ---- real shapes, generated at test time ------------------------------------------ */

/* <build>/model-ref/<arch>.h5 (images, PyTorch features) and <arch>_<layout>.pth for
 * each layout */
static int generate(const char *arch, const char *layouts, char *dir, size_t len)
{
    const char *bin = getenv("MF_BIN_DIR"), *src = getenv("MF_SOURCE_DIR");
    char cmd[12000], last[4200];
    struct stat st;
    if (!bin || !src || system("/usr/bin/python3 -c 'import torch, h5py, cv2' 2>/dev/null"))
        return -1;
    snprintf(dir, len, "%s/../model-ref", bin);
    snprintf(last, sizeof last, "%s/%s_%s.pth", dir, arch, strrchr(layouts, ',') + 1);
    if (stat(last, &st) == 0)
        return 0; /* generated by an earlier run (same seed, same content) */
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/scripts/magface_reference.py gen --arch %s "
             "--images 3 --no-tensors --layouts %s --out %s >/dev/null",
             src, arch, layouts + 1, dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* `layouts` is ",dp,legacy_ddp": the checkpoints in the official layouts are loaded
 * through the PyTorch reader, each must give PyTorch's features. */
static void real_arch(const char *arch, const char *layouts)
{
    char dir[4096], path[4400], what[200];
    refset rs;
    if (generate(arch, layouts, dir, sizeof dir) < 0)
        cr_skip_test("python3-torch (or MF_BIN_DIR) missing: cannot generate %s", arch);
    snprintf(path, sizeof path, "%s/%s.h5", dir, arch);
    read_refset(path, &rs);
    for (const char *l = layouts; l; l = strchr(l + 1, ',')) {
        mf_model *m;
        int n = (int)strcspn(l + 1, ",");
        snprintf(path, sizeof path, "%s/%s_%.*s.pth", dir, arch, n, l + 1);
        snprintf(what, sizeof what, "%s (%.*s)", arch, n, l + 1);
        cr_assert_eq(mf_model_load(&m, path, arch), 0, "%s", mf_last_error());
        cr_expect_str_eq(mf_model_arch(m), arch);
        float *f = run_engine(m, &rs, 2);
        check_close(what, &rs, f);
        free(f), mf_model_free(m);
    }
    free_refset(&rs);
}

Test(model, iresnet18, .timeout = 300) { real_arch("iresnet18", ",dp,legacy_ddp"); }
Test(model, iresnet34, .timeout = 300) { real_arch("iresnet34", ",ddp"); }
Test(model, iresnet50, .timeout = 300) { real_arch("iresnet50", ",legacy_dp"); }
Test(model, iresnet100, .timeout = 300) { real_arch("iresnet100", ",dp"); }
