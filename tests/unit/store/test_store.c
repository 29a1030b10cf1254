/* store/: accounts, generic records, queues, batches, persistence, kill -9
 * durability, concurrent readers, a full map, large values and corrupt
 * records, all against a real LMDB in a mkdtemp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <lmdb.h>

#include "store/store.h"

struct fx {
	char root[64];       /* the mkdtemp directory */
	char dir[96];        /* root/db: the store, created by store_open */
	struct store *st;
	struct store_buf buf;
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->root, "/tmp/stanzad-store-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->dir, sizeof(f->dir), "%s/db", f->root);
	assert_int_equal(store_open(&f->st, f->dir, NULL), STORE_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	store_close(f->st);
	store_buf_free(&f->buf);
	nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void reopen(struct fx *f, const struct store_options *o)
{
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(&f->st, f->dir, o), STORE_OK);
}

/* ---- accounts --------------------------------------------------------- */

static void fill_scram(struct store_scram *c, enum store_hash h, uint8_t salt_len, int seed)
{
	memset(c, 0, sizeof(*c));
	c->hash = (uint8_t)h;
	c->salt_len = salt_len;
	c->key_len = (uint8_t)store_hash_len(h);
	c->iterations = 4096u + (uint32_t)seed;
	for (unsigned i = 0; i < salt_len; i++)
		c->salt[i] = (uint8_t)(seed * 7 + i);
	for (unsigned i = 0; i < c->key_len; i++) {
		c->stored_key[i] = (uint8_t)(seed * 13 + i * 3);
		c->server_key[i] = (uint8_t)(seed * 17 + i * 5 + 1);
	}
}

static void make_account(struct store_account *a, int seed)
{
	memset(a, 0, sizeof(*a));
	a->created = 1700000000 + seed;
	a->nscram = 3;
	fill_scram(&a->scram[0], STORE_SHA1, 16, seed);
	fill_scram(&a->scram[1], STORE_SHA256, 32, seed + 1);
	fill_scram(&a->scram[2], STORE_SHA512, 64, seed + 2);
}

static void assert_account_equal(const struct store_account *x, const struct store_account *y)
{
	assert_int_equal(x->created, y->created);
	assert_int_equal(x->nscram, y->nscram);
	for (unsigned i = 0; i < x->nscram; i++) {
		const struct store_scram *a = &x->scram[i], *b = &y->scram[i];
		assert_int_equal(a->hash, b->hash);
		assert_int_equal(a->iterations, b->iterations);
		assert_int_equal(a->salt_len, b->salt_len);
		assert_int_equal(a->key_len, b->key_len);
		assert_memory_equal(a->salt, b->salt, a->salt_len);
		assert_memory_equal(a->stored_key, b->stored_key, a->key_len);
		assert_memory_equal(a->server_key, b->server_key, a->key_len);
	}
}

#define JID(s) (s), strlen(s)

static void test_account_roundtrip(void **state)
{
	struct fx *f = *state;
	struct store_account a, b;

	make_account(&a, 1);
	assert_int_equal(store_account_put(f->st, NULL, JID("juliet@example.com"), &a, true), STORE_OK);
	assert_int_equal(store_account_get(f->st, NULL, JID("juliet@example.com"), &b), STORE_OK);
	assert_account_equal(&a, &b);
	assert_non_null(store_account_scram(&b, STORE_SHA256));
	assert_int_equal(store_account_scram(&b, STORE_SHA512)->key_len, 64);
	assert_int_equal(store_account_get(f->st, NULL, JID("romeo@example.com"), &b), STORE_NOTFOUND);

	/* One hash only is fine too. */
	a.nscram = 1;
	a.scram[0] = a.scram[2];
	assert_int_equal(store_account_put(f->st, NULL, JID("nurse@example.com"), &a, true), STORE_OK);
	assert_int_equal(store_account_get(f->st, NULL, JID("nurse@example.com"), &b), STORE_OK);
	assert_account_equal(&a, &b);
	assert_null(store_account_scram(&b, STORE_SHA1));
}

static void test_account_replace_and_exists(void **state)
{
	struct fx *f = *state;
	struct store_account a, b, c;

	make_account(&a, 1);
	make_account(&b, 50);
	assert_int_equal(store_account_put(f->st, NULL, JID("juliet@example.com"), &a, true), STORE_OK);
	assert_int_equal(store_account_put(f->st, NULL, JID("juliet@example.com"), &b, true), STORE_EXISTS);
	assert_int_equal(store_account_get(f->st, NULL, JID("juliet@example.com"), &c), STORE_OK);
	assert_account_equal(&a, &c);         /* untouched by the refused put */
	assert_int_equal(store_account_put(f->st, NULL, JID("juliet@example.com"), &b, false), STORE_OK);
	assert_int_equal(store_account_get(f->st, NULL, JID("juliet@example.com"), &c), STORE_OK);
	assert_account_equal(&b, &c);
}

static void test_account_delete(void **state)
{
	struct fx *f = *state;
	struct store_account a;

	make_account(&a, 3);
	assert_int_equal(store_account_put(f->st, NULL, JID("juliet@example.com"), &a, true), STORE_OK);
	assert_int_equal(store_account_del(f->st, NULL, JID("juliet@example.com")), STORE_OK);
	assert_int_equal(store_account_get(f->st, NULL, JID("juliet@example.com"), &a), STORE_NOTFOUND);
	assert_int_equal(store_account_del(f->st, NULL, JID("juliet@example.com")), STORE_NOTFOUND);
	/* Deleted means creatable again. */
	assert_int_equal(store_account_put(f->st, NULL, JID("juliet@example.com"), &a, true), STORE_OK);
}

