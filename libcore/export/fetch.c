/* fetch.c - the original bytes of the images named by store ids: plain files, archive
 * members (one streaming libarchive pass per archive, however many members are wanted)
 * and RecordIO records (through the .idx, when mf/recordio.h is part of the build). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export_internal.h"
#include "mf/export.h"
#include "mf/image.h"
#include "mf/source.h"
#include "mf/recordio.h"
#include "mf/status.h"

#define DEFAULT_MAX_BYTES ((size_t)64 << 20)

mf_id_kind mf_id_classify(const char *id, size_t *container_len)
{
    const char *sep = strstr(id, "//");
    *container_len = strlen(id);
    if (!sep || sep == id)
        return MF_ID_FILE;
    /* The container's last component must look like a file name with an extension, so
     * that a doubled slash inside a plain path ("data//a.jpg") stays a plain path. */
    size_t len = (size_t)(sep - id);
    const char *base = id;
    for (size_t k = 0; k < len; k++)
        if (id[k] == '/')
            base = id + k + 1;
    if (!memchr(base, '.', (size_t)(sep - base)))
        return MF_ID_FILE;
    *container_len = len;
    if (len >= 4 && memcmp(sep - 4, ".rec", 4) == 0)
        return MF_ID_RECORDIO;
    return MF_ID_ARCHIVE;
}

char *mf_export_resolve(const char *root, const char *path, size_t len)
{
    /* Ids hold names escaped (invalid UTF-8 as \xNN, mf/source.h): the file's real
     * name is the unescaped one. */
    char *part = strndup(path, len), *name = part ? mf_id_unescape(part) : NULL;
    free(part);
    if (!name)
        return NULL;
    int rel = root && root[0] && name[0] != '/';
    size_t rl = rel ? strlen(root) : 0, nl = strlen(name);
    char *out = malloc(rl + 1 + nl + 1);
    if (out) {
        size_t at = 0;
        if (rel) {
            memcpy(out, root, rl);
            at = rl;
            if (rl && root[rl - 1] != '/')
                out[at++] = '/';
        }
        memcpy(out + at, name, nl + 1);
    }
    free(name);
    return out;
}

typedef struct item {
    size_t i; /* index into the caller's ids */
    const char *id;
    size_t clen; /* container length */
    mf_id_kind kind;
    const char *member; /* archive member / rec key text (after "//"); NULL for files */
    int64_t key;        /* rec key */
    int done;
} item;

static const char *strip_dot_slash(const char *s)
{
    while (s[0] == '.' && s[1] == '/')
        s += 2;
    return s;
}

static int cmp_item(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->kind != y->kind)
        return (int)x->kind - (int)y->kind;
    if (x->kind == MF_ID_FILE)
        return (x->i > y->i) - (x->i < y->i);
    size_t m = x->clen < y->clen ? x->clen : y->clen;
    int c = memcmp(x->id, y->id, m);
    if (c || x->clen != y->clen)
        return c ? c : (x->clen < y->clen ? -1 : 1);
    if (x->kind == MF_ID_RECORDIO)
        return (x->key > y->key) - (x->key < y->key);
    return strcmp(strip_dot_slash(x->member), strip_dot_slash(y->member));
}

/* Read a whole regular file of at most max bytes into a malloc'ed buffer. */
static int read_file(const char *path, size_t max, uint8_t **out, size_t *size,
                     const char **why)
{
    int fd = mf_open_regular(path, why); /* never blocks on a FIFO named by an id */
    struct stat st;
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0) {
        *why = strerror(errno);
        close(fd);
        return -1;
    }
    *why = (uint64_t)st.st_size > max ? "file too large" : NULL;
    uint8_t *buf = *why ? NULL : malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!*why && !buf)
        *why = "out of memory";
    size_t got = 0;
    while (!*why && got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            *why = r < 0 ? strerror(errno) : "file shrank while reading";
        else
            got += (size_t)r;
    }
    close(fd);
    if (*why) {
        free(buf);
        return -1;
    }
    *out = buf;
    *size = got;
    return 0;
}

typedef struct fetcher {
    const char *root;
    size_t max;
    mf_fetch_fn fn;
    void *ctx;
} fetcher;

/* Hand one item's bytes (or why there are none) to the caller; bytes that are not an
 * image are refused here: a file named by an id may be anything. */
static int give(const fetcher *f, size_t i, const uint8_t *data, size_t size, const char *why)
{
    if (data && mf_image_sniff(data, size) == MF_IMAGE_UNKNOWN)
        return f->fn(f->ctx, i, NULL, 0, "not an image (neither JPEG nor PNG)");
    return f->fn(f->ctx, i, data, size, why);
}

static int fetch_file(const fetcher *f, item *it)
{
    char *path = mf_export_resolve(f->root, it->id, it->clen);
    if (!path)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    uint8_t *buf = NULL;
    size_t n = 0;
    const char *why;
    int rc = read_file(path, f->max, &buf, &n, &why);
    free(path);
    rc = rc == 0 ? give(f, it->i, buf, n, NULL) : give(f, it->i, NULL, 0, why);
    free(buf);
    return rc;
}

/* Deliver `data` to every still-pending item in [lo, hi) whose member equals `name`.
 * Items are sorted by member, so the matches are one run found by binary search. */
