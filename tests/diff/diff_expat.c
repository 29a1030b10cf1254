/* Differential test of the streaming tokenizer (parser/xml.h) against libexpat.
 *
 *     diff_expat CORPUS_DIR [SEED]     the test (CORPUS_DIR: tests/corpus)
 *     diff_expat --one STREAM_FILE     both parsers' verdicts and events for one stream
 *
 * 1. Corpus: every file of xeps/ and valid/, put in a stream, is parsed by
 *    expat in one go and fed to xml_frame + xml_view_* the way a connection
 *    does; the two canonical event lists must be equal for every feeding
 *    (one chunk; two chunks split at every byte for streams up to 2 KB;
 *    seeded random chunkings down to single bytes, with the buffer moved
 *    between reads) at every SIMD level.
 * 2. Bad streams: every file of bad/ must fail with the stream error its
 *    name starts with, at every split point and level.
 * 3. Mutants: random edits of corpus streams. Both parsers' verdicts are
 *    compared and each disagreement classified (see classify): those that
 *    restricted XML and XMPP explain are counted, the rest fail the test. A
 *    mutant both accept must give equal events; each mutant must give the
 *    same stanzad result in any chunking and at every level.
 *
 * Events are compared as byte strings in one canonical form, so a failure
 * prints where they part. Everything random comes from SEED, so a failure
 * reproduces; failing mutants are saved as diff_expat-fail-N.xml.
 */
#include <dirent.h>
#include <expat.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parser/simd.h"
#include "parser/xml.h"

#define STREAM_NS "http://etherx.jabber.org/streams"
#define XML_NS_URI "http://www.w3.org/XML/1998/namespace"

static const char stream_head[] =
	"<?xml version='1.0'?>\n"
	"<stream:stream xmlns='jabber:client' xmlns:stream='" STREAM_NS "' to='example.com' version='1.0'>";
static const char stream_tail[] = "</stream:stream>";

/* Streams up to this size are fed split at every byte. */
#define EVERY_SPLIT_MAX  2048
/* Random chunkings per corpus stream, at the best SIMD level and at each
 * lower one (the lower levels share kernels' scalar tails, so fewer). */
#define RANDOM_SPLITS_TOP   300
#define RANDOM_SPLITS_OTHER 60
#define MUTANTS           150000
/* Bytes past the end of the data that are filled with markup, so that a
 * scanner reading beyond len sees something that changes its answer. */
#define POISON 64

/* ---- canonical events --------------------------------------------------
 * One record per event, fields split by FS, records ended by RS. Neither
 * byte can occur in XML 1.0 content, not even through a character
 * reference, so the encoding is unambiguous for anything both sides accept.
 *   H ns FS local RS     the stream element (header)
 *   E ns FS local RS     start of an element
 *   A ns FS local FS value RS
 *   T text RS            adjacent character data and CDATA, merged
 *   / RS                 end of an element
 *   C RS                 end of the stream
 */
#define FS '\x02'
#define RS '\x03'

struct buf {
	char *p;
	size_t len, cap;
};

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		perror("malloc");
		exit(2);
	}
	return p;
}

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p) {
			perror("realloc");
			exit(2);
		}
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_putc(struct buf *b, char c)
{
	buf_put(b, &c, 1);
}

static bool buf_eq(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* ---- random ------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* splitmix64: one word of state, good enough to pick split points */
	uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

/* ---- expat ------------------------------------------------------------- */

/* What expat saw that stanzad refuses by design. */
struct ex_seen {
	bool comment, pi, dtd;
	bool stream_text;      /* character data or CDATA at stream level, other than literal whitespace */
	bool root_not_stream;  /* the document element is not {STREAM_NS}stream */
	bool decl;             /* an XML declaration */
	size_t hdr_end;        /* end of the stream element's start tag (0: none) */
};

struct ex_run {
	XML_Parser p;
	struct buf *out;
	const char *doc;
	int depth;
	bool in_text;
	struct ex_seen seen;
};

static void ex_put_name(struct buf *b, const char *name)
{
	const char *sep = strchr(name, '\x01');

	if (sep) {
		buf_put(b, name, (size_t)(sep - name));
		buf_putc(b, FS);
		buf_put(b, sep + 1, strlen(sep + 1));
	} else {
		buf_putc(b, FS);
		buf_put(b, name, strlen(name));
	}
}

static void ex_flush(struct ex_run *x)
{
	if (x->in_text) {
		buf_putc(x->out, RS);
		x->in_text = false;
	}
}

static void XMLCALL ex_start(void *ud, const XML_Char *name, const XML_Char **attr)
{
	struct ex_run *x = ud;

	ex_flush(x);
	if (++x->depth == 1) {
		x->seen.root_not_stream = strcmp(name, STREAM_NS "\x01stream") != 0;
		x->seen.hdr_end = (size_t)(XML_GetCurrentByteIndex(x->p) + XML_GetCurrentByteCount(x->p));
	}
	buf_putc(x->out, x->depth == 1 ? 'H' : 'E');
	ex_put_name(x->out, name);
	buf_putc(x->out, RS);
	for (; attr[0]; attr += 2) {
		buf_putc(x->out, 'A');
		ex_put_name(x->out, attr[0]);
		buf_putc(x->out, FS);
		buf_put(x->out, attr[1], strlen(attr[1]));
		buf_putc(x->out, RS);
	}
}

static void XMLCALL ex_end(void *ud, const XML_Char *name)
{
	struct ex_run *x = ud;

	ex_flush(x);
	buf_putc(x->out, x->depth == 1 ? 'C' : '/');
	buf_putc(x->out, RS);
	x->depth--;
}

static void XMLCALL ex_text(void *ud, const XML_Char *s, int len)
{
	struct ex_run *x = ud;

	if (x->depth <= 1) {
		/* The framer drops whitespace between stanzas; a reference that
		 * expands to whitespace is still text at stream level. */
		XML_Index at = XML_GetCurrentByteIndex(x->p);
		int n = XML_GetCurrentByteCount(x->p);

		for (int i = 0; at >= 0 && i < n; i++) {
			char c = x->doc[at + i];
			if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
				x->seen.stream_text = true;
		}
		return;
	}
	if (!x->in_text) {
		buf_putc(x->out, 'T');
		x->in_text = true;
	}
	buf_put(x->out, s, (size_t)len);
}

static void XMLCALL ex_cdata(void *ud)
{
	struct ex_run *x = ud;

	if (x->depth <= 1)
		x->seen.stream_text = true;
}

static void XMLCALL ex_comment(void *ud, const XML_Char *s)
{
	((struct ex_run *)ud)->seen.comment = true;
}

static void XMLCALL ex_pi(void *ud, const XML_Char *target, const XML_Char *data)
{
	((struct ex_run *)ud)->seen.pi = true;
}

static void XMLCALL ex_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
			       const XML_Char *pubid, int has_internal)
{
	((struct ex_run *)ud)->seen.dtd = true;
}

