/* mf-filter - drop low-quality, mislabelled and duplicate rows from an embedding store
 * (rules and their order: include/mf/clean.h and docs/FILTER.md). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "mf/clean.h"
#include "mf/progress.h"
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
    OPT_JSON,
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
    {"json", 0, NULL, "print the summary as JSON on stdout", OPT_JSON},
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
};

typedef struct config {
    mf_clean_params p;
    const char *input, *output, *report;
    int dry_run, json, any_rule;
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
                   id != OPT_JSON && id != OPT_OUTLIER_K && id != OPT_NO_NEARER &&
                   id != OPT_APPLY_MERGE;
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
    case OPT_JSON: c->json = 1; break;
    default: return 1;
    }
    return 0;
}

/* ---- a growing string for the JSON summary ----------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0)
            return;
        if (b->s && b->n + (size_t)k < b->cap) {
            b->n += (size_t)k;
            return;
        }
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            mf_cli_error("out of memory");
            exit(MF_EXIT_FAILURE);
        }
        b->s = ns, b->cap = nc;
    }
}

/* JSON string contents: escape quotes, backslashes and control characters. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_printf(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            sb_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            sb_printf(b, "\\u%04x", ch);
        else
            sb_printf(b, "%c", ch);
    }
    sb_printf(b, "\"");
}

/* ---- summary ------------------------------------------------------------------------------ */

static const double quantile_at[] = {0, 0.05, 0.25, 0.5, 0.75, 0.95, 1};
#define NQ (sizeof quantile_at / sizeof quantile_at[0])

static void rules_json(sbuf *b, const config *c)
{
    const mf_clean_params *p = &c->p;
    sb_printf(b,
              "{\"min_magnitude\": %g, \"auto\": %s, \"drop_lowest\": %g, "
              "\"drop_lowest_per_label\": %g, \"outliers\": %s, \"min_center_cos\": %g, "
              "\"outlier_k\": %g, \"nearer_identity\": %s, \"dedup\": %g, "
              "\"merge_labels\": %g, \"apply_merge\": %s, \"min_per_label\": %lld}",
              p->min_magnitude, p->auto_cut ? "true" : "false", p->drop_lowest,
              p->drop_lowest_per_label, p->outliers ? "true" : "false", p->min_center_cos,
              p->outliers ? p->outlier_k : 0, p->outliers && p->nearer ? "true" : "false",
              p->dedup_cos, p->merge_cos, p->apply_merge ? "true" : "false",
              (long long)p->min_per_label);
}

