/* nn.h - CNN kernels for the iResNet engine (internal to libcore).
 *
 * Activations are stored channel-major over the whole batch, "CNHW": x[c][n][h][w].
 * Then a convolution over a batch is one matrix product, out(K, N*H*W) = W(K, C*k*k) x
 * columns(C*k*k, N*H*W), and every output channel's rows are already in place.
 *
 * All products go through one register-blocked kernel: MR output rows x NR columns,
 * 8 x 32 in 16 AVX-512 accumulators when the build targets AVX-512 (about 1.9x the
 * AVX2 kernel's rate on the Xeon we measured), else 4 x 24 in 12 AVX2 accumulators; the
 * whole reduction runs with the accumulators in registers. Operands are packed in panels:
 *   A (weights):  [K/MR panels][depth][MR]    K padded up to a multiple of MR with zeros
 *   B (columns):  [T/NR panels][depth][NR]    T padded up to a multiple of NR with zeros
 * The packed weight layout is also the native model file's layout (mf-convert), which
 * therefore records MR.
 *
 * 3x3 stride-1 convolutions (95% of the FLOPs) use Winograd F(4x4,3x3): 36 products of
 * depth C per 4x4 outputs instead of 144, 4x fewer multiplies. Its transforms scale by
 * up to 8, so rounding errors grow over direct convolution: up to ~2e-5 relative per
 * layer (tests/unit/test_nn.c), yet the real networks' outputs stay within ~1e-6 of
 * PyTorch (tests/unit/test_model.c).
 *
 * Nothing here allocates: callers pass scratch sized with the *_size() functions. */
#ifndef MF_NN_H
#define MF_NN_H

#include <stddef.h>

#ifdef __AVX512F__
#define MF_MR 8  /* rows of the micro-kernel (output channels) */
#define MF_NR 32 /* columns of the micro-kernel (pixels / tiles / images) */
#else
#define MF_MR 4
#define MF_NR 24
#endif
#define MF_WINO_E 36 /* elements of a transformed Winograd F(4x4,3x3) tile (6x6) */

static inline size_t mf_round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* What happens to a finished output value: y = acc + bias[k]; then y = prelu(y) with
 * slope[k], or y += residual (same index as the output). Any pointer may be NULL. */
typedef struct mf_epilogue {
    const float *bias;     /* (K) */
    const float *prelu;    /* (K) slopes */
    const float *residual; /* laid out like the output */
} mf_epilogue;

/* c (MF_MR rows of MF_NR, row stride ldc) = sum over depth of a-panel column x b-panel
 * row. */
void mf_kernel(int depth, const float *a, const float *b, float *c, size_t ldc);

/* Pack a row-major (m, depth) matrix into A panels; dst holds mf_pack_a_size() floats. */
size_t mf_pack_a_size(int m, int depth);
void mf_pack_a(float *dst, const float *a, int m, int depth);

/* Winograd weights: g (K, C, 3, 3) -> 36 A-packed matrices (K, C), one per element of
 * the 6x6 transformed tile: dst holds MF_WINO_E * mf_pack_a_size(K, C) floats. */
void mf_winograd_weights(float *dst, const float *g, int k, int c);

/* One convolution layer over a batch in CNHW layout. */
typedef struct mf_conv_shape {
    int cin, cout, ksize, stride; /* ksize 1 or 3 (pad = ksize/2) */
    int n, h, w;                  /* batch and input size */
} mf_conv_shape;

static inline int mf_conv_out(int in, int ksize, int stride)
{
    return (in + 2 * (ksize / 2) - ksize) / stride + 1;
}

/* Floats of scratch needed by mf_conv_im2col / mf_conv_winograd for this layer. */
size_t mf_conv_scratch_size(const mf_conv_shape *s, int winograd, int threads);

/* out = conv(in) with packed weights `wp`; im2col + packed GEMM (any ksize/stride). */
void mf_conv_im2col(float *out, const float *in, const float *wp, const mf_conv_shape *s,
                    const mf_epilogue *ep, float *scratch, int threads);

/* Same for 3x3 stride 1 with Winograd weights; `in_a`/`in_b` (C, may be NULL) apply
 * x*a+b to the input inside the zero padding (a BatchNorm before a padded conv). `out`
 * may equal ep->residual (each output is read then written once). */
void mf_conv_winograd(float *out, const float *in, const float *wp, const mf_conv_shape *s,
                      const float *in_a, const float *in_b, const mf_epilogue *ep,
                      float *scratch, int threads);

/* out (n, m) = in (n, depth) x A^T + bias, A packed (m, depth); for fully connected
 * layers over a small batch (n <= MF_NR per call is fastest). */
size_t mf_fc_scratch_size(int n, int depth);
void mf_fc(float *out, const float *in, const float *ap, const float *bias, int n, int m,
           int depth, float *scratch, int threads);

#endif
