/* OpenSSL glue: contexts, per-connection sessions over the transport's
 * buffers, channel bindings. See tls/tls.h.
 *
 * Transport: a BIO method of our own whose read takes ciphertext from the
 * struct tls_io lent to the current call and whose write appends to it. A
 * pair of memory BIOs would copy every byte once more in each direction and
 * keep up to two grown buffers per connection for its whole life; this BIO
 * owns no memory, so with SSL_MODE_RELEASE_BUFFERS an idle connection keeps
 * only OpenSSL's session state.
 *
 * Memory comes from OPENSSL_malloc, so a process that points OpenSSL at its
 * allocator (CRYPTO_set_mem_functions) gets our few bytes there too.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tls/tls.h"

/* TLS 1.2: forward secrecy and AEAD only (Mozilla's "intermediate" minus
 * DHE, whose parameters cost a handshake more than ECDHE for nothing).
 * TLS 1.3's suites are all fine; OpenSSL's default order stays. */
#define CIPHERS_TLS12 \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define GROUPS "X25519:P-256:P-384"

/* Partial writes: tls_conn_write reports each record as taken as soon as
 * it sits in io->out, rather than holding all of buf hostage until the
 * last record fits. Moving buffer: the caller compacts its plaintext
 * buffer between a TLS_WANT_WRITE and the retry. */
#define MODES (SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE | \
	       SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)

#define ALPN_WIRE_MAX 256

struct tls_vhost {
	char *domain;
	SSL_CTX *ctx;
};

struct tls_server {
	atomic_uint refs;
	size_t alpn_len;
	unsigned char alpn[ALPN_WIRE_MAX];   /* wire format: length-prefixed names */
	size_t nvh;
	struct tls_vhost vh[];
};

struct tls_client {
	SSL_CTX *ctx;
	bool verify;
};

enum {
	CONN_FATAL      = 1,  /* a fatal error happened; every call says TLS_ERROR */
	CONN_CLOSE_SENT = 2,  /* our close_notify is out of OpenSSL (in some io->out) */
};

struct tls_conn {
	SSL *ssl;
	struct tls_io *io;        /* lent for the current call, else NULL */
	struct tls_server *srv;   /* server side: a reference */
	unsigned long err;        /* OpenSSL's first error code after TLS_ERROR */
	const char *what;         /* which step failed */
	uint32_t vhost;           /* server side: index into srv->vh */
	uint8_t flags;
};

/* ---- the BIO over struct tls_io ---------------------------------------- */

static BIO_METHOD *io_method;
static CRYPTO_ONCE io_method_once = CRYPTO_ONCE_STATIC_INIT;

static int io_bio_read(BIO *b, char *buf, size_t len, size_t *got)
{
	struct tls_conn *c = BIO_get_data(b);
	struct tls_io *io = c->io;
	size_t avail = io ? io->in_len - io->in_used : 0;

	BIO_clear_retry_flags(b);
	*got = 0;
	if (avail == 0) {
		if (!io || !io->eof)
			BIO_set_retry_read(b);
		return 0;
	}
	if (len > avail)
		len = avail;
	memcpy(buf, io->in + io->in_used, len);
	io->in_used += len;
	*got = len;
	return 1;
}

static int io_bio_write(BIO *b, const char *buf, size_t len, size_t *put)
{
	struct tls_conn *c = BIO_get_data(b);
	struct tls_io *io = c->io;
	size_t room = io ? io->out_cap - io->out_len : 0;

	BIO_clear_retry_flags(b);
	*put = 0;
	if (room == 0) {
		BIO_set_retry_write(b);
		return 0;
	}
	if (len > room)
		len = room;
	memcpy(io->out + io->out_len, buf, len);
	io->out_len += len;
	*put = len;
	return 1;
}

static long io_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tls_conn *c = BIO_get_data(b);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		/* Nothing is held here: what was written is in io->out. */
		return 1;
	case BIO_CTRL_EOF:
		/* Lets OpenSSL tell a truncated stream from "no bytes yet". */
		return c && c->io && c->io->eof && c->io->in_used == c->io->in_len;
	default:
		return 0;
	}
}

