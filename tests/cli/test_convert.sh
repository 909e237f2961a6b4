#!/usr/bin/env bash
# test_convert.sh - mf-convert: native file round trip, --info, wrong arch, bad files;
# int8 calibration, --precision for the bench and mf-embed, the store's `precision`,
# and mf-merge refusing to mix precisions.
set -u
fail=0
check() { if ! eval "$2"; then echo "FAIL: $1"; fail=1; fi; }
fx="$MF_FIXTURES/model"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# the state_dict dump (h5py) converts; the native file describes itself the same way
mf-convert -q "$fx/tiny.h5" -o "$tmp/tiny.mfmodel"
check "convert exit 0" '[ $? -eq 0 ] && [ -s "$tmp/tiny.mfmodel" ]'
check "no temp file left" '[ -z "$(ls "$tmp" | grep tmp)" ]'
mf-convert --info "$fx/tiny.h5" > "$tmp/src.txt"
mf-convert --info "$tmp/tiny.mfmodel" > "$tmp/native.txt"
check "info arch" 'grep -q "^arch: iresnet18-w8-8-8-16-16-d32$" "$tmp/native.txt"'
check "info tensors" 'grep -q "^tensors: 187$" "$tmp/native.txt"'
check "info params equal" '[ "$(grep ^params "$tmp/src.txt")" = "$(grep ^params "$tmp/native.txt")" ]'
check "info sha equal" '[ "$(grep ^source_sha256 "$tmp/src.txt")" = "$(grep ^source_sha256 "$tmp/native.txt")" ]'
check "sha is the source file's" 'grep -q "$(sha256sum "$fx/tiny.h5" | cut -c1-64)" "$tmp/native.txt"'

# wrong architecture: one line naming the file and both tensor counts, exit 1
mf-convert --arch iresnet100 "$fx/tiny.h5" -o "$tmp/x.mfmodel" 2> "$tmp/err.txt"
check "wrong arch exit 1" '[ $? -eq 1 ]'
check "wrong arch message" 'grep -q "tiny.h5: checkpoint has 187 backbone tensors (iresnet18-w8-8-8-16-16-d32), expected 925 (iresnet100)" "$tmp/err.txt"'
check "one line" '[ "$(wc -l < "$tmp/err.txt")" -eq 1 ]'
check "nothing written" '[ ! -e "$tmp/x.mfmodel" ]'

# truncated and foreign files
head -c 3000 "$tmp/tiny.mfmodel" > "$tmp/trunc.mfmodel"
printf 'PK\003\004 not a checkpoint' > "$tmp/junk.pth"
for f in "$tmp/trunc.mfmodel" "$tmp/junk.pth" "$tmp/missing.pth"; do
    mf-convert --info "$f" > /dev/null 2> "$tmp/err.txt"
    rc=$?
    check "$(basename "$f") exit 1 (got $rc)" '[ $rc -eq 1 ]'
    check "$(basename "$f") one line" '[ "$(wc -l < "$tmp/err.txt")" -eq 1 ]'
    check "$(basename "$f") names file" 'grep -q "$(basename "$f")" "$tmp/err.txt"'
done

# usage errors
mf-convert 2> /dev/null
check "no args exit 2" '[ $? -eq 2 ]'
mf-convert "$fx/tiny.h5" 2> /dev/null
check "nothing to do exit 2" '[ $? -eq 2 ]'

# the CPU and its kernels are named; MF_ISA caps them
check "info cpu" 'grep -q "^cpu: " "$tmp/native.txt" && grep -q "^int8 kernel: " "$tmp/native.txt"'
MF_ISA=avx2 mf-convert --info "$tmp/tiny.mfmodel" > "$tmp/avx2.txt"
check "MF_ISA=avx2 gives the avx2 kernels" 'grep -q "^fp32 kernel: avx2 4x24" "$tmp/avx2.txt"'
check "not calibrated" 'grep -q "^int8_calibration: none" "$tmp/native.txt"'

