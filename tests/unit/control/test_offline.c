/* control/offline.c: offline storage with XEP-0203 delay, the quota and the
 * RFC 6121 8.5.2.2.1 errors, XEP-0160 delivery in order at initial
 * presence, XEP-0013 flexible retrieval (disco count and headers, fetch,
 * view, remove, purge, no flood afterwards), XEP-0198 leftovers re-routed
 * or stored, and XEP-0012 last activity. Real dispatcher (im_serve), real
 * LMDB store, a fake struct im_out that records what was posted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "im_fakes.h"
#include "control/account.h"
#include "store/store.h"

#define JULIET "juliet@" FX_DOMAIN
#define ROMEO  "romeo@" FX_DOMAIN

static int setup(void **state)
{
	struct im_fx *f = fx_new();
	assert_non_null(f);
	fake_route_takes = fake_user_sessions = fake_available = 0;   /* nobody online */
	assert_int_equal(fx_add_account(f, JULIET, "capulet"), ACCOUNT_OK);
	assert_int_equal(fx_add_account(f, ROMEO, "montague"), ACCOUNT_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

static void msg(struct im_fx *f, const char *to, const char *type, const char *body)
{
	char st[1024];
	snprintf(st, sizeof(st), "<message from='" ROMEO "/orchard' to='%s'%s%s%s id='m-%s'><body>%s</body></message>",
		 to, type ? " type='" : "", type ? type : "", type ? "'" : "", body, body);
	fx_req(f, IM_REQ_STANZA, 0, to, 0, st);
}

/* The one error posted, of condition cond. */
static void assert_error(struct im_fx *f, const char *cond)
{
	assert_int_equal(fake_nposts, 1);
	assert_true(fake_posts[0].kind == POST_SESSION || fake_posts[0].kind == POST_ROUTE);
	assert_non_null(strstr(fake_posts[0].data, "type='error'"));
	char c[96];
	snprintf(c, sizeof(c), "<%s xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>", cond);
	assert_non_null(strstr(fake_posts[0].data, c));
}

struct first {
	char buf[4096];
	size_t len;
	uint64_t seq;
	int n;
};

static int first_cb(void *arg, uint64_t seq, const void *val, size_t vlen)
{
	struct first *x = arg;
	if (x->n++ == 0) {
		x->len = vlen < sizeof(x->buf) - 1 ? vlen : sizeof(x->buf) - 1;
		memcpy(x->buf, val, x->len);
		x->buf[x->len] = '\0';
		x->seq = seq;
	}
	return 0;
}

static void test_store_with_delay(void **state)
{
	struct im_fx *f = *state;

	msg(f, JULIET, "chat", "one");
	assert_int_equal(fake_nposts, 0);   /* stored: no answer */
	assert_int_equal(fx_queue_len(f, JULIET), 1);
	struct first x = { .n = 0 };
	assert_int_equal(store_queue_iter(f->st, NULL, STORE_T_OFFLINE, JULIET, strlen(JULIET), first_cb, &x), STORE_OK);
	assert_non_null(strstr(x.buf, "<body>one</body>"));
	assert_non_null(strstr(x.buf, "<delay xmlns='urn:xmpp:delay' from='" FX_DOMAIN "' stamp='"));
	assert_non_null(strstr(x.buf, ">Offline Storage</delay></message>"));
	/* The stamp is XEP-0082 UTC: 2026-11-22T17:20:00Z */
	const char *s = strstr(x.buf, "stamp='") + 7;
	assert_int_equal(s[4], '-');
	assert_int_equal(s[10], 'T');
	assert_int_equal(s[19], 'Z');

	/* An empty element gets the delay too; no type is 'normal'; a full
	 * JID's user gets it. */
	fx_req(f, IM_REQ_STANZA, 0, JULIET, 0,
	       "<message from='" ROMEO "/orchard' to='" JULIET "/gone'><subject>s</subject></message>");
	assert_int_equal(fake_nposts, 0);
	assert_int_equal(fx_queue_len(f, JULIET), 2);
}

static void test_errors_and_types(void **state)
{
	struct im_fx *f = *state;

	/* RFC 6121 8.5.1: no such user. */
	msg(f, "nobody@" FX_DOMAIN, "chat", "x");
	assert_error(f, "service-unavailable");
	assert_non_null(strstr(fake_posts[0].data, "to='" ROMEO "/orchard'"));
	fake_posts_clear();
	/* 8.5.2.2.1: groupchat bounced, headline and error ignored. */
	msg(f, JULIET, "groupchat", "x");
	assert_error(f, "service-unavailable");
	fake_posts_clear();
	msg(f, JULIET, "headline", "x");
	msg(f, JULIET, "error", "x");
	assert_int_equal(fake_nposts, 0);
	/* XEP-0160 3: chat states alone are not stored (and not bounced). */
	fx_req(f, IM_REQ_STANZA, 0, JULIET, 0,
	       "<message from='" ROMEO "/orchard' to='" JULIET "' type='chat'>"
	       "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>");
	assert_int_equal(fake_nposts, 0);
	/* XEP-0334 no-store: bounced, not stored. */
	fx_req(f, IM_REQ_STANZA, 0, JULIET, 0,
	       "<message from='" ROMEO "/orchard' to='" JULIET "' type='chat'><body>b</body>"
	       "<no-store xmlns='urn:xmpp:hints'/></message>");
	assert_error(f, "service-unavailable");
	fake_posts_clear();
	assert_int_equal(fx_queue_len(f, JULIET), 0);
}

static void test_quota(void **state)
{
	struct im_fx *f = *state;

	f->cfg->im.offline_max = 2;
	msg(f, JULIET, "chat", "1");
	msg(f, JULIET, NULL, "2");
	assert_int_equal(fake_nposts, 0);
	msg(f, JULIET, "chat", "3");
	/* XEP-0160 2: a full queue is <service-unavailable/>. */
	assert_error(f, "service-unavailable");
	assert_non_null(strstr(fake_posts[0].data, "id='m-3'"));
	assert_int_equal(fx_queue_len(f, JULIET), 2);
	fake_posts_clear();
	/* 0: storage off. */
	f->cfg->im.offline_max = 0;
	msg(f, ROMEO, "chat", "4");
	fake_posts_clear();
	assert_int_equal(fx_queue_len(f, ROMEO), 0);
	f->cfg->im.offline_max = 1000;
}

static void test_flood_in_order(void **state)
{
	struct im_fx *f = *state;
	char body[64];

	for (int i = 0; i < 5; i++) {
		snprintf(body, sizeof(body), "b%d", i);
		msg(f, JULIET, "chat", body);
	}
	assert_int_equal(fake_nposts, 0);
	/* A negative priority does not get them (XEP-0160 2). */
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 7, JULIET "/balcony", IM_SF_AVAILABLE,
	       "<presence from='" JULIET "/balcony'><priority>-1</priority></presence>");
	assert_int_equal(fake_nposts, 0);
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 7, JULIET "/balcony", IM_SF_AVAILABLE,
	       "<presence from='" JULIET "/balcony'><priority>1</priority></presence>");
	int seen = 0;
	for (size_t i = 0; i < fake_nposts; i++) {
		if (fake_posts[i].kind != POST_EVENT || fake_posts[i].ev != IM_EV_SEND)
			continue;
		struct im_send_hdr h;
		const char *st = fx_send_stanza(&fake_posts[i], &h);
		assert_int_equal(fake_posts[i].handle, 7);
		snprintf(body, sizeof(body), "<body>b%d</body>", seen);
		assert_non_null(strstr(st, body));
		assert_non_null(strstr(st, "to='" JULIET "/balcony'"));
		assert_non_null(strstr(st, "from='" ROMEO "/orchard'"));
		assert_non_null(strstr(st, "urn:xmpp:delay"));
		assert_null(strstr(st, "to='" JULIET "'"));
		seen++;
	}
	assert_int_equal(seen, 5);
	assert_int_equal(fx_queue_len(f, JULIET), 0);
	fake_posts_clear();
	/* Nothing twice. */
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 8, JULIET "/pda", IM_SF_AVAILABLE, NULL);
	assert_int_equal(fake_nposts, 0);
}

