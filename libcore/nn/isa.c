/* isa.c - run-time choice of micro-kernels. The build targets x86-64-v3 (AVX2 + FMA);
 * wider kernels live in files compiled for their ISA and are chosen here only when
 * cpuid reports the instructions AND the OS saves their registers (XCR0), so one
 * binary runs on every node of a cluster and uses what each node has. $MF_ISA caps
 * the choice (tests force the AVX2 kernels on an AVX-512 machine with MF_ISA=avx2). */
#include <cpuid.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf/log.h"
#include "kern_tmpl.h"

enum {
    F_AVX2 = 1 << 0,       /* AVX2 + FMA */
    F_AVXVNNI = 1 << 1,    /* VEX vpdpwssd on ymm (reported; no kernel uses it yet) */
    F_AVX512 = 1 << 2,     /* F, DQ, BW, VL with zmm state enabled */
    F_AVX512VNNI = 1 << 3, /* vpdpwssd on zmm */
    F_AVX512BF16 = 1 << 4, /* vdpbf16ps */
    F_AMX = 1 << 5,        /* tiles with int8 and bf16 (reported; no AMX kernel yet) */
    F_ALL = (1 << 6) - 1,
};

static const struct {
    const char *name;
    unsigned cap;
} levels[] = {
    {"generic", 0},
    {"avx2", F_AVX2},
    {"avx512", F_AVX2 | F_AVX512},
    {"avx512vnni", F_AVX2 | F_AVXVNNI | F_AVX512 | F_AVX512VNNI | F_AVX512BF16},
    {"native", F_ALL},
};

static unsigned found, cap = F_ALL;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static unsigned long long xgetbv0(void)
{
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (unsigned long long)hi << 32 | lo;
}

static unsigned detect(void)
{
    unsigned a, b, c, d, f = 0;
    if (__get_cpuid_max(0, NULL) < 7 || !__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int fma = c >> 12 & 1, osxsave = c >> 27 & 1, avx = c >> 28 & 1;
    if (!osxsave || !avx)
        return 0;
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) /* SSE and AVX state */
        return 0;
    unsigned b7, c7, d7, a71 = 0;
    __cpuid_count(7, 0, a, b7, c7, d7);
    if (a >= 1)
        __cpuid_count(7, 1, a71, b, c, d);
    if (b7 >> 5 & 1 && fma)
        f |= F_AVX2;
    if (f & F_AVX2 && a71 >> 4 & 1)
        f |= F_AVXVNNI;
    int zmm = (xcr0 & 0xe0) == 0xe0; /* opmask, upper zmm0-15, zmm16-31 */
    if (f & F_AVX2 && zmm && b7 >> 16 & 1 && b7 >> 17 & 1 && b7 >> 30 & 1 && b7 >> 31 & 1)
        f |= F_AVX512;
    if (f & F_AVX512 && c7 >> 11 & 1)
        f |= F_AVX512VNNI;
    if (f & F_AVX512 && a71 >> 5 & 1)
        f |= F_AVX512BF16;
    if ((xcr0 & 0x60000) == 0x60000 && d7 >> 24 & 1 && d7 >> 25 & 1 && d7 >> 22 & 1)
        f |= F_AMX;
    return f;
}

static int set_cap(const char *level)
{
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (!strcmp(levels[i].name, level ? level : "native")) {
            cap = levels[i].cap;
            return 0;
        }
    return -1;
}

static void init(void)
{
    found = detect();
    const char *env = getenv("MF_ISA");
    if (env && *env && set_cap(env) < 0)
        mf_log(MF_LOG_WARN,
               "MF_ISA='%s' is not one of generic, avx2, avx512, avx512vnni, native: "
               "ignored",
               env);
}

int mf_isa_set_cap(const char *level)
{
    pthread_once(&once, init);
    return set_cap(level);
}

/* ---- the kernels ------------------------------------------------------------------ */

void mf_gemm_f32_generic(int, const void *, const void *, float *, size_t, const float *);
void mf_gemm_i16_generic(int, const void *, const void *, float *, size_t, const float *);
void mf_gemm_bf16_generic(int, const void *, const void *, float *, size_t, const float *);

