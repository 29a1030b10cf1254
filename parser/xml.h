/* The streaming XML tokenizer: framing (per connection) and stanza views
 * (per worker). Types are in parser/xml-t.h.
 *
 * Typical use, one connection, one worker:
 *
 *     struct xml_span sp;
 *     for (;;) {
 *         switch (xml_frame(&c->framer, c->rx, c->rx_len, &sp)) {
 *         case XML_AGAIN:        drop(c, sp.end); return;            // read more
 *         case XML_STREAM_OPEN:  xml_view_header(v, &c->nsctx, c->rx + sp.start, sp.end - sp.start); ...
 *         case XML_STANZA:       xml_view_build(v, &c->nsctx, c->rx + sp.start, sp.end - sp.start); ...
 *         case XML_STREAM_CLOSE: xml_check_close(&c->nsctx, c->rx + sp.start, sp.end - sp.start); ...
 *         case XML_ERROR:        stream_error(c, c->framer.err); return;
 *         }
 *         drop(c, sp.end);                                            // mandatory
 *     }
 *
 * Only xml_frame keeps state between calls, and only in struct xml_framer:
 * the caller may move its buffer (compact it) between calls as long as the
 * unconsumed bytes keep their order. Every function here is pure over the
 * bytes given: no I/O, no allocation, no global state but the SIMD level.
 */
#ifndef STANZA_PARSER_XML_H
#define STANZA_PARSER_XML_H

#include <stdbool.h>
#include <sys/uio.h>
#include "parser/xml-t.h"

/* The stream error condition's element name ("not-well-formed", ...), or
 * NULL for XML_ERR_NONE. */
const char *xml_error_condition(enum xml_error err);

void xml_limits_default(struct xml_limits *lim);

/* ---- framing ---------------------------------------------------------- */

void xml_framer_init(struct xml_framer *f, const struct xml_limits *lim);

/* Expect a new stream header (after STARTTLS or SASL success). The caller
 * drops whatever it had buffered from the old stream first. */
void xml_framer_reset(struct xml_framer *f);

/* Scan buf[0..len). buf starts at the first byte the caller has not yet
 * dropped; len grows as bytes arrive. Bytes already scanned are not scanned
 * again. Returns the next event and its span (see struct xml_span: the
 * caller drops span->end bytes before calling again, whatever the event).
 * After XML_ERROR, f->err names the stream error and every later call
 * returns XML_ERROR. After XML_STREAM_CLOSE the framer returns XML_AGAIN and
 * drops everything.
 *
 * The framer checks only what it must to find boundaries: tag structure,
 * quotes, depth of open elements (against max_depth; <empty/> ones are
 * counted by the view), size (against max_stanza), CDATA
 * sections, and the constructs restricted XML forbids outright (comments,
 * PIs, DTDs). Everything else is checked by xml_view_*, which the caller
 * must run on every item before acting on it. */
enum xml_event xml_frame(struct xml_framer *f, const char *buf, size_t len, struct xml_span *span);

/* ---- views ------------------------------------------------------------ */

/* Attach storage: tok_cap tokens, ns_cap namespaces, scope_cap scope slots.
 * xml_view_storage_tokens(lim) tokens always suffice for any stanza within
 * lim->max_stanza; fewer tokens make xml_view_build fail with
 * XML_ERR_POLICY_VIOLATION on stanzas that need more. ns_cap must be at
 * least 2 + XML_NSCTX_MAX + lim->max_ns, scope_cap at least as large. */
void xml_view_init(struct xml_view *v, const struct xml_limits *lim,
		   struct xml_token *tok, uint32_t tok_cap,
		   struct xml_ns *ns, uint16_t ns_cap,
		   uint16_t *scope, uint32_t scope_cap);
uint32_t xml_view_storage_tokens(const struct xml_limits *lim);

/* Validate the stream header span of XML_STREAM_OPEN (optional XML
 * declaration: version 1.0, encoding UTF-8 if named; then one start tag) and
 * index it: tok[0] is the stream ELEM, its ATTR tokens follow, no END.
 * Checks that the element is 'stream' in http://etherx.jabber.org/streams
 * (XML_ERR_INVALID_NAMESPACE otherwise) and copies its namespace
 * declarations into ctx. Returns 0, or -1 with v->err set. */
int xml_view_header(struct xml_view *v, struct xml_nsctx *ctx, const char *buf, size_t len);

