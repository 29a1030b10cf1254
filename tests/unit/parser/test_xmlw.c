/* Unit tests of the XML writer (parser/xmlw.h).
 *
 * Exact output for each construct; escaping of every special character;
 * rejection of what XML 1.0 cannot carry, checked against an independent
 * decoder; the round trip through libexpat (what is written parses back to
 * the same string); overflow at every capacity of a sample document.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <expat.h>

#include "parser/xmlw.h"

/* ---- helpers ---------------------------------------------------------- */

static char out[16384];

#define assert_output(w, expect) do {                                   \
		size_t n_ = 0;                                          \
		assert_int_equal(xmlw_finish((w), &n_), XMLW_OK);       \
		assert_int_equal(n_, strlen(expect));                   \
		assert_memory_equal(out, (expect), n_);                 \
	} while (0)

/* Deterministic generator (splitmix64): the same cases on every run. */
static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static uint32_t rng_below(uint32_t n)
{
	return (uint32_t)(rng() % n);
}

static size_t put_utf8(char *p, uint32_t cp)
{
	if (cp < 0x80) {
		p[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		p[0] = (char)(0xc0 | (cp >> 6));
		p[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		p[0] = (char)(0xe0 | (cp >> 12));
		p[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		p[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	p[0] = (char)(0xf0 | (cp >> 18));
	p[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	p[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	p[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* An independent reading of "UTF-8 carrying XML 1.0 characters only":
 * decode each code point arithmetically, then test it against the Char
 * production, rather than the writer's table of lead and second bytes. */
static bool ref_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint32_t cp, min;
		size_t len;

		if (s[i] < 0x80) {
			cp = s[i];
			len = 1;
			min = 0;
		} else if ((s[i] & 0xe0) == 0xc0) {
			cp = s[i] & 0x1f;
			len = 2;
			min = 0x80;
		} else if ((s[i] & 0xf0) == 0xe0) {
			cp = s[i] & 0x0f;
			len = 3;
			min = 0x800;
		} else if ((s[i] & 0xf8) == 0xf0) {
			cp = s[i] & 0x07;
			len = 4;
			min = 0x10000;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min)
			return false;
		if (!(cp == 0x9 || cp == 0xa || cp == 0xd ||
		      (cp >= 0x20 && cp <= 0xd7ff) ||
		      (cp >= 0xe000 && cp <= 0xfffd) ||
		      (cp >= 0x10000 && cp <= 0x10ffff)))
			return false;
		i += len;
	}
	return true;
}

/* The obvious byte-at-a-time escaper, to compare the fast one against. */
static size_t ref_escape(char *dst, const char *src, size_t n, bool attr)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		const char *r = NULL;

		switch (src[i]) {
		case '&':  r = "&amp;"; break;
		case '<':  r = "&lt;"; break;
		case '>':  r = "&gt;"; break;
		case '\r': r = "&#xD;"; break;
		case '\'': r = attr ? "&apos;" : NULL; break;
		case '"':  r = attr ? "&quot;" : NULL; break;
		case '\t': r = attr ? "&#x9;" : NULL; break;
		case '\n': r = attr ? "&#xA;" : NULL; break;
		default: break;
		}
		if (r != NULL) {
			memcpy(dst + o, r, strlen(r));
			o += strlen(r);
		} else {
			dst[o++] = src[i];
		}
	}
	return o;
}

/* A mix of what makes escaping hard: plain ASCII runs of every length,
 * each special character, "]]>", CR LF, and characters of every UTF-8
 * length near the edges of the allowed ranges. Always valid. */
static size_t random_valid(char *p, size_t max_pieces)
{
	static const char *const specials[] = {
		"&", "<", ">", "'", "\"", "\t", "\n", "\r", "\r\n", "]]>", " ", "&amp;", "\x7f",
	};
	size_t n = 0, pieces = rng_below((uint32_t)max_pieces + 1);

	for (size_t k = 0; k < pieces; k++) {
		uint32_t cp;

		switch (rng_below(6)) {
		case 0:
		case 1:
			for (uint32_t r = rng_below(20); r > 0; r--)
				p[n++] = (char)(0x20 + rng_below(0x5f));
			break;
		case 2: {
			const char *s = specials[rng_below(sizeof(specials) / sizeof(specials[0]))];
			memcpy(p + n, s, strlen(s));
			n += strlen(s);
			break;
		}
		case 3:
			n += put_utf8(p + n, 0x80 + rng_below(0x800 - 0x80));
			break;
		case 4:
			cp = rng_below(2) ? 0x800 + rng_below(0xd800 - 0x800)
					  : 0xe000 + rng_below(0xfffe - 0xe000);
			n += put_utf8(p + n, cp);
			break;
		default:
			n += put_utf8(p + n, 0x10000 + rng_below(0x110000 - 0x10000));
			break;
		}
	}
	return n;
}

/* ---- expat ------------------------------------------------------------ */

struct parsed {
	char attr[4096];
	size_t attr_len;
	char text[4096];
	size_t text_len;
	int elements;
};

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	struct parsed *p = ud;

	(void)name;
	p->elements++;
	for (; atts[0] != NULL; atts += 2) {
		if (strcmp(atts[0], "a") == 0) {
			p->attr_len = strlen(atts[1]);
			memcpy(p->attr, atts[1], p->attr_len);
		}
	}
}

static void XMLCALL on_text(void *ud, const XML_Char *s, int len)
{
	struct parsed *p = ud;

	memcpy(p->text + p->text_len, s, (size_t)len);
	p->text_len += (size_t)len;
}

/* Parse doc[0..n) as a whole document with namespace processing on. */
static bool expat_parse(const char *doc, size_t n, struct parsed *p)
{
	XML_Parser x = XML_ParserCreateNS("UTF-8", '|');
	bool ok;

	memset(p, 0, sizeof(*p));
	XML_SetUserData(x, p);
	XML_SetElementHandler(x, on_start, NULL);
	XML_SetCharacterDataHandler(x, on_text);
	ok = XML_Parse(x, doc, (int)n, 1) == XML_STATUS_OK;
	XML_ParserFree(x);
	return ok;
}

/* ---- constructs ------------------------------------------------------- */

static void test_empty_element(void **state)
{
	struct xmlw w;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "presence");
	xmlw_end(&w);
	assert_output(&w, "<presence/>");

	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "presence");
	xmlw_attr_str(&w, "type", "unavailable");
	xmlw_text(&w, "", 0);   /* empty text is not content */
	xmlw_raw(&w, "", 0);
	xmlw_end(&w);
	assert_output(&w, "<presence type='unavailable'/>");
}

static void test_nested(void **state)
{
	struct xmlw w;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "iq");
	xmlw_attr_str(&w, "to", "juliet@example.com/balcony");
	xmlw_attr_str(&w, "id", "a1");
	xmlw_attr_str(&w, "type", "set");
	xmlw_start(&w, "query");
	xmlw_ns(&w, NULL, "jabber:iq:roster");
	xmlw_attr_str(&w, "ver", "v2");
	xmlw_start(&w, "item");
	xmlw_attr_str(&w, "jid", "nurse@example.com");
	xmlw_attr_str(&w, "name", "Nurse");
	xmlw_start(&w, "group");
	xmlw_text_str(&w, "Servants");
	xmlw_end(&w);
	xmlw_end(&w);
	xmlw_start(&w, "item");
	xmlw_attr_str(&w, "jid", "romeo@example.net");
	xmlw_end(&w);
	xmlw_end(&w);
	xmlw_end(&w);
	assert_output(&w,
		"<iq to='juliet@example.com/balcony' id='a1' type='set'>"
		"<query xmlns='jabber:iq:roster' ver='v2'>"
		"<item jid='nurse@example.com' name='Nurse'><group>Servants</group></item>"
		"<item jid='romeo@example.net'/>"
		"</query></iq>");
}

static void test_prefixed_and_text(void **state)
{
	struct xmlw w;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "message");
	xmlw_attr_str(&w, "xml:lang", "en");
	xmlw_start(&w, "body");
	xmlw_text_str(&w, "a < b && c > d");
	xmlw_end(&w);
	xmlw_start(&w, "x:data");
	xmlw_ns(&w, "x", "urn:example:x");
	xmlw_attr_str(&w, "x:k", "it's \"quoted\"");
	xmlw_end(&w);
	xmlw_end(&w);
	assert_output(&w,
		"<message xml:lang='en'><body>a &lt; b &amp;&amp; c &gt; d</body>"
		"<x:data xmlns:x='urn:example:x' x:k='it&apos;s &quot;quoted&quot;'/></message>");
}

