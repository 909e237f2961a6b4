/* sink_wds.c - WebDataset shards through libarchive's tar writer. Sample key = the
 * store row number (10 digits, no dots, so WebDataset's "key up to the first dot" rule
 * holds); members <key>.jpg|.png (bytes as stored), <key>.cls (class), <key>.json.
 * Shards are written as OUT-000000.tar.partial ... and renamed together at the end. */
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
#include "mf/status.h"

#define MAX_SHARDS 1000000 /* the names have 6 digits */

typedef struct wds {
    struct archive *w;
    size_t shards;   /* shards opened so far */
    size_t in_shard; /* samples in the current one */
} wds;

static char *shard_name(const char *prefix, size_t k, int partial)
{
    size_t n = strlen(prefix) + 32;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s-%06zu.tar%s", prefix, k, partial ? ".partial" : "");
    return s;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int wds_check(mf_exporter *ex)
{
    if (ex->p->shard_size == 0)
        return mf_set_error(MF_ERR_ARG, "shard size must be at least 1");
    char *first = shard_name(ex->p->output, 0, 0);
    if (!first)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int rc = !ex->p->overwrite && exists(first)
                 ? mf_set_error(MF_ERR_ARG, "'%s' exists (use --overwrite)", first)
                 : 0;
    free(first);
    return rc;
}

static int wds_begin(mf_exporter *ex)
{
    ex->state = calloc(1, sizeof(wds));
    return ex->state ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
}

static int archive_fail(struct archive *w, const char *what)
{
    return mf_set_error(MF_ERR_IO, "cannot write '%s': %s", what,
                        archive_error_string(w) ? archive_error_string(w) : "libarchive error");
}

/* Finish the current shard: close the tar and fsync it. */
static int close_shard(mf_exporter *ex, wds *st)
{
    if (!st->w)
        return 0;
    char *name = shard_name(ex->p->output, st->shards - 1, 1);
    int rc = archive_write_close(st->w) == ARCHIVE_OK ? 0 : archive_fail(st->w, name);
    archive_write_free(st->w);
    st->w = NULL;
    if (rc == 0)
        rc = name ? mf_fsync_path(name) : mf_set_error(MF_ERR_NOMEM, "out of memory");
    free(name);
    return rc;
}

static int open_shard(mf_exporter *ex, wds *st)
{
    if (st->shards >= MAX_SHARDS)
        return mf_set_error(MF_ERR_LIMIT, "more than %d shards: raise --shard-size",
                            MAX_SHARDS);
    char *name = shard_name(ex->p->output, st->shards, 1);
    if (!name)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    st->w = archive_write_new();
    int rc = st->w ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    /* pax_restricted: plain ustar unless a name needs more (then a pax header). */
    if (rc == 0 && (archive_write_set_format_pax_restricted(st->w) != ARCHIVE_OK ||
                    archive_write_open_filename(st->w, name) != ARCHIVE_OK))
        rc = archive_fail(st->w, name);
    st->shards++; /* counted even on failure so that abort removes the file */
    st->in_shard = 0;
    free(name);
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
    cJSON_AddNumberToObject(o, "magnitude", ex->mag[row]);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int wds_put(mf_exporter *ex, uint64_t row, const char *id, const uint8_t *data,
                   size_t size)
{
    wds *st = ex->state;
    int rc = 0;
    if (!st->w || st->in_shard == ex->p->shard_size) {
        if ((rc = close_shard(ex, st)) < 0 || (rc = open_shard(ex, st)) < 0)
            return rc;
    }
    char name[48], cls[24];
    char *json = sample_json(ex, row, id);
    if (!json)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    snprintf(name, sizeof name, "%010llu.%s", (unsigned long long)row,
             mf_image_ext(data, size));
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

static void wds_abort(mf_exporter *ex)
{
    wds *st = ex->state;
    if (!st)
        return;
    if (st->w) {
        archive_write_close(st->w);
        archive_write_free(st->w);
    }
    for (size_t k = 0; k < st->shards; k++) {
        char *name = shard_name(ex->p->output, k, 1);
        if (name)
            unlink(name);
        free(name);
    }
    free(st);
    ex->state = NULL;
}

/* Rename every shard into place, then remove shards left by an earlier, longer export
 * under the same prefix (with --overwrite), so the set on disk is exactly this one. */
static int wds_commit(mf_exporter *ex)
{
    wds *st = ex->state;
    int rc = close_shard(ex, st);
    for (size_t k = 0; k < st->shards && rc == 0; k++) {
        char *from = shard_name(ex->p->output, k, 1), *to = shard_name(ex->p->output, k, 0);
        if (!from || !to)
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
        else if (rename(from, to) != 0)
            rc = mf_set_error(MF_ERR_IO, "cannot rename '%s': %s", from, strerror(errno));
        free(from);
        free(to);
    }
    for (size_t k = st->shards; rc == 0; k++) {
        char *stale = shard_name(ex->p->output, k, 0);
        int gone = !stale || unlink(stale) != 0;
        free(stale);
        if (gone)
            break;
    }
    if (rc < 0) {
        wds_abort(ex);
        return rc;
    }
    char *first = shard_name(ex->p->output, 0, 0);
    if (first)
        mf_fsync_parent_dir(first);
    free(first);
    ex->stats->files = st->shards;
    free(st);
    ex->state = NULL;
    return 0;
}

const mf_sink mf_sink_wds = {wds_check, wds_begin, wds_put, wds_commit, wds_abort};
