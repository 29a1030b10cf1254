/* Unit tests for tls/ (tls/tls.h): a client tls_conn and a server tls_conn
 * in one process, bytes shuttled between them by the harness below in
 * chosen chunk sizes (down to one byte in, one byte of room out), never a
 * socket. Certificates are made by tls_cert_ensure in a temporary
 * directory, so the generator is exercised by every test.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

static char dir[64];
static char path_buf[8][128];

/* ---- files --------------------------------------------------------------- */

static const char *path(int slot, const char *name)
{
	snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
	return path_buf[slot];
}

static void make_cert(const char *base, const char *domain)
{
	char cert[128], key[128], err[256];
	const char *doms[1] = { domain };

	snprintf(cert, sizeof cert, "%s/%s.crt", dir, base);
	snprintf(key, sizeof key, "%s/%s.key", dir, base);
	assert_int_equal(tls_cert_ensure(cert, key, doms, 1, err, sizeof err), 1);
}

static int setup_dir(void **state)
{
	strcpy(dir, "/tmp/stanza-tls-XXXXXX");
	assert_non_null(mkdtemp(dir));
	make_cert("a", "a.example");
	make_cert("b", "b.example");
	make_cert("a2", "a.example");   /* the same domain, renewed: for reload */
	return 0;
}

