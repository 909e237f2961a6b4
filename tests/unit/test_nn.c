/* test_nn.c - the convolution kernels against a direct double-precision convolution on
 * random data: odd map sizes (partial Winograd tiles), channel counts that are not a
 * multiple of the kernel's rows, strides, the input affine, PReLU and in-place residual;
 * for every arithmetic (fp32, int8 activations with int16 weights, bf16) and every
 * kernel this CPU can run (each dispatch level in turn: on an AVX-512 machine the
 * AVX-512 kernels are tested too, on an AVX2 machine the portable C kernels stand in
 * for the 32-column geometry). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

static float frand(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return ((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

/* int8 quantisation of channel c as the engine derives it from the range [lo, hi]:
 * 255 levels, step (hi - lo)/254, zero exact */
static float quantise(float x, float a, float b, float lo, float hi)
{
    float step = (hi - lo) / 254, qlo = rintf(lo / step), qhi = qlo + 254;
    float q = rintf(fmaf(x, a / step, b / step)); /* as the engine computes it (fused) */
    return (q > qhi ? qhi : q < qlo ? qlo : q) * step;
}

/* out (K, N, OH, OW) in CNHW, y = conv(q(x*a+b) inside, 0 padding) + bias, prelu, + res;
 * q quantises to int8 over [lo[c], hi[c]] when lo is given (what the int8 path computes
 * exactly, up to its weights' rounding). */
static void direct(float *out, const float *in, const float *w, const mf_conv_shape *s,
                   const float *a, const float *b, const float *lo, const float *hi,
                   const mf_epilogue *ep)
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
                                float x = in[(((size_t)c * s->n + n) * s->h + iy) * s->w + ix];
                                double v = a ? (double)x * a[c] + b[c] : x;
                                if (lo)
                                    v = quantise(x, a ? a[c] : 1, b ? b[c] : 0, lo[c], hi[c]);
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

typedef struct layer {
    int cin, cout, ksize, stride, n, h, winograd, affine, prelu, residual;
} layer;

/* Run one layer with the selected kernel of `arith`; returns the worst error relative to
 * 1 + |expected|, and the output in *got (caller frees). */
static double run_case(const layer *L, mf_arith arith, float **got_out)
{
    unsigned seed = (unsigned)(L->cin * 131 + L->cout * 7 + L->h);
    mf_conv_shape s = {L->cin, L->cout, L->ksize, L->stride, L->n, L->h, L->h};
    int oh = mf_conv_out(L->h, L->ksize, L->stride), threads = 2;
    size_t nin = (size_t)L->cin * L->n * L->h * L->h, nout = (size_t)L->cout * L->n * oh * oh;
    size_t nw = (size_t)L->cout * L->cin * L->ksize * L->ksize;
    float *in = malloc(nin * 4), *w = malloc(nw * 4), *bias = malloc(L->cout * 4);
    float *slope = malloc(L->cout * 4), *a = malloc(L->cin * 4), *b = malloc(L->cin * 4);
    float *lo = malloc(L->cin * 4), *hi = malloc(L->cin * 4);
    float *res = malloc(nout * 4), *want = malloc(nout * 4), *got = malloc(nout * 4);
    for (size_t i = 0; i < nin; i++)
        in[i] = frand(&seed);
    for (size_t i = 0; i < nw; i++)
        w[i] = frand(&seed) * 0.2f;
    for (int i = 0; i < L->cout; i++)
        bias[i] = frand(&seed), slope[i] = 0.25f + 0.1f * frand(&seed);
    for (int i = 0; i < L->cin; i++) /* asymmetric ranges; some inputs get clamped */
        a[i] = 1 + 0.3f * frand(&seed), b[i] = 0.2f * frand(&seed),
        lo[i] = -0.4f + 0.3f * frand(&seed), hi[i] = 1.1f + 0.3f * frand(&seed);
    for (size_t i = 0; i < nout; i++)
        res[i] = frand(&seed);
    const float *ia = L->affine ? a : NULL, *ib = L->affine ? b : NULL;
    mf_epilogue ep = {bias, L->prelu ? slope : NULL, L->residual ? res : NULL};
    int i16 = arith == MF_ARITH_I16;
    direct(want, in, w, &s, ia, ib, i16 ? lo : NULL, hi, &ep);

    const mf_gemm *g = mf_gemm_select(arith), *gf = mf_gemm_select(MF_ARITH_F32);
    int depth = L->cin * L->ksize * L->ksize;
    float *wp = malloc((L->winograd ? MF_WINO_E : 1) * mf_pack_a_size(L->cout, depth) * 4);
    void *scratch = malloc(mf_conv_scratch_size(&s, 1, g, threads) +
                           mf_conv_scratch_size(&s, 0, g, threads));
    void *lowp = malloc(mf_conv_lowp_bytes(&s, L->winograd && arith == MF_ARITH_I16));
    if (L->winograd)
        mf_winograd_weights(wp, w, L->cout, L->cin);
    else
        mf_pack_a(wp, w, L->cout, depth);
    mf_conv_op op = mf_conv_op_f32(gf, wp, L->winograd, ia, ib);
    if (arith == MF_ARITH_BF16 && L->winograd) { /* bf16 runs direct (see runner.c) */
        float *direct = malloc(mf_pack_a_size(L->cout, depth) * 4);
        mf_winograd_to_direct(direct, wp, L->cout, L->cin);
        mf_conv_lowp_prepare(&op, lowp, g, direct, &s, 0, ia, ib, NULL, NULL, 0);
        free(direct);
    } else if (arith != MF_ARITH_F32) {
        mf_conv_lowp_prepare(&op, lowp, g, wp, &s, L->winograd, ia, ib, lo, hi, 255);
    }
    if (L->residual) { /* in place: the output buffer holds the residual */
        memcpy(got, res, nout * 4);
        ep.residual = got;
    }
    mf_conv_run(got, in, &op, &s, &ep, scratch, threads);
    double worst = 0;
    for (size_t i = 0; i < nout; i++) {
        double e = fabs(got[i] - want[i]) / (1 + fabs(want[i]));
        worst = e > worst ? e : worst;
    }
    free(in), free(w), free(bias), free(slope), free(a), free(b), free(lo), free(hi), free(res);
    free(want), free(wp), free(scratch), free(lowp);
    *got_out = got;
    return worst;
}

