/* The worker side of IM and presence (router/im.h; the contract with the
 * control plane is router/hooks.h, "IM and presence").
 *
 * Memory: one struct im_sess per bound session (about 200 bytes), plus the
 * contacts (12 bytes an entry, 4 an index slot, the JIDs once), the rules
 * as the control plane compiled them, the last presence and the directed
 * recipients. Nothing is allocated per routed stanza: a session without
 * rules that is not CSI-inactive has imf == 0 and deliver.c never calls in.
 *
 * Buffers: the attributes written into forwarded presence, carbons'
 * wrappers and bounces are built in this thread's own buffers (below), not
 * in the worker's scratch, whose halves deliver.c is still using while it
 * fans a stanza out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net/net.h"
#include "parser/jid.h"
#include "parser/xml.h"
#include "parser/xmlw.h"
#include "router/im.h"
#include "router/ring.h"
#include "router/route.h"
#include "router/router.h"
#include "router/sm.h"
#include "util/log.h"
#include "util/mem.h"

#define NS_CARBONS "urn:xmpp:carbons:2"
#define NS_FORWARD "urn:xmpp:forward:0"
#define NS_PING    "urn:xmpp:ping"

#define DIR_MAX       64u      /* directed-presence recipients remembered per session */
#define KIND_OTHER    0x80u    /* a stanza only rules naming every kind apply to */
#define ATTR_MAX      (6u * 3072u + 16u)   /* one escaped JID attribute */

struct im_cent {
	uint32_t hash;
	uint32_t off;             /* into pool */
	uint16_t len;
	uint8_t sub;              /* IM_SUB_*; 0 once removed */
	uint8_t pad;
};

struct im_held {
	char *from;               /* the sender, as stamped */
	char *bytes;
	uint32_t len;
	uint16_t from_len;
};

struct im_sess {
	uint32_t flags;           /* IM_SF_* */
	/* contacts: entries in roster order, an open-addressing index, the JIDs */
	uint32_t nct, ct_cap;
	uint32_t ct_mask;         /* index slots - 1; 0: no index yet */
	uint32_t pool_len, pool_cap;
	struct im_cent *ct;
	uint32_t *ct_idx;         /* entry + 1; 0: empty */
	char *pool;
	/* compiled rules, as IM_EV_STATE / IM_EV_RULES carried them */
	uint32_t nrules, rules_len;
	uint8_t *rules;
	/* the last presence, without from/to: "<presence" then the rest */
	char *last;
	uint32_t last_len;
	uint16_t last_name;       /* bytes of "<presence" (a prefix may make it longer) */
	uint16_t ndir;
	char *dir;                /* directed recipients, "jid\0jid\0..." */
	uint32_t dir_len;
	/* XEP-0352 */
	struct im_held *held;
	uint16_t nheld;
	/* bind wait */
	bool started, ended, carbons_counted;
	char *bind_result;
	uint32_t bind_len;
	struct sbuf waitq;        /* stanzas for the session while it waits: u32 length, bytes */
	/* XEP-0199 */
	uint64_t last_rx;
	uint64_t ping_sent;       /* 0: no ping outstanding */
	uint32_t ping_seq;
	/* available at a negative priority since the initial presence: the
	 * offline messages wait for priority >= 0 (IM_REQ_OFFLINE) */
	bool offline_owed;
};

static _Thread_local char attr_buf[2 * ATTR_MAX];
static _Thread_local char wrap_buf[2 * ATTR_MAX + 256];
static _Thread_local char err_buf[2 * ATTR_MAX + 2048];
static _Thread_local char from_buf[JID_MAX + 1];
static _Thread_local char to_buf[JID_MAX + 1];

bool im_enabled(const struct server *srv)
{
	return srv->hooks && srv->hooks->im.serve != NULL;
}

static const struct server_config *cfg_of(const struct session *s)
{
	return &s->w->srv->cfg;
}

/* ---- small helpers -------------------------------------------------------- */

static uint32_t hash32(const char *p, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 16777619u;
	return h ? h : 1;
}

/* ' name='value'' with value escaped for an attribute; returns the end. */
static char *put_attr(char *d, const char *name, const char *v, size_t len)
{
	*d++ = ' ';
	size_t nl = strlen(name);
	memcpy(d, name, nl);
	d += nl;
	*d++ = '=';
	*d++ = '\'';
	for (size_t i = 0; i < len; i++) {
		switch (v[i]) {
		case '&': memcpy(d, "&amp;", 5); d += 5; break;
		case '<': memcpy(d, "&lt;", 4); d += 4; break;
		case '>': memcpy(d, "&gt;", 4); d += 4; break;
		case '\'': memcpy(d, "&apos;", 6); d += 6; break;
		case '"': memcpy(d, "&quot;", 6); d += 6; break;
		default: *d++ = v[i]; break;
		}
	}
	*d++ = '\'';
	return d;
}

static size_t iov_len(const struct iovec *iov, int n)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += iov[i].iov_len;
	return t;
}

static char *iov_flatten(const struct iovec *iov, int n, size_t *len)
{
	size_t t = iov_len(iov, n);
	char *p = mem_alloc(t ? t : 1);
	if (!p)
		return NULL;
	size_t o = 0;
	for (int i = 0; i < n; i++) {
		memcpy(p + o, iov[i].iov_base, iov[i].iov_len);
		o += iov[i].iov_len;
	}
	*len = t;
	return p;
}

static size_t bare_len_of(const char *jid, size_t len)
{
	const char *sl = memchr(jid, '/', len);
	return sl ? (size_t)(sl - jid) : len;
}

static bool is_local_domain(const struct server *srv, const char *jid, size_t len)
{
	size_t bl = bare_len_of(jid, len);
	const char *at = memchr(jid, '@', bl);
	const char *d = at ? at + 1 : jid;
	size_t dl = bl - (size_t)(d - jid);
	for (unsigned i = 0; i < srv->cfg.nvhost; i++)
		if (srv->domain_len[i] == dl && !memcmp(srv->cfg.vhost[i].domain, d, dl))
			return true;
	return false;
}

static bool own_jid(const struct session *s, const char *jid, size_t len)
{
	size_t bl = bare_len_of(jid, len);
	return bl == s->bare_len && !memcmp(jid, s->jid, bl);
}

/* ---- contacts ---------------------------------------------------------------- */

static struct im_cent *contact_find(const struct im_sess *im, const char *bare, size_t len)
{
	if (!im->ct_mask)
		return NULL;
	uint32_t h = hash32(bare, len);
	for (uint32_t i = h & im->ct_mask;; i = (i + 1) & im->ct_mask) {
		uint32_t e = im->ct_idx[i];
		if (!e)
			return NULL;
		struct im_cent *c = &im->ct[e - 1];
		if (c->hash == h && c->len == len && !memcmp(im->pool + c->off, bare, len))
			return c;
	}
}

static bool contact_index(struct im_sess *im, uint32_t slots)
{
	uint32_t *idx = mem_calloc(slots, sizeof(*idx));
	if (!idx)
		return false;
	mem_free(im->ct_idx);
	im->ct_idx = idx;
	im->ct_mask = slots - 1;
	for (uint32_t e = 0; e < im->nct; e++) {
		uint32_t i = im->ct[e].hash & im->ct_mask;
		while (idx[i])
			i = (i + 1) & im->ct_mask;
		idx[i] = e + 1;
	}
	return true;
}

