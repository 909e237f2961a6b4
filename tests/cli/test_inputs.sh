#!/usr/bin/env bash
# mf-embed on hostile and awkward inputs (issue 12 items 4-5, issue 16 item 1): a FIFO
# among the images, a huge image with the pixel limit raised, damaged gzip, names that
# are not UTF-8, the official MagFace list layout (--root), paths with spaces, -0 lists,
# im2rec .lst. Each case failed (hang, abort, exit 0 with lost rows) before.
source "$(dirname "$0")/lib.sh"
need_python_module h5py
M="$MF_FIXTURES/model/tiny_dp.pth"
S="$MF_FIXTURES/source"
CHECK="$MF_SOURCE_DIR/tests/cli/embed_check.py"
embed() { timeout 120 mf-embed -q -j 2 -m "$M" "$@"; }
ids() { "$PY" -c "import h5py,sys; print('\n'.join(h5py.File(sys.argv[1])['id'].asstr()[:]))" "$1"; }

# --- a FIFO named b.jpg in an input folder: recorded as failed, never waited on
mkdir -p fifo && cp "$S/tree/id00/0.jpg" fifo/a.jpg && mkfifo fifo/b.jpg
expect_exit 3 embed -o fifo.h5 fifo
"$PY" "$CHECK" failed fifo.h5 "fifo/b.jpg:not a regular file"
"$PY" "$CHECK" rows fifo.h5 1

# --- one huge image with --max-megapixels raised fails alone; the run goes on
if ! ldd "$(command -v mf-embed)" | grep -q libasan; then # ASan cannot run under ulimit -v
  cp "$S/broken/huge.jpg" "$S/tree/id00/0.jpg" .
  (ulimit -v 6000000; expect_exit 3 embed -o huge.h5 --max-megapixels 10000 huge.jpg 0.jpg)
  "$PY" "$CHECK" failed huge.h5 "huge.jpg:not enough memory"
  "$PY" "$CHECK" rows huge.h5 1
fi

# --- a .tar.gz with a damaged CRC: the samples, then a failed row naming the archive
"$PY" -c "
d = bytearray(open('$S/faces.tar.gz', 'rb').read()); d[-6] ^= 0xff
open('crc.tar.gz', 'wb').write(d)"
expect_exit 3 embed -o crc.h5 crc.tar.gz
"$PY" "$CHECK" failed crc.h5 "crc.tar.gz:CRC"

# --- a file name that is not UTF-8: stored escaped, readable by h5py's .asstr()
mkdir -p latin && cp "$S/tree/id00/0.jpg" "latin/caf$(printf '\351').jpg"
expect_exit 0 embed -o latin.h5 latin
[ "$(ids latin.h5)" = 'latin/caf\xe9.jpg' ] || fail "escaped id: $(ids latin.h5)"

# --- the official MagFace inference/ layout: img.list lines are relative to the
# working directory (gen_feat.py); --root . reproduces that, the default does not
mkdir -p toy_imgs && cp "$S/tree/id00/0.jpg" toy_imgs/0.jpg && cp "$S/tree/id01/0.jpg" toy_imgs/1.jpg
printf 'toy_imgs/0.jpg\ntoy_imgs/1.jpg\n' > toy_imgs/img.list
expect_exit 0 embed -o official.h5 --list toy_imgs/img.list --root .
[ "$(ids official.h5)" = "$(printf 'toy_imgs/0.jpg\ntoy_imgs/1.jpg')" ] || fail "--root . ids"
expect_exit 3 embed -o default.h5 --list toy_imgs/img.list
"$PY" "$CHECK" failed default.h5 "toy_imgs/toy_imgs/0.jpg:line 1 of 'toy_imgs/img.list'"

# --- find | mf-embed --list - with a space in a path; -print0 with and without -0
mkdir -p "sp/a b" && cp "$S/tree/id00/0.jpg" "sp/a b/x y.jpg" && cp "$S/tree/id00/1.jpg" sp/z.jpg
find sp -name '*.jpg' | sort | embed -o spaces.h5 --list - >"$T/out" 2>"$T/err" || fail "spaces: $(cat "$T/err")"
"$PY" "$CHECK" rows spaces.h5 2
find sp -name '*.jpg' -print0 | sort -z | embed -o nul.h5 --list - -0 || fail "-0 list"
"$PY" "$CHECK" rows nul.h5 2
set +e
find sp -name '*.jpg' -print0 | sort -z | embed -o nul_wrong.h5 --list - 2>"$T/err"
rc=$?
set -e
[ "$rc" = 3 ] || fail "a -print0 list read as lines must fail (exit 3), got $rc"
"$PY" "$CHECK" failed nul_wrong.h5 "sp/:NUL byte"

# --- MXNet im2rec .lst
printf '0\t0.000000\tsp/z.jpg\n1\t2.000000\tsp/a b/x y.jpg\n' > train.lst
expect_exit 0 embed -o lst.h5 --list train.lst --root .
"$PY" -c "
import h5py; f = h5py.File('lst.h5')
assert list(f['label'][:]) == [0, 2], f['label'][:]"
echo ok
