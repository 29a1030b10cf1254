/* The SPSC record ring: layout, wraparound with and without pad records,
 * a full ring, and a producer and a consumer on two threads (run it under
 * TSan: the acquire/release pairs documented in router/ring.h are what
 * makes the payload visible). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "router/ring.h"

static _Alignas(64) uint8_t mem[4096];

static void test_init_rejects_bad_sizes(void **state)
{
	struct ring r;
	(void)state;
	assert_int_equal(ring_init(&r, mem, 100), -1);    /* too small */
	assert_int_equal(ring_init(&r, mem, 1000), -1);   /* not a power of two */
	assert_int_equal(ring_init(&r, mem + 4, 256), -1);/* misaligned */
	assert_int_equal(ring_init(&r, mem, 4096), 0);
	assert_int_equal(ring_max_record(&r), 2048 - 16);
}

static void test_fifo_and_fields(void **state)
{
	struct ring r;
	(void)state;
	ring_init(&r, mem, 4096);
	for (uint32_t i = 0; i < 10; i++) {
		uint8_t *d = ring_sp_reserve(&r, 7, (uint16_t)i, 1000 + i, i);
		assert_non_null(d);
		assert_int_equal((uintptr_t)d & 7, 0);
		memset(d, (int)i, i);
	}
	/* Nothing is visible before publish. */
	assert_null(ring_sc_peek(&r));
	assert_true(ring_sp_publish(&r));
	assert_false(ring_sp_publish(&r));   /* nothing new */
	for (uint32_t i = 0; i < 10; i++) {
		const struct ring_rec *rec = ring_sc_peek(&r);
		assert_non_null(rec);
		assert_int_equal(rec->type, 7);
		assert_int_equal(rec->flags, i);
		assert_int_equal(rec->arg, 1000 + i);
		assert_int_equal(rec->len, i);
		for (uint32_t k = 0; k < i; k++)
			assert_int_equal(rec->data[k], i);
		ring_sc_next(&r, rec);
	}
	assert_null(ring_sc_peek(&r));
	ring_sc_release(&r);
	assert_true(ring_sc_empty(&r));
}

static void test_full_then_space_after_release(void **state)
{
	struct ring r;
	unsigned n = 0;
	(void)state;
	ring_init(&r, mem, 1024);
	while (ring_sp_reserve(&r, 1, 0, n, 48))   /* 64 bytes each */
		n++;
	assert_int_equal(n, 1024 / 64);
	ring_sp_publish(&r);
	/* Reading without releasing gives no room back. */
	const struct ring_rec *rec = ring_sc_peek(&r);
	ring_sc_next(&r, rec);
	assert_null(ring_sp_reserve(&r, 1, 0, 0, 48));
	ring_sc_release(&r);
	assert_non_null(ring_sp_reserve(&r, 1, 0, 99, 48));
	/* Too large for any ring of this size. */
	assert_null(ring_sp_reserve(&r, 1, 0, 0, ring_max_record(&r) + 1));
}

/* Records that do not fit before the end wrap to the start behind a pad
 * record (or an 8-byte gap too small for one); every size from 0 to 200
 * across many laps comes out intact and in order. */
static void test_wraparound_every_size(void **state)
{
	struct ring r;
	uint64_t seq_in = 0, seq_out = 0;
	(void)state;
	ring_init(&r, mem, 512);
	for (unsigned lap = 0; lap < 2000; lap++) {
		uint32_t len = (uint32_t)((lap * 37) % 201);
		uint8_t *d = ring_sp_reserve(&r, 2, 0, seq_in, len);
		if (!d) {
			ring_sp_publish(&r);
			const struct ring_rec *rec;
			while ((rec = ring_sc_peek(&r)) != NULL) {
				assert_int_equal(rec->arg, seq_out);
				for (uint32_t k = 0; k < rec->len; k++)
					assert_int_equal(rec->data[k], (uint8_t)(seq_out + k));
				seq_out++;
				ring_sc_next(&r, rec);
			}
			ring_sc_release(&r);
			d = ring_sp_reserve(&r, 2, 0, seq_in, len);
			assert_non_null(d);
		}
		for (uint32_t k = 0; k < len; k++)
			d[k] = (uint8_t)(seq_in + k);
		seq_in++;
	}
	ring_sp_publish(&r);
	const struct ring_rec *rec;
	while ((rec = ring_sc_peek(&r)) != NULL) {
		assert_int_equal(rec->arg, seq_out);
		seq_out++;
		ring_sc_next(&r, rec);
	}
	assert_int_equal(seq_in, seq_out);
}

#define THREAD_RECORDS 200000u

static struct ring tr;
static _Alignas(64) uint8_t tmem[8192];

static uint32_t len_of(uint64_t seq)
{
	return (uint32_t)((seq * 2654435761u) >> 7) % 300;
}

static void *producer(void *arg)
{
	uint64_t seq = 0;
	(void)arg;
	while (seq < THREAD_RECORDS) {
		uint32_t len = len_of(seq);
		uint8_t *d = ring_sp_reserve(&tr, 3, 0, seq, len);
		if (!d) {
			ring_sp_publish(&tr);
			sched_yield();
			continue;
		}
		for (uint32_t i = 0; i < len; i++)
			d[i] = (uint8_t)(seq + i);
		if ((++seq & 7) == 0)
			ring_sp_publish(&tr);   /* bursts */
	}
	ring_sp_publish(&tr);
	return NULL;
}

static void test_two_threads(void **state)
{
	pthread_t t;
	uint64_t seq = 0;
	(void)state;
	ring_init(&tr, tmem, sizeof(tmem));
	assert_int_equal(pthread_create(&t, NULL, producer, NULL), 0);
	while (seq < THREAD_RECORDS) {
		const struct ring_rec *rec = ring_sc_peek(&tr);
		if (!rec) {
			ring_sc_release(&tr);
			sched_yield();
			continue;
		}
		assert_int_equal(rec->arg, seq);
		assert_int_equal(rec->len, len_of(seq));
		for (uint32_t i = 0; i < rec->len; i++)
			if (rec->data[i] != (uint8_t)(seq + i))
				fail_msg("record %lu byte %u", (unsigned long)seq, i);
		ring_sc_next(&tr, rec);
		if ((++seq & 3) == 0)
			ring_sc_release(&tr);
	}
	ring_sc_release(&tr);
	pthread_join(t, NULL);
	assert_null(ring_sc_peek(&tr));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_rejects_bad_sizes),
		cmocka_unit_test(test_fifo_and_fields),
		cmocka_unit_test(test_full_then_space_after_release),
		cmocka_unit_test(test_wraparound_every_size),
		cmocka_unit_test(test_two_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
