/* knn_pieces.h - the kNN graph of a store too big for one process, in pieces: a plan,
 * shards that each build the neighbours of one share of the inverted lists with bounded
 * memory, and a merge into one graph file (mf/knn.h format; mf-cluster --graph reads it).
 *
 *     mf_knn_plan_params pp = mf_knn_plan_default_params();
 *     mf_knn_plan *plan;
 *     mf_knn_plan_build(&plan, store, &pp);            // sample k-means, every row's lists
 *     mf_knn_plan_save(plan, out);                     // or keep it in memory
 *     mf_knn_part *part;
 *     mf_knn_shard_build(&part, plan, store, 2, 8, mem_limit, NULL);  // shard 2 of 8
 *     mf_knn_part_save(part, "shard 2/8 ...", out2);
 *     ...
 *     mf_knn_graph *g;
 *     mf_knn_merge(&g, paths, 8, 0);                   // checks: one complete set
 *
 * The lists: FAISS spherical k-means on a strided sample (oversized lists split, as in
 * the one-process join); every row is a member of its nearest list and probes its next
 * `probes` nearest. A shard owns a contiguous share of the lists (balanced by the join's
 * cost, members x (members + probing rows)), reads only those lists' rows from the store
 * (streamed, in waves that fit --mem-limit) and scans every member and probing row of a
 * list against its members, one float32 product per tile of rows. Products only filter:
 * whatever can enter a row's top k is scored exactly (mf_knn_dot), and rows keep their k
 * best under a total order (similarity, then lower row). So a row's neighbours are the
 * exact top k of the members of its lists, whichever shard, wave or thread saw them: the
 * merged graph of any number of shards equals the one-shard graph, byte for byte.
 * Refinement rounds (mf_knn_refine_shard) are cut by rows and keep the same property.
 * Cost: n (1 + probes) rows scanned against lists of ~sqrt(n) / c members, with nlist ~
 * c sqrt(n): n^1.5 pair products (docs/CLUSTER.md). */
#ifndef MF_KNN_PIECES_H
#define MF_KNN_PIECES_H

#include <stddef.h>
#include <stdint.h>

#include "mf/durable.h"
#include "mf/knn.h"

struct mf_store;

typedef struct mf_knn_plan {
    size_t n;              /* rows of the store */
    int dim, k;            /* embedding width, neighbours per row */
    int nlist, assign;     /* lists (after splitting); lists per row: its own + probes */
    float *centroids;      /* (nlist, dim) */
    int32_t *lists;        /* (n, assign): each row's own list, then the lists it probes;
                              NULL when left in the file (mf_knn_plan_load_header) */
    char *path;            /* the plan's file, when loaded from one */
    char fingerprint[64];  /* the store's (mf_knn_fingerprint) */
    char id[32];           /* hash of everything above: names the plan in its parts */
    char job[256];         /* what it was made from (mf_knn_plan_job) */
} mf_knn_plan;

typedef struct mf_knn_plan_params {
    int k;          /* neighbours per row (30) */
    int nlist;      /* lists before splitting; 0 = automatic (lists_per_sqrt * sqrt(n)) */
    double lists_per_sqrt; /* automatic nlist factor (default 2) */
    int probes;     /* lists each row is scanned against besides its own (default 32) */
    int sample;     /* k-means sample rows per list (default 64) */
    int progress;   /* 0 none, 1 bars on a terminal, 2 always */
} mf_knn_plan_params;

mf_knn_plan_params mf_knn_plan_default_params(void);

/* The job string of a plan of the store with this fingerprint and these parameters: a
 * plan file with the same job is that plan. */
void mf_knn_plan_job(char *buf, size_t len, const char *fingerprint,
                     const mf_knn_plan_params *p);

/* Build a plan for store s (two passes over /embedding: the sample, the assignment).
 * Returns 0 or a negative mf_status. */
int mf_knn_plan_build(mf_knn_plan **out, struct mf_store *s, const mf_knn_plan_params *p);
/* Save (HDF5: /centroids, /lists, attributes) into `out` (MF_OUTPUT_SEEKABLE), taken over:
 * published on success, removed on failure. */
