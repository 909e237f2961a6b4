/* store_rows.c - appending and reading rows by range (see include/mf/store.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "h5.h"
#include "store_internal.h"

/* Rows are moved with mf_store_rw_rows (store_internal.h), shared with store_copy.c. */
static int write_rows(hid_t ds, hid_t mem_type, uint64_t start, size_t n, uint64_t cols,
                      const void *buf)
{
    return mf_store_rw_rows(ds, mem_type, start, n, cols, (void *)buf, 1);
}

/* Read n rows of a 1-D or 2-D dataset (all its columns). */
static int read_rows(hid_t ds, hid_t mem_type, uint64_t start, size_t n, void *buf)
{
    hsize_t dims[2] = {0, 0};
    hid_t fs = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_dims(fs, dims, NULL);
    H5Sclose(fs);
    return mf_store_rw_rows(ds, mem_type, start, n, rank == 2 ? dims[1] : 0, buf, 0);
}

static int check_range(const mf_store *s, uint64_t start, size_t n, uint64_t limit,
                       const char *what)
{
    if (start > limit || n > limit - start)
        return mf_set_error(MF_ERR_ARG,
                            "'%s': rows %llu..%llu of '/%s' are out of range "
                            "(%llu rows)",
                            s->path, (unsigned long long)start, (unsigned long long)(start + n),
                            what, (unsigned long long)limit);
    return 0;
}

/* Disk space the next write may take, reserved before HDF5 writes anything (a full disk
 * must show before a write, never in the middle of one: HDF5 cannot recover from that).
 * Twice the rows, plus the chunks a new block of rows may allocate at once. */
static int reserve_for(mf_store *s, size_t n, size_t id_bytes)
{
    uint64_t row = (uint64_t)s->dim * sizeof(float) + 4 + 8 + 16;
    uint64_t chunks = MF_STORE_DEFAULT_CHUNK * (uint64_t)s->dim * sizeof(float) +
                      MF_STORE_COLUMN_CHUNK * (4 + 8 + 16);
    uint64_t ahead = 2 * (n * row + id_bytes) + 2 * chunks + MF_STORE_METADATA_SLACK;
    int rc = mf_output_reserve(s->out, ahead);
    return rc < 0 ? mf_wrap_error(rc, "disk full before row %llu", (unsigned long long)s->rows)
                  : 0;
}

int mf_store_append(mf_store *s, size_t n, const float *emb, const float *mag,
                    const char *const *ids, const int64_t *labels)
{
    if (!s->writable)
        return mf_set_error(MF_ERR_ARG, "'%s' is not open for writing", s->path);
    if (n == 0)
        return 0;
    size_t id_bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ids[i])
            return mf_set_error(MF_ERR_ARG, "append to '%s': id of row %zu is NULL", s->path,
                                i);
        id_bytes += strlen(ids[i]) + 1;
    }
    int rrc = reserve_for(s, n, id_bytes);
    if (rrc < 0)
        return rrc;
    float *mags = NULL;
    int64_t *labs = NULL;
    if (!mag) {
        mags = malloc(n * sizeof *mags);
        if (!mags)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            double ss = 0;
            for (int j = 0; j < s->dim; j++)
                ss += (double)emb[i * (size_t)s->dim + j] * emb[i * (size_t)s->dim + j];
            mags[i] = (float)sqrt(ss);
        }
        mag = mags;
    }
    if (!labels) {
        labs = malloc(n * sizeof *labs);
        if (!labs) {
            free(mags);
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
            labs[i] = -1;
        labels = labs;
    }
    uint64_t end = s->rows + n;
    hid_t str = mf_h5_vlen_str_type();
    int rc = 0;
    hid_t ds[] = {s->emb, s->mag, s->id, s->label};
    for (int i = 0; i < 4 && rc == 0; i++)
        rc = mf_store_extend(ds[i], end);
    if (rc == 0)
        rc = write_rows(s->emb, H5T_NATIVE_FLOAT, s->rows, n, (uint64_t)s->dim, emb);
    if (rc == 0)
        rc = write_rows(s->mag, H5T_NATIVE_FLOAT, s->rows, n, 0, mag);
    if (rc == 0)
        rc = write_rows(s->id, str, s->rows, n, 0, ids);
    if (rc == 0)
        rc = write_rows(s->label, H5T_NATIVE_INT64, s->rows, n, 0, labels);
    H5Tclose(str);
    free(mags);
    free(labs);
    if (rc < 0) {
        s->broken = 1; /* a full disk mid-write: HDF5's buffers are suspect from here */
        return mf_wrap_error(rc, "'%s'", s->path);
    }
    s->rows = end;
    return 0;
}

