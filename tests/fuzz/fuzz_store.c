/* fuzz_store.c - libFuzzer harness for the store reader: mf_store_open (schema
 * validation) and every column read back (embedding, magnitude, label, /cluster, ids,
 * /failed, label names, the attributes tools read).
 *
 * Structure-aware by default: the input is a recipe for a well-formed HDF5 file, written
 * through the HDF5 API: which datasets exist, their types (float32/64, int8..64, fixed or
 * variable-length strings), ranks and lengths (off by one on purpose), their bytes (NaN,
 * Inf, huge labels, strings that are not UTF-8), and the root attributes (mf_format,
 * mf_format_version, dim, the committed-rows mark) with right and wrong types and values.
 * That is everything mfkit itself decides about a store.
 *
 * Why not the raw bytes: libhdf5 1.10.8 itself crashes on damaged files, before mfkit sees
 * any data (issue 12 item 6, docs/FUZZING.md): fuzzing the bytes found, within minutes,
 * heap overruns in H5HG_read (global heap: variable-length strings), in attribute message
 * decoding (H5O__msg_iterate_real from H5Aexists, ending in a SEGV) and an endless loop in
 * the global heap loader. Those are reproducible with MF_FUZZ_STORE_RAW=1 (the input is
 * the file), which is not part of the smoke: it fails on libhdf5 within a minute. */
#include "fuzz_util.h"
#include "mf/status.h"
#include "mf/store.h"

#include <hdf5.h>

#define BLOCK 64 /* rows per read: bounds what one call allocates */

/* ---- reading the recipe ------------------------------------------------------------ */

typedef struct recipe {
    const uint8_t *p;
    size_t n;
} recipe;

static unsigned take(recipe *r, unsigned mod)
{
    unsigned v = r->n ? *r->p : 0;
    if (r->n)
        r->p++, r->n--;
    return mod ? v % mod : v;
}

static void take_bytes(recipe *r, void *dst, size_t n)
{
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = (uint8_t)take(r, 0);
}

/* ---- writing the file -------------------------------------------------------------- */

enum { T_F32, T_F64, T_I64, T_I32, T_U8, T_VSTR, T_FSTR, T_COUNT };

static hid_t h5_type(int t)
{
    switch (t) {
    case T_F32: return H5Tcopy(H5T_NATIVE_FLOAT);
    case T_F64: return H5Tcopy(H5T_NATIVE_DOUBLE);
    case T_I64: return H5Tcopy(H5T_NATIVE_INT64);
    case T_I32: return H5Tcopy(H5T_NATIVE_INT32);
    case T_U8: return H5Tcopy(H5T_NATIVE_UINT8);
    default: {
        hid_t s = H5Tcopy(H5T_C_S1);
        H5Tset_size(s, t == T_VSTR ? H5T_VARIABLE : 6);
        H5Tset_cset(s, H5T_CSET_UTF8);
        return s;
    }
    }
}

