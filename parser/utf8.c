/* UTF-8 and XML 1.0 Char validation: a scalar kernel and SSE4.2, AVX2 and
 * AVX-512BW kernels that return the same result for every input.
 *
 * Every level reports BAD_ENCODING if the buffer holds any encoding fault,
 * else BAD_CHAR if it holds any forbidden character, else OK. Fixing that
 * order (utf8.h would allow either) is what makes the levels comparable
 * byte for byte in tests; the cost is that a BAD_CHAR cannot stop the scan.
 *
 * The vector kernels follow the lookup method of Keiser and Lemire
 * ("Validating UTF-8 in less than one instruction per byte", 2021): for each
 * byte, three 16-entry tables indexed by the high and low nibble of the
 * previous byte and the high nibble of this byte are ANDed; each bit of the
 * result names one kind of fault that the byte pair shows. Only the "this is
 * the 3rd or 4th byte of a sequence" rule needs bytes further back, and it is
 * folded in with one XOR. The tables below were derived for this file and
 * are checked exhaustively by tests/unit/parser/test_utf8.c.
 *
 * Input is taken in 64-byte chunks at every level. A chunk whose bytes are
 * all in 0x20..0x7F (most XMPP traffic) costs one signed compare: it cannot
 * hold a fault except a sequence left open by the chunk before. An ASCII
 * chunk with controls (pretty-printed XML: LF, TAB) needs only the Char test.
 * Only chunks with non-ASCII bytes pay for the full check. A buffer of
 * more than 64 + 32 bytes ends with its last 64 bytes checked again after
 * the bytes before them (no copy); a shorter one's tail is
 * padded with spaces, not zeros, so the padding is a valid Char that also
 * ends any sequence cut by the end of the buffer; a buffer that ends on a
 * chunk edge is checked for an open sequence instead.
 */
#include <stdint.h>
#include <string.h>

#include "parser/utf8.h"

#if !defined(STANZA_SIMD_SCALAR_ONLY) && (defined(__x86_64__) || defined(__i386__))
#define UTF8_X86 1
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- scalar */

static int is_bad_control(unsigned c)
{
	return c < 0x20 && c != 0x09 && c != 0x0A && c != 0x0D;
}

static int is_cont(unsigned c)
{
	return (c & 0xC0) == 0x80;
}

/* True if none of the 8 bytes is below 0x20 or above 0x7F. The borrow trick
 * may flag the wrong byte but never misses one, and a miss is all that
 * matters here: a flagged word is simply redone byte by byte. */
static int word_is_printable_ascii(uint64_t w)
{
	const uint64_t ones = 0x0101010101010101ull;
	const uint64_t highs = 0x8080808080808080ull;

	return ((w | ((w - 0x20 * ones) & ~w)) & highs) == 0;
}

enum xml_utf8_result xml_utf8_validate_scalar(const char *buf, size_t len)
{
	const unsigned char *s = (const unsigned char *)buf;
	size_t i = 0;
	int bad_char = 0;

	while (i < len) {
		if (len - i >= 8) {
			uint64_t w;

			memcpy(&w, s + i, 8);
			if (word_is_printable_ascii(w)) {
				i += 8;
				continue;
			}
		}

		unsigned c = s[i];

		if (c < 0x80) {
			bad_char |= is_bad_control(c);
			i++;
		} else if (c < 0xC2) {
			/* a continuation byte with no lead, or C0/C1 (always overlong) */
			return XML_UTF8_BAD_ENCODING;
		} else if (c < 0xE0) {
			if (len - i < 2 || !is_cont(s[i + 1]))
				return XML_UTF8_BAD_ENCODING;
			i += 2;
		} else if (c < 0xF0) {
			if (len - i < 3 || !is_cont(s[i + 1]) || !is_cont(s[i + 2]))
				return XML_UTF8_BAD_ENCODING;
			if (c == 0xE0 && s[i + 1] < 0xA0)        /* overlong */
				return XML_UTF8_BAD_ENCODING;
			if (c == 0xED && s[i + 1] >= 0xA0)       /* surrogate */
				return XML_UTF8_BAD_ENCODING;
			if (c == 0xEF && s[i + 1] == 0xBF && s[i + 2] >= 0xBE)
				bad_char = 1;                    /* U+FFFE, U+FFFF */
			i += 3;
		} else if (c < 0xF5) {
			if (len - i < 4 || !is_cont(s[i + 1]) || !is_cont(s[i + 2]) ||
			    !is_cont(s[i + 3]))
				return XML_UTF8_BAD_ENCODING;
			if (c == 0xF0 && s[i + 1] < 0x90)        /* overlong */
				return XML_UTF8_BAD_ENCODING;
			if (c == 0xF4 && s[i + 1] >= 0x90)       /* above U+10FFFF */
				return XML_UTF8_BAD_ENCODING;
			i += 4;
		} else {
			return XML_UTF8_BAD_ENCODING;
		}
	}
	return bad_char ? XML_UTF8_BAD_CHAR : XML_UTF8_OK;
}

