/* The XML writer. See parser/xmlw.h for the contract.
 *
 * Escaping is the only part that looks at every byte, so it is built for
 * the common case of a value with nothing to escape: scan eight bytes at a
 * time while none of them can need attention, fall back to one byte at a
 * time on a hit, and copy each run of plain bytes with one memcpy. Multi-
 * byte UTF-8 characters are validated in the scan and stay in the run.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "parser/xmlw.h"

/* ---- escaping --------------------------------------------------------- */

enum {
	R_PLAIN = 0,
	R_AMP, R_LT, R_GT, R_APOS, R_QUOT, R_TAB, R_LF, R_CR,
	R_BAD = 0xff,   /* not an XML 1.0 character */
};

static const struct {
	char s[7];
	uint8_t n;
} rep[] = {
	[R_AMP]  = { "&amp;",  5 },
	[R_LT]   = { "&lt;",   4 },
	[R_GT]   = { "&gt;",   4 },
	[R_APOS] = { "&apos;", 6 },
	[R_QUOT] = { "&quot;", 6 },
	/* Hexadecimal references, the form canonical XML uses. */
	[R_TAB]  = { "&#x9;",  5 },
	[R_LF]   = { "&#xA;",  5 },
	[R_CR]   = { "&#xD;",  5 },
};

/* C0 controls other than TAB LF CR are not XML 1.0 characters, not even
 * as character references, so no escaping can carry them. */
#define C0_FORBIDDEN \
	[0x00] = R_BAD, [0x01] = R_BAD, [0x02] = R_BAD, [0x03] = R_BAD, \
	[0x04] = R_BAD, [0x05] = R_BAD, [0x06] = R_BAD, [0x07] = R_BAD, \
	[0x08] = R_BAD, [0x0b] = R_BAD, [0x0c] = R_BAD, [0x0e] = R_BAD, \
	[0x0f] = R_BAD, [0x10] = R_BAD, [0x11] = R_BAD, [0x12] = R_BAD, \
	[0x13] = R_BAD, [0x14] = R_BAD, [0x15] = R_BAD, [0x16] = R_BAD, \
	[0x17] = R_BAD, [0x18] = R_BAD, [0x19] = R_BAD, [0x1a] = R_BAD, \
	[0x1b] = R_BAD, [0x1c] = R_BAD, [0x1d] = R_BAD, [0x1e] = R_BAD, \
	[0x1f] = R_BAD

/* ASCII only: bytes from 0x80 are UTF-8 and are checked apart. */
static const uint8_t cls_text[128] = {
	C0_FORBIDDEN,
	/* A raw CR would come back as LF (end-of-line normalisation). */
	['\r'] = R_CR,
	['&'] = R_AMP, ['<'] = R_LT,
	/* Only "]]>" must be broken, but escaping every '>' costs nothing here. */
	['>'] = R_GT,
};

static const uint8_t cls_attr[128] = {
	C0_FORBIDDEN,
	/* Attribute-value normalisation turns raw TAB LF CR into spaces. */
	['\t'] = R_TAB, ['\n'] = R_LF, ['\r'] = R_CR,
	['&'] = R_AMP, ['<'] = R_LT, ['>'] = R_GT,
	/* Both quotes, so the result is safe inside either kind. */
	['\''] = R_APOS, ['"'] = R_QUOT,
};

#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t has_byte(uint64_t x, uint8_t c)
{
	uint64_t v = x ^ (ONES * c);
	return (v - ONES) & ~v & HIGHS;
}

/* True when none of the eight bytes needs a look: all ASCII, none below
 * 0x20, none escaped. Exact when it says true; a false only sends the
 * caller to the byte loop. */
static inline bool word_plain(const uint8_t *s, bool attr)
{
	uint64_t x, hit;

	memcpy(&x, s, sizeof(x));
	hit = x & HIGHS;
	hit |= (x - ONES * 0x20) & ~x & HIGHS;
	hit |= has_byte(x, '&') | has_byte(x, '<') | has_byte(x, '>');
	if (attr)
		hit |= has_byte(x, '\'') | has_byte(x, '"');
	return hit == 0;
}

/* Length of the UTF-8 sequence at s (s[0] >= 0x80, avail bytes readable)
 * when it encodes an XML 1.0 character, else 0: overlongs, surrogates,
 * code points above U+10FFFF, U+FFFE, U+FFFF and cut sequences are 0. */
