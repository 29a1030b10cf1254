/* The worker side of IM and presence (router/im.c and its hooks in
 * c2s.c, deliver.c, worker.c) driven with bytes through the harness of
 * harness.h, as test_c2s.c drives client streams: the same fake network
 * backend, real TLS and real authentication, every worker and the control
 * thread stepped by the test thread. The im hook is a fake (fake_serve):
 * it records every request and answers as a test tells it to (the IM
 * state per user: contacts and rules; a held state; registration
 * answers), and the test sends further events (rules, flags, contacts)
 * through the same struct im_out the control plane uses. Every assertion
 * is on the bytes the server wrote or on the requests it made.
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

#include "control/account.h"
#include "parser/xml.h"
#include "router/hooks.h"
#include "router/im.h"
#include "router/ring.h"
#include "router/route.h"
#include "router/router.h"

/* ---- the fake im hook ------------------------------------------------------ */

#define MAX_REQS 512

struct req {
	unsigned type;
	uint64_t handle;
	uint32_t flags;
	char jid[256];
	char *stanza;        /* NUL-terminated */
	size_t len;
};

struct tcontact {
	const char *owner, *jid;
	uint8_t sub;
};

struct trule {
	const char *owner;
	uint8_t match, action, kinds, subs;
	const char *jid;
};

static struct {
	struct req reqs[MAX_REQS];
	unsigned nreq;
	const struct im_out *out;
	struct tcontact contacts[32];
	unsigned ncontacts;
	struct trule rules[16];
	unsigned nrules;
	bool hold_state;          /* keep IM_REQ_SESSION_START unanswered */
	uint64_t held;            /* ... for this handle */
	const char *no_account;   /* this bare JID gets IM_STATE_NO_ACCOUNT */
	unsigned big_state;       /* extra made-up contacts in every state */
} FK;

static void fake_reset(void)
{
	for (unsigned i = 0; i < FK.nreq; i++)
		free(FK.reqs[i].stanza - 1);
	memset(&FK, 0, sizeof(FK));
}

static size_t put_rec(uint8_t *buf, size_t off, const void *h, size_t hl, const char *s, size_t sl)
{
	memcpy(buf + off, h, hl);
	memcpy(buf + off + hl, s, sl);
	size_t n = IM_REC_ALIGN(hl + sl);
	memset(buf + off + hl + sl, 0, n - hl - sl);
	return off + n;
}

/* The rules of owner as IM records, from off on; returns the new end. */
static size_t put_rules(uint8_t *buf, size_t off, const char *owner, uint32_t *n)
{
	*n = 0;
	for (unsigned i = 0; i < FK.nrules; i++) {
		const struct trule *t = &FK.rules[i];
		if (strcmp(t->owner, owner))
			continue;
		struct im_rule r = { t->match, t->action, t->kinds, t->subs, (uint16_t)(t->jid ? strlen(t->jid) : 0), 0 };
		off = put_rec(buf, off, &r, sizeof(r), t->jid ? t->jid : "", r.len);
		(*n)++;
	}
	return off;
}

static void send_state(uint64_t handle, const char *bare)
{
	size_t cap = 64 * 1024 + (size_t)FK.big_state * 64;
	uint8_t *buf = calloc(1, cap);
	struct im_state_hdr h = { 0, 0, 0, 0 };
	size_t off = sizeof(h);

	assert_non_null(buf);
	if (FK.no_account && !strcmp(FK.no_account, bare))
		h.flags = IM_STATE_NO_ACCOUNT;
	for (unsigned i = 0; i < FK.ncontacts; i++) {
		const struct tcontact *t = &FK.contacts[i];
		if (strcmp(t->owner, bare))
			continue;
		struct im_contact c = { t->sub, 0, (uint16_t)strlen(t->jid) };
		off = put_rec(buf, off, &c, sizeof(c), t->jid, c.len);
		h.ncontacts++;
	}
	for (unsigned i = 0; i < FK.big_state; i++) {
		char j[64];
		int l = snprintf(j, sizeof(j), "filler-contact-number-%06u@elsewhere.example", i);
		struct im_contact c = { IM_SUB_TO, 0, (uint16_t)l };
		off = put_rec(buf, off, &c, sizeof(c), j, (size_t)l);
		h.ncontacts++;
	}
	off = put_rules(buf, off, bare, &h.nrules);
	memcpy(buf, &h, sizeof(h));
	FK.out->event(FK.out->srv, handle, IM_EV_STATE, buf, off);
	free(buf);
}

static void fake_serve(void *arg, uint64_t handle, const struct im_req *hdr, const char *jid, const char *stanza,
		       const struct im_out *out)
{
	(void)arg;
	FK.out = out;
	assert_true(FK.nreq < MAX_REQS);
	struct req *r = &FK.reqs[FK.nreq++];
	r->type = hdr->type;
	r->handle = handle;
	r->flags = hdr->flags;
	assert_true(hdr->jid_len < sizeof(r->jid));
	assert_int_equal(strlen(jid), hdr->jid_len);
	memcpy(r->jid, jid, hdr->jid_len);
	/* One byte in front: attr_of looks at the byte before a name. */
	char *b = malloc(hdr->len + 2);
	assert_non_null(b);
	b[0] = ' ';
	r->stanza = b + 1;
	memcpy(r->stanza, stanza, hdr->len);
	r->stanza[hdr->len] = '\0';
	r->len = hdr->len;
	switch (hdr->type) {
	case IM_REQ_SESSION_START: {
		char bare[256];
		size_t bl = strcspn(jid, "/");
		memcpy(bare, jid, bl);
		bare[bl] = '\0';
		if (FK.hold_state) {
			FK.held = handle;
			return;
		}
		send_state(handle, bare);
		break;
	}
	case IM_REQ_PREAUTH_IQ: {
		const char *id = strstr(stanza, "id='");
		char ans[256];
		assert_non_null(id);
		snprintf(ans, sizeof(ans), "<iq type='result' id='%.*s'><query xmlns='jabber:iq:register'/></iq>",
			 (int)strcspn(id + 4, "'"), id + 4);
		out->to_session(out->srv, handle, ans, strlen(ans));
		break;
	}
	default:
		break;
	}
}

/* The first request of this type (after *from) whose stanza contains
 * needle (NULL: any). */
static struct req *req_find(unsigned type, const char *needle, unsigned *from)
{
	for (unsigned i = from ? *from : 0; i < FK.nreq; i++) {
		if (FK.reqs[i].type == type && (!needle || strstr(FK.reqs[i].stanza, needle))) {
			if (from)
				*from = i + 1;
			return &FK.reqs[i];
		}
	}
	return NULL;
}

