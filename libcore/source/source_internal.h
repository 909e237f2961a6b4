/* source_internal.h - state shared by the parts of the input iterator. */
#ifndef MF_SOURCE_INTERNAL_H
#define MF_SOURCE_INTERNAL_H

#include "mf/recordio.h"
#include "mf/source.h"

#include <stdio.h>

struct archive;
struct archive_entry;

/* One file to read (directory walk, list line, single image), or a failure to report. */
typedef struct mf_src_entry {
    char *path;    /* the path to open, byte for byte */
    char *id;      /* the id (mf_id_escape of path) when it differs from path, else NULL */
    char *error;   /* set: report this instead of reading (bad list line, ...) */
    int64_t label; /* -1 until known */
    size_t line;   /* line of the list file it came from (1-based), 0 if none */
    int has_landmarks;
    int bad_name; /* path is not valid UTF-8: the id holds \xNN escapes */
    float landmarks[10];
} mf_src_entry;

static inline const char *mf_src_entry_id(const mf_src_entry *e)
{
    return e->id ? e->id : e->path;
}

typedef struct mf_src_entries {
    mf_src_entry *v;
    size_t n, cap;
} mf_src_entries;

/* A growable byte buffer. */
typedef struct mf_src_buf {
    uint8_t *p;
    size_t n, cap;
} mf_src_buf;

typedef struct mf_src_input {
    mf_input_kind kind;
    char *path;
    char *id; /* mf_id_escape(path): ids of archive members and records start with it */
    int bad_name;
    mf_src_entries entries; /* IMAGE, DIR, LIST: expanded at prepare */
} mf_src_input;

/* The WebDataset-style group being assembled from consecutive archive members. */
typedef struct mf_src_group {
    int open, has_image, other_shard, has_cls;
    char *key, *id, *error, *member_dir;
    int64_t cls, dir_label;
    char *cls_error; /* a .cls member that is not a label: the sample fails */
    int bad_name;    /* the member name is not valid UTF-8 */
    mf_src_buf data;
} mf_src_group;

/* An archive being read: libarchive over our own read callback, which decompresses
 * gzip itself so that its CRC and length are checked (libarchive's gzip filter checks
 * neither); other formats and filters go to libarchive untouched. */
typedef struct mf_src_stream mf_src_stream;

struct mf_source {
    mf_source_params p;
    mf_src_input *inputs;
    size_t n_inputs, cap_inputs;
    int prepared;
    char **names; /* sorted label names (label_from_dir) */
    size_t n_names, cap_names;
    int no_read;               /* mf_source_set_reading(s, 0) */
    mf_source_skip_fn skip_fn; /* mf_source_set_skip */
    void *skip_ctx;
    /* cursor */
    size_t cur;       /* input index */
    size_t cur_entry; /* in inputs[cur].entries */
    int cur_open;     /* archive or rec of inputs[cur] is open */
    struct archive *ar;
    mf_src_stream *ar_stream;
    struct archive_entry *ar_entry; /* current header, valid until the next one */
    int ar_have_header, ar_dead;
    char *damage; /* failure to report before ending the current input */
    mf_src_group g;
    mf_recordio_reader *rec;
    int64_t rec_images_end; /* insightface: keys >= this are identity records */
    /* storage behind the last mf_sample */
    char *id;
    char *error;
    mf_src_buf data;
};

#define MF_SRC_BAD_NAME "file name is not valid UTF-8: its id escapes the bad bytes as \\xNN"

int mf_src_buf_reserve(mf_src_buf *b, size_t n);
char *mf_src_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int mf_src_is_image_name(const char *name);
/* Name of the folder holding `path` ("a/b/c.jpg" -> "b"), or NULL if none. */
char *mf_src_parent_name(const char *path);
int mf_src_add_name(mf_source *s, const char *name);
int64_t mf_src_label_of(const mf_source *s, const char *path);

int mf_src_expand_dir(mf_src_input *in);
int mf_src_expand_list(mf_src_input *in, const mf_source_params *p);
/* Append an entry (its id escaped from path when needed). */
int mf_src_entries_push(mf_src_entries *e, const char *path, const char *error);
/* The reason for a list entry that cannot be read: names the list file and line. */
char *mf_src_list_reason(const mf_src_input *in, const mf_src_entry *e, const char *why);

/* archive_stream.c: open an archive for streaming (never blocking on a FIFO); *stream
 * is the state behind the read callback. NULL with mf_last_error() on failure. */
struct archive *mf_src_archive_open(const char *path, mf_src_stream **stream);
/* At the archive's end: read what libarchive left unread (a gzip trailer after the
 * tar's end blocks) and check it. NULL, or a malloc'ed reason. */
char *mf_src_stream_finish(struct archive *a, mf_src_stream *stream);
void mf_src_stream_free(mf_src_stream *stream);

/* Archives: collect label names (headers only), and step the iterator. */
int mf_src_archive_names(mf_source *s, const char *path);
int mf_src_archive_next(mf_source *s, mf_sample *out);
void mf_src_archive_close(mf_source *s);

/* Publish a sample from the source's storage. */
int mf_src_emit(mf_source *s, mf_sample *out, const char *id, int64_t label, const char *error,
                const uint8_t *data, size_t size);

/* Is this id one the caller wants (this shard, not passed over by the skip
 * predicate)? Decide before reading any bytes. */
int mf_src_wanted(mf_source *s, const char *id);

#endif
