/* source.h - one iterator over every kind of input: image files, directories, list
 * files, archives (tar, tar.gz/.zst/.xz, zip, WebDataset shards) and insightface
 * RecordIO. It yields encoded image bytes with an id and a label; decoding is separate
 * (include/mf/image.h) so it can run elsewhere.
 *
 *     mf_source_params p = mf_source_default_params();
 *     p.label_from_dir = 1;
 *     mf_source *src;
 *     mf_source_new(&src, &p);
 *     for (int i = 0; i < n_inputs; i++) mf_source_add(src, inputs[i], MF_INPUT_AUTO);
 *     mf_source_add(src, "faces.list", MF_INPUT_LIST);      // "-" reads stdin
 *     mf_sample s;
 *     int rc;
 *     while ((rc = mf_source_next(src, &s)) > 0) {
 *         if (s.error) record_failure(s.id, s.error);          // and go on
 *         else embed(s.id, s.label, s.data, s.size, s.has_landmarks ? s.landmarks : NULL);
 *     }
 *     if (rc < 0) die(mf_last_error());                      // out of memory only
 *     mf_source_free(src);
 *
 * Order is deterministic: inputs in the order added; directories walked recursively in
 * byte-wise sorted order (only .jpg/.jpeg/.png files, any case); archives and .rec files
 * in their stored order; lists in line order.
 *
 * Ids (the store's /id): a file's path as given or as reached from the directory given
 * (list entries: resolved against the list file's folder), `archive.tar//member` for an
 * archive member, `train.rec//<key>` for a RecordIO record.
 *
 * Bad inputs never stop the iteration: an unreadable file, a broken member or record is
 * a sample with `error` set (a short reason) and the next call goes on. A corrupt
 * archive or .rec yields one failed sample naming the damage (id = the archive path, or
 * `train.rec//@<offset>`) and then ends that input; what came before was yielded.
 *
 * Labels: from the list line, a WebDataset `.cls` member, or the RecordIO header; with
 * label_from_dir, files without one take the name of their parent folder, and names are
 * numbered 0..K-1 in sorted order of all names seen across the inputs (this needs one
 * pass over directory listings, lists and archive headers before the first sample).
 *
 * Sharding (shard_count > 1): a sample belongs to shard mix(fnv1a64(id)) % shard_count
 * (mf_shard_of). A hash of the id, not the position, so that a sample's shard depends
 * on nothing but its id: it does not move when other inputs are added or reordered,
 * and a shard skips other shards' samples without reading them (directory files and
 * list entries are not opened, RecordIO records are seeked over; archive members still
 * stream past). Shards are disjoint and together cover every sample; sizes are equal
 * up to statistical noise (about sqrt(n/N)).
 *
 * A source is self-contained: no global state, it never logs; one thread at a time
 * (typically a producer thread feeding a decode/network pipeline). */
#ifndef MF_SOURCE_H
#define MF_SOURCE_H

#include <stddef.h>
#include <stdint.h>

typedef enum mf_input_kind {
    MF_INPUT_AUTO = 0, /* directory, .rec, archive (by name or signature), or image */
    MF_INPUT_IMAGE,
    MF_INPUT_DIR,
    /* never guessed: list files are named as such by the caller. Lines
     * `path [label] [x1 y1 ... x5 y5]`, blank-separated; with a tab, the path is all
     * before the first tab; `#` comments */
    MF_INPUT_LIST,
    MF_INPUT_ARCHIVE,
    MF_INPUT_RECORDIO,
} mf_input_kind;

typedef struct mf_source_params {
    int label_from_dir;     /* parent folder name -> label (see above) */
    size_t max_image_bytes; /* larger encoded images fail ("file too large"); 64 MB */
    int shard_index;        /* K of K/N, 0-based */
    int shard_count;        /* N; 0 or 1 = no sharding */
} mf_source_params;

mf_source_params mf_source_default_params(void);

typedef struct mf_sample {
    const char *id;      /* never NULL */
    int64_t label;       /* -1 if none */
    const uint8_t *data; /* encoded image (JPEG/PNG/...), NULL when error is set */
    size_t size;
    const char *error;   /* NULL, or why this sample cannot be used */
    int has_landmarks;   /* landmarks valid (from a list line) */
    float landmarks[10]; /* x1 y1 ... x5 y5 in source pixels */
} mf_sample;             /* all pointers valid until the next mf_source_next/free */

typedef struct mf_source mf_source;

int mf_source_new(mf_source **out, const mf_source_params *params);
/* Queue an input. Only argument errors fail here (e.g. AUTO on a path that does not
 * exist still succeeds: it becomes a failed sample, so a run records it). */
int mf_source_add(mf_source *s, const char *path, mf_input_kind kind);
/* Next sample of this shard: 1 (filled), 0 at the end, negative mf_status on a fatal
 * error (out of memory). */
int mf_source_next(mf_source *s, mf_sample *out);
/* Label names from label_from_dir: label id i <-> name. Valid after the first
 * mf_source_next (0 names before). */
size_t mf_source_label_count(const mf_source *s);
const char *mf_source_label_name(const mf_source *s, size_t label);
/* Samples this shard will yield, for progress bars and ETAs: *n counts directory,
 * list and file entries exactly, and RecordIO images through the .idx (keys below the
 * header's N+1 when record 0 is an insightface header). Archives cannot be counted
 * without reading them: returns 1 if *n is exact, 0 if archives (or a .rec without
 * .idx) were left out, negative on a fatal error. Call before the first sample. */
int mf_source_count(mf_source *s, uint64_t *n);
/* Resume support: with reading off, mf_source_next still yields every sample in the
 * same order with its id, label and landmarks, but files from directories, lists and
 * single paths are not opened (data NULL, error set only for problems known without
 * reading, like a bad list line). Archives and .rec files are still read, because
 * their members and records are only known by reading. So a resumed run can walk past
 * the M samples it already stored, checking their ids, at the cost of a directory
 * walk. Default: on. */
void mf_source_set_reading(mf_source *s, int on);
/* Skip predicate: samples whose id makes fn return nonzero are passed over like other
 * shards' samples, before their bytes are read (a resumed run skips what it already
 * stored without re-reading it). fn runs on the thread calling mf_source_next. */
typedef int (*mf_source_skip_fn)(const char *id, void *ctx);
void mf_source_set_skip(mf_source *s, mf_source_skip_fn fn, void *ctx);
void mf_source_free(mf_source *s);

/* ---- sharding helpers ----------------------------------------------------------- */

/* Which shard (0..n-1) an id belongs to: FNV-1a 64 of its bytes, finished with the
 * murmur3 64-bit avalanche, modulo n. Fixed constants: the same on every machine. */
int mf_shard_of(const char *id, int n);
/* Parse "K/N" (0 <= K < N). */
int mf_shard_parse(const char *spec, int *k, int *n);
/* K/N from SLURM_ARRAY_TASK_ID, _MIN, _COUNT and _STEP (1 if unset): K = the task's
 * position (id - min) / step, N = count; so --array=1-7:2 gives ids 1,3,5,7 -> K 0..3
 * of N 4. Returns 1 if set from the environment, 0 if not in a SLURM array, or
 * MF_ERR_ARG if the variables are inconsistent (e.g. a list like --array=1,4,9 whose
 * ids are not min + step*k: then pass --shard explicitly). `env` is NULL (getenv) or a
 * stub for tests. */
int mf_shard_from_slurm(int *k, int *n, const char *(*env)(const char *name));

#endif
