/* mf-filter - drop low-quality, mislabelled and duplicate rows from an embedding store
 * (rules and their order: include/mf/clean.h and docs/FILTER.md). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "mf/clean.h"
#include "mf/durable.h"
#include "mf/progress.h"
#include "mf/stats.h"
#include "mf/status.h"
#include "mf/store.h"

enum {
    OPT_OUTPUT = 1000,
    OPT_MIN_MAG,
    OPT_DROP_LOWEST,
    OPT_DROP_LOWEST_LABEL,
    OPT_AUTO,
    OPT_OUTLIERS,
    OPT_MIN_CENTER_COS,
    OPT_OUTLIER_K,
    OPT_NO_NEARER,
    OPT_DEDUP,
    OPT_MERGE,
    OPT_APPLY_MERGE,
    OPT_MIN_PER_LABEL,
    OPT_REPORT,
    OPT_DRY_RUN,
};

static const mf_cli_opt opts[] = {
    {"output", 'o', "FILE", "write the kept rows to FILE (all columns)", OPT_OUTPUT},
    {"min-magnitude", 0, "X", "rule 1: drop magnitude below X", OPT_MIN_MAG},
    {"auto", 0, NULL, "rule 1: cut the low-magnitude mode (two-component fit)", OPT_AUTO},
    {"drop-lowest", 0, "P%", "rule 1: drop the P% lowest magnitudes", OPT_DROP_LOWEST},
    {"drop-lowest-per-label", 0, "P%", "rule 1: drop the P% lowest of each label",
     OPT_DROP_LOWEST_LABEL},
    {"outliers", 0, NULL,
     "rule 2: drop rows that do not fit their label (spread and nearer-identity tests)",
     OPT_OUTLIERS},
    {"min-center-cos", 0, "C", "rule 2: drop cosine to the identity centre below C (alone: "
     "only this)", OPT_MIN_CENTER_COS},
    {"outlier-k", 0, "K",
     "rule 2: spread test threshold in within-identity spreads (default 5, 0 = off)",
     OPT_OUTLIER_K},
    {"no-nearer", 0, NULL, "rule 2: skip the nearer-identity test of --outliers",
     OPT_NO_NEARER},
    {"dedup", 0, "COS", "rule 3: keep one row of each group with cosine >= COS", OPT_DEDUP},
    {"merge-labels", 0, "COS", "rule 4: report labels whose centres have cosine >= COS",
     OPT_MERGE},
    {"apply-merge", 0, NULL, "rule 4: relabel each such group to one label", OPT_APPLY_MERGE},
    {"min-per-label", 0, "N", "rule 5: drop labels left with fewer than N rows",
     OPT_MIN_PER_LABEL},
    {"report", 0, "FILE",
     "write one TSV line per dropped row (id label magnitude rule "
     "figure)",
     OPT_REPORT},
    {"dry-run", 0, NULL, "write only the report and the summary", OPT_DRY_RUN},
    {0},
};

static const mf_cli_tool tool = {
    "mf-filter",
    "<in.h5> -o <out.h5> [rules] [--report FILE.tsv] [--dry-run] [--json]",
    "Keep the rows of an embedding store that pass every rule; copy them with all columns.",
    "Rules apply in this order, each to the rows the earlier ones kept: 1 magnitude,\n"
    "2 per-identity outliers, 3 near-duplicates, 4 label merge, 5 min-per-label.\n"
    "Without any rule option, mf-filter runs --auto and --outliers (the latter only if\n"
    "the store has labels); given rules replace these defaults, and each runs only the\n"
    "tests it names. Rows with label -1 are left alone by the label rules.\n"
    "The input is never modified; OUT appears only when complete. See docs/FILTER.md.\n\n"
    "Examples:\n"
    "  mf-filter train.h5 -o clean.h5 --report dropped.tsv\n"
    "  mf-filter train.h5 -o clean.h5 --drop-lowest 5% --outliers --dedup 0.95\n"
    "  mf-filter train.h5 --dry-run --merge-labels 0.7 --json",
    opts,
    MF_CLI_WRITES};

typedef struct config {
    mf_clean_params p;
    const char *input, *output, *report;
    int dry_run, any_rule;
} config;

static double percent(const char *opt, const char *arg)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", arg);
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '%')
        buf[n - 1] = '\0';
    return mf_cli_parse_double(opt, buf, 0.0, 100.0);
}

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    mf_clean_params *p = &c->p;
    c->any_rule |= id != OPT_OUTPUT && id != OPT_REPORT && id != OPT_DRY_RUN &&
                   id != OPT_OUTLIER_K && id != OPT_NO_NEARER && id != OPT_APPLY_MERGE;
    switch (id) {
    case OPT_OUTPUT: c->output = arg; break;
    case OPT_MIN_MAG:
        p->min_magnitude = mf_cli_parse_double("--min-magnitude", arg, 0, 1e9);
        break;
    case OPT_AUTO: p->auto_cut = 1; break;
    case OPT_DROP_LOWEST: p->drop_lowest = percent("--drop-lowest", arg); break;
    case OPT_DROP_LOWEST_LABEL:
        p->drop_lowest_per_label = percent("--drop-lowest-per-label", arg);
        break;
    case OPT_OUTLIERS: p->outliers = 1; break;
    case OPT_MIN_CENTER_COS:
        p->min_center_cos = mf_cli_parse_double("--min-center-cos", arg, -1, 1);
        break;
    case OPT_OUTLIER_K: p->outlier_k = mf_cli_parse_double("--outlier-k", arg, 0, 100); break;
    case OPT_NO_NEARER: p->nearer = 0; break;
    case OPT_DEDUP: p->dedup_cos = mf_cli_parse_double("--dedup", arg, 0.5, 1); break;
    case OPT_MERGE: p->merge_cos = mf_cli_parse_double("--merge-labels", arg, 0.0, 1); break;
    case OPT_APPLY_MERGE: p->apply_merge = 1; break;
    case OPT_MIN_PER_LABEL:
        p->min_per_label = mf_cli_parse_int("--min-per-label", arg, 1, INT64_MAX);
        break;
    case OPT_REPORT: c->report = arg; break;
    case OPT_DRY_RUN: c->dry_run = 1; break;
    default: return 1;
    }
    return 0;
}

/* ---- summary ------------------------------------------------------------------------------ */