static int deliver_member(const fetcher *f, item *g, size_t n, const char *name,
                          struct archive *a, int64_t entry_size)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(strip_dot_slash(g[mid].member), name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == n || strcmp(strip_dot_slash(g[lo].member), name) != 0 || g[lo].done)
        return 0;
    const char *why = entry_size > (int64_t)f->max ? "archive member too large" : NULL;
    size_t cap = entry_size > 0 && !why ? (size_t)entry_size : 0, len = 0;
    uint8_t *buf = why ? NULL : malloc(cap ? cap : 1);
    if (!why && !buf)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    while (!why) {
        if (len == cap) { /* size unknown (some formats): grow up to the limit */
            size_t ncap = cap ? cap * 2 : 65536;
            uint8_t *nb = ncap <= f->max + 1 ? realloc(buf, ncap) : NULL;
            if (!nb) {
                why = ncap > f->max + 1 ? "archive member too large" : "out of memory";
                break;
            }
            buf = nb, cap = ncap;
        }
        la_ssize_t r = archive_read_data(a, buf + len, cap - len);
        if (r < 0)
            why = archive_error_string(a) ? archive_error_string(a) : "read error";
        else if (r == 0)
            break;
        else
            len += (size_t)r;
    }
    int rc = 0;
    for (size_t k = lo; k < n && rc == 0 && strcmp(strip_dot_slash(g[k].member), name) == 0;
         k++) {
        g[k].done = 1;
        rc = why ? give(f, g[k].i, NULL, 0, why) : give(f, g[k].i, buf, len, NULL);
    }
    free(buf);
    return rc;
}

/* One streaming pass over the archive g[0].id[0..clen) for the n items of g. */
static int fetch_archive(const fetcher *f, item *g, size_t n)
{
    char *path = mf_export_resolve(f->root, g[0].id, g[0].clen);
    if (!path)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    struct archive *a = archive_read_new();
    int rc = 0, fd = -1;
    const char *why = NULL;
    if (!a)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
    else {
        archive_read_support_filter_all(a);
        archive_read_support_format_all(a);
        fd = mf_open_regular(path, &why); /* never blocks on a FIFO named by an id */
        if (fd >= 0 && archive_read_open_fd(a, fd, 1 << 16) != ARCHIVE_OK)
            why = archive_error_string(a) ? archive_error_string(a) : "cannot open archive";
    }
    struct archive_entry *e;
    while (rc == 0 && !why) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF)
            break;
        if (r < ARCHIVE_WARN) {
            why = archive_error_string(a) ? archive_error_string(a) : "damaged archive";
            break;
        }
        const char *raw = archive_entry_pathname(e);
        char *name = raw ? mf_id_escape(raw, NULL) : NULL; /* as the id spells it */
        if (raw && !name)
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
        else if (name && archive_entry_filetype(e) == AE_IFREG)
            rc = deliver_member(f, g, n, strip_dot_slash(name), a,
                                archive_entry_size_is_set(e) ? archive_entry_size(e) : -1);
        free(name);
    }
    for (size_t k = 0; k < n && rc == 0; k++)
        if (!g[k].done)
            rc = give(f, g[k].i, NULL, 0, why ? why : "no such member in the archive");
    if (a)
        archive_read_free(a);
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

static int fetch_recordio(const fetcher *f, item *g, size_t n)
{
    char *path = mf_export_resolve(f->root, g[0].id, g[0].clen);
    if (!path)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    mf_recordio_reader *r = NULL;
    int rc = 0;
    const char *open_err = NULL;
    if (mf_recordio_open(&r, path, f->max) < 0)
        open_err = mf_last_error();
    for (size_t k = 0; k < n && rc == 0; k++) {
        mf_record rec;
        mf_record_header h;
        if (open_err)
            rc = give(f, g[k].i, NULL, 0, open_err);
        else if (g[k].key < 0)
            rc = give(f, g[k].i, NULL, 0, "not a RecordIO key");
        else if (mf_recordio_read_key(r, g[k].key, &rec) < 0 ||
                 mf_record_parse(&h, rec.data, rec.size) < 0)
            rc = give(f, g[k].i, NULL, 0, mf_last_error());
        else if (h.image_size == 0)
            rc = give(f, g[k].i, NULL, 0, "record holds no image");
        else
            rc = give(f, g[k].i, h.image, h.image_size, NULL);
    }
    mf_recordio_close(r);
    free(path);
    return rc;
}

static int64_t parse_key(const char *s)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    return (errno || end == s || *end || v < 0) ? -1 : (int64_t)v;
}

int mf_fetch_images(char *const *ids, size_t n, const char *root, size_t max_bytes,
                    mf_fetch_fn fn, void *ctx)
{
    if (n == 0)
        return 0;
    size_t bytes;
    if (mf_size_mul(n, sizeof(item), &bytes, "fetch list") < 0)
        return MF_ERR_NOMEM;
    item *items = malloc(bytes);
    if (!items)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu ids", n);
    for (size_t i = 0; i < n; i++) {
        item *it = &items[i];
        it->i = i, it->id = ids[i], it->done = 0, it->key = -1;
        it->kind = mf_id_classify(ids[i], &it->clen);
        it->member = it->kind == MF_ID_FILE ? NULL : ids[i] + it->clen + 2;
        if (it->kind == MF_ID_RECORDIO)
            it->key = parse_key(it->member);
    }
    qsort(items, n, sizeof *items, cmp_item);
    fetcher f = {root, max_bytes ? max_bytes : DEFAULT_MAX_BYTES, fn, ctx};
    int rc = 0;
    for (size_t at = 0; at < n && rc == 0;) {
        size_t end = at + 1;
        if (items[at].kind == MF_ID_FILE) {
            rc = fetch_file(&f, &items[at]);
        } else {
            while (end < n && items[end].kind == items[at].kind &&
                   items[end].clen == items[at].clen &&
                   memcmp(items[end].id, items[at].id, items[at].clen) == 0)
                end++;
            rc = items[at].kind == MF_ID_ARCHIVE ? fetch_archive(&f, items + at, end - at)
                                                 : fetch_recordio(&f, items + at, end - at);
        }
        at = end;
    }
    free(items);
    return rc;
}
