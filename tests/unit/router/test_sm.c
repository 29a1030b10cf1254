/* XEP-0198 stream management (router/sm.c) driven with bytes through the
 * harness of harness.h, as test_c2s.c drives client streams: the same fake
 * network backend, real TLS and real authentication, every worker and the
 * control thread stepped by the test thread. The im hook is a recorder
 * (test_serve): it answers binds with an empty IM state and keeps every
 * request, so the tests see exactly which unacknowledged stanzas a session
 * hands over (IM_REQ_UNACKED). Two workers: resumption is tried on the
 * session's own worker and through the rings from the other one.
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
#include "router/sm.h"

/* ---- the im hook ------------------------------------------------------------ */

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

/* ---- the fixture ---------------------------------------------------------- */

static int fx_setup(void **state)
{
	hx_open("sm");
	F->hooks.im.serve = test_serve;
	F->cfg.im.sm_resume_ms = 60000;
	F->cfg.im.sm_max_unacked = 1000;
	hx_start(*state);
	*state = F;
	return 0;
}

static int fx_teardown(void **state)
{
	(void)state;
	hx_close();
	reqs_clear();
	return 0;
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

static struct tweak short_ping = { .ping_idle_ms = 200, .ping_timeout_ms = 200 };

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
