/* roster.c: rosters and presence subscriptions, the control-plane side
 * (RFC 6121 section 2 rosters, section 3 subscriptions with the state
 * tables of appendix A, 4.3.2 probes of contacts with no resource).
 *
 * Records (store/store-t.h conventions, "u" the owner's bare JID):
 *   roster   u \0 contact   item: fmt=1, sub (IM_SUB_TO|FROM|PENDING_OUT|
 *                           PREAPPROVED), name_len (u16 LE), ngroups (u16
 *                           LE), name, then per group len (u16 LE) + bytes
 *   roster   u \0           the roster version (RFC 6121 2.6): fmt=1,
 *                           epoch (u32 LE, random, chosen when the record
 *                           is created), counter (u64 LE). A contact JID
 *                           is never empty, so this key is no item's. The
 *                           'ver' string is "<epoch hex>-<counter>": a
 *                           user deleted and created again starts a new
 *                           epoch, so a client's cached ver never matches.
 *   pending  u \0 contact   an inbound subscription request not yet
 *                           answered (RFC 6121 3.1.3): fmt=1, then the
 *                           presence stanza as the contact sent it (from
 *                           its bare JID, with status and the rest) and
 *                           an XEP-0203 <delay/> of when it came.
 *
 * State. "Pending In" is the pending record, not a roster bit on disk:
 * RFC 6121 3.1.3 keeps a request that was not answered out of the roster
 * (the contact is pushed to the roster only once approved), so an item
 * may exist only as a pending request ("unlisted"). In memory an item's
 * sub carries IM_SUB_PENDING_IN too.
 *
 * Cache. Rosters are loaded on first use (every item and pending key of
 * the user) and kept in a hash table with an LRU list bounded by
 * ROSTER_CACHE_DEFAULT entries; a roster in use by the request being
 * served is pinned and never evicted. A change is applied to the cached
 * copy while the request's one store batch is built; if the commit fails
 * the touched rosters are loaded again from the store (which still holds
 * the old state) and nothing is posted.
 *
 * Effects (results, pushes, stanzas routed, presence events) are queued
 * while the batch is built and posted only after it committed: what a
 * client saw acknowledged survives kill -9.
 *
 * Remote contacts: there are no server-to-server links yet. A subscription
 * stanza to another domain updates the user's side as the outbound tables
 * of appendix A.2 say, and when the table says the stanza is routed it is
 * answered with <remote-server-not-found/> instead (RFC 6120 8.3.3.16), so
 * the client learns the contact cannot be reached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include "control/im.h"
#include "parser/xmlw.h"
#include "store/store.h"
#include "util/log.h"

#define NS_ROSTER "jabber:iq:roster"
#define NS_DELAY  "urn:xmpp:delay"

/* Server-configured limits of RFC 6121 2.3.3 (bytes, after unescaping). */
#define ROSTER_NAME_MAX    1024u
#define ROSTER_GROUP_MAX   1024u
#define ROSTER_GROUPS_MAX  64u
#define ROSTER_CACHE_DEFAULT 4096u

#define REC_ITEM_V1    1u
#define REC_VER_V1     1u
#define REC_PENDING_V1 1u

/* Bits of an item record on disk. */
#define SUB_STORED (IM_SUB_TO | IM_SUB_FROM | IM_SUB_PENDING_OUT | IM_SUB_PREAPPROVED)
/* Bits a roster item's XML shows (subscription, ask, approved). */
#define SUB_VISIBLE SUB_STORED

enum sub_type { T_SUBSCRIBE = 1, T_SUBSCRIBED, T_UNSUBSCRIBE, T_UNSUBSCRIBED };

/* ---- the cache ------------------------------------------------------------- */

struct ritem {
	char *buf;            /* jid, then name, then the encoded groups: one allocation */
	uint32_t groups_len;  /* bytes of the encoded groups ([u16 LE len][bytes] each) */
	uint16_t jid_len;
	uint16_t name_len;
	uint16_t ngroups;
	uint8_t sub;          /* IM_SUB_*, PENDING_IN included */
	bool listed;          /* in the roster (false: only a pending inbound request) */
};

struct roster {
	struct roster *hnext;
	struct roster *prev, *next;   /* LRU: head is the most recent */
	uint32_t hash;
	unsigned pin;
	bool stale;           /* a reload failed: load again before use */
	char *bare;
	size_t bare_len;
	struct ritem *items;
	size_t n, cap;
	size_t nlisted;
	size_t npending;
	uint32_t epoch;
	uint64_t ver;
	bool has_ver;
};

struct roster_cache {
	struct roster **bucket;
	size_t nbucket;
	struct roster *head, *tail;
	size_t n, max;
	uint64_t push_seq;
};

static inline const char *it_name(const struct ritem *it) { return it->buf + it->jid_len; }
static inline const char *it_groups(const struct ritem *it) { return it->buf + it->jid_len + it->name_len; }

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }

static uint32_t fnv(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)s[i]) * 16777619u;
	return h;
}

static void roster_clear(struct roster *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->items[i].buf);
	free(r->items);
	r->items = NULL;
	r->n = r->cap = r->nlisted = r->npending = 0;
	r->has_ver = false;
	r->epoch = 0;
	r->ver = 0;
}

static struct ritem *roster_find(struct roster *r, const char *jid, size_t len)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].jid_len == len && !memcmp(r->items[i].buf, jid, len))
			return &r->items[i];
	return NULL;
}

/* A new unlisted item with no name, groups or state. Pointers into
 * r->items move: callers look items up again after an add. */
static struct ritem *roster_add(struct roster *r, const char *jid, size_t len)
{
	if (r->n == r->cap) {
		size_t nc = r->cap ? r->cap * 2 : 16;
		struct ritem *ni = realloc(r->items, nc * sizeof(*ni));
		if (!ni)
			return NULL;
		r->items = ni;
		r->cap = nc;
	}
	struct ritem *it = &r->items[r->n];
	memset(it, 0, sizeof(*it));
	it->buf = malloc(len ? len : 1);
	if (!it->buf)
		return NULL;
	memcpy(it->buf, jid, len);
	it->jid_len = (uint16_t)len;
	r->n++;
	return it;
}

static void roster_drop(struct roster *r, struct ritem *it)
{
	size_t i = (size_t)(it - r->items);
	free(it->buf);
	r->items[i] = r->items[r->n - 1];
	r->n--;
}

/* Replace name and groups. -1: out of memory (item unchanged). */
static int item_set_data(struct ritem *it, const char *name, size_t nlen, const uint8_t *groups, size_t glen,
			 unsigned ngroups)
{
	char *b = malloc(it->jid_len + nlen + glen + 1);
	if (!b)
		return -1;
	memcpy(b, it->buf, it->jid_len);
	if (nlen)
		memcpy(b + it->jid_len, name, nlen);
	if (glen)
		memcpy(b + it->jid_len + nlen, groups, glen);
	free(it->buf);
	it->buf = b;
	it->name_len = (uint16_t)nlen;
	it->groups_len = (uint32_t)glen;
	it->ngroups = (uint16_t)ngroups;
	return 0;
}

static bool item_in_group(const struct ritem *it, const char *g, size_t glen)
{
	const uint8_t *p = (const uint8_t *)it_groups(it), *e = p + it->groups_len;
	while (p + 2 <= e) {
		uint16_t l = get16(p);
		if (l == glen && !memcmp(p + 2, g, glen))
			return true;
		p += 2 + l;
	}
	return false;
}

/* Decode an item record into a new listed item. -1: malformed or out of memory. */
static int item_decode(struct roster *r, const char *jid, size_t jlen, const uint8_t *v, size_t vlen)
{
	if (vlen < 6 || v[0] != REC_ITEM_V1 || jlen == 0 || jlen > JID_MAX)
		return -1;
	uint16_t nlen = get16(v + 2), ng = get16(v + 4);
	if (6u + nlen > vlen)
		return -1;
	const uint8_t *g = v + 6 + nlen, *e = v + vlen, *p = g;
	for (unsigned i = 0; i < ng; i++) {
		if (p + 2 > e || p + 2 + get16(p) > e)
			return -1;
		p += 2 + get16(p);
	}
	if (p != e)
		return -1;
	struct ritem *it = roster_find(r, jid, jlen);
	if (!it && !(it = roster_add(r, jid, jlen)))
		return -1;
	if (item_set_data(it, (const char *)v + 6, nlen, g, (size_t)(e - g), ng) < 0)
		return -1;
	it->sub = (uint8_t)((it->sub & IM_SUB_PENDING_IN) | (v[1] & SUB_STORED));
	if (!it->listed) {
		it->listed = true;
		r->nlisted++;
	}
	return 0;
}

