/* JID parsing and preparation. See parser/jid.h for the contract.
 *
 * Each part is prepared into its final place in struct jid.str: the
 * parts are at most 1023 bytes and str has room for three of them and the
 * separators, so the part being prepared always has JID_PART_MAX + 1 bytes
 * of room, which libidn's in-place stringprep needs.
 *
 * The ASCII fast path relies on what the three profiles do to U+0000..U+007F
 * (RFC 3454 tables, RFC 3491, RFC 6122 appendices A and B):
 *   - no ASCII code point is in table B.1 (mapped to nothing), NFKC leaves
 *     ASCII alone, and no ASCII code point is RandALCat, so bidi never fails;
 *   - Nodeprep and Nameprep case-fold with B.2, which on ASCII is A-Z -> a-z;
 *     Resourceprep does not fold;
 *   - Nodeprep prohibits C.1.1 (space), C.2.1 (U+0000..U+001F, U+007F) and
 *     " & ' / : < > @; Resourceprep prohibits C.2.1; Nameprep prohibits no
 *     ASCII code point (C.2.1 is not in its list).
 * tests/unit/parser/test_jid.c checks every ASCII byte in every part
 * against libidn, so a libidn that disagrees fails the build's tests.
 */
#include "parser/jid.h"

#include <arpa/inet.h>
#include <punycode.h>
#include <stringprep.h>

#define LABEL_MAX  63u   /* RFC 1034 3.1, in the ASCII (ToASCII) form */
#define ACE_PREFIX_LEN 4u  /* "xn--" */

/* ---- UTF-8 ---------------------------------------------------------- */

/* Strict RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF, no
 * sequence cut at the end. libidn is not trusted with bad input: older
 * versions read past a truncated sequence. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t need;
		unsigned lo = 0x80, hi = 0xBF;  /* bounds of the second byte */

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			if (c == 0xE0)
				lo = 0xA0;
			else if (c == 0xED)
				hi = 0x9F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			if (c == 0xF0)
				lo = 0x90;
			else if (c == 0xF4)
				hi = 0x8F;
		} else {
			return false;
		}
		if (n - i <= need)
			return false;
		if (s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t k = 2; k <= need; k++)
			if ((s[i + k] & 0xC0) != 0x80)
				return false;
		i += need + 1;
	}
	return true;
}

/* Decode valid UTF-8 (libidn's output). Returns the number of code points
 * written, or (size_t)-1 if more than cap. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp, size_t cap)
{
	size_t i = 0, k = 0;

	while (i < n) {
		unsigned c = s[i];
		uint32_t v;
		size_t more;

		if (k == cap)
			return (size_t)-1;
		if (c < 0x80) {
			v = c;
			more = 0;
		} else if (c < 0xE0) {
			v = c & 0x1F;
			more = 1;
		} else if (c < 0xF0) {
			v = c & 0x0F;
			more = 2;
		} else {
			v = c & 0x07;
			more = 3;
		}
		for (size_t m = 1; m <= more && i + m < n; m++)
			v = (v << 6) | (s[i + m] & 0x3Fu);
		cp[k++] = v;
		i += more + 1;
	}
	return k;
}

/* ---- the ASCII fast path -------------------------------------------- */

#define A_LOCAL  0x1u  /* kept by Nodeprep */
#define A_RES    0x2u  /* kept by Resourceprep */
#define A_LDH    0x4u  /* letter, digit, hyphen: STD3 host name characters, after folding */

