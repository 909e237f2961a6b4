/* sink_tree.c - a folder per class, OUT/<class>/<row>_<name>: symlinks to plain files
 * (absolute targets, so the tree can be moved), copies with `copy`, and the bytes of
 * archive members and RecordIO records written as files. Class folders are zero-padded
 * to one width so that sorted folder names give the classes in order (the rule of
 * torchvision's ImageFolder). Built in a temporary folder of the durable-output module,
 * published as OUT at the end. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "export_internal.h"
#include "export_sinks.h"
#include "mf/durable.h"
#include "mf/status.h"

typedef struct tree {
    mf_output *out;
    const char *tmp; /* where the tree is built until commit */
    uint8_t *made;   /* [K] class folder exists */
    int width;       /* digits of the class folder names */
} tree;

static int tree_begin(mf_exporter *ex)
{
    tree *t = calloc(1, sizeof *t);
    if (!t || !(t->made = calloc(ex->stats->classes ? ex->stats->classes : 1, 1))) {
        free(t);
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    }
    ex->state = t;
    t->width = 1;
    for (uint64_t k = ex->stats->classes; k >= 10; k /= 10)
        t->width++;
    unsigned flags = MF_OUTPUT_DIRECTORY | MF_OUTPUT_MAKE_PARENTS |
                     (ex->p->overwrite ? MF_OUTPUT_OVERWRITE : 0);
    int rc = mf_output_open(&t->out, ex->p->output, flags);
    if (rc == 0)
        t->tmp = mf_output_temp(t->out);
    return rc;
}

static int write_bytes(const char *path, const uint8_t *data, size_t size)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    size_t done = 0;
    while (fd >= 0 && done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        done += (size_t)w;
    }
    int err = errno;
    if (fd >= 0 && close(fd) != 0 && done == size)
        done = 0, err = errno;
    if (fd >= 0 && done == size)
        return 0;
    return mf_set_error(MF_ERR_IO, "cannot write '%s': %s", path, strerror(err));
}

/* "<row>_<last component of the id>", plus the image's extension when the name has none
 * that matches (RecordIO keys). */
static void file_name(char *out, size_t cap, uint64_t row, const char *id, const char *ext)
{
    const char *base = strrchr(id, '/');
    base = base ? base + 1 : id;
    const char *dot = strrchr(base, '.');
    int has_ext = dot && (strcasecmp(dot + 1, ext) == 0 ||
                          (strcmp(ext, "jpg") == 0 && strcasecmp(dot + 1, "jpeg") == 0));
    snprintf(out, cap, "%llu_%.200s%s%s", (unsigned long long)row, base, has_ext ? "" : ".",
             has_ext ? "" : ext);
}

static int tree_put(mf_exporter *ex, uint64_t row, const char *id, const uint8_t *data,
                    size_t size)
{
    tree *t = ex->state;
    int64_t c = ex->cls[row];
    char dir[PATH_MAX], name[256], path[PATH_MAX + 300];
    snprintf(dir, sizeof dir, "%s/%0*lld", t->tmp, t->width, (long long)c);
    if (!t->made[c] && mkdir(dir, 0777) != 0 && errno != EEXIST)
        return mf_set_error(MF_ERR_IO, "cannot create '%s': %s", dir, strerror(errno));
    t->made[c] = 1;
    file_name(name, sizeof name, row, id, mf_image_ext(data, size));
    snprintf(path, sizeof path, "%s/%s", dir, name);
    size_t clen;
    int rc;
    if (!ex->p->copy && mf_id_classify(id, &clen) == MF_ID_FILE) {
        char *src = mf_export_resolve(ex->p->root, id, clen);
        char *abs = src ? realpath(src, NULL) : NULL;
        rc = !src   ? mf_set_error(MF_ERR_NOMEM, "out of memory")
             : !abs ? mf_set_error(MF_ERR_IO, "cannot resolve '%s': %s", src, strerror(errno))
             : symlink(abs, path) != 0
                 ? mf_set_error(MF_ERR_IO, "cannot create '%s': %s", path, strerror(errno))
                 : 0;
        free(src);
        free(abs);
    } else {
        rc = write_bytes(path, data, size);
    }
    if (rc == 0)
        ex->stats->written++;
    return rc;
}

static void tree_free(mf_exporter *ex)
{
    tree *t = ex->state;
    free(t->made);
    free(t);
    ex->state = NULL;
}

static void tree_abort(mf_exporter *ex)
{
    if (!ex->state)
        return;
    mf_output_abort(((tree *)ex->state)->out);
    tree_free(ex);
}

static int tree_commit(mf_exporter *ex)
{
    tree *t = ex->state;
    int rc = mf_output_commit(t->out);
    if (rc == 0)
        ex->stats->files = ex->stats->written;
    tree_free(ex);
    return rc;
}

const mf_sink mf_sink_tree = {tree_begin, tree_put, tree_commit, tree_abort};
