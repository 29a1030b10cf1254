#!/usr/bin/env bash
# Installs every build and test dependency of stanzad by Debian package name.
# Idempotent: packages already present are skipped by apt. Debian 12 (bookworm).
#
#   scripts/deps.sh          build + test dependencies
#   scripts/deps.sh --run    only what building and running stanzad needs
set -euo pipefail

run_pkgs=(
  build-essential meson ninja-build pkgconf
  libssl-dev liblmdb-dev liburcu-dev libmimalloc-dev libidn-dev
  libhyperscan-dev libdpdk-dev
  libconfig-dev                                 # stanzad's configuration file
)
test_pkgs=(
  clang libclang-rt-14-dev llvm                 # libFuzzer, sanitizers, symbolizer
  libcmocka-dev                                 # unit tests
  libexpat1-dev libxml2-dev                     # differential tests, parser bench
  valgrind                                      # callgrind instruction counts
  python3
  python3-slixmpp libstrophe-dev                # integration tests: real XMPP clients
)

want=("${run_pkgs[@]}")
[ "${1:-}" = "--run" ] || want+=("${test_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
