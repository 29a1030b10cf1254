/* stanza-bench's output: /proc sampling, the per-second line, the final
 * text report, the JSON report and the gnuplot series. The formats are
 * documented in bench/README.md; a change here is a change there. */
#include "bench/harness/report.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const err_names[ERR_KINDS] = {
	[ERR_CONNECT] = "connect",
	[ERR_TLS] = "tls",
	[ERR_AUTH] = "auth",
	[ERR_BIND] = "bind",
	[ERR_STREAM] = "stream",
	[ERR_STANZA] = "stanza",
	[ERR_TIMEOUT] = "timeout",
	[ERR_CLOSED] = "closed",
	[ERR_LOST] = "lost",
};

const char *bench_err_name(enum bench_err e)
{
	return (unsigned)e < ERR_KINDS ? err_names[e] : "?";
}

/* ---- /proc ---------------------------------------------------------- */

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Reads a small /proc file whole; bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;

	if (fd < 0)
		return -1;
	while (n + 1 < len) {
		ssize_t r = read(fd, buf + n, len - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	buf[n] = '\0';
	return (ssize_t)n;
}

/* utime + stime (fields 14 and 15 of /proc/PID/stat) in ns. The command
 * name (field 2) may hold spaces and parentheses, so fields are counted
 * from its last ')'. */
static int stat_cpu_ns(const char *dir, uint64_t *out)
{
	char path[64], buf[1024];

	snprintf(path, sizeof(path), "%s/stat", dir);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return -1;
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	p++;
	/* after ')': state is field 3, utime field 14 */
	for (int field = 3; field < 14; field++) {
		while (*p == ' ')
			p++;
		while (*p && *p != ' ')
			p++;
		if (!*p)
			return -1;
	}
	char *end;
	unsigned long long ut = strtoull(p, &end, 10);
	if (end == p)
		return -1;
	p = end;
	unsigned long long st = strtoull(p, &end, 10);
	if (end == p)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	if (hz <= 0)
		hz = 100;
	*out = (uint64_t)(ut + st) * (1000000000u / (uint64_t)hz);
	return 0;
}

static int status_rss_kib(const char *dir, uint64_t *out)
{
	char path[64], buf[4096];

	snprintf(path, sizeof(path), "%s/status", dir);
	if (read_small(path, buf, sizeof(buf)) < 0)
		return -1;
	char *p = strstr(buf, "\nVmRSS:");
	if (!p) {
		*out = 0;              /* a zombie or a kernel thread has none */
		return 0;
	}
	*out = strtoull(p + 7, NULL, 10);
	return 0;
}

int proc_sample(pid_t pid, struct proc_sample *out)
{
	char dir[32];

	memset(out, 0, sizeof(*out));
	if (pid == 0)
		snprintf(dir, sizeof(dir), "/proc/self");
	else
		snprintf(dir, sizeof(dir), "/proc/%ld", (long)pid);
	if (stat_cpu_ns(dir, &out->cpu_ns) < 0 || status_rss_kib(dir, &out->rss_kib) < 0)
		return -1;
	if (pid == 0) {
		/* our own CPU time with ns resolution rather than clock ticks */
		struct timespec ts;
		if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
			out->cpu_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
	out->t_ns = mono_ns();
	return 0;
}

double proc_cores(const struct proc_sample *a, const struct proc_sample *b)
{
	if (a->t_ns == 0 || b->t_ns <= a->t_ns || b->cpu_ns < a->cpu_ns)
		return 0.0;
	return (double)(b->cpu_ns - a->cpu_ns) / (double)(b->t_ns - a->t_ns);
}

/* ---- numbers ---------------------------------------------------------- */

/* v with 3 significant digits, fixed point: 0.000123, 0.210, 1.20, 12.3,
 * 123, 1234 (whole numbers are never cut). */
static const char *sig3(char *buf, size_t len, double v)
{
	if (!isfinite(v)) {
		snprintf(buf, len, "-");
		return buf;
	}
	if (v == 0) {
		snprintf(buf, len, "0");
		return buf;
	}
	if (fabs(v) >= 99.95) {
		snprintf(buf, len, "%.0f", v);
		return buf;
	}
	int e = (int)floor(log10(fabs(v)));
	double scale = pow(10.0, e - 2);
	double r = round(v / scale) * scale;      /* 9.996 -> 10.0, not 10.00 */
	e = (int)floor(log10(fabs(r)));
	int dec = e >= 2 ? 0 : 2 - e;      /* 99.96 rounds to 100 */
	if (dec > 12)
		dec = 12;
	snprintf(buf, len, "%.*f", dec, r);
	return buf;
}

static double ns_to_ms(uint64_t ns)
{
	return (double)ns / 1e6;
}

static double per_s(uint64_t n, double seconds)
{
	return seconds > 0 ? (double)n / seconds : 0.0;
}

static bool sampled(const struct proc_sample *a, const struct proc_sample *b)
{
	return a->t_ns != 0 && b->t_ns != 0;
}

static bool server_sampled(const struct bench_result *r)
{
	return r->opts && r->opts->server_pid > 0 && sampled(&r->srv0, &r->srv1);
}

static bool is_idle(const struct bench_result *r)
{
	return r->opts && r->opts->scenario == SC_IDLE;
}

/* idle: server bytes per held session, from the RSS before the sessions
 * were opened to the RSS at the end. */
static double bytes_per_session(const struct bench_result *r)
{
	if (r->sessions == 0)
		return 0.0;
	return ((double)r->srv1.rss_kib - (double)r->server_rss_idle_kib) * 1024.0 / (double)r->sessions;
}

static uint64_t errors_total(const struct bench_result *r)
{
	uint64_t n = 0;

	for (int i = 0; i < ERR_KINDS; i++)
		n += r->errors[i];
	return n;
}

/* ---- per-second line -------------------------------------------------- */

void report_tick(FILE *f, const struct bench_result *r, const struct bench_tick *t)
{
	char a[32], b[32], c[32], d[32], e[32];
	bool srv = r->opts && r->opts->server_pid > 0;

	fprintf(f, "t=%gs sent=%" PRIu64 "/s recv=%" PRIu64 "/s p50=%sms p99=%sms err=%" PRIu64,
	        round(t->t * 100.0) / 100.0, t->sent, t->recv,
	        sig3(a, sizeof(a), ns_to_ms(t->p50_ns)), sig3(b, sizeof(b), ns_to_ms(t->p99_ns)), t->errors);
	if (srv)
		fprintf(f, " srv=%sc rss=%sMiB", sig3(c, sizeof(c), t->server_cores),
		        sig3(d, sizeof(d), (double)t->server_rss_kib / 1024.0));
	else
		fprintf(f, " srv=- rss=-");
	fprintf(f, " gen=%sc\n", sig3(e, sizeof(e), t->self_cores));
	fflush(f);
}

/* ---- final text report ------------------------------------------------ */

void report_text(FILE *f, const struct bench_result *r)
{
	const struct bench_opts *o = r->opts;
	char a[32], b[32], c[32], d[32], e[32], g[32], h[32];
	bool login = o && o->scenario == SC_LOGIN;

	fprintf(f, "scenario: %s%s%s, %s s measured after %s s warmup\n",
	        o ? bench_scenario_name(o->scenario) : "?",
	        o && o->label[0] ? " on " : "", o ? o->label : "",
	        sig3(a, sizeof(a), r->seconds), sig3(b, sizeof(b), o ? o->warmup : 0.0));
	fprintf(f, "throughput: sent %s/s, recv %s/s (%" PRIu64 " sent, %" PRIu64 " received)\n",
	        sig3(a, sizeof(a), per_s(r->sent, r->seconds)), sig3(b, sizeof(b), per_s(r->recv, r->seconds)),
	        r->sent, r->recv);
	if (login || r->logins)
		fprintf(f, "logins: %" PRIu64 " of %u completed, %s/s\n", r->logins, o ? o->logins : 0,
		        sig3(a, sizeof(a), per_s(r->logins, r->seconds)));
	if (is_idle(r))
		fprintf(f, "sessions: %" PRIu64 " of %u held\n", r->sessions, o ? o->sessions : 0);
	else if (r->sessions)
		fprintf(f, "sessions: %" PRIu64 " held\n", r->sessions);
	fprintf(f, "%s (ms): p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s  (n=%" PRIu64 ")\n",
	        login ? "login time" : "latency",
	        sig3(a, sizeof(a), ns_to_ms(hist_percentile(&r->lat, 50))),
	        sig3(b, sizeof(b), ns_to_ms(hist_percentile(&r->lat, 90))),
	        sig3(c, sizeof(c), ns_to_ms(hist_percentile(&r->lat, 99))),
	        sig3(d, sizeof(d), ns_to_ms(hist_percentile(&r->lat, 99.9))),
	        sig3(e, sizeof(e), ns_to_ms(hist_percentile(&r->lat, 100))),
	        sig3(g, sizeof(g), hist_mean(&r->lat) / 1e6), r->lat.count);

	uint64_t nerr = errors_total(r);
	if (nerr == 0) {
		fprintf(f, "errors: 0\n");
	} else {
		fprintf(f, "errors: %" PRIu64 " (", nerr);
		const char *sep = "";
		for (int i = 0; i < ERR_KINDS; i++) {
			if (r->errors[i]) {
				fprintf(f, "%s%s %" PRIu64, sep, err_names[i], r->errors[i]);
				sep = ", ";
			}
		}
		fprintf(f, ")\n");
	}

	if (server_sampled(r)) {
		fprintf(f, "server: pid %ld, %s cores, RSS %s MiB at start, %s MiB at end\n",
		        (long)o->server_pid, sig3(a, sizeof(a), proc_cores(&r->srv0, &r->srv1)),
		        sig3(b, sizeof(b), (double)r->srv0.rss_kib / 1024.0),
		        sig3(c, sizeof(c), (double)r->srv1.rss_kib / 1024.0));
		if (is_idle(r))
			fprintf(f, "server per session: %s KiB (RSS %s MiB before the sessions, %s MiB with %" PRIu64 ")\n",
			        sig3(a, sizeof(a), bytes_per_session(r) / 1024.0),
			        sig3(b, sizeof(b), (double)r->server_rss_idle_kib / 1024.0),
			        sig3(c, sizeof(c), (double)r->srv1.rss_kib / 1024.0), r->sessions);
	} else {
		fprintf(f, "server: not sampled (no --server-pid)\n");
	}
	if (sampled(&r->self0, &r->self1))
		fprintf(f, "self: %s cores\n", sig3(h, sizeof(h), proc_cores(&r->self0, &r->self1)));
	else
		fprintf(f, "self: not sampled\n");
	if (o && o->msg_rate > 0) {
		fprintf(f, "schedule: %llu of %llu messages left more than 1 ms after they were due\n",
		        (unsigned long long)r->late, (unsigned long long)r->sent);
		if (r->generator_bound)
			fprintf(f, "WARNING: more than 1%% of the messages left late: the load generator (or the "
			        "window, when the server falls behind) set these latencies, not only the server\n");
	} else if (r->generator_bound) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		fprintf(f, "WARNING: stanza-bench used nearly all its CPU (%s cores, %u threads on %ld CPUs): "
		        "these figures measure the load generator, not the server\n",
		        sig3(a, sizeof(a), proc_cores(&r->self0, &r->self1)),
		        o && o->threads ? o->threads : (unsigned)(cpus > 0 ? cpus : 1), cpus);
	}
	fflush(f);
}

/* ---- JSON --------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];

	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
	}
	return 0;
}

/* A JSON string: quotes, backslashes and control characters escaped;
 * bytes that are not UTF-8 become U+FFFD so the file always parses. */
static void json_str(FILE *f, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	fputc('"', f);
	while (*p) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			fputc('\\', f);
			fputc(c, f);
			p++;
		} else if (c == '\n') {
			fputs("\\n", f);
			p++;
		} else if (c == '\t') {
			fputs("\\t", f);
			p++;
		} else if (c == '\r') {
			fputs("\\r", f);
			p++;
		} else if (c < 0x20 || c == 0x7f) {
			fprintf(f, "\\u%04x", c);
			p++;
		} else if (c < 0x80) {
			fputc(c, f);
			p++;
		} else {
			size_t n = utf8_len(p);
			if (n) {
				fwrite(p, 1, n, f);
				p += n;
			} else {
				fputs("\\ufffd", f);
				p++;
			}
		}
	}
	fputc('"', f);
}

