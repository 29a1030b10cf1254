/* One XMPP client connection of the bench (see xclient.h).
 *
 * SCRAM and PBKDF2: the client-side SaltedPassword is cached per account
 * (engine.scache, keyed by mechanism, iterations and salt), as real clients
 * do (Conversations, Gajim and Dino keep the derived keys), so a login storm
 * measures the server's work, not the bench's PBKDF2. The server still does
 * its full part of every exchange. STANZA_BENCH_SCRAM_NOCACHE=1 in the
 * environment turns the cache off (a first-login-of-a-fresh-client figure).
 */
#include "bench/harness/xclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>

#include "bench/harness/engine.h"
#include "net/net.h"
#include "parser/xml.h"
#include "tls/tls.h"
#include "util/b64.h"

#define STEP_TIMEOUT_NS (15ull * NS_PER_S)

#define NS_STREAMS "http://etherx.jabber.org/streams"
#define NS_TLS     "urn:ietf:params:xml:ns:xmpp-tls"
#define NS_SASL    "urn:ietf:params:xml:ns:xmpp-sasl"
#define NS_BIND    "urn:ietf:params:xml:ns:xmpp-bind"

struct scram_state {
	uint8_t mech;               /* enum bench_mech */
	uint8_t step;               /* 0: client-first sent, 1: final sent */
	uint16_t cfb_len;           /* client-first-bare */
	uint16_t nonce_len;
	char cfb[192];
	uint8_t server_sig[32];
	char nonce[32];
};

static bool scram_nocache = false;
static bool scram_nocache_read = false;

/* ---- buffers ------------------------------------------------------------- */

static int xbuf_room(struct xbuf *b, size_t n)
{
	if (b->cap - b->len >= n)
		return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n)
		cap *= 2;
	char *p = realloc(b->p, cap);
	if (!p)
		return -1;
	b->p = p;
	b->cap = (uint32_t)cap;
	return 0;
}

static void xbuf_drop(struct xbuf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= (uint32_t)n;
}

static void xbuf_free(struct xbuf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* ---- names --------------------------------------------------------------- */

size_t xc_username(const struct eng_thread *t, uint32_t i, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s%u", t->eng->o->user_prefix, i);
	return n < 0 ? 0 : (size_t)n;
}

size_t xc_jid(const struct eng_thread *t, uint32_t i, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "%s%u@%s", t->eng->o->user_prefix, i, t->eng->o->domain);
	return n < 0 ? 0 : (size_t)n;
}

bool xc_attr(const char *p, size_t n, const char *name, const char **val, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *end = p + n;
	const char *gt = memchr(p, '>', n);
	if (gt)
		end = gt;
	for (const char *s = p; s + nl + 3 <= end; s++) {
		s = memchr(s, name[0], (size_t)(end - s));
		if (!s || s + nl + 3 > end)
			return false;
		if ((s[-1] != ' ' && s[-1] != '\t' && s[-1] != '\n' && s[-1] != '\r') || memcmp(s, name, nl))
			continue;
		const char *q = s + nl;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q >= end || *q != '=')
			continue;
		q++;
		while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
			q++;
		if (q >= end || (*q != '\'' && *q != '"'))
			continue;
		const char *v = q + 1;
		const char *ve = memchr(v, *q, (size_t)(end - v));
		if (!ve)
			return false;
		*val = v;
		*vlen = (size_t)(ve - v);
		return true;
	}
	return false;
}

/* ---- output --------------------------------------------------------------- */

char *xc_reserve(struct xc *c, size_t n)
{
	if (xbuf_room(&c->out, n))
		return NULL;
	return c->out.p + c->out.len;
}

void xc_commit(struct xc *c, size_t n)
{
	c->out.len += (uint32_t)n;
	eng_dirty(c->t, c);
}

void xc_send(struct xc *c, const char *p, size_t n)
{
	char *d = xc_reserve(c, n);
	if (!d) {
		xc_close(c, ERR_CLOSED);
		return;
	}
	memcpy(d, p, n);
	xc_commit(c, n);
}

static void send_str(struct xc *c, const char *s)
{
	xc_send(c, s, strlen(s));
}

