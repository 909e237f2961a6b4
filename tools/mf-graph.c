/* mf-graph - the kNN graph of a big store in pieces (include/mf/knn_pieces.h): a plan,
 * shards with bounded memory (one machine after another, or a SLURM array), a merge into
 * the graph file mf-cluster --graph reads; or all of it in one process (build). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "mf/durable.h"
#include "mf/knn.h"
#include "mf/knn_pieces.h"
#include "mf/progress.h"
#include "mf/status.h"
#include "mf/store.h"

enum {
    OPT_OUT = 1000,
    OPT_K,
    OPT_LISTS,
    OPT_PER_SQRT,
    OPT_PROBES,
    OPT_SAMPLE,
    OPT_PLAN,
    OPT_SHARD,
    OPT_MEM,
    OPT_PARTIAL,
    OPT_RECALL,
    OPT_GRAPH,
    OPT_ROUNDS,
};

typedef struct config {
    const char *out, *plan, *shard, *graph;
    int rounds;
    mf_knn_plan_params pp;
    size_t mem_limit, recall_sample;
    int allow_partial;
} config;

#define OPT_K_ENTRY {"k", 'k', "K", "neighbours per row (default 30)", OPT_K}
#define OPT_LIST_ENTRIES                                                                   \
    {"lists", 0, "N", "inverted lists before splitting (default: 2 sqrt(rows))", OPT_LISTS}, \
        {"lists-per-sqrt", 0, "C", "default lists = C sqrt(rows) (default 2)", OPT_PER_SQRT},  \
        {"probes", 0, "P", "lists each row is scanned against besides its own (default 32)", \
         OPT_PROBES},                                                                       \
        {"sample", 0, "S", "k-means sample rows per list (default 64)", OPT_SAMPLE}
#define OPT_MEM_ENTRY                                                                      \
    {"mem-limit", 0, "SIZE",                                                                 \
     "bound the shard's memory (bytes, or with K/M/G); embeddings are then read in several " \
     "passes",                                                                              \
     OPT_MEM}
#define OPT_RECALL_ENTRY                                                                   \
    {"recall-sample", 0, "N", "rows checked against an exact scan (default 1000; 0 = skip)", \
     OPT_RECALL}

static const mf_cli_opt plan_opts[] = {
    {"output", 'o', "PLAN.h5", "write the plan to PLAN.h5 (required)", OPT_OUT},
    OPT_K_ENTRY,
    OPT_LIST_ENTRIES,
    {0},
};
static const mf_cli_opt shard_opts[] = {
    {"output", 'o', "PART.h5", "write the shard's partial graph to PART.h5 (required)", OPT_OUT},
    {"plan", 'p', "PLAN.h5", "the plan made by 'mf-graph plan' (required)", OPT_PLAN},
    {"shard", 0, "K/N", "build shard K (0-based) of N; default: from SLURM array variables",
     OPT_SHARD},
    OPT_MEM_ENTRY,
    {0},
};
static const mf_cli_opt refine_opts[] = {
    {"output", 'o', "PART.h5", "write the shard's refined rows to PART.h5 (required)", OPT_OUT},
    {"graph", 'g', "GRAPH.h5", "the graph to refine (merged by 'mf-graph merge'; required)",
     OPT_GRAPH},
    {"shard", 0, "K/N", "refine rows of shard K (0-based) of N; default: from SLURM array "
     "variables", OPT_SHARD},
    OPT_MEM_ENTRY,
    {0},
};
static const mf_cli_opt merge_opts[] = {
    {"output", 'o', "GRAPH.h5", "write the graph to GRAPH.h5 (required)", OPT_OUT},
    {"allow-partial", 0, NULL, "merge an incomplete set of parts (missing rows stay empty)",
     OPT_PARTIAL},
    OPT_RECALL_ENTRY,
    {0},
};
static const mf_cli_opt build_opts[] = {
    {"output", 'o', "GRAPH.h5", "write the graph to GRAPH.h5 (required)", OPT_OUT},
    OPT_K_ENTRY,
    OPT_LIST_ENTRIES,
    OPT_MEM_ENTRY,
    {"refine", 0, "R", "refinement rounds after the join (default 2)", OPT_ROUNDS},
    OPT_RECALL_ENTRY,
    {0},
};

static const char *const notes =
    "A step whose output exists and was made from the same inputs does nothing (exit 0).\n"
    "The graph of any number of shards equals the graph of one, byte for byte.\n"
    "Examples:\n"
    "  mf-graph plan -o faces.plan.h5 faces.h5\n"
    "  mf-graph shard -p faces.plan.h5 --shard 3/8 --mem-limit 3G -o part3.h5 faces.h5\n"
    "  mf-graph merge -o joined.h5 faces.h5 part*.h5\n"
    "  mf-graph refine -g joined.h5 --shard 3/8 -o r3.h5 faces.h5    # each round\n"
    "  mf-graph merge -o faces.knn.h5 faces.h5 r*.h5\n"
    "  mf-cluster --graph faces.knn.h5 -o clustered.h5 faces.h5\n"
    "  mf-graph build --mem-limit 10G -o faces.knn.h5 faces.h5      # all in one process";

static const mf_cli_tool tools[] = {
    {"mf-graph plan", "-o PLAN.h5 [options] <store.h5>",
     "Train the inverted lists on a sample of the store and give every row its lists.", notes,
     plan_opts, MF_CLI_WRITES},
    {"mf-graph shard", "-p PLAN.h5 [--shard K/N] [--mem-limit SIZE] -o PART.h5 <store.h5>",
     "Build the neighbours of one share of the plan's lists.", notes, shard_opts,
     MF_CLI_WRITES},
    {"mf-graph refine", "-g GRAPH.h5 [--shard K/N] [--mem-limit SIZE] -o PART.h5 <store.h5>",
     "One refinement round (neighbours of neighbours, reverse edges, exact) of one share of "
     "the rows.", notes, refine_opts, MF_CLI_WRITES},
    {"mf-graph merge", "-o GRAPH.h5 [--allow-partial] <store.h5> <part.h5>...",
     "Merge the shards' partial graphs into one kNN graph file (mf-cluster --graph).", notes,
     merge_opts, MF_CLI_WRITES},
    {"mf-graph build", "-o GRAPH.h5 [options] <store.h5>",
     "Plan, one shard and merge in one process, out of core.", notes, build_opts,
     MF_CLI_WRITES},
};
static const char *const commands[] = {"plan", "shard", "refine", "merge", "build"};
enum { CMD_PLAN, CMD_SHARD, CMD_REFINE, CMD_MERGE, CMD_BUILD, CMD_COUNT };

static const mf_cli_opt no_opts[] = {{0}};
static const mf_cli_tool top = {
    "mf-graph", "<plan | shard | refine | merge | build> [options] <store.h5> ...",
    "Build the kNN graph of a big store in pieces: a plan, shards (a SLURM array or one\n"
    "after another) and a merge; 'mf-graph COMMAND --help' describes each.",
    "Commands:\n"
    "  plan   coarse lists trained on a sample, every row's lists\n"
    "  shard  the neighbours of one share of the lists, with bounded memory\n"
    "  refine one refinement round of a share of the rows of a merged graph\n"
    "  merge  the shards' partial graphs into one graph file\n"
    "  build  all of it in one process",
    no_opts, 0};

/* "3G", "512M", "1.5G", "123456": bytes. */
static size_t parse_size(const char *opt, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0, end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024, end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024, end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024, end++; break;
    }
    if (end == s || *end || !(v > 0) || v * mul > 1e18)
        mf_cli_usage_error("%s expects a size such as 4G or 512M, got '%s'", opt, s);
    return (size_t)(v * mul);
}

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    switch (id) {
    case OPT_OUT: c->out = arg; break;
    case OPT_K: c->pp.k = (int)mf_cli_parse_int("--k", arg, 1, 1024); break;
    case OPT_LISTS: c->pp.nlist = (int)mf_cli_parse_int("--lists", arg, 1, 1 << 22); break;
    case OPT_PER_SQRT:
        c->pp.lists_per_sqrt = mf_cli_parse_double("--lists-per-sqrt", arg, 0.01, 1000);
        break;
    case OPT_PROBES: c->pp.probes = (int)mf_cli_parse_int("--probes", arg, 0, 1 << 16); break;
    case OPT_SAMPLE: c->pp.sample = (int)mf_cli_parse_int("--sample", arg, 1, 4096); break;
    case OPT_PLAN: c->plan = arg; break;
    case OPT_SHARD: c->shard = arg; break;
    case OPT_MEM: c->mem_limit = parse_size("--mem-limit", arg); break;
    case OPT_PARTIAL: c->allow_partial = 1; break;
    case OPT_GRAPH: c->graph = arg; break;
    case OPT_ROUNDS: c->rounds = (int)mf_cli_parse_int("--refine", arg, 0, 100); break;
    case OPT_RECALL:
        c->recall_sample = (size_t)mf_cli_parse_int("--recall-sample", arg, 0, 1 << 20);
        break;
    }
    return 0;
}