static int io_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void io_method_make(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "stanza-tls-io");

	if (!m)
		return;
	if (!BIO_meth_set_read_ex(m, io_bio_read) || !BIO_meth_set_write_ex(m, io_bio_write) ||
	    !BIO_meth_set_ctrl(m, io_bio_ctrl) || !BIO_meth_set_create(m, io_bio_create)) {
		BIO_meth_free(m);
		return;
	}
	io_method = m;
}

static BIO_METHOD *io_method_get(void)
{
	if (!CRYPTO_THREAD_run_once(&io_method_once, io_method_make))
		return NULL;
	return io_method;
}

/* ---- errors -------------------------------------------------------------- */

/* Format "<fmt>: <reason>" into err and empty the error queue. The reason
 * is a system error if the queue holds one (a missing file says "No such
 * file or directory", not "system lib"), else OpenSSL's last word. */
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	unsigned long e, sys = 0, last = 0;
	const char *r = NULL;
	size_t n;
	va_list ap;

	while ((e = ERR_get_error()) != 0) {
		if (ERR_SYSTEM_ERROR(e) && !sys)
			sys = e;
		last = e;
	}
	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	n = strlen(err);
	if (sys)
		r = strerror(ERR_GET_REASON(sys));
	else if (last)
		r = ERR_reason_error_string(last);
	if ((sys || last) && n + 2 < errlen)
		snprintf(err + n, errlen - n, ": %s", r ? r : "(no reason)");
}

/* ---- contexts ------------------------------------------------------------ */

/* ALPN names to the wire format (each name prefixed by its length). */
static int alpn_wire(const char *const *names, size_t n, unsigned char *out, size_t cap, size_t *len)
{
	size_t used = 0;

	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(names[i]);
		if (l == 0 || l > 255 || used + 1 + l > cap)
			return -1;
		out[used++] = (unsigned char)l;
		memcpy(out + used, names[i], l);
		used += l;
	}
	*len = used;
	return 0;
}

