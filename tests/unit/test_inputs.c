/* test_inputs.c - the strict input rules (issue 12 item 5, issue 16 item 1): one label
 * rule everywhere, duplicate .idx keys, gzip damage, FIFOs, names that are not UTF-8,
 * list lines with spaces, --root, NUL-separated and im2rec lists. Each case builds its
 * inputs in a temporary folder from the source fixtures. */
#include "mf/recordio.h"
#include "mf/source.h"
#include "mf/status.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static void setup(void)
{
    const char *fx = getenv("MF_FIXTURES");
    if (!fx)
        cr_skip_test("MF_FIXTURES not set");
    snprintf(dir, sizeof dir, "/tmp/mf_test_inputs_%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && cp -r '%s/source/.' '%s/'", dir,
             dir, fx, dir);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(chdir(dir), 0);
    alarm(60); /* a blocking open would hang: fail instead */
}

static void teardown(void)
{
    char cmd[300];
    if (!dir[0])
        return;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(chdir("/"), 0);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(inputs, .init = setup, .fini = teardown);

typedef struct got {
    char id[512], error[512], warning[160];
    int64_t label;
    size_t size;
    int has_lm;
} got;

static int run_p(const char *const *in, int n, mf_source_params p, got *out, int max)
{
    mf_source *s;
    cr_assert_eq(mf_source_new(&s, &p), 0);
    for (int i = 0; i < n; i++)
        cr_assert_eq(mf_source_add(s, in[i] + (in[i][0] == '@'),
                                   in[i][0] == '@' ? MF_INPUT_LIST : MF_INPUT_AUTO),
                     0);
    mf_sample x;
    int k = 0, rc;
    while ((rc = mf_source_next(s, &x)) > 0) {
        cr_assert_lt(k, max);
        got *g = &out[k++];
        snprintf(g->id, sizeof g->id, "%s", x.id);
        snprintf(g->error, sizeof g->error, "%s", x.error ? x.error : "");
        snprintf(g->warning, sizeof g->warning, "%s", x.warning ? x.warning : "");
        g->label = x.label;
        g->size = x.size;
        g->has_lm = x.has_landmarks;
    }
    cr_assert_eq(rc, 0, "%s", mf_last_error());
    mf_source_free(s);
    return k;
}

static int run(const char *const *in, int n, got *out, int max)
{
    return run_p(in, n, mf_source_default_params(), out, max);
}

static void write_text(const char *path, const char *text, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(text, 1, n, f), n);
    fclose(f);
}

static void sh(const char *cmd) { cr_assert_eq(system(cmd), 0, "%s", cmd); }

/* ---- one label rule ---------------------------------------------------------------- */

Test(inputs, labels_follow_one_rule)
{
    int64_t v;
    static const char *good[] = {"0", "7", " 12\n", "9007199254740991", "007"};
    static const int64_t want[] = {0, 7, 12, 9007199254740991LL, 7};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        cr_assert_eq(mf_label_parse(good[i], strlen(good[i]), 0, &v), 0, "%s", good[i]);
        cr_assert_eq(v, want[i]);
    }
    static const char *bad[] = {
        "1e99", "1.5",  "-7",  "12abc", "9007199254740992", "99999999999999999999", "", " ",
        "+3",   "0x10", "1 2", "-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_lt(mf_label_parse(bad[i], strlen(bad[i]), 0, &v), 0, "'%s' accepted", bad[i]);
        cr_assert(strstr(mf_last_error(), "bad label"), "%s", mf_last_error());
    }
    cr_assert_eq(mf_label_parse("-1", 2, 1, &v), 0);
    cr_assert_eq(v, -1);
    cr_assert_lt(mf_label_parse("-2", 2, 1, &v), 0);
    cr_assert(strstr(mf_last_error(), "'-2'"), "the bad text is quoted: %s", mf_last_error());
    cr_assert_eq(mf_label_from_float(3.0, 0, &v), 0);
    cr_assert_eq(v, 3);
    cr_assert_lt(mf_label_from_float(1.5, 0, &v), 0);
    cr_assert_lt(mf_label_from_float(-7, 1, &v), 0);
    cr_assert_lt(mf_label_from_float(1e99, 1, &v), 0);
    cr_assert_lt(mf_label_from_float(9007199254740992.0, 1, &v), 0);
    cr_assert_lt(mf_label_from_float(0.0 / 0.0, 1, &v), 0);
    cr_assert_eq(mf_label_from_float(-1, 1, &v), 0);
}

