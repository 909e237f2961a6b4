/* export_sinks.h - the image formats of mf-export behind one small interface: the
 * driver (export.c) calls begin (which opens the outputs, so an existing one is refused
 * before any work), put for every image found, then commit (or abort after a failure,
 * which removes every temporary). */
#ifndef MF_EXPORT_SINKS_H
#define MF_EXPORT_SINKS_H

#include <stddef.h>
#include <stdint.h>

#include "mf/export.h"

typedef struct mf_sink mf_sink;

typedef struct mf_exporter {
    mf_store *s;
    const mf_export_params *p;
    mf_export_stats *stats;
    uint64_t n;
    int dim;
    int64_t *label;       /* [n] the label column's values */
    float *mag;           /* [n] magnitudes */
    int64_t *cls;         /* [n] class 0..K-1, or -1 */
    int64_t *class_value; /* [K] the label value of each class */
    char **class_name;    /* [K] its name from /labels/name, or NULL (no names) */
    char **names;         /* the store's label names (owned), n_names of them */
    uint64_t n_names;
    uint64_t *order; /* [n] rows in output order (--shuffle), or NULL: store order */
    const mf_sink *sink;
    void *state; /* the sink's */
} mf_exporter;

struct mf_sink {
    int (*begin)(mf_exporter *ex);
    int (*put)(mf_exporter *ex, uint64_t row, const char *id, const uint8_t *data, size_t size);
    int (*commit)(mf_exporter *ex); /* rename into place; frees the state */
    void (*abort)(mf_exporter *ex); /* remove temporaries; frees the state */
};

extern const mf_sink mf_sink_wds, mf_sink_tree, mf_sink_rec;

/* The row written j-th: store order, or the --shuffle permutation. */
static inline uint64_t mf_export_row_at(const mf_exporter *ex, uint64_t j)
{
    return ex->order ? ex->order[j] : j;
}

/* Log "missing '<id>': <why>" and count it. */
void mf_export_missing(mf_exporter *ex, const char *id, const char *why);

#endif
