/* mf-embed - embed face images with a MagFace network into a store.
 *
 * Reads images, directories, list files, archives (tar/zip/WebDataset) and RecordIO;
 * decodes on one thread while the network runs on the others; writes rows in batches,
 * flushing after each, so a killed run resumes where it stopped when the same command
 * is run again. Bad inputs are recorded in /failed and never stop the run. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "mf/durable.h"
#include "mf/embed.h"
#include "mf/export.h"
#include "mf/idset.h"
#include "mf/log.h"
#include "mf/model.h"
#include "mf/progress.h"
#include "mf/source.h"
#include "mf/status.h"
#include "mf/store.h"

enum {
    OPT_MODEL = 1000,
    OPT_OUTPUT,
    OPT_LIST,
    OPT_LABEL_FROM_DIR,
    OPT_RESIZE,
    OPT_SHARD,
    OPT_BATCH,
    OPT_FEAT_LIST,
    OPT_ARCH,
    OPT_MAX_MP,
    OPT_PRECISION,
    OPT_ROOT,
    OPT_NULL,
};

#define MAX_LISTS 64

typedef struct config {
    const char *model, *output, *feat_list, *arch, *shard, *root;
    const char *lists[MAX_LISTS];
    int n_lists;
    int label_from_dir, resize, batch, null_lists;
    double max_megapixels;
    mf_precision precision;
} config;

static const mf_cli_opt options[] = {
    {"model", 'm', "FILE",
     "MagFace model: an official .pth checkpoint or an mf-convert file "
     "(default: $MF_MODEL)",
     OPT_MODEL},
    {"output", 'o', "FILE", "the store to write (required)", OPT_OUTPUT},
    {"list", 'l', "FILE",
     "read inputs from FILE ('-' = stdin): `path [label] [x1 y1 .. x5 "
     "y5]` per line; repeatable",
     OPT_LIST},
    {"label-from-dir", 0, NULL,
     "label = the image's parent folder (ids 0..K-1 in sorted "
     "order; names kept in /labels/name)",
     OPT_LABEL_FROM_DIR},
    {"resize", 0, NULL,
     "resize images that are not 112x112 and have no landmarks (default: "
     "record them as failed)",
     OPT_RESIZE},
    {"shard", 0, "K/N", "embed shard K (0-based) of N; default: from SLURM array variables",
     OPT_SHARD},
    {"batch", 'b', "N", "images per network call (default 16)", OPT_BATCH},
    {"feat-list", 0, "FILE", "also write the features in the official MagFace text format",
     OPT_FEAT_LIST},
    {"arch", 0, "NAME", "check that the model is this architecture (e.g. iresnet100)",
     OPT_ARCH},
    {"max-megapixels", 0, "MP", "refuse images larger than this (default 50)", OPT_MAX_MP},
    {"precision", 0, "P",
     "fp32 (default: the reference numbers), bf16, or int8 (needs a model calibrated "
     "with mf-convert --calibrate); recorded in the store",
     OPT_PRECISION},
    {"root", 0, "DIR",
     "resolve relative list entries against DIR ('.' = as written, like MagFace's "
     "gen_feat.py; default: the list file's folder)",
     OPT_ROOT},
    {"null", '0', NULL, "list files are NUL-separated paths (find -print0)", OPT_NULL},
    {0},
};

static const mf_cli_tool tool = {
    "mf-embed",
    "-m <model> -o <out.h5> [options] <input>...",
    "Embed aligned 112x112 face images with a MagFace network (CPU) into a store.\n"
    "Inputs, mixed freely: image files (JPEG, PNG), directories (walked recursively in\n"
    "sorted order), archives (tar, tar.gz/.zst/.xz, zip; WebDataset shards with .cls\n"
    "labels) read as streams, insightface RecordIO (train.rec with train.idx beside it),\n"
    "and list files (--list). Images must be aligned 112x112 crops, as MagFace expects;\n"
    "give 5 landmarks per line in a list to align larger images, or --resize.",
    "Resuming: rows are flushed after every batch to OUT.partial. If the run is killed,\n"
    "run the same command again: it continues after the last flushed batch. OUT appears\n"
    "only when the run is complete.\n\n"
    "Examples:\n"
    "  mf-embed -m magface_epoch_00025.pth -o faces.h5 --label-from-dir faces/\n"
    "  mf-embed -m r100.mfm -o part.h5 --shard 3/16 train.rec\n"
    "  find imgs -name '*.jpg' | mf-embed -m r100.mfm -o out.h5 --list -",
    options,
    MF_CLI_WRITES};

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    switch (id) {
    case OPT_MODEL: c->model = arg; break;
    case OPT_OUTPUT: c->output = arg; break;
    case OPT_LIST:
        if (c->n_lists == MAX_LISTS)
            mf_cli_usage_error("at most %d --list options", MAX_LISTS);
        c->lists[c->n_lists++] = arg;
        break;
    case OPT_LABEL_FROM_DIR: c->label_from_dir = 1; break;
    case OPT_RESIZE: c->resize = 1; break;
    case OPT_SHARD: c->shard = arg; break;
    case OPT_BATCH:
        c->batch = (int)mf_cli_parse_int("--batch", arg, 1, MF_EMBED_MAX_BATCH);
        break;
    case OPT_FEAT_LIST: c->feat_list = arg; break;
    case OPT_ARCH: c->arch = arg; break;
    case OPT_ROOT: c->root = arg; break;
    case OPT_NULL: c->null_lists = 1; break;
    case OPT_MAX_MP:
        c->max_megapixels = mf_cli_parse_double("--max-megapixels", arg, 0.01, 1e4);
        break;
    case OPT_PRECISION:
        if (mf_precision_parse(arg, &c->precision) < 0)
            mf_cli_usage_error("--precision: %s", mf_last_error());
        break;
    }
    return 0;
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

/* ---- the job: what a resumed run must agree with ------------------------------------ */

