#!/usr/bin/env bash
# demo.sh - the README's main command: set up, build, and run the pipeline on the
# bundled sample data. Outputs go to out/demo/ (override with MF_DEMO_OUT).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
builddir=$("$root/scripts/build.sh")
export PATH="$builddir/bin:$PATH"
out="${MF_DEMO_OUT:-$root/out/demo}"
rm -rf "$out"
mkdir -p "$out"
step() { printf '\n== %s\n' "$*" >&2; }

step "mf-synth: a synthetic store with MagFace-like statistics (200 identities, 6000 rows)"
mf-synth -o "$out/synthetic.h5" --identities 200 --rows 6000 --seed 1

step "mf-inspect: what is in it"
mf-inspect "$out/synthetic.h5"

printf '\nDemo outputs are in %s\n' "$out" >&2
