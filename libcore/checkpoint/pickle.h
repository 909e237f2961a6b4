/* pickle.h - a minimal, non-executing unpickler for PyTorch tensor checkpoints.
 *
 *     pk_ctx ctx;
 *     pk_init(&ctx);
 *     pk_value *root;
 *     size_t used;
 *     if (pk_load(&ctx, buf, len, &used, &root) < 0) ... mf_last_error() ...
 *     ... walk root (dicts, tuples, PK_TENSOR values pointing at PK_STORAGE values) ...
 *     pk_release(&ctx);              // frees every value of every pk_load on ctx
 *
 * Only the opcodes torch.save's protocol-2 pickles use are understood; any other opcode
 * is an error naming it. A GLOBAL is accepted only if it is on the allow-list (tensor
 * rebuild functions, storage classes, collections.OrderedDict); REDUCE "calls" these by
 * building a plain value (an empty dict, a tensor description), so nothing is ever
 * executed. Persistent ids ('storage', <class>, key, location, numel[, view]) become
 * PK_STORAGE values; the caller binds them to the bytes of the storage.
 *
 * Values live until pk_release(); strings point into the caller's buffer, which must
 * outlive the context. The reader never recurses, so self-referencing containers built
 * through the memo are harmless. */
#ifndef MF_CHECKPOINT_PICKLE_H
#define MF_CHECKPOINT_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "mf/checkpoint.h"

typedef enum pk_type {
    PK_NONE,
    PK_BOOL,
    PK_INT,    /* fits int64 */
    PK_BIGINT, /* LONG1 wider than 8 bytes: raw little-endian bytes in str */
    PK_FLOAT,
    PK_STR, /* unicode or byte string: bytes in str (not NUL-terminated) */
    PK_TUPLE,
    PK_LIST,
    PK_DICT,    /* dict or OrderedDict: items[2i] key, items[2i+1] value, file order */
    PK_GLOBAL,  /* an allowed global, see pk_global */
    PK_STORAGE, /* a persistent id naming a storage */
    PK_TENSOR,  /* a rebuilt-tensor description */
} pk_type;

typedef enum pk_global {
    PKG_ORDERED_DICT,
    PKG_REBUILD_TENSOR_V2,
    PKG_REBUILD_TENSOR,
    PKG_REBUILD_PARAMETER,
    PKG_STORAGE_CLASS,
} pk_global;

/* Element types of storages, from the class name (torch.FloatStorage -> PK_F32). */
typedef enum pk_dtype {
    PK_DT_UNKNOWN, /* a torch.*Storage we do not convert (complex, quantized) */
    PK_F32,
    PK_F64,
    PK_F16,
    PK_BF16,
    PK_I64,
    PK_I32,
    PK_I16,
    PK_I8,
    PK_U8,
    PK_BOOL8,
} pk_dtype;

typedef struct pk_str {
    const char *s;
    size_t len;
} pk_str;

typedef struct pk_value pk_value;
struct pk_value {
    pk_type type;
    union {
        int64_t i;  /* PK_BOOL, PK_INT */
        double f;   /* PK_FLOAT */
        pk_str str; /* PK_STR, PK_BIGINT */
        struct {    /* PK_TUPLE, PK_LIST, PK_DICT */
            pk_value **items;
            size_t n, cap; /* n items (a dict holds n/2 pairs) */
        } seq;
        struct { /* PK_GLOBAL */
            pk_global kind;
            pk_dtype dtype; /* for PKG_STORAGE_CLASS */
            pk_str name;    /* class name, e.g. "FloatStorage" */
        } global;
        struct { /* PK_STORAGE */
            pk_dtype dtype;
            pk_str class_name;
            pk_str key;
            int64_t numel;      /* elements visible through this storage */
            int64_t base;       /* first element in the root storage (legacy views) */
            int64_t root_numel; /* elements of the root storage as the pickle says */
        } storage;
        struct {               /* PK_TENSOR */
            pk_value *storage; /* a PK_STORAGE */
            int64_t offset;
            int ndim;
            int64_t size[MF_TENSOR_MAX_DIMS];
            int64_t stride[MF_TENSOR_MAX_DIMS];
        } tensor;
    } u;
};

typedef struct pk_chunk pk_chunk;

typedef struct pk_ctx {
    pk_chunk *chunks;    /* every value allocated, freed by pk_release */
    pk_value **storages; /* every PK_STORAGE created, in creation order */
    size_t nstorages, storages_cap;
} pk_ctx;

void pk_init(pk_ctx *ctx);
void pk_release(pk_ctx *ctx);

/* Unpickle one object from buf[0..len); *used = bytes up to and including STOP.
 * Returns 0, or a negative mf_status with a message (no file name: the caller adds it). */
int pk_load(pk_ctx *ctx, const uint8_t *buf, size_t len, size_t *used, pk_value **out);

/* Helpers for walking results. */
int pk_str_eq(pk_str s, const char *lit);
const pk_value *pk_dict_get(const pk_value *dict, const char *key);
size_t pk_dtype_size(pk_dtype dt);
const char *pk_type_name(pk_type t);

#endif
