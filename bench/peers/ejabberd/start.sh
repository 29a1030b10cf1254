#!/usr/bin/env bash
# Start an ejabberd 23.01 instance for the benchmark.
#
#   bench/peers/ejabberd/start.sh DIR PORT DOMAIN CORES
#
# Creates DIR (ejabberd.yml from the template next to this script,
# ejabberdctl.cfg, inetrc, certs/, data/ for Mnesia, logs/), starts ejabberd
# in the background as the current user, pinned to CPUs 0..CORES-1 with
# CORES Erlang schedulers (+S CORES:CORES), c2s on 127.0.0.1:PORT for
# DOMAIN, waits until PORT accepts connections and `ejabberdctl status`
# reports the node started, and prints the PID of the
# Erlang VM (beam.smp) on stdout. An existing DIR is reused: configuration
# rewritten, certs and data (accounts) kept.
#
# ejabberdctl needs Erlang distribution. So as not to use or disturb the
# system's epmd and ejabberd node, this instance runs without epmd: its node
# (a name kept in DIR/node) listens for ejabberdctl on 127.0.0.1:DIST_PORT
# only, with a random cookie kept in DIR (not ~/.erlang.cookie).
#
# Environment:
#   PEER_START_TIMEOUT        seconds to wait for PORT (default 60)
#   PEER_EJABBERD_DIST_PORT   Erlang distribution port (default PORT+1)
#   PEER_EJABBERD_ERL_EXTRA   extra flags for the Erlang VM, e.g.
#                             "+sbwt none +sbwtdcpu none +sbwtdio none"
#                             (see bench/peers/README.md, busy waiting)
set -euo pipefail
PEER_NAME=ejabberd
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/../common.sh"

peer_start_args "$@"
dist_port="${PEER_EJABBERD_DIST_PORT:-$((port + 1))}"
peer_check_port "$dist_port"
timeout="${PEER_START_TIMEOUT:-60}"
[ -x /usr/sbin/ejabberdctl ] || peer_die "ejabberd is not installed (scripts/deps.sh --bench)"

pidfile="$dir/ejabberd.pid"
mkdir -p "$dir/data" "$dir/logs" "$dir/modules"
peer_refuse_running "$pidfile" "$dir"
peer_port_open "$port" && peer_die "127.0.0.1:$port is already in use"
peer_port_open "$dist_port" && peer_die "127.0.0.1:$dist_port (distribution) is already in use"
peer_make_cert "$dir" "$domain"

# The node name and cookie are made once per DIR: Mnesia ties its data
# to the node name, so it must not change between runs on the same data.
if [ ! -s "$dir/node" ]; then
	echo "ejabberd_bench_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')@localhost" >"$dir/node"
fi
if [ ! -s "$dir/cookie" ]; then
	(umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/cookie")
fi
node="$(cat "$dir/node")"
cookie="$(cat "$dir/cookie")"

# File descriptors: every peer raises its soft limit to the hard limit, so
# that none of them is held to a lower connection count than another.
ulimit -n "$(ulimit -Hn)"
nofile="$(ulimit -n)"

sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@DOMAIN@|$domain|g" \
	"$here/ejabberd.yml" >"$dir/ejabberd.yml"

# As the package's /etc/ejabberd/inetrc: resolve from files, localhost is
# 127.0.0.1.
cat >"$dir/inetrc" <<'EOF'
{lookup,["file","native"]}.
{host,{127,0,0,1}, ["localhost","hostalias"]}.
{file, resolv, "/etc/resolv.conf"}.
EOF

# Sourced by /usr/sbin/ejabberdctl (bash) after its defaults; applies to the
# server and to every ejabberdctl command run with --ctl-config this file.
(umask 077; cat >"$dir/ejabberdctl.cfg" <<EOF
# Written by bench/peers/ejabberd/start.sh; rewritten at every start.

# Run as the invoking user. As root, ejabberdctl would otherwise run
# everything through 'su ejabberd', and that user cannot use DIR.
EXEC_CMD=as_current_user

ERLANG_NODE=$node
EJABBERD_PID_PATH=$dir/ejabberd.pid
CONTRIB_MODULES_PATH=$dir/modules
EJABBERD_BYPASS_WARNINGS=true

# No epmd: the node listens for distribution on this port (and ejabberdctl
# connects to it), on loopback only, with this instance's own cookie.
ERL_DIST_PORT=$dist_port

# The package's ERL_OPTIONS, plus:
#   +S $cores:$cores  as many schedulers as stanzad has workers (the
#              VM would pick this itself from the CPU affinity; written out)
#   -kernel inet_dist_use_interface: distribution on 127.0.0.1 only
#   -setcookie: the instance's cookie, not ~/.erlang.cookie
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 +S $cores:$cores -kernel inet_dist_use_interface {127,0,0,1} -setcookie $cookie ${PEER_EJABBERD_ERL_EXTRA:-}"

# Ports (sockets) the VM may open: the package's 32000, raised to the
# file descriptor limit every peer gets.
ERL_MAX_PORTS=$nofile
EOF
)

ctl=(/usr/sbin/ejabberdctl --config-dir "$dir" --ctl-config "$dir/ejabberdctl.cfg"
	--config "$dir/ejabberd.yml" --logs "$dir/logs" --spool "$dir/data")

# 'foreground' rather than 'start': the launched process stays the parent
# of the VM (so a failed start is seen at once) and the VM's output goes to
# logs/console.log. ejabberd writes the VM's own PID to ejabberd.pid.
t0=$(peer_now_ms)
setsid taskset -c "$cpus" "${ctl[@]}" foreground \
	</dev/null >>"$dir/logs/console.log" 2>&1 &
launched=$!

peer_wait_port "$port" "$launched" "$timeout" "$dir/logs/console.log" || {
	peer_wait_pidfile "$pidfile" 1 && kill -TERM "$(cat "$pidfile")" 2>/dev/null
	exit 1
}
t_port=$(peer_now_ms)

# ejabberd accepts on PORT before it has finished starting (modules still
# creating their Mnesia tables): wait until `ejabberdctl status` says
# "started". Stopping it before then can leave Mnesia half-made, and the
# next start fails (seen: mod_roster, "no_exists roster_version").
deadline=$(( t0 + timeout * 1000 ))
until "${ctl[@]}" status >/dev/null 2>&1; do
	kill -0 "$launched" 2>/dev/null || peer_die "exited while starting; see $dir/logs/"
	if [ "$(peer_now_ms)" -ge "$deadline" ]; then
		peer_wait_pidfile "$pidfile" 1 && kill -TERM "$(cat "$pidfile")" 2>/dev/null
		peer_die "not started after ${timeout}s; see $dir/logs/"
	fi
	sleep 0.2
done
peer_wait_pidfile "$pidfile" 10 || peer_die "no PID in $pidfile"
pid=$(cat "$pidfile")
comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
[ "$comm" = "beam.smp" ] || peer_log "note: pid $pid is '$comm', not beam.smp"
t1=$(peer_now_ms)
peer_log "listening on 127.0.0.1:$port for $domain, cpus $cpus, +S $cores:$cores, pid $pid, started in $((t1 - t0)) ms (port open after $((t_port - t0)) ms)"
echo "$pid"
