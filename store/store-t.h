/* Types of the persistence layer (see store/store.h for the functions).
 *
 *   struct store        one open store: a backend and its state. Opaque to
 *                       callers; the fields below are for store.c and the
 *                       backends.
 *   struct store_txn    a read snapshot or a write batch, in the caller's
 *                       memory (usually the stack). Plain data.
 *   struct store_buf    a growable buffer that get/pop copy values into,
 *                       owned by the caller and reused across calls.
 *   struct store_account, struct store_scram
 *                       an account as plain data: SCRAM credentials only,
 *                       never a password.
 *   struct store_backend
 *                       the table of functions one backend file provides.
 */
#ifndef STANZA_STORE_STORE_T_H
#define STANZA_STORE_STORE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every function of store.h that can fail returns one of these, and only
 * these:
 *   STORE_OK        done.
 *   STORE_NOTFOUND  no such key / account / queue item (nothing changed).
 *   STORE_EXISTS    STORE_PUT_NEW (or account_put's must_be_new) and the
 *                   key is already there (nothing changed).
 *   STORE_FULL      the data did not fit: the map is full even after the
 *                   store grew it as far as store_options.map_size_max
 *                   allows (or the writer, holding a snapshot, could not
 *                   grow it). A single write (txn NULL) has already been
 *                   retried once after growing. Inside a batch the batch
 *                   is now dead: every later call on it returns STORE_FULL
 *                   and store_commit rolls it back; redo the batch once.
 *   STORE_ERROR     anything else: I/O error, corrupt or unknown record,
 *                   bad argument (key too long, wrong thread state, ...).
 *                   The cause has been logged at the failure site.
 * A batch (write txn) that saw any error other than STORE_NOTFOUND and
 * STORE_EXISTS is dead the same way: store_commit returns that error and
 * nothing of the batch is written. */
enum store_rc {
	STORE_OK = 0,
	STORE_NOTFOUND,
	STORE_EXISTS,
	STORE_FULL,
	STORE_ERROR,
};

/* The tables. Key formats are the callers' (the store sees bytes); the
 * ones below are the convention, "u" being the owner's bare JID
 * "local@domain" as prepared by parser/jid.h, "\0" a NUL byte:
 *   roster     u \0 contact-bare-jid          -> roster item
 *   pending    u \0 from-bare-jid             -> inbound subscription request
 *   offline    queue per u                    -> stanza bytes
 *   vcard      u                              -> vCard XML
 *   private    u \0 namespace                 -> private XML (XEP-0049)
 *   blocklist  u \0 blocked-jid               -> (empty) (XEP-0191)
 *   last       u                              -> last activity record
 * Keys are at most store_max_key() bytes (511 with LMDB). On disk a table
 * is known by its name (store_table_name), not by its number. */
enum store_table {
	STORE_T_ROSTER = 0,
	STORE_T_PENDING,
	STORE_T_OFFLINE,
	STORE_T_VCARD,
	STORE_T_PRIVATE,
	STORE_T_BLOCKLIST,
	STORE_T_LAST,
	STORE_T_NPUBLIC,
	/* The store's own: reached only through store_account_* and store.c. */
	STORE_T_ACCOUNTS = STORE_T_NPUBLIC,
	STORE_T_META,
	STORE_T_COUNT,
};

/* How hard a commit pushes to disk. */
enum store_sync {
	STORE_SYNC_DURABLE = 0, /* fsync data then meta page: a commit that returned
	                           STORE_OK survives kill -9 and power loss */
	STORE_SYNC_NOMETA,      /* no fsync of the meta page: survives kill -9; power
	                           loss may undo the last commit(s), never corrupts */
	STORE_SYNC_NONE,        /* no fsync at all: survives kill -9 (the page cache
	                           has the bytes); power loss may undo recent commits */
};

#define STORE_DEFAULT_MAP_SIZE ((size_t)1 << 30)

struct store_options {
	const char *backend;      /* NULL: "lmdb" */
	size_t map_size;          /* bytes of address space for the data file
	                             (0: STORE_DEFAULT_MAP_SIZE); the file itself
	                             grows only as data is written */
	size_t map_size_max;      /* grow up to this on a full map (0: twice
	                             map_size, i.e. double once; == map_size: never) */
	enum store_sync sync;
	unsigned max_readers;     /* concurrent read txns of all processes (0: 126) */
};

/* A growable byte buffer, owned by the caller: zero-initialise it, pass it
 * to as many calls as you like (the store reallocs it as needed, so after
 * warm-up no call allocates), free it with store_buf_free. ptr/len hold the
 * last value copied in. */
struct store_buf {
	uint8_t *ptr;
	size_t len;
	size_t cap;
};

/* A read snapshot or a write batch (see store.h: store_read_begin,
 * store_write_begin). Lives in the caller's memory; no destructor besides
 * store_commit / store_abort. */
struct store_txn {
	struct store *s;
	void *h;        /* the backend's handle (LMDB: MDB_txn *) */
	int err;        /* first fatal error of a batch (enum store_rc) */
	bool write;
};

/* ---- accounts --------------------------------------------------------- */

enum store_hash {
	STORE_SHA1 = 1,
	STORE_SHA256 = 2,
	STORE_SHA512 = 3,
};

#define STORE_SALT_MIN   16
#define STORE_SALT_MAX   64
#define STORE_KEY_MAX    64   /* SHA-512 output */
#define STORE_SCRAM_MAX  3

/* SCRAM credentials for one hash (RFC 5802 section 3): the client proves
 * knowledge of the password against stored_key, the server signs with
 * server_key. key_len must be the hash's output size (20, 32, 64). */
struct store_scram {
	uint8_t hash;          /* enum store_hash */
	uint8_t salt_len;      /* STORE_SALT_MIN..STORE_SALT_MAX */
	uint8_t key_len;
	uint32_t iterations;   /* >= 1; the policy floor is the caller's */
	uint8_t salt[STORE_SALT_MAX];
	uint8_t stored_key[STORE_KEY_MAX];
	uint8_t server_key[STORE_KEY_MAX];
};

struct store_account {
	int64_t created;       /* Unix time, seconds */
	uint8_t nscram;        /* 1..STORE_SCRAM_MAX, each hash at most once */
	struct store_scram scram[STORE_SCRAM_MAX];
};

/* ---- callbacks -------------------------------------------------------- */

/* Iteration callbacks get pointers that are valid only during the call
 * (LMDB: straight into the map). Return 0 to go on, anything else to stop
 * (the iterating function then returns STORE_OK). A callback must not call
 * the store: the iteration holds a transaction and a cursor. */
typedef int store_iter_fn(void *arg, const void *key, size_t klen, const void *val, size_t vlen);
typedef int store_queue_fn(void *arg, uint64_t seq, const void *val, size_t vlen);
typedef int store_account_fn(void *arg, const char *jid, size_t jid_len, const struct store_account *a);

/* ---- backend interface (store.c and store_*.c only) ------------------- */

/* Flags of put. */
#define STORE_PUT_NEW 1u   /* the key must not exist: else STORE_EXISTS */

/* One backend: a const table of these in its own file. Every function
 * returns enum store_rc and logs its own failures. Keys have been checked
 * against max_key and tables against STORE_T_COUNT by store.c; txn is
 * always a live transaction (store.c opens one for single calls), and a
 * write function gets a write txn. */
struct store_backend {
	const char *name;
	int (*open)(struct store **out, const char *dir, const struct store_options *o);
	void (*close)(struct store *s);
	size_t (*max_key)(const struct store *s);
	int (*begin)(struct store *s, struct store_txn *t, bool write);
	int (*commit)(struct store_txn *t);    /* ends t, also on failure */
	void (*abort)(struct store_txn *t);
	int (*get)(struct store_txn *t, enum store_table tb, const void *k, size_t kl, struct store_buf *out);
	int (*put)(struct store_txn *t, enum store_table tb, const void *k, size_t kl,
		   const void *v, size_t vl, unsigned flags);
	int (*del)(struct store_txn *t, enum store_table tb, const void *k, size_t kl);
	/* Keys starting with p[0..pl), in key order (bytewise, shorter first);
	 * pl 0: the whole table. */
	int (*iter)(struct store_txn *t, enum store_table tb, const void *p, size_t pl,
		    store_iter_fn *fn, void *arg);
	int (*del_prefix)(struct store_txn *t, enum store_table tb, const void *p, size_t pl, uint64_t *n);
	int (*count)(struct store_txn *t, enum store_table tb, const void *p, size_t pl, uint64_t *n);
};

/* The part of an open store that store.c reads; a backend's own state
 * starts with it. */
struct store {
	const struct store_backend *be;
	struct store_txn *batch;   /* the writer's open batch; writer thread only */
};

#endif
