/* fuzz_archive.c - libFuzzer harness for archive inputs: our gzip layer (CRC and length
 * checked with zlib), libarchive's tar/zip/other readers underneath, WebDataset grouping
 * and strict .cls labels. The input is one archive file; samples are read with label
 * names from folders, so the header pre-pass runs too. Any input must yield samples or
 * failures with reasons, never crash. */
#include "fuzz_util.h"
#include "mf/source.h"
#include "mf/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("f.tar", data, size);
    mf_source_params p = mf_source_default_params();
    p.label_from_dir = 1;
    p.max_image_bytes = 1 << 20;
    mf_source *s;
    if (mf_source_new(&s, &p) < 0 || mf_source_add(s, path, MF_INPUT_ARCHIVE) < 0)
        abort();
    mf_sample x;
    int rc, n = 0;
    while ((rc = mf_source_next(s, &x)) > 0 && n++ < 100000)
        if (!mf_utf8_valid(x.id) || (!x.error && x.size && !x.data))
            abort();
    if (rc < 0 && !mf_last_error()[0])
        abort();
    mf_source_free(s);
    return 0;
}