/* Encode into a malloc'd record. */
static uint8_t *item_encode(const struct ritem *it, size_t *len)
{
	*len = 6u + it->name_len + it->groups_len;
	uint8_t *v = malloc(*len);
	if (!v)
		return NULL;
	v[0] = REC_ITEM_V1;
	v[1] = (uint8_t)(it->sub & SUB_STORED);
	put16(v + 2, it->name_len);
	put16(v + 4, it->ngroups);
	memcpy(v + 6, it_name(it), it->name_len);
	memcpy(v + 6 + it->name_len, it_groups(it), it->groups_len);
	return v;
}

struct load_arg {
	struct roster *r;
	size_t plen;
	bool oom;
};

static int load_roster_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct load_arg *a = arg;
	const uint8_t *v = val;

	if (klen == a->plen) {
		if (vlen == 13 && v[0] == REC_VER_V1) {
			a->r->epoch = (uint32_t)v[1] | (uint32_t)v[2] << 8 | (uint32_t)v[3] << 16 | (uint32_t)v[4] << 24;
			a->r->ver = 0;
			for (int i = 7; i >= 0; i--)
				a->r->ver = a->r->ver << 8 | v[5 + i];
			a->r->has_ver = true;
		} else {
			log_warn("roster: %.*s: bad version record, ignored", (int)a->r->bare_len, a->r->bare);
		}
		return 0;
	}
	if (item_decode(a->r, (const char *)key + a->plen, klen - a->plen, v, vlen) < 0)
		log_warn("roster: %.*s: bad item record for %.*s, ignored", (int)a->r->bare_len, a->r->bare,
			 (int)(klen - a->plen), (const char *)key + a->plen);
	return 0;
}

static int load_pending_cb(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct load_arg *a = arg;
	(void)val;
	(void)vlen;
	if (klen <= a->plen)
		return 0;
	const char *jid = (const char *)key + a->plen;
	size_t jl = klen - a->plen;
	struct ritem *it = roster_find(a->r, jid, jl);
	if (!it && !(it = roster_add(a->r, jid, jl))) {
		a->oom = true;
		return 1;
	}
	if (!(it->sub & IM_SUB_PENDING_IN)) {
		it->sub |= IM_SUB_PENDING_IN;
		a->r->npending++;
	}
	return 0;
}

static int roster_load(struct im_ctx *ctx, struct roster *r)
{
	char prefix[JID_MAX + 2];
	struct load_arg a = { r, 0, false };

	roster_clear(r);
	a.plen = im_key(prefix, sizeof(prefix), r->bare, r->bare_len, NULL, 0);
	if (!a.plen)
		return -1;
	if (store_iter(ctx->store, NULL, STORE_T_ROSTER, prefix, a.plen, load_roster_cb, &a) != STORE_OK ||
	    store_iter(ctx->store, NULL, STORE_T_PENDING, prefix, a.plen, load_pending_cb, &a) != STORE_OK || a.oom) {
		log_err("roster: cannot load the roster of %.*s", (int)r->bare_len, r->bare);
		roster_clear(r);
		return -1;
	}
	return 0;
}

static void lru_unlink(struct roster_cache *rc, struct roster *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		rc->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		rc->tail = r->prev;
	r->prev = r->next = NULL;
}

static void lru_front(struct roster_cache *rc, struct roster *r)
{
	r->next = rc->head;
	r->prev = NULL;
	if (rc->head)
		rc->head->prev = r;
	rc->head = r;
	if (!rc->tail)
		rc->tail = r;
}

static void cache_remove(struct roster_cache *rc, struct roster *r)
{
	struct roster **pp = &rc->bucket[r->hash % rc->nbucket];
	while (*pp && *pp != r)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = r->hnext;
	lru_unlink(rc, r);
	rc->n--;
	roster_clear(r);
	free(r->bare);
	free(r);
}

static void cache_trim(struct roster_cache *rc)
{
	struct roster *r = rc->tail;
	while (rc->n > rc->max && r) {
		struct roster *prev = r->prev;
		if (!r->pin)
			cache_remove(rc, r);
		r = prev;
	}
}

/* The roster of bare, loaded if it is not cached, pinned (roster_unpin).
 * NULL: store error or out of memory (logged). */
static struct roster *roster_get(struct im_ctx *ctx, const char *bare, size_t len)
{
	struct roster_cache *rc = ctx->roster;
	uint32_t h = fnv(bare, len);
	struct roster *r;

	for (r = rc->bucket[h % rc->nbucket]; r; r = r->hnext) {
		if (r->hash == h && r->bare_len == len && !memcmp(r->bare, bare, len)) {
			if (r->stale && !r->pin) {
				if (roster_load(ctx, r) < 0)
					return NULL;
				r->stale = false;
			}
			lru_unlink(rc, r);
			lru_front(rc, r);
			r->pin++;
			return r;
		}
	}
	r = calloc(1, sizeof(*r));
	if (!r || !(r->bare = malloc(len + 1))) {
		free(r);
		log_err("roster: out of memory");
		return NULL;
	}
	memcpy(r->bare, bare, len);
	r->bare[len] = '\0';
	r->bare_len = len;
	r->hash = h;
	if (roster_load(ctx, r) < 0) {
		free(r->bare);
		free(r);
		return NULL;
	}
	r->hnext = rc->bucket[h % rc->nbucket];
	rc->bucket[h % rc->nbucket] = r;
	lru_front(rc, r);
	rc->n++;
	r->pin = 1;
	cache_trim(rc);
	return r;
}

static void roster_unpin(struct im_ctx *ctx, struct roster *r)
{
	if (r && r->pin && --r->pin == 0)
		cache_trim(ctx->roster);
}

static void cache_forget(struct im_ctx *ctx, const char *bare, size_t len)
{
	struct roster_cache *rc = ctx->roster;
	uint32_t h = fnv(bare, len);
	for (struct roster *r = rc->bucket[h % rc->nbucket]; r; r = r->hnext) {
		if (r->hash == h && r->bare_len == len && !memcmp(r->bare, bare, len)) {
			if (r->pin)
				roster_clear(r);   /* in use: emptied, it is gone from the store too */
			else
				cache_remove(rc, r);
			return;
		}
	}
}

int roster_init(struct im_ctx *ctx)
{
	struct roster_cache *rc = calloc(1, sizeof(*rc));
	if (!rc)
		return -1;
	rc->max = ROSTER_CACHE_DEFAULT;
	rc->nbucket = 2 * ROSTER_CACHE_DEFAULT + 1;
	rc->bucket = calloc(rc->nbucket, sizeof(*rc->bucket));
	if (!rc->bucket) {
		free(rc);
		log_err("roster: out of memory");
		return -1;
	}
	ctx->roster = rc;
	return 0;
}

void roster_free(struct im_ctx *ctx)
{
	struct roster_cache *rc = ctx->roster;
	if (!rc)
		return;
	while (rc->head) {
		rc->head->pin = 0;
		cache_remove(rc, rc->head);
	}
	free(rc->bucket);
	free(rc);
	ctx->roster = NULL;
}

void roster_cache_limit(struct im_ctx *ctx, unsigned max)
{
	ctx->roster->max = max ? max : 1;
	cache_trim(ctx->roster);
}

/* ---- the subscription state machine (RFC 6121 appendix A) -------------------
 * States are IM_SUB_* bit sets: "None" 0, "None + Pending Out" PENDING_OUT,
 * "None + Pending In" PENDING_IN, "To" TO, "From" FROM, "Both" TO|FROM, and
 * their combinations. PREAPPROVED is the 3.4 pre-approval. */

/* A.2: the user sends type to the contact. Returns the new state; *route:
 * whether the stanza goes on to the contact. */
static unsigned sub_outbound(enum sub_type type, unsigned s, bool *route)
{
	*route = false;
	switch (type) {
	case T_SUBSCRIBE:
		/* A.2.1: routed in every state (3.1.2: the contact's server may
		 * have lost the state and answers again); Pending Out is added
		 * unless the user already has a subscription. */
		*route = true;
		if (!(s & (IM_SUB_TO | IM_SUB_PENDING_OUT)))
			s |= IM_SUB_PENDING_OUT;
		return s;
	case T_UNSUBSCRIBE:
		/* A.2.2: routed; To and Pending Out end. */
		*route = true;
		return s & ~(unsigned)(IM_SUB_TO | IM_SUB_PENDING_OUT);
	case T_SUBSCRIBED:
		/* A.2.3: approves a pending request (routed), or with none is a
		 * pre-approval (3.4, not routed); no change with From already. */
		if (s & IM_SUB_PENDING_IN) {
			*route = true;
			return (s | IM_SUB_FROM) & ~(unsigned)(IM_SUB_PENDING_IN | IM_SUB_PREAPPROVED);
		}
		if (s & IM_SUB_FROM)
			return s;
		return s | IM_SUB_PREAPPROVED;
	case T_UNSUBSCRIBED:
		/* A.2.4: refuses a request or cancels the contact's
		 * subscription (routed); otherwise it cancels a pre-approval
		 * (note [1] of the table). */
		if (s & (IM_SUB_PENDING_IN | IM_SUB_FROM)) {
			*route = true;
			return s & ~(unsigned)(IM_SUB_PENDING_IN | IM_SUB_FROM | IM_SUB_PREAPPROVED);
		}
		return s & ~(unsigned)IM_SUB_PREAPPROVED;
	}
	return s;
}

