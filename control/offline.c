/* offline.c: offline messages and last activity. See control/im.h.
 *
 *   offline_message          RFC 6121 8.5.2.2.1 / 8.5.3.2.1: a message for a
 *                            local user with no available resource is stored
 *                            (XEP-0160) with a XEP-0203 delay, or bounced
 *                            with <service-unavailable/> (no such user, queue
 *                            full, storage off, XEP-0334 no-store).
 *   offline_initial_presence XEP-0160 delivery at initial presence, unless
 *                            the user reads the queue with XEP-0013.
 *   offline_iq, offline_disco_info, offline_disco_items
 *                            XEP-0013 flexible offline message retrieval.
 *   offline_unacked          XEP-0198 5: what a dead session had not
 *                            acknowledged goes to another resource or to
 *                            the queue.
 *   last_*                   XEP-0012 last activity.
 *
 * Records. The queue of STORE_T_OFFLINE named by the owner's bare JID holds
 * the message bytes as they will be delivered (the delay already in); its
 * sequence numbers, in decimal, are the XEP-0013 item nodes. STORE_T_LAST
 * under the bare JID holds one byte of version (1), the time of the last
 * logout (8 bytes, big-endian Unix seconds), then the status text of the
 * last unavailable presence (UTF-8, no NUL).
 *
 * Every write is committed before anything that depends on it is posted;
 * deletions after a delivery are committed after posting (the store must
 * never lose a message the client has not been sent).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "control/im.h"
#include "parser/xmlw.h"
#include "store/store.h"
#include "util/log.h"

#define NS_DELAY      "urn:xmpp:delay"
#define NS_CHATSTATES "http://jabber.org/protocol/chatstates"
#define NS_HINTS      "urn:xmpp:hints"
#define NS_CARBONS    "urn:xmpp:carbons:2"
#define NS_LAST       "jabber:iq:last"
#define NS_DISCO_INFO "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"

#define LAST_VERSION    1u
#define LAST_STATUS_MAX 1024u     /* bytes of status text kept */
#define FLEX_BUCKETS    256u
#define SEQ_DIGITS      20u       /* UINT64_MAX in decimal */

/* A session that chose XEP-0013: while one of a user's sessions reads the
 * queue itself, no other session of that user gets the flood either
 * (XEP-0013 2.2, last paragraph). */
struct flex_ent {
	struct flex_ent *next;
	uint64_t handle;
	size_t len;
	char bare[];
};

/* A message in the open batch: the error its sender gets if the batch
 * does not commit (RFC 6121 8.5.2.2.1: a message not stored is not
 * silently lost). */
struct pend {
	uint64_t handle;             /* the requesting session, 0: routed back */
	char *err;
	size_t len;
};

struct offline_state {
	/* For stored stanzas (the request's own view, ctx->view, stays
	 * untouched while a request is served). */
	struct xml_view view;
	struct xml_token *tok;
	struct xml_ns *ns;
	uint16_t *scope;
	struct flex_ent *flex[FLEX_BUCKETS];
	/* Group commit (ctx->group_commit): offline messages of one burst of
	 * requests share one write batch, committed by offline_flush. */
	struct store_txn batch;
	bool batch_open;
	const struct im_out *out;    /* of the requests in the batch */
	struct pend *pend;
	size_t npend, pend_cap;
};

/* ---- a growable output buffer ---------------------------------------------- */

struct obuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static bool ob_reserve(struct obuf *b, size_t n)
{
	if (b->oom)
		return false;
	if (b->len + n <= b->cap)
		return true;
	size_t cap = b->cap ? b->cap : 1024;
	while (cap < b->len + n)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p) {
		b->oom = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

static void ob_put(struct obuf *b, const void *s, size_t n)
{
	if (n && ob_reserve(b, n)) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
	}
}

static void ob_str(struct obuf *b, const char *s)
{
	ob_put(b, s, strlen(s));
}

/* s escaped for an attribute value (attr) or character data. */
static void ob_esc(struct obuf *b, const char *s, size_t n, bool attr)
{
	size_t out;

	if (!ob_reserve(b, XMLW_ESCAPED_MAX(n) + 1))
		return;
	enum xmlw_status st = attr ? xmlw_escape_attr(b->p + b->len, b->cap - b->len, s, n, &out)
				   : xmlw_escape_text(b->p + b->len, b->cap - b->len, s, n, &out);
	if (st != XMLW_OK)
		b->oom = true;   /* not XML characters: treat as a failed build */
	else
		b->len += out;
}

static void ob_u64(struct obuf *b, uint64_t v)
{
	char d[SEQ_DIGITS + 1];
	int n = snprintf(d, sizeof(d), "%llu", (unsigned long long)v);
	ob_put(b, d, (size_t)n);
}

