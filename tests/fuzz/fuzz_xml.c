/* libFuzzer target for the tokenizer (parser/xml.h).
 *
 * The input is stream content. If it starts with its own stream header
 * (an XML declaration, or a first start tag whose name ends in "stream")
 * it is the whole stream; otherwise a fixed jabber:client header is put in
 * front of it. The stream is then fed to xml_frame several times:
 *
 *   whole, at every SIMD level from the best down to scalar;
 *   in chunks, at the best level and at scalar, with split points drawn
 *   from a hash of the input (two different splittings).
 *
 * Every item found is validated and indexed (xml_view_header, _build,
 * xml_check_close), every token is walked and every value decoded, and
 * every built stanza is rewritten (xml_view_rewrite) and built again.
 * Each run writes a trace of what it saw (events, spans relative to the
 * stream, error codes, every token field, hashes of decoded values); all
 * traces must be identical, since framing must not depend on how bytes
 * arrive nor on the SIMD level. Structural invariants of the views are
 * checked on the way. Any difference or broken invariant aborts.
 *
 * Limits and the view's token capacity are drawn from the hash too, so the
 * policy-violation paths are reached without a dedicated target.
 *
 * Buffers are sized exactly and the receive buffer's unused tail is kept
 * poisoned, so that ASan reports a read past the bytes handed over even
 * when it stays inside an allocation.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "parser/simd.h"
#include "parser/utf8.h"
#include "parser/xml.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#endif
#ifdef FUZZ_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(p, n)   ((void)(p), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(p, n) ((void)(p), (void)(n))
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bigger inputs only slow the fuzzer down; fuzz.sh caps at 64 KiB. */
#define FUZZ_MAX_INPUT (1u << 20)

static const char stream_header[] =
	"<stream:stream xmlns='jabber:client' "
	"xmlns:stream='http://etherx.jabber.org/streams' "
	"to='example.com' version='1.0'>";

/* ---- failure reporting ------------------------------------------------ */

static const char *cur_run = "?";

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "fuzz_xml: run %s: ", cur_run);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

#define CHECK(c) do { if (!(c)) fail("%s:%d: check failed: %s", __FILE__, __LINE__, #c); } while (0)

/* ---- hashing and the split/limit generator ---------------------------- */

