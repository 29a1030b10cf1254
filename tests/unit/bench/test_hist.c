/* Unit tests for bench/harness/hist.h: exact small values, the relative
 * error bound against a sorted reference, merge, empty, clamping. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "bench/harness/hist.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd64(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Latency-like: log-uniform from 1 ns to about 2^36 ns. */
static uint64_t rnd_latency(void)
{
	unsigned bits = 1 + (unsigned)(rnd64() % 36);
	return 1 + (rnd64() & ((UINT64_C(1) << bits) - 1));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* The reference percentile: the value of rank ceil(p% of n). */
static uint64_t ref_percentile(const uint64_t *sorted, size_t n, double p)
{
	double want = p / 100.0 * (double)n;
	size_t rank = (size_t)want;
	if ((double)rank < want - 1e-9)
		rank++;
	if (rank == 0)
		rank = 1;
	return sorted[rank - 1];
}

static struct hist *hist_new(void)
{
	struct hist *h = malloc(sizeof(*h));
	assert_non_null(h);
	hist_init(h);
	return h;
}

static void test_empty(void **state)
{
	(void)state;
	struct hist *h = hist_new();

	assert_int_equal(h->count, 0);
	assert_true(h->min == UINT64_MAX);
	assert_int_equal(hist_percentile(h, 50), 0);
	assert_int_equal(hist_percentile(h, 100), 0);
	assert_true(hist_mean(h) == 0.0);

	/* merging an empty one changes nothing, into empty or not */
	struct hist *e = hist_new();
	hist_merge(h, e);
	assert_int_equal(h->count, 0);
	assert_true(h->min == UINT64_MAX);
	hist_record(h, 42);
	hist_merge(h, e);
	assert_int_equal(h->count, 1);
	assert_int_equal(h->min, 42);
	assert_int_equal(h->max, 42);
	free(e);
	free(h);
}

/* Below 2^(HIST_SUB_BITS + 1) every value has its own bucket. */
static void test_exact_small(void **state)
{
	(void)state;
	struct hist *h = hist_new();

	for (uint64_t v = 0; v < (UINT64_C(2) << HIST_SUB_BITS); v++) {
		hist_init(h);
		hist_record(h, v);
		assert_int_equal(hist_percentile(h, 0), v);
		assert_int_equal(hist_percentile(h, 50), v);
		assert_int_equal(hist_percentile(h, 99.9), v);
		assert_int_equal(hist_percentile(h, 100), v);
	}
	/* 1..100 once each: p50 is 50, p90 is 90, p1 is 1 */
	hist_init(h);
	for (uint64_t v = 1; v <= 100; v++)
		hist_record(h, v);
	assert_int_equal(h->count, 100);
	assert_int_equal(hist_percentile(h, 1), 1);
	assert_int_equal(hist_percentile(h, 50), 50);
	assert_int_equal(hist_percentile(h, 90), 90);
	assert_int_equal(hist_percentile(h, 99), 99);
	assert_int_equal(hist_percentile(h, 99.9), 100);
	assert_int_equal(hist_percentile(h, 100), 100);
	assert_true(hist_mean(h) == 50.5);
	assert_int_equal(h->min, 1);
	assert_int_equal(h->max, 100);
	free(h);
}

/* A single large value: the percentile is never below it, and within the
 * bound above it; max is exact. */
static void test_bucket_edges(void **state)
{
	(void)state;
	struct hist *h = hist_new();

	for (unsigned k = HIST_SUB_BITS + 1; k < HIST_MAX_EXP; k++) {
		uint64_t p2 = UINT64_C(1) << k;
		uint64_t vals[] = { p2 - 1, p2, p2 + 1, p2 + (p2 >> 1), 2 * p2 - 1 };
		for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
			uint64_t v = vals[i];
			hist_init(h);
			hist_record(h, v);
			hist_record(h, v);       /* two so that p50 is not max */
			hist_record(h, HIST_MAX_VALUE);
			uint64_t got = hist_percentile(h, 50);
			assert_true(got >= v);
			assert_true((double)(got - v) <= (double)v / (1 << HIST_SUB_BITS));
			assert_int_equal(hist_percentile(h, 100), HIST_MAX_VALUE);
		}
	}
	free(h);
}