static void send_header(struct xc *c)
{
	char h[512];
	int n = snprintf(h, sizeof(h),
			 "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
			 "xmlns:stream='" NS_STREAMS "' to='%s' version='1.0'>",
			 c->t->eng->o->domain);
	xc_send(c, h, (size_t)n);
	c->deadline = now_ns() + STEP_TIMEOUT_NS;
}

/* Ciphertext room in wq for one TLS call. */
static int wq_io(struct xc *c, struct tls_io *io, size_t need)
{
	if (xbuf_room(&c->wq, need))
		return -1;
	io->out = (unsigned char *)c->wq.p + c->wq.len;
	io->out_cap = c->wq.cap - c->wq.len;
	io->out_len = 0;
	return 0;
}

void xc_flush(struct xc *c)
{
	if (c->state == XC_DEAD || c->state == XC_CONNECTING)
		return;
	struct xbuf *b = &c->out;
	if (c->tls && c->out.len) {
		size_t off = 0;
		while (off < c->out.len) {
			struct tls_io io = { 0 };
			size_t n = 0;
			size_t left = c->out.len - off;
			if (wq_io(c, &io, left + (left / 16384 + 1) * 64 + 64)) {
				xc_close(c, ERR_CLOSED);
				return;
			}
			enum tls_status st = tls_conn_write(c->tls, &io, c->out.p + off, left, &n);
			c->wq.len += (uint32_t)io.out_len;
			off += n;
			if (st == TLS_OK || st == TLS_WANT_WRITE)
				continue;
			if (st == TLS_WANT_READ)  /* still handshaking: keep the rest */
				break;
			xc_close(c, ERR_TLS);
			return;
		}
		xbuf_drop(&c->out, off);
	}
	if (c->tls)
		b = &c->wq;
	size_t done = 0;
	if (b->len) {
		/* A short count or -EAGAIN: the rest waits for WRITABLE. */
		struct iovec iov = { b->p, b->len };
		ssize_t w = net_sendv(c->t->loop, c->conn, &iov, 1);
		if (w >= 0) {
			done = (size_t)w;
		} else if (w != -EAGAIN) {
			xc_close(c, ERR_CLOSED);
			return;
		}
		if (done < b->len)
			c->want_out = 1;
	}
	xbuf_drop(b, done);
	if (done == b->len || !b->len)
		c->want_out = b->len != 0;
	if (!c->keep_tx) {
		if (!c->out.len && c->out.cap)
			xbuf_free(&c->out);
		if (!c->wq.len && c->wq.cap)
			xbuf_free(&c->wq);
	}
}

/* ---- closing --------------------------------------------------------------- */

void xc_close(struct xc *c, int err)
{
	if (c->state == XC_DEAD)
		return;
	struct eng_thread *t = c->t;
	if (err < 0) {
		if (c->state >= XC_HEADER && !c->raw) {
			send_str(c, "</stream:stream>");
			xc_flush(c);
			if (c->state == XC_DEAD)
				return;
		}
	} else {
		eng_err(t, (enum bench_err)err);
	}
	if (c->state < XC_READY)
		eng_count(&t->failed, 1);
	if (t->eng->sc->on_close)
		t->eng->sc->on_close(c, err);
	c->state = XC_DEAD;
	c->dead_err = (uint8_t)(err + 1);
	if (c->open)
		net_close(t->loop, c->conn);
	c->open = 0;
	eng_remove(t, c);
	c->dead_next = t->dead;
	t->dead = c;
}

void xc_free(struct xc *c)
{
	tls_conn_free(c->tls);
	free(c->scram);
	xbuf_free(&c->rx);
	xbuf_free(&c->out);
	xbuf_free(&c->wq);
	free(c->seen);
	free(c);
}

/* ---- SCRAM ----------------------------------------------------------------- */

static const EVP_MD *scram_md(uint8_t mech, size_t *len)
{
	if (mech == MECH_SCRAM_SHA_1) {
		*len = 20;
		return EVP_sha1();
	}
	*len = 32;
	return EVP_sha256();
}

