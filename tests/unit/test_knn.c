/* test_knn.c - the FAISS graph against brute force, save/load, stale graphs refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "mf/knn.h"
#include "../../libcore/knn/knn_internal.h"
#include "mf/status.h"

/* n points in clusters of 5 around random centres, normalised. */
static float *points(size_t n, int d, unsigned seed)
{
    float *x = malloc(n * d * sizeof *x), *c = malloc(d * sizeof *c);
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        if (i % 5 == 0)
            for (int j = 0; j < d; j++)
                c[j] = (float)rand() / RAND_MAX - 0.5f;
        for (int j = 0; j < d; j++)
            x[i * d + j] = c[j] + 0.1f * ((float)rand() / RAND_MAX - 0.5f);
    }
    free(c);
    mf_knn_normalize(x, n, d);
    return x;
}

#ifdef MF_HAVE_FAISS
Test(knn, exact_matches_brute_force)
{
    size_t n = 300;
    int d = 16, k = 6;
    float *x = points(n, d, 7);
    mf_knn_params p = mf_knn_default_params();
    p.k = k;
    p.batch = 64; /* several batches */
    mf_knn_graph *g;
    mf_knn_info info;
    cr_assert_eq(mf_knn_build(&g, x, n, d, &p, &info), 0, "%s", mf_last_error());
    cr_expect_eq(info.exact, 1);
    for (size_t i = 0; i < n; i++) {
        /* brute force: the k-th best similarity must equal the graph's last entry */
        float best[6] = {-2, -2, -2, -2, -2, -2};
        for (size_t j = 0; j < n; j++) {
            if (j == i)
                continue;
            float s = 0;
            for (int t = 0; t < d; t++)
                s += x[i * d + t] * x[j * d + t];
            for (int r = 0; r < k; r++)
                if (s > best[r]) {
                    for (int u = k - 1; u > r; u--)
                        best[u] = best[u - 1];
                    best[r] = s;
                    break;
                }
        }
        for (int r = 0; r < k; r++) {
            cr_expect(fabsf(g->sim[i * k + r] - best[r]) < 1e-4, "row %zu rank %d", i, r);
            cr_expect_neq(g->nbr[i * k + r], (int64_t)i, "self listed in row %zu", i);
        }
    }
    mf_knn_free(g);
    free(x);
}

Test(knn, approximate_reports_recall)
{
    size_t n = 2000;
    int d = 16;
    float *x = points(n, d, 3);
    mf_knn_params p = mf_knn_default_params();
    p.k = 5;
    p.index = "IVF16,Flat";
    p.nprobe = 16; /* all lists: must equal exact */
    p.recall_sample = 100;
    mf_knn_graph *g;
    mf_knn_info info;
    cr_assert_eq(mf_knn_build(&g, x, n, d, &p, &info), 0, "%s", mf_last_error());
    cr_expect_eq(info.exact, 0);
    cr_expect_eq(info.recall_queries, 100);
    cr_expect(info.recall > 0.99, "recall %f", info.recall);
    p.nprobe = 1;
    mf_knn_graph *h;
    cr_assert_eq(mf_knn_build(&h, x, n, d, &p, &info), 0);
    cr_expect(info.recall >= 0 && info.recall <= 1);
    mf_knn_free(h);
    /* The list-grouped join probing every list is exact; probing one list is not. */
    p.index = "IVFJoin16";
    p.nprobe = 16;
    cr_assert_eq(mf_knn_build(&h, x, n, d, &p, &info), 0, "%s", mf_last_error());
    cr_expect(info.recall > 0.999, "join recall %f", info.recall);
    for (size_t i = 0; i < n * p.k; i++)
        cr_expect(fabsf(h->sim[i] - g->sim[i]) < 1e-4, "entry %zu", i);
    mf_knn_free(h);
    p.nprobe = 1;
    cr_assert_eq(mf_knn_build(&h, x, n, d, &p, &info), 0);
    cr_expect(info.recall > 0.3 && info.recall < 1.0, "join recall at nprobe 1: %f",
              info.recall);
    mf_knn_free(h);
    p.index = "NoSuchIndex";
    cr_expect_eq(mf_knn_build(&h, x, n, d, &p, &info), MF_ERR_ARG);
    mf_knn_free(g);
    free(x);
}

