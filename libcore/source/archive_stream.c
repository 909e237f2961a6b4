/* archive_stream.c - the bytes under libarchive: an input opened without blocking (a
 * FIFO named x.tar is refused, not waited on), and gzip decompressed here with zlib.
 *
 * Why not libarchive's gzip filter: it checks neither the CRC-32 nor the length in the
 * gzip trailer (libarchive 3.6; a flipped bit in the deflate data or the trailer reads
 * as a good archive), so damage would be embedded silently. zlib's inflate checks both.
 * libarchive also stops reading at the tar end blocks, before the trailer: at the end
 * of the archive mf_src_stream_finish reads the rest and checks it. xz, zstd and bzip2
 * are left to libarchive, whose decoders verify their own checksums. */
#include "source_internal.h"
#include "mf/status.h"

#include <archive.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define IN_SIZE (1 << 16)
#define OUT_SIZE (1 << 16)

struct mf_src_stream {
    int fd;
    int gzip;            /* decompressing gzip members */
    int z_ready;         /* inflateInit2 done */
    int in_member;       /* inside a gzip member (between header and trailer) */
    int done;            /* end of input reached (and checked) */
    const char *pending; /* an error met after some output: reported on the next call */
    z_stream z;
    unsigned char in[IN_SIZE];
    unsigned char out[OUT_SIZE];
};

static ssize_t fill_input(mf_src_stream *st)
{
    ssize_t r;
    do
        r = read(st->fd, st->in, IN_SIZE);
    while (r < 0 && errno == EINTR);
    if (r > 0) {
        st->z.next_in = st->in;
        st->z.avail_in = (uInt)r;
    }
    return r;
}

/* Bytes after the last gzip member: zeros (tape padding) are fine, anything else is
 * damage. Returns 0 or -1 with *why. */
static int check_tail(mf_src_stream *st, const char **why)
{
    for (;;) {
        for (uInt i = 0; i < st->z.avail_in; i++)
            if (st->z.next_in[i] != 0) {
                *why = "gzip: trailing garbage after the last member";
                return -1;
            }
        st->z.avail_in = 0;
        ssize_t r = fill_input(st);
        if (r == 0)
            return 0;
        if (r < 0) {
            *why = strerror(errno);
            return -1;
        }
    }
}

/* Inflate into st->out: the number of bytes produced, 0 at the end, -1 with *why. */
static ssize_t inflate_some(mf_src_stream *st, const char **why)
{
    if (st->pending) {
        *why = st->pending;
        return -1;
    }
    st->z.next_out = st->out;
    st->z.avail_out = OUT_SIZE;
    while (st->z.avail_out == OUT_SIZE) {
        if (st->z.avail_in == 0) {
            ssize_t r = fill_input(st);
            if (r < 0) {
                *why = strerror(errno);
                return -1;
            }
            if (r == 0) {
                if (st->in_member) {
                    *why = "truncated gzip stream";
                    return -1;
                }
                return 0;
            }
        }
        if (!st->in_member) {
            /* Between members: another member, or the end (zero padding allowed). */
            if (st->z.next_in[0] != 0x1f)
                return check_tail(st, why) < 0 ? -1 : 0;
            if (inflateReset2(&st->z, 16 + MAX_WBITS) != Z_OK) {
                *why = "gzip: cannot reset the decoder";
                return -1;
            }
            st->in_member = 1;
        }
        int zr = inflate(&st->z, Z_NO_FLUSH);
        if (zr == Z_STREAM_END)
            st->in_member = 0; /* CRC-32 and length checked by zlib */
        else if (zr != Z_OK && !(zr == Z_BUF_ERROR && st->z.avail_in == 0)) {
            const char *m = st->z.msg ? st->z.msg : "";
            *why = !strcmp(m, "incorrect data check")     ? "gzip CRC-32 mismatch: damaged data"
                   : !strcmp(m, "incorrect length check") ? "gzip length mismatch: damaged data"
                   : m[0]                                 ? m
                                                          : "corrupt gzip data";
            if (st->z.avail_out == OUT_SIZE)
                return -1;
            st->pending = *why; /* hand over the good bytes first */
            break;
        }
    }
    return (ssize_t)(OUT_SIZE - st->z.avail_out);
}

static la_ssize_t on_read(struct archive *a, void *ctx, const void **buf)
{
    mf_src_stream *st = ctx;
    const char *why = NULL;
    ssize_t n;
    if (!st->gzip) {
        do
            n = read(st->fd, st->in, IN_SIZE);
        while (n < 0 && errno == EINTR);
        *buf = st->in;
        why = n < 0 ? strerror(errno) : NULL;
    } else {
        n = inflate_some(st, &why);
        *buf = st->out;
    }
    if (n < 0) {
        archive_set_error(a, EIO, "%s", why);
        return -1;
    }
    st->done |= n == 0;
    return n;
}

void mf_src_stream_free(mf_src_stream *st)
{
    if (!st)
        return;
    if (st->z_ready)
        inflateEnd(&st->z);
    if (st->fd >= 0)
        close(st->fd);
    free(st);
}

/* Is the file a gzip stream? Reads its first bytes into st->in (kept for inflate). */
static int sniff_gzip(mf_src_stream *st)
{
    ssize_t r = fill_input(st);
    if (r >= 2 && st->in[0] == 0x1f && st->in[1] == 0x8b)
        return 1;
    /* Not gzip: hand the file to libarchive from its start. */
    st->z.avail_in = 0;
    return lseek(st->fd, 0, SEEK_SET) == 0 ? 0 : -1;
}

struct archive *mf_src_archive_open(const char *path, mf_src_stream **out)
{
    *out = NULL;
    const char *why;
    mf_src_stream *st = calloc(1, sizeof *st);
    if (!st) {
        mf_set_error(MF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if ((st->fd = mf_open_regular(path, &why)) < 0) {
        mf_set_error(MF_ERR_IO, "cannot open: %s", why);
        mf_src_stream_free(st);
        return NULL;
    }
    st->gzip = sniff_gzip(st);
    if (st->gzip == 1) {
        st->z_ready = inflateInit2(&st->z, 16 + MAX_WBITS) == Z_OK;
        st->in_member = 1;
    }
    struct archive *a = st->gzip < 0 || (st->gzip && !st->z_ready) ? NULL : archive_read_new();
    if (!a) {
        mf_set_error(MF_ERR_NOMEM, "cannot start reading the archive");
        mf_src_stream_free(st);
        return NULL;
    }
    archive_read_support_filter_all(a);
    archive_read_support_format_all(a);
    if (archive_read_open(a, st, NULL, on_read, NULL) != ARCHIVE_OK) {
        mf_set_error(MF_ERR_FORMAT, "corrupt archive (%s)",
                     archive_error_string(a) ? archive_error_string(a) : "cannot open");
        archive_read_free(a);
        mf_src_stream_free(st);
        return NULL;
    }
    *out = st;
    return a;
}

char *mf_src_stream_finish(struct archive *a, mf_src_stream *st)
{
    (void)a;
    if (!st || !st->gzip || st->done)
        return NULL;
    const char *why = NULL;
    ssize_t n;
    while ((n = inflate_some(st, &why)) > 0)
        ; /* past the tar end blocks: padding, then the trailer zlib checks */
    st->done = 1;
    return n < 0 ? mf_src_printf("corrupt archive (%s)", why) : NULL;
}
