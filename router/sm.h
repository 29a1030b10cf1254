/* XEP-0198 stream management for client sessions: acks both ways,
 * the queue of unacknowledged stanzas, detached sessions and resumption
 * (also onto another worker). Private to router/.
 *
 * Counting. h_in counts the client's stanzas the server handled (routed or
 * answered: c2s calls sm_handled once per message/presence/iq after bind);
 * h_out counts what went through session_stanza (router.h), the one door
 * for stanzas to the client, which keeps a copy of each until the client's
 * <a h='...'/> covers it. Both wrap modulo 2^32 (XEP-0198 section 4), so
 * every comparison is on uint32_t differences: the queue holds exactly
 * h_out - acked stanzas.
 *
 * Session life with SM (the session keeps its slot, so its handle and its
 * place in the routing table stay):
 *
 *   ACTIVE    enabled on a connected stream.
 *   DETACHED  the connection dropped (EOF, read/write/TLS error, a client
 *             that stopped reading) on a resumable session: the socket is
 *             closed (conn.id = SM_CONN_DETACHED: no net_* call is ever made
 *             for it again), the session stays bound and available, and
 *             every stanza for it is only queued. After sm_resume_ms (or
 *             the client's smaller 'max') it ends like any session.
 *   MOVED     a new stream resumed it: its state (JID, presence, counters,
 *             queue, IM state) went to the new session, the routing table
 *             names the new handle, and this slot forwards what was still in
 *             flight to the old handle, for SM_MOVED_GRACE_MS, then goes
 *             without a word (no unavailable presence, no leftovers).
 *   RESUMING  the new stream's side while the old session's worker
 *             answers: its input waits (state SS_AUTH_WAIT) as behind an
 *             authentication request.
 *
 * Resumption across workers: the new session's worker (N) finds the old
 * handle in the routing table under the new stream's own bare JID and the
 * resource carried in the SM-ID, and posts MSG_SM_RESUME to the old
 * handle's worker (O), which checks the SM-ID's 128 random bits and the
 * bare JID, builds the state (sm_export) and answers MSG_SM_MOVE; N adopts
 * it and swaps the route to its own handle (route_replace). The state may
 * be far larger than a ring record (sm_max_unacked stanzas), so
 * MSG_SM_MOVE carries a heap block whose ownership passes to N: O wrote it
 * before publishing the record, and the ring's release/acquire pair makes
 * it visible to N. If N is gone when it arrives, the state is adopted by a
 * new detached session on N's worker (session_new_detached): nothing is
 * dropped on the way.
 *
 * Handled means committed (XEP-0198 section 4: the server accepted
 * responsibility). Most stanzas are done when the worker has routed or
 * answered them, but one the worker hands to the control thread as
 * IM_REQ_STANZA (a message stored offline, a subscription request kept
 * for later) is done only when the control thread has served it, and its
 * store write is committed (router/hooks.h). Such a request carries the
 * stanza's position (h_in after counting it) and asks for a completion
 * record (MSGF_IM_CONFIRM → MSG_IM_DONE); the positions still waiting
 * are kept in order in `wait` (one entry per position, with a count: one
 * stanza may post several requests). What the session reports - <a/>,
 * <resumed/> - is sm_h_done: h_in while nothing waits, else the position
 * before the oldest waiting one. The rings are FIFO, so completions come
 * back in order, except around a resumption onto another worker (the old
 * slot forwards the completions addressed to it): they are matched by
 * position, not by order. An <r/> that arrives while positions at or
 * before its own wait is answered when the last of them completes (the
 * client gets its <a/>, late by a store commit, never one that claims
 * too much); a <resume/> likewise waits for them before <resumed/>, so
 * that the client neither resends what was kept nor loses what was not.
 * The hot path (a message to an online session) posts no request and
 * waits for nothing.
 *
 * Leftovers: a session with SM that ends for good (clean close, stream
 * error, kick, shutdown, expiry while detached) posts its unacknowledged
 * stanzas to the control thread as IM_REQ_UNACKED (router/hooks.h) before
 * it leaves the routing table, split over as many requests as ring records
 * need.
 */
#ifndef STANZA_ROUTER_SM_H
#define STANZA_ROUTER_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "router/router-t.h"

#define NS_SM              "urn:xmpp:sm:3"
#define SM_CONN_DETACHED   UINT64_MAX   /* conn.id of a session without a connection: never a real one */
#define SM_TOKEN_LEN       16           /* random bytes in an SM-ID */
#define SM_MOVED_GRACE_MS  10000u       /* a moved slot forwards in-flight stanzas this long */
#define SM_R_EVERY         16u          /* another <r/> after this many stanzas behind an unanswered one */

enum sm_state {
	SM_RESUMING = 1,
	SM_ACTIVE,
	SM_DETACHED,
	SM_MOVED,
};

