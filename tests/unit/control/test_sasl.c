/* control/sasl: mechanisms, base64, SASLprep, PLAIN, SCRAM.
 *
 * The SCRAM client in this file is written against OpenSSL directly (its
 * own PBKDF2, HMAC and base64 via EVP_EncodeBlock), so that a mistake in
 * the module's crypto cannot cancel out against the same mistake here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "control/sasl.h"

static const uint8_t secret[SASL_SECRET_LEN] = "0123456789abcdef0123456789abcdef";

/* ---- helpers ------------------------------------------------------------ */

static size_t b64dec(const char *s, uint8_t *out, size_t cap)
{
	size_t n;
	assert_int_equal(sasl_b64_decode(s, strlen(s), out, cap, &n), SASL_OK);
	return n;
}

static void cred_for(struct sasl_scram_cred *c, enum sasl_hash h, const char *pass,
                     const char *salt_b64, uint32_t iter)
{
	uint8_t salt[64];
	size_t sl = b64dec(salt_b64, salt, sizeof salt);
	assert_int_equal(sasl_scram_derive(c, h, pass, strlen(pass), salt, sl, iter), SASL_OK);
}

static void assert_b64(const uint8_t *bin, size_t len, const char *want)
{
	char buf[256];
	assert_int_not_equal(sasl_b64_encode(bin, len, buf, sizeof buf), 0);
	assert_string_equal(buf, want);
}

static enum sasl_err start(struct sasl_scram *st, enum sasl_mech m, unsigned cb_avail,
                           const char *msg)
{
	struct sasl_names nm;
	return sasl_scram_start(st, m, cb_avail, msg, strlen(msg), &nm);
}

static enum sasl_err finish(struct sasl_scram *st, const char *msg, const uint8_t *cb,
                            size_t cb_len, char *out, size_t *out_len)
{
	return sasl_scram_finish(st, msg, strlen(msg), cb, cb_len, out, SASL_SCRAM_FINAL_MAX,
	                         out_len);
}

/* ---- RFC examples ------------------------------------------------------- */

struct vector {
	enum sasl_mech mech;
	enum sasl_hash hash;
	const char *salt, *cnonce, *snonce;
	const char *stored, *server;  /* base64 of StoredKey, ServerKey */
	const char *proof, *verifier;
};

static void run_vector(const struct vector *v)
{
	struct sasl_scram_cred cred;
	cred_for(&cred, v->hash, "pencil", v->salt, 4096);
	size_t hl = sasl_hash_len(v->hash);
	assert_b64(cred.stored_key, hl, v->stored);
	assert_b64(cred.server_key, hl, v->server);

	char cf[128], sf_want[256], cfin[512], out[SASL_SCRAM_FIRST_MAX];
	snprintf(cf, sizeof cf, "n,,n=user,r=%s", v->cnonce);
	struct sasl_scram st;
	struct sasl_names nm;
	assert_int_equal(sasl_scram_start(&st, v->mech, 0, cf, strlen(cf), &nm), SASL_OK);
	assert_string_equal(nm.user, "user");
	assert_int_equal(nm.user_len, 4);
	assert_int_equal(nm.authzid_len, 0);
	assert_int_equal(sasl_scram_cb_type(&st), SASL_CB_NONE);

	size_t n;
	assert_int_equal(sasl_scram_challenge_nonce(&st, &cred, v->snonce, strlen(v->snonce),
	                                            out, sizeof out, &n), SASL_OK);
	snprintf(sf_want, sizeof sf_want, "r=%s%s,s=%s,i=4096", v->cnonce, v->snonce, v->salt);
	assert_int_equal(n, strlen(sf_want));
	assert_memory_equal(out, sf_want, n);

	snprintf(cfin, sizeof cfin, "c=biws,r=%s%s,p=%s", v->cnonce, v->snonce, v->proof);
	assert_int_equal(finish(&st, cfin, NULL, 0, out, &n), SASL_OK);
	out[n] = '\0';
	assert_string_equal(out, v->verifier);
}

/* RFC 5802 5. */
static void test_rfc5802_sha1(void **state)
{
	(void)state;
	static const struct vector v = {
		SASL_MECH_SCRAM_SHA_1, SASL_SHA1, "QSXCR+Q6sek8bf92",
		"fyko+d2lbbFgONRv9qkxdawL", "3rfcNHYJY1ZVvWVs7j",
		"6dlGYMOdZcOPutkcNY8U2g7vK9Y=", "D+CSWLOshSulAsxiupA+qs2/fTE=",
		"v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=", "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
	};
	run_vector(&v);
}

