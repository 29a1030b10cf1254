#!/usr/bin/env bash
# README's test command: installs what is missing, builds, runs every test.
#
#   1. build/      debugoptimized, -Werror: unit tests (CMocka) and the
#                  differential test against libexpat
#   2. build-asan/ the same suites under ASan + UBSan
#   3. build-tsan/ the concurrent parts (routing table, rings) under TSan
#   4. dpdk        the DPDK transport on a network-namespace rig
#                  (tests/dpdk/run.sh; as root with DPDK, else skipped)
#   5. build-fuzz/ libFuzzer targets, each run for FUZZ_SECONDS (default 20)
#
# Ends with one line "N passed, N failed" counting every test of every
# stage (a fuzz target counts as one test), and exits non-zero on any
# failure.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh || { echo "dependency install failed"; exit 1; }

passed=0
failed=0
failures=()

# Count the results of the last `meson test` in build dir $1.
tally() {
	local log="$1/meson-logs/testlog.json" p f
	if [ ! -s "$log" ]; then
		failed=$((failed + 1)); failures+=("$1: no test log"); return
	fi
	read -r p f < <(python3 - "$log" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL", "SKIP"):
        ok += 1
    else:
        bad += 1
print(ok, bad)
PY
)
	passed=$((passed + p)); failed=$((failed + f))
	[ "$f" -eq 0 ] || failures+=("$1: $f failed")
}

# stage DIR "WHAT TO TEST" [meson setup options...]
# WHAT TO TEST: meson test arguments (suites as --suite X, or test names).
stage() {
	local dir="$1" what="$2"; shift 2
	echo "=== $dir: meson setup $*"
	if [ ! -f "$dir/build.ninja" ]; then
		meson setup "$dir" -Dwerror=true "$@" >"$dir.setup.log" 2>&1 || {
			cat "$dir.setup.log"; failed=$((failed + 1)); failures+=("$dir: setup"); return; }
	fi
	if ! ninja -C "$dir"; then
		failed=$((failed + 1)); failures+=("$dir: build"); return
	fi
	rm -f "$dir/meson-logs/testlog.json"
	# shellcheck disable=SC2086
	meson test -C "$dir" --print-errorlogs --num-processes "$(nproc)" $what
	tally "$dir"
}

stage build "--suite unit --suite diff --suite integration"
stage build-asan "--suite unit --suite diff --suite integration" -Dsanitizers=address,undefined -Dbenchmarks=false
stage build-tsan "route ring" -Dsanitizers=thread -Dbenchmarks=false

# The DPDK transport on the netns rig (tests/dpdk/run.sh): root and a build/
# with DPDK; otherwise it says why it skipped and counts nothing.
echo "=== dpdk: tests/dpdk/run.sh build"
dpdk_out=$(mktemp)
tests/dpdk/run.sh build 2>&1 | tee "$dpdk_out"
read -r dp df < <(sed -n 's/^dpdk: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$dpdk_out" | tail -1)
if [ -n "${dp:-}" ]; then
	passed=$((passed + dp)); failed=$((failed + df))
	[ "$df" -eq 0 ] || failures+=("dpdk: $df failed")
elif ! grep -q '^dpdk: skipped' "$dpdk_out"; then
	failed=$((failed + 1)); failures+=("dpdk: no result line")
fi
rm -f "$dpdk_out"

echo "=== fuzz: ${FUZZ_SECONDS:-20} s per target"
fuzz_out=$(mktemp)
scripts/fuzz.sh "${FUZZ_SECONDS:-20}" >"$fuzz_out" 2>&1
frc=$?
cat "$fuzz_out"
# scripts/fuzz.sh prints one line per target: "fuzz_xml   ok ..." or "... FAIL ...".
fp=$(grep -cE '^fuzz_[a-z0-9_]+ +ok ' "$fuzz_out" || true)
ff=$(grep -cE '^fuzz_[a-z0-9_]+ +FAIL ' "$fuzz_out" || true)
if [ "$frc" -ne 0 ] && [ "$ff" -eq 0 ]; then
	ff=1; failures+=("fuzz: scripts/fuzz.sh exited $frc")
elif [ "$fp" -eq 0 ] && [ "$ff" -eq 0 ]; then
	ff=1; failures+=("fuzz: no target ran")
elif [ "$ff" -ne 0 ]; then
	failures+=("fuzz: $ff target(s) failed")
fi
passed=$((passed + fp)); failed=$((failed + ff))
rm -f "$fuzz_out"

for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
