/* store_copy.c - deriving stores: copy selected rows with every row-aligned dataset,
 * copy the failed lists, write whole columns (see include/mf/store.h). */
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "h5.h"
#include "store_internal.h"

/* Source rows read per window; 4096 x 512 floats = 8 MiB. */
#define COPY_WINDOW 4096
#define MAX_COLUMNS 256

typedef struct column_list {
    char *names[MAX_COLUMNS];
    size_t n;
} column_list;

typedef struct column_scan {
    column_list *list;
    uint64_t rows;
} column_scan;

/* Collect the root datasets with one row per sample (1-D or 2-D, `rows` long). */
static void scan_dataset(hid_t ds, const char *name, void *ctx)
{
    column_scan *scan = ctx;
    hid_t sp = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(sp);
    H5Sclose(sp);
    char *copy = (rank == 1 || rank == 2) && mf_store_length(ds) >= scan->rows &&
                         scan->list->n < MAX_COLUMNS
                     ? strdup(name)
                     : NULL;
    if (copy) /* out of memory drops the column from the scan, never a NULL name */
        scan->list->names[scan->list->n++] = copy;
}

static void free_columns(column_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    l->n = 0;
}

static void list_columns(mf_store *s, column_list *out)
{
    column_scan scan = {out, s->rows};
    out->n = 0;
    mf_store_each_dataset(s->file, scan_dataset, &scan);
}

/* Open `name` in dst, creating it like src's if absent; check the shapes agree. */
static hid_t open_target(mf_store *dst, hid_t src_ds, const char *name)
{
    hsize_t sdims[2] = {0, 0}, ddims[2] = {0, 0};
    hid_t sp = H5Dget_space(src_ds);
    int srank = H5Sget_simple_extent_dims(sp, sdims, NULL);
    H5Sclose(sp);
    if (H5Lexists(dst->file, name, H5P_DEFAULT) <= 0) {
        /* Strings are stored the one way mfkit writes them (variable-length UTF-8),
         * whatever fixed-length type another program chose. */
        hid_t ft = H5Dget_type(src_ds);
        if (H5Tget_class(ft) == H5T_STRING) {
            H5Tclose(ft);
            ft = mf_h5_vlen_str_type();
        }
        hid_t ds = mf_store_create_dataset(dst->file, name, ft, srank == 2 ? sdims[1] : 0, 0);
        H5Tclose(ft);
        if (ds >= 0 && dst->rows > 0)
            mf_store_extend(ds, dst->rows); /* earlier rows had no such column: fill */
        if (ds < 0)
            mf_set_error(MF_ERR_IO, "cannot create '/%s': %s", name, mf_h5_reason());
        return ds;
    }
    hid_t ds = H5Dopen2(dst->file, name, H5P_DEFAULT);
    sp = ds < 0 ? -1 : H5Dget_space(ds);
    int drank = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, ddims, NULL);
    if (sp >= 0)
        H5Sclose(sp);
    hid_t st = H5Dget_type(src_ds), dt = ds < 0 ? -1 : H5Dget_type(ds);
    int same_class = dt >= 0 && H5Tget_class(st) == H5Tget_class(dt);
    H5Tclose(st);
    if (dt >= 0)
        H5Tclose(dt);
    if (ds < 0 || drank != srank || (srank == 2 && ddims[1] != sdims[1]) || !same_class) {
        if (ds >= 0)
            H5Dclose(ds);
        mf_set_error(MF_ERR_MISMATCH, "'/%s' has a different type or shape in the output",
                     name);
        return -1;
    }
    return ds;
}

/* The memory type to move a dataset's values through unchanged. */
static hid_t memory_type(hid_t ds)
{
    hid_t ft = H5Dget_type(ds);
    hid_t mt = H5Tis_variable_str(ft) > 0 ? mf_h5_vlen_str_type()
                                          : H5Tget_native_type(ft, H5T_DIR_ASCEND);
    H5Tclose(ft);
    return mt;
}

/* The selected rows of a 1-D string column, read as C strings (fixed or variable length
 * in the source) and written as variable-length UTF-8: HDF5 converts neither way. */
