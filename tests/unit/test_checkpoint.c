/* test_checkpoint.c - the .pth reader against files torch.save wrote.
 *
 * Fixtures and tests/fixtures/checkpoint/expected.txt come from
 * scripts/make_checkpoint_fixtures.py (see its header for the expected.txt format):
 * every value is compared bit for bit. When /usr/bin/python3 has torch, fresh random
 * checkpoints are also generated and checked. Mutated files (truncated at every offset,
 * bytes flipped) must load or fail cleanly: run this under ASan/UBSan to catch crashes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mf/checkpoint.h"
#include "mf/status.h"

#define LINE_MAX_CHARS (1 << 20)

static const char *fixture_dir(void)
{
    static char dir[4096];
    const char *f = getenv("MF_FIXTURES");
    snprintf(dir, sizeof dir, "%s/checkpoint", f ? f : "tests/fixtures");
    return dir;
}

static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    cr_assert(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* "T <name> <is_int> <ndim> <dims...> <numel> <sum> <hex...>" against the tensor. */
static void check_tensor(const mf_checkpoint *ck, size_t idx, char *line, const char *file)
{
    char *save, *tok = strtok_r(line, " ", &save);
    cr_assert_str_eq(tok, "T");
    const char *name = strtok_r(NULL, " ", &save);
    cr_assert(idx < ck->count, "%s: only %zu tensors, expected '%s'", file, ck->count, name);
    const mf_tensor *t = &ck->tensors[idx];
    cr_assert_str_eq(t->name, name, "%s: tensor %zu", file, idx);
    cr_assert_eq(mf_checkpoint_find(ck, name), t);
    cr_expect_eq(t->is_int, atoi(strtok_r(NULL, " ", &save)), "%s: %s is_int", file, name);
    int ndim = atoi(strtok_r(NULL, " ", &save));
    cr_assert_eq(t->ndim, ndim, "%s: %s ndim", file, name);
    for (int d = 0; d < ndim; d++)
        cr_assert_eq(t->shape[d], atoll(strtok_r(NULL, " ", &save)), "%s: %s dim %d", file,
                     name, d);
    size_t numel = (size_t)atoll(strtok_r(NULL, " ", &save));
    cr_assert_eq(t->numel, numel, "%s: %s numel", file, name);
    double want_sum = strtod(strtok_r(NULL, " ", &save), NULL), sum = 0;
    for (size_t i = 0; i < numel; i++) {
        uint32_t want = (uint32_t)strtoul(strtok_r(NULL, " ", &save), NULL, 16), got;
        memcpy(&got, &t->data[i], 4);
        cr_assert_eq(got, want, "%s: %s[%zu] = %08x, torch has %08x", file, name, i, got, want);
        sum += t->data[i];
    }
    cr_expect_eq(sum, want_sum, "%s: %s sum", file, name);
}

/* "F <file> <format> <prefix|-> <arch|-> <count> <dropped>" and its T lines. */
static mf_checkpoint *check_header(const char *dir, char *line, char *file, size_t nfile)
{
    char fmt[16], prefix[64], arch[64];
    size_t count, dropped;
    cr_assert_eq(sscanf(line, "F %255s %15s %63s %63s %zu %zu", file, fmt, prefix, arch, &count,
                        &dropped),
                 6);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    mf_checkpoint *ck;
    cr_assert_eq(mf_checkpoint_load(&ck, path), 0, "%s: %s", path, mf_last_error());
    cr_expect_str_eq(ck->format, fmt, "%s", file);
    cr_expect_str_eq(ck->prefix, strcmp(prefix, "-") ? prefix : "", "%s", file);
    cr_expect_str_eq(ck->arch, strcmp(arch, "-") ? arch : "", "%s", file);
    cr_expect_eq(ck->count, count, "%s: %zu tensors, expected %zu", file, ck->count, count);
    cr_expect_eq(ck->dropped, dropped, "%s: dropped %zu, expected %zu", file, ck->dropped,
                 dropped);
    (void)nfile;
    return ck;
}

/* "E <file> <text>": loading fails with a one-line message naming the file. */
static void check_error(const char *dir, char *line)
{
    char file[256];
    int n = 0;
    cr_assert_eq(sscanf(line, "E %255s %n", file, &n), 1);
    const char *text = line + n;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    mf_checkpoint *ck = NULL;
    int rc = mf_checkpoint_load(&ck, path);
    cr_assert_lt(rc, 0, "%s loaded but must fail", file);
    cr_assert_null(ck);
    const char *msg = mf_last_error();
    cr_expect(strstr(msg, path) == msg, "message does not start with the file: %s", msg);
    cr_expect_not_null(strstr(msg, text), "%s: message '%s' lacks '%s'", file, msg, text);
    cr_expect_null(strchr(msg, '\n'), "multi-line message: %s", msg);
}