/* The first request of this type from the session with this JID. */
static struct req *req_of(unsigned type, const char *jid)
{
	for (unsigned i = 0; i < FK.nreq; i++)
		if (FK.reqs[i].type == type && !strcmp(FK.reqs[i].jid, jid))
			return &FK.reqs[i];
	return NULL;
}

static unsigned req_count(unsigned type)
{
	unsigned n = 0;
	for (unsigned i = 0; i < FK.nreq; i++)
		n += FK.reqs[i].type == type;
	return n;
}

/* ---- the fixture ---------------------------------------------------------- */

static int fx_setup(void **state)
{
	hx_open("im");
	assert_int_equal(account_add(F->st, "carol@" DOMAIN, "pw", 2, ITER), ACCOUNT_OK);
	assert_int_equal(account_add(F->st, "dave@" DOMAIN, "pw", 2, ITER), ACCOUNT_OK);
	assert_int_equal(account_add(F->st, "eve@" DOMAIN, "pw", 2, ITER), ACCOUNT_OK);
	F->hooks.im.serve = fake_serve;
	strcpy(F->hooks.im.caps_ver, "q07IKJEyjvHSyhy//CH0CxmKi8w=");
	fake_reset();
	F->cfg.im.csi_max_held = 4;
	hx_start(*state);   /* .register_enabled: F->hooks.im.register_enabled */
	*state = F;
	return 0;
}

