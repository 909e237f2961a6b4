/* source.c - the input iterator: queue, detection, label names, files and RecordIO
 * (archives in archive.c, directory walks and lists in walk.c). */
#include "source_internal.h"
#include "mf/status.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

mf_source_params mf_source_default_params(void)
{
    return (mf_source_params){.max_image_bytes = (size_t)64 << 20, .shard_count = 1};
}

int mf_source_new(mf_source **out, const mf_source_params *params)
{
    *out = NULL;
    mf_source_params p = params ? *params : mf_source_default_params();
    if (p.shard_count < 1)
        p.shard_count = 1;
    if (p.shard_index < 0 || p.shard_index >= p.shard_count)
        return mf_set_error(MF_ERR_ARG, "shard %d/%d out of range", p.shard_index,
                            p.shard_count);
    if (!p.max_image_bytes)
        p.max_image_bytes = mf_source_default_params().max_image_bytes;
    mf_source *s = calloc(1, sizeof *s);
    if (!s)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    s->p = p;
    *out = s;
    return 0;
}

int mf_source_add(mf_source *s, const char *path, mf_input_kind kind)
{
    if (!path || !*path)
        return mf_set_error(MF_ERR_ARG, "empty input path");
    if (s->prepared)
        return mf_set_error(MF_ERR_ARG, "inputs must be added before the first sample");
    if (s->n_inputs == s->cap_inputs) {
        size_t cap = s->cap_inputs ? s->cap_inputs * 2 : 16;
        mf_src_input *v = realloc(s->inputs, cap * sizeof *v);
        if (!v)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        s->inputs = v;
        s->cap_inputs = cap;
    }
    mf_src_input *in = &s->inputs[s->n_inputs];
    *in = (mf_src_input){.kind = kind, .path = strdup(path), .id = mf_id_escape(path, NULL)};
    in->bad_name = !mf_utf8_valid(path);
    if (!in->path || !in->id) {
        free(in->path);
        free(in->id);
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    }
    s->n_inputs++;
    return 0;
}

static void free_entries(mf_src_entries *e)
{
    for (size_t i = 0; i < e->n; i++) {
        free(e->v[i].path);
        free(e->v[i].id);
        free(e->v[i].error);
    }
    free(e->v);
    *e = (mf_src_entries){0};
}

void mf_source_free(mf_source *s)
{
    if (!s)
        return;
    mf_src_archive_close(s);
    mf_recordio_close(s->rec);
    for (size_t i = 0; i < s->n_inputs; i++) {
        free(s->inputs[i].path);
        free(s->inputs[i].id);
        free_entries(&s->inputs[i].entries);
    }
    free(s->inputs);
    for (size_t i = 0; i < s->n_names; i++)
        free(s->names[i]);
    free(s->names);
    free(s->g.data.p);
    free(s->damage);
    free(s->id);
    free(s->error);
    free(s->data.p);
    free(s);
}

size_t mf_source_label_count(const mf_source *s) { return s->n_names; }
const char *mf_source_label_name(const mf_source *s, size_t label)
{
    return label < s->n_names ? s->names[label] : NULL;
}
void mf_source_set_reading(mf_source *s, int on) { s->no_read = !on; }

void mf_source_set_skip(mf_source *s, mf_source_skip_fn fn, void *ctx)
{
    s->skip_fn = fn;
    s->skip_ctx = ctx;
}

/* Already done by an earlier run (resume). */
static int done_before(mf_source *s, const char *id)
{
    return s->skip_fn && s->skip_fn(id, s->skip_ctx);
}

int mf_src_wanted(mf_source *s, const char *id)
{
    return mf_shard_of(id, s->p.shard_count) == s->p.shard_index && !done_before(s, id);
}

/* Whether a list entry is this shard's: entries that stand for a whole unreadable input
 * belong to every shard. */
