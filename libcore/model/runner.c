/* runner.c - the forward pass: per-run scratch (and low-precision weights) allocated
 * once, then stem, blocks and head over the whole batch in CNHW layout (see nn/nn.h);
 * and the int8 calibration, which is an fp32 forward pass that watches every
 * convolution's input. */
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf/log.h"
#include "mf/status.h"
#include "iresnet.h"
#include "nn.h"

#define INT8_LEVELS 255  /* activations: 8 bits over the calibrated range */
#define IMAGE_LEVELS 256 /* the stem reads u8/255: 0..255 times 1/255, exact */

/* int8 runs a face again in fp32 when what some convolution reads leaves the calibrated
 * range by more than this fraction of the range's width: values beyond it are clamped,
 * and those faces made the worst magnitude errors. Measured (iresnet100, 1,166 faces,
 * ranges from 212 others): the worst face left its ranges by 0.66 and erred 1.8e-2; the
 * 37 faces over 0.35 (3%) held 4 of the 5 errors over 1e-2; at 0.35 the worst remaining
 * error was 1.02e-2, the same as at 0.1 (345 faces), so a lower bound buys nothing. */
#define RERUN_EXCESS 0.35f

struct mf_runner {
    const mf_model *m;
    int max_batch, threads;
    mf_precision precision;
    const mf_gemm *f32;
    mf_conv_op *ops; /* (nconvs) how each convolution computes */
    void *lowp;      /* pair weights, steps and input affines of the low-precision convs */
    float *buf[3];   /* activations, each buf_floats: block input, conv1 output, output */
    size_t buf_floats;
    void *scratch;          /* per-thread packing / Winograd space, the largest layer's need */
    float *flat;            /* (max_batch, widths[3]*MF_HEAD_AREA) head input */
    float *obs_lo, *obs_hi; /* calibration: running min/max of each conv's input channels */
    float *excess;          /* int8: (max_batch) how far each face left the calibrated ranges */
    mf_runner *rerun;       /* int8: fp32 for the faces that left them */
    int rerun_mode;         /* MF_RERUNS_* */
    long long reruns;
    char describe[160];
};

const char *mf_precision_name(mf_precision p)
{
    return p == MF_PRECISION_INT8 ? "int8" : p == MF_PRECISION_BF16 ? "bf16" : "fp32";
}

int mf_precision_parse(const char *name, mf_precision *out)
{
    static const mf_precision all[] = {MF_PRECISION_FP32, MF_PRECISION_BF16, MF_PRECISION_INT8};
    for (int i = 0; i < 3; i++)
        if (name && !strcmp(name, mf_precision_name(all[i]))) {
            *out = all[i];
            return 0;
        }
    return mf_set_error(MF_ERR_ARG, "unknown precision '%s' (fp32, bf16 or int8)",
                        name ? name : "");
}

void mf_cpu_describe(char *buf, size_t len) { mf_isa_describe(buf, len); }

mf_runner_params mf_runner_default_params(void)
{
    return (mf_runner_params){
        .max_batch = 16, .threads = 1, .precision = MF_PRECISION_FP32,
        .int8_reruns = MF_RERUNS_INLINE};
}

static mf_conv_shape shape_of(const mf_conv *c, int n, int h)
{
    return (mf_conv_shape){c->cin, c->cout, c->ksize, c->stride, n, h, h};
}

/* ---- per-layer arithmetic ---------------------------------------------------------- */

/* Deep networks keep their first stage in fp32 at bf16 and int8: an error made there
 * passes through every later block. Measured on iresnet100 (1,166 faces,
 * bench/bench_precision.py): the worst face's magnitude error 2.08e-3 -> 1.49e-3 at
 * bf16 (gate 2e-3) and 1.02e-2 -> 8.05e-3 at int8 (gate 1e-2), for 6% of the
 * multiply-adds; the last stage in fp32 instead changed nothing (2.11e-3, 1.01e-2), the
 * first block alone was not enough at bf16 (2.45e-3). iresnet18 (8 blocks) passes its
 * gates without it and would lose 14% of its int8 speed; iresnet34 and 50 were not
 * measured, so the line sits between 34 (16 blocks) and 50 (24). */
