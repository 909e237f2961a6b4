#!/usr/bin/env bash
# Fault injection for every tool that writes (issue 12, item 8): SIGKILL at random points,
# a full disk (a real tmpfs) at several points, and two runs on one output at once.
# After each: the inputs are byte-identical, there is no final output unless it is
# complete and equal to an undisturbed run's, no crash (exit < 128 unless we killed it),
# and running the command again succeeds with the reference result and no temporary
# left behind. The disk-full part needs root (mount); it is skipped with a message
# otherwise.
source "$(dirname "$0")/lib.sh"
need_python_module h5py
SAME="$PY $MF_SOURCE_DIR/tests/cli/h5_same.py"
MODEL="$MF_FIXTURES/model/tiny.h5"
FACES="$MF_FIXTURES/source/tree"
RANDOM=7 # reproducible kill points

mf-synth -q -o in.h5 --identities 40 --rows 3000 --dim 32 --seed 5
mf-synth -q -o in2.h5 --identities 10 --rows 500 --dim 32 --seed 6
cp "$MF_FIXTURES/model/tiny_dp.pth" ck.pth
sha256sum in.h5 in2.h5 ck.pth >inputs.sha

# name | output | command (OUT is replaced by the output path) | how to compare
# Stores are compared by content (timings in their attributes differ run to run).
cases=(
  "embed|e.h5|mf-embed -m $MODEL --label-from-dir -b 2 -o OUT $FACES|h5 --ignore mf_job"
  "filter|f.h5|mf-filter in.h5 -o OUT --auto --outliers --dedup 0.95|h5 --ignore mf_filter"
  "cluster|c.h5|mf-cluster in.h5 -o OUT|h5 --ignore mf_cluster"
  "merge|m.h5|mf-merge -o OUT in.h5 in2.h5|h5 --ignore mf_merge"
  "featlist|x.txt|mf-export -f featlist -o OUT in.h5|bytes"
  "convert|n.h5|mf-convert ck.pth -o OUT|h5"
  "synth|y.h5|mf-synth -o OUT --identities 30 --rows 4000 --dim 32 --seed 9|h5"
  # image exports and the report read the embedded faces again (ref_embed/e.h5)
  "wds|w|mf-export -f wds --shard-size 3 -o OUT ref_embed/e.h5|prefix"
  "rec|r.rec|mf-export -f rec -o OUT ref_embed/e.h5|rec"
  "tree|t|mf-export -f tree --copy -o OUT ref_embed/e.h5|tree"
  "report|p.html|mf-report -o OUT ref_embed/e.h5|bytes"
)

cmd_for() { echo "${1//OUT/$2}"; }
same_as_ref() { # how ref out
    local how=$1 ref=$2 out=$3
    case "$how" in
    bytes) cmp -s "$ref" "$out" ;;
    h5*) $SAME "$ref" "$out" ${how#h5} ;;
    # the shards only: a run killed between publishing shard 0 and removing its publish
    # journal leaves that journal beside a complete set (the next run clears it)
    prefix) diff -rq <(cd "$(dirname "$ref")" && sha256sum "$(basename "$ref")"-*.tar) \
                     <(cd "$(dirname "$out")" && sha256sum "$(basename "$out")"-*.tar) >/dev/null ;;
    rec) cmp -s "$ref" "$out" && cmp -s "${ref%.rec}.idx" "${out%.rec}.idx" ;;
    tree) diff -r "$ref" "$out" >/dev/null ;;
    esac
}
# A finished output: the file, or the first shard of a set.
exists() { [ -e "$1" ] || [ -e "$1-000000.tar" ]; }
no_temps() { ! ls "$(dirname "$1")" | grep -qE '\.partial|\.publishing-'; }

