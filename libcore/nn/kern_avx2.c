/* kern_avx2.c - the AVX2 micro-kernels: 4 rows x 24 columns in 12 ymm accumulators,
 * run twice per 8-row panel (the A layout is 8 rows for every kernel). Compiled at the
 * baseline ISA (x86-64-v3); the AVX-VNNI instance asks for its extension per function
 * and is only selected when cpuid reports it. */
#include <immintrin.h>

#include "kern_tmpl.h"

/* float32: vfmadd231ps */
#define F32_ZERO() _mm256_setzero_ps()
#define F32_LOAD(p) _mm256_loadu_ps(p)
#define F32_BCAST(p) _mm256_broadcast_ss(p)
#define F32_DOT(acc, x, b) _mm256_fmadd_ps(x, b, acc)
#define F32_STORE(c, acc, step) _mm256_storeu_ps(c, acc)
MF_GEMM_KERNEL(mf_gemm_f32_avx2, float, 4, 3, 8, __m256, __m256, __m256, F32_ZERO, F32_LOAD,
               F32_BCAST, F32_DOT, F32_STORE)

/* int16 pairs: vpmaddwd gives a0*b0 + a1*b1 per 32-bit lane exactly (operands within
 * +-32767), vpaddd accumulates; the caller's steps keep every sum within int32. The
 * integer vectors are GCC's __v8si rather than __m256i: with __m256i accumulators GCC
 * adds each product into a fresh register and copies it back, which makes the loop
 * bound by dispatch (llvm-mca -mcpu=znver3) and spills. */
#define I16_ZERO() ((__v8si)_mm256_setzero_si256())
#define I16_LOAD(p) ((__v8si)_mm256_loadu_si256((const __m256i *)(p)))
#define I16_BCAST(p) ((__v8si)_mm256_set1_epi32((int)*(p)))
#define I16_DOT(acc, x, b) ((acc) + (__v8si)_mm256_madd_epi16((__m256i)(x), (__m256i)(b)))
#define I16_STORE(c, acc, step)                                                                \
    _mm256_storeu_ps(c, _mm256_mul_ps(_mm256_cvtepi32_ps((__m256i)(acc)), _mm256_set1_ps(step)))
MF_GEMM_KERNEL(mf_gemm_i16_avx2, uint32_t, 4, 3, 8, __v8si, __v8si, __v8si, I16_ZERO, I16_LOAD,
               I16_BCAST, I16_DOT, I16_STORE)

/* bfloat16 pairs without AVX512_BF16: each half widened exactly to float (a bf16 is
 * the top 16 bits of a float), two FMAs, the high half first as vdpbf16ps does. Same
 * results as a native bf16 dot product up to float rounding of the sums, at less than
 * the float32 kernel's speed: it exists so that a bf16 job gives the same numbers on
 * every node, not for speed. 4 x 16, since the widening needs registers. */
#define BF_LO(v) ((__m256)((v) << 16))
#define BF_HI(v) ((__m256)((v) & (int)0xffff0000u))
#define BF16_DOT(acc, x, b)                                                                    \
    _mm256_fmadd_ps(BF_LO(x), BF_LO(b), _mm256_fmadd_ps(BF_HI(x), BF_HI(b), acc))
MF_GEMM_KERNEL(mf_gemm_bf16_avx2, uint32_t, 4, 2, 8, __v8si, __v8si, __m256, F32_ZERO, I16_LOAD,
               I16_BCAST, BF16_DOT, F32_STORE)
