/* log.h - messages from libcore reach the application through one callback.
 *
 *     mf_log_set_handler(my_handler, NULL);   // default: stderr, level >= WARN
 *     mf_log(MF_LOG_WARN, "skipping '%s': %s", path, why);
 *
 * The callback may be called from any thread; the default handler writes one line per
 * call with a single write(2) so lines from threads do not interleave. */
#ifndef MF_LOG_H
#define MF_LOG_H

typedef enum mf_log_level {
    MF_LOG_DEBUG = 0,
    MF_LOG_INFO = 1,
    MF_LOG_WARN = 2,
    MF_LOG_ERROR = 3,
} mf_log_level;

typedef void (*mf_log_fn)(mf_log_level level, const char *msg, void *user);

/* Install a handler (NULL restores the default). Not thread-safe: call at start-up. */
void mf_log_set_handler(mf_log_fn fn, void *user);
/* Messages below `level` are dropped before formatting. */
void mf_log_set_level(mf_log_level level);
/* Prefix used by the default handler, e.g. "mf-embed" -> "mf-embed: warning: ...". */
void mf_log_set_program(const char *name);

void mf_log(mf_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
