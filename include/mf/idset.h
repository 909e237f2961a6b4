/* idset.h - a set of sample ids (strings), for de-duplication and resume.
 *
 *     mf_idset *seen = mf_idset_new(1 << 20);
 *     int added = mf_idset_add(seen, "a/b.jpg");   // 1 new, 0 already there, <0 no memory
 *     mf_idset_free(seen);
 *
 * Ids are kept as 128-bit XXH3 hashes (16 bytes each, whatever the id's length): two
 * different ids collide with probability about n^2 / 2^129 (1e-20 for a billion ids),
 * far below the odds of a disk error, so equal hashes are taken as equal ids. */
#ifndef MF_IDSET_H
#define MF_IDSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct mf_idset mf_idset;

/* `expected`: a size hint (the table grows as needed). NULL when out of memory. */
mf_idset *mf_idset_new(size_t expected);
int mf_idset_add(mf_idset *s, const char *id);
int mf_idset_contains(const mf_idset *s, const char *id);
void mf_idset_free(mf_idset *s);

#endif