/* A.3: the contact's server receives type from the user. Returns the new
 * state; *deliver: whether the stanza goes to the contact's resources;
 * *autoreply: the server answers 'subscribed' for the contact (A.3.1
 * rows marked *, and a 3.4 pre-approval). */
static unsigned sub_inbound(enum sub_type type, unsigned s, bool *deliver, bool *autoreply)
{
	*deliver = false;
	*autoreply = false;
	switch (type) {
	case T_SUBSCRIBE:
		if (s & IM_SUB_FROM) {
			*autoreply = true;
			return s;
		}
		if (s & IM_SUB_PREAPPROVED) {
			/* 3.4: approved without asking the contact. */
			*autoreply = true;
			return (s | IM_SUB_FROM) & ~(unsigned)IM_SUB_PREAPPROVED;
		}
		if (s & IM_SUB_PENDING_IN)
			return s;
		*deliver = true;
		return s | IM_SUB_PENDING_IN;
	case T_UNSUBSCRIBE:
		if (s & (IM_SUB_PENDING_IN | IM_SUB_FROM)) {
			*deliver = true;
			return s & ~(unsigned)(IM_SUB_PENDING_IN | IM_SUB_FROM);
		}
		return s;
	case T_SUBSCRIBED:
		if (s & IM_SUB_PENDING_OUT) {
			*deliver = true;
			return (s | IM_SUB_TO) & ~(unsigned)IM_SUB_PENDING_OUT;
		}
		return s;
	case T_UNSUBSCRIBED:
		if (s & (IM_SUB_PENDING_OUT | IM_SUB_TO)) {
			*deliver = true;
			return s & ~(unsigned)(IM_SUB_PENDING_OUT | IM_SUB_TO);
		}
		return s;
	}
	return s;
}

static const char *sub_type_name(enum sub_type t)
{
	switch (t) {
	case T_SUBSCRIBE: return "subscribe";
	case T_SUBSCRIBED: return "subscribed";
	case T_UNSUBSCRIBE: return "unsubscribe";
	case T_UNSUBSCRIBED: return "unsubscribed";
	}
	return "";
}

/* ---- one request: its batch and its effects -------------------------------- */

enum eff_kind { EFF_USER_EVENT = 1, EFF_EVENT, EFF_ROUTE, EFF_TO_SESSION };

struct effect {
	uint8_t kind;
	unsigned ev;
	uint64_t handle;
	char *user;           /* EFF_USER_EVENT: bare JID (own allocation) */
	size_t user_len;
	uint8_t *data;
	size_t len;
};

#define OP_MAX_ROSTERS 2

struct op {
	struct im_ctx *ctx;
	const struct im_out *out;
	struct store_txn txn;
	bool open;
	bool failed;
	struct effect *eff;
	size_t neff, ceff;
	struct roster *r[OP_MAX_ROSTERS];   /* pinned, touched by this request */
	bool privacy[OP_MAX_ROSTERS];      /* subscriptions or groups changed */
	bool bumped[OP_MAX_ROSTERS];       /* version record to write */
	size_t nr;
};

static void op_init(struct op *op, struct im_ctx *ctx, const struct im_out *out)
{
	memset(op, 0, sizeof(*op));
	op->ctx = ctx;
	op->out = out;
}

static int op_slot(struct op *op, struct roster *r)
{
	for (size_t i = 0; i < op->nr; i++)
		if (op->r[i] == r)
			return (int)i;
	return -1;
}

/* Pin r for the request (the caller's pin is handed over). */
static void op_hold(struct op *op, struct roster *r)
{
	if (op_slot(op, r) >= 0 || op->nr == OP_MAX_ROSTERS) {
		if (op_slot(op, r) < 0)
			op->failed = true;   /* cannot happen: two users per request */
		roster_unpin(op->ctx, r);
		return;
	}
	op->r[op->nr++] = r;
}

static bool op_begin(struct op *op)
{
	if (op->failed)
		return false;
	if (!op->open) {
		if (store_write_begin(op->ctx->store, &op->txn) != STORE_OK) {
			op->failed = true;
			return false;
		}
		op->open = true;
	}
	return true;
}

static void op_put(struct op *op, enum store_table tb, const char *owner, size_t olen, const char *jid, size_t jlen,
		   const void *v, size_t vlen)
{
	char key[JID_MAX * 2 + 2];
	size_t kl = im_key(key, sizeof(key), owner, olen, jid, jlen);
	if (!op_begin(op))
		return;
	if (!kl || store_put(op->ctx->store, &op->txn, tb, key, kl, v, vlen, 0) != STORE_OK)
		op->failed = true;
}

static void op_del(struct op *op, enum store_table tb, const char *owner, size_t olen, const char *jid, size_t jlen)
{
	char key[JID_MAX * 2 + 2];
	size_t kl = im_key(key, sizeof(key), owner, olen, jid, jlen);
	if (!op_begin(op))
		return;
	int rc = kl ? store_del(op->ctx->store, &op->txn, tb, key, kl) : STORE_ERROR;
	if (rc != STORE_OK && rc != STORE_NOTFOUND)
		op->failed = true;
}

static struct effect *op_effect(struct op *op, enum eff_kind kind, size_t len)
{
	if (op->neff == op->ceff) {
		size_t nc = op->ceff ? op->ceff * 2 : 8;
		struct effect *ne = realloc(op->eff, nc * sizeof(*ne));
		if (!ne) {
			op->failed = true;
			return NULL;
		}
		op->eff = ne;
		op->ceff = nc;
	}
	struct effect *e = &op->eff[op->neff];
	memset(e, 0, sizeof(*e));
	e->data = malloc(len ? len : 1);
	if (!e->data) {
		op->failed = true;
		return NULL;
	}
	e->kind = (uint8_t)kind;
	e->len = len;
	op->neff++;
	return e;
}

static void op_route(struct op *op, const void *stanza, size_t len)
{
	struct effect *e = op_effect(op, EFF_ROUTE, len);
	if (e)
		memcpy(e->data, stanza, len);
}


static void op_user_event(struct op *op, const char *bare, size_t blen, unsigned ev, const void *p, size_t len)
{
	struct effect *e = op_effect(op, EFF_USER_EVENT, len);
	if (!e)
		return;
	e->user = malloc(blen + 1);
	if (!e->user) {
		op->failed = true;
		return;
	}
	memcpy(e->user, bare, blen);
	e->user_len = blen;
	e->ev = ev;
	memcpy(e->data, p, len);
}

/* The sessions of `of` send their presence (or unavailable) to `to`. */
static void op_presence_to(struct op *op, const char *of, size_t oflen, const char *to, size_t tolen, unsigned flags)
{
	uint8_t buf[sizeof(struct im_presence_to) + JID_MAX];
	struct im_presence_to pt = { (uint16_t)flags, (uint16_t)tolen };
	if (tolen > JID_MAX)
		return;
	memcpy(buf, &pt, sizeof(pt));
	memcpy(buf + sizeof(pt), to, tolen);
	op_user_event(op, of, oflen, IM_EV_PRESENCE_TO, buf, sizeof(pt) + tolen);
}

/* Commit, then post the effects in order. Returns 0, or -1 (nothing
 * posted; the touched rosters are reloaded from the store). */
