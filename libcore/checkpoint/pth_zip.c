/* pth_zip.c - torch.save's zip container, read through libarchive.
 *
 * torch writes stored (uncompressed) entries whose local headers carry zero sizes and a
 * data-descriptor flag, so the sizes are only known from the central directory: we use
 * libarchive's seekable zip reader on the in-memory file. Entries are
 * <prefix>/data.pkl, <prefix>/data/<key>, <prefix>/version and maybe <prefix>/byteorder;
 * the prefix is taken from the first entry. A stored entry arriving as one block inside
 * the caller's buffer is referenced in place; anything else is copied. */
#include "pth.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"

#define ZIP_MAX_PREFIX 256

typedef struct zip_reader {
    struct archive *a;
    const uint8_t *buf;
    size_t len;
} zip_reader;

static int zip_fail(zip_reader *z, const char *what)
{
    const char *msg = archive_error_string(z->a);
    return mf_set_error(MF_ERR_FORMAT, "zip: %s: %s", what, msg ? msg : "unknown error");
}

/* Read the current entry's data: *data and *n reference the buffer or an owned copy. */
static int read_entry(pth_file *f, zip_reader *z, struct archive_entry *e, const uint8_t **data,
                      size_t *n)
{
    int64_t size = archive_entry_size_is_set(e) ? archive_entry_size(e) : -1;
    if (size > (int64_t)z->len)
        return mf_set_error(MF_ERR_FORMAT,
                            "zip entry '%s' claims %lld bytes in a %zu-byte file",
                            archive_entry_pathname(e), (long long)size, z->len);
    uint8_t *copy = NULL;
    size_t have = 0, cap = 0;
    const uint8_t *ref = NULL;
    int rc = 0;
    for (;;) {
        const void *blk;
        size_t bn;
        la_int64_t off;
        int r = archive_read_data_block(z->a, &blk, &bn, &off);
        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK) {
            rc = zip_fail(z, archive_entry_pathname(e));
            goto fail;
        }
        if (off < 0 || (uint64_t)off != have || bn > z->len - have) {
            rc = mf_set_error(MF_ERR_FORMAT, "zip entry '%s' has inconsistent data blocks",
                              archive_entry_pathname(e));
            goto fail;
        }
        if (bn == 0)
            continue; /* libarchive ends an entry with an empty block */
        const uint8_t *b = blk;
        if (have == 0 && !copy && !ref && b >= z->buf && bn <= (size_t)(z->buf + z->len - b) &&
            (size < 0 || (size_t)size == bn)) {
            ref = b; /* whole entry in one block of our buffer */
            have = bn;
            continue;
        }
        size_t want = have + bn;
        if (want > cap) {
            size_t ncap = size >= 0 && (size_t)size >= want ? (size_t)size : want * 2;
            if (ncap > z->len)
                ncap = want;
            uint8_t *nc = realloc(copy, ncap ? ncap : 1);
            if (!nc) {
                rc = mf_set_error(MF_ERR_NOMEM, "out of memory reading zip entry '%s'",
                                  archive_entry_pathname(e));
                goto fail;
            }
            if (ref)
                memcpy(nc, ref, have); /* the first block was referenced: copy it now */
            ref = NULL;
            copy = nc;
            cap = ncap;
        }
        memcpy(copy + have, b, bn);
        have += bn;
    }
    if (size >= 0 && (size_t)size != have) {
        rc = mf_set_error(MF_ERR_FORMAT, "truncated zip entry '%s' (%zu of %lld bytes)",
                          archive_entry_pathname(e), have, (long long)size);
        goto fail;
    }
    if (copy && (rc = pth_own(f, copy)) < 0) {
        copy = NULL; /* pth_own freed it */
        goto fail;
    }
    *data = copy ? copy : ref;
    *n = have;
    return 0;
fail:
    free(copy);
    return rc;
}

