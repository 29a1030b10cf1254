/* UTF-8 and XML character validation, SIMD with a scalar twin.
 *
 * XMPP streams are UTF-8 only (RFC 6120 11.6) and carry XML 1.0 characters
 * only (Char ::= #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] |
 * [#x10000-#x10FFFF]). The two failures map to different stream errors:
 * a bad byte sequence is <unsupported-encoding/>, a well-encoded character
 * that XML forbids is <not-well-formed/>.
 */
#ifndef STANZA_PARSER_UTF8_H
#define STANZA_PARSER_UTF8_H

#include <stddef.h>
#include "parser/simd.h"

enum xml_utf8_result {
	XML_UTF8_OK = 0,
	XML_UTF8_BAD_ENCODING,  /* overlong, surrogate, > U+10FFFF, stray or missing continuation, truncated at end */
	XML_UTF8_BAD_CHAR,      /* well-formed UTF-8 but not an XML Char: C0 controls other than TAB LF CR, U+FFFE, U+FFFF */
};

/* Validate buf[0..len). The buffer is a whole unit: a sequence cut at the end
 * is BAD_ENCODING. An encoding fault anywhere wins over a forbidden
 * character anywhere, so every level reports the same result.
 * Pure; reads nothing outside buf[0..len). */
enum xml_utf8_result xml_utf8_validate(const char *buf, size_t len);

/* The scalar kernel, whatever level is selected (for tests and fuzzing). */
enum xml_utf8_result xml_utf8_validate_scalar(const char *buf, size_t len);

/* Called by simd_set_level only. */
void xml_utf8_select(enum simd_level level);

#endif
