/* progress.c - terminal progress bar (see include/mf/progress.h). */
#include "mf/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct mf_progress {
    char what[64];
    char unit[16];
    char note[64];
    uint64_t done, total;
    double start, last_draw;
    int shown;  /* drawn as a bar (a terminal, or forced) */
    int logged; /* written as plain lines every log_every seconds (batch logs) */
};

static double log_every; /* mf_progress_set_log_interval */

void mf_progress_set_log_interval(double seconds) { log_every = seconds > 0 ? seconds : 0; }

double mf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void format_duration(char *buf, size_t n, double s)
{
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    unsigned t = (unsigned)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%u:%02u:%02u", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%02u:%02u", t / 60, t % 60);
}

static void draw(mf_progress *p, int final)
{
    double elapsed = mf_now() - p->start;
    double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    char line[256], eta[32], bar[32] = "";
    int n;
    if (p->total) {
        double frac = (double)p->done / (double)p->total;
        if (frac > 1)
            frac = 1;
        int fill = (int)(frac * 20);
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[20] = '\0';
        format_duration(eta, sizeof eta,
                        final ? elapsed
                              : (rate > 0 ? (double)(p->total - p->done) / rate : -1));
        n = snprintf(line, sizeof line, "\r%s [%s] %llu/%llu %.1f %s/s %s %s %s", p->what, bar,
                     (unsigned long long)p->done, (unsigned long long)p->total, rate, p->unit,
                     final ? "in" : "eta", eta, p->note);
    } else {
        format_duration(eta, sizeof eta, elapsed);
        n = snprintf(line, sizeof line, "\r%s %llu %.1f %s/s %s %s", p->what,
                     (unsigned long long)p->done, rate, p->unit, eta, p->note);
    }
    if (n > 0 && p->logged) { /* a line per report: no carriage return, no escape codes */
        fprintf(stderr, "%s\n", line + 1);
        fflush(stderr);
    } else if (n > 0) {
        fputs(line, stderr);
        fputs("\033[K", stderr); /* clear the rest of a longer previous line */
        if (final)
            fputc('\n', stderr);
        fflush(stderr);
    }
    p->last_draw = mf_now();
}

mf_progress *mf_progress_new(const char *what, uint64_t total, const char *unit, int force)
{
    mf_progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->what, sizeof p->what, "%s", what ? what : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "it");
    p->total = total;
    p->start = mf_now();
    p->shown = force || isatty(STDERR_FILENO);
    p->logged = !p->shown && log_every > 0;
    p->last_draw = p->start;
    return p;
}

void mf_progress_add(mf_progress *p, uint64_t n)
{
    if (!p)
        return;
    p->done += n;
    if ((p->shown && mf_now() - p->last_draw >= 0.2) ||
        (p->logged && mf_now() - p->last_draw >= log_every))
        draw(p, 0);
}

void mf_progress_set_total(mf_progress *p, uint64_t total)
{
    if (p)
        p->total = total;
}

void mf_progress_set_note(mf_progress *p, const char *note)
{
    if (p)
        snprintf(p->note, sizeof p->note, "%s", note ? note : "");
}

void mf_progress_free(mf_progress *p)
{
    if (!p)
        return;
    if (p->shown || p->logged)
        draw(p, 1);
    free(p);
}