static bool contact_set(struct im_sess *im, const char *bare, size_t len, unsigned sub)
{
	struct im_cent *c = contact_find(im, bare, len);

	if (c) {
		c->sub = (uint8_t)sub;
		return true;
	}
	if (!sub || len == 0 || len > UINT16_MAX)
		return true;   /* removing what is not there */
	if (im->nct == im->ct_cap) {
		uint32_t n = im->ct_cap ? im->ct_cap * 2 : 8;
		struct im_cent *ne = mem_realloc(im->ct, n * sizeof(*ne));
		if (!ne)
			return false;
		im->ct = ne;
		im->ct_cap = n;
	}
	if (im->pool_len + len > im->pool_cap) {
		uint32_t n = im->pool_cap ? im->pool_cap : 256;
		while (n < im->pool_len + len)
			n *= 2;
		char *np = mem_realloc(im->pool, n);
		if (!np)
			return false;
		im->pool = np;
		im->pool_cap = n;
	}
	if ((im->nct + 1) * 2 > im->ct_mask + 1 || !im->ct_mask) {
		uint32_t slots = im->ct_mask ? (im->ct_mask + 1) * 2 : 16;
		while (slots < (im->nct + 1) * 2)
			slots *= 2;
		if (!contact_index(im, slots))
			return false;
	}
	struct im_cent *e = &im->ct[im->nct];
	e->hash = hash32(bare, len);
	e->off = im->pool_len;
	e->len = (uint16_t)len;
	e->sub = (uint8_t)sub;
	e->pad = 0;
	memcpy(im->pool + im->pool_len, bare, len);
	im->pool_len += (uint32_t)len;
	uint32_t i = e->hash & im->ct_mask;
	while (im->ct_idx[i])
		i = (i + 1) & im->ct_mask;
	im->ct_idx[i] = ++im->nct;
	return true;
}

static void contacts_clear(struct im_sess *im)
{
	mem_free(im->ct);
	mem_free(im->ct_idx);
	mem_free(im->pool);
	im->ct = NULL;
	im->ct_idx = NULL;
	im->pool = NULL;
	im->nct = im->ct_cap = im->ct_mask = im->pool_len = im->pool_cap = 0;
}

unsigned im_contact_sub(const struct session *s, const char *bare, size_t len)
{
	const struct im_cent *c = s->im ? contact_find(s->im, bare, len) : NULL;
	return c ? c->sub : 0;
}

/* ---- privacy ------------------------------------------------------------------ */

/* XEP-0016 2.1: a rule's JID matches the peer's full JID, its bare JID,
 * its domain/resource, or its domain. */
static bool rule_jid_matches(const char *rj, size_t rl, const char *peer, size_t len)
{
	size_t bl = bare_len_of(peer, len);
	const char *at = memchr(peer, '@', bl);
	const char *dom = at ? at + 1 : peer;
	size_t dl = bl - (size_t)(dom - peer);

	if (rl == len && !memcmp(rj, peer, len))
		return true;
	if (rl == bl && !memcmp(rj, peer, bl))
		return true;
	if (rl == dl && !memcmp(rj, dom, dl))
		return true;
	if (bl < len && rl == len - (size_t)(dom - peer) && !memcmp(rj, dom, rl))
		return true;   /* domain/resource */
	return false;
}

static enum im_verdict rules_check(const struct session *s, unsigned kind, const char *peer, size_t len)
{
	const struct im_sess *im = s->im;
	const uint8_t *p = im->rules, *end = im->rules + im->rules_len;

	if (own_jid(s, peer, len))
		return IM_ALLOW;   /* XEP-0016 2.1: never between the user's own resources */
	for (uint32_t i = 0; i < im->nrules && p + sizeof(struct im_rule) <= end; i++) {
		struct im_rule r;
		memcpy(&r, p, sizeof(r));
		const char *rj = (const char *)p + sizeof(r);
		p += IM_REC_ALIGN(sizeof(r) + r.len);
		if (r.kinds && !(r.kinds & kind))
			continue;
		bool m = false;
		switch (r.match) {
		case IM_MATCH_ALL:
			m = true;
			break;
		case IM_MATCH_JID:
			m = rj + r.len <= (const char *)end && rule_jid_matches(rj, r.len, peer, len);
			break;
		case IM_MATCH_SUB: {
			/* Exact: 'both' is not 'to'; 'none' takes strangers too. */
			const struct im_cent *c = contact_find(im, peer, bare_len_of(peer, len));
			unsigned sub = c ? c->sub & (IM_SUB_TO | IM_SUB_FROM) : 0;
			m = sub == (r.subs & (IM_SUB_TO | IM_SUB_FROM));
			break;
		}
		}
		if (!m)
			continue;
		if (!(r.action & IM_RULE_DENY))
			return IM_ALLOW;
		return (r.action & IM_RULE_BLOCKCMD) ? IM_DENY_BLOCKED : IM_DENY;
	}
	return IM_ALLOW;
}

enum im_verdict im_check_out(const struct session *s, unsigned kind, const char *peer, size_t len)
{
	if (!s->im || !s->im->nrules)
		return IM_ALLOW;
	/* Outbound, XEP-0016 names only presence-out; other kinds are blocked
	 * outbound only by items that block everything (2.11). */
	return rules_check(s, kind == IM_KIND_PRES_OUT ? IM_KIND_PRES_OUT : KIND_OTHER, peer, len);
}

enum im_verdict im_check_in(const struct session *s, unsigned kind, const char *peer, size_t len)
{
	if (!s->im || !s->im->nrules)
		return IM_ALLOW;
	return rules_check(s, kind ? kind : KIND_OTHER, peer, len);
}

/* ---- writing to the client ----------------------------------------------------- */

static void held_flush(struct session *s)
{
	struct im_sess *im = s->im;

	s->imf &= (uint8_t)~IMG_HELD;
	for (uint16_t i = 0; i < im->nheld; i++) {
		struct iovec iov = { im->held[i].bytes, im->held[i].len };
		if (!session_dead(s))
			session_stanza(s, &iov, 1);
		mem_free(im->held[i].bytes);
		mem_free(im->held[i].from);
	}
	im->nheld = 0;
	mem_free(im->held);
	im->held = NULL;
}

void im_write(struct session *s, const struct iovec *iov, int n)
{
	if (s->imf & IMG_HELD)
		held_flush(s);   /* XEP-0352: held presence never overtakes */
	session_stanza(s, iov, n);
}