static int entry_in_shard(const mf_source *s, const mf_src_entry *e)
{
    return e->whole || mf_shard_of(mf_src_entry_id(e), s->p.shard_count) == s->p.shard_index;
}

static int entry_wanted(mf_source *s, const mf_src_entry *e)
{
    return entry_in_shard(s, e) && !done_before(s, mf_src_entry_id(e));
}

/* ---- detection -------------------------------------------------------------------- */

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcasecmp(s + n - m, suf);
}

static int archive_name(const char *p)
{
    static const char *const sufs[] = {".tar",    ".tar.gz",  ".tgz", ".tar.zst",
                                       ".tar.xz", ".tar.bz2", ".zip"};
    for (size_t i = 0; i < sizeof sufs / sizeof *sufs; i++)
        if (has_suffix(p, sufs[i]))
            return 1;
    return 0;
}

/* Compressed streams, zip and ustar/gnu tar by their signatures. */
static int archive_signature(const char *path)
{
    unsigned char b[264] = {0};
    const char *why;
    int fd = mf_open_regular(path, &why);
    if (fd < 0)
        return 0;
    ssize_t got = read(fd, b, sizeof b);
    close(fd);
    size_t n = got > 0 ? (size_t)got : 0;
    return (n >= 2 && b[0] == 0x1f && b[1] == 0x8b) ||
           (n >= 4 && !memcmp(b, "\x28\xb5\x2f\xfd", 4)) ||
           (n >= 6 && !memcmp(b,
                              "\xfd"
                              "7zXZ",
                              5)) ||
           (n >= 3 && !memcmp(b, "BZh", 3)) || (n >= 4 && !memcmp(b, "PK\x03\x04", 4)) ||
           (n >= 262 && !memcmp(b + 257, "ustar", 5));
}

static mf_input_kind detect(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return MF_INPUT_DIR;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return MF_INPUT_IMAGE; /* a FIFO or device: fails as "not a regular file" */
    if (has_suffix(path, ".rec"))
        return MF_INPUT_RECORDIO;
    if (archive_name(path) || archive_signature(path))
        return MF_INPUT_ARCHIVE;
    return MF_INPUT_IMAGE;
}

/* ---- label names (label_from_dir) -------------------------------------------------- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int mf_src_add_name(mf_source *s, const char *name)
{
    if (s->n_names == s->cap_names) {
        size_t cap = s->cap_names ? s->cap_names * 2 : 64;
        char **v = realloc(s->names, cap * sizeof *v);
        if (!v)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        s->names = v;
        s->cap_names = cap;
    }
    if (!(s->names[s->n_names] = strdup(name)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    s->n_names++;
    return 0;
}

static void sort_unique_names(mf_source *s)
{
    if (!s->n_names)
        return;
    qsort(s->names, s->n_names, sizeof *s->names, cmp_name);
    size_t k = 1;
    for (size_t i = 1; i < s->n_names; i++) {
        if (strcmp(s->names[i], s->names[k - 1]))
            s->names[k++] = s->names[i];
        else
            free(s->names[i]);
    }
    s->n_names = k;
}

int64_t mf_src_label_of(const mf_source *s, const char *path)
{
    char *name = mf_src_parent_name(path);
    if (!name)
        return -1;
    char **hit = bsearch(&name, s->names, s->n_names, sizeof *s->names, cmp_name);
    free(name);
    return hit ? (int64_t)(hit - s->names) : -1;
}

static int collect_names(mf_source *s, mf_src_input *in)
{
    if (in->kind == MF_INPUT_ARCHIVE)
        return mf_src_archive_names(s, in->path);
    for (size_t i = 0; i < in->entries.n; i++) {
        mf_src_entry *e = &in->entries.v[i];
        char *name = e->error || e->label >= 0 ? NULL : mf_src_parent_name(mf_src_entry_id(e));
        int rc = name ? mf_src_add_name(s, name) : 0;
        free(name);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Expand directories and lists, and number the label names, before the first sample. */
