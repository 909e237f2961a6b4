#!/usr/bin/env bash
# mf-eval --erc: the error-versus-reject curve of MagFace's paper, checked against an
# independent numpy implementation of the same protocol (include/mf/metrics.h), and the
# curve as mf-report draws it.
source "$(dirname "$0")/lib.sh"
need_python_module h5py
mf-synth -q -o s.h5 --identities 60 --rows 2400 --dim 64 --seed 4
expect_exit 0 mf-eval --erc --pairs 0 --truth true_label --json s.h5
cp "$T/out" ours.json
"$PY" "$MF_SOURCE_DIR/tests/cli/erc_check.py" s.h5 true_label 0.001 11 0.5 ours.json ||
    fail "the curve disagrees with numpy"
expect_exit 0 mf-eval --erc --pairs 0 --fmr 0.01 --truth true_label --json s.h5
cp "$T/out" ours01.json
"$PY" "$MF_SOURCE_DIR/tests/cli/erc_check.py" s.h5 true_label 0.01 11 0.5 ours01.json ||
    fail "the curve at FMR 1e-2 disagrees with numpy"
"$PY" - <<'PY' || fail "a quality curve must fall"
import json
c = json.load(open("ours.json"))["curve"]
assert c[0]["fnmr"] > c[-1]["fnmr"], c      # rejecting low magnitudes removes errors
assert c[0]["reject"] == 0 and abs(c[-1]["reject"] - 0.5) < 1e-12
PY
# sampled pairs: reproducible with a seed
expect_exit 0 mf-eval --erc --pairs 20000 --seed 3 --truth true_label s.h5
cp "$T/out" a.tsv
expect_exit 0 mf-eval --erc --pairs 20000 --seed 3 --truth true_label s.h5
cmp -s a.tsv "$T/out" || fail "the same seed must give the same curve"
head -1 a.tsv | grep -q "^reject	quality_cut	fnmr	genuine_pairs$" || fail "TSV header"
# no labels: a clear error
"$PY" -c "import h5py; f = h5py.File('s.h5', 'r+'); f['label'][:] = -1"
expect_exit 1 mf-eval --erc s.h5
grep -q "no genuine pair" "$T/err" || fail "unlabelled store: $(cat "$T/err")"
echo "erc: ok"
