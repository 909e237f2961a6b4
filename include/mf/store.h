/* store.h - the embedding store: one HDF5 file of raw embeddings, magnitudes, ids and
 * labels, row-aligned (schema: docs/FORMAT.md, a CONTRACT).
 *
 * Writing a store (outputs go through mf/durable.h: they appear whole or not at all):
 *
 *     mf_store_params p = mf_store_default_params();
 *     p.dim = 512; p.model = "magface-iresnet100";
 *     mf_store *s;
 *     if (mf_store_create(&s, "out.h5", &p) < 0) die(mf_last_error());
 *     mf_store_append(s, n, emb, mag, ids, labels);     // any number of times
 *     mf_store_commit(s);                               // out.h5 appears; s is freed
 *
 * A resumable job (mf-embed) opens its output with mf_store_open_or_resume() and a job
 * description; mf_store_flush() after each batch makes the rows so far durable, and a
 * killed run continues from there when the same job runs again.
 *
 * Reading (never loads everything unless asked; all readers take row ranges):
 *
 *     mf_store *s;
 *     if (mf_store_open(&s, "in.h5") < 0) die(mf_last_error());
 *     mf_store_cursor *c;
 *     const mf_store_block *b;
 *     mf_store_cursor_open(&c, s, MF_COL_MAGNITUDE | MF_COL_ID, 0, mf_store_rows(s));
 *     while (mf_store_cursor_next(c, &b) > 0)
 *         for (size_t i = 0; i < b->n; i++) use(b->start + i, b->id[i], b->magnitude[i]);
 *     mf_store_cursor_close(c);
 *     mf_store_close(s);
 *
 * Deriving a store (filter, cluster, merge): mf_store_derive() copies the rows kept, with
 * every row-aligned dataset (also ones mfkit does not know), the /failed lists, the label
 * names, the root attributes and the history of the input, adds or replaces columns, and
 * appends one history entry for this run.
 *
 * A store handle is not thread-safe; use it from one thread (HDF5 serialises anyway). */
#ifndef MF_STORE_H
#define MF_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "mf/durable.h"
#include "mf/progress.h"

#define MF_STORE_FORMAT "mfkit-store"
#define MF_STORE_FORMAT_VERSION 1

typedef struct mf_store mf_store;

typedef struct mf_store_params {
    int dim;                  /* embedding width, required (> 0) */
    const char *model;        /* e.g. "magface-iresnet100", or NULL */
    const char *model_sha256; /* hex digest of the model file, or NULL */
    const char *preprocess;   /* e.g. "bgr/255 aligned-112", or NULL */
    size_t chunk_rows;        /* HDF5 chunk height of /embedding; 0 = default (256) */
    int overwrite;            /* replace an existing output (else MF_ERR_EXISTS) */
    const char *job;          /* mf_store_open_or_resume: canonical job description */
} mf_store_params;

mf_store_params mf_store_default_params(void);

/* ---- writing ----------------------------------------------------------------------- */

/* Create a new store that will appear at `path` on commit. An existing `path` is
 * refused (MF_ERR_EXISTS) unless params->overwrite; so is a path that is one of the
 * run's inputs (mf_run_add_input). */
int mf_store_create(mf_store **out, const char *path, const mf_store_params *params);

/* The same in an output the caller opened (with MF_OUTPUT_SEEKABLE) early, so that a bad
 * output name is refused before any work. Takes ownership of o. */
int mf_store_create_in(mf_store **out, mf_output *o, const mf_store_params *params);

/* Create an output with the root attributes (model, dim, ...) and label names of `src`.
 * No rows yet. */
int mf_store_create_like(mf_store **out, const char *path, const mf_store *src);

typedef enum mf_store_job_state {
    MF_STORE_JOB_NEW,      /* a new "<path>.partial" was started */
    MF_STORE_JOB_RESUMED,  /* the partial of an earlier run of the same job was reopened */
    MF_STORE_JOB_COMPLETE, /* `path` already holds the finished job: *out is NULL */
} mf_store_job_state;

