#!/bin/bash
# graph-submit.sh - the kNN graph of a big store in pieces on a SLURM cluster (mf-graph,
# docs/CLUSTER.md), then clustering on it: a plan task, an array of shard tasks, a merge,
# ROUNDS x (an array of refine tasks, a merge), and mf-cluster on the final graph.
#
#   STORE=faces.h5 SHARDS=16 examples/slurm/graph-submit.sh
#
# Settings (environment variables; defaults in brackets):
#   STORE           the embedding store (e.g. merged by submit.sh)             (required)
#   SHARDS [16]     tasks per array;  ROUNDS [2] refinement rounds (as mf-graph build)
#   CPUS [4]        CPUs per task;  MEM [8G] memory per task (mf-graph gets --mem-limit
#                   MEM_LIMIT [three quarters of MEM] and stays under it)
#   TIME [24:00:00] time limit per task;  PARTITION [cluster default]
#   TOOLS           the folder holding mf-graph and mf-cluster [the one on PATH]
#   WORK [graph]    the plan and the partial graphs;  GRAPH [WORK/faces.knn.h5]
#   CLUSTERED [clustered.h5] mf-cluster's output ("" = no clustering)
#   CLUSTER_ARGS    more mf-cluster options (e.g. "--method leiden")
#   LOGS [logs]     the job logs (appended to)
#
# A step whose output already exists for the same inputs is a no-op, so submitting again
# after a failure redoes only what is missing. Each merge runs whatever its array's fate
# and refuses an incomplete set of parts, naming the missing ones; the steps after a
# failed one are cancelled (--kill-on-invalid-dep), not left pending.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "graph-submit.sh: $*" >&2; exit 2; }

: "${STORE:?set STORE to the embedding store (see the top of $0)}"
SHARDS=${SHARDS:-16} ROUNDS=${ROUNDS:-2} CPUS=${CPUS:-4} MEM=${MEM:-8G}
TIME=${TIME:-24:00:00} WORK=${WORK:-graph} LOGS=${LOGS:-logs}
CLUSTERED=${CLUSTERED-clustered.h5}
if [ -z "${TOOLS:-}" ]; then
    graph=$(command -v mf-graph) || die "mf-graph is not on PATH: set TOOLS"
    TOOLS=$(dirname "$graph")
fi
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || die "SHARDS must be a positive integer, got '$SHARDS'"
[[ "$ROUNDS" =~ ^[0-9]+$ ]] || die "ROUNDS must be an integer >= 0, got '$ROUNDS'"
for t in mf-graph mf-cluster; do [ -x "$TOOLS/$t" ] || die "no executable $t in TOOLS='$TOOLS'"; done
[ -r "$STORE" ] || die "cannot read STORE '$STORE'"
# MEM in SLURM's units (K, M, G, T; M by default) -> bytes; mf-graph gets 3/4 of it
mem_bytes() {
    local v=${1%[KMGTkmgt]} u=${1: -1}
    case "$u" in K|k) echo $((v << 10)) ;; G|g) echo $((v << 30)) ;; T|t) echo $((v << 40)) ;;
                 M|m) echo $((v << 20)) ;; *) echo $(($1 << 20)) ;; esac
}
MEM_LIMIT=${MEM_LIMIT:-$(($(mem_bytes "$MEM") / 4 * 3))}

abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
mkdir -p "$WORK" "$LOGS"
export STORE=$(abs "$STORE") WORK=$(abs "$WORK") TOOLS=$(cd "$TOOLS" && pwd)
export GRAPH=$(abs "${GRAPH:-$WORK/faces.knn.h5}") SHARDS MEM_LIMIT ROUNDS
export CLUSTERED=${CLUSTERED:+$(abs "$CLUSTERED")} CLUSTER_ARGS=${CLUSTER_ARGS:-}
LOGS=$(abs "$LOGS")

common=(--parsable --export=ALL --time="$TIME" --open-mode=append --kill-on-invalid-dep=yes)
[ -n "${PARTITION:-}" ] && common+=(--partition="$PARTITION")
# step NAME DEPENDENCY [sbatch options...]: queue one step, print its job id
step() {
    local name=$1 dep=$2; shift 2
    local id
    id=$(STEP=$name sbatch "${common[@]}" ${dep:+--dependency=$dep} --job-name="mf-graph-$name" \
        --cpus-per-task="$CPUS" --mem="$MEM" "$@" "$here/graph-step.sbatch")
    echo "${id%%;*}"
}
array() { echo --array=0-$((SHARDS - 1)) --output="$LOGS/graph-$1-%A_%a.log"; }
single() { echo --output="$LOGS/graph-$1-%j.log"; }

plan=$(step plan "" $(single plan))
shards=$(step shard "afterok:$plan" $(array shard))
last=$(ROUND=0 step merge "afterany:$shards" $(single merge))
ids="$plan $shards $last"
for ((r = 1; r <= ROUNDS; r++)); do
    refine=$(ROUND=$r step refine "afterok:$last" $(array refine))
    last=$(ROUND=$r step merge "afterany:$refine" $(single merge))
    ids+=" $refine $last"
done
if [ -n "$CLUSTERED" ]; then
    last=$(step cluster "afterok:$last" $(single cluster))
    ids+=" $last"
fi
echo "queued the graph of $STORE: plan, $SHARDS shards, $ROUNDS refinement rounds" \
     "${CLUSTERED:+and clustering }(jobs $ids); logs in $LOGS" >&2
echo "$ids"