static void send_auth(struct xc *c)
{
	const struct bench_opts *o = c->t->eng->o;
	char user[128], raw[512], enc[800], msg[1000];
	size_t ul = xc_username(c->t, c->user, user, sizeof(user));
	size_t rl;
	const char *mname;

	if (o->mech == MECH_PLAIN) {
		size_t pl = strlen(o->password);
		raw[0] = '\0';
		memcpy(raw + 1, user, ul);
		raw[1 + ul] = '\0';
		memcpy(raw + 2 + ul, o->password, pl);
		rl = 2 + ul + pl;
		mname = "PLAIN";
	} else {
		struct scram_state *s = calloc(1, sizeof(*s));
		if (!s) {
			xc_close(c, ERR_AUTH);
			return;
		}
		uint8_t rnd[18];
		for (size_t i = 0; i < sizeof(rnd); i += 6) {
			uint64_t x = eng_rand(c->t);
			memcpy(rnd + i, &x, 6);
		}
		s->mech = (uint8_t)o->mech;
		s->nonce_len = (uint16_t)b64_encode(rnd, sizeof(rnd), s->nonce, sizeof(s->nonce));
		/* RFC 5802 saslname: ',' and '=' are escaped as =2C and =3D. */
		char esc[3 * sizeof(user) + 1];   /* every byte escaped: never truncated */
		size_t el = 0;
		for (const char *u = user; *u && el + 4 < sizeof(esc); u++) {
			if (*u == ',' || *u == '=') {
				memcpy(esc + el, *u == ',' ? "=2C" : "=3D", 3);
				el += 3;
			} else {
				esc[el++] = *u;
			}
		}
		esc[el] = '\0';
		int n = snprintf(s->cfb, sizeof(s->cfb), "n=%s,r=%s", esc, s->nonce);
		if (n < 0 || (size_t)n >= sizeof(s->cfb)) {
			free(s);
			xc_close(c, ERR_AUTH);   /* a user name too long for this client */
			return;
		}
		s->cfb_len = (uint16_t)n;
		rl = (size_t)snprintf(raw, sizeof(raw), "n,,%s", s->cfb);
		c->scram = s;
		mname = o->mech == MECH_SCRAM_SHA_1 ? "SCRAM-SHA-1" : "SCRAM-SHA-256";
	}
	b64_encode((const uint8_t *)raw, rl, enc, sizeof(enc));
	int n = snprintf(msg, sizeof(msg), "<auth xmlns='" NS_SASL "' mechanism='%s'>%s</auth>", mname, enc);
	xc_send(c, msg, (size_t)n);
	c->state = XC_AUTH;
	c->deadline = now_ns() + STEP_TIMEOUT_NS;
}

static void salted_password(struct xc *c, const EVP_MD *md, size_t hl, const uint8_t *salt, size_t saltlen,
			    unsigned iter, uint8_t *out)
{
	struct engine *e = c->t->eng;
	const char *pw = e->o->password;
	struct scram_cache *ce = NULL;
	uint8_t key[32];

	if (!scram_nocache_read) {
		const char *v = getenv("STANZA_BENCH_SCRAM_NOCACHE");
		scram_nocache = v && *v && *v != '0';
		scram_nocache_read = true;
	}
	if (e->scache && !scram_nocache) {
		EVP_MD_CTX *h = EVP_MD_CTX_new();
		uint8_t hdr[5] = { c->scram->mech, (uint8_t)(iter >> 24), (uint8_t)(iter >> 16), (uint8_t)(iter >> 8), (uint8_t)iter };
		unsigned kl = 0;
		EVP_DigestInit_ex(h, EVP_sha256(), NULL);
		EVP_DigestUpdate(h, hdr, sizeof(hdr));
		EVP_DigestUpdate(h, salt, saltlen);
		EVP_DigestFinal_ex(h, key, &kl);
		EVP_MD_CTX_free(h);
		ce = &e->scache[c->user % e->nscache];
		if (ce->valid && !memcmp(ce->key, key, sizeof(ce->key))) {
			memcpy(out, ce->salted, hl);
			return;
		}
	}
	PKCS5_PBKDF2_HMAC(pw, (int)strlen(pw), salt, (int)saltlen, (int)iter, md, (int)hl, out);
	if (ce) {
		memcpy(ce->key, key, sizeof(ce->key));
		memcpy(ce->salted, out, hl);
		ce->valid = 1;
	}
}

