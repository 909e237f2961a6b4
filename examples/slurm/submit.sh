#!/bin/bash
# submit.sh - embed a face collection with a SLURM job array, then merge the shards.
#
#   MODEL=magface_epoch_00025.pth INPUTS=faces.list examples/slurm/submit.sh
#
# Settings (environment variables; defaults in brackets):
#   MODEL           the official MagFace checkpoint, or a converted .mfm        (required)
#   INPUTS          the input list: `path [label] [5 landmarks]` per line        (required)
#   SHARDS [16]     how many shards (array tasks) the inputs are split into
#   CPUS [8]        CPUs per task (mf-embed uses them all); MEM [4G] memory per task
#   TIME [24:00:00] time limit per task; PARTITION [cluster default]
#   TOOLS           the folder holding mf-embed and mf-merge [the one on PATH]
#   OUTDIR [shards] where the shard stores go (part-K.h5 is shard K)
#   MERGED [faces.h5] the merged store;  LOGS [logs] the job logs (appended to)
#   PROGRESS_EVERY [60] seconds between progress lines in the logs
#   ONLY            re-run only these tasks (e.g. 3 or 3,7); the merge follows them
#
# Everyday events this survives:
#   - broken images: a task that skipped some inputs (exit 3) counts as done; the skips
#     are listed in the merged store's /failed (mf-inspect --failed);
#   - a task that failed (node lost, out of memory): the merge still runs, refuses the
#     incomplete set and says which shards are missing; re-run them with ONLY=3,7;
#   - preemption or `scontrol requeue`: the task resumes from its last flush;
#   - submitting again: finished shards are a no-op (exit 0), only missing work runs,
#     and the merge is redone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "submit.sh: $*" >&2; exit 2; }

: "${MODEL:?set MODEL to the checkpoint (see the top of $0)}"
: "${INPUTS:?set INPUTS to the input list (see the top of $0)}"
SHARDS=${SHARDS:-16} CPUS=${CPUS:-8} MEM=${MEM:-4G} TIME=${TIME:-24:00:00}
OUTDIR=${OUTDIR:-shards} MERGED=${MERGED:-faces.h5} LOGS=${LOGS:-logs}
PROGRESS_EVERY=${PROGRESS_EVERY:-60}
if [ -z "${TOOLS:-}" ]; then
    embed=$(command -v mf-embed) ||
        die "mf-embed is not on PATH: set TOOLS to the folder holding the mf-* tools"
    TOOLS=$(dirname "$embed")
fi
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || die "SHARDS must be a positive integer, got '$SHARDS'"
for t in mf-embed mf-merge mf-inspect; do
    [ -x "$TOOLS/$t" ] || die "no executable $t in TOOLS='$TOOLS'"
done
[ -r "$MODEL" ] || die "cannot read MODEL '$MODEL'"
[ -r "$INPUTS" ] || die "cannot read INPUTS '$INPUTS'"

# The jobs may start in another folder than this shell's: absolute paths only.
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
mkdir -p "$OUTDIR" "$LOGS"
export MODEL=$(abs "$MODEL") INPUTS=$(abs "$INPUTS") TOOLS=$(cd "$TOOLS" && pwd)
export OUTDIR=$(abs "$OUTDIR") MERGED=$(abs "$MERGED") SHARDS PROGRESS_EVERY
LOGS=$(abs "$LOGS")

common=(--parsable --export=ALL --time="$TIME" --open-mode=append)
[ -n "${PARTITION:-}" ] && common+=(--partition="$PARTITION")
array=$(sbatch "${common[@]}" --array="${ONLY:-0-$((SHARDS - 1))}" \
    --cpus-per-task="$CPUS" --mem="$MEM" --output="$LOGS/embed-%A_%a.log" \
    "$here/embed-array.sbatch")
array=${array%%;*}
# afterany: the merge runs whatever the tasks' fate, and is the one place that says
# whether the set is complete (mf-merge refuses a missing shard, naming it).
merge=$(sbatch "${common[@]}" --dependency="afterany:$array" --cpus-per-task=1 --mem=2G \
    --output="$LOGS/merge-%j.log" "$here/merge.sbatch")
merge=${merge%%;*}
echo "queued embedding array $array (${ONLY:+tasks $ONLY of }$SHARDS shards) and merge $merge;" \
    "logs in $LOGS" >&2
echo "$array $merge"
