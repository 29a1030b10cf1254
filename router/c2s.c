/* Client streams (RFC 6120): the stream header, features, STARTTLS, SASL,
 * resource binding, the legacy session, stream errors and the closing
 * handshake. Bytes in, bytes out: the worker feeds plaintext to c2s_input
 * and sends what session_write queued.
 *
 * The order of a login:
 *   header → features (starttls required) → <starttls/> → <proceed/> → TLS
 *   header → features (mechanisms)        → <auth/> ... <success/>
 *   header → features (bind, session)     → bind iq → routed stanzas
 * Direct TLS (XEP-0368) starts at the second line.
 */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include "net/net.h"
#include "parser/jid.h"
#include "parser/xml.h"
#include "parser/xmlw.h"
#include "router/im.h"
#include "router/ring.h"
#include "router/route.h"
#include "router/router.h"
#include "router/sm.h"
#include "tls/tls.h"
#include "util/b64.h"
#include "util/log.h"
#include "util/mem.h"

#define NS_CLIENT      "jabber:client"
#define NS_STREAMS     "http://etherx.jabber.org/streams"
#define NS_STREAM_ERR  "urn:ietf:params:xml:ns:xmpp-streams"
#define NS_TLS         "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL        "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND        "urn:ietf:params:xml:ns:xmpp-bind"
#define NS_SESSION     "urn:ietf:params:xml:ns:xmpp-session"
#define NS_STANZA_ERR  "urn:ietf:params:xml:ns:xmpp-stanzas"
#define NS_CSI         "urn:xmpp:csi:0"
#define NS_REGISTER    "jabber:iq:register"
#define CAPS_NODE      "https://stanzad.org/caps"

#define MAX_RESOURCES  256u   /* bound sessions per account */


static inline const struct server_config *cfg_of(const struct session *s)
{
	return &s->w->srv->cfg;
}

static const char *vhost_domain(const struct session *s)
{
	return cfg_of(s)->vhost[s->vhost].domain;
}

static void random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[32];

	if (nbytes > sizeof(b))
		nbytes = sizeof(b);
	if (getrandom(b, nbytes, 0) != (ssize_t)nbytes) {
		/* getrandom never fails once the pool is ready; never block. */
		for (size_t i = 0; i < nbytes; i++)
			b[i] = (uint8_t)(net_now_ms() >> (i % 8));
	}
	for (size_t i = 0; i < nbytes; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * nbytes] = '\0';
}

/* ---- output -------------------------------------------------------------- */

static void send_xmlw(struct session *s, struct xmlw *x, bool open)
{
	size_t len;
	enum xmlw_status st = open ? xmlw_finish_open(x, &len) : xmlw_finish(x, &len);

	if (st != XMLW_OK) {
		log_err("building a reply failed: %s", xmlw_strerror(st));
		return;
	}
	session_write(s, x->buf, len);
}

/* A stanza (counted by XEP-0198): through session_stanza. */
static void send_xmlw_stanza(struct session *s, struct xmlw *x)
{
	size_t len;
	enum xmlw_status st = xmlw_finish(x, &len);

	if (st != XMLW_OK) {
		log_err("building a reply failed: %s", xmlw_strerror(st));
		return;
	}
	struct iovec iov = { x->buf, len };
	session_stanza(s, &iov, 1);
}

static void send_str(struct session *s, const char *str)
{
	session_write(s, str, strlen(str));
}

static void send_header(struct session *s, bool with_from)
{
	struct xmlw x;
	char *buf = s->w->scratch;

	xmlw_init(&x, buf, s->w->scratch_cap);
	xmlw_raw(&x, "<?xml version='1.0'?>", 21);
	xmlw_start(&x, "stream:stream");
	xmlw_ns(&x, NULL, NS_CLIENT);
	xmlw_ns(&x, "stream", NS_STREAMS);
	xmlw_attr_str(&x, "id", s->stream_id);
	if (with_from)
		xmlw_attr_str(&x, "from", vhost_domain(s));
	xmlw_attr_str(&x, "version", "1.0");
	xmlw_attr(&x, "xml:lang", s->lang, s->lang_len);
	send_xmlw(s, &x, true);
	s->flags |= SF_HDR_SENT;
}

void c2s_stream_error(struct session *s, const char *condition)
{
	char buf[256];

	if (session_dead(s) || (s->flags & SF_CLOSED_OUT))
		return;
	if (!(s->flags & SF_HDR_SENT)) {
		/* RFC 6120 4.9.1.2: an error before the stream is open still
		 * opens ours first. */
		if (!s->stream_id[0])
			random_hex(s->stream_id, 8);
		if (!s->lang_len) {
			memcpy(s->lang, "en", 2);
			s->lang_len = 2;
		}
		send_header(s, s->vhost < cfg_of(s)->nvhost);
	}
	snprintf(buf, sizeof(buf), "<stream:error><%s xmlns='" NS_STREAM_ERR "'/></stream:error></stream:stream>",
		 condition);
	send_str(s, buf);
	s->flags |= SF_CLOSED_OUT;
	stat_add(&s->w->st.stream_errors, 1);
	{
		char peer[NET_ADDR_STRLEN];
		log_debug("stream error %s to %s", condition, net_addr_format(&s->peer, peer, sizeof(peer)));
	}
	session_close_after_flush(s);
}

