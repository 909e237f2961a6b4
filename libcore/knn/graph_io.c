/* graph_io.c - save and reload kNN graphs (HDF5: /neighbors, /similarities and
 * attributes rows, k, fingerprint, index). A graph is reused only for the embeddings it
 * was built from: the fingerprint says which. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knn_internal.h"
#include "mf/knn_pieces.h"
#include "mf/status.h"
#include "h5.h"

#define MF_GRAPH_FORMAT "mfkit-knn-graph"
#define MF_GRAPH_MAX_K 4096

/* An (n, k) dataset, or 1-D (n) when k == 0. */
static int write_2d(hid_t f, const char *name, hid_t type, size_t n, int k, const void *v)
{
    int rank = k ? 2 : 1;
    hsize_t dims[2] = {n, (hsize_t)k}, chunk[2] = {n < 4096 ? (n ? n : 1) : 4096, (hsize_t)k};
    hid_t sp = H5Screate_simple(rank, dims, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, rank, chunk);
    H5Pset_deflate(pl, 1);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    herr_t st = d < 0 ? -1 : H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    if (d >= 0)
        H5Dclose(d);
    H5Pclose(pl);
    H5Sclose(sp);
    return st < 0 ? -1 : 0;
}

int mf_knn_save(const mf_knn_graph *g, mf_output *out) { return mf_knn_save_job(g, NULL, out); }

/* Create the temporary of `out` as an HDF5 file; on failure the output is removed. */
static hid_t create_h5(mf_output *out, const char *what)
{
    mf_h5_quiet();
    hid_t f = H5Fcreate(mf_output_temp(out), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        mf_h5_open_error(MF_ERR_IO, mf_output_path(out), what);
        mf_output_abort(out);
    }
    return f;
}

/* Close f and publish out, or remove it when anything failed (bad != 0); `what` names
 * the file in the error. */
static int finish_h5(hid_t f, mf_output *out, int bad, const char *what)
{
    if (H5Fclose(f) < 0)
        bad = 1;
    if (bad) {
        int rc = mf_set_error(MF_ERR_IO, "cannot write %s '%s': %s", what, mf_output_path(out),
                              mf_h5_reason());
        mf_output_abort(out);
        return rc;
    }
    return mf_output_commit(out);
}

int mf_knn_save_job(const mf_knn_graph *g, const char *job, mf_output *out)
{
    hid_t f = create_h5(out, "create the graph file");
    if (f < 0)
        return MF_ERR_IO;
    int bad = write_2d(f, "neighbors", H5T_NATIVE_INT64, g->n, g->k, g->nbr) ||
              write_2d(f, "similarities", H5T_NATIVE_FLOAT, g->n, g->k, g->sim) ||
              mf_h5_write_str_attr(f, "mf_format", MF_GRAPH_FORMAT) ||
              mf_h5_write_u64_attr(f, "rows", g->n) || mf_h5_write_u64_attr(f, "k", g->k) ||
              mf_h5_write_str_attr(f, "fingerprint", g->fingerprint) ||
              mf_h5_write_str_attr(f, "index", g->index) ||
              (job && mf_h5_write_str_attr(f, "job", job));
    return finish_h5(f, out, bad, "graph");
}

/* Read a dataset that must be exactly (n, k) of the given class ((n) when k == 0). */
static int read_2d(hid_t f, const char *path, const char *name, hid_t mtype, size_t n, int k,
                   void *out)
{
    int rank = k ? 2 : 1;
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        return mf_set_error(MF_ERR_SCHEMA, "graph '%s': no dataset /%s", path, name);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd == rank)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    int rc = 0;
    if (nd != rank || dims[0] != n || dims[1] != (hsize_t)k)
        rc = mf_set_error(MF_ERR_SCHEMA, "graph '%s': /%s is not %zu x %d", path, name, n, k);
    else if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = mf_set_error(MF_ERR_FORMAT, "graph '%s': cannot read /%s: %s", path, name,
                          mf_h5_reason());
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