static int copy_strings(mf_store *dst, mf_store *src, hid_t sds, hid_t dds, const char *name,
                        const uint64_t *rows, size_t n)
{
    char **in = calloc(COPY_WINDOW, sizeof *in), **out = calloc(COPY_WINDOW, sizeof *out);
    hid_t str = mf_h5_vlen_str_type();
    int rc = in && out ? mf_store_extend(dds, dst->rows + n)
                       : mf_set_error(MF_ERR_NOMEM, "out of memory copying '/%s'", name);
    uint64_t written = dst->rows;
    for (size_t i = 0; i < n && rc == 0;) {
        uint64_t w0 = rows[i];
        size_t wn = (size_t)(src->rows - w0 < COPY_WINDOW ? src->rows - w0 : COPY_WINDOW);
        if ((rc = mf_store_read_strings(src, sds, name, w0, wn, in)) < 0)
            break;
        size_t k = 0;
        for (; i < n && rows[i] < w0 + wn; i++)
            out[k++] = in[rows[i] - w0];
        rc = mf_store_rw_rows(dds, str, written, k, 0, out, 1);
        written += k;
        mf_store_free_strings(in, wn);
    }
    H5Tclose(str);
    free(in);
    free(out);
    return rc;
}

/* Copy the selected rows of one column, window by window of source rows. */
static int copy_column(mf_store *dst, mf_store *src, const char *name, const uint64_t *rows,
                       size_t n)
{
    hid_t sds = H5Dopen2(src->file, name, H5P_DEFAULT);
    hid_t dds = sds < 0 ? -1 : open_target(dst, sds, name);
    if (dds < 0) {
        if (sds >= 0)
            H5Dclose(sds);
        return mf_wrap_error(MF_ERR_MISMATCH, "column '/%s'", name);
    }
    hsize_t dims[2] = {0, 0};
    hid_t sp = H5Dget_space(sds);
    int rank = H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    uint64_t cols = rank == 2 ? dims[1] : 0;
    hid_t stype = H5Dget_type(sds);
    int is_string = H5Tget_class(stype) == H5T_STRING;
    H5Tclose(stype);
    if (is_string && cols == 0) {
        int rc = copy_strings(dst, src, sds, dds, name, rows, n);
        H5Dclose(dds);
        H5Dclose(sds);
        return rc < 0 ? mf_wrap_error(rc, "column '/%s'", name) : 0;
    }
    if (mf_store_check_strings(src, sds, name) < 0) {
        H5Dclose(dds);
        H5Dclose(sds);
        return MF_ERR_FORMAT;
    }
    hid_t mt = memory_type(sds);
    int is_vlen = H5Tis_variable_str(mt) > 0;
    size_t row_bytes = H5Tget_size(mt) * (cols ? cols : 1);
    char *in = malloc(row_bytes * COPY_WINDOW), *out = malloc(row_bytes * COPY_WINDOW);
    int rc = in && out ? mf_store_extend(dds, dst->rows + n)
                       : mf_set_error(MF_ERR_NOMEM, "out of memory copying '/%s'", name);
    uint64_t written = dst->rows;
    for (size_t i = 0; i < n && rc == 0;) {
        uint64_t w0 = rows[i];
        size_t wn = (size_t)(src->rows - w0 < COPY_WINDOW ? src->rows - w0 : COPY_WINDOW);
        if ((rc = mf_store_rw_rows(sds, mt, w0, wn, cols, in, 0)) < 0)
            break;
        size_t k = 0;
        for (; i < n && rows[i] < w0 + wn; i++, k++)
            memcpy(out + k * row_bytes, in + (rows[i] - w0) * row_bytes, row_bytes);
        rc = mf_store_rw_rows(dds, mt, written, k, cols, out, 1);
        written += k;
        if (is_vlen) { /* the window's strings were allocated by HDF5 */
            hsize_t cnt[2] = {wn, cols};
            hid_t ms = H5Screate_simple(cols ? 2 : 1, cnt, NULL);
            H5Dvlen_reclaim(mt, ms, H5P_DEFAULT, in);
            H5Sclose(ms);
        }
    }
    free(in);
    free(out);
    H5Tclose(mt);
    H5Dclose(dds);
    H5Dclose(sds);
    return rc < 0 ? mf_wrap_error(rc, "column '/%s'", name) : 0;
}

