/* Persistence: accounts and the IM features' records, behind one small
 * interface with a backend per file (store_lmdb.c today; PostgreSQL later).
 * Types and the return codes (enum store_rc, documented once) are in
 * store/store-t.h.
 *
 * Typical use, the control plane registering a user:
 *
 *     struct store *st;
 *     if (store_open(&st, "/var/lib/stanzad", NULL) != STORE_OK) ...
 *     struct store_account a = { .created = time(NULL), .nscram = 2, ... };
 *     switch (store_account_put(st, NULL, "juliet@example.com", 18, &a, true)) {
 *     case STORE_OK:     ...          // durable now (default sync)
 *     case STORE_EXISTS: ...          // <conflict/>
 *     default:           ...          // <internal-server-error/>, already logged
 *     }
 *
 * and committing a roster push with its subscription state together:
 *
 *     struct store_txn b;
 *     store_write_begin(st, &b);
 *     store_put(st, &b, STORE_T_ROSTER, key, klen, item, ilen, 0);
 *     store_del(st, &b, STORE_T_PENDING, key, klen);
 *     rc = store_commit(&b);          // both or neither
 *
 * Threads. One thread, the writer (the control plane), makes every write:
 * put, del, queue append/pop/del/clear, account put/del, and batches. Any
 * thread may read, concurrently with each other and with the writer:
 * readers see the last commit made before their transaction began, never
 * wait for the writer and never delay it. Another process (stanzactl) may
 * open the same directory while stanzad runs; writes of the two processes
 * serialise on the backend's lock.
 *
 * Transactions. Every function takes `t`:
 *   NULL          the call runs in a transaction of its own: a read gets a
 *                 fresh snapshot (LMDB: one read txn per call, its reader
 *                 slot claimed and released around it); a write commits
 *                 before returning, durably per store_options.sync.
 *   a snapshot    (store_read_begin) several reads see one state. Any
 *                 thread; a snapshot must be ended by the thread holding
 *                 it and pins old pages while it lives, so keep it short.
 *   a batch       (store_write_begin) writes are invisible to everyone
 *                 (reads passing this batch excepted) until store_commit;
 *                 store_abort drops them. Writer thread only; while a
 *                 batch is open the writer must pass it to every write
 *                 (a write with NULL is refused with STORE_ERROR).
 * A thread may hold a snapshot and the batch at once; the writer holding
 * a snapshot just forgoes growing a full map (STORE_FULL comes sooner).
 *
 * Ownership. Keys and values passed in are borrowed for the call. Values
 * read are copied into a caller's struct store_buf (get, pop) or lent to a
 * callback for the duration of the call (iterations). Nothing returned
 * points into the store after the call returns.
 */
#ifndef STANZA_STORE_STORE_H
#define STANZA_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "store/store-t.h"

/* ---- open and close --------------------------------------------------- */

void store_options_default(struct store_options *o);

/* Open the store kept in directory dir, creating the directory (mode 0700;
 * its parent must exist) and the tables if missing. o NULL: defaults.
 * Refuses a store written in a newer format. On success *out is the store,
 * to be closed with store_close by the thread that will not use it again.
 * One open per directory per process (LMDB's locks are per process). */
int store_open(struct store **out, const char *dir, const struct store_options *o);

/* Every transaction must have ended. */
void store_close(struct store *s);

/* The longest key accepted, in bytes. Callers should refuse longer bare
 * JIDs up front (LMDB: 511; account keys take the JID's length). */
size_t store_max_key(const struct store *s);

const char *store_rc_str(int rc);
const char *store_table_name(enum store_table tb);

/* ---- transactions ----------------------------------------------------- */

int store_read_begin(struct store *s, struct store_txn *t);
int store_write_begin(struct store *s, struct store_txn *t);

/* Make the batch's writes durable and visible; ends t whatever the result.
 * A snapshot just ends (STORE_OK). */
int store_commit(struct store_txn *t);

/* End a snapshot, or drop a batch. */
void store_abort(struct store_txn *t);

/* ---- generic records: opaque values under byte-string keys ------------- */

/* Copy the value of key into *out. */
int store_get(struct store *s, struct store_txn *t, enum store_table tb,
	      const void *key, size_t klen, struct store_buf *out);

/* Create or replace. flags: 0 or STORE_PUT_NEW (STORE_EXISTS if present). */
int store_put(struct store *s, struct store_txn *t, enum store_table tb,
	      const void *key, size_t klen, const void *val, size_t vlen, unsigned flags);