/* A JSON number; null when v is not finite (JSON has no NaN). */
static void json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.10g", v);
	else
		fputs("null", f);
}

static void json_u64(FILE *f, uint64_t v)
{
	fprintf(f, "%" PRIu64, v);
}

static void json_key(FILE *f, const char *indent, const char *k)
{
	fputs(indent, f);
	json_str(f, k);
	fputs(": ", f);
}

static void json_opts(FILE *f, const struct bench_opts *o)
{
	char val[1024];
	const char *k;

	fputs("{", f);
	for (unsigned i = 0; o && (k = bench_opts_key(i)) != NULL; i++) {
		enum bench_opt_kind kind = bench_opts_value(o, i, val, sizeof(val));
		fputs(i ? ",\n" : "\n", f);
		json_key(f, "    ", k);
		if (kind == OPT_KIND_STRING)
			json_str(f, val);
		else
			fputs(val, f);   /* numbers and true/false, printed by opts.c */
	}
	fputs("\n  }", f);
}

static void json_write(FILE *f, const struct bench_result *r)
{
	const struct bench_opts *o = r->opts;
	bool srv = server_sampled(r);

	fputs("{\n", f);
	json_key(f, "  ", "schema"); fputs("\"stanza-bench/1\",\n", f);
	json_key(f, "  ", "scenario"); json_str(f, o ? bench_scenario_name(o->scenario) : ""); fputs(",\n", f);
	json_key(f, "  ", "label"); json_str(f, o ? o->label : ""); fputs(",\n", f);
	json_key(f, "  ", "seconds"); json_num(f, r->seconds); fputs(",\n", f);
	json_key(f, "  ", "sent"); json_u64(f, r->sent); fputs(",\n", f);
	json_key(f, "  ", "recv"); json_u64(f, r->recv); fputs(",\n", f);
	json_key(f, "  ", "rate_sent"); json_num(f, per_s(r->sent, r->seconds)); fputs(",\n", f);
	json_key(f, "  ", "rate_recv"); json_num(f, per_s(r->recv, r->seconds)); fputs(",\n", f);
	json_key(f, "  ", "logins"); json_u64(f, r->logins); fputs(",\n", f);
	json_key(f, "  ", "logins_per_s"); json_num(f, per_s(r->logins, r->seconds)); fputs(",\n", f);
	json_key(f, "  ", "sessions"); json_u64(f, r->sessions); fputs(",\n", f);

	json_key(f, "  ", "latency_ns");
	fputs("{", f);
	json_key(f, "", "p50"); json_u64(f, hist_percentile(&r->lat, 50)); fputs(", ", f);
	json_key(f, "", "p90"); json_u64(f, hist_percentile(&r->lat, 90)); fputs(", ", f);
	json_key(f, "", "p99"); json_u64(f, hist_percentile(&r->lat, 99)); fputs(", ", f);
	json_key(f, "", "p999"); json_u64(f, hist_percentile(&r->lat, 99.9)); fputs(", ", f);
	json_key(f, "", "max"); json_u64(f, r->lat.count ? r->lat.max : 0); fputs(", ", f);
	json_key(f, "", "min"); json_u64(f, r->lat.count ? r->lat.min : 0); fputs(", ", f);
	json_key(f, "", "mean"); json_num(f, hist_mean(&r->lat)); fputs(", ", f);
	json_key(f, "", "count"); json_u64(f, r->lat.count);
	fputs("},\n", f);

	json_key(f, "  ", "errors");
	fputs("{", f);
	for (int i = 0; i < ERR_KINDS; i++) {
		if (i)
			fputs(", ", f);
		json_key(f, "", err_names[i]);
		json_u64(f, r->errors[i]);
	}
	fputs("},\n", f);
	json_key(f, "  ", "errors_total"); json_u64(f, errors_total(r)); fputs(",\n", f);

	json_key(f, "  ", "server");
	fputs("{", f);
	json_key(f, "", "pid"); fprintf(f, "%ld", o ? (long)o->server_pid : 0L); fputs(", ", f);
	json_key(f, "", "cores");
	if (srv) json_num(f, proc_cores(&r->srv0, &r->srv1)); else fputs("null", f);
	fputs(", ", f);
	json_key(f, "", "rss_kib_start");
	if (srv) json_u64(f, r->srv0.rss_kib); else fputs("null", f);
	fputs(", ", f);
	json_key(f, "", "rss_kib_end");
	if (srv) json_u64(f, r->srv1.rss_kib); else fputs("null", f);
	fputs(", ", f);
	json_key(f, "", "rss_kib_idle");
	if (srv && is_idle(r)) json_u64(f, r->server_rss_idle_kib); else fputs("null", f);
	fputs(", ", f);
	json_key(f, "", "bytes_per_session");
	if (srv && is_idle(r) && r->sessions) json_num(f, round(bytes_per_session(r))); else fputs("null", f);
	fputs("},\n", f);

	json_key(f, "  ", "self");
	fputs("{", f);
	json_key(f, "", "cores");
	if (sampled(&r->self0, &r->self1)) json_num(f, proc_cores(&r->self0, &r->self1)); else fputs("null", f);
	fputs("},\n", f);
	json_key(f, "  ", "generator_bound"); fputs(r->generator_bound ? "true" : "false", f); fputs(",\n", f);

	json_key(f, "  ", "ticks");
	fputs("[", f);
	for (unsigned i = 0; r->ticks && i < r->ntick; i++) {
		const struct bench_tick *t = &r->ticks[i];
		fputs(i ? ",\n    {" : "\n    {", f);
		json_key(f, "", "t"); json_num(f, t->t); fputs(", ", f);
		json_key(f, "", "sent"); json_u64(f, t->sent); fputs(", ", f);
		json_key(f, "", "recv"); json_u64(f, t->recv); fputs(", ", f);
		json_key(f, "", "errors"); json_u64(f, t->errors); fputs(", ", f);
		json_key(f, "", "p50_ns"); json_u64(f, t->p50_ns); fputs(", ", f);
		json_key(f, "", "p99_ns"); json_u64(f, t->p99_ns); fputs(", ", f);
		json_key(f, "", "server_cores"); json_num(f, t->server_cores); fputs(", ", f);
		json_key(f, "", "self_cores"); json_num(f, t->self_cores); fputs(", ", f);
		json_key(f, "", "server_rss_kib"); json_u64(f, t->server_rss_kib);
		fputs("}", f);
	}
	fputs(r->ticks && r->ntick ? "\n  ],\n" : "],\n", f);

	json_key(f, "  ", "opts");
	json_opts(f, o);
	fputs("\n}\n", f);
}