/* A dataset `name` of type t with dims[0..rank): its bytes from the recipe. */
static void write_dataset(hid_t file, recipe *r, const char *name, int t, int rank,
                          const hsize_t *dims)
{
    hsize_t count = rank == 2 ? dims[0] * dims[1] : dims[0];
    hid_t ty = h5_type(t), sp = H5Screate_simple(rank, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(file, name, ty, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (ds >= 0 && t == T_VSTR) {
        char **v = calloc(count ? count : 1, sizeof *v);
        for (hsize_t i = 0; v && i < count; i++) {
            size_t len = take(r, 12);
            v[i] = calloc(len + 1, 1);
            if (v[i])
                for (size_t k = 0; k < len; k++)
                    v[i][k] = (char)(take(r, 255) + 1); /* any byte but NUL */
        }
        if (v)
            H5Dwrite(ds, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        for (hsize_t i = 0; v && i < count; i++)
            free(v[i]);
        free(v);
    } else if (ds >= 0) {
        size_t bytes = (size_t)count * H5Tget_size(ty);
        uint8_t *b = calloc(bytes ? bytes : 1, 1);
        if (b) {
            take_bytes(r, b, bytes);
            H5Dwrite(ds, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, b);
        }
        free(b);
    }
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(lcpl);
    H5Sclose(sp);
    H5Tclose(ty);
}

static void int_attr(hid_t file, const char *name, long long v, int as_string)
{
    hid_t sp = H5Screate(H5S_SCALAR),
          ty = as_string ? h5_type(T_FSTR) : H5Tcopy(H5T_NATIVE_LLONG);
    hid_t a = H5Acreate2(file, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    char text[8] = "12";
    if (a >= 0)
        H5Awrite(a, ty, as_string ? (void *)text : (void *)&v);
    if (a >= 0)
        H5Aclose(a);
    H5Tclose(ty);
    H5Sclose(sp);
}

static void str_attr(hid_t file, const char *name, const char *v, int variable)
{
    hid_t sp = H5Screate(H5S_SCALAR), ty = H5Tcopy(H5T_C_S1);
    H5Tset_size(ty, variable ? H5T_VARIABLE : strlen(v) + 1);
    hid_t a = H5Acreate2(file, name, ty, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0)
        H5Awrite(a, ty, variable ? (void *)&v : (void *)v);
    if (a >= 0)
        H5Aclose(a);
    H5Tclose(ty);
    H5Sclose(sp);
}

static long long small_value(recipe *r)
{
    static const long long v[] = {0, 1, 2, 3, 4, -1, 1 << 20, 1LL << 40, 9, 5};
    return v[take(r, 10)];
}

/* The root attributes: right most of the time, wrong in type or value otherwise. */
static void write_attrs(hid_t file, recipe *r, int dim, hsize_t rows)
{
    unsigned f = take(r, 0);
    if (f & 1)
        str_attr(file, "mf_format", f & 2 ? "mfkit-store" : "mfkit-st\xff", f & 4);
    if (f & 8)
        int_attr(file, "mf_format_version", f & 16 ? 1 : small_value(r), f & 32);
    if (f & 64)
        int_attr(file, "dim", f & 128 ? dim : small_value(r), 0);
    unsigned g = take(r, 0);
    if (g & 1)
        int_attr(file, "mf_rows_committed",
                 g & 2 ? (long long)rows - (g & 4 ? 1 : 0) : small_value(r), g & 8);
    if (g & 16)
        str_attr(file, "model", "fuzz\xc3", g & 32);
    if (g & 64)
        str_attr(file, "mf_filter", "{\"magnitude_cut\": 1e999}", g & 128);
}

/* A store from the recipe at `path`; returns 0 if HDF5 wrote it. */
static int write_store(const char *path, recipe *r)
{
    /* no raw-data chunk cache: a 1 MB cache per dataset costs more than the whole file */
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_cache(fapl, 0, 0, 0, 0.0);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (file < 0)
        return -1;
    hsize_t rows = take(r, 9);
    int dim = (int)take(r, 5);
    static const struct {
        const char *name;
        int rank, type;
    } cols[] = {
        {"embedding", 2, T_F32},      {"magnitude", 1, T_F32},   {"id", 1, T_VSTR},
        {"label", 1, T_I64},          {"cluster", 1, T_I64},     {"failed/id", 1, T_VSTR},
        {"failed/reason", 1, T_VSTR}, {"labels/name", 1, T_VSTR}};
    for (size_t c = 0; c < sizeof cols / sizeof *cols; c++) {
        unsigned how = take(r, 0);
        if (c >= 4 && !(how & 1))
            continue; /* optional column absent */
        if (c < 4 && (how & 0xf0) == 0xf0)
            continue; /* required column missing, now and then */
        int type = how & 2 ? (int)take(r, T_COUNT) : cols[c].type;
        int rank = how & 4 ? 3 - cols[c].rank : cols[c].rank;
        hsize_t dims[2] = {c >= 5 ? take(r, 4) : rows, (hsize_t)dim};
        if (how & 8)
            dims[0] = dims[0] ? dims[0] - 1 : 1; /* one row short (or long) */
        if (rank == 2 && (how & 16))
            dims[1] = dim + 1;
        write_dataset(file, r, cols[c].name, type, rank, dims);
    }
    write_attrs(file, r, dim, rows);
    return H5Fclose(file) < 0 ? -1 : 0;
}

/* ---- reading it back, as the tools do ---------------------------------------------- */

static void read_rows(mf_store *s)
{
    uint64_t rows = mf_store_rows(s);
    int dim = mf_store_dim(s);
    if (dim <= 0 || dim > (1 << 20))
        abort(); /* validated by mf_store_open */
    float *emb = malloc((size_t)BLOCK * (size_t)dim * sizeof *emb), mag[BLOCK];
    int64_t lab[BLOCK];
    char *ids[BLOCK];
    int has_cluster = mf_store_has(s, "cluster");
    for (uint64_t at = 0; emb && at < rows && at < 100000; at += BLOCK) {
        size_t n = rows - at < BLOCK ? (size_t)(rows - at) : BLOCK;
        mf_store_read_embedding(s, at, n, emb);
        mf_store_read_magnitude(s, at, n, mag);
        mf_store_read_label(s, at, n, lab);
        if (has_cluster)
            mf_store_read_int64(s, "cluster", at, n, lab);
        if (mf_store_read_ids(s, at, n, ids) == 0)
            mf_store_free_strings(ids, n);
    }
    free(emb);
}

static void read_rest(mf_store *s)
{
    static const char *attrs[] = {"model",        "model_sha256", "preprocess",
                                  "tool_version", "mf_filter",    "mf_embed_job"};
    for (size_t i = 0; i < sizeof attrs / sizeof *attrs; i++)
        mf_store_attr(s, attrs[i]);
    for (uint64_t i = 0; i < mf_store_failed_count(s) && i < 1000; i++) {
        char *id, *reason;
        if (mf_store_read_failed(s, i, &id, &reason) == 0) {
            free(id);
            free(reason);
        }
    }
    for (uint64_t i = 0; i < mf_store_label_name_count(s) && i < 1000; i++)
        free(mf_store_label_name(s, i));
}

static int raw_mode = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *e = getenv("MF_FUZZ_STORE_RAW");
    raw_mode = e && !strcmp(e, "1");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* HDF5 keeps freed blocks on free lists of its own, which grow with every odd file:
     * with no free-list caching every block goes back to malloc at once, so the process
     * stays within libFuzzer's RSS limit over a long run (and ASan sees every block). */
    H5set_free_list_limits(0, 0, 0, 0, 0, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path;
    if (raw_mode)
        path = fuzz_write("f.h5", data, size);
    else {
        recipe r = {data, size};
        path = fuzz_path("f.h5");
        if (write_store(path, &r) < 0)
            return 0;
    }
    mf_store *s;
    if (mf_store_open(&s, path) < 0) {
        if (!mf_last_error()[0])
            abort();
        return 0;
    }
    read_rows(s);
    read_rest(s);
    mf_store_close(s);
    return 0;
}