/* An im_call as im_serve makes it, for the entry points services.c's
 * disco handlers call. */
static void call_on(struct im_fx *f, struct im_call *c, struct im_req *h, uint64_t handle, const char *jid,
		    uint32_t flags, const char *stanza, enum im_to to_kind)
{
	memset(c, 0, sizeof(*c));
	memset(h, 0, sizeof(*h));
	h->type = IM_REQ_STANZA;
	h->flags = flags;
	h->jid_len = (uint16_t)strlen(jid);
	h->len = (uint32_t)strlen(stanza);
	c->ctx = &f->ctx;
	c->out = &fake_out;
	c->handle = handle;
	c->req = h;
	c->jid = jid;
	c->jid_len = strlen(jid);
	c->bare_len = strchr(jid, '/') ? (size_t)(strchr(jid, '/') - jid) : strlen(jid);
	c->stanza = stanza;
	c->len = strlen(stanza);
	assert_int_equal(xml_view_build(&f->ctx.view, NULL, stanza, strlen(stanza)), 0);
	c->v = &f->ctx.view;
	c->to_kind = to_kind;
	c->domain = FX_DOMAIN;
	c->domain_len = strlen(FX_DOMAIN);
}

static void test_flex(void **state)
{
	struct im_fx *f = *state;
	struct im_call c;
	struct im_req h;

	msg(f, JULIET, "chat", "f0");
	msg(f, JULIET, "chat", "f1");
	msg(f, JULIET, "chat", "f2");
	fake_posts_clear();

	/* XEP-0013 2.2: the count, and the session is flagged. */
	call_on(f, &c, &h, 9, JULIET "/pda", 0,
		"<iq type='get' id='d1' from='" JULIET "/pda'><query xmlns='http://jabber.org/protocol/disco#info' "
		"node='http://jabber.org/protocol/offline'/></iq>", IM_TO_SELF);
	offline_disco_info(&c, c.v->info.child);
	assert_int_equal(fake_nposts, 2);
	assert_int_equal(fake_posts[0].kind, POST_EVENT);
	struct im_send_hdr sh;
	fx_send_stanza(&fake_posts[0], &sh);
	assert_int_equal(sh.set, IM_SF_OFFLINE_FLEX);
	assert_int_equal(fake_posts[0].len, sizeof(sh));
	assert_non_null(strstr(fake_posts[1].data, "<field var='number_of_messages'><value>3</value></field>"));
	assert_non_null(strstr(fake_posts[1].data, "type='result'"));
	assert_non_null(strstr(fake_posts[1].data, "category='automation' type='message-list'"));
	fake_posts_clear();

	/* 2.3: headers, node = the sequence numbers, name = the sender. */
	call_on(f, &c, &h, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX,
		"<iq type='get' id='d2'><query xmlns='http://jabber.org/protocol/disco#items' "
		"node='http://jabber.org/protocol/offline'/></iq>", IM_TO_SELF);
	offline_disco_items(&c, c.v->info.child);
	assert_int_equal(fake_nposts, 1);   /* already flagged: no second flag event */
	const char *items = fake_posts[0].data;
	assert_non_null(strstr(items, "name='" ROMEO "/orchard'"));
	assert_non_null(strstr(items, "jid='" JULIET "'"));
	char node[3][32];
	const char *p = items;
	for (int i = 0; i < 3; i++) {
		p = strstr(p, "node='");
		assert_non_null(p);
		p += 6;
		if (i == 0) {   /* the query's own node first */
			p = strstr(p, "node='");
			p += 6;
		}
		size_t n = strcspn(p, "'");
		memcpy(node[i], p, n);
		node[i][n] = '\0';
	}
	fake_posts_clear();

	/* Not the own account: forbidden. */
	call_on(f, &c, &h, 9, JULIET "/pda", 0,
		"<iq type='get' id='d3' to='" ROMEO "'><query xmlns='http://jabber.org/protocol/disco#items' "
		"node='http://jabber.org/protocol/offline'/></iq>", IM_TO_USER);
	offline_disco_items(&c, c.v->info.child);
	assert_error(f, "forbidden");
	fake_posts_clear();

	/* The flag makes initial presence deliver nothing (2.2). */
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX | IM_SF_AVAILABLE, NULL);
	assert_int_equal(fake_nposts, 0);
	/* ... nor to another resource while the flex one is there. */
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 10, JULIET "/laptop", IM_SF_AVAILABLE, NULL);
	assert_int_equal(fake_nposts, 0);

	/* 2.4 view one: the message with its node, then the result. */
	char st[512];
	snprintf(st, sizeof(st),
		 "<iq type='get' id='v1' from='" JULIET "/pda'><offline xmlns='http://jabber.org/protocol/offline'>"
		 "<item action='view' node='%s'/></offline></iq>", node[1]);
	fx_req(f, IM_REQ_STANZA, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX, st);
	assert_int_equal(fake_nposts, 2);
	assert_int_equal(fake_posts[0].kind, POST_EVENT);
	const char *m = fx_send_stanza(&fake_posts[0], &sh);
	assert_non_null(strstr(m, "<body>f1</body>"));
	char want[160];
	snprintf(want, sizeof(want), "<offline xmlns='http://jabber.org/protocol/offline'><item node='%s'/>", node[1]);
	assert_non_null(strstr(m, want));
	assert_non_null(strstr(m, "to='" JULIET "/pda'"));
	assert_int_equal(fake_posts[1].kind, POST_SESSION);
	assert_non_null(strstr(fake_posts[1].data, "type='result'"));
	assert_non_null(strstr(fake_posts[1].data, "id='v1'"));
	fake_posts_clear();
	/* A node that does not exist: item-not-found, nothing sent. */
	fx_req(f, IM_REQ_STANZA, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX,
	       "<iq type='get' id='v2'><offline xmlns='http://jabber.org/protocol/offline'>"
	       "<item action='view' node='999999'/></offline></iq>");
	assert_error(f, "item-not-found");
	fake_posts_clear();
	fx_req(f, IM_REQ_STANZA, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX,
	       "<iq type='get' id='v3'><offline xmlns='http://jabber.org/protocol/offline'>"
	       "<item action='view' node='not-a-node'/></offline></iq>");
	assert_error(f, "item-not-found");
	fake_posts_clear();
	/* An action that does not fit the type: bad-request. */
	fx_req(f, IM_REQ_STANZA, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX,
	       "<iq type='get' id='v4'><offline xmlns='http://jabber.org/protocol/offline'><purge/></offline></iq>");
	assert_error(f, "bad-request");
	fake_posts_clear();

	/* 2.6 fetch: all, in order, each with its node; nothing removed. */
	fx_req(f, IM_REQ_STANZA, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX,
	       "<iq type='get' id='f1'><offline xmlns='http://jabber.org/protocol/offline'><fetch/></offline></iq>");
	assert_int_equal(fake_count(POST_EVENT, 0), 3);
	for (int i = 0; i < 3; i++) {
		m = fx_send_stanza(&fake_posts[i], &sh);
		snprintf(want, sizeof(want), "<body>f%d</body>", i);
		assert_non_null(strstr(m, want));
		snprintf(want, sizeof(want), "<item node='%s'/>", node[i]);
		assert_non_null(strstr(m, want));
	}
	assert_non_null(strstr(fake_last(POST_SESSION, 0)->data, "type='result'"));
	assert_int_equal(fx_queue_len(f, JULIET), 3);
	fake_posts_clear();

	/* 2.5 remove two; one missing makes the whole request fail. */
	snprintf(st, sizeof(st),
		 "<iq type='set' id='r1'><offline xmlns='http://jabber.org/protocol/offline'>"
		 "<item action='remove' node='%s'/><item action='remove' node='999999'/></offline></iq>", node[0]);
	fx_req(f, IM_REQ_STANZA, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX, st);
	assert_error(f, "item-not-found");
	assert_int_equal(fx_queue_len(f, JULIET), 3);
	fake_posts_clear();
	snprintf(st, sizeof(st),
		 "<iq type='set' id='r2'><offline xmlns='http://jabber.org/protocol/offline'>"
		 "<item action='remove' node='%s'/><item action='remove' node='%s'/></offline></iq>", node[0], node[2]);
	fx_req(f, IM_REQ_STANZA, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX, st);
	assert_int_equal(fake_nposts, 1);
	assert_non_null(strstr(fake_posts[0].data, "type='result'"));
	assert_int_equal(fx_queue_len(f, JULIET), 1);
	fake_posts_clear();

	/* Another user's queue: forbidden. */
	fx_req(f, IM_REQ_STANZA, 11, ROMEO "/orchard", 0,
	       "<iq type='set' id='p0' to='" JULIET "'><offline xmlns='http://jabber.org/protocol/offline'><purge/>"
	       "</offline></iq>");
	assert_error(f, "forbidden");
	fake_posts_clear();
	assert_int_equal(fx_queue_len(f, JULIET), 1);

	/* 2.7 purge. */
	fx_req(f, IM_REQ_STANZA, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX,
	       "<iq type='set' id='p1'><offline xmlns='http://jabber.org/protocol/offline'><purge/></offline></iq>");
	assert_int_equal(fake_nposts, 1);
	assert_non_null(strstr(fake_posts[0].data, "type='result'"));
	assert_int_equal(fx_queue_len(f, JULIET), 0);
	fake_posts_clear();

	/* The flex session ends: later resources get the flood again. */
	msg(f, JULIET, "chat", "after");
	fx_req(f, IM_REQ_SESSION_END, 9, JULIET "/pda", IM_SF_OFFLINE_FLEX,
	       "<presence from='" JULIET "/pda' type='unavailable'/>");
	fake_posts_clear();
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 10, JULIET "/laptop", IM_SF_AVAILABLE, NULL);
	assert_int_equal(fake_count(POST_EVENT, 0), 1);
	assert_int_equal(fx_queue_len(f, JULIET), 0);
}