#define FP32_FIRST_STAGE_BLOCKS 17

static int in_fp32_first_stage(const mf_model *m, const mf_conv *c)
{
    return m->nblocks >= FP32_FIRST_STAGE_BLOCKS && c->id < m->block[m->blocks[0]].conv1.id;
}

/* Whether conv c runs below fp32 in this runner. */
static int is_lowp(const mf_runner *r, const mf_conv *c)
{
    if (in_fp32_first_stage(r->m, c))
        return 0;
    if (r->precision == MF_PRECISION_INT8) /* the calibration decided (shortcuts: fp32) */
        return r->m->int8_layers ? r->m->int8_layers[c->id] : 1;
    /* bf16 keeps the same shortcuts in fp32, and the stem: its u8/255 input is not
     * exact in bf16's 8 bits (int8 reads it exactly), and both cost ~1% of the work */
    return r->precision == MF_PRECISION_BF16 && c->id != 0 && c->ksize != 1;
}

/* Whether a low-precision conv keeps Winograd: int8 does (its transform of integer
 * inputs is exact); bfloat16 does not: its 8-bit operands, through the F(4x4,3x3)
 * transforms, lose about 20% of a layer's output (tests/unit/test_nn.c), so bf16 runs
 * every convolution direct. */
static int lowp_winograd(const mf_runner *r, const mf_conv *c)
{
    return r->precision == MF_PRECISION_INT8 && c->winograd;
}

/* Fill r->ops[c->id] for a low-precision conv from *mem. int8: 255 levels over each
 * input channel's calibrated range; the stem reads u8/255, exact with 256 levels over
 * [0, 1]. `range` holds 2 x cin floats, `direct` the direct weights of the largest
 * Winograd conv. */
static void prepare_lowp(mf_runner *r, const mf_conv *c, char **mem, float *range,
                         float *direct)
{
    const mf_model *m = r->m;
    int int8 = r->precision == MF_PRECISION_INT8, stem = c->id == 0;
    int wino = lowp_winograd(r, c);
    float *lo = range, *hi = range + c->cin;
    for (int ch = 0; int8 && ch < c->cin; ch++) {
        lo[ch] = stem ? 0.0f : m->act_lo[c->act_off + ch];
        hi[ch] = stem ? 1.0f : m->act_hi[c->act_off + ch];
    }
    const float *w = c->w;
    if (c->winograd && !wino)
        mf_winograd_to_direct(direct, c->w, c->cout, c->cin), w = direct;
    mf_conv_shape s = shape_of(c, 1, MF_MODEL_INPUT);
    mf_conv_lowp_prepare(&r->ops[c->id], *mem,
                         mf_gemm_select(int8 ? MF_ARITH_I16 : MF_ARITH_BF16), w, &s, wino,
                         c->in_a, c->in_b, lo, hi, stem ? IMAGE_LEVELS : INT8_LEVELS);
    *mem += mf_conv_lowp_bytes(&s, wino);
}

