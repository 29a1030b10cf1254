/* services.c: the small services a server answers itself.
 *
 *   XEP-0030  disco#info / disco#items for the server's domain (identity
 *             server/im and the features below) and for an account's bare
 *             JID (account/registered, only to the owner and to entities
 *             the account shares presence with: XEP-0030 section 8). The
 *             XEP-0013 node is answered by offline.c.
 *   XEP-0115  the 'ver' of the server's disco#info (stream features),
 *             computed from the same tables disco#info answers with.
 *   XEP-0092  software version; XEP-0202 entity time.
 *   XEP-0054  vcard-temp, stored as the <vCard/> element (STORE_T_VCARD,
 *             key: the bare JID).
 *   XEP-0049  private XML storage (STORE_T_PRIVATE, key: bare JID \0
 *             namespace \0 element name).
 *   XEP-0280  carbons enable/disable: the session flag IM_SF_CARBONS.
 *
 * Stored XML is re-serialised from the request's view (copy_elem), not
 * cut out of it: a child may use prefixes declared on its ancestors, and
 * the stored element must stand alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include "control/im.h"
#include "parser/xmlw.h"
#include "store/store.h"
#include "util/b64.h"
#include "util/log.h"

#ifndef STANZA_VERSION
#define STANZA_VERSION "unknown"
#endif

#define NS_DISCO_INFO  "http://jabber.org/protocol/disco#info"
#define NS_DISCO_ITEMS "http://jabber.org/protocol/disco#items"
#define NS_VERSION     "jabber:iq:version"
#define NS_TIME        "urn:xmpp:time"
#define NS_VCARD       "vcard-temp"
#define NS_PRIVATE     "jabber:iq:private"

#define VCARD_MAX      (128u * 1024u)   /* bytes of a stored vCard (avatars are embedded: XEP-0153) */
#define PRIVATE_MAX    (64u * 1024u)    /* bytes of one stored private element */
#define PRIVATE_KEYS   256u             /* private elements per user */
#define NAME_BUF       256u             /* element and attribute names copied */

/* ---- what the server is (one definition for disco#info and caps) ---------- */

/* XEP-0030 identity, as XEP-0115 5.1 writes it: category/type/lang/name. */
static const struct {
	const char *category, *type, *name;
} server_ids[] = {
	{ "server", "im", "stanzad" },
};

/* Sorted ("i;octet") so that the disco answer is the caps input as is.
 * Stream features (sm, csi, bind, roster versioning) are not disco
 * features; ping is answered by the router; jabber:iq:register covers
 * password change and removal even when in-band registration is off. */
static const char *const server_features[] = {
	"http://jabber.org/protocol/caps",
	"http://jabber.org/protocol/disco#info",
	"http://jabber.org/protocol/disco#items",
	"http://jabber.org/protocol/offline",   /* XEP-0013 (offline.c) */
	"jabber:iq:last",                       /* XEP-0012 (offline.c) */
	"jabber:iq:privacy",                    /* XEP-0016 */
	"jabber:iq:private",                    /* XEP-0049 */
	"jabber:iq:register",                   /* XEP-0077 (register.c) */
	"jabber:iq:version",                    /* XEP-0092 */
	"msgoffline",                           /* XEP-0160 (offline.c) */
	"urn:xmpp:blocking",                    /* XEP-0191 */
	"urn:xmpp:carbons:2",                   /* XEP-0280 */
	"urn:xmpp:ping",                        /* XEP-0199 (router) */
	"urn:xmpp:time",                        /* XEP-0202 */
	"vcard-temp",                           /* XEP-0054 */
};

/* An account's bare JID (XEP-0030 3.1: account/registered). */
static const char *const account_features[] = {
	"http://jabber.org/protocol/disco#info",
	"http://jabber.org/protocol/disco#items",
	"jabber:iq:last",
	"vcard-temp",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

struct services_state {
	char ver[64];   /* services_caps_ver */
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);   /* bytes as unsigned char: i;octet */
}

