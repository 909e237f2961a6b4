/* decode.c - format dispatch, limits and EXIF orientation (see include/mf/image.h). */
#include "image_internal.h"
#include "mf/status.h"

#include <stdlib.h>
#include <string.h>

#define MF_DEFAULT_MAX_PIXELS (50ull * 1000 * 1000)

mf_decode_params mf_decode_default_params(void)
{
    return (mf_decode_params){.max_pixels = MF_DEFAULT_MAX_PIXELS, .ignore_orientation = 0};
}

void mf_image_release(mf_image *img)
{
    if (!img)
        return;
    free(img->data);
    *img = (mf_image){0};
}

int mf_image_check_limit(int w, int h, const mf_decode_params *p)
{
    if (w <= 0 || h <= 0)
        return mf_set_error(MF_ERR_FORMAT, "image has no pixels (%dx%d)", w, h);
    uint64_t max = p ? p->max_pixels : MF_DEFAULT_MAX_PIXELS;
    if ((uint64_t)w * (uint64_t)h > max) {
        double mp = (double)max / 1e6;
        return mf_set_error(MF_ERR_LIMIT, "image %dx%d exceeds the %.*f MP limit", w, h,
                            mp == (double)(uint64_t)mp ? 0 : 1, mp);
    }
    return 0;
}

int mf_image_no_memory(int w, int h, int channels)
{
    return mf_set_error(MF_ERR_LIMIT, "not enough memory to decode a %dx%d image (%.1f GB)", w,
                        h, (double)w * h * channels / 1e9);
}

int mf_image_alloc(mf_image *img, int w, int h)
{
    /* One image's pixels failing to allocate is that image's failure (MF_ERR_LIMIT), not
     * the run's: with --max-megapixels raised, a huge image must not stop the batch. */
    size_t n;
    if (mf_size_mul((size_t)w * 3, (size_t)h, &n, "image") < 0 || !(img->data = malloc(n)))
        return mf_image_no_memory(w, h, 3);
    img->width = w;
    img->height = h;
    return 0;
}

static int is_jpeg(const uint8_t *b, size_t n)
{
    return n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;
}
static int is_png(const uint8_t *b, size_t n)
{
    return n >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8);
}

mf_image_format mf_image_sniff(const void *buf, size_t len)
{
    const uint8_t *b = buf;
    return !b                ? MF_IMAGE_UNKNOWN
           : is_jpeg(b, len) ? MF_IMAGE_JPEG
           : is_png(b, len)  ? MF_IMAGE_PNG
                             : MF_IMAGE_UNKNOWN;
}

const char *mf_image_format_ext(mf_image_format f)
{
    return f == MF_IMAGE_JPEG ? "jpg" : f == MF_IMAGE_PNG ? "png" : NULL;
}

static int unknown(size_t len)
{
    if (len == 0)
        return mf_set_error(MF_ERR_FORMAT, "empty file");
    return mf_set_error(MF_ERR_FORMAT, "not an image (unknown signature)");
}

int mf_image_decode(mf_image *out, const void *buf, size_t len, const mf_decode_params *p)
{
    const uint8_t *b = buf;
    *out = (mf_image){0};
    mf_decode_params def = mf_decode_default_params();
    if (!p)
        p = &def;
    int rc, o;
    if (is_jpeg(b, len)) {
        rc = mf_jpeg_decode(out, b, len, p);
        o = rc < 0 || p->ignore_orientation ? 1 : mf_jpeg_exif_orientation(b, len);
    } else if (is_png(b, len)) {
        rc = mf_png_decode(out, b, len, p);
        o = rc < 0 || p->ignore_orientation ? 1 : mf_png_exif_orientation(b, len);
    } else
        return unknown(len);
    if (o > 1 && (rc = mf_image_orient(out, o)) < 0)
        mf_image_release(out);
    return rc;
}

int mf_image_probe(const void *buf, size_t len, int *w, int *h)
{
    const uint8_t *b = buf;
    if (is_jpeg(b, len))
        return mf_jpeg_probe(b, len, w, h);
    if (is_png(b, len))
        return mf_png_probe(b, len, w, h);
    return unknown(len);
}

/* Source pixel of output (x, y) for each EXIF orientation, as OpenCV applies it:
 * 2 mirror, 3 rotate 180, 4 flip vertical, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise. w, h are the output size. */
static void orient_src(int o, int x, int y, int w, int h, int *sx, int *sy)
{
    /* clang-format off: one line per orientation reads as a table */
    switch (o) {
    case 2:
        *sx = w - 1 - x;
        *sy = y;
        break;
    case 3:
        *sx = w - 1 - x;
        *sy = h - 1 - y;
        break;
    case 4:
        *sx = x;
        *sy = h - 1 - y;
        break;
    case 5:
        *sx = y;
        *sy = x;
        break;
    case 6:
        *sx = y;
        *sy = w - 1 - x;
        break;
    case 7:
        *sx = h - 1 - y;
        *sy = w - 1 - x;
        break;
    case 8:
        *sx = h - 1 - y;
        *sy = x;
        break;
    default:
        *sx = x;
        *sy = y;
        break;
    }
    /* clang-format on */
}

int mf_image_orient(mf_image *img, int o)
{
    if (o < 2 || o > 8)
        return 0;
    int sw = img->width, sh = img->height;
    int w = o >= 5 ? sh : sw, h = o >= 5 ? sw : sh;
    mf_image dst = {0};
    int rc = mf_image_alloc(&dst, w, h);
    if (rc < 0)
        return rc;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int sx, sy;
            orient_src(o, x, y, w, h, &sx, &sy);
            memcpy(dst.data + ((size_t)y * w + x) * 3, img->data + ((size_t)sy * sw + sx) * 3,
                   3);
        }
    free(img->data);
    *img = dst;
    return 0;
}
