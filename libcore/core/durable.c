/* durable.c - outputs that appear whole or not at all, never over an input
 * (see mf/durable.h for the contract).
 *
 * Liveness of a temporary is an OFD lock (fcntl F_OFD_SETLK) held on the temporary file,
 * or on a marker file inside a temporary folder, for as long as the run that made it is
 * alive: the kernel drops it when the process dies, however it dies. OFD locks do not
 * interact with the flock(2) that HDF5 takes on the same file. A filesystem without
 * locks still gets exclusive, uniquely named temporaries; stale ones are then left
 * alone (we cannot tell whether their run is alive). */
#define _GNU_SOURCE
#include "mf/durable.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mf/log.h"
#include "mf/status.h"

#define PARTIAL_MARK ".partial"   /* resumable: "<path>.partial" */
#define TEMP_MARK ".partial-"     /* one-shot: "<path>.partial-<pid>-<4 hex>" */
#define DIR_LOCK ".mfkit-partial" /* lock file inside a temporary folder */
#define JOURNAL_MARK ".publishing-" /* "<primary>.publishing-<pid>-<4 hex>": a set being published */

/* ---- the run's files: inputs and outputs, for the "output is an input" check ------- */

typedef struct file_key {
    dev_t dev;
    ino_t ino;
    char *name; /* outputs not yet on disk: the basename inside folder (dev, ino) */
} file_key;

/* Entries are inputs (for the whole run) and the outputs currently open; an output's
 * entries are retired when it is committed or aborted. */
enum { RUN_INPUT = 0, RUN_OUTPUT = 1, RUN_RETIRED = 2 };
static file_key *run_files;
static size_t run_count, run_cap;
static unsigned char *run_is_output; /* RUN_INPUT, RUN_OUTPUT or RUN_RETIRED */

/* Returns the entry's index, or a negative mf_status. */
static long run_push(dev_t dev, ino_t ino, const char *name, int is_output)
{
    if (run_count == run_cap) {
        size_t cap = run_cap ? 2 * run_cap : 16;
        file_key *f = realloc(run_files, cap * sizeof *f);
        unsigned char *o = f ? realloc(run_is_output, cap) : NULL;
        if (f)
            run_files = f;
        if (!f || !o)
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        run_is_output = o;
        run_cap = cap;
    }
    char *copy = name ? strdup(name) : NULL;
    if (name && !copy)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    run_files[run_count] = (file_key){dev, ino, copy};
    run_is_output[run_count] = (unsigned char)is_output;
    return (long)run_count++;
}

static void run_retire(long i)
{
    if (i < 0 || (size_t)i >= run_count)
        return;
    free(run_files[i].name);
    run_files[i].name = NULL;
    run_is_output[i] = RUN_RETIRED;
}

int mf_run_add_input(const char *path)
{
    struct stat st;
    if (!path || strcmp(path, "-") == 0 || stat(path, &st) != 0)
        return 0;
    long rc = run_push(st.st_dev, st.st_ino, NULL, RUN_INPUT);
    return rc < 0 ? (int)rc : 0;
}

void mf_run_reset(void)
{
    for (size_t i = 0; i < run_count; i++)
        free(run_files[i].name);
    free(run_files);
    free(run_is_output);
    run_files = NULL;
    run_is_output = NULL;
    run_count = run_cap = 0;
}

/* Which recorded file is this? -1 if none. A name given: the entry (folder, name). */
static long run_find(dev_t dev, ino_t ino, const char *name)
{
    for (size_t i = 0; i < run_count; i++)
        if (run_is_output[i] != RUN_RETIRED && run_files[i].dev == dev &&
            run_files[i].ino == ino &&
            (name ? run_files[i].name && strcmp(run_files[i].name, name) == 0
                  : !run_files[i].name))
            return (long)i;
    return -1;
}

/* ---- small file helpers ------------------------------------------------------------ */

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

/* The folder part of path ("." for a bare name); malloc'ed. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static const char *base_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int mf_fsync_parent_dir(const char *path)
{
    char *dir = dir_of(path);
    if (!dir)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    /* Some filesystems refuse to open or sync folders; the rename is then as durable as
     * that filesystem makes it, and there is nothing better to do. */
    if (fd >= 0) {
        if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS)
            rc = mf_set_error(MF_ERR_IO, "cannot sync folder '%s': %s", dir, strerror(errno));
        close(fd);
    }
    free(dir);
    return rc;
}

