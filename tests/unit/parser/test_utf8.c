/* UTF-8 / XML Char validation: every SIMD level against a reference decoder
 * written from the definitions (RFC 3629 and the XML 1.0 Char production),
 * not from the kernels, so a fault shared by all kernels still shows.
 *
 * Result order under test: any encoding fault gives BAD_ENCODING, else any
 * forbidden Char gives BAD_CHAR (utf8.c fixes this so the levels agree).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "parser/simd.h"
#include "parser/utf8.h"

#define OK   XML_UTF8_OK
#define ENC  XML_UTF8_BAD_ENCODING
#define CHR  XML_UTF8_BAD_CHAR

/* ------------------------------------------------------------ reference */

static int ref_is_xml_char(uint32_t cp)
{
	return cp == 0x9 || cp == 0xA || cp == 0xD ||
	       (cp >= 0x20 && cp <= 0xD7FF) ||
	       (cp >= 0xE000 && cp <= 0xFFFD) ||
	       (cp >= 0x10000 && cp <= 0x10FFFF);
}

static enum xml_utf8_result ref_validate(const unsigned char *s, size_t n)
{
	int bad_char = 0;
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t more;
		uint32_t cp, min;

		if (c < 0x80) {
			more = 0, cp = c, min = 0;
		} else if ((c & 0xE0) == 0xC0) {
			more = 1, cp = c & 0x1F, min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			more = 2, cp = c & 0x0F, min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			more = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return ENC;
		}
		if (n - i - 1 < more)
			return ENC;
		for (size_t k = 1; k <= more; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return ENC;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return ENC;
		if (!ref_is_xml_char(cp))
			bad_char = 1;
		i += more + 1;
	}
	return bad_char ? CHR : OK;
}

