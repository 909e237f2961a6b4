/* durable.c - make a finished file survive a crash (see mf/durable.h). */
#include "mf/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mf/status.h"

int mf_fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mf_set_error(MF_ERR_IO, "cannot open '%s' to sync it: %s", path,
                            strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    return rc < 0 ? mf_set_error(MF_ERR_IO, "cannot sync '%s': %s", path, strerror(err)) : 0;
}

int mf_fsync_parent_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return 0; /* best effort: some filesystems do not allow opening directories */
    fsync(fd);
    close(fd);
    return 0;
}
