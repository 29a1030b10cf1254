#!/bin/sh
# stanzactl's account commands with the server stopped: straight on the
# store in a temporary data directory, the password on stdin.
#   test_stanzactl.sh path/to/stanzactl
set -eu
ctl=$1
tmp=$(mktemp -d /tmp/stanzactl-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
d=$tmp/data

fail() { echo "not ok: $*" >&2; exit 1; }
# expect STATUS COMMAND...: run it (stdin as given) and check the exit status.
expect() {
	want=$1; shift
	set +e; "$@" >"$tmp/out" 2>"$tmp/err"; got=$?; set -e
	[ "$got" -eq "$want" ] || { cat "$tmp/err" >&2; fail "$* exited $got, wanted $want"; }
}

printf 'secret one\n' | expect 0 "$ctl" -d "$d" account add juliet@localhost
[ "$(stat -c %a "$d")" = 700 ] || fail "data directory mode $(stat -c %a "$d")"
[ -d "$d/store" ] || fail "no store"
expect 0 "$ctl" -d "$d" account list
[ "$(cat "$tmp/out")" = "juliet@localhost" ] || fail "list: $(cat "$tmp/out")"

# Prepared on the way in; a second add of the same account is refused.
printf 'pw\r\n' | expect 0 "$ctl" -d "$d" account add Romeo@LocalHost
printf 'pw\n' | expect 1 "$ctl" -d "$d" account add juliet@LOCALHOST
grep -q exist "$tmp/err" || fail "exists: $(cat "$tmp/err")"
printf 'x\n' | expect 0 "$ctl" -d "$d" account add nurse@example.org
expect 0 "$ctl" -d "$d" account list localhost
[ "$(cat "$tmp/out")" = "juliet@localhost
romeo@localhost" ] || fail "list localhost: $(cat "$tmp/out")"
expect 0 "$ctl" -d "$d" account list
[ "$(wc -l <"$tmp/out")" -eq 3 ] || fail "list all: $(cat "$tmp/out")"

# passwd: existing account only.
printf 'secret two\n' | expect 0 "$ctl" -d "$d" account passwd juliet@localhost
printf 'x\n' | expect 1 "$ctl" -d "$d" account passwd tybalt@localhost

# The password never comes from argv; stdin must carry one.
expect 2 "$ctl" -d "$d" account add tybalt@localhost hunter2
expect 2 "$ctl" -d "$d" account add tybalt@localhost </dev/null
# Bad JIDs and empty passwords are refused.
printf 'x\n' | expect 1 "$ctl" -d "$d" account add no-domain
printf 'x\n' | expect 1 "$ctl" -d "$d" account add a@b@c
printf '\n' | expect 1 "$ctl" -d "$d" account add tybalt@localhost

# del
expect 0 "$ctl" -d "$d" account del romeo@localhost
expect 1 "$ctl" -d "$d" account del romeo@localhost
expect 0 "$ctl" -d "$d" account list localhost
[ "$(cat "$tmp/out")" = "juliet@localhost" ] || fail "after del: $(cat "$tmp/out")"

# With a configuration file, only its domains take new accounts.
printf 'data_dir = "%s";\nvhosts = ( { domain = "example.org"; } );\n' "$d" >"$tmp/stanzad.conf"
printf 'x\n' | expect 1 "$ctl" -c "$tmp/stanzad.conf" account add mercutio@localhost
printf 'x\n' | expect 0 "$ctl" -c "$tmp/stanzad.conf" account add mercutio@example.org
expect 0 "$ctl" -c "$tmp/stanzad.conf" account list example.org
[ "$(cat "$tmp/out")" = "mercutio@example.org
nurse@example.org" ] || fail "list example.org: $(cat "$tmp/out")"

# A query on a data directory that does not exist creates nothing.
expect 0 "$ctl" -d "$tmp/none" account list
[ ! -e "$tmp/none" ] || fail "list created $tmp/none"

# Server commands need the server.
expect 3 "$ctl" -d "$d" sessions
expect 3 "$ctl" -d "$d" stats
expect 3 "$ctl" -d "$d" kick juliet@localhost
# Usage errors.
expect 2 "$ctl"
expect 2 "$ctl" -d "$d" frobnicate
expect 2 "$ctl" -d "$d" account list a b
expect 2 "$ctl" -c "$tmp/nonexistent.conf" account list
expect 0 "$ctl" -h

echo ok
