#!/usr/bin/env bash
# setup.sh - bring a fresh Debian 12 machine (root, package registries only) to a state
# where mfkit builds and its tests run. Idempotent: a second run with everything present
# takes about a second.
#
#   scripts/setup.sh            install packages, build the FAISS C API into .deps/
#
# Debian's libfaiss-dev ships the C API headers but not the compiled C API (libfaiss.a
# has no faiss_* symbols). We fetch Debian's own faiss source package of the installed
# version and compile its c_api/*.cpp against the installed libfaiss.a into .deps/ (git-
# ignored). No third-party source enters the repository.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"

packages=(
  build-essential cmake pkg-config dpkg-dev
  libhdf5-dev libarchive-dev libcriterion-dev libssl-dev libcjson-dev libxxhash-dev
  libfaiss-dev libopenblas-dev
  libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev
  libigraph-dev
  help2man bash-completion   # man pages generated from --help; completion is installed
  # references and fixtures for the tests (run with /usr/bin/python3)
  python3-numpy python3-torch python3-h5py python3-faiss python3-opencv python3-pil
  chromium   # mf-report is checked by rendering it headless
  clang libclang-rt-14-dev   # libFuzzer harnesses (tests/fuzz, scripts/fuzz.sh)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# ---- FAISS C API ------------------------------------------------------------------
faiss_version=$(dpkg-query -W -f='${source:Version}' libfaiss-dev)
stamp="$deps/faiss_c.version"
if [ -f "$deps/lib/libfaiss_c.a" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$faiss_version" ]; then
  exit 0
fi

echo "setup: building the FAISS C API from Debian's faiss $faiss_version source package" >&2
work="$deps/src"
rm -rf "$work"
mkdir -p "$work/lists/partial" "$work/parts" "$deps/lib" "$deps/include/faiss/c_api"
# A deb-src twin of the machine's own Debian sources, used only for this download, so
# the system's apt configuration is left untouched.
found_sources=0
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  sed 's/^Types: deb$/Types: deb-src/' "$f" > "$work/parts/$(basename "$f")"
  found_sources=1
done
if [ -f /etc/apt/sources.list ]; then
  grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > "$work/parts/legacy.list" || true
  [ -s "$work/parts/legacy.list" ] && found_sources=1
fi
[ "$found_sources" -eq 1 ] || { echo "setup: error: no apt sources found" >&2; exit 1; }
apt_src=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$work/parts"
         -o "Dir::State::Lists=$work/lists")
apt-get "${apt_src[@]}" update -qq
(cd "$work" && apt-get "${apt_src[@]}" source -qq "faiss=$faiss_version" >"$work/source.log" 2>&1) ||
  { echo "setup: error: apt-get source faiss=$faiss_version failed:" >&2; tail -5 "$work/source.log" >&2; exit 1; }
src=$(find "$work" -maxdepth 1 -type d -name 'faiss-*' | head -n 1)
[ -n "$src" ] || { echo "setup: error: faiss source package did not unpack" >&2; exit 1; }

obj="$work/obj"
mkdir -p "$obj"
for cpp in "$src"/c_api/*.cpp "$src"/c_api/impl/*.cpp; do
  [ -f "$cpp" ] || continue
  o="$obj/$(basename "${cpp%.cpp}").o"
  # The C API sources include <faiss/...> (installed headers) and "c_api/..." paths.
  g++ -std=c++17 -O2 -fPIC -fopenmp -I"$src" -c "$cpp" -o "$o" &
  while [ "$(jobs -r | wc -l)" -ge "$(nproc)" ]; do wait -n; done
done
wait
rm -f "$deps/lib/libfaiss_c.a"
ar rcs "$deps/lib/libfaiss_c.a" "$obj"/*.o
# Headers: Debian installs them too, but take the ones matching what we compiled.
(cd "$src/c_api" && find . -name '*.h' -exec install -D -m 644 {} "$deps/include/faiss/c_api/{}" \;)
echo "$faiss_version" > "$stamp"
rm -rf "$work"
echo "setup: FAISS C API ready in $deps" >&2
