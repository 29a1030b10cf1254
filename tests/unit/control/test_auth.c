/* control/auth: the router's SASL hooks driven the way the router drives
 * them (start, serve on "the control thread", resume, response) against a
 * real LMDB store in a mkdtemp directory. The SCRAM client side is written
 * here from RFC 5802 with OpenSSL directly, sharing nothing with control/,
 * so a mistake on the server side cannot be mirrored by the client. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>

#include "control/account.h"
#include "control/auth.h"
#include "net/net-t.h"
#include "store/store.h"

#define ITER 4096u
#define DOMAIN "example.com"

struct fx {
	char root[64];
	char dir[96];
	char secret[96];
	struct store *st;
	struct auth auth;
};

static struct fx *F;

static const uint8_t exporter[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t endpoint[32] = "fedcba9876543210fedcba9876543210";

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int group_setup(void **state)
{
	F = calloc(1, sizeof *F);
	assert_non_null(F);
	strcpy(F->root, "/tmp/stanzad-auth-XXXXXX");
	assert_non_null(mkdtemp(F->root));
	snprintf(F->dir, sizeof F->dir, "%s/db", F->root);
	snprintf(F->secret, sizeof F->secret, "%s/secret", F->root);
	assert_int_equal(store_open(&F->st, F->dir, NULL), STORE_OK);
	assert_int_equal(auth_init(&F->auth, F->st, ITER, F->secret), AUTH_OK);
	assert_int_equal(account_add(F->st, "juliet@" DOMAIN, "pencil", 6, ITER), ACCOUNT_OK);
	assert_int_equal(account_add(F->st, "x,y=z@" DOMAIN, "p\xc3\xa4ss", 5, ITER), ACCOUNT_OK);
	return 0;
}

static int group_teardown(void **state)
{
	auth_fini(&F->auth);
	store_close(F->st);
	nftw(F->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(F);
	return 0;
}

/* ---- plumbing: one session as the router keeps it ---------------------- */

struct sess {
	_Alignas(16) uint8_t st[AUTH_STATE_MAX];
	struct auth_env env;
	struct auth_out out;
	struct net_addr peer;
	uint8_t ans[AUTH_ANSWER_MAX];
	size_t ans_len;
};

static struct sess *sess_new(bool tls, unsigned cb)
{
	struct sess *s = calloc(1, sizeof *s);
	assert_non_null(s);
	s->env.tls = tls;
	s->env.cb_avail = cb;
	s->env.domain = DOMAIN;
	s->env.cb_exporter = exporter;
	s->env.cb_exporter_len = sizeof exporter;
	s->env.cb_endpoint = endpoint;
	s->env.cb_endpoint_len = sizeof endpoint;
	return s;
}

static void sess_peer(struct sess *s, uint8_t last)
{
	memset(&s->peer, 0, sizeof s->peer);
	s->peer.family = NET_AF_INET;
	s->peer.port = (uint16_t)(40000 + last);  /* differs per connection: must not matter */
	s->peer.addr[0] = 192; s->peer.addr[1] = 0; s->peer.addr[2] = 2; s->peer.addr[3] = last;
	s->env.peer = (const uint8_t *)&s->peer;
	s->env.peer_len = sizeof s->peer;
}

/* The router's step: PENDING goes to the control thread and back. */
static enum auth_step pump(struct sess *s, enum auth_step r)
{
	while (r == AUTH_PENDING) {
		assert_true(s->out.req_len > 0 && s->out.req_len <= AUTH_REQ_MAX);
		uint8_t req[AUTH_REQ_MAX];
		size_t rl = s->out.req_len;
		memcpy(req, s->out.req, rl);
		memset(s->out.req, 0, sizeof s->out.req);
		s->ans_len = auth_hooks.serve(req, rl, s->env.peer, s->env.peer_len, s->ans, sizeof s->ans);
		assert_true(s->ans_len > 0);
		r = auth_hooks.resume(s->st, s->ans, s->ans_len, &s->env, &s->out);
	}
	return r;
}

static enum auth_step start(struct sess *s, const char *mech, const void *data, size_t len, bool has)
{
	memset(s->st, 0, sizeof s->st);
	return pump(s, auth_hooks.start(s->st, mech, data, len, has, &s->env, &s->out));
}

