/* Export building blocks: id kinds, fetching image bytes from files and archives (one
 * pass, any member order, missing members reported), HTML escaping, data: URIs, the
 * filter cut found in mf_filter JSON. */
#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mf/export.h"
#include "mf/report.h"
#include "mf/status.h"
#include "temp_dir.h"
#include "report/html.h"


static void setup(void) { temp_dir_make("export"); }

TestSuite(export, .init = setup, .fini = temp_dir_remove);

Test(export, id_kinds)
{
    size_t len;
    cr_assert_eq(mf_id_classify("a/b.jpg", &len), MF_ID_FILE);
    cr_assert_eq(len, 7);
    cr_assert_eq(mf_id_classify("d/x.tar//m/1.jpg", &len), MF_ID_ARCHIVE);
    cr_assert_eq(len, 7);
    cr_assert_eq(mf_id_classify("faces/train.rec//17", &len), MF_ID_RECORDIO);
    cr_assert_eq(len, 15);
    /* a doubled slash inside a plain path is not an archive */
    cr_assert_eq(mf_id_classify("data//a.jpg", &len), MF_ID_FILE);
    cr_assert_eq(mf_id_classify("//abs.jpg", &len), MF_ID_FILE);
    cr_assert_eq(mf_id_classify("x.d/sub//a.jpg", &len), MF_ID_FILE);
}


static void write_tar(const char *path, const char **names, const char **data, int n)
{
    struct archive *w = archive_write_new();
    archive_write_set_format_pax_restricted(w);
    cr_assert_eq(archive_write_open_filename(w, path), ARCHIVE_OK);
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, names[i]);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)strlen(data[i]));
        archive_write_header(w, e);
        archive_write_data(w, data[i], strlen(data[i]));
        archive_entry_free(e);
    }
    archive_write_close(w);
    archive_write_free(w);
}

typedef struct got {
    char data[16][32];
    char why[16][128];
    int calls[16];
} got;

static int collect(void *ctx, size_t i, const uint8_t *data, size_t size, const char *why)
{
    got *g = ctx;
    g->calls[i]++;
    if (data) /* the bytes after the JPEG signature every test image starts with */
        snprintf(g->data[i], sizeof g->data[i], "%.*s", (int)size - 3, (const char *)data + 3);
    else
        snprintf(g->why[i], sizeof g->why[i], "%s", why);
    return 0;
}

Test(export, fetch_files_and_archive_members)
{
    char tar[600], file[600];
    snprintf(tar, sizeof tar, "%s/a.tar", dir);
    snprintf(file, sizeof file, "%s/f.jpg", dir);
    const char *names[] = {"./m/2.jpg", "m/1.jpg", "m/3.jpg"};
    const char *bytes[] = {"\xff\xd8\xfftwo", "\xff\xd8\xffone", "\xff\xd8\xffthree"};
    write_tar(tar, names, bytes, 3);
    FILE *f = fopen(file, "wb");
    fputs("\xff\xd8\xffplain", f);
    fclose(f);
    char gif[600], fifo[600];
    snprintf(gif, sizeof gif, "%s/g.jpg", dir);
    f = fopen(gif, "wb");
    fputs("GIF89a, named .jpg", f);
    fclose(f);
    snprintf(fifo, sizeof fifo, "%s/fifo.jpg", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    /* ids relative to --root; members asked in another order than stored, one twice,
     * one absent, one archive absent; bytes that are not an image; a FIFO (no hang) */
    char *ids[] = {"a.tar//m/1.jpg",    "f.jpg",          "a.tar//m/2.jpg", "a.tar//m/9.jpg",
                   "nope.tar//m/1.jpg", "a.tar//m/1.jpg", "gone.jpg",       "g.jpg",
                   "fifo.jpg"};
    got g = {0};
    cr_assert_eq(mf_fetch_images(ids, 9, dir, 0, collect, &g), 0);
    for (int i = 0; i < 9; i++)
        cr_assert_eq(g.calls[i], 1, "id %d called %d times", i, g.calls[i]);
    cr_assert(strstr(g.why[7], "not an image"), "%s", g.why[7]);
    cr_assert(strstr(g.why[8], "not a regular file"), "%s", g.why[8]);
    cr_assert_str_eq(g.data[0], "one");
    cr_assert_str_eq(g.data[1], "plain");
    cr_assert_str_eq(g.data[2], "two");
    cr_assert_str_eq(g.data[5], "one");
    cr_assert(strstr(g.why[3], "no such member"), "%s", g.why[3]);
    cr_assert(g.why[4][0] && !g.data[4][0]);
    cr_assert(g.why[6][0] && !g.data[6][0]);
}

Test(export, fetch_limit)
{
    char file[600];
    snprintf(file, sizeof file, "%s/big.jpg", dir);
    FILE *f = fopen(file, "wb");
    fputs("\xff\xd8\xff" "0123456789", f);
    fclose(f);
    char *ids[] = {"big.jpg"};
    got g = {0};
    cr_assert_eq(mf_fetch_images(ids, 1, dir, 5, collect, &g), 0);
    cr_assert(strstr(g.why[0], "too large"), "%s", g.why[0]);
}

Test(export, html_escaping)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    mf_html_text(f, "a<b>&\"c'\x01");
    fclose(f);
    cr_assert_str_eq(buf, "a&lt;b&gt;&amp;&quot;c&#39;\xef\xbf\xbd");
    free(buf);
}

