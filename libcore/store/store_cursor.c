/* store_cursor.c - reading a store in blocks of rows, and whole columns (see
 * include/mf/store.h). Every tool reads through here, so the block size is decided once. */
#include <stdlib.h>
#include <string.h>

#include "mf/idset.h"
#include "mf/status.h"
#include "store_internal.h"

/* About 32 MB of embeddings per block; scalar columns in blocks of 64k rows. */
#define BLOCK_BYTES ((size_t)32 << 20)
#define SCALAR_BLOCK_ROWS ((size_t)65536)
#define MIN_BLOCK_ROWS ((size_t)256)

struct mf_store_cursor {
    mf_store *s;
    unsigned columns;
    char *extra_name;
    uint64_t next, end;
    size_t cap; /* rows the buffers hold */
    mf_store_block b;
    int have_ids; /* b.id holds strings to free */
};

size_t mf_store_block_rows(const mf_store *s, unsigned columns)
{
    if (!(columns & MF_COL_EMBEDDING))
        return SCALAR_BLOCK_ROWS;
    size_t rows = BLOCK_BYTES / ((size_t)s->dim * sizeof(float));
    return rows < MIN_BLOCK_ROWS ? MIN_BLOCK_ROWS : rows;
}

int mf_store_cursor_open(mf_store_cursor **out, mf_store *s, unsigned columns, uint64_t first,
                         uint64_t end)
{
    *out = NULL;
    if (first > end || end > s->rows)
        return mf_set_error(MF_ERR_ARG, "'%s': rows %llu..%llu are out of range (%llu rows)",
                            s->path, (unsigned long long)first, (unsigned long long)end,
                            (unsigned long long)s->rows);
    mf_store_cursor *c = calloc(1, sizeof *c);
    if (!c)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    c->s = s;
    c->columns = columns;
    c->next = first;
    c->end = end;
    size_t rows = mf_store_block_rows(s, columns);
    c->cap = end - first < rows ? (size_t)(end - first) : rows;
    size_t m = c->cap ? c->cap : 1, emb_bytes;
    int ok = mf_size_mul(m, (size_t)s->dim * sizeof(float), &emb_bytes, "a block") == 0;
    if (ok && (columns & MF_COL_EMBEDDING))
        ok = (c->b.embedding = malloc(emb_bytes)) != NULL;
    if (ok && (columns & MF_COL_MAGNITUDE))
        ok = (c->b.magnitude = malloc(m * sizeof(float))) != NULL;
    if (ok && (columns & MF_COL_ID))
        ok = (c->b.id = calloc(m, sizeof(char *))) != NULL;
    if (ok && (columns & MF_COL_LABEL))
        ok = (c->b.label = malloc(m * sizeof(int64_t))) != NULL;
    if (!ok) {
        mf_store_cursor_close(c);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for a block of %zu rows", m);
    }
    *out = c;
    return 0;
}

int mf_store_cursor_int64(mf_store_cursor *c, const char *name)
{
    if (!mf_store_has(c->s, name))
        return mf_set_error(MF_ERR_SCHEMA, "'%s' has no dataset /%s", c->s->path, name);
    free(c->extra_name);
    c->extra_name = strdup(name);
    if (!c->b.extra)
        c->b.extra = malloc((c->cap ? c->cap : 1) * sizeof(int64_t));
    if (!c->extra_name || !c->b.extra)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    return 0;
}

static void drop_ids(mf_store_cursor *c)
{
    if (c->have_ids)
        mf_store_free_strings(c->b.id, c->b.n);
    c->have_ids = 0;
}

int mf_store_cursor_next(mf_store_cursor *c, const mf_store_block **block)
{
    drop_ids(c);
    if (c->next >= c->end)
        return 0;
    mf_store *s = c->s;
    uint64_t at = c->next;
    size_t n = c->end - at < c->cap ? (size_t)(c->end - at) : c->cap;
    int rc = 0;
    if (c->b.embedding)
        rc = mf_store_read_embedding(s, at, n, c->b.embedding);
    if (rc == 0 && c->b.magnitude)
        rc = mf_store_read_magnitude(s, at, n, c->b.magnitude);
    if (rc == 0 && c->b.label)
        rc = mf_store_read_label(s, at, n, c->b.label);
    if (rc == 0 && c->extra_name)
        rc = mf_store_read_int64(s, c->extra_name, at, n, c->b.extra);
    if (rc == 0 && c->b.id && (rc = mf_store_read_ids(s, at, n, c->b.id)) == 0)
        c->have_ids = 1;
    if (rc < 0)
        return rc;
    c->b.start = at;
    c->b.n = n;
    c->next = at + n;
    *block = &c->b;
    return 1;
}

