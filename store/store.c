/* The backend-independent half of the store: argument checks, one
 * transaction per call when the caller gives none (with one retry after
 * the backend grew a full map), queues and accounts built on the generic
 * records, and the account record's binary layout. Backends see only
 * checked keys and live transactions. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

/* Keys are built on the stack; no backend gets longer ones. */
#define KEY_LIMIT 511

/* Format of the store as a whole (meta "version"), and of one account. */
#define STORE_FORMAT     1
#define ACCOUNT_VERSION  1

static const char meta_version[] = "version";

static const struct store_backend *const backends[] = {
	&store_backend_lmdb,
};

void store_log(const char *fmt, ...)
{
	va_list ap;
	char line[512];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "store: %s\n", line);
}

const char *store_rc_str(int rc)
{
	switch (rc) {
	case STORE_OK:       return "ok";
	case STORE_NOTFOUND: return "not found";
	case STORE_EXISTS:   return "exists";
	case STORE_FULL:     return "full";
	case STORE_ERROR:    return "error";
	}
	return "?";
}

const char *store_table_name(enum store_table tb)
{
	static const char *const names[STORE_T_COUNT] = {
		[STORE_T_ROSTER] = "roster",
		[STORE_T_PENDING] = "pending",
		[STORE_T_OFFLINE] = "offline",
		[STORE_T_VCARD] = "vcard",
		[STORE_T_PRIVATE] = "private",
		[STORE_T_BLOCKLIST] = "blocklist",
		[STORE_T_LAST] = "last",
		[STORE_T_ACCOUNTS] = "accounts",
		[STORE_T_META] = "meta",
	};
	return (unsigned)tb < STORE_T_COUNT ? names[tb] : "?";
}

/* ---- buffers ---------------------------------------------------------- */

void store_buf_free(struct store_buf *b)
{
	free(b->ptr);
	b->ptr = NULL;
	b->len = b->cap = 0;
}

int store_buf_reserve(struct store_buf *b, size_t n)
{
	if (n <= b->cap)
		return STORE_OK;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < n)
		cap = cap > SIZE_MAX / 2 ? n : cap * 2;
	uint8_t *p = realloc(b->ptr, cap);
	if (!p) {
		store_log("out of memory for a %zu-byte value", n);
		return STORE_ERROR;
	}
	b->ptr = p;
	b->cap = cap;
	return STORE_OK;
}

/* ---- open, close, transactions --------------------------------------- */

void store_options_default(struct store_options *o)
{
	memset(o, 0, sizeof(*o));
	o->backend = "lmdb";
	o->map_size = STORE_DEFAULT_MAP_SIZE;
	o->map_size_max = 2 * STORE_DEFAULT_MAP_SIZE;
	o->sync = STORE_SYNC_DURABLE;
	o->max_readers = 126;
}

static int check_format(struct store *s)
{
	struct store_txn t;
	struct store_buf b = { 0 };
	int rc = s->be->begin(s, &t, true);

	if (rc != STORE_OK)
		return rc;
	rc = s->be->get(&t, STORE_T_META, meta_version, sizeof(meta_version) - 1, &b);
	if (rc == STORE_NOTFOUND) {
		uint8_t v = STORE_FORMAT;
		rc = s->be->put(&t, STORE_T_META, meta_version, sizeof(meta_version) - 1, &v, 1, 0);
		if (rc == STORE_OK)
			return s->be->commit(&t);
	} else if (rc == STORE_OK && (b.len != 1 || b.ptr[0] != STORE_FORMAT)) {
		store_log("store format %u unknown (this build reads %u)",
			  b.len ? b.ptr[0] : 0u, STORE_FORMAT);
		rc = STORE_ERROR;
	}
	store_buf_free(&b);
	s->be->abort(&t);
	return rc;
}