static uint64_t fnv64(const void *p, size_t n)
{
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++) {
		h ^= s[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint32_t hash32(const void *p, size_t n)
{
	uint64_t h = fnv64(p, n);
	return (uint32_t)(h ^ (h >> 32));
}

static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Mostly tiny chunks: every byte boundary inside a tag must be resumable. */
static size_t next_chunk(uint64_t *rng, size_t left)
{
	uint64_t r = splitmix(rng);
	size_t n;

	switch (r & 3) {
	case 0:  n = 1; break;
	case 1:  n = 1 + (size_t)((r >> 8) % 8); break;
	case 2:  n = 1 + (size_t)((r >> 8) % 64); break;
	default: n = 1 + (size_t)((r >> 8) % 2048); break;
	}
	return n < left ? n : left;
}

/* ---- traces ------------------------------------------------------------ */

enum rec_kind {
	R_EVENT = 1,   /* event, stream start, stream end, err */
	R_VIEW,        /* which call, rc, err, err_off, ntok, nns, info... */
	R_NS,          /* index, uri_len, prefix_len, uri hash, prefix hash, prefix NULL */
	R_TOK,         /* index, every field */
	R_VALUE,       /* index, decoded length, decoded hash */
	R_CLOSE,       /* result */
	R_REWRITE,     /* iov count, length, hash, rebuilt ntok */
	R_RESET,
	R_DONE,        /* bytes dropped, state */
};

static const char *const rec_names[] = {
	"?", "event", "view", "ns", "tok", "value", "close", "rewrite", "reset", "done",
};

#define REC_FIELDS 11

struct rec {
	uint32_t kind;
	uint32_t f[REC_FIELDS];
};

/* The first run records, the others compare as they go. */
struct trace {
	struct rec *r;
	size_t n, cap;
	size_t pos;
	bool compare;
	const char *ref_run;
};

static struct trace tr;

static void print_rec(const char *who, size_t i, const struct rec *r)
{
	fprintf(stderr, "  %-10s #%zu %s", who, i, r->kind < sizeof rec_names / sizeof *rec_names ? rec_names[r->kind] : "?");
	for (int k = 0; k < REC_FIELDS; k++)
		fprintf(stderr, " %u", r->f[k]);
	fputc('\n', stderr);
}

static void mismatch(const struct rec *got)
{
	fprintf(stderr, "fuzz_xml: trace of run %s differs from run %s at record %zu:\n",
		cur_run, tr.ref_run, tr.pos);
	for (size_t i = tr.pos >= 3 ? tr.pos - 3 : 0; i < tr.pos; i++)
		print_rec("both", i, &tr.r[i]);
	if (tr.pos < tr.n)
		print_rec(tr.ref_run, tr.pos, &tr.r[tr.pos]);
	else
		fprintf(stderr, "  %-10s (trace ended)\n", tr.ref_run);
	if (got)
		print_rec(cur_run, tr.pos, got);
	else
		fprintf(stderr, "  %-10s (trace ended)\n", cur_run);
	abort();
}

static void emit(struct rec r)
{
	if (tr.compare) {
		if (tr.pos >= tr.n || memcmp(&tr.r[tr.pos], &r, sizeof r) != 0)
			mismatch(&r);
		tr.pos++;
		return;
	}
	if (tr.n == tr.cap) {
		tr.cap = tr.cap ? 2 * tr.cap : 1024;
		tr.r = realloc(tr.r, tr.cap * sizeof *tr.r);
		if (!tr.r)
			abort();
	}
	tr.r[tr.n++] = r;
}

#define EMIT(kind, ...) emit((struct rec){ (kind), { __VA_ARGS__ } })

/* ---- per-input setup ---------------------------------------------------- */

struct input {
	const char *stream;   /* header (unless the input has one) + input */
	size_t len;
	uint64_t h;
	struct xml_limits lim;
	uint32_t tok_cap;
	uint16_t ns_cap;
};

/* Storage for views, allocated once for the default limits. Arrays are
 * placed at the end of their allocation so that one element too many is
 * an ASan report, not a silent overwrite. */
struct arena {
	struct xml_token *tok;
	uint32_t tok_cap;
	struct xml_ns *ns;
	uint16_t *scope;
	uint32_t ns_cap;
};

static struct arena arena_a, arena_b;

static void arena_alloc(struct arena *a, uint32_t tok_cap, uint32_t ns_cap)
{
	a->tok_cap = tok_cap;
	a->ns_cap = ns_cap;
	a->tok = malloc(tok_cap * sizeof *a->tok);
	a->ns = malloc(ns_cap * sizeof *a->ns);
	a->scope = malloc(ns_cap * sizeof *a->scope);
	if (!a->tok || !a->ns || !a->scope)
		abort();
}

static void view_attach(struct xml_view *v, struct arena *a, const struct xml_limits *lim,
			uint32_t tok_cap, uint16_t ns_cap)
{
	CHECK(tok_cap <= a->tok_cap && ns_cap <= a->ns_cap);
	xml_view_init(v, lim, a->tok + (a->tok_cap - tok_cap), tok_cap,
		      a->ns + (a->ns_cap - ns_cap), ns_cap,
		      a->scope + (a->ns_cap - ns_cap), ns_cap);
}

static bool is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Whether the input brings its own stream header. */
static bool has_own_header(const uint8_t *d, size_t n)
{
	size_t i = 0, s;

	while (i < n && is_space(d[i]))
		i++;
	if (n - i >= 2 && d[i] == '<' && d[i + 1] == '?')
		return true;
	if (i >= n || d[i] != '<')
		return false;
	s = ++i;
	while (i < n && i - s < 64 && !is_space(d[i]) && d[i] != '>' && d[i] != '/')
		i++;
	return i - s >= 6 && memcmp(d + i - 6, "stream", 6) == 0;
}

/* One configuration in four has small limits so that each of them can be
 * hit by inputs of a few hundred bytes. */
static void pick_limits(struct input *in)
{
	uint64_t rng = in->h ^ 0x6c696d6974730000ull;
	uint64_t r = splitmix(&rng);

	xml_limits_default(&in->lim);
	if ((r & 3) == 0) {
		in->lim.max_stanza = 64 + (uint32_t)((r >> 8) % 4096);
		in->lim.max_depth = 1 + (uint16_t)((r >> 24) % 8);
		in->lim.max_attrs = 1 + (uint16_t)((r >> 32) % 8);
		in->lim.max_ns = (uint16_t)((r >> 40) % 6);
	}
	in->tok_cap = xml_view_storage_tokens(&in->lim);
	/* Rarely, too few tokens: build must fail cleanly, not overflow. */
	if (((r >> 48) & 15) == 0 && in->tok_cap > 1)
		in->tok_cap = 1 + (uint32_t)((r >> 52) % 48);
	in->ns_cap = (uint16_t)(2 + XML_NSCTX_MAX + in->lim.max_ns);
}

/* ---- checking one view -------------------------------------------------- */

static char *value_buf;
static size_t value_cap;

/* dst for a decoded value, ending exactly at the end of its allocation. */
static char *value_dst(size_t n)
{
	CHECK(n <= value_cap);
	return value_buf + (value_cap - n);
}

static bool has_sub(const char *s, size_t n, const char *pat)
{
	size_t m = strlen(pat);

	for (size_t i = 0; i + m <= n; i++)
		if (memcmp(s + i, pat, m) == 0)
			return true;
	return false;
}

static bool slice_in(const struct xml_view *v, uint32_t off, uint32_t len)
{
	return off <= v->len && len <= v->len - off;
}

/* NUL-terminated copy of a slice for xml_attr_find; false if it holds a
 * NUL (which no valid name or URI does) or does not fit. */
static bool cstr(struct xml_slice s, char *out, size_t cap)
{
	if (s.len >= cap || memchr(s.ptr, '\0', s.len))
		return false;
	memcpy(out, s.ptr, s.len);
	out[s.len] = '\0';
	return true;
}

static void check_value(const struct xml_view *v, uint32_t t)
{
	const struct xml_token *k = &v->tok[t];
	struct xml_slice raw = xml_tok_raw(v, t);
	bool attr = k->type == XML_TOK_ATTR;
	char *dst = value_dst(raw.len);
	struct xml_slice val = xml_tok_value(v, t, dst);

	CHECK(val.len <= raw.len);
	if (!(k->flags & XML_TF_CDATA))
		CHECK(memchr(raw.ptr, '<', raw.len) == NULL);
	if (k->flags & XML_TF_CDATA) {
		/* CDATA is raw but for line ends, which XML normalises everywhere:
		 * ESCAPED on CDATA means it holds a CR. */
		CHECK(!attr);
		CHECK(!has_sub(raw.ptr, raw.len, "]]>"));
		CHECK(!!(k->flags & XML_TF_ESCAPED) == (memchr(raw.ptr, '\r', raw.len) != NULL));
	} else if (!attr) {
		CHECK(!has_sub(raw.ptr, raw.len, "]]>"));
	}
	if (!(k->flags & XML_TF_ESCAPED)) {
		CHECK(val.ptr == raw.ptr && val.len == raw.len);
		/* Unflagged values must be ones unescaping leaves alone. */
		if (!(k->flags & XML_TF_CDATA)) {
			char *d2 = value_dst(raw.len);
			size_t n2 = xml_unescape(raw.ptr, raw.len, d2, attr);
			if (n2 != raw.len || memcmp(d2, raw.ptr, n2) != 0)
				fail("token %u: not flagged escaped but xml_unescape changes it", t);
		}
	} else {
		CHECK(val.ptr == dst);
	}
	/* Character references may only produce XML characters. */
	if (xml_utf8_validate_scalar(val.ptr, val.len) != XML_UTF8_OK)
		fail("token %u: decoded value is not valid XML text", t);
	EMIT(R_VALUE, t, val.len, hash32(val.ptr, val.len));
}

/* Every ELEM reachable through first_child/next_sibling exactly once. */
static void check_tree(const struct xml_view *v)
{
	uint32_t elems = 0, reached = 1;

	for (uint32_t t = 0; t < v->ntok; t++) {
		if (v->tok[t].type != XML_TOK_ELEM)
			continue;
		elems++;
		uint32_t guard = 0;
		for (uint32_t c = xml_first_child(v, t); c != XML_NO_TOK; c = xml_next_sibling(v, c)) {
			CHECK(c < v->ntok && v->tok[c].type == XML_TOK_ELEM && v->tok[c].b == t);
			CHECK(++guard <= v->ntok);
			reached++;
		}
	}
	CHECK(reached == elems);
}

static void check_attr_find(const struct xml_view *v, uint32_t elem)
{
	char local[512], ns[1024];

	for (uint32_t t = elem + 1; t <= elem + v->tok[elem].nattr; t++) {
		struct xml_slice uri = xml_tok_ns(v, t);
		if (!cstr(xml_tok_local(v, t), local, sizeof local) || !cstr(uri, ns, sizeof ns))
			continue;
		/* (local, namespace) pairs are unique, so the lookup finds t. */
		uint32_t got = xml_attr_find(v, elem, local, uri.len ? ns : NULL);
		if (got != t)
			fail("xml_attr_find(%u, \"%s\", \"%s\") = %u, want %u", elem, local, ns, got, t);
	}
}

static void check_info(const struct xml_view *v)
{
	const struct xml_stanza_info *in = &v->info;

	static const struct {
		const char *name, *ns;
		size_t off;
	} fields[] = {
		{ "to",   NULL, offsetof(struct xml_stanza_info, to) },
		{ "from", NULL, offsetof(struct xml_stanza_info, from) },
		{ "type", NULL, offsetof(struct xml_stanza_info, type) },
		{ "id",   NULL, offsetof(struct xml_stanza_info, id) },
		{ "lang", "http://www.w3.org/XML/1998/namespace", offsetof(struct xml_stanza_info, lang) },
	};

	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
		uint32_t have, want = xml_attr_find(v, 0, fields[i].name, fields[i].ns);
		memcpy(&have, (const char *)in + fields[i].off, sizeof have);
		if (have != want)
			fail("info.%s is %u, xml_attr_find finds %u", fields[i].name, have, want);
	}
	CHECK(in->child == xml_first_child(v, 0));
}

/* Walk a built view: record everything, check what must hold. */
static void walk_view(const struct xml_view *v, bool header)
{
	uint32_t stack[1024];
	uint32_t depth = 0;

	CHECK(v->ntok >= 1 && v->ntok <= v->tok_cap && v->nns >= 2 && v->nns <= v->ns_cap);
	EMIT(R_VIEW, 1, v->ntok, v->nns, v->info.to, v->info.from, v->info.type,
	     v->info.id, v->info.lang, v->info.child);

	CHECK(v->ns[XML_NS_NONE].uri_len == 0);
	CHECK(xml_slice_eq((struct xml_slice){ v->ns[XML_NS_XML].uri, v->ns[XML_NS_XML].uri_len },
			   "http://www.w3.org/XML/1998/namespace"));
	for (uint32_t i = 0; i < v->nns; i++) {
		const struct xml_ns *n = &v->ns[i];
		CHECK((n->prefix == NULL) == (n->prefix_len == 0) || (i <= XML_NS_XML));
		EMIT(R_NS, i, n->uri_len, n->prefix_len, hash32(n->uri, n->uri_len),
		     n->prefix ? hash32(n->prefix, n->prefix_len) : 0, n->prefix == NULL);
	}

	CHECK(v->tok[0].type == XML_TOK_ELEM);
	if (header)
		CHECK(v->ntok == 1u + v->tok[0].nattr);
	for (uint32_t t = 0; t < v->ntok; t++) {
		const struct xml_token *k = &v->tok[t];

		EMIT(R_TOK, t, k->type, k->flags, k->ns, k->prefix, k->nattr, k->off, k->len, k->a, k->b);
		CHECK(k->type >= XML_TOK_ELEM && k->type <= XML_TOK_END);
		CHECK(slice_in(v, k->off, k->len));
		if (k->type != XML_TOK_TEXT) {
			CHECK(k->ns < v->nns && k->len > 0);
			CHECK(k->prefix < k->len);
			if (k->prefix)
				CHECK(v->base[k->off + k->prefix] == ':');
		}
		switch (k->type) {
		case XML_TOK_ELEM:
			CHECK(t + k->nattr < v->ntok);
			for (uint32_t i = 1; i <= k->nattr; i++)
				CHECK(v->tok[t + i].type == XML_TOK_ATTR);
			CHECK(k->b == (depth ? stack[depth - 1] : XML_NO_TOK));
			CHECK((t == 0) == (depth == 0));
			if (!header) {
				CHECK(k->a > t && k->a < v->ntok);
				CHECK(v->tok[k->a].type == XML_TOK_END && v->tok[k->a].a == t);
				CHECK(depth < sizeof stack / sizeof *stack);
				stack[depth++] = t;
			}
			check_attr_find(v, t);
			break;
		case XML_TOK_ATTR:
			CHECK(t > 0 && slice_in(v, k->a, k->b));
			check_value(v, t);
			break;
		case XML_TOK_TEXT:
			CHECK(!header && depth > 0);
			CHECK(!(k->flags & XML_TF_EMPTY));
			check_value(v, t);
			break;
		case XML_TOK_END: {
			CHECK(!header && depth > 0 && stack[depth - 1] == k->a);
			const struct xml_token *e = &v->tok[k->a];
			CHECK(e->a == t && e->ns == k->ns);
			CHECK((e->flags & XML_TF_EMPTY) == (k->flags & XML_TF_EMPTY));
			if (!(k->flags & XML_TF_EMPTY))
				CHECK(k->len == e->len && memcmp(v->base + k->off, v->base + e->off, k->len) == 0);
			depth--;
			break;
		}
		}
	}
	if (!header) {
		CHECK(depth == 0);
		CHECK(v->tok[0].a == v->ntok - 1);
		check_tree(v);
		check_info(v);
	}
}

/* Build, and on success walk. Returns the build's result. */
static int build_and_walk(struct xml_view *v, const struct xml_nsctx *ctx, const char *item,
			  size_t len, bool header, struct xml_nsctx *hctx)
{
	int rc = header ? xml_view_header(v, hctx, item, len) : xml_view_build(v, ctx, item, len);

	CHECK(rc == 0 || rc == -1);
	if (rc != 0) {
		CHECK(v->err != XML_ERR_NONE && xml_error_condition(v->err) != NULL);
		if (v->err_off > len)
			fail("%s: err_off %u outside the %zu-byte item", xml_error_condition(v->err), v->err_off, len);
		EMIT(R_VIEW, 0, (uint32_t)header, (uint32_t)v->err, v->err_off);
		return rc;
	}
	CHECK(v->base == item && v->len == len);
	/* A view that built has validated its bytes. */
	if (xml_utf8_validate_scalar(item, len) != XML_UTF8_OK)
		fail("view built over bytes that are not valid XML text");
	walk_view(v, header);
	return 0;
}

/* ---- rewrite ------------------------------------------------------------ */

static const char *const rewrite_jids[] = {
	"juliet@capulet.example/balcony",
	"romeo@montague.example",
	"a&b<c>'\"@x.example/\t\r\n ]]> &amp;",
	"",
	"\xc3\xa9l\xc3\xa8ve@\xe6\x97\xa5\xe6\x9c\xac.example/\xf0\x9f\x8e\xad",
};

#define N_JIDS (sizeof rewrite_jids / sizeof *rewrite_jids)

static void check_attr_value(const struct xml_view *v, uint32_t t, const char *want)
{
	if (!want) {
		CHECK(t == XML_NO_TOK);
		return;
	}
	CHECK(t != XML_NO_TOK);
	struct xml_slice raw = xml_tok_raw(v, t);
	struct xml_slice val = xml_tok_value(v, t, value_dst(raw.len));
	if (!xml_slice_eq(val, want))
		fail("rewritten attribute reads back as \"%.*s\", want \"%s\"", (int)val.len, val.ptr, want);
}

static void rewrite(const struct input *in, const struct xml_view *v, const struct xml_nsctx *ctx,
		    uint32_t item_no)
{
	uint64_t rng = in->h ^ ((uint64_t)item_no << 32) ^ 0x7265777269746500ull;
	uint64_t r = splitmix(&rng);
	uint32_t fi = (uint32_t)(r % (N_JIDS + 1)), ti = (uint32_t)((r >> 16) % (N_JIDS + 1));
	const char *from_s = fi < N_JIDS ? rewrite_jids[fi] : NULL;
	const char *to_s = ti < N_JIDS ? rewrite_jids[ti] : NULL;
	struct xml_slice from = { from_s, from_s ? (uint32_t)strlen(from_s) : 0 };
	struct xml_slice to = { to_s, to_s ? (uint32_t)strlen(to_s) : 0 };
	size_t scratch_len = 16 + 6 * (from.len + to.len);
	char *scratch = malloc(scratch_len);
	struct iovec iov[XML_REWRITE_IOV];

	if (!scratch)
		abort();
	int n = xml_view_rewrite(v, from_s ? &from : NULL, to_s ? &to : NULL, scratch, scratch_len, iov);
	if (n < 1 || n > XML_REWRITE_IOV)
		fail("xml_view_rewrite returned %d with a scratch of the documented size", n);

	size_t total = 0;
	for (int i = 0; i < n; i++) {
		CHECK(iov[i].iov_len == 0 || iov[i].iov_base != NULL);
		total += iov[i].iov_len;
	}
	char *out = malloc(total ? total : 1);
	if (!out)
		abort();
	size_t o = 0;
	for (int i = 0; i < n; i++) {
		if (iov[i].iov_len)
			memcpy(out + o, iov[i].iov_base, iov[i].iov_len);
		o += iov[i].iov_len;
	}

	/* The new stanza may outgrow the limits by what was inserted. */
	struct xml_limits lim = in->lim;
	lim.max_stanza = (uint32_t)(total > lim.max_stanza ? total : lim.max_stanza);
	lim.max_attrs = (uint16_t)(lim.max_attrs + 2);
	uint32_t cap = v->ntok + 2;
	struct xml_view v2;
	view_attach(&v2, &arena_b, &lim, cap, in->ns_cap);
	if (xml_view_build(&v2, ctx, out, total) != 0)
		fail("rewritten stanza does not build: %s at offset %u (from %d, to %d): %.*s",
		     xml_error_condition(v2.err), v2.err_off, (int)fi, (int)ti,
		     (int)(total < 2000 ? total : 2000), out);

	check_attr_value(&v2, v2.info.from, from_s);
	check_attr_value(&v2, v2.info.to, to_s);
	uint32_t want = v->ntok - (v->info.from != XML_NO_TOK) - (v->info.to != XML_NO_TOK) +
			(from_s != NULL) + (to_s != NULL);
	if (v2.ntok != want)
		fail("rewritten stanza has %u tokens, want %u", v2.ntok, want);

	/* The other attributes of the top element are kept as they were. */
	for (uint32_t t = 1; t <= v->tok[0].nattr; t++) {
		if (t == v->info.from || t == v->info.to)
			continue;
		struct xml_slice q = xml_tok_qname(v, t), raw = xml_tok_raw(v, t);
		bool found = false;
		for (uint32_t u = 1; u <= v2.tok[0].nattr && !found; u++) {
			struct xml_slice q2 = xml_tok_qname(&v2, u), raw2 = xml_tok_raw(&v2, u);
			found = q.len == q2.len && raw.len == raw2.len &&
				memcmp(q.ptr, q2.ptr, q.len) == 0 && memcmp(raw.ptr, raw2.ptr, raw.len) == 0;
		}
		if (!found)
			fail("attribute %.*s lost by the rewrite", (int)q.len, q.ptr);
	}
	/* Everything after the top element's attributes is copied verbatim. */
	for (uint32_t t = 1 + v->tok[0].nattr, u = 1 + v2.tok[0].nattr; t < v->ntok; t++, u++) {
		const struct xml_token *a = &v->tok[t], *b = &v2.tok[u];
		CHECK(u < v2.ntok);
		CHECK(a->type == b->type && a->flags == b->flags && a->len == b->len &&
		      a->prefix == b->prefix && a->nattr == b->nattr);
		CHECK(memcmp(v->base + a->off, v2.base + b->off, a->len) == 0);
		if (a->type == XML_TOK_ATTR)
			CHECK(a->b == b->b && memcmp(v->base + a->a, v2.base + b->a, a->b) == 0);
	}

	EMIT(R_REWRITE, (uint32_t)n, (uint32_t)total, hash32(out, total), v2.ntok);
	free(out);
	free(scratch);
}

/* ---- one run over the stream -------------------------------------------- */

struct run_cfg {
	const char *name;
	enum simd_level level;
	bool chunked;
	uint64_t salt;
};

/* The receive buffer: bytes [head, len) are not yet dropped; [len, cap)
 * stays poisoned. */
struct rx {
	char *buf;
	size_t cap, head, len;
	uint64_t dropped;   /* stream offset of buf[head] */
};

static void rx_append(struct rx *rx, const char *p, size_t n)
{
	CHECK(rx->len + n <= rx->cap);
	ASAN_UNPOISON_MEMORY_REGION(rx->buf + rx->len, n);
	memcpy(rx->buf + rx->len, p, n);
	rx->len += n;
}

static void rx_drop(struct rx *rx, size_t n, bool compact)
{
	rx->head += n;
	rx->dropped += n;
	if (!compact || rx->head == 0)
		return;
	size_t keep = rx->len - rx->head;
	memmove(rx->buf, rx->buf + rx->head, keep);
	ASAN_POISON_MEMORY_REGION(rx->buf + keep, rx->len - keep);
	rx->len = keep;
	rx->head = 0;
}

/* An exactly sized copy, so that reads outside the item are ASan reports. */
static char *item_copy(const char *p, size_t n)
{
	char *c = malloc(n ? n : 1);
	if (!c)
		abort();
	memcpy(c, p, n);
	return c;
}

struct run_state {
	const struct input *in;
	struct xml_framer f;
	struct xml_nsctx ctx;
	struct xml_view v;
	bool header_ok;   /* views continue only while the stream is valid */
	bool closed;
	bool failed;      /* xml_frame said XML_ERROR */
	uint32_t items;
};

static void handle_item(struct run_state *s, enum xml_event ev, const char *item, size_t len)
{
	const struct input *in = s->in;
	char *copy = item_copy(item, len);

	s->items++;
	switch (ev) {
	case XML_STREAM_OPEN:
		memset(&s->ctx, 0, sizeof s->ctx);
		s->header_ok = build_and_walk(&s->v, NULL, copy, len, true, &s->ctx) == 0;
		if (s->header_ok)
			CHECK(s->ctx.n <= XML_NSCTX_MAX && s->ctx.used <= XML_NSCTX_BYTES);
		break;
	case XML_STANZA:
		CHECK(len >= 3 && copy[0] == '<' && copy[len - 1] == '>');
		if (!s->header_ok)
			break;
		if (build_and_walk(&s->v, &s->ctx, copy, len, false, NULL) != 0) {
			s->header_ok = false;
			break;
		}
		rewrite(in, &s->v, &s->ctx, s->items);
		/* A stream restart (SASL success, STARTTLS proceed) may be
		 * followed by the new header in the same read. */
		if (xml_slice_eq(xml_tok_local(&s->v, 0), "success") ||
		    xml_slice_eq(xml_tok_local(&s->v, 0), "proceed")) {
			xml_framer_reset(&s->f);
			s->header_ok = false;
			EMIT(R_RESET, s->items);
		}
		break;
	case XML_STREAM_CLOSE:
		CHECK(len >= 3 && copy[0] == '<' && copy[1] == '/' && copy[len - 1] == '>');
		if (s->header_ok)
			EMIT(R_CLOSE, (uint32_t)xml_check_close(&s->ctx, copy, len));
		break;
	default:
		break;
	}
	free(copy);
}

/* Call xml_frame until it needs more bytes. Returns false once the stream
 * is over (an error). */
static bool pump(struct run_state *s, struct rx *rx, bool compact)
{
	for (;;) {
		struct xml_span sp = { 0xdeadbeefu, 0xdeadbeefu };
		size_t avail = rx->len - rx->head;
		enum xml_event ev = xml_frame(&s->f, rx->buf + rx->head, avail, &sp);

		if (ev == XML_AGAIN) {
			CHECK(sp.end <= avail);
			if (s->closed)
				CHECK(sp.end == avail);
			rx_drop(rx, sp.end, compact);
			return true;
		}
		if (ev == XML_ERROR) {
			CHECK(s->f.err != XML_ERR_NONE && xml_error_condition(s->f.err) != NULL);
			EMIT(R_EVENT, ev, 0, 0, s->f.err);
			uint8_t err = s->f.err;
			CHECK(xml_frame(&s->f, rx->buf + rx->head, avail, &sp) == XML_ERROR && s->f.err == err);
			s->failed = true;
			return false;
		}
		CHECK(ev == XML_STREAM_OPEN || ev == XML_STANZA || ev == XML_STREAM_CLOSE);
		CHECK(!s->closed);
		CHECK(sp.start <= sp.end && sp.end <= avail);
		EMIT(R_EVENT, ev, (uint32_t)(rx->dropped + sp.start), (uint32_t)(rx->dropped + sp.end), 0);
		handle_item(s, ev, rx->buf + rx->head + sp.start, sp.end - sp.start);
		if (ev == XML_STREAM_CLOSE)
			s->closed = true;
		rx_drop(rx, sp.end, compact);
	}
}

static void run(const struct input *in, const struct run_cfg *cfg)
{
	struct run_state s;
	struct rx rx = { 0 };
	uint64_t rng = in->h ^ cfg->salt;
	size_t fed = 0;

	cur_run = cfg->name;
	CHECK(simd_set_level(cfg->level) == cfg->level);
	memset(&s, 0, sizeof s);
	s.in = in;
	xml_framer_init(&s.f, &in->lim);
	view_attach(&s.v, &arena_a, &in->lim, in->tok_cap, in->ns_cap);

	rx.cap = in->len;
	rx.buf = malloc(rx.cap ? rx.cap : 1);
	if (!rx.buf)
		abort();
	ASAN_POISON_MEMORY_REGION(rx.buf, rx.cap);

	while (fed < in->len) {
		size_t n = cfg->chunked ? next_chunk(&rng, in->len - fed) : in->len - fed;
		rx_append(&rx, in->stream + fed, n);
		fed += n;
		if (!pump(&s, &rx, cfg->chunked))
			break;
	}
	/* How much was dropped in the end may not depend on the splitting. */
	EMIT(R_DONE, s.failed ? 0 : (uint32_t)rx.dropped, s.failed, s.closed, s.items);

	ASAN_UNPOISON_MEMORY_REGION(rx.buf, rx.cap);
	free(rx.buf);
}

static void init_once(void)
{
	static bool done;
	struct xml_limits lim;

	if (done)
		return;
	done = true;
	xml_limits_default(&lim);
	/* The small-limit configurations need fewer of each than the defaults. */
	uint32_t tok = xml_view_storage_tokens(&lim);
	arena_alloc(&arena_a, tok, 2 + XML_NSCTX_MAX + lim.max_ns);
	arena_alloc(&arena_b, tok + 2, 2 + XML_NSCTX_MAX + lim.max_ns);
	value_cap = FUZZ_MAX_INPUT + sizeof stream_header;
	value_buf = malloc(value_cap);
	if (!value_buf)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const whole_names[] = { "whole-scalar", "whole-sse4.2", "whole-avx2", "whole-avx512" };
	struct input in;
	struct run_cfg cfg;
	enum simd_level best = simd_detect();

	if (size > FUZZ_MAX_INPUT)
		return -1;
	init_once();

	memset(&in, 0, sizeof in);
	bool own = has_own_header(data, size);
	size_t hlen = own ? 0 : sizeof stream_header - 1;
	char *stream = malloc(hlen + size + 1);
	if (!stream)
		abort();
	memcpy(stream, stream_header, hlen);
	if (size)
		memcpy(stream + hlen, data, size);
	in.stream = stream;
	in.len = hlen + size;
	in.h = fnv64(data, size);
	pick_limits(&in);
	/* The small-limit arenas are carved from the default-sized ones. */
	CHECK(in.tok_cap <= arena_a.tok_cap);

	tr.n = tr.pos = 0;
	tr.compare = false;
	for (int l = (int)best; l >= 0; l--) {
		cfg = (struct run_cfg){ whole_names[l], (enum simd_level)l, false, 0 };
		run(&in, &cfg);
		if (!tr.compare) {
			tr.compare = true;
			tr.ref_run = whole_names[l];
		} else if (tr.pos != tr.n) {
			mismatch(NULL);
		}
		tr.pos = 0;
	}
	cfg = (struct run_cfg){ "chunked-best", best, true, 0x6368756e6b310000ull };
	run(&in, &cfg);
	if (tr.pos != tr.n)
		mismatch(NULL);
	tr.pos = 0;
	cfg = (struct run_cfg){ "chunked-scalar", SIMD_SCALAR, true, 0x6368756e6b320000ull };
	run(&in, &cfg);
	if (tr.pos != tr.n)
		mismatch(NULL);

	simd_set_level(best);
	free(stream);
	return 0;
}
