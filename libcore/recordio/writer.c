/* writer.c - write RecordIO in the insightface layout (see include/mf/recordio.h).
 *
 * Record 0 must hold counts known only at the end, so a fixed-size placeholder is
 * written first and overwritten at commit. Both files are outputs of the durable-output
 * module, published together only once both are on disk, so a crash never leaves a .rec
 * that looks complete. */
#include "mf/durable.h"
#include "mf/recordio.h"
#include "mf/status.h"
#include "vec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct identity {
    int64_t label, first, end; /* keys [first, end) */
} identity;

struct mf_recordio_writer {
    mf_output *out[2]; /* .rec, .idx */
    FILE *rec, *idx;   /* their streams */
    int64_t n;         /* images written; keys 1..n */
    identity *ids;
    size_t n_ids, cap_ids;
    uint8_t *buf;
    size_t cap;
};

static void wr32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

int mf_recordio_write_record(FILE *f, const void *payload, size_t size)
{
    if (size >= (1u << 29))
        return mf_set_error(MF_ERR_LIMIT, "record of %zu bytes is too large for RecordIO",
                            size);
    const uint8_t *p = payload;
    uint8_t head[8], magic[4];
    wr32(magic, MF_RECORDIO_MAGIC);
    size_t done = 0, aligned = size & ~(size_t)3;
    int ok = 1;
    for (size_t i = 0; i < aligned; i += 4) {
        if (memcmp(p + i, magic, 4))
            continue;
        wr32(head, MF_RECORDIO_MAGIC);
        wr32(head + 4, (done == 0 ? 1u : 2u) << 29 | (uint32_t)(i - done));
        ok &= fwrite(head, 1, 8, f) == 8 && fwrite(p + done, 1, i - done, f) == i - done;
        done = i + 4; /* the magic itself is dropped: the reader puts it back */
    }
    wr32(head, MF_RECORDIO_MAGIC);
    wr32(head + 4, (done ? 3u : 0u) << 29 | (uint32_t)(size - done));
    static const uint8_t zeros[4];
    size_t pad = (4 - (size - done) % 4) % 4;
    ok &= fwrite(head, 1, 8, f) == 8 && fwrite(p + done, 1, size - done, f) == size - done &&
          fwrite(zeros, 1, pad, f) == pad;
    return ok ? 0 : mf_set_error(MF_ERR_IO, "write failed: %s", strerror(errno));
}

static void writer_free(mf_recordio_writer *w)
{
    free(w->ids);
    free(w->buf);
    free(w);
}

void mf_recordio_writer_discard(mf_recordio_writer *w)
{
    if (!w)
        return;
    mf_output_abort(w->out[0]);
    mf_output_abort(w->out[1]);
    writer_free(w);
}

/* A header-only payload: flag 2, labels a and b (record 0 and identity records). */
static int write_pair(FILE *f, float a, float b)
{
    uint8_t p[32] = {0};
    wr32(p, 2);
    memcpy(p + 24, &a, 4);
    memcpy(p + 28, &b, 4);
    return mf_recordio_write_record(f, p, sizeof p);
}

int mf_recordio_writer_open(mf_recordio_writer **out, const char *rec_path,
                            const char *idx_path, unsigned flags)
{
    *out = NULL;
    mf_recordio_writer *w = calloc(1, sizeof *w);
    if (!w)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int rc = mf_output_open(&w->out[0], rec_path, flags);
    if (rc == 0)
        rc = mf_output_open(&w->out[1], idx_path, flags);
    if (rc == 0 &&
        (!(w->rec = mf_output_stream(w->out[0])) || !(w->idx = mf_output_stream(w->out[1]))))
        rc = MF_ERR_IO;
    if (rc == 0 && (rc = write_pair(w->rec, 0, 0)) == 0 && fprintf(w->idx, "0\t0\n") < 0)
        rc = mf_set_error(MF_ERR_IO, "cannot write '%s': %s", idx_path, strerror(errno));
    if (rc < 0) {
        mf_recordio_writer_discard(w);
        return rc;
    }
    *out = w;
    return 0;
}