static const layer layers[] = {
    {16, 16, 3, 1, 2, 14, 1, 1, 1, 0}, /* 14x14: partial last tile */
    {24, 20, 3, 1, 3, 7, 1, 0, 0, 1},  /* 7x7, K not a multiple of MR, residual */
    {32, 36, 3, 1, 1, 28, 1, 1, 0, 0}, /* */
    {16, 8, 3, 1, 5, 5, 1, 1, 1, 1},   /* tiny maps, tasks split across images */
    {64, 64, 3, 1, 16, 7, 1, 1, 1, 0}, /* few tiles: output channels split */
    {3, 16, 3, 1, 2, 20, 0, 0, 1, 0},  /* stem-like, odd depth (27) */
    {16, 20, 3, 2, 3, 14, 0, 1, 0, 1}, /* stride 2 with input affine and residual */
    {12, 24, 1, 2, 2, 15, 0, 0, 0, 0}, /* 1x1 shortcut, odd size */
    {17, 16, 3, 1, 2, 9, 1, 1, 0, 0},  /* odd channel count: a half-empty pair */
};
#define NLAYERS (sizeof layers / sizeof layers[0])

/* Dispatch levels whose kernel for `arith` differs from every earlier level's. */
static int distinct_levels(mf_arith arith, const char **out)
{
    static const char *all[] = {"generic", "avx2", "avx512", "avx512vnni"};
    const mf_gemm *seen[8];
    int n = 0;
    for (int i = 0; i < 4; i++) {
        mf_isa_set_cap(all[i]);
        const mf_gemm *g = mf_gemm_select(arith);
        int dup = 0;
        for (int j = 0; j < n; j++)
            dup |= seen[j] == g;
        if (!dup)
            seen[n] = g, out[n++] = all[i];
    }
    mf_isa_set_cap(NULL);
    return n;
}

/* Tolerances relative to 1 + |y|: im2col float sums like any GEMM; Winograd F(4x4,3x3)
 * scales by up to 8 in its transforms (~1e-5 per layer, the whole network stays ~1e-6:
 * test_model.c); int16 weights carry 11-15 bits; bfloat16 operands 8 bits. */
static double tolerance(mf_arith arith, int winograd)
{
    switch (arith) {
    case MF_ARITH_F32: return winograd ? 1e-4 : 2e-6;
    case MF_ARITH_I16: return winograd ? 2e-2 : 5e-4;
    case MF_ARITH_BF16: return winograd ? 5e-2 : 2e-2;
    }
    return 0;
}