Test(inputs, wds_cls_labels_are_strict)
{
    /* one shard, five samples: good, 1e99, 1.5, -7, 12abc */
    sh("/usr/bin/python3 -c \"\n"
       "import tarfile, io\n"
       "img = open('tree/id00/0.jpg', 'rb').read()\n"
       "t = tarfile.open('w.tar', 'w')\n"
       "for k, c in enumerate(['3\\n', '1e99', '1.5', '-7', '12abc']):\n"
       "    for name, data in (('s%d.cls' % k, c.encode()), ('s%d.jpg' % k, img)):\n"
       "        i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))\n"
       "t.close()\"");
    got g[8];
    const char *in[] = {"w.tar"};
    cr_assert_eq(run(in, 1, g, 8), 5);
    cr_assert_str_eq(g[0].error, "");
    cr_assert_eq(g[0].label, 3);
    static const char *text[] = {"", "'1e99'", "'1.5'", "'-7'", "'12abc'"};
    for (int k = 1; k < 5; k++) {
        char member[32];
        snprintf(member, sizeof member, "'s%d.cls'", k);
        cr_assert(strstr(g[k].error, member) && strstr(g[k].error, text[k]), "%s: %s", g[k].id,
                  g[k].error);
    }
}

/* ---- RecordIO: float labels, duplicate .idx keys ---------------------------------- */

Test(inputs, recordio_labels_must_be_integral)
{
    sh("/usr/bin/python3 -c \"\n"
       "import struct\n"
       "img = open('tree/id00/0.jpg', 'rb').read()\n"
       "M = struct.pack('<I', 0xced7230a)\n"
       "f = open('l.rec', 'wb'); idx = open('l.idx', 'w')\n"
       "for k, lab in enumerate([2.0, 1.5, -7.0, 1e30, float('nan')]):\n"
       "    p = struct.pack('<IfQQ', 0, lab, k, 0) + img\n"
       "    idx.write('%d\\t%d\\n' % (k + 1, f.tell()))\n"
       "    assert M not in p[::4] or True\n"
       "    f.write(M + struct.pack('<I', len(p)) + p + b'\\0' * (-len(p) % 4))\n"
       "\"");
    got g[8];
    const char *in[] = {"l.rec"};
    cr_assert_eq(run(in, 1, g, 8), 5);
    cr_assert_str_eq(g[0].error, "", "%s", g[0].error);
    cr_assert_eq(g[0].label, 2);
    for (int k = 1; k < 5; k++)
        cr_assert(strstr(g[k].error, "bad label"), "%s: %s", g[k].id, g[k].error);
    cr_assert(strstr(g[1].error, "1.5"), "%s", g[1].error);
}

Test(inputs, duplicate_idx_key_is_a_failed_row)
{
    /* train.idx with key 3 given to the record of key 4 as well */
    sh("/usr/bin/python3 -c \"\n"
       "lines = open('train.idx').read().split('\\n')\n"
       "out = [l.replace('4\\t', '3\\t', 1) if l.startswith('4\\t') else l for l in lines]\n"
       "open('train.idx', 'w').write('\\n'.join(out))\"");
    got g[16];
    const char *in[] = {"train.rec"};
    int n = run(in, 1, g, 16);
    cr_assert_eq(n, 8, "every record is a row, none dropped");
    int dup = 0;
    for (int i = 0; i < n; i++)
        if (g[i].error[0]) {
            dup++;
            cr_assert(strstr(g[i].error, "duplicate key 3"), "%s", g[i].error);
            cr_assert(strstr(g[i].id, "train.rec//@"), "%s", g[i].id);
        }
    cr_assert_eq(dup, 1);
}

Test(inputs, idx_is_parsed_strictly)
{
    static const char *bad[] = {"1e3\t0\n",   "-1\t0\n", "1\t-8\n",
                                "1\t12abc\n", "1 0\n",   "1\t0\n1\t0\n2\t0\n"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text("train.idx", bad[i], strlen(bad[i]));
        mf_recordio_reader *r;
        cr_assert_lt(mf_recordio_open(&r, "train.rec", 0), 0, "'%s' accepted", bad[i]);
        cr_assert(strstr(mf_last_error(), "train.idx' line"), "%s", mf_last_error());
    }
}

