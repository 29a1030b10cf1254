/* SASL hooks for the router: the exchange state machine on the workers,
 * credential lookup and PBKDF2 on the control thread, per-address failure
 * throttling shared by the workers. See control/auth.h. */
#include "control/auth.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "control/sasl.h"
#include "net/net-t.h"
#include "parser/jid.h"
#include "store/store.h"
#include "util/log.h"

_Static_assert(AUTH_CB_TLS_EXPORTER == SASL_CB_TLS_EXPORTER, "cb bits differ");
_Static_assert(AUTH_CB_TLS_SERVER_END_POINT == SASL_CB_TLS_SERVER_END_POINT, "cb bits differ");
_Static_assert(AUTH_CB_TLS_UNIQUE == SASL_CB_TLS_UNIQUE, "cb bits differ");
_Static_assert((AUTH_THROTTLE_SLOTS & (AUTH_THROTTLE_SLOTS - 1)) == 0, "slots: power of two");

/* The context the hooks use; see auth_init. */
static struct auth *auth_ctx;

/* ---- the exchange, kept in the router's per-session bytes --------------- */

enum phase {
	PH_IDLE = 0,        /* the router zeroes st before start */
	PH_WANT_INITIAL,    /* sent an empty challenge: the response is the initial response */
	PH_PENDING_SCRAM,   /* asked the control thread for credentials */
	PH_PENDING_PLAIN,   /* asked the control thread to verify a password */
	PH_CHALLENGED,      /* sent server-first: the response is client-final */
	PH_DONE,            /* success or failure: anything more is out of order */
};

/* The SASL username is not kept here: 512 bytes of SCRAM state leave no
 * room for a 1023-byte localpart. SCRAM derives it again at the end from
 * the client-first-message-bare the state holds; PLAIN gets it back in the
 * control thread's answer. */
struct auth_sess {
	struct sasl_scram scram;
	uint8_t phase;      /* enum phase */
	uint8_t mech;       /* enum sasl_mech */
};
_Static_assert(sizeof(struct auth_sess) <= AUTH_STATE_MAX, "session state too large");
_Static_assert(_Alignof(struct auth_sess) <= 8, "router aligns state to 8");

/* ---- requests and answers between a worker and the control thread -------
 * A request: struct req_hdr, then domain, localpart and (PLAIN) password
 * bytes, without NULs. An answer: one byte enum sasl_err, then on SASL_OK
 * a struct sasl_scram_cred (SCRAM) or the localpart (PLAIN). Both stay in
 * this process, so host byte order and struct copies are fine. */
enum req_kind {
	REQ_SCRAM_CRED = 1,
	REQ_PLAIN,
};

struct req_hdr {
	uint8_t kind;        /* enum req_kind */
	uint8_t hash;        /* enum sasl_hash, REQ_SCRAM_CRED */
	uint16_t domain_len;
	uint16_t local_len;
	uint16_t pass_len;   /* REQ_PLAIN */
};
_Static_assert(sizeof(struct req_hdr) + 2 * JID_PART_MAX + SASL_PASS_MAX <= AUTH_REQ_MAX,
	       "request does not fit");
_Static_assert(1 + sizeof(struct sasl_scram_cred) <= AUTH_ANSWER_MAX, "answer does not fit");
_Static_assert(1 + JID_PART_MAX <= AUTH_ANSWER_MAX, "answer does not fit");
_Static_assert(JID_PART_MAX < sizeof(((struct auth_out *)0)->user), "user does not fit");

/* ---- throttling ---------------------------------------------------------- */

static uint32_t clock_s(const struct auth *a)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint32_t)ts.tv_sec + a->clock_skew_s;
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Keyed hash of the address without its port (a client reconnects from a
 * new port each time), an IPv6 peer by its /64 (what one subscriber
 * usually gets). Not a cryptographic PRF: a random key is enough to keep
 * attackers from aiming at a chosen slot, and a collision only shares an
 * approximate count. */