static size_t encode(uint32_t cp, unsigned char *out)
{
	if (cp < 0x80) {
		out[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (unsigned char)(0xC0 | cp >> 6);
		out[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (unsigned char)(0xE0 | cp >> 12);
		out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (unsigned char)(0xF0 | cp >> 18);
	out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

/* ------------------------------------------------------------- harness */

static enum simd_level best_level;

static int setup(void **state)
{
	(void)state;
	best_level = simd_detect();
	simd_set_level(best_level);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	simd_set_level(best_level);
	return 0;
}

static const char *result_name(enum xml_utf8_result r)
{
	switch (r) {
	case XML_UTF8_OK:           return "OK";
	case XML_UTF8_BAD_ENCODING: return "BAD_ENCODING";
	case XML_UTF8_BAD_CHAR:     return "BAD_CHAR";
	}
	return "?";
}

static void report(const char *file, int line, const char *what, const char *level,
                   const unsigned char *s, size_t n, enum xml_utf8_result got,
                   enum xml_utf8_result want)
{
	char hex[3 * 64 + 8];
	size_t k, o = 0;

	for (k = 0; k < n && k < 64; k++)
		o += (size_t)snprintf(hex + o, sizeof hex - o, "%02x ", s[k]);
	if (k < n)
		snprintf(hex + o, sizeof hex - o, "...");
	print_error("%s:%d: %s: level %s, len %zu: got %s, want %s\n  bytes: %s\n",
	            file, line, what, level, n, result_name(got), result_name(want), hex);
	_fail(file, line);
}

/* Checks s at every level (and the scalar entry point and the reference)
 * against want. Leaves the best level selected. */
static void check_all_(const char *file, int line, const char *what,
                       const void *buf, size_t n, enum xml_utf8_result want)
{
	const unsigned char *s = buf;
	enum xml_utf8_result got;

	if ((got = ref_validate(s, n)) != want)
		report(file, line, what, "reference", s, n, got, want);
	if ((got = xml_utf8_validate_scalar(buf, n)) != want)
		report(file, line, what, "scalar entry", s, n, got, want);
	for (int l = SIMD_SCALAR; l <= (int)best_level; l++) {
		simd_set_level((enum simd_level)l);
		if ((got = xml_utf8_validate(buf, n)) != want) {
			simd_set_level(best_level);
			report(file, line, what, simd_level_name((enum simd_level)l), s, n, got, want);
		}
	}
	simd_set_level(best_level);
}
#define check_all(what, buf, n, want) check_all_(__FILE__, __LINE__, what, buf, n, want)

/* Same against the reference, at the level currently selected only: for the
 * big loops, which run once per level. */
#define check_cur(what, buf, n) do { \
	enum xml_utf8_result want_ = ref_validate((const unsigned char *)(buf), (n)); \
	enum xml_utf8_result got_ = xml_utf8_validate((const char *)(buf), (n)); \
	if (got_ != want_) \
		report(__FILE__, __LINE__, what, simd_level_name(simd_current()), \
		       (const unsigned char *)(buf), (n), got_, want_); \
} while (0)

/* deterministic xorshift64*, so a failure reproduces */
static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

/* ------------------------------------------------------- the boundaries */

struct sample {
	const char *name;
	unsigned char b[4];
	size_t n;
	enum xml_utf8_result want;
};

static const struct sample samples[] = {
	{ "U+0000",               { 0x00 }, 1, CHR },
	{ "U+0001",               { 0x01 }, 1, CHR },
	{ "U+0008",               { 0x08 }, 1, CHR },
	{ "TAB",                  { 0x09 }, 1, OK },
	{ "LF",                   { 0x0A }, 1, OK },
	{ "U+000B",               { 0x0B }, 1, CHR },
	{ "U+000C",               { 0x0C }, 1, CHR },
	{ "CR",                   { 0x0D }, 1, OK },
	{ "U+000E",               { 0x0E }, 1, CHR },
	{ "U+0019",               { 0x19 }, 1, CHR },
	{ "U+001A",               { 0x1A }, 1, CHR },
	{ "U+001D",               { 0x1D }, 1, CHR },
	{ "U+001F",               { 0x1F }, 1, CHR },
	{ "U+0020",               { 0x20 }, 1, OK },
	{ "U+007F",               { 0x7F }, 1, OK },
	{ "U+0080",               { 0xC2, 0x80 }, 2, OK },
	{ "U+009F",               { 0xC2, 0x9F }, 2, OK },
	{ "U+07FF",               { 0xDF, 0xBF }, 2, OK },
	{ "U+0800",               { 0xE0, 0xA0, 0x80 }, 3, OK },
	{ "U+D7FF",               { 0xED, 0x9F, 0xBF }, 3, OK },
	{ "U+D800",               { 0xED, 0xA0, 0x80 }, 3, ENC },
	{ "U+DBFF",               { 0xED, 0xAF, 0xBF }, 3, ENC },
	{ "U+DC00",               { 0xED, 0xB0, 0x80 }, 3, ENC },
	{ "U+DFFF",               { 0xED, 0xBF, 0xBF }, 3, ENC },
	{ "U+E000",               { 0xEE, 0x80, 0x80 }, 3, OK },
	{ "U+FFFD",               { 0xEF, 0xBF, 0xBD }, 3, OK },
	{ "U+FFFE",               { 0xEF, 0xBF, 0xBE }, 3, CHR },
	{ "U+FFFF",               { 0xEF, 0xBF, 0xBF }, 3, CHR },
	{ "U+EFFE (not FFFE)",    { 0xEE, 0xBF, 0xBE }, 3, OK },
	{ "U+FFBE (not FFFE)",    { 0xEF, 0xBE, 0xBE }, 3, OK },
	{ "U+10000",              { 0xF0, 0x90, 0x80, 0x80 }, 4, OK },
	{ "U+1FFFE",              { 0xF0, 0x9F, 0xBF, 0xBE }, 4, OK },
	{ "U+10FFFF",             { 0xF4, 0x8F, 0xBF, 0xBF }, 4, OK },
	{ "U+110000",             { 0xF4, 0x90, 0x80, 0x80 }, 4, ENC },
	{ "U+13FFFF",             { 0xF4, 0xBF, 0xBF, 0xBF }, 4, ENC },
	{ "F5 lead",              { 0xF5, 0x80, 0x80, 0x80 }, 4, ENC },
	{ "F7 lead",              { 0xF7, 0xBF, 0xBF, 0xBF }, 4, ENC },
	{ "F8 lead",              { 0xF8, 0x88, 0x80, 0x80 }, 4, ENC },
	{ "FE",                   { 0xFE }, 1, ENC },
	{ "FF",                   { 0xFF }, 1, ENC },
	{ "overlong 2 C0 80",     { 0xC0, 0x80 }, 2, ENC },
	{ "overlong 2 C0 AF",     { 0xC0, 0xAF }, 2, ENC },
	{ "overlong 2 C1 BF",     { 0xC1, 0xBF }, 2, ENC },
	{ "overlong 3 E0 80 80",  { 0xE0, 0x80, 0x80 }, 3, ENC },
	{ "overlong 3 E0 80 AF",  { 0xE0, 0x80, 0xAF }, 3, ENC },
	{ "overlong 3 E0 9F BF",  { 0xE0, 0x9F, 0xBF }, 3, ENC },
	{ "overlong 4 F0 80 80 80", { 0xF0, 0x80, 0x80, 0x80 }, 4, ENC },
	{ "overlong 4 F0 80 80 AF", { 0xF0, 0x80, 0x80, 0xAF }, 4, ENC },
	{ "overlong 4 F0 8F BF BF", { 0xF0, 0x8F, 0xBF, 0xBF }, 4, ENC },
	{ "stray 80",             { 0x80 }, 1, ENC },
	{ "stray BF",             { 0xBF }, 1, ENC },
	{ "two stray",            { 0x80, 0x80 }, 2, ENC },
	{ "2-byte + extra cont",  { 0xC3, 0xA9, 0x80 }, 3, ENC },
	{ "3-byte + extra cont",  { 0xE2, 0x82, 0xAC, 0x80 }, 4, ENC },
	{ "cut 2 of 2",           { 0xC3 }, 1, ENC },
	{ "cut 2 of 3",           { 0xE2, 0x82 }, 2, ENC },
	{ "cut 1 of 3",           { 0xE2 }, 1, ENC },
	{ "cut 3 of 4",           { 0xF0, 0x9F, 0x98 }, 3, ENC },
	{ "cut 2 of 4",           { 0xF0, 0x9F }, 2, ENC },
	{ "cut 1 of 4",           { 0xF0 }, 1, ENC },
	{ "2-byte then ASCII",    { 0xC3, 0x41 }, 2, ENC },
	{ "3-byte then ASCII",    { 0xE2, 0x82, 0x41 }, 3, ENC },
	{ "4-byte then ASCII",    { 0xF0, 0x9F, 0x98, 0x41 }, 4, ENC },
	{ "lead then lead",       { 0xE2, 0xC3, 0xA9 }, 3, ENC },
	{ "U+00E9",               { 0xC3, 0xA9 }, 2, OK },
	{ "U+20AC",               { 0xE2, 0x82, 0xAC }, 3, OK },
	{ "U+1F600",              { 0xF0, 0x9F, 0x98, 0x80 }, 4, OK },
	/* Both faults: encoding wins at every level. */
	{ "control + stray",      { 0x01, 0x80 }, 2, ENC },
	{ "U+FFFF + cut",         { 0xEF, 0xBF, 0xBF, 0xE2 }, 4, ENC },
};

#define NSAMPLES (sizeof samples / sizeof samples[0])

static void test_samples(void **state)
{
	(void)state;
	for (size_t i = 0; i < NSAMPLES; i++)
		check_all(samples[i].name, samples[i].b, samples[i].n, samples[i].want);
}

static void test_empty(void **state)
{
	(void)state;
	check_all("empty", "", 0, OK);
	check_all("NULL, 0", NULL, 0, OK);
}

/* --------------------------------------------------------- exhaustive */

static void test_all_1_and_2_byte(void **state)
{
	(void)state;
	unsigned char b[2];

	for (int l = SIMD_SCALAR; l <= (int)best_level; l++) {
		simd_set_level((enum simd_level)l);
		for (unsigned x = 0; x < 0x10000; x++) {
			b[0] = (unsigned char)(x >> 8);
			b[1] = (unsigned char)x;
			if (x < 0x100)
				check_cur("1-byte", b + 1, 1);
			check_cur("2-byte", b, 2);
		}
	}
}

static void test_all_3_byte(void **state)
{
	(void)state;
	unsigned char b[3];

	for (int l = SIMD_SCALAR; l <= (int)best_level; l++) {
		simd_set_level((enum simd_level)l);
		for (uint32_t x = 0; x < 0x1000000; x++) {
			b[0] = (unsigned char)(x >> 16);
			b[1] = (unsigned char)(x >> 8);
			b[2] = (unsigned char)x;
			check_cur("3-byte", b, 3);
		}
	}
}

/* Pairs and triples split across the edge of a 16-, 32- and 64-byte block
 * after an ASCII prefix, where the vector kernels see the first bytes as
 * "previous" ones. The last byte of a triple is only ever looked up by its
 * high nibble or compared with TAB LF CR, BE, BF, so one value per class
 * stands for all; the first two take every value (non-ASCII first byte). */
static const unsigned char third_byte_classes[] = {
	0x00, 0x08, 0x09, 0x0A, 0x0D, 0x1F, 0x20, 0x41, 0x7F,
	0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xAF, 0xB0, 0xBD, 0xBE, 0xBF,
	0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF,
};

static void check_split(const unsigned char *seq, size_t n, size_t at)
{
	static unsigned char buf[200];
	unsigned char shortbuf[16];
	size_t total = at + n + 5;
	enum xml_utf8_result want, got;

	if (buf[0] != 'a')
		memset(buf, 'a', sizeof buf);
	memcpy(buf + at, seq, n);
	/* the ASCII prefix cannot change the verdict, so the reference runs
	 * on the short form */
	memset(shortbuf, 'a', sizeof shortbuf);
	memcpy(shortbuf, seq, n);
	want = ref_validate(shortbuf, n + 5);
	got = xml_utf8_validate((const char *)buf, total);
	if (got != want)
		report(__FILE__, __LINE__, "split", simd_level_name(simd_current()), buf, total, got, want);
	got = xml_utf8_validate((const char *)buf, at + n);
	want = ref_validate(shortbuf, n);
	if (got != want)
		report(__FILE__, __LINE__, "split at end", simd_level_name(simd_current()), buf, at + n, got, want);
	memset(buf + at, 'a', n);
}

static void test_split_sequences(void **state)
{
	static const size_t edges[] = { 16, 32, 64, 128 };
	unsigned char seq[3];

	(void)state;
	for (int l = SIMD_SCALAR; l <= (int)best_level; l++) {
		simd_set_level((enum simd_level)l);
		for (size_t ei = 0; ei < sizeof edges / sizeof edges[0]; ei++) {
			for (unsigned x = 0x8000; x < 0x10000; x++) {
				seq[0] = (unsigned char)(x >> 8);
				seq[1] = (unsigned char)x;
				check_split(seq, 2, edges[ei] - 1);
			}
			for (unsigned x = 0; x < 0x10000; x++) {
				seq[0] = (unsigned char)(x >> 8);
				seq[1] = (unsigned char)x;
				if (seq[0] < 0x80 && seq[0] != 0x00 && seq[0] != 0x41)
					continue;
				for (size_t k = 0; k < sizeof third_byte_classes; k++) {
					seq[2] = third_byte_classes[k];
					check_split(seq, 3, edges[ei] - 1);
					check_split(seq, 3, edges[ei] - 2);
				}
			}
		}
	}
}

/* Four-byte sequences: every lead and second byte with the third and
 * fourth from a set that holds each class boundary, then random ones. */
static void test_4_byte_sample(void **state)
{
	(void)state;
	static const unsigned char edge[] = {
		0x00, 0x09, 0x1F, 0x20, 0x41, 0x7F, 0x80, 0x81, 0x8F, 0x90,
		0x9F, 0xA0, 0xBE, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xEF, 0xF0,
		0xF4, 0xF5, 0xFF,
	};
	const size_t ne = sizeof edge;
	unsigned char b[4];

	for (int l = SIMD_SCALAR; l <= (int)best_level; l++) {
		simd_set_level((enum simd_level)l);
		for (unsigned x = 0; x < 0x10000; x++) {
			b[0] = (unsigned char)(x >> 8);
			b[1] = (unsigned char)x;
			if (b[0] < 0x80 && b[0] != 0x00 && b[0] != 0x41)
				continue;   /* ASCII leads add nothing the 3-byte test lacks */
			for (size_t i = 0; i < ne; i++) {
				b[2] = edge[i];
				for (size_t j = 0; j < ne; j++) {
					b[3] = edge[j];
					check_cur("4-byte edge", b, 4);
				}
			}
		}
		rng_state = 0x9E3779B97F4A7C15ull;
		for (int n = 0; n < 2000000; n++) {
			uint64_t r = rng();

			/* lead F0..F7, continuations mostly in range */
			b[0] = (unsigned char)(0xF0 | (r & 7));
			b[1] = (unsigned char)(r >> 8 & 0x80 ? 0x80 | (r >> 16 & 0x3F) : r >> 16);
			b[2] = (unsigned char)(r >> 24 & 0x80 ? 0x80 | (r >> 32 & 0x3F) : r >> 32);
			b[3] = (unsigned char)(r >> 40 & 0x80 ? 0x80 | (r >> 48 & 0x3F) : r >> 48);
			check_cur("4-byte random", b, 4);
		}
	}
}

/* ------------------------------------------------- faults at every offset */

/* Appends whole valid characters to out until exactly n bytes, mixing
 * lengths by seed so each offset sees a different mix at its boundaries. */
static void fill_multibyte(unsigned char *out, size_t n, uint32_t seed)
{
	static const uint32_t cps[] = { 0x10348, 0xE9, 'x', 0x20AC, 0xFFFD, 0x7FF, 0x10FFFF, 0xD7FF, '\n' };
	size_t i = 0;

	while (i < n) {
		unsigned char tmp[4];
		size_t k = encode(cps[seed++ % (sizeof cps / sizeof cps[0])], tmp);

		if (k > n - i)
			k = encode('y', tmp);
		memcpy(out + i, tmp, k);
		i += k;
	}
}

static void test_every_offset(void **state)
{
	(void)state;
	unsigned char buf[140 + 4 + 70];

	for (size_t si = 0; si < NSAMPLES; si++) {
		const struct sample *sm = &samples[si];

		for (size_t off = 0; off <= 130; off++) {
			for (int multi = 0; multi <= 1; multi++) {
				static const size_t tails[] = { 0, 1, 2, 3, 17, 64 };

				for (size_t ti = 0; ti < sizeof tails / sizeof tails[0]; ti++) {
					size_t tail = tails[ti], n = off + sm->n + tail;

					if (multi) {
						fill_multibyte(buf, off, (uint32_t)off);
						fill_multibyte(buf + off + sm->n, tail, (uint32_t)(off + ti));
					} else {
						memset(buf, 'a', off);
						memset(buf + off + sm->n, 'z', tail);
					}
					memcpy(buf + off, sm->b, sm->n);

					/* A sequence cut at the end stops being cut once
					 * something follows: then the reference decides. */
					enum xml_utf8_result want = sm->want;

					if (tail != 0)
						want = ref_validate(buf, n);
					check_all(sm->name, buf, n, want);
				}
			}
		}
	}
}

/* ----------------------------------------------------- random buffers */

static size_t random_text(unsigned char *out, size_t max)
{
	size_t n = 0;
	uint64_t mode = rng() % 8;

	while (n < max) {
		uint64_t r = rng();
		uint32_t cp;
		unsigned char tmp[4];
		size_t k;

		switch (mode) {
		case 0:         /* bytes, any */
			out[n++] = (unsigned char)r;
			continue;
		case 1:         /* mostly ASCII */
			cp = (r & 0xF) ? 0x20 + (uint32_t)(r >> 8) % 0x5F : (uint32_t)(r >> 8) % 0x800;
			break;
		default: {      /* any class, weighted towards the edges */
			static const uint32_t lo[] = { 0x0, 0x20, 0x7F, 0x7FF, 0xD7F0, 0xDFF0, 0xFFF0, 0xFFFF, 0x10FFF0 };
			uint32_t pick = (uint32_t)(r >> 8) % 12;

			if (pick < 9)
				cp = lo[pick] + (uint32_t)(r >> 16) % 32;
			else
				cp = (uint32_t)(r >> 16) % 0x110000;
			break;
		}
		}
		if (cp >= 0xD800 && cp <= 0xDFFF)
			cp = 'S';          /* encode() would write a surrogate */
		if (cp > 0x10FFFF)
			cp = 'L';
		k = encode(cp, tmp);
		if (k > max - n) {
			if (r & 3)
				k = encode('a', tmp);
			else
				k = max - n;   /* cut the last one: that is a case too */
		}
		memcpy(out + n, tmp, k);
		n += k;
	}
	/* then a few byte-level mutations */
	if (n && rng() % 4 == 0) {
		unsigned muts = 1 + (unsigned)(rng() % 3);

		for (unsigned m = 0; m < muts; m++)
			out[rng() % n] = (unsigned char)rng();
	}
	return n;
}

static void test_random(void **state)
{
	(void)state;
	unsigned char buf[200];
	enum xml_utf8_result got[SIMD_AVX512 + 1];
	unsigned count[3] = { 0, 0, 0 };

	rng_state = 0x243F6A8885A308D3ull;
	for (int iter = 0; iter < 60000; iter++) {
		size_t len = (size_t)(rng() % (sizeof buf + 1));
		size_t n = random_text(buf, len);
		enum xml_utf8_result want = ref_validate(buf, n);

		count[want]++;
		for (int l = SIMD_SCALAR; l <= (int)best_level; l++) {
			simd_set_level((enum simd_level)l);
			got[l] = xml_utf8_validate((const char *)buf, n);
			if (got[l] != want) {
				simd_set_level(best_level);
				report(__FILE__, __LINE__, "random", simd_level_name((enum simd_level)l),
				       buf, n, got[l], want);
			}
		}
		simd_set_level(best_level);
	}
	/* the generator must reach all three outcomes often, or it tests little */
	print_message("random: %u OK, %u BAD_ENCODING, %u BAD_CHAR\n", count[OK], count[ENC], count[CHR]);
	assert_true(count[OK] > 5000);
	assert_true(count[ENC] > 5000);
	assert_true(count[CHR] > 5000);
}

/* Long buffers: state carried across many chunks, fault near the end. */
static void test_long(void **state)
{
	(void)state;
	static unsigned char buf[9000];

	for (size_t len = 4000; len < 4200; len += 7) {
		fill_multibyte(buf, len, (uint32_t)len);
		check_all("long valid", buf, len, OK);
		fill_multibyte(buf, len - 4, (uint32_t)len);
		memcpy(buf + len - 4, "\xEF\xBF\xBFz", 4);
		check_all("long FFFF near end", buf, len, CHR);
		buf[len - 1] = 0x80;
		check_all("long FFFF then stray at end", buf, len, ENC);
		buf[len - 1] = 0xC3;
		check_all("long cut at end", buf, len, ENC);
	}
	memset(buf, 'a', sizeof buf);
	buf[8191] = 0xE2;
	buf[8192] = 0x82;
	buf[8193] = 0xAC;
	check_all("ASCII around a split euro", buf, sizeof buf, OK);
	buf[8193] = 'a';
	check_all("ASCII around a cut euro", buf, sizeof buf, ENC);
}

/* ----------------------------------------------------- no stray reads */

/* The input sits right against a PROT_NONE page, after it and before it:
 * a read outside buf[0..len) faults (and ASan-free builds see it too). */
static void test_guard_pages(void **state)
{
	(void)state;
	long pg = sysconf(_SC_PAGESIZE);
	size_t page = (size_t)pg;
	unsigned char *map = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
	                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(map != MAP_FAILED);
	assert_int_equal(mprotect(map, page, PROT_NONE), 0);
	assert_int_equal(mprotect(map + 2 * page, page, PROT_NONE), 0);

	unsigned char *mid = map + page;

	for (size_t len = 0; len <= 200; len++) {
		unsigned char *end = mid + page - len;

		fill_multibyte(end, len, (uint32_t)len);
		check_all("against the end guard", end, len, OK);
		if (len) {
			end[len - 1] = 0xF0;
			check_all("cut, against the end guard", end, len, ENC);
		}
		fill_multibyte(mid, len, (uint32_t)len);
		check_all("against the start guard", mid, len, OK);
		if (len) {
			mid[0] = 0x80;
			check_all("stray, against the start guard", mid, len, ENC);
		}
	}
	munmap(map, 3 * page);
}

/* The scalar entry point ignores the level; the level can be lowered. */
static void test_levels(void **state)
{
	(void)state;
	assert_int_equal(simd_set_level(SIMD_SCALAR), SIMD_SCALAR);
	assert_int_equal(xml_utf8_validate("\xEF\xBF\xBE", 3), CHR);
	simd_set_level(best_level);
	assert_int_equal(xml_utf8_validate_scalar("\xEF\xBF\xBE", 3), CHR);
	assert_int_equal(simd_current(), best_level);
	print_message("levels tested: scalar..%s\n", simd_level_name(best_level));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_levels),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_all_1_and_2_byte),
		cmocka_unit_test(test_all_3_byte),
		cmocka_unit_test(test_split_sequences),
		cmocka_unit_test(test_4_byte_sample),
		cmocka_unit_test(test_every_offset),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_long),
		cmocka_unit_test(test_guard_pages),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
