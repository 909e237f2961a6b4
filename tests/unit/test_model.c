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

#include "mf/image.h"
#include "mf/model.h"
#include "mf/status.h"
#include "model/iresnet.h"
#include "nn.h"

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

/* cosine >= want_cos and magnitude relative error <= max_rel on every image */
static void check_close(const char *what, const refset *rs, const float *got, double want_cos,
                        double want_rel)
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
        cr_expect(cosv >= want_cos, "%s image %d: cosine %.8f", what, i, cosv);
        cr_expect(rel <= want_rel, "%s image %d: magnitude rel err %.3g", what, i, rel);
    }
    fprintf(stderr, "%s: min cosine %.9f (1-cos %.1e), max magnitude rel err %.2e\n", what,
            min_cos, 1 - min_cos, max_rel);
}

static void fixture(char *buf, size_t len, const char *name)
{
    const char *dir = getenv("MF_FIXTURES");
    snprintf(buf, len, "%s/model/%s", dir ? dir : "tests/fixtures", name);
}

/* The tiny fixture loaded into *m with its reference images and features, and the name
 * `name` in a new temporary folder `dir` (a mkdtemp template) for the test to write. */
static void tiny_and_temp_file(mf_model **m, refset *rs, char *dir, char *file, size_t len,
                               const char *name)
{
    char path[4096];
    fixture(path, sizeof path, "tiny.h5");
    read_refset(path, rs);
    cr_assert(mkdtemp(dir));
    snprintf(file, len, "%s/%s", dir, name);
    cr_assert_eq(mf_model_load(m, path, NULL), 0, "%s", mf_last_error());
}

/* Each of the n magnitudes is the L2 norm of its feature row. */
static void expect_magnitudes(const float *feat, const float *mag, int n, int dim)
{
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < dim; j++)
            ss += (double)feat[(size_t)i * dim + j] * feat[(size_t)i * dim + j];
        cr_expect(fabs(sqrt(ss) - mag[i]) <= 1e-5 * mag[i], "magnitude %d", i);
    }
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
    expect_magnitudes(feat, mag, rs->n, rs->dim);
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
        check_close("tiny engine", &rs, f, 0.99999, 1e-4);
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
        check_close(files[i], &rs, f, 0.99999, 1e-4);
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
    check_close("tiny reference", &rs, f, 0.99999, 1e-4);
    /* the float-input entry point agrees too */
    cr_assert_eq(mf_model_from_checkpoint(&m, ck, "tiny", NULL), 0, "%s", mf_last_error());
    cr_assert_eq(mf_runner_new(&r, m, rs.n, 2), 0);
    cr_assert_eq(mf_runner_forward_f32(r, rs.n, in, f, NULL), 0);
    check_close("tiny engine f32", &rs, f, 0.99999, 1e-4);
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
    char dir[] = "/tmp/mf-test-model-XXXXXX", file[4200];
    refset rs;
    mf_model *m, *n;
    tiny_and_temp_file(&m, &rs, dir, file, sizeof file, "tiny.mfmodel");
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
        check_close(what, &rs, f, 0.99999, 1e-4);
        free(f), mf_model_free(m);
    }
    free_refset(&rs);
}

Test(model, iresnet18, .timeout = 300) { real_arch("iresnet18", ",dp,legacy_ddp"); }
Test(model, iresnet34, .timeout = 300) { real_arch("iresnet34", ",ddp"); }
Test(model, iresnet50, .timeout = 300) { real_arch("iresnet50", ",legacy_dp"); }
Test(model, iresnet100, .timeout = 300) { real_arch("iresnet100", ",dp"); }

/* ---- lower precision: dispatch, calibration, fidelity gates ------------------------ */

/* Aligned sample faces: ../shared/reference/magface-toy (when present) and data/faces,
 * decoded as the pipeline decodes them. */
