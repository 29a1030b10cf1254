/* The IM control plane's dispatch and shared helpers (control/im.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "control/im.h"
#include "parser/xmlw.h"
#include "store/store.h"
#include "util/log.h"

#define NS_STANZA_ERR "urn:ietf:params:xml:ns:xmpp-stanzas"

/* ---- set-up ------------------------------------------------------------- */

int im_init(struct im_ctx *ctx, struct store *st, const struct server_config *cfg)
{
	memset(ctx, 0, sizeof(*ctx));
	ctx->store = st;
	ctx->cfg = cfg;
	ctx->started = time(NULL);
	uint32_t toks = xml_view_storage_tokens(&cfg->xml);
	uint16_t nscap = (uint16_t)(2 + XML_NSCTX_MAX + cfg->xml.max_ns + 8);
	ctx->tok = calloc(toks, sizeof(*ctx->tok));
	ctx->ns = calloc(nscap, sizeof(*ctx->ns));
	ctx->scope = calloc(nscap, sizeof(*ctx->scope));
	if (!ctx->tok || !ctx->ns || !ctx->scope) {
		log_err("im: out of memory");
		im_free(ctx);
		return -1;
	}
	xml_view_init(&ctx->view, &cfg->xml, ctx->tok, toks, ctx->ns, nscap, ctx->scope, nscap);
	if (roster_init(ctx) < 0 || offline_init(ctx) < 0 || privacy_init(ctx) < 0 || services_init(ctx) < 0 ||
	    register_init(ctx) < 0) {
		im_free(ctx);
		return -1;
	}
	return 0;
}

void im_free(struct im_ctx *ctx)
{
	register_free(ctx);
	services_free(ctx);
	privacy_free(ctx);
	offline_free(ctx);
	roster_free(ctx);
	free(ctx->tok);
	free(ctx->ns);
	free(ctx->scope);
	ctx->tok = NULL;
	ctx->ns = NULL;
	ctx->scope = NULL;
}

/* ---- helpers -------------------------------------------------------------- */

bool im_local_domain(const struct im_ctx *ctx, const char *d, size_t len)
{
	for (unsigned i = 0; i < ctx->cfg->nvhost; i++)
		if (strlen(ctx->cfg->vhost[i].domain) == len && !memcmp(ctx->cfg->vhost[i].domain, d, len))
			return true;
	return false;
}

bool im_account_exists(struct im_ctx *ctx, const char *bare, size_t len)
{
	struct store_account a;

	return store_account_get(ctx->store, NULL, bare, len, &a) == STORE_OK;
}

enum im_iq_kind im_iq_kind(struct xml_view *v)
{
	char b[8];
	if (v->info.type == XML_NO_TOK || v->tok[v->info.type].b >= sizeof(b))
		return IM_IQ_OTHER;
	struct xml_slice t = xml_tok_value(v, v->info.type, b);
	return xml_slice_eq(t, "get") ? IM_IQ_GET : xml_slice_eq(t, "set") ? IM_IQ_SET : IM_IQ_OTHER;
}

int im_attr_get(struct xml_view *v, uint32_t el, const char *name, char *buf, size_t cap, size_t *len)
{
	uint32_t a = xml_attr_find(v, el, name, NULL);
	if (a == XML_NO_TOK)
		return 0;
	if (v->tok[a].b >= cap)
		return -1;
	struct xml_slice s = xml_tok_value(v, a, buf);
	if (s.ptr != buf)
		memmove(buf, s.ptr, s.len);
	buf[s.len] = '\0';
	*len = s.len;
	return 1;
}

size_t im_key(char *out, size_t cap, const char *bare, size_t bare_len, const char *rest, size_t rest_len)
{
	if (bare_len + 1 + rest_len > cap)
		return 0;
	memcpy(out, bare, bare_len);
	out[bare_len] = '\0';
	if (rest_len)
		memcpy(out + bare_len + 1, rest, rest_len);
	return bare_len + 1 + rest_len;
}

