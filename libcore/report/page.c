/* page.c - the HTML of mf-report. One file, no external resource: a Content Security
 * Policy forbids every fetch except data: images, so the page cannot reach the network
 * even if some text slipped through unescaped. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "mf/status.h"
#include "mf/store.h"
#include "report_internal.h"

static const char *style =
    "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}"
    "h1{margin:0 0 4px}h2{border-bottom:2px solid #4a7ab5;padding-bottom:2px;margin-top:32px}"
    "h3{margin:18px 0 6px;font-size:15px}h4{margin:6px 0;font-size:13px;color:#555}"
    "nav a{margin-right:12px}table{border-collapse:collapse}"
    "td,th{padding:2px 12px 2px 0;text-align:left;vertical-align:top}"
    "pre{background:#f4f4f4;padding:8px;white-space:pre-wrap;word-break:break-all}"
    ".faces{display:flex;flex-wrap:wrap;gap:8px}"
    ".face{margin:0;width:112px;font-size:11px}.face img,.noimg{width:112px;height:112px;"
    "display:block;border:1px solid #ccc}.noimg{background:#fee;color:#a00;text-align:center;"
    "font-size:11px;overflow:hidden}"
    ".id{display:block;word-break:break-all;max-height:2.9em;overflow:hidden}"
    ".parts{display:flex;flex-wrap:wrap;gap:24px}.none{color:#777;font-style:italic}"
    ".sub{color:#666;margin-top:0}.kv{display:inline-table;margin-right:32px}";

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* The informative end of an id: its last path components that fit in TAIL_BYTES
 * ("…/id07/3.jpg"; the end of the last component if even that is longer), cut at a
 * UTF-8 boundary; the whole id is in the caption's title. */
#define TAIL_BYTES 40

static void id_tail(FILE *f, const char *id)
{
    size_t n = strlen(id);
    if (n <= TAIL_BYTES) {
        mf_html_text(f, id);
        return;
    }
    const char *t = id + n - TAIL_BYTES, *slash = strchr(t, '/');
    if (slash && slash[1])
        t = slash;              /* start at a component */
    while ((*t & 0xc0) == 0x80) /* not in the middle of a character */
        t++;
    fputs("\xe2\x80\xa6", f); /* U+2026 */
    mf_html_text(f, t);
}

static void face_html(FILE *f, const rp_data *d, const rp_face *x)
{
    const rp_thumb *t = &d->thumbs[x->thumb];
    const char *id = t->id ? t->id : "";
    fputs("<figure class=\"face\">", f);
    if (t->uri) {
        fprintf(f, "<img src=\"%s\" alt=\"", t->uri);
        mf_html_text(f, id);
        fputs("\">", f);
    } else {
        fputs("<div class=\"noimg\">image missing<br>", f);
        mf_html_text(f, t->why ? t->why : "");
        fputs("</div>", f);
    }
    fputs("<figcaption><span class=\"id\" title=\"", f);
    mf_html_text(f, id);
    fputs("\">", f);
    id_tail(f, id);
    fprintf(f, "</span>m %.3f", x->mag);
    if (x->label >= -1)
        fprintf(f, " · label %lld", (long long)x->label);
    if (x->label >= 0) { /* the identity's name, when the store keeps /labels/name */
        char *name = mf_store_label_name(d->s, (uint64_t)x->label);
        if (name) {
            fputs(" (", f);
            mf_html_text(f, name);
            fputs(")", f);
        }
        free(name);
    }
    if (x->cluster >= -1)
        fprintf(f, " · cl %lld", (long long)x->cluster);
    if (x->figure_name && !isnan(x->figure))
        fprintf(f, " · %s %.4g", x->figure_name, x->figure);
    fputs("</figcaption></figure>\n", f);
}

static void faces_html(FILE *f, const rp_data *d, const rp_face *v, size_t n)
{
    fputs("<div class=\"faces\">\n", f);
    for (size_t i = 0; i < n; i++)
        face_html(f, d, &v[i]);
    fputs("</div>\n", f);
}

