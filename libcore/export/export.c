/* export.c - the export driver: classes from the label column, the text formats (list,
 * featlist), and the image formats (wds, tree, rec) fed by mf_fetch_images in blocks of
 * rows so that memory stays bounded and each archive is read once per block. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "export_internal.h"
#include "export_sinks.h"
#include "mf/durable.h"
#include "mf/export.h"
#include "mf/log.h"
#include "mf/stats.h"
#include "mf/status.h"
#include "mf/tsv.h"

/* Rows whose images are fetched together. An archive spanning several blocks is read
 * once per block; a million ids take ~100 MB. */
#define FETCH_BLOCK ((size_t)1 << 20)

mf_export_params mf_export_default_params(void)
{
    mf_export_params p = {0};
    p.format = MF_EXPORT_WDS;
    p.label_column = "label";
    p.shard_size = 10000;
    return p;
}

int mf_export_format_parse(const char *name, mf_export_format *out)
{
    static const char *names[] = {"rec", "wds", "list", "featlist", "tree"};
    for (int k = 0; k < 5; k++)
        if (strcmp(name, names[k]) == 0) {
            *out = (mf_export_format)k;
            return 0;
        }
    return mf_set_error(MF_ERR_ARG,
                        "unknown export format '%s' (rec, wds, list, featlist, tree)", name);
}

/* Replace each row's label by its class: the rank of the value among the distinct
 * non-negative values (0..K-1); negative values stay -1. Keeps the original values in
 * ex->label. */
static int make_classes(mf_exporter *ex)
{
    size_t n = (size_t)ex->n, k = 0;
    int64_t *vals = malloc((n ? n : 1) * sizeof *vals);
    ex->cls = malloc((n ? n : 1) * sizeof *ex->cls);
    if (!vals || !ex->cls) {
        free(vals);
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %zu labels", n);
    }
    for (size_t i = 0; i < n; i++)
        if (ex->label[i] >= 0)
            vals[k++] = ex->label[i];
    size_t u = mf_unique_int64(vals, k);
    for (size_t i = 0; i < n; i++)
        ex->cls[i] = ex->label[i] < 0 ? -1 : mf_search_int64(vals, u, ex->label[i]);
    ex->class_value = vals; /* its first u entries */
    ex->stats->classes = u;
    return 0;
}

