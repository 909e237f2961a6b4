/* iresnet.c - build the engine's model from checkpoint tensors (architecture detection,
 * shape checks, BatchNorm folding, weight packing) and the model's accessors. */
#include "iresnet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "nn.h"

#define BN_EPS 2e-5f /* MagFace's BatchNorm eps (insightface uses 1e-5) */

static const struct {
    const char *name;
    int blocks[4];
} known_archs[] = {
    {"iresnet18", {2, 2, 2, 2}},
    {"iresnet34", {3, 4, 6, 3}},
    {"iresnet50", {3, 4, 14, 3}},
    {"iresnet100", {3, 13, 30, 3}},
};
#define N_ARCHS (sizeof known_archs / sizeof known_archs[0])

const char *mf_iresnet_arch_name(const int blocks[4])
{
    for (size_t i = 0; i < N_ARCHS; i++)
        if (!memcmp(known_archs[i].blocks, blocks, sizeof known_archs[i].blocks))
            return known_archs[i].name;
    return NULL;
}

/* stem 7 (conv, bn x5, prelu); 18 per block (3 bn x5, 2 conv, prelu); 6 per shortcut;
 * head 12 (bn2 x5, fc x2, features x5) */
size_t mf_iresnet_tensor_count(const int blocks[4])
{
    return 7 + 18 * (size_t)(blocks[0] + blocks[1] + blocks[2] + blocks[3]) + 4 * 6 + 12;
}

/* Winograd pays off once the depth fills the kernel; the 3-channel stem uses im2col. */
static int use_winograd(int cin, int ksize, int stride)
{
    return ksize == 3 && stride == 1 && cin >= 16;
}

static float *take(float *arena, size_t *at, size_t n)
{
    float *p = arena ? arena + *at : NULL;
    *at += mf_round_up(n, 16); /* keep every array 64-byte aligned */
    return p;
}

static void conv_layout(mf_conv *c, float *arena, size_t *at, int cin, int cout, int ksize,
                        int stride, int has_bn_in, int has_prelu)
{
    *c = (mf_conv){.cin = cin,
                   .cout = cout,
                   .ksize = ksize,
                   .stride = stride,
                   .winograd = use_winograd(cin, ksize, stride)};
    c->w = take(arena, at,
                c->winograd ? MF_WINO_E * mf_pack_a_size(cout, cin)
                            : mf_pack_a_size(cout, cin * ksize * ksize));
    c->bias = take(arena, at, cout);
    c->in_a = has_bn_in ? take(arena, at, cin) : NULL;
    c->in_b = has_bn_in ? take(arena, at, cin) : NULL;
    c->prelu = has_prelu ? take(arena, at, cout) : NULL;
}

size_t mf_iresnet_layout(struct mf_model *m, float *arena)
{
    size_t at = 0;
    conv_layout(&m->stem_conv, arena, &at, 3, m->stem, 3, 1, 0, 1);
    int cin = m->stem, b = 0;
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < m->blocks[s]; i++, b++) {
            int cout = m->widths[s], stride = i == 0 ? 2 : 1;
            mf_block *k = &m->block[b];
            conv_layout(&k->conv1, arena, &at, cin, cout, 3, 1, 1, 1);
            conv_layout(&k->conv2, arena, &at, cout, cout, 3, stride, 0, 0);
            if (stride != 1 || cin != cout)
                conv_layout(&k->down, arena, &at, cin, cout, 1, stride, 0, 0);
            else
                k->down = (mf_conv){0};
            cin = cout;
        }
    m->fc_w = take(arena, &at, mf_pack_a_size(m->dim, cin * MF_HEAD_AREA));
    m->fc_b = take(arena, &at, m->dim);
    return at;
}