/* RFC 7677 3. */
static void test_rfc7677_sha256(void **state)
{
	(void)state;
	static const struct vector v = {
		SASL_MECH_SCRAM_SHA_256, SASL_SHA256, "W22ZaJ0SNY7soEsUEjb6gQ==",
		"rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
		"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	};
	run_vector(&v);
}

/* No RFC example exists for SHA-512. The RFC 7677 inputs (user, pencil,
 * same nonces and salt, i=4096) run through SHA-512; expected values were
 * computed with Python 3's hashlib.pbkdf2_hmac('sha512', ...), hmac and
 * hashlib.sha512 following RFC 5802 3, by a script that also reproduces
 * the SHA-1 and SHA-256 examples above. */
static void test_sha512_vector(void **state)
{
	(void)state;
	static const struct vector v = {
		SASL_MECH_SCRAM_SHA_512, SASL_SHA512, "W22ZaJ0SNY7soEsUEjb6gQ==",
		"rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
		"6AAub3065EYRmyFpM2RNwqK+eGnrkYuEWbXn19LsEmBqzu8QaCXNc1FwpnX9NhH2hK/60dzj9DoO5DvVkOHbvg==",
		"jZHbYjC1aHh0/hKbxyBuGFjDrgjgKTT1esA7awWiKcRZ0o/0b1yWEebBeSVkkCFewf91nLDfKF24mvD5nmE6rA==",
		"gMGXRcevScNtxZ6/8lQYpGtnsNAc3mGcmNomv+xnoOMw+3R2xNJdMNnzMlTN8PPC6wdp6dybEmDYXYTxwnYPJQ==",
		"v=ZQnYEgWQMFmmsM8aQMF0nDDCy/AgCzkwk8CmMZYcMg0vSVlKDanekLtifDSeVGT4+5ZxXnJq199RVG2rR7N7Zw==",
	};
	run_vector(&v);
}

/* ---- a SCRAM client ----------------------------------------------------- */

struct client {
	enum sasl_hash h;
	const EVP_MD *md;
	size_t hl;
	char gs2[128];
	char first[256];        /* client-first-message */
	const char *bare;       /* into first */
	char final[1024];
	uint8_t server_sig[64];
};

static const EVP_MD *client_md(enum sasl_hash h)
{
	return h == SASL_SHA1 ? EVP_sha1() : h == SASL_SHA256 ? EVP_sha256() : EVP_sha512();
}

static void client_first(struct client *c, enum sasl_hash h, const char *gs2, const char *user,
                         const char *cnonce)
{
	memset(c, 0, sizeof *c);
	c->h = h;
	c->md = client_md(h);
	c->hl = (size_t)EVP_MD_get_size(c->md);
	snprintf(c->gs2, sizeof c->gs2, "%s", gs2);
	snprintf(c->first, sizeof c->first, "%sn=%s,r=%s", gs2, user, cnonce);
	c->bare = c->first + strlen(gs2);
}

/* From server-first sf[0..sf_len), build client-final with the given
 * password and channel-binding data. Tamper: flip a bit of the proof. */
static void client_final(struct client *c, const char *sf, size_t sf_len, const char *pass,
                         const uint8_t *cb, size_t cb_len, int tamper)
{
	char s[SASL_SCRAM_FIRST_MAX + 1];
	memcpy(s, sf, sf_len);
	s[sf_len] = '\0';
	char *r = strstr(s, "r="), *sp = strstr(s, ",s="), *ip = strstr(s, ",i=");
	assert_non_null(r);
	assert_non_null(sp);
	assert_non_null(ip);
	char nonce[128], salt64[128];
	snprintf(nonce, sizeof nonce, "%.*s", (int)(sp - r - 2), r + 2);
	snprintf(salt64, sizeof salt64, "%.*s", (int)(ip - sp - 3), sp + 3);
	int iter = atoi(ip + 3);
	uint8_t salt[96];
	int sl = EVP_DecodeBlock(salt, (const unsigned char *)salt64, (int)strlen(salt64));
	assert_true(sl > 0);
	sl -= (salt64[strlen(salt64) - 1] == '=') + (salt64[strlen(salt64) - 2] == '=');

	uint8_t cbin[256];
	size_t gl = strlen(c->gs2);
	memcpy(cbin, c->gs2, gl);
	if (cb_len)
		memcpy(cbin + gl, cb, cb_len);
	char cb64[400];
	EVP_EncodeBlock((unsigned char *)cb64, cbin, (int)(gl + cb_len));

	char without[768];
	snprintf(without, sizeof without, "c=%s,r=%s", cb64, nonce);
	char am[2048];
	snprintf(am, sizeof am, "%s,%s,%s", c->bare, s, without);

	uint8_t salted[64], ck[64], sk[64], svk[64], csig[64], proof[64];
	unsigned int n;
	assert_int_equal(PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), salt, sl, iter, c->md,
	                                   (int)c->hl, salted), 1);
	HMAC(c->md, salted, (int)c->hl, (const uint8_t *)"Client Key", 10, ck, &n);
	EVP_Digest(ck, c->hl, sk, &n, c->md, NULL);
	HMAC(c->md, salted, (int)c->hl, (const uint8_t *)"Server Key", 10, svk, &n);
	HMAC(c->md, sk, (int)c->hl, (const uint8_t *)am, strlen(am), csig, &n);
	HMAC(c->md, svk, (int)c->hl, (const uint8_t *)am, strlen(am), c->server_sig, &n);
	for (size_t i = 0; i < c->hl; i++)
		proof[i] = ck[i] ^ csig[i];
	if (tamper)
		proof[c->hl / 2] ^= 0x10;
	char proof64[100];
	EVP_EncodeBlock((unsigned char *)proof64, proof, (int)c->hl);
	snprintf(c->final, sizeof c->final, "%s,p=%s", without, proof64);
}

static void client_check_verifier(const struct client *c, const char *v, size_t len)
{
	char want[100] = "v=";
	EVP_EncodeBlock((unsigned char *)want + 2, c->server_sig, (int)c->hl);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(v, want, len);
}

/* Runs one exchange; returns the result of the last step that ran. */
struct run {
	enum sasl_mech mech;
	unsigned cb_avail;
	const char *gs2;
	const char *user;
	const char *pass;      /* client's */
	const char *stored_pass;  /* NULL: unknown user */
	const uint8_t *cb_client, *cb_server;
	size_t cb_len;
	int tamper;
};

static enum sasl_err exchange(const struct run *r)
{
	enum sasl_hash h;
	assert_true(sasl_mech_hash(r->mech, &h));
	struct client c;
	client_first(&c, h, r->gs2, r->user, "Kq3y+F0x=Y9$)%");

	struct sasl_scram st;
	struct sasl_names nm;
	enum sasl_err e = sasl_scram_start(&st, r->mech, r->cb_avail, c.first, strlen(c.first), &nm);
	if (e != SASL_OK)
		return e;
	struct sasl_scram_cred cred;
	if (r->stored_pass) {
		assert_int_equal(sasl_scram_derive(&cred, h, r->stored_pass, strlen(r->stored_pass),
		                                   NULL, 0, 4096), SASL_OK);
		assert_int_equal(cred.salt_len, SASL_SALT_DEFAULT);
	} else {
		assert_int_equal(sasl_scram_fake_cred(&cred, h, nm.user, nm.user_len, secret, 4096),
		                 SASL_OK);
	}
	char sf[SASL_SCRAM_FIRST_MAX];
	size_t n;
	e = sasl_scram_challenge(&st, &cred, sf, sizeof sf, &n);
	if (e != SASL_OK)
		return e;
	/* r= echoes the client nonce and adds ours; s= and i= follow */
	assert_memory_equal(sf, "r=Kq3y+F0x=Y9$)%", 16);
	assert_non_null(memmem(sf, n, ",s=", 3));
	assert_non_null(memmem(sf, n, ",i=4096", 7));

	client_final(&c, sf, n, r->pass, r->cb_client, r->cb_client ? r->cb_len : 0, r->tamper);
	char out[SASL_SCRAM_FINAL_MAX];
	e = sasl_scram_finish(&st, c.final, strlen(c.final), r->cb_server,
	                      r->cb_server ? r->cb_len : 0, out, sizeof out, &n);
	if (e == SASL_OK)
		client_check_verifier(&c, out, n);
	/* the state is spent either way */
	assert_int_equal(sasl_scram_finish(&st, c.final, strlen(c.final), NULL, 0, out,
	                                   sizeof out, &n), SASL_ERR_MALFORMED_REQUEST);
	return e;
}

