/* Single-producer single-consumer ring of variable-length records.
 *
 * One ring per ordered pair of threads (worker → worker, worker → control,
 * control → worker). The producer reserves records and publishes them in a
 * burst with one release store; the consumer reads them in place and
 * releases the space in a burst with one release store. No locks, no
 * allocation after ring_init, no syscalls: waking a sleeping consumer is
 * the caller's business (net wake).
 */
#ifndef STANZA_ROUTER_RING_T_H
#define STANZA_ROUTER_RING_T_H

#include <stdatomic.h>
#include <stdint.h>

/* A record: a 16-byte header, then len bytes, padded to 8. */
struct ring_rec {
	uint32_t len;      /* bytes of data[] */
	uint16_t type;     /* the caller's; RING_PAD is reserved */
	uint16_t flags;    /* the caller's */
	uint64_t arg;      /* the caller's (a session handle, usually) */
	uint8_t data[];
};

#define RING_PAD 0

struct ring {
	/* Written by the producer, read by the consumer. */
	_Alignas(64) _Atomic uint64_t head;   /* bytes published */
	/* The producer's own. */
	_Alignas(64) uint64_t wpos;           /* bytes reserved (>= head) */
	uint64_t tail_seen;                   /* last tail the producer loaded */
	/* Written by the consumer, read by the producer. */
	_Alignas(64) _Atomic uint64_t tail;   /* bytes released */
	/* The consumer's own. */
	_Alignas(64) uint64_t rpos;           /* bytes read (>= tail) */
	uint64_t head_seen;                   /* last head the consumer loaded */
	/* Constant after ring_init. */
	_Alignas(64) uint8_t *buf;
	uint64_t size;                        /* power of two */
};

#endif
