/* pickle.c - the non-executing protocol-2 unpickler (see pickle.h).
 *
 * A straight loop over opcodes with an explicit value stack, a mark stack and a memo.
 * Limits: the stack, the mark stack and the memo are bounded (PK_MAX_STACK, PK_MAX_MEMO)
 * and every length is checked against the bytes left, so memory is O(pickle size). */
#include "pickle.h"

#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "vec.h"

#define PK_CHUNK_VALUES 1024
#define PK_MAX_STACK (1u << 22)
#define PK_MAX_MEMO (1u << 22)
#define PK_MAX_GLOBAL_LINE 256

struct pk_chunk {
    pk_chunk *next;
    size_t used;
    pk_value v[PK_CHUNK_VALUES];
};

typedef struct pk_vec {
    pk_value **v;
    size_t n, cap;
} pk_vec;

/* One pk_load: the input cursor and the machine's stacks. */
typedef struct pk_run {
    pk_ctx *ctx;
    const uint8_t *p, *end, *start;
    pk_vec stack;
    size_t *marks;
    size_t nmarks, marks_cap;
    pk_value **memo;
    size_t memo_cap;
} pk_run;

void pk_init(pk_ctx *ctx) { memset(ctx, 0, sizeof *ctx); }

static int is_container(pk_type t) { return t == PK_TUPLE || t == PK_LIST || t == PK_DICT; }

void pk_release(pk_ctx *ctx)
{
    pk_chunk *c = ctx->chunks;
    while (c) {
        pk_chunk *next = c->next;
        for (size_t i = 0; i < c->used; i++)
            if (is_container(c->v[i].type))
                free(c->v[i].u.seq.items);
        free(c);
        c = next;
    }
    free(ctx->storages);
    memset(ctx, 0, sizeof *ctx);
}

static pk_value *new_value(pk_ctx *ctx, pk_type type)
{
    if (!ctx->chunks || ctx->chunks->used == PK_CHUNK_VALUES) {
        pk_chunk *c = malloc(sizeof *c);
        if (!c)
            return NULL;
        c->next = ctx->chunks;
        c->used = 0;
        ctx->chunks = c;
    }
    pk_value *v = &ctx->chunks->v[ctx->chunks->used++];
    memset(v, 0, sizeof *v);
    v->type = type;
    return v;
}

static int seq_append(pk_value *seq, pk_value *item)
{
    int rc = MF_GROW(seq->u.seq.items, seq->u.seq.cap, seq->u.seq.n + 1, "pickle items");
    if (rc < 0)
        return rc;
    seq->u.seq.items[seq->u.seq.n++] = item;
    return 0;
}

static int push(pk_run *r, pk_value *v)
{
    if (!v)
        return mf_set_error(MF_ERR_NOMEM, "out of memory reading the pickle");
    int rc = MF_GROW_MAX(r->stack.v, r->stack.cap, r->stack.n + 1, PK_MAX_STACK,
                         "pickle stack entries");
    if (rc < 0)
        return rc;
    r->stack.v[r->stack.n++] = v;
    return 0;
}

/* The stack floor: values below the innermost mark belong to the enclosing level. */
static size_t floor_of(const pk_run *r) { return r->nmarks ? r->marks[r->nmarks - 1] : 0; }

static int pop(pk_run *r, pk_value **out, const char *op)
{
    if (r->stack.n <= floor_of(r))
        return mf_set_error(MF_ERR_FORMAT, "pickle stack underflow at %s", op);
    *out = r->stack.v[--r->stack.n];
    return 0;
}

static int top(pk_run *r, pk_value **out, const char *op)
{
    if (r->stack.n <= floor_of(r))
        return mf_set_error(MF_ERR_FORMAT, "pickle stack underflow at %s", op);
    *out = r->stack.v[r->stack.n - 1];
    return 0;
}

/* Pop the innermost mark; the values above it are stack.v[*first .. stack.n). */
static int pop_mark(pk_run *r, size_t *first, const char *op)
{
    if (!r->nmarks)
        return mf_set_error(MF_ERR_FORMAT, "pickle %s without a MARK", op);
    *first = r->marks[--r->nmarks];
    return 0;
}

static int need(pk_run *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n)
        return mf_set_error(MF_ERR_FORMAT, "truncated pickle (offset %zu)",
                            (size_t)(r->p - r->start));
    return 0;
}

/* ---- globals ---------------------------------------------------------------------- */