/* A flex session whose handle never ends here (it moved with XEP-0198
 * resumption) must not keep the flood off once the user is gone. */
static void test_flex_stale(void **state)
{
	struct im_fx *f = *state;
	struct im_call c;
	struct im_req h;

	msg(f, JULIET, "chat", "s0");
	call_on(f, &c, &h, 20, JULIET "/old", 0,
		"<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info' "
		"node='http://jabber.org/protocol/offline'/></iq>", IM_TO_SELF);
	offline_disco_info(&c, c.v->info.child);
	fake_posts_clear();
	/* Another resource ends while one is still available: kept. */
	fake_available = 1;
	fx_req(f, IM_REQ_SESSION_END, 21, JULIET "/other", 0, "<presence type='unavailable'/>");
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 22, JULIET "/new", IM_SF_AVAILABLE, NULL);
	assert_int_equal(fake_nposts, 0);
	/* The last one ends: the user is gone, so is the flex state. */
	fake_available = 0;
	fx_req(f, IM_REQ_SESSION_END, 22, JULIET "/new", 0, "<presence type='unavailable'/>");
	fake_posts_clear();
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 23, JULIET "/newer", IM_SF_AVAILABLE, NULL);
	assert_int_equal(fake_count(POST_EVENT, 0), 1);
	assert_int_equal(fx_queue_len(f, JULIET), 0);
}