/* XEP-0352: keep the latest presence per sender; a full list is flushed. */
static void hold(struct session *s, const struct iovec *iov, int n, const char *from, size_t flen)
{
	struct im_sess *im = s->im;
	uint32_t max = cfg_of(s)->im.csi_max_held;
	size_t len = 0;   /* set by iov_flatten; GCC cannot see it */

	for (uint16_t i = 0; i < im->nheld; i++) {
		struct im_held *h = &im->held[i];
		if (h->from_len == flen && !memcmp(h->from, from, flen)) {
			char *b = iov_flatten(iov, n, &len);
			if (!b)
				break;
			mem_free(h->bytes);
			h->bytes = b;
			h->len = (uint32_t)len;
			/* Keep arrival order: the replaced one moves last. */
			struct im_held t = *h;
			memmove(h, h + 1, (size_t)(im->nheld - i - 1) * sizeof(*h));
			im->held[im->nheld - 1] = t;
			return;
		}
	}
	if (im->nheld >= max || flen > UINT16_MAX) {
		im_write(s, iov, n);
		return;
	}
	if (!im->held) {
		im->held = mem_alloc((size_t)max * sizeof(*im->held));
		if (!im->held) {
			im_write(s, iov, n);
			return;
		}
	}
	struct im_held *h = &im->held[im->nheld];
	h->bytes = iov_flatten(iov, n, &len);
	h->from = mem_alloc(flen ? flen : 1);
	if (!h->bytes || !h->from) {
		mem_free(h->bytes);
		mem_free(h->from);
		im_write(s, iov, n);
		return;
	}
	memcpy(h->from, from, flen);
	h->from_len = (uint16_t)flen;
	h->len = (uint32_t)len;
	im->nheld++;
	s->imf |= IMG_HELD;
}

void im_csi(struct session *s, bool active)
{
	if (!s->im)
		return;
	if (active) {
		s->im->flags &= ~IM_SF_INACTIVE;
		s->imf &= (uint8_t)~IMG_INACTIVE;
		if (s->imf & IMG_HELD)
			held_flush(s);
	} else {
		s->im->flags |= IM_SF_INACTIVE;
		s->imf |= IMG_INACTIVE;
	}
}

/* A stanza delivered while the bind waits for IM_EV_STATE: after the bind
 * result, in order. */
static void wait_queue(struct session *s, const struct iovec *iov, int n)
{
	struct sbuf *q = &s->im->waitq;
	uint32_t len = (uint32_t)iov_len(iov, n);

	if ((size_t)q->len + len + 4 > cfg_of(s)->max_output) {
		session_close(s, "output limit (bind waiting)");
		return;
	}
	if (!sbuf_reserve(q, (size_t)len + 4)) {
		session_close(s, "out of memory");
		return;
	}
	memcpy(q->p + q->len, &len, 4);
	q->len += 4;
	for (int i = 0; i < n; i++) {
		memcpy(q->p + q->len, iov[i].iov_base, iov[i].iov_len);
		q->len += (uint32_t)iov[i].iov_len;
	}
}

/* An inbound stanza a rule refused (XEP-0016 2.13, XEP-0191 3.4): message
 * and iq get/set get <service-unavailable/> back, the rest is dropped. */
static void bounce(struct session *d, const struct im_peer *p)
{
	if (!p->v || p->type == T_ERROR)
		return;
	if (p->kind == K_PRESENCE || (p->kind == K_IQ && p->type != T_GET && p->type != T_SET))
		return;
	const char *from = p->to ? p->to : d->jid;
	size_t from_len = p->to ? p->to_len : d->jid_len;
	size_t n = deliver_error(p->v, (enum kind)p->kind, from, from_len, p->from, p->from_len, "cancel",
				 "service-unavailable", NULL, err_buf, sizeof(err_buf));
	if (!n)
		return;
	struct im_peer ep = { p->kind, T_ERROR, from, from_len, p->from, p->from_len, NULL };
	deliver_to_full(d->w, p->from, p->from_len, err_buf, n, &ep);
}

void im_deliver(struct session *d, const struct iovec *iov, int n, const struct im_peer *peer)
{
	struct im_peer pp;

	if (!d->im) {
		session_stanza(d, iov, n);
		return;
	}
	if (d->imf & IMG_WAIT) {
		wait_queue(d, iov, n);
		return;
	}
	if (!peer && (d->imf & (IMG_RULES | IMG_INACTIVE))) {
		/* From a ring: one piece, read its attributes. */
		struct xml_view *v = &d->w->view;
		if (n != 1 || xml_view_build(v, NULL, iov[0].iov_base, iov[0].iov_len)) {
			im_write(d, iov, n);
			return;
		}
		memset(&pp, 0, sizeof(pp));
		pp.kind = (int)deliver_kind(v);
		pp.type = (int)deliver_type((enum kind)pp.kind, v);
		pp.v = v;
		if (v->info.from != XML_NO_TOK && v->tok[v->info.from].b <= JID_MAX) {
			struct xml_slice f = xml_tok_value(v, v->info.from, from_buf);
			pp.from = f.ptr;
			pp.from_len = f.len;
		}
		if (v->info.to != XML_NO_TOK && v->tok[v->info.to].b <= JID_MAX) {
			struct xml_slice t = xml_tok_value(v, v->info.to, to_buf);
			pp.to = t.ptr;
			pp.to_len = t.len;
		}
		peer = &pp;
	}
	if (peer && peer->from) {
		bool notif = peer->kind == K_PRESENCE && (peer->type == T_NONE || peer->type == T_UNAVAILABLE);
		if ((d->imf & IMG_RULES) && peer->from_len) {
			unsigned kind = peer->kind == K_MESSAGE ? IM_KIND_MESSAGE
				      : peer->kind == K_IQ ? IM_KIND_IQ
				      : notif ? IM_KIND_PRES_IN : 0;
			if (im_check_in(d, kind, peer->from, peer->from_len) != IM_ALLOW) {
				bounce(d, peer);
				return;
			}
		}
		if ((d->imf & IMG_INACTIVE) && notif && cfg_of(d)->im.csi_max_held) {
			hold(d, iov, n, peer->from, peer->from_len);
			return;
		}
	}
	im_write(d, iov, n);
}

/* ---- presence ------------------------------------------------------------------ */

/* The session's last presence (or unavailable if unav) from its full JID
 * to `to`, as iovecs; returns how many (0: nothing to send). */
static int pres_iov(struct session *s, bool unav, const char *to, size_t to_len, struct iovec *iov)
{
	static const char unavail[] = "<presence type='unavailable'/>";
	struct im_sess *im = s->im;
	const char *b;
	size_t len, name;

	if (unav || !im->last) {
		if (!unav)
			return 0;
		b = unavail;
		len = sizeof(unavail) - 1;
		name = 9;
	} else {
		b = im->last;
		len = im->last_len;
		name = im->last_name;
	}
	char *d = put_attr(attr_buf, "from", s->jid, s->jid_len);
	if (to)
		d = put_attr(d, "to", to, to_len);
	iov[0].iov_base = (void *)b;
	iov[0].iov_len = name;
	iov[1].iov_base = attr_buf;
	iov[1].iov_len = (size_t)(d - attr_buf);
	iov[2].iov_base = (void *)(b + name);
	iov[2].iov_len = len - name;
	return 3;
}

/* Send presence from s to a JID: a full JID's resource, or every
 * available resource of a bare JID. Local users only (no s2s yet). */
