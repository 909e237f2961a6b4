/* Export building blocks: id kinds, fetching image bytes from files and archives (one
 * pass, any member order, missing members reported), HTML escaping, data: URIs, the
 * filter cut found in mf_filter JSON. */
#include <archive.h>
#include <archive_entry.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mf/export.h"
#include "mf/report.h"
#include "report/html.h"

static char dir[] = "/tmp/mf_test_export_XXXXXX";

static void setup(void)
{
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void)!system(cmd);
}

TestSuite(export, .init = setup, .fini = teardown);

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

Test(export, image_ext)
{
    const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xe0}, png[] = "\x89PNG\r\n\x1a\n";
    cr_assert_str_eq(mf_image_ext(jpg, sizeof jpg), "jpg");
    cr_assert_str_eq(mf_image_ext(png, 8), "png");
    cr_assert_str_eq(mf_image_ext((const uint8_t *)"GIF89a", 6), "bin");
    cr_assert_str_eq(mf_image_ext(jpg, 2), "bin");
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
    char data[8][32];
    char why[8][128];
    int calls[8];
} got;

static int collect(void *ctx, size_t i, const uint8_t *data, size_t size, const char *why)
{
    got *g = ctx;
    g->calls[i]++;
    if (data)
        snprintf(g->data[i], sizeof g->data[i], "%.*s", (int)size, (const char *)data);
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
    const char *bytes[] = {"two", "one", "three"};
    write_tar(tar, names, bytes, 3);
    FILE *f = fopen(file, "wb");
    fputs("plain", f);
    fclose(f);
    /* ids relative to --root; members asked in another order than stored, one twice,
     * one absent, one archive absent */
    char *ids[] = {"a.tar//m/1.jpg", "f.jpg", "a.tar//m/2.jpg", "a.tar//m/9.jpg",
                   "nope.tar//m/1.jpg", "a.tar//m/1.jpg", "gone.jpg"};
    got g = {0};
    cr_assert_eq(mf_fetch_images(ids, 7, dir, 0, collect, &g), 0);
    for (int i = 0; i < 7; i++)
        cr_assert_eq(g.calls[i], 1, "id %d called %d times", i, g.calls[i]);
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
    fputs("0123456789", f);
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
    cr_assert_eq(mf_report_find_cut("{\"rules\": {\"min_magnitude\": 18, \"auto_cut\": 19.5}}",
                                    &cut), 1);
    cr_assert_float_eq(cut, 19.5, 1e-12); /* the larger of two cuts is the effective one */
    cr_assert_eq(mf_report_find_cut("{\"min_magnitude\": 0, \"dedup_cos\": 0.95}", &cut), 0);
    cr_assert_eq(mf_report_find_cut("not json", &cut), 0);
    cr_assert_eq(mf_report_find_cut(NULL, &cut), 0);
}
