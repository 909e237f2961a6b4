/* walk.c - expand directories (recursive, byte-wise sorted) and list files into entries. */
#define _GNU_SOURCE /* vasprintf */
#include "source_internal.h"
#include "mf/status.h"

#define MF_WALK_MAX_DEPTH 64 /* deeper trees are reported, not walked */

#include <ctype.h>
#include <math.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

int mf_src_buf_reserve(mf_src_buf *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < n)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu bytes", n);
    b->p = p;
    b->cap = cap;
    return 0;
}

char *mf_src_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

int mf_src_is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot &&
           (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg") || !strcasecmp(dot, ".png"));
}

char *mf_src_parent_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return NULL;
    const char *end = slash;
    while (end > path && end[-1] == '/')
        end--;
    const char *start = end;
    while (start > path && start[-1] != '/')
        start--;
    if (start == end || (end - start == 1 && *start == '.'))
        return NULL;
    return strndup(start, (size_t)(end - start));
}

int mf_src_entries_push(mf_src_entries *e, const char *path, const char *error)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        mf_src_entry *v = realloc(e->v, cap * sizeof *v);
        if (!v)
            return mf_set_error(MF_ERR_NOMEM, "out of memory listing inputs");
        e->v = v;
        e->cap = cap;
    }
    mf_src_entry *x = &e->v[e->n];
    *x = (mf_src_entry){
        .label = -1, .path = strdup(path), .error = error ? strdup(error) : NULL};
    if (!x->path || (error && !x->error))
        return mf_set_error(MF_ERR_NOMEM, "out of memory listing inputs");
    e->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    return mf_src_printf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

/* Sorted names in `dir` (without . and ..) into *out, *n set. Returns 0, an errno from
 * opendir (nothing allocated), or -1 when out of memory. */
static int read_dir_sorted(const char *dir, char ***out, size_t *n)
{
    DIR *d = opendir(dir);
    char **v = NULL;
    size_t cap = 0;
    int rc = 0;
    *n = 0;
    if (!d)
        return errno ? errno : EIO;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = -1;
                break;
            }
            v = nv;
        }
        if (!(v[*n] = strdup(de->d_name)))
            rc = -1;
        else
            (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(v, *n, sizeof *v, cmp_str);
    *out = v;
    return rc;
}

/* The directories from the walk's root down to the current one: a directory that is
 * its own ancestor (a symlink loop) is not entered again, or two looping links would
 * make the walk exponential. */
typedef struct walk_path {
    dev_t dev[MF_WALK_MAX_DEPTH];
    ino_t ino[MF_WALK_MAX_DEPTH];
    size_t depth;
} walk_path;

static int is_ancestor(const walk_path *wp, const struct stat *st)
{
    for (size_t i = 0; i < wp->depth; i++)
        if (wp->dev[i] == st->st_dev && wp->ino[i] == st->st_ino)
            return 1;
    return 0;
}

static int walk(mf_src_entries *e, const char *dir, const struct stat *dst, walk_path *wp);

/* One name inside a directory being walked: recurse, take an image, or ignore. */
static int walk_name(mf_src_entries *e, const char *dir, const char *name, walk_path *wp)
{
    char *path = join(dir, name);
    if (!path)
        return mf_set_error(MF_ERR_NOMEM, "out of memory walking '%s'", dir);
    struct stat st;
    int rc = 0;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (!is_ancestor(wp, &st))
            rc = walk(e, path, &st, wp);
    } else if (mf_src_is_image_name(name))
        rc = mf_src_entries_push(e, path, NULL);
    free(path);
    return rc;
}

static int walk(mf_src_entries *e, const char *dir, const struct stat *dst, walk_path *wp)
{
    if (wp->depth == MF_WALK_MAX_DEPTH)
        return mf_src_entries_push(e, dir, "directory nesting too deep");
    char **names = NULL;
    size_t n;
    int err = read_dir_sorted(dir, &names, &n), rc = 0;
    if (err > 0) {
        char reason[160];
        snprintf(reason, sizeof reason, "cannot read directory: %s", strerror(err));
        return mf_src_entries_push(e, dir, reason);
    }
    if (err < 0)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory listing '%s'", dir);
    wp->dev[wp->depth] = dst->st_dev;
    wp->ino[wp->depth] = dst->st_ino;
    wp->depth++;
    for (size_t i = 0; i < n; i++) {
        if (rc == 0)
            rc = walk_name(e, dir, names[i], wp);
        free(names[i]);
    }
    wp->depth--;
    free(names);
    return rc;
}

