/* cli.h - what every mf-* tool shares: one option table per tool that drives both
 * parsing and --help, the common options, exit codes and message format.
 *
 *     static const mf_cli_opt opts[] = {
 *         {"output", 'o', "FILE", "write the result to FILE", OPT_OUTPUT},
 *         {"json", 0, NULL, "print JSON instead of text", OPT_JSON},
 *         {0}};
 *     static const mf_cli_tool tool = {"mf-inspect", "[options] <store>",
 *         "Summarise an embedding store.", NULL, opts};
 *     int first = mf_cli_parse(&tool, argc, argv, on_option, &cfg);
 *
 * Common options handled here for every tool: -h/--help (usage on stdout, exit 0),
 * --version, -j/--threads N, -q/--quiet, --verbose, --progress, --progress-every SEC
 * (progress as a line every SEC seconds when stderr is not a terminal; 60 by default in
 * a SLURM job), --json (the tool's
 * summary as one JSON object on stdout: see mf_cli_summary); and --overwrite for the
 * tools that write outputs (MF_CLI_WRITES). A short flag means the same in every tool. Messages go to stderr as
 * "mf-tool: error: ...". Exit codes follow DESIGN.md. */
#ifndef MF_CLI_H
#define MF_CLI_H

#include <stdint.h>

enum {
    MF_EXIT_OK = 0,      /* success */
    MF_EXIT_FAILURE = 1, /* I/O error, bad data */
    MF_EXIT_USAGE = 2,   /* bad command line */
    MF_EXIT_PARTIAL = 3, /* finished, but some inputs were skipped (each recorded) */
};

typedef struct mf_cli_opt {
    const char *long_name; /* without the dashes */
    char short_name;       /* 0 if none */
    const char *arg_name;  /* NULL for a flag, else shown in --help ("FILE") */
    const char *help;      /* one line */
    int id;                /* passed to the callback; any value >= 1000 is fine */
} mf_cli_opt;

enum {
    MF_CLI_WRITES = 1u << 0, /* the tool writes outputs: it takes --overwrite */
};

typedef struct mf_cli_tool {
    const char *name;        /* "mf-inspect" */
    const char *usage;       /* "[options] <store>" */
    const char *summary;     /* one sentence */
    const char *description; /* paragraphs after the options (examples, notes) or NULL */
    const mf_cli_opt *opts;  /* terminated by an all-zero entry */
    unsigned flags;          /* MF_CLI_WRITES */
} mf_cli_tool;

/* Options every tool accepts, filled in by mf_cli_parse. */
typedef struct mf_cli_common {
    int threads;   /* -j; 0 = all cores */
    int quiet;     /* -q */
    int progress;  /* --progress: show the bar even when stderr is not a terminal */
    int overwrite; /* --overwrite (tools that write): replace outputs that exist */
    int json;      /* --json: the summary as one JSON object on stdout */
} mf_cli_common;

extern mf_cli_common mf_cli;

/* Start-up step for tools that use BLAS (FAISS, sgemm): Debian's OpenBLAS does not
 * recognise some virtual CPUs and falls back to its slowest kernels; the kernel set is
 * chosen when the library loads, so this re-executes the tool once with
 * OPENBLAS_CORETYPE set to what the CPU runs (never when the variable is already set).
 * Call first thing in main. */
void mf_cli_start_blas(char **argv);

/* Return 0 to accept, nonzero to reject the option (the callback has printed why via
 * mf_cli_usage_error, or mf_cli_parse prints a generic message). */
typedef int (*mf_cli_on_option)(int id, const char *arg, void *ctx);

/* Parse argv; returns the index of the first operand. Exits 0 after --help/--version,
 * exits 2 on an unknown option, a missing argument or a rejected value. Also sets the
 * log program name and applies -j to OpenMP. */
int mf_cli_parse(const mf_cli_tool *tool, int argc, char **argv, mf_cli_on_option cb,
                 void *ctx);

/* Print "<tool>: error: <msg>" (and for usage errors a hint to --help). */
void mf_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void mf_cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Informational line on stderr unless -q. */
void mf_cli_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print a usage error and exit 2. */
void mf_cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Strict number parsing for option values: the whole string must be a number within
 * [min, max], else a usage error naming the option (exit 2). */
long long mf_cli_parse_int(const char *opt, const char *s, long long min, long long max);
double mf_cli_parse_double(const char *opt, const char *s, double min, double max);

/* Close stdout and report a write error (full disk, closed pipe): returns the exit code
 * to use (the given one, or MF_EXIT_FAILURE if stdout failed). Call last in main. */
int mf_cli_finish(int code);

/* Open a store for reading (and record it as an input of the run, so no output may
 * replace it), or print its one-line error and exit 1. */
struct mf_store;
struct mf_store *mf_cli_open_store(const char *path);

/* Open an output (mf/durable.h; MF_OUTPUT_OVERWRITE added with --overwrite), or print
 * why not and exit (2 for an existing output or one that is an input, else 1). Outputs
 * not committed when the tool exits are removed (resumable ones kept). */
struct mf_output;
struct mf_output *mf_cli_open_output(const char *path, unsigned flags);

/* Record argv[first..argc) as inputs of the run (see mf/durable.h). */
void mf_cli_add_inputs(int argc, char **argv, int first);

/* Exit status for a failed libcore call: 2 for what the user must change on the command
 * line (an existing output, an output that is an input, a bad value), 1 otherwise. */
int mf_cli_exit_for(int rc);

/* Print the last error and return mf_cli_finish(mf_cli_exit_for(rc)). */
int mf_cli_fail(int rc);

/* Print a flat JSON object (numbers and strings) on stdout: one JSON line with json,
 * else a TSV header line of its keys and one line of its values (integers as such,
 * other numbers with 6 decimals). */
struct cJSON;
void mf_cli_print_record(const struct cJSON *o, int json);

/* The end-of-run summary: with --json, the object as one line on stdout; else nothing
 * (the tool prints its text lines itself). Takes over o. */
void mf_cli_summary(struct cJSON *o);

/* This run's history entry for a derived store (a JSON object as text, malloc'ed): the
 * tool, mfkit's version, the command line, the UTC time, plus the members of `details`
 * (a cJSON object; the tool's counts and decisions), which it takes over. */
struct cJSON;
char *mf_cli_history(struct cJSON *details);

/* Which shard this run is: --shard's "K/N" when given (spec non-NULL), else SLURM's
 * array variables (DESIGN.md), else 0/1. A bad spec or inconsistent variables are a
 * usage error (exit 2). */
void mf_cli_shard(const char *spec, int *k, int *n);

/* Name of the running tool (for messages). */
const char *mf_cli_name(void);

#endif