static int op_finish(struct op *op)
{
	int rc = 0;

	if (op->open) {
		/* Version records go with the items they version. */
		for (size_t i = 0; i < op->nr && !op->failed; i++) {
			if (!op->bumped[i])
				continue;
			struct roster *r = op->r[i];
			uint8_t v[13];
			v[0] = REC_VER_V1;
			for (int b = 0; b < 4; b++)
				v[1 + b] = (uint8_t)(r->epoch >> (8 * b));
			for (int b = 0; b < 8; b++)
				v[5 + b] = (uint8_t)(r->ver >> (8 * b));
			op_put(op, STORE_T_ROSTER, r->bare, r->bare_len, NULL, 0, v, sizeof(v));
		}
		if (op->failed) {
			store_abort(&op->txn);
			rc = -1;
		} else {
			int st = store_commit(&op->txn);
			if (st != STORE_OK) {
				log_err("roster: commit failed: %s", store_rc_str(st));
				rc = -1;
			}
		}
		op->open = false;
	} else if (op->failed) {
		rc = -1;
	}
	if (rc < 0) {
		for (size_t i = 0; i < op->nr; i++)
			if (roster_load(op->ctx, op->r[i]) < 0)
				op->r[i]->stale = true;
	} else {
		const struct im_out *o = op->out;
		for (size_t i = 0; i < op->neff; i++) {
			struct effect *e = &op->eff[i];
			switch (e->kind) {
			case EFF_USER_EVENT:
				o->user_event(o->srv, e->user, e->user_len, e->ev, e->data, e->len);
				break;
			case EFF_EVENT:
				o->event(o->srv, e->handle, e->ev, e->data, e->len);
				break;
			case EFF_ROUTE:
				o->route(o->srv, e->data, e->len);
				break;
			case EFF_TO_SESSION:
				o->to_session(o->srv, e->handle, e->data, e->len);
				break;
			}
		}
		for (size_t i = 0; i < op->nr; i++)
			if (op->privacy[i])
				privacy_roster_changed(op->ctx, o, op->r[i]->bare, op->r[i]->bare_len);
	}
	for (size_t i = 0; i < op->neff; i++) {
		free(op->eff[i].data);
		free(op->eff[i].user);
	}
	free(op->eff);
	op->eff = NULL;
	op->neff = op->ceff = 0;
	for (size_t i = 0; i < op->nr; i++)
		roster_unpin(op->ctx, op->r[i]);
	op->nr = 0;
	return rc;
}

/* ---- XML of items --------------------------------------------------------- */

static size_t item_xml_bound(const struct ritem *it)
{
	return 96 + XMLW_ESCAPED_MAX(it->jid_len + it->name_len + it->groups_len) + 20u * it->ngroups;
}

static void item_xml(struct xmlw *x, const struct ritem *it, bool removed)
{
	xmlw_start(x, "item");
	xmlw_attr(x, "jid", it->buf, it->jid_len);
	if (removed) {
		xmlw_attr_str(x, "subscription", "remove");
		xmlw_end(x);
		return;
	}
	if (it->name_len)
		xmlw_attr(x, "name", it_name(it), it->name_len);
	unsigned s = it->sub & (IM_SUB_TO | IM_SUB_FROM);
	xmlw_attr_str(x, "subscription", s == (IM_SUB_TO | IM_SUB_FROM) ? "both" : s == IM_SUB_TO ? "to"
					   : s == IM_SUB_FROM ? "from" : "none");
	if (it->sub & IM_SUB_PENDING_OUT)
		xmlw_attr_str(x, "ask", "subscribe");
	if (it->sub & IM_SUB_PREAPPROVED)
		xmlw_attr_str(x, "approved", "true");
	const uint8_t *p = (const uint8_t *)it_groups(it), *e = p + it->groups_len;
	while (p + 2 <= e) {
		uint16_t l = get16(p);
		xmlw_start(x, "group");
		xmlw_text(x, (const char *)p + 2, l);
		xmlw_end(x);
		p += 2 + l;
	}
	xmlw_end(x);
}

static void ver_string(const struct roster *r, char out[40])
{
	if (!r->has_ver)
		snprintf(out, 40, "0");
	else
		snprintf(out, 40, "%08x-%llu", r->epoch, (unsigned long long)r->ver);
}

/* The item of roster r changed (or was removed: removed): bump the version
 * and queue a push (RFC 6121 2.1.6) with IM_EV_CONTACT to every session of
 * the user. */
static void op_push(struct op *op, struct roster *r, const struct ritem *it, bool removed)
{
	int slot = op_slot(op, r);
	if (slot < 0) {
		op->failed = true;
		return;
	}
	if (!r->has_ver) {
		uint32_t e = 0;
		if (getrandom(&e, sizeof(e), 0) != (ssize_t)sizeof(e))
			e = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)r;
		r->epoch = e;
		r->ver = 0;
		r->has_ver = true;
	}
	r->ver++;
	op->bumped[slot] = true;

	char ver[40];
	ver_string(r, ver);
	size_t jpad = IM_REC_ALIGN(it->jid_len);
	size_t cap = sizeof(struct im_contact) + jpad + 160 + item_xml_bound(it);
	uint8_t *buf = malloc(cap);
	if (!buf) {
		op->failed = true;
		return;
	}
	struct im_contact ic = { removed ? (uint8_t)IM_SUB_REMOVE : it->sub, 0, it->jid_len };
	memset(buf, 0, sizeof(ic) + jpad);
	memcpy(buf, &ic, sizeof(ic));
	memcpy(buf + sizeof(ic), it->buf, it->jid_len);
	size_t off = sizeof(ic) + jpad;

	struct xmlw x;
	size_t n;
	char id[32];
	snprintf(id, sizeof(id), "push%llx", (unsigned long long)++op->ctx->roster->push_seq);
	xmlw_init(&x, (char *)buf + off, cap - off);
	xmlw_start(&x, "iq");
	xmlw_attr_str(&x, "type", "set");
	xmlw_attr_str(&x, "id", id);
	xmlw_start(&x, "query");
	xmlw_ns(&x, NULL, NS_ROSTER);
	xmlw_attr_str(&x, "ver", ver);
	item_xml(&x, it, removed);
	xmlw_end(&x);
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) != XMLW_OK) {
		log_err("roster: push for %.*s does not serialise", (int)r->bare_len, r->bare);
		n = 0;   /* the contact table still learns it */
	}
	op_user_event(op, r->bare, r->bare_len, IM_EV_CONTACT, buf, off + n);
	free(buf);
}

/* Persist item it of r after a change from old_sub/old_listed, and push it
 * if the roster shows a difference. */
static void op_item_changed(struct op *op, struct roster *r, struct ritem *it, unsigned old_sub, bool old_listed,
			    bool data_changed)
{
	int slot = op_slot(op, r);
	if (slot < 0) {
		op->failed = true;
		return;
	}
	bool pending_changed = (old_sub ^ it->sub) & IM_SUB_PENDING_IN;
	if (pending_changed && !(it->sub & IM_SUB_PENDING_IN)) {
		op_del(op, STORE_T_PENDING, r->bare, r->bare_len, it->buf, it->jid_len);
		r->npending--;
	}
	/* a new pending request is stored by the caller (it has the stanza) */
	bool visible = ((old_sub ^ it->sub) & SUB_VISIBLE) || old_listed != it->listed || data_changed;
	if (it->listed && (visible || ((old_sub ^ it->sub) & SUB_STORED))) {
		size_t vl;
		uint8_t *v = item_encode(it, &vl);
		if (!v) {
			op->failed = true;
			return;
		}
		op_put(op, STORE_T_ROSTER, r->bare, r->bare_len, it->buf, it->jid_len, v, vl);
		free(v);
	}
	if (it->listed && visible)
		op_push(op, r, it, false);
	if (((old_sub ^ it->sub) & (IM_SUB_TO | IM_SUB_FROM)) || old_listed != it->listed || data_changed)
		op->privacy[slot] = true;
}

/* ---- stanzas ------------------------------------------------------------- */

/* <presence from to type/> into a malloc'd buffer. */
static char *presence_build(const char *from, size_t flen, const char *to, size_t tlen, const char *type, size_t *len)
{
	size_t cap = 64 + XMLW_ESCAPED_MAX(flen + tlen);
	char *b = malloc(cap);
	struct xmlw x;
	if (!b)
		return NULL;
	xmlw_init(&x, b, cap);
	xmlw_start(&x, "presence");
	xmlw_attr(&x, "from", from, flen);
	xmlw_attr(&x, "to", to, tlen);
	xmlw_attr_str(&x, "type", type);
	xmlw_end(&x);
	if (xmlw_finish(&x, len) != XMLW_OK) {
		free(b);
		return NULL;
	}
	return b;
}

/* The request's stanza with 'from' the sender's bare JID (RFC 6121 3.1.2:
 * the user's server stamps the bare JID) and 'to' the contact's bare JID,
 * its children kept. Malloc'd. */
static char *stanza_forward(struct xml_view *v, const char *from, size_t flen, const char *to, size_t tlen,
			    size_t *len)
{
	struct xml_slice f = { from, (uint32_t)flen }, t = { to, (uint32_t)tlen };
	size_t sl = 16 + 6 * (flen + tlen);
	char *scratch = malloc(sl);
	struct iovec iov[XML_REWRITE_IOV];
	char *out = NULL;
	if (!scratch)
		return NULL;
	int n = xml_view_rewrite(v, &f, &t, scratch, sl, iov);
	if (n > 0) {
		size_t total = 0;
		for (int i = 0; i < n; i++)
			total += iov[i].iov_len;
		out = malloc(total);
		if (out) {
			size_t o = 0;
			for (int i = 0; i < n; i++) {
				memcpy(out + o, iov[i].iov_base, iov[i].iov_len);
				o += iov[i].iov_len;
			}
			*len = total;
		}
	}
	free(scratch);
	return out;
}