/* A negative initial presence got nothing (test_flood_in_order); when the
 * resource goes non-negative the router posts IM_REQ_OFFLINE: the flood
 * comes then, and pending subscription requests are not asked for again. */
static void test_offline_after_priority(void **state)
{
	struct im_fx *f = *state;

	msg(f, JULIET, "chat", "late");
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 7, JULIET "/balcony", IM_SF_AVAILABLE,
	       "<presence from='" JULIET "/balcony'><priority>-1</priority></presence>");
	assert_int_equal(fake_nposts, 0);
	fx_req(f, IM_REQ_OFFLINE, 7, JULIET "/balcony", IM_SF_AVAILABLE,
	       "<presence from='" JULIET "/balcony'><priority>0</priority></presence>");
	assert_int_equal(fake_count(POST_EVENT, 0), 1);
	assert_non_null(strstr(fake_posts[0].data + sizeof(struct im_send_hdr), "<body>late</body>"));
	assert_int_equal(fx_queue_len(f, JULIET), 0);
}

/* XEP-0198 resumption gives a XEP-0013 session a new handle
 * (IM_REQ_SESSION_MOVED): the flex state follows, so the session's end
 * under the new handle ends it, and the next resource gets the flood. */
static void test_flex_moved(void **state)
{
	struct im_fx *f = *state;
	struct im_call c;
	struct im_req h;

	msg(f, JULIET, "chat", "m0");
	call_on(f, &c, &h, 20, JULIET "/pda", 0,
		"<iq type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#info' "
		"node='http://jabber.org/protocol/offline'/></iq>", IM_TO_SELF);
	offline_disco_info(&c, c.v->info.child);
	fake_posts_clear();
	uint64_t old = 20;
	memset(&h, 0, sizeof(h));
	h.type = IM_REQ_SESSION_MOVED;
	h.jid_len = (uint16_t)strlen(JULIET "/pda");
	h.len = sizeof(old);
	im_serve(&f->ctx, 30, &h, JULIET "/pda", (const char *)&old, &fake_out);
	assert_int_equal(fake_nposts, 0);
	/* Still one flex session of the user: no flood elsewhere. */
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 40, JULIET "/laptop", IM_SF_AVAILABLE, NULL);
	assert_int_equal(fake_nposts, 0);
	/* It ends, under its new handle, while the laptop stays. */
	fake_available = 1;
	fx_req(f, IM_REQ_SESSION_END, 30, JULIET "/pda", IM_SF_OFFLINE_FLEX, "<presence type='unavailable'/>");
	fake_posts_clear();
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 41, JULIET "/phone", IM_SF_AVAILABLE, NULL);
	assert_int_equal(fake_count(POST_EVENT, 0), 1);
	assert_int_equal(fx_queue_len(f, JULIET), 0);
}