void c2s_kick(struct session *s, const char *condition)
{
	c2s_stream_error(s, condition);
}

/* ---- the stream header --------------------------------------------------- */

/* Channel-binding data this connection can give (for -PLUS), computed
 * only while authenticating. */
struct cbdata {
	uint8_t exp[TLS_CB_MAX], ep[TLS_CB_MAX], uq[TLS_CB_MAX];
	size_t exp_len, ep_len, uq_len;
};

static unsigned channel_bindings(struct session *s, struct auth_env *env, struct cbdata *cb)
{
	unsigned avail = 0;

	cb->exp_len = cb->ep_len = cb->uq_len = 0;
	if (s->tls && tls_conn_established(s->tls)) {
		if (tls_conn_channel_binding(s->tls, TLS_CB_EXPORTER, cb->exp, TLS_CB_MAX, &cb->exp_len) == 0)
			avail |= AUTH_CB_TLS_EXPORTER;
		if (tls_conn_channel_binding(s->tls, TLS_CB_SERVER_END_POINT, cb->ep, TLS_CB_MAX, &cb->ep_len) == 0)
			avail |= AUTH_CB_TLS_SERVER_END_POINT;
		if (tls_conn_channel_binding(s->tls, TLS_CB_UNIQUE, cb->uq, TLS_CB_MAX, &cb->uq_len) == 0)
			avail |= AUTH_CB_TLS_UNIQUE;
	}
	if (env) {
		env->cb_avail = avail;
		env->cb_exporter = cb->exp;
		env->cb_exporter_len = cb->exp_len;
		env->cb_endpoint = cb->ep;
		env->cb_endpoint_len = cb->ep_len;
		env->cb_unique = cb->uq;
		env->cb_unique_len = cb->uq_len;
	}
	return avail;
}

/* What the IM layer offers once authenticated: roster versioning
 * (RFC 6121 2.6), pre-approval (3.4), XEP-0352, and XEP-0115 caps of the
 * server. */
static void im_features(struct session *s, struct xmlw *x)
{
	const struct router_im_hooks *h = &s->w->srv->hooks->im;

	if (!h->serve)
		return;
	if (h->caps_ver[0]) {
		xmlw_start(x, "c");
		xmlw_ns(x, NULL, "http://jabber.org/protocol/caps");
		xmlw_attr_str(x, "hash", "sha-1");
		xmlw_attr_str(x, "node", CAPS_NODE);
		xmlw_attr_str(x, "ver", h->caps_ver);
		xmlw_end(x);
	}
	xmlw_start(x, "ver");
	xmlw_ns(x, NULL, "urn:xmpp:features:rosterver");
	xmlw_end(x);
	xmlw_start(x, "sub");
	xmlw_ns(x, NULL, "urn:xmpp:features:pre-approval");
	xmlw_end(x);
	xmlw_start(x, "csi");
	xmlw_ns(x, NULL, NS_CSI);
	xmlw_end(x);
}

/* XEP-0077 in-band registration before authentication: over TLS, or in
 * plaintext where the operator allowed authentication in plaintext. */
static bool register_offered(const struct session *s)
{
	const struct router_im_hooks *h = &s->w->srv->hooks->im;

	return h->serve && h->register_enabled && ((s->flags & SF_TLS) || cfg_of(s)->allow_plaintext_auth);
}

static void send_features(struct session *s)
{
	struct xmlw x;
	bool have_tls = atomic_load_explicit(&s->w->srv->tls, memory_order_acquire) != NULL;

	xmlw_init(&x, s->w->scratch, s->w->scratch_cap);
	xmlw_start(&x, "stream:features");
	if (s->flags & SF_AUTHED) {
		xmlw_start(&x, "bind");
		xmlw_ns(&x, NULL, NS_BIND);
		xmlw_end(&x);
		/* RFC 3921's session establishment, marked optional so that
		 * clients know they may skip it. */
		xmlw_start(&x, "session");
		xmlw_ns(&x, NULL, NS_SESSION);
		xmlw_start(&x, "optional");
		xmlw_end(&x);
		xmlw_end(&x);
		sm_features(s, &x);   /* XEP-0198 */
		im_features(s, &x);
	} else {
		bool plain_ok = cfg_of(s)->allow_plaintext_auth;
		if (!(s->flags & SF_TLS) && have_tls) {
			/* TLS is required before authentication (no mechanisms
			 * are offered until it is up) unless the operator allowed
			 * SCRAM in plaintext. */
			xmlw_start(&x, "starttls");
			xmlw_ns(&x, NULL, NS_TLS);
			if (!plain_ok) {
				xmlw_start(&x, "required");
				xmlw_end(&x);
			}
			xmlw_end(&x);
		}
		if ((s->flags & SF_TLS) || plain_ok) {
			struct cbdata cbd;
			unsigned cb = channel_bindings(s, NULL, &cbd);
			const char *names[16];
			size_t n = s->w->srv->hooks->auth.mechanisms((s->flags & SF_TLS) != 0, cb, names, 16);

			xmlw_start(&x, "mechanisms");
			xmlw_ns(&x, NULL, NS_SASL);
			for (size_t i = 0; i < n && i < 16; i++) {
				xmlw_start(&x, "mechanism");
				xmlw_text_str(&x, names[i]);
				xmlw_end(&x);
			}
			xmlw_end(&x);
		}
		if (register_offered(s)) {
			xmlw_start(&x, "register");
			xmlw_ns(&x, NULL, "http://jabber.org/features/iq-register");
			xmlw_end(&x);
		}
	}
	xmlw_end(&x);
	send_xmlw(s, &x, false);
}