static void XMLCALL ex_decl(void *ud, const XML_Char *version, const XML_Char *encoding, int standalone)
{
	((struct ex_run *)ud)->seen.decl = true;
}

/* Parse doc in one go. Returns true if expat accepts it; events in out. */
static bool expat_run(const char *doc, size_t len, struct buf *out, struct ex_seen *seen)
{
	struct ex_run x = { .out = out, .doc = doc };
	bool ok;

	out->len = 0;
	x.p = XML_ParserCreateNS(NULL, '\x01');
	if (!x.p) {
		fprintf(stderr, "XML_ParserCreateNS failed\n");
		exit(2);
	}
	XML_SetUserData(x.p, &x);
	XML_SetElementHandler(x.p, ex_start, ex_end);
	XML_SetCharacterDataHandler(x.p, ex_text);
	XML_SetStartCdataSectionHandler(x.p, ex_cdata);
	XML_SetCommentHandler(x.p, ex_comment);
	XML_SetProcessingInstructionHandler(x.p, ex_pi);
	XML_SetStartDoctypeDeclHandler(x.p, ex_doctype);
	XML_SetXmlDeclHandler(x.p, ex_decl);
	ok = XML_Parse(x.p, doc, (int)len, 1) == XML_STATUS_OK;
	ex_flush(&x);
	XML_ParserFree(x.p);
	if (seen)
		*seen = x.seen;
	return ok;
}

/* ---- stanzad ----------------------------------------------------------- */

enum sz_state { SZ_INCOMPLETE, SZ_CLOSED, SZ_ERROR, SZ_BROKEN };

struct sz_run {
	enum sz_state state;
	enum xml_error err;
	size_t close_end;   /* stream offset just past the close tag */
	size_t err_at;      /* stream offset of the item that failed (for messages) */
	char why[160];      /* SZ_BROKEN: an API contract the tokenizer broke */
	struct buf ev;
};

static struct xml_limits lim;
static struct xml_view view;
static char *scratch;          /* room for any token's raw value */
static struct xml_token *view_tok;
static struct xml_ns *view_ns;
static uint16_t *view_scope;
#define SCOPE_CAP 4096
static char *rx[2];            /* receive buffers: the data moves between them */
static size_t rx_cap;

