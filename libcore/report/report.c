/* report.c - gather what mf-report shows: column summaries, the lowest magnitudes,
 * samples of the filter's dropped rows per rule, the largest clusters and the
 * label/cluster disagreements; then fetch every thumbnail in one pass and write the
 * page (page.c) atomically. Memory: a few arrays of one value per row, plus the
 * thumbnails shown. */
#define _GNU_SOURCE /* qsort_r */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mf/durable.h"
#include "html.h"
#include "mf/export.h"
#include "mf/log.h"
#include "mf/source.h"
#include "mf/status.h"
#include "mf/tsv.h"
#include "report_internal.h"
#include "vec.h"

#define MAX_RULES 64

mf_report_params mf_report_default_params(void)
{
    mf_report_params p = {0};
    p.max_faces = 48;
    p.per_rule = 12;
    p.top_groups = 6;
    p.per_group = 8;
    p.max_image_bytes = 256 << 10;
    p.erc_rows = 50000;
    return p;
}

/* ---- the cut recorded by mf-filter ------------------------------------------------ */

static void find_cut(const cJSON *j, double *best)
{
    for (const cJSON *c = j ? j->child : NULL; c; c = c->next) {
        if (cJSON_IsNumber(c) && c->string && c->valuedouble > 0 &&
            (!strcmp(c->string, "magnitude_cut") || !strcmp(c->string, "min_magnitude") ||
             !strcmp(c->string, "auto_cut")) &&
            c->valuedouble > *best)
            *best = c->valuedouble;
        find_cut(c, best);
    }
}

int mf_report_find_cut(const char *filter_json, double *cut)
{
    cJSON *j = filter_json ? cJSON_Parse(filter_json) : NULL;
    double best = 0;
    find_cut(j, &best);
    cJSON_Delete(j);
    if (best > 0 && isfinite(best)) {
        *cut = best;
        return 1;
    }
    return 0;
}

/* ---- thumbnails ------------------------------------------------------------------- */

/* Take ownership of `id` and return its thumbnail index (or a negative status). */
static long add_thumb(rp_data *d, char *id)
{
    if (MF_GROW(d->thumbs, d->cap_thumbs, d->n_thumbs + 1, "thumbnails") < 0) {
        free(id);
        return MF_ERR_NOMEM;
    }
    d->thumbs[d->n_thumbs] = (rp_thumb){id, NULL, NULL};
    return (long)d->n_thumbs++;
}

/* A face for store row `row`: reads its id. */
int rp_row_face(rp_data *d, uint64_t row, rp_face *out)
{
    char *id;
    int rc = mf_store_read_ids(d->s, row, 1, &id);
    if (rc < 0)
        return rc;
    long t = add_thumb(d, id);
    if (t < 0)
        return (int)t;
    *out = (rp_face){
        (size_t)t, d->mag[row], d->label[row], d->cluster ? d->cluster[row] : -2, NULL, 0};
    return 0;
}

typedef struct fetch_ctx {
    rp_data *d;
    mf_report_stats *st;
    size_t *map; /* fetch index -> thumbnail index */
} fetch_ctx;

static int on_thumb(void *ctx, size_t i, const uint8_t *data, size_t size, const char *why)
{
    fetch_ctx *c = ctx;
    rp_thumb *t = &c->d->thumbs[c->map[i]];
    if (data && !(t->uri = mf_html_data_uri(data, size)))
        why = "not a JPEG or PNG image";
    if (!t->uri) {
        t->why = strdup(why ? why : "unreadable");
        mf_log(MF_LOG_WARN, "missing '%s': %s", t->id, why ? why : "unreadable");
        c->st->missing++;
    } else {
        c->st->thumbnails++;
    }
    return 0;
}

/* Fetch every thumbnail still wanted (samples replaced in a reservoir have no id). */
static int fetch_thumbs(rp_data *d, mf_report_stats *st)
{
    size_t m = d->n_thumbs ? d->n_thumbs : 1, k = 0;
    char **ids = malloc(m * sizeof *ids);
    size_t *map = malloc(m * sizeof *map);
    if (!ids || !map) {
        free(ids);
        free(map);
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < d->n_thumbs; i++)
        if (d->thumbs[i].id)
            ids[k] = d->thumbs[i].id, map[k++] = i;
    fetch_ctx c = {d, st, map};
    int rc = mf_fetch_images(ids, k, d->p->root, d->p->max_image_bytes, on_thumb, &c);
    free(ids);
    free(map);
    return rc;
}