static enum auth_step respond(struct sess *s, const void *data, size_t len)
{
	return pump(s, auth_hooks.response(s->st, data, len, &s->env, &s->out));
}

/* ---- an independent SCRAM client (RFC 5802 3 and 7) -------------------- */

struct client {
	const EVP_MD *md;
	size_t hl;
	char gs2[256];
	char cfb[512];
	char cnonce[32];
	uint8_t server_sig[64];
};

static size_t b64enc(const uint8_t *in, size_t n, char *out)
{
	return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

static size_t b64dec(const char *in, size_t n, uint8_t *out)
{
	int r = EVP_DecodeBlock(out, (const unsigned char *)in, (int)n);
	assert_true(r >= 0);
	size_t pad = (n > 0 && in[n - 1] == '=') + (n > 1 && in[n - 2] == '=');
	return (size_t)r - pad;
}

static const EVP_MD *md_of(const char *mech)
{
	if (strstr(mech, "SHA-512"))
		return EVP_sha512();
	if (strstr(mech, "SHA-256"))
		return EVP_sha256();
	return EVP_sha1();
}

/* user: already saslname-escaped. cb: NULL, "tls-exporter", ... */
static size_t client_first(struct client *c, const char *mech, const char *user,
			   const char *authzid, const char *cb, char *out)
{
	memset(c, 0, sizeof *c);
	c->md = md_of(mech);
	c->hl = (size_t)EVP_MD_get_size(c->md);
	strcpy(c->cnonce, "rOprNGfwEbeRWgbNEkqO");
	snprintf(c->gs2, sizeof c->gs2, "%s%s,%s%s,", cb ? "p=" : "n", cb ? cb : "",
		 authzid ? "a=" : "", authzid ? authzid : "");
	snprintf(c->cfb, sizeof c->cfb, "n=%s,r=%s", user, c->cnonce);
	return (size_t)sprintf(out, "%s%s", c->gs2, c->cfb);
}

static void hmac(const struct client *c, const uint8_t *k, size_t kl, const void *d, size_t dl,
		 uint8_t *out)
{
	unsigned int n = 0;
	assert_non_null(HMAC(c->md, k, (int)kl, d, dl, out, &n));
	assert_int_equal(n, c->hl);
}

struct server_first {
	char nonce[128];
	uint8_t salt[64];
	size_t salt_len;
	unsigned iter;
};

static void parse_sf(const char *sf, size_t n, struct server_first *p)
{
	char buf[600];
	assert_true(n < sizeof buf);
	memcpy(buf, sf, n);
	buf[n] = '\0';
	char *r = strstr(buf, "r="), *s = strstr(buf, ",s="), *i = strstr(buf, ",i=");
	assert_true(r == buf && s && i && s < i);
	*s = '\0';
	*i = '\0';
	strcpy(p->nonce, r + 2);
	p->salt_len = b64dec(s + 3, strlen(s + 3), p->salt);
	p->iter = (unsigned)strtoul(i + 3, NULL, 10);
}

/* client-final for server-first sf, with cb[0..cbl) as binding data. */
static size_t client_final(struct client *c, const char *sf, size_t sfl, const char *pass,
			   const uint8_t *cb, size_t cbl, char *out)
{
	struct server_first p;
	parse_sf(sf, sfl, &p);
	assert_memory_equal(p.nonce, c->cnonce, strlen(c->cnonce));
	uint8_t cbin[256 + 64];
	size_t gl = strlen(c->gs2);
	memcpy(cbin, c->gs2, gl);
	if (cb)
		memcpy(cbin + gl, cb, cbl);
	char cb64[512];
	b64enc(cbin, gl + (cb ? cbl : 0), cb64);
	char without[800];
	snprintf(without, sizeof without, "c=%s,r=%s", cb64, p.nonce);

	uint8_t salted[64], ckey[64], skey[64], stored[64], csig[64], proof[64];
	assert_int_equal(PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), p.salt, (int)p.salt_len,
					   (int)p.iter, c->md, (int)c->hl, salted), 1);
	hmac(c, salted, c->hl, "Client Key", 10, ckey);
	hmac(c, salted, c->hl, "Server Key", 10, skey);
	unsigned int dl;
	assert_int_equal(EVP_Digest(ckey, c->hl, stored, &dl, c->md, NULL), 1);
	char am[2048];
	int aml = snprintf(am, sizeof am, "%s,%.*s,%s", c->cfb, (int)sfl, sf, without);
	hmac(c, stored, c->hl, am, (size_t)aml, csig);
	for (size_t i = 0; i < c->hl; i++)
		proof[i] = ckey[i] ^ csig[i];
	hmac(c, skey, c->hl, am, (size_t)aml, c->server_sig);
	char p64[128];
	b64enc(proof, c->hl, p64);
	return (size_t)sprintf(out, "%s,p=%s", without, p64);
}

