/* mf-synth - write a synthetic embedding store with known ground truth (see
 * include/mf/synth.h for the model), for tests, benchmarks and the demo. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mf/durable.h"
#include "mf/progress.h"
#include "mf/status.h"
#include "mf/synth.h"

enum {
    OPT_OUTPUT = 1000,
    OPT_PROFILE,
    OPT_LIST_PROFILES,
    OPT_IDENTITIES,
    OPT_ROWS,
    OPT_DIM,
    OPT_SEED,
    OPT_QUALITY,
    OPT_LOW_QUALITY,
    OPT_QUALITY_ID_SD,
    OPT_MAG_BASE,
    OPT_MAG_SLOPE,
    OPT_MAG_NOISE,
    OPT_CENTER_COS,
    OPT_INTER_COS,
    OPT_NOISE,
    OPT_NOISE_GROWTH,
    OPT_ID_SPREAD,
    OPT_MODES,
    OPT_MODE_COS,
    OPT_DRIFT,
    OPT_DRIFT_DIRS,
    OPT_LOOKALIKE,
    OPT_LOOKALIKE_MIX,
    OPT_MISLABEL,
    OPT_MISLABEL_LOOKALIKE,
    OPT_JUNK,
    OPT_JUNK_QUALITY,
    OPT_DISTRACTORS,
    OPT_DUP,
    OPT_MIN_SIZE,
    OPT_MAX_SIZE,
    OPT_SIZE_ALPHA,
};

static const mf_cli_opt opts[] = {
    {"output", 'o', "FILE", "write the store to FILE (required)", OPT_OUTPUT},
    {"profile", 0, "NAME", "start from a named profile (default 'default'; see below)",
     OPT_PROFILE},
    {"list-profiles", 0, NULL, "print the profiles and their settings, then exit",
     OPT_LIST_PROFILES},
    {"identities", 0, "K", "number of identities (default 2000)", OPT_IDENTITIES},
    {"rows", 0, "N", "number of rows, junk included (default 65000)", OPT_ROWS},
    {"dim", 0, "D", "embedding width (default 512)", OPT_DIM},
    {"seed", 0, "S", "random seed (default 1)", OPT_SEED},
    {"quality", 0, "continuous|bimodal|uniform",
     "distribution of face quality q (default continuous)", OPT_QUALITY},
    {"low-quality", 0, "P", "share of low-quality (bimodal: blurry) faces (0.10)",
     OPT_LOW_QUALITY},
    {"quality-identity-sd", 0, "S", "sd of a per-identity shift of quality (0.05)",
     OPT_QUALITY_ID_SD},
    {"mag-base", 0, "M", "magnitude at quality 0 (10)", OPT_MAG_BASE},
    {"mag-slope", 0, "M", "magnitude gained from quality 0 to 1 (25)", OPT_MAG_SLOPE},
    {"mag-noise", 0, "S", "sd of magnitude around base + slope q (0.8)", OPT_MAG_NOISE},
    {"center-cos", 0, "C", "cosine of a perfect sample to its centre (0.82)", OPT_CENTER_COS},
    {"inter-cos", 0, "C", "mean cosine between identity centres (0.10)", OPT_INTER_COS},
    {"noise", 0, "S", "sd of a perfect sample's cosine to its centre (0.04)", OPT_NOISE},
    {"noise-growth", 0, "G", "that sd is x (1 + G) at quality 0 (2)", OPT_NOISE_GROWTH},
    {"identity-spread", 0, "S", "sd of log per-identity angle factor (0.15)", OPT_ID_SPREAD},
    {"modes", 0, "P", "share of identities with a second mode: age, pose (0.10)", OPT_MODES},
    {"mode-cos", 0, "C", "cosine between an identity's two modes (0.75)", OPT_MODE_COS},
    {"drift", 0, "W", "pull of quality-0 faces to an unrecognisable direction (0.6)",
     OPT_DRIFT},
    {"drift-dirs", 0, "N", "number of unrecognisable directions (1)", OPT_DRIFT_DIRS},
    {"lookalike", 0, "P", "share of look-alike identities (0.05)", OPT_LOOKALIKE},
    {"lookalike-mix", 0, "W", "weight of the twin in a look-alike's centre (0.45)",
     OPT_LOOKALIKE_MIX},
    {"mislabel", 0, "P", "share of faces with a wrong label (0.03)", OPT_MISLABEL},
    {"mislabel-lookalike", 0, "P", "share of wrong labels that name the twin (0.5)",
     OPT_MISLABEL_LOOKALIKE},
    {"junk", 0, "P", "share of non-faces, near the drift directions (0.02)", OPT_JUNK},
    {"junk-quality", 0, "Q", "non-faces have quality below Q (0.15)", OPT_JUNK_QUALITY},
    {"distractors", 0, "P", "share of unrelated good-quality faces (0.01)", OPT_DISTRACTORS},
    {"dup", 0, "P", "share of near-duplicate rows (0.02)", OPT_DUP},
    {"min-size", 0, "N", "smallest identity (5)", OPT_MIN_SIZE},
    {"max-size", 0, "N", "largest identity (200)", OPT_MAX_SIZE},
    {"size-alpha", 0, "A", "0: power-law sizes; > 0: Pareto tail of exponent A (0)",
     OPT_SIZE_ALPHA},
    {0},
};

static char description[4096];

static const mf_cli_tool tool = {
    "mf-synth",
    "-o OUT.h5 [--profile NAME] [--identities K] [--rows N] [--seed S] [options]",
    "Write a synthetic embedding store that looks like MagFace embeddings of a scraped "
    "face training set, with the ground truth as extra columns.",
    description,
    opts,
    MF_CLI_WRITES};

/* --help: the profiles, then the columns and an example. */
static void make_description(void)
{
    size_t k = (size_t)snprintf(
        description, sizeof description,
        "A profile sets every generator option; options given after it (in any order)\n"
        "change single settings. Values in parentheses are the default profile's.\n"
        "Profiles (docs/FILTER.md describes each; --list-profiles prints their settings):\n");
    const char *what, *name;
    for (int i = 0; (name = mf_synth_profile_name(i, &what)) && k < sizeof description; i++)
        k += (size_t)snprintf(description + k, sizeof description - k, "  %-11s %s\n", name,
                              what);
    if (k < sizeof description)
        snprintf(description + k, sizeof description - k,
                 "\nColumns besides the store's own: /true_label (-1 for junk), /is_junk,\n"
                 "/junk_kind (1 non-face, 2 unrelated face), /is_dup, /is_mislabeled,\n"
                 "/dup_of (int64) and /quality (float32); /label is the noisy label.\n"
                 "The same seed and parameters give the same store whatever the thread "
                 "count.\n\nExamples:\n"
                 "  mf-synth -o synth.h5 --identities 2000 --rows 65000 --seed 7\n"
                 "  mf-synth -o hard.h5 --profile hard --mislabel 0.1");
}

