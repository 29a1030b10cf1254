/* parser/jid: splitting, the three profiles, limits, IP literals, views and
 * comparisons, and the ASCII fast path checked against libidn itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <stringprep.h>

#include "parser/jid.h"

/* ---- helpers -------------------------------------------------------- */

/* Parse with and without the fast path; both must agree with the
 * expectation. */
static void check_ok_n(const char *in, size_t len, const char *canon,
                       size_t local_len, size_t domain_len, size_t resource_len)
{
	static const unsigned flags[] = { 0, JID_F_NO_FAST };

	for (size_t f = 0; f < 2; f++) {
		struct jid j;
		enum jid_err e = jid_parse(&j, in, len, flags[f]);

		if (e != JID_OK)
			fail_msg("'%s' (flags %u): %s", in, flags[f], jid_err_str(e));
		assert_string_equal(j.str, canon);
		assert_int_equal(jid_size(&j), strlen(canon));
		assert_int_equal(j.local_len, local_len);
		assert_int_equal(j.domain_len, domain_len);
		assert_int_equal(j.resource_len, resource_len);
	}
}

static void check_ok(const char *in, const char *canon,
                     size_t local_len, size_t domain_len, size_t resource_len)
{
	check_ok_n(in, strlen(in), canon, local_len, domain_len, resource_len);
}

static void check_err_n(const char *in, size_t len, enum jid_err want)
{
	static const unsigned flags[] = { 0, JID_F_NO_FAST };

	for (size_t f = 0; f < 2; f++) {
		struct jid j;
		enum jid_err e = jid_parse(&j, in, len, flags[f]);

		if (e != want)
			fail_msg("'%.*s' (flags %u): got '%s', want '%s'", (int)len, in,
			         flags[f], jid_err_str(e), jid_err_str(want));
		assert_int_equal(j.local_len + j.domain_len + j.resource_len, 0);
		assert_string_equal(j.str, "");
	}
}

static void check_err(const char *in, enum jid_err want)
{
	check_err_n(in, strlen(in), want);
}

static struct jid parse(const char *in)
{
	struct jid j;

	assert_int_equal(jid_parse(&j, in, strlen(in), 0), JID_OK);
	return j;
}

static void fill(char *buf, char c, size_t n)
{
	memset(buf, c, n);
	buf[n] = '\0';
}

/* A host name of exactly n bytes: labels of 50 'a' and a short last one. */
static void make_domain(char *buf, size_t n)
{
	size_t pos = 0;

	while (n - pos > 63) {
		memset(buf + pos, 'a', 50);
		buf[pos + 50] = '.';
		pos += 51;
	}
	memset(buf + pos, 'b', n - pos);
	buf[n] = '\0';
}

/* ---- splitting ------------------------------------------------------ */

static void test_split(void **state)
{
	(void)state;
	check_ok("user@example.com/res", "user@example.com/res", 4, 11, 3);
	check_ok("user@example.com", "user@example.com", 4, 11, 0);
	check_ok("example.com/res", "example.com/res", 0, 11, 3);
	check_ok("example.com", "example.com", 0, 11, 0);
	/* The first '/' starts the resource; '@' and '/' after it belong to it. */
	check_ok("u@d.example/r/s@t", "u@d.example/r/s@t", 1, 9, 5);
	check_ok("d.example/r@x", "d.example/r@x", 0, 9, 3);
	check_ok("u@d/@/", "u@d/@/", 1, 1, 2);
	/* A second '@' before the '/' lands in the domain, which rejects it. */
	check_err("a@b@example.com", JID_ERR_DOMAIN);
}

static void test_empty_parts(void **state)
{
	(void)state;
	check_err("", JID_ERR_DOMAIN);
	check_err("@example.com", JID_ERR_LOCAL);
	check_err("@example.com/r", JID_ERR_LOCAL);
	check_err("@", JID_ERR_LOCAL);
	check_err("local@", JID_ERR_DOMAIN);
	check_err("local@/r", JID_ERR_DOMAIN);
	check_err("/r", JID_ERR_DOMAIN);
	check_err("example.com/", JID_ERR_RESOURCE);
	check_err("u@example.com/", JID_ERR_RESOURCE);
	/* Mapped to nothing by B.1: empty once prepared. */
	check_err("\xC2\xAD@example.com", JID_ERR_LOCAL);
	check_err("u@example.com/\xE2\x80\x8B", JID_ERR_RESOURCE);
}

