/* knn.h - the k-nearest-neighbour graph of a set of embeddings (cosine), built with
 * FAISS, saved to and reloaded from a small HDF5 file.
 *
 *     mf_knn_params p = mf_knn_default_params();
 *     p.k = 30;                                   // p.index = "IVF4096,Flat"; p.nprobe = 64
 *     mf_knn_graph *g;
 *     mf_knn_info info;
 *     if (mf_knn_build(&g, x, n, dim, &p, &info) < 0) die(mf_last_error());
 *     // g->nbr[i*k + r], g->sim[i*k + r]: r-th most similar other sample of row i
 *     mf_output *o;                              // mf/durable.h
 *     if (mf_output_open(&o, "graph.h5", MF_OUTPUT_SEEKABLE) == 0) mf_knn_save(g, o);
 *     mf_knn_free(g);
 *
 * x must hold L2-normalised rows (mf_knn_normalize), so inner product = cosine. Below
 * p.exact_below rows the search is exact (IndexFlatIP, BLAS-backed). Above, the default
 * is "IVFJoin<nlist>" (nlist ~ 4 sqrt(n)): FAISS spherical k-means makes the inverted
 * lists (oversized ones split), every row gets its p.nprobe nearest lists, each list is
 * scanned by all rows probing it in one matrix product per block (AMX int8 where the CPU
 * has it, else float32 sgemm; ~10x faster than FAISS's own query-by-query IVF scan for
 * an all-rows graph), then p.refine rounds of reverse-edge and neighbour-of-neighbour
 * refinement score candidates exactly (docs/CLUSTER.md). p.index may name any FAISS factory
 * string instead ("IVF4096,Flat" with p.nprobe, "HNSW32,Flat" with p.ef as efSearch),
 * searched by FAISS in batches of p.batch rows. Besides x, memory is the index (n*dim
 * floats for FAISS Flat/IVF-Flat; for IVFJoin n*nprobe*16 + n*dim + n*k*20 bytes) and the graph
 * (n*k*12 bytes).
 *
 * FAISS is only called from the calling thread; it runs its own OpenMP loops with the
 * thread count in force (omp_set_num_threads). A graph row lists neighbours by
 * decreasing similarity; missing entries (fewer than k found) have nbr = -1, sim = -2.
 * The sample itself is never listed. */
#ifndef MF_KNN_H
#define MF_KNN_H

#include <stddef.h>
#include <stdint.h>

#include "mf/durable.h"

typedef struct mf_knn_graph {
    size_t n;             /* samples */
    int k;                /* neighbours per sample */
    int64_t *nbr;         /* (n, k) neighbour rows, -1 = none */
    float *sim;           /* (n, k) cosine similarities, decreasing per row */
    char fingerprint[64]; /* identifies the embeddings the graph was built from */
    char index[64];       /* FAISS factory string used ("Flat", "IVF1024,Flat", ...) */
} mf_knn_graph;

typedef struct mf_knn_params {
    int k;                /* neighbours per sample (default 30) */
    const char *index;    /* FAISS factory string; NULL = automatic */
    int nprobe;           /* IVF lists to probe; 0 = automatic (IVFJoin nlist/8, min
                             32; IVF 32) */
    int ef;               /* HNSW efSearch; 0 = automatic (max(2k, 64)) */
    int refine;           /* IVFJoin: rounds of reverse-edge and neighbour-of-neighbour
                             refinement; 0 = automatic (4) */
    size_t batch;         /* query rows per search call (default 8192) */
    size_t exact_below;   /* automatic choice: exact below this many rows (50000) */
    size_t recall_sample; /* queries checked against exact search when approximate
                             (default 1000; 0 = skip) */
    int progress;         /* IVFJoin progress bars on stderr: 0 none (default), 1 when
                             stderr is a terminal, 2 always */
} mf_knn_params;

typedef struct mf_knn_info {
    int exact;     /* 1 if the graph is exact */
    double recall; /* recall@k of the graph on the sample, 1 if exact, -1 if
                             not measured */
    size_t recall_queries;
    double seconds_train, seconds_add, seconds_search, seconds_recall;
} mf_knn_info;