static const uint8_t ascii_class[128] = {
	[' '] = A_RES,
	['!'] = A_LOCAL | A_RES,
	['"'] = A_RES,
	['#'] = A_LOCAL | A_RES, ['$'] = A_LOCAL | A_RES, ['%'] = A_LOCAL | A_RES,
	['&'] = A_RES,
	['\''] = A_RES,
	['('] = A_LOCAL | A_RES, [')'] = A_LOCAL | A_RES, ['*'] = A_LOCAL | A_RES,
	['+'] = A_LOCAL | A_RES, [','] = A_LOCAL | A_RES,
	['-'] = A_LOCAL | A_RES | A_LDH,
	['.'] = A_LOCAL | A_RES,
	['/'] = A_RES,
	['0'] = A_LOCAL | A_RES | A_LDH, ['1'] = A_LOCAL | A_RES | A_LDH,
	['2'] = A_LOCAL | A_RES | A_LDH, ['3'] = A_LOCAL | A_RES | A_LDH,
	['4'] = A_LOCAL | A_RES | A_LDH, ['5'] = A_LOCAL | A_RES | A_LDH,
	['6'] = A_LOCAL | A_RES | A_LDH, ['7'] = A_LOCAL | A_RES | A_LDH,
	['8'] = A_LOCAL | A_RES | A_LDH, ['9'] = A_LOCAL | A_RES | A_LDH,
	[':'] = A_RES,
	[';'] = A_LOCAL | A_RES,
	['<'] = A_RES,
	['='] = A_LOCAL | A_RES,
	['>'] = A_RES,
	['?'] = A_LOCAL | A_RES,
	['@'] = A_RES,
	/* A-Z and a-z are filled in by ascii_cls() */
	['['] = A_LOCAL | A_RES, ['\\'] = A_LOCAL | A_RES, [']'] = A_LOCAL | A_RES,
	['^'] = A_LOCAL | A_RES, ['_'] = A_LOCAL | A_RES, ['`'] = A_LOCAL | A_RES,
	['{'] = A_LOCAL | A_RES, ['|'] = A_LOCAL | A_RES, ['}'] = A_LOCAL | A_RES,
	['~'] = A_LOCAL | A_RES,
};

static inline unsigned ascii_cls(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return A_LOCAL | A_RES | A_LDH;
	return ascii_class[c];
}

