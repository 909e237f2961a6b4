/* conv.c - convolutions over a CNHW batch: im2col + packed GEMM, and Winograd
 * F(4x4,3x3) for 3x3 stride 1. Work is split into tasks of a few nr-column panels; a
 * task packs its columns into per-thread scratch, runs the micro-kernel over every
 * output-channel panel and writes finished outputs with the epilogue, so the working
 * set of a task stays in L2 and no large intermediate buffer exists.
 *
 * Lower precision changes only the packing and the kernel (mf_conv_op): columns are
 * built in float as always, then converted to pair words (int16 or bfloat16) for the
 * kernel, which writes float results; transforms and epilogues stay float32.
 *
 * The int8 path quantises what a layer reads: x*a+b (a and b folded with 1/step of the
 * channel) is rounded to one of 255 integers (asymmetric range, zero exact: at most
 * 254 in magnitude) before anything else. The Winograd input transform of such
 * integers is exact in float (|V| <= 100 * 254 < 2^24) and fits int16, so the 36
 * products run on int16 with exact int32 sums against int16 weights (transformed in
 * double, the channel steps folded in, one step per output row and tile element); the
 * only approximations are the activations' 8 bits and the weights' 9-15 bits, the
 * latter negligible in the network's output (measured: docs/MODEL.md). */
#include "nn.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* Per-thread working set of one Winograd task: transformed inputs (36 x C x L) and
 * products (36 x K x L); L = panels*nr columns, chosen so both fit in about 1 MB. */
static int wino_panels(int c, int kp, int nr)
{
    size_t per_panel = (size_t)MF_WINO_E * (size_t)(c + kp) * nr * sizeof(float);
    size_t p = ((size_t)1 << 20) / per_panel;
    return p < 1 ? 1 : p > 4 ? 4 : (int)p;
}

static int is_pairs(const mf_gemm *g) { return g->arith != MF_ARITH_F32; }

/* bytes per thread: float columns, their pair words (low precision), [products] */
static size_t im2col_bytes(int depth, const mf_gemm *g)
{
    size_t f = (size_t)depth * g->nr * sizeof(float);
    return mf_round_up(f + (is_pairs(g) ? ((size_t)depth + 1) / 2 * g->nr * 4 : 0), 64);
}

static size_t wino_bytes(int c, int kp, const mf_gemm *g)
{
    size_t l = (size_t)wino_panels(c, kp, g->nr) * g->nr;
    size_t v = (size_t)MF_WINO_E * c * l * 4, m = (size_t)MF_WINO_E * kp * l * 4;
    size_t vp = is_pairs(g) ? (size_t)MF_WINO_E * ((c + 1) / 2) * l * 4 : 0;
    return mf_round_up(v + vp + m, 64);
}

size_t mf_conv_scratch_size(const mf_conv_shape *s, int winograd, const mf_gemm *g, int threads)
{
    int kp = (int)mf_round_up((size_t)s->cout, MF_MR);
    return (size_t)threads * (winograd ? wino_bytes(s->cin, kp, g)
                                       : im2col_bytes(s->cin * s->ksize * s->ksize, g));
}

/* Bound of |B^T d B| per Winograd element for |d| <= 1: products of row sums of |B^T|
 * (see the transforms below); the int16 steps of the weights depend on it. */
static float wino_gain(int e)
{
    static const float rows[6] = {10, 10, 10, 6, 6, 10};
    return rows[e / 6] * rows[e % 6];
}

size_t mf_conv_lowp_bytes(const mf_conv_shape *s, int winograd)
{
    int depth = s->cin * (winograd ? 1 : s->ksize * s->ksize);
    size_t mats = winograd ? MF_WINO_E : 1, kp = mf_round_up((size_t)s->cout, MF_MR);
    return mf_round_up(mats * mf_pack_pairs_size(s->cout, depth) * 4, 64) +
           mf_round_up(mats * kp * 4, 64) + 5 * mf_round_up((size_t)s->cin * 4, 64);
}

