/* spool.c - images kept aside for reordering (see spool.h). */
#include "spool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mf/durable.h"
#include "mf/status.h"

int ex_spool_open(ex_spool *s, const char *beside, uint64_t rows)
{
    memset(s, 0, sizeof *s);
    size_t n = rows ? (size_t)rows : 1;
    s->off = malloc(n * sizeof *s->off);
    s->size = calloc(n, sizeof *s->size);
    s->idlen = calloc(n, sizeof *s->idlen);
    if (!s->off || !s->size || !s->idlen)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu rows", n);
    memset(s->off, 0xff, n * sizeof *s->off);
    /* Beside the output: the same disk, which must have room for the result anyway. */
    s->f = mf_scratch_file(beside);
    return s->f ? 0 : MF_ERR_IO;
}

int ex_spool_put(ex_spool *s, uint64_t row, const char *id, const uint8_t *data, size_t size)
{
    size_t idlen = strlen(id) + 1; /* with its NUL: read back as a C string */
    if (size > UINT32_MAX || idlen > UINT32_MAX)
        return mf_set_error(MF_ERR_LIMIT, "'%s': image of %zu bytes is too large", id, size);
    if (fwrite(id, 1, idlen, s->f) != idlen || fwrite(data, 1, size, s->f) != size)
        return mf_set_error(MF_ERR_IO, "cannot write the export's scratch file: %s",
                            strerror(errno));
    s->off[row] = s->used;
    s->idlen[row] = (uint32_t)idlen;
    s->size[row] = (uint32_t)size;
    s->used += idlen + size;
    return 0;
}

int ex_spool_has(const ex_spool *s, uint64_t row) { return s->off[row] != UINT64_MAX; }

int ex_spool_get(ex_spool *s, uint64_t row, const char **id, const uint8_t **data, size_t *size)
{
    size_t need = (size_t)s->idlen[row] + s->size[row];
    if (need > s->cap) {
        uint8_t *b = realloc(s->buf, need);
        if (!b)
            return mf_set_error(MF_ERR_NOMEM, "out of memory for an image of %zu bytes", need);
        s->buf = b;
        s->cap = need;
    }
    if (fflush(s->f) != 0 ||
        pread(fileno(s->f), s->buf, need, (off_t)s->off[row]) != (ssize_t)need)
        return mf_set_error(MF_ERR_IO, "cannot read back the export's scratch file");
    *id = (const char *)s->buf;
    *data = s->buf + s->idlen[row];
    *size = s->size[row];
    return 0;
}

void ex_spool_close(ex_spool *s)
{
    if (s->f)
        fclose(s->f);
    free(s->off);
    free(s->size);
    free(s->idlen);
    free(s->buf);
    memset(s, 0, sizeof *s);
}
