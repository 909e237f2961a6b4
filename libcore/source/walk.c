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
    int escape = !mf_utf8_valid(path) || strchr(path, '\\');
    if (escape)
        x->id = mf_id_escape(path, &x->bad_name);
    if (!x->path || (error && !x->error) || (escape && !x->id)) {
        free(x->path);
        free(x->id);
        free(x->error);
        return mf_set_error(MF_ERR_NOMEM, "out of memory listing inputs");
    }
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

/* ---- list files (the rules are in include/mf/source.h) ------------------------------- */

#define MF_LIST_MAX_LINE 65536 /* longer lines are reported, not buffered */

typedef struct list_ctx {
    mf_src_input *in;
    const char *base; /* prefix for relative paths, or NULL */
    int im2rec;       /* -1 undecided, 0 plain, 1 im2rec .lst */
} list_ctx;

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

static int is_number(const char *t, size_t n, double *v)
{
    char buf[64], *end;
    if (n == 0 || n >= sizeof buf)
        return 0;
    memcpy(buf, t, n);
    buf[n] = '\0';
    *v = strtod(buf, &end);
    return end == buf + n && isfinite(*v);
}

static int push_entry(list_ctx *c, const char *path, size_t n, size_t lineno, const char *error)
{
    char *raw = strndup(path, n), *full = NULL;
    if (raw && c->base && raw[0] != '/')
        full = mf_src_printf("%s%s", c->base, raw);
    int rc = !raw || (c->base && raw[0] != '/' && !full)
                 ? mf_set_error(MF_ERR_NOMEM, "out of memory reading '%s'", c->in->path)
                 : mf_src_entries_push(&c->in->entries, full ? full : raw, error);
    free(raw);
    free(full);
    if (rc == 0)
        c->in->entries.v[c->in->entries.n - 1].line = lineno;
    return rc;
}

static int bad_line(list_ctx *c, const char *path, size_t n, size_t lineno, const char *why)
{
    char reason[400];
    snprintf(reason, sizeof reason, "bad line %zu of '%s': %s", lineno, c->in->path, why);
    return push_entry(c, path, n ? n : 1, lineno, reason);
}

/* The last (at most max) blank-separated tokens of line[0..n): start and length of
 * each, left to right. Returns how many; *more is set when tokens precede them. */
static int last_tokens(const char *line, size_t n, size_t *at, size_t *len, int max, int *more)
{
    size_t st[13], ln[13];
    int k = 0;
    size_t i = n;
    while (k < max && k < 13) {
        while (i > 0 && is_blank(line[i - 1]))
            i--;
        if (i == 0)
            break;
        size_t end = i;
        while (i > 0 && !is_blank(line[i - 1]))
            i--;
        st[k] = i;
        ln[k] = end - i;
        k++;
    }
    while (i > 0 && is_blank(line[i - 1]))
        i--;
    *more = i > 0;
    for (int t = 0; t < k; t++) {
        at[t] = st[k - 1 - t];
        len[t] = ln[k - 1 - t];
    }
    return k;
}

/* Do tokens [from, from + count) fit as the trailing fields (label and/or 10 numbers)?
 * Fills label and landmarks when they do. */
static int fields_fit(const char *line, const size_t *at, const size_t *len, int from,
                      int count, mf_src_entry *x)
{
    int has_label = count == 1 || count == 11, first_lm = has_label ? from + 1 : from;
    if (count != 1 && count != 10 && count != 11)
        return 0;
    if (has_label && mf_label_parse(line + at[from], len[from], 1, &x->label) < 0)
        return 0;
    for (int i = 0; count >= 10 && i < 10; i++) {
        double v;
        if (!is_number(line + at[first_lm + i], len[first_lm + i], &v))
            return 0;
        x->landmarks[i] = (float)v;
    }
    x->has_landmarks = count >= 10;
    return 1;
}

static int take_fields(list_ctx *c, const char *path, size_t path_len, size_t lineno,
                       const mf_src_entry *f)
{
    int rc = push_entry(c, path, path_len, lineno, NULL);
    if (rc == 0) {
        mf_src_entry *x = &c->in->entries.v[c->in->entries.n - 1];
        x->label = f->label;
        x->has_landmarks = f->has_landmarks;
        memcpy(x->landmarks, f->landmarks, sizeof x->landmarks);
    }
    return rc;
}

