/* libFuzzer target for xml_utf8_validate (parser/utf8.h).
 *
 * The validator at every SIMD level must agree with its scalar kernel, and
 * both with a reference written here as plainly as possible: decode code
 * point by code point, as RFC 3629 section 3 describes it, and test each
 * against XML 1.0's Char production.
 *
 * The input is also checked shifted behind and followed by runs of ASCII,
 * and cut at a hash-chosen offset, so that every byte reaches every lane
 * and block boundary of the vector kernels. Each buffer is an exactly
 * sized allocation, so a read past its end is an ASan report.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parser/simd.h"
#include "parser/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ref {
	bool bad_encoding;
	bool bad_char;     /* exact when !bad_encoding, else "some resync finds one" */
};

static bool xml_char(uint32_t cp)
{
	return cp == 0x9 || cp == 0xa || cp == 0xd ||
	       (cp >= 0x20 && cp <= 0xd7ff) ||
	       (cp >= 0xe000 && cp <= 0xfffd) ||
	       (cp >= 0x10000 && cp <= 0x10ffff);
}

/* Length of the sequence at s[0..n) and its code point, or 0 if it is not
 * well-formed UTF-8. */
static size_t decode(const uint8_t *s, size_t n, uint32_t *cp)
{
	size_t len;
	uint32_t c, min;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2; c = s[0] & 0x1fu; min = 0x80;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3; c = s[0] & 0x0fu; min = 0x800;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4; c = s[0] & 0x07u; min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[k] & 0x3fu);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

static struct ref reference(const uint8_t *s, size_t n)
{
	struct ref r = { false, false };
	size_t i = 0;

	while (i < n) {
		uint32_t cp;
		size_t len = decode(s + i, n - i, &cp);
		if (len == 0) {
			r.bad_encoding = true;
			break;
		}
		if (!xml_char(cp))
			r.bad_char = true;
		i += len;
	}
	if (!r.bad_encoding)
		return r;
	/* Past an encoding fault a validator may resynchronise anywhere. An
	 * ASCII byte is a character wherever it stands, and EF BF BE / EF BF
	 * BF decode as U+FFFE / U+FFFF wherever a resync lands on EF, so
	 * these are the faults any of them can find. */
	r.bad_char = false;
	for (i = 0; i < n && !r.bad_char; i++) {
		if (s[i] < 0x20 && s[i] != 0x9 && s[i] != 0xa && s[i] != 0xd)
			r.bad_char = true;
		else if (s[i] == 0xef && n - i >= 3 && s[i + 1] == 0xbf && (s[i + 2] == 0xbe || s[i + 2] == 0xbf))
			r.bad_char = true;
	}
	return r;
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

static void dump_fail(const char *what, const uint8_t *s, size_t n, const char *detail)
{
	fprintf(stderr, "fuzz_utf8: %s: %s\n  buffer (%zu bytes):", what, detail, n);
	for (size_t i = 0; i < n && i < 512; i++)
		fprintf(stderr, "%s%02x", i % 32 ? " " : "\n  ", s[i]);
	fputc('\n', stderr);
	abort();
}

static bool allowed(struct ref r, enum xml_utf8_result got)
{
	if (r.bad_encoding && r.bad_char)
		return got == XML_UTF8_BAD_ENCODING || got == XML_UTF8_BAD_CHAR;
	if (r.bad_encoding)
		return got == XML_UTF8_BAD_ENCODING;
	if (r.bad_char)
		return got == XML_UTF8_BAD_CHAR;
	return got == XML_UTF8_OK;
}

static void check(const uint8_t *s, size_t n, enum simd_level best)
{
	char msg[160];
	struct ref r = reference(s, n);
	enum xml_utf8_result scalar = xml_utf8_validate_scalar((const char *)s, n);

	if (!allowed(r, scalar)) {
		snprintf(msg, sizeof msg, "scalar says %s; reference: encoding %s, char %s",
			 result_name(scalar), r.bad_encoding ? "bad" : "ok", r.bad_char ? "bad" : "ok");
		dump_fail("scalar kernel vs reference", s, n, msg);
	}
	for (int l = 0; l <= (int)best; l++) {
		simd_set_level((enum simd_level)l);
		enum xml_utf8_result got = xml_utf8_validate((const char *)s, n);
		/* simd.h: every level gives the result the scalar kernel gives. */
		if (got != scalar) {
			snprintf(msg, sizeof msg, "level %s says %s, scalar says %s",
				 simd_level_name((enum simd_level)l), result_name(got), result_name(scalar));
			dump_fail("SIMD level vs scalar", s, n, msg);
		}
	}
}

static uint64_t fnv64(const uint8_t *s, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Check pad_before 'a's + s[0..n) + pad_after 'a's as one exact buffer. */
static void check_padded(const uint8_t *s, size_t n, size_t before, size_t after, enum simd_level best)
{
	size_t len = before + n + after;
	uint8_t *b = malloc(len ? len : 1);

	if (!b)
		abort();
	memset(b, 'a', before);
	if (n)
		memcpy(b + before, s, n);
	memset(b + before + n, 'a', after);
	check(b, len, best);
	free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum simd_level best = simd_detect();
	uint64_t h = fnv64(data, size);

	check(data, size, best);
	check_padded(data, size, (size_t)(h % 64), 0, best);
	check_padded(data, size, 0, (size_t)((h >> 8) % 64), best);
	if (size > 1) {
		size_t cut = (size_t)((h >> 16) % size);
		check_padded(data + cut, size - cut, 0, 0, best);
		check_padded(data, cut, (size_t)((h >> 24) % 4), 0, best);
	}
	simd_set_level(best);
	return 0;
}
