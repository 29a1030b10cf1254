#!/usr/bin/env bash
# Stop the Prosody instance started by start.sh in DIR, and wait for it to
# exit.   bench/peers/prosody/stop.sh DIR
# Only the PID in DIR/prosody.pid is signalled, and only if its command
# line names DIR. Environment: PEER_STOP_TIMEOUT (seconds, default 30).
set -euo pipefail
PEER_NAME=prosody
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/../common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir="$(peer_abs "$1")"
peer_stop_pidfile "$dir/prosody.pid" "$dir" "${PEER_STOP_TIMEOUT:-30}"
