/* Durable outputs: runs that race for one resumable output. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mf/durable.h"
#include "temp_dir.h"

static char path[512];

static void setup(void)
{
    temp_dir_make("durable");
    snprintf(path, sizeof path, "%s/out.txt", dir);
}

TestSuite(durable, .init = setup, .fini = temp_dir_remove);

/* One run of a resumable job: open (waiting a random few microseconds first, so that
 * runs meet at every step), write its own name, publish. Exit 0 published, 1 refused. */
static void run_writer(int who, unsigned seed)
{
    srand(seed);
    usleep((useconds_t)(rand() % 40));
    mf_output *o;
    if (mf_output_open(&o, path, MF_OUTPUT_RESUMABLE | MF_OUTPUT_OVERWRITE) < 0)
        _exit(1);
    if (mf_output_resumed(o) && mf_output_restart(o) < 0)
        _exit(1);
    FILE *f = mf_output_stream(o);
    usleep((useconds_t)(rand() % 400));
    if (!f || fprintf(f, "writer %d\n", who) < 0)
        _exit(1);
    _exit(mf_output_commit(o) < 0 ? 1 : 0);
}

/* Two runs of the same job on one output at once (a resubmitted array task, a user's
 * second terminal): at least one publishes, and what is published is a whole output of
 * one that says it published. A run that loses must never remove the winner's
 * partial, nor write into a file the winner has already published. */
Test(durable, racing_resumable_runs_publish_a_whole_output)
{
    for (int round = 0; round < 3000; round++) {
        unlink(path);
        pid_t pid[2];
        for (int w = 0; w < 2; w++) {
            pid[w] = fork();
            cr_assert_geq(pid[w], 0);
            if (pid[w] == 0)
                run_writer(w, (unsigned)(round * 2 + w + 1));
        }
        int ok[2];
        for (int w = 0; w < 2; w++) {
            int status;
            cr_assert_eq(waitpid(pid[w], &status, 0), pid[w]);
            cr_assert(WIFEXITED(status), "round %d: writer %d died", round, w);
            ok[w] = WEXITSTATUS(status) == 0;
        }
        cr_assert(ok[0] || ok[1], "round %d: both runs refused", round);
        char text[64] = "";
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f, "round %d: writer(s) %s%s said published, but '%s' is missing",
                           round, ok[0] ? "0 " : "", ok[1] ? "1" : "", path);
        cr_assert_not_null(fgets(text, sizeof text, f), "round %d: empty output", round);
        fclose(f);
        int who = -1;
        cr_assert_eq(sscanf(text, "writer %d", &who), 1, "round %d: output '%s'", round, text);
        cr_assert(who >= 0 && who < 2 && ok[who],
                  "round %d: the output is writer %d's, which did not publish", round, who);
        char partial[600];
        snprintf(partial, sizeof partial, "%s.partial", path);
        cr_assert_neq(access(partial, F_OK), 0, "round %d: a partial was left behind", round);
    }
}

/* Files in dir whose name contains `part`. */
static int count_named(const char *part)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep -c -- '%s'", dir, part);
    FILE *p = popen(cmd, "r");
    int n = -1;
    cr_assert_not_null(p);
    cr_assert_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* A child writes and seals `path`, says so on `ready`, then waits for a byte on `go` and
 * publishes (exit 0) - or is killed before. */
static pid_t start_sealer(int ready[2], int go[2])
{
    cr_assert_eq(pipe(ready), 0);
    cr_assert_eq(pipe(go), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        close(go[1]); /* so that a parent that gave up ends the wait */
        mf_output *o;
        char byte = 0;
        if (mf_output_open(&o, path, MF_OUTPUT_OVERWRITE) < 0 ||
            fputs("sealed\n", mf_output_stream(o)) < 0 || mf_output_seal(o) < 0)
            _exit(1);
        if (write(ready[1], "r", 1) != 1 || read(go[0], &byte, 1) != 1)
            _exit(1);
        _exit(mf_output_commit(o) < 0 ? 1 : 0);
    }
    close(ready[1]);
    close(go[0]);
    char byte;
    cr_assert_eq(read(ready[0], &byte, 1), 1, "the sealing child failed");
    return pid;
}

/* A sealed temporary has closed its descriptor (WebDataset shards: one per shard): a
 * second run opening the same output meanwhile must not take it for a dead run's. */
Test(durable, a_sealed_temporary_of_a_live_run_is_kept)
{
    int ready[2], go[2];
    pid_t pid = start_sealer(ready, go);
    mf_output *o;
    cr_assert_eq(mf_output_open(&o, path, MF_OUTPUT_OVERWRITE), 0);
    mf_output_abort(o);
    cr_assert_eq(count_named("out.txt.partial-"), 1,
                 "the live run's sealed temporary was taken for a dead run's and removed");
    cr_assert_eq(write(go[1], "g", 1), 1);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the live run could not publish: its sealed temporary was removed");
    cr_assert_eq(access(path, F_OK), 0);
    cr_assert_eq(count_named(".partial"), 0, "a temporary or the marker was left");
}

/* ... while a dead run's sealed temporary and its marker go at the next open. */
Test(durable, a_sealed_temporary_of_a_dead_run_is_removed)
{
    int ready[2], go[2];
    pid_t pid = start_sealer(ready, go);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert_eq(count_named(".partial-"), 2, "expected the sealed temporary and the marker");
    mf_output *o;
    cr_assert_eq(mf_output_open(&o, path, MF_OUTPUT_OVERWRITE), 0);
    cr_assert_eq(count_named(".partial-"), 1, "only this run's temporary should be left");
    mf_output_abort(o);
    cr_assert_eq(count_named(".partial"), 0);
}
