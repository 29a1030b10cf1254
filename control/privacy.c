/* privacy.c: XEP-0191 blocking command and XEP-0016 privacy lists.
 *
 * One enforcement form for both: the router applies struct im_rule lists
 * (router/hooks.h); this file stores what the user asked for and compiles
 * it. A session's rules are, in this order:
 *   1. every blocked JID (XEP-0191), IM_RULE_DENY|IM_RULE_BLOCKCMD for all
 *      stanza kinds (XEP-0191 section 5: blocked items come first);
 *   2. the items of the session's active list, else of the default list
 *      (XEP-0016 2.2 rules 1 and 2: no layering of the two), in ascending
 *      'order'; group items expanded into one IM_MATCH_JID rule per roster
 *      member, subscription items as IM_MATCH_SUB.
 *
 * Storage, all in STORE_T_BLOCKLIST (XEP-0191 section 5: one back-end store
 * for both protocols), u being the owner's bare JID:
 *   u \0 jid           a blocked JID (prepared), empty value
 *   u \0 \1 'L' name   a privacy list, encoded as below
 *   u \0 \1 'D'        the default list's name
 * Blocked JIDs never start with a control byte (refused at block time), so
 * the two kinds never collide; one prefix delete removes everything.
 *
 * Active lists are per session and not stored (XEP-0016 2.2 rule 1): a
 * table of the sessions this control plane has seen start (privacy_state)
 * and not yet end (privacy_session_end) gives, per user, each session's
 * active list and the hash of the rules it was last sent, for the
 * <conflict/> rules (XEP-0016 2.2 rule 11) and for sending only changed
 * rules.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "control/im.h"
#include "parser/xmlw.h"
#include "store/store.h"
#include "util/log.h"

#define NS_BLOCKING "urn:xmpp:blocking"
#define NS_PRIVACY  "jabber:iq:privacy"

#define KEY_META       '\x01'
#define KEY_LIST       'L'
#define KEY_DEFAULT    'D'
#define LIST_VERSION   1u
#define NAME_MAX_LEN   1023u   /* a privacy list's name, bytes */
#define LISTS_MAX      64u     /* privacy lists per user */
#define VALUE_MAX      JID_MAX /* an item's value, bytes */

/* ---- growable bytes ------------------------------------------------------ */

struct gbuf {
	uint8_t *p;
	size_t len, cap;
	bool err;
};

static void gb_put(struct gbuf *b, const void *d, size_t n)
{
	if (b->err)
		return;
	if (b->len + n > b->cap) {
		size_t nc = b->cap ? b->cap * 2 : 1024;
		while (nc < b->len + n)
			nc *= 2;
		uint8_t *np = realloc(b->p, nc);
		if (!np) {
			b->err = true;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	if (n)
		memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void gb_free(struct gbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static uint64_t fnv64(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h ? h : 1;
}

/* A list of strings (prepared JIDs, names). */
struct strs {
	char **v;
	size_t *l;
	size_t n, cap;
};

static int strs_add(struct strs *s, const char *p, size_t len)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 8;
		char **nv = realloc(s->v, nc * sizeof(*nv));
		if (!nv)
			return -1;
		s->v = nv;
		size_t *nl = realloc(s->l, nc * sizeof(*nl));
		if (!nl)
			return -1;
		s->l = nl;
		s->cap = nc;
	}
	char *d = malloc(len + 1);
	if (!d)
		return -1;
	memcpy(d, p, len);
	d[len] = '\0';
	s->v[s->n] = d;
	s->l[s->n++] = len;
	return 0;
}

static bool strs_has(const struct strs *s, const char *p, size_t len)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->l[i] == len && !memcmp(s->v[i], p, len))
			return true;
	return false;
}

static void strs_free(struct strs *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	free(s->l);
	memset(s, 0, sizeof(*s));
}

/* ---- sessions and their active lists -------------------------------------- */

struct psess {
	uint64_t handle;
	char *active;        /* XEP-0016 active list, NULL: none (the default applies) */
	uint64_t sent;       /* hash of the rules last sent to the session (0: unknown) */
};

struct puser {
	struct puser *next;
	struct psess *s;
	uint32_t n, cap;
	size_t blen;
	char bare[];
};

struct privacy_state {
	struct puser **tab;
	size_t nb;
	size_t nusers;
	uint64_t push_id;
};

static size_t bucket(const struct privacy_state *ps, const char *bare, size_t blen)
{
	return (size_t)(fnv64((const uint8_t *)bare, blen) & (ps->nb - 1));
}

static struct puser *user_find(struct privacy_state *ps, const char *bare, size_t blen)
{
	for (struct puser *u = ps->tab[bucket(ps, bare, blen)]; u; u = u->next)
		if (u->blen == blen && !memcmp(u->bare, bare, blen))
			return u;
	return NULL;
}

static void grow_table(struct privacy_state *ps)
{
	size_t nb = ps->nb * 2;
	struct puser **nt = calloc(nb, sizeof(*nt));
	if (!nt)
		return;   /* longer chains, still correct */
	struct puser **old = ps->tab;
	size_t onb = ps->nb;
	ps->tab = nt;
	ps->nb = nb;
	for (size_t i = 0; i < onb; i++) {
		struct puser *u = old[i];
		while (u) {
			struct puser *next = u->next;
			size_t b = bucket(ps, u->bare, u->blen);
			u->next = nt[b];
			nt[b] = u;
			u = next;
		}
	}
	free(old);
}

static struct puser *user_get(struct privacy_state *ps, const char *bare, size_t blen)
{
	struct puser *u = user_find(ps, bare, blen);
	if (u)
		return u;
	u = calloc(1, sizeof(*u) + blen + 1);
	if (!u)
		return NULL;
	memcpy(u->bare, bare, blen);
	u->blen = blen;
	size_t b = bucket(ps, bare, blen);
	u->next = ps->tab[b];
	ps->tab[b] = u;
	if (++ps->nusers > ps->nb * 2)
		grow_table(ps);
	return u;
}

static void user_drop(struct privacy_state *ps, struct puser *u)
{
	struct puser **pp = &ps->tab[bucket(ps, u->bare, u->blen)];
	while (*pp && *pp != u)
		pp = &(*pp)->next;
	if (*pp)
		*pp = u->next;
	for (uint32_t i = 0; i < u->n; i++)
		free(u->s[i].active);
	free(u->s);
	free(u);
	ps->nusers--;
}

static struct psess *sess_find(struct puser *u, uint64_t handle)
{
	for (uint32_t i = 0; u && i < u->n; i++)
		if (u->s[i].handle == handle)
			return &u->s[i];
	return NULL;
}

static struct psess *sess_get(struct puser *u, uint64_t handle)
{
	struct psess *s = sess_find(u, handle);
	if (s)
		return s;
	if (u->n == u->cap) {
		uint32_t nc = u->cap ? u->cap * 2 : 2;
		struct psess *ns = realloc(u->s, nc * sizeof(*ns));
		if (!ns)
			return NULL;
		u->s = ns;
		u->cap = nc;
	}
	s = &u->s[u->n++];
	memset(s, 0, sizeof(*s));
	s->handle = handle;
	return s;
}