static const uint8_t cb_a[32] = "channel binding data: 32 bytes!";
static const uint8_t cb_b[32] = "channel binding data: 32 bytez!";

static const enum sasl_mech plain_scram[] = {
	SASL_MECH_SCRAM_SHA_1, SASL_MECH_SCRAM_SHA_256, SASL_MECH_SCRAM_SHA_512,
};
static const enum sasl_mech plus_scram[] = {
	SASL_MECH_SCRAM_SHA_1_PLUS, SASL_MECH_SCRAM_SHA_256_PLUS, SASL_MECH_SCRAM_SHA_512_PLUS,
};

static void test_client_all_mechanisms(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++) {
		struct run r = { plain_scram[i], 0, "n,,", "juliet", "r0m30", "r0m30",
		                 NULL, NULL, 0, 0 };
		assert_int_equal(exchange(&r), SASL_OK);
		r.gs2 = "y,,";  /* client could bind, we offer none: fine */
		assert_int_equal(exchange(&r), SASL_OK);
		r.gs2 = "n,a=juliet@example.com,";
		assert_int_equal(exchange(&r), SASL_OK);
		r.user = "ju=2Cli=3Det";  /* ',' and '=' in a username */
		assert_int_equal(exchange(&r), SASL_OK);

		struct run p = { plus_scram[i], SASL_CB_TLS_EXPORTER | SASL_CB_TLS_SERVER_END_POINT,
		                 "p=tls-exporter,,", "juliet", "r0m30", "r0m30", cb_a, cb_a, 32, 0 };
		assert_int_equal(exchange(&p), SASL_OK);
		p.gs2 = "p=tls-server-end-point,,";
		assert_int_equal(exchange(&p), SASL_OK);
		p.gs2 = "p=tls-server-end-point,a=juliet@example.com,";
		p.cb_len = 20;
		assert_int_equal(exchange(&p), SASL_OK);
	}
}

static void test_client_failures(void **state)
{
	(void)state;
	const unsigned both = SASL_CB_TLS_EXPORTER | SASL_CB_TLS_SERVER_END_POINT;
	for (int i = 0; i < 3; i++) {
		struct run r = { plain_scram[i], 0, "n,,", "juliet", "wrong", "r0m30",
		                 NULL, NULL, 0, 0 };
		assert_int_equal(exchange(&r), SASL_ERR_NOT_AUTHORIZED);
		r.pass = "r0m30";
		r.tamper = 1;
		assert_int_equal(exchange(&r), SASL_ERR_NOT_AUTHORIZED);
		r.tamper = 0;
		/* downgrade: we offer -PLUS, the client says it thinks we don't */
		r.gs2 = "y,,";
		r.cb_avail = SASL_CB_TLS_EXPORTER;
		assert_int_equal(exchange(&r), SASL_ERR_NOT_AUTHORIZED);
		/* 'p' with a non-PLUS mechanism */
		r.gs2 = "p=tls-exporter,,";
		assert_int_equal(exchange(&r), SASL_ERR_MALFORMED_REQUEST);

		struct run p = { plus_scram[i], both, "p=tls-exporter,,", "juliet", "r0m30", "r0m30",
		                 cb_a, cb_b, 32, 0 };
		assert_int_equal(exchange(&p), SASL_ERR_NOT_AUTHORIZED);  /* other TLS session */
		p.cb_server = cb_a;
		p.cb_len = 31;
		p.cb_client = cb_b;
		assert_int_equal(exchange(&p), SASL_ERR_NOT_AUTHORIZED);
		p.cb_client = NULL;   /* client sends only the gs2 header */
		assert_int_equal(exchange(&p), SASL_ERR_NOT_AUTHORIZED);
		p.cb_client = cb_a;
		p.cb_len = 32;
		p.gs2 = "p=tls-unique,,";
		assert_int_equal(exchange(&p), SASL_ERR_NOT_AUTHORIZED);
		p.gs2 = "p=tls-server-end-point,,";
		p.cb_avail = SASL_CB_TLS_EXPORTER;
		assert_int_equal(exchange(&p), SASL_ERR_NOT_AUTHORIZED);
		/* A -PLUS mechanism binds: 'n' with it is malformed. */
		p.gs2 = "n,,";
		p.cb_avail = both;
		assert_int_equal(exchange(&p), SASL_ERR_MALFORMED_REQUEST);
		p.gs2 = "y,,";
		assert_int_equal(exchange(&p), SASL_ERR_MALFORMED_REQUEST);
		p.gs2 = "p=tls-exporter,,";
		p.pass = "wrong";
		assert_int_equal(exchange(&p), SASL_ERR_NOT_AUTHORIZED);
	}
}

/* The caller must give binding data for 'p'. */
static void test_cb_missing_from_caller(void **state)
{
	(void)state;
	struct run p = { SASL_MECH_SCRAM_SHA_256_PLUS, SASL_CB_TLS_EXPORTER, "p=tls-exporter,,",
	                 "juliet", "r0m30", "r0m30", cb_a, NULL, 32, 0 };
	assert_int_equal(exchange(&p), SASL_ERR_TEMPORARY_AUTH_FAILURE);
}

/* An unknown user sees a server-first of the same shape, with a salt that
 * does not change between attempts, and fails only at the end. */
static void test_unknown_user(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++) {
		struct run r = { plain_scram[i], 0, "n,,", "nobody", "r0m30", NULL, NULL, NULL, 0, 0 };
		assert_int_equal(exchange(&r), SASL_ERR_NOT_AUTHORIZED);
	}
	struct sasl_scram_cred a, b, c, d;
	assert_int_equal(sasl_scram_fake_cred(&a, SASL_SHA256, "nobody", 6, secret, 4096), SASL_OK);
	assert_int_equal(sasl_scram_fake_cred(&b, SASL_SHA256, "nobody", 6, secret, 4096), SASL_OK);
	assert_int_equal(sasl_scram_fake_cred(&c, SASL_SHA256, "nobodz", 6, secret, 4096), SASL_OK);
	assert_int_equal(sasl_scram_fake_cred(&d, SASL_SHA1, "nobody", 6, secret, 4096), SASL_OK);
	assert_int_equal(a.salt_len, SASL_SALT_DEFAULT);
	assert_memory_equal(a.salt, b.salt, SASL_SALT_DEFAULT);
	assert_memory_not_equal(a.salt, c.salt, SASL_SALT_DEFAULT);
	assert_memory_not_equal(a.salt, d.salt, SASL_SALT_DEFAULT);
	assert_int_equal(a.iterations, 4096);

	/* fake credentials never verify PLAIN either */
	struct sasl_plain p;
	assert_int_equal(sasl_plain_parse(&p, "\0nobody\0x", 9), SASL_OK);
	assert_int_equal(sasl_plain_verify(&p, &a), SASL_ERR_NOT_AUTHORIZED);
}