int mf_store_add_failed(mf_store *s, const char *id, const char *reason)
{
    if (!s->writable || s->failed_id < 0)
        return mf_set_error(MF_ERR_ARG, "'%s' is not open for writing", s->path);
    const char *r = reason ? reason : "";
    int rc = reserve_for(s, 0, strlen(id) + strlen(r) + 2);
    if (rc < 0)
        return rc;
    hid_t str = mf_h5_vlen_str_type();
    rc = mf_store_extend(s->failed_id, s->failed + 1);
    if (rc == 0)
        rc = mf_store_extend(s->failed_reason, s->failed + 1);
    if (rc == 0)
        rc = write_rows(s->failed_id, str, s->failed, 1, 0, &id);
    if (rc == 0)
        rc = write_rows(s->failed_reason, str, s->failed, 1, 0, &r);
    H5Tclose(str);
    if (rc < 0) {
        s->broken = 1;
        return mf_wrap_error(rc, "'%s'", s->path);
    }
    s->failed++;
    return 0;
}

int mf_store_read_embedding(mf_store *s, uint64_t start, size_t n, float *out)
{
    int rc = check_range(s, start, n, s->rows, "embedding");
    if (rc == 0 && n)
        rc = read_rows(s->emb, H5T_NATIVE_FLOAT, start, n, out);
    return rc < 0 ? mf_wrap_error(rc, "'%s': /embedding", s->path) : 0;
}

int mf_store_read_magnitude(mf_store *s, uint64_t start, size_t n, float *out)
{
    int rc = check_range(s, start, n, s->rows, "magnitude");
    if (rc == 0 && n)
        rc = read_rows(s->mag, H5T_NATIVE_FLOAT, start, n, out);
    return rc < 0 ? mf_wrap_error(rc, "'%s': /magnitude", s->path) : 0;
}

int mf_store_read_label(mf_store *s, uint64_t start, size_t n, int64_t *out)
{
    int rc = check_range(s, start, n, s->rows, "label");
    if (rc == 0 && n)
        rc = read_rows(s->label, H5T_NATIVE_INT64, start, n, out);
    return rc < 0 ? mf_wrap_error(rc, "'%s': /label", s->path) : 0;
}

/* Rows of a named 1-D dataset of class `cls`, converted to `mem_type`. */
static int read_named(mf_store *s, const char *name, H5T_class_t cls, hid_t mem_type,
                      uint64_t start, size_t n, void *out)
{
    if (strcmp(name, "magnitude") == 0 && cls == H5T_FLOAT)
        return mf_store_read_magnitude(s, start, n, out);
    if (!mf_store_has(s, name))
        return mf_set_error(MF_ERR_SCHEMA, "'%s': missing dataset '/%s'", s->path, name);
    hid_t ds = H5Dopen2(s->file, name, H5P_DEFAULT);
    if (ds < 0)
        return mf_set_error(MF_ERR_SCHEMA, "'%s': '/%s' is not a dataset", s->path, name);
    hid_t t = H5Dget_type(ds), sp = H5Dget_space(ds);
    int ok = H5Tget_class(t) == cls && H5Sget_simple_extent_ndims(sp) == 1;
    H5Tclose(t);
    H5Sclose(sp);
    int rc = ok ? 0
                : mf_set_error(MF_ERR_SCHEMA, "'%s': '/%s' is not a 1-D %s dataset", s->path,
                               name, cls == H5T_FLOAT ? "float" : "integer");
    if (rc == 0 && mf_store_length(ds) < s->rows)
        rc = mf_set_error(MF_ERR_SCHEMA, "'%s': '/%s' has %llu rows, the store has %llu",
                          s->path, name, (unsigned long long)mf_store_length(ds),
                          (unsigned long long)s->rows);
    if (rc == 0)
        rc = check_range(s, start, n, s->rows, name);
    if (rc == 0 && n && read_rows(ds, mem_type, start, n, out) < 0)
        rc = mf_wrap_error(MF_ERR_FORMAT, "'%s': /%s", s->path, name);
    H5Dclose(ds);
    return rc;
}

