/* Unit tests for the streaming tokenizer (parser/xml.h), through its public
 * API only: framing fed whole, byte by byte and split at every position;
 * views of single stanzas; every rejection class with its exact stream
 * error; limits at and one past each bound; the forwarding rewrite.
 *
 * The connection harness below does what a real connection does with the
 * framer: it appends bytes, calls xml_frame until XML_AGAIN, validates each
 * item with xml_view_* and drops span.end bytes after every event by
 * compacting its buffer. In "move" mode every call gets an exact-size heap
 * copy, so a framer that keeps a pointer between calls or reads past len
 * trips ASan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "parser/simd.h"
#include "parser/xml.h"

#define STREAMS_NS "http://etherx.jabber.org/streams"
#define XML_NS_URI "http://www.w3.org/XML/1998/namespace"
#define XMLNS_URI  "http://www.w3.org/2000/xmlns/"

#define HDR "<stream:stream xmlns='jabber:client' xmlns:stream='" STREAMS_NS "' to='example.com' version='1.0'>"
#define HDR_DB "<stream:stream xmlns='jabber:server' xmlns:stream='" STREAMS_NS "' xmlns:db='jabber:server:dialback' to='b.example' from='a.example' version='1.0'>"
#define CLOSE "</stream:stream>"

#define NWF XML_ERR_NOT_WELL_FORMED
#define RXML XML_ERR_RESTRICTED_XML
#define BADPFX XML_ERR_BAD_NAMESPACE_PREFIX
#define ENC XML_ERR_UNSUPPORTED_ENCODING

#define TOK_CAP   4096
#define NS_CAP    128
#define SCOPE_CAP 1024

static struct xml_token toks[TOK_CAP];
static struct xml_ns nss[NS_CAP];
static uint16_t scope_slots[SCOPE_CAP];

/* The shared view and the context of HDR, rebuilt by view_reset. */
static struct xml_view V;
static struct xml_nsctx CTX;
static struct xml_limits LIM;

static const char *err_name(enum xml_error e)
{
	switch (e) {
	case XML_ERR_NONE:                 return "none";
	case XML_ERR_NOT_WELL_FORMED:      return "not-well-formed";
	case XML_ERR_RESTRICTED_XML:       return "restricted-xml";
	case XML_ERR_INVALID_NAMESPACE:    return "invalid-namespace";
	case XML_ERR_BAD_NAMESPACE_PREFIX: return "bad-namespace-prefix";
	case XML_ERR_BAD_FORMAT:           return "bad-format";
	case XML_ERR_UNSUPPORTED_ENCODING: return "unsupported-encoding";
	case XML_ERR_POLICY_VIOLATION:     return "policy-violation";
	}
	return "?";
}

static void view_init_lim(const struct xml_limits *lim)
{
	xml_view_init(&V, lim, toks, TOK_CAP, nss, NS_CAP, scope_slots, SCOPE_CAP);
}

static int header_into(struct xml_nsctx *ctx, const char *hdr)
{
	memset(ctx, 0, sizeof(*ctx));
	return xml_view_header(&V, ctx, hdr, strlen(hdr));
}

static void view_reset(void)
{
	xml_limits_default(&LIM);
	view_init_lim(&LIM);
	assert_int_equal(header_into(&CTX, HDR), 0);
}

static int build_with(const struct xml_nsctx *ctx, const char *s)
{
	return xml_view_build(&V, ctx, s, strlen(s));
}

static int build(const char *s)
{
	return build_with(&CTX, s);
}

/* Build and require success, printing the error when it fails. */
#define BUILD_OK(s) do { \
	int rc_ = build(s); \
	if (rc_ != 0) \
		print_error("build failed: %s at %u in %s\n", err_name(V.err), V.err_off, (s)); \
	assert_int_equal(rc_, 0); \
} while (0)

#define BUILD_ERR(s, e) do { \
	int rc_ = build(s); \
	if (rc_ != -1 || V.err != (e)) \
		print_error("want %s, got rc %d %s: %s\n", err_name(e), rc_, rc_ ? err_name(V.err) : "", (s)); \
	assert_int_equal(rc_, -1); \
	assert_int_equal(V.err, (e)); \
} while (0)

/* NUL-terminated copies of slices, for assert_string_equal. */
static char strbuf[8][4096];
static int strbuf_next;

static const char *slice_str(struct xml_slice s)
{
	char *p = strbuf[strbuf_next++ & 7];
	assert_true(s.len < sizeof(strbuf[0]));
	memcpy(p, s.ptr, s.len);
	p[s.len] = '\0';
	return p;
}

static const char *qname(uint32_t t) { return slice_str(xml_tok_qname(&V, t)); }
static const char *local(uint32_t t) { return slice_str(xml_tok_local(&V, t)); }
static const char *nsuri(uint32_t t) { return slice_str(xml_tok_ns(&V, t)); }

static const char *value(uint32_t t)
{
	static char dst[4096];
	struct xml_slice raw = xml_tok_raw(&V, t);
	assert_true(raw.len < sizeof(dst));
	return slice_str(xml_tok_value(&V, t, dst));
}

/* The first token of a type with this qualified name, searching from `from`. */
static uint32_t find_tok(uint32_t from, int type, const char *qn)
{
	for (uint32_t i = from; i < V.ntok; i++)
		if (V.tok[i].type == type && (type == XML_TOK_TEXT || xml_slice_eq(xml_tok_qname(&V, i), qn)))
			return i;
	print_error("no token %d %s\n", type, qn ? qn : "(text)");
	fail();
	return XML_NO_TOK;
}

static uint32_t body_text(const char *s);

static void dump_view(void)
{
	for (uint32_t i = 0; i < V.ntok; i++) {
		const struct xml_token *k = &V.tok[i];
		print_message("%3u type %u flags %u ns %u prefix %u nattr %u off %u len %u a %u b %u  %.*s\n",
			      i, k->type, k->flags, k->ns, k->prefix, k->nattr, k->off, k->len, k->a, k->b,
			      (int)k->len, V.base + k->off);
	}
}

/* ---- connection harness ----------------------------------------------- */

#define CONN_CAP (1u << 16)

struct conn {
	struct xml_framer f;
	struct xml_limits lim;
	char *buf;
	size_t len;
	bool move;             /* exact-size heap copy per call */
	struct xml_nsctx ctx;
	bool have_ctx;
	enum xml_error err;    /* first error of any layer; the stream is dead after it */
	char where;            /* 'F' framer, 'H' header view, 'B' stanza view, 'C' close check */
	char *log;
	size_t loglen;
};

static void conn_init(struct conn *c, const struct xml_limits *lim, bool move)
{
	memset(c, 0, sizeof(*c));
	if (lim)
		c->lim = *lim;
	else
		xml_limits_default(&c->lim);
	xml_framer_init(&c->f, &c->lim);
	view_init_lim(&c->lim);
	c->buf = malloc(CONN_CAP);
	c->log = malloc(CONN_CAP * 2);
	assert_non_null(c->buf);
	assert_non_null(c->log);
	c->log[0] = '\0';
	c->move = move;
}

static void conn_free(struct conn *c)
{
	free(c->buf);
	free(c->log);
}

static void conn_log(struct conn *c, char kind, const char *p, size_t n)
{
	assert_true(c->loglen + n + 3 < CONN_CAP * 2);
	c->log[c->loglen++] = kind;
	memcpy(c->log + c->loglen, p, n);
	c->loglen += n;
	c->log[c->loglen++] = '\n';
	c->log[c->loglen] = '\0';
}

static void conn_fail(struct conn *c, char where, enum xml_error e)
{
	const char *name = err_name(e);
	c->err = e;
	c->where = where;
	conn_log(c, where, name, strlen(name));
}

static bool is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static void conn_drop(struct conn *c, size_t n)
{
	assert_true(n <= c->len);
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
}

static enum xml_event conn_frame(struct conn *c, struct xml_span *sp)
{
	enum xml_event ev;

	sp->start = sp->end = 0xdeadbeef;
	if (!c->move)
		return xml_frame(&c->f, c->buf, c->len, sp);
	char *copy = malloc(c->len ? c->len : 1);
	assert_non_null(copy);
	memcpy(copy, c->buf, c->len);
	ev = xml_frame(&c->f, copy, c->len, sp);
	/* Items are validated from c->buf, which holds the same bytes. */
	memset(copy, 'X', c->len);
	free(copy);
	return ev;
}

/* Run the framer over what is buffered until it needs more bytes. */
static void conn_run(struct conn *c)
{
	while (c->err == XML_ERR_NONE) {
		struct xml_span sp;
		enum xml_event ev = conn_frame(c, &sp);
		const char *item;
		size_t n;

		if (ev == XML_ERROR) {
			enum xml_error e = (enum xml_error)c->f.err;
			assert_int_not_equal(e, XML_ERR_NONE);
			conn_fail(c, 'F', e);
			/* Sticky: whatever comes next, the framer keeps failing. */
			if (sp.end <= c->len)
				conn_drop(c, sp.end);
			assert_true(c->len + 10 < CONN_CAP);
			memcpy(c->buf + c->len, "<message/>", 10);
			c->len += 10;
			assert_int_equal(conn_frame(c, &sp), XML_ERROR);
			assert_int_equal(c->f.err, e);
			assert_int_equal(conn_frame(c, &sp), XML_ERROR);
			assert_int_equal(c->f.err, e);
			return;
		}
		assert_true(sp.start <= sp.end);
		assert_true(sp.end <= c->len);
		/* Only whitespace may be dropped without being part of an item. */
		size_t skip = ev == XML_AGAIN ? sp.end : sp.start;
		for (size_t i = 0; i < skip; i++)
			assert_true(is_ws(c->buf[i]));
		item = c->buf + sp.start;
		n = sp.end - sp.start;
		switch (ev) {
		case XML_AGAIN:
			conn_drop(c, sp.end);
			return;
		case XML_STREAM_OPEN:
			conn_log(c, 'O', item, n);
			memset(&c->ctx, 0, sizeof(c->ctx));
			if (xml_view_header(&V, &c->ctx, item, n) != 0) {
				conn_fail(c, 'H', V.err);
				return;
			}
			assert_int_equal(V.tok[0].type, XML_TOK_ELEM);
			c->have_ctx = true;
			break;
		case XML_STANZA:
			conn_log(c, 'S', item, n);
			assert_true(c->have_ctx);
			if (xml_view_build(&V, &c->ctx, item, n) != 0) {
				conn_fail(c, 'B', V.err);
				return;
			}
			assert_int_equal(V.len, n);
			assert_ptr_equal(V.base, item);
			assert_int_equal(V.tok[0].type, XML_TOK_ELEM);
			assert_int_equal(V.tok[V.ntok - 1].type, XML_TOK_END);
			break;
		case XML_STREAM_CLOSE: {
			conn_log(c, 'C', item, n);
			assert_true(c->have_ctx);
			enum xml_error e = xml_check_close(&c->ctx, item, n);
			if (e != XML_ERR_NONE) {
				conn_fail(c, 'C', e);
				return;
			}
			break;
		}
		default:
			fail_msg("unknown event %d", (int)ev);
		}
		conn_drop(c, sp.end);
	}
}

static void conn_feed(struct conn *c, const char *p, size_t n)
{
	if (c->err != XML_ERR_NONE)
		return;
	assert_true(c->len + n <= CONN_CAP);
	memcpy(c->buf + c->len, p, n);
	c->len += n;
	conn_run(c);
}

/* How the input is cut into reads. */
enum plan { WHOLE, BYTES, SPLIT, RANDOM };

static void conn_feed_plan(struct conn *c, const char *p, size_t n, enum plan plan, size_t arg)
{
	size_t off = 0;

	switch (plan) {
	case WHOLE:
		conn_feed(c, p, n);
		break;
	case BYTES:
		for (off = 0; off < n; off++)
			conn_feed(c, p + off, 1);
		break;
	case SPLIT:
		conn_feed(c, p, arg);
		conn_feed(c, p + arg, n - arg);
		break;
	case RANDOM: {
		uint32_t x = (uint32_t)arg * 2654435761u + 1;
		while (off < n) {
			x ^= x << 13; x ^= x >> 17; x ^= x << 5;
			size_t k = 1 + x % 23;
			if (k > n - off)
				k = n - off;
			conn_feed(c, p + off, k);
			off += k;
		}
		break;
	}
	}
}

struct outcome {
	char log[CONN_CAP];
	enum xml_error err;
	char where;
	size_t left;
};

static struct outcome out_whole, out_other;

static void run_plan(struct outcome *o, const char *in, size_t n, const struct xml_limits *lim,
		     enum plan plan, size_t arg, bool move)
{
	struct conn c;

	conn_init(&c, lim, move);
	conn_feed_plan(&c, in, n, plan, arg);
	assert_true(c.loglen < sizeof(o->log));
	memcpy(o->log, c.log, c.loglen + 1);
	o->err = c.err;
	o->where = c.where;
	o->left = c.len;
	conn_free(&c);
}