static void check_server_final(const struct client *c, const uint8_t *v, size_t n)
{
	char want[128] = "v=";
	size_t wl = 2 + b64enc(c->server_sig, c->hl, want + 2);
	assert_int_equal(n, wl);
	assert_memory_equal(v, want, wl);
}

/* A whole SCRAM exchange. Returns the last step; *sf gets server-first. */
static enum auth_step scram(struct sess *s, const char *mech, const char *user, const char *pass,
			    const char *authzid, const char *cbname, const uint8_t *cb, size_t cbl,
			    char *sf, size_t *sfl)
{
	struct client c;
	char msg[1024];
	size_t n = client_first(&c, mech, user, authzid, cbname, msg);
	enum auth_step r = start(s, mech, msg, n, true);
	if (r != AUTH_CHALLENGE)
		return r;
	assert_true(s->out.len < 600);
	if (sf) {
		memcpy(sf, s->out.data, s->out.len);
		*sfl = s->out.len;
	}
	char sfb[600];
	size_t sl = s->out.len;
	memcpy(sfb, s->out.data, sl);
	n = client_final(&c, sfb, sl, pass, cb, cbl, msg);
	r = respond(s, msg, n);
	if (r == AUTH_SUCCESS)
		check_server_final(&c, s->out.data, s->out.len);
	return r;
}

/* ---- tests ------------------------------------------------------------- */

static void test_mechanisms(void **state)
{
	const char *names[16];
	size_t n = auth_hooks.mechanisms(true, AUTH_CB_TLS_EXPORTER, names, 16);
	assert_int_equal(n, 7);
	assert_string_equal(names[0], "SCRAM-SHA-512-PLUS");
	assert_string_equal(names[6], "PLAIN");
	n = auth_hooks.mechanisms(false, 0, names, 16);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "SCRAM-SHA-512");
	assert_string_equal(names[2], "SCRAM-SHA-1");
	assert_int_equal(auth_hooks.mechanisms(true, 0, names, 2), 2);
}

static void test_scram_ok(void **state)
{
	static const char *const mechs[] = { "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512" };
	struct sess *s = sess_new(false, 0);
	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(scram(s, mechs[i], "juliet", "pencil", NULL, NULL, NULL, 0, NULL, NULL),
				 AUTH_SUCCESS);
		assert_string_equal(s->out.user, "juliet");
		assert_int_equal(s->out.user_len, 6);
		/* RFC 6120 sends additional data in <success/>: nothing after. */
		assert_int_equal(respond(s, "", 0), AUTH_FAILURE);
		assert_string_equal(s->out.condition, "malformed-request");
	}
	/* Usernames are mapped with Nodeprep; saslname escapes are undone. */
	assert_int_equal(scram(s, "SCRAM-SHA-256", "JULIET", "pencil", NULL, NULL, NULL, 0, NULL, NULL),
			 AUTH_SUCCESS);
	assert_string_equal(s->out.user, "juliet");
	assert_int_equal(scram(s, "SCRAM-SHA-1", "x=2Cy=3Dz", "p\xc3\xa4ss", NULL, NULL, NULL, 0, NULL, NULL),
			 AUTH_SUCCESS);
	assert_string_equal(s->out.user, "x,y=z");
	free(s);
}

