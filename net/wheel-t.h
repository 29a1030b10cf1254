/* Types of the timing wheel (functions: net/wheel.h).
 *
 * One wheel per worker, for every timeout the worker keeps (stream
 * negotiation, whitespace pings, shaping, retransmission later in net/dpdk).
 * Hashed: WHEEL_SLOTS lists, one per tick modulo WHEEL_SLOTS; a timer sits
 * in the slot of its due tick and carries that tick, so a timer many
 * revolutions away is skipped (one compare) each time its slot comes round
 * and is never written until it is due. Add, delete and re-arm are O(1);
 * precision is one tick, and a timer never fires early.
 */
#ifndef STANZA_NET_WHEEL_T_H
#define STANZA_NET_WHEEL_T_H

#include <stdint.h>

#define WHEEL_TICK_MS   64u
#define WHEEL_SLOTS     512u     /* a power of two: 32.8 s per revolution */
#define WHEEL_KINDS     16u      /* handlers per wheel */

/* Embedded in its owner (container_of to get back), 24 bytes. Initialise
 * with wheel_timer_init before first use; after that it is either armed
 * (in one slot list) or not. The owner must wheel_del it before freeing
 * the memory. */
struct wheel_timer {
	struct wheel_timer *next;
	struct wheel_timer **pprev;   /* NULL: not armed */
	uint32_t tick;                /* due tick, counted from wheel.base_ms */
	uint8_t  kind;                /* index of the handler in wheel.fn */
	uint8_t  pad[3];
};

struct wheel;

/* Called by wheel_expire for a due timer, which is already disarmed: the
 * handler may re-arm it, free its owner, and add or delete any timer. now is
 * the time given to wheel_expire. */
struct wheel_handler {
	void (*fn)(struct wheel *w, struct wheel_timer *t, uint64_t now);
};

struct wheel {
	struct wheel_timer *slot[WHEEL_SLOTS];
	uint64_t busy[WHEEL_SLOTS / 64];   /* bit per non-empty slot, for next_timeout */
	uint64_t base_ms;                  /* time of tick 0 */
	uint32_t done;                     /* last tick expired */
	uint32_t count;                    /* armed timers */
	struct wheel_handler fn[WHEEL_KINDS];
};

#endif
