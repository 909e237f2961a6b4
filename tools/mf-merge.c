/* mf-merge - join shard stores into one, in input order, dropping repeated ids.
 * Streams block by block, so stores larger than memory merge fine (a 16-byte hash per id
 * and one byte per row are kept). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mf/durable.h"
#include "mf/idset.h"
#include "mf/progress.h"
#include "mf/source.h"
#include "mf/shardset.h"
#include "mf/status.h"
#include "mf/store.h"

enum { OPT_OUTPUT = 1000, OPT_ALLOW_PARTIAL };

typedef struct config {
    const char *output;
    int allow_partial;
} config;

static const mf_cli_opt options[] = {
    {"output", 'o', "FILE", "write the merged store to FILE (required)", OPT_OUTPUT},
    {"allow-partial", 0, NULL,
     "merge an incomplete K/N set (shards missing: a warning, not an error); a shard of "
     "another split or job is still refused",
     OPT_ALLOW_PARTIAL},
    {0},
};

static const mf_cli_tool tool = {
    "mf-merge",
    "-o <out.h5> [options] <in.h5>...",
    "Join stores (e.g. the shards of an mf-embed job array) into one. Rows keep the\n"
    "order of the inputs; a row whose id was already seen is dropped (and counted);\n"
    "the /failed lists are joined. All inputs must have the same model, dimension and\n"
    "precision (mf-embed --precision; int8 also the same calibration).\n"
    "\n"
    "Stores made by mf-embed --shard K/N (or a SLURM array) record their shard and job:\n"
    "when any input is such a shard, the inputs must be shards 0..N-1 of one N-way\n"
    "split of one job, each once. A missing shard (a task that failed), a shard of\n"
    "another split or of another run is refused with the shard it concerns; with\n"
    "--allow-partial, missing shards are only a warning.",
    "Examples:\n"
    "  mf-merge -o faces.h5 shards/part-*.h5\n"
    "  mf-merge --allow-partial -o first-look.h5 shards/part-*.h5   # while tasks still run",
    options,
    MF_CLI_WRITES};

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    if (id == OPT_OUTPUT)
        c->output = arg;
    else if (id == OPT_ALLOW_PARTIAL)
        c->allow_partial = 1;
    return 0;
}

/* The network's numeric path of a store; a store without the attribute was embedded
 * before the lower-precision paths existed (or by another program): fp32. */
static const char *precision_of(mf_store *s)
{
    const char *p = mf_store_attr(s, "precision");
    return p ? p : "fp32";
}

/* Inputs must agree on what their embeddings mean: the same network, and the same
 * numeric path (bf16 or int8 embeddings differ slightly from fp32 ones, and int8 ones
 * from another calibration's, so a merged store would compare unlike rows). */
static int check_compatible(mf_store *a, mf_store *b)
{
    if (mf_store_dim(a) != mf_store_dim(b))
        return mf_set_error(MF_ERR_MISMATCH, "'%s' has %d-d embeddings but '%s' has %d-d",
                            mf_store_path(b), mf_store_dim(b), mf_store_path(a),
                            mf_store_dim(a));
    if (strcmp(precision_of(a), precision_of(b)) != 0)
        return mf_set_error(MF_ERR_MISMATCH,
                            "'%s' was embedded at precision %s but '%s' at %s: stores of "
                            "different precisions do not merge",
                            mf_store_path(b), precision_of(b), mf_store_path(a),
                            precision_of(a));
    const char *keys[] = {"model", "model_sha256", "int8_calibration"};
    for (int i = 0; i < 3; i++) {
        const char *x = mf_store_attr(a, keys[i]), *y = mf_store_attr(b, keys[i]);
        if ((x || y) && (!x || !y || strcmp(x, y) != 0))
            return mf_set_error(MF_ERR_MISMATCH, "'%s' has %s '%s' but '%s' has '%s'",
                                mf_store_path(b), keys[i], y ? y : "(none)", mf_store_path(a),
                                x ? x : "(none)");
    }
    return 0;
}

/* Mark the rows of `in` whose ids were not seen in this or an earlier input. */
static int mark_new_ids(mf_store *in, mf_idset *seen, uint8_t *keep, uint64_t *kept,
                        uint64_t *dropped)
{
    mf_store_cursor *c;
    const mf_store_block *b;
    int rc = mf_store_cursor_open(&c, in, MF_COL_ID, 0, mf_store_rows(in));
    while (rc == 0 && (rc = mf_store_cursor_next(c, &b)) > 0) {
        rc = 0;
        for (size_t i = 0; i < b->n && rc >= 0; i++) {
            rc = mf_idset_add(seen, b->id[i]);
            keep[b->start + i] = rc == 1;
            *kept += rc == 1;
            *dropped += rc == 0;
        }
        rc = rc < 0 ? rc : 0;
    }
    mf_store_cursor_close(c);
    return rc < 0 ? rc : 0;
}

static cJSON *summary(char **inputs, int n, uint64_t kept, uint64_t dropped)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "inputs");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(inputs[i]));
    cJSON_AddNumberToObject(o, "rows", (double)kept);
    cJSON_AddNumberToObject(o, "duplicate_ids_dropped", (double)dropped);
    return o;
}

/* The shard a store was embedded as, from the job mf-embed records ("shard": "K/N"),
 * and the rest of that job, which every shard of one set shares. A store without a job
 * (merged, derived, foreign) is no shard: n = 0. */
