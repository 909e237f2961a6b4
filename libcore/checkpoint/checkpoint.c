/* checkpoint.c - from a torch.save file to named float32 tensors (see mf/checkpoint.h).
 *
 * The containers (pth_zip.c, pth_legacy.c) give a root object and storage blobs; here we
 * find the state_dict, choose the key prefix, and gather each kept tensor once into a
 * contiguous float32 array, bounds-checking its strided view against its storage. */
#include "mf/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pth.h"
#include "mf/status.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint storages are little-endian; this reader assumes a little-endian host"
#endif

/* Prefixes in order of preference; "features." alone is ambiguous (the backbone's own
 * BatchNorm1d is called "features"), so it is used only with a "features.conv1.weight". */
#define MAX_STRIDE ((uint64_t)1 << 40)

static const char *const known_prefixes[] = {"features.module.", "module.features.", "module.",
                                             "features."};

/* ---- element conversion ------------------------------------------------------------ */

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0 && mant == 0) {
        bits = sign;
    } else if (exp == 0) { /* subnormal: normalise the mantissa */
        exp = 113;
        while (!(mant & 0x400)) {
            mant <<= 1;
            exp--;
        }
        bits = sign | exp << 23 | (mant & 0x3ff) << 13;
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13;
    } else {
        bits = sign | (exp + 112) << 23 | mant << 13;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float element(pk_dtype dt, const uint8_t *p)
{
    union {
        float f;
        double d;
        int64_t i64;
        int32_t i32;
        int16_t i16;
        uint16_t u16;
        uint32_t u32;
    } u;
    switch (dt) {
    case PK_F32: memcpy(&u.f, p, 4); return u.f;
    case PK_F64: memcpy(&u.d, p, 8); return (float)u.d;
    case PK_F16: memcpy(&u.u16, p, 2); return half_to_float(u.u16);
    case PK_BF16:
        memcpy(&u.u16, p, 2);
        u.u32 = (uint32_t)u.u16 << 16;
        return u.f;
    case PK_I64: memcpy(&u.i64, p, 8); return (float)u.i64;
    case PK_I32: memcpy(&u.i32, p, 4); return (float)u.i32;
    case PK_I16: memcpy(&u.i16, p, 2); return (float)u.i16;
    case PK_I8: return (float)(int8_t)p[0];
    case PK_U8: return (float)p[0];
    case PK_BOOL8: return p[0] ? 1.0f : 0.0f;
    case PK_DT_UNKNOWN: break;
    }
    return 0.0f;
}

/* n elements, `stride` elements apart, from src into dst. */
static void convert_run(pk_dtype dt, size_t esz, const uint8_t *src, int64_t stride, size_t n,
                        float *dst)
{
    if (dt == PK_F32 && stride == 1) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (size_t i = 0; i < n; i++)
        dst[i] = element(dt, src + (size_t)stride * esz * i);
}

/* ---- one tensor -------------------------------------------------------------------- */

typedef struct tensor_view {
    const pk_value *t;   /* the PK_TENSOR */
    const uint8_t *base; /* element 0 of the storage */
    size_t esz;
    pk_dtype dtype;
} tensor_view;

/* Check the view against its storage; sets *numel. Every element the gather reads lies
 * in [offset, max_index] <= storage numel - 1, and the storage lies inside its blob. */
static int check_view(const pth_file *f, const pk_value *t, tensor_view *v, size_t *numel)
{
    const pk_value *st = t->u.tensor.storage;
    v->t = t;
    v->dtype = st->u.storage.dtype;
    v->esz = pk_dtype_size(v->dtype);
    if (!v->esz)
        return mf_set_error(MF_ERR_UNSUPPORTED, "unsupported dtype 'torch.%.*s'",
                            (int)st->u.storage.class_name.len, st->u.storage.class_name.s);
    const pth_blob *b = pth_find_blob(f, st->u.storage.key);
    if (!b)
        return mf_set_error(MF_ERR_FORMAT, "storage '%.*s' is missing",
                            (int)st->u.storage.key.len, st->u.storage.key.s);
    uint64_t end_el = (uint64_t)st->u.storage.base + (uint64_t)st->u.storage.numel;
    if (end_el < (uint64_t)st->u.storage.base || end_el > b->nbytes / v->esz)
        return mf_set_error(MF_ERR_FORMAT,
                            "storage '%.*s' too small: %zu bytes for %llu "
                            "elements of %zu bytes",
                            (int)st->u.storage.key.len, st->u.storage.key.s, b->nbytes,
                            (unsigned long long)end_el, v->esz);
    /* An empty storage has no data: NULL + 0 is undefined behaviour (UBSan, fuzzing) */
    v->base = b->data ? b->data + (size_t)st->u.storage.base * v->esz : NULL;
    uint64_t n = 1, last = (uint64_t)t->u.tensor.offset;
    for (int d = 0; d < t->u.tensor.ndim; d++) {
        uint64_t s = (uint64_t)t->u.tensor.size[d], step = (uint64_t)t->u.tensor.stride[d];
        if (s && n > UINT32_MAX * (uint64_t)UINT32_MAX / s)
            return mf_set_error(MF_ERR_LIMIT, "tensor has too many elements");
        n *= s;
        /* Bounded strides keep the gather's int64 position arithmetic far from overflow. */
        if (step > MAX_STRIDE || (s && step > (UINT64_MAX / 4 - last) / s))
            return mf_set_error(MF_ERR_FORMAT, "tensor stride %llu out of range",
                                (unsigned long long)step);
        if (s)
            last += (s - 1) * step;
    }
    if (n && last >= (uint64_t)st->u.storage.numel)
        return mf_set_error(MF_ERR_FORMAT,
                            "storage '%.*s' too small: the tensor reads "
                            "element %llu of %lld",
                            (int)st->u.storage.key.len, st->u.storage.key.s,
                            (unsigned long long)last, (long long)st->u.storage.numel);
    *numel = (size_t)n;
    return 0;
}

/* Walk the outer dimensions like an odometer, converting one innermost row at a time. */
static void gather(const tensor_view *v, float *dst)
{
    const pk_value *t = v->t;
    int nd = t->u.tensor.ndim;
    if (nd == 0) {
        dst[0] = element(v->dtype, v->base + (size_t)t->u.tensor.offset * v->esz);
        return;
    }
    const int64_t *size = t->u.tensor.size, *stride = t->u.tensor.stride;
    int64_t idx[MF_TENSOR_MAX_DIMS] = {0};
    size_t row = (size_t)size[nd - 1];
    int64_t pos = t->u.tensor.offset;
    for (;;) {
        convert_run(v->dtype, v->esz, v->base + (size_t)pos * v->esz, stride[nd - 1], row, dst);
        dst += row;
        int d = nd - 2;
        for (; d >= 0; d--) {
            pos += stride[d];
            if (++idx[d] < size[d])
                break;
            pos -= stride[d] * size[d];
            idx[d] = 0;
        }
        if (d < 0)
            return;
    }
}

static int build_tensor(const pth_file *f, const pk_value *t, mf_tensor *out, size_t *budget)
{
    tensor_view v = {0};
    size_t numel = 0;
    int rc = check_view(f, t, &v, &numel);
    if (rc < 0)
        return rc;
    if (numel > *budget)
        return mf_set_error(MF_ERR_LIMIT, "tensors expand to more elements than the file "
                                          "can plausibly hold");
    *budget -= numel;
    out->data = malloc((numel ? numel : 1) * sizeof(float));
    if (!out->data)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu floats", numel);
    if (numel)
        gather(&v, out->data);
    out->ndim = t->u.tensor.ndim;
    memcpy(out->shape, t->u.tensor.size, sizeof out->shape);
    out->numel = numel;
    out->is_int =
        v.dtype != PK_F32 && v.dtype != PK_F64 && v.dtype != PK_F16 && v.dtype != PK_BF16;
    return 0;
}

/* ---- the state_dict ---------------------------------------------------------------- */

static int has_prefix(pk_str s, const char *p)
{
    size_t n = strlen(p);
    return s.len >= n && !memcmp(s.s, p, n);
}

/* The prefix whose <prefix>conv1.weight exists, else the first that prefixes a key. */
static const char *choose_prefix(const pk_value *sd)
{
    const size_t np = sizeof known_prefixes / sizeof *known_prefixes;
    char probe[64];
    for (size_t p = 0; p < np; p++) {
        snprintf(probe, sizeof probe, "%sconv1.weight", known_prefixes[p]);
        if (pk_dict_get(sd, probe))
            return known_prefixes[p];
    }
    for (size_t p = 0; p + 1 < np; p++)
        for (size_t i = 0; i + 1 < sd->u.seq.n; i += 2) {
            const pk_value *k = sd->u.seq.items[i];
            if (k->type == PK_STR && has_prefix(k->u.str, known_prefixes[p]))
                return known_prefixes[p];
        }
    return "";
}

/* The backbone name of a state_dict entry, or 0 if the entry is to be dropped. */
static int keep_entry(const pk_value *k, const pk_value *v, const char *prefix, pk_str *name)
{
    if (k->type != PK_STR || v->type != PK_TENSOR || !has_prefix(k->u.str, prefix))
        return 0;
    size_t n = strlen(prefix);
    *name = (pk_str){k->u.str.s + n, k->u.str.len - n};
    if (!name->len || has_prefix(k->u.str, "parallel_fc.")) /* margin-head classifier */
        return 0;
    return 1;
}

static int find_state_dict(const pth_file *f, mf_checkpoint *ck, const pk_value **sd)
{
    const pk_value *root = f->root;
    if (root->type != PK_DICT)
        return mf_set_error(MF_ERR_FORMAT,
                            "not a checkpoint: the saved object is a %s, "
                            "not a dict",
                            pk_type_name(root->type));
    const pk_value *inner = pk_dict_get(root, "state_dict");
    if (!inner) {
        *sd = root;
        return 0;
    }
    if (inner->type != PK_DICT)
        return mf_set_error(MF_ERR_FORMAT, "'state_dict' is a %s, not a dict",
                            pk_type_name(inner->type));
    const pk_value *arch = pk_dict_get(root, "arch");
    if (arch && arch->type == PK_STR)
        snprintf(ck->arch, sizeof ck->arch, "%.*s", (int)arch->u.str.len, arch->u.str.s);
    *sd = inner;
    return 0;
}

static int extract(const pth_file *f, mf_checkpoint *ck, size_t budget)
{
    const pk_value *sd = NULL;
    int rc = find_state_dict(f, ck, &sd);
    if (rc < 0)
        return rc;
    const char *prefix = choose_prefix(sd);
    snprintf(ck->prefix, sizeof ck->prefix, "%s", prefix);
    size_t pairs = sd->u.seq.n / 2;
    ck->tensors = calloc(pairs ? pairs : 1, sizeof *ck->tensors);
    if (!ck->tensors)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < pairs; i++) {
        const pk_value *k = sd->u.seq.items[2 * i], *v = sd->u.seq.items[2 * i + 1];
        pk_str name;
        if (!keep_entry(k, v, prefix, &name)) {
            ck->dropped++;
            continue;
        }
        mf_tensor *t = &ck->tensors[ck->count];
        if (!(t->name = strndup(name.s, name.len)))
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        ck->count++;
        if ((rc = build_tensor(f, v, t, &budget)) < 0)
            return mf_wrap_error(rc, "tensor '%.*s'", (int)k->u.str.len, k->u.str.s);
    }
    if (!ck->count)
        return mf_set_error(MF_ERR_FORMAT, "not a checkpoint: no tensors in the state_dict");
    return 0;
}