int privacy_init(struct im_ctx *ctx)
{
	struct privacy_state *ps = calloc(1, sizeof(*ps));
	if (!ps)
		return -1;
	ps->nb = 256;
	ps->tab = calloc(ps->nb, sizeof(*ps->tab));
	if (!ps->tab) {
		free(ps);
		return -1;
	}
	ctx->privacy = ps;
	return 0;
}

void privacy_free(struct im_ctx *ctx)
{
	struct privacy_state *ps = ctx->privacy;
	if (!ps)
		return;
	for (size_t i = 0; i < ps->nb; i++)
		while (ps->tab[i])
			user_drop(ps, ps->tab[i]);
	free(ps->tab);
	free(ps);
	ctx->privacy = NULL;
}

void privacy_session_end(struct im_call *c)
{
	struct privacy_state *ps = c->ctx->privacy;
	struct puser *u = user_find(ps, c->jid, c->bare_len);
	struct psess *s = sess_find(u, c->handle);
	if (!s)
		return;
	free(s->active);
	*s = u->s[--u->n];
	if (u->n == 0)
		user_drop(ps, u);
}

void privacy_session_moved(struct im_call *c, uint64_t old)
{
	struct privacy_state *ps = c->ctx->privacy;
	struct puser *u = user_find(ps, c->jid, c->bare_len);
	struct psess *s = sess_find(u, old);
	if (!s || old == c->handle)
		return;
	struct psess *dup = sess_find(u, c->handle);
	if (dup) {
		/* Already known under the new handle: keep that entry. */
		free(s->active);
		*s = u->s[--u->n];
		return;
	}
	s->handle = c->handle;
}

/* ---- store records --------------------------------------------------------- */

/* u \0 \1 kind name */
static size_t meta_key(struct im_ctx *ctx, char *out, size_t cap, const char *bare, size_t blen, char kind,
		       const char *name, size_t nlen)
{
	char rest[2 + NAME_MAX_LEN];
	if (nlen > NAME_MAX_LEN)
		return 0;
	rest[0] = KEY_META;
	rest[1] = kind;
	if (nlen)
		memcpy(rest + 2, name, nlen);
	size_t max = store_max_key(ctx->store);
	return im_key(out, cap < max ? cap : max, bare, blen, rest, 2 + nlen);
}

enum { PT_ALL = 0, PT_JID, PT_GROUP, PT_SUB };

/* One item of a privacy list, decoded; value borrowed from the record. */
struct pitem {
	uint32_t order;
	uint8_t type;      /* PT_* */
	uint8_t action;    /* IM_RULE_DENY or 0 */
	uint8_t kinds;     /* IM_KIND_* */
	uint8_t subs;      /* PT_SUB: IM_SUB_TO|FROM */
	uint16_t vlen;
	const char *val;
};

/* Record: u8 version, then per item: u32 order (LE), u8 type, action,
 * kinds, subs, u16 value length (LE), value. */
static void list_encode(struct gbuf *b, const struct pitem *it, size_t n)
{
	uint8_t ver = LIST_VERSION;
	gb_put(b, &ver, 1);
	for (size_t i = 0; i < n; i++) {
		uint8_t h[10] = {
			(uint8_t)it[i].order, (uint8_t)(it[i].order >> 8), (uint8_t)(it[i].order >> 16),
			(uint8_t)(it[i].order >> 24), it[i].type, it[i].action, it[i].kinds, it[i].subs,
			(uint8_t)it[i].vlen, (uint8_t)(it[i].vlen >> 8),
		};
		gb_put(b, h, sizeof(h));
		gb_put(b, it[i].val, it[i].vlen);
	}
}

/* Decode rec into *items (malloc'd, values point into rec). -1: corrupt. */
static int list_decode(const uint8_t *rec, size_t len, struct pitem **items, size_t *n)
{
	*items = NULL;
	*n = 0;
	if (len < 1 || rec[0] != LIST_VERSION)
		return -1;
	size_t cap = 0;
	for (size_t off = 1; off < len;) {
		if (len - off < 10)
			goto bad;
		struct pitem it;
		it.order = (uint32_t)rec[off] | (uint32_t)rec[off + 1] << 8 | (uint32_t)rec[off + 2] << 16 |
			   (uint32_t)rec[off + 3] << 24;
		it.type = rec[off + 4];
		it.action = rec[off + 5];
		it.kinds = rec[off + 6];
		it.subs = rec[off + 7];
		it.vlen = (uint16_t)(rec[off + 8] | rec[off + 9] << 8);
		off += 10;
		if (len - off < it.vlen || it.type > PT_SUB)
			goto bad;
		it.val = (const char *)rec + off;
		off += it.vlen;
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			struct pitem *ni = realloc(*items, cap * sizeof(*ni));
			if (!ni)
				goto bad;
			*items = ni;
		}
		(*items)[(*n)++] = it;
	}
	return 0;
bad:
	free(*items);
	*items = NULL;
	*n = 0;
	return -1;
}

/* The default list's name into out (NUL-terminated); false if none. */
static bool default_get(struct im_ctx *ctx, const char *bare, size_t blen, char *out, size_t cap)
{
	char key[600];
	struct store_buf b = { 0 };
	size_t kl = meta_key(ctx, key, sizeof(key), bare, blen, KEY_DEFAULT, NULL, 0);
	bool ok = false;
	if (kl && store_get(ctx->store, NULL, STORE_T_BLOCKLIST, key, kl, &b) == STORE_OK && b.len < cap) {
		memcpy(out, b.ptr, b.len);
		out[b.len] = '\0';
		ok = true;
	}
	store_buf_free(&b);
	return ok;
}

/* STORE_OK with the record in *b, STORE_NOTFOUND, or an error. */
static int list_get(struct im_ctx *ctx, const char *bare, size_t blen, const char *name, size_t nlen,
		    struct store_buf *b)
{
	char key[600];
	size_t kl = meta_key(ctx, key, sizeof(key), bare, blen, KEY_LIST, name, nlen);
	if (!kl)
		return STORE_NOTFOUND;
	return store_get(ctx->store, NULL, STORE_T_BLOCKLIST, key, kl, b);
}

struct iter_acc {
	size_t plen;
	struct strs *out;
	bool meta;          /* collect meta records of kind `kind` (their names) instead of JIDs */
	char kind;
	int err;
};

static int iter_collect(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct iter_acc *a = arg;
	const char *rest = (const char *)key + a->plen;
	size_t rl = klen - a->plen;
	(void)val;
	(void)vlen;
	if (!a->meta) {
		if (rl == 0 || rest[0] == KEY_META)
			return 0;
		if (strs_add(a->out, rest, rl) < 0)
			a->err = -1;
	} else {
		if (rl < 2 || rest[0] != KEY_META || rest[1] != a->kind)
			return 0;
		if (strs_add(a->out, rest + 2, rl - 2) < 0)
			a->err = -1;
	}
	return a->err;
}

