/* mf-cluster - group a store's samples into identities: kNN graph with FAISS (reusable
 * with --graph), then a quality-aware clustering (include/mf/cluster.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "mf/cluster.h"
#include "mf/durable.h"
#include "mf/knn.h"
#include "mf/progress.h"
#include "mf/status.h"
#include "mf/store.h"
#include "mf/tsv.h"

enum {
    OPT_OUT = 1000,
    OPT_TSV,
    OPT_METHOD,
    OPT_TAU,
    OPT_TAU2,
    OPT_QUANT,
    OPT_RES,
    OPT_WEIGHT,
    OPT_K,
    OPT_INDEX,
    OPT_NPROBE,
    OPT_EF,
    OPT_REFINE,
    OPT_GRAPH,
    OPT_CALIB,
    OPT_TRUTH,
    OPT_RECALL,
    OPT_KEEP_CHAINS,
};

typedef struct config {
    char why[512]; /* how the thresholds were chosen */
    const char *out, *graph, *truth;
    int tsv, calibrate, keep_chains;
    int method_set;
    float tau, tau2; /* UNSET: the method's default */
    double quant, res;
    mf_cluster_params cp;
    mf_knn_params kp;
    mf_cluster_chains chains;
    mf_cluster_collectors collectors;
} config;

static const mf_cli_opt options[] = {
    {"output", 'o', "OUT.h5", "write the input rows plus /cluster to OUT.h5", OPT_OUT},
    {"tsv", 0, NULL, "print id, cluster, magnitude as TSV on stdout", OPT_TSV},
    {"method", 0, "NAME", "anchors (default), components, peaks, infomap, leiden", OPT_METHOD},
    {"tau", 't', "COS", "edge threshold (cosine; default: chosen from the graph)", OPT_TAU},
    {"tau2", 0, "COS",
     "anchors, infomap, leiden: threshold for attaching low-quality "
     "samples (default: the graph's valley)",
     OPT_TAU2},
    {"anchor-quantile", 0, "Q",
     "anchors, infomap, leiden: share of lowest-magnitude samples that are not "
     "anchors but leaves (default 0.3)",
     OPT_QUANT},
    {"resolution", 0, "R",
     "leiden: CPM resolution (default 0.015); a community of S rows holds while about "
     "k w / S exceeds it (w: mean edge cosine), so identities far larger than ~1,400 "
     "rows need less",
     OPT_RES},
    {"weight", 'w', "magnitude|none", "quality weighting (default magnitude)", OPT_WEIGHT},
    {"calibrate", 0, NULL, "choose the thresholds that maximise BCubed F on labelled rows",
     OPT_CALIB},
    {"truth", 0, "DATASET", "labels used by --calibrate (default label)", OPT_TRUTH},
    {"keep-chains", 0, NULL,
     "keep clusters whose rows are less alike than different identities' neighbours as "
     "the method made them (default: cluster them again at a higher tau), and drift "
     "collectors (default: their rows unassigned); both are still reported",
     OPT_KEEP_CHAINS},
    {"k", 'k', "K", "neighbours per sample (default 30)", OPT_K},
    {"index", 0, "FACTORY",
     "FAISS index factory string (default: Flat below 50000 rows, "
     "else IVFJoin<4 sqrt n>)",
     OPT_INDEX},
    {"nprobe", 0, "N",
     "IVF lists probed (default: an eighth of the lists, at least "
     "32)",
     OPT_NPROBE},
    {"ef", 0, "N", "HNSW efSearch (default max(2k, 64))", OPT_EF},
    {"refine", 0, "N",
     "IVFJoin: rounds of reverse-edge and neighbour-of-neighbour "
     "refinement (default 4)",
     OPT_REFINE},
    {"recall-sample", 0, "N", "queries checked against exact search (default 1000)",
     OPT_RECALL},
    {"graph", 'g', "FILE", "reuse the kNN graph in FILE, or save it there", OPT_GRAPH},
    {0},
};

