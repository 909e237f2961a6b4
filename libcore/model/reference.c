/* reference.c - the slow, obvious iResNet forward pass on raw checkpoint tensors, op by
 * op as PyTorch runs it (BatchNorm, zero-padded direct convolution, PReLU, add): the
 * oracle that the fast engine (folded, packed, Winograd) is tested against. Sums are
 * accumulated in double. Only for tests: it allocates and is not fast. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include "mf/status.h"
#include "iresnet.h"

static const float *tensor(const mf_checkpoint *ck, const char *fmt, ...)
{
    char key[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof key, fmt, ap);
    va_end(ap);
    const mf_tensor *t = mf_checkpoint_find(ck, key);
    return t ? t->data : NULL;
}

static void bn(float *x, int c, int hw, const mf_checkpoint *ck, const char *prefix)
{
    const float *w = tensor(ck, "%s.weight", prefix), *b = tensor(ck, "%s.bias", prefix);
    const float *mean = tensor(ck, "%s.running_mean", prefix);
    const float *var = tensor(ck, "%s.running_var", prefix);
    for (int i = 0; i < c; i++) {
        float invstd = 1.0f / sqrtf(var[i] + 2e-5f), a = invstd * w[i], s = b[i] - mean[i] * a;
        for (int p = 0; p < hw; p++)
            x[(size_t)i * hw + p] = x[(size_t)i * hw + p] * a + s;
    }
}

static void prelu(float *x, int c, int hw, const float *slope)
{
    for (int i = 0; i < c; i++)
        for (int p = 0; p < hw; p++)
            if (x[(size_t)i * hw + p] < 0)
                x[(size_t)i * hw + p] *= slope[i];
}

/* out (cout, ho, ho) = conv(in (cin, h, h)), pad ks/2, no bias */
static int conv(float *out, const float *in, const float *w, int cin, int cout, int h, int ks,
                int stride)
{
    int pad = ks / 2, ho = (h + 2 * pad - ks) / stride + 1;
#pragma omp parallel for schedule(static)
    for (int o = 0; o < cout; o++)
        for (int y = 0; y < ho; y++)
            for (int x = 0; x < ho; x++) {
                double acc = 0;
                for (int c = 0; c < cin; c++)
                    for (int ky = 0; ky < ks; ky++)
                        for (int kx = 0; kx < ks; kx++) {
                            int iy = y * stride - pad + ky, ix = x * stride - pad + kx;
                            if (iy >= 0 && iy < h && ix >= 0 && ix < h)
                                acc += (double)w[(((size_t)o * cin + c) * ks + ky) * ks + kx] *
                                       in[((size_t)c * h + iy) * h + ix];
                        }
                out[((size_t)o * ho + y) * ho + x] = (float)acc;
            }
    return ho;
}

static int block(const mf_checkpoint *ck, const char *p, float *x, float *t, float *u,
                 float *sc, int cin, int cout, int h, int stride)
{
    char k[96];
    memcpy(t, x, (size_t)cin * h * h * sizeof *t);
    snprintf(k, sizeof k, "%s.bn1", p), bn(t, cin, h * h, ck, k);
    conv(u, t, tensor(ck, "%s.conv1.weight", p), cin, cout, h, 3, 1);
    snprintf(k, sizeof k, "%s.bn2", p), bn(u, cout, h * h, ck, k);
    prelu(u, cout, h * h, tensor(ck, "%s.prelu.weight", p));
    int ho = conv(t, u, tensor(ck, "%s.conv2.weight", p), cout, cout, h, 3, stride);
    snprintf(k, sizeof k, "%s.bn3", p), bn(t, cout, ho * ho, ck, k);
    const float *w = tensor(ck, "%s.downsample.0.weight", p);
    if (w) {
        conv(sc, x, w, cin, cout, h, 1, stride);
        snprintf(k, sizeof k, "%s.downsample.1", p), bn(sc, cout, ho * ho, ck, k);
    } else {
        memcpy(sc, x, (size_t)cout * ho * ho * sizeof *sc);
    }
    for (size_t i = 0; i < (size_t)cout * ho * ho; i++)
        x[i] = t[i] + sc[i];
    return ho;
}

static void one_image(const mf_checkpoint *ck, const float *img, float *feat, float *buf[4],
                      const mf_model *m)
{
    float *x = buf[0];
    conv(x, img, tensor(ck, "conv1.weight"), 3, m->stem, MF_MODEL_INPUT, 3, 1);
    bn(x, m->stem, MF_MODEL_INPUT * MF_MODEL_INPUT, ck, "bn1");
    prelu(x, m->stem, MF_MODEL_INPUT * MF_MODEL_INPUT, tensor(ck, "prelu.weight"));
    int h = MF_MODEL_INPUT, cin = m->stem;
    char p[32];
    for (int s = 0; s < 4; s++)
        for (int i = 0; i < m->blocks[s]; i++) {
            snprintf(p, sizeof p, "layer%d.%d", s + 1, i);
            h = block(ck, p, x, buf[1], buf[2], buf[3], cin, m->widths[s], h, i ? 1 : 2);
            cin = m->widths[s];
        }
    bn(x, cin, MF_HEAD_AREA, ck, "bn2");
    const float *w = tensor(ck, "fc.weight"), *b = tensor(ck, "fc.bias");
    for (int o = 0; o < m->dim; o++) {
        double acc = b[o];
        for (int i = 0; i < cin * MF_HEAD_AREA; i++)
            acc += (double)w[(size_t)o * cin * MF_HEAD_AREA + i] * x[i];
        feat[o] = (float)acc;
    }
    bn(feat, m->dim, 1, ck, "features");
}

int mf_iresnet_reference(const mf_checkpoint *ck, int n, const float *nchw, float *features)
{
    mf_model *m;
    int rc = mf_model_from_checkpoint(&m, ck, "reference", NULL);
    if (rc < 0)
        return rc;
    size_t most = (size_t)m->stem * MF_MODEL_INPUT * MF_MODEL_INPUT;
    for (int s = 0; s < 4; s++) {
        size_t h = MF_MODEL_INPUT >> s, a = (size_t)m->widths[s] * h * h;
        most = a > most ? a : most;
    }
    float *buf[4] = {0};
    for (int i = 0; i < 4; i++)
        if (!(buf[i] = malloc(most * sizeof(float))))
            rc = mf_set_error(MF_ERR_NOMEM, "reference: out of memory");
    for (int i = 0; rc == 0 && i < n; i++)
        one_image(ck, nchw + (size_t)i * 3 * MF_MODEL_INPUT * MF_MODEL_INPUT, features + (size_t)i * m->dim, buf, m);
    for (int i = 0; i < 4; i++)
        free(buf[i]);
    mf_model_free(m);
    return rc;
}