/* ---- malformed client messages ------------------------------------------ */

struct bad {
	const char *msg;
	enum sasl_err want;
};

static void test_first_malformed(void **state)
{
	(void)state;
	static const struct bad bad[] = {
		{ "", SASL_ERR_MALFORMED_REQUEST },
		{ "n", SASL_ERR_MALFORMED_REQUEST },
		{ "n,", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,", SASL_ERR_MALFORMED_REQUEST },
		{ "x,,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "nn,,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "p,,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u,", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u,r=", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,r=abc,n=u", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,u=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },   /* gs2 header cut short */
		{ "n,b=x,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,a=,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,a=x=2,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,m=ext,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=a=2Cb=,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=a=2c,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=a=41,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=a=,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u,r=ab c", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u,r=ab\x7f", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u,r=ab\xc3\xa9", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u,r=abc,", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u,r=abc,x", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u,r=abc,x=", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=u,r=abc,1=y", SASL_ERR_MALFORMED_REQUEST },
		{ "n,,n=\xc3\x28,r=abc", SASL_ERR_MALFORMED_REQUEST },   /* bad UTF-8 */
		{ "n,,n=\xc0\xaf,r=abc", SASL_ERR_MALFORMED_REQUEST },   /* overlong */
		{ "n,,n=u\x07,r=abc", SASL_ERR_MALFORMED_REQUEST },      /* SASLprep: control */
		{ "n,,n=\xd8\xa7" "1,r=abc", SASL_ERR_MALFORMED_REQUEST }, /* SASLprep: bidi */
		{ "p=,,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
		{ "p=tls exporter,,n=u,r=abc", SASL_ERR_MALFORMED_REQUEST },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct sasl_scram st;
		enum sasl_err e = start(&st, SASL_MECH_SCRAM_SHA_256, 0, bad[i].msg);
		if (e != bad[i].want)
			fail_msg("case %zu \"%s\": got %d, want %d", i, bad[i].msg, e, bad[i].want);
		/* a failed start leaves nothing to continue */
		struct sasl_scram_cred cred;
		cred_for(&cred, SASL_SHA256, "x", "AAAA", 4096);
		char out[SASL_SCRAM_FIRST_MAX];
		size_t n;
		assert_int_equal(sasl_scram_challenge(&st, &cred, out, sizeof out, &n),
		                 SASL_ERR_MALFORMED_REQUEST);
	}
	/* accepted variants */
	struct sasl_scram st;
	struct sasl_names nm;
	const char *ok = "n,a=a=2Cb=3Dc,n=u=3D=2C,r=abc,x=ext=val,y=\xc3\xa9";
	assert_int_equal(sasl_scram_start(&st, SASL_MECH_SCRAM_SHA_1, 0, ok, strlen(ok), &nm),
	                 SASL_OK);
	assert_string_equal(nm.authzid, "a,b=c");
	assert_string_equal(nm.user, "u=,");
	/* m= is refused after a valid gs2 header too */
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1_PLUS, SASL_CB_TLS_EXPORTER,
	                       "p=tls-exporter,,m=x,n=u,r=abc"), SASL_ERR_MALFORMED_REQUEST);
	/* embedded NUL */
	assert_int_equal(sasl_scram_start(&st, SASL_MECH_SCRAM_SHA_1, 0, "n,,n=u\0,r=abc", 13, &nm),
	                 SASL_ERR_MALFORMED_REQUEST);
	/* mechanism that is not SCRAM */
	assert_int_equal(start(&st, SASL_MECH_PLAIN, 0, "n,,n=u,r=abc"),
	                 SASL_ERR_TEMPORARY_AUTH_FAILURE);
}

static void test_first_too_long(void **state)
{
	(void)state;
	static char msg[SASL_MSG_MAX + 64];
	struct sasl_scram st;
	/* username that fits the state with a 24-char nonce */
	memset(msg, 0, sizeof msg);
	memcpy(msg, "n,,n=", 5);
	memset(msg + 5, 'u', 180);
	memcpy(msg + 185, ",r=abcdefghijklmnopqrstuvwx", 27);
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_512, 0, msg), SASL_OK);
	struct sasl_scram_cred cred;
	cred_for(&cred, SASL_SHA512, "x", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 4096);
	assert_int_equal(cred.salt_len, 32);
	cred.iterations = SASL_SCRAM_MAX_ITER;
	char out[SASL_SCRAM_FIRST_MAX];
	size_t n;
	assert_int_equal(sasl_scram_challenge(&st, &cred, out, sizeof out, &n), SASL_OK);
	assert_int_equal(sasl_scram_challenge(&st, &cred, out, sizeof out, &n),
	                 SASL_ERR_MALFORMED_REQUEST);  /* twice: out of order */

	/* username too long for the state */
	memset(msg, 0, sizeof msg);
	memcpy(msg, "n,,n=", 5);
	memset(msg + 5, 'u', 400);
	memcpy(msg + 405, ",r=abc", 6);
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, msg), SASL_ERR_MALFORMED_REQUEST);
	/* longer than a name may be */
	memset(msg + 5, 'u', 2000);
	memcpy(msg + 2005, ",r=abc", 6);
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, msg), SASL_ERR_MALFORMED_REQUEST);
	/* longer than any message */
	memset(msg, 'a', sizeof msg - 1);
	memcpy(msg, "n,,n=u,r=", 9);
	msg[sizeof msg - 1] = '\0';
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, msg), SASL_ERR_MALFORMED_REQUEST);
	/* a long authzid costs no state */
	memset(msg, 0, sizeof msg);
	memcpy(msg, "n,a=", 4);
	memset(msg + 4, 'z', 3000);
	memcpy(msg + 3004, ",n=u,r=abc", 10);
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, msg), SASL_OK);
	memset(msg + 4, 'z', 3100);
	memcpy(msg + 3104, ",n=u,r=abc", 10);
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, msg), SASL_ERR_MALFORMED_REQUEST);
}

/* Brings a SCRAM-SHA-1 exchange to step 3 with RFC 5802's messages. */
static void at_step3(struct sasl_scram *st)
{
	struct sasl_scram_cred cred;
	cred_for(&cred, SASL_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096);
	assert_int_equal(start(st, SASL_MECH_SCRAM_SHA_1, 0, "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"),
	                 SASL_OK);
	char out[SASL_SCRAM_FIRST_MAX];
	size_t n;
	assert_int_equal(sasl_scram_challenge_nonce(st, &cred, "3rfcNHYJY1ZVvWVs7j", 18, out,
	                                            sizeof out, &n), SASL_OK);
}