static const mf_cli_tool tool = {
    "mf-cluster",
    "[options] <store.h5>",
    "Cluster a store's samples into identities on a FAISS kNN graph; high-magnitude\n"
    "samples anchor identities, low-magnitude ones attach but never bridge two\n"
    "(anchors, infomap and leiden; components and peaks let every sample vote).\n"
    "Without --tau, thresholds come from the graph: the valley between the same- and\n"
    "different-identity modes of its edge cosines (docs/CLUSTER.md); the summary says\n"
    "what was found and chosen. A cluster of more than k rows that are on average less\n"
    "alike than neighbouring rows of different identities is a chain of identities: it\n"
    "is clustered again on its own edges at a higher tau (--keep-chains: not).",
    "Examples:\n"
    "  mf-cluster -o clustered.h5 --graph faces.knn.h5 faces.h5\n"
    "  mf-cluster --graph faces.knn.h5 --method peaks --tau 0.5 --tsv faces.h5 > c.tsv\n"
    "  mf-cluster --calibrate --graph faces.knn.h5 -o clustered.h5 faces.h5\n"
    "The graph file is refused if it was built from other embeddings.",
    options,
    MF_CLI_WRITES};

/* A threshold not given on the command line: below every value an option accepts. */
#define UNSET (-9.0f)

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    switch (id) {
    case OPT_OUT: c->out = arg; break;
    case OPT_TSV: c->tsv = 1; break;
    case OPT_METHOD: {
        int m = mf_cluster_method_parse(arg);
        if (m < 0)
            mf_cli_usage_error("unknown method '%s' (anchors, components, peaks, infomap, "
                               "leiden)",
                               arg);
        c->cp.method = (mf_cluster_method)m;
        break;
    }
    case OPT_TAU: c->tau = (float)mf_cli_parse_double("--tau", arg, -1, 1); break;
    case OPT_TAU2: c->tau2 = (float)mf_cli_parse_double("--tau2", arg, -1, 1); break;
    case OPT_QUANT: c->quant = mf_cli_parse_double("--anchor-quantile", arg, 0, 0.99); break;
    case OPT_RES: c->res = mf_cli_parse_double("--resolution", arg, 0, 1e6); break;
    case OPT_WEIGHT:
        if (strcmp(arg, "magnitude") && strcmp(arg, "none"))
            mf_cli_usage_error("--weight expects 'magnitude' or 'none', got '%s'", arg);
        c->cp.weight = strcmp(arg, "none") != 0;
        break;
    case OPT_CALIB: c->calibrate = 1; break;
    case OPT_TRUTH: c->truth = arg; break;
    case OPT_KEEP_CHAINS: c->keep_chains = 1; break;
    case OPT_K: c->kp.k = (int)mf_cli_parse_int("--k", arg, 1, 1024); break;
    case OPT_INDEX: c->kp.index = arg; break;
    case OPT_NPROBE: c->kp.nprobe = (int)mf_cli_parse_int("--nprobe", arg, 1, 1 << 20); break;
    case OPT_EF: c->kp.ef = (int)mf_cli_parse_int("--ef", arg, 1, 1 << 20); break;
    case OPT_REFINE: c->kp.refine = (int)mf_cli_parse_int("--refine", arg, 1, 100); break;
    case OPT_RECALL:
        c->kp.recall_sample = (size_t)mf_cli_parse_int("--recall-sample", arg, 0, 1 << 20);
        break;
    case OPT_GRAPH: c->graph = arg; break;
    }
    return 0;
}

/* Thresholds given on the command line override the method's defaults. */
static void finish_params(config *c)
{
    mf_cluster_method_defaults(&c->cp, c->cp.method); /* thresholds only, not weight */
    if (c->tau != UNSET)
        c->cp.tau = c->tau;
    if (c->tau2 != UNSET)
        c->cp.tau2 = c->tau2;
    if (c->quant != UNSET)
        c->cp.anchor_quantile = c->quant;
    if (c->res != UNSET)
        c->cp.resolution = c->res;
}

