/* h5.c - HDF5 helpers (see h5.h). */
#include "h5.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mf/status.h"

/* Files are closed by us, explicitly. HDF5's own exit handler closes whatever is still
 * open and, in 1.10.8, crashes on a file whose flush failed (a full disk); without it a
 * failed run exits with its message instead of SIGSEGV. H5dont_atexit only works before
 * the library initialises, which any HDF5 type macro (H5T_NATIVE_*) does through
 * H5open(): so it runs when the program loads, before main. */
__attribute__((constructor)) static void h5_no_exit_handler(void) { H5dont_atexit(); }

void mf_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static _Thread_local char h5_reason[256];
static _Thread_local int h5_have_errno;

/* HDF5's file drivers put the system's message in their description as
 * "error message = '...'": that is what a user can act on (a full disk, a permission),
 * so it wins over the generic descriptions of the frames above it. */
static herr_t walk_cb(unsigned n, const H5E_error2_t *err, void *data)
{
    (void)data;
    const char *d = err->desc ? err->desc : "";
    const char *m = strstr(d, "error message = '");
    if (m && !h5_have_errno) {
        m += strlen("error message = '");
        const char *end = strchr(m, '\'');
        snprintf(h5_reason, sizeof h5_reason, "%.*s", end ? (int)(end - m) : (int)strlen(m), m);
        h5_have_errno = 1;
    } else if (n == 0 && !h5_have_errno && d[0]) {
        snprintf(h5_reason, sizeof h5_reason, "%s", d); /* the most specific frame */
    }
    return 0;
}

const char *mf_h5_reason(void)
{
    h5_reason[0] = '\0';
    h5_have_errno = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, NULL);
    return h5_reason[0] ? h5_reason : "HDF5 error";
}

int mf_h5_open_error(int code, const char *path, const char *what)
{
    char reason[256];
    snprintf(reason, sizeof reason, "%s", mf_h5_reason());
    /* HDF5's messages are generic; the common cases deserve a plain explanation. */
    if (strstr(reason, "lock"))
        return mf_set_error(code,
                            "cannot %s '%s': unable to lock the file (on NFS/Lustre set "
                            "HDF5_USE_FILE_LOCKING=FALSE)",
                            what, path);
    if (access(path, F_OK) != 0 && strcmp(what, "create") != 0)
        return mf_set_error(MF_ERR_IO, "cannot %s '%s': %s", what, path, strerror(errno));
    return mf_set_error(code, "cannot %s '%s': %s", what, path,
                        reason[0] ? reason : "HDF5 error");
}

hid_t mf_h5_vlen_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

int mf_h5_write_str_attr(hid_t obj, const char *name, const char *value)
{
    if (H5Aexists(obj, name) > 0)
        H5Adelete(obj, name);
    hid_t t = mf_h5_vlen_str_type();
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, t, &value);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return st < 0 ? mf_set_error(MF_ERR_IO, "cannot write attribute '%s': %s", name,
                                 mf_h5_reason())
                  : 0;
}

int mf_h5_read_str_attr(hid_t obj, const char *name, char **out)
{
    *out = NULL;
    if (H5Aexists(obj, name) <= 0)
        return 0;
    int rc = 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t ft = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    if (ft < 0 || H5Tget_class(ft) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1) {
        rc = mf_set_error(MF_ERR_SCHEMA, "attribute '%s' is not a string", name);
    } else if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = mf_h5_vlen_str_type();
        char *v = NULL;
        if (H5Aread(a, mt, &v) < 0)
            rc = mf_set_error(MF_ERR_FORMAT, "cannot read attribute '%s'", name);
        else {
            *out = strdup(v ? v : "");
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, &v);
        }
        H5Tclose(mt);
    } else {
        size_t len = H5Tget_size(ft);
        char *v = len < (1u << 20) ? calloc(len + 1, 1) : NULL;
        hid_t mt = H5Tcopy(ft);
        if (!v || H5Aread(a, mt, v) < 0) {
            free(v);
            rc = mf_set_error(MF_ERR_FORMAT, "cannot read attribute '%s'", name);
        } else
            *out = v;
        H5Tclose(mt);
    }
    if (rc == 0 && !*out)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory reading attribute '%s'", name);
    if (sp >= 0)
        H5Sclose(sp);
    if (ft >= 0)
        H5Tclose(ft);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