/* Options are collected while parsing and applied after the profile, so that
 * `--mislabel 0.1 --profile noisy` keeps the 0.1. */
#define MAX_SETTINGS 128

typedef struct config {
    mf_synth_params p;
    const char *output, *profile;
    int list;
    int n_set;
    int set_id[MAX_SETTINGS];
    const char *set_arg[MAX_SETTINGS];
} config;

static double share(const char *opt, const char *arg)
{
    return mf_cli_parse_double(opt, arg, 0.0, 0.999);
}

/* Apply one generator option to p (the option names come from the table). */
static void apply(mf_synth_params *p, int id, const char *arg)
{
    switch (id) {
    case OPT_IDENTITIES:
        p->identities = mf_cli_parse_int("--identities", arg, 1, 1LL << 26);
        break;
    case OPT_ROWS: p->rows = (uint64_t)mf_cli_parse_int("--rows", arg, 1, 1LL << 40); break;
    case OPT_DIM: p->dim = (int)mf_cli_parse_int("--dim", arg, 2, 65536); break;
    case OPT_SEED: p->seed = (uint64_t)mf_cli_parse_int("--seed", arg, 0, INT64_MAX); break;
    case OPT_QUALITY: {
        int q = mf_synth_quality_parse(arg);
        if (q < 0)
            mf_cli_usage_error("--quality expects continuous, bimodal or uniform, got '%s'",
                               arg);
        p->quality = (mf_synth_quality)q;
        break;
    }
    case OPT_LOW_QUALITY: p->low_quality = share("--low-quality", arg); break;
    case OPT_QUALITY_ID_SD: p->quality_identity_sd = share("--quality-identity-sd", arg); break;
    case OPT_MAG_BASE: p->mag_base = mf_cli_parse_double("--mag-base", arg, 0.001, 1e6); break;
    case OPT_MAG_SLOPE: p->mag_slope = mf_cli_parse_double("--mag-slope", arg, 0, 1e6); break;
    case OPT_MAG_NOISE: p->mag_noise = mf_cli_parse_double("--mag-noise", arg, 0, 100); break;
    case OPT_CENTER_COS: p->center_cos = share("--center-cos", arg); break;
    case OPT_INTER_COS: p->inter_cos = share("--inter-cos", arg); break;
    case OPT_NOISE: p->noise = share("--noise", arg); break;
    case OPT_NOISE_GROWTH:
        p->noise_growth = mf_cli_parse_double("--noise-growth", arg, 0, 20);
        break;
    case OPT_ID_SPREAD:
        p->identity_spread = mf_cli_parse_double("--identity-spread", arg, 0, 2);
        break;
    case OPT_MODES: p->modes = share("--modes", arg); break;
    case OPT_MODE_COS: p->mode_cos = share("--mode-cos", arg); break;
    case OPT_DRIFT: p->drift = share("--drift", arg); break;
    case OPT_DRIFT_DIRS:
        p->drift_dirs = (int)mf_cli_parse_int("--drift-dirs", arg, 1, 64);
        break;
    case OPT_LOOKALIKE: p->lookalike = share("--lookalike", arg); break;
    case OPT_LOOKALIKE_MIX: p->lookalike_mix = share("--lookalike-mix", arg); break;
    case OPT_MISLABEL: p->mislabel = share("--mislabel", arg); break;
    case OPT_MISLABEL_LOOKALIKE:
        p->mislabel_lookalike = share("--mislabel-lookalike", arg);
        break;
    case OPT_JUNK: p->junk = share("--junk", arg); break;
    case OPT_JUNK_QUALITY: p->junk_quality = share("--junk-quality", arg); break;
    case OPT_DISTRACTORS: p->distractors = share("--distractors", arg); break;
    case OPT_DUP: p->dup = share("--dup", arg); break;
    case OPT_MIN_SIZE:
        p->min_size = (int)mf_cli_parse_int("--min-size", arg, 1, 1 << 20);
        break;
    case OPT_MAX_SIZE:
        p->max_size = (int)mf_cli_parse_int("--max-size", arg, 1, 1 << 20);
        break;
    case OPT_SIZE_ALPHA:
        p->size_alpha = mf_cli_parse_double("--size-alpha", arg, 0, 100);
        break;
    }
}

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    switch (id) {
    case OPT_OUTPUT: c->output = arg; break;
    case OPT_PROFILE: c->profile = arg; break;
    case OPT_LIST_PROFILES: c->list = 1; break;
    default:
        if (c->n_set == MAX_SETTINGS)
            mf_cli_usage_error("too many options");
        c->set_id[c->n_set] = id;
        c->set_arg[c->n_set++] = arg;
        apply(&c->p, id, arg); /* validates the value now, in the order given */
    }
    return 0;
}