static int teardown_dir(void **state)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static X509 *load_cert(const char *file)
{
	FILE *f = fopen(file, "r");
	X509 *x;
	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

/* ---- contexts ------------------------------------------------------------ */

static const char *const alpn_c2s[] = { "xmpp-client" };

static struct tls_server *server_of(const char *first, const char *second, uint16_t maxv)
{
	char err[256];
	char c0[128], k0[128], c1[128], k1[128];
	struct tls_vhost_conf vh[2];
	struct tls_server_conf conf = { vh, second ? 2 : 1, alpn_c2s, 1, 0, maxv };
	struct tls_server *srv;

	snprintf(c0, sizeof c0, "%s/%s.crt", dir, first);
	snprintf(k0, sizeof k0, "%s/%s.key", dir, first);
	vh[0] = (struct tls_vhost_conf){ first[0] == 'a' ? "a.example" : "b.example", c0, k0 };
	if (second) {
		snprintf(c1, sizeof c1, "%s/%s.crt", dir, second);
		snprintf(k1, sizeof k1, "%s/%s.key", dir, second);
		vh[1] = (struct tls_vhost_conf){ second[0] == 'a' ? "a.example" : "b.example", c1, k1 };
	}
	srv = tls_server_new(&conf, err, sizeof err);
	if (!srv)
		fail_msg("tls_server_new: %s", err);
	return srv;
}

/* ca: file name under dir ("b.crt"), NULL for no verification. */
static struct tls_client *client_of(const char *ca, uint16_t maxv, const char *const *alpn, size_t nalpn)
{
	char err[256];
	struct tls_client_conf conf = { ca ? path(7, ca) : NULL, ca == NULL, alpn, nalpn, 0, maxv };
	struct tls_client *cl = tls_client_new(&conf, err, sizeof err);
	if (!cl)
		fail_msg("tls_client_new: %s", err);
	return cl;
}

/* ---- byte shuttle -------------------------------------------------------- */

struct q {
	unsigned char *buf;
	size_t head, tail, cap;
};

static void q_init(struct q *q, size_t cap)
{
	q->buf = malloc(cap);
	assert_non_null(q->buf);
	q->head = q->tail = 0;
	q->cap = cap;
}

static void q_fini(struct q *q)
{
	free(q->buf);
}

static size_t q_len(const struct q *q)
{
	return q->tail - q->head;
}

static void q_compact(struct q *q)
{
	if (q->head == 0)
		return;
	memmove(q->buf, q->buf + q->head, q->tail - q->head);
	q->tail -= q->head;
	q->head = 0;
}

/* One connection's view: bytes from the peer come in on `in`, ours go to
 * `out`. in_chunk / out_chunk bound what one call may consume / produce. */
struct end {
	struct tls_conn *c;
	struct q *in, *out;
	size_t in_chunk, out_chunk;
	bool eof;
};

static size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

static void io_begin(struct end *e, struct tls_io *io)
{
	q_compact(e->out);
	io->in = e->in->buf + e->in->head;
	io->in_len = min_sz(q_len(e->in), e->in_chunk);
	io->in_used = 0;
	io->out = e->out->buf + e->out->tail;
	io->out_cap = min_sz(e->out->cap - e->out->tail, e->out_chunk);
	io->out_len = 0;
	io->eof = e->eof && io->in_len == q_len(e->in);
}

static void io_end(struct end *e, const struct tls_io *io)
{
	assert_true(io->in_used <= io->in_len);
	assert_true(io->out_len <= io->out_cap);
	e->in->head += io->in_used;
	e->out->tail += io->out_len;
}

static enum tls_status hs_step(struct end *e)
{
	struct tls_io io;
	enum tls_status st;

	io_begin(e, &io);
	st = tls_conn_handshake(e->c, &io);
	io_end(e, &io);
	return st;
}

struct pair {
	struct q c2s, s2c;
	struct end cli, srv;
};

static void pair_init(struct pair *p, struct tls_client *cl, const char *host, struct tls_server *srv,
		      size_t in_chunk, size_t out_chunk)
{
	q_init(&p->c2s, 1 << 20);
	q_init(&p->s2c, 1 << 20);
	p->cli = (struct end){ tls_conn_client(cl, host), &p->s2c, &p->c2s, in_chunk, out_chunk, false };
	p->srv = (struct end){ tls_conn_server(srv), &p->c2s, &p->s2c, in_chunk, out_chunk, false };
	assert_non_null(p->cli.c);
	assert_non_null(p->srv.c);
}

static void pair_fini(struct pair *p)
{
	tls_conn_free(p->cli.c);
	tls_conn_free(p->srv.c);
	q_fini(&p->c2s);
	q_fini(&p->s2c);
}

static void report(const char *who, struct tls_conn *c)
{
	char buf[256];
	print_message("%s: %s\n", who, tls_conn_error(c, buf, sizeof buf));
}

/* Run both handshakes to completion. Returns false (and keeps the states)
 * if either side reports TLS_ERROR. */
static bool handshake(struct pair *p, enum tls_status *cst, enum tls_status *sst)
{
	enum tls_status a = TLS_WANT_READ, b = TLS_WANT_READ;

	for (int i = 0; i < 2000000; i++) {
		a = hs_step(&p->cli);
		b = hs_step(&p->srv);
		if (a == TLS_ERROR || b == TLS_ERROR)
			break;
		if (a == TLS_OK && b == TLS_OK && q_len(&p->c2s) == 0 && q_len(&p->s2c) == 0)
			break;
	}
	if (cst)
		*cst = a;
	if (sst)
		*sst = b;
	return a == TLS_OK && b == TLS_OK;
}

static void handshake_ok(struct pair *p)
{
	enum tls_status a, b;
	if (!handshake(p, &a, &b)) {
		report("client", p->cli.c);
		report("server", p->srv.c);
		fail_msg("handshake: client %d server %d", a, b);
	}
	assert_true(tls_conn_established(p->cli.c));
	assert_true(tls_conn_established(p->srv.c));
}

/* Move `total` bytes of a pattern from `from` to `to`: plaintext written
 * in wchunk pieces, read into rchunk-sized buffers, with the peer also
 * running (tickets, acks) so that both directions get pumped. Each write
 * presents its bytes from a different address than the last (a caller that
 * compacts its buffer between a TLS_WANT_WRITE and the retry). */
static void transfer(struct end *from, struct end *to, size_t total, size_t wchunk, size_t rchunk)
{
	unsigned char *data = malloc(total), *got = malloc(rchunk);
	unsigned char *stage = malloc(2 * wchunk + 8);
	size_t sent = 0, recvd = 0;
	long idle = 0;
	unsigned flip = 0;

	assert_non_null(data);
	assert_non_null(got);
	for (size_t i = 0; i < total; i++)
		data[i] = (unsigned char)(i * 131u + (i >> 9));
	while (recvd < total) {
		bool moved = false;
		struct tls_io io;
		size_t n;
		enum tls_status st;

		if (sent < total) {
			size_t k = min_sz(wchunk, total - sent);
			unsigned char *src = stage + (flip ^= 1) * (wchunk + 7);
			memcpy(src, data + sent, k);
			io_begin(from, &io);
			st = tls_conn_write(from->c, &io, src, k, &n);
			io_end(from, &io);
			assert_true(st == TLS_OK || st == TLS_WANT_WRITE);
			sent += n;
			moved |= n > 0 || io.out_len > 0;
		}
		io_begin(to, &io);
		st = tls_conn_read(to->c, &io, got, rchunk, &n);
		io_end(to, &io);
		if (st == TLS_ERROR)
			report("reader", to->c);
		assert_true(st == TLS_OK || st == TLS_WANT_READ || st == TLS_WANT_WRITE);
		if (n) {
			assert_true(recvd + n <= total);
			assert_memory_equal(got, data + recvd, n);
			recvd += n;
		}
		moved |= n > 0 || io.in_used > 0 || io.out_len > 0;
		/* The sender reads too (post-handshake messages for it). */
		io_begin(from, &io);
		st = tls_conn_read(from->c, &io, got, rchunk, &n);
		io_end(from, &io);
		assert_true(st == TLS_WANT_READ || st == TLS_WANT_WRITE);
		moved |= io.in_used > 0 || io.out_len > 0;
		if (!moved)
			assert_true(++idle < 16);
		else
			idle = 0;
	}
	assert_int_equal(sent, total);
	free(stage);
	free(data);
	free(got);
}

/* ---- tests --------------------------------------------------------------- */

static void check_handshake_and_data(uint16_t maxv, size_t in_chunk, size_t out_chunk, size_t total)
{
	struct tls_server *srv = server_of("a", NULL, 0);
	struct tls_client *cl = client_of("a.crt", maxv, alpn_c2s, 1);
	struct pair p;
	size_t len;
	const char *proto;

	pair_init(&p, cl, "a.example", srv, in_chunk, out_chunk);
	handshake_ok(&p);
	assert_int_equal(tls_conn_version(p.cli.c), maxv ? maxv : TLS_V1_3);
	assert_int_equal(tls_conn_version(p.srv.c), maxv ? maxv : TLS_V1_3);
	proto = tls_conn_alpn(p.srv.c, &len);
	assert_non_null(proto);
	assert_int_equal(len, 11);
	assert_memory_equal(proto, "xmpp-client", 11);
	proto = tls_conn_alpn(p.cli.c, &len);
	assert_non_null(proto);
	assert_memory_equal(proto, "xmpp-client", 11);

	transfer(&p.cli, &p.srv, total, 4099, 3001);
	transfer(&p.srv, &p.cli, total, 7919, 1237);
	transfer(&p.cli, &p.srv, 1, 1, 1);
	pair_fini(&p);
	tls_client_free(cl);
	tls_server_unref(srv);
}

static void test_tls13_bulk(void **state)
{
	check_handshake_and_data(TLS_V1_3, 1021, 777, 1 << 20);
	check_handshake_and_data(0, SIZE_MAX, SIZE_MAX, 1 << 20);
}

static void test_tls12_bulk(void **state)
{
	check_handshake_and_data(TLS_V1_2, 1021, 777, 1 << 20);
}

/* One byte in, one byte of room out, per call, handshake and data. */
static void test_one_byte(void **state)
{
	check_handshake_and_data(TLS_V1_3, 1, 1, 20000);
	check_handshake_and_data(TLS_V1_2, 1, 1, 20000);
}

static void sni_case(const char *host, const char *ca, const char *want_vhost)
{
	struct tls_server *srv = server_of("a", "b", 0);
	struct tls_client *cl = client_of(ca, 0, alpn_c2s, 1);
	struct pair p;
	X509 *peer;

	pair_init(&p, cl, host, srv, SIZE_MAX, SIZE_MAX);
	handshake_ok(&p);
	assert_string_equal(tls_conn_vhost(p.srv.c), want_vhost);
	if (host)
		assert_string_equal(tls_conn_servername(p.srv.c), host);
	else
		assert_null(tls_conn_servername(p.srv.c));
	peer = tls_conn_peer_cert(p.cli.c);
	assert_non_null(peer);
	assert_int_equal(X509_check_host(peer, want_vhost, 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(peer, strcmp(want_vhost, "a.example") ? "a.example" : "b.example",
					 0, 0, NULL), 0);
	assert_null(tls_conn_peer_cert(p.srv.c));
	pair_fini(&p);
	tls_client_free(cl);
	tls_server_unref(srv);
}

static void test_sni(void **state)
{
	sni_case("b.example", "b.crt", "b.example");
	sni_case("B.Example", "b.crt", "b.example");
	sni_case("a.example", "a.crt", "a.example");
	sni_case("conference.b.example", "b.crt", "b.example");   /* *.b.example */
	sni_case("unknown.test", NULL, "a.example");              /* the default */
	sni_case(NULL, NULL, "a.example");
}

/* Verification on: trusting only a's certificate, asking for b fails. */
static void test_verify_fails(void **state)
{
	struct tls_server *srv = server_of("a", "b", 0);
	struct tls_client *cl = client_of("a.crt", 0, alpn_c2s, 1);
	struct pair p;
	enum tls_status a, b;
	char buf[256];

	pair_init(&p, cl, "b.example", srv, SIZE_MAX, SIZE_MAX);
	assert_false(handshake(&p, &a, &b));
	assert_int_equal(a, TLS_ERROR);
	tls_conn_error(p.cli.c, buf, sizeof buf);
	assert_non_null(strstr(buf, "certificate"));
	print_message("expected: %s\n", buf);
	pair_fini(&p);
	tls_client_free(cl);
	tls_server_unref(srv);
}

static void test_alpn(void **state)
{
	static const char *const h2[] = { "h2" };
	static const char *const both[] = { "h2", "xmpp-client" };
	struct tls_server *srv = server_of("a", NULL, 0);
	struct tls_client *none = client_of(NULL, 0, NULL, 0);
	struct tls_client *wrong = client_of(NULL, 0, h2, 1);
	struct tls_client *two = client_of(NULL, 0, both, 2);
	struct pair p;
	enum tls_status a, b;
	size_t len;
	const char *proto;
	char err[256];

	/* No ALPN offered (a STARTTLS client): accepted, none selected. */
	pair_init(&p, none, "a.example", srv, SIZE_MAX, SIZE_MAX);
	handshake_ok(&p);
	assert_null(tls_conn_alpn(p.srv.c, &len));
	assert_int_equal(len, 0);
	pair_fini(&p);

	/* Only a protocol this listener does not speak: no_application_protocol. */
	pair_init(&p, wrong, "a.example", srv, SIZE_MAX, SIZE_MAX);
	assert_false(handshake(&p, &a, &b));
	assert_int_equal(b, TLS_ERROR);
	report("expected", p.srv.c);
	/* The client learns it from the alert. */
	assert_int_equal(hs_step(&p.cli), TLS_ERROR);
	tls_conn_error(p.cli.c, err, sizeof err);
	print_message("expected: %s\n", err);
	assert_non_null(strstr(err, "no application protocol"));
	pair_fini(&p);

	pair_init(&p, two, "a.example", srv, SIZE_MAX, SIZE_MAX);
	handshake_ok(&p);
	proto = tls_conn_alpn(p.cli.c, &len);
	assert_int_equal(len, 11);
	assert_memory_equal(proto, "xmpp-client", 11);
	pair_fini(&p);

	tls_client_free(none);
	tls_client_free(wrong);
	tls_client_free(two);
	tls_server_unref(srv);
}

static void cb_case(uint16_t maxv, bool no_ems, bool want_exporter)
{
	struct tls_server *srv = server_of("a", NULL, 0);
	struct tls_client *cl = client_of("a.crt", maxv, alpn_c2s, 1);
	struct pair p;
	unsigned char x[TLS_CB_MAX], y[TLS_CB_MAX], der_hash[32];
	size_t xl, yl;
	unsigned int hl;
	X509 *cert;

	if (no_ems)
		SSL_CTX_set_options(tls_client_ctx(cl), SSL_OP_NO_EXTENDED_MASTER_SECRET);
	pair_init(&p, cl, "a.example", srv, SIZE_MAX, SIZE_MAX);
	/* Not before the handshake. */
	assert_int_equal(tls_conn_channel_binding(p.srv.c, TLS_CB_EXPORTER, x, sizeof x, &xl), -1);
	handshake_ok(&p);

	if (want_exporter) {
		assert_int_equal(tls_conn_channel_binding(p.srv.c, TLS_CB_EXPORTER, x, sizeof x, &xl), 0);
		assert_int_equal(tls_conn_channel_binding(p.cli.c, TLS_CB_EXPORTER, y, sizeof y, &yl), 0);
		assert_int_equal(xl, 32);
		assert_int_equal(yl, 32);
		assert_memory_equal(x, y, 32);
	} else {
		assert_int_equal(tls_conn_channel_binding(p.srv.c, TLS_CB_EXPORTER, x, sizeof x, &xl), -1);
		assert_int_equal(tls_conn_channel_binding(p.cli.c, TLS_CB_EXPORTER, y, sizeof y, &yl), -1);
	}
	/* tls-unique follows the same availability rule; both sides compute
	 * the client's Finished (a full handshake), which is the value
	 * OpenSSL-based clients such as Python's ssl take. */
	if (want_exporter) {
		assert_int_equal(tls_conn_channel_binding(p.srv.c, TLS_CB_UNIQUE, x, sizeof x, &xl), 0);
		assert_int_equal(tls_conn_channel_binding(p.cli.c, TLS_CB_UNIQUE, y, sizeof y, &yl), 0);
		assert_true(xl >= 12);   /* a Finished verify_data */
		assert_int_equal(xl, yl);
		assert_memory_equal(x, y, xl);
	} else {
		assert_int_equal(tls_conn_channel_binding(p.srv.c, TLS_CB_UNIQUE, x, sizeof x, &xl), -1);
		assert_int_equal(tls_conn_channel_binding(p.cli.c, TLS_CB_UNIQUE, y, sizeof y, &yl), -1);
	}
	/* tls-server-end-point: SHA-256 (the cert is ecdsa-with-SHA256) of
	 * the DER, the same on both sides and equal to an independent hash. */
	assert_int_equal(tls_conn_channel_binding(p.srv.c, TLS_CB_SERVER_END_POINT, x, sizeof x, &xl), 0);
	assert_int_equal(tls_conn_channel_binding(p.cli.c, TLS_CB_SERVER_END_POINT, y, sizeof y, &yl), 0);
	assert_int_equal(xl, 32);
	assert_int_equal(yl, 32);
	assert_memory_equal(x, y, 32);
	cert = load_cert(path(0, "a.crt"));
	assert_int_equal(X509_digest(cert, EVP_sha256(), der_hash, &hl), 1);
	assert_memory_equal(x, der_hash, 32);
	X509_free(cert);

	/* Too small an output buffer is refused, not overrun. */
	assert_int_equal(tls_conn_channel_binding(p.srv.c, TLS_CB_SERVER_END_POINT, x, 16, &xl), -1);
	pair_fini(&p);
	tls_client_free(cl);
	tls_server_unref(srv);
}

static void test_channel_binding(void **state)
{
	cb_case(TLS_V1_3, false, true);
	cb_case(TLS_V1_2, false, true);    /* EMS is negotiated by default */
	cb_case(TLS_V1_2, true, false);    /* without EMS: no tls-exporter */
}

static void test_cert_files(void **state)
{
	const char *doms[] = { "example.net", "chat.example.org" };
	const char *cert = path(1, "gen.crt"), *key = path(2, "gen.key");
	char err[256], before[4096], after[4096];
	struct stat st;
	X509 *x;
	EVP_PKEY *pk;
	FILE *f;
	size_t n1, n2;
	char group[32];
	size_t glen;

	assert_int_equal(tls_cert_ensure(cert, key, doms, 2, err, sizeof err), 1);
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	x = load_cert(cert);
	f = fopen(key, "r");
	assert_non_null(f);
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(pk);
	assert_int_equal(X509_check_private_key(x, pk), 1);
	assert_int_equal(EVP_PKEY_get_group_name(pk, group, sizeof group, &glen), 1);
	assert_string_equal(group, "prime256v1");
	assert_int_equal(X509_get_version(x), X509_VERSION_3);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	assert_int_equal(X509_check_host(x, "example.net", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "muc.example.net", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "chat.example.org", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "up.chat.example.org", 0, 0, NULL), 1);
	assert_int_equal(X509_check_host(x, "example.com", 0, 0, NULL), 0);
	assert_int_equal(X509_check_host(x, "a.b.example.net", 0, 0, NULL), 0);
	assert_false(X509_get_extension_flags(x) & EXFLAG_CA);
	assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
	assert_false(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
	assert_true(X509_get_extended_key_usage(x) & XKU_SSL_SERVER);
	assert_true(X509_cmp_time(X509_get0_notAfter(x), NULL) > 0);
	assert_true(X509_cmp_time(X509_get0_notBefore(x), NULL) < 0);
	EVP_PKEY_free(pk);
	X509_free(x);

	/* Existing files are left alone. */
	f = fopen(cert, "r");
	n1 = fread(before, 1, sizeof before, f);
	fclose(f);
	assert_int_equal(tls_cert_ensure(cert, key, doms, 2, err, sizeof err), 0);
	f = fopen(cert, "r");
	n2 = fread(after, 1, sizeof after, f);
	fclose(f);
	assert_int_equal(n1, n2);
	assert_memory_equal(before, after, n1);

	/* Only one of the two: refuse to guess. */
	assert_int_equal(unlink(key), 0);
	assert_int_equal(tls_cert_ensure(cert, key, doms, 2, err, sizeof err), -1);
	print_message("expected: %s\n", err);
	assert_int_equal(access(key, F_OK), -1);

	/* Names that are not DNS names. */
	{
		const char *bad[] = { "a,DNS:evil.example" };
		assert_int_equal(tls_cert_ensure(path(3, "x.crt"), path(4, "x.key"), bad, 1, err, sizeof err), -1);
		assert_int_equal(access(path(3, "x.crt"), F_OK), -1);
	}
}

/* Reload: a new server from renewed files, swapped in; a connection made
 * under the old one keeps working after the old one's last public
 * reference is dropped, new connections get the new certificate. */
static void test_reload(void **state)
{
	struct tls_server *old = server_of("a", NULL, 0), *cur;
	struct tls_client *cl = client_of(NULL, 0, alpn_c2s, 1);
	struct pair p1, p2;
	unsigned char h1[TLS_CB_MAX], h2[TLS_CB_MAX];
	size_t l1, l2;

	pair_init(&p1, cl, "a.example", old, 333, 555);
	handshake_ok(&p1);
	assert_int_equal(tls_conn_channel_binding(p1.cli.c, TLS_CB_SERVER_END_POINT, h1, sizeof h1, &l1), 0);

	cur = server_of("a2", NULL, 0);
	tls_server_unref(old);          /* after the RCU grace period */

	transfer(&p1.cli, &p1.srv, 100000, 999, 777);
	transfer(&p1.srv, &p1.cli, 100000, 999, 777);

	pair_init(&p2, cl, "a.example", cur, SIZE_MAX, SIZE_MAX);
	handshake_ok(&p2);
	assert_int_equal(tls_conn_channel_binding(p2.cli.c, TLS_CB_SERVER_END_POINT, h2, sizeof h2, &l2), 0);
	assert_int_equal(l1, l2);
	assert_memory_not_equal(h1, h2, l1);

	pair_fini(&p1);                 /* frees the old server */
	transfer(&p2.cli, &p2.srv, 10000, 999, 777);
	pair_fini(&p2);
	tls_client_free(cl);
	tls_server_unref(cur);
}

static void garbage_case(const unsigned char *bytes, size_t len, bool verbose)
{
	struct tls_server *srv = server_of("a", NULL, 0);
	struct tls_conn *c = tls_conn_server(srv);
	unsigned char out[4096], plain[64];
	struct tls_io io = { bytes, len, 0, out, sizeof out, 0, false };
	char buf[256];
	size_t n;

	assert_int_equal(tls_conn_handshake(c, &io), TLS_ERROR);
	tls_conn_error(c, buf, sizeof buf);
	assert_non_null(strstr(buf, "handshake"));
	if (verbose)
		print_message("expected: %s (alert %zu bytes)\n", buf, io.out_len);
	/* Sticky. */
	io = (struct tls_io){ bytes, len, 0, out, sizeof out, 0, false };
	assert_int_equal(tls_conn_read(c, &io, plain, sizeof plain, &n), TLS_ERROR);
	assert_int_equal(n, 0);
	assert_int_equal(tls_conn_write(c, &io, "x", 1, &n), TLS_ERROR);
	assert_int_equal(tls_conn_shutdown(c, &io), TLS_ERROR);
	tls_conn_free(c);
	tls_server_unref(srv);
}

static void test_garbage(void **state)
{
	static const char http[] = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
	static const char xmpp[] = "<?xml version='1.0'?><stream:stream to='a.example'>";
	unsigned char rnd[4096];
	/* A TLS record header that claims 64 KiB: too long for a record. */
	static const unsigned char big[] = { 0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00 };
	/* A ClientHello record holding a truncated, inconsistent message. */
	static const unsigned char hello[] = { 0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04,
					       0x03, 0x03, 0x00, 0x00 };

	garbage_case((const unsigned char *)http, sizeof http - 1, true);
	garbage_case((const unsigned char *)xmpp, sizeof xmpp - 1, true);
	garbage_case(big, sizeof big, true);
	garbage_case(hello, sizeof hello, true);
	srand(42);
	for (int k = 0; k < 64; k++) {
		for (size_t i = 0; i < sizeof rnd; i++)
			rnd[i] = (unsigned char)rand();
		garbage_case(rnd, sizeof rnd, k == 0);
	}
}

/* A flipped bit in an application record: bad record MAC, not a crash. */
static void test_tamper(void **state)
{
	struct tls_server *srv = server_of("a", NULL, 0);
	struct tls_client *cl = client_of(NULL, 0, alpn_c2s, 1);
	struct pair p;
	struct tls_io io;
	unsigned char plain[256];
	size_t n;

	pair_init(&p, cl, "a.example", srv, SIZE_MAX, SIZE_MAX);
	handshake_ok(&p);
	io_begin(&p.cli, &io);
	assert_int_equal(tls_conn_write(p.cli.c, &io, "<presence/>", 11, &n), TLS_OK);
	io_end(&p.cli, &io);
	p.c2s.buf[p.c2s.tail - 3] ^= 0x40;
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_read(p.srv.c, &io, plain, sizeof plain, &n), TLS_ERROR);
	io_end(&p.srv, &io);
	report("expected", p.srv.c);
	pair_fini(&p);
	tls_client_free(cl);
	tls_server_unref(srv);
}

/* close_notify, client first then server; and TCP EOF without one. */
static void test_close(void **state)
{
	struct tls_server *srv = server_of("a", NULL, 0);
	struct tls_client *cl = client_of(NULL, 0, alpn_c2s, 1);
	struct pair p;
	struct tls_io io;
	unsigned char plain[256];
	size_t n;
	char buf[256];

	pair_init(&p, cl, "a.example", srv, SIZE_MAX, SIZE_MAX);
	handshake_ok(&p);

	/* Client: last data, then close_notify (no room first). */
	io_begin(&p.cli, &io);
	assert_int_equal(tls_conn_write(p.cli.c, &io, "</stream:stream>", 16, &n), TLS_OK);
	io_end(&p.cli, &io);
	p.cli.out_chunk = 0;
	io_begin(&p.cli, &io);
	assert_int_equal(tls_conn_shutdown(p.cli.c, &io), TLS_WANT_WRITE);
	io_end(&p.cli, &io);
	p.cli.out_chunk = SIZE_MAX;
	io_begin(&p.cli, &io);
	assert_int_equal(tls_conn_shutdown(p.cli.c, &io), TLS_OK);
	io_end(&p.cli, &io);
	assert_true(io.out_len > 0);

	/* Server: the data, then TLS_CLOSED, sticky. */
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_read(p.srv.c, &io, plain, sizeof plain, &n), TLS_OK);
	io_end(&p.srv, &io);
	assert_int_equal(n, 16);
	assert_memory_equal(plain, "</stream:stream>", 16);
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_read(p.srv.c, &io, plain, sizeof plain, &n), TLS_CLOSED);
	io_end(&p.srv, &io);
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_read(p.srv.c, &io, plain, sizeof plain, &n), TLS_CLOSED);
	io_end(&p.srv, &io);
	/* TLS 1.3 allows writing after the peer's close: our closing tag. */
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_write(p.srv.c, &io, "</stream:stream>", 16, &n), TLS_OK);
	io_end(&p.srv, &io);
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_shutdown(p.srv.c, &io), TLS_CLOSED);
	io_end(&p.srv, &io);
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_shutdown(p.srv.c, &io), TLS_CLOSED);
	io_end(&p.srv, &io);

	/* Client: the server's data, then its close_notify. */
	io_begin(&p.cli, &io);
	assert_int_equal(tls_conn_read(p.cli.c, &io, plain, sizeof plain, &n), TLS_OK);
	io_end(&p.cli, &io);
	assert_int_equal(n, 16);
	io_begin(&p.cli, &io);
	assert_int_equal(tls_conn_read(p.cli.c, &io, plain, sizeof plain, &n), TLS_CLOSED);
	io_end(&p.cli, &io);
	io_begin(&p.cli, &io);
	assert_int_equal(tls_conn_shutdown(p.cli.c, &io), TLS_CLOSED);
	io_end(&p.cli, &io);
	assert_int_equal(q_len(&p.c2s), 0);
	pair_fini(&p);

	/* Server closes first, client answers. */
	pair_init(&p, cl, "a.example", srv, SIZE_MAX, SIZE_MAX);
	handshake_ok(&p);
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_shutdown(p.srv.c, &io), TLS_OK);
	io_end(&p.srv, &io);
	io_begin(&p.cli, &io);
	assert_int_equal(tls_conn_read(p.cli.c, &io, plain, sizeof plain, &n), TLS_CLOSED);
	io_end(&p.cli, &io);
	io_begin(&p.cli, &io);
	assert_int_equal(tls_conn_shutdown(p.cli.c, &io), TLS_CLOSED);
	io_end(&p.cli, &io);
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_read(p.srv.c, &io, plain, sizeof plain, &n), TLS_CLOSED);
	io_end(&p.srv, &io);
	assert_int_equal(tls_conn_shutdown(p.srv.c, &io), TLS_CLOSED);
	pair_fini(&p);

	/* TCP EOF with no close_notify: truncation, an error. */
	pair_init(&p, cl, "a.example", srv, SIZE_MAX, SIZE_MAX);
	handshake_ok(&p);
	p.srv.eof = true;
	io_begin(&p.srv, &io);
	assert_int_equal(tls_conn_read(p.srv.c, &io, plain, sizeof plain, &n), TLS_ERROR);
	io_end(&p.srv, &io);
	tls_conn_error(p.srv.c, buf, sizeof buf);
	print_message("expected: %s\n", buf);
	pair_fini(&p);

	/* EOF in the middle of the handshake. */
	pair_init(&p, cl, "a.example", srv, SIZE_MAX, SIZE_MAX);
	assert_int_equal(hs_step(&p.cli), TLS_WANT_READ);
	p.c2s.tail -= 10;
	p.srv.eof = true;
	assert_int_equal(hs_step(&p.srv), TLS_ERROR);
	report("expected", p.srv.c);
	pair_fini(&p);

	tls_client_free(cl);
	tls_server_unref(srv);
}