static const struct {
    const char *name;
    pk_dtype dtype;
} storage_classes[] = {
    {"FloatStorage", PK_F32},     {"DoubleStorage", PK_F64}, {"HalfStorage", PK_F16},
    {"BFloat16Storage", PK_BF16}, {"LongStorage", PK_I64},   {"IntStorage", PK_I32},
    {"ShortStorage", PK_I16},     {"CharStorage", PK_I8},    {"ByteStorage", PK_U8},
    {"BoolStorage", PK_BOOL8},
};

static int identifier(pk_str s)
{
    if (!s.len)
        return 0;
    for (size_t i = 0; i < s.len; i++) {
        char c = s.s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return 0;
    }
    return 1;
}

/* Classify module.name; 0 and the kind, or an error naming a forbidden global. */
static int classify_global(pk_str mod, pk_str name, pk_value *v)
{
    if (pk_str_eq(mod, "collections") && pk_str_eq(name, "OrderedDict")) {
        v->u.global.kind = PKG_ORDERED_DICT;
        return 0;
    }
    if (pk_str_eq(mod, "torch._utils")) {
        if (pk_str_eq(name, "_rebuild_tensor_v2"))
            v->u.global.kind = PKG_REBUILD_TENSOR_V2;
        else if (pk_str_eq(name, "_rebuild_tensor"))
            v->u.global.kind = PKG_REBUILD_TENSOR;
        else if (pk_str_eq(name, "_rebuild_parameter"))
            v->u.global.kind = PKG_REBUILD_PARAMETER;
        else
            goto forbidden;
        return 0;
    }
    /* Any torch.<X>Storage is a harmless class token (we never call it); dtypes we do not
     * convert are refused later, only if a kept tensor uses them. */
    if (pk_str_eq(mod, "torch") && identifier(name) && name.len > 7 &&
        !memcmp(name.s + name.len - 7, "Storage", 7)) {
        v->u.global.kind = PKG_STORAGE_CLASS;
        v->u.global.dtype = PK_DT_UNKNOWN;
        v->u.global.name = name;
        for (size_t i = 0; i < sizeof storage_classes / sizeof *storage_classes; i++)
            if (pk_str_eq(name, storage_classes[i].name))
                v->u.global.dtype = storage_classes[i].dtype;
        return 0;
    }
forbidden:
    return mf_set_error(MF_ERR_UNSUPPORTED, "forbidden global '%.*s.%.*s' in the pickle",
                        (int)mod.len, mod.s, (int)name.len, name.s);
}

static int read_line(pk_run *r, pk_str *out)
{
    const uint8_t *nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
    if (!nl)
        return mf_set_error(MF_ERR_FORMAT, "truncated pickle (GLOBAL without newline)");
    if ((size_t)(nl - r->p) > PK_MAX_GLOBAL_LINE)
        return mf_set_error(MF_ERR_LIMIT, "pickle GLOBAL name too long");
    out->s = (const char *)r->p;
    out->len = (size_t)(nl - r->p);
    r->p = nl + 1;
    return 0;
}

static int op_global(pk_run *r)
{
    pk_str mod = {0}, name = {0};
    int rc;
    if ((rc = read_line(r, &mod)) < 0 || (rc = read_line(r, &name)) < 0)
        return rc;
    pk_value *v = new_value(r->ctx, PK_GLOBAL);
    if (!v)
        return mf_set_error(MF_ERR_NOMEM, "out of memory reading the pickle");
    if ((rc = classify_global(mod, name, v)) < 0)
        return rc;
    return push(r, v);
}

/* ---- REDUCE: the allowed "calls", evaluated as plain data -------------------------- */

static int int_tuple(const pk_value *t, int64_t *dst, int *n, const char *what)
{
    if (t->type != PK_TUPLE || t->u.seq.n > MF_TENSOR_MAX_DIMS)
        return mf_set_error(MF_ERR_FORMAT, "tensor %s is not a tuple of at most %d ints", what,
                            MF_TENSOR_MAX_DIMS);
    for (size_t i = 0; i < t->u.seq.n; i++) {
        const pk_value *e = t->u.seq.items[i];
        if (e->type != PK_INT || e->u.i < 0)
            return mf_set_error(MF_ERR_FORMAT, "tensor %s holds a negative or non-int value",
                                what);
        dst[i] = e->u.i;
    }
    *n = (int)t->u.seq.n;
    return 0;
}

