/* test_recordio.c - writer -> reader round trip (C and an independent Python reader),
 * the insightface layout, split records, damage handling. */
#include "mf/recordio.h"
#include "mf/status.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const uint8_t MAGIC_LE[4] = {0x0a, 0x23, 0xd7, 0xce};

/* Payload i: pseudo-random bytes with the magic planted at aligned offsets (and, for
 * i == 3, right at the start and the very end) to force split records. */
static size_t make_payload(uint8_t *p, int i)
{
    size_t n = 100 + 37 * (size_t)i;
    for (size_t k = 0; k < n; k++)
        p[k] = (uint8_t)(k * 131 + i * 7);
    if (i % 2 == 1)
        memcpy(p + 40, MAGIC_LE, 4), memcpy(p + 48, MAGIC_LE, 4);
    if (i == 3)
        memcpy(p, MAGIC_LE, 4), memcpy(p + (n & ~3u) - 4, MAGIC_LE, 4);
    return n;
}

static void tmpname(char *buf, size_t n, const char *suffix)
{
    snprintf(buf, n, "/tmp/mf_test_recordio_%d%s", (int)getpid(), suffix);
}

static const int64_t labels[6] = {0, 0, 1, 1, 1, 4};

static void write_sample(const char *rec, const char *idx)
{
    mf_recordio_writer *w;
    cr_assert_eq(mf_recordio_writer_open(&w, rec, idx, 0), 0, "%s", mf_last_error());
    uint8_t p[512];
    for (int i = 0; i < 6; i++) {
        size_t n = make_payload(p, i);
        cr_assert_eq(mf_recordio_writer_add(w, labels[i], p, n), 0, "%s", mf_last_error());
    }
    cr_assert_eq(mf_recordio_writer_commit(w), 0, "%s", mf_last_error());
}

Test(recordio, round_trip_and_insightface_layout)
{
    char rec[128], idx[128];
    tmpname(rec, sizeof rec, ".rec");
    tmpname(idx, sizeof idx, ".idx");
    write_sample(rec, idx);
    mf_recordio_reader *r;
    cr_assert_eq(mf_recordio_open(&r, rec, 0), 0, "%s", mf_last_error());
    cr_assert_eq(mf_recordio_index_size(r), 1 + 6 + 3);
    mf_record x;
    mf_record_header h;
    /* record 0: flag 2, [N+1, N+1+K] */
    cr_assert_eq(mf_recordio_next(r, &x, 1), 1);
    cr_assert_eq(x.key, 0);
    cr_assert_eq(mf_record_parse(&h, x.data, x.size), 0);
    cr_assert(h.flag == 2 && h.labels[0] == 7 && h.labels[1] == 10 && h.image_size == 0);
    uint8_t want[512];
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(mf_recordio_next(r, &x, 1), 1, "%s", mf_last_error());
        cr_assert_eq(x.key, i + 1);
        cr_assert_eq(mf_record_parse(&h, x.data, x.size), 0);
        size_t n = make_payload(want, i);
        cr_assert_eq(h.image_size, n);
        cr_assert_eq(memcmp(h.image, want, n), 0, "payload %d differs", i);
        cr_assert_eq(mf_record_class(&h), labels[i]);
    }
    /* identity records: [first, end) of labels 0, 1, 4 */
    const float ranges[3][2] = {{1, 3}, {3, 6}, {6, 7}};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(mf_recordio_next(r, &x, 1), 1);
        cr_assert_eq(x.key, 7 + i);
        cr_assert_eq(mf_record_parse(&h, x.data, x.size), 0);
        cr_assert(h.flag == 2 && h.labels[0] == ranges[i][0] && h.labels[1] == ranges[i][1] &&
                  h.image_size == 0);
    }
    cr_assert_eq(mf_recordio_next(r, &x, 1), 0);
    /* keyed access */
    cr_assert_eq(mf_recordio_read_key(r, 4, &x), 0);
    cr_assert_eq(mf_record_parse(&h, x.data, x.size), 0);
    size_t n = make_payload(want, 3);
    cr_assert(h.image_size == n && !memcmp(h.image, want, n));
    cr_assert_lt(mf_recordio_read_key(r, 99, &x), 0);
    mf_recordio_close(r);

    /* An independent reader written from the format (Python) sees the same. */
    const char *src = getenv("MF_SOURCE_DIR");
    if (src && access("/usr/bin/python3", X_OK) == 0) {
        char cmd[1024], line[256], all[2048] = "";
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 %s/scripts/make_source_fixtures.py --dump-rec %s", src, rec);
        FILE *p = popen(cmd, "r");
        cr_assert_not_null(p);
        while (fgets(line, sizeof line, p))
            strncat(all, line, sizeof all - strlen(all) - 1);
        cr_assert_eq(pclose(p), 0, "python reader failed: %s", all);
        cr_assert_str_eq(
            all,
            "0 2 7,10 0\n1 0 0 100\n2 0 0 137\n3 0 1 174\n4 0 1 211\n5 0 1 248\n6 0 4 285\n"
            "7 2 1,3 0\n8 2 3,6 0\n9 2 6,7 0\n");
    }
    unlink(rec);
    unlink(idx);
}