/* A re-run of a finished step: its output exists and records the same job. */
static int already_done(const char *out, const char *job)
{
    struct stat st;
    if (mf_cli.overwrite || stat(out, &st) != 0)
        return 0;
    char *have = mf_knn_file_job(out);
    int same = have && strcmp(have, job) == 0;
    free(have);
    if (same)
        mf_cli_info("'%s' is complete (same inputs): nothing to do", out);
    return same;
}

static int progress_mode(void) { return mf_cli.quiet ? 0 : mf_cli.progress ? 2 : 1; }

static void fingerprint_of(mf_store *s, char fp[64])
{
    float *mag = NULL;
    int rc = mf_store_load_float(s, "magnitude", &mag);
    if (rc < 0)
        exit(mf_cli_fail(rc));
    mf_knn_fingerprint(fp, mf_store_rows(s), mf_store_dim(s), mag);
    free(mag);
}

static int do_plan(config *c, mf_store *s, cJSON *js)
{
    char fp[64], job[256];
    fingerprint_of(s, fp);
    mf_knn_plan_job(job, sizeof job, fp, &c->pp);
    if (already_done(c->out, job))
        return 0;
    mf_output *o = mf_cli_open_output(c->out, MF_OUTPUT_SEEKABLE);
    mf_knn_plan *p;
    int rc = mf_knn_plan_build(&p, s, &c->pp);
    if (rc < 0) {
        mf_output_abort(o);
        return rc;
    }
    rc = mf_knn_plan_save(p, o);
    mf_cli_info("plan %s: %zu rows, %d lists, %d lists per row, k=%d", p->id, p->n, p->nlist,
                p->assign, p->k);
    cJSON_AddStringToObject(js, "plan", p->id);
    cJSON_AddNumberToObject(js, "rows", (double)p->n);
    cJSON_AddNumberToObject(js, "lists", p->nlist);
    cJSON_AddNumberToObject(js, "assign", p->assign);
    mf_knn_plan_free(p);
    return rc;
}