static int rebuild_tensor(pk_run *r, const pk_value *args, pk_value **out)
{
    size_t n = args->u.seq.n;
    pk_value **a = args->u.seq.items;
    if (n < 4 || n > 7)
        return mf_set_error(MF_ERR_FORMAT, "tensor rebuild with %zu arguments", n);
    if (a[0]->type != PK_STORAGE)
        return mf_set_error(MF_ERR_FORMAT, "tensor rebuild without a storage (got %s)",
                            pk_type_name(a[0]->type));
    if (a[1]->type != PK_INT || a[1]->u.i < 0)
        return mf_set_error(MF_ERR_FORMAT, "tensor storage offset is not a non-negative int");
    pk_value *t = new_value(r->ctx, PK_TENSOR);
    if (!t)
        return mf_set_error(MF_ERR_NOMEM, "out of memory reading the pickle");
    int ns, nst, rc;
    if ((rc = int_tuple(a[2], t->u.tensor.size, &ns, "size")) < 0 ||
        (rc = int_tuple(a[3], t->u.tensor.stride, &nst, "stride")) < 0)
        return rc;
    if (ns != nst)
        return mf_set_error(MF_ERR_FORMAT, "tensor size has %d dims but stride %d", ns, nst);
    t->u.tensor.storage = a[0];
    t->u.tensor.offset = a[1]->u.i;
    t->u.tensor.ndim = ns;
    *out = t;
    return 0;
}

static int op_reduce(pk_run *r)
{
    pk_value *args = NULL, *fn = NULL, *res = NULL;
    int rc;
    if ((rc = pop(r, &args, "REDUCE")) < 0 || (rc = pop(r, &fn, "REDUCE")) < 0)
        return rc;
    if (fn->type != PK_GLOBAL || args->type != PK_TUPLE)
        return mf_set_error(MF_ERR_FORMAT, "pickle REDUCE of a %s with %s arguments",
                            pk_type_name(fn->type), pk_type_name(args->type));
    switch (fn->u.global.kind) {
    case PKG_ORDERED_DICT:
        if (args->u.seq.n != 0)
            return mf_set_error(MF_ERR_UNSUPPORTED, "OrderedDict built with arguments");
        res = new_value(r->ctx, PK_DICT);
        break;
    case PKG_REBUILD_TENSOR_V2:
    case PKG_REBUILD_TENSOR:
        if ((rc = rebuild_tensor(r, args, &res)) < 0)
            return rc;
        break;
    case PKG_REBUILD_PARAMETER:
        if (args->u.seq.n < 1 || args->u.seq.items[0]->type != PK_TENSOR)
            return mf_set_error(MF_ERR_FORMAT, "parameter rebuild without a tensor");
        res = args->u.seq.items[0];
        break;
    case PKG_STORAGE_CLASS:
        return mf_set_error(MF_ERR_UNSUPPORTED, "pickle calls storage class 'torch.%.*s'",
                            (int)fn->u.global.name.len, fn->u.global.name.s);
    }
    return push(r, res);
}

/* BINPERSID: ('storage', <class>, key, location, numel[, (view_key, offset, size)]). */
static int op_persid(pk_run *r)
{
    pk_value *pid = NULL;
    int rc = pop(r, &pid, "BINPERSID");
    if (rc < 0)
        return rc;
    if (pid->type != PK_TUPLE || (pid->u.seq.n != 5 && pid->u.seq.n != 6))
        return mf_set_error(MF_ERR_FORMAT, "persistent id is not a 5- or 6-tuple");
    pk_value **a = pid->u.seq.items;
    if (a[0]->type != PK_STR || !pk_str_eq(a[0]->u.str, "storage") || a[1]->type != PK_GLOBAL ||
        a[1]->u.global.kind != PKG_STORAGE_CLASS || a[2]->type != PK_STR ||
        a[4]->type != PK_INT || a[4]->u.i < 0)
        return mf_set_error(MF_ERR_FORMAT, "persistent id is not a storage reference");
    pk_value *s = new_value(r->ctx, PK_STORAGE);
    if (!s)
        return mf_set_error(MF_ERR_NOMEM, "out of memory reading the pickle");
    s->u.storage.dtype = a[1]->u.global.dtype;
    s->u.storage.class_name = a[1]->u.global.name;
    s->u.storage.key = a[2]->u.str;
    s->u.storage.numel = s->u.storage.root_numel = a[4]->u.i;
    if (pid->u.seq.n == 6 && a[5]->type != PK_NONE) {
        /* A legacy view: elements [offset, offset+size) of the root storage. */
        const pk_value *vm = a[5];
        if (vm->type != PK_TUPLE || vm->u.seq.n != 3 || vm->u.seq.items[1]->type != PK_INT ||
            vm->u.seq.items[2]->type != PK_INT || vm->u.seq.items[1]->u.i < 0 ||
            vm->u.seq.items[2]->u.i < 0)
            return mf_set_error(MF_ERR_FORMAT, "malformed storage view in a persistent id");
        s->u.storage.base = vm->u.seq.items[1]->u.i;
        s->u.storage.numel = vm->u.seq.items[2]->u.i;
    }
    pk_ctx *c = r->ctx;
    if ((rc = MF_GROW_MAX(c->storages, c->storages_cap, c->nstorages + 1, PK_MAX_STACK,
                          "pickle storages")) < 0)
        return rc;
    c->storages[c->nstorages++] = s;
    return push(r, s);
}