int mf_make_parents(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    int rc = 0;
    for (char *p = strchr(copy + 1, '/'); p && rc == 0; p = strchr(p + 1, '/')) {
        *p = 0;
        if (mkdir(copy, 0777) != 0 && errno != EEXIST)
            rc =
                mf_set_error(MF_ERR_IO, "cannot create folder '%s': %s", copy, strerror(errno));
        *p = '/';
    }
    free(copy);
    return rc;
}

FILE *mf_scratch_file(const char *path)
{
    char *dir = dir_of(path);
    if (!dir) {
        mf_set_error(MF_ERR_NOMEM, "out of memory");
        return NULL;
    }
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        /* No O_TMPFILE here: a uniquely named file, unlinked at once. */
        size_t n = strlen(dir) + 32;
        char *name = malloc(n);
        if (name) {
            snprintf(name, n, "%s/.mfkit-scratch-XXXXXX", dir);
            fd = mkostemp(name, O_CLOEXEC);
            if (fd >= 0)
                unlink(name);
        }
        free(name);
    }
    FILE *f = fd >= 0 ? fdopen(fd, "w+b") : NULL;
    if (!f) {
        mf_set_error(MF_ERR_IO, "cannot create a scratch file in '%s': %s", dir,
                     strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    free(dir);
    return f;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

/* Remove a folder tree that this module created (never follows symlinks). */
static void remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Take the run's lock on fd: 1 taken, 0 held by another live process, -1 unsupported. */
static int lock_fd(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 1;
    return errno == EAGAIN || errno == EACCES ? 0 : -1;
}

/* Is the file at path locked by a live process? 1 yes, 0 no, -1 cannot tell. */
static int is_locked(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    int rc = fcntl(fd, F_OFD_GETLK, &fl) == 0 ? fl.l_type != F_UNLCK : -1;
    close(fd);
    return rc;
}

/* "<pid>-<4 hex>", exactly: the suffix of our one-shot temporaries. */
static int is_temp_suffix(const char *s)
{
    size_t digits = strspn(s, "0123456789");
    if (digits == 0 || digits > 10 || s[digits] != '-')
        return 0;
    const char *hex = s + digits + 1;
    return strlen(hex) == 4 && strspn(hex, "0123456789abcdef") == 4;
}

/* ---- sealed temporaries ----------------------------------------------------------------
 * A sealed temporary (mf_output_seal) has no descriptor left, so no lock of its own. One
 * marker per folder and run, "<dir>/.mfkit-sealed.partial-<pid>-<4 hex>", locked while
 * the run lives, vouches for every temporary in that folder whose name carries the run's
 * pid: it is made before the first seal there closes a descriptor, and removed when the
 * last sealed temporary of the run in that folder is published or removed. A marker of
 * a dead run has a free lock and is removed like any stale temporary. (On a folder shared
 * by several hosts a pid may be vouched for by another host's run: the temporary is then
 * left alone, which errs on the safe side.) */
#define SEALED_BASE ".mfkit-sealed"

/* Does a live run with this pid ("<digits>", pid_len long) hold a marker in dir? */
static int vouched_for(const char *dir, const char *pid, size_t pid_len)
{
    DIR *d = opendir(dir);
    if (!d)
        return 1; /* cannot tell: keep the temporary */
    size_t blen = strlen(SEALED_BASE TEMP_MARK);
    int alive = 0;
    struct dirent *e;
    while (!alive && (e = readdir(d))) {
        char path[PATH_MAX];
        if (strncmp(e->d_name, SEALED_BASE TEMP_MARK, blen) == 0 &&
            strncmp(e->d_name + blen, pid, pid_len) == 0 && e->d_name[blen + pid_len] == '-' &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            alive = is_locked(path) != 0;
    }
    closedir(d);
    return alive;
}

/* Remove temporaries of `base` in `dir` whose run has died. */
static void remove_stale_temps(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t blen = strlen(base), mlen = strlen(TEMP_MARK);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, blen) != 0 || strncmp(e->d_name + blen, TEMP_MARK, mlen) ||
            !is_temp_suffix(e->d_name + blen + mlen))
            continue;
        char path[PATH_MAX], lock[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        struct stat st;
        if (lstat(path, &st) != 0)
            continue;
        const char *pid = e->d_name + blen + mlen;
        if (S_ISREG(st.st_mode) && is_locked(path) == 0 &&
            !vouched_for(dir, pid, strspn(pid, "0123456789"))) {
            if (unlink(path) == 0)
                mf_log(MF_LOG_INFO, "removed '%s', left by a run that did not finish", path);
        } else if (S_ISDIR(st.st_mode) &&
                   snprintf(lock, sizeof lock, "%s/%s", path, DIR_LOCK) < (int)sizeof lock &&
                   is_locked(lock) == 0) {
            remove_tree(path);
            mf_log(MF_LOG_INFO, "removed folder '%s', left by a run that did not finish", path);
        }
    }
    closedir(d);
}

/* ---- sets of outputs published together ------------------------------------------------
 * A set (a .rec with its .idx, WebDataset shards) is renamed one file at a time, the
 * primary last. Before the first rename a journal beside the primary lists the set's
 * final names (absolute, NUL-separated, the primary first) and is locked; it is removed
 * once every file is in place. A journal whose lock is free belongs to a run that died
 * while publishing: if its primary never arrived, the companions it lists are that run's
 * leftovers and are removed, so the same command can run again. */

static int read_journal(const char *path, char **text, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16;
    *text = malloc(cap + 1);
    *len = *text ? fread(*text, 1, cap, f) : 0;
    int ok = *text && !ferror(f) && feof(f); /* a journal is small: more is not ours */
    fclose(f);
    if (!ok) {
        free(*text);
        return -1;
    }
    (*text)[*len] = 0;
    return 0;
}

static void recover_journal(const char *journal)
{
    char *text;
    size_t len;
    if (is_locked(journal) != 0 || read_journal(journal, &text, &len) < 0)
        return;
    const char *primary = text;
    struct stat st;
    if (len > 0 && stat(primary, &st) != 0) /* interrupted before the primary arrived */
        for (size_t at = strlen(primary) + 1; at < len; at += strlen(text + at) + 1)
            if (lstat(text + at, &st) == 0 && S_ISREG(st.st_mode) && unlink(text + at) == 0)
                mf_log(MF_LOG_INFO, "removed '%s', published by a run that died before "
                       "'%s' (the set it belongs to)", text + at, primary);
    unlink(journal);
    free(text);
}

/* Journals in dir left by dead runs. */
static void recover_sets(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    size_t mlen = strlen(JOURNAL_MARK);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *mark = strstr(e->d_name, JOURNAL_MARK);
        char path[PATH_MAX];
        if (mark && is_temp_suffix(mark + mlen) &&
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
            recover_journal(path);
    }
    closedir(d);
}

/* ---- outputs ----------------------------------------------------------------------- */

struct mf_output {
    char *path;   /* as given */
    char *target; /* what is replaced: path, or the file a symlink points to */
    char *temp;   /* where the bytes go; == target when direct */
    unsigned flags;
    int direct; /* "-", FIFO, device: written in place */
    int fd;     /* temp file (or the lock file of a temp folder); -1 if none */
    FILE *stream;
    int resumed;
    int sealed;                        /* durable and closed; only the rename is left */
    long marker;                       /* closed: the marker vouching for it, else -1 */
    long claim[2];                     /* this output's entries in the run's list, -1 if none */
    off_t reserved_end;                /* mf_output_reserve: space allocated up to here */
    mf_output *next_live, **prev_live; /* the list of outputs not yet committed */
};

static mf_output *live; /* every open output, for mf_output_abort_all */

static void release_reserve(mf_output *o);

static void live_add(mf_output *o)
{
    o->next_live = live;
    o->prev_live = &live;
    if (live)
        live->prev_live = &o->next_live;
    live = o;
}

static void live_remove(mf_output *o)
{
    if (!o->prev_live)
        return;
    *o->prev_live = o->next_live;
    if (o->next_live)
        o->next_live->prev_live = o->prev_live;
    o->prev_live = NULL;
}

static void marker_release(long i);

static void output_free(mf_output *o)
{
    if (!o)
        return;
    live_remove(o);
    marker_release(o->marker); /* its temporary is published or removed by now */
    run_retire(o->claim[0]);
    run_retire(o->claim[1]);
    if (o->stream && o->stream != stdout)
        fclose(o->stream); /* a dup of fd: the lock goes when both are closed */
    if (o->fd >= 0)
        close(o->fd);
    if (o->temp != o->target)
        free(o->temp);
    if (o->target != o->path)
        free(o->target);
    free(o->path);
    free(o);
}

static int is_device_path(const char *p)
{
    return strncmp(p, "/dev/", 5) == 0 || strncmp(p, "/proc/", 6) == 0;
}

/* Classify the target: resolve a symlink, refuse inputs and outputs of this run and an
 * existing output without OVERWRITE; set o->direct for streams and devices. */
static int check_target(mf_output *o)
{
    const char *p = o->path;
    unsigned fl = o->flags;
    int stream_ok = !(fl & (MF_OUTPUT_SEEKABLE | MF_OUTPUT_DIRECTORY | MF_OUTPUT_RESUMABLE));
    if (strcmp(p, "-") == 0 || is_device_path(p)) {
        if (!stream_ok)
            return mf_set_error(MF_ERR_ARG, "cannot write '%s': this output needs a regular %s",
                                p, fl & MF_OUTPUT_DIRECTORY ? "folder" : "file");
        o->direct = 1;
        return 0;
    }
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISLNK(st.st_mode)) {
        char *real = realpath(p, NULL);
        if (!real)
            return mf_set_error(MF_ERR_ARG, "cannot write '%s': it is a symlink to %s", p,
                                errno == ENOENT ? "nothing (dangling)" : strerror(errno));
        o->target = real;
    }
    if (stat(o->target, &st) != 0)
        return errno == ENOENT
                   ? 0
                   : mf_set_error(MF_ERR_IO, "cannot write '%s': %s", p, strerror(errno));
    long hit = run_find(st.st_dev, st.st_ino, NULL);
    if (hit >= 0)
        return mf_set_error(MF_ERR_ARG, "'%s' is %s of this run: mfkit never writes over %s", p,
                            run_is_output[hit] == RUN_OUTPUT ? "another output" : "an input",
                            run_is_output[hit] == RUN_OUTPUT ? "its own outputs"
                                                             : "its inputs");
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        if (!stream_ok)
            return mf_set_error(MF_ERR_ARG, "cannot write '%s': not a regular file", p);
        o->direct = 1;
        return 0;
    }
    if (S_ISDIR(st.st_mode) != !!(fl & MF_OUTPUT_DIRECTORY))
        return mf_set_error(MF_ERR_ARG, "cannot write '%s': it is a %s", p,
                            S_ISDIR(st.st_mode) ? "folder" : "file");
    if (!(fl & MF_OUTPUT_OVERWRITE))
        return mf_set_error(MF_ERR_EXISTS, "'%s' exists (use --overwrite to replace it)", p);
    o->claim[0] = run_push(st.st_dev, st.st_ino, NULL, RUN_OUTPUT);
    return o->claim[0] < 0 ? (int)o->claim[0] : 0;
}

