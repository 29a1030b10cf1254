/* SPSC record ring: see ring-t.h. Function names state the contract:
 * ring_sp_* only from the one producer thread, ring_sc_* only from the one
 * consumer thread.
 *
 * Memory ordering: ring_sp_publish's release store of head pairs with the
 * acquire load of head in ring_sc_peek (the consumer sees the record bytes
 * written before publish); ring_sc_release's release store of tail pairs
 * with the acquire load of tail in ring_sp_reserve (the producer overwrites
 * space only after the consumer is done reading it).
 */
#ifndef STANZA_ROUTER_RING_H
#define STANZA_ROUTER_RING_H

#include <stdbool.h>
#include <stddef.h>
#include "router/ring-t.h"

/* mem: size bytes, size a power of two >= 256, 8-byte aligned; the ring
 * borrows it for its life. Returns 0, or -1 if size is unusable. */
int ring_init(struct ring *r, void *mem, uint64_t size);

/* Largest len one record may have. */
uint32_t ring_max_record(const struct ring *r);

/* Reserve a record of len data bytes; returns its data pointer (8-byte
 * aligned) to fill, or NULL when the ring is full (nothing reserved).
 * Reserved records become visible to the consumer at ring_sp_publish. */
void *ring_sp_reserve(struct ring *r, uint16_t type, uint16_t flags, uint64_t arg, uint32_t len);

/* Publish everything reserved so far. Returns true if anything new was
 * published (the caller may need to wake the consumer). */
bool ring_sp_publish(struct ring *r);

/* The next published record, or NULL. Valid until ring_sc_release. */
const struct ring_rec *ring_sc_peek(struct ring *r);

/* Step past the record ring_sc_peek returned. */
void ring_sc_next(struct ring *r, const struct ring_rec *rec);

/* Give the space of every record stepped past back to the producer. */
void ring_sc_release(struct ring *r);

/* Is nothing published that the consumer has not read? Either side; a hint. */
bool ring_sc_empty(struct ring *r);

#endif
