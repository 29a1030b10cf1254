/* Delivery: RFC 6120 section 10 and RFC 6121 section 8 for stanzas from
 * bound clients, with the server's own 'from' stamped on every one.
 *
 * The hot path, a message from a session to another: parse the 'to' JID
 * (ASCII fast path, no allocation), look the bare JID up in the routing
 * table (lock-free), cut the stanza into iovecs with the new 'from'
 * (xml_view_rewrite: no re-serialisation), and either append them to the
 * destination's output buffer (same worker) or copy them into the ring to
 * the destination's worker. Nothing here allocates or takes a lock.
 */
#include <string.h>
#include "parser/jid.h"
#include "parser/xml.h"
#include "parser/xmlw.h"
#include "router/im.h"
#include "router/ring.h"
#include "router/route.h"
#include "router/router.h"
#include "util/log.h"

#define NS_STANZA_ERR "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_PING       "urn:xmpp:ping"

struct stanza {
	enum kind kind;
	enum stype type;
	struct xml_view *v;
	struct jid to;          /* valid when has_to */
	bool has_to;
};

enum kind deliver_kind(struct xml_view *v)
{
	struct xml_slice local = xml_tok_local(v, 0);

	return xml_slice_eq(local, "message") ? K_MESSAGE : xml_slice_eq(local, "presence") ? K_PRESENCE : K_IQ;
}

enum stype deliver_type(enum kind k, struct xml_view *v)
{
	static const struct { const char *name; enum stype t; unsigned kinds; } types[] = {
		{ "normal", T_NORMAL, 1u << K_MESSAGE },
		{ "chat", T_CHAT, 1u << K_MESSAGE },
		{ "groupchat", T_GROUPCHAT, 1u << K_MESSAGE },
		{ "headline", T_HEADLINE, 1u << K_MESSAGE },
		{ "unavailable", T_UNAVAILABLE, 1u << K_PRESENCE },
		{ "subscribe", T_SUBSCRIBE, 1u << K_PRESENCE },
		{ "subscribed", T_SUBSCRIBED, 1u << K_PRESENCE },
		{ "unsubscribe", T_UNSUBSCRIBE, 1u << K_PRESENCE },
		{ "unsubscribed", T_UNSUBSCRIBED, 1u << K_PRESENCE },
		{ "probe", T_PROBE, 1u << K_PRESENCE },
		{ "get", T_GET, 1u << K_IQ },
		{ "set", T_SET, 1u << K_IQ },
		{ "result", T_RESULT, 1u << K_IQ },
		{ "error", T_ERROR, 7u },
	};
	char buf[16];

	if (v->info.type == XML_NO_TOK)
		return k == K_IQ ? T_INVALID : T_NONE;
	if (v->tok[v->info.type].b >= sizeof(buf))
		return T_INVALID;
	struct xml_slice t = xml_tok_value(v, v->info.type, buf);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if ((types[i].kinds & (1u << k)) && xml_slice_eq(t, types[i].name))
			return types[i].t;
	return T_INVALID;
}

const char *deliver_kind_name(enum kind k)
{
	return k == K_MESSAGE ? "message" : k == K_PRESENCE ? "presence" : "iq";
}

/* ---- errors ----------------------------------------------------------------- */

/* IDs longer than this are not echoed (an abuse, not a client). */
#define REPLY_ID_MAX 1024u

void reply_begin(struct xmlw *x, char *buf, size_t cap, struct xml_view *v, const char *name,
		 const char *type, const char *from, size_t from_len, const char *to, size_t to_len)
{
	char idbuf[REPLY_ID_MAX];

	xmlw_init(x, buf, cap);
	xmlw_start(x, name);
	if (from)
		xmlw_attr(x, "from", from, from_len);
	if (to)
		xmlw_attr(x, "to", to, to_len);
	xmlw_attr_str(x, "type", type);
	if (v->info.id != XML_NO_TOK && v->tok[v->info.id].b <= sizeof(idbuf)) {
		struct xml_slice id = xml_tok_value(v, v->info.id, idbuf);
		xmlw_attr(x, "id", id.ptr, id.len);
	}
}