int store_open(struct store **out, const char *dir, const struct store_options *o)
{
	struct store_options opt;
	const struct store_backend *be = NULL;

	*out = NULL;
	store_options_default(&opt);
	if (o) {
		if (o->backend)
			opt.backend = o->backend;
		if (o->map_size)
			opt.map_size = o->map_size;
		opt.map_size_max = o->map_size_max ? o->map_size_max : 2 * opt.map_size;
		if (opt.map_size_max < opt.map_size)
			opt.map_size_max = opt.map_size;
		opt.sync = o->sync;
		if (o->max_readers)
			opt.max_readers = o->max_readers;
	}
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (strcmp(backends[i]->name, opt.backend) == 0)
			be = backends[i];
	if (!be) {
		store_log("%s: no backend named '%s'", dir, opt.backend);
		return STORE_ERROR;
	}

	struct store *s;
	int rc = be->open(&s, dir, &opt);
	if (rc != STORE_OK)
		return rc;
	s->be = be;
	s->batch = NULL;
	rc = check_format(s);
	if (rc != STORE_OK) {
		be->close(s);
		return rc;
	}
	*out = s;
	return STORE_OK;
}

void store_close(struct store *s)
{
	if (s)
		s->be->close(s);
}

size_t store_max_key(const struct store *s)
{
	size_t m = s->be->max_key(s);
	return m < KEY_LIMIT ? m : KEY_LIMIT;
}

int store_read_begin(struct store *s, struct store_txn *t)
{
	return s->be->begin(s, t, false);
}

int store_write_begin(struct store *s, struct store_txn *t)
{
	if (s->batch) {
		store_log("a batch is already open: one writer, one batch");
		return STORE_ERROR;
	}
	int rc = s->be->begin(s, t, true);
	if (rc == STORE_OK)
		s->batch = t;
	return rc;
}

int store_commit(struct store_txn *t)
{
	struct store *s = t->s;

	if (!t->write) {
		s->be->abort(t);
		return STORE_OK;
	}
	s->batch = NULL;
	if (t->err) {
		int rc = t->err;
		s->be->abort(t);
		return rc;
	}
	return s->be->commit(t);
}

void store_abort(struct store_txn *t)
{
	if (t->write)
		t->s->batch = NULL;
	t->s->be->abort(t);
}

/* ---- running one operation ------------------------------------------- */

/* Everything an operation needs, so that run() can redo it after a full
 * map was grown. Fields are used as each op documents. */
struct op {
	enum store_table tb;
	const void *k;
	size_t kl;
	const void *v;
	size_t vl;
	unsigned flags;
	struct store_buf *out;
	uint64_t *n;
	uint64_t seq;
	store_iter_fn *iter;
	void *arg;
	const struct store_account *acct_in;
	struct store_account *acct_out;
};

typedef int op_fn(struct store_txn *t, struct op *o);

static bool batch_fatal(int rc)
{
	return rc != STORE_OK && rc != STORE_NOTFOUND && rc != STORE_EXISTS;
}

/* Run fn in t, or in a transaction of its own committed here. */
static int run(struct store *s, struct store_txn *t, bool write, op_fn *fn, struct op *o)
{
	int rc;

	if (t) {
		if (t->s != s || (write && !t->write)) {
			store_log("%s passed a transaction it may not use",
				  write ? "a write" : "a read");
			return STORE_ERROR;
		}
		if (t->err)
			return t->err;
		rc = fn(t, o);
		if (t->write && batch_fatal(rc))
			t->err = rc;
		return rc;
	}
	if (write && s->batch) {
		store_log("a write without the open batch (it would wait for itself)");
		return STORE_ERROR;
	}
	for (int attempt = 0;; attempt++) {
		struct store_txn own;

		rc = s->be->begin(s, &own, write);
		if (rc != STORE_OK)
			return rc;
		rc = fn(&own, o);
		if (write && rc == STORE_OK) {
			rc = s->be->commit(&own);
		} else {
			if (batch_fatal(rc))
				own.err = rc;
			s->be->abort(&own);
		}
		/* The backend grew the map when the transaction ended. */
		if (rc != STORE_FULL || !write || attempt > 0)
			return rc;
	}
}

static int check_key(const struct store *s, const void *k, size_t kl, bool empty_ok)
{
	if ((kl == 0 && !empty_ok) || kl > store_max_key(s) || (kl && !k)) {
		store_log("key of %zu bytes refused (1..%zu)", kl, store_max_key(s));
		return STORE_ERROR;
	}
	return STORE_OK;
}

