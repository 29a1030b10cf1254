/* Unit tests for bench/harness/opts.h: defaults; every key by flag, by
 * --key=value, by scenario file and by bench_opts_set; overrides in order;
 * bad values and unknown keys, each error naming its key. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "bench/harness/opts.h"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/stanza-bench-opts-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Writes text to a new file in tmpdir; returns its path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
	static char path[128];
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* argv from a NULL-terminated list, with argv[0]. */
static int parse(struct bench_opts *o, char *err, size_t errlen, ...)
{
	char *argv[64];
	int argc = 0;
	va_list ap;

	argv[argc++] = "stanza-bench";
	va_start(ap, errlen);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	err[0] = '\0';
	return bench_opts_parse_args(o, argc, argv, err, errlen);
}

static void test_defaults(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];

	bench_opts_default(&o);
	assert_int_equal(o.scenario, SC_PAIRS);
	assert_string_equal(o.host, "127.0.0.1");
	assert_int_equal(o.port, 5222);
	assert_string_equal(o.domain, "localhost");
	assert_int_equal(o.tls, TLS_STARTTLS);
	assert_int_equal(o.mech, MECH_SCRAM_SHA_256);
	assert_string_equal(o.user_prefix, "bench");
	assert_string_equal(o.password, "bench-pass");
	assert_int_equal(o.users, 0);
	assert_int_equal(o.pairs, 100);
	assert_int_equal(o.window, 16);
	assert_int_equal(o.body, 100);
	assert_int_equal(o.contacts, 20);
	assert_int_equal(o.logins, 1000);
	assert_int_equal(o.inflight, 64);
	assert_int_equal(o.sessions, 1000);
	assert_true(o.rate == 0.1);
	assert_true(o.duration == 10.0);
	assert_true(o.warmup == 2.0);
	assert_int_equal(o.threads, 0);
	assert_int_equal(o.connect_rate, 0);
	assert_int_equal(o.provision, PROV_NONE);
	assert_string_equal(o.provision_cmd, "");
	assert_int_equal(o.server_pid, 0);
	assert_string_equal(o.label, "");
	assert_string_equal(o.json_path, "");
	assert_string_equal(o.series_path, "");
	assert_false(o.quiet);
	assert_int_equal(o.transport, TRANSPORT_KERNEL);
	assert_string_equal(o.eal, "--no-huge -m 512 --no-pci");
	assert_string_equal(o.dpdk_port, "");
	assert_string_equal(o.dpdk_address, "");
	assert_int_equal(o.dpdk_idle_sleep_us, 100);

	/* no arguments: the defaults pass the checks unchanged */
	struct bench_opts p;
	bench_opts_default(&p);
	assert_int_equal(parse(&p, err, sizeof(err), NULL), 0);
	assert_memory_equal(&o, &p, sizeof(o));
}

/* Every key with a value other than its default: key, text, and the same
 * as a file line (quoted where the value has spaces or '#'). */
static const struct { const char *key, *val; } every[] = {
	{ "scenario", "idle" },
	{ "host", "10.1.2.3" },
	{ "port", "5223" },
	{ "domain", "example.org" },
	{ "tls", "direct" },
	{ "mech", "plain" },
	{ "user_prefix", "u" },
	{ "password", "p w#d" },
	{ "users", "500" },
	{ "pairs", "7" },
	{ "window", "65536" },
	{ "body", "0" },
	{ "contacts", "5" },
	{ "logins", "42" },
	{ "inflight", "3" },
	{ "sessions", "12345" },
	{ "rate", "2.5" },
	{ "msg_rate", "250000" },
	{ "duration", "1.5" },
	{ "warmup", "0" },
	{ "threads", "4" },
	{ "connect_rate", "100" },
	{ "provision", "stanzactl" },
	{ "provision_cmd", "/usr/bin/stanzactl -d /tmp/x" },
	{ "server_pid", "4321" },
	{ "label", "my label" },
	{ "json_path", "/tmp/a.json" },
	{ "series_path", "/tmp/s.dat" },
	{ "quiet", "true" },
	{ "transport", "dpdk" },
	{ "eal", "--no-huge -m 256 --file-prefix b" },
	{ "dpdk_port", "net_memif0,role=client,socket=/tmp/m.sock" },
	{ "dpdk_address", "198.18.0.2/15" },
	{ "dpdk_idle_sleep_us", "0" },
};
#define NEVERY (sizeof(every) / sizeof(every[0]))

