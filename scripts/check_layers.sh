#!/usr/bin/env bash
# check_layers.sh - fail when a source file includes a header it should not see
# (docs/ARCHITECTURE.md). The build already refuses most of these (each libcore module
# compiles with include/, its own folder and libcore/internal/ only); this says so in
# one line per violation, and covers the tools too.
#   libcore/<module>/*  may include "mf/..." (public), its own headers, libcore/internal/
#   libcore/internal/*  may include "mf/..." and libcore/internal/
#   tools/*             may include "mf/..." and tools' own "cli.h"
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bad=0
check() { # file allowed-dir...
    local file=$1; shift
    local inc
    while IFS= read -r inc; do
        case "$inc" in
        mf/*) continue ;;
        esac
        local ok=0 dir
        for dir in "$@"; do
            [ -f "$dir/$inc" ] && ok=1
        done
        if [ "$ok" = 0 ]; then
            echo "check_layers: $file includes \"$inc\", which is private to another module" >&2
            bad=1
        fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$file")
}
for f in libcore/*/*.[ch]; do
    module=$(dirname "$f")
    if [ "$module" = libcore/internal ]; then
        check "$f" libcore/internal
    else
        check "$f" "$module" libcore/internal
    fi
done
for f in tools/*.[ch]; do
    check "$f" tools
done
[ "$bad" = 0 ] && echo "check_layers: every include respects the module boundaries"
exit "$bad"
