/* Types of the streaming XML tokenizer (see parser/xml.h for the functions).
 *
 * Two layers, as in docs/ARCHITECTURE.md:
 *   struct xml_framer  per connection, a few words: finds where the stream
 *                      header, each top-level stanza and the stream close end,
 *                      resumable at any byte, never rescanning.
 *   struct xml_view    per worker, reused for every stanza: a flat index of
 *                      tokens (offset + length into the stanza's bytes) built
 *                      over one complete stanza, with the restricted-XML checks.
 * Nothing here owns the bytes it points at: the connection's receive buffer
 * does, and a view is valid until that buffer is consumed or moved.
 */
#ifndef STANZA_PARSER_XML_T_H
#define STANZA_PARSER_XML_T_H

#include <stddef.h>
#include <stdint.h>

/* The stream error each rejection maps to (RFC 6120 4.9.3). */
enum xml_error {
	XML_ERR_NONE = 0,
	XML_ERR_NOT_WELL_FORMED,      /* mismatched tags, bad names, bad syntax, '<' in a value, ']]>' in text, non-XML characters, duplicate attributes */
	XML_ERR_RESTRICTED_XML,       /* comments, processing instructions, DTDs, entity references other than the five predefined */
	XML_ERR_INVALID_NAMESPACE,    /* stream header not <stream> in http://etherx.jabber.org/streams */
	XML_ERR_BAD_NAMESPACE_PREFIX, /* an element or attribute prefix that no declaration in scope binds */
	XML_ERR_BAD_FORMAT,           /* well-formed but not an XMPP stream: character data between stanzas */
	XML_ERR_UNSUPPORTED_ENCODING, /* bytes that are not UTF-8, or an XML declaration naming another encoding */
	XML_ERR_POLICY_VIOLATION,     /* a limit of struct xml_limits exceeded */
};

/* Limits. Each one exceeded is XML_ERR_POLICY_VIOLATION. */
struct xml_limits {
	uint32_t max_stanza;   /* bytes of one top-level element (and of the stream header) */
	uint16_t max_depth;    /* element nesting, counting the top-level element as 1 */
	uint16_t max_attrs;    /* attributes on one element, namespace declarations included */
	uint16_t max_ns;       /* namespace declarations in one stanza */
};

#define XML_DEFAULT_MAX_STANZA  (256u * 1024u)
#define XML_DEFAULT_MAX_DEPTH   64
#define XML_DEFAULT_MAX_ATTRS   64
#define XML_DEFAULT_MAX_NS      64
/* Bytes for decoding namespace URIs that contain references, per stanza. */
#define XML_VIEW_NSBUF          1024

/* What xml_frame found. */
enum xml_event {
	XML_AGAIN = 0,      /* need more bytes */
	XML_STREAM_OPEN,    /* the stream header: optional XML declaration + <stream:stream ...> start tag */
	XML_STANZA,         /* one complete top-level element */
	XML_STREAM_CLOSE,   /* the end tag closing the stream */
	XML_ERROR,          /* see xml_framer.err */
};

/* An item found by xml_frame: bytes [start, end) of the buffer passed in.
 * The caller must drop the first `end` bytes of its buffer before the next
 * call (on XML_AGAIN, `end` counts whitespace between stanzas, often 0). */
struct xml_span {
	uint32_t start;
	uint32_t end;
};

/* Per-connection framing state. Plain data: zero-initialise with
 * xml_framer_init, copy freely, no destructor. */
struct xml_framer {
	uint32_t pos;          /* bytes of the caller's buffer already scanned */
	uint32_t start;        /* where the item in progress starts */
	uint32_t max_stanza;
	uint16_t depth;        /* open elements: 0 before the header, 1 between stanzas */
	uint16_t max_depth;    /* max_depth + 1 (the stream element) */
	uint8_t  state;        /* lexical state, private to xml_frame.c */
	uint8_t  phase;        /* prolog / stream / closed, private */
	uint8_t  flags;        /* private */
	uint8_t  err;          /* enum xml_error, after XML_ERROR */
};

/* A borrowed run of bytes. */
struct xml_slice {
	const char *ptr;
	uint32_t len;
};