void mf_conv_lowp_prepare(mf_conv_op *op, void *mem, const mf_gemm *g, const float *wf,
                          const mf_conv_shape *s, int winograd, const float *in_a,
                          const float *in_b, const float *lo, const float *hi, int levels)
{
    int i16 = g->arith == MF_ARITH_I16, taps = winograd ? 1 : s->ksize * s->ksize;
    int depth = s->cin * taps, mats = winograd ? MF_WINO_E : 1;
    size_t kp = mf_round_up((size_t)s->cout, MF_MR), one = mf_pack_pairs_size(s->cout, depth);
    size_t fone = mf_pack_a_size(s->cout, depth), chan = mf_round_up((size_t)s->cin * 4, 64);
    char *p = mem;
    uint32_t *w = (uint32_t *)p;
    p += mf_round_up(mats * one * 4, 64);
    float *wstep = (float *)p;
    p += mf_round_up(mats * kp * 4, 64);
    float *a = (float *)p, *b = (float *)(p + chan), *step = (float *)(p + 2 * chan);
    float *qlo = (float *)(p + 3 * chan), *qhi = (float *)(p + 4 * chan), qmax = 0;
    /* `levels` integers over [lo, hi] with zero on the grid: step (hi - lo)/(levels - 1),
     * integers from round(lo/step) up */
    for (int c = 0; i16 && c < s->cin; c++) {
        float span = hi[c] - lo[c];
        step[c] = span > 0 && isfinite(span) ? span / (levels - 1) : 1.0f;
        qlo[c] = rintf(lo[c] / step[c]);
        qhi[c] = qlo[c] + (levels - 1);
        qmax = fmaxf(qmax, fmaxf(-qlo[c], qhi[c]));
    }
    for (int e = 0; e < mats; e++)
        mf_pack_pairs(w + e * one, wstep + e * kp, wf + e * fone, s->cout, depth,
                      i16 ? step : NULL, taps, g->arith, winograd ? wino_gain(e) * qmax : qmax);
    for (int c = 0; c < s->cin; c++) {
        float st = i16 ? step[c] : 1.0f;
        a[c] = (in_a ? in_a[c] : 1.0f) / st;
        b[c] = (in_b ? in_b[c] : 0.0f) / st;
    }
    *op = (mf_conv_op){.g = g,
                       .winograd = winograd,
                       .w = w,
                       .wstep = i16 ? wstep : NULL,
                       .in_a = a,
                       .in_b = b,
                       .qlo = i16 ? qlo : NULL,
                       .qhi = i16 ? qhi : NULL};
}

mf_conv_op mf_conv_op_f32(const mf_gemm *g, const float *w, int winograd, const float *in_a,
                          const float *in_b)
{
    return (mf_conv_op){.g = g, .winograd = winograd, .w = w, .in_a = in_a, .in_b = in_b};
}

/* The A panels of rows k0.. (and of Winograd element e) in the op's weights. */
static const void *weights_at(const mf_conv_op *op, size_t one, size_t k0, int depth)
{
    if (is_pairs(op->g))
        return (const uint32_t *)op->w + one + k0 * (((size_t)depth + 1) / 2);
    return (const float *)op->w + one + k0 * depth;
}

static inline float finish(float y, int k, const mf_epilogue *ep, size_t idx)
{
    if (ep->bias)
        y += ep->bias[k];
    if (ep->prelu && y < 0.0f)
        y *= ep->prelu[k];
    if (ep->residual)
        y += ep->residual[idx];
    return y;
}

/* ---- im2col ---------------------------------------------------------------------- */