/* Load the saved graph if there is one, else build it and, when asked, save it into the
 * graph output opened at start-up. */
static int get_graph(config *c, mf_store *s, const float *mag, mf_output *graph_out,
                     mf_knn_graph **g, mf_knn_info *info)
{
    size_t n = mf_store_rows(s);
    char fp[64];
    mf_knn_fingerprint(fp, n, mf_store_dim(s), mag);
    memset(info, 0, sizeof *info);
    info->recall = -1;
    if (c->graph && !graph_out) {
        int rc = mf_knn_load(g, c->graph, n, fp);
        if (rc == 0)
            mf_cli_info("reusing the kNN graph '%s' (%s, k=%d)", c->graph, (*g)->index,
                        (*g)->k);
        return rc;
    }
    if (c->kp.k >= (int)n)
        c->kp.k = (int)n - 1;
    float *x = NULL;
    int rc = mf_store_load_embedding(s, &x);
    if (rc == 0) {
        mf_knn_normalize(x, n, mf_store_dim(s));
        rc = mf_knn_build(g, x, n, mf_store_dim(s), &c->kp, info);
        free(x);
    }
    if (rc == 0) {
        snprintf((*g)->fingerprint, sizeof(*g)->fingerprint, "%s", fp);
        if (graph_out)
            return mf_knn_save(*g, graph_out);
    }
    mf_output_abort(graph_out);
    return rc;
}

static int read_store(mf_store *s, float **mag, int64_t **truth, const char *truth_name)
{
    size_t n = mf_store_rows(s);
    if (n < 2)
        return mf_set_error(MF_ERR_FORMAT, "'%s' has %zu rows: nothing to cluster",
                            mf_store_path(s), n);
    int rc = mf_store_load_float(s, "magnitude", mag);
    if (rc == 0 && truth && (rc = mf_store_load_int64(s, truth_name, truth)) < 0)
        rc = mf_wrap_error(rc, "--calibrate");
    return rc;
}

/* The graph's cosine scale, measured once: it places the thresholds not given and
 * judges the clusters afterwards. A graph with too few edges to tell one is an error only
 * when a threshold must come from it (*have = 0 otherwise: nothing to judge by). */
static int measure_scale(config *c, const mf_knn_graph *g, const float *mag,
                         mf_cluster_scale *sc, int *have)
{
    int rc = mf_cluster_scale_of(g, mag, &c->cp, sc);
    int given = !isnan(c->cp.tau) && (!mf_cluster_uses_leaves(&c->cp) || !isnan(c->cp.tau2));
    *have = rc == 0;
    if (rc == 0)
        mf_cluster_place(sc, &c->cp, c->why, sizeof c->why);
    else if (rc == MF_ERR_ARG && given) {
        snprintf(c->why, sizeof c->why, "thresholds given");
        rc = 0;
    }
    return rc;
}

/* Chains found (and, unless --keep-chains, split); the stats then describe the result. */
static int split_chains(config *c, const mf_knn_graph *g, const float *mag, mf_store *s,
                        const mf_cluster_scale *scale, int64_t *label, mf_cluster_stats *st)
{
    mf_cluster_scale sc = *scale;
    if (c->keep_chains)
        sc.hi = sc.valley; /* judge, but no room to raise tau: every chain is left */
    int rc = mf_cluster_split_chains(g, mag, &c->cp, &sc, s, label, &c->chains);
    if (rc == 0 && !c->keep_chains && (c->chains.found || c->chains.merged)) {
        mf_cluster_stats before = *st;
        rc = mf_cluster_stats_of(g->n, label, st);
        st->suspect = before.suspect, st->suspect_rows = before.suspect_rows;
    }
    return rc;
}

