/* cli.c - shared command-line handling for the mf-* tools (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <time.h>

#include "mf/durable.h"
#include "mf/log.h"
#include "mf/progress.h"
#include "mf/source.h"
#include "mf/status.h"
#include "mf/store.h"

#ifndef MF_VERSION_STRING
#define MF_VERSION_STRING "0.0.0"
#endif

enum {
    OPT_HELP = -100,
    OPT_VERSION,
    OPT_THREADS,
    OPT_QUIET,
    OPT_VERBOSE,
    OPT_PROGRESS,
    OPT_OVERWRITE,
    OPT_JSON,
    OPT_PROGRESS_EVERY
};

static const mf_cli_opt common_opts[] = {
    {"threads", 'j', "N", "use N threads (default: all cores)", OPT_THREADS},
    {"quiet", 'q', NULL, "print errors only", OPT_QUIET},
    {"verbose", 0, NULL, "also print debugging detail (stage timings, choices made)",
     OPT_VERBOSE},
    {"progress", 0, NULL, "show the progress bar even when stderr is not a terminal",
     OPT_PROGRESS},
    {"progress-every", 0, "SEC",
     "when stderr is not a terminal (a batch log), a progress line every SEC seconds "
     "(default: 60 in a SLURM job, else none; 0 = none)",
     OPT_PROGRESS_EVERY},
    {"json", 0, NULL, "print the summary as one JSON object on stdout", OPT_JSON},
    {"help", 'h', NULL, "show this help and exit", OPT_HELP},
    {"version", 0, NULL, "show the version and exit", OPT_VERSION},
    {0},
};

/* Common to the tools that write outputs (MF_CLI_WRITES). */
static const mf_cli_opt writer_opts[] = {
    {"overwrite", 0, NULL,
     "replace outputs that exist (never an input: that is refused whatever the options)",
     OPT_OVERWRITE},
    {0},
};

/* The option sets a tool takes: its own, the common ones, the writers' ones. */
static void option_sets(const mf_cli_tool *t, const mf_cli_opt *sets[3])
{
    sets[0] = t->opts;
    sets[1] = common_opts;
    sets[2] = t->flags & MF_CLI_WRITES ? writer_opts : NULL;
}

mf_cli_common mf_cli;
static const char *tool_name = "mfkit";
static int saved_argc;
static char **saved_argv;

const char *mf_cli_name(void) { return tool_name; }

static void vmessage(const char *kind, const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (kind)
        fprintf(stderr, "%s: %s: %s\n", tool_name, kind, msg);
    else
        fprintf(stderr, "%s: %s\n", tool_name, msg);
}

void mf_cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage("error", fmt, ap);
    va_end(ap);
}

