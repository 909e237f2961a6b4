#!/usr/bin/env bash
# cmake --install into a temporary prefix: the tools run from there, each has a man page
# generated from its --help, bash completes its options, and a C program builds against
# the installed library through its pkg-config file (issue 16, item 7).
source "$(dirname "$0")/lib.sh"
[ -n "${MF_BUILD_DIR:-}" ] || skip "MF_BUILD_DIR not set"
command -v help2man >/dev/null || skip "help2man missing (scripts/setup.sh installs it)"
P="$T/prefix"
cmake --install "$MF_BUILD_DIR" --prefix "$P" >install.log 2>&1 || { cat install.log; fail "install"; }

# the installed tools run, with nothing from the build tree on PATH
env -i PATH="$P/bin:/usr/bin:/bin" mf-synth -q -o s.h5 --identities 5 --rows 100 --dim 8 ||
    fail "installed mf-synth"
env -i PATH="$P/bin:/usr/bin:/bin" mf-inspect s.h5 >out || fail "installed mf-inspect"
grep -q "^rows *100" out || fail "installed mf-inspect output"

# a man page per tool, named by its summary
for tool in "$P"/bin/mf-*; do
    page="$P/share/man/man1/$(basename "$tool").1"
    [ -s "$page" ] || fail "no man page for $(basename "$tool")"
    grep -q '^\.TH' "$page" && grep -q 'show this help' "$page" || fail "$page is not a man page"
done
grep -q 'Keep the rows of an embedding store' "$P/share/man/man1/mf-filter.1" || fail "man NAME"

# bash completion: options come from the tool's --help
if [ -f /usr/share/bash-completion/bash_completion ]; then
    out=$(PATH="$P/bin:$PATH" bash -c '
        source /usr/share/bash-completion/bash_completion
        source "'"$P"'/share/bash-completion/completions/mf-filter"
        COMP_WORDS=(mf-filter --dry); COMP_CWORD=1; COMP_LINE="mf-filter --dry"; COMP_POINT=15
        _mfkit_complete mf-filter --dry mf-filter
        printf "%s\n" "${COMPREPLY[@]}"') || fail "completion script"
    grep -qx -- "--dry-run" <<<"$out" || fail "completion of --dry: '$out'"
else
    echo "install: completion not checked (bash-completion missing)" >&2
fi

# a program against the installed library (static, through pkg-config)
cat >prog.c <<'C'
#include <stdio.h>
#include "mf/status.h"
#include "mf/store.h"
int main(int argc, char **argv)
{
    mf_store *s;
    if (mf_store_open(&s, argv[1]) < 0) {
        fprintf(stderr, "%s\n", mf_last_error());
        return 1;
    }
    printf("%llu %d\n", (unsigned long long)mf_store_rows(s), mf_store_dim(s));
    mf_store_close(s);
    return 0;
}
C
export PKG_CONFIG_PATH="$P/lib/pkgconfig:$P/$(cd "$P" && ls -d lib/*/pkgconfig 2>/dev/null | head -1)"
flags=$(pkg-config --cflags --libs mfkit) || fail "pkg-config mfkit"
g++ -x c prog.c -x none -o prog $flags 2>build.log || { cat build.log; fail "linking against the installed library"; }
[ "$(./prog s.h5)" = "100 8" ] || fail "program against the installed library"
echo "install: tools, man pages, completion and the library work from the prefix"