void im_stamp(time_t t, char out[21])
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* <name from=to-of-v to=from-of-v type=type id=id-of-v> left open. */
static void begin_reply(struct xmlw *x, char *buf, size_t cap, struct xml_view *v, const char *type)
{
	char a[JID_MAX + 1];

	xmlw_init(x, buf, cap);
	struct xml_slice name = xml_tok_local(v, 0);
	char nm[16];
	size_t nl = name.len < sizeof(nm) - 1 ? name.len : sizeof(nm) - 1;
	memcpy(nm, name.ptr, nl);
	nm[nl] = '\0';
	xmlw_start(x, nm);
	if (v->info.to != XML_NO_TOK && v->tok[v->info.to].b <= JID_MAX) {
		struct xml_slice s = xml_tok_value(v, v->info.to, a);
		xmlw_attr(x, "from", s.ptr, s.len);
	}
	if (v->info.from != XML_NO_TOK && v->tok[v->info.from].b <= JID_MAX) {
		struct xml_slice s = xml_tok_value(v, v->info.from, a);
		xmlw_attr(x, "to", s.ptr, s.len);
	}
	xmlw_attr_str(x, "type", type);
	if (v->info.id != XML_NO_TOK && v->tok[v->info.id].b <= 1024) {
		char id[1025];
		struct xml_slice s = xml_tok_value(v, v->info.id, id);
		xmlw_attr(x, "id", s.ptr, s.len);
	}
}

static bool is_error_or_result(struct xml_view *v)
{
	char b[16];

	if (v->info.type == XML_NO_TOK || v->tok[v->info.type].b >= sizeof(b))
		return false;
	struct xml_slice t = xml_tok_value(v, v->info.type, b);
	return xml_slice_eq(t, "error") || xml_slice_eq(t, "result");
}

static size_t build_error(struct xml_view *v, const char *etype, const char *cond, const char *app, size_t app_len,
			  char *buf, size_t cap)
{
	struct xmlw x;
	size_t len;

	if (is_error_or_result(v))
		return 0;
	begin_reply(&x, buf, cap, v, "error");
	xmlw_start(&x, "error");
	xmlw_attr_str(&x, "type", etype);
	xmlw_start(&x, cond);
	xmlw_ns(&x, NULL, NS_STANZA_ERR);
	xmlw_end(&x);
	if (app_len)
		xmlw_raw(&x, app, app_len);
	xmlw_end(&x);
	xmlw_end(&x);
	return xmlw_finish(&x, &len) == XMLW_OK ? len : 0;
}

size_t im_build_error(struct xml_view *v, const char *etype, const char *condition, char *buf, size_t cap)
{
	return build_error(v, etype, condition, NULL, 0, buf, cap);
}

/* Replies go to the requesting session when there is one, else by
 * routing to the stanza's sender. */
static void send_reply(struct im_call *c, const char *buf, size_t len)
{
	if (c->handle)
		c->out->to_session(c->out->srv, c->handle, buf, len);
	else
		c->out->route(c->out->srv, buf, len);
}

void im_error_app(struct im_call *c, const char *etype, const char *condition, const char *app, size_t app_len)
{
	char buf[4096];

	if (!c->v)
		return;
	size_t n = build_error(c->v, etype, condition, app, app_len, buf, sizeof(buf));
	if (n)
		send_reply(c, buf, n);
}

void im_error(struct im_call *c, const char *etype, const char *condition)
{
	im_error_app(c, etype, condition, NULL, 0);
}

void im_result(struct im_call *c, const char *payload, size_t len)
{
	struct xmlw x;
	size_t n;
	size_t cap = 256 + 2 * JID_MAX + 1100 + len;
	char *buf = malloc(cap);

	if (!buf || !c->v) {
		free(buf);
		return;
	}
	begin_reply(&x, buf, cap, c->v, "result");
	if (payload && len)
		xmlw_raw(&x, payload, len);
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) == XMLW_OK)
		send_reply(c, buf, n);
	free(buf);
}

void im_result_flags(struct im_call *c, uint32_t set, uint32_t clear, const char *payload, size_t len)
{
	struct xmlw x;
	size_t n;
	struct im_send_hdr h = { .set = set, .clear = clear };
	size_t cap = sizeof(h) + 256 + 2 * JID_MAX + 1100 + len;
	char *buf = malloc(cap);

	if (!buf || !c->v || !c->handle) {
		free(buf);
		return;
	}
	memcpy(buf, &h, sizeof(h));
	begin_reply(&x, buf + sizeof(h), cap - sizeof(h), c->v, "result");
	if (payload && len)
		xmlw_raw(&x, payload, len);
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) == XMLW_OK)
		c->out->event(c->out->srv, c->handle, IM_EV_SEND, buf, sizeof(h) + n);
	free(buf);
}

