/* control/roster.c: rosters and subscriptions driven through im_serve, as
 * the router would, against a real LMDB store in a mkdtemp directory, with
 * a fake struct im_out that records every post. The subscription tests are
 * the state tables of RFC 6121 appendix A, row by row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "control/account.h"
#include "control/im.h"
#include "parser/xml.h"
#include "store/store.h"

#define DOMAIN "example.com"

enum { P_SESSION = 1, P_ROUTE, P_EVENT, P_USER_EVENT };

struct post {
	int kind;
	uint64_t handle;
	unsigned ev;
	char user[128];
	uint8_t *data;
	size_t len;
};

struct fx {
	char root[64];
	char dir[96];
	struct store *st;
	struct server_config *cfg;
	struct im_ctx ctx;
	struct im_out out;
	struct post post[512];
	size_t npost;
	const char *online[16];   /* bare JIDs with an available resource */
	size_t nonline;
	unsigned bad_order;       /* posts seen before their change was in the store */
};

static struct fx *F;

/* ---- the fake router ---------------------------------------------------- */

static struct post *record(struct fx *f, int kind, const void *data, size_t len)
{
	assert_true(f->npost < sizeof(f->post) / sizeof(f->post[0]));
	struct post *p = &f->post[f->npost++];
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	p->data = malloc(len + 1);
	memcpy(p->data, data, len);
	p->data[len] = 0;
	p->len = len;
	return p;
}

/* attribute name='v' or name="v" of the first tag of s, into out */
static bool attr_of(const char *s, size_t len, const char *name, char *out, size_t cap)
{
	char pat[32];
	snprintf(pat, sizeof(pat), " %s=", name);
	const char *end = memchr(s, '>', len);
	const char *p = strstr(s, pat);
	if (!p || (end && p > end))
		return false;
	p += strlen(pat);
	char q = *p++;
	const char *e = strchr(p, q);
	if (!e || (size_t)(e - p) >= cap)
		return false;
	memcpy(out, p, (size_t)(e - p));
	out[e - p] = 0;
	return true;
}

static bool is_online(struct fx *f, const char *bare, size_t len)
{
	for (size_t i = 0; i < f->nonline; i++)
		if (strlen(f->online[i]) == len && !memcmp(f->online[i], bare, len))
			return true;
	return false;
}

static void fake_to_session(void *srv, uint64_t handle, const void *stanza, size_t len)
{
	struct post *p = record(srv, P_SESSION, stanza, len);
	p->handle = handle;
}

static unsigned fake_route(void *srv, const void *stanza, size_t len)
{
	struct fx *f = srv;
	record(f, P_ROUTE, stanza, len);
	char to[512];
	if (!attr_of(stanza, len, "to", to, sizeof(to)))
		return 0;
	char *sl = strchr(to, '/');
	return is_online(f, to, sl ? (size_t)(sl - to) : strlen(to)) ? 1 : 0;
}

static void fake_event(void *srv, uint64_t handle, unsigned ev, const void *payload, size_t len)
{
	struct post *p = record(srv, P_EVENT, payload, len);
	p->handle = handle;
	p->ev = ev;
}

/* A push must never come before its change is durable. */
static void check_committed(struct fx *f, const char *bare, size_t blen, const uint8_t *payload)
{
	struct im_contact ic;
	memcpy(&ic, payload, sizeof(ic));
	char key[1024];
	size_t kl = im_key(key, sizeof(key), bare, blen, (const char *)payload + sizeof(ic), ic.len);
	struct store_buf b = { 0 };
	int rc = store_get(f->st, NULL, STORE_T_ROSTER, key, kl, &b);
	if (ic.sub == IM_SUB_REMOVE ? rc != STORE_NOTFOUND : rc != STORE_OK)
		f->bad_order++;
	store_buf_free(&b);
}

static unsigned fake_user_event(void *srv, const char *bare, size_t bare_len, unsigned ev, const void *payload,
				size_t len)
{
	struct fx *f = srv;
	if (ev == IM_EV_CONTACT)
		check_committed(f, bare, bare_len, payload);
	struct post *p = record(f, P_USER_EVENT, payload, len);
	p->ev = ev;
	assert_true(bare_len < sizeof(p->user));
	memcpy(p->user, bare, bare_len);
	p->user[bare_len] = 0;
	return 1;
}

static unsigned fake_available(void *srv, const char *bare, size_t bare_len, bool nonneg)
{
	(void)nonneg;
	return is_online(srv, bare, bare_len) ? 1 : 0;
}

static size_t fake_kick(void *srv, const char *jid, size_t len, const char *cond)
{
	(void)srv;
	(void)jid;
	(void)len;
	(void)cond;
	return 0;
}

static void clear_posts(struct fx *f)
{
	for (size_t i = 0; i < f->npost; i++)
		free(f->post[i].data);
	f->npost = 0;
}

/* ---- fixture ---------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void open_all(struct fx *f)
{
	assert_int_equal(store_open(&f->st, f->dir, NULL), STORE_OK);
	assert_int_equal(im_init(&f->ctx, f->st, f->cfg), 0);
}

static void close_all(struct fx *f)
{
	im_free(&f->ctx);
	store_close(f->st);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	strcpy(f->root, "/tmp/stanzad-roster-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->dir, sizeof f->dir, "%s/db", f->root);
	f->cfg = calloc(1, sizeof(*f->cfg));
	strcpy(f->cfg->vhost[0].domain, DOMAIN);
	f->cfg->nvhost = 1;
	xml_limits_default(&f->cfg->xml);
	f->cfg->im.roster_max = 2000;
	f->cfg->im.pending_max = 100;
	f->cfg->im.offline_max = 100;
	f->cfg->im.privacy_max_items = 100;
	f->out = (struct im_out){ f, fake_to_session, fake_route, fake_event, fake_user_event, fake_available,
				  fake_kick };
	open_all(f);
	F = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	assert_int_equal(f->bad_order, 0);
	clear_posts(f);
	close_all(f);
	nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f->cfg);
	free(f);
	return 0;
}

static void add_user(struct fx *f, const char *bare)
{
	assert_int_equal(account_add(f->st, bare, "secret", 6, 4096), 0);
}

/* ---- requests ------------------------------------------------------------------ */