Test(recordio, python_written_fixture_reads)
{
    const char *fx = getenv("MF_FIXTURES");
    if (!fx)
        cr_skip_test("MF_FIXTURES not set");
    char path[1024];
    snprintf(path, sizeof path, "%s/source/train.rec", fx);
    mf_recordio_reader *r;
    cr_assert_eq(mf_recordio_open(&r, path, 0), 0, "%s", mf_last_error());
    mf_record x;
    mf_record_header h;
    int images = 0, rc;
    while ((rc = mf_recordio_next(r, &x, 1)) > 0) {
        cr_assert_eq(mf_record_parse(&h, x.data, x.size), 0);
        if (h.image_size) {
            cr_assert(h.image[0] == 0xFF && h.image[1] == 0xD8, "key %lld is not a JPEG",
                      (long long)x.key);
            cr_assert_eq(mf_record_class(&h), (x.key - 1) / 2);
            images++;
        }
    }
    cr_assert_eq(rc, 0, "%s", mf_last_error());
    cr_assert_eq(images, 8);
    mf_recordio_close(r);
}

Test(recordio, damage_stops_the_reader_and_limits_skip)
{
    char rec[128], idx[128];
    tmpname(rec, sizeof rec, "_d.rec");
    tmpname(idx, sizeof idx, "_d.idx");
    write_sample(rec, idx);
    mf_recordio_reader *r;
    /* a 150-byte limit: the larger image records (24-byte header + 137.. bytes) are skipped */
    cr_assert_eq(mf_recordio_open(&r, rec, 150), 0);
    mf_record x;
    int ok = 0, big = 0, rc;
    while ((rc = mf_recordio_next(r, &x, 1)) != 0) {
        if (rc == MF_ERR_LIMIT)
            big++;
        else {
            cr_assert_eq(rc, 1, "%s", mf_last_error());
            ok++;
        }
    }
    cr_assert_eq(ok + big, 10);
    cr_assert_gt(big, 0);
    mf_recordio_close(r);
    /* truncate in the middle of the file */
    FILE *f = fopen(rec, "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    cr_assert_eq(ftruncate(fileno(f), size / 2), 0);
    fclose(f);
    cr_assert_eq(mf_recordio_open(&r, rec, 0), 0);
    int n = 0;
    while ((rc = mf_recordio_next(r, &x, 1)) > 0)
        n++;
    cr_assert_eq(rc, MF_ERR_FORMAT);
    cr_assert(strstr(mf_last_error(), "truncated record"), "%s", mf_last_error());
    cr_assert(n > 0 && n < 10);
    cr_assert_eq(mf_recordio_next(r, &x, 1), MF_ERR_FORMAT); /* stays stopped */
    mf_recordio_close(r);
    unlink(rec);
    unlink(idx);
}

Test(recordio, writer_refuses_unsorted_labels)
{
    char rec[128], idx[128];
    tmpname(rec, sizeof rec, "_u.rec");
    tmpname(idx, sizeof idx, "_u.idx");
    mf_recordio_writer *w;
    cr_assert_eq(mf_recordio_writer_open(&w, rec, idx, 0), 0);
    cr_assert_eq(mf_recordio_writer_add(w, 2, "abcd", 4), 0);
    cr_assert_eq(mf_recordio_writer_add(w, 1, "abcd", 4), MF_ERR_ARG);
    mf_recordio_writer_discard(w);
    cr_assert_neq(access(rec, F_OK), 0);
    char tmp[160];
    snprintf(tmp, sizeof tmp, "%s.tmp", rec);
    cr_assert_neq(access(tmp, F_OK), 0);
}