static void check_every(const struct bench_opts *o)
{
	assert_int_equal(o->scenario, SC_IDLE);
	assert_string_equal(o->host, "10.1.2.3");
	assert_int_equal(o->port, 5223);
	assert_string_equal(o->domain, "example.org");
	assert_int_equal(o->tls, TLS_DIRECT);
	assert_int_equal(o->mech, MECH_PLAIN);
	assert_string_equal(o->user_prefix, "u");
	assert_string_equal(o->password, "p w#d");
	assert_int_equal(o->users, 500);
	assert_int_equal(o->pairs, 7);
	assert_int_equal(o->window, 65536);
	assert_int_equal(o->body, 0);
	assert_int_equal(o->contacts, 5);
	assert_int_equal(o->logins, 42);
	assert_int_equal(o->inflight, 3);
	assert_int_equal(o->sessions, 12345);
	assert_true(o->rate == 2.5);
	assert_true(o->msg_rate == 250000.0);
	assert_true(o->duration == 1.5);
	assert_true(o->warmup == 0.0);
	assert_int_equal(o->threads, 4);
	assert_int_equal(o->connect_rate, 100);
	assert_int_equal(o->provision, PROV_STANZACTL);
	assert_string_equal(o->provision_cmd, "/usr/bin/stanzactl -d /tmp/x");
	assert_int_equal(o->server_pid, 4321);
	assert_string_equal(o->label, "my label");
	assert_string_equal(o->json_path, "/tmp/a.json");
	assert_string_equal(o->series_path, "/tmp/s.dat");
	assert_true(o->quiet);
	assert_int_equal(o->transport, TRANSPORT_DPDK);
	assert_string_equal(o->eal, "--no-huge -m 256 --file-prefix b");
	assert_string_equal(o->dpdk_port, "net_memif0,role=client,socket=/tmp/m.sock");
	assert_string_equal(o->dpdk_address, "198.18.0.2/15");
	assert_int_equal(o->dpdk_idle_sleep_us, 0);
}

/* The test's table covers every key the parser knows. */
static void test_table_complete(void **state)
{
	(void)state;
	unsigned n = 0;

	for (const char *k; (k = bench_opts_key(n)) != NULL; n++) {
		bool found = false;
		for (size_t i = 0; i < NEVERY; i++)
			found |= strcmp(every[i].key, k) == 0;
		if (!found)
			fail_msg("key %s has no test value", k);
	}
	assert_int_equal(n, NEVERY);
}

static void flag_name(char *buf, size_t len, const char *key)
{
	snprintf(buf, len, "--%s", key);
	for (char *p = buf + 2; *p; p++)
		if (*p == '_')
			*p = '-';
}

