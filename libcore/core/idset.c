/* idset.c - open-addressing hash set of 128-bit id hashes (see include/mf/idset.h). */
#include "mf/idset.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "mf/status.h"

struct mf_idset {
    XXH128_hash_t *slots; /* {0,0} marks an empty slot */
    size_t cap;           /* power of two */
    size_t count;
};

/* The all-zero hash marks empty slots; an id that hashes to it is stored as {0,1}. */
static XXH128_hash_t id_hash(const char *id)
{
    XXH128_hash_t h = XXH3_128bits(id, strlen(id));
    if (h.low64 == 0 && h.high64 == 0)
        h.low64 = 1;
    return h;
}

static int is_empty(XXH128_hash_t h) { return h.low64 == 0 && h.high64 == 0; }

mf_idset *mf_idset_new(size_t expected)
{
    mf_idset *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->cap = 1024;
    while (s->cap < expected * 2 && s->cap < ((size_t)1 << 40))
        s->cap *= 2;
    s->slots = calloc(s->cap, sizeof *s->slots);
    if (!s->slots) {
        free(s);
        return NULL;
    }
    return s;
}

static size_t find_slot(const XXH128_hash_t *slots, size_t cap, XXH128_hash_t h)
{
    size_t i = (size_t)h.low64 & (cap - 1);
    while (!is_empty(slots[i]) && !XXH128_isEqual(slots[i], h))
        i = (i + 1) & (cap - 1);
    return i;
}

static int grow(mf_idset *s)
{
    size_t cap = s->cap * 2;
    XXH128_hash_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu ids", s->count);
    for (size_t i = 0; i < s->cap; i++)
        if (!is_empty(s->slots[i]))
            slots[find_slot(slots, cap, s->slots[i])] = s->slots[i];
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

int mf_idset_add(mf_idset *s, const char *id)
{
    if (s->count * 2 >= s->cap && grow(s) < 0)
        return MF_ERR_NOMEM;
    XXH128_hash_t h = id_hash(id);
    size_t i = find_slot(s->slots, s->cap, h);
    if (!is_empty(s->slots[i]))
        return 0;
    s->slots[i] = h;
    s->count++;
    return 1;
}

int mf_idset_contains(const mf_idset *s, const char *id)
{
    return !is_empty(s->slots[find_slot(s->slots, s->cap, id_hash(id))]);
}


void mf_idset_free(mf_idset *s)
{
    if (!s)
        return;
    free(s->slots);
    free(s);
}

