#!/bin/bash
# submit.sh - queue the embedding array, then the merge that waits for all of it.
#   MODEL=magface_epoch_00025.pth INPUTS=faces.list examples/slurm/submit.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p logs
array=$(sbatch --parsable --export=ALL "$here/embed-array.sbatch")
sbatch --dependency="afterok:${array%%;*}" --export=ALL "$here/merge.sbatch"
echo "queued embedding array $array and its merge" >&2
