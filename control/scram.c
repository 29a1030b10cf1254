/* SCRAM (RFC 5802, RFC 7677) server side, credential derivation, and the
 * PLAIN check, which is SCRAM's key derivation run on a cleartext password.
 *
 * Message grammar (RFC 5802 7), the parts this file reads:
 *   client-first  = gs2-header client-first-bare
 *   gs2-header    = ("n" / "y" / "p=" cb-name) "," ["a=" saslname] ","
 *   client-first-bare = ["m=" ...] "n=" saslname "," "r=" nonce *("," ext)
 *   client-final  = "c=" base64 "," "r=" nonce *("," ext) "," "p=" base64
 * The m= attribute (mandatory extension) is refused: we implement none.
 */
#include "control/sasl.h"

#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

enum { STEP_IDLE = 0, STEP_STARTED, STEP_CHALLENGED };

/* Room kept in step 1 for server-first: "r=" cnonce snonce ",s=" salt
 * ",i=" count, with the longest nonce and salt and an 8-digit count. */
#define SNONCE_MAX      32u
#define SF_RESERVE(cn)  (2u + (cn) + SNONCE_MAX + 3u + 44u + 3u + 8u)

static const EVP_MD *md_of(enum sasl_hash h)
{
	switch (h) {
	case SASL_SHA1:   return EVP_sha1();
	case SASL_SHA256: return EVP_sha256();
	case SASL_SHA512: return EVP_sha512();
	}
	return NULL;
}

static bool hmac(enum sasl_hash h, const uint8_t *key, size_t klen,
                 const void *data, size_t len, uint8_t *out)
{
	unsigned int n = 0;
	return HMAC(md_of(h), key, (int)klen, data, len, out, &n) != NULL &&
	       n == sasl_hash_len(h);
}

static bool digest(enum sasl_hash h, const uint8_t *data, size_t len, uint8_t *out)
{
	unsigned int n = 0;
	return EVP_Digest(data, len, out, &n, md_of(h), NULL) == 1 && n == sasl_hash_len(h);
}

/* SaltedPassword = Hi(pass, salt, i) is PBKDF2 with HMAC-H and one block
 * (RFC 5802 2.2); then ClientKey, StoredKey = H(ClientKey), ServerKey. */
static bool keys_from_password(enum sasl_hash h, const char *pass, size_t len,
                               const uint8_t *salt, size_t salt_len, uint32_t iter,
                               uint8_t *stored_key, uint8_t *server_key)
{
	size_t hl = sasl_hash_len(h);
	uint8_t salted[SASL_HASH_MAX], client_key[SASL_HASH_MAX];
	bool ok = PKCS5_PBKDF2_HMAC(pass, (int)len, salt, (int)salt_len, (int)iter,
	                            md_of(h), (int)hl, salted) == 1 &&
	          hmac(h, salted, hl, "Client Key", 10, client_key) &&
	          digest(h, client_key, hl, stored_key) &&
	          (!server_key || hmac(h, salted, hl, "Server Key", 10, server_key));
	OPENSSL_cleanse(salted, sizeof salted);
	OPENSSL_cleanse(client_key, sizeof client_key);
	return ok;
}

static bool cred_ok(const struct sasl_scram_cred *c)
{
	return c->hash <= SASL_SHA512 && c->salt_len >= 1 && c->salt_len <= SASL_SALT_MAX &&
	       c->iterations >= 1 && c->iterations <= SASL_SCRAM_MAX_ITER;
}

/* ---- credentials -------------------------------------------------------- */