static int ctx_common(SSL_CTX *ctx, uint16_t min, uint16_t max)
{
	if (min == 0)
		min = TLS_V1_2;
	if (min < TLS_V1_2 || (max && max < min))
		return -1;
	if (!SSL_CTX_set_min_proto_version(ctx, min) || !SSL_CTX_set_max_proto_version(ctx, max))
		return -1;
	/* No renegotiation: a CPU-exhaustion lever for clients, and RFC 9266
	 * leaves tls-exporter undefined where it is enabled. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, MODES);
	if (!SSL_CTX_set_cipher_list(ctx, CIPHERS_TLS12) || !SSL_CTX_set1_groups_list(ctx, GROUPS))
		return -1;
	return 0;
}

static bool label_eq(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (blen && b[blen - 1] == '.')
		blen--;
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
			return false;
	return true;
}

/* The vhost for an SNI name: the domain itself, else its parent (a
 * component or MUC at a subdomain is served with the parent's *.domain
 * certificate). -1: none. */
static long vhost_find(const struct tls_server *srv, const char *name)
{
	size_t len = strlen(name);
	const char *dot;

	if (len && name[len - 1] == '.')
		len--;
	for (size_t i = 0; i < srv->nvh; i++)
		if (label_eq(name, len, srv->vh[i].domain))
			return (long)i;
	dot = memchr(name, '.', len);
	if (!dot)
		return -1;
	for (size_t i = 0; i < srv->nvh; i++)
		if (label_eq(dot + 1, len - (size_t)(dot + 1 - name), srv->vh[i].domain))
			return (long)i;
	return -1;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
	struct tls_conn *c = SSL_get_app_data(ssl);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	long i;

	if (!c || !name)
		return SSL_TLSEXT_ERR_NOACK;
	i = vhost_find(c->srv, name);
	/* Unknown name: keep the default certificate and let the client judge. */
	if (i < 0)
		return SSL_TLSEXT_ERR_NOACK;
	if (i > 0 && !SSL_set_SSL_CTX(ssl, c->srv->vh[i].ctx)) {
		*alert = SSL_AD_INTERNAL_ERROR;
		return SSL_TLSEXT_ERR_ALERT_FATAL;
	}
	c->vhost = (uint32_t)i;
	return SSL_TLSEXT_ERR_OK;
}

/* Our own walk of the two lists rather than SSL_select_next_proto, whose
 * handling of malformed client lists has been the subject of fixes. */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	const struct tls_server *srv = arg;

	for (size_t s = 0; s < srv->alpn_len; s += 1u + srv->alpn[s]) {
		const unsigned char *name = srv->alpn + s + 1;
		unsigned char nlen = srv->alpn[s];
		for (unsigned int p = 0; p < inlen; p += 1u + in[p]) {
			if (p + 1u + in[p] > inlen)
				break;
			if (in[p] == nlen && memcmp(in + p + 1, name, nlen) == 0) {
				*out = in + p + 1;
				*outlen = nlen;
				return SSL_TLSEXT_ERR_OK;
			}
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static SSL_CTX *server_ctx_new(struct tls_server *srv, const struct tls_server_conf *conf,
			       const struct tls_vhost_conf *vc, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "stanzad";
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		set_err(err, errlen, "%s: SSL_CTX_new", vc->domain);
		return NULL;
	}
	if (ctx_common(ctx, conf->min_version, conf->max_version) < 0) {
		set_err(err, errlen, "%s: protocol versions or ciphers", vc->domain);
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, vc->cert_file) != 1) {
		set_err(err, errlen, "%s: certificate %s", vc->domain, vc->cert_file);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, vc->key_file, SSL_FILETYPE_PEM) != 1) {
		set_err(err, errlen, "%s: key %s", vc->domain, vc->key_file);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		set_err(err, errlen, "%s: key %s does not match certificate %s", vc->domain,
			vc->key_file, vc->cert_file);
		goto fail;
	}
	/* Resumption by tickets only: their state travels with the client, so
	 * the server keeps nothing per session and the workers share nothing.
	 * One ticket is enough for a client that reconnects now and then. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_set_num_tickets(ctx, 1);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
	SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
	SSL_CTX_set_tlsext_servername_arg(ctx, srv);
	if (srv->alpn_len)
		SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, srv);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static void server_free(struct tls_server *srv)
{
	for (size_t i = 0; i < srv->nvh; i++) {
		SSL_CTX_free(srv->vh[i].ctx);
		OPENSSL_free(srv->vh[i].domain);
	}
	OPENSSL_free(srv);
}

struct tls_server *tls_server_new(const struct tls_server_conf *conf, char *err, size_t errlen)
{
	struct tls_server *srv;

	if (conf->nvhosts == 0) {
		set_err(err, errlen, "no virtual host");
		return NULL;
	}
	if (!io_method_get()) {
		set_err(err, errlen, "BIO method");
		return NULL;
	}
	srv = OPENSSL_zalloc(sizeof *srv + conf->nvhosts * sizeof srv->vh[0]);
	if (!srv) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&srv->refs, 1);
	if (alpn_wire(conf->alpn, conf->nalpn, srv->alpn, sizeof srv->alpn, &srv->alpn_len) < 0) {
		set_err(err, errlen, "bad ALPN protocol list");
		goto fail;
	}
	for (size_t i = 0; i < conf->nvhosts; i++) {
		const struct tls_vhost_conf *vc = &conf->vhosts[i];
		srv->vh[i].domain = OPENSSL_strdup(vc->domain);
		if (!srv->vh[i].domain) {
			set_err(err, errlen, "out of memory");
			goto fail;
		}
		srv->nvh = i + 1;
		srv->vh[i].ctx = server_ctx_new(srv, conf, vc, err, errlen);
		if (!srv->vh[i].ctx)
			goto fail;
	}
	return srv;
fail:
	server_free(srv);
	return NULL;
}

void tls_server_ref(struct tls_server *srv)
{
	atomic_fetch_add_explicit(&srv->refs, 1, memory_order_relaxed);
}

void tls_server_unref(struct tls_server *srv)
{
	/* acq_rel: the freeing thread must see every other holder's last use. */
	if (srv && atomic_fetch_sub_explicit(&srv->refs, 1, memory_order_acq_rel) == 1)
		server_free(srv);
}

struct ssl_ctx_st *tls_server_ctx(struct tls_server *srv, size_t i)
{
	return i < srv->nvh ? srv->vh[i].ctx : NULL;
}

struct tls_client *tls_client_new(const struct tls_client_conf *conf, char *err, size_t errlen)
{
	unsigned char wire[ALPN_WIRE_MAX];
	size_t wlen = 0;
	struct tls_client *cl;

