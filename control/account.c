/* Account management over the store. See control/account.h. */
#include "control/account.h"

#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "control/sasl.h"
#include "parser/jid.h"
#include "store/store.h"
#include "util/log.h"

/* Longest user prefix ("u \0") purged with an account. */
#define ACCOUNT_PREFIX_MAX (2 * JID_PART_MAX + 3)

const char *account_rc_str(int rc)
{
	switch (rc) {
	case ACCOUNT_OK:           return "ok";
	case ACCOUNT_EXISTS:       return "account exists";
	case ACCOUNT_NOTFOUND:     return "no such account";
	case ACCOUNT_BAD_JID:      return "bad JID";
	case ACCOUNT_BAD_PASSWORD: return "bad password";
	case ACCOUNT_ERROR:        return "error";
	}
	return "unknown";
}

/* jid as the store's account key: a prepared bare JID with a localpart.
 * j is large (3 KiB): the caller's. */
static int key_of(struct store *st, const char *jid, struct jid *j)
{
	enum jid_err e = jid_parse(j, jid, strlen(jid), 0);
	if (e != JID_OK) {
		log_info("account: %s", jid_err_str(e));
		return ACCOUNT_BAD_JID;
	}
	if (j->local_len == 0 || !jid_is_bare(j)) {
		log_info("account: %s is not local@domain", j->str);
		return ACCOUNT_BAD_JID;
	}
	if (jid_bare_len(j) > store_max_key(st)) {
		log_info("account: JID longer than the store's %zu-byte keys", store_max_key(st));
		return ACCOUNT_BAD_JID;
	}
	return ACCOUNT_OK;
}

/* Fresh credentials for every hash, each with its own salt. */
static int derive(struct store_account *a, const char *pass, size_t len, uint32_t iterations)
{
	static const struct {
		enum sasl_hash sasl;
		enum store_hash store;
	} hashes[] = {
		{ SASL_SHA1, STORE_SHA1 }, { SASL_SHA256, STORE_SHA256 }, { SASL_SHA512, STORE_SHA512 },
	};
	_Static_assert(sizeof hashes / sizeof hashes[0] <= STORE_SCRAM_MAX, "too many hashes");
	_Static_assert(SASL_SALT_DEFAULT >= STORE_SALT_MIN && SASL_SALT_MAX <= STORE_SALT_MAX,
		       "salt sizes disagree");
	_Static_assert(SASL_HASH_MAX <= STORE_KEY_MAX, "key sizes disagree");
	if (iterations < SASL_SCRAM_MIN_ITER || iterations > SASL_SCRAM_MAX_ITER) {
		log_err("account: iterations %u outside %u..%u", iterations,
			SASL_SCRAM_MIN_ITER, SASL_SCRAM_MAX_ITER);
		return ACCOUNT_ERROR;
	}
	if (len == 0)
		return ACCOUNT_BAD_PASSWORD;
	int rc = ACCOUNT_OK;
	struct sasl_scram_cred c;
	a->nscram = 0;
	for (size_t i = 0; i < sizeof hashes / sizeof hashes[0]; i++) {
		enum sasl_err e = sasl_scram_derive(&c, hashes[i].sasl, pass, len, NULL, 0, iterations);
		if (e != SASL_OK) {
			rc = e == SASL_ERR_MALFORMED_REQUEST ? ACCOUNT_BAD_PASSWORD : ACCOUNT_ERROR;
			if (rc == ACCOUNT_ERROR)
				log_err("account: deriving credentials failed");
			break;
		}
		struct store_scram *s = &a->scram[a->nscram++];
		size_t kl = sasl_hash_len(hashes[i].sasl);
		s->hash = (uint8_t)hashes[i].store;
		s->salt_len = c.salt_len;
		s->key_len = (uint8_t)kl;
		s->iterations = c.iterations;
		memcpy(s->salt, c.salt, c.salt_len);
		memcpy(s->stored_key, c.stored_key, kl);
		memcpy(s->server_key, c.server_key, kl);
	}
	OPENSSL_cleanse(&c, sizeof c);
	return rc;
}

static int from_store(int rc)
{
	switch (rc) {
	case STORE_OK:       return ACCOUNT_OK;
	case STORE_NOTFOUND: return ACCOUNT_NOTFOUND;
	case STORE_EXISTS:   return ACCOUNT_EXISTS;
	default:             return ACCOUNT_ERROR;
	}
}