#define RN "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j"
#define PR "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="

static void test_final_malformed(void **state)
{
	(void)state;
	static const struct bad bad[] = {
		{ "", SASL_ERR_MALFORMED_REQUEST },
		{ "c=biws", SASL_ERR_MALFORMED_REQUEST },
		{ "c=biws," RN, SASL_ERR_MALFORMED_REQUEST },            /* no proof */
		{ "c=biws," RN ",", SASL_ERR_MALFORMED_REQUEST },
		{ "c=biws," RN ",p=", SASL_ERR_MALFORMED_REQUEST },
		{ RN ",c=biws," PR, SASL_ERR_MALFORMED_REQUEST },         /* misordered */
		{ "c=biws," PR "," RN, SASL_ERR_MALFORMED_REQUEST },
		{ "c=biws," RN "," PR ",x=y", SASL_ERR_MALFORMED_REQUEST }, /* p= not last */
		{ "c=," RN "," PR, SASL_ERR_MALFORMED_REQUEST },
		{ "c=biws,r=," PR, SASL_ERR_MALFORMED_REQUEST },
		{ "c=biws," RN ",1=x," PR, SASL_ERR_MALFORMED_REQUEST },
		{ "c=bi ws," RN "," PR, SASL_ERR_INCORRECT_ENCODING },
		{ "c=biw," RN "," PR, SASL_ERR_INCORRECT_ENCODING },
		{ "c=biws," RN ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts", SASL_ERR_INCORRECT_ENCODING },
		{ "c=biws," RN ",p=v0X8v3Bz2T0CJGbJQyF0X+HI4Tt=", SASL_ERR_INCORRECT_ENCODING },
		{ "c=biws," RN ",p=v0X8v3Bz2T0CJGbJQyF0X+HI", SASL_ERR_MALFORMED_REQUEST }, /* 18 bytes */
		{ "c=biws," RN ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAA", SASL_ERR_MALFORMED_REQUEST }, /* 21 bytes */
		{ "c=biws," RN ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", SASL_ERR_MALFORMED_REQUEST },
		{ "c=eSws," RN "," PR, SASL_ERR_NOT_AUTHORIZED },          /* "y,," */
		{ "c=biwsAA==," RN "," PR, SASL_ERR_NOT_AUTHORIZED },      /* data after header */
		{ "c=biws,r=fyko+d2lbbFgONRv9qkxdawL," PR, SASL_ERR_NOT_AUTHORIZED }, /* nonce cut */
		{ "c=biws," RN "x," PR, SASL_ERR_NOT_AUTHORIZED },
		{ "c=biws," RN ",p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=", SASL_ERR_NOT_AUTHORIZED },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct sasl_scram st;
		at_step3(&st);
		char out[SASL_SCRAM_FINAL_MAX];
		size_t n;
		enum sasl_err e = finish(&st, bad[i].msg, NULL, 0, out, &n);
		if (e != bad[i].want)
			fail_msg("case %zu \"%s\": got %d, want %d", i, bad[i].msg, e, bad[i].want);
		assert_int_equal(n, 0);
		/* the keys are gone */
		static const struct sasl_scram zero;
		assert_memory_equal(&st, &zero, sizeof st);
	}
	/* extensions before p= are allowed and are part of AuthMessage, so the
	 * RFC proof no longer matches */
	struct sasl_scram st;
	at_step3(&st);
	char out[SASL_SCRAM_FINAL_MAX];
	size_t n;
	assert_int_equal(finish(&st, "c=biws," RN ",x=1," PR, NULL, 0, out, &n),
	                 SASL_ERR_NOT_AUTHORIZED);
	/* too long */
	static char big[SASL_MSG_MAX + 2];
	memset(big, 'A', sizeof big - 1);
	memcpy(big, "c=", 2);
	at_step3(&st);
	assert_int_equal(finish(&st, big, NULL, 0, out, &n), SASL_ERR_MALFORMED_REQUEST);
	/* c= as long as allowed, with nonsense: decodes, then mismatches */
	snprintf(big, sizeof big, "c=%0*d," RN "," PR, 4000, 0);
	at_step3(&st);
	assert_int_equal(finish(&st, big, NULL, 0, out, &n), SASL_ERR_NOT_AUTHORIZED);
	/* output too small */
	at_step3(&st);
	assert_int_equal(sasl_scram_finish(&st, "c=biws," RN "," PR, strlen("c=biws," RN "," PR),
	                                   NULL, 0, out, 10, &n), SASL_ERR_TEMPORARY_AUTH_FAILURE);
	/* and the good one still works after all that */
	at_step3(&st);
	assert_int_equal(finish(&st, "c=biws," RN "," PR, NULL, 0, out, &n), SASL_OK);
}

static void test_challenge_args(void **state)
{
	(void)state;
	struct sasl_scram st;
	struct sasl_scram_cred cred;
	char out[SASL_SCRAM_FIRST_MAX];
	size_t n;
	cred_for(&cred, SASL_SHA1, "pencil", "QSXCR+Q6sek8bf92", 4096);
	/* credentials for another hash */
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_256, 0, "n,,n=u,r=abc"), SASL_OK);
	assert_int_equal(sasl_scram_challenge(&st, &cred, out, sizeof out, &n),
	                 SASL_ERR_TEMPORARY_AUTH_FAILURE);
	/* bad test nonces */
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, "n,,n=u,r=abc"), SASL_OK);
	assert_int_equal(sasl_scram_challenge_nonce(&st, &cred, "a,b", 3, out, sizeof out, &n),
	                 SASL_ERR_TEMPORARY_AUTH_FAILURE);
	/* out too small */
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, "n,,n=u,r=abc"), SASL_OK);
	assert_int_equal(sasl_scram_challenge(&st, &cred, out, 20, &n),
	                 SASL_ERR_TEMPORARY_AUTH_FAILURE);
	/* corrupt stored record */
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, "n,,n=u,r=abc"), SASL_OK);
	cred.iterations = 0;
	assert_int_equal(sasl_scram_challenge(&st, &cred, out, sizeof out, &n),
	                 SASL_ERR_TEMPORARY_AUTH_FAILURE);
	/* finish before challenge */
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, "n,,n=u,r=abc"), SASL_OK);
	char fin[SASL_SCRAM_FINAL_MAX];
	assert_int_equal(finish(&st, "c=biws,r=abc,p=AAAA", NULL, 0, fin, &n),
	                 SASL_ERR_MALFORMED_REQUEST);
	/* random server nonces differ */
	cred.iterations = 4096;
	char a[SASL_SCRAM_FIRST_MAX], b[SASL_SCRAM_FIRST_MAX];
	size_t na, nb;
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, "n,,n=u,r=abc"), SASL_OK);
	assert_int_equal(sasl_scram_challenge(&st, &cred, a, sizeof a, &na), SASL_OK);
	assert_int_equal(start(&st, SASL_MECH_SCRAM_SHA_1, 0, "n,,n=u,r=abc"), SASL_OK);
	assert_int_equal(sasl_scram_challenge(&st, &cred, b, sizeof b, &nb), SASL_OK);
	assert_int_equal(na, nb);
	assert_int_equal(na, strlen("r=abc,s=QSXCR+Q6sek8bf92,i=4096") + SASL_SCRAM_SNONCE_LEN);
	assert_memory_not_equal(a, b, na);
}

