/* router/route: the routing table. Single-thread semantics (bind, lookup,
 * conflicts under each policy, stale handles, presence and best-target
 * choice, limits, long names, many JIDs, out of memory), then a bounded
 * concurrent run (4 writers, 2 readers) checked against the writers' logs.
 *
 * Allocations are counted by wrapping malloc, aligned_alloc and free at link
 * time (-Wl,--wrap, see meson.build): only route.c's calls and this file's
 * go through the wrappers, and this file allocates with calloc, so the count
 * is exactly the table plus its live snapshots.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <cmocka.h>
#include <urcu-qsbr.h>

#include "router/route.h"

/* ---- allocation accounting ----------------------------------------------- */

void *__real_malloc(size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);
void __wrap_free(void *p);

static _Atomic long live_allocs;
static _Atomic int fail_mallocs;   /* > 0: that many mallocs fail */

void *__wrap_malloc(size_t n)
{
	if (atomic_load(&fail_mallocs) > 0) {
		atomic_fetch_sub(&fail_mallocs, 1);
		return NULL;
	}
	void *p = __real_malloc(n);
	if (p)
		atomic_fetch_add_explicit(&live_allocs, 1, memory_order_relaxed);
	return p;
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
	void *p = __real_aligned_alloc(align, n);
	if (p)
		atomic_fetch_add_explicit(&live_allocs, 1, memory_order_relaxed);
	return p;
}

void __wrap_free(void *p)
{
	if (p)
		atomic_fetch_sub_explicit(&live_allocs, 1, memory_order_relaxed);
	__real_free(p);
}

/* This file's own memory (calloc'd) bypasses the count. */
static void tfree(void *p)
{
	__real_free(p);
}

/* Wait until every snapshot handed to call_rcu is freed. rcu_barrier must
 * not run inside the read side, which for QSBR means online. */
static void drain(void)
{
	route_thread_offline();
	rcu_barrier();
	route_thread_online();
}

#define S(str) (str), strlen(str)

static int setup(void **state)
{
	struct route_table *t = route_table_new(0);
	assert_non_null(t);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	route_table_free(*state);
	drain();
	assert_int_equal(atomic_load(&live_allocs), 0);
	return 0;
}

static void check_counts(struct route_table *t, uint64_t jids, uint64_t sessions)
{
	uint64_t j, s;
	route_count(t, &j, &s);
	assert_int_equal(j, jids);
	assert_int_equal(s, sessions);
}

static bool snap_has(const struct route_snap *s, const char *res, uint64_t handle)
{
	const struct route_res *r = route_find(s, res, strlen(res));
	return r && r->handle == handle;
}

/* ---- single thread -------------------------------------------------------- */

