/* stanzad's tokenizer doing what a worker does with a receive buffer:
 * xml_frame over the bytes as they arrive, xml_view_header on the stream
 * header, xml_view_build on every stanza (the index the router reads). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bench/parser/bench.h"
#include "parser/xml.h"

/* Per-worker view storage, made once as a worker would. */
static struct xml_limits lim;
static struct xml_view view;

void stanzad_bench_setup(void)
{
	uint32_t ntok;
	uint16_t nns;
	struct xml_token *tok;
	struct xml_ns *ns;
	uint16_t *scope;

	xml_limits_default(&lim);
	ntok = xml_view_storage_tokens(&lim);
	nns = (uint16_t)(2 + XML_NSCTX_MAX + lim.max_ns);
	tok = calloc(ntok, sizeof(*tok));
	ns = calloc(nns, sizeof(*ns));
	scope = calloc(nns, sizeof(*scope));
	if (!tok || !ns || !scope)
		abort();
	xml_view_init(&view, &lim, tok, ntok, ns, nns, scope, nns);
}

/* The buffer the framer sees is data[done..avail): every read extends it
 * in place by one chunk and every event drops what it consumed, as a
 * receive buffer that never needs compacting would. */
void run_stanzad(const char *data, size_t len, size_t chunk, struct run *r)
{
	struct xml_view *v = &view;
	struct xml_framer f;
	struct xml_nsctx ctx;
	struct xml_span sp;
	size_t done = 0, avail = 0;
	bool closed = false;

	memset(&ctx, 0, sizeof(ctx));
	xml_framer_init(&f, &lim);
	while (avail < len) {
		avail += len - avail < chunk ? len - avail : chunk;
		for (;;) {
			const char *p = data + done;
			enum xml_event ev = xml_frame(&f, p, avail - done, &sp);

			switch (ev) {
			case XML_AGAIN:
				break;
			case XML_STREAM_OPEN:
				if (xml_view_header(v, &ctx, p + sp.start, sp.end - sp.start) < 0) {
					run_fail(r, "stream header at byte %zu: %s", done + sp.start,
						 xml_error_condition(v->err));
					return;
				}
				break;
			case XML_STANZA:
				if (xml_view_build(v, &ctx, p + sp.start, sp.end - sp.start) < 0) {
					run_fail(r, "stanza at byte %zu (+%u): %s", done + sp.start,
						 v->err_off, xml_error_condition(v->err));
					return;
				}
				r->stanzas++;
				r->sink += v->ntok + v->info.to + v->info.child;
				break;
			case XML_STREAM_CLOSE:
				if (xml_check_close(&ctx, p + sp.start, sp.end - sp.start) != XML_ERR_NONE) {
					run_fail(r, "bad stream close at byte %zu", done + sp.start);
					return;
				}
				closed = true;
				break;
			case XML_ERROR:
				run_fail(r, "framing error near byte %zu: %s", done,
					 xml_error_condition((enum xml_error)f.err));
				return;
			}
			done += sp.end;
			if (ev == XML_AGAIN)
				break;
		}
	}
	if (!closed)
		run_fail(r, "stream not closed at end of input");
}
