/* control/services.c: disco (server, account, the caps node, the offline
 * node), the XEP-0115 ver, version, time, vcard-temp, private storage and
 * carbons through im_serve, against a real LMDB store with a recording
 * struct im_out (im_fakes.c). Replies are parsed back with the project's
 * own tokenizer where their structure matters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "im_fakes.h"
#include "im_stubs.h"
#include "parser/xml.h"
#include "store/store.h"

#define JUL   "juliet@example.com"
#define JUL1  JUL "/balcony"
#define ROM   "romeo@example.com"
#define H1    0x1001u

static int setup(void **state)
{
	struct im_fx *f = fx_new();
	fake_stubs_reset();
	fx_account(f, JUL);
	fx_account(f, ROM);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* An iq from JUL1 to `to` (NULL: none). */
static void iq(struct im_fx *f, const char *to, const char *type, const char *id, const char *body)
{
	char buf[300000];
	if (to)
		snprintf(buf, sizeof(buf), "<iq from='" JUL1 "' to='%s' type='%s' id='%s'>%s</iq>", to, type, id, body);
	else
		snprintf(buf, sizeof(buf), "<iq from='" JUL1 "' type='%s' id='%s'>%s</iq>", type, id, body);
	fake_posts_clear();
	fx_stanza(f, H1, JUL1, buf);
}

static const char *reply(const char *id)
{
	struct fake_post *p = fake_last(POST_SESSION, 0);
	assert_non_null(p);
	assert_int_equal(p->handle, H1);
	char want[128];
	snprintf(want, sizeof(want), "id='%s'", id);
	assert_non_null(strstr((char *)p->data, want));
	return (const char *)p->data;
}

static const char *result(const char *id)
{
	const char *r = reply(id);
	assert_non_null(strstr(r, "type='result'"));
	return r;
}

static void assert_error(const char *id, const char *cond)
{
	const char *r = reply(id);
	assert_non_null(strstr(r, "type='error'"));
	assert_non_null(strstr(r, cond));
}

/* A view over s (which must stay alive), or fail. */
static struct xml_view *parse(const char *s)
{
	static struct xml_view v;
	static struct xml_token tok[8192];
	static struct xml_ns ns[256];
	static uint16_t scope[256];
	struct xml_limits lim;
	xml_limits_default(&lim);
	xml_view_init(&v, &lim, tok, 8192, ns, 256, scope, 256);
	assert_int_equal(xml_view_build(&v, NULL, s, strlen(s)), 0);
	return &v;
}

/* ---- XEP-0115 -------------------------------------------------------------- */

static void test_caps_xep_example(void **state)
{
	/* XEP-0115 5.2, inputs deliberately unsorted. */
	const char *ids[] = { "client/pc//Exodus 0.9.1" };
	const char *feats[] = {
		"http://jabber.org/protocol/muc",
		"http://jabber.org/protocol/disco#info",
		"http://jabber.org/protocol/caps",
		"http://jabber.org/protocol/disco#items",
	};
	char ver[64];
	assert_int_equal(services_caps_hash(ids, 1, feats, 4, ver, sizeof(ver)), 28);
	assert_string_equal(ver, "QgayPKawpkPSDYmwT/WM94uAlu0=");
	assert_int_equal(services_caps_hash(ids, 1, feats, 4, ver, 10), 0);
}

/* The server's disco#info answer hashes to services_caps_ver: one
 * definition for both. */
