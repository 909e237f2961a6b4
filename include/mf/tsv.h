/* tsv.h - one escaping rule for every TSV file mfkit writes and reads (mf-filter
 * --report, mf-inspect, mf-export lists, ...), so a field holding a tab, a newline or a
 * backslash (ids are file names: they may) cannot shift columns or split rows.
 *
 *     fputs("id\tlabel\n", f);
 *     mf_tsv_write_field(f, id);             // a\tb -> a\\tb, "x\ny" -> x\\ny
 *     fprintf(f, "\t%lld\n", (long long)label);
 *
 *     char *fields[8];                       // reading: one line, newline stripped
 *     int n = mf_tsv_split(line, fields, 8); // in place, at tabs
 *     if (n != 2 || mf_tsv_unescape(fields[0]) < 0) bad_line();
 *
 * The rule (docs/FORMAT.md, "TSV"): backslash -> `\\`, TAB -> `\t`, LF -> `\n`,
 * CR -> `\r`; every other byte as is. Unescaping is strict: a backslash followed by
 * anything else, or ending the field, is an error, so text that was not written by
 * this rule is noticed instead of guessed at. Fields without those four bytes are
 * written unchanged, so ordinary ids read the same with or without unescaping. */
#ifndef MF_TSV_H
#define MF_TSV_H

#include <stddef.h>
#include <stdio.h>

/* Bytes mf_tsv_escape(s) would produce, without the terminating NUL. */
size_t mf_tsv_escaped_len(const char *s);

/* Escaped copy of s (malloc'ed; free() it), or NULL when out of memory. */
char *mf_tsv_escape(const char *s);

/* Write s escaped to f, without allocating. Returns 0 or MF_ERR_IO (the stream's
 * error flag is also set, so checking ferror/fclose at the end is enough). */
int mf_tsv_write_field(FILE *f, const char *s);

/* Unescape s in place (the result is never longer). Returns 0, or MF_ERR_FORMAT with a
 * message quoting the bad escape; s is then unspecified. */
int mf_tsv_unescape(char *s);

/* Strip a trailing "\n" or "\r\n" from line, then split it at tabs in place into at
 * most max fields. Returns the number of fields found, or max + 1 when there are more
 * (the extra ones are not stored), so a caller can insist on an exact count. */
int mf_tsv_split(char *line, char **fields, int max);

#endif