int mf_iresnet_alloc(struct mf_model *m)
{
    const char *known = mf_iresnet_arch_name(m->blocks);
    int standard = m->stem == 64 && m->widths[0] == 64 && m->widths[1] == 128 &&
                   m->widths[2] == 256 && m->widths[3] == 512 && m->dim == 512;
    if (!known)
        return mf_set_error(MF_ERR_SCHEMA,
                            "stage blocks %d,%d,%d,%d match no iResNet "
                            "(18/34/50/100)",
                            m->blocks[0], m->blocks[1], m->blocks[2], m->blocks[3]);
    if (standard)
        snprintf(m->arch, sizeof m->arch, "%s", known);
    else
        snprintf(m->arch, sizeof m->arch, "%s-w%d-%d-%d-%d-%d-d%d", known, m->stem,
                 m->widths[0], m->widths[1], m->widths[2], m->widths[3], m->dim);
    snprintf(m->name, sizeof m->name, "magface-%s", m->arch);
    snprintf(m->preprocess, sizeof m->preprocess, "bgr_u8/255.0;112x112;aligned");
    m->nblocks = m->blocks[0] + m->blocks[1] + m->blocks[2] + m->blocks[3];
    m->block = calloc(m->nblocks, sizeof *m->block);
    if (!m->block)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %d blocks", m->nblocks);
    m->arena_floats = mf_iresnet_layout(m, NULL);
    m->arena = aligned_alloc(64, m->arena_floats * sizeof(float));
    if (!m->arena)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu MB of weights",
                            m->arena_floats * sizeof(float) >> 20);
    mf_iresnet_layout(m, m->arena);
    return 0;
}

/* ---- reading tensors -------------------------------------------------------------- */

typedef struct builder {
    const mf_checkpoint *ck;
    const char *file;
    size_t params;
    float *tmp; /* folded weights before packing, sized for the largest conv */
} builder;

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t at = snprintf(buf, len, "[");
    for (int i = 0; i < ndim && at < len; i++)
        at += snprintf(buf + at, len - at, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (at < len)
        snprintf(buf + at, len - at, "]");
}

/* The float tensor `key` with exactly this shape (its data), or NULL with an error. */
static const float *need(builder *bd, const char *key, int ndim, const int64_t *shape)
{
    char want[96], have[96];
    const mf_tensor *t = mf_checkpoint_find(bd->ck, key);
    shape_str(want, sizeof want, ndim, shape);
    if (!t) {
        mf_set_error(MF_ERR_SCHEMA, "%s: missing tensor '%s' (expected shape %s)", bd->file,
                     key, want);
        return NULL;
    }
    shape_str(have, sizeof have, t->ndim, t->shape);
    if (t->ndim != ndim || memcmp(t->shape, shape, ndim * sizeof *shape) || t->is_int) {
        mf_set_error(MF_ERR_SCHEMA, "%s: tensor '%s' has shape %s%s, expected %s", bd->file,
                     key, have, t->is_int ? " (integer)" : "", want);
        return NULL;
    }
    bd->params += t->numel;
    return t->data;
}

/* BatchNorm `prefix` as y = x*a + b, computed in float32 exactly as PyTorch's CPU
 * inference kernel does: invstd = 1/sqrt(var+eps), a = invstd*w, b = bias - mean*a. */
static int need_bn(builder *bd, const char *prefix, int c, float *a, float *b)
{
    static const char *part[4] = {"weight", "bias", "running_mean", "running_var"};
    const float *v[4];
    char key[160];
    int64_t shape[1] = {c};
    for (int i = 0; i < 4; i++) {
        snprintf(key, sizeof key, "%s.%s", prefix, part[i]);
        if (!(v[i] = need(bd, key, 1, shape)))
            return MF_ERR_SCHEMA;
    }
    for (int i = 0; i < c; i++) {
        float invstd = 1.0f / sqrtf(v[3][i] + BN_EPS);
        a[i] = invstd * v[0][i];
        b[i] = v[1][i] - v[2][i] * a[i];
    }
    return 0;
}

/* conv `wkey` followed by BatchNorm `bnkey`: fold the BN scale into the weights (in
 * double, rounded once), its shift becomes the bias; then pack. */
static int load_conv(builder *bd, mf_conv *c, const char *wkey, const char *bnkey)
{
    int64_t shape[4] = {c->cout, c->cin, c->ksize, c->ksize};
    size_t per = (size_t)c->cin * c->ksize * c->ksize;
    const float *w = need(bd, wkey, 4, shape);
    float *scale = bd->tmp + (size_t)c->cout * per;
    if (!w || need_bn(bd, bnkey, c->cout, scale, c->bias) < 0)
        return MF_ERR_SCHEMA;
    for (int k = 0; k < c->cout; k++)
        for (size_t i = 0; i < per; i++)
            bd->tmp[k * per + i] = (float)((double)w[k * per + i] * scale[k]);
    if (c->winograd)
        mf_winograd_weights(c->w, bd->tmp, c->cout, c->cin);
    else
        mf_pack_a(c->w, bd->tmp, c->cout, (int)per);
    return 0;
}

static int load_prelu(builder *bd, float *dst, const char *key, int c)
{
    int64_t shape[1] = {c};
    const float *w = need(bd, key, 1, shape);
    if (!w)
        return MF_ERR_SCHEMA;
    memcpy(dst, w, c * sizeof *dst);
    return 0;
}

