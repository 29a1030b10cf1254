/* SASL: conditions, the mechanism table, base64, SASLprep and PLAIN
 * parsing. SCRAM, and the PLAIN check that shares its key derivation, are
 * in scram.c.
 */
#include "control/sasl.h"
#include "util/b64.h"

#include <string.h>
#include <stringprep.h>

const char *sasl_err_condition(enum sasl_err e)
{
	static const char *const name[] = {
		[SASL_OK]                         = NULL,
		[SASL_ERR_ABORTED]                = "aborted",
		[SASL_ERR_ACCOUNT_DISABLED]       = "account-disabled",
		[SASL_ERR_CREDENTIALS_EXPIRED]    = "credentials-expired",
		[SASL_ERR_ENCRYPTION_REQUIRED]    = "encryption-required",
		[SASL_ERR_INCORRECT_ENCODING]     = "incorrect-encoding",
		[SASL_ERR_INVALID_AUTHZID]        = "invalid-authzid",
		[SASL_ERR_INVALID_MECHANISM]      = "invalid-mechanism",
		[SASL_ERR_MALFORMED_REQUEST]      = "malformed-request",
		[SASL_ERR_MECHANISM_TOO_WEAK]     = "mechanism-too-weak",
		[SASL_ERR_NOT_AUTHORIZED]         = "not-authorized",
		[SASL_ERR_TEMPORARY_AUTH_FAILURE] = "temporary-auth-failure",
	};
	if ((unsigned)e >= sizeof name / sizeof name[0])
		return "temporary-auth-failure";
	return name[e];
}

/* ---- mechanisms --------------------------------------------------------- */

static const char *const mech_name[SASL_MECH_COUNT] = {
	[SASL_MECH_SCRAM_SHA_512_PLUS] = "SCRAM-SHA-512-PLUS",
	[SASL_MECH_SCRAM_SHA_256_PLUS] = "SCRAM-SHA-256-PLUS",
	[SASL_MECH_SCRAM_SHA_1_PLUS]   = "SCRAM-SHA-1-PLUS",
	[SASL_MECH_SCRAM_SHA_512]      = "SCRAM-SHA-512",
	[SASL_MECH_SCRAM_SHA_256]      = "SCRAM-SHA-256",
	[SASL_MECH_SCRAM_SHA_1]        = "SCRAM-SHA-1",
	[SASL_MECH_PLAIN]              = "PLAIN",
};

const char *sasl_mech_name(enum sasl_mech m)
{
	if ((unsigned)m >= SASL_MECH_COUNT)
		return NULL;
	return mech_name[m];
}

enum sasl_mech sasl_mech_parse(const char *name, size_t len)
{
	for (unsigned m = 1; m < SASL_MECH_COUNT; m++)
		if (strlen(mech_name[m]) == len && memcmp(mech_name[m], name, len) == 0)
			return (enum sasl_mech)m;
	return SASL_MECH_NONE;
}

static bool mech_is_plus(enum sasl_mech m)
{
	return m >= SASL_MECH_SCRAM_SHA_512_PLUS && m <= SASL_MECH_SCRAM_SHA_1_PLUS;
}

enum sasl_err sasl_mech_check(enum sasl_mech m, bool tls, unsigned cb_avail)
{
	if (m <= SASL_MECH_NONE || m >= SASL_MECH_COUNT)
		return SASL_ERR_INVALID_MECHANISM;
	if (mech_is_plus(m) && !(cb_avail & (SASL_CB_TLS_EXPORTER | SASL_CB_TLS_SERVER_END_POINT)))
		return SASL_ERR_INVALID_MECHANISM;
	if (m == SASL_MECH_PLAIN && !tls)
		return SASL_ERR_ENCRYPTION_REQUIRED;
	return SASL_OK;
}

/* The enum is in advertising order, so the list is the enum filtered. */
size_t sasl_mech_list(enum sasl_mech *out, size_t cap, bool tls, unsigned cb_avail)
{
	size_t n = 0;
	for (unsigned m = 1; m < SASL_MECH_COUNT; m++) {
		if (sasl_mech_check((enum sasl_mech)m, tls, cb_avail) != SASL_OK)
			continue;
		if (n < cap)
			out[n] = (enum sasl_mech)m;
		n++;
	}
	return n;
}

bool sasl_mech_hash(enum sasl_mech m, enum sasl_hash *h)
{
	switch (m) {
	case SASL_MECH_SCRAM_SHA_1_PLUS:
	case SASL_MECH_SCRAM_SHA_1:
		*h = SASL_SHA1;
		return true;
	case SASL_MECH_SCRAM_SHA_256_PLUS:
	case SASL_MECH_SCRAM_SHA_256:
		*h = SASL_SHA256;
		return true;
	case SASL_MECH_SCRAM_SHA_512_PLUS:
	case SASL_MECH_SCRAM_SHA_512:
		*h = SASL_SHA512;
		return true;
	default:
		return false;
	}
}

