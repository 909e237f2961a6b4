/* quality.c - the report's quality pictures: the magnitude histogram of the rows before
 * filtering (so the removed low mode and the cut are visible, not just the rows kept) and
 * the error-versus-reject curve of the magnitudes (MagFace's own quality evaluation). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mf/knn.h"
#include "mf/log.h"
#include "mf/metrics.h"
#include "mf/status.h"
#include "mf/store.h"
#include "report_internal.h"

#define BEFORE_BINS 64

/* The histogram mf-filter recorded in mf_filter (magnitude_histogram), and the rows its
 * global magnitude rules dropped. */
static int recorded_before(rp_data *d)
{
    cJSON *j = d->filter_json ? cJSON_Parse(d->filter_json) : NULL;
    cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "magnitude_histogram");
    cJSON *counts = cJSON_GetObjectItemCaseSensitive(h, "counts");
    int bins = cJSON_IsArray(counts) ? cJSON_GetArraySize(counts) : 0;
    int ok = bins > 0 && bins <= MF_HIST_MAX_BINS;
    if (ok) {
        memset(&d->before, 0, sizeof d->before);
        d->before.bins = bins;
        d->before.lo = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "lo"));
        d->before.hi = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(h, "hi"));
        ok = isfinite(d->before.lo) && d->before.hi > d->before.lo;
        for (int b = 0; ok && b < bins; b++) {
            double c = cJSON_GetNumberValue(cJSON_GetArrayItem(counts, b));
            ok = c >= 0 && c < 1e15;
            d->before.count[b] = ok ? (uint64_t)c : 0;
            d->before_rows += d->before.count[b];
        }
        cJSON *dropped = cJSON_GetObjectItemCaseSensitive(j, "dropped");
        const char *rules[] = {"min-magnitude", "auto", "drop-lowest"};
        for (int k = 0; k < 3; k++) {
            double v =
                cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(dropped, rules[k]));
            d->removed_by_cut += isfinite(v) && v > 0 ? (uint64_t)v : 0;
        }
    }
    cJSON_Delete(j);
    return ok;
}

/* The magnitudes of another store (mf-report --before). */
static int store_before(rp_data *d)
{
    mf_store *s;
    float *mag = NULL;
    int rc = mf_store_open(&s, d->p->before);
    if (rc < 0)
        return rc;
    rc = mf_store_load_float(s, "magnitude", &mag);
    if (rc == 0) {
        mf_histogram_build(&d->before, mag, (size_t)mf_store_rows(s), BEFORE_BINS);
        d->before_rows = mf_store_rows(s) - d->before.nonfinite;
    }
    free(mag);
    mf_store_close(s);
    return rc;
}

int rp_gather_before(rp_data *d)
{
    if (d->p->before) {
        int rc = store_before(d);
        if (rc < 0)
            return rc;
        d->has_before = 1;
    } else {
        d->has_before = recorded_before(d);
    }
    if (d->has_before) /* the rows kept, on the same bins */
        mf_histogram_build_range(&d->hist, d->mag, (size_t)d->n, d->before.bins, d->before.lo,
                                 d->before.hi);
    return 0;
}

/* ---- error-versus-reject curve ---------------------------------------------------------- */

/* Which rows: all labelled ones, or the identities whose hashed label falls under a share
 * that keeps about erc_rows rows (whole identities, so genuine pairs survive). */
static uint8_t *pick_rows(const rp_data *d, uint64_t *picked)
{
    uint64_t labelled = 0;
    for (uint64_t i = 0; i < d->n; i++)
        labelled += d->label[i] >= 0;
    double share = labelled > d->p->erc_rows ? (double)d->p->erc_rows / (double)labelled : 1.0;
    uint8_t *take = malloc(d->n ? d->n : 1);
    if (!take)
        return NULL;
    *picked = 0;
    for (uint64_t i = 0; i < d->n; i++) {
        uint64_t h = (uint64_t)d->label[i] * 0x9e3779b97f4a7c15ull;
        take[i] = d->label[i] >= 0 && (double)(h >> 11) / 9007199254740992.0 < share;
        *picked += take[i];
    }
    return take;
}

static int load_rows(mf_store *s, const uint8_t *take, uint64_t picked, float **unit,
                     float **mag, int64_t **label)
{
    size_t dim = (size_t)mf_store_dim(s), k = 0;
    *unit = malloc((picked ? picked : 1) * dim * sizeof **unit);
    *mag = malloc((picked ? picked : 1) * sizeof **mag);
    *label = malloc((picked ? picked : 1) * sizeof **label);
    if (!*unit || !*mag || !*label)
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %llu rows",
                            (unsigned long long)picked);
    mf_store_cursor *c;
    const mf_store_block *b;
    int rc = mf_store_cursor_open(&c, s, MF_COL_EMBEDDING | MF_COL_MAGNITUDE | MF_COL_LABEL, 0,
                                  mf_store_rows(s));
    while (rc == 0 && (rc = mf_store_cursor_next(c, &b)) > 0) {
        rc = 0;
        for (size_t i = 0; i < b->n; i++)
            if (take[b->start + i]) {
                memcpy(*unit + k * dim, b->embedding + i * dim, dim * sizeof **unit);
                (*mag)[k] = b->magnitude[i];
                (*label)[k++] = b->label[i];
            }
    }
    mf_store_cursor_close(c);
    if (rc == 0)
        mf_knn_normalize(*unit, k, (int)dim);
    return rc < 0 ? rc : 0;
}

int rp_gather_erc(rp_data *d)
{
    if (d->p->erc_rows == 0) {
        snprintf(d->erc_note, sizeof d->erc_note, "Not computed (turned off).");
        return 0;
    }
    uint64_t picked = 0;
    uint8_t *take = pick_rows(d, &picked);
    float *unit = NULL, *mag = NULL;
    int64_t *label = NULL;
    int rc = take ? load_rows(d->s, take, picked, &unit, &mag, &label)
                  : mf_set_error(MF_ERR_NOMEM, "out of memory");
    mf_erc_params ep = mf_erc_default_params();
    ep.max_genuine = ep.max_impostor = 2000000;
    if (rc == 0 && mf_erc_compute(&d->erc, unit, mag, label, (size_t)picked, mf_store_dim(d->s),
                                  &ep) == 0) {
        d->has_erc = 1;
        d->erc_rows = picked;
    } else if (rc == 0) {
        snprintf(d->erc_note, sizeof d->erc_note, "No curve: %s.", mf_last_error());
        mf_clear_error();
    }
    free(take), free(unit), free(mag), free(label);
    return rc;
}