static void pres_send(struct session *s, bool unav, const char *to, size_t to_len)
{
	struct iovec iov[3];
	struct worker *w = s->w;

	if (!is_local_domain(w->srv, to, to_len))
		return;
	int n = pres_iov(s, unav, to, to_len, iov);
	if (!n)
		return;
	size_t bl = bare_len_of(to, to_len);
	const struct route_snap *snap = route_lookup(w->srv->routes, to, bl);
	if (!snap)
		return;
	struct im_peer peer = { K_PRESENCE, unav ? T_UNAVAILABLE : T_NONE, s->jid, s->jid_len, to, to_len, NULL };
	if (bl < to_len) {
		const struct route_res *r = route_find(snap, to + bl + 1, to_len - bl - 1);
		if (r)
			deliver_forward(w, r->handle, iov, n, 0, &peer);
		return;
	}
	deliver_fan_out(w, snap, ROUTE_PICK_ALL, 0, iov, n, 0, &peer);
}

/* Ask session h to send its presence to s (RFC 6121 4.3: a probe answered
 * on the contact's own worker, from its session's state). */
static void probe_session(struct session *s, uint64_t h, uint16_t flags)
{
	struct worker *w = s->w;
	struct im_presence_to pt = { flags, s->jid_len };
	struct iovec iov[2] = { { &pt, sizeof(pt) }, { s->jid, s->jid_len } };

	if (handle_worker(h) == w->id) {
		struct session *d = worker_session(w, h);
		if (d && d->im && (d->flags & SF_BOUND)) {
			uint8_t buf[sizeof(pt) + JID_MAX];
			memcpy(buf, &pt, sizeof(pt));
			memcpy(buf + sizeof(pt), s->jid, s->jid_len);
			im_event(d, IM_EV_PRESENCE_TO, buf, sizeof(pt) + s->jid_len);
		}
		return;
	}
	worker_post(w, handle_worker(h), MSG_IM_EV, IM_EV_PRESENCE_TO, h, iov, 2);
}

/* RFC 6121 4.2.2 / 4.3.1: at initial presence, probe every contact we
 * have a subscription to: online local ones answer from their sessions,
 * the others through the control plane (last unavailable presence). Our
 * own other available resources tell the new one about themselves. */
static void initial_probes(struct session *s, int8_t prio, const struct iovec *pres, int npres)
{
	struct im_sess *im = s->im;
	struct server *srv = s->w->srv;
	uint64_t self = session_handle(s);

	for (uint32_t e = 0; e < im->nct; e++) {
		const struct im_cent *c = &im->ct[e];
		const char *bare = im->pool + c->off;
		if (!(c->sub & IM_SUB_TO) || own_jid(s, bare, c->len) || !is_local_domain(srv, bare, c->len))
			continue;
		const struct route_snap *snap = route_lookup(srv->routes, bare, c->len);
		if (snap && snap->navail) {
			for (unsigned i = 0; i < snap->nres; i++)
				if (snap->res[i].available)
					probe_session(s, snap->res[i].handle, IM_PT_PROBE);
			continue;
		}
		char *d = put_attr(attr_buf, "from", s->jid, s->jid_len);
		d = put_attr(d, "to", bare, c->len);
		struct iovec iov[3] = {
			{ (void *)"<presence", 9 },
			{ attr_buf, (size_t)(d - attr_buf) },
			{ (void *)" type='probe'/>", 15 },
		};
		im_post_req(s->w, s, IM_REQ_STANZA, s->jid, s->jid_len, iov, 3);
	}
	const struct route_snap *own = route_lookup(srv->routes, s->jid, s->bare_len);
	for (unsigned i = 0; own && i < own->nres; i++)
		if (own->res[i].available && own->res[i].handle != self)
			probe_session(s, own->res[i].handle, 0);
	/* The presence goes along: offline messages only at priority >= 0
	 * (RFC 6121 8.5.2.1.1; control/offline.c reads it), else later. */
	if (!im_post_req(s->w, s, IM_REQ_INITIAL_PRESENCE, s->jid, s->jid_len, pres, npres))
		im_post_req(s->w, s, IM_REQ_INITIAL_PRESENCE, s->jid, s->jid_len, NULL, 0);
	im->offline_owed = prio < 0;
}

/* To every contact with a subscription 'from' (RFC 6121 4.2.2, 4.4.2,
 * 4.5.2), the session's last presence or unavailable; to the directed
 * recipients too when going unavailable (4.6.3). */
static void contacts_broadcast(struct session *s, bool unav)
{
	struct im_sess *im = s->im;

	for (uint32_t e = 0; e < im->nct; e++) {
		const struct im_cent *c = &im->ct[e];
		const char *bare = im->pool + c->off;
		if (!(c->sub & IM_SUB_FROM) || own_jid(s, bare, c->len))
			continue;
		if ((s->imf & IMG_RULES) && im_check_out(s, IM_KIND_PRES_OUT, bare, c->len) != IM_ALLOW)
			continue;
		pres_send(s, unav, bare, c->len);
	}
	if (unav && im->dir) {
		for (const char *j = im->dir; j < im->dir + im->dir_len; j += strlen(j) + 1) {
			size_t jl = strlen(j);
			const struct im_cent *c = contact_find(im, j, bare_len_of(j, jl));
			if (c && (c->sub & IM_SUB_FROM))
				continue;   /* had it already */
			pres_send(s, true, j, jl);
		}
		mem_free(im->dir);
		im->dir = NULL;
		im->dir_len = 0;
		im->ndir = 0;
	}
}

/* Keep v's presence without from/to as the session's last. */
static void keep_last(struct session *s, struct xml_view *v)
{
	struct im_sess *im = s->im;
	struct iovec iov[XML_REWRITE_IOV];
	char tmp[16];
	size_t len;
	int n = xml_view_rewrite(v, NULL, NULL, tmp, sizeof(tmp), iov);

	if (n < 0)
		return;
	char *b = iov_flatten(iov, n, &len);
	if (!b)
		return;
	mem_free(im->last);
	im->last = b;
	im->last_len = (uint32_t)len;
	im->last_name = (uint16_t)(v->tok[0].off + v->tok[0].len);
}

void im_presence_broadcast(struct session *s, struct xml_view *v, bool avail, int8_t prio,
			   const struct iovec *iov, int n)
{
	struct server *srv = s->w->srv;
	struct im_sess *im = s->im;
	bool was = (s->flags & SF_AVAILABLE) != 0;

	route_set_presence(srv->routes, s->jid, s->bare_len, s->jid + s->bare_len + 1,
			   (size_t)s->jid_len - s->bare_len - 1, session_handle(s), avail, prio);
	if (avail) {
		s->flags |= SF_AVAILABLE;
		im->flags |= IM_SF_AVAILABLE;
	} else {
		s->flags &= (uint16_t)~SF_AVAILABLE;
		im->flags &= ~IM_SF_AVAILABLE;
	}
	s->priority = prio;
	keep_last(s, v);

	/* The user's own available resources, the sender included (the echo
	 * tells it the server has it). */
	const struct route_snap *snap = route_lookup(srv->routes, s->jid, s->bare_len);
	struct im_peer peer = { K_PRESENCE, avail ? T_NONE : T_UNAVAILABLE, s->jid, s->jid_len, NULL, 0, v };
	if (snap)
		deliver_fan_out(s->w, snap, ROUTE_PICK_ALL, 0, iov, n, 0, &peer);
	if (!avail && !was)
		return;   /* unavailable before any available: nobody to tell */
	contacts_broadcast(s, !avail);
	if (avail && !was) {
		initial_probes(s, prio, iov, n);
	} else if (avail && prio >= 0 && im->offline_owed) {
		/* Negative until now: the offline messages held back at the
		 * initial presence (RFC 6121 8.5.2.1.1, XEP-0160 3). */
		im->offline_owed = false;
		im_post_req(s->w, s, IM_REQ_OFFLINE, s->jid, s->jid_len, iov, n);
	}
}

