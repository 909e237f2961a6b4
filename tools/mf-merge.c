/* mf-merge - join shard stores into one, in input order, dropping repeated ids.
 * Streams block by block, so stores larger than memory merge fine (only a 16-byte hash
 * per id is kept). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mf/idset.h"
#include "mf/progress.h"
#include "mf/status.h"
#include "mf/store.h"

enum { OPT_OUTPUT = 1000, OPT_OVERWRITE };

typedef struct config {
    const char *output;
    int overwrite;
} config;

static const mf_cli_opt options[] = {
    {"output", 'o', "FILE", "write the merged store to FILE (required)", OPT_OUTPUT},
    {"overwrite", 0, NULL, "replace FILE if it exists", OPT_OVERWRITE},
    {0},
};

static const mf_cli_tool tool = {
    "mf-merge", "-o <out.h5> [options] <in.h5>...",
    "Join stores (e.g. the shards of an mf-embed job array) into one. Rows keep the\n"
    "order of the inputs; a row whose id was already seen is dropped (and counted);\n"
    "the /failed lists are joined. All inputs must have the same model and dimension.",
    "Example:\n"
    "  mf-merge -o faces.h5 shard-*.h5",
    options};

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    if (id == OPT_OUTPUT)
        c->output = arg;
    else if (id == OPT_OVERWRITE)
        c->overwrite = 1;
    return 0;
}

#define BLOCK 65536

/* Inputs must agree on what their embeddings mean. */
static int check_compatible(mf_store *a, mf_store *b)
{
    if (mf_store_dim(a) != mf_store_dim(b))
        return mf_set_error(MF_ERR_MISMATCH, "'%s' has %d-d embeddings but '%s' has %d-d",
                            mf_store_path(b), mf_store_dim(b), mf_store_path(a),
                            mf_store_dim(a));
    const char *keys[] = {"model", "model_sha256"};
    for (int i = 0; i < 2; i++) {
        const char *x = mf_store_attr(a, keys[i]), *y = mf_store_attr(b, keys[i]);
        if ((x || y) && (!x || !y || strcmp(x, y) != 0))
            return mf_set_error(MF_ERR_MISMATCH, "'%s' has %s '%s' but '%s' has '%s'",
                                mf_store_path(b), keys[i], y ? y : "(none)", mf_store_path(a),
                                x ? x : "(none)");
    }
    return 0;
}

/* Append the rows of `in` whose ids are new to `out`. */
static int merge_one(mf_store *out, mf_store *in, mf_idset *seen, mf_progress *bar,
                     uint64_t *kept, uint64_t *dropped)
{
    uint64_t rows = mf_store_rows(in);
    char **ids = malloc(BLOCK * sizeof *ids);
    uint64_t *sel = malloc(BLOCK * sizeof *sel);
    int rc = ids && sel ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (uint64_t at = 0; at < rows && rc == 0; at += BLOCK) {
        size_t k = (size_t)(rows - at < BLOCK ? rows - at : BLOCK), n = 0;
        if ((rc = mf_store_read_ids(in, at, k, ids)) < 0)
            break;
        for (size_t i = 0; i < k && rc >= 0; i++) {
            rc = mf_idset_add(seen, ids[i]);
            if (rc == 1)
                sel[n++] = at + i;
        }
        mf_store_free_strings(ids, k);
        if (rc < 0)
            break;
        *kept += n;
        *dropped += k - n;
        rc = mf_store_copy_rows(out, in, sel, n);
        mf_progress_add(bar, k);
    }
    free(ids);
    free(sel);
    if (rc == 0)
        rc = mf_store_copy_failed(out, in);
    return rc;
}

static int record_provenance(mf_store *out, char **inputs, int n, uint64_t kept,
                             uint64_t dropped)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "inputs");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(inputs[i]));
    cJSON_AddNumberToObject(o, "rows", (double)kept);
    cJSON_AddNumberToObject(o, "duplicate_ids_dropped", (double)dropped);
    char *text = cJSON_PrintUnformatted(o);
    int rc = text ? mf_store_set_attr(out, "mf_merge", text)
                  : mf_set_error(MF_ERR_NOMEM, "out of memory");
    free(text);
    cJSON_Delete(o);
    return rc;
}

int main(int argc, char **argv)
{
    config c = {0};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    int n = argc - first;
    if (!c.output)
        mf_cli_usage_error("missing -o <out.h5>");
    if (n < 1)
        mf_cli_usage_error("no input stores");
    for (int i = first; i < argc; i++)
        if (strcmp(argv[i], c.output) == 0)
            mf_cli_usage_error("output '%s' is also an input", c.output);
    FILE *exists = fopen(c.output, "r");
    if (exists) {
        fclose(exists);
        if (!c.overwrite)
            mf_cli_usage_error("'%s' exists (use --overwrite to replace it)", c.output);
    }

    mf_store **in = calloc((size_t)n, sizeof *in);
    mf_idset *seen = mf_idset_new(1 << 16);
    mf_store *out = NULL;
    int rc = in && seen ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    /* Open and check every input first: a mismatch in the last one must not cost a
     * half-written merge. */
    for (int i = 0; i < n && rc == 0; i++)
        if ((rc = mf_store_open(&in[i], argv[first + i])) == 0 && i > 0)
            rc = check_compatible(in[0], in[i]);
    if (rc == 0)
        rc = mf_store_create_like(&out, c.output, in[0]);
    uint64_t kept = 0, dropped = 0, total = 0;
    for (int i = 0; i < n && rc == 0; i++)
        total += mf_store_rows(in[i]);
    mf_progress *bar =
        mf_cli.quiet ? NULL : mf_progress_new("merging", total, "rows", mf_cli.progress);
    for (int i = 0; i < n && rc == 0; i++)
        rc = merge_one(out, in[i], seen, bar, &kept, &dropped);
    mf_progress_free(bar);
    if (rc == 0)
        rc = record_provenance(out, argv + first, n, kept, dropped);
    uint64_t failed = out ? mf_store_failed_count(out) : 0;
    if (rc == 0)
        rc = mf_store_commit(out);
    else
        mf_store_discard(out);
    for (int i = 0; i < n && in; i++)
        mf_store_close(in[i]);
    free(in);
    mf_idset_free(seen);
    if (rc < 0) {
        mf_cli_error("%s", mf_last_error());
        return mf_cli_finish(MF_EXIT_FAILURE);
    }
    mf_cli_info("merged %d stores into '%s': %llu rows, %llu duplicate ids dropped, %llu "
                "failed inputs",
                n, c.output, (unsigned long long)kept, (unsigned long long)dropped,
                (unsigned long long)failed);
    return mf_cli_finish(MF_EXIT_OK);
}