void mf_store_cursor_close(mf_store_cursor *c)
{
    if (!c)
        return;
    drop_ids(c);
    free(c->b.embedding);
    free(c->b.magnitude);
    free(c->b.id);
    free(c->b.label);
    free(c->b.extra);
    free(c->extra_name);
    free(c);
}

/* ---- whole columns ------------------------------------------------------------------ */

static int load_column(mf_store *s, const char *name, size_t elem, void **out,
                       int (*read)(mf_store *, const char *, uint64_t, size_t, void *))
{
    *out = NULL;
    if (!mf_store_has(s, name))
        return mf_set_error(MF_ERR_SCHEMA, "'%s' has no dataset /%s", s->path, name);
    size_t n = (size_t)s->rows, bytes;
    if (mf_size_mul(n ? n : 1, elem, &bytes, name) < 0)
        return MF_ERR_NOMEM;
    char *v = malloc(bytes);
    if (!v)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for '/%s' of '%s' (%zu rows)", name,
                            s->path, n);
    for (uint64_t at = 0; at < n; at += SCALAR_BLOCK_ROWS) {
        size_t k = n - at < SCALAR_BLOCK_ROWS ? (size_t)(n - at) : SCALAR_BLOCK_ROWS;
        int rc = read(s, name, at, k, v + at * elem);
        if (rc < 0) {
            free(v);
            return rc;
        }
    }
    *out = v;
    return 0;
}

static int read_float_named(mf_store *s, const char *name, uint64_t at, size_t n, void *out)
{
    return mf_store_read_float(s, name, at, n, out);
}

static int read_int64_named(mf_store *s, const char *name, uint64_t at, size_t n, void *out)
{
    return strcmp(name, "label") == 0 ? mf_store_read_label(s, at, n, out)
                                      : mf_store_read_int64(s, name, at, n, out);
}

int mf_store_load_float(mf_store *s, const char *name, float **out)
{
    return load_column(s, name, sizeof(float), (void **)out, read_float_named);
}

int mf_store_load_int64(mf_store *s, const char *name, int64_t **out)
{
    return load_column(s, name, sizeof(int64_t), (void **)out, read_int64_named);
}

int mf_store_load_embedding(mf_store *s, float **out)
{
    *out = NULL;
    size_t n = (size_t)s->rows, dim = (size_t)s->dim, bytes;
    if (mf_size_mul(n ? n : 1, dim * sizeof(float), &bytes, "embeddings") < 0)
        return MF_ERR_NOMEM;
    float *x = malloc(bytes);
    if (!x)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu x %zu embeddings of '%s'", n,
                            dim, s->path);
    size_t block = mf_store_block_rows(s, MF_COL_EMBEDDING);
    for (uint64_t at = 0; at < n; at += block) {
        size_t k = n - at < block ? (size_t)(n - at) : block;
        int rc = mf_store_read_embedding(s, at, k, x + at * dim);
        if (rc < 0) {
            free(x);
            return rc;
        }
    }
    *out = x;
    return 0;
}

int mf_store_collect_ids(mf_store *s, mf_idset *set)
{
    mf_store_cursor *c;
    const mf_store_block *b;
    int rc = mf_store_cursor_open(&c, s, MF_COL_ID, 0, s->rows);
    while (rc == 0 && (rc = mf_store_cursor_next(c, &b)) > 0) {
        rc = 0;
        for (size_t i = 0; i < b->n && rc >= 0; i++)
            rc = mf_idset_add(set, b->id[i]);
        rc = rc < 0 ? mf_set_error(MF_ERR_NOMEM, "out of memory for the ids done") : 0;
    }
    mf_store_cursor_close(c);
    for (uint64_t i = 0; i < s->failed && rc == 0; i++) {
        char *id, *reason;
        if ((rc = mf_store_read_failed(s, i, &id, &reason)) == 0) {
            rc = mf_idset_add(set, id) < 0 ? mf_set_error(MF_ERR_NOMEM, "out of memory") : 0;
            free(id);
            free(reason);
        }
    }
    return rc < 0 ? rc : 0;
}