enum sasl_err sasl_scram_derive(struct sasl_scram_cred *out, enum sasl_hash h,
                                const char *pass, size_t len,
                                const uint8_t *salt, size_t salt_len,
                                uint32_t iterations)
{
	memset(out, 0, sizeof *out);
	if (!md_of(h) || iterations < SASL_SCRAM_MIN_ITER || iterations > SASL_SCRAM_MAX_ITER)
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	if (salt && (salt_len == 0 || salt_len > SASL_SALT_MAX))
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;

	char prepped[SASL_PASS_MAX + 1];
	size_t plen;
	enum sasl_err e = sasl_saslprep(pass, len, prepped, sizeof prepped, &plen, true);
	if (e != SASL_OK)
		return e;

	out->hash = (uint8_t)h;
	out->iterations = iterations;
	if (salt) {
		memcpy(out->salt, salt, salt_len);
		out->salt_len = (uint8_t)salt_len;
	} else {
		out->salt_len = SASL_SALT_DEFAULT;
		if (RAND_bytes(out->salt, SASL_SALT_DEFAULT) != 1)
			e = SASL_ERR_TEMPORARY_AUTH_FAILURE;
	}
	if (e == SASL_OK && !keys_from_password(h, prepped, plen, out->salt, out->salt_len,
	                                        iterations, out->stored_key, out->server_key))
		e = SASL_ERR_TEMPORARY_AUTH_FAILURE;
	OPENSSL_cleanse(prepped, sizeof prepped);
	if (e != SASL_OK)
		OPENSSL_cleanse(out, sizeof *out);
	return e;
}

enum sasl_err sasl_scram_fake_cred(struct sasl_scram_cred *out, enum sasl_hash h,
                                   const char *user, size_t user_len,
                                   const uint8_t secret[SASL_SECRET_LEN],
                                   uint32_t iterations)
{
	static const char *const hname[] = { "SHA-1", "SHA-256", "SHA-512" };
	memset(out, 0, sizeof *out);
	if (!md_of(h) || iterations < 1 || iterations > SASL_SCRAM_MAX_ITER ||
	    user_len > SASL_NAME_MAX)
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;

	/* Label, hash name and user, NUL-separated so no two inputs collide. */
	char in[32 + SASL_NAME_MAX];
	int n = snprintf(in, sizeof in, "stanzad-fake-salt%c%s%c", 0, hname[h], 0);
	memcpy(in + n, user, user_len);
	uint8_t mac[32];
	if (!hmac(SASL_SHA256, secret, SASL_SECRET_LEN, in, (size_t)n + user_len, mac))
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	out->hash = (uint8_t)h;
	out->fake = 1;
	out->iterations = iterations;
	out->salt_len = SASL_SALT_DEFAULT;
	memcpy(out->salt, mac, SASL_SALT_DEFAULT);
	/* The keys are never compared with success possible (fake is set);
	 * they are filled only so the exchange does the same work. */
	memcpy(out->stored_key, mac, sizeof mac);
	memcpy(out->server_key, mac, sizeof mac);
	return SASL_OK;
}

/* ---- PLAIN -------------------------------------------------------------- */

enum sasl_err sasl_plain_verify(struct sasl_plain *p, const struct sasl_scram_cred *cred)
{
	enum sasl_err e = SASL_ERR_TEMPORARY_AUTH_FAILURE;
	uint8_t stored[SASL_HASH_MAX];
	if (cred_ok(cred) && p->pass_len > 0 &&
	    keys_from_password((enum sasl_hash)cred->hash, p->pass, p->pass_len, cred->salt,
	                       cred->salt_len, cred->iterations, stored, NULL)) {
		bool same = CRYPTO_memcmp(stored, cred->stored_key,
		                          sasl_hash_len((enum sasl_hash)cred->hash)) == 0;
		e = same && !cred->fake ? SASL_OK : SASL_ERR_NOT_AUTHORIZED;
	}
	OPENSSL_cleanse(stored, sizeof stored);
	OPENSSL_cleanse(p->pass, sizeof p->pass);
	p->pass_len = 0;
	return e;
}

/* ---- SCRAM parsing helpers ---------------------------------------------- */

/* RFC 5802 7: printable = %x21-2B / %x2D-7E */
static bool nonce_ok(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e || s[i] == ',')
			return false;
	return true;
}

/* Bytes up to the next ',' or the end. */
static size_t field_len(const char *p, const char *end)
{
	const char *c = memchr(p, ',', (size_t)(end - p));
	return (size_t)((c ? c : end) - p);
}