static void test_scram_plus(void **state)
{
	struct sess *s = sess_new(true, AUTH_CB_TLS_EXPORTER | AUTH_CB_TLS_SERVER_END_POINT);
	assert_int_equal(scram(s, "SCRAM-SHA-256-PLUS", "juliet", "pencil", NULL, "tls-exporter",
			       exporter, sizeof exporter, NULL, NULL), AUTH_SUCCESS);
	assert_string_equal(s->out.user, "juliet");
	assert_int_equal(scram(s, "SCRAM-SHA-512-PLUS", "juliet", "pencil", NULL, "tls-server-end-point",
			       endpoint, sizeof endpoint, NULL, NULL), AUTH_SUCCESS);
	assert_int_equal(scram(s, "SCRAM-SHA-1-PLUS", "juliet", "pencil", NULL, "tls-exporter",
			       exporter, sizeof exporter, NULL, NULL), AUTH_SUCCESS);
	/* The client saw other binding data: a man in the middle. */
	assert_int_equal(scram(s, "SCRAM-SHA-256-PLUS", "juliet", "pencil", NULL, "tls-exporter",
			       endpoint, sizeof endpoint, NULL, NULL), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "not-authorized");
	/* The binding type the client chose decides which data is used. */
	assert_int_equal(scram(s, "SCRAM-SHA-256-PLUS", "juliet", "pencil", NULL, "tls-server-end-point",
			       exporter, sizeof exporter, NULL, NULL), AUTH_FAILURE);
	/* 'n' while -PLUS was offered is fine (client cannot bind); 'y' is a downgrade. */
	assert_int_equal(scram(s, "SCRAM-SHA-256", "juliet", "pencil", NULL, NULL, NULL, 0, NULL, NULL),
			 AUTH_SUCCESS);
	const char y[] = "y,,n=juliet,r=abcdefgh";
	assert_int_equal(start(s, "SCRAM-SHA-256", y, sizeof y - 1, true), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "not-authorized");
	/* -PLUS on a connection without bindings was never offered. */
	s->env.cb_avail = 0;
	assert_int_equal(start(s, "SCRAM-SHA-256-PLUS", "", 0, false), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "invalid-mechanism");
	free(s);
}

static void test_scram_wrong_password(void **state)
{
	struct sess *s = sess_new(true, 0);
	assert_int_equal(scram(s, "SCRAM-SHA-256", "juliet", "pencil2", NULL, NULL, NULL, 0, NULL, NULL),
			 AUTH_FAILURE);
	assert_string_equal(s->out.condition, "not-authorized");
	assert_int_equal(s->out.delay_ms, 0);   /* no peer address: never throttled */
	/* A username Nodeprep refuses cannot be an account. */
	assert_int_equal(scram(s, "SCRAM-SHA-256", "juliet@" DOMAIN, "pencil", NULL, NULL, NULL, 0, NULL, NULL),
			 AUTH_FAILURE);
	assert_string_equal(s->out.condition, "not-authorized");
	free(s);
}

static void test_scram_unknown_user(void **state)
{
	struct sess *s = sess_new(true, 0);
	char sf1[600], sf2[600], sfk[600];
	size_t l1, l2, lk;
	assert_int_equal(scram(s, "SCRAM-SHA-256", "romeo", "pencil", NULL, NULL, NULL, 0, sf1, &l1),
			 AUTH_FAILURE);
	assert_string_equal(s->out.condition, "not-authorized");
	assert_int_equal(scram(s, "SCRAM-SHA-256", "romeo", "x", NULL, NULL, NULL, 0, sf2, &l2),
			 AUTH_FAILURE);
	assert_int_equal(scram(s, "SCRAM-SHA-256", "juliet", "pencil", NULL, NULL, NULL, 0, sfk, &lk),
			 AUTH_SUCCESS);
	struct server_first a, b, k;
	parse_sf(sf1, l1, &a);
	parse_sf(sf2, l2, &b);
	parse_sf(sfk, lk, &k);
	/* Looks like a real account: same shape, same count, a salt stable
	 * across attempts (a random one each time would give it away). */
	assert_int_equal(a.iter, k.iter);
	assert_int_equal(a.salt_len, k.salt_len);
	assert_int_equal(strlen(a.nonce), strlen(k.nonce));
	assert_int_equal(a.salt_len, b.salt_len);
	assert_memory_equal(a.salt, b.salt, a.salt_len);
	assert_memory_not_equal(a.salt, k.salt, a.salt_len);
	free(s);
}