/* Class names from /labels/name when the classes are labels (cluster numbers have none). */
static int name_classes(mf_exporter *ex)
{
    const char *col = ex->p->label_column ? ex->p->label_column : "label";
    if (strcmp(col, "label") != 0)
        return 0;
    int rc = mf_store_load_label_names(ex->s, &ex->names, &ex->n_names);
    if (rc < 0 || !ex->names)
        return rc;
    uint64_t k = ex->stats->classes;
    if (!(ex->class_name = calloc(k ? k : 1, sizeof *ex->class_name)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (uint64_t c = 0; c < k; c++)
        if ((uint64_t)ex->class_value[c] < ex->n_names)
            ex->class_name[c] = ex->names[ex->class_value[c]];
    return 0;
}

/* A permutation of the rows from a seed (splitmix64, Fisher-Yates): the same seed gives
 * the same order on every machine. */
static int shuffle_rows(mf_exporter *ex)
{
    uint64_t n = ex->n, x = ex->p->seed;
    if (!(ex->order = malloc((n ? n : 1) * sizeof *ex->order)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory for %llu rows", (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        ex->order[i] = i;
    for (uint64_t i = n; i > 1; i--) {
        uint64_t z = (x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        uint64_t j = z % i, t = ex->order[i - 1];
        ex->order[i - 1] = ex->order[j];
        ex->order[j] = t;
    }
    return 0;
}

static int read_columns(mf_exporter *ex)
{
    const char *col = ex->p->label_column ? ex->p->label_column : "label";
    if (!mf_store_has(ex->s, col))
        return mf_set_error(MF_ERR_SCHEMA, "'%s' has no /%s (run mf-cluster first)",
                            mf_store_path(ex->s), col);
    int rc = mf_store_load_int64(ex->s, col, &ex->label);
    if (rc == 0)
        rc = mf_store_load_float(ex->s, "magnitude", &ex->mag);
    return rc;
}

void mf_export_missing(mf_exporter *ex, const char *id, const char *why)
{
    mf_log(MF_LOG_WARN, "missing '%s': %s", id, why);
    ex->stats->missing++;
}

/* ---- list and featlist --------------------------------------------------------------- */

static int list_row(mf_exporter *ex, FILE *f, const char *id, int64_t cls)
{
    size_t clen;
    if (mf_id_classify(id, &clen) != MF_ID_FILE) {
        mf_log(MF_LOG_WARN, "skipped '%s': not a plain file (use --format tree or wds)", id);
        ex->stats->skipped++;
        return 0;
    }
    char *path = mf_export_resolve(ex->p->root, id, clen);
    if (!path)
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    struct stat st;
    if (stat(path, &st) != 0)
        mf_export_missing(ex, id, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        mf_export_missing(ex, id, "not a regular file");
    else {
        mf_tsv_write_field(f, path);            /* a path may hold tabs: escaped (mf/tsv.h) */
        fprintf(f, "\t%lld\n", (long long)cls); /* errors: ferror at commit */
        ex->stats->written++;
    }
    free(path);
    return 0;
}

/* Width of one "%.9g " value: sign, 9 digits, point, exponent "e-45", space. */
#define FEAT_VALUE_MAX 18

/* Format the embeddings of a block of rows into `buf` (cap bytes, sized by the caller
 * as dim * FEAT_VALUE_MAX per row), in parallel: printf-style formatting dominates this
 * format (~1 us a value), and each row's text is independent. len[i] = bytes of row i. */
static void feat_format(const float *emb, size_t k, int dim, char *buf, size_t *len)
{
    size_t stride = (size_t)dim * FEAT_VALUE_MAX;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < k; i++) {
        char *out = buf + i * stride;
        size_t at = 0;
        for (int d = 0; d < dim; d++) /* %.9g: every float32 reads back exactly */
            at += (size_t)snprintf(out + at, stride - at, "%.9g ", emb[i * (size_t)dim + d]);
        len[i] = at;
    }
}

/* The rows of one block in the official feature text. */
static void feat_block(FILE *f, char **ids, const float *emb, size_t k, int dim, char *buf,
                       size_t *len, uint64_t *written, uint64_t *skipped)
{
    feat_format(emb, k, dim, buf, len);
    size_t stride = (size_t)dim * FEAT_VALUE_MAX;
    for (size_t i = 0; i < k; i++) {
        if (strpbrk(ids[i], " \t\n\r")) {
            mf_log(MF_LOG_WARN, "skipped '%s': the id contains a separator of this format",
                   ids[i]);
            (*skipped)++;
            continue;
        }
        fputs(ids[i], f);
        fputc(' ', f);
        fwrite(buf + i * stride, 1, len[i], f); /* errors: ferror at commit */
        fputc('\n', f);
        (*written)++;
    }
}

int mf_export_feature_text(mf_store *s, FILE *f, mf_progress *progress, uint64_t *written,
                           uint64_t *skipped)
{
    int dim = mf_store_dim(s);
    size_t block = mf_store_block_rows(s, MF_COL_EMBEDDING | MF_COL_ID), bytes;
    *written = *skipped = 0;
    if (mf_size_mul(block, (size_t)dim * FEAT_VALUE_MAX, &bytes, "feature text") < 0)
        return MF_ERR_NOMEM;
    char *buf = malloc(bytes);
    size_t *len = malloc(block * sizeof *len);
    mf_store_cursor *c = NULL;
    int rc = buf && len ? mf_store_cursor_open(&c, s, MF_COL_EMBEDDING | MF_COL_ID, 0,
                                               mf_store_rows(s))
                        : mf_set_error(MF_ERR_NOMEM, "out of memory");
    const mf_store_block *b;
    while (rc == 0 && (rc = mf_store_cursor_next(c, &b)) > 0) {
        feat_block(f, b->id, b->embedding, b->n, dim, buf, len, written, skipped);
        mf_progress_add(progress, b->n);
        rc = ferror(f) ? mf_set_error(MF_ERR_IO, "cannot write the feature text") : 0;
    }
    mf_store_cursor_close(c);
    free(buf);
    free(len);
    return rc < 0 ? rc : 0;
}

static int export_list(mf_exporter *ex, FILE *f)
{
    mf_store_cursor *c;
    int rc = mf_store_cursor_open(&c, ex->s, MF_COL_ID, 0, ex->n);
    const mf_store_block *b;
    while (rc == 0 && (rc = mf_store_cursor_next(c, &b)) > 0) {
        rc = 0;
        for (size_t i = 0; i < b->n && rc == 0; i++) {
            if (ex->cls[b->start + i] < 0)
                ex->stats->unlabelled++;
            else
                rc = list_row(ex, f, b->id[i], ex->cls[b->start + i]);
        }
        mf_progress_add(ex->p->progress, b->n);
    }
    mf_store_cursor_close(c);
    return rc < 0 ? rc : 0;
}

static int export_text(mf_exporter *ex)
{
    mf_output *o;
    unsigned flags = MF_OUTPUT_MAKE_PARENTS | (ex->p->overwrite ? MF_OUTPUT_OVERWRITE : 0);
    int rc = mf_output_open(&o, ex->p->output, flags);
    if (rc < 0)
        return rc;
    FILE *f = mf_output_stream(o);
    if (!f)
        rc = MF_ERR_IO;
    else if (ex->p->format == MF_EXPORT_FEATLIST)
        rc = mf_export_feature_text(ex->s, f, ex->p->progress, &ex->stats->written,
                                    &ex->stats->skipped);
    else
        rc = export_list(ex, f);
    if (rc < 0) {
        mf_output_abort(o);
        return rc;
    }
    ex->stats->files = 1;
    return mf_output_commit(o);
}

/* ---- image formats -------------------------------------------------------------------- */

typedef struct block {
    mf_exporter *ex;
    char **ids;     /* ids of the selected rows */
    uint64_t *rows; /* their row numbers */
} block;

static int on_image(void *ctx, size_t i, const uint8_t *data, size_t size, const char *why)
{
    block *b = ctx;
    mf_progress_add(b->ex->p->progress, 1);
    if (!data) {
        mf_export_missing(b->ex, b->ids[i], why);
        return 0;
    }
    return b->ex->sink->put(b->ex, b->rows[i], b->ids[i], data, size);
}

/* Fetch the images of rows [at, at+k) that have a class, and hand them to the sink. */
static int export_block(mf_exporter *ex, block *b, uint64_t at, size_t k)
{
    char **all = b->ids;
    int rc = mf_store_read_ids(ex->s, at, k, all);
    if (rc < 0)
        return rc;
    size_t m = 0;
    for (size_t i = 0; i < k; i++) {
        if (ex->cls[at + i] < 0) {
            ex->stats->unlabelled++;
            free(all[i]);
            continue;
        }
        all[m] = all[i];
        b->rows[m++] = at + i;
    }
    mf_progress_add(ex->p->progress, k - m);
    rc = mf_fetch_images(all, m, ex->p->root, 0, on_image, b);
    mf_store_free_strings(all, m);
    return rc < 0 ? rc : rc > 0 ? MF_ERR_INTERNAL : 0;
}

static int export_images(mf_exporter *ex)
{
    size_t cap = ex->n < FETCH_BLOCK ? (size_t)ex->n : FETCH_BLOCK;
    block b = {ex, malloc((cap ? cap : 1) * sizeof(char *)),
               malloc((cap ? cap : 1) * sizeof(uint64_t))};
    int rc =
        b.ids && b.rows ? ex->sink->begin(ex) : mf_set_error(MF_ERR_NOMEM, "out of memory");
    for (uint64_t at = 0; at < ex->n && rc == 0; at += FETCH_BLOCK) {
        size_t k = ex->n - at < FETCH_BLOCK ? (size_t)(ex->n - at) : FETCH_BLOCK;
        rc = export_block(ex, &b, at, k);
    }
    free(b.ids);
    free(b.rows);
    if (rc == 0)
        return ex->sink->commit(ex);
    ex->sink->abort(ex);
    return rc;
}

int mf_export_run(mf_store *s, const mf_export_params *p, mf_export_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    if (!p->output || !p->output[0])
        return mf_set_error(MF_ERR_ARG, "no output given");
    mf_exporter ex = {
        .s = s, .p = p, .stats = stats, .n = mf_store_rows(s), .dim = mf_store_dim(s)};
    int rc = read_columns(&ex);
    if (rc == 0)
        rc = make_classes(&ex);
    if (rc == 0 && stats->classes == 0 && p->format != MF_EXPORT_FEATLIST)
        rc = mf_set_error(MF_ERR_FORMAT,
                          "'%s': no row has a /%s of 0 or more, so nothing would be exported "
                          "(label the store, or run mf-cluster and export with --label "
                          "cluster)",
                          mf_store_path(s), p->label_column ? p->label_column : "label");
    if (rc == 0)
        rc = name_classes(&ex);
    if (rc == 0 && p->shuffle && (p->format == MF_EXPORT_WDS || p->format == MF_EXPORT_REC))
        rc = shuffle_rows(&ex);
    if (rc == 0) {
        switch (p->format) {
        case MF_EXPORT_LIST:
        case MF_EXPORT_FEATLIST: rc = export_text(&ex); break;
        case MF_EXPORT_WDS: ex.sink = &mf_sink_wds; break;
        case MF_EXPORT_TREE: ex.sink = &mf_sink_tree; break;
        case MF_EXPORT_REC: ex.sink = &mf_sink_rec; break;
        default: rc = mf_set_error(MF_ERR_ARG, "unknown export format %d", (int)p->format);
        }
    }
    if (rc == 0 && ex.sink)
        rc = export_images(&ex);
    free(ex.label);
    free(ex.mag);
    free(ex.cls);
    free(ex.class_value);
    free(ex.class_name);
    mf_store_free_strings(ex.names, ex.n_names);
    free(ex.names);
    free(ex.order);
    return rc;
}
