/* fuzz_recordio.c - libFuzzer harness for the RecordIO reader: the .rec parts, the .idx
 * (strict lines, duplicate keys and offsets), record headers and their float labels.
 *
 * Input: "I" <n> <n bytes of .idx text> <the .rec>, or just the .rec (no .idx). Every
 * record is read in file order with and without loading, every .idx key by key; any
 * input must read or fail with a message, never crash or read out of bounds. */
#include "fuzz_util.h"
#include "mf/recordio.h"
#include "mf/status.h"

static void use(const mf_record *r)
{
    mf_record_header h;
    if (r->data && mf_record_parse(&h, r->data, r->size) == 0) {
        int64_t label;
        volatile uint8_t sink = 0;
        mf_record_label(&h, &label);
        for (size_t i = 0; i < h.image_size; i += 97)
            sink ^= h.image[i];
        (void)sink;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t idx_len = 0;
    if (size >= 2 && data[0] == 'I') {
        idx_len = data[1] < size - 2 ? data[1] : size - 2;
        fuzz_write("f.idx", data + 2, idx_len);
        data += 2 + idx_len;
        size -= 2 + idx_len;
    } else
        unlink(fuzz_path("f.idx"));
    const char *rec = fuzz_write("f.rec", data, size);
    mf_recordio_reader *r;
    if (mf_recordio_open(&r, rec, 1 << 20) < 0) {
        if (!mf_last_error()[0])
            abort();
        return 0;
    }
    mf_record x;
    int rc;
    for (int load = 0; load < 2; load++) {
        mf_recordio_close(r);
        if (mf_recordio_open(&r, rec, 1 << 20) < 0)
            abort(); /* opened a moment ago */
        while ((rc = mf_recordio_next(r, &x, load)) != 0) {
            if (rc == MF_ERR_FORMAT)
                break;
            if (rc == 1 && !load && mf_recordio_load(r, &x) == 0)
                use(&x);
            if (rc == 1 && load)
                use(&x);
        }
    }
    for (size_t i = 0; i < mf_recordio_index_size(r); i++)
        if (mf_recordio_read_key(r, mf_recordio_index_key(r, i), &x) == 0)
            use(&x);
    mf_recordio_close(r);
    return 0;
}