static inline unsigned char ascii_fold(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

static bool all_ascii(const unsigned char *s, size_t n)
{
	unsigned char acc = 0;

	/* No early exit: parts are short and the loop vectorises. */
	for (size_t i = 0; i < n; i++)
		acc |= s[i];
	return acc < 0x80;
}

/* Prepare an all-ASCII part, NUL-free, into out. Returns false where the
 * profile would reject it. */
static bool fast_prep(enum jid_part part, const unsigned char *in, size_t n, char *out)
{
	switch (part) {
	case JID_LOCAL:
		for (size_t i = 0; i < n; i++) {
			if (!(ascii_cls(in[i]) & A_LOCAL))
				return false;
			out[i] = (char)ascii_fold(in[i]);
		}
		break;
	case JID_DOMAIN:
		for (size_t i = 0; i < n; i++)
			out[i] = (char)ascii_fold(in[i]);
		break;
	case JID_RESOURCE:
		for (size_t i = 0; i < n; i++)
			if (!(ascii_cls(in[i]) & A_RES))
				return false;
		memcpy(out, in, n);
		break;
	}
	out[n] = '\0';
	return true;
}

/* ---- the libidn path ------------------------------------------------ */

/* In place in out (room JID_PART_MAX + 1). Unassigned code points are
 * allowed (flags 0), as in the stringprep_xmpp_* macros and as Prosody and
 * ejabberd do. TOO_SMALL_BUFFER means the prepared form exceeds 1023
 * bytes. */
static bool idn_prep(enum jid_part part, const char *in, size_t n, char *out, size_t *out_len)
{
	static const Stringprep_profile *const profile[] = {
		[JID_LOCAL] = stringprep_xmpp_nodeprep,
		[JID_DOMAIN] = stringprep_nameprep,
		[JID_RESOURCE] = stringprep_xmpp_resourceprep,
	};

	memmove(out, in, n);
	out[n] = '\0';
	if (stringprep(out, JID_PART_MAX + 1, 0, profile[part]) != STRINGPREP_OK)
		return false;
	*out_len = strlen(out);
	return true;
}

/* ---- domain checks after preparation --------------------------------- */

static bool ipv6_literal(const char *in, size_t n, char *out, size_t *out_len)
{
	char addr[INET6_ADDRSTRLEN];
	unsigned char bin[16];

	if (n < 3 || in[n - 1] != ']' || n - 2 >= sizeof addr)
		return false;
	memcpy(addr, in + 1, n - 2);
	addr[n - 2] = '\0';
	if (inet_pton(AF_INET6, addr, bin) != 1)
		return false;
	/* One spelling per address (RFC 5952), so that equality stays memcmp. */
	if (!inet_ntop(AF_INET6, bin, out + 1, INET6_ADDRSTRLEN))
		return false;
	out[0] = '[';
	*out_len = strlen(out);
	out[(*out_len)++] = ']';
	out[*out_len] = '\0';
	return true;
}

/* A non-ASCII label's ToASCII form is "xn--" + Punycode; RFC 1034 limits
 * that, not the UTF-8, to 63 bytes. */
static bool idn_label_fits(const unsigned char *s, size_t n)
{
	uint32_t cp[LABEL_MAX];
	char ace[LABEL_MAX - ACE_PREFIX_LEN];
	size_t ncp = utf8_decode(s, n, cp, LABEL_MAX);
	size_t alen = sizeof ace;

	/* Every code point costs at least one output byte, so more than 63
	 * code points can never fit. */
	if (ncp == (size_t)-1)
		return false;
	return punycode_encode(ncp, cp, NULL, &alen, ace) == PUNYCODE_SUCCESS;
}

/* IDNA2003 ToASCII with UseSTD3ASCIIRules, short of the encoding itself:
 * labels non-empty, ASCII code points LDH only, no hyphen at either end,
 * no "xn--" on a label that is not ASCII, at most 63 bytes in ASCII form.
 * A name of digits and dots only must be a dotted IPv4 address. */
static bool domain_valid(const char *d, size_t n)
{
	const unsigned char *s = (const unsigned char *)d;
	bool numeric = true;
	size_t start = 0;

	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.') {
			if (s[i] < 0x80 && !(ascii_cls(s[i]) & A_LDH))
				return false;
			if (s[i] < '0' || s[i] > '9')
				numeric = false;
			continue;
		}
		/* label s[start..i) */
		size_t len = i - start;
		const unsigned char *l = s + start;

		if (len == 0 || l[0] == '-' || l[len - 1] == '-')
			return false;
		if (all_ascii(l, len)) {
			if (len > LABEL_MAX)
				return false;
		} else {
			if (len >= ACE_PREFIX_LEN && memcmp(l, "xn--", ACE_PREFIX_LEN) == 0)
				return false;
			if (!idn_label_fits(l, len))
				return false;
		}
		start = i + 1;
	}
	if (numeric) {
		unsigned char bin[4];
		char addr[INET_ADDRSTRLEN];

		if (n >= sizeof addr)
			return false;
		memcpy(addr, d, n);
		addr[n] = '\0';
		return inet_pton(AF_INET, addr, bin) == 1;
	}
	return true;
}

/* ---- one part ------------------------------------------------------- */

static const enum jid_err part_err[] = {
	[JID_LOCAL] = JID_ERR_LOCAL,
	[JID_DOMAIN] = JID_ERR_DOMAIN,
	[JID_RESOURCE] = JID_ERR_RESOURCE,
};