static void test_authzid(void **state)
{
	struct sess *s = sess_new(true, 0);
	assert_int_equal(scram(s, "SCRAM-SHA-256", "juliet", "pencil", "juliet@" DOMAIN, NULL, NULL, 0,
			       NULL, NULL), AUTH_SUCCESS);
	/* Prepared before comparing. */
	assert_int_equal(scram(s, "SCRAM-SHA-256", "juliet", "pencil", "Juliet@EXAMPLE.com", NULL, NULL, 0,
			       NULL, NULL), AUTH_SUCCESS);
	static const char *const bad[] = {
		"romeo@" DOMAIN, "juliet@example.net", "juliet@" DOMAIN "/balcony", DOMAIN, "@@@",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(scram(s, "SCRAM-SHA-256", "juliet", "pencil", bad[i], NULL, NULL, 0,
				       NULL, NULL), AUTH_FAILURE);
		assert_string_equal(s->out.condition, "invalid-authzid");
	}
	const char ok[] = "juliet@" DOMAIN "\0juliet\0pencil";
	assert_int_equal(start(s, "PLAIN", ok, sizeof ok - 1, true), AUTH_SUCCESS);
	const char other[] = "romeo@" DOMAIN "\0juliet\0pencil";
	assert_int_equal(start(s, "PLAIN", other, sizeof other - 1, true), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "invalid-authzid");
	free(s);
}

static void test_plain(void **state)
{
	struct sess *s = sess_new(true, 0);
	const char good[] = "\0juliet\0pencil";
	assert_int_equal(auth_hooks.start(s->st, "PLAIN", (const uint8_t *)good, sizeof good - 1, true,
					  &s->env, &s->out), AUTH_PENDING);
	/* serve wipes the password out of the request it was handed. */
	uint8_t req[AUTH_REQ_MAX];
	size_t rl = s->out.req_len;
	memcpy(req, s->out.req, rl);
	assert_non_null(memmem(req, rl, "pencil", 6));
	s->ans_len = auth_hooks.serve(req, rl, NULL, 0, s->ans, sizeof s->ans);
	assert_null(memmem(req, rl, "pencil", 6));
	assert_int_equal(auth_hooks.resume(s->st, s->ans, s->ans_len, &s->env, &s->out), AUTH_SUCCESS);
	assert_string_equal(s->out.user, "juliet");
	assert_int_equal(s->out.len, 0);
	assert_int_equal(respond(s, "", 0), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "malformed-request");

	const char bad[] = "\0juliet\0pencil!";
	assert_int_equal(start(s, "PLAIN", bad, sizeof bad - 1, true), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "not-authorized");
	const char unknown[] = "\0romeo\0pencil";
	assert_int_equal(start(s, "PLAIN", unknown, sizeof unknown - 1, true), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "not-authorized");
	const char upper[] = "\0JULIET\0pencil";
	assert_int_equal(start(s, "PLAIN", upper, sizeof upper - 1, true), AUTH_SUCCESS);
	assert_string_equal(s->out.user, "juliet");
	const char utf8[] = "\0x,y=z\0p\xc3\xa4ss";
	assert_int_equal(start(s, "PLAIN", utf8, sizeof utf8 - 1, true), AUTH_SUCCESS);
	assert_string_equal(s->out.user, "x,y=z");

	/* No initial response: an empty challenge, then the response. */
	assert_int_equal(start(s, "PLAIN", NULL, 0, false), AUTH_CHALLENGE);
	assert_int_equal(s->out.len, 0);
	assert_int_equal(respond(s, good, sizeof good - 1), AUTH_SUCCESS);
	/* "=": present but empty. */
	assert_int_equal(start(s, "PLAIN", "", 0, true), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "malformed-request");
	free(s);
}

