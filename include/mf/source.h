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
 * (list entries: resolved against params.root, by default the list file's folder),
 * `archive.tar//member` for an archive member, `train.rec//<key>` for a RecordIO
 * record. Ids are always valid UTF-8: names that are not are escaped (mf_id_escape).
 *
 * List files, one entry per line (`#` starts a comment line, blank lines are skipped):
 *   - `path [label] [x1 y1 ... x5 y5]`. The trailing fields are taken off only where
 *     they parse: 1 label, or 1 label and 10 numbers, or 10 numbers; everything before
 *     them is the path, spaces included (`find | mf-embed --list -` works with any
 *     name). A line whose trailing fields look numeric but fit none of these, or whose
 *     path ends in a number right before the fields, is a failed sample naming the
 *     list and line ("bad line 6 of 'a.list': ..."); give such paths with a tab.
 *   - With a tab, the path is everything before the first tab and the fields after it
 *     must fit exactly (`path<TAB>label`, as mf-export writes).
 *   - MXNet im2rec `.lst` lines, `index<TAB>label[<TAB>label...]<TAB>path`: taken for a
 *     list named *.lst, or when the first entry has 3 or more tab-separated fields of
 *     which the first is an integer and the second a number. The first label column is
 *     the label (written as "%f" by im2rec: it must be integral).
 *   - params.null_lists: entries are separated by NUL bytes (find -print0) and are
 *     paths only, byte for byte. In a newline list a NUL byte is an error naming the
 *     line, so a -print0 list given without it can never pass as one short list.
 * A list entry that cannot be opened names the list and line in its reason.
 *
 * Files are opened without blocking (mf_open_regular): a FIFO, device or socket among
 * the inputs is a failed sample "not a regular file", never a hang.
 *
 * Bad inputs never stop the iteration: an unreadable file, a broken member or record is
 * a sample with `error` set (a short reason) and the next call goes on. A corrupt
 * archive or .rec yields one failed sample naming the damage (id = the archive path, or
 * `train.rec//@<offset>`) and then ends that input; what came before was yielded.
 *
 * Labels: from the list line, a WebDataset `.cls` member, or the RecordIO header, all
 * by one rule (mf_label_parse below; a bad one fails the sample, naming it); with
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
    /* never guessed: list files are named as such by the caller ("-" = stdin; a FIFO
     * such as bash's <(find ...) is fine). See "List files" above. */
    MF_INPUT_LIST,
    MF_INPUT_ARCHIVE,
    MF_INPUT_RECORDIO,
} mf_input_kind;

typedef struct mf_source_params {
    int label_from_dir;     /* parent folder name -> label (see above) */
    size_t max_image_bytes; /* larger encoded images fail ("file too large"); 64 MB */
    int shard_index;        /* K of K/N, 0-based */
    int shard_count;        /* N; 0 or 1 = no sharding */
    /* Relative paths in list files are resolved against this folder; "." (or "") keeps
     * them as written, relative to the working directory, as MagFace's gen_feat.py
     * reads its img.list. NULL (default): against the list file's own folder (stdin:
     * the working directory). */
    const char *root;
    int null_lists; /* list files are NUL-separated paths (find -print0), no fields */
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
    const char *warning; /* NULL, or something to tell the user about a usable sample
                          * (e.g. its file name is not UTF-8, so the id is escaped) */
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

/* ---- the rules every reader shares ------------------------------------------------ */

/* Labels read from text (list lines, WebDataset `.cls`, im2rec `.lst`) follow one rule:
 * a decimal integer in [0, 2^53), digits only (no sign, exponent, fraction or trailing
 * text), surrounded by nothing but blanks; "-1" means "no label" where allow_none is
 * set. So "1e99", "1.5", "-7", "12abc" and 2^53 are refused, never rounded or cut.
 * Returns 0 and *out, or MF_ERR_FORMAT with a message quoting the text (the caller
 * adds which file). */
#define MF_LABEL_LIMIT ((int64_t)1 << 53)
int mf_label_parse(const char *text, size_t len, int allow_none, int64_t *out);
/* The same rule for labels stored as numbers (RecordIO float32, im2rec `.lst` columns
 * written as "%f"): integral, in [0, 2^53), or -1 where allow_none. */
int mf_label_from_float(double v, int allow_none, int64_t *out);

/* Ids are valid UTF-8 (h5py's .asstr() reads them). A file or member name that is not
 * becomes an id with each byte outside a valid UTF-8 sequence written as `\xNN` (two
 * lowercase hex digits), and a backslash written as `\\`; every other byte is kept.
 * So an id is the name itself unless the name holds a backslash or invalid UTF-8, and
 * mf_id_unescape gives the name back byte for byte: tools that open a file named by an
 * id (export, report) must call it. `*was_invalid` (may be NULL) is set when the name
 * was not UTF-8 (a backslash alone does not count). Both return a malloc'ed string, or
 * NULL when out of memory. mf_id_unescape is lenient: a backslash not starting one of
 * the two escapes is kept, as ids written before this rule may hold one. */
char *mf_id_escape(const char *raw, int *was_invalid);
char *mf_id_unescape(const char *id);
int mf_utf8_valid(const char *s); /* 1 if s is valid UTF-8 (RFC 3629) */

/* Open an input file for reading without ever blocking: FIFOs, devices, sockets and
 * directories are refused before anything is read (a FIFO named b.jpg would otherwise
 * hang the run). Returns a blocking read-only fd, or -1 with *why set to a static
 * reason ("not a regular file", "is a directory", or strerror). */
int mf_open_regular(const char *path, const char **why);

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