static uint64_t addr_hash(const struct auth *a, const uint8_t *peer, size_t len)
{
	uint8_t buf[1 + 8];
	const uint8_t *p = peer;
	size_t n = len;
	if (len == sizeof(struct net_addr)) {
		struct net_addr na;
		memcpy(&na, peer, sizeof na);
		buf[0] = na.family;
		n = na.family == NET_AF_INET6 ? 8 : 4;
		memcpy(buf + 1, na.addr, n);
		p = buf;
		n += 1;
	}
	uint64_t h = 0xcbf29ce484222325ull ^ a->hash_key[0];
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return mix64(h ^ a->hash_key[1]);
}

/* Count one failure for peer and return how long to hold the <failure/>. */
static uint32_t throttle_fail(struct auth *a, const uint8_t *peer, size_t len)
{
	uint64_t h = addr_hash(a, peer, len);
	_Atomic uint64_t *slot = &a->throttle[h & (AUTH_THROTTLE_SLOTS - 1)];
	uint64_t tag = (h >> 48) & 0xffffu;
	uint32_t now = clock_s(a);
	uint64_t old = atomic_load_explicit(slot, memory_order_relaxed), nw;
	uint32_t cnt;
	do {
		cnt = (uint32_t)(old & 0xffffu);
		uint32_t t = (uint32_t)(old >> 32);
		if (((old >> 16) & 0xffffu) != tag) {
			cnt = 0;
			t = now;
		} else if (now - t >= AUTH_THROTTLE_HALF_S) {
			/* Keep the remainder of the period in t so that failures
			 * coming just under every period still decay on time. */
			uint32_t periods = (now - t) / AUTH_THROTTLE_HALF_S;
			cnt = periods >= 16 ? 0 : cnt >> periods;
			t = periods >= 16 ? now : t + periods * AUTH_THROTTLE_HALF_S;
		}
		if (cnt < 0xffffu)
			cnt++;
		nw = (uint64_t)t << 32 | tag << 16 | cnt;
	} while (!atomic_compare_exchange_weak_explicit(slot, &old, nw, memory_order_relaxed,
							memory_order_relaxed));
	if (cnt <= AUTH_THROTTLE_FREE)
		return 0;
	uint32_t shift = cnt - 1;
	if (shift >= 31 || ((uint64_t)AUTH_THROTTLE_BASE_MS << shift) > AUTH_THROTTLE_CAP_MS)
		return AUTH_THROTTLE_CAP_MS;
	return AUTH_THROTTLE_BASE_MS << shift;
}

/* ---- helpers on the worker side ------------------------------------------ */

static void out_reset(struct auth_out *out)
{
	out->len = 0;
	out->condition = NULL;
	out->delay_ms = 0;
	out->user_len = 0;
	out->user[0] = '\0';
	out->req_len = 0;
}

/* Every failure ends the exchange. Failures of our own making
 * (temporary-auth-failure) are not the client's and are not counted. */
static enum auth_step fail(struct auth_sess *s, enum sasl_err e, const struct auth_env *env,
			   struct auth_out *out)
{
	OPENSSL_cleanse(s, sizeof *s);
	s->phase = PH_DONE;
	out->condition = sasl_err_condition(e);
	struct auth *a = auth_ctx;
	if (a && e != SASL_ERR_TEMPORARY_AUTH_FAILURE && env->peer && env->peer_len)
		out->delay_ms = throttle_fail(a, env->peer, env->peer_len);
	return AUTH_FAILURE;
}

/* The SASL username (SASLprepped) as the account's localpart. */
static bool user_to_local(const char *user, size_t len, char *local, size_t *ll)
{
	return jid_prep(JID_LOCAL, user, len, local, JID_PART_MAX + 1, ll, 0) == JID_OK;
}

/* The username of the client-first-message-bare kept in sc->msg (its
 * layout is sasl-t.h's: "n=" saslname "," ...), decoded and prepared the
 * way sasl_scram_start did it, then mapped to the localpart. */
