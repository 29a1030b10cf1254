/* cmd/config.c: defaults, every option of the file, the command line over
 * it, and each kind of mistake with the message the operator sees. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "cmd/config.h"
#include "parser/xml-t.h"
#include "util/log.h"

static char path[64];

/* Write text to a fresh temporary file; its name is in path. */
static const char *conf(const char *text)
{
	snprintf(path, sizeof(path), "/tmp/stanzad-conf-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static int teardown(void **state)
{
	(void)state;
	if (path[0])
		unlink(path);
	path[0] = '\0';
	return 0;
}

/* Load text and expect failure with each of the fragments in the message. */
static void expect_error(const char *text, const char *frag1, const char *frag2)
{
	struct server_config c;
	char err[1024] = "";

	memset(&c, 0x5a, sizeof(c));
	if (config_load(conf(text), &c, err, sizeof(err)) != -1)
		fail_msg("accepted: %s", text);
	if (!strstr(err, frag1) || (frag2 && !strstr(err, frag2)))
		fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", err, frag1, frag2 ? frag2 : "");
	/* cfg untouched on failure */
	assert_int_equal(((unsigned char *)&c)[0], 0x5a);
	unlink(path);
	path[0] = '\0';
}

static void test_defaults(void **state)
{
	struct server_config c, d;
	char err[256], buf[CONFIG_PATH_MAX];
	bool gen;

	(void)state;
	assert_int_equal(config_load(NULL, &c, err, sizeof(err)), 0);
	config_defaults(&d);
	assert_memory_equal(&c, &d, sizeof(c));
	assert_int_equal(c.nvhost, 1);
	assert_string_equal(c.vhost[0].domain, "localhost");
	assert_string_equal(c.vhost[0].cert, "");
	assert_int_equal(c.nlistener, 2);
	assert_string_equal(c.listener[0].addr, "127.0.0.1:5222");
	assert_int_equal(c.listener[0].kind, LISTEN_C2S_STARTTLS);
	assert_string_equal(c.listener[1].addr, "127.0.0.1:5223");
	assert_int_equal(c.listener[1].kind, LISTEN_C2S_DIRECT_TLS);
	assert_int_equal(c.workers, 0);
	assert_int_equal(c.pin_workers, 1);
	assert_string_equal(c.data_dir, "./data");
	assert_string_equal(c.admin_socket, "");
	assert_int_equal(c.log_level, LOG_INFO);
	assert_int_equal(c.xml.max_stanza, XML_DEFAULT_MAX_STANZA);
	assert_int_equal(c.xml.max_depth, XML_DEFAULT_MAX_DEPTH);
	assert_int_equal(c.xml.max_attrs, XML_DEFAULT_MAX_ATTRS);
	assert_int_equal(c.xml.max_ns, XML_DEFAULT_MAX_NS);
	assert_int_equal(c.max_output, 1u << 20);
	assert_int_equal(c.header_timeout_ms, 30000);
	assert_int_equal(c.auth_timeout_ms, 60000);
	assert_int_equal(c.max_auth_failures, 3);
	assert_int_equal(c.auth_fail_delay_ms, 250);
	assert_int_equal(c.scram_iterations, 4096);
	assert_int_equal(c.allow_plaintext_auth, 0);
	assert_int_equal(c.conflict, CONFLICT_KICK_OLD);
	assert_true(c.store_map_size == (uint64_t)1 << 30);

	assert_int_equal(config_admin_socket(&c, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "./data/stanzad.sock");
	assert_int_equal(config_store_dir(&c, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "./data/store");
	char cert[CONFIG_PATH_MAX], key[CONFIG_PATH_MAX];
	assert_int_equal(config_cert_paths(&c, 0, cert, key, sizeof(cert), &gen), 0);
	assert_true(gen);
	assert_string_equal(cert, "./data/certs/localhost.crt");
	assert_string_equal(key, "./data/certs/localhost.key");

	/* An empty file is the defaults too. */
	assert_int_equal(config_load(conf("# nothing\n"), &c, err, sizeof(err)), 0);
	assert_memory_equal(&c, &d, sizeof(c));
}

static const char every_option[] =
	"log_level = \"debug\";\n"
	"workers = 4;\n"
	"pin_workers = false;\n"
	"data_dir = \"/var/lib/stanzad\";\n"
	"admin_socket = \"/run/stanzad/admin.sock\";\n"
	"resource_conflict = \"refuse_new\";\n"
	"vhosts = (\n"
	"  { domain = \"Example.COM\"; cert = \"/etc/ssl/ex.crt\"; key = \"/etc/ssl/ex.key\"; },\n"
	"  { domain = \"chat.example.org.\"; }\n"
	");\n"
	"listeners = (\n"
	"  { address = \"*:5222\"; tls = \"starttls\"; },\n"
	"  { address = \"[::1]:5223\"; tls = \"direct\"; },\n"
	"  { address = \"0.0.0.0:5280\"; }\n"
	");\n"
	"limits = {\n"
	"  max_stanza = \"512K\";\n"
	"  max_depth = 32;\n"
	"  max_attributes = 40;\n"
	"  max_namespaces = 20;\n"
	"  max_output = \"4MiB\";\n"
	"  header_timeout_ms = 5000;\n"
	"  auth_timeout_ms = 20000;\n"
	"};\n"
	"auth = {\n"
	"  max_failures = 5;\n"
	"  failure_delay_ms = 1000;\n"
	"  scram_iterations = 10000;\n"
	"  allow_plaintext = true;\n"
	"};\n"
	"store = { map_size = 8589934592L; };\n";

static void test_every_option(void **state)
{
	struct server_config c;
	char err[512] = "", cert[CONFIG_PATH_MAX], key[CONFIG_PATH_MAX], buf[CONFIG_PATH_MAX];
	bool gen;

	(void)state;
	if (config_load(conf(every_option), &c, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_int_equal(c.log_level, LOG_DEBUG);
	assert_int_equal(c.workers, 4);
	assert_int_equal(c.pin_workers, 0);
	assert_string_equal(c.data_dir, "/var/lib/stanzad");
	assert_string_equal(c.admin_socket, "/run/stanzad/admin.sock");
	assert_int_equal(c.conflict, CONFLICT_REFUSE_NEW);
	assert_int_equal(c.nvhost, 2);
	assert_string_equal(c.vhost[0].domain, "example.com");      /* nameprepped */
	assert_string_equal(c.vhost[0].cert, "/etc/ssl/ex.crt");
	assert_string_equal(c.vhost[0].key, "/etc/ssl/ex.key");
	assert_string_equal(c.vhost[1].domain, "chat.example.org");  /* trailing dot gone */
	assert_string_equal(c.vhost[1].cert, "");
	assert_int_equal(c.nlistener, 3);
	assert_string_equal(c.listener[0].addr, "*:5222");
	assert_int_equal(c.listener[0].kind, LISTEN_C2S_STARTTLS);
	assert_string_equal(c.listener[1].addr, "[::1]:5223");
	assert_int_equal(c.listener[1].kind, LISTEN_C2S_DIRECT_TLS);
	assert_int_equal(c.listener[2].kind, LISTEN_C2S_STARTTLS);   /* tls defaults to starttls */
	assert_int_equal(c.xml.max_stanza, 512 * 1024);
	assert_int_equal(c.xml.max_depth, 32);
	assert_int_equal(c.xml.max_attrs, 40);
	assert_int_equal(c.xml.max_ns, 20);
	assert_int_equal(c.max_output, 4 << 20);
	assert_int_equal(c.header_timeout_ms, 5000);
	assert_int_equal(c.auth_timeout_ms, 20000);
	assert_int_equal(c.max_auth_failures, 5);
	assert_int_equal(c.auth_fail_delay_ms, 1000);
	assert_int_equal(c.scram_iterations, 10000);
	assert_int_equal(c.allow_plaintext_auth, 1);
	assert_true(c.store_map_size == (uint64_t)8 << 30);

	assert_int_equal(config_admin_socket(&c, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/run/stanzad/admin.sock");
	assert_int_equal(config_cert_paths(&c, 0, cert, key, sizeof(cert), &gen), 0);
	assert_false(gen);
	assert_string_equal(cert, "/etc/ssl/ex.crt");
	assert_int_equal(config_cert_paths(&c, 1, cert, key, sizeof(cert), &gen), 0);
	assert_true(gen);
	assert_string_equal(key, "/var/lib/stanzad/certs/chat.example.org.key");
}

static void test_sizes(void **state)
{
	struct server_config c;
	char err[512] = "";

	(void)state;
	assert_int_equal(config_load(conf("store = { map_size = \"2G\"; };\n"
					  "limits = { max_output = 2000000; max_stanza = 65536; };\n"),
				     &c, err, sizeof(err)), 0);
	assert_true(c.store_map_size == (uint64_t)2 << 30);
	assert_int_equal(c.max_output, 2000000);
	assert_int_equal(c.xml.max_stanza, 65536);
	unlink(path);
	assert_int_equal(config_load(conf("store = { map_size = 1073741824; };\n"), &c, err, sizeof(err)), 0);
	assert_true(c.store_map_size == (uint64_t)1 << 30);
}

static void test_unknown_keys(void **state)
{
	(void)state;
	expect_error("log_level = \"info\";\nworkerz = 2;\n", ":2: workerz: unknown option", NULL);
	expect_error("limits = {\n  max_stanzas = 100000;\n};\n", ":2: limits.max_stanzas: unknown option", NULL);
	expect_error("vhosts = ( { domain = \"a.example\"; certificate = \"x\"; } );\n",
		     "vhosts[0].certificate: unknown option", NULL);
	expect_error("listeners = ( { address = \"*:1\"; }, { address = \"*:2\"; starttls = true; } );\n",
		     "listeners[1].starttls: unknown option", NULL);
	expect_error("auth = { iterations = 5000; };\n", "auth.iterations: unknown option", NULL);
	expect_error("store = { path = \"/x\"; };\n", "store.path: unknown option", NULL);
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_error("workers = 65;\n", "workers: must be between 0 and 64", "got 65");
	expect_error("workers = -1;\n", "workers: must be between", NULL);
	expect_error("workers = \"4\";\n", "workers: must be an integer", NULL);
	expect_error("pin_workers = 1;\n", "pin_workers: must be true or false", NULL);
	expect_error("log_level = \"loud\";\n", "log_level: not a log level \"loud\"", NULL);
	expect_error("log_level = 3;\n", "log_level: must be a string", NULL);
	expect_error("data_dir = \"\";\n", "data_dir: must not be empty", NULL);
	expect_error("resource_conflict = \"kick\";\n", "resource_conflict: must be", "kick_old");
	expect_error("vhosts = ( { domain = \"bad..example\"; } );\n", "vhosts[0].domain: not a valid domain", NULL);
	expect_error("vhosts = ( { cert = \"/x\"; key = \"/y\"; } );\n", "vhosts[0]: domain is required", NULL);
	expect_error("vhosts = ( { domain = \"a.example\"; cert = \"/x\"; } );\n", "cert and key go together", NULL);
	expect_error("vhosts = ( );\n", "vhosts: at least one virtual host", NULL);
	expect_error("vhosts = \"a.example\";\n", "vhosts: must be a list", NULL);
	expect_error("vhosts = ( { domain = \"a.example\"; }, { domain = \"A.example\"; } );\n",
		     "virtual host a.example configured twice", NULL);
	expect_error("listeners = ( { address = \"nope\"; } );\n", "listeners[0].address: not an address \"nope\"", NULL);
	expect_error("listeners = ( { address = \"*:5222\"; tls = \"maybe\"; } );\n",
		     "listeners[0].tls: must be \"starttls\" or \"direct\"", NULL);
	expect_error("listeners = ( { tls = \"direct\"; } );\n", "address is required", NULL);
	expect_error("listeners = ( { address = \"*:1\"; }, { address = \"*:1\"; tls = \"direct\"; } );\n",
		     "listener *:1 configured twice", NULL);
	expect_error("listeners = ( );\n", "at least one listener", NULL);
	expect_error("limits = { max_stanza = 100; };\n", "limits.max_stanza: must be between 10000", NULL);
	expect_error("limits = { max_stanza = \"1X\"; };\n", "limits.max_stanza: not a size", NULL);
	expect_error("limits = { max_depth = 2; };\n", "limits.max_depth: must be between 4 and 65535", NULL);
	expect_error("limits = { max_depth = 70000; };\n", "limits.max_depth", NULL);
	expect_error("limits = { max_output = 20000; };\n", "max_output (20000) must be at least limits.max_stanza", NULL);
	expect_error("limits = { header_timeout_ms = 10; };\n", "header_timeout_ms: must be between 1000", NULL);
	expect_error("limits = 5;\n", "limits: must be a group", NULL);
	expect_error("auth = { scram_iterations = 1000; };\n", "auth.scram_iterations: must be between 4096", NULL);
	expect_error("auth = { max_failures = 0; };\n", "auth.max_failures: must be between 1 and 100", NULL);
	expect_error("store = { map_size = 1024; };\n", "store.map_size: must be between", NULL);
	expect_error("data_dir = \"/" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\";\n", "admin socket path is longer", NULL);
	/* Syntax: libconfig's message with the line. */
	expect_error("workers = 4;\nlog_level = = \"info\";\n", ":2:", "syntax error");
	expect_error("workers = 4;\nworkers = 5;\n", ":2:", "duplicate");
}

static void test_missing_file(void **state)
{
	struct server_config c;
	char err[512];

	(void)state;
	assert_int_equal(config_load("/nonexistent/stanzad.conf", &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/stanzad.conf: cannot read"));
}

static int args(struct config_overrides *ov, char *err, size_t len, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	argv[argc++] = (char *)"stanzad";
	va_start(ap, len);
	for (char *a; (a = va_arg(ap, char *)) != NULL;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	return config_args(argc, argv, ov, err, len);
}

static void test_overrides(void **state)
{
	struct config_overrides ov;
	struct server_config c;
	char err[512] = "";

	(void)state;
	assert_int_equal(args(&ov, err, sizeof(err), "-c", "/etc/stanzad.conf", "-d", "/tmp/d", "-D", "A.example",
			      "--domain", "b.example", "-w", "3", "-l", "warn", "--listen", "*:5000",
			      "--listen-tls", "[::]:5001", "-f", "--check-config", (char *)NULL), 0);
	assert_string_equal(ov.file, "/etc/stanzad.conf");
	assert_true(ov.check_only);
	assert_int_equal(ov.ndomain, 2);
	assert_int_equal(ov.nlisten, 2);

	assert_int_equal(config_load(conf(every_option), &c, err, sizeof(err)), 0);
	if (config_override(&c, &ov, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	assert_string_equal(c.data_dir, "/tmp/d");
	assert_int_equal(c.nvhost, 2);
	assert_string_equal(c.vhost[0].domain, "a.example");
	assert_string_equal(c.vhost[0].cert, "");   /* the file's paths went with its vhosts */
	assert_string_equal(c.vhost[1].domain, "b.example");
	assert_int_equal(c.nlistener, 2);
	assert_string_equal(c.listener[0].addr, "*:5000");
	assert_int_equal(c.listener[0].kind, LISTEN_C2S_STARTTLS);
	assert_string_equal(c.listener[1].addr, "[::]:5001");
	assert_int_equal(c.listener[1].kind, LISTEN_C2S_DIRECT_TLS);
	assert_int_equal(c.workers, 3);
	assert_int_equal(c.log_level, LOG_WARN);
	/* Options without a flag keep the file's value. */
	assert_int_equal(c.scram_iterations, 10000);
	assert_string_equal(c.admin_socket, "/run/stanzad/admin.sock");

	/* No flags: nothing changes. */
	struct server_config before = c;
	assert_int_equal(args(&ov, err, sizeof(err), (char *)NULL), 0);
	assert_int_equal(config_override(&c, &ov, err, sizeof(err)), 0);
	assert_memory_equal(&c, &before, sizeof(c));
}

static void test_bad_flags(void **state)
{
	struct config_overrides ov;
	struct server_config c;
	char err[512];

	(void)state;
	config_defaults(&c);
	assert_int_equal(args(&ov, err, sizeof(err), "-x", (char *)NULL), -1);
	assert_non_null(strstr(err, "unknown option -x"));
	assert_int_equal(args(&ov, err, sizeof(err), "--frobnicate", (char *)NULL), -1);
	assert_non_null(strstr(err, "unknown option --frobnicate"));
	assert_int_equal(args(&ov, err, sizeof(err), "-c", (char *)NULL), -1);
	assert_non_null(strstr(err, "needs a value"));
	assert_int_equal(args(&ov, err, sizeof(err), "extra", (char *)NULL), -1);
	assert_non_null(strstr(err, "unexpected argument \"extra\""));

	struct { const char *flag, *val, *msg; } bad[] = {
		{ "-w", "65", "-w: must be between 0" },
		{ "-w", "x", "-w: must be between 0" },
		{ "-w", "-1", "-w: must be between 0" },
		{ "-l", "verbose", "-l: not a log level" },
		{ "-D", "a..b", "-D: not a valid domain" },
		{ "--listen", "localhost", "--listen: not an address" },
		{ "--listen-tls", "1.2.3.4", "--listen-tls: not an address" },
		{ "-d", "", "-d: not a usable" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct server_config before = c;
		assert_int_equal(args(&ov, err, sizeof(err), bad[i].flag, bad[i].val, (char *)NULL), 0);
		assert_int_equal(config_override(&c, &ov, err, sizeof(err)), -1);
		if (!strstr(err, bad[i].msg))
			fail_msg("%s %s: \"%s\" lacks \"%s\"", bad[i].flag, bad[i].val, err, bad[i].msg);
		assert_memory_equal(&c, &before, sizeof(c));
	}
	/* -D twice with the same domain: caught by the cross checks. */
	assert_int_equal(args(&ov, err, sizeof(err), "-D", "x.example", "-D", "X.example", (char *)NULL), 0);
	assert_int_equal(config_override(&c, &ov, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "configured twice"));
}

/* dist/stanzad.conf.example shows every option with its default: loading
 * it must give exactly the defaults. */
static void test_example_file(void **state)
{
	const char *ex = getenv("STANZA_CONF_EXAMPLE");
	struct server_config c, d;
	char err[512] = "";

	(void)state;
	if (!ex)
		skip();
	if (config_load(ex, &c, err, sizeof(err)) < 0)
		fail_msg("%s", err);
	config_defaults(&d);
	assert_memory_equal(&c, &d, sizeof(c));
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(config_listener_kind_name(LISTEN_C2S_STARTTLS), "starttls");
	assert_string_equal(config_listener_kind_name(LISTEN_C2S_DIRECT_TLS), "direct");
	assert_string_equal(config_conflict_name(CONFLICT_RENAME_NEW), "rename_new");
	assert_string_equal(config_conflict_name(99), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_defaults, teardown),
		cmocka_unit_test_teardown(test_every_option, teardown),
		cmocka_unit_test_teardown(test_sizes, teardown),
		cmocka_unit_test_teardown(test_unknown_keys, teardown),
		cmocka_unit_test_teardown(test_bad_values, teardown),
		cmocka_unit_test_teardown(test_missing_file, teardown),
		cmocka_unit_test_teardown(test_overrides, teardown),
		cmocka_unit_test_teardown(test_bad_flags, teardown),
		cmocka_unit_test_teardown(test_example_file, teardown),
		cmocka_unit_test_teardown(test_names, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