/* An error reply built from the stanza in v: 'from' and 'to' swapped (the
 * sender's 'to', or our domain, becomes 'from'), same 'id', the error
 * child. Written into buf; returns its length or 0. */
size_t deliver_error(struct xml_view *v, enum kind k, const char *from, size_t from_len,
		     const char *to, size_t to_len, const char *etype, const char *cond, const char *app,
		     char *buf, size_t cap)
{
	struct xmlw x;
	size_t len;

	reply_begin(&x, buf, cap, v, deliver_kind_name(k), "error", from, from_len, to, to_len);
	xmlw_start(&x, "error");
	xmlw_attr_str(&x, "type", etype);
	xmlw_start(&x, cond);
	xmlw_ns(&x, NULL, NS_STANZA_ERR);
	xmlw_end(&x);
	if (app)
		xmlw_raw(&x, app, strlen(app));
	xmlw_end(&x);
	xmlw_end(&x);
	return xmlw_finish(&x, &len) == XMLW_OK ? len : 0;
}

/* Reply to the client's own stanza with an error (RFC 6120 8.3), never to
 * an error (8.3.1). */
static void reply_error_app(struct session *s, struct stanza *st, const char *etype, const char *cond,
			    const char *app)
{
	char from[JID_MAX + 1];
	size_t from_len = 0;

	if (st->type == T_ERROR)
		return;
	if (st->has_to) {
		struct jid_slice f = jid_full(&st->to);
		memcpy(from, f.ptr, f.len);
		from_len = f.len;
	}
	size_t n = deliver_error(st->v, st->kind, from_len ? from : NULL, from_len, s->jid, s->jid_len,
			       etype, cond, app, s->w->scratch, s->w->scratch_cap);
	if (n) {
		struct iovec iov = { s->w->scratch, n };
		im_write(s, &iov, 1);
	}
}

static void reply_error(struct session *s, struct stanza *st, const char *etype, const char *cond)
{
	reply_error_app(s, st, etype, cond, NULL);
}

/* ---- forwarding -------------------------------------------------------------- */

/* The one place a routed stanza enters a session: straight out unless the
 * session has IM state that must see it (im_deliver). */
static inline void write_local(struct session *d, const struct iovec *iov, int n, const struct im_peer *peer)
{
	if (__builtin_expect(d->imf != 0, 0))
		im_deliver(d, iov, n, peer);
	else
		session_stanza(d, iov, n);
}

/* Send the prepared iovecs to one session. Local: into its buffer now;
 * remote: into the ring to its worker. Returns false if the handle is
 * stale on this worker (the caller falls back). */
bool deliver_forward(struct worker *w, uint64_t h, const struct iovec *iov, int n, uint16_t flags,
		     const struct im_peer *peer)
{
	unsigned wk = handle_worker(h);

	if (wk != w->id) {
		worker_post(w, wk, MSG_STANZA, flags, h, iov, n);
		return true;
	}
	struct session *d = worker_session(w, h);
	if (!d || !(d->flags & SF_BOUND))
		return false;
	write_local(d, iov, n, peer);
	return true;
}

/* Send bytes to a full JID, if it is bound (errors for remote senders). */
void deliver_to_full(struct worker *w, const char *jid, size_t len, const char *bytes, size_t blen,
		     const struct im_peer *peer)
{
	const char *slash = memchr(jid, '/', len);
	struct iovec iov = { (void *)bytes, blen };

	if (!slash)
		return;
	const struct route_snap *snap = route_lookup(w->srv->routes, jid, (size_t)(slash - jid));
	if (!snap)
		return;
	const struct route_res *r = route_find(snap, slash + 1, len - (size_t)(slash - jid) - 1);
	if (r)
		deliver_forward(w, r->handle, &iov, 1, 0, peer);
}

/* Forward to the sessions of snap that route_picks chooses, all of them:
 * the snapshot stays valid until this thread's next quiescent state, so
 * it is walked in place. skip: a handle to leave out (0: none). Returns
 * how many took it. */