static void same_log(const struct outcome *want, const struct outcome *got, const char *how, size_t arg)
{
	if (strcmp(want->log, got->log) != 0) {
		print_error("%s %zu: log differs\n--- whole:\n%s--- this:\n%s", how, arg, want->log, got->log);
		fail();
	}
	assert_int_equal(want->err, got->err);
	assert_int_equal(want->where, got->where);
}

/* Every way of cutting the input must give the same items and outcome. */
static void check_cuts(const char *in, size_t n, const struct xml_limits *lim, bool every_split)
{
	run_plan(&out_whole, in, n, lim, WHOLE, 0, false);
	run_plan(&out_other, in, n, lim, WHOLE, 0, true);
	same_log(&out_whole, &out_other, "whole/move", 0);
	run_plan(&out_other, in, n, lim, BYTES, 0, false);
	same_log(&out_whole, &out_other, "bytes", 0);
	run_plan(&out_other, in, n, lim, BYTES, 0, true);
	same_log(&out_whole, &out_other, "bytes/move", 0);
	if (every_split)
		for (size_t k = 1; k < n; k++) {
			run_plan(&out_other, in, n, lim, SPLIT, k, (k & 1) != 0);
			same_log(&out_whole, &out_other, "split", k);
		}
	for (size_t seed = 1; seed <= 8; seed++) {
		run_plan(&out_other, in, n, lim, RANDOM, seed, (seed & 1) != 0);
		same_log(&out_whole, &out_other, "random", seed);
	}
}

/* A well-formed input: the expected log, every cut agreeing, nothing left. */
static void check_stream(const char *in, size_t n, const char *want_log)
{
	check_cuts(in, n, NULL, true);
	if (strcmp(out_whole.log, want_log) != 0) {
		print_error("--- want:\n%s--- got:\n%s", want_log, out_whole.log);
		fail();
	}
	assert_int_equal(out_whole.err, XML_ERR_NONE);
	assert_int_equal(out_whole.left, 0);
}

#define CHECK_STREAM(in, want) check_stream((in), sizeof(in) - 1, (want))

/* A rejected input: the exact error, from the framer when framer_level. */
static void check_reject(const char *in, size_t n, const struct xml_limits *lim,
			 enum xml_error want, bool framer_level)
{
	check_cuts(in, n, lim, n < 600);
	if (out_whole.err != want || (framer_level && out_whole.where != 'F')) {
		print_error("want %s%s, got %s from %c\n--- input:\n%.*s\n--- log:\n%s",
			    err_name(want), framer_level ? " from the framer" : "",
			    err_name(out_whole.err), out_whole.where ? out_whole.where : '-',
			    (int)n, in, out_whole.log);
		fail();
	}
}

/* ---- setup ------------------------------------------------------------ */

static int group_setup(void **state)
{
	(void)state;
	simd_init();
	return 0;
}

static int test_setup(void **state)
{
	(void)state;
	simd_set_level(simd_detect());
	view_reset();
	return 0;
}

#define T(fn) cmocka_unit_test_setup(fn, test_setup)

/* ---- framing ---------------------------------------------------------- */

static void test_limits_default(void **state)
{
	struct xml_limits lim;

	(void)state;
	memset(&lim, 0xff, sizeof(lim));
	xml_limits_default(&lim);
	assert_int_equal(lim.max_stanza, XML_DEFAULT_MAX_STANZA);
	assert_int_equal(lim.max_depth, XML_DEFAULT_MAX_DEPTH);
	assert_int_equal(lim.max_attrs, XML_DEFAULT_MAX_ATTRS);
	assert_int_equal(lim.max_ns, XML_DEFAULT_MAX_NS);
}

static void test_error_condition_names(void **state)
{
	(void)state;
	assert_null(xml_error_condition(XML_ERR_NONE));
	assert_string_equal(xml_error_condition(XML_ERR_NOT_WELL_FORMED), "not-well-formed");
	assert_string_equal(xml_error_condition(XML_ERR_RESTRICTED_XML), "restricted-xml");
	assert_string_equal(xml_error_condition(XML_ERR_INVALID_NAMESPACE), "invalid-namespace");
	assert_string_equal(xml_error_condition(XML_ERR_BAD_NAMESPACE_PREFIX), "bad-namespace-prefix");
	assert_string_equal(xml_error_condition(XML_ERR_BAD_FORMAT), "bad-format");
	assert_string_equal(xml_error_condition(XML_ERR_UNSUPPORTED_ENCODING), "unsupported-encoding");
	assert_string_equal(xml_error_condition(XML_ERR_POLICY_VIOLATION), "policy-violation");
}

static void test_frame_header_plain(void **state)
{
	(void)state;
	CHECK_STREAM(HDR, "O" HDR "\n");
}

static void test_frame_header_decl_single_quotes(void **state)
{
	(void)state;
	CHECK_STREAM("<?xml version='1.0'?>" HDR, "O<?xml version='1.0'?>" HDR "\n");
}

static void test_frame_header_decl_double_quotes(void **state)
{
	(void)state;
	CHECK_STREAM("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" HDR,
		     "O<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" HDR "\n");
}

/* Quotes of either kind around '>' and '/' inside the header's attributes. */
#define HDR_ODD "<stream:stream\n xmlns=\"jabber:client\"\txmlns:stream='" STREAMS_NS "' id=\"a>b'/\" from='c>\"/>' version='1.0' >"

static void test_frame_header_odd_attrs(void **state)
{
	(void)state;
	CHECK_STREAM("<?xml version='1.0' encoding='utf-8'?>" HDR_ODD,
		     "O<?xml version='1.0' encoding='utf-8'?>" HDR_ODD "\n");
}

#define ST_MSG   "<message to='juliet@example.com' from='romeo@example.net/orchard' type='chat' id='m1'><body>Hi &amp; &lt;bye&gt; &#x263A; &#9786;</body></message>"
#define ST_PRES  "<presence/>"
#define ST_IQ    "<iq type='get' id='q>1/'><query xmlns='jabber:iq:roster' ver=\"it's\"/></iq>"
#define ST_CDATA "<message id='/>'><body><![CDATA[a<b>c]] </message> <!-- x --> &amp; ]]]></body><x xmlns='urn:x' a='\"' b=\"'\" c='&apos;&quot;'/></message>"
#define ST_WS    "<message\n  to = 'x'\tid=\"y\"\r\n><body >text > more ]] x]</body ><empty /></message >"
#define ST_DEEP  "<iq type='result' id='d'><a xmlns='urn:a'><b><c><d/></c><c/></b>t<b/></a></iq>"
#define ST_FEAT  "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
#define ST_ATTR_GT "<presence from='a' to=\"b\" id='x>y' status='/'/>"

static void test_frame_stanzas(void **state)
{
	(void)state;
	CHECK_STREAM(HDR ST_MSG " \n\t " ST_PRES ST_IQ "\n" ST_CDATA ST_WS "\r\n" ST_DEEP ST_FEAT ST_ATTR_GT " " CLOSE,
		     "O" HDR "\n"
		     "S" ST_MSG "\n"
		     "S" ST_PRES "\n"
		     "S" ST_IQ "\n"
		     "S" ST_CDATA "\n"
		     "S" ST_WS "\n"
		     "S" ST_DEEP "\n"
		     "S" ST_FEAT "\n"
		     "S" ST_ATTR_GT "\n"
		     "C" CLOSE "\n");
}

/* Without an XML declaration the prolog may start with whitespace. */
static void test_frame_header_leading_whitespace(void **state)
{
	(void)state;
	CHECK_STREAM("\r\n  " HDR ST_PRES, "O" HDR "\nS" ST_PRES "\n");
}

static void test_frame_with_decl_and_close(void **state)
{
	(void)state;
	CHECK_STREAM("<?xml version='1.0'?>\n" HDR "\n" ST_PRES "\n" CLOSE,
		     "O<?xml version='1.0'?>\n" HDR "\n" "S" ST_PRES "\n" "C" CLOSE "\n");
}

static void test_frame_close_right_after_header(void **state)
{
	(void)state;
	CHECK_STREAM(HDR CLOSE, "O" HDR "\nC" CLOSE "\n");
	CHECK_STREAM(HDR " \n" "</stream:stream >", "O" HDR "\nC</stream:stream >\n");
}

/* Every byte of the stanza fed as its own read still finds one item, and
 * each partial read asks for more without dropping any of it. */
static void test_frame_partial_keeps_bytes(void **state)
{
	struct conn c;
	struct xml_span sp;
	static const char st[] = ST_MSG;

	(void)state;
	conn_init(&c, NULL, false);
	conn_feed(&c, HDR, sizeof(HDR) - 1);
	assert_int_equal(c.len, 0);
	for (size_t i = 0; i + 1 < sizeof(st) - 1; i++) {
		c.buf[c.len++] = st[i];
		assert_int_equal(xml_frame(&c.f, c.buf, c.len, &sp), XML_AGAIN);
		assert_int_equal(sp.end, 0);
	}
	c.buf[c.len++] = st[sizeof(st) - 2];
	assert_int_equal(xml_frame(&c.f, c.buf, c.len, &sp), XML_STANZA);
	assert_int_equal(sp.start, 0);
	assert_int_equal(sp.end, sizeof(st) - 1);
	conn_free(&c);
}

/* Whitespace keepalives: no event, and span.end drops them at once. */
static void test_frame_keepalive(void **state)
{
	struct conn c;
	struct xml_span sp;

	(void)state;
	conn_init(&c, NULL, false);
	conn_feed(&c, HDR, sizeof(HDR) - 1);
	assert_int_equal(c.len, 0);
	memcpy(c.buf, " \n\t ", 4);
	c.len = 4;
	assert_int_equal(xml_frame(&c.f, c.buf, c.len, &sp), XML_AGAIN);
	assert_int_equal(sp.end, 4);
	c.len = 0;
	c.buf[c.len++] = ' ';
	assert_int_equal(xml_frame(&c.f, c.buf, c.len, &sp), XML_AGAIN);
	assert_int_equal(sp.end, 1);
	c.len = 0;
	memcpy(c.buf, "\r\n" ST_PRES, 2 + sizeof(ST_PRES) - 1);
	c.len = 2 + sizeof(ST_PRES) - 1;
	assert_int_equal(xml_frame(&c.f, c.buf, c.len, &sp), XML_STANZA);
	assert_int_equal(sp.start, 2);
	assert_int_equal(sp.end, c.len);
	conn_free(&c);
}

/* After the stream is closed the framer swallows whatever follows. */
static void test_frame_after_close(void **state)
{
	struct conn c;
	struct xml_span sp;

	(void)state;
	conn_init(&c, NULL, false);
	conn_feed(&c, HDR CLOSE, sizeof(HDR CLOSE) - 1);
	assert_int_equal(c.err, XML_ERR_NONE);
	assert_int_equal(c.len, 0);
	memcpy(c.buf, "junk<message/>", 14);
	c.len = 14;
	assert_int_equal(xml_frame(&c.f, c.buf, c.len, &sp), XML_AGAIN);
	assert_int_equal(sp.end, 14);
	conn_free(&c);
}

/* Stream restart (RFC 6120 4.3.3): reset, drop the buffer, new header.
 * The new header may use another prefix, and the close must follow it. */
static void test_frame_restart(void **state)
{
	static const char hdr2[] = "<?xml version='1.0'?><foo:stream xmlns:foo='" STREAMS_NS "' xmlns='jabber:client' version='1.0'>";

	(void)state;
	for (int plan = WHOLE; plan <= BYTES; plan++) {
		struct conn c;
		conn_init(&c, NULL, plan == BYTES);
		conn_feed_plan(&c, HDR "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
			       sizeof(HDR "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>") - 1, (enum plan)plan, 0);
		assert_string_equal(c.log, "O" HDR "\nS<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n");
		xml_framer_reset(&c.f);
		c.len = 0;
		c.loglen = 0;
		c.log[0] = '\0';
		conn_feed_plan(&c, hdr2, sizeof(hdr2) - 1, (enum plan)plan, 0);
		conn_feed_plan(&c, ST_PRES "</foo:stream>", sizeof(ST_PRES "</foo:stream>") - 1, (enum plan)plan, 0);
		assert_string_equal(c.log, "O" "<?xml version='1.0'?><foo:stream xmlns:foo='" STREAMS_NS "' xmlns='jabber:client' version='1.0'>\n"
				    "S" ST_PRES "\nC</foo:stream>\n");
		assert_int_equal(c.err, XML_ERR_NONE);
		assert_int_equal(c.ctx.stream_prefix_len, 3);
		conn_free(&c);
	}
}

