/* h5.h - small HDF5 helpers shared by libcore modules that read or write HDF5
 * (the store, the native model file, saved kNN graphs). Internal, not public API.
 *
 * Conventions: functions return 0 / negative mf_status and record a message naming
 * `file` (the path used in messages) and the object. HDF5's own error printing is
 * turned off by mf_h5_quiet(); mf_h5_reason() fetches the innermost HDF5 message. */
#ifndef MF_INTERNAL_H5_H
#define MF_INTERNAL_H5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

/* Silence HDF5's automatic error printing on this thread (idempotent). (HDF5's exit
 * handler is never registered by a program linked with libmfcore: see h5.c.) */
void mf_h5_quiet(void);

/* The innermost message on HDF5's error stack ("" if none), for context in errors. */
const char *mf_h5_reason(void);

/* Record an error after a failed H5Fopen/H5Fcreate of `path` (adds the NFS locking
 * hint when HDF5 says it could not lock the file). Returns `code`. */
int mf_h5_open_error(int code, const char *path, const char *what);

/* Scalar variable-length UTF-8 string attribute. Replaces an existing one. */
int mf_h5_write_str_attr(hid_t obj, const char *name, const char *value);
/* Read a string attribute (fixed or variable length) as a malloc'ed string; *out = NULL
 * and 0 returned when absent. */
int mf_h5_read_str_attr(hid_t obj, const char *name, char **out);
int mf_h5_write_u64_attr(hid_t obj, const char *name, uint64_t value);
/* Returns 1 and sets *out if present and integral, 0 if absent, <0 on a bad type. */
int mf_h5_read_u64_attr(hid_t obj, const char *name, uint64_t *out);

/* Integer attribute of n values (a scalar when n == 1), written as int64. */
int mf_h5_write_i64_attr(hid_t obj, const char *name, const int64_t *v, int n);
/* Read exactly n integer values: 1 when present and read, 0 when absent, < 0 when it has
 * another type or count. */
int mf_h5_read_i64_attr(hid_t obj, const char *name, int64_t *v, int n);

/* ---- reading untrusted files without trusting libhdf5 ------------------------------
 * libhdf5 1.10.8 does not check the object sizes in a global heap collection (where
 * variable-length strings live: string attributes, /id, /failed, /labels/name): one
 * corrupted byte makes H5HG_read copy past its buffer and crash the process. So the
 * first read of each such object runs in a child process (fork): if the child dies, the
 * caller gets an error instead of the crash. */

/* Run fn(ctx) in a child process (stderr silenced): 0 if it returned 0, MF_ERR_FORMAT if
 * it failed or died (the message names `what`, and `file` unless NULL: for callers that
 * add the file themselves). Without fork, runs nothing
 * and returns 0. Call from the thread that owns HDF5, with no HDF5 call in progress. */
int mf_h5_isolated(int (*fn)(void *ctx), void *ctx, const char *file, const char *what);
/* For use inside mf_h5_isolated: read every value of a dataset (in blocks) / every
 * attribute of an object, converting variable-length strings; 0 or -1. */
int mf_h5_read_all_strings(hid_t ds);
int mf_h5_read_all_attrs(hid_t obj);

/* Variable-length UTF-8 string memory type (caller closes with H5Tclose). */
hid_t mf_h5_vlen_str_type(void);

#endif
