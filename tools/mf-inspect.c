/* mf-inspect - summarise an embedding store: size, model, magnitude distribution,
 * identities and clusters; or list its first rows. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mf/stats.h"
#include "mf/status.h"
#include "mf/store.h"
#include "mf/tsv.h"

enum { OPT_JSON = 1000, OPT_HEAD, OPT_BINS, OPT_TOP };

typedef struct config {
    long long head; /* -1: summary mode */
    int bins;
    int top;
} config;

static const mf_cli_opt options[] = {
    {"head", 'n', "N", "print the first N rows as TSV (id, label, magnitude)", OPT_HEAD},
    {"bins", 0, "N", "histogram bins (default 30)", OPT_BINS},
    {"top", 0, "N", "largest/smallest identities to list (default 5)", OPT_TOP},
    {0},
};

static const mf_cli_tool tool = {
    "mf-inspect",
    "[options] <store.h5>",
    "Summarise an embedding store: rows, dimension, model, failed inputs, the magnitude\n"
    "(MagFace quality) distribution with a histogram, identities and clusters.",
    "Examples:\n"
    "  mf-inspect faces.h5                 summary for people\n"
    "  mf-inspect --json faces.h5 | jq .magnitude.p5\n"
    "  mf-inspect --head 20 faces.h5       first rows as TSV",
    options,
    0};

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    switch (id) {
    case OPT_HEAD: c->head = mf_cli_parse_int("--head", arg, 0, 1LL << 40); break;
    case OPT_BINS: c->bins = (int)mf_cli_parse_int("--bins", arg, 1, MF_HIST_MAX_BINS); break;
    case OPT_TOP: c->top = (int)mf_cli_parse_int("--top", arg, 0, 1000); break;
    }
    return 0;
}

static int print_head(mf_store *s, uint64_t n)
{
    uint64_t rows = mf_store_rows(s);
    mf_store_cursor *c;
    const mf_store_block *b;
    int rc = mf_store_cursor_open(&c, s, MF_COL_ID | MF_COL_LABEL | MF_COL_MAGNITUDE, 0,
                                  n < rows ? n : rows);
    printf("id\tlabel\tmagnitude\n");
    while (rc == 0 && (rc = mf_store_cursor_next(c, &b)) > 0) {
        rc = 0;
        for (size_t i = 0; i < b->n; i++) {
            mf_tsv_write_field(stdout, b->id[i]); /* ids may hold tabs: escaped (mf/tsv.h) */
            printf("\t%lld\t%.6g\n", (long long)b->label[i], b->magnitude[i]);
        }
    }
    mf_store_cursor_close(c);
    return rc < 0 ? rc : 0;
}

typedef struct summary {
    uint64_t rows;
    float pct[7]; /* min p1 p5 p50 p95 p99 max */
    mf_histogram hist;
    mf_group_count *labels, *clusters;
    size_t n_labels, n_clusters;
    uint64_t unlabelled, unassigned;
    int has_cluster;
} summary;

static const char *pct_names[] = {"min", "p1", "p5", "p50", "p95", "p99", "max"};
static const double pct_values[] = {0, 1, 5, 50, 95, 99, 100};

static void print_groups(const char *title, const mf_group_count *g, size_t n, int top)
{
    size_t k = (size_t)top < n ? (size_t)top : n;
    printf("%s:", title);
    for (size_t i = 0; i < k; i++)
        printf(" %lld (%llu)", (long long)g[i].key, (unsigned long long)g[i].count);
    printf("\n");
}

static void print_text(mf_store *s, const summary *m, const config *c)
{
    const char *model = mf_store_attr(s, "model");
    printf("store      %s\n", mf_store_path(s));
    printf("rows       %llu\n", (unsigned long long)m->rows);
    printf("dim        %d\n", mf_store_dim(s));
    printf("model      %s\n", model ? model : "(not recorded)");
    printf("failed     %llu\n", (unsigned long long)mf_store_failed_count(s));
    if (m->rows == 0)
        return;
    if (m->hist.nonfinite)
        printf("not finite %llu rows with a NaN or infinite magnitude (left out below)\n",
               (unsigned long long)m->hist.nonfinite);
    printf("magnitude ");
    for (int i = 0; i < 7; i++)
        printf(" %s %.3f", pct_names[i], m->pct[i]);
    printf("\n\n");
    uint64_t peak = 1;
    for (int b = 0; b < m->hist.bins; b++)
        peak = m->hist.count[b] > peak ? m->hist.count[b] : peak;
    double w = (m->hist.hi - m->hist.lo) / m->hist.bins;
    for (int b = 0; b < m->hist.bins; b++) {
        int len = (int)((double)m->hist.count[b] * 50.0 / (double)peak + 0.5);
        printf("  %8.3f %-50.*s %llu\n", m->hist.lo + b * w, len,
               "##################################################",
               (unsigned long long)m->hist.count[b]);
    }
    printf("\nlabels     %zu identities, %llu rows unlabelled\n", m->n_labels,
           (unsigned long long)m->unlabelled);
    if (m->n_labels) {
        print_groups("  largest ", m->labels, m->n_labels, c->top);
        mf_group_count *rev = malloc(m->n_labels * sizeof *rev);
        if (rev) {
            for (size_t i = 0; i < m->n_labels; i++)
                rev[i] = m->labels[m->n_labels - 1 - i];
            print_groups("  smallest", rev, m->n_labels, c->top);
            free(rev);
        }
    }
    if (m->has_cluster)
        printf("clusters   %zu clusters, %llu rows unassigned\n", m->n_clusters,
               (unsigned long long)m->unassigned);
}