/* A canonical description of the command's inputs and settings, stored in the output;
 * resuming with anything else would mix two different jobs in one store. */
static char *job_description(const config *c, char **inputs, int n, const mf_model *m,
                             int shard_k, int shard_n)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model_sha256", mf_model_sha256(m));
    cJSON *in = cJSON_AddArrayToObject(o, "inputs");
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(in, cJSON_CreateString(inputs[i]));
    cJSON *lists = cJSON_AddArrayToObject(o, "lists");
    for (int i = 0; i < c->n_lists; i++)
        cJSON_AddItemToArray(lists, cJSON_CreateString(c->lists[i]));
    cJSON_AddBoolToObject(o, "label_from_dir", c->label_from_dir);
    if (c->precision != MF_PRECISION_FP32) /* absent = fp32, as jobs of older versions */
        cJSON_AddStringToObject(o, "precision", mf_precision_name(c->precision));
    if (c->precision == MF_PRECISION_INT8)
        cJSON_AddStringToObject(o, "int8_calibration", mf_model_calibration_id(m));
    cJSON_AddBoolToObject(o, "resize", c->resize);
    if (c->root) /* only when given: jobs started before --root existed still resume */
        cJSON_AddStringToObject(o, "root", c->root);
    if (c->null_lists)
        cJSON_AddBoolToObject(o, "null_lists", 1);
    char shard[64];
    snprintf(shard, sizeof shard, "%d/%d", shard_k, shard_n);
    cJSON_AddStringToObject(o, "shard", shard);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* Open the output: resume an unfinished run of the same job, or start a new one. */
static int open_output(const config *c, const mf_model *m, const char *job, mf_store **out,
                       mf_idset *seen, mf_store_job_state *state)
{
    mf_store_params p = mf_store_default_params();
    p.dim = mf_model_dim(m);
    p.model = mf_model_name(m);
    p.model_sha256 = mf_model_sha256(m);
    p.preprocess = mf_model_preprocess(m);
    /* the numeric path: stores of different precisions (or int8 calibrations) hold
     * different embeddings and must not be merged (a resumed job has the same, as its
     * job description includes them) */
    p.precision = mf_precision_name(c->precision);
    if (c->precision == MF_PRECISION_INT8)
        p.int8_calibration = mf_model_calibration_id(m);
    p.overwrite = mf_cli.overwrite; /* also: discard an unfinished run of another job */
    p.job = job;
    int rc = mf_store_open_or_resume(out, c->output, &p, state);
    if (rc == 0 && *state == MF_STORE_JOB_RESUMED)
        rc = mf_store_collect_ids(*out, seen);
    return rc;
}