static int shard_of(mf_store *s, mf_shard_part *p, char **group)
{
    p->name = mf_store_path(s);
    p->k = p->n = 0;
    *group = NULL;
    const char *job = mf_store_attr(s, "mf_job");
    cJSON *o = job ? cJSON_Parse(job) : NULL;
    const char *spec = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "shard"));
    int rc = 0;
    if (spec && mf_shard_parse(spec, &p->k, &p->n) < 0)
        rc = mf_set_error(MF_ERR_FORMAT, "'%s': unreadable shard '%s' in its job", p->name, spec);
    if (p->n == 1) /* an unsplit run is no part of a set */
        p->n = 0;
    if (o) {
        cJSON_DeleteItemFromObjectCaseSensitive(o, "shard");
        *group = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    p->group = *group;
    return rc;
}

/* Refuse inputs that are shards but not one complete set of one job; with
 * --allow-partial, missing shards are a warning. */
static int check_shard_set(mf_store_source *src, int n, int allow_partial)
{
    if (n <= 0)
        return 0;
    mf_shard_part *parts = calloc((size_t)n, sizeof *parts);
    char **groups = calloc((size_t)n, sizeof *groups);
    int rc = parts && groups ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && rc == 0; i++)
        rc = shard_of(src[i].store, &parts[i], &groups[i]);
    if (rc == 0 && (rc = mf_shard_set_check(parts, (size_t)n, allow_partial)) > 0) {
        mf_cli_warn("%s; merging anyway (--allow-partial)", mf_last_error());
        rc = 0;
    }
    for (int i = 0; i < n && groups; i++)
        free(groups[i]);
    free(groups);
    free(parts);
    return rc;
}

typedef struct merge {
    mf_store_source *src;
    uint8_t **keep;
    int n;
    uint64_t total, kept, dropped;
} merge;

/* Open and check every input, and decide which rows to keep, before writing anything:
 * a mismatch in the last one must not cost a half-written merge. */
static int prepare(merge *m, char **inputs, int allow_partial)
{
    mf_idset *seen = mf_idset_new(1 << 16);
    m->src = calloc((size_t)m->n, sizeof *m->src);
    m->keep = calloc((size_t)m->n, sizeof *m->keep);
    int rc = seen && m->src && m->keep ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (int i = 0; i < m->n && rc == 0; i++)
        if ((rc = mf_store_open(&m->src[i].store, inputs[i])) == 0 && i > 0)
            rc = check_compatible(m->src[0].store, m->src[i].store);
    if (rc == 0)
        rc = check_shard_set(m->src, m->n, allow_partial);
    for (int i = 0; i < m->n && rc == 0; i++) {
        mf_store *in = m->src[i].store;
        uint64_t rows = mf_store_rows(in);
        if (!(m->keep[i] = malloc(rows ? rows : 1))) {
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
            break;
        }
        m->src[i].keep = m->keep[i];
        m->total += rows;
        rc = mark_new_ids(in, seen, m->keep[i], &m->kept, &m->dropped);
    }
    mf_idset_free(seen);
    return rc;
}

static void release(merge *m)
{
    for (int i = 0; i < m->n && m->src; i++) {
        mf_store_close(m->src[i].store);
        free(m->keep[i]);
    }
    free(m->src);
    free(m->keep);
}

int main(int argc, char **argv)
{
    config c = {0};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    merge m = {.n = argc - first};
    if (!c.output)
        mf_cli_usage_error("missing -o <out.h5>");
    if (m.n < 1)
        mf_cli_usage_error("no input stores");
    mf_cli_add_inputs(argc, argv, first);
    mf_output *out = mf_cli_open_output(c.output, MF_OUTPUT_SEEKABLE);
    int rc = prepare(&m, argv + first, c.allow_partial);
    uint64_t failed = 0;
    for (int i = 0; i < m.n && rc == 0; i++)
        failed += mf_store_failed_count(m.src[i].store);
    if (rc == 0) {
        cJSON *js = summary(argv + first, m.n, m.kept, m.dropped);
        char *attr = cJSON_PrintUnformatted(js);
        char *history = mf_cli_history(js);
        mf_progress *bar =
            mf_cli.quiet ? NULL : mf_progress_new("merging", m.total, "rows", mf_cli.progress);
        mf_store_derive_params d = {
            .attr_name = "mf_merge", .attr_value = attr, .history = history, .progress = bar};
        rc = attr && history ? mf_store_derive(out, m.src, (size_t)m.n, &d)
                             : mf_set_error(MF_ERR_NOMEM, "out of memory");
        mf_progress_free(bar);
        free(attr);
        free(history);
    } else {
        mf_output_abort(out);
    }
    release(&m);
    if (rc < 0)
        return mf_cli_fail(rc);
    mf_cli_info("merged %d stores into '%s': %llu rows, %llu duplicate ids dropped, %llu "
                "failed inputs",
                m.n, c.output, (unsigned long long)m.kept, (unsigned long long)m.dropped,
                (unsigned long long)failed);
    cJSON *js = cJSON_CreateObject();
    cJSON_AddStringToObject(js, "output", c.output);
    cJSON_AddNumberToObject(js, "inputs", m.n);
    cJSON_AddNumberToObject(js, "rows", (double)m.kept);
    cJSON_AddNumberToObject(js, "duplicate_ids_dropped", (double)m.dropped);
    cJSON_AddNumberToObject(js, "failed", (double)failed);
    mf_cli_summary(js);
    return mf_cli_finish(MF_EXIT_OK);
}
