/* Store: round trip, resume, crash safety, copying rows, schema validation. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mf/status.h"
#include "mf/store.h"
#include "temp_dir.h"

#define DIM 8

static char path[512];

static void setup(void)
{
    temp_dir_make("store");
    snprintf(path, sizeof path, "%s/s.h5", dir);
}

TestSuite(store, .init = setup, .fini = temp_dir_remove);

/* Deterministic rows: value depends on the global row index only. */
static void make_rows(uint64_t first, size_t n, float *emb, char **ids, int64_t *labels)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t r = first + i;
        for (int j = 0; j < DIM; j++)
            emb[i * DIM + j] = (float)((r * 31 + (uint64_t)j * 7) % 101) / 7.0f - 3.3f;
        snprintf(ids[i], 64, "visage-\xc3\xa9t\xc3\xa9/%llu.jpg", (unsigned long long)r);
        labels[i] = (int64_t)(r % 5) - 1;
    }
}

static void append_rows(mf_store *s, uint64_t first, size_t n)
{
    float emb[64 * DIM];
    char buf[64][64];
    char *ids[64];
    int64_t labels[64];
    cr_assert(n <= 64);
    for (size_t i = 0; i < n; i++)
        ids[i] = buf[i];
    make_rows(first, n, emb, ids, labels);
    cr_assert_eq(mf_store_append(s, n, emb, NULL, (const char *const *)ids, labels), 0, "%s",
                 mf_last_error());
}

static void check_rows(mf_store *s, uint64_t first, size_t n)
{
    float emb[64 * DIM], got[64 * DIM], mag[64];
    char buf[64][64];
    char *ids[64], *got_ids[64];
    int64_t labels[64], got_labels[64];
    for (size_t i = 0; i < n; i++)
        ids[i] = buf[i];
    make_rows(first, n, emb, ids, labels);
    cr_assert_eq(mf_store_read_embedding(s, first, n, got), 0, "%s", mf_last_error());
    cr_assert_eq(memcmp(emb, got, n * DIM * sizeof(float)), 0, "embeddings differ");
    cr_assert_eq(mf_store_read_magnitude(s, first, n, mag), 0);
    cr_assert_eq(mf_store_read_label(s, first, n, got_labels), 0);
    cr_assert_eq(mf_store_read_ids(s, first, n, got_ids), 0, "%s", mf_last_error());
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < DIM; j++)
            ss += (double)emb[i * DIM + j] * emb[i * DIM + j];
        cr_assert_float_eq(mag[i], (float)sqrt(ss), 1e-6);
        cr_assert_eq(got_labels[i], labels[i]);
        cr_assert_str_eq(got_ids[i], ids[i]);
    }
    mf_store_free_strings(got_ids, n);
}

static mf_store *new_store(void)
{
    mf_store_params p = mf_store_default_params();
    p.dim = DIM;
    p.model = "magface-iresnet18";
    p.chunk_rows = 16;
    mf_store *s;
    cr_assert_eq(mf_store_create(&s, path, &p), 0, "%s", mf_last_error());
    return s;
}

/* A resumable job's store (mf-embed's way of writing). */
static mf_store *job_store(const char *job, mf_store_job_state want)
{
    mf_store_params p = mf_store_default_params();
    p.dim = DIM;
    p.model = "magface-iresnet18";
    p.chunk_rows = 16;
    p.job = job;
    mf_store *s;
    mf_store_job_state state;
    cr_assert_eq(mf_store_open_or_resume(&s, path, &p, &state), 0, "%s", mf_last_error());
    cr_assert_eq(state, want);
    return s;
}

Test(store, round_trip_is_bit_identical)
{
    mf_store *s = new_store();
    append_rows(s, 0, 40);
    append_rows(s, 40, 3);
    cr_assert_eq(mf_store_add_failed(s, "broken.jpg", "truncated JPEG"), 0);
    cr_assert_eq(access(path, F_OK), -1, "final name must not exist before commit");
    cr_assert_eq(mf_store_commit(s), 0, "%s", mf_last_error());

    cr_assert_eq(mf_store_open(&s, path), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_rows(s), 43);
    cr_assert_eq(mf_store_dim(s), DIM);
    cr_assert_str_eq(mf_store_attr(s, "model"), "magface-iresnet18");
    cr_assert_str_eq(mf_store_attr(s, "mf_format"), "mfkit-store");
    check_rows(s, 0, 43);
    cr_assert_eq(mf_store_failed_count(s), 1);
    char *id, *reason;
    cr_assert_eq(mf_store_read_failed(s, 0, &id, &reason), 0);
    cr_assert_str_eq(id, "broken.jpg");
    cr_assert_str_eq(reason, "truncated JPEG");
    free(id);
    free(reason);
    float x;
    cr_assert_lt(mf_store_read_magnitude(s, 43, 1, &x), 0, "reading past the end must fail");
    mf_store_close(s);
}

