/* graph_io.c - save and reload kNN graphs (HDF5: /neighbors, /similarities and
 * attributes rows, k, fingerprint, index). A graph is reused only for the embeddings it
 * was built from: the fingerprint says which. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "knn_internal.h"
#include "mf/status.h"
#include "h5.h"

#define MF_GRAPH_FORMAT "mfkit-knn-graph"
#define MF_GRAPH_MAX_K 4096

static int write_2d(hid_t f, const char *name, hid_t type, size_t n, int k, const void *v)
{
    hsize_t dims[2] = {n, (hsize_t)k}, chunk[2] = {n < 4096 ? (n ? n : 1) : 4096, (hsize_t)k};
    hid_t sp = H5Screate_simple(2, dims, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, 2, chunk);
    H5Pset_deflate(pl, 1);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
    herr_t st = d < 0 ? -1 : H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    if (d >= 0)
        H5Dclose(d);
    H5Pclose(pl);
    H5Sclose(sp);
    return st < 0 ? -1 : 0;
}

int mf_knn_save(const mf_knn_graph *g, mf_output *out)
{
    mf_h5_quiet();
    const char *path = mf_output_path(out);
    hid_t f = H5Fcreate(mf_output_temp(out), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        int rc = mf_h5_open_error(MF_ERR_IO, path, "create the graph file");
        mf_output_abort(out);
        return rc;
    }
    int bad = write_2d(f, "neighbors", H5T_NATIVE_INT64, g->n, g->k, g->nbr) ||
              write_2d(f, "similarities", H5T_NATIVE_FLOAT, g->n, g->k, g->sim) ||
              mf_h5_write_str_attr(f, "mf_format", MF_GRAPH_FORMAT) ||
              mf_h5_write_u64_attr(f, "rows", g->n) || mf_h5_write_u64_attr(f, "k", g->k) ||
              mf_h5_write_str_attr(f, "fingerprint", g->fingerprint) ||
              mf_h5_write_str_attr(f, "index", g->index);
    if (H5Fclose(f) < 0)
        bad = 1;
    if (bad) {
        int rc = mf_set_error(MF_ERR_IO, "cannot write graph '%s': %s", path, mf_h5_reason());
        mf_output_abort(out);
        return rc;
    }
    return mf_output_commit(out);
}

/* Read a 2-D dataset that must be exactly (n, k) of the given class. */
static int read_2d(hid_t f, const char *path, const char *name, hid_t mtype, size_t n, int k,
                   void *out)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0)
        return mf_set_error(MF_ERR_SCHEMA, "graph '%s': no dataset /%s", path, name);
    hid_t sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_ndims(sp);
    if (nd == 2)
        H5Sget_simple_extent_dims(sp, dims, NULL);
    int rc = 0;
    if (nd != 2 || dims[0] != n || dims[1] != (hsize_t)k)
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
