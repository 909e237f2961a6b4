/* mf-synth - write a synthetic embedding store with known ground truth (see
 * include/mf/synth.h for the model), for tests, benchmarks and the demo. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "mf/durable.h"
#include "mf/progress.h"
#include "mf/status.h"
#include "mf/synth.h"

enum {
    OPT_OUTPUT = 1000,
    OPT_IDENTITIES,
    OPT_ROWS,
    OPT_DIM,
    OPT_SEED,
    OPT_JUNK,
    OPT_DUP,
    OPT_MISLABEL,
    OPT_LOOKALIKE,
    OPT_LOW_QUALITY,
    OPT_MIN_SIZE,
    OPT_MAX_SIZE,
    OPT_INTER_COS,
    OPT_CENTER_COS,
    OPT_DRIFT,
    OPT_MAG_BASE,
    OPT_MAG_SLOPE,
};

static const mf_cli_opt opts[] = {
    {"output", 'o', "FILE", "write the store to FILE (required)", OPT_OUTPUT},
    {"identities", 0, "K", "number of identities (default 2000)", OPT_IDENTITIES},
    {"rows", 0, "N", "number of rows, junk included (default 65000)", OPT_ROWS},
    {"dim", 0, "D", "embedding width (default 512)", OPT_DIM},
    {"seed", 0, "S", "random seed (default 1)", OPT_SEED},
    {"junk", 0, "P", "share of junk rows, not faces (default 0.02)", OPT_JUNK},
    {"dup", 0, "P", "share of near-duplicate rows (default 0.02)", OPT_DUP},
    {"mislabel", 0, "P", "share of rows with a wrong label (default 0.03)", OPT_MISLABEL},
    {"lookalike", 0, "P", "share of look-alike identities (default 0.05)", OPT_LOOKALIKE},
    {"low-quality", 0, "P", "share of low-quality faces (default 0.10)", OPT_LOW_QUALITY},
    {"min-size", 0, "N", "smallest identity (default 5)", OPT_MIN_SIZE},
    {"max-size", 0, "N", "largest identity (default 200)", OPT_MAX_SIZE},
    {"inter-cos", 0, "C", "mean cosine between identities (default 0.10)", OPT_INTER_COS},
    {"center-cos", 0, "C", "cosine of a perfect sample to its centre (default 0.82)",
     OPT_CENTER_COS},
    {"drift", 0, "W", "pull of q=0 samples to the unrecognisable direction (default 0.6)",
     OPT_DRIFT},
    {"mag-base", 0, "M", "magnitude at quality 0 (default 10)", OPT_MAG_BASE},
    {"mag-slope", 0, "M", "magnitude gained from quality 0 to 1 (default 25)", OPT_MAG_SLOPE},
    {0},
};

static const mf_cli_tool tool = {
    "mf-synth",
    "-o OUT.h5 [--identities K] [--rows N] [--dim D] [--seed S] [options]",
    "Write a synthetic embedding store that looks like MagFace embeddings of a scraped "
    "face training set, with the ground truth as extra columns.",
    "Columns besides the store's own: /true_label (-1 for junk), /is_junk, /is_dup,\n"
    "/is_mislabeled, /dup_of (int64) and /quality (float32); /label is the noisy label.\n"
    "The same seed and parameters give the same store whatever the thread count.\n\n"
    "Example:\n  mf-synth -o synth.h5 --identities 2000 --rows 65000 --seed 7",
    opts,
    MF_CLI_WRITES};

typedef struct config {
    mf_synth_params p;
    const char *output;
} config;

static double share(const char *opt, const char *arg)
{
    return mf_cli_parse_double(opt, arg, 0.0, 0.999);
}

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    mf_synth_params *p = &c->p;
    switch (id) {
    case OPT_OUTPUT: c->output = arg; break;
    case OPT_IDENTITIES:
        p->identities = mf_cli_parse_int("--identities", arg, 1, 1LL << 26);
        break;
    case OPT_ROWS: p->rows = (uint64_t)mf_cli_parse_int("--rows", arg, 1, 1LL << 40); break;
    case OPT_DIM: p->dim = (int)mf_cli_parse_int("--dim", arg, 2, 65536); break;
    case OPT_SEED: p->seed = (uint64_t)mf_cli_parse_int("--seed", arg, 0, INT64_MAX); break;
    case OPT_JUNK: p->junk = share("--junk", arg); break;
    case OPT_DUP: p->dup = share("--dup", arg); break;
    case OPT_MISLABEL: p->mislabel = share("--mislabel", arg); break;
    case OPT_LOOKALIKE: p->lookalike = share("--lookalike", arg); break;
    case OPT_LOW_QUALITY: p->low_quality = share("--low-quality", arg); break;
    case OPT_MIN_SIZE:
        p->min_size = (int)mf_cli_parse_int("--min-size", arg, 1, 1 << 20);
        break;
    case OPT_MAX_SIZE:
        p->max_size = (int)mf_cli_parse_int("--max-size", arg, 1, 1 << 20);
        break;
    case OPT_INTER_COS: p->inter_cos = share("--inter-cos", arg); break;
    case OPT_CENTER_COS: p->center_cos = share("--center-cos", arg); break;
    case OPT_DRIFT: p->drift = share("--drift", arg); break;
    case OPT_MAG_BASE: p->mag_base = mf_cli_parse_double("--mag-base", arg, 0.001, 1e6); break;
    case OPT_MAG_SLOPE: p->mag_slope = mf_cli_parse_double("--mag-slope", arg, 0, 1e6); break;
    default: return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    config c = {mf_synth_default_params(), NULL};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (first < argc)
        mf_cli_usage_error("unexpected argument '%s'", argv[first]);
    if (!c.output)
        mf_cli_usage_error("no output: give -o OUT.h5");
    if (c.p.min_size > c.p.max_size)
        mf_cli_usage_error("--min-size %d is above --max-size %d", c.p.min_size, c.p.max_size);
    if (c.p.rows < (uint64_t)c.p.identities)
        mf_cli_usage_error("%llu rows cannot hold %lld identities",
                           (unsigned long long)c.p.rows, (long long)c.p.identities);
    double t0 = mf_now();
    mf_synth_counts n;
    mf_output *out = mf_cli_open_output(c.output, MF_OUTPUT_SEEKABLE);
    if (mf_synth_write_to(&c.p, out, &n) < 0) {
        mf_cli_error("%s", mf_last_error());
        return mf_cli_finish(MF_EXIT_FAILURE);
    }
    mf_cli_info("wrote '%s': %llu rows, %lld identities (%llu look-alikes), %llu junk, "
                "%llu near-duplicates, %llu mislabelled, in %.1f s",
                c.output, (unsigned long long)n.rows, (long long)c.p.identities,
                (unsigned long long)n.lookalike_identities, (unsigned long long)n.junk,
                (unsigned long long)n.dup, (unsigned long long)n.mislabeled, mf_now() - t0);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "output", c.output);
    const char *keys[] = {"rows", "identities", "lookalike_identities",
                          "junk", "dup",        "mislabeled"};
    const double values[] = {
        (double)n.rows, (double)c.p.identities, (double)n.lookalike_identities,
        (double)n.junk, (double)n.dup,          (double)n.mislabeled};
    for (int i = 0; i < 6; i++)
        cJSON_AddNumberToObject(o, keys[i], values[i]);
    mf_cli_summary(o);
    return mf_cli_finish(MF_EXIT_OK);
}