static const double quantile_at[] = {0, 0.05, 0.25, 0.5, 0.75, 0.95, 1};
#define NQ (sizeof quantile_at / sizeof quantile_at[0])

static cJSON *rules_json(const config *c)
{
    const mf_clean_params *p = &c->p;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "min_magnitude", p->min_magnitude);
    cJSON_AddBoolToObject(o, "auto", p->auto_cut);
    cJSON_AddNumberToObject(o, "drop_lowest", p->drop_lowest);
    cJSON_AddNumberToObject(o, "drop_lowest_per_label", p->drop_lowest_per_label);
    cJSON_AddBoolToObject(o, "outliers", p->outliers);
    cJSON_AddNumberToObject(o, "min_center_cos", p->min_center_cos);
    cJSON_AddNumberToObject(o, "outlier_k", p->outliers ? p->outlier_k : 0);
    cJSON_AddBoolToObject(o, "nearer_identity", p->outliers && p->nearer);
    cJSON_AddNumberToObject(o, "dedup", p->dedup_cos);
    cJSON_AddNumberToObject(o, "merge_labels", p->merge_cos);
    cJSON_AddBoolToObject(o, "apply_merge", p->apply_merge);
    cJSON_AddNumberToObject(o, "min_per_label", (double)p->min_per_label);
    return o;
}

static cJSON *quantiles_json(const double *q)
{
    static const char *names[NQ] = {"min", "p5", "p25", "median", "p75", "p95", "max"};
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i < NQ; i++)
        if (isfinite(q[i]))
            cJSON_AddNumberToObject(o, names[i], round(q[i] * 1e4) / 1e4);
        else
            cJSON_AddNullToObject(o, names[i]);
    return o;
}

