#!/usr/bin/env bash
# Start a stanzad instance for the benchmark, the same way as its peers.
#
#   bench/peers/stanzad/start.sh DIR PORT DOMAIN CORES
#
# Runs BUILD/cmd/stanzad -d DIR/data -w CORES -D DOMAIN -l warn
#   --listen 127.0.0.1:PORT (STARTTLS offered, not required)
#   --listen-tls 127.0.0.1:PORT+1 (direct TLS, XEP-0368)
# in the background as the current user, pinned to CPUs 0..CORES-1, with
# its log (stderr) in DIR/logs/stanzad.log; waits until both ports accept
# and prints stanzad's PID on stdout (also in DIR/stanzad.pid). stanzad
# makes its own self-signed certificate under DIR/data/certs. An existing
# DIR is reused (accounts kept).
#
# Environment:
#   PEER_STANZAD_BUILD   meson build directory holding cmd/stanzad, absolute
#                        or relative to the repository (default: build).
#                        Benchmark figures want a release build
#                        (meson setup build-release --buildtype=release).
#   PEER_START_TIMEOUT   seconds to wait for the ports (default 60)
set -euo pipefail
PEER_NAME=stanzad
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/../common.sh"
repo="$(cd "$here/../../.." && pwd -P)"

peer_start_args "$@"
peer_check_port "$((port + 1))"
timeout="${PEER_START_TIMEOUT:-60}"

build="${PEER_STANZAD_BUILD:-build}"
case "$build" in /*) ;; *) build="$repo/$build" ;; esac
bin="$build/cmd/stanzad"
[ -x "$bin" ] || peer_die "no $bin (build it: meson setup/ninja, or set PEER_STANZAD_BUILD)"
if ! grep -q '"name": "buildtype", "value": "release"' \
	"$build/meson-info/intro-buildoptions.json" 2>/dev/null; then
	peer_log "note: $build is not a release build (assertions on); fine for checks, not for figures"
fi

pidfile="$dir/stanzad.pid"
mkdir -p "$dir/logs"
peer_refuse_running "$pidfile" "$dir"
peer_port_open "$port" && peer_die "127.0.0.1:$port is already in use"
peer_port_open "$((port + 1))" && peer_die "127.0.0.1:$((port + 1)) is already in use"

# File descriptors: soft limit raised to the hard limit, as for every peer.
ulimit -n "$(ulimit -Hn)"

# stanzad always runs in the foreground; setsid + & put it in the
# background in a session of its own. taskset and setsid exec, so $! is
# stanzad itself.
t0=$(peer_now_ms)
# PEER_PLAINTEXT=1: SCRAM without TLS, like the peers' plaintext mode.
plain=""
[ "${PEER_PLAINTEXT:-0}" = 1 ] && plain="--allow-plaintext-auth"
setsid taskset -c "$cpus" "$bin" -d "$dir/data" -w "$cores" -D "$domain" -l warn $plain \
	--listen "127.0.0.1:$port" --listen-tls "127.0.0.1:$((port + 1))" \
	</dev/null >>"$dir/logs/stanzad.log" 2>&1 &
pid=$!
echo "$pid" >"$pidfile"

for p in "$port" "$((port + 1))"; do
	peer_wait_port "$p" "$pid" "$timeout" "$dir/logs/stanzad.log" || {
		kill -TERM "$pid" 2>/dev/null || true
		rm -f "$pidfile"
		exit 1
	}
done
t1=$(peer_now_ms)
peer_log "listening on 127.0.0.1:$port (STARTTLS) and :$((port + 1)) (TLS) for $domain, cpus $cpus, $cores workers, pid $pid, started in $((t1 - t0)) ms"
echo "$pid"
