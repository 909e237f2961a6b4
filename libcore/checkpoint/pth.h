/* pth.h - the two torch.save containers, reduced to one shape: a root pickle object plus
 * a table of storage blobs by key.
 *
 *     pth_file f;
 *     pth_init(&f);
 *     if (pth_zip_read(&f, buf, len) < 0) ...      // or pth_legacy_read
 *     const pth_blob *b = pth_find_blob(&f, key);  // after pth_sort_blobs
 *     pth_release(&f);
 *
 * Blobs point into the caller's buffer when possible (zero copy) or into owned copies;
 * the buffer must outlive the pth_file. Errors carry no file name (the caller adds it). */
#ifndef MF_CHECKPOINT_PTH_H
#define MF_CHECKPOINT_PTH_H

#include <stddef.h>
#include <stdint.h>

#include "pickle.h"

typedef struct pth_blob {
    pk_str key;
    const uint8_t *data;
    size_t nbytes;
} pth_blob;

typedef struct pth_file {
    pk_ctx pk;
    pk_value *root;  /* the saved object */
    pth_blob *blobs; /* sorted by key once pth_sort_blobs ran */
    size_t nblobs, blobs_cap;
    void **owned; /* buffers to free (copies of blobs, of the pickle) */
    size_t nowned, owned_cap;
} pth_file;

void pth_init(pth_file *f);
void pth_release(pth_file *f);

int pth_zip_read(pth_file *f, const uint8_t *buf, size_t len);
int pth_legacy_read(pth_file *f, const uint8_t *buf, size_t len);

/* Shared helpers. */
int pth_add_blob(pth_file *f, pk_str key, const uint8_t *data, size_t nbytes);
int pth_own(pth_file *f, void *p);
int pth_sort_blobs(pth_file *f); /* also rejects duplicate keys */
const pth_blob *pth_find_blob(const pth_file *f, pk_str key);

#endif