/* What the magnitude rules did, for mf-report: the effective cut of the global rules
 * (--min-magnitude, --auto, --drop-lowest: the highest magnitude they dropped; the
 * per-label rule has no single cut) and the histogram of the input's magnitudes, so that
 * the removed low mode can be drawn from the derived store alone. */
#define CUT_HISTOGRAM_BINS 64

static void magnitude_rules_json(cJSON *o, const mf_clean_result *r)
{
    double cut = -INFINITY;
    for (uint64_t i = 0; i < r->rows; i++)
        if ((r->rule[i] == MF_RULE_MIN_MAGNITUDE || r->rule[i] == MF_RULE_AUTO ||
             r->rule[i] == MF_RULE_DROP_LOWEST) &&
            r->magnitude[i] > cut)
            cut = r->magnitude[i];
    if (isfinite(cut))
        cJSON_AddNumberToObject(o, "magnitude_cut", cut);
    mf_histogram h;
    mf_histogram_build(&h, r->magnitude, (size_t)r->rows, CUT_HISTOGRAM_BINS);
    cJSON *hj = cJSON_AddObjectToObject(o, "magnitude_histogram");
    cJSON_AddNumberToObject(hj, "lo", h.lo);
    cJSON_AddNumberToObject(hj, "hi", h.hi);
    double counts[CUT_HISTOGRAM_BINS];
    for (int b = 0; b < h.bins; b++)
        counts[b] = (double)h.count[b];
    cJSON_AddItemToObject(hj, "counts", cJSON_CreateDoubleArray(counts, h.bins));
}

static cJSON *summary_json(const config *c, const mf_clean_result *r, const double *before,
                           const double *after, double seconds)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "input", c->input);
    if (c->output && !c->dry_run)
        cJSON_AddStringToObject(o, "output", c->output);
    else
        cJSON_AddNullToObject(o, "output");
    cJSON_AddItemToObject(o, "rules", rules_json(c));
    cJSON_AddNumberToObject(o, "rows_in", (double)r->rows);
    cJSON_AddNumberToObject(o, "rows_out", (double)r->dropped[MF_RULE_KEEP]);
    cJSON *dropped = cJSON_AddObjectToObject(o, "dropped");
    for (int k = 1; k < MF_RULE_COUNT; k++)
        cJSON_AddNumberToObject(dropped, mf_clean_rule_name(k), (double)r->dropped[k]);
    cJSON_AddNumberToObject(o, "identities_in", (double)r->identities_in);
    cJSON_AddNumberToObject(o, "identities_out", (double)r->identities_out);
    cJSON_AddItemToObject(o, "magnitude_before", quantiles_json(before));
    cJSON_AddItemToObject(o, "magnitude_after", quantiles_json(after));
    magnitude_rules_json(o, r);
    if (c->p.auto_cut) {
        cJSON_AddNumberToObject(o, "auto_cut", round(r->auto_cut * 1e4) / 1e4);
        cJSON_AddStringToObject(o, "auto_reason", r->auto_reason);
    }
    if (r->rule2_reason[0])
        cJSON_AddStringToObject(o, "rule2", r->rule2_reason);
    if (c->p.merge_cos > 0) {
        cJSON *m = cJSON_AddArrayToObject(o, "merges");
        for (size_t i = 0; i < r->n_merges; i++) {
            double v[3] = {(double)r->merges[i].a, (double)r->merges[i].b,
                           round(r->merges[i].cos * 1e4) / 1e4};
            cJSON_AddItemToArray(m, cJSON_CreateDoubleArray(v, 3));
        }
    }
    cJSON *st = cJSON_AddObjectToObject(o, "seconds_by_stage");
    const char *stages[4] = {"magnitude+outliers", "dedup", "merge", "min_per_label"};
    for (int i = 0; i < 4; i++)
        cJSON_AddNumberToObject(st, stages[i], round(r->seconds[i] * 100) / 100);
    cJSON_AddNumberToObject(o, "seconds", round(seconds * 100) / 100);
    return o;
}