	if (!io_method_get()) {
		set_err(err, errlen, "BIO method");
		return NULL;
	}
	if (alpn_wire(conf->alpn, conf->nalpn, wire, sizeof wire, &wlen) < 0) {
		set_err(err, errlen, "bad ALPN protocol list");
		return NULL;
	}
	cl = OPENSSL_zalloc(sizeof *cl);
	if (!cl) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	cl->ctx = SSL_CTX_new(TLS_client_method());
	if (!cl->ctx) {
		set_err(err, errlen, "SSL_CTX_new");
		goto fail;
	}
	if (ctx_common(cl->ctx, conf->min_version, conf->max_version) < 0) {
		set_err(err, errlen, "protocol versions or ciphers");
		goto fail;
	}
	cl->verify = !conf->no_verify;
	if (cl->verify) {
		int ok = conf->ca_file ? SSL_CTX_load_verify_locations(cl->ctx, conf->ca_file, NULL)
				       : SSL_CTX_set_default_verify_paths(cl->ctx);
		if (ok != 1) {
			set_err(err, errlen, "trust anchors %s", conf->ca_file ? conf->ca_file : "(default)");
			goto fail;
		}
		SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_NONE, NULL);
	}
	/* SSL_CTX_set_alpn_protos returns 0 on success. */
	if (wlen && SSL_CTX_set_alpn_protos(cl->ctx, wire, (unsigned int)wlen) != 0) {
		set_err(err, errlen, "ALPN");
		goto fail;
	}
	return cl;
fail:
	SSL_CTX_free(cl->ctx);
	OPENSSL_free(cl);
	return NULL;
}

void tls_client_free(struct tls_client *cl)
{
	if (!cl)
		return;
	SSL_CTX_free(cl->ctx);
	OPENSSL_free(cl);
}

struct ssl_ctx_st *tls_client_ctx(struct tls_client *cl)
{
	return cl->ctx;
}

/* ---- connections ---------------------------------------------------------- */

static struct tls_conn *conn_new(SSL_CTX *ctx)
{
	struct tls_conn *c = OPENSSL_zalloc(sizeof *c);
	BIO *b;

	if (!c)
		return NULL;
	c->ssl = SSL_new(ctx);
	b = BIO_new(io_method);
	if (!c->ssl || !b) {
		BIO_free(b);
		SSL_free(c->ssl);
		OPENSSL_free(c);
		ERR_clear_error();
		return NULL;
	}
	BIO_set_data(b, c);
	SSL_set_bio(c->ssl, b, b);   /* one reference, owned by the SSL */
	SSL_set_app_data(c->ssl, c);
	return c;
}

struct tls_conn *tls_conn_server(struct tls_server *srv)
{
	struct tls_conn *c = conn_new(srv->vh[0].ctx);

	if (!c)
		return NULL;
	tls_server_ref(srv);
	c->srv = srv;
	SSL_set_accept_state(c->ssl);
	return c;
}

struct tls_conn *tls_conn_client(struct tls_client *cl, const char *host)
{
	struct tls_conn *c = conn_new(cl->ctx);

	if (!c)
		return NULL;
	SSL_set_connect_state(c->ssl);
	if (host && (!SSL_set_tlsext_host_name(c->ssl, host) ||
		     (cl->verify && !SSL_set1_host(c->ssl, host)))) {
		tls_conn_free(c);
		ERR_clear_error();
		return NULL;
	}
	return c;
}

void tls_conn_free(struct tls_conn *c)
{
	if (!c)
		return;
	SSL_free(c->ssl);
	tls_server_unref(c->srv);
	OPENSSL_free(c);
}

/* Lend io for one call. The error queue is emptied on the way in (another
 * module may have left entries, which would make SSL_get_error lie) and on
 * the way out (what matters was copied into c). */
static void enter(struct tls_conn *c, struct tls_io *io)
{
	ERR_clear_error();
	c->io = io;
}

static void leave(struct tls_conn *c)
{
	c->io = NULL;
	ERR_clear_error();
}

/* Map a failed SSL_* call's return value to our status; record fatal ones. */
static enum tls_status settle(struct tls_conn *c, int ret, const char *what)
{
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return TLS_CLOSED;
	default:
		break;
	}
	c->flags |= CONN_FATAL;
	c->what = what;
	c->err = ERR_peek_error();
	return TLS_ERROR;
}