static int fx_teardown(void **state)
{
	(void)state;
	hx_close();
	fake_reset();
	return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static void contact(const char *owner, const char *jid, uint8_t sub)
{
	assert_true(FK.ncontacts < 32);
	FK.contacts[FK.ncontacts++] = (struct tcontact){ owner, jid, sub };
}

static void rule(const char *owner, uint8_t match, uint8_t action, uint8_t kinds, uint8_t subs, const char *jid)
{
	assert_true(FK.nrules < 16);
	FK.rules[FK.nrules++] = (struct trule){ owner, match, action, kinds, subs, jid };
}

static uint64_t hof(struct cli *c)
{
	assert_true(cli_alive(c));
	return session_handle(c->s);
}

/* An event to one session, as the control plane posts it. */
static void event(struct cli *c, unsigned ev, const void *hdr, size_t hl, const char *tail, size_t tl)
{
	uint8_t buf[8192];

	assert_non_null(FK.out);
	assert_true(hl + tl <= sizeof(buf));
	memcpy(buf, hdr, hl);
	if (tl)
		memcpy(buf + hl, tail, tl);
	FK.out->event(FK.out->srv, hof(c), ev, buf, hl + tl);
	pump();
}

static void ev_send(struct cli *c, uint32_t set, uint32_t clear, const char *stanza)
{
	struct im_send_hdr h = { set, clear };
	event(c, IM_EV_SEND, &h, sizeof(h), stanza, stanza ? strlen(stanza) : 0);
}

/* The text after "<tag" at p, up to its end tag or "/>" (for asserts that
 * must not look beyond one stanza). */
static char *one(const char *p, const char *name)
{
	static char b[8192];
	char end[32];
	snprintf(end, sizeof(end), "</%s>", name);
	const char *e = strstr(p, end);
	const char *gt = strchr(p, '>');
	size_t n = e ? (size_t)(e - p) + strlen(end) : (size_t)(gt - p) + 1;
	if (gt && gt[-1] == '/' && (!e || gt < e))
		n = (size_t)(gt - p) + 1;
	assert_true(n < sizeof(b));
	memcpy(b, p, n);
	b[n] = '\0';
	return b;
}

/* Over TLS: header, PLAIN, restart; returns the features after the restart. */
static const char *auth_features(struct cli *c, const char *user, const char *pass)
{
	cli_send(c, HEADER);
	pump();
	cli_take(c);
	send_plain_auth(c, user, pass);
	pump();
	assert_string_equal(cli_take(c), "<success xmlns='" NS_SASL "'></success>");
	cli_send(c, HEADER);
	pump();
	return expect_header(cli_take(c), true);
}

/* ---- 1. stream features, the bind waiting for the IM state ------------------------ */

static void test_bind_waits_for_state(void **state)
{
	(void)state;
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	struct cli *a = cli_open(0, L_STARTTLS);
	const char *t;

	do_starttls(a);
	t = auth_features(a, "alice", "secret");
	HAS(t, "<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://stanzad.org/caps' "
	       "ver='q07IKJEyjvHSyhy//CH0CxmKi8w='/>");
	HAS(t, "<ver xmlns='urn:xmpp:features:rosterver'/>");
	HAS(t, "<sub xmlns='urn:xmpp:features:pre-approval'/>");
	HAS(t, "<csi xmlns='urn:xmpp:csi:0'/>");
	HASNT(t, "iq-register");

	/* The bind and a ping behind it, in one write: nothing comes back
	 * until the control plane answered with the session's state. */
	FK.hold_state = true;
	cli_send(a, "<iq type='set' id='bind1'><bind xmlns='" NS_BIND "'><resource>r1</resource></bind></iq>"
		    "<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
	pump();
	assert_string_equal(cli_take(a), "");
	struct req *r = req_of(IM_REQ_SESSION_START, "alice@" DOMAIN "/r1");
	assert_non_null(r);
	assert_int_equal(r->handle, hof(a));
	assert_int_equal(a->s->state, SS_IM_WAIT);

	/* Routed to the waiting session meanwhile: kept, in order. */
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat' id='w1'><body>early</body></message>");
	pump();
	assert_string_equal(cli_take(a), "");
	assert_string_equal(cli_take(b), "");

	FK.hold_state = false;
	send_state(FK.held, "alice@" DOMAIN);
	pump();
	t = cli_take(a);
	const char *res = strstr(t, "<iq type='result' id='bind1'>");
	const char *msg = strstr(t, "<body>early</body>");
	const char *pong = strstr(t, "id='p1'");
	if (!res || !msg || !pong || !(res < msg && msg < pong))
		fail_msg("expected bind result, the early message, the ping answer in order: \"%s\"", t);
	assert_int_equal(a->s->state, SS_OPEN);
}

/* An account deleted between authentication and bind. */
static void test_bind_no_account(void **state)
{
	(void)state;
	struct cli *a = cli_open(0, L_STARTTLS);

	FK.no_account = "alice@" DOMAIN;
	do_starttls(a);
	do_auth(a, "alice", "secret");
	cli_send(a, "<iq type='set' id='bind1'><bind xmlns='" NS_BIND "'><resource>r1</resource></bind></iq>");
	pump();
	const char *t = cli_take(a);
	HASNT(t, "bind1");
	expect_stream_error(a, t, "not-authorized");
	assert_null(route_lookup(F->srv->routes, "alice@" DOMAIN, strlen("alice@" DOMAIN)));
}

/* ---- 2. XEP-0077 before authentication ------------------------------------------- */

static struct tweak with_register = { .register_enabled = true };

static void test_preauth_register(void **state)
{
	(void)state;
	struct cli *a = cli_open(0, L_STARTTLS);
	const char *t;

	/* Not before TLS: neither offered nor accepted. */
	cli_send(a, HEADER);
	pump();
	t = expect_header(cli_take(a), true);
	HASNT(t, "iq-register");
	cli_send(a, "<iq type='get' id='reg0'><query xmlns='jabber:iq:register'/></iq>");
	pump();
	expect_stream_error(a, cli_take(a), "not-authorized");
	assert_null(req_find(IM_REQ_PREAUTH_IQ, NULL, NULL));

	struct cli *c = cli_open(1, L_STARTTLS);
	do_starttls(c);
	cli_send(c, HEADER);
	pump();
	t = expect_header(cli_take(c), true);
	HAS(t, "<register xmlns='http://jabber.org/features/iq-register'/>");
	cli_send(c, "<iq type='get' id='reg1'><query xmlns='jabber:iq:register'/></iq>");
	pump();
	HAS(cli_take(c), "<iq type='result' id='reg1'><query xmlns='jabber:iq:register'/></iq>");
	struct req *r = req_find(IM_REQ_PREAUTH_IQ, "id='reg1'", NULL);
	assert_non_null(r);
	assert_string_equal(r->jid, "");
	assert_int_equal(r->handle, hof(c));
	/* Other iqs before authentication stay forbidden (RFC 6120 6). */
	cli_send(c, "<iq type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>");
	pump();
	expect_stream_error(c, cli_take(c), "not-authorized");
}

/* ---- 3. presence: broadcast, probes, updates, unavailable --------------------------- */

static void test_presence_broadcast(void **state)
{
	(void)state;
	contact("alice@" DOMAIN, "bob@" DOMAIN, IM_SUB_TO | IM_SUB_FROM);
	contact("alice@" DOMAIN, "carol@" DOMAIN, IM_SUB_FROM);
	contact("alice@" DOMAIN, "dave@" DOMAIN, IM_SUB_TO);
	contact("bob@" DOMAIN, "alice@" DOMAIN, IM_SUB_TO | IM_SUB_FROM);
	contact("carol@" DOMAIN, "alice@" DOMAIN, IM_SUB_TO);

	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	struct cli *c = login(0, "carol", "pw", "r1", true);
	struct cli *e = login(1, "eve", "pw", "r1", true);
	struct cli *a = login(0, "alice", "secret", "r1", false);
	const char *t, *p;
	unsigned probes_before = 0;
	while (req_find(IM_REQ_STANZA, "type='probe'", &probes_before))
		;
	cli_take(b);
	cli_take(c);

	cli_send(a, "<presence><priority>5</priority></presence>");
	pump();
	/* Contacts with a subscription 'from' get it, addressed to their bare JID. */
	t = cli_take(b);
	p = elem(b, t, "<presence");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	expect_attr(p, "to", "bob@" DOMAIN);
	HAS(one(p, "presence"), "<priority>5</priority>");
	p = elem(c, cli_take(c), "<presence");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	expect_attr(p, "to", "carol@" DOMAIN);
	assert_string_equal(cli_take(e), "");

	/* Alice: her own echo, then bob's presence answering the probe
	 * (bob has her with 'from'); not carol's (alice has no 'to'). */
	t = cli_take(a);
	p = elem(a, t, "<presence");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	p = elem(a, p + 1, "<presence");
	expect_attr(p, "from", "bob@" DOMAIN "/r1");
	expect_attr(p, "to", "alice@" DOMAIN "/r1");
	HASNT(t, "carol@");
	/* dave is offline: the control plane answers that probe. */
	unsigned k = probes_before;
	struct req *r = req_find(IM_REQ_STANZA, "type='probe'", &k);
	assert_non_null(r);
	expect_attr(r->stanza, "from", "alice@" DOMAIN "/r1");
	expect_attr(r->stanza, "to", "dave@" DOMAIN);
	assert_null(req_find(IM_REQ_STANZA, "type='probe'", &k));
	r = req_of(IM_REQ_INITIAL_PRESENCE, "alice@" DOMAIN "/r1");
	assert_non_null(r);
	assert_true(r->flags & IM_SF_AVAILABLE);

	/* An update: the same contacts, no probes, no second initial presence. */
	unsigned nreq = FK.nreq;
	cli_send(a, "<presence><show>away</show></presence>");
	pump();
	HAS(one(elem(b, cli_take(b), "<presence"), "presence"), "<show>away</show>");
	HAS(cli_take(c), "<show>away</show>");
	assert_string_equal(cli_take(e), "");
	assert_int_equal(FK.nreq, nreq);

	/* Unavailable: to the same contacts. */
	cli_send(a, "<presence type='unavailable'><status>gone</status></presence>");
	pump();
	p = elem(b, cli_take(b), "<presence");
	expect_attr(p, "type", "unavailable");
	expect_attr(p, "to", "bob@" DOMAIN);
	p = elem(c, cli_take(c), "<presence");
	expect_attr(p, "type", "unavailable");

	/* The session ends: IM_REQ_SESSION_END with its last presence. */
	cli_send(a, "</stream:stream>");
	pump();
	r = req_find(IM_REQ_SESSION_END, "<status>gone</status>", NULL);
	assert_non_null(r);
	assert_string_equal(r->jid, "alice@" DOMAIN "/r1");
	expect_attr(r->stanza, "from", "alice@" DOMAIN "/r1");
	expect_attr(r->stanza, "type", "unavailable");
	assert_string_equal(cli_take(b), "");   /* no second unavailable */
}

/* RFC 6121 8.5.2.1.1, XEP-0160 3: offline messages go to a resource with
 * priority >= 0 only. The initial presence carries its stanza (the
 * control plane reads the priority); when a resource that started
 * negative goes non-negative, IM_REQ_OFFLINE follows, once. */
static void test_negative_priority_offline(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", false);
	struct cli *b = login(1, "alice", "secret", "r2", false);

	cli_send(a, "<presence><priority>-1</priority></presence>");
	pump();
	struct req *r = req_of(IM_REQ_INITIAL_PRESENCE, "alice@" DOMAIN "/r1");
	assert_non_null(r);
	HAS(r->stanza, "<priority>-1</priority>");
	expect_attr(r->stanza, "from", "alice@" DOMAIN "/r1");
	assert_int_equal(req_count(IM_REQ_OFFLINE), 0);
	cli_send(a, "<presence><priority>-5</priority><show>away</show></presence>");
	pump();
	assert_int_equal(req_count(IM_REQ_OFFLINE), 0);
	assert_int_equal(req_count(IM_REQ_INITIAL_PRESENCE), 1);
	cli_send(a, "<presence><priority>0</priority></presence>");
	pump();
	assert_int_equal(req_count(IM_REQ_OFFLINE), 1);
	r = req_of(IM_REQ_OFFLINE, "alice@" DOMAIN "/r1");
	assert_non_null(r);
	HAS(r->stanza, "<priority>0</priority>");
	cli_send(a, "<presence><priority>-1</priority></presence><presence><priority>3</priority></presence>");
	pump();
	assert_int_equal(req_count(IM_REQ_OFFLINE), 1);

	/* Non-negative from the start: the initial presence is enough. */
	cli_send(b, "<presence><priority>2</priority></presence>");
	pump();
	r = req_of(IM_REQ_INITIAL_PRESENCE, "alice@" DOMAIN "/r2");
	assert_non_null(r);
	HAS(r->stanza, "<priority>2</priority>");
	assert_int_equal(req_count(IM_REQ_OFFLINE), 1);
}

/* A session that drops while available: unavailable to its contacts. */
static void test_presence_disconnect(void **state)
{
	(void)state;
	contact("alice@" DOMAIN, "bob@" DOMAIN, IM_SUB_FROM);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	struct cli *a = login(0, "alice", "secret", "r1", true);
	HAS(cli_take(b), "from='alice@" DOMAIN "/r1'");
	c2s_eof(a->s);
	pump();
	const char *p = elem(b, cli_take(b), "<presence");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	expect_attr(p, "type", "unavailable");
	struct req *r = req_find(IM_REQ_SESSION_END, NULL, NULL);
	assert_non_null(r);
	expect_attr(r->stanza, "type", "unavailable");
}

/* A new resource's initial presence: the user's other available
 * resources see it, and tell it about themselves (from their own state,
 * across the ring). */
static void test_presence_own_resources(void **state)
{
	(void)state;
	struct cli *a1 = login(1, "alice", "secret", "r1", false);
	cli_send(a1, "<presence><status>first</status></presence>");
	pump();
	cli_take(a1);
	struct cli *a2 = login(0, "alice", "secret", "r2", true);
	const char *p = elem(a1, cli_take(a1), "<presence");
	expect_attr(p, "from", "alice@" DOMAIN "/r2");
	const char *t = a2->text;
	p = elem(a2, t, "from='alice@" DOMAIN "/r1'");
	HAS(one(strstr(t, "<presence from='alice@" DOMAIN "/r1'"), "presence"), "<status>first</status>");
	expect_attr(strstr(t, "<presence from='alice@" DOMAIN "/r1'"), "to", "alice@" DOMAIN "/r2");
	(void)p;
}

/* RFC 6121 4.6: directed presence, and its cleanup. */
static void test_directed_presence(void **state)
{
	(void)state;
	struct cli *e = login(1, "eve", "pw", "r1", true);
	struct cli *b = login(0, "bob", "hunter2", "r1", true);
	struct cli *a = login(0, "alice", "secret", "r1", true);
	const char *p;

	cli_send(a, "<presence to='eve@" DOMAIN "/r1'><show>chat</show></presence>");
	cli_send(a, "<presence to='bob@" DOMAIN "'/>");
	pump();
	p = elem(e, cli_take(e), "<presence");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	expect_attr(p, "to", "eve@" DOMAIN "/r1");
	elem(b, cli_take(b), "<presence");
	/* Unavailable to bob directly: he leaves the list. */
	cli_send(a, "<presence type='unavailable' to='bob@" DOMAIN "'/>");
	pump();
	expect_attr(elem(b, cli_take(b), "<presence"), "type", "unavailable");
	/* Going unavailable: eve is told, bob not twice. */
	cli_send(a, "<presence type='unavailable'/>");
	pump();
	p = elem(e, cli_take(e), "<presence");
	expect_attr(p, "type", "unavailable");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	assert_string_equal(cli_take(b), "");
}

/* ---- 4. to the control plane: offline messages, iqs, subscriptions ------------------ */

static void test_control_requests(void **state)
{
	(void)state;
	struct cli *b = login(1, "bob", "hunter2", "r1", false);
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct req *r;
	unsigned k = 0;

	/* No available resource: offline storage (RFC 6121 8.5.2.1.1). */
	cli_send(a, "<message to='bob@" DOMAIN "' type='chat' id='o1'><body>off1</body></message>");
	cli_send(a, "<message to='nobody@" DOMAIN "' id='o2'><body>off2</body></message>");
	cli_send(a, "<message to='bob@" DOMAIN "/gone' type='normal' id='o3'><body>off3</body></message>");
	cli_send(a, "<message to='bob@" DOMAIN "' type='headline'><body>h</body></message>");
	pump();
	assert_string_equal(cli_take(a), "");
	assert_string_equal(cli_take(b), "");
	const char *bodies[] = { "off1", "off2", "off3" };
	for (int i = 0; i < 3; i++) {
		r = req_find(IM_REQ_STANZA, bodies[i], &k);
		if (!r)
			fail_msg("no offline request for %s", bodies[i]);
		assert_string_equal(r->jid, "alice@" DOMAIN "/r1");
		expect_attr(r->stanza, "from", "alice@" DOMAIN "/r1");
	}
	assert_null(req_find(IM_REQ_STANZA, "<body>h</body>", NULL));
	/* A bound (unavailable) full JID still gets it directly (8.5.3.1). */
	cli_send(a, "<message to='bob@" DOMAIN "/r1' type='chat'><body>direct</body></message>");
	pump();
	HAS(cli_take(b), "<body>direct</body>");

	/* iqs to the server, to a bare JID, without 'to': the control plane;
	 * XEP-0199 pings stay on the worker. */
	unsigned before = req_count(IM_REQ_STANZA);
	cli_send(a, "<iq to='" DOMAIN "' type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>");
	cli_send(a, "<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>");
	cli_send(a, "<iq to='bob@" DOMAIN "' type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>");
	cli_send(a, "<iq to='alice@" DOMAIN "' type='get' id='v2'><vCard xmlns='vcard-temp'/></iq>");
	cli_send(a, "<iq to='" DOMAIN "' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
	cli_send(a, "<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>");
	cli_send(a, "<iq to='" DOMAIN "' type='result' id='x1'/>");
	pump();
	assert_int_equal(req_count(IM_REQ_STANZA), before + 4);
	const char *ids[] = { "d1", "r1", "v1", "v2" };
	for (int i = 0; i < 4; i++) {
		char want[16];
		snprintf(want, sizeof(want), "id='%s'", ids[i]);
		r = req_find(IM_REQ_STANZA, want, NULL);
		if (!r)
			fail_msg("no request for iq %s", ids[i]);
		expect_attr(r->stanza, "from", "alice@" DOMAIN "/r1");
	}
	r = req_find(IM_REQ_STANZA, "id='d1'", NULL);
	expect_attr(r->stanza, "to", DOMAIN);
	const char *t = cli_take(a);
	HAS(t, "type='result' id='p1'");
	HAS(t, "type='result' id='p2'");
	assert_null(strstr(t, "service-unavailable"));
	assert_string_equal(cli_take(b), "");

	/* Subscription presence: the control plane runs the state machine. */
	cli_send(a, "<presence to='bob@" DOMAIN "' type='subscribe'/>");
	cli_send(a, "<presence to='bob@" DOMAIN "/r1' type='subscribed'/>");
	cli_send(a, "<presence to='someone@remote.example' type='unsubscribe'/>");
	pump();
	assert_non_null(req_find(IM_REQ_STANZA, "type='subscribe'", NULL));
	r = req_find(IM_REQ_STANZA, "type='subscribed'", NULL);
	assert_non_null(r);
	expect_attr(r->stanza, "to", "bob@" DOMAIN "/r1");
	assert_non_null(req_find(IM_REQ_STANZA, "type='unsubscribe'", NULL));
	assert_string_equal(cli_take(b), "");
	assert_string_equal(cli_take(a), "");
}

/* ---- 5. privacy and blocking -------------------------------------------------------- */

static void test_privacy(void **state)
{
	(void)state;
	rule("alice@" DOMAIN, IM_MATCH_JID, IM_RULE_DENY | IM_RULE_BLOCKCMD, 0, 0, "bob@" DOMAIN);
	rule("alice@" DOMAIN, IM_MATCH_JID, IM_RULE_DENY | IM_RULE_BLOCKCMD, 0, 0, "eve@" DOMAIN "/r1");
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	struct cli *e = login(0, "eve", "pw", "r1", true);
	struct cli *c = login(0, "carol", "pw", "r1", true);
	struct cli *a = login(0, "alice", "secret", "r1", true);
	const char *t, *p;

	assert_true(a->s->imf & IMG_RULES);
	assert_false(b->s->imf & IMG_RULES);
	/* Outbound to a blocked JID (XEP-0191 3.4): not-acceptable + <blocked/>. */
	cli_send(a, "<message to='bob@" DOMAIN "/r1' type='chat' id='m1'><body>x</body></message>");
	pump();
	p = elem(a, cli_take(a), "<message");
	expect_attr(p, "type", "error");
	expect_attr(p, "id", "m1");
	HAS(one(p, "message"), "<not-acceptable xmlns='" NS_STANZAS "'/><blocked xmlns='urn:xmpp:blocking:errors'/>");
	assert_string_equal(cli_take(b), "");
	/* Inbound, across the ring: message and iq bounce, presence vanishes. */
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat' id='m2'><body>y</body></message>");
	cli_send(b, "<iq to='alice@" DOMAIN "/r1' type='get' id='q1'><query xmlns='jabber:iq:version'/></iq>");
	cli_send(b, "<presence to='alice@" DOMAIN "/r1'/>");
	cli_send(b, "<message to='alice@" DOMAIN "' type='chat' id='m3'><body>z</body></message>");
	pump();
	assert_string_equal(cli_take(a), "");
	t = cli_take(b);
	p = elem(b, t, "id='m2'");
	HAS(one(strstr(t, "<message"), "message"), "<service-unavailable xmlns='" NS_STANZAS "'/>");
	HAS(t, "id='q1'");
	HAS(t, "id='m3'");
	assert_int_equal((int)(strstr(strstr(t, "id='q1'"), "service-unavailable") != NULL), 1);
	HASNT(t, "<presence");
	HASNT(t, "blocked");
	/* Inbound on the same worker (a full JID rule: eve/r1 only). */
	cli_send(e, "<message to='alice@" DOMAIN "/r1' type='chat' id='m4'><body>w</body></message>");
	pump();
	p = elem(e, cli_take(e), "<message");
	expect_attr(p, "type", "error");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	assert_string_equal(cli_take(a), "");
	/* Others pass, both ways. */
	cli_send(c, "<message to='alice@" DOMAIN "/r1' type='chat'><body>from-carol</body></message>");
	cli_send(a, "<message to='carol@" DOMAIN "/r1' type='chat'><body>to-carol</body></message>");
	pump();
	HAS(cli_take(a), "from-carol");
	HAS(cli_take(c), "to-carol");

	/* New rules (XEP-0016): messages from bob denied, iqs allowed; a
	 * push goes out only once the block list was asked for. */
	ev_send(a, IM_SF_BLOCKLIST, 0, "<iq type='result' id='bl1'/>");
	p = elem(a, cli_take(a), "<iq");
	expect_attr(p, "to", "alice@" DOMAIN "/r1");
	FK.nrules = 0;
	rule("alice@" DOMAIN, IM_MATCH_JID, IM_RULE_DENY, IM_KIND_MESSAGE, 0, "bob@" DOMAIN);
	uint8_t buf[512];
	struct im_rules_hdr rh = { 0, 0 };
	size_t off = put_rules(buf, sizeof(rh), "alice@" DOMAIN, &rh.nrules);
	memcpy(buf, &rh, sizeof(rh));
	const char *push = "<iq type='set' id='push1'><block xmlns='urn:xmpp:blocking'/></iq>";
	event(a, IM_EV_RULES, buf, off, push, strlen(push));
	p = elem(a, cli_take(a), "id='push1'");
	HAS(t = cli_take(a), "");
	cli_send(b, "<iq to='alice@" DOMAIN "/r1' type='get' id='q2'><query xmlns='jabber:iq:version'/></iq>");
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat' id='m5'><body>v</body></message>");
	pump();
	t = cli_take(a);
	HAS(t, "id='q2'");
	HASNT(t, "id='m5'");
	p = elem(b, cli_take(b), "<message");
	HAS(one(p, "message"), "service-unavailable");
	/* Outbound, a message-only item does not block (XEP-0016 2.1). */
	cli_send(a, "<message to='bob@" DOMAIN "/r1' type='chat'><body>ok-now</body></message>");
	pump();
	HAS(cli_take(b), "ok-now");
	/* Without rules, nothing looks at the session's deliveries. */
	struct im_rules_hdr none = { 0, 0 };
	event(a, IM_EV_RULES, &none, sizeof(none), NULL, 0);
	assert_false(a->s->imf & IMG_RULES);
}

/* A XEP-0016 subscription item: deny those without a subscription. */
static void test_privacy_subscription_rule(void **state)
{
	(void)state;
	contact("alice@" DOMAIN, "bob@" DOMAIN, IM_SUB_TO | IM_SUB_FROM);
	rule("alice@" DOMAIN, IM_MATCH_SUB, IM_RULE_DENY, IM_KIND_MESSAGE, 0, NULL);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	struct cli *e = login(1, "eve", "pw", "r1", true);
	struct cli *a = login(0, "alice", "secret", "r1", true);

	cli_take(a);
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat'><body>friend</body></message>");
	cli_send(e, "<message to='alice@" DOMAIN "/r1' type='chat' id='s1'><body>stranger</body></message>");
	pump();
	const char *t = cli_take(a);
	HAS(t, "friend");
	HASNT(t, "stranger");
	HAS(cli_take(e), "service-unavailable");
	assert_int_equal(im_check_in(a->s, IM_KIND_MESSAGE, "bob@" DOMAIN "/x", strlen("bob@" DOMAIN "/x")), IM_ALLOW);
	assert_int_equal(im_check_in(a->s, IM_KIND_MESSAGE, "x@y", 3), IM_DENY);
	assert_int_equal(im_check_in(a->s, IM_KIND_IQ, "x@y", 3), IM_ALLOW);
}

/* ---- 6. XEP-0280 carbons --------------------------------------------------------------- */

static void test_carbons(void **state)
{
	(void)state;
	struct cli *a1 = login(0, "alice", "secret", "r1", true);
	struct cli *a2 = login(1, "alice", "secret", "r2", true);
	struct cli *a3 = login(0, "alice", "secret", "r3", true);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	const char *t, *p;

	assert_int_equal(atomic_load(&F->srv->carbons), 0);
	ev_send(a2, IM_SF_CARBONS, 0, "<iq type='result' id='c1'/>");
	ev_send(a1, IM_SF_CARBONS, 0, NULL);
	assert_int_equal(atomic_load(&F->srv->carbons), 2);
	p = elem(a2, cli_take(a2), "<iq");
	expect_attr(p, "to", "alice@" DOMAIN "/r2");
	expect_attr(p, "id", "c1");
	const struct route_snap *snap = route_lookup(F->srv->routes, "alice@" DOMAIN, strlen("alice@" DOMAIN));
	assert_non_null(snap);
	assert_int_equal(snap->ncarbons, 2);
	cli_take(a1);
	cli_take(a3);

	/* Received: to r1; r2 gets a copy, r3 (carbons off) nothing. */
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat' id='k1'><body>to-r1</body></message>");
	pump();
	HAS(cli_take(a1), "<body>to-r1</body>");
	HASNT(a1->text, "<received");
	assert_string_equal(cli_take(a3), "");
	t = cli_take(a2);
	p = elem(a2, t, "<message");
	expect_attr(p, "from", "alice@" DOMAIN);
	expect_attr(p, "to", "alice@" DOMAIN "/r2");
	expect_attr(p, "type", "chat");
	HAS(t, "<received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'");
	HAS(t, "from='bob@" DOMAIN "/r1'");
	HAS(t, "<body>to-r1</body></message></forwarded></received></message>");

	/* Sent: from r3; r1 and r2 get copies, r3 none. */
	cli_send(a3, "<message to='bob@" DOMAIN "/r1' type='chat' id='k2'><body>from-r3</body></message>");
	pump();
	HAS(cli_take(b), "from-r3");
	assert_string_equal(cli_take(a3), "");
	for (int i = 0; i < 2; i++) {
		struct cli *x = i ? a2 : a1;
		t = cli_take(x);
		HAS(t, "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>");
		HAS(t, "to='bob@" DOMAIN "/r1'");
		HAS(t, "<body>from-r3</body>");
	}

	/* <private/> and no-copy: no copies; neither for groupchat or headline. */
	cli_send(a3, "<message to='bob@" DOMAIN "/r1' type='chat'><body>p1</body><private xmlns='urn:xmpp:carbons:2'/>"
		     "<no-copy xmlns='urn:xmpp:hints'/></message>");
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat'><body>p2</body><no-copy xmlns='urn:xmpp:hints'/></message>");
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='headline'><body>p3</body></message>");
	/* normal without a body (nothing for IM): not copied; with a receipt: copied */
	cli_send(b, "<message to='alice@" DOMAIN "/r1'><x xmlns='jabber:x:oob'/></message>");
	cli_send(b, "<message to='alice@" DOMAIN "/r1' id='rc'><received xmlns='urn:xmpp:receipts' id='k1'/></message>");
	pump();
	t = cli_take(a2);
	HASNT(t, "p1");
	HASNT(t, "p2");
	HASNT(t, "p3");
	HASNT(t, "oob");
	HAS(t, "urn:xmpp:receipts");

	/* To the bare JID: every resource (all priority 0) got it: no copies. */
	cli_take(a1);
	cli_send(b, "<message to='alice@" DOMAIN "' type='chat'><body>bare</body></message>");
	pump();
	t = cli_take(a2);
	HAS(t, "<body>bare</body>");
	HASNT(t, "carbons");

	/* Disabled: nothing more. */
	ev_send(a2, 0, IM_SF_CARBONS, NULL);
	assert_int_equal(atomic_load(&F->srv->carbons), 1);
	cli_send(b, "<message to='alice@" DOMAIN "/r1' type='chat'><body>after</body></message>");
	pump();
	assert_string_equal(cli_take(a2), "");
	/* A session that leaves with carbons on no longer counts. */
	cli_send(a1, "</stream:stream>");
	pump();
	assert_int_equal(atomic_load(&F->srv->carbons), 0);
}

/* ---- 7. XEP-0352 client state indication ---------------------------------------------- */

static void test_csi(void **state)
{
	(void)state;
	contact("alice@" DOMAIN, "bob@" DOMAIN, IM_SUB_FROM);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	struct cli *e = login(0, "eve", "pw", "r1", true);
	struct cli *a = login(0, "alice", "secret", "r1", true);
	const char *t;

	cli_take(b);
	cli_send(b, "<inactive xmlns='urn:xmpp:csi:0'/>");
	pump();
	assert_string_equal(cli_take(b), "");
	assert_true(b->s->imf & IMG_INACTIVE);
	cli_send(a, "<presence><show>away</show></presence>");
	cli_send(a, "<presence><show>xa</show></presence>");
	cli_send(e, "<presence to='bob@" DOMAIN "/r1'><status>eve</status></presence>");
	cli_send(a, "<presence><show>dnd</show></presence>");
	pump();
	assert_string_equal(cli_take(b), "");
	/* A message: the latest presence per sender first, then it. */
	cli_send(e, "<message to='bob@" DOMAIN "/r1' type='chat'><body>wake</body></message>");
	pump();
	t = cli_take(b);
	HASNT(t, "<show>away</show>");
	HASNT(t, "<show>xa</show>");
	const char *eve = strstr(t, "<status>eve</status>"), *dnd = strstr(t, "<show>dnd</show>");
	const char *msg = strstr(t, "<body>wake</body>");
	if (!eve || !dnd || !msg || msg < eve || msg < dnd)
		fail_msg("held presence not flushed in order before the message: \"%s\"", t);
	/* Held again, flushed by <active/>. */
	cli_send(a, "<presence><show>chat</show></presence>");
	pump();
	assert_string_equal(cli_take(b), "");
	cli_send(b, "<active xmlns='urn:xmpp:csi:0'/>");
	pump();
	HAS(cli_take(b), "<show>chat</show>");
	assert_false(b->s->imf & (IMG_INACTIVE | IMG_HELD));
	/* Active: straight through. */
	cli_send(a, "<presence/>");
	pump();
	HAS(cli_take(b), "<presence");
}

/* More senders than csi_max_held (4): everything held goes out. */
static void test_csi_bound(void **state)
{
	(void)state;
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	struct cli *s[5];
	const char *users[5] = { "alice", "carol", "dave", "eve", "alice" };
	const char *pw[5] = { "secret", "pw", "pw", "pw", "secret" };
	for (int i = 0; i < 5; i++) {
		char res[8];
		snprintf(res, sizeof(res), "r%d", i);
		s[i] = login(0, users[i], pw[i], res, false);
	}
	cli_send(b, "<inactive xmlns='urn:xmpp:csi:0'/>");
	pump();
	cli_take(b);
	for (int i = 0; i < 4; i++)
		cli_send(s[i], "<presence to='bob@" DOMAIN "/r1'/>");
	pump();
	assert_string_equal(cli_take(b), "");
	cli_send(s[4], "<presence to='bob@" DOMAIN "/r1'/>");
	pump();
	const char *t = cli_take(b);
	unsigned n = 0;
	for (const char *p = t; (p = strstr(p, "<presence")); p++)
		n++;
	assert_int_equal(n, 5);
}

/* ---- 8. XEP-0199 idle pings ---------------------------------------------------------- */

static struct tweak fast_ping = { .ping_idle_ms = 150, .ping_timeout_ms = 200 };

static void test_idle_ping(void **state)
{
	(void)state;
	struct cli *a = login(0, "alice", "secret", "r1", true);
	char id[64];

	assert_true(pump_until_text(a, "urn:xmpp:ping", 3000));
	const char *p = elem(a, cli_take(a), "<iq");
	expect_attr(p, "from", DOMAIN);
	expect_attr(p, "to", "alice@" DOMAIN "/r1");
	expect_attr(p, "type", "get");
	assert_true(attr_of(p, "id", id, sizeof(id)));
	char pong[160];
	snprintf(pong, sizeof(pong), "<iq to='" DOMAIN "' type='result' id='%s'/>", id);
	cli_send(a, pong);
	pump();
	assert_string_equal(cli_take(a), "");   /* the answer ends on the worker */
	assert_true(cli_alive(a));
	/* Silent again: pinged, then cut off. */
	assert_true(pump_until_text(a, "urn:xmpp:ping", 3000));
	assert_true(pump_until_closed(a, 3000));
	expect_stream_error(a, cli_take(a), "connection-timeout");
}

/* ---- 9. events: contacts, roster pushes, presence to a JID ---------------------------- */

static void test_contact_events(void **state)
{
	(void)state;
	struct cli *c = login(1, "carol", "pw", "r1", true);
	struct cli *e = login(1, "eve", "pw", "r1", true);
	struct cli *a = login(0, "alice", "secret", "r1", true);
	const char *push = "<iq type='set' id='rp1'><query xmlns='jabber:iq:roster'>"
			   "<item jid='carol@" DOMAIN "' subscription='from'/></query></iq>";
	uint8_t hb[64];
	struct im_contact ct = { IM_SUB_FROM, 0, (uint16_t)strlen("carol@" DOMAIN) };
	size_t hl = put_rec(hb, 0, &ct, sizeof(ct), "carol@" DOMAIN, ct.len);

	cli_take(a);
	/* Not asked for the roster: the contact changes, no push. */
	event(a, IM_EV_CONTACT, hb, hl, push, strlen(push));
	assert_string_equal(cli_take(a), "");
	assert_int_equal(im_contact_sub(a->s, "carol@" DOMAIN, strlen("carol@" DOMAIN)), IM_SUB_FROM);
	cli_send(a, "<presence><show>away</show></presence>");
	pump();
	HAS(cli_take(c), "<show>away</show>");
	/* With IM_SF_ROSTER: pushes, with our full JID stamped. */
	ev_send(a, IM_SF_ROSTER, 0, NULL);
	ct.sub = IM_SUB_REMOVE;
	hl = put_rec(hb, 0, &ct, sizeof(ct), "carol@" DOMAIN, ct.len);
	event(a, IM_EV_CONTACT, hb, hl, push, strlen(push));
	const char *p = elem(a, cli_take(a), "<iq");
	expect_attr(p, "to", "alice@" DOMAIN "/r1");
	expect_attr(p, "id", "rp1");
	assert_int_equal(im_contact_sub(a->s, "carol@" DOMAIN, strlen("carol@" DOMAIN)), 0);
	cli_send(a, "<presence><show>xa</show></presence>");
	pump();
	assert_string_equal(cli_take(c), "");

	/* IM_EV_PRESENCE_TO: current presence, unavailable, a probe without
	 * authorisation (nothing). */
	struct im_presence_to pt = { 0, (uint16_t)strlen("eve@" DOMAIN) };
	event(a, IM_EV_PRESENCE_TO, &pt, sizeof(pt), "eve@" DOMAIN, pt.len);
	p = elem(e, cli_take(e), "<presence");
	expect_attr(p, "from", "alice@" DOMAIN "/r1");
	expect_attr(p, "to", "eve@" DOMAIN);
	HAS(one(p, "presence"), "<show>xa</show>");
	pt.flags = IM_PT_PROBE;
	event(a, IM_EV_PRESENCE_TO, &pt, sizeof(pt), "eve@" DOMAIN, pt.len);
	assert_string_equal(cli_take(e), "");
	pt.flags = IM_PT_UNAVAILABLE;
	event(a, IM_EV_PRESENCE_TO, &pt, sizeof(pt), "eve@" DOMAIN, pt.len);
	expect_attr(elem(e, cli_take(e), "<presence"), "type", "unavailable");
}

/* An IM state larger than a ring record arrives in fragments. */
static void test_big_state(void **state)
{
	(void)state;
	FK.big_state = 20000;   /* ~1.3 MB of contacts */
	contact("alice@" DOMAIN, "bob@" DOMAIN, IM_SUB_TO);
	struct ring *r = &F->srv->rings[(size_t)NWORKERS * (NWORKERS + 1) + 0];
	assert_true((size_t)FK.big_state * 56 > ring_max_record(r));
	struct cli *a = login(0, "alice", "secret", "r1", true);
	assert_int_equal(im_contact_sub(a->s, "bob@" DOMAIN, strlen("bob@" DOMAIN)), IM_SUB_TO);
	const char *last = "filler-contact-number-019999@elsewhere.example";
	assert_int_equal(im_contact_sub(a->s, last, strlen(last)), IM_SUB_TO);
	assert_int_equal(F->srv->workers[0].ctl_frag.len, 0);
}

/* ---- 10. export / import (XEP-0198 resumption elsewhere) ------------------------------- */

static void test_export_import(void **state)
{
	(void)state;
	contact("alice@" DOMAIN, "bob@" DOMAIN, IM_SUB_TO | IM_SUB_FROM);
	contact("alice@" DOMAIN, "carol@" DOMAIN, IM_SUB_PENDING_OUT);
	rule("alice@" DOMAIN, IM_MATCH_JID, IM_RULE_DENY | IM_RULE_BLOCKCMD, 0, 0, "eve@" DOMAIN);
	struct cli *a = login(0, "alice", "secret", "r1", true);
	struct cli *a2 = login(1, "alice", "secret", "r2", false);
	struct cli *b = login(1, "bob", "hunter2", "r1", true);
	uint8_t *blob;
	size_t len;

	cli_send(a, "<presence><status>exported</status></presence>");
	cli_send(a, "<presence to='dave@" DOMAIN "/x'/>");
	pump();
	ev_send(a, IM_SF_ROSTER | IM_SF_CARBONS, 0, NULL);
	assert_int_equal(im_sess_export(a->s, &blob, &len), 0);
	assert_int_equal(im_sess_import(a2->s, blob, len), 0);
	assert_int_equal(im_contact_sub(a2->s, "bob@" DOMAIN, strlen("bob@" DOMAIN)), IM_SUB_TO | IM_SUB_FROM);
	assert_int_equal(im_contact_sub(a2->s, "carol@" DOMAIN, strlen("carol@" DOMAIN)), IM_SUB_PENDING_OUT);
	assert_int_equal(im_check_in(a2->s, IM_KIND_MESSAGE, "eve@" DOMAIN "/r", strlen("eve@" DOMAIN "/r")),
			 IM_DENY_BLOCKED);
	assert_true(a2->s->imf & IMG_RULES);
	assert_int_equal(atomic_load(&F->srv->carbons), 2);
	/* The imported last presence is what the new session answers probes with. */
	a2->s->flags |= SF_AVAILABLE;
	struct im_presence_to pt = { IM_PT_PROBE, (uint16_t)strlen("bob@" DOMAIN "/r1") };
	cli_take(b);
	event(a2, IM_EV_PRESENCE_TO, &pt, sizeof(pt), "bob@" DOMAIN "/r1", pt.len);
	const char *p = elem(b, cli_take(b), "<presence");
	expect_attr(p, "from", "alice@" DOMAIN "/r2");
	HAS(one(p, "presence"), "<status>exported</status>");
	/* Truncated or foreign bytes are refused. */
	assert_int_equal(im_sess_import(a2->s, blob, len - 3), -1);
	blob[0] ^= 1;
	assert_int_equal(im_sess_import(a2->s, blob, len), -1);
	free(blob);
}

/* ---- 11. struct im_out: routing from the control plane ------------------------------- */

static void test_im_out(void **state)
{
	(void)state;
	struct cli *b1 = login(1, "bob", "hunter2", "r1", true);
	struct cli *b2 = login(0, "bob", "hunter2", "r2", false);
	struct cli *a = login(0, "alice", "secret", "r1", true);
	const struct im_out *o = FK.out;
	const char *m1 = "<message from='alice@" DOMAIN "/r1' to='bob@" DOMAIN "' type='chat'><body>o1</body></message>";
	const char *m2 = "<message from='" DOMAIN "' to='bob@" DOMAIN "/r2' type='chat'><body>o2</body></message>";
	const char *m3 = "<message from='" DOMAIN "' to='nobody@" DOMAIN "' type='chat'><body>o3</body></message>";
	const char *p1 = "<presence from='alice@" DOMAIN "/r1' to='bob@" DOMAIN "' type='subscribe'/>";

	cli_take(b1);
	cli_take(b2);
	assert_non_null(o);
	assert_int_equal(o->available(o->srv, "bob@" DOMAIN, strlen("bob@" DOMAIN), false), 1);
	assert_int_equal(o->route(o->srv, m1, strlen(m1)), 1);
	assert_int_equal(o->route(o->srv, m2, strlen(m2)), 1);
	assert_int_equal(o->route(o->srv, m3, strlen(m3)), 0);
	assert_int_equal(o->route(o->srv, p1, strlen(p1)), 1);
	pump();
	const char *t = cli_take(b1);
	HAS(t, "<body>o1</body>");
	HAS(t, "type='subscribe'");
	HAS(cli_take(b2), "<body>o2</body>");
	struct im_send_hdr h = { 0, 0 };
	assert_int_equal(o->user_event(o->srv, "bob@" DOMAIN, strlen("bob@" DOMAIN), IM_EV_SEND, &h, sizeof(h)), 2);
	const char *s1 = "<iq type='result' id='ts1'/>";
	o->to_session(o->srv, hof(a), s1, strlen(s1));
	pump();
	assert_string_equal(cli_take(a), s1);
	assert_int_equal(o->kick(o->srv, "bob@" DOMAIN "/r2", strlen("bob@" DOMAIN "/r2"), "not-authorized"), 1);
	pump();
	expect_stream_error(b2, cli_take(b2), "not-authorized");
	assert_true(cli_alive(b1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bind_waits_for_state, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_bind_no_account, fx_setup, fx_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_preauth_register, fx_setup, fx_teardown, &with_register),
		cmocka_unit_test_setup_teardown(test_presence_broadcast, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_negative_priority_offline, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_presence_disconnect, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_presence_own_resources, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_directed_presence, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_control_requests, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_privacy, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_privacy_subscription_rule, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_carbons, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_csi, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_csi_bound, fx_setup, fx_teardown),
		cmocka_unit_test_prestate_setup_teardown(test_idle_ping, fx_setup, fx_teardown, &fast_ping),
		cmocka_unit_test_setup_teardown(test_contact_events, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_big_state, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_export_import, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_im_out, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
