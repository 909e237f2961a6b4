/* shardset.h - do these parts form one complete K/N set?
 *
 * Work split K/N ways (mf-embed --shard K/N, graph shard steps) is joined later from
 * files that are easy to get wrong on a cluster: a task that failed leaves a hole, a
 * folder holds the shards of two runs, or of a 16-way and a 2-way split. Joining those
 * silently gives a store or graph that looks fine and is not the job. */
#ifndef MF_SHARDSET_H
#define MF_SHARDSET_H

#include <stddef.h>

typedef struct mf_shard_part {
    const char *name;  /* for messages: the file */
    int k, n;          /* shard k (0-based) of n; n == 0: not a shard of anything */
    const char *group; /* what every shard of one set shares (the job), NULL if unknown */
} mf_shard_part;

/* 0 when no part is a shard (nothing to check), or when the parts are exactly shards
 * 0..N-1 of one N and one group, each once. Otherwise MF_ERR_MISMATCH with a one-line
 * message naming the first problem found and the files involved: a part that is no
 * shard or of another split, of another job, given twice, or the shards missing. With
 * allow_missing, missing shards are no error: the count of them is returned (> 0), with
 * the message naming them left in mf_last_error() for a warning. */
int mf_shard_set_check(const mf_shard_part *parts, size_t count, int allow_missing);

#endif
