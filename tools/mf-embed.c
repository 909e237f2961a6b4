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
#include "mf/embed.h"
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
    OPT_OVERWRITE,
    OPT_FEAT_LIST,
    OPT_ARCH,
    OPT_MAX_MP,
    OPT_PRECISION,
};

#define MAX_LISTS 64

typedef struct config {
    const char *model, *output, *feat_list, *arch, *shard;
    const char *lists[MAX_LISTS];
    int n_lists;
    int label_from_dir, resize, overwrite, batch;
    double max_megapixels;
    mf_precision precision;
    char partial[4096]; /* "<output>.partial": the store while the job runs */
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
    {"overwrite", 0, NULL, "start over: replace OUT and discard an unfinished OUT.partial",
     OPT_OVERWRITE},
    {"feat-list", 0, "FILE", "also write the features in the official MagFace text format",
     OPT_FEAT_LIST},
    {"arch", 0, "NAME", "check that the model is this architecture (e.g. iresnet100)",
     OPT_ARCH},
    {"max-megapixels", 0, "MP", "refuse images larger than this (default 50)", OPT_MAX_MP},
    {"precision", 0, "P",
     "fp32 (default: the reference numbers), bf16, or int8 (needs a model calibrated "
     "with mf-convert --calibrate); recorded in the store",
     OPT_PRECISION},
    {0},
};

static const mf_cli_tool tool = {
    "mf-embed", "-m <model> -o <out.h5> [options] <input>...",
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
    options};

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
    case OPT_BATCH: c->batch = (int)mf_cli_parse_int("--batch", arg, 1, 1024); break;
    case OPT_OVERWRITE: c->overwrite = 1; break;
    case OPT_FEAT_LIST: c->feat_list = arg; break;
    case OPT_ARCH: c->arch = arg; break;
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
    char shard[64];
    snprintf(shard, sizeof shard, "%d/%d", shard_k, shard_n);
    cJSON_AddStringToObject(o, "shard", shard);
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* Ids already handled by the run being resumed: its rows and its failed inputs. */
static int load_done_ids(mf_store *s, mf_idset *seen)
{
    enum { BLOCK = 65536 };
    uint64_t rows = mf_store_rows(s);
    char **ids = malloc(BLOCK * sizeof *ids);
    if (!ids)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (uint64_t at = 0; at < rows && rc == 0; at += BLOCK) {
        size_t k = (size_t)(rows - at < BLOCK ? rows - at : BLOCK);
        if ((rc = mf_store_read_ids(s, at, k, ids)) < 0)
            break;
        for (size_t i = 0; i < k && rc >= 0; i++)
            rc = mf_idset_add(seen, ids[i]);
        rc = rc < 0 ? rc : 0;
        mf_store_free_strings(ids, k);
    }
    free(ids);
    for (uint64_t i = 0; i < mf_store_failed_count(s) && rc == 0; i++) {
        char *id, *reason;
        if ((rc = mf_store_read_failed(s, i, &id, &reason)) == 0) {
            rc = mf_idset_add(seen, id) < 0 ? MF_ERR_NOMEM : 0;
            free(id);
            free(reason);
        }
    }
    return rc;
}