static bool scram_local(const struct sasl_scram *sc, char *local, size_t *ll)
{
	const char *m = sc->msg;
	size_t len = sc->cfb_len, i = 2, n = 0;
	char raw[SASL_NAME_MAX + 1], prepped[SASL_NAME_MAX + 1];
	bool ok = false;
	if (len < 3 || len > sizeof sc->msg || m[0] != 'n' || m[1] != '=')
		return false;
	while (i < len && m[i] != ',') {
		if (n >= SASL_NAME_MAX)
			goto out;
		if (m[i] == '=') {
			if (i + 2 >= len)
				goto out;
			if (m[i + 1] == '2' && m[i + 2] == 'C')
				raw[n++] = ',';
			else if (m[i + 1] == '3' && m[i + 2] == 'D')
				raw[n++] = '=';
			else
				goto out;
			i += 3;
		} else {
			raw[n++] = m[i++];
		}
	}
	size_t pl;
	ok = sasl_saslprep(raw, n, prepped, sizeof prepped, &pl, false) == SASL_OK &&
	     user_to_local(prepped, pl, local, ll);
out:
	OPENSSL_cleanse(raw, sizeof raw);
	OPENSSL_cleanse(prepped, sizeof prepped);
	return ok;
}

/* RFC 6120 6.3.8: the authzid may be absent or the user's own bare JID. */
static enum sasl_err authzid_check(const struct sasl_names *nm, const char *local, size_t ll,
				   const char *domain, size_t dl)
{
	if (nm->authzid_len == 0)
		return SASL_OK;
	struct jid j;
	if (jid_parse(&j, nm->authzid, nm->authzid_len, 0) != JID_OK || !jid_is_bare(&j))
		return SASL_ERR_INVALID_AUTHZID;
	struct jid_slice l = jid_local(&j), d = jid_domain(&j);
	if (l.len != ll || d.len != dl || memcmp(l.ptr, local, ll) != 0 || memcmp(d.ptr, domain, dl) != 0)
		return SASL_ERR_INVALID_AUTHZID;
	return SASL_OK;
}

static void req_build(struct auth_out *out, enum req_kind kind, enum sasl_hash h,
		      const char *domain, size_t dl, const char *local, size_t ll,
		      const char *pass, size_t pl)
{
	struct req_hdr hd = {
		.kind = (uint8_t)kind, .hash = (uint8_t)h,
		.domain_len = (uint16_t)dl, .local_len = (uint16_t)ll, .pass_len = (uint16_t)pl,
	};
	uint8_t *p = out->req;
	memcpy(p, &hd, sizeof hd);
	p += sizeof hd;
	memcpy(p, domain, dl);
	p += dl;
	memcpy(p, local, ll);
	p += ll;
	if (pl)
		memcpy(p, pass, pl);
	p += pl;
	out->req_len = (uint32_t)(p - out->req);
}

/* The client's first message: the initial response, or the response to
 * our empty challenge. */
static enum auth_step initial(struct auth_sess *s, const uint8_t *data, size_t len,
			      const struct auth_env *env, struct auth_out *out)
{
	size_t dl = env->domain ? strlen(env->domain) : 0;
	if (dl == 0 || dl > JID_PART_MAX)
		return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, env, out);
	char local[JID_PART_MAX + 1];
	size_t ll;
	enum sasl_err e;
	if (s->mech == SASL_MECH_PLAIN) {
		struct sasl_plain p;
		e = sasl_plain_parse(&p, (const char *)data, len);
		if (e == SASL_OK && !user_to_local(p.names.user, p.names.user_len, local, &ll))
			e = SASL_ERR_NOT_AUTHORIZED;
		if (e == SASL_OK)
			e = authzid_check(&p.names, local, ll, env->domain, dl);
		if (e == SASL_OK)
			req_build(out, REQ_PLAIN, SASL_SHA256, env->domain, dl, local, ll, p.pass, p.pass_len);
		OPENSSL_cleanse(&p, sizeof p);
		if (e != SASL_OK)
			return fail(s, e, env, out);
		s->phase = PH_PENDING_PLAIN;
		return AUTH_PENDING;
	}
	enum sasl_hash h;
	struct sasl_names nm;
	if (!sasl_mech_hash((enum sasl_mech)s->mech, &h))
		return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, env, out);
	e = sasl_scram_start(&s->scram, (enum sasl_mech)s->mech, env->cb_avail,
			     (const char *)data, len, &nm);
	if (e == SASL_OK && !user_to_local(nm.user, nm.user_len, local, &ll))
		e = SASL_ERR_NOT_AUTHORIZED;
	if (e == SASL_OK)
		e = authzid_check(&nm, local, ll, env->domain, dl);
	if (e != SASL_OK)
		return fail(s, e, env, out);
	req_build(out, REQ_SCRAM_CRED, h, env->domain, dl, local, ll, NULL, 0);
	s->phase = PH_PENDING_SCRAM;
	return AUTH_PENDING;
}

