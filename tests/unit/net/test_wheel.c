/* Unit tests for net/wheel.h, on a clock the test drives. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "net/wheel.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

static uint64_t rng_state = 0x243f6a8885a308d3ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

/* A timer's owner in these tests. */
struct item {
	struct wheel_timer t;
	uint64_t deadline;   /* ms the timer was asked for */
	uint64_t fired_at;   /* 0: not yet */
	unsigned fired;
	int rearm;           /* times the handler re-arms it */
	uint32_t rearm_ms;
	struct item *victim; /* deleted by the handler */
	uint32_t seq;
};

static uint32_t fire_seq;

static void on_fire(struct wheel *w, struct wheel_timer *t, uint64_t now)
{
	struct item *it = container_of(t, struct item, t);

	assert_false(wheel_armed(t));
	it->fired++;
	it->fired_at = now;
	it->seq = fire_seq++;
	if (it->victim)
		wheel_del(w, &it->victim->t);
	if (it->rearm > 0) {
		it->rearm--;
		it->deadline = now + it->rearm_ms;
		wheel_add(w, t, now, it->rearm_ms);
	}
}

static void setup_wheel(struct wheel *w, uint64_t now)
{
	wheel_init(w, now);
	wheel_handle(w, 0, on_fire);
	fire_seq = 0;
}

static void item_init(struct item *it)
{
	memset(it, 0, sizeof(*it));
	wheel_timer_init(&it->t, 0);
}

static void arm(struct wheel *w, struct item *it, uint64_t now, uint64_t delay)
{
	it->deadline = now + delay;
	wheel_add(w, &it->t, now, delay);
}

static void test_layout(void **state)
{
	(void)state;
	assert_int_equal(sizeof(struct wheel_timer), 24);
}

static void test_add_del_rearm(void **state)
{
	struct wheel w;
	struct item a, b;
	uint64_t now = 1000000;

	(void)state;
	setup_wheel(&w, now);
	item_init(&a);
	item_init(&b);
	assert_int_equal(wheel_next_timeout(&w, now), -1);

	arm(&w, &a, now, 100);
	arm(&w, &b, now, 200);
	assert_true(wheel_armed(&a.t));
	assert_int_equal(wheel_count(&w), 2);
	wheel_del(&w, &b.t);
	wheel_del(&w, &b.t);              /* twice: a no-op */
	assert_false(wheel_armed(&b.t));
	assert_int_equal(wheel_count(&w), 1);

	/* re-arm later: the old due time no longer fires it */
	arm(&w, &a, now, 1000);
	assert_int_equal(wheel_count(&w), 1);
	assert_int_equal(wheel_expire(&w, now + 500), 0);
	assert_int_equal(a.fired, 0);
	assert_int_equal(wheel_expire(&w, now + 1000 + WHEEL_TICK_MS), 1);
	assert_int_equal(a.fired, 1);
	assert_int_equal(wheel_count(&w), 0);
	assert_int_equal(wheel_next_timeout(&w, now), -1);
	assert_int_equal(wheel_expire(&w, now + 100000), 0);
	assert_int_equal(b.fired, 0);
}

static void test_never_early_at_most_a_tick_late(void **state)
{
	enum { N = 2000 };
	struct wheel w;
	struct item *it = calloc(N, sizeof(*it));
	uint64_t now = 5;

	(void)state;
	assert_non_null(it);
	setup_wheel(&w, now);
	for (int i = 0; i < N; i++) {
		item_init(&it[i]);
		arm(&w, &it[i], now, rnd() % 20000);
	}
	/* step the clock 1..17 ms at a time */
	for (uint64_t end = now + 20000 + 2 * WHEEL_TICK_MS; now < end; now += 1 + rnd() % 17)
		wheel_expire(&w, now);
	for (int i = 0; i < N; i++) {
		assert_int_equal(it[i].fired, 1);
		assert_true(it[i].fired_at >= it[i].deadline);
		/* one tick, plus the clock step that crossed it */
		assert_true(it[i].fired_at < it[i].deadline + WHEEL_TICK_MS + 17);
		/* order: a timer due a whole tick earlier fired earlier */
		for (int j = i + 1; j < i + 8 && j < N; j++) {
			if (it[i].deadline + WHEEL_TICK_MS <= it[j].deadline)
				assert_true(it[i].seq < it[j].seq);
			if (it[j].deadline + WHEEL_TICK_MS <= it[i].deadline)
				assert_true(it[j].seq < it[i].seq);
		}
	}
	assert_int_equal(wheel_count(&w), 0);
	free(it);
}

static void test_far_future(void **state)
{
	struct wheel w;
	struct item a, b, c;
	uint64_t now = 0, rev = (uint64_t)WHEEL_SLOTS * WHEEL_TICK_MS;
	int timeout;

	(void)state;
	setup_wheel(&w, now);
	item_init(&a);
	item_init(&b);
	item_init(&c);
	arm(&w, &a, now, 10 * rev + 5);           /* ten revolutions away */
	arm(&w, &b, now, 10 * rev + 5 + 3 * WHEEL_TICK_MS);
	arm(&w, &c, now, 86400000ull * 30);        /* a month */
	timeout = wheel_next_timeout(&w, now);
	assert_true(timeout >= 0 && timeout <= (int)rev);
	/* the slot comes round nine times without firing them */
	for (; now < 10 * rev; now += WHEEL_TICK_MS) {
		wheel_expire(&w, now);
		assert_int_equal(a.fired + b.fired, 0);
	}
	for (; now <= 10 * rev + 5 + 4 * WHEEL_TICK_MS; now += 7)
		wheel_expire(&w, now);
	assert_int_equal(a.fired, 1);
	assert_int_equal(b.fired, 1);
	assert_true(a.seq < b.seq);
	assert_int_equal(c.fired, 0);
	/* a jump of days: c fires on the first expire past its time */
	assert_int_equal(wheel_expire(&w, 86400000ull * 30 - 1000), 0);
	assert_int_equal(wheel_expire(&w, 86400000ull * 31), 1);
	assert_int_equal(c.fired, 1);
}

