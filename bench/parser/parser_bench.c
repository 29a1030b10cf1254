/* parser-bench: stanzad's tokenizer against libexpat and libxml2, on the same
 * bytes, in one process and one run.
 *
 * Every parser sees the input as a stream arriving in reads of --chunk bytes
 * and parses it in place: no parser pays for a copy out of a socket buffer,
 * so the rows differ only by parsing work. Each row does what its server does
 * per stanza:
 *   stanzad   xml_frame over the stream, xml_view_header on the header,
 *             xml_view_build on every stanza (the index the router reads);
 *   expat     XML_ParserCreateNS with start/end/character handlers that only
 *             count, as Prosody and ejabberd drive it before their own work;
 *   libxml2   the SAX2 push parser with startElementNs/endElementNs/characters.
 * Every row counts top-level stanzas; the counts must agree. A last row,
 * memchr for '<' over the same reads, is the floor no parser can beat.
 *
 * Inputs: "corpus" is every tests/corpus/xeps file inside one stream, repeated;
 * "messages" is synthetic chat traffic from a fixed seed.
 *
 * --parser NAME --iterations K runs one parser only, for callgrind; NAME
 * "none" only builds the input, which is the baseline callgrind.sh subtracts.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench/parser/bench.h"
#include "parser/simd.h"

#ifndef BENCH_CORPUS_DIR
#define BENCH_CORPUS_DIR "tests/corpus/xeps"
#endif

#define MB 1e6

static const char stream_head[] =
	"<?xml version='1.0'?>"
	"<stream:stream to='capulet.example' version='1.0' xml:lang='en'"
	" xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
static const char stream_tail[] = "</stream:stream>";

/* ---- byte buffers ----------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("parser-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static void buf_put(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;   /* p may be an empty buffer's NULL */
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			die("out of memory (%zu bytes)", cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

static void buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

/* ---- the parsers ------------------------------------------------------ */

/* P_MEMCHR is no parser: the speed of light, one memchr pass for '<' over
 * the same reads, so published scan figures can be placed on this machine. */
enum parser_id {
	P_STANZAD, P_STANZAD_SCALAR, P_EXPAT, P_LIBXML2, P_PARSERS,
	P_MEMCHR = P_PARSERS, P_COUNT, P_NONE = P_COUNT,
};

static const char *const parser_names[P_COUNT] = {
	"stanzad", "stanzad-scalar", "expat", "libxml2", "memchr",
};

void run_fail(struct run *r, const char *fmt, ...)
{
	va_list ap;

	if (r->err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
}

/* The level of the "stanzad" row: the best the CPU has unless --simd lowers it. */
static enum simd_level top_level;

static void run_memchr(const char *data, size_t len, size_t chunk, struct run *r)
{
	for (size_t off = 0; off < len; off += chunk) {
		const char *p = data + off, *e = data + (len - off < chunk ? len : off + chunk);

		while ((p = memchr(p, '<', (size_t)(e - p)))) {
			r->sink++;
			p++;
		}
	}
}

static void run_parser(enum parser_id id, const char *data, size_t len, size_t chunk, struct run *r)
{
	memset(r, 0, sizeof(*r));
	switch (id) {
	case P_STANZAD:
		simd_set_level(top_level);
		run_stanzad(data, len, chunk, r);
		break;
	case P_STANZAD_SCALAR:
		simd_set_level(SIMD_SCALAR);
		run_stanzad(data, len, chunk, r);
		break;
	case P_EXPAT:
		run_expat(data, len, chunk, r);
		break;
	case P_LIBXML2:
		run_libxml2(data, len, chunk, r);
		break;
	case P_MEMCHR:
		run_memchr(data, len, chunk, r);
		break;
	case P_NONE:
		break;
	}
}

/* ---- inputs ----------------------------------------------------------- */

struct input {
	const char *name;
	struct buf b;
	uint64_t stanzas_expected;   /* 0: unknown (the corpus) */
};

/* xorshift64*: fixed seed, same bytes on every machine. */
static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static unsigned rng_below(unsigned n)
{
	return (unsigned)((rng() >> 32) % n);
}

static bool rng_pct(unsigned pct)
{
	return rng_below(100) < pct;
}

#define PICK(arr) ((arr)[rng_below(sizeof(arr) / sizeof((arr)[0]))])

static const char *const users[] = {
	"romeo", "juliet", "benvolio", "mercutio", "nurse", "tybalt", "rosaline",
	"friar.laurence", "balthasar", "paris", "kitty_o", "jürgen", "anna-maria", "d.smith42",
};
static const char *const domains[] = {
	"montague.example", "capulet.example", "example.com", "im.example.org",
	"chat.verona.example", "jabber.example.net",
};
static const char *const resources[] = {
	"orchard", "balcony", "Conversations", "gajim", "Dino", "Psi+", "Monal-iOS", "phone", "laptop",
};
static const char *const words[] = {
	"hi", "hello", "are", "you", "there", "I", "think", "we", "should", "meet", "at", "the",
	"usual", "place", "tonight", "ok", "sure", "see", "you", "later", "what", "time", "is",
	"it", "thanks", "for", "yesterday", "that", "was", "fun", "can't", "wait", "lol",
	"did", "get", "my", "message", "about", "train", "running", "late", "again", "sorry",
	"the", "meeting", "moved", "to", "3pm", "please", "send", "me", "file", "when",
	"have", "minute", "-&gt;", "check", "https://example.com/a?b=1&amp;c=2", "yes", "no",
};
static const char *const words_utf8[] = {
	"café", "naïve", "Grüße", "привет", "日本語", "😀", "👍", "¿qué", "tal?", "€20", "zażółć",
	"Ελλάδα", "—", "…", "🎉",
};
static const char *const words_escaped[] = {
	"&amp;", "&lt;3", "&quot;ok&quot;", "don&apos;t", "a&gt;b", "&#x263A;", "&#8212;", "R&amp;D",
};

static void put_token_id(struct buf *b, bool uuid)
{
	static const char hex[] = "0123456789abcdef";
	static const char b36[] = "abcdefghijklmnopqrstuvwxyz0123456789";
	char id[40];
	size_t n = 0;

	if (uuid) {
		for (int i = 0; i < 32; i++) {
			if (i == 8 || i == 12 || i == 16 || i == 20)
				id[n++] = '-';
			id[n++] = hex[rng_below(16)];
		}
	} else {
		unsigned k = 8 + rng_below(9);
		for (unsigned i = 0; i < k; i++)
			id[n++] = b36[rng_below(36)];
	}
	buf_put(b, id, n);
}

static void put_jid(struct buf *b)
{
	char r[8];

	buf_puts(b, PICK(users));
	buf_puts(b, "@");
	buf_puts(b, PICK(domains));
	buf_puts(b, "/");
	buf_puts(b, PICK(resources));
	snprintf(r, sizeof(r), ".%04x", rng_below(0x10000));
	buf_puts(b, r);
}

static void put_attr(struct buf *b, char q, const char *name, const char *value)
{
	buf_puts(b, " ");
	buf_puts(b, name);
	buf_puts(b, "=");
	buf_put(b, &q, 1);
	if (value) {
		buf_puts(b, value);
		buf_put(b, &q, 1);
	}
}

/* One <message/> of 200..500 bytes. Shapes follow what Conversations, Gajim
 * and Dino send: full JIDs, an id, chat states, receipts, origin-id. */
static void gen_message(struct buf *out)
{
	struct buf head = { 0 }, tail = { 0 }, body = { 0 };
	char q = rng_pct(50) ? '\'' : '"';
	size_t target, fixed;

	for (;;) {
		head.len = tail.len = body.len = 0;
		buf_puts(&head, "<message");
		put_attr(&head, q, "to", NULL);
		put_jid(&head);
		buf_put(&head, &q, 1);
		put_attr(&head, q, "from", NULL);
		put_jid(&head);
		buf_put(&head, &q, 1);
		put_attr(&head, q, "type", "chat");
		put_attr(&head, q, "id", NULL);
		put_token_id(&head, rng_pct(50));
		buf_put(&head, &q, 1);
		if (rng_pct(30))
			put_attr(&head, q, "xml:lang", PICK(((const char *const[]){ "en", "de", "fr", "es", "ru" })));
		buf_puts(&head, "><body>");

		buf_puts(&tail, "</body>");
		if (rng_pct(50))
			buf_puts(&tail, q == '\'' ? "<active xmlns='http://jabber.org/protocol/chatstates'/>"
						  : "<active xmlns=\"http://jabber.org/protocol/chatstates\"/>");
		if (rng_pct(40))
			buf_puts(&tail, q == '\'' ? "<request xmlns='urn:xmpp:receipts'/>"
						  : "<request xmlns=\"urn:xmpp:receipts\"/>");
		buf_puts(&tail, "<origin-id");
		put_attr(&tail, q, "xmlns", "urn:xmpp:sid:0");
		put_attr(&tail, q, "id", NULL);
		put_token_id(&tail, true);
		buf_put(&tail, &q, 1);
		buf_puts(&tail, "/></message>");

		fixed = head.len + tail.len;
		/* The longest word is under 40 bytes: filling to target - 40
		 * keeps every message in [200, 500] bytes. */
		target = 240 + rng_below(261);
		if (fixed + 8 <= target)
			break;
	}
	for (;;) {
		unsigned kind = rng_below(100);
		const char *w = kind < 85 ? PICK(words) : kind < 93 ? PICK(words_utf8) : PICK(words_escaped);
		size_t wl = strlen(w) + (body.len ? 1 : 0);

		if (fixed + body.len + wl > target)
			break;
		if (body.len)
			buf_puts(&body, " ");
		buf_puts(&body, w);
	}
	buf_put(out, head.p, head.len);
	buf_put(out, body.p, body.len);
	buf_put(out, tail.p, tail.len);
	free(head.p);
	free(tail.p);
	free(body.p);
}

static void build_messages(struct input *in, size_t min_bytes, uint64_t seed)
{
	size_t lo = SIZE_MAX, hi = 0;

	rng_state = seed ? seed : 1;
	in->name = "messages";
	buf_puts(&in->b, stream_head);
	while (in->b.len < min_bytes) {
		size_t before = in->b.len;

		gen_message(&in->b);
		in->stanzas_expected++;
		if (in->b.len - before < lo)
			lo = in->b.len - before;
		if (in->b.len - before > hi)
			hi = in->b.len - before;
	}
	buf_puts(&in->b, stream_tail);
	if (lo < 200 || hi > 500)
		die("generated message sizes %zu..%zu outside 200..500", lo, hi);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool read_file(const char *path, struct buf *b)
{
	FILE *fp = fopen(path, "rb");
	char tmp[65536];
	size_t n;

	if (!fp)
		return false;
	while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0)
		buf_put(b, tmp, n);
	fclose(fp);
	return true;
}

/* A corpus file goes in only if every parser accepts it on its own, so one
 * bad example cannot sink the whole stream; the rejections are printed,
 * since a file only stanzad rejects is a bug to look at. */
static bool corpus_file_ok(const char *name, const struct buf *file)
{
	struct buf s = { 0 };
	struct run r[P_PARSERS];
	bool ok = true;

	buf_puts(&s, stream_head);
	buf_put(&s, file->p, file->len);
	buf_puts(&s, "\n");
	buf_puts(&s, stream_tail);
	for (int i = 0; i < P_PARSERS; i++) {
		run_parser((enum parser_id)i, s.p, s.len, 4096, &r[i]);
		if (r[i].err[0]) {
			fprintf(stderr, "corpus: skipping %s: %s rejects it: %s\n", name, parser_names[i], r[i].err);
			ok = false;
		}
	}
	for (int i = 1; ok && i < P_PARSERS; i++) {
		if (r[i].stanzas != r[0].stanzas) {
			fprintf(stderr, "corpus: skipping %s: %s counts %llu stanzas, %s %llu\n", name,
				parser_names[0], (unsigned long long)r[0].stanzas, parser_names[i],
				(unsigned long long)r[i].stanzas);
			ok = false;
		}
	}
	free(s.p);
	return ok;
}

static bool build_corpus(struct input *in, const char *dir, size_t min_bytes)
{
	struct buf body = { 0 }, file = { 0 };
	char **names = NULL, path[4096];
	size_t n = 0, cap = 0, used = 0;
	struct dirent *de;
	DIR *d = opendir(dir);

	in->name = "corpus";
	if (!d) {
		fprintf(stderr, "corpus: %s: %s\n", dir, strerror(errno));
		return false;
	}
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l < 5 || strcmp(de->d_name + l - 4, ".xml") != 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				die("out of memory");
		}
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		file.len = 0;
		if (!read_file(path, &file)) {
			fprintf(stderr, "corpus: %s: %s\n", path, strerror(errno));
		} else if (corpus_file_ok(names[i], &file)) {
			buf_put(&body, file.p, file.len);
			buf_puts(&body, "\n");
			used++;
		}
		free(names[i]);
	}
	free(names);
	free(file.p);
	if (!body.len) {
		fprintf(stderr, "corpus: no usable files in %s\n", dir);
		free(body.p);
		return false;
	}
	fprintf(stderr, "corpus: %zu of %zu files from %s, %zu bytes per copy\n", used, n, dir, body.len);
	buf_puts(&in->b, stream_head);
	while (in->b.len < min_bytes)
		buf_put(&in->b, body.p, body.len);
	buf_puts(&in->b, stream_tail);
	free(body.p);
	return true;
}