enum tls_status tls_conn_handshake(struct tls_conn *c, struct tls_io *io)
{
	enum tls_status st = TLS_OK;
	int r;

	if (c->flags & CONN_FATAL)
		return TLS_ERROR;
	if (SSL_is_init_finished(c->ssl))
		return TLS_OK;
	enter(c, io);
	r = SSL_do_handshake(c->ssl);
	if (r != 1)
		st = settle(c, r, "handshake");
	leave(c);
	return st;
}

enum tls_status tls_conn_read(struct tls_conn *c, struct tls_io *io, void *buf, size_t cap, size_t *n)
{
	enum tls_status st = TLS_OK;
	const char *what;
	size_t got = 0;

	*n = 0;
	if (c->flags & CONN_FATAL)
		return TLS_ERROR;
	/* Before the call: a fatal error leaves OpenSSL "in init". */
	what = SSL_is_init_finished(c->ssl) ? "read" : "handshake";
	enter(c, io);
	while (got < cap) {
		size_t k;
		if (!SSL_read_ex(c->ssl, (char *)buf + got, cap - got, &k)) {
			st = settle(c, 0, what);
			break;
		}
		got += k;
	}
	leave(c);
	*n = got;
	/* A close or error behind the plaintext is sticky in OpenSSL (and in
	 * CONN_FATAL): the next call reports it. */
	return got ? TLS_OK : st;
}

enum tls_status tls_conn_write(struct tls_conn *c, struct tls_io *io, const void *buf, size_t len, size_t *n)
{
	enum tls_status st = TLS_OK;
	const char *what;
	size_t done = 0;

	*n = 0;
	if (c->flags & CONN_FATAL)
		return TLS_ERROR;
	/* Before the call: a fatal error leaves OpenSSL "in init". */
	what = SSL_is_init_finished(c->ssl) ? "write" : "handshake";
	enter(c, io);
	while (done < len) {
		size_t k;
		if (!SSL_write_ex(c->ssl, (const char *)buf + done, len - done, &k)) {
			st = settle(c, 0, what);
			break;
		}
		done += k;
	}
	leave(c);
	*n = done;
	return st;
}

enum tls_status tls_conn_shutdown(struct tls_conn *c, struct tls_io *io)
{
	enum tls_status st;
	int r;

	if (c->flags & CONN_FATAL)
		return TLS_ERROR;
	/* Calling SSL_shutdown again after ours is out would make it read,
	 * eating whatever application data is still queued. */
	if (c->flags & CONN_CLOSE_SENT)
		return (SSL_get_shutdown(c->ssl) & SSL_RECEIVED_SHUTDOWN) ? TLS_CLOSED : TLS_OK;
	/* Mid-handshake there is no session to close: just drop the TCP. */
	if (!SSL_is_init_finished(c->ssl)) {
		c->flags |= CONN_CLOSE_SENT;
		return TLS_OK;
	}
	enter(c, io);
	r = SSL_shutdown(c->ssl);
	if (r >= 0) {
		c->flags |= CONN_CLOSE_SENT;
		st = r == 1 ? TLS_CLOSED : TLS_OK;
	} else {
		st = settle(c, r, "shutdown");
	}
	leave(c);
	return st;
}

bool tls_conn_established(const struct tls_conn *c)
{
	return SSL_is_init_finished(c->ssl);
}

uint16_t tls_conn_version(const struct tls_conn *c)
{
	return SSL_is_init_finished(c->ssl) ? (uint16_t)SSL_version(c->ssl) : 0;
}

const char *tls_conn_alpn(const struct tls_conn *c, size_t *len)
{
	const unsigned char *p = NULL;
	unsigned int l = 0;

	SSL_get0_alpn_selected(c->ssl, &p, &l);
	*len = l;
	return l ? (const char *)p : NULL;
}

const char *tls_conn_servername(const struct tls_conn *c)
{
	return SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
}

const char *tls_conn_vhost(const struct tls_conn *c)
{
	return c->srv ? c->srv->vh[c->vhost].domain : NULL;
}

struct x509_st *tls_conn_peer_cert(const struct tls_conn *c)
{
	return SSL_get0_peer_certificate(c->ssl);
}