/* ---- the profiles --------------------------------------------------- */

static void test_case_folding(void **state)
{
	(void)state;
	check_ok("User@EXAMPLE.Com/ReSource", "user@example.com/ReSource", 4, 11, 8);
	/* "Ünïcödé@Exämple.com/Résource": local and domain folded, resource kept. */
	check_ok("\xC3\x9Cn\xC3\xAF" "c\xC3\xB6" "d\xC3\xA9@Ex\xC3\xA4mple.com/R\xC3\xA9source",
	         "\xC3\xBCn\xC3\xAF" "c\xC3\xB6" "d\xC3\xA9@ex\xC3\xA4mple.com/R\xC3\xA9source",
	         11, 12, 9);
	/* Sharp s folds to "ss" in Nodeprep (B.2), stays in Resourceprep. */
	check_ok("Stra\xC3\x9F" "e@example.com/Stra\xC3\x9F" "e", "strasse@example.com/Stra\xC3\x9F" "e",
	         7, 11, 7);
	/* Decomposed e + combining acute composes under NFKC. */
	check_ok("e\xCC\x81@example.com", "\xC3\xA9@example.com", 2, 11, 0);
}

static void test_nfkc_fullwidth(void **state)
{
	(void)state;
	/* "ＵＳＥＲ@ｅｘａｍｐｌｅ．ｃｏｍ/ＲＥＳ": NFKC to ASCII, then the
	 * fullwidth full stop becomes a label separator. */
	check_ok("\xEF\xBC\xB5\xEF\xBC\xB3\xEF\xBC\xA5\xEF\xBC\xB2@"
	         "\xEF\xBD\x85\xEF\xBD\x98\xEF\xBD\x81\xEF\xBD\x8D\xEF\xBD\x90\xEF\xBD\x8C\xEF\xBD\x85"
	         "\xEF\xBC\x8E\xEF\xBD\x83\xEF\xBD\x8F\xEF\xBD\x8D/"
	         "\xEF\xBC\xB2\xEF\xBC\xA5\xEF\xBC\xB3",
	         "user@example.com/RES", 4, 11, 3);
	/* Ligature and circled digit. */
	check_ok("\xEF\xAC\x83@example.com/\xE2\x91\xA0", "ffi@example.com/1", 3, 11, 1);
}

static void test_local_prohibited(void **state)
{
	static const char *const bad[] = {
		"a\"b@example.com", "a&b@example.com", "a'b@example.com", "a:b@example.com",
		"a<b@example.com", "a>b@example.com", "a b@example.com", "a\tb@example.com",
		"a\x7f" "b@example.com",
		"a\xC2\xA0" "b@example.com",      /* U+00A0 no-break space, C.1.2 */
		"a\xE3\x80\x80" "b@example.com",  /* U+3000 ideographic space */
		"a\xEE\x80\x80" "b@example.com",  /* U+E000 private use, C.3 */
		"a\xEF\xBF\xBE" "b@example.com",  /* U+FFFE non-character, C.4 */
		"a\xE2\x80\x8E" "b@example.com",  /* U+200E LRM, C.8 */
		"\xEF\xBC\x82@example.com",       /* fullwidth '"': NFKC gives '"', then prohibited */
	};

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		check_err(bad[i], JID_ERR_LOCAL);
	/* Allowed in a localpart, though some look odd. */
	check_ok("a!#$%*+-.=?^_`{|}~b@example.com", "a!#$%*+-.=?^_`{|}~b@example.com", 19, 11, 0);
}

static void test_resource(void **state)
{
	(void)state;
	/* Spaces and every ASCII punctuation are allowed. */
	check_ok("u@example.com/My Laptop \"x\" & <y>", "u@example.com/My Laptop \"x\" & <y>", 1, 11, 19);
	check_err("u@example.com/a\tb", JID_ERR_RESOURCE);
	check_err("u@example.com/a\x7f", JID_ERR_RESOURCE);
	/* U+00A0 is C.1.2, but NFKC makes it a plain space first. */
	check_ok("u@example.com/a\xC2\xA0" "b", "u@example.com/a b", 1, 11, 3);
	check_err("u@example.com/a\xE2\x80\xA8" "b", JID_ERR_RESOURCE);  /* U+2028, C.2.2 */
	check_err("u@example.com/a\xE2\x80\x8F", JID_ERR_RESOURCE);      /* U+200F RLM, C.8 */
	check_err("u@example.com/\xEE\x80\x80", JID_ERR_RESOURCE);   /* private use */
	check_err("u@example.com/\xC2\x85", JID_ERR_RESOURCE);       /* U+0085, C.2.2 */
}

