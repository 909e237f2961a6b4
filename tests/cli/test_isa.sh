#!/usr/bin/env bash
# test_isa.sh - the kernel and model tests again with the run-time dispatch capped at
# AVX2 (MF_ISA=avx2): on an AVX-512 or AMX machine the default run tests the wide
# kernels and this one the AVX2 kernels every x86-64-v3 node falls back to; on an AVX2
# machine both runs test the same kernels (the nn tests also try every level the CPU
# has, and the portable C kernels with the AVX-512 geometry).
set -u
tests="$MF_BIN_DIR/../tests"
[ -x "$tests/test_nn" ] && [ -x "$tests/test_model" ] || { echo "SKIP: unit tests not built"; exit 77; }
fail=0
for t in test_nn test_model; do
    if ! MF_ISA=avx2 "$tests/$t" --jobs 1 --short-filename; then
        echo "FAIL: $t with MF_ISA=avx2"
        fail=1
    fi
done
MF_ISA=avx2 mf-convert --info "$MF_FIXTURES/model/tiny.h5" | grep -q "^fp32 kernel: avx2 4x24" ||
    { echo "FAIL: MF_ISA=avx2 does not select the avx2 kernels"; fail=1; }
exit $fail
