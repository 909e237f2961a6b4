/* native.c - model files: the native format (mf-convert's output), HDF5 state_dict
 * dumps, and the dispatcher mf_model_load that also takes PyTorch checkpoints.
 *
 * Native file (HDF5): root attributes mf_format="mfkit-model", mf_format_version=1,
 * arch, model, source_sha256, preprocess, blocks[4], widths[4], stem, dim, params,
 * tensors, kernel_rows (MF_MR: the packing depends on the build's kernel); one float32
 * dataset /weights holding the engine's arena (folded, packed,
 * Winograd-transformed weights). Its layout follows from blocks/widths/stem/dim alone
 * (mf_iresnet_layout), so loading is one read. */
#include <errno.h>
#include <math.h>
#include <hdf5.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h5.h"
#include "vec.h"
#include "mf/checkpoint.h"
#include "mf/durable.h"
#include "mf/status.h"
#include "iresnet.h"
#include "nn.h"

#define NATIVE_FORMAT "mfkit-model"
#define NATIVE_VERSION 1
#define MAX_TENSOR_FLOATS ((size_t)1 << 28)
#define MAX_DUMP_TENSORS 100000 /* an iresnet100 has 925 */

int mf_sha256_file(const char *path, char hex[65])
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return mf_set_error(MF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    size_t n;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(ctx, buf, n);
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (!ok)
        return mf_set_error(MF_ERR_IO, "cannot hash '%s'", path);
    for (unsigned i = 0; i < len; i++)
        sprintf(hex + 2 * i, "%02x", md[i]);
    return 0;
}

/* ---- native save ------------------------------------------------------------------ */

static int write_native(const mf_model *m, hid_t f)
{
    int64_t ver = NATIVE_VERSION, blocks[4], widths[4], mr = MF_MR;
    int64_t one[4] = {m->stem, m->dim, (int64_t)m->params, (int64_t)m->tensors};
    for (int i = 0; i < 4; i++)
        blocks[i] = m->blocks[i], widths[i] = m->widths[i];
    int rc = mf_h5_write_str_attr(f, "mf_format", NATIVE_FORMAT);
    if (rc == 0)
        rc = mf_h5_write_i64_attr(f, "mf_format_version", &ver, 1);
    const char *names[] = {"arch", "model", "source_sha256", "preprocess"};
    const char *values[] = {m->arch, m->name, m->sha256, m->preprocess};
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = mf_h5_write_str_attr(f, names[i], values[i]);
    if (rc == 0)
        rc = mf_h5_write_i64_attr(f, "blocks", blocks, 4);
    if (rc == 0)
        rc = mf_h5_write_i64_attr(f, "widths", widths, 4);
    const char *scalars[] = {"stem", "dim", "params", "tensors"};
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = mf_h5_write_i64_attr(f, scalars[i], &one[i], 1);
    if (rc == 0)
        rc = mf_h5_write_i64_attr(f, "kernel_rows", &mr, 1);
    if (rc < 0)
        return rc;
    hsize_t dims[1] = {m->arena_floats};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t d =
        H5Dcreate2(f, "weights", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m->arena) < 0)
        rc = mf_set_error(MF_ERR_IO, "cannot write /weights: %s", mf_h5_reason());
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(sp);
    return rc;
}

/* An output of the durable-output module: a reader never sees a half-written model, and
 * a crash leaves the old file (if any) intact. */
