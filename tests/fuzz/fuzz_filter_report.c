/* fuzz_filter_report.c - libFuzzer harness for mf-report's reader of mf-filter's
 * --report TSV (header columns, exact field counts, escapes, labels and numbers). Any
 * input must be read or refused with a message naming the file and line. */
#include "fuzz_util.h"
#include "mf/status.h"
#include "report/report_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fmemopen((void *)data, size, "r");
    if (!f)
        return 0; /* fmemopen refuses size 0 */
    mf_report_params p = mf_report_default_params();
    rp_data d = {.p = &p};
    int rc = rp_read_filter_report(&d, f, "r.tsv");
    fclose(f);
    if (rc < 0 && !strstr(mf_last_error(), "r.tsv"))
        abort();
    for (size_t k = 0; k < d.n_rules; k++) {
        if (d.rules[k].n_faces > (size_t)p.per_rule)
            abort();
        for (size_t i = 0; i < d.rules[k].n_faces; i++)
            if (d.rules[k].faces[i].thumb >= d.n_thumbs)
                abort();
        free(d.rules[k].name);
        free(d.rules[k].faces);
    }
    for (size_t i = 0; i < d.n_thumbs; i++)
        free(d.thumbs[i].id);
    free(d.thumbs);
    free(d.rules);
    return 0;
}
