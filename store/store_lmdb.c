/* The LMDB backend: one directory holding data.mdb and lock.mdb, one
 * named database per table, opened (created) once at start.
 *
 * Environment flags and why:
 *   MDB_NOTLS   read transactions belong to no thread: a worker may hold
 *               one, and the reader slot is claimed per transaction, not
 *               per thread for the life of the thread.
 *   no MDB_WRITEMAP   the map stays read-only, so a stray pointer write
 *               elsewhere in the process cannot corrupt the database.
 *   sync flags  none by default: commit fsyncs the data then the meta page.
 *
 * Growing the map. mdb_env_set_mapsize remaps the file, which is only safe
 * when no transaction of this process is using the map. maplock guards
 * that: every transaction holds it shared from begin to end; growing takes
 * it exclusive, after the writer's own transaction has ended. It is
 * writer-preferring so a stream of readers cannot starve a resize, which
 * would deadlock a thread taking it shared twice: so a thread takes it
 * once however many transactions it nests (a snapshot and the batch), and
 * a thread that holds it does not grow the map (STORE_FULL stands). Outside
 * a resize the shared lock is one uncontended atomic, so readers still
 * never wait on the writer. The same exclusive section adopts a size
 * another process (stanzactl) grew the map to (MDB_MAP_RESIZED at begin).
 */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"

struct lmdb_store {
	struct store s;             /* first: struct store * converts both ways */
	MDB_env *env;
	MDB_dbi dbi[STORE_T_COUNT];
	pthread_rwlock_t maplock;
	size_t map_max;
	char dir[256];              /* for logs */
};

/* The store whose maplock this thread holds shared, and how many of its
 * transactions are open. A second store's lock is taken untracked. */
static _Thread_local struct lmdb_store *held_store;
static _Thread_local unsigned held_depth;

static void map_hold(struct lmdb_store *l)
{
	if (held_depth && held_store == l) {
		held_depth++;
		return;
	}
	pthread_rwlock_rdlock(&l->maplock);
	if (!held_depth)
		held_store = l;
	if (held_store == l)
		held_depth++;
}

static void map_release(struct lmdb_store *l)
{
	if (held_depth && held_store == l) {
		if (--held_depth)
			return;
	}
	pthread_rwlock_unlock(&l->maplock);
}

/* May this thread take maplock exclusive without waiting for itself? */
static bool map_free_here(const struct lmdb_store *l)
{
	return !(held_depth && held_store == l);
}

static struct lmdb_store *to_lmdb(struct store *s)
{
	return (struct lmdb_store *)s;
}

static int fail(const struct lmdb_store *l, const char *what, int rc)
{
	store_log("%s: %s: %s", l->dir, what, mdb_strerror(rc));
	return STORE_ERROR;
}

/* With maplock held exclusive. size 0: adopt the size recorded by another
 * process. */
static int set_mapsize(struct lmdb_store *l, size_t size)
{
	int rc = mdb_env_set_mapsize(l->env, size);
	return rc ? fail(l, "mdb_env_set_mapsize", rc) : STORE_OK;
}

static bool adopt_size(struct lmdb_store *l)
{
	if (!map_free_here(l))
		return false;
	pthread_rwlock_wrlock(&l->maplock);
	set_mapsize(l, 0);
	pthread_rwlock_unlock(&l->maplock);
	return true;
}

/* After a transaction hit MDB_MAP_FULL and ended: double the map, up to
 * map_max. */
static void grow(struct lmdb_store *l)
{
	MDB_envinfo info;

	if (!map_free_here(l)) {
		store_log("%s: map full; not grown while this thread holds a transaction", l->dir);
		return;
	}
	pthread_rwlock_wrlock(&l->maplock);
	mdb_env_info(l->env, &info);
	if (info.me_mapsize >= l->map_max) {
		store_log("%s: map full at %zu bytes (map_size_max)", l->dir, info.me_mapsize);
	} else {
		size_t size = info.me_mapsize > l->map_max / 2 ? l->map_max : info.me_mapsize * 2;
		if (set_mapsize(l, size) == STORE_OK)
			store_log("%s: map grown from %zu to %zu bytes", l->dir, info.me_mapsize, size);
	}
	pthread_rwlock_unlock(&l->maplock);
}

