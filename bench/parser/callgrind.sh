#!/bin/sh
# Instructions per input byte for each parser in parser-bench, counted by
# callgrind: exact and repeatable where wall-clock time on a shared machine
# is not. Each parser's count has a baseline run subtracted (--parser none:
# the same process building the same input, parsing nothing), so only the
# parsing is charged.
#
# usage: bench/parser/callgrind.sh [PARSER_BENCH]
#   PARSER_BENCH  the binary (default build-bench/bench/parser/parser-bench)
# environment:
#   SIZE    input size in 10^6 bytes (default 1)
#   ITER    parses per run, to amortise per-stream setup (default 3)
#   INPUTS  inputs to measure (default "messages corpus")
#   CHUNK   bytes per read (default 4096)
#   OUT     directory for callgrind.out.* files (default: a new temporary one);
#           read them with callgrind_annotate
#
# valgrind emulates no AVX-512: the "stanzad" row runs at the best level
# valgrind's CPUID offers (printed in the simd column).
set -eu

bench=${1:-build-bench/bench/parser/parser-bench}
size=${SIZE:-1}
iter=${ITER:-3}
inputs=${INPUTS:-"messages corpus"}
chunk=${CHUNK:-4096}
out=${OUT:-$(mktemp -d /tmp/parser-callgrind.XXXXXX)}
parsers="stanzad stanzad-scalar expat libxml2 memchr"

[ -x "$bench" ] || { echo "callgrind.sh: no executable $bench" >&2; exit 2; }
mkdir -p "$out"

# Runs one parser; prints "Ir bytes simd stanzas".
measure() {
	f="$out/callgrind.out.$1.$2"
	if ! valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file="$f" \
		"$bench" --input "$1" --size "$size" --chunk "$chunk" --parser "$2" \
		--iterations "$iter" >"$f.txt" 2>"$f.err"; then
		echo "callgrind.sh: $2 on $1 failed; see $f.err and $f.txt" >&2
		exit 1
	fi
	ir=$(awk '/^totals:/ { print $2 }' "$f")
	awk -v ir="$ir" '/^parser / {
		for (i = 1; i < NF; i++) v[$i] = $(i + 1)
		print ir, v["bytes"], v["simd"], v["stanzas"]
	}' "$f.txt"
}

printf '%-9s %-15s %-7s %10s %12s %14s\n' input parser simd bytes stanzas instr/byte
for input in $inputs; do
	# Assigned, not substituted into a command, so that set -e sees a failure.
	base=$(measure "$input" none)
	for p in $parsers; do
		r=$(measure "$input" "$p")
		awk -v input="$input" -v p="$p" -v r="$r" -v base="$base" -v iter="$iter" 'BEGIN {
			split(r, v, " "); split(base, b, " ")
			printf "%-9s %-15s %-7s %10d %12d %14.2f\n", input, p, v[3], v[2], v[4],
				(v[1] - b[1]) / (iter * v[2])
		}'
	done
done
echo "callgrind files: $out"