/* Reset in the middle of a stanza forgets the partial element. */
static void test_frame_reset_mid_stanza(void **state)
{
	struct conn c;

	(void)state;
	conn_init(&c, NULL, false);
	conn_feed(&c, HDR "<message><body>hal", sizeof(HDR "<message><body>hal") - 1);
	assert_string_equal(c.log, "O" HDR "\n");
	xml_framer_reset(&c.f);
	c.len = 0;
	c.loglen = 0;
	conn_feed(&c, HDR ST_PRES CLOSE, sizeof(HDR ST_PRES CLOSE) - 1);
	assert_string_equal(c.log, "O" HDR "\nS" ST_PRES "\nC" CLOSE "\n");
	assert_int_equal(c.len, 0);
	conn_free(&c);
}

/* The whole corpus again at each SIMD level the CPU has. */
static void test_frame_every_simd_level(void **state)
{
	(void)state;
	for (int l = SIMD_SCALAR; l <= SIMD_AVX512; l++) {
		if (simd_set_level((enum simd_level)l) != (enum simd_level)l)
			continue;
		test_frame_stanzas(state);
		test_frame_header_odd_attrs(state);
	}
	simd_set_level(simd_detect());
}

/* Stanzas long enough that the vector loops run many iterations, with
 * structural bytes at every offset modulo 64. */
static void test_frame_long_stanzas(void **state)
{
	static char in[40000], want[42000];
	size_t n = 0, w = 0;

	(void)state;
	n += (size_t)sprintf(in + n, "%s", HDR);
	w += (size_t)sprintf(want + w, "O%s\n", HDR);
	for (int pad = 0; pad < 70; pad++) {
		size_t s0 = n;
		n += (size_t)sprintf(in + n, "<message id='%*s'><body>", pad, "&amp;");
		for (int i = 0; i < pad; i++)
			in[n++] = (char)('a' + i % 26);
		n += (size_t)sprintf(in + n, "%s</body><x xmlns='urn:x' v=\"%*s\"/></message>",
				     pad & 1 ? "<![CDATA[<>]]>" : "&lt;", pad, "'/>");
		w += (size_t)sprintf(want + w, "S%.*s\n", (int)(n - s0), in + s0);
		if (pad % 3 == 0)
			in[n++] = ' ';
	}
	n += (size_t)sprintf(in + n, "%s", CLOSE);
	w += (size_t)sprintf(want + w, "C%s\n", CLOSE);
	for (int l = SIMD_SCALAR; l <= SIMD_AVX512; l++) {
		if (simd_set_level((enum simd_level)l) != (enum simd_level)l)
			continue;
		check_cuts(in, n, NULL, false);
		if (strcmp(out_whole.log, want) != 0) {
			print_error("--- want:\n%s--- got:\n%s", want, out_whole.log);
			fail();
		}
		assert_int_equal(out_whole.err, XML_ERR_NONE);
		assert_int_equal(out_whole.left, 0);
	}
	simd_set_level(simd_detect());
}

/* ---- views: header ---------------------------------------------------- */

/* The declaration in ctx with this prefix ("" for the default). */
static int ctx_find(const struct xml_nsctx *ctx, const char *prefix)
{
	for (int i = 0; i < ctx->n; i++)
		if (ctx->d[i].prefix_len == strlen(prefix) &&
		    memcmp(ctx->buf + ctx->d[i].prefix_off, prefix, strlen(prefix)) == 0)
			return i;
	return -1;
}

static void assert_ctx_uri(const struct xml_nsctx *ctx, const char *prefix, const char *uri)
{
	int i = ctx_find(ctx, prefix);
	if (i < 0)
		fail_msg("no declaration of prefix '%s'", prefix);
	assert_int_equal(ctx->d[i].uri_len, strlen(uri));
	assert_memory_equal(ctx->buf + ctx->d[i].uri_off, uri, strlen(uri));
	assert_true(ctx->d[i].uri_off + ctx->d[i].uri_len <= ctx->used);
	assert_true(ctx->used <= XML_NSCTX_BYTES);
}

static void test_view_header(void **state)
{
	static const char h[] = "<stream:stream xmlns='jabber:client' xmlns:stream='" STREAMS_NS "' to='example.com' xml:lang='en' version='1.0'>";
	struct xml_nsctx ctx;

	(void)state;
	assert_int_equal(header_into(&ctx, h), 0);
	assert_int_equal(V.tok[0].type, XML_TOK_ELEM);
	assert_string_equal(qname(0), "stream:stream");
	assert_string_equal(local(0), "stream");
	assert_int_equal(V.tok[0].prefix, 6);
	assert_string_equal(nsuri(0), STREAMS_NS);
	assert_int_equal(V.tok[0].nattr, 3);
	assert_int_equal(V.ntok, 4);
	for (uint32_t i = 1; i < 4; i++)
		assert_int_equal(V.tok[i].type, XML_TOK_ATTR);
	assert_string_equal(qname(1), "to");
	assert_string_equal(value(1), "example.com");
	assert_int_equal(V.tok[1].ns, XML_NS_NONE);
	assert_string_equal(qname(2), "xml:lang");
	assert_int_equal(V.tok[2].ns, XML_NS_XML);
	assert_int_equal(V.tok[2].prefix, 3);
	assert_string_equal(value(2), "en");
	assert_string_equal(value(3), "1.0");

	assert_int_equal(ctx.n, 2);
	assert_int_equal(ctx.stream_prefix_len, 6);
	assert_memory_equal(ctx.buf, "stream", 6);
	assert_ctx_uri(&ctx, "", "jabber:client");
	assert_ctx_uri(&ctx, "stream", STREAMS_NS);
}

static void test_view_header_variants(void **state)
{
	static const struct {
		const char *hdr;
		unsigned prefix_len;
		unsigned ndecl;
	} ok[] = {
		{ "<?xml version='1.0'?>" HDR, 6, 2 },
		{ "<?xml version=\"1.0\"?>" HDR, 6, 2 },
		{ "<?xml version='1.0' encoding='UTF-8'?>" HDR, 6, 2 },
		{ "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n" HDR, 6, 2 },
		/* Encoding names are case-insensitive (XML 1.0 4.3.3). */
		{ "<?xml version='1.0' encoding='utf-8'?>" HDR, 6, 2 },
		{ HDR_ODD, 6, 2 },
		{ HDR_DB, 6, 3 },
		{ "<foo:stream xmlns:foo='" STREAMS_NS "' xmlns='jabber:client'>", 3, 2 },
		{ "<stream xmlns='" STREAMS_NS "'>", 0, 1 },
		{ "<stream:stream xmlns:stream='" STREAMS_NS "'>", 6, 1 },
	};
	struct xml_nsctx ctx;

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int rc = header_into(&ctx, ok[i].hdr);
		if (rc != 0)
			print_error("%s: %s\n", ok[i].hdr, err_name(V.err));
		assert_int_equal(rc, 0);
		assert_string_equal(nsuri(0), STREAMS_NS);
		assert_string_equal(local(0), "stream");
		assert_int_equal(ctx.stream_prefix_len, ok[i].prefix_len);
		assert_int_equal(ctx.n, ok[i].ndecl);
	}
	assert_int_equal(header_into(&ctx, HDR_DB), 0);
	assert_ctx_uri(&ctx, "db", "jabber:server:dialback");
	assert_ctx_uri(&ctx, "", "jabber:server");
	assert_int_equal(header_into(&ctx, "<foo:stream xmlns:foo='" STREAMS_NS "' xmlns='jabber:client'>"), 0);
	assert_memory_equal(ctx.buf, "foo", 3);
	assert_ctx_uri(&ctx, "foo", STREAMS_NS);
}

static void test_view_header_rejects(void **state)
{
	static const struct {
		const char *hdr;
		enum xml_error err;
	} bad[] = {
		{ "<stream:stream xmlns:stream='urn:wrong'>", XML_ERR_INVALID_NAMESPACE },
		{ "<stream:stream xmlns='" STREAMS_NS "' xmlns:stream='jabber:client'>", XML_ERR_INVALID_NAMESPACE },
		{ "<stream:features xmlns:stream='" STREAMS_NS "'>", XML_ERR_INVALID_NAMESPACE },
		{ "<stream xmlns='jabber:client'>", XML_ERR_INVALID_NAMESPACE },
		{ "<streams xmlns='" STREAMS_NS "'>", XML_ERR_INVALID_NAMESPACE },
		{ "<?xml version='1.0' encoding='ISO-8859-1'?>" HDR, XML_ERR_UNSUPPORTED_ENCODING },
		{ "<?xml version=\"1.0\" encoding=\"UTF-16\"?>" HDR, XML_ERR_UNSUPPORTED_ENCODING },
		/* XMLDecl grammar: version first and required. */
		{ "<?xml encoding='UTF-8'?>" HDR, XML_ERR_NOT_WELL_FORMED },
		{ "<?xml encoding='UTF-8' version='1.0'?>" HDR, XML_ERR_NOT_WELL_FORMED },
		{ "<stream:stream xmlns:stream='" STREAMS_NS "' to='a\xC3(b'>", XML_ERR_UNSUPPORTED_ENCODING },
		{ "<stream:stream xmlns:stream='" STREAMS_NS "' to='a\x01" "b'>", XML_ERR_NOT_WELL_FORMED },
		{ "<stream:stream xmlns:stream='" STREAMS_NS "' to='a' to='b'>", XML_ERR_NOT_WELL_FORMED },
		{ "<stream:stream xmlns:stream='" STREAMS_NS "' to='&foo;'>", XML_ERR_RESTRICTED_XML },
		{ "<stream:stream xmlns:stream='" STREAMS_NS "' xmlns:p=''>", XML_ERR_NOT_WELL_FORMED },
		{ "<stream:stream xmlns:stream='" STREAMS_NS "' p:to='x'>", XML_ERR_BAD_NAMESPACE_PREFIX },
		/* More declarations than struct xml_nsctx holds: a limit. */
		{ "<stream:stream xmlns:stream='" STREAMS_NS "' xmlns='a' xmlns:b='b' xmlns:c='c' xmlns:d='d' xmlns:e='e' xmlns:f='f'>",
		  XML_ERR_POLICY_VIOLATION },
	};
	struct xml_nsctx ctx;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = header_into(&ctx, bad[i].hdr);
		if (rc != -1 || V.err != bad[i].err)
			print_error("%s: want %s got rc %d %s\n", bad[i].hdr, err_name(bad[i].err), rc, err_name(V.err));
		assert_int_equal(rc, -1);
		assert_int_equal(V.err, bad[i].err);
	}
	/* Six declarations fit. */
	assert_int_equal(header_into(&ctx, "<stream:stream xmlns:stream='" STREAMS_NS "' xmlns='a' xmlns:b='b' xmlns:c='c' xmlns:d='d' xmlns:e='e'>"), 0);
	assert_int_equal(ctx.n, 6);
}

static void test_check_close(void **state)
{
	struct xml_nsctx foo, dflt;

	(void)state;
	assert_int_equal(xml_check_close(&CTX, CLOSE, strlen(CLOSE)), XML_ERR_NONE);
	assert_int_equal(xml_check_close(&CTX, "</stream:stream \n>", 18), XML_ERR_NONE);
	assert_int_equal(xml_check_close(&CTX, "</foo:stream>", 13), XML_ERR_NOT_WELL_FORMED);
	assert_int_equal(xml_check_close(&CTX, "</stream>", 9), XML_ERR_NOT_WELL_FORMED);
	assert_int_equal(xml_check_close(&CTX, "</stream:streams>", 17), XML_ERR_NOT_WELL_FORMED);
	assert_int_equal(xml_check_close(&CTX, "</stream:strea>", 15), XML_ERR_NOT_WELL_FORMED);
	assert_int_equal(xml_check_close(&CTX, "</message>", 10), XML_ERR_NOT_WELL_FORMED);
	assert_int_equal(xml_check_close(&CTX, "</x:stream>", 11), XML_ERR_NOT_WELL_FORMED);

	assert_int_equal(header_into(&foo, "<foo:stream xmlns:foo='" STREAMS_NS "'>"), 0);
	assert_int_equal(xml_check_close(&foo, "</foo:stream>", 13), XML_ERR_NONE);
	assert_int_equal(xml_check_close(&foo, CLOSE, strlen(CLOSE)), XML_ERR_NOT_WELL_FORMED);
	assert_int_equal(xml_check_close(&foo, "</fo:stream>", 12), XML_ERR_NOT_WELL_FORMED);

	assert_int_equal(header_into(&dflt, "<stream xmlns='" STREAMS_NS "'>"), 0);
	assert_int_equal(xml_check_close(&dflt, "</stream>", 9), XML_ERR_NONE);
	assert_int_equal(xml_check_close(&dflt, CLOSE, strlen(CLOSE)), XML_ERR_NOT_WELL_FORMED);
}

/* ---- views: stanzas --------------------------------------------------- */

