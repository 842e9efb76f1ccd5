#!/bin/sh
# The Debian packages relureg needs, in two sets: BUILD (what plain `make` compiles against) and
# the rest (tests, demo data, benchmarks, fuzzing, the browser tests). Run as root on Debian 12.
#
#   install-deps.sh          install whatever is missing of both sets (`make deps`; `make test`
#                            and `make run` call it). Idempotent: with everything present it
#                            does nothing (no apt-get update, no network).
#   install-deps.sh --check  install nothing: print the BUILD set's versions, or one line
#                            naming what is missing and exit 1 (plain `make` runs this before
#                            compiling anything; the Makefile keeps the output as a stamp, so
#                            that objects are rebuilt when a build package changes).
# docker/Dockerfile's build stage installs the BUILD set.
set -eu

BUILD_PKGS="
build-essential
libmicrohttpd-dev libjansson-dev libopenblas-openmp-dev zlib1g-dev
libcurl4-openssl-dev
"
OTHER_PKGS="
pkg-config ca-certificates curl
libcriterion-dev
python3-torch python3-numpy python3-jsonschema python3-yaml
python3-venv python3-pip python3-setuptools python3-wheel
dataset-fashion-mnist
clang libclang-rt-14-dev libomp-dev
nginx wrk
chromium fonts-dejavu-core
"

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing_of() {
    out=""
    for p in "$@"; do
        installed "$p" || out="$out $p"
    done
    echo "$out"
}

if [ "${1:-}" = "--check" ]; then
    # shellcheck disable=SC2086
    missing=$(missing_of $BUILD_PKGS)
    if [ -n "$missing" ]; then
        echo "relureg: missing Debian packages:$missing; run \`make deps\` as root (or \`make run\` / \`make test\`, which install them)" >&2
        exit 1
    fi
    # shellcheck disable=SC2086
    dpkg-query -W -f='${Package} ${Version}\n' $BUILD_PKGS
    exit 0
fi

PKGS="$BUILD_PKGS $OTHER_PKGS"
# The dashboard test runs playwright-core (npm) under Node. Use the machine's node/npm when it
# has them (a NodeSource build conflicts with Debian's npm); install Debian's only when absent.
if ! command -v node >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then
    PKGS="$PKGS nodejs npm"
fi

# shellcheck disable=SC2086
missing=$(missing_of $PKGS)
if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing Debian packages:$missing" >&2
    echo "install-deps: run as root (or: sudo apt-get install -y$missing)" >&2
    exit 1
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