int mf_src_expand_dir(mf_src_input *in)
{
    walk_path wp = {.depth = 0};
    struct stat st;
    if (stat(in->path, &st) != 0) {
        char reason[160];
        snprintf(reason, sizeof reason, "cannot open: %s", strerror(errno));
        return mf_src_entries_push(&in->entries, in->path, reason);
    }
    return walk(&in->entries, in->path, &st, &wp);
}

/* ---- list files: `path [label] [x1 y1 ... x5 y5]` ---------------------------------- */

static int parse_list_line(mf_src_entries *e, char *line, const char *base, const char *list,
                           size_t lineno)
{
    char *tok[13], *save = NULL, *rest = line;
    int nt = 0;
    /* With a tab, the path is everything before the first tab (paths may hold spaces,
     * as in `path<TAB>label` lists); otherwise fields are split on any blank. */
    char *tab = strchr(line, '\t');
    if (tab && tab != line) {
        *tab = '\0';
        tok[nt++] = line;
        rest = tab + 1;
    }
    for (char *t = strtok_r(rest, " \t\r\n", &save); t && nt < 13;
         t = strtok_r(NULL, " \t\r\n", &save))
        tok[nt++] = t;
    if (nt == 0 || tok[0][0] == '#')
        return 0;
    char *path = tok[0][0] == '/' || !base ? strdup(tok[0]) : join(base, tok[0]);
    if (!path)
        return mf_set_error(MF_ERR_NOMEM, "out of memory reading '%s'", list);
    int bad = !(nt == 1 || nt == 2 || nt == 11 || nt == 12);
    double v[12];
    for (int i = 1; i < nt && !bad; i++) {
        char *end;
        v[i] = strtod(tok[i], &end);
        bad = *end != '\0' || !isfinite(v[i]);
    }
    if (!bad && (nt == 2 || nt == 12) && (v[1] != (double)(int64_t)v[1] || v[1] < -1))
        bad = 1;
    char reason[200];
    snprintf(reason, sizeof reason,
             "bad line %zu of '%s': expected 'path [label] [x1 y1 ... x5 y5]'", lineno, list);
    int rc = mf_src_entries_push(e, path, bad ? reason : NULL);
    free(path);
    if (rc < 0 || bad)
        return rc;
    mf_src_entry *x = &e->v[e->n - 1];
    int first_lm = nt == 11 ? 1 : 2;
    if (nt == 2 || nt == 12)
        x->label = (int64_t)v[1];
    if (nt >= 11) {
        x->has_landmarks = 1;
        for (int i = 0; i < 10; i++)
            x->landmarks[i] = (float)v[first_lm + i];
    }
    return 0;
}

int mf_src_expand_list(mf_src_input *in)
{
    int is_stdin = !strcmp(in->path, "-");
    FILE *f = is_stdin ? stdin : fopen(in->path, "r");
    if (!f) {
        char reason[160];
        snprintf(reason, sizeof reason, "cannot open list: %s", strerror(errno));
        return mf_src_entries_push(&in->entries, in->path, reason);
    }
    char *base = NULL;
    const char *slash = strrchr(in->path, '/');
    if (!is_stdin && slash)
        base = strndup(in->path, (size_t)(slash - in->path + 1));
    char *line = NULL;
    size_t cap = 0;
    int rc = 0;
    for (size_t lineno = 1; rc == 0 && getline(&line, &cap, f) >= 0; lineno++)
        rc = parse_list_line(&in->entries, line, base, in->path, lineno);
    free(line);
    free(base);
    if (!is_stdin)
        fclose(f);
    return rc;
}
