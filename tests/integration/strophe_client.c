/* A small libstrophe client for the integration tests.
 *
 *   strophe_client [--tls] --port P --jid JID --to JID --send BODY
 *                  [--expect BODY] [--timeout SECONDS] [-v]
 *
 * Password: the environment variable STROPHE_PASS.
 *
 * Connects to 127.0.0.1:P (STARTTLS, or direct TLS with --tls through
 * XMPP_CONN_FLAG_LEGACY_SSL), does not verify the server's self-signed
 * certificate (XMPP_CONN_FLAG_TRUST_TLS), authenticates with the SASL
 * mechanism libstrophe picks, binds, and prints on stdout, one line each:
 *
 *   MECH <mechanism>                  the SASL mechanism libstrophe used
 *   BOUND <full jid>                  after the session is established
 *   RECV <from> <body>                for every message received
 *
 * It sends one chat message (BODY) to --to right after binding, then waits
 * for a message whose body is --expect (any message without --expect),
 * disconnects and exits 0. Exit 2 on timeout, 1 on a connection failure.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strophe.h>

static const char *opt_to, *opt_send, *opt_expect;
static int opt_verbose;
static int got_expected, failed, connected_once;
static char mech[64];

static void logger(void *ud, xmpp_log_level_t level, const char *area, const char *msg)
{
	(void)ud;
	/* libstrophe logs each stanza it sends: pick the SASL mechanism out. */
	const char *m = strstr(msg, "mechanism=");
	if (m && !mech[0] && strstr(msg, "<auth")) {
		m += strlen("mechanism=");
		char q = *m++;
		size_t i = 0;
		while (m[i] && m[i] != q && i + 1 < sizeof mech) {
			mech[i] = m[i];
			i++;
		}
		mech[i] = '\0';
		printf("MECH %s\n", mech);
		fflush(stdout);
	}
	if (opt_verbose || level >= XMPP_LEVEL_WARN)
		fprintf(stderr, "strophe %s %s: %s\n",
			level == XMPP_LEVEL_DEBUG ? "debug" : level == XMPP_LEVEL_INFO ? "info" :
			level == XMPP_LEVEL_WARN ? "warn" : "error", area, msg);
}

static int on_message(xmpp_conn_t *conn, xmpp_stanza_t *st, void *ud)
{
	xmpp_ctx_t *ctx = ud;
	(void)conn;
	const char *type = xmpp_stanza_get_type(st);
	if (type && strcmp(type, "error") == 0) {
		printf("ERROR-MESSAGE %s\n", xmpp_stanza_get_from(st) ? xmpp_stanza_get_from(st) : "");
		fflush(stdout);
		return 1;
	}
	char *body = xmpp_message_get_body(st);
	const char *from = xmpp_stanza_get_from(st);
	printf("RECV %s %s\n", from ? from : "-", body ? body : "");
	fflush(stdout);
	if (!opt_expect || (body && strcmp(body, opt_expect) == 0))
		got_expected = 1;
	if (body)
		xmpp_free(ctx, body);
	return 1;
}

static void on_conn(xmpp_conn_t *conn, xmpp_conn_event_t ev, int error,
		    xmpp_stream_error_t *se, void *ud)
{
	xmpp_ctx_t *ctx = ud;
	if (ev == XMPP_CONN_CONNECT) {
		connected_once = 1;
		printf("SECURE %d\n", xmpp_conn_is_secured(conn));
		printf("BOUND %s\n", xmpp_conn_get_bound_jid(conn));
		fflush(stdout);
		xmpp_handler_add(conn, on_message, NULL, "message", NULL, ctx);
		xmpp_stanza_t *msg = xmpp_message_new(ctx, "chat", opt_to, "s1");
		xmpp_message_set_body(msg, opt_send);
		xmpp_send(conn, msg);
		xmpp_stanza_release(msg);
		return;
	}
	if (ev == XMPP_CONN_DISCONNECT || ev == XMPP_CONN_FAIL) {
		if (!got_expected) {
			failed = 1;
			fprintf(stderr, "strophe_client: disconnected (error %d%s%s)\n", error,
				se && se->text ? ", " : "", se && se->text ? se->text : "");
		}
		xmpp_stop(ctx);
	}
}

static void usage(void)
{
	fprintf(stderr, "usage: strophe_client [--tls] --port P --jid JID --to JID --send BODY "
			"[--expect BODY] [--timeout S] [-v]  (password in STROPHE_PASS)\n");
	exit(64);
}

int main(int argc, char **argv)
{
	const char *jid = NULL;
	int port = 0, tls = 0;
	double timeout = 15;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--tls") == 0) tls = 1;
		else if (strcmp(a, "-v") == 0) opt_verbose = 1;
		else if (!v) usage();
		else if (strcmp(a, "--port") == 0) port = atoi(v), i++;
		else if (strcmp(a, "--jid") == 0) jid = v, i++;
		else if (strcmp(a, "--to") == 0) opt_to = v, i++;
		else if (strcmp(a, "--send") == 0) opt_send = v, i++;
		else if (strcmp(a, "--expect") == 0) opt_expect = v, i++;
		else if (strcmp(a, "--timeout") == 0) timeout = atof(v), i++;
		else usage();
	}
	const char *pass = getenv("STROPHE_PASS");
	if (!jid || !port || !opt_to || !opt_send || !pass)
		usage();
	signal(SIGPIPE, SIG_IGN);

	xmpp_initialize();
	xmpp_log_t log = { logger, NULL };
	xmpp_ctx_t *ctx = xmpp_ctx_new(NULL, &log);
	xmpp_conn_t *conn = xmpp_conn_new(ctx);
	long flags = XMPP_CONN_FLAG_TRUST_TLS | XMPP_CONN_FLAG_MANDATORY_TLS;
	if (tls)
		flags |= XMPP_CONN_FLAG_LEGACY_SSL;
	if (xmpp_conn_set_flags(conn, flags) != 0) {
		fprintf(stderr, "strophe_client: flags refused\n");
		return 1;
	}
	xmpp_conn_set_jid(conn, jid);
	xmpp_conn_set_pass(conn, pass);
	if (xmpp_connect_client(conn, "127.0.0.1", (unsigned short)port, on_conn, ctx) != XMPP_EOK) {
		fprintf(stderr, "strophe_client: connect failed\n");
		return 1;
	}

	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int timed_out = 0, disconnecting = 0;
	for (long iter = 0; iter < 1000000; iter++) {
		xmpp_run_once(ctx, 50);
		if (failed)
			break;
		if (got_expected && !disconnecting) {
			disconnecting = 1;
			xmpp_disconnect(conn);
		}
		clock_gettime(CLOCK_MONOTONIC, &t);
		double el = (double)(t.tv_sec - t0.tv_sec) + (double)(t.tv_nsec - t0.tv_nsec) / 1e9;
		if (el > timeout) {
			timed_out = !got_expected;
			break;
		}
		if (disconnecting && !xmpp_conn_is_connected(conn))
			break;
	}
	int rc = failed ? 1 : timed_out ? 2 : 0;
	if (timed_out)
		fprintf(stderr, "strophe_client: timeout after %.1f s (connected %d)\n", timeout, connected_once);
	xmpp_conn_release(conn);
	xmpp_ctx_free(ctx);
	xmpp_shutdown();
	return rc;
}
