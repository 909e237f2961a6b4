/* image.h - decode JPEG/PNG into 8-bit BGR the way OpenCV's imread does, and bring a
 * face to the 112x112 MagFace input (5-landmark alignment or plain resize).
 *
 *     mf_decode_params dp = mf_decode_default_params();   // 50 MP limit
 *     mf_image img;
 *     if (mf_image_decode(&img, bytes, n, &dp) < 0)
 *         warn("%s: %s", id, mf_last_error());            // "truncated JPEG", ...
 *     uint8_t face[MF_FACE_SIZE * MF_FACE_SIZE * 3];
 *     if (has_landmarks) mf_image_align(face, &img, lm);  // lm: x1 y1 ... x5 y5
 *     else if (img.width == 112 && img.height == 112) memcpy(face, img.data, sizeof face);
 *     else mf_image_resize(face, MF_FACE_SIZE, MF_FACE_SIZE, &img);
 *     mf_image_release(&img);
 *
 * Decoding matches cv2.imread(path, IMREAD_COLOR) bit for bit: JPEG through
 * libjpeg-turbo with the accurate integer DCT and fancy upsampling (CMYK converted as
 * OpenCV does), PNG through libpng with 16-bit stripped, palette and grey expanded and
 * alpha dropped, EXIF orientation applied (JPEG APP1, PNG eXIf). One deliberate
 * difference: a JPEG that libjpeg decodes only with a warning (truncated, corrupt
 * entropy data) is an error here, where imread returns grey-filled or garbled pixels;
 * a dataset cleaner should see those.
 *
 * Error messages are short reasons meant to be stored next to the sample id
 * ("truncated JPEG", "PNG CRC error", "not an image (unknown signature)",
 * "image 70000x70000 exceeds the 50 MP limit"). An image within the limit whose pixels
 * cannot be allocated fails as MF_ERR_LIMIT ("not enough memory to decode ..."), not
 * MF_ERR_NOMEM: it is this image that is too large, and a batch goes on without it.
 * All functions are reentrant: no global state, safe to call from a decoding thread. */
#ifndef MF_IMAGE_H
#define MF_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define MF_FACE_SIZE 112

/* An 8-bit BGR image, rows contiguous: data is (height, width, 3). */
typedef struct mf_image {
    int width, height;
    uint8_t *data; /* owned; free with mf_image_release() */
} mf_image;

typedef struct mf_decode_params {
    uint64_t max_pixels;    /* width*height above this is refused before allocating */
    int ignore_orientation; /* 1: no EXIF rotation (cv2 IMREAD_IGNORE_ORIENTATION) */
} mf_decode_params;

mf_decode_params mf_decode_default_params(void); /* 50 MP, orientation applied */

/* Decode an encoded JPEG or PNG. Returns 0 and fills *out, or a negative mf_status
 * (MF_ERR_FORMAT corrupt/unknown, MF_ERR_LIMIT too large, MF_ERR_UNSUPPORTED,
 * MF_ERR_NOMEM) with the reason in mf_last_error(); *out is then empty. */
int mf_image_decode(mf_image *out, const void *buf, size_t len, const mf_decode_params *p);

/* Width and height from the header only (no pixel decode); same errors as decode. */
int mf_image_probe(const void *buf, size_t len, int *width, int *height);

void mf_image_release(mf_image *img); /* frees data; safe on a zeroed image */

typedef enum mf_image_format {
    MF_IMAGE_UNKNOWN = 0,
    MF_IMAGE_JPEG, /* FF D8 FF */
    MF_IMAGE_PNG,  /* 89 50 4E 47 0D 0A 1A 0A */
} mf_image_format;

/* Which image format encoded bytes are, by their signature alone: the check for bytes
 * about to be exported as an image (a file named by an id may be anything). It reads at
 * most 8 bytes and decodes nothing; mf_image_probe also checks the header. */
mf_image_format mf_image_sniff(const void *buf, size_t len);
/* "jpg", "png", or NULL for MF_IMAGE_UNKNOWN: the file extension for a format. */
const char *mf_image_format_ext(mf_image_format f);

/* The standard 5-point template for 112x112 crops: left eye, right eye, nose tip,
 * left mouth corner, right mouth corner, as x,y pairs. */
extern const float mf_face_template[10];

/* Least-squares similarity transform (rotation, uniform scale, translation; no
 * reflection) mapping src[i] onto dst[i], i < n (points as x,y pairs), 2 <= n <= 64. This is
 * the Umeyama estimate. m (2x3, row-major) maps (x, y) to
 * (m[0]x + m[1]y + m[2], m[3]x + m[4]y + m[5]). Returns MF_ERR_ARG if the source points
 * coincide. */
int mf_similarity_estimate(double m[6], const float *src, const float *dst, int n);

/* dst (dh, dw, 3) = src warped by the forward affine map m (src -> dst coordinates),
 * bilinear, black outside the source: the arithmetic of cv2.warpAffine(INTER_LINEAR,
 * BORDER_CONSTANT, 0) including its fixed point, so results are bit-identical to it.
 * dw <= 4096. */
int mf_image_warp_affine(uint8_t *dst, int dw, int dh, const mf_image *src, const double m[6]);

/* The map mf_image_align applies: landmarks onto the template (in double precision). */
int mf_image_align_matrix(double m[6], const float landmarks[10]);

/* Align a face to the 112x112 template from its 5 landmarks (x1 y1 ... x5 y5 in src
 * pixels). dst holds MF_FACE_SIZE*MF_FACE_SIZE*3 bytes. */
int mf_image_align(uint8_t *dst, const mf_image *src, const float landmarks[10]);

/* Plain bilinear resize to (dh, dw), bit-identical to cv2.resize(INTER_LINEAR). */
int mf_image_resize(uint8_t *dst, int dw, int dh, const mf_image *src);

#endif