static void print_quantiles(const char *what, const double *q)
{
    mf_cli_info("  magnitude %-7s min %.2f  p5 %.2f  p25 %.2f  median %.2f  p75 %.2f  "
                "p95 %.2f  max %.2f",
                what, q[0], q[1], q[2], q[3], q[4], q[5], q[6]);
}

static void summary_text(const config *c, const mf_clean_result *r, const double *before,
                         const double *after, double seconds)
{
    uint64_t kept = r->dropped[MF_RULE_KEEP];
    mf_cli_info("%s: %llu rows in, %llu out (%.2f%% dropped); identities %lld in, %lld out; "
                "%.1f s",
                c->input, (unsigned long long)r->rows, (unsigned long long)kept,
                r->rows ? 100.0 * (double)(r->rows - kept) / (double)r->rows : 0,
                (long long)r->identities_in, (long long)r->identities_out, seconds);
    for (int k = 1; k < MF_RULE_COUNT; k++)
        if (r->dropped[k])
            mf_cli_info("  dropped by %-22s %llu", mf_clean_rule_name(k),
                        (unsigned long long)r->dropped[k]);
    if (c->p.auto_cut)
        mf_cli_info("  --auto: %s", r->auto_reason);
    if (r->rule2_reason[0])
        mf_cli_info("  rule 2: %s", r->rule2_reason);
    mf_cli_info("  seconds: rules 1-2 %.1f, dedup %.1f, merge %.1f, min-per-label %.1f",
                r->seconds[0], r->seconds[1], r->seconds[2], r->seconds[3]);
    print_quantiles("before", before);
    print_quantiles("after", after);
    if (c->p.merge_cos > 0) {
        mf_cli_info("  %zu label pair%s with centre cosine >= %g%s", r->n_merges,
                    r->n_merges == 1 ? "" : "s", c->p.merge_cos,
                    c->p.apply_merge ? " (merged)" : " (not merged: add --apply-merge)");
        for (size_t i = 0; i < r->n_merges && i < 20; i++)
            mf_cli_info("    labels %lld and %lld: %.3f", (long long)r->merges[i].a,
                        (long long)r->merges[i].b, r->merges[i].cos);
        if (r->n_merges > 20)
            mf_cli_info("    ... (all in --json)");
    }
}

/* ---- report and output ---------------------------------------------------------------- */

/* The kept rows, with the merged labels when --apply-merge relabelled them. */
static int write_output(mf_output *out, mf_store *in, const mf_clean_result *r, const config *c,
                        const char *attr, char *history, mf_output *report)
{
    uint64_t n = r->dropped[MF_RULE_KEEP], k = 0;
    uint8_t *keep = malloc(r->rows ? r->rows : 1);
    int64_t *labels = c->p.apply_merge ? malloc((n ? n : 1) * sizeof *labels) : NULL;
    if (!keep || (c->p.apply_merge && !labels)) {
        free(keep), free(labels);
        mf_output_abort(out);
        mf_output_abort(report);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %llu rows",
                            (unsigned long long)r->rows);
    }
    for (uint64_t i = 0; i < r->rows; i++) {
        keep[i] = r->rule[i] == MF_RULE_KEEP;
        if (keep[i] && labels)
            labels[k++] = r->label[i];
    }
    mf_store_source src = {in, keep};
    mf_store_column relabel = {"label", labels, NULL};
    mf_store_derive_params d = {.columns = labels ? &relabel : NULL,
                                .n_columns = labels ? 1 : 0,
                                .attr_name = "mf_filter",
                                .attr_value = attr,
                                .history = history,
                                .also = report ? &report : NULL,
                                .n_also = report ? 1 : 0};
    int rc = mf_store_derive(out, &src, 1, &d);
    free(keep), free(labels);
    return rc;
}

/* ---- main ---------------------------------------------------------------------------------- */