static uint8_t *sample_faces(int *count)
{
    const char *shared = getenv("MF_SHARED"), *src = getenv("MF_SOURCE_DIR");
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "ls %s/reference/magface-toy/*.jpg %s/data/faces/*/*.jpg 2>/dev/null | sort",
             shared ? shared : "/nonexistent", src ? src : ".");
    FILE *ls = popen(cmd, "r");
    size_t face = 112 * 112 * 3, cap = 256;
    uint8_t *all = malloc(cap * face);
    char path[4096];
    int n = 0;
    mf_decode_params dp = mf_decode_default_params();
    while (ls && fgets(path, sizeof path, ls) && n < (int)cap) {
        path[strcspn(path, "\n")] = 0;
        FILE *f = fopen(path, "rb");
        static uint8_t buf[1 << 20];
        size_t len = f ? fread(buf, 1, sizeof buf, f) : 0;
        mf_image im = {0};
        if (f)
            fclose(f);
        if (len && mf_image_decode(&im, buf, len, &dp) == 0 && im.width == 112 &&
            im.height == 112)
            memcpy(all + (size_t)n++ * face, im.data, face);
        mf_image_release(&im);
    }
    if (ls)
        pclose(ls);
    *count = n;
    return all;
}

/* A variant of each face, as a user's data varies: mirrored or shifted by a few pixels,
 * another exposure and contrast. Deterministic. */
static void vary(uint8_t *dst, const uint8_t *src, int n, int flip, int shift, float gain,
                 float offset)
{
    for (int i = 0; i < n; i++)
        for (int y = 0; y < 112; y++)
            for (int x = 0; x < 112; x++) {
                int sx = flip ? 111 - x : x, sy = y + shift;
                sx = sx + shift < 0 ? 0 : sx + shift > 111 ? 111 : sx + shift;
                sy = sy < 0 ? 0 : sy > 111 ? 111 : sy;
                for (int c = 0; c < 3; c++) {
                    float v = src[(((size_t)i * 112 + sy) * 112 + sx) * 3 + c] * gain + offset;
                    dst[(((size_t)i * 112 + y) * 112 + x) * 3 + c] =
                        (uint8_t)(v < 0     ? 0
                                  : v > 255 ? 255
                                            : v + 0.5f);
                }
            }
}

static float *embed_all(const mf_model *m, mf_precision p, const uint8_t *faces, int n, int dim)
{
    mf_runner_params rp = mf_runner_default_params();
    rp.max_batch = 16, rp.threads = 2, rp.precision = p;
    mf_runner *r;
    cr_assert_eq(mf_runner_create(&r, m, &rp), 0, "%s", mf_last_error());
    float *f = malloc((size_t)n * dim * sizeof(float));
    for (int i = 0; i < n; i += 16)
        cr_assert_eq(mf_runner_forward(r, n - i < 16 ? n - i : 16, 112, 112,
                                       faces + (size_t)i * 112 * 112 * 3, f + (size_t)i * dim,
                                       NULL),
                     0);
    fprintf(stderr, "%s\n", mf_runner_describe(r));
    mf_runner_free(r);
    return f;
}

typedef struct gates {
    double min_cos, mean_cos, max_rel, mean_rel, spearman, cut_agree, knn_agree;
} gates;

static void rank_of(const double *v, int n, double *rank)
{
    for (int i = 0; i < n; i++) {
        int below = 0, same = 0;
        for (int j = 0; j < n; j++)
            below += v[j] < v[i], same += v[j] == v[i];
        rank[i] = below + (same - 1) / 2.0;
    }
}

/* The 10 nearest neighbours (cosine) of row i, excluding i. */
static void nearest10(const float *unit, int n, int dim, int i, int out[10])
{
    double best[10];
    for (int k = 0; k < 10; k++)
        best[k] = -2, out[k] = -1;
    for (int j = 0; j < n; j++) {
        if (j == i)
            continue;
        double s = 0;
        for (int d = 0; d < dim; d++)
            s += (double)unit[(size_t)i * dim + d] * unit[(size_t)j * dim + d];
        for (int k = 0; k < 10; k++)
            if (s > best[k]) {
                for (int l = 9; l > k; l--)
                    best[l] = best[l - 1], out[l] = out[l - 1];
                best[k] = s, out[k] = j;
                break;
            }
    }
}

/* What users decide from the output: per-face cosine and magnitude error against the
 * fp32 features, magnitude rank correlation, the 10% lowest-magnitude cut, 10-NN. */
