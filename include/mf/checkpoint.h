/* checkpoint.h - read PyTorch checkpoints (.pth) without PyTorch, safely.
 *
 *     mf_checkpoint *ck;
 *     if (mf_checkpoint_load(&ck, "magface_epoch_00025.pth") < 0)
 *         die(mf_last_error());       // "magface_epoch_00025.pth: truncated ..."
 *     const mf_tensor *w = mf_checkpoint_find(ck, "conv1.weight");
 *     // w->shape = {64, 3, 3, 3}, w->data = 1728 floats
 *     mf_checkpoint_free(ck);
 *
 * Both serialisations torch.save writes: the zip format (torch >= 1.6, read through
 * libarchive) and the legacy format (magic number + pickles + raw storages). The pickle
 * reader understands only what tensor checkpoints contain and never executes anything:
 * any GLOBAL outside a small allow-list (torch._utils._rebuild_tensor_v2, the storage
 * classes, collections.OrderedDict, ...) is refused with an error naming it.
 *
 * What you get: the backbone's tensors, names with the known prefixes removed
 * ("features.module.", "module.features.", "module.", "features."), whether the file held
 * a checkpoint dict with "state_dict" or a bare state_dict. Classifier weights (fc of
 * the margin head: "module.fc.weight", "parallel_fc.weight"), optimizer state and other
 * non-tensor entries are dropped. Floating tensors are converted to contiguous float32
 * (from float16/float64, honouring storage offset and strides); integer tensors (e.g.
 * num_batches_tracked) are kept with is_int set and their values in data as floats.
 *
 * Every size read from the file is checked against the file's size before allocating. */
#ifndef MF_CHECKPOINT_H
#define MF_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#define MF_TENSOR_MAX_DIMS 8

typedef struct mf_tensor {
    char *name; /* backbone key, prefix removed */
    int ndim;
    int64_t shape[MF_TENSOR_MAX_DIMS];
    size_t numel;
    float *data; /* numel floats, row-major contiguous */
    int is_int;  /* stored as an integer type in the file */
} mf_tensor;

typedef struct mf_checkpoint {
    size_t count;
    mf_tensor *tensors; /* in file order */
    char format[16];    /* "zip" or "legacy" */
    char prefix[32];    /* the key prefix that was removed ("" if none) */
    char arch[32];      /* the checkpoint dict's "arch" string if present, else "" */
    size_t dropped;     /* entries ignored (classifier, non-backbone) */
} mf_checkpoint;

/* Load `path`. Returns 0, or a negative mf_status with mf_last_error() naming the file
 * and the problem (truncated, not a checkpoint, forbidden global, unsupported dtype). */
int mf_checkpoint_load(mf_checkpoint **out, const char *path);

/* Same, from memory (for fuzzing and tests); `name` is used in messages. */
int mf_checkpoint_load_mem(mf_checkpoint **out, const void *buf, size_t len, const char *name);

/* The tensor with exactly this (prefix-free) name, or NULL. */
const mf_tensor *mf_checkpoint_find(const mf_checkpoint *ck, const char *name);

void mf_checkpoint_free(mf_checkpoint *ck);

#endif
