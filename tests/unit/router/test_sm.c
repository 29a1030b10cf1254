/* XEP-0198 stream management (router/sm.c) driven with bytes, as
 * test_c2s.c drives client streams: the same fake network backend, real TLS
 * and real authentication, every worker and the control thread stepped by
 * the test thread. The im hook is a recorder (test_serve): it answers
 * binds with an empty IM state and keeps every request, so the tests see
 * exactly which unacknowledged stanzas a session hands over
 * (IM_REQ_UNACKED). Two workers: resumption is tried on the session's own
 * worker and through the rings from the other one.
 */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <urcu-qsbr.h>

#include "control/account.h"
#include "control/auth.h"
#include "net/net.h"
#include "net/wheel.h"
#include "parser/xml.h"
#include "router/route.h"
#include "router/router.h"
#include "router/sm.h"
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

static struct capture caps[MAX_CONNS];
static uint64_t activity;   /* bumps on every byte moved or connection closed */

struct fake_loop {
	struct net_loop base;
};

static struct capture *cap_of(struct net_conn c)
{
	assert_true(c.id > 0 && c.id < MAX_CONNS);
	assert_true(caps[c.id].used);
	return &caps[c.id];
}

static ssize_t fake_sendv(struct net_loop *l, struct net_conn c, const struct iovec *iov, int iovcnt)
{
	struct capture *k = cap_of(c);
	size_t n = 0;

	(void)l;
	if (k->closed) {
		k->after_close++;
		return -EPIPE;
	}
	if (k->block)
		return -EAGAIN;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	if (k->len + n + 1 > k->cap) {
		size_t nc = k->cap ? k->cap : 4096;
		while (nc < k->len + n + 1)
			nc *= 2;
		uint8_t *p = realloc(k->p, nc);
		assert_non_null(p);
		k->p = p;
		k->cap = nc;
	}
	for (int i = 0; i < iovcnt; i++) {
		memcpy(k->p + k->len, iov[i].iov_base, iov[i].iov_len);
		k->len += iov[i].iov_len;
	}
	k->p[k->len] = '\0';
	if (n)
		activity++;
	return (ssize_t)n;
}

static ssize_t fake_recv(struct net_loop *l, struct net_conn c, void *buf, size_t cap)
{
	(void)l;
	(void)c;
	(void)buf;
	(void)cap;
	return -EAGAIN;
}

static void fake_close(struct net_loop *l, struct net_conn c)
{
	struct capture *k = cap_of(c);

	(void)l;
	if (k->closed)
		k->after_close++;
	k->closed = true;
	activity++;
}

static int fake_read_enable(struct net_loop *l, struct net_conn c, bool on)
{
	struct capture *k = cap_of(c);

	(void)l;
	(void)on;
	if (k->closed)
		k->after_close++;
	return 0;
}

static int fake_attach(struct net_loop *l, struct net_conn c, void *udata)
{
	(void)l;
	(void)c;
	(void)udata;
	return 0;
}

static void fake_wake(struct net_loop *l)
{
	(void)l;
}

static int fake_poll(struct net_loop *l, struct net_event *ev, int max, int timeout_ms)
{
	(void)l;
	(void)ev;
	(void)max;
	(void)timeout_ms;
	return 0;
}

static int fake_listen(struct net_loop *l, const struct net_addr *a, int backlog)
{
	(void)l;
	(void)a;
	(void)backlog;
	return -EINVAL;
}

static int fake_listener_port(struct net_loop *l, int listener)
{
	(void)l;
	(void)listener;
	return -EINVAL;
}

