/* Framing: where does the stream header, each top-level stanza and the
 * stream close end? A resumable state machine over the connection's buffer.
 *
 * Only the bytes that decide boundaries are looked at: '<' in content, quotes
 * and '>' inside tags, "]]>" in CDATA. Everything between is skipped: with
 * the bitmasks of xml_mark4, 64 bytes per call, at the SIMD levels; with
 * memchr and the set scan at the scalar one. The state survives any split: a call resumes
 * at f->pos, where the previous one stopped. The only bytes ever looked at
 * twice are the few of a "<!" or "<?" whose meaning needs the next 7 bytes
 * and which arrived cut short.
 */
#include <assert.h>
#include <string.h>
#include "parser/scan.h"
#include "parser/xml.h"

enum frame_state {
	S_TEXT = 0,   /* content: looking for '<' */
	S_LT,         /* after '<' */
	S_TAG,        /* inside a start or end tag, outside quotes */
	S_DQUOTE,     /* inside "..." */
	S_SQUOTE,     /* inside '...' */
	S_BANG,       /* after "<!" */
	S_CDATA,      /* inside <![CDATA[ ... ]]> */
	S_QMARK,      /* after "<?" */
	S_DECL,       /* inside <?xml ... ?> */
};

enum frame_phase {
	PH_PROLOG = 0,  /* before the stream header */
	PH_STREAM,
	PH_CLOSED,
};

enum frame_flags {
	F_ITEM = 1,     /* an item (header or stanza) is in progress from f->start */
	F_END = 2,      /* the tag being scanned is an end tag */
	F_SEEN = 4,     /* prolog: bytes were seen, an XML declaration is no longer allowed */
};

/* The boundary bytes, found 64 at a time (xml_mark4) so that stepping
 * from one to the next is a shift and a tzcnt, not a call. */
enum frame_class {
	FC_DQ,
	FC_SQ,
	FC_GT,
	FC_LT,
	FC_TAG,      /* " ' >: what ends a run inside a tag */
	FC_N,
};

static const char frame_bytes[4] = { '"', '\'', '>', '<' };
static struct xml_charset cs_tag;   /* " ' >, for the scalar level */

__attribute__((constructor))
static void frame_charsets_init(void)
{
	xml_charset_init(&cs_tag, "\"'>", 3);
}

/* One call's view of the buffer: the masks of the 64 bytes from off. */
struct frame_blk {
	size_t off;
	uint64_t m[FC_N];
};

/* Index of the first byte at or after pos in class k, or len. wide:
 * xml_mark4_wide, a constant in each copy of frame_run. */
static inline __attribute__((always_inline))
size_t frame_find(struct frame_blk *fb, const char *buf, size_t pos, size_t len, unsigned k, const int wide)
{
	if (!wide) {
		if (k == FC_TAG)
			return pos + xml_scan(&cs_tag, buf + pos, len - pos);
		const char *r = memchr(buf + pos, frame_bytes[k], len - pos);
		return r ? (size_t)(r - buf) : len;
	}
	while (pos < len) {
		if (pos - fb->off >= 64) {   /* also when pos < fb->off: it wraps */
			xml_mark4(frame_bytes, buf, pos, len, fb->m);
			fb->m[FC_TAG] = fb->m[FC_DQ] | fb->m[FC_SQ] | fb->m[FC_GT];
			fb->off = pos;
		}
		uint64_t m = fb->m[k] >> (pos - fb->off);
		if (m)
			return pos + (size_t)__builtin_ctzll(m);   /* bits past len are 0 */
		pos = fb->off + 64;
	}
	return len;
}

const char *xml_error_condition(enum xml_error err)
{
	switch (err) {
	case XML_ERR_NONE: return NULL;
	case XML_ERR_NOT_WELL_FORMED: return "not-well-formed";
	case XML_ERR_RESTRICTED_XML: return "restricted-xml";
	case XML_ERR_INVALID_NAMESPACE: return "invalid-namespace";
	case XML_ERR_BAD_NAMESPACE_PREFIX: return "bad-namespace-prefix";
	case XML_ERR_BAD_FORMAT: return "bad-format";
	case XML_ERR_UNSUPPORTED_ENCODING: return "unsupported-encoding";
	case XML_ERR_POLICY_VIOLATION: return "policy-violation";
	}
	return NULL;
}

void xml_limits_default(struct xml_limits *lim)
{
	lim->max_stanza = XML_DEFAULT_MAX_STANZA;
	lim->max_depth = XML_DEFAULT_MAX_DEPTH;
	lim->max_attrs = XML_DEFAULT_MAX_ATTRS;
	lim->max_ns = XML_DEFAULT_MAX_NS;
}

void xml_framer_init(struct xml_framer *f, const struct xml_limits *lim)
{
	struct xml_limits def;

	if (!lim) {
		xml_limits_default(&def);
		lim = &def;
	}
	memset(f, 0, sizeof(*f));
	f->max_stanza = lim->max_stanza;
	f->max_depth = (uint16_t)(lim->max_depth + 1u);
}

