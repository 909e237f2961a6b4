/* amx.c - int8 inner products on AMX tiles (see amx.h).
 *
 * The kernel functions carry their own target attributes, so the rest of the build keeps
 * its -march and the AMX path is chosen at run time (cpuid + the kernel's permission).
 * Tile use: tmm0-3 accumulate a 32x32 block of products, tmm4-5 hold 16 query rows x 64
 * dims each, tmm6-7 16 members x 64 dims each in AMX's four-interleaved layout; every
 * tile is 16 rows of 64 bytes, so one configuration serves all eight. */
#include "amx.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define MF_AMX_BUILD 1
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#define ARCH_REQ_XCOMP_PERM 0x1023 /* asm/prctl.h; not in every libc's headers */
#define XFEATURE_XTILEDATA 18

void mf_i8_from_f32(int8_t *dst, float *scale, const float *src, size_t n, int dim, size_t dimp)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        int8_t *d = dst + i * dimp;
        const float *s = src + i * (size_t)dim;
        float top = 0;
        int finite = 1;
        for (int j = 0; j < dim; j++) {
            top = fabsf(s[j]) > top ? fabsf(s[j]) : top;
            finite &= isfinite(s[j]) != 0;
        }
        /* a zero or non-finite row quantises to zeros: it matches nothing */
        float inv = top > 0 && finite ? 127.0f / top : 0.0f;
        scale[i] = inv ? top / 127.0f : 0.0f;
        for (int j = 0; j < dim; j++)
            d[j] = (int8_t)lrintf(s[j] * inv);
        memset(d + dim, 0, dimp - (size_t)dim);
    }
}

void mf_amx_pack(int8_t *packed, const int8_t *xq, size_t dimp, const int32_t *rows, size_t nm)
{
    /* As 32-bit words of four int8: member c of a 16-member block, word j (dims 4j ..
     * 4j+3) goes to block[j * 16 + c]: tile t is words 16t .. 16t+15, one 64-byte row
     * per word. */
    size_t words = dimp / 4, npad = MF_AMX_PAD(nm);
    uint32_t *out = (uint32_t *)(void *)packed;
    for (size_t m = 0; m < npad; m++) {
        uint32_t *blk = out + (m / 16) * words * 16;
        size_t col = m % 16;
        const int8_t *src = m < nm ? xq + (size_t)rows[m] * dimp : NULL;
        for (size_t j = 0; j < words; j++) {
            uint32_t v = 0;
            if (src)
                memcpy(&v, src + 4 * j, sizeof v);
            blk[j * 16 + col] = v;
        }
    }
}

#ifdef MF_AMX_BUILD

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

static int cpu_has_amx_int8(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (d >> 24 & 1) && (d >> 25 & 1); /* AMX-TILE, AMX-INT8 */
}

int mf_amx_available(void)
{
    const char *off = getenv("MF_NO_AMX"); /* looked at every time: tests switch it */
    if (off && *off && strcmp(off, "0") != 0)
        return 0;
    static int granted = -1; /* the permission is per process: asked once */
    if (granted < 0)
        granted = cpu_has_amx_int8() &&
                  syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    return granted;
}

__attribute__((target("amx-tile"))) void mf_amx_begin(void)
{
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++)
        cfg.colsb[t] = 64, cfg.rows[t] = 16;
    /* GCC's _tile_loadconfig tells the compiler it reads 8 bytes, so without this
     * barrier the stores above are dropped as dead and ldtilecfg faults. */
    __asm__ __volatile__("" : : "r"(&cfg) : "memory");
    _tile_loadconfig(&cfg);
}

__attribute__((target("amx-tile"))) void mf_amx_end(void) { _tile_release(); }

__attribute__((target("amx-tile,amx-int8"))) void mf_amx_products(int32_t *acc, size_t ld,
                                                                  const int8_t *q, size_t nq,
                                                                  const int8_t *packed,
                                                                  size_t nm, size_t dimp)
{
    size_t chunks = dimp / 64, qpad = MF_AMX_PAD(nq), mpad = MF_AMX_PAD(nm);
    size_t blk = chunks * 1024; /* bytes per 16 packed members */
    size_t cstride = ld * sizeof *acc;
    /* Two member tiles stay in L1 while the query rows stream from L2. */
    for (size_t m = 0; m < mpad; m += 32) {
        const int8_t *b0 = packed + (m / 16) * blk, *b1 = b0 + blk;
        for (size_t i = 0; i < qpad; i += 32) {
            const int8_t *a0 = q + i * dimp, *a1 = a0 + 16 * dimp;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (size_t c = 0; c < chunks; c++) {
                _tile_loadd(4, a0 + c * 64, dimp);
                _tile_loadd(5, a1 + c * 64, dimp);
                _tile_loadd(6, b0 + c * 1024, 64);
                _tile_loadd(7, b1 + c * 1024, 64);
                _tile_dpbssd(0, 4, 6);
                _tile_dpbssd(1, 4, 7);
                _tile_dpbssd(2, 5, 6);
                _tile_dpbssd(3, 5, 7);
            }
            int32_t *s = acc + i * ld + m;
            _tile_stored(0, s, cstride);
            _tile_stored(1, s + 16, cstride);
            _tile_stored(2, s + 16 * ld, cstride);
            _tile_stored(3, s + 16 * ld + 16, cstride);
        }
    }
}

#else /* no AMX in this compiler or architecture */

int mf_amx_available(void) { return 0; }

void mf_amx_begin(void) {}

void mf_amx_end(void) {}

void mf_amx_products(int32_t *acc, size_t ld, const int8_t *q, size_t nq, const int8_t *packed,
                     size_t nm, size_t dimp)
{
    abort(); /* unreachable: mf_amx_available() is 0 */
}

#endif
