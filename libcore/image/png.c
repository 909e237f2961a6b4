/* png.c - PNG through libpng with the transforms cv2.imread(IMREAD_COLOR) asks for:
 * 16-bit stripped to 8 (high byte), palette and low-bit grey expanded, grey replicated,
 * alpha dropped (not composited), BGR order. CRC errors in any chunk are errors: a file
 * whose checksums fail is damaged, and silently keeping it hides the damage. */
#include "image_internal.h"
#include "mf/status.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct png_src {
    const uint8_t *buf;
    size_t len, pos;
    char msg[160]; /* libpng's error message, when it raised one */
} png_src;

static void on_read(png_structp png, png_bytep out, size_t n)
{
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->pos)
        png_error(png, "truncated PNG");
    memcpy(out, s->buf + s->pos, n);
    s->pos += n;
}

static void on_error(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static int png_reason(const png_src *s)
{
    if (strstr(s->msg, "CRC"))
        return mf_set_error(MF_ERR_FORMAT, "PNG CRC error");
    if (strstr(s->msg, "truncated"))
        return mf_set_error(MF_ERR_FORMAT, "truncated PNG");
    return mf_set_error(MF_ERR_FORMAT, "corrupt PNG (%s)",
                        s->msg[0] ? s->msg : "unknown error");
}

static void set_transforms(png_structp png, png_infop info)
{
    int ct = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    if (depth > 8)
        png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (ct == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (!(ct & PNG_COLOR_MASK_COLOR) && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (ct & PNG_COLOR_MASK_COLOR)
        png_set_bgr(png);
    else
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* Reads the header, and the pixels too when out != NULL. Returns 0 or mf_status. */
static int png_run(const uint8_t *buf, size_t len, const mf_decode_params *p, mf_image *out,
                   int *pw, int *ph)
{
    png_src src = {.buf = buf, .len = len};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *volatile rows = NULL;
    volatile int rc = 0;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return mf_set_error(MF_ERR_NOMEM, "cannot initialise libpng");
    }
    if (setjmp(png_jmpbuf(png))) {
        rc = png_reason(&src);
        goto done;
    }
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_set_read_fn(png, &src, on_read);
    png_read_info(png, info);
    int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info);
    *pw = w;
    *ph = h;
    if (!out || (rc = mf_image_check_limit(w, h, p)) < 0)
        goto done;
    set_transforms(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) {
        rc = mf_set_error(MF_ERR_INTERNAL, "libpng produced %zu bytes per row, expected %d",
                          (size_t)png_get_rowbytes(png, info), w * 3);
        goto done;
    }
    if ((rc = mf_image_alloc(out, w, h)) < 0)
        goto done;
    rows = malloc((size_t)h * sizeof *rows);
    if (!rows) {
        rc = mf_image_no_memory(w, h, 3);
        goto done;
    }
    for (int y = 0; y < h; y++)
        rows[y] = out->data + (size_t)y * w * 3;
    png_read_image(png, rows);
    png_read_end(png, NULL);
done:
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    if (rc < 0 && out)
        mf_image_release(out);
    return rc;
}

int mf_png_decode(mf_image *out, const uint8_t *buf, size_t len, const mf_decode_params *p)
{
    int w, h;
    return png_run(buf, len, p, out, &w, &h);
}

int mf_png_probe(const uint8_t *buf, size_t len, int *w, int *h)
{
    return png_run(buf, len, NULL, NULL, w, h);
}
