/* Account management for the admin socket and stanzactl: create, change
 * the password of, delete and list accounts in the store. Only salted
 * SCRAM credentials (SHA-1, SHA-256 and SHA-512, each with its own random
 * salt) are stored; passwords are never stored or logged, and every copy
 * made here is wiped.
 *
 * Threads: the calls that write (add, passwd, del) must run on the store's
 * writer thread (the control plane, or stanzactl's only thread). They run
 * PBKDF2 three times (add, passwd) and may wait on the store's write lock:
 * never call them on a worker.
 */
#ifndef STANZA_CONTROL_ACCOUNT_H
#define STANZA_CONTROL_ACCOUNT_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* The one set of results of this module. Failures other than the store's
 * own are logged here (the store logs its errors itself). */
enum account_rc {
	ACCOUNT_OK = 0,
	ACCOUNT_EXISTS,        /* add: the account is already there */
	ACCOUNT_NOTFOUND,      /* passwd, del: no such account */
	ACCOUNT_BAD_JID,       /* not a bare JID with a localpart, a part refused by its
				* stringprep profile, or too long for the store's keys */
	ACCOUNT_BAD_PASSWORD,  /* empty, or refused by SASLprep (stored-strings rules) */
	ACCOUNT_ERROR,         /* iterations out of range, RNG/OpenSSL or store failure */
};

/* Create account jid (NUL-terminated "local@domain", prepared here, so
 * "Juliet@Example.COM" makes "juliet@example.com") with password
 * pass[0..len) (UTF-8) and iterations PBKDF2 rounds (SASL_SCRAM_MIN_ITER..
 * SASL_SCRAM_MAX_ITER). */
int account_add(struct store *st, const char *jid, const char *pass, size_t len,
		uint32_t iterations);

/* Replace the credentials of an existing account (creation time kept). */
int account_passwd(struct store *st, const char *jid, const char *pass, size_t len,
		   uint32_t iterations);

/* Delete the account record and, in the same commit, every record of the
 * user in the store's public tables (roster, pending, offline queue,
 * vcard, private, blocklist, last: keys "u" and "u\0..."). Caches the
 * running server keeps are the caller's (control/im.h im_purge_user). */
int account_del(struct store *st, const char *jid);

/* Called once per account, in domain then localpart order. jid is
 * "local@domain", NUL-terminated, valid during the call only; created is
 * Unix time in seconds. Return 0 to go on, anything else to stop. Must not
 * call the store (the listing holds a transaction). */
typedef int account_list_fn(void *arg, const char *jid, size_t jid_len, int64_t created);

/* The accounts of domain (prepared here; NULL: every domain). */
int account_list(struct store *st, const char *domain, account_list_fn *fn, void *arg);

/* "ok", "exists", ... for messages. Never NULL. */
const char *account_rc_str(int rc);

#endif
