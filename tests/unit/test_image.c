/* test_image.c - decoding and alignment against OpenCV (python3-opencv computes the
 * references at test time: scripts/make_source_fixtures.py --cv2-refs), limits, and
 * short failure reasons. */
#include "mf/image.h"
#include "mf/status.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    uint8_t *b = malloc((size_t)size + 1);
    cr_assert_eq(fread(b, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *n = (size_t)size;
    return b;
}

/* Build the OpenCV references into a temporary folder; skip if OpenCV is missing. */
static char *make_refs(void)
{
    const char *src = getenv("MF_SOURCE_DIR");
    if (!src || access("/usr/bin/python3", X_OK) != 0)
        cr_skip_test("no MF_SOURCE_DIR or /usr/bin/python3");
    if (system("/usr/bin/python3 -c 'import cv2, PIL' 2>/dev/null") != 0)
        cr_skip_test("python3-opencv not installed");
    static char dir[128], cmd[1024];
    snprintf(dir, sizeof dir, "/tmp/mf_test_image_%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/scripts/make_source_fixtures.py --cv2-refs %s", src, dir);
    cr_assert_eq(system(cmd), 0, "reference generation failed");
    return dir;
}

static void drop_refs(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(image, decode_and_align_match_opencv)
{
    char *dir = make_refs();
    char index[256], line[2048];
    snprintf(index, sizeof index, "%s/index.txt", dir);
    FILE *f = fopen(index, "r");
    cr_assert_not_null(f);
    int n_decode = 0, n_align = 0, n_resize = 0, worst_warp = 0;
    double worst_m = 0;
    mf_decode_params dp = mf_decode_default_params();
    while (fgets(line, sizeof line, f)) {
        char kind[16], file[1024], ref[1024];
        int off = 0;
        cr_assert_eq(sscanf(line, "%15s %1023s %1023s%n", kind, file, ref, &off), 3);
        size_t n, rn;
        uint8_t *bytes = slurp(file, &n), *want = slurp(ref, &rn);
        mf_image im;
        cr_assert_eq(mf_image_decode(&im, bytes, n, &dp), 0, "%s: %s", file, mf_last_error());
        if (!strcmp(kind, "decode")) {
            int w, h;
            cr_assert_eq(sscanf(line + off, "%d %d", &w, &h), 2);
            cr_assert(im.width == w && im.height == h, "%s: %dx%d, OpenCV %dx%d", file,
                      im.width, im.height, w, h);
            cr_assert_eq(memcmp(im.data, want, rn), 0, "%s: pixels differ from cv2.imread",
                         file);
            n_decode++;
        } else if (!strcmp(kind, "resize")) {
            uint8_t out[MF_FACE_SIZE * MF_FACE_SIZE * 3];
            cr_assert_eq(rn, sizeof out);
            cr_assert_eq(mf_image_resize(out, MF_FACE_SIZE, MF_FACE_SIZE, &im), 0);
            cr_assert_eq(memcmp(out, want, rn), 0, "%s: resize differs from cv2.resize", file);
            n_resize++;
        } else {
            double m_ref[6], m[6];
            float lm[10];
            char *p = line + off;
            for (int i = 0; i < 6; i++)
                m_ref[i] = strtod(p, &p);
            for (int i = 0; i < 10; i++)
                lm[i] = strtof(p, &p);
            cr_assert_eq(mf_image_align_matrix(m, lm), 0);
            for (int i = 0; i < 6; i++)
                worst_m = fmax(worst_m, fabs(m[i] - m_ref[i]));
            uint8_t out[MF_FACE_SIZE * MF_FACE_SIZE * 3];
            cr_assert_eq(mf_image_align(out, &im, lm), 0);
            for (size_t i = 0; i < sizeof out; i++) {
                int d = abs((int)out[i] - want[i]);
                if (d > worst_warp)
                    worst_warp = d;
            }
            n_align++;
        }
        mf_image_release(&im);
        free(bytes);
        free(want);
    }
    fclose(f);
    drop_refs(dir);
    cr_assert_geq(n_decode, 30);
    cr_assert_geq(n_align, 8);
    cr_assert_geq(n_resize, 7);
    cr_assert_lt(worst_m, 1e-9, "transform differs from numpy Umeyama by %g", worst_m);
    /* Same fixed-point arithmetic as OpenCV: exact, not merely close. */
    cr_assert_eq(worst_warp, 0, "warp differs from cv2.warpAffine by %d levels", worst_warp);
    cr_log_info("decodes %d and resizes %d bit-exact; aligns %d: matrix max diff %.2g, warp "
                "max diff %d",
                n_decode, n_resize, n_align, worst_m, worst_warp);
}

Test(image, pixel_limit_is_configurable_and_checked_before_decoding)
{
    const char *fx = getenv("MF_FIXTURES");
    if (!fx)
        cr_skip_test("MF_FIXTURES not set");
    char path[1024];
    snprintf(path, sizeof path, "%s/source/tree/id00/0.jpg", fx);
    size_t n;
    uint8_t *b = slurp(path, &n);
    mf_decode_params dp = mf_decode_default_params();
    dp.max_pixels = 112 * 111;
    mf_image im;
    cr_assert_eq(mf_image_decode(&im, b, n, &dp), MF_ERR_LIMIT);
    cr_assert_str_eq(mf_last_error(), "image 112x112 exceeds the 0.0 MP limit");
    cr_assert_null(im.data);
    dp.max_pixels = 112 * 112;
    cr_assert_eq(mf_image_decode(&im, b, n, &dp), 0);
    int w, h;
    cr_assert_eq(mf_image_probe(b, n, &w, &h), 0);
    cr_assert(w == 112 && h == 112);
    mf_image_release(&im);
    /* every truncation of a valid JPEG fails cleanly or decodes; none crashes */
    for (size_t cut = 0; cut < n; cut += 97) {
        int rc = mf_image_decode(&im, b, cut, &dp);
        if (rc == 0)
            mf_image_release(&im);
        else
            cr_assert_gt(strlen(mf_last_error()), 0);
    }
    free(b);
}

Test(image, garbage_gives_short_reasons)
{
    mf_image im;
    cr_assert_eq(mf_image_decode(&im, "", 0, NULL), MF_ERR_FORMAT);
    cr_assert_str_eq(mf_last_error(), "empty file");
    cr_assert_eq(mf_image_decode(&im, "GIF89a......", 12, NULL), MF_ERR_FORMAT);
    cr_assert_str_eq(mf_last_error(), "not an image (unknown signature)");
    cr_assert_eq(mf_image_decode(&im, "\xff\xd8\xff", 3, NULL), MF_ERR_FORMAT);
    cr_assert_eq(mf_image_decode(&im, "\x89PNG\r\n\x1a\n\0\0", 10, NULL), MF_ERR_FORMAT);
    cr_assert_str_eq(mf_last_error(), "truncated PNG");
}

Test(image, similarity_recovers_a_known_transform_and_rejects_degenerate_points)
{
    double m[6];
    float src[10], dst[10];
    const double a = 1.3 * cos(0.4), b = 1.3 * sin(0.4);
    for (int i = 0; i < 5; i++) {
        src[2 * i] = mf_face_template[2 * i] * 2 + 10;
        src[2 * i + 1] = mf_face_template[2 * i + 1] * 2 - 7;
        dst[2 * i] = (float)(a * src[2 * i] - b * src[2 * i + 1] + 5);
        dst[2 * i + 1] = (float)(b * src[2 * i] + a * src[2 * i + 1] - 3);
    }
    cr_assert_eq(mf_similarity_estimate(m, src, dst, 5), 0);
    const double want[6] = {a, -b, 5, b, a, -3};
    for (int i = 0; i < 6; i++)
        cr_assert_lt(fabs(m[i] - want[i]), 1e-3, "m[%d] = %g, want %g", i, m[i], want[i]);
    float same[10] = {5, 5, 5, 5, 5, 5, 5, 5, 5, 5};
    cr_assert_eq(mf_similarity_estimate(m, same, dst, 5), MF_ERR_ARG);
}

/* With the pixel limit raised, an image whose pixels cannot be allocated is that
 * image's failure (MF_ERR_LIMIT), never MF_ERR_NOMEM, which the embedding pipeline
 * treats as fatal for the whole run. The address space is capped at 2 GB (Criterion runs
 * each test in its own process); the 60000x60000 JPEG needs 10.8 GB. */
Test(image, an_image_too_big_for_memory_fails_alone)
{
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("AddressSanitizer reserves more address space than the cap");
#endif
    const char *fx = getenv("MF_FIXTURES");
    if (!fx)
        cr_skip_test("MF_FIXTURES not set");
    char path[512];
    static const char *names[] = {"huge.jpg", "huge.png"};
    mf_decode_params dp = mf_decode_default_params();
    dp.max_pixels = 10000ull * 1000 * 1000;
    struct rlimit cap = {(rlim_t)2 << 30, (rlim_t)2 << 30};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/source/broken/%s", fx, names[i]);
        size_t n;
        uint8_t *b = slurp(path, &n);
        cr_assert_eq(setrlimit(RLIMIT_AS, &cap), 0);
        mf_image im;
        int rc = mf_image_decode(&im, b, n, &dp);
        cr_assert_eq(rc, MF_ERR_LIMIT, "%s: %d %s", names[i], rc, mf_last_error());
        cr_assert(strstr(mf_last_error(), "not enough memory"), "%s", mf_last_error());
        free(b);
    }
}

Test(image, sniff_checks_the_signature_only)
{
    cr_assert_eq(mf_image_sniff("\xff\xd8\xff\xe0", 4), MF_IMAGE_JPEG);
    cr_assert_eq(mf_image_sniff("\x89PNG\r\n\x1a\n", 8), MF_IMAGE_PNG);
    cr_assert_eq(mf_image_sniff("\x89PNG\r\n\x1a", 7), MF_IMAGE_UNKNOWN);
    cr_assert_eq(mf_image_sniff("GIF89a", 6), MF_IMAGE_UNKNOWN);
    cr_assert_eq(mf_image_sniff("<html>", 6), MF_IMAGE_UNKNOWN);
    cr_assert_eq(mf_image_sniff(NULL, 0), MF_IMAGE_UNKNOWN);
    cr_assert_str_eq(mf_image_format_ext(MF_IMAGE_PNG), "png");
    cr_assert_null(mf_image_format_ext(MF_IMAGE_UNKNOWN));
}