/* RFC 9266. The context is empty but present (use_context 1), as Prosody
 * (LuaSec) computes it; under TLS 1.3 present-and-empty and absent are the
 * same value, under TLS 1.2 they differ. */
static int cb_exporter(SSL *ssl, unsigned char *out, size_t cap, size_t *len)
{
	static const char label[] = "EXPORTER-Channel-Binding";
	int v = SSL_version(ssl);

	if (cap < 32)
		return -1;
	/* Without EMS a TLS 1.2 master secret can be forced equal on two
	 * connections (triple handshake), so the binding would bind nothing. */
	if (v != TLS1_3_VERSION && !(v == TLS1_2_VERSION && SSL_get_extms_support(ssl) == 1))
		return -1;
	if (SSL_export_keying_material(ssl, out, 32, label, sizeof label - 1,
				       (const unsigned char *)"", 0, 1) != 1)
		return -1;
	*len = 32;
	return 0;
}

/* RFC 5929 4.1: the server certificate's signature hash; MD5 and SHA-1
 * become SHA-256. Algorithms without a separate hash are not covered. */
static int cb_server_end_point(SSL *ssl, unsigned char *out, size_t cap, size_t *len)
{
	X509 *x = SSL_is_server(ssl) ? SSL_get_certificate(ssl) : SSL_get0_peer_certificate(ssl);
	int mdnid = NID_undef, pknid, secbits;
	uint32_t xflags;
	const EVP_MD *md;
	unsigned int l = 0;

	if (!x || !X509_get_signature_info(x, &mdnid, &pknid, &secbits, &xflags))
		return -1;
	if (mdnid == NID_md5 || mdnid == NID_sha1)
		mdnid = NID_sha256;
	md = mdnid == NID_undef ? NULL : EVP_get_digestbynid(mdnid);
	if (!md || (size_t)EVP_MD_get_size(md) > cap)
		return -1;
	if (!X509_digest(x, md, out, &l))
		return -1;
	*len = l;
	return 0;
}

/* RFC 5929 3.1, computed as OpenSSL-based peers do (see tls.h). */
static int cb_unique(SSL *ssl, unsigned char *out, size_t cap, size_t *len)
{
	int v = SSL_version(ssl);
	size_t n;

	/* Without EMS the same Finished can be forced on two TLS 1.2
	 * connections (triple handshake). */
	if (v != TLS1_3_VERSION && !(v == TLS1_2_VERSION && SSL_get_extms_support(ssl) == 1))
		return -1;
	if ((SSL_session_reused(ssl) != 0) != (SSL_is_server(ssl) != 0))
		n = SSL_get_peer_finished(ssl, out, cap);
	else
		n = SSL_get_finished(ssl, out, cap);
	if (n == 0 || n > cap)
		return -1;
	*len = n;
	return 0;
}

int tls_conn_channel_binding(const struct tls_conn *c, enum tls_cb_type type,
			     unsigned char *out, size_t cap, size_t *len)
{
	int r = -1;

	*len = 0;
	if ((c->flags & CONN_FATAL) || !SSL_is_init_finished(c->ssl))
		return -1;
	switch (type) {
	case TLS_CB_EXPORTER:
		r = cb_exporter(c->ssl, out, cap, len);
		break;
	case TLS_CB_SERVER_END_POINT:
		r = cb_server_end_point(c->ssl, out, cap, len);
		break;
	case TLS_CB_UNIQUE:
		r = cb_unique(c->ssl, out, cap, len);
		break;
	}
	ERR_clear_error();
	return r;
}

const char *tls_conn_error(const struct tls_conn *c, char *buf, size_t len)
{
	const char *reason = c->err ? ERR_reason_error_string(c->err) : NULL;
	long vr = SSL_get_verify_result(c->ssl);

	if (!(c->flags & CONN_FATAL))
		snprintf(buf, len, "no error");
	else if (!c->err)
		snprintf(buf, len, "%s: connection closed without close_notify", c->what);
	else if (vr != X509_V_OK)
		snprintf(buf, len, "%s: %s (%s)", c->what, reason ? reason : "error",
			 X509_verify_cert_error_string(vr));
	else
		snprintf(buf, len, "%s: %s", c->what, reason ? reason : "error");
	return buf;
}