static void test_view_representative(void **state)
{
	static const char s[] = "<message to='juliet@example.com' id='m1' xmlns:x='urn:x' type='chat'>"
		"<body>Hi &amp; bye</body><x:data x:k='v' k2=\"w\"/><thread/></message>";

	(void)state;
	BUILD_OK(s);
	assert_ptr_equal(V.base, s);
	assert_int_equal(V.len, sizeof(s) - 1);
	if (V.ntok != 14)
		dump_view();
	assert_int_equal(V.ntok, 14);

	static const struct {
		int type;
		const char *qname;   /* or the raw text */
		int parent;          /* ELEM: parent index, -1 at top */
		int match;           /* ELEM: its END; END: its ELEM */
		unsigned nattr, prefix, flags;
	} want[] = {
		{ XML_TOK_ELEM, "message", -1, 13, 3, 0, 0 },
		{ XML_TOK_ATTR, "to",      0, 0, 0, 0, 0 },
		{ XML_TOK_ATTR, "id",      0, 0, 0, 0, 0 },
		{ XML_TOK_ATTR, "type",    0, 0, 0, 0, 0 },
		{ XML_TOK_ELEM, "body",    0, 6, 0, 0, 0 },
		{ XML_TOK_TEXT, "Hi &amp; bye", 0, 0, 0, 0, XML_TF_ESCAPED },
		{ XML_TOK_END,  "body",    0, 4, 0, 0, 0 },
		{ XML_TOK_ELEM, "x:data",  0, 10, 2, 1, XML_TF_EMPTY },
		{ XML_TOK_ATTR, "x:k",     0, 0, 0, 1, 0 },
		{ XML_TOK_ATTR, "k2",      0, 0, 0, 0, 0 },
		{ XML_TOK_END,  "x:data",  0, 7, 0, 1, XML_TF_EMPTY },
		{ XML_TOK_ELEM, "thread",  0, 12, 0, 0, XML_TF_EMPTY },
		{ XML_TOK_END,  "thread",  0, 11, 0, 0, XML_TF_EMPTY },
		{ XML_TOK_END,  "message", 0, 0, 0, 0, 0 },
	};
	for (uint32_t i = 0; i < 14; i++) {
		const struct xml_token *k = &V.tok[i];
		assert_int_equal(k->type, want[i].type);
		if (k->type == XML_TOK_TEXT) {
			assert_string_equal(slice_str(xml_tok_raw(&V, i)), want[i].qname);
		} else {
			assert_string_equal(qname(i), want[i].qname);
			assert_int_equal(k->prefix, want[i].prefix);
		}
		assert_int_equal(k->flags & (XML_TF_ESCAPED | XML_TF_CDATA | XML_TF_EMPTY), want[i].flags);
		if (k->type == XML_TOK_ELEM) {
			assert_int_equal(k->nattr, want[i].nattr);
			assert_int_equal(k->a, (uint32_t)want[i].match);
			assert_int_equal(k->b, want[i].parent < 0 ? XML_NO_TOK : (uint32_t)want[i].parent);
		}
		if (k->type == XML_TOK_END)
			assert_int_equal(k->a, (uint32_t)want[i].match);
	}
	/* An END names the same element as its ELEM. */
	assert_int_equal(V.tok[13].ns, V.tok[0].ns);
	assert_int_equal(V.tok[10].ns, V.tok[7].ns);

	uint16_t client = V.tok[0].ns;
	assert_true(client >= 2 && client < 2 + CTX.n);
	assert_string_equal(nsuri(0), "jabber:client");
	assert_int_equal(V.tok[4].ns, client);
	assert_int_equal(V.tok[11].ns, client);
	/* The stanza's own declaration follows the header's. */
	assert_int_equal(V.nns, 2 + CTX.n + 1);
	assert_int_equal(V.tok[7].ns, 2 + CTX.n);
	assert_string_equal(nsuri(7), "urn:x");
	assert_int_equal(V.ns[2 + CTX.n].prefix_len, 1);
	assert_memory_equal(V.ns[2 + CTX.n].prefix, "x", 1);
	assert_string_equal(local(7), "data");
	assert_int_equal(V.tok[8].ns, 2 + CTX.n);
	assert_string_equal(local(8), "k");
	/* Unprefixed attributes are in no namespace, whatever the default. */
	assert_int_equal(V.tok[1].ns, XML_NS_NONE);
	assert_int_equal(V.tok[9].ns, XML_NS_NONE);
	assert_int_equal(V.ns[XML_NS_NONE].uri_len, 0);
	assert_string_equal(slice_str((struct xml_slice){ V.ns[XML_NS_XML].uri, V.ns[XML_NS_XML].uri_len }), XML_NS_URI);

	assert_string_equal(value(1), "juliet@example.com");
	assert_string_equal(value(8), "v");
	assert_string_equal(value(9), "w");
	assert_string_equal(value(5), "Hi & bye");
	assert_string_equal(slice_str(xml_tok_raw(&V, 9)), "w");

	assert_int_equal(V.info.to, 1);
	assert_int_equal(V.info.id, 2);
	assert_int_equal(V.info.type, 3);
	assert_int_equal(V.info.from, XML_NO_TOK);
	assert_int_equal(V.info.lang, XML_NO_TOK);
	assert_int_equal(V.info.child, 4);
}

static void test_view_no_ctx(void **state)
{
	(void)state;
	assert_int_equal(build_with(NULL, "<message><body>x</body></message>"), 0);
	assert_int_equal(V.tok[0].ns, XML_NS_NONE);
	assert_int_equal(V.nns, 2);
	assert_int_equal(build_with(NULL, "<message xmlns='jabber:client'/>"), 0);
	assert_string_equal(nsuri(0), "jabber:client");
	assert_int_equal(V.tok[0].ns, 2);
	assert_int_equal(V.ntok, 2);
	assert_int_equal(V.tok[0].nattr, 0);
	assert_int_equal(build_with(NULL, "<stream:error/>"), -1);
	assert_int_equal(V.err, XML_ERR_BAD_NAMESPACE_PREFIX);
}

static void test_view_default_namespace(void **state)
{
	uint32_t t;

	(void)state;
	BUILD_OK("<message/>");
	assert_int_equal(V.ntok, 2);
	assert_string_equal(nsuri(0), "jabber:client");
	assert_int_equal(V.tok[0].flags & XML_TF_EMPTY, XML_TF_EMPTY);

	/* Redeclared by the stanza: applies to it and its children. */
	BUILD_OK("<message xmlns='jabber:server'><body/></message>");
	assert_string_equal(nsuri(0), "jabber:server");
	assert_int_equal(V.tok[0].ns, 2 + CTX.n);
	assert_int_equal(V.tok[0].nattr, 0);
	assert_int_equal(V.tok[1].ns, 2 + CTX.n);
	assert_null(V.ns[2 + CTX.n].prefix);
	assert_int_equal(V.ns[2 + CTX.n].prefix_len, 0);

	/* A declaration ends with its element. */
	BUILD_OK("<message><x xmlns='urn:a'><y/></x><z/></message>");
	assert_string_equal(nsuri(find_tok(0, XML_TOK_ELEM, "y")), "urn:a");
	assert_string_equal(nsuri(find_tok(0, XML_TOK_ELEM, "z")), "jabber:client");
	t = find_tok(0, XML_TOK_END, "x");
	assert_string_equal(nsuri(t), "urn:a");

	/* xmlns='' undeclares the default namespace. */
	BUILD_OK("<message><x xmlns=''><y/></x><z/></message>");
	assert_int_equal(V.tok[find_tok(0, XML_TOK_ELEM, "x")].ns, XML_NS_NONE);
	assert_int_equal(V.tok[find_tok(0, XML_TOK_ELEM, "y")].ns, XML_NS_NONE);
	assert_string_equal(nsuri(find_tok(0, XML_TOK_ELEM, "z")), "jabber:client");
}

static void test_view_prefixed_namespaces(void **state)
{
	struct xml_nsctx db;
	uint32_t a, b, c;

	(void)state;
	/* Rebinding a prefix in an inner element, then falling back. */
	BUILD_OK("<message xmlns:p='urn:1'><p:a><p:b xmlns:p='urn:2'/><p:c/></p:a></message>");
	a = find_tok(0, XML_TOK_ELEM, "p:a");
	b = find_tok(0, XML_TOK_ELEM, "p:b");
	c = find_tok(0, XML_TOK_ELEM, "p:c");
	assert_int_equal(V.tok[a].ns, 2 + CTX.n);
	assert_int_equal(V.tok[b].ns, 2 + CTX.n + 1);
	assert_int_equal(V.tok[c].ns, 2 + CTX.n);
	assert_string_equal(nsuri(b), "urn:2");
	assert_int_equal(V.tok[a].prefix, 1);
	assert_string_equal(local(a), "a");
	assert_int_equal(V.nns, 2 + CTX.n + 2);

	/* Declarations in document order after the header's. */
	BUILD_OK("<message xmlns:a='urn:a'><b xmlns='urn:b'/><c xmlns:c='urn:c' c:x='1'/></message>");
	assert_int_equal(V.nns, 2 + CTX.n + 3);
	assert_string_equal(slice_str((struct xml_slice){ V.ns[2 + CTX.n].uri, V.ns[2 + CTX.n].uri_len }), "urn:a");
	assert_string_equal(slice_str((struct xml_slice){ V.ns[3 + CTX.n].uri, V.ns[3 + CTX.n].uri_len }), "urn:b");
	assert_string_equal(slice_str((struct xml_slice){ V.ns[4 + CTX.n].uri, V.ns[4 + CTX.n].uri_len }), "urn:c");
	assert_int_equal(V.ns[4 + CTX.n].prefix_len, 1);
	assert_memory_equal(V.ns[4 + CTX.n].prefix, "c", 1);
	assert_int_equal(V.tok[find_tok(0, XML_TOK_ATTR, "c:x")].ns, 4 + CTX.n);

	/* A declaration binds the element's attributes before it too. */
	BUILD_OK("<message p:a='1' xmlns:p='urn:p'/>");
	assert_string_equal(nsuri(1), "urn:p");
	assert_int_equal(V.tok[0].nattr, 1);

	/* Declared on the header: db. */
	assert_int_equal(header_into(&db, HDR_DB), 0);
	assert_int_equal(build_with(&db, "<db:result from='a.example' to='b.example' type='valid' db:x='1'>key</db:result>"), 0);
	assert_string_equal(nsuri(0), "jabber:server:dialback");
	assert_string_equal(local(0), "result");
	assert_int_equal(V.tok[0].prefix, 2);
	assert_true(V.tok[0].ns >= 2 && V.tok[0].ns < 2 + db.n);
	assert_string_equal(nsuri(find_tok(0, XML_TOK_ATTR, "db:x")), "jabber:server:dialback");
	assert_string_equal(nsuri(find_tok(0, XML_TOK_END, "db:result")), "jabber:server:dialback");
	assert_int_equal(V.nns, 2 + db.n);
	/* ...and not on the other stream's header. */
	BUILD_ERR("<db:result from='a.example' to='b.example'>key</db:result>", XML_ERR_BAD_NAMESPACE_PREFIX);

	/* The stream prefix is in scope for top-level stream elements. */
	BUILD_OK("<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>");
	assert_string_equal(nsuri(0), STREAMS_NS);
	assert_int_equal(V.tok[0].prefix, 6);
	assert_string_equal(nsuri(find_tok(0, XML_TOK_ELEM, "required")), "urn:ietf:params:xml:ns:xmpp-tls");

	/* A view forgets the previous stanza's declarations. */
	BUILD_OK("<message xmlns:q='urn:q'><q:x/></message>");
	BUILD_ERR("<message><q:x/></message>", XML_ERR_BAD_NAMESPACE_PREFIX);
	BUILD_OK("<message><x xmlns='urn:q'/></message>");

	BUILD_OK("<message><body xml:lang='de'>x</body></message>");
	assert_int_equal(V.tok[find_tok(0, XML_TOK_ATTR, "xml:lang")].ns, XML_NS_XML);
}

/* The xml prefix is always bound; declaring it to its own URI is allowed
 * (Namespaces 1.0 section 3) and must not hide xml:lang from the router. */
static void test_view_xml_prefix_declared(void **state)
{
	(void)state;
	BUILD_OK("<message xmlns:xml='" XML_NS_URI "' xml:lang='de'/>");
	assert_int_equal(V.tok[0].nattr, 1);
	assert_string_equal(nsuri(1), XML_NS_URI);
	assert_int_equal(V.info.lang, 1);
	assert_int_equal(V.tok[1].ns, XML_NS_XML);
	assert_string_equal(value(xml_attr_find(&V, 0, "lang", XML_NS_URI)), "de");
}

/* The same, declared once on the stream header: every stanza of the
 * stream would lose its xml:lang. */
