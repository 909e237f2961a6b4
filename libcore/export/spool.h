/* spool.h - images of an export kept in a scratch file beside the output, for sinks that
 * must write them in another order than they are read (RecordIO groups by class, a
 * shuffled WebDataset export follows a permutation): images arrive in the order that reads
 * each archive once. Per row: its id and its bytes. Internal to libcore/export. */
#ifndef MF_EXPORT_SPOOL_H
#define MF_EXPORT_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct ex_spool {
    FILE *f;         /* scratch file, already unlinked */
    uint64_t used;   /* bytes written */
    uint64_t *off;   /* [rows] where the row's record starts, UINT64_MAX = none */
    uint32_t *size;  /* [rows] its image bytes */
    uint32_t *idlen; /* [rows] its id's length, NUL included (stored before the image) */
    uint8_t *buf;    /* read-back buffer */
    size_t cap;
} ex_spool;

/* A spool for `rows` rows in the folder of `beside`. */
int ex_spool_open(ex_spool *s, const char *beside, uint64_t rows);
/* Keep row's id and image; an image of 4 GiB or more is refused (MF_ERR_LIMIT). */
int ex_spool_put(ex_spool *s, uint64_t row, const char *id, const uint8_t *data, size_t size);
int ex_spool_has(const ex_spool *s, uint64_t row);
/* Read row back: *id (NUL-terminated) and *data valid until the next call. */
int ex_spool_get(ex_spool *s, uint64_t row, const char **id, const uint8_t **data,
                 size_t *size);
void ex_spool_close(ex_spool *s);

#endif
