#!/usr/bin/env bash
# README's first command: install what is needed, build, and run what the
# tree has so far. stanzad itself is not in the tree yet (issue 3), so this
# builds everything and runs the parser benchmark (the tokenizer every byte
# of every client will pass through) against libexpat and libxml2.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
[ -f build-release/build.ninja ] || meson setup build-release --buildtype=release
ninja -C build-release
exec build-release/bench/parser/parser-bench "$@"