static void test_bidi(void **state)
{
	(void)state;
	/* Hebrew alef and bet: all-RTL is fine. */
	check_ok("\xD7\x90\xD7\x91@example.com/\xD7\x90\xD7\x91", "\xD7\x90\xD7\x91@example.com/\xD7\x90\xD7\x91",
	         4, 11, 4);
	/* RandALCat and LCat in one string. */
	check_err("\xD7\x90" "a@example.com", JID_ERR_LOCAL);
	check_err("u@example.com/a\xD7\x90", JID_ERR_RESOURCE);
	check_err("u@\xD7\x90" "a.example", JID_ERR_DOMAIN);
	/* RandALCat first but not last. */
	check_err("\xD7\x90" "1@example.com", JID_ERR_LOCAL);
	check_err("u@example.com/\xD7\x90" "1", JID_ERR_RESOURCE);
}

/* ---- limits --------------------------------------------------------- */

static void test_lengths(void **state)
{
	static char local[1100], domain[1100], res[1200], in[3400];
	struct jid j;

	(void)state;
	fill(local, 'a', 1023);
	make_domain(domain, 1023);
	fill(res, 'R', 1023);
	snprintf(in, sizeof in, "%s@%s/%s", local, domain, res);
	check_ok(in, in, 1023, 1023, 1023);
	assert_int_equal(jid_parse(&j, in, strlen(in), 0), JID_OK);
	assert_int_equal(jid_size(&j), JID_MAX);
	assert_int_equal(j.str[JID_MAX], '\0');

	fill(local, 'a', 1024);
	snprintf(in, sizeof in, "%s@example.com", local);
	check_err(in, JID_ERR_LOCAL);

	make_domain(domain, 1024);
	snprintf(in, sizeof in, "u@%s", domain);
	check_err(in, JID_ERR_DOMAIN);
	/* 1024 bytes with the root dot, 1023 once it is stripped. */
	make_domain(domain, 1023);
	snprintf(in, sizeof in, "u@%s.", domain);
	snprintf(res, sizeof res, "u@%s", domain);
	check_ok(in, res, 1, 1023, 0);
}

static void test_lengths_prepared(void **state)
{
	static char res[1100], in[1200];
	size_t pos = 0;

	(void)state;
	fill(res, 'R', 1024);
	snprintf(in, sizeof in, "u@example.com/%s", res);
	check_err(in, JID_ERR_RESOURCE);

	/* 300 x U+337F SQUARE CORPORATION: 900 bytes in, 3600 after NFKC. */
	for (int i = 0; i < 300; i++) {
		memcpy(res + pos, "\xE3\x8D\xBF", 3);
		pos += 3;
	}
	res[pos] = '\0';
	snprintf(in, sizeof in, "u@example.com/%s", res);
	check_err(in, JID_ERR_RESOURCE);
	/* 85 of them: 255 bytes in, 1020 out, fits. */
	res[85 * 3] = '\0';
	snprintf(in, sizeof in, "u@example.com/%s", res);
	{
		struct jid j;

		assert_int_equal(jid_parse(&j, in, strlen(in), 0), JID_OK);
		assert_int_equal(j.resource_len, 1020);
		assert_memory_equal(jid_resource(&j).ptr, "\xE6\xA0\xAA\xE5\xBC\x8F\xE4\xBC\x9A\xE7\xA4\xBE", 12);
	}
}

/* ---- the domain ----------------------------------------------------- */