static int find_vhost(const struct server *srv, const char *d, size_t len)
{
	for (unsigned i = 0; i < srv->cfg.nvhost; i++)
		if (srv->domain_len[i] == len && !memcmp(srv->cfg.vhost[i].domain, d, len))
			return (int)i;
	return -1;
}

/* The text of attribute t (decoded) into the worker's scratch tail. */
static struct xml_slice attr_value(struct session *s, struct xml_view *v, uint32_t t, char *dst)
{
	return xml_tok_value(v, t, dst);
}

static void handle_header(struct session *s, const char *buf, size_t len)
{
	struct xml_view *v = &s->w->view;
	char tmp[1100];
	struct xml_slice val;
	bool ns_ok = false;

	if (!s->stream_id[0] || !(s->flags & SF_HDR_SENT))
		random_hex(s->stream_id, 8);
	memcpy(s->lang, "en", 2);
	s->lang_len = 2;
	if (xml_view_header(v, &s->nsctx, buf, len)) {
		c2s_stream_error(s, xml_error_condition(v->err));
		return;
	}
	/* xml:lang, echoed if it looks like a language tag. */
	if (v->info.lang != XML_NO_TOK && v->tok[v->info.lang].b < sizeof(s->lang)) {
		val = attr_value(s, v, v->info.lang, tmp);
		bool ok = val.len > 0;
		for (uint32_t i = 0; i < val.len; i++) {
			char c = val.ptr[i];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
				ok = false;
		}
		if (ok) {
			memcpy(s->lang, val.ptr, val.len);
			s->lang_len = (uint8_t)val.len;
		}
	}
	/* The content namespace must be jabber:client (RFC 6120 4.8.2). */
	for (unsigned i = 0; i < s->nsctx.n; i++) {
		if (s->nsctx.d[i].prefix_len == 0 && s->nsctx.d[i].uri_len == sizeof(NS_CLIENT) - 1 &&
		    !memcmp(s->nsctx.buf + s->nsctx.d[i].uri_off, NS_CLIENT, sizeof(NS_CLIENT) - 1))
			ns_ok = true;
	}
	/* 'to' names the virtual host (RFC 6120 4.7.2). */
	uint32_t to = v->info.to;
	int vh = -1;
	if (to != XML_NO_TOK && v->tok[to].b <= CONFIG_DOMAIN_MAX) {
		char dom[CONFIG_DOMAIN_MAX + 1];
		size_t dlen;
		val = attr_value(s, v, to, tmp);
		if (jid_prep(JID_DOMAIN, val.ptr, val.len, dom, sizeof(dom), &dlen, 0) == JID_OK)
			vh = find_vhost(s->w->srv, dom, dlen);
	}
	if ((s->flags & SF_AUTHED) && vh != s->vhost)
		vh = -1;   /* a restart may not change the domain */
	if (vh >= 0)
		s->vhost = (uint8_t)vh;
	else
		s->vhost = 0xff;
	/* version: absent means pre-1.0 (RFC 6120 4.7.5), which we do not
	 * speak; a higher major version gets our 1.0 answer. */
	uint32_t ver = xml_attr_find(v, 0, "version", NULL);
	int major = -1;
	if (ver != XML_NO_TOK) {
		val = attr_value(s, v, ver, tmp);
		major = 0;
		uint32_t i = 0;
		for (; i < val.len && val.ptr[i] >= '0' && val.ptr[i] <= '9' && major < 1000; i++)
			major = major * 10 + (val.ptr[i] - '0');
		if (i == 0 || i >= val.len || val.ptr[i] != '.')
			major = -1;
	}
	if (!ns_ok) {
		c2s_stream_error(s, "invalid-namespace");
		return;
	}
	if (vh < 0) {
		c2s_stream_error(s, "host-unknown");
		return;
	}
	if (major < 1) {
		c2s_stream_error(s, "unsupported-version");
		return;
	}
	send_header(s, true);
	send_features(s);
	s->state = SS_OPEN;
	if (!(s->flags & SF_BOUND))
		session_timer(s, cfg_of(s)->auth_timeout_ms);
}

/* ---- STARTTLS ------------------------------------------------------------ */