static void test_raw(void **state)
{
	static const char fwd[] = "<body xmlns='jabber:client'>hi &amp; bye</body>";
	struct xmlw w;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "forwarded");
	xmlw_ns(&w, NULL, "urn:xmpp:forward:0");
	xmlw_raw(&w, fwd, strlen(fwd));
	xmlw_end(&w);
	assert_output(&w,
		"<forwarded xmlns='urn:xmpp:forward:0'>"
		"<body xmlns='jabber:client'>hi &amp; bye</body></forwarded>");
}

static void test_several_top_level(void **state)
{
	struct xmlw w;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "a");
	xmlw_end(&w);
	xmlw_text_str(&w, " ");
	xmlw_start(&w, "b");
	xmlw_end(&w);
	assert_output(&w, "<a/> <b/>");
}

static void test_stream_header(void **state)
{
	struct xmlw w;
	size_t n;
	const char *expect =
		"<?xml version='1.0'?>"
		"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
		" from='example.com' id='++TR84Sm6A3hnt3Q065SnAbbk3Y=' version='1.0' xml:lang='en'>";

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_raw(&w, "<?xml version='1.0'?>", 21);
	xmlw_start(&w, "stream:stream");
	xmlw_ns(&w, NULL, "jabber:client");
	xmlw_ns(&w, "stream", "http://etherx.jabber.org/streams");
	xmlw_attr_str(&w, "from", "example.com");
	xmlw_attr_str(&w, "id", "++TR84Sm6A3hnt3Q065SnAbbk3Y=");
	xmlw_attr_str(&w, "version", "1.0");
	xmlw_attr_str(&w, "xml:lang", "en");
	assert_int_equal(xmlw_finish_open(&w, &n), XMLW_OK);
	assert_int_equal(n, strlen(expect));
	assert_memory_equal(out, expect, n);

	/* Header and features in one write; the stream stays open. */
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "stream:stream");
	xmlw_ns(&w, "stream", "http://etherx.jabber.org/streams");
	xmlw_start(&w, "stream:features");
	xmlw_start(&w, "starttls");
	xmlw_ns(&w, NULL, "urn:ietf:params:xml:ns:xmpp-tls");
	xmlw_start(&w, "required");
	xmlw_end(&w);
	xmlw_end(&w);
	xmlw_end(&w);
	expect = "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>"
		 "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>"
		 "<required/></starttls></stream:features>";
	assert_int_equal(xmlw_finish_open(&w, &n), XMLW_OK);
	assert_int_equal(n, strlen(expect));
	assert_memory_equal(out, expect, n);

	/* Closing the stream later is one end tag, written raw. */
	xmlw_init(&w, out, sizeof(out));
	xmlw_raw(&w, "</stream:stream>", 16);
	assert_output(&w, "</stream:stream>");
}