size_t sasl_hash_len(enum sasl_hash h)
{
	switch (h) {
	case SASL_SHA1:   return 20;
	case SASL_SHA256: return 32;
	case SASL_SHA512: return 64;
	}
	return 0;
}

/* ---- base64 ------------------------------------------------------------- */

size_t sasl_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	return b64_encode(in, len, out, cap);
}

enum sasl_err sasl_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                              size_t *out_len)
{
	switch (b64_decode(in, len, out, cap, out_len)) {
	case 0:
		return SASL_OK;
	case -2:
		return SASL_ERR_TEMPORARY_AUTH_FAILURE;
	}
	return SASL_ERR_INCORRECT_ENCODING;
}

/* ---- UTF-8 and SASLprep ------------------------------------------------- */

/* RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF. */
bool sasl_utf8_valid(const char *str, size_t len)
{
	const uint8_t *s = (const uint8_t *)str;
	size_t i = 0;
	while (i < len) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t n;
		uint32_t cp, min;
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1; cp = c & 0x1f; min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2; cp = c & 0x0f; min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3; cp = c & 0x07; min = 0x10000;
		} else {
			return false;
		}
		if (len - i <= n)
			return false;
		for (size_t k = 1; k <= n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n + 1;
	}
	return true;
}

enum sasl_err sasl_saslprep(const char *in, size_t len, char *out, size_t cap,
                            size_t *out_len, bool stored)
{
	*out_len = 0;
	if (cap == 0 || len >= cap || memchr(in, 0, len) || !sasl_utf8_valid(in, len))
		return SASL_ERR_MALFORMED_REQUEST;
	memcpy(out, in, len);
	out[len] = '\0';
	/* ASCII without controls is its own SASLprep: skip libidn's UCS-4
	 * round trip and its allocations for the usual case. */
	bool ascii = true;
	for (size_t i = 0; i < len && ascii; i++)
		ascii = (unsigned char)in[i] >= 0x20 && (unsigned char)in[i] < 0x7f;
	if (!ascii && stringprep(out, cap, stored ? STRINGPREP_NO_UNASSIGNED : 0,
	                         stringprep_saslprep) != STRINGPREP_OK) {
		out[0] = '\0';
		return SASL_ERR_MALFORMED_REQUEST;
	}
	*out_len = strlen(out);
	if (*out_len == 0)
		return SASL_ERR_MALFORMED_REQUEST;
	return SASL_OK;
}

/* ---- PLAIN -------------------------------------------------------------- */

enum sasl_err sasl_plain_parse(struct sasl_plain *p, const char *msg, size_t len)
{
	memset(p, 0, sizeof *p);
	const char *z1 = memchr(msg, 0, len);
	if (!z1)
		return SASL_ERR_MALFORMED_REQUEST;
	const char *cid = z1 + 1;
	const char *z2 = memchr(cid, 0, len - (size_t)(cid - msg));
	if (!z2)
		return SASL_ERR_MALFORMED_REQUEST;
	const char *pw = z2 + 1;
	size_t zid_len = (size_t)(z1 - msg);
	size_t cid_len = (size_t)(z2 - cid);
	size_t pw_len = len - (size_t)(pw - msg);
	/* A third NUL would be inside the password: RFC 4616 forbids it. */
	if (cid_len == 0 || pw_len == 0 || memchr(pw, 0, pw_len))
		return SASL_ERR_MALFORMED_REQUEST;
	if (zid_len > SASL_AUTHZID_MAX || !sasl_utf8_valid(msg, zid_len))
		return SASL_ERR_MALFORMED_REQUEST;
	size_t n;
	enum sasl_err e = sasl_saslprep(cid, cid_len, p->names.user, sizeof p->names.user, &n, false);
	if (e != SASL_OK)
		goto fail;
	p->names.user_len = (uint16_t)n;
	e = sasl_saslprep(pw, pw_len, p->pass, sizeof p->pass, &n, false);
	if (e != SASL_OK)
		goto fail;
	p->pass_len = (uint16_t)n;
	memcpy(p->names.authzid, msg, zid_len);
	p->names.authzid[zid_len] = '\0';
	p->names.authzid_len = (uint16_t)zid_len;
	return SASL_OK;
fail:
	memset(p, 0, sizeof *p);
	return e;
}