/* The blocked JIDs (meta false) or the privacy lists' names (meta true). */
static int collect(struct im_ctx *ctx, const char *bare, size_t blen, bool meta, struct strs *out)
{
	char prefix[600];
	size_t pl = im_key(prefix, sizeof(prefix), bare, blen, NULL, 0);
	struct iter_acc a = { .plen = pl, .out = out, .meta = meta, .kind = KEY_LIST };
	if (!pl)
		return -1;
	int rc = store_iter(ctx->store, NULL, STORE_T_BLOCKLIST, prefix, pl, iter_collect, &a);
	return rc == STORE_OK && a.err == 0 ? 0 : -1;
}

/* ---- compiling ---------------------------------------------------------------- */

static void rule_add(struct gbuf *b, uint32_t *n, uint8_t match, uint8_t action, uint8_t kinds, uint8_t subs,
		     const char *jid, size_t jl)
{
	static const uint8_t zero[4];
	struct im_rule r;
	memset(&r, 0, sizeof(r));
	r.match = match;
	r.action = action;
	r.kinds = kinds;
	r.subs = subs;
	r.len = (uint16_t)jl;
	gb_put(b, &r, sizeof(r));
	gb_put(b, jid, jl);
	gb_put(b, zero, IM_REC_ALIGN(jl) - jl);
	(*n)++;
}

struct group_acc {
	struct gbuf *b;
	uint32_t *n;
	uint8_t action, kinds;
	size_t count;
};

static void group_member(void *arg, const char *jid, size_t len)
{
	struct group_acc *g = arg;
	g->count++;
	if (g->b && len <= UINT16_MAX)
		rule_add(g->b, g->n, IM_MATCH_JID, g->action, g->kinds, 0, jid, len);
}

/* The rules of bare's sessions with active list `active` (NULL: the
 * default list applies) appended to b; *n counts them. 0 or -1. */
static int compile(struct im_ctx *ctx, const char *bare, size_t blen, const char *active, struct gbuf *b,
		   uint32_t *n)
{
	struct strs blocked = { 0 };
	char dname[NAME_MAX_LEN + 1];
	const char *name = active;
	int rc = 0;

	if (collect(ctx, bare, blen, false, &blocked) < 0) {
		strs_free(&blocked);
		return -1;
	}
	for (size_t i = 0; i < blocked.n; i++)
		rule_add(b, n, IM_MATCH_JID, IM_RULE_DENY | IM_RULE_BLOCKCMD, 0, 0, blocked.v[i], blocked.l[i]);
	strs_free(&blocked);

	if (!name && default_get(ctx, bare, blen, dname, sizeof(dname)))
		name = dname;
	if (name) {
		struct store_buf rec = { 0 };
		struct pitem *it = NULL;
		size_t ni = 0;
		int g = list_get(ctx, bare, blen, name, strlen(name), &rec);
		if (g == STORE_OK && list_decode(rec.ptr, rec.len, &it, &ni) == 0) {
			for (size_t i = 0; i < ni; i++) {
				switch (it[i].type) {
				case PT_ALL:
					rule_add(b, n, IM_MATCH_ALL, it[i].action, it[i].kinds, 0, NULL, 0);
					break;
				case PT_JID:
					rule_add(b, n, IM_MATCH_JID, it[i].action, it[i].kinds, 0, it[i].val, it[i].vlen);
					break;
				case PT_SUB:
					rule_add(b, n, IM_MATCH_SUB, it[i].action, it[i].kinds, it[i].subs, NULL, 0);
					break;
				case PT_GROUP: {
					struct group_acc ga = { b, n, it[i].action, it[i].kinds, 0 };
					roster_group_members(ctx, bare, blen, it[i].val, it[i].vlen, group_member, &ga);
					break;
				}
				}
			}
		} else if (g != STORE_NOTFOUND) {
			log_err("privacy: list of %.*s unreadable", (int)blen, bare);
			rc = -1;
		}
		free(it);
		store_buf_free(&rec);
	}
	return b->err ? -1 : rc;
}

/* hdr + rules (+ push) for IM_EV_RULES. */
static int rules_event(struct im_ctx *ctx, const char *bare, size_t blen, const char *active, const char *push,
		       size_t plen, struct gbuf *ev, uint64_t *hash)
{
	struct im_rules_hdr h = { 0, 0 };
	ev->len = 0;
	gb_put(ev, &h, sizeof(h));
	if (compile(ctx, bare, blen, active, ev, &h.nrules) < 0 || ev->err)
		return -1;
	memcpy(ev->p, &h, sizeof(h));
	*hash = fnv64(ev->p, ev->len);
	gb_put(ev, push, plen);
	return ev->err ? -1 : 0;
}

enum send_mode {
	SEND_ALL,       /* every session, with the push (block list changes) */
	SEND_CHANGED,   /* tracked sessions whose rules differ from what they have */
};

static void send_rules(struct im_ctx *ctx, const struct im_out *out, const char *bare, size_t blen,
		       enum send_mode mode, const char *push, size_t plen)
{
	struct puser *u = user_find(ctx->privacy, bare, blen);
	struct gbuf def = { 0 }, ev = { 0 };
	uint64_t hdef = 0, h;
	bool any_active = false, have_def = false;
	const char *pp = mode == SEND_ALL ? push : NULL;
	size_t pl = mode == SEND_ALL ? plen : 0;

	for (uint32_t i = 0; u && i < u->n; i++)
		if (u->s[i].active)
			any_active = true;
	if (mode == SEND_ALL && !any_active) {
		/* Every session has the default's rules: one post reaches them
		 * all, also sessions this table does not know of. */
		if (rules_event(ctx, bare, blen, NULL, pp, pl, &def, &hdef) == 0) {
			out->user_event(out->srv, bare, blen, IM_EV_RULES, def.p, def.len);
			for (uint32_t i = 0; u && i < u->n; i++)
				u->s[i].sent = hdef;
		}
		gb_free(&def);
		return;
	}
	for (uint32_t i = 0; u && i < u->n; i++) {
		struct psess *s = &u->s[i];
		struct gbuf *e = &ev;
		if (!s->active) {
			if (!have_def) {
				if (rules_event(ctx, bare, blen, NULL, pp, pl, &def, &hdef) < 0)
					continue;
				have_def = true;
			}
			e = &def;
			h = hdef;
		} else if (rules_event(ctx, bare, blen, s->active, pp, pl, &ev, &h) < 0) {
			continue;
		}
		if (mode == SEND_ALL || s->sent != h) {
			out->event(out->srv, s->handle, IM_EV_RULES, e->p, e->len);
			s->sent = h;
		}
	}
	gb_free(&def);
	gb_free(&ev);
}