static size_t lmdb_max_key(const struct store *s)
{
	return (size_t)mdb_env_get_maxkeysize(((const struct lmdb_store *)s)->env);
}

static void lmdb_close(struct store *s)
{
	struct lmdb_store *l = to_lmdb(s);

	mdb_env_close(l->env);
	pthread_rwlock_destroy(&l->maplock);
	free(l);
}

static int make_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		store_log("%s: mkdir: %s", dir, strerror(errno));
		return STORE_ERROR;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		store_log("%s: not a directory", dir);
		return STORE_ERROR;
	}
	return STORE_OK;
}

static int lmdb_open(struct store **out, const char *dir, const struct store_options *o)
{
	static const unsigned sync_flags[] = {
		[STORE_SYNC_DURABLE] = 0,
		[STORE_SYNC_NOMETA] = MDB_NOMETASYNC,
		[STORE_SYNC_NONE] = MDB_NOSYNC,
	};
	struct lmdb_store *l;
	pthread_rwlockattr_t ra;
	MDB_txn *txn;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int rc, dead;

	if ((unsigned)o->sync > STORE_SYNC_NONE) {
		store_log("%s: sync mode %d unknown", dir, (int)o->sync);
		return STORE_ERROR;
	}
	if (make_dir(dir) != STORE_OK)
		return STORE_ERROR;
	l = calloc(1, sizeof(*l));
	if (!l) {
		store_log("%s: out of memory", dir);
		return STORE_ERROR;
	}
	snprintf(l->dir, sizeof(l->dir), "%s", dir);
	l->map_max = (o->map_size_max + page - 1) / page * page;

	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&l->maplock, &ra);
	pthread_rwlockattr_destroy(&ra);

	if ((rc = mdb_env_create(&l->env)) != 0) {
		fail(l, "mdb_env_create", rc);
		l->env = NULL;
		goto err;
	}
	if ((rc = mdb_env_set_maxdbs(l->env, STORE_T_COUNT)) != 0
	    || (rc = mdb_env_set_maxreaders(l->env, o->max_readers)) != 0
	    || (rc = mdb_env_set_mapsize(l->env, (o->map_size + page - 1) / page * page)) != 0) {
		fail(l, "mdb_env_set_*", rc);
		goto err;
	}
	if ((rc = mdb_env_open(l->env, dir, MDB_NOTLS | sync_flags[o->sync], 0600)) != 0) {
		fail(l, "mdb_env_open", rc);
		goto err;
	}
	/* Slots left by readers of processes that died (kill -9) would pin old
	 * pages forever. */
	if ((rc = mdb_reader_check(l->env, &dead)) != 0)
		fail(l, "mdb_reader_check", rc);
	else if (dead)
		store_log("%s: cleared %d stale reader slot(s)", dir, dead);

	rc = mdb_txn_begin(l->env, NULL, 0, &txn);
	if (rc == MDB_MAP_RESIZED) {
		set_mapsize(l, 0);
		rc = mdb_txn_begin(l->env, NULL, 0, &txn);
	}
	if (rc) {
		fail(l, "mdb_txn_begin", rc);
		goto err;
	}
	for (int i = 0; i < STORE_T_COUNT; i++) {
		if ((rc = mdb_dbi_open(txn, store_table_name((enum store_table)i), MDB_CREATE, &l->dbi[i])) != 0) {
			mdb_txn_abort(txn);
			fail(l, "mdb_dbi_open", rc);
			goto err;
		}
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		fail(l, "mdb_txn_commit (tables)", rc);
		goto err;
	}
	*out = &l->s;
	return STORE_OK;