/* Record (folder, name) of the target so that a second output of the run with the same
 * name is refused even before either exists. */
static int claim_name(mf_output *o)
{
    char *dir = dir_of(o->target);
    struct stat st;
    int rc = 0;
    if (!dir)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (stat(dir, &st) != 0)
        rc = mf_set_error(MF_ERR_IO, "cannot write '%s': folder '%s': %s", o->path, dir,
                          strerror(errno));
    else if (run_find(st.st_dev, st.st_ino, base_of(o->target)) >= 0)
        rc = mf_set_error(MF_ERR_ARG, "'%s' is named twice as an output of this run", o->path);
    else if ((o->claim[1] = run_push(st.st_dev, st.st_ino, base_of(o->target), RUN_OUTPUT)) < 0)
        rc = (int)o->claim[1];
    if (rc == 0) { /* a resumable run leaves one too if it dies while making its partial */
        remove_stale_temps(dir, base_of(o->target));
        remove_stale_temps(dir, SEALED_BASE);
    }
    free(dir);
    return rc;
}

static int open_direct(mf_output *o)
{
    o->temp = o->target;
    if (strcmp(o->path, "-") == 0) {
        o->stream = stdout;
        return 0;
    }
    /* A FIFO waits here for its reader, as a shell redirection would. */
    o->fd = open(o->target, O_WRONLY | O_CLOEXEC);
    if (o->fd < 0)
        return mf_set_error(MF_ERR_IO, "cannot open '%s': %s", o->path, strerror(errno));
    return 0;
}