/* Open the output: resume an unfinished run of the same job, or start a new one. */
static int open_output(const config *c, const mf_model *m, const char *job, mf_store **out,
                       mf_idset *seen, int *resumed)
{
    *resumed = 0;
    int unfinished = access(c->partial, F_OK) == 0;
    if (unfinished && c->overwrite) {
        if (unlink(c->partial) != 0)
            return mf_set_error(MF_ERR_IO, "cannot remove '%s': %s", c->partial,
                                strerror(errno));
        unfinished = 0;
    }
    if (unfinished) {
        int rc = mf_store_resume(out, c->output);
        if (rc < 0)
            return mf_wrap_error(rc, "cannot resume (use --overwrite to start over)");
        const char *was = mf_store_attr(*out, "mf_embed_job");
        if (!was || strcmp(was, job) != 0) {
            mf_store_close(*out);
            *out = NULL;
            return mf_set_error(MF_ERR_MISMATCH,
                                "'%s' was started with a different model, "
                                "inputs or settings; run the original command to resume it, "
                                "or add --overwrite to start over",
                                c->partial);
        }
        *resumed = 1;
        return load_done_ids(*out, seen);
    }
    mf_store_params p = mf_store_default_params();
    p.dim = mf_model_dim(m);
    p.model = mf_model_name(m);
    p.model_sha256 = mf_model_sha256(m);
    p.preprocess = mf_model_preprocess(m);
    int rc = mf_store_create(out, c->output, &p);
    if (rc == 0)
        rc = mf_store_set_attr(*out, "mf_embed_job", job);
    /* the numeric path: stores of different precisions (or int8 calibrations) hold
     * different embeddings and must not be merged */
    if (rc == 0)
        rc = mf_store_set_attr(*out, "precision", mf_precision_name(c->precision));
    if (rc == 0 && c->precision == MF_PRECISION_INT8)
        rc = mf_store_set_attr(*out, "int8_calibration", mf_model_calibration_id(m));
    if (rc == 0)
        rc = mf_store_flush(*out);
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

/* The official MagFace feature text: `<path> ` then each value followed by a space. */
static int write_feat_list(const char *path, const char *store_path)
{
    mf_store *s;
    int rc = mf_store_open(&s, store_path);
    if (rc < 0)
        return rc;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.partial", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        mf_store_close(s);
        return mf_set_error(MF_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
    }
    int dim = mf_store_dim(s);
    float *emb = malloc((size_t)dim * 1024 * sizeof *emb);
    char **ids = malloc(1024 * sizeof *ids);
    rc = emb && ids ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (uint64_t at = 0; at < mf_store_rows(s) && rc == 0; at += 1024) {
        size_t k = (size_t)(mf_store_rows(s) - at < 1024 ? mf_store_rows(s) - at : 1024);
        if ((rc = mf_store_read_ids(s, at, k, ids)) < 0)
            break;
        rc = mf_store_read_embedding(s, at, k, emb);
        for (size_t i = 0; i < k && rc == 0; i++) {
            fprintf(f, "%s ", ids[i]);
            for (int d = 0; d < dim; d++)
                fprintf(f, "%.9g ", emb[i * (size_t)dim + d]);
            fputc('\n', f);
        }
        mf_store_free_strings(ids, k);
    }
    free(emb);
    free(ids);
    mf_store_close(s);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = rc ? rc : mf_set_error(MF_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    fclose(f);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = mf_set_error(MF_ERR_IO, "cannot rename '%s': %s", tmp, strerror(errno));
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* ---- main ---------------------------------------------------------------------------- */

static void resolve_shard(const config *c, int *k, int *n)
{
    *k = 0;
    *n = 1;
    if (c->shard) {
        if (mf_shard_parse(c->shard, k, n) < 0)
            mf_cli_usage_error("--shard expects K/N with 0 <= K < N, got '%s'", c->shard);
        return;
    }
    int rc = mf_shard_from_slurm(k, n, (const char *(*)(const char *))getenv);
    if (rc < 0)
        mf_cli_usage_error("%s", mf_last_error());
    if (rc == 1)
        mf_cli_info("SLURM array task: shard %d of %d", *k, *n);
}

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

static int fail(const char *what)
{
    mf_cli_error("%s%s", what ? what : "", mf_last_error());
    return mf_cli_finish(MF_EXIT_FAILURE);
}

int main(int argc, char **argv)
{
    config c = {.batch = 16, .max_megapixels = 50};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (!c.model)
        c.model = getenv("MF_MODEL");
    if (!c.model)
        mf_cli_usage_error("missing -m <model> (or set MF_MODEL)");
    if (!c.output)
        mf_cli_usage_error("missing -o <out.h5>");
    if (first == argc && c.n_lists == 0)
        mf_cli_usage_error("no inputs");
    snprintf(c.partial, sizeof c.partial, "%s.partial", c.output);
    if (!c.overwrite && access(c.output, F_OK) == 0 && access(c.partial, F_OK) != 0)
        mf_cli_usage_error("'%s' exists (use --overwrite to replace it)", c.output);
    int shard_k, shard_n;
    resolve_shard(&c, &shard_k, &shard_n);
    int threads = mf_cli.threads > 0 ? mf_cli.threads : omp_get_max_threads();

    mf_model *model;
    if (mf_model_load(&model, c.model, c.arch) < 0)
        return fail(NULL);
    mf_runner *runner;
    mf_runner_params rp = mf_runner_default_params();
    rp.max_batch = c.batch, rp.threads = threads, rp.precision = c.precision;
    if (mf_runner_create(&runner, model, &rp) < 0)
        return fail(NULL);

    mf_source_params sp = mf_source_default_params();
    sp.label_from_dir = c.label_from_dir;
    sp.shard_index = shard_k;
    sp.shard_count = shard_n;
    mf_source *src;
    if (mf_source_new(&src, &sp) < 0 || add_inputs(src, &c, argv + first, argc - first) < 0)
        return fail(NULL);

    char *jobdesc = job_description(&c, argv + first, argc - first, model, shard_k, shard_n);
    mf_idset *seen = mf_idset_new(1 << 16);
    mf_store *out = NULL;
    int resumed = 0;
    if (!jobdesc || !seen)
        return fail("out of memory");
    if (open_output(&c, model, jobdesc, &out, seen, &resumed) < 0)
        return fail(NULL);
    if (resumed)
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
        mf_store_close(out);
        if (rc < 0)
            mf_cli_error("%s", msg);
        mf_cli_info("stopped: %llu rows kept in '%s.partial'; run the same command to resume",
                    (unsigned long long)rows, c.output);
        return mf_cli_finish(stop_signal ? 128 + stop_signal : MF_EXIT_FAILURE);
    }
    if ((rc = mf_store_commit(out)) < 0)
        return fail(NULL);
    if (c.feat_list && (rc = write_feat_list(c.feat_list, c.output)) < 0)
        return fail(NULL);

    double net_rate = st.network_seconds > 0 ? (double)st.embedded / st.network_seconds : 0;
    double rate = st.wall_seconds > 0 ? (double)st.embedded / st.wall_seconds : 0;
    mf_cli_info("embedded %llu images this run (%llu rows in '%s', %llu failed, %llu skipped "
                "as done or repeated) in %.1f s: %.1f img/s end to end, %.1f img/s network",
                (unsigned long long)st.embedded, (unsigned long long)rows, c.output,
                (unsigned long long)failed, (unsigned long long)st.skipped, st.wall_seconds,
                rate, net_rate);
    mf_source_free(src);
    mf_idset_free(seen);
    free(jobdesc);
    mf_runner_free(runner);
    mf_model_free(model);
    return mf_cli_finish(failed ? MF_EXIT_PARTIAL : MF_EXIT_OK);
}
