/* The routing table: bare JID -> its bound sessions (types: route-t.h).
 *
 * Concurrency contract:
 *   readers   route_lookup, route_foreach, route_count and the route_snap
 *             helpers: any thread registered with route_thread_register and
 *             online. Lock-free, no allocation. A snapshot pointer is
 *             borrowed until the thread's next route_thread_quiescent or
 *             route_thread_offline: never keep one across a loop iteration.
 *   writers   route_bind, route_unbind, route_set_presence: any registered,
 *             online thread (the worker where the session lives). Writes to
 *             JIDs of one shard serialise on that shard's spinlock; they
 *             allocate one snapshot (malloc) and hand the old one to
 *             call_rcu. They never wait for a grace period.
 *   control   route_table_new, route_table_free: one thread, no concurrent
 *             user (start-up and shutdown).
 *
 * Reclamation: old snapshots go to liburcu's default call_rcu thread, which
 * liburcu starts on the first call_rcu of the process, runs grace periods in
 * batches and frees them there. rcu_barrier() (from a registered thread)
 * waits until every snapshot handed over so far is freed.
 *
 * The memory ordering TSan is told about (liburcu is not instrumented, so the
 * edges it makes inside cds_lfht and the grace period are invisible to it):
 * a writer fills a snapshot, then makes a release store of its node's
 * published flag before cds_lfht_add_replace; every reader path (the key
 * match in route_lookup, route_foreach) makes an acquire load of that flag
 * before reading anything else of the snapshot. For reclamation, under TSan
 * route_thread_quiescent/offline/unregister release a sync object that the
 * call_rcu callback acquires before free(). Without TSan those are exactly
 * rcu_quiescent_state/rcu_thread_offline/rcu_unregister_thread.
 */
#ifndef STANZA_ROUTER_ROUTE_H
#define STANZA_ROUTER_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "router/config-t.h"
#include "router/route-t.h"

/* ---- threads ------------------------------------------------------------ */

/* Every thread that reads or writes a table uses these in place of the
 * urcu-qsbr calls of the same meaning (so that TSan builds see the
 * reader-to-reclaimer edge). A worker calls route_thread_quiescent once per
 * loop iteration and brackets blocking waits (epoll_wait) with
 * route_thread_offline / route_thread_online. */
void route_thread_register(void);
void route_thread_unregister(void);
void route_thread_quiescent(void);
void route_thread_offline(void);
void route_thread_online(void);

/* Wait until every registered thread has passed a quiescent state since
 * the call: whatever it unpublished before, no reader still holds. For the
 * control thread's rare swaps (certificates); the caller must be offline
 * (liburcu refuses to wait from an online QSBR thread). */
void route_synchronize(void);

/* ---- the table (control thread) ---------------------------------------- */

/* expected: bare JIDs to size the hash table for (it grows and shrinks by
 * itself). NULL if out of memory. */
struct route_table *route_table_new(size_t expected);

/* Remove everything (old snapshots go to call_rcu) and free the table. No
 * other thread may use it any more; the caller must be registered. Call
 * rcu_barrier() afterwards to wait for the snapshots to be freed. */
void route_table_free(struct route_table *t);

/* ---- readers ------------------------------------------------------------ */

/* The snapshot of a bare JID, or NULL if no session is bound to it.
 * Borrowed until the caller's next quiescent state. */
const struct route_snap *route_lookup(struct route_table *t, const char *bare, size_t len);

/* Call visit once per bare JID, in no particular order (a JID whose
 * snapshot is replaced during the walk is seen once, old or new; one whose
 * last session leaves and a new one binds during the walk may be seen twice
 * or not at all); stops at the first non-zero return and
 * returns it, else 0. Snapshots are borrowed as from route_lookup; the walk
 * holds the caller in the read side throughout, so the caller must not
 * announce a quiescent state in visit. For the admin "list sessions". */
int route_foreach(struct route_table *t, int (*visit)(const struct route_snap *snap, void *arg), void *arg);

/* Bare JIDs and bound sessions: a statistic, approximate while writers run. */
void route_count(struct route_table *t, uint64_t *jids, uint64_t *sessions);

static inline const char *route_snap_bare(const struct route_snap *s)
{
	return (const char *)&s->res[s->nres];
}

static inline const char *route_res_name(const struct route_snap *s, const struct route_res *r)
{
	return route_snap_bare(s) + r->off;
}