static int load_block(builder *bd, mf_block *k, int stage, int i)
{
    char p[64], a[128], b[128];
    snprintf(p, sizeof p, "layer%d.%d", stage + 1, i);
#define KEY(buf, fmt) (snprintf(buf, sizeof buf, fmt, p), buf)
    if (need_bn(bd, KEY(a, "%s.bn1"), k->conv1.cin, k->conv1.in_a, k->conv1.in_b) < 0 ||
        load_conv(bd, &k->conv1, KEY(a, "%s.conv1.weight"), KEY(b, "%s.bn2")) < 0 ||
        load_prelu(bd, k->conv1.prelu, KEY(a, "%s.prelu.weight"), k->conv1.cout) < 0 ||
        load_conv(bd, &k->conv2, KEY(a, "%s.conv2.weight"), KEY(b, "%s.bn3")) < 0)
        return MF_ERR_SCHEMA;
    if (k->down.w && load_conv(bd, &k->down, KEY(a, "%s.downsample.0.weight"),
                               KEY(b, "%s.downsample.1")) < 0)
        return MF_ERR_SCHEMA;
#undef KEY
    return 0;
}

/* bn2 (per channel, before the flatten) and features (BatchNorm1d after fc) are both
 * affine maps around a linear layer, so they fold into it exactly up to rounding:
 * out = af*(W (a2*x + b2) + bias) + bf. Done in double. */
static int load_head(builder *bd, struct mf_model *m)
{
    int c = m->widths[3], dim = m->dim;
    size_t depth = (size_t)c * MF_HEAD_AREA;
    int64_t wshape[2] = {dim, (int64_t)depth}, bshape[1] = {dim};
    float *a2 = bd->tmp + (size_t)dim * depth, *b2 = a2 + c, *af = b2 + c, *bf = af + dim;
    const float *w, *bias;
    if (need_bn(bd, "bn2", c, a2, b2) < 0 || !(w = need(bd, "fc.weight", 2, wshape)) ||
        !(bias = need(bd, "fc.bias", 1, bshape)) || need_bn(bd, "features", dim, af, bf) < 0)
        return MF_ERR_SCHEMA;
    for (int o = 0; o < dim; o++) {
        double shift = bias[o];
        for (size_t i = 0; i < depth; i++) {
            shift += (double)w[o * depth + i] * b2[i / MF_HEAD_AREA];
            bd->tmp[o * depth + i] = (float)((double)w[o * depth + i] * a2[i / MF_HEAD_AREA] * af[o]);
        }
        m->fc_b[o] = (float)(shift * af[o] + bf[o]);
    }
    mf_pack_a(m->fc_w, bd->tmp, dim, (int)depth);
    return 0;
}

static int64_t dim0(const mf_checkpoint *ck, const char *key, int ndim)
{
    const mf_tensor *t = mf_checkpoint_find(ck, key);
    return t && t->ndim == ndim && t->shape[0] > 0 && t->shape[0] <= 65536 ? t->shape[0] : -1;
}

/* Blocks per stage (consecutive layerS.I.conv1 tensors), widths and embedding size. */
static int detect(struct mf_model *m, const mf_checkpoint *ck, const char *file)
{
    char key[64];
    if ((m->stem = (int)dim0(ck, "conv1.weight", 4)) < 0)
        return mf_set_error(MF_ERR_SCHEMA,
                            "%s: not an iResNet backbone: no usable tensor "
                            "'conv1.weight' among %zu tensors",
                            file, ck->count);
    for (int s = 0; s < 4; s++) {
        m->blocks[s] = 0;
        for (;; m->blocks[s]++) {
            snprintf(key, sizeof key, "layer%d.%d.conv1.weight", s + 1, m->blocks[s]);
            if (!mf_checkpoint_find(ck, key))
                break;
        }
        snprintf(key, sizeof key, "layer%d.0.conv1.weight", s + 1);
        if ((m->widths[s] = (int)dim0(ck, key, 4)) < 0)
            return mf_set_error(MF_ERR_SCHEMA, "%s: missing or bad tensor '%s'", file, key);
    }
    if ((m->dim = (int)dim0(ck, "fc.weight", 2)) < 0)
        return mf_set_error(MF_ERR_SCHEMA, "%s: missing or bad tensor 'fc.weight'", file);
    return 0;
}

