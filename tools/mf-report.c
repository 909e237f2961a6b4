/* mf-report - one self-contained HTML page showing a store after cleaning: magnitude
 * histogram with the filter's cut, lowest-magnitude faces, dropped rows per rule, the
 * largest clusters and the identities clustering split or merged. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "mf/durable.h"
#include "mf/report.h"
#include "mf/status.h"
#include "mf/store.h"

enum {
    OPT_OUTPUT = 1000,
    OPT_FILTER_REPORT,
    OPT_MAX_FACES,
    OPT_PER_RULE,
    OPT_TOP,
    OPT_ROOT,
    OPT_BEFORE,
    OPT_QUALITY_ROWS
};

static const mf_cli_opt options[] = {
    {"output", 'o', "FILE", "write the page to FILE (required)", OPT_OUTPUT},
    {"filter-report", 0, "TSV", "mf-filter --report output: sample dropped rows per rule",
     OPT_FILTER_REPORT},
    {"max-faces", 0, "N", "lowest-magnitude faces shown (default 48)", OPT_MAX_FACES},
    {"per-rule", 0, "N", "dropped rows shown per rule (default 12)", OPT_PER_RULE},
    {"top", 0, "N", "clusters / split / merged identities shown (default 6)", OPT_TOP},
    {"root", 0, "DIR", "resolve relative ids against DIR", OPT_ROOT},
    {"before", 0, "STORE",
     "the store before filtering, for the histogram (default: the "
     "histogram mf-filter recorded)",
     OPT_BEFORE},
    {"quality-rows", 0, "N",
     "rows the error-versus-reject curve uses at most (default "
     "50000, whole identities sampled beyond; 0 = no curve)",
     OPT_QUALITY_ROWS},
    {0},
};

static const mf_cli_tool tool = {
    "mf-report",
    "-o report.html [options] <store.h5>",
    "Write one self-contained HTML page (inline SVG and images, no network, no JavaScript)\n"
    "that shows what cleaning did to a store.",
    "Sections: summary, magnitude histogram (with the cut recorded by mf-filter), the\n"
    "lowest-magnitude faces, a sample of the rows each filter rule dropped (with\n"
    "--filter-report), the largest clusters and the identities that mf-cluster split or\n"
    "merged relative to the labels (when the store has /cluster and labels).\n"
    "Thumbnails are the original image bytes, read again through the ids; an image that\n"
    "cannot be read is shown as missing, reported, and the exit status is 3.\n"
    "\n"
    "Example:\n"
    "  mf-report --filter-report dropped.tsv -o report.html clustered.h5",
    options,
    MF_CLI_WRITES};

typedef struct config {
    mf_report_params p;
    const char *output;
} config;

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    switch (id) {
    case OPT_OUTPUT: c->output = arg; break;
    case OPT_FILTER_REPORT: c->p.filter_report = arg; break;
    case OPT_MAX_FACES:
        c->p.max_faces = (int)mf_cli_parse_int("--max-faces", arg, 0, 10000);
        break;
    case OPT_PER_RULE: c->p.per_rule = (int)mf_cli_parse_int("--per-rule", arg, 0, 1000); break;
    case OPT_TOP: c->p.top_groups = (int)mf_cli_parse_int("--top", arg, 0, 1000); break;
    case OPT_ROOT: c->p.root = arg; break;
    case OPT_BEFORE: c->p.before = arg; break;
    case OPT_QUALITY_ROWS:
        c->p.erc_rows = (size_t)mf_cli_parse_int("--quality-rows", arg, 0, 1LL << 32);
        break;
    }
    return 0;
}

int main(int argc, char **argv)
{
    config c = {.p = mf_report_default_params()};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (!c.output)
        mf_cli_usage_error("-o/--output is required");
    if (argc - first != 1)
        mf_cli_usage_error("expected one store, got %d", argc - first);
    c.p.overwrite = mf_cli.overwrite;
    mf_store *s = mf_cli_open_store(argv[first]);
    if (c.p.filter_report)
        mf_run_add_input(c.p.filter_report);
    if (c.p.before)
        mf_run_add_input(c.p.before);
    mf_report_stats st;
    int rc = mf_report_write(s, c.output, &c.p, &st);
    mf_store_close(s);
    if (rc < 0)
        return mf_cli_fail(rc);
    mf_cli_info("wrote '%s': %zu thumbnails%s", c.output, st.thumbnails,
                st.has_cut ? ", with the filter's magnitude cut" : "");
    cJSON *js = cJSON_CreateObject();
    cJSON_AddStringToObject(js, "output", c.output);
    cJSON_AddNumberToObject(js, "thumbnails", (double)st.thumbnails);
    cJSON_AddNumberToObject(js, "missing", (double)st.missing);
    if (st.has_cut)
        cJSON_AddNumberToObject(js, "magnitude_cut", st.cut);
    mf_cli_summary(js);
    if (st.missing)
        mf_cli_warn("%zu images missing or unreadable (listed above), shown as missing",
                    st.missing);
    return mf_cli_finish(st.missing ? MF_EXIT_PARTIAL : MF_EXIT_OK);
}