/* Group commit: the offline messages of a burst share one batch, visible
 * (and durable) after im_flush; the quota counts what the batch holds; a
 * request other than an offline message commits the batch first (here an
 * initial presence, which must see the messages). */
static void test_group_commit(void **state)
{
	struct im_fx *f = *state;

	f->ctx.group_commit = true;
	f->cfg->im.offline_max = 3;
	msg(f, JULIET, "chat", "g1");
	msg(f, JULIET, "chat", "g2");
	assert_int_equal(fake_nposts, 0);
	assert_int_equal(fx_queue_len(f, JULIET), 0);   /* not committed yet */
	im_flush(&f->ctx, &fake_out);
	assert_int_equal(fx_queue_len(f, JULIET), 2);
	msg(f, JULIET, "chat", "g3");
	msg(f, JULIET, "chat", "g4");
	assert_error(f, "service-unavailable");         /* the batch's g3 counted */
	assert_non_null(strstr(fake_posts[0].data, "id='m-g4'"));
	fake_posts_clear();
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 7, JULIET "/balcony", IM_SF_AVAILABLE,
	       "<presence from='" JULIET "/balcony'/>");
	assert_int_equal(fake_count(POST_EVENT, 0), 3);
	assert_int_equal(fx_queue_len(f, JULIET), 0);
	im_flush(&f->ctx, &fake_out);   /* nothing open: nothing happens */
	assert_int_equal(fake_count(POST_EVENT, 0), 3);
}

