/* store_internal.h - the mf_store struct, shared by the store's .c files only. */
#ifndef MF_STORE_INTERNAL_H
#define MF_STORE_INTERNAL_H

#include <hdf5.h>

#include "mf/durable.h"
#include "mf/store.h"

#define MF_STORE_DEFAULT_CHUNK 256 /* rows per chunk of /embedding */
#define MF_STORE_COLUMN_CHUNK 4096 /* rows per chunk of the 1-D columns */
/* Room kept for HDF5's own structures (chunk indexes, heaps) growing with the rows. */
#define MF_STORE_METADATA_SLACK (64 * 1024)
/* Root attributes recording what is durable: rows and failed entries at the last flush.
 * Equal to the dataset lengths in a complete store. */
#define MF_ATTR_ROWS_COMMITTED "mf_rows_committed"
#define MF_ATTR_FAILED_COMMITTED "mf_failed_committed"
/* Root attribute of a resumable job's store: the canonical job description. */
#define MF_ATTR_JOB "mf_job"

typedef struct mf_store_attr_cache {
    char *name, *value;
} mf_store_attr_cache;

struct mf_store {
    hid_t file;
    char *path;     /* the name users gave (the final name for writers) */
    mf_output *out; /* writers: the temporary file rows go to until commit */
    int writable;
    int resumable; /* made by mf_store_open_or_resume: closing keeps the partial */
    int broken;    /* a write failed: HDF5's state is suspect, nothing more is flushed */
    int dim;
    uint64_t rows;
    uint64_t failed;
    hid_t emb, mag, id, label;      /* the four required datasets */
    hid_t failed_id, failed_reason; /* -1 when the store has no /failed */
    mf_store_attr_cache *attrs;
    size_t n_attrs, cap_attrs;
    char **checked; /* string datasets already read once safely (mf_store_check_strings) */
    size_t n_checked, cap_checked;
};

/* Before the first read of the variable-length strings of dataset `name` (open as ds)
 * through this handle: read them all once in a child process, so that a corrupted
 * string heap, on which libhdf5 crashes, gives an error naming the file instead. 0, or
 * MF_ERR_FORMAT. A no-op for fixed-length strings and datasets checked before. */
int mf_store_check_strings(mf_store *s, hid_t ds, const char *name);

/* Read n strings of a 1-D string dataset, fixed or variable length (as h5py may write
 * them), at `start`, into malloc'ed copies (free each). */
int mf_store_read_strings(mf_store *s, hid_t ds, const char *name, uint64_t start, size_t n,
                          char **out);

/* Extend a dataset's first dimension to `rows` (keeping other dimensions). */
int mf_store_extend(hid_t ds, uint64_t rows);
/* Current length of a dataset's first dimension (0 on error). */
uint64_t mf_store_length(hid_t ds);
/* Read (write = 0) or write rows [start, start+n) of a dataset with `cols` columns (0 for
 * a 1-D dataset) from/to `buf` in `mem_type`. */
int mf_store_rw_rows(hid_t ds, hid_t mem_type, uint64_t start, size_t n, uint64_t cols,
                     void *buf, int write);
/* Call fn(ds, name, ctx) for every dataset at the root of `file` (groups such as
 * /failed and /labels are not visited); ds is open for the call only. */
void mf_store_each_dataset(hid_t file, void (*fn)(hid_t ds, const char *name, void *ctx),
                           void *ctx);
/* Create an extendible chunked dataset of `type` with `cols` columns (0 = 1-D). */
hid_t mf_store_create_dataset(hid_t loc, const char *name, hid_t type, uint64_t cols,
                              size_t chunk_rows);

#endif