static void test_finish_open_needs_one(void **state)
{
	struct xmlw w;
	size_t n = 99;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	assert_int_equal(xmlw_finish_open(&w, &n), XMLW_ERR_NESTING);
	assert_int_equal(n, 0);

	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "stream:stream");
	xmlw_start(&w, "stream:features");
	n = 99;
	assert_int_equal(xmlw_finish_open(&w, &n), XMLW_ERR_NESTING);
	assert_int_equal(n, 0);

	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "a");
	xmlw_end(&w);
	assert_int_equal(xmlw_finish_open(&w, &n), XMLW_ERR_NESTING);
}

static void test_unclosed(void **state)
{
	struct xmlw w;
	size_t n = 99;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "iq");
	xmlw_start(&w, "query");
	xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_NESTING);
	assert_int_equal(n, 0);
	/* Sticky: finishing again reports the same. */
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_NESTING);
}

static void test_misuse(void **state)
{
	struct xmlw w;
	size_t n;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_end(&w);
	assert_int_equal(xmlw_status(&w), XMLW_ERR_NESTING);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_NESTING);

	xmlw_init(&w, out, sizeof(out));
	xmlw_attr_str(&w, "a", "b");
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_NESTING);

	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "a");
	xmlw_text_str(&w, "x");
	xmlw_attr_str(&w, "late", "b");
	xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_NESTING);

	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "a");
	xmlw_start(&w, "b");
	xmlw_end(&w);
	xmlw_ns(&w, NULL, "urn:late");
	xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_NESTING);

	/* A prefix cannot be undeclared in Namespaces in XML 1.0. */
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "a");
	xmlw_ns(&w, "p", "");
	xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_CHAR);
}

