/* clean_report.c - the dropped-rows report (mf-filter --report; read back by mf-report):
 * a TSV with a header line and one line per dropped row. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mf/clean.h"
#include "mf/status.h"
#include "mf/tsv.h"

/* One TSV line per dropped row, with the input's label. Ids are read only for blocks that
 * hold a dropped row. */
int mf_clean_write_report(mf_store *in, const mf_clean_result *r, FILE *f)
{
    mf_store_cursor *cur;
    size_t block = mf_store_block_rows(in, MF_COL_ID | MF_COL_LABEL);
    fprintf(f, "id\tlabel\tmagnitude\trule\tfigure\n");
    int rc = 0;
    for (uint64_t s = 0; rc == 0 && s < r->rows; s += block) {
        uint64_t e = r->rows - s < block ? r->rows : s + block, any = 0;
        for (uint64_t i = s; i < e && !any; i++)
            any = r->rule[i] != MF_RULE_KEEP;
        if (!any || (rc = mf_store_cursor_open(&cur, in, MF_COL_ID | MF_COL_LABEL, s, e)) < 0)
            continue;
        const mf_store_block *b;
        if ((rc = mf_store_cursor_next(cur, &b)) > 0) {
            rc = 0;
            for (size_t i = 0; i < b->n; i++)
                if (r->rule[s + i] != MF_RULE_KEEP)
                    mf_tsv_write_field(f, b->id[i]), /* mf/tsv.h: the reader unescapes */
                        fprintf(f, "\t%lld\t%.4f\t%s\t%.4f\n", (long long)b->label[i],
                                r->magnitude[s + i], mf_clean_rule_name(r->rule[s + i]),
                                r->figure[s + i]);
        }
        mf_store_cursor_close(cur);
    }
    if (rc == 0 && ferror(f))
        rc = mf_set_error(MF_ERR_IO, "cannot write the report: %s", strerror(errno));
    return rc;
}