/* ---- containers -------------------------------------------------------------------- */

static int op_tuple_n(pk_run *r, size_t n)
{
    if (r->stack.n - floor_of(r) < n)
        return mf_set_error(MF_ERR_FORMAT, "pickle stack underflow at TUPLE%zu", n);
    pk_value *t = new_value(r->ctx, PK_TUPLE);
    if (!t)
        return mf_set_error(MF_ERR_NOMEM, "out of memory reading the pickle");
    size_t first = r->stack.n - n;
    for (size_t i = first; i < r->stack.n; i++)
        if (seq_append(t, r->stack.v[i]) < 0)
            return MF_ERR_NOMEM;
    r->stack.n = first;
    return push(r, t);
}

static int op_tuple_mark(pk_run *r)
{
    size_t first = 0;
    int rc = pop_mark(r, &first, "TUPLE");
    if (rc < 0)
        return rc;
    return op_tuple_n(r, r->stack.n - first);
}

/* SETITEMS / APPENDS: move the values above the mark into the container below it. */
static int op_fill(pk_run *r, pk_type want, const char *op)
{
    size_t first = 0;
    int rc = pop_mark(r, &first, op);
    if (rc < 0)
        return rc;
    if (first <= floor_of(r) || first > r->stack.n)
        return mf_set_error(MF_ERR_FORMAT, "pickle %s without a target", op);
    pk_value *target = r->stack.v[first - 1];
    size_t n = r->stack.n - first;
    if (target->type != want)
        return mf_set_error(MF_ERR_FORMAT, "pickle %s on a %s", op, pk_type_name(target->type));
    if (want == PK_DICT && n % 2)
        return mf_set_error(MF_ERR_FORMAT, "pickle SETITEMS with an odd number of values");
    for (size_t i = first; i < r->stack.n; i++)
        if ((rc = seq_append(target, r->stack.v[i])) < 0)
            return rc;
    r->stack.n = first;
    return 0;
}

static int op_setitem(pk_run *r)
{
    pk_value *k = NULL, *v = NULL, *d = NULL;
    int rc;
    if ((rc = pop(r, &v, "SETITEM")) < 0 || (rc = pop(r, &k, "SETITEM")) < 0 ||
        (rc = top(r, &d, "SETITEM")) < 0)
        return rc;
    if (d->type != PK_DICT)
        return mf_set_error(MF_ERR_FORMAT, "pickle SETITEM on a %s", pk_type_name(d->type));
    if ((rc = seq_append(d, k)) < 0 || (rc = seq_append(d, v)) < 0)
        return rc;
    return 0;
}

static int op_append(pk_run *r)
{
    pk_value *v = NULL, *l = NULL;
    int rc;
    if ((rc = pop(r, &v, "APPEND")) < 0 || (rc = top(r, &l, "APPEND")) < 0)
        return rc;
    if (l->type != PK_LIST)
        return mf_set_error(MF_ERR_FORMAT, "pickle APPEND on a %s", pk_type_name(l->type));
    return seq_append(l, v);
}

/* ---- memo -------------------------------------------------------------------------- */

static int memo_put(pk_run *r, size_t idx)
{
    pk_value *v = NULL;
    int rc = top(r, &v, "PUT");
    if (rc < 0)
        return rc;
    if (idx >= r->memo_cap) {
        size_t old = r->memo_cap;
        if ((rc = MF_GROW_MAX(r->memo, r->memo_cap, idx + 1, PK_MAX_MEMO,
                              "pickle memo "
                              "entries")) < 0)
            return rc;
        memset(r->memo + old, 0, (r->memo_cap - old) * sizeof(pk_value *));
    }
    r->memo[idx] = v;
    return 0;
}