static void test_depth_limit(void **state)
{
	struct xmlw w;
	size_t n;
	struct parsed p;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	for (int i = 0; i < XMLW_MAX_DEPTH; i++)
		xmlw_start(&w, "d");
	for (int i = 0; i < XMLW_MAX_DEPTH; i++)
		xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_OK);
	assert_true(expat_parse(out, n, &p));
	assert_int_equal(p.elements, XMLW_MAX_DEPTH);

	xmlw_init(&w, out, sizeof(out));
	for (int i = 0; i <= XMLW_MAX_DEPTH; i++)
		xmlw_start(&w, "d");
	for (int i = 0; i <= XMLW_MAX_DEPTH; i++)
		xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_NESTING);
}

static void test_rejected_control(void **state)
{
	struct xmlw w;
	size_t n = 99;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "message");
	xmlw_attr(&w, "id", "ab\x01" "cd", 5);
	xmlw_end(&w);
	assert_int_equal(xmlw_status(&w), XMLW_ERR_CHAR);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_CHAR);
	assert_int_equal(n, 0);

	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "body");
	xmlw_text(&w, "bell\x07", 5);
	xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_CHAR);

	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "body");
	xmlw_text(&w, "nul\0", 4);
	xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_CHAR);

	/* Invalid UTF-8 (a lone Latin-1 byte) in a namespace URI. */
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "q");
	xmlw_ns(&w, NULL, "urn:caf\xe9");
	xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_CHAR);
}

static void test_sticky_after_failure(void **state)
{
	char small[8];
	struct xmlw w;
	size_t n;

	(void)state;
	memset(small, 'Z', sizeof(small));
	xmlw_init(&w, small, 4);
	xmlw_start(&w, "message");   /* does not fit */
	xmlw_end(&w);
	xmlw_start(&w, "a");         /* would fit, must not be written */
	xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_SPACE);
	assert_int_equal(n, 0);
	assert_memory_equal(small, "ZZZZZZZZ", 8);
}

/* ---- escaping --------------------------------------------------------- */

struct esc_case {
	const char *in;
	const char *text;
	const char *attr;
};

static const struct esc_case esc_cases[] = {
	{ "&",  "&amp;",  "&amp;"  },
	{ "<",  "&lt;",   "&lt;"   },
	{ ">",  "&gt;",   "&gt;"   },
	{ "'",  "'",      "&apos;" },
	{ "\"", "\"",     "&quot;" },
	{ "\t", "\t",     "&#x9;"  },
	{ "\n", "\n",     "&#xA;"  },
	{ "\r", "&#xD;",  "&#xD;"  },
	{ "]]>", "]]&gt;", "]]&gt;" },
	{ "\r\n", "&#xD;\n", "&#xD;&#xA;" },
	{ "", "", "" },
	{ "plain text, nothing to do", "plain text, nothing to do", "plain text, nothing to do" },
	{ "\x7f", "\x7f", "\x7f" },
	{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
	{ "a&b<c>d'e\"f\tg\nh\ri", "a&amp;b&lt;c&gt;d'e\"f\tg\nh&#xD;i",
	  "a&amp;b&lt;c&gt;d&apos;e&quot;f&#x9;g&#xA;h&#xD;i" },
	{ "0123456789abcdef&0123456789abcdef", "0123456789abcdef&amp;0123456789abcdef",
	  "0123456789abcdef&amp;0123456789abcdef" },
};

static void test_escape_each_special(void **state)
{
	char dst[256];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(esc_cases) / sizeof(esc_cases[0]); i++) {
		const struct esc_case *c = &esc_cases[i];

		assert_int_equal(xmlw_escape_text(dst, sizeof(dst), c->in, strlen(c->in), &n), XMLW_OK);
		assert_int_equal(n, strlen(c->text));
		assert_memory_equal(dst, c->text, n);
		assert_int_equal(xmlw_escape_attr(dst, sizeof(dst), c->in, strlen(c->in), &n), XMLW_OK);
		assert_int_equal(n, strlen(c->attr));
		assert_memory_equal(dst, c->attr, n);
	}
}