static void test_every_flag(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];
	char names[NEVERY][48];
	char *argv[2 * NEVERY + 2];
	int argc = 0;

	argv[argc++] = "stanza-bench";
	for (size_t i = 0; i < NEVERY; i++) {
		flag_name(names[i], sizeof(names[i]), every[i].key);
		argv[argc++] = names[i];
		if (strcmp(every[i].key, "quiet") != 0)     /* --quiet takes no value */
			argv[argc++] = (char *)every[i].val;
	}
	argv[argc] = NULL;
	bench_opts_default(&o);
	if (bench_opts_parse_args(&o, argc, argv, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	check_every(&o);
}

static void test_every_flag_eq(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];
	char args[NEVERY][128];
	char *argv[NEVERY + 2];
	int argc = 0;

	argv[argc++] = "stanza-bench";
	for (size_t i = 0; i < NEVERY; i++) {
		/* the underscore spelling works as a flag too */
		snprintf(args[i], sizeof(args[i]), "--%s=%s", every[i].key, every[i].val);
		argv[argc++] = args[i];
	}
	argv[argc] = NULL;
	bench_opts_default(&o);
	if (bench_opts_parse_args(&o, argc, argv, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	check_every(&o);
}

static void test_every_file_key(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];
	char text[4096] = "# every key\n\n";

	for (size_t i = 0; i < NEVERY; i++) {
		size_t n = strlen(text);
		bool quote = strpbrk(every[i].val, " #") != NULL;
		/* alternate spacing and a trailing comment */
		snprintf(text + n, sizeof(text) - n, i % 2 ? "%s = %s%s%s   # comment\n" : "  %s=%s%s%s\n",
		         every[i].key, quote ? "\"" : "", every[i].val, quote ? "\"" : "");
	}
	const char *path = write_file("every.conf", text);
	bench_opts_default(&o);
	if (bench_opts_parse_file(&o, path, err, sizeof(err)) != 0)
		fail_msg("%s", err);
	check_every(&o);

	/* and through --file */
	bench_opts_default(&o);
	if (parse(&o, err, sizeof(err), "--file", path, NULL) != 0)
		fail_msg("%s", err);
	check_every(&o);
}

static void test_every_set(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];

	bench_opts_default(&o);
	for (size_t i = 0; i < NEVERY; i++)
		if (bench_opts_set(&o, every[i].key, every[i].val, err, sizeof(err)) != 0)
			fail_msg("%s", err);
	check_every(&o);
}

/* The echo of every option reads back what was set. */
static void test_value_echo(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256], buf[600];

	bench_opts_default(&o);
	for (size_t i = 0; i < NEVERY; i++)
		assert_int_equal(bench_opts_set(&o, every[i].key, every[i].val, err, sizeof(err)), 0);
	for (unsigned i = 0; bench_opts_key(i); i++) {
		enum bench_opt_kind kind = bench_opts_value(&o, i, buf, sizeof(buf));
		for (size_t j = 0; j < NEVERY; j++)
			if (!strcmp(every[j].key, bench_opts_key(i)))
				assert_string_equal(buf, every[j].val);
		assert_true(kind != OPT_KIND_NONE);
	}
	assert_int_equal(bench_opts_value(&o, 1000, buf, sizeof(buf)), OPT_KIND_NONE);
	assert_string_equal(bench_scenario_name(SC_MIXED), "mixed");
	assert_string_equal(bench_tls_name(TLS_NONE), "none");
	assert_string_equal(bench_mech_name(MECH_SCRAM_SHA_1), "scram-sha-1");
	assert_string_equal(bench_provision_name(PROV_EJABBERDCTL), "ejabberdctl");
}

static void test_aliases(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];

	bench_opts_default(&o);
	assert_int_equal(parse(&o, err, sizeof(err), "--json", "r.json", "--series", "s.dat",
	                       "--tls", "NONE", "--mech", "SCRAM-SHA-1", "--quiet=false", NULL), 0);
	assert_string_equal(o.json_path, "r.json");
	assert_string_equal(o.series_path, "s.dat");
	assert_int_equal(o.tls, TLS_NONE);
	assert_int_equal(o.mech, MECH_SCRAM_SHA_1);
	assert_false(o.quiet);

	const char *path = write_file("alias.conf", "json = j.json\nseries-path = x.dat\nquiet\n");
	bench_opts_default(&o);
	assert_int_equal(bench_opts_parse_file(&o, path, err, sizeof(err)), 0);
	assert_string_equal(o.json_path, "j.json");
	assert_string_equal(o.series_path, "x.dat");
	assert_true(o.quiet);

	/* every scenario, tls, mech, provision by name */
	const char *sc[] = { "pairs", "fanout", "login", "idle", "mixed", "raw" };
	for (int i = 0; i < 6; i++) {
		bench_opts_default(&o);
		assert_int_equal(parse(&o, err, sizeof(err), "--scenario", sc[i], NULL), 0);
		assert_int_equal(o.scenario, SC_PAIRS + i);
		assert_string_equal(bench_scenario_name(o.scenario), sc[i]);
	}
	const char *pv[] = { "none", "ibr", "stanzactl", "prosodyctl", "ejabberdctl" };
	for (int i = 0; i < 5; i++) {
		bench_opts_default(&o);
		assert_int_equal(parse(&o, err, sizeof(err), "--provision", pv[i], NULL), 0);
		assert_int_equal(o.provision, PROV_NONE + i);
		/* without --provision-cmd, the tool's name (on PATH) */
		assert_string_equal(o.provision_cmd, i >= 2 ? pv[i] : "");
	}
}