static const struct net_ops fake_ops = {
	.name = "fake",
	.loop_new = NULL,
	.loop_free = NULL,
	.listen = fake_listen,
	.listener_port = fake_listener_port,
	.poll = fake_poll,
	.attach = fake_attach,
	.recv = fake_recv,
	.sendv = fake_sendv,
	.read_enable = fake_read_enable,
	.close = fake_close,
	.wake = fake_wake,
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

/* Per-test changes to the configuration, passed as cmocka's prestate. */
struct tweak {
	uint32_t max_stanza;
	uint32_t max_output;
	uint32_t header_timeout_ms;
	uint32_t max_auth_failures;
	uint32_t sm_resume_ms;
	uint32_t sm_max_unacked;
	uint32_t ping_ms;        /* XEP-0199 idle and timeout, both */
};

/* What the control thread was asked (the im hook below records it). */
struct req {
	uint8_t type;
	uint32_t flags;       /* im_req.flags: IM_SF_* */
	uint64_t handle;
	char jid[128];
	char *stanza;         /* NUL-terminated copy */
	size_t len;
};
#define MAX_REQS 1024
static struct req reqs[MAX_REQS];
static unsigned nreqs;

/* The im hook: a bind gets an empty IM state at once (no contacts, no
 * rules); everything else is only recorded. */
static void test_serve(void *arg, uint64_t handle, const struct im_req *hdr, const char *jid, const char *stanza,
		       const struct im_out *out)
{
	(void)arg;
	if (hdr->type == IM_REQ_SESSION_START) {
		struct im_state_hdr st = { 0, 0, 0, 0 };
		out->event(out->srv, handle, IM_EV_STATE, &st, sizeof(st));
	}
	if (nreqs == MAX_REQS)
		return;
	struct req *r = &reqs[nreqs++];
	r->type = hdr->type;
	r->flags = hdr->flags;
	r->handle = handle;
	snprintf(r->jid, sizeof(r->jid), "%s", jid);
	r->len = hdr->len;
	r->stanza = malloc(hdr->len + 1);
	assert_non_null(r->stanza);
	memcpy(r->stanza, stanza, hdr->len);
	r->stanza[hdr->len] = '\0';
}

static void reqs_clear(void)
{
	for (unsigned i = 0; i < nreqs; i++)
		free(reqs[i].stanza);
	nreqs = 0;
}

static struct fx *F;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int fx_setup(void **state)
{
	const struct tweak *tw = *state;
	char err[256];
	static const char *const alpn[] = { "xmpp-client" };
	const char *const domains[] = { DOMAIN };

	F = calloc(1, sizeof(*F));
	assert_non_null(F);
	memset(caps, 0, sizeof(caps));
	activity = 0;
	strcpy(F->root, "/tmp/stanzad-sm-XXXXXX");
	assert_non_null(mkdtemp(F->root));
	snprintf(F->dbdir, sizeof(F->dbdir), "%s/db", F->root);
	snprintf(F->secret, sizeof(F->secret), "%s/secret", F->root);
	snprintf(F->cert, sizeof(F->cert), "%s/" DOMAIN ".crt", F->root);
	snprintf(F->key, sizeof(F->key), "%s/" DOMAIN ".key", F->root);

	assert_int_equal(store_open(&F->st, F->dbdir, NULL), STORE_OK);
	assert_int_equal(auth_init(&F->auth, F->st, ITER, F->secret), AUTH_OK);
	assert_int_equal(account_add(F->st, "alice@" DOMAIN, "secret", 6, ITER), ACCOUNT_OK);
	assert_int_equal(account_add(F->st, "bob@" DOMAIN, "hunter2", 7, ITER), ACCOUNT_OK);

	assert_int_equal(tls_cert_ensure(F->cert, F->key, domains, 1, err, sizeof(err)), 1);
	struct tls_vhost_conf vh = { DOMAIN, F->cert, F->key };
	struct tls_server_conf sconf = { &vh, 1, alpn, 1, 0, 0 };
	F->tls = tls_server_new(&sconf, err, sizeof(err));
	if (!F->tls)
		fail_msg("tls_server_new: %s", err);
	struct tls_client_conf cconf = { NULL, true, NULL, 0, 0, 0 };
	F->tcl = tls_client_new(&cconf, err, sizeof(err));
	assert_non_null(F->tcl);
	struct tls_client_conf cconf2 = { NULL, true, alpn, 1, 0, 0 };
	F->tcl_alpn = tls_client_new(&cconf2, err, sizeof(err));
	assert_non_null(F->tcl_alpn);

	F->hooks.auth = auth_hooks;
	F->hooks.im.serve = test_serve;

	struct server_config *c = &F->cfg;
	strcpy(c->vhost[0].domain, DOMAIN);
	c->nvhost = 1;
	strcpy(c->listener[L_STARTTLS].addr, "127.0.0.1:0");
	c->listener[L_STARTTLS].kind = LISTEN_C2S_STARTTLS;
	strcpy(c->listener[L_DIRECT].addr, "127.0.0.1:0");
	c->listener[L_DIRECT].kind = LISTEN_C2S_DIRECT_TLS;
	c->nlistener = 0;   /* nothing is bound: the fake backend is the network */
	c->workers = NWORKERS;
	strcpy(c->data_dir, F->root);
	xml_limits_default(&c->xml);
	c->max_output = 1024u * 1024u;
	c->header_timeout_ms = 30000;
	c->auth_timeout_ms = 60000;
	c->max_auth_failures = 3;
	c->auth_fail_delay_ms = 250;
	c->scram_iterations = ITER;
	c->conflict = CONFLICT_KICK_OLD;
	c->store_map_size = 64u << 20;
	c->im.sm_resume_ms = 60000;
	c->im.sm_max_unacked = 1000;
	if (tw) {
		if (tw->sm_resume_ms)
			c->im.sm_resume_ms = tw->sm_resume_ms;
		if (tw->sm_max_unacked)
			c->im.sm_max_unacked = tw->sm_max_unacked;
		if (tw->max_stanza)
			c->xml.max_stanza = tw->max_stanza;
		if (tw->max_output)
			c->max_output = tw->max_output;
		if (tw->header_timeout_ms)
			c->header_timeout_ms = tw->header_timeout_ms;
		if (tw->max_auth_failures)
			c->max_auth_failures = tw->max_auth_failures;
		c->im.ping_idle_ms = c->im.ping_timeout_ms = tw->ping_ms;
	}

	F->srv = server_new(c, F->tls, &F->hooks, err, sizeof(err));
	if (!F->srv)
		fail_msg("server_new: %s", err);
	assert_int_equal(F->srv->nworkers, NWORKERS);
	for (unsigned i = 0; i < NWORKERS; i++) {
		struct worker *w = &F->srv->workers[i];
		F->orig[i] = w->loop;
		F->fl[i].base.ops = &fake_ops;
		F->fl[i].base.worker = i;
		w->loop = &F->fl[i].base;
		/* server_new installed the session timer handler: timers fire
		 * from router_worker_step without a started worker. */
		assert_non_null(w->wheel.fn[0].fn);
	}
	*state = F;
	return 0;
}

static void cli_free(struct cli *c);

static int fx_teardown(void **state)
{
	struct server *srv = F->srv;

	(void)state;
	/* Close what is still open, as a worker does when it stops (twice:
	 * a resumable session detaches on the first close). */
	for (int pass = 0; pass < 2; pass++) {
		for (unsigned i = 0; i < NWORKERS; i++) {
			struct worker *w = &srv->workers[i];
			for (uint32_t j = 0; j < w->nslots; j++)
				if (w->slots[j] && !session_dead(w->slots[j]))
					session_close(w->slots[j], NULL);
		}
	}
	for (int r = 0; r < 4; r++)
		for (unsigned i = 0; i < NWORKERS; i++)
			router_worker_step(&srv->workers[i]);
	for (unsigned i = 0; i < NWORKERS; i++) {
		struct worker *w = &srv->workers[i];
		for (uint32_t j = 0; j < w->nslots; j++)
			assert_null(w->slots[j]);
		w->loop = F->orig[i];
	}
	for (unsigned i = 0; i < F->nclients; i++)
		cli_free(F->clients[i]);
	server_free(srv);
	route_thread_offline();
	rcu_barrier();
	route_thread_online();
	tls_server_unref(F->tls);
	tls_client_free(F->tcl);
	tls_client_free(F->tcl_alpn);
	auth_fini(&F->auth);
	store_close(F->st);
	nftw(F->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	for (unsigned i = 0; i < MAX_CONNS; i++) {
		if (caps[i].used && caps[i].after_close)
			fail_msg("connection %u: %u calls after net_close", i, caps[i].after_close);
		free(caps[i].p);
	}
	memset(caps, 0, sizeof(caps));
	reqs_clear();
	free(F);
	F = NULL;
	return 0;
}

static int group_setup(void **state)
{
	(void)state;
	route_thread_register();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	route_thread_offline();
	rcu_barrier();
	route_thread_online();
	route_thread_unregister();
	return 0;
}

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

static void cli_free(struct cli *c)
{
	tls_conn_free(c->tls);
	free(c->text);
	free(c);
}

static bool cli_alive(struct cli *c)
{
	if (c->s && caps[c->id].closed)
		c->s = NULL;   /* dead now, freed at the end of its worker's step */
	return c->s != NULL;
}

static void text_add(struct cli *c, const void *p, size_t n)
{
	if (c->tlen + n + 1 > c->tcap) {
		size_t nc = c->tcap ? c->tcap : 4096;
		while (nc < c->tlen + n + 1)
			nc *= 2;
		char *t = realloc(c->text, nc);
		assert_non_null(t);
		c->text = t;
		c->tcap = nc;
	}
	memcpy(c->text + c->tlen, p, n);
	c->tlen += n;
	c->text[c->tlen] = '\0';
}

/* Bytes as the network would deliver them. */
static void raw_send(struct cli *c, const void *p, size_t n)
{
	assert_true(cli_alive(c));
	router_session_bytes(c->s, p, n);
	activity++;
	cli_alive(c);
}

static unsigned char big_out[1u << 21];

/* Plaintext from the client (encrypted first once TLS is up). */
static void cli_send_n(struct cli *c, const char *p, size_t n)
{
	if (!c->tls) {
		raw_send(c, p, n);
		return;
	}
	assert_true(tls_conn_established(c->tls));
	size_t off = 0;
	while (off < n) {
		struct tls_io io = { NULL, 0, 0, big_out, sizeof(big_out), 0, false };
		size_t taken = 0;
		enum tls_status st = tls_conn_write(c->tls, &io, p + off, n - off, &taken);
		assert_true(st == TLS_OK || st == TLS_WANT_WRITE);
		off += taken;
		if (io.out_len)
			raw_send(c, big_out, io.out_len);
	}
}

static void cli_send(struct cli *c, const char *str)
{
	cli_send_n(c, str, strlen(str));
}

/* Take what the server sent: plaintext as is, ciphertext through TLS
 * (whose answers, during the handshake, go back to the server). */
static void cli_pull(struct cli *c)
{
	struct capture *k = &caps[c->id];
	static unsigned char plain[64 * 1024];
	unsigned char out[16 * 1024];

	if (!c->tls) {
		if (k->rd < k->len) {
			text_add(c, k->p + k->rd, k->len - k->rd);
			k->rd = k->len;
		}
		return;
	}
	if (c->tls_failed)
		return;
	for (;;) {
		struct tls_io io = { k->p + k->rd, k->len - k->rd, 0, out, sizeof(out), 0, false };
		size_t n = 0;
		enum tls_status st;

		if (!tls_conn_established(c->tls))
			st = tls_conn_handshake(c->tls, &io);
		else
			st = tls_conn_read(c->tls, &io, plain, sizeof(plain), &n);
		k->rd += io.in_used;
		if (io.out_len && cli_alive(c))
			raw_send(c, out, io.out_len);
		if (n)
			text_add(c, plain, n);
		if (st == TLS_OK || st == TLS_WANT_WRITE)
			continue;
		if (st == TLS_ERROR || st == TLS_CLOSED)
			c->tls_failed = st == TLS_ERROR;
		return;
	}
}

/* Run the server until nothing moves: every worker (rings, timers,
 * flush), the control thread's requests, every client's input. */
static void pump(void)
{
	for (int round = 0; round < 10000; round++) {
		uint64_t before = activity;
		size_t served;

		for (unsigned i = 0; i < NWORKERS; i++)
			router_worker_step(&F->srv->workers[i]);
		served = server_ctl_process(F->srv);
		for (unsigned i = 0; i < NWORKERS; i++)
			router_worker_step(&F->srv->workers[i]);
		for (unsigned i = 0; i < F->nclients; i++) {
			cli_alive(F->clients[i]);
			cli_pull(F->clients[i]);
		}
		if (activity == before && served == 0)
			return;
	}
	fail_msg("the server does not settle");
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* Pump until the connection is closed (timers may have to run). */
static bool pump_until_closed(struct cli *c, unsigned max_ms)
{
	for (unsigned t = 0;; t += 20) {
		pump();
		if (!cli_alive(c))
			return true;
		if (t >= max_ms)
			return false;
		sleep_ms(20);
	}
}

static struct cli *cli_open(unsigned wk, unsigned listener)
{
	struct cli *c = calloc(1, sizeof(*c));
	struct net_addr peer = { NET_AF_INET, 0, 0, { 127, 0, 0, 1 } };

	assert_non_null(c);
	assert_true(F->nclients < MAX_CLIENTS);
	F->clients[F->nclients++] = c;
	c->wk = wk;
	c->id = ++F->next_id;
	assert_true(c->id < MAX_CONNS);
	caps[c->id].used = true;
	/* An address of its own: SASL failures are throttled per address. */
	peer.addr[2] = (uint8_t)(c->id >> 8);
	peer.addr[3] = (uint8_t)c->id;
	peer.port = (uint16_t)(40000 + c->id);
	c->s = router_session_open(&F->srv->workers[wk], (struct net_conn){ c->id }, &peer, listener);
	assert_non_null(c->s);
	text_add(c, "", 0);
	if (listener == L_DIRECT) {
		c->tls = tls_conn_client(F->tcl_alpn, DOMAIN);
		assert_non_null(c->tls);
		cli_pull(c);   /* the ClientHello */
		pump();
		assert_true(tls_conn_established(c->tls));
	}
	return c;
}

/* Everything received since the last take (NUL-terminated, borrowed
 * until the next receive). */
static const char *cli_take(struct cli *c)
{
	const char *t = c->text + c->mark;
	c->mark = c->tlen;
	return t;
}

static bool cli_closed(struct cli *c)
{
	return caps[c->id].closed;
}

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
static bool attr_of(const char *p, const char *name, char *out, size_t cap)
{
	const char *end = strchr(p, '>');
	size_t nl = strlen(name);
	bool found = false;

	assert_non_null(end);
	for (const char *q = p; q < end; q++) {
		if ((q[-1] == ' ' || q[-1] == '\t' || q[-1] == '\n') && !strncmp(q, name, nl) && q[nl] == '=' &&
		    (q[nl + 1] == '\'' || q[nl + 1] == '"')) {
			char quote = q[nl + 1];
			const char *v = q + nl + 2, *ve = strchr(v, quote);
			assert_non_null(ve);
			if (found)
				fail_msg("attribute %s twice in %.*s", name, (int)(end - p + 1), p);
			assert_true((size_t)(ve - v) < cap);
			memcpy(out, v, (size_t)(ve - v));
			out[ve - v] = '\0';
			found = true;
		}
	}
	return found;
}

static void expect_attr(const char *p, const char *name, const char *want)
{
	char v[512];

	if (!attr_of(p, name, v, sizeof(v)))
		fail_msg("no %s= in %.120s", name, p);
	if (strcmp(v, want))
		fail_msg("%s='%s', expected '%s' in %.160s", name, v, want, p);
}

static void expect_no_attr(const char *p, const char *name)
{
	char v[512];

	if (attr_of(p, name, v, sizeof(v)))
		fail_msg("unexpected %s='%s' in %.160s", name, v, p);
}

/* The stream error ending a stream: the condition, the close tag last,
 * and the connection closed. */
static void expect_stream_error(struct cli *c, const char *t, const char *cond)
{
	char want[256];

	snprintf(want, sizeof(want), "<stream:error><%s xmlns='" NS_SERR "'/></stream:error></stream:stream>", cond);
	HAS(t, want);
	size_t tl = strlen(t), wl = strlen(want);
	if (tl < wl || strcmp(t + tl - wl, want))
		fail_msg("the stream error is not the last thing sent: \"%s\"", t);
	if (!cli_closed(c))
		fail_msg("connection not closed after <%s/>", cond);
}

/* Our stream header: first thing sent, with an id of 16 hex digits, from
 * (when expected), version 1.0, the right namespaces. */
static const char *expect_header(const char *t, bool with_from)
{
	const char *h = strstr(t, "<stream:stream");
	char id[64];

	if (!h)
		fail_msg("no stream header in \"%s\"", t);
	if (strncmp(t, "<?xml version='1.0'?><stream:stream", 35) && h != t)
		fail_msg("garbage before the header: \"%s\"", t);
	expect_attr(h, "xmlns", "jabber:client");
	expect_attr(h, "xmlns:stream", NS_STREAMS);
	expect_attr(h, "version", "1.0");
	assert_true(attr_of(h, "id", id, sizeof(id)));
	assert_int_equal(strlen(id), 16);
	assert_int_equal(strspn(id, "0123456789abcdef"), 16);
	if (with_from)
		expect_attr(h, "from", DOMAIN);
	else
		expect_no_attr(h, "from");
	return strchr(h, '>') + 1;
}

static void b64(const uint8_t *in, size_t n, char *out)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? tab[v & 63] : '=';
	}
	out[o] = '\0';
}

static void send_plain_auth(struct cli *c, const char *user, const char *pass)
{
	uint8_t raw[256];
	char enc[400], el[512];
	size_t ul = strlen(user), pl = strlen(pass);

	raw[0] = 0;
	memcpy(raw + 1, user, ul);
	raw[1 + ul] = 0;
	memcpy(raw + 2 + ul, pass, pl);
	b64(raw, 2 + ul + pl, enc);
	snprintf(el, sizeof(el), "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>%s</auth>", enc);
	cli_send(c, el);
}

/* STARTTLS from a fresh plaintext connection up to an encrypted stream
 * whose header is still to be sent. */
static void do_starttls(struct cli *c)
{
	const char *t;

	cli_send(c, HEADER);
	pump();
	t = expect_header(cli_take(c), true);
	HAS(t, "<starttls xmlns='" NS_TLS "'><required/></starttls>");
	cli_send(c, "<starttls xmlns='" NS_TLS "'/>");
	pump();
	t = cli_take(c);
	assert_string_equal(t, "<proceed xmlns='" NS_TLS "'/>");
	c->tls = tls_conn_client(F->tcl, DOMAIN);
	assert_non_null(c->tls);
	cli_pull(c);   /* ClientHello */
	pump();
	assert_true(tls_conn_established(c->tls));
	assert_true(cli_alive(c));
}

/* Over an established TLS stream: header, PLAIN, restart. */
static void do_auth(struct cli *c, const char *user, const char *pass)
{
	const char *t;

	cli_send(c, HEADER);
	pump();
	t = expect_header(cli_take(c), true);
	HAS(t, "<mechanisms xmlns='" NS_SASL "'>");
	HAS(t, "<mechanism>PLAIN</mechanism>");
	HASNT(t, "starttls");
	send_plain_auth(c, user, pass);
	pump();
	assert_string_equal(cli_take(c), "<success xmlns='" NS_SASL "'></success>");
	cli_send(c, HEADER);
	pump();
	t = expect_header(cli_take(c), true);
	HAS(t, "<bind xmlns='" NS_BIND "'/>");
	HASNT(t, "mechanism");
}

static void do_bind(struct cli *c, const char *user, const char *res)
{
	char el[256], want[256];

	snprintf(el, sizeof(el),
		 "<iq type='set' id='bind1'><bind xmlns='" NS_BIND "'><resource>%s</resource></bind></iq>", res);
	cli_send(c, el);
	pump();
	snprintf(want, sizeof(want),
		 "<iq type='result' id='bind1'><bind xmlns='" NS_BIND "'><jid>%s@" DOMAIN "/%s</jid></bind></iq>",
		 user, res);
	assert_string_equal(cli_take(c), want);
}

/* A bound session of user/res on worker wk, over STARTTLS; available
 * (initial presence sent, its echo taken) when avail. */
static struct cli *login(unsigned wk, const char *user, const char *pass, const char *res, bool avail)
{
	struct cli *c = cli_open(wk, L_STARTTLS);

	do_starttls(c);
	do_auth(c, user, pass);
	do_bind(c, user, res);
	if (avail) {
		char from[128];
		cli_send(c, "<presence/>");
		pump();
		const char *t = cli_take(c);
		const char *p = strstr(t, "<presence");
		assert_non_null(p);
		snprintf(from, sizeof(from), "%s@" DOMAIN "/%s", user, res);
		expect_attr(p, "from", from);
	}
	return c;
}

/* ---- helpers ---------------------------------------------------------------- */

#define SM_ERR_NS "urn:ietf:params:xml:ns:xmpp-stanzas"
#define FAILED(cond) "<failed xmlns='" NS_SM "'><" cond " xmlns='" SM_ERR_NS "'/></failed>"

static unsigned count(const char *t, const char *needle)
{
	unsigned n = 0;
	for (const char *p = t; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

/* <enable/>; with resume, the SM-ID into id. */
static void sm_enable(struct cli *c, bool resume, char *id, size_t cap)
{
	cli_send(c, resume ? "<enable xmlns='" NS_SM "' resume='true'/>" : "<enable xmlns='" NS_SM "'/>");
	pump();
	const char *t = cli_take(c);
	const char *e = strstr(t, "<enabled");
	if (!e)
		fail_msg("no <enabled/>: \"%s\"", t);
	expect_attr(e, "xmlns", NS_SM);
	if (resume) {
		assert_true(attr_of(e, "id", id, cap));
		expect_attr(e, "resume", "true");
	} else {
		expect_no_attr(e, "id");
		expect_no_attr(e, "resume");
	}
}

static void chat(struct cli *from, const char *to, const char *body)
{
	char el[512];
	snprintf(el, sizeof(el), "<message to='%s' type='chat'><body>%s</body></message>", to, body);
	cli_send(from, el);
	pump();
}

/* Every stanza handed over as IM_REQ_UNACKED for jid, concatenated. */
static char unacked_buf[1 << 20];
static const char *unacked_for(const char *jid, unsigned *nreq)
{
	size_t n = 0;
	unsigned k = 0;
	unacked_buf[0] = '\0';
	for (unsigned i = 0; i < nreqs; i++) {
		if (reqs[i].type != IM_REQ_UNACKED || strcmp(reqs[i].jid, jid))
			continue;
		k++;
		assert_true(n + reqs[i].len < sizeof(unacked_buf));
		memcpy(unacked_buf + n, reqs[i].stanza, reqs[i].len);
		n += reqs[i].len;
		unacked_buf[n] = '\0';
	}
	if (nreq)
		*nreq = k;
	return unacked_buf;
}

static unsigned reqs_of(uint8_t type, const char *jid)
{
	unsigned k = 0;
	for (unsigned i = 0; i < nreqs; i++)
		if (reqs[i].type == type && !strcmp(reqs[i].jid, jid))
			k++;
	return k;
}

/* The route of alice@localhost/res: its handle (0: none), availability. */
static uint64_t route_of(const char *bare, const char *res, bool *avail)
{
	const struct route_snap *snap = route_lookup(F->srv->routes, bare, strlen(bare));
	const struct route_res *r = snap ? route_find(snap, res, strlen(res)) : NULL;
	uint64_t h = r ? r->handle : 0;
	if (avail)
		*avail = r && r->available;
	route_thread_quiescent();
	return h;
}

static void pump_ms(unsigned ms)
{
	for (unsigned t = 0; t < ms; t += 20) {
		pump();
		sleep_ms(20);
	}
	pump();
}

/* A new stream authenticated as user, not bound, that asks to resume. */
static struct cli *resume_open(unsigned wk, const char *user, const char *pass, const char *id, uint32_t h)
{
	char el[2300];
	struct cli *c = cli_open(wk, L_STARTTLS);
	do_starttls(c);
	do_auth(c, user, pass);
	snprintf(el, sizeof(el), "<resume xmlns='" NS_SM "' previd='%s' h='%u'/>", id, h);
	cli_send(c, el);
	pump();
	return c;
}

/* ---- enabling ------------------------------------------------------------------ */

/* <sm/> is offered after authentication (not before), <enable/> before
 * bind fails with unexpected-request, after bind it gives an SM-ID with
 * 128 random bits and the client's shorter max, a second one fails. */
static void test_enable(void **state)
{
	(void)state;
	struct cli *c = cli_open(0, L_STARTTLS);
	const char *t;
	char id[2048], id2[2048];

	do_starttls(c);
	cli_send(c, HEADER);
	pump();
	t = expect_header(cli_take(c), true);
	HASNT(t, NS_SM);
	send_plain_auth(c, "alice", "secret");
	pump();
	cli_take(c);
	cli_send(c, HEADER);
	pump();
	t = expect_header(cli_take(c), true);
	HAS(t, "<bind xmlns='" NS_BIND "'/>");
	HAS(t, "<sm xmlns='" NS_SM "'/>");

	cli_send(c, "<enable xmlns='" NS_SM "' resume='true'/>");
	pump();
	assert_string_equal(cli_take(c), FAILED("unexpected-request"));
	/* Acks before SM is on are ignored. */
	cli_send(c, "<r xmlns='" NS_SM "'/><a xmlns='" NS_SM "' h='7'/>");
	pump();
	assert_string_equal(cli_take(c), "");
	assert_true(cli_alive(c));
	do_bind(c, "alice", "r1");

	cli_send(c, "<enable xmlns='" NS_SM "' resume='1' max='30'/>");
	pump();
	t = cli_take(c);
	const char *e = strstr(t, "<enabled");
	assert_non_null(e);
	assert_true(attr_of(e, "id", id, sizeof(id)));
	expect_attr(e, "resume", "true");
	expect_attr(e, "max", "30");
	assert_true(strlen(id) > 32);
	for (int i = 0; i < 32; i++)
		assert_non_null(strchr("0123456789abcdef", id[i]));
	assert_int_equal(c->s->sm->resume_ms, 30000);

	cli_send(c, "<enable xmlns='" NS_SM "'/>");
	pump();
	assert_string_equal(cli_take(c), FAILED("unexpected-request"));
	assert_true(cli_alive(c));

	/* Another session of the same resource name gets another ID. */
	struct cli *d = login(1, "alice", "secret", "r2", false);
	sm_enable(d, true, id2, sizeof(id2));
	assert_true(strncmp(id, id2, 32) != 0);

	/* Without resume: no ID. */
	struct cli *b = login(0, "bob", "hunter2", "r1", false);
	sm_enable(b, false, NULL, 0);
	/* An unknown SM element is not a stanza. */
	cli_send(b, "<foo xmlns='" NS_SM "'/>");
	pump();
	expect_stream_error(b, cli_take(b), "unsupported-stanza-type");
}

/* ---- acks ---------------------------------------------------------------------- */

/* h counts what the server handled; every stanza to the client is counted
 * (replies included) and kept until acknowledged; <r/> goes out behind the
 * first unacknowledged stanza and again once answered. */
static void test_acks(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	const char *t;

	cli_take(a);
	sm_enable(a, false, NULL, 0);
	cli_send(a, "<r xmlns='" NS_SM "'/>");
	pump();
	assert_string_equal(cli_take(a), "<a xmlns='" NS_SM "' h='0'/>");

	/* A ping the server answers: handled (h 1), the result is counted
	 * (send count 1) and followed by a request. */
	cli_send(a, "<iq type='get' id='p1' to='" DOMAIN "'><ping xmlns='urn:xmpp:ping'/></iq>"
		    "<r xmlns='" NS_SM "'/>");
	pump();
	t = cli_take(a);
	HAS(t, "id='p1'");
	HAS(t, "<r xmlns='" NS_SM "'/>");
	HAS(t, "<a xmlns='" NS_SM "' h='1'/>");
	assert_int_equal(a->s->sm->h_out, 1);
	assert_non_null(a->s->sm->q);

	/* Three messages while the request is open: one <r/> only. */
	chat(b, "alice@" DOMAIN "/r1", "one");
	chat(b, "alice@" DOMAIN "/r1", "two");
	chat(b, "alice@" DOMAIN "/r1", "three");
	t = cli_take(a);
	assert_int_equal(count(t, "<message"), 3);
	assert_int_equal(count(t, "<r xmlns"), 0);
	assert_int_equal(a->s->sm->h_out, 4);

	/* The answer to the first request covers one; the three behind it
	 * get another request. */
	cli_send(a, "<a xmlns='" NS_SM "' h='1'/>");
	pump();
	assert_string_equal(cli_take(a), "<r xmlns='" NS_SM "'/>");
	cli_send(a, "<a xmlns='" NS_SM "' h='4'/>");
	pump();
	assert_string_equal(cli_take(a), "");
	assert_null(a->s->sm->q);   /* all acknowledged: the queue is gone */
	assert_int_equal(a->s->sm->acked, 4);

	/* The client's own stanzas count: presence (2), a message (3). */
	cli_send(a, "<presence><show>away</show></presence>");
	chat(a, "bob@" DOMAIN "/r1", "hi");
	cli_send(a, "<r xmlns='" NS_SM "'/>");
	pump();
	HAS(cli_take(a), "<a xmlns='" NS_SM "' h='3'/>");
	HAS(cli_take(b), "<body>hi</body>");
	/* An ack that repeats an old h is fine. */
	cli_send(a, "<a xmlns='" NS_SM "' h='4'/>");
	pump();
	assert_true(cli_alive(a));
	/* A malformed h ends the stream. */
	cli_send(a, "<a xmlns='" NS_SM "' h='4294967296'/>");
	pump();
	expect_stream_error(a, cli_take(a), "undefined-condition");
}

/* h wraps from 2^32-1 to 0 on both counters (XEP-0198 section 4). */
static void test_wraparound(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", false);
	struct cli *b = login(1, "bob", "hunter2", "r1", false);
	struct sm *m;

	sm_enable(a, false, NULL, 0);
	m = a->s->sm;
	m->h_in = UINT32_MAX;
	m->h_out = m->acked = m->r_at = UINT32_MAX - 1;
	chat(b, "alice@" DOMAIN "/r1", "w1");
	chat(b, "alice@" DOMAIN "/r1", "w2");
	chat(b, "alice@" DOMAIN "/r1", "w3");
	assert_int_equal(count(cli_take(a), "<message"), 3);
	assert_int_equal(m->h_out, 1);
	cli_send(a, "<a xmlns='" NS_SM "' h='4294967295'/>");   /* covers w1 */
	pump();
	assert_true(cli_alive(a));
	assert_int_equal(m->acked, UINT32_MAX);
	cli_send(a, "<a xmlns='" NS_SM "' h='1'/>");            /* w2, w3 */
	pump();
	assert_true(cli_alive(a));
	assert_null(m->q);
	cli_send(a, "<presence/><r xmlns='" NS_SM "'/>");
	pump();
	HAS(cli_take(a), "<a xmlns='" NS_SM "' h='0'/>");
	/* Past the send count, across the wrap: too high. */
	char el[128], want[160];
	uint32_t sent = m->h_out;
	assert_true(sent < 8);
	snprintf(el, sizeof(el), "<a xmlns='" NS_SM "' h='%u'/>", sent + 1);
	snprintf(want, sizeof(want), "<handled-count-too-high xmlns='" NS_SM "' h='%u' send-count='%u'/>", sent + 1,
		 sent);
	cli_send(a, el);
	pump();
	const char *t = cli_take(a);
	HAS(t, want);
	assert_true(cli_closed(a));
}

/* An ack of more than was sent: undefined-condition with
 * <handled-count-too-high/>, and what was not acknowledged is handed
 * over (IM_REQ_UNACKED). */
static void test_ack_too_high(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", false);
	struct cli *b = login(1, "bob", "hunter2", "r1", false);

	sm_enable(a, true, (char[2048]){ 0 }, 2048);
	chat(b, "alice@" DOMAIN "/r1", "only");
	cli_take(a);
	cli_send(a, "<a xmlns='" NS_SM "' h='3'/>");
	pump();
	const char *t = cli_take(a);
	HAS(t, "<stream:error><undefined-condition xmlns='" NS_SERR "'/>"
	       "<handled-count-too-high xmlns='" NS_SM "' h='3' send-count='1'/>");
	assert_true(strstr(t, "</stream:error></stream:stream>") != NULL);
	assert_true(cli_closed(a));
	pump();
	HAS(unacked_for("alice@" DOMAIN "/r1", NULL), "<body>only</body>");
}

/* ---- the queue bound ---------------------------------------------------------------- */

static struct tweak small_queue = { .sm_max_unacked = 16 };

/* A client that never acknowledges is cut off with policy-violation once
 * more than sm_max_unacked stanzas wait, and none of them is lost: each
 * is handed over, or (after the cut) goes the way of a message to an
 * unavailable resource (to the control plane). */
static void test_queue_bound(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(1, "bob", "hunter2", "r1", false);
	char body[32];

	sm_enable(a, true, (char[2048]){ 0 }, 2048);
	for (int i = 0; i < 24; i++) {
		snprintf(body, sizeof(body), "q%02d", i);
		chat(b, "alice@" DOMAIN "/r1", body);
	}
	assert_true(pump_until_closed(a, 2000));
	const char *t = cli_take(a);
	expect_stream_error(a, t, "policy-violation");
	pump();
	const char *u = unacked_for("alice@" DOMAIN "/r1", NULL);
	if (count(u, "<message") < 17)
		fail_msg("%u stanzas handed over: \"%s\"", count(u, "<message"), u);
	for (int i = 0; i < 24; i++) {
		char want[48];
		snprintf(want, sizeof(want), "<body>q%02d</body>", i);
		bool found = strstr(u, want) != NULL;
		for (unsigned k = 0; !found && k < nreqs; k++)
			found = reqs[k].type == IM_REQ_STANZA && strstr(reqs[k].stanza, want);
		if (!found)
			fail_msg("message %s lost", want);
	}
}

/* ---- detach and resume ----------------------------------------------------------------- */

/* The connection drops without </stream:stream>: the session stays bound
 * and available (no unavailable presence), queues what arrives, and a new
 * stream of the same user on the same worker resumes it: <resumed/> with
 * the server's h, the stanzas the client had not received (after its h)
 * again, and the session goes on under its full JID. */
static void test_resume_same_worker(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(0, "bob", "hunter2", "r1", true);
	char id[2048];
	bool avail;

	cli_take(a);
	sm_enable(a, true, id, sizeof(id));
	cli_send(a, "<presence><status>here</status></presence>");   /* h_in 1 */
	pump();
	cli_take(a);   /* its echo: stanza 1 */
	chat(b, "alice@" DOMAIN "/r1", "m1");   /* 2, received */
	HAS(cli_take(a), "<body>m1</body>");
	uint64_t h_old = route_of("alice@" DOMAIN, "r1", NULL);

	c2s_eof(a->s);
	pump();
	assert_true(cli_closed(a));
	assert_int_equal(route_of("alice@" DOMAIN, "r1", &avail), h_old);
	assert_true(avail);
	cli_take(b);
	chat(b, "alice@" DOMAIN "/r1", "m2");   /* 3, queued */
	chat(b, "alice@" DOMAIN, "m3");         /* 4, to the bare JID: still available */
	HASNT(cli_take(b), "unavailable");
	assert_int_equal(reqs_of(IM_REQ_SESSION_END, "alice@" DOMAIN "/r1"), 0);

	struct cli *a2 = resume_open(0, "alice", "secret", id, 2);
	const char *t = cli_take(a2);
	char want[2200];
	snprintf(want, sizeof(want), "<resumed xmlns='" NS_SM "' h='1' previd='%s'/>", id);
	if (strncmp(t, want, strlen(want)))
		fail_msg("expected %s first, got \"%s\"", want, t);
	HASNT(t, "<body>m1</body>");
	assert_true(strstr(t, "<body>m2</body>") < strstr(t, "<body>m3</body>"));
	HAS(t, "<r xmlns='" NS_SM "'/>");
	assert_int_equal(route_of("alice@" DOMAIN, "r1", &avail), session_handle(a2->s));
	assert_true(avail);
	assert_int_equal(a2->s->sm->h_out, 4);

	/* It goes on: acks, new stanzas, its own JID. */
	cli_send(a2, "<a xmlns='" NS_SM "' h='4'/>");
	chat(b, "alice@" DOMAIN "/r1", "m4");
	HAS(cli_take(a2), "<body>m4</body>");
	chat(a2, "bob@" DOMAIN "/r1", "back");
	t = cli_take(b);
	HAS(t, "from='alice@" DOMAIN "/r1'");
	HAS(t, "<body>back</body>");
	cli_send(a2, "<r xmlns='" NS_SM "'/>");
	pump();
	HAS(cli_take(a2), "<a xmlns='" NS_SM "' h='2'/>");
	/* No unacknowledged stanza was handed over, no session ended. */
	unsigned k;
	unacked_for("alice@" DOMAIN "/r1", &k);
	assert_int_equal(k, 0);
	pump_ms(100);   /* the old slot's timers */
	/* The old slot went without a word: the session did not end. */
	assert_int_equal(reqs_of(IM_REQ_SESSION_END, "alice@" DOMAIN "/r1"), 0);
	cli_send(a2, "</stream:stream>");
	pump();
	assert_true(cli_closed(a2));
	assert_int_equal(reqs_of(IM_REQ_SESSION_END, "alice@" DOMAIN "/r1"), 1);
}

/* The same across workers: the request and the state travel through the
 * rings, and a stanza that was in flight to the old handle when the state
 * left is forwarded to the new session, after the resent ones. */
static void test_resume_other_worker(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	char id[2048], el[2200];

	sm_enable(a, true, id, sizeof(id));
	chat(b, "alice@" DOMAIN "/r1", "m1");
	cli_take(a);
	c2s_eof(a->s);
	pump();
	chat(b, "alice@" DOMAIN "/r1", "m2");

	struct cli *a2 = cli_open(1, L_STARTTLS);
	do_starttls(a2);
	do_auth(a2, "alice", "secret");
	snprintf(el, sizeof(el), "<resume xmlns='" NS_SM "' previd='%s' h='0'/>", id);
	cli_send(a2, el);
	/* The request is in the ring to worker 0; a message to the old
	 * handle follows it there. */
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat'><body>m3</body></message>");
	router_worker_step(&F->srv->workers[1]);
	router_worker_step(&F->srv->workers[0]);   /* exports, then forwards m3 */
	pump();
	const char *t = cli_take(a2);
	HAS(t, "<resumed xmlns='" NS_SM "' h='0'");
	const char *p1 = strstr(t, "<body>m1</body>"), *p2 = strstr(t, "<body>m2</body>"),
		   *p3 = strstr(t, "<body>m3</body>");
	if (!p1 || !p2 || !p3 || !(p1 < p2 && p2 < p3))
		fail_msg("expected m1, m2, m3 in order: \"%s\"", t);
	assert_int_equal(handle_worker(route_of("alice@" DOMAIN, "r1", NULL)), 1);
	assert_int_equal(a2->s->sm->h_out, 3);
	chat(b, "alice@" DOMAIN "/r1", "m4");
	HAS(cli_take(a2), "<body>m4</body>");

	/* And back to worker 0, with the same SM-ID: resumption of a
	 * resumed session. */
	c2s_eof(a2->s);
	pump();
	struct cli *a3 = resume_open(0, "alice", "secret", id, 4);
	t = cli_take(a3);
	HAS(t, "<resumed xmlns='" NS_SM "' h='0'");
	HASNT(t, "<body>");
	assert_int_equal(handle_worker(route_of("alice@" DOMAIN, "r1", NULL)), 0);
	chat(b, "alice@" DOMAIN "/r1", "m5");
	HAS(cli_take(a3), "<body>m5</body>");
	unsigned k;
	unacked_for("alice@" DOMAIN "/r1", &k);
	assert_int_equal(k, 0);
}

/* The old stream still open (the client lost it, the server did not):
 * it gets <conflict/> and the new one takes the session. */
static void test_resume_live_old(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	char id[2048];

	sm_enable(a, true, id, sizeof(id));
	struct cli *a2 = resume_open(1, "alice", "secret", id, 0);
	HAS(cli_take(a2), "<resumed xmlns='" NS_SM "' h='0'");
	expect_stream_error(a, cli_take(a), "conflict");
	assert_int_equal(route_of("alice@" DOMAIN, "r1", NULL), session_handle(a2->s));
	unsigned k;
	unacked_for("alice@" DOMAIN "/r1", &k);
	assert_int_equal(k, 0);
}

/* Another user's SM-ID, an unknown one, a malformed request: <failed/>,
 * and the stream may bind normally; the detached session is untouched and
 * its owner can still resume it. */
static void test_resume_refused(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	char id[2048], el[2300];

	sm_enable(a, true, id, sizeof(id));
	c2s_eof(a->s);
	pump();

	for (unsigned wk = 0; wk < NWORKERS; wk++) {
		struct cli *b = resume_open(wk, "bob", "hunter2", id, 0);
		assert_string_equal(cli_take(b), FAILED("item-not-found"));
		do_bind(b, "bob", wk ? "x1" : "x0");
	}
	/* The right resource and user, a wrong token, on the other worker
	 * (the check is made where the session lives). */
	char forged[2048];
	snprintf(forged, sizeof(forged), "%s", id);
	forged[0] = forged[0] == '0' ? '1' : '0';
	struct cli *c = resume_open(1, "alice", "secret", forged, 0);
	assert_string_equal(cli_take(c), FAILED("item-not-found"));
	c = resume_open(0, "alice", "secret", "00112233", 0);
	assert_string_equal(cli_take(c), FAILED("item-not-found"));
	c = cli_open(0, L_STARTTLS);
	do_starttls(c);
	do_auth(c, "alice", "secret");
	snprintf(el, sizeof(el), "<resume xmlns='" NS_SM "' previd='%s'/>", id);
	cli_send(c, el);
	pump();
	assert_string_equal(cli_take(c), FAILED("bad-request"));
	do_bind(c, "alice", "other");
	/* Bound: <resume/> is out of order. */
	snprintf(el, sizeof(el), "<resume xmlns='" NS_SM "' previd='%s' h='0'/>", id);
	cli_send(c, el);
	pump();
	assert_string_equal(cli_take(c), FAILED("unexpected-request"));

	struct cli *a2 = resume_open(1, "alice", "secret", id, 0);
	HAS(cli_take(a2), "<resumed xmlns='" NS_SM "'");
}

/* ---- endings ----------------------------------------------------------------------------- */

static struct tweak short_resume = { .sm_resume_ms = 300 };

/* Not resumed in time: the session ends like any other (unavailable
 * presence, session end), and every stanza the client had not
 * acknowledged, received or not, is handed over first. */
static void test_expiry_hands_over(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	char id[2048];

	cli_take(b);
	sm_enable(a, true, id, sizeof(id));
	chat(b, "alice@" DOMAIN "/r1", "seen");
	cli_take(a);
	c2s_eof(a->s);
	pump();
	chat(b, "alice@" DOMAIN "/r1", "unseen");
	cli_send(b, "<iq type='get' id='v1' to='alice@" DOMAIN "/r1'><query xmlns='jabber:iq:version'/></iq>");
	pump();
	HASNT(cli_take(b), "unavailable");
	unsigned k;
	unacked_for("alice@" DOMAIN "/r1", &k);
	assert_int_equal(k, 0);

	pump_ms(700);
	const char *u = unacked_for("alice@" DOMAIN "/r1", &k);
	assert_true(k >= 1);
	HAS(u, "<body>seen</body>");
	HAS(u, "<body>unseen</body>");
	HAS(u, "id='v1'");
	assert_true(strstr(u, "seen") < strstr(u, "unseen"));
	assert_int_equal(route_of("alice@" DOMAIN, "r1", NULL), 0);
	assert_int_equal(reqs_of(IM_REQ_SESSION_END, "alice@" DOMAIN "/r1"), 1);
	/* Handed over before the session ended. */
	for (unsigned i = 0; i < nreqs; i++) {
		if (reqs[i].type == IM_REQ_SESSION_END && !strcmp(reqs[i].jid, "alice@" DOMAIN "/r1"))
			break;
		if (reqs[i].type == IM_REQ_UNACKED)
			goto ordered;
	}
	fail_msg("IM_REQ_UNACKED after IM_REQ_SESSION_END");
ordered:;
	/* Too late to resume. */
	struct cli *a2 = resume_open(0, "alice", "secret", id, 0);
	assert_string_equal(cli_take(a2), FAILED("item-not-found"));
}

/* A clean close with stanzas unacknowledged hands them over; without
 * resume a dropped connection ends the session at once, the same way; a
 * session with everything acknowledged hands over nothing. */
static void test_close_hands_over(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", false);
	struct cli *b = login(1, "bob", "hunter2", "r1", false);
	struct cli *c = login(0, "alice", "secret", "r2", false);
	struct cli *d = login(1, "alice", "secret", "r3", false);
	unsigned k;

	sm_enable(a, true, (char[2048]){ 0 }, 2048);
	sm_enable(c, false, NULL, 0);
	sm_enable(d, false, NULL, 0);
	chat(b, "alice@" DOMAIN "/r1", "c1");
	chat(b, "alice@" DOMAIN "/r2", "c2");
	chat(b, "alice@" DOMAIN "/r3", "c3");
	cli_take(a);
	cli_take(c);
	cli_take(d);
	cli_send(d, "<a xmlns='" NS_SM "' h='1'/>");
	pump();

	cli_send(a, "</stream:stream>");
	pump();
	assert_true(cli_closed(a));
	HAS(unacked_for("alice@" DOMAIN "/r1", NULL), "<body>c1</body>");

	c2s_eof(c->s);   /* no resume: over now */
	pump();
	HAS(unacked_for("alice@" DOMAIN "/r2", NULL), "<body>c2</body>");

	cli_send(d, "</stream:stream>");
	pump();
	unacked_for("alice@" DOMAIN "/r3", &k);
	assert_int_equal(k, 0);
}

/* A detached session whose resource another stream binds (conflict) ends
 * and hands over its stanzas; so does one the server shuts down with. */
static void test_detached_kicked(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", false);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	char id[2048];

	sm_enable(a, true, id, sizeof(id));
	c2s_eof(a->s);
	pump();
	chat(b, "alice@" DOMAIN "/r1", "k1");
	struct cli *a2 = login(1, "alice", "secret", "r1", false);
	pump();
	HAS(unacked_for("alice@" DOMAIN "/r1", NULL), "<body>k1</body>");
	assert_int_equal(route_of("alice@" DOMAIN, "r1", NULL), session_handle(a2->s));
	struct cli *a3 = resume_open(0, "alice", "secret", id, 0);
	assert_string_equal(cli_take(a3), FAILED("item-not-found"));
}

/* The resuming stream goes away while the state is on its way to it: a
 * new session without a connection on that worker takes the state, the
 * route follows, and the client can resume that one. */
static void test_resume_orphaned(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(0, "bob", "hunter2", "r1", false);
	char id[2048], el[2200];

	sm_enable(a, true, id, sizeof(id));
	chat(b, "alice@" DOMAIN "/r1", "o1");
	cli_take(a);
	c2s_eof(a->s);
	pump();
	uint64_t old = route_of("alice@" DOMAIN, "r1", NULL);

	struct cli *a2 = cli_open(1, L_STARTTLS);
	do_starttls(a2);
	do_auth(a2, "alice", "secret");
	snprintf(el, sizeof(el), "<resume xmlns='" NS_SM "' previd='%s' h='0'/>", id);
	cli_send(a2, el);
	router_worker_step(&F->srv->workers[1]);   /* the request is out */
	c2s_eof(a2->s);                             /* and the stream gone */
	pump();
	bool avail;
	uint64_t now = route_of("alice@" DOMAIN, "r1", &avail);
	assert_true(now != 0 && now != old);
	assert_int_equal(handle_worker(now), 1);
	assert_true(avail);
	chat(b, "alice@" DOMAIN "/r1", "o2");
	unsigned k;
	unacked_for("alice@" DOMAIN "/r1", &k);
	assert_int_equal(k, 0);

	struct cli *a3 = resume_open(0, "alice", "secret", id, 0);
	const char *t = cli_take(a3);
	HAS(t, "<resumed xmlns='" NS_SM "'");
	const char *p1 = strstr(t, "<body>o1</body>"), *p2 = strstr(t, "<body>o2</body>");
	if (!p1 || !p2 || p1 > p2)
		fail_msg("expected o1 then o2: \"%s\"", t);
	assert_int_equal(route_of("alice@" DOMAIN, "r1", NULL), session_handle(a3->s));
}

static struct tweak small_output = { .max_output = 64u * 1024u };

/* A client that stops reading: its unacknowledged bytes reach max_output
 * and it is cut off with policy-violation (from its timer), and every
 * stanza it was given, written or not, is handed over; later ones go the
 * way of messages to an unavailable resource. */
static void test_not_reading_cut(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(0, "bob", "hunter2", "r1", false);
	static char body[8 * 1024 + 256];

	sm_enable(a, true, (char[2048]){ 0 }, 2048);
	caps[a->id].block = true;
	int n = snprintf(body, sizeof(body), "<message to='alice@" DOMAIN "/r1' type='chat'><body>");
	memset(body + n, 'x', 8 * 1024);
	int sent = 0;
	for (; sent < 40 && route_of("alice@" DOMAIN, "r1", NULL); sent++) {
		snprintf(body + n + 8 * 1024, sizeof(body) - (size_t)n - 8 * 1024, "%02d</body></message>", sent);
		cli_send(b, body);
		pump_ms(20);
	}
	assert_true(sent < 40);
	assert_true(sent > 7);   /* max_output of queue first: 64 KiB of 8 KiB messages */
	/* It reads again (the WRITABLE the fake backend never reports): it
	 * gets what was queued and the stream error last. */
	caps[a->id].block = false;
	assert_true(cli_alive(a));
	a->s->flags &= (uint16_t)~SF_WAIT_WRITE;
	session_flush(a->s);
	assert_true(pump_until_closed(a, 4000));
	const char *t = cli_take(a);
	expect_stream_error(a, t, "policy-violation");
	assert_int_equal(count(t, "<message"), (unsigned)sent);
	const char *u = unacked_for("alice@" DOMAIN "/r1", NULL);
	for (int i = 0; i < sent; i++) {
		char want[32];
		snprintf(want, sizeof(want), "%02d</body>", i);
		bool found = strstr(u, want) != NULL;
		for (unsigned k = 0; !found && k < nreqs; k++)
			found = reqs[k].type == IM_REQ_STANZA && strstr(reqs[k].stanza, want);
		if (!found)
			fail_msg("message %d lost", i);
	}
}

/* A resumption resends the whole queue at once even when it is close to
 * max_output: the queue does not count against the output limit. */
static void test_resume_large_queue(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(0, "bob", "hunter2", "r1", false);
	static char body[8 * 1024 + 256];
	char id[2048];

	sm_enable(a, true, id, sizeof(id));
	caps[a->id].block = true;
	int n = snprintf(body, sizeof(body), "<message to='alice@" DOMAIN "/r1' type='chat'><body>");
	memset(body + n, 'x', 8 * 1024);
	for (int i = 0; i < 7; i++) {
		snprintf(body + n + 8 * 1024, sizeof(body) - (size_t)n - 8 * 1024, "%02d</body></message>", i);
		cli_send(b, body);
		pump();
	}
	assert_true(cli_alive(a));
	c2s_eof(a->s);
	pump();
	struct cli *a2 = resume_open(1, "alice", "secret", id, 0);
	const char *t = cli_take(a2);
	HAS(t, "<resumed xmlns='" NS_SM "'");
	assert_int_equal(count(t, "<message"), 7);
	assert_true(cli_alive(a2));
}

/* ---- handled means committed (XEP-0198 section 4) ------------------------------- */

/* The workers and the clients, without the control thread. */
static void step_workers(void)
{
	for (int r = 0; r < 3; r++) {
		for (unsigned i = 0; i < NWORKERS; i++)
			router_worker_step(&F->srv->workers[i]);
		for (unsigned i = 0; i < F->nclients; i++) {
			cli_alive(F->clients[i]);
			cli_pull(F->clients[i]);
		}
	}
}

/* The request of type for jid, the last one. */
static const struct req *last_req(uint8_t type, const char *jid)
{
	for (unsigned i = nreqs; i-- > 0;)
		if (reqs[i].type == type && !strcmp(reqs[i].jid, jid))
			return &reqs[i];
	return NULL;
}

/* A message for a user without a session goes to the control thread
 * (offline storage): it counts as handled only once the control thread
 * served it, so an <r/> behind it waits for that; a stanza the worker
 * answers itself behind it does not pass it; with nothing waiting <r/> is
 * answered at once. The requests carry IM_SF_SM once SM is on. */
static void test_ack_after_commit(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	const struct req *q = last_req(IM_REQ_INITIAL_PRESENCE, "alice@" DOMAIN "/r1");

	assert_non_null(q);
	assert_int_equal(q->flags & IM_SF_SM, 0);
	cli_take(a);
	sm_enable(a, false, NULL, 0);
	cli_send(a, "<message to='bob@" DOMAIN "' type='chat'><body>kept</body></message><r xmlns='" NS_SM "'/>");
	step_workers();
	HASNT(cli_take(a), "<a ");
	assert_int_equal(a->s->sm->h_in, 1);
	cli_send(a, "<iq type='get' id='p1' to='" DOMAIN "'><ping xmlns='urn:xmpp:ping'/></iq><r xmlns='" NS_SM "'/>");
	step_workers();
	const char *t = cli_take(a);
	HAS(t, "id='p1'");
	HASNT(t, "<a ");
	assert_int_equal(server_ctl_process(F->srv), 1);
	q = last_req(IM_REQ_STANZA, "alice@" DOMAIN "/r1");
	assert_non_null(q);
	HAS(q->stanza, "<body>kept</body>");
	assert_int_equal(q->flags & IM_SF_SM, IM_SF_SM);
	step_workers();
	t = cli_take(a);
	assert_int_equal(count(t, "<a "), 1);
	HAS(t, "<a xmlns='" NS_SM "' h='2'/>");
	cli_send(a, "<r xmlns='" NS_SM "'/>");
	step_workers();
	assert_string_equal(cli_take(a), "<a xmlns='" NS_SM "' h='2'/>");
	assert_int_equal(a->s->sm->w_head, a->s->sm->w_len);
}

/* The connection drops while a stanza is with the control thread; the
 * resumption (through the rings, from the other worker) answers
 * <resumed/> only once it is committed, with the h that covers it, and the
 * input behind <resume/> waits until then. The control plane is told the
 * session moved, with the old handle (IM_REQ_SESSION_MOVED). */
static void test_resume_after_commit(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	char id[2048], el[2300];

	sm_enable(a, true, id, sizeof(id));
	struct cli *a2 = cli_open(1, L_STARTTLS);
	do_starttls(a2);
	do_auth(a2, "alice", "secret");
	uint64_t h_old = route_of("alice@" DOMAIN, "r1", NULL);
	reqs_clear();

	cli_send(a, "<message to='bob@" DOMAIN "' type='chat'><body>kept</body></message>");
	step_workers();
	c2s_eof(a->s);
	step_workers();
	snprintf(el, sizeof(el), "<resume xmlns='" NS_SM "' previd='%s' h='0'/><r xmlns='" NS_SM "'/>", id);
	cli_send(a2, el);
	step_workers();
	assert_string_equal(cli_take(a2), "");
	assert_int_equal(route_of("alice@" DOMAIN, "r1", NULL), session_handle(a2->s));

	pump();
	const char *t = cli_take(a2);
	char want[2300];
	snprintf(want, sizeof(want), "<resumed xmlns='" NS_SM "' h='1' previd='%s'/>", id);
	if (strncmp(t, want, strlen(want)))
		fail_msg("expected %s first, got \"%s\"", want, t);
	HAS(t, "<a xmlns='" NS_SM "' h='1'/>");
	const struct req *q = last_req(IM_REQ_SESSION_MOVED, "alice@" DOMAIN "/r1");
	assert_non_null(q);
	assert_int_equal(q->handle, session_handle(a2->s));
	assert_int_equal(q->len, sizeof(uint64_t));
	uint64_t old;
	memcpy(&old, q->stanza, sizeof(old));
	assert_int_equal(old, h_old);
	assert_int_equal(q->flags & IM_SF_SM, IM_SF_SM);

	/* It goes on: a stanza now is counted from there. */
	cli_send(a2, "<presence/><r xmlns='" NS_SM "'/>");
	pump();
	HAS(cli_take(a2), "<a xmlns='" NS_SM "' h='2'/>");
}

/* The idle ping goes unanswered: a resumable session is detached (it may
 * be resumed, nothing ends), a session without resumption ends with
 * <connection-timeout/>. */
static void test_ping_timeout_detaches(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	char id[2048];

	sm_enable(a, true, id, sizeof(id));
	uint64_t h = route_of("alice@" DOMAIN, "r1", NULL);
	cli_take(a);
	cli_take(b);
	assert_true(pump_until_closed(a, 3000));
	const char *t = cli_take(a);
	HAS(t, "urn:xmpp:ping");
	HASNT(t, "connection-timeout");
	bool avail;
	assert_int_equal(route_of("alice@" DOMAIN, "r1", &avail), h);
	assert_true(avail);
	struct session *s = worker_session(&F->srv->workers[0], h);
	assert_non_null(s);
	assert_non_null(s->sm);
	assert_int_equal(s->sm->state, SM_DETACHED);
	assert_int_equal(reqs_of(IM_REQ_SESSION_END, "alice@" DOMAIN "/r1"), 0);

	assert_true(pump_until_closed(b, 3000));
	expect_stream_error(b, cli_take(b), "connection-timeout");

	struct cli *a2 = resume_open(1, "alice", "secret", id, 0);
	HAS(cli_take(a2), "<resumed xmlns='" NS_SM "'");
}

static struct tweak short_ping = { .ping_ms = 200 };

/* Group commit (router/hooks.h im.flush): the completions of a burst go
 * out only after the hook's flush returned, so no <a/> can cover a
 * message whose batch is not committed. The flush below runs the workers
 * itself and looks: nothing acknowledges the message yet. */
static unsigned flushes;
static bool acked_before_flush_returned;
static struct cli *flush_watch;

static void test_flush(void *arg, const struct im_out *out)
{
	(void)arg;
	(void)out;
	flushes++;
	if (!flush_watch)
		return;
	step_workers();
	if (strstr(flush_watch->text + flush_watch->mark, "<a "))
		acked_before_flush_returned = true;
}

static void test_ack_after_flush(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);

	cli_take(a);
	sm_enable(a, false, NULL, 0);
	flushes = 0;
	acked_before_flush_returned = false;
	F->hooks.im.flush = test_flush;
	flush_watch = a;
	cli_send(a, "<message to='bob@" DOMAIN "' type='chat'><body>1</body></message>"
		    "<message to='bob@" DOMAIN "' type='chat'><body>2</body></message><r xmlns='" NS_SM "'/>");
	step_workers();
	HASNT(cli_take(a), "<a ");
	assert_int_equal(server_ctl_process(F->srv), 2);
	assert_int_equal(flushes, 1);
	assert_false(acked_before_flush_returned);
	step_workers();
	assert_string_equal(cli_take(a), "<a xmlns='" NS_SM "' h='2'/>");
	flush_watch = NULL;
	F->hooks.im.flush = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_enable, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_acks, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_wraparound, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_ack_too_high, fx_setup, fx_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_queue_bound, fx_setup, fx_teardown, &small_queue),
		cmocka_unit_test_setup_teardown(test_resume_same_worker, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_resume_other_worker, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_resume_live_old, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_resume_refused, fx_setup, fx_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_expiry_hands_over, fx_setup, fx_teardown,
							 &short_resume),
		cmocka_unit_test_setup_teardown(test_close_hands_over, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_detached_kicked, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_resume_orphaned, fx_setup, fx_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_not_reading_cut, fx_setup, fx_teardown, &small_output),
		cmocka_unit_test_prestate_setup_teardown(test_resume_large_queue, fx_setup, fx_teardown,
							 &small_output),
		cmocka_unit_test_setup_teardown(test_ack_after_commit, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_resume_after_commit, fx_setup, fx_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_ping_timeout_detaches, fx_setup, fx_teardown,
							 &short_ping),
		cmocka_unit_test_setup_teardown(test_ack_after_flush, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
