/* reader.c - sequential and keyed reading of RecordIO files (see include/mf/recordio.h).
 *
 * Every length read from the file is checked against the file size before anything is
 * allocated or read, so a damaged file costs at most one max_record buffer. */
#include "mf/recordio.h"
#include "mf/source.h"
#include "mf/status.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct idx_entry {
    uint64_t offset;
    int64_t key;
    size_t line; /* of the .idx, for messages */
    int duplicate;
} idx_entry;

struct mf_recordio_reader {
    FILE *f;
    char *path;
    uint64_t file_size, pos; /* pos: offset of the next record */
    size_t max;
    uint8_t *buf;
    size_t cap;
    idx_entry *by_offset, *by_key;
    size_t n_idx;
    int64_t ordinal;
    int dead; /* a format error stopped the reader */
};

static uint64_t pad4(uint64_t n) { return (n + 3) & ~(uint64_t)3; }
static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int cmp_offset(const void *a, const void *b)
{
    const idx_entry *x = a, *y = b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}
static int cmp_key(const void *a, const void *b)
{
    const idx_entry *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}
/* By key, then offset: the first of equal keys is the record that owns it. */
static int cmp_key_offset(const void *a, const void *b)
{
    const idx_entry *x = a, *y = b;
    int c = cmp_key(a, b);
    return c ? c : cmp_offset(x, y);
}

static char *idx_path_for(const char *rec)
{
    size_t n = strlen(rec);
    char *p = malloc(n + 5);
    if (!p)
        return NULL;
    memcpy(p, rec, n + 1);
    if (n >= 4 && !strcmp(rec + n - 4, ".rec"))
        n -= 4;
    memcpy(p + n, ".idx", 5);
    return p;
}

/* One `key<TAB>offset` line (newline stripped), strictly: both decimal. */
static int parse_idx_line(const char *line, size_t len, int64_t *key, uint64_t *off)
{
    const char *tab = memchr(line, '\t', len);
    if (!tab || mf_label_parse(line, (size_t)(tab - line), 0, key) < 0)
        return -1;
    size_t digits = 0;
    uint64_t v = 0;
    for (const char *p = tab + 1; p < line + len; p++, digits++) {
        if (*p < '0' || *p > '9' || digits == 18)
            return -1; /* 18 digits: no overflow, far beyond any file */
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *off = v;
    return digits ? 0 : -1;
}

static int push_idx(mf_recordio_reader *r, size_t *cap, idx_entry e, const char *idx_path)
{
    /* Every record takes at least 8 bytes, so a .idx with more lines than that is not
     * describing this .rec; the bound also caps what a hostile .idx can allocate. */
    if (r->n_idx > r->file_size / 8)
        return mf_set_error(MF_ERR_FORMAT, "'%s' has more lines than '%s' can hold records",
                            idx_path, r->path);
    if (r->n_idx == *cap) {
        size_t ncap = *cap ? *cap * 2 : 1024;
        idx_entry *v = realloc(r->by_offset, ncap * sizeof *v);
        if (!v)
            return mf_set_error(MF_ERR_NOMEM, "out of memory reading '%s'", idx_path);
        r->by_offset = v;
        *cap = ncap;
    }
    r->by_offset[r->n_idx++] = e;
    return 0;
}

/* Sort both views; an offset given twice is an error, a key given twice marks every
 * record after the first (in file order) as a duplicate. */
static int index_views(mf_recordio_reader *r, const char *idx_path)
{
    qsort(r->by_offset, r->n_idx, sizeof *r->by_offset, cmp_offset);
    for (size_t i = 1; i < r->n_idx; i++)
        if (r->by_offset[i].offset == r->by_offset[i - 1].offset)
            return mf_set_error(
                MF_ERR_FORMAT, "'%s' line %zu: offset %llu already given on line %zu", idx_path,
                r->by_offset[i].line, (unsigned long long)r->by_offset[i].offset,
                r->by_offset[i - 1].line);
    r->by_key = malloc(r->n_idx * sizeof *r->by_key);
    if (!r->by_key)
        return mf_set_error(MF_ERR_NOMEM, "out of memory reading '%s'", idx_path);
    memcpy(r->by_key, r->by_offset, r->n_idx * sizeof *r->by_key);
    qsort(r->by_key, r->n_idx, sizeof *r->by_key, cmp_key_offset);
    for (size_t i = 1; i < r->n_idx; i++) {
        if (r->by_key[i].key != r->by_key[i - 1].key)
            continue;
        r->by_key[i].duplicate = 1;
        idx_entry *e = bsearch(&r->by_key[i], r->by_offset, r->n_idx, sizeof *e, cmp_offset);
        if (e)
            e->duplicate = 1;
    }
    return 0;
}

/* Parse "key<TAB>offset" lines. A missing .idx is fine (keys become ordinals). */
static int load_index(mf_recordio_reader *r, const char *idx_path)
{
    const char *why;
    int fd = mf_open_regular(idx_path, &why);
    if (fd < 0 && errno == ENOENT)
        return 0;
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return mf_set_error(MF_ERR_IO, "cannot open '%s': %s", idx_path,
                            fd < 0 ? why : strerror(errno));
    }
    size_t cap = 0;
    char line[128];
    int rc = 0;
    for (size_t lineno = 1; rc == 0 && fgets(line, sizeof line, f); lineno++) {
        size_t len = strlen(line);
        int whole = len && line[len - 1] == '\n';
        len -= whole;
        len -= len && line[len - 1] == '\r';
        if (len == 0 && whole)
            continue;
        idx_entry e = {.line = lineno};
        if ((!whole && !feof(f)) || len != strcspn(line, "\n") ||
            parse_idx_line(line, len, &e.key, &e.offset) < 0)
            rc = mf_set_error(MF_ERR_FORMAT,
                              "'%s' line %zu: expected 'key<TAB>offset' (decimal, key < 2^53)",
                              idx_path, lineno);
        else /* an offset past the end (a truncated .rec) fails when it is read */
            rc = push_idx(r, &cap, e, idx_path);
    }
    fclose(f);
    if (rc < 0 || r->n_idx == 0)
        return rc;
    return index_views(r, idx_path);
}