/* ---- public API -------------------------------------------------------------------- */

static int load_container(pth_file *f, mf_checkpoint *ck, const uint8_t *buf, size_t len)
{
    if (len >= 4 && !memcmp(buf, "PK\x03\x04", 4)) {
        snprintf(ck->format, sizeof ck->format, "zip");
        return pth_zip_read(f, buf, len);
    }
    if (len >= 4 && !memcmp(buf, "PK", 2))
        return mf_set_error(MF_ERR_FORMAT, "zip archive is not a PyTorch checkpoint");
    if (len >= 2 && buf[0] == 0x80 && buf[1] == 2) {
        snprintf(ck->format, sizeof ck->format, "legacy");
        return pth_legacy_read(f, buf, len);
    }
    if (len < 4)
        return mf_set_error(MF_ERR_FORMAT, "truncated file (%zu bytes)", len);
    return mf_set_error(MF_ERR_FORMAT, "not a PyTorch checkpoint (neither zip nor legacy)");
}

int mf_checkpoint_load_mem(mf_checkpoint **out, const void *buf, size_t len, const char *name)
{
    *out = NULL;
    if (!buf && len)
        return mf_set_error(MF_ERR_ARG, "%s: no buffer", name);
    mf_checkpoint *ck = calloc(1, sizeof *ck);
    if (!ck)
        return mf_set_error(MF_ERR_NOMEM, "%s: out of memory", name);
    pth_file f;
    pth_init(&f);
    /* Non-overlapping views give at most one element per storage byte; allow 4x. */
    size_t budget = len > SIZE_MAX / 8 ? SIZE_MAX / 2 : 4 * len + 1024;
    int rc = load_container(&f, ck, buf, len);
    if (rc == 0)
        rc = pth_sort_blobs(&f);
    if (rc == 0)
        rc = extract(&f, ck, budget);
    pth_release(&f);
    if (rc < 0) {
        mf_checkpoint_free(ck);
        return mf_wrap_error(rc, "%s", name);
    }
    *out = ck;
    return 0;
}

int mf_checkpoint_load(mf_checkpoint **out, const char *path)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mf_set_error(MF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mf_set_error(MF_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return mf_set_error(MF_ERR_FORMAT, "%s: empty file", path);
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    if (map == MAP_FAILED)
        return mf_set_error(MF_ERR_IO, "cannot map '%s': %s", path, strerror(err));
    madvise(map, len, MADV_SEQUENTIAL);
    int rc = mf_checkpoint_load_mem(out, map, len, path);
    munmap(map, len);
    return rc;
}

const mf_tensor *mf_checkpoint_find(const mf_checkpoint *ck, const char *name)
{
    for (size_t i = 0; i < ck->count; i++)
        if (ck->tensors[i].name && !strcmp(ck->tensors[i].name, name))
            return &ck->tensors[i];
    return NULL;
}

void mf_checkpoint_free(mf_checkpoint *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; i < ck->count; i++) {
        free(ck->tensors[i].name);
        free(ck->tensors[i].data);
    }
    free(ck->tensors);
    free(ck);
}
