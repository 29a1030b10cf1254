/* The router's own types: server, workers, sessions. Private to router/
 * (cmd/ and control/ use router/server.h).
 *
 * A session is addressed across cores by a handle, (worker, slot,
 * generation) packed in 64 bits, never by a pointer: a stanza for a session
 * that closed meanwhile finds a newer generation in the slot (or none) and
 * is handled per the RFC instead of touching freed memory.
 */
#ifndef STANZA_ROUTER_ROUTER_T_H
#define STANZA_ROUTER_ROUTER_T_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include "net/net-t.h"
#include "net/wheel-t.h"
#include "parser/xml-t.h"
#include "router/config-t.h"
#include "router/hooks.h"
#include "router/ring-t.h"

#define ROUTER_MAX_WORKERS 64

/* ---- handles ------------------------------------------------------------ */

static inline uint64_t handle_make(unsigned worker, uint32_t slot, uint32_t gen)
{
	return ((uint64_t)worker << 56) | ((uint64_t)(slot & 0xffffffu) << 32) | gen;
}
static inline unsigned handle_worker(uint64_t h) { return (unsigned)(h >> 56); }
static inline uint32_t handle_slot(uint64_t h) { return (uint32_t)(h >> 32) & 0xffffffu; }
static inline uint32_t handle_gen(uint64_t h) { return (uint32_t)h; }

/* ---- ring records ------------------------------------------------------- */

enum msg_type {
	MSG_STANZA = 1,   /* worker → worker: arg = destination handle; data = the stanza, from/to already final */
	MSG_KICK,         /* → worker: arg = handle; data = stream error condition name */
	MSG_AUTH_REQ,     /* worker → control: arg = handle; data = struct net_addr + the hooks' request */
	MSG_AUTH_ANS,     /* control → worker: arg = handle; data = the answer */
	MSG_SHUTDOWN,     /* control → worker */
	MSG_IM_REQ,       /* worker → control: arg = handle (0: none); data = struct im_req, jid, stanza */
	MSG_IM_EV,        /* → worker: flags = enum im_ev_type; arg = handle; data = the event's payload
			   * (from the control thread, or from a worker: IM_EV_PRESENCE_TO probes) */
	MSG_TO_SESSION,   /* control → worker: arg = handle, bound or not; data = a complete stanza */
	MSG_SM_RESUME,    /* worker → worker: arg = the old handle; XEP-0198 resumption request (sm.c) */
	MSG_SM_MOVE,      /* worker → worker: arg = the resuming handle; the session state, or a refusal */
	MSG_IM_DONE,      /* control → worker (or a moved session's worker → the new one's): arg = handle;
			   * data = uint32_t im_req.sm_h of a served MSGF_IM_CONFIRM request (XEP-0198) */
};

/* Control → worker records larger than a ring record travel as fragments:
 * every one but the last has RECF_MORE in flags (the control thread is the
 * ring's only producer, so a record's fragments are consecutive). */
#define RECF_MORE 0x8000u

/* MSG_STANZA flags: what the receiver needs if the destination is gone. */
#define MSGF_BARE_FALLBACK 1u   /* a message that may go to other resources of the bare JID */
#define MSGF_RETRIED       2u   /* already re-sent once after a stale handle */

/* MSG_IM_REQ flags. */
#define MSGF_IM_CONFIRM    1u   /* answer with MSG_IM_DONE once served (and flushed): XEP-0198 h */

/* ---- buffers ------------------------------------------------------------ */

/* A byte buffer owned by one session, freed when it empties so that idle
 * sessions hold none. */
struct sbuf {
	char *p;
	uint32_t len;
	uint32_t cap;
};

/* ---- sessions ----------------------------------------------------------- */

enum sess_state {
	SS_HEADER = 0,     /* waiting for a stream header (initial, or after a restart) */
	SS_TLS_HANDSHAKE,  /* <proceed/> sent, or direct TLS: waiting for the handshake */
	SS_OPEN,           /* stream open: negotiating (STARTTLS, SASL, bind) or bound */
	SS_AUTH_WAIT,      /* an authentication request is with the control thread */
	SS_IM_WAIT,        /* bound, waiting for IM_EV_STATE: the bind result and input wait */
	SS_CLOSING,        /* stream closed or errored: flushing, then close */
};

