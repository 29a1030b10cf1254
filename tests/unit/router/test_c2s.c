/* The client stream state machine (router/c2s.c, router/deliver.c,
 * router/worker.c) driven with bytes and no sockets, through the harness
 * of harness.h: a fake network backend, real TLS and real authentication,
 * every worker and the control thread stepped by the test thread. Every
 * assertion is on the bytes the server wrote.
 */
#include <errno.h>
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

#include "harness.h"

#include "parser/xml.h"
#include "router/route.h"
#include "router/router.h"

/* ---- the fixture ---------------------------------------------------------- */

static int fx_setup(void **state)
{
	hx_open("c2s");
	hx_start(*state);
	*state = F;
	return 0;
}

static int fx_teardown(void **state)
{
	(void)state;
	hx_close();
	return 0;
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