/* server-first in text[0..len) (base64): answer with client-final. */
static int scram_challenge(struct xc *c, const char *text, size_t len)
{
	struct scram_state *s = c->scram;
	uint8_t sf[512], salt[128];
	size_t sfl, saltl;
	if (!s || s->step != 0 || b64_decode(text, len, sf, sizeof(sf) - 1, &sfl))
		return -1;
	sf[sfl] = 0;
	const char *r = NULL, *sa = NULL, *it = NULL;
	size_t rl = 0, sal = 0;
	for (char *p = (char *)sf; p && *p;) {
		char *comma = strchr(p, ',');
		size_t fl = comma ? (size_t)(comma - p) : strlen(p);
		if (fl >= 2 && p[1] == '=') {
			if (p[0] == 'r') { r = p + 2; rl = fl - 2; }
			else if (p[0] == 's') { sa = p + 2; sal = fl - 2; }
			else if (p[0] == 'i') it = p + 2;
		}
		p = comma ? comma + 1 : NULL;
	}
	if (!r || !sa || !it || rl <= s->nonce_len || memcmp(r, s->nonce, s->nonce_len))
		return -1;
	if (b64_decode(sa, sal, salt, sizeof(salt), &saltl))
		return -1;
	unsigned iter = (unsigned)strtoul(it, NULL, 10);
	if (iter == 0 || iter > 10000000)
		return -1;

	size_t hl;
	const EVP_MD *md = scram_md(s->mech, &hl);
	uint8_t salted[32], ckey[32], skey[32], stored[32], csig[32], proof[32];
	unsigned ol;
	salted_password(c, md, hl, salt, saltl, iter, salted);
	HMAC(md, salted, (int)hl, (const uint8_t *)"Client Key", 10, ckey, &ol);
	HMAC(md, salted, (int)hl, (const uint8_t *)"Server Key", 10, skey, &ol);
	EVP_Digest(ckey, hl, stored, &ol, md, NULL);

	char cfwp[256], am[1024];
	int cl = snprintf(cfwp, sizeof(cfwp), "c=biws,r=%.*s", (int)rl, r);
	int aml = snprintf(am, sizeof(am), "%.*s,%s,%s", (int)s->cfb_len, s->cfb, (const char *)sf, cfwp);
	if (cl < 0 || (size_t)cl >= sizeof(cfwp) || aml < 0 || (size_t)aml >= sizeof(am))
		return -1;
	HMAC(md, stored, (int)hl, (const uint8_t *)am, (size_t)aml, csig, &ol);
	HMAC(md, skey, (int)hl, (const uint8_t *)am, (size_t)aml, s->server_sig, &ol);
	for (size_t i = 0; i < hl; i++)
		proof[i] = ckey[i] ^ csig[i];
	char pb[64], fin[400], enc[600], msg[700];
	b64_encode(proof, hl, pb, sizeof(pb));
	int fl = snprintf(fin, sizeof(fin), "%s,p=%s", cfwp, pb);
	b64_encode((const uint8_t *)fin, (size_t)fl, enc, sizeof(enc));
	int ml = snprintf(msg, sizeof(msg), "<response xmlns='" NS_SASL "'>%s</response>", enc);
	xc_send(c, msg, (size_t)ml);
	s->step = 1;
	OPENSSL_cleanse(salted, sizeof(salted));
	return 0;
}

static int scram_success(struct xc *c, const char *text, size_t len)
{
	struct scram_state *s = c->scram;
	if (!s)
		return 0;   /* PLAIN */
	uint8_t d[256], v[64];
	size_t dl, vl, hl;
	scram_md(s->mech, &hl);
	if (s->step != 1 || b64_decode(text, len, d, sizeof(d) - 1, &dl))
		return -1;
	d[dl] = 0;
	if (dl < 2 || d[0] != 'v' || d[1] != '=')
		return -1;
	const char *end = strchr((const char *)d, ',');
	size_t el = end ? (size_t)(end - (const char *)d) : dl;
	if (b64_decode((const char *)d + 2, el - 2, v, sizeof(v), &vl) || vl != hl || CRYPTO_memcmp(v, s->server_sig, hl))
		return -1;
	return 0;
}