static int check_table(enum store_table tb)
{
	if ((unsigned)tb >= STORE_T_NPUBLIC) {
		store_log("table %d is not one of the generic tables", (int)tb);
		return STORE_ERROR;
	}
	return STORE_OK;
}

/* ---- generic records -------------------------------------------------- */

static int op_get(struct store_txn *t, struct op *o)
{
	return t->s->be->get(t, o->tb, o->k, o->kl, o->out);
}

static int op_put(struct store_txn *t, struct op *o)
{
	return t->s->be->put(t, o->tb, o->k, o->kl, o->v, o->vl, o->flags);
}

static int op_del(struct store_txn *t, struct op *o)
{
	return t->s->be->del(t, o->tb, o->k, o->kl);
}

static int op_iter(struct store_txn *t, struct op *o)
{
	return t->s->be->iter(t, o->tb, o->k, o->kl, o->iter, o->arg);
}

static int op_del_prefix(struct store_txn *t, struct op *o)
{
	return t->s->be->del_prefix(t, o->tb, o->k, o->kl, o->n);
}

static int op_count(struct store_txn *t, struct op *o)
{
	return t->s->be->count(t, o->tb, o->k, o->kl, o->n);
}

int store_get(struct store *s, struct store_txn *t, enum store_table tb,
	      const void *key, size_t klen, struct store_buf *out)
{
	struct op o = { .tb = tb, .k = key, .kl = klen, .out = out };

	if (check_table(tb) || check_key(s, key, klen, false))
		return STORE_ERROR;
	return run(s, t, false, op_get, &o);
}

int store_put(struct store *s, struct store_txn *t, enum store_table tb,
	      const void *key, size_t klen, const void *val, size_t vlen, unsigned flags)
{
	struct op o = { .tb = tb, .k = key, .kl = klen, .v = val, .vl = vlen, .flags = flags };

	if (check_table(tb) || check_key(s, key, klen, false) || (vlen && !val))
		return STORE_ERROR;
	return run(s, t, true, op_put, &o);
}

int store_del(struct store *s, struct store_txn *t, enum store_table tb,
	      const void *key, size_t klen)
{
	struct op o = { .tb = tb, .k = key, .kl = klen };

	if (check_table(tb) || check_key(s, key, klen, false))
		return STORE_ERROR;
	return run(s, t, true, op_del, &o);
}

int store_iter(struct store *s, struct store_txn *t, enum store_table tb,
	       const void *prefix, size_t plen, store_iter_fn *fn, void *arg)
{
	struct op o = { .tb = tb, .k = prefix, .kl = plen, .iter = fn, .arg = arg };

	if (check_table(tb) || check_key(s, prefix, plen, true))
		return STORE_ERROR;
	return run(s, t, false, op_iter, &o);
}

int store_del_prefix(struct store *s, struct store_txn *t, enum store_table tb,
		     const void *prefix, size_t plen, uint64_t *n)
{
	uint64_t dummy;
	struct op o = { .tb = tb, .k = prefix, .kl = plen, .n = n ? n : &dummy };

	if (check_table(tb) || check_key(s, prefix, plen, true))
		return STORE_ERROR;
	return run(s, t, true, op_del_prefix, &o);
}

int store_count(struct store *s, struct store_txn *t, enum store_table tb,
		const void *prefix, size_t plen, uint64_t *n)
{
	struct op o = { .tb = tb, .k = prefix, .kl = plen, .n = n };

	if (check_table(tb) || check_key(s, prefix, plen, true))
		return STORE_ERROR;
	return run(s, t, false, op_count, &o);
}

/* ---- queues ------------------------------------------------------------ */

/* Item key: name \0 seq, the sequence big-endian so that key order is
 * append order. The per-table counter lives in meta under "qseq:<table>",
 * an unsigned 64-bit little-endian number: the last sequence handed out. */
#define QSEQ_LEN 8

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Build "name\0" (+ seq if with_seq) into key; returns its length or 0. */
static size_t queue_key(const struct store *s, uint8_t key[KEY_LIMIT + 1],
			const void *name, size_t nlen, bool with_seq, uint64_t seq)
{
	size_t len = nlen + 1 + (with_seq ? QSEQ_LEN : 0);

	if (nlen == 0 || !name || nlen + 1 + QSEQ_LEN > store_max_key(s) || memchr(name, 0, nlen)) {
		store_log("queue name of %zu bytes refused (1..%zu, no NUL)",
			  nlen, store_max_key(s) - 1 - QSEQ_LEN);
		return 0;
	}
	memcpy(key, name, nlen);
	key[nlen] = 0;
	if (with_seq)
		put_be64(key + nlen + 1, seq);
	return len;
}

