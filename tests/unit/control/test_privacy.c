/* control/privacy.c: XEP-0191 blocking and XEP-0016 privacy lists through
 * im_serve, against a real LMDB store, with a recording struct im_out and a
 * scripted roster (im_fakes.c). The compiled rules are decoded from the
 * IM_EV_STATE / IM_EV_RULES payloads the router would receive. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "im_fakes.h"
#include "im_stubs.h"
#include "store/store.h"

#define JUL   "juliet@example.com"
#define JUL1  JUL "/balcony"
#define JUL2  JUL "/chamber"
#define H1    0x1001u
#define H2    0x2002u

static int setup(void **state)
{
	struct im_fx *f = fx_new();
	f->cfg->im.privacy_max_items = 5;
	fake_stubs_reset();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

static void iq(struct im_fx *f, uint64_t h, const char *from, const char *type, const char *id, const char *body)
{
	char buf[8192];
	snprintf(buf, sizeof(buf), "<iq from='%s' type='%s' id='%s'>%s</iq>", from, type, id, body);
	fx_stanza(f, h, from, buf);
}

/* The reply to the session (to_session), which must name id. */
static const char *reply(const char *id)
{
	struct fake_post *p = fake_last(POST_SESSION, 0);
	assert_non_null(p);
	char want[128];
	snprintf(want, sizeof(want), "id='%s'", id);
	assert_non_null(strstr((char *)p->data, want));
	return (const char *)p->data;
}

static void assert_result(const char *id)
{
	assert_non_null(strstr(reply(id), "type='result'"));
}

static void assert_error(const char *id, const char *cond)
{
	const char *r = reply(id);
	assert_non_null(strstr(r, "type='error'"));
	assert_non_null(strstr(r, cond));
}

/* Session start: returns the rules of the IM_EV_STATE. */
static uint32_t start(struct im_fx *f, uint64_t h, const char *jid, struct fake_rule *rules, size_t cap)
{
	fake_posts_clear();
	fx_req(f, IM_REQ_SESSION_START, h, jid, 0, NULL);
	struct fake_post *p = fake_last(POST_EVENT, IM_EV_STATE);
	assert_non_null(p);
	assert_int_equal(p->handle, h);
	struct im_state_hdr sh;
	memcpy(&sh, p->data, sizeof(sh));
	assert_int_equal(sh.ncontacts, 0);
	assert_int_equal(fake_rules_decode(p->data + sizeof(sh), p->len - sizeof(sh), sh.nrules, rules, cap),
			 p->len - sizeof(sh));
	return sh.nrules;
}

/* Rules and what follows them (the push) of an IM_EV_RULES payload. */
static uint32_t rules_of(struct fake_post *p, struct fake_rule *rules, size_t cap, const char **push)
{
	struct im_rules_hdr rh;
	assert_non_null(p);
	assert_true(p->len >= sizeof(rh));
	memcpy(&rh, p->data, sizeof(rh));
	size_t used = fake_rules_decode(p->data + sizeof(rh), p->len - sizeof(rh), rh.nrules, rules, cap);
	assert_true(used > 0 || rh.nrules == 0);
	*push = (const char *)p->data + sizeof(rh) + used;
	return rh.nrules;
}

static size_t index_of(int kind, unsigned ev)
{
	for (size_t i = 0; i < fake_nposts; i++)
		if (fake_posts[i].kind == kind && (!ev || fake_posts[i].ev == ev))
			return i;
	return SIZE_MAX;
}

/* ---- XEP-0191 ----------------------------------------------------------- */

static void test_blocklist_get_empty(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	assert_int_equal(start(f, H1, JUL1, r, 8), 0);
	fake_posts_clear();
	iq(f, H1, JUL1, "get", "bl1", "<blocklist xmlns='urn:xmpp:blocking'/>");
	/* The result goes as IM_EV_SEND setting IM_SF_BLOCKLIST (XEP-0191 3.2). */
	assert_int_equal(fake_count(POST_SESSION, 0), 0);
	struct fake_post *p = fake_last(POST_EVENT, IM_EV_SEND);
	assert_non_null(p);
	assert_int_equal(p->handle, H1);
	struct im_send_hdr sh;
	memcpy(&sh, p->data, sizeof(sh));
	assert_int_equal(sh.set, IM_SF_BLOCKLIST);
	assert_int_equal(sh.clear, 0);
	const char *st = (const char *)p->data + sizeof(sh);
	assert_non_null(strstr(st, "type='result'"));
	assert_non_null(strstr(st, "id='bl1'"));
	assert_non_null(strstr(st, "to='" JUL1 "'"));
	assert_non_null(strstr(st, "<blocklist xmlns='urn:xmpp:blocking'/>"));
}

