#!/bin/sh
# lib/ has no mutable globals (style.md §5): no object of librelureg.a may define a variable in
# a writable section (.data, .bss, thread-local .tdata/.tbss, common symbols). Read-only tables
# are fine, including the arrays of string pointers that land in .data.rel.ro (written only by
# the loader's relocations).
#
# usage: check_globals.sh LIBRELUREG.a
set -eu
lib=$1
# objdump -t: "value flags section<TAB>size name" per symbol, after a "file.o:" line per member.
bad=$(objdump -t "$lib" | awk '
    / file format / { obj = $1; next }
    NF >= 5 && $0 ~ / O / {
        sec = $(NF - 2)
        if (sec ~ /^\.data\.rel\.ro/) next
        if (sec ~ /^\.(data|bss|tdata|tbss)($|\.)/ || sec == "*COM*")
            print "  " obj " " $NF " (" sec ")"
    }')
if [ -n "$bad" ]; then
    echo "check_globals: $lib holds writable variables (make them const, or move the state into a" >&2
    echo "workspace, a model or the caller's params):" >&2
    echo "$bad" >&2
    exit 1
fi
echo "check_globals: no writable variables in $lib"