void xml_framer_reset(struct xml_framer *f)
{
	uint32_t max_stanza = f->max_stanza;
	uint16_t max_depth = f->max_depth;

	memset(f, 0, sizeof(*f));
	f->max_stanza = max_stanza;
	f->max_depth = max_depth;
}

static inline int is_ws(uint8_t c)
{
	return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

static enum xml_event frame_fail(struct xml_framer *f, enum xml_error err, struct xml_span *sp)
{
	f->err = (uint8_t)err;
	sp->start = sp->end = 0;
	return XML_ERROR;
}

/* A fault found at pos. Past the size limit, the limit wins: a run fed
 * in pieces would have stopped there with policy-violation before seeing
 * the fault, and the error must not depend on how the bytes arrived. */
static enum xml_event frame_fail_at(struct xml_framer *f, enum xml_error err, uint32_t pos, struct xml_span *sp)
{
	if ((f->flags & F_ITEM) && pos - f->start > f->max_stanza)
		err = XML_ERR_POLICY_VIOLATION;
	return frame_fail(f, err, sp);
}

/* An item ends at `end`: report it and rebase on the bytes after it. */
static enum xml_event frame_emit(struct xml_framer *f, enum xml_event ev, uint32_t end, struct xml_span *sp)
{
	if (end - f->start > f->max_stanza)
		return frame_fail(f, XML_ERR_POLICY_VIOLATION, sp);
	sp->start = f->start;
	sp->end = end;
	f->pos = 0;
	f->start = 0;
	f->flags &= (uint8_t)~(F_ITEM | F_END);
	f->state = S_TEXT;
	return ev;
}

/* The framer, compiled twice: with and without 64-byte masks (wide is a
 * constant in each copy, so neither pays for the other's test). */
static inline __attribute__((always_inline))
enum xml_event frame_run(struct xml_framer *f, const char *buf, size_t len, struct xml_span *sp, const int wide)
{
	const uint8_t *p = (const uint8_t *)buf;
	uint32_t pos = f->pos;
	unsigned st = f->state;      /* kept here, stored back at the exits */
	struct frame_blk fb;

	fb.off = SIZE_MAX / 2;       /* no block yet: pos - off >= 64 for any pos */

	if (f->err)
		return frame_fail(f, (enum xml_error)f->err, sp);
	if (f->phase == PH_CLOSED) {
		/* Whatever follows the close is dropped unread. */
		sp->start = sp->end = (uint32_t)len;
		return XML_AGAIN;
	}
	/* An item never exceeds max_stanza, so more than that plus what can
	 * precede an item in one call would be a caller error. */
	if (len > UINT32_MAX / 2)
		len = UINT32_MAX / 2;
	assert(pos <= len);

	for (;;) {
		switch ((enum frame_state)st) {
		case S_TEXT:
			if (f->depth >= 2) {
				size_t lt = frame_find(&fb, buf, pos, len, FC_LT, wide);
				if (lt == len) {
					pos = (uint32_t)len;
					goto again;
				}
				pos = (uint32_t)lt;
			} else {
				/* Between stanzas (or before the header) only
				 * whitespace may stand: keepalives. */
				while (pos < len && is_ws(p[pos]))
					pos++;
				if (f->depth == 0 && pos > 0)
					f->flags |= F_SEEN;
				if (pos == len)
					goto again;
				if (p[pos] != '<') {
					enum xml_error err = f->depth ? XML_ERR_BAD_FORMAT : XML_ERR_NOT_WELL_FORMED;
					/* A stream that opens with a byte no UTF-8 text
					 * starts with (a UTF-16 byte order mark, say). */
					if (!f->depth && (p[pos] >= 0xF5 || (p[pos] >= 0x80 && p[pos] < 0xC2)))
						err = XML_ERR_UNSUPPORTED_ENCODING;
					return frame_fail_at(f, err, pos, sp);
				}
				if (!(f->flags & F_ITEM)) {
					f->flags |= F_ITEM;
					f->start = pos;
				}
			}
			pos++;
			st = S_LT;
			/* fall through */
		case S_LT:
			if (pos == len)
				goto again;
			if (p[pos] == '/') {
				if (f->depth == 0)
					return frame_fail_at(f, XML_ERR_NOT_WELL_FORMED, pos, sp);
				f->flags |= F_END;
				pos++;
				st = S_TAG;
			} else if (p[pos] == '!') {
				pos++;
				st = S_BANG;
			} else if (p[pos] == '?') {
				pos++;
				st = S_QMARK;
			} else {
				st = S_TAG;
			}
			break;

		case S_TAG: {
			size_t q;
			for (;;) {
				q = frame_find(&fb, buf, pos, len, FC_TAG, wide);
				if (q == len) {
					pos = (uint32_t)len;
					goto again;
				}
				if (p[q] == '>')
					break;
				/* A quoted value: straight on to its closing quote. */
				unsigned dq = p[q] == '"';
				size_t qe = frame_find(&fb, buf, q + 1, len, dq ? FC_DQ : FC_SQ, wide);
				if (qe == len) {
					st = dq ? S_DQUOTE : S_SQUOTE;
					pos = (uint32_t)len;
					goto again;
				}
				pos = (uint32_t)qe + 1;
			}
			/* '>' ends the tag. */
			pos = (uint32_t)q + 1;
			if (f->flags & F_END) {
				f->flags &= (uint8_t)~F_END;
				f->depth--;
				if (f->depth == 0) {
					f->phase = PH_CLOSED;
					return frame_emit(f, XML_STREAM_CLOSE, pos, sp);
				}
				if (f->depth == 1)
					return frame_emit(f, XML_STANZA, pos, sp);
			} else if (p[q - 1] == '/') {
				/* <empty/>: '/' right before '>' outside quotes. */
				if (f->depth == 0)
					return frame_fail_at(f, XML_ERR_BAD_FORMAT, pos, sp);
				if (f->depth == 1)
					return frame_emit(f, XML_STANZA, pos, sp);
			} else {
				if (f->depth == 0) {
					f->depth = 1;
					f->phase = PH_STREAM;
					return frame_emit(f, XML_STREAM_OPEN, pos, sp);
				}
				if (++f->depth > f->max_depth)
					return frame_fail_at(f, XML_ERR_POLICY_VIOLATION, pos, sp);
			}
			st = S_TEXT;
			break;
		}

		case S_DQUOTE:
		case S_SQUOTE: {
			size_t qe = frame_find(&fb, buf, pos, len, st == S_DQUOTE ? FC_DQ : FC_SQ, wide);
			if (qe == len) {
				pos = (uint32_t)len;
				goto again;
			}
			pos = (uint32_t)qe + 1;
			st = S_TAG;
			break;
		}

		case S_BANG:
			/* "<!--" and "<!DOCTYPE" are what restricted XML forbids;
			 * "<![CDATA[" is allowed inside stanzas. */
			if (pos == len)
				goto again;
			if (p[pos] == '-' || p[pos] == 'D')
				return frame_fail_at(f, XML_ERR_RESTRICTED_XML, pos, sp);
			if (p[pos] != '[')
				return frame_fail_at(f, XML_ERR_NOT_WELL_FORMED, pos, sp);
			if (len - pos < 7)
				goto again;
			if (memcmp(p + pos, "[CDATA[", 7) != 0)
				return frame_fail_at(f, XML_ERR_NOT_WELL_FORMED, pos, sp);
			if (f->depth < 2)
				return frame_fail_at(f, f->depth ? XML_ERR_BAD_FORMAT : XML_ERR_NOT_WELL_FORMED, pos, sp);
			pos += 7;
			st = S_CDATA;
			/* fall through */
		case S_CDATA:
			for (;;) {
				const uint8_t *rb = memchr(p + pos, ']', len - pos);
				if (!rb) {
					pos = (uint32_t)len;
					goto again;
				}
				pos = (uint32_t)(rb - p);
				if (len - pos < 3)
					goto again;
				if (rb[1] == ']' && rb[2] == '>')
					break;
				pos++;
			}
			pos += 3;
			st = S_TEXT;
			break;

		case S_QMARK:
			/* Only the XML declaration, first thing in the stream. */
			if (f->phase != PH_PROLOG || (f->flags & F_SEEN) || f->start != pos - 2)
				return frame_fail_at(f, XML_ERR_RESTRICTED_XML, pos, sp);
			if (len - pos < 4)
				goto again;
			if (memcmp(p + pos, "xml", 3) != 0 || !is_ws(p[pos + 3]))
				return frame_fail_at(f, XML_ERR_RESTRICTED_XML, pos, sp);
			pos += 4;
			f->flags |= F_SEEN;
			st = S_DECL;
			/* fall through */
		case S_DECL:
			for (;;) {
				const uint8_t *qm = memchr(p + pos, '?', len - pos);
				if (!qm) {
					pos = (uint32_t)len;
					goto again;
				}
				pos = (uint32_t)(qm - p);
				if (len - pos < 2)
					goto again;
				if (qm[1] == '>')
					break;
				pos++;
			}
			pos += 2;
			st = S_TEXT;  /* F_ITEM stays: the header item goes on */
			break;
		}
	}

again:
	f->state = (uint8_t)st;
	if (f->flags & F_ITEM) {
		if (pos - f->start > f->max_stanza)
			return frame_fail(f, XML_ERR_POLICY_VIOLATION, sp);
		/* Keep the item; let the caller drop what came before it. */
		sp->start = sp->end = f->start;
		f->pos = pos - f->start;
		f->start = 0;
	} else {
		sp->start = sp->end = pos;
		f->pos = 0;
	}
	return XML_AGAIN;
}

enum xml_event xml_frame(struct xml_framer *f, const char *buf, size_t len, struct xml_span *sp)
{
	if (xml_mark4_wide)
		return frame_run(f, buf, len, sp, 1);
	return frame_run(f, buf, len, sp, 0);
}