static void test_next_timeout(void **state)
{
	struct wheel w;
	struct item a;
	uint64_t now = 1000;
	int t;

	(void)state;
	setup_wheel(&w, now);
	item_init(&a);
	arm(&w, &a, now, 1000);
	t = wheel_next_timeout(&w, now);
	assert_true(t >= 1000 && t <= 1000 + (int)WHEEL_TICK_MS);
	t = wheel_next_timeout(&w, now + 2000);   /* late: now */
	assert_int_equal(t, 0);
	wheel_del(&w, &a.t);
	assert_int_equal(wheel_next_timeout(&w, now), -1);
	/* delay 0 is due at the next tick */
	arm(&w, &a, now, 0);
	t = wheel_next_timeout(&w, now);
	assert_true(t >= 0 && t <= (int)WHEEL_TICK_MS);
	wheel_expire(&w, now + t);
	assert_int_equal(a.fired, 1);
}

static void test_handlers_rearm_and_delete(void **state)
{
	struct wheel w;
	struct item self, victim, killer, zero;
	uint64_t now = 0;

	(void)state;
	setup_wheel(&w, now);
	item_init(&self);
	item_init(&victim);
	item_init(&killer);
	item_init(&zero);

	self.rearm = 5;
	self.rearm_ms = 300;
	arm(&w, &self, now, 300);

	/* killer and victim due in the same tick: whichever runs first, the
	 * victim must not run after being deleted. */
	killer.victim = &victim;
	arm(&w, &killer, now, 640);
	arm(&w, &victim, now, 640);

	/* a handler that re-arms itself with 0 every time must not loop
	 * inside one expire */
	zero.rearm = 1000;
	zero.rearm_ms = 0;
	arm(&w, &zero, now, 10);

	for (; now < 3000; now += 10) {
		unsigned zbefore = zero.fired;
		wheel_expire(&w, now);
		assert_true(zero.fired - zbefore <= 1);
	}
	assert_int_equal(self.fired, 6);
	assert_int_equal(killer.fired, 1);
	assert_true(victim.fired <= 1);
	if (victim.fired)
		assert_true(victim.seq < killer.seq);
	assert_false(wheel_armed(&victim.t));
	assert_true(zero.fired > 10);

	/* a handler deleting itself after re-arming is fine too */
	wheel_del(&w, &zero.t);
	assert_int_equal(wheel_count(&w), 0);
}

/* 100k random operations against a reference: a timer fires only while the
 * reference has it armed, never before its deadline, and no later than the
 * first expire a tick past it; a deleted or re-armed timer never fires for
 * its old deadline. */
enum { REF_N = 4096 };
static bool ref_armed[REF_N];
static struct item *ref_items;

static void on_fire_ref(struct wheel *w, struct wheel_timer *t, uint64_t now)
{
	struct item *it = container_of(t, struct item, t);
	size_t i = (size_t)(it - ref_items);

	(void)w;
	assert_true(i < REF_N);
	assert_true(ref_armed[i]);
	assert_true(now >= it->deadline);
	ref_armed[i] = false;
	it->fired++;
}

static void test_random_against_reference(void **state)
{
	enum { OPS = 100000 };
	struct wheel w;
	uint64_t now = 123456789;
	unsigned fired = 0, armed_total = 0;

	(void)state;
	ref_items = calloc(REF_N, sizeof(*ref_items));
	assert_non_null(ref_items);
	memset(ref_armed, 0, sizeof(ref_armed));
	wheel_init(&w, now);
	wheel_handle(&w, 1, on_fire_ref);
	for (int i = 0; i < REF_N; i++) {
		item_init(&ref_items[i]);
		ref_items[i].t.kind = 1;
	}

	for (int op = 0; op < OPS; op++) {
		uint32_t i = rnd() % REF_N, r = rnd() % 100;
		if (r < 55) {
			uint64_t d = rnd() % 8 == 0 ? rnd() % 200000 : rnd() % 3000;
			arm(&w, &ref_items[i], now, d);
			ref_armed[i] = true;
			armed_total++;
		} else if (r < 80) {
			wheel_del(&w, &ref_items[i].t);
			ref_armed[i] = false;
		} else {
			now += rnd() % 40;
			wheel_expire(&w, now);
			uint32_t cnt = 0;
			for (int k = 0; k < REF_N; k++) {
				assert_int_equal(wheel_armed(&ref_items[k].t), ref_armed[k]);
				if (ref_armed[k])
					assert_true(ref_items[k].deadline + WHEEL_TICK_MS > now);
				cnt += ref_armed[k];
			}
			assert_int_equal(cnt, wheel_count(&w));
		}
	}
	now += 300000;
	wheel_expire(&w, now);
	assert_int_equal(wheel_count(&w), 0);
	for (int k = 0; k < REF_N; k++) {
		assert_false(ref_armed[k]);
		fired += ref_items[k].fired;
	}
	assert_true(fired > 0 && fired <= armed_total);
	free(ref_items);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_add_del_rearm),
		cmocka_unit_test(test_never_early_at_most_a_tick_late),
		cmocka_unit_test(test_far_future),
		cmocka_unit_test(test_next_timeout),
		cmocka_unit_test(test_handlers_rearm_and_delete),
		cmocka_unit_test(test_random_against_reference),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
