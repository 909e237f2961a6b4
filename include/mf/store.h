/* store.h - the embedding store: one HDF5 file of raw embeddings, magnitudes, ids and
 * labels, row-aligned (schema: docs/FORMAT.md, a CONTRACT).
 *
 * Writing a store (outputs appear atomically; a killed writer can resume):
 *
 *     mf_store_params p = mf_store_default_params();
 *     p.dim = 512; p.model = "magface-iresnet100";
 *     mf_store *s;
 *     if (mf_store_create(&s, "out.h5", &p) < 0) die(mf_last_error());
 *     mf_store_append(s, n, emb, mag, ids, labels);     // any number of times
 *     mf_store_flush(s);                                // rows so far survive a crash
 *     mf_store_commit(s);                               // out.h5 appears; s is freed
 *
 * Until mf_store_commit, rows go to "<path>.partial". mf_store_close() on a writer
 * flushes and leaves the .partial for mf_store_resume(); mf_store_discard() deletes it.
 * mf_store_resume() reopens "<path>.partial", drops rows written after the last flush
 * and returns a writer whose mf_store_rows() says where it stopped.
 *
 * Reading (never loads everything; all readers take row ranges):
 *
 *     mf_store *s;
 *     if (mf_store_open(&s, "in.h5") < 0) die(mf_last_error());
 *     uint64_t n = mf_store_rows(s);
 *     mf_store_read_embedding(s, 0, 256, buf);          // buf: 256 * dim floats
 *     mf_store_close(s);
 *
 * Deriving a store (filter, cluster, merge): create the output with
 * mf_store_create_like(), copy the rows kept with mf_store_copy_rows() (every dataset
 * with one row per sample is carried along, including ones mfkit does not know), add
 * columns with mf_store_write_column_int64(), note what was done with
 * mf_store_set_attr(), then mf_store_commit().
 *
 * A store handle is not thread-safe; use it from one thread (HDF5 serialises anyway). */
#ifndef MF_STORE_H
#define MF_STORE_H

#include <stddef.h>
#include <stdint.h>

#define MF_STORE_FORMAT "mfkit-store"
#define MF_STORE_FORMAT_VERSION 1

typedef struct mf_store mf_store;

typedef struct mf_store_params {
    int dim;                  /* embedding width, required (> 0) */
    const char *model;        /* e.g. "magface-iresnet100", or NULL */
    const char *model_sha256; /* hex digest of the model file, or NULL */
    const char *preprocess;   /* e.g. "bgr/255 aligned-112", or NULL */
    size_t chunk_rows;        /* HDF5 chunk height of /embedding; 0 = default (256) */
} mf_store_params;

mf_store_params mf_store_default_params(void);

/* ---- writing ----------------------------------------------------------------------- */

/* Create a new store that will appear at `path` on commit. Fails if "<path>.partial"
 * exists (a run to resume, or to remove) — the caller decides; `path` itself may exist
 * and is replaced only at commit. */
int mf_store_create(mf_store **out, const char *path, const mf_store_params *params);

/* Create an output with the root attributes (model, dim, ...) and the /failed lists of
 * `src`. No rows yet. */
int mf_store_create_like(mf_store **out, const char *path, const mf_store *src);

/* Reopen "<path>.partial" after a crash or a stop. */
int mf_store_resume(mf_store **out, const char *path);

/* Append n rows. emb: n*dim floats; mag: n floats or NULL (computed as the L2 norm);
 * ids: n UTF-8 strings (non-NULL); labels: n values or NULL (-1 each). */
int mf_store_append(mf_store *s, size_t n, const float *emb, const float *mag,
                    const char *const *ids, const int64_t *labels);

/* Record an input that could not be embedded. */
int mf_store_add_failed(mf_store *s, const char *id, const char *reason);

/* Make every row appended so far durable: a crash after this keeps them. */
int mf_store_flush(mf_store *s);