/* Round n values (a multiple of 8) to integers within [lo, hi]. */
static void quantise_row(float *x, int n, float lo, float hi)
{
    __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    for (int i = 0; i < n; i += 8) {
        __m256 v = _mm256_round_ps(_mm256_loadu_ps(x + i),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm256_storeu_ps(x + i, _mm256_min_ps(_mm256_max_ps(v, vlo), vhi));
    }
}

/* B panel for output columns t0 .. t0+nt: row (c, ky, kx), lane l = the input pixel
 * under that kernel tap for column t0+l (as x*a+b), zero in the padding and the spare
 * lanes. The taps' offsets and validity are the same for every channel, so they are
 * computed once and the channel loop is a plain masked gather. */
static void pack_columns(float *restrict b, const float *restrict in, const mf_conv_shape *s,
                         size_t t0, int nt, int nr, const mf_conv_op *op)
{
    int oh = mf_conv_out(s->h, s->ksize, s->stride),
        ow = mf_conv_out(s->w, s->ksize, s->stride);
    int pad = s->ksize / 2, taps = s->ksize * s->ksize;
    size_t plane = (size_t)s->n * s->h * s->w;
    int32_t idx[9][MF_NR_MAX];
    int ok[9][MF_NR_MAX];
    for (int l = 0; l < nr; l++) {
        size_t t = t0 + l, n = t / ((size_t)oh * ow), r = t % ((size_t)oh * ow);
        int y0 = (int)(r / ow) * s->stride - pad, x0 = (int)(r % ow) * s->stride - pad;
        for (int k = 0; k < taps; k++) {
            int y = y0 + k / s->ksize, x = x0 + k % s->ksize;
            ok[k][l] = l < nt && y >= 0 && y < s->h && x >= 0 && x < s->w;
            idx[k][l] = ok[k][l] ? (int32_t)((n * s->h + y) * s->w + x) : 0;
        }
    }
    for (int c = 0; c < s->cin; c++) {
        const float *restrict src = in + (size_t)c * plane;
        float a = op->in_a ? op->in_a[c] : 1.0f, o = op->in_b ? op->in_b[c] : 0.0f;
        for (int k = 0; k < taps; k++, b += nr) {
            for (int l = 0; l < nr; l++)
                b[l] = ok[k][l] ? src[idx[k][l]] * a + o : 0.0f;
            if (op->qlo) /* int8: whole rows at once (nr is a multiple of 8) */
                quantise_row(b, nr, op->qlo[c], op->qhi[c]);
        }
    }
}

void mf_conv_im2col(float *out, const float *in, const mf_conv_op *op, const mf_conv_shape *s,
                    const mf_epilogue *ep, void *scratch, int threads)
{
    const mf_gemm *g = op->g;
    int depth = s->cin * s->ksize * s->ksize, nr = g->nr, pairs = is_pairs(g);
    int kdepth = pairs ? (depth + 1) / 2 : depth;
    size_t total = (size_t)s->n * mf_conv_out(s->h, s->ksize, s->stride) *
                   mf_conv_out(s->w, s->ksize, s->stride);
    long tasks = (long)((total + nr - 1) / nr);
#pragma omp parallel num_threads(threads)
    {
        float *b = (float *)((char *)scratch + omp_get_thread_num() * im2col_bytes(depth, g));
        uint32_t *bp = (uint32_t *)(b + (size_t)depth * nr);
        float t[MF_MR * MF_NR_MAX];
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < tasks; task++) {
            size_t t0 = (size_t)task * nr;
            int nt = total - t0 < (size_t)nr ? (int)(total - t0) : nr;
            pack_columns(b, in, s, t0, nt, nr, op);
            if (pairs)
                mf_pack_b_pairs(bp, b, depth, nr, g->arith, 32767.0f);
            for (int k0 = 0; k0 < s->cout; k0 += MF_MR) {
                g->run(kdepth, weights_at(op, 0, k0, depth), pairs ? (void *)bp : (void *)b, t,
                       nr, op->wstep ? op->wstep + k0 : NULL);
                for (int r = 0; r < MF_MR && k0 + r < s->cout; r++) {
                    size_t row = (size_t)(k0 + r) * total + t0;
                    for (int l = 0; l < nt; l++)
                        out[row + l] = finish(t[r * nr + l], k0 + r, ep, row + l);
                }
            }
        }
    }
}