static void test_block_unblock(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	const char *push;

	start(f, H1, JUL1, r, 8);
	fake_posts_clear();
	iq(f, H1, JUL1, "set", "b1", "<block xmlns='urn:xmpp:blocking'><item jid='Romeo@Example.NET'/></block>");
	assert_result("b1");
	/* Rules to every session of the user, with the push (no 'to'). */
	struct fake_post *p = fake_last(POST_USER, IM_EV_RULES);
	assert_string_equal(p->bare, JUL);
	assert_int_equal(rules_of(p, r, 8, &push), 1);
	assert_int_equal(r[0].match, IM_MATCH_JID);
	assert_int_equal(r[0].action, IM_RULE_DENY | IM_RULE_BLOCKCMD);
	assert_int_equal(r[0].kinds, 0);
	assert_string_equal(r[0].jid, "romeo@example.net");
	assert_non_null(strstr(push, "<block xmlns='urn:xmpp:blocking'><item jid='romeo@example.net'/></block>"));
	assert_non_null(strstr(push, "type='set'"));
	assert_null(strstr(push, "to="));
	/* Applied before the result is sent. */
	assert_true(index_of(POST_USER, IM_EV_RULES) < index_of(POST_SESSION, 0));

	/* Stored: a get and a new session see it. */
	iq(f, H1, JUL1, "set", "b2", "<block xmlns='urn:xmpp:blocking'><item jid='iago@example.com/x'/></block>");
	assert_result("b2");
	fake_posts_clear();
	iq(f, H1, JUL1, "get", "bl", "<blocklist xmlns='urn:xmpp:blocking'/>");
	p = fake_last(POST_EVENT, IM_EV_SEND);
	const char *st = (const char *)p->data + sizeof(struct im_send_hdr);
	assert_non_null(strstr(st, "<item jid='romeo@example.net'/>"));
	assert_non_null(strstr(st, "<item jid='iago@example.com/x'/>"));
	assert_int_equal(start(f, H2, JUL2, r, 8), 2);

	/* Unblock one. */
	fake_posts_clear();
	iq(f, H1, JUL1, "set", "u1", "<unblock xmlns='urn:xmpp:blocking'><item jid='romeo@example.net'/></unblock>");
	assert_result("u1");
	p = fake_last(POST_USER, IM_EV_RULES);
	assert_int_equal(rules_of(p, r, 8, &push), 1);
	assert_string_equal(r[0].jid, "iago@example.com/x");
	assert_non_null(strstr(push, "<unblock xmlns='urn:xmpp:blocking'><item jid='romeo@example.net'/></unblock>"));

	/* Unblock all: an empty unblock, pushed empty. */
	fake_posts_clear();
	iq(f, H1, JUL1, "set", "u2", "<unblock xmlns='urn:xmpp:blocking'/>");
	assert_result("u2");
	p = fake_last(POST_USER, IM_EV_RULES);
	assert_int_equal(rules_of(p, r, 8, &push), 0);
	assert_non_null(strstr(push, "<unblock xmlns='urn:xmpp:blocking'/>"));
	assert_int_equal(start(f, H2, JUL2, r, 8), 0);
	uint64_t n = 99;
	assert_int_equal(store_count(f->st, NULL, STORE_T_BLOCKLIST, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 0);
}

static void test_block_errors(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	start(f, H1, JUL1, r, 8);

	iq(f, H1, JUL1, "set", "e1", "<block xmlns='urn:xmpp:blocking'/>");
	assert_error("e1", "<bad-request");
	iq(f, H1, JUL1, "set", "e2", "<block xmlns='urn:xmpp:blocking'><item/></block>");
	assert_error("e2", "<bad-request");
	iq(f, H1, JUL1, "set", "e3", "<block xmlns='urn:xmpp:blocking'><item jid='a@b@c'/></block>");
	assert_error("e3", "<jid-malformed");
	iq(f, H1, JUL1, "set", "e4", "<block xmlns='urn:xmpp:blocking'><item jid=''/></block>");
	assert_error("e4", "<jid-malformed");
	iq(f, H1, JUL1, "get", "e5", "<block xmlns='urn:xmpp:blocking'/>");
	assert_error("e5", "<bad-request");
	/* Another user's list. */
	fx_stanza(f, H1, JUL1, "<iq from='" JUL1 "' to='romeo@example.com' type='get' id='e6'>"
			       "<blocklist xmlns='urn:xmpp:blocking'/></iq>");
	assert_error("e6", "<service-unavailable");
	/* privacy_max_items = 5 in the fixture: 6 in one request, then 4 + 2. */
	iq(f, H1, JUL1, "set", "e7", "<block xmlns='urn:xmpp:blocking'><item jid='a@x'/><item jid='b@x'/>"
				      "<item jid='c@x'/><item jid='d@x'/><item jid='e@x'/><item jid='f@x'/></block>");
	assert_error("e7", "<not-acceptable");
	iq(f, H1, JUL1, "set", "ok", "<block xmlns='urn:xmpp:blocking'><item jid='a@x'/><item jid='b@x'/>"
				      "<item jid='c@x'/><item jid='d@x'/><item jid='a@x'/></block>");
	assert_result("ok");
	iq(f, H1, JUL1, "set", "e8", "<block xmlns='urn:xmpp:blocking'><item jid='e@x'/><item jid='f@x'/></block>");
	assert_error("e8", "<not-acceptable");
	/* Re-blocking what is blocked does not count twice. */
	iq(f, H1, JUL1, "set", "ok2", "<block xmlns='urn:xmpp:blocking'><item jid='a@x'/><item jid='e@x'/></block>");
	assert_result("ok2");
	/* Nothing of the refused requests was stored. */
	uint64_t n = 0;
	assert_int_equal(store_count(f->st, NULL, STORE_T_BLOCKLIST, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 5);
}

static void test_block_presence(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	start(f, H1, JUL1, r, 8);
	fake_roster_add(JUL, "romeo@example.net", IM_SUB_FROM | IM_SUB_TO, "");
	fake_roster_add(JUL, "tybalt@example.net", IM_SUB_TO, "");

	fake_posts_clear();
	iq(f, H1, JUL1, "set", "b1", "<block xmlns='urn:xmpp:blocking'><item jid='romeo@example.net'/>"
				      "<item jid='tybalt@example.net'/><item jid='example.org'/></block>");
	assert_result("b1");
	/* Only romeo receives our presence: unavailable to him, before the
	 * rules that would stop it (XEP-0191 3.3). */
	assert_int_equal(fake_count(POST_USER, IM_EV_PRESENCE_TO), 1);
	struct fake_post *p = fake_last(POST_USER, IM_EV_PRESENCE_TO);
	struct im_presence_to pt;
	memcpy(&pt, p->data, sizeof(pt));
	assert_int_equal(pt.flags, IM_PT_UNAVAILABLE);
	assert_int_equal(pt.len, strlen("romeo@example.net"));
	assert_memory_equal(p->data + sizeof(pt), "romeo@example.net", pt.len);
	assert_string_equal(p->bare, JUL);
	assert_true(index_of(POST_USER, IM_EV_PRESENCE_TO) < index_of(POST_USER, IM_EV_RULES));

	/* Blocking again sends nothing more. */
	fake_posts_clear();
	iq(f, H1, JUL1, "set", "b2", "<block xmlns='urn:xmpp:blocking'><item jid='romeo@example.net'/></block>");
	assert_int_equal(fake_count(POST_USER, IM_EV_PRESENCE_TO), 0);

	/* Unblock: current presence again (flags 0), after the rules (3.4). */
	fake_posts_clear();
	iq(f, H1, JUL1, "set", "u1", "<unblock xmlns='urn:xmpp:blocking'/>");
	assert_result("u1");
	assert_int_equal(fake_count(POST_USER, IM_EV_PRESENCE_TO), 1);
	p = fake_last(POST_USER, IM_EV_PRESENCE_TO);
	memcpy(&pt, p->data, sizeof(pt));
	assert_int_equal(pt.flags, 0);
	assert_memory_equal(p->data + sizeof(pt), "romeo@example.net", pt.len);
	assert_true(index_of(POST_USER, IM_EV_RULES) < index_of(POST_USER, IM_EV_PRESENCE_TO));
}

/* ---- XEP-0016 ----------------------------------------------------------- */

static const char LIST_PUBLIC[] =
	"<query xmlns='jabber:iq:privacy'><list name='public'>"
	"<item type='jid' value='tybalt@example.com' action='deny' order='3'/>"
	"<item type='subscription' value='both' action='allow' order='1'><message/><presence-in/></item>"
	"<item action='allow' order='68'/>"
	"</list></query>";

static void test_list_crud(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	start(f, H1, JUL1, r, 8);

	fake_posts_clear();
	iq(f, H1, JUL1, "set", "s1", LIST_PUBLIC);
	assert_result("s1");
	/* The privacy list push to every resource (XEP-0016 2.5), no 'to'. */
	struct fake_post *p = fake_last(POST_USER, IM_EV_SEND);
	assert_non_null(p);
	struct im_send_hdr sh;
	memcpy(&sh, p->data, sizeof(sh));
	assert_int_equal(sh.set | sh.clear, 0);
	const char *push = (const char *)p->data + sizeof(sh);
	assert_non_null(strstr(push, "<query xmlns='jabber:iq:privacy'><list name='public'/></query>"));
	assert_null(strstr(push, "to="));
	/* Not in use: no rules sent. */
	assert_int_equal(fake_count(POST_EVENT, IM_EV_RULES) + fake_count(POST_USER, IM_EV_RULES), 0);

	iq(f, H1, JUL1, "set", "s2", "<query xmlns='jabber:iq:privacy'><list name='other'>"
				      "<item action='deny' order='1'/></list></query>");
	assert_result("s2");

	iq(f, H1, JUL1, "get", "g1", "<query xmlns='jabber:iq:privacy'/>");
	const char *res = reply("g1");
	assert_non_null(strstr(res, "<list name='public'/>"));
	assert_non_null(strstr(res, "<list name='other'/>"));
	assert_null(strstr(res, "<active"));
	assert_null(strstr(res, "<default"));

	/* Items come back in ascending order. */
	iq(f, H1, JUL1, "get", "g2", "<query xmlns='jabber:iq:privacy'><list name='public'/></query>");
	res = reply("g2");
	const char *a = strstr(res, "order='1'"), *b = strstr(res, "order='3'"), *c = strstr(res, "order='68'");
	assert_non_null(a);
	assert_non_null(b);
	assert_non_null(c);
	assert_true(a < b && b < c);
	assert_non_null(strstr(res, "<item type='subscription' value='both' action='allow' order='1'>"
				    "<message/><presence-in/></item>"));
	assert_non_null(strstr(res, "<item type='jid' value='tybalt@example.com' action='deny' order='3'/>"));
	assert_non_null(strstr(res, "<item action='allow' order='68'/>"));

	/* Replace: the whole list, not a delta. */
	iq(f, H1, JUL1, "set", "s3", "<query xmlns='jabber:iq:privacy'><list name='public'>"
				      "<item type='jid' value='paris@example.org' action='deny' order='5'/>"
				      "</list></query>");
	assert_result("s3");
	iq(f, H1, JUL1, "get", "g3", "<query xmlns='jabber:iq:privacy'><list name='public'/></query>");
	res = reply("g3");
	assert_null(strstr(res, "tybalt"));
	assert_non_null(strstr(res, "paris@example.org"));

	/* Remove. */
	fake_posts_clear();
	iq(f, H1, JUL1, "set", "r1", "<query xmlns='jabber:iq:privacy'><list name='public'/></query>");
	assert_result("r1");
	assert_non_null(fake_last(POST_USER, IM_EV_SEND));
	iq(f, H1, JUL1, "get", "g4", "<query xmlns='jabber:iq:privacy'><list name='public'/></query>");
	assert_error("g4", "<item-not-found");
	iq(f, H1, JUL1, "set", "r2", "<query xmlns='jabber:iq:privacy'><list name='public'/></query>");
	assert_error("r2", "<item-not-found");
}

static void test_list_errors(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	start(f, H1, JUL1, r, 8);
#define Q(body) "<query xmlns='jabber:iq:privacy'>" body "</query>"
	iq(f, H1, JUL1, "set", "e1", Q("<list name='x'><item action='deny' order='1'/><item action='allow' order='1'/></list>"));
	assert_error("e1", "<bad-request");
	iq(f, H1, JUL1, "set", "e2", Q("<list name='x'><item order='1'/></list>"));
	assert_error("e2", "<bad-request");
	iq(f, H1, JUL1, "set", "e3", Q("<list name='x'><item action='deny'/></list>"));
	assert_error("e3", "<bad-request");
	iq(f, H1, JUL1, "set", "e4", Q("<list name='x'><item action='deny' order='-1'/></list>"));
	assert_error("e4", "<bad-request");
	iq(f, H1, JUL1, "set", "e5", Q("<list name='x'><item type='subscription' value='sometimes' action='deny' order='1'/></list>"));
	assert_error("e5", "<bad-request");
	iq(f, H1, JUL1, "set", "e6", Q("<list name='x'><item type='jid' value='a@b@c' action='deny' order='1'/></list>"));
	assert_error("e6", "<bad-request");
	iq(f, H1, JUL1, "set", "e7", Q("<list name='x'><item type='group' value='Nobody' action='deny' order='1'/></list>"));
	assert_error("e7", "<item-not-found");
	iq(f, H1, JUL1, "set", "e8", Q("<list name='x'><item type='color' value='red' action='deny' order='1'/></list>"));
	assert_error("e8", "<bad-request");
	iq(f, H1, JUL1, "set", "e9", Q("<active name='x'/><default name='x'/>"));
	assert_error("e9", "<bad-request");
	iq(f, H1, JUL1, "get", "e10", Q("<list name='a'/><list name='b'/>"));
	assert_error("e10", "<bad-request");
	iq(f, H1, JUL1, "set", "e11", Q("<list name='x'><item action='deny' order='1'/><item action='deny' order='2'/>"
					"<item action='deny' order='3'/><item action='deny' order='4'/>"
					"<item action='deny' order='5'/><item action='deny' order='6'/></list>"));
	assert_error("e11", "<not-acceptable");
	iq(f, H1, JUL1, "set", "e12", Q("<active name='nope'/>"));
	assert_error("e12", "<item-not-found");
	iq(f, H1, JUL1, "set", "e13", Q("<default name='nope'/>"));
	assert_error("e13", "<item-not-found");
	iq(f, H1, JUL1, "set", "e14", Q("<list/>"));
	assert_error("e14", "<bad-request");
	fx_stanza(f, H1, JUL1, "<iq from='" JUL1 "' to='romeo@example.com' type='get' id='e15'>" Q("") "</iq>");
	assert_error("e15", "<service-unavailable");
	/* Nothing was stored. */
	uint64_t n = 9;
	assert_int_equal(store_count(f->st, NULL, STORE_T_BLOCKLIST, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 0);
}

static void test_compile(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[16];
	f->cfg->im.privacy_max_items = 20;
	fake_roster_add(JUL, "nurse@example.com", IM_SUB_TO | IM_SUB_FROM, "Friends");
	fake_roster_add(JUL, "benvolio@example.org", IM_SUB_TO, "Friends");
	fake_roster_add(JUL, "paris@example.org", IM_SUB_TO, "Suitors");
	start(f, H1, JUL1, r, 16);

	iq(f, H1, JUL1, "set", "b", "<block xmlns='urn:xmpp:blocking'><item jid='iago@example.com'/></block>");
	iq(f, H1, JUL1, "set", "l", Q("<list name='main'>"
				       "<item type='subscription' value='none' action='deny' order='5'/>"
				       "<item type='jid' value='Tybalt@Example.com' action='deny' order='1'><message/></item>"
				       "<item type='group' value='Friends' action='allow' order='2'><presence-in/><presence-out/></item>"
				       "<item type='subscription' value='both' action='allow' order='4'/>"
				       "<item type='subscription' value='from' action='deny' order='6'><iq/></item>"
				       "<item action='deny' order='10'><iq/></item>"
				       "</list>"));
	assert_result("l");
	fake_posts_clear();
	iq(f, H1, JUL1, "set", "d", Q("<default name='main'/>"));
	assert_result("d");
	/* H1 uses the default: it gets the new rules. */
	assert_int_equal(fake_count(POST_EVENT, IM_EV_RULES), 1);

	uint32_t n = start(f, H2, JUL2, r, 16);
	assert_int_equal(n, 8);
	/* 1. the block list, all kinds */
	assert_int_equal(r[0].match, IM_MATCH_JID);
	assert_string_equal(r[0].jid, "iago@example.com");
	assert_int_equal(r[0].action, IM_RULE_DENY | IM_RULE_BLOCKCMD);
	/* 2. then the default list by order */
	assert_int_equal(r[1].match, IM_MATCH_JID);
	assert_string_equal(r[1].jid, "tybalt@example.com");
	assert_int_equal(r[1].action, IM_RULE_DENY);
	assert_int_equal(r[1].kinds, IM_KIND_MESSAGE);
	/* the group, one rule per member */
	assert_int_equal(r[2].match, IM_MATCH_JID);
	assert_int_equal(r[3].match, IM_MATCH_JID);
	assert_true((!strcmp(r[2].jid, "nurse@example.com") && !strcmp(r[3].jid, "benvolio@example.org")) ||
		    (!strcmp(r[3].jid, "nurse@example.com") && !strcmp(r[2].jid, "benvolio@example.org")));
	assert_int_equal(r[2].action, 0);
	assert_int_equal(r[2].kinds, IM_KIND_PRES_IN | IM_KIND_PRES_OUT);
	assert_int_equal(r[3].kinds, IM_KIND_PRES_IN | IM_KIND_PRES_OUT);
	/* subscriptions */
	assert_int_equal(r[4].match, IM_MATCH_SUB);
	assert_int_equal(r[4].subs, IM_SUB_TO | IM_SUB_FROM);
	assert_int_equal(r[4].action, 0);
	assert_int_equal(r[5].match, IM_MATCH_SUB);
	assert_int_equal(r[5].subs, 0);
	assert_int_equal(r[5].action, IM_RULE_DENY);
	assert_int_equal(r[6].match, IM_MATCH_SUB);
	assert_int_equal(r[6].subs, IM_SUB_FROM);
	assert_int_equal(r[6].kinds, IM_KIND_IQ);
	/* fall-through */
	assert_int_equal(r[7].match, IM_MATCH_ALL);
	assert_int_equal(r[7].action, IM_RULE_DENY);
	assert_int_equal(r[7].kinds, IM_KIND_IQ);
	assert_int_equal(r[7].jid[0], 0);

	/* The names now show the default. */
	iq(f, H1, JUL1, "get", "g", Q(""));
	assert_non_null(strstr(reply("g"), "<default name='main'/>"));

	/* A roster change that touches the group recompiles; one that does
	 * not sends nothing. */
	fake_posts_clear();
	privacy_roster_changed(&f->ctx, &fake_out, JUL, strlen(JUL));
	assert_int_equal(fake_count(POST_EVENT, IM_EV_RULES), 0);
	fake_roster_add(JUL, "mercutio@example.net", IM_SUB_TO | IM_SUB_FROM, "Friends");
	privacy_roster_changed(&f->ctx, &fake_out, JUL, strlen(JUL));
	assert_int_equal(fake_count(POST_EVENT, IM_EV_RULES), 2);   /* both sessions */
	const char *push;
	assert_int_equal(rules_of(fake_last(POST_EVENT, IM_EV_RULES), r, 16, &push), 9);
	assert_int_equal(*push, 0);   /* no push stanza */
}

static void test_active_per_session(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	const char *push;
	start(f, H1, JUL1, r, 8);
	start(f, H2, JUL2, r, 8);
	iq(f, H1, JUL1, "set", "la", Q("<list name='a'><item type='jid' value='a@x' action='deny' order='1'/></list>"));
	iq(f, H1, JUL1, "set", "lb", Q("<list name='b'><item type='jid' value='b@x' action='deny' order='1'/></list>"));

	fake_posts_clear();
	iq(f, H1, JUL1, "set", "act", Q("<active name='a'/>"));
	assert_result("act");
	/* IM_EV_RULES to H1 only, before the result (XEP-0016 2.3). */
	assert_int_equal(fake_count(POST_EVENT, IM_EV_RULES), 1);
	assert_int_equal(fake_count(POST_USER, IM_EV_RULES), 0);
	struct fake_post *p = fake_last(POST_EVENT, IM_EV_RULES);
	assert_int_equal(p->handle, H1);
	assert_int_equal(rules_of(p, r, 8, &push), 1);
	assert_string_equal(r[0].jid, "a@x");
	assert_true(index_of(POST_EVENT, IM_EV_RULES) < index_of(POST_SESSION, 0));

	iq(f, H1, JUL1, "get", "n1", Q(""));
	assert_non_null(strstr(reply("n1"), "<active name='a'/>"));
	iq(f, H2, JUL2, "get", "n2", Q(""));
	assert_null(strstr(reply("n2"), "<active"));

	/* H2 may not remove a list H1 uses (XEP-0016 2.7). */
	iq(f, H2, JUL2, "set", "rm", Q("<list name='a'/>"));
	assert_error("rm", "<conflict");
	/* Editing it is fine, and H1 gets the new definition (rule 8). */
	fake_posts_clear();
	iq(f, H2, JUL2, "set", "ed", Q("<list name='a'><item type='jid' value='c@x' action='deny' order='1'/></list>"));
	assert_result("ed");
	assert_int_equal(fake_count(POST_EVENT, IM_EV_RULES), 1);
	p = fake_last(POST_EVENT, IM_EV_RULES);
	assert_int_equal(p->handle, H1);
	rules_of(p, r, 8, &push);
	assert_string_equal(r[0].jid, "c@x");

	/* A block with an active list somewhere: per-session rules. */
	fake_posts_clear();
	iq(f, H2, JUL2, "set", "blk", "<block xmlns='urn:xmpp:blocking'><item jid='z@x'/></block>");
	assert_int_equal(fake_count(POST_USER, IM_EV_RULES), 0);
	assert_int_equal(fake_count(POST_EVENT, IM_EV_RULES), 2);
	for (size_t i = 0; i < fake_nposts; i++) {
		if (fake_posts[i].kind != POST_EVENT || fake_posts[i].ev != IM_EV_RULES)
			continue;
		uint32_t n = rules_of(&fake_posts[i], r, 8, &push);
		assert_string_equal(r[0].jid, "z@x");
		assert_non_null(strstr(push, "<block xmlns='urn:xmpp:blocking'>"));
		if (fake_posts[i].handle == H1) {
			assert_int_equal(n, 2);
			assert_string_equal(r[1].jid, "c@x");
		} else {
			assert_int_equal(fake_posts[i].handle, H2);
			assert_int_equal(n, 1);
		}
	}

	/* Decline; then H2 may remove it. */
	iq(f, H1, JUL1, "set", "dec", Q("<active/>"));
	assert_result("dec");
	iq(f, H2, JUL2, "set", "rm2", Q("<list name='a'/>"));
	assert_result("rm2");

	/* Session end forgets the active list. */
	iq(f, H1, JUL1, "set", "act2", Q("<active name='b'/>"));
	assert_result("act2");
	iq(f, H2, JUL2, "set", "rm3", Q("<list name='b'/>"));
	assert_error("rm3", "<conflict");
	/* Moved (XEP-0198 resumption, IM_REQ_SESSION_MOVED with the old
	 * handle): the active list follows the handle. */
	uint64_t old = H1;
	struct im_req mr = { .type = IM_REQ_SESSION_MOVED, .jid_len = (uint16_t)strlen(JUL1), .len = sizeof(old) };
	im_serve(&f->ctx, 0x9009, &mr, JUL1, (const char *)&old, &fake_out);
	fx_req(f, IM_REQ_SESSION_END, H1, JUL1, 0, "<presence type='unavailable'/>");
	iq(f, H2, JUL2, "set", "rm4", Q("<list name='b'/>"));
	assert_error("rm4", "<conflict");
	fx_req(f, IM_REQ_SESSION_END, 0x9009, JUL1, 0, "<presence type='unavailable'/>");
	iq(f, H2, JUL2, "set", "rm5", Q("<list name='b'/>"));
	assert_result("rm5");
}

static void test_default_conflict(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	start(f, H1, JUL1, r, 8);
	start(f, H2, JUL2, r, 8);
	iq(f, H1, JUL1, "set", "la", Q("<list name='a'><item type='jid' value='a@x' action='deny' order='1'/></list>"));
	iq(f, H1, JUL1, "set", "lb", Q("<list name='b'><item type='jid' value='b@x' action='deny' order='1'/></list>"));

	/* No default yet: nothing in use, both sessions get the rules. */
	fake_posts_clear();
	iq(f, H1, JUL1, "set", "d1", Q("<default name='a'/>"));
	assert_result("d1");
	assert_int_equal(fake_count(POST_EVENT, IM_EV_RULES), 2);
	/* Setting the same again is no change. */
	iq(f, H1, JUL1, "set", "d1b", Q("<default name='a'/>"));
	assert_result("d1b");
	/* Now H2 uses the default: H1 may not change or decline it (2.4),
	 * nor remove it. */
	iq(f, H1, JUL1, "set", "d2", Q("<default name='b'/>"));
	assert_error("d2", "<conflict");
	iq(f, H1, JUL1, "set", "d3", Q("<default/>"));
	assert_error("d3", "<conflict");
	iq(f, H1, JUL1, "set", "d4", Q("<list name='a'/>"));
	assert_error("d4", "<conflict");
	/* Once H2 has an active list of its own, it may. */
	iq(f, H2, JUL2, "set", "a2", Q("<active name='b'/>"));
	assert_result("a2");
	fake_posts_clear();
	iq(f, H1, JUL1, "set", "d5", Q("<default name='b'/>"));
	assert_result("d5");
	/* Only H1 (no active list) changed. */
	assert_int_equal(fake_count(POST_EVENT, IM_EV_RULES), 1);
	assert_int_equal(fake_last(POST_EVENT, IM_EV_RULES)->handle, H1);
	/* Removing the default list (used by H1 alone, the sender) clears the default. */
	iq(f, H1, JUL1, "set", "a1", Q("<active name='a'/>"));
	iq(f, H2, JUL2, "set", "a2b", Q("<active name='a'/>"));
	iq(f, H1, JUL1, "set", "rmb", Q("<list name='b'/>"));
	assert_result("rmb");
	iq(f, H1, JUL1, "get", "g", Q(""));
	assert_null(strstr(reply("g"), "<default"));
	iq(f, H1, JUL1, "set", "d6", Q("<default/>"));
	assert_result("d6");
}

static void test_purge(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	start(f, H1, JUL1, r, 8);
	iq(f, H1, JUL1, "set", "b", "<block xmlns='urn:xmpp:blocking'><item jid='iago@example.com'/></block>");
	iq(f, H1, JUL1, "set", "l", Q("<list name='a'><item action='deny' order='1'/></list>"));
	iq(f, H1, JUL1, "set", "d", Q("<default name='a'/>"));
	/* Another user's records survive, also one whose JID extends ours. */
	start(f, H2, "juliet@example.com.evil/x", r, 8);
	iq(f, H2, "juliet@example.com.evil/x", "set", "b2",
	   "<block xmlns='urn:xmpp:blocking'><item jid='iago@example.com'/></block>");
	assert_int_equal(privacy_purge(&f->ctx, JUL, strlen(JUL)), 0);
	uint64_t n = 0;
	assert_int_equal(store_count(f->st, NULL, STORE_T_BLOCKLIST, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(start(f, 0x3003, JUL "/new", r, 8), 0);
}

/* The offline path: no session decides, the default rules do. */
static void test_check_in(void **state)
{
	struct im_fx *f = *state;
	struct fake_rule r[8];
	size_t jl = strlen(JUL);
	start(f, H1, JUL1, r, 8);
	fake_roster_add(JUL, "nurse@example.com", IM_SUB_TO | IM_SUB_FROM, "");
	iq(f, H1, JUL1, "set", "b", "<block xmlns='urn:xmpp:blocking'><item jid='iago@example.com'/>"
				     "<item jid='evil.example'/></block>");
	assert_int_equal(privacy_check_in(&f->ctx, JUL, jl, IM_KIND_MESSAGE, "iago@example.com/x", 18),
			 IM_RULE_DENY | IM_RULE_BLOCKCMD);
	assert_int_equal(privacy_check_in(&f->ctx, JUL, jl, 0, "iago@example.com", 16),
			 IM_RULE_DENY | IM_RULE_BLOCKCMD);
	assert_int_equal(privacy_check_in(&f->ctx, JUL, jl, IM_KIND_MESSAGE, "anyone@evil.example/r", 21),
			 IM_RULE_DENY | IM_RULE_BLOCKCMD);
	assert_int_equal(privacy_check_in(&f->ctx, JUL, jl, IM_KIND_MESSAGE, "iago@example.comx", 17), 0);
	assert_int_equal(privacy_check_in(&f->ctx, JUL, jl, IM_KIND_MESSAGE, JUL "/other", jl + 6), 0);

	/* A default list: messages only from contacts with a subscription
	 * both ways; subscription requests are not messages. */
	iq(f, H1, JUL1, "set", "l", Q("<list name='d'><item type='subscription' value='both' action='allow' order='1'/>"
				       "<item action='deny' order='2'><message/></item></list>"));
	iq(f, H1, JUL1, "set", "d", Q("<default name='d'/>"));
	assert_result("d");
	assert_int_equal(privacy_check_in(&f->ctx, JUL, jl, IM_KIND_MESSAGE, "nurse@example.com/r", 19), 0);
	assert_int_equal(privacy_check_in(&f->ctx, JUL, jl, IM_KIND_MESSAGE, "paris@example.org", 17), IM_RULE_DENY);
	assert_int_equal(privacy_check_in(&f->ctx, JUL, jl, 0, "paris@example.org", 17), 0);
	/* An active list does not count here (it is a session's). */
	iq(f, H1, JUL1, "set", "l2", Q("<list name='open'><item action='allow' order='1'/></list>"));
	iq(f, H1, JUL1, "set", "a", Q("<active name='open'/>"));
	assert_int_equal(privacy_check_in(&f->ctx, JUL, jl, IM_KIND_MESSAGE, "paris@example.org", 17), IM_RULE_DENY);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_blocklist_get_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_unblock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_block_presence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_crud, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_active_per_session, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_in, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