static void test_overrides(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];
	const char *path = write_file("ov.conf", "window = 8\nbody = 512\nlabel = from-file\n");

	/* flags before --file are overridden by it; flags after override it */
	bench_opts_default(&o);
	assert_int_equal(parse(&o, err, sizeof(err), "--window", "4", "--pairs", "3", "--file", path,
	                       "--body", "64", NULL), 0);
	assert_int_equal(o.window, 8);
	assert_int_equal(o.body, 64);
	assert_int_equal(o.pairs, 3);
	assert_string_equal(o.label, "from-file");

	/* the last of two flags wins */
	bench_opts_default(&o);
	assert_int_equal(parse(&o, err, sizeof(err), "--port", "1", "--port", "2", NULL), 0);
	assert_int_equal(o.port, 2);

	/* a string can be emptied again */
	bench_opts_default(&o);
	assert_int_equal(parse(&o, err, sizeof(err), "--label", "x", "--label", "", NULL), 0);
	assert_string_equal(o.label, "");
}

/* An error: returns -1 and the message contains want. */
#define BAD(want, ...) do { \
		bench_opts_default(&o); \
		assert_int_equal(parse(&o, err, sizeof(err), __VA_ARGS__, NULL), -1); \
		if (!strstr(err, want)) \
			fail_msg("error '%s' does not contain '%s'", err, want); \
	} while (0)

static void test_bad_values(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];

	BAD("window:", "--window", "0");
	BAD("window: 65537 is out of range 1..65536", "--window", "65537");
	BAD("body:", "--body", "65537");
	BAD("port:", "--port", "0");
	BAD("port:", "--port", "65536");
	BAD("pairs: '-1' is not a whole number", "--pairs", "-1");
	BAD("pairs:", "--pairs", "abc");
	BAD("pairs:", "--pairs", "");
	BAD("pairs:", "--pairs", "12x");
	BAD("pairs:", "--pairs", "99999999999999999999999");
	BAD("logins:", "--logins", "0");
	BAD("inflight:", "--inflight", "0");
	BAD("sessions:", "--sessions", "0");
	BAD("contacts:", "--contacts", "0");
	BAD("threads:", "--threads", "100000");
	BAD("rate:", "--rate", "0");
	BAD("rate:", "--rate", "-1");
	BAD("rate:", "--rate", "nan");
	BAD("rate:", "--rate", "inf");
	BAD("msg_rate:", "--msg-rate", "-1");
	BAD("msg_rate:", "--msg-rate", "nan");
	BAD("duration:", "--duration", "0");
	BAD("duration:", "--duration", "1s");
	BAD("warmup:", "--warmup", "-0.5");
	BAD("server_pid:", "--server-pid", "-3");
	BAD("tls: 'tls1.3' is not one of none|starttls|direct", "--tls", "tls1.3");
	BAD("mech:", "--mech", "scram-sha-512");
	BAD("scenario:", "--scenario", "storm");
	BAD("provision:", "--provision", "ldap");
	BAD("host:", "--host", "a b");
	BAD("domain:", "--domain", "x@y");
	BAD("user_prefix:", "--user-prefix", "a/b");
	BAD("user_prefix:", "--user-prefix", "");
	BAD("password: must not be empty", "--password", "");
	BAD("user_prefix: value too long", "--user-prefix",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	BAD("quiet:", "--quiet=maybe");
	BAD("window: missing value", "--window");
	BAD("file: missing value", "--file");
	BAD("users: 10 is fewer than 2 * pairs", "--pairs", "6", "--users", "10");
	BAD("transport: 'xdp' is not one of kernel|dpdk", "--transport", "xdp");
	BAD("dpdk_port: transport dpdk needs a port", "--transport", "dpdk", "--dpdk-address", "198.18.0.2/15");
	BAD("dpdk_address: transport dpdk needs an address", "--transport", "dpdk", "--dpdk-port", "net_memif0");
	BAD("provision: ibr runs over kernel sockets", "--transport", "dpdk", "--dpdk-port", "net_memif0",
	    "--dpdk-address", "198.18.0.2/15", "--provision", "ibr");
	BAD("dpdk_idle_sleep_us:", "--dpdk-idle-sleep-us", "100001");
}

