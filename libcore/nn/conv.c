/* conv.c - convolutions over a CNHW batch: im2col + packed GEMM, and Winograd
 * F(2x2,3x3) for 3x3 stride 1. Work is split into tasks of a few 24-column panels; a
 * task packs its columns into per-thread scratch, runs the micro-kernel over every
 * output-channel panel and writes finished outputs with the epilogue, so the working
 * set of a task stays in L2 and no large intermediate buffer exists. */
#include "nn/nn.h"

#include <omp.h>
#include <string.h>

/* Per-thread working set of one Winograd task: transformed inputs (16 x C x L) and
 * products (16 x K x L); L = panels*24 columns, chosen so both fit in about 1 MB. */
static int wino_panels(int c, int kp)
{
    size_t per_panel = (size_t)16 * (size_t)(c + kp) * MF_NR * sizeof(float);
    size_t p = ((size_t)1 << 20) / per_panel;
    return p < 1 ? 1 : p > 4 ? 4 : (int)p;
}

size_t mf_conv_scratch_size(const mf_conv_shape *s, int winograd, int threads)
{
    int kp = (int)mf_round_up((size_t)s->cout, MF_MR);
    if (!winograd)
        return (size_t)threads * s->cin * s->ksize * s->ksize * MF_NR;
    size_t l = (size_t)wino_panels(s->cin, kp) * MF_NR;
    return (size_t)threads * 16 * ((size_t)s->cin + kp) * l;
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

static void pack_columns(float *b, const float *in, const mf_conv_shape *s, size_t t0, int nt)
{
    int oh = mf_conv_out(s->h, s->ksize, s->stride), ow = mf_conv_out(s->w, s->ksize, s->stride);
    int pad = s->ksize / 2, ks = s->ksize;
    size_t hw = (size_t)s->h * s->w, plane = (size_t)s->n * hw;
    int iy0[MF_NR], ix0[MF_NR];
    size_t base[MF_NR];
    for (int l = 0; l < nt; l++) {
        size_t t = t0 + l, n = t / ((size_t)oh * ow), r = t % ((size_t)oh * ow);
        iy0[l] = (int)(r / ow) * s->stride - pad, ix0[l] = (int)(r % ow) * s->stride - pad;
        base[l] = n * hw;
    }
    for (int c = 0; c < s->cin; c++)
        for (int ky = 0; ky < ks; ky++)
            for (int kx = 0; kx < ks; kx++, b += MF_NR) {
                const float *src = in + (size_t)c * plane;
                for (int l = 0; l < MF_NR; l++) {
                    int y = l < nt ? iy0[l] + ky : -1, x = l < nt ? ix0[l] + kx : -1;
                    b[l] = y >= 0 && y < s->h && x >= 0 && x < s->w
                               ? src[base[l] + (size_t)y * s->w + x] : 0.0f;
                }
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

/* ---- Winograd F(2x2,3x3) -------------------------------------------------------- */

/* U = G g G^T with G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], in double so the
 * transformed weights are the correctly rounded values. */
void mf_winograd_weights(float *dst, const float *g, int k, int c)
{
    static const double G[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
    size_t one = mf_pack_a_size(k, c);
    memset(dst, 0, 16 * one * sizeof(float));
    for (int ko = 0; ko < k; ko++)
        for (int ci = 0; ci < c; ci++) {
            const float *w = g + ((size_t)ko * c + ci) * 9;
            double tmp[4][3], u;
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 3; j++)
                    tmp[i][j] = G[i][0] * w[j] + G[i][1] * w[3 + j] + G[i][2] * w[6 + j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    u = tmp[i][0] * G[j][0] + tmp[i][1] * G[j][1] + tmp[i][2] * G[j][2];
                    size_t at = (size_t)(ko / MF_MR) * MF_MR * c + (size_t)ci * MF_MR + ko % MF_MR;
                    dst[(size_t)(i * 4 + j) * one + at] = (float)u;
                }
        }
}

#define MAX_LANES (4 * MF_NR)

/* A task's tiles, as runs along tile rows: the transforms are vectorised along a run. */
typedef struct wino_task {
    const mf_conv_shape *s;
    int tw, tpi, panels, lanes, nt, kp, nseg;
    size_t t0;
    struct { int n, ty, tx0, len, lane0; } seg[MAX_LANES];
} wino_task;

static void wino_segments(wino_task *w)
{
    w->nseg = 0;
    for (int l = 0; l < w->nt;) {
        size_t t = w->t0 + l, r = t % w->tpi;
        int tx0 = (int)(r % w->tw), len = w->tw - tx0 < w->nt - l ? w->tw - tx0 : w->nt - l;
        w->seg[w->nseg++] = (typeof(w->seg[0])){(int)(t / w->tpi), (int)(r / w->tw), tx0, len, l};
        l += len;
    }
}

/* Input rows 2ty-1 .. 2ty+2, columns 2tx0-1 .. 2(tx0+len), as x*a+b, zero outside. */
static void wino_rows(float d[4][2 * MAX_LANES + 2], const float *src, const mf_conv_shape *s,
                      int ty, int tx0, int len, float a, float b)
{
    int x0 = 2 * tx0 - 1, width = 2 * len + 2;
    int p0 = x0 < 0 ? -x0 : 0, p1 = s->w - x0 < width ? s->w - x0 : width;
    for (int i = 0; i < 4; i++) {
        int y = 2 * ty - 1 + i;
        float *row = d[i];
        if (y < 0 || y >= s->h) {
            memset(row, 0, width * sizeof(float));
            continue;
        }
        const float *in = src + (size_t)y * s->w + x0;
        for (int p = 0; p < p0; p++)
            row[p] = 0.0f;
        for (int p = p0; p < p1; p++)
            row[p] = in[p] * a + b;
        for (int p = p1 < p0 ? p0 : p1; p < width; p++)
            row[p] = 0.0f;
    }
}

/* V[e][panel][c][24] = B^T d B for each tile's 4x4 window d, B^T = [1 0 -1 0; 0 1 1 0;
 * 0 -1 1 0; 0 1 0 -1]: the vertical pass runs over whole rows, its results are split
 * into even and odd columns, and the horizontal pass is then contiguous along the run. */
static void wino_input(float *v, const float *in, const wino_task *w, const float *in_a,
                       const float *in_b)
{
    const mf_conv_shape *s = w->s;
    size_t plane = (size_t)s->n * s->h * s->w, estride = (size_t)w->panels * s->cin * MF_NR;
    float d[4][2 * MAX_LANES + 2], ev[4][MAX_LANES + 1], od[4][MAX_LANES + 1];
    if (w->nt < w->lanes) /* the padding lanes of the last task multiply as zeros */
        for (int e = 0; e < 16; e++)
            for (int c = 0; c < s->cin; c++)
                for (int l = w->nt; l < w->lanes; l++)
                    v[e * estride + ((size_t)(l / MF_NR) * s->cin + c) * MF_NR + l % MF_NR] = 0;
    for (int g = 0; g < w->nseg; g++) {
        int len = w->seg[g].len;
        for (int c = 0; c < s->cin; c++) {
            const float *src = in + (size_t)c * plane + (size_t)w->seg[g].n * s->h * s->w;
            wino_rows(d, src, s, w->seg[g].ty, w->seg[g].tx0, len, in_a ? in_a[c] : 1.0f,
                      in_b ? in_b[c] : 0.0f);
            for (int j = 0; j <= len; j++) {
                ev[0][j] = d[0][2 * j] - d[2][2 * j], od[0][j] = d[0][2 * j + 1] - d[2][2 * j + 1];
                ev[1][j] = d[1][2 * j] + d[2][2 * j], od[1][j] = d[1][2 * j + 1] + d[2][2 * j + 1];
                ev[2][j] = d[2][2 * j] - d[1][2 * j], od[2][j] = d[2][2 * j + 1] - d[1][2 * j + 1];
                ev[3][j] = d[1][2 * j] - d[3][2 * j], od[3][j] = d[1][2 * j + 1] - d[3][2 * j + 1];
            }
            for (int x = 0; x < len;) {
                int lane = w->seg[g].lane0 + x, run = MF_NR - lane % MF_NR;
                run = run < len - x ? run : len - x;
                float *o = v + ((size_t)(lane / MF_NR) * s->cin + c) * MF_NR + lane % MF_NR;
                for (int i = 0; i < 4; i++) {
                    float *o0 = o + (i * 4) * estride, *o1 = o0 + estride, *o2 = o1 + estride;
                    float *o3 = o2 + estride;
                    const float *E = ev[i] + x, *O = od[i] + x;
                    for (int k = 0; k < run; k++) {
                        o0[k] = E[k] - E[k + 1], o1[k] = O[k] + E[k + 1];
                        o2[k] = E[k + 1] - O[k], o3[k] = O[k] - O[k + 1];
                    }
                }
                x += run;
            }
        }
    }
}

/* Y = A^T m A with A^T = [1 1 1 0; 0 1 -1 -1]; m[e][k][lane] are the 16 products. The
 * transform runs over all lanes of a channel at once, then runs are written out. */
static void wino_output(float *out, const float *m, const wino_task *w, const mf_epilogue *ep)
{
    const mf_conv_shape *s = w->s;
    size_t hw = (size_t)s->h * s->w, estride = (size_t)w->kp * w->lanes;
    float y[4][MAX_LANES];
    for (int k = 0; k < s->cout; k++) {
        const float *q = m + (size_t)k * w->lanes;
        float bias = ep->bias ? ep->bias[k] : 0.0f;
        for (int l = 0; l < w->nt; l++) {
            float r0[4], r1[4];
            for (int j = 0; j < 4; j++) {
                float q0 = q[j * estride + l], q1 = q[(4 + j) * estride + l];
                float q2 = q[(8 + j) * estride + l], q3 = q[(12 + j) * estride + l];
                r0[j] = q0 + q1 + q2, r1[j] = q1 - q2 - q3;
            }
            y[0][l] = r0[0] + r0[1] + r0[2] + bias, y[1][l] = r0[1] - r0[2] - r0[3] + bias;
            y[2][l] = r1[0] + r1[1] + r1[2] + bias, y[3][l] = r1[1] - r1[2] - r1[3] + bias;
        }
        if (ep->prelu)
            for (int i = 0; i < 4; i++)
                for (int l = 0; l < w->nt; l++)
                    y[i][l] = y[i][l] < 0.0f ? y[i][l] * ep->prelu[k] : y[i][l];
        for (int g = 0; g < w->nseg; g++) {
            int oy = 2 * w->seg[g].ty, ox = 2 * w->seg[g].tx0, len = w->seg[g].len;
            int l0 = w->seg[g].lane0, cols = 2 * len < s->w - ox ? 2 * len : s->w - ox;
            size_t at = ((size_t)k * s->n + w->seg[g].n) * hw + (size_t)oy * s->w + ox;
            for (int i = 0; i < 2 && oy + i < s->h; i++) {
                float *o = out + at + (size_t)i * s->w;
                const float *res = ep->residual ? ep->residual + at + (size_t)i * s->w : NULL;
                const float *ya = y[2 * i] + l0, *yb = y[2 * i + 1] + l0;
                if (res)
                    for (int x = 0; x < cols; x++)
                        o[x] = (x & 1 ? yb[x >> 1] : ya[x >> 1]) + res[x];
                else
                    for (int x = 0; x < cols; x++)
                        o[x] = x & 1 ? yb[x >> 1] : ya[x >> 1];
            }
        }
    }
}

void mf_conv_winograd(float *out, const float *in, const float *wp, const mf_conv_shape *s,
                      const float *in_a, const float *in_b, const mf_epilogue *ep,
                      float *scratch, int threads)
{
    int kp = (int)mf_round_up((size_t)s->cout, MF_MR), panels = wino_panels(s->cin, kp);
    int tw = (s->w + 1) / 2, tpi = ((s->h + 1) / 2) * tw, lanes = panels * MF_NR;
    size_t total = (size_t)s->n * tpi, one = mf_pack_a_size(s->cout, s->cin);
    size_t vsize = (size_t)16 * s->cin * lanes, msize = (size_t)16 * kp * lanes;
    long tasks = (long)((total + lanes - 1) / lanes);
#pragma omp parallel num_threads(threads)
    {
        float *v = scratch + (size_t)omp_get_thread_num() * (vsize + msize), *m = v + vsize;
        wino_task w = {.s = s, .tw = tw, .tpi = tpi, .panels = panels, .lanes = lanes, .kp = kp};
#pragma omp for schedule(dynamic, 1)
        for (long task = 0; task < tasks; task++) {
            w.t0 = (size_t)task * lanes;
            w.nt = total - w.t0 < (size_t)lanes ? (int)(total - w.t0) : lanes;
            wino_segments(&w);
            wino_input(v, in, &w, in_a, in_b);
            for (int e = 0; e < 16; e++)
                for (int k0 = 0; k0 < kp; k0 += MF_MR)
                    for (int p = 0; p < panels; p++)
                        mf_kernel(s->cin, wp + e * one + (size_t)k0 * s->cin,
                                  v + ((size_t)e * panels + p) * s->cin * MF_NR,
                                  m + ((size_t)e * kp + k0) * lanes + p * MF_NR, lanes);
            wino_output(out, m, &w, ep);
        }
    }
}