static void serve(struct fx *f, uint8_t type, const char *jid, const char *stanza)
{
	struct im_req h;
	memset(&h, 0, sizeof(h));
	h.type = type;
	h.vhost = 0;
	h.jid_len = (uint16_t)strlen(jid);
	h.len = stanza ? (uint32_t)strlen(stanza) : 0;
	im_serve(&f->ctx, 7, &h, jid, stanza ? stanza : "", &f->out);
}

/* A stanza from the session of full JID `from` (the router stamps 'from'). */
static void stanza(struct fx *f, const char *from, const char *fmt, ...)
{
	char body[8192], st[9000];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	/* insert from='...' after the element name */
	const char *sp = strpbrk(body, " />");
	snprintf(st, sizeof(st), "%.*s from='%s'%s", (int)(sp - body), body, from, sp);
	serve(f, IM_REQ_STANZA, from, st);
}

static void presence(struct fx *f, const char *from, const char *to, const char *type)
{
	stanza(f, from, "<presence to='%s' type='%s'/>", to, type);
}

static size_t count(struct fx *f, int kind, const char *needle)
{
	size_t n = 0;
	for (size_t i = 0; i < f->npost; i++) {
		const char *d = (const char *)f->post[i].data;
		if (f->post[i].kind != kind)
			continue;
		if (!needle) {
			n++;
			continue;
		}
		for (size_t o = 0; o + strlen(needle) <= f->post[i].len; o++)
			if (!memcmp(d + o, needle, strlen(needle))) {
				n++;
				break;
			}
	}
	return n;
}

/* Routed stanzas of type `type` to bare JID `to` (any resource). */
static size_t routed(struct fx *f, const char *to, const char *type)
{
	size_t n = 0;
	for (size_t i = 0; i < f->npost; i++) {
		char t[512], ty[32];
		if (f->post[i].kind != P_ROUTE)
			continue;
		if (!attr_of((char *)f->post[i].data, f->post[i].len, "to", t, sizeof(t)))
			continue;
		char *sl = strchr(t, '/');
		if (sl)
			*sl = 0;
		if (strcmp(t, to))
			continue;
		if (!attr_of((char *)f->post[i].data, f->post[i].len, "type", ty, sizeof(ty)))
			strcpy(ty, "");
		if (!strcmp(ty, type))
			n++;
	}
	return n;
}

/* Roster pushes (IM_EV_CONTACT with a stanza) to user `bare` containing needle. */
static size_t pushes(struct fx *f, const char *bare, const char *needle)
{
	size_t n = 0;
	for (size_t i = 0; i < f->npost; i++) {
		struct post *p = &f->post[i];
		if (p->kind != P_USER_EVENT || p->ev != IM_EV_CONTACT || strcmp(p->user, bare))
			continue;
		struct im_contact ic;
		memcpy(&ic, p->data, sizeof(ic));
		const char *st = (const char *)p->data + sizeof(ic) + IM_REC_ALIGN(ic.len);
		if (!needle || strstr(st, needle))
			n++;
	}
	return n;
}

/* IM_EV_PRESENCE_TO events: `of` sends presence (flags) to `to`. */
static size_t presence_to(struct fx *f, const char *of, const char *to, unsigned flags)
{
	size_t n = 0;
	for (size_t i = 0; i < f->npost; i++) {
		struct post *p = &f->post[i];
		if (p->kind != P_USER_EVENT || p->ev != IM_EV_PRESENCE_TO || strcmp(p->user, of))
			continue;
		struct im_presence_to pt;
		memcpy(&pt, p->data, sizeof(pt));
		if (pt.flags == flags && pt.len == strlen(to) && !memcmp(p->data + sizeof(pt), to, pt.len))
			n++;
	}
	return n;
}

static unsigned sub_of(struct fx *f, const char *user, const char *peer)
{
	return roster_sub_of(&f->ctx, user, strlen(user), peer, strlen(peer));
}

/* The last iq answer to the session (result or error). */
static const char *last_answer(struct fx *f)
{
	for (size_t i = f->npost; i-- > 0;) {
		if (f->post[i].kind == P_SESSION)
			return (const char *)f->post[i].data;
		if (f->post[i].kind == P_EVENT && f->post[i].ev == IM_EV_SEND)
			return (const char *)f->post[i].data + sizeof(struct im_send_hdr);
	}
	return "";
}

static void roster_set(struct fx *f, const char *from, const char *item)
{
	stanza(f, from, "<iq type='set' id='s1'><query xmlns='jabber:iq:roster'>%s</query></iq>", item);
}

static void expect_error(struct fx *f, const char *from, const char *item, const char *cond)
{
	clear_posts(f);
	roster_set(f, from, item);
	const char *a = last_answer(f);
	if (!strstr(a, "type='error'") || !strstr(a, cond))
		fail_msg("%s: expected %s, got %s", item, cond, a);
	assert_int_equal(pushes(f, "u@" DOMAIN, NULL), 0);
}

/* ---- seeding states directly (the record formats of roster.c) ------------------- */

