#!/usr/bin/env bash
# Server memory per idle session at the margin: what one more session
# costs a stanzad that already holds BASE sessions.
#
#   bench/idle/marginal.sh BUILD TLS BASE N [CORES]
#
# BUILD: a meson build directory (release for figures); TLS: none or
# direct; BASE sessions are opened first (stanza-bench idle, held in the
# background), then N more (a second stanza-bench idle, other accounts),
# whose report line "server per session" is the figure: the RSS before and
# after the N, with the fixed costs (rings touched, caches, the allocator's
# first segments, the TLS high-water mark of the first handshakes) already
# paid by the BASE. A fresh stanzad in a temporary directory, on loopback
# ports 19322/19323, pinned to CPUs 0..CORES-1 (default 1); stopped by its
# PID at the end.
set -euo pipefail
build="$(cd "$1" && pwd -P)"; tls="$2"; base="$3"; n="$4"; cores="${5:-1}"
here="$(cd "$(dirname "$0")" && pwd -P)"
repo="$(cd "$here/../.." && pwd -P)"
bench="$build/bench/harness/stanza-bench"
dir="$(mktemp -d /tmp/stanzad-marginal.XXXXXX)"
port=19322
[ "$tls" = direct ] && port=19323

export PEER_STANZAD_BUILD="$build" PEER_PLAINTEXT=1
pid=$("$repo/bench/peers/stanzad/start.sh" "$dir" 19322 localhost "$cores")
cleanup() { "$repo/bench/peers/stanzad/stop.sh" "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
"$repo/bench/peers/stanzad/provision.sh" "$dir" base "$base" bench-pass localhost >&2
"$repo/bench/peers/stanzad/provision.sh" "$dir" more "$n" bench-pass localhost >&2

common=(--scenario idle --port "$port" --tls "$tls" --mech scram-sha-1 --password bench-pass
	--warmup 1 --quiet --server-pid "$pid")
# The BASE sessions stay up while the N are measured: 60 s is ample for
# the second run to ramp up and report.
"$bench" "${common[@]}" --user-prefix base --sessions "$base" --duration 60 >"$dir/base.txt" 2>&1 &
bpid=$!
# Ramped up when the server holds BASE bound sessions ("worker I ...
# sessions N ..." per worker); bounded: 60 s.
for _ in $(seq 1 120); do
	sleep 0.5
	held=$("$build/cmd/stanzactl" -d "$dir/data" stats 2>/dev/null |
		awk '{for (i = 1; i < NF; i++) if ($i == "sessions") s += $(i + 1)} END {print s + 0}')
	[ "${held:-0}" -ge "$base" ] && break
done
sleep 1   # the last sessions' presence and the server's RSS settle
"$bench" "${common[@]}" --user-prefix more --sessions "$n" --duration 3 | grep -E "sessions:|server per session"
kill "$bpid" 2>/dev/null || true
wait "$bpid" 2>/dev/null || true
