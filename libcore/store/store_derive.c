/* store_derive.c - deriving a store from others (filter, cluster, merge) and the history
 * every derived store carries (see include/mf/store.h).
 *
 * The history is /history/runs, a 1-D variable-length string dataset with one JSON
 * object per tool run, oldest first. It lives in a group so that its length can never be
 * mistaken for a row-aligned column. */
#include <stdlib.h>
#include <string.h>

#include "h5.h"
#include "mf/status.h"
#include "store_internal.h"

#define HISTORY_GROUP "history"
#define HISTORY_RUNS "history/runs"
/* Kept rows copied per call of mf_store_copy_rows. */
#define DERIVE_BATCH ((size_t)65536)

/* ---- history ----------------------------------------------------------------------- */

uint64_t mf_store_history_count(const mf_store *s)
{
    if (H5Lexists(s->file, HISTORY_GROUP, H5P_DEFAULT) <= 0 ||
        H5Lexists(s->file, HISTORY_RUNS, H5P_DEFAULT) <= 0)
        return 0;
    hid_t ds = H5Dopen2(s->file, HISTORY_RUNS, H5P_DEFAULT);
    uint64_t n = ds < 0 ? 0 : mf_store_length(ds);
    if (ds >= 0)
        H5Dclose(ds);
    return n;
}

char *mf_store_history(mf_store *s, uint64_t i)
{
    if (i >= mf_store_history_count(s))
        return NULL;
    hid_t ds = H5Dopen2(s->file, HISTORY_RUNS, H5P_DEFAULT);
    hid_t t = ds < 0 ? -1 : H5Dget_type(ds);
    char *copy = NULL;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0 &&
        mf_store_check_strings(s, ds, HISTORY_RUNS) == 0) {
        hid_t str = mf_h5_vlen_str_type();
        char *v = NULL;
        if (mf_store_rw_rows(ds, str, i, 1, 0, &v, 0) == 0) {
            copy = strdup(v ? v : "");
            hsize_t one = 1;
            hid_t ms = H5Screate_simple(1, &one, NULL);
            H5Dvlen_reclaim(str, ms, H5P_DEFAULT, &v);
            H5Sclose(ms);
        }
        H5Tclose(str);
    }
    if (t >= 0)
        H5Tclose(t);
    if (ds >= 0)
        H5Dclose(ds);
    return copy;
}

