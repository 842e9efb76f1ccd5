#!/bin/sh
# The exports of librelureg.so against the committed list (jansson's
# test/suites/api/check-exports): a symbol added to or removed from the shared library fails
# until tests/unit/exports.txt says so, and every export must be a function (no data: lib/ has
# no globals, and exported data would tie programs to its size through copy relocations).
#
# usage: check_exports.sh LIBRELUREG.so EXPORTS.txt
set -eu
so=$1
list=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

nm -D --defined-only "$so" | awk '{print $NF}' | LC_ALL=C sort > "$tmp/got"
grep -v '^#' "$list" | LC_ALL=C sort > "$tmp/want"
if ! cmp -s "$tmp/want" "$tmp/got"; then
    echo "check_exports: $so does not export what $list lists (- listed only, + exported only):" >&2
    diff -u "$tmp/want" "$tmp/got" | tail -n +3 | grep '^[-+]' >&2
    echo "A new public function: add it to $list; an internal one: name it rr__." >&2
    exit 1
fi
data=$(nm -D --defined-only "$so" | awk '$2 != "T" {print $2, $3}')
if [ -n "$data" ]; then
    echo "check_exports: $so exports symbols that are not functions:" >&2
    echo "$data" >&2
    exit 1
fi
echo "check_exports: $(wc -l < "$tmp/got") functions exported, as listed"
