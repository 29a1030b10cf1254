/* The routing table: a liburcu lock-free hash table (cds_lfht, urcu-qsbr
 * flavour) of immutable per-JID snapshots, replaced copy-on-write.
 *
 * QSBR: a registered thread is in the read side whenever it is online, so
 * rcu_read_lock() is a no-op in this flavour and is not called; "online"
 * is what cds_lfht_* and the snapshot pointers need.
 *
 * Writes: route_update reads the current snapshot (lock-free, like a
 * reader), decides, and builds the replacement outside any lock; then,
 * under the shard's spinlock, checks that the snapshot is still the current
 * one (else starts again) and swaps it in the hash table. The old snapshot
 * cannot be freed, nor its address reused, before this thread's next
 * quiescent state, so comparing pointers is enough (no ABA).
 *
 * Why a spinlock: writers are workers, and a worker never sleeps (a sleeping
 * lock would stall every connection of its core behind another core's
 * bind). The critical section is a hash lookup, one cds_lfht_add_replace or
 * cds_lfht_del and two counters: no allocation, no syscall, nothing that can
 * block, so spinning is cheaper than a futex round trip. It must also never
 * wait for a grace period (synchronize_rcu) while held: a worker spinning
 * for the lock announces no quiescent state, so that would deadlock; old
 * snapshots go to call_rcu instead.
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <urcu-qsbr.h>        /* the flavour first: rculfhash.h binds to it */
#include <urcu/rculfhash.h>

#include "router/route.h"

#if defined(__SANITIZE_THREAD__)
#define ROUTE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ROUTE_TSAN 1
#endif
#endif

#ifdef ROUTE_TSAN
#include <sanitizer/tsan_interface.h>
/* Only its address matters: the sync object for the reader -> reclaimer
 * edge (see route.h). */
static char route_tsan_gp;
#define ROUTE_TSAN_RELEASE() __tsan_release(&route_tsan_gp)
#define ROUTE_TSAN_ACQUIRE() __tsan_acquire(&route_tsan_gp)
#else
#define ROUTE_TSAN_RELEASE() ((void)0)
#define ROUTE_TSAN_ACQUIRE() ((void)0)
#endif

#define ROUTE_SHARD_BITS 6
_Static_assert(ROUTE_SHARDS == 1u << ROUTE_SHARD_BITS, "ROUTE_SHARDS is 2^ROUTE_SHARD_BITS");
_Static_assert(ROUTE_MAX_RESOURCES <= UINT16_MAX, "nres is 16 bits");
_Static_assert(sizeof(struct route_res) == 16, "route_res is 16 bytes");

/* One allocation: this header, then the struct route_snap readers see. */
struct route_node {
	struct cds_lfht_node lfht;   /* liburcu's: written only inside cds_lfht_* */
	struct rcu_head rcu;         /* liburcu's: call_rcu */
	/* 0 while the writer fills the snapshot; then 1 by a release store
	 * before the node is added to the hash table. Paired with the acquire
	 * loads in route_match and route_foreach: TSan's view of the
	 * publication that cds_lfht_add_replace's (uninstrumented) barriers
	 * make. */
	_Atomic uint32_t published;
	uint32_t pad_;
};

_Static_assert(sizeof(struct route_node) % _Alignof(struct route_snap) == 0,
	       "route_snap follows route_node, aligned");

struct route_shard {
	_Alignas(64) pthread_spinlock_t lock;   /* serialises writers of this shard */
	/* Written under lock, read by route_count without it: relaxed. */
	_Atomic int64_t jids;
	_Atomic int64_t sessions;
};

struct route_table {
	struct cds_lfht *ht;
	uint64_t seed;                          /* per table, against chosen collisions */
	struct route_shard shard[ROUTE_SHARDS];
};

struct route_key {
	const char *bare;
	size_t len;
};

enum route_op {
	ROUTE_OP_BIND,
	ROUTE_OP_UNBIND,
	ROUTE_OP_PRESENCE,
	ROUTE_OP_CARBONS,
	ROUTE_OP_REPLACE,
};