/* Positions of stanzas whose control-plane requests are not complete. */
struct sm_wait {
	uint32_t pos;                /* h_in when the stanza was counted */
	uint32_t n;                  /* requests outstanding for it */
};

/* Per session, allocated by <enable/> (or <resume/>), freed with the
 * session. Worker thread only. */
struct sm {
	uint8_t state;               /* enum sm_state */
	bool resume;                 /* resumable (<enabled resume='true'/>) */
	bool r_pending;              /* our <r/> is unanswered */
	bool released;               /* DETACHED/MOVED: TLS and buffers freed */
	bool cut;                    /* over a limit: ended at the next timer */
	bool a_owed;                 /* an <r/> waits for completions up to a_at */
	bool resume_owed;            /* <resumed/> waits for every completion */
	uint32_t a_at;               /* h_in when that <r/> arrived */
	uint32_t h_in;               /* client stanzas handled */
	uint32_t h_out;              /* stanzas sent (the send count) */
	uint32_t acked;              /* the client's last h */
	uint32_t r_at;               /* h_out when the last <r/> went out */
	uint32_t resume_ms;          /* how long a detached session waits */
	uint32_t resume_h;           /* RESUMING: the h of the client's <resume/> */
	uint64_t deadline;           /* DETACHED: net_now_ms() when it ends */
	uint64_t moved_to;           /* MOVED: the new handle */
	uint8_t token[SM_TOKEN_LEN]; /* the SM-ID's secret */
	/* The unacknowledged stanzas, oldest first, as records (uint32_t
	 * length, then the bytes) in q[q_head..q_len). */
	char *q;
	size_t q_head, q_len, q_cap;
	/* Waiting positions, oldest first: wait[w_head..w_len). */
	struct sm_wait *wait;
	uint32_t w_head, w_len, w_cap;
};

/* A session whose connection is gone (DETACHED or MOVED). */
static inline bool sm_detached(const struct session *s)
{
	return s->conn.id == SM_CONN_DETACHED;
}

/* Bytes of stanzas kept unacknowledged (the output limit leaves them out). */
static inline size_t sm_queued(const struct session *s)
{
	return s->sm ? s->sm->q_len - s->sm->q_head : 0;
}

/* Stream management is on (for IM_SF_SM). */
static inline bool sm_enabled(const struct session *s)
{
	return s->sm && s->sm->state >= SM_ACTIVE;
}

/* A resumable session on a live stream: a connection it loses (or an
 * idle-ping timeout) detaches it instead of ending it. */
static inline bool sm_resumable(const struct session *s)
{
	return s->sm && s->sm->resume && s->sm->state == SM_ACTIVE;
}

/* The h the session reports: the client stanzas handled and committed. */
static inline uint32_t sm_h_done(const struct sm *m)
{
	return m->w_head == m->w_len ? m->h_in : m->wait[m->w_head].pos - 1;
}

/* ---- c2s.c ---------------------------------------------------------------- */

struct xmlw;
struct xml_view;

/* The <sm/> feature, in the features after authentication. */
void sm_features(struct session *s, struct xmlw *x);

/* A top-level element in NS_SM from an authenticated client (in w->view). */
void sm_nonza(struct session *s, struct xml_view *v);

/* One client stanza handled (bound sessions; counts only with SM on). */
static inline void sm_handled(struct session *s)
{
	if (s->sm && (s->sm->state == SM_ACTIVE || s->sm->state == SM_DETACHED))
		s->sm->h_in++;
}

/* ---- im.c ----------------------------------------------------------------- */

/* The session posts an IM_REQ_STANZA for the client stanza being handled:
 * true (and *pos, for im_req.sm_h) if the request must confirm its
 * completion before the stanza counts as handled. */
bool sm_confirm(struct session *s, uint32_t *pos);

/* ---- worker.c ------------------------------------------------------------- */

/* A MSG_IM_DONE for s: the request for position pos is complete. */
void sm_done(struct session *s, uint32_t pos);

/* session_stanza for a session with s->sm: count, keep, write (or only
 * keep while detached, or forward once moved). */
void sm_stanza(struct session *s, const struct iovec *iov, int iovcnt);

/* session_close is closing s (s->sm set). True: it was detached instead
 * (the connection is closed, the session lives on); false: the close goes
 * on, and the leftovers were posted if there were any. */
bool sm_close(struct session *s);

/* The session's timer fired; true if it was stream management's. */
bool sm_timeout(struct session *s);

/* MSG_SM_RESUME and MSG_SM_MOVE records. */
void sm_record(struct worker *w, const struct ring_rec *rec);

/* With the session (session_free). */
void sm_free(struct session *s);

/* Tests: the SM-ID of a session with resumption on, into out (NUL-terminated);
 * its length, 0 if none or cap is too small. */
size_t sm_id(const struct session *s, char *out, size_t cap);

#endif
