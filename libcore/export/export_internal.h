/* export_internal.h - helpers shared by libcore/export and libcore/report. */
#ifndef MF_EXPORT_INTERNAL_H
#define MF_EXPORT_INTERNAL_H

#include <stddef.h>
#include <stdio.h>

/* path[0..len) joined to root when root is set and the path is relative; malloc'ed,
 * NULL when out of memory. */
char *mf_export_resolve(const char *root, const char *path, size_t len);

/* Atomic single-file output: open "<path>.partial" for writing; mf_atomic_commit
 * flushes, fsyncs and renames it to `path` (then fsyncs the folder) so readers never see
 * a half-written file; mf_atomic_discard closes and removes it. Both close f. */
FILE *mf_atomic_open(const char *path, char **tmp_out);
int mf_atomic_commit(FILE *f, char *tmp, const char *path);
void mf_atomic_discard(FILE *f, char *tmp);

/* fsync the folder holding `path` (makes a rename durable). */

/* Create the folders leading to `path` (mkdir -p of its parent). */
int mf_make_parent(const char *path);

/* Remove a directory tree we created (never follows symlinks). */
void mf_remove_tree(const char *dir);

#endif