static void seed(struct fx *f, const char *user, const char *contact, unsigned sub, bool listed)
{
	char key[1024];
	size_t kl = im_key(key, sizeof(key), user, strlen(user), contact, strlen(contact));
	if (listed) {
		uint8_t v[6] = { 1, (uint8_t)(sub & ~IM_SUB_PENDING_IN), 0, 0, 0, 0 };
		assert_int_equal(store_put(f->st, NULL, STORE_T_ROSTER, key, kl, v, sizeof(v), 0), STORE_OK);
	}
	if (sub & IM_SUB_PENDING_IN) {
		char v[512];
		int n = snprintf(v, sizeof(v), "%c<presence from='%s' to='%s' type='subscribe'/>", 1, contact, user);
		assert_int_equal(store_put(f->st, NULL, STORE_T_PENDING, key, kl, v, (size_t)n, 0), STORE_OK);
	}
}

#define NONE 0u
#define PO IM_SUB_PENDING_OUT
#define PI IM_SUB_PENDING_IN
#define TO IM_SUB_TO
#define FR IM_SUB_FROM
#define PRE IM_SUB_PREAPPROVED

/* The nine states of RFC 6121 appendix A.1. */
static const unsigned states[9] = { NONE, PO, PI, PO | PI, TO, TO | PI, FR, FR | PO, TO | FR };

struct row {
	bool yes;         /* ROUTE? / DELIVER? */
	unsigned next;    /* NEW STATE */
};

static const char *types[4] = { "subscribe", "unsubscribe", "subscribed", "unsubscribed" };

/* A.2.1 - A.2.4, outbound (the user's server), rows in the order of states[]. */
static const struct row outbound_table[4][9] = {
	/* A.2.1 subscribe */
	{ { 1, PO }, { 1, PO }, { 1, PO | PI }, { 1, PO | PI }, { 1, TO }, { 1, TO | PI }, { 1, FR | PO },
	  { 1, FR | PO }, { 1, TO | FR } },
	/* A.2.2 unsubscribe */
	{ { 1, NONE }, { 1, NONE }, { 1, PI }, { 1, PI }, { 1, NONE }, { 1, PI }, { 1, FR }, { 1, FR }, { 1, FR } },
	/* A.2.3 subscribed ("pre-approval" rows: 3.4) */
	{ { 0, PRE }, { 0, PO | PRE }, { 1, FR }, { 1, FR | PO }, { 0, TO | PRE }, { 1, TO | FR }, { 0, FR },
	  { 0, FR | PO }, { 0, TO | FR } },
	/* A.2.4 unsubscribed */
	{ { 0, NONE }, { 0, PO }, { 1, NONE }, { 1, PO }, { 0, TO }, { 1, TO }, { 1, NONE }, { 1, PO }, { 1, TO } },
};

/* A.3.1 - A.3.4, inbound (the contact's server). */
static const struct row inbound_table[4][9] = {
	/* A.3.1 subscribe (From rows: no delivery, the server auto-replies) */
	{ { 1, PI }, { 1, PO | PI }, { 0, PI }, { 0, PO | PI }, { 1, TO | PI }, { 0, TO | PI }, { 0, FR },
	  { 0, FR | PO }, { 0, TO | FR } },
	/* A.3.2 unsubscribe */
	{ { 0, NONE }, { 0, PO }, { 1, NONE }, { 1, PO }, { 0, TO }, { 1, TO }, { 1, NONE }, { 1, PO }, { 1, TO } },
	/* A.3.3 subscribed */
	{ { 0, NONE }, { 1, TO }, { 0, PI }, { 1, TO | PI }, { 0, TO }, { 0, TO | PI }, { 0, FR }, { 1, TO | FR },
	  { 0, TO | FR } },
	/* A.3.4 unsubscribed */
	{ { 0, NONE }, { 1, NONE }, { 0, PI }, { 1, PI }, { 1, NONE }, { 1, PI }, { 0, FR }, { 1, FR }, { 1, FR } },
};

/* Outbound: the user u<t>@example.com sends each type to remote contacts in
 * each state; routing is seen as <remote-server-not-found/> (no s2s). */
static void test_outbound_table(void **state)
{
	struct fx *f = *state;
	for (int t = 0; t < 4; t++) {
		char user[64];
		snprintf(user, sizeof(user), "out%d@" DOMAIN, t);
		for (int s = 0; s < 9; s++) {
			char c[64];
			snprintf(c, sizeof(c), "c%d@remote.example", s);
			seed(f, user, c, states[s], states[s] != PI);
		}
		for (int s = 0; s < 9; s++) {
			char c[64], full[80];
			snprintf(c, sizeof(c), "c%d@remote.example", s);
			snprintf(full, sizeof(full), "%s/res", user);
			clear_posts(f);
			presence(f, full, c, types[t]);
			const struct row *r = &outbound_table[t][s];
			size_t errs = count(f, P_SESSION, "remote-server-not-found");
			unsigned got = sub_of(f, user, c);
			if ((errs == 1) != r->yes || got != r->next)
				fail_msg("outbound %s in state %u: route %zu (want %d), state %u (want %u)", types[t],
					 states[s], errs, r->yes, got, r->next);
			/* a visible change is pushed, with the new state */
			bool changed = (states[s] & ~PI) != (r->next & ~PI);
			assert_int_equal(pushes(f, user, NULL), changed ? 1 : 0);
			assert_int_equal(routed(f, c, types[t]), 0);   /* never to another domain */
		}
	}
}

/* Inbound: local senders s<t> send each type to local contacts p<k> in each
 * state; the sender's own state makes its server route the stanza (subscribe
 * and unsubscribe always go; subscribed and unsubscribed need Pending In). */
