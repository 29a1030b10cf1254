/* XEP-0198 stream management (see sm.h for the model): the nonzas, the
 * queue of unacknowledged stanzas, detaching, resumption on this worker or
 * through the rings, and the leftovers of sessions that end for good.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "net/net.h"
#include "parser/xml.h"
#include "parser/xmlw.h"
#include "router/hooks.h"
#include "router/im.h"
#include "router/ring.h"
#include "router/route.h"
#include "router/router.h"
#include "router/sm.h"
#include "tls/tls.h"
#include "util/b64.h"
#include "util/log.h"
#include "util/mem.h"

#define NS_STANZA_ERR "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_STREAM_ERR "urn:ietf:params:xml:ns:xmpp-streams"

/* An SM-ID: the token in hex, then the resource in base64 (the resource
 * finds the session in the routing table under the resuming stream's own
 * bare JID; the token proves the client got the ID from us). */
#define SM_ID_MAX (2u * SM_TOKEN_LEN + (ROUTE_RESOURCE_MAX + 2u) / 3u * 4u + 1u)

static inline const struct server_config *cfg_of(const struct session *s)
{
	return &s->w->srv->cfg;
}

/* ---- the queue --------------------------------------------------------------- */

static size_t q_used(const struct sm *m)
{
	return m->q_len - m->q_head;
}

static bool q_push(struct sm *m, const struct iovec *iov, int iovcnt, size_t len)
{
	size_t need = sizeof(uint32_t) + len;

	if (len > UINT32_MAX)
		return false;
	if (m->q_len + need > m->q_cap && m->q_head) {
		memmove(m->q, m->q + m->q_head, q_used(m));
		m->q_len -= m->q_head;
		m->q_head = 0;
	}
	if (m->q_len + need > m->q_cap) {
		size_t cap = m->q_cap ? m->q_cap : 4096;
		while (cap < m->q_len + need)
			cap *= 2;
		char *p = mem_realloc(m->q, cap);
		if (!p)
			return false;
		m->q = p;
		m->q_cap = cap;
	}
	uint32_t l = (uint32_t)len;
	memcpy(m->q + m->q_len, &l, sizeof(l));
	m->q_len += sizeof(l);
	for (int i = 0; i < iovcnt; i++) {
		memcpy(m->q + m->q_len, iov[i].iov_base, iov[i].iov_len);
		m->q_len += iov[i].iov_len;
	}
	return true;
}

/* The record at offset off: its bytes and length; returns the next offset. */
static size_t q_rec(const char *q, size_t off, const char **p, uint32_t *len)
{
	memcpy(len, q + off, sizeof(*len));
	*p = q + off + sizeof(*len);
	return off + sizeof(*len) + *len;
}

static void q_clear(struct sm *m)
{
	mem_free(m->q);
	m->q = NULL;
	m->q_head = m->q_len = m->q_cap = 0;
}

/* Forget the n oldest stanzas (acknowledged). */
static void q_drop(struct sm *m, uint32_t n)
{
	for (uint32_t i = 0; i < n && m->q_head < m->q_len; i++) {
		const char *p;
		uint32_t l;
		m->q_head = q_rec(m->q, m->q_head, &p, &l);
	}
	if (m->q_head >= m->q_len)
		q_clear(m);   /* idle sessions hold no queue */
}

/* ---- positions waiting for the control thread (sm.h) ------------------------------- */

static void w_clear(struct sm *m)
{
	mem_free(m->wait);
	m->wait = NULL;
	m->w_head = m->w_len = m->w_cap = 0;
}

static bool w_push(struct sm *m, uint32_t pos, uint32_t n)
{
	if (m->w_len == m->w_cap && m->w_head) {
		memmove(m->wait, m->wait + m->w_head, (m->w_len - m->w_head) * sizeof(*m->wait));
		m->w_len -= m->w_head;
		m->w_head = 0;
	}
	if (m->w_len == m->w_cap) {
		uint32_t cap = m->w_cap ? m->w_cap * 2 : 8;
		struct sm_wait *p = mem_realloc(m->wait, cap * sizeof(*p));
		if (!p)
			return false;
		m->wait = p;
		m->w_cap = cap;
	}
	m->wait[m->w_len].pos = pos;
	m->wait[m->w_len].n = n;
	m->w_len++;
	return true;
}

/* Nothing at or before position at is waiting. */
static bool w_covers(const struct sm *m, uint32_t at)
{
	return m->w_head == m->w_len || (int32_t)(m->wait[m->w_head].pos - at) > 0;
}

/* ---- small helpers -------------------------------------------------------------- */

static void send_a(struct session *s)
{
	char buf[64];
	int n = snprintf(buf, sizeof(buf), "<a xmlns='" NS_SM "' h='%u'/>", sm_h_done(s->sm));
	session_write(s, buf, (size_t)n);
}

static void send_r(struct session *s)
{
	static const char r[] = "<r xmlns='" NS_SM "'/>";

	session_write(s, r, sizeof(r) - 1);
	s->sm->r_pending = true;
	s->sm->r_at = s->sm->h_out;
}