#ifdef UTF8_X86

/* ------------------------------------------------------ shared tables */

/* One bit per kind of fault a (previous byte, byte) pair can show. Bit 6 is
 * shared: its two meanings never meet in one pair, because OVERLONG_4 needs
 * lead F0 and TOO_LARGE_1000 a lead F5..FF. */
enum {
	TOO_SHORT      = 1 << 0,  /* lead, then no continuation */
	TOO_LONG       = 1 << 1,  /* ASCII, then a continuation */
	OVERLONG_3     = 1 << 2,  /* E0 80..9F */
	TOO_LARGE      = 1 << 3,  /* F4 90..BF, F5..FF 90..BF */
	SURROGATE      = 1 << 4,  /* ED A0..BF */
	OVERLONG_2     = 1 << 5,  /* C0 or C1, then a continuation */
	TOO_LARGE_1000 = 1 << 6,  /* F5..FF 80..8F */
	OVERLONG_4     = 1 << 6,  /* F0 80..8F */
	TWO_CONTS      = 1 << 7,  /* continuation, continuation: fine only inside a 3- or 4-byte sequence */
	CARRY          = TOO_SHORT | TOO_LONG | TWO_CONTS,
};

static const uint8_t prev_high_tab[16] __attribute__((aligned(16))) = {
	TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG,
	TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG,
	TWO_CONTS, TWO_CONTS, TWO_CONTS, TWO_CONTS,
	TOO_SHORT | OVERLONG_2,
	TOO_SHORT,
	TOO_SHORT | OVERLONG_3 | SURROGATE,
	TOO_SHORT | TOO_LARGE | TOO_LARGE_1000 | OVERLONG_4,
};

static const uint8_t prev_low_tab[16] __attribute__((aligned(16))) = {
	CARRY | OVERLONG_2 | OVERLONG_3 | OVERLONG_4,
	CARRY | OVERLONG_2,
	CARRY,
	CARRY,
	CARRY | TOO_LARGE,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
	CARRY | TOO_LARGE | TOO_LARGE_1000 | SURROGATE,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
	CARRY | TOO_LARGE | TOO_LARGE_1000,
};

static const uint8_t cur_high_tab[16] __attribute__((aligned(16))) = {
	TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT,
	TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT,
	TOO_LONG | TWO_CONTS | OVERLONG_2 | OVERLONG_3 | OVERLONG_4 | TOO_LARGE_1000,
	TOO_LONG | TWO_CONTS | OVERLONG_2 | OVERLONG_3 | TOO_LARGE,
	TOO_LONG | TWO_CONTS | OVERLONG_2 | SURROGATE | TOO_LARGE,
	TOO_LONG | TWO_CONTS | OVERLONG_2 | SURROGATE | TOO_LARGE,
	TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT,
};

/* pshufb(ws_tab, c) == c exactly for c in {TAB, LF, CR}: the other entries
 * are 0x80, which no byte below 0x80 equals, and pshufb gives 0 for bytes
 * with the high bit set, which no such byte equals. */
static const uint8_t ws_tab[16] __attribute__((aligned(16))) = {
	0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	0x80, 0x09, 0x0A, 0x80, 0x80, 0x0D, 0x80, 0x80,
};

/* Saturating byte - this is non-zero where a sequence starts too close to
 * the end of a 64-byte chunk to end inside it: a 4-byte lead in the last 3
 * bytes, a 3-byte lead in the last 2, a 2-byte lead in the last one. */
#define FF8 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
static const uint8_t open_max_tab[64] __attribute__((aligned(64))) = {
	FF8, FF8, FF8, FF8, FF8, FF8, FF8,
	0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xF0 - 1, 0xE0 - 1, 0xC0 - 1,
};
#undef FF8

#define CHUNK 64

/* -------------------------------------------------------------- SSE4.2 */

