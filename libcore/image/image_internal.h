/* image_internal.h - pieces shared by the decoders in libcore/image/. */
#ifndef MF_IMAGE_INTERNAL_H
#define MF_IMAGE_INTERNAL_H

#include "mf/image.h"

/* Refuse w x h above the limit, with the message users see. */
int mf_image_check_limit(int w, int h, const mf_decode_params *p);
/* The MF_ERR_LIMIT failure for an image whose w x h x channels bytes cannot be had. */
int mf_image_no_memory(int w, int h, int channels);
/* Allocate img->data for w x h BGR (after the limit check); MF_ERR_LIMIT if it fails. */
int mf_image_alloc(mf_image *img, int w, int h);

int mf_jpeg_decode(mf_image *out, const uint8_t *buf, size_t len, const mf_decode_params *p);
int mf_jpeg_probe(const uint8_t *buf, size_t len, int *w, int *h);
/* EXIF orientation 1..8 from a JPEG's APP1 segment or a PNG's eXIf chunk; 1 when
 * absent or unreadable. */
int mf_jpeg_exif_orientation(const uint8_t *buf, size_t len);
int mf_png_exif_orientation(const uint8_t *buf, size_t len);
int mf_png_decode(mf_image *out, const uint8_t *buf, size_t len, const mf_decode_params *p);
int mf_png_probe(const uint8_t *buf, size_t len, int *w, int *h);

/* Apply EXIF orientation o (2..8) in place of img->data (may swap width/height). */
int mf_image_orient(mf_image *img, int o);

#endif