/* One row per member of a flat JSON object: "key: value" with numbers and booleans. */
static void json_rows(FILE *f, const cJSON *o, int skip_zero)
{
    for (const cJSON *it = o ? o->child : NULL; it; it = it->next) {
        if (cJSON_IsObject(it) || cJSON_IsArray(it) || cJSON_IsNull(it))
            continue;
        if (skip_zero && cJSON_IsNumber(it) && it->valuedouble == 0)
            continue;
        if (skip_zero && cJSON_IsFalse(it))
            continue;
        fputs("<tr><th>", f);
        mf_html_text(f, it->string);
        fputs("</th><td>", f);
        if (cJSON_IsNumber(it))
            fprintf(f, "%.6g", it->valuedouble);
        else if (cJSON_IsString(it))
            mf_html_text(f, it->valuestring);
        else
            fputs(cJSON_IsTrue(it) ? "yes" : "no", f);
        fputs("</td></tr>\n", f);
    }
}

/* What mf-filter did, as recorded in the store: the rules given, the rows each dropped,
 * and its other figures (counts, cuts, the --auto reason, anything a newer version
 * adds), every value escaped. */
static void filter_settings(FILE *f, const rp_data *d)
{
    cJSON *j = d->filter_json ? cJSON_Parse(d->filter_json) : NULL;
    if (!j)
        return;
    fputs("<h3>Filtering (mf-filter)</h3>\n<table class=\"kv\"><tr><th>rules</th><td></td>"
          "</tr>\n",
          f);
    json_rows(f, cJSON_GetObjectItemCaseSensitive(j, "rules"), 1);
    fputs("</table>\n<table class=\"kv\"><tr><th>rows dropped by</th><td></td></tr>\n", f);
    json_rows(f, cJSON_GetObjectItemCaseSensitive(j, "dropped"), 1);
    fputs("</table>\n<table class=\"kv\">\n", f);
    json_rows(f, j, 0); /* the top-level figures; objects and arrays are left out */
    fputs("</table>\n", f);
    cJSON_Delete(j);
}

static void summary(FILE *f, const rp_data *d)
{
    const char *model = mf_store_attr(d->s, "model");
    fputs("<section id=\"summary\"><h2>Summary</h2><table>\n<tr><th>store</th><td>", f);
    mf_html_text(f, mf_store_path(d->s));
    fprintf(f, "</td></tr>\n<tr><th>rows</th><td>%llu</td></tr>\n<tr><th>model</th><td>",
            (unsigned long long)d->n);
    mf_html_text(f, model ? model : "(not recorded)");
    fprintf(f, "</td></tr>\n<tr><th>dimension</th><td>%d</td></tr>\n", mf_store_dim(d->s));
    fprintf(f, "<tr><th>failed inputs</th><td>%llu</td></tr>\n",
            (unsigned long long)mf_store_failed_count(d->s));
    fprintf(f, "<tr><th>identities</th><td>%llu (%llu %s unlabelled)</td></tr>\n",
            (unsigned long long)d->identities, (unsigned long long)d->unlabelled,
            plural(d->unlabelled, "row", "rows"));
    if (d->cluster)
        fprintf(f, "<tr><th>clusters</th><td>%llu (%llu %s unassigned)</td></tr>\n",
                (unsigned long long)d->clusters, (unsigned long long)d->unassigned,
                plural(d->unassigned, "row", "rows"));
    if (d->n)
        fprintf(f,
                "<tr><th>magnitude</th><td>min %.3f · p1 %.3f · median %.3f · p99 %.3f"
                " · max %.3f</td></tr>\n",
                d->pct[0], d->pct[1], d->pct[2], d->pct[3], d->pct[4]);
    if (d->nonfinite)
        fprintf(f,
                "<tr><th>not finite</th><td class=\"warn\">%llu rows have a NaN or infinite "
                "magnitude (left out of the figures; mf-filter drops them)</td></tr>\n",
                (unsigned long long)d->nonfinite);
    fputs("</table>\n", f);
    filter_settings(f, d);
    fputs("</section>\n", f);
}