static void check_arith(mf_arith arith)
{
    const char *levels[8];
    int nl = distinct_levels(arith, levels);
    float *first[NLAYERS] = {0};
    for (int l = 0; l < nl; l++) {
        mf_isa_set_cap(levels[l]);
        const mf_gemm *g = mf_gemm_select(arith);
        double worst_all = 0;
        for (size_t i = 0; i < NLAYERS; i++) {
            const layer *L = &layers[i];
            float *got;
            double worst = run_case(L, arith, &got);
            worst_all = worst > worst_all ? worst : worst_all;
            cr_expect(worst < tolerance(arith, L->winograd),
                      "%s: cin %d cout %d k%d s%d h %d wino %d: max rel err %.3g", g->name,
                      L->cin, L->cout, L->ksize, L->stride, L->h, L->winograd, worst);
            size_t nout = (size_t)L->cout * L->n * mf_conv_out(L->h, L->ksize, L->stride) *
                          mf_conv_out(L->h, L->ksize, L->stride);
            if (!first[i])
                first[i] = got;
            else if (arith == MF_ARITH_I16) /* exact integer sums: same bits everywhere */
                cr_expect_arr_eq(got, first[i], nout * 4, "%s differs from %s, layer %zu",
                                 g->name, levels[0], i);
            if (first[i] != got)
                free(got);
        }
        fprintf(stderr, "nn: %-40s worst rel err %.2e\n", g->name, worst_all);
    }
    for (size_t i = 0; i < NLAYERS; i++)
        free(first[i]);
    mf_isa_set_cap(NULL);
}

Test(nn, fp32_convolutions_match_direct) { check_arith(MF_ARITH_F32); }
Test(nn, int8_convolutions_match_quantised_direct) { check_arith(MF_ARITH_I16); }
Test(nn, bf16_convolutions_match_direct) { check_arith(MF_ARITH_BF16); }

/* Worst case for the int32 sums: every input at the clamp with the sign of its weight,
 * in the widest layer (512 channels): the per-row steps must keep the sums exact. */
Test(nn, int8_sums_never_overflow)
{
    mf_conv_shape s = {512, 8, 3, 1, 1, 8, 8};
    size_t nw = (size_t)8 * 512 * 9, nin = (size_t)512 * 64;
    float *w = malloc(nw * 4), *in = malloc(nin * 4), *lo = malloc(512 * 4),
          *hi = malloc(512 * 4);
    float *out = malloc(8 * 64 * 4), *want = malloc(8 * 64 * 4);
    float *wp = malloc(MF_WINO_E * mf_pack_a_size(8, 512) * 4);
    unsigned seed = 3;
    for (size_t i = 0; i < nw; i++)
        w[i] = 0.5f + 0.5f * fabsf(frand(&seed));
    for (size_t i = 0; i < nin; i++)
        in[i] = 1000; /* far beyond the range: clamped to +127 steps */
    for (int c = 0; c < 512; c++)
        lo[c] = -1, hi[c] = 1;
    mf_epilogue ep = {0};
    direct(want, in, w, &s, NULL, NULL, lo, hi, &ep);
    mf_winograd_weights(wp, w, 8, 512);
    const mf_gemm *g = mf_gemm_select(MF_ARITH_I16);
    void *lowp = malloc(mf_conv_lowp_bytes(&s, 1)), *scratch;
    scratch = malloc(mf_conv_scratch_size(&s, 1, g, 1));
    mf_conv_op op;
    mf_conv_lowp_prepare(&op, lowp, g, wp, &s, 1, NULL, NULL, lo, hi, 255);
    mf_conv_winograd(out, in, &op, &s, &ep, scratch, 1);
    for (int i = 0; i < 8 * 64; i++)
        cr_expect(fabs(out[i] - want[i]) <= 2e-3 * fabs(want[i]), "%d: %g vs %g", i, out[i],
                  want[i]);
    free(w), free(in), free(lo), free(hi), free(out), free(want), free(wp), free(lowp);
    free(scratch);
}