/* Decode a saslname ("=2C" is ',' and "=3D" is '='; any other '=' is an
 * error) into out, NUL-terminated. */
static bool saslname_decode(const char *s, size_t n, char *out, size_t cap, size_t *out_len)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '=') {
			if (n - i < 3)
				return false;
			if (s[i + 1] == '2' && s[i + 2] == 'C')
				c = ',';
			else if (s[i + 1] == '3' && s[i + 2] == 'D')
				c = '=';
			else
				return false;
			i += 2;
		}
		if (o + 1 >= cap)
			return false;
		out[o++] = c;
	}
	out[o] = '\0';
	*out_len = o;
	return o > 0;
}

/* Extensions: ALPHA "=" 1*value-char, one per field. */
static bool ext_ok(const char *p, size_t n)
{
	return n >= 3 && ((p[0] | 0x20) >= 'a' && (p[0] | 0x20) <= 'z') && p[1] == '=';
}

static void scram_kill(struct sasl_scram *st)
{
	OPENSSL_cleanse(st, sizeof *st);
}

/* ---- step 1: client-first-message --------------------------------------- */

static enum sasl_err parse_first(struct sasl_scram *st, enum sasl_mech mech, unsigned cb_avail,
                                 const char *msg, size_t len, struct sasl_names *names)
{
	bool plus = mech == SASL_MECH_SCRAM_SHA_1_PLUS || mech == SASL_MECH_SCRAM_SHA_256_PLUS ||
	            mech == SASL_MECH_SCRAM_SHA_512_PLUS;
	const char *p = msg, *end = msg + len;

	/* gs2-cbind-flag */
	if (len < 3)
		return SASL_ERR_MALFORMED_REQUEST;
	char flag = *p;
	size_t fl = field_len(p, end);
	if (p + fl == end)
		return SASL_ERR_MALFORMED_REQUEST;
	if ((flag == 'n' || flag == 'y') && fl == 1) {
		if (plus)
			return SASL_ERR_MALFORMED_REQUEST;   /* a -PLUS exchange binds: 'p' */
		/* RFC 5802 6: the client could bind but believes we cannot; we
		 * advertised -PLUS, so someone removed it on the way. */
		if (flag == 'y' && cb_avail)
			return SASL_ERR_NOT_AUTHORIZED;
	} else if (flag == 'p' && fl > 2 && p[1] == '=') {
		if (!plus)
			return SASL_ERR_MALFORMED_REQUEST;
		const char *name = p + 2;
		size_t nl = fl - 2;
		for (size_t i = 0; i < nl; i++) {
			char c = name[i];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9') || c == '.' || c == '-'))
				return SASL_ERR_MALFORMED_REQUEST;
		}
		if (nl == 12 && memcmp(name, "tls-exporter", 12) == 0)
			st->cb_type = SASL_CB_TLS_EXPORTER;
		else if (nl == 20 && memcmp(name, "tls-server-end-point", 20) == 0)
			st->cb_type = SASL_CB_TLS_SERVER_END_POINT;
		else if (nl == 10 && memcmp(name, "tls-unique", 10) == 0)
			st->cb_type = SASL_CB_TLS_UNIQUE;
		if (!(st->cb_type & cb_avail))
			return SASL_ERR_NOT_AUTHORIZED;
	} else {
		return SASL_ERR_MALFORMED_REQUEST;
	}
	st->cb_flag = (uint8_t)flag;
	p += fl + 1;

	/* [ "a=" saslname ] "," */
	fl = field_len(p, end);
	if (p + fl == end)
		return SASL_ERR_MALFORMED_REQUEST;
	if (fl > 0) {
		size_t n;
		if (fl < 3 || p[0] != 'a' || p[1] != '=' ||
		    !saslname_decode(p + 2, fl - 2, names->authzid, sizeof names->authzid, &n))
			return SASL_ERR_MALFORMED_REQUEST;
		names->authzid_len = (uint16_t)n;
	}
	p += fl + 1;
	st->gs2_len = (uint16_t)(p - msg);

	/* client-first-message-bare */
	const char *bare = p;
	if (end - p >= 2 && p[0] == 'm' && p[1] == '=')
		return SASL_ERR_MALFORMED_REQUEST;
	fl = field_len(p, end);
	if (fl < 3 || p[0] != 'n' || p[1] != '=' || p + fl == end)
		return SASL_ERR_MALFORMED_REQUEST;
	char raw[SASL_NAME_MAX + 1];
	size_t n;
	if (!saslname_decode(p + 2, fl - 2, raw, sizeof raw, &n))
		return SASL_ERR_MALFORMED_REQUEST;
	size_t ul;
	enum sasl_err e = sasl_saslprep(raw, n, names->user, sizeof names->user, &ul, false);
	if (e != SASL_OK)
		return e;
	names->user_len = (uint16_t)ul;
	p += fl + 1;

	fl = field_len(p, end);
	if (fl < 3 || p[0] != 'r' || p[1] != '=' || !nonce_ok(p + 2, fl - 2))
		return SASL_ERR_MALFORMED_REQUEST;
	st->nonce_off = (uint16_t)(p + 2 - bare);
	st->nonce_len = (uint16_t)(fl - 2);
	p += fl;
	while (p < end) {
		p++;
		fl = field_len(p, end);
		if (!ext_ok(p, fl))
			return SASL_ERR_MALFORMED_REQUEST;
		p += fl;
	}

	size_t bare_len = (size_t)(end - bare);
	if (bare_len + SF_RESERVE(st->nonce_len) > SASL_SCRAM_BUF)
		return SASL_ERR_MALFORMED_REQUEST;
	memcpy(st->msg, bare, bare_len);
	st->cfb_len = (uint16_t)bare_len;
	unsigned int dl = 0;
	if (EVP_Digest(msg, st->gs2_len, st->gs2_sha256, &dl, EVP_sha256(), NULL) != 1)
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	return SASL_OK;
}

