/* jpeg.c - JPEG through TurboJPEG with OpenCV's settings, and the EXIF orientation tag.
 *
 * OpenCV's imread uses libjpeg-turbo with its defaults: accurate integer DCT (ISLOW) and
 * fancy upsampling, output BGR (grey JPEGs replicated into 3 channels). TurboJPEG with
 * TJFLAG_ACCURATEDCT and without TJFLAG_FASTUPSAMPLE does exactly that, so pixels are
 * bit-identical to cv2.imread on the same library. */
#include "image/image_internal.h"
#include "mf/status.h"

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
        return mf_set_error(MF_ERR_UNSUPPORTED, "unsupported JPEG colour space (CMYK?)");
    return mf_set_error(MF_ERR_FORMAT, "corrupt JPEG (%s: %s)", what, msg);
}

static int read_header(tjhandle tj, const uint8_t *buf, size_t len, int *w, int *h, int *cs)
{
    int subsamp;
    if (len > (unsigned long)-1) return mf_set_error(MF_ERR_LIMIT, "JPEG too large");
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, w, h, &subsamp, cs) < 0)
        return jpeg_error(tj, "header");
    return 0;
}

int mf_jpeg_probe(const uint8_t *buf, size_t len, int *w, int *h)
{
    tjhandle tj = tjInitDecompress();
    if (!tj) return mf_set_error(MF_ERR_INTERNAL, "cannot initialise TurboJPEG");
    int cs, rc = read_header(tj, buf, len, w, h, &cs);
    tjDestroy(tj);
    return rc;
}

int mf_jpeg_decode(mf_image *out, const uint8_t *buf, size_t len, const mf_decode_params *p)
{
    tjhandle tj = tjInitDecompress();
    if (!tj) return mf_set_error(MF_ERR_INTERNAL, "cannot initialise TurboJPEG");
    int w, h, cs;
    int rc = read_header(tj, buf, len, &w, &h, &cs);
    if (rc == 0 && (cs == TJCS_CMYK || cs == TJCS_YCCK))
        rc = mf_set_error(MF_ERR_UNSUPPORTED, "CMYK JPEG not supported");
    if (rc == 0) rc = mf_image_check_limit(w, h, p);
    if (rc == 0) rc = mf_image_alloc(out, w, h);
    if (rc == 0 && tjDecompress2(tj, buf, (unsigned long)len, out->data, w, 0, h, TJPF_BGR,
                                 TJFLAG_ACCURATEDCT) < 0) {
        if (tjGetErrorCode(tj) != TJERR_WARNING || !benign_warning(tjGetErrorStr2(tj)))
            rc = jpeg_error(tj, "data");
    }
    tjDestroy(tj);
    if (rc < 0) mf_image_release(out);
    return rc;
}

/* ---- EXIF orientation --------------------------------------------------------------- */

static unsigned get16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t get32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Orientation tag (0x0112) of IFD0 in a TIFF block t[0..n); 1 if absent or malformed. */
static int tiff_orientation(const uint8_t *t, size_t n)
{
    if (n < 8) return 1;
    int le;
    if (!memcmp(t, "II*\0", 4)) le = 1;
    else if (!memcmp(t, "MM\0*", 4)) le = 0;
    else return 1;
    uint32_t ifd = get32(t + 4, le);
    if (ifd > n - 2) return 1;
    unsigned count = get16(t + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) return 1;
        if (get16(t + e, le) != 0x0112) continue;
        if (get16(t + e + 2, le) != 3 || get32(t + e + 4, le) < 1) return 1; /* SHORT */
        unsigned o = get16(t + e + 8, le);
        return o >= 1 && o <= 8 ? (int)o : 1;
    }
    return 1;
}

int mf_jpeg_exif_orientation(const uint8_t *b, size_t n)
{
    size_t pos = 2; /* after SOI */
    while (pos + 4 <= n) {
        if (b[pos] != 0xFF) return 1;
        unsigned marker = b[pos + 1];
        if (marker == 0xFF) { pos++; continue; } /* fill byte */
        if (marker == 0xDA || marker == 0xD9) return 1; /* scan data / EOI: no EXIF */
        size_t seglen = (size_t)b[pos + 2] << 8 | b[pos + 3];
        if (seglen < 2 || pos + 2 + seglen > n) return 1;
        const uint8_t *seg = b + pos + 4;
        size_t body = seglen - 2;
        if (marker == 0xE1 && body >= 6 && !memcmp(seg, "Exif\0\0", 6))
            return tiff_orientation(seg + 6, body - 6);
        pos += 2 + seglen;
    }
    return 1;
}
