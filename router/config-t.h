/* The server's configuration as the router and the control plane read it.
 * cmd/config.c fills it from the configuration file (libconfig) and the
 * command line; defaults come from config_defaults(). Plain data, no
 * pointers: a reload builds a new one and swaps it whole.
 */
#ifndef STANZA_ROUTER_CONFIG_T_H
#define STANZA_ROUTER_CONFIG_T_H

#include <limits.h>
#include <stdint.h>
#include "net/dpdk/dpdk-t.h"
#include "parser/xml-t.h"

#define CONFIG_MAX_VHOSTS     64
#define CONFIG_MAX_LISTENERS  16
#define CONFIG_DOMAIN_MAX     1023
#define CONFIG_PATH_MAX       PATH_MAX

enum listener_kind {
	LISTEN_C2S_STARTTLS = 0,  /* plaintext, STARTTLS offered and required before auth */
	LISTEN_C2S_DIRECT_TLS,    /* XEP-0368: TLS from the first byte, ALPN xmpp-client */
};

struct listener_config {
	char addr[128];           /* "127.0.0.1:5222", "[::1]:5222", "*:5222" */
	uint8_t kind;             /* enum listener_kind */
};

struct vhost_config {
	char domain[CONFIG_DOMAIN_MAX + 1];   /* nameprepped */
	char cert[CONFIG_PATH_MAX];           /* PEM chain; empty: <data_dir>/certs/<domain>.crt (generated if missing) */
	char key[CONFIG_PATH_MAX];            /* PEM key;   empty: <data_dir>/certs/<domain>.key */
};

enum conflict_policy {
	CONFLICT_KICK_OLD = 0,    /* RFC 6120 7.7.2.2 option 1: the old session gets <conflict/> (default) */
	CONFLICT_REFUSE_NEW,      /* option 2: the bind fails with <conflict/> */
	CONFLICT_RENAME_NEW,      /* option 3: the new session gets a server-generated resource */
};

/* IM and presence (RFC 6121, the XEPs): the control plane's and the
 * session's limits. Group "im" of the file (docs/CONFIG.md). */
struct im_config {
	uint32_t roster_max;               /* items per roster; a set beyond it: <not-acceptable/> */
	uint32_t pending_max;              /* subscription requests kept per user (a flood beyond it is dropped) */
	uint32_t offline_max;              /* messages stored per user; beyond it: <service-unavailable/> */
	uint32_t privacy_max_items;        /* items per privacy list and block list entries */
	uint8_t register_enabled;          /* XEP-0077 in-band registration (off by default) */
	uint32_t register_per_hour;        /* registrations per source address per hour */
	uint32_t ping_idle_ms;             /* XEP-0199: ping a client silent this long (0: never) */
	uint32_t ping_timeout_ms;          /* ... and close it if the pong does not come in time */
	uint32_t sm_resume_ms;             /* XEP-0198: how long a dropped session waits to be resumed */
	uint32_t sm_max_unacked;           /* unacknowledged stanzas kept per session; beyond: the session is cut */
	uint32_t csi_max_held;             /* XEP-0352: presence stanzas held back for an inactive client */
};

struct server_config {
	struct vhost_config vhost[CONFIG_MAX_VHOSTS];
	unsigned nvhost;
	struct listener_config listener[CONFIG_MAX_LISTENERS];
	unsigned nlistener;

	unsigned workers;                  /* 0: one per online CPU */
	int pin_workers;                   /* pin worker i to CPU i */
	char data_dir[CONFIG_PATH_MAX];    /* store, certificates, admin socket */
	char admin_socket[CONFIG_PATH_MAX];/* empty: <data_dir>/stanzad.sock */
	int log_level;                     /* enum log_level */

	struct xml_limits xml;             /* stanza size, depth, attributes, namespaces */
	uint32_t max_output;               /* bytes queued to a client before it is cut off as too slow */
	uint32_t header_timeout_ms;        /* connect → stream header; and restart → header */
	uint32_t auth_timeout_ms;          /* connect → bound resource */
	uint32_t max_auth_failures;        /* per connection, then the stream is closed */
	uint32_t auth_fail_delay_ms;       /* per source address, doubled per recent failure, capped */
	uint32_t scram_iterations;         /* for new credentials */
	uint8_t allow_plaintext_auth;      /* SCRAM (never PLAIN) without TLS: benchmarks and trusted
					    * networks only; off by default (TLS required to authenticate) */
	uint8_t conflict;                  /* enum conflict_policy */
	uint64_t store_map_size;           /* LMDB map size in bytes */
	/* The transport under the router (net/net.h): "kernel" or "dpdk", and the
	 * DPDK port (group "dpdk" of the file). The router only passes the name to
	 * net_backend; cmd/ sets the port up. */
	char transport[16];
	struct net_dpdk_conf dpdk;
	struct im_config im;
};

#endif