static int prepare_ops(mf_runner *r)
{
    const mf_model *m = r->m;
    size_t bytes = 0, direct = 0;
    int lowp = 0, widest = 0;
    r->ops = calloc(m->nconvs, sizeof *r->ops);
    if (!r->ops)
        return mf_set_error(MF_ERR_NOMEM, "runner: out of memory");
    for (int id = 0; id < m->nconvs; id++) {
        const mf_conv *c = mf_iresnet_conv(m, id);
        mf_conv_shape s = shape_of(c, 1, MF_MODEL_INPUT);
        widest = c->cin > widest ? c->cin : widest;
        if (!is_lowp(r, c)) {
            r->ops[id] = mf_conv_op_f32(r->f32, c->w, c->winograd, c->in_a, c->in_b);
            continue;
        }
        bytes += mf_conv_lowp_bytes(&s, lowp_winograd(r, c)), lowp++;
        if (c->winograd && !lowp_winograd(r, c)) {
            size_t d = mf_pack_a_size(c->cout, c->cin * 9);
            direct = d > direct ? d : direct;
        }
    }
    float *step = malloc(2 * widest * sizeof(float)),
          *dw = malloc((direct + 1) * sizeof(float));
    if (!step || !dw || (bytes && !(r->lowp = aligned_alloc(64, bytes)))) {
        free(step), free(dw);
        return mf_set_error(MF_ERR_NOMEM, "runner: out of memory for %zu MB of %s weights",
                            bytes >> 20, mf_precision_name(r->precision));
    }
    char *mem = r->lowp;
    for (int id = 0; id < m->nconvs; id++) {
        const mf_conv *c = mf_iresnet_conv(m, id);
        if (is_lowp(r, c))
            prepare_lowp(r, c, &mem, step, dw);
    }
    free(step), free(dw);
    const mf_gemm *g =
        mf_gemm_select(r->precision == MF_PRECISION_INT8 ? MF_ARITH_I16 : MF_ARITH_BF16);
    if (r->precision == MF_PRECISION_FP32)
        snprintf(r->describe, sizeof r->describe, "fp32 (%s)", r->f32->name);
    else
        snprintf(r->describe, sizeof r->describe, "%s (%s; %d of %d convolutions in fp32: %s)",
                 mf_precision_name(r->precision), g->name, m->nconvs - lowp, m->nconvs,
                 r->f32->name);
    return 0;
}

/* ---- set-up ------------------------------------------------------------------------ */

static size_t conv_scratch(const mf_runner *r, const mf_conv *c, int n, int h)
{
    mf_conv_shape s = shape_of(c, n, h);
    const mf_conv_op *op = &r->ops[c->id];
    return mf_conv_scratch_size(&s, op->winograd, op->g, r->threads);
}

/* Largest activation (floats) and scratch (bytes) over every layer, for a batch of n. */
static void plan(const mf_runner *r, int n, size_t *act, size_t *scratch)
{
    const mf_model *m = r->m;
    int h = MF_MODEL_INPUT;
    size_t a = (size_t)m->stem * n * h * h, sc = conv_scratch(r, &m->stem_conv, n, h);
    for (int b = 0; b < m->nblocks; b++) {
        const mf_block *k = &m->block[b];
        size_t y = (size_t)k->conv1.cout * n * h * h;
        a = y > a ? y : a;
        const mf_conv *cv[3] = {&k->conv1, &k->conv2, k->down.w ? &k->down : NULL};
        for (int i = 0; i < 3 && cv[i]; i++) {
            size_t need = conv_scratch(r, cv[i], n, h);
            sc = need > sc ? need : sc;
        }
        h = mf_conv_out(h, 3, k->conv2.stride);
    }
    size_t fc = mf_fc_scratch_size(n, m->widths[3] * MF_HEAD_AREA, r->f32);
    *act = a;
    *scratch = fc > sc ? fc : sc;
}

/* int8: the excess of every face, measured whether or not it is acted on (so that the
 * network timed alone does the same work), and the fp32 runner for the reruns. */
static int create_rerun(mf_runner *r, int mode)
{
    /* Inline reruns meet the faces of one call, mostly one: batch 1 spares its memory. */
    mf_runner_params p = {.max_batch = mode == MF_RERUNS_DEFERRED ? r->max_batch : 1,
                          .threads = r->threads, .precision = MF_PRECISION_FP32};
    r->rerun_mode = mode;
    if (!(r->excess = calloc(r->max_batch, sizeof(float))))
        return mf_set_error(MF_ERR_NOMEM, "runner: out of memory");
    return mode != MF_RERUNS_NONE ? mf_runner_create(&r->rerun, r->m, &p) : 0;
}

