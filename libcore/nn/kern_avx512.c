/* kern_avx512.c - the AVX-512 micro-kernels: 8 rows x 32 columns in 16 zmm accumulators
 * (per depth step 2 loads of B, 8 broadcasts of A, 16 DOTs). This file is compiled with
 * AVX-512 F/BW/DQ/VL enabled (CMakeLists.txt); VNNI and BF16 instances ask for their
 * extension per function. isa.c selects them only when cpuid and the OS (XCR0) report
 * the extension, so a binary built anywhere runs everywhere. */
#include <immintrin.h>

#include "kern_tmpl.h"

#define F32_ZERO() _mm512_setzero_ps()
#define F32_LOAD(p) _mm512_loadu_ps(p)
#define F32_BCAST(p) _mm512_set1_ps(*(p))
#define F32_DOT(acc, x, b) _mm512_fmadd_ps(x, b, acc)
#define F32_STORE(c, acc, step) _mm512_storeu_ps(c, acc)
MF_GEMM_KERNEL(mf_gemm_f32_avx512, float, 8, 2, 16, __m512, __m512, __m512, F32_ZERO, F32_LOAD,
               F32_BCAST, F32_DOT, F32_STORE)

/* integer vectors as __v16si, as in kern_avx2.c (GCC's register allocation) */
#define I16_ZERO() ((__v16si)_mm512_setzero_si512())
#define I16_LOAD(p) ((__v16si)_mm512_loadu_si512((const void *)(p)))
#define I16_BCAST(p) ((__v16si)_mm512_set1_epi32((int)*(p)))
#define I16_DOT(acc, x, b) ((acc) + (__v16si)_mm512_madd_epi16((__m512i)(x), (__m512i)(b)))
#define I16_STORE(c, acc, step)                                                                \
    _mm512_storeu_ps(c, _mm512_mul_ps(_mm512_cvtepi32_ps((__m512i)(acc)), _mm512_set1_ps(step)))
MF_GEMM_KERNEL(mf_gemm_i16_avx512, uint32_t, 8, 2, 16, __v16si, __v16si, __v16si, I16_ZERO,
               I16_LOAD, I16_BCAST, I16_DOT, I16_STORE)

#if defined(__clang__) /* clang ignores GCC's target pragma */
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif
#define VNNI_DOT(acc, x, b)                                                                    \
    ((__v16si)_mm512_dpwssd_epi32((__m512i)(acc), (__m512i)(x), (__m512i)(b)))
MF_GEMM_KERNEL(mf_gemm_i16_avx512vnni, uint32_t, 8, 2, 16, __v16si, __v16si, __v16si, I16_ZERO,
               I16_LOAD, I16_BCAST, VNNI_DOT, I16_STORE)
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__) /* clang ignores GCC's target pragma */
#pragma clang attribute push(__attribute__((target("avx512bf16"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512bf16")
#endif
#define BF16_DOT(acc, x, b) _mm512_dpbf16_ps(acc, (__m512bh)(x), (__m512bh)(b))
MF_GEMM_KERNEL(mf_gemm_bf16_avx512, uint32_t, 8, 2, 16, __v16si, __v16si, __m512, F32_ZERO,
               I16_LOAD, I16_BCAST, BF16_DOT, F32_STORE)
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