/* ---- columns and summary ---------------------------------------------------------- */

static int read_columns(rp_data *d)
{
    size_t n = (size_t)d->n;
    int rc = mf_store_load_float(d->s, "magnitude", &d->mag);
    if (rc == 0)
        rc = mf_store_load_int64(d->s, "label", &d->label);
    if (rc == 0 && mf_store_has(d->s, "cluster"))
        rc = mf_store_load_int64(d->s, "cluster", &d->cluster);
    if (rc == 0)
        rc = mf_count_distinct(d->label, n, &d->identities, &d->unlabelled);
    if (rc == 0 && d->cluster)
        rc = mf_count_distinct(d->cluster, n, &d->clusters, &d->unassigned);
    float *sorted = rc == 0 ? malloc((n ? n : 1) * sizeof *sorted) : NULL;
    if (rc == 0 && !sorted)
        rc = mf_set_error(MF_ERR_NOMEM, "out of memory for %zu rows", n);
    if (rc == 0 && n) {
        memcpy(sorted, d->mag, n * sizeof *sorted);
        size_t m = mf_finite_floats(sorted, n);
        d->nonfinite = n - m;
        mf_sort_floats(sorted, m);
        const double q[5] = {0, 1, 50, 99, 100};
        for (int k = 0; k < 5; k++)
            d->pct[k] = m ? (float)mf_percentile_sorted(sorted, m, q[k]) : NAN;
        mf_histogram_build(&d->hist, d->mag, n, 40);
    }
    free(sorted);
    return rc;
}

/* ---- lowest magnitudes ------------------------------------------------------------ */

/* Rows ordered by magnitude ascending (NaN last), then row. */
static int cmp_row_mag(const void *a, const void *b, void *ctx)
{
    const float *mag = ctx;
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    float mx = mag[x], my = mag[y];
    if (isnan(mx) != isnan(my))
        return isnan(mx) ? 1 : -1;
    if (mx != my && !isnan(mx))
        return mx < my ? -1 : 1;
    return (x > y) - (x < y);
}

static int gather_lowest(rp_data *d)
{
    size_t k = (size_t)d->p->max_faces < d->n ? (size_t)d->p->max_faces : (size_t)d->n;
    uint64_t *rows = malloc((d->n ? d->n : 1) * sizeof *rows);
    d->lowest = calloc(k ? k : 1, sizeof *d->lowest);
    if (!rows || !d->lowest) {
        free(rows);
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < d->n; i++)
        rows[i] = i;
    qsort_r(rows, (size_t)d->n, sizeof *rows, cmp_row_mag, d->mag);
    int rc = 0;
    for (size_t i = 0; i < k && rc == 0; i++)
        if ((rc = rp_row_face(d, rows[i], &d->lowest[i])) == 0)
            d->n_lowest++;
    free(rows);
    return rc;
}

/* ---- the filter's report: a reservoir sample per rule ------------------------------ */

static uint64_t next_random(uint64_t *state) /* splitmix64: a fixed seed, same sample */
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct tsv_cols {
    int id, label, mag, rule, figure, n;
} tsv_cols;

static int parse_header(char *line, tsv_cols *c, const char *path)
{
    char *f[32];
    int n = mf_tsv_split(line, f, 32);
    *c = (tsv_cols){-1, -1, -1, -1, -1, n};
    if (n > 32)
        return mf_set_error(MF_ERR_FORMAT, "'%s': more than 32 columns in the header", path);
    for (int k = 0; k < n; k++) {
        int *col = !strcmp(f[k], "id")          ? &c->id
                   : !strcmp(f[k], "label")     ? &c->label
                   : !strcmp(f[k], "magnitude") ? &c->mag
                   : !strcmp(f[k], "rule")      ? &c->rule
                   : !strcmp(f[k], "figure")    ? &c->figure
                                                : NULL;
        if (col && *col >= 0)
            return mf_set_error(MF_ERR_FORMAT, "'%s': column '%s' appears twice in the header",
                                path, f[k]);
        if (col)
            *col = k;
    }
    if (c->id < 0 || c->rule < 0)
        return mf_set_error(MF_ERR_FORMAT, "'%s': the header needs columns 'id' and 'rule'",
                            path);
    return 0;
}

