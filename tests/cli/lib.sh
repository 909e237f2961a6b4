# lib.sh - shared helpers for the CLI tests (source it). Each test runs in its own
# temporary directory, removed on exit; `fail` stops the test with a message.
set -euo pipefail
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/mf_cli_XXXXXX")
trap 'rm -rf "$T"' EXIT
cd "$T"

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

# expect_exit CODE CMD...: run CMD, capture stdout/stderr in $T/out, $T/err.
expect_exit() {
  local want=$1; shift
  set +e
  "$@" >"$T/out" 2>"$T/err"
  local got=$?
  set -e
  [ "$got" = "$want" ] || { cat "$T/err" >&2; fail "'$*' exited $got, expected $want"; }
}

# The error must be one line naming the file.
expect_one_line_error() {
  local file=$1
  [ "$(wc -l <"$T/err")" -eq 1 ] || { cat "$T/err" >&2; fail "error is not one line"; }
  grep -qF -- "$file" "$T/err" || { cat "$T/err" >&2; fail "error does not name '$file'"; }
}

need_python_module() {
  "$PY" -c "import $1" 2>/dev/null || skip "python module $1 missing"
}
