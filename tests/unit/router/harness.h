/* The bytes-driven harness of the router tests (test_c2s.c, test_sm.c,
 * test_im.c): client streams with no sockets.
 *
 * The test thread is every worker and the control thread at once: the
 * server is built with server_new but never started; each worker's event
 * loop is replaced by a fake backend whose sendv appends to a capture
 * buffer per connection id. Sessions are opened with router_session_open,
 * fed with router_session_bytes, and the workers are stepped with
 * router_worker_step (rings, timers, flush, free); the control thread's
 * requests are served with server_ctl_process. Authentication is the real
 * one (control/auth.c over an LMDB store in a mkdtemp directory), TLS is
 * the real one (a self-signed certificate, an in-memory tls_conn_client on
 * the test side).
 *
 * A test file's fixture is hx_open, its own hooks and configuration on
 * F->hooks and F->cfg, then hx_start; its teardown is hx_close.
 */
#ifndef STANZAD_TESTS_ROUTER_HARNESS_H
#define STANZAD_TESTS_ROUTER_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "control/auth.h"
#include "net/net.h"
#include "router/router.h"
#include "store/store.h"
#include "tls/tls.h"

#define DOMAIN      "localhost"
#define ITER        4096
#define NWORKERS    2
#define L_STARTTLS  0u   /* listener indexes of the configuration */
#define L_DIRECT    1u

#define NS_STREAMS  "http://etherx.jabber.org/streams"
#define NS_SERR     "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_TLS      "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL     "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND     "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_STANZAS  "urn:ietf:params:xml:ns:xmpp-stanzas"

#define HEADER_TO(to) \
	"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS \
	"' to='" to "' version='1.0'>"
#define HEADER HEADER_TO(DOMAIN)

/* ---- the fake network backend ------------------------------------------ */

#define MAX_CONNS 512

struct capture {
	uint8_t *p;        /* everything the server sent on this connection */
	size_t len, cap;
	size_t rd;         /* consumed by the test-side client */
	bool used;
	bool closed;       /* net_close was called */
	bool block;        /* sendv returns -EAGAIN */
	unsigned after_close;   /* calls on the connection after its close: a router bug */
};

extern struct capture caps[MAX_CONNS];
extern uint64_t activity;   /* bumps on every byte moved or connection closed */

struct fake_loop {
	struct net_loop base;
};

/* ---- the fixture ---------------------------------------------------------- */

#define MAX_CLIENTS 128

struct cli;

struct fx {
	char root[64];
	char dbdir[128], secret[128], cert[128], key[128];
	struct store *st;
	struct auth auth;
	struct tls_server *tls;
	struct tls_client *tcl;       /* no ALPN (STARTTLS clients) */
	struct tls_client *tcl_alpn;  /* offers xmpp-client (direct TLS) */
	struct router_hooks hooks;
	struct server_config cfg;
	struct server *srv;
	struct fake_loop fl[NWORKERS];
	struct net_loop *orig[NWORKERS];
	uint64_t next_id;
	struct cli *clients[MAX_CLIENTS];
	unsigned nclients;
};

/* Per-test changes to the configuration, passed as cmocka's prestate
 * (NULL: none); a zero field changes nothing. */
struct tweak {
	uint32_t max_stanza;
	uint32_t max_output;
	uint32_t header_timeout_ms;
	uint32_t max_auth_failures;
	uint32_t ping_idle_ms;     /* XEP-0199 */
	uint32_t ping_timeout_ms;
	uint32_t sm_resume_ms;     /* XEP-0198 */
	uint32_t sm_max_unacked;
	bool register_enabled;     /* XEP-0077 before authentication */
};

extern struct fx *F;

/* A new F: a store in /tmp/stanzad-<name>-XXXXXX with the accounts
 * alice@ (secret) and bob@ (hunter2), auth, TLS (server and the two
 * clients), the auth hooks, the default configuration (two workers, the
 * STARTTLS and the direct-TLS listener, nothing bound). */
void hx_open(const char *name);

/* Apply tw (NULL: none), build the server and put the fake backend under
 * its workers. */