/* ---- compressed archives: damage is a failed row naming the archive ----------------- */

Test(inputs, gzip_crc_and_length_errors_are_reported)
{
    sh("/usr/bin/python3 -c \"\n"
       "d = bytearray(open('faces.tar.gz', 'rb').read())\n"
       "c = bytearray(d); c[-6] ^= 0xff; open('crc.tar.gz', 'wb').write(c)\n"
       "c = bytearray(d); c[-2] ^= 0x01; open('len.tar.gz', 'wb').write(c)\n"
       "open('cut.tar.gz', 'wb').write(d[:-3])\n"
       "open('junk.tar.gz', 'wb').write(d + b'junk')\n"
       "open('two.tar.gz', 'wb').write(d + b'\\0' * 100)\"");
    static const char *files[] = {"crc.tar.gz", "len.tar.gz", "cut.tar.gz", "junk.tar.gz"};
    static const char *why[] = {"CRC", "length", "truncated", "trailing garbage"};
    got g[16];
    for (int k = 0; k < 4; k++) {
        const char *in[] = {files[k]};
        int n = run(in, 1, g, 16);
        cr_assert_eq(n, 9, "%s: 8 samples, then the damage", files[k]);
        cr_assert_str_eq(g[8].id, files[k]);
        cr_assert(strstr(g[8].error, why[k]), "%s: %s", files[k], g[8].error);
    }
    /* xz and zstd: libarchive's decoders check their own checksums */
    sh("/usr/bin/python3 -c \"\n"
       "for ext in ('xz', 'zst'):\n"
       "    d = bytearray(open('faces.tar.' + ext, 'rb').read()); d[-6] ^= 0x5a\n"
       "    open('bad.tar.' + ext, 'wb').write(d)\"");
    static const char *other[] = {"bad.tar.xz", "bad.tar.zst"};
    for (int k = 0; k < 2; k++) {
        const char *in[] = {other[k]};
        int n = run(in, 1, g, 16);
        cr_assert_geq(n, 1);
        cr_assert_str_eq(g[n - 1].id, other[k]);
        cr_assert(strstr(g[n - 1].error, "corrupt archive"), "%s: %s", other[k],
                  g[n - 1].error);
    }
    const char *in[] = {"two.tar.gz", "faces.tar.gz"}; /* zero padding is fine */
    cr_assert_eq(run(in, 2, g, 16), 16);
    for (int i = 0; i < 16; i++)
        cr_assert_str_eq(g[i].error, "", "%s: %s", g[i].id, g[i].error);
}

/* ---- not regular files -------------------------------------------------------------- */

Test(inputs, fifos_are_refused_not_waited_on)
{
    sh("mkdir -p d && cp tree/id00/0.jpg d/a.jpg && mkfifo d/b.jpg && mkfifo x.tar && "
       "mkfifo y.rec && mkfifo z.jpg && printf 'd/b.jpg\\nd/a.jpg\\n' > l.list");
    got g[16];
    const char *in[] = {"d", "x.tar", "y.rec", "z.jpg", "@l.list", "/dev/null"};
    int n = run(in, 6, g, 16);
    cr_assert_eq(n, 8); /* d: a.jpg b.jpg; x.tar; y.rec; z.jpg; the list's 2; /dev/null */
    int ok = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(g[i].id, "d/a.jpg")) {
            cr_assert_str_eq(g[i].error, "");
            ok++;
            continue;
        }
        cr_assert(strstr(g[i].error, "not a regular file"), "%s: %s", g[i].id, g[i].error);
    }
    cr_assert_eq(ok, 2);
}

/* ---- names that are not UTF-8 ------------------------------------------------------- */

