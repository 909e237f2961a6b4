/* report_internal.h - what mf-report gathers before writing the page (report.c gathers,
 * page.c writes). Thumbnails are collected first as ids, fetched in one pass (archives
 * read once), then referenced by index from the faces of every section. */
#ifndef MF_REPORT_INTERNAL_H
#define MF_REPORT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mf/metrics.h"
#include "mf/report.h"
#include "mf/stats.h"

typedef struct rp_thumb {
    char *id;
    char *uri; /* data: URI, or NULL */
    char *why; /* why there is no image */
} rp_thumb;

typedef struct rp_face {
    size_t thumb; /* index into rp_data.thumbs */
    float mag;
    int64_t label, cluster;  /* -2 = not known */
    const char *figure_name; /* rule figure label, or NULL */
    double figure;
} rp_face;

typedef struct rp_part {
    int64_t key; /* cluster (split identities) or label (merged clusters) */
    uint64_t count;
    rp_face *faces;
    size_t n_faces;
} rp_part;

typedef struct rp_group {
    int64_t key; /* cluster (clusters, merged) or label (split) */
    uint64_t total;
    uint64_t distinct; /* clusters: distinct labels; else number of parts in all */
    int64_t majority;  /* clusters: most common label (-1 none) */
    uint64_t majority_count;
    double mean_mag;
    rp_part *parts;
    size_t n_parts;
} rp_group;

typedef struct rp_rule {
    char *name;
    uint64_t count;
    rp_face *faces; /* the sample */
    size_t n_faces;
} rp_rule;

typedef struct rp_data {
    mf_store *s;
    const mf_report_params *p;
    uint64_t n;
    float *mag;
    int64_t *label;
    int64_t *cluster; /* NULL without /cluster */
    uint64_t identities, unlabelled, clusters, unassigned;
    float pct[5];       /* min p1 p50 p99 max of the finite magnitudes */
    uint64_t nonfinite; /* rows whose magnitude is NaN or Inf */
    mf_histogram hist;
    const char *filter_json;
    int has_cut;
    double cut;
    /* the magnitudes before filtering: d->hist is then rebuilt on the same bins */
    int has_before;
    mf_histogram before;
    uint64_t before_rows;
    uint64_t removed_by_cut; /* rows the global magnitude rules dropped, when recorded */
    /* the error-versus-reject curve (needs two labels or more with two rows or more) */
    int has_erc;
    mf_erc erc;
    uint64_t erc_rows;  /* rows it was computed on */
    char erc_note[200]; /* why there is none */
    rp_thumb *thumbs;
    size_t n_thumbs, cap_thumbs;
    rp_face *lowest;
    size_t n_lowest;
    rp_rule *rules;
    size_t n_rules;
    uint64_t dropped_total;
    rp_group *big, *split, *merged;
    size_t n_big, n_split, n_merged;
    uint64_t all_split, all_merged;
} rp_data;

/* report.c: a face for store row `row` (reads its id, adds its thumbnail). */
int rp_row_face(rp_data *d, uint64_t row, rp_face *out);
/* report.c: read mf-filter's --report TSV (header line with at least `id` and `rule`,
 * escaped as include/mf/tsv.h says; every row exactly the header's columns) into
 * d->rules, a reservoir of d->p->per_rule faces per rule. Returns 0, or a negative
 * mf_status naming `path` and the line. */
int rp_read_filter_report(rp_data *d, FILE *f, const char *path);
/* groups.c: fill big, split, merged (needs /cluster). */
int rp_gather_clusters(rp_data *d);
int rp_gather_disagreements(rp_data *d);

/* quality.c: the histogram before filtering (mf_filter's record, or --before) and the
 * error-versus-reject curve. */
int rp_gather_before(rp_data *d);
int rp_gather_erc(rp_data *d);

/* page.c */
int mf_report_page(FILE *f, const rp_data *d);

#endif
