/* archive.c - archives through libarchive, read as a stream (never extracted). Members
 * are grouped WebDataset-style: consecutive members with the same key (path up to the
 * first dot of the basename) form one sample; its .jpg/.jpeg/.png member is the image
 * and a .cls member the label. A plain tar of images is the special case of one member
 * per key. */
#include "source_internal.h"
#include "mf/status.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Split a member path into key (before the first dot of the basename) and extension. */
static char *member_key(const char *name, const char **ext)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strchr(base, '.');
    *ext = dot ? dot + 1 : "";
    return strndup(name, dot ? (size_t)(dot - name) : strlen(name));
}

static int is_image_ext(const char *ext)
{
    return !strcasecmp(ext, "jpg") || !strcasecmp(ext, "jpeg") || !strcasecmp(ext, "png");
}

int mf_src_archive_names(mf_source *s, const char *path)
{
    mf_src_stream *st;
    struct archive *a = mf_src_archive_open(path, &st);
    if (!a)
        return 0; /* reported when the archive is iterated */
    struct archive_entry *e;
    int rc = 0;
    int r;
    while (rc == 0 &&
           ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)) {
        const char *name = archive_entry_pathname(e), *ext;
        if (!name || archive_entry_filetype(e) != AE_IFREG)
            continue;
        char *key = member_key(name, &ext);
        char *esc = key && is_image_ext(ext) ? mf_id_escape(name, NULL) : NULL;
        char *dir = esc ? mf_src_parent_name(esc) : NULL;
        if (dir)
            rc = mf_src_add_name(s, dir);
        free(dir);
        free(esc);
        free(key);
    }
    archive_read_free(a);
    mf_src_stream_free(st);
    return rc;
}

static void group_reset(mf_src_group *g)
{
    free(g->key);
    free(g->id);
    free(g->error);
    free(g->cls_error);
    mf_src_buf data = g->data;
    *g = (mf_src_group){.data = data};
    g->data.n = 0;
}

void mf_src_archive_close(mf_source *s)
{
    if (s->ar)
        archive_read_free(s->ar);
    s->ar = NULL;
    mf_src_stream_free(s->ar_stream);
    s->ar_stream = NULL;
    s->ar_have_header = s->ar_dead = 0;
    free(s->damage);
    s->damage = NULL;
    group_reset(&s->g);
}

static char *reason(struct archive *a, const char *what)
{
    const char *m = archive_error_string(a);
    if (m && (strstr(m, "runcated") || strstr(m, "nexpected EOF") || strstr(m, "remature")))
        return mf_src_printf("truncated %s", what);
    return mf_src_printf("corrupt %s (%s)", what, m ? m : "unknown error");
}

/* Read the current member's data into b (at most max bytes). NULL or a reason. */
static char *read_member(mf_source *s, mf_src_buf *b, size_t max)
{
    b->n = 0;
    for (;;) {
        if (mf_src_buf_reserve(b, b->n + 65536) < 0)
            return strdup("out of memory");
        la_ssize_t r = archive_read_data(s->ar, b->p + b->n, 65536);
        if (r == 0)
            return NULL;
        if (r < 0) {
            if (r == ARCHIVE_FATAL)
                s->ar_dead = 1;
            return reason(s->ar, "archive member");
        }
        b->n += (size_t)r;
        if (b->n > max) {
            archive_read_data_skip(s->ar);
            return mf_src_printf("file too large (limit %zu MB)", max >> 20);
        }
    }
}

/* Add the current member (header already read) to the open group. */
/* A .cls member: its label, by the rule every label follows; a bad one fails the sample
 * with a reason naming the member and quoting the text. */
static int take_cls(mf_source *s, const char *name)
{
    mf_src_group *g = &s->g;
    mf_src_buf b = {0};
    char *err = read_member(s, &b, 64);
    char *esc = err || g->cls_error ? NULL : mf_id_escape(name, NULL);
    int rc = 0;
    if (err && !g->cls_error)
        g->cls_error = err; /* the first bad .cls of the group is the one reported */
    else if (err)
        free(err);
    else if (g->cls_error)
        ; /* as above */
    else if (!esc)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
    else if (mf_label_parse((const char *)b.p, b.n, 1, &g->cls) == 0)
        g->has_cls = 1;
    else if (!(g->cls_error = mf_src_printf("'%s': %s", esc, mf_last_error())))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
    free(esc);
    free(b.p);
    return rc;
}