Test(inputs, invalid_utf8_names_are_escaped_reversibly)
{
    sh("mkdir -p u && cp tree/id00/0.jpg \"u/caf$(printf '\\351').jpg\" && "
       "cp tree/id00/1.jpg 'u/back\\slash.jpg' && cp tree/id01/0.jpg 'u/ok-é.jpg'");
    got g[8];
    const char *in[] = {"u"};
    cr_assert_eq(run(in, 1, g, 8), 3);
    cr_assert_str_eq(g[0].id, "u/back\\\\slash.jpg");
    cr_assert_str_eq(g[0].warning, "", "a backslash alone is not worth a warning");
    cr_assert_str_eq(g[1].id, "u/caf\\xe9.jpg");
    cr_assert(strstr(g[1].warning, "not valid UTF-8"), "%s", g[1].warning);
    cr_assert_str_eq(g[2].id, "u/ok-é.jpg");
    for (int i = 0; i < 3; i++) {
        cr_assert_str_eq(g[i].error, "", "%s: %s", g[i].id, g[i].error);
        cr_assert(mf_utf8_valid(g[i].id));
        char *raw = mf_id_unescape(g[i].id);
        cr_assert_eq(access(raw, R_OK), 0, "unescaped id '%s' does not open", raw);
        free(raw);
    }
    /* round trip over every byte value, and the overlong/surrogate forms */
    char all[256];
    for (int i = 1; i < 256; i++)
        all[i - 1] = (char)i;
    all[255] = '\0';
    const char *odd[] = {all,      "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                         "a\\xff", "\\",       "\xe2\x82"};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        int invalid;
        char *id = mf_id_escape(odd[i], &invalid), *back = mf_id_unescape(id);
        cr_assert(mf_utf8_valid(id), "%s", id);
        cr_assert_str_eq(back, odd[i]);
        free(id);
        free(back);
    }
}

/* ---- list files --------------------------------------------------------------------- */

Test(inputs, list_lines_split_only_where_fields_parse)
{
    sh("mkdir -p 'a b' && cp tree/id00/0.jpg 'a b/c d.jpg' && cp tree/id00/1.jpg 'a b/x "
       "3.jpg'");
    const char text[] = "a b/c d.jpg\n"                          /* path only */
                        "a b/c d.jpg 5\n"                        /* label */
                        "a b/c d.jpg 1 2 3 4 5 6 7 8 9 10\n"     /* landmarks */
                        "a b/c d.jpg 4 1 2 3 4 5 6 7 8 9 10\r\n" /* both, CRLF */
                        "a b/x 3.jpg\t6\n"                       /* tab */
                        "a b/c d.jpg 1.5\n"                      /* bad label */
                        "a b/c d.jpg -7\n"                       /* bad label */
                        "a b/c d.jpg 1e99\n"                     /* bad label */
                        "a b/c 3 7\n"                            /* miscounted */
                        "a b/c d.jpg\t12abc\n"                   /* bad after tab */
                        "  # comment\n\n";
    write_text("s.list", text, sizeof text - 1);
    got g[16];
    const char *in[] = {"@s.list"};
    int n = run(in, 1, g, 16);
    cr_assert_eq(n, 10);
    for (int i = 0; i < 5; i++) {
        cr_assert_str_eq(g[i].error, "", "line %d: %s", i + 1, g[i].error);
        cr_assert_str_eq(g[i].id, i == 4 ? "a b/x 3.jpg" : "a b/c d.jpg");
    }
    cr_assert(g[0].label == -1 && !g[0].has_lm);
    cr_assert(g[1].label == 5 && !g[1].has_lm);
    cr_assert(g[2].label == -1 && g[2].has_lm);
    cr_assert(g[3].label == 4 && g[3].has_lm);
    cr_assert_eq(g[4].label, 6);
    for (int i = 5; i < 10; i++) {
        char want[64];
        snprintf(want, sizeof want, "bad line %d of 's.list'", i + 1);
        cr_assert(strstr(g[i].error, want), "line %d: %s", i + 1, g[i].error);
    }
}

Test(inputs, root_resolves_list_entries)
{
    /* the official inference/ layout: img.list inside toy_imgs/ names toy_imgs/0.jpg */
    sh("mkdir -p toy_imgs && cp tree/id00/0.jpg toy_imgs/0.jpg && "
       "echo toy_imgs/0.jpg > toy_imgs/img.list && mkdir -p r/toy_imgs && "
       "cp tree/id00/1.jpg r/toy_imgs/0.jpg");
    got g[4];
    const char *in[] = {"@toy_imgs/img.list"};
    cr_assert_eq(run(in, 1, g, 4), 1); /* default: against the list's folder */
    cr_assert_str_eq(g[0].id, "toy_imgs/toy_imgs/0.jpg");
    cr_assert(strstr(g[0].error, "No such file") && strstr(g[0].error, "line 1 of"), "%s",
              g[0].error);
    mf_source_params p = mf_source_default_params();
    p.root = ".";
    cr_assert_eq(run_p(in, 1, p, g, 4), 1); /* gen_feat.py: as written */
    cr_assert_str_eq(g[0].id, "toy_imgs/0.jpg");
    cr_assert_str_eq(g[0].error, "");
    p.root = "r";
    cr_assert_eq(run_p(in, 1, p, g, 4), 1);
    cr_assert_str_eq(g[0].id, "r/toy_imgs/0.jpg");
    cr_assert_str_eq(g[0].error, "");
}

