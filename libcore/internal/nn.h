/* nn.h - CNN kernels for the iResNet engine (internal to libcore).
 *
 * Activations are stored channel-major over the whole batch, "CNHW": x[c][n][h][w].
 * Then a convolution over a batch is one matrix product, out(K, N*H*W) = W(K, C*k*k) x
 * columns(C*k*k, N*H*W), and every output channel's rows are already in place.
 *
 * All products go through register-blocked micro-kernels: MF_MR (8) output rows x nr
 * columns with the whole reduction in registers. Operands are packed in panels:
 *   A (weights):  [K/MF_MR panels][depth][MF_MR]  K padded up to a multiple of 8 with zeros
 *   B (columns):  [T/nr panels][depth][nr]        T padded up to a multiple of nr
 * The A layout is the same for every kernel (a 4-row AVX2 kernel walks it twice with a
 * stride of 8), so packed weights and the native model file do not depend on the CPU.
 * nr is the kernel's (24 for AVX2, 32 for AVX-512) and only shapes per-task scratch.
 *
 * Three arithmetics (mf_arith): float32; int16 pairs summed in int32 (the int8 path:
 * int8-quantised activations, see mf_conv_op); bfloat16 pairs summed in float32. The
 * pair kernels take operands two depth steps per 32-bit word (element 2p in the low
 * half, 2p+1 in the high half), the layout of vpmaddwd, vpdpwssd and vdpbf16ps.
 * Which kernels run is decided at run time from cpuid (isa.c): one build serves every
 * x86-64 with AVX2.
 *
 * 3x3 stride-1 convolutions (95% of the FLOPs) use Winograd F(4x4,3x3): 36 products of
 * depth C per 4x4 outputs instead of 144, 4x fewer multiplies. Its transforms scale by
 * up to 8, so rounding errors grow over direct convolution: up to ~2e-5 relative per
 * layer in float32 (tests/unit/test_nn.c), yet the real networks' outputs stay within
 * ~1e-6 of PyTorch (tests/unit/test_model.c).
 *
 * Nothing here allocates: callers pass scratch sized with the *_size() functions. */
#ifndef MF_NN_H
#define MF_NN_H

#include <stddef.h>
#include <stdint.h>

#define MF_MR 8      /* rows of a packed weight panel (output channels) */
#define MF_NR_MAX 32 /* columns of the widest kernel (pixels / tiles / images) */
#define MF_WINO_E 36 /* elements of a transformed Winograd F(4x4,3x3) tile (6x6) */

static inline size_t mf_round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

/* ---- micro-kernels and their run-time selection ------------------------------------ */

typedef enum mf_arith {
    MF_ARITH_F32,  /* float operands, float sums */
    MF_ARITH_I16,  /* int16 pairs, exact int32 sums, scaled to float per row on output */
    MF_ARITH_BF16, /* bfloat16 pairs, float sums */
} mf_arith;

/* c (MF_MR rows of nr floats, row stride ldc) = A panel x B panel over `depth` steps.
 * F32: a [depth][MF_MR] floats, b [depth][nr] floats. I16/BF16: depth counts pairs, a
 * [depth][MF_MR] and b [depth][nr] 32-bit pair words; I16 writes c = sum * scale[row]
 * (scale: MF_MR floats), the others ignore scale. */
typedef void (*mf_gemm_fn)(int depth, const void *a, const void *b, float *c, size_t ldc,
                           const float *scale);

typedef struct mf_gemm {
    mf_gemm_fn run;
    int nr; /* columns per call */
    mf_arith arith;
    int emulated;     /* 1: the arithmetic is reproduced with wider instructions (no gain) */
    const char *name; /* "avx2 4x24 vpmaddwd", for --info and --verbose */
} mf_gemm;

/* The kernel for `arith` on this CPU, capped by $MF_ISA (see mf_isa_set_cap); chosen
 * at the first call. Never NULL. */
const mf_gemm *mf_gemm_select(mf_arith arith);

/* Cap the dispatch: "generic" (portable C kernels with the AVX-512 geometry, for
 * tests), "avx2", "avx512", "avx512vnni" (VNNI and BF16), or "native"/NULL for
 * everything the CPU has. Levels above the CPU's give what the CPU has. Returns 0,
 * or -1 for an unknown name. Not thread-safe: call before creating runners (a runner
 * keeps the kernels it was created with). $MF_ISA sets the initial cap. */
int mf_isa_set_cap(const char *level);

/* "cpu: <features found>" and the kernel each arithmetic uses, one line each. */
void mf_isa_describe(char *buf, size_t len);

/* ---- packing ---------------------------------------------------------------------- */

/* Pack a row-major (m, depth) float matrix into A panels; dst holds mf_pack_a_size(). */
size_t mf_pack_a_size(int m, int depth);
void mf_pack_a(float *dst, const float *a, int m, int depth);
/* Same panels for a kernel of `mr_dst` rows from panels of `mr_src` rows (old files). */
void mf_repack_a(float *dst, int mr_dst, const float *src, int mr_src, int m, int depth);
size_t mf_pack_a_size_mr(int m, int depth, int mr);

/* Pair panels from float A panels (m rows, depth) for I16 or BF16: 32-bit words
 * [m/MF_MR][ceil(depth/2)][MF_MR]. Before converting, weight (row, d) is multiplied by
 * col_scale[d / col_div] when col_scale is given (the per-channel activation step of
 * the int8 path, folded into the weights). I16 also picks a step per row, written to
 * row_step (m rounded up to MF_MR floats): the largest that keeps every int32 sum
 * exact for inputs within +-qin (see conv.c), at most max|w|/32767. */
