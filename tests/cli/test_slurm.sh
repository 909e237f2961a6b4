#!/usr/bin/env bash
# The SLURM workflow of examples/slurm on a real single-node SLURM (Debian's slurm-wlm
# and munge, started by scripts/slurm_local.sh in this test's folder, stopped at the
# end), through the everyday events: a broken image in one shard, a requeue, a
# resubmission, a re-run of one task, a merge with a shard missing; then the kNN graph
# in pieces (examples/slurm/graph-submit.sh) and clustering on it. The merged store, the
# graph and the clusters must equal one-process runs. Needs root (the daemons); skipped
# otherwise.
source "$(dirname "$0")/lib.sh"
need_python_module h5py
[ "$(id -u)" = 0 ] || skip "slurm: needs root to run a private SLURM (munged, slurmctld, slurmd)"
for b in munged slurmctld slurmd sbatch; do
  command -v "$b" >/dev/null || skip "slurm: $b missing (scripts/setup.sh installs slurm-wlm and munge)"
done
EX="$MF_SOURCE_DIR/examples/slurm"
CHECK="$MF_SOURCE_DIR/tests/cli/embed_check.py"
SL="$T/slurm"
set +e; bash "$MF_SOURCE_DIR/scripts/slurm_local.sh" start "$SL"; rc=$?; set -e
[ "$rc" = 0 ] || { [ "$rc" = 77 ] && skip "slurm: cannot start"; fail "slurm did not start"; }
trap 'bash "$MF_SOURCE_DIR/scripts/slurm_local.sh" stop "$SL"; rm -rf "$T"' EXIT
export SLURM_CONF="$SL/slurm.conf"

