/* Find the first byte of a set: scalar, SSE4.2, AVX2 and AVX-512BW kernels.
 *
 * The vector kernels classify 16/32/64 bytes at once with two nibble lookups
 * (pshufb): lo[c & 15] & hi[c >> 4] is non-zero exactly for members. Bytes
 * >= 0x80 have a high nibble of 8..15, whose hi[] entries are zero, so they
 * never match, as in the scalar table.
 *
 * xml_mark4 is the framer's kernel: four cmpeq/movemask per 64 bytes give
 * the positions of four bytes at once, so the framer pays one call per
 * block instead of one per short run.
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

void xml_mark4_scalar(const char chars[4], const char *buf, size_t off, size_t len, uint64_t m[4])
{
	const uint8_t *p = (const uint8_t *)buf + off;
	size_t n = len - off < 64 ? len - off : 64;
	uint64_t r0 = 0, r1 = 0, r2 = 0, r3 = 0;

	for (size_t i = 0; i < n; i++) {
		char c = (char)p[i];
		r0 |= (uint64_t)(c == chars[0]) << i;
		r1 |= (uint64_t)(c == chars[1]) << i;
		r2 |= (uint64_t)(c == chars[2]) << i;
		r3 |= (uint64_t)(c == chars[3]) << i;
	}
	m[0] = r0;
	m[1] = r1;
	m[2] = r2;
	m[3] = r3;
}

#ifdef SCAN_X86

/* The 64 bytes a vector kernel reads for the block at off, without reading
 * outside buf[0..len): the block itself; or, near the end, the last 64
 * bytes of buf, with the masks to be shifted down by *sh; or, for a buffer
 * shorter than 64, a padded copy whose padding *lim masks off. */
static inline const char *block_at(const char *buf, size_t off, size_t len, unsigned *sh, uint64_t *lim,
				   char *tmp)
{
	*sh = 0;
	*lim = ~(uint64_t)0;
	if (len - off >= 64)
		return buf + off;
	if (len >= 64) {
		*sh = (unsigned)(off + 64 - len);
		return buf + len - 64;
	}
	memset(tmp, 0, 64);
	memcpy(tmp, buf + off, len - off);
	*lim = ((uint64_t)1 << (len - off)) - 1;
	return tmp;
}

/* Each vector kernel comes in two parts: the whole-block case, which has
 * no stack buffer to set up, and the rarer end of the buffer, kept out of
 * line. */
__attribute__((target("sse4.2"), always_inline))
static inline void mark4_sse42_at(const char chars[4], const char *p, unsigned sh, uint64_t lim, uint64_t m[4])
{
	__m128i v0 = _mm_loadu_si128((const __m128i *)p);
	__m128i v1 = _mm_loadu_si128((const __m128i *)(p + 16));
	__m128i v2 = _mm_loadu_si128((const __m128i *)(p + 32));
	__m128i v3 = _mm_loadu_si128((const __m128i *)(p + 48));

	for (unsigned j = 0; j < 4; j++) {
		__m128i c = _mm_set1_epi8(chars[j]);
		uint64_t r = (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v0, c)) |
			     (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v1, c)) << 16 |
			     (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v2, c)) << 32 |
			     (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v3, c)) << 48;
		m[j] = (r >> sh) & lim;
	}
}

__attribute__((target("sse4.2"), noinline, cold))
static void mark4_sse42_end(const char chars[4], const char *buf, size_t off, size_t len, uint64_t m[4])
{
	char tmp[64];
	unsigned sh;
	uint64_t lim;
	const char *p = block_at(buf, off, len, &sh, &lim, tmp);

	mark4_sse42_at(chars, p, sh, lim, m);
}

__attribute__((target("sse4.2")))
static void mark4_sse42(const char chars[4], const char *buf, size_t off, size_t len, uint64_t m[4])
{
	if (len - off >= 64)
		mark4_sse42_at(chars, buf + off, 0, ~(uint64_t)0, m);
	else
		mark4_sse42_end(chars, buf, off, len, m);
}

__attribute__((target("avx2"), always_inline))
static inline void mark4_avx2_at(const char chars[4], const char *p, unsigned sh, uint64_t lim, uint64_t m[4])
{
	__m256i a = _mm256_loadu_si256((const __m256i *)p);
	__m256i b = _mm256_loadu_si256((const __m256i *)(p + 32));

	for (unsigned j = 0; j < 4; j++) {
		__m256i c = _mm256_set1_epi8(chars[j]);
		uint64_t r = (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(a, c)) |
			     (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, c)) << 32;
		m[j] = (r >> sh) & lim;
	}
}

__attribute__((target("avx2"), noinline, cold))
static void mark4_avx2_end(const char chars[4], const char *buf, size_t off, size_t len, uint64_t m[4])
{
	char tmp[64];
	unsigned sh;
	uint64_t lim;
	const char *p = block_at(buf, off, len, &sh, &lim, tmp);

	mark4_avx2_at(chars, p, sh, lim, m);
}

__attribute__((target("avx2")))
static void mark4_avx2(const char chars[4], const char *buf, size_t off, size_t len, uint64_t m[4])
{
	if (len - off >= 64)
		mark4_avx2_at(chars, buf + off, 0, ~(uint64_t)0, m);
	else
		mark4_avx2_end(chars, buf, off, len, m);
}

__attribute__((target("avx512f,avx512bw")))
static void mark4_avx512(const char chars[4], const char *buf, size_t off, size_t len, uint64_t m[4])
{
	/* Masked load and compare: bytes past len are neither read nor matched. */
	__mmask64 k = len - off >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (len - off)) - 1;
	__m512i v = _mm512_maskz_loadu_epi8(k, (const void *)(buf + off));

	for (unsigned j = 0; j < 4; j++)
		m[j] = _mm512_mask_cmpeq_epi8_mask(k, v, _mm512_set1_epi8(chars[j]));
}

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
static void (*mark4_fn)(const char *, const char *, size_t, size_t, uint64_t *) = xml_mark4_scalar;
int xml_mark4_wide;

void xml_scan_select(enum simd_level level)
{
	scan_fn = xml_scan_scalar;
	mark4_fn = xml_mark4_scalar;
	xml_mark4_wide = 0;
#ifdef SCAN_X86
	if (level >= SIMD_AVX512) {
		scan_fn = scan_avx512;
		mark4_fn = mark4_avx512;
		xml_mark4_wide = 1;
	} else if (level >= SIMD_AVX2) {
		scan_fn = scan_avx2;
		mark4_fn = mark4_avx2;
		xml_mark4_wide = 1;
	} else if (level >= SIMD_SSE42) {
		scan_fn = scan_sse42;
		mark4_fn = mark4_sse42;
		xml_mark4_wide = 1;
	}
#else
	(void)level;
#endif
}

void xml_mark4(const char chars[4], const char *buf, size_t off, size_t len, uint64_t m[4])
{
	mark4_fn(chars, buf, off, len, m);
}

size_t xml_scan(const struct xml_charset *cs, const char *buf, size_t len)
{
	return scan_fn(cs, buf, len);
}
