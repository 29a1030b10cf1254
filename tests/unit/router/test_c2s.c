/* The client stream state machine (router/c2s.c, router/deliver.c,
 * router/worker.c) driven with bytes and no sockets.
 *
 * The test thread is every worker and the control thread at once: the
 * server is built with server_new but never started; each worker's event
 * loop is replaced by a fake backend whose sendv appends to a capture
 * buffer per connection id. Sessions are opened with router_session_open,
 * fed with router_session_bytes, and the workers are stepped with
 * router_worker_step (rings, timers, flush, free); authentication requests
 * are served with server_ctl_process. Authentication is the real one
 * (control/auth.c over an LMDB store in a mkdtemp directory), TLS is the
 * real one (a self-signed certificate, an in-memory tls_conn_client on the
 * test side). Every assertion is on the bytes the server wrote.
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
};

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
	strcpy(F->root, "/tmp/stanzad-c2s-XXXXXX");
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
	if (tw) {
		if (tw->max_stanza)
			c->xml.max_stanza = tw->max_stanza;
		if (tw->max_output)
			c->max_output = tw->max_output;
		if (tw->header_timeout_ms)
			c->header_timeout_ms = tw->header_timeout_ms;
		if (tw->max_auth_failures)
			c->max_auth_failures = tw->max_auth_failures;
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
	/* Close what is still open, as a worker does when it stops. */
	for (unsigned i = 0; i < NWORKERS; i++) {
		struct worker *w = &srv->workers[i];
		for (uint32_t j = 0; j < w->nslots; j++)
			if (w->slots[j] && !session_dead(w->slots[j]))
				session_close(w->slots[j], NULL);
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

static bool pump_until_text(struct cli *c, const char *needle, unsigned max_ms)
{
	for (unsigned t = 0;; t += 20) {
		pump();
		if (c->text && strstr(c->text + c->mark, needle))
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

/* ---- 1. the plaintext listener -------------------------------------------- */

static void test_plaintext_features(void **state)
{
	(void)state;
	struct cli *c = cli_open(0, L_STARTTLS);
	const char *t;

	cli_send(c, HEADER);
	pump();
	t = cli_take(c);
	assert_true(!strncmp(t, "<?xml version='1.0'?>", 21));
	t = expect_header(t, true);
	/* Nothing but the features follows, and they offer only STARTTLS. */
	assert_string_equal(t, "<stream:features><starttls xmlns='" NS_TLS "'><required/></starttls></stream:features>");
	HASNT(c->text, "mechanism");
	assert_true(cli_alive(c));

	/* <auth/> before TLS: a SASL failure, the stream stays open. */
	send_plain_auth(c, "alice", "secret");
	pump();
	assert_string_equal(cli_take(c), "<failure xmlns='" NS_SASL "'><encryption-required/></failure>");
	assert_true(cli_alive(c));
	assert_false(cli_closed(c));

	/* Any stanza before TLS: not-authorized, closed. */
	cli_send(c, "<message to='bob@" DOMAIN "'><body>hi</body></message>");
	pump();
	t = cli_take(c);
	assert_string_equal(t, "<stream:error><not-authorized xmlns='" NS_SERR "'/></stream:error></stream:stream>");
	assert_true(cli_closed(c));
	assert_false(cli_alive(c));
}

/* The same exchange one byte at a time: framing resumes at any byte. */
static void test_plaintext_bytewise(void **state)
{
	(void)state;
	struct cli *c = cli_open(1, L_STARTTLS);
	const char *in = HEADER "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>";
	const char *t;

	for (size_t i = 0; in[i]; i++) {
		raw_send(c, in + i, 1);
		if (i % 7 == 0)
			pump();
	}
	pump();
	t = expect_header(cli_take(c), true);
	assert_string_equal(t, "<stream:features><starttls xmlns='" NS_TLS "'><required/></starttls></stream:features>"
			       "<failure xmlns='" NS_SASL "'><encryption-required/></failure>");
	assert_true(cli_alive(c));
}

/* ---- 2. stream header errors ---------------------------------------------- */

static void header_error(const char *header, const char *cond, bool with_from)
{
	struct cli *c = cli_open(0, L_STARTTLS);
	const char *t;

	cli_send(c, header);
	pump();
	t = cli_take(c);
	const char *rest = expect_header(t, with_from);
	char want[256];
	snprintf(want, sizeof(want), "<stream:error><%s xmlns='" NS_SERR "'/></stream:error></stream:stream>", cond);
	if (strcmp(rest, want))
		fail_msg("header %s: expected our header then %s, got \"%s\"", header, want, t);
	expect_stream_error(c, t, cond);
	assert_false(cli_alive(c));
}

static void test_header_errors(void **state)
{
	(void)state;
	header_error("<?xml version='1.0'?><stream:stream xmlns='jabber:server' xmlns:stream='" NS_STREAMS
		     "' to='" DOMAIN "' version='1.0'>",
		     "invalid-namespace", true);
	header_error("<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS
		     "' to='unknown.example' version='1.0'>",
		     "host-unknown", false);
	header_error("<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' to='" DOMAIN "'>",
		     "unsupported-version", true);
	header_error("<stream:stream xmlns='jabber:client' xmlns:stream='http://example.com/not-streams' to='" DOMAIN
		     "' version='1.0'>",
		     "invalid-namespace", true);
}

/* A higher minor or major version is answered with ours (1.0). */
static void test_header_versions(void **state)
{
	(void)state;
	struct cli *c = cli_open(0, L_STARTTLS);

	cli_send(c, "<stream:stream xmlns='jabber:client' xmlns:stream='" NS_STREAMS "' to='" DOMAIN
		    "' version='1.5' xml:lang='de'>");
	pump();
	const char *t = cli_take(c);
	expect_header(t, true);
	expect_attr(strstr(t, "<stream:stream"), "xml:lang", "de");
	HAS(t, "<starttls");
	assert_true(cli_alive(c));
}

/* ---- 3. XML errors --------------------------------------------------------- */

static void xml_error(const char *before_header, const char *after_header, const char *cond)
{
	struct cli *c = cli_open(0, L_STARTTLS);
	char in[8192];
	const char *t;

	snprintf(in, sizeof(in), "%s%s%s", before_header, before_header[0] ? "" : HEADER, after_header);
	cli_send(c, in);
	pump();
	t = cli_take(c);
	expect_header(t, true);
	expect_stream_error(c, t, cond);
	assert_false(cli_alive(c));
}

static void test_xml_errors(void **state)
{
	(void)state;
	xml_error("", "<!-- a comment -->", "restricted-xml");
	xml_error("", "<message to='x@" DOMAIN "'><!-- inside --><body>x</body></message>", "restricted-xml");
	xml_error("", "<?foo bar?>", "restricted-xml");
	xml_error("<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY x 'y'>]>" HEADER, "", "restricted-xml");
	/* Tag names are matched when the framer has found the stanza's end
	 * (parser/xml.h: depth only while framing). */
	xml_error("", "<message><body>x</message></body>", "not-well-formed");
	xml_error("", "<message><body>x</body></iq>", "not-well-formed");
	xml_error("", "<message to='a@b' to='c@d'/>", "not-well-formed");
	xml_error("", "<message><body>&foo;</body></message>", "restricted-xml");
	xml_error("", "<foo:bar/>", "bad-namespace-prefix");
	xml_error("", "text at stream level", "bad-format");
	xml_error("", "<message><x:body>hi</x:body></message>", "bad-namespace-prefix");
}

static struct tweak small_stanza = { .max_stanza = 4096 };

static void test_xml_stanza_too_large(void **state)
{
	(void)state;
	char big[8192];
	int n = snprintf(big, sizeof(big), "<message to='bob@" DOMAIN "'><body>");
	memset(big + n, 'a', 5000);
	strcpy(big + n + 5000, "</body></message>");
	xml_error("", big, "policy-violation");

	/* Also when the stanza arrives in pieces and never ends. */
	struct cli *c = cli_open(1, L_STARTTLS);
	cli_send(c, HEADER);
	cli_send(c, "<message><body>");
	pump();
	assert_true(cli_alive(c));
	memset(big, 'b', 1024);
	for (int i = 0; i < 8 && cli_alive(c); i++) {
		raw_send(c, big, 1024);
		pump();
	}
	const char *t = cli_take(c);
	expect_stream_error(c, t, "policy-violation");
}

/* ---- 4. a full login over STARTTLS ----------------------------------------- */

static void test_login_starttls(void **state)
{
	(void)state;
	struct cli *c = cli_open(0, L_STARTTLS);
	const char *t;

	do_starttls(c);

	/* The restarted stream over TLS: mechanisms, PLAIN among them. */
	cli_send(c, HEADER);
	pump();
	t = expect_header(cli_take(c), true);
	HAS(t, "<stream:features><mechanisms xmlns='" NS_SASL "'>");
	HAS(t, "<mechanism>SCRAM-SHA-256</mechanism>");
	HAS(t, "<mechanism>SCRAM-SHA-256-PLUS</mechanism>");
	HAS(t, "<mechanism>PLAIN</mechanism>");
	HASNT(t, "starttls");
	HASNT(t, "<bind");

	/* PLAIN: the password check runs on the control thread. */
	cli_send(c, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>");
	for (unsigned i = 0; i < NWORKERS; i++)
		router_worker_step(&F->srv->workers[i]);
	cli_pull(c);
	assert_string_equal(cli_take(c), "");   /* nothing before the answer */
	pump();
	assert_string_equal(cli_take(c), "<success xmlns='" NS_SASL "'></success>");

	cli_send(c, HEADER);
	pump();
	t = expect_header(cli_take(c), true);
	HAS(t, "<bind xmlns='" NS_BIND "'/>");
	HASNT(t, "mechanism");

	cli_send(c, "<iq type='set' id='b1'><bind xmlns='" NS_BIND "'><resource>r1</resource></bind></iq>");
	pump();
	assert_string_equal(cli_take(c),
			    "<iq type='result' id='b1'><bind xmlns='" NS_BIND "'><jid>alice@" DOMAIN "/r1</jid></bind></iq>");

	/* XEP-0199 ping to the server. */
	cli_send(c, "<iq type='get' id='p1' to='" DOMAIN "'><ping xmlns='urn:xmpp:ping'/></iq>");
	pump();
	t = cli_take(c);
	assert_true(!strncmp(t, "<iq", 3));
	expect_attr(t, "type", "result");
	expect_attr(t, "id", "p1");
	expect_attr(t, "from", DOMAIN);
	expect_attr(t, "to", "alice@" DOMAIN "/r1");
	HASNT(t, "error");

	/* An iq the server does not know: service-unavailable. */
	cli_send(c, "<iq type='get' id='u1' to='" DOMAIN "'><query xmlns='urn:example:unknown'/></iq>");
	pump();
	t = cli_take(c);
	assert_true(!strncmp(t, "<iq", 3));
	expect_attr(t, "type", "error");
	expect_attr(t, "id", "u1");
	expect_attr(t, "from", DOMAIN);
	expect_attr(t, "to", "alice@" DOMAIN "/r1");
	HAS(t, "<error type='cancel'><service-unavailable xmlns='" NS_STANZAS "'/></error>");
	assert_true(cli_alive(c));

	/* A wrong password, on another connection: not-authorized, and the
	 * stream closes after max_auth_failures (3) with policy-violation. The
	 * failures after the first two from one address are held back by
	 * the throttle (a timer), so wait for them. */
	struct cli *d = cli_open(1, L_STARTTLS);
	do_starttls(d);
	cli_send(d, HEADER);
	pump();
	cli_take(d);
	for (int i = 1; i <= 3; i++) {
		send_plain_auth(d, "alice", "wrong");
		if (i < 3) {
			assert_true(pump_until_text(d, "</failure>", 3000));
			assert_string_equal(cli_take(d), "<failure xmlns='" NS_SASL "'><not-authorized/></failure>");
			assert_true(cli_alive(d));
		}
	}
	assert_true(pump_until_closed(d, 5000));
	t = cli_take(d);
	assert_string_equal(t, "<failure xmlns='" NS_SASL "'><not-authorized/></failure>"
			       "<stream:error><policy-violation xmlns='" NS_SERR "'/></stream:error></stream:stream>");
	/* Alice's session is untouched. */
	assert_true(cli_alive(c));

	/* An unknown user fails the same way as a wrong password. */
	struct cli *e = cli_open(0, L_STARTTLS);
	do_starttls(e);
	cli_send(e, HEADER);
	pump();
	cli_take(e);
	send_plain_auth(e, "nobody", "secret");
	assert_true(pump_until_text(e, "</failure>", 3000));
	assert_string_equal(cli_take(e), "<failure xmlns='" NS_SASL "'><not-authorized/></failure>");
	/* After a failure, the right password still works on that stream. */
	send_plain_auth(e, "bob", "hunter2");
	pump();
	assert_string_equal(cli_take(e), "<success xmlns='" NS_SASL "'></success>");
}

/* <starttls/> and the ClientHello in one read: the bytes after the
 * element are TLS, and <proceed/> leaves in plaintext before the server's
 * first flight. */
static void starttls_pipelined(size_t split)
{
	struct cli *c = cli_open(1, L_STARTTLS);
	struct capture *k = &caps[c->id];
	const char *st = "<starttls xmlns='" NS_TLS "'/>";
	const char *proceed = "<proceed xmlns='" NS_TLS "'/>";
	unsigned char out[16384];
	char buf[20000];
	size_t sl = strlen(st);

	cli_send(c, HEADER);
	pump();
	cli_take(c);
	c->tls = tls_conn_client(F->tcl, DOMAIN);
	assert_non_null(c->tls);
	struct tls_io io = { NULL, 0, 0, out, sizeof(out), 0, false };
	assert_int_equal(tls_conn_handshake(c->tls, &io), TLS_WANT_READ);
	assert_true(io.out_len > 0 && sl + io.out_len <= sizeof(buf));
	memcpy(buf, st, sl);
	memcpy(buf + sl, out, io.out_len);
	size_t before = k->len;
	if (split) {
		/* The first read ends inside <starttls/>. */
		raw_send(c, buf, split);
		pump();
		assert_int_equal(k->len, before);
	}
	raw_send(c, buf + split, sl + io.out_len - split);
	/* Only <proceed/> is out before the worker's flush. */
	assert_int_equal(k->len - before, strlen(proceed));
	assert_memory_equal(k->p + before, proceed, strlen(proceed));
	k->rd = k->len;
	pump();
	if (!tls_conn_established(c->tls))
		fail_msg("no TLS handshake after <starttls/> and a ClientHello in the same read "
			 "(the element split at %zu); server sent %zu bytes after <proceed/>, connection %s",
			 split, k->len - before - strlen(proceed), cli_closed(c) ? "closed" : "open");
	do_auth(c, "alice", "secret");
	do_bind(c, "alice", "pipelined");
}

static void test_starttls_pipelined(void **state)
{
	(void)state;
	starttls_pipelined(0);
}

/* The same with the element split over two reads, so that it completes
 * in the session's input buffer. */
static void test_starttls_pipelined_split(void **state)
{
	(void)state;
	starttls_pipelined(10);
}

/* ---- 5. direct TLS --------------------------------------------------------- */

static void test_login_direct_tls(void **state)
{
	(void)state;
	struct cli *c = cli_open(1, L_DIRECT);   /* handshakes in cli_open */
	size_t alen = 0;
	const char *alpn = tls_conn_alpn(c->tls, &alen);

	assert_non_null(alpn);
	assert_int_equal(alen, 11);
	assert_memory_equal(alpn, "xmpp-client", 11);
	assert_string_equal(cli_take(c), "");   /* no XMPP byte before the client's header */

	cli_send(c, HEADER);
	pump();
	const char *t = expect_header(cli_take(c), true);
	HAS(t, "<mechanisms xmlns='" NS_SASL "'>");
	HAS(t, "<mechanism>PLAIN</mechanism>");
	HASNT(t, "starttls");
	send_plain_auth(c, "bob", "hunter2");
	pump();
	assert_string_equal(cli_take(c), "<success xmlns='" NS_SASL "'></success>");
	cli_send(c, HEADER);
	pump();
	t = expect_header(cli_take(c), true);
	HAS(t, "<bind xmlns='" NS_BIND "'/>");
	do_bind(c, "bob", "phone");
	cli_send(c, "<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>");
	pump();
	t = cli_take(c);
	expect_attr(t, "type", "result");
	expect_attr(t, "id", "p2");
	expect_attr(t, "to", "bob@" DOMAIN "/phone");
}

/* ---- 6. routing ------------------------------------------------------------ */

/* The first element starting with `start` after the mark, or fail. */
static const char *elem(struct cli *c, const char *t, const char *start)
{
	const char *p = strstr(t, start);
	if (!p)
		fail_msg("client %u: no %s in \"%s\"", (unsigned)c->id, start, t);
	return p;
}

static void test_routing(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	const char *t, *p;

	assert_int_equal(handle_worker(session_handle(a->s)), 0);
	assert_int_equal(handle_worker(session_handle(b->s)), 1);

	/* Without from: stamped by the server, across the ring. */
	cli_send(a, "<message to='bob@" DOMAIN "/r1' type='chat' id='m1'><body>hi</body></message>");
	router_worker_step(&F->srv->workers[0]);
	router_worker_step(&F->srv->workers[1]);
	cli_pull(b);
	t = cli_take(b);
	p = elem(b, t, "<message");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	expect_attr(p, "to", "bob@" DOMAIN "/r1");
	expect_attr(p, "type", "chat");
	expect_attr(p, "id", "m1");
	HAS(p, "<body>hi</body></message>");
	pump();
	assert_string_equal(cli_take(a), "");

	/* A from that is the sender's own full or bare JID passes, restamped. */
	cli_send(a, "<message from='alice@" DOMAIN "' to='bob@" DOMAIN "/r1' type='chat'><body>own</body></message>");
	pump();
	t = cli_take(b);
	p = elem(b, t, "<message");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	HAS(p, "<body>own</body>");

	/* To the bare JID: the available resource. */
	cli_send(a, "<message to='bob@" DOMAIN "' type='chat'><body>bare</body></message>");
	pump();
	t = cli_take(b);
	p = elem(b, t, "<message");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	expect_attr(p, "to", "bob@" DOMAIN);
	HAS(p, "<body>bare</body>");

	/* To a resource that does not exist (chat): the best resource. */
	cli_send(a, "<message to='bob@" DOMAIN "/nope' type='chat'><body>fallback</body></message>");
	pump();
	t = cli_take(b);
	p = elem(b, t, "<message");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	HAS(p, "<body>fallback</body>");
	assert_string_equal(cli_take(a), "");

	/* An iq to a resource that does not exist: service-unavailable. */
	cli_send(a, "<iq to='bob@" DOMAIN "/nope' type='get' id='q1'><query xmlns='jabber:iq:version'/></iq>");
	pump();
	assert_string_equal(cli_take(b), "");
	t = cli_take(a);
	p = elem(a, t, "<iq");
	expect_attr(p, "type", "error");
	expect_attr(p, "id", "q1");
	expect_attr(p, "from", "bob@" DOMAIN "/nope");
	expect_attr(p, "to", "alice@" DOMAIN "/r1");
	HAS(p, "<service-unavailable xmlns='" NS_STANZAS "'/>");

	/* An iq to bob's existing resource goes through, and its answer back. */
	cli_send(a, "<iq to='bob@" DOMAIN "/r1' type='get' id='q2'><query xmlns='jabber:iq:version'/></iq>");
	pump();
	t = cli_take(b);
	p = elem(b, t, "<iq");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	expect_attr(p, "id", "q2");
	cli_send(b, "<iq to='alice@" DOMAIN "/r1' type='result' id='q2'/>");
	pump();
	t = cli_take(a);
	p = elem(a, t, "<iq");
	expect_attr(p, "from", "bob@" DOMAIN "/r1");
	expect_attr(p, "type", "result");

	/* To an unknown user: service-unavailable. */
	cli_send(a, "<message to='carol@" DOMAIN "' type='chat' id='m2'><body>x</body></message>");
	pump();
	t = cli_take(a);
	p = elem(a, t, "<message");
	expect_attr(p, "type", "error");
	expect_attr(p, "id", "m2");
	expect_attr(p, "from", "carol@" DOMAIN);
	expect_attr(p, "to", "alice@" DOMAIN "/r1");
	HAS(p, "<error type='cancel'><service-unavailable xmlns='" NS_STANZAS "'/></error>");

	/* To another domain: no s2s yet. */
	cli_send(a, "<message to='dave@example.net' type='chat' id='m3'><body>x</body></message>");
	pump();
	t = cli_take(a);
	p = elem(a, t, "<message");
	expect_attr(p, "type", "error");
	expect_attr(p, "id", "m3");
	expect_attr(p, "from", "dave@example.net");
	HAS(p, "<remote-server-not-found xmlns='" NS_STANZAS "'/>");

	/* Never an error in reply to an error. */
	cli_send(a, "<message to='carol@" DOMAIN "' type='error' id='e1'><error type='cancel'>"
		    "<item-not-found xmlns='" NS_STANZAS "'/></error></message>");
	cli_send(a, "<message to='carol@" DOMAIN "/x' type='error' id='e2'><error type='cancel'>"
		    "<item-not-found xmlns='" NS_STANZAS "'/></error></message>");
	cli_send(a, "<iq to='carol@" DOMAIN "/x' type='error' id='e3'><error type='cancel'>"
		    "<item-not-found xmlns='" NS_STANZAS "'/></error></iq>");
	cli_send(a, "<message to='dave@example.net' type='error' id='e4'><error type='cancel'>"
		    "<item-not-found xmlns='" NS_STANZAS "'/></error></message>");
	pump();
	assert_string_equal(cli_take(a), "");
	assert_string_equal(cli_take(b), "");
	assert_true(cli_alive(a));

	/* 100 messages arrive in order. */
	char buf[100 * 128];
	size_t bl = 0;
	for (int i = 0; i < 100; i++)
		bl += (size_t)snprintf(buf + bl, sizeof(buf) - bl,
				       "<message to='bob@" DOMAIN "/r1' type='chat'><body>n%d</body></message>", i);
	cli_send_n(a, buf, bl);
	pump();
	t = cli_take(b);
	p = t;
	for (int i = 0; i < 100; i++) {
		char want[32];
		snprintf(want, sizeof(want), "<body>n%d</body>", i);
		const char *q = strstr(p, want);
		if (!q)
			fail_msg("message %d missing or out of order", i);
		p = q + strlen(want);
	}
	assert_null(strstr(p, "<message"));

	/* A forged from never passes: invalid-from, the stream closes, and
	 * bob receives nothing. */
	cli_send(a, "<message from='mallory@" DOMAIN "' to='bob@" DOMAIN "/r1' type='chat'><body>hi</body></message>");
	pump();
	t = cli_take(a);
	expect_stream_error(a, t, "invalid-from");
	assert_false(cli_alive(a));
	assert_string_equal(cli_take(b), "");
	assert_true(cli_alive(b));
}

/* A forged from with another resource of the same account is forged too. */
static void test_forged_resource(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", false);

	cli_send(a, "<message from='alice@" DOMAIN "/other' to='alice@" DOMAIN "'><body>x</body></message>");
	pump();
	expect_stream_error(a, cli_take(a), "invalid-from");
}

/* ---- 7. resource conflicts ------------------------------------------------- */

static void test_conflict(void **state)
{
	(void)state;
	struct cli *a1 = login(0, "alice", "secret", "r1", true);
	struct cli *a2 = cli_open(1, L_STARTTLS);

	do_starttls(a2);
	do_auth(a2, "alice", "secret");
	do_bind(a2, "alice", "r1");   /* succeeds: the old one goes */
	pump();
	expect_stream_error(a1, cli_take(a1), "conflict");
	assert_false(cli_alive(a1));
	assert_true(cli_alive(a2));

	/* The name belongs to the new session now. */
	struct cli *b = login(0, "bob", "hunter2", "r1", false);
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat'><body>to-new</body></message>");
	pump();
	HAS(cli_take(a2), "<body>to-new</body>");

	/* Same worker this time: a third session takes r1 from the second. */
	struct cli *a3 = cli_open(1, L_STARTTLS);
	do_starttls(a3);
	do_auth(a3, "alice", "secret");
	do_bind(a3, "alice", "r1");
	pump();
	expect_stream_error(a2, cli_take(a2), "conflict");
	assert_true(cli_alive(a3));
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat'><body>to-third</body></message>");
	pump();
	HAS(cli_take(a3), "<body>to-third</body>");
	assert_string_equal(cli_take(b), "");
}

/* ---- 8. closing ------------------------------------------------------------ */

static void test_close_and_unavailable(void **state)
{
	(void)state;
	struct cli *b1 = login(0, "bob", "hunter2", "r1", true);
	struct cli *b2 = login(1, "bob", "hunter2", "r2", true);
	const char *t, *p;

	/* b1 saw b2's initial presence. */
	t = cli_take(b1);
	p = elem(b1, t, "<presence");
	expect_attr(p, "from", "bob@" DOMAIN "/r2");

	/* b2 closes its stream: the server answers and closes; b1 learns it
	 * went away. */
	cli_send(b2, "</stream:stream>");
	pump();
	assert_string_equal(cli_take(b2), "</stream:stream>");
	assert_true(cli_closed(b2));
	assert_false(cli_alive(b2));
	t = cli_take(b1);
	p = elem(b1, t, "<presence");
	expect_attr(p, "from", "bob@" DOMAIN "/r2");
	expect_attr(p, "type", "unavailable");
	assert_true(strstr(p, "/>") == strchr(p, '>') - 1);   /* empty element */
	assert_true(cli_alive(b1));

	/* A third resource that drops the connection without closing the
	 * stream goes unavailable too. */
	struct cli *b3 = login(1, "bob", "hunter2", "r3", true);
	cli_take(b1);
	c2s_eof(b3->s);
	pump();
	assert_true(cli_closed(b3));
	t = cli_take(b1);
	p = elem(b1, t, "<presence");
	expect_attr(p, "from", "bob@" DOMAIN "/r3");
	expect_attr(p, "type", "unavailable");

	/* A session that never sent presence goes without a word. */
	struct cli *b4 = login(0, "bob", "hunter2", "r4", false);
	cli_send(b4, "</stream:stream>");
	pump();
	assert_true(cli_closed(b4));
	assert_string_equal(cli_take(b1), "");

	/* Before authentication, on the plaintext stream, too. */
	struct cli *c = cli_open(0, L_STARTTLS);
	cli_send(c, HEADER "</stream:stream>");
	pump();
	t = expect_header(cli_take(c), true);
	HAS(t, "</stream:features></stream:stream>");
	assert_true(cli_closed(c));
}

/* Fan-out has no fixed width: with 70 resources of one account (once
 * capped at 64, so the 65th never got its own presence echo), each gets
 * its echo (asserted by login()), the first sees the last one's presence,
 * and a chat to the bare JID reaches every one of them (all priority 0). */
static void test_many_resources(void **state)
{
	(void)state;
	enum { N = 70 };
	struct cli *b[N];
	char res[16];

	for (int i = 0; i < N; i++) {
		snprintf(res, sizeof(res), "m%d", i);
		b[i] = login((unsigned)i % 2, "bob", "hunter2", res, true);
	}
	HAS(cli_take(b[0]), "from='bob@" DOMAIN "/m69'");
	for (int i = 0; i < N; i++)
		cli_take(b[i]);
	struct cli *a = login(0, "alice", "secret", "r1", true);
	cli_send(a, "<message to='bob@" DOMAIN "' type='chat' id='fan'><body>all</body></message>");
	pump();
	for (int i = 0; i < N; i++) {
		const char *t = cli_take(b[i]);
		if (!strstr(t, "id='fan'"))
			fail_msg("resource m%d did not get the message to the bare JID", i);
	}
	assert_string_equal(cli_take(a), "");
}

/* ---- 9. the output limit ---------------------------------------------------- */

static struct tweak small_output = { .max_output = 256u * 1024u };

static void test_output_limit(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);       /* the one that stops reading */
	struct cli *b2 = login(0, "bob", "hunter2", "r2", true);      /* reads */
	static char body[16 * 1024 + 256];

	cli_take(a);
	cli_take(b);
	cli_take(b2);
	caps[b->id].block = true;
	int n = snprintf(body, sizeof(body), "<message to='bob@" DOMAIN "/r1' type='chat'><body>");
	memset(body + n, 'x', 16 * 1024);
	strcpy(body + n + 16 * 1024, "</body></message>");
	size_t before = caps[b->id].len;
	int sent = 0;
	for (; sent < 40 && cli_alive(b); sent++) {
		cli_send(a, body);
		pump();
	}
	assert_false(cli_alive(b));
	assert_true(cli_closed(b));
	assert_int_equal(caps[b->id].len, before);   /* nothing got out */
	/* It took more than max_output of stanzas to get there, not fewer. */
	assert_true((size_t)sent * strlen(body) > 256u * 1024u);
	assert_true(cli_alive(a));
	assert_true(cli_alive(b2));

	/* Others unaffected: b2 saw b's unavailable presence, and messages. */
	{
		const char *t = cli_take(b2);
		const char *p = elem(b2, t, "<presence");
		expect_attr(p, "from", "bob@" DOMAIN "/r1");
		expect_attr(p, "type", "unavailable");
	}
	cli_send(a, "<message to='bob@" DOMAIN "/r2' type='chat'><body>still</body></message>");
	pump();
	HAS(cli_take(b2), "<body>still</body>");
	/* Messages for the closed resource now fall back to the other one. */
	cli_send(a, "<message to='bob@" DOMAIN "/r1' type='chat'><body>fb</body></message>");
	pump();
	HAS(cli_take(b2), "<body>fb</body>");
}

/* ---- more: pipelining, stale handles, timers ---------------------------------- */

/* The restart header right behind <auth/>, before the answer came: it
 * waits in the session's buffer and is parsed after <success/>. */
static void test_auth_pipelined_restart(void **state)
{
	(void)state;
	struct cli *c = cli_open(0, L_STARTTLS);

	do_starttls(c);
	cli_send(c, HEADER);
	pump();
	cli_take(c);
	cli_send(c, "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>" HEADER
		    "<iq type='set' id='b1'><bind xmlns='" NS_BIND "'><resource>p</resource></bind></iq>");
	pump();
	const char *t = cli_take(c);
	const char *succ = "<success xmlns='" NS_SASL "'></success>";
	if (strncmp(t, succ, strlen(succ)))
		fail_msg("expected <success/> first: \"%s\"", t);
	t = expect_header(t + strlen(succ), true);
	HAS(t, "<bind xmlns='" NS_BIND "'/>");
	HAS(t, "<jid>alice@" DOMAIN "/p</jid>");
	assert_true(cli_alive(c));
}

/* Whitespace between stanzas, stanzas split over TLS records, an iq
 * without an id. */
static void test_stream_details(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b = login(0, "bob", "hunter2", "r1", true);
	const char *msg = "<message to='bob@" DOMAIN "/r1' type='chat'><body>split</body></message>";
	const char *t, *p;

	cli_send(a, "\n  \n");
	pump();
	if (!cli_alive(a))
		fail_msg("closed by whitespace: \"%s\"", cli_take(a));
	assert_string_equal(cli_take(a), "");
	for (size_t i = 0, n, ml = strlen(msg); i < ml; i += n) {
		n = ml - i < 5 ? ml - i : 5;
		cli_send_n(a, msg + i, n);
		pump();
		if (!cli_alive(a))
			fail_msg("closed after %zu bytes of a split stanza: \"%s\"", i + n, cli_take(a));
	}
	t = cli_take(b);
	p = elem(b, t, "<message");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	HAS(p, "<body>split</body>");

	cli_send(a, "<iq type='get' to='" DOMAIN "'><ping xmlns='urn:xmpp:ping'/></iq>");
	pump();
	t = cli_take(a);
	p = elem(a, t, "<iq");
	expect_attr(p, "type", "error");
	HAS(p, "<bad-request xmlns='" NS_STANZAS "'/>");
	cli_send(a, "<iq type='get' id='two' to='" DOMAIN "'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>");
	pump();
	t = cli_take(a);
	p = elem(a, t, "<iq");
	expect_attr(p, "type", "error");
	expect_attr(p, "id", "two");
	HAS(p, "<bad-request xmlns='" NS_STANZAS "'/>");
	/* A second bind on a bound stream is refused, the stream stays. */
	cli_send(a, "<iq type='set' id='b2'><bind xmlns='" NS_BIND "'><resource>r9</resource></bind></iq>");
	pump();
	t = cli_take(a);
	p = elem(a, t, "<iq");
	expect_attr(p, "type", "error");
	expect_attr(p, "id", "b2");
	HAS(p, "<not-allowed xmlns='" NS_STANZAS "'/>");
	/* Not a stanza of jabber:client: unsupported-stanza-type. */
	cli_send(a, "<foo/>");
	pump();
	expect_stream_error(a, cli_take(a), "unsupported-stanza-type");
}

/* A stanza in the ring to a session that closed before the ring was
 * drained: a chat message falls back to another resource, or, with none,
 * the sender gets service-unavailable; an iq gets the error. */
static void test_stale_handle(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *b1 = login(1, "bob", "hunter2", "r1", true);
	struct cli *b2 = login(0, "bob", "hunter2", "r2", true);
	const char *t, *p;

	cli_take(b2);
	cli_send(a, "<message to='bob@" DOMAIN "/r1' type='chat' id='s1'><body>late</body></message>");
	router_worker_step(&F->srv->workers[0]);   /* in the ring to worker 1 */
	c2s_eof(b1->s);                              /* b1 goes before worker 1 drains it */
	pump();
	assert_true(cli_closed(b1));
	t = cli_take(b2);
	HAS(t, "<body>late</body>");
	assert_string_equal(cli_take(a), "");

	/* Now bob/r3 on worker 1 alone: its stale message comes back. */
	struct cli *b3 = login(1, "bob", "hunter2", "r3", true);
	cli_send(b2, "</stream:stream>");
	pump();
	assert_true(cli_closed(b2));
	cli_send(a, "<message to='bob@" DOMAIN "/r3' type='chat' id='s2'><body>late</body></message>"
		    "<iq to='bob@" DOMAIN "/r3' type='get' id='s3'><query xmlns='jabber:iq:version'/></iq>");
	router_worker_step(&F->srv->workers[0]);
	c2s_eof(b3->s);
	pump();
	t = cli_take(a);
	p = strstr(t, "id='s2'");
	if (!p)
		fail_msg("no error for the message: \"%s\"", t);
	p = elem(a, t, "<message");
	expect_attr(p, "type", "error");
	expect_attr(p, "from", "bob@" DOMAIN "/r3");
	expect_attr(p, "to", "alice@" DOMAIN "/r1");
	HAS(p, "<service-unavailable xmlns='" NS_STANZAS "'/>");
	p = elem(a, t, "<iq");
	expect_attr(p, "type", "error");
	expect_attr(p, "id", "s3");
	expect_attr(p, "from", "bob@" DOMAIN "/r3");
	HAS(p, "<service-unavailable xmlns='" NS_STANZAS "'/>");
}

static struct tweak short_header_timeout = { .header_timeout_ms = 100 };

/* No header in time: connection-timeout (our header first). */
static void test_header_timeout(void **state)
{
	(void)state;
	struct cli *c = cli_open(0, L_STARTTLS);

	cli_send(c, "<?xml version='1.0'?>");
	assert_true(pump_until_closed(c, 3000));
	const char *t = cli_take(c);
	expect_header(t, true);
	expect_stream_error(c, t, "connection-timeout");
}

/* Authentication requests pipelined behind the one that reaches
 * max_auth_failures: the stream is closed with policy-violation, and what
 * the client queued behind (here a right password, a restart, a bind and a
 * message) is never acted on. */
static struct tweak two_failures = { .max_auth_failures = 2 };

static void auth_failures_pipelined(void)
{
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	struct cli *d = cli_open(0, L_STARTTLS);
	char buf[2048], el[512];
	size_t bl = 0;

	do_starttls(d);
	cli_send(d, HEADER);
	pump();
	cli_take(d);
	cli_take(b);
	/* max_auth_failures times "\0alice\0wrong", then "\0alice\0secret" */
	snprintf(el, sizeof(el), "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>");
	for (unsigned i = 0; i < F->cfg.max_auth_failures; i++)
		bl += (size_t)snprintf(buf + bl, sizeof(buf) - bl, "%s", el);
	bl += (size_t)snprintf(buf + bl, sizeof(buf) - bl,
			       "<auth xmlns='" NS_SASL "' mechanism='PLAIN'>AGFsaWNlAHNlY3JldA==</auth>" HEADER
			       "<iq type='set' id='b1'><bind xmlns='" NS_BIND "'><resource>z</resource></bind></iq>"
			       "<message to='bob@" DOMAIN "/r1' type='chat'><body>after-policy-violation</body></message>");
	cli_send_n(d, buf, bl);
	bool closed = pump_until_closed(d, 4000);
	const char *t = cli_take(d);
	const char *pv = strstr(t, "<stream:error><policy-violation");
	if (!pv)
		fail_msg("no policy-violation: \"%s\"", t);
	/* Nothing from the queued requests reaches bob. */
	pump();
	const char *tb = cli_take(b);
	if (strstr(tb, "after-policy-violation"))
		fail_msg("a stanza queued behind the auth that reached max_auth_failures was routed "
			 "(connection %s); client got \"%s\"; bob got \"%s\"",
			 closed ? "closed" : "still open", t, tb);
	if (!closed)
		fail_msg("the connection stays open after <policy-violation/> (got \"%s\")", t);
	expect_stream_error(d, t, "policy-violation");
}

static void test_auth_failures_pipelined_throttled(void **state)
{
	(void)state;
	auth_failures_pipelined();
}

static void test_auth_failures_pipelined_unthrottled(void **state)
{
	(void)state;
	auth_failures_pipelined();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plaintext_features, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_plaintext_bytewise, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_header_errors, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_header_versions, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_xml_errors, fx_setup, fx_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_xml_stanza_too_large, fx_setup, fx_teardown,
							 &small_stanza),
		cmocka_unit_test_setup_teardown(test_login_starttls, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_starttls_pipelined, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_starttls_pipelined_split, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_login_direct_tls, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_routing, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_forged_resource, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_conflict, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_close_and_unavailable, fx_setup, fx_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_output_limit, fx_setup, fx_teardown, &small_output),
		cmocka_unit_test_setup_teardown(test_auth_pipelined_restart, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_stream_details, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_stale_handle, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_many_resources, fx_setup, fx_teardown),
		/* max 3: the third failure is throttled (a timer sends it);
		 * max 2: the second is not (sent from the control thread's answer). */
		cmocka_unit_test_setup_teardown(test_auth_failures_pipelined_throttled, fx_setup, fx_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_auth_failures_pipelined_unthrottled, fx_setup,
							 fx_teardown, &two_failures),
		cmocka_unit_test_prestate_setup_teardown(test_header_timeout, fx_setup, fx_teardown,
							 &short_header_timeout),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