static enum auth_step scram_final(struct auth_sess *s, const uint8_t *data, size_t len,
				  const struct auth_env *env, struct auth_out *out)
{
	char local[JID_PART_MAX + 1];
	size_t ll, n;
	/* Before finish: it wipes the state that holds the username. */
	if (!scram_local(&s->scram, local, &ll))
		return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, env, out);
	const uint8_t *cb = NULL;
	size_t cbl = 0;
	switch (sasl_scram_cb_type(&s->scram)) {
	case SASL_CB_TLS_EXPORTER:
		if (env->cb_avail & AUTH_CB_TLS_EXPORTER) {
			cb = env->cb_exporter;
			cbl = env->cb_exporter_len;
		}
		break;
	case SASL_CB_TLS_UNIQUE:
		if (env->cb_avail & AUTH_CB_TLS_UNIQUE) {
			cb = env->cb_unique;
			cbl = env->cb_unique_len;
		}
		break;
	case SASL_CB_TLS_SERVER_END_POINT:
		if (env->cb_avail & AUTH_CB_TLS_SERVER_END_POINT) {
			cb = env->cb_endpoint;
			cbl = env->cb_endpoint_len;
		}
		break;
	case SASL_CB_NONE:
		break;
	}
	_Static_assert(AUTH_DATA_MAX >= SASL_SCRAM_FINAL_MAX, "server-final does not fit");
	enum sasl_err e = sasl_scram_finish(&s->scram, (const char *)data, len, cb, cbl,
					    (char *)out->data, AUTH_DATA_MAX, &n);
	if (e != SASL_OK)
		return fail(s, e, env, out);
	OPENSSL_cleanse(s, sizeof *s);
	s->phase = PH_DONE;
	out->len = (uint32_t)n;
	memcpy(out->user, local, ll);
	out->user[ll] = '\0';
	out->user_len = (uint16_t)ll;
	return AUTH_SUCCESS;
}

/* ---- the hooks ------------------------------------------------------------ */

size_t auth_mechanisms(bool tls, unsigned cb_avail, const char **names, size_t cap)
{
	enum sasl_mech m[SASL_MECH_COUNT];
	size_t n = sasl_mech_list(m, SASL_MECH_COUNT, tls, cb_avail);
	if (n > cap)
		n = cap;
	for (size_t i = 0; i < n; i++)
		names[i] = sasl_mech_name(m[i]);
	return n;
}

enum auth_step auth_start(void *st, const char *mech, const uint8_t *data, size_t len, bool has_data,
			  const struct auth_env *env, struct auth_out *out)
{
	struct auth_sess *s = st;
	out_reset(out);
	if (s->phase != PH_IDLE)
		return fail(s, SASL_ERR_MALFORMED_REQUEST, env, out);
	enum sasl_mech m = sasl_mech_parse(mech, strlen(mech));
	enum sasl_err e = sasl_mech_check(m, env->tls, env->cb_avail);
	if (e != SASL_OK)
		return fail(s, e, env, out);
	s->mech = (uint8_t)m;
	if (!has_data) {
		s->phase = PH_WANT_INITIAL;
		return AUTH_CHALLENGE;
	}
	return initial(s, data, len, env, out);
}

enum auth_step auth_response(void *st, const uint8_t *data, size_t len,
			     const struct auth_env *env, struct auth_out *out)
{
	struct auth_sess *s = st;
	out_reset(out);
	switch (s->phase) {
	case PH_WANT_INITIAL:
		return initial(s, data, len, env, out);
	case PH_CHALLENGED:
		return scram_final(s, data, len, env, out);
	default:
		/* Including after success: XMPP carries the additional data
		 * in <success/> (RFC 6120 6.3.10), so no response is due. */
		return fail(s, SASL_ERR_MALFORMED_REQUEST, env, out);
	}
}