static gates measure(const float *got, const float *ref, int n, int dim)
{
    gates g = {.min_cos = 1};
    double *mg = malloc(n * 8), *mr = malloc(n * 8), *rg = malloc(n * 8), *rr = malloc(n * 8);
    float *ug = malloc((size_t)n * dim * 4), *ur = malloc((size_t)n * dim * 4);
    for (int i = 0; i < n; i++) {
        double ab = 0, aa = 0, bb = 0;
        for (int d = 0; d < dim; d++) {
            double a = got[(size_t)i * dim + d], b = ref[(size_t)i * dim + d];
            ab += a * b, aa += a * a, bb += b * b;
        }
        mg[i] = sqrt(aa), mr[i] = sqrt(bb);
        double cosv = ab / (mg[i] * mr[i]), rel = fabs(mg[i] - mr[i]) / mr[i];
        g.min_cos = fmin(g.min_cos, cosv), g.mean_cos += cosv / n;
        g.max_rel = fmax(g.max_rel, rel), g.mean_rel += rel / n;
        for (int d = 0; d < dim; d++)
            ug[(size_t)i * dim + d] = (float)(got[(size_t)i * dim + d] / mg[i]),
                                 ur[(size_t)i * dim + d] =
                                     (float)(ref[(size_t)i * dim + d] / mr[i]);
    }
    rank_of(mg, n, rg), rank_of(mr, n, rr);
    double d2 = 0;
    int cut = n / 10, agree = 0;
    for (int i = 0; i < n; i++)
        d2 += (rg[i] - rr[i]) * (rg[i] - rr[i]), agree += (rg[i] >= cut) == (rr[i] >= cut);
    g.spearman = 1 - 6 * d2 / ((double)n * ((double)n * n - 1));
    g.cut_agree = (double)agree / n;
    for (int i = 0; i < n; i++) {
        int a[10], b[10], same = 0;
        nearest10(ug, n, dim, i, a), nearest10(ur, n, dim, i, b);
        for (int k = 0; k < 10; k++)
            for (int l = 0; l < 10; l++)
                same += a[k] == b[l];
        g.knn_agree += same / 10.0 / n;
    }
    free(mg), free(mr), free(rg), free(rr), free(ug), free(ur);
    return g;
}

static void print_gates(const char *what, const gates *g, int n)
{
    fprintf(stderr,
            "%s on %d faces: cosine min %.5f mean %.5f; magnitude rel. error max %.2e mean "
            "%.2e; magnitude Spearman %.5f; 10%% cut agreement %.4f; 10-NN agreement %.4f\n",
            what, n, g->min_cos, g->mean_cos, g->max_rel, g->mean_rel, g->spearman,
            g->cut_agree, g->knn_agree);
}

/* The gates of issue 14 on a CI-sized set: iresnet18 (BatchNorm calibrated on faces),
 * the sample faces and varied copies of them; calibrated on other variants of the same
 * faces, as a user calibrates on a sample of their data. bench/bench_precision.py runs
 * the same gates on >= 1,000 faces and iresnet18/50/100. */
