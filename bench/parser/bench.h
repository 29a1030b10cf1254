/* The parsers parser-bench compares, one file each, behind one signature:
 * parse data[0..len) as one XMPP stream arriving in reads of `chunk` bytes,
 * count the top-level stanzas, and leave r->err empty unless it failed.
 *
 * Separate files, not one: libxml2's xmlerror.h and parser/xml-t.h both
 * define XML_ERR_NONE and XML_ERR_UNSUPPORTED_ENCODING, so no translation
 * unit can include both.
 */
#ifndef STANZA_BENCH_PARSER_BENCH_H
#define STANZA_BENCH_PARSER_BENCH_H

#include <stddef.h>
#include <stdint.h>

struct run {
	uint64_t stanzas;
	uint64_t sink;      /* folds in what the handlers saw, so no work is dead */
	char err[160];      /* empty when the stream parsed */
};

/* Records the first failure only: later ones are its consequences. */
void run_fail(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Per-process setup, once, before any run. */
void stanzad_bench_setup(void);
void libxml2_bench_setup(void);

void run_stanzad(const char *data, size_t len, size_t chunk, struct run *r);
void run_expat(const char *data, size_t len, size_t chunk, struct run *r);
void run_libxml2(const char *data, size_t len, size_t chunk, struct run *r);

#endif