unsigned deliver_fan_out(struct worker *w, const struct route_snap *snap, int how, uint64_t skip,
			 const struct iovec *iov, int n, uint16_t flags, const struct im_peer *peer)
{
	unsigned sent = 0;

	if (!snap)
		return 0;
	for (unsigned i = 0; i < snap->nres; i++) {
		const struct route_res *r = &snap->res[i];
		if (r->handle != skip && route_picks(snap, r, how) && deliver_forward(w, r->handle, iov, n, flags, peer))
			sent++;
	}
	return sent;
}

/* ---- server-handled iqs -------------------------------------------------------- */

static void reply_result(struct session *s, struct stanza *st)
{
	struct xmlw x;
	struct jid_slice f = { NULL, 0 };
	size_t len;

	if (st->has_to)
		f = jid_full(&st->to);
	reply_begin(&x, s->w->scratch, s->w->scratch_cap, st->v, "iq", "result", f.ptr, f.len, s->jid, s->jid_len);
	xmlw_end(&x);
	if (xmlw_finish(&x, &len) == XMLW_OK) {
		struct iovec iov = { s->w->scratch, len };
		im_write(s, &iov, 1);
	}
}

/* A stanza for the control plane (IM_REQ_STANZA), as it leaves: our
 * 'from', the prepared 'to'. */
static void to_control(struct session *s, const struct iovec *iov, int n)
{
	if (!im_post_req(s->w, s, IM_REQ_STANZA, s->jid, s->jid_len, iov, n))
		log_warn("im: a stanza from %s too large for a request: dropped", s->jid);
}

/* An iq the server answers (to the domain, or to a local account's bare
 * JID on its behalf): XEP-0199 pings here, everything else on the control
 * plane when there is one. */
static void server_iq(struct session *s, struct stanza *st, const struct iovec *iov, int n)
{
	struct xml_view *v = st->v;

	if (st->type != T_GET && st->type != T_SET)
		return;   /* results and errors to us end here (our pings' answers too) */
	uint32_t c = v->info.child;
	if (st->type == T_GET && c != XML_NO_TOK && xml_slice_eq(xml_tok_local(v, c), "ping") &&
	    xml_slice_eq(xml_tok_ns(v, c), NS_PING)) {
		reply_result(s, st);   /* XEP-0199 */
		return;
	}
	if (im_enabled(s->w->srv)) {
		to_control(s, iov, n);
		return;
	}
	reply_error(s, st, "cancel", "service-unavailable");
}

/* ---- the delivery rules --------------------------------------------------------- */

static int8_t parse_priority(struct xml_view *v)
{
	int8_t prio = 0;

	for (uint32_t c = xml_first_child(v, 0); c != XML_NO_TOK; c = xml_next_sibling(v, c)) {
		if (!xml_slice_eq(xml_tok_local(v, c), "priority"))
			continue;
		uint32_t t = c + 1 + v->tok[c].nattr;
		char b[16];
		if (t < v->ntok && v->tok[t].type == XML_TOK_TEXT && v->tok[t].len < sizeof(b)) {
			struct xml_slice val = xml_tok_value(v, t, b);
			long p = 0;
			bool neg = false;
			uint32_t i = 0;
			if (i < val.len && val.ptr[i] == '-')
				neg = true, i++;
			for (; i < val.len && val.ptr[i] >= '0' && val.ptr[i] <= '9' && p < 1000; i++)
				p = p * 10 + (val.ptr[i] - '0');
			p = neg ? -p : p;
			prio = (int8_t)(p < -128 ? -128 : p > 127 ? 127 : p);
		}
	}
	return prio;
}

/* Presence without 'to': the session's availability (RFC 6121 4.2, 4.4,
 * 4.5), broadcast to the user's own available resources and, with the IM
 * layer, to the contacts (router/im.c). */