static void test_domain_rules(void **state)
{
	static char label[80], in[200];

	(void)state;
	check_ok("u@example.com./r", "u@example.com/r", 1, 11, 1);
	check_ok("example.com.", "example.com", 0, 11, 0);
	check_err("u@example.com..", JID_ERR_DOMAIN);
	check_err(".", JID_ERR_DOMAIN);
	check_err("u@.example.com", JID_ERR_DOMAIN);
	check_err("u@a..b", JID_ERR_DOMAIN);
	check_err("u@exa mple.com", JID_ERR_DOMAIN);
	check_err("u@a_b.example", JID_ERR_DOMAIN);
	check_err("u@-a.example", JID_ERR_DOMAIN);
	check_err("u@a-.example", JID_ERR_DOMAIN);
	check_err("u@a\x01" "b.example", JID_ERR_DOMAIN);
	check_err_n("u@a\0b", 5, JID_ERR_DOMAIN);
	check_ok("u@a-b.x-y.example", "u@a-b.x-y.example", 1, 15, 0);
	check_ok("localhost", "localhost", 0, 9, 0);

	fill(label, 'a', 63);
	snprintf(in, sizeof in, "%s.example", label);
	check_ok(in, in, 0, 71, 0);
	fill(label, 'a', 64);
	snprintf(in, sizeof in, "%s.example", label);
	check_err(in, JID_ERR_DOMAIN);

	/* The 63-byte limit is on the ToASCII form: 55 'a' + U+00E4 is
	 * "xn--" + 55 + "-" + 3 = 63 bytes, 56 'a' one more, though both are
	 * under 63 bytes of UTF-8. */
	memset(label, 'a', 55);
	memcpy(label + 55, "\xC3\xA4", 3);
	snprintf(in, sizeof in, "u@%s.example", label);
	check_ok(in, in, 1, 57 + 8, 0);
	memset(label, 'a', 56);
	memcpy(label + 56, "\xC3\xA4", 3);
	snprintf(in, sizeof in, "u@%s.example", label);
	check_err(in, JID_ERR_DOMAIN);
	/* "bücher": "xn--bcher-kva", well within. */
	check_ok("u@B\xC3\x9C" "cher.example", "u@b\xC3\xBC" "cher.example", 1, 15, 0);
	/* An ACE prefix on a label that is not ASCII. */
	check_err("u@xn--b\xC3\xBC" "cher.example", JID_ERR_DOMAIN);
}

static void test_ip_literals(void **state)
{
	(void)state;
	check_ok("u@192.168.0.1/r", "u@192.168.0.1/r", 1, 11, 1);
	check_ok("127.0.0.1", "127.0.0.1", 0, 9, 0);
	check_err("u@1.2.3.256", JID_ERR_DOMAIN);
	check_err("u@1.2.3", JID_ERR_DOMAIN);
	check_err("u@1.2.3.4.5", JID_ERR_DOMAIN);
	check_err("u@01.2.3.4", JID_ERR_DOMAIN);

	check_ok("u@[::1]/r", "u@[::1]/r", 1, 5, 1);
	/* One spelling per address. */
	check_ok("u@[2001:DB8:0:0:0:0:0:1]", "u@[2001:db8::1]", 1, 13, 0);
	check_ok("[::ffff:192.0.2.1]", "[::ffff:192.0.2.1]", 0, 18, 0);
	check_err("u@[::1", JID_ERR_DOMAIN);
	check_err("u@[]", JID_ERR_DOMAIN);
	check_err("u@[:::1]", JID_ERR_DOMAIN);
	check_err("u@[12345::]", JID_ERR_DOMAIN);
	check_err("u@[fe80::1%eth0]", JID_ERR_DOMAIN);
	check_err("u@[192.168.0.1]", JID_ERR_DOMAIN);
	check_err("u@[v1.x]", JID_ERR_DOMAIN);
	check_err("u@::1", JID_ERR_DOMAIN);
	check_err("u@[::1]x", JID_ERR_DOMAIN);
}

static void test_bad_utf8(void **state)
{
	(void)state;
	check_err("\xC3@example.com", JID_ERR_LOCAL);          /* truncated */
	check_err("\xC0\xAF@example.com", JID_ERR_LOCAL);      /* overlong '/' */
	check_err("u@exampl\xFF.com", JID_ERR_DOMAIN);
	check_err("u@example.com/\xED\xA0\x80", JID_ERR_RESOURCE);  /* surrogate */
	check_err("u@example.com/\xF4\x90\x80\x80", JID_ERR_RESOURCE);  /* > U+10FFFF */
	check_err("u@example.com/a\x80", JID_ERR_RESOURCE);    /* stray continuation */
	check_err("u@example.com/\xE2\x82", JID_ERR_RESOURCE); /* cut at the end */
	check_err_n("a\0b@example.com", 15, JID_ERR_LOCAL);
	check_err_n("u@example.com/a\0", 16, JID_ERR_RESOURCE);
}

