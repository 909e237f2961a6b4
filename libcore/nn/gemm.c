/* gemm.c - the register-blocked micro-kernel, weight packing, fully connected layer.
 * See nn.h for the panel layouts. */
#include "nn.h"

#include <immintrin.h>
#include <string.h>

#ifdef __AVX512F__
/* 8 x 32 outputs in 16 zmm accumulators; per depth step 2 loads of b, 8 broadcasts of
 * a and 16 FMAs. */
void mf_kernel(int depth, const float *restrict a, const float *restrict b, float *restrict c,
               size_t ldc)
{
    __m512 acc[8][2];
    for (int i = 0; i < 8; i++)
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    for (int p = 0; p < depth; p++, a += MF_MR, b += MF_NR) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        for (int i = 0; i < 8; i++) {
            __m512 x = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(x, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(x, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < 8; i++, c += ldc)
        _mm512_storeu_ps(c, acc[i][0]), _mm512_storeu_ps(c + 16, acc[i][1]);
}
#else
/* 4 x 24 outputs in 12 ymm accumulators; per depth step 3 loads of b, 4 broadcasts of a
 * and 12 FMAs, so the loop is FMA-bound while the panels stay in L1/L2. */
void mf_kernel(int depth, const float *restrict a, const float *restrict b, float *restrict c,
               size_t ldc)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
    __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    for (int p = 0; p < depth; p++, a += MF_MR, b += MF_NR) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 b2 = _mm256_loadu_ps(b + 16);
        __m256 x = _mm256_broadcast_ss(a);
        c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
        c02 = _mm256_fmadd_ps(x, b2, c02);
        x = _mm256_broadcast_ss(a + 1);
        c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
        c12 = _mm256_fmadd_ps(x, b2, c12);
        x = _mm256_broadcast_ss(a + 2);
        c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
        c22 = _mm256_fmadd_ps(x, b2, c22);
        x = _mm256_broadcast_ss(a + 3);
        c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
        c32 = _mm256_fmadd_ps(x, b2, c32);
    }
    _mm256_storeu_ps(c + 0, c00), _mm256_storeu_ps(c + 8, c01), _mm256_storeu_ps(c + 16, c02);
    c += ldc;
    _mm256_storeu_ps(c + 0, c10), _mm256_storeu_ps(c + 8, c11), _mm256_storeu_ps(c + 16, c12);
    c += ldc;
    _mm256_storeu_ps(c + 0, c20), _mm256_storeu_ps(c + 8, c21), _mm256_storeu_ps(c + 16, c22);
    c += ldc;
    _mm256_storeu_ps(c + 0, c30), _mm256_storeu_ps(c + 8, c31), _mm256_storeu_ps(c + 16, c32);
}
#endif

size_t mf_pack_a_size(int m, int depth)
{
    return mf_round_up((size_t)m, MF_MR) * (size_t)depth;
}

void mf_pack_a(float *dst, const float *a, int m, int depth)
{
    for (int i0 = 0; i0 < m; i0 += MF_MR)
        for (int p = 0; p < depth; p++)
            for (int r = 0; r < MF_MR; r++)
                *dst++ = i0 + r < m ? a[(size_t)(i0 + r) * depth + p] : 0.0f;
}

size_t mf_fc_scratch_size(int n, int depth) { return (size_t)depth * MF_NR; }

/* Images become the columns of one B panel (up to 24 at a time); threads split the
 * output rows, so each reads a disjoint part of the (large) weight matrix once. */
void mf_fc(float *out, const float *in, const float *ap, const float *bias, int n, int m,
           int depth, float *scratch, int threads)
{
    for (int n0 = 0; n0 < n; n0 += MF_NR) {
        int nc = n - n0 < MF_NR ? n - n0 : MF_NR;
        for (int p = 0; p < depth; p++)
            for (int j = 0; j < MF_NR; j++)
                scratch[(size_t)p * MF_NR + j] =
                    j < nc ? in[(size_t)(n0 + j) * depth + p] : 0.0f;
        int panels = (m + MF_MR - 1) / MF_MR;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4)
        for (int i = 0; i < panels; i++) {
            float t[MF_MR * MF_NR];
            mf_kernel(depth, ap + (size_t)i * MF_MR * depth, scratch, t, MF_NR);
            for (int r = 0; r < MF_MR && i * MF_MR + r < m; r++)
                for (int j = 0; j < nc; j++)
                    out[(size_t)(n0 + j) * m + i * MF_MR + r] =
                        t[r * MF_NR + j] + (bias ? bias[i * MF_MR + r] : 0.0f);
        }
    }
}