Test(store, append_across_reopen)
{
    mf_store *s = job_store("job-a", MF_STORE_JOB_NEW);
    append_rows(s, 0, 10);
    cr_assert_eq(mf_store_close(s), 0, "closing a job's store keeps it to resume");
    s = job_store("job-a", MF_STORE_JOB_RESUMED);
    cr_assert_eq(mf_store_rows(s), 10);
    append_rows(s, 10, 25);
    cr_assert_eq(mf_store_commit(s), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_open(&s, path), 0);
    cr_assert_eq(mf_store_rows(s), 35);
    check_rows(s, 0, 35);
    mf_store_close(s);
}

Test(store, a_finished_job_is_complete_and_another_job_is_refused)
{
    mf_store *s = job_store("job-a", MF_STORE_JOB_NEW);
    append_rows(s, 0, 5);
    cr_assert_eq(mf_store_commit(s), 0, "%s", mf_last_error());
    mf_store_params p = mf_store_default_params();
    p.dim = DIM;
    p.job = "job-a";
    mf_store_job_state state;
    cr_assert_eq(mf_store_open_or_resume(&s, path, &p, &state), 0, "%s", mf_last_error());
    cr_assert_eq(state, MF_STORE_JOB_COMPLETE);
    cr_assert_null(s);
    p.job = "job-b";
    cr_assert_eq(mf_store_open_or_resume(&s, path, &p, &state), MF_ERR_EXISTS);
    p.overwrite = 1;
    cr_assert_eq(mf_store_open_or_resume(&s, path, &p, &state), 0, "%s", mf_last_error());
    cr_assert_eq(state, MF_STORE_JOB_NEW);
    mf_store_discard(s);
}

Test(store, a_partial_of_another_job_is_kept_unless_overwrite)
{
    mf_store *s = job_store("job-a", MF_STORE_JOB_NEW);
    append_rows(s, 0, 7);
    mf_store_close(s);
    mf_store_params p = mf_store_default_params();
    p.dim = DIM;
    p.job = "job-b";
    mf_store_job_state state;
    cr_assert_eq(mf_store_open_or_resume(&s, path, &p, &state), MF_ERR_MISMATCH);
    cr_assert(strstr(mf_last_error(), ".partial"), "%s", mf_last_error());
    s = job_store("job-a", MF_STORE_JOB_RESUMED); /* untouched by the refused run */
    cr_assert_eq(mf_store_rows(s), 7);
    mf_store_close(s);
    p.overwrite = 1;
    cr_assert_eq(mf_store_open_or_resume(&s, path, &p, &state), 0, "%s", mf_last_error());
    cr_assert_eq(state, MF_STORE_JOB_NEW);
    cr_assert_eq(mf_store_rows(s), 0);
    mf_store_discard(s);
    char partial[600];
    snprintf(partial, sizeof partial, "%s.partial", path);
    cr_assert_eq(access(partial, F_OK), -1, "discard removes the partial");
}

Test(store, sigkill_between_batches_keeps_flushed_rows)
{
    pid_t pid = fork();
    if (pid == 0) {
        mf_store *s = job_store("job-a", MF_STORE_JOB_NEW);
        for (int b = 0; b < 5; b++) {
            append_rows(s, (uint64_t)b * 20, 20);
            mf_store_flush(s);
        }
        append_rows(s, 100, 20); /* never flushed */
        raise(SIGKILL);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    mf_store *s = job_store("job-a", MF_STORE_JOB_RESUMED);
    cr_assert_eq(mf_store_rows(s), 100, "resumed writer must know where it stopped");
    append_rows(s, 100, 7);
    cr_assert_eq(mf_store_commit(s), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_open(&s, path), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_rows(s), 107);
    check_rows(s, 0, 64);
    check_rows(s, 64, 43);
    mf_store_close(s);
}

Test(store, copy_rows_carries_every_column)
{
    mf_store *s = new_store();
    append_rows(s, 0, 50);
    int64_t cluster[50];
    for (int i = 0; i < 50; i++)
        cluster[i] = i / 10;
    cr_assert_eq(mf_store_write_column_int64(s, "cluster", cluster), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_commit(s), 0);

    mf_store *src, *dst;
    cr_assert_eq(mf_store_open(&src, path), 0);
    char out[600];
    snprintf(out, sizeof out, "%s/out.h5", dir);
    cr_assert_eq(mf_store_create_like(&dst, out, src), 0, "%s", mf_last_error());
    uint64_t rows[] = {1, 2, 3, 17, 40, 49};
    cr_assert_eq(mf_store_copy_rows(dst, src, rows, 6), 0, "%s", mf_last_error());
    uint64_t bad[] = {5, 4};
    cr_assert_lt(mf_store_copy_rows(dst, src, bad, 2), 0, "rows must be increasing");
    cr_assert_eq(mf_store_set_attr(dst, "mf_filter", "{\"kept\":6}"), 0);
    cr_assert_eq(mf_store_commit(dst), 0, "%s", mf_last_error());
    mf_store_close(src);

    cr_assert_eq(mf_store_open(&dst, out), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_rows(dst), 6);
    cr_assert_str_eq(mf_store_attr(dst, "model"), "magface-iresnet18");
    cr_assert_str_eq(mf_store_attr(dst, "mf_filter"), "{\"kept\":6}");
    int64_t got[6];
    cr_assert_eq(mf_store_read_int64(dst, "cluster", 0, 6, got), 0, "%s", mf_last_error());
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(got[i], (int64_t)rows[i] / 10);
        check_rows(dst, i, 0); /* range check only */
    }
    float e[DIM], want[DIM];
    char buf[64], *ids[1] = {buf};
    int64_t l;
    for (int i = 0; i < 6; i++) {
        make_rows(rows[i], 1, want, ids, &l);
        mf_store_read_embedding(dst, (uint64_t)i, 1, e);
        cr_assert_eq(memcmp(e, want, sizeof e), 0);
    }
    mf_store_close(dst);
}