/* The pending record for a forwarded subscribe: fmt byte, then the stanza
 * with an XEP-0203 <delay/> (it may be delivered at a later login) before
 * its end tag. qname: the top element's name as written. */
static uint8_t *pending_record(const char *st, size_t len, struct xml_slice qname, const char *domain, size_t dlen,
			       size_t *out_len)
{
	char stamp[21], delay[160 + 6 * 1024];
	struct xmlw x;
	size_t dl;
	im_stamp(time(NULL), stamp);
	xmlw_init(&x, delay, sizeof(delay));
	xmlw_start(&x, "delay");
	xmlw_ns(&x, NULL, NS_DELAY);
	if (dlen <= 1023)
		xmlw_attr(&x, "from", domain, dlen);
	xmlw_attr_str(&x, "stamp", stamp);
	xmlw_end(&x);
	if (xmlw_finish(&x, &dl) != XMLW_OK)
		dl = 0;

	uint8_t *r = malloc(1 + len + dl + qname.len + 4);
	if (!r)
		return NULL;
	r[0] = REC_PENDING_V1;
	size_t o = 1;
	if (len >= 2 && st[len - 2] == '/' && st[len - 1] == '>') {
		memcpy(r + o, st, len - 2);
		o += len - 2;
		r[o++] = '>';
		memcpy(r + o, delay, dl);
		o += dl;
		r[o++] = '<';
		r[o++] = '/';
		memcpy(r + o, qname.ptr, qname.len);
		o += qname.len;
		r[o++] = '>';
	} else {
		size_t e = len;
		while (e > 0 && st[e - 1] != '<')
			e--;
		if (e == 0) {
			free(r);
			return NULL;
		}
		e--;
		memcpy(r + o, st, e);
		o += e;
		memcpy(r + o, delay, dl);
		o += dl;
		memcpy(r + o, st + e, len - e);
		o += len - e;
	}
	*out_len = o;
	return r;
}

/* ---- the inbound side (the contact's server, A.3) ------------------------------ */

static const char *domain_of(const char *bare, size_t len, size_t *dlen)
{
	const char *at = memchr(bare, '@', len);
	const char *d = at ? at + 1 : bare;
	*dlen = len - (size_t)(d - bare);
	return d;
}

/* The user s (bare) sent type to the local contact whose roster is pr;
 * fwd[0..flen) is the stanza as it reaches the contact (from s, to the
 * contact's bare JID), or NULL to build a bare one. */
static void inbound(struct op *op, struct roster *pr, const char *s, size_t slen, enum sub_type type,
		    const char *fwd, size_t flen, struct xml_slice qname)
{
	struct ritem *it = roster_find(pr, s, slen);
	unsigned old = it ? it->sub : 0;
	bool old_listed = it && it->listed;
	bool deliver, autoreply;
	unsigned ns = sub_inbound(type, old, &deliver, &autoreply);
	char *built = NULL;

	/* A request from someone the contact blocks (XEP-0191 3.3, XEP-0016
	 * 2.2): dropped silently, no pending state, whether or not a session
	 * of the contact is there to enforce it. */
	if (type == T_SUBSCRIBE && privacy_check_in(op->ctx, pr->bare, pr->bare_len, 0, s, slen)) {
		log_debug("roster: subscription request from %.*s to %.*s blocked", (int)slen, s,
			  (int)pr->bare_len, pr->bare);
		return;
	}

	if (type == T_SUBSCRIBE && (ns & IM_SUB_PENDING_IN) && !(old & IM_SUB_PENDING_IN) &&
	    pr->npending >= op->ctx->cfg->im.pending_max) {
		/* A flood: more unanswered requests than the contact may
		 * keep. Dropped, as if never sent. */
		log_debug("roster: %.*s has %zu pending requests: one from %.*s dropped", (int)pr->bare_len, pr->bare,
			 pr->npending, (int)slen, s);
		return;
	}
	if (!fwd && (deliver || (type == T_SUBSCRIBE && (ns & IM_SUB_PENDING_IN)))) {
		built = presence_build(s, slen, pr->bare, pr->bare_len, sub_type_name(type), &flen);
		if (!built) {
			op->failed = true;
			return;
		}
		fwd = built;
		qname = (struct xml_slice){ "presence", 8 };
	}
	if (type == T_SUBSCRIBE && (ns & IM_SUB_PENDING_IN)) {
		/* New or repeated request: the record holds the latest stanza
		 * (a duplicate replaces, it does not add). */
		size_t dlen, rl;
		const char *d = domain_of(pr->bare, pr->bare_len, &dlen);
		uint8_t *rec = pending_record(fwd, flen, qname, d, dlen, &rl);
		if (!rec) {
			op->failed = true;
			free(built);
			return;
		}
		op_put(op, STORE_T_PENDING, pr->bare, pr->bare_len, s, slen, rec, rl);
		free(rec);
	}
	if (ns != old) {
		if (!it && !(it = roster_add(pr, s, slen))) {
			op->failed = true;
			free(built);
			return;
		}
		it->sub = (uint8_t)ns;
		if ((ns & IM_SUB_PENDING_IN) && !(old & IM_SUB_PENDING_IN))
			pr->npending++;
		/* An approval makes the requester a contact (3.4, pre-approved). */
		if ((ns & IM_SUB_FROM) && !it->listed) {
			it->listed = true;
			pr->nlisted++;
		}
		op_item_changed(op, pr, it, old, old_listed, false);
		if (!it->listed && !(it->sub & IM_SUB_PENDING_IN))
			roster_drop(pr, it);
		it = NULL;
	}
	if (deliver)
		op_route(op, fwd, flen);
	if (type == T_UNSUBSCRIBE && (old & IM_SUB_FROM)) {
		/* 3.3.3: the contact's resources tell the user they are gone. */
		op_presence_to(op, pr->bare, pr->bare_len, s, slen, IM_PT_UNAVAILABLE);
	}
	free(built);
	if (autoreply) {
		/* 3.1.3 / 3.4: 'subscribed' on the contact's behalf, and the
		 * contact's resources send their presence (3.1.5). The reply
		 * is inbound processing on the user's own roster. */
		struct roster *ur = roster_get(op->ctx, s, slen);
		if (!ur) {
			op->failed = true;
			return;
		}
		op_hold(op, ur);
		inbound(op, ur, pr->bare, pr->bare_len, T_SUBSCRIBED, NULL, 0, qname);
		op_presence_to(op, pr->bare, pr->bare_len, s, slen, 0);
	}
}

/* ---- the outbound side (the user's server, A.2) ------------------------------- */

static enum sub_type sub_type_of(struct xml_view *v)
{
	char b[16];
	if (v->info.type == XML_NO_TOK || v->tok[v->info.type].b >= sizeof(b))
		return 0;
	struct xml_slice t = xml_tok_value(v, v->info.type, b);
	if (xml_slice_eq(t, "subscribe"))
		return T_SUBSCRIBE;
	if (xml_slice_eq(t, "subscribed"))
		return T_SUBSCRIBED;
	if (xml_slice_eq(t, "unsubscribe"))
		return T_UNSUBSCRIBE;
	if (xml_slice_eq(t, "unsubscribed"))
		return T_UNSUBSCRIBED;
	return 0;
}

static bool type_is(struct xml_view *v, const char *s)
{
	char b[16];
	if (v->info.type == XML_NO_TOK || v->tok[v->info.type].b >= sizeof(b))
		return false;
	return xml_slice_eq(xml_tok_value(v, v->info.type, b), s);
}

/* RFC 6121 4.3.2: a probe of a local contact that has no available
 * resource (the router made it up, from the user's full JID to the
 * contact's bare JID). Answered with the contact's last unavailable
 * presence if the user may see it (subscription From), else not at all. */
