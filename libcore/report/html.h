/* html.h - small writers for mf-report's page: escaped text, data: URIs, inline SVG. */
#ifndef MF_REPORT_HTML_H
#define MF_REPORT_HTML_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mf/stats.h"

/* Write s with & < > " ' escaped and control characters replaced by U+FFFD. */
void mf_html_text(FILE *f, const char *s);

/* "data:image/jpeg;base64,..." for encoded image bytes; malloc'ed, NULL when out of
 * memory or when the bytes are not a JPEG or PNG. */
char *mf_html_data_uri(const uint8_t *data, size_t size);

/* Bar chart of h as an <svg> (width x height px) with axis labels; `under` (NULL or on
 * the same bins) drawn grey behind it (the rows before filtering); a red vertical line
 * and a label at `cut` when has_cut. */
void mf_html_histogram(FILE *f, const mf_histogram *h, const mf_histogram *under, int has_cut,
                       double cut, int width, int height);

/* A line through (x[i], y[i]) as an <svg>, x from 0 as a percentage, y from 0. */
void mf_html_curve(FILE *f, const double *x, const double *y, int n, int width, int height,
                   const char *xlabel, const char *ylabel);

#endif