void mf_cli_warn(const char *fmt, ...)
{
    if (mf_cli.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vmessage("warning", fmt, ap);
    va_end(ap);
}

void mf_cli_info(const char *fmt, ...)
{
    if (mf_cli.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vmessage(NULL, fmt, ap);
    va_end(ap);
}

void mf_cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmessage("error", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", tool_name);
    exit(MF_EXIT_USAGE);
}

static void print_opt(const mf_cli_opt *o)
{
    char left[64];
    int n = o->short_name
                ? snprintf(left, sizeof left, "  -%c, --%s", o->short_name, o->long_name)
                : snprintf(left, sizeof left, "      --%s", o->long_name);
    if (o->arg_name && n > 0 && (size_t)n < sizeof left)
        snprintf(left + n, sizeof left - (size_t)n, " %s", o->arg_name);
    if (strlen(left) > 28)
        printf("%s\n%30s%s\n", left, "", o->help);
    else
        printf("%-30s%s\n", left, o->help);
}

static void print_help(const mf_cli_tool *t)
{
    printf("Usage: %s %s\n\n%s\n\nOptions:\n", t->name, t->usage, t->summary);
    for (const mf_cli_opt *o = t->opts; o && o->long_name; o++)
        print_opt(o);
    printf("\nCommon options:\n");
    const mf_cli_opt *sets[3];
    option_sets(t, sets);
    for (int k = 1; k < 3; k++)
        for (const mf_cli_opt *o = sets[k]; o && o->long_name; o++)
            print_opt(o);
    if (t->description)
        printf("\n%s\n", t->description);
    printf("\nExit status: 0 success, 1 failure, 2 usage error, 3 finished with skipped "
           "inputs.\n");
}

static size_t count_opts(const mf_cli_opt *o)
{
    size_t n = 0;
    while (o && o[n].long_name)
        n++;
    return n;
}

/* Build getopt_long's tables from the tool's options followed by the common ones. */
static void build_tables(const mf_cli_tool *t, const mf_cli_opt **all, struct option *lo,
                         char *so)
{
    size_t n = 0, s = 0;
    so[s++] = ':'; /* report a missing value as ':' rather than '?' */
    const mf_cli_opt *sets[3];
    option_sets(t, sets);
    for (int pass = 0; pass < 3; pass++) {
        const mf_cli_opt *src = sets[pass];
        for (size_t i = 0; src && src[i].long_name; i++, n++) {
            all[n] = &src[i];
            lo[n].name = src[i].long_name;
            lo[n].has_arg = src[i].arg_name ? required_argument : no_argument;
            lo[n].flag = NULL;
            lo[n].val = 256 + (int)n; /* index into `all` */
            if (src[i].short_name) {
                so[s++] = src[i].short_name;
                if (src[i].arg_name)
                    so[s++] = ':';
            }
        }
    }
    memset(&lo[n], 0, sizeof lo[n]);
    so[s] = '\0';
}

static const mf_cli_opt *find_short(const mf_cli_opt **all, size_t n, int c)
{
    for (size_t i = 0; i < n; i++)
        if (all[i]->short_name == c)
            return all[i];
    return NULL;
}

extern char *openblas_get_corename(void);

void mf_cli_start_blas(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE") || strcmp(openblas_get_corename(), "Prescott") != 0)
        return;
    const char *core = NULL;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        core = "Haswell";
    if (!core)
        return;
    setenv("OPENBLAS_CORETYPE", core, 1);
    execv("/proc/self/exe", argv); /* on failure, carry on with the slow kernels */
}

int mf_cli_parse(const mf_cli_tool *t, int argc, char **argv, mf_cli_on_option cb, void *ctx)
{
    tool_name = t->name;
    saved_argc = argc;
    saved_argv = argv;
    atexit(mf_output_abort_all); /* an exit after a failure leaves no temporary */
    mf_log_set_program(t->name);
    mf_log_set_level(MF_LOG_INFO); /* libcore's notes, like the tools' own, unless -q */
    if (getenv("SLURM_JOB_ID"))    /* a batch log: a progress line a minute */
        mf_progress_set_log_interval(60);
    /* Fixed-size tables: parsing may exit (--help, usage errors), and nothing
     * allocated here must outlive that. */
    enum { MAX_OPTS = 128 };
    static const mf_cli_opt *all[MAX_OPTS + 1];
    static struct option lo[MAX_OPTS + 1];
    static char so[2 * MAX_OPTS + 3];
    size_t n = count_opts(t->opts) + count_opts(common_opts) + count_opts(writer_opts);
    if (n > MAX_OPTS) {
        mf_cli_error("internal error: too many options");
        exit(MF_EXIT_FAILURE);
    }
    build_tables(t, all, lo, so);
    opterr = 0;
    int c, longidx;
    while ((c = getopt_long(argc, argv, so, lo, &longidx)) != -1) {
        const mf_cli_opt *o = NULL;
        if (c == '?') {
            if (optopt && optopt < 256)
                mf_cli_usage_error("unknown option '-%c'", optopt);
            mf_cli_usage_error("unknown option '%s'", argv[optind - 1]);
        }
        if (c == ':')
            mf_cli_usage_error("option '%s' needs a value", argv[optind - 1]);
        o = c >= 256 ? all[c - 256] : find_short(all, n, c);
        if (!o)
            mf_cli_usage_error("unknown option '%s'", argv[optind - 1]);
        switch (o->id) {
        case OPT_HELP: print_help(t); exit(mf_cli_finish(MF_EXIT_OK));
        case OPT_VERSION:
            printf("%s (mfkit) %s\n", t->name, MF_VERSION_STRING);
            exit(mf_cli_finish(MF_EXIT_OK));
        case OPT_THREADS:
            mf_cli.threads = (int)mf_cli_parse_int("--threads", optarg, 0, 1024);
            break;
        case OPT_QUIET:
            mf_cli.quiet = 1;
            mf_log_set_level(MF_LOG_ERROR);
            break;
        case OPT_VERBOSE: mf_log_set_level(MF_LOG_DEBUG); break;
        case OPT_PROGRESS: mf_cli.progress = 1; break;
        case OPT_OVERWRITE: mf_cli.overwrite = 1; break;
        case OPT_JSON: mf_cli.json = 1; break;
        case OPT_PROGRESS_EVERY:
            mf_progress_set_log_interval(
                mf_cli_parse_double("--progress-every", optarg, 0, 86400));
            break;
        default:
            if (cb && cb(o->id, optarg, ctx) != 0)
                mf_cli_usage_error("invalid value for --%s: '%s'", o->long_name,
                                   optarg ? optarg : "");
        }
    }
    if (mf_cli.threads > 0)
        omp_set_num_threads(mf_cli.threads);
    return optind;
}

long long mf_cli_parse_int(const char *opt, const char *s, long long min, long long max)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        mf_cli_usage_error("%s expects an integer in [%lld, %lld], got '%s'", opt, min, max, s);
    return v;
}

double mf_cli_parse_double(const char *opt, const char *s, double min, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < min || v > max)
        mf_cli_usage_error("%s expects a number in [%g, %g], got '%s'", opt, min, max, s);
    return v;
}