static void handle_starttls(struct session *s)
{
	if (!atomic_load_explicit(&s->w->srv->tls, memory_order_acquire)) {
		send_str(s, "<failure xmlns='" NS_TLS "'/></stream:stream>");
		s->flags |= SF_CLOSED_OUT;
		session_close_after_flush(s);
		return;
	}
	send_str(s, "<proceed xmlns='" NS_TLS "'/>");
	/* <proceed/> must leave in plaintext before the first TLS byte. */
	session_flush(s);
	if (session_dead(s))
		return;
	if (session_start_tls(s)) {
		session_close(s, "TLS setup failed");
		return;
	}
	xml_framer_reset(&s->framer);
	s->flags &= (uint16_t)~SF_HDR_SENT;
	session_timer(s, cfg_of(s)->header_timeout_ms);
}

void c2s_tls_established(struct session *s)
{
	s->flags |= SF_TLS;
	s->state = SS_HEADER;
	xml_framer_reset(&s->framer);
	s->flags &= (uint16_t)~SF_HDR_SENT;
}

/* ---- SASL ------------------------------------------------------------------ */

static void sasl_failure(struct session *s, const char *condition)
{
	char buf[160];

	snprintf(buf, sizeof(buf), "<failure xmlns='" NS_SASL "'><%s/></failure>", condition);
	send_str(s, buf);
}

static void auth_end(struct session *s)
{
	if (s->auth_state) {
		s->w->srv->hooks->auth.end(s->auth_state);
		mem_free(s->auth_state);
		s->auth_state = NULL;
	}
}

static void auth_failed(struct session *s, const char *condition)
{
	stat_add(&s->w->st.auth_failures, 1);
	sasl_failure(s, condition);
	auth_end(s);
	s->state = SS_OPEN;
	/* RFC 6120 6.4.5: a few retries, then the stream closes. */
	if (++s->auth_failures >= cfg_of(s)->max_auth_failures)
		c2s_stream_error(s, "policy-violation");
}

static void auth_result(struct session *s, enum auth_step step, struct auth_out *out)
{
	char *b64 = s->w->scratch;   /* out lives in the upper half */
	size_t cap = s->w->scratch_cap / 2;

	switch (step) {
	case AUTH_CHALLENGE:
	case AUTH_SUCCESS: {
		const char *el = step == AUTH_CHALLENGE ? "challenge" : "success";
		size_t n = 0;
		if (out->len)
			n = b64_encode(out->data, out->len, b64, cap);
		char head[96];
		snprintf(head, sizeof(head), "<%s xmlns='" NS_SASL "'>", el);
		send_str(s, head);
		if (n)
			session_write(s, b64, n);
		snprintf(head, sizeof(head), "</%s>", el);
		send_str(s, head);
		if (step == AUTH_CHALLENGE) {
			s->state = SS_OPEN;
			return;
		}
		auth_end(s);
		/* The account's bare JID, until a resource is bound. */
		size_t dl = strlen(vhost_domain(s));
		char *j = mem_alloc((size_t)out->user_len + 1 + dl + 1);
		if (!j) {
			session_close(s, "out of memory");
			return;
		}
		memcpy(j, out->user, out->user_len);
		j[out->user_len] = '@';
		memcpy(j + out->user_len + 1, vhost_domain(s), dl + 1);
		mem_free(s->jid);
		s->jid = j;
		s->user_len = out->user_len;
		s->bare_len = s->jid_len = (uint16_t)(out->user_len + 1 + dl);
		s->flags |= SF_AUTHED;
		s->auth_failures = 0;
		/* RFC 6120 6.4.6: the stream restarts. */
		xml_framer_reset(&s->framer);
		s->flags &= (uint16_t)~SF_HDR_SENT;
		s->state = SS_HEADER;
		return;
	}
	case AUTH_FAILURE:
		if (out->delay_ms) {
			/* Throttled: the answer waits; nothing else is read
			 * meanwhile (state AUTH_WAIT), the timer sends it. */
			s->state = SS_AUTH_WAIT;
			s->pending_failure = out->condition;
			session_timer(s, out->delay_ms);
			return;
		}
		auth_failed(s, out->condition ? out->condition : "not-authorized");
		return;
	case AUTH_PENDING: {
		struct iovec iov[2] = {
			{ &s->peer, sizeof(s->peer) },
			{ out->req, out->req_len },
		};
		s->state = SS_AUTH_WAIT;
		worker_post(s->w, s->w->srv->nworkers, MSG_AUTH_REQ, 0, session_handle(s), iov, 2);
		explicit_bzero(out->req, out->req_len);   /* PLAIN: it held the password */
		return;
	}
	}
}

static void auth_env_fill(struct session *s, struct auth_env *env, struct cbdata *cb)
{
	memset(env, 0, sizeof(*env));
	env->tls = (s->flags & SF_TLS) != 0;
	env->domain = vhost_domain(s);
	env->peer = (const uint8_t *)&s->peer;
	env->peer_len = sizeof(s->peer);
	channel_bindings(s, env, cb);
}