/* Finish a writer: flush, close, fsync, rename "<path>.partial" to `path`, fsync the
 * directory. Frees `s` whatever the result. */
int mf_store_commit(mf_store *s);

/* Close a writer without committing and delete its .partial (a failed derived output).
 * Frees `s`. NULL is a no-op. */
void mf_store_discard(mf_store *s);

/* ---- reading ----------------------------------------------------------------------- */

/* Open an existing store read-only and validate its schema: required datasets present,
 * equal lengths, float embeddings of width `dim`, integer labels, string ids. Errors
 * name the file and the dataset. */
int mf_store_open(mf_store **out, const char *path);

/* Close any store (a writer is flushed and left resumable). NULL is a no-op. Returns
 * the flush status for writers. */
int mf_store_close(mf_store *s);

uint64_t mf_store_rows(const mf_store *s);
int mf_store_dim(const mf_store *s);
const char *mf_store_path(const mf_store *s);
/* Root string attribute (model, model_sha256, preprocess, tool_version, or any other);
 * NULL if absent. The pointer stays valid until the store is closed. */
const char *mf_store_attr(const mf_store *s, const char *name);
/* Number of /failed entries. */
uint64_t mf_store_failed_count(const mf_store *s);
/* Does a dataset with this name exist at the root (e.g. "cluster")? */
int mf_store_has(const mf_store *s, const char *name);

/* Read rows [start, start+n). Each fails with MF_ERR_ARG if the range is out of bounds.
 * out buffers are caller-allocated: n*dim floats, n floats, n int64. */
int mf_store_read_embedding(mf_store *s, uint64_t start, size_t n, float *out);
int mf_store_read_magnitude(mf_store *s, uint64_t start, size_t n, float *out);
int mf_store_read_label(mf_store *s, uint64_t start, size_t n, int64_t *out);
/* Any 1-D integer dataset at the root, e.g. "cluster". */
int mf_store_read_int64(mf_store *s, const char *name, uint64_t start, size_t n, int64_t *out);
/* ids: fills out[0..n) with malloc'ed strings; free each with free() (or use
 * mf_store_free_strings). */
int mf_store_read_ids(mf_store *s, uint64_t start, size_t n, char **out);
void mf_store_free_strings(char **strs, size_t n);

/* Entry i of /failed: malloc'ed id and reason (free with free()). */
int mf_store_read_failed(mf_store *s, uint64_t i, char **id, char **reason);

/* ---- deriving ---------------------------------------------------------------------- */

/* Append rows `rows[0..n)` of `src` (strictly increasing indices) to the writer `dst`
 * with every row-aligned dataset (known columns and any other 1-D/2-D dataset with one
 * row per sample). Streams in chunks: memory does not grow with the store. */
int mf_store_copy_rows(mf_store *dst, mf_store *src, const uint64_t *rows, size_t n);

/* Append the /failed entries of `src` to `dst`. */
int mf_store_copy_failed(mf_store *dst, mf_store *src);

/* Write a whole int64 column (values[0..mf_store_rows(s))) at the root, replacing one of
 * that name (e.g. "cluster", "label" after a relabel). */
int mf_store_write_column_int64(mf_store *s, const char *name, const int64_t *values);

/* The same for a float32 column (e.g. a per-row score). */
int mf_store_write_column_float(mf_store *s, const char *name, const float *values);

/* Label names: /labels/name[i] is the name of label i (e.g. the folder names of
 * mf-embed --label-from-dir). Written once; derived stores inherit it through
 * mf_store_create_like. read returns a malloc'ed string or NULL if absent. */
int mf_store_write_label_names(mf_store *s, const char *const *names, size_t n);
uint64_t mf_store_label_name_count(const mf_store *s);
char *mf_store_label_name(mf_store *s, uint64_t label);

/* Set a root string attribute (e.g. "mf_filter" = the rules and counts as JSON). */
int mf_store_set_attr(mf_store *s, const char *name, const char *value);

#endif
