#!/usr/bin/env bash
# demo.sh - the README's main command: set up, build, and run the whole pipeline on
# the bundled sample data. Outputs go to out/demo/ (override with MF_DEMO_OUT).
#
# The network: official MagFace weights cannot be downloaded here, so unless MF_MODEL
# names a real checkpoint (e.g. MF_MODEL=magface_epoch_00025.pth scripts/demo.sh), the
# demo generates an iresnet18 with random, BatchNorm-calibrated weights in the official
# checkpoint layout. Everything runs for real, but identities from random weights mean
# nothing: filtering and clustering are shown on a synthetic store as well.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
builddir=$("$root/scripts/build.sh")
export PATH="$builddir/bin:$PATH"
out="${MF_DEMO_OUT:-$root/out/demo}"
rm -rf "$out"
mkdir -p "$out"
step() { printf '\n== %s\n' "$*" >&2; }
# Exit status 3 means "finished, some inputs skipped and recorded": expected here.
allow3() { "$@" || [ $? -eq 3 ]; }

model="${MF_MODEL:-}"
if [ -z "$model" ]; then
  model="$builddir/demo-model/iresnet18_dp.pth"
  if [ ! -f "$model" ]; then
    step "generating an iresnet18 checkpoint with random calibrated weights (no official weights here)"
    /usr/bin/python3 "$root/scripts/magface_reference.py" gen --arch iresnet18 \
      --out "$builddir/demo-model" --layouts dp --images 2 --shared "$root/data/faces/id00" >&2
  fi
  echo "NOTE: using generated weights ($model): embeddings are real computations, identities are meaningless" >&2
fi

step "mf-embed: 96 sample faces in data/faces (12 identities, some deliberately poor)"
allow3 mf-embed -m "$model" -o "$out/faces.h5" --label-from-dir --feat-list "$out/faces.feat" \
  "$root/data/faces"

step "mf-inspect"
mf-inspect "$out/faces.h5"

step "mf-filter: drop the lowest 10% by magnitude, and per-identity outliers"
allow3 mf-filter "$out/faces.h5" -o "$out/clean.h5" --drop-lowest 10 --outliers \
  --report "$out/dropped.tsv"

step "mf-cluster: identities from the embeddings (quality-aware anchors method)"
mf-cluster "$out/clean.h5" -o "$out/clustered.h5" -k 10

step "mf-eval: clusters against the folder labels"
mf-eval "$out/clustered.h5"

step "mf-export: the cleaned set as insightface RecordIO"
allow3 mf-export "$out/clean.h5" --format rec -o "$out/export/train"

step "mf-report: an HTML page to look at before trusting the cleaning"
allow3 mf-report "$out/clustered.h5" --filter-report "$out/dropped.tsv" -o "$out/report.html"

step "the same on a synthetic store with known truth (mf-synth: 200 identities, 6000 rows)"
mf-synth -o "$out/synthetic.h5" --identities 200 --rows 6000 --seed 1
mf-filter "$out/synthetic.h5" -o "$out/synthetic_clean.h5" --report "$out/synthetic_dropped.tsv"
mf-cluster "$out/synthetic_clean.h5" -o "$out/synthetic_clustered.h5" --graph "$out/synthetic.knn.h5"
mf-eval --truth true_label "$out/synthetic_clustered.h5"

printf '\nDemo outputs are in %s; open %s in a browser.\n' "$out" "$out/report.html" >&2
