/* recordio.h - MXNet/insightface RecordIO (`train.rec` + `train.idx`): read and write.
 *
 * Reading, in file order (the .idx beside the .rec, if any, supplies the keys):
 *
 *     mf_recordio_reader *r;
 *     if (mf_recordio_open(&r, "train.rec", 0) < 0) die(mf_last_error());
 *     mf_record rec;
 *     int rc;
 *     while ((rc = mf_recordio_next(r, &rec, 1)) > 0) {
 *         mf_record_header h;
 *         if (mf_record_parse(&h, rec.data, rec.size) == 0 && h.image_size > 0)
 *             use(rec.key, h.label, h.image, h.image_size);
 *     }
 *     if (rc < 0) warn("%s", mf_last_error());  // damage: everything before it was read
 *     mf_recordio_close(r);
 *
 * Writing the insightface layout (images grouped by label, labels non-decreasing):
 *
 *     mf_recordio_writer *w;
 *     mf_recordio_writer_open(&w, "out.rec", "out.idx");
 *     mf_recordio_writer_add(w, label, jpeg, jpeg_size);   // keys 1..N
 *     mf_recordio_writer_commit(w);   // identity records, header record 0, rename, free
 *
 * Format (../shared/FORMATS.md): each record is `u32 magic 0xced7230a, u32 lrec,
 * payload, zero padding to 4 bytes`, lrec = cflag << 29 | length. A payload containing
 * the magic at a 4-aligned offset is split there into parts (cflag 1 first, 2 middle,
 * 3 last) without the magic; readers join the parts and put the magic back. Image
 * payload: `u32 flag, f32 label, u64 id, u64 id2`, then flag f32 labels, then the image.
 * Record 0 of the insightface layout has flag 2, labels [N+1, N+1+K] and no image;
 * records N+1..N+K are identities with labels [first key, end key). */
#ifndef MF_RECORDIO_H
#define MF_RECORDIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mf/durable.h"

#define MF_RECORDIO_MAGIC 0xced7230au
#define MF_RECORDIO_MAX_DEFAULT ((size_t)64 << 20) /* largest record we load: 64 MB */

typedef struct mf_recordio_reader mf_recordio_reader;

typedef struct mf_record {
    int64_t key;         /* from the .idx; the ordinal position when there is no .idx;
                          * -1 when the .idx has no line for this offset */
    uint64_t offset;     /* byte offset of the record's first magic */
    const uint8_t *data; /* payload (parts joined); NULL when not loaded. Valid until the
                          * next call on the reader */
    size_t size;         /* payload size */
    int duplicate;       /* the .idx gives this record a key that an earlier record (lower
                          * offset) also has: the key is not this record's id */
} mf_record;

/* Open `rec_path` and the `.idx` with the same stem, if present. Records larger than
 * max_record bytes (0 = MF_RECORDIO_MAX_DEFAULT) are reported, not loaded. Neither file
 * is opened blocking: a FIFO or device fails with "not a regular file". The .idx is
 * parsed strictly (`key<TAB>offset`, both decimal, key < 2^53, no offset given twice,
 * no more lines than the .rec could hold records); a key given
 * to two records marks the later one `duplicate`. */
int mf_recordio_open(mf_recordio_reader **out, const char *rec_path, size_t max_record);
/* Next record in file order: 1 and *rec filled, 0 at the end, or a negative mf_status:
 * MF_ERR_FORMAT (bad magic, truncated: the reader stops there, nothing after it is
 * trustworthy) or MF_ERR_LIMIT (this record is too large: it was skipped, the next call
 * continues after it). With load = 0 the payload is skipped (seeked over) and
 * rec->data is NULL. */
int mf_recordio_next(mf_recordio_reader *r, mf_record *rec, int load);
/* Load the payload of a record returned by mf_recordio_next(load = 0); the sequential
 * position is unchanged. Returns 0 or a negative mf_status. */
int mf_recordio_load(mf_recordio_reader *r, mf_record *rec);
/* Number of keys in the .idx (0 if none) and whether one was found. */
size_t mf_recordio_index_size(const mf_recordio_reader *r);
/* The i-th key of the .idx in increasing key order, i < mf_recordio_index_size(). */
int64_t mf_recordio_index_key(const mf_recordio_reader *r, size_t i);
/* Read the record with this .idx key: 0 and *rec filled, or a negative mf_status. */
int mf_recordio_read_key(mf_recordio_reader *r, int64_t key, mf_record *rec);
void mf_recordio_close(mf_recordio_reader *r);

/* A decoded image payload header. */
typedef struct mf_record_header {
    uint32_t flag;   /* number of extra float labels */
    float label;     /* header label (0 when flag > 0) */
    float labels[2]; /* the first min(flag, 2) extra labels (enough for the
                           * insightface header and identity records) */
    uint64_t id, id2;
    const uint8_t *image; /* encoded image inside the payload */
    size_t image_size;    /* 0 for header and identity records */
} mf_record_header;

/* Parse an image payload. Returns 0, or MF_ERR_FORMAT when it is shorter than its header
 * and labels say. */
int mf_record_parse(mf_record_header *h, const uint8_t *payload, size_t size);
/* Class of an image record: the header label, or the first extra label when flag > 0;
 * -1 when that float is not a label (see mf_record_label). */
int64_t mf_record_class(const mf_record_header *h);
/* The same, strictly (mf_label_from_float in mf/source.h): 0 and *label, or
 * MF_ERR_FORMAT when the float is not integral, is negative (other than -1 = none) or
 * is 2^53 or more. */
int mf_record_label(const mf_record_header *h, int64_t *label);

typedef struct mf_recordio_writer mf_recordio_writer;

/* Open rec_path and idx_path as outputs of the durable-output module (flags: its
 * MF_OUTPUT_* flags, e.g. MF_OUTPUT_OVERWRITE); they appear together at commit. */
int mf_recordio_writer_open(mf_recordio_writer **out, const char *rec_path,
                            const char *idx_path, unsigned flags);
/* Append one image (key = 1, 2, ...). Labels must be >= 0 and non-decreasing, so each
 * identity's images form one [first, end) range. */
int mf_recordio_writer_add(mf_recordio_writer *w, int64_t label, const void *image,
                           size_t size);
/* Write identity records and the header record, publish both files; frees w (also on
 * failure, after removing the temporaries). The header's float32 key bounds
 * are exact up to 2^24 images (the format's limit, as with insightface's own tools);
 * readers of bigger sets should trust the .idx keys. */
int mf_recordio_writer_commit(mf_recordio_writer *w);
/* The same, publishing companion outputs (insightface's `property` file) with the pair. */
#define MF_RECORDIO_MAX_COMPANIONS 4
int mf_recordio_writer_commit_with(mf_recordio_writer *w, mf_output **also, size_t n_also);
/* Abandon: remove the temporaries and free w. NULL is a no-op. */
void mf_recordio_writer_discard(mf_recordio_writer *w);

/* Low level: append one record (any payload) to f, splitting at aligned magic words.
 * Returns 0 or MF_ERR_IO / MF_ERR_LIMIT (payload >= 2^29 bytes). */
int mf_recordio_write_record(FILE *f, const void *payload, size_t size);

#endif