err:
	if (l->env)
		mdb_env_close(l->env);
	pthread_rwlock_destroy(&l->maplock);
	free(l);
	return rc == MDB_MAP_FULL ? STORE_FULL : STORE_ERROR;
}

/* ---- transactions ----------------------------------------------------- */

static int lmdb_begin(struct store *s, struct store_txn *t, bool write)
{
	struct lmdb_store *l = to_lmdb(s);
	MDB_txn *txn = NULL;
	int rc;

	for (int attempt = 0;; attempt++) {
		map_hold(l);
		rc = mdb_txn_begin(l->env, NULL, write ? 0 : MDB_RDONLY, &txn);
		if (rc == 0)
			break;
		map_release(l);
		if (rc != MDB_MAP_RESIZED || attempt > 0 || !adopt_size(l))
			return fail(l, write ? "mdb_txn_begin (write)" : "mdb_txn_begin (read)", rc);
	}
	t->s = s;
	t->h = txn;
	t->err = STORE_OK;
	t->write = write;
	return STORE_OK;
}

static int lmdb_commit(struct store_txn *t)
{
	struct lmdb_store *l = to_lmdb(t->s);
	int rc = mdb_txn_commit(t->h);  /* frees the txn whatever the result */

	t->h = NULL;
	map_release(l);
	if (rc == MDB_MAP_FULL) {
		grow(l);
		return STORE_FULL;
	}
	return rc ? fail(l, "mdb_txn_commit", rc) : STORE_OK;
}

static void lmdb_abort(struct store_txn *t)
{
	struct lmdb_store *l = to_lmdb(t->s);

	mdb_txn_abort(t->h);
	t->h = NULL;
	map_release(l);
	if (t->err == STORE_FULL && t->write)
		grow(l);
}

/* ---- records ---------------------------------------------------------- */

static MDB_val val_of(const void *p, size_t n)
{
	MDB_val v = { .mv_size = n, .mv_data = (void *)(uintptr_t)p };
	return v;
}

static int write_rc(struct lmdb_store *l, const char *what, int rc)
{
	switch (rc) {
	case 0:              return STORE_OK;
	case MDB_NOTFOUND:   return STORE_NOTFOUND;
	case MDB_KEYEXIST:   return STORE_EXISTS;
	case MDB_MAP_FULL:   return STORE_FULL;
	}
	return fail(l, what, rc);
}

static int lmdb_get(struct store_txn *t, enum store_table tb, const void *k, size_t kl, struct store_buf *out)
{
	struct lmdb_store *l = to_lmdb(t->s);
	MDB_val key = val_of(k, kl), val;
	int rc = mdb_get(t->h, l->dbi[tb], &key, &val);

	if (rc)
		return write_rc(l, "mdb_get", rc);
	if (store_buf_reserve(out, val.mv_size) != STORE_OK)
		return STORE_ERROR;
	if (val.mv_size)
		memcpy(out->ptr, val.mv_data, val.mv_size);
	out->len = val.mv_size;
	return STORE_OK;
}

static int lmdb_put(struct store_txn *t, enum store_table tb, const void *k, size_t kl,
		    const void *v, size_t vl, unsigned flags)
{
	struct lmdb_store *l = to_lmdb(t->s);
	MDB_val key = val_of(k, kl), val = val_of(v, vl);

	return write_rc(l, "mdb_put", mdb_put(t->h, l->dbi[tb], &key, &val,
					      (flags & STORE_PUT_NEW) ? MDB_NOOVERWRITE : 0));
}

static int lmdb_del(struct store_txn *t, enum store_table tb, const void *k, size_t kl)
{
	struct lmdb_store *l = to_lmdb(t->s);
	MDB_val key = val_of(k, kl);

	return write_rc(l, "mdb_del", mdb_del(t->h, l->dbi[tb], &key, NULL));
}

