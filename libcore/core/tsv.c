/* tsv.c - the TSV field escaping of include/mf/tsv.h. */
#include "mf/tsv.h"
#include "mf/status.h"

#include <stdlib.h>
#include <string.h>

/* The escape letter for a byte that needs one, or 0. */
static char escape_of(char c)
{
    switch (c) {
    case '\\': return '\\';
    case '\t': return 't';
    case '\n': return 'n';
    case '\r': return 'r';
    default: return 0;
    }
}

size_t mf_tsv_escaped_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += escape_of(*s) ? 2 : 1;
    return n;
}

char *mf_tsv_escape(const char *s)
{
    char *out = malloc(mf_tsv_escaped_len(s) + 1), *o = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        char e = escape_of(*s);
        if (e) {
            *o++ = '\\';
            *o++ = e;
        } else
            *o++ = *s;
    }
    *o = '\0';
    return out;
}

int mf_tsv_write_field(FILE *f, const char *s)
{
    while (*s) {
        size_t run = strcspn(s, "\\\t\n\r");
        if (run && fwrite(s, 1, run, f) != run)
            return mf_set_error(MF_ERR_IO, "cannot write a TSV field");
        s += run;
        if (*s) {
            char esc[2] = {'\\', escape_of(*s)};
            if (fwrite(esc, 1, 2, f) != 2)
                return mf_set_error(MF_ERR_IO, "cannot write a TSV field");
            s++;
        }
    }
    return 0;
}

int mf_tsv_unescape(char *s)
{
    char *o = s;
    for (const char *p = s; *p; p++) {
        if (*p != '\\') {
            *o++ = *p;
            continue;
        }
        char c = p[1];
        char v = c == '\\' ? '\\' : c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : 0;
        if (!c)
            return mf_set_error(MF_ERR_FORMAT, "TSV field ends in a lone backslash");
        if (!v)
            return mf_set_error(MF_ERR_FORMAT, "bad TSV escape '\\%c' (only \\\\ \\t \\n \\r)",
                                c);
        *o++ = v;
        p++;
    }
    *o = '\0';
    return 0;
}

int mf_tsv_split(char *line, char **fields, int max)
{
    size_t len = strlen(line);
    if (len && line[len - 1] == '\n')
        line[--len] = '\0';
    if (len && line[len - 1] == '\r')
        line[--len] = '\0';
    int n = 0;
    for (char *p = line;;) {
        if (n == max)
            return max + 1;
        fields[n++] = p;
        char *tab = strchr(p, '\t');
        if (!tab)
            return n;
        *tab = '\0';
        p = tab + 1;
    }
}