static int check_header(hid_t f, const char *path, size_t expect_rows, const char *fp,
                        uint64_t *k, char *index, size_t index_len)
{
    char *fmt = NULL, *gfp = NULL, *idx = NULL;
    uint64_t rows = 0;
    int rc = 0;
    mf_h5_read_str_attr(f, "mf_format", &fmt);
    mf_h5_read_str_attr(f, "fingerprint", &gfp);
    mf_h5_read_str_attr(f, "index", &idx);
    if (!fmt || strcmp(fmt, MF_GRAPH_FORMAT) != 0)
        rc = mf_set_error(MF_ERR_FORMAT, "'%s' is not an mfkit kNN graph", path);
    else if (mf_h5_read_u64_attr(f, "rows", &rows) != 1 ||
             mf_h5_read_u64_attr(f, "k", k) != 1 || *k < 1 || *k > MF_GRAPH_MAX_K)
        rc = mf_set_error(MF_ERR_FORMAT, "graph '%s': bad rows/k attributes", path);
    else if (rows != expect_rows || (fp && (!gfp || strcmp(fp, gfp) != 0)))
        rc = mf_set_error(MF_ERR_MISMATCH,
                          "graph '%s' was built from other embeddings "
                          "(%llu rows, %s; the store has %zu rows, %s): delete it or pass "
                          "another --graph",
                          path, (unsigned long long)rows, gfp ? gfp : "no fingerprint",
                          expect_rows, fp ? fp : "-");
    snprintf(index, index_len, "%s", idx ? idx : "?");
    free(fmt), free(gfp), free(idx);
    return rc;
}

int mf_knn_load(mf_knn_graph **out, const char *path, size_t expect_rows,
                const char *expect_fingerprint)
{
    mf_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mf_h5_open_error(MF_ERR_IO, path, "open the graph");
    uint64_t k = 0;
    char index[64];
    mf_knn_graph *g = NULL;
    int rc = check_header(f, path, expect_rows, expect_fingerprint, &k, index, sizeof index);
    if (rc == 0)
        rc = mf_knn_graph_alloc(&g, expect_rows, (int)k);
    if (rc == 0)
        rc = read_2d(f, path, "neighbors", H5T_NATIVE_INT64, g->n, g->k, g->nbr);
    if (rc == 0)
        rc = read_2d(f, path, "similarities", H5T_NATIVE_FLOAT, g->n, g->k, g->sim);
    H5Fclose(f);
    for (size_t i = 0; rc == 0 && i < g->n * (size_t)g->k; i++)
        if (g->nbr[i] < -1 || g->nbr[i] >= (int64_t)g->n || !(g->sim[i] == g->sim[i]))
            rc = mf_set_error(MF_ERR_FORMAT, "graph '%s': bad entry %zu of row %zu", path,
                              i % g->k, i / g->k);
    if (rc < 0) {
        mf_knn_free(g);
        return rc;
    }
    if (expect_fingerprint)
        snprintf(g->fingerprint, sizeof g->fingerprint, "%s", expect_fingerprint);
    snprintf(g->index, sizeof g->index, "%s", index);
    *out = g;
    return 0;
}

/* ---- plans and parts (mf/knn_pieces.h) ----------------------------------------------- */

#define MF_PLAN_FORMAT "mfkit-knn-plan"
#define MF_PART_FORMAT "mfkit-knn-part"

int mf_knn_plan_save(const mf_knn_plan *p, mf_output *out)
{
    hid_t f = create_h5(out, "create the plan");
    if (f < 0)
        return MF_ERR_IO;
    int bad =
        write_2d(f, "centroids", H5T_NATIVE_FLOAT, (size_t)p->nlist, p->dim, p->centroids) ||
        write_2d(f, "lists", H5T_NATIVE_INT32, p->n, p->assign, p->lists) ||
        mf_h5_write_str_attr(f, "mf_format", MF_PLAN_FORMAT) ||
        mf_h5_write_u64_attr(f, "rows", p->n) || mf_h5_write_u64_attr(f, "dim", p->dim) ||
        mf_h5_write_u64_attr(f, "k", p->k) || mf_h5_write_u64_attr(f, "nlist", p->nlist) ||
        mf_h5_write_u64_attr(f, "assign", p->assign) ||
        mf_h5_write_str_attr(f, "fingerprint", p->fingerprint) ||
        mf_h5_write_str_attr(f, "plan", p->id) || mf_h5_write_str_attr(f, "job", p->job);
    return finish_h5(f, out, bad, "plan");
}