size_t mf_pack_pairs_size(int m, int depth); /* in 32-bit words */
void mf_pack_pairs(uint32_t *dst, float *row_step, const float *a, int m, int depth,
                   const float *col_scale, int col_div, mf_arith arith, float qin);

/* B pairs from a float B panel [depth][nr] -> [ceil(depth/2)][nr] words. I16: values
 * are rounded to integers and clamped to +-qmax (<= 32767); BF16: rounded to nearest
 * even. */
void mf_pack_b_pairs(uint32_t *dst, const float *src, int depth, int nr, mf_arith arith,
                     float qmax);

/* bfloat16 rounding (nearest even) of a float, kept as a float. */
float mf_bf16_round(float x);

/* Winograd weights: g (K, C, 3, 3) -> 36 A-packed matrices (K, C), one per element of
 * the 6x6 transformed tile: dst holds MF_WINO_E * mf_pack_a_size(K, C) floats. */
void mf_winograd_weights(float *dst, const float *g, int k, int c);
/* The inverse, up to float rounding: direct weights (K, C*9) A-packed for im2col, from
 * Winograd weights (a layer that runs direct in another arithmetic). */
void mf_winograd_to_direct(float *dst, const float *u, int k, int c);

/* ---- convolutions ------------------------------------------------------------------ */

/* What happens to a finished output value: y = acc + bias[k]; then y = prelu(y) with
 * slope[k], or y += residual (same index as the output). Any pointer may be NULL. */
typedef struct mf_epilogue {
    const float *bias;     /* (K) */
    const float *prelu;    /* (K) slopes */
    const float *residual; /* laid out like the output */
} mf_epilogue;

/* One convolution layer over a batch in CNHW layout. */
typedef struct mf_conv_shape {
    int cin, cout, ksize, stride; /* ksize 1 or 3 (pad = ksize/2) */
    int n, h, w;                  /* batch and input size */
} mf_conv_shape;

static inline int mf_conv_out(int in, int ksize, int stride)
{
    return (in + 2 * (ksize / 2) - ksize) / stride + 1;
}

/* How a layer computes: the kernel, its packed weights, and what is done to inputs as
 * they are packed. x*in_a[c] + in_b[c] (a BatchNorm before a zero-padded conv) is
 * applied inside the padding; with qlo/qhi the result is then rounded to an integer
 * and clamped to [qlo[c], qhi[c]] (int8 activations: in_a, in_b include 1/step of
 * channel c; zero stays exactly zero, so the padding needs no zero point). */
typedef struct mf_conv_op {
    const mf_gemm *g;
    int winograd;             /* 3x3 stride 1 through mf_conv_winograd, else im2col */
    const void *w;            /* A panels: floats (F32) or pair words; Winograd: 36 of them */
    const float *wstep;       /* I16: per row (im2col) or [36][K rounded to MF_MR] steps */
    const float *in_a, *in_b; /* (C) or NULL */
    const float *qlo, *qhi;   /* (C) integer bounds of the quantised input, or NULL */
} mf_conv_op;

/* A low-precision op for a conv with float weights `wf` (its A panels; 36 of them for
 * Winograd), carved from `mem` (mf_conv_lowp_bytes). g is an I16 or BF16 kernel. I16
 * (int8 activations): what the conv reads, x*in_a+in_b, is rounded to one of `levels`
 * multiples of a step over lo[c] .. hi[c] (the calibrated range of channel c,
 * lo <= 0 <= hi, zero exact; 255 levels = 8 bits, 256 for the stem's u8 pixels);
 * steps are folded into the weights and the input affine. in_a/in_b may be NULL. */
size_t mf_conv_lowp_bytes(const mf_conv_shape *s, int winograd);
void mf_conv_lowp_prepare(mf_conv_op *op, void *mem, const mf_gemm *g, const float *wf,
                          const mf_conv_shape *s, int winograd, const float *in_a,
                          const float *in_b, const float *lo, const float *hi, int levels);

/* The op of a float32 layer with packed weights w (Winograd's when winograd). */
mf_conv_op mf_conv_op_f32(const mf_gemm *g, const float *w, int winograd, const float *in_a,
                          const float *in_b);

/* Bytes of scratch needed by mf_conv_im2col / mf_conv_winograd for this layer. */
size_t mf_conv_scratch_size(const mf_conv_shape *s, int winograd, const mf_gemm *g,
                            int threads);

/* Run op's convolution (Winograd or im2col as op->winograd says). */
void mf_conv_run(float *out, const float *in, const mf_conv_op *op, const mf_conv_shape *s,
                 const mf_epilogue *ep, void *scratch, int threads);

/* out = conv(in); im2col + packed GEMM (any ksize/stride). */
void mf_conv_im2col(float *out, const float *in, const mf_conv_op *op, const mf_conv_shape *s,
                    const mf_epilogue *ep, void *scratch, int threads);

/* Same for 3x3 stride 1 with Winograd weights. `out` may equal ep->residual (each
 * output is read then written once). */
void mf_conv_winograd(float *out, const float *in, const mf_conv_op *op, const mf_conv_shape *s,
                      const mf_epilogue *ep, void *scratch, int threads);

/* out (n, m) = in (n, depth) x A^T + bias, A packed (m, depth), float32 kernel g; for
 * fully connected layers over a small batch. */
size_t mf_fc_scratch_size(int n, int depth, const mf_gemm *g); /* bytes */
void mf_fc(float *out, const float *in, const float *ap, const float *bias, int n, int m,
           int depth, const mf_gemm *g, void *scratch, int threads);

#endif