int account_add(struct store *st, const char *jid, const char *pass, size_t len,
		uint32_t iterations)
{
	struct jid j;
	int rc = key_of(st, jid, &j);
	if (rc != ACCOUNT_OK)
		return rc;
	struct store_account a;
	memset(&a, 0, sizeof a);
	a.created = (int64_t)time(NULL);
	rc = derive(&a, pass, len, iterations);
	if (rc == ACCOUNT_OK)
		rc = from_store(store_account_put(st, NULL, j.str, jid_bare_len(&j), &a, true));
	OPENSSL_cleanse(&a, sizeof a);
	if (rc == ACCOUNT_OK)
		log_info("account: created %s", j.str);
	return rc;
}

int account_passwd(struct store *st, const char *jid, const char *pass, size_t len,
		   uint32_t iterations)
{
	struct jid j;
	int rc = key_of(st, jid, &j);
	if (rc != ACCOUNT_OK)
		return rc;
	struct store_account a, old;
	memset(&a, 0, sizeof a);
	/* PBKDF2 before the batch: the write lock is held only for the
	 * read-modify-write that must not interleave with a delete. */
	rc = derive(&a, pass, len, iterations);
	if (rc == ACCOUNT_OK) {
		struct store_txn t;
		rc = from_store(store_write_begin(st, &t));
		if (rc == ACCOUNT_OK) {
			rc = from_store(store_account_get(st, &t, j.str, jid_bare_len(&j), &old));
			if (rc == ACCOUNT_OK) {
				a.created = old.created;
				rc = from_store(store_account_put(st, &t, j.str, jid_bare_len(&j), &a, false));
			}
			if (rc == ACCOUNT_OK)
				rc = from_store(store_commit(&t));
			else
				store_abort(&t);
		}
		OPENSSL_cleanse(&old, sizeof old);
	}
	OPENSSL_cleanse(&a, sizeof a);
	if (rc == ACCOUNT_OK)
		log_info("account: new password for %s", j.str);
	return rc;
}

/* Every record of the user in the public tables, by the key convention of
 * store-t.h: "u \0 ..." (roster, pending, private, blocklist, the offline
 * queue) and "u" (vcard, last). */
static int purge_records(struct store *st, struct store_txn *t, const char *bare, size_t len)
{
	char key[ACCOUNT_PREFIX_MAX];
	int rc = STORE_OK;
	if (len + 1 <= sizeof key && len + 1 <= store_max_key(st)) {
		memcpy(key, bare, len);
		key[len] = '\0';
	}
	for (int tb = 0; tb < STORE_T_NPUBLIC && rc == STORE_OK; tb++) {
		if (len + 1 <= sizeof key && len + 1 <= store_max_key(st))
			rc = store_del_prefix(st, t, (enum store_table)tb, key, len + 1, NULL);
		if (rc == STORE_OK) {
			rc = store_del(st, t, (enum store_table)tb, bare, len);
			if (rc == STORE_NOTFOUND)
				rc = STORE_OK;
		}
	}
	return rc;
}

int account_del(struct store *st, const char *jid)
{
	struct jid j;
	int rc = key_of(st, jid, &j);
	if (rc != ACCOUNT_OK)
		return rc;
	/* The account and its records in one commit: a crash leaves both or
	 * neither, and a new account of the same name starts empty. */
	struct store_txn t;
	rc = from_store(store_write_begin(st, &t));
	if (rc != ACCOUNT_OK)
		return rc;
	rc = from_store(store_account_del(st, &t, j.str, jid_bare_len(&j)));
	if (rc == ACCOUNT_OK)
		rc = from_store(purge_records(st, &t, j.str, jid_bare_len(&j)));
	if (rc == ACCOUNT_OK)
		rc = from_store(store_commit(&t));
	else
		store_abort(&t);
	if (rc == ACCOUNT_OK)
		log_info("account: deleted %s and its records", j.str);
	return rc;
}

struct list_ctx {
	account_list_fn *fn;
	void *arg;
};

static int list_one(void *arg, const char *jid, size_t jid_len, const struct store_account *a)
{
	struct list_ctx *c = arg;
	return c->fn(c->arg, jid, jid_len, a->created);
}

int account_list(struct store *st, const char *domain, account_list_fn *fn, void *arg)
{
	char d[JID_PART_MAX + 1];
	size_t dl;
	if (domain && jid_prep(JID_DOMAIN, domain, strlen(domain), d, sizeof d, &dl, 0) != JID_OK)
		return ACCOUNT_BAD_JID;
	struct list_ctx c = { fn, arg };
	return from_store(store_account_list(st, NULL, domain ? d : NULL, list_one, &c));
}
