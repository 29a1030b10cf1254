#!/usr/bin/env bash
# Installs every build and test dependency of stanzad by Debian package name.
# Idempotent: packages already present are skipped by apt. Debian 12 (bookworm).
#
#   scripts/deps.sh          build + test dependencies
#   scripts/deps.sh --run    only what building and running stanzad needs
#   scripts/deps.sh --bench  build + test dependencies, plus the peers the
#                            benchmark compares against (bench/peers/) and
#                            gnuplot for its charts
#
# The prosody and ejabberd packages start their own system services on the
# default ports when they are installed (where an init system runs). The
# benchmark never uses those: bench/peers/*/start.sh runs separate instances
# with their own configuration, data directory and ports.
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
  gnuplot-nox                                   # bench/compare.py plots (its integration test)
  python3
  python3-slixmpp libstrophe-dev                # integration tests: real XMPP clients
  iproute2 ethtool                              # tests/dpdk: network namespaces, veth, tc; offloads off
)

bench_pkgs=(
  prosody                                       # peer: Prosody 0.12 (bench/peers/prosody)
  lua-unbound                                   # Prosody's DNS resolver (a Recommends of prosody;
                                                #   without it, a warning at every start)
  ejabberd                                      # peer: ejabberd 23.01 (bench/peers/ejabberd)
  gnuplot-nox                                   # stanza-bench's charts
  openssl                                       # the peers' self-signed certificates
)

mode="${1:-}"
case "$mode" in
  ""|--run|--bench) ;;
  *) echo "usage: $0 [--run|--bench]" >&2; exit 2 ;;
esac
want=("${run_pkgs[@]}")
[ "$mode" = "--run" ] || want+=("${test_pkgs[@]}")
[ "$mode" = "--bench" ] && want+=("${bench_pkgs[@]}")

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# The second XMPP client library of the integration tests, @xmpp/client
# (tests/integration/js), runs on Node.js. This project's machine image
# ships node 20 and npm (NodeSource's nodejs package, which contains npm),
# so they are checked by command, not by Debian package name: Debian's own
# npm package conflicts with that nodejs. Only where node is missing are
# Debian's nodejs and npm installed (Debian 12's node 18 is older than
# @xmpp/client 0.14.0 needs; the tests that use it then skip and say so).
if [ "$mode" != "--run" ]; then
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi

if [ ${#missing[@]} -ne 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# @xmpp/client and its dependencies at the versions package-lock.json pins
# (2 MB, 35 packages), only when they are not installed already.
if [ "$mode" != "--run" ]; then
  js="$(dirname "$0")/../tests/integration/js"
  if [ ! -f "$js/node_modules/@xmpp/client/package.json" ] ||
     [ "$js/package-lock.json" -nt "$js/node_modules/.package-lock.json" ]; then
    (cd "$js" && npm ci --no-audit --no-fund --loglevel=error) ||
      echo "deps.sh: npm ci in tests/integration/js failed: the @xmpp/client tests will skip" >&2
  fi
fi