int mf_recordio_open(mf_recordio_reader **out, const char *rec_path, size_t max_record)
{
    *out = NULL;
    mf_recordio_reader *r = calloc(1, sizeof *r);
    if (!r)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    r->max = max_record ? max_record : MF_RECORDIO_MAX_DEFAULT;
    r->path = strdup(rec_path);
    char *idx = idx_path_for(rec_path);
    struct stat st;
    int rc = 0;
    const char *why = NULL;
    int fd = -1;
    if (!r->path || !idx)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
    else if ((fd = mf_open_regular(rec_path, &why)) < 0 || !(r->f = fdopen(fd, "rb")) ||
             fstat(fileno(r->f), &st) < 0) {
        rc = mf_set_error(MF_ERR_IO, "cannot open '%s': %s", rec_path,
                          why ? why : strerror(errno));
        if (fd >= 0 && !r->f)
            close(fd);
    } else {
        r->file_size = (uint64_t)st.st_size;
        rc = load_index(r, idx);
    }
    free(idx);
    if (rc < 0) {
        mf_recordio_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

void mf_recordio_close(mf_recordio_reader *r)
{
    if (!r)
        return;
    if (r->f)
        fclose(r->f);
    free(r->path);
    free(r->buf);
    free(r->by_offset);
    free(r->by_key);
    free(r);
}

size_t mf_recordio_index_size(const mf_recordio_reader *r) { return r->n_idx; }
int64_t mf_recordio_index_key(const mf_recordio_reader *r, size_t i)
{
    return i < r->n_idx ? r->by_key[i].key : -1;
}

static int64_t key_at(const mf_recordio_reader *r, uint64_t offset)
{
    if (!r->n_idx)
        return r->ordinal;
    idx_entry probe = {.offset = offset};
    const idx_entry *e = bsearch(&probe, r->by_offset, r->n_idx, sizeof probe, cmp_offset);
    return e ? e->key : -1;
}

static int duplicate_at(const mf_recordio_reader *r, uint64_t offset)
{
    idx_entry probe = {.offset = offset};
    const idx_entry *e =
        r->n_idx ? bsearch(&probe, r->by_offset, r->n_idx, sizeof probe, cmp_offset) : NULL;
    return e && e->duplicate;
}

static int stop(mf_recordio_reader *r, const char *what, uint64_t at)
{
    r->dead = 1;
    return mf_set_error(MF_ERR_FORMAT, "%s at offset %llu", what, (unsigned long long)at);
}

static int read_at(mf_recordio_reader *r, uint64_t at, void *dst, size_t n)
{
    if (fseeko(r->f, (off_t)at, SEEK_SET) != 0 || fread(dst, 1, n, r->f) != n)
        return stop(r, "read error", at);
    return 0;
}

static int grow(mf_recordio_reader *r, size_t need)
{
    if (need <= r->cap)
        return 0;
    size_t cap = r->cap ? r->cap : 65536;
    while (cap < need)
        cap *= 2;
    uint8_t *b = realloc(r->buf, cap);
    if (!b)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for a %zu-byte record", need);
    r->buf = b;
    r->cap = cap;
    return 0;
}

/* Walk the parts of the record at r->pos; loads them joined into r->buf when load. */
static int read_parts(mf_recordio_reader *r, int load, size_t *size, int *too_big)
{
    uint64_t at = r->pos;
    size_t total = 0;
    for (int part = 0;; part++) {
        uint8_t h[8];
        if (at + 8 > r->file_size)
            return stop(r, "truncated record", at);
        if (read_at(r, at, h, 8) < 0)
            return MF_ERR_FORMAT;
        if (rd32(h) != MF_RECORDIO_MAGIC)
            return stop(r, "bad RecordIO magic", at);
        uint32_t cflag = rd32(h + 4) >> 29, len = rd32(h + 4) & ((1u << 29) - 1);
        if ((part == 0) != (cflag == 0 || cflag == 1))
            return stop(r, "bad RecordIO part sequence", at);
        if (at + 8 + pad4(len) > r->file_size)
            return stop(r, "truncated record", at);
        size_t add = (part > 0 ? 4 : 0) + (size_t)len;
        if (total + add > r->max)
            *too_big = 1;
        if (load && !*too_big) {
            int rc = grow(r, total + add);
            if (rc < 0)
                return rc;
            if (part > 0)
                memcpy(r->buf + total, "\x0a\x23\xd7\xce", 4); /* the magic, LE */
            if (len && read_at(r, at + 8, r->buf + total + (part > 0 ? 4 : 0), len) < 0)
                return MF_ERR_FORMAT;
        }
        total += add;
        at += 8 + pad4(len);
        if (cflag == 0 || cflag == 3)
            break;
    }
    r->pos = at;
    *size = total;
    return 0;
}

int mf_recordio_next(mf_recordio_reader *r, mf_record *rec, int load)
{
    if (r->dead)
        return MF_ERR_FORMAT;
    if (r->pos >= r->file_size)
        return 0;
    memset(rec, 0, sizeof *rec);
    rec->offset = r->pos;
    rec->key = key_at(r, r->pos);
    rec->duplicate = duplicate_at(r, r->pos);
    size_t size = 0;
    int too_big = 0, rc = read_parts(r, load, &size, &too_big);
    if (rc < 0)
        return rc;
    r->ordinal++;
    rec->size = size;
    if (too_big)
        return mf_set_error(MF_ERR_LIMIT, "record of %zu bytes exceeds the %zu MB limit", size,
                            r->max >> 20);
    rec->data = load ? r->buf : NULL;
    if (load && size == 0)
        rec->data = (const uint8_t *)"";
    return 1;
}

int mf_recordio_load(mf_recordio_reader *r, mf_record *rec)
{
    uint64_t saved = r->pos;
    int64_t ordinal = r->ordinal, key = rec->key;
    r->pos = rec->offset;
    int rc = mf_recordio_next(r, rec, 1);
    r->pos = saved;
    r->ordinal = ordinal;
    rec->key = key;
    if (rc == 0)
        return mf_set_error(MF_ERR_FORMAT, "record at offset %llu is past the end",
                            (unsigned long long)rec->offset);
    return rc < 0 ? rc : 0;
}

int mf_recordio_read_key(mf_recordio_reader *r, int64_t key, mf_record *rec)
{
    idx_entry probe = {.key = key};
    const idx_entry *e =
        r->n_idx ? bsearch(&probe, r->by_key, r->n_idx, sizeof probe, cmp_key) : NULL;
    if (!e)
        return mf_set_error(MF_ERR_ARG, "key %lld is not in the index of '%s'", (long long)key,
                            r->path);
    while (e > r->by_key && e[-1].key == key)
        e--; /* the first record with this key owns it */
    r->pos = e->offset;
    r->dead = 0;
    int rc = mf_recordio_next(r, rec, 1);
    if (rc == 0)
        return mf_set_error(MF_ERR_FORMAT, "key %lld points past the end of '%s'",
                            (long long)key, r->path);
    rec->key = key;
    return rc < 0 ? rc : 0;
}

int mf_record_parse(mf_record_header *h, const uint8_t *p, size_t size)
{
    memset(h, 0, sizeof *h);
    if (size < 24)
        return mf_set_error(MF_ERR_FORMAT, "record shorter than its 24-byte header");
    h->flag = rd32(p);
    memcpy(&h->label, p + 4, 4);
    memcpy(&h->id, p + 8, 8);
    memcpy(&h->id2, p + 16, 8);
    if (h->flag > (size - 24) / 4)
        return mf_set_error(MF_ERR_FORMAT, "record header announces %u labels, too many",
                            h->flag);
    for (uint32_t i = 0; i < h->flag && i < 2; i++)
        memcpy(&h->labels[i], p + 24 + 4 * i, 4);
    size_t head = 24 + (size_t)h->flag * 4;
    h->image = p + head;
    h->image_size = size - head;
    return 0;
}

int mf_record_label(const mf_record_header *h, int64_t *label)
{
    float v = h->flag > 0 ? h->labels[0] : h->label;
    if (mf_label_from_float(v, 1, label) < 0)
        return mf_wrap_error(MF_ERR_FORMAT, "record header");
    return 0;
}

int64_t mf_record_class(const mf_record_header *h)
{
    int64_t label;
    return mf_record_label(h, &label) == 0 ? label : -1;
}