struct names {
	char s[16][64];
	int n;
	int stop_after;    /* 0: never */
};

static int collect(void *arg, const char *jid, size_t len, const struct store_account *a)
{
	struct names *w = arg;

	assert_int_equal(strlen(jid), len);
	assert_true(w->n < 16);
	snprintf(w->s[w->n++], sizeof(w->s[0]), "%s", jid);
	assert_int_equal(a->nscram, 3);
	return w->stop_after && w->n >= w->stop_after;
}

static void test_account_list_count(void **state)
{
	struct fx *f = *state;
	static const char *const jids[] = {
		"romeo@montague.lit", "juliet@capulet.lit", "nurse@capulet.lit",
		"tybalt@capulet.lit.example", "benvolio@montague.lit", "a@capulet.li",
	};
	struct store_account a;
	struct names w;
	uint64_t n;

	for (size_t i = 0; i < sizeof(jids) / sizeof(jids[0]); i++) {
		make_account(&a, (int)i);
		assert_int_equal(store_account_put(f->st, NULL, JID(jids[i]), &a, true), STORE_OK);
	}
	memset(&w, 0, sizeof(w));
	assert_int_equal(store_account_list(f->st, NULL, "capulet.lit", collect, &w), STORE_OK);
	/* Neither capulet.lit.example nor capulet.li: the domain ends at NUL. */
	assert_int_equal(w.n, 2);
	assert_string_equal(w.s[0], "juliet@capulet.lit");
	assert_string_equal(w.s[1], "nurse@capulet.lit");

	memset(&w, 0, sizeof(w));
	assert_int_equal(store_account_list(f->st, NULL, NULL, collect, &w), STORE_OK);
	assert_int_equal(w.n, 6);
	assert_string_equal(w.s[0], "a@capulet.li");     /* domain order, then local */
	assert_string_equal(w.s[5], "romeo@montague.lit");

	memset(&w, 0, sizeof(w));
	w.stop_after = 2;
	assert_int_equal(store_account_list(f->st, NULL, NULL, collect, &w), STORE_OK);
	assert_int_equal(w.n, 2);

	memset(&w, 0, sizeof(w));
	assert_int_equal(store_account_list(f->st, NULL, "nowhere.lit", collect, &w), STORE_OK);
	assert_int_equal(w.n, 0);

	assert_int_equal(store_account_count(f->st, NULL, NULL, &n), STORE_OK);
	assert_int_equal(n, 6);
	assert_int_equal(store_account_count(f->st, NULL, "montague.lit", &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(store_account_count(f->st, NULL, "capulet.lit.example", &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(store_account_del(f->st, NULL, JID("romeo@montague.lit")), STORE_OK);
	assert_int_equal(store_account_count(f->st, NULL, "montague.lit", &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(store_account_count(f->st, NULL, NULL, &n), STORE_OK);
	assert_int_equal(n, 5);
}

static void test_account_bad_input(void **state)
{
	struct fx *f = *state;
	struct store_account a;
	char big[600];

	make_account(&a, 1);
	assert_int_equal(store_account_put(f->st, NULL, JID("example.com"), &a, true), STORE_ERROR);
	assert_int_equal(store_account_put(f->st, NULL, JID("@example.com"), &a, true), STORE_ERROR);
	assert_int_equal(store_account_put(f->st, NULL, JID("juliet@"), &a, true), STORE_ERROR);
	assert_int_equal(store_account_put(f->st, NULL, JID("a@b@example.com"), &a, true), STORE_ERROR);
	assert_int_equal(store_account_put(f->st, NULL, "a\0b@example.com", 15, &a, true), STORE_ERROR);
	memset(big, 'x', sizeof(big));
	big[10] = '@';
	assert_int_equal(store_account_put(f->st, NULL, big, sizeof(big), &a, true), STORE_ERROR);
	assert_int_equal(store_account_get(f->st, NULL, JID("nobody"), &a), STORE_ERROR);

	a.scram[0].salt_len = 15;
	assert_int_equal(store_account_put(f->st, NULL, JID("j@example.com"), &a, true), STORE_ERROR);
	make_account(&a, 1);
	a.scram[1].key_len = 20;                      /* SHA-256 with a SHA-1-sized key */
	assert_int_equal(store_account_put(f->st, NULL, JID("j@example.com"), &a, true), STORE_ERROR);
	make_account(&a, 1);
	a.scram[2].hash = STORE_SHA1;                 /* repeated hash */
	a.scram[2].key_len = 20;
	assert_int_equal(store_account_put(f->st, NULL, JID("j@example.com"), &a, true), STORE_ERROR);
	make_account(&a, 1);
	a.nscram = 0;
	assert_int_equal(store_account_put(f->st, NULL, JID("j@example.com"), &a, true), STORE_ERROR);
	make_account(&a, 1);
	a.scram[0].iterations = 0;
	assert_int_equal(store_account_put(f->st, NULL, JID("j@example.com"), &a, true), STORE_ERROR);
	assert_int_equal(store_account_list(f->st, NULL, "", collect, NULL), STORE_ERROR);
}

/* Write raw bytes under an account's key with liblmdb itself, as a disk
 * corruption or a newer stanzad would leave them. The store is closed. */
static void raw_account(const char *dir, const char *domain, const char *local, const void *v, size_t vl)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	char k[128];
	size_t dl = strlen(domain), ll = strlen(local);

	memcpy(k, domain, dl);
	k[dl] = 0;
	memcpy(k + dl + 1, local, ll);
	MDB_val key = { dl + 1 + ll, k }, val = { vl, (void *)(uintptr_t)v };
	assert_int_equal(mdb_env_create(&env), 0);
	assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
	assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
	assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
	assert_int_equal(mdb_dbi_open(txn, "accounts", 0, &dbi), 0);
	assert_int_equal(mdb_put(txn, dbi, &key, &val, 0), 0);
	assert_int_equal(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

static void test_account_corrupt(void **state)
{
	struct fx *f = *state;
	struct store_account a;
	struct names w = { .n = 0 };
	uint8_t good[1024];
	size_t gl;

	/* A good record, read back raw to make corrupt variants of it. */
	make_account(&a, 9);
	assert_int_equal(store_account_put(f->st, NULL, JID("good@example.com"), &a, true), STORE_OK);
	{
		MDB_env *env;
		MDB_txn *txn;
		MDB_dbi dbi;
		char k[] = "example.com\0good";
		MDB_val key = { sizeof(k) - 1, k }, val;

		store_close(f->st);
		f->st = NULL;
		assert_int_equal(mdb_env_create(&env), 0);
		assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
		assert_int_equal(mdb_env_open(env, f->dir, MDB_RDONLY, 0600), 0);
		assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
		assert_int_equal(mdb_dbi_open(txn, "accounts", 0, &dbi), 0);
		assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
		assert_true(val.mv_size < sizeof(good));
		gl = val.mv_size;
		memcpy(good, val.mv_data, gl);
		mdb_txn_abort(txn);
		mdb_env_close(env);
	}
	/* 10 + 3 x (7 + salt + 2 key): 10 + (7+16+40) + (7+32+64) + (7+64+128) */
	assert_int_equal(gl, 375);
	assert_int_equal(good[0], 1);

	good[0] = 2;
	raw_account(f->dir, "example.com", "v2", good, gl);
	good[0] = 1;
	raw_account(f->dir, "example.com", "short", good, gl - 1);
	good[gl] = 0;
	raw_account(f->dir, "example.com", "long", good, gl + 1);
	raw_account(f->dir, "example.com", "empty", good, 0);
	good[10 + 5] = 200;                     /* salt length past the end */
	raw_account(f->dir, "example.com", "salt", good, gl);

	reopen(f, NULL);
	assert_int_equal(store_account_get(f->st, NULL, JID("good@example.com"), &a), STORE_OK);
	assert_int_equal(store_account_get(f->st, NULL, JID("v2@example.com"), &a), STORE_ERROR);
	assert_int_equal(store_account_get(f->st, NULL, JID("short@example.com"), &a), STORE_ERROR);
	assert_int_equal(store_account_get(f->st, NULL, JID("long@example.com"), &a), STORE_ERROR);
	assert_int_equal(store_account_get(f->st, NULL, JID("empty@example.com"), &a), STORE_ERROR);
	assert_int_equal(store_account_get(f->st, NULL, JID("salt@example.com"), &a), STORE_ERROR);
	/* Listing stops at the first corrupt one ("empty" sorts first). */
	assert_int_equal(store_account_list(f->st, NULL, "example.com", collect, &w), STORE_ERROR);
	assert_int_equal(w.n, 0);
}

/* ---- generic records -------------------------------------------------- */

struct seen {
	char k[32][64];
	char v[32][64];
	int n;
	int stop_after;
};

static int record(void *arg, const void *key, size_t klen, const void *val, size_t vlen)
{
	struct seen *w = arg;

	assert_true(w->n < 32 && klen < 64 && vlen < 64);
	for (size_t i = 0; i < klen; i++)   /* NUL shown as '|' */
		w->k[w->n][i] = ((const char *)key)[i] ? ((const char *)key)[i] : '|';
	w->k[w->n][klen] = 0;
	memcpy(w->v[w->n], val, vlen);
	w->v[w->n][vlen] = 0;
	w->n++;
	return w->stop_after && w->n >= w->stop_after;
}

/* "u\0c" keys as the roster uses them. */
#define K2(a, b) a "\0" b, sizeof(a "\0" b) - 1

static void test_records(void **state)
{
	struct fx *f = *state;
	struct store_buf *b = &f->buf;
	struct seen w;
	uint64_t n;

	assert_int_equal(store_put(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit", "romeo@m.lit"), "both", 4, 0), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit", "nurse@c.lit"), "to", 2, 0), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit2", "x@y"), "none", 4, 0), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_ROSTER, K2("a@c.lit", "x@y"), "from", 4, 0), STORE_OK);
	/* Same key, another table. */
	assert_int_equal(store_put(f->st, NULL, STORE_T_PENDING, K2("j@c.lit", "romeo@m.lit"), "", 0, 0), STORE_OK);

	assert_int_equal(store_get(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit", "romeo@m.lit"), b), STORE_OK);
	assert_int_equal(b->len, 4);
	assert_memory_equal(b->ptr, "both", 4);
	assert_int_equal(store_get(f->st, NULL, STORE_T_PENDING, K2("j@c.lit", "romeo@m.lit"), b), STORE_OK);
	assert_int_equal(b->len, 0);
	assert_int_equal(store_get(f->st, NULL, STORE_T_VCARD, K2("j@c.lit", "romeo@m.lit"), b), STORE_NOTFOUND);

	/* Replace; then "must not exist". */
	assert_int_equal(store_put(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit", "romeo@m.lit"), "from", 4, 0), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit", "romeo@m.lit"), "xx", 2, STORE_PUT_NEW),
			 STORE_EXISTS);
	assert_int_equal(store_get(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit", "romeo@m.lit"), b), STORE_OK);
	assert_memory_equal(b->ptr, "from", 4);

	/* Prefix iteration: "j@c.lit\0" sees neither j@c.lit2 nor a@c.lit. */
	memset(&w, 0, sizeof(w));
	assert_int_equal(store_iter(f->st, NULL, STORE_T_ROSTER, "j@c.lit", 8, record, &w), STORE_OK);
	assert_int_equal(w.n, 2);
	assert_string_equal(w.k[0], "j@c.lit|nurse@c.lit");
	assert_string_equal(w.v[0], "to");
	assert_string_equal(w.k[1], "j@c.lit|romeo@m.lit");
	assert_string_equal(w.v[1], "from");
	memset(&w, 0, sizeof(w));
	assert_int_equal(store_iter(f->st, NULL, STORE_T_ROSTER, "j@c.lit", 7, record, &w), STORE_OK);
	assert_int_equal(w.n, 3);                     /* without the NUL, j@c.lit2 too */
	memset(&w, 0, sizeof(w));
	assert_int_equal(store_iter(f->st, NULL, STORE_T_ROSTER, NULL, 0, record, &w), STORE_OK);
	assert_int_equal(w.n, 4);
	assert_string_equal(w.k[0], "a@c.lit|x@y");
	memset(&w, 0, sizeof(w));
	w.stop_after = 1;
	assert_int_equal(store_iter(f->st, NULL, STORE_T_ROSTER, NULL, 0, record, &w), STORE_OK);
	assert_int_equal(w.n, 1);
	memset(&w, 0, sizeof(w));
	assert_int_equal(store_iter(f->st, NULL, STORE_T_ROSTER, "zzz", 3, record, &w), STORE_OK);
	assert_int_equal(w.n, 0);

	assert_int_equal(store_count(f->st, NULL, STORE_T_ROSTER, "j@c.lit", 8, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(store_count(f->st, NULL, STORE_T_ROSTER, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 4);

	/* Delete one, then by prefix. */
	assert_int_equal(store_del(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit", "nurse@c.lit")), STORE_OK);
	assert_int_equal(store_del(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit", "nurse@c.lit")), STORE_NOTFOUND);
	assert_int_equal(store_del_prefix(f->st, NULL, STORE_T_ROSTER, "j@c.lit", 8, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(store_get(f->st, NULL, STORE_T_ROSTER, K2("j@c.lit2", "x@y"), b), STORE_OK);
	assert_int_equal(store_count(f->st, NULL, STORE_T_ROSTER, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(store_count(f->st, NULL, STORE_T_PENDING, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 1);                       /* other tables untouched */
	assert_int_equal(store_del_prefix(f->st, NULL, STORE_T_ROSTER, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(store_count(f->st, NULL, STORE_T_ROSTER, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 0);
}

static void test_prefix_delete_many(void **state)
{
	struct fx *f = *state;
	char key[64], val[200];
	uint64_t n;

	/* Enough records to span many pages, so deletes cross page edges. */
	memset(val, 'v', sizeof(val));
	struct store_txn t;
	assert_int_equal(store_write_begin(f->st, &t), STORE_OK);
	for (int i = 0; i < 3000; i++) {
		int kl = snprintf(key, sizeof(key), "%c@d%c%05d", i % 3 == 0 ? 'a' : 'b', 0, i);
		assert_int_equal(store_put(f->st, &t, STORE_T_PRIVATE, key, (size_t)kl, val, sizeof(val), 0), STORE_OK);
	}
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_del_prefix(f->st, NULL, STORE_T_PRIVATE, "b@d", 4, &n), STORE_OK);
	assert_int_equal(n, 2000);
	assert_int_equal(store_count(f->st, NULL, STORE_T_PRIVATE, "a@d", 4, &n), STORE_OK);
	assert_int_equal(n, 1000);
	assert_int_equal(store_count(f->st, NULL, STORE_T_PRIVATE, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, 1000);
}

static void test_bad_keys(void **state)
{
	struct fx *f = *state;
	char big[600];
	uint64_t seq;

	memset(big, 'k', sizeof(big));
	assert_int_equal(store_max_key(f->st), 511);
	assert_int_equal(store_put(f->st, NULL, STORE_T_VCARD, big, 511, "v", 1, 0), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_VCARD, big, 512, "v", 1, 0), STORE_ERROR);
	assert_int_equal(store_put(f->st, NULL, STORE_T_VCARD, big, 0, "v", 1, 0), STORE_ERROR);
	assert_int_equal(store_get(f->st, NULL, STORE_T_VCARD, big, 512, &f->buf), STORE_ERROR);
	assert_int_equal(store_put(f->st, NULL, STORE_T_ACCOUNTS, "k", 1, "v", 1, 0), STORE_ERROR);
	assert_int_equal(store_put(f->st, NULL, STORE_T_META, "k", 1, "v", 1, 0), STORE_ERROR);
	assert_int_equal(store_put(f->st, NULL, (enum store_table)99, "k", 1, "v", 1, 0), STORE_ERROR);
	assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, "a\0b", 3, "v", 1, &seq), STORE_ERROR);
	assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, "", 0, "v", 1, &seq), STORE_ERROR);
	/* name + NUL + 8-byte sequence <= 511 */
	assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, big, 503, "v", 1, &seq), STORE_ERROR);
	assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, big, 502, "v", 1, &seq), STORE_OK);
}

/* ---- queues ----------------------------------------------------------- */

struct items {
	uint64_t seq[32];
	char v[32][16];
	int n;
};

static int item(void *arg, uint64_t seq, const void *val, size_t vlen)
{
	struct items *w = arg;

	assert_true(w->n < 32 && vlen < 16);
	w->seq[w->n] = seq;
	memcpy(w->v[w->n], val, vlen);
	w->v[w->n][vlen] = 0;
	w->n++;
	return 0;
}

static void test_queue(void **state)
{
	struct fx *f = *state;
	struct store_buf *b = &f->buf;
	struct items w;
	uint64_t s[8], seq, n;
	char v[16];

	for (int i = 0; i < 6; i++) {
		/* Interleave two queues whose names share a prefix. */
		const char *q = i % 2 ? "juliet@c.lit" : "juliet@c.li";
		snprintf(v, sizeof(v), "m%d", i);
		assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, q, strlen(q), v, strlen(v), &s[i]),
				 STORE_OK);
		if (i)
			assert_true(s[i] > s[i - 1]);
	}
	memset(&w, 0, sizeof(w));
	assert_int_equal(store_queue_iter(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), item, &w), STORE_OK);
	assert_int_equal(w.n, 3);
	assert_string_equal(w.v[0], "m1");
	assert_string_equal(w.v[1], "m3");
	assert_string_equal(w.v[2], "m5");
	assert_int_equal(w.seq[0], s[1]);
	assert_int_equal(w.seq[2], s[5]);
	assert_int_equal(store_queue_count(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), &n), STORE_OK);
	assert_int_equal(n, 3);
	assert_int_equal(store_queue_count(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.li"), &n), STORE_OK);
	assert_int_equal(n, 3);
	assert_int_equal(store_queue_count(f->st, NULL, STORE_T_OFFLINE, JID("nobody@c.lit"), &n), STORE_OK);
	assert_int_equal(n, 0);

	/* Pop in order; delete one from the middle (XEP-0013 style). */
	assert_int_equal(store_queue_pop(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), &seq, b), STORE_OK);
	assert_int_equal(seq, s[1]);
	assert_int_equal(b->len, 2);
	assert_memory_equal(b->ptr, "m1", 2);
	assert_int_equal(store_queue_del(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), s[5]), STORE_OK);
	assert_int_equal(store_queue_del(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), s[5]), STORE_NOTFOUND);
	assert_int_equal(store_queue_pop(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), &seq, b), STORE_OK);
	assert_int_equal(seq, s[3]);
	assert_memory_equal(b->ptr, "m3", 2);
	assert_int_equal(store_queue_pop(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), &seq, b), STORE_NOTFOUND);

	/* Numbers are never reused, even after the queue drained. */
	assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), "m6", 2, &seq), STORE_OK);
	assert_true(seq > s[5]);

	assert_int_equal(store_queue_clear(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.li"), &n), STORE_OK);
	assert_int_equal(n, 3);
	assert_int_equal(store_queue_count(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.li"), &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_queue_count(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), &n), STORE_OK);
	assert_int_equal(n, 1);

	/* The counter survives a reopen. */
	reopen(f, NULL);
	uint64_t seq2;
	assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, JID("juliet@c.lit"), "m7", 2, &seq2), STORE_OK);
	assert_int_equal(seq2, seq + 1);
}

/* ---- batches ---------------------------------------------------------- */

static void test_batch_commit_abort(void **state)
{
	struct fx *f = *state;
	struct store_buf *b = &f->buf;
	struct store_txn t, r;
	struct store_account a;
	uint64_t n, seq;

	/* Abort: nothing of the batch is visible, before or after. */
	make_account(&a, 4);
	assert_int_equal(store_write_begin(f->st, &t), STORE_OK);
	assert_int_equal(store_put(f->st, &t, STORE_T_ROSTER, K2("j@c", "r@m"), "to", 2, 0), STORE_OK);
	assert_int_equal(store_put(f->st, &t, STORE_T_PENDING, K2("j@c", "r@m"), "", 0, 0), STORE_OK);
	assert_int_equal(store_queue_append(f->st, &t, STORE_T_OFFLINE, JID("j@c"), "hi", 2, &seq), STORE_OK);
	assert_int_equal(store_account_put(f->st, &t, JID("j@c"), &a, true), STORE_OK);
	/* The batch reads its own writes; others do not. */
	assert_int_equal(store_get(f->st, &t, STORE_T_ROSTER, K2("j@c", "r@m"), b), STORE_OK);
	assert_int_equal(store_get(f->st, NULL, STORE_T_ROSTER, K2("j@c", "r@m"), b), STORE_NOTFOUND);
	/* A write without the batch would wait for the batch's own lock. */
	assert_int_equal(store_put(f->st, NULL, STORE_T_VCARD, "j@c", 3, "v", 1, 0), STORE_ERROR);
	assert_int_equal(store_write_begin(f->st, &r), STORE_ERROR);
	/* EXISTS and NOTFOUND do not spoil a batch. */
	assert_int_equal(store_account_put(f->st, &t, JID("j@c"), &a, true), STORE_EXISTS);
	assert_int_equal(store_del(f->st, &t, STORE_T_VCARD, "j@c", 3), STORE_NOTFOUND);
	store_abort(&t);
	assert_int_equal(store_get(f->st, NULL, STORE_T_ROSTER, K2("j@c", "r@m"), b), STORE_NOTFOUND);
	assert_int_equal(store_get(f->st, NULL, STORE_T_PENDING, K2("j@c", "r@m"), b), STORE_NOTFOUND);
	assert_int_equal(store_queue_count(f->st, NULL, STORE_T_OFFLINE, JID("j@c"), &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(store_account_get(f->st, NULL, JID("j@c"), &a), STORE_NOTFOUND);

	/* Commit: all of it, at once. A snapshot taken before keeps its view. */
	assert_int_equal(store_read_begin(f->st, &r), STORE_OK);
	assert_int_equal(store_write_begin(f->st, &t), STORE_OK);
	assert_int_equal(store_put(f->st, &t, STORE_T_ROSTER, K2("j@c", "r@m"), "both", 4, 0), STORE_OK);
	assert_int_equal(store_put(f->st, &t, STORE_T_PENDING, K2("j@c", "r@m"), "", 0, 0), STORE_OK);
	/* A snapshot cannot carry a write. */
	assert_int_equal(store_put(f->st, &r, STORE_T_VCARD, "j@c", 3, "v", 1, 0), STORE_ERROR);
	assert_int_equal(store_commit(&t), STORE_OK);
	assert_int_equal(store_get(f->st, &r, STORE_T_ROSTER, K2("j@c", "r@m"), b), STORE_NOTFOUND);
	assert_int_equal(store_commit(&r), STORE_OK);
	assert_int_equal(store_get(f->st, NULL, STORE_T_ROSTER, K2("j@c", "r@m"), b), STORE_OK);
	assert_memory_equal(b->ptr, "both", 4);
	assert_int_equal(store_get(f->st, NULL, STORE_T_PENDING, K2("j@c", "r@m"), b), STORE_OK);
	/* Single writes work again once the batch is over. */
	assert_int_equal(store_put(f->st, NULL, STORE_T_VCARD, "j@c", 3, "v", 1, 0), STORE_OK);
}

/* ---- persistence ------------------------------------------------------ */

static void test_reopen(void **state)
{
	struct fx *f = *state;
	struct store_account a, b;
	uint64_t n;

	make_account(&a, 5);
	assert_int_equal(store_account_put(f->st, NULL, JID("juliet@example.com"), &a, true), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_LAST, "juliet@example.com", 18, "1700000000", 10, 0), STORE_OK);
	assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, JID("juliet@example.com"), "<m/>", 4, NULL),
			 STORE_OK);
	reopen(f, NULL);
	assert_int_equal(store_account_get(f->st, NULL, JID("juliet@example.com"), &b), STORE_OK);
	assert_account_equal(&a, &b);
	assert_int_equal(store_get(f->st, NULL, STORE_T_LAST, "juliet@example.com", 18, &f->buf), STORE_OK);
	assert_memory_equal(f->buf.ptr, "1700000000", 10);
	assert_int_equal(store_queue_count(f->st, NULL, STORE_T_OFFLINE, JID("juliet@example.com"), &n), STORE_OK);
	assert_int_equal(n, 1);

	/* A second open of the same directory in another process (stanzactl)
	 * sees the same data while this one keeps it open. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *st;
		struct store_account c;
		int ok = store_open(&st, f->dir, NULL) == STORE_OK
			 && store_account_get(st, NULL, JID("juliet@example.com"), &c) == STORE_OK
			 && store_account_put(st, NULL, JID("romeo@example.com"), &c, true) == STORE_OK;
		_exit(ok ? 0 : 1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(store_account_get(f->st, NULL, JID("romeo@example.com"), &b), STORE_OK);
}

#define KILL_N 50

static void test_kill9(void **state)
{
	struct fx *f = *state;
	char dir[128];
	int status;

	snprintf(dir, sizeof(dir), "%s/kill", f->root);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The child: single commits, then one batch, then die at once. */
		struct store *st;
		struct store_txn t;
		char key[32];

		if (store_open(&st, dir, NULL) != STORE_OK)
			_exit(1);
		for (int i = 0; i < KILL_N; i++) {
			int kl = snprintf(key, sizeof(key), "u%d@example.com", i);
			if (store_put(st, NULL, STORE_T_LAST, key, (size_t)kl, &i, sizeof(i), 0) != STORE_OK)
				_exit(1);
		}
		if (store_write_begin(st, &t) != STORE_OK)
			_exit(1);
		for (int i = 0; i < 10; i++)
			if (store_queue_append(st, &t, STORE_T_OFFLINE, "b@example.com", 13, &i, sizeof(i), NULL) != STORE_OK)
				_exit(1);
		if (store_commit(&t) != STORE_OK)
			_exit(1);
		raise(SIGKILL);
		_exit(2);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);

	struct store *st;
	struct store_buf b = { 0 };
	uint64_t n;
	char key[32];

	assert_int_equal(store_open(&st, dir, NULL), STORE_OK);
	for (int i = 0; i < KILL_N; i++) {
		int kl = snprintf(key, sizeof(key), "u%d@example.com", i);
		assert_int_equal(store_get(st, NULL, STORE_T_LAST, key, (size_t)kl, &b), STORE_OK);
		assert_int_equal(b.len, sizeof(int));
		assert_memory_equal(b.ptr, &i, sizeof(int));
	}
	assert_int_equal(store_queue_count(st, NULL, STORE_T_OFFLINE, "b@example.com", 13, &n), STORE_OK);
	assert_int_equal(n, 10);
	store_buf_free(&b);
	store_close(st);
}

/* ---- concurrent readers ----------------------------------------------- */

#define RD_LOOPS 3000
#define WR_BATCHES 300

struct reader {
	struct store *st;
	int errors;
	int reads;
};

/* Each batch writes record i and then sets "n" to i: a snapshot that sees
 * n = i must see records 1..i. */
static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct store_buf b = { 0 };

	for (int i = 0; i < RD_LOOPS; i++) {
		struct store_txn t;
		uint32_t n = 0;
		char key[16];

		if (store_read_begin(r->st, &t) != STORE_OK) {
			r->errors++;
			continue;
		}
		int rc = store_get(r->st, &t, STORE_T_LAST, "n", 1, &b);
		if (rc == STORE_OK && b.len == 4)
			memcpy(&n, b.ptr, 4);
		else if (rc != STORE_NOTFOUND)
			r->errors++;
		if (n) {
			int kl = snprintf(key, sizeof(key), "r%u", n);
			if (store_get(r->st, &t, STORE_T_LAST, key, (size_t)kl, &b) != STORE_OK)
				r->errors++;
		}
		store_abort(&t);
		/* And a call with a transaction of its own. */
		uint64_t c;
		if (store_count(r->st, NULL, STORE_T_LAST, "r", 1, &c) != STORE_OK)
			r->errors++;
		r->reads++;
	}
	store_buf_free(&b);
	return NULL;
}

static void test_concurrent_readers(void **state)
{
	struct fx *f = *state;
	struct store_options o;
	struct reader rd[2];
	pthread_t th[2];

	/* This test is about concurrency, not the disk: skip the fsyncs. */
	store_options_default(&o);
	o.sync = STORE_SYNC_NONE;
	reopen(f, &o);
	for (int i = 0; i < 2; i++) {
		rd[i] = (struct reader){ .st = f->st };
		assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rd[i]), 0);
	}
	for (uint32_t i = 1; i <= WR_BATCHES; i++) {
		struct store_txn t;
		char key[16];
		int kl = snprintf(key, sizeof(key), "r%u", i);

		assert_int_equal(store_write_begin(f->st, &t), STORE_OK);
		assert_int_equal(store_put(f->st, &t, STORE_T_LAST, key, (size_t)kl, &i, 4, 0), STORE_OK);
		assert_int_equal(store_put(f->st, &t, STORE_T_LAST, "n", 1, &i, 4, 0), STORE_OK);
		assert_int_equal(store_commit(&t), STORE_OK);
	}
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(rd[i].errors, 0);
		assert_int_equal(rd[i].reads, RD_LOOPS);
	}
}

/* ---- a full map ------------------------------------------------------- */

/* Fill a 128 KiB map with 1 KiB values, one commit each; the map may
 * grow to max. Returns how many went in before STORE_FULL. */
static int fill(struct fx *f, const char *name, size_t max)
{
	struct store_options o;
	char val[1024], key[16];
	uint64_t n;
	int i, rc;

	store_close(f->st);
	f->st = NULL;
	snprintf(f->dir, sizeof(f->dir), "%s/%s", f->root, name);
	store_options_default(&o);
	o.map_size = 128 * 1024;
	o.map_size_max = max;
	o.sync = STORE_SYNC_NONE;
	assert_int_equal(store_open(&f->st, f->dir, &o), STORE_OK);
	memset(val, 'x', sizeof(val));
	for (i = 0;; i++) {
		int kl = snprintf(key, sizeof(key), "k%05d", i);
		rc = store_put(f->st, NULL, STORE_T_VCARD, key, (size_t)kl, val, sizeof(val), 0);
		if (rc != STORE_OK)
			break;
		assert_true(i < 1000);
	}
	assert_int_equal(rc, STORE_FULL);
	/* Whatever went in before is intact. */
	assert_int_equal(store_count(f->st, NULL, STORE_T_VCARD, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, (uint64_t)i);
	return i;
}

static void test_map_full(void **state)
{
	struct fx *f = *state;
	struct store_options o;
	struct store_txn t;
	char val[1024], key[16];
	int i, rc;
	uint64_t n;

	/* map_size_max == map_size: no growth. 0: double once. */
	int fixed = fill(f, "fixed", 128 * 1024);
	int grown = fill(f, "grown", 0);
	assert_true(fixed > 10);
	assert_true(grown > fixed + fixed / 2);

	/* A batch that does not fit dies whole; the store goes on. */
	memset(val, 'x', sizeof(val));
	assert_int_equal(store_write_begin(f->st, &t), STORE_OK);
	assert_int_equal(store_put(f->st, &t, STORE_T_ROSTER, "a", 1, "b", 1, 0), STORE_OK);
	for (i = 0; i < 100; i++) {
		int kl = snprintf(key, sizeof(key), "b%05d", i);
		rc = store_put(f->st, &t, STORE_T_VCARD, key, (size_t)kl, val, sizeof(val), 0);
		if (rc != STORE_OK)
			break;
	}
	assert_int_equal(rc, STORE_FULL);
	assert_int_equal(store_put(f->st, &t, STORE_T_ROSTER, "c", 1, "d", 1, 0), STORE_FULL);
	assert_int_equal(store_commit(&t), STORE_FULL);
	assert_int_equal(store_get(f->st, NULL, STORE_T_ROSTER, "a", 1, &f->buf), STORE_NOTFOUND);

	/* Reads go on. Even a delete needs fresh pages (copy-on-write), so at
	 * map_size_max the operator's way out is a larger map: reopen with
	 * one, then delete and write again; everything old is intact. */
	assert_int_equal(store_get(f->st, NULL, STORE_T_VCARD, "k00000", 6, &f->buf), STORE_OK);
	store_options_default(&o);
	o.map_size = 1024 * 1024;
	reopen(f, &o);
	assert_int_equal(store_count(f->st, NULL, STORE_T_VCARD, NULL, 0, &n), STORE_OK);
	assert_int_equal(n, (uint64_t)grown);
	assert_int_equal(store_del_prefix(f->st, NULL, STORE_T_VCARD, "k0001", 5, &n), STORE_OK);
	assert_true(n > 0);
	assert_int_equal(store_put(f->st, NULL, STORE_T_ROSTER, "a", 1, "b", 1, 0), STORE_OK);
	assert_int_equal(store_get(f->st, NULL, STORE_T_VCARD, "k00000", 6, &f->buf), STORE_OK);
	assert_int_equal(f->buf.len, sizeof(val));
}

/* The writer holding a snapshot cannot wait for itself to let go of it:
 * the map is not grown then (no deadlock), and is once the snapshot ends. */
static void test_map_full_snapshot(void **state)
{
	struct fx *f = *state;
	struct store_options o;
	struct store_txn r;
	char val[1024], key[16];
	int i, rc;

	store_close(f->st);
	f->st = NULL;
	store_options_default(&o);
	o.map_size = 128 * 1024;
	o.sync = STORE_SYNC_NONE;
	assert_int_equal(store_open(&f->st, f->dir, &o), STORE_OK);
	memset(val, 'x', sizeof(val));
	assert_int_equal(store_read_begin(f->st, &r), STORE_OK);
	for (i = 0;; i++) {
		int kl = snprintf(key, sizeof(key), "k%05d", i);
		rc = store_put(f->st, NULL, STORE_T_VCARD, key, (size_t)kl, val, sizeof(val), 0);
		if (rc != STORE_OK)
			break;
		assert_true(i < 1000);
	}
	assert_int_equal(rc, STORE_FULL);
	assert_int_equal(store_get(f->st, &r, STORE_T_VCARD, "k00000", 6, &f->buf), STORE_NOTFOUND);
	store_abort(&r);
	assert_int_equal(store_put(f->st, NULL, STORE_T_VCARD, key, strlen(key), val, sizeof(val), 0), STORE_OK);
}

/* ---- large values ----------------------------------------------------- */

static void test_large_values(void **state)
{
	struct fx *f = *state;
	static const size_t sizes[] = { 65535, 65536, 65537, 64 * 1024 - 100, 200 * 1024 };
	uint8_t *v = malloc(200 * 1024 + 16);   /* value i starts at v + i */
	char key[16];

	assert_non_null(v);
	for (size_t i = 0; i < 200 * 1024 + 16; i++)
		v[i] = (uint8_t)(i * 31 + (i >> 8));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int kl = snprintf(key, sizeof(key), "u%zu@d", i);
		assert_int_equal(store_put(f->st, NULL, STORE_T_VCARD, key, (size_t)kl, v + i, sizes[i], 0), STORE_OK);
		assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, key, (size_t)kl, v, sizes[i], NULL),
				 STORE_OK);
	}
	reopen(f, NULL);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int kl = snprintf(key, sizeof(key), "u%zu@d", i);
		assert_int_equal(store_get(f->st, NULL, STORE_T_VCARD, key, (size_t)kl, &f->buf), STORE_OK);
		assert_int_equal(f->buf.len, sizes[i]);
		assert_memory_equal(f->buf.ptr, v + i, sizes[i]);
		assert_int_equal(store_queue_pop(f->st, NULL, STORE_T_OFFLINE, key, (size_t)kl, NULL, &f->buf), STORE_OK);
		assert_int_equal(f->buf.len, sizes[i]);
		assert_memory_equal(f->buf.ptr, v, sizes[i]);
	}
	free(v);
}