/* The session bound to resource res, or NULL. */
static inline const struct route_res *route_find(const struct route_snap *s, const char *res, size_t len)
{
	for (unsigned i = 0; i < s->nres; i++) {
		const struct route_res *r = &s->res[i];
		if (r->len == len && memcmp(route_res_name(s, r), res, len) == 0)
			return r;
	}
	return NULL;
}

/* Which of a bare JID's sessions a stanza to the bare JID goes to
 * (RFC 6121 8.5.2.1): */
enum route_pick {
	ROUTE_PICK_BEST = 1,     /* messages: available, priority >= 0, the highest priority (ties: all) */
	ROUTE_PICK_AVAILABLE,    /* headlines: available, priority >= 0 */
	ROUTE_PICK_ALL,          /* presence: every available session */
};

static inline bool route_picks(const struct route_snap *s, const struct route_res *r, enum route_pick how)
{
	if (!r->available)
		return false;
	switch (how) {
	case ROUTE_PICK_BEST:
		return s->nbest && r->priority == s->best;
	case ROUTE_PICK_AVAILABLE:
		return r->priority >= 0;
	case ROUTE_PICK_ALL:
		return true;
	}
	return false;
}

/* The first min(n, max) handles route_picks chooses, in bind order, into
 * out; returns n. Callers that forward walk the snapshot with route_picks
 * instead (no width limit). */
static inline unsigned route_pick_handles(const struct route_snap *s, enum route_pick how, uint64_t *out, unsigned max)
{
	unsigned n = 0;
	for (unsigned i = 0; i < s->nres; i++) {
		if (route_picks(s, &s->res[i], how)) {
			if (n < max)
				out[n] = s->res[i].handle;
			n++;
		}
	}
	return n;
}

/* ---- writers ------------------------------------------------------------ */

/* In all three: bare is 1..ROUTE_BARE_MAX bytes, res 1..ROUTE_RESOURCE_MAX
 * bytes, handle non-zero (asserted); all are copied, nothing is kept. */

/* Bind resource res of bare to handle; the new session is unavailable with
 * priority 0. If res is bound to another handle (RFC 6120 7.7.2.2):
 *   CONFLICT_KICK_OLD    the new handle takes it over and the old one is
 *                        returned in *displaced: the caller sends that
 *                        session <conflict/> and closes it;
 *   CONFLICT_REFUSE_NEW  ROUTE_CONFLICT;
 *   CONFLICT_RENAME_NEW  ROUTE_CONFLICT too: the caller makes up another
 *                        resource and calls again (the table never invents
 *                        names, so the one it returns to the client is the
 *                        one bound).
 * Binding a resource already bound to this same handle is ROUTE_OK with no
 * change. A new resource when the JID has max_resources (capped at
 * ROUTE_MAX_RESOURCES) is ROUTE_LIMIT. *displaced (may be NULL) is 0 unless
 * a session was kicked. */
enum route_status route_bind(struct route_table *t, const char *bare, size_t bare_len,
			     const char *res, size_t res_len, uint64_t handle,
			     enum conflict_policy policy, unsigned max_resources, uint64_t *displaced);

/* Unbind res if it is still bound to handle (else ROUTE_NOTFOUND: the
 * session was displaced meanwhile). The last resource takes the snapshot
 * with it. */
enum route_status route_unbind(struct route_table *t, const char *bare, size_t bare_len,
			       const char *res, size_t res_len, uint64_t handle);

/* Record the session's presence: available or not, and its priority.
 * ROUTE_NOTFOUND as for route_unbind. */
enum route_status route_set_presence(struct route_table *t, const char *bare, size_t bare_len,
				     const char *res, size_t res_len, uint64_t handle,
				     bool available, int8_t priority);

/* Record whether the session has XEP-0280 carbons enabled (a flag every
 * worker reads in the snapshot). ROUTE_NOTFOUND as for route_unbind. */
enum route_status route_set_carbons(struct route_table *t, const char *bare, size_t bare_len,
				    const char *res, size_t res_len, uint64_t handle, bool carbons);

/* Hand resource res over from handle to new_handle in one swap (XEP-0198
 * resumption: the session moved to another slot or worker); presence and
 * priority stay. ROUTE_NOTFOUND as for route_unbind. */
enum route_status route_replace(struct route_table *t, const char *bare, size_t bare_len,
				const char *res, size_t res_len, uint64_t handle, uint64_t new_handle);

#endif