/* Drift collectors found (and, unless --keep-chains, their rows unassigned). */
static int dissolve_collectors(config *c, const mf_knn_graph *g, const float *mag, mf_store *s,
                               int64_t *label, mf_cluster_stats *st)
{
    int rc =
        mf_cluster_find_collectors(g, mag, &c->cp, s, c->keep_chains, label, &c->collectors);
    if (rc == 0 && !c->keep_chains && c->collectors.found) {
        mf_cluster_stats before = *st;
        rc = mf_cluster_stats_of(g->n, label, st);
        st->suspect = before.suspect, st->suspect_rows = before.suspect_rows;
    }
    return rc;
}

/* Thresholds are floats: print them as the decimals the user gave. */
static double dec4(double v) { return round(v * 1e4) / 1e4; }

static cJSON *summary_json(const config *c, const mf_knn_graph *g, const mf_knn_info *ki,
                           const mf_cluster_stats *st, double secs_cluster)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", mf_cluster_method_name(c->cp.method));
    cJSON_AddStringToObject(o, "weight", c->cp.weight ? "magnitude" : "none");
    cJSON_AddNumberToObject(o, "tau", dec4(c->cp.tau));
    cJSON_AddStringToObject(o, "thresholds", c->why);
    if (mf_cluster_uses_leaves(&c->cp)) {
        cJSON_AddNumberToObject(o, "tau2", dec4(c->cp.tau2));
        cJSON_AddNumberToObject(o, "anchor_quantile", dec4(c->cp.anchor_quantile));
    }
    if (c->cp.method == MF_CLUSTER_LEIDEN)
        cJSON_AddNumberToObject(o, "resolution", dec4(c->cp.resolution));
    cJSON_AddNumberToObject(o, "k", g->k);
    cJSON_AddStringToObject(o, "index", g->index);
    cJSON_AddNumberToObject(o, "recall", ki->recall);
    cJSON_AddNumberToObject(o, "knn_seconds",
                            ki->seconds_train + ki->seconds_add + ki->seconds_search);
    cJSON_AddNumberToObject(o, "cluster_seconds", secs_cluster);
    cJSON_AddNumberToObject(o, "rows", (double)g->n);
    cJSON_AddNumberToObject(o, "clusters", (double)st->clusters);
    cJSON_AddNumberToObject(o, "singletons", (double)st->singletons);
    cJSON_AddNumberToObject(o, "unassigned", (double)st->unassigned);
    cJSON_AddNumberToObject(o, "largest", (double)st->largest);
    double h[8];
    for (int i = 0; i < 8; i++)
        h[i] = (double)st->size_hist[i];
    cJSON_AddItemToObject(o, "size_hist", cJSON_CreateDoubleArray(h, 8));
    cJSON_AddNumberToObject(o, "suspect_clusters", (double)st->suspect);
    cJSON_AddNumberToObject(o, "suspect_rows", (double)st->suspect_rows);
    cJSON_AddNumberToObject(o, "chains", (double)c->chains.found);
    cJSON_AddNumberToObject(o, "chain_rows", (double)c->chains.rows);
    cJSON_AddNumberToObject(o, "chains_left", (double)c->chains.left);
    cJSON_AddNumberToObject(o, "merges_split", (double)c->chains.merged);
    cJSON_AddNumberToObject(o, "collectors", (double)c->collectors.found);
    cJSON_AddNumberToObject(o, "collector_rows", (double)c->collectors.rows);
    return o;
}

static void print_chains(const mf_cluster_chains *ch, int kept)
{
    if (ch->merged)
        mf_cli_info("%zu clusters held several identities: at a higher tau they parted into "
                    "large pieces as unlike as different identities, and were split",
                    ch->merged);
    if (!ch->found) {
        if (ch->rounds)
            mf_cli_info("splits made %zu clusters in %d rounds, tau raised to %.3f", ch->pieces,
                        ch->rounds, ch->tau);
        return;
    }
    const char *what = kept ? "kept as made (--keep-chains)" : "clustered again";
    mf_cli_warn("chains of identities: %zu of the clusters (%zu rows; the largest %zu rows, "
                "mean cosine %.3f between its rows) have rows less alike than neighbouring "
                "rows of different identities: %s",
                ch->found, ch->rows, ch->largest_rows, ch->largest_coherence, what);
    if (ch->rounds)
        mf_cli_info("splits made %zu clusters in %d rounds, tau raised to %.3f", ch->pieces,
                    ch->rounds, ch->tau);
    if (ch->left && !kept)
        mf_cli_warn("%zu chains (%zu rows) remain at the same-identity mode: give --tau or "
                    "try --calibrate",
                    ch->left, ch->left_rows);
}

