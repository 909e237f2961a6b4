/* mf-eval - compare a store's clustering with its truth labels: pairwise and BCubed
 * precision/recall/F and NMI (definitions in include/mf/metrics.h). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "mf/knn.h"
#include "mf/metrics.h"
#include "mf/status.h"
#include "mf/store.h"

enum { OPT_TRUTH = 1000, OPT_PRED, OPT_ERC, OPT_FMR, OPT_PAIRS, OPT_SEED };

typedef struct config {
    const char *truth, *pred;
    int erc;
    mf_erc_params ep;
} config;

static const mf_cli_opt options[] = {
    {"truth", 0, "DATASET", "integer dataset with the true identities (default label)",
     OPT_TRUTH},
    {"pred", 0, "DATASET", "integer dataset with the predicted clusters (default cluster)",
     OPT_PRED},
    {"erc", 0, NULL,
     "quality instead: error-versus-reject curve of the magnitudes (FNMR at a "
     "fixed FMR as the lowest-quality pairs are rejected)",
     OPT_ERC},
    {"fmr", 0, "RATE", "--erc: false match rate of the operating point (default 1e-3)",
     OPT_FMR},
    {"pairs", 0, "N",
     "--erc: at most N genuine and N impostor pairs, drawn at random beyond "
     "(default 10000000; 0 = all)",
     OPT_PAIRS},
    {"seed", 0, "S", "--erc: seed of the drawn pairs (default 0)", OPT_SEED},
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
    case OPT_ERC: c->erc = 1; break;
    case OPT_FMR: c->ep.fmr = mf_cli_parse_double("--fmr", arg, 1e-9, 0.5); break;
    case OPT_PAIRS: {
        long long v = mf_cli_parse_int("--pairs", arg, 0, INT64_MAX);
        c->ep.max_genuine = c->ep.max_impostor = v ? (uint64_t)v : UINT64_MAX;
        break;
    }
    case OPT_SEED: c->ep.seed = (uint64_t)mf_cli_parse_int("--seed", arg, 0, INT64_MAX); break;
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

/* The curve as TSV (reject, quality_cut, fnmr, genuine_pairs) or one JSON object. */
static void print_erc(const mf_erc *e, const mf_erc_params *p)
{
    mf_cli_info("FMR %g: threshold %.4f on %llu impostor pairs; %llu genuine pairs (%s)",
                p->fmr, e->threshold, (unsigned long long)e->impostor,
                (unsigned long long)e->genuine, e->sampled ? "drawn at random" : "all");
    cJSON *o = cJSON_CreateObject(), *curve = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "fmr", p->fmr);
    cJSON_AddNumberToObject(o, "threshold", e->threshold);
    cJSON_AddNumberToObject(o, "genuine_pairs", (double)e->genuine);
    cJSON_AddNumberToObject(o, "impostor_pairs", (double)e->impostor);
    cJSON_AddBoolToObject(o, "sampled", e->sampled);
    if (!mf_cli.json)
        printf("reject\tquality_cut\tfnmr\tgenuine_pairs\n");
    for (int i = 0; i < e->steps; i++) {
        if (!mf_cli.json)
            printf("%.4f\t%.6g\t%.6f\t%llu\n", e->reject[i], e->cut[i], e->fnmr[i],
                   (unsigned long long)e->kept[i]);
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddNumberToObject(pt, "reject", e->reject[i]);
        cJSON_AddNumberToObject(pt, "quality_cut", e->cut[i]);
        cJSON_AddNumberToObject(pt, "fnmr", e->fnmr[i]);
        cJSON_AddNumberToObject(pt, "genuine_pairs", (double)e->kept[i]);
        cJSON_AddItemToArray(curve, pt);
    }
    cJSON_AddItemToObject(o, "curve", curve);
    mf_cli_summary(o);
}

static int run_erc(mf_store *s, const config *c)
{
    float *unit = NULL, *mag = NULL;
    int64_t *label = NULL;
    mf_erc e;
    int rc = mf_store_load_embedding(s, &unit);
    if (rc == 0)
        rc = mf_store_load_float(s, "magnitude", &mag);
    if (rc == 0)
        rc = mf_store_load_int64(s, c->truth, &label);
    if (rc == 0) {
        mf_knn_normalize(unit, mf_store_rows(s), mf_store_dim(s));
        rc = mf_erc_compute(&e, unit, mag, label, mf_store_rows(s), mf_store_dim(s), &c->ep);
    }
    if (rc == 0)
        print_erc(&e, &c->ep);
    free(unit), free(mag), free(label);
    return rc;
}

int main(int argc, char **argv)
{
    config c = {"label", "cluster", 0, mf_erc_default_params()};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (argc - first != 1)
        mf_cli_usage_error("expected one store, got %d operands", argc - first);
    mf_store *s = mf_cli_open_store(argv[first]);
    if (c.erc) {
        int erc = run_erc(s, &c);
        mf_store_close(s);
        return erc < 0 ? mf_cli_fail(erc) : mf_cli_finish(MF_EXIT_OK);
    }
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
    print_metrics(&m, mf_cli.json);
    return mf_cli_finish(MF_EXIT_OK);
}
