/* The bytes-driven harness of the router tests: see harness.h. Every
 * assertion of a test is on the bytes the server wrote (or, in test_sm.c
 * and test_im.c, on the requests its im hook recorded). */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <urcu-qsbr.h>

#include "harness.h"

#include "control/account.h"
#include "net/wheel.h"
#include "parser/xml.h"
#include "router/route.h"

struct capture caps[MAX_CONNS];
uint64_t activity;
struct fx *F;

/* ---- the fake network backend ------------------------------------------ */

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

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void hx_open(const char *name)
{
	char err[256];
	static const char *const alpn[] = { "xmpp-client" };
	const char *const domains[] = { DOMAIN };

	F = calloc(1, sizeof(*F));
	assert_non_null(F);
	memset(caps, 0, sizeof(caps));
	activity = 0;
	snprintf(F->root, sizeof(F->root), "/tmp/stanzad-%s-XXXXXX", name);
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
}

void hx_start(const struct tweak *tw)
{
	struct server_config *c = &F->cfg;
	char err[256];

	if (tw) {
		if (tw->max_stanza)
			c->xml.max_stanza = tw->max_stanza;
		if (tw->max_output)
			c->max_output = tw->max_output;
		if (tw->header_timeout_ms)
			c->header_timeout_ms = tw->header_timeout_ms;
		if (tw->max_auth_failures)
			c->max_auth_failures = tw->max_auth_failures;
		if (tw->ping_idle_ms)
			c->im.ping_idle_ms = tw->ping_idle_ms;
		if (tw->ping_timeout_ms)
			c->im.ping_timeout_ms = tw->ping_timeout_ms;
		if (tw->sm_resume_ms)
			c->im.sm_resume_ms = tw->sm_resume_ms;
		if (tw->sm_max_unacked)
			c->im.sm_max_unacked = tw->sm_max_unacked;
		if (tw->register_enabled)
			F->hooks.im.register_enabled = true;
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
}

void hx_close(void)
{
	struct server *srv = F->srv;

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
	free(F);
	F = NULL;
}

int group_setup(void **state)
{
	(void)state;
	route_thread_register();
	return 0;
}

int group_teardown(void **state)
{
	(void)state;
	route_thread_offline();
	rcu_barrier();
	route_thread_online();
	route_thread_unregister();
	return 0;
}

/* ---- the test-side client ---------------------------------------------- */

void cli_free(struct cli *c)
{
	tls_conn_free(c->tls);
	free(c->text);
	free(c);
}

bool cli_alive(struct cli *c)
{
	if (c->s && caps[c->id].closed)
		c->s = NULL;   /* dead now, freed at the end of its worker's step */
	return c->s != NULL;
}

void text_add(struct cli *c, const void *p, size_t n)
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

void raw_send(struct cli *c, const void *p, size_t n)
{
	assert_true(cli_alive(c));
	router_session_bytes(c->s, p, n);
	activity++;
	cli_alive(c);
}

static unsigned char big_out[1u << 21];

void cli_send_n(struct cli *c, const char *p, size_t n)
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

void cli_send(struct cli *c, const char *str)
{
	cli_send_n(c, str, strlen(str));
}

void cli_pull(struct cli *c)
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

void pump(void)
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

void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

bool pump_until_closed(struct cli *c, unsigned max_ms)
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

bool pump_until_text(struct cli *c, const char *needle, unsigned max_ms)
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

struct cli *cli_open(unsigned wk, unsigned listener)
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

const char *cli_take(struct cli *c)
{
	const char *t = c->text + c->mark;
	c->mark = c->tlen;
	return t;
}

bool cli_closed(struct cli *c)
{
	return caps[c->id].closed;
}

/* ---- assertions on what the server wrote -------------------------------- */

bool attr_of(const char *p, const char *name, char *out, size_t cap)
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

void expect_attr(const char *p, const char *name, const char *want)
{
	char v[512];

	if (!attr_of(p, name, v, sizeof(v)))
		fail_msg("no %s= in %.120s", name, p);
	if (strcmp(v, want))
		fail_msg("%s='%s', expected '%s' in %.160s", name, v, want, p);
}

void expect_no_attr(const char *p, const char *name)
{
	char v[512];

	if (attr_of(p, name, v, sizeof(v)))
		fail_msg("unexpected %s='%s' in %.160s", name, v, p);
}

void expect_stream_error(struct cli *c, const char *t, const char *cond)
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

const char *expect_header(const char *t, bool with_from)
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

const char *elem(struct cli *c, const char *t, const char *start)
{
	const char *p = strstr(t, start);
	if (!p)
		fail_msg("client %u: no %s in \"%s\"", (unsigned)c->id, start, t);
	return p;
}

/* ---- logging in ------------------------------------------------------------ */

void b64(const uint8_t *in, size_t n, char *out)
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

void send_plain_auth(struct cli *c, const char *user, const char *pass)
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

void do_starttls(struct cli *c)
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

void do_auth(struct cli *c, const char *user, const char *pass)
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

void do_bind(struct cli *c, const char *user, const char *res)
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

struct cli *login(unsigned wk, const char *user, const char *pass, const char *res, bool avail)
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