/* Columns the output has but this source lacks get fill values for the new rows. */
static int pad_missing_columns(mf_store *dst, const column_list *copied, uint64_t rows)
{
    column_list have;
    list_columns(dst, &have); /* dst->rows is still the old count here */
    int rc = 0;
    for (size_t i = 0; i < have.n && rc == 0; i++) {
        int found = 0;
        for (size_t j = 0; j < copied->n && !found; j++)
            found = strcmp(have.names[i], copied->names[j]) == 0;
        if (found)
            continue;
        hid_t ds = H5Dopen2(dst->file, have.names[i], H5P_DEFAULT);
        if (ds >= 0) {
            rc = mf_store_extend(ds, rows);
            H5Dclose(ds);
        }
    }
    free_columns(&have);
    return rc;
}

int mf_store_copy_rows(mf_store *dst, mf_store *src, const uint64_t *rows, size_t n)
{
    if (!dst->writable)
        return mf_set_error(MF_ERR_ARG, "'%s' is not open for writing", dst->path);
    if (dst->dim != src->dim)
        return mf_set_error(MF_ERR_MISMATCH, "'%s' has %d-d embeddings, '%s' has %d-d",
                            src->path, src->dim, dst->path, dst->dim);
    for (size_t i = 0; i < n; i++)
        if (rows[i] >= src->rows || (i && rows[i] <= rows[i - 1]))
            return mf_set_error(MF_ERR_ARG,
                                "copy from '%s': row list must be increasing and "
                                "below %llu (entry %zu is %llu)",
                                src->path, (unsigned long long)src->rows, i,
                                (unsigned long long)rows[i]);
    if (n == 0)
        return 0;
    column_list cols;
    list_columns(src, &cols);
    int rc = pad_missing_columns(dst, &cols, dst->rows + n);
    for (size_t i = 0; i < cols.n && rc == 0; i++)
        rc = copy_column(dst, src, cols.names[i], rows, n);
    free_columns(&cols);
    if (rc < 0)
        return mf_wrap_error(rc, "copying rows from '%s' to '%s'", src->path, dst->path);
    dst->rows += n;
    return 0;
}