static int prepare(mf_source *s)
{
    int rc = 0;
    for (size_t i = 0; i < s->n_inputs && rc == 0; i++) {
        mf_src_input *in = &s->inputs[i];
        if (in->kind == MF_INPUT_AUTO)
            in->kind = detect(in->path);
        if (in->kind == MF_INPUT_DIR)
            rc = mf_src_expand_dir(in);
        else if (in->kind == MF_INPUT_LIST)
            rc = mf_src_expand_list(in, &s->p);
        else if (in->kind == MF_INPUT_IMAGE)
            rc = mf_src_entries_push(&in->entries, in->path, NULL);
        if (rc == 0 && s->p.label_from_dir)
            rc = collect_names(s, in);
    }
    if (rc < 0)
        return rc;
    sort_unique_names(s);
    for (size_t i = 0; i < s->n_inputs && s->p.label_from_dir; i++)
        for (size_t j = 0; j < s->inputs[i].entries.n; j++) {
            mf_src_entry *e = &s->inputs[i].entries.v[j];
            if (e->label < 0 && !e->error)
                e->label = mf_src_label_of(s, mf_src_entry_id(e));
        }
    s->prepared = 1;
    return 0;
}

/* ---- emitting ---------------------------------------------------------------------- */

static int replace(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? mf_set_error(MF_ERR_NOMEM, "out of memory") : 0;
}

int mf_src_emit(mf_source *s, mf_sample *out, const char *id, int64_t label, const char *error,
                const uint8_t *data, size_t size)
{
    if (replace(&s->id, id) < 0 || replace(&s->error, error) < 0)
        return MF_ERR_NOMEM;
    memset(out, 0, sizeof *out);
    out->id = s->id;
    out->label = label;
    out->error = s->error;
    out->data = error ? NULL : data;
    out->size = error ? 0 : size;
    return 1;
}

/* ---- plain files ------------------------------------------------------------------- */

/* Read a whole file into s->data, bounded by max_image_bytes. Returns NULL or a reason
 * (in `why`). */
static const char *read_file(mf_source *s, const char *path, char *why, size_t n_why)
{
    const char *open_why;
    int fd = mf_open_regular(path, &open_why);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        int plain = fd < 0 && (!strcmp(open_why, "not a regular file") ||
                               !strcmp(open_why, "is a directory"));
        snprintf(why, n_why, "%s%s",
                 plain ? "" : "cannot open: ", fd < 0 ? open_why : strerror(errno));
        if (fd >= 0)
            close(fd);
        return why;
    }
    const char *res = NULL;
    size_t size = (size_t)st.st_size;
    if ((uint64_t)st.st_size > s->p.max_image_bytes) {
        snprintf(why, n_why, "file too large (%llu bytes, limit %zu MB)",
                 (unsigned long long)st.st_size, s->p.max_image_bytes >> 20);
        res = why;
    } else if (mf_src_buf_reserve(&s->data, size + 1) < 0)
        res = "out of memory";
    for (size_t got = 0; !res && got < size;) {
        ssize_t r = read(fd, s->data.p + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(why, n_why, "read error: %s",
                     r < 0 ? strerror(errno) : "file shrank while reading");
            res = why;
        }
        got += r > 0 ? (size_t)r : 0;
    }
    s->data.n = size;
    close(fd);
    return res;
}