/* ---- measuring -------------------------------------------------------- */

struct result {
	const char *input;
	const char *parser;
	char label[32];
	size_t bytes;
	uint64_t stanzas;
	double best_s;
	double ratio;       /* MB/s over expat's MB/s on the same input */
	bool failed;
	char err[160];
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void result_init(struct result *res, enum parser_id id, const struct input *in)
{
	memset(res, 0, sizeof(*res));
	res->input = in->name;
	res->parser = parser_names[id];
	res->bytes = in->b.len;
	res->best_s = 1e30;
	if (id == P_STANZAD)
		snprintf(res->label, sizeof(res->label), "stanzad (%s)", simd_level_name(top_level));
	else if (id == P_STANZAD_SCALAR)
		snprintf(res->label, sizeof(res->label), "stanzad (scalar)");
	else if (id == P_MEMCHR)
		snprintf(res->label, sizeof(res->label), "memchr '<' (floor)");
	else
		snprintf(res->label, sizeof(res->label), "%s", parser_names[id]);
}

/* One timed parse into res, keeping the best time. */
static void measure_once(enum parser_id id, const struct input *in, size_t chunk, struct result *res)
{
	struct run r;
	double t0, t;

	if (res->failed)
		return;
	t0 = now_s();
	run_parser(id, in->b.p, in->b.len, chunk, &r);
	t = now_s() - t0;
	if (r.err[0]) {
		res->failed = true;
		snprintf(res->err, sizeof(res->err), "%s", r.err);
		return;
	}
	res->stanzas = r.stanzas;
	if (t < res->best_s)
		res->best_s = t;
	/* Keeps the compiler from proving the handlers' work unused. */
	__asm__ volatile("" : : "r"(r.sink));
}

static void machine_line(char *out, size_t n)
{
	char line[256], model[128] = "unknown CPU";
	struct utsname u;
	FILE *fp = fopen("/proc/cpuinfo", "r");

	if (fp) {
		while (fgets(line, sizeof(line), fp)) {
			char *c = strchr(line, ':');
			if (strncmp(line, "model name", 10) == 0 && c) {
				snprintf(model, sizeof(model), "%s", c + 2);
				model[strcspn(model, "\n")] = '\0';
				break;
			}
		}
		fclose(fp);
	}
	uname(&u);
	snprintf(out, n, "%s, %ld cpus, Linux %s", model, sysconf(_SC_NPROCESSORS_ONLN), u.release);
}

static void json_str(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(fp, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(fp, "\\u%04x", *s);
		else
			fputc(*s, fp);
	}
	fputc('"', fp);
}

static void write_json(const char *path, const char *machine, size_t chunk, unsigned reps,
		       const struct result *res, size_t nres)
{
	FILE *fp = strcmp(path, "-") == 0 ? stdout : fopen(path, "w");

	if (!fp)
		die("%s: %s", path, strerror(errno));
	fprintf(fp, "{\n  \"machine\": ");
	json_str(fp, machine);
	fprintf(fp, ",\n  \"simd\": \"%s\",\n  \"chunk\": %zu,\n  \"repetitions\": %u,\n  \"results\": [\n",
		simd_level_name(top_level), chunk, reps);
	for (size_t i = 0; i < nres; i++) {
		const struct result *r = &res[i];

		fprintf(fp, "    {\"input\": \"%s\", \"parser\": \"%s\", \"label\": ", r->input, r->parser);
		json_str(fp, r->label);
		fprintf(fp, ", \"bytes\": %zu, \"stanzas\": %llu", r->bytes, (unsigned long long)r->stanzas);
		if (r->failed) {
			fprintf(fp, ", \"error\": ");
			json_str(fp, r->err);
		} else {
			fprintf(fp, ", \"best_s\": %.6f, \"mb_per_s\": %.1f, \"stanzas_per_s\": %.0f, \"ratio_expat\": %.2f",
				r->best_s, (double)r->bytes / MB / r->best_s, (double)r->stanzas / r->best_s, r->ratio);
		}
		fprintf(fp, "}%s\n", i + 1 < nres ? "," : "");
	}
	fprintf(fp, "  ]\n}\n");
	if (fp != stdout)
		fclose(fp);
}

/* ---- main ------------------------------------------------------------- */

static void usage(FILE *fp)
{
	fputs("usage: parser-bench [options]\n"
	      "  --input corpus|messages|both   inputs to run (default both)\n"
	      "  --corpus DIR                   corpus directory (default " BENCH_CORPUS_DIR ")\n"
	      "  --size MB                      minimum input size in 10^6 bytes (default 8)\n"
	      "  --chunk BYTES                  bytes per read fed to every parser (default 4096)\n"
	      "  --reps N                       repetitions, best one reported (default 5)\n"
	      "  --simd LEVEL                   level of the stanzad row: sse4.2, avx2 or avx512\n"
	      "                                 (default: the best this CPU has)\n"
	      "  --seed N                       seed of the message generator (default 1)\n"
	      "  --json FILE                    also write results as JSON ('-': stdout)\n"
	      "  --parser NAME                  run only NAME (stanzad, stanzad-scalar, expat, libxml2,\n"
	      "                                 memchr, or none: build the input only), for callgrind\n"
	      "  --iterations K                 with --parser: parse each input K times (default 1)\n"
	      "  --dump FILE                    write the first selected input to FILE and exit\n",
	      fp);
}

static unsigned long parse_num(const char *opt, const char *s)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || end == s)
		die("%s: not a number: %s", opt, s);
	return v;
}