enum sasl_err sasl_scram_start(struct sasl_scram *st, enum sasl_mech mech,
                               unsigned cb_avail, const char *msg, size_t len,
                               struct sasl_names *names)
{
	enum sasl_hash h;
	memset(st, 0, sizeof *st);
	names->user_len = names->authzid_len = 0;
	names->user[0] = names->authzid[0] = '\0';
	if (!sasl_mech_hash(mech, &h))
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	/* The whole message is UTF-8 without NUL (RFC 5802 7: value-char);
	 * checking once here lets the field parsers look at bytes only. */
	if (len == 0 || len > SASL_MSG_MAX || memchr(msg, 0, len) || !sasl_utf8_valid(msg, len))
		return SASL_ERR_MALFORMED_REQUEST;
	enum sasl_err e = parse_first(st, mech, cb_avail, msg, len, names);
	if (e != SASL_OK) {
		scram_kill(st);
		names->user_len = names->authzid_len = 0;
		names->user[0] = names->authzid[0] = '\0';
		return e;
	}
	st->mech = (uint8_t)mech;
	st->step = STEP_STARTED;
	return SASL_OK;
}

/* ---- step 2: server-first-message --------------------------------------- */

enum sasl_err sasl_scram_challenge_nonce(struct sasl_scram *st,
                                         const struct sasl_scram_cred *cred,
                                         const char *snonce, size_t snonce_len,
                                         char *out, size_t cap, size_t *out_len)
{
	enum sasl_hash h;
	*out_len = 0;
	if (st->step != STEP_STARTED) {
		scram_kill(st);
		return SASL_ERR_MALFORMED_REQUEST;
	}
	if (!sasl_mech_hash((enum sasl_mech)st->mech, &h) || !cred_ok(cred) || cred->hash != h ||
	    snonce_len > SNONCE_MAX || !nonce_ok(snonce, snonce_len))
		goto fail;

	char salt[48];
	if (!sasl_b64_encode(cred->salt, cred->salt_len, salt, sizeof salt))
		goto fail;
	char tail[96];
	int tl = snprintf(tail, sizeof tail, ",s=%s,i=%u", salt, (unsigned)cred->iterations);
	size_t n = 2 + st->nonce_len + snonce_len + (size_t)tl;
	if (tl < 0 || (size_t)tl >= sizeof tail || st->cfb_len + n > SASL_SCRAM_BUF || n > cap)
		goto fail;
	/* The client nonce is already in msg (inside client-first-bare): copy
	 * it forward, the regions never overlap. */
	char *sf = st->msg + st->cfb_len;
	memcpy(sf, "r=", 2);
	memcpy(sf + 2, st->msg + st->nonce_off, st->nonce_len);
	memcpy(sf + 2 + st->nonce_len, snonce, snonce_len);
	memcpy(sf + 2 + st->nonce_len + snonce_len, tail, (size_t)tl);
	memcpy(out, sf, n);
	*out_len = n;
	st->sf_len = (uint16_t)n;
	st->nonce_off = (uint16_t)(st->cfb_len + 2);
	st->nonce_len = (uint16_t)(st->nonce_len + snonce_len);
	st->fake = cred->fake;
	memcpy(st->stored_key, cred->stored_key, sizeof st->stored_key);
	memcpy(st->server_key, cred->server_key, sizeof st->server_key);
	st->step = STEP_CHALLENGED;
	return SASL_OK;
fail:
	scram_kill(st);
	return SASL_ERR_TEMPORARY_AUTH_FAILURE;
}