static rp_rule *find_rule(rp_data *d, const char *name)
{
    for (size_t k = 0; k < d->n_rules; k++)
        if (!strcmp(d->rules[k].name, name))
            return &d->rules[k];
    if (d->n_rules == MAX_RULES)
        return NULL;
    rp_rule *r = &d->rules[d->n_rules];
    *r = (rp_rule){strdup(name), 0, calloc((size_t)d->p->per_rule + 1, sizeof(rp_face)), 0};
    if (!r->name || !r->faces) {
        free(r->name);
        free(r->faces);
        return NULL;
    }
    d->n_rules++;
    return r;
}

/* A number column (magnitude, figure): the whole field, as mf-filter writes it with
 * %.4f ("nan" and "inf" included: a non-finite magnitude is what some rules report). */
static int field_num(char **f, int col, double *v)
{
    char *end;
    if (col < 0) {
        *v = NAN;
        return 0;
    }
    *v = strtod(f[col], &end);
    return f[col][0] && !*end ? 0 : -1;
}

/* One parsed row: every field checked before anything is kept. */
typedef struct tsv_row {
    const char *id, *rule;
    int64_t label;
    double mag, figure;
} tsv_row;

static int parse_row(char *line, const tsv_cols *c, const char *path, size_t lineno, tsv_row *r)
{
    char *f[33];
    int n = mf_tsv_split(line, f, 32);
    if (n != c->n)
        return mf_set_error(MF_ERR_FORMAT,
                            "'%s' line %zu: %s%d tab-separated fields, the header has %d", path,
                            lineno, n > 32 ? "more than " : "", n > 32 ? 32 : n, c->n);
    const char *bad =
        mf_tsv_unescape(f[c->id]) < 0     ? "id"
        : mf_tsv_unescape(f[c->rule]) < 0 ? "rule"
        : !f[c->id][0]                    ? "id (empty)"
        : !f[c->rule][0]                  ? "rule (empty)"
        : c->label >= 0 && mf_label_parse(f[c->label], strlen(f[c->label]), 1, &r->label) < 0
            ? "label"
        : field_num(f, c->mag, &r->mag) < 0       ? "magnitude"
        : field_num(f, c->figure, &r->figure) < 0 ? "figure"
                                                  : NULL;
    if (bad)
        return mf_set_error(MF_ERR_FORMAT, "'%s' line %zu: bad %s field", path, lineno, bad);
    if (c->label < 0)
        r->label = -2;
    r->id = f[c->id];
    r->rule = f[c->rule];
    return 0;
}

static int take_row(rp_data *d, const tsv_row *row, const tsv_cols *c, uint64_t *rng,
                    const char *path, size_t lineno)
{
    if (!strcmp(row->rule, "keep"))
        return 0;
    rp_rule *r = find_rule(d, row->rule);
    if (!r)
        return d->n_rules == MAX_RULES
                   ? mf_set_error(MF_ERR_LIMIT, "'%s' line %zu: more than %d rules", path,
                                  lineno, MAX_RULES)
                   : mf_set_error(MF_ERR_NOMEM, "'%s' line %zu: out of memory", path, lineno);
    r->count++;
    d->dropped_total++;
    uint64_t slot =
        r->count <= (uint64_t)d->p->per_rule ? r->count - 1 : next_random(rng) % r->count;
    if (slot >= (uint64_t)d->p->per_rule)
        return 0;
    char *id = strdup(row->id);
    long t = id ? add_thumb(d, id) : mf_set_error(MF_ERR_NOMEM, "out of memory");
    if (t < 0)
        return (int)t;
    /* a replaced sample's thumbnail stays in the list unused: bounded by the rows read,
     * and only fetched ones cost anything, so drop it by marking it empty */
    if (slot < r->n_faces)
        free(d->thumbs[r->faces[slot].thumb].id), d->thumbs[r->faces[slot].thumb].id = NULL;
    r->faces[slot] =
        (rp_face){(size_t)t,  (float)row->mag, row->label, -2, c->figure >= 0 ? "figure" : NULL,
                  row->figure};
    if (slot == r->n_faces)
        r->n_faces++;
    return 0;
}

