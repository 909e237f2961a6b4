/* html.c - escaped text, data: URIs (base64 through OpenSSL's encoder) and the inline
 * SVG histogram of mf-report. */
#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "html.h"
#include "mf/image.h"

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
    mf_image_format fmt = mf_image_sniff(data, size);
    const char *mime = fmt == MF_IMAGE_JPEG  ? "image/jpeg"
                       : fmt == MF_IMAGE_PNG ? "image/png"
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

static void plot_frame(FILE *f, int width, int height, int left, int top, double pw, double ph,
                       const char *label)
{
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\">\n",
            width, height, width, height, label);
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%.1f\" fill=\"#fafafa\" "
            "stroke=\"#888\"/>\n",
            left, top, pw, ph);
}

/* Axis titles: x under the plot, y turned along the left edge. */
static void axis_titles(FILE *f, int width, int height, int left, int top, double ph,
                        const char *x, const char *y)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n",
            left + (width - left - 40) / 2.0, height - 4, x);
    fprintf(f,
            "<text transform=\"translate(14 %.1f) rotate(-90)\" font-size=\"12\" "
            "text-anchor=\"middle\">%s</text>\n",
            top + ph / 2, y);
}

void mf_html_histogram(FILE *f, const mf_histogram *h, const mf_histogram *under, int has_cut,
                       double cut, int width, int height)
{
    const int left = 64, right = 40, top = 16, bottom = 40;
    double pw = width - left - right, ph = height - top - bottom;
    uint64_t peak = 1;
    for (int b = 0; b < h->bins; b++) {
        peak = h->count[b] > peak ? h->count[b] : peak;
        if (under)
            peak = under->count[b] > peak ? under->count[b] : peak;
    }
    double span = h->hi > h->lo ? h->hi - h->lo : 1.0;
    plot_frame(f, width, height, left, top, pw, ph, "magnitude histogram");
    for (int pass = under ? 0 : 1; pass < 2; pass++) {
        const mf_histogram *src = pass ? h : under;
        for (int b = 0; b < h->bins; b++) {
            double bh = ph * (double)src->count[b] / (double)peak;
            fprintf(f,
                    "<rect class=\"%s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                    "height=\"%.2f\" fill=\"%s\"><title>%.3f-%.3f: %llu %s%s</title></rect>\n",
                    pass ? "bar" : "before", left + pw * b / h->bins + 0.5, top + ph - bh,
                    pw / h->bins - 1.0, bh, pass ? "#4a7ab5" : "#c8c8c8",
                    h->lo + span * b / h->bins, h->lo + span * (b + 1) / h->bins,
                    (unsigned long long)src->count[b], src->count[b] == 1 ? "row" : "rows",
                    pass ? "" : " before filtering");
        }
    }
    for (int t = 0; t <= 5; t++) { /* x ticks */
        double x = left + pw * t / 5;
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">"
                "%.2f</text>\n",
                x, top + ph + 16, h->lo + span * t / 5);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"end\">%llu</text>\n",
            left - 6, top + 10, (unsigned long long)peak);
    fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">0</text>\n",
            left - 6, top + ph);
    axis_titles(f, width, height, left, top, ph, "magnitude (MagFace quality)", "rows");
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

void mf_html_curve(FILE *f, const double *x, const double *y, int n, int width, int height,
                   const char *xlabel, const char *ylabel)
{
    const int left = 64, right = 40, top = 16, bottom = 40;
    double pw = width - left - right, ph = height - top - bottom;
    double xmax = 0, ymax = 0;
    for (int i = 0; i < n; i++) {
        xmax = isfinite(x[i]) && x[i] > xmax ? x[i] : xmax;
        ymax = isfinite(y[i]) && y[i] > ymax ? y[i] : ymax;
    }
    xmax = xmax > 0 ? xmax : 1;
    ymax = ymax > 0 ? ymax * 1.1 : 1;
    plot_frame(f, width, height, left, top, pw, ph, ylabel);
    fputs("<polyline id=\"curve\" fill=\"none\" stroke=\"#4a7ab5\" stroke-width=\"2\" "
          "points=\"",
          f);
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            fprintf(f, "%.1f,%.1f ", left + pw * x[i] / xmax, top + ph - ph * y[i] / ymax);
    fputs("\"/>\n", f);
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            fprintf(f,
                    "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#4a7ab5\"><title>%.0f%%: "
                    "%.4f</title></circle>\n",
                    left + pw * x[i] / xmax, top + ph - ph * y[i] / ymax, 100 * x[i], y[i]);
    for (int t = 0; t <= 5; t++) {
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">"
                "%.0f%%</text>\n",
                left + pw * t / 5, top + ph + 16, 100 * xmax * t / 5);
        fprintf(f,
                "<text x=\"%d\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\">%.3f</text>\n",
                left - 6, top + ph - ph * t / 5 + 4, ymax * t / 5);
    }
    axis_titles(f, width, height, left, top, ph, xlabel, ylabel);
    fputs("</svg>\n", f);
}