Test(knn, join_independent_of_threads)
{
    size_t n = 3000;
    int d = 16;
    float *x = points(n, d, 11);
    mf_knn_params p = mf_knn_default_params();
    p.k = 8;
    p.index = "IVFJoin32";
    p.nprobe = 4;
    p.recall_sample = 0;
    mf_knn_graph *a, *b;
    omp_set_num_threads(1);
    cr_assert_eq(mf_knn_build(&a, x, n, d, &p, NULL), 0, "%s", mf_last_error());
    omp_set_num_threads(2);
    cr_assert_eq(mf_knn_build(&b, x, n, d, &p, NULL), 0, "%s", mf_last_error());
    cr_expect_eq(memcmp(a->nbr, b->nbr, n * p.k * sizeof *a->nbr), 0);
    /* sgemm blocks differ with the row split, so a product may differ in its last bit */
    for (size_t i = 0; i < n * p.k; i++)
        cr_expect(fabsf(a->sim[i] - b->sim[i]) < 1e-5f, "entry %zu", i);
    mf_knn_free(a);
    mf_knn_free(b);
    free(x);
}
#endif

Test(knn, save_load_and_stale)
{
    int64_t nbr[6] = {1, 2, 0, 2, 1, 0};
    float sim[6] = {.9f, .5f, .9f, .4f, .4f, .5f};
    mf_knn_graph *g, *h;
    cr_assert_eq(mf_knn_from_arrays(&g, 3, 2, nbr, sim), 0);
    float mag[3] = {1, 2, 3};
    mf_knn_fingerprint(g->fingerprint, 3, 8, mag);
    char path[] = "/tmp/mf_test_graphXXXXXX";
    int fd = mkstemp(path);
    close(fd);
    mf_output *o;
    cr_assert_eq(mf_output_open(&o, path, MF_OUTPUT_SEEKABLE | MF_OUTPUT_OVERWRITE), 0, "%s",
                 mf_last_error());
    cr_assert_eq(mf_knn_save(g, o), 0, "%s", mf_last_error());
    cr_assert_eq(mf_knn_load(&h, path, 3, g->fingerprint), 0, "%s", mf_last_error());
    for (int i = 0; i < 6; i++) {
        cr_expect_eq(h->nbr[i], nbr[i]);
        cr_expect_eq(h->sim[i], sim[i]);
    }
    mf_knn_free(h);
    char other[64];
    float mag2[3] = {1, 2, 4};
    mf_knn_fingerprint(other, 3, 8, mag2);
    cr_expect_eq(mf_knn_load(&h, path, 3, other), MF_ERR_MISMATCH);
    cr_expect_eq(mf_knn_load(&h, path, 4, NULL), MF_ERR_MISMATCH);
    unlink(path);
    cr_expect_lt(mf_knn_load(&h, path, 3, NULL), 0);
    mf_knn_free(g);
}

#ifdef MF_HAVE_FAISS
/* Refinement: from a chain graph (row i knows only its neighbours in its cluster of 5's
 * order), reverse edges and neighbours of neighbours reach the whole cluster;
 * similarities come out exact, without self or repeats, the same for any thread count
 * and visiting order. */