static void test_bind_lookup(void **state)
{
	struct route_table *t = *state;
	uint64_t d = 99;

	assert_null(route_lookup(t, S("alice@example.com")));
	assert_int_equal(route_bind(t, S("alice@example.com"), S("phone"), 11, CONFLICT_KICK_OLD, 8, &d), ROUTE_OK);
	assert_int_equal(d, 0);

	const struct route_snap *s1 = route_lookup(t, S("alice@example.com"));
	assert_non_null(s1);
	assert_int_equal(s1->nres, 1);
	assert_int_equal(s1->bare_len, 17);
	assert_memory_equal(route_snap_bare(s1), "alice@example.com", 17);
	assert_int_equal(s1->res[0].handle, 11);
	assert_int_equal(s1->res[0].len, 5);
	assert_memory_equal(route_res_name(s1, &s1->res[0]), "phone", 5);
	assert_int_equal(s1->res[0].available, 0);
	assert_int_equal(s1->res[0].priority, 0);
	assert_int_equal(s1->navail, 0);
	assert_int_equal(s1->nbest, 0);

	/* Bytes compare: no prefix, no case folding, no other JID. */
	assert_null(route_lookup(t, S("alice@example.co")));
	assert_null(route_lookup(t, S("Alice@example.com")));
	assert_null(route_lookup(t, S("alice@example.com/phone")));
	assert_null(route_lookup(t, S("bob@example.com")));

	assert_int_equal(route_bind(t, S("alice@example.com"), S("laptop"), 12, CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
	const struct route_snap *s2 = route_lookup(t, S("alice@example.com"));
	assert_ptr_not_equal(s1, s2);
	/* The old snapshot is untouched and still readable (no quiescent state yet). */
	assert_int_equal(s1->nres, 1);
	assert_int_equal(s2->nres, 2);
	assert_true(snap_has(s2, "phone", 11));
	assert_true(snap_has(s2, "laptop", 12));
	assert_null(route_find(s2, S("lapto")));
	assert_null(route_find(s2, S("laptops")));
	assert_memory_equal(route_snap_bare(s2), "alice@example.com", 17);
	assert_int_equal(s2->names_len, 17 + 5 + 6);

	assert_int_equal(route_bind(t, S("bob@example.com"), S("phone"), 21, CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
	check_counts(t, 2, 3);
	route_thread_quiescent();
}

static void test_rebind_same_handle(void **state)
{
	struct route_table *t = *state;
	uint64_t d = 99;

	assert_int_equal(route_bind(t, S("a@b"), S("r"), 5, CONFLICT_REFUSE_NEW, 8, NULL), ROUTE_OK);
	const struct route_snap *s = route_lookup(t, S("a@b"));
	for (int p = CONFLICT_KICK_OLD; p <= CONFLICT_RENAME_NEW; p++) {
		assert_int_equal(route_bind(t, S("a@b"), S("r"), 5, (enum conflict_policy)p, 8, &d), ROUTE_OK);
		assert_int_equal(d, 0);
		assert_ptr_equal(route_lookup(t, S("a@b")), s);   /* nothing published */
	}
	check_counts(t, 1, 1);
}

static void test_conflict_kick_old(void **state)
{
	struct route_table *t = *state;
	uint64_t d = 0;

	assert_int_equal(route_bind(t, S("u@x"), S("home"), 1, CONFLICT_KICK_OLD, 8, &d), ROUTE_OK);
	assert_int_equal(route_bind(t, S("u@x"), S("work"), 2, CONFLICT_KICK_OLD, 8, &d), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("home"), 1, true, 7), ROUTE_OK);

	assert_int_equal(route_bind(t, S("u@x"), S("home"), 3, CONFLICT_KICK_OLD, 8, &d), ROUTE_OK);
	assert_int_equal(d, 1);
	const struct route_snap *s = route_lookup(t, S("u@x"));
	assert_int_equal(s->nres, 2);
	/* the new session starts unavailable at priority 0, in the old place */
	assert_int_equal(s->res[0].handle, 3);
	assert_memory_equal(route_res_name(s, &s->res[0]), "home", 4);
	assert_int_equal(s->res[0].available, 0);
	assert_int_equal(s->res[0].priority, 0);
	assert_int_equal(s->navail, 0);
	assert_true(snap_has(s, "work", 2));

	/* the displaced session's own calls no longer touch the resource */
	assert_int_equal(route_set_presence(t, S("u@x"), S("home"), 1, true, 1), ROUTE_NOTFOUND);
	assert_int_equal(route_unbind(t, S("u@x"), S("home"), 1), ROUTE_NOTFOUND);
	assert_ptr_equal(route_lookup(t, S("u@x")), s);
	assert_int_equal(route_unbind(t, S("u@x"), S("home"), 3), ROUTE_OK);
	assert_int_equal(route_unbind(t, S("u@x"), S("work"), 2), ROUTE_OK);
	assert_null(route_lookup(t, S("u@x")));
	check_counts(t, 0, 0);
}

static void test_conflict_refuse_and_rename(void **state)
{
	struct route_table *t = *state;
	uint64_t d = 99;

	assert_int_equal(route_bind(t, S("u@x"), S("home"), 1, CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("home"), 1, true, 4), ROUTE_OK);
	const struct route_snap *s = route_lookup(t, S("u@x"));

	assert_int_equal(route_bind(t, S("u@x"), S("home"), 2, CONFLICT_REFUSE_NEW, 8, &d), ROUTE_CONFLICT);
	assert_int_equal(d, 0);
	assert_ptr_equal(route_lookup(t, S("u@x")), s);
	assert_int_equal(route_bind(t, S("u@x"), S("home"), 2, CONFLICT_RENAME_NEW, 8, &d), ROUTE_CONFLICT);
	assert_int_equal(d, 0);
	assert_ptr_equal(route_lookup(t, S("u@x")), s);
	assert_true(snap_has(s, "home", 1));
	assert_int_equal(s->res[0].priority, 4);

	/* RENAME_NEW: the caller retries with a name of its own */
	assert_int_equal(route_bind(t, S("u@x"), S("home-1f3a"), 2, CONFLICT_RENAME_NEW, 8, &d), ROUTE_OK);
	s = route_lookup(t, S("u@x"));
	assert_true(snap_has(s, "home", 1));
	assert_true(snap_has(s, "home-1f3a", 2));
	check_counts(t, 1, 2);
}

static void test_unbind_notfound(void **state)
{
	struct route_table *t = *state;

	assert_int_equal(route_unbind(t, S("nobody@x"), S("r"), 1), ROUTE_NOTFOUND);
	assert_int_equal(route_set_presence(t, S("nobody@x"), S("r"), 1, true, 0), ROUTE_NOTFOUND);
	assert_int_equal(route_bind(t, S("u@x"), S("r"), 1, CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
	assert_int_equal(route_unbind(t, S("u@x"), S("other"), 1), ROUTE_NOTFOUND);
	assert_int_equal(route_unbind(t, S("u@x"), S("r"), 2), ROUTE_NOTFOUND);
	assert_int_equal(route_unbind(t, S("u@y"), S("r"), 1), ROUTE_NOTFOUND);
	assert_int_equal(route_unbind(t, S("u@x"), S("r"), 1), ROUTE_OK);
	assert_int_equal(route_unbind(t, S("u@x"), S("r"), 1), ROUTE_NOTFOUND);
	check_counts(t, 0, 0);
}

static void test_presence_best(void **state)
{
	struct route_table *t = *state;
	static const char *const name[] = { "a", "b", "c", "d", "e", "f" };
	uint64_t out[8];

	for (unsigned i = 0; i < 6; i++)
		assert_int_equal(route_bind(t, S("u@x"), S(name[i]), 100 + i, CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
	const struct route_snap *s = route_lookup(t, S("u@x"));
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_BEST, out, 8), 0);
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_ALL, out, 8), 0);

	/* a 5, b 5, c 3, d -1, e 10 but unavailable, f -128 */
	assert_int_equal(route_set_presence(t, S("u@x"), S("a"), 100, true, 5), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("b"), 101, true, 5), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("c"), 102, true, 3), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("d"), 103, true, -1), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("e"), 104, false, 10), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("f"), 105, true, INT8_MIN), ROUTE_OK);
	s = route_lookup(t, S("u@x"));
	assert_int_equal(s->navail, 5);
	assert_int_equal(s->best, 5);
	assert_int_equal(s->nbest, 2);
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_BEST, out, 8), 2);
	assert_int_equal(out[0], 100);
	assert_int_equal(out[1], 101);
	/* truncated: the count is still the whole */
	out[1] = 0;
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_BEST, out, 1), 2);
	assert_int_equal(out[0], 100);
	assert_int_equal(out[1], 0);
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_AVAILABLE, out, 8), 3);
	assert_int_equal(out[0], 100);
	assert_int_equal(out[1], 101);
	assert_int_equal(out[2], 102);
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_ALL, out, 8), 5);
	assert_int_equal(out[3], 103);
	assert_int_equal(out[4], 105);
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_ALL, out, 2), 5);

	/* the same presence again publishes nothing */
	assert_int_equal(route_set_presence(t, S("u@x"), S("a"), 100, true, 5), ROUTE_OK);
	assert_ptr_equal(route_lookup(t, S("u@x")), s);

	/* e becomes available at 127: the only best */
	assert_int_equal(route_set_presence(t, S("u@x"), S("e"), 104, true, INT8_MAX), ROUTE_OK);
	s = route_lookup(t, S("u@x"));
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_BEST, out, 8), 1);
	assert_int_equal(out[0], 104);
	assert_int_equal(s->best, INT8_MAX);

	/* only negative priorities: nobody is "most available"; all still get presence */
	assert_int_equal(route_set_presence(t, S("u@x"), S("a"), 100, true, -5), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("b"), 101, false, 5), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("c"), 102, true, -3), ROUTE_OK);
	assert_int_equal(route_set_presence(t, S("u@x"), S("e"), 104, false, 0), ROUTE_OK);
	s = route_lookup(t, S("u@x"));
	assert_int_equal(s->navail, 4);
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_BEST, out, 8), 0);
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_AVAILABLE, out, 8), 0);
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_ALL, out, 8), 4);

	/* priority 0 available counts as best */
	assert_int_equal(route_set_presence(t, S("u@x"), S("f"), 105, true, 0), ROUTE_OK);
	s = route_lookup(t, S("u@x"));
	assert_int_equal(route_pick_handles(s, ROUTE_PICK_BEST, out, 8), 1);
	assert_int_equal(out[0], 105);

	/* unbinding keeps the others' presence */
	assert_int_equal(route_unbind(t, S("u@x"), S("d"), 103), ROUTE_OK);
	s = route_lookup(t, S("u@x"));
	assert_int_equal(s->nres, 5);
	const struct route_res *r = route_find(s, S("a"));
	assert_non_null(r);
	assert_int_equal(r->priority, -5);
	assert_int_equal(r->available, 1);
}