# int8: refused until calibrated; --calibrate keeps the ranges in the model file
mf-convert --bench --precision int8 --seconds 0 --batch 2 "$tmp/tiny.mfmodel" > /dev/null 2> "$tmp/err.txt"
check "uncalibrated int8 exit 1" '[ $? -eq 1 ]'
check "says how to calibrate" 'grep -q "mf-convert --calibrate" "$tmp/err.txt"'
mf-convert --calibrate "$MF_SOURCE_DIR/data/faces" "$tmp/tiny.mfmodel" 2> /dev/null
check "calibrate without -o exit 2" '[ $? -eq 2 ]'
mf-convert -q --calibrate "$MF_SOURCE_DIR/data/faces" --calibrate-faces 40 "$tmp/tiny.mfmodel" -o "$tmp/int8.mfmodel"
check "calibrate exit 0" '[ $? -eq 0 ]'
mf-convert --info "$tmp/int8.mfmodel" > "$tmp/int8.txt"
check "calibration recorded" 'grep -q "^int8_calibration: 40 faces, id [0-9a-f]\{16\}$" "$tmp/int8.txt"'
for p in fp32 bf16 int8; do
    mf-convert --bench --precision $p --seconds 0 --batch 2 -j 2 "$tmp/int8.mfmodel" > "$tmp/bench.txt"
    check "bench $p" 'grep -q "precision $p batch 2 threads 2: .* img/s" "$tmp/bench.txt"'