struct sse_state {
	__m128i prev;       /* the last 16 bytes seen */
	__m128i open;       /* non-zero: prev ends inside a sequence */
	__m128i enc_err;    /* non-zero byte: encoding fault */
	__m128i char_err;   /* high bit set in some byte: forbidden Char */
};

/* High bit set where an ASCII byte is a control other than TAB LF CR. */
__attribute__((target("sse4.2,ssse3")))
static inline __m128i sse_bad_ascii_ctrl(__m128i cur)
{
	__m128i low = _mm_cmplt_epi8(cur, _mm_set1_epi8(0x20));
	__m128i ws = _mm_cmpeq_epi8(_mm_shuffle_epi8(_mm_load_si128((const __m128i *)ws_tab), cur), cur);

	return _mm_andnot_si128(ws, low);
}

__attribute__((target("sse4.2,ssse3")))
static inline void sse_block(struct sse_state *st, __m128i cur)
{
	const __m128i nib = _mm_set1_epi8(0x0F);
	__m128i prev1 = _mm_alignr_epi8(cur, st->prev, 15);
	__m128i prev2 = _mm_alignr_epi8(cur, st->prev, 14);
	__m128i prev3 = _mm_alignr_epi8(cur, st->prev, 13);

	__m128i ph = _mm_shuffle_epi8(_mm_load_si128((const __m128i *)prev_high_tab),
	                              _mm_and_si128(_mm_srli_epi16(prev1, 4), nib));
	__m128i pl = _mm_shuffle_epi8(_mm_load_si128((const __m128i *)prev_low_tab),
	                              _mm_and_si128(prev1, nib));
	__m128i ch = _mm_shuffle_epi8(_mm_load_si128((const __m128i *)cur_high_tab),
	                              _mm_and_si128(_mm_srli_epi16(cur, 4), nib));
	__m128i special = _mm_and_si128(_mm_and_si128(ph, pl), ch);

	/* 0x80 where prev2 >= E0 or prev3 >= F0: the byte must continue */
	__m128i third = _mm_subs_epu8(prev2, _mm_set1_epi8((char)(0xE0 - 0x80)));
	__m128i fourth = _mm_subs_epu8(prev3, _mm_set1_epi8((char)(0xF0 - 0x80)));
	__m128i must = _mm_and_si128(_mm_or_si128(third, fourth), _mm_set1_epi8((char)0x80));

	st->enc_err = _mm_or_si128(st->enc_err, _mm_xor_si128(special, must));

	/* Signed: bytes >= 0x80 also compare below 0x20; the ~cur below clears
	 * their high bit, the only bit char_err is tested on. */
	__m128i low = _mm_cmplt_epi8(cur, _mm_set1_epi8(0x20));
	__m128i ws = _mm_cmpeq_epi8(_mm_shuffle_epi8(_mm_load_si128((const __m128i *)ws_tab), cur), cur);
	__m128i ctrl = _mm_andnot_si128(_mm_or_si128(ws, cur), low);

	__m128i nonchar = _mm_and_si128(
		_mm_and_si128(_mm_cmpeq_epi8(prev2, _mm_set1_epi8((char)0xEF)),
		              _mm_cmpeq_epi8(prev1, _mm_set1_epi8((char)0xBF))),
		_mm_cmpeq_epi8(_mm_or_si128(cur, _mm_set1_epi8(1)), _mm_set1_epi8((char)0xBF)));

	st->char_err = _mm_or_si128(st->char_err, _mm_or_si128(ctrl, nonchar));
	st->prev = cur;
}

__attribute__((target("sse4.2,ssse3")))
static inline void sse_chunk(struct sse_state *st, const unsigned char *p)
{
	__m128i a = _mm_loadu_si128((const __m128i *)p);
	__m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
	__m128i c = _mm_loadu_si128((const __m128i *)(p + 32));
	__m128i d = _mm_loadu_si128((const __m128i *)(p + 48));
	/* signed min: below 0x20 iff some byte is a control or non-ASCII */
	__m128i m = _mm_min_epi8(_mm_min_epi8(a, b), _mm_min_epi8(c, d));

	if (_mm_movemask_epi8(_mm_cmplt_epi8(m, _mm_set1_epi8(0x20))) == 0) {
		st->enc_err = _mm_or_si128(st->enc_err, st->open);
		st->open = _mm_setzero_si128();
		st->prev = d;
		return;
	}
	if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))) == 0) {
		/* ASCII with controls (often LF): only the Char test applies */
		st->char_err = _mm_or_si128(st->char_err, _mm_or_si128(
			_mm_or_si128(sse_bad_ascii_ctrl(a), sse_bad_ascii_ctrl(b)),
			_mm_or_si128(sse_bad_ascii_ctrl(c), sse_bad_ascii_ctrl(d))));
		st->enc_err = _mm_or_si128(st->enc_err, st->open);
		st->open = _mm_setzero_si128();
		st->prev = d;
		return;
	}
	sse_block(st, a);
	sse_block(st, b);
	sse_block(st, c);
	sse_block(st, d);
	st->open = _mm_subs_epu8(d, _mm_load_si128((const __m128i *)(open_max_tab + 48)));
}

