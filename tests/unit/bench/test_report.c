/* Unit tests for bench/harness/report.h: /proc sampling, the per-second
 * line, the text report's lines, the JSON report (parsed by a strict
 * checker here, and by python3's json module when there is one) and the
 * gnuplot series. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "bench/harness/report.h"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/stanza-bench-report-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	char *buf = malloc(1 << 20);
	assert_non_null(buf);
	size_t n = fread(buf, 1, (1 << 20) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* ---- a strict JSON checker (RFC 8259), enough to reject what a broken
 * writer would produce: bad escapes, raw control characters, trailing
 * commas, NaN, invalid UTF-8 ------------------------------------------- */

struct jp {
	const unsigned char *p;
	int depth;
};

static void ws(struct jp *j)
{
	while (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')
		j->p++;
}

static bool jvalue(struct jp *j);

static bool jstring(struct jp *j)
{
	if (*j->p != '"')
		return false;
	j->p++;
	for (;;) {
		unsigned char c = *j->p;
		if (c == '"') {
			j->p++;
			return true;
		}
		if (c < 0x20)
			return false;         /* includes the end of the text */
		if (c == '\\') {
			j->p++;
			if (strchr("\"\\/bfnrt", *j->p) && *j->p) {
				j->p++;
			} else if (*j->p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!strchr("0123456789abcdefABCDEF", j->p[i]) || !j->p[i])
						return false;
				j->p += 5;
			} else {
				return false;
			}
		} else if (c < 0x80) {
			j->p++;
		} else {
			int n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
			if (!n || c > 0xf4)
				return false;
			for (int i = 1; i < n; i++)
				if ((j->p[i] & 0xc0) != 0x80)
					return false;
			j->p += n;
		}
	}
}