static void histogram(FILE *f, const rp_data *d)
{
    fputs("<section id=\"histogram\"><h2>Magnitude distribution</h2>\n", f);
    if (!d->n) {
        fputs("<p class=\"none\">The store has no rows.</p></section>\n", f);
        return;
    }
    mf_html_histogram(f, &d->hist, d->has_before ? &d->before : NULL, d->has_cut, d->cut, 900,
                      280);
    if (d->has_before)
        fprintf(f, "<p>Grey: the %llu rows before filtering; blue: the %llu %s of this store.",
                (unsigned long long)d->before_rows, (unsigned long long)d->n,
                plural(d->n, "row", "rows"));
    else
        fputs("<p>The rows of this store.", f);
    if (d->has_cut && d->has_before && d->removed_by_cut && d->before_rows)
        fprintf(f,
                " The dashed line is the magnitude cut recorded by mf-filter, %.3f: the "
                "magnitude rules removed %llu %s (%.1f%% of the rows before filtering).</p>\n",
                d->cut, (unsigned long long)d->removed_by_cut,
                plural(d->removed_by_cut, "row", "rows"),
                100.0 * (double)d->removed_by_cut / (double)d->before_rows);
    else if (d->has_cut)
        fprintf(f, " The dashed line is the magnitude cut recorded by mf-filter: %.3f.</p>\n",
                d->cut);
    else
        fputs(" No magnitude cut recorded in this store.</p>\n", f);
    fputs("</section>\n", f);
}

/* The error-versus-reject curve: does rejecting low magnitudes remove recognition errors? */
static void quality(FILE *f, const rp_data *d)
{
    fputs("<section id=\"quality\"><h2>Is magnitude a quality?</h2>\n", f);
    if (!d->has_erc) {
        fprintf(f, "<p class=\"none\">%s</p></section>\n",
                d->erc_note[0] ? d->erc_note : "No labels to compare pairs with.");
        return;
    }
    const mf_erc *e = &d->erc;
    mf_html_curve(f, e->reject, e->fnmr, e->steps, 900, 260,
                  "genuine pairs rejected, lowest pair magnitude first",
                  "false non-match rate");
    fprintf(
        f,
        "<p>Error-versus-reject curve (MagFace's quality evaluation): pairs of faces of one "
        "identity (%llu genuine pairs) are compared at the threshold where %.2g of the "
        "pairs of different identities match (%llu impostor pairs); the curve shows the "
        "share of genuine pairs that fail to match as the pairs whose lower magnitude is "
        "smallest are set aside. A falling curve means magnitude ranks faces by how "
        "recognisable they are. Computed on %llu %s%s.</p>\n",
        (unsigned long long)e->genuine, mf_erc_default_params().fmr,
        (unsigned long long)e->impostor, (unsigned long long)d->erc_rows,
        plural(d->erc_rows, "row", "rows"), e->sampled ? ", pairs drawn at random" : "");
    fputs("</section>\n", f);
}

static void lowest(FILE *f, const rp_data *d)
{
    fprintf(f,
            "<section id=\"lowest\"><h2>Lowest magnitude faces</h2>\n<p>The %zu faces "
            "MagFace rates lowest (magnitude = quality), lowest first.</p>\n",
            d->n_lowest);
    faces_html(f, d, d->lowest, d->n_lowest);
    fputs("</section>\n", f);
}

static void dropped(FILE *f, const rp_data *d)
{
    fputs("<section id=\"dropped\"><h2>Dropped by the filter</h2>\n", f);
    if (!d->p->filter_report)
        fputs("<p class=\"none\">No filter report given (mf-report --filter-report FILE.tsv,"
              " from mf-filter --report).</p>\n",
              f);
    else if (!d->n_rules)
        fputs("<p class=\"none\">The filter report lists no dropped rows.</p>\n", f);
    else
        fprintf(f,
                "<p>%llu %s dropped; a random sample of each rule below. Under each face: its "
                "magnitude (m), label, and the figure that failed its rule: the magnitude for "
                "the magnitude rules, the cosine to its identity's centre for the outlier "
                "rules, the cosine to the copy kept for near-duplicates.</p>\n",
                (unsigned long long)d->dropped_total, plural(d->dropped_total, "row", "rows"));
    for (size_t k = 0; k < d->n_rules; k++) {
        fputs("<div class=\"rule\"><h3>", f);
        mf_html_text(f, d->rules[k].name);
        fprintf(f, ": %llu %s</h3>\n", (unsigned long long)d->rules[k].count,
                plural(d->rules[k].count, "row", "rows"));
        faces_html(f, d, d->rules[k].faces, d->rules[k].n_faces);
        fputs("</div>\n", f);
    }
    fputs("</section>\n", f);
}