/* One write, as route_plan decides it. */
struct route_change {
	enum route_op op;
	const char *res;
	uint16_t res_len;
	uint64_t handle;
	enum conflict_policy policy;   /* bind */
	unsigned max_res;              /* bind */
	bool available;                /* presence */
	int8_t priority;               /* presence */
	bool carbons;                  /* carbons */
	uint64_t new_handle;           /* replace */
	/* route_plan's output */
	bool write;                    /* a new snapshot (or none) replaces the old one */
	int idx;                       /* res in the old snapshot, or -1 */
	uint64_t displaced;
};

static inline struct route_snap *node_snap(struct route_node *n)
{
	return (struct route_snap *)(n + 1);
}

static inline struct route_node *lfht_node(struct cds_lfht_node *ln)
{
	return caa_container_of(ln, struct route_node, lfht);
}

/* 64-bit multiply-xorshift over 8-byte words, murmur3's finaliser at the
 * end. Not cryptographic: the random seed only keeps remote users from
 * choosing JIDs that share a bucket chain. */
static uint64_t route_hash(uint64_t seed, const char *p, size_t len)
{
	uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15u);
	uint64_t w;

	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&w, p, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdu;
		h ^= h >> 32;
	}
	w = 0;
	memcpy(&w, p, len);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53u;
	h ^= h >> 33;
	return h;
}

/* Called by cds_lfht for nodes whose hash matches. */
static int route_match(struct cds_lfht_node *ln, const void *key)
{
	struct route_node *n = lfht_node(ln);
	const struct route_key *k = key;

	/* Acquire: pairs with the release store of published in route_update;
	 * everything below reads what the writer wrote before it. */
	if (!atomic_load_explicit(&n->published, memory_order_acquire))
		return 0;
	const struct route_snap *s = node_snap(n);
	return s->bare_len == k->len && memcmp(route_snap_bare(s), k->bare, k->len) == 0;
}

static struct route_node *route_find_node(struct route_table *t, uint64_t hash, const char *bare, size_t len)
{
	struct route_key k = { bare, len };
	struct cds_lfht_iter it;

	cds_lfht_lookup(t->ht, (unsigned long)hash, route_match, &k, &it);
	struct cds_lfht_node *ln = cds_lfht_iter_get_node(&it);
	return ln ? lfht_node(ln) : NULL;
}

/* call_rcu callback, on liburcu's call_rcu thread after a grace period. */
static void route_node_free(struct rcu_head *head)
{
	/* Pairs with the release in route_thread_quiescent/offline/unregister
	 * of every reader that could have seen this node. */
	ROUTE_TSAN_ACQUIRE();
	free(caa_container_of(head, struct route_node, rcu));
}

/* ---- threads ------------------------------------------------------------ */

void route_thread_register(void)
{
	rcu_register_thread();
}

void route_thread_unregister(void)
{
	ROUTE_TSAN_RELEASE();
	rcu_unregister_thread();
}

void route_thread_quiescent(void)
{
	ROUTE_TSAN_RELEASE();
	rcu_quiescent_state();
}

void route_thread_offline(void)
{
	ROUTE_TSAN_RELEASE();
	rcu_thread_offline();
}

void route_thread_online(void)
{
	rcu_thread_online();
}

void route_synchronize(void)
{
	synchronize_rcu();
}

/* ---- the table ---------------------------------------------------------- */

struct route_table *route_table_new(size_t expected)
{
	size_t size = (sizeof(struct route_table) + 63u) & ~(size_t)63u;
	struct route_table *t = aligned_alloc(64, size);
	if (!t)
		return NULL;
	memset(t, 0, size);