int mf_runner_create(mf_runner **out, const mf_model *m, const mf_runner_params *p)
{
    *out = NULL;
    if (p->max_batch < 1 || p->max_batch > 4096 || p->threads < 1 || p->threads > 1024)
        return mf_set_error(MF_ERR_ARG, "runner: batch %d or threads %d out of range",
                            p->max_batch, p->threads);
    if (p->precision == MF_PRECISION_INT8 && !m->act_lo)
        return mf_set_error(MF_ERR_UNSUPPORTED,
                            "%s has no int8 calibration: calibrate it on a few hundred "
                            "of your faces first (mf-convert --calibrate LIST)",
                            m->name);
    mf_runner *r = calloc(1, sizeof *r);
    size_t scratch;
    if (!r)
        return mf_set_error(MF_ERR_NOMEM, "runner: out of memory");
    r->m = m, r->max_batch = p->max_batch, r->threads = p->threads;
    r->precision = p->precision;
    r->f32 = mf_gemm_select(MF_ARITH_F32);
    if (r->precision == MF_PRECISION_INT8 && create_rerun(r, p->int8_reruns) < 0) {
        mf_runner_free(r);
        return MF_ERR_NOMEM;
    }
    if (prepare_ops(r) < 0) {
        mf_runner_free(r);
        return MF_ERR_NOMEM;
    }
    plan(r, r->max_batch, &r->buf_floats, &scratch);
    r->buf_floats = mf_round_up(r->buf_floats, 16);
    size_t flat = mf_round_up((size_t)r->max_batch * m->widths[3] * MF_HEAD_AREA, 16);
    size_t total = 3 * r->buf_floats + flat + mf_round_up(scratch, 64) / sizeof(float);
    float *mem = aligned_alloc(64, total * sizeof(float));
    if (!mem) {
        mf_runner_free(r);
        return mf_set_error(MF_ERR_NOMEM,
                            "runner: out of memory for %zu MB of scratch "
                            "(batch %d)",
                            total * sizeof(float) >> 20, p->max_batch);
    }
    for (int i = 0; i < 3; i++)
        r->buf[i] = mem + i * r->buf_floats;
    r->flat = mem + 3 * r->buf_floats;
    r->scratch = r->flat + flat;
    char cpu[512];
    mf_isa_describe(cpu, sizeof cpu);
    cpu[strcspn(cpu, "\n")] = 0; /* the first line: the CPU and its extensions */
    mf_log(MF_LOG_DEBUG, "runner: %s, batch %d, %d threads; %s", r->describe, r->max_batch,
           r->threads, cpu);
    *out = r;
    return 0;
}

int mf_runner_new(mf_runner **out, const mf_model *m, int max_batch, int threads)
{
    mf_runner_params p = mf_runner_default_params();
    p.max_batch = max_batch, p.threads = threads;
    return mf_runner_create(out, m, &p);
}

void mf_runner_free(mf_runner *r)
{
    if (!r)
        return;
    free(r->buf[0]);
    mf_runner_free(r->rerun);
    free(r->excess);
    free(r->lowp);
    free(r->ops);
    free(r);
}

mf_precision mf_runner_precision(const mf_runner *r) { return r->precision; }
const char *mf_runner_describe(const mf_runner *r) { return r->describe; }

/* ---- forward ----------------------------------------------------------------------- */

/* Widen [*bot, *top] to hold x[i]*a+b for i < n (one pass, 8 lanes at a time). */
static void widen_range(const float *x, size_t n, float a, float b, float *bot, float *top)
{
    __m256 va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b);
    __m256 lo = _mm256_set1_ps(*bot), hi = _mm256_set1_ps(*top);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), va, vb);
        lo = _mm256_min_ps(lo, v), hi = _mm256_max_ps(hi, v);
    }
    float l[8], h[8];
    _mm256_storeu_ps(l, lo), _mm256_storeu_ps(h, hi);
    for (int k = 0; k < 8; k++)
        *bot = l[k] < *bot ? l[k] : *bot, *top = h[k] > *top ? h[k] : *top;
    for (; i < n; i++) {
        float v = x[i] * a + b;
        *bot = v < *bot ? v : *bot, *top = v > *top ? v : *top;
    }
}