static void clusters(FILE *f, const rp_data *d)
{
    fputs("<section id=\"clusters\"><h2>Largest clusters</h2>\n", f);
    if (!d->cluster)
        fputs("<p class=\"none\">This store has no /cluster (run mf-cluster).</p>\n", f);
    for (size_t i = 0; i < d->n_big; i++) {
        const rp_group *g = &d->big[i];
        fprintf(f, "<div class=\"group\"><h3>cluster %lld: %llu %s, mean magnitude %.3f",
                (long long)g->key, (unsigned long long)g->total,
                plural(g->total, "face", "faces"), g->mean_mag);
        if (g->majority >= 0)
            fprintf(f, ", %llu label%s, majority label %lld (%.0f%%)",
                    (unsigned long long)g->distinct, g->distinct == 1 ? "" : "s",
                    (long long)g->majority,
                    100.0 * (double)g->majority_count / (double)g->total);
        fputs("</h3>\n", f);
        faces_html(f, d, g->parts[0].faces, g->parts[0].n_faces);
        fputs("</div>\n", f);
    }
    fputs("</section>\n", f);
}

/* Split identities (group = label, parts = clusters) or merged clusters (the reverse). */
static void disagreements(FILE *f, const rp_data *d, int split)
{
    const rp_group *g = split ? d->split : d->merged;
    size_t n = split ? d->n_split : d->n_merged;
    uint64_t all = split ? d->all_split : d->all_merged;
    fprintf(f, "<section id=\"%s\"><h2>%s</h2>\n", split ? "split" : "merged",
            split ? "Identities split by clustering" : "Clusters merging several identities");
    if (!d->cluster || !d->identities)
        fputs("<p class=\"none\">Needs both labels and /cluster.</p>\n", f);
    else
        fprintf(f, "<p>%llu %s; the %zu with the largest second part below.</p>\n",
                (unsigned long long)all,
                split ? "labels have rows in more than one cluster"
                      : "clusters hold rows of more than one label",
                n);
    for (size_t i = 0; i < n; i++) {
        fprintf(f,
                "<div class=\"group\"><h3>%s %lld: %llu %s in %llu %s</h3>"
                "<div class=\"parts\">\n",
                split ? "label" : "cluster", (long long)g[i].key,
                (unsigned long long)g[i].total, plural(g[i].total, "row", "rows"),
                (unsigned long long)g[i].distinct,
                split ? plural(g[i].distinct, "cluster", "clusters")
                      : plural(g[i].distinct, "label", "labels"));
        for (size_t k = 0; k < g[i].n_parts; k++) {
            const rp_part *p = &g[i].parts[k];
            fprintf(f, "<div class=\"part\"><h4>%s %lld: %llu %s</h4>\n",
                    split ? "cluster" : "label", (long long)p->key,
                    (unsigned long long)p->count, plural(p->count, "row", "rows"));
            faces_html(f, d, p->faces, p->n_faces);
            fputs("</div>\n", f);
        }
        fputs("</div></div>\n", f);
    }
    fputs("</section>\n", f);
}

int mf_report_page(FILE *f, const rp_data *d)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "img-src data:; style-src 'unsafe-inline'\">\n<title>mfkit report: ",
          f);
    mf_html_text(f, mf_store_path(d->s));
    fprintf(f,
            "</title>\n<style>%s</style></head><body>\n<h1>mfkit report</h1>\n"
            "<p class=\"sub\">",
            style);
    mf_html_text(f, mf_store_path(d->s));
    fputs("</p>\n<nav><a href=\"#summary\">summary</a><a href=\"#histogram\">histogram</a>"
          "<a href=\"#quality\">quality</a>"
          "<a href=\"#lowest\">lowest</a><a href=\"#dropped\">dropped</a>"
          "<a href=\"#clusters\">clusters</a><a href=\"#split\">split</a>"
          "<a href=\"#merged\">merged</a></nav>\n",
          f);
    summary(f, d);
    histogram(f, d);
    quality(f, d);
    lowest(f, d);
    dropped(f, d);
    clusters(f, d);
    disagreements(f, d, 1);
    disagreements(f, d, 0);
    fputs("</body></html>\n", f);
    return ferror(f) ? mf_set_error(MF_ERR_IO, "cannot write the report") : 0;
}