static void own_presence(struct session *s, struct stanza *st, const struct iovec *iov, int n)
{
	struct server *srv = s->w->srv;
	bool avail;
	int8_t prio = 0;

	if (st->type == T_NONE)
		avail = true;
	else if (st->type == T_UNAVAILABLE)
		avail = false;
	else
		return;   /* subscription types need a 'to'; errors and probes to nobody end here */
	if (avail)
		prio = parse_priority(st->v);
	if (s->im) {
		im_presence_broadcast(s, st->v, avail, prio, iov, n);
		return;
	}
	route_set_presence(srv->routes, s->jid, s->bare_len, s->jid + s->bare_len + 1,
			   (size_t)s->jid_len - s->bare_len - 1, session_handle(s), avail, prio);
	if (avail)
		s->flags |= SF_AVAILABLE;
	else
		s->flags &= (uint16_t)~SF_AVAILABLE;
	s->priority = prio;

	/* RFC 6121 4.2.2 / 4.5.2: the user's other available resources see it. */
	const struct route_snap *snap = route_lookup(srv->routes, s->jid, s->bare_len);
	if (!snap)
		return;
	/* Including the sender itself: the echo tells it the server has it. */
	struct im_peer peer = { K_PRESENCE, st->type, s->jid, s->jid_len, NULL, 0, st->v };
	deliver_fan_out(s->w, snap, ROUTE_PICK_ALL, 0, iov, n, 0, &peer);
}

void deliver_gone(struct session *s)
{
	/* RFC 6121 4.5.3.1: a session that ends while available goes
	 * unavailable for the user's other resources (and, with the IM layer,
	 * its contacts and directed-presence recipients). Called after
	 * unbind. */
	char buf[4096];
	struct xmlw x;
	size_t len;

	if (!(s->flags & SF_AVAILABLE))
		return;
	if (s->im) {
		im_gone(s);
		return;
	}
	s->flags &= (uint16_t)~SF_AVAILABLE;
	const struct route_snap *snap = route_lookup(s->w->srv->routes, s->jid, s->bare_len);
	if (!snap)
		return;
	xmlw_init(&x, buf, sizeof(buf));
	xmlw_start(&x, "presence");
	xmlw_attr(&x, "from", s->jid, s->jid_len);
	xmlw_attr_str(&x, "type", "unavailable");
	xmlw_end(&x);
	if (xmlw_finish(&x, &len) != XMLW_OK)
		return;
	struct iovec iov = { buf, len };
	struct im_peer peer = { K_PRESENCE, T_UNAVAILABLE, s->jid, s->jid_len, NULL, 0, NULL };
	deliver_fan_out(s->w, snap, ROUTE_PICK_ALL, 0, &iov, 1, 0, &peer);
}

/* A message nobody online took (RFC 6121 8.5.2.1.1, 8.5.2.2.1): offline
 * storage on the control plane (which answers <service-unavailable/> for
 * an unknown user or a full queue), or the error right away. */
static void message_undelivered(struct session *s, struct stanza *st, const struct iovec *iov, int n)
{
	if (im_enabled(s->w->srv))
		to_control(s, iov, n);
	else
		reply_error(s, st, "cancel", "service-unavailable");
}

/* To the bare JID of a local account (RFC 6121 8.5.2). */
static void to_bare(struct session *s, struct stanza *st, const struct route_snap *snap,
		    const struct iovec *iov, int n, const struct im_peer *peer)
{
	switch (st->kind) {
	case K_MESSAGE:
		switch (st->type) {
		case T_NONE:
		case T_NORMAL:
		case T_CHAT:
			if (!deliver_fan_out(s->w, snap, ROUTE_PICK_BEST, 0, iov, n, 0, peer))
				message_undelivered(s, st, iov, n);
			return;
		case T_HEADLINE:
			/* none: dropped silently */
			deliver_fan_out(s->w, snap, ROUTE_PICK_AVAILABLE, 0, iov, n, 0, peer);
			return;
		case T_GROUPCHAT:
			reply_error(s, st, "cancel", "service-unavailable");
			return;
		case T_ERROR:
			deliver_fan_out(s->w, snap, ROUTE_PICK_BEST, 0, iov, n, 0, peer);
			return;
		default:
			return;
		}
	case K_PRESENCE:
		switch (st->type) {
		case T_SUBSCRIBE:
		case T_SUBSCRIBED:
		case T_UNSUBSCRIBE:
		case T_UNSUBSCRIBED:
			/* RFC 6121 3: the control plane runs the subscription
			 * state machine and forwards. */
			if (im_enabled(s->w->srv)) {
				to_control(s, iov, n);
				return;
			}
			break;
		case T_PROBE:
			return;   /* probes are answered from rosters (router/im.c, at initial presence) */
		default:
			break;
		}
		deliver_fan_out(s->w, snap, ROUTE_PICK_ALL, 0, iov, n, 0, peer);
		return;
	case K_IQ:
		server_iq(s, st, iov, n);
		return;
	}
}

