/* clean.h - decide which rows of an embedding store to drop: low quality (magnitude),
 * per-identity outliers (mislabels), near-duplicates, overlapping identities, small
 * identities. The tool mf-filter is a thin front end (docs/FILTER.md).
 *
 *     mf_clean_params p = mf_clean_default_params();
 *     p.auto_cut = 1; p.outliers = 1; p.dedup_cos = 0.95;
 *     mf_clean_result r;
 *     if (mf_clean_run(in, &p, &r) < 0) die(mf_last_error());
 *     for (uint64_t i = 0; i < r.rows; i++)
 *         if (r.rule[i] == MF_RULE_KEEP) ...;          // else r.figure[i] says why
 *     mf_clean_result_release(&r);
 *
 * Rules apply in this order (each sees only the rows the earlier ones kept):
 *  1. magnitude: --min-magnitude, --auto, --drop-lowest, --drop-lowest-per-label, all
 *     computed on the input's magnitudes (a row failing several is charged to the first);
 *     junk and unrecognisable faces must not pull identity centres or join duplicates;
 *  2. per-identity outliers (each part only when asked for): the floor (min_center_cos),
 *     the spread test (outliers, outlier_k: the cosine to the label's leave-one-out centre
 *     far below what a face of that magnitude in that identity shows, with location and
 *     spread both functions of magnitude, pooled over all identities and shrunk per
 *     identity) and the nearer-identity test (outliers, nearer: a recognisable face
 *     closer to one of the label's most similar identities than to its own); two passes;
 *  3. near-duplicates among the rows still kept, so a copy of a mislabelled sample is
 *     charged to the label rule and a group keeps its best remaining member;
 *  4. identity overlap (merge) on the centres of the cleaned identities;
 *  5. --min-per-label, on the labels after any merge (two small halves of one person
 *     merged may pass).
 * Rows with a negative label count as unlabelled: rules 2, 4 and 5 leave them alone.
 *
 * All passes over embeddings stream the store in chunks; memory is O(rows) small arrays
 * plus O(labels * dim) centres plus the FAISS index of rule 3. */
#ifndef MF_CLEAN_H
#define MF_CLEAN_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "mf/store.h"

typedef enum mf_clean_rule {
    MF_RULE_KEEP = 0,
    MF_RULE_MIN_MAGNITUDE,     /* figure: magnitude */
    MF_RULE_AUTO,              /* figure: magnitude */
    MF_RULE_DROP_LOWEST,       /* figure: magnitude */
    MF_RULE_DROP_LOWEST_LABEL, /* figure: magnitude */
    MF_RULE_CENTER_COS,        /* figure: cosine to the identity centre */
    MF_RULE_SPREAD,            /* figure: cosine to the identity centre */
    MF_RULE_NEARER,            /* figure: cosine to the nearer identity's centre */
    MF_RULE_DEDUP,             /* figure: cosine to the kept member of its group */
    MF_RULE_MIN_PER_LABEL,     /* figure: rows the label had left */
    /* Always on, before every other rule: a magnitude or embedding value that is NaN or
     * infinite (a damaged or foreign store). Such rows take no part in any estimate
     * (the --auto fit, percentiles, centres, spreads). figure: the magnitude. */
    MF_RULE_NOT_FINITE,
    MF_RULE_COUNT
} mf_clean_rule;

/* Short name of a rule ("min-magnitude", "auto", "center-cos", ...). */
const char *mf_clean_rule_name(int rule);

typedef struct mf_clean_params {
    /* rule 1; each off when 0 */
    double min_magnitude;         /* drop magnitude < X (X > 0) */
    int auto_cut;                 /* propose a cut from the magnitude distribution */
    double drop_lowest;           /* percent of all rows, lowest magnitude first */
    double drop_lowest_per_label; /* percent of each label's rows */
    /* rule 2 (needs labels); each part runs only when asked for */
    double min_center_cos; /* floor: cosine to the label's centre below this; 0 = off */
    int outliers;          /* the outlier tests below (spread and nearer-identity) */
    double outlier_k;      /* spread test: flag below -k within-identity spreads of what
                              the row's magnitude and identity predict; 0 = off (5) */
    int nearer;            /* nearer-identity test (1; with outliers) */
    /* rule 3 */
    double dedup_cos;        /* group rows with cosine >= this; 0 = off */
    uint64_t dedup_flat_max; /* one index up to this many rows, else k-means cells
                                    (default 50000) */
    /* rule 4 (needs labels) */
    double merge_cos; /* report label pairs with centre cosine >= this; 0 = off */
    int apply_merge;  /* and relabel each group to one label */
    /* rule 5 (needs labels) */
    int64_t min_per_label; /* 0 = off */
    size_t chunk_rows;     /* rows read per step (default 16384) */
} mf_clean_params;

mf_clean_params mf_clean_default_params(void);

/* Does p contain a rule that needs labels? */
int mf_clean_needs_labels(const mf_clean_params *p);

typedef struct mf_clean_merge {
    int64_t a, b; /* labels, a < b */
    float cos;    /* cosine between their centres */
} mf_clean_merge;

typedef struct mf_clean_result {
    uint64_t rows;
    uint8_t *rule;    /* rows: mf_clean_rule that dropped the row, MF_RULE_KEEP if kept */
    float *figure;    /* rows: the value that failed (see mf_clean_rule) */
    float *magnitude; /* rows: from the store */
    int64_t *label;   /* rows: the input label, or the merged one with apply_merge */
    uint64_t dropped[MF_RULE_COUNT];       /* [MF_RULE_KEEP] holds the rows kept */
    int64_t identities_in, identities_out; /* distinct labels >= 0 */
    int has_labels;                        /* some label >= 0 */
    double auto_cut;                       /* the magnitude cut --auto chose (0 if not run) */
    char auto_reason[512];
    char rule2_reason[640]; /* rule 2: what ran and what it estimated ("" if not run) */
    mf_clean_merge *merges; /* label pairs found by rule 4 */
    size_t n_merges;
    double seconds[4]; /* time in rules 1-2, 3, 4, 5 */
} mf_clean_result;

/* Run the rules on `in` (read only). Fails with MF_ERR_ARG if a label rule is asked for
 * and the store has no labels (all < 0). On success *out owns its arrays: release with
 * mf_clean_result_release. */
int mf_clean_run(mf_store *in, const mf_clean_params *p, mf_clean_result *out);
void mf_clean_result_release(mf_clean_result *r);

/* The dropped-rows report: "id<TAB>label<TAB>magnitude<TAB>rule<TAB>figure" then one
 * line per dropped row of `in` (input labels; ids read only for blocks that hold a
 * dropped row). Returns 0 or a negative mf_status (a write error on f included). */
int mf_clean_write_report(mf_store *in, const mf_clean_result *r, FILE *f);

/* ---- building blocks (exposed for tests and other tools) ------------------------------ */

/* --auto on an array: fits a two-component Gaussian mixture to the magnitudes and cuts
 * where the low component becomes the more likely; without a clear low mode, cuts where
 * the distribution departs from its bulk (median - 4 robust SD). Returns the cut; `why`
 * (may be NULL) receives one sentence. */
double mf_clean_auto_cut(const float *mag, size_t n, char *why, size_t why_len);

/* Quantiles q[0..nq) (each in [0,1], nearest rank) of the values v[i] with mask[i] == 0
 * (mask NULL: all values) that are finite, into out[0..nq); NAN when none qualifies. Sorts a copy:
 * returns 0 or MF_ERR_NOMEM. */
int mf_clean_quantiles(const float *v, const uint8_t *mask, size_t n, const double *q,
                       size_t nq, double *out);

#endif
