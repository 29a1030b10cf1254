#!/usr/bin/env bash
# Create PREFIX0..PREFIX(N-1)@DOMAIN in the running ejabberd instance in
# DIR, all with PASSWORD.
#
#   bench/peers/ejabberd/provision.sh DIR PREFIX N PASSWORD DOMAIN
#
# `ejabberdctl register` starts an Erlang VM per account (about 0.5 s).
# Instead one hidden Erlang node connects to the instance the way
# ejabberdctl does (same node name, cookie and distribution port, from DIR)
# and calls ejabberd_auth:try_register/3, the function behind the
# `register` command, from PEER_JOBS processes at once (default 16).
#
# try_register/3 takes either a password or a #scram{} record, which it
# stores as is. Given a password, the server derives the SCRAM-SHA-1 keys
# with PBKDF2 written in Erlang: about 30 ms per account here. So this node
# derives them instead, with crypto:pbkdf2_hmac/5 (OpenSSL, about 2 ms),
# exactly as ejabberd_auth:password_to_scram/2 would (16 random bytes of
# salt, 4096 rounds, keys and salt base64-encoded; checked against accounts
# made by try_register with a password). An account that already exists
# gets the new credentials (ejabberd_auth:set_password/3, same record).
# PASSWORD must be printable ASCII (so that SASLprep leaves it as is).
# The instance must be running (start.sh).
set -euo pipefail
PEER_NAME=ejabberd
here="$(cd "$(dirname "$0")" && pwd -P)"
. "$here/../common.sh"

peer_provision_args "$@"
[ -s "$dir/ejabberdctl.cfg" ] || peer_die "$dir is not an ejabberd instance (start.sh makes it)"
peer_pid_is_ours "$(cat "$dir/ejabberd.pid" 2>/dev/null)" "$dir" || peer_die "not running in $dir"

node=$(. "$dir/ejabberdctl.cfg"; echo "$ERLANG_NODE")
dist_port=$(. "$dir/ejabberdctl.cfg"; echo "$ERL_DIST_PORT")
cookie=$(cat "$dir/cookie")

# Everything reaches the Erlang code through the environment (the password
# stays out of the process list).
export PEER_NODE="$node" PEER_DOMAIN="$domain" PEER_PREFIX="$prefix" PEER_N="$n"
export PEER_JOBS="${PEER_JOBS:-16}" PEER_PASSWORD="$password"

read -r -d '' code <<'EOF' || true
Node = list_to_atom(os:getenv("PEER_NODE")),
Host = list_to_binary(os:getenv("PEER_DOMAIN")),
Prefix = os:getenv("PEER_PREFIX"),
N = list_to_integer(os:getenv("PEER_N")),
Jobs = max(1, min(N, list_to_integer(os:getenv("PEER_JOBS")))),
Pass = list_to_binary(os:getenv("PEER_PASSWORD")),
%% ejabberd_auth:password_to_scram/2 for auth_scram_hash sha (the default).
Scram = fun() ->
    Salt = crypto:strong_rand_bytes(16),
    Salted = crypto:pbkdf2_hmac(sha, Pass, Salt, 4096, 20),
    ClientKey = crypto:mac(hmac, sha, Salted, <<"Client Key">>),
    ServerKey = crypto:mac(hmac, sha, Salted, <<"Server Key">>),
    {scram, base64:encode(crypto:hash(sha, ClientKey)), base64:encode(ServerKey),
     base64:encode(Salt), sha, 4096}
end,
case net_adm:ping(Node) of
    pong -> ok;
    pang -> io:format(standard_error, "ejabberd: cannot reach node ~s~n", [Node]), halt(3)
end,
One = fun(I) ->
    User = list_to_binary(Prefix ++ integer_to_list(I)),
    Cred = Scram(),
    case rpc:call(Node, ejabberd_auth, try_register, [User, Host, Cred]) of
        ok -> ok;
        {error, exists} ->
            case rpc:call(Node, ejabberd_auth, set_password, [User, Host, Cred]) of
                ok -> ok;
                E -> {User, E}
            end;
        E -> {User, E}
    end
end,
Parent = self(),
Pids = [spawn_link(fun() ->
            Errors = [R || I <- lists:seq(J, N - 1, Jobs), R <- [One(I)], R =/= ok],
            Parent ! {done, self(), Errors}
        end) || J <- lists:seq(0, Jobs - 1)],
Errors = lists:append([receive {done, P, E} -> E end || P <- Pids]),
case Errors of
    [] -> halt(0);
    _ ->
        io:format(standard_error, "ejabberd: ~b of ~b accounts failed, e.g. ~p~n",
                  [length(Errors), N, hd(Errors)]),
        halt(1)
end.
EOF

t0=$(peer_now_ms)
erl -sname "provision_$$_$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')@localhost" -hidden -noinput \
	-setcookie "$cookie" -erl_epmd_port "$dist_port" -start_epmd false -dist_listen false \
	-kernel inet_dist_use_interface '{127,0,0,1}' \
	-eval "$code"
t1=$(peer_now_ms)
peer_log "provisioned $n accounts ${prefix}0..${prefix}$((n - 1))@$domain in $((t1 - t0)) ms"