/* The decoded text of a SASL element. *has is false for an empty element. */
static int sasl_payload(struct session *s, struct xml_view *v, uint8_t *out, size_t cap, size_t *len, bool *has)
{
	char *tmp = s->w->scratch;
	size_t tl = 0;

	*has = false;
	for (uint32_t t = 1 + v->tok[0].nattr; t < v->ntok; t++) {
		if (v->tok[t].type == XML_TOK_TEXT) {
			struct xml_slice sl = xml_tok_value(v, t, tmp + tl);
			if (tl + sl.len > s->w->scratch_cap / 2)
				return -1;
			if (sl.ptr != tmp + tl)
				memmove(tmp + tl, sl.ptr, sl.len);
			tl += sl.len;
		} else if (v->tok[t].type == XML_TOK_ELEM) {
			return -1;
		}
	}
	*has = tl > 0;
	int r = b64_decode(tmp, tl, out, cap, len) ? -1 : 0;
	explicit_bzero(tmp, tl);
	return r;
}

static void handle_sasl(struct session *s, struct xml_view *v, struct xml_slice local)
{
	const struct router_auth_hooks *h = &s->w->srv->hooks->auth;
	struct cbdata cbd;
	struct auth_env env;
	struct auth_out *out = (struct auth_out *)(s->w->scratch + s->w->scratch_cap / 2);
	uint8_t data[4096];
	size_t dlen = 0;
	bool has;

	if (xml_slice_eq(local, "abort")) {
		if (s->auth_state) {
			auth_end(s);
			sasl_failure(s, "aborted");
		} else {
			sasl_failure(s, "aborted");
		}
		return;
	}
	bool is_auth = xml_slice_eq(local, "auth");
	if (!is_auth && !xml_slice_eq(local, "response")) {
		auth_failed(s, "malformed-request");
		return;
	}
	if (sasl_payload(s, v, data, sizeof(data), &dlen, &has)) {
		auth_failed(s, "incorrect-encoding");
		return;
	}
	auth_env_fill(s, &env, &cbd);
	memset(out, 0, sizeof(*out));
	enum auth_step step;
	if (is_auth) {
		uint32_t m = xml_attr_find(v, 0, "mechanism", NULL);
		char mech[64];
		if (m == XML_NO_TOK || v->tok[m].b >= sizeof(mech)) {
			auth_failed(s, "invalid-mechanism");
			return;
		}
		struct xml_slice mv = xml_tok_value(v, m, mech);
		if (mv.ptr != mech)
			memcpy(mech, mv.ptr, mv.len);
		mech[mv.len] = '\0';
		auth_end(s);
		s->auth_state = mem_calloc(1, AUTH_STATE_MAX);
		if (!s->auth_state) {
			auth_failed(s, "temporary-auth-failure");
			return;
		}
		step = h->start(s->auth_state, mech, data, dlen, has, &env, out);
	} else {
		if (!s->auth_state) {
			auth_failed(s, "malformed-request");
			return;
		}
		step = h->response(s->auth_state, data, dlen, &env, out);
	}
	explicit_bzero(data, dlen);   /* PLAIN's password, SCRAM's proof */
	auth_result(s, step, out);
}

void c2s_auth_answer(struct session *s, const uint8_t *ans, size_t len)
{
	const struct router_auth_hooks *h = &s->w->srv->hooks->auth;
	struct cbdata cbd;
	struct auth_env env;
	struct auth_out *out = (struct auth_out *)(s->w->scratch + s->w->scratch_cap / 2);

	if (s->state != SS_AUTH_WAIT || !s->auth_state || s->pending_failure)
		return;
	s->state = SS_OPEN;
	auth_env_fill(s, &env, &cbd);
	memset(out, 0, sizeof(*out));
	auth_result(s, h->resume(s->auth_state, ans, len, &env, out), out);
	c2s_resume_input(s);
}

/* ---- binding --------------------------------------------------------------- */

static void iq_result_bind(struct session *s, struct xml_view *v, const char *full, size_t len)
{
	struct xmlw x;
	size_t n;

	reply_begin(&x, s->w->scratch, s->w->scratch_cap, v, "iq", "result", NULL, 0, NULL, 0);
	xmlw_start(&x, "bind");
	xmlw_ns(&x, NULL, NS_BIND);
	xmlw_start(&x, "jid");
	xmlw_text(&x, full, len);
	xmlw_end(&x);
	xmlw_end(&x);
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) != XMLW_OK)
		return;
	/* With the IM layer the result waits for the session's state
	 * (IM_EV_STATE, router/im.c), and so does the client's input. */
	if (im_bind(s, x.buf, n))
		return;
	struct iovec iov = { x.buf, n };
	session_stanza(s, &iov, 1);
}

void c2s_bind_done(struct session *s)
{
	if (s->state == SS_IM_WAIT)
		s->state = SS_OPEN;
	if (s->im && cfg_of(s)->im.ping_idle_ms)
		session_timer(s, cfg_of(s)->im.ping_idle_ms);   /* XEP-0199 idle pings */
	c2s_resume_input(s);
}

/* An iq error for the client's own bind request (RFC 6120 7.6.2). */
static void c2s_iq_error(struct session *s, struct xml_view *v, const char *type, const char *condition)
{
	struct xmlw x;

	reply_begin(&x, s->w->scratch, s->w->scratch_cap, v, "iq", "error", NULL, 0, NULL, 0);
	xmlw_start(&x, "error");
	xmlw_attr_str(&x, "type", type);
	xmlw_start(&x, condition);
	xmlw_ns(&x, NULL, NS_STANZA_ERR);
	xmlw_end(&x);
	xmlw_end(&x);
	xmlw_end(&x);
	send_xmlw_stanza(s, &x);   /* also after bind (a second bind): counted */
}