/* path "-" is stdout. */
static FILE *out_open(const char *path)
{
	return strcmp(path, "-") == 0 ? stdout : fopen(path, "w");
}

static int out_close(FILE *f)
{
	int bad = ferror(f);

	if (f == stdout)
		return fflush(f) != 0 || bad ? -1 : 0;
	return (fclose(f) != 0 || bad) ? -1 : 0;
}

int report_json(const char *path, const struct bench_result *r)
{
	FILE *f = out_open(path);

	if (!f)
		return -1;
	json_write(f, r);
	return out_close(f);
}

/* ---- gnuplot series ----------------------------------------------------- */

int report_series(const char *path, const struct bench_result *r)
{
	FILE *f = out_open(path);

	if (!f)
		return -1;
	fprintf(f, "# stanza-bench %s%s%s\n", r->opts ? bench_scenario_name(r->opts->scenario) : "?",
	        r->opts && r->opts->label[0] ? " " : "", r->opts ? r->opts->label : "");
	fprintf(f, "# t sent recv p50_ms p99_ms server_cores self_cores server_rss_kib\n");
	for (unsigned i = 0; r->ticks && i < r->ntick; i++) {
		const struct bench_tick *t = &r->ticks[i];
		fprintf(f, "%g %" PRIu64 " %" PRIu64 " %.6f %.6f %.4f %.4f %" PRIu64 "\n",
		        t->t, t->sent, t->recv, ns_to_ms(t->p50_ns), ns_to_ms(t->p99_ns),
		        isfinite(t->server_cores) ? t->server_cores : 0.0,
		        isfinite(t->self_cores) ? t->self_cores : 0.0, t->server_rss_kib);
	}
	return out_close(f);
}