/* Rename from -> to unless `to` exists (EEXIST then). Where renameat2 is missing, a
 * hard link does the same. */
static int rename_noreplace(const char *from, const char *to)
{
    int rc = renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
    if (rc != 0 && (errno == EINVAL || errno == ENOSYS))
        rc = link(from, to) == 0 ? unlink(from) : -1;
    return rc;
}

/* A new "<target>.partial-<pid>-<rand>" file or folder, created exclusively and locked
 * (a folder through its marker file). *name is malloc'ed; returns the locked fd or -1. */
static int create_unique(const char *target, int is_dir, char **name)
{
    size_t n = strlen(target) + sizeof TEMP_MARK + 24;
    if (!(*name = malloc(n))) {
        errno = ENOMEM;
        return -1;
    }
    int fd = -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned short r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
            r = (unsigned short)(attempt * 40503u + (unsigned)getpid());
        snprintf(*name, n, "%s" TEMP_MARK "%ld-%04x", target, (long)getpid(), r);
        if (!is_dir) {
            fd = open(*name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
            if (fd >= 0)
                break;
        } else if (mkdir(*name, 0777) == 0) {
            char lock[PATH_MAX];
            snprintf(lock, sizeof lock, "%s/%s", *name, DIR_LOCK);
            fd = open(lock, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0) {
                int err = errno;
                rmdir(*name);
                errno = err;
            }
            break;
        }
        if (errno != EEXIST)
            break;
    }
    if (fd >= 0)
        lock_fd(fd); /* a filesystem without locks still gets a unique temporary */
    return fd;
}

