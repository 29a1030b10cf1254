/* The XML writer: serialisation into a caller-owned buffer, and the
 * escaping functions it is built on. Types are in parser/xmlw-t.h.
 *
 * Typical use, an iq result with a roster item:
 *
 *     struct xmlw w;
 *     size_t n;
 *     xmlw_init(&w, out, out_cap);
 *     xmlw_start(&w, "iq");
 *     xmlw_attr(&w, "to", jid.ptr, jid.len);
 *     xmlw_attr_str(&w, "type", "result");
 *     xmlw_start(&w, "query");
 *     xmlw_ns(&w, NULL, "jabber:iq:roster");
 *     xmlw_start(&w, "item");
 *     xmlw_attr(&w, "jid", item.ptr, item.len);
 *     xmlw_end(&w);                 // <item .../>
 *     xmlw_end(&w);                 // </query>
 *     xmlw_end(&w);                 // </iq>
 *     if (xmlw_finish(&w, &n) != XMLW_OK) ... // out[0..n) is the stanza
 *
 * Ownership: the caller owns the buffer and the writer borrows it from
 * xmlw_init to xmlw_finish; nothing is allocated and nothing else is kept.
 * Every string argument is borrowed for the duration of the call only.
 *
 * Failures: the calls that build (start, attr, ns, text, raw, end) return
 * nothing. The first failure (enum xmlw_status in xmlw-t.h) is recorded,
 * the writer then writes nothing more, and xmlw_finish reports it. The
 * buffer's bytes past what a successful finish reports are unspecified, and
 * the writer never touches a byte at or past the capacity.
 *
 * What is checked where: values (attribute values, namespace URIs, text)
 * come from the network or the store and are checked on every call: they
 * must be UTF-8 carrying only XML 1.0 characters, else XMLW_ERR_CHAR.
 * Names (elements, attributes, prefixes) are the caller's constants and are
 * checked by assertions in developer builds only; attribute names are not
 * checked for uniqueness. Bytes given to xmlw_raw are trusted as they are.
 */
#ifndef STANZA_PARSER_XMLW_H
#define STANZA_PARSER_XMLW_H

#include <string.h>
#include "parser/xmlw-t.h"

/* Start a write into buf[0..cap) (buf is never NULL). A capacity above
 * UINT32_MAX is treated as UINT32_MAX. */
void xmlw_init(struct xmlw *w, char *buf, size_t cap);

/* Open an element: "<qname". Its attributes and namespace declarations
 * follow; the first content (a child, text or raw bytes) closes the start
 * tag. qname is "local" or "prefix:local"; it need not outlive the call. */
void xmlw_start(struct xmlw *w, const char *qname);

/* Add qname='value' to the element just opened (before any content).
 * value[0..len) is escaped with xmlw_escape_attr: every string, including
 * one with TAB, LF or CR, reads back unchanged from an XML parser. */
void xmlw_attr(struct xmlw *w, const char *qname, const char *value, size_t len);

static inline void xmlw_attr_str(struct xmlw *w, const char *qname, const char *value)
{
	xmlw_attr(w, qname, value, strlen(value));
}

/* Declare a namespace on the element just opened: xmlns='uri' when prefix
 * is NULL, else xmlns:prefix='uri'. The URI is escaped like an attribute
 * value; a URI that is not NUL-terminated goes through xmlw_attr with the
 * name "xmlns" or "xmlns:prefix". */
void xmlw_ns(struct xmlw *w, const char *prefix, const char *uri);

/* Character data, escaped with xmlw_escape_text. Allowed outside any
 * element too (whitespace between stanzas). An empty string writes nothing
 * and does not count as content. */
void xmlw_text(struct xmlw *w, const char *s, size_t len);

static inline void xmlw_text_str(struct xmlw *w, const char *s)
{
	xmlw_text(w, s, strlen(s));
}

/* Bytes copied verbatim: an already-serialised, well-formed and balanced
 * fragment (a child forwarded from a validated stanza view, an XML
 * declaration before a stream header). Counts as content when len > 0. */
void xmlw_raw(struct xmlw *w, const char *s, size_t len);

/* Close the innermost open element: "/>" if it got no content since its
 * start, else "</qname>". */
void xmlw_end(struct xmlw *w);

/* End the write. Every element must be closed. Returns XMLW_OK with *len
 * set to the bytes written from buf, or the first failure with *len = 0. */
enum xmlw_status xmlw_finish(struct xmlw *w, size_t *len);

/* End the write leaving exactly one element open, its start tag completed
 * with '>': a stream header (<stream:stream ...>, optionally followed by
 * complete children such as <stream:features/>), whose end tag is written
 * much later. Returns as xmlw_finish. */
enum xmlw_status xmlw_finish_open(struct xmlw *w, size_t *len);

/* The failure recorded so far (XMLW_OK if none). */
static inline enum xmlw_status xmlw_status(const struct xmlw *w)
{
	return (enum xmlw_status)w->err;
}

/* A short fixed description of a status, for logs. */
const char *xmlw_strerror(enum xmlw_status st);

/* ---- escaping, usable alone ------------------------------------------- */

/* Escape src[0..src_len) as character data into dst[0..dst_cap):
 * & < > become entity references ('>' always, so "]]>" never appears) and
 * CR becomes &#xD; (a parser would turn a raw CR into LF). Returns XMLW_OK
 * with *dst_len set, XMLW_ERR_SPACE, or XMLW_ERR_CHAR (src is not UTF-8 or
 * holds a character XML 1.0 forbids: C0 controls other than TAB LF CR,
 * U+FFFE, U+FFFF). On failure dst[0..dst_cap) holds unspecified bytes.
 * XMLW_ESCAPED_MAX(src_len) bytes of dst always suffice. */
enum xmlw_status xmlw_escape_text(char *dst, size_t dst_cap, const char *src, size_t src_len, size_t *dst_len);

/* As xmlw_escape_text, for an attribute value between either kind of
 * quote: also ' and " become entity references, and TAB LF CR become
 * character references (attribute-value normalisation would turn them into
 * spaces). */
enum xmlw_status xmlw_escape_attr(char *dst, size_t dst_cap, const char *src, size_t src_len, size_t *dst_len);

#endif