static bool is_subscription(enum stype t)
{
	return t == T_SUBSCRIBE || t == T_SUBSCRIBED || t == T_UNSUBSCRIBE || t == T_UNSUBSCRIBED;
}

void deliver_from_client(struct session *s, struct xml_view *v)
{
	struct worker *w = s->w;
	struct server *srv = w->srv;
	struct stanza st;
	char tmp[JID_MAX + 1];

	st.v = v;
	st.has_to = false;
	st.kind = deliver_kind(v);
	st.type = deliver_type(st.kind, v);
	if (st.type == T_INVALID) {
		st.type = T_NONE;
		reply_error(s, &st, "modify", "bad-request");
		return;
	}
	/* A forged 'from' never passes (RFC 6120 8.1.2.1). */
	if (v->info.from != XML_NO_TOK) {
		struct jid f;
		bool ok = false;
		if (v->tok[v->info.from].b <= JID_MAX) {
			struct xml_slice fv = xml_tok_value(v, v->info.from, tmp);
			if (jid_parse(&f, fv.ptr, fv.len, 0) == JID_OK) {
				struct jid_slice fs = jid_full(&f);
				ok = (fs.len == s->jid_len && !memcmp(fs.ptr, s->jid, fs.len)) ||
				     (fs.len == s->bare_len && !memcmp(fs.ptr, s->jid, fs.len));
			}
		}
		if (!ok) {
			c2s_stream_error(s, "invalid-from");
			return;
		}
	}
	if (st.kind == K_IQ) {
		/* RFC 6120 8.2.3: an id, and exactly one child for get/set. */
		if (v->info.id == XML_NO_TOK) {
			reply_error(s, &st, "modify", "bad-request");
			return;
		}
		if ((st.type == T_GET || st.type == T_SET) &&
		    (v->info.child == XML_NO_TOK || xml_next_sibling(v, v->info.child) != XML_NO_TOK)) {
			reply_error(s, &st, "modify", "bad-request");
			return;
		}
	}
	if (v->info.to != XML_NO_TOK) {
		if (v->tok[v->info.to].b > JID_MAX) {
			reply_error(s, &st, "modify", "jid-malformed");
			return;
		}
		struct xml_slice tv = xml_tok_value(v, v->info.to, tmp);
		if (jid_parse(&st.to, tv.ptr, tv.len, 0) != JID_OK) {
			reply_error(s, &st, "modify", "jid-malformed");
			return;
		}
		st.has_to = true;
	}

	/* The stanza as it leaves: our 'from', the prepared 'to'. */
	struct xml_slice from = { s->jid, s->jid_len };
	struct xml_slice to = { NULL, 0 };
	struct iovec iov[XML_REWRITE_IOV];
	if (st.has_to) {
		struct jid_slice t = jid_full(&st.to);
		to.ptr = t.ptr;
		to.len = t.len;
	}
	/* The new attributes go to the scratch's upper half: error replies
	 * are built in the lower half while these iovecs are still in use. */
	int n = xml_view_rewrite(v, &from, st.has_to ? &to : NULL, w->scratch + w->scratch_cap / 2,
				 w->scratch_cap / 2, iov);
	if (n < 0) {
		reply_error(s, &st, "wait", "internal-server-error");
		return;
	}
	struct im_peer peer = { (int)st.kind, (int)st.type, s->jid, s->jid_len, to.ptr, to.len, v };

	if (!st.has_to) {
		switch (st.kind) {
		case K_PRESENCE:
			own_presence(s, &st, iov, n);
			return;
		case K_IQ:
			server_iq(s, &st, iov, n);   /* on the account's behalf */
			return;
		case K_MESSAGE: {
			/* RFC 6121 8.1.1.1: as if to the sender's bare JID. */
			const struct route_snap *snap = route_lookup(srv->routes, s->jid, s->bare_len);
			to_bare(s, &st, snap, iov, n, &peer);
			return;
		}
		}
	}

	/* XEP-0016 / XEP-0191: the sender's own rules, before anything is
	 * routed (never between the user's own resources). */
	struct jid_slice bare = jid_bare(&st.to);
	if ((s->imf & IMG_RULES) && !(bare.len == s->bare_len && !memcmp(bare.ptr, s->jid, bare.len)) &&
	    st.type != T_ERROR) {
		unsigned kind = st.kind == K_MESSAGE ? IM_KIND_MESSAGE : st.kind == K_IQ ? IM_KIND_IQ : IM_KIND_PRES_OUT;
		if (st.kind == K_PRESENCE && st.type != T_NONE && st.type != T_UNAVAILABLE)
			kind = 0;   /* not a notification: only rules that name every kind */
		enum im_verdict vd = im_check_out(s, kind, to.ptr, to.len);
		if (vd != IM_ALLOW) {
			if (!(st.kind == K_IQ && st.type == T_RESULT))
				reply_error_app(s, &st, "cancel", "not-acceptable",
						vd == IM_DENY_BLOCKED ? "<blocked xmlns='urn:xmpp:blocking:errors'/>" : NULL);
			return;
		}
	}

	struct jid_slice dom = jid_domain(&st.to);
	bool local_domain = false;
	for (unsigned i = 0; i < srv->cfg.nvhost; i++)
		if (srv->domain_len[i] == dom.len && !memcmp(srv->cfg.vhost[i].domain, dom.ptr, dom.len))
			local_domain = true;
	if (!local_domain) {
		if (st.kind == K_PRESENCE && is_subscription(st.type) && im_enabled(srv)) {
			/* The roster changes even if the contact's server is
			 * out of reach (RFC 6121 3.1.2). */
			to_control(s, iov, n);
			return;
		}
		/* No server-to-server links yet (RFC 6120 10.4.3). */
		reply_error(s, &st, "cancel", "remote-server-not-found");
		return;
	}
	if (st.to.local_len == 0) {
		/* To the server itself (RFC 6120 10.3). */
		if (st.kind == K_IQ)
			server_iq(s, &st, iov, n);
		else if (st.kind == K_MESSAGE)
			reply_error(s, &st, "cancel", "service-unavailable");
		return;
	}

	const struct route_snap *snap = route_lookup(srv->routes, bare.ptr, bare.len);
	uint64_t took = 0;   /* the resource a full-JID message went to (carbons) */
	if (st.to.resource_len) {
		struct jid_slice res = jid_resource(&st.to);
		const struct route_res *r = snap ? route_find(snap, res.ptr, res.len) : NULL;
		uint16_t flags = (st.kind == K_MESSAGE &&
				  (st.type == T_NONE || st.type == T_NORMAL || st.type == T_CHAT || st.type == T_HEADLINE))
				 ? MSGF_BARE_FALLBACK : 0;
		if (st.kind == K_PRESENCE && is_subscription(st.type) && im_enabled(srv)) {
			to_control(s, iov, n);   /* RFC 6121 3.1.1: handled as if to the bare JID */
			return;
		}
		if (r && deliver_forward(w, r->handle, iov, n, flags, &peer)) {
			if (st.kind == K_PRESENCE && s->im && (st.type == T_NONE || st.type == T_UNAVAILABLE))
				im_directed(s, st.type == T_NONE, to.ptr, to.len);
			took = r->handle;
			goto carbons;
		}
		/* No such resource (RFC 6121 8.5.3.2). */
		if (flags) {
			to_bare(s, &st, snap, iov, n, &peer);
			goto carbons;
		} else if (st.kind == K_PRESENCE) {
			if (is_subscription(st.type))
				to_bare(s, &st, snap, iov, n, &peer);
			/* other presence: dropped */
		} else if (st.kind == K_IQ) {
			if (st.type == T_GET || st.type == T_SET)
				reply_error(s, &st, "cancel", "service-unavailable");
		} else if (st.type != T_ERROR) {
			reply_error(s, &st, "cancel", "service-unavailable");
		}
		return;
	}
	to_bare(s, &st, snap, iov, n, &peer);
	if (st.kind == K_PRESENCE && s->im && (st.type == T_NONE || st.type == T_UNAVAILABLE))
		im_directed(s, st.type == T_NONE, to.ptr, to.len);
carbons:
	/* XEP-0280: copies to the sender's and the recipient's other
	 * carbons-enabled resources. Nothing to do (one relaxed load) while no
	 * session anywhere has carbons on. */
	if (st.kind == K_MESSAGE && atomic_load_explicit(&srv->carbons, memory_order_relaxed) &&
	    im_carbon_eligible(v, st.type))
		im_carbons(s, v, iov, n, bare.ptr, bare.len, took);
}

