/* shard.c - deterministic sharding by id hash, and K/N from SLURM array variables. */
#include "mf/source.h"
#include "mf/status.h"

#include <errno.h>
#include <stdlib.h>

int mf_shard_of(const char *id, int n)
{
    if (n <= 1)
        return 0;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a 64: fixed constants, same everywhere */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    /* FNV's low bits mix poorly for ids that differ only in their last characters
     * (a/0.jpg, a/1.jpg, ...): finish with the murmur3 avalanche before the modulo. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (int)(h % (uint64_t)n);
}

static int parse_long(const char *s, char **end, long *v)
{
    errno = 0;
    *v = strtol(s, end, 10);
    return errno == 0 && *end != s;
}

int mf_shard_parse(const char *spec, int *k, int *n)
{
    char *end;
    long kk, nn;
    if (!spec || !parse_long(spec, &end, &kk) || *end != '/' ||
        !parse_long(end + 1, &end, &nn) || *end != '\0' || nn < 1 || nn > 1000000 || kk < 0 ||
        kk >= nn)
        return mf_set_error(MF_ERR_ARG, "bad shard '%s': expected K/N with 0 <= K < N",
                            spec ? spec : "");
    *k = (int)kk;
    *n = (int)nn;
    return 0;
}

static const char *real_getenv(const char *name) { return getenv(name); }

static int env_long(const char *(*env)(const char *), const char *name, long *v)
{
    const char *s = env(name);
    char *end;
    if (!s || !*s)
        return 0;
    if (!parse_long(s, &end, v) || *end != '\0')
        return mf_set_error(MF_ERR_ARG, "%s='%s' is not an integer", name, s);
    return 1;
}

int mf_shard_from_slurm(int *k, int *n, const char *(*env)(const char *name))
{
    if (!env)
        env = real_getenv;
    long id, min, count, step = 1;
    int rc = env_long(env, "SLURM_ARRAY_TASK_ID", &id);
    if (rc <= 0)
        return rc; /* not an array task */
    if ((rc = env_long(env, "SLURM_ARRAY_TASK_MIN", &min)) <= 0 ||
        (rc = env_long(env, "SLURM_ARRAY_TASK_COUNT", &count)) <= 0)
        return rc < 0 ? rc
                      : mf_set_error(MF_ERR_ARG,
                                     "SLURM_ARRAY_TASK_ID is set but _MIN or _COUNT is not");
    if ((rc = env_long(env, "SLURM_ARRAY_TASK_STEP", &step)) < 0)
        return rc;
    if (step < 1)
        step = 1;
    long pos = (id - min) / step;
    if (count < 1 || id < min || (id - min) % step != 0 || pos >= count)
        return mf_set_error(
            MF_ERR_ARG,
            "SLURM array task %ld is not min %ld + step %ld * k with k < count %ld "
            "(an irregular --array list?): give --shard K/N",
            id, min, step, count);
    *k = (int)pos;
    *n = (int)count;
    return 1;
}
