/* fuzz_list.c - libFuzzer harness for list files (plain lines with label and landmark
 * fields, tab lines, im2rec .lst, NUL-separated) and the text rules every reader shares
 * (labels, id escaping).
 *
 * The first input byte picks the variant: bit 0 a .lst name, bit 1 NUL-separated, bit 2
 * a --root. The list is expanded with reading off (entries are not opened), so only the
 * parser runs; every sample must carry a valid UTF-8 id, and an id must unescape to the
 * bytes it came from. */
#include "fuzz_util.h"
#include "mf/source.h"
#include "mf/status.h"

static void text_rules(const uint8_t *data, size_t size)
{
    int64_t v;
    if (mf_label_parse((const char *)data, size, 1, &v) == 0 && (v < -1 || v >= MF_LABEL_LIMIT))
        abort();
    char *s = strndup((const char *)data, size);
    if (!s)
        return;
    int invalid;
    char *id = mf_id_escape(s, &invalid), *back = id ? mf_id_unescape(id) : NULL;
    if (id && (!mf_utf8_valid(id) || invalid == mf_utf8_valid(s)))
        abort();
    if (back && strcmp(back, s))
        abort(); /* the escape must be reversible */
    free(back);
    free(id);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int mode = data[0];
    text_rules(data + 1, size - 1);
    const char *path = fuzz_write(mode & 1 ? "f.lst" : "f.list", data + 1, size - 1);
    mf_source_params p = mf_source_default_params();
    p.null_lists = (mode & 2) != 0;
    p.root = mode & 4 ? "root" : NULL;
    p.label_from_dir = (mode & 8) != 0;
    mf_source *s;
    if (mf_source_new(&s, &p) < 0 || mf_source_add(s, path, MF_INPUT_LIST) < 0)
        abort();
    mf_source_set_reading(s, 0);
    mf_sample x;
    int rc;
    while ((rc = mf_source_next(s, &x)) > 0)
        if (!mf_utf8_valid(x.id) || (x.label < -1) || x.data)
            abort();
    if (rc < 0 && !mf_last_error()[0])
        abort();
    mf_source_free(s);
    return 0;
}