size_t services_caps_hash(const char *const *identities, size_t nid, const char *const *features, size_t nfeat,
			  char *out, size_t cap)
{
	const char **ids = malloc((nid + 1) * sizeof(*ids));
	const char **fs = malloc((nfeat + 1) * sizeof(*fs));
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t h[EVP_MAX_MD_SIZE];
	unsigned hl = 0;
	size_t n = 0;

	if (cap)
		out[0] = '\0';
	if (!ids || !fs || !md || EVP_DigestInit_ex(md, EVP_sha1(), NULL) != 1)
		goto out;
	memcpy(ids, identities, nid * sizeof(*ids));
	memcpy(fs, features, nfeat * sizeof(*fs));
	/* XEP-0115 5.1 steps 2-5: identities sorted (category, type and lang
	 * lead each string, so a bytewise sort of the strings orders them),
	 * then features, each followed by '<'. */
	qsort(ids, nid, sizeof(*ids), cmp_str);
	qsort(fs, nfeat, sizeof(*fs), cmp_str);
	for (size_t i = 0; i < nid; i++) {
		EVP_DigestUpdate(md, ids[i], strlen(ids[i]));
		EVP_DigestUpdate(md, "<", 1);
	}
	for (size_t i = 0; i < nfeat; i++) {
		EVP_DigestUpdate(md, fs[i], strlen(fs[i]));
		EVP_DigestUpdate(md, "<", 1);
	}
	if (EVP_DigestFinal_ex(md, h, &hl) == 1)
		n = b64_encode(h, hl, out, cap);
out:
	EVP_MD_CTX_free(md);
	free(ids);
	free(fs);
	return n;
}

void services_caps_ver(char *out, size_t cap)
{
	char idb[COUNT(server_ids)][256];
	const char *ids[COUNT(server_ids)];

	for (size_t i = 0; i < COUNT(server_ids); i++) {
		snprintf(idb[i], sizeof(idb[i]), "%s/%s//%s", server_ids[i].category, server_ids[i].type,
			 server_ids[i].name);
		ids[i] = idb[i];
	}
	services_caps_hash(ids, COUNT(server_ids), server_features, COUNT(server_features), out, cap);
}

int services_init(struct im_ctx *ctx)
{
	struct services_state *s = calloc(1, sizeof(*s));
	if (!s)
		return -1;
	services_caps_ver(s->ver, sizeof(s->ver));
	ctx->services = s;
	return 0;
}

void services_free(struct im_ctx *ctx)
{
	free(ctx->services);
	ctx->services = NULL;
}

int services_purge(struct im_ctx *ctx, const char *bare, size_t len)
{
	char prefix[600];
	size_t pl = im_key(prefix, sizeof(prefix), bare, len, NULL, 0);
	int rc = store_del(ctx->store, NULL, STORE_T_VCARD, bare, len);
	if (rc != STORE_OK && rc != STORE_NOTFOUND)
		return -1;
	if (!pl || store_del_prefix(ctx->store, NULL, STORE_T_PRIVATE, prefix, pl, NULL) != STORE_OK)
		return -1;
	return 0;
}

/* ---- helpers -------------------------------------------------------------- */

static void name_copy(char *dst, struct xml_slice s)
{
	memcpy(dst, s.ptr, s.len);
	dst[s.len] = '\0';
}

/* Re-serialise element el and its subtree into w, self-contained: an
 * element whose namespace differs from its parent's (and the top one
 * always) declares it as the default namespace, attributes in a namespace
 * get a prefix declared on their element (xml: kept). 0, or -1 for what the
 * writer cannot hold (names longer than NAME_BUF, nesting deeper than
 * XMLW_MAX_DEPTH: the writer's error). scratch: v->len bytes. */
