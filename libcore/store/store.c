/* store.c - open, create, validate, resume and commit embedding stores.
 *
 * Durability model: a writer works on a temporary file owned by the durable-output
 * module (mf/durable.h): "<path>.partial" for a resumable job, a run-owned name
 * otherwise. mf_store_flush() makes the rows written so far durable in two steps: first
 * HDF5 writes its buffers and the file is fsynced, then the root attribute
 * mf_rows_committed is raised and the file flushed and fsynced again. So the mark never
 * covers a row whose bytes are not on disk (a full disk in the first step leaves the old
 * mark). A killed writer leaves a file that reopens with every committed row (an HDF5
 * file killed without a flush may not open at all; docs/FORMAT.md, "Crash safety");
 * rows after the mark are cut off on resume,
 * and the last committed rows are checked (finite, magnitude = norm) before trusting
 * them. mf_store_commit() closes the file and lets the durable module publish it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mf/durable.h"
#include "mf/log.h"
#include "mf/status.h"
#include "h5.h"
#include "store_internal.h"
#include "vec.h"

#ifndef MF_VERSION_STRING
#define MF_VERSION_STRING "0.0.0"
#endif

mf_store_params mf_store_default_params(void)
{
    mf_store_params p = {0};
    p.dim = 512;
    p.chunk_rows = MF_STORE_DEFAULT_CHUNK;
    return p;
}

uint64_t mf_store_length(hid_t ds)
{
    hsize_t dims[2] = {0, 0};
    hid_t sp = H5Dget_space(ds);
    if (sp < 0)
        return 0;
    int rank = H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    return rank >= 1 ? dims[0] : 0;
}

int mf_store_extend(hid_t ds, uint64_t rows)
{
    hsize_t dims[2] = {0, 0};
    hid_t sp = H5Dget_space(ds);
    int rank = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0)
        H5Sclose(sp);
    if (rank < 1)
        return mf_set_error(MF_ERR_INTERNAL, "cannot read a dataset's shape");
    dims[0] = rows;
    if (H5Dset_extent(ds, dims) < 0)
        return mf_set_error(MF_ERR_IO, "cannot resize a dataset to %llu rows: %s",
                            (unsigned long long)rows, mf_h5_reason());
    return 0;
}

hid_t mf_store_create_dataset(hid_t loc, const char *name, hid_t type, uint64_t cols,
                              size_t chunk_rows)
{
    int rank = cols ? 2 : 1;
    hsize_t dims[2] = {0, cols}, maxdims[2] = {H5S_UNLIMITED, cols};
    hsize_t chunk[2] = {chunk_rows ? chunk_rows : MF_STORE_DEFAULT_CHUNK, cols};
    if (!cols && !chunk_rows)
        chunk[0] = MF_STORE_COLUMN_CHUNK; /* 1-D columns are small: fewer, larger chunks */
    hid_t sp = H5Screate_simple(rank, dims, maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    /* Rows a merge adds from stores lacking this column read as -1 / NaN, not 0. */
    if (H5Tget_class(type) == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_2) {
        long long fill = -1;
        H5Pset_fill_value(dcpl, H5T_NATIVE_LLONG, &fill);
    } else if (H5Tget_class(type) == H5T_FLOAT) {
        double fill = 0.0 / 0.0;
        H5Pset_fill_value(dcpl, H5T_NATIVE_DOUBLE, &fill);
    }
    hid_t ds = H5Dcreate2(loc, name, type, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    return ds;
}

int mf_store_rw_rows(hid_t ds, hid_t mem_type, uint64_t start, size_t n, uint64_t cols,
                     void *buf, int write)
{
    int rank = cols ? 2 : 1;
    hsize_t off[2] = {start, 0}, cnt[2] = {n, cols};
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(rank, cnt, NULL);
    herr_t st = H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL);
    if (st >= 0)
        st = write ? H5Dwrite(ds, mem_type, ms, fs, H5P_DEFAULT, buf)
                   : H5Dread(ds, mem_type, ms, fs, H5P_DEFAULT, buf);
    H5Sclose(ms);
    H5Sclose(fs);
    return st < 0 ? mf_set_error(write ? MF_ERR_IO : MF_ERR_FORMAT, "%s failed: %s",
                                 write ? "write" : "read", mf_h5_reason())
                  : 0;
}

