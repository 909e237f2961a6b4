/* sink_rec.c - insightface RecordIO (.rec + .idx) through mf/recordio.h's writer.
 *
 * The writer needs the images grouped by class, but images arrive in the order that
 * reads each archive once. So they are spooled to a scratch file beside the output
 * (bytes + offset per row), then written in (class, row) order. Classes are
 * re-ranked over the images actually found, so the file always has labels 0..K-1 with
 * no empty identity even when some images were missing. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export_internal.h"
#include "export_sinks.h"
#include "mf/durable.h"
#include "mf/recordio.h"
#include "mf/status.h"

typedef struct rec {
    char *rec_path, *idx_path;
    mf_recordio_writer *w; /* opened at begin, so existing outputs are refused first */
    FILE *spool;
    uint64_t spooled; /* bytes in the spool */
    uint64_t *off;    /* [n] offset in the spool, UINT64_MAX = no image */
    uint32_t *size;   /* [n] */
} rec;

/* "x.rec" -> x.rec + x.idx; "x" -> x.rec + x.idx. */
static int rec_names(const char *out, char **rec_path, char **idx_path)
{
    size_t n = strlen(out);
    size_t stem = n >= 4 && strcmp(out + n - 4, ".rec") == 0 ? n - 4 : n;
    *rec_path = malloc(stem + 5);
    *idx_path = malloc(stem + 5);
    if (!*rec_path || !*idx_path)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    snprintf(*rec_path, stem + 5, "%.*s.rec", (int)stem, out);
    snprintf(*idx_path, stem + 5, "%.*s.idx", (int)stem, out);
    return 0;
}

static void rec_free(mf_exporter *ex)
{
    rec *r = ex->state;
    if (!r)
        return;
    if (r->spool)
        fclose(r->spool);
    mf_recordio_writer_discard(r->w);
    free(r->rec_path);
    free(r->idx_path);
    free(r->off);
    free(r->size);
    free(r);
    ex->state = NULL;
}

static int rec_begin(mf_exporter *ex)
{
    rec *r = calloc(1, sizeof *r);
    ex->state = r;
    size_t n = ex->n ? (size_t)ex->n : 1;
    if (!r || !(r->off = malloc(n * sizeof *r->off)) || !(r->size = calloc(n, sizeof *r->size)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    memset(r->off, 0xff, n * sizeof *r->off);
    int rc = rec_names(ex->p->output, &r->rec_path, &r->idx_path);
    if (rc < 0)
        return rc;
    unsigned flags = MF_OUTPUT_MAKE_PARENTS | (ex->p->overwrite ? MF_OUTPUT_OVERWRITE : 0);
    rc = mf_recordio_writer_open(&r->w, r->rec_path, r->idx_path, flags);
    /* The spool lives beside the output: same disk, which has room for the result. */
    if (rc == 0 && !(r->spool = mf_scratch_file(r->rec_path)))
        rc = MF_ERR_IO;
    return rc;
}

static int rec_put(mf_exporter *ex, uint64_t row, const char *id, const uint8_t *data,
                   size_t size)
{
    rec *r = ex->state;
    if (size > UINT32_MAX) {
        mf_export_missing(ex, id, "image too large for a record");
        return 0;
    }
    if (fwrite(data, 1, size, r->spool) != size)
        return mf_set_error(MF_ERR_IO, "cannot write the spool for '%s': %s", r->rec_path,
                            strerror(errno));
    r->off[row] = r->spooled;
    r->size[row] = (uint32_t)size;
    r->spooled += size;
    return 0;
}

/* Rows with an image, sorted by (class, row): a counting sort over the classes. */
static uint64_t *order_rows(mf_exporter *ex, uint64_t *count)
{
    rec *r = ex->state;
    uint64_t k = ex->stats->classes, m = 0;
    uint64_t *start = calloc(k + 1, sizeof *start);
    uint64_t *out = malloc((ex->n ? ex->n : 1) * sizeof *out);
    if (!start || !out) {
        free(start);
        free(out);
        return NULL;
    }
    for (uint64_t i = 0; i < ex->n; i++)
        if (r->off[i] != UINT64_MAX)
            start[ex->cls[i] + 1]++, m++;
    for (uint64_t c = 0; c < k; c++)
        start[c + 1] += start[c];
    for (uint64_t i = 0; i < ex->n; i++)
        if (r->off[i] != UINT64_MAX)
            out[start[ex->cls[i]]++] = i;
    free(start);
    *count = m;
    return out;
}

static int write_records(mf_exporter *ex, mf_recordio_writer *w, const uint64_t *order,
                         uint64_t m)
{
    rec *r = ex->state;
    uint8_t *buf = NULL;
    size_t cap = 0;
    int64_t dense = -1, prev = -1;
    int rc = fflush(r->spool) == 0 ? 0 : mf_set_error(MF_ERR_IO, "spool write failed");
    for (uint64_t j = 0; j < m && rc == 0; j++) {
        uint64_t row = order[j];
        size_t size = r->size[row];
        if (size > cap) {
            uint8_t *nb = realloc(buf, size);
            if (!nb) {
                rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
                break;
            }
            buf = nb, cap = size;
        }
        if (pread(fileno(r->spool), buf, size, (off_t)r->off[row]) != (ssize_t)size) {
            rc = mf_set_error(MF_ERR_IO, "cannot read back the spool of '%s'", r->rec_path);
            break;
        }
        if (ex->cls[row] != prev)
            dense++, prev = ex->cls[row];
        rc = mf_recordio_writer_add(w, dense, buf, size);
        if (rc == 0)
            ex->stats->written++;
    }
    ex->stats->classes = (uint64_t)(dense + 1);
    free(buf);
    return rc;
}

static int rec_commit(mf_exporter *ex)
{
    rec *r = ex->state;
    uint64_t m = 0;
    uint64_t *order = order_rows(ex, &m);
    int rc =
        order ? write_records(ex, r->w, order, m) : mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (rc == 0) {
        rc = mf_recordio_writer_commit(r->w); /* frees the writer */
        r->w = NULL;
    }
    free(order);
    if (rc == 0)
        ex->stats->files = 2;
    rec_free(ex);
    return rc;
}

static void rec_abort(mf_exporter *ex) { rec_free(ex); }

const mf_sink mf_sink_rec = {rec_begin, rec_put, rec_commit, rec_abort};