/* ---- TLS -------------------------------------------------------------------- */

static void start_tls(struct xc *c)
{
	struct engine *e = c->t->eng;
	c->tls = tls_conn_client(e->tls_cl, e->o->domain);
	if (!c->tls) {
		xc_close(c, ERR_TLS);
		return;
	}
	c->deadline = now_ns() + STEP_TIMEOUT_NS;
	struct tls_io io = { 0 };
	if (wq_io(c, &io, 16384)) {
		xc_close(c, ERR_TLS);
		return;
	}
	enum tls_status st = tls_conn_handshake(c->tls, &io);
	c->wq.len += (uint32_t)io.out_len;
	if (st == TLS_ERROR)
		xc_close(c, ERR_TLS);
	else
		eng_dirty(c->t, c);
}

static void tls_up(struct xc *c)
{
	c->secure = 1;
	xml_framer_reset(&c->fr);
	c->rx.len = 0;
	c->state = XC_HEADER;
	send_header(c);
}

/* ---- input ------------------------------------------------------------------ */

static void send_bind(struct xc *c)
{
	send_str(c, "<iq type='set' id='bind1'><bind xmlns='" NS_BIND "'><resource>b</resource></bind></iq>");
	c->state = XC_BIND;
	c->deadline = now_ns() + STEP_TIMEOUT_NS;
}

static bool has_child(const struct xml_view *v, uint32_t elem, const char *local, const char *ns)
{
	for (uint32_t k = xml_first_child(v, elem); k != XML_NO_TOK; k = xml_next_sibling(v, k))
		if (xml_slice_eq(xml_tok_local(v, k), local) && xml_slice_eq(xml_tok_ns(v, k), ns))
			return true;
	return false;
}

static struct xml_slice first_text(const struct xml_view *v)
{
	struct xml_slice s = { "", 0 };
	if (v->ntok > 1u + v->tok[0].nattr && v->tok[1 + v->tok[0].nattr].type == XML_TOK_TEXT)
		s = xml_tok_raw(v, 1 + v->tok[0].nattr);
	return s;
}

/* A stanza before the session is up: the handshake's. */
static void handshake_stanza(struct xc *c, const char *p, size_t n)
{
	struct eng_thread *t = c->t;
	struct xml_view *v = &t->view;
	const struct bench_opts *o = t->eng->o;

	if (xml_view_build(v, &c->ns, p, n)) {
		xc_close(c, ERR_STREAM);
		return;
	}
	struct xml_slice name = xml_tok_local(v, 0), ns = xml_tok_ns(v, 0);
	if (xml_slice_eq(name, "error") && xml_slice_eq(ns, NS_STREAMS)) {
		xc_close(c, ERR_STREAM);
		return;
	}
	switch (c->state) {
	case XC_HEADER:
		if (!xml_slice_eq(name, "features"))
			return;
		if (!c->secure && o->tls == TLS_STARTTLS) {
			if (!has_child(v, 0, "starttls", NS_TLS)) {
				xc_close(c, ERR_TLS);
				return;
			}
			send_str(c, "<starttls xmlns='" NS_TLS "'/>");
			c->state = XC_STARTTLS;
			c->deadline = now_ns() + STEP_TIMEOUT_NS;
		} else if (!c->authed) {
			send_auth(c);
		} else {
			send_bind(c);
		}
		return;
	case XC_STARTTLS:
		if (xml_slice_eq(name, "proceed")) {
			c->state = XC_TLS;
			xml_framer_reset(&c->fr);
			start_tls(c);
		} else {
			xc_close(c, ERR_TLS);
		}
		return;
	case XC_AUTH: {
		struct xml_slice txt = first_text(v);
		if (xml_slice_eq(name, "challenge")) {
			if (scram_challenge(c, txt.ptr, txt.len))
				xc_close(c, ERR_AUTH);
		} else if (xml_slice_eq(name, "success")) {
			if (scram_success(c, txt.ptr, txt.len)) {
				xc_close(c, ERR_AUTH);
				return;
			}
			free(c->scram);
			c->scram = NULL;
			c->authed = 1;
			xml_framer_reset(&c->fr);
			c->state = XC_HEADER;
			send_header(c);
		} else {
			xc_close(c, ERR_AUTH);
		}
		return;
	}
	case XC_BIND:
		if (xml_slice_eq(name, "iq")) {
			uint32_t ty = xml_attr_find(v, 0, "type", NULL);
			if (ty != XML_NO_TOK && xml_slice_eq(xml_tok_raw(v, ty), "result")) {
				c->state = XC_READY;
				c->deadline = 0;
				eng_count(&t->ready, 1);
				if (t->eng->sc->on_ready)
					t->eng->sc->on_ready(c);
			} else {
				xc_close(c, ERR_BIND);
			}
		}
		return;
	default:
		return;
	}
}