static mf_store *store_alloc(const char *path, int writable)
{
    mf_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->file = s->emb = s->mag = s->id = s->label = -1;
    s->failed_id = s->failed_reason = -1;
    s->writable = writable;
    s->path = strdup(path);
    if (!s->path) {
        free(s);
        return NULL;
    }
    return s;
}

/* Close every HDF5 handle (datasets first, so the file really closes). Returns -1 if
 * closing the file failed. The output, if any, is left to the caller. */
static int close_handles(mf_store *s)
{
    hid_t *ids[] = {&s->emb, &s->mag, &s->id, &s->label, &s->failed_id, &s->failed_reason};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        if (*ids[i] >= 0)
            H5Dclose(*ids[i]), *ids[i] = -1;
    int rc = 0;
    if (s->file >= 0 && H5Fclose(s->file) < 0)
        rc = -1;
    s->file = -1;
    return rc;
}

static void store_release(mf_store *s)
{
    close_handles(s);
    for (size_t i = 0; i < s->n_checked; i++)
        free(s->checked[i]);
    free(s->checked);
    for (size_t i = 0; i < s->n_attrs; i++) {
        free(s->attrs[i].name);
        free(s->attrs[i].value);
    }
    free(s->attrs);
    free(s->path);
    free(s);
}

/* ---- strings that libhdf5 might crash on ---------------------------------------------- */

static int read_strings_child(void *ctx) { return mf_h5_read_all_strings(*(hid_t *)ctx); }

int mf_store_check_strings(mf_store *s, hid_t ds, const char *name)
{
    for (size_t i = 0; i < s->n_checked; i++)
        if (strcmp(s->checked[i], name) == 0)
            return 0;
    hid_t t = H5Dget_type(ds);
    int vlen = t >= 0 && H5Tis_variable_str(t) > 0;
    if (t >= 0)
        H5Tclose(t);
    char what[300];
    snprintf(what, sizeof what, "'/%s'", name);
    int rc = vlen ? mf_h5_isolated(read_strings_child, &ds, NULL, what) : 0;
    char *copy = rc == 0 ? strdup(name) : NULL;
    if (copy && MF_GROW(s->checked, s->cap_checked, s->n_checked + 1, "names") == 0)
        s->checked[s->n_checked++] = copy;
    else
        free(copy); /* forgetting means checking again: slower, never wrong */
    return rc;
}

static int read_attrs_child(void *ctx) { return mf_h5_read_all_attrs(*(hid_t *)ctx); }

/* ---- validation -------------------------------------------------------------------- */

/* Open /name and check its class and rank; errors name the file and the dataset. */
static int open_checked(mf_store *s, const char *name, H5T_class_t cls, int rank, hid_t *out)
{
    static const char *class_words[] = {
        [H5T_INTEGER] = "integer", [H5T_FLOAT] = "float", [H5T_STRING] = "string"};
    if (H5Lexists(s->file, name, H5P_DEFAULT) <= 0)
        return mf_set_error(MF_ERR_SCHEMA, "'%s': missing dataset '/%s'", s->path, name);
    hid_t ds = H5Dopen2(s->file, name, H5P_DEFAULT);
    if (ds < 0)
        return mf_set_error(MF_ERR_SCHEMA, "'%s': '/%s' is not a dataset", s->path, name);
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    int r = H5Sget_simple_extent_ndims(sp);
    H5T_class_t c = H5Tget_class(t);
    H5Tclose(t);
    H5Sclose(sp);
    if (c != cls) {
        H5Dclose(ds);
        return mf_set_error(MF_ERR_SCHEMA, "'%s': '/%s' has the wrong type (expected %s)",
                            s->path, name, class_words[cls]);
    }
    if (r != rank) {
        H5Dclose(ds);
        return mf_set_error(MF_ERR_SCHEMA, "'%s': '/%s' has %d dimensions, expected %d",
                            s->path, name, r, rank);
    }
    *out = ds;
    return 0;
}

