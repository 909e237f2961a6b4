/* gemm.c - panel packing for every arithmetic, the portable C kernels, and the fully
 * connected layer. See nn.h for the layouts; the SIMD kernels are in kern_*.c. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "nn.h"

/* ---- portable kernels: the AVX-512 geometry (8 x 32) in plain C, so that the code
 * around the kernels is exercised with 32 columns on machines without AVX-512 ------- */

#define GNR 32

void mf_gemm_f32_generic(int depth, const void *av, const void *bv, float *c, size_t ldc,
                         const float *scale)
{
    const float *a = av, *b = bv;
    float acc[MF_MR][GNR] = {{0}};
    for (int p = 0; p < depth; p++, a += MF_MR, b += GNR)
        for (int r = 0; r < MF_MR; r++)
            for (int j = 0; j < GNR; j++)
                acc[r][j] += a[r] * b[j];
    for (int r = 0; r < MF_MR; r++)
        memcpy(c + r * ldc, acc[r], sizeof acc[r]);
}

static inline int32_t lo16(uint32_t w) { return (int16_t)(w & 0xffff); }
static inline int32_t hi16(uint32_t w) { return (int16_t)(w >> 16); }

void mf_gemm_i16_generic(int depth, const void *av, const void *bv, float *c, size_t ldc,
                         const float *scale)
{
    const uint32_t *a = av, *b = bv;
    uint32_t acc[MF_MR][GNR] = {{0}}; /* unsigned: wraps like vpaddd */
    for (int p = 0; p < depth; p++, a += MF_MR, b += GNR)
        for (int r = 0; r < MF_MR; r++)
            for (int j = 0; j < GNR; j++)
                acc[r][j] += (uint32_t)(lo16(a[r]) * lo16(b[j]) + hi16(a[r]) * hi16(b[j]));
    for (int r = 0; r < MF_MR; r++)
        for (int j = 0; j < GNR; j++)
            c[r * ldc + j] = (float)(int32_t)acc[r][j] * scale[r];
}

static inline float bf16_lo(uint32_t w)
{
    uint32_t u = w << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float bf16_hi(uint32_t w) { return bf16_lo(w >> 16); }

void mf_gemm_bf16_generic(int depth, const void *av, const void *bv, float *c, size_t ldc,
                          const float *scale)
{
    const uint32_t *a = av, *b = bv;
    float acc[MF_MR][GNR] = {{0}};
    for (int p = 0; p < depth; p++, a += MF_MR, b += GNR)
        for (int r = 0; r < MF_MR; r++)
            for (int j = 0; j < GNR; j++) {
                acc[r][j] += bf16_hi(a[r]) * bf16_hi(b[j]);
                acc[r][j] += bf16_lo(a[r]) * bf16_lo(b[j]);
            }
    for (int r = 0; r < MF_MR; r++)
        memcpy(c + r * ldc, acc[r], sizeof acc[r]);
}

/* ---- float panels ------------------------------------------------------------------ */

size_t mf_pack_a_size_mr(int m, int depth, int mr)
{
    return mf_round_up((size_t)m, mr) * (size_t)depth;
}

size_t mf_pack_a_size(int m, int depth) { return mf_pack_a_size_mr(m, depth, MF_MR); }

void mf_pack_a(float *dst, const float *a, int m, int depth)
{
    for (int i0 = 0; i0 < m; i0 += MF_MR)
        for (int p = 0; p < depth; p++)
            for (int r = 0; r < MF_MR; r++)
                *dst++ = i0 + r < m ? a[(size_t)(i0 + r) * depth + p] : 0.0f;
}

void mf_repack_a(float *dst, int mr_dst, const float *src, int mr_src, int m, int depth)
{
    size_t rows = mf_round_up((size_t)m, mr_dst);
    for (size_t i = 0; i < rows; i++)
        for (int p = 0; p < depth; p++)
            dst[(i / mr_dst * depth + p) * mr_dst + i % mr_dst] =
                i < (size_t)m ? src[(i / mr_src * depth + p) * mr_src + i % mr_src] : 0.0f;
}

/* ---- pair panels ------------------------------------------------------------------- */

float mf_bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) /* finite: round to nearest even */
        u += 0x7fffu + (u >> 16 & 1);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static uint32_t bf16_bits(float x)
{
    uint32_t u;
    x = mf_bf16_round(x);
    memcpy(&u, &x, 4);
    return u >> 16;
}

size_t mf_pack_pairs_size(int m, int depth)
{
    return mf_round_up((size_t)m, MF_MR) * (((size_t)depth + 1) / 2);
}

/* The I16 step of one row. Every output is sum_d wq_d x_d with |x_d| <= qin and
 * |wq_d| <= |w_d|/step + 1/2, so |sum| <= (l1/step + depth/2) qin; keeping that below
 * 2^31 makes the int32 accumulation exact for any input, however unusual. */
static float row_step(double maxabs, double l1, int depth, float qin)
{
    if (maxabs == 0)
        return 1.0f;
    double budget = 2147483647.0 / qin - depth / 2.0 - 1.0;
    double step = maxabs / 32767.0, by_sum = l1 / budget;
    return (float)(by_sum > step ? by_sum : step) * (1 + 1e-6f);
}

