/* sink_tree.c - a folder per class, OUT/<class>/<row>_<name>: symlinks to plain files
 * (absolute targets, so the tree can be moved), copies with `copy`, and the bytes of
 * archive members and RecordIO records written as files. Class folders are named after
 * the identities (/labels/name) or numbered (see name_folders). Built in a temporary
 * folder of the durable-output module, published as OUT at the end. */
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
#include "mf/image.h"
#include "mf/status.h"

typedef struct tree {
    mf_output *out;
    const char *tmp; /* where the tree is built until commit */
    uint8_t *made;   /* [K] class folder exists */
    char **folder;   /* [K] class folder names */
} tree;

#define MAX_FOLDER_BYTES 120

/* A label name as one folder name: no '/', NUL, backslash or control characters (each
 * becomes '_'), not "." or "..", at most MAX_FOLDER_BYTES bytes cut at a UTF-8 boundary. */
static char *sanitise(const char *name)
{
    size_t n = strlen(name);
    if (n > MAX_FOLDER_BYTES) {
        n = MAX_FOLDER_BYTES;
        while (n > 0 && ((unsigned char)name[n] & 0xc0) == 0x80)
            n--;
    }
    char *f = n ? strndup(name, n) : strdup("_");
    for (char *c = f; f && *c; c++)
        if (*c == '/' || *c == '\\' || (unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '_';
    if (f && (!strcmp(f, ".") || !strcmp(f, "..")))
        f[0] = '_';
    return f;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(**(char *const *const *)a, **(char *const *const *)b);
}

/* Is any folder name used twice? dup[k] is set for every member of such a group. */
static int mark_duplicates(char **folder, uint64_t k, uint8_t *dup)
{
    char ***by = malloc((k ? k : 1) * sizeof *by);
    if (!by)
        return -1;
    for (uint64_t c = 0; c < k; c++)
        by[c] = &folder[c];
    qsort(by, k, sizeof *by, cmp_str_ptr);
    int any = 0;
    memset(dup, 0, k);
    for (uint64_t i = 1; i < k; i++)
        if (strcmp(*by[i], *by[i - 1]) == 0) {
            dup[by[i] - folder] = dup[by[i - 1] - folder] = 1;
            any = 1;
        }
    free(by);
    return any;
}

/* Folder names: the identities' names when the store has them (names that sanitise alike
 * get "~<class>" appended), else the class numbers zero-padded to one width so that sorted
 * folders give the classes in order (torchvision's ImageFolder). */
static int name_folders(mf_exporter *ex, tree *t)
{
    uint64_t k = ex->stats->classes;
    int width = 1;
    for (uint64_t v = k; v >= 10; v /= 10)
        width++;
    if (!(t->folder = calloc(k ? k : 1, sizeof *t->folder)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (uint64_t c = 0; c < k; c++) {
        char num[32];
        snprintf(num, sizeof num, "%0*llu", width, (unsigned long long)c);
        const char *name = ex->class_name ? ex->class_name[c] : NULL;
        if (!(t->folder[c] = name ? sanitise(name) : strdup(num)))
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
    }
    int dup = mark_duplicates(t->folder, k, t->made);
    for (uint64_t c = 0; dup > 0 && c < k; c++) {
        if (!t->made[c])
            continue;
        size_t n = strlen(t->folder[c]) + 32;
        char *f = malloc(n);
        if (!f)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        snprintf(f, n, "%s~%llu", t->folder[c], (unsigned long long)c);
        free(t->folder[c]);
        t->folder[c] = f;
    }
    /* A name "a~1" given by the user may still collide: numbers for all, then. */
    if (dup > 0 && mark_duplicates(t->folder, k, t->made) > 0)
        for (uint64_t c = 0; c < k; c++) {
            char num[32];
            snprintf(num, sizeof num, "%0*llu", width, (unsigned long long)c);
            free(t->folder[c]);
            if (!(t->folder[c] = strdup(num)))
                return mf_set_error(MF_ERR_NOMEM, "out of memory");
        }
    memset(t->made, 0, k);
    return dup < 0 ? mf_set_error(MF_ERR_NOMEM, "out of memory") : 0;
}

static int tree_begin(mf_exporter *ex)
{
    tree *t = calloc(1, sizeof *t);
    if (!t || !(t->made = calloc(ex->stats->classes ? ex->stats->classes : 1, 1))) {
        free(t);
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    }
    ex->state = t;
    int rc = name_folders(ex, t);
    if (rc < 0)
        return rc;
    unsigned flags = MF_OUTPUT_DIRECTORY | MF_OUTPUT_MAKE_PARENTS |
                     (ex->p->overwrite ? MF_OUTPUT_OVERWRITE : 0);
    rc = mf_output_open(&t->out, ex->p->output, flags);
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
    snprintf(dir, sizeof dir, "%s/%s", t->tmp, t->folder[c]);
    if (!t->made[c] && mkdir(dir, 0777) != 0 && errno != EEXIST)
        return mf_set_error(MF_ERR_IO, "cannot create '%s': %s", dir, strerror(errno));
    t->made[c] = 1;
    file_name(name, sizeof name, row, id, mf_image_format_ext(mf_image_sniff(data, size)));
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
    for (uint64_t c = 0; t->folder && c < ex->stats->classes; c++)
        free(t->folder[c]);
    free(t->folder);
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