	unsigned long buckets = 64;
	while (buckets < expected && buckets < (1ul << 30))
		buckets <<= 1;
	t->ht = cds_lfht_new(buckets, 64, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	if (!t->ht) {
		free(t);
		return NULL;
	}
	if (getrandom(&t->seed, sizeof t->seed, GRND_NONBLOCK) != (ssize_t)sizeof t->seed)
		t->seed = (uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15u;   /* no entropy yet: still per process */
	for (unsigned i = 0; i < ROUTE_SHARDS; i++)
		pthread_spin_init(&t->shard[i].lock, PTHREAD_PROCESS_PRIVATE);
	return t;
}

void route_table_free(struct route_table *t)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *ln;

	if (!t)
		return;
	cds_lfht_for_each(t->ht, &it, ln) {
		if (cds_lfht_del(t->ht, ln) == 0)
			call_rcu(&lfht_node(ln)->rcu, route_node_free);
	}
	/* cds_lfht_destroy waits for a pending resize, whose worker waits for
	 * a grace period, which waits for this thread: go offline. */
	route_thread_offline();
	int rc = cds_lfht_destroy(t->ht, NULL);
	route_thread_online();
	assert(rc == 0);
	(void)rc;
	for (unsigned i = 0; i < ROUTE_SHARDS; i++)
		pthread_spin_destroy(&t->shard[i].lock);
	free(t);
}

/* ---- readers ------------------------------------------------------------ */

const struct route_snap *route_lookup(struct route_table *t, const char *bare, size_t len)
{
	struct route_node *n = route_find_node(t, route_hash(t->seed, bare, len), bare, len);
	return n ? node_snap(n) : NULL;
}

int route_foreach(struct route_table *t, int (*visit)(const struct route_snap *snap, void *arg), void *arg)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *ln;

	cds_lfht_for_each(t->ht, &it, ln) {
		struct route_node *n = lfht_node(ln);
		/* Acquire: as in route_match. */
		if (!atomic_load_explicit(&n->published, memory_order_acquire))
			continue;
		int rc = visit(node_snap(n), arg);
		if (rc)
			return rc;
	}
	return 0;
}

void route_count(struct route_table *t, uint64_t *jids, uint64_t *sessions)
{
	int64_t j = 0, s = 0;

	for (unsigned i = 0; i < ROUTE_SHARDS; i++) {
		j += atomic_load_explicit(&t->shard[i].jids, memory_order_relaxed);
		s += atomic_load_explicit(&t->shard[i].sessions, memory_order_relaxed);
	}
	/* Shards are read at different instants: a move between two of them
	 * cannot make a sum negative, but stay safe. */
	*jids = j > 0 ? (uint64_t)j : 0;
	*sessions = s > 0 ? (uint64_t)s : 0;
}

/* ---- writers ------------------------------------------------------------ */

/* Decide c against the current snapshot old (NULL: no session). Returns the
 * result for the caller; c->write says whether the table must change. */
static enum route_status route_plan(const struct route_snap *old, struct route_change *c)
{
	const struct route_res *r = old ? route_find(old, c->res, c->res_len) : NULL;

	c->idx = r ? (int)(r - old->res) : -1;
	c->write = false;
	c->displaced = 0;
	switch (c->op) {
	case ROUTE_OP_BIND:
		if (r) {
			if (r->handle == c->handle)
				return ROUTE_OK;
			if (c->policy != CONFLICT_KICK_OLD)
				return ROUTE_CONFLICT;
			c->displaced = r->handle;
		} else if ((old ? old->nres : 0u) >= c->max_res) {
			return ROUTE_LIMIT;
		}
		break;
	case ROUTE_OP_UNBIND:
		if (!r || r->handle != c->handle)
			return ROUTE_NOTFOUND;
		break;
	case ROUTE_OP_PRESENCE:
		if (!r || r->handle != c->handle)
			return ROUTE_NOTFOUND;
		if (r->available == c->available && r->priority == c->priority)
			return ROUTE_OK;
		break;
	case ROUTE_OP_CARBONS:
		if (!r || r->handle != c->handle)
			return ROUTE_NOTFOUND;
		if (r->carbons == c->carbons)
			return ROUTE_OK;
		break;
	case ROUTE_OP_REPLACE:
		if (!r || r->handle != c->handle)
			return ROUTE_NOTFOUND;
		break;
	}
	c->write = true;
	return ROUTE_OK;
}