/* ---- the sink: rows and failures into the store -------------------------------------- */

typedef struct job {
    mf_store *out;
    mf_runner *runner;
    mf_progress *progress;
    uint64_t failed;
} job;

static int forward(void *ctx, int n, const uint8_t *faces, float *feat, float *mag)
{
    job *j = ctx;
    return mf_runner_forward(j->runner, n, MF_FACE_SIZE, MF_FACE_SIZE, faces, feat, mag);
}

/* int8's faces off the calibrated ranges: the pipeline gathers them across batches. */
static int rerun_wanted(void *ctx, int i) { return mf_runner_rerun_wanted(((job *)ctx)->runner, i); }

static int rerun(void *ctx, int n, const uint8_t *faces, float *feat, float *mag)
{
    return mf_runner_rerun(((job *)ctx)->runner, n, faces, feat, mag);
}

static int sink_rows(void *ctx, size_t n, const float *feat, const float *mag,
                     const char *const *ids, const int64_t *labels)
{
    job *j = ctx;
    mf_progress_add(j->progress, n);
    return mf_store_append(j->out, n, feat, mag, ids, labels);
}

static int sink_failed(void *ctx, const char *id, const char *reason)
{
    job *j = ctx;
    mf_cli_warn("'%s': %s", id, reason);
    mf_progress_add(j->progress, 1);
    j->failed++;
    char note[64];
    snprintf(note, sizeof note, "%llu failed", (unsigned long long)j->failed);
    mf_progress_set_note(j->progress, note);
    return mf_store_add_failed(j->out, id, reason);
}

static int sink_batch_done(void *ctx)
{
    job *j = ctx;
    return mf_store_flush(j->out);
}

/* ---- outputs after the run ----------------------------------------------------------- */

static int save_label_names(mf_store *out, const mf_source *src)
{
    size_t n = mf_source_label_count(src);
    if (n == 0 || mf_store_label_name_count(out) == n)
        return 0;
    const char **names = malloc(n * sizeof *names);
    if (!names)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        names[i] = mf_source_label_name(src, i);
    int rc = mf_store_write_label_names(out, names, n);
    free(names);
    return rc;
}

/* The official MagFace feature text of `s`, into an output opened at start-up. */
static int write_feat_list(mf_output *o, mf_store *s)
{
    FILE *f = mf_output_stream(o);
    uint64_t written, skipped;
    int rc = f ? mf_export_feature_text(s, f, NULL, &written, &skipped) : MF_ERR_IO;
    if (rc == 0 && skipped)
        mf_cli_warn("%llu ids with blanks or line breaks are not in '%s' (the format cannot "
                    "hold them)",
                    (unsigned long long)skipped, mf_output_path(o));
    return rc;
}

static int record_history(mf_store *out, const mf_embed_stats *st, int shard_k, int shard_n)
{
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "rows", (double)mf_store_rows(out));
    cJSON_AddNumberToObject(d, "failed", (double)mf_store_failed_count(out));
    cJSON_AddNumberToObject(d, "embedded_this_run", (double)st->embedded);
    char shard[32];
    snprintf(shard, sizeof shard, "%d/%d", shard_k, shard_n);
    cJSON_AddStringToObject(d, "shard", shard);
    char *entry = mf_cli_history(d);
    int rc =
        entry ? mf_store_add_history(out, entry) : mf_set_error(MF_ERR_NOMEM, "out of memory");
    free(entry);
    return rc;
}

/* The job was already complete: write only the feature text asked for, from the store. */
static int finish_complete(const config *c, mf_output *feat)
{
    mf_cli_info("'%s' already holds this job, complete: nothing to embed", c->output);
    cJSON *js = cJSON_CreateObject();
    cJSON_AddStringToObject(js, "output", c->output);
    cJSON_AddBoolToObject(js, "already_complete", 1);
    mf_cli_summary(js);
    if (!feat)
        return 0;
    mf_store *s;
    int rc = mf_store_open(&s, c->output);
    if (rc == 0)
        rc = write_feat_list(feat, s);
    mf_store_close(s);
    if (rc == 0)
        return mf_output_commit(feat);
    mf_output_abort(feat);
    return rc;
}

