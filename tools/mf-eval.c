/* mf-eval - compare a store's clustering with its truth labels: pairwise and BCubed
 * precision/recall/F and NMI (definitions in include/mf/metrics.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "mf/metrics.h"
#include "mf/status.h"
#include "mf/store.h"

enum { OPT_TRUTH = 1000, OPT_PRED, OPT_JSON };

typedef struct config {
    const char *truth, *pred;
    int json;
} config;

static const mf_cli_opt options[] = {
    {"truth", 0, "DATASET", "integer dataset with the true identities (default label)",
     OPT_TRUTH},
    {"pred", 0, "DATASET", "integer dataset with the predicted clusters (default cluster)",
     OPT_PRED},
    {"json", 0, NULL, "print one JSON object instead of TSV", OPT_JSON},
    {0},
};

static const mf_cli_tool tool = {
    "mf-eval",
    "[options] <store.h5>",
    "Score a clustering against truth labels: pairwise precision/recall/F (ordered pairs\n"
    "of distinct samples), BCubed precision/recall/F and NMI (arithmetic mean).",
    "Negative labels (truth -1 = unknown, cluster -1 = unassigned) count as singletons.\n"
    "Examples:\n"
    "  mf-eval clustered.h5\n"
    "  mf-eval --truth true_label --json clustered.h5 | jq .bcubed_f",
    options,
    0};

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    switch (id) {
    case OPT_TRUTH: c->truth = arg; break;
    case OPT_PRED: c->pred = arg; break;
    case OPT_JSON: c->json = 1; break;
    }
    return 0;
}

static void print_metrics(const mf_cluster_metrics *m, int json)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "rows", (double)m->n);
    cJSON_AddNumberToObject(o, "truth_classes", (double)m->truth_classes);
    cJSON_AddNumberToObject(o, "pred_clusters", (double)m->pred_clusters);
    const char *names[] = {"pairwise_p", "pairwise_r", "pairwise_f", "bcubed_p",
                           "bcubed_r",   "bcubed_f",   "nmi"};
    const double values[] = {m->pairwise_p, m->pairwise_r, m->pairwise_f, m->bcubed_p,
                             m->bcubed_r,   m->bcubed_f,   m->nmi};
    for (int i = 0; i < 7; i++)
        cJSON_AddNumberToObject(o, names[i], values[i]);
    mf_cli_print_record(o, json);
    cJSON_Delete(o);
}

int main(int argc, char **argv)
{
    config c = {"label", "cluster", 0};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (argc - first != 1)
        mf_cli_usage_error("expected one store, got %d operands", argc - first);
    mf_store *s = mf_cli_open_store(argv[first]);
    size_t n = (size_t)mf_store_rows(s);
    int64_t *t = NULL, *p = NULL;
    int rc = n == 0 ? mf_set_error(MF_ERR_FORMAT, "'%s' has no rows to evaluate", argv[first])
                    : mf_store_load_int64(s, c.truth, &t);
    if (rc == 0)
        rc = mf_store_load_int64(s, c.pred, &p);
    mf_cluster_metrics m;
    if (rc == 0)
        rc = mf_metrics_compute(n, t, p, &m);
    mf_store_close(s);
    free(t), free(p);
    if (rc < 0)
        return mf_cli_fail(rc);
    print_metrics(&m, c.json);
    return mf_cli_finish(MF_EXIT_OK);
}
