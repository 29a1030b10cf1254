#!/usr/bin/env bash
# Stop the stanzad instance started by start.sh in DIR, and wait for it to
# exit.   bench/peers/stanzad/stop.sh DIR
# Only the PID in DIR/stanzad.pid is signalled (SIGTERM: stanzad closes
# every stream with <system-shutdown/> and exits), and only if its command
# line names DIR. Environment: PEER_STOP_TIMEOUT (seconds, default 30).
set -euo pipefail
PEER_NAME=stanzad
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/../common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir="$(peer_abs "$1")"
peer_stop_pidfile "$dir/stanzad.pid" "$dir" "${PEER_STOP_TIMEOUT:-30}"
