/* fuzz_checkpoint.c - libFuzzer harness for the .pth reader (pickle, zip and legacy
 * tar layouts). Built by CMake with -DMF_FUZZ=ON; run by scripts/fuzz.sh (seeds:
 * tests/fixtures/checkpoint/ .pth files, via scripts/make_fuzz_seeds.py).
 *
 * Any input must load or fail with a message naming the buffer; sanitizers catch the
 * rest. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mf/checkpoint.h"
#include "mf/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mf_checkpoint *ck = NULL;
    if (mf_checkpoint_load_mem(&ck, data, size, "fuzz") < 0) {
        if (ck || strncmp(mf_last_error(), "fuzz: ", 6))
            abort();
        return 0;
    }
    for (size_t i = 0; i < ck->count; i++) {
        const mf_tensor *t = &ck->tensors[i];
        volatile float sink = 0;
        for (size_t j = 0; j < t->numel; j++) /* touch every value the reader produced */
            sink += t->data[j];
        (void)sink;
    }
    mf_checkpoint_free(ck);
    return 0;
}