static int op_queue_append(struct store_txn *t, struct op *o)
{
	const struct store_backend *be = t->s->be;
	char ck[32];
	int cl = snprintf(ck, sizeof(ck), "qseq:%s", store_table_name(o->tb));
	uint8_t key[KEY_LIMIT + 1], cv[8];
	struct store_buf b = { 0 };
	uint64_t last = 0;
	int rc = be->get(t, STORE_T_META, ck, (size_t)cl, &b);

	if (rc == STORE_OK) {
		if (b.len != 8) {
			store_log("queue counter of %s corrupt (%zu bytes)", store_table_name(o->tb), b.len);
			rc = STORE_ERROR;
		} else {
			last = get_le64(b.ptr);
		}
	} else if (rc == STORE_NOTFOUND) {
		rc = STORE_OK;
	}
	store_buf_free(&b);
	if (rc != STORE_OK)
		return rc;
	o->seq = last + 1;
	put_le64(cv, o->seq);
	rc = be->put(t, STORE_T_META, ck, (size_t)cl, cv, sizeof(cv), 0);
	if (rc != STORE_OK)
		return rc;
	size_t kl = queue_key(t->s, key, o->k, o->kl, true, o->seq);
	return be->put(t, o->tb, key, kl, o->v, o->vl, STORE_PUT_NEW);
}

int store_queue_append(struct store *s, struct store_txn *t, enum store_table tb,
		       const void *name, size_t nlen, const void *val, size_t vlen, uint64_t *seq)
{
	uint8_t key[KEY_LIMIT + 1];
	struct op o = { .tb = tb, .k = name, .kl = nlen, .v = val, .vl = vlen };

	if (check_table(tb) || !queue_key(s, key, name, nlen, false, 0) || (vlen && !val))
		return STORE_ERROR;
	int rc = run(s, t, true, op_queue_append, &o);
	if (rc == STORE_OK && seq)
		*seq = o.seq;
	return rc;
}

struct queue_walk {
	size_t klen;                /* name + NUL + seq */
	store_queue_fn *fn;
	void *arg;
	/* pop: the first item */
	struct store_buf *out;
	uint64_t seq;
	int rc;
	bool found;
};

static int queue_item(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct queue_walk *w = arg;

	if (klen != w->klen)  /* not an item: names hold no NUL, so never */
		return 0;
	return w->fn(w->arg, get_be64((const uint8_t *)key + klen - QSEQ_LEN), val, vlen);
}

static int queue_first(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct queue_walk *w = arg;

	if (klen != w->klen)
		return 0;
	w->seq = get_be64((const uint8_t *)key + klen - QSEQ_LEN);
	w->found = true;
	w->rc = store_buf_reserve(w->out, vlen);
	if (w->rc == STORE_OK) {
		if (vlen)
			memcpy(w->out->ptr, val, vlen);
		w->out->len = vlen;
	}
	return 1;
}

static int queue_count(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct queue_walk *w = arg;

	if (klen == w->klen)
		w->seq++;
	return 0;
}

static int op_queue_iter(struct store_txn *t, struct op *o)
{
	struct queue_walk *w = o->arg;

	return t->s->be->iter(t, o->tb, o->k, o->kl, o->iter, w);
}

static int op_queue_pop(struct store_txn *t, struct op *o)
{
	struct queue_walk *w = o->arg;
	uint8_t key[KEY_LIMIT + 1];

	w->found = false;
	w->rc = STORE_OK;
	int rc = t->s->be->iter(t, o->tb, o->k, o->kl, queue_first, w);
	if (rc != STORE_OK)
		return rc;
	if (!w->found)
		return STORE_NOTFOUND;
	if (w->rc != STORE_OK)
		return w->rc;
	memcpy(key, o->k, o->kl);
	put_be64(key + o->kl, w->seq);
	return t->s->be->del(t, o->tb, key, o->kl + QSEQ_LEN);
}