/* out has room for JID_PART_MAX + 1 bytes and must not overlap in. */
static enum jid_err prep_part(enum jid_part part, const char *in, size_t n,
                              char *out, size_t *out_len, unsigned flags)
{
	const unsigned char *u = (const unsigned char *)in;
	enum jid_err err = part_err[part];

	if (part == JID_DOMAIN) {
		/* RFC 7622 3.2: the root label's dot goes before anything else. */
		if (n > 0 && in[n - 1] == '.')
			n--;
		if (n > 0 && in[0] == '[')
			return n <= JID_PART_MAX && ipv6_literal(in, n, out, out_len) ? JID_OK : err;
	}
	/* Prosody and ejabberd also bound the input, which keeps libidn's
	 * work per part small. NUL would end the string libidn sees. */
	if (n == 0 || n > JID_PART_MAX || memchr(in, '\0', n))
		return err;

	if (all_ascii(u, n) && !(flags & JID_F_NO_FAST)) {
		if (!fast_prep(part, u, n, out))
			return err;
		*out_len = n;
	} else {
		if (!utf8_valid(u, n) || !idn_prep(part, in, n, out, out_len))
			return err;
		if (*out_len == 0)  /* everything mapped to nothing */
			return err;
	}
	if (part == JID_DOMAIN && !domain_valid(out, *out_len))
		return err;
	return JID_OK;
}

/* ---- API ------------------------------------------------------------ */

enum jid_err jid_prep(enum jid_part part, const char *in, size_t len,
                      char *out, size_t cap, size_t *out_len, unsigned flags)
{
	char tmp[JID_PART_MAX + 1];
	enum jid_err e;

	if (cap > JID_PART_MAX)
		return prep_part(part, in, len, out, out_len, flags);
	e = prep_part(part, in, len, tmp, out_len, flags);
	if (e != JID_OK)
		return e;
	if (*out_len >= cap)
		return JID_ERR_NOSPACE;
	memcpy(out, tmp, *out_len + 1);
	return JID_OK;
}

enum jid_err jid_parse(struct jid *j, const char *s, size_t len, unsigned flags)
{
	const char *slash = memchr(s, '/', len);
	size_t bare_end = slash ? (size_t)(slash - s) : len;
	const char *at = memchr(s, '@', bare_end);
	size_t dom_start = at ? (size_t)(at - s) + 1 : 0;
	size_t pos = 0, n;
	enum jid_err e;

	j->local_len = j->domain_len = j->resource_len = 0;

	if (at) {
		e = prep_part(JID_LOCAL, s, (size_t)(at - s), j->str, &n, flags);
		if (e != JID_OK)
			goto fail;
		j->local_len = (uint16_t)n;
		j->str[n] = '@';
		pos = n + 1;
	}
	e = prep_part(JID_DOMAIN, s + dom_start, bare_end - dom_start, j->str + pos, &n, flags);
	if (e != JID_OK)
		goto fail;
	j->domain_len = (uint16_t)n;
	pos += n;
	if (slash) {
		j->str[pos] = '/';
		e = prep_part(JID_RESOURCE, slash + 1, len - bare_end - 1, j->str + pos + 1, &n, flags);
		if (e != JID_OK)
			goto fail;
		j->resource_len = (uint16_t)n;
	}
	return JID_OK;
fail:
	j->local_len = j->domain_len = j->resource_len = 0;
	j->str[0] = '\0';
	return e;
}

enum jid_err jid_set_resource(struct jid *j, const char *res, size_t len, unsigned flags)
{
	char tmp[JID_PART_MAX + 1];
	size_t bare = jid_bare_len(j), n;
	enum jid_err e;

	if (len == 0) {
		jid_make_bare(j);
		return JID_OK;
	}
	/* Into tmp first: on failure the old resource must survive. */
	e = prep_part(JID_RESOURCE, res, len, tmp, &n, flags);
	if (e != JID_OK)
		return e;
	j->str[bare] = '/';
	memcpy(j->str + bare + 1, tmp, n + 1);
	j->resource_len = (uint16_t)n;
	return JID_OK;
}

const char *jid_err_str(enum jid_err e)
{
	switch (e) {
	case JID_OK:            return "ok";
	case JID_ERR_LOCAL:     return "bad localpart";
	case JID_ERR_DOMAIN:    return "bad domainpart";
	case JID_ERR_RESOURCE:  return "bad resourcepart";
	case JID_ERR_NOSPACE:   return "output buffer too small";
	}
	return "unknown JID error";
}
