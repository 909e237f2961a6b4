/* progress.h - a one-line progress bar on stderr with rate and ETA.
 *
 *     mf_progress *p = mf_progress_new("embedding", total, "img", force);
 *     for (...) { ...; mf_progress_add(p, n); }
 *     mf_progress_set_note(p, "3 failed");
 *     mf_progress_free(p);                 // prints the final line (if shown)
 *
 * Shown only when stderr is a terminal, unless `force` is set (--progress). Redraws at
 * most 5 times a second, so calling mf_progress_add per item is cheap. `total` may be
 * 0 when unknown (no ETA then). Call from one thread. */
#ifndef MF_PROGRESS_H
#define MF_PROGRESS_H

#include <stdint.h>

typedef struct mf_progress mf_progress;

mf_progress *mf_progress_new(const char *what, uint64_t total, const char *unit, int force);
void mf_progress_add(mf_progress *p, uint64_t n);
void mf_progress_set_total(mf_progress *p, uint64_t total);
/* Short free text shown after the rate, e.g. "12 failed". Copied. */
void mf_progress_set_note(mf_progress *p, const char *note);
/* Finish the line; NULL is a no-op. */
void mf_progress_free(mf_progress *p);

/* Where stderr is not a terminal (a batch job's log), write the progress as a plain line
 * every `seconds` (and a last one at the end) instead of no bar at all; 0 = off (the
 * default). Process-wide; set before creating progress bars. */
void mf_progress_set_log_interval(double seconds);

/* Seconds since an arbitrary start (monotonic clock). */
double mf_now(void);

#endif