static int memo_get(pk_run *r, size_t idx)
{
    if (idx >= r->memo_cap || !r->memo[idx])
        return mf_set_error(MF_ERR_FORMAT, "pickle GET of unknown memo entry %zu", idx);
    return push(r, r->memo[idx]);
}

/* ---- scalars ----------------------------------------------------------------------- */

static int push_int(pk_run *r, pk_type type, int64_t i)
{
    pk_value *v = new_value(r->ctx, type);
    if (v)
        v->u.i = i;
    return push(r, v);
}

static int push_str(pk_run *r, size_t len)
{
    int rc = need(r, len);
    if (rc < 0)
        return rc;
    pk_value *v = new_value(r->ctx, PK_STR);
    if (v) {
        v->u.str.s = (const char *)r->p;
        v->u.str.len = len;
    }
    r->p += len;
    return push(r, v);
}

static int op_long1(pk_run *r)
{
    int rc = need(r, 1);
    if (rc < 0)
        return rc;
    size_t n = *r->p++;
    if ((rc = need(r, n)) < 0)
        return rc;
    if (n > 8) {
        pk_value *v = new_value(r->ctx, PK_BIGINT);
        if (v) {
            v->u.str.s = (const char *)r->p;
            v->u.str.len = n;
        }
        r->p += n;
        return push(r, v);
    }
    uint64_t u = 0;
    for (size_t i = 0; i < n; i++)
        u |= (uint64_t)r->p[i] << (8 * i);
    if (n && n < 8 && (r->p[n - 1] & 0x80))
        u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    r->p += n;
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return push_int(r, PK_INT, i);
}

static int op_binfloat(pk_run *r)
{
    int rc = need(r, 8);
    if (rc < 0)
        return rc;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | r->p[i]; /* big-endian */
    r->p += 8;
    pk_value *v = new_value(r->ctx, PK_FLOAT);
    if (v)
        memcpy(&v->u.f, &u, sizeof u);
    return push(r, v);
}

/* ---- the loop ---------------------------------------------------------------------- */

static int op_mark(pk_run *r)
{
    int rc = MF_GROW_MAX(r->marks, r->marks_cap, r->nmarks + 1, PK_MAX_STACK, "pickle marks");
    if (rc < 0)
        return rc;
    r->marks[r->nmarks++] = r->stack.n;
    return 0;
}

/* Opcodes with a fixed-size little-endian argument: read it (0 if none). */
static int arg(pk_run *r, size_t n, uint32_t *out)
{
    int rc = need(r, n);
    if (rc < 0)
        return rc;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint32_t)r->p[i] << (8 * i);
    r->p += n;
    *out = v;
    return 0;
}