static int next_entry(mf_source *s, mf_src_input *in, mf_sample *out)
{
    while (s->cur_entry < in->entries.n) {
        mf_src_entry *e = &in->entries.v[s->cur_entry++];
        const char *id = mf_src_entry_id(e);
        if (!entry_wanted(s, e))
            continue;
        char why[200], *listed = NULL;
        const char *err = e->error     ? e->error
                          : s->no_read ? NULL
                                       : read_file(s, e->path, why, sizeof why);
        if (err && !e->error && e->line && !(err = listed = mf_src_list_reason(in, e, err)))
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        int rc = mf_src_emit(s, out, id, e->label, err, s->no_read ? NULL : s->data.p,
                             s->no_read ? 0 : s->data.n);
        free(listed);
        if (rc > 0 && e->has_landmarks) {
            out->has_landmarks = 1;
            memcpy(out->landmarks, e->landmarks, sizeof out->landmarks);
        }
        if (rc > 0 && e->bad_name)
            out->warning = MF_SRC_BAD_NAME;
        return rc;
    }
    return 0;
}

/* ---- RecordIO ---------------------------------------------------------------------- */

/* First identity key from an insightface header record (labels [N+1, N+1+K]), or
 * INT64_MAX when the float cannot be trusted: above 2^24 it is rounded, and a bound
 * one too low would drop the last image. Identity records have no image and are
 * skipped anyway; the bound only avoids reading them. */
static int64_t images_end(const mf_record_header *h)
{
    float v = h->labels[0];
    return v >= 1 && v <= 16777216.0f ? (int64_t)v : INT64_MAX;
}

static int rec_fail(mf_source *s, mf_sample *out, const char *path, const char *key,
                    const char *why)
{
    char *id = mf_src_printf("%s//%s", path, key);
    int rc = id ? mf_src_emit(s, out, id, -1, why, NULL, 0)
                : mf_set_error(MF_ERR_NOMEM, "out of memory");
    free(id);
    return rc;
}

static int next_record(mf_source *s, mf_src_input *in, mf_sample *out)
{
    if (!s->cur_open) {
        s->cur_open = 1;
        s->rec_images_end = INT64_MAX;
        if (mf_recordio_open(&s->rec, in->path, s->p.max_image_bytes) < 0)
            return mf_src_emit(s, out, in->id, -1, mf_last_error(), NULL, 0);
    }
    if (!s->rec)
        return 0;
    for (;;) {
        mf_record r;
        char key[32];
        /* Peek without loading: other shards' records are seeked over. */
        int rc = mf_recordio_next(s->rec, &r, 0);
        if (rc == 0)
            return 0;
        if (r.key >= 0)
            snprintf(key, sizeof key, "%lld", (long long)r.key);
        else
            snprintf(key, sizeof key, "@%llu", (unsigned long long)r.offset);
        if (rc == MF_ERR_LIMIT)
            return rec_fail(s, out, in->id, key, mf_last_error());
        if (rc < 0) {
            /* Damage: report where it is, then end this input. */
            snprintf(key, sizeof key, "@%llu", (unsigned long long)r.offset);
            rc = rec_fail(s, out, in->id, key, mf_last_error());
            mf_recordio_close(s->rec);
            s->rec = NULL;
            return rc;
        }
        if (r.duplicate) {
            /* A second record under a key the .idx already gave: it cannot have that id
             * (ids are unique), so it is reported by its offset instead of dropped. */
            snprintf(key, sizeof key, "@%llu", (unsigned long long)r.offset);
            char why[160], *id = mf_src_printf("%s//%s", in->id, key);
            if (!id)
                return mf_set_error(MF_ERR_NOMEM, "out of memory");
            int mine = mf_src_wanted(s, id);
            free(id);
            if (!mine)
                continue;
            snprintf(why, sizeof why,
                     "duplicate key %lld in the .idx (an earlier record has it)",
                     (long long)r.key);
            return rec_fail(s, out, in->id, key, why);
        }
        if (r.key >= s->rec_images_end)
            continue; /* identity records */
        char *id = mf_src_printf("%s//%s", in->id, key);
        if (!id)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        /* Record 0 is read even when it is not wanted: it may be the header. */
        int mine = mf_src_wanted(s, id);
        free(id);
        if (!mine && r.key != 0)
            continue;
        if ((rc = mf_recordio_load(s->rec, &r)) < 0)
            return rec_fail(s, out, in->id, key, mf_last_error());
        mf_record_header h;
        if (mf_record_parse(&h, r.data, r.size) < 0) {
            if (mine)
                return rec_fail(s, out, in->id, key, mf_last_error());
            continue;
        }
        if (h.image_size == 0) {
            if (r.key == 0 && h.flag >= 2)
                s->rec_images_end = images_end(&h);
            continue;
        }
        if (!mine)
            continue;
        int64_t label;
        if (mf_record_label(&h, &label) < 0)
            return rec_fail(s, out, in->id, key, mf_last_error());
        id = mf_src_printf("%s//%s", in->id, key);
        if (!id)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        rc = mf_src_emit(s, out, id, label, NULL, h.image, h.image_size);
        free(id);
        if (rc > 0 && in->bad_name)
            out->warning = MF_SRC_BAD_NAME;
        return rc;
    }
}