/* ---- dispatch ------------------------------------------------------------- */

typedef void iq_fn(struct im_call *c, uint32_t child);

static const struct {
	const char *ns;
	iq_fn *fn;
} iq_table[] = {
	{ "jabber:iq:roster", roster_iq },
	{ "http://jabber.org/protocol/offline", offline_iq },
	{ "jabber:iq:last", last_iq },
	{ "http://jabber.org/protocol/disco#info", disco_info_iq },
	{ "http://jabber.org/protocol/disco#items", disco_items_iq },
	{ "jabber:iq:version", version_iq },
	{ "urn:xmpp:time", time_iq },
	{ "vcard-temp", vcard_iq },
	{ "jabber:iq:private", private_iq },
	{ "urn:xmpp:blocking", blocking_iq },
	{ "jabber:iq:privacy", privacy_iq },
	{ "jabber:iq:register", register_iq },
	{ "urn:xmpp:carbons:2", carbons_iq },
};

static void serve_iq(struct im_call *c)
{
	struct xml_view *v = c->v;
	uint32_t child = v->info.child;

	if (is_error_or_result(v))
		return;   /* answers to the server end here */
	if (child == XML_NO_TOK) {
		im_error(c, "modify", "bad-request");
		return;
	}
	struct xml_slice ns = xml_tok_ns(v, child);
	for (size_t i = 0; i < sizeof(iq_table) / sizeof(iq_table[0]); i++) {
		if (xml_slice_eq(ns, iq_table[i].ns)) {
			iq_table[i].fn(c, child);
			return;
		}
	}
	im_error(c, "cancel", "service-unavailable");
}

static void serve_stanza(struct im_call *c)
{
	struct xml_slice name = xml_tok_local(c->v, 0);

	if (xml_slice_eq(name, "iq"))
		serve_iq(c);
	else if (xml_slice_eq(name, "presence"))
		roster_presence(c);
	else if (xml_slice_eq(name, "message"))
		offline_message(c);
}

/* IM_EV_STATE: contacts, then rules. */
static void serve_session_start(struct im_call *c)
{
	size_t cap = 64 * 1024;
	uint8_t *buf = NULL;
	struct im_state_hdr h;

	for (int tries = 0; tries < 6; tries++, cap *= 4) {
		free(buf);
		buf = malloc(cap);
		if (!buf)
			break;
		size_t len = sizeof(h);
		memset(&h, 0, sizeof(h));
		if (!im_account_exists(c->ctx, c->jid, c->bare_len))
			h.flags |= IM_STATE_NO_ACCOUNT;
		int nc = roster_state(c, buf, cap, &len);
		if (nc < 0)
			continue;
		int nr = privacy_state(c, buf, cap, &len);
		if (nr < 0)
			continue;
		h.ncontacts = (uint32_t)nc;
		h.nrules = (uint32_t)nr;
		memcpy(buf, &h, sizeof(h));
		c->out->event(c->out->srv, c->handle, IM_EV_STATE, buf, len);
		free(buf);
		return;
	}
	free(buf);
	/* Could not build it: the session still gets an (empty) state so it
	 * is not left waiting; its roster will be empty until it asks. */
	log_err("im: state for %.*s too large or out of memory", (int)c->bare_len, c->jid);
	memset(&h, 0, sizeof(h));
	c->out->event(c->out->srv, c->handle, IM_EV_STATE, &h, sizeof(h));
}