/* Through the writer too: same escaping in element text and values. */
static void test_writer_escapes(void **state)
{
	struct xmlw w;

	(void)state;
	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "e");
	xmlw_attr_str(&w, "a", "&<>'\"\t\n\r");
	xmlw_text_str(&w, "&<>'\"\t\n\r]]>");
	xmlw_end(&w);
	assert_output(&w,
		"<e a='&amp;&lt;&gt;&apos;&quot;&#x9;&#xA;&#xD;'>"
		"&amp;&lt;&gt;'\"\t\n&#xD;]]&gt;</e>");
}

static void test_escape_controls(void **state)
{
	char dst[64], in[3];
	size_t n;

	(void)state;
	for (unsigned c = 0; c < 0x20; c++) {
		bool allowed = c == '\t' || c == '\n' || c == '\r';

		/* Alone, and after a plain byte so it is met mid-run. */
		in[0] = 'x';
		in[1] = (char)c;
		in[2] = 'y';
		for (int off = 0; off < 2; off++) {
			enum xmlw_status st = xmlw_escape_text(dst, sizeof(dst), in + 1 - off, 2 + off, &n);
			assert_int_equal(st, allowed ? XMLW_OK : XMLW_ERR_CHAR);
			st = xmlw_escape_attr(dst, sizeof(dst), in + 1 - off, 2 + off, &n);
			assert_int_equal(st, allowed ? XMLW_OK : XMLW_ERR_CHAR);
		}
	}
}

static void test_escape_utf8_edges(void **state)
{
	static const struct {
		const char *s;
		bool ok;
	} cases[] = {
		{ "\xc2\x80", true },             /* U+0080 */
		{ "\xdf\xbf", true },             /* U+07FF */
		{ "\xe0\xa0\x80", true },         /* U+0800 */
		{ "\xed\x9f\xbf", true },         /* U+D7FF */
		{ "\xee\x80\x80", true },         /* U+E000 */
		{ "\xef\xbf\xbd", true },         /* U+FFFD */
		{ "\xf0\x90\x80\x80", true },     /* U+10000 */
		{ "\xf4\x8f\xbf\xbf", true },     /* U+10FFFF */
		{ "\x80", false },                /* stray continuation */
		{ "\xbf", false },
		{ "\xc0\x80", false },            /* overlong NUL */
		{ "\xc1\xbf", false },            /* overlong */
		{ "\xe0\x9f\xbf", false },        /* overlong */
		{ "\xf0\x8f\xbf\xbf", false },    /* overlong */
		{ "\xed\xa0\x80", false },        /* surrogate U+D800 */
		{ "\xed\xbf\xbf", false },        /* surrogate U+DFFF */
		{ "\xef\xbf\xbe", false },        /* U+FFFE */
		{ "\xef\xbf\xbf", false },        /* U+FFFF */
		{ "\xf4\x90\x80\x80", false },    /* U+110000 */
		{ "\xf5\x80\x80\x80", false },
		{ "\xff", false },
		{ "\xc3", false },                /* cut */
		{ "\xe2\x82", false },
		{ "\xf0\x9f\x98", false },
		{ "\xc3\x28", false },            /* bad continuation */
		{ "\xe2\x28\xa1", false },
		{ "\xf0\x9f\x28\x80", false },
	};
	char dst[64], in[32];
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t l = strlen(cases[i].s);
		enum xmlw_status want = cases[i].ok ? XMLW_OK : XMLW_ERR_CHAR;

		/* Alone, then at the end of a run long enough for the word scan. */
		assert_int_equal(xmlw_escape_text(dst, sizeof(dst), cases[i].s, l, &n), want);
		assert_int_equal(xmlw_escape_attr(dst, sizeof(dst), cases[i].s, l, &n), want);
		memcpy(in, "0123456789", 10);
		memcpy(in + 10, cases[i].s, l);
		assert_int_equal(xmlw_escape_text(dst, sizeof(dst), in, 10 + l, &n), want);
		assert_int_equal(xmlw_escape_attr(dst, sizeof(dst), in, 10 + l, &n), want);
		if (cases[i].ok) {
			assert_int_equal(n, 10 + l);
			assert_memory_equal(dst, in, n);
		}
	}
}

