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

/* The path of `name` in this process's scratch folder (created on first use). */
static inline const char *fuzz_path(const char *name)
{
    static char dir[128], path[256];
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/mf_fuzz_%d", base, (int)getpid());
        mkdir(dir, 0700);
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
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
