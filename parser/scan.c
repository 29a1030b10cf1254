/* Find the first byte of a set: scalar, SSE4.2, AVX2 and AVX-512BW kernels.
 *
 * The vector kernels classify 16/32/64 bytes at once with two nibble lookups
 * (pshufb): lo[c & 15] & hi[c >> 4] is non-zero exactly for members. Bytes
 * >= 0x80 have a high nibble of 8..15, whose hi[] entries are zero, so they
 * never match, as in the scalar table.
 */
#include <assert.h>
#include <string.h>
#include "parser/scan.h"

#if !defined(STANZA_SIMD_SCALAR_ONLY) && defined(__x86_64__)
#define SCAN_X86 1
#include <immintrin.h>
#endif

void xml_charset_init(struct xml_charset *cs, const char *chars, size_t n)
{
	memset(cs, 0, sizeof(*cs));
	for (unsigned h = 0; h < 8; h++)
		cs->hi[h] = (uint8_t)(1u << h);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)chars[i];
		assert(c < 0x80);
		cs->in[c] = 1;
		cs->lo[c & 15] |= (uint8_t)(1u << (c >> 4));
	}
}

size_t xml_scan_scalar(const struct xml_charset *cs, const char *buf, size_t len)
{
	const uint8_t *p = (const uint8_t *)buf;
	size_t i = 0;

	for (; i + 4 <= len; i += 4) {
		if (cs->in[p[i]]) return i;
		if (cs->in[p[i + 1]]) return i + 1;
		if (cs->in[p[i + 2]]) return i + 2;
		if (cs->in[p[i + 3]]) return i + 3;
	}
	for (; i < len; i++)
		if (cs->in[p[i]])
			return i;
	return len;
}

#ifdef SCAN_X86

__attribute__((target("ssse3,sse4.2")))
static size_t scan_sse42(const struct xml_charset *cs, const char *buf, size_t len)
{
	const __m128i lo = _mm_load_si128((const __m128i *)cs->lo);
	const __m128i hi = _mm_load_si128((const __m128i *)cs->hi);
	const __m128i nib = _mm_set1_epi8(0x0f);
	const __m128i zero = _mm_setzero_si128();
	size_t i = 0;

	for (; i + 16 <= len; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(buf + i));
		__m128i l = _mm_shuffle_epi8(lo, _mm_and_si128(v, nib));
		__m128i h = _mm_shuffle_epi8(hi, _mm_and_si128(_mm_srli_epi16(v, 4), nib));
		unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_and_si128(l, h), zero)) ^ 0xffffu;
		if (m)
			return i + (size_t)__builtin_ctz(m);
	}
	return i + xml_scan_scalar(cs, buf + i, len - i);
}

__attribute__((target("avx2")))
static size_t scan_avx2(const struct xml_charset *cs, const char *buf, size_t len)
{
	const __m256i lo = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)cs->lo));
	const __m256i hi = _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)cs->hi));
	const __m256i nib = _mm256_set1_epi8(0x0f);
	const __m256i zero = _mm256_setzero_si256();
	size_t i = 0;

	for (; i + 32 <= len; i += 32) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(buf + i));
		__m256i l = _mm256_shuffle_epi8(lo, _mm256_and_si256(v, nib));
		__m256i h = _mm256_shuffle_epi8(hi, _mm256_and_si256(_mm256_srli_epi16(v, 4), nib));
		unsigned m = ~(unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(l, h), zero));
		if (m)
			return i + (size_t)__builtin_ctz(m);
	}
	return i + scan_sse42(cs, buf + i, len - i);
}

__attribute__((target("avx512f,avx512bw")))
static size_t scan_avx512(const struct xml_charset *cs, const char *buf, size_t len)
{
	const __m512i lo = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)cs->lo));
	const __m512i hi = _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)cs->hi));
	const __m512i nib = _mm512_set1_epi8(0x0f);
	size_t i = 0;

	for (; i + 64 <= len; i += 64) {
		__m512i v = _mm512_loadu_si512((const void *)(buf + i));
		__m512i l = _mm512_shuffle_epi8(lo, _mm512_and_si512(v, nib));
		__m512i h = _mm512_shuffle_epi8(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib));
		__mmask64 m = _mm512_test_epi8_mask(l, h);
		if (m)
			return i + (size_t)__builtin_ctzll(m);
	}
	if (i < len) {
		/* Masked load: bytes past len are neither read nor matched. */
		__mmask64 k = (1ull << (len - i)) - 1;
		__m512i v = _mm512_maskz_loadu_epi8(k, (const void *)(buf + i));
		__m512i l = _mm512_shuffle_epi8(lo, _mm512_and_si512(v, nib));
		__m512i h = _mm512_shuffle_epi8(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), nib));
		__mmask64 m = _mm512_mask_test_epi8_mask(k, l, h);
		if (m)
			return i + (size_t)__builtin_ctzll(m);
	}
	return len;
}

#endif /* SCAN_X86 */

static size_t (*scan_fn)(const struct xml_charset *, const char *, size_t) = xml_scan_scalar;

void xml_scan_select(enum simd_level level)
{
	scan_fn = xml_scan_scalar;
#ifdef SCAN_X86
	if (level >= SIMD_AVX512)
		scan_fn = scan_avx512;
	else if (level >= SIMD_AVX2)
		scan_fn = scan_avx2;
	else if (level >= SIMD_SSE42)
		scan_fn = scan_sse42;
#else
	(void)level;
#endif
}

size_t xml_scan(const struct xml_charset *cs, const char *buf, size_t len)
{
	return scan_fn(cs, buf, len);
}
