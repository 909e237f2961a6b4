/* kern_tmpl.h - the one micro-kernel body behind every ISA and arithmetic (see nn.h).
 *
 * Included by the per-ISA files, each compiled for its instruction set; an instance
 * only supplies the vector operations:
 *   ELEM   type of a packed element (float, or uint32_t for a pair word)
 *   ROWS   rows per pass (MF_MR / ROWS passes cover a panel; AVX2 4, AVX-512 8)
 *   COLV   vectors per row, of W lanes: nr = COLV * W
 *   BVEC   what LOADB(p) makes of B at p (a vector, or a pointer for DOT to load)
 *   AVEC   vector of BCAST(p), the A element at p in every lane; ACC accumulator vector
 *   ZERO() ACC of zeros
 *   DOT(acc, x, b) acc + x * b (pair-wise for pair words); STORE(c, acc, step) writes
 *   W floats (step: the row's I16 scale, 1 otherwise)
 * Per depth step the kernel loads COLV vectors of B, broadcasts ROWS elements of A and
 * issues ROWS * COLV DOTs into ROWS * COLV accumulators held in registers (12 of 16 ymm
 * for AVX2 4x24, 16 of 32 zmm for AVX-512 8x32), so it is bound by the DOT rate while
 * the panels stay in L1/L2. Sharing the body means the AVX-512 instances, which this
 * project's AVX2 machines cannot run, differ from the tested AVX2 ones only in the
 * operations named above. */
#ifndef MF_KERN_TMPL_H
#define MF_KERN_TMPL_H

#include "nn.h"

#define MF_GEMM_KERNEL(NAME, ELEM, ROWS, COLV, W, BVEC, AVEC, ACC, ZERO, LOADB, BCAST, DOT,    \
                       STORE)                                                                  \
    static inline __attribute__((always_inline)) void NAME##_pass(                             \
        int depth, const ELEM *restrict a, const ELEM *restrict b, float *restrict c,          \
        size_t ldc, const float *scale)                                                        \
    {                                                                                          \
        ACC acc[ROWS][COLV];                                                                   \
        _Pragma("GCC unroll 8") for (int r = 0; r < ROWS; r++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < COLV; j++) acc[r][j] = ZERO();         \
        for (int p = 0; p < depth; p++, a += MF_MR, b += (COLV) * (W)) {                       \
            BVEC bv[COLV];                                                                     \
            _Pragma("GCC unroll 4") for (int j = 0; j < COLV; j++) bv[j] = LOADB(b + j * (W)); \
            _Pragma("GCC unroll 8") for (int r = 0; r < ROWS; r++)                             \
            {                                                                                  \
                AVEC x = BCAST(a + r);                                                         \
                _Pragma("GCC unroll 4") for (int j = 0; j < COLV; j++) acc[r][j] =             \
                    DOT(acc[r][j], x, bv[j]);                                                  \
            }                                                                                  \
        }                                                                                      \
        _Pragma("GCC unroll 8") for (int r = 0; r < ROWS; r++)                                 \
        {                                                                                      \
            float step = scale ? scale[r] : 1.0f;                                              \
            (void)step;                                                                        \
            _Pragma("GCC unroll 4") for (int j = 0; j < COLV; j++)                             \
                STORE(c + r * ldc + j * (W), acc[r][j], step);                                 \
        }                                                                                      \
    }                                                                                          \
    void NAME(int depth, const void *a, const void *b, float *c, size_t ldc,                   \
              const float *scale)                                                              \
    {                                                                                          \
        for (int r0 = 0; r0 < MF_MR; r0 += (ROWS))                                             \
            NAME##_pass(depth, (const ELEM *)a + r0, (const ELEM *)b, c + r0 * ldc, ldc,       \
                        scale ? scale + r0 : NULL);                                            \
    }

/* Every instance, by file (kern_avx2.c at the baseline ISA, kern_avx512.c for AVX-512). */
void mf_gemm_f32_avx2(int, const void *, const void *, float *, size_t, const float *);
void mf_gemm_i16_avx2(int, const void *, const void *, float *, size_t, const float *);
void mf_gemm_bf16_avx2(int, const void *, const void *, float *, size_t, const float *);
void mf_gemm_f32_avx512(int, const void *, const void *, float *, size_t, const float *);
void mf_gemm_i16_avx512(int, const void *, const void *, float *, size_t, const float *);
void mf_gemm_i16_avx512vnni(int, const void *, const void *, float *, size_t, const float *);
void mf_gemm_bf16_avx512(int, const void *, const void *, float *, size_t, const float *);

#endif