static void probe(struct im_call *c)
{
	struct xml_view *v = c->v;
	char fb[JID_MAX + 1];
	struct jid *from;

	if (!c->has_to || (c->to_kind != IM_TO_USER && c->to_kind != IM_TO_SELF) || v->info.from == XML_NO_TOK ||
	    v->tok[v->info.from].b > JID_MAX)
		return;
	from = malloc(sizeof(*from));
	if (!from)
		return;
	struct xml_slice fs = xml_tok_value(v, v->info.from, fb);
	struct jid_slice cb = jid_bare(&c->to);
	if (jid_parse(from, fs.ptr, fs.len, 0) != JID_OK)
		goto out;
	struct jid_slice ub = jid_bare(from);
	if (ub.len == cb.len && !memcmp(ub.ptr, cb.ptr, cb.len))
		goto out;   /* one's own resources: the router's business */
	struct roster *r = roster_get(c->ctx, cb.ptr, cb.len);
	if (!r)
		goto out;
	struct ritem *it = roster_find(r, ub.ptr, ub.len);
	bool allowed = it && it->listed && (it->sub & IM_SUB_FROM);
	roster_unpin(c->ctx, r);
	if (!allowed)
		goto out;

	time_t when;
	char status[1024];
	size_t stl = 0;
	bool have = last_get(c->ctx, cb.ptr, cb.len, &when, status, sizeof(status), &stl);
	struct jid_slice uf = jid_full(from);
	size_t cap = 400 + XMLW_ESCAPED_MAX(cb.len + uf.len + stl);
	char *buf = malloc(cap);
	struct xmlw x;
	size_t n;
	if (!buf)
		goto out;
	xmlw_init(&x, buf, cap);
	xmlw_start(&x, "presence");
	xmlw_attr(&x, "from", cb.ptr, cb.len);
	xmlw_attr(&x, "to", uf.ptr, uf.len);
	xmlw_attr_str(&x, "type", "unavailable");
	if (have && stl) {
		xmlw_start(&x, "status");
		xmlw_text(&x, status, stl);
		xmlw_end(&x);
	}
	if (have) {
		char stamp[21];
		im_stamp(when, stamp);
		xmlw_start(&x, "delay");
		xmlw_ns(&x, NULL, NS_DELAY);
		xmlw_attr(&x, "from", cb.ptr, cb.len);
		xmlw_attr_str(&x, "stamp", stamp);
		xmlw_end(&x);
	}
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) == XMLW_OK)
		c->out->route(c->out->srv, buf, n);
	free(buf);
out:
	free(from);
}

void roster_presence(struct im_call *c)
{
	struct xml_view *v = c->v;
	if (!v)
		return;
	if (type_is(v, "probe")) {
		probe(c);
		return;
	}
	enum sub_type type = sub_type_of(v);
	if (!type || !c->has_to)
		return;
	if (c->to_kind == IM_TO_SELF || c->to_kind == IM_TO_SERVER)
		return;   /* no subscription with oneself or the server */

	struct im_ctx *ctx = c->ctx;
	const char *s = c->jid;
	size_t slen = c->bare_len;
	struct jid_slice pb = jid_bare(&c->to);   /* 3.1.1: the contact's bare JID */
	if (slen + 1 + pb.len > store_max_key(ctx->store) || pb.len == 0)
		return;

	struct op op;
	op_init(&op, ctx, c->out);
	struct roster *sr = roster_get(ctx, s, slen);
	if (!sr)
		return;
	op_hold(&op, sr);

	struct ritem *it = roster_find(sr, pb.ptr, pb.len);
	unsigned old = it ? it->sub : 0;
	bool old_listed = it && it->listed;
	bool route;
	unsigned ns = sub_outbound(type, old, &route);
	/* 3.1.2 and 3.4: a subscribe or a pre-approval puts the contact in
	 * the roster; an approval of a pending request too. */
	bool list = !old_listed && ((type == T_SUBSCRIBE) || (type == T_SUBSCRIBED && ns != old));
	if (list && sr->nlisted >= ctx->cfg->im.roster_max) {
		roster_unpin(ctx, sr);
		im_error(c, "wait", "resource-constraint");
		return;
	}
	if (ns != old || list) {
		if (!it && !(it = roster_add(sr, pb.ptr, pb.len))) {
			op.failed = true;
		} else {
			it->sub = (uint8_t)ns;
			if (list) {
				it->listed = true;
				sr->nlisted++;
			}
			op_item_changed(&op, sr, it, old, old_listed, false);
			if (!it->listed && !(it->sub & IM_SUB_PENDING_IN))
				roster_drop(sr, it);
		}
	}
	if (route && type == T_SUBSCRIBED && (ns & IM_SUB_FROM) && !(old & IM_SUB_FROM) && c->to_kind == IM_TO_USER)
		op_presence_to(&op, s, slen, pb.ptr, pb.len, 0);   /* 3.1.5 */
	if (route && type == T_UNSUBSCRIBED && (old & IM_SUB_FROM) && c->to_kind == IM_TO_USER)
		op_presence_to(&op, s, slen, pb.ptr, pb.len, IM_PT_UNAVAILABLE);   /* 3.2.2 */

	bool remote_error = false;
	if (route && c->to_kind == IM_TO_REMOTE) {
		remote_error = true;
	} else if (route && c->to_kind == IM_TO_USER && im_account_exists(ctx, pb.ptr, pb.len)) {
		/* 3.1.3 and 8.5.1: to a local account that does not exist,
		 * subscription stanzas are dropped silently. */
		struct roster *pr = roster_get(ctx, pb.ptr, pb.len);
		if (!pr) {
			op.failed = true;
		} else {
			op_hold(&op, pr);
			size_t flen = 0;
			char *fwd = stanza_forward(v, s, slen, pb.ptr, pb.len, &flen);
			if (!fwd)
				op.failed = true;
			else
				inbound(&op, pr, s, slen, type, fwd, flen, xml_tok_qname(v, 0));
			free(fwd);
		}
	}
	if (op_finish(&op) < 0) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	if (remote_error)
		im_error(c, "cancel", "remote-server-not-found");
}

/* ---- roster iq ---------------------------------------------------------- */

static void send_result_roster(struct im_call *c, const char *payload, size_t plen)
{
	struct xml_view *v = c->v;
	size_t cap = 256 + 2 * JID_MAX * 6 + 6 * 1024 + plen + sizeof(struct im_send_hdr);
	uint8_t *buf = malloc(cap);
	char tmp[JID_MAX + 1];
	struct xmlw x;
	size_t n;
	if (!buf) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	struct im_send_hdr h = { IM_SF_ROSTER, 0 };
	memcpy(buf, &h, sizeof(h));
	xmlw_init(&x, (char *)buf + sizeof(h), cap - sizeof(h));
	xmlw_start(&x, "iq");
	if (v->info.to != XML_NO_TOK && v->tok[v->info.to].b <= JID_MAX) {
		struct xml_slice t = xml_tok_value(v, v->info.to, tmp);
		xmlw_attr(&x, "from", t.ptr, t.len);
	}
	xmlw_attr(&x, "to", c->jid, c->jid_len);
	xmlw_attr_str(&x, "type", "result");
	if (v->info.id != XML_NO_TOK && v->tok[v->info.id].b <= 1024) {
		char id[1025];
		struct xml_slice t = xml_tok_value(v, v->info.id, id);
		xmlw_attr(&x, "id", t.ptr, t.len);
	}
	if (plen)
		xmlw_raw(&x, payload, plen);
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) != XMLW_OK) {
		free(buf);
		im_error(c, "wait", "internal-server-error");
		return;
	}
	/* IM_EV_SEND: the session asked for the roster, it gets pushes now. */
	c->out->event(c->out->srv, c->handle, IM_EV_SEND, buf, sizeof(h) + n);
	free(buf);
}

static void roster_get_iq(struct im_call *c, uint32_t query)
{
	struct xml_view *v = c->v;
	struct roster *r = roster_get(c->ctx, c->jid, c->bare_len);
	char ver[40];
	if (!r) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	ver_string(r, ver);
	/* 2.6.3: the client's version is the current one: an empty result,
	 * later changes come as pushes. */
	uint32_t va = xml_attr_find(v, query, "ver", NULL);
	if (va != XML_NO_TOK && v->tok[va].b < sizeof(ver)) {
		char vb[40];
		struct xml_slice cv = xml_tok_value(v, va, vb);
		if (xml_slice_eq(cv, ver)) {
			roster_unpin(c->ctx, r);
			send_result_roster(c, NULL, 0);
			return;
		}
	}
	size_t cap = 128;
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].listed)
			cap += item_xml_bound(&r->items[i]);
	char *q = malloc(cap);
	struct xmlw x;
	size_t n;
	if (!q) {
		roster_unpin(c->ctx, r);
		im_error(c, "wait", "internal-server-error");
		return;
	}
	xmlw_init(&x, q, cap);
	xmlw_start(&x, "query");
	xmlw_ns(&x, NULL, NS_ROSTER);
	xmlw_attr_str(&x, "ver", ver);
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].listed)
			item_xml(&x, &r->items[i], false);
	xmlw_end(&x);
	roster_unpin(c->ctx, r);
	if (xmlw_finish(&x, &n) != XMLW_OK) {
		free(q);
		im_error(c, "wait", "internal-server-error");
		return;
	}
	send_result_roster(c, q, n);
	free(q);
}

/* Text content of element e (no child elements): into dst (room for the
 * raw length of its content); -1 if it has a child element. */
static long elem_text(struct xml_view *v, uint32_t e, char *dst, size_t cap)
{
	uint32_t end = v->tok[e].a;
	size_t o = 0;
	for (uint32_t t = e + 1 + v->tok[e].nattr; t < end; t++) {
		if (v->tok[t].type == XML_TOK_ELEM)
			return -1;
		if (v->tok[t].type != XML_TOK_TEXT)
			continue;
		if (o + v->tok[t].len > cap)
			return -2;
		struct xml_slice s = xml_tok_value(v, t, dst + o);
		if (s.ptr != dst + o)
			memmove(dst + o, s.ptr, s.len);
		o += s.len;
	}
	return (long)o;
}