static void send_failed(struct session *s, const char *condition)
{
	char buf[192];
	int n = snprintf(buf, sizeof(buf), "<failed xmlns='" NS_SM "'><%s xmlns='" NS_STANZA_ERR "'/></failed>",
			 condition);
	session_write(s, buf, (size_t)n);
}

/* 'h' as XEP-0198 defines it: xs:unsignedInt, decimal digits only. */
static bool parse_h(struct xml_view *v, uint32_t *h)
{
	char buf[16];
	uint32_t t = xml_attr_find(v, 0, "h", NULL);
	uint64_t val = 0;

	if (t == XML_NO_TOK || v->tok[t].b >= sizeof(buf))
		return false;
	struct xml_slice sl = xml_tok_value(v, t, buf);
	if (sl.len == 0 || sl.len > 10)
		return false;
	for (uint32_t i = 0; i < sl.len; i++) {
		if (sl.ptr[i] < '0' || sl.ptr[i] > '9')
			return false;
		val = val * 10 + (uint64_t)(sl.ptr[i] - '0');
	}
	if (val > UINT32_MAX)
		return false;
	*h = (uint32_t)val;
	return true;
}

static bool attr_true(struct xml_view *v, const char *name)
{
	char buf[8];
	uint32_t t = xml_attr_find(v, 0, name, NULL);

	if (t == XML_NO_TOK || v->tok[t].b >= sizeof(buf))
		return false;
	struct xml_slice sl = xml_tok_value(v, t, buf);
	return xml_slice_eq(sl, "true") || xml_slice_eq(sl, "1");
}

static bool token_eq(const uint8_t *a, const uint8_t *b)
{
	uint8_t d = 0;
	for (unsigned i = 0; i < SM_TOKEN_LEN; i++)
		d |= (uint8_t)(a[i] ^ b[i]);
	return d == 0;
}