int mf_store_copy_failed(mf_store *dst, mf_store *src)
{
    for (uint64_t i = 0; i < src->failed; i++) {
        char *id, *reason;
        int rc = mf_store_read_failed(src, i, &id, &reason);
        if (rc == 0) {
            rc = mf_store_add_failed(dst, id, reason);
            free(id);
            free(reason);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Write a whole 1-D column of `file_type` (class `cls`) from `values` in `mem_type`,
 * creating it or replacing the values of an existing one of the same class. */
static int write_column(mf_store *s, const char *name, hid_t file_type, hid_t mem_type,
                        H5T_class_t cls, const void *values)
{
    if (!s->writable)
        return mf_set_error(MF_ERR_ARG, "'%s' is not open for writing", s->path);
    hid_t ds;
    if (H5Lexists(s->file, name, H5P_DEFAULT) > 0) {
        ds = H5Dopen2(s->file, name, H5P_DEFAULT);
        hid_t t = ds < 0 ? -1 : H5Dget_type(ds);
        hid_t sp = ds < 0 ? -1 : H5Dget_space(ds);
        int ok = t >= 0 && H5Tget_class(t) == cls && H5Sget_simple_extent_ndims(sp) == 1;
        if (t >= 0)
            H5Tclose(t);
        if (sp >= 0)
            H5Sclose(sp);
        if (!ok) {
            if (ds >= 0)
                H5Dclose(ds);
            return mf_set_error(MF_ERR_SCHEMA, "'%s': '/%s' exists with another type or shape",
                                s->path, name);
        }
    } else {
        ds = mf_store_create_dataset(s->file, name, file_type, 0, 0);
        if (ds < 0)
            return mf_set_error(MF_ERR_IO, "'%s': cannot create '/%s': %s", s->path, name,
                                mf_h5_reason());
    }
    int rc = mf_store_extend(ds, s->rows);
    if (rc == 0 && s->rows)
        rc = mf_store_rw_rows(ds, mem_type, 0, (size_t)s->rows, 0, (void *)values, 1);
    H5Dclose(ds);
    return rc < 0 ? mf_wrap_error(rc, "'%s': /%s", s->path, name) : 0;
}

int mf_store_write_column_int64(mf_store *s, const char *name, const int64_t *values)
{
    return write_column(s, name, H5T_STD_I64LE, H5T_NATIVE_INT64, H5T_INTEGER, values);
}

int mf_store_write_column_float(mf_store *s, const char *name, const float *values)
{
    return write_column(s, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, H5T_FLOAT, values);
}

/* ---- label names (/labels/name) ------------------------------------------------------ */

int mf_store_write_label_names(mf_store *s, const char *const *names, size_t n)
{
    if (!s->writable)
        return mf_set_error(MF_ERR_ARG, "'%s' is not open for writing", s->path);
    if (H5Lexists(s->file, "labels", H5P_DEFAULT) > 0)
        H5Ldelete(s->file, "labels", H5P_DEFAULT);
    hid_t g = H5Gcreate2(s->file, "labels", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t str = mf_h5_vlen_str_type();
    hid_t ds = g < 0 ? -1 : mf_store_create_dataset(g, "name", str, 0, 1024);
    int rc = ds < 0
                 ? mf_set_error(MF_ERR_IO, "cannot create '/labels/name': %s", mf_h5_reason())
                 : mf_store_extend(ds, n);
    if (rc == 0 && n)
        rc = mf_store_rw_rows(ds, str, 0, n, 0, (void *)names, 1);
    if (ds >= 0)
        H5Dclose(ds);
    if (g >= 0)
        H5Gclose(g);
    H5Tclose(str);
    return rc < 0 ? mf_wrap_error(rc, "'%s'", s->path) : 0;
}

/* The open /labels/name dataset, or -1 when the store has none. */
static hid_t open_label_names(const mf_store *s)
{
    if (H5Lexists(s->file, "labels", H5P_DEFAULT) <= 0 ||
        H5Lexists(s->file, "labels/name", H5P_DEFAULT) <= 0)
        return -1;
    return H5Dopen2(s->file, "labels/name", H5P_DEFAULT);
}

uint64_t mf_store_label_name_count(const mf_store *s)
{
    hid_t ds = open_label_names(s);
    uint64_t n = ds < 0 ? 0 : mf_store_length(ds);
    if (ds >= 0)
        H5Dclose(ds);
    return n;
}

char *mf_store_label_name(mf_store *s, uint64_t label)
{
    hid_t ds = open_label_names(s); /* one open per call: mf-report asks per face */
    if (ds < 0 || label >= mf_store_length(ds)) {
        if (ds >= 0)
            H5Dclose(ds);
        return NULL;
    }
    if (mf_store_check_strings(s, ds, "labels/name") < 0) {
        H5Dclose(ds);
        return NULL;
    }
    hid_t str = mf_h5_vlen_str_type();
    char *v = NULL, *copy = NULL;
    if (mf_store_rw_rows(ds, str, label, 1, 0, &v, 0) == 0) {
        copy = strdup(v ? v : "");
        hsize_t one = 1;
        hid_t ms = H5Screate_simple(1, &one, NULL);
        H5Dvlen_reclaim(str, ms, H5P_DEFAULT, &v);
        H5Sclose(ms);
    }
    H5Tclose(str);
    H5Dclose(ds);
    return copy;
}

int mf_store_load_label_names(mf_store *s, char ***names, uint64_t *n)
{
    *names = NULL;
    *n = 0;
    hid_t ds = open_label_names(s);
    if (ds < 0)
        return 0;
    uint64_t count = mf_store_length(ds);
    char **v = calloc(count ? count : 1, sizeof *v);
    int rc = v ? mf_store_read_strings(s, ds, "labels/name", 0, (size_t)count, v)
               : mf_set_error(MF_ERR_NOMEM, "out of memory for %llu label names",
                              (unsigned long long)count);
    H5Dclose(ds);
    if (rc < 0) {
        free(v);
        return mf_wrap_error(rc, "'%s': /labels/name", s->path);
    }
    *names = v;
    *n = count;
    return 0;
}