/* Check every record of dir/expected.txt; returns how many files loaded. */
static int check_expected(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/expected.txt", dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char *line = malloc(LINE_MAX_CHARS), file[256] = "";
    mf_checkpoint *ck = NULL;
    size_t idx = 0;
    int files = 0;
    while (fgets(line, LINE_MAX_CHARS, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == 'F') {
            if (ck)
                cr_expect_eq(ck->count, idx, "%s: more tensors than expected", file);
            mf_checkpoint_free(ck);
            ck = check_header(dir, line, file, sizeof file);
            idx = 0;
            files++;
        } else if (line[0] == 'T') {
            check_tensor(ck, idx++, line, file);
        } else if (line[0] == 'E') {
            check_error(dir, line);
        }
    }
    mf_checkpoint_free(ck);
    free(line);
    fclose(f);
    return files;
}

Test(checkpoint, fixtures_match_torch) { cr_expect_eq(check_expected(fixture_dir()), 7); }

Test(checkpoint, missing_file_and_garbage)
{
    mf_checkpoint *ck;
    cr_expect_lt(mf_checkpoint_load(&ck, "/nonexistent/x.pth"), 0);
    cr_expect_not_null(strstr(mf_last_error(), "/nonexistent/x.pth"));
    cr_expect_lt(mf_checkpoint_load_mem(&ck, "", 0, "empty"), 0);
    cr_expect_lt(mf_checkpoint_load_mem(&ck, "hello world", 11, "text"), 0);
    cr_expect_not_null(strstr(mf_last_error(), "text: not a PyTorch checkpoint"));
}

/* A legacy checkpoint whose pickle declares no storages while its tail lists keys (found
 * by fuzz_checkpoint: it copied from a NULL storage table, undefined behaviour that UBSan
 * stops at): a one-line error naming the file. */
Test(checkpoint, legacy_without_storages)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/legacy_no_storages.pth", fixture_dir());
    mf_checkpoint *ck = NULL;
    cr_expect_lt(mf_checkpoint_load(&ck, path), 0);
    cr_expect_null(ck);
    cr_expect_not_null(strstr(mf_last_error(), "legacy_no_storages.pth: "), "%s",
                       mf_last_error());
    cr_expect_null(strchr(mf_last_error(), '\n'));
}

/* Load must succeed or fail with a message naming the buffer, never crash. */
static void load_clean(const unsigned char *buf, size_t len)
{
    mf_checkpoint *ck = NULL;
    int rc = mf_checkpoint_load_mem(&ck, buf, len, "mutant");
    if (rc < 0) {
        cr_assert_null(ck);
        cr_assert(!strncmp(mf_last_error(), "mutant: ", 8), "bad message: %s", mf_last_error());
    } else {
        cr_assert_not_null(ck);
        for (size_t i = 0; i < ck->count; i++)
            cr_assert(ck->tensors[i].numel == 0 || ck->tensors[i].data);
        mf_checkpoint_free(ck);
    }
}

static void mutate(const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", fixture_dir(), name);
    size_t len;
    unsigned char *orig = slurp(path, &len);
    /* Every truncation point: into a fresh exact-size copy so ASan sees overreads. */
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *b = malloc(cut ? cut : 1);
        memcpy(b, orig, cut);
        load_clean(b, cut);
        free(b);
    }
    /* Every byte flipped three ways. */
    static const unsigned char flips[] = {0xff, 0x01, 0x80};
    unsigned char *b = malloc(len);
    for (size_t i = 0; i < len; i++)
        for (size_t k = 0; k < sizeof flips; k++) {
            memcpy(b, orig, len);
            b[i] ^= flips[k];
            load_clean(b, len);
        }
    free(b);
    free(orig);
}

Test(checkpoint, mutated_zip_never_crashes, .timeout = 300) { mutate("zip_bare.pth"); }
Test(checkpoint, mutated_legacy_never_crashes, .timeout = 300) { mutate("legacy_dp.pth"); }
Test(checkpoint, mutated_legacy_views_never_crash, .timeout = 300)
{
    mutate("legacy_bare.pth");
}

static int have_torch(void)
{
    return access("/usr/bin/python3", X_OK) == 0 &&
           system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") == 0;
}

Test(checkpoint, fresh_random_checkpoints_match_torch, .timeout = 300)
{
    const char *src = getenv("MF_SOURCE_DIR");
    if (!src || !have_torch())
        cr_skip_test("needs MF_SOURCE_DIR and /usr/bin/python3 with torch");
    char dir[] = "/tmp/mf_ckpt_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char cmd[8192];
    unsigned seed = (unsigned)getpid();
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/scripts/make_checkpoint_fixtures.py "
             "--random %u %s",
             src, seed, dir);
    cr_assert_eq(system(cmd), 0, "generator failed: %s", cmd);
    cr_log_info("random checkpoints with seed %u", seed);
    cr_expect_eq(check_expected(dir), 2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}