Test(model, int8_and_bf16_fidelity_gates, .timeout = 600)
{
    char dir[4096], path[4400];
    int n0;
    if (generate("iresnet18", ",dp", dir, sizeof dir) < 0)
        cr_skip_test("python3-torch (or MF_BIN_DIR) missing: cannot generate iresnet18");
    uint8_t *base = sample_faces(&n0);
    if (n0 < 50)
        cr_skip_test("only %d sample faces found", n0);
    size_t face = 112 * 112 * 3;
    int n = 2 * n0, dim = 512;
    uint8_t *eval = malloc((size_t)n * face), *calib = malloc((size_t)n0 * face);
    /* evaluation: the faces and brighter, shifted copies; calibration: mirrored copies,
     * half brighter and half darker (a sample of the same kind of data, other images) */
    memcpy(eval, base, (size_t)n0 * face);
    vary(eval + (size_t)n0 * face, base, n0, 0, 2, 1.15f, -12);
    vary(calib, base, n0 / 2, 1, -1, 1.1f, -8);
    vary(calib + (size_t)(n0 / 2) * face, base + (size_t)(n0 / 2) * face, n0 - n0 / 2, 1, 1,
         0.9f, 10);
    snprintf(path, sizeof path, "%s/iresnet18_dp.pth", dir);
    mf_model *m;
    cr_assert_eq(mf_model_load(&m, path, "iresnet18"), 0, "%s", mf_last_error());
    float *ref = embed_all(m, MF_PRECISION_FP32, eval, n, dim);

    mf_runner_params rp = mf_runner_default_params();
    mf_runner *r = NULL;
    rp.precision = MF_PRECISION_INT8;
    cr_expect_eq(mf_runner_create(&r, m, &rp), MF_ERR_UNSUPPORTED);
    cr_expect(strstr(mf_last_error(), "mf-convert --calibrate"), "%s", mf_last_error());
    mf_calibration *cal;
    cr_assert_eq(mf_calibration_new(&cal, m, 16, 2), 0, "%s", mf_last_error());
    for (int i = 0; i < n0; i += 16)
        cr_assert_eq(
            mf_calibration_add(cal, n0 - i < 16 ? n0 - i : 16, calib + (size_t)i * face), 0);
    cr_assert_eq(mf_model_set_calibration(m, cal), 0, "%s", mf_last_error());
    mf_calibration_free(cal);
    cr_expect_eq(mf_model_calibration_faces(m), n0);
    cr_expect_eq(strlen(mf_model_calibration_id(m)), 16);

    float *q = embed_all(m, MF_PRECISION_INT8, eval, n, dim);
    gates g = measure(q, ref, n, dim);
    print_gates("int8", &g, n);
    cr_expect_geq(g.min_cos, 0.995, "int8 cosine %.5f", g.min_cos);
    cr_expect_leq(g.max_rel, 1e-2, "int8 magnitude error %.3g", g.max_rel);
    cr_expect_geq(g.spearman, 0.998, "int8 Spearman %.5f", g.spearman);
    cr_expect_geq(g.cut_agree, 0.99, "int8 cut agreement %.4f", g.cut_agree);
    cr_expect_geq(g.knn_agree, 0.95, "int8 10-NN agreement %.4f", g.knn_agree);
    free(q);

    /* bf16 without the instructions is emulated (slow): half the set */
    float *h = embed_all(m, MF_PRECISION_BF16, eval, n / 2, dim);
    g = measure(h, ref, n / 2, dim);
    print_gates("bf16", &g, n / 2);
    cr_expect_geq(g.min_cos, 0.999, "bf16 cosine %.5f", g.min_cos);
    cr_expect_leq(g.max_rel, 2e-3, "bf16 magnitude error %.3g", g.max_rel);
    cr_expect_geq(g.spearman, 0.998, "bf16 Spearman %.5f", g.spearman);
    cr_expect_geq(g.cut_agree, 0.99, "bf16 cut agreement %.4f", g.cut_agree);
    cr_expect_geq(g.knn_agree, 0.95, "bf16 10-NN agreement %.4f", g.knn_agree);
    free(h);
    mf_model_free(m);
    free(ref), free(eval), free(calib), free(base);
}

/* The calibration travels in the native file; int8 sums are exact integers, so the
 * features are the same bits with every kernel (AVX2, AVX-512, VNNI, portable C). */