static int copy_elem(struct xml_view *v, uint32_t el, struct xmlw *w, char *scratch)
{
	uint32_t end = v->tok[el].a;
	uint16_t nsstack[XMLW_MAX_DEPTH + 1];
	int depth = 0;
	char name[NAME_BUF + 32];   /* a prefix "aN:" and a local name */

	for (uint32_t i = el; i <= end; i++) {
		const struct xml_token *t = &v->tok[i];
		if (t->type == XML_TOK_ELEM) {
			struct xml_slice l = xml_tok_local(v, i);
			if (l.len > NAME_BUF || depth >= XMLW_MAX_DEPTH)
				return -1;
			name_copy(name, l);
			xmlw_start(w, name);
			if (depth == 0 || nsstack[depth - 1] != t->ns) {
				struct xml_slice ns = xml_tok_ns(v, i);
				xmlw_attr(w, "xmlns", ns.ptr, ns.len);
			}
			nsstack[depth++] = t->ns;
			unsigned np = 0;
			for (uint32_t k = 0; k < t->nattr; k++) {
				uint32_t ai = i + 1 + k;
				const struct xml_token *a = &v->tok[ai];
				struct xml_slice al = xml_tok_local(v, ai);
				struct xml_slice val = xml_tok_value(v, ai, scratch);
				if (al.len > NAME_BUF)
					return -1;
				if (a->ns == XML_NS_NONE) {
					name_copy(name, al);
				} else if (a->ns == XML_NS_XML) {
					memcpy(name, "xml:", 4);
					name_copy(name + 4, al);
				} else {
					char pfx[16], decl[24];
					struct xml_slice ns = xml_tok_ns(v, ai);
					snprintf(pfx, sizeof(pfx), "a%u", np++);
					snprintf(decl, sizeof(decl), "xmlns:%s", pfx);
					xmlw_attr(w, decl, ns.ptr, ns.len);
					snprintf(name, sizeof(name), "%s:%.*s", pfx, (int)al.len, al.ptr);
				}
				xmlw_attr(w, name, val.ptr, val.len);
			}
			i += t->nattr;
		} else if (t->type == XML_TOK_TEXT) {
			if (t->flags & XML_TF_CDATA) {
				xmlw_text(w, v->base + t->off, t->len);
			} else {
				struct xml_slice s = xml_tok_value(v, i, scratch);
				xmlw_text(w, s.ptr, s.len);
			}
		} else if (t->type == XML_TOK_END) {
			xmlw_end(w);
			depth--;
		}
	}
	return xmlw_status(w) == XMLW_OK ? 0 : -1;
}

/* copy_elem into a fresh buffer: *out (malloc'd), its length, or 0. */
static size_t serialise(struct xml_view *v, uint32_t el, char **out)
{
	char *scratch = malloc(v->len + 1);
	size_t cap = 2u * v->len + 1024;
	*out = NULL;
	for (int tries = 0; scratch && tries < 4; tries++, cap *= 4) {
		struct xmlw w;
		size_t n;
		char *buf = malloc(cap);
		if (!buf)
			break;
		xmlw_init(&w, buf, cap);
		if (copy_elem(v, el, &w, scratch) == 0 && xmlw_finish(&w, &n) == XMLW_OK) {
			free(scratch);
			*out = buf;
			return n;
		}
		free(buf);
		if (xmlw_status(&w) != XMLW_ERR_SPACE)
			break;
	}
	free(scratch);
	return 0;
}

/* An element with no attributes and no content. */
static bool elem_empty(struct xml_view *v, uint32_t el)
{
	return v->tok[el].nattr == 0 && v->tok[el].a == el + 1;
}

/* ---- XEP-0030 --------------------------------------------------------------- */

static bool account_authorised(struct im_call *c, struct jid_slice target)
{
	if (c->to_kind == IM_TO_SELF)
		return true;
	/* XEP-0030 8: only entities the account shares presence with. */
	return (roster_sub_of(c->ctx, target.ptr, target.len, c->jid, c->bare_len) & IM_SUB_FROM) != 0;
}

