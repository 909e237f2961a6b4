#!/usr/bin/env bash
# test_convert.sh - mf-convert: native file round trip, --info, wrong arch, bad files.
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