/* Calibration: the range of x*a+b per input channel of c over the batch. */
static void observe(const mf_runner *r, const mf_conv *c, const float *in, size_t plane)
{
    float *lo = r->obs_lo + c->act_off, *hi = r->obs_hi + c->act_off;
#pragma omp parallel for num_threads(r->threads) schedule(static)
    for (int ch = 0; ch < c->cin; ch++) {
        float bot = 0, top = 0;
        widen_range(in + ch * plane, plane, c->in_a ? c->in_a[ch] : 1.0f,
                    c->in_b ? c->in_b[ch] : 0.0f, &bot, &top);
        lo[ch] = bot < lo[ch] ? bot : lo[ch], hi[ch] = top > hi[ch] ? top : hi[ch];
    }
}

/* int8: how far each face's input to c leaves the calibrated ranges, in widths of the
 * range (0: inside), the largest over channels and over the convolutions so far. */
static void measure_excess(const mf_runner *r, const mf_conv *c, const float *in, int n,
                           size_t hw)
{
    const float *lo = r->m->act_lo + c->act_off, *hi = r->m->act_hi + c->act_off;
    float *ex = r->excess;
    /* over channels, as every other pass of the runner: a batch may be smaller than the
     * thread count (a maximum does not depend on the order of the reduction) */
#pragma omp parallel for num_threads(r->threads) schedule(static) reduction(max : ex[:n])
    for (int ch = 0; ch < c->cin; ch++) {
        float width = hi[ch] - lo[ch];
        for (int i = 0; width > 0 && i < n; i++) {
            float bot = 0, top = 0;
            widen_range(in + ((size_t)ch * n + i) * hw, hw, c->in_a ? c->in_a[ch] : 1.0f,
                        c->in_b ? c->in_b[ch] : 0.0f, &bot, &top);
            float e = (top - hi[ch] > lo[ch] - bot ? top - hi[ch] : lo[ch] - bot) / width;
            ex[i] = e > ex[i] ? e : ex[i];
        }
    }
}

static void run_conv(const mf_runner *r, const mf_conv *c, float *out, const float *in, int n,
                     int h, const float *residual)
{
    mf_conv_shape s = shape_of(c, n, h);
    mf_epilogue ep = {c->bias, c->prelu, residual};
    if (r->obs_lo)
        observe(r, c, in, (size_t)n * h * h);
    if (r->excess && c->id != 0 && is_lowp(r, c))
        measure_excess(r, c, in, n, (size_t)h * h);
    mf_conv_run(out, in, &r->ops[c->id], &s, &ep, r->scratch, r->threads);
}

/* Blocks rotate through three buffers; the block input `x` is also the output when the
 * shortcut is the identity (each output element reads its residual just before). */
static float *run_blocks(mf_runner *r, int n, int *cur)
{
    const mf_model *m = r->m;
    int h = MF_MODEL_INPUT;
    for (int b = 0; b < m->nblocks; b++) {
        const mf_block *k = &m->block[b];
        float *x = r->buf[*cur], *y = r->buf[(*cur + 1) % 3], *o = r->buf[(*cur + 2) % 3];
        run_conv(r, &k->conv1, y, x, n, h, NULL);
        if (k->down.w) {
            run_conv(r, &k->down, o, x, n, h, NULL);
            run_conv(r, &k->conv2, o, y, n, h, o);
            *cur = (*cur + 2) % 3;
        } else {
            run_conv(r, &k->conv2, x, y, n, h, x);
        }
        h = mf_conv_out(h, 3, k->conv2.stride);
    }
    return r->buf[*cur];
}

static void head(mf_runner *r, int n, const float *x, float *features, float *magnitudes)
{
    const mf_model *m = r->m;
    int c = m->widths[3];
    for (int ch = 0; ch < c; ch++) /* CNHW -> per image c*MF_HEAD_AREA + h*7 + w */
        for (int i = 0; i < n; i++)
            memcpy(r->flat + ((size_t)i * c + ch) * MF_HEAD_AREA,
                   x + ((size_t)ch * n + i) * MF_HEAD_AREA, MF_HEAD_AREA * sizeof(float));
    mf_fc(features, r->flat, m->fc_w, m->fc_b, n, m->dim, c * MF_HEAD_AREA, r->f32, r->scratch,
          r->threads);
    for (int i = 0; magnitudes && i < n; i++) {
        double ss = 0;
        for (int j = 0; j < m->dim; j++)
            ss += (double)features[(size_t)i * m->dim + j] * features[(size_t)i * m->dim + j];
        magnitudes[i] = (float)sqrt(ss);
    }
}