done
# --json: --info and --bench as one JSON object each
mf-convert --json --info "$tmp/int8.mfmodel" > "$tmp/info.json"
check "info --json" '/usr/bin/python3 -c "
import json, sys
o = json.load(open(sys.argv[1]))
assert o[\"tensors\"] == 187 and o[\"arch\"] == \"iresnet18-w8-8-8-16-16-d32\", o
assert o[\"int8_calibration_faces\"] == 40 and len(o[\"int8_calibration\"]) == 16, o
assert o[\"cpu\"] and o[\"fp32_kernel\"] and o[\"int8_kernel\"] and o[\"bf16_kernel\"], o
" "$tmp/info.json"'
mf-convert --json --bench --precision int8 --seconds 0 --batch 2 -j 2 "$tmp/int8.mfmodel" > "$tmp/bench.json"
check "bench --json" '/usr/bin/python3 -c "
import json, sys
o = json.load(open(sys.argv[1]))
assert o[\"precision\"] == \"int8\" and o[\"batch\"] == 2 and o[\"threads\"] == 2, o
assert o[\"img_per_s\"] > 0 and o[\"peak_rss_mb\"] > 0 and o[\"kernels\"], o
" "$tmp/bench.json"'
mf-convert --bench --precision fp16 "$tmp/int8.mfmodel" 2> /dev/null
check "unknown precision exit 2" '[ $? -eq 2 ]'

# mf-embed records the precision (and the calibration) in the store
for p in fp32 int8; do
    mf-embed -q -m "$tmp/int8.mfmodel" --precision $p -o "$tmp/$p.h5" "$MF_SOURCE_DIR/data/faces/id00"
    check "embed $p exit 0" '[ $? -eq 0 ]'
done
# int8 says how many faces it ran again in fp32 (off the calibrated ranges)
mf-embed -q --json -m "$tmp/int8.mfmodel" --precision int8 -o "$tmp/int8-json.h5" \
    "$MF_SOURCE_DIR/data/faces/id00" > "$tmp/embed.json"
check "embed --json counts int8 reruns" '/usr/bin/python3 -c "import json, sys
d = json.load(open(sys.argv[1])); assert 0 <= d[\"int8_fp32_reruns\"] <= d[\"rows\"]" "$tmp/embed.json"'
if /usr/bin/python3 -c "import h5py" 2> /dev/null; then
    /usr/bin/python3 - "$tmp" "$(grep -o "id [0-9a-f]*" "$tmp/int8.txt" | cut -c4-)" <<'PY'
import sys, h5py, numpy as np
d, cal = sys.argv[1], sys.argv[2]
a, b = h5py.File(d + "/fp32.h5", "r"), h5py.File(d + "/int8.h5", "r")
attr = lambda f, k: f.attrs[k].decode() if isinstance(f.attrs[k], bytes) else f.attrs[k]
assert attr(a, "precision") == "fp32" and "int8_calibration" not in a.attrs
assert attr(b, "precision") == "int8" and attr(b, "int8_calibration") == cal
x, y = a["embedding"][:], b["embedding"][:]
cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
assert x.shape == y.shape and cos.min() > 0.98, cos.min()
PY
    check "store precision attributes" '[ $? -eq 0 ]'

    # mf-merge refuses to mix precisions (or int8 calibrations), in one line naming the
    # file; a store without the attribute (older, or from h5py) counts as fp32
    mf-merge -o "$tmp/mixed.h5" "$tmp/fp32.h5" "$tmp/int8.h5" 2> "$tmp/err.txt"
    check "merge fp32 + int8 exit 1" '[ $? -eq 1 ]'
    check "merge names the file and both precisions" 'grep -q "int8.h5.* precision int8 but .*fp32.h5.* fp32" "$tmp/err.txt"'
    check "merge error one line" '[ "$(wc -l < "$tmp/err.txt")" -eq 1 ]'
    check "refused merge wrote nothing" '[ ! -e "$tmp/mixed.h5" ]'
    /usr/bin/python3 - "$tmp" <<'PY'
import shutil, sys, h5py
d = sys.argv[1]
shutil.copy(d + "/fp32.h5", d + "/old.h5")
shutil.copy(d + "/int8.h5", d + "/int8a.h5")
shutil.copy(d + "/int8.h5", d + "/int8b.h5")
with h5py.File(d + "/old.h5", "a") as f:
    del f.attrs["precision"]
with h5py.File(d + "/int8b.h5", "a") as f:
    f.attrs["int8_calibration"] = "0123456789abcdef"
PY
    mf-merge -q -o "$tmp/fp32m.h5" "$tmp/old.h5" "$tmp/fp32.h5"
    check "no attribute merges with fp32" '[ $? -eq 0 ]'
    mf-merge -q -o "$tmp/int8m.h5" "$tmp/int8.h5" "$tmp/int8a.h5"
    check "int8 + int8 of one calibration merge" '[ $? -eq 0 ]'
    mf-merge -o "$tmp/x.h5" "$tmp/int8.h5" "$tmp/int8b.h5" 2> "$tmp/err.txt"
    check "two int8 calibrations refused" '[ $? -eq 1 ] && grep -q "int8b.h5.*int8_calibration" "$tmp/err.txt"'
    /usr/bin/python3 - "$tmp" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1] + "/int8m.h5", "r")
p = f.attrs["precision"]
assert (p.decode() if isinstance(p, bytes) else p) == "int8", p
PY
    check "merged store keeps the precision" '[ $? -eq 0 ]'
fi

# official layouts (needs the PyTorch checkpoint reader linked in)
if mf-convert --info "$fx/tiny_dp.pth" > "$tmp/pth.txt" 2> "$tmp/err.txt"; then
    for f in tiny_dp.pth tiny_legacy_ddp.pth tiny_bare.pth; do
        mf-convert --info "$fx/$f" > "$tmp/pth.txt"
        check "$f arch" 'grep -q "^arch: iresnet18-w8-8-8-16-16-d32$" "$tmp/pth.txt"'
        check "$f params" '[ "$(grep ^params "$tmp/src.txt")" = "$(grep ^params "$tmp/pth.txt")" ]'
    done
else
    echo "note: .pth checks skipped: $(cat "$tmp/err.txt")"
fi
exit $fail