static void test_view_xml_prefix_declared_on_header(void **state)
{
	struct xml_nsctx ctx;

	(void)state;
	assert_int_equal(header_into(&ctx, "<stream:stream xmlns='jabber:client' xmlns:stream='" STREAMS_NS "' xmlns:xml='" XML_NS_URI "' xml:lang='en'>"), 0);
	assert_int_equal(V.tok[find_tok(0, XML_TOK_ATTR, "xml:lang")].ns, XML_NS_XML);
	assert_int_equal(build_with(&ctx, "<message xml:lang='de'><body>x</body></message>"), 0);
	assert_int_equal(V.info.lang, 1);
	assert_int_equal(V.tok[1].ns, XML_NS_XML);
}

/* Namespace URIs written with references are compared decoded. */
static void test_view_escaped_namespace_uris(void **state)
{
	(void)state;
	BUILD_OK("<message><x xmlns='urn:a&amp;b'/></message>");
	assert_string_equal(nsuri(find_tok(0, XML_TOK_ELEM, "x")), "urn:a&b");
	BUILD_ERR("<message xmlns:a='urn:x' xmlns:b='urn:&#120;' a:y='1' b:y='2'/>", NWF);
	BUILD_ERR("<message xmlns:p='&#x68;ttp://www.w3.org/XML/1998/namespace'/>", NWF);
}

/* Several long escaped URIs in one stanza: well-formed and within every
 * struct xml_limits bound, so accepted, each decoded in full. */
static void test_view_escaped_namespace_uris_long(void **state)
{
	static char st[1024], want[160];

	(void)state;
	size_t n = (size_t)sprintf(st, "<message>");
	for (int i = 0; i < 4; i++) {
		n += (size_t)sprintf(st + n, "<x xmlns='http://example.com/ns?a=%d&amp;b=", i);
		memset(st + n, 'z', 100);
		n += 100;
		n += (size_t)sprintf(st + n, "'/>");
	}
	sprintf(st + n, "</message>");
	BUILD_OK(st);
	uint32_t x = 1;
	for (int i = 0; i < 4; i++, x = xml_next_sibling(&V, x)) {
		int k = sprintf(want, "http://example.com/ns?a=%d&b=", i);
		memset(want + k, 'z', 100);
		want[k + 100] = '\0';
		assert_string_equal(nsuri(x), want);
	}
}

/* CDATA is never unescaped, but its line ends are normalised like any
 * other character data (XML 1.0 section 2.11). */
static void test_view_cdata_line_ends(void **state)
{
	char dst[64];

	(void)state;
	uint32_t t = body_text("<message><body><![CDATA[a&amp;\r\nb\rc]]></body></message>");
	assert_int_equal(V.tok[t].flags & XML_TF_CDATA, XML_TF_CDATA);
	assert_string_equal(slice_str(xml_tok_value(&V, t, dst)), "a&amp;\nb\nc");
	/* An empty section carries no characters. */
	BUILD_OK("<message><body><![CDATA[]]></body></message>");
	for (uint32_t i = 0; i < V.ntok; i++)
		if (V.tok[i].type == XML_TOK_TEXT)
			assert_int_equal(V.tok[i].len, 0);
}

/* Names and declarations longer than the fixed-width fields that hold
 * them must be refused, never truncated. */
static void test_view_oversized_fields(void **state)
{
	static char h[4096], st[70000 * 2 + 64];
	struct xml_nsctx ctx;
	size_t n;

	(void)state;
	/* Header URIs beyond XML_NSCTX_BYTES. */
	n = (size_t)sprintf(h, "<stream:stream xmlns:stream='%s' xmlns='urn:", STREAMS_NS);
	memset(h + n, 'u', 300);
	n += 300;
	sprintf(h + n, "'>");
	assert_int_equal(header_into(&ctx, h), -1);
	assert_int_equal(V.err, XML_ERR_POLICY_VIOLATION);
	/* A prefix longer than uint8_t prefix_len. */
	n = (size_t)sprintf(h, "<stream:stream xmlns:stream='%s' xmlns:", STREAMS_NS);
	memset(h + n, 'p', 300);
	n += 300;
	sprintf(h + n, "='u'>");
	assert_int_equal(header_into(&ctx, h), -1);
	assert_int_equal(V.err, XML_ERR_POLICY_VIOLATION);
	/* A stream prefix that does not fit the context. */
	n = (size_t)sprintf(h, "<");
	memset(h + n, 's', 300);
	n += 300;
	n += (size_t)sprintf(h + n, ":stream xmlns:");
	memset(h + n, 's', 300);
	n += 300;
	sprintf(h + n, "='%s'>", STREAMS_NS);
	assert_int_equal(header_into(&ctx, h), -1);
	assert_int_equal(V.err, XML_ERR_POLICY_VIOLATION);

	/* An element prefix longer than the token's uint16_t prefix field:
	 * either refused or indexed with the right local name. */
	n = (size_t)sprintf(st, "<");
	memset(st + n, 'p', 65540);
	n += 65540;
	n += (size_t)sprintf(st + n, ":x xmlns:");
	memset(st + n, 'p', 65540);
	n += 65540;
	sprintf(st + n, "='urn:p'/>");
	int rc = build(st);
	if (rc == 0) {
		assert_string_equal(local(0), "x");
		assert_string_equal(nsuri(0), "urn:p");
	}
}

/* The view is given exactly one element; anything else is malformed,
 * whatever the framer would have done with it. */
static void test_view_span_is_one_element(void **state)
{
	(void)state;
	BUILD_ERR("<message/><message/>", NWF);
	BUILD_ERR("<message/>x", NWF);
	BUILD_ERR("<message>", NWF);
	BUILD_ERR("<message><body>x</body>", NWF);
	BUILD_ERR("<message id='1", NWF);
	BUILD_ERR("<message><![CDATA[x</message>", NWF);
	BUILD_ERR("</message>", NWF);
	BUILD_ERR("x", NWF);
	assert_int_equal(xml_view_build(&V, &CTX, "", 0), -1);
	BUILD_OK("<message/>");
}

/* Duplicates are found however many attributes come between. */
static void test_view_duplicate_far_apart(void **state)
{
	char st[2048];

	(void)state;
	for (int dup = 0; dup <= 1; dup++) {
		size_t n = (size_t)sprintf(st, "<message xmlns:p='urn:p' xmlns:q='urn:p'");
		for (int i = 0; i < 58; i++)
			n += (size_t)sprintf(st + n, " a%d='%d'", i, i);
		n += (size_t)sprintf(st + n, " p:z='1' %s='2'/>", dup ? "q:z" : "r");
		if (dup) {
			BUILD_ERR(st, NWF);
		} else {
			BUILD_OK(st);
			assert_int_equal(V.tok[0].nattr, 60);
		}
	}
	BUILD_ERR("<message a0='1' a1='1' a2='1' a3='1' a4='1' a5='1' a6='1' a7='1' a8='1' a9='1' a0='2'/>", NWF);
}

static void test_view_stanza_info(void **state)
{
	uint32_t q;

	(void)state;
	BUILD_OK("<message to='a@b' from='c@d/r' type='chat' id='x1' xml:lang='en'><body>hi</body></message>");
	assert_string_equal(qname(V.info.to), "to");
	assert_string_equal(value(V.info.to), "a@b");
	assert_string_equal(value(V.info.from), "c@d/r");
	assert_string_equal(value(V.info.type), "chat");
	assert_string_equal(value(V.info.id), "x1");
	assert_string_equal(qname(V.info.lang), "xml:lang");
	assert_string_equal(value(V.info.lang), "en");
	assert_string_equal(qname(V.info.child), "body");
	assert_int_equal(V.tok[V.info.child].type, XML_TOK_ELEM);

	BUILD_OK("<presence/>");
	assert_int_equal(V.info.to, XML_NO_TOK);
	assert_int_equal(V.info.from, XML_NO_TOK);
	assert_int_equal(V.info.type, XML_NO_TOK);
	assert_int_equal(V.info.id, XML_NO_TOK);
	assert_int_equal(V.info.lang, XML_NO_TOK);
	assert_int_equal(V.info.child, XML_NO_TOK);

	BUILD_OK("<iq id='1' type='get' xml:lang='de' from='x' to='y'>text<query xmlns='jabber:iq:version'/><b/></iq>");
	q = find_tok(0, XML_TOK_ELEM, "query");
	assert_int_equal(V.info.child, q);
	assert_string_equal(nsuri(V.info.child), "jabber:iq:version");
	assert_string_equal(value(V.info.to), "y");
	assert_string_equal(value(V.info.from), "x");
	assert_string_equal(value(V.info.lang), "de");

	/* Only text below: no child element. Attributes of children don't count. */
	BUILD_OK("<message><![CDATA[x]]>y</message>");
	assert_int_equal(V.info.child, XML_NO_TOK);
	BUILD_OK("<message><x to='inner' id='i'/></message>");
	assert_int_equal(V.info.to, XML_NO_TOK);
	assert_int_equal(V.info.id, XML_NO_TOK);

	/* Namespaced 'to' and an unprefixed 'lang' are not the router's fields. */
	BUILD_OK("<message xmlns:p='urn:p' p:to='x' p:id='y' lang='en' p:lang='en'/>");
	assert_int_equal(V.info.to, XML_NO_TOK);
	assert_int_equal(V.info.id, XML_NO_TOK);
	assert_int_equal(V.info.lang, XML_NO_TOK);
}

static void test_view_attr_find(void **state)
{
	uint32_t body;

	(void)state;
	BUILD_OK("<message xmlns:p='urn:p' p:to='x' to='y' xml:lang='en'><body lang='b' xml:lang='fr'/></message>");
	assert_string_equal(value(xml_attr_find(&V, 0, "to", NULL)), "y");
	assert_string_equal(value(xml_attr_find(&V, 0, "to", "urn:p")), "x");
	assert_string_equal(value(xml_attr_find(&V, 0, "lang", XML_NS_URI)), "en");
	assert_int_equal(xml_attr_find(&V, 0, "lang", NULL), XML_NO_TOK);
	assert_int_equal(xml_attr_find(&V, 0, "to", "urn:q"), XML_NO_TOK);
	assert_int_equal(xml_attr_find(&V, 0, "from", NULL), XML_NO_TOK);
	assert_int_equal(xml_attr_find(&V, 0, "t", NULL), XML_NO_TOK);
	assert_int_equal(xml_attr_find(&V, 0, "too", NULL), XML_NO_TOK);
	/* xmlns declarations are not attributes. */
	assert_int_equal(xml_attr_find(&V, 0, "p", NULL), XML_NO_TOK);
	assert_int_equal(xml_attr_find(&V, 0, "p", XMLNS_URI), XML_NO_TOK);
	body = find_tok(0, XML_TOK_ELEM, "body");
	assert_string_equal(value(xml_attr_find(&V, body, "lang", NULL)), "b");
	assert_string_equal(value(xml_attr_find(&V, body, "lang", XML_NS_URI)), "fr");
	assert_int_equal(xml_attr_find(&V, body, "to", NULL), XML_NO_TOK);
}

static void test_view_children(void **state)
{
	uint32_t a, b, c, d;

	(void)state;
	BUILD_OK("<iq><a/>t<b><c/></b><![CDATA[x]]><d>y</d></iq>");
	a = find_tok(0, XML_TOK_ELEM, "a");
	b = find_tok(0, XML_TOK_ELEM, "b");
	c = find_tok(0, XML_TOK_ELEM, "c");
	d = find_tok(0, XML_TOK_ELEM, "d");
	assert_int_equal(xml_first_child(&V, 0), a);
	assert_int_equal(xml_next_sibling(&V, a), b);
	assert_int_equal(xml_next_sibling(&V, b), d);
	assert_int_equal(xml_next_sibling(&V, d), XML_NO_TOK);
	assert_int_equal(xml_first_child(&V, b), c);
	assert_int_equal(xml_next_sibling(&V, c), XML_NO_TOK);
	assert_int_equal(xml_first_child(&V, a), XML_NO_TOK);
	assert_int_equal(xml_first_child(&V, d), XML_NO_TOK);
	assert_int_equal(xml_next_sibling(&V, 0), XML_NO_TOK);
	assert_int_equal(V.tok[c].b, b);
	assert_int_equal(V.tok[d].b, 0);
	assert_int_equal(V.tok[V.tok[b].a].a, b);

	/* Children with attributes: the walk skips them. */
	BUILD_OK("<iq><a x='1' y='2'><z/></a><b q='1'/></iq>");
	a = find_tok(0, XML_TOK_ELEM, "a");
	b = find_tok(0, XML_TOK_ELEM, "b");
	assert_int_equal(xml_first_child(&V, 0), a);
	assert_int_equal(xml_next_sibling(&V, a), b);
	assert_string_equal(qname(xml_first_child(&V, a)), "z");
}

