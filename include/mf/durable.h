/* durable.h - flush finished files to disk before they are renamed into place, so a
 * crash leaves the old file or the new one, never a torn one. */
#ifndef MF_DURABLE_H
#define MF_DURABLE_H

/* fsync a file by path: 0 or MF_ERR_IO naming the path. */
int mf_fsync_path(const char *path);

/* fsync the directory holding path (after a rename into it), best effort: 0 unless out
 * of memory; some filesystems do not allow opening directories. */
int mf_fsync_parent_dir(const char *path);

#endif