enum auth_step auth_resume(void *st, const uint8_t *ans, size_t len,
			   const struct auth_env *env, struct auth_out *out)
{
	struct auth_sess *s = st;
	out_reset(out);
	if (s->phase != PH_PENDING_SCRAM && s->phase != PH_PENDING_PLAIN)
		return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, env, out);
	if (len < 1 || ans[0] > SASL_ERR_TEMPORARY_AUTH_FAILURE)
		return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, env, out);
	if (ans[0] != SASL_OK)
		return fail(s, (enum sasl_err)ans[0], env, out);
	if (s->phase == PH_PENDING_PLAIN) {
		size_t ll = len - 1;
		if (ll == 0 || ll > JID_PART_MAX)
			return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, env, out);
		memcpy(out->user, ans + 1, ll);
		out->user[ll] = '\0';
		out->user_len = (uint16_t)ll;
		OPENSSL_cleanse(s, sizeof *s);
		s->phase = PH_DONE;
		return AUTH_SUCCESS;
	}
	struct sasl_scram_cred cred;
	if (len != 1 + sizeof cred)
		return fail(s, SASL_ERR_TEMPORARY_AUTH_FAILURE, env, out);
	memcpy(&cred, ans + 1, sizeof cred);
	size_t n;
	_Static_assert(AUTH_DATA_MAX >= SASL_SCRAM_FIRST_MAX, "server-first does not fit");
	enum sasl_err e = sasl_scram_challenge(&s->scram, &cred, (char *)out->data, AUTH_DATA_MAX, &n);
	OPENSSL_cleanse(&cred, sizeof cred);
	if (e != SASL_OK)
		return fail(s, e, env, out);
	out->len = (uint32_t)n;
	s->phase = PH_CHALLENGED;
	return AUTH_CHALLENGE;
}

void auth_end(void *st)
{
	OPENSSL_cleanse(st, sizeof(struct auth_sess));
}

/* ---- the control thread --------------------------------------------------- */

static bool cred_from_store(struct sasl_scram_cred *c, const struct store_scram *s)
{
	enum sasl_hash h;
	switch (s->hash) {
	case STORE_SHA1:   h = SASL_SHA1; break;
	case STORE_SHA256: h = SASL_SHA256; break;
	case STORE_SHA512: h = SASL_SHA512; break;
	default: return false;
	}
	if (s->salt_len == 0 || s->salt_len > SASL_SALT_MAX || s->key_len != sasl_hash_len(h))
		return false;
	memset(c, 0, sizeof *c);
	c->hash = (uint8_t)h;
	c->salt_len = s->salt_len;
	c->iterations = s->iterations;
	memcpy(c->salt, s->salt, s->salt_len);
	memcpy(c->stored_key, s->stored_key, s->key_len);
	memcpy(c->server_key, s->server_key, s->key_len);
	return true;
}

static enum store_hash store_hash_of(enum sasl_hash h)
{
	return h == SASL_SHA1 ? STORE_SHA1 : h == SASL_SHA256 ? STORE_SHA256 : STORE_SHA512;
}

/* Credentials of account key[0..kl) for hash *h (plain: the best the
 * account has, SHA-256 first, and *h says which), or fake ones when the
 * account or those credentials do not exist. */
static enum sasl_err lookup(struct auth *a, const char *key, size_t kl, enum sasl_hash *h,
			    bool plain, struct sasl_scram_cred *c)
{
	struct store_account acc;
	int rc = kl > store_max_key(a->store) ? STORE_NOTFOUND
					      : store_account_get(a->store, NULL, key, kl, &acc);
	enum sasl_err e = SASL_OK;
	if (rc == STORE_OK) {
		static const enum sasl_hash pref[] = { SASL_SHA256, SASL_SHA512, SASL_SHA1 };
		const struct store_scram *sc = NULL;
		if (plain) {
			for (size_t i = 0; i < 3 && !sc; i++) {
				sc = store_account_scram(&acc, store_hash_of(pref[i]));
				*h = pref[i];
			}
		} else {
			sc = store_account_scram(&acc, store_hash_of(*h));
		}
		if (!sc) {
			/* An account without credentials for this hash
			 * (created elsewhere) fails like a wrong password. */
			*h = plain ? SASL_SHA256 : *h;
			rc = STORE_NOTFOUND;
		} else if (!cred_from_store(c, sc)) {
			log_warn("auth: account %.*s has unusable credentials", (int)kl, key);
			e = SASL_ERR_TEMPORARY_AUTH_FAILURE;
		}
		OPENSSL_cleanse(&acc, sizeof acc);
	} else if (rc != STORE_NOTFOUND) {
		e = SASL_ERR_TEMPORARY_AUTH_FAILURE;   /* the store logged why */
	}
	if (rc == STORE_NOTFOUND)
		/* Stable per name: only the salt's source must not change. */
		e = sasl_scram_fake_cred(c, *h, key, kl < SASL_NAME_MAX ? kl : SASL_NAME_MAX,
					 a->secret, a->iterations);
	return e;
}

