/* Types of the routing table (functions: router/route.h).
 *
 * The table maps a bare JID ("local@domain", already prepared: compared as
 * bytes) to a snapshot of the sessions bound to it. A snapshot is one
 * allocation, immutable once published: a writer that binds, unbinds or
 * changes presence builds a new one and swaps it in (copy-on-write), so a
 * reader always sees every resource of a JID as of one instant. Readers take
 * no lock; old snapshots are freed after an RCU grace period (urcu-qsbr).
 */
#ifndef STANZA_ROUTER_ROUTE_T_H
#define STANZA_ROUTER_ROUTE_T_H

#include <stdint.h>

/* The results of the writing calls, documented once:
 *   ROUTE_OK        done (or nothing to do: the state asked for was there)
 *   ROUTE_NOTFOUND  no such JID or resource, or the resource is bound to
 *                   another handle now (the session was displaced)
 *   ROUTE_CONFLICT  route_bind: the resource is bound to another session and
 *                   the policy keeps the old one; nothing changed
 *   ROUTE_LIMIT     route_bind: the JID has max_resources sessions already
 *   ROUTE_NOMEM     malloc failed; nothing changed
 */
enum route_status {
	ROUTE_OK = 0,
	ROUTE_NOTFOUND,
	ROUTE_CONFLICT,
	ROUTE_LIMIT,
	ROUTE_NOMEM,
};

#define ROUTE_BARE_MAX      2047u   /* RFC 7622: localpart 1023 + '@' + domainpart 1023 */
#define ROUTE_RESOURCE_MAX  1023u   /* RFC 7622 3.4 */
#define ROUTE_MAX_RESOURCES 1024u   /* hard cap on route_bind's max_resources */
#define ROUTE_SHARDS        64u     /* writer locks; a power of two */

/* One bound resource (16 bytes). */
struct route_res {
	uint64_t handle;     /* the session: (worker, slot, generation), opaque here; never 0 */
	uint32_t off;        /* its name: route_res_name() */
	uint16_t len;        /* 1..ROUTE_RESOURCE_MAX */
	int8_t priority;     /* RFC 6121 4.7.2.3; 0 until the first presence */
	uint8_t available : 1;   /* has sent available presence */
	uint8_t carbons : 1;     /* XEP-0280 enabled: any worker sends it copies */
	uint8_t flags_pad_ : 6;
};

/* A published snapshot: every session of one bare JID. Read-only for
 * everybody; borrowed from the table until the reading thread's next
 * quiescent state (route_thread_quiescent, route_thread_offline).
 * Layout: this header, res[nres], then names_len bytes of names: the bare
 * JID at offset 0, each resource at its off (none NUL-terminated). */
struct route_snap {
	uint64_t hash;       /* of the bare JID, with the table's seed */
	uint32_t names_len;  /* bare_len + every resource's len */
	uint16_t bare_len;   /* 1..ROUTE_BARE_MAX */
	uint16_t nres;       /* >= 1: a JID without sessions has no snapshot */
	uint16_t navail;     /* sessions with available set */
	uint16_t nbest;      /* available sessions with priority == best (0: none with priority >= 0) */
	int8_t best;         /* highest priority >= 0 among available sessions; meaningful if nbest */
	uint8_t pad_;
	uint16_t ncarbons;   /* sessions with carbons set: 0 spares the walk */
	uint8_t pad2_[4];
	struct route_res res[];
};

/* The table: opaque, defined in route.c (it holds liburcu types). */
struct route_table;

#endif