static void broken(struct sz_run *r, const char *fmt, ...)
{
	va_list ap;

	if (r->state == SZ_BROKEN)
		return;
	r->state = SZ_BROKEN;
	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

static void put_slice(struct buf *b, struct xml_slice s)
{
	buf_put(b, s.ptr, s.len);
}

/* Append the view's tokens as canonical events, checking the links
 * between them on the way. */
static void walk(const struct xml_view *v, bool header, struct sz_run *r)
{
	struct buf *b = &r->ev;
	bool in_text = false;
	uint32_t parent = XML_NO_TOK;
	uint32_t attrs_left = 0;

	for (uint32_t i = 0; i < v->ntok; i++) {
		const struct xml_token *t = &v->tok[i];

		if (t->type != XML_TOK_TEXT && in_text) {
			buf_putc(b, RS);
			in_text = false;
		}
		if (attrs_left && t->type != XML_TOK_ATTR)
			broken(r, "token %u: %u ATTR tokens missing", i, attrs_left);
		switch (t->type) {
		case XML_TOK_ELEM:
			if (t->b != parent)
				broken(r, "token %u: parent %u, expected %u", i, t->b, parent);
			if (!header && (t->a <= i || t->a >= v->ntok || v->tok[t->a].type != XML_TOK_END ||
					v->tok[t->a].a != i))
				broken(r, "token %u: END link %u broken", i, t->a);
			buf_putc(b, header && i == 0 ? 'H' : 'E');
			put_slice(b, xml_tok_ns(v, i));
			buf_putc(b, FS);
			put_slice(b, xml_tok_local(v, i));
			buf_putc(b, RS);
			attrs_left = t->nattr;
			parent = i;
			break;
		case XML_TOK_ATTR:
			if (!attrs_left)
				broken(r, "token %u: ATTR beyond nattr", i);
			else
				attrs_left--;
			buf_putc(b, 'A');
			put_slice(b, xml_tok_ns(v, i));
			buf_putc(b, FS);
			put_slice(b, xml_tok_local(v, i));
			buf_putc(b, FS);
			put_slice(b, xml_tok_value(v, i, scratch));
			buf_putc(b, RS);
			break;
		case XML_TOK_TEXT: {
			/* an empty CDATA section is no character data to expat */
			struct xml_slice val = xml_tok_value(v, i, scratch);

			if (!in_text && val.len) {
				buf_putc(b, 'T');
				in_text = true;
			}
			put_slice(b, val);
			break;
		}
		case XML_TOK_END:
			if (t->a != parent)
				broken(r, "token %u: END of %u closes %u", i, t->a, parent);
			else
				parent = v->tok[parent].b;
			buf_putc(b, '/');
			buf_putc(b, RS);
			break;
		default:
			broken(r, "token %u: type %u", i, t->type);
		}
	}
	if (in_text)
		buf_putc(b, RS);
	if (attrs_left)
		broken(r, "last ELEM: %u ATTR tokens missing", attrs_left);
	if (!header && parent != XML_NO_TOK)
		broken(r, "element %u never ended", parent);
}

/* The router's fields must agree with a plain search of the tokens. */
static void check_info(const struct xml_view *v, struct sz_run *r)
{
	const struct xml_stanza_info *in = &v->info;
	static const char *const names[] = { "to", "from", "type", "id" };
	const uint32_t got[] = { in->to, in->from, in->type, in->id };

	for (int i = 0; i < 4; i++)
		if (got[i] != xml_attr_find(v, 0, names[i], NULL))
			broken(r, "info.%s = %u, xml_attr_find says %u", names[i], got[i],
			       xml_attr_find(v, 0, names[i], NULL));
	if (in->lang != xml_attr_find(v, 0, "lang", XML_NS_URI))
		broken(r, "info.lang = %u", in->lang);
	if (in->child != xml_first_child(v, 0))
		broken(r, "info.child = %u, xml_first_child says %u", in->child, xml_first_child(v, 0));
}

static void poison(char *p, size_t n)
{
	/* markup a scanner would act on: reading it changes the answer */
	static const char junk[POISON + 1] =
		"</a>'\"&<![CDATA[<!--]]>/></a>'\"&<![CDATA[<!--]]>/></a>'\"&<![CDAT";

	for (; n > POISON; n -= POISON, p += POISON)
		memcpy(p, junk, POISON);
	memcpy(p, junk, n);
}

/* Feed doc[0..len) in chunks ending at cuts[0..ncut) (the last is len) the
 * way a connection does: append, call xml_frame until XML_AGAIN, drop
 * span.end bytes after every event. move: the unconsumed bytes change
 * buffers between reads, as a caller compacting into a new buffer would. */
static void sz_feed(const char *doc, size_t len, const size_t *cuts, size_t ncut, bool move, struct sz_run *r)
{
	struct xml_framer f;
	struct xml_nsctx ctx;
	size_t fed = 0, have = 0;
	int cur = 0;
	char *b = rx[0];

	r->state = SZ_INCOMPLETE;
	r->err = XML_ERR_NONE;
	r->ev.len = 0;
	r->err_at = 0;
	memset(&ctx, 0, sizeof(ctx));
	xml_framer_init(&f, &lim);
	for (size_t c = 0; c < ncut; c++) {
		if (move && (c & 15) == 1) {
			memcpy(rx[cur ^ 1], b, have);
			poison(b, have + POISON < rx_cap ? have + POISON : rx_cap);
			cur ^= 1;
			b = rx[cur];
		}
		memcpy(b + have, doc + fed, cuts[c] - fed);
		have += cuts[c] - fed;
		fed = cuts[c];
		poison(b + have, POISON);
		for (;;) {
			struct xml_span sp = { UINT32_MAX, UINT32_MAX };
			enum xml_event e = xml_frame(&f, b, have, &sp);
			size_t at = fed - have;   /* stream offset of b[0] */

			if (e != XML_ERROR && (sp.start > sp.end || sp.end > have)) {
				broken(r, "event %d: span [%u, %u) outside %zu bytes", e, sp.start, sp.end, have);
				return;
			}
			switch (e) {
			case XML_AGAIN:
				break;
			case XML_STREAM_OPEN:
				if (r->state != SZ_INCOMPLETE || r->ev.len) {
					broken(r, "second STREAM_OPEN at %zu", at + sp.start);
					return;
				}
				if (xml_view_header(&view, &ctx, b + sp.start, sp.end - sp.start) != 0) {
					r->state = SZ_ERROR;
					r->err = view.err;
					r->err_at = at + sp.start;
					return;
				}
				walk(&view, true, r);
				break;
			case XML_STANZA:
				if (!r->ev.len) {
					broken(r, "STANZA before STREAM_OPEN at %zu", at + sp.start);
					return;
				}
				if (xml_view_build(&view, &ctx, b + sp.start, sp.end - sp.start) != 0) {
					r->state = SZ_ERROR;
					r->err = view.err;
					r->err_at = at + sp.start;
					return;
				}
				if (view.base != b + sp.start || view.len != sp.end - sp.start)
					broken(r, "view of [%u, %u) has base +%td len %u", sp.start, sp.end,
					       view.base - b, view.len);
				walk(&view, false, r);
				check_info(&view, r);
				break;
			case XML_STREAM_CLOSE:
				r->err = xml_check_close(&ctx, b + sp.start, sp.end - sp.start);
				if (r->err != XML_ERR_NONE) {
					r->state = SZ_ERROR;
					r->err_at = at + sp.start;
					return;
				}
				if (r->state == SZ_CLOSED) {
					broken(r, "second STREAM_CLOSE");
					return;
				}
				r->state = SZ_CLOSED;
				r->close_end = at + sp.end;
				buf_putc(&r->ev, 'C');
				buf_putc(&r->ev, RS);
				break;
			case XML_ERROR:
				if (r->state == SZ_CLOSED) {
					broken(r, "XML_ERROR after STREAM_CLOSE");
					return;
				}
				r->state = SZ_ERROR;
				r->err = f.err;
				r->err_at = at + f.pos;
				if (f.err == XML_ERR_NONE)
					broken(r, "XML_ERROR with err NONE");
				return;
			default:
				broken(r, "xml_frame returned %d", e);
				return;
			}
			if (r->state == SZ_BROKEN)
				return;
			memmove(b, b + sp.end, have - sp.end);
			have -= sp.end;
			poison(b + have, POISON);
			if (e == XML_AGAIN)
				break;
		}
	}
}

/* ---- feeding plans ----------------------------------------------------- */

static size_t *cuts;

static size_t plan_random(size_t len)
{
	size_t n = 0, pos = 0;
	size_t style = rnd_below(5);

	while (pos < len) {
		size_t step;

		switch (style) {
		case 0: step = 1; break;
		case 1: step = 1 + rnd_below(8); break;
		case 2: step = 1 + rnd_below(64); break;
		case 3: step = 1 + rnd_below(len / 3 + 1); break;
		default: step = rnd_below(4) ? 1 + rnd_below(4) : 1 + rnd_below(256); break;
		}
		pos = pos + step < len ? pos + step : len;
		cuts[n++] = pos;
	}
	return n;
}

/* ---- reporting --------------------------------------------------------- */

static unsigned failures;
#define MAX_REPORTS 25

static void print_escaped(FILE *out, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == FS)
			fputs(" | ", out);
		else if (c == RS)
			fputs(" ;; ", out);
		else if (c < 0x20 || c >= 0x7f || c == '\\')
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
}

