/* Find the first byte of a set: the one SIMD kernel the tokenizer's inner
 * loops stand on. The set is any set of ASCII bytes, given as a nibble
 * table for pshufb-style lookup (SSSE3/AVX2/AVX-512BW) and a byte table
 * for the scalar twin; every level returns the same index.
 */
#ifndef STANZA_PARSER_SCAN_H
#define STANZA_PARSER_SCAN_H

#include <stddef.h>
#include <stdint.h>
#include "parser/simd.h"

struct xml_charset {
	/* A byte c is in the set iff lo[c & 15] & hi[c >> 4]. Each high
	 * nibble 0..7 owns one bit, so any set of ASCII bytes fits. */
	uint8_t lo[16] __attribute__((aligned(16)));
	uint8_t hi[16] __attribute__((aligned(16)));
	uint8_t in[256];
};

/* chars: the set's members, all < 0x80. */
void xml_charset_init(struct xml_charset *cs, const char *chars, size_t n);

/* Index of the first byte of buf[0..len) in the set, or len. */
size_t xml_scan(const struct xml_charset *cs, const char *buf, size_t len);
size_t xml_scan_scalar(const struct xml_charset *cs, const char *buf, size_t len);

/* Where four given bytes are, 64 bytes at a time: the framer classifies a
 * block once and steps between boundary bytes with tzcnt instead of calling
 * memchr or xml_scan for every short run. m[j] bit i is set iff
 * buf[off + i] == chars[j]; bits for bytes at or past len are 0. Reads
 * nothing outside buf[0..len); off < len. Every level gives the same masks. */
void xml_mark4(const char chars[4], const char *buf, size_t off, size_t len, uint64_t m[4]);
void xml_mark4_scalar(const char chars[4], const char *buf, size_t off, size_t len, uint64_t m[4]);

/* Set by xml_scan_select: xml_mark4 has a vector kernel at this level.
 * Without one, 64-byte masks cost more than they save, and callers step
 * with memchr and xml_scan instead (same results, by definition). */
extern int xml_mark4_wide;

/* Called by simd_set_level only. */
void xml_scan_select(enum simd_level level);

#endif