/* A stanza from another worker whose destination is gone now: the same
 * rules as for an unknown resource, from the stanza's own attributes. */
static void deliver_stale(struct worker *w, const struct ring_rec *rec)
{
	struct xml_view *v = &w->view;
	char tbuf[JID_MAX + 1], fbuf[JID_MAX + 1];
	struct jid to;

	if (xml_view_build(v, NULL, (const char *)rec->data, rec->len) || v->info.to == XML_NO_TOK ||
	    v->info.from == XML_NO_TOK)
		return;
	struct xml_slice tv = xml_tok_value(v, v->info.to, tbuf);
	struct xml_slice fv = xml_tok_value(v, v->info.from, fbuf);
	if (jid_parse(&to, tv.ptr, tv.len, 0) != JID_OK)
		return;
	struct iovec iov = { (void *)rec->data, rec->len };
	struct jid_slice bare = jid_bare(&to);
	const struct route_snap *snap = route_lookup(w->srv->routes, bare.ptr, bare.len);
	enum kind kind = deliver_kind(v);
	enum stype type = deliver_type(kind, v);
	struct im_peer peer = { (int)kind, (int)type, fv.ptr, fv.len, tv.ptr, tv.len, v };

	/* One fallback only: a record re-sent from here that finds a stale
	 * handle again gets the error, it does not travel on. */
	if ((rec->flags & MSGF_BARE_FALLBACK) && !(rec->flags & MSGF_RETRIED) && snap) {
		unsigned sent = deliver_fan_out(w, snap, type == T_HEADLINE ? ROUTE_PICK_AVAILABLE : ROUTE_PICK_BEST,
						rec->arg, &iov, 1, MSGF_RETRIED, &peer);
		if (sent || type == T_HEADLINE)
			return;
	}
	if (type == T_ERROR || type == T_RESULT || kind == K_PRESENCE || type == T_HEADLINE ||
	    (kind == K_IQ && type != T_GET && type != T_SET))
		return;
	if (kind == K_MESSAGE && (type == T_NONE || type == T_NORMAL || type == T_CHAT) && im_enabled(w->srv)) {
		/* Offline storage, on behalf of the user it was for. */
		im_post_req(w, NULL, IM_REQ_STANZA, bare.ptr, bare.len, &iov, 1);
		return;
	}
	/* An error back to the sender, wherever it is. */
	char *buf = w->scratch;
	size_t n = deliver_error(v, kind, tv.ptr, tv.len, fv.ptr, fv.len, "cancel", "service-unavailable", NULL,
				 buf, w->scratch_cap);
	if (n) {
		struct im_peer ep = { (int)kind, T_ERROR, tv.ptr, tv.len, fv.ptr, fv.len, NULL };
		deliver_to_full(w, fv.ptr, fv.len, buf, n, &ep);
	}
}

void deliver_record(struct worker *w, const struct ring_rec *rec)
{
	struct session *d = worker_session(w, rec->arg);

	if (d && (d->flags & SF_BOUND)) {
		struct iovec iov = { (void *)rec->data, rec->len };
		write_local(d, &iov, 1, NULL);
		return;
	}
	deliver_stale(w, rec);
}