int mf_model_save(const mf_model *m, const char *path, int overwrite)
{
    mf_h5_quiet();
    mf_output *o;
    int rc =
        mf_output_open(&o, path, MF_OUTPUT_SEEKABLE | (overwrite ? MF_OUTPUT_OVERWRITE : 0));
    if (rc < 0)
        return rc;
    hid_t f = H5Fcreate(mf_output_temp(o), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    rc = f < 0 ? mf_h5_open_error(MF_ERR_IO, path, "create") : write_native(m, f);
    if (f >= 0 && H5Fclose(f) < 0 && rc == 0)
        rc = mf_set_error(MF_ERR_IO, "cannot close: %s", mf_h5_reason());
    if (rc < 0) {
        mf_output_abort(o);
        return mf_wrap_error(rc, "'%s'", path);
    }
    return mf_output_commit(o);
}

/* ---- native load ------------------------------------------------------------------ */

static int read_native(struct mf_model *m, hid_t f, const char *path)
{
    int64_t ver, blocks[4], widths[4], v[4], mr;
    char *sha = NULL;
    if (mf_h5_read_i64_attr(f, "mf_format_version", &ver, 1) != 1 || ver != NATIVE_VERSION)
        return mf_set_error(MF_ERR_UNSUPPORTED, "%s: unsupported native model version", path);
    if (mf_h5_read_i64_attr(f, "kernel_rows", &mr, 1) != 1 || mr != MF_MR)
        return mf_set_error(MF_ERR_UNSUPPORTED,
                            "%s: weights packed for %lld-row kernels, this "
                            "build uses %d (AVX-512 vs AVX2): convert the checkpoint again",
                            path, (long long)mr, MF_MR);
    const char *scalars[] = {"stem", "dim", "params", "tensors"};
    int ok = mf_h5_read_i64_attr(f, "blocks", blocks, 4) == 1 &&
             mf_h5_read_i64_attr(f, "widths", widths, 4) == 1;
    for (int i = 0; i < 4 && ok; i++)
        ok = mf_h5_read_i64_attr(f, scalars[i], &v[i], 1) == 1;
    ok = ok && mf_h5_read_str_attr(f, "source_sha256", &sha) == 0 && sha;
    if (ok)
        snprintf(m->sha256, sizeof m->sha256, "%s", sha);
    free(sha);
    if (!ok)
        return mf_set_error(MF_ERR_FORMAT, "%s: native model lacks its shape attributes", path);
    for (int i = 0; i < 4; i++) {
        if (blocks[i] < 1 || blocks[i] > 64 || widths[i] < 1 || widths[i] > 4096)
            return mf_set_error(MF_ERR_FORMAT,
                                "%s: implausible stage %d (%lld blocks, width "
                                "%lld)",
                                path, i + 1, (long long)blocks[i], (long long)widths[i]);
        m->blocks[i] = (int)blocks[i], m->widths[i] = (int)widths[i];
    }
    if (v[0] < 1 || v[0] > 4096 || v[1] < 1 || v[1] > 65536 || v[2] < 0 || v[3] < 0)
        return mf_set_error(MF_ERR_FORMAT, "%s: implausible stem/dim attributes", path);
    m->stem = (int)v[0], m->dim = (int)v[1], m->params = v[2], m->tensors = v[3];
    int rc = mf_iresnet_alloc(m);
    if (rc < 0)
        return mf_wrap_error(rc, "%s", path);
    hid_t d = H5Dopen2(f, "weights", H5P_DEFAULT), sp = d < 0 ? -1 : H5Dget_space(d);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    rc = n == (hssize_t)m->arena_floats &&
                 H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m->arena) >= 0
             ? 0
             : -1;
    if (sp >= 0)
        H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
    if (rc < 0)
        return mf_set_error(MF_ERR_FORMAT, "%s: /weights has %lld floats, %s needs %zu", path,
                            (long long)n, m->arch, m->arena_floats);
    return 0;
}

/* ---- HDF5 state_dict dump (/tensors/<key>, e.g. written with h5py) ----------------- */

typedef struct dump {
    mf_checkpoint *ck;
    size_t cap;
    int rc;
    const char *path;
} dump;

static herr_t dump_one(hid_t g, const char *name, const H5L_info_t *info, void *ctx)
{
    dump *du = ctx;
    hsize_t dims[MF_TENSOR_MAX_DIMS];
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0)
        return 0; /* not a dataset: ignore */
    hid_t sp = H5Dget_space(d), ty = H5Dget_type(d);
    int nd = H5Sget_simple_extent_ndims(sp), cls = H5Tget_class(ty);
    size_t numel = 1;
    if (nd < 0 || nd > MF_TENSOR_MAX_DIMS || (cls != H5T_FLOAT && cls != H5T_INTEGER)) {
        du->rc = mf_set_error(MF_ERR_FORMAT, "%s: tensor '%s' is not numeric", du->path, name);
    } else {
        H5Sget_simple_extent_dims(sp, dims, NULL);
        for (int i = 0; i < nd; i++)
            numel = dims[i] > MAX_TENSOR_FLOATS || numel * dims[i] > MAX_TENSOR_FLOATS
                        ? MAX_TENSOR_FLOATS + 1
                        : numel * dims[i];
        if (numel > MAX_TENSOR_FLOATS)
            du->rc = mf_set_error(MF_ERR_LIMIT, "%s: tensor '%s' too large", du->path, name);
    }
    int grown = du->rc == 0 ? MF_GROW_MAX(du->ck->tensors, du->cap, du->ck->count + 1,
                                          MAX_DUMP_TENSORS, "tensors")
                            : 0;
    if (grown < 0)
        du->rc = mf_wrap_error(grown, "%s", du->path);
    if (du->rc == 0) {
        mf_tensor *t = &du->ck->tensors[du->ck->count];
        *t = (mf_tensor){.name = strdup(name),
                         .ndim = nd,
                         .numel = numel,
                         .data = malloc((numel ? numel : 1) * sizeof(float)),
                         .is_int = cls == H5T_INTEGER};
        for (int i = 0; i < nd; i++)
            t->shape[i] = (int64_t)dims[i];
        du->ck->count++;
        if (!t->name || !t->data ||
            H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
            du->rc = mf_set_error(MF_ERR_FORMAT, "%s: cannot read tensor '%s': %s", du->path,
                                  name, mf_h5_reason());
    }
    H5Tclose(ty), H5Sclose(sp), H5Dclose(d);
    return du->rc < 0 ? -1 : 0;
}

