/* fuzz_image.c - libFuzzer harness for the image decoders (JPEG through TurboJPEG, PNG
 * through libpng), the EXIF orientation parsers and the orientation transform.
 *
 * The pixel limit is small (4 MP) so that a header announcing a huge image is refused
 * before anything is allocated, as in a real run; the input is decoded with and without
 * orientation and probed. Any input must decode or fail with a short reason. */
#include "fuzz_util.h"
#include "image/image_internal.h"
#include "mf/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mf_decode_params p = mf_decode_default_params();
    p.max_pixels = 4u << 20;
    mf_image_sniff(data, size);
    volatile int o = mf_jpeg_exif_orientation(data, size) + mf_png_exif_orientation(data, size);
    if (o < 2 || o > 16)
        abort(); /* each returns 1..8 */
    for (int ignore = 0; ignore < 2; ignore++) {
        mf_image im;
        p.ignore_orientation = ignore;
        int rc = mf_image_decode(&im, data, size, &p);
        if (rc == 0) {
            if (im.width <= 0 || im.height <= 0 ||
                (uint64_t)im.width * im.height > p.max_pixels)
                abort();
            volatile uint8_t sink = im.data[(size_t)im.width * im.height * 3 - 1];
            (void)sink;
            mf_image_release(&im);
        } else if (!mf_last_error()[0] || im.data)
            abort();
    }
    int w, h;
    mf_image_probe(data, size, &w, &h);
    return 0;
}
