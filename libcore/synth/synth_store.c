/* synth_store.c - write a synthetic store through the store API, in chunks, with the
 * ground truth as extra columns (see include/mf/synth.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf/status.h"
#include "mf/store.h"
#include "mf/synth.h"

/* Rows generated and appended per step: 8192 x 512 floats = 16 MiB. */
#define SYNTH_CHUNK 8192
#define ID_LEN 48

typedef struct truth_cols {
    int64_t *true_label, *is_junk, *is_dup, *is_mislabeled, *dup_of, *junk_kind;
    float *quality;
} truth_cols;

static void truth_free(truth_cols *t)
{
    free(t->true_label);
    free(t->is_junk);
    free(t->is_dup);
    free(t->is_mislabeled);
    free(t->dup_of);
    free(t->quality);
    free(t->junk_kind);
}

static int truth_alloc(truth_cols *t, uint64_t rows)
{
    size_t bytes;
    memset(t, 0, sizeof *t);
    if (mf_size_mul((size_t)rows, sizeof(int64_t), &bytes, "synthetic ground truth") < 0)
        return MF_ERR_NOMEM;
    bytes += !bytes;
    t->true_label = malloc(bytes);
    t->is_junk = malloc(bytes);
    t->is_dup = malloc(bytes);
    t->is_mislabeled = malloc(bytes);
    t->dup_of = malloc(bytes);
    t->quality = malloc(bytes);
    t->junk_kind = malloc(bytes);
    if (!t->true_label || !t->is_junk || !t->is_dup || !t->is_mislabeled || !t->dup_of ||
        !t->quality || !t->junk_kind) {
        truth_free(t);
        return mf_set_error(MF_ERR_NOMEM, "synth: cannot allocate the ground truth columns");
    }
    return 0;
}

static int write_truth(mf_store *s, const truth_cols *t)
{
    int rc = mf_store_write_column_int64(s, "true_label", t->true_label);
    if (rc == 0)
        rc = mf_store_write_column_int64(s, "is_junk", t->is_junk);
    if (rc == 0)
        rc = mf_store_write_column_int64(s, "is_dup", t->is_dup);
    if (rc == 0)
        rc = mf_store_write_column_int64(s, "is_mislabeled", t->is_mislabeled);
    if (rc == 0)
        rc = mf_store_write_column_int64(s, "dup_of", t->dup_of);
    if (rc == 0)
        rc = mf_store_write_column_int64(s, "junk_kind", t->junk_kind);
    if (rc == 0)
        rc = mf_store_write_column_float(s, "quality", t->quality);
    return rc;
}

static void count_truth(const truth_cols *t, uint64_t rows, mf_synth_counts *c)
{
    c->rows = rows;
    c->junk = c->distractors = c->dup = c->mislabeled = 0;
    for (uint64_t i = 0; i < rows; i++) {
        c->junk += t->is_junk[i] != 0;
        c->distractors += t->junk_kind[i] == 2;
        c->dup += t->is_dup[i] != 0;
        c->mislabeled += t->is_mislabeled[i] != 0;
    }
}

static int set_params_attr(mf_store *s, const mf_synth_params *p, const mf_synth_counts *c)
{
    char json[2048];
    snprintf(json, sizeof json,
             "{\"rows\": %llu, \"identities\": %lld, \"dim\": %d, \"seed\": %llu, "
             "\"quality\": \"%s\", \"low_quality\": %g, \"quality_identity_sd\": %g, "
             "\"mag_base\": %g, \"mag_slope\": %g, \"mag_noise\": %g, "
             "\"center_cos\": %g, \"inter_cos\": %g, \"noise\": %g, "
             "\"noise_growth\": %g, \"identity_spread\": %g, \"modes\": %g, "
             "\"mode_cos\": %g, \"drift\": %g, \"drift_dirs\": %d, \"lookalike\": %g, "
             "\"lookalike_mix\": %g, \"mislabel\": %g, \"mislabel_lookalike\": %g, "
             "\"junk\": %g, \"junk_quality\": %g, \"distractors\": %g, \"dup\": %g, "
             "\"min_size\": %d, \"max_size\": %d, \"size_alpha\": %g, "
             "\"counts\": {\"junk\": %llu, \"distractors\": %llu, \"dup\": %llu, "
             "\"mislabeled\": %llu, \"lookalike_identities\": %llu}}",
             (unsigned long long)p->rows, (long long)p->identities, p->dim,
             (unsigned long long)p->seed, mf_synth_quality_name(p->quality), p->low_quality,
             p->quality_identity_sd, p->mag_base, p->mag_slope, p->mag_noise, p->center_cos,
             p->inter_cos, p->noise, p->noise_growth, p->identity_spread, p->modes, p->mode_cos,
             p->drift, p->drift_dirs, p->lookalike, p->lookalike_mix, p->mislabel,
             p->mislabel_lookalike, p->junk, p->junk_quality, p->distractors, p->dup,
             p->min_size, p->max_size, p->size_alpha, (unsigned long long)c->junk,
             (unsigned long long)c->distractors, (unsigned long long)c->dup,
             (unsigned long long)c->mislabeled, (unsigned long long)c->lookalike_identities);
    return mf_store_set_attr(s, "mf_synth", json);
}