/* Frame plaintext: p[0..n) continues c->rx. */
static void feed_plain(struct xc *c, const char *p, size_t n)
{
	const char *buf = p;
	size_t len = n;
	if (c->rx.len) {
		if (xbuf_room(&c->rx, n)) {
			xc_close(c, ERR_CLOSED);
			return;
		}
		memcpy(c->rx.p + c->rx.len, p, n);
		c->rx.len += (uint32_t)n;
		buf = c->rx.p;
		len = c->rx.len;
	}
	size_t off = 0;
	const struct scenario *sc = c->t->eng->sc;
	for (;;) {
		struct xml_span sp;
		uint8_t st0 = c->state;
		bool reset = false;
		enum xml_event ev = xml_frame(&c->fr, buf + off, len - off, &sp);
		const char *item = buf + off + sp.start;
		size_t il = sp.end - sp.start;
		switch (ev) {
		case XML_AGAIN:
			off += sp.end;
			goto keep;
		case XML_STREAM_OPEN:
			if (xml_view_header(&c->t->view, &c->ns, item, il)) {
				xc_close(c, ERR_STREAM);
				return;
			}
			if (c->raw && c->state == XC_HEADER) {
				c->state = XC_READY;
				c->deadline = 0;
				eng_count(&c->t->ready, 1);
				if (sc->on_ready)
					sc->on_ready(c);
			}
			break;
		case XML_STANZA:
			if (c->state == XC_READY) {
				if (il > 13 && !memcmp(item, "<stream:error", 13)) {
					xc_close(c, ERR_STREAM);
					return;
				}
				sc->on_stanza(c, item, il);
			} else {
				handshake_stanza(c, item, il);
				/* a new stream (or TLS) begins: what followed belongs to it */
				reset = c->state != st0 && (c->state == XC_HEADER || c->state == XC_TLS);
			}
			break;
		case XML_STREAM_CLOSE:
			xc_close(c, ERR_CLOSED);
			return;
		case XML_ERROR:
			xc_close(c, ERR_STREAM);
			return;
		}
		off += sp.end;
		if (c->state == XC_DEAD)
			return;
		if (reset) {
			off = len;
			break;
		}
	}
keep:
	if (buf == c->rx.p) {
		xbuf_drop(&c->rx, off);
		if (!c->rx.len)
			xbuf_free(&c->rx);
	} else if (off < len) {
		if (xbuf_room(&c->rx, len - off)) {
			xc_close(c, ERR_CLOSED);
			return;
		}
		memcpy(c->rx.p, buf + off, len - off);
		c->rx.len = (uint32_t)(len - off);
	}
}

static void feed_cipher(struct xc *c, const char *p, size_t n, bool eof)
{
	struct eng_thread *t = c->t;
	size_t off = 0;
	for (;;) {
		struct tls_io io = { 0 };
		io.in = (const unsigned char *)p + off;
		io.in_len = n - off;
		io.eof = eof;
		if (wq_io(c, &io, 4096)) {
			xc_close(c, ERR_TLS);
			return;
		}
		enum tls_status st;
		size_t m = 0;
		bool was_up = tls_conn_established(c->tls);
		if (!was_up)
			st = tls_conn_handshake(c->tls, &io);
		else
			st = tls_conn_read(c->tls, &io, t->plain, 65536, &m);
		off += io.in_used;
		if (io.out_len) {
			c->wq.len += (uint32_t)io.out_len;
			eng_dirty(t, c);
		}
		switch (st) {
		case TLS_OK:
			if (!was_up)
				tls_up(c);
			else
				feed_plain(c, t->plain, m);
			if (c->state == XC_DEAD)
				return;
			continue;
		case TLS_WANT_WRITE:
			if (xbuf_room(&c->wq, c->wq.cap)) {
				xc_close(c, ERR_TLS);
				return;
			}
			continue;
		case TLS_WANT_READ:
			return;
		case TLS_CLOSED:
			xc_close(c, ERR_CLOSED);
			return;
		case TLS_ERROR:
			xc_close(c, eof ? ERR_CLOSED : ERR_TLS);
			return;
		}
	}
}

