/* html.c - escaped text, data: URIs (base64 through OpenSSL's encoder) and the inline
 * SVG histogram of mf-report. */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "mf/export.h"

void mf_html_text(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fputs("\xef\xbf\xbd", f);
            else
                fputc(*p, f);
        }
    }
}

char *mf_html_data_uri(const uint8_t *data, size_t size)
{
    const char *ext = mf_image_ext(data, size);
    const char *mime = strcmp(ext, "jpg") == 0   ? "image/jpeg"
                       : strcmp(ext, "png") == 0 ? "image/png"
                                                 : NULL;
    if (!mime || size > (size_t)1 << 30)
        return NULL;
    size_t head = strlen("data:;base64,") + strlen(mime);
    char *out = malloc(head + 4 * ((size + 2) / 3) + 1);
    if (!out)
        return NULL;
    snprintf(out, head + 1, "data:%s;base64,", mime);
    EVP_EncodeBlock((unsigned char *)out + head, data, (int)size); /* NUL-terminates */
    return out;
}

void mf_html_histogram(FILE *f, const mf_histogram *h, int has_cut, double cut, int width,
                       int height)
{
    const int left = 56, right = 40, top = 16, bottom = 40;
    double pw = width - left - right, ph = height - top - bottom;
    uint64_t peak = 1;
    for (int b = 0; b < h->bins; b++)
        peak = h->count[b] > peak ? h->count[b] : peak;
    double span = h->hi > h->lo ? h->hi - h->lo : 1.0;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"magnitude histogram\">\n",
            width, height, width, height);
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%.1f\" fill=\"#fafafa\" "
            "stroke=\"#888\"/>\n",
            left, top, pw, ph);
    for (int b = 0; b < h->bins; b++) {
        double bh = ph * (double)h->count[b] / (double)peak;
        fprintf(f,
                "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                "fill=\"#4a7ab5\"><title>%.3f-%.3f: %llu</title></rect>\n",
                left + pw * b / h->bins + 0.5, top + ph - bh, pw / h->bins - 1.0, bh,
                h->lo + span * b / h->bins, h->lo + span * (b + 1) / h->bins,
                (unsigned long long)h->count[b]);
    }
    for (int t = 0; t <= 5; t++) { /* x ticks */
        double x = left + pw * t / 5;
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">"
                "%.2f</text>\n",
                x, top + ph + 16, h->lo + span * t / 5);
    }
    fprintf(f,
            "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">magnitude"
            "</text>\n",
            left + pw / 2, height - 4);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\">%llu</text>\n",
            left - 6, top + 10, (unsigned long long)peak);
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">0</text>\n",
            left - 6, top + ph);
    if (has_cut) {
        double c = cut < h->lo ? h->lo : cut > h->hi ? h->hi : cut;
        double x = left + pw * (c - h->lo) / span;
        fprintf(f,
                "<line id=\"cut\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"#d62728\" stroke-width=\"2\" stroke-dasharray=\"6 3\"/>\n",
                x, top, x, top + ph);
        fprintf(f,
                "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" fill=\"#d62728\">"
                "cut %.3f</text>\n",
                x + 4, top + 14, cut);
    }
    fputs("</svg>\n", f);
}