static int do_shard(config *c, mf_store *s, cJSON *js)
{
    int K, N;
    if (!c->plan)
        mf_cli_usage_error("shard needs --plan PLAN.h5");
    mf_cli_shard(c->shard, &K, &N);
    mf_run_add_input(c->plan);
    mf_knn_plan *p;
    int rc = mf_knn_plan_load_header(&p, c->plan); /* /lists is read in blocks */
    if (rc < 0)
        return rc;
    char job[128];
    snprintf(job, sizeof job, "shard %d/%d plan %s", K, N, p->id);
    if (already_done(c->out, job))
        return mf_knn_plan_free(p), 0;
    char fp[64];
    fingerprint_of(s, fp);
    if (strcmp(fp, p->fingerprint) != 0) {
        rc = mf_set_error(MF_ERR_MISMATCH, "plan '%s' was made from other embeddings (%s) "
                          "than '%s' (%s)", c->plan, p->fingerprint, mf_store_path(s), fp);
        mf_knn_plan_free(p); /* after the message that quotes it */
        return rc;
    }
    mf_output *o = mf_cli_open_output(c->out, MF_OUTPUT_SEEKABLE);
    mf_knn_part *part;
    rc = mf_knn_shard_build(&part, p, s, K, N, c->mem_limit, progress_mode());
    mf_knn_plan_free(p);
    if (rc < 0) {
        mf_output_abort(o);
        return rc;
    }
    rc = mf_knn_part_save(part, job, o);
    mf_cli_info("shard %d/%d: %zu rows", K, N, part->m);
    cJSON_AddNumberToObject(js, "shard", K);
    cJSON_AddNumberToObject(js, "shards", N);
    cJSON_AddNumberToObject(js, "part_rows", (double)part->m);
    mf_knn_part_free(part);
    return rc;
}