static const char fields_help[] =
    "the fields after the path must be 'label', 'label x1 y1 .. x5 y5' or 'x1 y1 .. x5 y5' "
    "(a path with blanks ending in a number: put a tab after it)";

/* `path<TAB>fields`: the fields must fit exactly. */
static int tab_line(list_ctx *c, const char *line, size_t n, size_t tab, size_t lineno)
{
    size_t at[13], len[13];
    int more, k = last_tokens(line + tab + 1, n - tab - 1, at, len, 12, &more);
    mf_src_entry f = {.label = -1};
    if (tab == 0)
        return bad_line(c, line, n, lineno, "empty path before the tab");
    if (k == 0 || (!more && fields_fit(line + tab + 1, at, len, 0, k, &f)))
        return take_fields(c, line, tab, lineno, &f);
    return bad_line(c, line, tab, lineno, fields_help);
}

/* Length of the first blank-separated token of line[0..n) (not NUL-terminated). */
static size_t first_token(const char *line, size_t n)
{
    size_t i = 0;
    while (i < n && !is_blank(line[i]))
        i++;
    return i;
}

/* `path [label] [x1 y1 .. x5 y5]` without a tab: the longest field set that parses. */
static int blank_line(list_ctx *c, const char *line, size_t n, size_t lineno)
{
    static const int tries[] = {11, 10, 1};
    size_t at[13], len[13];
    int more, k = last_tokens(line, n, at, len, 12, &more), rc = 1;
    double v;
    mf_src_entry f;
    for (size_t t = 0; t < 3 && rc > 0; t++) {
        int m = tries[t];
        f = (mf_src_entry){.label = -1};
        if (k <= m || !fields_fit(line, at, len, k - m, m, &f))
            continue;
        /* "a 3 x1..y5": a number right before the fields means they were miscounted */
        int p = k - m - 1;
        rc = is_number(line + at[p], len[p], &v) && (p > 0 || more)
                 ? bad_line(c, line, first_token(line, n), lineno, fields_help)
                 : take_fields(c, line, at[p] + len[p], lineno, &f);
    }
    if (rc > 0)
        rc = (k > 1 || more) && is_number(line + at[k - 1], len[k - 1], &v)
                 ? bad_line(c, line, first_token(line, n), lineno, fields_help)
                 : push_entry(c, line, n, lineno, NULL);
    return rc;
}

/* MXNet im2rec: `index<TAB>label[<TAB>label...]<TAB>path`. */
static int im2rec_line(list_ctx *c, const char *line, size_t n, size_t lineno)
{
    const char *last = memrchr(line, '\t', n), *second = memchr(line, '\t', n);
    int64_t index, label;
    double v;
    if (!last || last == second)
        return bad_line(c, line, n, lineno,
                        "expected 'index<TAB>label<TAB>path' (an im2rec .lst line)");
    const char *path = last + 1;
    size_t path_len = (size_t)(line + n - path);
    const char *lab = second + 1, *lab_end = memchr(lab, '\t', (size_t)(last + 1 - lab));
    if (mf_label_parse(line, (size_t)(second - line), 0, &index) < 0 ||
        !is_number(lab, (size_t)(lab_end - lab), &v) || mf_label_from_float(v, 1, &label) < 0)
        return bad_line(c, path, path_len, lineno,
                        "the index must be an integer and the first label an integral "
                        "number in [0, 2^53) (an im2rec .lst line)");
    if (path_len == 0)
        return bad_line(c, line, n, lineno, "empty path (an im2rec .lst line)");
    mf_src_entry f = {.label = label};
    return take_fields(c, path, path_len, lineno, &f);
}

/* First data line decides an unnamed list: 3+ tab fields, an integer, then a number. */
static int looks_im2rec(const char *line, size_t n)
{
    const char *t1 = memchr(line, '\t', n);
    const char *t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(line + n - t1 - 1)) : NULL;
    int64_t index;
    double v;
    return t2 && mf_label_parse(line, (size_t)(t1 - line), 0, &index) == 0 &&
           is_number(t1 + 1, (size_t)(t2 - t1 - 1), &v);
}