void im_directed(struct session *s, bool avail, const char *to, size_t len)
{
	struct im_sess *im = s->im;

	if (!im || len == 0 || own_jid(s, to, len))
		return;
	/* Look for it. */
	char *found = NULL;
	for (char *j = im->dir; j && j < im->dir + im->dir_len; j += strlen(j) + 1)
		if (strlen(j) == len && !memcmp(j, to, len))
			found = j;
	if (!avail) {
		if (found) {
			size_t fl = len + 1;
			memmove(found, found + fl, (size_t)(im->dir + im->dir_len - found - (ptrdiff_t)fl));
			im->dir_len -= (uint32_t)fl;
			im->ndir--;
		}
		return;
	}
	/* RFC 6121 4.6.2: remembered while we are available, unless the
	 * recipient gets our broadcasts anyway. */
	const struct im_cent *c = contact_find(im, to, bare_len_of(to, len));
	if (found || !(s->flags & SF_AVAILABLE) || (c && (c->sub & IM_SUB_FROM)) || im->ndir >= DIR_MAX)
		return;
	char *nd = mem_realloc(im->dir, im->dir_len + len + 1);
	if (!nd)
		return;
	memcpy(nd + im->dir_len, to, len);
	nd[im->dir_len + len] = '\0';
	im->dir = nd;
	im->dir_len += (uint32_t)len + 1;
	im->ndir++;
}

void im_gone(struct session *s)
{
	static const char unavail[] = "<presence type='unavailable'/>";
	struct im_sess *im = s->im;

	s->flags &= (uint16_t)~SF_AVAILABLE;
	im->flags &= ~IM_SF_AVAILABLE;
	char *b = mem_alloc(sizeof(unavail));
	if (b) {
		memcpy(b, unavail, sizeof(unavail));
		mem_free(im->last);
		im->last = b;
		im->last_len = sizeof(unavail) - 1;
		im->last_name = 9;
	}
	/* RFC 6121 4.5.3.1: the other resources, the contacts, the directed
	 * recipients. */
	struct iovec iov[3];
	int n = pres_iov(s, true, NULL, 0, iov);
	const struct route_snap *snap = route_lookup(s->w->srv->routes, s->jid, s->bare_len);
	struct im_peer peer = { K_PRESENCE, T_UNAVAILABLE, s->jid, s->jid_len, NULL, 0, NULL };
	if (snap)
		deliver_fan_out(s->w, snap, ROUTE_PICK_ALL, 0, iov, n, 0, &peer);
	contacts_broadcast(s, true);
}

/* ---- requests --------------------------------------------------------------------- */

size_t im_req_max(const struct worker *w)
{
	return ring_max_record(w->out[w->srv->nworkers]);
}

bool im_post_req(struct worker *w, struct session *s, unsigned type, const char *jid, size_t jid_len,
		 const struct iovec *iov, int iovcnt)
{
	struct im_req h;
	struct iovec v[2 + 8];
	size_t len = iov_len(iov, iovcnt);

	if (iovcnt > 8 || jid_len > UINT16_MAX || sizeof(h) + jid_len + len > im_req_max(w))
		return false;
	memset(&h, 0, sizeof(h));
	h.type = (uint8_t)type;
	h.jid_len = (uint16_t)jid_len;
	h.len = (uint32_t)len;
	uint16_t rflags = 0;
	if (s) {
		h.vhost = s->vhost;
		h.flags = (s->im ? s->im->flags : 0) | (sm_enabled(s) ? IM_SF_SM : 0);
		_Static_assert(sizeof(h.peer) >= sizeof(struct net_addr), "im_req.peer holds a net_addr");
		memcpy(h.peer, &s->peer, sizeof(s->peer));
		/* XEP-0198: a stanza the control plane keeps counts as handled
		 * once it is committed (router/sm.h). */
		if (type == IM_REQ_STANZA && s->sm && sm_confirm(s, &h.sm_h))
			rflags = MSGF_IM_CONFIRM;
	}
	v[0].iov_base = &h;
	v[0].iov_len = sizeof(h);
	v[1].iov_base = (void *)jid;
	v[1].iov_len = jid_len;
	for (int i = 0; i < iovcnt; i++)
		v[2 + i] = iov[i];
	worker_post(w, w->srv->nworkers, MSG_IM_REQ, rflags, s ? session_handle(s) : 0, v, 2 + iovcnt);
	return true;
}

/* ---- session life ------------------------------------------------------------------- */

bool im_bind(struct session *s, const char *result, size_t len)
{
	if (!im_enabled(s->w->srv))
		return false;
	struct im_sess *im = mem_calloc(1, sizeof(*im));
	char *r = mem_alloc(len ? len : 1);
	if (!im || !r) {
		mem_free(im);
		mem_free(r);
		return false;
	}
	memcpy(r, result, len);
	im->bind_result = r;
	im->bind_len = (uint32_t)len;
	im->started = true;
	im->last_rx = net_now_ms();
	s->im = im;
	s->imf |= IMG_WAIT;
	s->state = SS_IM_WAIT;
	im_post_req(s->w, s, IM_REQ_SESSION_START, s->jid, s->jid_len, NULL, 0);
	return true;
}

static void carbons_count(struct session *s, bool on)
{
	struct im_sess *im = s->im;

	if (on == im->carbons_counted)
		return;
	im->carbons_counted = on;
	if (on)
		atomic_fetch_add_explicit(&s->w->srv->carbons, 1, memory_order_relaxed);
	else
		atomic_fetch_sub_explicit(&s->w->srv->carbons, 1, memory_order_relaxed);
}

void im_session_end(struct session *s)
{
	struct im_sess *im = s->im;

	if (!im || !im->started || im->ended)
		return;
	im->ended = true;
	carbons_count(s, false);
	struct iovec iov[3];
	int n = pres_iov(s, !im->last, NULL, 0, iov);
	im_post_req(s->w, s, IM_REQ_SESSION_END, s->jid, s->jid_len, iov, n);
}

void im_sess_moved(struct session *s)
{
	if (!s->im)
		return;
	s->im->ended = true;            /* the session lives on elsewhere */
	carbons_count(s, false);        /* counted again where it is imported */
	im_sess_free(s);
}

void im_sess_free(struct session *s)
{
	struct im_sess *im = s->im;

	if (!im)
		return;
	im_session_end(s);
	contacts_clear(im);
	mem_free(im->rules);
	mem_free(im->last);
	mem_free(im->dir);
	for (uint16_t i = 0; i < im->nheld; i++) {
		mem_free(im->held[i].bytes);
		mem_free(im->held[i].from);
	}
	mem_free(im->held);
	mem_free(im->bind_result);
	sbuf_drop(&im->waitq, im->waitq.len);
	mem_free(im);
	s->im = NULL;
	s->imf = 0;
}