/* ---- Winograd F(4x4,3x3) -------------------------------------------------------- */
/* Each 4x4 block of outputs comes from a 6x6 input tile: 36 products of depth C instead
 * of 144 (4x fewer multiplies). Transforms (Lavin & Gray): V = B^T d B, U = G g G^T,
 * Y = A^T M A with
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
 *          0 4 0 -5 0 1]
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1] */

/* U for every (k, c), computed in double and rounded once. */
void mf_winograd_weights(float *dst, const float *g, int k, int c)
{
    static const double G[6][3] = {{1 / 4., 0, 0},
                                   {-1 / 6., -1 / 6., -1 / 6.},
                                   {-1 / 6., 1 / 6., -1 / 6.},
                                   {1 / 24., 1 / 12., 1 / 6.},
                                   {1 / 24., -1 / 12., 1 / 6.},
                                   {0, 0, 1}};
    size_t one = mf_pack_a_size(k, c);
    memset(dst, 0, MF_WINO_E * one * sizeof(float));
    for (int ko = 0; ko < k; ko++)
        for (int ci = 0; ci < c; ci++) {
            const float *w = g + ((size_t)ko * c + ci) * 9;
            size_t at = (size_t)(ko / MF_MR) * MF_MR * c + (size_t)ci * MF_MR + ko % MF_MR;
            double tmp[6][3];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 3; j++)
                    tmp[i][j] = G[i][0] * w[j] + G[i][1] * w[3 + j] + G[i][2] * w[6 + j];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++)
                    dst[(size_t)(i * 6 + j) * one + at] =
                        (float)(tmp[i][0] * G[j][0] + tmp[i][1] * G[j][1] +
                                tmp[i][2] * G[j][2]);
        }
}

/* g = Gs^-1 Us Gs^-T from the rows {0, 1, 5} of G, whose 3x3 block is invertible:
 * rows 0 and 5 pick g's first and last rows, row 1 their mean with the middle one. */
void mf_winograd_to_direct(float *dst, const float *u, int k, int c)
{
    static const int pick[3] = {0, 1, 5};
    static const double inv[3][3] = {{4, 0, 0}, {-4, -6, -1}, {0, 0, 1}}; /* Gs^-1 */
    size_t one = mf_pack_a_size(k, c);
    for (int ko = 0; ko < k; ko++)
        for (int ci = 0; ci < c; ci++) {
            size_t at = (size_t)(ko / MF_MR) * MF_MR * c + (size_t)ci * MF_MR + ko % MF_MR;
            double us[3][3], t[3][3];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    us[i][j] = u[(size_t)(pick[i] * 6 + pick[j]) * one + at];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    t[i][j] =
                        inv[i][0] * us[0][j] + inv[i][1] * us[1][j] + inv[i][2] * us[2][j];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++) {
                    double g = t[i][0] * inv[j][0] + t[i][1] * inv[j][1] + t[i][2] * inv[j][2];
                    /* A panel of (k, c*9): row ko, column ci*9 + i*3 + j */
                    dst[(size_t)(ko / MF_MR) * MF_MR * c * 9 +
                        ((size_t)ci * 9 + i * 3 + j) * MF_MR + ko % MF_MR] = (float)g;
                }
        }
    for (int ko = k; ko < (int)mf_round_up((size_t)k, MF_MR); ko++) /* padding rows */
        for (int d = 0; d < c * 9; d++)
            dst[(size_t)(ko / MF_MR) * MF_MR * c * 9 + (size_t)d * MF_MR + ko % MF_MR] = 0;
}

#define MAX_LANES (4 * MF_NR_MAX)

/* A task's tiles, as runs along tile rows: the transforms are vectorised along a run. */
typedef struct wino_task {
    const mf_conv_shape *s;
    int tw, tpi, nr, panels, lanes, nt, kp, nseg;
    size_t t0;
    struct {
        int n, ty, tx0, len, lane0;
    } seg[MAX_LANES];
} wino_task;

