/* One client connection of the bench: TCP connect, stream header,
 * STARTTLS or direct TLS, SASL (PLAIN, SCRAM-SHA-1, SCRAM-SHA-256), resource
 * binding; or, in raw mode, the forwarder's pairing line and a bare stream
 * header. Then the steady state: the scenario appends stanzas with
 * xc_send, the engine writes them once per loop iteration, and every
 * complete top-level stanza received goes to scenario->on_stanza.
 *
 * Memory: an idle connection holds this struct (a few hundred bytes, the
 * stream's namespace context included) and OpenSSL's session; the receive
 * buffer exists only while a partial stanza waits for its end, the send
 * buffers only while bytes wait for the socket (unless keep_tx asks to keep
 * them, for connections that send all the time).
 *
 * Owned by one engine thread; nothing here is thread-safe.
 */
#ifndef STANZA_BENCH_XCLIENT_H
#define STANZA_BENCH_XCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "net/net-t.h"
#include "parser/xml-t.h"

struct eng_thread;
struct tls_conn;
struct scram_state;

enum xc_state {
	XC_CONNECTING = 0,
	XC_TLS_DIRECT,      /* handshake before any XMPP */
	XC_HEADER,          /* our header sent, waiting for theirs + features */
	XC_STARTTLS,        /* <starttls/> sent, waiting for <proceed/> */
	XC_TLS,             /* STARTTLS handshake */
	XC_AUTH,            /* SASL exchange */
	XC_BIND,            /* bind iq sent */
	XC_READY,           /* the scenario's */
	XC_DEAD,            /* closed; freed at the end of the iteration */
};

struct xbuf {
	char *p;
	uint32_t len, cap;
};

struct xc {
	struct eng_thread *t;
	struct net_conn conn;   /* on t->loop while open */
	uint8_t open;           /* conn is ours to close */
	uint8_t state;
	uint8_t raw;            /* speed-of-light forwarder: no XMPP handshake */
	uint8_t secure;         /* TLS is up */
	uint8_t authed;
	uint8_t keep_tx;        /* keep the send buffers allocated between writes */
	uint8_t want_out;       /* a short or refused write: wait for WRITABLE */
	uint8_t in_dirty;
	uint8_t dead_err;       /* enum bench_err + 1 of the close, 0: asked for */
	uint32_t slot;          /* index in t->conns */
	uint32_t user;          /* account index (user_prefix<user>) */
	uint32_t peer;          /* scenario: the partner's account index */
	uint64_t t_start;       /* connect started (login duration) */
	uint64_t deadline;      /* of the current step; 0: none */

	struct tls_conn *tls;
	struct scram_state *scram;  /* during SASL only */
	struct xml_framer fr;
	struct xml_nsctx ns;

	struct xbuf rx;         /* plaintext not yet framed (a partial stanza) */
	struct xbuf out;        /* plaintext queued by the protocol/scenario */
	struct xbuf wq;         /* TLS: ciphertext waiting for the socket */
	struct xc *dirty_next;
	struct xc *dead_next;

	/* scenario fields */
	struct xc *partner;     /* pairs/raw: the other end, same thread */
	uint32_t outstanding;   /* pairs/raw: messages in flight towards partner */
	uint32_t aux;
	uint64_t next_t;        /* fanout: contacts whose presence arrived */
	uint8_t *seen;          /* fanout: a bit per contact whose presence arrived (freed with c) */
};

/* A connection for account `user`, connect started now (or queued until
 * the socket is up); registered with the thread. NULL: failure, counted. */
struct xc *xc_new(struct eng_thread *t, uint32_t user, bool raw, uint32_t raw_pair, unsigned raw_side);

/* Queue bytes (a serialised stanza) for the next write. */
void xc_send(struct xc *c, const char *p, size_t n);
/* Room for n more bytes at the end of the queue; commit with xc_commit. */
char *xc_reserve(struct xc *c, size_t n);
void xc_commit(struct xc *c, size_t n);

/* Close: err -1 for an orderly end (</stream:stream> is sent first), else
 * the enum bench_err that ended it (counted here). */
void xc_close(struct xc *c, int err);

/* Engine hooks: a loop event (NET_EV_CONNECTED, READABLE, WRITABLE), the
 * write at the end of an iteration, and freeing a dead connection. */
void xc_on_event(struct xc *c, int type);
void xc_flush(struct xc *c);
void xc_free(struct xc *c);

/* The SCRAM cache (engine.scache): SaltedPassword per account. */
struct scram_cache {
	uint8_t key[16];        /* hash of mechanism, iterations, salt */
	uint8_t salted[32];
	uint8_t valid;
};

/* Account name and bare JID of index i. */
size_t xc_username(const struct eng_thread *t, uint32_t i, char *buf, size_t cap);
size_t xc_jid(const struct eng_thread *t, uint32_t i, char *buf, size_t cap);

/* The value of attribute name in the start tag at p[0..n) (either quote),
 * raw; false when absent. */
bool xc_attr(const char *p, size_t n, const char *name, const char **val, size_t *vlen);

#endif
