#!/usr/bin/env bash
# README's first command: install what is needed, build (release), and run
# stanzad in the foreground on its embedded defaults: domain localhost,
# c2s on 127.0.0.1:5222 (STARTTLS) and 127.0.0.1:5223 (direct TLS), an LMDB
# store and a generated self-signed certificate in ./data. Extra arguments
# go to stanzad (see docs/CONFIG.md), e.g. scripts/run.sh -c stanzad.conf
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --run
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release -Dtests=false -Dbenchmarks=false
ninja -C build-release cmd/stanzad cmd/stanzactl
echo "stanzad: add an account with: build-release/cmd/stanzactl -d data account add you@localhost"
exec build-release/cmd/stanzad -d data "$@"