/* ---- views and comparisons ------------------------------------------ */

static void test_views(void **state)
{
	struct jid j = parse("Juliet@Capulet.example/Balcony");
	struct jid_slice s;

	(void)state;
	s = jid_local(&j);
	assert_int_equal(s.len, 6);
	assert_memory_equal(s.ptr, "juliet", 6);
	s = jid_domain(&j);
	assert_int_equal(s.len, 15);
	assert_memory_equal(s.ptr, "capulet.example", 15);
	s = jid_resource(&j);
	assert_string_equal(s.ptr, "Balcony");
	s = jid_bare(&j);
	assert_int_equal(s.len, 22);
	assert_memory_equal(s.ptr, "juliet@capulet.example", 22);
	s = jid_full(&j);
	assert_string_equal(s.ptr, "juliet@capulet.example/Balcony");
	assert_false(jid_is_bare(&j));
	assert_false(jid_is_domain(&j));

	j = parse("capulet.example/Balcony");
	s = jid_domain(&j);
	assert_int_equal(s.len, 15);
	assert_ptr_equal(s.ptr, j.str);
	assert_int_equal(jid_local(&j).len, 0);
	assert_string_equal(jid_resource(&j).ptr, "Balcony");
	assert_false(jid_is_domain(&j));

	j = parse("capulet.example");
	assert_true(jid_is_bare(&j));
	assert_true(jid_is_domain(&j));
	assert_int_equal(jid_resource(&j).len, 0);
	assert_string_equal(jid_resource(&j).ptr, "");
}

static void test_compare(void **state)
{
	struct jid a = parse("Romeo@Montague.example/Orchard");
	struct jid b = parse("romeo@MONTAGUE.EXAMPLE./Orchard");
	struct jid c = parse("romeo@montague.example/orchard");
	struct jid d = parse("romeo@montague.example");
	struct jid e = parse("montague.example/romeo");
	struct jid f = parse("romeo@montague.example.org/Orchard");

	(void)state;
	assert_true(jid_equal(&a, &b));
	assert_true(jid_bare_equal(&a, &b));
	assert_false(jid_equal(&a, &c));       /* resources keep case */
	assert_true(jid_bare_equal(&a, &c));
	assert_false(jid_equal(&a, &d));
	assert_true(jid_bare_equal(&a, &d));
	assert_true(jid_bare_equal(&d, &a));
	assert_false(jid_bare_equal(&d, &e));
	assert_false(jid_bare_equal(&a, &f));
	assert_false(jid_equal(&a, &f));

	jid_make_bare(&a);
	assert_true(jid_is_bare(&a));
	assert_true(jid_equal(&a, &d));
	assert_string_equal(a.str, "romeo@montague.example");
}

static void test_set_resource(void **state)
{
	struct jid j = parse("romeo@montague.example");

	(void)state;
	assert_int_equal(jid_set_resource(&j, "\xEF\xBC\xB2oof", 6, 0), JID_OK);
	assert_string_equal(j.str, "romeo@montague.example/Roof");
	assert_int_equal(j.resource_len, 4);
	/* A failure leaves the JID as it was. */
	assert_int_equal(jid_set_resource(&j, "a\tb", 3, 0), JID_ERR_RESOURCE);
	assert_string_equal(j.str, "romeo@montague.example/Roof");
	assert_int_equal(j.resource_len, 4);
	assert_int_equal(jid_set_resource(&j, "x", 1, 0), JID_OK);
	assert_string_equal(j.str, "romeo@montague.example/x");
	assert_int_equal(jid_set_resource(&j, NULL, 0, 0), JID_OK);
	assert_string_equal(j.str, "romeo@montague.example");
	assert_true(jid_is_bare(&j));
}

