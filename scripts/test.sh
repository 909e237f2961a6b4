#!/usr/bin/env bash
# test.sh - the README's test command: set up, build, run the whole suite with CTest,
# then the fuzz smoke (scripts/fuzz.sh smoke: 60 s per libFuzzer harness, two at a time).
#   scripts/test.sh                  Release build in build/
#   MF_SANITIZE=1 scripts/test.sh    ASan + UBSan build in build-asan/
#   MF_FUZZ_SMOKE=0 scripts/test.sh  without the fuzz smoke (MF_FUZZ_SECONDS=N: shorter)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [ "${MF_SANITIZE:-0}" = 1 ]; then
  export MF_BUILD_DIR="$root/build-asan" MF_BUILD_TYPE=RelWithDebInfo
  builddir=$("$root/scripts/build.sh" -DMF_SANITIZE=ON)
else
  builddir=$("$root/scripts/build.sh")
fi
(cd "$builddir" && ctest --output-on-failure -j "$(nproc)" "$@")
if [ "${MF_FUZZ_SMOKE:-1}" = 1 ] && [ "${MF_SANITIZE:-0}" != 1 ]; then
  "$root/scripts/fuzz.sh" smoke "${MF_FUZZ_SECONDS:-60}"
fi
