/* log.c - the log callback and its default stderr handler (see include/mf/log.h). */
#include "mf/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static mf_log_fn handler;
static void *handler_user;
static mf_log_level min_level = MF_LOG_WARN;
static const char *program = "mfkit";

static const char *level_word(mf_log_level level)
{
    switch (level) {
    case MF_LOG_DEBUG: return "debug";
    case MF_LOG_INFO: return NULL; /* informational lines carry no tag */
    case MF_LOG_WARN: return "warning";
    case MF_LOG_ERROR: return "error";
    }
    return NULL;
}

static void default_handler(mf_log_level level, const char *msg, void *user)
{
    char line[2048];
    const char *word = level_word(level);
    int n = word ? snprintf(line, sizeof line, "%s: %s: %s\n", program, word, msg)
                 : snprintf(line, sizeof line, "%s: %s\n", program, msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line)
        n = sizeof line - 1, line[n - 1] = '\n';
    /* One write per line keeps lines from concurrent threads whole. */
    ssize_t r = write(STDERR_FILENO, line, (size_t)n);
    (void)r;
}

void mf_log_set_handler(mf_log_fn fn, void *user)
{
    handler = fn;
    handler_user = user;
}

void mf_log_set_level(mf_log_level level) { min_level = level; }

void mf_log_set_program(const char *name) { program = name ? name : "mfkit"; }

void mf_log(mf_log_level level, const char *fmt, ...)
{
    if (level < min_level)
        return;
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (handler)
        handler(level, msg, handler_user);
    else
        default_handler(level, msg, NULL);
}