int mf_knn_plan_save(const mf_knn_plan *p, mf_output *out);
int mf_knn_plan_load(mf_knn_plan **out, const char *path);
/* Everything but /lists (n x assign int32: 1.3 GB at 10M rows), which stays in the file
 * and is read in blocks by mf_knn_plan_each_block: what a shard task loads. */
int mf_knn_plan_load_header(mf_knn_plan **out, const char *path);
/* Call fn(ctx, first, n, lists) for consecutive blocks of rows (lists: n x assign, each
 * value checked to be a list), from memory or from the plan's file; stops at fn < 0. */
int mf_knn_plan_each_block(const mf_knn_plan *p,
                           int (*fn)(void *ctx, size_t first, size_t n, const int32_t *lists),
                           void *ctx);
void mf_knn_plan_free(mf_knn_plan *p);

/* A shard's partial graph: the k best neighbours found for the m rows that are members
 * of the shard's lists (rows increasing). */
typedef struct mf_knn_part {
    size_t n, m;          /* store rows, rows in this part */
    int k, shard, shards; /* shard K of N (0-based) */
    int64_t *rows;        /* (m) */
    int64_t *nbr;         /* (m, k), -1 = none */
    float *sim;           /* (m, k), exact float32, decreasing */
    char fingerprint[64], plan[32]; /* plan: the plan's id, or the refined graph's */
    char index[64];                 /* what the merged graph's index attribute says */
} mf_knn_part;

/* Build shard `shard` of `shards` of the plan from store s. mem_limit (bytes, 0 = no
 * limit) bounds what the shard holds: embeddings are read in as many passes over the
 * store as the limit needs; MF_ERR_LIMIT if even the fixed part does not fit. The result
 * does not depend on mem_limit or the thread count. progress as in the plan params. */
int mf_knn_shard_build(mf_knn_part **out, const mf_knn_plan *plan, struct mf_store *s,
                       int shard, int shards, size_t mem_limit, int progress);
/* Save a part (HDF5: /rows, /neighbors, /similarities, attributes), recording `job`. */
int mf_knn_part_save(const mf_knn_part *p, const char *job, mf_output *out);
/* Read a part file: its header only (data 0: rows/nbr/sim stay NULL), or everything
 * (every entry validated). */
int mf_knn_part_load(mf_knn_part **out, const char *path, int data);
void mf_knn_part_free(mf_knn_part *p);

/* Merge the parts in `paths` into one graph. They must be one complete K/N set of one
 * plan: a part of another plan or another N, a repeated K or a missing K is an error
 * naming it (MF_ERR_MISMATCH), unless allow_partial (then only missing parts are
 * accepted: their rows keep what other parts found, or no neighbours). On success every
 * path was merged once. */
int mf_knn_merge(mf_knn_graph **out, const char *const *paths, size_t n_paths,
                 int allow_partial);

/* One refinement round (as in the one-process join: candidates are a row's neighbours,
 * its reverse edges and its neighbours' neighbours, all scored exactly) for shard `shard`
 * of `shards` of the rows of graph g, reading the store: the rows' own embeddings, then
 * one pass for their candidates (again in waves when mem_limit needs). graph_id names g
 * in the part (mf_knn_graph_id). The merged parts are the refined graph, whatever the
 * number of shards. */
int mf_knn_refine_shard(mf_knn_part **out, const mf_knn_graph *g, const char *graph_id,
                        struct mf_store *s, int shard, int shards, size_t mem_limit,
                        int progress);
/* A short id of a graph file from its job attribute (what made it). */
void mf_knn_graph_id(char out[32], const char *job);

/* The graph of one part that covers every row (shard 0 of 1: mf-graph build). */
int mf_knn_graph_from_part(mf_knn_graph **out, const mf_knn_part *p);

/* The job a plan, part or graph file was made for, read from its "job" attribute
 * (malloc'ed, or NULL when the file has none or cannot be read): a step whose output
 * exists with the same job is done. */
char *mf_knn_file_job(const char *path);

/* recall@k of g against an exact scan of the store's (normalised) embeddings, on m
 * strided query rows; streams the store (one block at a time). */
int mf_knn_store_recall(const mf_knn_graph *g, struct mf_store *s, size_t m, double *recall);

#endif