static void test_unacked(void **state)
{
	struct im_fx *f = *state;
	static const char left[] =
		"<message from='" ROMEO "/orchard' to='" JULIET "/balcony' type='chat' id='u1'><body>one</body></message>"
		"<presence from='" ROMEO "/orchard' to='" JULIET "/balcony'/>"
		"<iq from='" FX_DOMAIN "' to='" JULIET "/balcony' type='result' id='x'/>"
		"<message from='" ROMEO "/orchard' to='" JULIET "/balcony' type='chat'>"
		"<active xmlns='http://jabber.org/protocol/chatstates'/></message>"
		"<message from='" ROMEO "/orchard' to='" JULIET "/balcony' type='headline'><body>h</body></message>"
		"<message from='" ROMEO "/orchard' to='" JULIET "/balcony' id='u2'><body>two</body>"
		"<delay xmlns='urn:xmpp:delay' from='" FX_DOMAIN "' stamp='2020-01-01T00:00:00Z'>Offline Storage</delay>"
		"</message>"
		"<message from='" ROMEO "/orchard' to='" JULIET "/balcony' type='chat' id='u3'><body>three</body>"
		"<offline xmlns='http://jabber.org/protocol/offline'><item node='1'/></offline></message>";

	/* No other resource takes them: both messages with content stored,
	 * in order; one delay each (u2 kept its own). */
	fake_route_takes = 0;
	fx_req(f, IM_REQ_UNACKED, 7, JULIET "/balcony", IM_SF_SM, left);
	assert_int_equal(fake_count(POST_ROUTE, 0), 2);
	assert_int_equal(fx_queue_len(f, JULIET), 2);
	fake_posts_clear();
	fx_req(f, IM_REQ_INITIAL_PRESENCE, 8, JULIET "/pda", IM_SF_AVAILABLE, NULL);
	assert_int_equal(fake_nposts, 2);
	struct im_send_hdr sh;
	const char *a = fx_send_stanza(&fake_posts[0], &sh), *b = fx_send_stanza(&fake_posts[1], &sh);
	assert_non_null(strstr(a, "id='u1'"));
	assert_non_null(strstr(a, "from='" FX_DOMAIN "'"));
	assert_non_null(strstr(b, "id='u2'"));
	assert_non_null(strstr(b, "2020-01-01T00:00:00Z"));
	assert_null(strstr(strstr(b, "urn:xmpp:delay") + 1, "urn:xmpp:delay"));
	fake_posts_clear();

	/* Another resource takes them: routed with a delay, nothing stored. */
	fake_route_takes = 1;
	fx_req(f, IM_REQ_UNACKED, 7, JULIET "/balcony", IM_SF_SM, left);
	assert_int_equal(fake_count(POST_ROUTE, 0), 2);
	assert_non_null(strstr(fake_posts[0].data, "<body>one</body>"));
	assert_non_null(strstr(fake_posts[0].data, "urn:xmpp:delay"));
	assert_non_null(strstr(fake_posts[0].data, "to='" JULIET "/balcony'"));
	assert_int_equal(fx_queue_len(f, JULIET), 0);
	fake_posts_clear();

	/* A deleted account keeps nothing. */
	fake_route_takes = 0;
	assert_int_equal(account_del(f->st, ROMEO), ACCOUNT_OK);
	fx_req(f, IM_REQ_UNACKED, 12, ROMEO "/orchard", IM_SF_SM,
	       "<message from='" JULIET "/x' to='" ROMEO "/orchard'><body>z</body></message>");
	assert_int_equal(fx_queue_len(f, ROMEO), 0);
}

