/* temp_dir.h - one fresh folder per test for suites that write files: Criterion runs
 * each test in its own process, so .init makes `dir` and .fini removes it.
 *
 *     static void setup(void) { temp_dir_make("store"); }      // dir = /tmp/mf_test_store_...
 *     TestSuite(store, .init = setup, .fini = temp_dir_remove); */
#ifndef MF_TEST_TEMP_DIR_H
#define MF_TEST_TEMP_DIR_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

static char dir[64];

static inline void temp_dir_make(const char *suite)
{
    snprintf(dir, sizeof dir, "/tmp/mf_test_%s_XXXXXX", suite);
    cr_assert_not_null(mkdtemp(dir), "cannot make a folder like %s", dir);
}

static inline void temp_dir_remove(void)
{
    char cmd[sizeof dir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    (void)!system(cmd);
}

#endif