int rp_read_filter_report(rp_data *d, FILE *f, const char *path)
{
    if (!d->rules && !(d->rules = calloc(MAX_RULES, sizeof *d->rules)))
        return mf_set_error(MF_ERR_NOMEM, "out of memory");
    char *line = NULL;
    size_t cap = 0, lineno = 1;
    tsv_cols cols = {-1, -1, -1, -1, -1, 0};
    uint64_t rng = 12345;
    ssize_t len = getline(&line, &cap, f);
    int rc = len < 0 ? mf_set_error(MF_ERR_FORMAT, "'%s' is empty", path)
             : memchr(line, 0, (size_t)len)
                 ? mf_set_error(MF_ERR_FORMAT, "'%s' line 1: NUL byte", path)
                 : parse_header(line, &cols, path);
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        tsv_row row;
        if (memchr(line, 0, (size_t)len))
            rc = mf_set_error(MF_ERR_FORMAT, "'%s' line %zu: NUL byte", path, lineno);
        else if ((rc = parse_row(line, &cols, path, lineno, &row)) == 0)
            rc = take_row(d, &row, &cols, &rng, path, lineno);
    }
    if (rc == 0 && ferror(f))
        rc = mf_set_error(MF_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    free(line);
    return rc;
}

static int gather_dropped(rp_data *d)
{
    const char *path = d->p->filter_report;
    FILE *f = fopen(path, "r");
    if (!f)
        return mf_set_error(MF_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    int rc = rp_read_filter_report(d, f, path);
    fclose(f);
    return rc;
}

/* ---- the whole report --------------------------------------------------------------- */

static void free_faces_groups(rp_group *g, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < g[i].n_parts; k++)
            free(g[i].parts[k].faces);
        free(g[i].parts);
    }
    free(g);
}

static void release(rp_data *d)
{
    for (size_t i = 0; i < d->n_thumbs; i++) {
        free(d->thumbs[i].id);
        free(d->thumbs[i].uri);
        free(d->thumbs[i].why);
    }
    free(d->thumbs);
    for (size_t k = 0; k < d->n_rules; k++) {
        free(d->rules[k].name);
        free(d->rules[k].faces);
    }
    free(d->rules);
    free(d->lowest);
    free_faces_groups(d->big, d->n_big);
    free_faces_groups(d->split, d->n_split);
    free_faces_groups(d->merged, d->n_merged);
    free(d->mag);
    free(d->label);
    free(d->cluster);
}

static int gather(rp_data *d)
{
    int rc = read_columns(d);
    d->filter_json = mf_store_attr(d->s, "mf_filter");
    d->has_cut = mf_report_find_cut(d->filter_json, &d->cut);
    if (rc == 0)
        rc = rp_gather_before(d);
    if (rc == 0)
        rc = rp_gather_erc(d);
    if (rc == 0)
        rc = gather_lowest(d);
    if (rc == 0 && d->p->filter_report)
        rc = gather_dropped(d);
    if (rc == 0 && d->cluster)
        rc = rp_gather_clusters(d);
    if (rc == 0 && d->cluster && d->identities)
        rc = rp_gather_disagreements(d);
    return rc;
}

int mf_report_write(mf_store *s, const char *path, const mf_report_params *p,
                    mf_report_stats *st)
{
    memset(st, 0, sizeof *st);
    if (p->max_faces < 0 || p->per_rule < 0 || p->top_groups < 0 || p->per_group < 0)
        return mf_set_error(MF_ERR_ARG, "report sizes must not be negative");
    rp_data d = {.s = s, .p = p, .n = mf_store_rows(s)};
    /* Opened first: an output that may not be written is refused before any work. */
    mf_output *o;
    unsigned flags = MF_OUTPUT_MAKE_PARENTS | (p->overwrite ? MF_OUTPUT_OVERWRITE : 0);
    int rc = mf_output_open(&o, path, flags);
    if (rc < 0)
        return rc;
    rc = gather(&d);
    if (rc == 0)
        rc = fetch_thumbs(&d, st);
    FILE *f = rc == 0 ? mf_output_stream(o) : NULL;
    if (rc == 0 && !f)
        rc = MF_ERR_IO;
    if (rc == 0 && (rc = mf_report_page(f, &d)) == 0)
        rc = mf_output_commit(o);
    else
        mf_output_abort(o);
    st->has_cut = d.has_cut;
    st->cut = d.cut;
    st->split = d.all_split;
    st->merged = d.all_merged;
    release(&d);
    return rc;
}
