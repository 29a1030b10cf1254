/* libexpat as Prosody (lxp) and ejabberd (fast_xml) drive it: namespace
 * processing on, the stream fed as it arrives, handlers that only count
 * here where the servers would start building their stanza objects. */
#include <stdbool.h>
#include <stdlib.h>

#include <expat.h>

#include "bench/parser/bench.h"

struct expat_state {
	struct run *r;
	unsigned depth;
};

static void XMLCALL on_start(void *ud, const XML_Char *name, const XML_Char **attrs)
{
	struct expat_state *s = ud;

	if (++s->depth == 2)
		s->r->stanzas++;
	for (; *attrs; attrs += 2)
		s->r->sink += (uint8_t)attrs[1][0];
	s->r->sink += (uint8_t)name[0];
}

static void XMLCALL on_end(void *ud, const XML_Char *name)
{
	struct expat_state *s = ud;

	s->depth--;
	s->r->sink += (uint8_t)name[0];
}

static void XMLCALL on_chars(void *ud, const XML_Char *text, int len)
{
	struct expat_state *s = ud;

	s->r->sink += (unsigned)len + (uint8_t)text[0];
}

void run_expat(const char *data, size_t len, size_t chunk, struct run *r)
{
	struct expat_state s = { r, 0 };
	/* A separator byte that XML names cannot hold, as lxp and fast_xml use. */
	XML_Parser p = XML_ParserCreateNS(NULL, '\x01');
	size_t off = 0;

	if (!p)
		abort();
	XML_SetUserData(p, &s);
	XML_SetElementHandler(p, on_start, on_end);
	XML_SetCharacterDataHandler(p, on_chars);
	for (;;) {
		size_t n = len - off < chunk ? len - off : chunk;
		bool final = off + n == len;

		if (XML_Parse(p, data + off, (int)n, final) != XML_STATUS_OK) {
			run_fail(r, "line %lu col %lu: %s", (unsigned long)XML_GetCurrentLineNumber(p),
				 (unsigned long)XML_GetCurrentColumnNumber(p),
				 XML_ErrorString(XML_GetErrorCode(p)));
			break;
		}
		off += n;
		if (final)
			break;
	}
	XML_ParserFree(p);
}