mf_knn_params mf_knn_default_params(void);

/* L2-normalise n rows of dim floats in place (a zero or non-finite row becomes zero).
 * OpenMP. */
void mf_knn_normalize(float *x, size_t n, int dim);

/* Build the graph of n normalised rows x (n*dim floats, kept by the caller). info may
 * be NULL. Returns 0 or a negative mf_status (MF_ERR_ARG: n < 2, k < 1, k >= n;
 * MF_ERR_INTERNAL: FAISS failed, with its message). */
int mf_knn_build(mf_knn_graph **out, const float *x, size_t n, int dim, const mf_knn_params *p,
                 mf_knn_info *info);

/* A graph from caller-provided arrays (copied); for tests and tools that make graphs
 * by other means. */
int mf_knn_from_arrays(mf_knn_graph **out, size_t n, int k, const int64_t *nbr,
                       const float *sim);

/* Save to an HDF5 file: /neighbors int64 (n,k), /similarities float32 (n,k), attributes
 * rows, k, fingerprint, index. `out` (opened with MF_OUTPUT_SEEKABLE) is taken over:
 * published on success, removed on failure. */
int mf_knn_save(const mf_knn_graph *g, mf_output *out);
/* The same, also recording `job` (a string attribute; may be NULL): what the graph was
 * made from, so that a re-run of the same step can see it is done (mf/knn_pieces.h). */
int mf_knn_save_job(const mf_knn_graph *g, const char *job, mf_output *out);

/* Load a saved graph; fails with MF_ERR_MISMATCH if its row count or fingerprint differs
 * from the expected ones (a stale graph of other embeddings). expect_fingerprint may be
 * NULL (no check). Every neighbour index is validated. */
int mf_knn_load(mf_knn_graph **out, const char *path, size_t expect_rows,
                const char *expect_fingerprint);

void mf_knn_free(mf_knn_graph *g);

/* ---- exact search and k-means (the only FAISS entry points outside the graph) ------
 * For code that needs similarity searches other than the graph (near-duplicates, label
 * overlap): an exact inner-product index and FAISS's spherical k-means, behind mfkit's
 * error conventions. Vectors are L2-normalised rows, so inner product = cosine. */

typedef struct mf_knn_flat mf_knn_flat;

int mf_knn_flat_new(mf_knn_flat **out, int dim);
/* Add n rows; they get ids size..size+n-1 in the order added. */
int mf_knn_flat_add(mf_knn_flat *f, const float *x, size_t n);
/* The k most similar stored rows of each query: sim[q*k + j], id[q*k + j] (-1 when fewer
 * than k are stored). */
int mf_knn_flat_search(mf_knn_flat *f, const float *q, size_t nq, int k, float *sim,
                       int64_t *id);
/* Every stored row with similarity >= thr to a query: fn(ctx, first + q, id, sim) for
 * each, queries in order; fn returns 0 to go on, else that value is returned. */
typedef int (*mf_knn_pair_fn)(void *ctx, int64_t query, int64_t id, float sim);
int mf_knn_flat_range(mf_knn_flat *f, const float *q, size_t nq, int64_t first, float thr,
                      mf_knn_pair_fn fn, void *ctx);
void mf_knn_flat_free(mf_knn_flat *f);

/* Spherical k-means (FAISS, fixed seed) of k centroids on `per_centroid` rows per
 * centroid taken at an even stride from x[0..n), `niter` iterations. centroids: k * dim
 * floats, caller-allocated. k <= n. */
int mf_knn_kmeans(const float *x, size_t n, int dim, int k, int per_centroid, int niter,
                  float *centroids);

/* Fingerprint of a store's content for mf_knn_save/load: row count, dim and a 64-bit
 * FNV-1a hash of the magnitudes (which every re-embedding or reordering changes). */
void mf_knn_fingerprint(char out[64], size_t n, int dim, const float *magnitude);

#endif