size_t auth_serve(const uint8_t *req, size_t len, const uint8_t *peer, size_t peer_len,
		  uint8_t *ans, size_t cap)
{
	struct auth *a = auth_ctx;
	struct req_hdr hd;
	struct sasl_scram_cred cred;
	char key[2 * JID_PART_MAX + 2];
	enum sasl_err e = SASL_ERR_TEMPORARY_AUTH_FAILURE;
	size_t n = 1;
	if (cap < AUTH_ANSWER_MAX)
		return 0;   /* resume treats an empty answer as temporary-auth-failure */
	memset(&cred, 0, sizeof cred);
	if (!a || len < sizeof hd)
		goto out;
	memcpy(&hd, req, sizeof hd);
	if (len != sizeof hd + (size_t)hd.domain_len + hd.local_len + hd.pass_len ||
	    hd.domain_len == 0 || hd.domain_len > JID_PART_MAX ||
	    hd.local_len == 0 || hd.local_len > JID_PART_MAX)
		goto out;
	const char *domain = (const char *)req + sizeof hd;
	const char *local = domain + hd.domain_len;
	size_t kl = (size_t)hd.local_len + 1 + hd.domain_len;
	memcpy(key, local, hd.local_len);
	key[hd.local_len] = '@';
	memcpy(key + hd.local_len + 1, domain, hd.domain_len);
	key[kl] = '\0';

	if (hd.kind == REQ_SCRAM_CRED && hd.pass_len == 0 && hd.hash <= SASL_SHA512) {
		enum sasl_hash h = (enum sasl_hash)hd.hash;
		e = lookup(a, key, kl, &h, false, &cred);
		if (e == SASL_OK) {
			memcpy(ans + 1, &cred, sizeof cred);
			n += sizeof cred;
		}
	} else if (hd.kind == REQ_PLAIN && hd.pass_len > 0 && hd.pass_len <= SASL_PASS_MAX) {
		struct sasl_plain p;
		memset(&p, 0, sizeof p);
		memcpy(p.pass, local + hd.local_len, hd.pass_len);
		p.pass_len = hd.pass_len;
		enum sasl_hash h = SASL_SHA256;
		e = lookup(a, key, kl, &h, true, &cred);
		/* A store failure must not skip the wipe below. */
		e = e == SASL_OK ? sasl_plain_verify(&p, &cred) : e;
		OPENSSL_cleanse(&p, sizeof p);
		if (e == SASL_OK) {
			memcpy(ans + 1, local, hd.local_len);
			n += hd.local_len;
		}
	}
out:
	/* The password must not outlive the check in any buffer, the
	 * router's included (it is writable memory: see auth.h). */
	if (len > sizeof hd)
		OPENSSL_cleanse((uint8_t *)(uintptr_t)req + sizeof hd, len - sizeof hd);
	OPENSSL_cleanse(&cred, sizeof cred);
	ans[0] = (uint8_t)e;
	return n;
}

const struct router_auth_hooks auth_hooks = {
	.mechanisms = auth_mechanisms,
	.start = auth_start,
	.response = auth_response,
	.resume = auth_resume,
	.end = auth_end,
	.serve = auth_serve,
};

/* ---- the server secret ------------------------------------------------------ */