/* Every destination capacity below the needed one fails without writing
 * past it; the needed one succeeds; XMLW_ESCAPED_MAX is an upper bound. */
static void test_escape_space(void **state)
{
	static const char in[] = "ab&cd'\"\t\n\r<>xyz \xe2\x82\xac end";
	char dst[256];
	size_t n, need;

	(void)state;
	for (int attr = 0; attr < 2; attr++) {
		enum xmlw_status (*esc)(char *, size_t, const char *, size_t, size_t *) =
			attr ? xmlw_escape_attr : xmlw_escape_text;

		assert_int_equal(esc(dst, sizeof(dst), in, sizeof(in) - 1, &need), XMLW_OK);
		assert_true(need <= XMLW_ESCAPED_MAX(sizeof(in) - 1));
		for (size_t cap = 0; cap < need; cap++) {
			memset(dst, 0x5a, sizeof(dst));
			assert_int_equal(esc(dst, cap, in, sizeof(in) - 1, &n), XMLW_ERR_SPACE);
			for (size_t k = cap; k < sizeof(dst); k++)
				assert_int_equal((unsigned char)dst[k], 0x5a);
		}
		assert_int_equal(esc(dst, need, in, sizeof(in) - 1, &n), XMLW_OK);
		assert_int_equal(n, need);
	}

	/* The worst case reaches the bound exactly. */
	assert_int_equal(xmlw_escape_attr(dst, 6, "'", 1, &n), XMLW_OK);
	assert_int_equal(n, XMLW_ESCAPED_MAX(1));
}

/* The fast scan against the byte-at-a-time reference, with each special
 * byte at every offset around the eight-byte word boundaries. */
static void test_escape_matches_reference(void **state)
{
	static const char specials[] = "&<>'\"\t\n\r";
	char in[40], dst[512], ref[512];
	size_t n, r;

	(void)state;
	for (size_t len = 1; len < sizeof(in); len++) {
		for (size_t pos = 0; pos < len; pos++) {
			for (size_t s = 0; s < sizeof(specials) - 1; s++) {
				memset(in, 'a', len);
				in[pos] = specials[s];
				for (int attr = 0; attr < 2; attr++) {
					enum xmlw_status st = attr
						? xmlw_escape_attr(dst, sizeof(dst), in, len, &n)
						: xmlw_escape_text(dst, sizeof(dst), in, len, &n);
					assert_int_equal(st, XMLW_OK);
					r = ref_escape(ref, in, len, attr);
					assert_int_equal(n, r);
					assert_memory_equal(dst, ref, n);
				}
			}
		}
	}

	rng_state = 11;
	for (int i = 0; i < 5000; i++) {
		char big[1024], e1[6 * 1024], e2[6 * 1024];
		size_t len = random_valid(big, 24);

		assert_int_equal(xmlw_escape_text(e1, sizeof(e1), big, len, &n), XMLW_OK);
		r = ref_escape(e2, big, len, false);
		assert_int_equal(n, r);
		assert_memory_equal(e1, e2, n);
		assert_int_equal(xmlw_escape_attr(e1, sizeof(e1), big, len, &n), XMLW_OK);
		r = ref_escape(e2, big, len, true);
		assert_int_equal(n, r);
		assert_memory_equal(e1, e2, n);
	}
}

/* ---- round trip through expat ------------------------------------------ */

static void check_round_trip(const char *s, size_t len)
{
	struct xmlw w;
	struct parsed p;
	size_t n;

	xmlw_init(&w, out, sizeof(out));
	xmlw_start(&w, "r");
	xmlw_ns(&w, NULL, "urn:test");
	xmlw_attr(&w, "a", s, len);
	xmlw_text(&w, s, len);
	xmlw_end(&w);
	assert_int_equal(xmlw_finish(&w, &n), XMLW_OK);
	assert_true(expat_parse(out, n, &p));
	assert_int_equal(p.attr_len, len);
	assert_memory_equal(p.attr, s, len);
	assert_int_equal(p.text_len, len);
	assert_memory_equal(p.text, s, len);
}

