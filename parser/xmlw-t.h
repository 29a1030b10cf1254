/* Types of the XML writer (see parser/xmlw.h for the functions).
 *
 * The writer serialises the stanzas the server itself originates (replies,
 * errors, roster pushes, stream headers and features) straight into a buffer
 * the caller owns. It never allocates and keeps only this small struct,
 * so it can live on the stack of whoever builds the reply.
 */
#ifndef STANZA_PARSER_XMLW_T_H
#define STANZA_PARSER_XMLW_T_H

#include <stddef.h>
#include <stdint.h>

/* The return codes of every xmlw_* function that returns one. A writer
 * keeps the first failure and ignores every call after it, so a builder
 * makes its calls unchecked and looks once, at xmlw_finish. */
enum xmlw_status {
	XMLW_OK = 0,
	XMLW_ERR_SPACE,    /* the output did not fit in the buffer's capacity */
	XMLW_ERR_CHAR,     /* a value held invalid UTF-8 or a character XML 1.0 forbids */
	XMLW_ERR_NESTING,  /* calls that do not make a well-formed tree: an attribute after content,
	                    * an end with nothing open, more than XMLW_MAX_DEPTH open elements,
	                    * elements left open at xmlw_finish (or not exactly one at xmlw_finish_open) */
};

/* Deep enough for any reply the server builds (iq/pubsub/items/item/... is
 * 5 or 6); payloads deeper than that are forwarded with xmlw_raw. */
#define XMLW_MAX_DEPTH 32

/* Worst-case growth of a value by escaping: "&quot;" for one byte. A
 * destination of XMLW_ESCAPED_MAX(n) bytes never overflows. */
#define XMLW_ESCAPED_MAX(n) ((n) * 6u)

/* One write in progress. Plain data: set up with xmlw_init, no destructor.
 * The fields are private to parser/xmlw.c; read them through xmlw.h. */
struct xmlw {
	char    *buf;        /* borrowed from the caller */
	uint32_t cap;
	uint32_t len;
	uint8_t  err;        /* enum xmlw_status: the first failure, sticky */
	uint8_t  tag_open;   /* the innermost start tag still lacks its '>' */
	uint8_t  depth;
	uint8_t  pad;
	/* Where each open element's qualified name sits in buf, so the end tag
	 * is copied from the output and the caller's name strings need not
	 * outlive the call that passed them. */
	uint32_t name_off[XMLW_MAX_DEPTH];
	uint16_t name_len[XMLW_MAX_DEPTH];
};

#endif
