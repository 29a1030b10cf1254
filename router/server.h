/* The router as a whole: workers, the routing table, the rings between
 * threads. cmd/stanzad makes one struct server and runs the control thread
 * (its own main thread) beside the workers.
 *
 * Threads:
 *   workers      one per configured core, started by server_start; each owns
 *                its listeners (SO_REUSEPORT), connections, timers, rings'
 *                write sides; they never block.
 *   control      the caller's thread that calls server_ctl_* and the admin
 *                functions below; it may block (store, PBKDF2, admin I/O).
 *   anything else may call server_shutdown's signal-safe half,
 *   server_request_shutdown.
 */
#ifndef STANZA_ROUTER_SERVER_H
#define STANZA_ROUTER_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "router/config-t.h"
#include "router/hooks.h"

struct server;
struct tls_server;

/* Build everything a worker needs and bind every listener (so that an
 * address in use is reported here, before anything runs): the routing
 * table, rings, per-worker loops. cfg is copied. tls: the certificates
 * (one reference is taken; NULL: no TLS at all, for tests of plaintext
 * parsing only — STARTTLS is then not offered and nobody can
 * authenticate). hooks: borrowed for the server's life. NULL with a
 * reason in err on failure. */
struct server *server_new(const struct server_config *cfg, struct tls_server *tls,
			  const struct router_hooks *hooks, char *err, size_t errlen);

/* Start the worker threads. 0 or -1 (reason logged). */
int server_start(struct server *s);

/* Async-signal-safe: ask for a shutdown (SIGTERM). The control thread
 * then calls server_shutdown. */
void server_request_shutdown(struct server *s);
bool server_shutdown_requested(struct server *s);

/* Every worker sends <system-shutdown/> and </stream:stream> on every
 * stream, flushes for at most grace_ms, closes, and exits; joined here. */
void server_shutdown(struct server *s, uint32_t grace_ms);

/* After server_shutdown (or instead of server_start). */
void server_free(struct server *s);

/* Replace the certificates (SIGHUP): new connections use tls; existing ones
 * keep theirs. Takes a reference on tls, drops the server's on the old
 * one after every worker has passed a quiescent state. Control thread. */
void server_set_tls(struct server *s, struct tls_server *tls);

/* The first bound port of listener i of worker 0 (tests bind port 0). */
int server_listener_port(struct server *s, unsigned listener);

/* ---- the control thread ------------------------------------------------ */

/* Call once on the control thread before the functions below (registers it
 * with RCU so it may read the routing table). */
void server_ctl_thread_init(struct server *s);
void server_ctl_thread_exit(struct server *s);

/* A file descriptor that becomes readable when workers have posted
 * requests (an eventfd). */
int server_ctl_fd(struct server *s);

/* Serve every waiting request (authentication through hooks->auth.serve)
 * and send each answer back to its session's worker. Returns how many were
 * served. Also announces a quiescent state. */
size_t server_ctl_process(struct server *s);

/* The control thread's way to reach sessions (router/hooks.h, struct
 * im_out) outside a hook call, e.g. for an admin command; NULL if out of
 * memory. What it posts is published by the next server_ctl_process or by
 * server_ctl_publish. */
struct im_out;
const struct im_out *server_ctl_im_out(struct server *s);
void server_ctl_publish(struct server *s);

/* ---- administration (control thread) ------------------------------------ */

struct server_worker_stats {
	uint64_t connections;     /* open now */
	uint64_t sessions;        /* bound resources now */
	uint64_t accepted;        /* since start */
	uint64_t stanzas_in;      /* since start */
	uint64_t stanzas_out;
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t stream_errors;
	uint64_t auth_failures;
};

/* Counters of worker i (relaxed reads: each counter is exact, the set is
 * not a snapshot). Returns the number of workers; fills out when i is
 * below it. */
unsigned server_stats(struct server *s, unsigned i, struct server_worker_stats *out);

struct server_session_info {
	const char *jid;          /* full JID, borrowed for the callback */
	size_t jid_len;
	unsigned worker;
	int priority;
	bool available;
};

/* Call cb for every bound session. Returns how many. */
size_t server_sessions(struct server *s,
		       void (*cb)(void *arg, const struct server_session_info *si), void *arg);

/* Close the session bound to this full JID (or every session of this bare
 * JID) with the stream error condition (e.g. "policy-violation",
 * "conflict"). Returns how many sessions were told. */
size_t server_kick(struct server *s, const char *jid, size_t len, const char *condition);

#endif
