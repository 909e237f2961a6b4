/* runner.c - the forward pass: per-run scratch allocated once, then stem, blocks and
 * head over the whole batch in CNHW layout (see nn/nn.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "iresnet.h"
#include "nn.h"

struct mf_runner {
    const mf_model *m;
    int max_batch, threads;
    float *buf[3]; /* activations, each buf_floats: block input, conv1 output, output */
    size_t buf_floats;
    float *scratch; /* per-thread packing / Winograd space, the largest layer's need */
    float *flat;    /* (max_batch, widths[3]*MF_HEAD_AREA) head input */
};

static mf_conv_shape shape_of(const mf_conv *c, int n, int h)
{
    return (mf_conv_shape){c->cin, c->cout, c->ksize, c->stride, n, h, h};
}

/* Largest activation (floats) and scratch over every layer, for a batch of n. */
static void plan(const mf_model *m, int n, int threads, size_t *act, size_t *scratch)
{
    const mf_conv *c = &m->stem_conv;
    mf_conv_shape s = shape_of(c, n, MF_MODEL_INPUT);
    size_t a = (size_t)c->cout * n * MF_MODEL_INPUT * MF_MODEL_INPUT;
    size_t sc = mf_conv_scratch_size(&s, c->winograd, threads);
    int h = MF_MODEL_INPUT;
    for (int b = 0; b < m->nblocks; b++) {
        const mf_block *k = &m->block[b];
        const mf_conv *cv[3] = {&k->conv1, &k->conv2, k->down.w ? &k->down : NULL};
        size_t y = (size_t)k->conv1.cout * n * h * h;
        a = y > a ? y : a;
        for (int i = 0; i < 3 && cv[i]; i++) {
            s = shape_of(cv[i], n, h);
            size_t need = mf_conv_scratch_size(&s, cv[i]->winograd, threads);
            sc = need > sc ? need : sc;
        }
        h = mf_conv_out(h, 3, k->conv2.stride);
    }
    size_t fc = mf_fc_scratch_size(n, m->widths[3] * MF_HEAD_AREA);
    *act = a;
    *scratch = fc > sc ? fc : sc;
}

int mf_runner_new(mf_runner **out, const mf_model *m, int max_batch, int threads)
{
    *out = NULL;
    if (max_batch < 1 || max_batch > 4096 || threads < 1 || threads > 1024)
        return mf_set_error(MF_ERR_ARG, "runner: batch %d or threads %d out of range",
                            max_batch, threads);
    mf_runner *r = calloc(1, sizeof *r);
    size_t scratch;
    if (!r)
        return mf_set_error(MF_ERR_NOMEM, "runner: out of memory");
    r->m = m, r->max_batch = max_batch, r->threads = threads;
    plan(m, max_batch, threads, &r->buf_floats, &scratch);
    r->buf_floats = mf_round_up(r->buf_floats, 16);
    size_t flat = mf_round_up((size_t)max_batch * m->widths[3] * MF_HEAD_AREA, 16);
    size_t total = 3 * r->buf_floats + mf_round_up(scratch, 16) + flat;
    float *mem = aligned_alloc(64, total * sizeof(float));
    if (!mem) {
        free(r);
        return mf_set_error(MF_ERR_NOMEM,
                            "runner: out of memory for %zu MB of scratch "
                            "(batch %d)",
                            total * sizeof(float) >> 20, max_batch);
    }
    for (int i = 0; i < 3; i++)
        r->buf[i] = mem + i * r->buf_floats;
    r->flat = mem + 3 * r->buf_floats;
    r->scratch = r->flat + flat;
    *out = r;
    return 0;
}

void mf_runner_free(mf_runner *r)
{
    if (!r)
        return;
    free(r->buf[0]);
    free(r);
}

static void run_conv(const mf_runner *r, const mf_conv *c, float *out, const float *in, int n,
                     int h, const float *residual)
{
    mf_conv_shape s = shape_of(c, n, h);
    mf_epilogue ep = {c->bias, c->prelu, residual};
    if (c->winograd)
        mf_conv_winograd(out, in, c->w, &s, c->in_a, c->in_b, &ep, r->scratch, r->threads);
    else
        mf_conv_im2col(out, in, c->w, &s, &ep, r->scratch, r->threads);
}

/* A bn1 before an im2col conv (narrow test networks) is applied to a copy. */
static const float *pre_affine(const mf_runner *r, const mf_conv *c, const float *in,
                               float *tmp, size_t plane)
{
    if (c->winograd || !c->in_a)
        return in;
    for (int ch = 0; ch < c->cin; ch++)
        for (size_t i = 0; i < plane; i++)
            tmp[ch * plane + i] = in[ch * plane + i] * c->in_a[ch] + c->in_b[ch];
    return tmp;
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
        size_t plane = (size_t)n * h * h;
        const float *xin = pre_affine(r, &k->conv1, x, o, plane);
        run_conv(r, &k->conv1, y, xin, n, h, NULL);
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
            memcpy(r->flat + ((size_t)i * c + ch) * MF_HEAD_AREA, x + ((size_t)ch * n + i) * MF_HEAD_AREA,
                   MF_HEAD_AREA * sizeof(float));
    mf_fc(features, r->flat, m->fc_w, m->fc_b, n, m->dim, c * MF_HEAD_AREA, r->scratch, r->threads);
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
    return 0;
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
    return 0;
}