static void test_scram_no_initial_response(void **state)
{
	struct sess *s = sess_new(true, 0);
	struct client c;
	char msg[1024];
	assert_int_equal(start(s, "SCRAM-SHA-1", NULL, 0, false), AUTH_CHALLENGE);
	assert_int_equal(s->out.len, 0);
	size_t n = client_first(&c, "SCRAM-SHA-1", "juliet", NULL, NULL, msg);
	assert_int_equal(respond(s, msg, n), AUTH_CHALLENGE);
	char sf[600];
	size_t sl = s->out.len;
	memcpy(sf, s->out.data, sl);
	n = client_final(&c, sf, sl, "pencil", NULL, 0, msg);
	assert_int_equal(respond(s, msg, n), AUTH_SUCCESS);
	check_server_final(&c, s->out.data, s->out.len);
	free(s);
}

static void test_conditions(void **state)
{
	struct sess *s = sess_new(false, 0);
	const char good[] = "\0juliet\0pencil";
	assert_int_equal(start(s, "PLAIN", good, sizeof good - 1, true), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "encryption-required");
	assert_int_equal(start(s, "DIGEST-MD5", "", 0, false), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "invalid-mechanism");
	assert_int_equal(start(s, "scram-sha-1", "", 0, false), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "invalid-mechanism");
	const char junk[] = "n,,junk";
	assert_int_equal(start(s, "SCRAM-SHA-1", junk, sizeof junk - 1, true), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "malformed-request");
	/* After a failure the exchange is over. */
	assert_int_equal(respond(s, "x", 1), AUTH_FAILURE);
	assert_string_equal(s->out.condition, "malformed-request");
	/* end wipes whatever is in the state. */
	struct client c;
	char msg[512];
	size_t n = client_first(&c, "SCRAM-SHA-1", "juliet", NULL, NULL, msg);
	assert_int_equal(start(s, "SCRAM-SHA-1", msg, n, true), AUTH_CHALLENGE);
	auth_hooks.end(s->st);
	static const uint8_t zero[AUTH_STATE_MAX];
	assert_memory_equal(s->st, zero, 512);
	free(s);
}

static void test_throttle(void **state)
{
	struct sess *a = sess_new(false, 0), *b = sess_new(false, 0);
	/* A fixed key: the slots of these addresses are then fixed, and a
	 * collision could not make the test flaky. */
	F->auth.hash_key[0] = 0x0123456789abcdefull;
	F->auth.hash_key[1] = 0xfedcba9876543210ull;
	sess_peer(a, 10);
	sess_peer(b, 11);
	static const uint32_t want[] = { 0, 0, 1000, 2000, 4000, 8000, 8000, 8000 };
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		a->peer.port++;   /* a new connection each time */
		assert_int_equal(start(a, "NOPE", "", 0, false), AUTH_FAILURE);
		assert_int_equal(a->out.delay_ms, want[i]);
	}
	/* Another address starts from nothing. */
	assert_int_equal(start(b, "NOPE", "", 0, false), AUTH_FAILURE);
	assert_int_equal(b->out.delay_ms, 0);
	/* Success elsewhere changes nothing for a. */
	assert_int_equal(scram(b, "SCRAM-SHA-1", "juliet", "pencil", NULL, NULL, NULL, 0, NULL, NULL),
			 AUTH_SUCCESS);
	assert_int_equal(b->out.delay_ms, 0);
	assert_int_equal(start(a, "NOPE", "", 0, false), AUTH_FAILURE);
	assert_int_equal(a->out.delay_ms, 8000);
	/* A password failure counts like any other. */
	assert_int_equal(scram(a, "SCRAM-SHA-1", "juliet", "x", NULL, NULL, NULL, 0, NULL, NULL),
			 AUTH_FAILURE);
	assert_int_equal(a->out.delay_ms, 8000);
	/* Counts halve every 60 s: 10 failures, 3 minutes later 10 >> 3 = 1. */
	F->auth.clock_skew_s += 180;
	assert_int_equal(start(a, "NOPE", "", 0, false), AUTH_FAILURE);
	assert_int_equal(a->out.delay_ms, 0);
	assert_int_equal(start(a, "NOPE", "", 0, false), AUTH_FAILURE);
	assert_int_equal(a->out.delay_ms, 1000);
	/* IPv6: one /64 is one client. */
	struct sess *c = sess_new(false, 0);
	memset(&c->peer, 0, sizeof c->peer);
	c->peer.family = NET_AF_INET6;
	c->peer.addr[0] = 0x20; c->peer.addr[1] = 0x01; c->peer.addr[2] = 0x0d; c->peer.addr[3] = 0xb8;
	c->env.peer = (const uint8_t *)&c->peer;
	c->env.peer_len = sizeof c->peer;
	for (unsigned i = 0; i < 3; i++) {
		c->peer.addr[15] = (uint8_t)i;
		assert_int_equal(start(c, "NOPE", "", 0, false), AUTH_FAILURE);
	}
	assert_int_equal(c->out.delay_ms, 1000);
	free(a);
	free(b);
	free(c);
}