/* --list-profiles: one line of settings per profile. */
static void list_profiles(void)
{
    const char *what, *name;
    for (int i = 0; (name = mf_synth_profile_name(i, &what)); i++) {
        mf_synth_params p = mf_synth_default_params();
        mf_synth_profile(&p, name);
        printf("%s: %s\n  --quality %s --low-quality %g --quality-identity-sd %g "
               "--mag-base %g --mag-slope %g --mag-noise %g\n  --center-cos %g --inter-cos %g "
               "--noise %g --noise-growth %g --identity-spread %g --modes %g --mode-cos %g\n"
               "  --drift %g --drift-dirs %d --lookalike %g --lookalike-mix %g --mislabel %g "
               "--mislabel-lookalike %g\n  --junk %g --junk-quality %g --distractors %g "
               "--dup %g --min-size %d --max-size %d --size-alpha %g\n",
               name, what, mf_synth_quality_name(p.quality), p.low_quality,
               p.quality_identity_sd, p.mag_base, p.mag_slope, p.mag_noise, p.center_cos,
               p.inter_cos, p.noise, p.noise_growth, p.identity_spread, p.modes, p.mode_cos,
               p.drift, p.drift_dirs, p.lookalike, p.lookalike_mix, p.mislabel,
               p.mislabel_lookalike, p.junk, p.junk_quality, p.distractors, p.dup, p.min_size,
               p.max_size, p.size_alpha);
    }
}

