/* warp.c - 5-point similarity alignment and bilinear warps matching OpenCV's arithmetic.
 *
 * cv2.warpAffine(INTER_LINEAR) inverts the map, steps source coordinates in 1/1024
 * pixel fixed point, quantises them to 1/32 pixel and blends the 4 neighbours with
 * 15-bit integer weights; doing the same here makes our crops match OpenCV's instead of
 * differing by a few levels on sharp edges (a float bilinear warp does). */
#include "mf/image.h"
#include "mf/status.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const float mf_face_template[10] = {
    38.2946f, 51.6963f, 73.5318f, 51.5014f, 56.0252f,
    71.7366f, 41.5493f, 92.3655f, 70.7299f, 92.2041f,
};

/* The template in double: the float copy above is off by up to 4e-6, which moves
 * OpenCV's 1/1024-pixel sampling grid and costs exactness against a float64 reference. */
static const double face_template_d[10] = {
    38.2946, 51.6963, 73.5318, 51.5014, 56.0252, 71.7366, 41.5493, 92.3655, 70.7299, 92.2041,
};

/* Least squares over maps of the form [a -b; b a] + t: for demeaned points the optimum is
 * a = sum(s.d)/sum|s|^2, b = sum(s x d)/sum|s|^2. This is the same minimiser as Umeyama's
 * SVD method restricted to proper rotations (the objective is identical and convex). */
static int estimate(double m[6], const double *src, const double *dst, int n)
{
    double sx = 0, sy = 0, dx = 0, dy = 0;
    for (int i = 0; i < n; i++) {
        sx += src[2 * i];
        sy += src[2 * i + 1];
        dx += dst[2 * i];
        dy += dst[2 * i + 1];
    }
    sx /= n;
    sy /= n;
    dx /= n;
    dy /= n;
    double ss = 0, dot = 0, cross = 0;
    for (int i = 0; i < n; i++) {
        double px = src[2 * i] - sx, py = src[2 * i + 1] - sy;
        double qx = dst[2 * i] - dx, qy = dst[2 * i + 1] - dy;
        ss += px * px + py * py;
        dot += px * qx + py * qy;
        cross += px * qy - py * qx;
    }
    if (!(ss > 1e-12))
        return mf_set_error(MF_ERR_ARG, "landmarks coincide");
    double a = dot / ss, b = cross / ss;
    m[0] = a;
    m[1] = -b;
    m[2] = dx - (a * sx - b * sy);
    m[3] = b;
    m[4] = a;
    m[5] = dy - (b * sx + a * sy);
    return 0;
}

#define MF_MAX_POINTS 64

int mf_similarity_estimate(double m[6], const float *src, const float *dst, int n)
{
    if (n < 2 || n > MF_MAX_POINTS)
        return mf_set_error(MF_ERR_ARG, "need 2..%d points for a similarity, got %d",
                            MF_MAX_POINTS, n);
    double s[2 * MF_MAX_POINTS], d[2 * MF_MAX_POINTS];
    for (int i = 0; i < 2 * n; i++) {
        s[i] = src[i];
        d[i] = dst[i];
    }
    return estimate(m, s, d, n);
}

/* Inverse of a 2x3 affine map, as cv::invertAffineTransform does (0 if singular). */
static void invert_affine(const double m[6], double inv[6])
{
    double d = m[0] * m[4] - m[1] * m[3];
    d = d != 0 ? 1.0 / d : 0.0;
    double a11 = m[4] * d, a22 = m[0] * d, a12 = -m[1] * d, a21 = -m[3] * d;
    inv[0] = a11;
    inv[1] = a12;
    inv[2] = -a11 * m[2] - a12 * m[5];
    inv[3] = a21;
    inv[4] = a22;
    inv[5] = -a21 * m[2] - a22 * m[5];
}

static int sat_int(double v)
{
    v = rint(v);
    return v > 2147483647.0 ? 2147483647 : v < -2147483648.0 ? (-2147483647 - 1) : (int)v;
}

static int clamp_short(int v) { return v < -32768 ? -32768 : v > 32767 ? 32767 : v; }

#define AB_BITS 10
#define INTER_BITS 5
#define TAB 32           /* 1 << INTER_BITS */
#define MF_WARP_MAX 4096 /* widest output: keeps the per-row tables small on the stack */