int store_queue_iter(struct store *s, struct store_txn *t, enum store_table tb,
		     const void *name, size_t nlen, store_queue_fn *fn, void *arg)
{
	uint8_t key[KEY_LIMIT + 1];
	size_t kl = queue_key(s, key, name, nlen, false, 0);
	struct queue_walk w = { .klen = kl + QSEQ_LEN, .fn = fn, .arg = arg };
	struct op o = { .tb = tb, .k = key, .kl = kl, .iter = queue_item, .arg = &w };

	if (check_table(tb) || !kl)
		return STORE_ERROR;
	return run(s, t, false, op_queue_iter, &o);
}

int store_queue_count(struct store *s, struct store_txn *t, enum store_table tb,
		      const void *name, size_t nlen, uint64_t *n)
{
	uint8_t key[KEY_LIMIT + 1];
	size_t kl = queue_key(s, key, name, nlen, false, 0);
	struct queue_walk w = { .klen = kl + QSEQ_LEN };
	struct op o = { .tb = tb, .k = key, .kl = kl, .iter = queue_count, .arg = &w };

	if (check_table(tb) || !kl)
		return STORE_ERROR;
	int rc = run(s, t, false, op_queue_iter, &o);
	if (rc == STORE_OK)
		*n = w.seq;
	return rc;
}

int store_queue_pop(struct store *s, struct store_txn *t, enum store_table tb,
		    const void *name, size_t nlen, uint64_t *seq, struct store_buf *out)
{
	uint8_t key[KEY_LIMIT + 1];
	size_t kl = queue_key(s, key, name, nlen, false, 0);
	struct queue_walk w = { .klen = kl + QSEQ_LEN, .out = out };
	struct op o = { .tb = tb, .k = key, .kl = kl, .arg = &w };

	if (check_table(tb) || !kl)
		return STORE_ERROR;
	int rc = run(s, t, true, op_queue_pop, &o);
	if (rc == STORE_OK && seq)
		*seq = w.seq;
	return rc;
}

int store_queue_del(struct store *s, struct store_txn *t, enum store_table tb,
		    const void *name, size_t nlen, uint64_t seq)
{
	uint8_t key[KEY_LIMIT + 1];
	size_t kl = queue_key(s, key, name, nlen, true, seq);
	struct op o = { .tb = tb, .k = key, .kl = kl };

	if (check_table(tb) || !kl)
		return STORE_ERROR;
	return run(s, t, true, op_del, &o);
}

int store_queue_clear(struct store *s, struct store_txn *t, enum store_table tb,
		      const void *name, size_t nlen, uint64_t *n)
{
	uint8_t key[KEY_LIMIT + 1];
	size_t kl = queue_key(s, key, name, nlen, false, 0);
	uint64_t dummy;
	struct op o = { .tb = tb, .k = key, .kl = kl, .n = n ? n : &dummy };

	if (check_table(tb) || !kl)
		return STORE_ERROR;
	return run(s, t, true, op_del_prefix, &o);
}

/* ---- accounts: the record ---------------------------------------------
 * Version 1, little-endian, no padding:
 *   u8 version (1) | i64 created | u8 n (1..3) |
 *   n x { u8 hash | u32 iterations | u8 salt_len | salt |
 *         u8 key_len | stored_key[key_len] | server_key[key_len] }
 * Anything else (other version, bad lengths, trailing bytes) is corrupt. */
#define ACCOUNT_MAX (1 + 8 + 1 + STORE_SCRAM_MAX * (1 + 4 + 1 + STORE_SALT_MAX + 1 + 2 * STORE_KEY_MAX))

unsigned store_hash_len(enum store_hash h)
{
	switch (h) {
	case STORE_SHA1:   return 20;
	case STORE_SHA256: return 32;
	case STORE_SHA512: return 64;
	}
	return 0;
}

const struct store_scram *store_account_scram(const struct store_account *a, enum store_hash h)
{
	for (unsigned i = 0; i < a->nscram && i < STORE_SCRAM_MAX; i++)
		if (a->scram[i].hash == h)
			return &a->scram[i];
	return NULL;
}