/* ---- events ------------------------------------------------------------------------------ */

/* A stanza from the control plane for the client; one without 'to' gets the
 * session's full JID (pushes). */
static void write_push(struct session *s, const char *p, size_t len)
{
	struct xml_view *v = &s->w->view;
	struct iovec iov[XML_REWRITE_IOV];

	if (!len)
		return;
	if (xml_view_build(v, NULL, p, len)) {
		log_warn("im: unparsable stanza from the control plane dropped");
		return;
	}
	if (v->info.to == XML_NO_TOK) {
		struct xml_slice to = { s->jid, s->jid_len };
		struct xml_slice from;
		char fb[JID_MAX + 1];
		bool has_from = v->info.from != XML_NO_TOK && v->tok[v->info.from].b <= JID_MAX;
		if (has_from)
			from = xml_tok_value(v, v->info.from, fb);
		int n = xml_view_rewrite(v, has_from ? &from : NULL, &to, attr_buf, sizeof(attr_buf), iov);
		if (n > 0)
			im_write(s, iov, n);
		return;
	}
	struct iovec one = { (void *)p, len };
	im_write(s, &one, 1);
}

/* Contacts (struct im_contact records) from p; returns the bytes read or
 * -1 if they overrun. */
static long load_contacts(struct im_sess *im, const uint8_t *p, size_t len, uint32_t n)
{
	size_t off = 0;

	for (uint32_t i = 0; i < n; i++) {
		struct im_contact c;
		if (off + sizeof(c) > len)
			return -1;
		memcpy(&c, p + off, sizeof(c));
		if (off + sizeof(c) + c.len > len)
			return -1;
		if (!contact_set(im, (const char *)p + off + sizeof(c), c.len, c.sub & 0x7f))
			return -1;
		off += IM_REC_ALIGN(sizeof(c) + c.len);
	}
	return (long)(off < len ? off : len);
}

static long load_rules(struct session *s, const uint8_t *p, size_t len, uint32_t n)
{
	struct im_sess *im = s->im;
	size_t off = 0;

	for (uint32_t i = 0; i < n; i++) {
		struct im_rule r;
		if (off + sizeof(r) > len)
			return -1;
		memcpy(&r, p + off, sizeof(r));
		if (off + sizeof(r) + r.len > len)
			return -1;
		off += IM_REC_ALIGN(sizeof(r) + r.len);
	}
	if (off > len)
		off = len;
	uint8_t *nr = NULL;
	if (off) {
		nr = mem_alloc(off);
		if (!nr)
			return -1;
		memcpy(nr, p, off);
	}
	mem_free(im->rules);
	im->rules = nr;
	im->rules_len = (uint32_t)off;
	im->nrules = n;
	if (n)
		s->imf |= IMG_RULES;
	else
		s->imf &= (uint8_t)~IMG_RULES;
	return (long)off;
}

static void ev_state(struct session *s, const uint8_t *p, size_t len)
{
	struct im_sess *im = s->im;
	struct im_state_hdr h;

	if (len < sizeof(h)) {
		log_err("im: short IM_EV_STATE");
		memset(&h, 0, sizeof(h));
		len = 0;
	} else {
		memcpy(&h, p, sizeof(h));
		p += sizeof(h);
		len -= sizeof(h);
	}
	if (h.flags & IM_STATE_NO_ACCOUNT) {
		/* The account went away between authentication and bind. */
		c2s_stream_error(s, "not-authorized");
		return;
	}
	contacts_clear(im);
	long used = load_contacts(im, p, len, h.ncontacts);
	if (used < 0 || load_rules(s, p + used, len - (size_t)used, h.nrules) < 0)
		log_err("im: malformed IM_EV_STATE for %s (kept what was read)", s->jid);
	if (!(s->imf & IMG_WAIT))
		return;   /* a repeated state: contacts and rules only */
	/* The bind completes: its result, then what arrived meanwhile. */
	s->imf &= (uint8_t)~IMG_WAIT;
	struct iovec r = { im->bind_result, im->bind_len };
	im_write(s, &r, 1);
	mem_free(im->bind_result);
	im->bind_result = NULL;
	for (uint32_t off = 0; off + 4 <= im->waitq.len && !session_dead(s);) {
		uint32_t l;
		memcpy(&l, im->waitq.p + off, 4);
		struct iovec q = { im->waitq.p + off + 4, l };
		im_deliver(s, &q, 1, NULL);
		off += 4 + l;
	}
	sbuf_drop(&im->waitq, im->waitq.len);
	if (!session_dead(s))
		c2s_bind_done(s);
}

static void ev_contact(struct session *s, const uint8_t *p, size_t len)
{
	struct im_contact c;

	if (len < sizeof(c))
		return;
	memcpy(&c, p, sizeof(c));
	if (sizeof(c) + c.len > len)
		return;
	unsigned sub = (c.sub & IM_SUB_REMOVE) ? 0 : c.sub;
	contact_set(s->im, (const char *)p + sizeof(c), c.len, sub);
	size_t off = IM_REC_ALIGN(sizeof(c) + c.len);
	if (off < len && (s->im->flags & IM_SF_ROSTER))
		write_push(s, (const char *)p + off, len - off);
}

static void ev_rules(struct session *s, const uint8_t *p, size_t len)
{
	struct im_rules_hdr h;

	if (len < sizeof(h))
		return;
	memcpy(&h, p, sizeof(h));
	long used = load_rules(s, p + sizeof(h), len - sizeof(h), h.nrules);
	if (used < 0) {
		log_err("im: malformed IM_EV_RULES for %s", s->jid);
		return;
	}
	size_t off = sizeof(h) + (size_t)used;
	if (off < len && (s->im->flags & IM_SF_BLOCKLIST))
		write_push(s, (const char *)p + off, len - off);
}

static void set_carbons(struct session *s, bool on)
{
	if (s->flags & SF_BOUND)
		route_set_carbons(s->w->srv->routes, s->jid, s->bare_len, s->jid + s->bare_len + 1,
				  (size_t)s->jid_len - s->bare_len - 1, session_handle(s), on);
	carbons_count(s, on);
}

static void ev_send(struct session *s, const uint8_t *p, size_t len)
{
	struct im_send_hdr h;
	struct im_sess *im = s->im;
	const uint32_t router_owned = IM_SF_INACTIVE | IM_SF_SM | IM_SF_AVAILABLE;

	if (len < sizeof(h))
		return;
	memcpy(&h, p, sizeof(h));
	uint32_t was = im->flags;
	im->flags = (im->flags | (h.set & ~router_owned)) & ~(h.clear & ~router_owned);
	if ((was ^ im->flags) & IM_SF_CARBONS)
		set_carbons(s, (im->flags & IM_SF_CARBONS) != 0);
	write_push(s, (const char *)p + sizeof(h), len - sizeof(h));
}

/* IM_EV_PRESENCE_TO: our presence (or unavailable) to a JID, after an
 * approval or a cancellation (control), or as a probe's answer (a worker;
 * RFC 6121 4.3.2: only to a contact subscribed to us). */
