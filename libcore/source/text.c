/* text.c - the rules every input reader shares: what a label is, how a file name that is
 * not UTF-8 becomes an id, and how an input file is opened without blocking on a FIFO
 * (see include/mf/source.h). */
#include "mf/source.h"
#include "mf/status.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- labels --------------------------------------------------------------------- */

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* The label text for a message: at most 24 bytes, non-printable bytes as \xNN. */
static void quote_text(char *dst, size_t cap, const char *text, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < 24 && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x7f)
            dst[o++] = (char)c;
        else
            o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
    }
    if (len > 24 && o + 4 < cap)
        o += (size_t)snprintf(dst + o, cap - o, "...");
    dst[o] = '\0';
}

int mf_label_parse(const char *text, size_t len, int allow_none, int64_t *out)
{
    size_t a = 0, b = len;
    while (a < b && is_blank(text[a]))
        a++;
    while (b > a && is_blank(text[b - 1]))
        b--;
    int neg = b - a == 2 && text[a] == '-' && text[a + 1] == '1';
    int ok = b > a && (neg ? allow_none : 1);
    uint64_t v = 0;
    for (size_t i = a; ok && !neg && i < b; i++) {
        if (text[i] < '0' || text[i] > '9' || b - a > 16)
            ok = 0; /* 16 digits hold every value below 2^53 and cannot overflow */
        else
            v = v * 10 + (uint64_t)(text[i] - '0');
    }
    if (ok && !neg && v >= MF_LABEL_LIMIT)
        ok = 0;
    if (!ok) {
        char q[128];
        quote_text(q, sizeof q, text + a, b - a);
        return mf_set_error(MF_ERR_FORMAT, "bad label '%s': expected an integer in [0, 2^53)%s",
                            q, allow_none ? " or -1" : "");
    }
    *out = neg ? -1 : (int64_t)v;
    return 0;
}

int mf_label_from_float(double v, int allow_none, int64_t *out)
{
    if ((allow_none && v == -1.0) ||
        (isfinite(v) && v >= 0 && v < (double)MF_LABEL_LIMIT && v == floor(v))) {
        *out = (int64_t)v;
        return 0;
    }
    return mf_set_error(MF_ERR_FORMAT, "bad label %.9g: expected an integer in [0, 2^53)%s", v,
                        allow_none ? " or -1" : "");
}

/* ---- ids: file names that are not UTF-8 ------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no surrogates, at
 * most U+10FFFF), or 0 if the byte at s does not start one. s is NUL-terminated. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t n = c >= 0xc2 && c <= 0xdf   ? 2
               : c >= 0xe0 && c <= 0xef ? 3
               : c >= 0xf0 && c <= 0xf4 ? 4
                                        : 0;
    if (!n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) || /* overlong, surrogate */
        (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))   /* overlong, > U+10FFFF */
        return 0;
    return n;
}

int mf_utf8_valid(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_len(p);
        if (!n)
            return 0;
        p += n;
    }
    return 1;
}

char *mf_id_escape(const char *raw, int *was_invalid)
{
    const unsigned char *p = (const unsigned char *)raw;
    size_t n = 0;
    int bad = 0;
    for (size_t i = 0; p[i];) {
        size_t k = utf8_len(p + i);
        n += !k ? 4 : p[i] == '\\' ? 2 : k;
        bad |= !k;
        i += k ? k : 1;
    }
    char *out = malloc(n + 1), *o = out;
    if (was_invalid)
        *was_invalid = bad;
    if (!out)
        return NULL;
    for (size_t i = 0; p[i];) {
        size_t k = utf8_len(p + i);
        if (!k) {
            o += sprintf(o, "\\x%02x", p[i]);
            i++;
        } else if (p[i] == '\\') {
            *o++ = '\\';
            *o++ = '\\';
            i++;
        } else {
            memcpy(o, p + i, k);
            o += k;
            i += k;
        }
    }
    *o = '\0';
    return out;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

char *mf_id_unescape(const char *id)
{
    char *out = malloc(strlen(id) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = id; *p; p++) {
        int hi, lo;
        if (p[0] == '\\' && p[1] == '\\') {
            *o++ = '\\';
            p++;
        } else if (p[0] == '\\' && p[1] == 'x' && (hi = hexval(p[2])) >= 0 &&
                   (lo = hexval(p[3])) >= 0 && (hi || lo)) {
            *o++ = (char)(hi << 4 | lo);
            p += 3;
        } else
            *o++ = *p;
    }
    *o = '\0';
    return out;
}

/* ---- opening input files -------------------------------------------------------- */

int mf_open_regular(const char *path, const char **why)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever
     * (and a device may block too); we look at what it is before reading anything. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        *why = strerror(errno);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        *why = S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file";
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
        *why = strerror(errno);
        close(fd);
        return -1;
    }
    return fd;
}