static void test_relative_error(void **state)
{
	(void)state;
	enum { N = 200000 };
	uint64_t *vals = malloc(N * sizeof(*vals));
	struct hist *h = hist_new();
	const double ps[] = { 50, 90, 99, 99.9, 99.99, 0.1, 25 };

	assert_non_null(vals);
	for (int round = 0; round < 3; round++) {
		hist_init(h);
		for (size_t i = 0; i < N; i++) {
			/* round 1: narrow (1-2 ms); round 2: log-uniform; round 0: mixed */
			uint64_t v = round == 1 ? 1000000 + rnd64() % 1000000 : rnd_latency();
			if (round == 0 && i % 3 == 0)
				v = rnd64() % 500;
			vals[i] = v;
			hist_record(h, v);
		}
		qsort(vals, N, sizeof(*vals), cmp_u64);
		for (size_t j = 0; j < sizeof(ps) / sizeof(ps[0]); j++) {
			uint64_t want = ref_percentile(vals, N, ps[j]);
			uint64_t got = hist_percentile(h, ps[j]);
			/* never understates, and at most one bucket width above */
			if (got < want || (double)(got - want) > (double)want / (1 << HIST_SUB_BITS))
				fail_msg("round %d p%g: got %llu, reference %llu", round, ps[j],
				         (unsigned long long)got, (unsigned long long)want);
		}
		assert_int_equal(hist_percentile(h, 100), vals[N - 1]);
		assert_int_equal(h->max, vals[N - 1]);
		assert_int_equal(h->min, vals[0]);
		double sum = 0;
		for (size_t i = 0; i < N; i++)
			sum += (double)vals[i];
		assert_true(hist_mean(h) > sum / N * (1 - 1e-9) && hist_mean(h) < sum / N * (1 + 1e-9));
	}
	free(vals);
	free(h);
}

static void test_merge(void **state)
{
	(void)state;
	struct hist *a = hist_new(), *b = hist_new(), *all = hist_new(), *parts[4];

	for (int i = 0; i < 4; i++)
		parts[i] = hist_new();
	for (int i = 0; i < 100000; i++) {
		uint64_t v = rnd_latency();
		hist_record(parts[rnd64() % 4], v);
		hist_record(all, v);
	}
	for (int i = 0; i < 4; i++)
		hist_merge(a, parts[i]);
	/* the other order gives the same */
	for (int i = 3; i >= 0; i--)
		hist_merge(b, parts[i]);
	assert_int_equal(a->count, all->count);
	assert_int_equal(a->min, all->min);
	assert_int_equal(a->max, all->max);
	assert_memory_equal(a->b, all->b, sizeof(a->b));
	assert_memory_equal(b->b, all->b, sizeof(b->b));
	assert_true(a->sum > all->sum * (1 - 1e-12) && a->sum < all->sum * (1 + 1e-12));
	const double ps[] = { 0, 50, 90, 99, 99.9, 100 };
	for (size_t j = 0; j < sizeof(ps) / sizeof(ps[0]); j++)
		assert_int_equal(hist_percentile(a, ps[j]), hist_percentile(all, ps[j]));
	for (int i = 0; i < 4; i++)
		free(parts[i]);
	free(a);
	free(b);
	free(all);
}

static void test_clamp(void **state)
{
	(void)state;
	struct hist *h = hist_new();

	hist_record(h, UINT64_MAX);
	hist_record(h, UINT64_C(1) << HIST_MAX_EXP);
	hist_record(h, HIST_MAX_VALUE);
	assert_int_equal(h->count, 3);
	assert_int_equal(h->max, HIST_MAX_VALUE);
	assert_int_equal(h->min, HIST_MAX_VALUE);
	assert_int_equal(h->b[HIST_BUCKETS - 1], 3);
	assert_int_equal(hist_percentile(h, 50), HIST_MAX_VALUE);
	assert_int_equal(hist_percentile(h, 100), HIST_MAX_VALUE);
	assert_true(hist_mean(h) == (double)HIST_MAX_VALUE);

	/* the top bucket is the top 2^(HIST_MAX_EXP - 1 - HIST_SUB_BITS) values */
	uint64_t top_width = UINT64_C(1) << (HIST_MAX_EXP - 1 - HIST_SUB_BITS);
	hist_init(h);
	hist_record(h, HIST_MAX_VALUE - top_width);
	assert_int_equal(h->b[HIST_BUCKETS - 1], 0);
	assert_int_equal(h->b[HIST_BUCKETS - 2], 1);
	assert_int_equal(hist_percentile(h, 50), HIST_MAX_VALUE - top_width);
	hist_record(h, HIST_MAX_VALUE - top_width + 1);
	assert_int_equal(h->b[HIST_BUCKETS - 1], 1);
	free(h);
}

/* p 0 is the lowest bucket's high end (at least min); percentiles do not
 * decrease with p. */
static void test_monotonic(void **state)
{
	(void)state;
	struct hist *h = hist_new();

	for (int i = 0; i < 10000; i++)
		hist_record(h, rnd_latency());
	uint64_t prev = 0;
	for (double p = 0; p <= 100.0; p += 0.25) {
		uint64_t v = hist_percentile(h, p);
		assert_true(v >= prev);
		assert_true(v >= h->min && v <= h->max);
		prev = v;
	}
	assert_int_equal(hist_percentile(h, 150), h->max);
	assert_int_equal(hist_percentile(h, -5), hist_percentile(h, 0));
	free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_exact_small),
		cmocka_unit_test(test_bucket_edges),
		cmocka_unit_test(test_relative_error),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_clamp),
		cmocka_unit_test(test_monotonic),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