Test(model, int8_calibration_round_trip_and_same_bits_everywhere)
{
    char dir[] = "/tmp/mf-test-int8-XXXXXX", file[4200];
    refset rs;
    mf_model *m, *n;
    tiny_and_temp_file(&m, &rs, dir, file, sizeof file, "tiny.mfmodel");
    cr_expect_eq(mf_model_calibration_faces(m), 0);
    cr_expect_str_eq(mf_model_calibration_id(m), "");
    mf_calibration *cal;
    cr_assert_eq(mf_calibration_new(&cal, m, rs.n, 1), 0);
    cr_assert_eq(mf_calibration_add(cal, rs.n, rs.images), 0);
    cr_assert_eq(mf_model_set_calibration(m, cal), 0);
    mf_calibration_free(cal);
    cr_assert_eq(mf_model_save(m, file, 1), 0, "%s", mf_last_error());
    cr_assert_eq(mf_model_load(&n, file, NULL), 0, "%s", mf_last_error());
    cr_expect_eq(mf_model_calibration_faces(n), rs.n);
    cr_expect_str_eq(mf_model_calibration_id(n), mf_model_calibration_id(m));
    float *a = embed_all(m, MF_PRECISION_INT8, rs.images, rs.n, rs.dim);
    static const char *levels[] = {"generic", "avx2", "native"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(mf_isa_set_cap(levels[i]), 0);
        float *b = embed_all(n, MF_PRECISION_INT8, rs.images, rs.n, rs.dim);
        cr_expect_arr_eq(a, b, (size_t)rs.n * rs.dim * sizeof(float), "int8 differs at %s",
                         levels[i]);
        free(b);
    }
    mf_isa_set_cap(NULL);
    check_close("tiny int8 vs pytorch (loose)", &rs, a, 0.99, 2e-2);
    unlink(file), rmdir(dir);
    mf_model_free(m), mf_model_free(n), free(a);
    free_refset(&rs);
}

/* int8 runs a face again in fp32 when what the network reads of it leaves the calibrated
 * ranges far (values beyond them are clamped): calibrated on low-contrast grey copies,
 * the real faces all leave the ranges and come out with fp32's bits, through both entry
 * points; the grey copies stay int8. */
/* The tiny model calibrated on low-contrast grey copies of the reference faces (which
 * the real faces then leave far): the copies, malloc'ed. */
static uint8_t *calibrate_on_grey_copies(mf_model *m, const refset *rs)
{
    const size_t face = 112 * 112 * 3;
    uint8_t *grey = malloc(rs->n * face);
    for (size_t p = 0; p < rs->n * face; p++)
        grey[p] = (uint8_t)(128 + (rs->images[p] - 128) / 16);
    mf_calibration *cal;
    cr_assert_eq(mf_calibration_new(&cal, m, rs->n, 1), 0);
    cr_assert_eq(mf_calibration_add(cal, rs->n, grey), 0);
    cr_assert_eq(mf_model_set_calibration(m, cal), 0);
    mf_calibration_free(cal);
    return grey;
}

/* The tiny model calibrated on grey copies, an int8 runner with reruns `mode`, an fp32
 * runner, and the fp32 features of the real faces (`want`). */
typedef struct rerun_case {
    char dir[32], file[4200];
    refset rs;
    mf_model *m;
    uint8_t *grey;
    mf_runner *r, *ref;
    float *want, *got, *mag;
    size_t feats;
} rerun_case;

static void rerun_case_open(rerun_case *c, int mode)
{
    snprintf(c->dir, sizeof c->dir, "/tmp/mf-test-rerun-XXXXXX");
    tiny_and_temp_file(&c->m, &c->rs, c->dir, c->file, sizeof c->file, "unused");
    c->feats = (size_t)c->rs.n * c->rs.dim;
    c->grey = calibrate_on_grey_copies(c->m, &c->rs);
    mf_runner_params rp = mf_runner_default_params();
    rp.max_batch = c->rs.n, rp.threads = 2, rp.precision = MF_PRECISION_INT8;
    rp.int8_reruns = mode;
    cr_assert_eq(mf_runner_create(&c->r, c->m, &rp), 0, "%s", mf_last_error());
    cr_assert_eq(mf_runner_new(&c->ref, c->m, c->rs.n, 2), 0);
    c->want = malloc(c->feats * sizeof(float)), c->got = malloc(c->feats * sizeof(float));
    c->mag = malloc(c->rs.n * sizeof(float));
    cr_assert_eq(mf_runner_forward(c->ref, c->rs.n, 112, 112, c->rs.images, c->want, NULL), 0);
}

static void rerun_case_close(rerun_case *c)
{
    mf_runner_free(c->r), mf_runner_free(c->ref);
    rmdir(c->dir);
    mf_model_free(c->m), free(c->grey), free(c->want), free(c->got), free(c->mag);
    free_refset(&c->rs);
}