enum sess_flags {
	SF_TLS        = 1u << 0,   /* TLS established */
	SF_AUTHED     = 1u << 1,   /* SASL succeeded */
	SF_BOUND      = 1u << 2,   /* a resource is bound: stanzas are routed */
	SF_HDR_SENT   = 1u << 3,   /* our stream header for the current stream is out */
	SF_DIRTY      = 1u << 4,   /* on the worker's flush list */
	SF_WAIT_WRITE = 1u << 5,   /* a short write: waiting for WRITABLE */
	SF_AVAILABLE  = 1u << 6,   /* sent available presence */
	SF_DIRECT_TLS = 1u << 7,   /* XEP-0368 listener */
	SF_EOF        = 1u << 8,   /* the peer closed its side */
	SF_CLOSED_OUT = 1u << 9,   /* our </stream:stream> is queued */
};

struct worker;
struct im_sess;
struct sm;

struct session {
	struct worker *w;
	uint32_t slot;
	uint32_t gen;
	struct net_conn conn;
	uint16_t flags;              /* enum sess_flags */
	uint8_t state;               /* enum sess_state */
	uint8_t vhost;               /* index into cfg.vhost */
	uint8_t auth_failures;
	int8_t priority;
	uint8_t listener;
	uint8_t imf;                 /* IMG_* (router/im.h): 0 unless a delivery must look at im */
	struct xml_framer framer;
	struct wheel_timer timer;
	struct tls_conn *tls;
	struct sbuf in;              /* bytes of an unfinished stanza (plaintext) */
	struct sbuf out;             /* bytes to send (ciphertext when TLS) */
	struct sbuf pout;            /* plaintext waiting for encryption (TLS only) */
	char *jid;                   /* full JID once bound, NUL-terminated; bare part is jid[0..bare_len) */
	uint16_t jid_len;
	uint16_t bare_len;
	uint16_t user_len;           /* localpart after SASL (jid holds "local@domain" until bind) */
	uint8_t lang_len;
	char lang[7];                /* xml:lang of the stream, for our header ("en" ...) */
	uint8_t *auth_state;         /* AUTH_STATE_MAX bytes during SASL only */
	const char *pending_failure; /* a throttled SASL failure waiting for its timer */
	struct session *dirty_next;
	struct session *dead_next;
	struct net_addr peer;
	char stream_id[17];
	struct xml_nsctx nsctx;      /* the client's stream header declarations */
	struct im_sess *im;          /* IM state once bound (router/im.h); NULL without the im hook */
	struct sm *sm;               /* XEP-0198 state once enabled (router/sm.h) */
};

/* ---- workers ------------------------------------------------------------ */

struct worker_stats {
	_Atomic uint64_t connections;
	_Atomic uint64_t sessions;
	_Atomic uint64_t accepted;
	_Atomic uint64_t stanzas_in;
	_Atomic uint64_t stanzas_out;
	_Atomic uint64_t bytes_in;
	_Atomic uint64_t bytes_out;
	_Atomic uint64_t stream_errors;
	_Atomic uint64_t auth_failures;
};

/* A ring record that did not fit: kept in order until the ring has room. */
struct overflow {
	struct overflow *next;
	uint16_t type;
	uint16_t flags;
	uint32_t len;
	uint64_t arg;
	uint8_t data[];
};

struct server;

struct worker {
	unsigned id;
	struct server *srv;
	pthread_t thread;
	struct net_loop *loop;
	struct wheel wheel;
	/* Sessions by slot; free slots chained through free_slots. */
	struct session **slots;
	uint32_t nslots;
	uint32_t *free_slots;
	uint32_t nfree;
	uint32_t *gens;              /* generation per slot, survives the session */
	struct session *dirty;       /* sessions with output to flush */
	struct session *dead;        /* closed this iteration, freed at its end */
	size_t ovf_total;            /* bytes waiting in overflow lists */
	/* Rings: in[j] from thread j (workers 0..n-1, control = n), out[j] to j. */
	struct ring **in;
	struct ring **out;
	struct overflow **ovf_head;  /* per destination, in order */
	struct overflow **ovf_tail;
	bool *out_pending;           /* published to j this iteration: wake j */
	/* Scratch, one per worker. */
	uint8_t *rx;                 /* raw bytes from net_recv */
	uint8_t *plain;              /* decrypted bytes */
	char *scratch;               /* building replies and rewritten stanzas */
	size_t scratch_cap;
	struct xml_view view;
	struct xml_token *tok;
	struct xml_ns *ns;
	uint16_t *scope;
	struct sbuf ctl_frag;        /* a control record arriving in fragments (RECF_MORE) */
	struct worker_stats st;
	_Atomic bool stop;
	bool stopping;
	uint64_t stop_deadline;
};

#endif
