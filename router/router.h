/* Functions shared by the router's own files (worker.c, c2s.c, deliver.c).
 * Private to router/: cmd/ and control/ use router/server.h.
 *
 * Every function here runs on the worker thread that owns the session.
 * Sessions are never freed while a worker processes events: session_close
 * marks the session dead and the loop frees it at the end of the
 * iteration, so code that may have closed a session checks session_dead().
 */
#ifndef STANZA_ROUTER_ROUTER_H
#define STANZA_ROUTER_ROUTER_H

#include <stdatomic.h>
#include <sys/uio.h>
#include "router/router-t.h"
#include "router/server.h"

struct route_table;
struct ctl_state;

struct server {
	struct server_config cfg;
	const struct router_hooks *hooks;
	_Atomic(struct tls_server *) tls;     /* published; replaced by server_set_tls */
	struct route_table *routes;
	unsigned nworkers;
	struct worker *workers;
	uint8_t *ring_mem;
	size_t ring_bytes;                    /* per ring: fits the largest stanza twice */
	struct ring *rings;                   /* (nworkers + 1)^2, [from * (n + 1) + to] */
	int ctl_efd;                          /* eventfd: workers → control thread */
	_Atomic bool shutdown_req;
	struct ctl_state *ctl;                /* the control thread's IM state (worker.c), lazily */
	_Atomic uint32_t carbons;             /* sessions with XEP-0280 on: 0 spares senders a lookup */
	bool started;
	char (*domain)[CONFIG_DOMAIN_MAX + 1];/* = cfg.vhost[i].domain */
	uint16_t domain_len[CONFIG_MAX_VHOSTS];
};


/* Single writer: a relaxed load and store, no locked instruction. */
static inline void stat_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline void stat_sub(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n, memory_order_relaxed);
}

/* ---- worker.c ------------------------------------------------------------ */

uint64_t session_handle(const struct session *s);
struct session *worker_session(struct worker *w, uint64_t handle);

static inline bool session_dead(const struct session *s)
{
	return s->conn.id == 0;
}

/* Queue bytes for the client (plaintext; encrypted at flush when TLS). A
 * client that lets more than cfg.max_output pile up is cut off. */
void session_write(struct session *s, const void *p, size_t n);

/* Queue one complete stanza for the client (routed stanzas, replies,
 * pushes): everything that counts as a stanza for XEP-0198 goes through
 * here, everything else (stream header, features, SASL, SM nonzas,
 * stream errors) through session_write. */
void session_stanza(struct session *s, const struct iovec *iov, int iovcnt);
void session_writev(struct session *s, const struct iovec *iov, int iovcnt);

/* Send what is queued now (before switching to TLS). */
void session_flush(struct session *s);

/* Close at once: unbind, drop buffers, close the connection. */
void session_close(struct session *s, const char *why);

/* Close once the queued bytes are out (or after a short grace). */
void session_close_after_flush(struct session *s);

/* (Re)arm the session's one timer, ms from now; 0 disarms. */
void session_timer(struct session *s, uint32_t ms);

/* Start TLS on a plaintext connection (after <proceed/> went out). */
int session_start_tls(struct session *s);

/* The worker's loop without the network, for tests that drive the
 * router with bytes: open a session as if accepted on listener `listener`
 * (its kind decides plaintext or direct TLS), feed it what the network
 * would deliver (ciphertext when TLS), and run the end of an iteration
 * (rings, timers, flush through the loop's sendv, freeing). */
struct session *router_session_open(struct worker *w, struct net_conn conn, const struct net_addr *peer,
				    unsigned listener);
void router_session_bytes(struct session *s, const uint8_t *p, size_t n);

/* A bound session without a connection (sm.c: the state of a resumed
 * session whose new stream went away meanwhile); conn.id is
 * SM_CONN_DETACHED. peer may be NULL. */
struct session *session_new_detached(struct worker *w, const struct net_addr *peer);
void router_worker_step(struct worker *w);

/* Post a record to thread `to` (a worker index, or srv->nworkers for the
 * control thread). Copies the iovecs; keeps order per destination even
 * when the ring is full. */
void worker_post(struct worker *w, unsigned to, uint16_t type, uint16_t flags, uint64_t arg,
		 const struct iovec *iov, int iovcnt);