enum xml_tok_type {
	XML_TOK_ELEM = 1,   /* start of an element; its attributes follow it */
	XML_TOK_ATTR,       /* an attribute of the closest preceding ELEM (never an xmlns declaration) */
	XML_TOK_TEXT,       /* character data, or one CDATA section's content */
	XML_TOK_END,        /* end of an element (also emitted for <empty/>) */
};

enum xml_tok_flags {
	XML_TF_ESCAPED = 1,  /* TEXT / ATTR value holds '&' or a byte that unescaping changes (CR; TAB LF in values): read it with xml_unescape */
	XML_TF_CDATA   = 2,  /* TEXT from <![CDATA[...]]>: raw, never unescaped */
	XML_TF_EMPTY   = 4,  /* ELEM / END of <empty/> */
};

/* 24 bytes. Offsets are from xml_view.base. */
struct xml_token {
	uint8_t  type;       /* enum xml_tok_type */
	uint8_t  flags;      /* enum xml_tok_flags */
	uint16_t ns;         /* ELEM, ATTR, END: index into xml_view.ns */
	uint16_t prefix;     /* ELEM, ATTR, END: length of the name's prefix without ':' (0: none) */
	uint16_t nattr;      /* ELEM: ATTR tokens that follow it */
	uint32_t off;        /* ELEM, ATTR, END: qualified name; TEXT: characters */
	uint32_t len;
	uint32_t a;          /* ATTR: value offset (inside the quotes); ELEM: index of its END token; END: index of its ELEM */
	uint32_t b;          /* ATTR: value length; ELEM: index of the parent ELEM (XML_NO_TOK at top level) */
};

#define XML_NO_TOK UINT32_MAX

/* A namespace known to a view. Index 0 is "no namespace" (empty URI),
 * 1 is the xml prefix's http://www.w3.org/XML/1998/namespace; then the
 * stream header's declarations; then the stanza's own, in document order. */
struct xml_ns {
	const char *uri;
	uint32_t uri_len;
	uint16_t prefix_len;
	const char *prefix;   /* NULL with prefix_len 0: a default namespace declaration */
};

#define XML_NS_NONE 0
#define XML_NS_XML  1

/* The namespace declarations of a stream header, kept by the connection for
 * the life of the stream (they are in scope for every stanza). Copied out of
 * the receive buffer once per stream by xml_view_header. */
#define XML_NSCTX_MAX   6
#define XML_NSCTX_BYTES 232
struct xml_nsctx {
	uint8_t  n;                 /* declarations */
	uint8_t  stream_prefix_len; /* prefix of the stream element ("stream" usually; 0 if it used a default namespace) */
	uint16_t used;              /* bytes of buf in use */
	struct {
		uint16_t prefix_off;
		uint8_t  prefix_len;    /* 0: the default namespace */
		uint8_t  pad;
		uint16_t uri_off;
		uint16_t uri_len;
	} d[XML_NSCTX_MAX];
	char buf[XML_NSCTX_BYTES];  /* prefixes and URIs; the stream prefix is at buf[0] */
};

/* Where the router's fields are: token indexes of the top-level element's
 * attributes (XML_NO_TOK when absent) and its first child element. */
struct xml_stanza_info {
	uint32_t to, from, type, id, lang;
	uint32_t child;
};

/* Per-worker index of one stanza. Storage is the caller's (xml_view_init). */
struct xml_view {
	const char *base;           /* first byte of the element */
	uint32_t len;
	uint32_t ntok;
	uint32_t tok_cap;
	uint16_t nns;
	uint16_t ns_cap;
	struct xml_token *tok;      /* tok[0] is the top-level ELEM */
	struct xml_ns *ns;
	struct xml_stanza_info info;
	struct xml_limits lim;
	enum xml_error err;         /* after a failed build */
	uint32_t err_off;           /* offset of the offending byte, for logs */
	uint32_t top_end;           /* offset of the '>' (or "/>") ending tok[0]'s start tag */
	/* Scope stack used while building: prefix bindings in force. */
	uint16_t *scope;            /* ns indexes */
	uint32_t scope_cap;
	uint16_t ns_own;            /* index of the first namespace declared by the stanza itself */
	uint16_t nsbuf_used;
	/* Namespace URIs written with references (xmlns='a&amp;b') are
	 * decoded here, the only bytes a view ever writes. A stanza whose
	 * such URIs need more is a policy-violation. */
	char nsbuf[XML_VIEW_NSBUF];
};

#endif
