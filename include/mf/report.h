/* report.h - one self-contained HTML page that shows what a cleaning run did: the
 * magnitude histogram (with the filter's cut), the lowest-magnitude faces, samples of
 * the rows each filter rule dropped, the largest clusters, and the identities that
 * clustering split or merged relative to the labels. No network, no JavaScript: plots
 * are inline SVG and thumbnails are the original image bytes as data: URIs.
 *
 *     mf_report_params p = mf_report_default_params();
 *     p.filter_report = "dropped.tsv";          // mf-filter --report, optional
 *     mf_report_stats st;
 *     if (mf_report_write(store, "report.html", &p, &st) < 0) die(mf_last_error());
 *
 * Sections (each an element with a fixed id, present even when empty, saying why):
 * summary, histogram, quality, lowest, dropped, clusters, split, merged. Every piece of text from
 * the inputs (ids, labels, JSON) is HTML-escaped: ids are untrusted. */
#ifndef MF_REPORT_H
#define MF_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "mf/store.h"

typedef struct mf_report_params {
    const char *filter_report; /* TSV with columns id, label, magnitude, rule, figure */
    const char *root;          /* resolve relative ids against this folder; NULL = cwd */
    int max_faces;             /* lowest-magnitude faces shown (default 48) */
    int per_rule;              /* dropped rows sampled per rule (default 12) */
    int top_groups;            /* clusters / split / merged identities shown (default 6) */
    int per_group;             /* thumbnails per cluster or part (default 8) */
    size_t max_image_bytes;    /* larger images are not inlined (default 256 KiB) */
    int overwrite;             /* replace an existing page */
    const char *before;        /* the store before filtering, for the histogram (else the
                                * histogram mf-filter recorded, when there is one) */
    size_t erc_rows;           /* rows the quality curve uses at most (default 50000: the
                                * identities beyond are sampled); 0 = no curve */
} mf_report_params;

mf_report_params mf_report_default_params(void);

typedef struct mf_report_stats {
    size_t thumbnails; /* images inlined */
    size_t missing;    /* wanted but unreadable (each logged as a warning) */
    int has_cut;       /* a magnitude cut was found in the store's mf_filter */
    double cut;
    size_t split, merged; /* identities split / clusters mixing labels (all, not shown) */
} mf_report_stats;

/* Write the report for `s` to `path`, an output of the durable-output module (refused
 * before any work if it exists without p->overwrite, or is an input). */
int mf_report_write(mf_store *s, const char *path, const mf_report_params *p,
                    mf_report_stats *stats);

/* The magnitude cut recorded in a store's `mf_filter` JSON: the largest positive number
 * under a key "magnitude_cut", "min_magnitude" or "auto_cut" (at any depth). Returns 1
 * and sets *cut, or 0 when there is none. */
int mf_report_find_cut(const char *filter_json, double *cut);

#endif
