/* export.h - write the samples of a store in the formats trainers read, taking the
 * original image bytes again from each row's id (never re-encoding them).
 *
 *     mf_export_params p = mf_export_default_params();
 *     p.format = MF_EXPORT_WDS; p.output = "clean"; p.shard_size = 10000;
 *     mf_export_stats st;
 *     if (mf_export_run(store, &p, &st) < 0) die(mf_last_error());
 *     if (st.missing || st.skipped) exit(3);   // each one was logged as a warning
 *
 * Formats (docs/EXPORT.md):
 *   rec       insightface RecordIO: OUT.rec + OUT.idx, header record 0, images keyed
 *             1..N grouped by class, identity records [first, end)
 *   wds       WebDataset shards OUT-000000.tar ...: <key>.jpg|.png, <key>.cls, <key>.json
 *   list      "path<TAB>class" lines, for rows whose id is a plain file
 *   featlist  MagFace's feature text: "<id> " then dim values each followed by a space
 *   tree      OUT/<class>/<row>_<name>: symlinks to plain files (copies with `copy`),
 *             archive members and RecordIO records written out as files
 *
 * Classes: the distinct non-negative values of the label column ("label" or "cluster")
 * of the exported rows, renumbered 0..K-1 in ascending order. Rows with a negative value
 * are left out (counted in `unlabelled`) except by featlist, which needs no class.
 *
 * Outputs appear atomically: everything is written under temporary names and renamed
 * into place at the end; on failure the temporaries are removed. The store is only read.
 * Each missing or unreadable source image is logged (MF_LOG_WARN, naming the id) and
 * skipped. */
#ifndef MF_EXPORT_H
#define MF_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include <stdio.h>

#include "mf/progress.h"
#include "mf/store.h"

typedef enum mf_export_format {
    MF_EXPORT_REC,
    MF_EXPORT_WDS,
    MF_EXPORT_LIST,
    MF_EXPORT_FEATLIST,
    MF_EXPORT_TREE,
} mf_export_format;

typedef struct mf_export_params {
    mf_export_format format;
    const char *output;       /* rec: "x" or "x.rec" (-> x.rec, x.idx); wds: shard prefix;
                               * list/featlist: file; tree: directory (must not exist) */
    const char *label_column; /* "label" (default) or "cluster" */
    const char *root;         /* resolve relative ids against this folder; NULL = cwd */
    size_t shard_size;        /* wds: samples per shard (default 10000) */
    int copy;                 /* tree: copy plain files instead of symlinking */
    int overwrite;            /* replace existing outputs */
    int shuffle;              /* wds, rec: write rows in a random order (seeded) */
    uint64_t seed;            /* the shuffle's seed (default 0) */
    mf_progress *progress;    /* advanced by the rows handled; NULL = none */
} mf_export_params;

mf_export_params mf_export_default_params(void);

typedef struct mf_export_stats {
    uint64_t written;    /* samples in the output */
    uint64_t classes;    /* K */
    uint64_t unlabelled; /* rows left out for a negative class */
    uint64_t missing;    /* rows whose image could not be read (each logged) */
    uint64_t skipped;    /* list: rows not backed by a plain file (each logged) */
    uint64_t files;      /* output files written (shards, or 2 for rec) */
} mf_export_stats;

/* Parse "rec", "wds", "list", "featlist", "tree". Returns 0 or MF_ERR_ARG. */
int mf_export_format_parse(const char *name, mf_export_format *out);

/* Export every row of `s`. Returns 0 (check stats for skips) or a negative mf_status;
 * nothing is left at the output names on failure. */
int mf_export_run(mf_store *s, const mf_export_params *p, mf_export_stats *stats);

/* The official MagFace feature text of every row of `s` into f ("<id> " then each value
 * with "%.9g " — every float32 reads back exactly — and a newline). Ids containing a
 * blank or a line break cannot be written in this format: they are skipped, logged and
 * counted. Returns 0, or a negative mf_status (ferror on f included). The one writer of
 * this format: mf-export -f featlist and mf-embed --feat-list both call it. */
int mf_export_feature_text(mf_store *s, FILE *f, mf_progress *progress, uint64_t *written,
                           uint64_t *skipped);

/* ---- original image bytes by id ------------------------------------------------------
 * Ids name a plain file, `archive//member` (any archive libarchive reads) or
 * `train.rec//<key>` (through train.idx). mf_fetch_images reads the images of many ids
 * in an order that opens each archive and .rec once: members of one archive are taken
 * in one streaming pass, whatever their order in `ids`. */

typedef enum mf_id_kind { MF_ID_FILE, MF_ID_ARCHIVE, MF_ID_RECORDIO } mf_id_kind;

/* Kind of an id, and where its container part ends (length of "archive.tar" in
 * "archive.tar//member"; strlen(id) for a plain file). */
mf_id_kind mf_id_classify(const char *id, size_t *container_len);

/* Called once per id: data != NULL with the bytes (valid during the call only; always a
 * JPEG or PNG, anything else is reported as not an image), or data == NULL and `why`
 * says what went wrong. Return nonzero to stop (the value is
 * returned by mf_fetch_images). */
typedef int (*mf_fetch_fn)(void *ctx, size_t i, const uint8_t *data, size_t size,
                           const char *why);

/* Fetch ids[0..n); `root` as in mf_export_params. Images larger than max_bytes
 * (0 = 64 MiB) are reported as failures. Returns 0, the callback's nonzero value, or a
 * negative mf_status (out of memory). */
int mf_fetch_images(char *const *ids, size_t n, const char *root, size_t max_bytes,
                    mf_fetch_fn fn, void *ctx);

#endif