/* Split "<prefix>/<rest>": 1 if name is under prefix (setting *rest), else 0. */
static int under_prefix(const char *name, const char *prefix, const char **rest)
{
    size_t n = strlen(prefix);
    if (strncmp(name, prefix, n) || name[n] != '/')
        return 0;
    *rest = name + n + 1;
    return 1;
}

static int take_prefix(const char *name, char *prefix)
{
    const char *slash = strchr(name, '/');
    if (!slash || slash == name || (size_t)(slash - name) >= ZIP_MAX_PREFIX)
        return mf_set_error(MF_ERR_FORMAT,
                            "zip archive is not a PyTorch checkpoint (first entry '%s')", name);
    memcpy(prefix, name, (size_t)(slash - name));
    prefix[slash - name] = '\0';
    return 0;
}

static int add_storage(pth_file *f, const char *key, const uint8_t *data, size_t n)
{
    size_t kl = strlen(key);
    char *k = malloc(kl + 1);
    if (!k)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    memcpy(k, key, kl + 1);
    int rc = pth_own(f, k);
    if (rc < 0)
        return rc;
    return pth_add_blob(f, (pk_str){k, kl}, data, n);
}

/* Handle one entry; *pkl receives data.pkl. */
static int zip_entry(pth_file *f, zip_reader *z, struct archive_entry *e, const char *prefix,
                     const uint8_t **pkl, size_t *pkl_len)
{
    const char *name = archive_entry_pathname(e), *rest;
    const uint8_t *data;
    size_t n;
    int rc;
    if (!under_prefix(name, prefix, &rest))
        return 0;
    if (!strcmp(rest, "data.pkl")) {
        if (*pkl)
            return mf_set_error(MF_ERR_FORMAT, "zip archive holds two data.pkl entries");
        return read_entry(f, z, e, pkl, pkl_len);
    }
    if (!strncmp(rest, "data/", 5) && rest[5]) {
        if ((rc = read_entry(f, z, e, &data, &n)) < 0)
            return rc;
        return add_storage(f, rest + 5, data, n);
    }
    if (!strcmp(rest, "byteorder")) {
        if ((rc = read_entry(f, z, e, &data, &n)) < 0)
            return rc;
        if (n == 3 && !memcmp(data, "big", 3))
            return mf_set_error(MF_ERR_UNSUPPORTED, "big-endian checkpoint");
    }
    return 0;
}

int pth_zip_read(pth_file *f, const uint8_t *buf, size_t len)
{
    zip_reader z = {.a = archive_read_new(), .buf = buf, .len = len};
    if (!z.a)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    char prefix[ZIP_MAX_PREFIX] = "";
    const uint8_t *pkl = NULL;
    size_t pkl_len = 0;
    int rc = 0;
    archive_read_support_format_zip_seekable(z.a);
    if (archive_read_open_memory(z.a, buf, len) != ARCHIVE_OK) {
        /* It starts like a zip, so a missing central directory means a cut file. */
        rc = zip_fail(&z, "truncated or damaged archive");
        goto out;
    }
    struct archive_entry *e;
    int r;
    while ((r = archive_read_next_header(z.a, &e)) == ARCHIVE_OK) {
        const char *name = archive_entry_pathname(e);
        if (!name) {
            rc = mf_set_error(MF_ERR_FORMAT, "zip entry without a name");
            goto out;
        }
        if (!prefix[0] && (rc = take_prefix(name, prefix)) < 0)
            goto out;
        if ((rc = zip_entry(f, &z, e, prefix, &pkl, &pkl_len)) < 0)
            goto out;
    }
    if (r != ARCHIVE_EOF) {
        rc = zip_fail(&z, "truncated or corrupt archive");
        goto out;
    }
    if (!pkl) {
        rc = mf_set_error(MF_ERR_FORMAT,
                          "zip archive without data.pkl: not a PyTorch checkpoint");
        goto out;
    }
    size_t used;
    if ((rc = pk_load(&f->pk, pkl, pkl_len, &used, &f->root)) < 0)
        goto out;
out:
    archive_read_free(z.a);
    return rc;
}