/* Direct weights recovered from Winograd ones (bf16 runs 3x3 layers direct). */
Test(nn, winograd_weights_invert)
{
    int k = 12, c = 5;
    unsigned seed = 11;
    float g[12 * 5 * 9], direct[16 * 45], want[16 * 45];
    float *u = malloc(MF_WINO_E * mf_pack_a_size(k, c) * 4);
    for (int i = 0; i < k * c * 9; i++)
        g[i] = frand(&seed);
    mf_winograd_weights(u, g, k, c);
    mf_winograd_to_direct(direct, u, k, c);
    mf_pack_a(want, g, k, c * 9);
    for (size_t i = 0; i < mf_pack_a_size(k, c * 9); i++)
        cr_expect(fabsf(direct[i] - want[i]) < 1e-5f, "%zu: %g vs %g", i, direct[i], want[i]);
    free(u);
}

Test(nn, bf16_rounds_to_nearest_even)
{
    cr_expect_eq(mf_bf16_round(1.0f), 1.0f);
    cr_expect_eq(mf_bf16_round(1.0f + 0x1p-8f), 1.0f);                     /* tie: even stays */
    cr_expect_eq(mf_bf16_round(1.0f + 0x1p-7f + 0x1p-8f), 1.0f + 0x1p-6f); /* tie: up */
    cr_expect_eq(mf_bf16_round(1.0f + 0x1p-8f + 0x1p-12f), 1.0f + 0x1p-7f);
    cr_expect_eq(mf_bf16_round(-3.0f), -3.0f);
    float src[2 * 8] = {1.0f + 0x1p-8f,
                        1.0f + 0x1p-7f + 0x1p-8f,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0,
                        -2.5f,
                        0x1p-130f,
                        0,
                        0,
                        0,
                        0,
                        0,
                        0};
    uint32_t words[8];
    mf_pack_b_pairs(words, src, 2, 8, MF_ARITH_BF16, 0);
    cr_expect_eq(words[0], 0xc0203f80u, "%08x", words[0]); /* lo 1.0, hi -2.5 */
    cr_expect_eq(words[1], 0x00083f82u, "%08x", words[1]); /* tie up; a denormal kept */
}

Test(nn, fc_matches_direct)
{
    unsigned seed = 7;
    int n = 5, m = 13, depth = 50;
    float in[5 * 50], w[13 * 50], bias[13], out[5 * 13];
    float ap[16 * 50], scratch[50 * MF_NR_MAX];
    for (int i = 0; i < n * depth; i++)
        in[i] = frand(&seed);
    for (int i = 0; i < m * depth; i++)
        w[i] = frand(&seed);
    for (int i = 0; i < m; i++)
        bias[i] = frand(&seed);
    cr_assert_leq(mf_pack_a_size(m, depth), sizeof ap / sizeof *ap);
    mf_pack_a(ap, w, m, depth);
    const char *levels[8];
    int nl = distinct_levels(MF_ARITH_F32, levels);
    for (int l = 0; l < nl; l++) {
        mf_isa_set_cap(levels[l]);
        const mf_gemm *g = mf_gemm_select(MF_ARITH_F32);
        cr_assert_leq(mf_fc_scratch_size(n, depth, g), sizeof scratch);
        mf_fc(out, in, ap, bias, n, m, depth, g, scratch, 2);
        for (int i = 0; i < n; i++)
            for (int o = 0; o < m; o++) {
                double acc = bias[o];
                for (int p = 0; p < depth; p++)
                    acc += (double)in[i * depth + p] * w[o * depth + p];
                cr_expect(fabs(out[i * m + o] - acc) < 1e-4, "%s: fc %d %d", g->name, i, o);
            }
    }
    mf_isa_set_cap(NULL);
}

Test(nn, dispatch_describes_itself)
{
    char buf[1024];
    mf_isa_describe(buf, sizeof buf);
    fprintf(stderr, "%s\n", buf);
    cr_expect(strstr(buf, "cpu: ") && strstr(buf, "fp32 kernel: ") &&
              strstr(buf, "int8 kernel: "));
    cr_expect_eq(mf_isa_set_cap("avx9000"), -1);
    cr_expect_eq(mf_isa_set_cap("avx2"), 0);
    cr_expect_eq(mf_gemm_select(MF_ARITH_F32)->nr, 24);
    cr_expect_eq(mf_isa_set_cap("generic"), 0);
    cr_expect_eq(mf_gemm_select(MF_ARITH_I16)->nr, 32);
    mf_isa_set_cap(NULL);
}