/* Make "<target>.partial", locked from the moment it has that name: it is created and
 * locked under a unique name, then renamed into place unless a partial is there already.
 * 1 made, 0 one exists, < 0 error. (Created under its own name, a partial would be
 * visible unlocked for an instant: a second run could take its lock, and the first
 * would then remove it as its own failed creation, under the second run's feet.) */
static int create_partial(mf_output *o)
{
    char *unique = NULL;
    int fd = create_unique(o->target, 0, &unique);
    if (fd < 0) {
        int rc = mf_set_error(MF_ERR_IO, "cannot create a file beside '%s': %s", o->path,
                              strerror(errno));
        free(unique);
        return rc;
    }
    int rc = rename_noreplace(unique, o->temp), err = errno;
    if (rc == 0) {
        o->fd = fd;
    } else {
        unlink(unique);
        close(fd);
    }
    free(unique);
    if (rc == 0)
        return 1;
    return err == EEXIST ? 0
                         : mf_set_error(MF_ERR_IO, "cannot create '%s': %s", o->temp,
                                        strerror(err));
}

/* Open and lock an existing "<target>.partial". 1 opened, 0 it vanished or was replaced
 * while we opened it (its run published or removed it: try again), < 0 error, including
 * MF_ERR_BUSY while a live run holds it. */