for c in "${cases[@]}"; do
    IFS='|' read -r name out cmd how <<<"$c"
    mkdir -p "ref_$name"
    start=$(date +%s%N)
    $(cmd_for "$cmd" "ref_$name/$out") -q 2>err || [ $? = 3 ] || fail "$name: reference run: $(cat err)"
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "$name: reference run ${ms} ms" >&2

    # SIGKILL at random points, then the same command again
    for k in 1 2 3; do
        rm -rf "k_$name" && mkdir "k_$name"
        delay=$(( RANDOM % (ms + 20) ))
        $(cmd_for "$cmd" "k_$name/$out") -q 2>/dev/null &
        pid=$!
        sleep "$(awk "BEGIN { print $delay / 1000 }")"
        kill -9 $pid 2>/dev/null || true
        wait $pid 2>/dev/null || true
        if exists "k_$name/$out"; then # finished before the kill: must be complete
            same_as_ref "$how" "ref_$name/$out" "k_$name/$out" || fail "$name: killed at ${delay} ms left an incomplete output"
            continue
        fi
        $(cmd_for "$cmd" "k_$name/$out") -q 2>err || [ $? = 3 ] || fail "$name: rerun after kill: $(cat err)"
        same_as_ref "$how" "ref_$name/$out" "k_$name/$out" || fail "$name: rerun after a kill at ${delay} ms differs"
        [ "$name" = embed ] || no_temps "k_$name/$out" || fail "$name: temporaries left: $(ls k_$name)"
    done

    # two runs on one output at once: each finishes or refuses cleanly, the result is whole
    rm -rf "p_$name" && mkdir "p_$name"
    $(cmd_for "$cmd" "p_$name/$out") -q --overwrite 2>p1.err & a=$!
    $(cmd_for "$cmd" "p_$name/$out") -q --overwrite 2>p2.err & b=$!
    set +e
    wait $a; ra=$?
    wait $b; rb=$?
    set -e
    for r in $ra $rb; do [ "$r" -lt 128 ] || fail "$name: a concurrent run crashed ($r)"; done
    # one may refuse (the other holds the output), but one must finish
    case " $ra $rb " in *" 0 "* | *" 3 "*) ;; *) fail "$name: no concurrent run finished ($ra, $rb): $(cat p1.err p2.err)" ;; esac
    same_as_ref "$how" "ref_$name/$out" "p_$name/$out" || fail "$name: concurrent runs published a wrong output"
    [ "$name" = embed ] || no_temps "p_$name/$out" || fail "$name: concurrent runs left temporaries"
done
sha256sum -c --quiet inputs.sha || fail "an input changed"

# ---- a full disk -------------------------------------------------------------------
if [ "$(id -u)" != 0 ] || ! mkdir -p disk || ! mount -t tmpfs -o size=2m tmpfs disk 2>/dev/null; then
    echo "faults: disk-full cases skipped (they need root to mount a tmpfs)" >&2
    exit 0
fi
trap 'umount "$T/disk" 2>/dev/null; rm -rf "$T"' EXIT
for c in "${cases[@]}"; do
    IFS='|' read -r name out cmd how <<<"$c"
    for margin in 24 96 192 384 768; do
        rm -rf disk/*
        avail=$(df --output=avail -B1 disk | tail -1)
        [ $((avail - margin * 1024)) -gt 0 ] && fallocate -l $((avail - margin * 1024)) disk/filler
        set +e
        $(cmd_for "$cmd" "disk/$out") -q 2>err
        rc=$?
        set -e
        [ "$rc" -lt 128 ] || fail "$name: crashed ($rc) on a full disk (${margin} KB free): $(cat err)"
        rm -f disk/filler
        if exists "disk/$out"; then # it fitted: complete, or it would not be there
            same_as_ref "$how" "ref_$name/$out" "disk/$out" || fail "$name: published an incomplete output on a full disk"
            continue
        fi
        [ "$rc" != 0 ] && [ "$rc" != 3 ] && [ "$(wc -l <err)" -ge 1 ] ||
            fail "$name: no output and no error on a full disk (rc $rc)"
        $(cmd_for "$cmd" "disk/$out") -q 2>err || [ $? = 3 ] || fail "$name: rerun after a full disk (${margin} KB): $(cat err)"
        same_as_ref "$how" "ref_$name/$out" "disk/$out" || fail "$name: rerun after a full disk differs"
        no_temps "disk/$out" || fail "$name: temporaries left after a full disk: $(ls disk)"
    done
done
sha256sum -c --quiet inputs.sha || fail "an input changed"
echo "faults: every tool survived kills, concurrent runs and a full disk"
