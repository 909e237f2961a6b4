/* export_internal.h - helpers shared by the files of libcore/export. */
#ifndef MF_EXPORT_INTERNAL_H
#define MF_EXPORT_INTERNAL_H

#include <stddef.h>

/* path[0..len) joined to root when root is set and the path is relative; malloc'ed,
 * NULL when out of memory. */
char *mf_export_resolve(const char *root, const char *path, size_t len);

#endif
