/* exif.c - the EXIF orientation tag, found in a JPEG's APP1 segment or a PNG's eXIf
 * chunk (OpenCV 4.6 applies it for both, checked against cv2.imread). Only IFD0's tag
 * 0x0112 is read; every offset is checked against the block it points into, and
 * anything malformed means "no orientation" (1), as a missing tag does. */
#include "image_internal.h"

#include <string.h>

static unsigned get16(const uint8_t *p, int le)
{
    return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1];
}
static uint32_t get32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                    (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Orientation tag (0x0112) of IFD0 in a TIFF block t[0..n); 1 if absent or malformed. */
static int tiff_orientation(const uint8_t *t, size_t n)
{
    if (n < 8)
        return 1;
    int le;
    if (!memcmp(t, "II*\0", 4))
        le = 1;
    else if (!memcmp(t, "MM\0*", 4))
        le = 0;
    else
        return 1;
    uint32_t ifd = get32(t + 4, le);
    if (ifd > n - 2)
        return 1;
    unsigned count = get16(t + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n)
            return 1;
        if (get16(t + e, le) != 0x0112)
            continue;
        if (get16(t + e + 2, le) != 3 || get32(t + e + 4, le) < 1)
            return 1; /* SHORT */
        unsigned o = get16(t + e + 8, le);
        return o >= 1 && o <= 8 ? (int)o : 1;
    }
    return 1;
}

int mf_jpeg_exif_orientation(const uint8_t *b, size_t n)
{
    size_t pos = 2; /* after SOI */
    while (pos + 4 <= n) {
        if (b[pos] != 0xFF)
            return 1;
        unsigned marker = b[pos + 1];
        if (marker == 0xFF) {
            pos++;
            continue;
        } /* fill byte */
        if (marker == 0xDA || marker == 0xD9)
            return 1; /* scan data / EOI: no EXIF */
        size_t seglen = (size_t)b[pos + 2] << 8 | b[pos + 3];
        if (seglen < 2 || pos + 2 + seglen > n)
            return 1;
        const uint8_t *seg = b + pos + 4;
        size_t body = seglen - 2;
        if (marker == 0xE1 && body >= 6 && !memcmp(seg, "Exif\0\0", 6))
            return tiff_orientation(seg + 6, body - 6);
        pos += 2 + seglen;
    }
    return 1;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int mf_png_exif_orientation(const uint8_t *b, size_t n)
{
    size_t pos = 8; /* after the signature */
    while (pos + 12 <= n) {
        uint32_t len = be32(b + pos);
        const uint8_t *type = b + pos + 4, *data = b + pos + 8;
        if (len > n - pos - 12)
            return 1;
        if (!memcmp(type, "IEND", 4))
            return 1;
        /* As OpenCV 4.6 (checked): honoured before or after IDAT; the chunk must start
         * with the TIFF header itself (an "Exif\0\0" prefix is not accepted). */
        if (!memcmp(type, "eXIf", 4))
            return tiff_orientation(data, len);
        pos += 12 + (size_t)len;
    }
    return 1;
}
