/* register.c: XEP-0077 in-band registration. See control/im.h.
 *
 *   register_preauth_iq  before authentication (IM_REQ_PREAUTH_IQ, only with
 *                        im.register on): the form (username, password) and
 *                        account creation with salted SCRAM credentials
 *                        (control/account.c), rate limited per source
 *                        address to im.register_per_hour.
 *   register_iq          an authenticated user: the form with
 *                        <registered/>, password change (XEP-0077 3.3) and
 *                        cancellation (3.2): the account and every record of
 *                        the user go, then the user's sessions are closed
 *                        with <not-authorized/>.
 *
 * Passwords: copied out of the request only into buffers that are wiped
 * after use; never logged. The request bytes themselves belong to the
 * router (const here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "control/account.h"
#include "control/im.h"
#include "control/sasl-t.h"
#include "net/net-t.h"
#include "parser/xmlw.h"
#include "store/store.h"
#include "util/log.h"

#define NS_REGISTER "jabber:iq:register"
#define NS_STANZA_ERR "urn:ietf:params:xml:ns:xmpp-stanzas"

#define HOUR_MS   3600000
#define REG_SLOTS 4096u   /* addresses remembered, 4-way set-associative */
#define REG_WAYS  4u

_Static_assert(sizeof(struct net_addr) == sizeof(((struct im_req *)0)->peer), "im_req.peer is a struct net_addr");
_Static_assert((REG_SLOTS & (REG_SLOTS - 1)) == 0 && REG_SLOTS % REG_WAYS == 0, "slots");

/* Per address, a GCRA ("virtual scheduling") limiter: tat is the
 * theoretical arrival time of the next registration. With T = one hour /
 * register_per_hour, a registration at `now` is allowed when
 * now >= tat - (hour - T): register_per_hour at once from a fresh address,
 * then one per T. One 64-bit number per address, no timers. An address
 * evicted from its set by a flood of others starts afresh: the table
 * bounds memory, not the sum over all addresses. */
struct reg_slot {
	uint64_t tag;      /* 0: free */
	int64_t tat;       /* ms, monotonic */
};

struct register_state {
	uint64_t key[2];
	int64_t skew_ms;   /* tests */
	struct reg_slot slot[REG_SLOTS];
};

int register_init(struct im_ctx *ctx)
{
	struct register_state *rs = calloc(1, sizeof(*rs));

	if (!rs) {
		log_err("register: out of memory");
		return -1;
	}
	if (RAND_bytes((unsigned char *)rs->key, sizeof(rs->key)) != 1) {
		log_err("register: no random bytes for the rate limiter's key");
		free(rs);
		return -1;
	}
	ctx->reg = rs;
	return 0;
}

void register_free(struct im_ctx *ctx)
{
	free(ctx->reg);
	ctx->reg = NULL;
}

void register_clock_skew(struct im_ctx *ctx, int64_t ms)
{
	ctx->reg->skew_ms += ms;
}

static int64_t now_ms(const struct register_state *rs)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + rs->skew_ms;
}

/* The address without its port (each connection has a new one), an IPv6
 * peer by its /64, keyed so that nobody can aim at one set. */
static uint64_t addr_tag(const struct register_state *rs, const uint8_t *peer)
{
	struct net_addr na;
	uint8_t b[9];
	size_t n;

	memcpy(&na, peer, sizeof(na));
	b[0] = na.family;
	n = na.family == NET_AF_INET6 ? 8 : 4;
	memcpy(b + 1, na.addr, n);
	uint64_t h = 0xcbf29ce484222325ull ^ rs->key[0];
	for (size_t i = 0; i < n + 1; i++) {
		h ^= b[i];
		h *= 0x100000001b3ull;
	}
	h ^= rs->key[1];
	h ^= h >> 31;
	h *= 0x7fb5d329728ea185ull;
	h ^= h >> 27;
	return h | 1;   /* never 0, the free tag */
}

static struct reg_slot *slot_of(struct register_state *rs, uint64_t tag, bool create)
{
	struct reg_slot *set = &rs->slot[(tag >> 1) % (REG_SLOTS / REG_WAYS) * REG_WAYS];
	struct reg_slot *victim = &set[0];

