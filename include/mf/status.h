/* status.h - error codes and the per-thread last-error message.
 *
 *     if (mf_store_open(&s, "x.h5", MF_STORE_READ) < 0)
 *         fprintf(stderr, "mf-inspect: error: %s\n", mf_last_error());
 *
 * Every libcore function that can fail returns 0 (or a non-negative count) on success
 * and a negative mf_status on failure, after recording a one-line message with context
 * (file, dataset, row, expected vs found) through mf_set_error(). The message lives in
 * thread-local storage: it stays valid until the same thread records another error.
 * libcore never prints and never exits. */
#ifndef MF_STATUS_H
#define MF_STATUS_H

#include <stdarg.h>
#include <stddef.h>

typedef enum mf_status {
    MF_OK = 0,
    MF_ERR_IO = -1,     /* open/read/write/fsync/rename failed (errno in message) */
    MF_ERR_FORMAT = -2, /* input is malformed, truncated or of the wrong kind */
    MF_ERR_SCHEMA = -3, /* well-formed file, but not what we expect (dataset, dtype, dim) */
    MF_ERR_NOMEM = -4,  /* allocation failed or a size would overflow */
    MF_ERR_ARG = -5,    /* caller passed an invalid argument */
    MF_ERR_UNSUPPORTED = -6, /* valid input that we deliberately do not handle */
    MF_ERR_LIMIT = -7,       /* input exceeds a safety limit (pixels, tensor size, ...) */
    MF_ERR_MISMATCH = -8,    /* two inputs disagree (model, dim, shapes) */
    MF_ERR_INTERNAL = -9,    /* a library we call failed unexpectedly */
    MF_ERR_EXISTS = -10,     /* an output exists and replacing it was not asked for */
    MF_ERR_BUSY = -11,       /* another running process holds the output */
} mf_status;

/* Message of the last error recorded on this thread ("" if none). */
const char *mf_last_error(void);

/* Record a printf-style message for this thread and return `code` (so callers can write
 * `return mf_set_error(MF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));`). */
int mf_set_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int mf_set_errorv(int code, const char *fmt, va_list ap);

/* Prepend context to the current message: "<ctx>: <old message>". Returns `code`. */
int mf_wrap_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void mf_clear_error(void);

/* Short name of a status code ("io", "format", ...). */
const char *mf_status_name(int code);

/* Multiply two sizes, failing instead of wrapping: returns 0 and sets *out, or
 * MF_ERR_NOMEM with a message naming `what`. Use before every allocation whose size
 * comes from input data. */
int mf_size_mul(size_t a, size_t b, size_t *out, const char *what);

#endif