/* ---- validation: each broken file gives an error naming the file and the dataset ---- */

static void make_valid(void)
{
    mf_store *s = new_store();
    append_rows(s, 0, 12);
    cr_assert_eq(mf_store_commit(s), 0);
}

static void expect_open_error(const char *needle)
{
    mf_store *s = NULL;
    int rc = mf_store_open(&s, path);
    cr_assert_lt(rc, 0, "opening must fail (%s)", needle);
    cr_assert_null(s);
    cr_assert(strstr(mf_last_error(), path), "message must name the file: %s", mf_last_error());
    cr_assert(strstr(mf_last_error(), needle), "expected '%s' in: %s", needle, mf_last_error());
}

static hid_t reopen_raw(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    return f;
}

Test(store, missing_file) { expect_open_error("No such file"); }

Test(store, not_hdf5)
{
    FILE *f = fopen(path, "w");
    fputs("this is not HDF5\n", f);
    fclose(f);
    expect_open_error("not an HDF5 file");
}

Test(store, truncated_file)
{
    make_valid();
    cr_assert_eq(truncate(path, 3000), 0);
    mf_store *s = NULL;
    cr_assert_lt(mf_store_open(&s, path), 0);
    cr_assert(strstr(mf_last_error(), path), "%s", mf_last_error());
}

Test(store, missing_dataset)
{
    make_valid();
    hid_t f = reopen_raw();
    H5Ldelete(f, "magnitude", H5P_DEFAULT);
    H5Fclose(f);
    expect_open_error("/magnitude");
}

Test(store, wrong_dtype)
{
    make_valid();
    hid_t f = reopen_raw();
    H5Ldelete(f, "label", H5P_DEFAULT);
    hsize_t n = 12;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t ds =
        H5Dcreate2(f, "label", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(ds);
    H5Sclose(sp);
    H5Fclose(f);
    expect_open_error("/label");
}

Test(store, mismatched_lengths)
{
    make_valid();
    hid_t f = reopen_raw();
    H5Adelete(f, "mf_rows_committed");
    hid_t ds = H5Dopen2(f, "id", H5P_DEFAULT);
    hsize_t n = 11;
    H5Dset_extent(ds, &n);
    H5Dclose(ds);
    H5Fclose(f);
    expect_open_error("/id");
}

Test(store, wrong_dim)
{
    make_valid();
    hid_t f = reopen_raw();
    hid_t a = H5Aopen(f, "dim", H5P_DEFAULT);
    int d = 512;
    H5Awrite(a, H5T_NATIVE_INT, &d);
    H5Aclose(a);
    H5Fclose(f);
    expect_open_error("/embedding");
}

Test(store, not_an_mfkit_store)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    expect_open_error("mf_format");
}

Test(store, label_names_survive_deriving)
{
    mf_store *s = new_store();
    append_rows(s, 0, 20);
    const char *names[] = {"alice", "bob", "zo\xc3\xab"};
    cr_assert_eq(mf_store_write_label_names(s, names, 3), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_commit(s), 0);
    mf_store *src, *dst;
    cr_assert_eq(mf_store_open(&src, path), 0);
    cr_assert_eq(mf_store_label_name_count(src), 3);
    char out[600];
    snprintf(out, sizeof out, "%s/derived.h5", dir);
    cr_assert_eq(mf_store_create_like(&dst, out, src), 0, "%s", mf_last_error());
    uint64_t rows[] = {0, 1, 2, 3, 4}; /* 5 rows < 3 names? no: the group is not a column */
    cr_assert_eq(mf_store_copy_rows(dst, src, rows, 5), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_commit(dst), 0);
    mf_store_close(src);
    cr_assert_eq(mf_store_open(&dst, out), 0, "%s", mf_last_error());
    cr_assert_eq(mf_store_label_name_count(dst), 3);
    char *name = mf_store_label_name(dst, 2);
    cr_assert_str_eq(name, "zo\xc3\xab");
    free(name);
    cr_assert_null(mf_store_label_name(dst, 3));
    mf_store_close(dst);
}