	for (unsigned i = 0; i < REG_WAYS; i++) {
		if (set[i].tag == tag)
			return &set[i];
		if (set[i].tag == 0 || set[i].tat < victim->tat)
			victim = &set[i];
	}
	if (!create)
		return NULL;
	victim->tag = tag;
	victim->tat = 0;
	return victim;
}

static int64_t interval_ms(const struct im_ctx *ctx)
{
	uint32_t n = ctx->cfg->im.register_per_hour;
	int64_t t = HOUR_MS / (n ? n : 1);
	return t ? t : 1;
}

static bool rate_allows(struct im_ctx *ctx, const uint8_t *peer)
{
	struct register_state *rs = ctx->reg;
	struct reg_slot *s = slot_of(rs, addr_tag(rs, peer), false);

	return !s || now_ms(rs) >= s->tat - (HOUR_MS - interval_ms(ctx));
}

static void rate_count(struct im_ctx *ctx, const uint8_t *peer)
{
	struct register_state *rs = ctx->reg;
	struct reg_slot *s = slot_of(rs, addr_tag(rs, peer), true);
	int64_t now = now_ms(rs);

	s->tat = (s->tat > now ? s->tat : now) + interval_ms(ctx);
}

/* ---- the query ------------------------------------------------------------------ */

static bool iq_type_is(struct im_call *c, const char *t)
{
	char b[8];

	if (c->v->info.type == XML_NO_TOK || c->v->tok[c->v->info.type].b >= sizeof(b))
		return false;
	return xml_slice_eq(xml_tok_value(c->v, c->v->info.type, b), t);
}

/* An element's character data into dst[0..cap) (with a NUL after it);
 * false if it does not fit. Every intermediate copy is wiped: this reads
 * passwords. */
static bool field_text(struct xml_view *v, uint32_t elem, char *dst, size_t cap, size_t *len)
{
	size_t n = 0;
	bool ok = true;

	for (uint32_t t = elem + 1 + v->tok[elem].nattr; t < v->tok[elem].a && ok; t++) {
		const struct xml_token *k = &v->tok[t];
		if (k->type == XML_TOK_ELEM) {
			t = k->a;
			continue;
		}
		if (k->type != XML_TOK_TEXT)
			continue;
		char *tmp = malloc(k->len ? k->len : 1);
		if (!tmp)
			return false;
		struct xml_slice s = xml_tok_value(v, t, tmp);
		if (s.len >= cap - n)
			ok = false;
		else
			memcpy(dst + n, s.ptr, s.len), n += s.len;
		OPENSSL_cleanse(tmp, k->len ? k->len : 1);
		free(tmp);
	}
	dst[ok ? n : 0] = '\0';
	*len = ok ? n : 0;
	return ok;
}

struct fields {
	uint32_t username, password, remove;
	unsigned others;      /* child elements besides those */
};

static void read_fields(struct xml_view *v, uint32_t query, struct fields *f)
{
	memset(f, 0, sizeof(*f));
	f->username = f->password = f->remove = XML_NO_TOK;
	for (uint32_t ch = xml_first_child(v, query); ch != XML_NO_TOK; ch = xml_next_sibling(v, ch)) {
		struct xml_slice nm = xml_tok_local(v, ch), ns = xml_tok_ns(v, ch);
		if (!xml_slice_eq(ns, NS_REGISTER))
			f->others++;
		else if (xml_slice_eq(nm, "username") && f->username == XML_NO_TOK)
			f->username = ch;
		else if (xml_slice_eq(nm, "password") && f->password == XML_NO_TOK)
			f->password = ch;
		else if (xml_slice_eq(nm, "remove") && f->remove == XML_NO_TOK)
			f->remove = ch;
		else
			f->others++;
	}
}

/* The username nodeprepped (RFC 7622 3.3), into local[JID_PART_MAX + 1]. */
static bool username_prep(struct xml_view *v, uint32_t elem, char *local, size_t *ll)
{
	char raw[JID_PART_MAX + 1];
	size_t rl;

	if (elem == XML_NO_TOK || !field_text(v, elem, raw, sizeof(raw), &rl) || rl == 0)
		return false;
	return jid_prep(JID_LOCAL, raw, rl, local, JID_PART_MAX + 1, ll, 0) == JID_OK && *ll > 0;
}

