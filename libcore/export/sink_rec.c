/* sink_rec.c - insightface RecordIO (.rec + .idx) through mf/recordio.h's writer.
 *
 * The writer needs the images grouped by class, but images arrive in the order that
 * reads each archive once. So they are spooled (spool.h), then written grouped by class.
 * A `property` file beside them gives the class count and image size, as insightface's
 * own tools write it; the three files appear together. Classes are
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
#include "mf/image.h"
#include "mf/recordio.h"
#include "mf/status.h"
#include "spool.h"

typedef struct rec {
    char *rec_path, *idx_path, *property_path;
    mf_recordio_writer *w; /* opened at begin, so existing outputs are refused first */
    mf_output *property;   /* "num_classes,112,112", read by insightface's load_property */
    ex_spool spool;
} rec;

/* "x.rec" -> x.rec + x.idx; "x" -> x.rec + x.idx; the property file beside them. */
static int rec_names(const char *out, rec *r)
{
    size_t n = strlen(out);
    size_t stem = n >= 4 && strcmp(out + n - 4, ".rec") == 0 ? n - 4 : n;
    const char *slash = strrchr(out, '/');
    size_t dir = slash ? (size_t)(slash - out) + 1 : 0;
    r->rec_path = malloc(stem + 5);
    r->idx_path = malloc(stem + 5);
    r->property_path = malloc(dir + sizeof "property");
    if (!r->rec_path || !r->idx_path || !r->property_path)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    snprintf(r->rec_path, stem + 5, "%.*s.rec", (int)stem, out);
    snprintf(r->idx_path, stem + 5, "%.*s.idx", (int)stem, out);
    snprintf(r->property_path, dir + sizeof "property", "%.*sproperty", (int)dir, out);
    return 0;
}

static void rec_free(mf_exporter *ex)
{
    rec *r = ex->state;
    if (!r)
        return;
    ex_spool_close(&r->spool);
    mf_recordio_writer_discard(r->w);
    mf_output_abort(r->property);
    free(r->rec_path);
    free(r->idx_path);
    free(r->property_path);
    free(r);
    ex->state = NULL;
}

static int rec_begin(mf_exporter *ex)
{
    rec *r = calloc(1, sizeof *r);
    ex->state = r;
    if (!r)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int rc = rec_names(ex->p->output, r);
    unsigned flags = MF_OUTPUT_MAKE_PARENTS | (ex->p->overwrite ? MF_OUTPUT_OVERWRITE : 0);
    if (rc == 0)
        rc = mf_recordio_writer_open(&r->w, r->rec_path, r->idx_path, flags);
    if (rc == 0)
        rc = mf_output_open(&r->property, r->property_path, flags);
    if (rc == 0)
        rc = ex_spool_open(&r->spool, r->rec_path, ex->n);
    return rc;
}

static int rec_put(mf_exporter *ex, uint64_t row, const char *id, const uint8_t *data,
                   size_t size)
{
    rec *r = ex->state;
    if (size > (1u << 29) - 24) {
        mf_export_missing(ex, id, "image too large for a record");
        return 0;
    }
    return ex_spool_put(&r->spool, row, id, data, size);
}

/* Rows with an image, grouped by class (the format's ranges [first, end)), in the export's
 * row order within each class (store order, or the --shuffle permutation): a stable
 * counting sort over the classes. */
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
        if (ex_spool_has(&r->spool, i))
            start[ex->cls[i] + 1]++, m++;
    for (uint64_t c = 0; c < k; c++)
        start[c + 1] += start[c];
    for (uint64_t j = 0; j < ex->n; j++) {
        uint64_t i = mf_export_row_at(ex, j);
        if (ex_spool_has(&r->spool, i))
            out[start[ex->cls[i]]++] = i;
    }
    free(start);
    *count = m;
    return out;
}

static int write_records(mf_exporter *ex, const uint64_t *order, uint64_t m)
{
    rec *r = ex->state;
    int64_t dense = -1, prev = -1;
    int rc = 0;
    for (uint64_t j = 0; j < m && rc == 0; j++) {
        uint64_t row = order[j];
        const char *id;
        const uint8_t *data;
        size_t size;
        if ((rc = ex_spool_get(&r->spool, row, &id, &data, &size)) < 0)
            break;
        if (ex->cls[row] != prev)
            dense++, prev = ex->cls[row];
        rc = mf_recordio_writer_add(r->w, dense, data, size);
        if (rc == 0)
            ex->stats->written++;
    }
    ex->stats->classes = (uint64_t)(dense + 1);
    return rc;
}

static int rec_commit(mf_exporter *ex)
{
    rec *r = ex->state;
    uint64_t m = 0;
    uint64_t *order = order_rows(ex, &m);
    int rc = order ? write_records(ex, order, m) : mf_set_error(MF_ERR_NOMEM, "out of memory");
    FILE *f = rc == 0 ? mf_output_stream(r->property) : NULL;
    if (rc == 0 && (!f || fprintf(f, "%llu,%d,%d\n", (unsigned long long)ex->stats->classes,
                                  MF_FACE_SIZE, MF_FACE_SIZE) < 0))
        rc = f ? mf_set_error(MF_ERR_IO, "cannot write '%s'", r->property_path) : MF_ERR_IO;
    if (rc == 0) {
        rc = mf_recordio_writer_commit_with(r->w, &r->property, 1); /* frees both */
        r->w = NULL;
        r->property = NULL;
    }
    free(order);
    if (rc == 0)
        ex->stats->files = 3;
    rec_free(ex);
    return rc;
}

static void rec_abort(mf_exporter *ex) { rec_free(ex); }

const mf_sink mf_sink_rec = {rec_begin, rec_put, rec_commit, rec_abort};