int mf_iresnet_check_arch(const struct mf_model *m, size_t tensors, const char *file,
                          const char *expect)
{
    if (!expect || !strcmp(expect, m->arch))
        return 0;
    for (size_t i = 0; i < N_ARCHS; i++)
        if (!strcmp(known_archs[i].name, expect))
            return mf_set_error(MF_ERR_MISMATCH,
                                "%s: checkpoint has %zu backbone tensors "
                                "(%s), expected %zu (%s)",
                                file, tensors, m->arch,
                                mf_iresnet_tensor_count(known_archs[i].blocks), expect);
    return mf_set_error(MF_ERR_ARG,
                        "unknown architecture '%s' (iresnet18, iresnet34, "
                        "iresnet50 or iresnet100)",
                        expect);
}

static int build(struct mf_model *m, const mf_checkpoint *ck, const char *file)
{
    size_t most = (size_t)m->dim * m->widths[3] * MF_HEAD_AREA + 2 * (size_t)m->widths[3] + 2 * m->dim;
    for (int b = 0; b < m->nblocks; b++) {
        size_t c = (size_t)m->block[b].conv1.cout * m->block[b].conv1.cin * 9 +
                   (size_t)m->block[b].conv1.cout;
        size_t c2 = (size_t)m->block[b].conv2.cout * m->block[b].conv2.cin * 9 +
                    (size_t)m->block[b].conv2.cout;
        most = c > most ? c : most, most = c2 > most ? c2 : most;
    }
    builder bd = {.ck = ck, .file = file, .tmp = malloc(most * sizeof(float))};
    if (!bd.tmp)
        return mf_set_error(MF_ERR_NOMEM, "%s: out of memory", file);
    int rc = load_conv(&bd, &m->stem_conv, "conv1.weight", "bn1");
    if (rc == 0)
        rc = load_prelu(&bd, m->stem_conv.prelu, "prelu.weight", m->stem);
    for (int s = 0, b = 0; rc == 0 && s < 4; s++)
        for (int i = 0; rc == 0 && i < m->blocks[s]; i++, b++)
            rc = load_block(&bd, &m->block[b], s, i);
    if (rc == 0)
        rc = load_head(&bd, m);
    m->params = bd.params;
    free(bd.tmp);
    return rc;
}

int mf_model_from_checkpoint(mf_model **out, const mf_checkpoint *ck, const char *name,
                             const char *expect_arch)
{
    *out = NULL;
    struct mf_model *m = calloc(1, sizeof *m);
    if (!m)
        return mf_set_error(MF_ERR_NOMEM, "%s: out of memory", name);
    int rc = detect(m, ck, name);
    if (rc == 0 && (rc = mf_iresnet_alloc(m)) < 0)
        mf_wrap_error(rc, "%s", name);
    if (rc == 0)
        rc = mf_iresnet_check_arch(m, ck->count, name, expect_arch);
    if (rc == 0)
        rc = build(m, ck, name);
    if (rc < 0) {
        mf_model_free(m);
        return rc;
    }
    m->tensors = ck->count;
    *out = m;
    return 0;
}

void mf_model_free(mf_model *m)
{
    if (!m)
        return;
    free(m->arena);
    free(m->block);
    free(m);
}

const char *mf_model_arch(const mf_model *m) { return m->arch; }
const char *mf_model_name(const mf_model *m) { return m->name; }
const char *mf_model_sha256(const mf_model *m) { return m->sha256; }
const char *mf_model_preprocess(const mf_model *m) { return m->preprocess; }
int mf_model_dim(const mf_model *m) { return m->dim; }
size_t mf_model_params(const mf_model *m) { return m->params; }
size_t mf_model_tensors(const mf_model *m) { return m->tensors; }
size_t mf_model_bytes(const mf_model *m) { return m->arena_floats * sizeof(float); }

static double conv_macs(const mf_conv *c, int h)
{
    int o = mf_conv_out(h, c->ksize, c->stride);
    return (double)c->cout * c->cin * c->ksize * c->ksize * o * o;
}

double mf_model_macs(const mf_model *m)
{
    double macs = conv_macs(&m->stem_conv, MF_MODEL_INPUT);
    int h = MF_MODEL_INPUT;
    for (int b = 0; b < m->nblocks; b++) {
        const mf_block *k = &m->block[b];
        macs += conv_macs(&k->conv1, h) + conv_macs(&k->conv2, h);
        if (k->down.w)
            macs += conv_macs(&k->down, h);
        h = mf_conv_out(h, 3, k->conv2.stride);
    }
    return macs + (double)m->dim * m->widths[3] * MF_HEAD_AREA;
}