static void error_text(struct im_call *c, const char *etype, const char *cond, const char *text)
{
	char app[256];
	int n = snprintf(app, sizeof(app), "<text xmlns='" NS_STANZA_ERR "'>%s</text>", text);

	im_error_app(c, etype, cond, app, (size_t)n);
}

static void account_error(struct im_call *c, int rc)
{
	switch (rc) {
	case ACCOUNT_EXISTS:
		im_error(c, "cancel", "conflict");
		break;
	case ACCOUNT_NOTFOUND:
		im_error(c, "auth", "registration-required");
		break;
	case ACCOUNT_BAD_JID:
	case ACCOUNT_BAD_PASSWORD:
		im_error(c, "modify", "not-acceptable");
		break;
	default:
		im_error(c, "wait", "internal-server-error");
		break;
	}
}

/* ---- before authentication ------------------------------------------------------ */

void register_preauth_iq(struct im_call *c, uint32_t child)
{
	struct im_ctx *ctx = c->ctx;

	if (!ctx->cfg->im.register_enabled || !c->domain) {
		im_error(c, "cancel", "service-unavailable");   /* XEP-0077 3.1 */
		return;
	}
	if (!xml_slice_eq(xml_tok_local(c->v, child), "query")) {
		im_error(c, "modify", "bad-request");
		return;
	}
	if (iq_type_is(c, "get")) {
		/* XEP-0077 3.1, 3.1.1: the entity is taken as unregistered. */
		static const char form[] =
			"<query xmlns='" NS_REGISTER "'>"
			"<instructions>Choose a username and password for use with this server.</instructions>"
			"<username/><password/></query>";
		im_result(c, form, sizeof(form) - 1);
		return;
	}
	if (!iq_type_is(c, "set")) {
		im_error(c, "modify", "bad-request");
		return;
	}
	struct fields f;
	read_fields(c->v, child, &f);
	if (f.remove != XML_NO_TOK) {
		/* XEP-0077 3.2: no account on this stream to cancel yet. */
		im_error(c, "cancel", "unexpected-request");
		return;
	}
	/* XEP-0077 3.1: everything asked for, and a password that is not
	 * empty, else <not-acceptable/>. */
	char local[JID_PART_MAX + 1];
	size_t ll;
	if (f.username == XML_NO_TOK || f.password == XML_NO_TOK || !username_prep(c->v, f.username, local, &ll)) {
		im_error(c, "modify", "not-acceptable");
		return;
	}
	/* XEP-0077 3.1.1: too many registrations is <not-acceptable/>;
	 * type wait: it passes. */
	if (!rate_allows(ctx, c->req->peer)) {
		log_info("register: refused from an address over im.register_per_hour (%u)",
			 ctx->cfg->im.register_per_hour);
		error_text(c, "wait", "not-acceptable", "Too many registrations from your address; try later.");
		return;
	}
	size_t dl = c->domain_len;
	if (ll + 1 + dl > store_max_key(ctx->store)) {
		im_error(c, "modify", "not-acceptable");
		return;
	}
	char bare[2 * (JID_PART_MAX + 1)];
	memcpy(bare, local, ll);
	bare[ll] = '@';
	memcpy(bare + ll + 1, c->domain, dl);
	bare[ll + 1 + dl] = '\0';
	/* Before the PBKDF2 work: a name taken costs a lookup only. */
	if (im_account_exists(ctx, bare, ll + 1 + dl)) {
		im_error(c, "cancel", "conflict");
		return;
	}
	char pass[SASL_PASS_MAX + 1];
	size_t pl;
	if (!field_text(c->v, f.password, pass, sizeof(pass), &pl) || pl == 0) {
		OPENSSL_cleanse(pass, sizeof(pass));
		im_error(c, "modify", "not-acceptable");
		return;
	}
	int rc = account_add(ctx->store, bare, pass, pl, ctx->cfg->scram_iterations);
	OPENSSL_cleanse(pass, sizeof(pass));
	if (rc != ACCOUNT_OK) {
		account_error(c, rc);
		return;
	}
	rate_count(ctx, c->req->peer);
	log_info("register: %s registered in-band", bare);
	im_result(c, NULL, 0);
}

/* ---- an authenticated user -------------------------------------------------------- */