int mf_h5_write_u64_attr(hid_t obj, const char *name, uint64_t value)
{
    hid_t a;
    if (H5Aexists(obj, name) > 0) {
        a = H5Aopen(obj, name, H5P_DEFAULT);
    } else {
        hid_t sp = H5Screate(H5S_SCALAR);
        a = H5Acreate2(obj, name, H5T_STD_U64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Sclose(sp);
    }
    herr_t st = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_UINT64, &value);
    if (a >= 0)
        H5Aclose(a);
    return st < 0 ? mf_set_error(MF_ERR_IO, "cannot write attribute '%s'", name) : 0;
}

int mf_h5_read_u64_attr(hid_t obj, const char *name, uint64_t *out)
{
    if (H5Aexists(obj, name) <= 0)
        return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    int rc = 1;
    if (t < 0 || H5Tget_class(t) != H5T_INTEGER || H5Sget_simple_extent_npoints(sp) != 1 ||
        H5Aread(a, H5T_NATIVE_UINT64, out) < 0)
        rc = mf_set_error(MF_ERR_SCHEMA, "attribute '%s' is not an integer", name);
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

int mf_h5_write_i64_attr(hid_t obj, const char *name, const int64_t *v, int n)
{
    if (H5Aexists(obj, name) > 0)
        H5Adelete(obj, name);
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, NULL);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t st = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, v);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    return st < 0 ? mf_set_error(MF_ERR_IO, "cannot write attribute '%s': %s", name,
                                 mf_h5_reason())
                  : 0;
}

int mf_h5_read_i64_attr(hid_t obj, const char *name, int64_t *v, int n)
{
    if (H5Aexists(obj, name) <= 0)
        return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    hid_t sp = a < 0 ? -1 : H5Aget_space(a);
    int rc = 1;
    if (t < 0 || H5Tget_class(t) != H5T_INTEGER || H5Sget_simple_extent_npoints(sp) != n ||
        H5Aread(a, H5T_NATIVE_INT64, v) < 0)
        rc = mf_set_error(MF_ERR_SCHEMA, "attribute '%s' is not %d integer%s", name, n,
                          n == 1 ? "" : "s");
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

/* ---- isolated reads ----------------------------------------------------------------- */

int mf_h5_isolated(int (*fn)(void *ctx), void *ctx, const char *file, const char *what)
{
    fflush(NULL); /* the child must not write the parent's buffered output again */
    pid_t pid = fork();
    if (pid < 0)
        return 0; /* cannot isolate: the read happens unprotected, as it always did */
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, STDERR_FILENO);
        _exit(fn(ctx) == 0 ? 0 : 2); /* no exit handlers: nothing of the parent's is flushed */
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    const char *how = WIFSIGNALED(status) ? "crashed libhdf5" : "failed";
    if (file)
        return mf_set_error(MF_ERR_FORMAT,
                            "'%s' is damaged: reading %s %s (a corrupted string heap?)", file,
                            what, how);
    return mf_set_error(MF_ERR_FORMAT,
                        "the file is damaged: reading %s %s (a corrupted string heap?)", what,
                        how);
}

int mf_h5_read_all_strings(hid_t ds)
{
    hid_t sp = H5Dget_space(ds), ft = H5Dget_type(ds);
    hsize_t dims[2] = {0, 0};
    int rank = sp < 0 ? -1 : H5Sget_simple_extent_dims(sp, dims, NULL);
    int vlen = ft >= 0 && H5Tis_variable_str(ft) > 0;
    int rc = rank == 1 ? 0 : -1;
    enum { BLOCK = 4096 };
    char *buf[BLOCK];
    hid_t mt = mf_h5_vlen_str_type();
    for (hsize_t at = 0; vlen && rc == 0 && at < dims[0]; at += BLOCK) {
        hsize_t n = dims[0] - at < BLOCK ? dims[0] - at : BLOCK;
        hid_t ms = H5Screate_simple(1, &n, NULL);
        H5Sselect_hyperslab(sp, H5S_SELECT_SET, &at, NULL, &n, NULL);
        rc = H5Dread(ds, mt, ms, sp, H5P_DEFAULT, buf) < 0 ? -1 : 0;
        if (rc == 0)
            H5Dvlen_reclaim(mt, ms, H5P_DEFAULT, buf);
        H5Sclose(ms);
    }
    H5Tclose(mt);
    if (ft >= 0)
        H5Tclose(ft);
    if (sp >= 0)
        H5Sclose(sp);
    return rc;
}

static herr_t read_one_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info, (void)data;
    char *v = NULL;
    if (mf_h5_read_str_attr(loc, name, &v) < 0)
        mf_clear_error(); /* not a string: only strings live in the heap */
    free(v);
    return 0;
}

int mf_h5_read_all_attrs(hid_t obj)
{
    hsize_t idx = 0;
    return H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, read_one_attr, NULL) < 0 ? -1
                                                                                          : 0;
}