static void test_inbound_table(void **state)
{
	struct fx *f = *state;
	char p[9][64], s[4][64];
	for (int k = 0; k < 9; k++) {
		snprintf(p[k], sizeof(p[k]), "p%d@" DOMAIN, k);
		add_user(f, p[k]);
		f->online[f->nonline++] = p[k];
	}
	for (int t = 0; t < 4; t++) {
		snprintf(s[t], sizeof(s[t]), "s%d@" DOMAIN, t);
		add_user(f, s[t]);
	}
	for (int t = 0; t < 4; t++) {
		for (int k = 0; k < 9; k++) {
			seed(f, p[k], s[t], states[k], states[k] != PI);
			if (t >= 2)
				seed(f, s[t], p[k], PI, false);
		}
	}
	for (int t = 0; t < 4; t++) {
		char full[80];
		snprintf(full, sizeof(full), "%s/res", s[t]);
		for (int k = 0; k < 9; k++) {
			clear_posts(f);
			presence(f, full, p[k], types[t]);
			const struct row *r = &inbound_table[t][k];
			size_t del = routed(f, p[k], types[t]);
			unsigned got = sub_of(f, p[k], s[t]);
			if ((del == 1) != r->yes || del > 1 || got != r->next)
				fail_msg("inbound %s in state %u: deliver %zu (want %d), state %u (want %u)", types[t],
					 states[k], del, r->yes, got, r->next);
			/* the delivered stanza carries the sender's bare JID (3.1.2) */
			if (del) {
				char from[80];
				snprintf(from, sizeof(from), "from='%s'", s[t]);
				assert_int_equal(count(f, P_ROUTE, from), count(f, P_ROUTE, NULL));
			}
			/* A.3.1 *: a contact who already approved answers for itself */
			if (t == 0 && (states[k] & FR)) {
				assert_int_equal(routed(f, s[t], "subscribed"), 1);
				assert_int_equal(presence_to(f, p[k], s[t], 0), 1);
			}
			bool changed = (states[k] & ~PI) != (r->next & ~PI);
			assert_int_equal(pushes(f, p[k], NULL), changed ? 1 : 0);
		}
	}
}

/* ---- roster get / set / versioning ------------------------------------------- */

static void get_roster(struct fx *f, const char *from, const char *ver)
{
	if (ver)
		stanza(f, from, "<iq type='get' id='g1'><query xmlns='jabber:iq:roster' ver='%s'/></iq>", ver);
	else
		stanza(f, from, "<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>");
}

static void ver_of(const char *s, char out[64])
{
	const char *q = strstr(s, "ver=");
	assert_non_null(q);
	q += 4;
	char qc = *q++;
	const char *e = strchr(q, qc);
	memcpy(out, q, (size_t)(e - q));
	out[e - q] = 0;
}

static void test_set_get_versioning(void **state)
{
	struct fx *f = *state;
	const char *u = "u@" DOMAIN "/a";

	clear_posts(f);
	get_roster(f, u, "");
	/* the result is an IM_EV_SEND that makes the session interested */
	assert_int_equal(f->npost, 1);
	assert_int_equal(f->post[0].kind, P_EVENT);
	assert_int_equal(f->post[0].ev, IM_EV_SEND);
	struct im_send_hdr h;
	memcpy(&h, f->post[0].data, sizeof(h));
	assert_int_equal(h.set, IM_SF_ROSTER);
	assert_non_null(strstr(last_answer(f), "type='result'"));
	assert_non_null(strstr(last_answer(f), "id='g1'"));
	assert_non_null(strstr(last_answer(f), "to='u@example.com/a'"));

	clear_posts(f);
	roster_set(f, u, "<item jid='Romeo@Example.com' name='R &amp; J'><group>Friends</group><group>Work</group></item>");
	assert_non_null(strstr(last_answer(f), "type='result'"));
	assert_int_equal(pushes(f, "u@" DOMAIN, "jid='romeo@example.com'"), 1);
	assert_int_equal(pushes(f, "u@" DOMAIN, "<group>Friends</group><group>Work</group>"), 1);
	assert_int_equal(pushes(f, "u@" DOMAIN, "name='R &amp; J'"), 1);
	assert_int_equal(pushes(f, "u@" DOMAIN, "subscription='none'"), 1);
	assert_int_equal(pushes(f, "u@" DOMAIN, "type='set'"), 1);
	/* the push comes before the result */
	assert_int_equal(f->post[0].kind, P_USER_EVENT);

	clear_posts(f);
	get_roster(f, u, NULL);
	char v1[64];
	ver_of(last_answer(f), v1);
	assert_non_null(strstr(last_answer(f), "<item jid='romeo@example.com' name='R &amp; J' subscription='none'>"));

	/* same version: empty result (2.6.3) */
	clear_posts(f);
	get_roster(f, u, v1);
	assert_null(strstr(last_answer(f), "<query"));
	assert_non_null(strstr(last_answer(f), "type='result'"));
	memcpy(&h, f->post[0].data, sizeof(h));
	assert_int_equal(h.set, IM_SF_ROSTER);

	/* a change: a new version, in the push and in the next result */
	clear_posts(f);
	roster_set(f, u, "<item jid='romeo@example.com'/>");
	assert_int_equal(pushes(f, "u@" DOMAIN, "<group>"), 0);
	char pv[64];
	struct im_contact ic;
	memcpy(&ic, f->post[0].data, sizeof(ic));
	ver_of((char *)f->post[0].data + sizeof(ic) + IM_REC_ALIGN(ic.len), pv);
	assert_string_not_equal(pv, v1);
	clear_posts(f);
	get_roster(f, u, v1);
	char v2[64];
	ver_of(last_answer(f), v2);
	assert_string_equal(v2, pv);
	assert_non_null(strstr(last_answer(f), "romeo@example.com"));

	/* remove: pushed as subscription='remove', gone from the roster */
	clear_posts(f);
	roster_set(f, u, "<item jid='romeo@example.com' subscription='remove'/>");
	assert_non_null(strstr(last_answer(f), "type='result'"));
	assert_int_equal(pushes(f, "u@" DOMAIN, "subscription='remove'"), 1);
	clear_posts(f);
	get_roster(f, u, NULL);
	assert_null(strstr(last_answer(f), "romeo"));
	assert_int_equal(sub_of(f, "u@" DOMAIN, "romeo@example.com"), 0);
}

