/* model.h - the MagFace iResNet (18/34/50/100) on the CPU.
 *
 *     mf_model *m;
 *     if (mf_model_load(&m, "magface_epoch_00025.pth", NULL) < 0)   // or a native file
 *         die(mf_last_error());     // "x.pth: checkpoint has 475 backbone tensors ..."
 *     mf_runner *r;
 *     mf_runner_new(&r, m, 16, 2);                  // batch up to 16, 2 threads
 *     mf_runner_forward(r, n, 112, 112, bgr, feat, mag);
 *     // bgr: n x 112x112x3 u8 BGR (OpenCV order); feat: n x 512 raw; mag: n L2 norms
 *     mf_runner_free(r);
 *     mf_model_free(m);
 *
 * Lower precision (faster where the CPU has the instructions; see docs/MODEL.md):
 *
 *     mf_calibration *cal;                          // int8 needs activation ranges,
 *     mf_calibration_new(&cal, m, 16, 2);           // measured on some of the user's
 *     mf_calibration_add(cal, n, bgr);              // own faces (a few hundred),
 *     mf_model_set_calibration(m, cal);             // kept by mf_model_save
 *     mf_runner_params p = mf_runner_default_params();
 *     p.precision = MF_PRECISION_INT8;              // or MF_PRECISION_BF16
 *     mf_runner_create(&r, m, &p);
 *
 * A model is read-only after loading and may be shared by any number of runners (one
 * per thread of the caller). A runner owns all scratch memory, allocated once in
 * mf_runner_new; the forward pass allocates nothing and uses exactly `threads` OpenMP
 * threads.
 *
 * Semantics are those of the official MagFace release (see docs/MODEL.md): input
 * u8/255.0f (true division), channels B,G,R, no normalisation; output the raw feature
 * (its norm is the quality). BatchNorms are folded into the convolutions where that is
 * exact; the block-entry BatchNorm is applied inside the zero padding. Results agree
 * with PyTorch float32 to cosine >= 0.99999 and magnitude within 1e-4. */
#ifndef MF_MODEL_H
#define MF_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "mf/image.h"

#include "mf/checkpoint.h"

typedef struct mf_model mf_model;
typedef struct mf_runner mf_runner;
typedef struct mf_calibration mf_calibration;

/* The network takes exactly one aligned face: MF_MODEL_INPUT x MF_MODEL_INPUT x 3. */
#define MF_MODEL_INPUT MF_FACE_SIZE
/* Side of the last stage's feature map (four stride-2 stages): 7, so the head's fc
 * reads widths[3] x 7 x 7 values. */
#define MF_HEAD_SIDE (MF_MODEL_INPUT / 16)
#define MF_HEAD_AREA (MF_HEAD_SIDE * MF_HEAD_SIDE)

/* The numeric path of a runner. FP32 is the reference (PyTorch's numbers). BF16:
 * bfloat16 operands, float32 sums. INT8: activations quantised to 8 bits per channel
 * with calibrated ranges, int16 weights, exact int32 sums; layers found too sensitive
 * stay float32. Stores record the precision (root attribute `precision`): stores of
 * different precisions are different embeddings and never merge. */
typedef enum mf_precision {
    MF_PRECISION_FP32 = 0,
    MF_PRECISION_BF16 = 1,
    MF_PRECISION_INT8 = 2,
} mf_precision;

/* "fp32", "bf16", "int8" */
const char *mf_precision_name(mf_precision p);
/* Parse one of those names; returns 0, or MF_ERR_ARG with a message. */
int mf_precision_parse(const char *name, mf_precision *out);

/* One line per item: the CPU and its vector extensions, then the kernel each precision
 * would use on it (the dispatch is decided at run time; $MF_ISA=avx2 etc. caps it).
 * Writes a NUL-terminated text of at most len bytes. */
void mf_cpu_describe(char *buf, size_t len);

/* Load a PyTorch checkpoint (.pth, zip or legacy; any official key prefix), a native
 * model written by mf_model_save (mf-convert), or an HDF5 state_dict dump with one
 * dataset per tensor under /tensors (h5py). The kind is detected from the content.
 * `expect_arch` (NULL, or "iresnet50" etc.) must match the detected architecture. */
int mf_model_load(mf_model **out, const char *path, const char *expect_arch);

/* Build a model from loaded backbone tensors: detects the architecture from the
 * blocks present, checks every tensor's presence and shape (errors name the tensor and
 * both shapes), folds BatchNorms and packs weights. `name` is used in messages. Stage
 * widths and the embedding size are taken from the tensors, so reduced-width test
 * networks work too. The checkpoint may be freed afterwards. */
int mf_model_from_checkpoint(mf_model **out, const mf_checkpoint *ck, const char *name,
                             const char *expect_arch);

/* Write the native model file (HDF5: folded, packed weights in one dataset, plus arch,
 * source sha256, preprocessing) as an output of the durable-output module: refused if it
 * exists (unless overwrite) or is an input of the run; appears whole or not at all. */
int mf_model_save(const mf_model *m, const char *path, int overwrite);

void mf_model_free(mf_model *m);

