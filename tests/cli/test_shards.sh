#!/usr/bin/env bash
# Shards of a job array on everyday events: a task that failed (a missing shard), a
# folder holding shards of another split or another run, a shard given twice, a task
# with some broken images (exit 3: its skips reach the merged /failed), a resubmitted
# finished task (a no-op, exit 0). mf-merge must refuse what is not one complete set.
source "$(dirname "$0")/lib.sh"
need_python_module h5py
M="$MF_FIXTURES/model/tiny_dp.pth"
FACES="$MF_SOURCE_DIR/data/faces"
embed() { mf-embed -q -j 2 -m "$M" "$@"; }
# a run that may meet the broken image: 0 or 3 (some inputs skipped) are success
embed_ok() {
  set +e; embed "$@" 2>err; local rc=$?; set -e
  [ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "mf-embed $* exited $rc: $(cat err)"
}

# a list with one truncated JPEG: the shard holding it finishes with exit 3
find "$FACES" -name '*.jpg' | sort >in.list
cp "$MF_FIXTURES/source/broken/truncated.jpg" broken.jpg
echo "$T/broken.jpg" >>in.list
expect_exit 3 embed -o all.h5 --list in.list
for k in 0 1 2; do embed_ok -o "s$k.h5" --list in.list --shard "$k/3"; done

# the whole set merges; the broken image is in the merged /failed
expect_exit 0 mf-merge -q -o merged.h5 s0.h5 s1.h5 s2.h5
"$PY" - <<'PY'
import h5py
a, m = h5py.File("all.h5"), h5py.File("merged.h5")
assert sorted(a["id"].asstr()[:]) == sorted(m["id"].asstr()[:]), "rows differ"
failed = [x for x in m["failed/id"].asstr()[:]]
assert any(f.endswith("broken.jpg") for f in failed), failed
PY

# a missing shard is refused, naming it; --allow-partial merges with a warning
expect_exit 1 mf-merge -q -o part.h5 s0.h5 s2.h5
grep -q "shard 1/3 missing" err || fail "missing shard message: $(cat err)"
[ ! -e part.h5 ] || fail "a refused merge left an output"
expect_exit 0 mf-merge -o part.h5 --allow-partial s0.h5 s2.h5
grep -q "shard 1/3 missing.*--allow-partial" err || fail "no warning: $(cat err)"

# a shard given twice (a copy under another name)
cp s1.h5 s1-again.h5
expect_exit 1 mf-merge -q -o twice.h5 s0.h5 s1.h5 s1-again.h5 s2.h5
grep -q "shard 1/3 given twice" err || fail "repeated shard message: $(cat err)"

# a shard of another split (2-way) in the folder
embed_ok -o h0.h5 --list in.list --shard 0/2
expect_exit 1 mf-merge -q -o mixed.h5 s0.h5 s1.h5 s2.h5 h0.h5
grep -q "'h0.h5' is shard 0/2 but 's0.h5' is shard 0/3" err || fail "foreign split: $(cat err)"
expect_exit 1 mf-merge -q --allow-partial -o mixed.h5 s0.h5 h0.h5   # partial is not mixed
grep -q "'h0.h5' is shard 0/2" err || fail "--allow-partial let a foreign split in: $(cat err)"

# a shard of another run (other settings: --resize) of the same split
embed_ok -o r1.h5 --list in.list --shard 1/3 --resize
expect_exit 1 mf-merge -q -o other.h5 s0.h5 r1.h5 s2.h5
grep -q "'r1.h5' is shard 1/3 of another job than 's0.h5'" err || fail "foreign job: $(cat err)"

# a store that is no shard (already merged) among shards
expect_exit 1 mf-merge -q -o nos.h5 s0.h5 s1.h5 s2.h5 merged.h5
grep -q "'merged.h5' is not a shard" err || fail "non-shard message: $(cat err)"
# stores that are no shards merge as before
expect_exit 0 mf-merge -q -o plain.h5 all.h5 merged.h5

# resubmitting a finished task: nothing to do, exit 0 (even though it skipped an input
# the first time), and the store is untouched
sum=$(sha256sum s2.h5 s1.h5 s0.h5)
for k in 0 1 2; do expect_exit 0 embed -o "s$k.h5" --list in.list --shard "$k/3"; done
[ "$sum" = "$(sha256sum s2.h5 s1.h5 s0.h5)" ] || fail "a resubmitted task changed its store"
# an input list that cannot be read concerns every shard: each one reports it (none
# finishes "complete" with its share silently missing), and the merge lists it once
for k in 0 1 2; do expect_exit 3 embed -o "m$k.h5" --list in.list --list missing.list --shard "$k/3"; done
expect_exit 0 mf-merge -q -o m.h5 m0.h5 m1.h5 m2.h5
"$PY" -c "
import h5py
f = [x for x in h5py.File('m.h5')['failed/id'].asstr()[:]]
assert sum(x.endswith('missing.list') for x in f) == 1, f"
echo "shards: ok" >&2
