-- Prosody 0.12 (Debian 12 package) as a stanza-bench peer.
--
-- A template: bench/peers/prosody/start.sh replaces @DIR@ (the instance
-- directory), @PORT@ (c2s port) and @DOMAIN@ (the one virtual host) and
-- writes the result to DIR/prosody.cfg.lua. Every line that differs from
-- the package's /etc/prosody/prosody.cfg.lua says why; bench/peers/README.md
-- has the full list.

---------- Process ----------

-- The benchmark starts every server as the invoking user (root on the
-- benchmark machines), with its own files under @DIR@. Prosody refuses to
-- run as root unless told; the alternative, switching to the 'prosody'
-- user, would need @DIR@ to be owned by that user and would differ from
-- how stanzad and ejabberd are run. This changes nothing on the hot path.
run_as_root = true

-- Our own PID file and data directory, so this instance never touches the
-- system service's /run/prosody and /var/lib/prosody.
pidfile = "@DIR@/prosody.pid"
data_path = "@DIR@/data"

-- The network backend. Debian's 0.12 ships net/server_epoll.lua,
-- net/server_event.lua (libevent, needs lua-event) and the deprecated
-- server_select.lua; epoll is 0.12's default and its fastest. Written out
-- so the run does not depend on the default (stanzad uses epoll too).
network_backend = "epoll"

-- Accept queue (listen() backlog): 0.12's epoll backend uses 128; stanzad
-- listens with 1024 (per worker socket), and ejabberd is given 1024 too,
-- so a burst of connections is not turned away by the kernel sooner on
-- one server than on another.
network_settings = {
	tcp_backlog = 1024;
}

-- Logging at warning and above, to a file, as for stanzad (-l warn) and
-- ejabberd (loglevel: warning). The package logs info to a file and errors
-- to syslog; per-connection info lines cost time under load.
log = {
	warn = "@DIR@/logs/prosody.log";
}

---------- Listeners: one c2s port on loopback, nothing else ----------

-- The package listens on all interfaces on 5222 (c2s) and 5269 (s2s).
-- Only the benchmark's port, only on loopback, so several instances and
-- the system service can coexist.
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_interfaces = { "127.0.0.1" }
c2s_ports = { @PORT@ }
c2s_direct_tls_ports = { }

---------- Modules ----------

-- The package's list, minus:
--   "limits"   : mod_limits throttles every c2s connection (the package
--                sets 10 kB/s; the module's own default is also 10 KiB/s
--                and cannot be switched off by configuration while the
--                module is loaded). A throughput benchmark would measure
--                the throttle, not the server. stanzad has no rate limit.
--                Not loading the module is the only way to make the c2s
--                rate unlimited in 0.12.
--   "dialback" : server-to-server only; s2s is disabled below.
-- MAM (mod_mam) is not in the package's list and stays off: stanzad has no
-- archive, and archiving every message would be work stanzad does not do.
-- Offline storage (mod_offline) is loaded automatically by Prosody and
-- stays on: stanzad stores offline messages too.
modules_enabled = {
	"disco";
	"roster";
	"saslauth";
	"tls";
	"blocklist";
	"bookmarks";
	"carbons";
	"pep";
	"private";
	"smacks";
	"vcard4";
	"vcard_legacy";
	"csi_simple";
	"invites";
	"invites_adhoc";
	"invites_register";
	"ping";
	"register";
	"time";
	"uptime";
	"version";
	"admin_adhoc";
	"admin_shell";
	"posix";
}

-- No server-to-server and no external components: the benchmark has one
-- domain and no federation. mod_s2s is auto-loaded and would listen on
-- 5269 (clashing with the system service); nothing here loads
-- mod_component, so no component port is opened.
modules_disabled = {
	"s2s";
	"s2s_auth_certs";
}

---------- Authentication and storage ----------

-- As the package: hashed passwords (SCRAM-SHA-1 stored keys) in the
-- internal file store.
authentication = "internal_hashed"
storage = "internal"

-- PBKDF2 rounds for new accounts. Prosody 0.12's default is 10000;
-- stanzad and ejabberd use 4096 (RFC 5802's minimum). Same cost for all
-- three so that a PLAIN login (where the server runs PBKDF2) or a SCRAM
-- login (where the client does) costs the same everywhere.
-- bench/peers/prosody/provision.sh writes accounts with 4096 rounds.
default_iteration_count = 4096

---------- TLS: offered, not required ----------

-- A self-signed certificate made by start.sh under @DIR@/certs.
ssl = {
	certificate = "@DIR@/certs/@DOMAIN@.crt";
	key = "@DIR@/certs/@DOMAIN@.key";
}

-- STARTTLS is offered but not required (the package requires it), so the
-- benchmark can also run over plaintext TCP and measure the XMPP work
-- alone; stanzad and ejabberd are configured the same way.
c2s_require_encryption = false

-- Over plaintext, Prosody hides PLAIN by default. The benchmark's
-- plaintext runs may log in with PLAIN on all three servers (only on
-- loopback), so allow it.
allow_unencrypted_plain_auth = true

---------- Limits ----------

-- Largest stanza after authentication: 256 KiB, the same as stanzad's
-- max_stanza and ejabberd's max_stanza_size. (Also 0.12's default;
-- written out so the run does not depend on it.)
c2s_stanza_size_limit = 262144

---------- The one virtual host ----------

VirtualHost "@DOMAIN@"