Test(export, data_uri)
{
    const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xe0, 0x00};
    char *u = mf_html_data_uri(jpg, sizeof jpg);
    cr_assert_str_eq(u, "data:image/jpeg;base64,/9j/4AA=");
    free(u);
    cr_assert_null(mf_html_data_uri((const uint8_t *)"text", 4));
}

Test(export, filter_cut)
{
    double cut = 0;
    cr_assert_eq(mf_report_find_cut("{\"magnitude_cut\": 21.5}", &cut), 1);
    cr_assert_float_eq(cut, 21.5, 1e-12);
    cr_assert_eq(
        mf_report_find_cut("{\"rules\": {\"min_magnitude\": 18, \"auto_cut\": 19.5}}", &cut),
        1);
    cr_assert_float_eq(cut, 19.5, 1e-12); /* the larger of two cuts is the effective one */
    cr_assert_eq(mf_report_find_cut("{\"min_magnitude\": 0, \"dedup_cos\": 0.95}", &cut), 0);
    cr_assert_eq(mf_report_find_cut("not json", &cut), 0);
    cr_assert_eq(mf_report_find_cut(NULL, &cut), 0);
}

/* ---- round trips through the input reader mf-embed uses (mf/source.h) ---------------- */

#include "mf/source.h"
#include "mf/store.h"

#define RT_N 6
static const int64_t rt_labels[RT_N] = {5, 2, 5, -1, 9, 2};
static const int64_t rt_class[RT_N] = {1, 0, 1, -1, 2, 0}; /* 2,5,9 -> 0,1,2 */

/* Files with JPEG-looking bytes (unique per row) and a store pointing at them. */
static void make_store(char *store_path, size_t cap)
{
    snprintf(store_path, cap, "%s/s.h5", dir);
    mf_store_params p = mf_store_default_params();
    p.dim = 4;
    mf_store *s;
    cr_assert_eq(mf_store_create(&s, store_path, &p), 0, "%s", mf_last_error());
    char *ids[RT_N];
    float emb[RT_N * 4];
    for (int i = 0; i < RT_N; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/img%d.jpg", dir, i);
        FILE *f = fopen(path, "wb");
        fprintf(f,
                "\xff\xd8\xff"
                "image-%d",
                i);
        fclose(f);
        ids[i] = strdup(path);
        for (int d = 0; d < 4; d++)
            emb[i * 4 + d] = (float)(i + d);
    }
    cr_assert_eq(mf_store_append(s, RT_N, emb, NULL, (const char *const *)ids, rt_labels), 0);
    cr_assert_eq(mf_store_commit(s), 0, "%s", mf_last_error());
    for (int i = 0; i < RT_N; i++)
        free(ids[i]);
}

/* Read `input` with mf_source: every sample's label must be the class of the row whose
 * bytes it carries ("image-<row>"), each labelled row exactly once. */
static void read_back(const char *input)
{
    mf_source *src;
    mf_source_params sp = mf_source_default_params();
    cr_assert_eq(mf_source_new(&src, &sp), 0);
    cr_assert_eq(mf_source_add(src, input, MF_INPUT_AUTO), 0);
    mf_sample smp;
    int seen[RT_N] = {0}, n = 0, rc;
    while ((rc = mf_source_next(src, &smp)) > 0) {
        cr_assert_null(smp.error, "%s: %s", smp.id, smp.error);
        int row = -1;
        cr_assert_eq(sscanf((const char *)smp.data + 3, "image-%d", &row), 1);
        cr_assert(row >= 0 && row < RT_N && rt_class[row] >= 0);
        cr_assert_eq(smp.label, rt_class[row], "row %d: label %lld", row, (long long)smp.label);
        seen[row]++, n++;
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(n, 5);
    for (int i = 0; i < RT_N; i++)
        cr_assert_eq(seen[i], rt_class[i] >= 0 ? 1 : 0);
    mf_source_free(src);
}

static void export_as(const char *store_path, mf_export_format fmt, const char *out)
{
    mf_store *s;
    cr_assert_eq(mf_store_open(&s, store_path), 0, "%s", mf_last_error());
    mf_export_params p = mf_export_default_params();
    p.format = fmt;
    p.output = out;
    mf_export_stats st;
    cr_assert_eq(mf_export_run(s, &p, &st), 0, "%s", mf_last_error());
    cr_assert_eq(st.written, 5);
    cr_assert_eq(st.unlabelled, 1);
    cr_assert_eq(st.classes, 3);
    mf_store_close(s);
}

Test(export, rec_read_back_by_source)
{
    char store[600], out[600], rec[600];
    make_store(store, sizeof store);
    snprintf(out, sizeof out, "%s/train", dir);
    export_as(store, MF_EXPORT_REC, out);
    snprintf(rec, sizeof rec, "%s/train.rec", dir);
    read_back(rec);
}

Test(export, wds_read_back_by_source)
{
    char store[600], out[600], shard[600];
    make_store(store, sizeof store);
    snprintf(out, sizeof out, "%s/shard", dir);
    export_as(store, MF_EXPORT_WDS, out);
    snprintf(shard, sizeof shard, "%s/shard-000000.tar", dir);
    read_back(shard);
}
