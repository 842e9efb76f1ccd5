#!/bin/sh
# An installed librelureg serves other programs: with the staged install's relureg.pc (found
# through PKG_CONFIG_PATH, paths under the staging DESTDIR through PKG_CONFIG_SYSROOT_DIR), a C
# program and a C++ one compile against the installed headers alone with every warning an
# error, link against librelureg.so and run; the C program also links statically (--static,
# which takes Libs.private) and runs. The .pc's Version, the headers' RR_VERSION and the
# library's rr_version() must agree, and programs must record the soname. Last, a C++ program
# takes the address of every function in EXPORTS.txt through the installed headers: each must
# be declared there, with C linkage (a header without extern "C" leaves a mangled name that
# does not link).
#
# usage: check_install.sh DESTDIR PREFIX VERSION SONAME EXPORTS.txt
#        (CC, CXX and OPT from the Makefile)
set -eu
dest=$1
prefix=$2
version=$3
soname=$4
exports=$5
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

PKG_CONFIG_LIBDIR="$dest$prefix/lib/pkgconfig"
PKG_CONFIG_PATH=$PKG_CONFIG_LIBDIR
PKG_CONFIG_SYSROOT_DIR=$dest
export PKG_CONFIG_LIBDIR PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
fail() {
    echo "check_install: $*" >&2
    exit 1
}

got=$(pkg-config --modversion relureg) || fail "pkg-config does not find relureg.pc"
[ "$got" = "$version" ] || fail "relureg.pc says version $got, the headers $version"
cflags=$(pkg-config --cflags relureg)
libs=$(pkg-config --libs relureg)
case "$cflags" in *"$dest$prefix/include/relureg"*) ;; *) fail "unexpected Cflags: $cflags" ;; esac

# shellcheck disable=SC2086 # word splitting of the flags is meant
${CC:-cc} -std=c99 -Wall -Wextra -Wpedantic -Werror $OPT $cflags "$here/install/consumer.c" \
    -o "$tmp/consumer" $libs || fail "a C program does not build against the install"
# shellcheck disable=SC2086
${CXX:-c++} -std=c++11 -Wall -Wextra -Wpedantic -Werror $OPT $cflags \
    "$here/install/consumer.cpp" -o "$tmp/consumer-cxx" $libs ||
    fail "a C++ program does not build against the install"
for p in consumer consumer-cxx; do
    readelf -d "$tmp/$p" | grep -q "NEEDED.*\[$soname\]" || fail "$p does not record $soname"
    LD_LIBRARY_PATH="$dest$prefix/lib" "$tmp/$p" "$version" || fail "$p failed"
done
# Static: the archive and Libs.private, no librelureg.so at run time.
static_libs=$(pkg-config --static --libs relureg | sed 's/-lrelureg/-l:librelureg.a/')
# shellcheck disable=SC2086
${CC:-cc} -std=c99 $OPT $cflags "$here/install/consumer.c" -o "$tmp/consumer-static" \
    $static_libs || fail "a C program does not link statically with pkg-config --static"
if readelf -d "$tmp/consumer-static" | grep -q "NEEDED.*librelureg"; then
    fail "the static link still needs librelureg.so"
fi
"$tmp/consumer-static" "$version" || fail "the statically linked program failed"

{
    cat <<'END'
#include <relureg.h>
#include <cstdio>
typedef void (*fn)();
// volatile: the compiler must keep every address, so every name must link.
static fn volatile every[] = {
END
    grep -v '^#' "$exports" | sed 's/.*/    reinterpret_cast<fn>(\&&),/'
    cat <<'END'
};
int main()
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof every / sizeof every[0]; i++)
        n += every[i] != nullptr;
    std::printf("%zu\n", n);
    return 0;
}
END
} > "$tmp/every.cpp"
# shellcheck disable=SC2086
${CXX:-c++} -std=c++11 -Wall -Wextra -Wpedantic -Werror $OPT $cflags "$tmp/every.cpp" \
    -o "$tmp/every" $libs || fail "not every exported function is declared in the installed \
headers with C linkage"
n=$(LD_LIBRARY_PATH="$dest$prefix/lib" "$tmp/every")
[ "$n" = "$(grep -vc '^#' "$exports")" ] || fail "every.cpp saw $n functions"
echo "check_install: relureg $version installs; C and C++ programs build through pkg-config and" \
    "run; all $n exported functions are declared with C linkage"
