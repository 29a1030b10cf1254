/* libxml2's SAX2 push parser: startElementNs/endElementNs/characters that
 * only count, no tree. */
#include <stdbool.h>
#include <stdlib.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>

#include "bench/parser/bench.h"

struct lx_state {
	struct run *r;
	unsigned depth;
};

static void on_start(void *ud, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri,
		     int nb_ns, const xmlChar **ns, int nb_attrs, int nb_defaulted,
		     const xmlChar **attrs)
{
	struct lx_state *s = ud;

	if (++s->depth == 2)
		s->r->stanzas++;
	/* Five pointers per attribute: local, prefix, URI, value, value end. */
	for (int i = 0; i < nb_attrs; i++)
		s->r->sink += (uint8_t)attrs[i * 5 + 3][0];
	s->r->sink += (uint8_t)local[0] + (unsigned)nb_ns;
}

static void on_end(void *ud, const xmlChar *local, const xmlChar *prefix, const xmlChar *uri)
{
	struct lx_state *s = ud;

	s->depth--;
	s->r->sink += (uint8_t)local[0];
}

static void on_chars(void *ud, const xmlChar *text, int len)
{
	struct lx_state *s = ud;

	s->r->sink += (unsigned)len + (uint8_t)text[0];
}

static void on_error(void *ud, xmlErrorPtr e)
{
	struct lx_state *s = ud;

	if (e && e->level >= XML_ERR_ERROR)
		run_fail(s->r, "line %d: %s", e->line, e->message ? e->message : "?");
}

void libxml2_bench_setup(void)
{
	xmlInitParser();
}

void run_libxml2(const char *data, size_t len, size_t chunk, struct run *r)
{
	struct lx_state s = { r, 0 };
	xmlSAXHandler sax = { 0 };
	xmlParserCtxtPtr ctxt;
	size_t off = 0;

	sax.initialized = XML_SAX2_MAGIC;
	sax.startElementNs = on_start;
	sax.endElementNs = on_end;
	sax.characters = on_chars;
	sax.ignorableWhitespace = on_chars;
	sax.serror = on_error;
	ctxt = xmlCreatePushParserCtxt(&sax, &s, NULL, 0, NULL);
	if (!ctxt)
		abort();
	/* HUGE lifts the 10 MB document limits; it changes no per-byte work. */
	xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_HUGE);
	for (;;) {
		size_t n = len - off < chunk ? len - off : chunk;
		bool final = off + n == len;

		if (xmlParseChunk(ctxt, data + off, (int)n, final) != 0 || r->err[0]) {
			run_fail(r, "xmlParseChunk failed in bytes %zu..%zu", off, off + n);
			break;
		}
		off += n;
		if (final)
			break;
	}
	if (!ctxt->wellFormed)
		run_fail(r, "not well-formed");
	if (ctxt->myDoc)
		xmlFreeDoc(ctxt->myDoc);
	xmlFreeParserCtxt(ctxt);
}