/* The TEXT token in a <body/>. */
static uint32_t body_text(const char *s)
{
	BUILD_OK(s);
	return find_tok(0, XML_TOK_TEXT, NULL);
}

static void test_view_text_values(void **state)
{
	static const struct {
		const char *stanza;
		const char *value;
		unsigned flags;
	} cases[] = {
		{ "<message><body>plain</body></message>", "plain", 0 },
		{ "<message><body>a\nb</body></message>", "a\nb", 0 },
		{ "<message><body>tab\there</body></message>", "tab\there", 0 },
		{ "<message><body>x > y ]] ]</body></message>", "x > y ]] ]", 0 },
		{ "<message><body>a&amp;b</body></message>", "a&b", XML_TF_ESCAPED },
		{ "<message><body>&lt;&gt;&amp;&apos;&quot;</body></message>", "<>&'\"", XML_TF_ESCAPED },
		{ "<message><body>&#65;&#x42;&#x1F600;&#xe9;&#233;&#x7FF;&#x800;</body></message>",
		  "AB\xF0\x9F\x98\x80\xC3\xA9\xC3\xA9\xDF\xBF\xE0\xA0\x80", XML_TF_ESCAPED },
		{ "<message><body>&#x10FFFF;&#xFFFD;&#x10000;&#0000065;&#x000041;</body></message>",
		  "\xF4\x8F\xBF\xBF\xEF\xBF\xBD\xF0\x90\x80\x80" "AA", XML_TF_ESCAPED },
		{ "<message><body>a\r\nb\rc\r</body></message>", "a\nb\nc\n", XML_TF_ESCAPED },
		{ "<message><body>a&#13;b&#10;c&#9;</body></message>", "a\rb\nc\t", XML_TF_ESCAPED },
		{ "<message><body>\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \x7F \xC2\x85</body></message>",
		  "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \x7F \xC2\x85", 0 },
		{ "<message><body><![CDATA[a&amp;<b>\"']]x]]></body></message>", "a&amp;<b>\"']]x", XML_TF_CDATA },
	};
	char dst[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint32_t t = body_text(cases[i].stanza);
		unsigned flags = V.tok[t].flags & (XML_TF_ESCAPED | XML_TF_CDATA);
		if (flags != cases[i].flags)
			print_error("%s: flags %u want %u\n", cases[i].stanza, flags, cases[i].flags);
		assert_int_equal(flags, cases[i].flags);
		struct xml_slice s = xml_tok_value(&V, t, dst);
		assert_string_equal(slice_str(s), cases[i].value);
		/* Borrowed when there is nothing to decode. */
		if (!(flags & XML_TF_ESCAPED))
			assert_ptr_equal(s.ptr, V.base + V.tok[t].off);
	}

	/* Text and CDATA are separate tokens, in order. */
	BUILD_OK("<message><body>a<![CDATA[<b>]]>c</body></message>");
	uint32_t t = find_tok(0, XML_TOK_TEXT, NULL);
	assert_string_equal(slice_str(xml_tok_raw(&V, t)), "a");
	assert_int_equal(V.tok[t + 1].type, XML_TOK_TEXT);
	assert_int_equal(V.tok[t + 1].flags & XML_TF_CDATA, XML_TF_CDATA);
	assert_string_equal(slice_str(xml_tok_raw(&V, t + 1)), "<b>");
	assert_int_equal(V.tok[t + 2].type, XML_TOK_TEXT);
	assert_string_equal(slice_str(xml_tok_raw(&V, t + 2)), "c");
	assert_int_equal(V.tok[t + 2].flags & XML_TF_CDATA, 0);
}

static void test_view_attr_values(void **state)
{
	static const struct {
		const char *stanza;
		const char *value;
		unsigned escaped;
	} cases[] = {
		{ "<message id='plain'/>", "plain", 0 },
		{ "<message id=\"it's\"/>", "it's", 0 },
		{ "<message id='say \"hi\"'/>", "say \"hi\"", 0 },
		{ "<message id='a>b/c]]>'/>", "a>b/c]]>", 0 },
		{ "<message id=''/>", "", 0 },
		{ "<message id='a&quot;b&apos;c&lt;&gt;&amp;'/>", "a\"b'c<>&", XML_TF_ESCAPED },
		{ "<message id='a\tb\nc\r\nd\re'/>", "a b c d e", XML_TF_ESCAPED },
		{ "<message id='x&#10;y&#9;z&#13;'/>", "x\ny\tz\r", XML_TF_ESCAPED },
		{ "<message id='&#x1F600;&#169;'/>", "\xF0\x9F\x98\x80\xC2\xA9", XML_TF_ESCAPED },
		{ "<message id='  spaced  '/>", "  spaced  ", 0 },
	};
	char dst[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		BUILD_OK(cases[i].stanza);
		assert_int_equal(V.tok[1].type, XML_TOK_ATTR);
		unsigned flags = V.tok[1].flags & XML_TF_ESCAPED;
		if (flags != cases[i].escaped)
			print_error("%s: escaped %u want %u\n", cases[i].stanza, flags, cases[i].escaped);
		assert_int_equal(flags, cases[i].escaped);
		struct xml_slice s = xml_tok_value(&V, 1, dst);
		assert_string_equal(slice_str(s), cases[i].value);
		if (!flags)
			assert_ptr_equal(s.ptr, V.base + V.tok[1].a);
	}
}

static void unescape_is(const char *src, bool attr, const char *want, size_t want_len)
{
	char dst[256];
	size_t n = strlen(src);

	memset(dst, 0x55, sizeof(dst));
	size_t got = xml_unescape(src, n, dst, attr);
	if (got != want_len || memcmp(dst, want, want_len) != 0)
		print_error("unescape(%s, %d): got %zu bytes '%.*s'\n", src, attr, got, (int)got, dst);
	assert_int_equal(got, want_len);
	assert_memory_equal(dst, want, want_len);
	assert_true(got <= n);
	/* Nothing written past the result's room. */
	assert_int_equal((unsigned char)dst[n], 0x55);
}

#define UNESCAPE_IS(src, attr, want) unescape_is((src), (attr), (want), sizeof(want) - 1)

static void test_unescape(void **state)
{
	(void)state;
	UNESCAPE_IS("", false, "");
	UNESCAPE_IS("plain", false, "plain");
	UNESCAPE_IS("&lt;&gt;&amp;&apos;&quot;", false, "<>&'\"");
	UNESCAPE_IS("&lt;&gt;&amp;&apos;&quot;", true, "<>&'\"");
	UNESCAPE_IS("&amp;lt;", false, "&lt;");
	UNESCAPE_IS("&#65;&#x41;&#x0041;", false, "AAA");
	UNESCAPE_IS("&#x7F;&#x80;&#x7FF;&#x800;&#xFFFD;", false, "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBD");
	UNESCAPE_IS("&#x10000;&#x1F600;&#1114111;", false, "\xF0\x90\x80\x80\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF");
	UNESCAPE_IS("a\r\nb\rc\nd", false, "a\nb\nc\nd");
	UNESCAPE_IS("a\r\nb\rc\nd\te", true, "a b c d e");
	UNESCAPE_IS("\r\r\n\n", false, "\n\n\n");
	UNESCAPE_IS("\r\r\n\n", true, "   ");
	UNESCAPE_IS("&#10;&#13;&#9;", true, "\n\r\t");
	UNESCAPE_IS("&#10;&#13;&#9;", false, "\n\r\t");
	UNESCAPE_IS("x\ty", false, "x\ty");
	UNESCAPE_IS("&#13;\n", false, "\r\n");
}

/* ---- forwarding rewrite ----------------------------------------------- */

struct attr_copy {
	char qname[64];
	char raw[256];
};

/* Attributes of the top element other than from and to in no namespace. */
static size_t other_attrs(struct attr_copy *out, size_t cap)
{
	size_t n = 0;

	for (uint32_t i = 1; i <= V.tok[0].nattr; i++) {
		assert_int_equal(V.tok[i].type, XML_TOK_ATTR);
		if (V.tok[i].ns == XML_NS_NONE &&
		    (xml_slice_eq(xml_tok_local(&V, i), "from") || xml_slice_eq(xml_tok_local(&V, i), "to")))
			continue;
		assert_true(n < cap);
		snprintf(out[n].qname, sizeof(out[n].qname), "%s", qname(i));
		snprintf(out[n].raw, sizeof(out[n].raw), "%s", slice_str(xml_tok_raw(&V, i)));
		n++;
	}
	return n;
}