static int read_dim_attr(mf_store *s)
{
    hid_t a = H5Aexists(s->file, "dim") > 0 ? H5Aopen(s->file, "dim", H5P_DEFAULT) : -1;
    if (a < 0)
        return mf_set_error(MF_ERR_SCHEMA, "'%s': missing root attribute 'dim'", s->path);
    long long dim = 0;
    hid_t t = H5Aget_type(a);
    int ok = H5Tget_class(t) == H5T_INTEGER && H5Aread(a, H5T_NATIVE_LLONG, &dim) >= 0;
    H5Tclose(t);
    H5Aclose(a);
    if (!ok || dim <= 0 || dim > (1 << 20))
        return mf_set_error(MF_ERR_SCHEMA, "'%s': attribute 'dim' is not a valid width",
                            s->path);
    s->dim = (int)dim;
    return 0;
}

static int check_format_attrs(mf_store *s)
{
    char *fmt = NULL;
    if (mf_h5_read_str_attr(s->file, "mf_format", &fmt) < 0 || !fmt ||
        strcmp(fmt, MF_STORE_FORMAT) != 0) {
        free(fmt);
        return mf_set_error(MF_ERR_SCHEMA,
                            "'%s': not an mfkit store (root attribute mf_format is not '%s')",
                            s->path, MF_STORE_FORMAT);
    }
    free(fmt);
    uint64_t version = 0;
    if (mf_h5_read_u64_attr(s->file, "mf_format_version", &version) != 1)
        return mf_set_error(MF_ERR_SCHEMA, "'%s': missing root attribute 'mf_format_version'",
                            s->path);
    if (version > MF_STORE_FORMAT_VERSION)
        return mf_set_error(MF_ERR_UNSUPPORTED,
                            "'%s': store format version %llu is newer than this mfkit (%d)",
                            s->path, (unsigned long long)version, MF_STORE_FORMAT_VERSION);
    return read_dim_attr(s);
}

/* Number of rows: the committed count if recorded (a resumable writer's file), else the
 * common length. Every required dataset must hold at least that many rows; in a store
 * without the attribute they must be equal. */
static int check_lengths(mf_store *s)
{
    hsize_t dims[2];
    hid_t sp = H5Dget_space(s->emb);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    if ((int)dims[1] != s->dim)
        return mf_set_error(MF_ERR_SCHEMA,
                            "'%s': '/embedding' has %llu columns but attribute dim is %d",
                            s->path, (unsigned long long)dims[1], s->dim);
    uint64_t committed = 0;
    int has_committed = mf_h5_read_u64_attr(s->file, MF_ATTR_ROWS_COMMITTED, &committed);
    if (has_committed < 0)
        return mf_wrap_error(MF_ERR_SCHEMA, "'%s'", s->path);
    uint64_t n = has_committed ? committed : dims[0];
    const char *names[] = {"embedding", "magnitude", "id", "label"};
    hid_t ds[] = {s->emb, s->mag, s->id, s->label};
    for (int i = 0; i < 4; i++) {
        uint64_t len = mf_store_length(ds[i]);
        if (has_committed ? len < n : len != n)
            return mf_set_error(MF_ERR_SCHEMA,
                                "'%s': '/%s' has %llu rows but '/embedding' has "
                                "%llu",
                                s->path, names[i], (unsigned long long)len,
                                (unsigned long long)n);
    }
    s->rows = n;
    return 0;
}

static int open_failed_lists(mf_store *s)
{
    if (H5Lexists(s->file, "failed", H5P_DEFAULT) <= 0)
        return 0;
    int rc = open_checked(s, "failed/id", H5T_STRING, 1, &s->failed_id);
    if (rc == 0)
        rc = open_checked(s, "failed/reason", H5T_STRING, 1, &s->failed_reason);
    if (rc < 0)
        return rc;
    uint64_t committed = 0;
    int has = mf_h5_read_u64_attr(s->file, MF_ATTR_FAILED_COMMITTED, &committed);
    uint64_t a = mf_store_length(s->failed_id), b = mf_store_length(s->failed_reason);
    s->failed = has == 1 ? committed : (a < b ? a : b);
    if (s->failed > a || s->failed > b)
        return mf_set_error(MF_ERR_SCHEMA, "'%s': '/failed' lists are shorter than recorded",
                            s->path);
    return 0;
}

