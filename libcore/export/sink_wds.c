/* sink_wds.c - WebDataset shards through libarchive's tar writer. Sample key = the
 * store row number (10 digits, no dots, so WebDataset's "key up to the first dot" rule
 * holds); members <key>.jpg|.png (bytes as stored), <key>.cls (class), <key>.json.
 * Each shard is an output of the durable-output module: written under a temporary name,
 * sealed (fsynced and closed) when full, and all published together at the end. With
 * --shuffle the images are spooled first and written in the seeded permutation's order,
 * so each shard mixes identities (sample keys stay the store rows). */
#include <archive.h>
#include <archive_entry.h>
#include <cjson/cJSON.h>
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
#include "mf/status.h"
#include "spool.h"

#define MAX_SHARDS 1000000 /* the names have 6 digits */

typedef struct wds {
    struct archive *w;
    ex_spool spool;  /* --shuffle: the images, until all are there */
    mf_output **out; /* [shards] */
    size_t shards;   /* shards opened so far */
    size_t cap;
    size_t in_shard; /* samples in the current one */
} wds;

static char *shard_name(const char *prefix, size_t k)
{
    size_t n = strlen(prefix) + 32;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s-%06zu.tar", prefix, k);
    return s;
}

static int wds_begin(mf_exporter *ex)
{
    if (ex->p->shard_size == 0)
        return mf_set_error(MF_ERR_ARG, "shard size must be at least 1");
    wds *st = calloc(1, sizeof *st);
    ex->state = st;
    if (!st)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (!ex->order)
        return 0;
    char *first = shard_name(ex->p->output, 0);
    int rc = first ? mf_make_parents(first) : mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (rc == 0)
        rc = ex_spool_open(&st->spool, first, ex->n);
    free(first);
    return rc;
}

static int archive_fail(struct archive *w, const char *what)
{
    return mf_set_error(MF_ERR_IO, "cannot write '%s': %s", what,
                        archive_error_string(w) ? archive_error_string(w) : "libarchive error");
}

/* Finish the current shard: close the tar, make it durable, release its file. */
static int close_shard(wds *st)
{
    if (!st->w)
        return 0;
    mf_output *o = st->out[st->shards - 1];
    int rc =
        archive_write_close(st->w) == ARCHIVE_OK ? 0 : archive_fail(st->w, mf_output_path(o));
    archive_write_free(st->w);
    st->w = NULL;
    return rc < 0 ? rc : mf_output_seal(o);
}

static int open_shard(mf_exporter *ex, wds *st)
{
    if (st->shards >= MAX_SHARDS)
        return mf_set_error(MF_ERR_LIMIT, "more than %d shards: raise --shard-size",
                            MAX_SHARDS);
    if (st->shards == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 64;
        mf_output **grown = realloc(st->out, cap * sizeof *grown);
        if (!grown)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        st->out = grown;
        st->cap = cap;
    }
    char *name = shard_name(ex->p->output, st->shards);
    if (!name)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    unsigned flags = MF_OUTPUT_MAKE_PARENTS | (ex->p->overwrite ? MF_OUTPUT_OVERWRITE : 0);
    mf_output *o;
    int rc = mf_output_open(&o, name, flags);
    free(name);
    if (rc < 0)
        return rc;
    st->out[st->shards++] = o;
    st->in_shard = 0;
    FILE *f = mf_output_stream(o);
    st->w = f ? archive_write_new() : NULL;
    rc = f && st->w ? 0 : f ? mf_set_error(MF_ERR_NOMEM, "out of memory") : MF_ERR_IO;
    /* pax_restricted: plain ustar unless a name needs more (then a pax header). */
    if (rc == 0 && (archive_write_set_format_pax_restricted(st->w) != ARCHIVE_OK ||
                    archive_write_set_bytes_in_last_block(st->w, 1) != ARCHIVE_OK ||
                    archive_write_open_FILE(st->w, f) != ARCHIVE_OK))
        rc = archive_fail(st->w, mf_output_path(o));
    return rc;
}

static int add_member(struct archive *w, const char *name, const void *data, size_t size)
{
    struct archive_entry *e = archive_entry_new();
    if (!e)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, (la_int64_t)size);
    archive_entry_set_mtime(e, 0, 0); /* same input, same bytes */
    int ok = archive_write_header(w, e) == ARCHIVE_OK &&
             (size == 0 || archive_write_data(w, data, size) == (la_ssize_t)size);
    archive_entry_free(e);
    return ok ? 0 : archive_fail(w, name);
}

