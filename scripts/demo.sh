#!/usr/bin/env bash
# demo.sh - the README's main command: set up, build, run the pipeline on bundled data.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
builddir=$("$root/scripts/build.sh")
bin="$builddir/bin"
out="${MF_DEMO_OUT:-$root/out/demo}"
mkdir -p "$out"
echo "== demo output in $out" >&2