static void wino_segments(wino_task *w)
{
    w->nseg = 0;
    for (int l = 0; l < w->nt;) {
        size_t t = w->t0 + l, r = t % w->tpi;
        int tx0 = (int)(r % w->tw), len = w->tw - tx0 < w->nt - l ? w->tw - tx0 : w->nt - l;
        w->seg[w->nseg++] =
            (typeof(w->seg[0])){(int)(t / w->tpi), (int)(r / w->tw), tx0, len, l};
        l += len;
    }
}

#define ROW (4 * MAX_LANES + 4)

/* Input rows 4ty-1 .. 4ty+4, columns 4tx0-1 .. 4(tx0+len)+2, as x*a+b, zero outside;
 * when quantising (lo < hi) rounded to integers within [lo, hi] (int8 activations). */
static void wino_rows(float (*restrict d)[ROW], const float *restrict src,
                      const mf_conv_shape *s, int ty, int tx0, int len, float a, float b,
                      float lo, float hi)
{
    int x0 = 4 * tx0 - 1, width = 4 * len + 4;
    int p0 = x0 < 0 ? -x0 : 0, p1 = s->w - x0 < width ? s->w - x0 : width;
    for (int i = 0; i < 6; i++) {
        int y = 4 * ty - 1 + i;
        float *row = d[i];
        if (y < 0 || y >= s->h) {
            memset(row, 0, width * sizeof(float));
            continue;
        }
        const float *restrict in = src + (size_t)y * s->w + x0;
        for (int p = 0; p < p0; p++)
            row[p] = 0.0f;
        if (lo < hi)
            for (int p = p0; p < p1; p++) {
                float v = rintf(in[p] * a + b);
                row[p] = v > hi ? hi : v < lo ? lo : v;
            }
        else
            for (int p = p0; p < p1; p++)
                row[p] = in[p] * a + b;
        for (int p = p1 < p0 ? p0 : p1; p < width; p++)
            row[p] = 0.0f;
    }
}

/* y0..y5 = B^T applied to d0..d5 */
#define BT6_OUT(y0, y1, y2, y3, y4, y5, d0, d1, d2, d3, d4, d5)                                \
    do {                                                                                       \
        y0 = 4 * (d0)-5 * (d2) + (d4), y1 = (d3) + (d4)-4 * ((d1) + (d2));                     \
        y2 = 4 * ((d1) - (d2)) + (d4) - (d3), y3 = 2 * ((d3) - (d1)) + (d4) - (d2);            \
        y4 = 2 * ((d1) - (d3)) + (d4) - (d2), y5 = 4 * (d1)-5 * (d3) + (d5);                   \
    } while (0)

/* v (6 values, stride st) = B^T applied to d0..d5 */
#define BT6(o, st, d0, d1, d2, d3, d4, d5)                                                     \
    BT6_OUT((o)[0], (o)[(st)], (o)[2 * (st)], (o)[3 * (st)], (o)[4 * (st)], (o)[5 * (st)], d0, \
            d1, d2, d3, d4, d5)

#define BT6_COL(d, p)                                                                          \
    do {                                                                                       \
        float d0 = d[0][p], d1 = d[1][p], d2 = d[2][p], d3 = d[3][p], d4 = d[4][p];            \
        float d5 = d[5][p];                                                                    \
        BT6(&d[0][p], ROW, d0, d1, d2, d3, d4, d5);                                            \
    } while (0)

/* The horizontal B^T pass along a run of tiles: six output streams (one per column of
 * the 6x6 tile, `estride` apart in V) that never overlap, which `restrict` tells the
 * compiler so that it vectorises along the run. */
static void bt6_run(float *restrict o0, float *restrict o1, float *restrict o2,
                    float *restrict o3, float *restrict o4, float *restrict o5,
                    const float *restrict q0, const float *restrict q1,
                    const float *restrict q2, const float *restrict q3, int run)
{
    for (int k = 0; k < run; k++)
        BT6_OUT(o0[k], o1[k], o2[k], o3[k], o4[k], o5[k], q0[k], q1[k], q2[k], q3[k], q0[k + 1],
                q1[k + 1]);
}

