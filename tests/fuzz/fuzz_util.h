/* fuzz_util.h - what the harnesses share: readers that take a path get the input
 * written to a file in a per-process folder (tmpfs when there is one). */
#ifndef MF_FUZZ_UTIL_H
#define MF_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir[128];

/* At exit: the scratch folder and what the harnesses wrote into it. */
static inline void fuzz_cleanup(void)
{
    static const char *names[] = {"f.rec", "f.idx", "f.list", "f.lst", "f.tar", "f.h5"};
    char path[256];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, names[i]);
        unlink(path);
    }
    rmdir(fuzz_dir);
}

/* The path of `name` in this process's scratch folder (created on first use). */
static inline const char *fuzz_path(const char *name)
{
    static char path[256];
    if (!fuzz_dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/mf_fuzz_%d", base, (int)getpid());
        mkdir(fuzz_dir, 0700);
        atexit(fuzz_cleanup);
    }
    snprintf(path, sizeof path, "%s/%s", fuzz_dir, name);
    return path;
}

/* Write data to `name` in the scratch folder; returns its path (static storage). */
static inline const char *fuzz_write(const char *name, const uint8_t *data, size_t size)
{
    const char *path = fuzz_path(name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size))
        abort();
    fclose(f);
    return path;
}

#endif