static int do_refine(config *c, mf_store *s, cJSON *js)
{
    int K, N;
    if (!c->graph)
        mf_cli_usage_error("refine needs --graph GRAPH.h5");
    mf_cli_shard(c->shard, &K, &N);
    mf_run_add_input(c->graph);
    char *gjob = mf_knn_file_job(c->graph), gid[32], job[128], fp[64];
    mf_knn_graph_id(gid, gjob);
    free(gjob);
    snprintf(job, sizeof job, "refine %d/%d graph %s", K, N, gid);
    if (already_done(c->out, job))
        return 0;
    fingerprint_of(s, fp);
    mf_knn_graph *g;
    int rc = mf_knn_load(&g, c->graph, mf_store_rows(s), fp);
    if (rc < 0)
        return rc;
    mf_output *o = mf_cli_open_output(c->out, MF_OUTPUT_SEEKABLE);
    mf_knn_part *part;
    rc = mf_knn_refine_shard(&part, g, gid, s, K, N, c->mem_limit, progress_mode());
    mf_knn_free(g);
    if (rc < 0) {
        mf_output_abort(o);
        return rc;
    }
    rc = mf_knn_part_save(part, job, o);
    mf_cli_info("refine %d/%d: rows %lld..%lld", K, N, part->m ? (long long)part->rows[0] : 0,
                part->m ? (long long)part->rows[part->m - 1] : -1);
    cJSON_AddNumberToObject(js, "shard", K);
    cJSON_AddNumberToObject(js, "shards", N);
    cJSON_AddNumberToObject(js, "part_rows", (double)part->m);
    mf_knn_part_free(part);
    return rc;
}

/* Recall on a sample, then save with the job. */
static int finish_graph(config *c, mf_store *s, mf_knn_graph *g, const char *job,
                        mf_output *o, cJSON *js)
{
    double recall = -1;
    int rc = c->recall_sample ? mf_knn_store_recall(g, s, c->recall_sample, &recall) : 0;
    if (rc == 0)
        rc = mf_knn_save_job(g, job, o);
    else
        mf_output_abort(o);
    if (rc == 0 && recall >= 0)
        mf_cli_info("kNN graph %s k=%d: recall@%d %.4f on %zu rows", g->index, g->k, g->k,
                    recall, c->recall_sample < g->n ? c->recall_sample : g->n);
    cJSON_AddStringToObject(js, "index", g->index);
    cJSON_AddNumberToObject(js, "rows", (double)g->n);
    cJSON_AddNumberToObject(js, "k", g->k);
    cJSON_AddNumberToObject(js, "recall", recall);
    return rc;
}

static int do_merge(config *c, mf_store *s, char **parts, int np, cJSON *js)
{
    if (np < 1)
        mf_cli_usage_error("merge needs the store and at least one part");
    mf_cli_add_inputs(np, parts, 0);
    mf_knn_part *h;
    int rc = mf_knn_part_load(&h, parts[0], 0);
    if (rc < 0)
        return rc;
    char job[160], fp[64];
    snprintf(job, sizeof job, "merge plan %s of %d%s", h->plan, h->shards,
             c->allow_partial ? " partial" : "");
    fingerprint_of(s, fp);
    if (strcmp(fp, h->fingerprint) != 0)
        rc = mf_set_error(MF_ERR_MISMATCH, "'%s' was made from other embeddings (%s) than '%s' "
                          "(%s)", parts[0], h->fingerprint, mf_store_path(s), fp);
    mf_knn_part_free(h);
    if (rc < 0 || already_done(c->out, job))
        return rc;
    mf_output *o = mf_cli_open_output(c->out, MF_OUTPUT_SEEKABLE);
    mf_knn_graph *g;
    rc = mf_knn_merge(&g, (const char *const *)parts, (size_t)np, c->allow_partial);
    if (rc < 0) {
        mf_output_abort(o);
        return rc;
    }
    cJSON_AddNumberToObject(js, "parts", np);
    rc = finish_graph(c, s, g, job, o, js);
    mf_knn_free(g);
    return rc;
}