void im_serve(void *arg, uint64_t handle, const struct im_req *hdr, const char *jid, const char *stanza,
	      const struct im_out *out)
{
	struct im_ctx *ctx = arg;
	struct im_call c;

	memset(&c, 0, sizeof(c));
	c.ctx = ctx;
	c.out = out;
	c.handle = handle;
	c.req = hdr;
	c.jid = jid;
	c.jid_len = hdr->jid_len;
	const char *slash = memchr(jid, '/', hdr->jid_len);
	c.bare_len = slash ? (size_t)(slash - jid) : hdr->jid_len;
	c.stanza = stanza;
	c.len = hdr->len;
	if (hdr->vhost < ctx->cfg->nvhost) {
		c.domain = ctx->cfg->vhost[hdr->vhost].domain;
		c.domain_len = strlen(c.domain);
	}
	if (hdr->len && hdr->type != IM_REQ_UNACKED && hdr->type != IM_REQ_SESSION_MOVED) {
		if (xml_view_build(&ctx->view, NULL, stanza, hdr->len) < 0) {
			log_warn("im: unparsable request stanza (%s)", xml_error_condition(ctx->view.err));
			return;
		}
		c.v = &ctx->view;
		if (c.v->info.to != XML_NO_TOK && c.v->tok[c.v->info.to].b <= JID_MAX) {
			char tb[JID_MAX + 1];
			struct xml_slice t = xml_tok_value(c.v, c.v->info.to, tb);
			if (jid_parse(&c.to, t.ptr, t.len, 0) == JID_OK)
				c.has_to = true;
		}
		if (!c.has_to) {
			c.to_kind = IM_TO_SELF;
		} else {
			struct jid_slice d = jid_domain(&c.to);
			struct jid_slice b = jid_bare(&c.to);
			if (!im_local_domain(ctx, d.ptr, d.len))
				c.to_kind = IM_TO_REMOTE;
			else if (c.to.local_len == 0)
				c.to_kind = IM_TO_SERVER;
			else if (b.len == c.bare_len && !memcmp(b.ptr, jid, b.len))
				c.to_kind = IM_TO_SELF;
			else
				c.to_kind = IM_TO_USER;
		}
	}
	/* Group commit: offline messages and logout records (XEP-0012) share
	 * the open batch, and a session start only reads what no batch holds
	 * (roster, privacy lists, the account); anything else may write the
	 * store or read what the batch holds, so the batch is committed first
	 * (router/hooks.h, im.flush). A login storm's logouts then cost one
	 * durable commit per burst, not one each. */
	if (!(hdr->type == IM_REQ_STANZA && c.v && xml_slice_eq(xml_tok_local(c.v, 0), "message")) &&
	    hdr->type != IM_REQ_SESSION_START && hdr->type != IM_REQ_SESSION_END)
		offline_flush(ctx, out);
	switch (hdr->type) {
	case IM_REQ_SESSION_START:
		serve_session_start(&c);
		break;
	case IM_REQ_SESSION_END:
		last_session_end(&c);
		privacy_session_end(&c);
		break;
	case IM_REQ_STANZA:
		if (c.v)
			serve_stanza(&c);
		break;
	case IM_REQ_INITIAL_PRESENCE:
		roster_initial_presence(&c);
		offline_initial_presence(&c);
		break;
	case IM_REQ_PREAUTH_IQ:
		if (c.v && xml_slice_eq(xml_tok_local(c.v, 0), "iq") && c.v->info.child != XML_NO_TOK &&
		    xml_slice_eq(xml_tok_ns(c.v, c.v->info.child), "jabber:iq:register"))
			register_preauth_iq(&c, c.v->info.child);
		else if (c.v)
			im_error(&c, "cancel", "service-unavailable");
		break;
	case IM_REQ_UNACKED:
		offline_unacked(&c);
		break;
	case IM_REQ_SESSION_MOVED:
		/* XEP-0198 resumption: what is kept by handle follows. */
		if (hdr->len == sizeof(uint64_t) && handle) {
			uint64_t old;
			memcpy(&old, stanza, sizeof(old));
			privacy_session_moved(&c, old);
			offline_session_moved(&c, old);
		}
		break;
	case IM_REQ_OFFLINE:
		/* The resource's priority went non-negative (XEP-0160). */
		offline_initial_presence(&c);
		break;
	}
}

void im_flush(void *arg, const struct im_out *out)
{
	struct im_ctx *ctx = arg;

	offline_flush(ctx, out);
}

int im_purge_user(struct im_ctx *ctx, const char *bare, size_t len)
{
	int rc = 0;

	if (roster_purge(ctx, bare, len) < 0)
		rc = -1;
	if (offline_purge(ctx, bare, len) < 0)
		rc = -1;
	if (privacy_purge(ctx, bare, len) < 0)
		rc = -1;
	if (services_purge(ctx, bare, len) < 0)
		rc = -1;
	return rc;
}