void mf_knn_plan_free(mf_knn_plan *p)
{
    if (!p)
        return;
    free(p->centroids);
    free(p->lists);
    free(p->path);
    free(p);
}

/* Read a u64 attribute that must lie in [lo, hi]. */
static int read_u64_in(hid_t f, const char *path, const char *name, uint64_t lo, uint64_t hi,
                       uint64_t *v)
{
    if (mf_h5_read_u64_attr(f, name, v) != 1 || *v < lo || *v > hi)
        return mf_set_error(MF_ERR_FORMAT, "'%s': bad or missing attribute '%s'", path, name);
    return 0;
}

/* Copy a string attribute into buf (len bytes); MF_ERR_FORMAT if missing or too long. */
static int read_str_into(hid_t f, const char *path, const char *name, char *buf, size_t len)
{
    char *v = NULL;
    mf_h5_read_str_attr(f, name, &v);
    int rc = v && strlen(v) < len ? 0
                                  : mf_set_error(MF_ERR_FORMAT,
                                                 "'%s': bad or missing "
                                                 "attribute '%s'",
                                                 path, name);
    if (rc == 0)
        snprintf(buf, len, "%s", v);
    free(v);
    return rc;
}

static int check_format(hid_t f, const char *path, const char *want, const char *what)
{
    char *fmt = NULL;
    mf_h5_read_str_attr(f, "mf_format", &fmt);
    int rc = fmt && strcmp(fmt, want) == 0
                 ? 0
                 : mf_set_error(MF_ERR_FORMAT, "'%s' is not an mfkit %s", path, what);
    free(fmt);
    return rc;
}

/* Values of a block of /lists that are not lists: the first bad row, or -1. */
static long long bad_list_row(const int32_t *lists, size_t n, int assign, int nlist)
{
    for (size_t i = 0; i < n * assign; i++)
        if (lists[i] < 0 || lists[i] >= nlist)
            return (long long)(i / assign);
    return -1;
}

