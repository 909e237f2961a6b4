/* mf-convert - turn a MagFace checkpoint into the native model file, calibrate it for
 * the int8 path, describe a model file and the CPU's kernels, or time the network. */
#include <cjson/cJSON.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "mf/durable.h"
#include "mf/embed.h"
#include "mf/idset.h"
#include "mf/model.h"
#include "mf/progress.h"
#include "mf/source.h"
#include "mf/status.h"

enum {
    OPT_OUTPUT = 1000,
    OPT_INFO,
    OPT_ARCH,
    OPT_BENCH,
    OPT_BATCH,
    OPT_SECONDS,
    OPT_PRECISION,
    OPT_CALIBRATE,
    OPT_CALIB_FACES,
};

typedef struct config {
    const char *output, *arch, *calibrate;
    int info, bench, batch, calib_faces;
    double seconds;
    mf_precision precision;
} config;

static const mf_cli_opt opts[] = {
    {"output", 'o', "MODEL", "write the native model file MODEL", OPT_OUTPUT},
    {"info", 0, NULL,
     "print architecture, tensors, parameters, calibration of FILE and this CPU's kernels",
     OPT_INFO},
    {"arch", 0, "ARCH", "require this architecture (iresnet18/34/50/100)", OPT_ARCH},
    {"calibrate", 0, "LIST",
     "measure int8 activation ranges on the faces in LIST (a list file as mf-embed "
     "--list takes, or a folder) and keep them in MODEL (needs -o)",
     OPT_CALIBRATE},
    {"calibrate-faces", 0, "N", "use at most N faces of LIST (default 1000)", OPT_CALIB_FACES},
    {"bench", 0, NULL, "time the network on FILE and print images/s (int8: without re-running faces off the calibrated ranges in fp32, as the input is noise)", OPT_BENCH},
    {"precision", 0, "P", "fp32 (default), bf16 or int8 for --bench", OPT_PRECISION},
    {"batch", 0, "N", "batch size for --bench and --calibrate (default 16)", OPT_BATCH},
    {"seconds", 0, "S", "minimum timed seconds for --bench (default 10)", OPT_SECONDS},
    {0}};

static const mf_cli_tool tool = {
    "mf-convert",
    "[options] <checkpoint> -o <model> [--calibrate LIST] | --info <file> | --bench <file>",
    "Convert a MagFace checkpoint (.pth) to mfkit's native model file.",
    "The native file (HDF5) holds BatchNorm-folded weights packed in the engine's layout,\n"
    "plus the architecture, the source checkpoint's sha256 and the preprocessing, so it\n"
    "loads with one read. Both files work wherever a model is asked for, on any x86-64\n"
    "CPU with AVX2: the kernels are chosen at run time (--info says which).\n\n"
    "The int8 path (mf-embed --precision int8) quantises activations with ranges measured\n"
    "on faces like the ones to embed: --calibrate runs a sample of your own faces (a few\n"
    "hundred aligned crops, e.g. `shuf -n 500 all.list > sample.list`) through the fp32\n"
    "network and stores the ranges in the model file.\n\n"
    "With --json, --info and --bench print one JSON object each on stdout.\n\n"
    "Examples:\n"
    "  mf-convert magface_epoch_00025.pth -o magface-r100.mfmodel\n"
    "  mf-convert magface-r100.mfmodel --calibrate sample.list -o magface-r100-int8.mfmodel\n"
    "  mf-convert --info magface-r100.mfmodel\n"
    "  mf-convert --bench -j 2 --batch 16 --precision int8 magface-r100-int8.mfmodel\n",
    opts,
    MF_CLI_WRITES};