int privacy_state(struct im_call *c, uint8_t *buf, size_t cap, size_t *len)
{
	struct puser *u = user_get(c->ctx->privacy, c->jid, c->bare_len);
	struct psess *s = u && c->handle ? sess_get(u, c->handle) : NULL;
	struct gbuf b = { 0 };
	uint32_t n = 0;

	if (compile(c->ctx, c->jid, c->bare_len, s ? s->active : NULL, &b, &n) < 0) {
		/* No rules rather than no session; logged by compile. */
		gb_free(&b);
		return 0;
	}
	if (*len + b.len > cap) {
		gb_free(&b);
		return -1;
	}
	if (b.len)
		memcpy(buf + *len, b.p, b.len);
	*len += b.len;
	if (s) {
		struct im_rules_hdr h = { n, 0 };
		struct gbuf t = { 0 };
		gb_put(&t, &h, sizeof(h));
		gb_put(&t, b.p, b.len);
		s->sent = t.err ? 0 : fnv64(t.p, t.len);
		gb_free(&t);
	}
	gb_free(&b);
	return (int)n;
}

/* XEP-0016 2.1 JID matching, as the router does it: rule JID rj against
 * the peer's full (or bare) JID. */
static bool jid_matches(const char *rj, size_t rl, const char *peer, size_t len)
{
	const char *slash = memchr(peer, '/', len);
	size_t bl = slash ? (size_t)(slash - peer) : len;
	const char *at = memchr(peer, '@', bl);
	const char *dom = at ? at + 1 : peer;
	size_t dl = bl - (size_t)(dom - peer);

	if ((rl == len && !memcmp(rj, peer, len)) || (rl == bl && !memcmp(rj, peer, bl)) ||
	    (rl == dl && !memcmp(rj, dom, dl)))
		return true;
	return slash && rl == len - (size_t)(dom - peer) && !memcmp(rj, dom, rl);   /* domain/resource */
}

unsigned privacy_check_in(struct im_ctx *ctx, const char *bare, size_t bare_len, unsigned kind, const char *peer,
			  size_t peer_len)
{
	const char *slash = memchr(peer, '/', peer_len);
	size_t pbl = slash ? (size_t)(slash - peer) : peer_len;
	struct gbuf b = { 0 };
	uint32_t n = 0;
	unsigned verdict = 0;

	if (pbl == bare_len && !memcmp(peer, bare, bare_len))
		return 0;   /* never between the user's own resources */
	if (compile(ctx, bare, bare_len, NULL, &b, &n) < 0) {
		gb_free(&b);
		return 0;
	}
	size_t off = 0;
	for (uint32_t i = 0; i < n && off + sizeof(struct im_rule) <= b.len; i++) {
		struct im_rule r;
		memcpy(&r, b.p + off, sizeof(r));
		const char *rj = (const char *)b.p + off + sizeof(r);
		off += sizeof(r) + IM_REC_ALIGN(r.len);
		if (r.kinds && !(r.kinds & kind))
			continue;
		bool m = r.match == IM_MATCH_ALL ||
			 (r.match == IM_MATCH_JID && jid_matches(rj, r.len, peer, peer_len)) ||
			 (r.match == IM_MATCH_SUB &&
			  (roster_sub_of(ctx, bare, bare_len, peer, pbl) & (IM_SUB_TO | IM_SUB_FROM)) == r.subs);
		if (m) {
			verdict = r.action & (IM_RULE_DENY | IM_RULE_BLOCKCMD);
			if (!(verdict & IM_RULE_DENY))
				verdict = 0;
			break;
		}
	}
	gb_free(&b);
	return verdict;
}

void privacy_roster_changed(struct im_ctx *ctx, const struct im_out *out, const char *bare, size_t len)
{
	send_rules(ctx, out, bare, len, SEND_CHANGED, NULL, 0);
}

int privacy_purge(struct im_ctx *ctx, const char *bare, size_t len)
{
	char prefix[600];
	size_t pl = im_key(prefix, sizeof(prefix), bare, len, NULL, 0);
	if (!pl)
		return -1;
	return store_del_prefix(ctx->store, NULL, STORE_T_BLOCKLIST, prefix, pl, NULL) == STORE_OK ? 0 : -1;
}

/* ---- request helpers ------------------------------------------------------------ */

static size_t count_children(struct xml_view *v, uint32_t el)
{
	size_t n = 0;
	for (uint32_t k = xml_first_child(v, el); k != XML_NO_TOK; k = xml_next_sibling(v, k))
		n++;
	return n;
}

static void next_push_id(struct im_ctx *ctx, char *id, size_t cap, const char *prefix)
{
	snprintf(id, cap, "%s-%llu", prefix, (unsigned long long)++ctx->privacy->push_id);
}

/* ---- XEP-0191 ------------------------------------------------------------------- */

static void blocklist_get(struct im_call *c)
{
	struct strs jids = { 0 };
	if (collect(c->ctx, c->jid, c->bare_len, false, &jids) < 0) {
		strs_free(&jids);
		im_error(c, "wait", "internal-server-error");
		return;
	}
	size_t cap = 128;
	for (size_t i = 0; i < jids.n; i++)
		cap += XMLW_ESCAPED_MAX(jids.l[i]) + 24;
	char *p = malloc(cap);
	struct xmlw x;
	size_t n = 0;
	if (!p) {
		strs_free(&jids);
		im_error(c, "wait", "internal-server-error");
		return;
	}
	xmlw_init(&x, p, cap);
	xmlw_start(&x, "blocklist");
	xmlw_ns(&x, NULL, NS_BLOCKING);
	for (size_t i = 0; i < jids.n; i++) {
		xmlw_start(&x, "item");
		xmlw_attr(&x, "jid", jids.v[i], jids.l[i]);
		xmlw_end(&x);
	}
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) == XMLW_OK)
		im_result_flags(c, IM_SF_BLOCKLIST, 0, p, n);   /* XEP-0191 3.3: this session now gets pushes */
	else
		im_error(c, "wait", "internal-server-error");
	free(p);
	strs_free(&jids);
}

/* <iq type='set' id='..'><block|unblock xmlns='urn:xmpp:blocking'>items</..></iq> */
static size_t build_block_push(struct im_ctx *ctx, const char *what, const struct strs *jids, char **out)
{
	size_t cap = 256;
	for (size_t i = 0; i < jids->n; i++)
		cap += XMLW_ESCAPED_MAX(jids->l[i]) + 24;
	char *p = malloc(cap);
	char id[40];
	struct xmlw x;
	size_t n = 0;
	*out = p;
	if (!p)
		return 0;
	next_push_id(ctx, id, sizeof(id), "block");
	xmlw_init(&x, p, cap);
	xmlw_start(&x, "iq");
	xmlw_attr_str(&x, "type", "set");
	xmlw_attr_str(&x, "id", id);
	xmlw_start(&x, what);
	xmlw_ns(&x, NULL, NS_BLOCKING);
	for (size_t i = 0; i < jids->n; i++) {
		xmlw_start(&x, "item");
		xmlw_attr(&x, "jid", jids->v[i], jids->l[i]);
		xmlw_end(&x);
	}
	xmlw_end(&x);
	xmlw_end(&x);
	return xmlw_finish(&x, &n) == XMLW_OK ? n : 0;
}