static void test_validation(void **state)
{
	struct fx *f = *state;
	const char *u = "u@" DOMAIN "/a";
	char big[2100];

	expect_error(f, u, "<item jid='a@example.com'/><item jid='b@example.com'/>", "bad-request");
	expect_error(f, u, "", "bad-request");
	expect_error(f, u, "<item jid='a@example.com'><group>G</group><group>G</group></item>", "bad-request");
	expect_error(f, u, "<item jid='a@example.com'><group></group></item>", "not-acceptable");
	memset(big, 'g', 1500);
	big[1500] = 0;
	char item[4000];
	snprintf(item, sizeof(item), "<item jid='a@example.com'><group>%s</group></item>", big);
	expect_error(f, u, item, "not-acceptable");
	snprintf(item, sizeof(item), "<item jid='a@example.com' name='%s'/>", big);
	expect_error(f, u, item, "not-acceptable");
	expect_error(f, u, "<item jid='u@example.com'/>", "not-allowed");
	expect_error(f, u, "<item jid='a@@example.com'/>", "jid-malformed");
	expect_error(f, u, "<item name='x'/>", "bad-request");
	expect_error(f, u, "<item jid='nobody@example.com' subscription='remove'/>", "item-not-found");
	/* nothing of the above was stored */
	clear_posts(f);
	get_roster(f, u, NULL);
	assert_null(strstr(last_answer(f), "<item"));

	/* a set addressed to another user: a forged push, refused (2.1.5, 2.3.3) */
	clear_posts(f);
	stanza(f, u, "<iq type='set' id='x' to='v@example.com'><query xmlns='jabber:iq:roster'>"
		     "<item jid='evil@example.com'/></query></iq>");
	assert_non_null(strstr(last_answer(f), "forbidden"));
	assert_int_equal(count(f, P_USER_EVENT, NULL), 0);
	clear_posts(f);
	stanza(f, u, "<iq type='get' id='x' to='v@example.com'><query xmlns='jabber:iq:roster'/></iq>");
	assert_non_null(strstr(last_answer(f), "forbidden"));
	/* to one's own bare JID is fine */
	clear_posts(f);
	stanza(f, u, "<iq type='set' id='y' to='u@example.com'><query xmlns='jabber:iq:roster'>"
		     "<item jid='ok@example.com'/></query></iq>");
	assert_non_null(strstr(last_answer(f), "type='result'"));

	/* 'subscription' other than remove, 'ask' and 'approved' are ignored in a set */
	clear_posts(f);
	roster_set(f, u, "<item jid='b@example.com' subscription='both' ask='subscribe' approved='true'/>");
	assert_int_equal(pushes(f, "u@" DOMAIN, "subscription='none'"), 1);
	assert_int_equal(pushes(f, "u@" DOMAIN, "ask="), 0);
	assert_int_equal(pushes(f, "u@" DOMAIN, "approved="), 0);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "b@example.com"), 0);

	/* roster_max */
	f->cfg->im.roster_max = 3;
	roster_set(f, u, "<item jid='c@example.com'/>");
	expect_error(f, u, "<item jid='d@example.com'/>", "not-acceptable");
	/* updating an existing item is still fine */
	clear_posts(f);
	roster_set(f, u, "<item jid='c@example.com' name='C'/>");
	assert_non_null(strstr(last_answer(f), "type='result'"));
}

/* ---- subscriptions between local users ------------------------------------------ */