static inline size_t utf8_char(const uint8_t *s, size_t avail)
{
	uint8_t b = s[0], lo = 0x80, hi = 0xbf;

	if (b < 0xc2)
		return 0;
	if (b < 0xe0)
		return avail >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (b < 0xf0) {
		if (avail < 3 || (s[2] & 0xc0) != 0x80)
			return 0;
		if (b == 0xe0)
			lo = 0xa0;
		else if (b == 0xed)
			hi = 0x9f;
		if (s[1] < lo || s[1] > hi)
			return 0;
		if (b == 0xef && s[1] == 0xbf && s[2] >= 0xbe)
			return 0;
		return 3;
	}
	if (b < 0xf5) {
		if (avail < 4 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if (b == 0xf0)
			lo = 0x90;
		else if (b == 0xf4)
			hi = 0x8f;
		if (s[1] < lo || s[1] > hi)
			return 0;
		return 4;
	}
	return 0;
}

/* attr is a constant at each call site, so each mode gets its own loop. */
static inline enum xmlw_status escape(char *dst, size_t cap, const char *src, size_t n,
				      size_t *out, bool attr)
{
	const uint8_t *s = (const uint8_t *)src;
	const uint8_t *cls = attr ? cls_attr : cls_text;
	size_t i = 0, o = 0;

	for (;;) {
		size_t j = i, k;
		uint8_t c;

		for (;;) {
			while (n - j >= 8 && word_plain(s + j, attr))
				j += 8;
			if (j == n)
				break;
			if (s[j] < 0x80) {
				if (cls[s[j]] != R_PLAIN)
					break;
				j++;
				continue;
			}
			k = utf8_char(s + j, n - j);
			if (k == 0)
				return XMLW_ERR_CHAR;
			j += k;
		}
		if (j > i) {
			if (j - i > cap - o)
				return XMLW_ERR_SPACE;
			memcpy(dst + o, s + i, j - i);
			o += j - i;
		}
		if (j == n)
			break;
		c = cls[s[j]];
		if (c == R_BAD)
			return XMLW_ERR_CHAR;
		if (rep[c].n > cap - o)
			return XMLW_ERR_SPACE;
		memcpy(dst + o, rep[c].s, rep[c].n);
		o += rep[c].n;
		i = j + 1;
	}
	*out = o;
	return XMLW_OK;
}

enum xmlw_status xmlw_escape_text(char *dst, size_t dst_cap, const char *src, size_t src_len, size_t *dst_len)
{
	return escape(dst, dst_cap, src, src_len, dst_len, false);
}

enum xmlw_status xmlw_escape_attr(char *dst, size_t dst_cap, const char *src, size_t src_len, size_t *dst_len)
{
	return escape(dst, dst_cap, src, src_len, dst_len, true);
}

/* ---- names (developer builds) ----------------------------------------- */

#ifndef NDEBUG
/* Names are the caller's constants: a check here catches a typo in a
 * builder, not hostile input. Non-ASCII bytes are let through unchecked
 * since no name the server writes has any. */
static bool name_ok(const char *name, size_t n, bool qualified)
{
	bool at_start = true, colon = false;

	if (n == 0 || n > UINT16_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)name[i];
		bool alpha = (c | 0x20) >= 'a' && (c | 0x20) <= 'z';

		if (c == ':') {
			if (!qualified || colon || at_start)
				return false;
			colon = at_start = true;
			continue;
		}
		if (!(c >= 0x80 || alpha || c == '_' ||
		      (!at_start && ((c >= '0' && c <= '9') || c == '-' || c == '.'))))
			return false;
		at_start = false;
	}
	return !at_start;
}
#endif

/* ---- the writer ------------------------------------------------------- */

void xmlw_init(struct xmlw *w, char *buf, size_t cap)
{
	w->buf = buf;
	w->cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap;
	w->len = 0;
	w->err = XMLW_OK;
	w->tag_open = 0;
	w->depth = 0;
	w->pad = 0;
}

static inline void fail(struct xmlw *w, enum xmlw_status st)
{
	if (w->err == XMLW_OK)
		w->err = (uint8_t)st;
}

/* n bytes at the end of the output, or NULL (and the write failed). */
static inline char *reserve(struct xmlw *w, size_t n)
{
	char *p;

	if (n > (size_t)(w->cap - w->len)) {
		fail(w, XMLW_ERR_SPACE);
		return NULL;
	}
	p = w->buf + w->len;
	w->len += (uint32_t)n;
	return p;
}

/* The first content of an element completes its start tag. */
static inline bool content(struct xmlw *w)
{
	char *p;

	if (!w->tag_open)
		return true;
	p = reserve(w, 1);
	if (p == NULL)
		return false;
	*p = '>';
	w->tag_open = 0;
	return true;
}

static void put_escaped(struct xmlw *w, const char *s, size_t n, bool attr)
{
	size_t o;
	enum xmlw_status st;

	st = escape(w->buf + w->len, w->cap - w->len, s, n, &o, attr);
	if (st != XMLW_OK) {
		fail(w, st);
		return;
	}
	w->len += (uint32_t)o;
}

