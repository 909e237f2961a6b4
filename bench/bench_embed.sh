#!/usr/bin/env bash
# bench_embed.sh - is mf-embed as fast as its network? Runs, one after the other on the
# same machine and model: the network alone (mf-convert --bench: batches of ready
# faces) and mf-embed end to end (read, decode, batch, network, store, flush) on the
# same number of JPEG faces, and prints images/s for both and their ratio.
#
#   bench/bench_embed.sh [ARCH] [IMAGES]      default: iresnet50 480, 2 threads
#
# Both sides use one thread per core for the network; mf-embed's decoding thread runs
# beside it, so the ratio shows what decoding costs end to end. Absolute times on a
# shared machine are noise; the ratio is the figure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=${1:-iresnet50}
images=${2:-480}
threads=${THREADS:-2}
bin="$root/build/bin"
[ -x "$bin/mf-embed" ] || "$root/scripts/build.sh" >/dev/null
cache="$root/build/bench-cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache"

ckpt="$cache/$arch/${arch}_dp.pth"
if [ ! -f "$ckpt" ]; then
  echo "generating $arch weights (random, BatchNorm-calibrated) ..." >&2
  /usr/bin/python3 "$root/scripts/magface_reference.py" gen --arch "$arch" --out "$cache/$arch" \
    --layouts dp --images 2 --shared "$root/data/faces/id00" >&2
fi
model="$cache/$arch.mfmodel"
[ -f "$model" ] || "$bin/mf-convert" -q "$ckpt" -o "$model"

# $images distinct files: copies of the bundled faces under distinct names.
n=0
while [ "$n" -lt "$images" ]; do
  for f in "$root"/data/faces/*/*.jpg; do
    [ "$n" -lt "$images" ] || break
    cp "$f" "$work/img$(printf %06d "$n").jpg"
    n=$((n + 1))
  done
done
mkdir "$work/in" && mv "$work"/img*.jpg "$work/in/"

# Alternate the two measurements (the machine is shared: load comes and goes) and keep
# the best round of each.
rounds=${ROUNDS:-3}
net=0 e2e=0
for r in $(seq "$rounds"); do
  x=$("$bin/mf-convert" --bench -j "$threads" --batch 16 --seconds 15 "$model" 2>&1 |
      grep -oE '[0-9.]+ img/s' | head -n 1 | cut -d' ' -f1)
  net=$(echo "if ($x > $net) $x else $net" | bc -l)
  rm -f "$work/out.h5"
  start=$(date +%s.%N)
  "$bin/mf-embed" -q -j "$threads" -b 16 -m "$model" -o "$work/out.h5" "$work/in"
  end=$(date +%s.%N)
  x=$(echo "$images / ($end - $start)" | bc -l)
  e2e=$(echo "if ($x > $e2e) $x else $e2e" | bc -l)
done
printf 'arch %s, %d images, %d threads, batch 16, best of %d alternating rounds, %s\n' \
  "$arch" "$images" "$threads" "$rounds" "$(date -u +%F)"
printf 'network alone (mf-convert --bench)  %8.2f img/s\n' "$net"
printf 'mf-embed end to end (incl. load)    %8.2f img/s\n' "$e2e"
printf 'end to end / network                %8.3f\n' "$(echo "$e2e / $net" | bc -l)"