const char *mf_model_arch(const mf_model *m);       /* "iresnet100" */
const char *mf_model_name(const mf_model *m);       /* "magface-iresnet100" (store attr) */
const char *mf_model_sha256(const mf_model *m);     /* of the source checkpoint, hex */
const char *mf_model_preprocess(const mf_model *m); /* store attr `preprocess` */
int mf_model_dim(const mf_model *m);                /* embedding size (512) */
size_t mf_model_params(const mf_model *m);          /* float parameters of the checkpoint */
size_t mf_model_tensors(const mf_model *m);         /* backbone tensors of the checkpoint */
size_t mf_model_bytes(const mf_model *m);           /* memory held by the loaded model */
/* Multiply-accumulates of one forward pass as PyTorch counts them (direct convs). */
double mf_model_macs(const mf_model *m);

/* int8 calibration: faces seen (0 if the model has none) and a short id of the ranges
 * (16 hex digits; "" if none) that stores record, since two calibrations give two
 * slightly different int8 embeddings. */
int mf_model_calibration_faces(const mf_model *m);
const char *mf_model_calibration_id(const mf_model *m);

typedef struct mf_runner_params {
    int max_batch;          /* largest batch (1..4096); 16 */
    int threads;            /* OpenMP threads (>= 1); 1 */
    mf_precision precision; /* MF_PRECISION_FP32 */
    int int8_reruns;        /* MF_RERUNS_INLINE: int8 runs faces off the calibrated ranges
                               again in fp32 within each call (mf_runner_fp32_reruns) */
} mf_runner_params;

/* int8_reruns: what int8 does with faces off the calibrated ranges. */
enum {
    MF_RERUNS_NONE = 0,   /* nothing: only to time the network alone */
    MF_RERUNS_INLINE = 1, /* each call runs them again before it returns */
    /* the caller gathers them (mf_runner_rerun_wanted) across calls and runs them
     * together (mf_runner_rerun): fp32 at batch 1 costs ~3x a face at batch 16 */
    MF_RERUNS_DEFERRED = 2,
};

mf_runner_params mf_runner_default_params(void);

/* Allocate scratch (and, below fp32, the converted weights) for batches of up to
 * p->max_batch images. The model must outlive the runner. INT8 needs a calibrated
 * model (MF_ERR_UNSUPPORTED otherwise, with a message saying how). */
int mf_runner_create(mf_runner **out, const mf_model *m, const mf_runner_params *p);
/* mf_runner_create at fp32 with this batch and thread count. */
int mf_runner_new(mf_runner **out, const mf_model *m, int max_batch, int threads);
void mf_runner_free(mf_runner *r);
/* The precision and the kernels a runner uses, e.g. "int8 (avx2 4x24 vpmaddwd; 3 of
 * 45 convolutions in fp32)". */
mf_precision mf_runner_precision(const mf_runner *r);
const char *mf_runner_describe(const mf_runner *r);

/* Run `n` (1..max_batch) images of `height` x `width` (must be 112 x 112) BGR u8 HWC,
 * consecutive. Writes n x dim raw features and, if `magnitudes` is not NULL, their n
 * L2 norms. Returns 0, or MF_ERR_ARG for a wrong size or batch. */
int mf_runner_forward(mf_runner *r, int n, int height, int width, const uint8_t *bgr,
                      float *features, float *magnitudes);

/* Same from float input already scaled, n x 3 x 112 x 112 (NCHW, B,G,R planes). */
int mf_runner_forward_f32(mf_runner *r, int n, const float *nchw, float *features,
                          float *magnitudes);
/* int8: faces whose activations left the calibrated ranges by more than a third of
 * their width are run again in fp32 (their features are then fp32's, bit for bit); how
 * many so far. 0 at other precisions. */
long long mf_runner_fp32_reruns(const mf_runner *r);
/* MF_RERUNS_DEFERRED: whether face i (0..n-1) of the last forward call left the ranges
 * and should be run again; always 0 at other precisions or settings. */
int mf_runner_rerun_wanted(const mf_runner *r, int i);
/* Run n (1..max_batch) such faces (BGR u8, as mf_runner_forward) in fp32: their
 * features and magnitudes, bit for bit those of the fp32 path at this batch. */
int mf_runner_rerun(mf_runner *r, int n, const uint8_t *bgr, float *features,
                    float *magnitudes);

/* int8 calibration: run faces through the fp32 network and record, per channel of
 * what every convolution reads, the range to quantise. Faces should be a sample of
 * those that will be embedded (a few hundred are plenty); values beyond the ranges
 * are clamped later. */
int mf_calibration_new(mf_calibration **out, const mf_model *m, int max_batch, int threads);
/* n (1..max_batch) aligned 112x112 BGR faces, as mf_runner_forward. */
int mf_calibration_add(mf_calibration *c, int n, const uint8_t *bgr);
int mf_calibration_faces(const mf_calibration *c);
void mf_calibration_free(mf_calibration *c);
/* Give the model these ranges (replacing any); mf_model_save writes them into the
 * native file. Needs at least one face. Not thread-safe with runners of m: create
 * runners afterwards. */
int mf_model_set_calibration(mf_model *m, const mf_calibration *c);

#endif
