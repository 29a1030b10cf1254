/* The hashed timing wheel: see net/wheel-t.h. */
#include <assert.h>
#include <string.h>

#include "net/wheel.h"

#define SLOT_MASK   (WHEEL_SLOTS - 1u)
#define BUSY_WORDS  (WHEEL_SLOTS / 64u)
/* Keeps due ticks within half the uint32 range of `done`, where the
 * wrap-safe comparisons below hold. */
#define MAX_DELAY_TICKS (1u << 30)

_Static_assert((WHEEL_SLOTS & SLOT_MASK) == 0 && WHEEL_SLOTS >= 64, "WHEEL_SLOTS: a power of two, at least 64");
_Static_assert(sizeof(struct wheel_timer) == 24, "struct wheel_timer is meant to be 24 bytes");

/* a is at or before b, across uint32 wrap */
static inline bool tick_le(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) <= 0;
}

static inline uint32_t tick_floor(const struct wheel *w, uint64_t now)
{
	return now <= w->base_ms ? 0 : (uint32_t)((now - w->base_ms) / WHEEL_TICK_MS);
}

static inline void busy_set(struct wheel *w, uint32_t i)
{
	w->busy[i / 64] |= 1ull << (i % 64);
}

static inline void busy_clear(struct wheel *w, uint32_t i)
{
	w->busy[i / 64] &= ~(1ull << (i % 64));
}

static inline void list_push(struct wheel_timer **head, struct wheel_timer *t)
{
	t->next = *head;
	if (t->next)
		t->next->pprev = &t->next;
	*head = t;
	t->pprev = head;
}

static inline void list_unlink(struct wheel_timer *t)
{
	*t->pprev = t->next;
	if (t->next)
		t->next->pprev = t->pprev;
	t->next = NULL;
	t->pprev = NULL;
}

void wheel_init(struct wheel *w, uint64_t now)
{
	memset(w, 0, sizeof(*w));
	w->base_ms = now;
}

void wheel_handle(struct wheel *w, uint8_t kind,
		  void (*fn)(struct wheel *w, struct wheel_timer *t, uint64_t now))
{
	assert(kind < WHEEL_KINDS);
	w->fn[kind].fn = fn;
}

void wheel_del(struct wheel *w, struct wheel_timer *t)
{
	uint32_t i;

	if (t->pprev == NULL)
		return;
	i = t->tick & SLOT_MASK;
	list_unlink(t);
	/* Also right while wheel_expire has the slot's list on its stack:
	 * the bit is already clear then unless timers went back in. */
	if (w->slot[i] == NULL)
		busy_clear(w, i);
	w->count--;
}

void wheel_add(struct wheel *w, struct wheel_timer *t, uint64_t now, uint64_t delay_ms)
{
	uint64_t due_ms = now + delay_ms;
	uint64_t ticks;
	uint32_t tick, i;

	wheel_del(w, t);
	ticks = due_ms <= w->base_ms ? 0 : (due_ms - w->base_ms + WHEEL_TICK_MS - 1) / WHEEL_TICK_MS;
	if (ticks > (uint64_t)w->done + MAX_DELAY_TICKS)
		ticks = (uint64_t)w->done + MAX_DELAY_TICKS;
	tick = (uint32_t)ticks;
	/* Ticks up to `done` have been expired: the earliest left is done+1. */
	if (tick_le(tick, w->done))
		tick = w->done + 1;
	t->tick = tick;
	i = tick & SLOT_MASK;
	list_push(&w->slot[i], t);
	busy_set(w, i);
	w->count++;
}

/* Run the due timers of tick t's slot. */
static unsigned expire_slot(struct wheel *w, uint32_t t, uint64_t now)
{
	uint32_t i = t & SLOT_MASK;
	struct wheel_timer *pending = w->slot[i];
	unsigned ran = 0;

	if (pending == NULL)
		return 0;
	/* Take the list off the slot so that handlers adding to this slot
	 * (a later revolution) do not feed the loop; handlers deleting a
	 * timer still on `pending` unlink it through its pprev as usual. */
	w->slot[i] = NULL;
	pending->pprev = &pending;
	busy_clear(w, i);
	while (pending) {
		struct wheel_timer *x = pending;
		list_unlink(x);
		if (tick_le(x->tick, t)) {
			w->count--;
			ran++;
			w->fn[x->kind].fn(w, x, now);
		} else {
			list_push(&w->slot[i], x);
			busy_set(w, i);
		}
	}
	return ran;
}

unsigned wheel_expire(struct wheel *w, uint64_t now)
{
	uint32_t cur = tick_floor(w, now);
	unsigned ran = 0;

	/* After a gap of more than a revolution every slot is visited once;
	 * what is overdue by whole revolutions runs in slot order. */
	if ((int32_t)(cur - w->done) > (int32_t)WHEEL_SLOTS)
		w->done = cur - WHEEL_SLOTS;
	while ((int32_t)(cur - w->done) > 0) {
		w->done++;
		ran += expire_slot(w, w->done, now);
	}
	return ran;
}

int wheel_next_timeout(const struct wheel *w, uint64_t now)
{
	uint32_t start = (w->done + 1) & SLOT_MASK;
	uint32_t wi = start / 64, bit = start % 64;

	if (w->count == 0)
		return -1;
	for (uint32_t k = 0; k <= BUSY_WORDS; k++) {
		uint32_t j = (wi + k) % BUSY_WORDS;
		uint64_t m = w->busy[j];
		if (k == 0)
			m &= ~0ull << bit;
		else if (k == BUSY_WORDS)
			m &= (1ull << bit) - 1;
		if (m) {
			uint32_t dist = (j * 64 + (uint32_t)__builtin_ctzll(m) - start) & SLOT_MASK;
			uint64_t due = w->base_ms + ((uint64_t)w->done + 1 + dist) * WHEEL_TICK_MS;
			return due <= now ? 0 : (int)(due - now);
		}
	}
	return 0;   /* count says armed but no bit: cannot happen; do not sleep */
}
