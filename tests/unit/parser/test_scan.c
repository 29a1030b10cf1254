/* Unit tests for parser/scan.h: every SIMD level must return exactly what
 * the scalar kernel returns, which must be what a naive loop returns.
 * Buffers are also placed against PROT_NONE pages so that a vector load
 * past either end of the buffer faults instead of passing silently.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <cmocka.h>

#include "parser/scan.h"
#include "parser/simd.h"

#define MAX_LEN 300

/* Deterministic so that a failure reproduces; xorshift is enough here. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 11);
}

struct set {
	char chars[128];
	size_t n;
	bool member[256];   /* the truth, kept apart from struct xml_charset */
	struct xml_charset cs;
};

static void set_make(struct set *s, const char *chars, size_t n)
{
	memset(s, 0, sizeof(*s));
	memcpy(s->chars, chars, n);
	s->n = n;
	for (size_t i = 0; i < n; i++)
		s->member[(uint8_t)chars[i]] = true;
	xml_charset_init(&s->cs, s->chars, s->n);
}

/* A random subset of 0x00..0x7f, sometimes empty, sometimes nearly full,
 * duplicates allowed (the init must tolerate them). */
static void set_random(struct set *s)
{
	char chars[128];
	size_t n;

	switch (rnd() % 4) {
	case 0:  n = 0; break;
	case 1:  n = 1 + rnd() % 4; break;
	case 2:  n = 1 + rnd() % 16; break;
	default: n = 1 + rnd() % 128; break;
	}
	for (size_t i = 0; i < n; i++)
		chars[i] = (char)(rnd() % 128);
	set_make(s, chars, n);
}

static size_t naive(const struct set *s, const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s->member[(uint8_t)buf[i]])
			return i;
	return len;
}

/* A byte outside the set; bytes >= 0x80 are always outside. */
static char non_member(const struct set *s)
{
	for (;;) {
		uint8_t c = (uint8_t)rnd();
		if (!s->member[c])
			return (char)c;
	}
}

static char member(const struct set *s)
{
	return s->chars[rnd() % s->n];
}

/* The levels this CPU and build can run, each selected in turn. */
static int levels[4];
static int nlevels;

static int group_setup(void **state)
{
	(void)state;
	nlevels = 0;
	for (int l = SIMD_SCALAR; l <= SIMD_AVX512; l++)
		if (simd_set_level((enum simd_level)l) == (enum simd_level)l)
			levels[nlevels++] = l;
	simd_init();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	simd_set_level(simd_detect());
	return 0;
}

/* Check one buffer at every level against the naive loop. */
static void check_all_levels(const struct set *s, const char *buf, size_t len)
{
	size_t want = naive(s, buf, len);

	assert_int_equal(xml_scan_scalar(&s->cs, buf, len), want);
	for (int i = 0; i < nlevels; i++) {
		simd_set_level((enum simd_level)levels[i]);
		size_t got = xml_scan(&s->cs, buf, len);
		if (got != want)
			print_message("level %s len %zu: got %zu want %zu\n",
				      simd_level_name((enum simd_level)levels[i]), len, got, want);
		assert_int_equal(got, want);
	}
}

static void test_charset_tables(void **state)
{
	(void)state;
	for (int round = 0; round < 500; round++) {
		struct set s;
		set_random(&s);
		for (int c = 0; c < 256; c++) {
			bool nib = (s.cs.lo[c & 15] & s.cs.hi[c >> 4]) != 0;
			assert_int_equal(nib, s.member[c]);
			assert_int_equal(s.cs.in[c] != 0, s.member[c]);
		}
	}
}

static void test_levels_reported(void **state)
{
	(void)state;
	/* Scalar is always there; the rest depends on the CPU. */
	assert_true(nlevels >= 1);
	assert_int_equal(levels[0], SIMD_SCALAR);
	for (int i = 0; i < nlevels; i++)
		print_message("level %s\n", simd_level_name((enum simd_level)levels[i]));
}

static void test_random_buffers(void **state)
{
	char buf[MAX_LEN + 64];

	(void)state;
	for (int round = 0; round < 3000; round++) {
		struct set s;
		size_t len = rnd() % (MAX_LEN + 1);
		size_t shift = rnd() % 64;   /* every alignment of the start */
		set_random(&s);
		for (size_t i = 0; i < len; i++)
			buf[shift + i] = (char)rnd();
		check_all_levels(&s, buf + shift, len);
	}
}

static void test_every_length_and_position(void **state)
{
	char buf[MAX_LEN + 64];
	struct set s;

	(void)state;
	for (size_t len = 0; len <= MAX_LEN; len++) {
		set_random(&s);
		if (s.n == 0)
			set_make(&s, "<", 1);
		size_t shift = len % 64;
		char *p = buf + shift;
		for (size_t i = 0; i < len; i++)
			p[i] = non_member(&s);
		check_all_levels(&s, p, len);
		for (size_t pos = 0; pos < len; pos++) {
			char saved = p[pos];
			p[pos] = member(&s);
			check_all_levels(&s, p, len);
			/* A second member later must not win over the first. */
			if (pos + 1 < len) {
				size_t later = pos + 1 + rnd() % (len - pos - 1);
				char saved2 = p[later];
				p[later] = member(&s);
				check_all_levels(&s, p, len);
				p[later] = saved2;
			}
			p[pos] = saved;
		}
	}
}