static void test_secret_file(void **state)
{
	struct stat sb;
	assert_int_equal(stat(F->secret, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sb.st_size, 32);
	uint8_t first[32];
	memcpy(first, F->auth.secret, 32);

	/* A restart reads the same secret, and so gives the same fake salt. */
	struct sess *s = sess_new(true, 0);
	char sf1[600], sf2[600];
	size_t l1, l2;
	assert_int_equal(scram(s, "SCRAM-SHA-512", "nobody", "x", NULL, NULL, NULL, 0, sf1, &l1), AUTH_FAILURE);
	auth_fini(&F->auth);
	assert_int_equal(auth_init(&F->auth, F->st, ITER, F->secret), AUTH_OK);
	assert_memory_equal(F->auth.secret, first, 32);
	assert_int_equal(scram(s, "SCRAM-SHA-512", "nobody", "x", NULL, NULL, NULL, 0, sf2, &l2), AUTH_FAILURE);
	struct server_first a, b;
	parse_sf(sf1, l1, &a);
	parse_sf(sf2, l2, &b);
	assert_int_equal(a.salt_len, b.salt_len);
	assert_memory_equal(a.salt, b.salt, a.salt_len);

	/* Another secret file: another secret. */
	char other[128];
	struct auth x;
	snprintf(other, sizeof other, "%s/secret2", F->root);
	assert_int_equal(auth_init(&x, F->st, ITER, other), AUTH_OK);
	assert_memory_not_equal(x.secret, first, 32);
	auth_fini(&x);
	/* Refused: readable by others, wrong size, a directory, bad count. */
	assert_int_equal(chmod(other, 0644), 0);
	assert_int_equal(auth_init(&x, F->st, ITER, other), AUTH_ERROR);
	assert_int_equal(chmod(other, 0600), 0);
	assert_int_equal(truncate(other, 16), 0);
	assert_int_equal(auth_init(&x, F->st, ITER, other), AUTH_ERROR);
	assert_int_equal(auth_init(&x, F->st, ITER, F->root), AUTH_ERROR);
	assert_int_equal(auth_init(&x, F->st, 100, F->secret), AUTH_ERROR);
	snprintf(other, sizeof other, "%s/no/such/dir/secret", F->root);
	assert_int_equal(auth_init(&x, F->st, ITER, other), AUTH_ERROR);

	/* A successful init took over the hooks, and its fini left none;
	 * failed inits replace nothing. */
	assert_int_equal(auth_init(&F->auth, F->st, ITER, F->secret), AUTH_OK);
	assert_int_equal(auth_init(&x, F->st, 100, F->secret), AUTH_ERROR);
	assert_int_equal(scram(s, "SCRAM-SHA-256", "juliet", "pencil", NULL, NULL, NULL, 0, NULL, NULL),
			 AUTH_SUCCESS);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mechanisms),
		cmocka_unit_test(test_scram_ok),
		cmocka_unit_test(test_scram_plus),
		cmocka_unit_test(test_scram_wrong_password),
		cmocka_unit_test(test_scram_unknown_user),
		cmocka_unit_test(test_authzid),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_scram_no_initial_response),
		cmocka_unit_test(test_conditions),
		cmocka_unit_test(test_throttle),
		cmocka_unit_test(test_secret_file),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