/* q[f][j] = u[4j + f]: 4x4 transposes of consecutive groups of four columns. */
static void split_phases(float (*restrict q)[MAX_LANES + 1], const float *restrict u, int n)
{
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        __m128 a = _mm_loadu_ps(u + 4 * j), b = _mm_loadu_ps(u + 4 * j + 4);
        __m128 c = _mm_loadu_ps(u + 4 * j + 8), d = _mm_loadu_ps(u + 4 * j + 12);
        _MM_TRANSPOSE4_PS(a, b, c, d);
        _mm_storeu_ps(q[0] + j, a), _mm_storeu_ps(q[1] + j, b);
        _mm_storeu_ps(q[2] + j, c), _mm_storeu_ps(q[3] + j, d);
    }
    for (; j < n; j++)
        for (int f = 0; f < 4; f++)
            q[f][j] = u[4 * j + f];
}

/* V[e][panel][c][NR] = B^T d B for each tile's 6x6 window d: the vertical pass runs
 * over whole rows, its results are split by column phase (mod 4), and the horizontal
 * pass is then contiguous along the run. */
static void wino_input(float *v, const float *in, const wino_task *w, const mf_conv_op *op)
{
    const mf_conv_shape *s = w->s;
    int nr = w->nr;
    size_t plane = (size_t)s->n * s->h * s->w, estride = (size_t)w->panels * s->cin * nr;
    float d[6][ROW], q[6][4][MAX_LANES + 1];
    if (w->nt < w->lanes) /* the padding lanes of the last task multiply as zeros */
        for (int e = 0; e < MF_WINO_E; e++)
            for (int c = 0; c < s->cin; c++)
                for (int l = w->nt; l < w->lanes; l++)
                    v[e * estride + ((size_t)(l / nr) * s->cin + c) * nr + l % nr] = 0;
    for (int g = 0; g < w->nseg; g++) {
        int len = w->seg[g].len;
        for (int c = 0; c < s->cin; c++) {
            const float *src = in + (size_t)c * plane + (size_t)w->seg[g].n * s->h * s->w;
            wino_rows(d, src, s, w->seg[g].ty, w->seg[g].tx0, len,
                      op->in_a ? op->in_a[c] : 1.0f, op->in_b ? op->in_b[c] : 0.0f,
                      op->qlo ? op->qlo[c] : 0, op->qhi ? op->qhi[c] : 0);
            for (int p = 0; p < 4 * len + 4; p++) /* in place: u = B^T d per column */
                BT6_COL(d, p);
            for (int r = 0; r < 6; r++)
                split_phases(q[r], d[r], len + 1);
            for (int x = 0; x < len;) {
                int lane = w->seg[g].lane0 + x, run = nr - lane % nr;
                run = run < len - x ? run : len - x;
                float *o = v + ((size_t)(lane / nr) * s->cin + c) * nr + lane % nr;
                for (int i = 0; i < 6; i++) {
                    const float *q0 = q[i][0] + x, *q1 = q[i][1] + x, *q2 = q[i][2] + x;
                    const float *q3 = q[i][3] + x;
                    float *oi = o + (size_t)(i * 6) * estride;
                    bt6_run(oi, oi + estride, oi + 2 * estride, oi + 3 * estride,
                            oi + 4 * estride, oi + 5 * estride, q0, q1, q2, q3, run);
                }
                x += run;
            }
        }
    }
}

/* y (4 values, stride st) = A^T applied to m0..m5 */
#define AT6(y, st, m0, m1, m2, m3, m4, m5)                                                     \
    do {                                                                                       \
        float s12 = (m1) + (m2), d12 = (m1) - (m2), s34 = (m3) + (m4), d34 = (m3) - (m4);      \
        (y)[0] = (m0) + s12 + s34, (y)[(st)] = d12 + 2 * d34;                                  \
        (y)[2 * (st)] = s12 + 4 * s34, (y)[3 * (st)] = d12 + 8 * d34 + (m5);                   \
    } while (0)