/* The output of a resumable job: params->job (required) describes it (inputs, model,
 * settings) and is stored in the root attribute mf_job.
 *  - `path` holds a finished store of the same job: MF_STORE_JOB_COMPLETE (nothing to
 *    do), unless params->overwrite;
 *  - `path` exists otherwise: MF_ERR_EXISTS unless params->overwrite;
 *  - "<path>.partial" of the same job: reopened at its last committed row (and before
 *    any committed rows that do not read back intact), MF_STORE_JOB_RESUMED; rows and
 *    failed entries it holds are the ones done;
 *  - a partial of another job, or one that cannot be read: MF_ERR_MISMATCH, unless
 *    params->overwrite (then it starts over);
 *  - a partial being written by a live process: MF_ERR_BUSY. */
int mf_store_open_or_resume(mf_store **out, const char *path, const mf_store_params *params,
                            mf_store_job_state *state);

/* Append n rows. emb: n*dim floats; mag: n floats or NULL (computed as the L2 norm);
 * ids: n UTF-8 strings (non-NULL); labels: n values or NULL (-1 each). */
int mf_store_append(mf_store *s, size_t n, const float *emb, const float *mag,
                    const char *const *ids, const int64_t *labels);

/* Record an input that could not be embedded. */
int mf_store_add_failed(mf_store *s, const char *id, const char *reason);

/* Make every row appended so far durable: a crash after this keeps them, and the
 * committed mark never covers rows whose bytes are not on disk. After a failed write or
 * flush (a full disk) the writer is broken: every later flush fails, and the partial of a
 * resumable job holds the rows committed before. */
int mf_store_flush(mf_store *s);

/* Finish a writer: flush, close, publish through the durable-output module. Frees `s`
 * whatever the result. mf_store_commit_with also publishes companion outputs (e.g. a
 * feature text made from the store) only once all of them are durable. */
#define MF_STORE_MAX_COMPANIONS 4
int mf_store_commit(mf_store *s);
int mf_store_commit_with(mf_store *s, mf_output **also, size_t n_also);

/* Close a writer without committing and delete its temporary file. Frees `s`. NULL is a
 * no-op. */
void mf_store_discard(mf_store *s);

/* Close a resumable writer without committing: flush and keep "<path>.partial" for a
 * later run of the same job. Returns the flush status. Frees `s`. */
int mf_store_suspend(mf_store *s);

/* ---- reading ----------------------------------------------------------------------- */

/* Open an existing store read-only and validate its schema: required datasets present,
 * equal lengths, float embeddings of width `dim`, integer labels, string ids. Errors
 * name the file and the dataset. */
int mf_store_open(mf_store **out, const char *path);

/* Close any store: a resumable writer is suspended (flushed, left to resume), any other
 * writer discarded. NULL is a no-op. Returns the flush status of a resumable writer. */
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
/* Any 1-D float dataset at the root, e.g. "magnitude" or "quality". */
int mf_store_read_float(mf_store *s, const char *name, uint64_t start, size_t n, float *out);
/* ids: fills out[0..n) with malloc'ed strings; free each with free() (or use
 * mf_store_free_strings). */
int mf_store_read_ids(mf_store *s, uint64_t start, size_t n, char **out);
void mf_store_free_strings(char **strs, size_t n);

/* Entry i of /failed: malloc'ed id and reason (free with free()). */
int mf_store_read_failed(mf_store *s, uint64_t i, char **id, char **reason);

/* ---- reading in blocks ----------------------------------------------------------- */

enum mf_store_columns {
    MF_COL_EMBEDDING = 1u << 0,
    MF_COL_MAGNITUDE = 1u << 1,
    MF_COL_ID = 1u << 2,
    MF_COL_LABEL = 1u << 3,
};

typedef struct mf_store_block {
    uint64_t start;   /* row of element 0 */
    size_t n;         /* rows in this block */
    float *embedding; /* n * dim, if asked for */
    float *magnitude; /* n */
    char **id;        /* n strings */
    int64_t *label;   /* n */
    int64_t *extra;   /* n values of the column named by mf_store_cursor_int64 */
} mf_store_block;