/* Session buffers (freed when they empty). */
bool sbuf_reserve(struct sbuf *b, size_t n);
void sbuf_drop(struct sbuf *b, size_t n);

/* ---- c2s.c --------------------------------------------------------------- */

/* A connection was accepted (plaintext or direct TLS). */
void c2s_accepted(struct session *s);

/* Plaintext bytes from the client. Returns how many were consumed: fewer
 * than n only when the stream switched to TLS mid-buffer (the rest is
 * ciphertext) or the session closed. */
size_t c2s_input(struct session *s, const uint8_t *p, size_t n);

/* The TLS handshake completed. */
void c2s_tls_established(struct session *s);

/* The peer closed TCP (or TLS) without closing the stream. */
void c2s_eof(struct session *s);

void c2s_timeout(struct session *s);
void c2s_auth_answer(struct session *s, const uint8_t *ans, size_t len);

/* Parse what waited in the session's buffer behind an answer (state back
 * from SS_AUTH_WAIT to SS_OPEN first). */
void c2s_resume_input(struct session *s);
void c2s_kick(struct session *s, const char *condition);

/* The bind completed after waiting for the IM state (router/im.c sent the
 * result): input resumes, idle pings start. */
void c2s_bind_done(struct session *s);

/* Send <stream:error> (our header first if it is not out yet) and close. */
void c2s_stream_error(struct session *s, const char *condition);

/* Leave the routing table (session closing). */
void c2s_unbind(struct session *s);

/* ---- deliver.c ----------------------------------------------------------- */

/* Stanza kinds and types as delivery sees them. */
enum kind { K_MESSAGE, K_PRESENCE, K_IQ };

enum stype {
	T_NONE,           /* no 'type' */
	T_NORMAL, T_CHAT, T_GROUPCHAT, T_HEADLINE,
	T_UNAVAILABLE, T_SUBSCRIBE, T_SUBSCRIBED, T_UNSUBSCRIBE, T_UNSUBSCRIBED, T_PROBE,
	T_GET, T_SET, T_RESULT,
	T_ERROR,
	T_INVALID,
};

struct xml_view;
struct im_peer;
struct route_snap;

enum kind deliver_kind(struct xml_view *v);
enum stype deliver_type(enum kind k, struct xml_view *v);
const char *deliver_kind_name(enum kind k);

/* Send iovecs to one session: local ones now (through im_deliver when the
 * session's imf says so; peer describes the stanza, NULL: parse it),
 * others through the ring. false if the handle is stale on this worker. */
bool deliver_forward(struct worker *w, uint64_t h, const struct iovec *iov, int n, uint16_t flags,
		     const struct im_peer *peer);

/* To every session of snap that route_picks(how) chooses but skip;
 * returns how many took it. how: enum route_pick. */
unsigned deliver_fan_out(struct worker *w, const struct route_snap *snap, int how, uint64_t skip,
			 const struct iovec *iov, int n, uint16_t flags, const struct im_peer *peer);

/* Bytes to a full JID if it is bound. */
void deliver_to_full(struct worker *w, const char *jid, size_t len, const char *bytes, size_t blen,
		     const struct im_peer *peer);

/* An error reply to the stanza in v (kind k) with the given from/to, the
 * defined condition and an optional application child (raw XML). Returns
 * its length in buf, 0 if it did not fit. */
size_t deliver_error(struct xml_view *v, enum kind k, const char *from, size_t from_len,
		     const char *to, size_t to_len, const char *etype, const char *cond, const char *app,
		     char *buf, size_t cap);

/* A stanza from a bound client session, in w->view. */
void deliver_from_client(struct session *s, struct xml_view *v);

/* A MSG_STANZA record from another worker. */
void deliver_record(struct worker *w, const struct ring_rec *rec);

/* Start a reply to the stanza in v into buf: <name [from] [to] type='type'
 * id='the same id'>, left open for the payload (xmlw, parser/xmlw.h). */
struct xmlw;
void reply_begin(struct xmlw *x, char *buf, size_t cap, struct xml_view *v, const char *name,
		 const char *type, const char *from, size_t from_len, const char *to, size_t to_len);

/* The session left the routing table while available: its unavailable
 * presence goes to the user's other resources. */
void deliver_gone(struct session *s);

#endif