Test(model, int8_reruns_faces_outside_the_ranges_in_fp32)
{
    rerun_case c;
    rerun_case_open(&c, MF_RERUNS_INLINE);
    const size_t face = 112 * 112 * 3, bytes = c.feats * sizeof(float);
    const int n = c.rs.n;
    cr_assert_eq(mf_runner_forward(c.r, n, 112, 112, c.rs.images, c.got, c.mag), 0);
    cr_expect_eq(mf_runner_fp32_reruns(c.r), n);
    cr_expect_arr_eq(c.got, c.want, bytes, "the real faces are not fp32's");
    expect_magnitudes(c.got, c.mag, n, c.rs.dim);

    float *in = malloc((size_t)n * face * sizeof(float)); /* the same faces as NCHW floats */
    for (size_t i = 0; i < (size_t)n; i++)
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 112 * 112; p++)
                in[(i * 3 + ch) * 112 * 112 + p] = c.rs.images[i * face + p * 3 + ch] / 255.0f;
    cr_assert_eq(mf_runner_forward_f32(c.r, n, in, c.got, NULL), 0);
    cr_expect_eq(mf_runner_fp32_reruns(c.r), 2 * n);
    cr_expect_arr_eq(c.got, c.want, bytes, "float input: not fp32's");

    cr_assert_eq(mf_runner_forward(c.ref, n, 112, 112, c.grey, c.want, NULL), 0);
    cr_assert_eq(mf_runner_forward(c.r, n, 112, 112, c.grey, c.got, NULL), 0);
    cr_expect_eq(mf_runner_fp32_reruns(c.r), 2 * n, "a grey copy ran again");
    cr_expect(memcmp(c.got, c.want, bytes) != 0, "the grey copies did not run int8");
    free(in);
    rerun_case_close(&c);
}

/* Deferred reruns: forward leaves the faces off the ranges in int8 and names them; the
 * caller runs them together, with fp32's bits. */
Test(model, int8_deferred_reruns_are_named_and_run_by_the_caller)
{
    rerun_case c;
    rerun_case_open(&c, MF_RERUNS_DEFERRED);
    const size_t bytes = c.feats * sizeof(float);
    const int n = c.rs.n;
    cr_assert_eq(mf_runner_forward(c.r, n, 112, 112, c.rs.images, c.got, NULL), 0);
    cr_expect_eq(mf_runner_fp32_reruns(c.r), 0, "forward ran faces again itself");
    cr_expect(memcmp(c.got, c.want, bytes) != 0, "the faces did not run int8");
    for (int i = 0; i < n; i++)
        cr_expect(mf_runner_rerun_wanted(c.r, i), "face %d left the ranges: not named", i);
    cr_assert_eq(mf_runner_rerun(c.r, n, c.rs.images, c.got, c.mag), 0, "%s", mf_last_error());
    cr_expect_eq(mf_runner_fp32_reruns(c.r), n);
    cr_expect_arr_eq(c.got, c.want, bytes, "the faces run again are not fp32's");
    expect_magnitudes(c.got, c.mag, n, c.rs.dim);

    cr_assert_eq(mf_runner_forward(c.r, n, 112, 112, c.grey, c.got, NULL), 0);
    for (int i = 0; i < n; i++)
        cr_expect(!mf_runner_rerun_wanted(c.r, i), "grey copy %d named", i);
    rerun_case_close(&c);
}

/* Files written by builds with 4-row AVX2 panels load everywhere (repacked). */
Test(model, old_four_row_native_file_loads)
{
    char dir[] = "/tmp/mf-test-mr4-XXXXXX", file[4200];
    refset rs;
    mf_model *m, *n;
    tiny_and_temp_file(&m, &rs, dir, file, sizeof file, "old.mfmodel");
    cr_assert_eq(mf_iresnet_save(m, file, 4, 1), 0, "%s", mf_last_error());
    cr_assert_eq(mf_model_load(&n, file, NULL), 0, "%s", mf_last_error());
    float *a = run_engine(m, &rs, 2), *b = run_engine(n, &rs, 2);
    cr_expect_arr_eq(a, b, (size_t)rs.n * rs.dim * sizeof(float), "repacked != source");
    unlink(file), rmdir(dir);
    mf_model_free(m), mf_model_free(n), free(a), free(b);
    free_refset(&rs);
}