/* XEP-0191 3.3 / 3.4: presence to (or unavailable presence for) a JID
 * allowed to receive the user's presence (subscription 'from' or 'both'),
 * from each of the user's available resources. Domain JIDs are not
 * contacts and get nothing. */
static void presence_effect(struct im_call *c, const char *jid, size_t jl, uint16_t flags)
{
	const char *at = memchr(jid, '@', jl);
	const char *slash = memchr(jid, '/', jl);
	if (!at || (slash && slash < at) || jl > UINT16_MAX)
		return;
	size_t bl = slash ? (size_t)(slash - jid) : jl;
	if (!(roster_sub_of(c->ctx, c->jid, c->bare_len, jid, bl) & IM_SUB_FROM))
		return;
	struct {
		struct im_presence_to h;
		char jid[JID_MAX + 4];
	} p;
	if (jl > JID_MAX)
		return;
	p.h.flags = flags;
	p.h.len = (uint16_t)jl;
	memcpy(p.jid, jid, jl);
	c->out->user_event(c->out->srv, c->jid, c->bare_len, IM_EV_PRESENCE_TO, &p, sizeof(p.h) + jl);
}

static void block_set(struct im_call *c, uint32_t child, bool block)
{
	struct im_ctx *ctx = c->ctx;
	struct xml_view *v = c->v;
	struct strs jids = { 0 }, existing = { 0 }, changed = { 0 };
	struct jid *j = malloc(sizeof(*j));
	char *abuf = malloc(JID_MAX * 3 + 1);
	char *push = NULL;
	const char *err = NULL, *etype = "modify";
	size_t max = ctx->cfg->im.privacy_max_items;

	if (!j || !abuf) {
		err = "internal-server-error";
		etype = "wait";
		goto out;
	}
	for (uint32_t k = xml_first_child(v, child); k != XML_NO_TOK; k = xml_next_sibling(v, k)) {
		size_t al = 0;
		if (!xml_slice_eq(xml_tok_local(v, k), "item") || !xml_slice_eq(xml_tok_ns(v, k), NS_BLOCKING))
			continue;
		int r = im_attr_get(v, k, "jid", abuf, JID_MAX * 3 + 1, &al);
		if (r == 0) {
			err = "bad-request";
			goto out;
		}
		if (r < 0 || jid_parse(j, abuf, al, 0) != JID_OK || (unsigned char)j->str[0] < 0x20) {
			err = "jid-malformed";
			goto out;
		}
		struct jid_slice f = jid_full(j);
		char key[600];
		if (!im_key(key, sizeof(key) < store_max_key(ctx->store) ? sizeof(key) : store_max_key(ctx->store),
			    c->jid, c->bare_len, f.ptr, f.len)) {
			err = "not-acceptable";   /* the key would not fit the store */
			goto out;
		}
		if (strs_has(&jids, f.ptr, f.len))
			continue;
		if (jids.n >= max) {
			err = "not-acceptable";
			goto out;
		}
		if (strs_add(&jids, f.ptr, f.len) < 0) {
			err = "internal-server-error";
			etype = "wait";
			goto out;
		}
	}
	/* XEP-0191 3.3: a block needs at least one item; an empty unblock
	 * unblocks everything (3.5). */
	if (block && jids.n == 0) {
		err = "bad-request";
		goto out;
	}
	if (collect(ctx, c->jid, c->bare_len, false, &existing) < 0) {
		err = "internal-server-error";
		etype = "wait";
		goto out;
	}
	struct strs *todo = !block && jids.n == 0 ? &existing : &jids;
	for (size_t i = 0; i < todo->n; i++) {
		bool was = todo == &existing || strs_has(&existing, todo->v[i], todo->l[i]);
		if (was != block && strs_add(&changed, todo->v[i], todo->l[i]) < 0) {
			err = "internal-server-error";
			etype = "wait";
			goto out;
		}
	}
	if (block && existing.n + changed.n > max) {
		err = "not-acceptable";
		goto out;
	}
	if (changed.n) {
		struct store_txn t;
		char key[600];
		int rc = store_write_begin(ctx->store, &t);
		if (rc == STORE_OK) {
			for (size_t i = 0; rc == STORE_OK && i < changed.n; i++) {
				size_t kl = im_key(key, sizeof(key), c->jid, c->bare_len, changed.v[i], changed.l[i]);
				rc = block ? store_put(ctx->store, &t, STORE_T_BLOCKLIST, key, kl, "", 0, 0)
					   : store_del(ctx->store, &t, STORE_T_BLOCKLIST, key, kl);
				if (rc == STORE_NOTFOUND)
					rc = STORE_OK;
			}
			if (rc == STORE_OK)
				rc = store_commit(&t);
			else
				store_abort(&t);
		}
		if (rc != STORE_OK) {
			err = "internal-server-error";
			etype = "wait";
			goto out;
		}
	}
	/* Committed. The pushes name what the user sent (all of it, also
	 * items that were already so), or nothing for "unblock all". */
	size_t plen = build_block_push(ctx, block ? "block" : "unblock", &jids, &push);
	if (block) {
		/* Unavailable first: once the rules are in force the router
		 * would drop outbound presence to the blocked JID. */
		for (size_t i = 0; i < changed.n; i++)
			presence_effect(c, changed.v[i], changed.l[i], IM_PT_UNAVAILABLE);
		send_rules(ctx, c->out, c->jid, c->bare_len, SEND_ALL, push, plen);
		im_result(c, NULL, 0);
	} else {
		send_rules(ctx, c->out, c->jid, c->bare_len, SEND_ALL, push, plen);
		im_result(c, NULL, 0);
		for (size_t i = 0; i < changed.n; i++)
			presence_effect(c, changed.v[i], changed.l[i], 0);
	}
out:
	if (err)
		im_error(c, etype, err);
	free(push);
	free(j);
	free(abuf);
	strs_free(&jids);
	strs_free(&existing);
	strs_free(&changed);
}

void blocking_iq(struct im_call *c, uint32_t child)
{
	enum im_iq_kind k = im_iq_kind(c->v);
	struct xml_slice name = xml_tok_local(c->v, child);

	/* XEP-0191 3.2-3.5: the user's own server, for the user's own list. */
	if (c->to_kind != IM_TO_SELF || !c->handle) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	if (k == IM_IQ_GET && xml_slice_eq(name, "blocklist"))
		blocklist_get(c);
	else if (k == IM_IQ_SET && xml_slice_eq(name, "block"))
		block_set(c, child, true);
	else if (k == IM_IQ_SET && xml_slice_eq(name, "unblock"))
		block_set(c, child, false);
	else
		im_error(c, "modify", "bad-request");
}

/* ---- XEP-0016 ------------------------------------------------------------------- */

