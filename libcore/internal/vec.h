/* vec.h - growable arrays: one checked doubling step instead of the realloc idiom retyped
 * in every module. Internal to libcore.
 *
 *     item *items = NULL;
 *     size_t n = 0, cap = 0;
 *     if (MF_GROW(items, cap, n + 1, "list entries") < 0) return MF_ERR_NOMEM;
 *     items[n++] = x;
 */
#ifndef MF_INTERNAL_VEC_H
#define MF_INTERNAL_VEC_H

#include <stddef.h>

/* Make *array (a pointer to a malloc'ed array of `cap` elements of `elem` bytes, or to
 * NULL) hold at least `need` elements, doubling the capacity, never beyond `limit`
 * elements (0: no limit but the size arithmetic, which is checked). Returns 0;
 * MF_ERR_LIMIT when need > limit (input that is likely malformed: `what` is named); or
 * MF_ERR_NOMEM. On failure the array and *cap are unchanged. */
int mf_grow(void *array, size_t *cap, size_t need, size_t elem, size_t limit, const char *what);

#define MF_GROW(arr, cap, need, what) mf_grow(&(arr), &(cap), (need), sizeof *(arr), 0, (what))
#define MF_GROW_MAX(arr, cap, need, limit, what)                                               \
    mf_grow(&(arr), &(cap), (need), sizeof *(arr), (limit), (what))

#endif
