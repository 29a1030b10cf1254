/* control/admin.c: the admin socket protocol's request parser, response
 * framing (dot-stuffing) and statistics lines. Here beside cmd/'s tests
 * because stanzactl is the other end of the protocol. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "control/admin.h"
#include "router/server.h"

static int parse(const char *line, struct admin_req *r, const char **why)
{
	*why = NULL;
	return admin_parse(line, strlen(line), r, why);
}

static void test_requests(void **state)
{
	struct admin_req r;
	const char *why;

	(void)state;
	assert_int_equal(parse("account add juliet@example.com", &r, &why), 0);
	assert_int_equal(r.cmd, ADMIN_ACCOUNT_ADD);
	assert_string_equal(r.arg, "juliet@example.com");
	assert_true(admin_needs_password(r.cmd));

	assert_int_equal(parse("account passwd Juliet@Example.com\r", &r, &why), 0);
	assert_int_equal(r.cmd, ADMIN_ACCOUNT_PASSWD);
	assert_string_equal(r.arg, "Juliet@Example.com");   /* as given: prepared by the user */
	assert_true(admin_needs_password(r.cmd));

	assert_int_equal(parse("  account\tdel   romeo@example.com  ", &r, &why), 0);
	assert_int_equal(r.cmd, ADMIN_ACCOUNT_DEL);
	assert_string_equal(r.arg, "romeo@example.com");
	assert_false(admin_needs_password(r.cmd));

	assert_int_equal(parse("account list", &r, &why), 0);
	assert_int_equal(r.cmd, ADMIN_ACCOUNT_LIST);
	assert_string_equal(r.arg, "");
	assert_int_equal(parse("account list example.com", &r, &why), 0);
	assert_string_equal(r.arg, "example.com");

	assert_int_equal(parse("sessions", &r, &why), 0);
	assert_int_equal(r.cmd, ADMIN_SESSIONS);
	assert_int_equal(parse("stats", &r, &why), 0);
	assert_int_equal(r.cmd, ADMIN_STATS);
	assert_int_equal(parse("reload", &r, &why), 0);
	assert_int_equal(r.cmd, ADMIN_RELOAD);

	assert_int_equal(parse("kick juliet@example.com", &r, &why), 0);
	assert_int_equal(r.cmd, ADMIN_KICK);
	assert_string_equal(r.arg, "juliet@example.com");
	assert_string_equal(r.cond, "");
	assert_int_equal(parse("kick juliet@example.com/balcony conflict", &r, &why), 0);
	assert_string_equal(r.arg, "juliet@example.com/balcony");
	assert_string_equal(r.cond, "conflict");
	/* A resource with spaces stays whole; a last word that is no
	 * condition belongs to it. */
	assert_int_equal(parse("kick juliet@example.com/my  phone", &r, &why), 0);
	assert_string_equal(r.arg, "juliet@example.com/my  phone");
	assert_string_equal(r.cond, "");
	assert_int_equal(parse("kick juliet@example.com/my phone system-shutdown", &r, &why), 0);
	assert_string_equal(r.arg, "juliet@example.com/my phone");
	assert_string_equal(r.cond, "system-shutdown");
	/* A lone condition-like word is the JID. */
	assert_int_equal(parse("kick conflict", &r, &why), 0);
	assert_string_equal(r.arg, "conflict");
	assert_string_equal(r.cond, "");
}

static void test_bad_requests(void **state)
{
	static const struct { const char *line, *why; } bad[] = {
		{ "", "empty request" },
		{ "   ", "empty request" },
		{ "frobnicate", "unknown command" },
		{ "ACCOUNT list", "unknown command" },
		{ "account", "usage: account" },
		{ "account add", "usage: account add|passwd|del JID" },
		{ "account add a@b c", "usage: account add|passwd|del JID" },
		{ "account rename a@b", "usage: account" },
		{ "account list a b", "usage: account list [DOMAIN]" },
		{ "sessions all", "takes no arguments" },
		{ "stats 1", "takes no arguments" },
		{ "kick", "usage: kick JID [CONDITION]" },
		{ "account add a@b\x01", "control character" },
		{ "account add a@b\x7f", "control character" },
		{ "a b c d e f g h i", "too many words" },
	};
	struct admin_req r;
	const char *why;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(parse(bad[i].line, &r, &why), -1);
		assert_non_null(why);
		if (!strstr(why, bad[i].why))
			fail_msg("\"%s\": \"%s\" lacks \"%s\"", bad[i].line, why, bad[i].why);
		assert_int_equal(r.cmd, ADMIN_NONE);
	}
	/* NUL inside the line (length given explicitly). */
	assert_int_equal(admin_parse("account del a\0b", 15, &r, &why), -1);

	/* Length limits: a line, an argument. */
	static char line[ADMIN_LINE_MAX + 16];
	memset(line, 'a', sizeof(line));
	assert_int_equal(admin_parse(line, ADMIN_LINE_MAX + 1, &r, &why), -1);
	assert_string_equal(why, "line too long");
	memcpy(line, "account del ", 12);
	assert_int_equal(admin_parse(line, 12 + ADMIN_ARG_MAX, &r, &why), -1);
	assert_int_equal(admin_parse(line, 12 + ADMIN_ARG_MAX - 1, &r, &why), 0);
	assert_int_equal(strlen(r.arg), ADMIN_ARG_MAX - 1);
}