static void test_limit(void **state)
{
	struct route_table *t = *state;
	uint64_t d = 99;

	assert_int_equal(route_bind(t, S("u@x"), S("r"), 1, CONFLICT_KICK_OLD, 0, &d), ROUTE_LIMIT);
	assert_null(route_lookup(t, S("u@x")));
	assert_int_equal(route_bind(t, S("u@x"), S("r1"), 1, CONFLICT_KICK_OLD, 3, NULL), ROUTE_OK);
	assert_int_equal(route_bind(t, S("u@x"), S("r2"), 2, CONFLICT_KICK_OLD, 3, NULL), ROUTE_OK);
	assert_int_equal(route_bind(t, S("u@x"), S("r3"), 3, CONFLICT_KICK_OLD, 3, NULL), ROUTE_OK);
	assert_int_equal(route_bind(t, S("u@x"), S("r4"), 4, CONFLICT_KICK_OLD, 3, &d), ROUTE_LIMIT);
	assert_int_equal(d, 0);
	/* taking over a resource does not add one */
	assert_int_equal(route_bind(t, S("u@x"), S("r2"), 5, CONFLICT_KICK_OLD, 3, &d), ROUTE_OK);
	assert_int_equal(d, 2);
	assert_int_equal(route_unbind(t, S("u@x"), S("r1"), 1), ROUTE_OK);
	assert_int_equal(route_bind(t, S("u@x"), S("r4"), 4, CONFLICT_KICK_OLD, 3, NULL), ROUTE_OK);
	check_counts(t, 1, 3);

	/* max_resources is capped at ROUTE_MAX_RESOURCES */
	char res[16];
	for (unsigned i = 0; i < ROUTE_MAX_RESOURCES; i++) {
		snprintf(res, sizeof res, "%u", i);
		assert_int_equal(route_bind(t, S("big@x"), S(res), 1000 + i, CONFLICT_KICK_OLD, 100000, NULL),
				 ROUTE_OK);
	}
	assert_int_equal(route_bind(t, S("big@x"), S("one-more"), 9, CONFLICT_KICK_OLD, 100000, NULL), ROUTE_LIMIT);
	const struct route_snap *s = route_lookup(t, S("big@x"));
	assert_int_equal(s->nres, ROUTE_MAX_RESOURCES);
	assert_true(snap_has(s, "1023", 1000 + 1023));
	check_counts(t, 2, 3 + ROUTE_MAX_RESOURCES);
}

