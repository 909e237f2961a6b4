#!/usr/bin/env bash
# make_man.sh TOOL OUT.1 - a man page from a tool's own --help (help2man), named by the
# first line of its summary, so the page and the tool never disagree.
set -euo pipefail
tool=$1 out=$2
name=$("$tool" --help | sed -n '3p' | sed 's/[.:]$//')
exec help2man --no-info --no-discard-stderr --section 1 --source "mfkit" \
    --name "$name" --output "$out" "$tool"