static void print_summary(const mf_cluster_stats *st, const mf_knn_graph *g,
                          const mf_knn_info *ki, const config *c)
{
    mf_cli_info("%zu rows -> %zu clusters (%zu singletons, %zu unassigned, largest %zu); "
                "method %s, weight %s, tau %.3f",
                g->n, st->clusters, st->singletons, st->unassigned, st->largest,
                mf_cluster_method_name(c->cp.method), c->cp.weight ? "magnitude" : "none",
                c->cp.tau);
    mf_cli_info("cluster sizes: 1:%zu 2-3:%zu 4-7:%zu 8-15:%zu 16-31:%zu 32-63:%zu "
                "64-127:%zu 128+:%zu",
                st->size_hist[0], st->size_hist[1], st->size_hist[2], st->size_hist[3],
                st->size_hist[4], st->size_hist[5], st->size_hist[6], st->size_hist[7]);
    mf_cli_info("thresholds: %s", c->why);
    if (st->largest * 2 > g->n)
        mf_cli_warn("one giant cluster holds %zu of %zu rows: the thresholds do not suit "
                    "this graph; give --tau or try --calibrate",
                    st->largest, g->n);
    print_chains(&c->chains, c->keep_chains);
    if (c->collectors.found)
        mf_cli_warn("drift collectors: %zu clusters (%zu rows; the largest %zu rows, its mean "
                    "direction at cosine %.2f to the low-quality rows') are mostly low-quality "
                    "rows of many identities, alike because they drifted the same way: %s",
                    c->collectors.found, c->collectors.rows, c->collectors.largest_rows,
                    c->collectors.largest_cosine,
                    c->keep_chains ? "kept as made (--keep-chains)"
                                   : "their rows left unassigned");
    if (st->suspect)
        mf_cli_warn("%zu clusters (%zu rows) hold %dx more low-quality rows per anchor than "
                    "an identity has: likely collectors of junk; check them or raise --tau2",
                    st->suspect, st->suspect_rows, MF_CLUSTER_SUSPECT_RATIO);
    if (ki->recall >= 0 && !ki->exact)
        mf_cli_info("kNN graph %s k=%d: recall@%d %.4f on %zu queries", g->index, g->k, g->k,
                    ki->recall, ki->recall_queries);
}

static int write_tsv(mf_store *s, const int64_t *label, const float *mag)
{
    mf_store_cursor *c;
    const mf_store_block *b;
    int rc = mf_store_cursor_open(&c, s, MF_COL_ID, 0, mf_store_rows(s));
    printf("id\tcluster\tmagnitude\n");
    while (rc == 0 && (rc = mf_store_cursor_next(c, &b)) > 0) {
        rc = 0;
        for (size_t i = 0; i < b->n; i++) {
            mf_tsv_write_field(stdout, b->id[i]); /* ids may hold tabs: escaped (mf/tsv.h) */
            printf("\t%lld\t%.6g\n", (long long)label[b->start + i], mag[b->start + i]);
        }
    }
    mf_store_cursor_close(c);
    return rc < 0 ? rc : 0;
}

/* The input's rows and columns plus /cluster. */
static int write_output(mf_output *out, mf_store *src, const int64_t *label, cJSON *summary)
{
    char *meta = cJSON_PrintUnformatted(summary);
    char *history = mf_cli_history(cJSON_Duplicate(summary, 1));
    mf_store_source from = {src, NULL};
    mf_store_column cluster = {"cluster", label, NULL};
    mf_store_derive_params d = {.columns = &cluster,
                                .n_columns = 1,
                                .attr_name = "mf_cluster",
                                .attr_value = meta,
                                .history = history};
    int rc = meta && history ? mf_store_derive(out, &from, 1, &d)
                             : mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (!meta || !history)
        mf_output_abort(out);
    free(meta);
    free(history);
    return rc;
}

