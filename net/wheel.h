/* The timing wheel (types and rationale: net/wheel-t.h). Single-threaded:
 * a wheel belongs to one worker. Times are milliseconds from net_now_ms()
 * (net/net.h), passed in so that tests drive the clock.
 *
 *     wheel_init(&w, net_now_ms());
 *     wheel_handle(&w, T_IDLE, idle_expired);
 *     wheel_timer_init(&s->idle, T_IDLE);
 *     wheel_add(&w, &s->idle, now, 300000);    // arm or re-arm
 *     ... net_poll(loop, ev, max, wheel_next_timeout(&w, now)) ...
 *     wheel_expire(&w, net_now_ms());
 */
#ifndef STANZA_NET_WHEEL_H
#define STANZA_NET_WHEEL_H

#include <stdbool.h>
#include <stddef.h>
#include "net/wheel-t.h"

void wheel_init(struct wheel *w, uint64_t now);

/* Handler for timers of kind `kind` (< WHEEL_KINDS). */
void wheel_handle(struct wheel *w, uint8_t kind,
		  void (*fn)(struct wheel *w, struct wheel_timer *t, uint64_t now));

static inline void wheel_timer_init(struct wheel_timer *t, uint8_t kind)
{
	t->next = NULL;
	t->pprev = NULL;
	t->tick = 0;
	t->kind = kind;
}

static inline bool wheel_armed(const struct wheel_timer *t)
{
	return t->pprev != NULL;
}

/* Arm t to fire delay_ms after now (not earlier, at most one tick later
 * than that, given wheel_expire is called in time). Re-arms an armed timer.
 * delay_ms is capped at about 1.5 years. */
void wheel_add(struct wheel *w, struct wheel_timer *t, uint64_t now, uint64_t delay_ms);

/* Disarm t; nothing if it is not armed. */
void wheel_del(struct wheel *w, struct wheel_timer *t);

/* Run the handlers of every timer due at now, in order of due tick (in no
 * particular order within one tick). A timer armed by a handler for a tick
 * that is already due runs in the same call. Returns how many ran. */
unsigned wheel_expire(struct wheel *w, uint64_t now);

/* Milliseconds until the next wheel_expire has work (0: now), or -1 if no
 * timer is armed: the poll timeout. May be early when the nearest
 * non-empty slot holds only timers of later revolutions; then it is at
 * most one revolution. */
int wheel_next_timeout(const struct wheel *w, uint64_t now);

static inline uint32_t wheel_count(const struct wheel *w)
{
	return w->count;
}

#endif