static int open_and_validate(mf_store *s, const char *file_path, unsigned flags)
{
    mf_h5_quiet();
    struct stat st;
    if (stat(file_path, &st) != 0)
        return mf_set_error(MF_ERR_IO, "cannot open '%s': %s", s->path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return mf_set_error(MF_ERR_IO, "cannot open '%s': not a regular file", s->path);
    htri_t is = H5Fis_hdf5(file_path);
    if (is <= 0)
        return mf_set_error(MF_ERR_FORMAT, "'%s': not an HDF5 file", s->path);
    s->file = H5Fopen(file_path, flags, H5P_DEFAULT);
    if (s->file < 0)
        return mf_h5_open_error(MF_ERR_FORMAT, s->path, "open");
    int rc = mf_h5_isolated(read_attrs_child, &s->file, s->path, "its attributes");
    if (rc == 0)
        rc = check_format_attrs(s);
    if (rc == 0)
        rc = open_checked(s, "embedding", H5T_FLOAT, 2, &s->emb);
    if (rc == 0)
        rc = open_checked(s, "magnitude", H5T_FLOAT, 1, &s->mag);
    if (rc == 0)
        rc = open_checked(s, "id", H5T_STRING, 1, &s->id);
    if (rc == 0)
        rc = open_checked(s, "label", H5T_INTEGER, 1, &s->label);
    if (rc == 0)
        rc = check_lengths(s);
    if (rc == 0)
        rc = open_failed_lists(s);
    return rc;
}

int mf_store_open(mf_store **out, const char *path)
{
    *out = NULL;
    mf_store *s = store_alloc(path, 0);
    if (!s)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int rc = open_and_validate(s, path, H5F_ACC_RDONLY);
    if (rc < 0) {
        store_release(s);
        return rc;
    }
    *out = s;
    return 0;
}

/* ---- writers ----------------------------------------------------------------------- */

static int write_root_attrs(mf_store *s, const mf_store_params *p)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(s->file, "dim", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    int dim = p->dim, rc = 0;
    if (a < 0 || H5Awrite(a, H5T_NATIVE_INT, &dim) < 0)
        rc = mf_set_error(MF_ERR_IO, "cannot write attribute 'dim'");
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    if (rc == 0)
        rc = mf_h5_write_str_attr(s->file, "mf_format", MF_STORE_FORMAT);
    if (rc == 0)
        rc = mf_h5_write_u64_attr(s->file, "mf_format_version", MF_STORE_FORMAT_VERSION);
    if (rc == 0)
        rc = mf_h5_write_str_attr(s->file, "tool_version", "mfkit " MF_VERSION_STRING);
    /* with the layout, before the first flush: a run killed after that flush resumes a
     * partial that already says what its rows are */
    const char *names[] = {"model", "model_sha256", "preprocess", "precision",
                           "int8_calibration"};
    const char *values[] = {p->model, p->model_sha256, p->preprocess, p->precision,
                            p->int8_calibration};
    for (int i = 0; i < 5 && rc == 0; i++)
        if (values[i])
            rc = mf_h5_write_str_attr(s->file, names[i], values[i]);
    return rc;
}

static int create_layout(mf_store *s, const mf_store_params *p)
{
    hid_t str = mf_h5_vlen_str_type();
    s->emb = mf_store_create_dataset(s->file, "embedding", H5T_IEEE_F32LE, (uint64_t)p->dim,
                                     p->chunk_rows);
    s->mag = mf_store_create_dataset(s->file, "magnitude", H5T_IEEE_F32LE, 0, 0);
    s->id = mf_store_create_dataset(s->file, "id", str, 0, 1024);
    s->label = mf_store_create_dataset(s->file, "label", H5T_STD_I64LE, 0, 0);
    hid_t g = H5Gcreate2(s->file, "failed", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g >= 0) {
        s->failed_id = mf_store_create_dataset(g, "id", str, 0, 256);
        s->failed_reason = mf_store_create_dataset(g, "reason", str, 0, 256);
        H5Gclose(g);
    }
    H5Tclose(str);
    if (s->emb < 0 || s->mag < 0 || s->id < 0 || s->label < 0 || s->failed_id < 0 ||
        s->failed_reason < 0)
        return mf_set_error(MF_ERR_IO, "cannot create datasets in '%s': %s", s->path,
                            mf_h5_reason());
    return write_root_attrs(s, p);
}

/* A fresh layout in the output's temporary file (truncating what is there). */
static int create_in_output(mf_store *s, const mf_store_params *p)
{
    /* HDF5 must not meet a full disk mid-write (see mf_output_reserve): room for the
     * empty layout first. */
    int rc = mf_output_reserve(s->out, MF_STORE_METADATA_SLACK);
    if (rc < 0)
        return rc;
    s->file = H5Fcreate(mf_output_temp(s->out), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (s->file < 0)
        return mf_h5_open_error(MF_ERR_IO, s->path, "create");
    s->dim = p->dim;
    s->rows = s->failed = 0;
    rc = create_layout(s, p);
    if (rc == 0 && p->job)
        rc = mf_h5_write_str_attr(s->file, MF_ATTR_JOB, p->job);
    if (rc == 0)
        rc = mf_store_flush(s);
    return rc;
}

static int check_params(const char *path, const mf_store_params *p)
{
    if (!p || p->dim <= 0 || p->dim > (1 << 20))
        return mf_set_error(MF_ERR_ARG, "invalid embedding width for '%s'", path);
    return 0;
}

int mf_store_create_in(mf_store **out, mf_output *o, const mf_store_params *p)
{
    *out = NULL;
    int rc = check_params(mf_output_path(o), p);
    mf_store *s = rc == 0 ? store_alloc(mf_output_path(o), 1) : NULL;
    if (rc == 0 && !s)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (rc < 0) {
        mf_output_abort(o);
        return rc;
    }
    mf_h5_quiet();
    s->out = o;
    rc = create_in_output(s, p);
    if (rc < 0) {
        mf_store_discard(s);
        return rc;
    }
    *out = s;
    return 0;
}

int mf_store_create(mf_store **out, const char *path, const mf_store_params *p)
{
    *out = NULL;
    mf_output *o;
    unsigned flags = MF_OUTPUT_SEEKABLE | (p && p->overwrite ? MF_OUTPUT_OVERWRITE : 0);
    int rc = check_params(path, p);
    if (rc == 0)
        rc = mf_output_open(&o, path, flags);
    return rc < 0 ? rc : mf_store_create_in(out, o, p);
}

int mf_store_create_like(mf_store **out, const char *path, const mf_store *src)
{
    mf_store_params p = mf_store_default_params();
    p.dim = src->dim;
    p.model = mf_store_attr(src, "model");
    p.model_sha256 = mf_store_attr(src, "model_sha256");
    p.preprocess = mf_store_attr(src, "preprocess");
    p.precision = mf_store_attr(src, "precision");
    p.int8_calibration = mf_store_attr(src, "int8_calibration");
    int rc = mf_store_create(out, path, &p);
    /* Label names describe label values, which derived stores keep. */
    if (rc == 0 && H5Lexists(src->file, "labels", H5P_DEFAULT) > 0 &&
        H5Ocopy(src->file, "labels", (*out)->file, "labels", H5P_DEFAULT, H5P_DEFAULT) < 0) {
        mf_store_discard(*out);
        *out = NULL;
        rc = mf_set_error(MF_ERR_IO, "cannot copy '/labels' from '%s'", src->path);
    }
    return rc;
}

typedef struct dataset_visit {
    void (*fn)(hid_t ds, const char *name, void *ctx);
    void *ctx;
} dataset_visit;

static herr_t visit_link(hid_t loc, const char *name, const H5L_info_t *info, void *data)
{
    const dataset_visit *v = data;
    H5O_info_t oi;
    if (H5Oget_info_by_name(loc, name, &oi, H5P_DEFAULT) < 0 || oi.type != H5O_TYPE_DATASET)
        return 0;
    hid_t ds = H5Dopen2(loc, name, H5P_DEFAULT);
    if (ds >= 0) {
        v->fn(ds, name, v->ctx);
        H5Dclose(ds);
    }
    return 0;
}

void mf_store_each_dataset(hid_t file, void (*fn)(hid_t ds, const char *name, void *ctx),
                           void *ctx)
{
    dataset_visit v = {fn, ctx};
    H5Literate(file, H5_INDEX_NAME, H5_ITER_NATIVE, NULL, visit_link, &v);
}

/* Cut a row-aligned dataset back to the committed length (rows appended after the last
 * flush may be incomplete). */
static void truncate_dataset(hid_t ds, const char *name, void *ctx)
{
    const uint64_t *rows = ctx;
    if (mf_store_length(ds) > *rows)
        mf_store_extend(ds, *rows);
}

/* A finished store at path made by the same job? 1 yes, 0 no (or not a store). */
static int holds_job(const char *path, const char *job)
{
    mf_store *done;
    if (mf_store_open(&done, path) < 0) {
        mf_clear_error();
        return 0;
    }
    const char *was = mf_store_attr(done, MF_ATTR_JOB);
    int same = was && strcmp(was, job) == 0;
    mf_store_close(done);
    return same;
}

/* The last committed rows must read back as written: finite, and the magnitude column
 * equal to the norm of the embedding. A row that fails marks where trust ends. */
#define TAIL_CHECK_ROWS 4096

static int verify_tail(mf_store *s, uint64_t *good)
{
    uint64_t start = s->rows > TAIL_CHECK_ROWS ? s->rows - TAIL_CHECK_ROWS : 0;
    size_t n = (size_t)(s->rows - start), dim = (size_t)s->dim;
    *good = s->rows;
    if (n == 0)
        return 0;
    float *emb = malloc(n * dim * sizeof *emb), *mag = malloc(n * sizeof *mag);
    int rc = emb && mag ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = mf_store_read_embedding(s, start, n, emb);
    if (rc == 0)
        rc = mf_store_read_magnitude(s, start, n, mag);
    for (size_t i = 0; i < n && rc == 0; i++) {
        double ss = 0;
        for (size_t j = 0; j < dim; j++)
            ss += (double)emb[i * dim + j] * emb[i * dim + j];
        double norm = sqrt(ss);
        if (!isfinite(norm) || !isfinite(mag[i]) ||
            fabs(norm - mag[i]) > 1e-3 * (norm > 1 ? norm : 1)) {
            *good = start + i;
            break;
        }
    }
    free(emb);
    free(mag);
    return rc;
}

/* Reopen the partial of an earlier run: cut back to its committed rows, and further if
 * the last ones do not read back. */
static int reopen_partial(mf_store *s)
{
    int rc = open_and_validate(s, mf_output_temp(s->out), H5F_ACC_RDWR);
    uint64_t good = 0;
    if (rc == 0)
        rc = verify_tail(s, &good);
    if (rc == 0 && good < s->rows) {
        mf_log(MF_LOG_WARN,
               "'%s': rows %llu..%llu were marked committed but do not read back as "
               "written; they will be done again",
               mf_output_temp(s->out), (unsigned long long)good, (unsigned long long)s->rows);
        s->rows = good;
    }
    if (rc == 0) {
        mf_store_each_dataset(s->file, truncate_dataset, &s->rows);
        if (s->failed_id >= 0) {
            mf_store_extend(s->failed_id, s->failed);
            mf_store_extend(s->failed_reason, s->failed);
        }
        rc = mf_store_flush(s);
    }
    return rc;
}

/* A partial HDF5 cannot open that is no bigger than a bare superblock was never flushed:
 * its run was killed between creating the file and writing the empty layout (HDF5 writes
 * the 96-byte superblock at once, the rest at the first flush). It holds nothing to keep.
 * A partial that was flushed once is several KB. */
#define NEVER_FLUSHED_MAX_BYTES 512

static int never_flushed(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size <= NEVER_FLUSHED_MAX_BYTES;
}

/* The partial found is another job's, or cannot be read: start over only if asked, or
 * if it never held anything. */
static int restart_partial(mf_store *s, const mf_store_params *p, int unreadable)
{
    const char *temp = mf_output_temp(s->out);
    const char *why = unreadable ? "cannot be read"
                                 : "was started with a different model, inputs or settings";
    close_handles(s);
    if (unreadable && never_flushed(temp))
        mf_log(MF_LOG_INFO, "'%s' holds nothing (its run was killed while creating it): "
               "starting over", temp);
    else if (!p->overwrite)
        return mf_set_error(MF_ERR_MISMATCH,
                            "'%s' %s; run the original command to resume it, or add "
                            "--overwrite to start over",
                            temp, why);
    else
        mf_log(MF_LOG_INFO, "'%s' %s: starting over (--overwrite)", temp, why);
    mf_clear_error();
    int rc = mf_output_restart(s->out);
    return rc < 0 ? rc : create_in_output(s, p);
}

int mf_store_open_or_resume(mf_store **out, const char *path, const mf_store_params *p,
                            mf_store_job_state *state)
{
    *out = NULL;
    *state = MF_STORE_JOB_NEW;
    int rc = check_params(path, p);
    if (rc == 0 && !p->job)
        rc = mf_set_error(MF_ERR_ARG, "a resumable store needs a job description");
    if (rc < 0)
        return rc;
    mf_h5_quiet();
    if (!p->overwrite && holds_job(path, p->job)) {
        *state = MF_STORE_JOB_COMPLETE;
        return 0;
    }
    mf_store *s = store_alloc(path, 1);
    if (!s)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    unsigned flags =
        MF_OUTPUT_SEEKABLE | MF_OUTPUT_RESUMABLE | (p->overwrite ? MF_OUTPUT_OVERWRITE : 0);
    s->resumable = 1;
    rc = mf_output_open(&s->out, path, flags);
    if (rc == 0 && !mf_output_resumed(s->out)) {
        rc = create_in_output(s, p);
    } else if (rc == 0) {
        int opened = reopen_partial(s);
        const char *was = opened == 0 ? mf_store_attr(s, MF_ATTR_JOB) : NULL;
        if (opened == 0 && was && strcmp(was, p->job) == 0)
            *state = MF_STORE_JOB_RESUMED;
        else
            rc = restart_partial(s, p, opened < 0);
    }
    if (rc < 0) {
        if (s->out && mf_output_resumed(s->out))
            mf_store_suspend(s); /* someone else's work: never removed here */
        else
            mf_store_discard(s);
        return rc;
    }
    *out = s;
    return 0;
}

int mf_store_flush(mf_store *s)
{
    if (!s->writable)
        return 0;
    if (s->broken)
        return mf_set_error(MF_ERR_IO, "'%s': an earlier write failed", s->path);
    /* 1. the rows' bytes, under the old mark; 2. the new mark. */
    int rc = H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0
                 ? mf_set_error(MF_ERR_IO, "cannot write '%s': %s", s->path, mf_h5_reason())
                 : mf_output_sync(s->out);
    if (rc == 0)
        rc = mf_h5_write_u64_attr(s->file, MF_ATTR_ROWS_COMMITTED, s->rows);
    if (rc == 0)
        rc = mf_h5_write_u64_attr(s->file, MF_ATTR_FAILED_COMMITTED, s->failed);
    if (rc == 0 && H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0)
        rc = mf_set_error(MF_ERR_IO, "cannot write '%s': %s", s->path, mf_h5_reason());
    if (rc == 0)
        rc = mf_output_sync(s->out);
    if (rc < 0)
        s->broken = 1;
    return rc;
}

void mf_store_mark_broken(mf_store *s) { s->broken = 1; }

int mf_store_commit_with(mf_store *s, mf_output **also, size_t n_also)
{
    if (!s->writable) {
        store_release(s);
        return mf_set_error(MF_ERR_ARG, "'%s' is not open for writing", s->path);
    }
    int rc = mf_store_flush(s);
    if (close_handles(s) < 0 && rc == 0)
        rc = mf_set_error(MF_ERR_IO, "cannot close '%s': %s", s->path, mf_h5_reason());
    mf_output *outs[1 + MF_STORE_MAX_COMPANIONS];
    if (rc == 0 && n_also > MF_STORE_MAX_COMPANIONS)
        rc = mf_set_error(MF_ERR_ARG, "too many companion outputs");
    if (rc < 0) {
        if (s->resumable)
            mf_output_suspend(s->out);
        else
            mf_output_abort(s->out);
        for (size_t i = 0; i < n_also; i++)
            mf_output_abort(also[i]);
        s->out = NULL;
        store_release(s);
        return rc;
    }
    outs[0] = s->out;
    for (size_t i = 0; i < n_also; i++)
        outs[1 + i] = also[i];
    s->out = NULL;
    store_release(s);
    return mf_output_commit_all(outs, 1 + n_also);
}

int mf_store_commit(mf_store *s) { return mf_store_commit_with(s, NULL, 0); }

void mf_store_discard(mf_store *s)
{
    if (!s)
        return;
    close_handles(s);
    mf_output_abort(s->out);
    store_release(s);
}

int mf_store_suspend(mf_store *s)
{
    if (!s)
        return 0;
    int rc = s->writable && !s->broken && s->file >= 0 ? mf_store_flush(s) : 0;
    close_handles(s);
    mf_output_suspend(s->out);
    store_release(s);
    return rc;
}

int mf_store_close(mf_store *s)
{
    if (!s)
        return 0;
    if (s->writable && s->resumable)
        return mf_store_suspend(s);
    if (s->writable)
        mf_store_discard(s);
    else
        store_release(s);
    return 0;
}

/* ---- small accessors --------------------------------------------------------------- */

uint64_t mf_store_rows(const mf_store *s) { return s->rows; }
int mf_store_dim(const mf_store *s) { return s->dim; }
const char *mf_store_path(const mf_store *s) { return s->path; }
uint64_t mf_store_failed_count(const mf_store *s) { return s->failed; }

int mf_store_has(const mf_store *s, const char *name)
{
    return name && name[0] && H5Lexists(s->file, name, H5P_DEFAULT) > 0;
}

const char *mf_store_attr(const mf_store *cs, const char *name)
{
    mf_store *s = (mf_store *)cs; /* the cache is not observable state */
    for (size_t i = 0; i < s->n_attrs; i++)
        if (strcmp(s->attrs[i].name, name) == 0)
            return s->attrs[i].value;
    char *value = NULL;
    if (mf_h5_read_str_attr(s->file, name, &value) < 0 || !value)
        return NULL;
    char *key = strdup(name);
    if (!key || MF_GROW(s->attrs, s->cap_attrs, s->n_attrs + 1, "attributes") < 0) {
        free(value);
        free(key);
        return NULL;
    }
    s->attrs[s->n_attrs].name = key;
    s->attrs[s->n_attrs].value = value;
    return s->attrs[s->n_attrs++].value;
}

int mf_store_set_attr(mf_store *s, const char *name, const char *value)
{
    if (!s->writable)
        return mf_set_error(MF_ERR_ARG, "'%s' is not open for writing", s->path);
    /* Drop a cached value so the next mf_store_attr() sees the new one. */
    for (size_t i = 0; i < s->n_attrs; i++)
        if (strcmp(s->attrs[i].name, name) == 0) {
            free(s->attrs[i].value);
            s->attrs[i].value = strdup(value);
        }
    int rc = mf_h5_write_str_attr(s->file, name, value);
    return rc < 0 ? mf_wrap_error(rc, "'%s'", s->path) : 0;
}