static const char *const sub_names[] = { "none", "to", "from", "both" };   /* index = IM_SUB_TO|FROM bits */

static void list_names_get(struct im_call *c)
{
	struct strs names = { 0 };
	char dname[NAME_MAX_LEN + 1];
	struct puser *u = user_find(c->ctx->privacy, c->jid, c->bare_len);
	struct psess *s = sess_find(u, c->handle);
	bool has_def = default_get(c->ctx, c->jid, c->bare_len, dname, sizeof(dname));

	if (collect(c->ctx, c->jid, c->bare_len, true, &names) < 0) {
		strs_free(&names);
		im_error(c, "wait", "internal-server-error");
		return;
	}
	size_t cap = 256 + 2 * XMLW_ESCAPED_MAX(NAME_MAX_LEN);
	for (size_t i = 0; i < names.n; i++)
		cap += XMLW_ESCAPED_MAX(names.l[i]) + 24;
	char *p = malloc(cap);
	struct xmlw x;
	size_t n;
	if (p) {
		xmlw_init(&x, p, cap);
		xmlw_start(&x, "query");
		xmlw_ns(&x, NULL, NS_PRIVACY);
		if (s && s->active) {
			xmlw_start(&x, "active");
			xmlw_attr_str(&x, "name", s->active);
			xmlw_end(&x);
		}
		if (has_def) {
			xmlw_start(&x, "default");
			xmlw_attr_str(&x, "name", dname);
			xmlw_end(&x);
		}
		for (size_t i = 0; i < names.n; i++) {
			xmlw_start(&x, "list");
			xmlw_attr(&x, "name", names.v[i], names.l[i]);
			xmlw_end(&x);
		}
		xmlw_end(&x);
	}
	if (p && xmlw_finish(&x, &n) == XMLW_OK)
		im_result(c, p, n);
	else
		im_error(c, "wait", "internal-server-error");
	free(p);
	strs_free(&names);
}

static void list_get_iq(struct im_call *c, const char *name, size_t nlen)
{
	struct store_buf rec = { 0 };
	struct pitem *it = NULL;
	size_t ni = 0;
	int rc = list_get(c->ctx, c->jid, c->bare_len, name, nlen, &rec);

	if (rc == STORE_NOTFOUND) {
		im_error(c, "cancel", "item-not-found");
		goto out;
	}
	if (rc != STORE_OK || list_decode(rec.ptr, rec.len, &it, &ni) < 0) {
		im_error(c, "wait", "internal-server-error");
		goto out;
	}
	size_t cap = 256 + XMLW_ESCAPED_MAX(nlen);
	for (size_t i = 0; i < ni; i++)
		cap += XMLW_ESCAPED_MAX(it[i].vlen) + 160;
	char *p = malloc(cap);
	struct xmlw x;
	size_t n;
	if (!p) {
		im_error(c, "wait", "internal-server-error");
		goto out;
	}
	xmlw_init(&x, p, cap);
	xmlw_start(&x, "query");
	xmlw_ns(&x, NULL, NS_PRIVACY);
	xmlw_start(&x, "list");
	xmlw_attr(&x, "name", name, nlen);
	for (size_t i = 0; i < ni; i++) {
		char ord[12];
		xmlw_start(&x, "item");
		if (it[i].type == PT_JID || it[i].type == PT_GROUP) {
			xmlw_attr_str(&x, "type", it[i].type == PT_JID ? "jid" : "group");
			xmlw_attr(&x, "value", it[i].val, it[i].vlen);
		} else if (it[i].type == PT_SUB) {
			xmlw_attr_str(&x, "type", "subscription");
			xmlw_attr_str(&x, "value", sub_names[it[i].subs & 3u]);
		}
		xmlw_attr_str(&x, "action", it[i].action & IM_RULE_DENY ? "deny" : "allow");
		snprintf(ord, sizeof(ord), "%u", it[i].order);
		xmlw_attr_str(&x, "order", ord);
		if (it[i].kinds & IM_KIND_MESSAGE) {
			xmlw_start(&x, "message");
			xmlw_end(&x);
		}
		if (it[i].kinds & IM_KIND_IQ) {
			xmlw_start(&x, "iq");
			xmlw_end(&x);
		}
		if (it[i].kinds & IM_KIND_PRES_IN) {
			xmlw_start(&x, "presence-in");
			xmlw_end(&x);
		}
		if (it[i].kinds & IM_KIND_PRES_OUT) {
			xmlw_start(&x, "presence-out");
			xmlw_end(&x);
		}
		xmlw_end(&x);
	}
	xmlw_end(&x);
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) == XMLW_OK)
		im_result(c, p, n);
	else
		im_error(c, "wait", "internal-server-error");
	free(p);
out:
	free(it);
	store_buf_free(&rec);
}

/* Does `name` apply to a session of the user other than the sender?
 * (XEP-0016 2.2 rule 11.) is_default: name is the default list. */
static bool in_use_elsewhere(struct im_call *c, const char *name, bool is_default)
{
	struct puser *u = user_find(c->ctx->privacy, c->jid, c->bare_len);
	for (uint32_t i = 0; u && i < u->n; i++) {
		struct psess *s = &u->s[i];
		if (s->handle == c->handle)
			continue;
		if (s->active ? !strcmp(s->active, name) : is_default)
			return true;
	}
	return false;
}

static void active_set(struct im_call *c, const char *name, size_t nlen, bool decline)
{
	struct puser *u = user_get(c->ctx->privacy, c->jid, c->bare_len);
	struct psess *s = u ? sess_get(u, c->handle) : NULL;
	char *copy = NULL;

	if (!s) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	if (!decline) {
		struct store_buf rec = { 0 };
		int rc = list_get(c->ctx, c->jid, c->bare_len, name, nlen, &rec);
		store_buf_free(&rec);
		if (rc != STORE_OK) {
			im_error(c, "cancel", rc == STORE_NOTFOUND ? "item-not-found" : "internal-server-error");
			return;
		}
		copy = strdup(name);
		if (!copy) {
			im_error(c, "wait", "internal-server-error");
			return;
		}
	}
	free(s->active);
	s->active = copy;
	/* XEP-0016 2.3: applied before the result; this session only. */
	struct gbuf ev = { 0 };
	uint64_t h;
	if (rules_event(c->ctx, c->jid, c->bare_len, s->active, NULL, 0, &ev, &h) == 0) {
		c->out->event(c->out->srv, c->handle, IM_EV_RULES, ev.p, ev.len);
		s->sent = h;
	}
	gb_free(&ev);
	im_result(c, NULL, 0);
}

