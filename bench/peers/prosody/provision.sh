#!/usr/bin/env bash
# Create PREFIX0..PREFIX(N-1)@DOMAIN in the Prosody instance in DIR, all
# with PASSWORD.
#
#   bench/peers/prosody/provision.sh DIR PREFIX N PASSWORD DOMAIN
#
# `prosodyctl register` starts a Lua process and loads the configuration
# per account. Instead this writes what mod_auth_internal_hashed itself
# writes (checked against an account made by `prosodyctl register` with
# Prosody 0.12.3): DIR/data/<host>/accounts/<user>.dat, a Lua table
#   return {
#       ["iteration_count"] = 4096;
#       ["stored_key"] = "<hex SHA-1>";
#       ["server_key"] = "<hex SHA-1>";
#       ["salt"] = "<uuid>";
#   };
# with SCRAM-SHA-1 keys (RFC 5802) over a fresh UUID salt per account, 4096
# PBKDF2 rounds (default_iteration_count in the configuration), and <host>
# and <user> encoded as util/datamanager.lua does (every byte outside
# [A-Za-z0-9] as %xx). Existing accounts with the same names are replaced.
# Works whether or not the server is running (mod_storage_internal reads
# the file at each login). PREFIX must be lowercase (Prosody nodepreps
# usernames); PASSWORD printable ASCII (so that SASLprep leaves it as is).
# Environment: PEER_JOBS (processes for PBKDF2, default: online CPUs).
set -euo pipefail
PEER_NAME=prosody
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/../common.sh"

peer_provision_args "$@"
[ -f "$dir/prosody.cfg.lua" ] || peer_die "$dir is not a Prosody instance (start.sh makes it)"

t0=$(peer_now_ms)
printf '%s\n' "$password" |
	python3 "$here/accounts.py" "$dir/data" "$prefix" "$n" "$domain" "${PEER_JOBS:-$(nproc)}"
t1=$(peer_now_ms)
peer_log "provisioned $n accounts ${prefix}0..${prefix}$((n - 1))@$domain in $((t1 - t0)) ms"
