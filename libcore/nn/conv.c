/* conv.c - convolutions over a CNHW batch: im2col + packed GEMM, and Winograd
 * F(4x4,3x3) for 3x3 stride 1. Work is split into tasks of a few NR-column panels; a
 * task packs its columns into per-thread scratch, runs the micro-kernel over every
 * output-channel panel and writes finished outputs with the epilogue, so the working
 * set of a task stays in L2 and no large intermediate buffer exists. */
#include "nn.h"

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* Per-thread working set of one Winograd task: transformed inputs (36 x C x L) and
 * products (36 x K x L); L = panels*NR columns, chosen so both fit in about 1 MB. */
static int wino_panels(int c, int kp)
{
    size_t per_panel = (size_t)MF_WINO_E * (size_t)(c + kp) * MF_NR * sizeof(float);
    size_t p = ((size_t)1 << 20) / per_panel;
    return p < 1 ? 1 : p > 4 ? 4 : (int)p;
}

size_t mf_conv_scratch_size(const mf_conv_shape *s, int winograd, int threads)
{
    int kp = (int)mf_round_up((size_t)s->cout, MF_MR);
    if (!winograd)
        return (size_t)threads * s->cin * s->ksize * s->ksize * MF_NR;
    size_t l = (size_t)wino_panels(s->cin, kp) * MF_NR;
    return (size_t)threads * MF_WINO_E * ((size_t)s->cin + kp) * l;
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

/* B panel for output columns t0 .. t0+nt: row (c, ky, kx), lane l = the input pixel
 * under that kernel tap for column t0+l, zero in the padding and the spare lanes. The
 * taps' offsets and validity are the same for every channel, so they are computed once
 * and the channel loop is a plain masked gather. */
static void pack_columns(float *restrict b, const float *restrict in, const mf_conv_shape *s,
                         size_t t0, int nt)
{
    int oh = mf_conv_out(s->h, s->ksize, s->stride),
        ow = mf_conv_out(s->w, s->ksize, s->stride);
    int pad = s->ksize / 2, taps = s->ksize * s->ksize;
    size_t plane = (size_t)s->n * s->h * s->w;
    int32_t idx[9][MF_NR];
    int ok[9][MF_NR];
    for (int l = 0; l < MF_NR; l++) {
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
        for (int k = 0; k < taps; k++, b += MF_NR)
            for (int l = 0; l < MF_NR; l++)
                b[l] = ok[k][l] ? src[idx[k][l]] : 0.0f;
    }
}

void mf_conv_im2col(float *out, const float *in, const float *wp, const mf_conv_shape *s,
                    const mf_epilogue *ep, float *scratch, int threads)
{
    int depth = s->cin * s->ksize * s->ksize;
    size_t total = (size_t)s->n * mf_conv_out(s->h, s->ksize, s->stride) *
                   mf_conv_out(s->w, s->ksize, s->stride);
    long tasks = (long)((total + MF_NR - 1) / MF_NR);
#pragma omp parallel num_threads(threads)
    {
        float *b = scratch + (size_t)omp_get_thread_num() * depth * MF_NR;
        float t[MF_MR * MF_NR];
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < tasks; task++) {
            size_t t0 = (size_t)task * MF_NR;
            int nt = total - t0 < MF_NR ? (int)(total - t0) : MF_NR;
            pack_columns(b, in, s, t0, nt);
            for (int k0 = 0; k0 < s->cout; k0 += MF_MR) {
                mf_kernel(depth, wp + (size_t)k0 * depth, b, t, MF_NR);
                for (int r = 0; r < MF_MR && k0 + r < s->cout; r++) {
                    size_t row = (size_t)(k0 + r) * total + t0;
                    for (int l = 0; l < nt; l++)
                        out[row + l] = finish(t[r * MF_NR + l], k0 + r, ep, row + l);
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

#define MAX_LANES (4 * MF_NR)

/* A task's tiles, as runs along tile rows: the transforms are vectorised along a run. */
typedef struct wino_task {
    const mf_conv_shape *s;
    int tw, tpi, panels, lanes, nt, kp, nseg;
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

/* Input rows 4ty-1 .. 4ty+4, columns 4tx0-1 .. 4(tx0+len)+2, as x*a+b, zero outside. */
static void wino_rows(float (*restrict d)[ROW], const float *restrict src,
                      const mf_conv_shape *s, int ty, int tx0, int len, float a, float b)
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
        for (int p = p0; p < p1; p++)
            row[p] = in[p] * a + b;
        for (int p = p1 < p0 ? p0 : p1; p < width; p++)
            row[p] = 0.0f;
    }
}

/* v (6 values, stride st) = B^T applied to d0..d5 */
#define BT6(o, st, d0, d1, d2, d3, d4, d5)                                                     \
    do {                                                                                       \
        (o)[0] = 4 * (d0)-5 * (d2) + (d4), (o)[(st)] = (d3) + (d4)-4 * ((d1) + (d2));          \
        (o)[2 * (st)] = 4 * ((d1) - (d2)) + (d4) - (d3);                                       \
        (o)[3 * (st)] = 2 * ((d3) - (d1)) + (d4) - (d2);                                       \
        (o)[4 * (st)] = 2 * ((d1) - (d3)) + (d4) - (d2);                                       \
        (o)[5 * (st)] = 4 * (d1)-5 * (d3) + (d5);                                              \
    } while (0)

#define BT6_COL(d, p)                                                                          \
    do {                                                                                       \
        float d0 = d[0][p], d1 = d[1][p], d2 = d[2][p], d3 = d[3][p], d4 = d[4][p];            \
        float d5 = d[5][p];                                                                    \
        BT6(&d[0][p], ROW, d0, d1, d2, d3, d4, d5);                                            \
    } while (0)

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
static void wino_input(float *v, const float *in, const wino_task *w, const float *in_a,
                       const float *in_b)
{
    const mf_conv_shape *s = w->s;
    size_t plane = (size_t)s->n * s->h * s->w, estride = (size_t)w->panels * s->cin * MF_NR;
    float d[6][ROW], q[6][4][MAX_LANES + 1];
    if (w->nt < w->lanes) /* the padding lanes of the last task multiply as zeros */
        for (int e = 0; e < MF_WINO_E; e++)
            for (int c = 0; c < s->cin; c++)
                for (int l = w->nt; l < w->lanes; l++)
                    v[e * estride + ((size_t)(l / MF_NR) * s->cin + c) * MF_NR + l % MF_NR] = 0;
    for (int g = 0; g < w->nseg; g++) {
        int len = w->seg[g].len;
        for (int c = 0; c < s->cin; c++) {
            const float *src = in + (size_t)c * plane + (size_t)w->seg[g].n * s->h * s->w;
            wino_rows(d, src, s, w->seg[g].ty, w->seg[g].tx0, len, in_a ? in_a[c] : 1.0f,
                      in_b ? in_b[c] : 0.0f);
            for (int p = 0; p < 4 * len + 4; p++) /* in place: u = B^T d per column */
                BT6_COL(d, p);
            for (int r = 0; r < 6; r++)
                split_phases(q[r], d[r], len + 1);
            for (int x = 0; x < len;) {
                int lane = w->seg[g].lane0 + x, run = MF_NR - lane % MF_NR;
                run = run < len - x ? run : len - x;
                float *o = v + ((size_t)(lane / MF_NR) * s->cin + c) * MF_NR + lane % MF_NR;
                for (int i = 0; i < 6; i++) {
                    const float *q0 = q[i][0] + x, *q1 = q[i][1] + x, *q2 = q[i][2] + x;
                    const float *q3 = q[i][3] + x;
                    float *oi = o + (size_t)(i * 6) * estride;
                    for (int k = 0; k < run; k++)
                        BT6(oi + k, estride, q0[k], q1[k], q2[k], q3[k], q0[k + 1], q1[k + 1]);
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
                for (int l = 0; l < w->nt; l++) {
                    float v = y[i][j][l] + bias;
                    y[i][j][l] = v < 0.0f ? v * slope : v;
                }
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

void mf_conv_winograd(float *out, const float *in, const float *wp, const mf_conv_shape *s,
                      const float *in_a, const float *in_b, const mf_epilogue *ep,
                      float *scratch, int threads)
{
    int kp = (int)mf_round_up((size_t)s->cout, MF_MR), panels = wino_panels(s->cin, kp);
    int tw = (s->w + 3) / 4, tpi = ((s->h + 3) / 4) * tw, lanes = panels * MF_NR;
    size_t total = (size_t)s->n * tpi, one = mf_pack_a_size(s->cout, s->cin);
    size_t vsize = (size_t)MF_WINO_E * s->cin * lanes, msize = (size_t)MF_WINO_E * kp * lanes;
    /* few tiles (7x7 and 14x14 maps): also split the output channels so that every
     * thread gets work; each split repeats the (cheap) input transform */
    long ttasks = (long)((total + lanes - 1) / lanes), kchunks = 1;
    while (ttasks * kchunks < 4L * threads && kp / (kchunks * 2) >= 4 * MF_MR)
        kchunks *= 2;
    int kstep = (int)mf_round_up((size_t)(kp + kchunks - 1) / kchunks, MF_MR);
#pragma omp parallel num_threads(threads)
    {
        float *v = scratch + (size_t)omp_get_thread_num() * (vsize + msize), *m = v + vsize;
        wino_task w = {
            .s = s, .tw = tw, .tpi = tpi, .panels = panels, .lanes = lanes, .kp = kp};
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < ttasks * kchunks; task++) {
            int ka = (int)(task % kchunks) * kstep, kb = ka + kstep < kp ? ka + kstep : kp;
            w.t0 = (size_t)(task / kchunks) * lanes;
            w.nt = total - w.t0 < (size_t)lanes ? (int)(total - w.t0) : lanes;
            wino_segments(&w);
            wino_input(v, in, &w, in_a, in_b);
            for (int e = 0; e < MF_WINO_E; e++)
                for (int k0 = ka; k0 < kb; k0 += MF_MR)
                    for (int p = 0; p < panels; p++)
                        mf_kernel(s->cin, wp + e * one + (size_t)k0 * s->cin,
                                  v + ((size_t)e * panels + p) * s->cin * MF_NR,
                                  m + ((size_t)e * kp + k0) * lanes + p * MF_NR, lanes);
            wino_output(out, m, &w, ep, ka, kb);
        }
    }
}