static void test_subscribe_approve_flow(void **state)
{
	struct fx *f = *state;
	add_user(f, "u@" DOMAIN);
	add_user(f, "v@" DOMAIN);
	f->online[f->nonline++] = "v@" DOMAIN;

	clear_posts(f);
	stanza(f, "u@" DOMAIN "/a", "<presence to='v@example.com' type='subscribe' id='s1'><status>hi</status></presence>");
	/* to v's resources, from u's bare JID, status kept */
	assert_int_equal(routed(f, "v@" DOMAIN, "subscribe"), 1);
	assert_int_equal(count(f, P_ROUTE, "from='u@example.com'"), 1);
	assert_int_equal(count(f, P_ROUTE, "<status>hi</status>"), 1);
	assert_int_equal(pushes(f, "u@" DOMAIN, "ask='subscribe'"), 1);
	assert_int_equal(pushes(f, "v@" DOMAIN, NULL), 0);   /* not in v's roster yet (3.1.3) */
	assert_int_equal(sub_of(f, "v@" DOMAIN, "u@" DOMAIN), PI);

	/* v approves */
	clear_posts(f);
	presence(f, "v@" DOMAIN "/b", "u@" DOMAIN, "subscribed");
	assert_int_equal(pushes(f, "v@" DOMAIN, "subscription='from'"), 1);
	assert_int_equal(pushes(f, "u@" DOMAIN, "subscription='to'"), 1);
	assert_int_equal(routed(f, "u@" DOMAIN, "subscribed"), 1);
	assert_int_equal(presence_to(f, "v@" DOMAIN, "u@" DOMAIN, 0), 1);   /* 3.1.5 */
	assert_int_equal(sub_of(f, "v@" DOMAIN, "u@" DOMAIN), FR);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "v@" DOMAIN), TO);

	/* v subscribes back: u must approve (u has no available resource:
	 * handed to the router, which delivers nothing, and kept) */
	clear_posts(f);
	presence(f, "v@" DOMAIN "/b", "u@" DOMAIN, "subscribe");
	assert_int_equal(routed(f, "u@" DOMAIN, "subscribe"), 1);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "v@" DOMAIN), TO | PI);
	presence(f, "u@" DOMAIN "/a", "v@" DOMAIN, "subscribed");
	assert_int_equal(sub_of(f, "v@" DOMAIN, "u@" DOMAIN), TO | FR);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "v@" DOMAIN), TO | FR);

	/* the contacts part of the session state */
	uint8_t buf[256];
	size_t len = 0;
	struct im_call c;
	memset(&c, 0, sizeof(c));
	c.ctx = &f->ctx;
	c.jid = "u@" DOMAIN "/a";
	c.jid_len = strlen(c.jid);
	c.bare_len = strlen("u@" DOMAIN);
	assert_int_equal(roster_state(&c, buf, sizeof(buf), &len), 1);
	struct im_contact ic;
	memcpy(&ic, buf, sizeof(ic));
	assert_int_equal(ic.sub, TO | FR);
	assert_int_equal(ic.len, strlen("v@" DOMAIN));
	assert_memory_equal(buf + sizeof(ic), "v@" DOMAIN, ic.len);
	assert_int_equal(len, sizeof(ic) + IM_REC_ALIGN(ic.len));
	len = 0;
	assert_int_equal(roster_state(&c, buf, 8, &len), -1);

	/* u unsubscribes: v's resources send unavailable to u (3.3.3) */
	clear_posts(f);
	presence(f, "u@" DOMAIN "/a", "v@" DOMAIN, "unsubscribe");
	assert_int_equal(sub_of(f, "u@" DOMAIN, "v@" DOMAIN), FR);
	assert_int_equal(sub_of(f, "v@" DOMAIN, "u@" DOMAIN), TO);
	assert_int_equal(presence_to(f, "v@" DOMAIN, "u@" DOMAIN, IM_PT_UNAVAILABLE), 1);
	assert_int_equal(routed(f, "v@" DOMAIN, "unsubscribe"), 1);

	/* u cancels v's subscription: u's resources send unavailable to v (3.2.2) */
	clear_posts(f);
	presence(f, "u@" DOMAIN "/a", "v@" DOMAIN, "unsubscribed");
	assert_int_equal(sub_of(f, "u@" DOMAIN, "v@" DOMAIN), NONE);
	assert_int_equal(sub_of(f, "v@" DOMAIN, "u@" DOMAIN), NONE);
	assert_int_equal(presence_to(f, "u@" DOMAIN, "v@" DOMAIN, IM_PT_UNAVAILABLE), 1);
	assert_int_equal(pushes(f, "v@" DOMAIN, "subscription='none'"), 1);
}

static void test_remove_cancels_both_ways(void **state)
{
	struct fx *f = *state;
	add_user(f, "u@" DOMAIN);
	add_user(f, "v@" DOMAIN);
	f->online[f->nonline++] = "v@" DOMAIN;
	seed(f, "u@" DOMAIN, "v@" DOMAIN, TO | FR, true);
	seed(f, "v@" DOMAIN, "u@" DOMAIN, TO | FR, true);

	clear_posts(f);
	roster_set(f, "u@" DOMAIN "/a", "<item jid='v@example.com' subscription='remove'/>");
	assert_non_null(strstr(last_answer(f), "type='result'"));
	assert_int_equal(pushes(f, "u@" DOMAIN, "subscription='remove'"), 1);
	/* 2.5.2: unsubscribe and unsubscribed reach v */
	assert_int_equal(routed(f, "v@" DOMAIN, "unsubscribe"), 1);
	assert_int_equal(routed(f, "v@" DOMAIN, "unsubscribed"), 1);
	assert_int_equal(sub_of(f, "v@" DOMAIN, "u@" DOMAIN), NONE);
	assert_int_equal(pushes(f, "v@" DOMAIN, NULL), 2);
	assert_int_equal(presence_to(f, "u@" DOMAIN, "v@" DOMAIN, IM_PT_UNAVAILABLE), 1);
	assert_int_equal(presence_to(f, "v@" DOMAIN, "u@" DOMAIN, IM_PT_UNAVAILABLE), 1);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "v@" DOMAIN), 0);

	/* removing an item with a pending request from the contact refuses it */
	add_user(f, "w@" DOMAIN);
	f->online[f->nonline++] = "w@" DOMAIN;
	presence(f, "w@" DOMAIN "/x", "u@" DOMAIN, "subscribe");
	roster_set(f, "u@" DOMAIN "/a", "<item jid='w@example.com'/>");
	assert_int_equal(sub_of(f, "u@" DOMAIN, "w@" DOMAIN), PI);
	clear_posts(f);
	roster_set(f, "u@" DOMAIN "/a", "<item jid='w@example.com' subscription='remove'/>");
	assert_int_equal(routed(f, "w@" DOMAIN, "unsubscribed"), 1);
	assert_int_equal(sub_of(f, "w@" DOMAIN, "u@" DOMAIN), NONE);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "w@" DOMAIN), NONE);
}