static void cancel_registration(struct im_call *c, const struct fields *f)
{
	struct im_ctx *ctx = c->ctx;
	char bare[2 * (JID_PART_MAX + 1)];

	/* XEP-0077 3.2: <remove/> alone. */
	if (f->others || f->username != XML_NO_TOK || f->password != XML_NO_TOK) {
		im_error(c, "modify", "bad-request");
		return;
	}
	if (c->bare_len >= sizeof(bare)) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	memcpy(bare, c->jid, c->bare_len);
	bare[c->bare_len] = '\0';
	/* account_del takes the account and the user's records in one commit;
	 * im_purge_user then clears what the modules keep besides (caches). */
	roster_cancel_all(c);
	int rc = account_del(ctx->store, bare);
	if (rc != ACCOUNT_OK) {
		account_error(c, rc);
		return;
	}
	if (im_purge_user(ctx, bare, c->bare_len) < 0)
		log_err("register: %s removed, but some of its records were not", bare);
	log_info("register: %s cancelled its registration", bare);
	im_result(c, NULL, 0);
	/* XEP-0077 3.2: then every session of the account goes. */
	c->out->kick(c->out->srv, bare, c->bare_len, "not-authorized");
}

static void change_password(struct im_call *c, const struct fields *f)
{
	struct im_ctx *ctx = c->ctx;
	char local[JID_PART_MAX + 1], bare[2 * (JID_PART_MAX + 1)];
	size_t ll;
	const char *at = memchr(c->jid, '@', c->bare_len);

	/* XEP-0077 3.3: the username must be the account's own. */
	if (!at || f->others || f->username == XML_NO_TOK || f->password == XML_NO_TOK ||
	    !username_prep(c->v, f->username, local, &ll) || ll != (size_t)(at - c->jid) ||
	    memcmp(local, c->jid, ll) != 0 || c->bare_len >= sizeof(bare)) {
		im_error(c, "modify", "bad-request");
		return;
	}
	memcpy(bare, c->jid, c->bare_len);
	bare[c->bare_len] = '\0';
	char pass[SASL_PASS_MAX + 1];
	size_t pl;
	if (!field_text(c->v, f->password, pass, sizeof(pass), &pl) || pl == 0) {
		/* 3.3: never an empty password; the old one stays. */
		OPENSSL_cleanse(pass, sizeof(pass));
		im_error(c, "modify", "not-acceptable");
		return;
	}
	int rc = account_passwd(ctx->store, bare, pass, pl, ctx->cfg->scram_iterations);
	OPENSSL_cleanse(pass, sizeof(pass));
	if (rc != ACCOUNT_OK) {
		account_error(c, rc);
		return;
	}
	im_result(c, NULL, 0);   /* account_passwd committed */
}

void register_iq(struct im_call *c, uint32_t child)
{
	/* Only the own account, addressed as the server or the bare JID. */
	if ((c->to_kind != IM_TO_SERVER && c->to_kind != IM_TO_SELF) || !c->bare_len ||
	    !memchr(c->jid, '@', c->bare_len)) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	if (c->has_to && c->to_kind == IM_TO_SELF && !jid_is_bare(&c->to)) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	if (!xml_slice_eq(xml_tok_local(c->v, child), "query")) {
		im_error(c, "modify", "bad-request");
		return;
	}
	if (iq_type_is(c, "get")) {
		/* XEP-0077 3.1: registered, with what is on file (never the
		 * password: only salted credentials are kept). */
		const char *at = memchr(c->jid, '@', c->bare_len);
		char buf[512 + 6 * JID_PART_MAX];
		size_t esc = 0;
		int n = snprintf(buf, sizeof(buf),
				 "<query xmlns='" NS_REGISTER "'><registered/>"
				 "<instructions>You are registered. Send a new password to change it, "
				 "or remove to delete the account.</instructions><username>");
		if (xmlw_escape_text(buf + n, sizeof(buf) - (size_t)n, c->jid, (size_t)(at - c->jid), &esc) !=
		    XMLW_OK) {
			im_error(c, "wait", "internal-server-error");
			return;
		}
		n += (int)esc;
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "</username><password/></query>");
		im_result(c, buf, (size_t)n);
		return;
	}
	if (!iq_type_is(c, "set")) {
		im_error(c, "modify", "bad-request");
		return;
	}
	struct fields f;
	read_fields(c->v, child, &f);
	if (f.remove != XML_NO_TOK)
		cancel_registration(c, &f);
	else
		change_password(c, &f);
}
