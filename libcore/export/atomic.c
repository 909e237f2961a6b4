/* atomic.c - outputs that appear whole or not at all: write under a temporary name,
 * fsync, rename (a crash or a full disk never leaves a truncated file at the final
 * name), then fsync the folder so the rename itself survives a crash. */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export_internal.h"
#include "mf/durable.h"
#include "mf/status.h"

FILE *mf_atomic_open(const char *path, char **tmp_out)
{
    size_t n = strlen(path) + sizeof ".partial";
    char *tmp = malloc(n);
    if (!tmp) {
        mf_set_error(MF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(tmp, n, "%s.partial", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        mf_set_error(MF_ERR_IO, "cannot create '%s': %s", tmp, strerror(errno));
        free(tmp);
        return NULL;
    }
    *tmp_out = tmp;
    return f;
}

int mf_atomic_commit(FILE *f, char *tmp, const char *path)
{
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int err = errno;
    bad |= fclose(f) != 0;
    if (!bad && rename(tmp, path) == 0) {
        mf_fsync_parent_dir(path);
        free(tmp);
        return 0;
    }
    if (!bad)
        err = errno;
    mf_set_error(MF_ERR_IO, "cannot write '%s': %s", path, strerror(err));
    unlink(tmp);
    free(tmp);
    return MF_ERR_IO;
}

void mf_atomic_discard(FILE *f, char *tmp)
{
    if (f)
        fclose(f);
    if (tmp)
        unlink(tmp);
    free(tmp);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

void mf_remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

int mf_make_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int rc = 0;
    /* Create each missing component of the parent, like mkdir -p. */
    for (char *p = strchr(copy + 1, '/'); p && rc == 0; p = strchr(p + 1, '/')) {
        *p = 0;
        if (mkdir(copy, 0777) != 0 && errno != EEXIST)
            rc = mf_set_error(MF_ERR_IO, "cannot create '%s': %s", copy, strerror(errno));
        *p = '/';
    }
    free(copy);
    return rc;
}