/* buf[0] holds the input as CNHW (3 planes per image). */
static void forward(mf_runner *r, int n, float *features, float *magnitudes)
{
    int cur = 1;
    if (r->excess)
        memset(r->excess, 0, n * sizeof(float));
    run_conv(r, &r->m->stem_conv, r->buf[1], r->buf[0], n, MF_MODEL_INPUT, NULL);
    head(r, n, run_blocks(r, n, &cur), features, magnitudes);
}

static int check_batch(const mf_runner *r, int n)
{
    if (n < 1 || n > r->max_batch)
        return mf_set_error(MF_ERR_ARG, "batch of %d images, runner takes 1..%d", n,
                            r->max_batch);
    return 0;
}

/* int8: the faces of the batch that left the calibrated ranges by more than
 * RERUN_EXCESS again through the fp32 runner, one at a time, straight from the caller's
 * input into its outputs. The input is either `bgr` (u8 HWC) or `nchw` (float). */
static int rerun_outliers(mf_runner *r, int n, const uint8_t *bgr, const float *nchw,
                          float *features, float *magnitudes)
{
    const size_t face = 3 * MF_MODEL_INPUT * MF_MODEL_INPUT, dim = r->m->dim;
    for (int i = 0; r->rerun_mode == MF_RERUNS_INLINE && i < n; i++) {
        if (r->excess[i] <= RERUN_EXCESS)
            continue;
        float *feat = features + i * dim, *mag = magnitudes ? magnitudes + i : NULL;
        int rc = bgr ? mf_runner_forward(r->rerun, 1, MF_MODEL_INPUT, MF_MODEL_INPUT,
                                         bgr + i * face, feat, mag)
                     : mf_runner_forward_f32(r->rerun, 1, nchw + i * face, feat, mag);
        if (rc < 0)
            return rc;
        r->reruns++;
    }
    return 0;
}

long long mf_runner_fp32_reruns(const mf_runner *r) { return r->reruns; }

int mf_runner_rerun_wanted(const mf_runner *r, int i)
{
    return r->rerun_mode == MF_RERUNS_DEFERRED && i >= 0 && i < r->max_batch &&
           r->excess[i] > RERUN_EXCESS;
}

int mf_runner_rerun(mf_runner *r, int n, const uint8_t *bgr, float *features,
                    float *magnitudes)
{
    if (!r->rerun || r->rerun_mode != MF_RERUNS_DEFERRED)
        return mf_set_error(MF_ERR_ARG, "runner: reruns are not deferred to the caller");
    int rc = mf_runner_forward(r->rerun, n, MF_MODEL_INPUT, MF_MODEL_INPUT, bgr, features,
                               magnitudes);
    if (rc == 0)
        r->reruns += n;
    return rc;
}

int mf_runner_forward(mf_runner *r, int n, int height, int width, const uint8_t *bgr,
                      float *features, float *magnitudes)
{
    if (height != MF_MODEL_INPUT || width != MF_MODEL_INPUT)
        return mf_set_error(MF_ERR_ARG,
                            "input is %dx%d, the network takes aligned "
                            "112x112 faces",
                            width, height);
    if (check_batch(r, n) < 0)
        return MF_ERR_ARG;
    const size_t px = MF_MODEL_INPUT * MF_MODEL_INPUT;
    float *in = r->buf[0];
#pragma omp parallel for num_threads(r->threads) schedule(static)
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++) /* true division, as the official u8 / 255.0 */
            for (size_t p = 0; p < px; p++)
                in[((size_t)c * n + i) * px + p] = bgr[((size_t)i * px + p) * 3 + c] / 255.0f;
    forward(r, n, features, magnitudes);
    return rerun_outliers(r, n, bgr, NULL, features, magnitudes);
}