int mf_cli_finish(int code)
{
    if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0) {
        if (errno != EPIPE)
            mf_cli_error("cannot write to standard output: %s", strerror(errno));
        return code ? code : MF_EXIT_FAILURE;
    }
    return code;
}

mf_store *mf_cli_open_store(const char *path)
{
    mf_store *s;
    int rc = mf_store_open(&s, path);
    if (rc == 0)
        rc = mf_run_add_input(path);
    if (rc < 0) {
        mf_cli_error("%s", mf_last_error());
        exit(mf_cli_finish(MF_EXIT_FAILURE));
    }
    return s;
}

mf_output *mf_cli_open_output(const char *path, unsigned flags)
{
    mf_output *o;
    int rc = mf_output_open(&o, path, flags | (mf_cli.overwrite ? MF_OUTPUT_OVERWRITE : 0));
    if (rc < 0)
        exit(mf_cli_fail(rc));
    return o;
}

void mf_cli_add_inputs(int argc, char **argv, int first)
{
    for (int i = first; i < argc; i++)
        if (mf_run_add_input(argv[i]) < 0) {
            mf_cli_error("%s", mf_last_error());
            exit(mf_cli_finish(MF_EXIT_FAILURE));
        }
}

int mf_cli_exit_for(int rc)
{
    return rc == MF_ERR_ARG || rc == MF_ERR_EXISTS ? MF_EXIT_USAGE : MF_EXIT_FAILURE;
}

int mf_cli_fail(int rc)
{
    mf_cli_error("%s", mf_last_error());
    return mf_cli_finish(mf_cli_exit_for(rc));
}

void mf_cli_print_record(const cJSON *o, int json)
{
    if (json) {
        char *text = cJSON_PrintUnformatted(o);
        if (text)
            printf("%s\n", text);
        free(text);
        return;
    }
    for (const cJSON *f = o->child; f; f = f->next)
        printf("%s%s", f->string, f->next ? "\t" : "\n");
    for (const cJSON *f = o->child; f; f = f->next) {
        double v = cJSON_GetNumberValue(f);
        if (cJSON_IsString(f))
            printf("%s", f->valuestring);
        else if (v == floor(v) && fabs(v) < 1e15)
            printf("%.0f", v);
        else
            printf("%.6f", v);
        printf("%s", f->next ? "\t" : "\n");
    }
}

void mf_cli_summary(cJSON *o)
{
    if (mf_cli.json && o)
        mf_cli_print_record(o, 1);
    cJSON_Delete(o);
}

char *mf_cli_history(cJSON *details)
{
    cJSON *o = cJSON_CreateObject();
    char when[32];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    cJSON_AddStringToObject(o, "tool", tool_name);
    cJSON_AddStringToObject(o, "version", MF_VERSION_STRING);
    cJSON_AddStringToObject(o, "time", when);
    cJSON *args = cJSON_AddArrayToObject(o, "args");
    for (int i = 1; i < saved_argc; i++)
        cJSON_AddItemToArray(args, cJSON_CreateString(saved_argv[i]));
    if (details) /* move its members over */
        while (details->child) {
            cJSON *item = cJSON_DetachItemViaPointer(details, details->child);
            cJSON_AddItemToObject(o, item->string, item);
        }
    cJSON_Delete(details);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

void mf_cli_shard(const char *spec, int *k, int *n)
{
    *k = 0;
    *n = 1;
    if (spec) {
        if (mf_shard_parse(spec, k, n) < 0)
            mf_cli_usage_error("--shard expects K/N with 0 <= K < N, got '%s'", spec);
        return;
    }
    int rc = mf_shard_from_slurm(k, n, (const char *(*)(const char *))getenv);
    if (rc < 0)
        mf_cli_usage_error("%s", mf_last_error());
    if (rc == 1)
        mf_cli_info("SLURM array task: shard %d of %d", *k, *n);
}