static const char *account_invalid(const struct store_account *a)
{
	unsigned seen = 0;

	if (a->nscram < 1 || a->nscram > STORE_SCRAM_MAX)
		return "credential count";
	for (unsigned i = 0; i < a->nscram; i++) {
		const struct store_scram *c = &a->scram[i];
		unsigned hl = store_hash_len(c->hash);

		if (!hl || (seen & 1u << c->hash))
			return "hash unknown or repeated";
		seen |= 1u << c->hash;
		if (c->key_len != hl)
			return "key length";
		if (c->salt_len < STORE_SALT_MIN || c->salt_len > STORE_SALT_MAX)
			return "salt length";
		if (c->iterations == 0)
			return "iteration count";
	}
	return NULL;
}

static size_t account_encode(const struct store_account *a, uint8_t *p)
{
	uint8_t *q = p;

	*q++ = ACCOUNT_VERSION;
	put_le64(q, (uint64_t)a->created);
	q += 8;
	*q++ = a->nscram;
	for (unsigned i = 0; i < a->nscram; i++) {
		const struct store_scram *c = &a->scram[i];

		*q++ = c->hash;
		for (int b = 0; b < 4; b++)
			*q++ = (uint8_t)(c->iterations >> (8 * b));
		*q++ = c->salt_len;
		memcpy(q, c->salt, c->salt_len);
		q += c->salt_len;
		*q++ = c->key_len;
		memcpy(q, c->stored_key, c->key_len);
		q += c->key_len;
		memcpy(q, c->server_key, c->key_len);
		q += c->key_len;
	}
	return (size_t)(q - p);
}

/* Returns NULL or what is wrong. */
static const char *account_decode(const uint8_t *p, size_t len, struct store_account *a)
{
	const uint8_t *end = p + len;

	memset(a, 0, sizeof(*a));
	if (len < 10)
		return "truncated";
	if (p[0] != ACCOUNT_VERSION)
		return "unknown version";
	a->created = (int64_t)get_le64(p + 1);
	a->nscram = p[9];
	p += 10;
	if (a->nscram < 1 || a->nscram > STORE_SCRAM_MAX)
		return "credential count";
	for (unsigned i = 0; i < a->nscram; i++) {
		struct store_scram *c = &a->scram[i];

		if (end - p < 6)
			return "truncated";
		c->hash = p[0];
		c->iterations = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 | (uint32_t)p[4] << 24;
		c->salt_len = p[5];
		p += 6;
		if (c->salt_len > STORE_SALT_MAX || end - p < c->salt_len + 1)
			return "salt length";
		memcpy(c->salt, p, c->salt_len);
		p += c->salt_len;
		c->key_len = *p++;
		if (c->key_len > STORE_KEY_MAX || end - p < 2 * c->key_len)
			return "key length";
		memcpy(c->stored_key, p, c->key_len);
		memcpy(c->server_key, p + c->key_len, c->key_len);
		p += 2 * c->key_len;
	}
	if (p != end)
		return "trailing bytes";
	return account_invalid(a);
}

/* ---- accounts: keys and operations -------------------------------------
 * Key: domain \0 local, so that a domain's accounts are one key range. */

static size_t account_key(const struct store *s, uint8_t key[KEY_LIMIT + 1], const char *jid, size_t len)
{
	const char *at = jid ? memchr(jid, '@', len) : NULL;

	if (!at || at == jid || at == jid + len - 1 || memchr(at + 1, '@', (size_t)(jid + len - at - 1))
	    || memchr(jid, 0, len) || len > store_max_key(s)) {
		store_log("account JID of %zu bytes refused (local@domain, at most %zu)", len, store_max_key(s));
		return 0;
	}
	size_t ll = (size_t)(at - jid), dl = len - ll - 1;
	memcpy(key, at + 1, dl);
	key[dl] = 0;
	memcpy(key + dl + 1, jid, ll);
	return len;
}

static int op_account_put(struct store_txn *t, struct op *o)
{
	uint8_t rec[ACCOUNT_MAX];
	size_t n = account_encode(o->acct_in, rec);

	return t->s->be->put(t, STORE_T_ACCOUNTS, o->k, o->kl, rec, n, o->flags);
}