static size_t make_id(const uint8_t *token, const char *res, size_t rlen, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";

	if (cap < 2 * SM_TOKEN_LEN + b64_enc_len(rlen) + 1)
		return 0;
	for (unsigned i = 0; i < SM_TOKEN_LEN; i++) {
		out[2 * i] = hex[token[i] >> 4];
		out[2 * i + 1] = hex[token[i] & 15];
	}
	size_t n = b64_encode((const uint8_t *)res, rlen, out + 2 * SM_TOKEN_LEN, cap - 2 * SM_TOKEN_LEN);
	return n ? 2 * SM_TOKEN_LEN + n : 0;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool parse_id(const char *id, size_t len, uint8_t *token, char *res, size_t *rlen)
{
	if (len <= 2 * SM_TOKEN_LEN)
		return false;
	for (unsigned i = 0; i < SM_TOKEN_LEN; i++) {
		int a = hexval(id[2 * i]), b = hexval(id[2 * i + 1]);
		if (a < 0 || b < 0)
			return false;
		token[i] = (uint8_t)(a << 4 | b);
	}
	if (b64_decode(id + 2 * SM_TOKEN_LEN, len - 2 * SM_TOKEN_LEN, (uint8_t *)res, ROUTE_RESOURCE_MAX, rlen))
		return false;
	return *rlen >= 1;
}

size_t sm_id(const struct session *s, char *out, size_t cap)
{
	if (!s->sm || !s->sm->resume || !(s->flags & SF_BOUND) || s->jid_len <= s->bare_len)
		return 0;
	return make_id(s->sm->token, s->jid + s->bare_len + 1, (size_t)s->jid_len - s->bare_len - 1, out, cap);
}

/* ---- leftovers -------------------------------------------------------------------- */

/* Post stanzas q[off..end) (queue records) as IM_REQ_UNACKED for jid,
 * concatenated, in as many requests as ring records need. s: the session
 * they belonged to, or the one adopting them (vhost, peer), may be NULL. */
static void post_leftovers(struct worker *w, struct session *s, const char *jid, size_t jid_len, const char *q,
			   size_t off, size_t end)
{
	size_t max = im_req_max(w), hdr = sizeof(struct im_req) + jid_len;
	unsigned lost = 0;

	if (off >= end)
		return;
	if (max <= hdr) {
		log_err("stream management: no room to post unacknowledged stanzas of %.*s", (int)jid_len, jid);
		return;
	}
	max -= hdr;
	char *buf = mem_alloc(end - off < max ? end - off : max);
	if (!buf) {
		log_err("stream management: out of memory handing over stanzas of %.*s", (int)jid_len, jid);
		return;
	}
	size_t n = 0;
	while (off < end) {
		const char *p;
		uint32_t l;
		off = q_rec(q, off, &p, &l);
		if (l > max) {
			lost++;   /* not with stanzas under max_stanza; never silently */
			continue;
		}
		if (n + l > max) {
			struct iovec iov = { buf, n };
			if (!im_post_req(w, s, IM_REQ_UNACKED, jid, jid_len, &iov, 1))
				lost++;
			n = 0;
		}
		memcpy(buf + n, p, l);
		n += l;
	}
	if (n) {
		struct iovec iov = { buf, n };
		if (!im_post_req(w, s, IM_REQ_UNACKED, jid, jid_len, &iov, 1))
			lost++;
	}
	mem_free(buf);
	if (lost)
		log_err("stream management: unacknowledged stanzas of %.*s could not be handed over (%u)",
			(int)jid_len, jid, lost);
}

static void session_leftovers(struct session *s)
{
	struct sm *m = s->sm;

	if (q_used(m) && s->jid)
		post_leftovers(s->w, s, s->jid, s->jid_len, m->q, m->q_head, m->q_len);
	q_clear(m);
}

/* ---- acks ---------------------------------------------------------------------------- */

/* The client handled stanzas up to h. False (and a stream error) if it
 * claims more than it was sent (XEP-0198 section 6). */
static bool ack(struct session *s, uint32_t h)
{
	struct sm *m = s->sm;
	uint32_t n = h - m->acked, unacked = m->h_out - m->acked;

	if (n > unacked) {
		char buf[512];
		int len = snprintf(buf, sizeof(buf),
				   "<stream:error><undefined-condition xmlns='" NS_STREAM_ERR "'/>"
				   "<handled-count-too-high xmlns='" NS_SM "' h='%u' send-count='%u'/>"
				   "<text xmlns='" NS_STREAM_ERR "' xml:lang='en'>You acknowledged %u stanzas, "
				   "but I only sent you %u so far.</text></stream:error></stream:stream>",
				   h, m->h_out, h, m->h_out);
		session_write(s, buf, (size_t)len);
		s->flags |= SF_CLOSED_OUT;
		stat_add(&s->w->st.stream_errors, 1);
		session_close_after_flush(s);
		return false;
	}
	q_drop(m, n);
	m->acked = h;
	return true;
}

/* ---- enable ------------------------------------------------------------------------------ */

static struct sm *sm_new(void)
{
	struct sm *m = mem_calloc(1, sizeof(*m));
	if (m && getrandom(m->token, sizeof(m->token), 0) != (ssize_t)sizeof(m->token)) {
		mem_free(m);   /* never a guessable SM-ID */
		return NULL;
	}
	return m;
}

static void handle_enable(struct session *s, struct xml_view *v)
{
	const struct server_config *c = cfg_of(s);
	char buf[SM_ID_MAX + 160];
	struct xmlw x;
	size_t len;

	/* XEP-0198 section 3: after resource binding, once. */
	if (!(s->flags & SF_BOUND) || s->sm) {
		send_failed(s, "unexpected-request");
		return;
	}
	struct sm *m = sm_new();
	if (!m) {
		send_failed(s, "internal-server-error");
		return;
	}
	m->state = SM_ACTIVE;
	m->resume = attr_true(v, "resume") && c->im.sm_resume_ms > 0;
	m->resume_ms = c->im.sm_resume_ms;
	if (m->resume) {
		/* The client's preferred maximum (seconds), when it is shorter. */
		uint32_t t = xml_attr_find(v, 0, "max", NULL);
		char mb[16];
		if (t != XML_NO_TOK && v->tok[t].b < sizeof(mb)) {
			struct xml_slice sl = xml_tok_value(v, t, mb);
			uint64_t secs = 0;
			bool ok = sl.len > 0 && sl.len < 10;
			for (uint32_t i = 0; ok && i < sl.len; i++) {
				ok = sl.ptr[i] >= '0' && sl.ptr[i] <= '9';
				secs = secs * 10 + (uint64_t)(sl.ptr[i] - '0');
			}
			if (ok && secs > 0 && secs * 1000 < m->resume_ms)
				m->resume_ms = (uint32_t)(secs * 1000);
		}
	}
	s->sm = m;
	xmlw_init(&x, buf, sizeof(buf));
	xmlw_start(&x, "enabled");
	xmlw_ns(&x, NULL, NS_SM);
	if (m->resume) {
		char id[SM_ID_MAX], secs[16];
		size_t il = sm_id(s, id, sizeof(id));
		xmlw_attr(&x, "id", id, il);
		xmlw_attr_str(&x, "resume", "true");
		snprintf(secs, sizeof(secs), "%u", m->resume_ms / 1000 ? m->resume_ms / 1000 : 1);
		xmlw_attr_str(&x, "max", secs);
	}
	xmlw_end(&x);
	if (xmlw_finish(&x, &len) == XMLW_OK)
		session_write(s, buf, len);
}

/* ---- the old session's side of a resumption ------------------------------------------------ */

/* What moves: this header, the full JID, the IM state, the queue records. */
struct sm_blob {
	uint32_t h_in, h_out, acked;
	uint32_t resume_ms;
	uint8_t token[SM_TOKEN_LEN];
	uint16_t jid_len, bare_len, user_len;
	uint16_t flags;            /* SF_AVAILABLE */
	int8_t priority;
	uint8_t vhost;
	uint8_t pad[2];
	uint32_t nwait;            /* struct sm_wait records after the queue */
	uint64_t from;             /* the old handle (route_replace) */
	uint64_t im_len;
	uint64_t q_len;
};

/* MSG_SM_RESUME: new session → the old one's worker. */
struct sm_resume_req {
	uint64_t from;             /* the resuming session */
	uint8_t token[SM_TOKEN_LEN];
	uint16_t bare_len;         /* then the bare JID */
	uint8_t pad[6];
};

/* MSG_SM_MOVE: the answer; blob NULL: refused. The receiver owns blob. */
struct sm_move {
	uint8_t *blob;
	size_t len;
};

static bool can_resume(struct session *o, const uint8_t *token, const char *bare, size_t bare_len)
{
	struct sm *m = o ? o->sm : NULL;

	if (!m || !m->resume || (m->state != SM_ACTIVE && m->state != SM_DETACHED))
		return false;
	if (!(o->flags & SF_BOUND) || (o->flags & SF_CLOSED_OUT) || o->state == SS_CLOSING)
		return false;
	if (o->bare_len != bare_len || memcmp(o->jid, bare, bare_len))
		return false;   /* another user's session: not even a hint that it exists */
	return token_eq(m->token, token);
}

/* Free what a session without a connection does not need. Outside any
 * input handling (from the timer): the read and TLS paths that detached
 * it may still be on the stack when it detaches. */
static void release(struct session *s)
{
	if (s->tls) {
		tls_conn_free(s->tls);
		s->tls = NULL;
	}
	sbuf_drop(&s->in, s->in.len);
	sbuf_drop(&s->out, s->out.len);
	sbuf_drop(&s->pout, s->pout.len);
	xml_framer_reset(&s->framer);
	s->sm->released = true;
}

/* Close the connection, keep the session (its slot, handle, route). */
static void drop_connection(struct session *s)
{
	net_close(s->w->loop, s->conn);
	s->conn.id = SM_CONN_DETACHED;
	s->flags &= (uint16_t)~SF_WAIT_WRITE;
	stat_sub(&s->w->st.connections, 1);
	s->sm->released = false;
	session_timer(s, 1);   /* release() from the timer */
}

/* Build the state of o for the session `to` and turn o into a forwarder
 * to it. Returns the block (mem_alloc) or NULL (out of memory: o stays). */
static uint8_t *export(struct session *o, uint64_t to, size_t *len)
{
	struct sm *m = o->sm;
	uint8_t *im = NULL;
	size_t im_len = 0;

	if (o->im && im_sess_export(o, &im, &im_len))
		return NULL;
	size_t wbytes = (size_t)(m->w_len - m->w_head) * sizeof(struct sm_wait);
	size_t total = sizeof(struct sm_blob) + o->jid_len + im_len + q_used(m) + wbytes;
	uint8_t *b = mem_alloc(total);
	if (!b) {
		free(im);
		return NULL;
	}
	struct sm_blob h = {
		.h_in = m->h_in, .h_out = m->h_out, .acked = m->acked, .resume_ms = m->resume_ms,
		.jid_len = o->jid_len, .bare_len = o->bare_len, .user_len = o->user_len,
		.flags = (uint16_t)(o->flags & SF_AVAILABLE), .priority = o->priority, .vhost = o->vhost,
		.from = session_handle(o), .im_len = im_len, .q_len = q_used(m), .nwait = m->w_len - m->w_head,
	};
	memcpy(h.token, m->token, sizeof(h.token));
	uint8_t *p = b;
	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	memcpy(p, o->jid, o->jid_len);
	p += o->jid_len;
	if (im_len)
		memcpy(p, im, im_len);
	p += im_len;
	if (q_used(m))
		memcpy(p, m->q + m->q_head, q_used(m));
	p += q_used(m);
	if (wbytes)
		memcpy(p, m->wait + m->w_head, wbytes);
	free(im);
	*len = total;

	/* o forwards from now on (completions addressed to it too); it
	 * leaves without a word (its state lives on elsewhere): no presence,
	 * no leftovers, no IM session end. */
	q_clear(m);
	w_clear(m);
	m->a_owed = false;
	m->state = SM_MOVED;
	m->moved_to = to;
	if (o->im)
		im_sess_moved(o);
	o->imf = 0;
	o->flags &= (uint16_t)~SF_AVAILABLE;
	stat_sub(&o->w->st.sessions, 1);
	log_debug("session %u: resumed by %016llx", o->slot, (unsigned long long)to);
	if (!sm_detached(o)) {
		/* XEP-0198 section 5: the old stream, still open here, is closed. */
		static const char conflict[] = "<stream:error><conflict xmlns='" NS_STREAM_ERR
					       "'/></stream:error></stream:stream>";
		session_write(o, conflict, sizeof(conflict) - 1);
		o->flags |= SF_CLOSED_OUT;
		session_flush(o);
		if (session_dead(o))
			return b;
		drop_connection(o);
	} else {
		session_timer(o, SM_MOVED_GRACE_MS);
	}
	return b;
}

/* ---- the new session's side ------------------------------------------------------------------- */

static void resume_failed(struct session *n, const char *condition)
{
	sm_free(n);
	send_failed(n, condition);
}

static void resumed(struct session *n);

/* Take over the state in b (from export) into n: n is either the
 * resuming session (live: answer <resumed/>, resend, continue) or a new
 * session without a connection. Returns false if n got nothing. */
static bool adopt(struct session *n, const uint8_t *b, size_t blen, bool live)
{
	struct worker *w = n->w;
	struct sm_blob h;

	memcpy(&h, b, sizeof(h));
	const char *jid = (const char *)b + sizeof(h);
	const uint8_t *im = b + sizeof(h) + h.jid_len;
	const char *q = (const char *)im + h.im_len;
	const uint8_t *waits = (const uint8_t *)q + h.q_len;
	if (sizeof(h) + h.jid_len + h.im_len + h.q_len + (size_t)h.nwait * sizeof(struct sm_wait) != blen ||
	    h.jid_len <= h.bare_len) {
		log_err("stream management: malformed session state dropped");
		if (live)
			resume_failed(n, "internal-server-error");
		return false;
	}
	const char *res = jid + h.bare_len + 1;
	size_t rlen = (size_t)h.jid_len - h.bare_len - 1;
	char *full = mem_alloc((size_t)h.jid_len + 1);
	if (!full || route_replace(w->srv->routes, jid, h.bare_len, res, rlen, h.from, session_handle(n)) != ROUTE_OK) {
		/* The resource went to another session meanwhile (or no
		 * memory): what was not acknowledged still reaches the user. */
		mem_free(full);
		post_leftovers(w, n, jid, h.jid_len, q, 0, h.q_len);
		if (live)
			resume_failed(n, "item-not-found");
		return false;
	}
	memcpy(full, jid, h.jid_len);
	full[h.jid_len] = '\0';
	mem_free(n->jid);
	n->jid = full;
	n->jid_len = h.jid_len;
	n->bare_len = h.bare_len;
	n->user_len = h.user_len;
	n->vhost = h.vhost;
	n->priority = h.priority;
	n->flags |= (uint16_t)(SF_AUTHED | SF_BOUND | (h.flags & SF_AVAILABLE));
	stat_add(&w->st.sessions, 1);

	struct sm *m = n->sm;
	if (!m) {
		m = mem_calloc(1, sizeof(*m));
		if (!m) {
			/* Bound with no SM state: it ends like any session. */
			post_leftovers(w, n, jid, h.jid_len, q, 0, h.q_len);
			session_close(n, "out of memory");
			return false;
		}
		n->sm = m;
	}
	m->h_in = h.h_in;
	m->h_out = h.h_out;
	m->acked = h.acked;
	m->r_at = h.h_out;
	m->r_pending = false;
	m->resume = true;
	m->resume_ms = h.resume_ms;
	memcpy(m->token, h.token, sizeof(m->token));
	if (h.q_len) {
		m->q = mem_alloc(h.q_len);
		if (!m->q) {
			post_leftovers(w, n, jid, h.jid_len, q, 0, h.q_len);
		} else {
			memcpy(m->q, q, h.q_len);
			m->q_len = m->q_cap = h.q_len;
		}
	}
	w_clear(m);
	for (uint32_t i = 0; i < h.nwait; i++) {
		struct sm_wait wt;
		memcpy(&wt, waits + i * sizeof(wt), sizeof(wt));
		if (!w_push(m, wt.pos, wt.n))
			log_err("stream management: out of memory: an acknowledgement of %.*s may come early",
				(int)h.jid_len, jid);
	}
	if (h.im_len && im_sess_import(n, im, h.im_len))
		log_err("stream management: IM state of %.*s lost on resumption", (int)h.jid_len, jid);
	m->state = live ? SM_ACTIVE : SM_DETACHED;   /* IM_SF_SM from here */
	if (im_enabled(w->srv)) {
		/* The control plane keeps some state by handle (active privacy
		 * list, XEP-0013): it follows (router/hooks.h). */
		uint64_t old = h.from;
		struct iovec oi = { &old, sizeof(old) };
		im_post_req(w, n, IM_REQ_SESSION_MOVED, n->jid, n->jid_len, &oi, 1);
	}

	if (!live) {
		m->state = SM_DETACHED;
		m->released = true;
		m->deadline = net_now_ms() + m->resume_ms;
		session_timer(n, m->resume_ms);
		return true;
	}
	m->state = SM_ACTIVE;
	n->state = SS_OPEN;
	/* The authentication timeout goes; the idle ping (XEP-0199) comes
	 * back if it is on. */
	session_timer(n, n->im && cfg_of(n)->im.ping_idle_ms ? cfg_of(n)->im.ping_idle_ms : 0);
	/* XEP-0198 section 5: the client's h acknowledges as <a/> would,
	 * then everything still unacknowledged goes again. */
	if (!ack(n, m->resume_h))
		return true;
	if (!w_covers(m, m->h_in)) {
		/* Stanzas of the old stream are still with the control thread:
		 * <resumed h/> waits for them (sm.h), and so does the input. */
		m->resume_owed = true;
		n->state = SS_AUTH_WAIT;
		return true;
	}
	resumed(n);
	return true;
}

/* <resumed/> and the queue again, on a session adopted live. */
static void resumed(struct session *n)
{
	struct sm *m = n->sm;
	const char *res = n->jid + n->bare_len + 1;
	size_t rlen = (size_t)n->jid_len - n->bare_len - 1;
	char buf[SM_ID_MAX + 128], id[SM_ID_MAX];
	size_t il = make_id(m->token, res, rlen, id, sizeof(id));
	int bl = snprintf(buf, sizeof(buf), "<resumed xmlns='" NS_SM "' h='%u' previd='%.*s'/>", sm_h_done(m),
			  (int)il, id);
	session_write(n, buf, (size_t)bl);
	for (size_t off = m->q_head; off < m->q_len;) {
		const char *p;
		uint32_t l;
		off = q_rec(m->q, off, &p, &l);
		struct iovec iov = { (void *)p, l };
		session_writev(n, &iov, 1);
		stat_add(&n->w->st.stanzas_out, 1);
	}
	if (q_used(m) && !session_dead(n))
		send_r(n);
	log_debug("session %u: resumed %.*s (h_in %u, %u resent)", n->slot, (int)n->jid_len, n->jid, m->h_in,
		  m->h_out - m->acked);
}

static void handle_resume(struct session *s, struct xml_view *v)
{
	struct worker *w = s->w;
	char idbuf[SM_ID_MAX + 8], res[ROUTE_RESOURCE_MAX + 1];
	uint8_t token[SM_TOKEN_LEN];
	size_t rlen = 0;
	uint32_t h;

	if ((s->flags & SF_BOUND) || s->sm) {
		send_failed(s, "unexpected-request");
		return;
	}
	uint32_t t = xml_attr_find(v, 0, "previd", NULL);
	if (!parse_h(v, &h) || t == XML_NO_TOK) {
		send_failed(s, "bad-request");
		return;
	}
	if (v->tok[t].b >= sizeof(idbuf)) {
		send_failed(s, "item-not-found");
		return;
	}
	struct xml_slice id = xml_tok_value(v, t, idbuf);
	const struct route_snap *snap = NULL;
	const struct route_res *r = NULL;
	if (parse_id(id.ptr, id.len, token, res, &rlen)) {
		/* Only under this stream's own account: another user's SM-ID
		 * finds nothing. */
		snap = route_lookup(w->srv->routes, s->jid, s->bare_len);
		r = snap ? route_find(snap, res, rlen) : NULL;
	}
	if (!r) {
		send_failed(s, "item-not-found");
		return;
	}
	uint64_t old = r->handle;
	struct sm *m = mem_calloc(1, sizeof(*m));
	if (!m) {
		send_failed(s, "internal-server-error");
		return;
	}
	m->state = SM_RESUMING;
	m->resume_h = h;
	s->sm = m;
	if (handle_worker(old) == w->id) {
		struct session *o = worker_session(w, old);
		size_t len = 0;
		uint8_t *b = can_resume(o, token, s->jid, s->bare_len) ? export(o, session_handle(s), &len) : NULL;
		if (!b) {
			resume_failed(s, "item-not-found");
			return;
		}
		adopt(s, b, len, true);
		mem_free(b);
		return;
	}
	/* The old session lives on another worker: ask it; input waits. */
	struct sm_resume_req q = { .from = session_handle(s), .bare_len = s->bare_len };
	memcpy(q.token, token, sizeof(q.token));
	struct iovec iov[2] = { { &q, sizeof(q) }, { s->jid, s->bare_len } };
	s->state = SS_AUTH_WAIT;
	worker_post(w, handle_worker(old), MSG_SM_RESUME, 0, old, iov, 2);
}

/* ---- records ----------------------------------------------------------------------------------- */

void sm_record(struct worker *w, const struct ring_rec *rec)
{
	if (rec->type == MSG_SM_RESUME) {
		struct sm_resume_req q;
		if (rec->len < sizeof(q))
			return;
		memcpy(&q, rec->data, sizeof(q));
		if (rec->len != sizeof(q) + q.bare_len)
			return;
		struct session *o = worker_session(w, rec->arg);
		struct sm_move mv = { NULL, 0 };
		if (can_resume(o, q.token, (const char *)rec->data + sizeof(q), q.bare_len))
			mv.blob = export(o, q.from, &mv.len);
		struct iovec iov = { &mv, sizeof(mv) };
		worker_post(w, handle_worker(q.from), MSG_SM_MOVE, 0, q.from, &iov, 1);
		return;
	}
	if (rec->type != MSG_SM_MOVE || rec->len != sizeof(struct sm_move))
		return;
	struct sm_move mv;
	memcpy(&mv, rec->data, sizeof(mv));
	struct session *n = worker_session(w, rec->arg);
	bool waiting = n && n->sm && n->sm->state == SM_RESUMING && n->state == SS_AUTH_WAIT &&
		       !(n->flags & SF_CLOSED_OUT);
	if (!mv.blob) {
		if (waiting) {
			n->state = SS_OPEN;
			resume_failed(n, "item-not-found");
			c2s_resume_input(n);
		}
		return;
	}
	if (waiting) {
		adopt(n, mv.blob, mv.len, true);
		if (!session_dead(n) && n->state == SS_OPEN)
			c2s_resume_input(n);
		else if (!session_dead(n) && n->state == SS_AUTH_WAIT && !(n->sm && n->sm->resume_owed)) {
			n->state = SS_OPEN;   /* adoption refused: it may bind */
			c2s_resume_input(n);
		}
	} else {
		/* The resuming stream went away while the state travelled: a
		 * session of its own keeps it, detached, resumable again. */
		struct session *d = session_new_detached(w, n ? &n->peer : NULL);
		if (d && !adopt(d, mv.blob, mv.len, false))
			session_close(d, NULL);
		else if (!d) {
			struct sm_blob h;
			memcpy(&h, mv.blob, sizeof(h));
			post_leftovers(w, NULL, (const char *)mv.blob + sizeof(h), h.jid_len,
				       (const char *)mv.blob + sizeof(h) + h.jid_len + h.im_len, 0, h.q_len);
		}
	}
	mem_free(mv.blob);
}

/* ---- nonzas ---------------------------------------------------------------------------------------- */

void sm_features(struct session *s, struct xmlw *x)
{
	(void)s;
	xmlw_start(x, "sm");
	xmlw_ns(x, NULL, NS_SM);
	xmlw_end(x);
}

void sm_nonza(struct session *s, struct xml_view *v)
{
	struct xml_slice local = xml_tok_local(v, 0);
	struct sm *m = s->sm;
	uint32_t h;

	if (xml_slice_eq(local, "r")) {
		if (m && m->state == SM_ACTIVE) {
			if (w_covers(m, m->h_in)) {
				send_a(s);
			} else {
				/* Answered when what it covers is committed (sm.h). */
				m->a_owed = true;
				m->a_at = m->h_in;
			}
		}
		return;
	}
	if (xml_slice_eq(local, "a")) {
		if (!m || m->state != SM_ACTIVE)
			return;
		if (!parse_h(v, &h)) {
			c2s_stream_error(s, "undefined-condition");
			return;
		}
		if (!ack(s, h))
			return;
		m->r_pending = false;
		if (q_used(m) && m->h_out != m->r_at)
			send_r(s);   /* stanzas went out behind the request just answered */
		return;
	}
	if (xml_slice_eq(local, "enable")) {
		handle_enable(s, v);
		return;
	}
	if (xml_slice_eq(local, "resume")) {
		handle_resume(s, v);
		return;
	}
	c2s_stream_error(s, "unsupported-stanza-type");
}

/* ---- outbound stanzas -------------------------------------------------------------------------------- */

/* Over a limit: the session ends from its timer (not here: this runs in
 * the middle of another session's delivery). */
static void cut(struct session *s, const char *why)
{
	if (s->sm->cut || (s->flags & SF_CLOSED_OUT))
		return;
	log_info("session %.*s: %s", (int)s->jid_len, s->jid ? s->jid : "", why);
	s->sm->cut = true;
	session_timer(s, 1);
}

void sm_stanza(struct session *s, const struct iovec *iov, int iovcnt)
{
	struct sm *m = s->sm;
	struct worker *w = s->w;
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (m->state == SM_MOVED) {
		/* In flight to the old handle: on to the new one. */
		if (handle_worker(m->moved_to) != w->id) {
			worker_post(w, handle_worker(m->moved_to), MSG_STANZA, 0, m->moved_to, iov, iovcnt);
			return;
		}
		struct session *d = worker_session(w, m->moved_to);
		if (d && (d->flags & SF_BOUND) && d != s)
			session_stanza(d, iov, iovcnt);
		else if (s->jid) {
			struct sm tmp = { 0 };
			if (q_push(&tmp, iov, iovcnt, len))
				post_leftovers(w, s, s->jid, s->jid_len, tmp.q, 0, tmp.q_len);
			q_clear(&tmp);
		}
		return;
	}
	if (m->state == SM_RESUMING || session_dead(s)) {
		session_writev(s, iov, iovcnt);
		stat_add(&w->st.stanzas_out, 1);
		return;
	}
	if (!q_push(m, iov, iovcnt, len)) {
		log_err("stream management: out of memory queueing for %.*s", (int)s->jid_len, s->jid);
		cut(s, "out of memory for unacknowledged stanzas");
	} else {
		m->h_out++;
	}
	if (m->h_out - m->acked > cfg_of(s)->im.sm_max_unacked)
		cut(s, "too many unacknowledged stanzas");
	else if (q_used(m) > (size_t)cfg_of(s)->max_output)
		cut(s, "too many bytes unacknowledged");
	if (sm_detached(s))
		return;
	session_writev(s, iov, iovcnt);
	stat_add(&w->st.stanzas_out, 1);
	if (!session_dead(s) && !sm_detached(s) && !(s->flags & SF_CLOSED_OUT) &&
	    (!m->r_pending || m->h_out - m->r_at >= SM_R_EVERY))
		send_r(s);
}

/* ---- endings ------------------------------------------------------------------------------------------ */

bool sm_close(struct session *s)
{
	struct sm *m = s->sm;

	switch (m->state) {
	case SM_MOVED:
		/* The route names the new session; if it still names this one
		 * (the state never arrived), the resource goes with it. */
		if ((s->flags & SF_BOUND) && s->jid_len > s->bare_len)
			route_unbind(s->w->srv->routes, s->jid, s->bare_len, s->jid + s->bare_len + 1,
				     (size_t)s->jid_len - s->bare_len - 1, session_handle(s));
		s->flags &= (uint16_t)~(SF_BOUND | SF_AVAILABLE);
		return false;
	case SM_RESUMING:
		return false;
	case SM_ACTIVE:
		if (m->resume && (s->flags & SF_BOUND) && s->state != SS_CLOSING && !(s->flags & SF_CLOSED_OUT) &&
		    !m->cut && !s->w->stopping) {
			/* XEP-0198 section 7: an unfinished stream; the session
			 * waits to be resumed. */
			drop_connection(s);
			m->state = SM_DETACHED;
			m->r_pending = false;
			m->a_owed = false;
			if (m->resume_owed) {
				m->resume_owed = false;
				s->state = SS_OPEN;
			}
			m->deadline = net_now_ms() + m->resume_ms;
			log_debug("session %.*s detached, resumable for %u ms", (int)s->jid_len, s->jid, m->resume_ms);
			return true;
		}
		/* fall through */
	case SM_DETACHED:
	default:
		session_leftovers(s);
		return false;
	}
}

bool sm_timeout(struct session *s)
{
	struct sm *m = s->sm;

	if (!m)
		return false;
	if (m->cut) {
		m->cut = false;
		if (sm_detached(s) || (s->flags & SF_CLOSED_OUT))
			session_close(s, "unacknowledged stanzas over the limit");
		else
			c2s_stream_error(s, "policy-violation");
		return true;
	}
	if (m->state != SM_DETACHED && m->state != SM_MOVED)
		return false;
	if (!m->released) {
		release(s);
		if (m->state == SM_MOVED) {
			session_timer(s, SM_MOVED_GRACE_MS);
			return true;
		}
	}
	if (m->state == SM_MOVED) {
		session_close(s, NULL);
		return true;
	}
	uint64_t now = net_now_ms();
	if (now >= m->deadline) {
		session_close(s, "not resumed in time");
		return true;
	}
	session_timer(s, (uint32_t)(m->deadline - now));
	return true;
}

void sm_free(struct session *s)
{
	if (!s->sm)
		return;
	q_clear(s->sm);
	w_clear(s->sm);
	mem_free(s->sm);
	s->sm = NULL;
}

/* ---- completions from the control thread ----------------------------------------------------------- */

bool sm_confirm(struct session *s, uint32_t *pos)
{
	struct sm *m = s->sm;

	if (!m || m->state != SM_ACTIVE)
		return false;
	if (m->w_len > m->w_head && m->wait[m->w_len - 1].pos == m->h_in)
		m->wait[m->w_len - 1].n++;
	else if (!w_push(m, m->h_in, 1))
		return false;   /* out of memory: counted at once, as before */
	*pos = m->h_in;
	return true;
}

void sm_done(struct session *s, uint32_t pos)
{
	struct sm *m = s->sm;
	struct worker *w = s->w;

	if (!m)
		return;
	if (m->state == SM_MOVED) {
		/* Posted before the move: the session lives on elsewhere. */
		if (handle_worker(m->moved_to) != w->id) {
			struct iovec iov = { &pos, sizeof(pos) };
			worker_post(w, handle_worker(m->moved_to), MSG_IM_DONE, 0, m->moved_to, &iov, 1);
		} else {
			struct session *d = worker_session(w, m->moved_to);
			if (d && d != s)
				sm_done(d, pos);
		}
		return;
	}
	for (uint32_t i = m->w_head; i < m->w_len; i++) {
		if (m->wait[i].pos != pos)
			continue;
		if (--m->wait[i].n == 0) {
			if (i == m->w_head) {
				m->w_head++;
			} else {
				memmove(m->wait + i, m->wait + i + 1, (m->w_len - i - 1) * sizeof(*m->wait));
				m->w_len--;
			}
		}
		break;
	}
	if (m->w_head == m->w_len)
		m->w_head = m->w_len = 0;
	if (m->state != SM_ACTIVE || session_dead(s) || sm_detached(s))
		return;
	if (m->resume_owed && w_covers(m, m->h_in)) {
		m->resume_owed = false;
		s->state = SS_OPEN;
		resumed(s);
		if (!session_dead(s) && s->state == SS_OPEN)
			c2s_resume_input(s);
		return;
	}
	if (m->a_owed && w_covers(m, m->a_at)) {
		m->a_owed = false;
		send_a(s);
	}
}
