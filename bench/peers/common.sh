# Shared by bench/peers/*/{start,stop,provision}.sh. Sourced, not run.
# shellcheck shell=bash disable=SC2034
#
# Conventions every peer follows:
#   - an instance lives entirely in its directory DIR (absolute after
#     peer_abs): configuration, certs/, data/, logs/, and a PID file;
#   - it listens only on 127.0.0.1;
#   - it runs as the invoking user, in its own session (setsid), so that a
#     signal sent to the benchmark's process group does not reach it:
#     stop.sh is the one way to end it;
#   - start.sh prints only the server's PID on stdout; everything else
#     (progress, the start-up time, errors) goes to stderr.

peer_die() {
	echo "$PEER_NAME: $*" >&2
	exit 1
}

peer_log() {
	echo "$PEER_NAME: $*" >&2
}

# Absolute form of a path that may not exist yet.
peer_abs() {
	case "$1" in
		/*) printf '%s\n' "$1" ;;
		*) printf '%s/%s\n' "$(pwd -P)" "$1" ;;
	esac
}

peer_check_port() {
	case "$1" in
		''|*[!0-9]*) peer_die "PORT must be a number: '$1'" ;;
	esac
	if [ "$1" -lt 1 ] || [ "$1" -gt 65535 ]; then
		peer_die "PORT out of range: $1"
	fi
}

peer_check_domain() {
	case "$1" in
		''|*[!A-Za-z0-9.-]*) peer_die "DOMAIN must be a plain DNS name: '$1'" ;;
	esac
}

# CORES -> "0-(CORES-1)" for taskset, checked against the online CPUs.
peer_cpulist() {
	local n="$1" online
	case "$n" in
		''|*[!0-9]*) peer_die "CORES must be a number: '$n'" ;;
	esac
	online=$(nproc)
	if [ "$n" -lt 1 ] || [ "$n" -gt "$online" ]; then
		peer_die "CORES must be 1..$online (online CPUs), not $n"
	fi
	printf '0-%d\n' $((n - 1))
}

# Milliseconds since the epoch (GNU date).
peer_now_ms() {
	date +%s%3N
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
peer_port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A self-signed certificate for DOMAIN (EC P-256, a year, SAN DOMAIN and
# *.DOMAIN: what stanzad generates for itself) in DIR/certs, unless one is
# already there.
peer_make_cert() {
	local dir="$1" domain="$2"
	local crt="$dir/certs/$domain.crt" key="$dir/certs/$domain.key"
	[ -s "$crt" ] && [ -s "$key" ] && return 0
	mkdir -p "$dir/certs"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-nodes -days 365 -subj "/CN=$domain" \
		-addext "subjectAltName=DNS:$domain,DNS:*.$domain" \
		-keyout "$key" -out "$crt" >/dev/null 2>&1 ||
		peer_die "openssl could not make a certificate for $domain"
	chmod 600 "$key"
}

# True if PID is alive and its command line mentions DIR (so that a stale
# PID file whose number was reused by another process is not trusted).
peer_pid_is_ours() {
	local pid="$1" dir="$2"
	case "$pid" in ''|*[!0-9]*) return 1 ;; esac
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir"
}

# Refuse to start a second instance in DIR.
peer_refuse_running() {
	local pidfile="$1" dir="$2" pid
	[ -s "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	if peer_pid_is_ours "$pid" "$dir"; then
		peer_die "already running in $dir (pid $pid); stop it first"
	fi
	rm -f "$pidfile"
}

# Wait until 127.0.0.1:PORT accepts, while the launched process LAUNCHED
# is alive. TIMEOUT in seconds. On failure, show the end of LOGFILE.
peer_wait_port() {
	local port="$1" launched="$2" timeout="$3" logfile="$4"
	local deadline=$(( $(peer_now_ms) + timeout * 1000 ))
	while ! peer_port_open "$port"; do
		if ! kill -0 "$launched" 2>/dev/null; then
			peer_log "exited before listening on 127.0.0.1:$port; end of $logfile:"
			tail -n 20 "$logfile" >&2 2>/dev/null
			exit 1
		fi
		if [ "$(peer_now_ms)" -ge "$deadline" ]; then
			peer_log "not listening on 127.0.0.1:$port after ${timeout}s; end of $logfile:"
			tail -n 20 "$logfile" >&2 2>/dev/null
			return 1
		fi
		sleep 0.05
	done
}

# Wait for a file to hold a PID, up to TIMEOUT seconds.
peer_wait_pidfile() {
	local pidfile="$1" timeout="$2"
	local deadline=$(( $(peer_now_ms) + timeout * 1000 ))
	until [ -s "$pidfile" ] && grep -qE '^[0-9]+$' "$pidfile"; do
		[ "$(peer_now_ms)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# Stop the instance whose PID is in PIDFILE: SIGTERM (each server shuts
# down cleanly on it), wait up to TIMEOUT seconds, then SIGKILL. Only that
# PID is signalled, and only if its command line mentions DIR.
peer_stop_pidfile() {
	local pidfile="$1" dir="$2" timeout="$3" pid deadline
	if [ ! -s "$pidfile" ]; then
		peer_log "not running in $dir (no $pidfile)"
		return 0
	fi
	pid=$(cat "$pidfile")
	if ! peer_pid_is_ours "$pid" "$dir"; then
		peer_log "not running in $dir (stale $pidfile: $pid)"
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$(( $(peer_now_ms) + timeout * 1000 ))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$(peer_now_ms)" -ge "$deadline" ]; then
			peer_log "pid $pid still alive ${timeout}s after SIGTERM; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			deadline=$(( $(peer_now_ms) + 5000 ))
			while kill -0 "$pid" 2>/dev/null; do
				[ "$(peer_now_ms)" -ge "$deadline" ] && peer_die "pid $pid survives SIGKILL"
				sleep 0.05
			done
			break
		fi
		sleep 0.05
	done
	rm -f "$pidfile"
	peer_log "stopped pid $pid"
}

# PASSWORD: non-empty printable ASCII, so that SASLprep leaves it as it is
# and every server and client derives the same keys from it.
peer_check_password() {
	(
		export LC_ALL=C
		[[ "$1" =~ ^[\ -~]+$ ]]
	) || peer_die "PASSWORD must be non-empty printable ASCII"
}

# PREFIX: what a username may be on all three servers without nodeprep
# changing it.
peer_check_prefix() {
	case "$1" in
		''|*[!a-z0-9._-]*) peer_die "PREFIX must be lowercase letters, digits, '.', '_' or '-': '$1'" ;;
	esac
}

peer_check_count() {
	case "$1" in
		''|*[!0-9]*) peer_die "N must be a number: '$1'" ;;
	esac
}

# start.sh DIR PORT DOMAIN CORES: sets dir, port, domain, cores and cpus
# (the CPU list to pin to), checked; usage error (exit 2) otherwise.
peer_start_args() {
	[ $# -eq 4 ] || { echo "usage: $0 DIR PORT DOMAIN CORES" >&2; exit 2; }
	dir="$(peer_abs "$1")"
	port="$2"
	domain="$3"
	cores="$4"
	peer_check_port "$port"
	peer_check_domain "$domain"
	cpus="$(peer_cpulist "$cores")"
}

# provision.sh DIR PREFIX N PASSWORD DOMAIN: sets dir, prefix, n, password
# and domain, checked; usage error (exit 2) otherwise.
peer_provision_args() {
	[ $# -eq 5 ] || { echo "usage: $0 DIR PREFIX N PASSWORD DOMAIN" >&2; exit 2; }
	dir="$(peer_abs "$1")"
	prefix="$2"
	n="$3"
	password="$4"
	domain="$5"
	peer_check_domain "$domain"
	peer_check_prefix "$prefix"
	peer_check_count "$n"
	peer_check_password "$password"
}