static void ev_presence_to(struct session *s, const uint8_t *p, size_t len)
{
	struct im_presence_to h;

	if (len < sizeof(h))
		return;
	memcpy(&h, p, sizeof(h));
	if (sizeof(h) + h.len > len || !h.len)
		return;
	const char *to = (const char *)p + sizeof(h);
	bool unav = (h.flags & IM_PT_UNAVAILABLE) != 0;
	if (h.flags & IM_PT_PROBE) {
		const struct im_cent *c = contact_find(s->im, to, bare_len_of(to, h.len));
		if (!own_jid(s, to, h.len) && !(c && (c->sub & IM_SUB_FROM)))
			return;
	}
	if (!unav && !(s->flags & SF_AVAILABLE))
		return;
	if ((s->imf & IMG_RULES) && im_check_out(s, IM_KIND_PRES_OUT, to, h.len) != IM_ALLOW)
		return;
	pres_send(s, unav, to, h.len);
}

void im_event(struct session *s, unsigned ev, const uint8_t *p, size_t len)
{
	if (!s->im || session_dead(s) || s->state == SS_CLOSING)
		return;
	switch (ev) {
	case IM_EV_STATE:
		ev_state(s, p, len);
		break;
	case IM_EV_CONTACT:
		ev_contact(s, p, len);
		break;
	case IM_EV_RULES:
		ev_rules(s, p, len);
		break;
	case IM_EV_SEND:
		ev_send(s, p, len);
		break;
	case IM_EV_PRESENCE_TO:
		ev_presence_to(s, p, len);
		break;
	default:
		log_warn("im: unknown event %u", ev);
		break;
	}
}

/* ---- XEP-0280 carbons ----------------------------------------------------------------- */

bool im_carbon_eligible(struct xml_view *v, int type)
{
	bool body = false, im_payload = false;

	if (type != T_CHAT && type != T_NORMAL && type != T_NONE)
		return false;   /* groupchat, headline, error: not copied (6.1) */
	for (uint32_t c = xml_first_child(v, 0); c != XML_NO_TOK; c = xml_next_sibling(v, c)) {
		struct xml_slice ns = xml_tok_ns(v, c), local = xml_tok_local(v, c);
		if (xml_slice_eq(ns, NS_CARBONS))
			return false;   /* <private/> (8), or a carbon itself */
		if (xml_slice_eq(ns, "urn:xmpp:hints") && xml_slice_eq(local, "no-copy"))
			return false;
		if (xml_slice_eq(local, "body") && xml_slice_eq(ns, "jabber:client"))
			body = true;
		else if (xml_slice_eq(ns, "urn:xmpp:receipts") || xml_slice_eq(ns, "http://jabber.org/protocol/chatstates") ||
			 xml_slice_eq(ns, "urn:xmpp:chat-markers:0"))
			im_payload = true;
	}
	return type == T_CHAT || body || im_payload;
}

/* One copy: <message from=bare to=full [type]><el xmlns=carbons><forwarded
 * xmlns=forward> the original </forwarded></el></message>. */
static void carbon_copy(struct worker *w, const char *el, const char *bare, size_t bare_len,
			const struct route_snap *snap, const struct route_res *r, struct xml_view *v,
			const struct iovec *inner, int ninner)
{
	char full[JID_MAX + 2];
	char *d = wrap_buf;

	if (bare_len + 1 + r->len > JID_MAX)
		return;
	memcpy(full, bare, bare_len);
	full[bare_len] = '/';
	memcpy(full + bare_len + 1, route_res_name(snap, r), r->len);
	memcpy(d, "<message", 8);
	d += 8;
	d = put_attr(d, "from", bare, bare_len);
	d = put_attr(d, "to", full, bare_len + 1 + r->len);
	if (v->info.type != XML_NO_TOK) {
		struct xml_slice t = xml_tok_raw(v, v->info.type);
		if (t.len < 16) {
			memcpy(d, " type='", 7);
			memcpy(d + 7, t.ptr, t.len);
			d[7 + t.len] = '\'';
			d += 8 + t.len;
		}
	}
	d += sprintf(d, "><%s xmlns='" NS_CARBONS "'><forwarded xmlns='" NS_FORWARD "'>", el);
	char tail[64];
	int tl = snprintf(tail, sizeof(tail), "</forwarded></%s></message>", el);
	struct iovec iov[2 + 2 * XML_REWRITE_IOV];
	int n = 0;
	iov[n].iov_base = wrap_buf;
	iov[n++].iov_len = (size_t)(d - wrap_buf);
	for (int i = 0; i < ninner; i++)
		iov[n++] = inner[i];
	iov[n].iov_base = tail;
	iov[n++].iov_len = (size_t)tl;
	struct im_peer peer = { K_MESSAGE, T_CHAT, bare, bare_len, full, bare_len + 1 + r->len, NULL };
	deliver_forward(w, r->handle, iov, n, 0, &peer);
}

void im_carbons(struct session *s, struct xml_view *v, const struct iovec *iov, int n, const char *rcpt_bare,
		size_t rcpt_len, uint64_t took)
{
	struct worker *w = s->w;
	struct iovec inner[XML_REWRITE_IOV + 1];
	int ni = 0;
	uint64_t self = session_handle(s);

	if (!rcpt_bare || (rcpt_len == s->bare_len && !memcmp(rcpt_bare, s->jid, rcpt_len)))
		return;   /* to the user's own account: its resources have it already */
	/* The original inside <forwarded/> keeps its namespace: jabber:client
	 * is declared on it unless it declares its own. */
	inner[ni++] = iov[0];
	if (!(v->tok[0].ns >= v->ns_own && v->tok[0].prefix == 0)) {
		inner[ni].iov_base = (void *)" xmlns='jabber:client'";
		inner[ni++].iov_len = 22;
	}
	for (int i = 1; i < n; i++)
		inner[ni++] = iov[i];

	/* 7: the sender's other carbons-enabled resources. */
	const struct route_snap *own = route_lookup(w->srv->routes, s->jid, s->bare_len);
	for (unsigned i = 0; own && own->ncarbons && i < own->nres; i++) {
		const struct route_res *r = &own->res[i];
		if (r->carbons && r->handle != self)
			carbon_copy(w, "sent", s->jid, s->bare_len, own, r, v, inner, ni);
	}
	/* 6: the recipient's carbons-enabled resources the original missed. */
	const struct route_snap *snap = route_lookup(w->srv->routes, rcpt_bare, rcpt_len);
	for (unsigned i = 0; snap && snap->ncarbons && i < snap->nres; i++) {
		const struct route_res *r = &snap->res[i];
		if (!r->carbons || (took ? r->handle == took : route_picks(snap, r, ROUTE_PICK_BEST)))
			continue;
		carbon_copy(w, "received", rcpt_bare, rcpt_len, snap, r, v, inner, ni);
	}
}

/* ---- XEP-0199 ---------------------------------------------------------------------------- */

void im_input_seen(struct session *s)
{
	s->im->last_rx = net_now_ms();
	s->im->ping_sent = 0;
}