static void info_result(struct im_call *c, bool server, const char *node, size_t nlen)
{
	char buf[4096];
	struct xmlw x;
	size_t n;

	xmlw_init(&x, buf, sizeof(buf));
	xmlw_start(&x, "query");
	xmlw_ns(&x, NULL, NS_DISCO_INFO);
	if (node)
		xmlw_attr(&x, "node", node, nlen);
	if (server) {
		for (size_t i = 0; i < COUNT(server_ids); i++) {
			xmlw_start(&x, "identity");
			xmlw_attr_str(&x, "category", server_ids[i].category);
			xmlw_attr_str(&x, "type", server_ids[i].type);
			xmlw_attr_str(&x, "name", server_ids[i].name);
			xmlw_end(&x);
		}
		for (size_t i = 0; i < COUNT(server_features); i++) {
			xmlw_start(&x, "feature");
			xmlw_attr_str(&x, "var", server_features[i]);
			xmlw_end(&x);
		}
	} else {
		xmlw_start(&x, "identity");
		xmlw_attr_str(&x, "category", "account");
		xmlw_attr_str(&x, "type", "registered");
		xmlw_end(&x);
		for (size_t i = 0; i < COUNT(account_features); i++) {
			xmlw_start(&x, "feature");
			xmlw_attr_str(&x, "var", account_features[i]);
			xmlw_end(&x);
		}
	}
	xmlw_end(&x);
	if (xmlw_finish(&x, &n) == XMLW_OK)
		im_result(c, buf, n);
	else
		im_error(c, "wait", "internal-server-error");
}

void disco_info_iq(struct im_call *c, uint32_t child)
{
	char node[1024];
	size_t nlen = 0;
	int hn = im_attr_get(c->v, child, "node", node, sizeof(node), &nlen);

	if (im_iq_kind(c->v) != IM_IQ_GET || !xml_slice_eq(xml_tok_local(c->v, child), "query")) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	if (hn == 1 && !strcmp(node, OFFLINE_NODE)) {
		offline_disco_info(c, child);
		return;
	}
	switch (c->to_kind) {
	case IM_TO_SERVER: {
		/* XEP-0115 6.2: the caps node is node#ver. */
		const char *ver = c->ctx->services->ver;
		size_t vl = strlen(ver);
		if (hn == 0)
			info_result(c, true, NULL, 0);
		else if (hn == 1 && vl && nlen > vl && node[nlen - vl - 1] == '#' && !strcmp(node + nlen - vl, ver))
			info_result(c, true, node, nlen);
		else
			im_error(c, "cancel", "item-not-found");
		break;
	}
	case IM_TO_SELF:
	case IM_TO_USER: {
		struct jid_slice target = c->to_kind == IM_TO_SELF ? (struct jid_slice){ c->jid, (uint16_t)c->bare_len }
								   : jid_bare(&c->to);
		/* XEP-0030 8, rule 1: service-unavailable for no account and
		 * for the unauthorised alike. */
		if ((c->to_kind == IM_TO_USER && !im_account_exists(c->ctx, target.ptr, target.len)) ||
		    !account_authorised(c, target))
			im_error(c, "cancel", "service-unavailable");
		else if (hn != 0)
			im_error(c, "cancel", "item-not-found");
		else
			info_result(c, false, NULL, 0);
		break;
	}
	default:
		im_error(c, "cancel", "service-unavailable");
	}
}

void disco_items_iq(struct im_call *c, uint32_t child)
{
	char node[1024];
	size_t nlen = 0;
	int hn = im_attr_get(c->v, child, "node", node, sizeof(node), &nlen);
	static const char empty[] = "<query xmlns='" NS_DISCO_ITEMS "'/>";

	if (im_iq_kind(c->v) != IM_IQ_GET || !xml_slice_eq(xml_tok_local(c->v, child), "query")) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	if (hn == 1 && !strcmp(node, OFFLINE_NODE)) {
		offline_disco_items(c, child);
		return;
	}
	switch (c->to_kind) {
	case IM_TO_SERVER:
		/* No components or services hosted yet. */
		if (hn == 0)
			im_result(c, empty, sizeof(empty) - 1);
		else
			im_error(c, "cancel", "item-not-found");
		break;
	case IM_TO_SELF:
	case IM_TO_USER:
		/* XEP-0030 8, rule 2: an empty result for a missing account
		 * and the unauthorised. Resources are the router's; the
		 * control plane has no items of its own to list. */
		if (hn != 0 && c->to_kind == IM_TO_SELF)
			im_error(c, "cancel", "item-not-found");
		else
			im_result(c, empty, sizeof(empty) - 1);
		break;
	default:
		im_error(c, "cancel", "service-unavailable");
	}
}

