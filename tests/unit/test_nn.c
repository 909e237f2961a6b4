/* test_nn.c - the convolution kernels against a direct double-precision convolution on
 * random data: odd map sizes (partial Winograd tiles), channel counts that are not a
 * multiple of the kernel's rows, strides, the input affine, PReLU and in-place residual. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* out (K, N, OH, OW) in CNHW, y = conv(x*a+b inside, 0 padding) + bias, prelu, + res */
static void direct(float *out, const float *in, const float *w, const mf_conv_shape *s,
                   const float *a, const float *b, const mf_epilogue *ep)
{
    int oh = mf_conv_out(s->h, s->ksize, s->stride),
        ow = mf_conv_out(s->w, s->ksize, s->stride);
    int pad = s->ksize / 2;
    for (int k = 0; k < s->cout; k++)
        for (int n = 0; n < s->n; n++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    double acc = ep->bias ? ep->bias[k] : 0;
                    for (int c = 0; c < s->cin; c++)
                        for (int ky = 0; ky < s->ksize; ky++)
                            for (int kx = 0; kx < s->ksize; kx++) {
                                int iy = y * s->stride - pad + ky,
                                    ix = x * s->stride - pad + kx;
                                if (iy < 0 || iy >= s->h || ix < 0 || ix >= s->w)
                                    continue;
                                float v = in[(((size_t)c * s->n + n) * s->h + iy) * s->w + ix];
                                if (a)
                                    v = v * a[c] + b[c];
                                acc +=
                                    (double)
                                        w[((k * s->cin + c) * s->ksize + ky) * s->ksize + kx] *
                                    v;
                            }
                    size_t idx = (((size_t)k * s->n + n) * oh + y) * ow + x;
                    if (ep->prelu && acc < 0)
                        acc *= ep->prelu[k];
                    if (ep->residual)
                        acc += ep->residual[idx];
                    out[idx] = (float)acc;
                }
}

static void run_case(int cin, int cout, int ksize, int stride, int n, int h, int winograd,
                     int affine, int prelu, int residual)
{
    unsigned seed = (unsigned)(cin * 131 + cout * 7 + h);
    mf_conv_shape s = {cin, cout, ksize, stride, n, h, h};
    int oh = mf_conv_out(h, ksize, stride);
    size_t nin = (size_t)cin * n * h * h, nout = (size_t)cout * n * oh * oh;
    size_t nw = (size_t)cout * cin * ksize * ksize;
    float *in = malloc(nin * 4), *w = malloc(nw * 4), *bias = malloc(cout * 4);
    float *slope = malloc(cout * 4), *a = malloc(cin * 4), *b = malloc(cin * 4);
    float *res = malloc(nout * 4), *want = malloc(nout * 4), *got = malloc(nout * 4);
    for (size_t i = 0; i < nin; i++)
        in[i] = frand(&seed);
    for (size_t i = 0; i < nw; i++)
        w[i] = frand(&seed) * 0.2f;
    for (int i = 0; i < cout; i++)
        bias[i] = frand(&seed), slope[i] = 0.25f + 0.1f * frand(&seed);
    for (int i = 0; i < cin; i++)
        a[i] = 1 + 0.3f * frand(&seed), b[i] = 0.2f * frand(&seed);
    for (size_t i = 0; i < nout; i++)
        res[i] = frand(&seed);
    mf_epilogue ep = {bias, prelu ? slope : NULL, residual ? res : NULL};
    direct(want, in, w, &s, affine ? a : NULL, b, &ep);

    int threads = 2;
    float *wp =
        malloc((winograd ? MF_WINO_E : 1) * mf_pack_a_size(cout, cin * ksize * ksize) * 4);
    float *scratch = malloc(mf_conv_scratch_size(&s, winograd, threads) * 4);
    if (winograd) {
        mf_winograd_weights(wp, w, cout, cin);
        if (residual) { /* in place: the output buffer holds the residual */
            memcpy(got, res, nout * 4);
            ep.residual = got;
        }
        mf_conv_winograd(got, in, wp, &s, affine ? a : NULL, affine ? b : NULL, &ep, scratch,
                         threads);
    } else {
        mf_pack_a(wp, w, cout, cin * ksize * ksize);
        mf_conv_im2col(got, in, wp, &s, &ep, scratch, threads);
    }
    double worst = 0;
    for (size_t i = 0; i < nout; i++) {
        double e = fabs(got[i] - want[i]) / (1 + fabs(want[i]));
        worst = e > worst ? e : worst;
    }
    /* im2col sums in float like any GEMM; Winograd F(4x4,3x3) scales by up to 8 in its
     * transforms, about 1e-5 relative per layer (the whole network stays ~1e-6: see
     * test_model.c) */
    cr_expect(worst < (winograd ? 1e-4 : 2e-6),
              "cin %d cout %d k%d s%d h %d wino %d: max rel err %.3g", cin, cout, ksize, stride,
              h, winograd, worst);
    free(in), free(w), free(bias), free(slope), free(a), free(b), free(res), free(want);
    free(got), free(wp), free(scratch);
}

Test(nn, winograd_matches_direct)
{
    run_case(16, 16, 3, 1, 2, 14, 1, 1, 1, 0); /* 14x14: partial last tile */
    run_case(24, 20, 3, 1, 3, 7, 1, 0, 0, 1);  /* 7x7, K not a multiple of MR, residual */
    run_case(32, 36, 3, 1, 1, 28, 1, 1, 0, 0);
    run_case(16, 8, 3, 1, 5, 5, 1, 1, 1, 1);   /* tiny maps, tasks split across images */
    run_case(64, 64, 3, 1, 16, 7, 1, 1, 1, 0); /* few tiles: output channels split */
}

Test(nn, im2col_matches_direct)
{
    run_case(3, 16, 3, 1, 2, 20, 0, 0, 1, 0);  /* stem-like */
    run_case(16, 20, 3, 2, 3, 14, 0, 0, 0, 1); /* stride 2 with residual */
    run_case(12, 24, 1, 2, 2, 15, 0, 0, 0, 0); /* 1x1 shortcut, odd size */
}

Test(nn, fc_matches_direct)
{
    unsigned seed = 7;
    int n = 5, m = 13, depth = 50;
    float in[5 * 50], w[13 * 50], bias[13], out[5 * 13];
    float ap[16 * 50], scratch[50 * MF_NR];
    for (int i = 0; i < n * depth; i++)
        in[i] = frand(&seed);
    for (int i = 0; i < m * depth; i++)
        w[i] = frand(&seed);
    for (int i = 0; i < m; i++)
        bias[i] = frand(&seed);
    cr_assert_leq(mf_pack_a_size(m, depth), sizeof ap / sizeof *ap);
    mf_pack_a(ap, w, m, depth);
    mf_fc(out, in, ap, bias, n, m, depth, scratch, 2);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < m; o++) {
            double acc = bias[o];
            for (int p = 0; p < depth; p++)
                acc += (double)in[i * depth + p] * w[o * depth + p];
            cr_expect(fabs(out[i * m + o] - acc) < 1e-4, "fc %d %d", i, o);
        }
}