static void test_round_trip_valid(void **state)
{
	char s[1024];

	(void)state;
	rng_state = 20240601;
	for (int i = 0; i < 5000; i++) {
		size_t len = random_valid(s, 40);

		check_round_trip(s, len);
	}
}

/* Random bytes, biased towards UTF-8 edge bytes: the writer must accept
 * exactly what the reference decoder calls valid, and what it accepts
 * must parse back unchanged. */
static void test_round_trip_random_bytes(void **state)
{
	static const uint8_t edge[] = {
		0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbe, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0,
		0xed, 0xee, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 'a', '&', '<', '>', '\'', '"',
		'\t', '\n', '\r', 0x01, 0x1f, 0x7f, ']',
	};
	uint8_t s[64];
	struct xmlw w;
	size_t n;
	int accepted = 0, rejected = 0;

	(void)state;
	rng_state = 42;
	for (int i = 0; i < 20000; i++) {
		size_t len = 0, pieces = rng_below(12);
		bool valid;
		enum xmlw_status st;

		/* Mostly valid characters, so that about half the strings are
		 * valid and the rest hold one or two faults. */
		for (size_t k = 0; k < pieces; k++) {
			uint32_t r = rng_below(20);

			if (r == 0)
				s[len++] = (uint8_t)rng();
			else if (r == 1)
				s[len++] = edge[rng_below(sizeof(edge))];
			else if (r < 8)
				s[len++] = edge[19 + rng_below(sizeof(edge) - 19)];
			else
				len += put_utf8((char *)s + len, (uint32_t)rng_below(0x110000));
		}
		valid = ref_valid(s, len);

		xmlw_init(&w, out, sizeof(out));
		xmlw_start(&w, "r");
		xmlw_attr(&w, "a", (const char *)s, len);
		xmlw_end(&w);
		st = xmlw_finish(&w, &n);
		assert_int_equal(st, valid ? XMLW_OK : XMLW_ERR_CHAR);

		xmlw_init(&w, out, sizeof(out));
		xmlw_start(&w, "r");
		xmlw_text(&w, (const char *)s, len);
		xmlw_end(&w);
		st = xmlw_finish(&w, &n);
		assert_int_equal(st, valid ? XMLW_OK : XMLW_ERR_CHAR);

		if (valid) {
			check_round_trip((const char *)s, len);
			accepted++;
		} else {
			rejected++;
		}
	}
	/* The bias must exercise both outcomes. */
	print_message("random bytes: %d accepted, %d rejected\n", accepted, rejected);
	assert_true(accepted > 4000);
	assert_true(rejected > 4000);
}

/* ---- overflow at every capacity ---------------------------------------- */

static void build_sample(struct xmlw *w)
{
	static const char fwd[] = "<body>forwarded &amp; verbatim</body>";

	xmlw_start(w, "iq");
	xmlw_attr_str(w, "from", "montague.example");
	xmlw_attr_str(w, "to", "romeo@montague.example/orchard");
	xmlw_attr_str(w, "id", "x'1\"&\t");
	xmlw_attr_str(w, "type", "error");
	xmlw_start(w, "query");
	xmlw_ns(w, NULL, "jabber:iq:roster");
	xmlw_start(w, "item");
	xmlw_attr_str(w, "jid", "caf\xc3\xa9@example.com");
	xmlw_end(w);
	xmlw_raw(w, fwd, sizeof(fwd) - 1);
	xmlw_end(w);
	xmlw_start(w, "error");
	xmlw_attr_str(w, "type", "cancel");
	xmlw_start(w, "item-not-found");
	xmlw_ns(w, NULL, "urn:ietf:params:xml:ns:xmpp-stanzas");
	xmlw_end(w);
	xmlw_start(w, "text");
	xmlw_ns(w, NULL, "urn:ietf:params:xml:ns:xmpp-stanzas");
	xmlw_attr_str(w, "xml:lang", "en");
	xmlw_text_str(w, "no <such> item & \xf0\x9f\x98\x80\r\n]]>");
	xmlw_end(w);
	xmlw_end(w);
	xmlw_end(w);
}