/* Bad configurations are refused with a reason. */
static void test_bad_config(void **state)
{
	char err[256];
	struct tls_vhost_conf vh = { "a.example", path(0, "a.crt"), path(1, "b.key") };
	struct tls_server_conf conf = { &vh, 1, NULL, 0, 0, 0 };
	static const char *const empty[] = { "" };

	assert_null(tls_server_new(&conf, err, sizeof err));
	print_message("expected: %s\n", err);
	assert_non_null(strstr(err, "mismatch"));
	vh.key_file = path(1, "missing.key");
	assert_null(tls_server_new(&conf, err, sizeof err));
	print_message("expected: %s\n", err);
	vh.key_file = path(1, "a.key");
	conf.min_version = 0x0301;
	assert_null(tls_server_new(&conf, err, sizeof err));
	conf.min_version = 0;
	conf.alpn = empty;
	conf.nalpn = 1;
	assert_null(tls_server_new(&conf, err, sizeof err));
	conf.nvhosts = 0;
	assert_null(tls_server_new(&conf, err, sizeof err));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cert_files),
		cmocka_unit_test(test_tls13_bulk),
		cmocka_unit_test(test_tls12_bulk),
		cmocka_unit_test(test_one_byte),
		cmocka_unit_test(test_sni),
		cmocka_unit_test(test_verify_fails),
		cmocka_unit_test(test_alpn),
		cmocka_unit_test(test_channel_binding),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_tamper),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_bad_config),
	};
	return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