/* ---- XEP-0092, XEP-0202 --------------------------------------------------------- */

void version_iq(struct im_call *c, uint32_t child)
{
	static const char payload[] = "<query xmlns='" NS_VERSION "'><name>stanzad</name><version>" STANZA_VERSION
				      "</version></query>";

	/* The server's version; an account has none to tell (and the
	 * operating system is not disclosed: XEP-0092 section 4). */
	if (im_iq_kind(c->v) != IM_IQ_GET || c->to_kind != IM_TO_SERVER ||
	    !xml_slice_eq(xml_tok_local(c->v, child), "query")) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	im_result(c, payload, sizeof(payload) - 1);
}

/* XEP-0082 TZD of the server's local time zone: "+01:00", "Z" never (the
 * XEP-0202 examples use the numeric form). */
static void tzo(time_t now, char out[16])
{
	struct tm lt;
	localtime_r(&now, &lt);
	long off = lt.tm_gmtoff;
	char sign = off < 0 ? '-' : '+';
	if (off < 0)
		off = -off;
	snprintf(out, 16, "%c%02d:%02d", sign, (int)((off / 3600) % 24), (int)((off / 60) % 60));
}

void time_iq(struct im_call *c, uint32_t child)
{
	char buf[256], utc[21], tz[16];
	time_t now = time(NULL);

	if (im_iq_kind(c->v) != IM_IQ_GET || c->to_kind != IM_TO_SERVER ||
	    !xml_slice_eq(xml_tok_local(c->v, child), "time")) {
		im_error(c, "cancel", "service-unavailable");
		return;
	}
	im_stamp(now, utc);
	tzo(now, tz);
	int n = snprintf(buf, sizeof(buf), "<time xmlns='" NS_TIME "'><tzo>%s</tzo><utc>%s</utc></time>", tz, utc);
	im_result(c, buf, (size_t)n);
}

/* ---- XEP-0054 ---------------------------------------------------------------------- */

static void vcard_get(struct im_call *c, const char *bare, size_t blen, bool own)
{
	static const char empty[] = "<vCard xmlns='" NS_VCARD "'/>";
	struct store_buf b = { 0 };
	int rc = store_get(c->ctx->store, NULL, STORE_T_VCARD, bare, blen, &b);

	if (rc == STORE_OK)
		im_result(c, (const char *)b.ptr, b.len);
	else if (rc == STORE_NOTFOUND && own)
		im_result(c, empty, sizeof(empty) - 1);   /* XEP-0054 3.1 */
	else if (rc == STORE_NOTFOUND)
		im_error(c, "cancel", "service-unavailable");   /* 3.3: as for no account */
	else
		im_error(c, "wait", "internal-server-error");
	store_buf_free(&b);
}

static void vcard_set(struct im_call *c, uint32_t child)
{
	char *xml = NULL;
	size_t n = 0;
	int rc;

	if (elem_empty(c->v, child)) {
		rc = store_del(c->ctx->store, NULL, STORE_T_VCARD, c->jid, c->bare_len);
	} else {
		n = serialise(c->v, child, &xml);
		if (!n || n > VCARD_MAX) {
			free(xml);
			im_error(c, "modify", "not-acceptable");
			return;
		}
		rc = store_put(c->ctx->store, NULL, STORE_T_VCARD, c->jid, c->bare_len, xml, n, 0);
	}
	free(xml);
	if (rc == STORE_OK || rc == STORE_NOTFOUND)
		im_result(c, NULL, 0);
	else
		im_error(c, "wait", "internal-server-error");
}