static void summary_json(sbuf *b, const config *c, const mf_clean_result *r,
                         const double *before, const double *after, double seconds)
{
    sb_printf(b, "{\"input\": ");
    sb_json_str(b, c->input);
    sb_printf(b, ", \"output\": ");
    if (c->output && !c->dry_run)
        sb_json_str(b, c->output);
    else
        sb_printf(b, "null");
    sb_printf(b, ", \"rules\": ");
    rules_json(b, c);
    sb_printf(b, ", \"rows_in\": %llu, \"rows_out\": %llu, \"dropped\": {",
              (unsigned long long)r->rows, (unsigned long long)r->dropped[MF_RULE_KEEP]);
    for (int k = 1; k < MF_RULE_COUNT; k++)
        sb_printf(b, "%s\"%s\": %llu", k > 1 ? ", " : "", mf_clean_rule_name(k),
                  (unsigned long long)r->dropped[k]);
    sb_printf(b, "}, \"identities_in\": %lld, \"identities_out\": %lld",
              (long long)r->identities_in, (long long)r->identities_out);
    const char *names[NQ] = {"min", "p5", "p25", "median", "p75", "p95", "max"};
    for (int pass = 0; pass < 2; pass++) {
        const double *q = pass ? after : before;
        sb_printf(b, ", \"magnitude_%s\": {", pass ? "after" : "before");
        for (size_t i = 0; i < NQ; i++) {
            if (isfinite(q[i]))
                sb_printf(b, "%s\"%s\": %.4f", i ? ", " : "", names[i], q[i]);
            else
                sb_printf(b, "%s\"%s\": null", i ? ", " : "", names[i]);
        }
        sb_printf(b, "}");
    }
    if (c->p.auto_cut) {
        sb_printf(b, ", \"auto_cut\": %.4f, \"auto_reason\": ", r->auto_cut);
        sb_json_str(b, r->auto_reason);
    }
    if (r->rule2_reason[0]) {
        sb_printf(b, ", \"rule2\": ");
        sb_json_str(b, r->rule2_reason);
    }
    if (c->p.merge_cos > 0) {
        sb_printf(b, ", \"merges\": [");
        for (size_t i = 0; i < r->n_merges; i++)
            sb_printf(b, "%s[%lld, %lld, %.4f]", i ? ", " : "", (long long)r->merges[i].a,
                      (long long)r->merges[i].b, r->merges[i].cos);
        sb_printf(b, "]");
    }
    sb_printf(b,
              ", \"seconds_by_stage\": {\"magnitude+outliers\": %.2f, \"dedup\": %.2f, "
              "\"merge\": %.2f, \"min_per_label\": %.2f}",
              r->seconds[0], r->seconds[1], r->seconds[2], r->seconds[3]);
    sb_printf(b, ", \"seconds\": %.2f}", seconds);
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
    mf_cli_info(
        "%s: %llu rows in, %llu out (%.2f%% dropped); identities %lld in, %lld out; "
        "%.1f s",
        c->input, (unsigned long long)r->rows, (unsigned long long)r->dropped[MF_RULE_KEEP],
        r->rows ? 100.0 * (double)(r->rows - r->dropped[MF_RULE_KEEP]) / (double)r->rows : 0,
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

/* One TSV line per dropped row, with the input's label. Ids are read only for chunks that
 * hold a dropped row. */
static int write_report(mf_store *in, const mf_clean_result *r, const char *path)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    if (!f)
        return mf_set_error(MF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    const size_t chunk = 16384;
    char **ids = malloc(chunk * sizeof *ids);
    int64_t *labels = malloc(chunk * sizeof *labels);
    int rc = ids && labels ? 0 : mf_set_error(MF_ERR_NOMEM, "cannot allocate the report");
    fprintf(f, "id\tlabel\tmagnitude\trule\tfigure\n");
    for (uint64_t s = 0; rc == 0 && s < r->rows; s += chunk) {
        size_t m = r->rows - s < chunk ? (size_t)(r->rows - s) : chunk, any = 0;
        for (size_t i = 0; i < m && !any; i++)
            any = r->rule[s + i] != MF_RULE_KEEP;
        if (!any)
            continue;
        rc = mf_store_read_ids(in, s, m, ids);
        int got_ids = rc == 0;
        if (rc == 0)
            rc = mf_store_read_label(in, s, m, labels);
        for (size_t i = 0; rc == 0 && i < m; i++)
            if (r->rule[s + i] != MF_RULE_KEEP)
                fprintf(f, "%s\t%lld\t%.4f\t%s\t%.4f\n", ids[i], (long long)labels[i],
                        r->magnitude[s + i], mf_clean_rule_name(r->rule[s + i]),
                        r->figure[s + i]);
        if (got_ids)
            mf_store_free_strings(ids, m);
    }
    free(ids), free(labels);
    if (f != stdout && fclose(f) != 0 && rc == 0)
        rc = mf_set_error(MF_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    if (f == stdout && fflush(f) != 0 && rc == 0)
        rc = mf_set_error(MF_ERR_IO, "cannot write the report: %s", strerror(errno));
    return rc;
}

static int write_output(mf_store *in, const mf_clean_result *r, const config *c,
                        const char *attr)
{
    uint64_t n = r->dropped[MF_RULE_KEEP], k = 0;
    uint64_t *rows = malloc((n ? n : 1) * sizeof *rows);
    int64_t *labels = c->p.apply_merge ? malloc((n ? n : 1) * sizeof *labels) : NULL;
    if (!rows || (c->p.apply_merge && !labels)) {
        free(rows), free(labels);
        return mf_set_error(MF_ERR_NOMEM, "cannot list %llu kept rows", (unsigned long long)n);
    }
    for (uint64_t i = 0; i < r->rows; i++)
        if (r->rule[i] == MF_RULE_KEEP) {
            if (labels)
                labels[k] = r->label[i];
            rows[k++] = i;
        }
    mf_store *out = NULL;
    int rc = mf_store_create_like(&out, c->output, in);
    if (rc == 0)
        rc = mf_store_copy_rows(out, in, rows, (size_t)n);
    if (rc == 0 && labels)
        rc = mf_store_write_column_int64(out, "label", labels);
    if (rc == 0)
        rc = mf_store_set_attr(out, "mf_filter", attr);
    if (rc == 0)
        rc = mf_store_commit(out);
    else if (out)
        mf_store_discard(out);
    free(rows), free(labels);
    return rc;
}

/* ---- main ---------------------------------------------------------------------------------- */

static int store_has_labels(mf_store *in)
{
    const size_t chunk = 65536;
    int64_t *l = malloc(chunk * sizeof *l);
    uint64_t n = mf_store_rows(in);
    int found = 0;
    for (uint64_t s = 0; l && !found && s < n; s += chunk) {
        size_t m = n - s < chunk ? (size_t)(n - s) : chunk;
        if (mf_store_read_label(in, s, m, l) < 0)
            break;
        for (size_t i = 0; i < m && !found; i++)
            found = l[i] >= 0;
    }
    free(l);
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
    struct stat a, b;
    if (c->output && !c->dry_run &&
        (strcmp(c->output, c->input) == 0 ||
         (stat(c->output, &a) == 0 && stat(c->input, &b) == 0 && a.st_dev == b.st_dev &&
          a.st_ino == b.st_ino)))
        mf_cli_usage_error("the output '%s' is the input: mf-filter never modifies its input",
                           c->output);
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
    config c = {.p = mf_clean_default_params()};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    c.input = first < argc ? argv[first] : NULL;
    check_usage(&c, argc, first, argv);
    double t0 = mf_now();
    mf_store *in = mf_cli_open_store(c.input);
    if (!c.any_rule) {
        c.p.auto_cut = 1;
        c.p.outliers = store_has_labels(in);
        mf_cli_info("no rule given: using --auto%s",
                    c.p.outliers ? " --outliers" : " (no labels, so no --outliers)");
    }
    mf_clean_result r;
    int rc = mf_clean_run(in, &c.p, &r);
    if (rc < 0) {
        mf_cli_error("%s", mf_last_error());
        mf_store_close(in);
        return mf_cli_finish(rc == MF_ERR_ARG ? MF_EXIT_USAGE : MF_EXIT_FAILURE);
    }
    double before[NQ], after[NQ];
    quantiles_of(&r, 0, before);
    quantiles_of(&r, 1, after);
    if (c.report && (rc = write_report(in, &r, c.report)) < 0)
        mf_cli_error("%s", mf_last_error());
    sbuf js = {0};
    if (rc == 0 && !c.dry_run) {
        summary_json(&js, &c, &r, before, after, mf_now() - t0);
        if ((rc = write_output(in, &r, &c, js.s)) < 0)
            mf_cli_error("%s", mf_last_error());
    }
    double secs = mf_now() - t0;
    if (rc == 0) {
        summary_text(&c, &r, before, after, secs);
        if (c.json) {
            js.n = 0;
            summary_json(&js, &c, &r, before, after, secs);
            printf("%s\n", js.s);
        }
    }
    free(js.s);
    mf_clean_result_release(&r);
    mf_store_close(in);
    return mf_cli_finish(rc < 0 ? MF_EXIT_FAILURE : MF_EXIT_OK);
}