static const mf_gemm kernels[] = {
    {mf_gemm_f32_generic, 32, MF_ARITH_F32, 0, "generic C 8x32"},
    {mf_gemm_f32_avx2, 24, MF_ARITH_F32, 0, "avx2 4x24 vfmadd231ps"},
    {mf_gemm_f32_avx512, 32, MF_ARITH_F32, 0, "avx512 8x32 vfmadd231ps"},
    {mf_gemm_i16_generic, 32, MF_ARITH_I16, 0, "generic C 8x32"},
    {mf_gemm_i16_avx2, 24, MF_ARITH_I16, 0, "avx2 4x24 vpmaddwd"},
    {mf_gemm_i16_avx512, 32, MF_ARITH_I16, 0, "avx512 8x32 vpmaddwd"},
    {mf_gemm_i16_avx512vnni, 32, MF_ARITH_I16, 0, "avx512-vnni 8x32 vpdpwssd"},
    {mf_gemm_bf16_generic, 32, MF_ARITH_BF16, 1, "generic C 8x32 (emulated)"},
    {mf_gemm_bf16_avx2, 16, MF_ARITH_BF16, 1, "avx2 4x16 (emulated with vfmadd231ps)"},
    {mf_gemm_bf16_avx512, 32, MF_ARITH_BF16, 0, "avx512-bf16 8x32 vdpbf16ps"},
};

static const mf_gemm *find(mf_gemm_fn fn)
{
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i].run == fn)
            return &kernels[i];
    return &kernels[0];
}

const mf_gemm *mf_gemm_select(mf_arith arith)
{
    pthread_once(&once, init);
    unsigned f = found & cap;
    switch (arith) {
    case MF_ARITH_F32:
        return find(f & F_AVX512 ? mf_gemm_f32_avx512
                    : f & F_AVX2 ? mf_gemm_f32_avx2
                                 : mf_gemm_f32_generic);
    case MF_ARITH_I16:
        return find(f & F_AVX512VNNI ? mf_gemm_i16_avx512vnni
                    : f & F_AVX512   ? mf_gemm_i16_avx512
                    : f & F_AVX2     ? mf_gemm_i16_avx2
                                     : mf_gemm_i16_generic);
    case MF_ARITH_BF16:
        return find(f & F_AVX512BF16 ? mf_gemm_bf16_avx512
                    : f & F_AVX2     ? mf_gemm_bf16_avx2
                                     : mf_gemm_bf16_generic);
    }
    return &kernels[0];
}

static void cpu_brand(char *buf, size_t len)
{
    unsigned r[12] = {0};
    /* __get_cpuid_max is int in clang's cpuid.h, unsigned in GCC's */
    if ((unsigned)__get_cpuid_max(0x80000000, NULL) < 0x80000004u) {
        snprintf(buf, len, "unknown x86-64");
        return;
    }
    for (unsigned i = 0; i < 3; i++)
        __get_cpuid(0x80000002 + i, &r[4 * i], &r[4 * i + 1], &r[4 * i + 2], &r[4 * i + 3]);
    char s[49] = {0};
    memcpy(s, r, 48);
    char *p = s;
    while (*p == ' ')
        p++;
    snprintf(buf, len, "%s", p);
}

void mf_isa_describe(char *buf, size_t len)
{
    static const char *names[] = {"avx2",        "avx-vnni",    "avx512",
                                  "avx512-vnni", "avx512-bf16", "amx"};
    char brand[64], feats[160] = "";
    pthread_once(&once, init);
    cpu_brand(brand, sizeof brand);
    for (int i = 0; i < 6; i++)
        if (found >> i & 1)
            snprintf(feats + strlen(feats), sizeof feats - strlen(feats), " %s", names[i]);
    const mf_gemm *f = mf_gemm_select(MF_ARITH_F32), *q = mf_gemm_select(MF_ARITH_I16),
                  *h = mf_gemm_select(MF_ARITH_BF16);
    snprintf(buf, len,
             "cpu: %s;%s%s%s\nfp32 kernel: %s\nint8 kernel: %s (int8 activations, int16 "
             "weights)\nbf16 kernel: %s%s",
             brand, feats[0] ? feats : " no avx2", cap == F_ALL ? "" : " (capped by MF_ISA)",
             found & F_AMX ? " (amx: not used yet)" : "", f->name, q->name, h->name,
             h->emulated ? ": same numbers, no speed-up on this cpu" : "");
}