/* The tokenizer's own sets, with every member at every position. */
static void test_structural_sets(void **state)
{
	static const char *sets[] = { "<>\"'&/", "<&", "<", "]", "'", "\"", "<&\r]", "\t\n\r " };
	char buf[MAX_LEN];

	(void)state;
	for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++) {
		struct set s;
		set_make(&s, sets[k], strlen(sets[k]));
		for (size_t len = 0; len <= MAX_LEN; len += 7) {
			for (size_t i = 0; i < len; i++)
				buf[i] = non_member(&s);
			check_all_levels(&s, buf, len);
			for (size_t pos = 0; pos < len; pos++)
				for (size_t m = 0; m < s.n; m++) {
					char saved = buf[pos];
					buf[pos] = s.chars[m];
					check_all_levels(&s, buf, len);
					buf[pos] = saved;
				}
		}
	}
}

/* A byte c >= 0x80 shares its low nibble with ASCII members and its high
 * nibble index wraps in a naive pshufb lookup: none of them may match,
 * even when every ASCII byte is in the set. */
static void test_high_bytes_never_match(void **state)
{
	char all[128];
	char buf[MAX_LEN];
	struct set s;

	(void)state;
	for (int c = 0; c < 128; c++)
		all[c] = (char)c;
	set_make(&s, all, sizeof(all));
	for (int c = 0x80; c < 0x100; c++) {
		for (size_t len = 0; len <= MAX_LEN; len += 13) {
			memset(buf, c, len);
			check_all_levels(&s, buf, len);
			assert_int_equal(xml_scan(&s.cs, buf, len), len);
		}
	}
	for (int round = 0; round < 2000; round++) {
		size_t len = rnd() % (MAX_LEN + 1);
		set_random(&s);
		for (size_t i = 0; i < len; i++)
			buf[i] = (char)(0x80 | rnd());
		check_all_levels(&s, buf, len);
		assert_int_equal(naive(&s, buf, len), len);
	}
}

/* Buffers that end exactly at, or start exactly after, an inaccessible
 * page: any load outside [buf, buf + len) that crosses a page faults. */
static void test_guard_pages(void **state)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t span = 3 * (size_t)page;
	char *map = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)state;
	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map, (size_t)page, PROT_NONE), 0);
	assert_int_equal(mprotect(map + 2 * page, (size_t)page, PROT_NONE), 0);
	char *lo = map + page;          /* first accessible byte */
	char *hi = map + 2 * page;      /* one past the last */

	for (size_t len = 0; len <= MAX_LEN; len++) {
		struct set s;
		set_random(&s);
		if (s.n == 0)
			set_make(&s, "&", 1);
		char *tail = hi - len;
		for (size_t i = 0; i < len; i++) {
			tail[i] = non_member(&s);
			lo[i] = tail[i];
		}
		check_all_levels(&s, tail, len);
		check_all_levels(&s, lo, len);
		if (len > 0) {
			tail[len - 1] = member(&s);
			lo[len - 1] = tail[len - 1];
			check_all_levels(&s, tail, len);
			check_all_levels(&s, lo, len);
		}
	}
	assert_int_equal(munmap(map, span), 0);
}

/* xml_mark4: at every level, against masks computed here byte by byte,
 * for random buffers (the four structural bytes the framer asks for mixed
 * with others and with bytes >= 0x80), every start offset and length, and
 * buffers ending against a PROT_NONE page so a read past len faults. */
static void mark4_expect(const char c[4], const char *buf, size_t off, size_t len, uint64_t m[4])
{
	for (int j = 0; j < 4; j++) {
		m[j] = 0;
		for (size_t i = 0; i < 64 && off + i < len; i++)
			if (buf[off + i] == c[j])
				m[j] |= 1ull << i;
	}
}

static void mark4_check_levels(const char c[4], const char *buf, size_t off, size_t len)
{
	uint64_t want[4], got[4];
	enum simd_level best = simd_detect();

	mark4_expect(c, buf, off, len, want);
	xml_mark4_scalar(c, buf, off, len, got);
	assert_memory_equal(got, want, sizeof(want));
	for (int lv = SIMD_SCALAR; lv <= (int)best; lv++) {
		simd_set_level((enum simd_level)lv);
		memset(got, 0xa5, sizeof(got));
		xml_mark4(c, buf, off, len, got);
		if (memcmp(got, want, sizeof(want)))
			fail_msg("xml_mark4 at level %d, off %zu len %zu", lv, off, len);
	}
	simd_set_level(best);
}

static void test_mark4(void **state)
{
	static const char c[4] = { '"', '\'', '>', '<' };
	static const char alphabet[] = "\"'><a =/&\x80\xff";
	long page = sysconf(_SC_PAGESIZE);
	char *map = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)state;
	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
	for (size_t len = 1; len <= 200; len++) {
		char *buf = map + page - len;   /* ends at the guard page */
		for (int round = 0; round < 4; round++) {
			for (size_t i = 0; i < len; i++)
				buf[i] = alphabet[rnd() % (sizeof(alphabet) - 1)];
			for (size_t off = 0; off < len; off++)
				mark4_check_levels(c, buf, off, len);
		}
	}
	assert_int_equal(munmap(map, 2 * (size_t)page), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels_reported),
		cmocka_unit_test(test_charset_tables),
		cmocka_unit_test(test_random_buffers),
		cmocka_unit_test(test_every_length_and_position),
		cmocka_unit_test(test_structural_sets),
		cmocka_unit_test(test_high_bytes_never_match),
		cmocka_unit_test(test_guard_pages),
		cmocka_unit_test(test_mark4),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