static int do_build(config *c, mf_store *s, cJSON *js)
{
    char fp[64], job[300];
    fingerprint_of(s, fp);
    int len = snprintf(job, sizeof job, "build refine=%d ", c->rounds);
    mf_knn_plan_job(job + len, sizeof job - len, fp, &c->pp);
    if (already_done(c->out, job))
        return 0;
    mf_output *o = mf_cli_open_output(c->out, MF_OUTPUT_SEEKABLE);
    mf_knn_plan *p = NULL;
    mf_knn_part *part = NULL;
    mf_knn_graph *g = NULL;
    double t0 = mf_now();
    int rc = mf_knn_plan_build(&p, s, &c->pp);
    double t1 = mf_now();
    if (rc == 0)
        rc = mf_knn_shard_build(&part, p, s, 0, 1, c->mem_limit, progress_mode());
    mf_knn_plan_free(p);
    if (rc == 0)
        rc = mf_knn_graph_from_part(&g, part);
    mf_knn_part_free(part);
    double t2 = mf_now();
    for (int r = 0; rc == 0 && r < c->rounds; r++) {
        char gid[32];
        snprintf(gid, sizeof gid, "build-round-%d", r);
        rc = mf_knn_refine_shard(&part, g, gid, s, 0, 1, c->mem_limit, progress_mode());
        mf_knn_free(g);
        g = NULL;
        if (rc == 0)
            rc = mf_knn_graph_from_part(&g, part);
        mf_knn_part_free(part);
    }
    double t3 = mf_now();
    if (rc < 0) {
        mf_output_abort(o);
        return rc;
    }
    cJSON_AddNumberToObject(js, "plan_seconds", t1 - t0);
    cJSON_AddNumberToObject(js, "join_seconds", t2 - t1);
    cJSON_AddNumberToObject(js, "refine_seconds", t3 - t2);
    rc = finish_graph(c, s, g, job, o, js);
    mf_knn_free(g);
    return rc;
}

int main(int argc, char **argv)
{
    mf_cli_start_blas(argv);
    int cmd = CMD_COUNT;
    for (int i = 0; argc > 1 && i < CMD_COUNT; i++)
        if (strcmp(argv[1], commands[i]) == 0)
            cmd = i;
    if (cmd == CMD_COUNT) { /* --help, --version, or a usage error */
        int first = mf_cli_parse(&top, argc, argv, NULL, NULL);
        if (first < argc)
            mf_cli_usage_error("unknown command '%s' (plan, shard, refine, merge, build)",
                               argv[first]);
        mf_cli_usage_error("expected a command: plan, shard, refine, merge or build");
    }
    config c = {.pp = mf_knn_plan_default_params(), .recall_sample = 1000, .rounds = 2};
    int first = 1 + mf_cli_parse(&tools[cmd], argc - 1, argv + 1, on_option, &c);
    if (!c.out)
        mf_cli_usage_error("-o/--output is required");
    if (first >= argc || (cmd != CMD_MERGE && argc - first != 1))
        mf_cli_usage_error("expected one store%s, got %d operands",
                           cmd == CMD_MERGE ? " and the parts" : "", argc - first);
    mf_store *s = mf_cli_open_store(argv[first]);
    cJSON *js = cJSON_CreateObject();
    cJSON_AddStringToObject(js, "step", commands[cmd]);
    double t0 = mf_now();
    int rc = cmd == CMD_PLAN    ? do_plan(&c, s, js)
             : cmd == CMD_SHARD ? do_shard(&c, s, js)
             : cmd == CMD_REFINE ? do_refine(&c, s, js)
             : cmd == CMD_MERGE ? do_merge(&c, s, argv + first + 1, argc - first - 1, js)
                                : do_build(&c, s, js);
    cJSON_AddNumberToObject(js, "seconds", mf_now() - t0);
    mf_store_close(s);
    if (rc < 0) {
        cJSON_Delete(js);
        return mf_cli_fail(rc);
    }
    mf_cli_summary(js);
    return mf_cli_finish(MF_EXIT_OK);
}