static void roster_remove(struct im_call *c, struct roster *r, struct ritem *it)
{
	struct im_ctx *ctx = c->ctx;
	struct op op;
	op_init(&op, ctx, c->out);
	op_hold(&op, r);

	char *p = malloc(it->jid_len + 1);
	if (!p) {
		roster_unpin(ctx, r);
		im_error(c, "wait", "internal-server-error");
		return;
	}
	size_t plen = it->jid_len;
	memcpy(p, it->buf, plen);
	unsigned old = it->sub;

	/* 2.5.2: the item goes, with the subscriptions both ways: an
	 * 'unsubscribe' if the user had or asked for the contact's presence,
	 * an 'unsubscribed' if the contact had or asked for the user's. */
	op_del(&op, STORE_T_ROSTER, r->bare, r->bare_len, p, plen);
	if (old & IM_SUB_PENDING_IN) {
		op_del(&op, STORE_T_PENDING, r->bare, r->bare_len, p, plen);
		r->npending--;
	}
	r->nlisted--;
	op_push(&op, r, it, true);
	op.privacy[0] = true;
	roster_drop(r, it);
	it = NULL;

	if (old & IM_SUB_FROM)
		op_presence_to(&op, r->bare, r->bare_len, p, plen, IM_PT_UNAVAILABLE);
	struct jid_slice d;
	struct jid *pj = malloc(sizeof(*pj));
	bool local = false;
	if (pj && jid_parse(pj, p, plen, 0) == JID_OK) {
		d = jid_domain(pj);
		local = pj->local_len && im_local_domain(ctx, d.ptr, d.len) && im_account_exists(ctx, p, plen);
	}
	free(pj);
	if (local && (old & (IM_SUB_TO | IM_SUB_PENDING_OUT | IM_SUB_FROM | IM_SUB_PENDING_IN))) {
		struct roster *pr = roster_get(ctx, p, plen);
		if (!pr) {
			op.failed = true;
		} else {
			op_hold(&op, pr);
			if (old & (IM_SUB_TO | IM_SUB_PENDING_OUT))
				inbound(&op, pr, r->bare, r->bare_len, T_UNSUBSCRIBE, NULL, 0, (struct xml_slice){ "presence", 8 });
			if (old & (IM_SUB_FROM | IM_SUB_PENDING_IN))
				inbound(&op, pr, r->bare, r->bare_len, T_UNSUBSCRIBED, NULL, 0,
					(struct xml_slice){ "presence", 8 });
		}
	}
	free(p);
	if (op_finish(&op) < 0) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	im_result(c, NULL, 0);
}

static void roster_set_iq(struct im_call *c, uint32_t query)
{
	struct xml_view *v = c->v;
	struct im_ctx *ctx = c->ctx;
	uint32_t item = XML_NO_TOK;
	unsigned nitems = 0;

	for (uint32_t t = xml_first_child(v, query); t != XML_NO_TOK; t = xml_next_sibling(v, t)) {
		if (xml_slice_eq(xml_tok_local(v, t), "item") && xml_slice_eq(xml_tok_ns(v, t), NS_ROSTER)) {
			item = t;
			nitems++;
		}
	}
	/* 2.3.3: exactly one item. */
	if (nitems != 1) {
		im_error(c, "modify", "bad-request");
		return;
	}
	uint32_t ja = xml_attr_find(v, item, "jid", NULL);
	if (ja == XML_NO_TOK || v->tok[ja].b > JID_MAX) {
		im_error(c, "modify", "bad-request");
		return;
	}
	char jb[JID_MAX + 1];
	struct xml_slice js = xml_tok_value(v, ja, jb);
	struct jid *j = malloc(sizeof(*j));
	if (!j) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	if (jid_parse(j, js.ptr, js.len, 0) != JID_OK) {
		free(j);
		im_error(c, "modify", "jid-malformed");
		return;
	}
	if (!jid_is_bare(j)) {
		/* Items are kept per bare JID (subscriptions are, 3.1.1). */
		free(j);
		im_error(c, "modify", "bad-request");
		return;
	}
	char cj[JID_MAX + 1];
	size_t cjl = jid_bare_len(j);
	memcpy(cj, j->str, cjl);
	free(j);
	if (cjl == c->bare_len && !memcmp(cj, c->jid, cjl)) {
		/* One's own JID is no contact. */
		im_error(c, "cancel", "not-allowed");
		return;
	}
	if (c->bare_len + 1 + cjl > store_max_key(ctx->store)) {
		im_error(c, "modify", "not-acceptable");
		return;
	}

	bool remove = false;
	uint32_t sa = xml_attr_find(v, item, "subscription", NULL);
	if (sa != XML_NO_TOK && v->tok[sa].b < 16) {
		char sb[16];
		/* 2.1.2.5: any other value is ignored in a set. */
		remove = xml_slice_eq(xml_tok_value(v, sa, sb), "remove");
	}

	struct roster *r = roster_get(ctx, c->jid, c->bare_len);
	if (!r) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	struct ritem *it = roster_find(r, cj, cjl);
	if (remove) {
		if (!it || !it->listed) {
			roster_unpin(ctx, r);
			im_error(c, "cancel", "item-not-found");   /* 2.5.3 */
			return;
		}
		roster_remove(c, r, it);
		return;
	}

	/* name and groups, checked per 2.3.3 ('ask' and 'approved' are the
	 * server's: ignored in a set, 2.1.2.1 and 2.1.2.2). */
	char *name = NULL;
	size_t nlen = 0;
	uint32_t na = xml_attr_find(v, item, "name", NULL);
	if (na != XML_NO_TOK) {
		if (v->tok[na].b > 6 * ROSTER_NAME_MAX) {
			roster_unpin(ctx, r);
			im_error(c, "modify", "not-acceptable");
			return;
		}
		name = malloc(v->tok[na].b + 1);
		if (!name) {
			roster_unpin(ctx, r);
			im_error(c, "wait", "internal-server-error");
			return;
		}
		struct xml_slice ns = xml_tok_value(v, na, name);
		if (ns.ptr != name)
			memmove(name, ns.ptr, ns.len);
		nlen = ns.len;
		if (nlen > ROSTER_NAME_MAX) {
			free(name);
			roster_unpin(ctx, r);
			im_error(c, "modify", "not-acceptable");
			return;
		}
	}
	uint8_t *groups = malloc(ROSTER_GROUPS_MAX * (2 + ROSTER_GROUP_MAX));
	char *gtext = malloc(6 * ROSTER_GROUP_MAX + 1);
	size_t glen = 0;
	unsigned ng = 0;
	const char *cond = NULL, *etype = "modify";
	if (!groups || !gtext) {
		cond = "internal-server-error";
		etype = "wait";
	}
	for (uint32_t g = xml_first_child(v, item); !cond && g != XML_NO_TOK; g = xml_next_sibling(v, g)) {
		if (!xml_slice_eq(xml_tok_local(v, g), "group") || !xml_slice_eq(xml_tok_ns(v, g), NS_ROSTER))
			continue;
		long tl = elem_text(v, g, gtext, 6 * ROSTER_GROUP_MAX);
		if (tl == -1) {
			cond = "bad-request";
		} else if (tl == 0 || tl < -1 || (size_t)tl > ROSTER_GROUP_MAX || ng == ROSTER_GROUPS_MAX) {
			cond = "not-acceptable";   /* empty or over the server's limits */
		} else {
			/* duplicate groups: bad-request (2.3.3) */
			const uint8_t *p = groups;
			for (unsigned i = 0; i < ng; i++, p += 2 + get16(p))
				if (get16(p) == (size_t)tl && !memcmp(p + 2, gtext, (size_t)tl))
					cond = "bad-request";
			if (!cond) {
				put16(groups + glen, (uint16_t)tl);
				memcpy(groups + glen + 2, gtext, (size_t)tl);
				glen += 2 + (size_t)tl;
				ng++;
			}
		}
	}
	free(gtext);
	if (!cond && (!it || !it->listed) && r->nlisted >= ctx->cfg->im.roster_max)
		cond = "not-acceptable";   /* the roster is full (im.roster_max) */
	if (cond) {
		free(name);
		free(groups);
		roster_unpin(ctx, r);
		im_error(c, etype, cond);
		return;
	}

	struct op op;
	op_init(&op, ctx, c->out);
	op_hold(&op, r);
	bool added = !it;
	if (!it)
		it = roster_add(r, cj, cjl);
	if (!it || item_set_data(it, name, nlen, groups, glen, ng) < 0) {
		if (it && added)
			roster_drop(r, it);
		op.failed = true;
	} else {
		unsigned old = it->sub;
		bool old_listed = it->listed;
		if (!it->listed) {
			it->listed = true;
			r->nlisted++;
		}
		op_item_changed(&op, r, it, old, old_listed, true);
	}
	free(name);
	free(groups);
	if (op_finish(&op) < 0) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	im_result(c, NULL, 0);
}

