#!/usr/bin/env bash
# test.sh - the README's test command: set up, build, run the whole suite with CTest.
#   scripts/test.sh                  Release build in build/
#   MF_SANITIZE=1 scripts/test.sh    ASan + UBSan build in build-asan/
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${MF_SANITIZE:-0}" = 1 ]; then
  export MF_BUILD_DIR="$root/build-asan" MF_BUILD_TYPE=RelWithDebInfo
  builddir=$("$root/scripts/build.sh" -DMF_SANITIZE=ON)
else
  builddir=$("$root/scripts/build.sh")
fi
cd "$builddir"
ctest --output-on-failure -j "$(nproc)" "$@"
