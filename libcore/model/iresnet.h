/* iresnet.h - the loaded model's structure (internal to libcore: engine, native file,
 * reference path and tests share it). */
#ifndef MF_IRESNET_H
#define MF_IRESNET_H

#include <stddef.h>

#include "mf/model.h"

/* A convolution with its following BatchNorm folded in: out = conv(in; w) + bias. */
typedef struct mf_conv {
    int cin, cout, ksize, stride;
    int winograd;       /* 3x3 stride 1: w holds the 16 Winograd matrices */
    float *w;           /* packed, see nn.h: (cout, cin*k*k) or 36 x (cout, cin) */
    float *bias;        /* (cout) */
    float *in_a, *in_b; /* (cin) BatchNorm on the input inside the padding, or NULL */
    float *prelu;       /* (cout) slopes, or NULL */
} mf_conv;

typedef struct mf_block {
    mf_conv conv1, conv2, down; /* down.w == NULL: identity shortcut */
} mf_block;

struct mf_model {
    char arch[48], name[64], sha256[65], preprocess[64];
    int blocks[4], widths[4], stem, dim;
    size_t params, tensors;
    mf_conv stem_conv;
    int nblocks;
    mf_block *block; /* nblocks */
    float *fc_w;     /* packed (dim, widths[3]*49), head bn2 and features folded */
    float *fc_b;     /* (dim) */
    float *arena;    /* every weight above, one allocation (native file dataset) */
    size_t arena_floats;
};

/* Assign every weight pointer inside `arena` (NULL: only count); returns floats. The
 * layout depends only on blocks/widths/stem/dim, so the native file stores the arena
 * as one dataset. Needs m->block allocated. */
size_t mf_iresnet_layout(struct mf_model *m, float *arena);

/* Allocate m->block and the arena for the shape already in m (blocks, widths, stem,
 * dim), names included. */
int mf_iresnet_alloc(struct mf_model *m);

/* Architecture name of a block configuration ("iresnet50"), or NULL. */
const char *mf_iresnet_arch_name(const int blocks[4]);
/* Backbone tensors (state_dict entries) of a configuration. */
size_t mf_iresnet_tensor_count(const int blocks[4]);

/* 0 if expect is NULL or names m's architecture; else an error such as "f.pth:
 * checkpoint has 475 backbone tensors (iresnet50), expected 925 (iresnet100)". */
int mf_iresnet_check_arch(const struct mf_model *m, size_t tensors, const char *file,
                          const char *expect);

/* Straightforward float32 forward pass on raw checkpoint tensors, following PyTorch op
 * by op (no folding, direct convolutions): the test oracle for the fast engine. The
 * checkpoint must already have passed mf_model_from_checkpoint. nchw: n x 3x112x112. */
int mf_iresnet_reference(const mf_checkpoint *ck, int n, const float *nchw, float *features);

/* Read an HDF5 state_dict dump (/tensors/<key>, h5py) as a checkpoint; free it with
 * mf_checkpoint_free. */
int mf_iresnet_load_dump(mf_checkpoint **out, const char *path);
/* Same for the datasets of any group (tests read /reference/{images,features}). */
int mf_iresnet_load_group(mf_checkpoint **out, const char *path, const char *group);

/* sha256 of a file as lower-case hex (65 bytes). */
int mf_sha256_file(const char *path, char hex[65]);

#endif
