/* test_amx.c - int8 quantisation, the AMX tile layout and the products it gives, against
 * plain integer and float arithmetic. The product test skips on CPUs without AMX. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../libcore/knn/amx.h"

/* Quantisation: the row's largest |value| maps to 127, rounding to nearest, padding is
 * zero, and a zero or non-finite row quantises to zeros with scale 0. */
Test(amx, int8_quantisation)
{
    const float in[3][5] = {
        {0.5f, -0.25f, 0.0f, 0.126f, -0.5f}, {0, 0, 0, 0, 0}, {1.0f, NAN, 0.0f, 0.0f, 0.0f}};
    int8_t out[3 * 64];
    float scale[3];
    memset(out, 0x55, sizeof out);
    mf_i8_from_f32(out, scale, &in[0][0], 3, 5, 64);
    cr_expect_float_eq(scale[0], 0.5f / 127, 1e-9);
    const int8_t want[5] = {127, -64, 0, 32, -127}; /* -63.5 rounds to even: -64 */
    for (int j = 0; j < 5; j++)
        cr_expect_eq(out[j], want[j], "value %d: %d, want %d", j, out[j], want[j]);
    for (int j = 5; j < 64; j++)
        cr_expect_eq(out[j], 0, "padding %d", j);
    cr_expect_eq(scale[1], 0.0f);
    for (int j = 0; j < 64; j++)
        cr_expect_eq(out[64 + j], 0);
    cr_expect_eq(scale[2], 0.0f, "NaN row: scale %g", scale[2]);
    for (int j = 0; j < 64; j++)
        cr_expect_eq(out[128 + j], 0);
}

/* Unit rows of width dim with a fixed generator. */
static float *unit_rows(size_t n, int dim, unsigned seed)
{
    float *x = malloc(n * dim * sizeof *x);
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < dim; j++) {
            x[i * dim + j] = (float)rand() / RAND_MAX - 0.5f;
            s += (double)x[i * dim + j] * x[i * dim + j];
        }
        for (int j = 0; j < dim; j++)
            x[i * dim + j] /= (float)sqrt(s);
    }
    return x;
}

/* Sizes that are not multiples of a tile in any direction: the padding must give zeros
 * and the products of real rows must be exactly the integer products of the quantised
 * rows, and close to the float products once scaled. */
Test(amx, products_match_integer_math)
{
    if (!mf_amx_available())
        cr_skip_test("this CPU has no AMX-INT8 (or the kernel refused the tile state)");
    size_t nq = 37, nm = 45, n = 100;
    int dim = 200;
    size_t dimp = MF_AMX_DIM(dim);
    cr_assert_eq(dimp, 256);
    float *x = unit_rows(n, dim, 5), *scale = malloc(n * sizeof *scale);
    int8_t *xq = malloc(n * dimp);
    mf_i8_from_f32(xq, scale, x, n, dim, dimp);
    int32_t mem[45], qry[37];
    for (size_t j = 0; j < nm; j++)
        mem[j] = (int32_t)((j * 7) % n); /* any order, repeats allowed */
    for (size_t i = 0; i < nq; i++)
        qry[i] = (int32_t)((i * 13 + 3) % n);
    int8_t *packed = malloc(MF_AMX_PAD(nm) * dimp);
    int8_t *q = calloc(MF_AMX_PAD(nq), dimp);
    size_t ld = MF_AMX_PAD(nm) + 3; /* a wider product row than needed */
    int32_t *acc = malloc(MF_AMX_PAD(nq) * ld * sizeof *acc);
    mf_amx_pack(packed, xq, dimp, mem, nm);
    for (size_t i = 0; i < nq; i++)
        memcpy(q + i * dimp, xq + qry[i] * dimp, dimp);
    mf_amx_begin();
    mf_amx_products(acc, ld, q, nq, packed, nm, dimp);
    mf_amx_end();
    double worst = 0;
    for (size_t i = 0; i < MF_AMX_PAD(nq); i++)
        for (size_t j = 0; j < MF_AMX_PAD(nm); j++) {
            int32_t a = acc[i * ld + j];
            if (i >= nq || j >= nm) {
                cr_expect_eq(a, 0, "padding product (%zu, %zu) = %d", i, j, a);
                continue;
            }
            int32_t want = 0;
            double e = 0;
            for (int t = 0; t < dim; t++) {
                want += xq[qry[i] * dimp + t] * xq[mem[j] * dimp + t];
                e += (double)x[qry[i] * dim + t] * x[mem[j] * dim + t];
            }
            cr_expect_eq(a, want, "(%zu, %zu): %d, want %d", i, j, a, want);
            worst = fmax(worst, fabs(a * (double)scale[qry[i]] * scale[mem[j]] - e));
        }
    cr_expect(worst < 1e-2, "largest deviation from float products %g", worst);
    free(x), free(scale), free(xq), free(packed), free(q), free(acc);
}
