/* status.c - per-thread error messages (see include/mf/status.h). */
#include "mf/status.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MF_ERROR_MAX 1024

static _Thread_local char last_error[MF_ERROR_MAX];

const char *mf_last_error(void) { return last_error; }

void mf_clear_error(void) { last_error[0] = '\0'; }

int mf_set_errorv(int code, const char *fmt, va_list ap)
{
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    return code;
}

int mf_set_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mf_set_errorv(code, fmt, ap);
    va_end(ap);
    return code;
}

int mf_wrap_error(int code, const char *fmt, ...)
{
    char prefix[MF_ERROR_MAX], old[MF_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    if (old[0])
        snprintf(last_error, sizeof last_error, "%s: %s", prefix, old);
    else
        snprintf(last_error, sizeof last_error, "%s", prefix);
    return code;
}

const char *mf_status_name(int code)
{
    switch (code) {
    case MF_OK: return "ok";
    case MF_ERR_IO: return "io";
    case MF_ERR_FORMAT: return "format";
    case MF_ERR_SCHEMA: return "schema";
    case MF_ERR_NOMEM: return "nomem";
    case MF_ERR_ARG: return "argument";
    case MF_ERR_UNSUPPORTED: return "unsupported";
    case MF_ERR_LIMIT: return "limit";
    case MF_ERR_MISMATCH: return "mismatch";
    case MF_ERR_INTERNAL: return "internal";
    case MF_ERR_EXISTS: return "exists";
    case MF_ERR_BUSY: return "busy";
    }
    return "unknown";
}

int mf_size_mul(size_t a, size_t b, size_t *out, const char *what)
{
    if (a != 0 && b > SIZE_MAX / a)
        return mf_set_error(MF_ERR_NOMEM, "%s: size %zu x %zu overflows", what, a, b);
    *out = a * b;
    return 0;
}