int mf_runner_forward_f32(mf_runner *r, int n, const float *nchw, float *features,
                          float *magnitudes)
{
    if (check_batch(r, n) < 0)
        return MF_ERR_ARG;
    const size_t px = MF_MODEL_INPUT * MF_MODEL_INPUT;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < 3; c++)
            memcpy(r->buf[0] + ((size_t)c * n + i) * px, nchw + ((size_t)i * 3 + c) * px,
                   px * sizeof(float));
    forward(r, n, features, magnitudes);
    return rerun_outliers(r, n, NULL, nchw, features, magnitudes);
}

/* ---- int8 calibration -------------------------------------------------------------- */

struct mf_calibration {
    const mf_model *m;
    mf_runner *r;   /* fp32, observing */
    float *lo, *hi; /* (act_floats) */
    float *feat;    /* (max_batch, dim) discarded features */
    int faces;
};

int mf_calibration_new(mf_calibration **out, const mf_model *m, int max_batch, int threads)
{
    *out = NULL;
    mf_calibration *c = calloc(1, sizeof *c);
    if (!c)
        return mf_set_error(MF_ERR_NOMEM, "calibration: out of memory");
    c->m = m;
    int rc = mf_runner_new(&c->r, m, max_batch, threads);
    c->lo = rc < 0 ? NULL : calloc(m->act_floats, sizeof(float));
    c->hi = rc < 0 ? NULL : calloc(m->act_floats, sizeof(float));
    c->feat = rc < 0 ? NULL : malloc((size_t)max_batch * m->dim * sizeof(float));
    if (rc == 0 && (!c->lo || !c->hi || !c->feat))
        rc = mf_set_error(MF_ERR_NOMEM, "calibration: out of memory");
    if (rc < 0) {
        mf_calibration_free(c);
        return rc;
    }
    c->r->obs_lo = c->lo, c->r->obs_hi = c->hi;
    *out = c;
    return 0;
}

int mf_calibration_add(mf_calibration *c, int n, const uint8_t *bgr)
{
    int rc = mf_runner_forward(c->r, n, MF_MODEL_INPUT, MF_MODEL_INPUT, bgr, c->feat, NULL);
    if (rc == 0)
        c->faces += n;
    return rc;
}

int mf_calibration_faces(const mf_calibration *c) { return c->faces; }

void mf_calibration_free(mf_calibration *c)
{
    if (!c)
        return;
    mf_runner_free(c->r);
    free(c->lo), free(c->hi);
    free(c->feat);
    free(c);
}

int mf_model_set_calibration(mf_model *m, const mf_calibration *c)
{
    if (c->m != m || c->faces < 1)
        return mf_set_error(MF_ERR_ARG, "calibration: %s",
                            c->m != m ? "made for another model" : "no faces seen");
    size_t bytes = m->act_floats * sizeof(float);
    float *lo = malloc(bytes), *hi = malloc(bytes);
    unsigned char *layers = malloc(m->nconvs);
    if (!lo || !hi || !layers) {
        free(lo), free(hi), free(layers);
        return mf_set_error(MF_ERR_NOMEM, "calibration: out of memory");
    }
    memcpy(lo, c->lo, bytes), memcpy(hi, c->hi, bytes);
    /* Which layers int8 quantises. The 1x1 stride-2 shortcuts stay fp32: they feed the
     * residual stream directly (no small branch-end BatchNorm after them, no averaging
     * over 3x3 taps), and measured one layer at a time (iresnet18, 96 faces) each costs
     * 3-4x the cosine and magnitude error of a 3x3 layer: the four of them made 2/3 of
     * the network's int8 error for 1.2% of its multiply-adds. */
    memset(layers, 1, m->nconvs);
    for (int b = 0; b < m->nblocks; b++)
        if (m->block[b].down.w)
            layers[m->block[b].down.id] = 0;
    free(m->act_lo), free(m->act_hi), free(m->int8_layers);
    m->act_lo = lo, m->act_hi = hi, m->int8_layers = layers, m->calib_faces = c->faces;
    mf_iresnet_calibration_changed(m);
    return 0;
}