/* Outputs are opened before any work: a name that may not be written is refused at once.
 * The graph is an output only when it does not exist yet (else it is read). */
static void open_outputs(const config *c, mf_output **out, mf_output **graph)
{
    struct stat st;
    if (c->out)
        *out = mf_cli_open_output(c->out, MF_OUTPUT_SEEKABLE);
    if (c->graph && stat(c->graph, &st) == 0)
        mf_run_add_input(c->graph);
    else if (c->graph)
        *graph = mf_cli_open_output(c->graph, MF_OUTPUT_SEEKABLE);
}

int main(int argc, char **argv)
{
    mf_cli_start_blas(argv);
    config c = {.tau = UNSET, .tau2 = UNSET, .quant = UNSET, .res = UNSET, .truth = "label"};
    c.cp = mf_cluster_default_params();
    c.kp = mf_knn_default_params();
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (argc - first != 1)
        mf_cli_usage_error("expected one store, got %d operands", argc - first);
    if (c.tsv && mf_cli.json)
        mf_cli_usage_error("--tsv and --json both write to stdout: choose one");
    finish_params(&c);
    c.kp.progress = mf_cli.quiet ? 0 : mf_cli.progress ? 2 : 1;
    mf_store *s = mf_cli_open_store(argv[first]);
    mf_output *out = NULL, *graph_out = NULL;
    float *mag = NULL;
    int64_t *truth = NULL, *label = NULL;
    mf_knn_graph *g = NULL;
    mf_knn_info ki;
    mf_cluster_stats st;
    cJSON *js = NULL;
    double t0 = 0;
    open_outputs(&c, &out, &graph_out);
    int rc = read_store(s, &mag, c.calibrate ? &truth : NULL, c.truth);
    if (rc == 0)
        rc = get_graph(&c, s, mag, graph_out, &g, &ki);
    else
        mf_output_abort(graph_out);
    mf_cluster_scale scale;
    int have_scale = 0;
    if (rc == 0)
        rc = measure_scale(&c, g, mag, &scale, &have_scale);
    if (rc == 0 && c.calibrate) {
        double f;
        rc = mf_cluster_calibrate(g, mag, truth, &c.cp, &f);
        if (rc == 0)
            snprintf(c.why, sizeof c.why,
                     "calibrated on /%s: tau %.3f tau2 %.3f anchor-quantile %.2f "
                     "resolution %.2f -> BCubed F %.4f",
                     c.truth, c.cp.tau, c.cp.tau2, c.cp.anchor_quantile, c.cp.resolution, f);
    }
    if (rc == 0 && !(label = malloc(g->n * sizeof *label)))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for labels");
    if (rc == 0) {
        t0 = mf_now();
        rc = mf_cluster_run(g, mag, &c.cp, label, &st);
    }
    if (rc == 0 && have_scale)
        rc = split_chains(&c, g, mag, s, &scale, label, &st);
    if (rc == 0)
        rc = dissolve_collectors(&c, g, mag, s, label, &st);
    if (rc == 0)
        js = summary_json(&c, g, &ki, &st, mf_now() - t0);
    if (rc == 0 && out)
        rc = write_output(out, s, label, js);
    else
        mf_output_abort(out);
    if (rc == 0) {
        print_summary(&st, g, &ki, &c);
        if (mf_cli.json) {
            char *meta = cJSON_PrintUnformatted(js);
            printf("%s\n", meta);
            free(meta);
        }
        if (c.tsv)
            rc = write_tsv(s, label, mag);
    }
    cJSON_Delete(js);
    free(label), free(mag), free(truth);
    mf_knn_free(g);
    mf_store_close(s);
    return rc < 0 ? mf_cli_fail(rc) : mf_cli_finish(MF_EXIT_OK);
}