static bool has_prefix(const MDB_val *k, const void *p, size_t pl)
{
	return pl == 0 || (k->mv_size >= pl && memcmp(k->mv_data, p, pl) == 0);
}

/* Position c on the first key >= p (the first key if pl is 0). */
static int seek(MDB_cursor *c, const void *p, size_t pl, MDB_val *k, MDB_val *v)
{
	*k = val_of(p, pl);
	return mdb_cursor_get(c, k, v, pl ? MDB_SET_RANGE : MDB_FIRST);
}

static int lmdb_iter(struct store_txn *t, enum store_table tb, const void *p, size_t pl,
		     store_iter_fn *fn, void *arg)
{
	struct lmdb_store *l = to_lmdb(t->s);
	MDB_cursor *c;
	MDB_val k, v;
	int rc = mdb_cursor_open(t->h, l->dbi[tb], &c);

	if (rc)
		return fail(l, "mdb_cursor_open", rc);
	for (rc = seek(c, p, pl, &k, &v); rc == 0 && has_prefix(&k, p, pl);
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		if (fn(arg, k.mv_data, k.mv_size, v.mv_data, v.mv_size))
			break;
	mdb_cursor_close(c);
	return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : fail(l, "mdb_cursor_get", rc);
}

static int lmdb_count(struct store_txn *t, enum store_table tb, const void *p, size_t pl, uint64_t *n)
{
	struct lmdb_store *l = to_lmdb(t->s);
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	*n = 0;
	if (pl == 0) {
		MDB_stat st;
		if ((rc = mdb_stat(t->h, l->dbi[tb], &st)) != 0)
			return fail(l, "mdb_stat", rc);
		*n = st.ms_entries;
		return STORE_OK;
	}
	if ((rc = mdb_cursor_open(t->h, l->dbi[tb], &c)) != 0)
		return fail(l, "mdb_cursor_open", rc);
	for (rc = seek(c, p, pl, &k, &v); rc == 0 && has_prefix(&k, p, pl);
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
		(*n)++;
	mdb_cursor_close(c);
	return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : fail(l, "mdb_cursor_get", rc);
}

static int lmdb_del_prefix(struct store_txn *t, enum store_table tb, const void *p, size_t pl, uint64_t *n)
{
	struct lmdb_store *l = to_lmdb(t->s);
	MDB_cursor *c;
	MDB_val k, v;
	int rc;

	*n = 0;
	if (pl == 0) {
		if ((rc = lmdb_count(t, tb, NULL, 0, n)) != STORE_OK)
			return rc;
		return write_rc(l, "mdb_drop", mdb_drop(t->h, l->dbi[tb], 0));
	}
	if ((rc = mdb_cursor_open(t->h, l->dbi[tb], &c)) != 0)
		return fail(l, "mdb_cursor_open", rc);
	/* Seek again after each delete rather than trust where a delete
	 * leaves the cursor (it differs at page boundaries across versions). */
	while ((rc = seek(c, p, pl, &k, &v)) == 0 && has_prefix(&k, p, pl)) {
		if ((rc = mdb_cursor_del(c, 0)) != 0)
			break;
		(*n)++;
	}
	mdb_cursor_close(c);
	if (rc == 0 || rc == MDB_NOTFOUND)
		return STORE_OK;
	return write_rc(l, "mdb_cursor_del", rc);
}

const struct store_backend store_backend_lmdb = {
	.name = "lmdb",
	.open = lmdb_open,
	.close = lmdb_close,
	.max_key = lmdb_max_key,
	.begin = lmdb_begin,
	.commit = lmdb_commit,
	.abort = lmdb_abort,
	.get = lmdb_get,
	.put = lmdb_put,
	.del = lmdb_del,
	.iter = lmdb_iter,
	.del_prefix = lmdb_del_prefix,
	.count = lmdb_count,
};