Test(knn, refine_completes_clusters)
{
    size_t n = 500;
    int d = 16, k = 4;
    float *x = points(n, d, 21);
    mf_knn_graph *chain, *a, *b;
    cr_assert_eq(mf_knn_graph_alloc(&chain, n, 2), 0);
    for (size_t i = 0; i < n; i++) {
        size_t c0 = i / 5 * 5;
        int r = 0;
        if (i + 1 < c0 + 5)
            chain->nbr[i * 2 + r] = (int64_t)i + 1, chain->sim[i * 2 + r++] = 0;
        if (i > c0)
            chain->nbr[i * 2 + r] = (int64_t)i - 1, chain->sim[i * 2 + r++] = 0;
    }
    cr_assert_eq(mf_knn_graph_alloc(&a, n, k), 0);
    cr_assert_eq(mf_knn_graph_alloc(&b, n, k), 0);
    omp_set_num_threads(1);
    cr_assert_eq(mf_knn_refine(a, chain, x, d, 2, 10, NULL, NULL), 0, "%s", mf_last_error());
    omp_set_num_threads(2);
    int32_t *rev = malloc(n * sizeof *rev); /* any visiting order gives the same graph */
    for (size_t i = 0; i < n; i++)
        rev[i] = (int32_t)(n - 1 - i);
    cr_assert_eq(mf_knn_refine(b, chain, x, d, 2, 10, rev, NULL), 0, "%s", mf_last_error());
    free(rev);
    cr_expect_eq(memcmp(a->nbr, b->nbr, n * k * sizeof *a->nbr), 0);
    cr_expect_eq(memcmp(a->sim, b->sim, n * k * sizeof *a->sim), 0);
    for (size_t i = 0; i < n; i++)
        for (int r = 0; r < k; r++) {
            int64_t j = a->nbr[i * k + r];
            cr_assert(j >= 0 && j / 5 == (int64_t)i / 5 && j != (int64_t)i,
                      "row %zu rank %d: %lld is not a cluster mate", i, r, (long long)j);
            for (int u = 0; u < r; u++)
                cr_expect_neq(a->nbr[i * k + u], j, "row %zu lists %lld twice", i,
                              (long long)j);
            float s = 0;
            for (int t = 0; t < d; t++)
                s += x[i * d + t] * x[j * d + t];
            cr_expect(fabsf(a->sim[i * k + r] - s) < 1e-5f, "row %zu rank %d", i, r);
            if (r)
                cr_expect(a->sim[i * k + r] <= a->sim[i * k + r - 1], "row %zu not sorted", i);
        }
    mf_knn_free(chain), mf_knn_free(a), mf_knn_free(b);
    free(x);
}

/* The AMX path (bf16 products, re-scored) and the float32 path find the same graph. */
Test(knn, join_same_with_and_without_amx)
{
    size_t n = 4000;
    int d = 48;
    float *x = points(n, d, 17);
    mf_knn_params p = mf_knn_default_params();
    p.k = 10;
    p.index = "IVFJoin32";
    p.nprobe = 32; /* every list: both must be the exact graph */
    p.recall_sample = 0;
    mf_knn_graph *a, *b, *e;
    cr_assert_eq(mf_knn_build(&a, x, n, d, &p, NULL), 0, "%s", mf_last_error());
    setenv("MF_NO_AMX", "1", 1); /* read once per process: Criterion forks per test */
    cr_assert_eq(mf_knn_build(&b, x, n, d, &p, NULL), 0, "%s", mf_last_error());
    p.index = "Flat";
    cr_assert_eq(mf_knn_build(&e, x, n, d, &p, NULL), 0, "%s", mf_last_error());
    size_t same_a = 0, same_b = 0;
    for (size_t i = 0; i < n * p.k; i++) {
        same_a += a->nbr[i] == e->nbr[i];
        same_b += b->nbr[i] == e->nbr[i];
        cr_expect(fabsf(a->sim[i] - e->sim[i]) < 1e-5f, "entry %zu", i);
    }
    /* equal similarities may swap places; anything else is a real difference */
    cr_expect(same_a > n * p.k * 0.999, "AMX path: %zu of %zu entries as exact", same_a,
              n * p.k);
    cr_expect(same_b > n * p.k * 0.999, "float path: %zu of %zu", same_b, n * p.k);
    mf_knn_free(a), mf_knn_free(b), mf_knn_free(e);
    free(x);
}
#endif
