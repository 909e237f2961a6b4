/* report_internal.h - what mf-report gathers before writing the page (report.c gathers,
 * page.c writes). Thumbnails are collected first as ids, fetched in one pass (archives
 * read once), then referenced by index from the faces of every section. */
#ifndef MF_REPORT_INTERNAL_H
#define MF_REPORT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
/* groups.c: fill big, split, merged (needs /cluster). */
int rp_gather_clusters(rp_data *d);
int rp_gather_disagreements(rp_data *d);

/* page.c */
int mf_report_page(FILE *f, const rp_data *d);

#endif