static int step(pk_run *r, uint8_t op, int *stop)
{
    uint32_t a = 0;
    int rc;
    pk_value *v = NULL;
    switch (op) {
    case 0x80: /* PROTO */
        if ((rc = arg(r, 1, &a)) < 0)
            return rc;
        return a <= 5 ? 0 : mf_set_error(MF_ERR_UNSUPPORTED, "pickle protocol %u", a);
    case '.': *stop = 1; return 0;                                   /* STOP */
    case '}': return push(r, new_value(r->ctx, PK_DICT));            /* EMPTY_DICT */
    case ']': return push(r, new_value(r->ctx, PK_LIST));            /* EMPTY_LIST */
    case ')': return push(r, new_value(r->ctx, PK_TUPLE));           /* EMPTY_TUPLE */
    case 'N': return push(r, new_value(r->ctx, PK_NONE));            /* NONE */
    case 0x88: return push_int(r, PK_BOOL, 1);                       /* NEWTRUE */
    case 0x89: return push_int(r, PK_BOOL, 0);                       /* NEWFALSE */
    case '(': return op_mark(r);                                     /* MARK */
    case 't': return op_tuple_mark(r);                               /* TUPLE */
    case 0x85: return op_tuple_n(r, 1);                              /* TUPLE1 */
    case 0x86: return op_tuple_n(r, 2);                              /* TUPLE2 */
    case 0x87: return op_tuple_n(r, 3);                              /* TUPLE3 */
    case 'q': return (rc = arg(r, 1, &a)) < 0 ? rc : memo_put(r, a); /* BINPUT */
    case 'r': return (rc = arg(r, 4, &a)) < 0 ? rc : memo_put(r, a); /* LONG_BINPUT */
    case 'h': return (rc = arg(r, 1, &a)) < 0 ? rc : memo_get(r, a); /* BINGET */
    case 'j': return (rc = arg(r, 4, &a)) < 0 ? rc : memo_get(r, a); /* LONG_BINGET */
    case 'X':
    case 'T': /* BINUNICODE, BINSTRING */ return (rc = arg(r, 4, &a)) < 0 ? rc : push_str(r, a);
    case 'U': return (rc = arg(r, 1, &a)) < 0 ? rc : push_str(r, a); /* SHORT_BINSTRING */
    case 'K': return (rc = arg(r, 1, &a)) < 0 ? rc : push_int(r, PK_INT, a); /* BININT1 */
    case 'M': return (rc = arg(r, 2, &a)) < 0 ? rc : push_int(r, PK_INT, a); /* BININT2 */
    case 'J':                                                                /* BININT */
        return (rc = arg(r, 4, &a)) < 0 ? rc : push_int(r, PK_INT, (int32_t)a);
    case 'G': return op_binfloat(r);      /* BINFLOAT */
    case 0x8a: return op_long1(r);        /* LONG1 */
    case 'c': return op_global(r);        /* GLOBAL */
    case 'R': return op_reduce(r);        /* REDUCE */
    case 'Q': return op_persid(r);        /* BINPERSID */
    case 'b': return pop(r, &v, "BUILD"); /* BUILD: state ignored (e.g. _metadata) */
    case 's': return op_setitem(r);       /* SETITEM */
    case 'u': return op_fill(r, PK_DICT, "SETITEMS");                /* SETITEMS */
    case 'a': return op_append(r);                                   /* APPEND */
    case 'e': return op_fill(r, PK_LIST, "APPENDS");                 /* APPENDS */
    case '0': return pop(r, &v, "POP");                              /* POP */
    case '2': return (rc = top(r, &v, "DUP")) < 0 ? rc : push(r, v); /* DUP */
    }
    if (op >= 0x20 && op < 0x7f)
        return mf_set_error(MF_ERR_UNSUPPORTED, "unsupported pickle opcode '%c' (0x%02x)", op,
                            op);
    return mf_set_error(MF_ERR_UNSUPPORTED, "unsupported pickle opcode 0x%02x", op);
}

int pk_load(pk_ctx *ctx, const uint8_t *buf, size_t len, size_t *used, pk_value **out)
{
    pk_run r = {.ctx = ctx, .p = buf, .start = buf, .end = buf + len};
    int stop = 0, rc = 0;
    while (!stop) {
        if (r.p >= r.end) {
            rc = mf_set_error(MF_ERR_FORMAT, "truncated pickle (no STOP)");
            break;
        }
        uint8_t op = *r.p++;
        if ((rc = step(&r, op, &stop)) < 0)
            break;
    }
    if (rc == 0 && (r.stack.n != 1 || r.nmarks))
        rc = mf_set_error(MF_ERR_FORMAT, "pickle ends with %zu values on the stack", r.stack.n);
    if (rc == 0) {
        *out = r.stack.v[0];
        *used = (size_t)(r.p - buf);
    }
    free(r.stack.v);
    free(r.marks);
    free(r.memo);
    return rc;
}

/* ---- helpers ----------------------------------------------------------------------- */

int pk_str_eq(pk_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && !memcmp(s.s, lit, n);
}

const pk_value *pk_dict_get(const pk_value *dict, const char *key)
{
    if (dict->type != PK_DICT)
        return NULL;
    for (size_t i = 0; i + 1 < dict->u.seq.n; i += 2) {
        const pk_value *k = dict->u.seq.items[i];
        if (k->type == PK_STR && pk_str_eq(k->u.str, key))
            return dict->u.seq.items[i + 1];
    }
    return NULL;
}

size_t pk_dtype_size(pk_dtype dt)
{
    switch (dt) {
    case PK_F64:
    case PK_I64: return 8;
    case PK_F32:
    case PK_I32: return 4;
    case PK_F16:
    case PK_BF16:
    case PK_I16: return 2;
    case PK_I8:
    case PK_U8:
    case PK_BOOL8: return 1;
    case PK_DT_UNKNOWN: break;
    }
    return 0;
}

const char *pk_type_name(pk_type t)
{
    static const char *names[] = {"None",  "bool", "int",  "int",    "float",   "str",
                                  "tuple", "list", "dict", "global", "storage", "tensor"};
    return (unsigned)t < sizeof names / sizeof *names ? names[t] : "?";
}
