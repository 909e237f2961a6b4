/* pth_legacy.c - torch.save's legacy (pre-zip) container.
 *
 * Five pickles in a row: the magic number 0x1950a86a20f9469cfc6c, the protocol version
 * 1001, a sys-info dict, the saved object, the list of storage keys. Then, for each key in
 * that list's order, an int64 element count and the storage's raw little-endian bytes.
 * The element size comes from the storage class named in the object's persistent ids. */
#include "pth.h"

#include <stdlib.h>
#include <string.h>

#include "mf/status.h"

static const uint8_t legacy_magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                         0x20, 0x6a, 0xa8, 0x50, 0x19};

typedef struct legacy_cursor {
    const uint8_t *buf;
    size_t len, pos;
} legacy_cursor;

static int next_pickle(pth_file *f, legacy_cursor *c, pk_value **out, const char *what)
{
    size_t used;
    int rc = pk_load(&f->pk, c->buf + c->pos, c->len - c->pos, &used, out);
    if (rc < 0)
        return mf_wrap_error(rc, "legacy checkpoint %s", what);
    c->pos += used;
    return 0;
}

static int check_header(pth_file *f, legacy_cursor *c)
{
    pk_value *magic, *proto, *info;
    int rc;
    if ((rc = next_pickle(f, c, &magic, "magic number")) < 0)
        return rc;
    if (magic->type != PK_BIGINT || magic->u.str.len != sizeof legacy_magic ||
        memcmp(magic->u.str.s, legacy_magic, sizeof legacy_magic))
        return mf_set_error(MF_ERR_FORMAT, "not a PyTorch checkpoint (no legacy magic number)");
    if ((rc = next_pickle(f, c, &proto, "protocol version")) < 0)
        return rc;
    if (proto->type != PK_INT || proto->u.i != 1001)
        return mf_set_error(MF_ERR_UNSUPPORTED, "unsupported legacy protocol version");
    if ((rc = next_pickle(f, c, &info, "sys info")) < 0)
        return rc;
    const pk_value *le = pk_dict_get(info, "little_endian");
    if (info->type != PK_DICT)
        return mf_set_error(MF_ERR_FORMAT, "legacy checkpoint sys info is not a dict");
    if (le && le->type == PK_BOOL && !le->u.i)
        return mf_set_error(MF_ERR_UNSUPPORTED, "big-endian checkpoint");
    return 0;
}

static int storage_cmp(const void *a, const void *b)
{
    pk_str x = (*(pk_value *const *)a)->u.storage.key,
           y = (*(pk_value *const *)b)->u.storage.key;
    size_t n = x.len < y.len ? x.len : y.len;
    int c = memcmp(x.s, y.s, n);
    return c ? c : (x.len < y.len ? -1 : x.len > y.len);
}

/* Element size of storage `key` as the persistent ids declare it (0 if unknown dtype). */
static int element_size(pk_value **sorted, size_t n, pk_str key, size_t *esz)
{
    pk_value probe = {.type = PK_STORAGE, .u.storage.key = key}, *pp = &probe;
    pk_value **hit = n ? bsearch(&pp, sorted, n, sizeof *sorted, storage_cmp) : NULL;
    if (!hit)
        return mf_set_error(MF_ERR_FORMAT, "legacy storage '%.*s' is never referenced",
                            (int)key.len, key.s);
    *esz = pk_dtype_size((*hit)->u.storage.dtype);
    if (!*esz) /* an unsupported dtype: its bytes cannot even be skipped */
        return mf_set_error(MF_ERR_UNSUPPORTED, "unsupported dtype 'torch.%.*s'",
                            (int)(*hit)->u.storage.class_name.len,
                            (*hit)->u.storage.class_name.s);
    return 0;
}

static int read_storages(pth_file *f, legacy_cursor *c, const pk_value *keys)
{
    size_t n = f->pk.nstorages;
    pk_value **sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (n) { /* with none, the table is NULL: not even a 0-byte copy from it */
        memcpy(sorted, f->pk.storages, n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, storage_cmp);
    }
    int rc = 0;
    for (size_t i = 0; i < keys->u.seq.n && rc == 0; i++) {
        const pk_value *k = keys->u.seq.items[i];
        size_t esz, nbytes;
        if (k->type != PK_STR) {
            rc = mf_set_error(MF_ERR_FORMAT, "legacy storage key is not a string");
            break;
        }
        if ((rc = element_size(sorted, n, k->u.str, &esz)) < 0)
            break;
        if (c->len - c->pos < 8) {
            rc = mf_set_error(MF_ERR_FORMAT, "truncated legacy checkpoint (storage '%.*s')",
                              (int)k->u.str.len, k->u.str.s);
            break;
        }
        uint64_t numel = 0;
        for (int b = 0; b < 8; b++)
            numel |= (uint64_t)c->buf[c->pos + b] << (8 * b);
        c->pos += 8;
        if (numel > (c->len - c->pos) / esz) {
            rc = mf_set_error(MF_ERR_FORMAT,
                              "truncated legacy checkpoint: storage '%.*s' needs %llu bytes, "
                              "%zu left",
                              (int)k->u.str.len, k->u.str.s, (unsigned long long)numel * esz,
                              c->len - c->pos);
            break;
        }
        nbytes = (size_t)numel * esz;
        rc = pth_add_blob(f, k->u.str, c->buf + c->pos, nbytes);
        c->pos += nbytes;
    }
    free(sorted);
    return rc;
}

int pth_legacy_read(pth_file *f, const uint8_t *buf, size_t len)
{
    legacy_cursor c = {buf, len, 0};
    pk_value *keys;
    int rc;
    if ((rc = check_header(f, &c)) < 0 || (rc = next_pickle(f, &c, &f->root, "object")) < 0 ||
        (rc = next_pickle(f, &c, &keys, "storage keys")) < 0)
        return rc;
    if (keys->type != PK_LIST)
        return mf_set_error(MF_ERR_FORMAT, "legacy storage keys are not a list");
    return read_storages(f, &c, keys);
}
