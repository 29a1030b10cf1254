#!/usr/bin/env bash
# Create PREFIX0..PREFIX(N-1)@DOMAIN in the stanzad instance in DIR, all
# with PASSWORD.
#
#   bench/peers/stanzad/provision.sh DIR PREFIX N PASSWORD DOMAIN
#
# `stanzactl -d DIR/data account add JID`, the password on stdin, PEER_JOBS
# at a time (default: twice the online CPUs). With the server running,
# stanzactl goes through its admin socket; without, straight to the store.
# An account that already exists gets PASSWORD (`account passwd`).
# Environment: PEER_STANZAD_BUILD as for start.sh.
set -euo pipefail
PEER_NAME=stanzad
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/../common.sh"
repo="$(cd "$here/../../.." && pwd -P)"

peer_provision_args "$@"

build="${PEER_STANZAD_BUILD:-build}"
case "$build" in /*) ;; *) build="$repo/$build" ;; esac
ctl="$build/cmd/stanzactl"
[ -x "$ctl" ] || peer_die "no $ctl (build it, or set PEER_STANZAD_BUILD)"
mkdir -p "$dir"

# One account: add, or set the password if it exists. stanzactl exits 1
# when it refuses (the account exists); anything else is a failure.
add_one() {
	local jid="$1" rc=0
	printf '%s\n' "$PEER_PASSWORD" | "$PEER_CTL" -d "$PEER_DATA" account add "$jid" >/dev/null 2>&1 || rc=$?
	if [ "$rc" -eq 1 ]; then
		rc=0
		printf '%s\n' "$PEER_PASSWORD" | "$PEER_CTL" -d "$PEER_DATA" account passwd "$jid" >/dev/null || rc=$?
	fi
	[ "$rc" -eq 0 ] || { echo "stanzad: account $jid failed (stanzactl exit $rc)" >&2; return 255; }
}
export -f add_one
export PEER_PASSWORD="$password" PEER_CTL="$ctl" PEER_DATA="$dir/data"

t0=$(peer_now_ms)
seq 0 $((n - 1)) | sed -e "s/^/$prefix/" -e "s/\$/@$domain/" |
	xargs -P "${PEER_JOBS:-$(($(nproc) * 2))}" -n 1 bash -c 'add_one "$1"' add_one ||
	peer_die "provisioning failed"
t1=$(peer_now_ms)
peer_log "provisioned $n accounts ${prefix}0..${prefix}$((n - 1))@$domain in $((t1 - t0)) ms"