void mf_pack_pairs(uint32_t *dst, float *steps, const float *a, int m, int depth,
                   const float *col_scale, int col_div, mf_arith arith, float qin)
{
    int pairs = (depth + 1) / 2;
    for (int i0 = 0; i0 < m; i0 += MF_MR, a += (size_t)MF_MR * depth) {
        uint32_t *panel = dst + (size_t)(i0 / MF_MR) * pairs * MF_MR;
        for (int r = 0; r < MF_MR; r++) {
            double maxabs = 0, l1 = 0;
            for (int d = 0; d < depth; d++) {
                double w =
                    (double)a[(size_t)d * MF_MR + r] * (col_scale ? col_scale[d / col_div] : 1);
                maxabs = fabs(w) > maxabs ? fabs(w) : maxabs, l1 += fabs(w);
            }
            float step = arith == MF_ARITH_I16 ? row_step(maxabs, l1, depth, qin) : 1.0f;
            if (steps)
                steps[i0 + r] = step;
            for (int p = 0; p < pairs; p++) {
                uint32_t half[2] = {0, 0};
                for (int k = 0; k < 2 && 2 * p + k < depth; k++) {
                    int d = 2 * p + k;
                    float w = (float)((double)a[(size_t)d * MF_MR + r] *
                                      (col_scale ? col_scale[d / col_div] : 1));
                    if (arith == MF_ARITH_I16) {
                        float q = rintf(w / step);
                        q = q > 32767 ? 32767 : q < -32767 ? -32767 : q;
                        half[k] = (uint16_t)(int16_t)q;
                    } else {
                        half[k] = bf16_bits(w);
                    }
                }
                panel[(size_t)p * MF_MR + r] = half[0] | half[1] << 16;
            }
        }
    }
}

/* [depth][nr] floats -> [ceil(depth/2)][nr] words, 8 columns at a time (nr is a
 * multiple of 8). */
void mf_pack_b_pairs(uint32_t *dst, const float *src, int depth, int nr, mf_arith arith,
                     float qmax)
{
    const __m256 hi = _mm256_set1_ps(qmax), lo = _mm256_set1_ps(-qmax);
    const __m256i mask = _mm256_set1_epi32(0xffff), bias = _mm256_set1_epi32(0x7fff);
    const __m256i one = _mm256_set1_epi32(1);
    for (int p = 0; p < (depth + 1) / 2; p++, dst += nr) {
        const float *r0 = src + (size_t)2 * p * nr, *r1 = r0 + nr;
        int odd = 2 * p + 1 < depth;
        for (int j = 0; j < nr; j += 8) {
            __m256 x0 = _mm256_loadu_ps(r0 + j);
            __m256 x1 = odd ? _mm256_loadu_ps(r1 + j) : _mm256_setzero_ps();
            __m256i w0, w1;
            if (arith == MF_ARITH_I16) { /* cvtps rounds to nearest even */
                w0 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(x0, lo), hi));
                w1 = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(x1, lo), hi));
            } else { /* bf16: add 0x7fff + the lowest kept bit, keep the top half */
                w0 = _mm256_castps_si256(x0), w1 = _mm256_castps_si256(x1);
                w0 = _mm256_srli_epi32(
                    _mm256_add_epi32(_mm256_add_epi32(w0, bias),
                                     _mm256_and_si256(_mm256_srli_epi32(w0, 16), one)),
                    16);
                w1 = _mm256_srli_epi32(
                    _mm256_add_epi32(_mm256_add_epi32(w1, bias),
                                     _mm256_and_si256(_mm256_srli_epi32(w1, 16), one)),
                    16);
            }
            __m256i w = _mm256_or_si256(_mm256_and_si256(w0, mask), _mm256_slli_epi32(w1, 16));
            _mm256_storeu_si256((__m256i *)(dst + j), w);
        }
    }
}

/* ---- fully connected --------------------------------------------------------------- */

size_t mf_fc_scratch_size(int n, int depth, const mf_gemm *g)
{
    return (size_t)depth * g->nr * sizeof(float);
}

/* Images become the columns of one B panel (up to nr at a time); threads split the
 * output rows, so each reads a disjoint part of the (large) weight matrix once. */
void mf_fc(float *out, const float *in, const float *ap, const float *bias, int n, int m,
           int depth, const mf_gemm *g, void *scratch, int threads)
{
    float *b = scratch;
    int nr = g->nr;
    for (int n0 = 0; n0 < n; n0 += nr) {
        int nc = n - n0 < nr ? n - n0 : nr;
        for (int p = 0; p < depth; p++)
            for (int j = 0; j < nr; j++)
                b[(size_t)p * nr + j] = j < nc ? in[(size_t)(n0 + j) * depth + p] : 0.0f;
        int panels = (m + MF_MR - 1) / MF_MR;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 4)
        for (int i = 0; i < panels; i++) {
            float t[MF_MR * MF_NR_MAX];
            g->run(depth, ap + (size_t)i * MF_MR * depth, b, t, nr, NULL);
            for (int r = 0; r < MF_MR && i * MF_MR + r < m; r++)
                for (int j = 0; j < nc; j++)
                    out[(size_t)(n0 + j) * m + i * MF_MR + r] =
                        t[r * nr + j] + (bias ? bias[i * MF_MR + r] : 0.0f);
        }
    }
}