static void test_prep_api(void **state)
{
	char out[JID_PART_MAX + 1];
	char small[4];
	size_t n;

	(void)state;
	assert_int_equal(jid_prep(JID_DOMAIN, "Example.COM.", 12, out, sizeof out, &n, 0), JID_OK);
	assert_string_equal(out, "example.com");
	assert_int_equal(n, 11);
	assert_int_equal(jid_prep(JID_LOCAL, "AbC", 3, small, sizeof small, &n, 0), JID_OK);
	assert_string_equal(small, "abc");
	assert_int_equal(jid_prep(JID_LOCAL, "AbCd", 4, small, sizeof small, &n, 0), JID_ERR_NOSPACE);
	assert_int_equal(jid_prep(JID_LOCAL, "a@b", 3, small, sizeof small, &n, 0), JID_ERR_LOCAL);
	assert_int_equal(jid_prep(JID_RESOURCE, "", 0, out, sizeof out, &n, 0), JID_ERR_RESOURCE);
	assert_string_equal(jid_err_str(JID_ERR_DOMAIN), "bad domainpart");
}

/* ---- the ASCII fast path against libidn ------------------------------ */

/* libidn's own answer for one part, straight from the stringprep_* macros,
 * independent of jid.c: 1 accepted (out filled), 0 rejected. */
static int libidn_prep(enum jid_part part, const char *in, size_t n, char *out)
{
	int rc;

	memcpy(out, in, n);
	out[n] = '\0';
	switch (part) {
	case JID_LOCAL:    rc = stringprep_xmpp_nodeprep(out, JID_PART_MAX + 1); break;
	case JID_DOMAIN:   rc = stringprep_nameprep(out, JID_PART_MAX + 1); break;
	default:           rc = stringprep_xmpp_resourceprep(out, JID_PART_MAX + 1); break;
	}
	return rc == STRINGPREP_OK;
}

/* Every byte 0x01..0x7F alone and at the start, middle and end of each
 * part: the fast path must equal JID_F_NO_FAST exactly, and for local and
 * resource (where jid.c adds no rules of its own) must equal libidn's
 * verdict and output. */
static void test_fast_path_every_ascii(void **state)
{
	static const char *const shapes[] = { "%c", "%cxy", "x%cy", "xy%c", "X%cY" };
	int accepted = 0, rejected = 0;

	(void)state;
	for (int part = JID_LOCAL; part <= JID_RESOURCE; part++) {
		for (unsigned c = 1; c < 128; c++) {
			for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
				char in[8], fast[JID_PART_MAX + 1], slow[JID_PART_MAX + 1], ref[JID_PART_MAX + 1];
				size_t n = (size_t)snprintf(in, sizeof in, shapes[s], (int)c);
				size_t nf = 0, ns = 0;
				enum jid_err ef = jid_prep((enum jid_part)part, in, n, fast, sizeof fast, &nf, 0);
				enum jid_err es = jid_prep((enum jid_part)part, in, n, slow, sizeof slow, &ns, JID_F_NO_FAST);

				if (ef != es)
					fail_msg("part %d byte 0x%02x shape %zu: fast %s, libidn %s",
					         part, c, s, jid_err_str(ef), jid_err_str(es));
				if (ef == JID_OK) {
					assert_int_equal(nf, ns);
					assert_string_equal(fast, slow);
					accepted++;
				} else {
					rejected++;
				}
				/* The domain adds trailing-dot and host-name rules; compare
				 * raw Nameprep only where they do not apply. */
				if (part != JID_DOMAIN) {
					int r = libidn_prep((enum jid_part)part, in, n, ref);

					if (r != (ef == JID_OK))
						fail_msg("part %d byte 0x%02x: jid %s, libidn %d", part, c,
						         jid_err_str(ef), r);
					if (r)
						assert_string_equal(fast, ref);
				} else if (ef == JID_OK) {
					assert_true(libidn_prep(JID_DOMAIN, in, n, ref));
					if (in[n - 1] != '.')
						assert_string_equal(fast, ref);
				}
			}
		}
	}
	/* Not vacuous: both outcomes occur in every part. */
	assert_true(accepted > 1000);
	assert_true(rejected > 500);
}

/* What the fast path assumes of each profile on ASCII (jid.c's header
 * comment), asked of libidn byte by byte: Nodeprep folds A-Z and rejects
 * controls, space and " & ' / : < > @; Nameprep folds and rejects nothing;
 * Resourceprep rejects controls only and changes nothing. */