static void test_unknown(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];

	BAD("windw: unknown key", "--windw", "3");
	BAD("json_pat: unknown key", "--json_pat=x");
	BAD("stray: unexpected argument", "stray");
	BAD("-w: unexpected argument", "-w", "3");
	BAD("--: unexpected argument", "--");

	/* -h and --help ask for the usage */
	bench_opts_default(&o);
	assert_int_equal(parse(&o, err, sizeof(err), "--help", NULL), 1);
	assert_string_equal(err, "");
	FILE *devnull = fopen("/dev/null", "w");
	assert_non_null(devnull);
	bench_opts_usage(devnull, "stanza-bench");
	fclose(devnull);
}

#define BAD_FILE(text, want) do { \
		const char *p_ = write_file("bad.conf", text); \
		bench_opts_default(&o); \
		assert_int_equal(bench_opts_parse_file(&o, p_, err, sizeof(err)), -1); \
		if (!strstr(err, want)) \
			fail_msg("error '%s' does not contain '%s'", err, want); \
		if (!strstr(err, "bad.conf")) \
			fail_msg("error '%s' does not name the file", err); \
	} while (0)

static void test_bad_file(void **state)
{
	(void)state;
	struct bench_opts o;
	char err[256];

	BAD_FILE("pairs = 3\nwindw = 3\n", ":2: windw: unknown key");
	BAD_FILE("window = 0\n", ":1: window: 0 is out of range");
	BAD_FILE("# c\n\nwindow\n", ":3: window: expected 'window = value'");
	BAD_FILE("= 5\n", ":1: a line 'key = value' without a key");
	BAD_FILE("file = other.conf\n", "file: a scenario file cannot include another");
	BAD_FILE("tls = sometimes\n", "tls:");

	bench_opts_default(&o);
	assert_int_equal(bench_opts_parse_file(&o, "/nonexistent/x.conf", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "file: /nonexistent/x.conf"));
	BAD("file: /nonexistent/y.conf", "--file", "/nonexistent/y.conf");

	/* an error in a file read through --file names the file and the key */
	write_file("bad2.conf", "body = 70000\n");
	char path[128];
	snprintf(path, sizeof(path), "%s/bad2.conf", tmpdir);
	BAD("bad2.conf:1: body:", "--file", path);

	/* comments: whole line, trailing after space; '#' inside a word or
	 * quotes is kept */
	const char *ok = write_file("ok.conf",
	                            "# header\n   # indented\nlabel = a#b   # trailing\n"
	                            "password = \"x # y\"\n\n\t\n");
	bench_opts_default(&o);
	assert_int_equal(bench_opts_parse_file(&o, ok, err, sizeof(err)), 0);
	assert_string_equal(o.label, "a#b");
	assert_string_equal(o.password, "x # y");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_table_complete),
		cmocka_unit_test(test_every_flag),
		cmocka_unit_test(test_every_flag_eq),
		cmocka_unit_test(test_every_file_key),
		cmocka_unit_test(test_every_set),
		cmocka_unit_test(test_value_echo),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_overrides),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_bad_file),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