static void ob_free(struct obuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* ---- reading stanzas ---------------------------------------------------------- */

static bool attr_is(struct xml_view *v, uint32_t elem, const char *name, const char *want)
{
	uint32_t a = xml_attr_find(v, elem, name, NULL);
	char b[64];

	if (a == XML_NO_TOK || v->tok[a].b >= sizeof(b))
		return false;
	return xml_slice_eq(xml_tok_value(v, a, b), want);
}

/* The element's own character data (not its children's), decoded, into
 * dst[0..cap); truncated at cap. Returns the length. */
static size_t elem_text(struct xml_view *v, uint32_t elem, char *dst, size_t cap)
{
	size_t n = 0;
	uint32_t end = v->tok[elem].a;

	for (uint32_t t = elem + 1 + v->tok[elem].nattr; t < end; t++) {
		const struct xml_token *k = &v->tok[t];
		if (k->type == XML_TOK_ELEM) {
			t = k->a;   /* skip the child and its subtree */
			continue;
		}
		if (k->type != XML_TOK_TEXT)
			continue;
		char *tmp = malloc(k->len ? k->len : 1);
		if (!tmp)
			break;
		struct xml_slice s = xml_tok_value(v, t, tmp);
		size_t take = s.len < cap - n ? s.len : cap - n;
		memcpy(dst + n, s.ptr, take);
		n += take;
		free(tmp);
		if (n == cap)
			break;
	}
	return n;
}

/* Cut s[0..n) back to a whole UTF-8 character. */
static size_t utf8_trim(const char *s, size_t n)
{
	size_t i = n;

	while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
		i--;
	if (i == 0)
		return 0;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t want = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
	return n - (i - 1) >= want ? n : i - 1;
}

enum mtype { MT_NORMAL, MT_CHAT, MT_GROUPCHAT, MT_HEADLINE, MT_ERROR, MT_OTHER };

static enum mtype msg_type(struct xml_view *v)
{
	char b[16];

	if (v->info.type == XML_NO_TOK)
		return MT_NORMAL;
	if (v->tok[v->info.type].b >= sizeof(b))
		return MT_OTHER;
	struct xml_slice t = xml_tok_value(v, v->info.type, b);
	if (xml_slice_eq(t, "normal"))
		return MT_NORMAL;
	if (xml_slice_eq(t, "chat"))
		return MT_CHAT;
	if (xml_slice_eq(t, "groupchat"))
		return MT_GROUPCHAT;
	if (xml_slice_eq(t, "headline"))
		return MT_HEADLINE;
	if (xml_slice_eq(t, "error"))
		return MT_ERROR;
	return MT_OTHER;
}

/* What a message is worth keeping for, from its children. */
enum keep {
	KEEP_YES = 0,
	KEEP_EPHEMERAL,   /* nothing but XEP-0085 chat states (XEP-0160 3: not stored) or no content */
	KEEP_NO_STORE,    /* XEP-0334 <no-store/> */
	KEEP_CARBON,      /* a XEP-0280 copy: the original went elsewhere */
	KEEP_FLEX,        /* sent by XEP-0013 view/fetch: still in the queue */
};

static enum keep msg_keep(struct xml_view *v, const char *domain, size_t dlen, bool *own_delay)
{
	bool content = false, no_store = false, store = false;

	*own_delay = false;
	for (uint32_t ch = xml_first_child(v, 0); ch != XML_NO_TOK; ch = xml_next_sibling(v, ch)) {
		struct xml_slice ns = xml_tok_ns(v, ch), nm = xml_tok_local(v, ch);
		if (xml_slice_eq(ns, NS_CHATSTATES))
			continue;
		if (xml_slice_eq(ns, NS_HINTS)) {
			if (xml_slice_eq(nm, "no-store"))
				no_store = true;
			else if (xml_slice_eq(nm, "store"))
				store = true;
			continue;
		}
		if (xml_slice_eq(ns, NS_CARBONS) && (xml_slice_eq(nm, "received") || xml_slice_eq(nm, "sent")))
			return KEEP_CARBON;
		if (xml_slice_eq(ns, OFFLINE_NODE) && xml_slice_eq(nm, "offline"))
			return KEEP_FLEX;
		if (xml_slice_eq(ns, NS_DELAY)) {
			uint32_t a = xml_attr_find(v, ch, "from", NULL);
			if (a != XML_NO_TOK && v->tok[a].b == dlen && !memcmp(v->base + v->tok[a].a, domain, dlen))
				*own_delay = true;
			continue;
		}
		if (xml_slice_eq(nm, "thread"))
			continue;   /* a thread id alone says nothing */
		content = true;
	}
	if (no_store)
		return KEEP_NO_STORE;
	return content || store ? KEEP_YES : KEEP_EPHEMERAL;
}

/* Append to out a copy of the stanza in v with its 'to' replaced by
 * to[0..to_len) (to NULL: kept as it is) and ins[0..ins_len) added as its
 * last child(ren). false if it could not be built. */
static bool restanza(struct xml_view *v, const char *to, size_t to_len, const char *ins, size_t ins_len,
		     struct obuf *out)
{
	size_t start = out->len;

	if (to) {
		char fb[JID_MAX + 1];
		struct xml_slice f, t = { to, (uint32_t)to_len }, *fp = NULL;
		struct iovec iov[XML_REWRITE_IOV];
		if (v->info.from != XML_NO_TOK) {
			if (v->tok[v->info.from].b > JID_MAX)
				return false;
			f = xml_tok_value(v, v->info.from, fb);
			fp = &f;
		}
		size_t scap = 16 + 6 * ((fp ? f.len : 0) + to_len);
		char *scratch = malloc(scap);
		if (!scratch)
			return false;
		int n = xml_view_rewrite(v, fp, &t, scratch, scap, iov);
		for (int i = 0; i < n; i++)
			ob_put(out, iov[i].iov_base, iov[i].iov_len);
		free(scratch);
		if (n < 0)
			return false;
	} else {
		ob_put(out, v->base, v->len);
	}
	if (ins_len && !out->oom) {
		if (v->tok[0].flags & XML_TF_EMPTY) {
			/* "<message .../>": the copy ends with the same "/>". */
			struct xml_slice q = xml_tok_qname(v, 0);
			out->len -= 2;
			ob_put(out, ">", 1);
			ob_put(out, ins, ins_len);
			ob_put(out, "</", 2);
			ob_put(out, q.ptr, q.len);
			ob_put(out, ">", 1);
		} else {
			/* Before "</message>": its '<' is two bytes before the
			 * END token's name. */
			size_t tail = v->len - (v->tok[v->tok[0].a].off - 2);
			if (ob_reserve(out, ins_len)) {
				char *at = out->p + out->len - tail;
				memmove(at + ins_len, at, tail);
				memcpy(at, ins, ins_len);
				out->len += ins_len;
			}
		}
	}
	if (out->oom) {
		out->len = start;
		return false;
	}
	return true;
}

/* <delay xmlns='urn:xmpp:delay' from='domain' stamp='now'>Offline Storage</delay>
 * (XEP-0203 2, XEP-0160 2). */
static void delay_elem(struct obuf *b, const char *domain, size_t dlen, const char *why)
{
	char stamp[21];

	im_stamp(time(NULL), stamp);
	ob_str(b, "<delay xmlns='" NS_DELAY "' from='");
	ob_esc(b, domain, dlen, true);
	ob_str(b, "' stamp='");
	ob_str(b, stamp);
	ob_str(b, "'>");
	ob_str(b, why);
	ob_str(b, "</delay>");
}

static size_t domain_of(const char *bare, size_t len, const char **d)
{
	const char *at = memchr(bare, '@', len);

	*d = at ? at + 1 : bare;
	return at ? len - (size_t)(at + 1 - bare) : len;
}

/* ---- set-up ------------------------------------------------------------------- */

int offline_init(struct im_ctx *ctx)
{
	struct offline_state *os = calloc(1, sizeof(*os));
	const struct xml_limits *lim = &ctx->cfg->xml;
	uint32_t toks = xml_view_storage_tokens(lim);
	uint16_t nscap = (uint16_t)(2 + XML_NSCTX_MAX + lim->max_ns + 8);

	if (!os)
		goto oom;
	ctx->offline = os;
	os->tok = calloc(toks, sizeof(*os->tok));
	os->ns = calloc(nscap, sizeof(*os->ns));
	os->scope = calloc(nscap, sizeof(*os->scope));
	if (!os->tok || !os->ns || !os->scope)
		goto oom;
	xml_view_init(&os->view, lim, os->tok, toks, os->ns, nscap, os->scope, nscap);
	return 0;
oom:
	log_err("offline: out of memory");
	offline_free(ctx);
	return -1;
}

void offline_free(struct im_ctx *ctx)
{
	struct offline_state *os = ctx->offline;

	if (!os)
		return;
	if (os->batch_open)
		offline_flush(ctx, os->out);
	free(os->pend);
	for (unsigned i = 0; i < FLEX_BUCKETS; i++) {
		while (os->flex[i]) {
			struct flex_ent *e = os->flex[i];
			os->flex[i] = e->next;
			free(e);
		}
	}
	free(os->tok);
	free(os->ns);
	free(os->scope);
	free(os);
	ctx->offline = NULL;
}

/* ---- XEP-0013 sessions -------------------------------------------------------- */

static unsigned flex_bucket(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (unsigned)(h & (FLEX_BUCKETS - 1));
}

static void flex_add(struct offline_state *os, uint64_t handle, const char *bare, size_t len)
{
	unsigned b = flex_bucket(handle);

	for (struct flex_ent *e = os->flex[b]; e; e = e->next)
		if (e->handle == handle)
			return;
	struct flex_ent *e = malloc(sizeof(*e) + len);
	if (!e)
		return;   /* at worst a later resource gets the flood */
	e->handle = handle;
	e->len = len;
	memcpy(e->bare, bare, len);
	e->next = os->flex[b];
	os->flex[b] = e;
}

static void flex_remove(struct offline_state *os, uint64_t handle)
{
	for (struct flex_ent **p = &os->flex[flex_bucket(handle)]; *p; p = &(*p)->next) {
		if ((*p)->handle == handle) {
			struct flex_ent *e = *p;
			*p = e->next;
			free(e);
			return;
		}
	}
}

/* The user's last available resource is gone: whatever is left for the
 * user is stale (a handle that moved with XEP-0198 resumption and never
 * ended here), and would keep the flood off for good. */
static void flex_remove_user(struct offline_state *os, const char *bare, size_t len)
{
	for (unsigned i = 0; i < FLEX_BUCKETS; i++) {
		for (struct flex_ent **p = &os->flex[i]; *p;) {
			if ((*p)->len == len && !memcmp((*p)->bare, bare, len)) {
				struct flex_ent *e = *p;
				*p = e->next;
				free(e);
			} else {
				p = &(*p)->next;
			}
		}
	}
}

void offline_session_moved(struct im_call *c, uint64_t old)
{
	struct offline_state *os = c->ctx->offline;

	if (old == c->handle)
		return;
	for (struct flex_ent *e = os->flex[flex_bucket(old)]; e; e = e->next) {
		if (e->handle != old)
			continue;
		flex_remove(os, old);
		flex_add(os, c->handle, c->jid, c->bare_len);
		return;
	}
}

static bool flex_user(const struct offline_state *os, const char *bare, size_t len)
{
	for (unsigned i = 0; i < FLEX_BUCKETS; i++)
		for (const struct flex_ent *e = os->flex[i]; e; e = e->next)
			if (e->len == len && !memcmp(e->bare, bare, len))
				return true;
	return false;
}

/* One stanza (or none: only the flags) to the requesting session. */
static void send_ev(struct im_call *c, uint32_t set, const char *st, size_t len)
{
	struct im_send_hdr h = { .set = set, .clear = 0 };
	char *p = malloc(sizeof(h) + len);

	if (!p) {
		log_err("offline: out of memory");
		return;
	}
	memcpy(p, &h, sizeof(h));
	if (len)
		memcpy(p + sizeof(h), st, len);
	c->out->event(c->out->srv, c->handle, IM_EV_SEND, p, sizeof(h) + len);
	free(p);
}

/* The session reads its queue with XEP-0013 from now on. */
static void flex_on(struct im_call *c)
{
	flex_add(c->ctx->offline, c->handle, c->jid, c->bare_len);
	if (!(c->req->flags & IM_SF_OFFLINE_FLEX))
		send_ev(c, IM_SF_OFFLINE_FLEX, NULL, 0);
}

/* XEP-0013: only the user's own sessions, about their own queue (an iq
 * without 'to', to the own bare JID or to the server). */
static bool own_inbox(struct im_call *c)
{
	return c->handle && c->bare_len && memchr(c->jid, '@', c->bare_len) &&
	       (c->to_kind == IM_TO_SELF || c->to_kind == IM_TO_SERVER);
}

static bool iq_type_is(struct im_call *c, const char *t)
{
	char b[8];

	if (c->v->info.type == XML_NO_TOK || c->v->tok[c->v->info.type].b >= sizeof(b))
		return false;
	return xml_slice_eq(xml_tok_value(c->v, c->v->info.type, b), t);
}

static size_t queue_key(char *k, const char *bare, size_t len, uint64_t seq)
{
	memcpy(k, bare, len);
	k[len] = '\0';
	for (int i = 0; i < 8; i++)
		k[len + 1 + i] = (char)(seq >> (56 - 8 * i));
	return len + 9;
}

/* A node value: the decimal sequence number, nothing else. */
static bool parse_seq(struct xml_view *v, uint32_t elem, uint64_t *seq)
{
	uint32_t a = xml_attr_find(v, elem, "node", NULL);
	char b[SEQ_DIGITS + 1];

	if (a == XML_NO_TOK || v->tok[a].b == 0 || v->tok[a].b > SEQ_DIGITS)
		return false;
	struct xml_slice s = xml_tok_value(v, a, b);
	uint64_t n = 0;
	for (uint32_t i = 0; i < s.len; i++) {
		if (s.ptr[i] < '0' || s.ptr[i] > '9' || (i == 0 && s.ptr[i] == '0' && s.len > 1))
			return false;
		unsigned d = (unsigned)(s.ptr[i] - '0');
		if (n > (UINT64_MAX - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*seq = n;
	return true;
}

/* ---- delivery ------------------------------------------------------------------ */

struct deliver {
	struct im_call *c;
	struct obuf b;
	bool flex;          /* XEP-0013 fetch/view: add the item node, keep it stored */
	uint64_t *seqs;     /* delivered (flood: to delete) */
	size_t n, cap;
	bool oom;
};

/* Post one stored message to the session, 'to' its full JID. */
static void deliver_one(struct deliver *d, uint64_t seq, const void *val, size_t vlen)
{
	struct im_call *c = d->c;
	struct xml_view *v = &c->ctx->offline->view;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		uint64_t *s = realloc(d->seqs, cap * sizeof(*s));
		if (!s) {
			d->oom = true;
			return;
		}
		d->seqs = s;
		d->cap = cap;
	}
	if (xml_view_build(v, NULL, val, vlen) < 0) {
		/* Not ours to deliver; dropped with the others so it does not
		 * come back at every login. */
		log_warn("offline: a stored message of %.*s does not parse (%s): dropped", (int)c->bare_len,
			 c->jid, xml_error_condition(v->err));
		d->seqs[d->n++] = seq;
		return;
	}
	struct obuf item = { 0 };
	if (d->flex) {
		ob_str(&item, "<offline xmlns='" OFFLINE_NODE "'><item node='");
		ob_u64(&item, seq);
		ob_str(&item, "'/></offline>");
	}
	struct im_send_hdr h = { 0, 0 };
	d->b.len = 0;
	ob_put(&d->b, &h, sizeof(h));
	if (item.oom || !restanza(v, c->jid, c->jid_len, item.p, item.len, &d->b)) {
		ob_free(&item);
		d->b.oom = false;
		d->oom = true;   /* kept: a later login tries again */
		return;
	}
	ob_free(&item);
	c->out->event(c->out->srv, c->handle, IM_EV_SEND, d->b.p, d->b.len);
	d->seqs[d->n++] = seq;
}

static int deliver_cb(void *arg, uint64_t seq, const void *val, size_t vlen)
{
	struct deliver *d = arg;

	deliver_one(d, seq, val, vlen);
	return d->oom;
}

/* Priority of an initial presence (RFC 6121 4.7.2.3), 0 when absent. */
static int presence_priority(struct xml_view *v)
{
	for (uint32_t ch = xml_first_child(v, 0); ch != XML_NO_TOK; ch = xml_next_sibling(v, ch)) {
		if (!xml_slice_eq(xml_tok_local(v, ch), "priority"))
			continue;
		char b[16];
		size_t n = elem_text(v, ch, b, sizeof(b) - 1);
		b[n] = '\0';
		return atoi(b);
	}
	return 0;
}

void offline_initial_presence(struct im_call *c)
{
	struct offline_state *os = c->ctx->offline;
	struct store *st = c->ctx->store;

	if (!c->handle || !c->bare_len || (c->req->flags & IM_SF_OFFLINE_FLEX))
		return;
	/* XEP-0160 2: delivered at non-negative available presence. */
	if (c->v && xml_slice_eq(xml_tok_local(c->v, 0), "presence") && presence_priority(c->v) < 0)
		return;
	if (flex_user(os, c->jid, c->bare_len))
		return;   /* XEP-0013 2.2: another resource reads the queue itself */
	struct deliver d = { .c = c };
	int rc = store_queue_iter(st, NULL, STORE_T_OFFLINE, c->jid, c->bare_len, deliver_cb, &d);
	if (rc != STORE_OK)
		log_err("offline: reading the queue of %.*s failed", (int)c->bare_len, c->jid);
	if (d.n) {
		/* One batch for all of them, after they were posted. */
		struct store_txn t;
		if (store_write_begin(st, &t) == STORE_OK) {
			for (size_t i = 0; i < d.n; i++) {
				int r = store_queue_del(st, &t, STORE_T_OFFLINE, c->jid, c->bare_len, d.seqs[i]);
				if (r != STORE_OK && r != STORE_NOTFOUND)
					break;
			}
			rc = store_commit(&t);
		} else {
			rc = STORE_ERROR;
		}
		if (rc != STORE_OK)
			log_err("offline: %zu delivered messages of %.*s not deleted: they will come again",
				d.n, (int)c->bare_len, c->jid);
		else
			log_debug("offline: %zu messages delivered to %.*s", d.n, (int)c->jid_len, c->jid);
	}
	ob_free(&d.b);
	free(d.seqs);
}

/* ---- storing -------------------------------------------------------------------- */

static void pend_clear(struct offline_state *os)
{
	for (size_t i = 0; i < os->npend; i++)
		free(os->pend[i].err);
	os->npend = 0;
}

/* The batch was lost: every message in it is answered with its error. */
static void pend_fail(struct offline_state *os, const struct im_out *out)
{
	if (os->npend)
		log_err("offline: %zu messages not stored (batch failed): their senders get errors", os->npend);
	for (size_t i = 0; out && i < os->npend; i++) {
		if (os->pend[i].handle)
			out->to_session(out->srv, os->pend[i].handle, os->pend[i].err, os->pend[i].len);
		else
			out->route(out->srv, os->pend[i].err, os->pend[i].len);
	}
	pend_clear(os);
}

void offline_flush(struct im_ctx *ctx, const struct im_out *out)
{
	struct offline_state *os = ctx->offline;

	if (!os || !os->batch_open)
		return;
	os->batch_open = false;
	int rc = store_commit(&os->batch);
	if (rc != STORE_OK) {
		pend_fail(os, out);
	} else if (os->npend > 1) {
		log_debug("offline: %zu messages in one commit", os->npend);
	}
	pend_clear(os);
}

/* The batch offline messages go into (opened on first use). */
static struct store_txn *batch_of(struct im_call *c, int *rc)
{
	struct offline_state *os = c->ctx->offline;

	*rc = STORE_OK;
	if (!os->batch_open) {
		*rc = store_write_begin(c->ctx->store, &os->batch);
		if (*rc != STORE_OK)
			return NULL;
		os->batch_open = true;
		os->out = c->out;
	}
	return &os->batch;
}

/* Keep the error c's message gets if the batch fails. false: out of
 * memory (the caller commits now instead). */
static bool pend_add(struct im_call *c)
{
	struct offline_state *os = c->ctx->offline;
	char buf[4096];
	size_t n = im_build_error(c->v, "wait", "internal-server-error", buf, sizeof(buf));

	if (os->npend == os->pend_cap) {
		size_t cap = os->pend_cap ? os->pend_cap * 2 : 64;
		struct pend *p = realloc(os->pend, cap * sizeof(*p));
		if (!p)
			return false;
		os->pend = p;
		os->pend_cap = cap;
	}
	char *e = n ? malloc(n) : NULL;
	if (n && !e)
		return false;
	if (n)
		memcpy(e, buf, n);
	os->pend[os->npend].handle = c->handle;
	os->pend[os->npend].err = e;
	os->pend[os->npend].len = n;
	if (n)
		os->npend++;
	return true;
}

void offline_message(struct im_call *c)
{
	struct im_ctx *ctx = c->ctx;
	struct xml_view *v = c->v;
	const char *bare;
	size_t blen;

	/* The owner: 'to' (RFC 6120 10.3.1: none means the sender's own
	 * bare JID). */
	if (c->has_to) {
		if (c->to_kind == IM_TO_REMOTE || c->to_kind == IM_TO_SERVER)
			return;   /* not a user's: the router's to answer */
		struct jid_slice b = jid_bare(&c->to);
		bare = b.ptr;
		blen = b.len;
	} else {
		bare = c->jid;
		blen = c->bare_len;
	}
	if (!blen || !memchr(bare, '@', blen))
		return;
	switch (msg_type(v)) {
	case MT_NORMAL:
	case MT_CHAT:
		break;
	case MT_GROUPCHAT:
		im_error(c, "cancel", "service-unavailable");   /* RFC 6121 8.5.2.2.1 */
		return;
	default:
		return;   /* headline, error: silently ignored (8.5.2.2.1) */
	}
	/* RFC 6121 8.5.1: no such account. */
	if (!im_account_exists(ctx, bare, blen)) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	/* The owner's block list or default privacy list may refuse the
	 * sender (XEP-0191 3.3, XEP-0016 2.2): a blocked message is not kept
	 * for later but answered <service-unavailable/>, as it would be if a
	 * session of the owner were there to refuse it. */
	if (c->v->info.from != XML_NO_TOK && c->v->tok[c->v->info.from].b <= JID_MAX) {
		char fb[JID_MAX + 1];
		struct xml_slice f = xml_tok_value(c->v, c->v->info.from, fb);
		if (privacy_check_in(ctx, bare, blen, IM_KIND_MESSAGE, f.ptr, f.len)) {
			im_error(c, "cancel", "service-unavailable");
			return;
		}
	}
	const char *dom;
	size_t dlen = domain_of(bare, blen, &dom);
	bool own_delay;
	switch (msg_keep(v, dom, dlen, &own_delay)) {
	case KEEP_YES:
		break;
	case KEEP_NO_STORE:
		/* XEP-0334 4.2: not stored, so the sender learns it was not
		 * delivered (RFC 6121 8.5.2.2.1 (b)). */
		im_error(c, "cancel", "service-unavailable");
		return;
	default:
		return;   /* chat states only (XEP-0160 3), carbons: nothing to keep */
	}
	/* XEP-0160 2: a full queue, or storage switched off, is
	 * <service-unavailable/>; so is a name too long for a queue. */
	uint32_t max = ctx->cfg->im.offline_max;
	if (max == 0 || blen + 1 + 8 > store_max_key(ctx->store)) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	struct obuf msg = { 0 }, dl = { 0 };
	delay_elem(&dl, dom, dlen, "Offline Storage");
	bool ok = !dl.oom && restanza(v, NULL, 0, own_delay ? NULL : dl.p, own_delay ? 0 : dl.len, &msg);
	ob_free(&dl);
	if (!ok) {
		ob_free(&msg);
		im_error(c, "wait", "resource-constraint");
		return;
	}
	/* Count and append in one batch: the quota holds however requests
	 * interleave. With group commit the batch stays open for the rest of
	 * the burst (offline_flush commits it, before the router posts the
	 * XEP-0198 completions that acknowledge these messages); otherwise
	 * it is committed here. */
	struct offline_state *os = ctx->offline;
	uint64_t n = 0, seq = 0;
	int rc;
	struct store_txn *t = batch_of(c, &rc);
	if (t) {
		rc = store_queue_count(ctx->store, t, STORE_T_OFFLINE, bare, blen, &n);
		if (rc == STORE_OK && n >= max) {
			ob_free(&msg);
			log_info("offline: queue of %.*s full (%u): message refused", (int)blen, bare, max);
			im_error(c, "cancel", "service-unavailable");
			if (!ctx->group_commit)
				offline_flush(ctx, c->out);
			return;
		}
		if (rc == STORE_OK)
			rc = store_queue_append(ctx->store, t, STORE_T_OFFLINE, bare, blen, msg.p, msg.len, &seq);
		if (rc != STORE_OK) {
			/* The batch is spoilt: what it held is not stored either. */
			store_abort(t);
			os->batch_open = false;
			pend_fail(os, c->out);
		} else if (!ctx->group_commit || !pend_add(c)) {
			/* Now, with whatever else the batch holds. */
			os->batch_open = false;
			rc = store_commit(t);
			if (rc != STORE_OK)
				pend_fail(os, c->out);
			pend_clear(os);
		}
	}
	ob_free(&msg);
	if (rc != STORE_OK) {
		/* Not stored: the sender must know (RFC 6121 8.5.2.2.1). */
		im_error(c, "wait", rc == STORE_FULL ? "resource-constraint" : "internal-server-error");
		return;
	}
	log_debug("offline: stored message %llu for %.*s", (unsigned long long)seq, (int)blen, bare);
}

/* ---- XEP-0198 leftovers ------------------------------------------------------ */

void offline_unacked(struct im_call *c)
{
	static const char hdr[] = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
	struct im_ctx *ctx = c->ctx;
	struct xml_view *v = &ctx->offline->view;
	const char *dom;
	size_t dlen;

	if (!c->len || !c->bare_len || !memchr(c->jid, '@', c->bare_len))
		return;
	dlen = domain_of(c->jid, c->bare_len, &dom);
	/* The stanzas follow one another without a stream around them: give
	 * the framer a header to start from. */
	size_t total = sizeof(hdr) - 1 + c->len;
	char *buf = malloc(total);
	if (!buf) {
		log_err("offline: out of memory: %.*s's unacknowledged stanzas lost", (int)c->jid_len, c->jid);
		return;
	}
	memcpy(buf, hdr, sizeof(hdr) - 1);
	memcpy(buf + sizeof(hdr) - 1, c->stanza, c->len);

	struct xml_limits lim = ctx->cfg->xml;
	lim.max_stanza = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
	struct xml_framer f;
	xml_framer_init(&f, &lim);

	struct obuf out = { 0 }, dl = { 0 };
	delay_elem(&dl, dom, dlen, "Resent");
	struct store_txn t;
	bool batch = false, account = im_account_exists(ctx, c->jid, c->bare_len);
	unsigned rerouted = 0, stored = 0, dropped = 0, lost = 0;
	size_t off = 0;
	for (;;) {
		struct xml_span sp;
		enum xml_event ev = xml_frame(&f, buf + off, total - off, &sp);
		if (ev == XML_AGAIN || ev == XML_ERROR || ev == XML_STREAM_CLOSE) {
			if (ev == XML_ERROR)
				log_warn("offline: unacknowledged stanzas of %.*s: %s after byte %zu", (int)c->jid_len,
					 c->jid, xml_error_condition((enum xml_error)f.err), off);
			break;
		}
		const char *s = buf + off + sp.start;
		size_t slen = sp.end - sp.start;
		off += sp.end;
		if (ev != XML_STANZA)
			continue;
		if (xml_view_build(v, NULL, s, slen) < 0 || !xml_slice_eq(xml_tok_local(v, 0), "message")) {
			dropped++;
			continue;
		}
		enum mtype ty = msg_type(v);
		bool own_delay;
		if ((ty != MT_NORMAL && ty != MT_CHAT) || msg_keep(v, dom, dlen, &own_delay) != KEEP_YES) {
			dropped++;
			continue;
		}
		out.len = 0;
		if (dl.oom || !restanza(v, NULL, 0, own_delay ? NULL : dl.p, own_delay ? 0 : dl.len, &out)) {
			out.oom = false;
			lost++;
			continue;
		}
		/* Another resource first (XEP-0198 5: as for a stanza to an
		 * unavailable resource, RFC 6121 8.5.3.2.1), else the queue. */
		if (c->out->route(c->out->srv, out.p, out.len) > 0) {
			rerouted++;
			continue;
		}
		if (!account) {
			dropped++;
			continue;
		}
		if (!batch) {
			if (store_write_begin(ctx->store, &t) != STORE_OK) {
				lost++;
				continue;
			}
			batch = true;
		}
		/* No quota here: these were accepted already. */
		if (store_queue_append(ctx->store, &t, STORE_T_OFFLINE, c->jid, c->bare_len, out.p, out.len, NULL) ==
		    STORE_OK)
			stored++;
		else
			lost++;
	}
	if (batch && store_commit(&t) != STORE_OK) {
		lost += stored;
		stored = 0;
	}
	if (lost)
		log_err("offline: %u unacknowledged messages of %.*s could not be kept", lost, (int)c->jid_len,
			c->jid);
	log_debug("offline: unacknowledged of %.*s: %u re-routed, %u stored, %u dropped", (int)c->jid_len, c->jid,
		  rerouted, stored, dropped);
	ob_free(&out);
	ob_free(&dl);
	free(buf);
}

/* ---- XEP-0013 ------------------------------------------------------------------- */

static void offline_fetch(struct im_call *c)
{
	struct deliver d = { .c = c, .flex = true };

	if (store_queue_iter(c->ctx->store, NULL, STORE_T_OFFLINE, c->jid, c->bare_len, deliver_cb, &d) !=
		    STORE_OK ||
	    d.oom)
		im_error(c, "wait", "internal-server-error");
	else
		im_result(c, NULL, 0);
	ob_free(&d.b);
	free(d.seqs);
}

/* view: every node must exist before anything is sent (XEP-0013 2.4). */
static void offline_view(struct im_call *c, uint32_t off)
{
	struct store *st = c->ctx->store;
	struct store_buf val = { 0 };
	struct store_txn t;
	char *key = malloc(c->bare_len + 9);
	int rc = key ? store_read_begin(st, &t) : STORE_ERROR;

	if (rc != STORE_OK) {
		free(key);
		im_error(c, "wait", "internal-server-error");
		return;
	}
	for (int pass = 0; pass < 2 && rc == STORE_OK; pass++) {
		struct deliver d = { .c = c, .flex = true };
		for (uint32_t it = xml_first_child(c->v, off); it != XML_NO_TOK; it = xml_next_sibling(c->v, it)) {
			uint64_t seq = 0;
			parse_seq(c->v, it, &seq);   /* checked by the caller */
			size_t kl = queue_key(key, c->jid, c->bare_len, seq);
			rc = store_get(st, &t, STORE_T_OFFLINE, key, kl, &val);
			if (rc != STORE_OK)
				break;
			if (pass == 1) {
				deliver_one(&d, seq, val.ptr, val.len);
				if (d.oom)
					rc = STORE_ERROR;
			}
		}
		ob_free(&d.b);
		free(d.seqs);
	}
	store_abort(&t);
	store_buf_free(&val);
	free(key);
	if (rc == STORE_NOTFOUND)
		im_error(c, "cancel", "item-not-found");
	else if (rc != STORE_OK)
		im_error(c, "wait", "internal-server-error");
	else
		im_result(c, NULL, 0);
}

/* remove: all of them or none (XEP-0013 2.5). */
static void offline_remove(struct im_call *c, uint32_t off)
{
	struct store *st = c->ctx->store;
	struct store_txn t;
	int rc = store_write_begin(st, &t);

	if (rc != STORE_OK) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	for (uint32_t it = xml_first_child(c->v, off); it != XML_NO_TOK && rc == STORE_OK;
	     it = xml_next_sibling(c->v, it)) {
		uint64_t seq = 0;
		parse_seq(c->v, it, &seq);
		rc = store_queue_del(st, &t, STORE_T_OFFLINE, c->jid, c->bare_len, seq);
	}
	if (rc == STORE_OK)
		rc = store_commit(&t);
	else
		store_abort(&t);   /* one node missing: nothing removed */
	if (rc == STORE_NOTFOUND)
		im_error(c, "cancel", "item-not-found");
	else if (rc != STORE_OK)
		im_error(c, "wait", "internal-server-error");
	else
		im_result(c, NULL, 0);
}

void offline_iq(struct im_call *c, uint32_t child)
{
	struct xml_view *v = c->v;

	if (!own_inbox(c)) {
		im_error(c, "auth", "forbidden");   /* XEP-0013 2.4-2.7 */
		return;
	}
	bool get = iq_type_is(c, "get"), set = iq_type_is(c, "set");
	if (!xml_slice_eq(xml_tok_local(v, child), "offline") || (!get && !set)) {
		im_error(c, "modify", "bad-request");
		return;
	}
	/* One request is one of: <fetch/> (get), <purge/> (set), or items
	 * all with action 'view' (get) or all 'remove' (set). */
	unsigned fetch = 0, purge = 0, view = 0, remove = 0, bad = 0, missing = 0;
	for (uint32_t it = xml_first_child(v, child); it != XML_NO_TOK; it = xml_next_sibling(v, it)) {
		struct xml_slice nm = xml_tok_local(v, it);
		uint64_t seq;
		if (xml_slice_eq(nm, "fetch")) {
			fetch++;
		} else if (xml_slice_eq(nm, "purge")) {
			purge++;
		} else if (xml_slice_eq(nm, "item") && attr_is(v, it, "action", "view")) {
			view++;
			missing += !parse_seq(v, it, &seq);   /* not one of our nodes: cannot exist */
		} else if (xml_slice_eq(nm, "item") && attr_is(v, it, "action", "remove")) {
			remove++;
			missing += !parse_seq(v, it, &seq);
		} else {
			bad++;
		}
	}
	enum { OP_BAD, OP_FETCH, OP_PURGE, OP_VIEW, OP_REMOVE } op = OP_BAD;
	if (bad == 0 && get && fetch == 1 && !purge && !view && !remove)
		op = OP_FETCH;
	else if (bad == 0 && set && purge == 1 && !fetch && !view && !remove)
		op = OP_PURGE;
	else if (bad == 0 && get && view && !fetch && !purge && !remove)
		op = OP_VIEW;
	else if (bad == 0 && set && remove && !fetch && !purge && !view)
		op = OP_REMOVE;
	if (op == OP_BAD) {
		im_error(c, "modify", "bad-request");
		return;
	}
	flex_on(c);
	if (missing) {
		im_error(c, "cancel", "item-not-found");
		return;
	}
	switch (op) {
	case OP_FETCH:
		offline_fetch(c);
		break;
	case OP_PURGE:
		if (store_queue_clear(c->ctx->store, NULL, STORE_T_OFFLINE, c->jid, c->bare_len, NULL) != STORE_OK)
			im_error(c, "wait", "internal-server-error");
		else
			im_result(c, NULL, 0);
		break;
	case OP_VIEW:
		offline_view(c, child);
		break;
	default:
		offline_remove(c, child);
		break;
	}
}

void offline_disco_info(struct im_call *c, uint32_t query)
{
	(void)query;
	if (!own_inbox(c)) {
		im_error(c, "auth", "forbidden");
		return;
	}
	if (!iq_type_is(c, "get")) {
		im_error(c, "modify", "bad-request");
		return;
	}
	uint64_t n = 0;
	if (store_queue_count(c->ctx->store, NULL, STORE_T_OFFLINE, c->jid, c->bare_len, &n) != STORE_OK) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	flex_on(c);
	/* XEP-0013 2.2: the count as XEP-0128 data. */
	struct obuf b = { 0 };
	ob_str(&b, "<query xmlns='" NS_DISCO_INFO "' node='" OFFLINE_NODE "'>"
		   "<identity category='automation' type='message-list'/>"
		   "<feature var='" OFFLINE_NODE "'/>"
		   "<x xmlns='jabber:x:data' type='result'>"
		   "<field var='FORM_TYPE' type='hidden'><value>" OFFLINE_NODE "</value></field>"
		   "<field var='number_of_messages'><value>");
	ob_u64(&b, n);
	ob_str(&b, "</value></field></x></query>");
	if (b.oom)
		im_error(c, "wait", "resource-constraint");
	else
		im_result(c, b.p, b.len);
	ob_free(&b);
}

struct headers {
	struct im_call *c;
	struct obuf b;
};

static int header_cb(void *arg, uint64_t seq, const void *val, size_t vlen)
{
	struct headers *h = arg;
	struct xml_view *v = &h->c->ctx->offline->view;

	ob_str(&h->b, "<item jid='");
	ob_esc(&h->b, h->c->jid, h->c->bare_len, true);
	ob_str(&h->b, "' node='");
	ob_u64(&h->b, seq);
	ob_str(&h->b, "'");
	/* 'name': the sender's full JID as in the message's 'from'. */
	if (xml_view_build(v, NULL, val, vlen) == 0 && v->info.from != XML_NO_TOK &&
	    v->tok[v->info.from].b <= JID_MAX) {
		char fb[JID_MAX + 1];
		struct xml_slice f = xml_tok_value(v, v->info.from, fb);
		ob_str(&h->b, " name='");
		ob_esc(&h->b, f.ptr, f.len, true);
		ob_str(&h->b, "'");
	}
	ob_str(&h->b, "/>");
	return h->b.oom;
}

void offline_disco_items(struct im_call *c, uint32_t query)
{
	(void)query;
	if (!own_inbox(c)) {
		im_error(c, "auth", "forbidden");   /* XEP-0013 2.3 */
		return;
	}
	if (!iq_type_is(c, "get")) {
		im_error(c, "modify", "bad-request");
		return;
	}
	struct headers h = { .c = c };
	ob_str(&h.b, "<query xmlns='" NS_DISCO_ITEMS "' node='" OFFLINE_NODE "'>");
	int rc = store_queue_iter(c->ctx->store, NULL, STORE_T_OFFLINE, c->jid, c->bare_len, header_cb, &h);
	ob_str(&h.b, "</query>");
	if (rc != STORE_OK || h.b.oom) {
		im_error(c, "wait", rc != STORE_OK ? "internal-server-error" : "resource-constraint");
	} else {
		flex_on(c);
		im_result(c, h.b.p, h.b.len);
	}
	ob_free(&h.b);
}

/* ---- XEP-0012 last activity ---------------------------------------------------- */

bool last_get(struct im_ctx *ctx, const char *bare, size_t len, time_t *when, char *status, size_t cap,
	      size_t *status_len)
{
	struct store_buf b = { 0 };
	bool ok = false;

	*status_len = 0;
	if (len == 0 || len > store_max_key(ctx->store))
		return false;
	int rc = store_get(ctx->store, NULL, STORE_T_LAST, bare, len, &b);
	if (rc == STORE_OK && b.len >= 9 && b.ptr[0] == LAST_VERSION) {
		uint64_t t = 0;
		for (int i = 0; i < 8; i++)
			t = t << 8 | b.ptr[1 + i];
		*when = (time_t)(int64_t)t;
		size_t n = b.len - 9 < cap ? b.len - 9 : cap;
		n = utf8_trim((const char *)b.ptr + 9, n);
		if (status && n)
			memcpy(status, b.ptr + 9, n);
		*status_len = status ? n : 0;
		ok = true;
	} else if (rc == STORE_OK) {
		log_warn("last: record of %.*s has an unknown format", (int)len, bare);
	}
	store_buf_free(&b);
	return ok;
}

void last_session_end(struct im_call *c)
{
	struct im_ctx *ctx = c->ctx;

	if (c->handle)
		flex_remove(ctx->offline, c->handle);
	if (!c->bare_len || !memchr(c->jid, '@', c->bare_len) || c->bare_len > store_max_key(ctx->store))
		return;
	/* XEP-0012 3: the user logged out when the last resource went. */
	if (c->out->available(c->out->srv, c->jid, c->bare_len, false) > 0)
		return;
	flex_remove_user(ctx->offline, c->jid, c->bare_len);
	/* A deleted account's sessions end after the deletion: no record
	 * must outlive it. */
	if (!im_account_exists(ctx, c->jid, c->bare_len))
		return;
	uint8_t rec[9 + LAST_STATUS_MAX];
	size_t n = 0;
	if (c->v && xml_slice_eq(xml_tok_local(c->v, 0), "presence")) {
		for (uint32_t ch = xml_first_child(c->v, 0); ch != XML_NO_TOK; ch = xml_next_sibling(c->v, ch)) {
			if (xml_slice_eq(xml_tok_local(c->v, ch), "status")) {
				n = elem_text(c->v, ch, (char *)rec + 9, LAST_STATUS_MAX);
				n = utf8_trim((const char *)rec + 9, n);
				break;
			}
		}
	}
	uint64_t t = (uint64_t)(int64_t)time(NULL);
	rec[0] = LAST_VERSION;
	for (int i = 0; i < 8; i++)
		rec[1 + i] = (uint8_t)(t >> (56 - 8 * i));
	/* Nobody is told the record was written: with group commit it joins
	 * the burst's batch (offline_flush commits it). */
	struct store_txn *batch = NULL;
	int brc = STORE_OK;
	if (ctx->group_commit)
		batch = batch_of(c, &brc);
	if (brc != STORE_OK ||
	    store_put(ctx->store, batch, STORE_T_LAST, c->jid, c->bare_len, rec, 9 + n, 0) != STORE_OK)
		log_err("last: logout of %.*s not recorded", (int)c->bare_len, c->jid);
}

static void last_answer(struct im_call *c, int64_t seconds, const char *status, size_t slen)
{
	struct obuf b = { 0 };

	if (seconds < 0)
		seconds = 0;   /* a clock that went back */
	ob_str(&b, "<query xmlns='" NS_LAST "' seconds='");
	ob_u64(&b, (uint64_t)seconds);
	if (slen) {
		ob_str(&b, "'>");
		ob_esc(&b, status, slen, false);
		ob_str(&b, "</query>");
	} else {
		ob_str(&b, "'/>");
	}
	if (b.oom)
		im_error(c, "wait", "resource-constraint");
	else
		im_result(c, b.p, b.len);
	ob_free(&b);
}

void last_iq(struct im_call *c, uint32_t child)
{
	struct im_ctx *ctx = c->ctx;
	struct xml_view *v = c->v;

	if (!xml_slice_eq(xml_tok_local(v, child), "query") || !iq_type_is(c, "get")) {
		im_error(c, "modify", "bad-request");
		return;
	}
	switch (c->to_kind) {
	case IM_TO_SERVER:
		/* XEP-0012 5: uptime, no text. */
		last_answer(c, (int64_t)(time(NULL) - ctx->started), NULL, 0);
		return;
	case IM_TO_SELF:
		/* The asker is one of the account's sessions: connected
		 * (XEP-0012 3, last paragraph). */
		if (c->has_to && !jid_is_bare(&c->to)) {
			im_error(c, "cancel", "service-unavailable");
			return;
		}
		last_answer(c, 0, NULL, 0);
		return;
	case IM_TO_USER:
		break;
	default:
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	/* A full JID here has no such resource (RFC 6121 8.5.3.2.3), and an
	 * unknown account is <service-unavailable/> (8.5.1), checked before
	 * the subscription so that the error does not tell which. */
	struct jid_slice user = jid_bare(&c->to);
	if (!jid_is_bare(&c->to) || !im_account_exists(ctx, user.ptr, user.len)) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	/* XEP-0012 3: only those allowed to see the user's presence. */
	struct jid *from = malloc(sizeof(*from));
	bool allowed = false;
	if (from && v->info.from != XML_NO_TOK && v->tok[v->info.from].b <= JID_MAX) {
		char fb[JID_MAX + 1];
		struct xml_slice f = xml_tok_value(v, v->info.from, fb);
		if (jid_parse(from, f.ptr, f.len, 0) == JID_OK) {
			struct jid_slice fbare = jid_bare(from);
			allowed = (roster_sub_of(ctx, user.ptr, user.len, fbare.ptr, fbare.len) & IM_SUB_FROM) != 0;
		}
	}
	free(from);
	if (!allowed) {
		im_error(c, "auth", "forbidden");
		return;
	}
	if (c->out->available(c->out->srv, user.ptr, user.len, false) > 0) {
		last_answer(c, 0, NULL, 0);
		return;
	}
	char status[LAST_STATUS_MAX];
	size_t slen = 0;
	time_t when = 0;
	if (!last_get(ctx, user.ptr, user.len, &when, status, sizeof(status), &slen)) {
		im_error(c, "cancel", "item-not-found");   /* never logged in */
		return;
	}
	last_answer(c, (int64_t)(time(NULL) - when), status, slen);
}

/* ---- account removal --------------------------------------------------------- */

int offline_purge(struct im_ctx *ctx, const char *bare, size_t len)
{
	struct store_txn t;
	int rc;

	if (len == 0 || len > store_max_key(ctx->store))
		return 0;
	rc = store_write_begin(ctx->store, &t);
	if (rc != STORE_OK)
		return -1;
	if (len + 9 <= store_max_key(ctx->store))
		rc = store_queue_clear(ctx->store, &t, STORE_T_OFFLINE, bare, len, NULL);
	if (rc == STORE_OK || rc == STORE_NOTFOUND)
		rc = store_del(ctx->store, &t, STORE_T_LAST, bare, len);
	if (rc == STORE_OK || rc == STORE_NOTFOUND)
		rc = store_commit(&t);
	else
		store_abort(&t);
	return rc == STORE_OK ? 0 : -1;
}