void roster_iq(struct im_call *c, uint32_t child)
{
	struct xml_view *v = c->v;
	bool get = type_is(v, "get"), set = type_is(v, "set");

	if (!get && !set)
		return;
	if (c->to_kind == IM_TO_SERVER) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	if (c->to_kind != IM_TO_SELF) {
		/* 2.1.5 / 2.3.3: only the account owner reads or writes its
		 * roster; a push addressed to another user is a forgery. */
		im_error(c, "auth", "forbidden");
		return;
	}
	if (!xml_slice_eq(xml_tok_local(v, child), "query")) {
		im_error(c, "modify", "bad-request");
		return;
	}
	if (get)
		roster_get_iq(c, child);
	else
		roster_set_iq(c, child);
}

/* ---- what the other parts ask -------------------------------------------------- */

int roster_state(struct im_call *c, uint8_t *buf, size_t cap, size_t *len)
{
	struct roster *r = roster_get(c->ctx, c->jid, c->bare_len);
	int n = 0;
	if (!r)
		return 0;   /* logged; the session starts with no contacts */
	for (size_t i = 0; i < r->n; i++) {
		const struct ritem *it = &r->items[i];
		if (!it->listed)
			continue;
		size_t need = sizeof(struct im_contact) + IM_REC_ALIGN(it->jid_len);
		if (*len + need > cap) {
			roster_unpin(c->ctx, r);
			return -1;
		}
		struct im_contact ic = { it->sub, 0, it->jid_len };
		memset(buf + *len, 0, need);
		memcpy(buf + *len, &ic, sizeof(ic));
		memcpy(buf + *len + sizeof(ic), it->buf, it->jid_len);
		*len += need;
		n++;
	}
	roster_unpin(c->ctx, r);
	return n;
}

struct pend_list {
	uint8_t **rec;
	size_t *len;
	size_t n, cap;
	bool oom;
};

static int collect_pending(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct pend_list *l = arg;
	const uint8_t *v = val;
	(void)key;
	(void)klen;
	if (vlen < 2 || v[0] != REC_PENDING_V1)
		return 0;
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 8;
		uint8_t **nr = realloc(l->rec, nc * sizeof(*nr));
		if (!nr) {
			l->oom = true;
			return 1;
		}
		l->rec = nr;
		size_t *nl = realloc(l->len, nc * sizeof(*nl));
		if (!nl) {
			l->oom = true;
			return 1;
		}
		l->len = nl;
		l->cap = nc;
	}
	uint8_t *b = malloc(sizeof(struct im_send_hdr) + vlen - 1);
	if (!b) {
		l->oom = true;
		return 1;
	}
	struct im_send_hdr h = { 0, 0 };
	memcpy(b, &h, sizeof(h));
	memcpy(b + sizeof(h), v + 1, vlen - 1);
	l->rec[l->n] = b;
	l->len[l->n] = sizeof(h) + vlen - 1;
	l->n++;
	return 0;
}

/* RFC 6121 3.1.3: requests that were not answered are delivered each time
 * the contact sends initial presence, until answered. */
void roster_initial_presence(struct im_call *c)
{
	struct roster *r = roster_get(c->ctx, c->jid, c->bare_len);
	if (!r)
		return;
	size_t np = r->npending;
	roster_unpin(c->ctx, r);
	if (!np || !c->handle)
		return;
	char prefix[JID_MAX + 2];
	size_t pl = im_key(prefix, sizeof(prefix), c->jid, c->bare_len, NULL, 0);
	struct pend_list l = { 0 };
	if (!pl || store_iter(c->ctx->store, NULL, STORE_T_PENDING, prefix, pl, collect_pending, &l) != STORE_OK ||
	    l.oom)
		log_err("roster: pending requests of %.*s not all read", (int)c->bare_len, c->jid);
	for (size_t i = 0; i < l.n; i++) {
		c->out->event(c->out->srv, c->handle, IM_EV_SEND, l.rec[i], l.len[i]);
		free(l.rec[i]);
	}
	free(l.rec);
	free(l.len);
}

unsigned roster_sub_of(struct im_ctx *ctx, const char *bare, size_t bare_len, const char *peer, size_t peer_len)
{
	struct roster *r = roster_get(ctx, bare, bare_len);
	unsigned s = 0;
	if (!r)
		return 0;
	struct ritem *it = roster_find(r, peer, peer_len);
	if (it)
		s = it->listed ? it->sub : (it->sub & IM_SUB_PENDING_IN);
	roster_unpin(ctx, r);
	return s;
}

void roster_group_members(struct im_ctx *ctx, const char *bare, size_t bare_len, const char *group, size_t glen,
			  void (*fn)(void *arg, const char *jid, size_t len), void *arg)
{
	struct roster *r = roster_get(ctx, bare, bare_len);
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		if (r->items[i].listed && item_in_group(&r->items[i], group, glen))
			fn(arg, r->items[i].buf, r->items[i].jid_len);
	roster_unpin(ctx, r);
}

void roster_cancel_all(struct im_call *c)
{
	struct im_ctx *ctx = c->ctx;
	struct jid *pj = malloc(sizeof(*pj));

	if (!pj)
		return;
	/* One contact per request batch (an op holds two rosters): the
	 * contact's side changes as if the user had removed the item
	 * (RFC 6121 2.5.2), so the contact gets the roster push and the
	 * user's unavailable presence; the user's own records are deleted
	 * with the account right after. */
	for (size_t i = 0;; i++) {
		struct roster *r = roster_get(ctx, c->jid, c->bare_len);
		if (!r)
			break;
		if (i >= r->n) {
			roster_unpin(ctx, r);
			break;
		}
		struct ritem *it = &r->items[i];
		unsigned old = it->sub;
		char p[JID_MAX + 1];
		size_t plen = it->jid_len;
		if (!(old & (IM_SUB_TO | IM_SUB_PENDING_OUT | IM_SUB_FROM | IM_SUB_PENDING_IN)) || plen > JID_MAX) {
			roster_unpin(ctx, r);
			continue;
		}
		memcpy(p, it->buf, plen);
		bool local = false;
		if (jid_parse(pj, p, plen, 0) == JID_OK) {
			struct jid_slice d = jid_domain(pj);
			local = pj->local_len && im_local_domain(ctx, d.ptr, d.len) && im_account_exists(ctx, p, plen);
		}
		if (!local) {
			roster_unpin(ctx, r);
			continue;
		}
		struct op op;
		op_init(&op, ctx, c->out);
		op_hold(&op, r);
		if (old & IM_SUB_FROM)
			op_presence_to(&op, r->bare, r->bare_len, p, plen, IM_PT_UNAVAILABLE);
		struct roster *pr = roster_get(ctx, p, plen);
		if (!pr) {
			op.failed = true;
		} else {
			op_hold(&op, pr);
			if (old & (IM_SUB_TO | IM_SUB_PENDING_OUT))
				inbound(&op, pr, r->bare, r->bare_len, T_UNSUBSCRIBE, NULL, 0,
					(struct xml_slice){ "presence", 8 });
			if (old & (IM_SUB_FROM | IM_SUB_PENDING_IN))
				inbound(&op, pr, r->bare, r->bare_len, T_UNSUBSCRIBED, NULL, 0,
					(struct xml_slice){ "presence", 8 });
		}
		if (op_finish(&op) < 0)
			log_err("roster: cancelling %.*s's subscription with %.*s failed", (int)c->bare_len, c->jid,
				(int)plen, p);
	}
	free(pj);
}

int roster_purge(struct im_ctx *ctx, const char *bare, size_t len)
{
	char prefix[JID_MAX + 2];
	size_t pl = im_key(prefix, sizeof(prefix), bare, len, NULL, 0);
	struct store_txn t;
	int rc = -1;
	if (!pl)
		return -1;
	if (store_write_begin(ctx->store, &t) == STORE_OK) {
		int a = store_del_prefix(ctx->store, &t, STORE_T_ROSTER, prefix, pl, NULL);
		int b = store_del_prefix(ctx->store, &t, STORE_T_PENDING, prefix, pl, NULL);
		if (a == STORE_OK && b == STORE_OK) {
			rc = store_commit(&t) == STORE_OK ? 0 : -1;
		} else {
			store_abort(&t);
		}
	}
	cache_forget(ctx, bare, len);
	if (rc < 0)
		log_err("roster: purge of %.*s failed", (int)len, bare);
	return rc;
}