static int op_account_get(struct store_txn *t, struct op *o)
{
	struct store_buf b = { 0 };
	int rc = t->s->be->get(t, STORE_T_ACCOUNTS, o->k, o->kl, &b);

	if (rc == STORE_OK) {
		const char *why = account_decode(b.ptr, b.len, o->acct_out);
		if (why) {
			store_log("account record corrupt (%s)", why);
			rc = STORE_ERROR;
		}
	}
	store_buf_free(&b);
	return rc;
}

int store_account_put(struct store *s, struct store_txn *t, const char *jid, size_t len,
		      const struct store_account *a, bool must_be_new)
{
	uint8_t key[KEY_LIMIT + 1];
	struct op o = { .k = key, .acct_in = a, .flags = must_be_new ? STORE_PUT_NEW : 0 };
	const char *why = account_invalid(a);

	if (why) {
		store_log("account refused (%s)", why);
		return STORE_ERROR;
	}
	o.kl = account_key(s, key, jid, len);
	if (!o.kl)
		return STORE_ERROR;
	return run(s, t, true, op_account_put, &o);
}

int store_account_get(struct store *s, struct store_txn *t, const char *jid, size_t len,
		      struct store_account *a)
{
	uint8_t key[KEY_LIMIT + 1];
	struct op o = { .k = key, .acct_out = a };

	o.kl = account_key(s, key, jid, len);
	if (!o.kl)
		return STORE_ERROR;
	return run(s, t, false, op_account_get, &o);
}

int store_account_del(struct store *s, struct store_txn *t, const char *jid, size_t len)
{
	uint8_t key[KEY_LIMIT + 1];
	struct op o = { .tb = STORE_T_ACCOUNTS, .k = key };

	o.kl = account_key(s, key, jid, len);
	if (!o.kl)
		return STORE_ERROR;
	return run(s, t, true, op_del, &o);
}

struct account_walk {
	store_account_fn *fn;
	void *arg;
	int rc;
};

static int account_item(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct account_walk *w = arg;
	const uint8_t *k = key;
	const uint8_t *nul = memchr(k, 0, klen);
	struct store_account a;
	char jid[KEY_LIMIT + 1];
	const char *why;

	if (!nul || klen > KEY_LIMIT) {
		why = "key";
	} else {
		why = account_decode(val, vlen, &a);
	}
	if (why) {
		store_log("account record corrupt (%s)", why);
		w->rc = STORE_ERROR;
		return 1;
	}
	size_t dl = (size_t)(nul - k), ll = klen - dl - 1;
	memcpy(jid, k + dl + 1, ll);
	jid[ll] = '@';
	memcpy(jid + ll + 1, k, dl);
	jid[klen] = 0;
	return w->fn(w->arg, jid, klen, &a);
}

static size_t domain_prefix(const struct store *s, uint8_t key[KEY_LIMIT + 1], const char *domain, bool *bad)
{
	size_t dl = domain ? strlen(domain) : 0;

	*bad = false;
	if (!domain)
		return 0;
	if (dl == 0 || dl + 1 > store_max_key(s)) {
		store_log("domain of %zu bytes refused", dl);
		*bad = true;
		return 0;
	}
	memcpy(key, domain, dl);
	key[dl] = 0;
	return dl + 1;
}

int store_account_list(struct store *s, struct store_txn *t, const char *domain,
		       store_account_fn *fn, void *arg)
{
	uint8_t key[KEY_LIMIT + 1];
	struct account_walk w = { .fn = fn, .arg = arg, .rc = STORE_OK };
	struct op o = { .tb = STORE_T_ACCOUNTS, .k = key, .iter = account_item, .arg = &w };
	bool bad;

	o.kl = domain_prefix(s, key, domain, &bad);
	if (bad)
		return STORE_ERROR;
	int rc = run(s, t, false, op_iter, &o);
	return rc != STORE_OK ? rc : w.rc;
}

int store_account_count(struct store *s, struct store_txn *t, const char *domain, uint64_t *n)
{
	uint8_t key[KEY_LIMIT + 1];
	struct op o = { .tb = STORE_T_ACCOUNTS, .k = key, .n = n };
	bool bad;

	o.kl = domain_prefix(s, key, domain, &bad);
	if (bad)
		return STORE_ERROR;
	return run(s, t, false, op_count, &o);
}
