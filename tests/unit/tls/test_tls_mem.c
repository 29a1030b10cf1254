/* The heap of an idle, established server-side tls_conn.
 *
 * OpenSSL is pointed at a counting allocator before it allocates anything
 * (CRYPTO_set_mem_functions must come first). A connection pair is
 * established, data goes both ways, then the server connection is freed:
 * the live bytes that go away with it are what one idle connection costs
 * (the tls_conn, the SSL with its session and ciphers; not the shared
 * SSL_CTX). Measured for TLS 1.3 and 1.2, and without
 * SSL_MODE_RELEASE_BUFFERS to show what the mode saves. The figures are
 * printed; the assertion is a loose ceiling so a regression is caught.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "tls/tls.h"

/* ---- counting allocator ---------------------------------------------------- */

#define HDR 16   /* keeps malloc's alignment */

static size_t live_bytes, live_blocks;

static void *count_malloc(size_t n, const char *file, int line)
{
	unsigned char *p = malloc(n + HDR);
	if (!p)
		return NULL;
	memcpy(p, &n, sizeof n);
	live_bytes += n;
	live_blocks++;
	return p + HDR;
}

static void count_free(void *ptr, const char *file, int line)
{
	unsigned char *p = ptr;
	size_t n;
	if (!p)
		return;
	p -= HDR;
	memcpy(&n, p, sizeof n);
	live_bytes -= n;
	live_blocks--;
	free(p);
}

static void *count_realloc(void *ptr, size_t n, const char *file, int line)
{
	unsigned char *p = ptr, *q;
	size_t old = 0;

	if (!p)
		return count_malloc(n, file, line);
	p -= HDR;
	memcpy(&old, p, sizeof old);
	q = realloc(p, n + HDR);
	if (!q)
		return NULL;
	memcpy(q, &n, sizeof n);
	live_bytes += n - old;
	return q + HDR;
}

/* ---- harness --------------------------------------------------------------- */

static char dir[64];

struct side {
	struct tls_conn *c;
	unsigned char *in;
	size_t *in_len;
	unsigned char *out;
	size_t *out_len;
};

#define BUF (256 * 1024)
static unsigned char c2s[BUF], s2c[BUF];
static size_t c2s_len, s2c_len;

static enum tls_status call(struct side *s, int op, const void *data, size_t len, size_t *n)
{
	struct tls_io io = { s->in, *s->in_len, 0, s->out + *s->out_len, BUF - *s->out_len, 0, false };
	unsigned char plain[BUF];
	enum tls_status st;

	*n = 0;
	if (op == 0)
		st = tls_conn_handshake(s->c, &io);
	else if (op == 1)
		st = tls_conn_read(s->c, &io, plain, sizeof plain, n);
	else
		st = tls_conn_write(s->c, &io, data, len, n);
	memmove(s->in, s->in + io.in_used, *s->in_len - io.in_used);
	*s->in_len -= io.in_used;
	*s->out_len += io.out_len;
	return st;
}

struct result {
	size_t bytes, blocks;
};

static struct result measure(uint16_t version, bool release)
{
	char cert[128], key[128], err[256];
	struct tls_vhost_conf vh = { "a.example", cert, key };
	static const char *const alpn[] = { "xmpp-client" };
	struct tls_server_conf sconf = { &vh, 1, alpn, 1, 0, 0 };
	struct tls_client_conf cconf = { NULL, true, alpn, 1, 0, version };
	struct tls_server *srv;
	struct tls_client *cl;
	struct side cli, svr;
	size_t n, before_bytes, before_blocks;
	struct result r;
	static unsigned char payload[64 * 1024];

	snprintf(cert, sizeof cert, "%s/a.crt", dir);
	snprintf(key, sizeof key, "%s/a.key", dir);
	srv = tls_server_new(&sconf, err, sizeof err);
	assert_non_null(srv);
	if (!release)
		SSL_CTX_clear_mode(tls_server_ctx(srv, 0), SSL_MODE_RELEASE_BUFFERS);
	cl = tls_client_new(&cconf, err, sizeof err);
	assert_non_null(cl);
	c2s_len = s2c_len = 0;
	cli = (struct side){ tls_conn_client(cl, "a.example"), s2c, &s2c_len, c2s, &c2s_len };
	svr = (struct side){ tls_conn_server(srv), c2s, &c2s_len, s2c, &s2c_len };
	for (int i = 0; i < 100; i++) {
		enum tls_status a = call(&cli, 0, NULL, 0, &n), b = call(&svr, 0, NULL, 0, &n);
		assert_true(a != TLS_ERROR && b != TLS_ERROR);
		if (a == TLS_OK && b == TLS_OK && !c2s_len && !s2c_len)
			break;
	}
	assert_true(tls_conn_established(svr.c));
	/* Traffic both ways, so the record buffers have been used (and, with
	 * the mode, released) and the client has taken its ticket. */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(call(&cli, 2, payload, sizeof payload, &n), TLS_OK);
		while (c2s_len)
			call(&svr, 1, NULL, 0, &n);
		assert_int_equal(call(&svr, 2, payload, sizeof payload, &n), TLS_OK);
		while (s2c_len)
			call(&cli, 1, NULL, 0, &n);
	}
	before_bytes = live_bytes;
	before_blocks = live_blocks;
	tls_conn_free(svr.c);
	r.bytes = before_bytes - live_bytes;
	r.blocks = before_blocks - live_blocks;
	tls_conn_free(cli.c);
	tls_client_free(cl);
	tls_server_unref(srv);
	return r;
}

static void test_idle_memory(void **state)
{
	struct result r13 = measure(0, true), r12 = measure(TLS_V1_2, true);
	struct result k13 = measure(0, false), k12 = measure(TLS_V1_2, false);

	print_message("idle server tls_conn, TLS 1.3, buffers released: %zu bytes in %zu blocks\n",
		      r13.bytes, r13.blocks);
	print_message("idle server tls_conn, TLS 1.2, buffers released: %zu bytes in %zu blocks\n",
		      r12.bytes, r12.blocks);
	print_message("idle server tls_conn, TLS 1.3, buffers kept:     %zu bytes in %zu blocks\n",
		      k13.bytes, k13.blocks);
	print_message("idle server tls_conn, TLS 1.2, buffers kept:     %zu bytes in %zu blocks\n",
		      k12.bytes, k12.blocks);
	assert_true(r13.bytes < k13.bytes);
	assert_true(r13.bytes < 16 * 1024);
	assert_true(r12.bytes < 16 * 1024);
}

int main(void)
{
	const char *doms[] = { "a.example" };
	char cert[128], key[128], err[256], cmd[128];
	int rc;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_memory),
	};

	if (!CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free)) {
		fprintf(stderr, "CRYPTO_set_mem_functions: OpenSSL allocated before main\n");
		return 1;
	}
	strcpy(dir, "/tmp/stanza-tlsmem-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	snprintf(cert, sizeof cert, "%s/a.crt", dir);
	snprintf(key, sizeof key, "%s/a.key", dir);
	if (tls_cert_ensure(cert, key, doms, 1, err, sizeof err) != 1) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	return rc;
}