static void test_overflow_every_capacity(void **state)
{
	char full[2048], arena[2048 + 64];
	struct xmlw w;
	struct parsed p;
	size_t need, n;

	(void)state;
	xmlw_init(&w, full, sizeof(full));
	build_sample(&w);
	assert_int_equal(xmlw_finish(&w, &need), XMLW_OK);
	assert_true(expat_parse(full, need, &p));
	assert_int_equal(p.elements, 7);   /* the raw <body/> counts */

	for (size_t cap = 0; cap <= need; cap++) {
		memset(arena, 0xa5, sizeof(arena));
		xmlw_init(&w, arena, cap);
		build_sample(&w);
		n = 12345;
		if (cap < need) {
			assert_int_equal(xmlw_finish(&w, &n), XMLW_ERR_SPACE);
			assert_int_equal(n, 0);
			/* What got written is a prefix of the real output. */
			assert_true(w.len <= cap);
			assert_memory_equal(arena, full, w.len);
		} else {
			assert_int_equal(xmlw_finish(&w, &n), XMLW_OK);
			assert_int_equal(n, need);
			assert_memory_equal(arena, full, need);
		}
		for (size_t k = cap; k < sizeof(arena); k++)
			assert_int_equal((unsigned char)arena[k], 0xa5);
	}
}

/* The same for a stream header with features, left open. */
static void build_header(struct xmlw *w)
{
	xmlw_start(w, "stream:stream");
	xmlw_ns(w, NULL, "jabber:client");
	xmlw_ns(w, "stream", "http://etherx.jabber.org/streams");
	xmlw_attr_str(w, "version", "1.0");
	xmlw_start(w, "stream:features");
	xmlw_start(w, "bind");
	xmlw_ns(w, NULL, "urn:ietf:params:xml:ns:xmpp-bind");
	xmlw_end(w);
	xmlw_end(w);
}

static void test_overflow_open(void **state)
{
	char full[512], arena[512 + 64];
	struct xmlw w;
	size_t need, n;

	(void)state;
	xmlw_init(&w, full, sizeof(full));
	build_header(&w);
	assert_int_equal(xmlw_finish_open(&w, &need), XMLW_OK);

	for (size_t cap = 0; cap <= need; cap++) {
		memset(arena, 0xa5, sizeof(arena));
		xmlw_init(&w, arena, cap);
		build_header(&w);
		n = 12345;
		assert_int_equal(xmlw_finish_open(&w, &n), cap < need ? XMLW_ERR_SPACE : XMLW_OK);
		assert_int_equal(n, cap < need ? 0 : need);
		assert_memory_equal(arena, full, cap < need ? w.len : need);
		for (size_t k = cap; k < sizeof(arena); k++)
			assert_int_equal((unsigned char)arena[k], 0xa5);
	}
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(xmlw_strerror(XMLW_OK), "ok");
	assert_non_null(xmlw_strerror(XMLW_ERR_SPACE));
	assert_non_null(xmlw_strerror(XMLW_ERR_CHAR));
	assert_non_null(xmlw_strerror(XMLW_ERR_NESTING));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_element),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_prefixed_and_text),
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_several_top_level),
		cmocka_unit_test(test_stream_header),
		cmocka_unit_test(test_finish_open_needs_one),
		cmocka_unit_test(test_unclosed),
		cmocka_unit_test(test_misuse),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_rejected_control),
		cmocka_unit_test(test_sticky_after_failure),
		cmocka_unit_test(test_escape_each_special),
		cmocka_unit_test(test_writer_escapes),
		cmocka_unit_test(test_escape_controls),
		cmocka_unit_test(test_escape_utf8_edges),
		cmocka_unit_test(test_escape_space),
		cmocka_unit_test(test_escape_matches_reference),
		cmocka_unit_test(test_round_trip_valid),
		cmocka_unit_test(test_round_trip_random_bytes),
		cmocka_unit_test(test_overflow_every_capacity),
		cmocka_unit_test(test_overflow_open),
		cmocka_unit_test(test_strerror),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
