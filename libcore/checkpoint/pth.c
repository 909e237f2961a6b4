/* pth.c - the storage-blob table shared by both containers (see pth.h). */
#include "pth.h"

#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "vec.h"

void pth_init(pth_file *f)
{
    memset(f, 0, sizeof *f);
    pk_init(&f->pk);
}

void pth_release(pth_file *f)
{
    pk_release(&f->pk);
    for (size_t i = 0; i < f->nowned; i++)
        free(f->owned[i]);
    free(f->owned);
    free(f->blobs);
    memset(f, 0, sizeof *f);
}

/* Takes ownership of p even on failure (frees it then). */
int pth_own(pth_file *f, void *p)
{
    int rc = MF_GROW(f->owned, f->owned_cap, f->nowned + 1, "checkpoint buffers");
    if (rc < 0) {
        free(p);
        return rc;
    }
    f->owned[f->nowned++] = p;
    return 0;
}

int pth_add_blob(pth_file *f, pk_str key, const uint8_t *data, size_t nbytes)
{
    int rc = MF_GROW(f->blobs, f->blobs_cap, f->nblobs + 1, "checkpoint storages");
    if (rc < 0)
        return rc;
    f->blobs[f->nblobs++] = (pth_blob){key, data, nbytes};
    return 0;
}

static int key_cmp(pk_str a, pk_str b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    int c = memcmp(a.s, b.s, n);
    if (c)
        return c;
    return a.len < b.len ? -1 : a.len > b.len;
}

static int blob_cmp(const void *a, const void *b)
{
    return key_cmp(((const pth_blob *)a)->key, ((const pth_blob *)b)->key);
}

int pth_sort_blobs(pth_file *f)
{
    if (f->nblobs)
        qsort(f->blobs, f->nblobs, sizeof *f->blobs, blob_cmp);
    for (size_t i = 1; i < f->nblobs; i++)
        if (!key_cmp(f->blobs[i - 1].key, f->blobs[i].key))
            return mf_set_error(MF_ERR_FORMAT, "storage '%.*s' appears twice",
                                (int)f->blobs[i].key.len, f->blobs[i].key.s);
    return 0;
}

const pth_blob *pth_find_blob(const pth_file *f, pk_str key)
{
    size_t lo = 0, hi = f->nblobs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(f->blobs[mid].key, key);
        if (!c)
            return &f->blobs[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