static void test_pending_delivery_and_flood(void **state)
{
	struct fx *f = *state;
	f->cfg->im.pending_max = 3;
	add_user(f, "v@" DOMAIN);
	char a[5][32];
	for (int i = 0; i < 5; i++) {
		snprintf(a[i], sizeof(a[i]), "a%d@" DOMAIN, i);
		add_user(f, a[i]);
	}
	/* v is offline: nothing delivered, requests kept */
	for (int i = 0; i < 5; i++) {
		char full[200];
		snprintf(full, sizeof(full), "%s/r", a[i]);
		clear_posts(f);
		stanza(f, full, "<presence to='v@example.com' type='subscribe'><status>from %d</status></presence>", i);
		/* kept (and tried: no available resource), or dropped past pending_max */
		assert_int_equal(count(f, P_ROUTE, NULL), i < 3 ? 1 : 0);
		/* the sender's side is updated whatever happens on the other side */
		assert_int_equal(sub_of(f, a[i], "v@" DOMAIN), PO);
	}
	assert_int_equal(sub_of(f, "v@" DOMAIN, a[0]), PI);
	assert_int_equal(sub_of(f, "v@" DOMAIN, a[2]), PI);
	assert_int_equal(sub_of(f, "v@" DOMAIN, a[3]), 0);   /* beyond pending_max: dropped */
	assert_int_equal(sub_of(f, "v@" DOMAIN, a[4]), 0);
	/* a repeated request replaces the kept one */
	stanza(f, "a0@" DOMAIN "/r", "<presence to='v@example.com' type='subscribe'><status>again</status></presence>");
	uint64_t n = 0;
	char prefix[64];
	size_t pl = im_key(prefix, sizeof(prefix), "v@" DOMAIN, strlen("v@" DOMAIN), NULL, 0);
	assert_int_equal(store_count(f->st, NULL, STORE_T_PENDING, prefix, pl, &n), STORE_OK);
	assert_int_equal(n, 3);

	/* initial presence: the requests, with a delay stamp */
	clear_posts(f);
	serve(f, IM_REQ_INITIAL_PRESENCE, "v@" DOMAIN "/home", NULL);
	assert_int_equal(count(f, P_EVENT, "type='subscribe'"), 3);
	assert_int_equal(count(f, P_EVENT, "<status>again</status>"), 1);
	assert_int_equal(count(f, P_EVENT, "<status>from 0</status>"), 0);
	assert_int_equal(count(f, P_EVENT, "urn:xmpp:delay"), 3);
	assert_int_equal(count(f, P_EVENT, "from='a1@example.com'"), 1);
	for (size_t i = 0; i < f->npost; i++) {
		assert_int_equal(f->post[i].ev, IM_EV_SEND);
		assert_int_equal(f->post[i].handle, 7);
	}

	/* answered requests are not delivered again; the others are */
	presence(f, "v@" DOMAIN "/home", a[0], "subscribed");
	presence(f, "v@" DOMAIN "/home", a[1], "unsubscribed");
	assert_int_equal(sub_of(f, a[1], "v@" DOMAIN), NONE);
	assert_int_equal(sub_of(f, a[0], "v@" DOMAIN), TO);
	clear_posts(f);
	serve(f, IM_REQ_INITIAL_PRESENCE, "v@" DOMAIN "/phone", NULL);
	assert_int_equal(count(f, P_EVENT, "type='subscribe'"), 1);
	assert_int_equal(count(f, P_EVENT, "from='a2@example.com'"), 1);
	/* room again: a new request is kept */
	stanza(f, "a3@" DOMAIN "/r", "<presence to='v@example.com' type='subscribe'/>");
	assert_int_equal(sub_of(f, "v@" DOMAIN, a[3]), PI);
}

static void test_preapproval(void **state)
{
	struct fx *f = *state;
	add_user(f, "u@" DOMAIN);
	add_user(f, "v@" DOMAIN);
	f->online[f->nonline++] = "v@" DOMAIN;
	f->online[f->nonline++] = "u@" DOMAIN;

	/* 3.4: v pre-approves u */
	clear_posts(f);
	presence(f, "v@" DOMAIN "/b", "u@" DOMAIN, "subscribed");
	assert_int_equal(pushes(f, "v@" DOMAIN, "approved='true'"), 1);
	assert_int_equal(count(f, P_ROUTE, NULL), 0);
	assert_int_equal(sub_of(f, "v@" DOMAIN, "u@" DOMAIN), PRE);

	/* u subscribes: approved at once, v is not asked */
	clear_posts(f);
	presence(f, "u@" DOMAIN "/a", "v@" DOMAIN, "subscribe");
	assert_int_equal(routed(f, "v@" DOMAIN, "subscribe"), 0);
	assert_int_equal(routed(f, "u@" DOMAIN, "subscribed"), 1);
	assert_int_equal(sub_of(f, "v@" DOMAIN, "u@" DOMAIN), FR);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "v@" DOMAIN), TO);
	assert_int_equal(pushes(f, "v@" DOMAIN, "subscription='from'"), 1);
	assert_int_equal(pushes(f, "v@" DOMAIN, "approved="), 0);
	assert_int_equal(presence_to(f, "v@" DOMAIN, "u@" DOMAIN, 0), 1);

	/* unsubscribed cancels a pre-approval */
	presence(f, "v@" DOMAIN "/b", "w@" DOMAIN, "subscribed");
	assert_int_equal(sub_of(f, "v@" DOMAIN, "w@" DOMAIN), PRE);
	clear_posts(f);
	presence(f, "v@" DOMAIN "/b", "w@" DOMAIN, "unsubscribed");
	assert_int_equal(sub_of(f, "v@" DOMAIN, "w@" DOMAIN), NONE);
	assert_int_equal(pushes(f, "v@" DOMAIN, "subscription='none'"), 1);
}