int mf_iresnet_load_dump(mf_checkpoint **out, const char *path)
{
    return mf_iresnet_load_group(out, path, "tensors");
}

int mf_iresnet_load_group(mf_checkpoint **out, const char *path, const char *group)
{
    *out = NULL;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mf_h5_open_error(MF_ERR_FORMAT, path, "open");
    dump du = {.ck = calloc(1, sizeof(mf_checkpoint)), .path = path};
    hid_t g = H5Lexists(f, group, H5P_DEFAULT) > 0 ? H5Gopen2(f, group, H5P_DEFAULT) : -1;
    if (!du.ck)
        du.rc = mf_set_error(MF_ERR_NOMEM, "%s: out of memory", path);
    else if (g < 0)
        du.rc = mf_set_error(MF_ERR_SCHEMA, "%s: neither a native model nor a /%s dump", path,
                             group);
    else if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, dump_one, &du) < 0 && !du.rc)
        du.rc = mf_set_error(MF_ERR_FORMAT, "%s: cannot list /tensors", path);
    if (g >= 0)
        H5Gclose(g);
    H5Fclose(f);
    if (du.rc < 0) {
        mf_checkpoint_free(du.ck);
        return du.rc;
    }
    snprintf(du.ck->format, sizeof du.ck->format, "hdf5");
    *out = du.ck;
    return 0;
}

/* ---- the dispatcher ---------------------------------------------------------------- */

static int is_hdf5(const char *path)
{
    unsigned char sig[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return mf_set_error(MF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t n = fread(sig, 1, sizeof sig, f);
    fclose(f);
    return n == 8 && !memcmp(sig, "\x89HDF\r\n\x1a\n", 8);
}

static int load_native(mf_model **out, const char *path)
{
    char *fmt = NULL;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mf_h5_open_error(MF_ERR_FORMAT, path, "open");
    int native =
        mf_h5_read_str_attr(f, "mf_format", &fmt) == 0 && fmt && !strcmp(fmt, NATIVE_FORMAT);
    free(fmt);
    int rc = 1;
    if (native) {
        struct mf_model *m = calloc(1, sizeof *m);
        rc = m ? read_native(m, f, path) : mf_set_error(MF_ERR_NOMEM, "out of memory");
        if (rc < 0)
            mf_model_free(m);
        else
            *out = m;
    }
    H5Fclose(f);
    return rc; /* 1: not native */
}

/* Weights that are NaN or Inf (a corrupt or diverged checkpoint, or finite weights that
 * overflow once BatchNorm is folded in) would turn every embedding into NaN: refuse the
 * model instead. */
static int check_finite(const mf_model *m, const char *path)
{
    size_t bad = 0;
    for (size_t i = 0; i < m->arena_floats; i++)
        bad += !isfinite(m->arena[i]);
    if (bad)
        return mf_set_error(MF_ERR_FORMAT,
                            "%s: %zu weights are NaN or infinite (after folding BatchNorm): "
                            "the checkpoint is corrupt or its training diverged",
                            path, bad);
    return 0;
}

int mf_model_load(mf_model **out, const char *path, const char *expect_arch)
{
    *out = NULL;
    mf_checkpoint *ck = NULL;
    char sha[65];
    int hdf5 = is_hdf5(path), rc = hdf5 < 0 ? hdf5 : 0;
    mf_h5_quiet(); /* our messages, not HDF5's stack dumps */
    if (rc == 0 && hdf5 && (rc = load_native(out, path)) == 0)
        rc = mf_iresnet_check_arch(*out, (*out)->tensors, path, expect_arch);
    else if (rc == 1)
        rc = mf_iresnet_load_dump(&ck, path);
    else if (rc == 0 && !hdf5)
        rc = mf_checkpoint_load(&ck, path);
    if (rc == 0 && ck)
        rc = mf_model_from_checkpoint(out, ck, path, expect_arch);
    mf_checkpoint_free(ck);
    if (rc == 0)
        rc = check_finite(*out, path);
    if (rc == 0 && !(*out)->sha256[0] && (rc = mf_sha256_file(path, sha)) == 0)
        memcpy((*out)->sha256, sha, sizeof sha);
    if (rc < 0) {
        mf_model_free(*out);
        *out = NULL;
    }
    return rc;
}