/* One output pixel from source position (sx, sy) + (fx, fy)/32, zero outside. */
static void blend(uint8_t *out, const mf_image *s, int sx, int sy, int fx, int fy)
{
    /* OpenCV's 2-D table entries: products of (1 - f, f) in 1/32 steps, scaled to 2^15. */
    int w[4] = {(TAB - fx) * (TAB - fy) * 32, fx * (TAB - fy) * 32, (TAB - fx) * fy * 32,
                fx * fy * 32};
    int px[4] = {sx, sx + 1, sx, sx + 1}, py[4] = {sy, sy, sy + 1, sy + 1};
    for (int c = 0; c < 3; c++) {
        int acc = 0;
        for (int k = 0; k < 4; k++)
            if (px[k] >= 0 && px[k] < s->width && py[k] >= 0 && py[k] < s->height)
                acc += w[k] * s->data[((size_t)py[k] * s->width + px[k]) * 3 + c];
        int v = (acc + (1 << 14)) >> 15;
        out[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

int mf_image_warp_affine(uint8_t *dst, int dw, int dh, const mf_image *src, const double m[6])
{
    if (dw <= 0 || dh <= 0 || dw > MF_WARP_MAX || !src->data)
        return mf_set_error(MF_ERR_ARG, "bad warp size %dx%d", dw, dh);
    double im[6];
    invert_affine(m, im);
    const int scale = 1 << AB_BITS, round_delta = scale / TAB / 2;
    int adelta[MF_WARP_MAX], bdelta[MF_WARP_MAX];
    for (int x = 0; x < dw; x++) {
        adelta[x] = sat_int(im[0] * x * scale);
        bdelta[x] = sat_int(im[3] * x * scale);
    }
    for (int y = 0; y < dh; y++) {
        int x0 = sat_int((im[1] * y + im[2]) * scale) + round_delta;
        int y0 = sat_int((im[4] * y + im[5]) * scale) + round_delta;
        for (int x = 0; x < dw; x++) {
            int X = (x0 + adelta[x]) >> (AB_BITS - INTER_BITS);
            int Y = (y0 + bdelta[x]) >> (AB_BITS - INTER_BITS);
            blend(dst + ((size_t)y * dw + x) * 3, src, clamp_short(X >> INTER_BITS),
                  clamp_short(Y >> INTER_BITS), X & (TAB - 1), Y & (TAB - 1));
        }
    }
    return 0;
}

int mf_image_align_matrix(double m[6], const float landmarks[10])
{
    double lm[10];
    for (int i = 0; i < 10; i++) {
        if (!isfinite(landmarks[i]))
            return mf_set_error(MF_ERR_ARG, "landmarks are not finite");
        lm[i] = landmarks[i];
    }
    return estimate(m, lm, face_template_d, 5);
}

int mf_image_align(uint8_t *dst, const mf_image *src, const float landmarks[10])
{
    double m[6];
    int rc = mf_image_align_matrix(m, landmarks);
    if (rc < 0)
        return rc;
    return mf_image_warp_affine(dst, MF_FACE_SIZE, MF_FACE_SIZE, src, m);
}

/* Source index and 11-bit weight of the right/bottom neighbour for output i, as
 * cv2.resize(INTER_LINEAR) computes them: half-pixel centres in float, the left weight
 * rounded and the right one its complement. Columns past the edges are clamped with
 * the weight moved onto the edge column; rows keep their weights and reuse the edge
 * row (OpenCV treats the two directions differently, and the rounding shows it). */
static void resize_coord(int i, double scale, int n, int clamp_weight, int *s0, int *wt)
{
    float f = (float)((i + 0.5) * scale - 0.5);
    int s = (int)floorf(f);
    f -= (float)s;
    if (clamp_weight && s < 0) {
        s = 0;
        f = 0;
    }
    if (clamp_weight && s >= n - 1) {
        s = n - 1;
        f = 0;
    }
    *s0 = s;
    *wt = 2048 - (int)lrintf((1.f - f) * 2048);
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

int mf_image_resize(uint8_t *dst, int dw, int dh, const mf_image *src)
{
    if (dw <= 0 || dh <= 0 || !src->data)
        return mf_set_error(MF_ERR_ARG, "bad resize size %dx%d", dw, dh);
    /* OpenCV takes the scale as the inverse of dst/src; the last bit matters. */
    double scx = 1.0 / ((double)dw / src->width), scy = 1.0 / ((double)dh / src->height);
    for (int y = 0; y < dh; y++) {
        int sy, wy;
        resize_coord(y, scy, src->height, 0, &sy, &wy);
        int sy1 = clampi(sy + 1, 0, src->height - 1);
        sy = clampi(sy, 0, src->height - 1);
        for (int x = 0; x < dw; x++) {
            int sx, wx;
            resize_coord(x, scx, src->width, 1, &sx, &wx);
            int sx1 = sx + 1 < src->width ? sx + 1 : sx;
            for (int c = 0; c < 3; c++) {
                const uint8_t *r0 = src->data + (size_t)sy * src->width * 3;
                const uint8_t *r1 = src->data + (size_t)sy1 * src->width * 3;
                int h0 = r0[sx * 3 + c] * (2048 - wx) + r0[sx1 * 3 + c] * wx;
                int h1 = r1[sx * 3 + c] * (2048 - wx) + r1[sx1 * 3 + c] * wx;
                /* OpenCV's (SIMD) vertical pass on the 22-bit horizontal sums. */
                int v = ((((h0 >> 4) * (2048 - wy)) >> 16) + (((h1 >> 4) * wy) >> 16) + 2) >> 2;
                dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    }
    return 0;
}
