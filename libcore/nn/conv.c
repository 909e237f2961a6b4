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
#pragma omp for schedule(static)
        for (long task = 0; task < tasks; task++) {
            size_t t0 = (size_t)task * MF_NR;
            int nt = total - t0 < MF_NR ? (int)(total - t0) : MF_NR;
            pack_columns(b, in, s, t0, nt);
            for (int k0 = 0; k0 < s->cout; k0 += MF_MR) {
                mf_kernel(depth, wp + (size_t)k0 * depth, b, t);
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

typedef struct wino_task {
    const mf_conv_shape *s;
    int tw, tpi, panels, lanes, nt, kp;
    size_t t0;
    size_t off[4 * MF_NR]; /* input offset of each tile's top-left (may be "negative") */
    int ty[4 * MF_NR], tx[4 * MF_NR], n[4 * MF_NR], inside[4 * MF_NR];
} wino_task;

static void wino_tiles(wino_task *w)
{
    const mf_conv_shape *s = w->s;
    for (int l = 0; l < w->nt; l++) {
        size_t t = w->t0 + l, r = t % w->tpi;
        w->n[l] = (int)(t / w->tpi), w->ty[l] = (int)(r / w->tw), w->tx[l] = (int)(r % w->tw);
        int y0 = 2 * w->ty[l] - 1, x0 = 2 * w->tx[l] - 1;
        w->inside[l] = y0 >= 0 && y0 + 3 < s->h && x0 >= 0 && x0 + 3 < s->w;
        w->off[l] = (size_t)w->n[l] * s->h * s->w + (size_t)(y0 * s->w + x0);
    }
}

/* V[e][panel][c][24] = B^T d B of each tile's 4x4 input window d (after x*a+b; zero
 * outside the image), B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
static void wino_input(float *v, const float *in, const wino_task *w, const float *in_a,
                       const float *in_b)
{
    const mf_conv_shape *s = w->s;
    size_t plane = (size_t)s->n * s->h * s->w, estride = (size_t)w->panels * s->cin * MF_NR;
    for (int c = 0; c < s->cin; c++) {
        const float *src = in + (size_t)c * plane;
        float a = in_a ? in_a[c] : 1.0f, b = in_b ? in_b[c] : 0.0f;
        for (int l = 0; l < w->lanes; l++) {
            float d[4][4], t[4][4];
            if (l >= w->nt) {
                memset(d, 0, sizeof d);
            } else if (w->inside[l]) {
                const float *p = src + w->off[l];
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++)
                        d[i][j] = p[i * s->w + j] * a + b;
            } else {
                int y0 = 2 * w->ty[l] - 1, x0 = 2 * w->tx[l] - 1;
                const float *p = src + (size_t)w->n[l] * s->h * s->w;
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        int y = y0 + i, x = x0 + j;
                        d[i][j] = y >= 0 && y < s->h && x >= 0 && x < s->w
                                      ? p[(size_t)y * s->w + x] * a + b : 0.0f;
                    }
            }
            for (int j = 0; j < 4; j++) {
                t[0][j] = d[0][j] - d[2][j], t[1][j] = d[1][j] + d[2][j];
                t[2][j] = d[2][j] - d[1][j], t[3][j] = d[1][j] - d[3][j];
            }
            float *o = v + ((size_t)(l / MF_NR) * s->cin + c) * MF_NR + l % MF_NR;
            for (int i = 0; i < 4; i++) {
                o[(size_t)(i * 4 + 0) * estride] = t[i][0] - t[i][2];
                o[(size_t)(i * 4 + 1) * estride] = t[i][1] + t[i][2];
                o[(size_t)(i * 4 + 2) * estride] = t[i][2] - t[i][1];
                o[(size_t)(i * 4 + 3) * estride] = t[i][1] - t[i][3];
            }
        }
    }
}

/* Y = A^T m A with A^T = [1 1 1 0; 0 1 -1 -1]; m[e][k][lane] are the 16 products. */
static void wino_output(float *out, const float *m, const wino_task *w, const mf_epilogue *ep)
{
    const mf_conv_shape *s = w->s;
    size_t hw = (size_t)s->h * s->w, estride = (size_t)w->kp * w->lanes;
    for (int k = 0; k < s->cout; k++)
        for (int l = 0; l < w->nt; l++) {
            const float *p = m + (size_t)k * w->lanes + l;
            float q[4][4], r[2][4];
            for (int e = 0; e < 16; e++)
                q[e / 4][e % 4] = p[e * estride];
            for (int j = 0; j < 4; j++)
                r[0][j] = q[0][j] + q[1][j] + q[2][j], r[1][j] = q[1][j] - q[2][j] - q[3][j];
            int oy = 2 * w->ty[l], ox = 2 * w->tx[l];
            size_t at = ((size_t)k * s->n + w->n[l]) * hw;
            for (int i = 0; i < 2 && oy + i < s->h; i++) {
                float y[2] = {r[i][0] + r[i][1] + r[i][2], r[i][1] - r[i][2] - r[i][3]};
                for (int j = 0; j < 2 && ox + j < s->w; j++) {
                    size_t idx = at + (size_t)(oy + i) * s->w + ox + j;
                    out[idx] = finish(y[j], k, ep, idx);
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
        float t[MF_MR * MF_NR];
        wino_task w = {.s = s, .tw = tw, .tpi = tpi, .panels = panels, .lanes = lanes, .kp = kp};
#pragma omp for schedule(static)
        for (long task = 0; task < tasks; task++) {
            w.t0 = (size_t)task * lanes;
            w.nt = total - w.t0 < (size_t)lanes ? (int)(total - w.t0) : lanes;
            wino_tiles(&w);
            wino_input(v, in, &w, in_a, in_b);
            for (int e = 0; e < 16; e++)
                for (int k0 = 0; k0 < kp; k0 += MF_MR)
                    for (int p = 0; p < panels; p++) {
                        mf_kernel(s->cin, wp + e * one + (size_t)k0 * s->cin,
                                  v + ((size_t)e * panels + p) * s->cin * MF_NR, t);
                        for (int r = 0; r < MF_MR; r++)
                            memcpy(m + ((size_t)e * kp + k0 + r) * lanes + p * MF_NR,
                                   t + r * MF_NR, MF_NR * sizeof(float));
                    }
            wino_output(out, m, &w, ep);
        }
    }
}
