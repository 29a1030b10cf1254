#!/usr/bin/env bash
# The DPDK stage of scripts/test.sh: tests/dpdk/test_dpdk.py (the netns rig,
# see rig.py) against BUILD_DIR/cmd/stanzad, and tests/dpdk/test_memif.py
# (stanzad and BUILD_DIR/bench/harness/stanza-bench over net_memif, the
# rig of bench/dpdk/memif.py; it skips itself without the memif driver).
#
#   tests/dpdk/run.sh [BUILD_DIR]      default: build
#
# Needs root and a stanzad built with DPDK (meson finds libdpdk-dev). Ends
# with one line, "dpdk: N passed, N failed" or "dpdk: skipped: REASON", and
# exits non-zero only on failures. Bounded: DPDK_TIMEOUT seconds (240).
set -uo pipefail
cd "$(dirname "$0")/../.."
build="${1:-build}"

skip() { echo "dpdk: skipped: $*"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "not root (the rig creates network namespaces)"
[ -x "$build/cmd/stanzad" ] || skip "$build/cmd/stanzad not built"
ldd "$build/cmd/stanzad" 2>/dev/null | grep librte_ethdev >/dev/null || skip "$build has no DPDK (install libdpdk-dev, reconfigure)"
for t in ip tc ethtool; do command -v "$t" >/dev/null || skip "$t missing (scripts/deps.sh)"; done
ip netns list >/dev/null 2>&1 || skip "no network namespaces here"

out=$(mktemp)
STANZAD="$build/cmd/stanzad" STANZACTL="$build/cmd/stanzactl" \
	timeout -k 10 "${DPDK_TIMEOUT:-240}" /usr/bin/python3 -m unittest -v tests/dpdk/test_dpdk.py tests/dpdk/test_memif.py >"$out" 2>&1
rc=$?
grep -v 'ResourceWarning\|stringprep\|Task was destroyed\|^task: <Task' "$out"
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\} in.*/\1/p' "$out" | tail -1)
bad=$(sed -n 's/^FAILED (\(.*\))$/\1/p' "$out" | tr ',' '\n' | sed -n 's/.*\(failures\|errors\)=\([0-9]*\).*/\2/p' |
	awk '{s += $1} END {print s + 0}')
rm -f "$out"
if [ -z "$ran" ]; then
	echo "dpdk: 0 passed, 1 failed (exit $rc: timed out or crashed)"
	exit 1
fi
echo "dpdk: $((ran - bad)) passed, $bad failed"
[ "$bad" -eq 0 ] && [ "$rc" -eq 0 ]