static void test_unknown_and_remote(void **state)
{
	struct fx *f = *state;
	add_user(f, "u@" DOMAIN);
	/* 3.1.3: to a local user that does not exist: silently dropped */
	clear_posts(f);
	presence(f, "u@" DOMAIN "/a", "ghost@" DOMAIN, "subscribe");
	assert_int_equal(count(f, P_ROUTE, NULL), 0);
	assert_int_equal(count(f, P_SESSION, NULL), 0);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "ghost@" DOMAIN), PO);
	/* to another domain: no s2s yet, the user's side changes and the
	 * stanza is answered with remote-server-not-found */
	clear_posts(f);
	presence(f, "u@" DOMAIN "/a", "x@remote.example/res", "subscribe");
	assert_int_equal(count(f, P_SESSION, "remote-server-not-found"), 1);
	assert_int_equal(count(f, P_SESSION, "from='x@remote.example/res'"), 1);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "x@remote.example"), PO);
	assert_int_equal(pushes(f, "u@" DOMAIN, "jid='x@remote.example'"), 1);
	/* presence to oneself or to the server: nothing */
	clear_posts(f);
	presence(f, "u@" DOMAIN "/a", "u@" DOMAIN, "subscribe");
	presence(f, "u@" DOMAIN "/a", DOMAIN, "subscribe");
	assert_int_equal(f->npost, 0);
}

static void test_probe(void **state)
{
	struct fx *f = *state;
	add_user(f, "u@" DOMAIN);
	add_user(f, "v@" DOMAIN);
	seed(f, "v@" DOMAIN, "u@" DOMAIN, FR, true);
	seed(f, "v@" DOMAIN, "w@" DOMAIN, TO, true);

	clear_posts(f);
	stanza(f, "u@" DOMAIN "/a", "<presence to='v@example.com' type='probe'/>");
	assert_int_equal(count(f, P_ROUTE, NULL), 1);
	assert_int_equal(count(f, P_ROUTE, "type='unavailable'"), 1);
	assert_int_equal(count(f, P_ROUTE, "from='v@example.com'"), 1);
	assert_int_equal(count(f, P_ROUTE, "to='u@example.com/a'"), 1);

	/* not authorised (To only, or not in the roster): no answer */
	clear_posts(f);
	stanza(f, "w@" DOMAIN "/a", "<presence to='v@example.com' type='probe'/>");
	stanza(f, "z@" DOMAIN "/a", "<presence to='v@example.com' type='probe'/>");
	assert_int_equal(f->npost, 0);
}

static void test_durability(void **state)
{
	struct fx *f = *state;
	add_user(f, "u@" DOMAIN);
	add_user(f, "v@" DOMAIN);
	roster_set(f, "u@" DOMAIN "/a", "<item jid='friend@example.com' name='F'><group>G1</group></item>");
	presence(f, "u@" DOMAIN "/a", "v@" DOMAIN, "subscribe");
	clear_posts(f);
	get_roster(f, "u@" DOMAIN "/a", NULL);
	char v1[64];
	ver_of(last_answer(f), v1);
	char before[4096];
	snprintf(before, sizeof(before), "%s", last_answer(f));

	close_all(f);
	open_all(f);

	assert_int_equal(sub_of(f, "u@" DOMAIN, "v@" DOMAIN), PO);
	assert_int_equal(sub_of(f, "v@" DOMAIN, "u@" DOMAIN), PI);
	clear_posts(f);
	get_roster(f, "u@" DOMAIN "/a", v1);
	assert_null(strstr(last_answer(f), "<query"));   /* same version after the restart */
	clear_posts(f);
	get_roster(f, "u@" DOMAIN "/a", NULL);
	assert_string_equal(last_answer(f), before);
	clear_posts(f);
	serve(f, IM_REQ_INITIAL_PRESENCE, "v@" DOMAIN "/r", NULL);
	assert_int_equal(count(f, P_EVENT, "type='subscribe'"), 1);

	/* purge: everything of u is gone, the version starts anew */
	assert_int_equal(roster_purge(&f->ctx, "u@" DOMAIN, strlen("u@" DOMAIN)), 0);
	clear_posts(f);
	get_roster(f, "u@" DOMAIN "/a", v1);
	assert_non_null(strstr(last_answer(f), "<query"));
	assert_null(strstr(last_answer(f), "<item"));
	close_all(f);
	open_all(f);
	assert_int_equal(sub_of(f, "u@" DOMAIN, "friend@example.com"), 0);
}

static void collect(void *arg, const char *jid, size_t len)
{
	char *out = arg;
	strncat(out, jid, len);
	strcat(out, ";");
}

static void test_groups_and_lru(void **state)
{
	struct fx *f = *state;
	roster_cache_limit(&f->ctx, 1);
	roster_set(f, "u@" DOMAIN "/a", "<item jid='a@example.com'><group>G</group></item>");
	roster_set(f, "v@" DOMAIN "/a", "<item jid='b@example.com'><group>G</group></item>");
	roster_set(f, "u@" DOMAIN "/a", "<item jid='c@example.com'><group>H</group><group>G</group></item>");
	roster_set(f, "v@" DOMAIN "/a", "<item jid='d@example.com'><group>H</group></item>");
	char out[256] = "";
	roster_group_members(&f->ctx, "u@" DOMAIN, strlen("u@" DOMAIN), "G", 1, collect, out);
	assert_true(strstr(out, "a@example.com;") && strstr(out, "c@example.com;") && !strstr(out, "b@"));
	out[0] = 0;
	roster_group_members(&f->ctx, "v@" DOMAIN, strlen("v@" DOMAIN), "H", 1, collect, out);
	assert_string_equal(out, "d@example.com;");
	clear_posts(f);
	get_roster(f, "u@" DOMAIN "/a", NULL);
	assert_non_null(strstr(last_answer(f), "a@example.com"));
	assert_non_null(strstr(last_answer(f), "c@example.com"));
	assert_null(strstr(last_answer(f), "b@example.com"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_outbound_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inbound_table, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_get_versioning, setup, teardown),
		cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe_approve_flow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_cancels_both_ways, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pending_delivery_and_flood, setup, teardown),
		cmocka_unit_test_setup_teardown(test_preapproval, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_and_remote, setup, teardown),
		cmocka_unit_test_setup_teardown(test_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_durability, setup, teardown),
		cmocka_unit_test_setup_teardown(test_groups_and_lru, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