Test(inputs, nul_separated_lists)
{
    sh("mkdir -p 'n' && cp tree/id00/0.jpg 'n/with space 1.jpg' && "
       "/usr/bin/python3 -c \"import shutil; shutil.copy('tree/id00/1.jpg', "
       "'n/new\\nline.jpg')\" && "
       "find n -name '*.jpg' -print0 | sort -z > z.list");
    got g[8];
    const char *in[] = {"@z.list"};
    int n = run(in, 1, g, 8); /* read as a newline list: an error naming the line */
    cr_assert_eq(n, 2);       /* "n/new", then "line.jpg\0n/with space 1.jpg\0" */
    cr_assert(strstr(g[1].error, "NUL byte") && strstr(g[1].error, "line 2 of 'z.list'"), "%s",
              g[1].error);
    mf_source_params p = mf_source_default_params();
    p.null_lists = 1;
    cr_assert_eq(run_p(in, 1, p, g, 8), 2);
    cr_assert_str_eq(g[0].id, "n/new\nline.jpg");
    cr_assert_str_eq(g[1].id, "n/with space 1.jpg");
    for (int i = 0; i < 2; i++)
        cr_assert_str_eq(g[i].error, "", "%s: %s", g[i].id, g[i].error);
}

Test(inputs, im2rec_lst_lines)
{
    const char lst[] = "0\t3.000000\ttree/id00/0.jpg\n"
                       "1\t4.000000\t1.000000\ttree/id00/1.jpg\n" /* two label columns */
                       "2\t1.5\ttree/id01/0.jpg\n"                /* not integral */
                       "x\t1\ttree/id01/1.jpg\n"                  /* bad index */
                       "3\ttree/id01/1.jpg\n";                    /* no label */
    write_text("train.lst", lst, sizeof lst - 1);
    write_text("noext", lst, sizeof lst - 1); /* detected from the first line */
    got g[8];
    for (int k = 0; k < 2; k++) {
        const char *in[] = {k ? "@noext" : "@train.lst"};
        cr_assert_eq(run(in, 1, g, 8), 5);
        cr_assert_str_eq(g[0].id, "tree/id00/0.jpg");
        cr_assert_str_eq(g[0].error, "");
        cr_assert_eq(g[0].label, 3);
        cr_assert_eq(g[1].label, 4);
        cr_assert_str_eq(g[1].error, "");
        for (int i = 2; i < 5; i++)
            cr_assert(strstr(g[i].error, "bad line"), "%s", g[i].error);
    }
}

Test(inputs, long_lines_are_reported_not_buffered)
{
    size_t n = 200000;
    char *text = malloc(n + 32);
    memset(text, 'a', n);
    memcpy(text + n, "\ntree/id00/0.jpg 1\n", 19);
    write_text("long.list", text, n + 19);
    free(text);
    got g[4];
    const char *in[] = {"@long.list"};
    cr_assert_eq(run(in, 1, g, 4), 2);
    cr_assert(strstr(g[0].error, "longer than"), "%s", g[0].error);
    cr_assert_str_eq(g[1].error, "");
    cr_assert_eq(g[1].label, 1);
}

/* Found by fuzz_archive: a group whose second .cls member fails to read (the gzip CRC
 * error surfaces there) leaked the first .cls error. Leak-checked under MF_SANITIZE=1
 * (LeakSanitizer); here the samples and the damage row are checked. */
Test(inputs, second_bad_cls_in_a_damaged_gzip)
{
    got g[16];
    const char *in[] = {"broken/cls_twice_crc.tar.gz"};
    int n = run(in, 1, g, 16);
    cr_assert_geq(n, 2);
    cr_assert_str_eq(g[0].error, "", "%s", g[0].error);
    for (int i = 1; i < n; i++)
        cr_assert_neq(g[i].error[0], 0, "%s should fail", g[i].id);
}