/* ---- counting ---------------------------------------------------------------------- */

/* Images of this shard in a .rec, through its .idx; 0 = not countable. */
static int count_record_keys(const mf_source *s, const mf_src_input *in, uint64_t *n)
{
    mf_recordio_reader *r;
    if (mf_recordio_open(&r, in->path, s->p.max_image_bytes) < 0)
        return 0;
    size_t nk = mf_recordio_index_size(r);
    int64_t end = INT64_MAX, first = 0;
    mf_record rec;
    mf_record_header h;
    if (nk && mf_recordio_read_key(r, 0, &rec) == 0 &&
        mf_record_parse(&h, rec.data, rec.size) == 0 && h.image_size == 0 && h.flag >= 2) {
        first = 1;
        end = images_end(&h);
    }
    char *id = NULL;
    for (size_t i = 0; i < nk; i++) {
        int64_t key = mf_recordio_index_key(r, i);
        if (key < first || key >= end)
            continue;
        if (s->p.shard_count <= 1) { /* unsharded: no id to hash */
            *n += s->p.shard_index == 0;
            continue;
        }
        free(id);
        if (!(id = mf_src_printf("%s//%lld", in->id, (long long)key)))
            break;
        *n += mf_shard_of(id, s->p.shard_count) == s->p.shard_index;
    }
    free(id);
    mf_recordio_close(r);
    return nk > 0;
}

int mf_source_count(mf_source *s, uint64_t *n)
{
    *n = 0;
    if (!s->prepared) {
        int rc = prepare(s);
        if (rc < 0)
            return rc;
    }
    int exact = 1;
    for (size_t i = 0; i < s->n_inputs; i++) {
        mf_src_input *in = &s->inputs[i];
        if (in->kind == MF_INPUT_ARCHIVE)
            exact = 0;
        else if (in->kind == MF_INPUT_RECORDIO)
            exact &= count_record_keys(s, in, n);
        else
            for (size_t j = 0; j < in->entries.n; j++)
                *n += entry_in_shard(s, &in->entries.v[j]);
    }
    return exact;
}

/* ---- the iterator ------------------------------------------------------------------- */

static void end_input(mf_source *s)
{
    mf_src_archive_close(s);
    mf_recordio_close(s->rec);
    s->rec = NULL;
    s->cur_open = 0;
    s->cur_entry = 0;
    s->cur++;
}

int mf_source_next(mf_source *s, mf_sample *out)
{
    if (!s->prepared) {
        int rc = prepare(s);
        if (rc < 0)
            return rc;
    }
    while (s->cur < s->n_inputs) {
        mf_src_input *in = &s->inputs[s->cur];
        int rc;
        if (in->kind == MF_INPUT_ARCHIVE)
            rc = mf_src_archive_next(s, out);
        else if (in->kind == MF_INPUT_RECORDIO)
            rc = next_record(s, in, out);
        else
            rc = next_entry(s, in, out);
        if (rc != 0)
            return rc;
        end_input(s);
    }
    return 0;
}