static void last_ask(struct im_fx *f, const char *from, const char *to)
{
	char st[512];
	snprintf(st, sizeof(st), "<iq type='get' id='l1' from='%s' to='%s'><query xmlns='jabber:iq:last'/></iq>", from,
		 to);
	fx_req(f, IM_REQ_STANZA, 3, from, 0, st);
}

static void test_last(void **state)
{
	struct im_fx *f = *state;

	/* XEP-0012 5: the server's uptime. */
	f->ctx.started -= 100;
	last_ask(f, ROMEO "/orchard", FX_DOMAIN);
	assert_int_equal(fake_nposts, 1);
	assert_non_null(strstr(fake_posts[0].data, "type='result'"));
	assert_true(strstr(fake_posts[0].data, "seconds='100'") || strstr(fake_posts[0].data, "seconds='101'"));
	fake_posts_clear();

	/* 3: not subscribed to juliet's presence: forbidden. */
	last_ask(f, ROMEO "/orchard", JULIET);
	assert_error(f, "forbidden");
	fake_posts_clear();
	/* An unknown user: service-unavailable. */
	last_ask(f, ROMEO "/orchard", "nobody@" FX_DOMAIN);
	assert_error(f, "service-unavailable");
	fake_posts_clear();
	/* One's own account: connected, 0. */
	last_ask(f, JULIET "/balcony", JULIET);
	assert_non_null(strstr(fake_posts[0].data, "seconds='0'"));
	fake_posts_clear();

	/* romeo subscribes to juliet, juliet approves (control/roster.c). */
	fx_req(f, IM_REQ_STANZA, 3, ROMEO "/orchard", IM_SF_AVAILABLE,
	       "<presence from='" ROMEO "/orchard' to='" JULIET "' type='subscribe'/>");
	fx_req(f, IM_REQ_STANZA, 4, JULIET "/balcony", IM_SF_AVAILABLE,
	       "<presence from='" JULIET "/balcony' to='" ROMEO "' type='subscribed'/>");
	fake_posts_clear();
	assert_true(roster_sub_of(&f->ctx, JULIET, strlen(JULIET), ROMEO, strlen(ROMEO)) & IM_SUB_FROM);

	/* Never logged out: item-not-found. */
	last_ask(f, ROMEO "/orchard", JULIET);
	assert_error(f, "item-not-found");
	fake_posts_clear();

	/* Her last resource goes: recorded with its status. Another still
	 * there: not recorded. */
	fake_available = 1;
	fx_req(f, IM_REQ_SESSION_END, 4, JULIET "/balcony", 0,
	       "<presence from='" JULIET "/balcony' type='unavailable'><status>Gone &amp; back</status></presence>");
	time_t when;
	char status[64];
	size_t sl;
	assert_false(last_get(&f->ctx, JULIET, strlen(JULIET), &when, status, sizeof(status), &sl));
	/* Online: 0, no text. */
	last_ask(f, ROMEO "/orchard", JULIET);
	assert_non_null(strstr(fake_posts[0].data, "<query xmlns='jabber:iq:last' seconds='0'/>"));
	fake_posts_clear();
	fake_available = 0;
	fx_req(f, IM_REQ_SESSION_END, 4, JULIET "/balcony", 0,
	       "<presence from='" JULIET "/balcony' type='unavailable'><status>Gone &amp; back</status></presence>");
	assert_true(last_get(&f->ctx, JULIET, strlen(JULIET), &when, status, sizeof(status), &sl));
	assert_int_equal(sl, strlen("Gone & back"));
	assert_memory_equal(status, "Gone & back", sl);
	assert_true(time(NULL) - when <= 1);
	last_ask(f, ROMEO "/orchard", JULIET);
	assert_int_equal(fake_nposts, 1);
	assert_non_null(strstr(fake_posts[0].data, ">Gone &amp; back</query>"));
	assert_non_null(strstr(fake_posts[0].data, "jabber:iq:last"));
	fake_posts_clear();
	/* A full JID with no such resource. */
	last_ask(f, ROMEO "/orchard", JULIET "/nothere");
	assert_error(f, "service-unavailable");
	fake_posts_clear();

	/* offline_purge takes the queue and the record. */
	msg(f, JULIET, "chat", "p");
	assert_int_equal(fx_queue_len(f, JULIET), 1);
	assert_int_equal(offline_purge(&f->ctx, JULIET, strlen(JULIET)), 0);
	assert_int_equal(fx_queue_len(f, JULIET), 0);
	assert_false(last_get(&f->ctx, JULIET, strlen(JULIET), &when, status, sizeof(status), &sl));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_store_with_delay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors_and_types, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flood_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flex, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flex_stale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_offline_after_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flex_moved, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unacked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_last, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