static char *sample_json(mf_exporter *ex, uint64_t row, const char *id)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddNumberToObject(o, "row", (double)row);
    cJSON_AddNumberToObject(o, "class", (double)ex->cls[row]);
    cJSON_AddNumberToObject(o, ex->p->label_column ? ex->p->label_column : "label",
                            (double)ex->label[row]);
    if (ex->class_name && ex->class_name[ex->cls[row]])
        cJSON_AddStringToObject(o, "label_name", ex->class_name[ex->cls[row]]);
    cJSON_AddNumberToObject(o, "magnitude", ex->mag[row]);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* One sample into the current shard (a new shard when it is full). */
static int write_sample(mf_exporter *ex, uint64_t row, const char *id, const uint8_t *data,
                        size_t size)
{
    wds *st = ex->state;
    int rc = 0;
    if (!st->w || st->in_shard == ex->p->shard_size) {
        if ((rc = close_shard(st)) < 0 || (rc = open_shard(ex, st)) < 0)
            return rc;
    }
    char name[48], cls[24];
    char *json = sample_json(ex, row, id);
    if (!json)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    snprintf(name, sizeof name, "%010llu.%s", (unsigned long long)row,
             mf_image_format_ext(mf_image_sniff(data, size)));
    rc = add_member(st->w, name, data, size);
    snprintf(name, sizeof name, "%010llu.cls", (unsigned long long)row);
    int len = snprintf(cls, sizeof cls, "%lld", (long long)ex->cls[row]);
    if (rc == 0)
        rc = add_member(st->w, name, cls, (size_t)len);
    snprintf(name, sizeof name, "%010llu.json", (unsigned long long)row);
    if (rc == 0)
        rc = add_member(st->w, name, json, strlen(json));
    free(json);
    st->in_shard++;
    ex->stats->written++;
    return rc;
}

/* Shuffled: kept aside until every image is there, then written in the permutation's
 * order at commit. Else written as they come. */
static int wds_put(mf_exporter *ex, uint64_t row, const char *id, const uint8_t *data,
                   size_t size)
{
    wds *st = ex->state;
    return ex->order ? ex_spool_put(&st->spool, row, id, data, size)
                     : write_sample(ex, row, id, data, size);
}

static int write_spooled(mf_exporter *ex)
{
    wds *st = ex->state;
    int rc = 0;
    for (uint64_t j = 0; j < ex->n && rc == 0; j++) {
        uint64_t row = ex->order[j];
        const char *id;
        const uint8_t *data;
        size_t size;
        if (ex_spool_has(&st->spool, row) &&
            (rc = ex_spool_get(&st->spool, row, &id, &data, &size)) == 0)
            rc = write_sample(ex, row, id, data, size);
    }
    return rc;
}

static void wds_free(mf_exporter *ex)
{
    wds *st = ex->state;
    ex_spool_close(&st->spool);
    free(st->out);
    free(st);
    ex->state = NULL;
}

static void wds_abort(mf_exporter *ex)
{
    wds *st = ex->state;
    if (!st)
        return;
    if (st->w) {
        archive_write_close(st->w);
        archive_write_free(st->w);
    }
    for (size_t k = 0; k < st->shards; k++)
        mf_output_abort(st->out[k]);
    wds_free(ex);
}

/* Publish every shard, then (with --overwrite) remove shards left by an earlier, longer
 * export under the same prefix, so the set on disk is exactly this one. */
static int wds_commit(mf_exporter *ex)
{
    wds *st = ex->state;
    int rc = ex->order ? write_spooled(ex) : 0;
    if (rc == 0)
        rc = close_shard(st);
    if (rc < 0) {
        wds_abort(ex);
        return rc;
    }
    rc = mf_output_commit_all(st->out, st->shards);
    for (size_t k = st->shards; rc == 0 && ex->p->overwrite; k++) {
        char *stale = shard_name(ex->p->output, k);
        int removed = stale ? mf_output_remove_extra(stale) : 0;
        free(stale);
        if (removed <= 0)
            break;
    }
    ex->stats->files = rc == 0 ? st->shards : 0;
    wds_free(ex);
    return rc;
}

const mf_sink mf_sink_wds = {wds_begin, wds_put, wds_commit, wds_abort};