static int load_plan(mf_knn_plan **out, const char *path, int with_lists)
{
    mf_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mf_h5_open_error(MF_ERR_IO, path, "open the plan");
    mf_knn_plan *p = calloc(1, sizeof *p);
    uint64_t n = 0, dim = 0, k = 0, nlist = 0, assign = 0;
    size_t cells;
    int rc = p ? check_format(f, path, MF_PLAN_FORMAT, "graph plan") : MF_ERR_NOMEM;
    if (rc == 0)
        rc = read_u64_in(f, path, "rows", 2, (uint64_t)INT32_MAX, &n) ||
                     read_u64_in(f, path, "dim", 1, 65536, &dim) ||
                     read_u64_in(f, path, "k", 1, MF_GRAPH_MAX_K, &k) ||
                     read_u64_in(f, path, "nlist", 1, n, &nlist) ||
                     read_u64_in(f, path, "assign", 1, nlist, &assign) ||
                     read_str_into(f, path, "fingerprint", p->fingerprint,
                                   sizeof p->fingerprint) ||
                     read_str_into(f, path, "plan", p->id, sizeof p->id) ||
                     read_str_into(f, path, "job", p->job, sizeof p->job)
                 ? MF_ERR_FORMAT
                 : 0;
    if (rc == 0) {
        p->n = n, p->dim = (int)dim, p->k = (int)k, p->nlist = (int)nlist;
        p->assign = (int)assign;
        rc = mf_size_mul(n, assign * sizeof(int32_t), &cells, "plan lists");
    }
    if (rc == 0 && (!(p->path = strdup(path)) || (with_lists && !(p->lists = malloc(cells))) ||
                    !(p->centroids = malloc(nlist * dim * sizeof(float)))))
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for the plan '%s'", path);
    if (rc == 0)
        rc = read_2d(f, path, "centroids", H5T_NATIVE_FLOAT, nlist, (int)dim, p->centroids);
    if (rc == 0 && with_lists)
        rc = read_2d(f, path, "lists", H5T_NATIVE_INT32, n, (int)assign, p->lists);
    H5Fclose(f);
    long long bad =
        rc == 0 && with_lists ? bad_list_row(p->lists, n, (int)assign, (int)nlist) : -1;
    if (bad >= 0)
        rc = mf_set_error(MF_ERR_FORMAT, "plan '%s': bad list of row %lld", path, bad);
    if (rc < 0) {
        mf_knn_plan_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int mf_knn_plan_load(mf_knn_plan **out, const char *path) { return load_plan(out, path, 1); }

int mf_knn_plan_load_header(mf_knn_plan **out, const char *path)
{
    return load_plan(out, path, 0);
}

/* Rows of /lists per block read from the file: 33 lists x 4 bytes x 64k = 8.6 MB. */
#define PLAN_BLOCK_ROWS 65536

int mf_knn_plan_each_block(const mf_knn_plan *p,
                           int (*fn)(void *ctx, size_t first, size_t n, const int32_t *lists),
                           void *ctx)
{
    if (p->lists)
        return fn(ctx, 0, p->n, p->lists);
    if (!p->path)
        return mf_set_error(MF_ERR_ARG, "graph plan: no lists in memory and no file");
    mf_h5_quiet();
    hid_t f = H5Fopen(p->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mf_h5_open_error(MF_ERR_IO, p->path, "open the plan");
    hid_t d = H5Dopen2(f, "lists", H5P_DEFAULT), fs = d >= 0 ? H5Dget_space(d) : -1;
    hsize_t dims[2] = {0, 0};
    int rc = 0;
    if (fs < 0 || H5Sget_simple_extent_ndims(fs) != 2 ||
        H5Sget_simple_extent_dims(fs, dims, NULL) < 0 || dims[0] != p->n ||
        dims[1] != (hsize_t)p->assign)
        rc = mf_set_error(MF_ERR_SCHEMA, "plan '%s': /lists is not %zu x %d", p->path, p->n,
                          p->assign);
    size_t rows = p->n < PLAN_BLOCK_ROWS ? p->n : PLAN_BLOCK_ROWS;
    int32_t *buf = rc == 0 ? malloc(rows * p->assign * sizeof *buf) : NULL;
    if (rc == 0 && !buf)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory reading the plan's lists");
    for (size_t first = 0; rc == 0 && first < p->n; first += rows) {
        size_t m = p->n - first < rows ? p->n - first : rows;
        hsize_t start[2] = {first, 0}, count[2] = {m, (hsize_t)p->assign};
        hid_t ms = H5Screate_simple(2, count, NULL);
        if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, buf) < 0)
            rc = mf_set_error(MF_ERR_FORMAT, "plan '%s': cannot read /lists: %s", p->path,
                              mf_h5_reason());
        H5Sclose(ms);
        long long bad = rc == 0 ? bad_list_row(buf, m, p->assign, p->nlist) : -1;
        if (bad >= 0)
            rc = mf_set_error(MF_ERR_FORMAT, "plan '%s': bad list of row %lld", p->path,
                              (long long)first + bad);
        if (rc == 0)
            rc = fn(ctx, first, m, buf);
    }
    free(buf);
    if (fs >= 0)
        H5Sclose(fs);
    if (d >= 0)
        H5Dclose(d);
    H5Fclose(f);
    return rc;
}

int mf_knn_part_save(const mf_knn_part *p, const char *job, mf_output *out)
{
    hid_t f = create_h5(out, "create the graph part");
    if (f < 0)
        return MF_ERR_IO;
    int bad = write_2d(f, "rows", H5T_NATIVE_INT64, p->m, 0, p->rows) ||
              write_2d(f, "neighbors", H5T_NATIVE_INT64, p->m, p->k, p->nbr) ||
              write_2d(f, "similarities", H5T_NATIVE_FLOAT, p->m, p->k, p->sim) ||
              mf_h5_write_str_attr(f, "mf_format", MF_PART_FORMAT) ||
              mf_h5_write_u64_attr(f, "rows", p->n) || mf_h5_write_u64_attr(f, "k", p->k) ||
              mf_h5_write_u64_attr(f, "shard", p->shard) ||
              mf_h5_write_u64_attr(f, "shards", p->shards) ||
              mf_h5_write_str_attr(f, "fingerprint", p->fingerprint) ||
              mf_h5_write_str_attr(f, "plan", p->plan) || mf_h5_write_str_attr(f, "job", job) ||
              mf_h5_write_str_attr(f, "index", p->index);
    return finish_h5(f, out, bad, "graph part");
}

void mf_knn_part_free(mf_knn_part *p)
{
    if (!p)
        return;
    free(p->rows), free(p->nbr), free(p->sim);
    free(p);
}

/* Read a part: its header, and with `data` its rows (every entry validated). */
int mf_knn_part_load(mf_knn_part **out, const char *path, int data)
{
    mf_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mf_h5_open_error(MF_ERR_IO, path, "open the graph part");
    mf_knn_part *p = calloc(1, sizeof *p);
    uint64_t n = 0, k = 0, shard = 0, shards = 0, m = 0;
    int rc = p ? check_format(f, path, MF_PART_FORMAT, "graph part") : MF_ERR_NOMEM;
    if (rc == 0)
        rc = read_u64_in(f, path, "rows", 2, (uint64_t)INT32_MAX, &n) ||
                     read_u64_in(f, path, "k", 1, MF_GRAPH_MAX_K, &k) ||
                     read_u64_in(f, path, "shards", 1, 1 << 20, &shards) ||
                     read_u64_in(f, path, "shard", 0, shards - 1, &shard) ||
                     read_str_into(f, path, "fingerprint", p->fingerprint,
                                   sizeof p->fingerprint) ||
                     read_str_into(f, path, "plan", p->plan, sizeof p->plan) ||
                     read_str_into(f, path, "index", p->index, sizeof p->index)
                 ? MF_ERR_FORMAT
                 : 0;
    hid_t d = rc == 0 ? H5Dopen2(f, "rows", H5P_DEFAULT) : -1;
    if (rc == 0 && d < 0)
        rc = mf_set_error(MF_ERR_SCHEMA, "graph part '%s': no dataset /rows", path);
    if (d >= 0) {
        hid_t sp = H5Dget_space(d);
        hsize_t dims[1] = {0};
        if (H5Sget_simple_extent_ndims(sp) == 1)
            H5Sget_simple_extent_dims(sp, dims, NULL);
        m = dims[0];
        H5Sclose(sp);
        H5Dclose(d);
        if (m > n)
            rc = mf_set_error(MF_ERR_FORMAT, "graph part '%s': more rows than the store", path);
    }
    if (rc == 0) {
        p->n = n, p->m = m, p->k = (int)k, p->shard = (int)shard, p->shards = (int)shards;
    }
    if (rc == 0 && data) {
        p->rows = malloc((m ? m : 1) * sizeof *p->rows);
        p->nbr = malloc((m ? m : 1) * k * sizeof *p->nbr);
        p->sim = malloc((m ? m : 1) * k * sizeof *p->sim);
        if (!p->rows || !p->nbr || !p->sim)
            rc = mf_set_error(MF_ERR_NOMEM, "out of memory for the graph part '%s'", path);
        if (rc == 0)
            rc = read_2d(f, path, "rows", H5T_NATIVE_INT64, m, 0, p->rows);
        if (rc == 0)
            rc = read_2d(f, path, "neighbors", H5T_NATIVE_INT64, m, (int)k, p->nbr);
        if (rc == 0)
            rc = read_2d(f, path, "similarities", H5T_NATIVE_FLOAT, m, (int)k, p->sim);
        for (size_t i = 0; rc == 0 && i < m; i++)
            if (p->rows[i] < 0 || p->rows[i] >= (int64_t)n ||
                (i && p->rows[i] <= p->rows[i - 1]))
                rc = mf_set_error(MF_ERR_FORMAT, "graph part '%s': bad row %zu", path, i);
        for (size_t i = 0; rc == 0 && i < m * k; i++)
            if (p->nbr[i] < -1 || p->nbr[i] >= (int64_t)n || !(p->sim[i] == p->sim[i]))
                rc = mf_set_error(MF_ERR_FORMAT, "graph part '%s': bad entry %zu of row %zu",
                                  path, i % k, i / k);
    }
    H5Fclose(f);
    if (rc < 0) {
        mf_knn_part_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

char *mf_knn_file_job(const char *path)
{
    mf_h5_quiet();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return NULL;
    char *job = NULL;
    mf_h5_read_str_attr(f, "job", &job);
    H5Fclose(f);
    return job;
}