int store_del(struct store *s, struct store_txn *t, enum store_table tb,
	      const void *key, size_t klen);

/* Every record whose key starts with prefix[0..plen), in bytewise key
 * order; plen 0: the whole table. To visit one user's records without
 * those of "u@domain.evil", end the prefix with the NUL separator. */
int store_iter(struct store *s, struct store_txn *t, enum store_table tb,
	       const void *prefix, size_t plen, store_iter_fn *fn, void *arg);

/* Delete every record whose key starts with prefix; *n (may be NULL) gets
 * how many. plen 0 empties the table. */
int store_del_prefix(struct store *s, struct store_txn *t, enum store_table tb,
		     const void *prefix, size_t plen, uint64_t *n);

/* Records whose key starts with prefix (plen 0: the table, in O(1)). */
int store_count(struct store *s, struct store_txn *t, enum store_table tb,
		const void *prefix, size_t plen, uint64_t *n);

/* ---- queues: append-ordered values per queue name ----------------------
 * A queue is named by bytes without NUL (the owner's bare JID for offline
 * messages). Items get a sequence number at append, unique in the table
 * and increasing, never reused, and are kept in that order. Stored under
 * the key  name \0 seq(8 bytes big-endian), so the generic functions see
 * them too. */

int store_queue_append(struct store *s, struct store_txn *t, enum store_table tb,
		       const void *name, size_t nlen, const void *val, size_t vlen, uint64_t *seq);

/* The items in order. */
int store_queue_iter(struct store *s, struct store_txn *t, enum store_table tb,
		     const void *name, size_t nlen, store_queue_fn *fn, void *arg);

/* Remove the oldest item, its value copied into *out and its number into
 * *seq (may be NULL). STORE_NOTFOUND if the queue is empty. */
int store_queue_pop(struct store *s, struct store_txn *t, enum store_table tb,
		    const void *name, size_t nlen, uint64_t *seq, struct store_buf *out);

/* Remove item seq (STORE_NOTFOUND if absent). */
int store_queue_del(struct store *s, struct store_txn *t, enum store_table tb,
		    const void *name, size_t nlen, uint64_t seq);

int store_queue_count(struct store *s, struct store_txn *t, enum store_table tb,
		      const void *name, size_t nlen, uint64_t *n);

int store_queue_clear(struct store *s, struct store_txn *t, enum store_table tb,
		      const void *name, size_t nlen, uint64_t *n);

/* ---- accounts ----------------------------------------------------------
 * jid is the bare JID "local@domain", already prepared (parser/jid.h): one
 * '@', both sides non-empty. The store keys accounts by domain first so
 * that one domain's accounts are listed without reading the others. */

/* Create or replace. must_be_new: STORE_EXISTS if the account exists.
 * The account is checked (nscram 1..3, distinct known hashes, salt and key
 * lengths) and refused with STORE_ERROR if malformed. */
int store_account_put(struct store *s, struct store_txn *t, const char *jid, size_t len,
		      const struct store_account *a, bool must_be_new);

/* STORE_ERROR (logged) if the record on disk is corrupt or of an unknown
 * version. */
int store_account_get(struct store *s, struct store_txn *t, const char *jid, size_t len,
		      struct store_account *a);

int store_account_del(struct store *s, struct store_txn *t, const char *jid, size_t len);

/* The accounts of domain (NULL: all domains), ordered by domain then
 * localpart. The callback's jid is "local@domain", NUL-terminated. Stops
 * with STORE_ERROR at a corrupt record. */
int store_account_list(struct store *s, struct store_txn *t, const char *domain,
		       store_account_fn *fn, void *arg);

int store_account_count(struct store *s, struct store_txn *t, const char *domain, uint64_t *n);

/* The credentials for hash h, or NULL. */
const struct store_scram *store_account_scram(const struct store_account *a, enum store_hash h);

/* Output size of h in bytes (0 if unknown). */
unsigned store_hash_len(enum store_hash h);

/* ---- values ----------------------------------------------------------- */

void store_buf_free(struct store_buf *b);

/* Make room for n bytes (b->len unchanged). STORE_OK or STORE_ERROR. */
int store_buf_reserve(struct store_buf *b, size_t n);

/* ---- for backends ----------------------------------------------------- */

extern const struct store_backend store_backend_lmdb;

/* One line on stderr, prefixed "store: ". */
void store_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
