/* Types of JIDs (see parser/jid.h for the functions).
 *
 * A struct jid holds one prepared JID as its canonical string,
 * "local@domain/resource", with the separators present only when the part
 * is, and the three part lengths. The bare JID is a prefix of the full one,
 * so bare views and bare comparisons need no copy. Prepared forms are
 * canonical, so equality is a byte comparison.
 *
 * The struct is plain data with no pointers: embed it in a session, copy it
 * with memcpy (or only jid_size() bytes of str), no destructor. Its size is
 * fixed by the RFC 7622 limit of 1023 bytes per part.
 */
#ifndef STANZA_PARSER_JID_T_H
#define STANZA_PARSER_JID_T_H

#include <stdint.h>

/* RFC 7622 3.1: each part 1..1023 bytes once prepared. */
#define JID_PART_MAX  1023u
#define JID_MAX       (3u * JID_PART_MAX + 2u)  /* "local@domain/resource" */

/* The one set of results of this module. Each failure names the part that
 * failed: the router answers all of them with <jid-malformed/>, the log
 * says which part. */
enum jid_err {
	JID_OK = 0,
	JID_ERR_LOCAL,     /* localpart: empty after '@', over 1023 bytes (before or after Nodeprep), bad UTF-8, NUL, prohibited or bidi-violating character */
	JID_ERR_DOMAIN,    /* domainpart: empty, over 1023 bytes, bad UTF-8, Nameprep failure, empty label or label over 63 bytes, ASCII outside letters-digits-hyphen, hyphen at a label's edge, malformed IP literal */
	JID_ERR_RESOURCE,  /* resourcepart: empty after '/', over 1023 bytes, bad UTF-8, NUL, prohibited or bidi-violating character */
	JID_ERR_NOSPACE,   /* jid_prep only: the caller's output buffer is too small */
};

/* Which part jid_prep prepares. */
enum jid_part {
	JID_LOCAL = 0,
	JID_DOMAIN,
	JID_RESOURCE,
};

/* Flags for jid_parse, jid_prep, jid_set_resource. */
#define JID_F_NO_FAST  0x1u  /* always call libidn, even for plain ASCII (tests, differential checks) */

/* A borrowed run of bytes inside a struct jid. Valid as long as the struct
 * is neither modified nor moved. Not NUL-terminated except where jid.h
 * says so. */
struct jid_slice {
	const char *ptr;
	uint16_t len;
};

struct jid {
	uint16_t local_len;     /* 0: no localpart */
	uint16_t domain_len;    /* never 0 in a parsed JID */
	uint16_t resource_len;  /* 0: a bare JID */
	char str[JID_MAX + 1];  /* canonical form, NUL-terminated */
};

#endif