/* Fill s (room for nres resources and names_len bytes of names) from old
 * with c applied. s is not yet visible to anyone. */
static void route_build(struct route_snap *s, const struct route_snap *old, const struct route_change *c,
			const char *bare, uint16_t bare_len, uint64_t hash, unsigned nres, uint32_t names_len)
{
	unsigned oldn = old ? old->nres : 0u, j = 0;

	memset(s, 0, sizeof *s);
	s->hash = hash;
	s->bare_len = bare_len;
	s->nres = (uint16_t)nres;
	s->names_len = names_len;

	char *names = (char *)&s->res[nres];
	uint32_t off = bare_len;
	memcpy(names, bare, bare_len);
	for (unsigned i = 0; i < oldn; i++) {
		const struct route_res *o = &old->res[i];
		if ((int)i == c->idx && c->op == ROUTE_OP_UNBIND)
			continue;
		struct route_res *r = &s->res[j];   /* j < nres: not the names */
		*r = *o;
		if ((int)i == c->idx) {
			if (c->op == ROUTE_OP_BIND) {
				r->handle = c->handle;
				r->available = 0;
				r->carbons = 0;
				r->priority = 0;
			} else if (c->op == ROUTE_OP_CARBONS) {
				r->carbons = c->carbons;
			} else if (c->op == ROUTE_OP_REPLACE) {
				r->handle = c->new_handle;   /* presence and the rest stay */
			} else {
				r->available = c->available;
				r->priority = c->priority;
			}
		}
		memcpy(names + off, route_res_name(old, o), o->len);
		r->off = off;
		off += o->len;
		j++;
	}
	if (c->op == ROUTE_OP_BIND && c->idx < 0) {
		struct route_res *r = &s->res[j++];
		r->handle = c->handle;
		r->off = off;
		r->len = c->res_len;
		r->priority = 0;
		r->available = 0;
		r->carbons = 0;
		r->flags_pad_ = 0;
		memcpy(names + off, c->res, c->res_len);
		off += c->res_len;
	}
	assert(j == nres && off == names_len);

	for (unsigned i = 0; i < nres; i++) {
		const struct route_res *r = &s->res[i];
		s->ncarbons = (uint16_t)(s->ncarbons + r->carbons);
		if (!r->available)
			continue;
		s->navail++;
		if (r->priority < 0)
			continue;
		if (s->nbest == 0 || r->priority > s->best) {
			s->best = r->priority;
			s->nbest = 1;
		} else if (r->priority == s->best) {
			s->nbest++;
		}
	}
}

static enum route_status route_update(struct route_table *t, const char *bare, size_t bare_len,
				      struct route_change *c, uint64_t *displaced)
{
	assert(bare_len >= 1 && bare_len <= ROUTE_BARE_MAX);
	assert(c->res_len >= 1 && c->res_len <= ROUTE_RESOURCE_MAX);
	assert(c->handle != 0);

	uint64_t hash = route_hash(t->seed, bare, bare_len);
	struct route_shard *sh = &t->shard[hash >> (64 - ROUTE_SHARD_BITS)];
	struct route_key key = { bare, bare_len };