static bool jnumber(struct jp *j)
{
	const unsigned char *s = j->p;
	if (*j->p == '-')
		j->p++;
	if (*j->p == '0')
		j->p++;
	else if (*j->p >= '1' && *j->p <= '9')
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	else
		return false;
	if (*j->p == '.') {
		j->p++;
		if (!(*j->p >= '0' && *j->p <= '9'))
			return false;
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (*j->p == 'e' || *j->p == 'E') {
		j->p++;
		if (*j->p == '+' || *j->p == '-')
			j->p++;
		if (!(*j->p >= '0' && *j->p <= '9'))
			return false;
		while (*j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	return j->p > s;
}

static bool jlit(struct jp *j, const char *lit)
{
	size_t n = strlen(lit);
	if (strncmp((const char *)j->p, lit, n) != 0)
		return false;
	j->p += n;
	return true;
}

static bool jvalue(struct jp *j)
{
	if (++j->depth > 64)
		return false;
	ws(j);
	bool ok;
	if (*j->p == '{') {
		j->p++;
		ws(j);
		ok = true;
		if (*j->p == '}') {
			j->p++;
		} else {
			for (;;) {
				ws(j);
				if (!jstring(j)) { ok = false; break; }
				ws(j);
				if (*j->p++ != ':' || !jvalue(j)) { ok = false; break; }
				ws(j);
				if (*j->p == ',') { j->p++; continue; }
				if (*j->p == '}') { j->p++; break; }
				ok = false;
				break;
			}
		}
	} else if (*j->p == '[') {
		j->p++;
		ws(j);
		ok = true;
		if (*j->p == ']') {
			j->p++;
		} else {
			for (;;) {
				if (!jvalue(j)) { ok = false; break; }
				ws(j);
				if (*j->p == ',') { j->p++; continue; }
				if (*j->p == ']') { j->p++; break; }
				ok = false;
				break;
			}
		}
	} else if (*j->p == '"') {
		ok = jstring(j);
	} else if (*j->p == 't') {
		ok = jlit(j, "true");
	} else if (*j->p == 'f') {
		ok = jlit(j, "false");
	} else if (*j->p == 'n') {
		ok = jlit(j, "null");
	} else {
		ok = jnumber(j);
	}
	j->depth--;
	return ok;
}

static bool json_valid(const char *text)
{
	struct jp j = { (const unsigned char *)text, 0 };
	if (!jvalue(&j))
		return false;
	ws(&j);
	return *j.p == '\0';
}

static void test_checker(void **state)
{
	(void)state;
	assert_true(json_valid("{\"a\": [1, -2.5e3, true, false, null, \"x\\u00e9\\n\"], \"b\": {}}"));
	assert_true(json_valid("\"\xc3\xa9\""));
	assert_false(json_valid("{\"a\": 1,}"));
	assert_false(json_valid("{\"a\": nan}"));
	assert_false(json_valid("\"a\nb\""));
	assert_false(json_valid("\"\\x\""));
	assert_false(json_valid("\"\xff\""));
	assert_false(json_valid("[1] 2"));
	assert_false(json_valid("01"));
}

/* ---- a result to print ------------------------------------------------- */

static struct bench_opts opts;
static struct bench_tick ticks[3];

static struct bench_result *result_new(enum bench_scenario sc)
{
	struct bench_result *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	bench_opts_default(&opts);
	opts.scenario = sc;
	r->opts = &opts;
	hist_init(&r->lat);
	r->seconds = 2.0;
	for (int i = 0; i < 3; i++) {
		ticks[i] = (struct bench_tick){ .t = i + 1, .sent = 1000u * (i + 1), .recv = 999u * (i + 1),
		                                .errors = (uint64_t)i, .p50_ns = 210000, .p99_ns = 800000,
		                                .server_cores = 1.62, .self_cores = 0.91,
		                                .server_rss_kib = 49357 };
	}
	r->ticks = ticks;
	r->ntick = 3;
	return r;
}

static char *text_of(const struct bench_result *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	assert_non_null(f);
	report_text(f, r);
	fclose(f);
	return buf;
}

static void has(const char *text, const char *want)
{
	if (!strstr(text, want))
		fail_msg("'%s' not in:\n%s", want, text);
}

static void test_err_names(void **state)
{
	(void)state;
	const char *want[] = { "connect", "tls", "auth", "bind", "stream", "stanza", "timeout", "closed", "lost" };
	for (int i = 0; i < ERR_KINDS; i++)
		assert_string_equal(bench_err_name((enum bench_err)i), want[i]);
	assert_string_equal(bench_err_name(ERR_KINDS), "?");
}

static void test_tick_line(void **state)
{
	(void)state;
	struct bench_result *r = result_new(SC_PAIRS);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	report_tick(f, r, &ticks[2]);
	opts.server_pid = 1234;
	report_tick(f, r, &ticks[0]);
	struct bench_tick last = ticks[0];
	last.t = 0.0377;                 /* a short last interval */
	report_tick(f, r, &last);
	fclose(f);
	assert_string_equal(buf,
	                    "t=3s sent=3000/s recv=2997/s p50=0.210ms p99=0.800ms err=2 srv=- rss=- gen=0.910c\n"
	                    "t=1s sent=1000/s recv=999/s p50=0.210ms p99=0.800ms err=0 srv=1.62c rss=48.2MiB gen=0.910c\n"
	                    "t=0.04s sent=1000/s recv=999/s p50=0.210ms p99=0.800ms err=0 srv=1.62c rss=48.2MiB gen=0.910c\n");
	free(buf);
	free(r);
}

static void test_text_pairs(void **state)
{
	(void)state;
	struct bench_result *r = result_new(SC_PAIRS);

	r->sent = 200000;
	r->recv = 199990;
	for (uint64_t v = 1; v <= 1000; v++)
		hist_record(&r->lat, v * 1000);       /* 1 us .. 1 ms */
	r->errors[ERR_LOST] = 10;
	r->errors[ERR_TIMEOUT] = 2;
	r->self0 = (struct proc_sample){ .t_ns = 1000000000, .cpu_ns = 0 };
	r->self1 = (struct proc_sample){ .t_ns = 3000000000, .cpu_ns = 1900000000 };
	r->generator_bound = true;
	char *t = text_of(r);
	has(t, "scenario: pairs, 2.00 s measured after 2.00 s warmup\n");
	has(t, "throughput: sent 100000/s, recv 99995/s (200000 sent, 199990 received)\n");
	/* each percentile is its bucket's high end (a bucket is 1/128 of a
	 * power of two wide), so slightly above the exact value; p99.9 is
	 * capped by max */
	has(t, "latency (ms): p50 0.502  p90 0.901  p99 0.991  p99.9 0.999  max 1.00  mean ");
	has(t, "  (n=1000)\n");
	has(t, "errors: 12 (timeout 2, lost 10)\n");
	has(t, "server: not sampled (no --server-pid)\n");
	has(t, "self: 0.950 cores\n");
	has(t, "WARNING: stanza-bench used nearly all its CPU");
	assert_null(strstr(t, "logins:"));
	assert_null(strstr(t, "sessions:"));
	free(t);

	/* the sessions a scenario other than idle held, when it says */
	r->sessions = 8;
	t = text_of(r);
	has(t, "sessions: 8 held\n");
	r->sessions = 0;
	free(t);

	/* the generator was not the bottleneck: no warning; no errors */
	r->generator_bound = false;
	memset(r->errors, 0, sizeof(r->errors));
	snprintf(opts.label, sizeof(opts.label), "stanzad");
	t = text_of(r);
	has(t, "scenario: pairs on stanzad, ");
	has(t, "errors: 0\n");
	assert_null(strstr(t, "WARNING"));
	free(t);
	free(r);
}

static void test_text_login_idle(void **state)
{
	(void)state;
	struct bench_result *r = result_new(SC_LOGIN);

	r->logins = 1000;
	hist_record(&r->lat, 12300000);
	opts.server_pid = 4242;
	r->srv0 = (struct proc_sample){ .t_ns = 1000000000, .cpu_ns = 5000000000, .rss_kib = 10240 };
	r->srv1 = (struct proc_sample){ .t_ns = 3000000000, .cpu_ns = 8000000000, .rss_kib = 20480 };
	char *t = text_of(r);
	has(t, "logins: 1000 of 1000 completed, 500/s\n");
	has(t, "login time (ms): p50 12.3  ");
	has(t, "server: pid 4242, 1.50 cores, RSS 10.0 MiB at start, 20.0 MiB at end\n");
	has(t, "self: not sampled\n");
	free(t);
	free(r);

	r = result_new(SC_IDLE);
	opts.server_pid = 4242;
	opts.sessions = 1000;
	r->sessions = 1000;
	r->server_rss_idle_kib = 10240;
	r->srv0 = (struct proc_sample){ .t_ns = 1000000000, .cpu_ns = 0, .rss_kib = 30000 };
	r->srv1 = (struct proc_sample){ .t_ns = 3000000000, .cpu_ns = 0, .rss_kib = 30240 };
	t = text_of(r);
	has(t, "sessions: 1000 of 1000 held\n");
	/* (30240 - 10240) KiB / 1000 = 20 KiB a session */
	has(t, "server per session: 20.0 KiB (RSS 10.0 MiB before the sessions, 29.5 MiB with 1000)\n");
	free(t);

	/* and in JSON: bytes_per_session = 20 * 1024 */
	char path[128];
	snprintf(path, sizeof(path), "%s/idle.json", tmpdir);
	assert_int_equal(report_json(path, r), 0);
	char *j = slurp(path);
	assert_true(json_valid(j));
	has(j, "\"bytes_per_session\": 20480");
	has(j, "\"rss_kib_idle\": 10240");
	has(j, "\"rss_kib_start\": 30000");
	has(j, "\"rss_kib_end\": 30240");
	has(j, "\"pid\": 4242");
	has(j, "\"sessions\": 1000");
	free(j);
	free(r);
}

static void python_json_check(const char *path)
{
	if (access("/usr/bin/python3", X_OK) != 0)
		return;
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
	         "/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1], encoding=\"utf-8\")); "
	         "assert d[\"label\"] == \"a \\\"q\\\" \\\\ b\\n\\t\\x01 \\u00e9 \\ufffd\", repr(d[\"label\"]); "
	         "assert d[\"latency_ns\"][\"count\"] == 3' '%s'", path);
	int rc = system(cmd);
	assert_true(WIFEXITED(rc));
	assert_int_equal(WEXITSTATUS(rc), 0);
}

static void test_json(void **state)
{
	(void)state;
	struct bench_result *r = result_new(SC_PAIRS);
	char path[128];

	/* a label that needs every kind of escape, and a byte that is not UTF-8 */
	snprintf(opts.label, sizeof(opts.label), "a \"q\" \\ b\n\t\x01 \xc3\xa9 \xff");
	snprintf(opts.provision_cmd, sizeof(opts.provision_cmd), "/x/stanzactl -d '/tmp/a b'");
	r->sent = 10;
	r->recv = 10;
	hist_record(&r->lat, 1000);
	hist_record(&r->lat, 2000);
	hist_record(&r->lat, 3000);
	r->errors[ERR_CLOSED] = 1;
	r->self0 = (struct proc_sample){ .t_ns = 1, .cpu_ns = 0 };
	r->self1 = (struct proc_sample){ .t_ns = 1000000001, .cpu_ns = 250000000 };
	snprintf(path, sizeof(path), "%s/r.json", tmpdir);
	assert_int_equal(report_json(path, r), 0);
	char *j = slurp(path);
	if (!json_valid(j))
		fail_msg("not JSON:\n%s", j);
	const char *keys[] = {
		"\"schema\": \"stanza-bench/1\"", "\"scenario\": \"pairs\"", "\"label\": ",
		"\"seconds\": 2", "\"sent\": 10", "\"recv\": 10", "\"rate_sent\": 5", "\"rate_recv\": 5",
		"\"logins\": 0", "\"logins_per_s\": 0", "\"sessions\": 0",
		"\"latency_ns\": {\"p50\": 2007, \"p90\": 3000, \"p99\": 3000, \"p999\": 3000, \"max\": 3000, "
		"\"min\": 1000, \"mean\": 2000, \"count\": 3}",
		"\"errors\": {\"connect\": 0, \"tls\": 0, \"auth\": 0, \"bind\": 0, \"stream\": 0, \"stanza\": 0, "
		"\"timeout\": 0, \"closed\": 1, \"lost\": 0}",
		"\"errors_total\": 1",
		"\"server\": {\"pid\": 0, \"cores\": null, \"rss_kib_start\": null, \"rss_kib_end\": null, "
		"\"rss_kib_idle\": null, \"bytes_per_session\": null}",
		"\"self\": {\"cores\": 0.25}", "\"generator_bound\": false", "\"ticks\": [",
		"{\"t\": 1, \"sent\": 1000, \"recv\": 999, \"errors\": 0, \"p50_ns\": 210000, \"p99_ns\": 800000, "
		"\"server_cores\": 1.62, \"self_cores\": 0.91, \"server_rss_kib\": 49357}",
		"\"opts\": {", "\"window\": 16", "\"tls\": \"starttls\"", "\"quiet\": false", "\"rate\": 0.1",
		"\"provision_cmd\": \"/x/stanzactl -d '/tmp/a b'\"", "\"json_path\": \"\"", "\"server_pid\": 0",
	};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		has(j, keys[i]);
	/* every option is echoed */
	for (unsigned i = 0; bench_opts_key(i); i++) {
		char k[80];
		snprintf(k, sizeof(k), "    \"%s\": ", bench_opts_key(i));
		has(j, k);
	}
	has(j, "\"label\": \"a \\\"q\\\" \\\\ b\\n\\t\\u0001 \xc3\xa9 \\ufffd\"");
	free(j);
	python_json_check(path);

	/* a non-finite number becomes null */
	ticks[0].server_cores = NAN;
	assert_int_equal(report_json(path, r), 0);
	j = slurp(path);
	if (!json_valid(j))
		fail_msg("not JSON:\n%s", j);
	has(j, "\"server_cores\": null");
	free(j);

	/* no ticks, an empty histogram, no time: still JSON */
	r->ticks = NULL;
	r->ntick = 0;
	hist_init(&r->lat);
	r->seconds = 0;
	assert_int_equal(report_json(path, r), 0);
	j = slurp(path);
	if (!json_valid(j))
		fail_msg("not JSON:\n%s", j);
	has(j, "\"ticks\": [],");
	has(j, "\"rate_sent\": 0,");
	has(j, "\"count\": 0}");
	free(j);

	/* an unwritable path */
	assert_int_equal(report_json("/nonexistent/dir/r.json", r), -1);
	free(r);
}

static void test_series(void **state)
{
	(void)state;
	struct bench_result *r = result_new(SC_PAIRS);
	char path[128];

	snprintf(opts.label, sizeof(opts.label), "stanzad");
	snprintf(path, sizeof(path), "%s/s.dat", tmpdir);
	assert_int_equal(report_series(path, r), 0);
	char *s = slurp(path);
	assert_string_equal(s,
	                    "# stanza-bench pairs stanzad\n"
	                    "# t sent recv p50_ms p99_ms server_cores self_cores server_rss_kib\n"
	                    "1 1000 999 0.210000 0.800000 1.6200 0.9100 49357\n"
	                    "2 2000 1998 0.210000 0.800000 1.6200 0.9100 49357\n"
	                    "3 3000 2997 0.210000 0.800000 1.6200 0.9100 49357\n");
	free(s);
	assert_int_equal(report_series("/nonexistent/dir/s.dat", r), -1);
	free(r);
}

static void test_proc(void **state)
{
	(void)state;
	struct proc_sample a, b, c;

	assert_int_equal(proc_sample(0, &a), 0);
	assert_true(a.t_ns > 0);
	assert_true(a.rss_kib > 0);
	/* burn some CPU: our own CPU time grows */
	volatile uint64_t x = 0;
	for (uint64_t i = 0; i < 50000000; i++)
		x += i * i;
	assert_int_equal(proc_sample(0, &b), 0);
	assert_true(b.cpu_ns > a.cpu_ns);
	assert_true(b.t_ns > a.t_ns);
	double cores = proc_cores(&a, &b);
	assert_true(cores > 0.2 && cores < 1.5);

	/* another process, by PID: a child spinning */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(10);
		for (;;)
			x++;
	}
	assert_int_equal(proc_sample(pid, &a), 0);
	usleep(300000);
	assert_int_equal(proc_sample(pid, &b), 0);
	assert_true(b.rss_kib > 0);
	cores = proc_cores(&a, &b);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* clock ticks: 300 ms of spinning is at least a few of them (the
	 * child may share a CPU with others, hence the low bar) */
	assert_true(b.cpu_ns >= a.cpu_ns);
	assert_true(cores >= 0.0 && cores < 1.5);

	/* a PID that does not exist */
	assert_int_equal(proc_sample(pid, &c), -1);

	/* proc_cores on nonsense: 0 */
	struct proc_sample z = { 0 };
	assert_true(proc_cores(&z, &b) == 0.0);
	assert_true(proc_cores(&b, &a) == 0.0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checker),
		cmocka_unit_test(test_err_names),
		cmocka_unit_test(test_tick_line),
		cmocka_unit_test(test_text_pairs),
		cmocka_unit_test(test_text_login_idle),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_series),
		cmocka_unit_test(test_proc),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