int main(int argc, char **argv)
{
    make_description();
    config c = {.p = mf_synth_default_params()};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (c.list) {
        list_profiles();
        return mf_cli_finish(MF_EXIT_OK);
    }
    if (first < argc)
        mf_cli_usage_error("unexpected argument '%s'", argv[first]);
    if (!c.output)
        mf_cli_usage_error("no output: give -o OUT.h5");
    if (c.profile) {
        if (mf_synth_profile(&c.p, c.profile) < 0)
            mf_cli_usage_error("unknown profile '%s' (see --list-profiles)", c.profile);
        for (int i = 0; i < c.n_set; i++)
            apply(&c.p, c.set_id[i], c.set_arg[i]);
    }
    if (c.p.min_size > c.p.max_size)
        mf_cli_usage_error("--min-size %d is above --max-size %d", c.p.min_size, c.p.max_size);
    if (c.p.rows < (uint64_t)c.p.identities)
        mf_cli_usage_error("%llu rows cannot hold %lld identities",
                           (unsigned long long)c.p.rows, (long long)c.p.identities);
    if (c.p.junk + c.p.distractors >= 1)
        mf_cli_usage_error("--junk + --distractors must be below 1");
    double t0 = mf_now();
    mf_synth_counts n;
    mf_output *out = mf_cli_open_output(c.output, MF_OUTPUT_SEEKABLE);
    if (mf_synth_write_to(&c.p, out, &n) < 0) {
        mf_cli_error("%s", mf_last_error());
        return mf_cli_finish(MF_EXIT_FAILURE);
    }
    mf_cli_info("wrote '%s' (profile %s): %llu rows, %lld identities (%llu look-alikes), "
                "%llu junk (%llu unrelated faces), %llu near-duplicates, %llu mislabelled, "
                "in %.1f s",
                c.output, c.profile ? c.profile : "default", (unsigned long long)n.rows,
                (long long)c.p.identities, (unsigned long long)n.lookalike_identities,
                (unsigned long long)n.junk, (unsigned long long)n.distractors,
                (unsigned long long)n.dup, (unsigned long long)n.mislabeled, mf_now() - t0);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "output", c.output);
    cJSON_AddStringToObject(o, "profile", c.profile ? c.profile : "default");
    const char *keys[] = {"rows", "identities", "lookalike_identities", "junk",
                          "distractors", "dup", "mislabeled"};
    const double values[] = {(double)n.rows,  (double)c.p.identities,
                             (double)n.lookalike_identities, (double)n.junk,
                             (double)n.distractors, (double)n.dup, (double)n.mislabeled};
    for (int i = 0; i < 7; i++)
        cJSON_AddNumberToObject(o, keys[i], values[i]);
    mf_cli_summary(o);
    return mf_cli_finish(MF_EXIT_OK);
}
