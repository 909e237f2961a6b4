/* mf-convert - turn a MagFace checkpoint into the native model file, describe a model
 * file, or time the network on it. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"
#include "mf/durable.h"
#include "mf/embed.h"
#include "mf/model.h"
#include "mf/progress.h"
#include "mf/status.h"

enum { OPT_OUTPUT = 1000, OPT_INFO, OPT_ARCH, OPT_BENCH, OPT_BATCH, OPT_SECONDS };

typedef struct config {
    const char *output, *arch;
    int info, bench, batch;
    double seconds;
} config;

static const mf_cli_opt opts[] = {
    {"output", 'o', "MODEL", "write the native model file MODEL", OPT_OUTPUT},
    {"info", 0, NULL, "print architecture, tensor count and parameters of FILE", OPT_INFO},
    {"arch", 0, "ARCH", "require this architecture (iresnet18/34/50/100)", OPT_ARCH},
    {"bench", 0, NULL, "time the network on FILE and print images/s", OPT_BENCH},
    {"batch", 0, "N", "batch size for --bench (default 16)", OPT_BATCH},
    {"seconds", 0, "S", "minimum timed seconds for --bench (default 10)", OPT_SECONDS},
    {0}};

static const mf_cli_tool tool = {
    "mf-convert",
    "[options] <checkpoint> -o <model> | --info <file> | --bench <file>",
    "Convert a MagFace checkpoint (.pth) to mfkit's native model file.",
    "The native file (HDF5) holds BatchNorm-folded weights packed in the engine's layout,\n"
    "plus the architecture, the source checkpoint's sha256 and the preprocessing, so it\n"
    "loads with one read. Both files work wherever a model is asked for.\n\n"
    "Examples:\n"
    "  mf-convert magface_epoch_00025.pth -o magface-r100.mfmodel\n"
    "  mf-convert --info magface-r100.mfmodel\n"
    "  mf-convert --bench -j 2 --batch 16 magface-r100.mfmodel\n",
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
    }
    return 0;
}

static void print_info(const mf_model *m, const char *path)
{
    printf("file: %s\narch: %s\nmodel: %s\ntensors: %zu\nparams: %zu (%.1f M)\n"
           "dim: %d\nsource_sha256: %s\npreprocess: %s\nGMACs: %.2f\nloaded_MB: %.1f\n",
           path, mf_model_arch(m), mf_model_name(m), mf_model_tensors(m), mf_model_params(m),
           mf_model_params(m) / 1e6, mf_model_dim(m), mf_model_sha256(m),
           mf_model_preprocess(m), mf_model_macs(m) / 1e9, mf_model_bytes(m) / 1048576.0);
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* One warm-up batch, then whole batches until `seconds` have passed (at least 3). */
static int bench(const mf_model *m, const config *c, int threads)
{
    mf_runner *r;
    size_t px = (size_t)c->batch * MF_MODEL_INPUT * MF_MODEL_INPUT * 3;
    uint8_t *img = malloc(px);
    float *feat = malloc((size_t)c->batch * mf_model_dim(m) * sizeof(float));
    if (!img || !feat || mf_runner_new(&r, m, c->batch, threads) < 0) {
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
    /* on a shared machine the wall clock includes time other processes held the cores;
     * images per CPU-second x threads is what the threads achieve while running */
    printf("arch %s batch %d threads %d: %.2f img/s, %.1f GFLOP/s (direct-conv FLOPs), "
           "%.2f img/s per %d busy cores, peak RSS %.0f MB\n",
           mf_model_arch(m), c->batch, threads, ips, ips * 2 * mf_model_macs(m) / 1e9,
           batches * c->batch / cpu * threads, threads, ru.ru_maxrss / 1024.0);
    mf_runner_free(r);
    free(img), free(feat);
    return MF_EXIT_OK;
}

int main(int argc, char **argv)
{
    config c = {.batch = MF_EMBED_BATCH, .seconds = 10};
    int first = mf_cli_parse(&tool, argc, argv, on_option, &c);
    if (argc - first != 1)
        mf_cli_usage_error("expected one input file");
    if (!c.info && !c.bench && !c.output)
        mf_cli_usage_error("nothing to do: give -o MODEL, --info or --bench");
    const char *in = argv[first];
    mf_run_add_input(in);
    mf_model *m;
    if (mf_model_load(&m, in, c.arch) < 0) {
        mf_cli_error("%s", mf_last_error());
        return mf_cli_finish(MF_EXIT_FAILURE);
    }
    int rc = MF_EXIT_OK;
    if (c.info)
        print_info(m, in);
    if (c.output) {
        int src = mf_model_save(m, c.output, mf_cli.overwrite);
        if (src < 0) {
            mf_cli_error("%s", mf_last_error());
            rc = mf_cli_exit_for(src);
        } else {
            mf_cli_info("wrote '%s' (%s, %.0f MB)", c.output, mf_model_arch(m),
                        mf_model_bytes(m) / 1048576.0);
        }
    }
    if (c.bench && rc == MF_EXIT_OK)
        rc = bench(m, &c, mf_cli.threads > 0 ? mf_cli.threads : omp_get_max_threads());
    mf_model_free(m);
    return mf_cli_finish(rc);
}