static void connected(struct xc *c)
{
	const struct bench_opts *o = c->t->eng->o;
	c->deadline = now_ns() + STEP_TIMEOUT_NS;
	if (c->raw) {
		char line[64];
		int n = snprintf(line, sizeof(line), "STANZA-BENCH-RAW %u %u\n", c->aux >> 1, c->aux & 1u);
		xc_send(c, line, (size_t)n);
		c->state = XC_HEADER;
		send_header(c);
		return;
	}
	if (o->tls == TLS_DIRECT) {
		c->state = XC_TLS_DIRECT;
		start_tls(c);
		return;
	}
	c->state = XC_HEADER;
	send_header(c);
}

void xc_on_event(struct xc *c, int type)
{
	struct eng_thread *t = c->t;
	switch (type) {
	case NET_EV_CONNECTED:
		if (c->state == XC_CONNECTING)
			connected(c);
		return;
	case NET_EV_WRITABLE:
		if (c->want_out)
			eng_dirty(t, c);
		return;
	case NET_EV_READABLE:
		break;
	default:
		return;
	}
	for (;;) {
		ssize_t r = net_recv(t->loop, c->conn, t->cin, 65536);
		if (r > 0 && c->state != XC_CONNECTING) {
			if (c->tls)
				feed_cipher(c, t->cin, (size_t)r, false);
			else
				feed_plain(c, t->cin, (size_t)r);
			if (c->state == XC_DEAD)
				return;
			if (r < 65536)
				break;   /* drained: READABLE comes again with new bytes */
			continue;
		}
		if (r == -EAGAIN)
			break;
		if (c->state == XC_CONNECTING) {
			xc_close(c, ERR_CONNECT);   /* refused, unreachable, timed out */
			return;
		}
		if (r == 0 && c->tls)
			feed_cipher(c, t->cin, 0, true);
		if (c->state != XC_DEAD)
			xc_close(c, ERR_CLOSED);
		return;
	}
}

struct xc *xc_new(struct eng_thread *t, uint32_t user, bool raw, uint32_t raw_pair, unsigned raw_side)
{
	struct engine *e = t->eng;
	struct xc *c = calloc(1, sizeof(*c));
	if (!c) {
		eng_err(t, ERR_CONNECT);
		return NULL;
	}
	c->t = t;
	c->user = user;
	c->raw = raw;
	c->aux = raw ? (raw_pair << 1) | (raw_side & 1u) : 0;
	c->t_start = now_ns();
	c->deadline = c->t_start + STEP_TIMEOUT_NS;
	xml_framer_init(&c->fr, NULL);
	struct net_addr src, *from = NULL;
	if (e->loopback) {
		/* 127.0.0.0/8 is all ours: spread the source address so that
		 * tens of thousands of connections do not run out of ports. */
		uint32_t k = t->conn_seq++ / 20000u;
		memset(&src, 0, sizeof(src));
		src.family = NET_AF_INET;
		src.addr[0] = 127;
		src.addr[1] = (uint8_t)(1u + t->id % 250u);
		src.addr[2] = (uint8_t)(k / 250u % 250u);
		src.addr[3] = (uint8_t)(1u + k % 250u);
		from = &src;
	}
	/* Events from here on carry c (the loop never reports one before
	 * the next poll). */
	if (net_connect(t->loop, &e->to, from, c, &c->conn) < 0)
		goto fail;
	c->open = 1;
	if (eng_add(t, c))
		goto fail;
	return c;
fail:
	eng_err(t, ERR_CONNECT);
	eng_count(&t->failed, 1);
	if (c->open)
		net_close(t->loop, c->conn);
	free(c);
	return NULL;
}
