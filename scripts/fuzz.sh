#!/usr/bin/env bash
# Build the libFuzzer targets of tests/fuzz/ and run each one for a bounded
# time over the kept corpus.
#
#   scripts/fuzz.sh [seconds-per-target]      default 20
#   FUZZ_TARGETS="fuzz_xml" scripts/fuzz.sh 60   only some targets
#
# The build is build-fuzz/ (clang, ASan+UBSan, libFuzzer), configured on
# first use only. Seeds are read from tests/corpus/ and never written:
# what a run discovers goes to build-fuzz/fuzz-out/corpus/<target>/, which
# later runs start from. A crash, a mismatch between SIMD levels or
# splittings (the targets abort), a leak or an input slower than
# FUZZ_TIMEOUT seconds makes the script exit 1; the input is saved under
# build-fuzz/fuzz-out/artifacts/ and the log's tail is printed. Keep a
# reproducer in tests/corpus/regress/ so that it stays a seed.
#
# Runs from any directory. Takes about targets x seconds.
set -euo pipefail

secs=${1:-20}
case $secs in
	''|*[!0-9]*) echo "usage: $0 [seconds-per-target]" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

build=build-fuzz
out=$build/fuzz-out
targets=${FUZZ_TARGETS:-"fuzz_xml fuzz_utf8 fuzz_jid fuzz_tcp"}
timeout_per_input=${FUZZ_TIMEOUT:-20}

if [ ! -f "$build/build.ninja" ]; then
	# fuzzer-no-link puts coverage into every library the targets link;
	# the targets add the driver themselves (tests/fuzz/meson.build).
	CC=clang meson setup "$build" \
		-Dfuzzing=true -Dsanitizers=address,undefined -Dbenchmarks=false \
		-Dc_args=-fsanitize=fuzzer-no-link >/dev/null
fi

ninja_targets=()
for t in $targets; do
	ninja_targets+=("tests/fuzz/$t")
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! ninja -C "$build" "${ninja_targets[@]}" >"$log" 2>&1; then
	cat "$log" >&2
	echo "fuzz.sh: build failed" >&2
	exit 1
fi
if grep -q 'warning:' "$log"; then
	grep -B2 -A4 'warning:' "$log" >&2
	echo "fuzz.sh: the fuzz build has warnings" >&2
	exit 1
fi

mkdir -p "$out/artifacts"

# JIDs have no kept corpus of their own: a few shapes to start from.
jid_seeds=$out/seed-jid
if [ ! -d "$jid_seeds" ]; then
	mkdir -p "$jid_seeds"
	i=0
	for s in 'juliet@capulet.example/balcony' 'example.com' 'a@b' 'x/y@z' \
		 'Romeo@Montague.Example./Home' '[::1]' '192.0.2.1/r' \
		 $'\xc3\xa9l\xc3\xa8ve@exa\xcc\x81mple.com/\xe2\x84\xa2' \
		 'user@xn--bcher-kva.example' 'a@b/c/d@e' '@example.com' 'x@/r'; do
		printf '%s' "$s" >"$jid_seeds/seed-$i"
		i=$((i + 1))
	done
fi

# Seed directories of a target that exist; the scratch corpus comes first
# because libFuzzer writes new inputs into the first directory only.
seeds_for() {
	local d
	case $1 in
		fuzz_jid) dirs=("$jid_seeds") ;;
		fuzz_tcp) dirs=() ;;   # scripts of steps, not text: starts from nothing
		*) dirs=(tests/corpus/xeps tests/corpus/valid tests/corpus/bad) ;;
	esac
	dirs+=(tests/corpus/regress)
	for d in "${dirs[@]}"; do
		[ -d "$d" ] && printf '%s\n' "$d"
	done
	return 0
}

# The last value a sed expression extracts from a log, or nothing.
stat_of() {
	sed -n "$1" "$2" | tail -n1
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for t in $targets; do
	corpus=$out/corpus/$t
	mkdir -p "$corpus"
	mapfile -t seeds < <(seeds_for "$t")
	args=(-max_total_time="$secs" -max_len=65536 -timeout="$timeout_per_input"
	      -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-")
	case $t in
		fuzz_xml|fuzz_utf8) args+=(-dict=tests/fuzz/xml.dict) ;;
	esac
	tlog=$out/$t.log
	rc=0
	# The outer timeout only guards against a hang libFuzzer cannot see.
	timeout --signal=KILL $((secs + 120)) \
		"$build/tests/fuzz/$t" "${args[@]}" "$corpus" "${seeds[@]}" >"$tlog" 2>&1 || rc=$?

	execs=$(stat_of 's/^stat::number_of_executed_units: *//p' "$tlog")
	rate=$(stat_of 's/^stat::average_exec_per_sec: *//p' "$tlog")
	cov=$(stat_of 's/.* cov: \([0-9]*\).*/\1/p' "$tlog")
	ft=$(stat_of 's/.* ft: \([0-9]*\).*/\1/p' "$tlog")
	corp=$(stat_of 's/.* corp: \([0-9]*\).*/\1/p' "$tlog")
	if [ "$rc" -eq 0 ]; then
		printf '%-10s ok    %s execs (%s/s), cov %s, ft %s, corpus %s\n' \
			"$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}"
	else
		status=1
		art=$(stat_of "s|.*\\($out/artifacts/$t-[a-z]*-[0-9a-f]*\\).*|\\1|p" "$tlog")
		printf '%-10s FAIL  exit %s after %s execs, cov %s; input %s; log %s\n' \
			"$t" "$rc" "${execs:-?}" "${cov:-?}" "${art:-?}" "$tlog"
		grep -v '^#\|^INFO:\|^\s*$' "$tlog" | head -n 40 >&2 || true
	fi
done
exit $status