__attribute__((target("sse4.2,ssse3")))
static enum xml_utf8_result validate_sse42(const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	struct sse_state st = {
		_mm_setzero_si128(), _mm_setzero_si128(),
		_mm_setzero_si128(), _mm_setzero_si128(),
	};
	size_t i = 0;

	for (; len - i >= CHUNK; i += CHUNK)
		sse_chunk(&st, p + i);
	if (i < len && len >= CHUNK + 16) {
		/* The last 64 bytes again, after the 16 before them: with that
		 * context, bytes seen twice only raise again what they raised
		 * the first time, and the chunk before's open sequence is
		 * checked inside this one. No copy of the tail. */
		st.prev = _mm_loadu_si128((const __m128i *)(p + len - CHUNK - 16));
		st.open = _mm_setzero_si128();
		sse_chunk(&st, p + len - CHUNK);
	} else if (i < len) {
		unsigned char tail[CHUNK];

		memset(tail, ' ', sizeof tail);
		memcpy(tail, p + i, len - i);
		sse_chunk(&st, tail);
	}
	st.enc_err = _mm_or_si128(st.enc_err, st.open);
	if (!_mm_testz_si128(st.enc_err, st.enc_err))
		return XML_UTF8_BAD_ENCODING;
	if (_mm_movemask_epi8(st.char_err))
		return XML_UTF8_BAD_CHAR;
	return XML_UTF8_OK;
}

/* ---------------------------------------------------------------- AVX2 */

struct avx2_state {
	__m256i prev, open, enc_err, char_err;   /* as in struct sse_state */
};

__attribute__((target("avx2")))
static inline __m256i avx2_table(const uint8_t *tab)
{
	return _mm256_broadcastsi128_si256(_mm_load_si128((const __m128i *)tab));
}

__attribute__((target("avx2")))
static inline __m256i avx2_bad_ascii_ctrl(__m256i cur)
{
	__m256i low = _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), cur);
	__m256i ws = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(avx2_table(ws_tab), cur), cur);

	return _mm256_andnot_si256(ws, low);
}

__attribute__((target("avx2")))
static inline void avx2_block(struct avx2_state *st, __m256i cur)
{
	const __m256i nib = _mm256_set1_epi8(0x0F);
	/* per 128-bit lane, alignr needs the lane before: prev's high lane
	 * under cur's low one, cur's low lane under its high one */
	__m256i before = _mm256_permute2x128_si256(st->prev, cur, 0x21);
	__m256i prev1 = _mm256_alignr_epi8(cur, before, 15);
	__m256i prev2 = _mm256_alignr_epi8(cur, before, 14);
	__m256i prev3 = _mm256_alignr_epi8(cur, before, 13);

	__m256i ph = _mm256_shuffle_epi8(avx2_table(prev_high_tab),
	                                 _mm256_and_si256(_mm256_srli_epi16(prev1, 4), nib));
	__m256i pl = _mm256_shuffle_epi8(avx2_table(prev_low_tab), _mm256_and_si256(prev1, nib));
	__m256i ch = _mm256_shuffle_epi8(avx2_table(cur_high_tab),
	                                 _mm256_and_si256(_mm256_srli_epi16(cur, 4), nib));
	__m256i special = _mm256_and_si256(_mm256_and_si256(ph, pl), ch);

	__m256i third = _mm256_subs_epu8(prev2, _mm256_set1_epi8((char)(0xE0 - 0x80)));
	__m256i fourth = _mm256_subs_epu8(prev3, _mm256_set1_epi8((char)(0xF0 - 0x80)));
	__m256i must = _mm256_and_si256(_mm256_or_si256(third, fourth), _mm256_set1_epi8((char)0x80));

	st->enc_err = _mm256_or_si256(st->enc_err, _mm256_xor_si256(special, must));

	__m256i low = _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), cur);
	__m256i ws = _mm256_cmpeq_epi8(_mm256_shuffle_epi8(avx2_table(ws_tab), cur), cur);
	__m256i ctrl = _mm256_andnot_si256(_mm256_or_si256(ws, cur), low);

	__m256i nonchar = _mm256_and_si256(
		_mm256_and_si256(_mm256_cmpeq_epi8(prev2, _mm256_set1_epi8((char)0xEF)),
		                 _mm256_cmpeq_epi8(prev1, _mm256_set1_epi8((char)0xBF))),
		_mm256_cmpeq_epi8(_mm256_or_si256(cur, _mm256_set1_epi8(1)),
		                  _mm256_set1_epi8((char)0xBF)));

	st->char_err = _mm256_or_si256(st->char_err, _mm256_or_si256(ctrl, nonchar));
	st->prev = cur;
}