/* Generate and append all rows, chunk by chunk; ground truth goes to `t`. */
static int append_rows(mf_store *s, const mf_synth *g, const mf_synth_params *p,
                       const truth_cols *t)
{
    size_t chunk = SYNTH_CHUNK;
    float *emb = malloc(chunk * (size_t)p->dim * sizeof(float));
    float *mag = malloc(chunk * sizeof(float));
    int64_t *label = malloc(chunk * sizeof(int64_t));
    char *idbuf = malloc(chunk * ID_LEN);
    const char **ids = malloc(chunk * sizeof(char *));
    int rc = 0;
    if (!emb || !mag || !label || !idbuf || !ids)
        rc = mf_set_error(MF_ERR_NOMEM, "synth: cannot allocate a chunk of %zu rows", chunk);
    for (uint64_t r = 0; rc == 0 && r < p->rows; r += chunk) {
        size_t n = p->rows - r < chunk ? (size_t)(p->rows - r) : chunk;
        mf_synth_batch b = {emb,
                            mag,
                            label,
                            t->true_label + r,
                            t->is_junk + r,
                            t->is_dup + r,
                            t->is_mislabeled + r,
                            t->dup_of + r,
                            t->quality + r,
                            t->junk_kind + r};
        rc = mf_synth_rows(g, r, n, &b);
        for (size_t i = 0; rc == 0 && i < n; i++) {
            ids[i] = idbuf + i * ID_LEN;
            snprintf(idbuf + i * ID_LEN, ID_LEN, "synth/%lld/%llu.jpg", (long long)label[i],
                     (unsigned long long)(r + i));
        }
        if (rc == 0)
            rc = mf_store_append(s, n, emb, mag, ids, label);
    }
    free(emb);
    free(mag);
    free(label);
    free(idbuf);
    free(ids);
    return rc;
}

int mf_synth_write(const mf_synth_params *p, const char *path, mf_synth_counts *counts)
{
    mf_output *out;
    int rc = mf_output_open(&out, path, MF_OUTPUT_SEEKABLE);
    return rc < 0 ? rc : mf_synth_write_to(p, out, counts);
}

int mf_synth_write_to(const mf_synth_params *p, mf_output *out, mf_synth_counts *counts)
{
    mf_synth *g;
    int rc = mf_synth_new(&g, p);
    if (rc < 0) {
        mf_output_abort(out);
        return rc;
    }
    truth_cols t;
    if ((rc = truth_alloc(&t, p->rows)) < 0) {
        mf_synth_free(g);
        mf_output_abort(out);
        return rc;
    }
    mf_store_params sp = mf_store_default_params();
    sp.dim = p->dim;
    sp.model = "synthetic";
    sp.preprocess = "none (generated by mf_synth)";
    mf_store *s = NULL;
    rc = mf_store_create_in(&s, out, &sp);
    if (rc == 0)
        rc = append_rows(s, g, p, &t);
    mf_synth_counts c = {0};
    count_truth(&t, p->rows, &c);
    for (int64_t k = 1; k < p->identities; k++)
        c.lookalike_identities += mf_synth_is_lookalike(g, k);
    if (rc == 0)
        rc = write_truth(s, &t);
    if (rc == 0)
        rc = set_params_attr(s, p, &c);
    if (rc == 0) {
        rc = mf_store_commit(s);
    } else if (s) {
        mf_store_discard(s);
    }
    if (rc == 0 && counts)
        *counts = c;
    truth_free(&t);
    mf_synth_free(g);
    return rc;
}