static int note_identity(mf_recordio_writer *w, int64_t label, int64_t key)
{
    if (w->n_ids && w->ids[w->n_ids - 1].label == label) {
        w->ids[w->n_ids - 1].end = key + 1;
        return 0;
    }
    if (w->n_ids && w->ids[w->n_ids - 1].label > label)
        return mf_set_error(MF_ERR_ARG, "labels must be non-decreasing (%lld after %lld)",
                            (long long)label, (long long)w->ids[w->n_ids - 1].label);
    if (MF_GROW(w->ids, w->cap_ids, w->n_ids + 1, "identities") < 0)
        return MF_ERR_NOMEM;
    w->ids[w->n_ids++] = (identity){.label = label, .first = key, .end = key + 1};
    return 0;
}

int mf_recordio_writer_add(mf_recordio_writer *w, int64_t label, const void *image, size_t size)
{
    /* float32 labels are exact integers only up to 2^24. */
    if (label < 0 || label > (1 << 24))
        return mf_set_error(MF_ERR_LIMIT, "label %lld cannot be stored exactly as float32",
                            (long long)label);
    if (size > (1u << 29) - 24)
        return mf_set_error(MF_ERR_LIMIT, "image of %zu bytes is too large for RecordIO", size);
    int64_t key = w->n + 1;
    int rc = note_identity(w, label, key);
    if (rc < 0)
        return rc;
    if (24 + size > w->cap) {
        uint8_t *b = realloc(w->buf, 24 + size);
        if (!b)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        w->buf = b;
        w->cap = 24 + size;
    }
    float fl = (float)label;
    uint64_t id = (uint64_t)key, id2 = 0;
    wr32(w->buf, 0);
    memcpy(w->buf + 4, &fl, 4);
    memcpy(w->buf + 8, &id, 8);
    memcpy(w->buf + 16, &id2, 8);
    memcpy(w->buf + 24, image, size);
    off_t at = ftello(w->rec);
    if (at < 0 || fprintf(w->idx, "%lld\t%lld\n", (long long)key, (long long)at) < 0)
        return mf_set_error(MF_ERR_IO, "cannot write '%s': %s", mf_output_path(w->out[1]),
                            strerror(errno));
    if ((rc = mf_recordio_write_record(w->rec, w->buf, 24 + size)) < 0)
        return rc;
    w->n = key;
    return 0;
}

int mf_recordio_writer_commit(mf_recordio_writer *w)
{
    return mf_recordio_writer_commit_with(w, NULL, 0);
}

int mf_recordio_writer_commit_with(mf_recordio_writer *w, mf_output **also, size_t n_also)
{
    int rc = 0;
    int64_t first_id = w->n + 1;
    for (size_t i = 0; i < w->n_ids && rc == 0; i++) {
        off_t at = ftello(w->rec);
        if (at < 0 || fprintf(w->idx, "%lld\t%lld\n", (long long)(first_id + (int64_t)i),
                              (long long)at) < 0)
            rc = mf_set_error(MF_ERR_IO, "cannot write '%s': %s", mf_output_path(w->out[1]),
                              strerror(errno));
        else
            rc = write_pair(w->rec, (float)w->ids[i].first, (float)w->ids[i].end);
    }
    if (rc == 0 && fseeko(w->rec, 0, SEEK_SET) != 0)
        rc = mf_set_error(MF_ERR_IO, "cannot seek in '%s'", mf_output_path(w->out[0]));
    if (rc == 0)
        rc = write_pair(w->rec, (float)first_id, (float)(first_id + (int64_t)w->n_ids));
    mf_output *outs[2 + MF_RECORDIO_MAX_COMPANIONS];
    if (rc == 0 && n_also > MF_RECORDIO_MAX_COMPANIONS)
        rc = mf_set_error(MF_ERR_ARG, "too many companion outputs");
    if (rc < 0) {
        for (size_t i = 0; i < n_also; i++)
            mf_output_abort(also[i]);
        mf_recordio_writer_discard(w);
        return rc;
    }
    outs[0] = w->out[0];
    outs[1] = w->out[1];
    for (size_t i = 0; i < n_also; i++)
        outs[2 + i] = also[i];
    rc = mf_output_commit_all(outs, 2 + n_also);
    writer_free(w);
    return rc;
}