static int on_option(int id, const char *arg, void *ctx)
{
    config *c = ctx;
    switch (id) {
    case OPT_OUTPUT: c->output = arg; break;
    case OPT_INFO: c->info = 1; break;
    case OPT_ARCH: c->arch = arg; break;
    case OPT_BENCH: c->bench = 1; break;
    case OPT_BATCH: c->batch = (int)mf_cli_parse_int("--batch", arg, 1, 1024); break;
    case OPT_SECONDS: c->seconds = mf_cli_parse_double("--seconds", arg, 0, 3600); break;
    case OPT_CALIBRATE: c->calibrate = arg; break;
    case OPT_CALIB_FACES:
        c->calib_faces = (int)mf_cli_parse_int("--calibrate-faces", arg, 1, 1000000);
        break;
    case OPT_PRECISION:
        if (mf_precision_parse(arg, &c->precision) < 0)
            mf_cli_usage_error("--precision: %s", mf_last_error());
        break;
    }
    return 0;
}

/* --info --json: the same facts as one JSON object; the CPU lines ("fp32 kernel: x")
 * become members named like "fp32_kernel". */
static void print_info_json(const mf_model *m, const char *path)
{
    char cpu[1024], key[64];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", path);
    cJSON_AddStringToObject(o, "arch", mf_model_arch(m));
    cJSON_AddStringToObject(o, "model", mf_model_name(m));
    cJSON_AddNumberToObject(o, "tensors", (double)mf_model_tensors(m));
    cJSON_AddNumberToObject(o, "params", (double)mf_model_params(m));
    cJSON_AddNumberToObject(o, "dim", mf_model_dim(m));
    cJSON_AddStringToObject(o, "source_sha256", mf_model_sha256(m));
    cJSON_AddStringToObject(o, "preprocess", mf_model_preprocess(m));
    cJSON_AddNumberToObject(o, "gmacs", mf_model_macs(m) / 1e9);
    cJSON_AddNumberToObject(o, "loaded_mb", mf_model_bytes(m) / 1048576.0);
    cJSON_AddNumberToObject(o, "int8_calibration_faces", mf_model_calibration_faces(m));
    if (mf_model_calibration_faces(m))
        cJSON_AddStringToObject(o, "int8_calibration", mf_model_calibration_id(m));
    mf_cpu_describe(cpu, sizeof cpu);
    for (char *line = strtok(cpu, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strstr(line, ": ");
        if (!colon || (size_t)(colon - line) >= sizeof key)
            continue;
        snprintf(key, sizeof key, "%.*s", (int)(colon - line), line);
        for (char *k = key; *k; k++)
            *k = *k == ' ' ? '_' : *k;
        cJSON_AddStringToObject(o, key, colon + 2);
    }
    mf_cli_print_record(o, 1);
    cJSON_Delete(o);
}

static void print_info(const mf_model *m, const char *path)
{
    char cpu[1024];
    if (mf_cli.json) {
        print_info_json(m, path);
        return;
    }
    printf("file: %s\narch: %s\nmodel: %s\ntensors: %zu\nparams: %zu (%.1f M)\n"
           "dim: %d\nsource_sha256: %s\npreprocess: %s\nGMACs: %.2f\nloaded_MB: %.1f\n",
           path, mf_model_arch(m), mf_model_name(m), mf_model_tensors(m), mf_model_params(m),
           mf_model_params(m) / 1e6, mf_model_dim(m), mf_model_sha256(m),
           mf_model_preprocess(m), mf_model_macs(m) / 1e9, mf_model_bytes(m) / 1048576.0);
    if (mf_model_calibration_faces(m))
        printf("int8_calibration: %d faces, id %s\n", mf_model_calibration_faces(m),
               mf_model_calibration_id(m));
    else
        printf("int8_calibration: none (mf-convert --calibrate LIST)\n");
    mf_cpu_describe(cpu, sizeof cpu);
    for (char *line = strtok(cpu, "\n"); line; line = strtok(NULL, "\n"))
        printf("%s\n", line);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* One line of --bench results (or one JSON object with --json). On a shared machine the
 * wall clock includes time other processes held the cores; images per CPU-second x
 * threads is what the threads achieve while running. */
static void print_bench(const mf_model *m, const config *c, const mf_runner *r, int threads,
                        double ips, double per_cpu, double rss_mb)
{
    double gflops = ips * 2 * mf_model_macs(m) / 1e9;
    if (!mf_cli.json) {
        printf("arch %s precision %s batch %d threads %d: %.2f img/s, %.1f GFLOP/s "
               "(direct-conv FLOPs), %.2f img/s per %d busy cores, peak RSS %.0f MB; "
               "kernels: %s\n",
               mf_model_arch(m), mf_precision_name(c->precision), c->batch, threads, ips,
               gflops, per_cpu, threads, rss_mb, mf_runner_describe(r));
        return;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "arch", mf_model_arch(m));
    cJSON_AddStringToObject(o, "precision", mf_precision_name(c->precision));
    cJSON_AddNumberToObject(o, "batch", c->batch);
    cJSON_AddNumberToObject(o, "threads", threads);
    cJSON_AddNumberToObject(o, "img_per_s", ips);
    cJSON_AddNumberToObject(o, "gflops", gflops);
    cJSON_AddNumberToObject(o, "img_per_cpu_s_x_threads", per_cpu);
    cJSON_AddNumberToObject(o, "peak_rss_mb", rss_mb);
    cJSON_AddStringToObject(o, "kernels", mf_runner_describe(r));
    mf_cli_print_record(o, 1);
    cJSON_Delete(o);
}

/* One warm-up batch, then whole batches until `seconds` have passed (at least 3). */
static int bench(const mf_model *m, const config *c, int threads)
{
    mf_runner *r = NULL;
    mf_runner_params p = mf_runner_default_params();
    p.max_batch = c->batch, p.threads = threads, p.precision = c->precision;
    p.int8_reruns = 0; /* the input is noise, off every calibrated range: time the network */
    size_t px = (size_t)c->batch * MF_MODEL_INPUT * MF_MODEL_INPUT * 3;
    uint8_t *img = malloc(px);
    float *feat = malloc((size_t)c->batch * mf_model_dim(m) * sizeof(float));
    if (!img || !feat || mf_runner_create(&r, m, &p) < 0) {
        mf_cli_error("%s", img && feat ? mf_last_error() : "out of memory");
        free(img), free(feat);
        return MF_EXIT_FAILURE;
    }
    for (size_t i = 0; i < px; i++)
        img[i] = (uint8_t)(i * 2654435761u >> 24);
    mf_runner_forward(r, c->batch, MF_MODEL_INPUT, MF_MODEL_INPUT, img, feat, NULL);
    double t0 = mf_now(), c0 = cpu_seconds(), t;
    int batches = 0;
    do {
        mf_runner_forward(r, c->batch, MF_MODEL_INPUT, MF_MODEL_INPUT, img, feat, NULL);
        batches++;
    } while ((t = mf_now() - t0) < c->seconds || batches < 3);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double ips = batches * c->batch / t, cpu = cpu_seconds() - c0;
    print_bench(m, c, r, threads, ips, batches * c->batch / cpu * threads,
                ru.ru_maxrss / 1024.0);
    mf_runner_free(r);
    free(img), free(feat);
    return MF_EXIT_OK;
}

/* ---- --calibrate: faces through the embedding pipeline into a calibration ---------- */

typedef struct calib_job {
    mf_calibration *cal;
    mf_progress *progress;
    int limit;
    volatile sig_atomic_t stop;
    uint64_t failed;
} calib_job;

static int calib_forward(void *ctx, int n, const uint8_t *faces, float *feat, float *mag)
{
    calib_job *j = ctx;
    int room = j->limit - mf_calibration_faces(j->cal);
    if (n > room)
        n = room;
    int rc = n > 0 ? mf_calibration_add(j->cal, n, faces) : 0;
    if (mf_calibration_faces(j->cal) >= j->limit)
        j->stop = 1; /* batches already decoded are handed over, then the run ends */
    return rc;
}

static int calib_rows(void *ctx, size_t n, const float *f, const float *m,
                      const char *const *ids, const int64_t *labels)
{
    calib_job *j = ctx;
    mf_progress_add(j->progress, n);
    return 0;
}

static int calib_failed(void *ctx, const char *id, const char *reason)
{
    calib_job *j = ctx;
    mf_cli_warn("'%s': %s", id, reason);
    j->failed++;
    return 0;
}

static int calib_done(void *ctx) { return 0; }

static int calibrate(mf_model *m, const config *c, int threads)
{
    struct stat st;
    calib_job j = {.limit = c->calib_faces};
    mf_source_params sp = mf_source_default_params();
    mf_source *src = NULL;
    mf_idset *seen = mf_idset_new(1 << 12);
    int dir = stat(c->calibrate, &st) == 0 && S_ISDIR(st.st_mode);
    int rc = seen ? 0 : mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (rc == 0 && (rc = mf_source_new(&src, &sp)) == 0)
        rc = mf_source_add(src, c->calibrate, dir ? MF_INPUT_DIR : MF_INPUT_LIST);
    if (rc == 0)
        rc = mf_calibration_new(&j.cal, m, c->batch, threads);
    if (rc == 0) {
        mf_embed_params ep = mf_embed_default_params();
        ep.batch = c->batch;
        mf_embed_sink sink = {calib_rows, calib_failed, calib_done, &j};
        mf_embed_stats stats;
        j.progress =
            mf_cli.quiet ? NULL : mf_progress_new("calibrating", 0, "img", mf_cli.progress);
        rc = mf_embed_run(src, seen, &ep, mf_model_dim(m), calib_forward, &j, &sink, &j.stop,
                          &stats);
        mf_progress_free(j.progress);
    }
    if (rc == 0 && mf_calibration_faces(j.cal) == 0)
        rc = mf_set_error(MF_ERR_ARG, "'%s': no face could be read for calibration",
                          c->calibrate);
    if (rc == 0)
        rc = mf_model_set_calibration(m, j.cal);
    if (rc == 0)
        mf_cli_info("int8 calibration on %d faces%s (id %s)", mf_model_calibration_faces(m),
                    j.failed ? ", some inputs failed" : "", mf_model_calibration_id(m));
    if (rc == 0 && mf_model_calibration_faces(m) < 100)
        mf_cli_warn("only %d faces: ranges measured on a few hundred are steadier",
                    mf_model_calibration_faces(m));
    mf_calibration_free(j.cal);
    mf_source_free(src);
    mf_idset_free(seen);
    return rc;
}

int main(int argc, char **argv)
{
    config c = {.batch = MF_EMBED_BATCH, .seconds = 10, .calib_faces = 1000};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (argc - first != 1)
        mf_cli_usage_error("expected one input file");
    if (!c.info && !c.bench && !c.output)
        mf_cli_usage_error("nothing to do: give -o MODEL, --info or --bench");
    if (c.calibrate && !c.output)
        mf_cli_usage_error("--calibrate stores its ranges in a model file: give -o MODEL");
    const char *in = argv[first];
    mf_run_add_input(in);
    if (c.calibrate)
        mf_run_add_input(c.calibrate);
    int threads = mf_cli.threads > 0 ? mf_cli.threads : omp_get_max_threads();
    mf_model *m;
    if (mf_model_load(&m, in, c.arch) < 0) {
        mf_cli_error("%s", mf_last_error());
        return mf_cli_finish(MF_EXIT_FAILURE);
    }
    int rc = MF_EXIT_OK;
    if (c.calibrate && calibrate(m, &c, threads) < 0) {
        mf_cli_error("%s", mf_last_error());
        rc = MF_EXIT_FAILURE;
    }
    if (c.info && rc == MF_EXIT_OK)
        print_info(m, in);
    if (c.output && rc == MF_EXIT_OK) {
        int src = mf_model_save(m, c.output, mf_cli.overwrite);
        if (src < 0) {
            mf_cli_error("%s", mf_last_error());
            rc = mf_cli_exit_for(src);
        } else {
            mf_cli_info("wrote '%s' (%s, %.0f MB%s)", c.output, mf_model_arch(m),
                        mf_model_bytes(m) / 1048576.0,
                        mf_model_calibration_faces(m) ? ", int8 calibration" : "");
        }
    }
    if (c.bench && rc == MF_EXIT_OK)
        rc = bench(m, &c, threads);
    mf_model_free(m);
    return mf_cli_finish(rc);
}