static void handle_bind(struct session *s, struct xml_view *v, uint32_t bind)
{
	struct route_table *rt = s->w->srv->routes;
	char res[ROUTE_RESOURCE_MAX + 1];
	size_t rlen = 0;
	char tmp[4096];
	uint64_t displaced = 0;
	enum route_status st;

	/* <resource/>: the client's wish, resourceprepped; none: ours. */
	for (uint32_t c = xml_first_child(v, bind); c != XML_NO_TOK; c = xml_next_sibling(v, c)) {
		if (!xml_slice_eq(xml_tok_local(v, c), "resource") || !xml_slice_eq(xml_tok_ns(v, c), NS_BIND))
			continue;
		uint32_t t = c + 1 + v->tok[c].nattr;
		if (t < v->ntok && v->tok[t].type == XML_TOK_TEXT && v->tok[t].len < sizeof(tmp)) {
			struct xml_slice val = xml_tok_value(v, t, tmp);
			if (jid_prep(JID_RESOURCE, val.ptr, val.len, res, sizeof(res), &rlen, 0) != JID_OK) {
				c2s_iq_error(s, v, "modify", "bad-request");
				return;
			}
		}
	}
	for (int attempt = 0;; attempt++) {
		if (rlen == 0) {
			random_hex(res, 8);
			rlen = 16;
		}
		st = route_bind(rt, s->jid, s->bare_len, res, rlen, session_handle(s),
				(enum conflict_policy)cfg_of(s)->conflict, MAX_RESOURCES, &displaced);
		if (st == ROUTE_CONFLICT && cfg_of(s)->conflict == CONFLICT_RENAME_NEW && attempt < 4) {
			rlen = 0;
			continue;
		}
		break;
	}
	switch (st) {
	case ROUTE_OK:
		break;
	case ROUTE_CONFLICT:
		c2s_iq_error(s, v, "cancel", "conflict");
		return;
	case ROUTE_LIMIT:
		c2s_iq_error(s, v, "wait", "resource-constraint");
		return;
	default:
		c2s_iq_error(s, v, "wait", "internal-server-error");
		return;
	}
	if (displaced && displaced != session_handle(s)) {
		/* RFC 6120 7.7.2.2: the old session gets <conflict/>. */
		unsigned wk = handle_worker(displaced);
		struct session *old = wk == s->w->id ? worker_session(s->w, displaced) : NULL;
		if (old) {
			old->flags &= (uint16_t)~SF_BOUND;   /* its binding is gone already */
			stat_sub(&s->w->st.sessions, 1);
			c2s_kick(old, "conflict");
		} else if (wk != s->w->id) {
			struct iovec iov = { (void *)"conflict", 8 };
			worker_post(s->w, wk, MSG_KICK, 1, displaced, &iov, 1);
		}
	}
	char *full = mem_realloc(s->jid, (size_t)s->bare_len + 1 + rlen + 1);
	if (!full) {
		route_unbind(rt, s->jid, s->bare_len, res, rlen, session_handle(s));
		c2s_iq_error(s, v, "wait", "internal-server-error");
		return;
	}
	full[s->bare_len] = '/';
	memcpy(full + s->bare_len + 1, res, rlen);
	full[s->bare_len + 1 + rlen] = '\0';
	s->jid = full;
	s->jid_len = (uint16_t)(s->bare_len + 1 + rlen);
	s->flags |= SF_BOUND;
	stat_add(&s->w->st.sessions, 1);
	session_timer(s, 0);
	iq_result_bind(s, v, s->jid, s->jid_len);
}

void c2s_unbind(struct session *s)
{
	if (!(s->flags & SF_BOUND))
		return;
	s->flags &= (uint16_t)~SF_BOUND;
	route_unbind(s->w->srv->routes, s->jid, s->bare_len, s->jid + s->bare_len + 1,
		     (size_t)s->jid_len - s->bare_len - 1, session_handle(s));
	stat_sub(&s->w->st.sessions, 1);
	deliver_gone(s);
	im_session_end(s);
}

/* ---- stanzas ---------------------------------------------------------------- */

static bool is_iq_set_with(struct xml_view *v, const char *child_local, const char *child_ns, uint32_t *child)
{
	char tb[8];

	if (!xml_slice_eq(xml_tok_local(v, 0), "iq") || v->info.type == XML_NO_TOK || v->tok[v->info.type].b > 6)
		return false;
	if (!xml_slice_eq(xml_tok_value(v, v->info.type, tb), "set"))
		return false;
	uint32_t c = v->info.child;
	if (c == XML_NO_TOK || !xml_slice_eq(xml_tok_local(v, c), child_local) ||
	    !xml_slice_eq(xml_tok_ns(v, c), child_ns))
		return false;
	*child = c;
	return true;
}

