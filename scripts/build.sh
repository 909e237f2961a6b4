#!/usr/bin/env bash
# build.sh - set up dependencies (scripts/setup.sh) and build mfkit into build/.
#   scripts/build.sh [extra cmake args]     e.g. -DMF_SANITIZE=ON -B build-asan
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
builddir="${MF_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$builddir" -DCMAKE_BUILD_TYPE="${MF_BUILD_TYPE:-Release}" "$@" >/dev/null
cmake --build "$builddir" -j "$(nproc)" >/dev/null
echo "$builddir"
