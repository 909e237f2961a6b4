/* mf-export - write a store's samples in a trainer's format, reading the original image
 * bytes again through each row's id (docs/EXPORT.md). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mf/export.h"
#include "mf/progress.h"
#include "mf/status.h"
#include "mf/store.h"

enum {
    OPT_FORMAT = 1000,
    OPT_OUTPUT,
    OPT_LABEL,
    OPT_SHARD_SIZE,
    OPT_COPY,
    OPT_ROOT,
    OPT_SHUFFLE,
    OPT_SEED
};

static const mf_cli_opt options[] = {
    {"format", 'f', "FMT", "rec | wds | list | featlist | tree (required)", OPT_FORMAT},
    {"output", 'o', "OUT", "output file, shard prefix (wds) or folder (tree)", OPT_OUTPUT},
    {"label", 0, "COL", "class from this integer column: label (default), cluster, ...",
     OPT_LABEL},
    {"shard-size", 0, "N", "wds: samples per shard (default 10000)", OPT_SHARD_SIZE},
    {"copy", 0, NULL, "tree: copy plain files instead of symlinking them", OPT_COPY},
    {"shuffle", 0, NULL,
     "wds: samples in a random order, so each shard mixes identities; "
     "rec: images of each identity in a random order",
     OPT_SHUFFLE},
    {"seed", 0, "N", "the shuffle's seed (default 0): the same seed, the same order", OPT_SEED},
    {"root", 0, "DIR", "resolve relative ids against DIR (sources that moved)", OPT_ROOT},
    {0},
};

static const mf_cli_tool tool = {
    "mf-export",
    "--format FMT -o OUT [options] <store.h5>",
    "Write the samples of a store as insightface RecordIO, WebDataset shards, a list, the\n"
    "official MagFace feature text or a folder tree, with the original image bytes.",
    "Classes are the distinct non-negative values of the label column renumbered 0..K-1;\n"
    "rows without one are left out (except by featlist). Images are never re-encoded.\n"
    "A missing source image is reported (one warning naming the id) and skipped: the\n"
    "output is still written and the exit status is 3.\n"
    "\n"
    "Examples:\n"
    "  mf-export -f rec -o clean/train clean.h5          clean/train.rec + train.idx\n"
    "  mf-export -f wds --shard-size 5000 -o shards/clean clean.h5\n"
    "  mf-export -f tree --label cluster -o by_cluster clustered.h5\n"
    "  mf-export -f featlist -o feat.list faces.h5",
    options,
    MF_CLI_WRITES};

typedef struct config {
    mf_export_params p;
    int have_format;
} config;

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    switch (id) {
    case OPT_FORMAT:
        if (mf_export_format_parse(arg, &c->p.format) < 0)
            mf_cli_usage_error("%s", mf_last_error());
        c->have_format = 1;
        break;
    case OPT_OUTPUT: { /* "dir/" names the folder "dir" (tree), not a file inside it */
        char *out = (char *)arg;
        for (size_t n = strlen(out); n > 1 && out[n - 1] == '/'; n--)
            out[n - 1] = 0;
        c->p.output = out;
        break;
    }
    case OPT_LABEL: c->p.label_column = arg; break;
    case OPT_SHARD_SIZE:
        c->p.shard_size = (size_t)mf_cli_parse_int("--shard-size", arg, 1, 1LL << 40);
        break;
    case OPT_COPY: c->p.copy = 1; break;
    case OPT_ROOT: c->p.root = arg; break;
    case OPT_SHUFFLE: c->p.shuffle = 1; break;
    case OPT_SEED: c->p.seed = (uint64_t)mf_cli_parse_int("--seed", arg, 0, INT64_MAX); break;
    }
    return 0;
}

static void summarise(const config *c, const mf_export_stats *st)
{
    mf_cli_info("wrote %llu samples of %llu classes (%llu file%s)",
                (unsigned long long)st->written, (unsigned long long)st->classes,
                (unsigned long long)st->files, st->files == 1 ? "" : "s");
    if (st->unlabelled)
        mf_cli_info("%llu rows without a %s left out", (unsigned long long)st->unlabelled,
                    c->p.label_column ? c->p.label_column : "label");
    if (st->missing)
        mf_cli_warn("%llu source images missing or unreadable (listed above), skipped",
                    (unsigned long long)st->missing);
    if (st->skipped)
        mf_cli_warn("%llu rows skipped (listed above)", (unsigned long long)st->skipped);
    cJSON *js = cJSON_CreateObject();
    cJSON_AddStringToObject(js, "output", c->p.output);
    const char *keys[] = {"written", "classes", "files", "unlabelled", "missing", "skipped"};
    const double values[] = {(double)st->written,    (double)st->classes, (double)st->files,
                             (double)st->unlabelled, (double)st->missing, (double)st->skipped};
    for (int i = 0; i < 6; i++)
        cJSON_AddNumberToObject(js, keys[i], values[i]);
    mf_cli_summary(js);
}

int main(int argc, char **argv)
{
    config c = {.p = mf_export_default_params()};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (!c.have_format)
        mf_cli_usage_error("--format is required");
    if (!c.p.output)
        mf_cli_usage_error("-o/--output is required");
    if (argc - first != 1)
        mf_cli_usage_error("expected one store, got %d", argc - first);
    c.p.overwrite = mf_cli.overwrite;
    mf_store *s = mf_cli_open_store(argv[first]);
    if (!mf_cli.quiet)
        c.p.progress = mf_progress_new("exporting", mf_store_rows(s), "rows", mf_cli.progress);
    mf_export_stats st;
    int rc = mf_export_run(s, &c.p, &st);
    mf_progress_free(c.p.progress);
    mf_store_close(s);
    if (rc < 0)
        return mf_cli_fail(rc);
    summarise(&c, &st);
    return mf_cli_finish(st.missing || st.skipped ? MF_EXIT_PARTIAL : MF_EXIT_OK);
}