step() { echo "slurm: $(date +%T) $*" >&2; }
# Wait until none of the given jobs is pending or running; then print each one's
# (and each array task's) state, one per line.
wait_jobs() {
  for _ in $(seq 600); do
    [ -z "$(squeue -h -j "$(IFS=,; echo "$*")" 2>/dev/null)" ] && break
    sleep 0.5
  done
  [ -z "$(squeue -h -j "$(IFS=,; echo "$*")" 2>/dev/null)" ] ||
    { squeue >&2; fail "jobs $* still queued after 300 s"; }
  for j in "$@"; do scontrol -o show job "$j" | grep -oE 'JobState=[A-Z_]+'; done
}
all_completed() { # jobs...
  local states
  states=$(wait_jobs "$@")
  if grep -qv COMPLETED <<<"$states"; then
    tail -n 20 logs/*.log >&2
    fail "not every job completed: $(echo $states)"
  fi
}

# inputs: the sample faces and one truncated JPEG
find "$MF_SOURCE_DIR/data/faces" -name '*.jpg' | sort >in.list
cp "$MF_FIXTURES/source/broken/truncated.jpg" "$T/broken.jpg"
echo "$T/broken.jpg" >>in.list
export MODEL="$MF_FIXTURES/model/tiny_dp.pth" INPUTS=in.list SHARDS=3 CPUS=1 MEM=512M
export TIME=10 PROGRESS_EVERY=1 TOOLS="$(dirname "$(command -v mf-embed)")"
expect_exit 3 mf-embed -q -m "$MODEL" --list in.list -o one.h5
merged_is_one_run() {
  "$PY" "$CHECK" same-sorted one.h5 faces.h5
  "$PY" -c "
import h5py
f = [x for x in h5py.File('faces.h5')['failed/id'].asstr()[:]]
assert len(f) == 1 and f[0].endswith('broken.jpg'), f"
}

# 1. the array with a broken image in one shard: every task and the merge succeed
step "array with a broken image"
read -r array merge < <("$EX/submit.sh" 2>/dev/null)
all_completed "$array" "$merge"
merged_is_one_run
grep -q "some inputs were skipped" logs/embed-"${array}"_*.log || fail "no task reported its skip"

# 2. a requeue of a finished task: it runs again, finds its store complete, succeeds,
# and its log keeps the first attempt
step "requeue"
scontrol requeue "${array}_1"
# a requeued job waits two minutes before it may start again: not in a test
scontrol update jobid="${array}_1" StartTime=now
all_completed "${array}_1"
log=logs/embed-${array}_1.log
[ "$(grep -c "task 1 on" "$log")" = 2 ] || { cat "$log" >&2; fail "the requeue did not append to the log"; }
grep -q "nothing to embed" "$log" || fail "the requeued task redid its work"

# 3. a resubmission: finished shards are a no-op, the merge is redone
step "resubmission"
sums=$(sha256sum shards/part-*.h5)
read -r array2 merge2 < <("$EX/submit.sh" 2>/dev/null)
all_completed "$array2" "$merge2"
[ "$sums" = "$(sha256sum shards/part-*.h5)" ] || fail "a resubmission changed finished shards"
merged_is_one_run

# 4. a task that failed: its shard is missing; the merge runs anyway and refuses,
# naming it; re-running just that task (ONLY=1) embeds shard 1 of 3 and completes
step "failed task, re-run one"
rm shards/part-1.h5
read -r _ merge3 < <(ONLY=2 "$EX/submit.sh" 2>/dev/null)
[ "$(wait_jobs "$merge3")" = "JobState=FAILED" ] || fail "a merge with a shard missing succeeded"
grep -q "shard 1/3 missing" logs/merge-"$merge3".log || fail "merge log: $(cat logs/merge-"$merge3".log)"
read -r array4 merge4 < <(ONLY=1 "$EX/submit.sh" 2>/dev/null)
all_completed "$array4" "$merge4"
"$PY" -c "
import h5py, json
job = json.loads(h5py.File('shards/part-1.h5').attrs['mf_job'])
assert job['shard'] == '1/3', job['shard']"
merged_is_one_run

# 5. progress lines in the logs (stderr is no terminal there)
step "progress lines"
grep -qE "embedding.*[0-9]" logs/embed-"${array}"_0.log || fail "no progress line in a task's log"

# 6. a direct sbatch without submit.sh and without a logs folder: the log goes to the
# submission folder
step "direct sbatch"
mkdir direct && cd direct
id=$(INPUTS=$T/in.list sbatch --parsable --array=0 --cpus-per-task=1 --mem=256M \
  --export=ALL,SHARDS=3,OUTDIR=$T/direct/s "$EX/embed-array.sbatch")
all_completed "$id"
ls mf-embed-"${id%%;*}"_0.log >/dev/null || fail "a direct sbatch left no log"
"$PY" "$CHECK" same s/part-0.h5 ../shards/part-0.h5
# 7. the graph in pieces as SLURM arrays (plan, shards, merge, a refinement round, merge,
# clustering) equals the one-process graph and its clusters; submitting again is a no-op
step "graph in pieces"
cd "$T"
mf-synth -q -o syn.h5 --rows 3000 --identities 100 --dim 64 --seed 4
mf-graph build -q --refine 1 -o one.knn.h5 syn.h5
mf-cluster -q --graph one.knn.h5 -o one.clustered.h5 syn.h5
same_graph_and_clusters() {
  "$PY" -c "
import h5py, numpy as np
a, b = h5py.File('one.knn.h5'), h5py.File('graph/faces.knn.h5')
for d in ('neighbors', 'similarities'):
    assert np.array_equal(a[d][:], b[d][:]), d
c, d = h5py.File('one.clustered.h5'), h5py.File('clustered.h5')
assert np.array_equal(c['cluster'][:], d['cluster'][:]), 'clusters differ'"
}
ids=$(STORE=syn.h5 ROUNDS=1 MEM=1G "$EX/graph-submit.sh" 2>/dev/null)
all_completed $ids
same_graph_and_clusters
sums=$(sha256sum graph/*.h5)
ids=$(STORE=syn.h5 ROUNDS=1 MEM=1G "$EX/graph-submit.sh" 2>/dev/null)
all_completed $ids
[ "$sums" = "$(sha256sum graph/*.h5)" ] || fail "a resubmitted graph changed finished steps"
same_graph_and_clusters
echo "slurm: ok" >&2