	if (displaced)
		*displaced = 0;
	for (;;) {
		struct route_node *oldn = route_find_node(t, hash, bare, bare_len);
		const struct route_snap *old = oldn ? node_snap(oldn) : NULL;
		enum route_status rc = route_plan(old, c);
		if (!c->write)
			return rc;

		unsigned oldres = old ? old->nres : 0u, nres = oldres;
		uint32_t names_len = old ? old->names_len : (uint32_t)bare_len;
		if (c->op == ROUTE_OP_BIND && c->idx < 0) {
			nres++;
			names_len += c->res_len;
		} else if (c->op == ROUTE_OP_UNBIND) {
			nres--;
			names_len -= c->res_len;
		}

		struct route_node *n = NULL;
		if (nres) {
			n = malloc(sizeof *n + sizeof(struct route_snap) +
				   nres * sizeof(struct route_res) + names_len);
			if (!n)
				return ROUTE_NOMEM;
			route_build(node_snap(n), old, c, bare, (uint16_t)bare_len, hash, nres, names_len);
			/* Release: pairs with the acquire loads in route_match and
			 * route_foreach. The node is still private here. */
			atomic_store_explicit(&n->published, 1, memory_order_release);
		}

		pthread_spin_lock(&sh->lock);
		if (route_find_node(t, hash, bare, bare_len) != oldn) {
			/* Another writer of this JID got there first: decide again. */
			pthread_spin_unlock(&sh->lock);
			free(n);
			continue;
		}
		if (n) {
			struct cds_lfht_node *was = cds_lfht_add_replace(t->ht, (unsigned long)hash, route_match,
									 &key, &n->lfht);
			assert(was == (oldn ? &oldn->lfht : NULL));
			(void)was;
		} else {
			int drc = cds_lfht_del(t->ht, &oldn->lfht);
			assert(drc == 0);
			(void)drc;
		}
		atomic_fetch_add_explicit(&sh->jids, (int64_t)(n != NULL) - (int64_t)(oldn != NULL),
					  memory_order_relaxed);
		atomic_fetch_add_explicit(&sh->sessions, (int64_t)nres - (int64_t)oldres, memory_order_relaxed);
		pthread_spin_unlock(&sh->lock);

		if (oldn)
			call_rcu(&oldn->rcu, route_node_free);
		if (displaced)
			*displaced = c->displaced;
		return rc;
	}
}

enum route_status route_bind(struct route_table *t, const char *bare, size_t bare_len,
			     const char *res, size_t res_len, uint64_t handle,
			     enum conflict_policy policy, unsigned max_resources, uint64_t *displaced)
{
	struct route_change c = {
		.op = ROUTE_OP_BIND, .res = res, .res_len = (uint16_t)res_len, .handle = handle,
		.policy = policy,
		.max_res = max_resources < ROUTE_MAX_RESOURCES ? max_resources : ROUTE_MAX_RESOURCES,
	};
	assert(res_len <= ROUTE_RESOURCE_MAX);
	return route_update(t, bare, bare_len, &c, displaced);
}

enum route_status route_unbind(struct route_table *t, const char *bare, size_t bare_len,
			       const char *res, size_t res_len, uint64_t handle)
{
	struct route_change c = {
		.op = ROUTE_OP_UNBIND, .res = res, .res_len = (uint16_t)res_len, .handle = handle,
	};
	assert(res_len <= ROUTE_RESOURCE_MAX);
	return route_update(t, bare, bare_len, &c, NULL);
}

enum route_status route_set_presence(struct route_table *t, const char *bare, size_t bare_len,
				     const char *res, size_t res_len, uint64_t handle,
				     bool available, int8_t priority)
{
	struct route_change c = {
		.op = ROUTE_OP_PRESENCE, .res = res, .res_len = (uint16_t)res_len, .handle = handle,
		.available = available, .priority = priority,
	};
	assert(res_len <= ROUTE_RESOURCE_MAX);
	return route_update(t, bare, bare_len, &c, NULL);
}

enum route_status route_replace(struct route_table *t, const char *bare, size_t bare_len,
				const char *res, size_t res_len, uint64_t handle, uint64_t new_handle)
{
	struct route_change c = {
		.op = ROUTE_OP_REPLACE, .res = res, .res_len = (uint16_t)res_len, .handle = handle,
		.new_handle = new_handle,
	};
	assert(res_len <= ROUTE_RESOURCE_MAX && new_handle != 0);
	return route_update(t, bare, bare_len, &c, NULL);
}

enum route_status route_set_carbons(struct route_table *t, const char *bare, size_t bare_len,
				    const char *res, size_t res_len, uint64_t handle, bool carbons)
{
	struct route_change c = {
		.op = ROUTE_OP_CARBONS, .res = res, .res_len = (uint16_t)res_len, .handle = handle,
		.carbons = carbons,
	};
	assert(res_len <= ROUTE_RESOURCE_MAX);
	return route_update(t, bare, bare_len, &c, NULL);
}
