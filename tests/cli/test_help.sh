#!/usr/bin/env bash
# Every tool: --help prints usage on stdout and exits 0; --version exits 0; an unknown
# option exits 2 with a hint on stderr.
source "$(dirname "$0")/lib.sh"
n=0
for tool in "$MF_BIN_DIR"/mf-*; do
  name=$(basename "$tool")
  expect_exit 0 "$tool" --help
  grep -q "^Usage: $name" "$T/out" || fail "$name --help: no usage line"
  expect_exit 0 "$tool" --version
  expect_exit 2 "$tool" --no-such-option
  grep -q "Try '$name --help'" "$T/err" || fail "$name: no hint after a usage error"
  expect_exit 2 "$tool" -j notanumber x
  n=$((n + 1))
done
[ "$n" -ge 2 ] || fail "found only $n tools"
echo "ok ($n tools)"