int mf_store_add_history(mf_store *s, const char *entry)
{
    if (!s->writable)
        return mf_set_error(MF_ERR_ARG, "'%s' is not open for writing", s->path);
    hid_t str = mf_h5_vlen_str_type(), ds;
    if (H5Lexists(s->file, HISTORY_GROUP, H5P_DEFAULT) <= 0) {
        hid_t g = H5Gcreate2(s->file, HISTORY_GROUP, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        ds = g < 0 ? -1 : mf_store_create_dataset(g, "runs", str, 0, 64);
        if (g >= 0)
            H5Gclose(g);
    } else {
        ds = H5Dopen2(s->file, HISTORY_RUNS, H5P_DEFAULT);
    }
    uint64_t n = ds < 0 ? 0 : mf_store_length(ds);
    int rc =
        ds < 0 ? mf_set_error(MF_ERR_IO, "cannot open '/%s': %s", HISTORY_RUNS, mf_h5_reason())
               : mf_store_extend(ds, n + 1);
    if (rc == 0)
        rc = mf_store_rw_rows(ds, str, n, 1, 0, &entry, 1);
    if (ds >= 0)
        H5Dclose(ds);
    H5Tclose(str);
    return rc < 0 ? mf_wrap_error(rc, "'%s': history", s->path) : 0;
}

/* ---- root attributes ---------------------------------------------------------------- */

/* Attributes that describe one file's own state, never carried to a derived store. */
static int is_own_attr(const char *name)
{
    static const char *own[] = {MF_ATTR_ROWS_COMMITTED, MF_ATTR_FAILED_COMMITTED, MF_ATTR_JOB};
    for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
        if (strcmp(name, own[i]) == 0)
            return 1;
    return 0;
}

static herr_t copy_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    hid_t dst = *(hid_t *)data;
    if (is_own_attr(name) || H5Aexists(dst, name) > 0)
        return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t ft = a < 0 ? -1 : H5Aget_type(a), sp = a < 0 ? -1 : H5Aget_space(a);
    hid_t mt = ft < 0 ? -1 : H5Tget_native_type(ft, H5T_DIR_ASCEND);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    size_t bytes = mt < 0 || n < 0 ? 0 : H5Tget_size(mt) * (size_t)(n ? n : 1);
    void *buf = bytes && bytes < ((size_t)1 << 26) ? calloc(1, bytes) : NULL;
    herr_t st = -1;
    if (buf && H5Aread(a, mt, buf) >= 0) {
        hid_t b = H5Acreate2(dst, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
        st = b < 0 ? -1 : H5Awrite(b, mt, buf);
        if (b >= 0)
            H5Aclose(b);
        if (H5Tdetect_class(mt, H5T_VLEN) > 0 || H5Tis_variable_str(mt) > 0)
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
    }
    free(buf);
    if (mt >= 0)
        H5Tclose(mt);
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (a >= 0)
        H5Aclose(a);
    return st < 0 ? -1 : 0;
}

/* Root attributes of src that dst does not have yet, and its history group. */
static int copy_provenance(mf_store *dst, mf_store *src)
{
    hsize_t idx = 0;
    if (H5Aiterate2(src->file, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, copy_attr, &dst->file) < 0)
        return mf_set_error(MF_ERR_IO, "cannot copy the attributes of '%s': %s", src->path,
                            mf_h5_reason());
    if (H5Lexists(src->file, HISTORY_GROUP, H5P_DEFAULT) > 0 &&
        H5Ocopy(src->file, HISTORY_GROUP, dst->file, HISTORY_GROUP, H5P_DEFAULT, H5P_DEFAULT) <
            0)
        return mf_set_error(MF_ERR_IO, "cannot copy the history of '%s': %s", src->path,
                            mf_h5_reason());
    return 0;
}

/* ---- deriving ----------------------------------------------------------------------- */

/* The kept rows of one source, in batches of row numbers. */
static int copy_kept(mf_store *dst, const mf_store_source *src, mf_progress *bar)
{
    uint64_t rows = src->store->rows;
    uint64_t *sel = malloc(DERIVE_BATCH * sizeof *sel);
    if (!sel)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (uint64_t at = 0; at < rows && rc == 0; at += DERIVE_BATCH) {
        size_t k = rows - at < DERIVE_BATCH ? (size_t)(rows - at) : DERIVE_BATCH, n = 0;
        for (size_t i = 0; i < k; i++)
            if (!src->keep || src->keep[at + i])
                sel[n++] = at + i;
        rc = mf_store_copy_rows(dst, src->store, sel, n);
        mf_progress_add(bar, k);
    }
    free(sel);
    return rc < 0 ? rc : mf_store_copy_failed(dst, src->store);
}

static int add_columns(mf_store *dst, const mf_store_derive_params *d)
{
    int rc = 0;
    for (size_t i = 0; i < d->n_columns && rc == 0; i++) {
        const mf_store_column *c = &d->columns[i];
        rc = c->int64 ? mf_store_write_column_int64(dst, c->name, c->int64)
                      : mf_store_write_column_float(dst, c->name, c->float32);
    }
    return rc;
}

int mf_store_derive(mf_output *out, const mf_store_source *src, size_t n_src,
                    const mf_store_derive_params *d)
{
    if (n_src == 0) {
        int rc = mf_set_error(MF_ERR_ARG, "no source store to derive '%s' from",
                              mf_output_path(out));
        mf_output_abort(out);
        return rc;
    }
    mf_store *first = src[0].store, *dst = NULL;
    mf_store_params p = mf_store_default_params();
    p.dim = first->dim;
    int rc = mf_store_create_in(&dst, out, &p);
    /* Label names describe label values, which derived stores keep. */
    if (rc == 0 && H5Lexists(first->file, "labels", H5P_DEFAULT) > 0 &&
        H5Ocopy(first->file, "labels", dst->file, "labels", H5P_DEFAULT, H5P_DEFAULT) < 0)
        rc = mf_set_error(MF_ERR_IO, "cannot copy '/labels' from '%s'", first->path);
    if (rc == 0)
        rc = copy_provenance(dst, first);
    for (size_t i = 0; i < n_src && rc == 0; i++)
        rc = copy_kept(dst, &src[i], d->progress);
    if (rc == 0)
        rc = add_columns(dst, d);
    if (rc == 0 && d->attr_name)
        rc = mf_store_set_attr(dst, d->attr_name, d->attr_value ? d->attr_value : "");
    if (rc == 0 && d->history)
        rc = mf_store_add_history(dst, d->history);
    if (rc < 0) {
        mf_store_discard(dst);
        for (size_t i = 0; i < d->n_also; i++)
            mf_output_abort(d->also[i]);
        return rc;
    }
    return mf_store_commit_with(dst, d->also, d->n_also);
}