static int secret_read(int fd, const char *path, uint8_t out[SASL_SECRET_LEN])
{
	struct stat sb;
	if (fstat(fd, &sb) != 0) {
		log_err("auth: stat %s: %s", path, strerror(errno));
		return AUTH_ERROR;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size != SASL_SECRET_LEN) {
		log_err("auth: %s: not a regular file of %u bytes", path, SASL_SECRET_LEN);
		return AUTH_ERROR;
	}
	if (sb.st_mode & 077) {
		log_err("auth: %s: readable by group or others (mode %o); chmod 600 it",
			path, (unsigned)(sb.st_mode & 0777));
		return AUTH_ERROR;
	}
	size_t got = 0;
	while (got < SASL_SECRET_LEN) {
		ssize_t r = read(fd, out + got, SASL_SECRET_LEN - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			log_err("auth: read %s: %s", path, r < 0 ? strerror(errno) : "short file");
			return AUTH_ERROR;
		}
		got += (size_t)r;
	}
	return AUTH_OK;
}

static int secret_open_read(const char *path, uint8_t out[SASL_SECRET_LEN])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	int rc = secret_read(fd, path, out);
	close(fd);
	return rc;
}

static void dir_sync(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	if (!slash) {
		strcpy(dir, ".");
	} else {
		size_t n = slash == path ? 1 : (size_t)(slash - path);
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* A new secret is written to a file of its own and linked into place, so
 * that a crash never leaves a short secret file and two processes creating
 * it at once agree on one (link fails with EEXIST for the second). */
static int secret_create(const char *path, uint8_t out[SASL_SECRET_LEN])
{
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp) {
		log_err("auth: %s: path too long", path);
		return AUTH_ERROR;
	}
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		log_err("auth: create %s: %s", tmp, strerror(errno));
		return AUTH_ERROR;
	}
	int rc = AUTH_ERROR;
	if (RAND_priv_bytes(out, SASL_SECRET_LEN) != 1) {
		log_err("auth: no random bytes for the server secret");
		goto out;
	}
	size_t put = 0;
	while (put < SASL_SECRET_LEN) {
		ssize_t w = write(fd, out + put, SASL_SECRET_LEN - put);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			log_err("auth: write %s: %s", tmp, strerror(errno));
			goto out;
		}
		put += (size_t)w;
	}
	if (fsync(fd) != 0) {
		log_err("auth: fsync %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (link(tmp, path) == 0) {
		dir_sync(path);
		log_info("auth: created server secret %s", path);
		rc = AUTH_OK;
	} else if (errno == EEXIST) {
		rc = secret_open_read(path, out) == AUTH_OK ? AUTH_OK : AUTH_ERROR;
	} else {
		log_err("auth: link %s: %s", path, strerror(errno));
	}
out:
	close(fd);
	unlink(tmp);
	if (rc != AUTH_OK)
		OPENSSL_cleanse(out, SASL_SECRET_LEN);
	return rc;
}

static int secret_load(const char *path, uint8_t out[SASL_SECRET_LEN])
{
	int rc = secret_open_read(path, out);
	if (rc == -ENOENT)
		return secret_create(path, out);
	if (rc < 0) {
		log_err("auth: open %s: %s", path, strerror(-rc));
		return AUTH_ERROR;
	}
	return rc;
}

int auth_init(struct auth *a, struct store *st, uint32_t iterations, const char *secret_path)
{
	if (!a || !st || !secret_path || iterations < SASL_SCRAM_MIN_ITER ||
	    iterations > SASL_SCRAM_MAX_ITER) {
		log_err("auth: bad arguments (iterations %u: %u..%u)", iterations,
			SASL_SCRAM_MIN_ITER, SASL_SCRAM_MAX_ITER);
		return AUTH_ERROR;
	}
	memset(a, 0, sizeof *a);
	a->store = st;
	a->iterations = iterations;
	if (secret_load(secret_path, a->secret) != AUTH_OK)
		return AUTH_ERROR;
	if (RAND_bytes((unsigned char *)a->hash_key, sizeof a->hash_key) != 1) {
		log_err("auth: no random bytes for the throttle key");
		OPENSSL_cleanse(a->secret, sizeof a->secret);
		return AUTH_ERROR;
	}
	for (size_t i = 0; i < AUTH_THROTTLE_SLOTS; i++)
		atomic_init(&a->throttle[i], 0);
	auth_ctx = a;
	return AUTH_OK;
}

void auth_fini(struct auth *a)
{
	if (auth_ctx == a)
		auth_ctx = NULL;
	OPENSSL_cleanse(a->secret, sizeof a->secret);
	OPENSSL_cleanse(a->hash_key, sizeof a->hash_key);
}