static size_t join_iov(const struct iovec *iov, int n, char *dst, size_t cap)
{
	size_t len = 0;

	for (int i = 0; i < n; i++) {
		assert_true(len + iov[i].iov_len <= cap);
		memcpy(dst + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	return len;
}

/* The value of the top element's attribute in no namespace, or NULL. */
static const char *top_attr(const char *name)
{
	uint32_t t = xml_attr_find(&V, 0, name, NULL);
	return t == XML_NO_TOK ? NULL : value(t);
}

static void check_rewrite(const char *stanza, const char *from, const char *to, const char *tail)
{
	struct attr_copy before[16], after[16];
	struct xml_slice fs = { NULL, 0 }, ts = { NULL, 0 };
	struct iovec iov[XML_REWRITE_IOV];
	char scratch[1024], out[4096];
	char name[64];
	size_t nbefore, nafter, len;
	int n;

	BUILD_OK(stanza);
	snprintf(name, sizeof(name), "%s", qname(0));
	nbefore = other_attrs(before, 16);
	if (from)
		fs = (struct xml_slice){ from, (uint32_t)strlen(from) };
	if (to)
		ts = (struct xml_slice){ to, (uint32_t)strlen(to) };
	n = xml_view_rewrite(&V, from ? &fs : NULL, to ? &ts : NULL, scratch, sizeof(scratch), iov);
	assert_true(n >= 1 && n <= XML_REWRITE_IOV);
	len = join_iov(iov, n, out, sizeof(out) - 1);
	out[len] = '\0';

	int rc = build(out);
	if (rc != 0)
		print_error("rewritten stanza rejected (%s): %s\n", err_name(V.err), out);
	assert_int_equal(rc, 0);
	assert_string_equal(qname(0), name);
	if (from)
		assert_string_equal(top_attr("from"), from);
	else
		assert_null(top_attr("from"));
	if (to)
		assert_string_equal(top_attr("to"), to);
	else
		assert_null(top_attr("to"));
	/* The new attributes come right after the name, the rest unchanged. */
	uint32_t first_other = 1 + (from != NULL) + (to != NULL);
	if (from)
		assert_true(xml_attr_find(&V, 0, "from", NULL) < first_other);
	if (to)
		assert_true(xml_attr_find(&V, 0, "to", NULL) < first_other);
	nafter = other_attrs(after, 16);
	assert_int_equal(nafter, nbefore);
	for (size_t i = 0; i < nbefore; i++) {
		assert_string_equal(after[i].qname, before[i].qname);
		assert_string_equal(after[i].raw, before[i].raw);
	}
	size_t tl = strlen(tail);
	if (len < tl || memcmp(out + len - tl, tail, tl) != 0)
		print_error("rewritten stanza does not end in %s: %s\n", tail, out);
	assert_true(len >= tl && memcmp(out + len - tl, tail, tl) == 0);
}

static void test_rewrite(void **state)
{
	static const char *stanzas[][2] = {
		{ "<message to='old@x' from='old@y' type='chat' id='1'><body>hi</body></message>", "<body>hi</body></message>" },
		{ "<message type='chat' id='1'><body>hi</body></message>", "<body>hi</body></message>" },
		{ "<message from='f' id='1' to='t'>x</message>", ">x</message>" },
		{ "<message id='1' to='t'>x</message>", ">x</message>" },
		{ "<message from='f'>x</message>", ">x</message>" },
		{ "<presence to='x'/>", "/>" },
		{ "<presence/>", "/>" },
		{ "<presence type='unavailable' from='a' />", "/>" },
		{ "<iq xmlns:x='urn:x' x:from='keep' from='old' to='old2' id='q'/>", "/>" },
		{ "<message\n to='a'\n from=\"b\"\n id='c'\n>x</message>", ">x</message>" },
		{ "<message to='a/>' from=\"b'\">x</message>", ">x</message>" },
		{ "<message to='a'><forwarded from='keep-child' to='keep-child'/></message>",
		  "<forwarded from='keep-child' to='keep-child'/></message>" },
		{ "<message xml:lang='en' to='a&amp;b' from='c&#10;d'><body>&lt;</body></message>", "<body>&lt;</body></message>" },
	};
	static const char *pairs[][2] = {
		{ "me@a.example/r", "you@b.example" },
		{ "a'b&c<d\"e>", "&&''\"\"<<" },
		{ NULL, "to@only" },
		{ "from@only", NULL },
		{ NULL, NULL },
		{ "", "" },
		{ "\xC3\xA9@\xE2\x82\xAC/\xF0\x9F\x98\x80", "x" },
	};

	(void)state;
	for (size_t s = 0; s < sizeof(stanzas) / sizeof(stanzas[0]); s++)
		for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++)
			check_rewrite(stanzas[s][0], pairs[p][0], pairs[p][1], stanzas[s][1]);
}

/* Scratch smaller than needed: -1 and no write past its end; the
 * documented bound always suffices, even when every byte is escaped. */
static void test_rewrite_scratch(void **state)
{
	static const char st[] = "<message to='old' from='old' id='1'><body/></message>";
	static const char worst[] = "\"\"\"\"''''<<&&";
	struct xml_slice from = { worst, sizeof(worst) - 1 };
	struct xml_slice to = { "a@b", 3 };
	struct iovec iov[XML_REWRITE_IOV];
	size_t bound = 16 + 6 * (from.len + to.len);
	size_t need = 0;

	(void)state;
	BUILD_OK(st);
	for (size_t cap = 0; cap <= bound; cap++) {
		char *scratch = malloc(cap ? cap : 1);
		assert_non_null(scratch);
		int n = xml_view_rewrite(&V, &from, &to, scratch, cap, iov);
		if (n >= 0 && !need)
			need = cap;
		if (need)
			assert_true(n >= 1);
		else
			assert_int_equal(n, -1);
		free(scratch);
	}
	assert_true(need > 0 && need <= bound);
	/* Far too small, with only one side named. */
	char tiny[4];
	assert_int_equal(xml_view_rewrite(&V, &from, NULL, tiny, sizeof(tiny), iov), -1);
	assert_int_equal(xml_view_rewrite(&V, NULL, &to, tiny, 1, iov), -1);
}

/* ---- rejections ------------------------------------------------------- */

struct reject {
	const char *hdr;       /* NULL: HDR */
	const char *body;
	size_t body_len;       /* 0: strlen */
	enum xml_error err;
	bool framer;           /* the framer itself must report it */
};

#define BIN(s) (s), sizeof(s) - 1

static void run_rejects(const struct reject *r, size_t n)
{
	static char in[4096];

	for (size_t i = 0; i < n; i++) {
		const char *h = r[i].hdr ? r[i].hdr : HDR;
		size_t hl = strlen(h);
		size_t bl = r[i].body_len ? r[i].body_len : strlen(r[i].body);
		assert_true(hl + bl <= sizeof(in));
		memcpy(in, h, hl);
		memcpy(in + hl, r[i].body, bl);
		check_reject(in, hl + bl, NULL, r[i].err, r[i].framer);
	}
}

#define RUN_REJECTS(arr) run_rejects((arr), sizeof(arr) / sizeof((arr)[0]))

static void test_reject_restricted(void **state)
{
	static const struct reject r[] = {
		{ NULL, "<!-- hi -->", 0, RXML, true },
		{ NULL, ST_PRES "<!---->", 0, RXML, true },
		{ NULL, "<message><!-- hi --></message>", 0, RXML, true },
		{ NULL, "<message><body>a<!--x-->b</body></message>", 0, RXML, true },
		{ "", "<!-- c -->" HDR, 0, RXML, true },
		{ "", "<?xml version='1.0'?><!-- c -->" HDR, 0, RXML, true },
		{ NULL, "<?foo bar?>", 0, RXML, true },
		{ NULL, "<message><?foo?></message>", 0, RXML, true },
		{ NULL, "<?xml version='1.0'?>", 0, RXML, true },
		{ NULL, ST_PRES "<?xml version='1.0'?>" ST_PRES, 0, RXML, true },
		{ "", "<?foo?>" HDR, 0, RXML, true },
		{ "", "<?xml-stylesheet href='x'?>" HDR, 0, RXML, true },
		{ "", "<!DOCTYPE stream:stream>" HDR, 0, RXML, true },
		{ "", "<?xml version='1.0'?><!DOCTYPE stream>" HDR, 0, RXML, true },
		{ "", "<!DOCTYPE s [<!ENTITY x 'y'>]>" HDR, 0, RXML, true },
		{ "", "<?xml version='1.0'?>\n<!DOCTYPE s SYSTEM 'http://x/y.dtd' [<!ELEMENT s ANY>]>" HDR, 0, RXML, true },
		{ NULL, "<message><body>&foo;</body></message>", 0, RXML, false },
		{ NULL, "<message><body>&nbsp;</body></message>", 0, RXML, false },
		{ NULL, "<message id='&foo;'/>", 0, RXML, false },
		{ NULL, "<message><x a='b&c1;'/></message>", 0, RXML, false },
	};

	(void)state;
	RUN_REJECTS(r);
}

static void test_reject_bad_references(void **state)
{
	static const struct reject r[] = {
		{ NULL, "<message><body>a & b</body></message>", 0, NWF, false },
		{ NULL, "<message><body>a &amp b</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#x;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#xZZ;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#X41;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#12a;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#65</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#0;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#x0;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#1;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#x1F;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#xD800;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#xDFFF;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#xFFFE;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#x110000;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#4294967361;</body></message>", 0, NWF, false },
		{ NULL, "<message><body>&#x100000041;</body></message>", 0, NWF, false },
		{ NULL, "<message id='a&b'/>", 0, NWF, false },
		{ NULL, "<message id='&#0;'/>", 0, NWF, false },
		{ NULL, "<message id='&#xD800;'/>", 0, NWF, false },
		{ NULL, "<message id='&amp'/>", 0, NWF, false },
	};

	(void)state;
	RUN_REJECTS(r);
}

static void test_reject_tags(void **state)
{
	static const struct reject r[] = {
		{ NULL, "<message><body></bodx></message>", 0, NWF, false },
		{ NULL, "<message></presence>", 0, NWF, false },
		{ NULL, "<message><a><b></a></b></message>", 0, NWF, false },
		{ NULL, "<message xmlns:x='u' xmlns:y='u'><x:a></y:a></message>", 0, NWF, false },
		{ NULL, "<message><a></A></message>", 0, NWF, false },
		/* End tags at stream level other than the stream's own. */
		{ NULL, "</foo>", 0, NWF, false },
		{ NULL, "</stream>", 0, NWF, false },
		{ NULL, "</stream:streamx>", 0, NWF, false },
		{ NULL, ST_PRES "</message>", 0, NWF, false },
		{ "<foo:stream xmlns:foo='" STREAMS_NS "' xmlns='jabber:client'>", CLOSE, 0, NWF, false },
	};

	(void)state;
	RUN_REJECTS(r);
}

static void test_reject_attributes(void **state)
{
	static const struct reject r[] = {
		{ NULL, "<message id='1' id='2'/>", 0, NWF, false },
		{ NULL, "<message><x a='1' b='2' a='3'/></message>", 0, NWF, false },
		{ NULL, "<message xml:lang='en' xml:lang='de'/>", 0, NWF, false },
		{ NULL, "<message xmlns:a='urn:x' xmlns:b='urn:x' a:x='1' b:x='2'/>", 0, NWF, false },
		{ NULL, "<message xmlns:a='urn:x'><y xmlns:b='urn:x' a:x='1' b:x='2'/></message>", 0, NWF, false },
		{ NULL, "<message xmlns:a='u' xmlns:a='v'/>", 0, NWF, false },
		{ NULL, "<message xmlns='u' xmlns='v'/>", 0, NWF, false },
		{ NULL, "<message id=1/>", 0, NWF, false },
		{ NULL, "<message id=1>x</message>", 0, NWF, false },
		{ NULL, "<message id/>", 0, NWF, false },
		{ NULL, "<message id='1'type='x'/>", 0, NWF, false },
		{ NULL, "<message id='1' ='x'/>", 0, NWF, false },
		{ NULL, "<message id='a<b'/>", 0, NWF, false },
		{ NULL, "<message id=\"a<b\"/>", 0, NWF, false },
		{ NULL, "<message><x y='<'/></message>", 0, NWF, false },
	};

	(void)state;
	RUN_REJECTS(r);
}

static void test_reject_text(void **state)
{
	static const struct reject r[] = {
		{ NULL, "<message><body>a]]>b</body></message>", 0, NWF, false },
		{ NULL, "<message>]]></message>", 0, NWF, false },
		{ NULL, "<message><body>a]]]>b</body></message>", 0, NWF, false },
		/* Control characters: well-encoded, not XML characters. */
		{ NULL, "<message><body>a\x01" "b</body></message>", 0, NWF, false },
		{ NULL, "<message><body>a\x0B" "b</body></message>", 0, NWF, false },
		{ NULL, "<message id='a\x1F" "b'/>", 0, NWF, false },
		{ NULL, BIN("<message><body>a\0b</body></message>"), NWF, false },
		{ NULL, "<message><body>\xEF\xBF\xBE</body></message>", 0, NWF, false },
		{ NULL, "<message><body>\xEF\xBF\xBF</body></message>", 0, NWF, false },
		{ NULL, "<message><body><![CDATA[\x02]]></body></message>", 0, NWF, false },
		/* Non-whitespace between stanzas. */
		{ NULL, "hello", 0, XML_ERR_BAD_FORMAT, true },
		{ NULL, ST_PRES "x" ST_PRES, 0, XML_ERR_BAD_FORMAT, true },
		{ NULL, " \n." ST_PRES, 0, XML_ERR_BAD_FORMAT, true },
		{ NULL, "\xC2\xA0", 0, XML_ERR_BAD_FORMAT, true },
		{ NULL, "&amp;", 0, XML_ERR_BAD_FORMAT, true },
		/* Before the header nothing is an XMPP stream yet. */
		{ "", "x" HDR, 0, NWF, true },
	};

	(void)state;
	RUN_REJECTS(r);
}

static void test_reject_encoding(void **state)
{
	static const struct reject r[] = {
		{ NULL, "<message><body>\xC3(</body></message>", 0, ENC, false },
		{ NULL, "<message><body>\xC0\xAF</body></message>", 0, ENC, false },
		{ NULL, "<message><body>\xE0\x80\xAF</body></message>", 0, ENC, false },
		{ NULL, "<message><body>\xED\xA0\x80</body></message>", 0, ENC, false },
		{ NULL, "<message><body>\xF4\x90\x80\x80</body></message>", 0, ENC, false },
		{ NULL, "<message><body>\x80</body></message>", 0, ENC, false },
		{ NULL, "<message><body>\xFF</body></message>", 0, ENC, false },
		{ NULL, "<message><body>\xE2\x82</body></message>", 0, ENC, false },
		{ NULL, "<message id='\xF0\x9F\x98'/>", 0, ENC, false },
		{ NULL, "<message id='\xFE'/>", 0, ENC, false },
		{ NULL, "<message><body><![CDATA[\xC3]]></body></message>", 0, ENC, false },
		{ NULL, "<m\xC3(/>", 0, ENC, false },
		{ "", "<?xml version='1.0' encoding='ISO-8859-1'?>" HDR, 0, ENC, false },
		{ "", "<?xml version='1.0' encoding='UTF-16'?>" HDR, 0, ENC, false },
	};

	(void)state;
	RUN_REJECTS(r);
}

static void test_reject_names(void **state)
{
	static const struct reject r[] = {
		{ NULL, "<1message/>", 0, NWF, false },
		{ NULL, "<-message/>", 0, NWF, false },
		{ NULL, "<.message/>", 0, NWF, false },
		{ NULL, "<message><mes$age/></message>", 0, NWF, false },
		{ NULL, "<message><a*b/></message>", 0, NWF, false },
		{ NULL, "<message xmlns:p='u'><p:/></message>", 0, NWF, false },
		{ NULL, "<message xmlns:p='u' p:='1'/>", 0, NWF, false },
		{ NULL, "<message xmlns:a='u'><a:b:c/></message>", 0, NWF, false },
		{ NULL, "<message>< a/></message>", 0, NWF, false },
		{ NULL, "<message 1a='x'/>", 0, NWF, false },
		{ NULL, "<message -a='x'/>", 0, NWF, false },
		{ NULL, "<message a$='x'/>", 0, NWF, false },
		{ NULL, "<message a,b='x'/>", 0, NWF, false },
		/* Non-ASCII: U+00B7 and U+0300 may not start a name; U+00D7,
		 * U+037E and U+2000 are not name characters at all. */
		{ NULL, "<message><\xC2\xB7" "a xmlns='u'/></message>", 0, NWF, false },
		{ NULL, "<message><\xCC\x80" "a xmlns='u'/></message>", 0, NWF, false },
		{ NULL, "<message><a\xC3\x97" "b xmlns='u'/></message>", 0, NWF, false },
		{ NULL, "<message><\xCD\xBE xmlns='u'/></message>", 0, NWF, false },
		{ NULL, "<message><a\xE2\x80\x80" "b xmlns='u'/></message>", 0, NWF, false },
		{ NULL, "<message \xC3\x97='1'/>", 0, NWF, false },
	};

	(void)state;
	RUN_REJECTS(r);
}

static void test_reject_namespaces(void **state)
{
	static const struct reject r[] = {
		{ NULL, "<message><p:x/></message>", 0, BADPFX, false },
		{ NULL, "<p:message/>", 0, BADPFX, false },
		{ NULL, "<message p:x='1'/>", 0, BADPFX, false },
		{ NULL, "<message><x p:y='1'/></message>", 0, BADPFX, false },
		{ NULL, "<message><p:x xmlns:p='urn:p'/><p:y/></message>", 0, BADPFX, false },
		{ NULL, "<message xmlns:p=''/>", 0, NWF, false },
		{ NULL, "<message><p:x xmlns:p=\"\"/></message>", 0, NWF, false },
		{ NULL, "<message xmlns:xml='urn:x'/>", 0, NWF, false },
		{ NULL, "<message xmlns:xmlns='urn:x'/>", 0, NWF, false },
		{ NULL, "<message xmlns:p='" XML_NS_URI "'/>", 0, NWF, false },
		{ NULL, "<message xmlns:p='" XMLNS_URI "'/>", 0, NWF, false },
		{ NULL, "<message xmlns='" XML_NS_URI "'/>", 0, NWF, false },
		{ NULL, "<message xmlns='" XMLNS_URI "'/>", 0, NWF, false },
		{ "<stream:stream xmlns:stream='urn:not-streams'>", "", 0, XML_ERR_INVALID_NAMESPACE, false },
		{ "<stream:features xmlns:stream='" STREAMS_NS "'>", "", 0, XML_ERR_INVALID_NAMESPACE, false },
		{ "<stream xmlns='jabber:client'>", "", 0, XML_ERR_INVALID_NAMESPACE, false },
	};

	(void)state;
	RUN_REJECTS(r);
}

/* Constructs that look like faults but are allowed. */
static void test_accept_edge_cases(void **state)
{
	static const char *ok[] = {
		"<message><\xC3\xA9t\xC3\xA9 xmlns='urn:x' \xC3\xB1='1'/></message>",
		("<message><a\xC2\xB7" "b xmlns='urn:x'/></message>"),
		"<message><\xE4\xB8\xAD xmlns='urn:x'/></message>",
		"<message><\xF0\x90\x80\x80 xmlns='urn:x'/></message>",
		"<message><a\xCC\x80 xmlns='urn:x'/></message>",
		"<message><a-b.c_d9 e-f.g_h0='1' _i='2'/></message>",
		"<message id=']]>'/>",
		"<message><body>a]]b ]]&gt; ] ]]</body></message>",
		"<message><body>\x7F\xC2\x80\xC2\x9F\xEF\xBF\xBD</body></message>",
		"<message xmlns:a='urn:x' a:x='1' x='2'/>",
		"<message xml:lang='en' lang='de'/>",
		"<message xmlns:a='urn:a' xmlns:b='urn:b' a:x='1' b:x='2'/>",
		"<message><x xmlns=''/></message>",
		"<message a = \"1\"\n\tb\r\n=\r\n'2' ></message\n>",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		char in[1024];
		int n = snprintf(in, sizeof(in), "%s%s%s", HDR, ok[i], CLOSE);
		char want[2048];
		snprintf(want, sizeof(want), "O%s\nS%s\nC%s\n", HDR, ok[i], CLOSE);
		check_stream(in, (size_t)n, want);
	}
}

/* ---- limits ----------------------------------------------------------- */

static void test_limit_stanza_size(void **state)
{
	struct xml_limits lim;
	static char in[1024];
	size_t hl = strlen(HDR);

	(void)state;
	xml_limits_default(&lim);
	lim.max_stanza = 200;
	/* <message><body>aaa...</body></message> of exactly 200 bytes, then 201. */
	for (int over = 0; over <= 1; over++) {
		size_t n = 0;
		n += (size_t)sprintf(in + n, "%s<message><body>", HDR);
		size_t fill = 200 + (size_t)over - strlen("<message><body></body></message>");
		memset(in + n, 'a', fill);
		n += fill;
		n += (size_t)sprintf(in + n, "</body></message>");
		assert_int_equal(n - hl, 200 + (size_t)over);
		if (!over) {
			check_cuts(in, n, &lim, false);
			assert_int_equal(out_whole.err, XML_ERR_NONE);
			assert_int_equal(out_whole.left, 0);
		} else {
			check_reject(in, n, &lim, XML_ERR_POLICY_VIOLATION, true);
		}
	}
	/* An unfinished stanza past the limit fails without waiting for its end. */
	size_t n = (size_t)sprintf(in, "%s<message><body>", HDR);
	memset(in + n, 'a', 300);
	check_reject(in, n + 300, &lim, XML_ERR_POLICY_VIOLATION, true);
	/* So does a stream header that never ends. */
	n = (size_t)sprintf(in, "<stream:stream xmlns:stream='%s' id='", STREAMS_NS);
	memset(in + n, 'a', 400);
	check_reject(in, n + 400, &lim, XML_ERR_POLICY_VIOLATION, true);
}

static void test_limit_depth(void **state)
{
	struct xml_limits lim;

	(void)state;
	xml_limits_default(&lim);
	lim.max_depth = 3;
	static const char ok[] = HDR "<iq><a><b/></a><a>t<b>u</b></a></iq><message><a><b><![CDATA[<c><d>]]></b></a></message>";
	check_cuts(ok, sizeof(ok) - 1, &lim, true);
	assert_int_equal(out_whole.err, XML_ERR_NONE);
	assert_int_equal(out_whole.left, 0);
	/* An unfinished stanza is caught by the framer, a finished one by
	 * whichever layer sees it first. */
	static const char deep[] = HDR "<iq><a><b><c>";
	check_reject(deep, sizeof(deep) - 1, &lim, XML_ERR_POLICY_VIOLATION, true);
	static const char deep2[] = HDR "<iq><a><b><c/></b></a></iq>";
	check_reject(deep2, sizeof(deep2) - 1, &lim, XML_ERR_POLICY_VIOLATION, false);
	static const char deep3[] = HDR "<iq><a><b><c></c></b></a></iq>";
	check_reject(deep3, sizeof(deep3) - 1, &lim, XML_ERR_POLICY_VIOLATION, false);

	/* The default limit, at and one past. */
	static char in[2048];
	for (int over = 0; over <= 1; over++) {
		size_t n = (size_t)sprintf(in, "%s", HDR);
		int d = XML_DEFAULT_MAX_DEPTH + over;
		for (int i = 0; i < d; i++)
			n += (size_t)sprintf(in + n, "<e>");
		for (int i = 0; i < d; i++)
			n += (size_t)sprintf(in + n, "</e>");
		if (!over) {
			check_cuts(in, n, NULL, false);
			assert_int_equal(out_whole.err, XML_ERR_NONE);
		} else {
			check_reject(in, n, NULL, XML_ERR_POLICY_VIOLATION, true);
		}
	}
}

static void test_limit_attrs(void **state)
{
	struct xml_limits lim;

	(void)state;
	xml_limits_default(&lim);
	lim.max_attrs = 4;
	static const char ok[] = HDR "<message a='1' b='2' xmlns:x='u' xmlns='v'><x a='1' b='2' c='3' d='4'/></message>";
	check_cuts(ok, sizeof(ok) - 1, &lim, false);
	assert_int_equal(out_whole.err, XML_ERR_NONE);
	static const char top[] = HDR "<message a='1' b='2' xmlns:x='u' xmlns='v' c='3'/>";
	check_reject(top, sizeof(top) - 1, &lim, XML_ERR_POLICY_VIOLATION, false);
	static const char child[] = HDR "<message><x a='1' b='2' c='3' d='4' e='5'/></message>";
	check_reject(child, sizeof(child) - 1, &lim, XML_ERR_POLICY_VIOLATION, false);
	static const char decls[] = HDR "<message><x xmlns:a='1' xmlns:b='2' xmlns:c='3' xmlns:d='4' xmlns='5'/></message>";
	check_reject(decls, sizeof(decls) - 1, &lim, XML_ERR_POLICY_VIOLATION, false);
}

static void test_limit_ns(void **state)
{
	struct xml_limits lim;

	(void)state;
	xml_limits_default(&lim);
	lim.max_ns = 2;
	/* Two per stanza, in as many stanzas as it takes. */
	static const char ok[] = HDR "<message xmlns:a='u1'><x xmlns='u2'/></message><message xmlns:a='u1'><x xmlns='u2'/></message>";
	check_cuts(ok, sizeof(ok) - 1, &lim, false);
	assert_int_equal(out_whole.err, XML_ERR_NONE);
	/* Three in one stanza, even if never more than two in scope. */
	static const char over[] = HDR "<message xmlns:a='u1'><x xmlns='u2'/><y xmlns='u3'/></message>";
	check_reject(over, sizeof(over) - 1, &lim, XML_ERR_POLICY_VIOLATION, false);
	static const char undecl[] = HDR "<message xmlns=''><x xmlns=''/><y xmlns=''/></message>";
	check_reject(undecl, sizeof(undecl) - 1, &lim, XML_ERR_POLICY_VIOLATION, false);
}

/* Token storage: too few tokens is a policy violation; the documented
 * count always suffices, for the densest stanza that fits max_stanza. */
static void test_limit_tokens(void **state)
{
	struct xml_limits lim;
	struct xml_token few[8];
	static char st[1024 + 1];

	(void)state;
	xml_limits_default(&lim);
	xml_view_init(&V, &lim, few, 8, nss, NS_CAP, scope_slots, SCOPE_CAP);
	assert_int_equal(build_with(&CTX, "<message><a/><b/><c/></message>"), 0);
	assert_int_equal(build_with(&CTX, "<message><a/><b/><c/><d/></message>"), -1);
	assert_int_equal(V.err, XML_ERR_POLICY_VIOLATION);

	lim.max_stanza = sizeof(st) - 1;
	uint32_t cap = xml_view_storage_tokens(&lim);
	assert_true(cap > 0);
	struct xml_token *tok = malloc(cap * sizeof(*tok));
	assert_non_null(tok);
	static const char *units[] = { "x<b/>", "<b/>", "<b a=''/>", "<b/>&amp;" };
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		size_t n = 0, ul = strlen(units[u]);
		n += (size_t)sprintf(st, "<m>");
		while (n + ul + strlen("</m>") <= lim.max_stanza) {
			memcpy(st + n, units[u], ul);
			n += ul;
		}
		n += (size_t)sprintf(st + n, "</m>");
		xml_view_init(&V, &lim, tok, cap, nss, NS_CAP, scope_slots, SCOPE_CAP);
		int rc = xml_view_build(&V, &CTX, st, n);
		if (rc != 0)
			print_error("unit %s: %s with %u tokens for %zu bytes\n", units[u], err_name(V.err), cap, n);
		assert_int_equal(rc, 0);
	}
	free(tok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_limits_default),
		T(test_error_condition_names),
		T(test_frame_header_plain),
		T(test_frame_header_decl_single_quotes),
		T(test_frame_header_decl_double_quotes),
		T(test_frame_header_odd_attrs),
		T(test_frame_stanzas),
		T(test_frame_header_leading_whitespace),
		T(test_frame_with_decl_and_close),
		T(test_frame_close_right_after_header),
		T(test_frame_partial_keeps_bytes),
		T(test_frame_keepalive),
		T(test_frame_after_close),
		T(test_frame_restart),
		T(test_frame_reset_mid_stanza),
		T(test_frame_every_simd_level),
		T(test_frame_long_stanzas),
		T(test_view_header),
		T(test_view_header_variants),
		T(test_view_header_rejects),
		T(test_check_close),
		T(test_view_representative),
		T(test_view_no_ctx),
		T(test_view_default_namespace),
		T(test_view_prefixed_namespaces),
		T(test_view_span_is_one_element),
		T(test_view_duplicate_far_apart),
		T(test_view_xml_prefix_declared),
		T(test_view_xml_prefix_declared_on_header),
		T(test_view_escaped_namespace_uris),
		T(test_view_escaped_namespace_uris_long),
		T(test_view_cdata_line_ends),
		T(test_view_oversized_fields),
		T(test_view_stanza_info),
		T(test_view_attr_find),
		T(test_view_children),
		T(test_view_text_values),
		T(test_view_attr_values),
		T(test_unescape),
		T(test_rewrite),
		T(test_rewrite_scratch),
		T(test_reject_restricted),
		T(test_reject_bad_references),
		T(test_reject_tags),
		T(test_reject_attributes),
		T(test_reject_text),
		T(test_reject_encoding),
		T(test_reject_names),
		T(test_reject_namespaces),
		T(test_accept_edge_cases),
		T(test_limit_stanza_size),
		T(test_limit_depth),
		T(test_limit_attrs),
		T(test_limit_ns),
		T(test_limit_tokens),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