/* Mutations of valid messages: any result, never a crash (run under ASan
 * in the sanitizer build). */
static void test_mutations(void **state)
{
	(void)state;
	static const char first[] = "p=tls-exporter,a=a=2Cb,n=user,r=fyko+d2lbbFgONRv9qkxdawL,x=y";
	static const char fin[] = "c=biws," RN ",e=f," PR;
	static const char rep[] = { ',', '=', '\0', 'a', 'n', 'p', 'r', 'c', '\xff', '\xc3' };
	srand(7);
	for (int it = 0; it < 3000; it++) {
		char m[sizeof first];
		memcpy(m, first, sizeof first);
		size_t len = sizeof first - 1 - (size_t)(rand() % 4);
		for (int k = rand() % 3; k >= 0; k--)
			m[rand() % (int)len] = rep[rand() % (int)sizeof rep];
		struct sasl_scram st;
		struct sasl_names nm;
		(void)sasl_scram_start(&st, SASL_MECH_SCRAM_SHA_1_PLUS, SASL_CB_TLS_EXPORTER, m, len, &nm);

		char f[sizeof fin];
		memcpy(f, fin, sizeof fin);
		len = sizeof fin - 1 - (size_t)(rand() % 4);
		for (int k = rand() % 3; k >= 0; k--)
			f[rand() % (int)len] = rep[rand() % (int)sizeof rep];
		at_step3(&st);
		char out[SASL_SCRAM_FINAL_MAX];
		size_t n;
		enum sasl_err e = sasl_scram_finish(&st, f, len, NULL, 0, out, sizeof out, &n);
		assert_true(e != SASL_ERR_TEMPORARY_AUTH_FAILURE);
	}
}

/* ---- PLAIN -------------------------------------------------------------- */

static enum sasl_err plain(const char *msg, size_t len, const struct sasl_scram_cred *cred,
                           struct sasl_plain *p)
{
	enum sasl_err e = sasl_plain_parse(p, msg, len);
	return e == SASL_OK ? sasl_plain_verify(p, cred) : e;
}

