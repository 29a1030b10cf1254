/* net/dpdk: the flow-to-queue function (dp_owner) that the RSS key, the
 * software steering and the TCP stack's choice of local ports all rely on.
 * Needs DPDK's headers and libraries, not the EAL: no port is opened. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <cmocka.h>

#include "net/dpdk/port.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

static void setup_port(unsigned nq)
{
	dp_port.nq = (uint16_t)nq;
	dp_port.reta_size = 128;
	for (unsigned i = 0; i < dp_port.reta_size; i++)
		dp_port.reta[i] = (uint16_t)(i % nq);
}

/* Both directions of a flow land on one queue: the key is symmetric. */
static void test_symmetric(void **state)
{
	(void)state;
	for (unsigned nq = 2; nq <= 8; nq *= 2) {
		setup_port(nq);
		for (int i = 0; i < 100000; i++) {
			uint32_t a = rnd(), b = rnd();
			uint16_t pa = (uint16_t)rnd(), pb = (uint16_t)rnd();
			uint16_t q = dp_owner(a, b, pa, pb);
			assert_true(q < nq);
			assert_int_equal(q, dp_owner(b, a, pb, pa));
		}
	}
}

/* Flows spread over every queue, near evenly; and for one remote
 * endpoint, enough local ports map to each queue for active opens. */
static void test_spread(void **state)
{
	unsigned count[4] = { 0 };

	(void)state;
	setup_port(4);
	for (int i = 0; i < 40000; i++)
		count[dp_owner(rnd(), rnd(), (uint16_t)rnd(), 5222)]++;
	for (int q = 0; q < 4; q++)
		assert_true(count[q] > 9000 && count[q] < 11000);

	memset(count, 0, sizeof(count));
	for (uint32_t port = 32768; port < 61000; port++)
		count[dp_owner(0x0100a8c0, 0x0200a8c0, 5222, (uint16_t)port)]++;
	for (int q = 0; q < 4; q++)
		assert_true(count[q] > 28232 / 4 - 1500);
}

/* One queue: everything is queue 0 without hashing. */
static void test_single_queue(void **state)
{
	(void)state;
	setup_port(1);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(dp_owner(rnd(), rnd(), (uint16_t)rnd(), (uint16_t)rnd()), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_symmetric),
		cmocka_unit_test(test_spread),
		cmocka_unit_test(test_single_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