/* o[x] = y[x%4][l0 + x/4] (+ res[x]) for x < cols: 4x4 transposes back to pixels. */
static void put_row(float *o, const float *res, float (*y)[MAX_LANES], int l0, int cols)
{
    int x = 0;
    for (; x + 16 <= cols; x += 16) {
        int l = l0 + x / 4;
        __m128 a = _mm_loadu_ps(y[0] + l), b = _mm_loadu_ps(y[1] + l);
        __m128 c = _mm_loadu_ps(y[2] + l), d = _mm_loadu_ps(y[3] + l);
        _MM_TRANSPOSE4_PS(a, b, c, d);
        if (res) {
            a = _mm_add_ps(a, _mm_loadu_ps(res + x)),
            b = _mm_add_ps(b, _mm_loadu_ps(res + x + 4));
            c = _mm_add_ps(c, _mm_loadu_ps(res + x + 8)),
            d = _mm_add_ps(d, _mm_loadu_ps(res + x + 12));
        }
        _mm_storeu_ps(o + x, a), _mm_storeu_ps(o + x + 4, b);
        _mm_storeu_ps(o + x + 8, c), _mm_storeu_ps(o + x + 12, d);
    }
    for (; x < cols; x++)
        o[x] = y[x & 3][l0 + (x >> 2)] + (res ? res[x] : 0.0f);
}

/* x = prelu(x + bias) over n values (GCC leaves the plain loop scalar). */
static void bias_prelu(float *x, int n, float bias, float slope)
{
    __m256 b = _mm256_set1_ps(bias), k = _mm256_set1_ps(slope), zero = _mm256_setzero_ps();
    int l = 0;
    for (; l + 8 <= n; l += 8) {
        __m256 v = _mm256_add_ps(_mm256_loadu_ps(x + l), b);
        _mm256_storeu_ps(x + l, _mm256_blendv_ps(v, _mm256_mul_ps(v, k),
                                                 _mm256_cmp_ps(v, zero, _CMP_LT_OQ)));
    }
    for (; l < n; l++) {
        float v = x[l] + bias;
        x[l] = v < 0.0f ? v * slope : v;
    }
}

/* Y = A^T M A over all lanes of an output channel at once, then the runs of tiles are
 * written out row by row with the epilogue. */
static void wino_output(float *out, const float *m, const wino_task *w, const mf_epilogue *ep,
                        int k0, int k1)
{
    const mf_conv_shape *s = w->s;
    size_t hw = (size_t)s->h * s->w, estride = (size_t)w->kp * w->lanes;
    float t[6][4][MAX_LANES], y[4][4][MAX_LANES];
    for (int k = k0; k < k1 && k < s->cout; k++) {
        const float *q = m + (size_t)k * w->lanes;
        float bias = ep->bias ? ep->bias[k] : 0.0f;
        for (int j = 0; j < 6; j++) /* columns of M: t[j][i] = (A^T M)[i][j] */
            for (int l = 0; l < w->nt; l++)
                AT6(&t[j][0][l], MAX_LANES, q[j * estride + l], q[(6 + j) * estride + l],
                    q[(12 + j) * estride + l], q[(18 + j) * estride + l],
                    q[(24 + j) * estride + l], q[(30 + j) * estride + l]);
        for (int i = 0; i < 4; i++)
            for (int l = 0; l < w->nt; l++)
                AT6(&y[i][0][l], MAX_LANES, t[0][i][l], t[1][i][l], t[2][i][l], t[3][i][l],
                    t[4][i][l], t[5][i][l]);
        float slope = ep->prelu ? ep->prelu[k] : 1.0f;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                bias_prelu(y[i][j], w->nt, bias, slope);
        for (int g = 0; g < w->nseg; g++) {
            int oy = 4 * w->seg[g].ty, ox = 4 * w->seg[g].tx0, len = w->seg[g].len;
            int l0 = w->seg[g].lane0, cols = 4 * len < s->w - ox ? 4 * len : s->w - ox;
            size_t at = ((size_t)k * s->n + w->seg[g].n) * hw + (size_t)oy * s->w + ox;
            for (int i = 0; i < 4 && oy + i < s->h; i++)
                put_row(out + at + (size_t)i * s->w,
                        ep->residual ? ep->residual + at + (size_t)i * s->w : NULL, y[i], l0,
                        cols);
        }
    }
}