static int open_partial(mf_output *o)
{
    int fd = open(o->temp, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0
                               : mf_set_error(MF_ERR_IO, "cannot open '%s': %s", o->temp,
                                              strerror(errno));
    struct stat held, named;
    if (fstat(fd, &held) != 0 || !S_ISREG(held.st_mode)) {
        close(fd);
        return mf_set_error(MF_ERR_ARG, "'%s' exists and is not a regular file: move it away",
                            o->temp);
    }
    if (lock_fd(fd) == 0) {
        close(fd);
        return mf_set_error(MF_ERR_BUSY, "'%s' is being written by another running process",
                            o->temp);
    }
    /* The lock was taken after the open: the file may have stopped being the partial. */
    if (stat(o->temp, &named) != 0 || named.st_dev != held.st_dev ||
        named.st_ino != held.st_ino) {
        close(fd);
        return 0;
    }
    o->fd = fd;
    o->resumed = 1;
    return 1;
}

static int open_resumable(mf_output *o)
{
    size_t n = strlen(o->target) + sizeof PARTIAL_MARK;
    if (!(o->temp = malloc(n)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    snprintf(o->temp, n, "%s" PARTIAL_MARK, o->target);
    /* Each turn loses only to another run that made, published or removed the partial
     * meanwhile; a few turns settle any realistic race. */
    for (int turn = 0; turn < 16; turn++) {
        int rc = create_partial(o);
        if (rc == 0)
            rc = open_partial(o);
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    return mf_set_error(MF_ERR_BUSY, "'%s' keeps changing: other runs are writing it", o->temp);
}

/* A new "<target>.partial-<pid>-<rand>" file or folder, created exclusively. */
static int open_temp(mf_output *o)
{
    o->fd = create_unique(o->target, !!(o->flags & MF_OUTPUT_DIRECTORY), &o->temp);
    if (o->fd < 0)
        return mf_set_error(MF_ERR_IO, "cannot create '%s': %s", o->temp ? o->temp : o->path,
                            strerror(errno));
    return 0;
}

/* The run's markers (see "sealed temporaries"), one per folder. */
typedef struct seal_marker {
    dev_t dev;
    ino_t ino;
    char *path;    /* NULL once released */
    int fd;        /* holds the lock */
    size_t vouches; /* sealed temporaries not yet published or removed */
} seal_marker;
static seal_marker *markers;
static size_t n_markers;

/* The marker for the folder of o's temporary, made if needed; its index, or < 0. */
static long marker_take(const mf_output *o)
{
    char *dir = dir_of(o->temp);
    struct stat st;
    if (!dir || stat(dir, &st) != 0) {
        free(dir);
        return mf_set_error(MF_ERR_IO, "cannot seal '%s': its folder is gone", o->path);
    }
    long free_slot = -1;
    for (size_t i = 0; i < n_markers; i++) {
        if (markers[i].path && markers[i].dev == st.st_dev && markers[i].ino == st.st_ino) {
            markers[i].vouches++;
            free(dir);
            return (long)i;
        }
        if (!markers[i].path && free_slot < 0)
            free_slot = (long)i;
    }
    if (free_slot < 0) {
        seal_marker *grown = realloc(markers, (n_markers + 1) * sizeof *grown);
        if (!grown) {
            free(dir);
            return mf_set_error(MF_ERR_NOMEM, "out of memory");
        }
        markers = grown;
        free_slot = (long)n_markers++;
    }
    size_t n = strlen(dir) + sizeof SEALED_BASE + 1;
    char *base = malloc(n), *name = NULL;
    int fd = -1;
    if (base) {
        snprintf(base, n, "%s/%s", dir, SEALED_BASE);
        fd = create_unique(base, 0, &name);
    }
    int err = base ? errno : ENOMEM;
    free(base);
    free(dir);
    if (fd < 0) {
        free(name);
        return mf_set_error(MF_ERR_IO, "cannot seal '%s': cannot make a marker beside it: %s",
                            o->path, strerror(err));
    }
    markers[free_slot] = (seal_marker){st.st_dev, st.st_ino, name, fd, 1};
    return free_slot;
}

static void marker_release(long i)
{
    if (i < 0 || --markers[i].vouches > 0)
        return;
    unlink(markers[i].path);
    close(markers[i].fd);
    free(markers[i].path);
    markers[i].path = NULL;
}

int mf_output_open(mf_output **out, const char *path, unsigned flags)
{
    *out = NULL;
    if (!path || !*path)
        return mf_set_error(MF_ERR_ARG, "empty output name");
    mf_output *o = calloc(1, sizeof *o);
    if (!o || !(o->path = strdup(path))) {
        free(o);
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    }
    o->target = o->path;
    o->flags = flags;
    o->fd = -1;
    o->claim[0] = o->claim[1] = -1;
    o->marker = -1;
    live_add(o);
    int rc = 0;
    if ((flags & MF_OUTPUT_MAKE_PARENTS) && strcmp(path, "-") != 0)
        rc = mf_make_parents(path);
    char *dir = rc == 0 && strcmp(path, "-") != 0 ? dir_of(path) : NULL;
    if (dir)
        recover_sets(dir); /* before looking at what exists: leftovers are not outputs */
    free(dir);
    if (rc == 0)
        rc = check_target(o);
    if (rc == 0)
        rc = o->direct ? open_direct(o) : claim_name(o);
    if (rc == 0 && !o->direct)
        rc = flags & MF_OUTPUT_RESUMABLE ? open_resumable(o) : open_temp(o);
    if (rc < 0) {
        /* Only what this call created is removed; a found partial is left alone. */
        if (o->fd >= 0 && !o->resumed && o->temp && o->temp != o->target)
            mf_output_abort(o);
        else
            output_free(o);
        return rc;
    }
    *out = o;
    return 0;
}

const char *mf_output_path(const mf_output *o) { return o->path; }
const char *mf_output_temp(const mf_output *o) { return o->temp; }
int mf_output_is_direct(const mf_output *o) { return o->direct; }
int mf_output_resumed(const mf_output *o) { return o->resumed; }

FILE *mf_output_stream(mf_output *o)
{
    if (o->stream)
        return o->stream;
    if (o->flags & MF_OUTPUT_DIRECTORY) {
        mf_set_error(MF_ERR_ARG, "'%s' is a folder output, not a stream", o->path);
        return NULL;
    }
    int fd = dup(o->fd);
    if (fd < 0 || !(o->stream = fdopen(fd, "w"))) {
        if (fd >= 0)
            close(fd);
        mf_set_error(MF_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    }
    return o->stream;
}

int mf_output_restart(mf_output *o)
{
    if (o->fd < 0 || ftruncate(o->fd, 0) != 0)
        return mf_set_error(MF_ERR_IO, "cannot empty '%s': %s", o->temp, strerror(errno));
    o->resumed = 0;
    return 0;
}

/* Everything written so far reaches the disk (or the stream's reader). */
static int make_durable(mf_output *o)
{
    if (o->stream && (fflush(o->stream) != 0 || ferror(o->stream)))
        return mf_set_error(MF_ERR_IO, "cannot write '%s': %s", o->path,
                            errno ? strerror(errno) : "write error");
    if (o->direct)
        return 0;
    if (o->sealed)
        return 0;
    release_reserve(o);
    if (o->flags & MF_OUTPUT_DIRECTORY) {
        /* Files inside were written by the caller: sync their whole filesystem, then the
         * folder itself. */
        int fd = open(o->temp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            syncfs(fd);
            close(fd);
        }
        return mf_fsync_path(o->temp);
    }
    if (fsync(o->fd) != 0)
        return mf_set_error(MF_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
    return 0;
}

/* Rename the temporary into place: never over a file that appeared meanwhile unless
 * OVERWRITE; a folder replaces an old one by an atomic exchange, then the old is removed. */
static int publish(mf_output *o)
{
    int overwrite = !!(o->flags & MF_OUTPUT_OVERWRITE), rc;
    if (o->flags & MF_OUTPUT_DIRECTORY) {
        char lock[PATH_MAX];
        snprintf(lock, sizeof lock, "%s/%s", o->temp, DIR_LOCK);
        unlink(lock);
        rc = renameat2(AT_FDCWD, o->temp, AT_FDCWD, o->target, RENAME_NOREPLACE);
        if (rc != 0 && errno == EEXIST && overwrite &&
            renameat2(AT_FDCWD, o->temp, AT_FDCWD, o->target, RENAME_EXCHANGE) == 0) {
            remove_tree(o->temp); /* the old folder, now under our temporary name */
            rc = 0;
        }
    } else if (overwrite) {
        rc = rename(o->temp, o->target);
    } else {
        rc = rename_noreplace(o->temp, o->target);
    }
    if (rc != 0)
        return errno == EEXIST || errno == ENOTEMPTY
                   ? mf_set_error(MF_ERR_EXISTS,
                                  "'%s' appeared while this run wrote it (use --overwrite to "
                                  "replace it)",
                                  o->path)
                   : mf_set_error(MF_ERR_IO, "cannot rename '%s' to '%s': %s", o->temp, o->path,
                                  strerror(errno));
    return mf_fsync_parent_dir(o->target);
}

int mf_output_reserve(mf_output *o, uint64_t ahead)
{
    struct stat st;
    if (o->direct || o->fd < 0 || fstat(o->fd, &st) != 0)
        return 0;
    if (o->reserved_end >= st.st_size + (off_t)ahead)
        return 0;
    /* Twice what was asked, so that most calls find their room already there. */
    off_t len = (off_t)(2 * ahead);
    if (fallocate(o->fd, FALLOC_FL_KEEP_SIZE, st.st_size, len) == 0) {
        o->reserved_end = st.st_size + len;
        return 0;
    }
    if (errno != ENOSPC && errno != EDQUOT)
        return 0; /* this filesystem cannot reserve: nothing to gain */
    if (ahead && fallocate(o->fd, FALLOC_FL_KEEP_SIZE, st.st_size, (off_t)ahead) == 0) {
        o->reserved_end = st.st_size + (off_t)ahead;
        return 0;
    }
    return mf_set_error(MF_ERR_IO, "cannot write '%s': %s (%llu more bytes needed)", o->path,
                        strerror(errno), (unsigned long long)ahead);
}

/* Give back the space reserved beyond the end of the file. */
static void release_reserve(mf_output *o)
{
    struct stat st;
    if (o->reserved_end > 0 && o->fd >= 0 && fstat(o->fd, &st) == 0 &&
        o->reserved_end > st.st_size)
        fallocate(o->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, st.st_size,
                  o->reserved_end - st.st_size);
    o->reserved_end = 0;
}

int mf_output_sync(mf_output *o)
{
    if (o->direct || o->fd < 0 || fsync(o->fd) == 0)
        return 0;
    return mf_set_error(MF_ERR_IO, "cannot write '%s': %s", o->path, strerror(errno));
}

int mf_output_seal(mf_output *o)
{
    if (o->direct || (o->flags & (MF_OUTPUT_DIRECTORY | MF_OUTPUT_RESUMABLE)))
        return mf_set_error(MF_ERR_ARG, "'%s' cannot be sealed", o->path);
    int rc = make_durable(o);
    if (o->marker < 0) { /* before the descriptor, and its lock, go */
        long m = marker_take(o);
        if (m < 0)
            return (int)m;
        o->marker = m;
    }
    if (o->stream)
        fclose(o->stream);
    o->stream = NULL;
    if (o->fd >= 0)
        close(o->fd);
    o->fd = -1;
    o->sealed = rc == 0;
    return rc;
}

int mf_output_commit(mf_output *o) { return mf_output_commit_all(&o, 1); }

/* The absolute name a target will have: its folder resolved, its own name kept. */
static char *absolute_target(const mf_output *o)
{
    char *dir = dir_of(o->target), *real = dir ? realpath(dir, NULL) : NULL;
    size_t n = real ? strlen(real) + strlen(base_of(o->target)) + 2 : 0;
    char *out = n ? malloc(n) : NULL;
    if (out)
        snprintf(out, n, "%s/%s", real, base_of(o->target));
    free(dir);
    free(real);
    return out;
}

/* Write and lock the journal of a set (see above); its fd stays open until removed. */
static int begin_set(mf_output **outs, size_t n, char **journal, int *fd)
{
    size_t len = strlen(outs[0]->target) + sizeof JOURNAL_MARK + 24;
    if (!(*journal = malloc(len)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    unsigned short r = 0;
    if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
        r = (unsigned short)getpid();
    snprintf(*journal, len, "%s" JOURNAL_MARK "%ld-%04x", outs[0]->target, (long)getpid(), r);
    *fd = open(*journal, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (*fd < 0)
        return mf_set_error(MF_ERR_IO, "cannot create '%s': %s", *journal, strerror(errno));
    lock_fd(*fd);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *abs = outs[i]->direct ? NULL : absolute_target(outs[i]);
        if (!outs[i]->direct && !abs)
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory");
        else if (abs && write(*fd, abs, strlen(abs) + 1) != (ssize_t)(strlen(abs) + 1))
            rc = mf_set_error(MF_ERR_IO, "cannot write '%s': %s", *journal, strerror(errno));
        free(abs);
    }
    if (rc == 0 && fsync(*fd) != 0)
        rc = mf_set_error(MF_ERR_IO, "cannot write '%s': %s", *journal, strerror(errno));
    return rc < 0 ? rc : mf_fsync_parent_dir(*journal);
}

int mf_output_commit_all(mf_output **outs, size_t n)
{
    int rc = 0, jfd = -1;
    char *journal = NULL;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = make_durable(outs[i]);
    if (rc == 0 && n > 1)
        rc = begin_set(outs, n, &journal, &jfd);
    /* Renames are one file at a time: a run killed between two leaves some published.
     * The last ones first, so that the first output (the primary: a store, a .rec, shard
     * 0) exists only once every one of its companions does. */
    size_t published = n; /* outs[published..n) are in place */
    for (size_t i = n; rc == 0 && i-- > 0;) {
        if (!outs[i]->direct && (rc = publish(outs[i])) < 0)
            break;
        published = i;
    }
    if (rc < 0) /* the primary never arrived: take its companions back */
        for (size_t i = published; i < n; i++)
            if (!outs[i]->direct && unlink(outs[i]->target) == 0)
                mf_log(MF_LOG_INFO, "removed '%s' again: '%s' could not be published",
                       outs[i]->path, outs[0]->path);
    if (journal) {
        unlink(journal);
        mf_fsync_parent_dir(journal);
        close(jfd);
        free(journal);
    }
    for (size_t i = 0; i < n; i++) {
        if (rc < 0 && !outs[i]->direct && access(outs[i]->temp, F_OK) == 0) {
            if (outs[i]->flags & MF_OUTPUT_RESUMABLE)
                mf_output_suspend(outs[i]);
            else
                mf_output_abort(outs[i]);
        } else {
            output_free(outs[i]);
        }
    }
    return rc;
}

void mf_output_abort(mf_output *o)
{
    if (!o)
        return;
    if (o->stream && o->stream != stdout) {
        fclose(o->stream);
        o->stream = NULL;
    }
    if (!o->direct && o->temp) {
        if (o->flags & MF_OUTPUT_DIRECTORY)
            remove_tree(o->temp);
        else
            unlink(o->temp);
    }
    output_free(o);
}

int mf_output_remove_extra(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISREG(st.st_mode))
        return mf_set_error(MF_ERR_ARG, "'%s' is not a regular file: left alone", path);
    if (run_find(st.st_dev, st.st_ino, NULL) >= 0)
        return mf_set_error(MF_ERR_ARG, "'%s' is an input of this run: left alone", path);
    if (unlink(path) != 0)
        return mf_set_error(MF_ERR_IO, "cannot remove '%s': %s", path, strerror(errno));
    return 1;
}

void mf_output_abort_all(void)
{
    while (live) {
        if (live->flags & MF_OUTPUT_RESUMABLE)
            mf_output_suspend(live);
        else
            mf_output_abort(live);
    }
}

void mf_output_suspend(mf_output *o)
{
    if (o && o->stream && o->stream != stdout)
        fflush(o->stream);
    if (o)
        release_reserve(o);
    output_free(o);
}