static void show_events(const char *who, const struct buf *b, size_t at)
{
	size_t from = at > 120 ? at - 120 : 0;
	size_t to = at + 120 < b->len ? at + 120 : b->len;

	fprintf(stderr, "    %-7s ...", who);
	print_escaped(stderr, b->p + from, to - from);
	fprintf(stderr, "...\n");
}

static const char *err_name(enum xml_error e)
{
	const char *s = xml_error_condition(e);
	return s ? s : "none";
}

static void describe(const struct sz_run *r, char *out, size_t n)
{
	switch (r->state) {
	case SZ_INCOMPLETE: snprintf(out, n, "incomplete (no stream close)"); break;
	case SZ_CLOSED:     snprintf(out, n, "closed at %zu", r->close_end); break;
	case SZ_ERROR:      snprintf(out, n, "error %s (item at %zu)", err_name(r->err), r->err_at); break;
	case SZ_BROKEN:     snprintf(out, n, "API contract broken: %s", r->why); break;
	}
}

static void fail(const char *fmt, ...)
{
	va_list ap;

	if (++failures > MAX_REPORTS)
		return;
	fputs("FAIL ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Compare a run with the expected events; report with context. */
static bool same_events(const char *name, const char *how, const struct buf *want, const struct sz_run *r)
{
	char d[256];
	size_t i = 0;

	if (r->state == SZ_CLOSED && buf_eq(want, &r->ev))
		return true;
	describe(r, d, sizeof(d));
	fail("%s [%s, %s]: stanzad %s", name, simd_level_name(simd_current()), how, d);
	if (failures <= MAX_REPORTS) {
		while (i < want->len && i < r->ev.len && want->p[i] == r->ev.p[i])
			i++;
		if (i < want->len || i < r->ev.len) {
			fprintf(stderr, "    events part at byte %zu:\n", i);
			show_events("expat", want, i);
			show_events("stanzad", &r->ev, i);
		}
	}
	return false;
}

/* ---- corpus ------------------------------------------------------------ */

struct file {
	char *name;
	char *data;
	size_t len;
};

static int cmp_name(const void *a, const void *b)
{
	return strcmp(((const struct file *)a)->name, ((const struct file *)b)->name);
}

static char *read_all(FILE *fp, const char *path, size_t *len)
{
	long sz;
	char *p;

	if (fseek(fp, 0, SEEK_END) != 0 || (sz = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
		perror(path);
		exit(2);
	}
	p = xmalloc((size_t)sz);
	if (fread(p, 1, (size_t)sz, fp) != (size_t)sz) {
		perror(path);
		exit(2);
	}
	*len = (size_t)sz;
	return p;
}

/* Append the .xml files of dir, sorted, to *files. */
static size_t load_dir(const char *dir, const char *tag, bool wrap, struct file **files, size_t n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t first = n;

	if (!d) {
		perror(dir);
		exit(2);
	}
	while ((de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		char path[4096];
		FILE *fp;
		long sz;
		struct file *f;

		if (nl < 5 || strcmp(de->d_name + nl - 4, ".xml") != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		fp = fopen(path, "rb");
		if (!fp || fseek(fp, 0, SEEK_END) != 0 || (sz = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
			perror(path);
			exit(2);
		}
		*files = realloc(*files, (n + 1) * sizeof(**files));
		if (!*files) {
			perror("realloc");
			exit(2);
		}
		f = &(*files)[n++];
		f->name = xmalloc(strlen(tag) + nl + 2);
		sprintf(f->name, "%s/%s", tag, de->d_name);
		f->len = (size_t)sz + (wrap ? sizeof(stream_head) + sizeof(stream_tail) - 2 : 0);
		f->data = xmalloc(f->len);
		if (wrap)
			memcpy(f->data, stream_head, sizeof(stream_head) - 1);
		if (fread(f->data + (wrap ? sizeof(stream_head) - 1 : 0), 1, (size_t)sz, fp) != (size_t)sz) {
			perror(path);
			exit(2);
		}
		if (wrap)
			memcpy(f->data + f->len - (sizeof(stream_tail) - 1), stream_tail, sizeof(stream_tail) - 1);
		fclose(fp);
	}
	closedir(d);
	qsort(*files + first, n - first, sizeof(**files), cmp_name);
	return n;
}

static enum simd_level levels_top;

static void set_level(enum simd_level l)
{
	if (simd_set_level(l) != l) {
		fprintf(stderr, "simd_set_level(%s) failed\n", simd_level_name(l));
		exit(2);
	}
}

/* Pass 1: every corpus stream, every feeding, every level. */
static void pass_corpus(const struct file *files, size_t nfiles)
{
	struct buf want = { 0 };
	struct sz_run r = { 0 };
	unsigned long runs = 0;
	unsigned bad_files = 0;

	for (size_t i = 0; i < nfiles; i++) {
		const struct file *f = &files[i];
		unsigned before = failures;
		char how[64];

		if (!expat_run(f->data, f->len, &want, NULL)) {
			fail("%s: expat rejects a corpus stream (regenerate the corpus?)", f->name);
			continue;
		}
		for (int l = levels_top; l >= SIMD_SCALAR && failures == before; l--) {
			int nrand = l == (int)levels_top ? RANDOM_SPLITS_TOP : RANDOM_SPLITS_OTHER;

			set_level((enum simd_level)l);
			cuts[0] = f->len;
			sz_feed(f->data, f->len, cuts, 1, false, &r);
			runs++;
			if (!same_events(f->name, "one chunk", &want, &r))
				break;
			if (f->len <= EVERY_SPLIT_MAX) {
				for (size_t k = 1; k < f->len; k++) {
					cuts[0] = k;
					cuts[1] = f->len;
					sz_feed(f->data, f->len, cuts, 2, false, &r);
					runs++;
					snprintf(how, sizeof(how), "split at %zu", k);
					if (!same_events(f->name, how, &want, &r))
						break;
				}
			}
			for (int k = 0; k < nrand && failures == before; k++) {
				uint64_t s = rng_state;
				size_t n = plan_random(f->len);

				sz_feed(f->data, f->len, cuts, n, k & 1, &r);
				runs++;
				snprintf(how, sizeof(how), "%zu random chunks, rng %016llx", n, (unsigned long long)s);
				same_events(f->name, how, &want, &r);
			}
		}
		bad_files += failures != before;
	}
	printf("corpus: %zu streams, %lu feedings, %u streams failed\n", nfiles, runs, bad_files);
	free(want.p);
	free(r.ev.p);
}

/* Pass 2: each bad stream fails with the error its name starts with, at
 * every split and level. */
static void pass_bad(const struct file *files, size_t nfiles)
{
	struct sz_run r = { 0 };
	struct buf scratch_ev = { 0 };
	unsigned seen[XML_ERR_POLICY_VIOLATION + 1] = { 0 };

	for (size_t i = 0; i < nfiles; i++) {
		const struct file *f = &files[i];
		const char *base = strchr(f->name, '/') + 1;
		enum xml_error want = XML_ERR_NONE;
		size_t best = 0;
		unsigned before = failures;

		for (int e = XML_ERR_NOT_WELL_FORMED; e <= XML_ERR_POLICY_VIOLATION; e++) {
			const char *c = xml_error_condition((enum xml_error)e);
			size_t cl = c ? strlen(c) : 0;

			if (cl > best && strncmp(base, c, cl) == 0 && (base[cl] == '-' || base[cl] == '.')) {
				want = (enum xml_error)e;
				best = cl;
			}
		}
		if (want == XML_ERR_NONE) {
			fail("%s: name does not start with a stream error condition", f->name);
			continue;
		}
		seen[want]++;
		if ((want == XML_ERR_NOT_WELL_FORMED || want == XML_ERR_BAD_NAMESPACE_PREFIX) &&
		    expat_run(f->data, f->len, &scratch_ev, NULL))
			fail("%s: expat accepts it", f->name);
		for (int l = levels_top; l >= SIMD_SCALAR && failures == before; l--) {
			set_level((enum simd_level)l);
			for (size_t k = 0; k < f->len && failures == before; k++) {
				char d[256];

				cuts[0] = k ? k : f->len;
				cuts[1] = f->len;
				sz_feed(f->data, f->len, cuts, k ? 2 : 1, false, &r);
				if (r.state == SZ_ERROR && r.err == want)
					continue;
				describe(&r, d, sizeof(d));
				fail("%s [%s, %s %zu]: want %s, stanzad %s", f->name, simd_level_name(l),
				     k ? "split at" : "one chunk", k, err_name(want), d);
			}
		}
	}
	printf("bad: %zu streams:", nfiles);
	for (int e = XML_ERR_NOT_WELL_FORMED; e <= XML_ERR_POLICY_VIOLATION; e++)
		printf(" %s %u", err_name((enum xml_error)e), seen[e]);
	printf("\n");
	free(r.ev.p);
	free(scratch_ev.p);
}

/* ---- mutants ----------------------------------------------------------- */

/* The first SINGLES are single structural characters, inserted most
 * often; the rest aim at the rules where two parsers tend to part: names,
 * namespace declarations, references, CDATA, non-ASCII. */
#define SINGLES 13
static const char *const snippets[] = {
	"<", "&", ">", "'", "\"", "/", "]]>", "=", ":", ";", "#", " ", "\r",
	"<!--x-->", "<?pi x?>", "<![CDATA[x]]>", "<![CDATA[", "<![CDATA[]]>", "]]", "]]]>", "\t", "\r\n",
	"&amp;", "&lt;", "&foo;", "&AMP;", "&am;", "&#65;", "&#x0;", "&#32;", "&#xD;", "&#x10FFFF;",
	"&#x110000;", "&#xFFFE;", "&#65", "&#;", "&#x;", "&#x41;", "&#0065;",
	"xmlns:p='urn:p'", " xmlns='urn:d'", " xmlns=''", " xmlns:p=''", " xmlns:xml='urn:x'",
	" xmlns:xmlns='urn:x'", " xmlns:p='http://www.w3.org/XML/1998/namespace'", " xml:lang='x'",
	" xmlns:xml='http://www.w3.org/XML/1998/namespace'", " xmlns:p='http://www.w3.org/2000/xmlns/'",
	" p:a='1'", " a='1'", " a:='1'", "p:", "xml:", "xmlns", "xmlns:", "<a>", "</a>", "<a/>", "<p:a/>",
	"</>", "<a:b:c/>", "<a: b/>", "<:a/>", "<a =''/>", "<a\t/>", "< a/>", "</ a>",
	"\xc3\xa9", "<\xc3\xa9/>", "<a\xc2\xb7/>", "<\xc2\xb7/>", "<\xcc\x80/>", "<a\xcc\x80/>", "<\xcd\xbe/>",
	"<\xe2\x80\x8c/>", "<a\xe2\x80\xbf/>", "<\xf0\x90\x80\x80/>", "<\xef\xbf\xbd/>", "<\xe3\x80\x81/>",
	"\xef\xbf\xbe", "\xed\xa0\x80", "\xc2\x85", "\xe2\x80\xa8", "\xf4\x8f\xbf\xbf", "\xee\x80\x80",
	"<!DOCTYPE a>", "<!ELEMENT a ANY>", "<!x>", "<!", "<?", "?>", "<?xml version='1.0'?>",
};


/* One random edit of m (room for cap bytes). *low is the lowest offset
 * touched, to tell edits of the stream header from the rest. */
static size_t mutate(char *m, size_t len, size_t cap, size_t *low)
{
	size_t at = rnd_below(len + 1), n;

	switch (rnd_below(6)) {
	case 0: /* flip a bit */
		if (!len)
			return len;
		at = rnd_below(len);
		m[at] ^= (char)(1u << rnd_below(8));
		break;
	case 1: { /* insert markup */
		const char *s = snippets[rnd_below(rnd_below(3) ? SINGLES : sizeof(snippets) / sizeof(*snippets))];

		n = strlen(s);
		if (len + n > cap)
			return len;
		memmove(m + at + n, m + at, len - at);
		memcpy(m + at, s, n);
		len += n;
		break;
	}
	case 2: /* delete a range */
		n = 1 + rnd_below(8);
		if (at + n > len)
			n = len - at;
		memmove(m + at, m + at + n, len - at - n);
		len -= n;
		break;
	case 3: { /* duplicate a range elsewhere */
		char dup[48];
		size_t src = rnd_below(len + 1);

		n = rnd_below(sizeof(dup));
		if (src + n > len)
			n = len - src;
		if (len + n > cap)
			return len;
		memcpy(dup, m + src, n);
		memmove(m + at + n, m + at, len - at);
		memcpy(m + at, dup, n);
		len += n;
		break;
	}
	case 4: { /* overwrite a byte with a structural one */
		static const char structural[] = "<>&'\"/=!?[]: ";

		if (!len)
			return len;
		at = rnd_below(len);
		m[at] = structural[rnd_below(sizeof(structural) - 1)];
		break;
	}
	default: /* swap a byte with its neighbour */
		if (len < 2)
			return len;
		at = rnd_below(len - 1);
		n = (unsigned char)m[at];
		m[at] = m[at + 1];
		m[at + 1] = (char)n;
		break;
	}
	if (at < *low)
		*low = at;
	return len;
}

enum kind {
	K_AGREE_ACCEPT, K_AGREE_REJECT,
	/* stanzad stricter, by design */
	K_RESTRICTED, K_STREAM_TEXT, K_HEADER, K_LIMIT,
	/* stanzad laxer, by design: it reads nothing after the stream close */
	K_AFTER_CLOSE,
	/* stanzad takes names by XML 1.0 fifth edition, expat by the fourth */
	K_NAMES_5E,
	/* bugs */
	K_EVENTS_DIFFER, K_STANZAD_STRICTER, K_STANZAD_LAXER, K_SPLIT_DEPENDENT, K_LEVEL_DEPENDENT, K_BROKEN,
	K_COUNT
};

static const char *const kind_name[K_COUNT] = {
	[K_AGREE_ACCEPT] = "both accept, same events",
	[K_AGREE_REJECT] = "both reject",
	[K_RESTRICTED] = "stanzad stricter: comment/PI/DTD (restricted-xml)",
	[K_STREAM_TEXT] = "stanzad stricter: text at stream level (bad-format)",
	[K_HEADER] = "stanzad stricter: stream header checks",
	[K_LIMIT] = "stanzad stricter: limits (policy-violation)",
	[K_AFTER_CLOSE] = "stanzad ignores bytes after the stream close",
	[K_NAMES_5E] = "stanzad laxer: non-ASCII name characters of XML 1.0 5th edition",
	[K_EVENTS_DIFFER] = "BUG both accept, events differ",
	[K_STANZAD_STRICTER] = "BUG stanzad rejects what expat accepts",
	[K_STANZAD_LAXER] = "BUG stanzad accepts what expat rejects",
	[K_SPLIT_DEPENDENT] = "BUG result depends on the chunking",
	[K_LEVEL_DEPENDENT] = "BUG result depends on the SIMD level",
	[K_BROKEN] = "BUG API contract broken",
};

static bool same_run(const struct sz_run *a, const struct sz_run *b)
{
	if (a->state != b->state || a->err != b->err)
		return false;
	if (a->state == SZ_CLOSED && a->close_end != b->close_end)
		return false;
	return buf_eq(&a->ev, &b->ev);
}

/* Keep a failing stream as diff_expat-fail-N.xml in the working directory,
 * for diff_expat --one. */
static void save_failure(const char *m, size_t len)
{
	static unsigned saved;
	char path[64];
	FILE *fp;

	if (saved >= 10)
		return;
	snprintf(path, sizeof(path), "diff_expat-fail-%u.xml", ++saved);
	fp = fopen(path, "wb");
	if (!fp || fwrite(m, 1, len, fp) != len || fclose(fp) != 0) {
		perror(path);
		return;
	}
	fprintf(stderr, "    saved as %s\n", path);
}

static enum kind classify(const char *m, size_t len, size_t low, struct sz_run *r, size_t *hdr_end, bool nested);

/* XML 1.0 fifth edition, 2.3, above ASCII: 1 NameStartChar, 2 NameChar
 * only, 0 neither. */
static int name_class_5e(uint32_t c)
{
	static const uint32_t start[][2] = {
		{ 0xC0, 0xD6 }, { 0xD8, 0xF6 }, { 0xF8, 0x2FF }, { 0x370, 0x37D }, { 0x37F, 0x1FFF },
		{ 0x200C, 0x200D }, { 0x2070, 0x218F }, { 0x2C00, 0x2FEF }, { 0x3001, 0xD7FF },
		{ 0xF900, 0xFDCF }, { 0xFDF0, 0xFFFD }, { 0x10000, 0xEFFFF },
	};

	for (size_t i = 0; i < sizeof(start) / sizeof(start[0]); i++)
		if (c >= start[i][0] && c <= start[i][1])
			return 1;
	if (c == 0xB7 || (c >= 0x300 && c <= 0x36F) || (c >= 0x203F && c <= 0x2040))
		return 2;
	return 0;
}

/* Copy m with every non-ASCII character that XML 1.0 fifth edition allows
 * in names replaced by as many ASCII bytes of the same class ('x' may start
 * a name, '0' may not). Returns false if there was none. */
static bool names_to_ascii(const char *m, size_t len, char *out)
{
	bool any = false;

	for (size_t i = 0; i < len;) {
		const unsigned char *u = (const unsigned char *)m + i;
		size_t n = u[0] >= 0xF0 ? 4 : u[0] >= 0xE0 ? 3 : u[0] >= 0xC0 ? 2 : 1;
		uint32_t c = n == 4 ? u[0] & 7u : n == 3 ? u[0] & 15u : u[0] & 31u;
		int k = 0;

		if (n > 1 && i + n <= len) {
			size_t j = 1;

			for (; j < n && (u[j] & 0xC0) == 0x80; j++)
				c = c << 6 | (u[j] & 0x3Fu);
			if (j == n)
				k = name_class_5e(c);
		}
		if (k) {
			memset(out + i, k == 1 ? 'x' : '0', n);
			any = true;
		} else {
			out[i] = m[i];
			n = 1;
		}
		i += n;
	}
	return any;
}

/* stanzad accepted what expat refused: is it only that expat judges names
 * by the fourth edition's character classes and stanzad by the fifth's? */
static enum kind classify_names(const char *m, size_t len, size_t low)
{
	static char *fix;
	static size_t fix_cap;
	static struct sz_run r2;
	size_t dummy;
	enum kind kd;

	if (len > fix_cap) {
		free(fix);
		fix_cap = len + 1024;
		fix = xmalloc(fix_cap);
	}
	if (!names_to_ascii(m, len, fix))
		return K_STANZAD_LAXER;
	cuts[0] = len;
	sz_feed(fix, len, cuts, 1, false, &r2);
	kd = classify(fix, len, low, &r2, &dummy, true);
	return kd == K_AGREE_ACCEPT || kd == K_AFTER_CLOSE ? K_NAMES_5E : K_STANZAD_LAXER;
}

/* stanzad rejected the edited header m[0..hdr_end): with the original put
 * back, do the two agree? Then the header alone made the difference. */
static enum kind classify_header(const char *m, size_t len, size_t hdr_end)
{
	static char *fix;
	static size_t fix_cap;
	static struct sz_run r2;
	size_t head = sizeof(stream_head) - 1, n = head + len - hdr_end, dummy;
	enum kind kd;

	if (n > fix_cap) {
		free(fix);
		fix_cap = n + 1024;
		fix = xmalloc(fix_cap);
	}
	memcpy(fix, stream_head, head);
	memcpy(fix + head, m + hdr_end, len - hdr_end);
	cuts[0] = n;
	sz_feed(fix, n, cuts, 1, false, &r2);
	kd = classify(fix, n, SIZE_MAX, &r2, &dummy, true);
	return kd == K_AGREE_ACCEPT || kd == K_AGREE_REJECT ? K_HEADER : kd;
}

/* Why do expat and stanzad (run r) agree or not on m? low: the lowest
 * offset an edit touched. */
static enum kind classify(const char *m, size_t len, size_t low, struct sz_run *r, size_t *hdr_end, bool nested)
{
	static struct buf want, tmp;
	struct ex_seen seen;
	bool ex_ok = expat_run(m, len, &want, &seen);

	*hdr_end = seen.hdr_end;
	if (r->state == SZ_BROKEN)
		return K_BROKEN;
	if (r->state == SZ_CLOSED) {
		if (ex_ok)
			return buf_eq(&want, &r->ev) ? K_AGREE_ACCEPT : K_EVENTS_DIFFER;
		/* stanzad stopped reading at its close: expat must accept that much */
		if (r->close_end < len && expat_run(m, r->close_end, &tmp, NULL))
			return buf_eq(&tmp, &r->ev) ? K_AFTER_CLOSE : K_EVENTS_DIFFER;
		return nested ? K_STANZAD_LAXER : classify_names(m, len, low);
	}
	if (!ex_ok)
		return K_AGREE_REJECT;
	if (r->state == SZ_ERROR) {
		switch (r->err) {
		case XML_ERR_RESTRICTED_XML:
			if (seen.comment || seen.pi || seen.dtd)
				return K_RESTRICTED;
			break;
		case XML_ERR_BAD_FORMAT:
			if (seen.stream_text)
				return K_STREAM_TEXT;
			break;
		case XML_ERR_INVALID_NAMESPACE:
			if (seen.root_not_stream)
				return K_HEADER;
			break;
		case XML_ERR_POLICY_VIOLATION:
			return K_LIMIT;
		default:
			break;
		}
	}
	if (low < seen.hdr_end)
		return classify_header(m, len, seen.hdr_end);
	return K_STANZAD_STRICTER;
}

/* One report per kind of failure and stanzad verdict (offsets aside):
 * one bug tends to show in many mutants. */
static bool first_of_its_kind(enum kind kd, const char *verdict)
{
	static char seen[64][96];
	static unsigned nseen;
	char key[96];
	size_t n = (size_t)snprintf(key, sizeof(key), "%d:", kd);

	for (; *verdict && n < sizeof(key) - 1; verdict++)
		if (*verdict < '0' || *verdict > '9')
			key[n++] = *verdict;
	key[n] = '\0';
	for (unsigned i = 0; i < nseen; i++)
		if (strcmp(seen[i], key) == 0)
			return false;
	if (nseen < 64)
		strcpy(seen[nseen++], key);
	return true;
}

/* nedge: the last files, hand-written edge cases, mutated more often than
 * their number alone would give. */
static void pass_mutants(const struct file *files, size_t nfiles, size_t nedge, size_t count)
{
	unsigned long kinds[K_COUNT] = { 0 };
	bool shown[K_COUNT] = { false };
	unsigned headers_shown = 0;
	struct sz_run whole = { 0 }, split = { 0 };
	size_t cap = 0;
	char *m;

	for (size_t i = 0; i < nfiles; i++)
		if (files[i].len > cap)
			cap = files[i].len;
	cap += 512;
	m = xmalloc(cap);
	printf("mutants: %zu\n", count);
	for (size_t k = 0; k < count; k++) {
		const struct file *f = rnd_below(4) || !nedge ? &files[rnd_below(nfiles)]
							      : &files[nfiles - nedge + rnd_below(nedge)];
		size_t len = f->len, low = SIZE_MAX, hdr_end;
		int edits = 1 + (int)rnd_below(3);
		enum kind kd;
		char d[256], d2[256];
		bool by_split;
		size_t nsplit = 0;

		memcpy(m, f->data, len);
		while (edits--)
			len = mutate(m, len, cap, &low);

		set_level(levels_top);
		cuts[0] = len;
		sz_feed(m, len, cuts, 1, false, &whole);
		kd = classify(m, len, low, &whole, &hdr_end, false);
		by_split = false;
		if (kd < K_EVENTS_DIFFER) {
			/* The verdict must not depend on chunking or level. */
			for (int l = levels_top; l >= SIMD_SCALAR; l--) {
				set_level((enum simd_level)l);
				if (l != (int)levels_top) {
					cuts[0] = len;
					sz_feed(m, len, cuts, 1, false, &split);
					nsplit = 1;
					if (!same_run(&whole, &split)) {
						kd = split.state == SZ_BROKEN ? K_BROKEN : K_LEVEL_DEPENDENT;
						by_split = true;
						break;
					}
				}
				nsplit = plan_random(len);
				sz_feed(m, len, cuts, nsplit, true, &split);
				if (!same_run(&whole, &split)) {
					kd = split.state == SZ_BROKEN ? K_BROKEN : K_SPLIT_DEPENDENT;
					by_split = true;
					break;
				}
			}
		}
		kinds[kd]++;
		describe(&whole, d, sizeof(d));
		if (kd >= K_EVENTS_DIFFER && !first_of_its_kind(kd, d)) {
			failures++;
		} else if (kd >= K_EVENTS_DIFFER) {
			if (by_split) {
				describe(&split, d2, sizeof(d2));
				fail("mutant %zu of %s: %s; stanzad at %s in one chunk: %s; at %s in %zu chunks: %s",
				     k, f->name, kind_name[kd], simd_level_name(levels_top), d,
				     simd_level_name(simd_current()), nsplit, d2);
			} else {
				fail("mutant %zu of %s: %s; stanzad: %s", k, f->name, kind_name[kd], d);
			}
			if (failures <= MAX_REPORTS) {
				fprintf(stderr, "    stream: ");
				print_escaped(stderr, m, len);
				fputc('\n', stderr);
				save_failure(m, len);
			}
		} else if (kd == K_HEADER && whole.err != XML_ERR_INVALID_NAMESPACE && headers_shown < 8 &&
			   hdr_end <= len) {
			/* by design, but worth a human look */
			printf("  header refused, %s: ", d);
			print_escaped(stdout, m, hdr_end);
			putchar('\n');
			headers_shown++;
		} else if (kd != K_AGREE_ACCEPT && kd != K_AGREE_REJECT && !shown[kd]) {
			printf("  first of \"%s\": %s, stanzad %s\n    ", kind_name[kd], f->name, d);
			print_escaped(stdout, m, len < 400 ? len : 400);
			putchar('\n');
		}
		shown[kd] = true;
	}
	for (int i = 0; i < K_COUNT; i++)
		if (kinds[i] || i < K_EVENTS_DIFFER)
			printf("  %8lu  %s\n", kinds[i], kind_name[i]);
	free(m);
	free(whole.ev.p);
	free(split.ev.p);
}

/* Storage for views; sized for streams up to maxlen bytes. */
static void setup(size_t maxlen)
{
	uint32_t ntok;
	uint16_t nns;

	xml_limits_default(&lim);
	ntok = xml_view_storage_tokens(&lim);
	nns = (uint16_t)(2 + XML_NSCTX_MAX + lim.max_ns);
	view_tok = xmalloc(ntok * sizeof(*view_tok));
	view_ns = xmalloc(nns * sizeof(*view_ns));
	view_scope = xmalloc(SCOPE_CAP * sizeof(*view_scope));
	xml_view_init(&view, &lim, view_tok, ntok, view_ns, nns, view_scope, SCOPE_CAP);
	scratch = xmalloc(maxlen);
	rx_cap = maxlen + POISON;
	rx[0] = xmalloc(rx_cap);
	rx[1] = xmalloc(rx_cap);
	cuts = xmalloc((maxlen + 1) * sizeof(*cuts));
}

static void teardown(void)
{
	free(view_tok);
	free(view_ns);
	free(view_scope);
	free(scratch);
	free(rx[0]);
	free(rx[1]);
	free(cuts);
}

/* --one: both verdicts and event lists for one whole stream, to study
 * (and shrink) a failure by hand. */
static int run_one(const char *path)
{
	struct sz_run r = { 0 };
	struct buf want = { 0 };
	struct ex_seen seen;
	size_t len;
	char *data, d[256];
	bool ok;
	FILE *fp = fopen(path, "rb");

	if (!fp) {
		perror(path);
		return 2;
	}
	data = read_all(fp, path, &len);
	fclose(fp);
	setup(len + 1024);
	ok = expat_run(data, len, &want, &seen);
	printf("expat: %s\n  ", ok ? "accepts" : "rejects");
	print_escaped(stdout, want.p, want.len);
	for (int l = simd_detect(); l >= SIMD_SCALAR; l--) {
		set_level((enum simd_level)l);
		cuts[0] = len;
		sz_feed(data, len, cuts, 1, false, &r);
		describe(&r, d, sizeof(d));
		printf("\nstanzad [%s]: %s\n  ", simd_level_name(l), d);
		print_escaped(stdout, r.ev.p, r.ev.len);
	}
	putchar('\n');
	free(data);
	free(want.p);
	free(r.ev.p);
	teardown();
	return 0;
}

int main(int argc, char **argv)
{
	struct file *files = NULL, *bad = NULL;
	size_t nfiles, nedge, nbad, maxlen = 0;
	uint64_t seed = 0x5354414e5a41ull;
	char dir[4096];
	clock_t t0 = clock();

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s CORPUS_DIR [SEED]\n       %s --one STREAM_FILE\n", argv[0], argv[0]);
		return 2;
	}
	if (argc == 3 && strcmp(argv[1], "--one") == 0)
		return run_one(argv[2]);
	if (argc == 3)
		seed = strtoull(argv[2], NULL, 0);
	rng_state = seed;
	printf("seed %#llx\n", (unsigned long long)seed);

	snprintf(dir, sizeof(dir), "%s/xeps", argv[1]);
	nfiles = load_dir(dir, "xeps", true, &files, 0);
	snprintf(dir, sizeof(dir), "%s/valid", argv[1]);
	nedge = load_dir(dir, "valid", true, &files, nfiles) - nfiles;
	nfiles += nedge;
	snprintf(dir, sizeof(dir), "%s/bad", argv[1]);
	nbad = load_dir(dir, "bad", false, &bad, 0);
	for (size_t i = 0; i < nfiles; i++)
		maxlen = files[i].len > maxlen ? files[i].len : maxlen;
	for (size_t i = 0; i < nbad; i++)
		maxlen = bad[i].len > maxlen ? bad[i].len : maxlen;
	setup(maxlen + 1024);   /* mutants grow, and get a new header */

	levels_top = simd_detect();
	printf("SIMD levels: %s..%s\n", simd_level_name(SIMD_SCALAR), simd_level_name(levels_top));

	pass_corpus(files, nfiles);
	pass_bad(bad, nbad);
	pass_mutants(files, nfiles, nedge, MUTANTS);

	printf("%.1f s, %u failures%s\n", (double)(clock() - t0) / CLOCKS_PER_SEC, failures,
	       failures > MAX_REPORTS ? " (first ones shown)" : "");
	for (size_t i = 0; i < nfiles; i++) {
		free(files[i].name);
		free(files[i].data);
	}
	for (size_t i = 0; i < nbad; i++) {
		free(bad[i].name);
		free(bad[i].data);
	}
	free(files);
	free(bad);
	teardown();
	return failures ? 1 : 0;
}
