/* test_tsv.c - the TSV escaping rule (include/mf/tsv.h) and mf-report's strict reader of
 * mf-filter's --report TSV. */
#include "mf/status.h"
#include "mf/tsv.h"
#include "report/report_internal.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Test(tsv, escape_round_trips_every_byte)
{
    char all[256];
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    const char *cases[] = {"plain/id.jpg", "a\tb", "x\ny\r\n", "back\\slash\\", "\\t", all, ""};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *e = mf_tsv_escape(cases[i]);
        cr_assert_not_null(e);
        cr_assert_eq(strlen(e), mf_tsv_escaped_len(cases[i]));
        cr_assert_null(strpbrk(e, "\t\n\r"), "escaped field holds a separator");
        char *f = NULL;
        size_t n = 0;
        FILE *m = open_memstream(&f, &n);
        cr_assert_eq(mf_tsv_write_field(m, cases[i]), 0);
        fclose(m);
        cr_assert_str_eq(f, e, "mf_tsv_write_field and mf_tsv_escape agree");
        cr_assert_eq(mf_tsv_unescape(e), 0);
        cr_assert_str_eq(e, cases[i]);
        free(e);
        free(f);
    }
    char *e = mf_tsv_escape("a\tb\\c\nd");
    cr_assert_str_eq(e, "a\\tb\\\\c\\nd");
    free(e);
}

Test(tsv, unescape_is_strict)
{
    const char *bad[] = {"a\\x41", "end\\", "\\q", "\\\\\\"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *s = strdup(bad[i]);
        cr_assert_eq(mf_tsv_unescape(s), MF_ERR_FORMAT, "'%s' accepted", bad[i]);
        free(s);
    }
}

Test(tsv, split_counts_fields_exactly)
{
    char line[] = "a\t\tc\r\n", *f[4];
    cr_assert_eq(mf_tsv_split(line, f, 4), 3);
    cr_assert_str_eq(f[0], "a");
    cr_assert_str_eq(f[1], "");
    cr_assert_str_eq(f[2], "c");
    char many[] = "1\t2\t3\t4\t5\n";
    cr_assert_eq(mf_tsv_split(many, f, 4), 5, "more fields than room: max + 1");
    char empty[] = "\n";
    cr_assert_eq(mf_tsv_split(empty, f, 4), 1);
}

/* ---- mf-report's reader of mf-filter's report -------------------------------------- */

static int read_report(const char *text, rp_data *d, mf_report_params *p)
{
    *p = mf_report_default_params();
    memset(d, 0, sizeof *d);
    d->p = p;
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    int rc = rp_read_filter_report(d, f, "r.tsv");
    fclose(f);
    return rc;
}

static void release(rp_data *d)
{
    for (size_t i = 0; i < d->n_thumbs; i++)
        free(d->thumbs[i].id);
    free(d->thumbs);
    for (size_t k = 0; k < d->n_rules; k++) {
        free(d->rules[k].name);
        free(d->rules[k].faces);
    }
    free(d->rules);
}

Test(tsv, filter_report_reader_unescapes_ids)
{
    rp_data d;
    mf_report_params p;
    const char *text = "id\tlabel\tmagnitude\trule\tfigure\n"
                       "a\\tb.jpg\t3\t12.5000\tlow_magnitude\t12.5000\n"
                       "x\\ny\\\\z.jpg\t-1\tnan\tduplicate\t0.9900\n"
                       "k.jpg\t1\t20.0\tkeep\t0\n";
    cr_assert_eq(read_report(text, &d, &p), 0, "%s", mf_last_error());
    cr_assert_eq(d.n_rules, 2);
    cr_assert_eq(d.dropped_total, 2);
    cr_assert_str_eq(d.thumbs[d.rules[0].faces[0].thumb].id, "a\tb.jpg");
    cr_assert_eq(d.rules[0].faces[0].label, 3);
    cr_assert_str_eq(d.thumbs[d.rules[1].faces[0].thumb].id, "x\ny\\z.jpg");
    cr_assert_eq(d.rules[1].faces[0].label, -1);
    release(&d);
}

Test(tsv, filter_report_reader_is_strict_about_columns)
{
    const char *head = "id\tlabel\tmagnitude\trule\tfigure\n";
    const char *rows[] = {
        "a.jpg\t3\t12.5\tlow\n",         /* a field missing (a raw tab in an id shifts) */
        "a\tb.jpg\t3\t12.5\tlow\t1.0\n", /* one too many */
        "a.jpg\t1e99\t12.5\tlow\t1.0\n", /* label */
        "a.jpg\t3\t12.5x\tlow\t1.0\n",   /* magnitude */
        "a\\q.jpg\t3\t12.5\tlow\t1.0\n", /* escape */
        "\t3\t12.5\tlow\t1.0\n",         /* empty id */
        "a.jpg\t3\t12.5\t\t1.0\n",       /* empty rule */
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        char text[256];
        snprintf(text, sizeof text, "%s%s", head, rows[i]);
        rp_data d;
        mf_report_params p;
        cr_assert_lt(read_report(text, &d, &p), 0, "accepted: %s", rows[i]);
        cr_assert(strstr(mf_last_error(), "'r.tsv' line 2"), "%s", mf_last_error());
        release(&d);
    }
    const char *heads[] = {"", "label\tmagnitude\n", "id\trule\tid\n"};
    for (size_t i = 0; i < sizeof heads / sizeof *heads; i++) {
        rp_data d;
        mf_report_params p;
        cr_assert_lt(read_report(heads[i], &d, &p), 0, "accepted header '%s'", heads[i]);
        cr_assert(strstr(mf_last_error(), "r.tsv"), "%s", mf_last_error());
        release(&d);
    }
}

/* Found by fuzz_filter_report: the "too many rules" error did not name the file. */
Test(tsv, filter_report_too_many_rules_names_the_file)
{
    char text[4096] = "id\trule\n";
    for (int k = 0; k < 70; k++)
        snprintf(text + strlen(text), sizeof text - strlen(text), "a.jpg\tr%d\n", k);
    rp_data d;
    mf_report_params p;
    cr_assert_eq(read_report(text, &d, &p), MF_ERR_LIMIT);
    cr_assert(strstr(mf_last_error(), "'r.tsv' line 66: more than 64 rules"), "%s",
              mf_last_error());
    release(&d);
}