void mf_conv_winograd(float *out, const float *in, const mf_conv_op *op, const mf_conv_shape *s,
                      const mf_epilogue *ep, void *scratch, int threads)
{
    const mf_gemm *g = op->g;
    int nr = g->nr, pairs = is_pairs(g), c = s->cin, cdepth = pairs ? (c + 1) / 2 : c;
    int kp = (int)mf_round_up((size_t)s->cout, MF_MR), panels = wino_panels(c, kp, nr);
    int tw = (s->w + 3) / 4, tpi = ((s->h + 3) / 4) * tw, lanes = panels * nr;
    size_t total = (size_t)s->n * tpi;
    size_t one = pairs ? mf_pack_pairs_size(s->cout, c) : mf_pack_a_size(s->cout, c);
    size_t vsize = (size_t)MF_WINO_E * c * lanes,
           vpsize = pairs ? (size_t)MF_WINO_E * cdepth * lanes : 0;
    /* few tiles (7x7 and 14x14 maps): also split the output channels so that every
     * thread gets work; each split repeats the (cheap) input transform */
    long ttasks = (long)((total + lanes - 1) / lanes), kchunks = 1;
    while (ttasks * kchunks < 4L * threads && kp / (kchunks * 2) >= 4 * MF_MR)
        kchunks *= 2;
    int kstep = (int)mf_round_up((size_t)(kp + kchunks - 1) / kchunks, MF_MR);
#pragma omp parallel num_threads(threads)
    {
        float *v = (float *)((char *)scratch + omp_get_thread_num() * wino_bytes(c, kp, g));
        uint32_t *vp = (uint32_t *)(v + vsize);
        float *m = (float *)(vp + vpsize);
        wino_task w = {
            .s = s, .tw = tw, .tpi = tpi, .nr = nr, .panels = panels, .lanes = lanes, .kp = kp};
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < ttasks * kchunks; task++) {
            int ka = (int)(task % kchunks) * kstep, kb = ka + kstep < kp ? ka + kstep : kp;
            w.t0 = (size_t)(task / kchunks) * lanes;
            w.nt = total - w.t0 < (size_t)lanes ? (int)(total - w.t0) : lanes;
            wino_segments(&w);
            wino_input(v, in, &w, op);
            if (pairs) /* exact for int8 inputs: V holds integers within int16 */
                for (int q = 0; q < MF_WINO_E * panels; q++)
                    mf_pack_b_pairs(vp + (size_t)q * cdepth * nr, v + (size_t)q * c * nr, c, nr,
                                    g->arith, 32767.0f);
            const void *vb = pairs ? (const void *)vp : (const void *)v;
            size_t vstride = (size_t)cdepth * nr * (pairs ? 4 : sizeof(float));
            for (int e = 0; e < MF_WINO_E; e++)
                for (int k0 = ka; k0 < kb; k0 += MF_MR)
                    for (int p = 0; p < panels; p++)
                        g->run(cdepth, weights_at(op, e * one, k0, c),
                               (const char *)vb + ((size_t)e * panels + p) * vstride,
                               m + ((size_t)e * kp + k0) * lanes + p * nr, lanes,
                               op->wstep ? op->wstep + (size_t)e * kp + k0 : NULL);
            wino_output(out, m, &w, ep, ka, kb);
        }
    }
}

void mf_conv_run(float *out, const float *in, const mf_conv_op *op, const mf_conv_shape *s,
                 const mf_epilogue *ep, void *scratch, int threads)
{
    if (op->winograd)
        mf_conv_winograd(out, in, op, s, ep, scratch, threads);
    else
        mf_conv_im2col(out, in, op, s, ep, scratch, threads);
}