bool im_timer(struct session *s)
{
	struct im_sess *im = s->im;
	const struct im_config *c = &cfg_of(s)->im;

	if (!im || !(s->flags & SF_BOUND) || s->state != SS_OPEN || !c->ping_idle_ms)
		return false;   /* not the ping's timer */
	uint64_t now = net_now_ms();
	if (im->ping_sent) {
		if (now - im->ping_sent >= c->ping_timeout_ms) {
			/* A resumable session (XEP-0198) is detached, not ended:
			 * the client that vanished (a phone out of coverage) may
			 * resume it (sm.c's session_close path). */
			if (sm_resumable(s))
				session_close(s, "no answer to the idle ping: detached");
			else
				c2s_stream_error(s, "connection-timeout");
			return true;
		}
		session_timer(s, (uint32_t)(c->ping_timeout_ms - (now - im->ping_sent)));
		return true;
	}
	if (now - im->last_rx < c->ping_idle_ms) {
		session_timer(s, (uint32_t)(c->ping_idle_ms - (now - im->last_rx)));
		return true;
	}
	char buf[256 + 6 * 3072];
	struct xmlw x;
	size_t len;
	char id[32];
	snprintf(id, sizeof(id), "ping-%u", ++im->ping_seq);
	xmlw_init(&x, buf, sizeof(buf));
	xmlw_start(&x, "iq");
	xmlw_attr_str(&x, "from", cfg_of(s)->vhost[s->vhost].domain);
	xmlw_attr(&x, "to", s->jid, s->jid_len);
	xmlw_attr_str(&x, "type", "get");
	xmlw_attr_str(&x, "id", id);
	xmlw_start(&x, "ping");
	xmlw_ns(&x, NULL, NS_PING);
	xmlw_end(&x);
	xmlw_end(&x);
	if (xmlw_finish(&x, &len) == XMLW_OK) {
		struct iovec iov = { buf, len };
		im_write(s, &iov, 1);
	}
	im->ping_sent = now ? now : 1;
	session_timer(s, c->ping_timeout_ms ? c->ping_timeout_ms : 1);
	return true;
}

/* ---- export / import (XEP-0198 resumption on another worker) ---------------------------------- */

#define EXPORT_MAGIC 0x31534d49u   /* "IMS1" */

struct wbuf {
	uint8_t *p;
	size_t len, cap;
	bool fail;
};

static void wput(struct wbuf *b, const void *p, size_t n)
{
	if (b->fail || !n)
		return;
	if (b->len + n > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		while (c < b->len + n)
			c *= 2;
		uint8_t *np = realloc(b->p, c);
		if (!np) {
			b->fail = true;
			return;
		}
		b->p = np;
		b->cap = c;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void wput32(struct wbuf *b, uint32_t v)
{
	wput(b, &v, 4);
}

int im_sess_export(const struct session *s, uint8_t **out, size_t *len)
{
	const struct im_sess *im = s->im;
	struct wbuf b = { NULL, 0, 0, false };

	wput32(&b, EXPORT_MAGIC);
	if (!im) {
		wput32(&b, 0);
	} else {
		wput32(&b, 1);
		wput32(&b, im->flags);
		uint32_t live = 0;
		for (uint32_t e = 0; e < im->nct; e++)
			live += im->ct[e].sub != 0;
		wput32(&b, live);
		for (uint32_t e = 0; e < im->nct; e++) {
			const struct im_cent *c = &im->ct[e];
			if (!c->sub)
				continue;
			uint32_t h = (uint32_t)c->sub << 16 | c->len;
			wput32(&b, h);
			wput(&b, im->pool + c->off, c->len);
		}
		wput32(&b, im->nrules);
		wput32(&b, im->rules_len);
		wput(&b, im->rules, im->rules_len);
		wput32(&b, im->last ? im->last_len : 0);
		wput32(&b, im->last_name);
		wput(&b, im->last, im->last ? im->last_len : 0);
		wput32(&b, im->ndir);
		wput32(&b, im->dir_len);
		wput(&b, im->dir, im->dir_len);
	}
	if (b.fail) {
		free(b.p);
		return -1;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

struct rbuf {
	const uint8_t *p;
	size_t len, off;
	bool fail;
};

static const uint8_t *rget(struct rbuf *b, size_t n)
{
	if (b->fail || b->len - b->off < n) {
		b->fail = true;
		return NULL;
	}
	const uint8_t *p = b->p + b->off;
	b->off += n;
	return p;
}

static uint32_t rget32(struct rbuf *b)
{
	uint32_t v = 0;
	const uint8_t *p = rget(b, 4);
	if (p)
		memcpy(&v, p, 4);
	return v;
}

int im_sess_import(struct session *s, const uint8_t *p, size_t len)
{
	struct rbuf b = { p, len, 0, false };

	if (rget32(&b) != EXPORT_MAGIC)
		return -1;
	uint32_t has = rget32(&b);
	if (b.fail)
		return -1;
	if (!s->im) {
		s->im = mem_calloc(1, sizeof(*s->im));
		if (!s->im)
			return -1;
		s->im->started = true;
		s->im->last_rx = net_now_ms();
	}
	struct im_sess *im = s->im;
	uint8_t keep = s->imf & IMG_WAIT;
	contacts_clear(im);
	mem_free(im->rules);
	mem_free(im->last);
	mem_free(im->dir);
	im->rules = NULL;
	im->last = NULL;
	im->dir = NULL;
	im->nrules = im->rules_len = im->last_len = im->dir_len = 0;
	im->ndir = 0;
	s->imf = keep;
	if (!has)
		return 0;
	uint32_t flags = rget32(&b);
	uint32_t nct = rget32(&b);
	for (uint32_t i = 0; i < nct && !b.fail; i++) {
		uint32_t h = rget32(&b);
		const uint8_t *j = rget(&b, h & 0xffff);
		if (j && !contact_set(im, (const char *)j, h & 0xffff, h >> 16))
			b.fail = true;
	}
	uint32_t nrules = rget32(&b), rlen = rget32(&b);
	const uint8_t *rules = rget(&b, rlen);
	uint32_t llen = rget32(&b), lname = rget32(&b);
	const uint8_t *last = rget(&b, llen);
	uint32_t ndir = rget32(&b), dlen = rget32(&b);
	const uint8_t *dir = rget(&b, dlen);
	if (b.fail || (llen && (lname > llen || lname > UINT16_MAX)) || ndir > DIR_MAX ||
	    (dlen && dir[dlen - 1] != '\0')) {
		contacts_clear(im);
		return -1;
	}
	if (rlen) {
		im->rules = mem_alloc(rlen);
		if (!im->rules)
			return -1;
		memcpy(im->rules, rules, rlen);
		im->rules_len = rlen;
		im->nrules = nrules;
		if (nrules)
			s->imf |= IMG_RULES;
	}
	if (llen) {
		im->last = mem_alloc(llen);
		if (!im->last)
			return -1;
		memcpy(im->last, last, llen);
		im->last_len = llen;
		im->last_name = (uint16_t)lname;
	}
	if (dlen) {
		im->dir = mem_alloc(dlen);
		if (!im->dir)
			return -1;
		memcpy(im->dir, dir, dlen);
		im->dir_len = dlen;
		im->ndir = (uint16_t)ndir;
	}
	im->flags = flags;
	if (flags & IM_SF_INACTIVE)
		s->imf |= IMG_INACTIVE;
	if (flags & IM_SF_CARBONS)
		set_carbons(s, true);
	return 0;
}