void vcard_iq(struct im_call *c, uint32_t child)
{
	enum im_iq_kind k = im_iq_kind(c->v);

	if (!xml_slice_eq(xml_tok_local(c->v, child), "vCard") || k == IM_IQ_OTHER) {
		im_error(c, "modify", "bad-request");
		return;
	}
	switch (c->to_kind) {
	case IM_TO_SELF:
		if (k == IM_IQ_GET)
			vcard_get(c, c->jid, c->bare_len, true);
		else
			vcard_set(c, child);
		break;
	case IM_TO_USER: {
		if (k == IM_IQ_SET) {
			im_error(c, "auth", "forbidden");   /* XEP-0054 3.2: only one's own */
			break;
		}
		struct jid_slice b = jid_bare(&c->to);
		vcard_get(c, b.ptr, b.len, false);
		break;
	}
	default:
		im_error(c, "cancel", k == IM_IQ_SET ? "not-allowed" : "service-unavailable");
	}
}

/* ---- XEP-0049 ---------------------------------------------------------------------- */

/* bare \0 namespace \0 name; 0 if it does not fit. */
static size_t private_key(struct im_call *c, uint32_t el, char *key, size_t cap)
{
	struct xml_slice ns = xml_tok_ns(c->v, el);
	struct xml_slice nm = xml_tok_local(c->v, el);
	char rest[600];
	size_t max = store_max_key(c->ctx->store);

	if ((size_t)ns.len + 1 + nm.len > sizeof(rest))
		return 0;
	memcpy(rest, ns.ptr, ns.len);
	rest[ns.len] = '\0';
	memcpy(rest + ns.len + 1, nm.ptr, nm.len);
	return im_key(key, cap < max ? cap : max, c->jid, c->bare_len, rest, ns.len + 1 + nm.len);
}

/* XEP-0049 2: a child needs a namespace of its own, not a reserved one. */
static bool private_ns_ok(struct xml_slice ns)
{
	static const char reserved[] = "jabber:";
	if (ns.len == 0 || xml_slice_eq(ns, NS_PRIVATE))
		return false;
	return !(ns.len >= sizeof(reserved) - 1 && !memcmp(ns.ptr, reserved, sizeof(reserved) - 1));
}

static void private_get(struct im_call *c, uint32_t el)
{
	char key[600];
	size_t kl = private_key(c, el, key, sizeof(key));
	struct store_buf b = { 0 };
	char *echo = NULL;
	const char *body;
	size_t blen;
	int rc = kl ? store_get(c->ctx->store, NULL, STORE_T_PRIVATE, key, kl, &b) : STORE_NOTFOUND;

	if (rc == STORE_OK) {
		body = (const char *)b.ptr;
		blen = b.len;
	} else if (rc == STORE_NOTFOUND) {
		/* Nothing stored: the element asked for, as it was asked. */
		blen = serialise(c->v, el, &echo);
		body = echo;
	} else {
		im_error(c, "wait", "internal-server-error");
		store_buf_free(&b);
		return;
	}
	size_t cap = blen + 64;
	char *p = malloc(cap);
	if (p && (rc == STORE_OK || blen)) {
		int n = snprintf(p, cap, "<query xmlns='" NS_PRIVATE "'>");
		memcpy(p + n, body, blen);
		memcpy(p + n + blen, "</query>", 8);
		im_result(c, p, (size_t)n + blen + 8);
	} else {
		im_error(c, "wait", "internal-server-error");
	}
	free(p);
	free(echo);
	store_buf_free(&b);
}

