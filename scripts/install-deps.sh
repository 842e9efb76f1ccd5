#!/bin/sh
# Installs the Debian packages relureg needs to build, test and run, and only those missing.
# Idempotent: when everything is present it does nothing (no apt-get update, no network).
# Run as root on Debian 12 (bookworm). `make deps` calls it; `make test` and `make run` depend on it.
set -eu

PKGS="
build-essential pkg-config ca-certificates curl
libmicrohttpd-dev libjansson-dev libopenblas-openmp-dev libcriterion-dev zlib1g-dev
libcurl4-openssl-dev
python3-torch python3-numpy python3-jsonschema python3-yaml
dataset-fashion-mnist
clang libclang-rt-14-dev libomp-dev
nginx wrk
chromium fonts-dejavu-core
"

# The dashboard test runs playwright-core (npm) under Node. Use the machine's node/npm when it
# has them (a NodeSource build conflicts with Debian's npm); install Debian's only when absent.
if ! command -v node >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then
    PKGS="$PKGS nodejs npm"
fi

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done

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