static void default_set(struct im_call *c, const char *name, size_t nlen, bool decline)
{
	struct im_ctx *ctx = c->ctx;
	char cur[NAME_MAX_LEN + 1];
	char key[600];
	bool has_cur = default_get(ctx, c->jid, c->bare_len, cur, sizeof(cur));
	size_t kl = meta_key(ctx, key, sizeof(key), c->jid, c->bare_len, KEY_DEFAULT, NULL, 0);
	int rc;

	if (!decline) {
		struct store_buf rec = { 0 };
		rc = list_get(ctx, c->jid, c->bare_len, name, nlen, &rec);
		store_buf_free(&rec);
		if (rc != STORE_OK) {
			im_error(c, "cancel", rc == STORE_NOTFOUND ? "item-not-found" : "internal-server-error");
			return;
		}
		if (has_cur && !strcmp(cur, name)) {
			im_result(c, NULL, 0);
			return;
		}
	} else if (!has_cur) {
		im_result(c, NULL, 0);
		return;
	}
	/* XEP-0016 2.4: not while the current default applies to another
	 * connected resource. */
	if (has_cur && in_use_elsewhere(c, cur, true)) {
		im_error(c, "cancel", "conflict");
		return;
	}
	if (!kl) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	rc = decline ? store_del(ctx->store, NULL, STORE_T_BLOCKLIST, key, kl)
		     : store_put(ctx->store, NULL, STORE_T_BLOCKLIST, key, kl, name, nlen, 0);
	if (rc != STORE_OK && rc != STORE_NOTFOUND) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	send_rules(ctx, c->out, c->jid, c->bare_len, SEND_CHANGED, NULL, 0);
	im_result(c, NULL, 0);
}

static int cmp_order(const void *a, const void *b)
{
	const struct pitem *x = a, *y = b;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* The privacy list push (XEP-0016 2.2 rule 10, 2.5): to every connected
 * resource, whether or not it asked for the lists. */
static void list_push(struct im_call *c, const char *name, size_t nlen)
{
	size_t cap = sizeof(struct im_send_hdr) + 256 + XMLW_ESCAPED_MAX(nlen);
	char *p = malloc(cap);
	char id[40];
	struct xmlw x;
	size_t n;
	struct im_send_hdr h = { 0, 0 };
	if (!p)
		return;
	memcpy(p, &h, sizeof(h));
	next_push_id(c->ctx, id, sizeof(id), "privacy");
	xmlw_init(&x, p + sizeof(h), cap - sizeof(h));
	xmlw_start(&x, "iq");
	xmlw_attr_str(&x, "type", "set");
	xmlw_attr_str(&x, "id", id);
	xmlw_start(&x, "query");
	xmlw_ns(&x, NULL, NS_PRIVACY);
	xmlw_start(&x, "list");
	xmlw_attr(&x, "name", name, nlen);
	xmlw_end(&x);
	xmlw_end(&x);
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) == XMLW_OK)
		c->out->user_event(c->out->srv, c->jid, c->bare_len, IM_EV_SEND, p, sizeof(h) + n);
	free(p);
}

static void list_remove(struct im_call *c, const char *name, size_t nlen)
{
	struct im_ctx *ctx = c->ctx;
	char cur[NAME_MAX_LEN + 1];
	char key[600], dkey[600];
	struct store_buf rec = { 0 };
	int rc = list_get(ctx, c->jid, c->bare_len, name, nlen, &rec);
	store_buf_free(&rec);

	if (rc != STORE_OK) {
		im_error(c, "cancel", rc == STORE_NOTFOUND ? "item-not-found" : "internal-server-error");
		return;
	}
	bool is_def = default_get(ctx, c->jid, c->bare_len, cur, sizeof(cur)) && !strcmp(cur, name);
	/* XEP-0016 2.7: not while it applies to another resource. */
	if (in_use_elsewhere(c, name, is_def)) {
		im_error(c, "cancel", "conflict");
		return;
	}
	size_t kl = meta_key(ctx, key, sizeof(key), c->jid, c->bare_len, KEY_LIST, name, nlen);
	size_t dkl = meta_key(ctx, dkey, sizeof(dkey), c->jid, c->bare_len, KEY_DEFAULT, NULL, 0);
	struct store_txn t;
	rc = store_write_begin(ctx->store, &t);
	if (rc == STORE_OK) {
		rc = store_del(ctx->store, &t, STORE_T_BLOCKLIST, key, kl);
		if (rc == STORE_OK && is_def)
			rc = store_del(ctx->store, &t, STORE_T_BLOCKLIST, dkey, dkl);
		if (rc == STORE_OK || rc == STORE_NOTFOUND)
			rc = store_commit(&t);
		else
			store_abort(&t);
	}
	if (rc != STORE_OK) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	struct psess *s = sess_find(user_find(ctx->privacy, c->jid, c->bare_len), c->handle);
	if (s && s->active && !strcmp(s->active, name)) {
		free(s->active);
		s->active = NULL;
	}
	send_rules(ctx, c->out, c->jid, c->bare_len, SEND_CHANGED, NULL, 0);
	im_result(c, NULL, 0);
	list_push(c, name, nlen);
}