void hx_start(const struct tweak *tw);

/* Close every session (as a worker does when it stops), check that every
 * slot was freed and no connection was used after its close, free all. */
void hx_close(void);

/* cmocka group fixtures: the test thread is an RCU reader. */
int group_setup(void **state);
int group_teardown(void **state);

/* ---- the test-side client ---------------------------------------------- */

struct cli {
	unsigned wk;
	uint64_t id;
	struct session *s;       /* NULL once the server closed the connection */
	struct tls_conn *tls;
	bool tls_failed;
	char *text;              /* plaintext received, NUL-terminated */
	size_t tlen, tcap;
	size_t mark;             /* cli_take's position */
};

void cli_free(struct cli *c);
bool cli_alive(struct cli *c);
void text_add(struct cli *c, const void *p, size_t n);

/* Bytes as the network would deliver them. */
void raw_send(struct cli *c, const void *p, size_t n);

/* Plaintext from the client (encrypted first once TLS is up). */
void cli_send_n(struct cli *c, const char *p, size_t n);
void cli_send(struct cli *c, const char *str);

/* Take what the server sent: plaintext as is, ciphertext through TLS
 * (whose answers, during the handshake, go back to the server). */
void cli_pull(struct cli *c);

/* Run the server until nothing moves: every worker (rings, timers,
 * flush), the control thread's requests, every client's input. */
void pump(void);

void sleep_ms(unsigned ms);

/* Pump until the connection is closed (timers may have to run). */
bool pump_until_closed(struct cli *c, unsigned max_ms);

/* Pump until needle is in what c received since the last take. */
bool pump_until_text(struct cli *c, const char *needle, unsigned max_ms);

/* A connection to worker wk on this listener (L_DIRECT: TLS established). */
struct cli *cli_open(unsigned wk, unsigned listener);

/* Everything received since the last take (NUL-terminated, borrowed
 * until the next receive). */
const char *cli_take(struct cli *c);

bool cli_closed(struct cli *c);

/* ---- assertions on what the server wrote -------------------------------- */

#define HAS(t, s)                                                                  \
	do {                                                                       \
		const char *t_ = (t);                                              \
		if (!strstr(t_, (s)))                                              \
			fail_msg("expected \"%s\" in \"%s\"", (s), t_);            \
	} while (0)
#define HASNT(t, s)                                                                \
	do {                                                                       \
		const char *t_ = (t);                                              \
		if (strstr(t_, (s)))                                               \
			fail_msg("did not expect \"%s\" in \"%s\"", (s), t_);      \
	} while (0)

/* The value of attribute name in the start tag at p (quotes ' or ").
 * Returns false if absent; fails the test if it occurs twice. */
bool attr_of(const char *p, const char *name, char *out, size_t cap);
void expect_attr(const char *p, const char *name, const char *want);
void expect_no_attr(const char *p, const char *name);

/* The stream error ending a stream: the condition, the close tag last,
 * and the connection closed. */
void expect_stream_error(struct cli *c, const char *t, const char *cond);

/* Our stream header: first thing sent, with an id of 16 hex digits, from
 * (when expected), version 1.0, the right namespaces. Returns what follows
 * the header. */
const char *expect_header(const char *t, bool with_from);

/* The first element starting with start in t (fails the test if none). */
const char *elem(struct cli *c, const char *t, const char *start);

/* ---- logging in ------------------------------------------------------------ */

void b64(const uint8_t *in, size_t n, char *out);
void send_plain_auth(struct cli *c, const char *user, const char *pass);

/* STARTTLS from a fresh plaintext connection up to an encrypted stream
 * whose header is still to be sent. */
void do_starttls(struct cli *c);

/* Over an established TLS stream: header, PLAIN, restart. */
void do_auth(struct cli *c, const char *user, const char *pass);

void do_bind(struct cli *c, const char *user, const char *res);

/* A bound session of user/res on worker wk, over STARTTLS; available
 * (initial presence sent, its echo taken) when avail. */
struct cli *login(unsigned wk, const char *user, const char *pass, const char *res, bool avail);

#endif