static cJSON *groups_json(const mf_group_count *g, size_t n, int top, int smallest)
{
    cJSON *arr = cJSON_CreateArray();
    size_t k = (size_t)top < n ? (size_t)top : n;
    for (size_t i = 0; i < k; i++) {
        const mf_group_count *x = smallest ? &g[n - 1 - i] : &g[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "label", (double)x->key);
        cJSON_AddNumberToObject(o, "count", (double)x->count);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

static void print_json(mf_store *s, const summary *m, const config *c)
{
    cJSON *o = cJSON_CreateObject();
    const char *model = mf_store_attr(s, "model");
    cJSON_AddStringToObject(o, "store", mf_store_path(s));
    cJSON_AddNumberToObject(o, "rows", (double)m->rows);
    cJSON_AddNumberToObject(o, "dim", mf_store_dim(s));
    if (model)
        cJSON_AddStringToObject(o, "model", model);
    else
        cJSON_AddNullToObject(o, "model");
    cJSON_AddNumberToObject(o, "failed", (double)mf_store_failed_count(s));
    cJSON_AddNumberToObject(o, "nonfinite_magnitudes", (double)m->hist.nonfinite);
    if (m->rows) {
        cJSON *mag = cJSON_AddObjectToObject(o, "magnitude");
        for (int i = 0; i < 7; i++)
            cJSON_AddNumberToObject(mag, pct_names[i], m->pct[i]);
        cJSON *h = cJSON_AddObjectToObject(o, "histogram");
        cJSON_AddNumberToObject(h, "lo", m->hist.lo);
        cJSON_AddNumberToObject(h, "hi", m->hist.hi);
        cJSON *counts = cJSON_AddArrayToObject(h, "counts");
        for (int b = 0; b < m->hist.bins; b++)
            cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)m->hist.count[b]));
    }
    cJSON *l = cJSON_AddObjectToObject(o, "labels");
    cJSON_AddNumberToObject(l, "identities", (double)m->n_labels);
    cJSON_AddNumberToObject(l, "unlabelled", (double)m->unlabelled);
    cJSON_AddItemToObject(l, "largest", groups_json(m->labels, m->n_labels, c->top, 0));
    cJSON_AddItemToObject(l, "smallest", groups_json(m->labels, m->n_labels, c->top, 1));
    if (m->has_cluster) {
        cJSON *k = cJSON_AddObjectToObject(o, "clusters");
        cJSON_AddNumberToObject(k, "count", (double)m->n_clusters);
        cJSON_AddNumberToObject(k, "unassigned", (double)m->unassigned);
    }
    char *text = cJSON_PrintUnformatted(o);
    if (text)
        puts(text);
    free(text);
    cJSON_Delete(o);
}

static int summarise(mf_store *s, const config *c, summary *m)
{
    m->rows = mf_store_rows(s);
    m->has_cluster = mf_store_has(s, "cluster");
    size_t n = (size_t)m->rows;
    float *mag = NULL;
    int64_t *labels = NULL, *cluster = NULL;
    int rc = mf_store_load_float(s, "magnitude", &mag);
    if (rc == 0)
        rc = mf_store_load_int64(s, "label", &labels);
    if (rc == 0 && m->has_cluster)
        rc = mf_store_load_int64(s, "cluster", &cluster);
    if (rc == 0 && n) {
        mf_histogram_build(&m->hist, mag, n, c->bins);
        size_t finite = mf_finite_floats(mag, n);
        mf_sort_floats(mag, finite);
        for (int i = 0; i < 7; i++)
            m->pct[i] = finite ? (float)mf_percentile_sorted(mag, finite, pct_values[i]) : NAN;
    }
    if (rc == 0) {
        m->labels = mf_count_groups(labels, m->rows, &m->n_labels, &m->unlabelled);
        if (cluster)
            m->clusters = mf_count_groups(cluster, m->rows, &m->n_clusters, &m->unassigned);
        if (!m->labels || (cluster && !m->clusters))
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
    }
    free(mag);
    free(labels);
    free(cluster);
    return rc;
}

int main(int argc, char **argv)
{
    config c = {.head = -1, .bins = 30, .top = 5};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (argc - first != 1)
        mf_cli_usage_error(argc == first ? "missing <store.h5>" : "expected one store");
    mf_store *s = mf_cli_open_store(argv[first]);
    int rc;
    if (c.head >= 0) {
        rc = print_head(s, (uint64_t)c.head);
    } else {
        summary m = {0};
        rc = summarise(s, &c, &m);
        if (rc == 0)
            mf_cli.json ? print_json(s, &m, &c) : print_text(s, &m, &c);
        free(m.labels);
        free(m.clusters);
    }
    mf_store_close(s);
    return rc < 0 ? mf_cli_fail(rc) : mf_cli_finish(MF_EXIT_OK);
}