static void test_fast_path_profile_tables(void **state)
{
	static const char node_prohibited[] = "\"&'/:<>@ ";

	(void)state;
	for (unsigned c = 1; c < 128; c++) {
		char in[2] = { (char)c, '\0' };
		char folded[2] = { (char)((c >= 'A' && c <= 'Z') ? c + 32 : c), '\0' };
		char ref[16], out[8];
		size_t n;
		bool control = c < 0x20 || c == 0x7F;
		bool node_bad = control || strchr(node_prohibited, (int)c) != NULL;

		assert_int_equal(libidn_prep(JID_LOCAL, in, 1, ref), !node_bad);
		if (!node_bad)
			assert_string_equal(ref, folded);
		assert_int_equal(jid_prep(JID_LOCAL, in, 1, out, sizeof out, &n, 0),
		                 node_bad ? JID_ERR_LOCAL : JID_OK);
		if (!node_bad)
			assert_string_equal(out, folded);

		assert_true(libidn_prep(JID_DOMAIN, in, 1, ref));
		assert_string_equal(ref, folded);

		assert_int_equal(libidn_prep(JID_RESOURCE, in, 1, ref), !control);
		if (!control)
			assert_string_equal(ref, in);
		assert_int_equal(jid_prep(JID_RESOURCE, in, 1, out, sizeof out, &n, 0),
		                 control ? JID_ERR_RESOURCE : JID_OK);
	}
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 32);
}

/* Random whole JIDs over an alphabet weighted towards the characters that
 * matter (separators, dots, hyphens, digits, upper case, prohibited ones),
 * fast path against JID_F_NO_FAST, and local/resource against libidn. */
static void test_fast_path_random(void **state)
{
	static const char alphabet[] =
		"abcXYZ019-.-.@/@/ \"&'<>:!#$%()*+,;=?[]\\^_`{|}~\t\x7f\x01";
	int ok = 0, bad = 0;

	(void)state;
	for (int iter = 0; iter < 200000; iter++) {
		char in[64];
		size_t n = 1 + rng() % 40;
		struct jid f, s;
		enum jid_err ef, es;

		for (size_t i = 0; i < n; i++)
			in[i] = alphabet[rng() % (sizeof alphabet - 1)];
		/* Half the time, force a plausible shape so that more get through. */
		if (iter & 1) {
			size_t at = rng() % n;

			in[at] = '@';
			for (size_t i = 0; i < at; i++)
				if (in[i] == '@' || in[i] == '/')
					in[i] = 'q';
		}
		ef = jid_parse(&f, in, n, 0);
		es = jid_parse(&s, in, n, JID_F_NO_FAST);
		if (ef != es)
			fail_msg("'%.*s': fast %s, libidn %s", (int)n, in, jid_err_str(ef), jid_err_str(es));
		if (ef == JID_OK) {
			assert_true(jid_equal(&f, &s));
			assert_string_equal(f.str, s.str);
			ok++;
		} else {
			bad++;
		}

		/* Each part alone. */
		for (int part = JID_LOCAL; part <= JID_RESOURCE; part += 2) {
			char a[JID_PART_MAX + 1], ref[JID_PART_MAX + 1];
			size_t na;
			enum jid_err e = jid_prep((enum jid_part)part, in, n, a, sizeof a, &na, 0);
			int r = libidn_prep((enum jid_part)part, in, n, ref);

			if (r != (e == JID_OK))
				fail_msg("part %d '%.*s': jid %s, libidn %d", part, (int)n, in, jid_err_str(e), r);
			if (r)
				assert_string_equal(a, ref);
		}
	}
	assert_true(ok > 1000);
	assert_true(bad > 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_empty_parts),
		cmocka_unit_test(test_case_folding),
		cmocka_unit_test(test_nfkc_fullwidth),
		cmocka_unit_test(test_local_prohibited),
		cmocka_unit_test(test_resource),
		cmocka_unit_test(test_bidi),
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_lengths_prepared),
		cmocka_unit_test(test_domain_rules),
		cmocka_unit_test(test_ip_literals),
		cmocka_unit_test(test_bad_utf8),
		cmocka_unit_test(test_views),
		cmocka_unit_test(test_compare),
		cmocka_unit_test(test_set_resource),
		cmocka_unit_test(test_prep_api),
		cmocka_unit_test(test_fast_path_every_ascii),
		cmocka_unit_test(test_fast_path_profile_tables),
		cmocka_unit_test(test_fast_path_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