int mf_store_read_int64(mf_store *s, const char *name, uint64_t start, size_t n, int64_t *out)
{
    return read_named(s, name, H5T_INTEGER, H5T_NATIVE_INT64, start, n, out);
}

int mf_store_read_float(mf_store *s, const char *name, uint64_t start, size_t n, float *out)
{
    return read_named(s, name, H5T_FLOAT, H5T_NATIVE_FLOAT, start, n, out);
}

int mf_store_read_strings(mf_store *s, hid_t ds, const char *name, uint64_t start, size_t n,
                          char **out)
{
    memset(out, 0, n * sizeof *out);
    int checked = mf_store_check_strings(s, ds, name);
    if (checked < 0)
        return checked;
    hid_t ft = H5Dget_type(ds);
    int rc = 0;
    if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = mf_h5_vlen_str_type();
        char **tmp = calloc(n, sizeof *tmp);
        if (!tmp)
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
        else if ((rc = read_rows(ds, mt, start, n, tmp)) == 0) {
            for (size_t i = 0; i < n && rc == 0; i++)
                if (!(out[i] = strdup(tmp[i] ? tmp[i] : "")))
                    rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
            hsize_t cnt = n;
            hid_t ms = H5Screate_simple(1, &cnt, NULL);
            H5Dvlen_reclaim(mt, ms, H5P_DEFAULT, tmp);
            H5Sclose(ms);
        }
        free(tmp);
        H5Tclose(mt);
    } else {
        size_t len = H5Tget_size(ft), total;
        char *buf = NULL;
        if (mf_size_mul(len, n, &total, "strings") < 0 || !(buf = malloc(total ? total : 1)))
            rc = rc ? rc : mf_set_error(MF_ERR_NOMEM, "out of memory");
        else if ((rc = read_rows(ds, ft, start, n, buf)) == 0)
            for (size_t i = 0; i < n && rc == 0; i++)
                if (!(out[i] = strndup(buf + i * len, len)))
                    rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
        free(buf);
    }
    H5Tclose(ft);
    if (rc < 0)
        for (size_t i = 0; i < n; i++)
            free(out[i]), out[i] = NULL;
    return rc;
}

int mf_store_read_ids(mf_store *s, uint64_t start, size_t n, char **out)
{
    int rc = check_range(s, start, n, s->rows, "id");
    if (rc == 0 && n)
        rc = mf_store_read_strings(s, s->id, "id", start, n, out);
    return rc < 0 ? mf_wrap_error(rc, "'%s': /id", s->path) : 0;
}

void mf_store_free_strings(char **strs, size_t n)
{
    for (size_t i = 0; strs && i < n; i++)
        free(strs[i]);
}

int mf_store_read_failed(mf_store *s, uint64_t i, char **id, char **reason)
{
    *id = *reason = NULL;
    int rc = check_range(s, i, 1, s->failed, "failed");
    if (rc == 0)
        rc = mf_store_read_strings(s, s->failed_id, "failed/id", i, 1, id);
    if (rc == 0 && (rc = mf_store_read_strings(s, s->failed_reason, "failed/reason", i, 1, reason)) < 0)
        free(*id), *id = NULL;
    return rc < 0 ? mf_wrap_error(rc, "'%s': /failed", s->path) : 0;
}