static void private_set(struct im_call *c, uint32_t q)
{
	struct im_ctx *ctx = c->ctx;
	struct xml_view *v = c->v;
	struct store_txn t;
	char key[600];
	char prefix[600];
	size_t pl = im_key(prefix, sizeof(prefix), c->jid, c->bare_len, NULL, 0);
	uint64_t have = 0;

	for (uint32_t el = xml_first_child(v, q); el != XML_NO_TOK; el = xml_next_sibling(v, el)) {
		if (!private_ns_ok(xml_tok_ns(v, el))) {
			im_error(c, "modify", "not-acceptable");
			return;
		}
	}
	if (!pl || store_count(ctx->store, NULL, STORE_T_PRIVATE, prefix, pl, &have) != STORE_OK ||
	    store_write_begin(ctx->store, &t) != STORE_OK) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	int rc = STORE_OK;
	const char *err = NULL;
	for (uint32_t el = xml_first_child(v, q); el != XML_NO_TOK && rc == STORE_OK && !err;
	     el = xml_next_sibling(v, el)) {
		size_t kl = private_key(c, el, key, sizeof(key));
		if (!kl) {
			err = "not-acceptable";
			break;
		}
		if (elem_empty(v, el)) {
			rc = store_del(ctx->store, &t, STORE_T_PRIVATE, key, kl);
			if (rc == STORE_NOTFOUND)
				rc = STORE_OK;
			continue;
		}
		char *xml = NULL;
		size_t n = serialise(v, el, &xml);
		if (!n || n > PRIVATE_MAX) {
			free(xml);
			err = "not-acceptable";
			break;
		}
		struct store_buf old = { 0 };
		bool is_new = store_get(ctx->store, &t, STORE_T_PRIVATE, key, kl, &old) == STORE_NOTFOUND;
		store_buf_free(&old);
		if (is_new && ++have > PRIVATE_KEYS)
			err = "not-acceptable";
		else
			rc = store_put(ctx->store, &t, STORE_T_PRIVATE, key, kl, xml, n, 0);
		free(xml);
	}
	if (err || rc != STORE_OK) {
		store_abort(&t);
		im_error(c, err ? "modify" : "wait", err ? err : "internal-server-error");
		return;
	}
	if (store_commit(&t) != STORE_OK) {
		im_error(c, "wait", "internal-server-error");
		return;
	}
	im_result(c, NULL, 0);
}

void private_iq(struct im_call *c, uint32_t child)
{
	struct xml_view *v = c->v;
	enum im_iq_kind k = im_iq_kind(v);

	/* XEP-0049 3: only the account's own resources. */
	if (c->to_kind != IM_TO_SELF) {
		im_error(c, "cancel", "forbidden");
		return;
	}
	if (!xml_slice_eq(xml_tok_local(v, child), "query") || k == IM_IQ_OTHER) {
		im_error(c, "modify", "bad-request");
		return;
	}
	uint32_t el = xml_first_child(v, child);
	if (el == XML_NO_TOK) {
		im_error(c, "modify", "bad-request");   /* XEP-0049 2: "bad format" is no stanza error */
		return;
	}
	if (k == IM_IQ_SET) {
		private_set(c, child);
		return;
	}
	/* One namespace per get (XEP-0049 2). */
	if (xml_next_sibling(v, el) != XML_NO_TOK) {
		im_error(c, "modify", "bad-request");
		return;
	}
	if (!private_ns_ok(xml_tok_ns(v, el))) {
		im_error(c, "modify", "not-acceptable");
		return;
	}
	private_get(c, el);
}

/* ---- XEP-0280 ----------------------------------------------------------------------- */

void carbons_iq(struct im_call *c, uint32_t child)
{
	struct xml_slice what = xml_tok_local(c->v, child);

	if (c->to_kind != IM_TO_SELF && c->to_kind != IM_TO_SERVER) {
		im_error(c, "cancel", "not-allowed");   /* XEP-0280 4: another client's carbons */
		return;
	}
	if (im_iq_kind(c->v) != IM_IQ_SET || !c->handle) {
		im_error(c, "modify", "bad-request");
		return;
	}
	if (xml_slice_eq(what, "enable"))
		im_result_flags(c, IM_SF_CARBONS, 0, NULL, 0);
	else if (xml_slice_eq(what, "disable"))
		im_result_flags(c, 0, IM_SF_CARBONS, NULL, 0);
	else
		im_error(c, "modify", "bad-request");
}