static int store_has_labels(mf_store *in)
{
    mf_store_cursor *c;
    const mf_store_block *b;
    int found = 0;
    if (mf_store_cursor_open(&c, in, MF_COL_LABEL, 0, mf_store_rows(in)) < 0)
        return 0;
    while (!found && mf_store_cursor_next(c, &b) > 0)
        for (size_t i = 0; i < b->n && !found; i++)
            found = b->label[i] >= 0;
    mf_store_cursor_close(c);
    return found;
}

static void check_usage(const config *c, int argc, int first, char **argv)
{
    if (first >= argc)
        mf_cli_usage_error("no input store");
    if (first + 1 < argc)
        mf_cli_usage_error("unexpected argument '%s'", argv[first + 1]);
    if (!c->output && !c->dry_run)
        mf_cli_usage_error("no output: give -o OUT.h5 (or --dry-run)");
    if (c->p.apply_merge && !(c->p.merge_cos > 0))
        mf_cli_usage_error("--apply-merge needs --merge-labels COS");
    if (mf_cli.json && c->report && strcmp(c->report, "-") == 0)
        mf_cli_usage_error("--json and --report - both write to stdout: choose one");
}

static void quantiles_of(const mf_clean_result *r, int kept_only, double *q)
{
    uint8_t *mask = kept_only ? r->rule : NULL;
    if (mf_clean_quantiles(r->magnitude, mask, (size_t)r->rows, quantile_at, NQ, q) < 0)
        for (size_t i = 0; i < NQ; i++)
            q[i] = NAN;
}

int main(int argc, char **argv)
{
    mf_cli_start_blas(argv);
    config c = {.p = mf_clean_default_params()};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    c.input = first < argc ? argv[first] : NULL;
    check_usage(&c, argc, first, argv);
    double t0 = mf_now();
    mf_store *in = mf_cli_open_store(c.input);
    /* Opened before any work: a name that may not be written is refused at once. */
    mf_output *store_out =
        c.output && !c.dry_run ? mf_cli_open_output(c.output, MF_OUTPUT_SEEKABLE) : NULL;
    mf_output *report_out = c.report ? mf_cli_open_output(c.report, 0) : NULL;
    if (!c.any_rule) {
        c.p.auto_cut = 1;
        c.p.outliers = store_has_labels(in);
        mf_cli_info("no rule given: using --auto%s",
                    c.p.outliers ? " --outliers" : " (no labels, so no --outliers)");
    }
    mf_clean_result r;
    int rc = mf_clean_run(in, &c.p, &r);
    if (rc < 0) {
        mf_output_abort(store_out);
        mf_output_abort(report_out);
        mf_store_close(in);
        return mf_cli_fail(rc);
    }
    double before[NQ], after[NQ];
    quantiles_of(&r, 0, before);
    quantiles_of(&r, 1, after);
    if (report_out) {
        FILE *f = mf_output_stream(report_out);
        rc = f ? mf_clean_write_report(in, &r, f) : MF_ERR_IO;
    }
    cJSON *js = summary_json(&c, &r, before, after, mf_now() - t0);
    char *attr = cJSON_PrintUnformatted(js);
    if (rc == 0 && store_out) {
        char *history = mf_cli_history(cJSON_Duplicate(js, 1));
        rc = write_output(store_out, in, &r, &c, attr, history, report_out);
        free(history);
    } else if (rc == 0 && report_out) {
        rc = mf_output_commit(report_out);
    } else {
        mf_output_abort(store_out);
        mf_output_abort(report_out);
    }
    double secs = mf_now() - t0;
    if (rc == 0) {
        summary_text(&c, &r, before, after, secs);
        if (mf_cli.json) {
            cJSON_ReplaceItemInObject(js, "seconds",
                                      cJSON_CreateNumber(round(secs * 100) / 100));
            char *text = cJSON_PrintUnformatted(js);
            printf("%s\n", text);
            free(text);
        }
    }
    free(attr);
    cJSON_Delete(js);
    mf_clean_result_release(&r);
    mf_store_close(in);
    return rc < 0 ? mf_cli_fail(rc) : mf_cli_finish(MF_EXIT_OK);
}