void xmlw_start(struct xmlw *w, const char *qname)
{
	size_t n = strlen(qname);
	char *p;

	assert(name_ok(qname, n, true));
	if (w->err != XMLW_OK)
		return;
	if (w->depth == XMLW_MAX_DEPTH) {
		fail(w, XMLW_ERR_NESTING);
		return;
	}
	p = reserve(w, n + 1 + w->tag_open);
	if (p == NULL)
		return;
	if (w->tag_open)
		*p++ = '>';
	*p++ = '<';
	memcpy(p, qname, n);
	w->name_off[w->depth] = (uint32_t)(p - w->buf);
	w->name_len[w->depth] = (uint16_t)n;
	w->depth++;
	w->tag_open = 1;
}

/* " <n1><n2>='<escaped value>'" */
static void put_attr(struct xmlw *w, const char *n1, size_t l1, const char *n2, size_t l2,
		     const char *v, size_t vl)
{
	char *p;

	if (w->err != XMLW_OK)
		return;
	if (!w->tag_open) {
		fail(w, XMLW_ERR_NESTING);
		return;
	}
	p = reserve(w, l1 + l2 + 3);
	if (p == NULL)
		return;
	*p++ = ' ';
	memcpy(p, n1, l1);
	memcpy(p + l1, n2, l2);
	p += l1 + l2;
	*p++ = '=';
	*p = '\'';
	put_escaped(w, v, vl, true);
	p = w->err == XMLW_OK ? reserve(w, 1) : NULL;
	if (p != NULL)
		*p = '\'';
}

void xmlw_attr(struct xmlw *w, const char *qname, const char *value, size_t len)
{
	size_t n = strlen(qname);

	assert(name_ok(qname, n, true));
	put_attr(w, qname, n, "", 0, value, len);
}

void xmlw_ns(struct xmlw *w, const char *prefix, const char *uri)
{
	size_t ul = strlen(uri);

	if (prefix == NULL) {
		put_attr(w, "xmlns", 5, "", 0, uri, ul);
		return;
	}
	assert(name_ok(prefix, strlen(prefix), false));
	/* Namespaces in XML 1.0 cannot undeclare a prefix: an empty URI would
	 * make the output namespace-ill-formed. */
	if (ul == 0) {
		fail(w, XMLW_ERR_CHAR);
		return;
	}
	put_attr(w, "xmlns:", 6, prefix, strlen(prefix), uri, ul);
}

void xmlw_text(struct xmlw *w, const char *s, size_t len)
{
	if (w->err != XMLW_OK || len == 0 || !content(w))
		return;
	put_escaped(w, s, len, false);
}

void xmlw_raw(struct xmlw *w, const char *s, size_t len)
{
	char *p;

	if (w->err != XMLW_OK || len == 0 || !content(w))
		return;
	p = reserve(w, len);
	if (p != NULL)
		memcpy(p, s, len);
}

void xmlw_end(struct xmlw *w)
{
	size_t n;
	char *p;

	if (w->err != XMLW_OK)
		return;
	if (w->depth == 0) {
		fail(w, XMLW_ERR_NESTING);
		return;
	}
	if (w->tag_open) {
		p = reserve(w, 2);
		if (p == NULL)
			return;
		memcpy(p, "/>", 2);
		w->tag_open = 0;
		w->depth--;
		return;
	}
	n = w->name_len[w->depth - 1];
	p = reserve(w, n + 3);
	if (p == NULL)
		return;
	p[0] = '<';
	p[1] = '/';
	/* The name was written earlier in the same buffer: no overlap. */
	memcpy(p + 2, w->buf + w->name_off[w->depth - 1], n);
	p[n + 2] = '>';
	w->depth--;
}

static enum xmlw_status done(struct xmlw *w, size_t *len)
{
	if (w->err != XMLW_OK) {
		*len = 0;
		return (enum xmlw_status)w->err;
	}
	*len = w->len;
	return XMLW_OK;
}

enum xmlw_status xmlw_finish(struct xmlw *w, size_t *len)
{
	if (w->err == XMLW_OK && w->depth != 0)
		fail(w, XMLW_ERR_NESTING);
	return done(w, len);
}

enum xmlw_status xmlw_finish_open(struct xmlw *w, size_t *len)
{
	if (w->err == XMLW_OK && w->depth != 1)
		fail(w, XMLW_ERR_NESTING);
	if (w->err == XMLW_OK)
		content(w);
	return done(w, len);
}

const char *xmlw_strerror(enum xmlw_status st)
{
	switch (st) {
	case XMLW_OK:          return "ok";
	case XMLW_ERR_SPACE:   return "output buffer too small";
	case XMLW_ERR_CHAR:    return "value is not UTF-8 or holds a character XML forbids";
	case XMLW_ERR_NESTING: return "elements not properly nested or closed";
	}
	return "unknown xmlw status";
}
