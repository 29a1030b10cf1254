#!/usr/bin/env bash
# Start a Prosody 0.12 instance for the benchmark.
#
#   bench/peers/prosody/start.sh DIR PORT DOMAIN CORES
#
# Creates DIR (prosody.cfg.lua from the template next to this script,
# certs/, data/, logs/), starts Prosody in the background as the current
# user, pinned to CPUs 0..CORES-1, c2s on 127.0.0.1:PORT for DOMAIN, waits
# until PORT accepts connections and prints the server's PID (the lua5.4
# process that is Prosody) on stdout. An existing DIR is reused: the
# configuration is rewritten, certs and data (accounts) are kept.
# Environment: PEER_START_TIMEOUT (seconds, default 60).
set -euo pipefail
PEER_NAME=prosody
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/../common.sh"

peer_start_args "$@"
timeout="${PEER_START_TIMEOUT:-60}"
command -v prosody >/dev/null || peer_die "prosody is not installed (scripts/deps.sh --bench)"

pidfile="$dir/prosody.pid"
mkdir -p "$dir/data" "$dir/logs"
peer_refuse_running "$pidfile" "$dir"
peer_port_open "$port" && peer_die "127.0.0.1:$port is already in use"
peer_make_cert "$dir" "$domain"

# File descriptors: soft limit raised to the hard limit, as for every peer.
ulimit -n "$(ulimit -Hn)"

sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@DOMAIN@|$domain|g" \
	"$here/prosody.cfg.lua" >"$dir/prosody.cfg.lua"

# -F: stay in the foreground (no daemonizing), so the process we launch is
# the server; mod_posix writes its own PID to prosody.pid all the same.
# Prosody is one Lua thread: it uses one of the CORES at a time.
t0=$(peer_now_ms)
setsid taskset -c "$cpus" prosody --config "$dir/prosody.cfg.lua" -F \
	</dev/null >>"$dir/logs/console.log" 2>&1 &
launched=$!

peer_wait_port "$port" "$launched" "$timeout" "$dir/logs/prosody.log" || {
	kill -TERM "$launched" 2>/dev/null || true
	exit 1
}
peer_wait_pidfile "$pidfile" 10 || peer_die "no PID in $pidfile"
pid=$(cat "$pidfile")
[ "$pid" = "$launched" ] || peer_log "note: PID file says $pid, launched $launched"
t1=$(peer_now_ms)
peer_log "listening on 127.0.0.1:$port for $domain, cpus $cpus, pid $pid, started in $((t1 - t0)) ms"
echo "$pid"