static void test_conditions(void **state)
{
	(void)state;
	assert_true(admin_condition_known("policy-violation", 16));
	assert_true(admin_condition_known("conflict", 8));
	assert_false(admin_condition_known("conflic", 7));
	assert_false(admin_condition_known("bad-format", 10));
	assert_true(admin_condition_known(ADMIN_KICK_DEFAULT, strlen(ADMIN_KICK_DEFAULT)));
	assert_string_equal(admin_cmd_name(ADMIN_ACCOUNT_PASSWD), "account passwd");
}

/* Split a response buffer into lines and unstuff them as stanzactl does. */
static size_t read_back(const struct admin_out *o, char lines[][64], size_t max, bool *ended)
{
	size_t n = 0, i = 0;

	*ended = false;
	while (i < o->len) {
		const char *lf = memchr(o->buf + i, '\n', o->len - i);
		const char *data;
		size_t dlen;
		assert_non_null(lf);
		if (admin_unstuff(o->buf + i, (size_t)(lf - (o->buf + i)), &data, &dlen)) {
			*ended = true;
			assert_true(lf + 1 == o->buf + o->len);   /* nothing after the end */
			break;
		}
		assert_true(n < max && dlen < 64);
		memcpy(lines[n], data, dlen);
		lines[n++][dlen] = '\0';
		i = (size_t)(lf + 1 - o->buf);
	}
	return n;
}

static void test_responses(void **state)
{
	struct admin_out o;
	char lines[8][64];
	bool ended;

	(void)state;
	admin_out_init(&o, 1 << 16);
	assert_int_equal(admin_out_ok(&o), 0);
	assert_int_equal(admin_out_line(&o, ".", 1), 0);
	assert_int_equal(admin_out_line(&o, "..x", 3), 0);
	assert_int_equal(admin_out_printf(&o, "%d %s", 3, "sessions"), 0);
	assert_int_equal(admin_out_line(&o, "", 0), 0);
	assert_int_equal(admin_out_end(&o), 0);
	assert_int_equal(o.len, strlen("ok\n..\n...x\n3 sessions\n\n.\n"));
	assert_memory_equal(o.buf, "ok\n..\n...x\n3 sessions\n\n.\n", o.len);
	assert_int_equal(read_back(&o, lines, 8, &ended), 5);
	assert_true(ended);
	assert_string_equal(lines[0], "ok");
	assert_string_equal(lines[1], ".");
	assert_string_equal(lines[2], "..x");
	assert_string_equal(lines[3], "3 sessions");
	assert_string_equal(lines[4], "");

	/* err keeps to one line whatever the reason holds. */
	admin_out_reset(&o);
	assert_int_equal(admin_out_err(&o, "bad %s", "a\nb"), 0);
	assert_int_equal(admin_out_end(&o), 0);
	assert_memory_equal(o.buf, "err bad a b\n.\n", o.len);
	admin_out_free(&o);

	/* Bounded: past max, nothing more is taken and overflow says so. */
	admin_out_init(&o, 16);
	assert_int_equal(admin_out_line(&o, "0123456789", 10), 0);
	assert_int_equal(admin_out_line(&o, "0123456789", 10), -1);
	assert_true(o.overflow);
	assert_int_equal(o.len, 11);
	assert_int_equal(admin_out_end(&o), -1);
	admin_out_reset(&o);
	assert_false(o.overflow);
	assert_int_equal(admin_out_err(&o, "too big"), 0);
	assert_int_equal(admin_out_end(&o), 0);
	admin_out_free(&o);
}

static void test_stats(void **state)
{
	struct server_worker_stats a = {
		.connections = 10, .sessions = 8, .accepted = 12345678901ull, .stanzas_in = 5,
		.stanzas_out = 6, .bytes_in = 7, .bytes_out = UINT64_MAX, .stream_errors = 9, .auth_failures = 1,
	}, b;
	struct admin_out o;
	unsigned w;

	(void)state;
	admin_out_init(&o, 4096);
	assert_int_equal(admin_format_stats(&o, 3, &a), 0);
	assert_true(o.len > 0 && o.buf[o.len - 1] == '\n');
	assert_int_equal(admin_parse_stats(o.buf, o.len - 1, &w, &b), 0);
	assert_int_equal(w, 3);
	assert_memory_equal(&a, &b, sizeof(a));
	admin_out_free(&o);

	/* Names this version does not know are skipped; missing ones are 0. */
	const char *l = "worker 1 connections 2 future_counter 77 stanzas_in 9";
	assert_int_equal(admin_parse_stats(l, strlen(l), &w, &b), 0);
	assert_int_equal(w, 1);
	assert_int_equal(b.connections, 2);
	assert_int_equal(b.stanzas_in, 9);
	assert_int_equal(b.sessions, 0);

	static const char *const bad[] = {
		"workers 4", "worker", "worker x", "worker 1 connections", "worker 1 connections -2",
		"worker 1 connections 99999999999999999999", "time_ms 5",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (admin_parse_stats(bad[i], strlen(bad[i]), &w, &b) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_conditions),
		cmocka_unit_test(test_responses),
		cmocka_unit_test(test_stats),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