enum sasl_err sasl_scram_challenge(struct sasl_scram *st, const struct sasl_scram_cred *cred,
                                   char *out, size_t cap, size_t *out_len)
{
	uint8_t rnd[SASL_SCRAM_SNONCE_LEN / 4 * 3];
	char nonce[SASL_SCRAM_SNONCE_LEN + 1];
	if (RAND_bytes(rnd, sizeof rnd) != 1 ||
	    sasl_b64_encode(rnd, sizeof rnd, nonce, sizeof nonce) != SASL_SCRAM_SNONCE_LEN) {
		*out_len = 0;
		scram_kill(st);
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	}
	return sasl_scram_challenge_nonce(st, cred, nonce, SASL_SCRAM_SNONCE_LEN, out, cap, out_len);
}

/* ---- step 3: client-final-message --------------------------------------- */

static enum sasl_err check_final(struct sasl_scram *st, const char *msg, size_t len,
                                 const uint8_t *cb, size_t cb_len,
                                 char *out, size_t cap, size_t *out_len)
{
	enum sasl_hash h;
	if (!sasl_mech_hash((enum sasl_mech)st->mech, &h))
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	size_t hl = sasl_hash_len(h);
	if (len == 0 || len > SASL_MSG_MAX || memchr(msg, 0, len) || !sasl_utf8_valid(msg, len))
		return SASL_ERR_MALFORMED_REQUEST;
	const char *p = msg, *end = msg + len;

	size_t fl = field_len(p, end);
	if (fl < 2 || p[0] != 'c' || p[1] != '=' || p + fl == end)
		return SASL_ERR_MALFORMED_REQUEST;
	const char *c64 = p + 2;
	size_t c64_len = fl - 2;
	p += fl + 1;

	fl = field_len(p, end);
	if (fl < 3 || p[0] != 'r' || p[1] != '=' || p + fl == end)
		return SASL_ERR_MALFORMED_REQUEST;
	const char *nonce = p + 2;
	size_t nonce_len = fl - 2;
	p += fl;

	/* Extensions until p=, which must come last. */
	const char *proof64 = NULL;
	size_t proof64_len = 0, without_proof = 0;
	while (p < end) {
		without_proof = (size_t)(p - msg);
		p++;
		fl = field_len(p, end);
		if (fl >= 2 && p[0] == 'p' && p[1] == '=') {
			if (p + fl != end)
				return SASL_ERR_MALFORMED_REQUEST;
			proof64 = p + 2;
			proof64_len = fl - 2;
		} else if (!ext_ok(p, fl)) {
			return SASL_ERR_MALFORMED_REQUEST;
		}
		p += fl;
	}
	if (!proof64)
		return SASL_ERR_MALFORMED_REQUEST;

	uint8_t proof[SASL_HASH_MAX + 3];
	size_t proof_len;
	if (proof64_len == 0 || proof64_len > sasl_b64_enc_len(SASL_HASH_MAX))
		return SASL_ERR_MALFORMED_REQUEST;
	enum sasl_err e = sasl_b64_decode(proof64, proof64_len, proof, sizeof proof, &proof_len);
	if (e != SASL_OK)
		return e;
	if (proof_len != hl)
		return SASL_ERR_MALFORMED_REQUEST;

	uint8_t cbin[SASL_MSG_MAX / 4 * 3];
	size_t cbin_len;
	if (c64_len == 0)
		return SASL_ERR_MALFORMED_REQUEST;
	e = sasl_b64_decode(c64, c64_len, cbin, sizeof cbin, &cbin_len);
	if (e != SASL_OK)
		return e;

	/* c= is base64(gs2-header [cbind-data]), the data only with 'p'. */
	size_t want_cb = st->cb_flag == 'p' ? cb_len : 0;
	if (st->cb_flag == 'p' && (cb_len == 0 || cb_len > SASL_CB_DATA_MAX || !cb))
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	uint8_t gs2_sha[32];
	unsigned int dl = 0;
	if (cbin_len != (size_t)st->gs2_len + want_cb)
		return SASL_ERR_NOT_AUTHORIZED;
	if (EVP_Digest(cbin, st->gs2_len, gs2_sha, &dl, EVP_sha256(), NULL) != 1)
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	if (memcmp(gs2_sha, st->gs2_sha256, sizeof gs2_sha) != 0 ||
	    (want_cb && CRYPTO_memcmp(cbin + st->gs2_len, cb, want_cb) != 0))
		return SASL_ERR_NOT_AUTHORIZED;

	if (nonce_len != st->nonce_len || memcmp(nonce, st->msg + st->nonce_off, nonce_len) != 0)
		return SASL_ERR_NOT_AUTHORIZED;

	/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
	char am[SASL_SCRAM_BUF + 2 + SASL_MSG_MAX];
	size_t al = 0;
	memcpy(am, st->msg, st->cfb_len);
	al += st->cfb_len;
	am[al++] = ',';
	memcpy(am + al, st->msg + st->cfb_len, st->sf_len);
	al += st->sf_len;
	am[al++] = ',';
	memcpy(am + al, msg, without_proof);
	al += without_proof;

	uint8_t sig[SASL_HASH_MAX], key[SASL_HASH_MAX], stored[SASL_HASH_MAX];
	if (!hmac(h, st->stored_key, hl, am, al, sig))
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	for (size_t i = 0; i < hl; i++)
		key[i] = proof[i] ^ sig[i];
	bool ok = digest(h, key, hl, stored);
	bool same = ok && CRYPTO_memcmp(stored, st->stored_key, hl) == 0;
	OPENSSL_cleanse(key, sizeof key);
	if (!ok)
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	if (!same || st->fake)
		return SASL_ERR_NOT_AUTHORIZED;

	if (!hmac(h, st->server_key, hl, am, al, sig))
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	if (cap < 2 + sasl_b64_enc_len(hl) + 1)
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	out[0] = 'v';
	out[1] = '=';
	*out_len = 2 + sasl_b64_encode(sig, hl, out + 2, cap - 2);
	return SASL_OK;
}

enum sasl_err sasl_scram_finish(struct sasl_scram *st, const char *msg, size_t len,
                                const uint8_t *cb, size_t cb_len,
                                char *out, size_t cap, size_t *out_len)
{
	*out_len = 0;
	enum sasl_err e = st->step == STEP_CHALLENGED
	                  ? check_final(st, msg, len, cb, cb_len, out, cap, out_len)
	                  : SASL_ERR_MALFORMED_REQUEST;
	scram_kill(st);
	return e;
}