static void test_disco_info_server(void **state)
{
	struct im_fx *f = *state;
	iq(f, "example.com", "get", "i1", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
	const char *r = result("i1");
	assert_non_null(strstr(r, "from='example.com'"));
	assert_non_null(strstr(r, "to='" JUL1 "'"));
	struct xml_view *v = parse(r);
	uint32_t q = v->info.child;
	assert_true(xml_slice_eq(xml_tok_ns(v, q), "http://jabber.org/protocol/disco#info"));
	const char *ids[8], *feats[64];
	char idb[8][256], fb[64][256];
	size_t ni = 0, nf = 0;
	char tmp[256];
	for (uint32_t k = xml_first_child(v, q); k != XML_NO_TOK; k = xml_next_sibling(v, k)) {
		if (xml_slice_eq(xml_tok_local(v, k), "identity")) {
			char cat[64], typ[64], nam[64];
			struct xml_slice s;
			s = xml_tok_value(v, xml_attr_find(v, k, "category", NULL), tmp);
			snprintf(cat, sizeof(cat), "%.*s", (int)s.len, s.ptr);
			s = xml_tok_value(v, xml_attr_find(v, k, "type", NULL), tmp);
			snprintf(typ, sizeof(typ), "%.*s", (int)s.len, s.ptr);
			uint32_t na = xml_attr_find(v, k, "name", NULL);
			nam[0] = 0;
			if (na != XML_NO_TOK) {
				s = xml_tok_value(v, na, tmp);
				snprintf(nam, sizeof(nam), "%.*s", (int)s.len, s.ptr);
			}
			snprintf(idb[ni], sizeof(idb[ni]), "%s/%s//%s", cat, typ, nam);
			ids[ni] = idb[ni];
			ni++;
		} else {
			struct xml_slice s = xml_tok_value(v, xml_attr_find(v, k, "var", NULL), tmp);
			snprintf(fb[nf], sizeof(fb[nf]), "%.*s", (int)s.len, s.ptr);
			feats[nf] = fb[nf];
			nf++;
		}
	}
	assert_int_equal(ni, 1);
	assert_string_equal(ids[0], "server/im//stanzad");
	const char *must[] = {
		"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items",
		"urn:xmpp:blocking", "jabber:iq:privacy", "urn:xmpp:carbons:2", "vcard-temp", "jabber:iq:private",
		"jabber:iq:version", "urn:xmpp:time", "urn:xmpp:ping", "msgoffline",
		"http://jabber.org/protocol/offline", "jabber:iq:last", "jabber:iq:register",
		"http://jabber.org/protocol/caps",
	};
	for (size_t i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
		bool found = false;
		for (size_t k = 0; k < nf; k++)
			found |= !strcmp(feats[k], must[i]);
		if (!found)
			fail_msg("feature %s missing", must[i]);
	}
	char want[64], got[64];
	services_caps_ver(want, sizeof(want));
	assert_true(strlen(want) == 28);
	services_caps_hash(ids, ni, feats, nf, got, sizeof(got));
	assert_string_equal(got, want);

	/* The caps node (XEP-0115 6.2) echoes the node; others are unknown. */
	char body[256];
	snprintf(body, sizeof(body), "<query xmlns='http://jabber.org/protocol/disco#info' node='https://stanzad.example#%s'/>",
		 want);
	iq(f, "example.com", "get", "i2", body);
	r = result("i2");
	assert_non_null(strstr(r, "node='https://stanzad.example#"));
	assert_non_null(strstr(r, "category='server'"));
	iq(f, "example.com", "get", "i3", "<query xmlns='http://jabber.org/protocol/disco#info' node='x#AAAA'/>");
	assert_error("i3", "<item-not-found");
	iq(f, "example.com", "set", "i4", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
	assert_error("i4", "<service-unavailable");
}

static void test_disco_account(void **state)
{
	struct im_fx *f = *state;
	/* Own account (no 'to'). */
	iq(f, NULL, "get", "a1", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
	const char *r = result("a1");
	assert_non_null(strstr(r, "<identity category='account' type='registered'/>"));
	assert_null(strstr(r, "category='server'"));
	/* Another account that does not share presence with us, and one that
	 * does not exist: the same error (XEP-0030 8). */
	iq(f, ROM, "get", "a2", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
	assert_error("a2", "<service-unavailable");
	iq(f, "nobody@example.com", "get", "a3", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
	assert_error("a3", "<service-unavailable");
	/* Romeo lets juliet see his presence: now she may. */
	fake_roster_add(ROM, JUL, IM_SUB_FROM, "");
	iq(f, ROM, "get", "a4", "<query xmlns='http://jabber.org/protocol/disco#info'/>");
	r = result("a4");
	assert_non_null(strstr(r, "from='" ROM "'"));
	assert_non_null(strstr(r, "category='account'"));
	/* Items: empty, for everyone. */
	iq(f, "example.com", "get", "it1", "<query xmlns='http://jabber.org/protocol/disco#items'/>");
	assert_non_null(strstr(result("it1"), "<query xmlns='http://jabber.org/protocol/disco#items'/>"));
	iq(f, "nobody@example.com", "get", "it2", "<query xmlns='http://jabber.org/protocol/disco#items'/>");
	assert_non_null(strstr(result("it2"), "<query xmlns='http://jabber.org/protocol/disco#items'/>"));
	iq(f, "example.com", "get", "it3", "<query xmlns='http://jabber.org/protocol/disco#items' node='nope'/>");
	assert_error("it3", "<item-not-found");
}

static void test_disco_offline_node(void **state)
{
	struct im_fx *f = *state;
	iq(f, NULL, "get", "o1", "<query xmlns='http://jabber.org/protocol/disco#info' node='http://jabber.org/protocol/offline'/>");
	result("o1");
	assert_int_equal(fake_offline_info_calls, 1);
	iq(f, NULL, "get", "o2", "<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/offline'/>");
	result("o2");
	assert_int_equal(fake_offline_items_calls, 1);
}

/* ---- XEP-0092, XEP-0202 ------------------------------------------------------ */

static void test_version(void **state)
{
	struct im_fx *f = *state;
	iq(f, "example.com", "get", "v1", "<query xmlns='jabber:iq:version'/>");
	assert_non_null(strstr(result("v1"), "<query xmlns='jabber:iq:version'><name>stanzad</name><version>"
					     STANZA_VERSION "</version></query>"));
	iq(f, ROM, "get", "v2", "<query xmlns='jabber:iq:version'/>");
	assert_error("v2", "<service-unavailable");
	iq(f, "example.com", "set", "v3", "<query xmlns='jabber:iq:version'/>");
	assert_error("v3", "<service-unavailable");
}

static void test_time(void **state)
{
	struct im_fx *f = *state;
	time_t before = time(NULL);
	iq(f, "example.com", "get", "t1", "<time xmlns='urn:xmpp:time'/>");
	const char *r = result("t1");
	const char *tz = strstr(r, "<tzo>"), *utc = strstr(r, "<utc>");
	assert_non_null(tz);
	assert_non_null(utc);
	int hh, mm;
	char sign;
	assert_int_equal(sscanf(tz + 5, "%c%2d:%2d</tzo>", &sign, &hh, &mm), 3);
	assert_true(sign == '+' || sign == '-');
	assert_true(tz[11] == '<');
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(utc + 5, "%Y-%m-%dT%H:%M:%SZ", &tm);
	assert_non_null(end);
	assert_memory_equal(end, "</utc>", 6);
	time_t t = timegm(&tm);
	assert_true(t >= before && t <= time(NULL));
	iq(f, ROM, "get", "t2", "<time xmlns='urn:xmpp:time'/>");
	assert_error("t2", "<service-unavailable");
}

/* ---- XEP-0054 ------------------------------------------------------------------ */

static void test_vcard(void **state)
{
	struct im_fx *f = *state;
	iq(f, NULL, "get", "g1", "<vCard xmlns='vcard-temp'/>");
	assert_non_null(strstr(result("g1"), "<vCard xmlns='vcard-temp'/>"));

	/* A prefixed vCard, with escapes and CDATA: stored standing alone. */
	iq(f, NULL, "set", "s1",
	   "<v:vCard xmlns:v='vcard-temp' xml:lang='en'><v:FN>Juliet &amp; co</v:FN>"
	   "<v:NICKNAME><![CDATA[<jul>]]></v:NICKNAME><X xmlns='urn:x' v:a='1'/></v:vCard>");
	result("s1");
	iq(f, NULL, "get", "g2", "<vCard xmlns='vcard-temp'/>");
	const char *r = result("g2");
	assert_non_null(strstr(r, "<vCard xmlns='vcard-temp' xml:lang='en'><FN>Juliet &amp; co</FN>"
				  "<NICKNAME>&lt;jul&gt;</NICKNAME><X xmlns='urn:x' xmlns:a0='vcard-temp' a0:a='1'/>"
				  "</vCard>"));
	parse(r);   /* well-formed */

	/* Someone else reads it; nobody else writes it. */
	struct fake_post *p;
	char buf[512];
	fake_posts_clear();
	snprintf(buf, sizeof(buf), "<iq from='" ROM "/x' to='" JUL "' type='get' id='o1'><vCard xmlns='vcard-temp'/></iq>");
	fx_stanza(f, 0x77, ROM "/x", buf);
	p = fake_last(POST_SESSION, 0);
	assert_int_equal(p->handle, 0x77);
	assert_non_null(strstr((char *)p->data, "<FN>Juliet &amp; co</FN>"));
	assert_non_null(strstr((char *)p->data, "to='" ROM "/x'"));
	iq(f, ROM, "set", "s2", "<vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard>");
	assert_error("s2", "<forbidden");
	/* No vCard, and no account: the same error (XEP-0054 3.3). */
	iq(f, ROM, "get", "g3", "<vCard xmlns='vcard-temp'/>");
	assert_error("g3", "<service-unavailable");
	iq(f, "nobody@example.com", "get", "g4", "<vCard xmlns='vcard-temp'/>");
	assert_error("g4", "<service-unavailable");

	/* Too large. */
	static char big[200000];
	strcpy(big, "<vCard xmlns='vcard-temp'><DESC>");
	size_t n = strlen(big);
	memset(big + n, 'x', 140000);
	strcpy(big + n + 140000, "</DESC></vCard>");
	iq(f, NULL, "set", "s3", big);
	assert_error("s3", "<not-acceptable");
	iq(f, NULL, "get", "g5", "<vCard xmlns='vcard-temp'/>");
	assert_non_null(strstr(result("g5"), "Juliet"));

	/* An empty vCard clears it. */
	iq(f, NULL, "set", "s4", "<vCard xmlns='vcard-temp'/>");
	result("s4");
	uint64_t c = 9;
	assert_int_equal(store_count(f->st, NULL, STORE_T_VCARD, NULL, 0, &c), STORE_OK);
	assert_int_equal(c, 0);
}

/* ---- XEP-0049 ------------------------------------------------------------------ */

static void test_private(void **state)
{
	struct im_fx *f = *state;
#define PQ(body) "<query xmlns='jabber:iq:private'>" body "</query>"
	iq(f, NULL, "get", "g1", PQ("<storage xmlns='storage:bookmarks'/>"));
	assert_non_null(strstr(result("g1"), PQ("<storage xmlns='storage:bookmarks'/>")));

	iq(f, NULL, "set", "s1", PQ("<storage xmlns='storage:bookmarks'><conference jid='a@b' autojoin='true'/></storage>"
				    "<prefs xmlns='urn:example:prefs'>on</prefs>"));
	result("s1");
	iq(f, NULL, "get", "g2", PQ("<storage xmlns='storage:bookmarks'/>"));
	const char *r = result("g2");
	assert_non_null(strstr(r, PQ("<storage xmlns='storage:bookmarks'><conference jid='a@b' autojoin='true'/></storage>")));
	parse(r);
	iq(f, JUL, "get", "g3", PQ("<prefs xmlns='urn:example:prefs'/>"));
	assert_non_null(strstr(result("g3"), "<prefs xmlns='urn:example:prefs'>on</prefs>"));
	/* Same namespace, another element name: a separate record. */
	iq(f, NULL, "get", "g4", PQ("<other xmlns='urn:example:prefs'/>"));
	assert_non_null(strstr(result("g4"), PQ("<other xmlns='urn:example:prefs'/>")));

	/* Refusals. */
	iq(f, NULL, "set", "e1", PQ("<query xmlns='jabber:iq:roster'/>"));
	assert_error("e1", "<not-acceptable");
	iq(f, NULL, "get", "e2", PQ("<x xmlns='jabber:x:data'/>"));
	assert_error("e2", "<not-acceptable");
	iq(f, NULL, "get", "e3", PQ(""));
	assert_error("e3", "<bad-request");
	iq(f, NULL, "get", "e4", PQ("<a xmlns='urn:a'/><b xmlns='urn:b'/>"));
	assert_error("e4", "<bad-request");
	iq(f, NULL, "set", "e5", PQ("<plain>no namespace</plain>"));
	assert_error("e5", "<not-acceptable");
	iq(f, ROM, "get", "e6", PQ("<storage xmlns='storage:bookmarks'/>"));
	assert_error("e6", "<forbidden");
	iq(f, "example.com", "set", "e7", PQ("<storage xmlns='storage:bookmarks'/>"));
	assert_error("e7", "<forbidden");
	/* A refused set stores nothing, also not its good part. */
	iq(f, NULL, "set", "e8", PQ("<ok xmlns='urn:ok'>1</ok><query xmlns='jabber:iq:auth'/>"));
	assert_error("e8", "<not-acceptable");
	iq(f, NULL, "get", "g5", PQ("<ok xmlns='urn:ok'/>"));
	assert_non_null(strstr(result("g5"), "<ok xmlns='urn:ok'/>"));

	/* An empty element clears its record. */
	iq(f, NULL, "set", "s2", PQ("<prefs xmlns='urn:example:prefs'/>"));
	result("s2");
	uint64_t c = 0;
	assert_int_equal(store_count(f->st, NULL, STORE_T_PRIVATE, NULL, 0, &c), STORE_OK);
	assert_int_equal(c, 1);
}

/* ---- XEP-0280 ------------------------------------------------------------------- */

static void test_carbons(void **state)
{
	struct im_fx *f = *state;
	struct im_send_hdr sh;
	iq(f, NULL, "set", "c1", "<enable xmlns='urn:xmpp:carbons:2'/>");
	assert_int_equal(fake_count(POST_SESSION, 0), 0);
	struct fake_post *p = fake_last(POST_EVENT, IM_EV_SEND);
	assert_non_null(p);
	assert_int_equal(p->handle, H1);
	memcpy(&sh, p->data, sizeof(sh));
	assert_int_equal(sh.set, IM_SF_CARBONS);
	assert_int_equal(sh.clear, 0);
	assert_non_null(strstr((char *)p->data + sizeof(sh), "type='result'"));
	assert_non_null(strstr((char *)p->data + sizeof(sh), "id='c1'"));

	iq(f, "example.com", "set", "c2", "<disable xmlns='urn:xmpp:carbons:2'/>");
	p = fake_last(POST_EVENT, IM_EV_SEND);
	assert_non_null(p);
	memcpy(&sh, p->data, sizeof(sh));
	assert_int_equal(sh.set, 0);
	assert_int_equal(sh.clear, IM_SF_CARBONS);
	assert_non_null(strstr((char *)p->data + sizeof(sh), "id='c2'"));

	iq(f, NULL, "get", "c3", "<enable xmlns='urn:xmpp:carbons:2'/>");
	assert_error("c3", "<bad-request");
	iq(f, NULL, "set", "c4", "<private xmlns='urn:xmpp:carbons:2'/>");
	assert_error("c4", "<bad-request");
	iq(f, ROM, "set", "c5", "<enable xmlns='urn:xmpp:carbons:2'/>");
	assert_error("c5", "<not-allowed");
}

static void test_purge(void **state)
{
	struct im_fx *f = *state;
	iq(f, NULL, "set", "s1", "<vCard xmlns='vcard-temp'><FN>J</FN></vCard>");
	iq(f, NULL, "set", "s2", PQ("<a xmlns='urn:a'>1</a><b xmlns='urn:b'>2</b>"));
	/* Romeo's records stay. */
	char buf[256];
	snprintf(buf, sizeof(buf), "<iq from='" ROM "/x' type='set' id='r'><vCard xmlns='vcard-temp'><FN>R</FN></vCard></iq>");
	fx_stanza(f, 0x77, ROM "/x", buf);
	assert_int_equal(services_purge(&f->ctx, JUL, strlen(JUL)), 0);
	uint64_t c = 9;
	assert_int_equal(store_count(f->st, NULL, STORE_T_PRIVATE, NULL, 0, &c), STORE_OK);
	assert_int_equal(c, 0);
	assert_int_equal(store_count(f->st, NULL, STORE_T_VCARD, NULL, 0, &c), STORE_OK);
	assert_int_equal(c, 1);
	iq(f, NULL, "get", "g", "<vCard xmlns='vcard-temp'/>");
	assert_non_null(strstr(result("g"), "<vCard xmlns='vcard-temp'/>"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_caps_xep_example),
		cmocka_unit_test_setup_teardown(test_disco_info_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disco_account, setup, teardown),
		cmocka_unit_test_setup_teardown(test_disco_offline_node, setup, teardown),
		cmocka_unit_test_setup_teardown(test_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vcard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_private, setup, teardown),
		cmocka_unit_test_setup_teardown(test_carbons, setup, teardown),
		cmocka_unit_test_setup_teardown(test_purge, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