/* An iq get/set for jabber:iq:register before authentication, where
 * registration is offered: to the control plane (IM_REQ_PREAUTH_IQ), which
 * answers on this stream. Anything else is for the caller (RFC 6120: only
 * STARTTLS and SASL before authentication). */
static bool preauth_iq(struct session *s, struct xml_view *v, const char *buf, size_t len)
{
	char tb[8];

	if (!register_offered(s) || !xml_slice_eq(xml_tok_local(v, 0), "iq") ||
	    !xml_slice_eq(xml_tok_ns(v, 0), NS_CLIENT) || v->info.type == XML_NO_TOK || v->tok[v->info.type].b > 3)
		return false;
	struct xml_slice t = xml_tok_value(v, v->info.type, tb);
	uint32_t c = v->info.child;
	if (!(xml_slice_eq(t, "get") || xml_slice_eq(t, "set")) || c == XML_NO_TOK ||
	    !xml_slice_eq(xml_tok_local(v, c), "query") || !xml_slice_eq(xml_tok_ns(v, c), NS_REGISTER))
		return false;
	struct iovec iov = { (void *)buf, len };
	if (!im_post_req(s->w, s, IM_REQ_PREAUTH_IQ, "", 0, &iov, 1))
		c2s_stream_error(s, "policy-violation");
	return true;
}

static void handle_stanza(struct session *s, const char *buf, size_t len)
{
	struct xml_view *v = &s->w->view;
	uint32_t child;

	if (xml_view_build(v, &s->nsctx, buf, len)) {
		c2s_stream_error(s, xml_error_condition(v->err));
		return;
	}
	stat_add(&s->w->st.stanzas_in, 1);
	struct xml_slice local = xml_tok_local(v, 0), ns = xml_tok_ns(v, 0);

	if (!(s->flags & SF_AUTHED) && preauth_iq(s, v, buf, len))
		return;   /* XEP-0077 registration, answered by the control plane */
	if (!(s->flags & (SF_TLS | SF_AUTHED))) {
		if (xml_slice_eq(ns, NS_TLS) && xml_slice_eq(local, "starttls"))
			handle_starttls(s);
		else if (xml_slice_eq(ns, NS_SASL) && cfg_of(s)->allow_plaintext_auth)
			handle_sasl(s, v, local);   /* the hooks refuse PLAIN without TLS */
		else if (xml_slice_eq(ns, NS_SASL) && xml_slice_eq(local, "auth"))
			sasl_failure(s, "encryption-required");
		else
			c2s_stream_error(s, "not-authorized");
		return;
	}
	if (!(s->flags & SF_AUTHED)) {
		if (xml_slice_eq(ns, NS_SASL))
			handle_sasl(s, v, local);
		else
			c2s_stream_error(s, "not-authorized");   /* RFC 6120 6.4.? : nothing before auth */
		return;
	}
	if (xml_slice_eq(ns, NS_SM)) {
		sm_nonza(s, v);   /* XEP-0198: enable, resume, acks */
		return;
	}
	if (!(s->flags & SF_BOUND)) {
		if (is_iq_set_with(v, "bind", NS_BIND, &child))
			handle_bind(s, v, child);
		else
			c2s_stream_error(s, "not-authorized");
		return;
	}
	if (s->im && xml_slice_eq(ns, NS_CSI) && (xml_slice_eq(local, "active") || xml_slice_eq(local, "inactive"))) {
		im_csi(s, xml_slice_eq(local, "active"));   /* XEP-0352: a nonza, no answer */
		return;
	}
	if (!xml_slice_eq(ns, NS_CLIENT) ||
	    !(xml_slice_eq(local, "message") || xml_slice_eq(local, "presence") || xml_slice_eq(local, "iq"))) {
		c2s_stream_error(s, "unsupported-stanza-type");
		return;
	}
	sm_handled(s);   /* XEP-0198: every stanza from here on is handled */
	if (is_iq_set_with(v, "session", NS_SESSION, &child) && v->info.to == XML_NO_TOK) {
		/* RFC 3921 session establishment: nothing left to do. */
		struct xmlw x;
		reply_begin(&x, s->w->scratch, s->w->scratch_cap, v, "iq", "result", NULL, 0, NULL, 0);
		xmlw_end(&x);
		send_xmlw_stanza(s, &x);
		return;
	}
	if (is_iq_set_with(v, "bind", NS_BIND, &child)) {
		c2s_iq_error(s, v, "cancel", "not-allowed");   /* one resource per stream */
		return;
	}
	deliver_from_client(s, v);
}

static void handle_close(struct session *s, const char *buf, size_t len)
{
	if (xml_check_close(&s->nsctx, buf, len) != XML_ERR_NONE) {
		c2s_stream_error(s, "not-well-formed");
		return;
	}
	/* RFC 6120 4.4: answer with our own close, then the TCP close. */
	if ((s->flags & SF_HDR_SENT) && !(s->flags & SF_CLOSED_OUT)) {
		send_str(s, "</stream:stream>");
		s->flags |= SF_CLOSED_OUT;
	}
	session_close_after_flush(s);
}

/* ---- input ------------------------------------------------------------------ */

