/* durable.h - the one way mfkit writes an output: nothing incomplete is ever published
 * and no input is ever destroyed (DESIGN.md, "Outputs", a CONTRACT).
 *
 *     mf_run_add_input("in.h5");                    // each input of the run, first
 *     mf_output *o;
 *     if (mf_output_open(&o, "dropped.tsv", overwrite ? MF_OUTPUT_OVERWRITE : 0) < 0)
 *         die(mf_last_error());
 *     fprintf(mf_output_stream(o), "id\tlabel\n");  // or create mf_output_temp(o) (HDF5)
 *     if (mf_output_commit(o) < 0)                  // or mf_output_abort(o) on failure
 *         die(mf_last_error());
 *
 * What every output gets:
 * - refused (MF_ERR_ARG) if it is, by device and inode after symlinks, one of the run's
 *   inputs (mf_run_add_input) or another output of the same run;
 * - refused (MF_ERR_EXISTS) if it exists, unless MF_OUTPUT_OVERWRITE;
 * - a regular output is written under a temporary name in its own folder,
 *   "<path>.partial-<pid>-<random>", created exclusively (O_EXCL) and locked (an OFD lock,
 *   which HDF5's own flock does not disturb) for as long as the run holds it. Commit
 *   flushes and fsyncs it, renames it over <path> (without clobbering a file that
 *   appeared meanwhile unless MF_OUTPUT_OVERWRITE) and fsyncs the folder. Abort removes
 *   it. Nothing the run did not create is deleted;
 * - temporaries of runs that died (name of that form, lock free) are removed when a later
 *   run opens the same output, with a log line naming them;
 * - "-" (standard output), FIFOs and devices (also anything under /dev or /proc, such as
 *   /dev/stdout) are written straight through, never renamed over; commit flushes;
 * - a symlink is followed: the file it points to is replaced, the link stays.
 *
 * Resumable outputs (MF_OUTPUT_RESUMABLE, mf-embed's store) use the fixed temporary name
 * "<path>.partial", so that a later run can find it: if one exists and no live run holds
 * its lock, mf_output_resumed() says so and the caller decides (resume, or
 * mf_output_restart); a partial locked by a live run is refused (MF_ERR_BUSY). A partial
 * gets its name already locked, so of two runs started at once one writes and the other
 * is refused, and a run never takes over a partial its writer has just published.
 *
 * Outputs are opened and committed from one thread (the tools' main thread). */
#ifndef MF_DURABLE_H
#define MF_DURABLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct mf_output mf_output;

enum mf_output_flags {
    MF_OUTPUT_OVERWRITE = 1u << 0,    /* replace an existing output (else MF_ERR_EXISTS) */
    MF_OUTPUT_SEEKABLE = 1u << 1,     /* must be a regular file (HDF5): refuse "-", FIFOs */
    MF_OUTPUT_DIRECTORY = 1u << 2,    /* the output is a folder (a tree of files) */
    MF_OUTPUT_RESUMABLE = 1u << 3,    /* fixed temp "<path>.partial" that outlives the run */
    MF_OUTPUT_MAKE_PARENTS = 1u << 4, /* create missing parent folders (mkdir -p) */
};

/* Record an input of this run (a file or folder name as given; "-" and names that do not
 * exist are ignored). Outputs that are the same file are refused. */
int mf_run_add_input(const char *path);

/* Forget every recorded input and output (tests). */
void mf_run_reset(void);

int mf_output_open(mf_output **out, const char *path, unsigned flags);

/* The name the user gave. */
const char *mf_output_path(const mf_output *o);
/* Where to write: the temporary file or folder, or the target itself when written
 * straight through. Valid until commit or abort. */
const char *mf_output_temp(const mf_output *o);
/* Written straight through ("-", FIFO, device): no temporary, nothing to rename. */
int mf_output_is_direct(const mf_output *o);
/* A stdio stream on the output (opened on first call; stdout for "-"). Text outputs
 * write through it; commit flushes and checks it. NULL and an error if it cannot. */
FILE *mf_output_stream(mf_output *o);

/* MF_OUTPUT_RESUMABLE: an unfinished "<path>.partial" left by an earlier run was found
 * (and is now held by this run). */
int mf_output_resumed(const mf_output *o);
/* MF_OUTPUT_RESUMABLE: empty the found partial to start over (keeps the lock). */
int mf_output_restart(mf_output *o);

/* Make sure `ahead` bytes beyond the temporary's current end are allocated on disk
 * (fallocate, size unchanged), so that a writer that cannot stop cleanly in the middle
 * of a write (HDF5) never meets a full disk there: a full disk shows here instead,
 * before anything is written (MF_ERR_IO naming the output). Best effort where the
 * filesystem cannot reserve. The reservation is released at commit or suspend. */
int mf_output_reserve(mf_output *o, uint64_t ahead);
/* fsync what was written to the temporary so far (the file is written by someone else,
 * e.g. HDF5): 0 or MF_ERR_IO. */
int mf_output_sync(mf_output *o);
/* Publish: flush, fsync, rename into place, fsync the folder. Frees o whatever the
 * result; on failure the temporary is removed (a resumable one is kept). */
int mf_output_commit(mf_output *o);
/* Publish several outputs that belong together (train.rec + train.idx): every one is
 * made durable before the first is renamed, and they are renamed last to first, so that
 * outs[0] (put the primary output there: the store, the .rec, shard 0) exists only once
 * all the others do. Frees them all. */
int mf_output_commit_all(mf_output **o, size_t n);
/* Make what was written durable and release the file now (its stream is closed); the
 * temporary stays for a later commit. For sets of many files (WebDataset shards) that
 * would otherwise keep one descriptor each open until the end. While sealed temporaries
 * wait, a marker "<folder>/.mfkit-sealed.partial-<pid>-<4 hex>" (locked, removed after)
 * tells other runs that they belong to a live run. */
int mf_output_seal(mf_output *o);
/* Give up: remove the temporary (a resumable partial too) and free o. NULL is a no-op. */
void mf_output_abort(mf_output *o);
/* MF_OUTPUT_RESUMABLE: stop without publishing, keep the partial for a later run. */
void mf_output_suspend(mf_output *o);
/* Abort every output still open (resumable ones are suspended): what a program calls on
 * its way out after a failure (the tools do it at exit), so no temporary is left. */
void mf_output_abort_all(void);

/* Remove a file left by an earlier run of the same set of outputs (WebDataset shards
 * beyond the new last one, with --overwrite), so the set on disk is exactly this run's.
 * 1 removed, 0 absent, < 0 refused (an input of the run, not a regular file) or failed. */
int mf_output_remove_extra(const char *path);

/* ---- helpers for code that manages files inside an output folder ------------------- */

/* fsync a file or folder by name: 0 or MF_ERR_IO naming it. */
int mf_fsync_path(const char *path);
/* fsync the folder holding path, after a rename into it. */
int mf_fsync_parent_dir(const char *path);
/* Create the missing folders leading to path (mkdir -p of its parent). */
int mf_make_parents(const char *path);
/* A scratch file in the folder of `path` (same disk as the output), already unlinked: it
 * vanishes when closed, whatever happens to the run. */
FILE *mf_scratch_file(const char *path);

#endif
