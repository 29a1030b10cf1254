#!/usr/bin/env bash
# Stop the ejabberd instance started by start.sh in DIR, and wait for it to
# exit.   bench/peers/ejabberd/stop.sh DIR
# Only the Erlang VM in DIR/ejabberd.pid is signalled (SIGTERM: the VM
# runs init:stop(), a clean shutdown, Mnesia included), and only if its
# command line names DIR. Environment: PEER_STOP_TIMEOUT (default 60).
set -euo pipefail
PEER_NAME=ejabberd
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/../common.sh"

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
dir="$(peer_abs "$1")"
peer_stop_pidfile "$dir/ejabberd.pid" "$dir" "${PEER_STOP_TIMEOUT:-60}"