typedef struct mf_store_cursor mf_store_cursor;

/* Rows per block for these columns: the one chunk policy of every tool (about 32 MB of
 * embeddings per block, 64k rows without them). */
size_t mf_store_block_rows(const mf_store *s, unsigned columns);

/* Iterate rows [first, end) in blocks, reading the columns asked for. */
int mf_store_cursor_open(mf_store_cursor **out, mf_store *s, unsigned columns, uint64_t first,
                         uint64_t end);
/* Also read the int64 dataset `name` (e.g. "cluster") into block->extra. Call before the
 * first mf_store_cursor_next. */
int mf_store_cursor_int64(mf_store_cursor *c, const char *name);
/* 1 and *block filled (valid until the next call), 0 after the last block, or < 0. */
int mf_store_cursor_next(mf_store_cursor *c, const mf_store_block **block);
void mf_store_cursor_close(mf_store_cursor *c);

/* A whole column in memory (malloc'ed, caller frees): the kNN, clustering and the
 * summaries need every value at once. `name`: "magnitude" or any 1-D float dataset;
 * "label", "cluster" or any 1-D integer dataset. */
int mf_store_load_float(mf_store *s, const char *name, float **out);
int mf_store_load_int64(mf_store *s, const char *name, int64_t **out);
/* Every embedding, n * dim floats. */
int mf_store_load_embedding(mf_store *s, float **out);

/* Add the id of every row and of every /failed entry to `set` (mf/idset.h): what a
 * resumed job has done already. */
struct mf_idset;
int mf_store_collect_ids(mf_store *s, struct mf_idset *set);

/* ---- deriving ---------------------------------------------------------------------- */

/* A column added to (or replacing one of) a derived store: one value per OUTPUT row. */
typedef struct mf_store_column {
    const char *name;
    const int64_t *int64; /* exactly one of the two */
    const float *float32;
} mf_store_column;

typedef struct mf_store_source {
    mf_store *store;
    const uint8_t *keep; /* per row of the source: nonzero = copy it; NULL = every row */
} mf_store_source;

typedef struct mf_store_derive_params {
    const mf_store_column *columns; /* added or replaced columns */
    size_t n_columns;
    const char *attr_name;  /* the tool's own root attribute (e.g. "mf_filter"), or NULL */
    const char *attr_value; /* its value (JSON) */
    const char *history;    /* this run's history entry (a JSON object), or NULL */
    mf_progress *progress;  /* advanced by the source rows read, or NULL */
    mf_output **also;       /* companion outputs published together with the store */
    size_t n_also;
} mf_store_derive_params;

/* Write a new store into `out` (an output opened with MF_OUTPUT_SEEKABLE; taken over,
 * published on success, removed on failure): the kept rows of each source in order, with
 * every row-aligned column, the sources' /failed lists, the first source's root
 * attributes, label names and history, plus d's columns, attribute and history entry.
 * Sources must agree on dim. Streams: memory does not grow with the stores. */
int mf_store_derive(mf_output *out, const mf_store_source *src, size_t n_src,
                    const mf_store_derive_params *d);

/* The history: one JSON object per tool run that made or derived this store, oldest
 * first (/history/runs). Readers: the count and a malloc'ed entry (NULL if absent). */
uint64_t mf_store_history_count(const mf_store *s);
char *mf_store_history(mf_store *s, uint64_t i);
/* Writers: append an entry. */
int mf_store_add_history(mf_store *s, const char *entry);

/* ---- low-level building blocks of deriving (tests) ---------------------------------- */

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
/* Every name at once: *names[0..*n) malloc'ed (free with mf_store_free_strings, then the
 * array); *names NULL and *n 0 when the store has none. */
int mf_store_load_label_names(mf_store *s, char ***names, uint64_t *n);

/* Set a root string attribute (e.g. "mf_filter" = the rules and counts as JSON). */
int mf_store_set_attr(mf_store *s, const char *name, const char *value);

#endif
