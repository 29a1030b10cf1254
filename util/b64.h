/* Strict base64 (RFC 4648 section 4), as XMPP carries SASL data
 * (RFC 6120 6.4.2): an empty payload is written "=". */
#ifndef STANZA_UTIL_B64_H
#define STANZA_UTIL_B64_H

#include <stddef.h>
#include <stdint.h>

static inline size_t b64_enc_len(size_t len)
{
	return len ? (len + 2u) / 3u * 4u : 1u;
}

/* Encode in[0..len) into out, NUL-terminated; returns the length without
 * the NUL, or 0 when cap < b64_enc_len(len) + 1. len 0 gives "=". */
size_t b64_encode(const uint8_t *in, size_t len, char *out, size_t cap);

/* Decode in[0..len) into out[0..cap). Returns 0 with *out_len, -1 for any
 * character outside the alphabet (whitespace included), a length not a
 * multiple of 4, padding other than one or two final '=', or non-zero bits
 * in the last character before the padding; -2 when out is too small
 * ((len / 4) * 3 bytes always do). "=" alone and "" decode to 0 bytes. */
int b64_decode(const char *in, size_t len, uint8_t *out, size_t cap, size_t *out_len);

#endif