static void test_plain(void **state)
{
	(void)state;
	struct sasl_scram_cred c1, c256;
	struct sasl_plain p;
	assert_int_equal(sasl_scram_derive(&c1, SASL_SHA1, "pencil", 6, NULL, 0, 4096), SASL_OK);
	cred_for(&c256, SASL_SHA256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);

	assert_int_equal(plain("\0user\0pencil", 12, &c1, &p), SASL_OK);
	assert_string_equal(p.names.user, "user");
	assert_int_equal(p.names.authzid_len, 0);
	assert_int_equal(p.pass_len, 0);   /* wiped */
	assert_int_equal(plain("\0user\0pencil", 12, &c256, &p), SASL_OK);
	assert_int_equal(plain("\0user\0pencik", 12, &c256, &p), SASL_ERR_NOT_AUTHORIZED);
	assert_int_equal(plain("\0user\0pencil2", 13, &c256, &p), SASL_ERR_NOT_AUTHORIZED);
	assert_int_equal(plain("\0user\0penci", 11, &c256, &p), SASL_ERR_NOT_AUTHORIZED);

	/* authzid is handed back; judging it is the caller's (RFC 6120 6.3.8) */
	assert_int_equal(plain("user@example.com\0user\0pencil", 28, &c256, &p), SASL_OK);
	assert_string_equal(p.names.authzid, "user@example.com");
	assert_int_equal(p.names.authzid_len, 16);
	assert_int_equal(plain("admin@example.com\0user\0pencil", 29, &c256, &p), SASL_OK);
	assert_string_equal(p.names.authzid, "admin@example.com");

	/* structure: exactly two NULs, non-empty authcid and passwd */
	static const struct { const char *m; size_t n; } bad[] = {
		{ "", 0 }, { "user", 4 }, { "\0user", 5 }, { "\0user\0", 6 }, { "\0\0pencil", 8 },
		{ "\0user\0pen\0cil", 13 }, { "\0user\0pencil\0", 13 }, { "\0\0\0", 3 },
		{ "\0us\xc3\0pencil", 11 },          /* truncated UTF-8 in authcid */
		{ "\0user\0pen\xff", 10 },           /* invalid UTF-8 in passwd */
		{ "\xed\xa0\x80\0user\0pencil", 14 },/* surrogate in authzid */
		{ "\0user\0\x7f", 7 },               /* SASLprep: control character */
		{ "\0user\0\xc2\xad", 7 },           /* SASLprep maps it to nothing: empty */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (sasl_plain_parse(&p, bad[i].m, bad[i].n) != SASL_ERR_MALFORMED_REQUEST)
			fail_msg("PLAIN case %zu accepted", i);

	/* limits */
	static char big[SASL_PASS_MAX + 16];
	memset(big, 'x', sizeof big);
	big[0] = '\0';
	memcpy(big + 1, "u", 2);
	assert_int_equal(sasl_plain_parse(&p, big, 3 + SASL_PASS_MAX), SASL_OK);
	assert_int_equal(sasl_plain_parse(&p, big, 4 + SASL_PASS_MAX), SASL_ERR_MALFORMED_REQUEST);

	/* SASLprep applies to the password on both sides: U+00A0 is a space */
	struct sasl_scram_cred sp;
	assert_int_equal(sasl_scram_derive(&sp, SASL_SHA256, "a b", 3, NULL, 0, 4096), SASL_OK);
	assert_int_equal(plain("\0user\0a\xc2\xa0" "b", 10, &sp, &p), SASL_OK);
	assert_int_equal(plain("\0user\0a\xc2\xad b", 11, &sp, &p), SASL_OK);
	/* and to the username: soft hyphen dropped */
	assert_int_equal(sasl_plain_parse(&p, "\0us\xc2\xad" "er\0x", 9), SASL_OK);
	assert_string_equal(p.names.user, "user");
}

static void test_saslprep(void **state)
{
	(void)state;
	char out[64];
	size_t n;
	/* RFC 4013 3 examples */
	assert_int_equal(sasl_saslprep("I\xc2\xadX", 4, out, sizeof out, &n, false), SASL_OK);
	assert_string_equal(out, "IX");
	assert_int_equal(sasl_saslprep("user", 4, out, sizeof out, &n, false), SASL_OK);
	assert_string_equal(out, "user");
	assert_int_equal(sasl_saslprep("USER", 4, out, sizeof out, &n, false), SASL_OK);
	assert_string_equal(out, "USER");       /* case preserved */
	assert_int_equal(sasl_saslprep("\xc2\xaa", 2, out, sizeof out, &n, false), SASL_OK);
	assert_string_equal(out, "a");          /* U+00AA, NFKC */
	assert_int_equal(sasl_saslprep("\xe2\x85\xa8", 3, out, sizeof out, &n, false), SASL_OK);
	assert_string_equal(out, "IX");         /* U+2168 */
	assert_int_equal(sasl_saslprep("\x07", 1, out, sizeof out, &n, false),
	                 SASL_ERR_MALFORMED_REQUEST);
	assert_int_equal(sasl_saslprep("\xd8\xa7" "1", 3, out, sizeof out, &n, false),
	                 SASL_ERR_MALFORMED_REQUEST);
	/* non-ASCII spaces become U+0020 */
	assert_int_equal(sasl_saslprep("a\xc2\xa0" "b\xe2\x80\x83" "c\xe3\x80\x80" "d", 12, out,
	                               sizeof out, &n, false), SASL_OK);
	assert_string_equal(out, "a b c d");
	assert_int_equal(n, 7);
	/* ZERO WIDTH NO-BREAK SPACE (B.1) removed. (Not U+200B: it is in both
	 * B.1 and C.1.2, and libidn maps it to a space.) */
	assert_int_equal(sasl_saslprep("a\xef\xbb\xbf" "b", 5, out, sizeof out, &n, false), SASL_OK);
	assert_string_equal(out, "ab");
	/* unassigned in Unicode 3.2 (U+0221): queries allow, stored strings not */
	assert_int_equal(sasl_saslprep("\xc8\xa1", 2, out, sizeof out, &n, false), SASL_OK);
	assert_int_equal(sasl_saslprep("\xc8\xa1", 2, out, sizeof out, &n, true),
	                 SASL_ERR_MALFORMED_REQUEST);
	struct sasl_scram_cred c;
	assert_int_equal(sasl_scram_derive(&c, SASL_SHA1, "\xc8\xa1", 2, NULL, 0, 4096),
	                 SASL_ERR_MALFORMED_REQUEST);
	/* NUL, empty, too long for out */
	assert_int_equal(sasl_saslprep("a\0b", 3, out, sizeof out, &n, false),
	                 SASL_ERR_MALFORMED_REQUEST);
	assert_int_equal(sasl_saslprep("", 0, out, sizeof out, &n, false),
	                 SASL_ERR_MALFORMED_REQUEST);
	assert_int_equal(sasl_saslprep("abcdef", 6, out, 6, &n, false), SASL_ERR_MALFORMED_REQUEST);
	assert_int_equal(sasl_saslprep("abcdef", 6, out, 7, &n, false), SASL_OK);
	/* expansion past the buffer: U+FDFA is 3 bytes, 33 after NFKC */
	assert_int_equal(sasl_saslprep("\xef\xb7\xba", 3, out, 16, &n, false),
	                 SASL_ERR_MALFORMED_REQUEST);
	assert_int_equal(sasl_saslprep("\xef\xb7\xba", 3, out, sizeof out, &n, false), SASL_OK);
	assert_int_equal(n, 33);
}

/* ---- derivation --------------------------------------------------------- */

static void test_derive(void **state)
{
	(void)state;
	struct sasl_scram_cred a, b;
	assert_int_equal(sasl_scram_derive(&a, SASL_SHA256, "pw", 2, NULL, 0, 4095),
	                 SASL_ERR_TEMPORARY_AUTH_FAILURE);
	assert_int_equal(sasl_scram_derive(&a, SASL_SHA256, "pw", 2, NULL, 0,
	                                   SASL_SCRAM_MAX_ITER + 1), SASL_ERR_TEMPORARY_AUTH_FAILURE);
	assert_int_equal(sasl_scram_derive(&a, (enum sasl_hash)7, "pw", 2, NULL, 0, 4096),
	                 SASL_ERR_TEMPORARY_AUTH_FAILURE);
	uint8_t salt[40] = { 0 };
	assert_int_equal(sasl_scram_derive(&a, SASL_SHA256, "pw", 2, salt, 33, 4096),
	                 SASL_ERR_TEMPORARY_AUTH_FAILURE);
	assert_int_equal(sasl_scram_derive(&a, SASL_SHA256, "pw", 2, salt, 0, 4096),
	                 SASL_ERR_TEMPORARY_AUTH_FAILURE);
	/* fresh random salts */
	assert_int_equal(sasl_scram_derive(&a, SASL_SHA256, "pw", 2, NULL, 0, 4096), SASL_OK);
	assert_int_equal(sasl_scram_derive(&b, SASL_SHA256, "pw", 2, NULL, 0, 4096), SASL_OK);
	assert_int_equal(a.salt_len, 16);
	assert_memory_not_equal(a.salt, b.salt, 16);
	assert_memory_not_equal(a.stored_key, b.stored_key, 32);
	assert_int_equal(a.fake, 0);
	assert_int_equal(a.hash, SASL_SHA256);
	assert_int_equal(a.iterations, 4096);
}

/* ---- base64 ------------------------------------------------------------- */

static void test_base64(void **state)
{
	(void)state;
	static const char *const enc[] = { "=", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
	                                   "Zm9vYmFy" };
	const char *plain = "foobar";
	for (size_t len = 0; len <= 6; len++) {
		char out[16];
		assert_int_equal(sasl_b64_encode((const uint8_t *)plain, len, out, sizeof out),
		                 strlen(enc[len]));
		assert_string_equal(out, enc[len]);
		uint8_t dec[16];
		size_t n;
		assert_int_equal(sasl_b64_decode(enc[len], strlen(enc[len]), dec, sizeof dec, &n),
		                 SASL_OK);
		assert_int_equal(n, len);
		assert_memory_equal(dec, plain, len);
	}
	/* every byte value round-trips */
	uint8_t all[256], back[256];
	char text[400];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	size_t tl = sasl_b64_encode(all, 256, text, sizeof text);
	assert_int_equal(tl, sasl_b64_enc_len(256));
	size_t n;
	assert_int_equal(sasl_b64_decode(text, tl, back, sizeof back, &n), SASL_OK);
	assert_int_equal(n, 256);
	assert_memory_equal(all, back, 256);
	/* too small an output */
	assert_int_equal(sasl_b64_encode(all, 3, text, 4), 0);
	assert_int_equal(sasl_b64_decode("Zm9v", 4, back, 2, &n), SASL_ERR_TEMPORARY_AUTH_FAILURE);

	static const char *const bad[] = {
		"Z", "Zg", "Zg=", "Zm9", "Zg===", "====", "Z===", "==Zg", "Zg==Zg==", "Zm=v",
		"Zh==",   /* non-zero bits after the data */
		"Zm9=",
		"Zm 9v", "Zm9v\n", " Zm9v", "Zm9-", "Zm9_", "Zm9\xc3\xa9",
		"==",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (sasl_b64_decode(bad[i], strlen(bad[i]), back, sizeof back, &n) !=
		    SASL_ERR_INCORRECT_ENCODING)
			fail_msg("base64 \"%s\" accepted", bad[i]);
	assert_int_equal(sasl_b64_decode("Zm9v\0", 5, back, sizeof back, &n),
	                 SASL_ERR_INCORRECT_ENCODING);
	assert_int_equal(sasl_b64_decode("", 0, back, sizeof back, &n), SASL_OK);
	assert_int_equal(n, 0);
}

/* ---- mechanisms and conditions ------------------------------------------ */

static void test_mechanisms(void **state)
{
	(void)state;
	enum sasl_mech m[SASL_MECH_COUNT];
	assert_int_equal(sasl_mech_list(m, SASL_MECH_COUNT, false, 0), 3);
	assert_int_equal(m[0], SASL_MECH_SCRAM_SHA_512);
	assert_int_equal(m[1], SASL_MECH_SCRAM_SHA_256);
	assert_int_equal(m[2], SASL_MECH_SCRAM_SHA_1);
	assert_int_equal(sasl_mech_list(m, SASL_MECH_COUNT, true, 0), 4);
	assert_int_equal(m[3], SASL_MECH_PLAIN);
	assert_int_equal(sasl_mech_list(m, SASL_MECH_COUNT, true, SASL_CB_TLS_EXPORTER), 7);
	static const char *const want[] = {
		"SCRAM-SHA-512-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS",
		"SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN",
	};
	for (int i = 0; i < 7; i++) {
		assert_string_equal(sasl_mech_name(m[i]), want[i]);
		assert_int_equal(sasl_mech_parse(want[i], strlen(want[i])), m[i]);
	}
	assert_int_equal(sasl_mech_list(m, 2, true, SASL_CB_TLS_SERVER_END_POINT), 7);
	assert_int_equal(sasl_mech_list(NULL, 0, true, 0), 4);

	assert_int_equal(sasl_mech_parse("scram-sha-1", 11), SASL_MECH_NONE);
	assert_int_equal(sasl_mech_parse("SCRAM-SHA-1-PLU", 15), SASL_MECH_NONE);
	assert_int_equal(sasl_mech_parse("DIGEST-MD5", 10), SASL_MECH_NONE);
	assert_int_equal(sasl_mech_parse("", 0), SASL_MECH_NONE);
	assert_null(sasl_mech_name(SASL_MECH_NONE));
	assert_null(sasl_mech_name(SASL_MECH_COUNT));

	assert_int_equal(sasl_mech_check(SASL_MECH_PLAIN, false, 0), SASL_ERR_ENCRYPTION_REQUIRED);
	assert_int_equal(sasl_mech_check(SASL_MECH_PLAIN, true, 0), SASL_OK);
	assert_int_equal(sasl_mech_check(SASL_MECH_SCRAM_SHA_1_PLUS, true, 0),
	                 SASL_ERR_INVALID_MECHANISM);
	assert_int_equal(sasl_mech_check(SASL_MECH_SCRAM_SHA_1, false, 0), SASL_OK);
	assert_int_equal(sasl_mech_check(SASL_MECH_NONE, true, 3), SASL_ERR_INVALID_MECHANISM);

	assert_null(sasl_err_condition(SASL_OK));
	assert_string_equal(sasl_err_condition(SASL_ERR_ABORTED), "aborted");
	assert_string_equal(sasl_err_condition(SASL_ERR_ACCOUNT_DISABLED), "account-disabled");
	assert_string_equal(sasl_err_condition(SASL_ERR_CREDENTIALS_EXPIRED), "credentials-expired");
	assert_string_equal(sasl_err_condition(SASL_ERR_ENCRYPTION_REQUIRED), "encryption-required");
	assert_string_equal(sasl_err_condition(SASL_ERR_INCORRECT_ENCODING), "incorrect-encoding");
	assert_string_equal(sasl_err_condition(SASL_ERR_INVALID_AUTHZID), "invalid-authzid");
	assert_string_equal(sasl_err_condition(SASL_ERR_INVALID_MECHANISM), "invalid-mechanism");
	assert_string_equal(sasl_err_condition(SASL_ERR_MALFORMED_REQUEST), "malformed-request");
	assert_string_equal(sasl_err_condition(SASL_ERR_MECHANISM_TOO_WEAK), "mechanism-too-weak");
	assert_string_equal(sasl_err_condition(SASL_ERR_NOT_AUTHORIZED), "not-authorized");
	assert_string_equal(sasl_err_condition(SASL_ERR_TEMPORARY_AUTH_FAILURE),
	                    "temporary-auth-failure");

	/* the state lives in every authenticating session */
	assert_true(sizeof(struct sasl_scram) <= 512);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mechanisms),
		cmocka_unit_test(test_base64),
		cmocka_unit_test(test_saslprep),
		cmocka_unit_test(test_derive),
		cmocka_unit_test(test_rfc5802_sha1),
		cmocka_unit_test(test_rfc7677_sha256),
		cmocka_unit_test(test_sha512_vector),
		cmocka_unit_test(test_client_all_mechanisms),
		cmocka_unit_test(test_client_failures),
		cmocka_unit_test(test_cb_missing_from_caller),
		cmocka_unit_test(test_unknown_user),
		cmocka_unit_test(test_first_malformed),
		cmocka_unit_test(test_first_too_long),
		cmocka_unit_test(test_final_malformed),
		cmocka_unit_test(test_challenge_args),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_plain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
