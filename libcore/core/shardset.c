/* shardset.c - checking that shard files form one complete K/N set. */
#include "mf/shardset.h"
#include "mf/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int same_group(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* "shards 4/16, 9/16 missing": the shards never seen, at most a few, then how many more. */
static int missing_error(const int *owner, int n, size_t given)
{
    char list[256] = "";
    size_t len = 0;
    int missing = 0, listed = 0;
    for (int k = 0; k < n; k++) {
        if (owner[k] >= 0)
            continue;
        missing++;
        if (listed < 8 && len < sizeof list - 16) {
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%d/%d", listed ? ", " : "",
                                    k, n);
            listed++;
        }
    }
    if (missing > listed)
        snprintf(list + len, sizeof list - len, " and %d more", missing - listed);
    return mf_set_error(MF_ERR_MISMATCH, "shard%s %s missing (%zu of %d given)",
                        missing > 1 ? "s" : "", list, given, n);
}

int mf_shard_set_check(const mf_shard_part *parts, size_t count, int allow_missing)
{
    const mf_shard_part *first = NULL; /* the first real shard: the set's N and group */
    for (size_t i = 0; i < count && !first; i++)
        if (parts[i].n > 0)
            first = &parts[i];
    if (!first)
        return 0;
    int n = first->n;
    int *owner = malloc((size_t)n * sizeof *owner);
    if (!owner)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (int k = 0; k < n; k++)
        owner[k] = -1;
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        const mf_shard_part *p = &parts[i];
        if (p->n <= 0)
            rc = mf_set_error(MF_ERR_MISMATCH,
                              "'%s' is not a shard, but '%s' is shard %d/%d: not one set",
                              p->name, first->name, first->k, n);
        else if (p->n != n)
            rc = mf_set_error(MF_ERR_MISMATCH,
                              "'%s' is shard %d/%d but '%s' is shard %d/%d: not one set",
                              p->name, p->k, p->n, first->name, first->k, n);
        else if (!same_group(p->group, first->group))
            rc = mf_set_error(MF_ERR_MISMATCH,
                              "'%s' is shard %d/%d of another job than '%s' (other inputs, "
                              "model or options)", p->name, p->k, n, first->name);
        else if (p->k < 0 || p->k >= n)
            rc = mf_set_error(MF_ERR_MISMATCH, "'%s' claims shard %d/%d", p->name, p->k, n);
        else if (owner[p->k] >= 0)
            rc = mf_set_error(MF_ERR_MISMATCH, "shard %d/%d given twice: '%s' and '%s'", p->k,
                              n, parts[owner[p->k]].name, p->name);
        else
            owner[p->k] = (int)i;
    }
    if (rc == 0 && count < (size_t)n) { /* n distinct valid shards seen: none missing */
        rc = missing_error(owner, n, count);
        if (allow_missing)
            rc = n - (int)count;
    }
    free(owner);
    return rc;
}