/* ---- main ---------------------------------------------------------------------------- */

static int add_inputs(mf_source *src, const config *c, char **inputs, int n)
{
    for (int i = 0; i < n; i++)
        if (mf_source_add(src, inputs[i], MF_INPUT_AUTO) < 0)
            return MF_ERR_ARG;
    for (int i = 0; i < c->n_lists; i++)
        if (mf_source_add(src, c->lists[i], MF_INPUT_LIST) < 0)
            return MF_ERR_ARG;
    return 0;
}

/* What main allocates, freed on every way out (a leak checker sees a clean exit). */
static struct {
    mf_model *model;
    mf_runner *runner;
    mf_source *src;
    char *jobdesc;
    mf_idset *seen;
} res;

static void release(void)
{
    mf_source_free(res.src);
    mf_idset_free(res.seen);
    free(res.jobdesc);
    mf_runner_free(res.runner);
    mf_model_free(res.model);
    memset(&res, 0, sizeof res);
}

static int fail(const char *what)
{
    mf_cli_error("%s%s", what ? what : "", mf_last_error());
    release();
    return mf_cli_finish(MF_EXIT_FAILURE);
}

int main(int argc, char **argv)
{
    config c = {.batch = MF_EMBED_BATCH, .max_megapixels = 50};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (!c.model)
        c.model = getenv("MF_MODEL");
    if (!c.model)
        mf_cli_usage_error("missing -m <model> (or set MF_MODEL)");
    if (!c.output)
        mf_cli_usage_error("missing -o <out.h5>");
    if (first == argc && c.n_lists == 0)
        mf_cli_usage_error("no inputs");
    /* No output may replace an input: operands, list files, the model. */
    mf_cli_add_inputs(argc, argv, first);
    for (int i = 0; i < c.n_lists; i++)
        mf_run_add_input(c.lists[i]);
    mf_run_add_input(c.model);
    mf_output *feat = c.feat_list ? mf_cli_open_output(c.feat_list, 0) : NULL;
    int orc;
    int shard_k, shard_n;
    mf_cli_shard(c.shard, &shard_k, &shard_n);
    int threads = mf_cli.threads > 0 ? mf_cli.threads : omp_get_max_threads();

    if (mf_model_load(&res.model, c.model, c.arch) < 0)
        return fail(NULL);
    mf_model *model = res.model;
    mf_runner_params rp = mf_runner_default_params();
    rp.max_batch = c.batch, rp.threads = threads, rp.precision = c.precision;
    rp.int8_reruns = MF_RERUNS_DEFERRED;
    if (mf_runner_create(&res.runner, model, &rp) < 0)
        return fail(NULL);
    mf_runner *runner = res.runner;

    mf_source_params sp = mf_source_default_params();
    sp.label_from_dir = c.label_from_dir;
    sp.shard_index = shard_k;
    sp.shard_count = shard_n;
    sp.root = c.root;
    sp.null_lists = c.null_lists;
    if (mf_source_new(&res.src, &sp) < 0 ||
        add_inputs(res.src, &c, argv + first, argc - first) < 0)
        return fail(NULL);
    mf_source *src = res.src;

    char *jobdesc = res.jobdesc =
        job_description(&c, argv + first, argc - first, model, shard_k, shard_n);
    mf_idset *seen = res.seen = mf_idset_new(1 << 16);
    mf_store *out = NULL;
    mf_store_job_state state;
    if (!jobdesc || !seen)
        return fail("out of memory");
    if ((orc = open_output(&c, model, jobdesc, &out, seen, &state)) < 0) {
        mf_output_abort(feat);
        release();
        return mf_cli_fail(orc);
    }
    if (state == MF_STORE_JOB_COMPLETE) {
        orc = finish_complete(&c, feat);
        release();
        return orc < 0 ? mf_cli_fail(orc) : mf_cli_finish(MF_EXIT_OK);
    }
    if (state == MF_STORE_JOB_RESUMED)
        mf_cli_info("resuming '%s.partial': %llu rows and %llu failed inputs already done",
                    c.output, (unsigned long long)mf_store_rows(out),
                    (unsigned long long)mf_store_failed_count(out));

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    job j = {.out = out,
             .runner = runner,
             .progress =
                 mf_cli.quiet ? NULL : mf_progress_new("embedding", 0, "img", mf_cli.progress)};
    /* A total (hence an ETA) when the inputs can be counted without reading them:
     * everything but archives. On resume, what is already stored is not to do. */
    uint64_t total = 0, done = mf_store_rows(out) + mf_store_failed_count(out);
    if (j.progress && mf_source_count(src, &total) == 1 && total > done)
        mf_progress_set_total(j.progress, total - done);
    mf_embed_params ep = mf_embed_default_params();
    ep.batch = c.batch;
    ep.resize = c.resize;
    ep.decode.max_pixels = (uint64_t)(c.max_megapixels * 1e6);
    ep.again_wanted = rerun_wanted, ep.again_run = rerun;
    mf_embed_sink sink = {sink_rows, sink_failed, sink_batch_done, &j};
    mf_embed_stats st;
    int rc = mf_embed_run(src, seen, &ep, mf_model_dim(model), forward, &j, &sink, &stop_signal,
                          &st);
    mf_progress_free(j.progress);
    if (rc == 0)
        rc = save_label_names(out, src);
    uint64_t rows = mf_store_rows(out), failed = mf_store_failed_count(out);

    if (rc < 0 || stop_signal) {
        /* Keep every flushed row for the next run of the same command. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", rc < 0 ? mf_last_error() : "");
        mf_store_suspend(out);
        mf_output_abort(feat);
        if (rc < 0)
            mf_cli_error("%s", msg);
        mf_cli_info("stopped: %llu rows kept in '%s.partial'; run the same command to resume",
                    (unsigned long long)rows, c.output);
        release();
        return mf_cli_finish(stop_signal ? 128 + stop_signal : MF_EXIT_FAILURE);
    }
    rc = record_history(out, &st, shard_k, shard_n);
    if (rc == 0 && feat)
        rc = write_feat_list(feat, out);
    if (rc < 0) { /* the rows stay resumable; the run's last steps are redone */
        mf_output_abort(feat);
        mf_store_suspend(out);
        return fail(NULL);
    }
    if ((rc = mf_store_commit_with(out, feat ? &feat : NULL, feat ? 1 : 0)) < 0)
        return fail(NULL);

    double net_rate = st.network_seconds > 0 ? (double)st.embedded / st.network_seconds : 0;
    double rate = st.wall_seconds > 0 ? (double)st.embedded / st.wall_seconds : 0;
    mf_cli_info("embedded %llu images this run (%llu rows in '%s', %llu failed, %llu skipped "
                "as done or repeated) in %.1f s: %.1f img/s end to end, %.1f img/s network",
                (unsigned long long)st.embedded, (unsigned long long)rows, c.output,
                (unsigned long long)failed, (unsigned long long)st.skipped, st.wall_seconds,
                rate, net_rate);
    long long reruns = mf_runner_fp32_reruns(runner);
    if (reruns > 0)
        mf_cli_info("int8: %lld faces ran again in fp32 (what the network read of them left "
                    "the calibrated ranges; docs/MODEL.md)", reruns);
    cJSON *js = cJSON_CreateObject();
    cJSON_AddStringToObject(js, "output", c.output);
    cJSON_AddBoolToObject(js, "resumed", state == MF_STORE_JOB_RESUMED);
    const char *keys[] = {"rows",
                          "failed",
                          "embedded_this_run",
                          "skipped",
                          "seconds",
                          "images_per_second",
                          "network_images_per_second"};
    const double values[] = {
        (double)rows, (double)failed, (double)st.embedded, (double)st.skipped, st.wall_seconds,
        rate,         net_rate};
    for (int i = 0; i < 7; i++)
        cJSON_AddNumberToObject(js, keys[i], values[i]);
    if (c.precision == MF_PRECISION_INT8)
        cJSON_AddNumberToObject(js, "int8_fp32_reruns", (double)reruns);
    mf_cli_summary(js);
    release();
    return mf_cli_finish(failed ? MF_EXIT_PARTIAL : MF_EXIT_OK);
}