static int take_member(mf_source *s, struct archive_entry *e, const char *name, const char *ext,
                       const char *path)
{
    mf_src_group *g = &s->g;
    if (is_image_ext(ext) && !g->has_image) {
        g->has_image = 1;
        char *esc = mf_id_escape(name, NULL);
        g->id = esc ? mf_src_printf("%s//%s", path, esc) : NULL;
        g->bad_name = !mf_utf8_valid(name);
        free(esc);
        if (!g->id)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        g->other_shard = !mf_src_wanted(s, g->id);
        if (g->other_shard)
            return 0;
        if (archive_entry_size_is_set(e) &&
            (uint64_t)archive_entry_size(e) > s->p.max_image_bytes)
            g->error =
                mf_src_printf("file too large (%lld bytes, limit %zu MB)",
                              (long long)archive_entry_size(e), s->p.max_image_bytes >> 20);
        else
            g->error = read_member(s, &g->data, s->p.max_image_bytes);
        if (s->p.label_from_dir)
            g->dir_label = mf_src_label_of(s, g->id + strlen(path) + 2);
        return 0;
    }
    if (!strcasecmp(ext, "cls"))
        return take_cls(s, name);
    return 0;
}

/* Emit the finished group if it is a sample of ours. 1 emitted, 0 nothing. */
static int flush_group(mf_source *s, mf_sample *out)
{
    mf_src_group *g = &s->g;
    int rc = 0;
    if (g->open && g->has_image) {
        if (!g->other_shard) {
            int64_t label = g->has_cls ? g->cls : g->dir_label;
            /* The sample's bytes move to s->data so the group buffer can be reused. */
            mf_src_buf tmp = s->data;
            s->data = g->data;
            g->data = tmp;
            rc = mf_src_emit(s, out, g->id, label, g->error ? g->error : g->cls_error,
                             s->data.p, s->data.n);
            if (rc > 0 && g->bad_name)
                out->warning = MF_SRC_BAD_NAME;
        }
    }
    group_reset(g);
    return rc;
}

static int fail_damage(mf_source *s, mf_sample *out, const char *path)
{
    int rc = mf_src_emit(s, out, path, -1, s->damage, NULL, 0);
    free(s->damage);
    s->damage = NULL;
    s->ar_dead = 2; /* reported: the input ends */
    return rc;
}

int mf_src_archive_next(mf_source *s, mf_sample *out)
{
    const mf_src_input *in = &s->inputs[s->cur];
    const char *path = in->id;
    if (!s->cur_open) {
        s->cur_open = 1;
        if (!(s->ar = mf_src_archive_open(in->path, &s->ar_stream)))
            return mf_src_emit(s, out, path, -1, mf_last_error(), NULL, 0);
    }
    if (!s->ar)
        return 0;
    struct archive_entry *e;
    for (;;) {
        if (s->ar_dead == 2)
            return 0;
        if (s->ar_dead && !s->g.open)
            return s->damage ? fail_damage(s, out, path) : 0;
        if (s->ar_dead) {
            int rc = flush_group(s, out);
            if (rc)
                return rc;
            continue;
        }
        if (!s->ar_have_header) {
            int r = archive_read_next_header(s->ar, &s->ar_entry);
            if (r == ARCHIVE_EOF) {
                /* The end blocks were read: check what follows them (gzip trailer). */
                s->damage = mf_src_stream_finish(s->ar, s->ar_stream);
                s->ar_dead = s->damage ? 1 : 2;
                int rc = flush_group(s, out);
                if (rc)
                    return rc;
                continue;
            }
            if (r != ARCHIVE_OK &&
                r != ARCHIVE_WARN) { /* RETRY/FAILED too: never loop on them */
                s->ar_dead = 1;
                s->damage = reason(s->ar, "archive");
                continue;
            }
            s->ar_have_header = 1;
        }
        e = s->ar_entry;
        const char *name = archive_entry_pathname(e), *ext;
        if (!name || archive_entry_filetype(e) != AE_IFREG) {
            s->ar_have_header = 0;
            continue;
        }
        char *key = member_key(name, &ext);
        if (!key)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        if (s->g.open && strcmp(key, s->g.key)) {
            free(key);
            int rc =
                flush_group(s, out); /* this member starts the next group: keep its header */
            if (rc)
                return rc;
            continue;
        }
        if (!s->g.open) {
            s->g.open = 1;
            s->g.key = key;
            s->g.cls = s->g.dir_label = -1;
        } else
            free(key);
        s->ar_have_header = 0;
        int rc = take_member(s, e, name, ext, path);
        if (rc < 0)
            return rc;
    }
}