/* Validate one stanza span of XML_STANZA against every rule of RFC 6120
 * section 11 and XML 1.0 + Namespaces, and index it. ctx (may be NULL) holds
 * the stream header's declarations. Returns 0, or -1 with v->err set. */
int xml_view_build(struct xml_view *v, const struct xml_nsctx *ctx, const char *buf, size_t len);

/* The span of XML_STREAM_CLOSE: the end tag must name the stream element
 * with the header's prefix. Returns XML_ERR_NONE or XML_ERR_NOT_WELL_FORMED. */
enum xml_error xml_check_close(const struct xml_nsctx *ctx, const char *buf, size_t len);

/* ---- reading a view --------------------------------------------------- */

static inline struct xml_slice xml_slice_at(const struct xml_view *v, uint32_t off, uint32_t len)
{
	struct xml_slice s = { v->base + off, len };
	return s;
}

/* Qualified name (prefix:local) and local name of an ELEM, ATTR or END. */
static inline struct xml_slice xml_tok_qname(const struct xml_view *v, uint32_t t)
{
	return xml_slice_at(v, v->tok[t].off, v->tok[t].len);
}

static inline struct xml_slice xml_tok_local(const struct xml_view *v, uint32_t t)
{
	const struct xml_token *k = &v->tok[t];
	uint32_t skip = k->prefix ? k->prefix + 1u : 0u;
	return xml_slice_at(v, k->off + skip, k->len - skip);
}

/* Namespace URI of an ELEM, ATTR or END (empty for none). */
static inline struct xml_slice xml_tok_ns(const struct xml_view *v, uint32_t t)
{
	const struct xml_ns *n = &v->ns[v->tok[t].ns];
	struct xml_slice s = { n->uri, n->uri_len };
	return s;
}

/* Raw (still escaped) value of an ATTR; raw characters of a TEXT. */
static inline struct xml_slice xml_tok_raw(const struct xml_view *v, uint32_t t)
{
	const struct xml_token *k = &v->tok[t];
	if (k->type == XML_TOK_ATTR)
		return xml_slice_at(v, k->a, k->b);
	return xml_slice_at(v, k->off, k->len);
}

/* Decode a TEXT (attr=false) or ATTR value (attr=true) as XML defines it:
 * the five predefined entities and character references replaced, CR LF and
 * lone CR made LF, and in attribute values TAB CR LF made a space. The input
 * must have passed xml_view_build. dst needs room for src_len bytes (the
 * result is never longer). Returns the decoded length. */
size_t xml_unescape(const char *src, size_t src_len, char *dst, bool attr);

/* The decoded value of token t into dst (room for its raw length):
 * a copy only when the token is XML_TF_ESCAPED, else a borrowed slice.
 * Returns the slice to read. */
struct xml_slice xml_tok_value(const struct xml_view *v, uint32_t t, char *dst);

/* Attribute of element elem by local name and namespace URI (NULL: no
 * namespace). Returns the ATTR token index or XML_NO_TOK. */
uint32_t xml_attr_find(const struct xml_view *v, uint32_t elem, const char *local, const char *ns);

/* Children: the first child ELEM of elem, and the next sibling ELEM of the
 * ELEM t; XML_NO_TOK when there is none. */
uint32_t xml_first_child(const struct xml_view *v, uint32_t elem);
uint32_t xml_next_sibling(const struct xml_view *v, uint32_t t);

/* Compare a slice with a NUL-terminated string. */
static inline bool xml_slice_eq(struct xml_slice s, const char *str)
{
	uint32_t i = 0;
	for (; i < s.len; i++)
		if (str[i] != s.ptr[i] || str[i] == '\0')
			return false;
	return str[i] == '\0';
}

/* ---- forwarding ------------------------------------------------------- */

#define XML_REWRITE_IOV 6

/* Prepare the stanza for sending with its 'from' and 'to' replaced, without
 * re-serialising it: the old from/to attributes are cut out of the top
 * start tag and new ones (escaped into scratch) inserted after the element
 * name. from or to NULL: drop that attribute; an empty slice is written as
 * an empty value. Fills iov (XML_REWRITE_IOV entries) with pieces pointing
 * into the stanza and into scratch; returns how many, or -1 if scratch
 * (which needs 16 + 6 * (from.len + to.len) bytes at most) is too small.
 * Valid while the stanza's bytes and scratch are. */
int xml_view_rewrite(const struct xml_view *v, const struct xml_slice *from, const struct xml_slice *to,
		     char *scratch, size_t scratch_len, struct iovec *iov);

#endif
