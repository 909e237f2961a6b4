/* amx.h - int8 inner products on Intel AMX tiles, for the IVF join's list scans.
 *
 * An AMX core multiplies 16x64 by 64x16 int8 tiles into 16x16 int32 accumulators, ~15x
 * the float32 sgemm rate of the same core (bf16 tiles run at half the int8 rate and move
 * twice the bytes per product). Rows are quantised with a scale of their own (max |x| /
 * 127); on unit 512-d rows a product is then off by ~5e-4 (at most ~3e-3), so callers
 * keep a few spare candidates and re-score them in float32.
 *
 *     if (mf_amx_available()) {                          // once per process
 *         mf_i8_from_f32(xq, scale, x, n, dim, dimp);      // dimp = MF_AMX_DIM(dim)
 *         ... per thread: mf_amx_begin(); ... mf_amx_end();
 *         mf_amx_pack(packed, xq, dimp, members, nm);       // B operand
 *         mf_amx_products(acc, ld, queries, nq, packed, nm, dimp);
 *         // <query i, member j> ~= acc[i*ld + j] * scale[query i] * scale[member j]
 *     }
 *
 * Layouts: quantised rows are dimp int8 each (dimp a multiple of 64, zero padded). A
 * packed member block holds MF_AMX_PAD(nm) members as 16-member tiles in AMX's
 * four-interleaved order; padding members are zero. Queries are row-major quantised rows,
 * nq of them, with MF_AMX_PAD(nq) rows readable (the caller zero-fills the padding). */
#ifndef MF_KNN_AMX_H
#define MF_KNN_AMX_H

#include <stddef.h>
#include <stdint.h>

#define MF_AMX_DIM(d) (((size_t)(d) + 63) / 64 * 64)
#define MF_AMX_PAD(m) (((size_t)(m) + 31) / 32 * 32)

/* 1 if the CPU has AMX-INT8 and the kernel grants this process the tile state (asked
 * once); 0 otherwise, or while the environment sets MF_NO_AMX (to compare paths). */
int mf_amx_available(void);

/* Quantise n rows of dim floats: scale[i] = max |row| / 127 (0 for a zero row),
 * dst = round(row / scale[i]), each row written as dimp values (zero padded). OpenMP. */
void mf_i8_from_f32(int8_t *dst, float *scale, const float *src, size_t n, int dim,
                    size_t dimp);

/* Load / release the tile configuration of the calling thread. */
void mf_amx_begin(void);
void mf_amx_end(void);

/* Gather rows[0..nm) of xq into packed (MF_AMX_PAD(nm) * dimp int8). */
void mf_amx_pack(int8_t *packed, const int8_t *xq, size_t dimp, const int32_t *rows, size_t nm);

/* acc[i * ld + j] = sum of products of query i and member j (int32), for
 * i < MF_AMX_PAD(nq), j < MF_AMX_PAD(nm); ld >= MF_AMX_PAD(nm). Needs mf_amx_begin() on
 * this thread. */
void mf_amx_products(int32_t *acc, size_t ld, const int8_t *q, size_t nq, const int8_t *packed,
                     size_t nm, size_t dimp);

#endif