static void test_empty_snapshot_removed(void **state)
{
	struct route_table *t = *state;

	assert_int_equal(route_bind(t, S("u@x"), S("1"), 1, CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
	assert_int_equal(route_bind(t, S("u@x"), S("2"), 2, CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
	assert_int_equal(route_bind(t, S("v@x"), S("1"), 3, CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
	drain();
	assert_int_equal(atomic_load(&live_allocs), 1 + 2);   /* the table, two snapshots */
	assert_int_equal(route_unbind(t, S("u@x"), S("2"), 2), ROUTE_OK);
	assert_int_equal(route_unbind(t, S("u@x"), S("1"), 1), ROUTE_OK);
	assert_null(route_lookup(t, S("u@x")));
	assert_non_null(route_lookup(t, S("v@x")));
	check_counts(t, 1, 1);
	drain();
	assert_int_equal(atomic_load(&live_allocs), 1 + 1);
	assert_int_equal(route_unbind(t, S("v@x"), S("1"), 3), ROUTE_OK);
	check_counts(t, 0, 0);
	drain();
	assert_int_equal(atomic_load(&live_allocs), 1);
}

static void test_long_names(void **state)
{
	struct route_table *t = *state;
	char *bare = calloc(1, ROUTE_BARE_MAX + 1);
	char *bare2 = calloc(1, ROUTE_BARE_MAX + 1);
	char *res = calloc(1, ROUTE_RESOURCE_MAX + 1);

	memset(bare, 'l', 1023);
	bare[1023] = '@';
	memset(bare + 1024, 'd', 1023);
	memcpy(bare2, bare, ROUTE_BARE_MAX);
	bare2[ROUTE_BARE_MAX - 1] = 'e';
	memset(res, 'r', ROUTE_RESOURCE_MAX);

	for (unsigned i = 0; i < 64; i++) {
		res[ROUTE_RESOURCE_MAX - 1] = (char)(' ' + i);
		assert_int_equal(route_bind(t, bare, ROUTE_BARE_MAX, res, ROUTE_RESOURCE_MAX, 1 + i,
					    CONFLICT_KICK_OLD, 64, NULL), ROUTE_OK);
	}
	assert_int_equal(route_bind(t, bare2, ROUTE_BARE_MAX, res, 1, 500, CONFLICT_KICK_OLD, 64, NULL), ROUTE_OK);

	const struct route_snap *s = route_lookup(t, bare, ROUTE_BARE_MAX);
	assert_non_null(s);
	assert_int_equal(s->bare_len, ROUTE_BARE_MAX);
	assert_int_equal(s->nres, 64);
	assert_int_equal(s->names_len, ROUTE_BARE_MAX + 64 * ROUTE_RESOURCE_MAX);
	assert_memory_equal(route_snap_bare(s), bare, ROUTE_BARE_MAX);
	for (unsigned i = 0; i < 64; i++) {
		res[ROUTE_RESOURCE_MAX - 1] = (char)(' ' + i);
		const struct route_res *r = route_find(s, res, ROUTE_RESOURCE_MAX);
		assert_non_null(r);
		assert_int_equal(r->handle, 1 + i);
		assert_int_equal(r->len, ROUTE_RESOURCE_MAX);
		assert_memory_equal(route_res_name(s, r), res, ROUTE_RESOURCE_MAX);
	}
	assert_null(route_find(s, res, ROUTE_RESOURCE_MAX - 1));
	s = route_lookup(t, bare2, ROUTE_BARE_MAX);
	assert_non_null(s);
	assert_int_equal(s->nres, 1);
	assert_int_equal(s->res[0].handle, 500);
	assert_null(route_lookup(t, bare, ROUTE_BARE_MAX - 1));

	/* unbinding from the middle keeps every other name intact */
	res[ROUTE_RESOURCE_MAX - 1] = (char)(' ' + 10);
	assert_int_equal(route_unbind(t, bare, ROUTE_BARE_MAX, res, ROUTE_RESOURCE_MAX, 11), ROUTE_OK);
	s = route_lookup(t, bare, ROUTE_BARE_MAX);
	assert_int_equal(s->nres, 63);
	for (unsigned i = 0; i < 64; i++) {
		res[ROUTE_RESOURCE_MAX - 1] = (char)(' ' + i);
		const struct route_res *r = route_find(s, res, ROUTE_RESOURCE_MAX);
		if (i == 10) {
			assert_null(r);
		} else {
			assert_non_null(r);
			assert_int_equal(r->handle, 1 + i);
		}
	}
	tfree(bare);
	tfree(bare2);
	tfree(res);
}

struct walk {
	unsigned jids, sessions, stop_after;
	unsigned char seen[20000];
};

static int walk_visit(const struct route_snap *s, void *arg)
{
	struct walk *w = arg;
	unsigned n;
	char bare[64];

	memcpy(bare, route_snap_bare(s), s->bare_len);
	bare[s->bare_len] = '\0';
	if (sscanf(bare, "user%u@", &n) != 1 || n >= 20000 || w->seen[n])
		return -1;
	w->seen[n] = 1;
	w->jids++;
	w->sessions += s->nres;
	if (w->stop_after && w->jids == w->stop_after)
		return 7;
	return 0;
}

static void test_many_jids(void **state)
{
	struct route_table *t = *state;
	enum { N = 20000 };
	char bare[64];
	unsigned sessions = 0, kept = 0;

	for (unsigned i = 0; i < N; i++) {
		int len = snprintf(bare, sizeof bare, "user%u@example.net", i);
		for (unsigned r = 0; r <= i % 3; r++) {
			char res[8] = { (char)('a' + r), 0 };
			assert_int_equal(route_bind(t, bare, (size_t)len, S(res), ((uint64_t)i << 8) | (r + 1),
						    CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
			sessions++;
		}
		if (i % 256 == 0)
			route_thread_quiescent();
	}
	check_counts(t, N, sessions);
	for (unsigned i = 0; i < N; i++) {
		int len = snprintf(bare, sizeof bare, "user%u@example.net", i);
		const struct route_snap *s = route_lookup(t, bare, (size_t)len);
		assert_non_null(s);
		assert_int_equal(s->nres, i % 3 + 1);
		assert_int_equal(s->res[0].handle, ((uint64_t)i << 8) | 1);
	}
	assert_null(route_lookup(t, S("user20000@example.net")));

	struct walk *w = calloc(1, sizeof *w);
	assert_int_equal(route_foreach(t, walk_visit, w), 0);
	assert_int_equal(w->jids, N);
	assert_int_equal(w->sessions, sessions);
	memset(w, 0, sizeof *w);
	w->stop_after = 10;
	assert_int_equal(route_foreach(t, walk_visit, w), 7);
	assert_int_equal(w->jids, 10);
	tfree(w);

	drain();
	assert_int_equal(atomic_load(&live_allocs), 1 + N);

	/* remove all but every 100th JID */
	for (unsigned i = 0; i < N; i++) {
		if (i % 100 == 0) {
			kept += i % 3 + 1;
			continue;
		}
		int len = snprintf(bare, sizeof bare, "user%u@example.net", i);
		for (unsigned r = 0; r <= i % 3; r++) {
			char res[8] = { (char)('a' + r), 0 };
			assert_int_equal(route_unbind(t, bare, (size_t)len, S(res), ((uint64_t)i << 8) | (r + 1)),
					 ROUTE_OK);
		}
		if (i % 256 == 0)
			route_thread_quiescent();
	}
	check_counts(t, N / 100, kept);
	drain();
	assert_int_equal(atomic_load(&live_allocs), 1 + N / 100);
}

static void test_nomem(void **state)
{
	struct route_table *t = *state;
	uint64_t d = 99;

	atomic_store(&fail_mallocs, 1);
	assert_int_equal(route_bind(t, S("u@x"), S("r"), 1, CONFLICT_KICK_OLD, 8, &d), ROUTE_NOMEM);
	assert_int_equal(d, 0);
	assert_null(route_lookup(t, S("u@x")));
	assert_int_equal(route_bind(t, S("u@x"), S("r"), 1, CONFLICT_KICK_OLD, 8, NULL), ROUTE_OK);
	const struct route_snap *s = route_lookup(t, S("u@x"));
	atomic_store(&fail_mallocs, 1);
	assert_int_equal(route_bind(t, S("u@x"), S("r"), 2, CONFLICT_KICK_OLD, 8, &d), ROUTE_NOMEM);
	assert_int_equal(d, 0);
	atomic_store(&fail_mallocs, 1);
	assert_int_equal(route_set_presence(t, S("u@x"), S("r"), 1, true, 1), ROUTE_NOMEM);
	atomic_store(&fail_mallocs, 1);
	assert_int_equal(route_bind(t, S("u@x"), S("q"), 3, CONFLICT_KICK_OLD, 8, &d), ROUTE_NOMEM);
	assert_ptr_equal(route_lookup(t, S("u@x")), s);
	assert_true(snap_has(s, "r", 1));
	/* the last unbind allocates nothing */
	atomic_store(&fail_mallocs, 1);
	assert_int_equal(route_unbind(t, S("u@x"), S("r"), 1), ROUTE_OK);
	atomic_store(&fail_mallocs, 0);
	check_counts(t, 0, 0);
}

/* ---- concurrency ------------------------------------------------------------ */

enum {
	C_JIDS = 64,
	C_RES = 8,
	C_WRITERS = 4,
	C_READERS = 2,
	C_OPS = 20000,
	C_MAXRES = 7,         /* < C_RES: ROUTE_LIMIT happens too */
	C_SECONDS = 40,       /* a bound on wall time, whatever the machine */
};

/* handle = writer+1 | jid | res | seq: a reader can check a handle against
 * the name it is bound to without reading anyone's log. */
static uint64_t c_handle(unsigned w, unsigned jid, unsigned res, unsigned seq)
{
	return ((uint64_t)(w + 1) << 56) | ((uint64_t)jid << 48) | ((uint64_t)res << 40) | seq;
}

static void c_split(uint64_t h, unsigned *w, unsigned *jid, unsigned *res, unsigned *seq)
{
	*w = (unsigned)(h >> 56) - 1;
	*jid = (unsigned)(h >> 48) & 0xff;
	*res = (unsigned)(h >> 40) & 0xff;
	*seq = (unsigned)(h & 0xffffffffu);
}

struct c_rec {            /* one handle, written only by its writer */
	uint8_t jid, res;     /* where it was bound */
	uint8_t bound;        /* route_bind said ROUTE_OK */
	uint8_t unbound;      /* route_unbind said ROUTE_OK */
	uint8_t notfound;     /* unbind or presence said ROUTE_NOTFOUND */
	uint8_t available;    /* the last presence that said ROUTE_OK */
	int8_t priority;
};

struct c_shared {
	struct route_table *t;
	char bare[C_JIDS][32];
	size_t bare_len[C_JIDS];
	char res[C_RES][8];
	struct c_rec rec[C_WRITERS][C_OPS];
	_Atomic uint8_t displaced[C_WRITERS][C_OPS];   /* set by whoever kicked the handle */
	/* Loaded relaxed: these must not give TSan an edge from writers to
	 * readers that the table itself does not make. */
	_Atomic int writers_left;
	_Atomic int readers_ready;
	_Atomic long errors;
	_Atomic long lookups, hits, walks, during;
	struct timespec deadline;
};

struct c_arg {
	struct c_shared *sh;
	unsigned id;
};

static uint64_t c_rand(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static bool c_past(const struct timespec *deadline)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > deadline->tv_sec;
}

#define C_FAIL(sh, ...) do { fprintf(stderr, __VA_ARGS__); atomic_fetch_add(&(sh)->errors, 1); } while (0)

static void *c_writer(void *p)
{
	struct c_arg *a = p;
	struct c_shared *sh = a->sh;
	unsigned w = a->id, seq = 0;
	uint64_t x = 0x9e3779b97f4a7c15u * (w + 1), cur[C_JIDS][C_RES];

	memset(cur, 0, sizeof cur);
	route_thread_register();
	while (atomic_load_explicit(&sh->readers_ready, memory_order_relaxed) < C_READERS && !c_past(&sh->deadline))
		sched_yield();
	for (unsigned op = 0; op < C_OPS && !(op % 256 == 0 && c_past(&sh->deadline)); op++) {
		uint64_t rnd = c_rand(&x);
		unsigned j = rnd % C_JIDS, r = (rnd >> 8) % C_RES, kind = (rnd >> 16) % 4;
		uint64_t h = cur[j][r];

		if (h == 0 || kind < 2) {
			enum conflict_policy pol = (enum conflict_policy)((rnd >> 20) % 3);
			uint64_t d = 1, nh = c_handle(w, j, r, seq);
			enum route_status rc = route_bind(sh->t, sh->bare[j], sh->bare_len[j], sh->res[r],
							  strlen(sh->res[r]), nh, pol, C_MAXRES, &d);
			sh->rec[w][seq].jid = (uint8_t)j;
			sh->rec[w][seq].res = (uint8_t)r;
			if (rc == ROUTE_OK) {
				sh->rec[w][seq].bound = 1;
				if (d) {
					unsigned dw, dj, dr, ds;
					c_split(d, &dw, &dj, &dr, &ds);
					if (pol != CONFLICT_KICK_OLD || dj != j || dr != r)
						C_FAIL(sh, "bad displaced %llx\n", (unsigned long long)d);
					else
						atomic_store_explicit(&sh->displaced[dw][ds], 1, memory_order_relaxed);
				}
				cur[j][r] = nh;
			} else if (rc != ROUTE_CONFLICT && rc != ROUTE_LIMIT) {
				C_FAIL(sh, "bind: %d\n", rc);
			} else if (rc == ROUTE_CONFLICT && pol == CONFLICT_KICK_OLD) {
				C_FAIL(sh, "conflict under KICK_OLD\n");
			}
			seq++;
		} else {
			unsigned hw, hj, hr, hs;
			c_split(h, &hw, &hj, &hr, &hs);
			enum route_status rc;
			if (kind == 2) {
				rc = route_unbind(sh->t, sh->bare[j], sh->bare_len[j], sh->res[r], strlen(sh->res[r]), h);
				if (rc == ROUTE_OK)
					sh->rec[w][hs].unbound = 1;
				cur[j][r] = 0;
			} else {
				bool av = (rnd >> 24) & 1;
				int8_t prio = (int8_t)((rnd >> 32) & 0xff);
				rc = route_set_presence(sh->t, sh->bare[j], sh->bare_len[j], sh->res[r],
							strlen(sh->res[r]), h, av, prio);
				if (rc == ROUTE_OK) {
					sh->rec[w][hs].available = av;
					sh->rec[w][hs].priority = prio;
				}
			}
			if (rc == ROUTE_NOTFOUND) {
				sh->rec[w][hs].notfound = 1;
				cur[j][r] = 0;
			} else if (rc != ROUTE_OK) {
				C_FAIL(sh, "unbind/presence: %d\n", rc);
			}
		}
		route_thread_quiescent();   /* once per "loop iteration", as a worker does */
		if (op % 64 == 63)
			sched_yield();          /* let the readers overlap more of the run */
	}
	route_thread_unregister();
	atomic_fetch_sub_explicit(&sh->writers_left, 1, memory_order_relaxed);
	return NULL;
}

/* "j<n>@...": names are not NUL-terminated, so no sscanf. */
static bool c_parse_jid(const struct route_snap *s, unsigned *jid)
{
	const char *b = route_snap_bare(s);
	unsigned i = 1, n = 0;

	if (s->bare_len < 3 || b[0] != 'j')
		return false;
	for (; i < s->bare_len && b[i] >= '0' && b[i] <= '9' && i < 6; i++)
		n = n * 10 + (unsigned)(b[i] - '0');
	*jid = n;
	return i > 1 && i < s->bare_len && b[i] == '@';
}

/* Everything a reader can check of one snapshot on its own. */
static unsigned c_check_snap(struct c_shared *sh, const struct route_snap *s, int want_jid)
{
	unsigned sum = s->bare_len, navail = 0, nbest = 0, jid;
	int best = -1;
	uint64_t out[C_RES + 1];

	if (s->nres < 1 || s->nres > C_MAXRES) {
		C_FAIL(sh, "nres %u\n", s->nres);
		return 0;
	}
	if (!c_parse_jid(s, &jid) || jid >= C_JIDS ||
	    (want_jid >= 0 && jid != (unsigned)want_jid) || s->bare_len != sh->bare_len[jid] ||
	    memcmp(route_snap_bare(s), sh->bare[jid], s->bare_len) != 0) {
		C_FAIL(sh, "bare\n");
		return 0;
	}
	for (unsigned i = 0; i < s->nres; i++) {
		const struct route_res *r = &s->res[i];
		unsigned hw, hj, hr, hs;
		if (r->handle == 0) {
			C_FAIL(sh, "zero handle\n");
			continue;
		}
		c_split(r->handle, &hw, &hj, &hr, &hs);
		if (hw >= C_WRITERS || hj != jid || hr >= C_RES || hs >= C_OPS ||
		    r->len != strlen(sh->res[hr]) || r->off + r->len > s->names_len ||
		    memcmp(route_res_name(s, r), sh->res[hr], r->len) != 0)
			C_FAIL(sh, "resource/handle mismatch\n");
		for (unsigned k = 0; k < i; k++)
			if (s->res[k].len == r->len &&
			    memcmp(route_res_name(s, &s->res[k]), route_res_name(s, r), r->len) == 0)
				C_FAIL(sh, "duplicate resource\n");
		if (route_find(s, route_res_name(s, r), r->len) != r)
			C_FAIL(sh, "route_find\n");
		sum += r->len;
		if (r->available) {
			navail++;
			if (r->priority < 0)
				continue;
			if (r->priority > best) {
				best = r->priority;
				nbest = 1;
			} else if (r->priority == best) {
				nbest++;
			}
		}
	}
	if (sum != s->names_len || navail != s->navail || nbest != s->nbest || (nbest && best != s->best))
		C_FAIL(sh, "summary\n");
	if (route_pick_handles(s, ROUTE_PICK_BEST, out, C_RES + 1) != nbest)
		C_FAIL(sh, "route_pick_handles(BEST)\n");
	for (unsigned i = 0; i < nbest; i++) {
		bool found = false;
		for (unsigned k = 0; k < s->nres; k++)
			found |= s->res[k].handle == out[i] && s->res[k].available && s->res[k].priority == best;
		if (!found)
			C_FAIL(sh, "route_pick_handles(BEST) handle\n");
	}
	if (route_pick_handles(s, ROUTE_PICK_ALL, out, C_RES + 1) != navail)
		C_FAIL(sh, "route_pick_handles(ALL)\n");
	return s->nres;
}

static uint64_t c_digest(const struct route_snap *s)
{
	uint64_t h = s->nres;
	for (unsigned i = 0; i < s->nres; i++)
		h = h * 31 + s->res[i].handle + (uint64_t)s->res[i].priority * 7 + s->res[i].available;
	return h;
}

struct c_walk {
	struct c_shared *sh;
	unsigned jids;
};

static int c_visit(const struct route_snap *s, void *arg)
{
	struct c_walk *cw = arg;
	c_check_snap(cw->sh, s, -1);
	cw->jids++;
	return 0;
}

static void *c_reader(void *p)
{
	struct c_arg *a = p;
	struct c_shared *sh = a->sh;
	uint64_t x = 0x2545f4914f6cdd1du * (a->id + 7);
	long lookups = 0, hits = 0, walks = 0, during = 0;

	route_thread_register();
	atomic_fetch_add_explicit(&sh->readers_ready, 1, memory_order_relaxed);
	for (unsigned it = 0;; it++) {
		bool running = atomic_load_explicit(&sh->writers_left, memory_order_relaxed) > 0;
		if (!running && it >= 20000)
			break;
		during += running;
		unsigned j = c_rand(&x) % C_JIDS, j2 = (j + 1) % C_JIDS;
		const struct route_snap *s = route_lookup(sh->t, sh->bare[j], sh->bare_len[j]);
		lookups++;
		if (s) {
			hits++;
			uint64_t dig = c_digest(s);
			c_check_snap(sh, s, (int)j);
			/* other work, then the same snapshot again: unchanged, not freed */
			const struct route_snap *s2 = route_lookup(sh->t, sh->bare[j2], sh->bare_len[j2]);
			if (s2)
				c_check_snap(sh, s2, (int)j2);
			if (it % 16 == 0)
				sched_yield();
			if (c_digest(s) != dig)
				C_FAIL(sh, "snapshot changed under a reader\n");
		}
		if (it % 512 == 0) {
			struct c_walk cw = { sh, 0 };
			route_foreach(sh->t, c_visit, &cw);
			walks++;
		}
		if (it % 1024 == 1023) {
			route_thread_offline();
			sched_yield();
			route_thread_online();
		} else if (it % 4 == 3) {
			route_thread_quiescent();
		}
	}
	route_thread_unregister();
	atomic_fetch_add(&sh->lookups, lookups);
	atomic_fetch_add(&sh->hits, hits);
	atomic_fetch_add(&sh->walks, walks);
	atomic_fetch_add(&sh->during, during);
	return NULL;
}

static void test_concurrent(void **state)
{
	struct route_table *t = *state;
	struct c_shared *sh = calloc(1, sizeof *sh);
	pthread_t th[C_WRITERS + C_READERS];
	struct c_arg args[C_WRITERS + C_READERS];

	assert_non_null(sh);
	sh->t = t;
	for (unsigned j = 0; j < C_JIDS; j++)
		sh->bare_len[j] = (size_t)snprintf(sh->bare[j], sizeof sh->bare[j], "j%u@conc.example", j);
	for (unsigned r = 0; r < C_RES; r++)
		snprintf(sh->res[r], sizeof sh->res[r], "r%u", r);
	atomic_store(&sh->writers_left, C_WRITERS);
	clock_gettime(CLOCK_MONOTONIC, &sh->deadline);
	sh->deadline.tv_sec += C_SECONDS;

	/* This thread is registered: offline while it only waits. */
	route_thread_offline();
	for (unsigned i = 0; i < C_WRITERS + C_READERS; i++) {
		args[i].sh = sh;
		args[i].id = i < C_WRITERS ? i : i - C_WRITERS;
		assert_int_equal(pthread_create(&th[i], NULL, i < C_WRITERS ? c_writer : c_reader, &args[i]), 0);
	}
	for (unsigned i = 0; i < C_WRITERS + C_READERS; i++)
		pthread_join(th[i], NULL);
	route_thread_online();
	assert_int_equal(atomic_load(&sh->errors), 0);

	/* Replay the logs: a handle is alive iff bound, not unbound and not
	 * displaced; alive handles are exactly the table's content. */
	unsigned alive_per_slot[C_JIDS][C_RES];
	unsigned alive = 0, expected = 0, jids = 0, binds = 0, kicks = 0;
	memset(alive_per_slot, 0, sizeof alive_per_slot);
	for (unsigned w = 0; w < C_WRITERS; w++) {
		for (unsigned s = 0; s < C_OPS; s++) {
			const struct c_rec *rc = &sh->rec[w][s];
			bool disp = atomic_load(&sh->displaced[w][s]);
			if (!rc->bound) {
				assert_false(disp);
				continue;
			}
			binds++;
			kicks += disp;
			assert_false(rc->unbound && disp);
			if (rc->notfound)
				assert_true(disp);
			if (rc->unbound || disp)
				continue;
			/* alive: it must be in the table where it was bound, with
			 * the presence its writer set last */
			expected++;
			unsigned j = rc->jid, r = rc->res;
			const struct route_snap *sn = route_lookup(t, sh->bare[j], sh->bare_len[j]);
			const struct route_res *rr = sn ? route_find(sn, S(sh->res[r])) : NULL;
			if (rr && rr->handle == c_handle(w, j, r, s)) {
				alive_per_slot[j][r]++;
				alive++;
				assert_int_equal(rr->available, rc->available);
				assert_int_equal(rr->priority, rc->priority);
			}
		}
	}
	unsigned in_table = 0;
	for (unsigned j = 0; j < C_JIDS; j++) {
		const struct route_snap *sn = route_lookup(t, sh->bare[j], sh->bare_len[j]);
		if (sn) {
			jids++;
			in_table += c_check_snap(sh, sn, (int)j);
		}
		for (unsigned r = 0; r < C_RES; r++)
			assert_true(alive_per_slot[j][r] <= 1);
	}
	assert_int_equal(atomic_load(&sh->errors), 0);
	assert_int_equal(alive, expected);   /* every alive handle is in the table */
	assert_int_equal(alive, in_table);   /* and nothing else is */
	check_counts(t, jids, in_table);

	/* memory: the table plus one snapshot per JID, nothing else */
	drain();
	assert_int_equal(atomic_load(&live_allocs), 1 + (long)jids);

	fprintf(stderr, "concurrent: %u binds, %u kicked, %u left in %u JIDs; readers %ld lookups "
		"(%ld while writers ran, %ld hits), %ld walks\n",
		binds, kicks, in_table, jids, atomic_load(&sh->lookups), atomic_load(&sh->during),
		atomic_load(&sh->hits), atomic_load(&sh->walks));
	tfree(sh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bind_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rebind_same_handle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_kick_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflict_refuse_and_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unbind_notfound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_presence_best, setup, teardown),
		cmocka_unit_test_setup_teardown(test_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_snapshot_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_jids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nomem, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
	};
	route_thread_register();
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	route_thread_unregister();
	return rc;
}