__attribute__((target("avx2")))
static inline void avx2_chunk(struct avx2_state *st, const unsigned char *p)
{
	__m256i a = _mm256_loadu_si256((const __m256i *)p);
	__m256i b = _mm256_loadu_si256((const __m256i *)(p + 32));
	__m256i m = _mm256_min_epi8(a, b);

	if (_mm256_movemask_epi8(_mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), m)) == 0) {
		st->enc_err = _mm256_or_si256(st->enc_err, st->open);
		st->open = _mm256_setzero_si256();
		st->prev = b;
		return;
	}
	if (_mm256_movemask_epi8(_mm256_or_si256(a, b)) == 0) {
		/* ASCII with controls (often LF): only the Char test applies */
		st->char_err = _mm256_or_si256(st->char_err,
			_mm256_or_si256(avx2_bad_ascii_ctrl(a), avx2_bad_ascii_ctrl(b)));
		st->enc_err = _mm256_or_si256(st->enc_err, st->open);
		st->open = _mm256_setzero_si256();
		st->prev = b;
		return;
	}
	avx2_block(st, a);
	avx2_block(st, b);
	st->open = _mm256_subs_epu8(b, _mm256_load_si256((const __m256i *)(open_max_tab + 32)));
}

__attribute__((target("avx2")))
static enum xml_utf8_result validate_avx2(const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	struct avx2_state st = {
		_mm256_setzero_si256(), _mm256_setzero_si256(),
		_mm256_setzero_si256(), _mm256_setzero_si256(),
	};
	size_t i = 0;

	for (; len - i >= CHUNK; i += CHUNK)
		avx2_chunk(&st, p + i);
	if (i < len && len >= CHUNK + 32) {
		/* As in validate_sse42: the last 64 bytes again, in context. */
		st.prev = _mm256_loadu_si256((const __m256i *)(p + len - CHUNK - 32));
		st.open = _mm256_setzero_si256();
		avx2_chunk(&st, p + len - CHUNK);
	} else if (i < len) {
		unsigned char tail[CHUNK];

		memset(tail, ' ', sizeof tail);
		memcpy(tail, p + i, len - i);
		avx2_chunk(&st, tail);
	}
	st.enc_err = _mm256_or_si256(st.enc_err, st.open);
	if (!_mm256_testz_si256(st.enc_err, st.enc_err))
		return XML_UTF8_BAD_ENCODING;
	if (_mm256_movemask_epi8(st.char_err))
		return XML_UTF8_BAD_CHAR;
	return XML_UTF8_OK;
}

/* ------------------------------------------------------------- AVX-512 */

struct avx512_state {
	__m512i prev, open, enc_err;
	__mmask64 char_err;     /* a bit per byte: forbidden Char */
};

#define AVX512_TARGET "avx512f,avx512bw"

__attribute__((target(AVX512_TARGET)))
static inline __m512i avx512_table(const uint8_t *tab)
{
	return _mm512_broadcast_i32x4(_mm_load_si128((const __m128i *)tab));
}

