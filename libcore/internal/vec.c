/* vec.c - growable arrays (see vec.h). */
#include "vec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"

int mf_grow(void *array, size_t *cap, size_t need, size_t elem, size_t limit, const char *what)
{
    if (need <= *cap)
        return 0;
    if (limit && need > limit)
        return mf_set_error(MF_ERR_LIMIT, "more than %zu %s: over the limit", limit, what);
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : 2 * ncap;
    if (limit && ncap > limit)
        ncap = limit;
    size_t bytes;
    if (mf_size_mul(ncap, elem, &bytes, what) < 0)
        return MF_ERR_NOMEM;
    void *old;
    memcpy(&old, array, sizeof old);
    void *grown = realloc(old, bytes);
    if (!grown)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu %s", ncap, what);
    memcpy(array, &grown, sizeof grown);
    *cap = ncap;
    return 0;
}