int main(int argc, char **argv)
{
	const char *simd = NULL;
	const char *which = "both", *corpus_dir = BENCH_CORPUS_DIR, *json = NULL, *only = NULL, *dump = NULL;
	size_t size_mb = 8, chunk = 4096;
	unsigned reps = 5, iterations = 1;
	uint64_t seed = 1;
	struct input inputs[2];
	size_t ninputs = 0;
	int status = 0;

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0) {
			usage(stdout);
			return 0;
		}
		if (!v) {
			usage(stderr);
			return 2;
		}
		i++;
		if (strcmp(o, "--input") == 0)
			which = v;
		else if (strcmp(o, "--corpus") == 0)
			corpus_dir = v;
		else if (strcmp(o, "--size") == 0)
			size_mb = parse_num(o, v);
		else if (strcmp(o, "--chunk") == 0)
			chunk = parse_num(o, v);
		else if (strcmp(o, "--reps") == 0)
			reps = (unsigned)parse_num(o, v);
		else if (strcmp(o, "--seed") == 0)
			seed = parse_num(o, v);
		else if (strcmp(o, "--json") == 0)
			json = v;
		else if (strcmp(o, "--parser") == 0)
			only = v;
		else if (strcmp(o, "--iterations") == 0)
			iterations = (unsigned)parse_num(o, v);
		else if (strcmp(o, "--simd") == 0)
			simd = v;
		else if (strcmp(o, "--dump") == 0)
			dump = v;
		else {
			usage(stderr);
			return 2;
		}
	}
	if (chunk == 0 || chunk > INT32_MAX || reps == 0)
		die("--chunk and --reps must be positive");
	if (strcmp(which, "both") && strcmp(which, "corpus") && strcmp(which, "messages"))
		die("--input: corpus, messages or both");

	simd_init();
	top_level = simd_detect();
	if (simd) {
		enum simd_level want = SIMD_SCALAR;
		while (want < SIMD_AVX512 && strcmp(simd_level_name(want), simd) != 0)
			want++;
		if (strcmp(simd_level_name(want), simd) != 0)
			die("--simd: unknown level %s", simd);
		top_level = simd_set_level(want);
	}
	stanzad_bench_setup();
	libxml2_bench_setup();

	memset(inputs, 0, sizeof(inputs));
	if (strcmp(which, "messages") != 0) {
		if (build_corpus(&inputs[ninputs], corpus_dir, size_mb * (size_t)MB))
			ninputs++;
		else if (strcmp(which, "corpus") == 0)
			return 1;
	}
	if (strcmp(which, "corpus") != 0)
		build_messages(&inputs[ninputs++], size_mb * (size_t)MB, seed);

	if (dump) {
		FILE *fp = fopen(dump, "wb");
		if (!fp || fwrite(inputs[0].b.p, 1, inputs[0].b.len, fp) != inputs[0].b.len || fclose(fp))
			die("%s: %s", dump, strerror(errno));
		return 0;
	}

	if (only) {
		enum parser_id id = P_NONE;
		for (int p = 0; p < P_COUNT; p++)
			if (strcmp(only, parser_names[p]) == 0)
				id = (enum parser_id)p;
		if (id == P_NONE && strcmp(only, "none") != 0)
			die("--parser: unknown parser %s", only);
		for (size_t i = 0; i < ninputs; i++) {
			struct run r = { 0 };
			for (unsigned k = 0; k < iterations; k++)
				run_parser(id, inputs[i].b.p, inputs[i].b.len, chunk, &r);
			printf("parser %s simd %s input %s bytes %zu stanzas %llu iterations %u%s%s\n", only,
			       id == P_STANZAD || id == P_STANZAD_SCALAR ? simd_level_name(simd_current()) : "-",
			       inputs[i].name, inputs[i].b.len, (unsigned long long)r.stanzas, iterations,
			       r.err[0] ? " error " : "", r.err);
			if (r.err[0])
				status = 1;
		}
		return status;
	}

	char machine[256];
	struct result res[2 * P_COUNT];
	size_t nres = 0;

	machine_line(machine, sizeof(machine));
	printf("machine: %s\n", machine);
	printf("simd: %s, chunk %zu bytes, best of %u, MB = 10^6 bytes\n\n", simd_level_name(top_level),
	       chunk, reps);
	printf("%-9s %-18s %10s %9s %12s %9s %9s\n", "input", "parser", "bytes", "MB/s", "stanzas/s",
	       "vs expat", "stanzas");
	for (size_t i = 0; i < ninputs; i++) {
		struct result *first = &res[nres];
		const struct result *ex = &first[P_EXPAT];

		for (int p = 0; p < P_COUNT; p++)
			result_init(&first[p], (enum parser_id)p, &inputs[i]);
		nres += P_COUNT;
		/* Repetitions go round the parsers, so a burst of load from a
		 * neighbour costs every parser a repetition, not one parser all. */
		for (unsigned k = 0; k < reps; k++)
			for (int p = 0; p < P_COUNT; p++)
				measure_once((enum parser_id)p, &inputs[i], chunk, &first[p]);
		for (int p = 0; p < P_COUNT; p++) {
			struct result *r = &first[p];

			if (!r->failed && !ex->failed)
				r->ratio = ex->best_s / r->best_s;
			if (r->failed) {
				printf("%-9s %-18s %10zu   FAILED: %s\n", r->input, r->label, r->bytes, r->err);
				status = 1;
				continue;
			}
			if (p == P_MEMCHR) {
				printf("%-9s %-18s %10zu %9.1f %12s %8.2fx %9s\n", r->input, r->label, r->bytes,
				       (double)r->bytes / MB / r->best_s, "-", r->ratio, "-");
				continue;
			}
			printf("%-9s %-18s %10zu %9.1f %12.0f %8.2fx %9llu\n", r->input, r->label, r->bytes,
			       (double)r->bytes / MB / r->best_s, (double)r->stanzas / r->best_s, r->ratio,
			       (unsigned long long)r->stanzas);
		}
		for (int p = 0; p < P_PARSERS; p++) {
			const struct result *r = &first[p];
			uint64_t want = inputs[i].stanzas_expected ? inputs[i].stanzas_expected : first[P_EXPAT].stanzas;

			if (!r->failed && r->stanzas != want) {
				fprintf(stderr, "ERROR: %s on %s counted %llu stanzas, expected %llu\n", r->label,
					r->input, (unsigned long long)r->stanzas, (unsigned long long)want);
				status = 1;
			}
		}
	}
	if (json)
		write_json(json, machine, chunk, reps, res, nres);
	for (size_t i = 0; i < ninputs; i++)
		free(inputs[i].b.p);
	return status;
}