__attribute__((target(AVX512_TARGET)))
static inline void avx512_block(struct avx512_state *st, __m512i cur)
{
	const __m512i nib = _mm512_set1_epi8(0x0F);
	/* lanes [prev.3, cur.0, cur.1, cur.2]: each lane of cur over the one before */
	__m512i before = _mm512_alignr_epi64(cur, st->prev, 6);
	__m512i prev1 = _mm512_alignr_epi8(cur, before, 15);
	__m512i prev2 = _mm512_alignr_epi8(cur, before, 14);
	__m512i prev3 = _mm512_alignr_epi8(cur, before, 13);

	__m512i ph = _mm512_shuffle_epi8(avx512_table(prev_high_tab),
	                                 _mm512_and_si512(_mm512_srli_epi16(prev1, 4), nib));
	__m512i pl = _mm512_shuffle_epi8(avx512_table(prev_low_tab), _mm512_and_si512(prev1, nib));
	__m512i ch = _mm512_shuffle_epi8(avx512_table(cur_high_tab),
	                                 _mm512_and_si512(_mm512_srli_epi16(cur, 4), nib));
	__m512i special = _mm512_and_si512(_mm512_and_si512(ph, pl), ch);

	__m512i third = _mm512_subs_epu8(prev2, _mm512_set1_epi8((char)(0xE0 - 0x80)));
	__m512i fourth = _mm512_subs_epu8(prev3, _mm512_set1_epi8((char)(0xF0 - 0x80)));
	__m512i must = _mm512_and_si512(_mm512_or_si512(third, fourth), _mm512_set1_epi8((char)0x80));

	st->enc_err = _mm512_or_si512(st->enc_err, _mm512_xor_si512(special, must));

	__mmask64 low = _mm512_cmplt_epu8_mask(cur, _mm512_set1_epi8(0x20));
	__mmask64 ws = _mm512_cmpeq_epi8_mask(_mm512_shuffle_epi8(avx512_table(ws_tab), cur), cur);
	__mmask64 nonchar =
		_mm512_cmpeq_epi8_mask(prev2, _mm512_set1_epi8((char)0xEF)) &
		_mm512_cmpeq_epi8_mask(prev1, _mm512_set1_epi8((char)0xBF)) &
		_mm512_cmpeq_epi8_mask(_mm512_or_si512(cur, _mm512_set1_epi8(1)),
		                       _mm512_set1_epi8((char)0xBF));

	st->char_err |= (low & ~ws) | nonchar;
	st->open = _mm512_subs_epu8(cur, _mm512_load_si512((const void *)open_max_tab));
	st->prev = cur;
}

__attribute__((target(AVX512_TARGET)))
static inline void avx512_chunk(struct avx512_state *st, __m512i cur)
{
	/* signed: non-ASCII bytes are negative, so one compare finds both */
	__mmask64 low = _mm512_cmplt_epi8_mask(cur, _mm512_set1_epi8(0x20));

	if (low == 0 || _mm512_movepi8_mask(cur) == 0) {
		/* ASCII, maybe with controls (often LF): only the Char test applies */
		if (low) {
			__mmask64 ws = _mm512_cmpeq_epi8_mask(
				_mm512_shuffle_epi8(avx512_table(ws_tab), cur), cur);

			st->char_err |= low & ~ws;
		}
		st->enc_err = _mm512_or_si512(st->enc_err, st->open);
		st->open = _mm512_setzero_si512();
		st->prev = cur;
		return;
	}
	avx512_block(st, cur);
}

__attribute__((target(AVX512_TARGET)))
static enum xml_utf8_result validate_avx512(const char *buf, size_t len)
{
	struct avx512_state st = {
		_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), 0,
	};
	size_t i = 0;

	for (; len - i >= CHUNK; i += CHUNK)
		avx512_chunk(&st, _mm512_loadu_si512((const void *)(buf + i)));
	if (i < len) {
		/* masked-off bytes are neither read nor able to fault */
		__mmask64 m = ((__mmask64)1 << (len - i)) - 1;

		avx512_chunk(&st, _mm512_mask_loadu_epi8(_mm512_set1_epi8(' '), m, buf + i));
	}
	st.enc_err = _mm512_or_si512(st.enc_err, st.open);
	if (_mm512_test_epi8_mask(st.enc_err, st.enc_err))
		return XML_UTF8_BAD_ENCODING;
	if (st.char_err)
		return XML_UTF8_BAD_CHAR;
	return XML_UTF8_OK;
}

#endif /* UTF8_X86 */

/* ------------------------------------------------------------ dispatch */

static enum xml_utf8_result (*validate_fn)(const char *, size_t) = xml_utf8_validate_scalar;

enum xml_utf8_result xml_utf8_validate(const char *buf, size_t len)
{
	return validate_fn(buf, len);
}

void xml_utf8_select(enum simd_level level)
{
	switch (level) {
#ifdef UTF8_X86
	case SIMD_AVX512:
		validate_fn = validate_avx512;
		return;
	case SIMD_AVX2:
		validate_fn = validate_avx2;
		return;
	case SIMD_SSE42:
		validate_fn = validate_sse42;
		return;
#endif
	default:
		validate_fn = xml_utf8_validate_scalar;
		return;
	}
}