/* Input waits in the session's buffer while an answer from the control
 * thread is due: authentication, or the IM state at bind. */
static inline bool input_waits(const struct session *s)
{
	return s->state == SS_AUTH_WAIT || s->state == SS_IM_WAIT;
}

/* Frame and handle every item in buf[0..len). Returns the bytes dropped. */
static size_t c2s_parse(struct session *s, const char *buf, size_t len)
{
	size_t off = 0;

	for (;;) {
		struct xml_span sp;
		enum xml_event ev = xml_frame(&s->framer, buf + off, len - off, &sp);
		const char *item = buf + off + sp.start;
		size_t ilen = sp.end - sp.start;

		switch (ev) {
		case XML_AGAIN:
			return off + sp.end;
		case XML_ERROR:
			c2s_stream_error(s, xml_error_condition((enum xml_error)s->framer.err));
			return len;
		case XML_STREAM_OPEN:
			if (s->state != SS_HEADER) {
				c2s_stream_error(s, "not-well-formed");
				return len;
			}
			handle_header(s, item, ilen);
			break;
		case XML_STANZA:
			if (s->state == SS_HEADER) {
				c2s_stream_error(s, "not-well-formed");
				return len;
			}
			handle_stanza(s, item, ilen);
			break;
		case XML_STREAM_CLOSE:
			handle_close(s, item, ilen);
			break;
		}
		off += sp.end;
		if (session_dead(s) || s->state == SS_CLOSING || input_waits(s) || (s->flags & SF_CLOSED_OUT))
			return input_waits(s) ? off : len;
		if (s->state == SS_TLS_HANDSHAKE)
			return off;   /* the rest is TLS */
	}
}

size_t c2s_input(struct session *s, const uint8_t *p, size_t n)
{
	const char *buf = (const char *)p;
	size_t used;

	if (s->state == SS_CLOSING || session_dead(s))
		return n;
	if (s->im && (s->flags & SF_BOUND))
		im_input_seen(s);   /* XEP-0199: not idle */
	if (input_waits(s) || s->in.len) {
		/* Bytes behind an unfinished item (or behind an answer we
		 * wait for) join the session's buffer. */
		if (!sbuf_reserve(&s->in, n)) {
			session_close(s, "out of memory");
			return n;
		}
		memcpy(s->in.p + s->in.len, p, n);
		s->in.len += (uint32_t)n;
		if (input_waits(s))
			return n;
		used = c2s_parse(s, s->in.p, s->in.len);
		if (session_dead(s))
			return n;
		if (s->state == SS_TLS_HANDSHAKE) {
			/* <starttls/> completed with these bytes: what follows it
			 * (the tail of p) is the TLS handshake. */
			size_t rest = s->in.len - used;
			sbuf_drop(&s->in, s->in.len);
			return rest <= n ? n - rest : 0;
		}
		sbuf_drop(&s->in, used);
		return n;
	}
	used = c2s_parse(s, buf, n);
	if (session_dead(s) || s->state == SS_CLOSING)
		return n;
	if (s->state == SS_TLS_HANDSHAKE)
		return used;
	if (used < n) {
		/* Zero-copy until here: only an unfinished item is copied. */
		if (!sbuf_reserve(&s->in, n - used)) {
			session_close(s, "out of memory");
			return n;
		}
		memcpy(s->in.p, buf + used, n - used);
		s->in.len = (uint32_t)(n - used);
	}
	return n;
}

/* Resume parsing what waited behind an authentication answer. */
void c2s_resume_input(struct session *s)
{
	/* Nothing behind a stream error is read: a client that pipelined
	 * more guesses behind its last allowed failure gets none of them. */
	if (s->in.len && !input_waits(s) && s->state != SS_CLOSING && !session_dead(s) &&
	    !(s->flags & SF_CLOSED_OUT)) {
		size_t used = c2s_parse(s, s->in.p, s->in.len);
		if (!session_dead(s))
			sbuf_drop(&s->in, used);
	}
}

void c2s_accepted(struct session *s)
{
	const struct server_config *c = cfg_of(s);

	s->vhost = 0;
	s->state = SS_HEADER;
	if (c->listener[s->listener].kind == LISTEN_C2S_DIRECT_TLS) {
		s->flags |= SF_DIRECT_TLS;
		if (session_start_tls(s)) {
			session_close(s, "TLS setup failed");
			return;
		}
	}
	session_timer(s, c->header_timeout_ms);
}

void c2s_eof(struct session *s)
{
	/* Closed without </stream:stream>: nothing to answer to. */
	session_close(s, "peer closed");
}

void c2s_timeout(struct session *s)
{
	if (s->state == SS_CLOSING) {
		session_close(s, "close grace over");
		return;
	}
	if (s->pending_failure) {
		const char *cond = s->pending_failure;
		s->pending_failure = NULL;
		s->state = SS_OPEN;
		auth_failed(s, cond);
		c2s_resume_input(s);
		return;
	}
	if ((s->flags & SF_BOUND) && im_timer(s))
		return;   /* XEP-0199 idle ping, or its timeout */
	if (!(s->flags & SF_BOUND))
		c2s_stream_error(s, "connection-timeout");
}
