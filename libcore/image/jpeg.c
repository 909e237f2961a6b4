/* jpeg.c - JPEG through TurboJPEG with OpenCV's settings, and the EXIF orientation tag.
 *
 * OpenCV's imread uses libjpeg-turbo with its defaults: accurate integer DCT (ISLOW) and
 * fancy upsampling, output BGR (grey JPEGs replicated into 3 channels). TurboJPEG with
 * TJFLAG_ACCURATEDCT and without TJFLAG_FASTUPSAMPLE does exactly that, so pixels are
 * bit-identical to cv2.imread on the same library. CMYK JPEGs are converted as OpenCV
 * converts them. */
#include "image_internal.h"
#include "mf/status.h"

#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

/* libjpeg warnings that do not affect the pixels (OpenCV accepts these silently). */
static int benign_warning(const char *msg)
{
    return strstr(msg, "extraneous bytes before marker") != NULL;
}

static int jpeg_error(tjhandle tj, const char *what)
{
    const char *msg = tjGetErrorStr2(tj);
    if (strstr(msg, "Premature end") || strstr(msg, "premature end"))
        return mf_set_error(MF_ERR_FORMAT, "truncated JPEG");
    if (strstr(msg, "Unsupported color conversion"))
        return mf_set_error(MF_ERR_UNSUPPORTED, "unsupported JPEG colour space");
    return mf_set_error(MF_ERR_FORMAT, "corrupt JPEG (%s: %s)", what, msg);
}

static int read_header(tjhandle tj, const uint8_t *buf, size_t len, int *w, int *h, int *cs)
{
    int subsamp;
    if (len > (unsigned long)-1)
        return mf_set_error(MF_ERR_LIMIT, "JPEG too large");
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, w, h, &subsamp, cs) < 0)
        return jpeg_error(tj, "header");
    return 0;
}

int mf_jpeg_probe(const uint8_t *buf, size_t len, int *w, int *h)
{
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return mf_set_error(MF_ERR_INTERNAL, "cannot initialise TurboJPEG");
    int cs, rc = read_header(tj, buf, len, w, h, &cs);
    tjDestroy(tj);
    return rc;
}

/* CMYK (or YCCK) JPEGs: libjpeg-turbo gives Adobe-style inverted CMYK; OpenCV turns
 * that into BGR with x' = k - ((255 - x) * k >> 8), which we repeat (bit-exact). */
static int decode_cmyk(tjhandle tj, const uint8_t *buf, size_t len, mf_image *out)
{
    size_t n;
    uint8_t *cmyk = NULL;
    if (mf_size_mul((size_t)out->width * 4, (size_t)out->height, &n, "CMYK image") < 0 ||
        !(cmyk = malloc(n)))
        return mf_image_no_memory(out->width, out->height, 4);
    int rc = 0;
    if (tjDecompress2(tj, buf, (unsigned long)len, cmyk, out->width, 0, out->height, TJPF_CMYK,
                      TJFLAG_ACCURATEDCT) < 0 &&
        (tjGetErrorCode(tj) != TJERR_WARNING || !benign_warning(tjGetErrorStr2(tj))))
        rc = jpeg_error(tj, "data");
    for (size_t i = 0, np = (size_t)out->width * out->height; rc == 0 && i < np; i++) {
        const uint8_t *p = cmyk + 4 * i;
        int k = p[3];
        out->data[3 * i + 0] = (uint8_t)(k - ((255 - p[2]) * k >> 8));
        out->data[3 * i + 1] = (uint8_t)(k - ((255 - p[1]) * k >> 8));
        out->data[3 * i + 2] = (uint8_t)(k - ((255 - p[0]) * k >> 8));
    }
    free(cmyk);
    return rc;
}

int mf_jpeg_decode(mf_image *out, const uint8_t *buf, size_t len, const mf_decode_params *p)
{
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return mf_set_error(MF_ERR_INTERNAL, "cannot initialise TurboJPEG");
    int w, h, cs;
    int rc = read_header(tj, buf, len, &w, &h, &cs);
    if (rc == 0)
        rc = mf_image_check_limit(w, h, p);
    if (rc == 0)
        rc = mf_image_alloc(out, w, h);
    if (rc == 0 && (cs == TJCS_CMYK || cs == TJCS_YCCK))
        rc = decode_cmyk(tj, buf, len, out);
    else if (rc == 0 && tjDecompress2(tj, buf, (unsigned long)len, out->data, w, 0, h, TJPF_BGR,
                                      TJFLAG_ACCURATEDCT) < 0) {
        if (tjGetErrorCode(tj) != TJERR_WARNING || !benign_warning(tjGetErrorStr2(tj)))
            rc = jpeg_error(tj, "data");
    }
    tjDestroy(tj);
    if (rc < 0)
        mf_image_release(out);
    return rc;
}