static void test_open_errors(void **state)
{
	struct fx *f = *state;
	struct store *st;
	struct store_options o;
	char path[128];

	/* A file where the directory should be; a missing parent. */
	snprintf(path, sizeof(path), "%s/file", f->root);
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(store_open(&st, path, NULL), STORE_ERROR);
	assert_null(st);
	snprintf(path, sizeof(path), "%s/no/such", f->root);
	assert_int_equal(store_open(&st, path, NULL), STORE_ERROR);
	store_options_default(&o);
	o.backend = "berkeley";
	snprintf(path, sizeof(path), "%s/other", f->root);
	assert_int_equal(store_open(&st, path, &o), STORE_ERROR);

	/* The directory is private. */
	struct stat sb;
	assert_int_equal(stat(f->dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_string_equal(store_rc_str(STORE_FULL), "full");
	assert_string_equal(store_table_name(STORE_T_OFFLINE), "offline");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_account_roundtrip),
		T(test_account_replace_and_exists),
		T(test_account_delete),
		T(test_account_list_count),
		T(test_account_bad_input),
		T(test_account_corrupt),
		T(test_records),
		T(test_prefix_delete_many),
		T(test_bad_keys),
		T(test_queue),
		T(test_batch_commit_abort),
		T(test_reopen),
		T(test_kill9),
		T(test_concurrent_readers),
		T(test_map_full),
		T(test_map_full_snapshot),
		T(test_large_values),
		T(test_open_errors),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