static int parse_line(list_ctx *c, char *line, size_t n, size_t lineno)
{
    const char *nul = memchr(line, '\0', n);
    if (nul)
        return bad_line(c, line, (size_t)(nul - line), lineno,
                        "it holds a NUL byte (a NUL-separated list, as find -print0 "
                        "writes? read it with -0/--null)");
    while (n && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    size_t lead = 0;
    while (lead < n && (line[lead] == ' ' || line[lead] == '\t'))
        lead++;
    if (lead == n || line[lead] == '#')
        return 0;
    line += lead;
    n -= lead;
    if (c->im2rec < 0)
        c->im2rec = looks_im2rec(line, n);
    if (c->im2rec)
        return im2rec_line(c, line, n, lineno);
    const char *tab = memchr(line, '\t', n);
    return tab ? tab_line(c, line, n, (size_t)(tab - line), lineno)
               : blank_line(c, line, n, lineno);
}

static int take_record(list_ctx *c, char *rec, size_t n, size_t lineno, int nul, int too_long)
{
    if (too_long)
        return bad_line(c, rec, n < 256 ? n : 256, lineno, "line longer than 64 KB");
    if (nul)
        return n ? push_entry(c, rec, n, lineno, NULL) : 0;
    return parse_line(c, rec, n, lineno);
}

/* Read f record by record (records end at '\n', or '\0' when nul), bounded in length. */
static int read_records(list_ctx *c, FILE *f, int nul)
{
    char delim = nul ? '\0' : '\n';
    char *rec = malloc(MF_LIST_MAX_LINE), buf[65536];
    if (!rec)
        return mf_set_error(MF_ERR_NOMEM, "out of memory reading '%s'", c->in->path);
    size_t n = 0, lineno = 1, got;
    int too_long = 0, rc = 0;
    while (rc == 0 && (got = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < got && rc == 0;) {
            const char *end = memchr(buf + i, delim, got - i);
            size_t take = end ? (size_t)(end - (buf + i)) : got - i;
            size_t room = MF_LIST_MAX_LINE - n;
            too_long |= take > room;
            memcpy(rec + n, buf + i, take < room ? take : room);
            n += take < room ? take : room;
            i += take + (end != NULL);
            if (end) {
                rc = take_record(c, rec, n, lineno++, nul, too_long);
                n = 0;
                too_long = 0;
            }
        }
    }
    if (rc == 0 && ferror(f))
        rc = mf_set_error(MF_ERR_IO, "cannot read '%s': %s", c->in->path, strerror(errno));
    if (rc == 0 && (n || too_long))
        rc = take_record(c, rec, n, lineno, nul, too_long);
    free(rec);
    return rc;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcasecmp(s + n - m, suf);
}

int mf_src_expand_list(mf_src_input *in, const mf_source_params *p)
{
    int is_stdin = !strcmp(in->path, "-");
    /* A list may well be a pipe (bash's <(find ...)): it is opened blocking on purpose. */
    FILE *f = is_stdin ? stdin : fopen(in->path, "r");
    if (!f) {
        char reason[160];
        snprintf(reason, sizeof reason, "cannot open list: %s", strerror(errno));
        return mf_src_entries_push(&in->entries, in->path, reason);
    }
    /* The prefix of relative entries: root (unless "." or ""), else the list's folder. */
    char *base = NULL;
    const char *slash = strrchr(in->path, '/');
    int with_root = p->root && p->root[0] && strcmp(p->root, ".") != 0;
    int with_dir = !p->root && !is_stdin && slash;
    if (with_root)
        base = join(p->root, "");
    else if (with_dir)
        base = strndup(in->path, (size_t)(slash - in->path + 1));
    list_ctx c = {.in = in, .base = base, .im2rec = has_suffix(in->path, ".lst") ? 1 : -1};
    int rc = (with_root || with_dir) && !base
                 ? mf_set_error(MF_ERR_NOMEM, "out of memory reading '%s'", in->path)
                 : read_records(&c, f, p->null_lists);
    free(base);
    if (!is_stdin)
        fclose(f);
    return rc;
}

char *mf_src_list_reason(const mf_src_input *in, const mf_src_entry *e, const char *why)
{
    if (!e->line)
        return strdup(why);
    return mf_src_printf("%s (line %zu of '%s'%s)", why, e->line, in->path,
                         strpbrk(e->path, " \t") && strstr(why, "No such file")
                             ? ": a path with blanks and fields that did not parse?"
                             : "");
}