static void list_set(struct im_call *c, uint32_t list, const char *name, size_t nlen)
{
	struct im_ctx *ctx = c->ctx;
	struct xml_view *v = c->v;
	size_t max = ctx->cfg->im.privacy_max_items;
	struct pitem *it = NULL;
	struct strs vals = { 0 };
	size_t ni = 0, cap = 0;
	char *abuf = malloc(JID_MAX * 3 + 1);
	struct jid *j = malloc(sizeof(*j));
	const char *err = NULL, *etype = "modify";
	struct gbuf rec = { 0 };

	if (!abuf || !j) {
		err = "internal-server-error";
		etype = "wait";
		goto out;
	}
	for (uint32_t k = xml_first_child(v, list); k != XML_NO_TOK; k = xml_next_sibling(v, k)) {
		if (!xml_slice_eq(xml_tok_local(v, k), "item"))
			continue;
		struct pitem p;
		char tmp[16];
		size_t al = 0;
		memset(&p, 0, sizeof(p));
		if (ni == max) {
			err = "not-acceptable";
			goto out;
		}
		/* action: required, allow or deny */
		if (im_attr_get(v, k, "action", tmp, sizeof(tmp), &al) != 1 ||
		    (strcmp(tmp, "allow") && strcmp(tmp, "deny"))) {
			err = "bad-request";
			goto out;
		}
		p.action = strcmp(tmp, "deny") ? 0 : IM_RULE_DENY;
		/* order: required, unsignedInt */
		if (im_attr_get(v, k, "order", tmp, sizeof(tmp), &al) != 1 || al == 0 || al > 10) {
			err = "bad-request";
			goto out;
		}
		unsigned long long o = 0;
		for (size_t i = 0; i < al; i++) {
			if (tmp[i] < '0' || tmp[i] > '9') {
				err = "bad-request";
				goto out;
			}
			o = o * 10 + (unsigned)(tmp[i] - '0');
		}
		if (o > UINT32_MAX) {
			err = "bad-request";
			goto out;
		}
		p.order = (uint32_t)o;
		/* type and value */
		int tr = im_attr_get(v, k, "type", tmp, sizeof(tmp), &al);
		if (tr < 0) {
			err = "bad-request";
			goto out;
		}
		if (tr == 1) {
			p.type = !strcmp(tmp, "jid") ? PT_JID : !strcmp(tmp, "group") ? PT_GROUP
				 : !strcmp(tmp, "subscription") ? PT_SUB : PT_ALL;
			if (p.type == PT_ALL || im_attr_get(v, k, "value", abuf, JID_MAX * 3 + 1, &al) != 1) {
				err = "bad-request";
				goto out;
			}
			const char *val = abuf;
			if (p.type == PT_JID) {
				if (jid_parse(j, abuf, al, 0) != JID_OK) {
					err = "bad-request";
					goto out;
				}
				val = j->str;
				al = jid_size(j);
			} else if (p.type == PT_SUB) {
				int sb = -1;
				for (int i = 0; i < 4; i++)
					if (!strcmp(abuf, sub_names[i]))
						sb = i;
				if (sb < 0) {
					err = "bad-request";
					goto out;
				}
				p.subs = (uint8_t)sb;   /* none 0, to IM_SUB_TO, from IM_SUB_FROM, both */
				al = 0;
			} else if (al == 0 || al > VALUE_MAX) {
				err = "bad-request";
				goto out;
			}
			if (strs_add(&vals, val, al) < 0) {
				err = "internal-server-error";
				etype = "wait";
				goto out;
			}
			p.vlen = (uint16_t)al;
			p.val = (const char *)(uintptr_t)(vals.n - 1);   /* index into vals, resolved below */
		} else {
			p.val = NULL;
		}
		for (uint32_t e = xml_first_child(v, k); e != XML_NO_TOK; e = xml_next_sibling(v, e)) {
			struct xml_slice en = xml_tok_local(v, e);
			if (xml_slice_eq(en, "message"))
				p.kinds |= IM_KIND_MESSAGE;
			else if (xml_slice_eq(en, "iq"))
				p.kinds |= IM_KIND_IQ;
			else if (xml_slice_eq(en, "presence-in"))
				p.kinds |= IM_KIND_PRES_IN;
			else if (xml_slice_eq(en, "presence-out"))
				p.kinds |= IM_KIND_PRES_OUT;
		}
		if (ni == cap) {
			cap = cap ? cap * 2 : 8;
			struct pitem *nit = realloc(it, cap * sizeof(*nit));
			if (!nit) {
				err = "internal-server-error";
				etype = "wait";
				goto out;
			}
			it = nit;
		}
		it[ni++] = p;
	}
	/* Values: from indexes to pointers (vals may have moved while growing). */
	for (size_t i = 0; i < ni; i++)
		if (it[i].type != PT_ALL)
			it[i].val = vals.v[(uintptr_t)it[i].val];
	qsort(it, ni, sizeof(*it), cmp_order);
	for (size_t i = 1; i < ni; i++) {
		if (it[i].order == it[i - 1].order) {   /* XEP-0016 2.1: unique */
			err = "bad-request";
			goto out;
		}
	}
	/* The request is read: from here on only roster calls, which may
	 * use the store. XEP-0016 2.1: a group not in the roster is
	 * <item-not-found/>. */
	for (size_t i = 0; i < ni; i++) {
		if (it[i].type != PT_GROUP)
			continue;
		struct group_acc ga = { NULL, NULL, 0, 0, 0 };
		roster_group_members(ctx, c->jid, c->bare_len, it[i].val, it[i].vlen, group_member, &ga);
		if (ga.count == 0) {
			err = "item-not-found";
			etype = "cancel";
			goto out;
		}
	}
	struct strs names = { 0 };
	if (collect(ctx, c->jid, c->bare_len, true, &names) < 0) {
		strs_free(&names);
		err = "internal-server-error";
		etype = "wait";
		goto out;
	}
	bool is_new = !strs_has(&names, name, nlen);
	size_t nlists = names.n;
	strs_free(&names);
	if (is_new && nlists >= LISTS_MAX) {
		err = "not-acceptable";
		etype = "cancel";
		goto out;
	}
	char key[600];
	size_t kl = meta_key(ctx, key, sizeof(key), c->jid, c->bare_len, KEY_LIST, name, nlen);
	if (!kl) {
		err = "not-acceptable";
		goto out;
	}
	list_encode(&rec, it, ni);
	if (rec.err || store_put(ctx->store, NULL, STORE_T_BLOCKLIST, key, kl, rec.p, rec.len, 0) != STORE_OK) {
		err = "internal-server-error";
		etype = "wait";
		goto out;
	}
	/* XEP-0016 2.2 rule 8: the sessions using it get the new definition. */
	send_rules(ctx, c->out, c->jid, c->bare_len, SEND_CHANGED, NULL, 0);
	im_result(c, NULL, 0);
	list_push(c, name, nlen);
out:
	if (err)
		im_error(c, etype, err);
	gb_free(&rec);
	strs_free(&vals);
	free(it);
	free(abuf);
	free(j);
}

void privacy_iq(struct im_call *c, uint32_t child)
{
	struct xml_view *v = c->v;
	enum im_iq_kind k = im_iq_kind(v);
	char name[NAME_MAX_LEN + 1];
	size_t nlen = 0;

	if (c->to_kind != IM_TO_SELF || !c->handle) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	if (!xml_slice_eq(xml_tok_local(v, child), "query") || k == IM_IQ_OTHER) {
		im_error(c, "modify", "bad-request");
		return;
	}
	size_t nch = count_children(v, child);
	uint32_t el = xml_first_child(v, child);
	if (k == IM_IQ_GET && nch == 0) {
		list_names_get(c);
		return;
	}
	/* XEP-0016 2.1, 2.3: one list per get; one active, default or list
	 * per set. */
	if (nch != 1) {
		im_error(c, "modify", "bad-request");
		return;
	}
	struct xml_slice what = xml_tok_local(v, el);
	int nr = im_attr_get(v, el, "name", name, sizeof(name), &nlen);
	if (nr < 0 || (nr == 1 && nlen == 0)) {
		im_error(c, "modify", "bad-request");
		return;
	}
	if (k == IM_IQ_GET) {
		if (xml_slice_eq(what, "list") && nr == 1)
			list_get_iq(c, name, nlen);
		else
			im_error(c, "modify", "bad-request");
		return;
	}
	if (xml_slice_eq(what, "active")) {
		active_set(c, name, nlen, nr == 0);
	} else if (xml_slice_eq(what, "default")) {
		default_set(c, name, nlen, nr == 0);
	} else if (xml_slice_eq(what, "list") && nr == 1) {
		bool has_items = false;
		for (uint32_t e = xml_first_child(v, el); e != XML_NO_TOK; e = xml_next_sibling(v, e))
			if (xml_slice_eq(xml_tok_local(v, e), "item"))
				has_items = true;
		if (has_items)
			list_set(c, el, name, nlen);
		else
			list_remove(c, name, nlen);
	} else {
		im_error(c, "modify", "bad-request");
	}
}
