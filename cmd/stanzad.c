/* stanzad: parse the options, wire the layers, run the control loop.
 *
 * Exit status: 0 after a clean shutdown (SIGTERM, SIGINT) or a successful
 * --check-config; 1 when the configuration or the command line is wrong;
 * 2 when something failed at run time (data directory, certificates,
 * store, a listener's address in use, ...). The reason is logged.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cmd/config.h"
#include "control/auth.h"
#include "control/ctl.h"
#include "control/im.h"
#include "control/sasl-t.h"
#include "net/dpdk/dpdk.h"
#include "router/server.h"
#include "store/store.h"
#include "tls/tls.h"
#include "util/log.h"

#ifndef STANZA_VERSION
#define STANZA_VERSION "unknown"
#endif

_Static_assert(AUTH_CB_TLS_EXPORTER == SASL_CB_TLS_EXPORTER, "router and control disagree on channel bindings");
_Static_assert(AUTH_CB_TLS_SERVER_END_POINT == SASL_CB_TLS_SERVER_END_POINT,
	       "router and control disagree on channel bindings");

enum { EXIT_CONFIG = 1, EXIT_RUNTIME = 2 };

/* Everything the process holds, for the reload callback. */
struct app {
	struct config_overrides ov;
	struct server_config cfg;      /* running: what the router was built with, plus live changes */
	struct server *server;
	struct store *store;
	struct auth auth;
	struct im_ctx im;
};

static struct app app;   /* large (configuration, auth context): not for the stack */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: stanzad [options]\n"
		"  -c, --config FILE       configuration file (default: none, built-in defaults)\n"
		"  -d, --data-dir DIR      data directory (store, certificates, admin socket)\n"
		"  -D, --domain DOMAIN     serve this domain; repeat for more (replaces the file's vhosts)\n"
		"  -w, --workers N         worker threads, 0 = one per online CPU\n"
		"  -l, --log-level LEVEL   error, warn, info, debug\n"
		"      --listen ADDR       c2s listener with STARTTLS (repeatable; replaces the file's)\n"
		"      --listen-tls ADDR   c2s listener with direct TLS, XEP-0368 (repeatable)\n"
		"      --allow-plaintext-auth  SCRAM without TLS (never PLAIN): benchmarks, trusted networks\n"
		"  -f, --foreground        run in the foreground (always; for compatibility)\n"
		"      --check-config      check the configuration and exit\n"
		"  -h, --help              this text\n"
		"  -V, --version           print the version\n"
		"See docs/CONFIG.md for the file's options.\n");
}

/* The directory exists, is a directory, and only we may enter it: it
 * holds private keys, the store and the admin socket. */
static int ensure_dir(const char *path)
{
	struct stat st;

	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		log_err("cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		log_err("%s: not a directory", path);
		return -1;
	}
	if (st.st_mode & 077) {
		log_warn("%s was mode %03o: tightened to 0700", path, (unsigned)(st.st_mode & 0777));
		if (chmod(path, 0700) < 0) {
			log_err("chmod %s: %s", path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* The certificates of every vhost of cfg, generating the missing
 * self-signed ones under <data_dir>/certs. NULL (logged) on failure. */
static struct tls_server *build_tls(const struct server_config *cfg)
{
	static const char *const alpn[] = { "xmpp-client" };
	static char cert[CONFIG_MAX_VHOSTS][CONFIG_PATH_MAX], key[CONFIG_MAX_VHOSTS][CONFIG_PATH_MAX];
	struct tls_vhost_conf vh[CONFIG_MAX_VHOSTS];
	struct tls_server_conf conf = { .vhosts = vh, .nvhosts = cfg->nvhost, .alpn = alpn, .nalpn = 1 };
	struct tls_server *tls;
	char err[512], dir[CONFIG_PATH_MAX];

	for (unsigned i = 0; i < cfg->nvhost; i++) {
		const char *dom = cfg->vhost[i].domain;
		bool gen;
		int r;

		if (config_cert_paths(cfg, i, cert[i], key[i], CONFIG_PATH_MAX, &gen) < 0) {
			log_err("%s: certificate path too long", dom);
			return NULL;
		}
		if (gen) {
			int w = snprintf(dir, sizeof(dir), "%s/certs", cfg->data_dir);
			if (w < 0 || (size_t)w >= sizeof(dir)) {
				log_err("%s: path too long", cfg->data_dir);
				return NULL;
			}
			if (ensure_dir(dir) < 0)
				return NULL;
			r = tls_cert_ensure(cert[i], key[i], &dom, 1, err, sizeof(err));
			if (r < 0) {
				log_err("%s: certificate: %s", dom, err);
				return NULL;
			}
			if (r == 1)
				log_info("%s: generated a self-signed certificate %s (replace it with a real one, "
					 "or set cert and key)", dom, cert[i]);
		}
		vh[i] = (struct tls_vhost_conf){ dom, cert[i], key[i] };
	}
	tls = tls_server_new(&conf, err, sizeof(err));
	if (!tls)
		log_err("TLS: %s", err);
	return tls;
}

/* ---- reload (SIGHUP, admin "reload") --------------------------------------- */

static const char *level_name(int level)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	return level >= 0 && level <= LOG_DEBUG ? names[level] : "?";
}

/* Appends to the list of options that changed but need a restart. */
static void note(char *buf, size_t len, bool changed, const char *name)
{
	size_t n = strlen(buf);

	if (changed && n < len)
		snprintf(buf + n, len - n, "%s%s", n ? ", " : "", name);
}

static bool vhosts_differ(const struct server_config *a, const struct server_config *b)
{
	if (a->nvhost != b->nvhost)
		return true;
	for (unsigned i = 0; i < a->nvhost; i++)
		if (strcmp(a->vhost[i].domain, b->vhost[i].domain))
			return true;
	return false;
}

/* What can change live: the log level and the certificates (files and
 * paths of the vhosts already served). The router copied the rest at
 * server_new; those options are compared and named in the log so that the
 * operator knows a restart is due. */
static int reload(void *arg, char *msg, size_t len)
{
	struct app *a = arg;
	struct server_config *n = malloc(sizeof(*n)), *run = &a->cfg;
	struct tls_server *tls;
	char err[1024], restart[256] = "";
	unsigned certs = 0;
	int rc = -1;

	if (!n) {
		snprintf(msg, len, "out of memory");
		goto out;
	}
	if (config_load(a->ov.file, n, err, sizeof(err)) < 0 || config_override(n, &a->ov, err, sizeof(err)) < 0) {
		log_err("reload: %s; the running configuration stays", err);
		snprintf(msg, len, "%s", err);
		goto out;
	}

	note(restart, sizeof(restart), vhosts_differ(run, n), "vhosts");
	note(restart, sizeof(restart), run->nlistener != n->nlistener ||
	     memcmp(run->listener, n->listener, sizeof(run->listener[0]) * n->nlistener), "listeners");
	note(restart, sizeof(restart), run->workers != n->workers || run->pin_workers != n->pin_workers, "workers");
	note(restart, sizeof(restart), strcmp(run->data_dir, n->data_dir) || strcmp(run->admin_socket, n->admin_socket),
	     "data_dir/admin_socket");
	note(restart, sizeof(restart), memcmp(&run->xml, &n->xml, sizeof(n->xml)) || run->max_output != n->max_output ||
	     run->header_timeout_ms != n->header_timeout_ms || run->auth_timeout_ms != n->auth_timeout_ms, "limits");
	note(restart, sizeof(restart), run->max_auth_failures != n->max_auth_failures ||
	     run->auth_fail_delay_ms != n->auth_fail_delay_ms || run->scram_iterations != n->scram_iterations, "auth");
	note(restart, sizeof(restart), run->conflict != n->conflict, "resource_conflict");
	note(restart, sizeof(restart), run->store_map_size != n->store_map_size, "store");
	note(restart, sizeof(restart), strcmp(run->transport, n->transport) || memcmp(&run->dpdk, &n->dpdk, sizeof(n->dpdk)),
	     "transport/dpdk");
	note(restart, sizeof(restart), memcmp(&run->im, &n->im, sizeof(n->im)) != 0, "im");

	/* New certificate paths for the vhosts the router serves; a vhost
	 * added or removed waits for the restart. */
	struct server_config *merged = malloc(sizeof(*merged));
	if (!merged) {
		snprintf(msg, len, "out of memory");
		goto out;
	}
	*merged = *run;
	for (unsigned i = 0; i < merged->nvhost; i++) {
		for (unsigned j = 0; j < n->nvhost; j++) {
			if (!strcmp(merged->vhost[i].domain, n->vhost[j].domain)) {
				memcpy(merged->vhost[i].cert, n->vhost[j].cert, sizeof(n->vhost[j].cert));
				memcpy(merged->vhost[i].key, n->vhost[j].key, sizeof(n->vhost[j].key));
			}
		}
	}
	tls = build_tls(merged);
	if (!tls) {
		free(merged);
		log_err("reload: certificates unusable; the running configuration stays");
		snprintf(msg, len, "certificates unusable (see the server log); nothing changed");
		goto out;
	}
	server_set_tls(a->server, tls);
	tls_server_unref(tls);
	certs = merged->nvhost;
	memcpy(run->vhost, merged->vhost, sizeof(run->vhost));
	free(merged);

	run->log_level = n->log_level;
	log_set_level((enum log_level)n->log_level);

	snprintf(msg, len, "reloaded certificates of %u vhost%s, log level %s%s%s", certs, certs == 1 ? "" : "s",
		 level_name(n->log_level), restart[0] ? "; needs a restart to apply: " : "", restart);
	log_info("reload: %s", msg);
	rc = 0;
out:
	free(n);
	return rc;
}

/* ---- main ------------------------------------------------------------------- */

/* transport "dpdk": the EAL and the port, one queue pair per worker, before
 * the router creates its loops (and after the signal mask, which the EAL's
 * threads inherit). */
static int dpdk_start(const struct server_config *cfg)
{
	char err[1024];
	unsigned n = cfg->workers;

	if (strcmp(cfg->transport, "dpdk"))
		return 0;
	if (n == 0) {   /* as the router counts them */
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (unsigned)c : 1u;
		if (n > CONFIG_MAX_WORKERS)
			n = CONFIG_MAX_WORKERS;
	}
	if (net_dpdk_init(&cfg->dpdk, n, err, sizeof(err)) < 0) {
		log_err("dpdk: %s", err);
		return -1;
	}
	log_info("dpdk: port %s up, %u queue pair%s", cfg->dpdk.port, n, n == 1 ? "" : "s");
	return 0;
}

static void dpdk_stop(const struct server_config *cfg)
{
	struct net_dpdk_stats st;
	char line[2048];

	if (strcmp(cfg->transport, "dpdk"))
		return;
	net_dpdk_stats(&st);
	log_info("dpdk: %s", net_dpdk_stats_format(&st, line, sizeof(line)));
	net_dpdk_fini();
}

static void log_start(struct app *a, unsigned workers)
{
	char lis[CONFIG_MAX_LISTENERS * 140] = "", vh[1024] = "";
	size_t n = 0;

	for (unsigned i = 0; i < a->cfg.nlistener && n < sizeof(lis); i++)
		n += (size_t)snprintf(lis + n, sizeof(lis) - n, "%s%s (%s)", i ? " " : "", a->cfg.listener[i].addr,
				      config_listener_kind_name(a->cfg.listener[i].kind));
	n = 0;
	for (unsigned i = 0; i < a->cfg.nvhost && n < sizeof(vh); i++)
		n += (size_t)snprintf(vh + n, sizeof(vh) - n, "%s%s", i ? " " : "", a->cfg.vhost[i].domain);
	log_info("stanzad %s started: %u worker%s, listeners %s, vhosts %s, data %s", STANZA_VERSION, workers,
		 workers == 1 ? "" : "s", lis, vh, a->cfg.data_dir);
	if (a->cfg.allow_plaintext_auth)
		log_warn("auth.allow_plaintext is on: SCRAM logins without TLS are accepted "
			 "(benchmarks and trusted networks only)");
}

int main(int argc, char **argv)
{
	struct app *a = &app;
	struct router_hooks hooks = { .auth = auth_hooks };
	struct server_worker_stats st0;
	struct store_options so;
	struct tls_server *tls;
	char err[1024], path[CONFIG_PATH_MAX], sock[CONFIG_PATH_MAX];
	int rc;

	if (config_args(argc, argv, &a->ov, err, sizeof(err)) < 0) {
		fprintf(stderr, "stanzad: %s\n", err);
		usage(stderr);
		return EXIT_CONFIG;
	}
	if (a->ov.help) {
		usage(stdout);
		return 0;
	}
	if (a->ov.version) {
		printf("stanzad %s\n", STANZA_VERSION);
		return 0;
	}
	if (config_load(a->ov.file, &a->cfg, err, sizeof(err)) < 0 ||
	    config_override(&a->cfg, &a->ov, err, sizeof(err)) < 0) {
		log_err("configuration: %s", err);
		return EXIT_CONFIG;
	}
	if (a->ov.check_only) {
		printf("%s: ok\n", a->ov.file ? a->ov.file : "built-in defaults");
		return 0;
	}
	log_set_level((enum log_level)a->cfg.log_level);

	/* Before any thread exists (the store's, OpenSSL's, the workers), so
	 * that all inherit the mask and only the control loop's signalfd
	 * takes SIGTERM and SIGHUP. A signal that comes during start-up
	 * waits for the loop. */
	if (ctl_signals_block() < 0) {
		log_err("sigprocmask: %s", strerror(errno));
		return EXIT_RUNTIME;
	}
	if (dpdk_start(&a->cfg) < 0)
		return EXIT_RUNTIME;

	if (ensure_dir(a->cfg.data_dir) < 0)
		return EXIT_RUNTIME;
	tls = build_tls(&a->cfg);
	if (!tls)
		return EXIT_RUNTIME;

	store_options_default(&so);
	so.map_size = (size_t)a->cfg.store_map_size;
	if (config_store_dir(&a->cfg, path, sizeof(path)) < 0 || config_admin_socket(&a->cfg, sock, sizeof(sock)) < 0) {
		log_err("%s: path too long", a->cfg.data_dir);
		tls_server_unref(tls);
		return EXIT_RUNTIME;
	}
	rc = store_open(&a->store, path, &so);
	if (rc != STORE_OK) {
		log_err("store %s: %s", path, store_rc_str(rc));
		tls_server_unref(tls);
		return EXIT_RUNTIME;
	}
	if (snprintf(path, sizeof(path), "%s/auth.secret", a->cfg.data_dir) >= (int)sizeof(path)) {
		log_err("%s: path too long", a->cfg.data_dir);
		store_close(a->store);
		tls_server_unref(tls);
		return EXIT_RUNTIME;
	}
	if (auth_init(&a->auth, a->store, a->cfg.scram_iterations, path) != AUTH_OK) {
		store_close(a->store);
		tls_server_unref(tls);
		return EXIT_RUNTIME;
	}

	/* The IM control plane behind the router's im hook. */
	if (im_init(&a->im, a->store, &a->cfg) < 0) {
		tls_server_unref(tls);
		rc = EXIT_RUNTIME;
		goto out_auth;
	}
	hooks.im.serve = im_serve;
	hooks.im.flush = im_flush;   /* group commit of offline messages */
	a->im.group_commit = true;
	hooks.im.arg = &a->im;
	services_caps_ver(hooks.im.caps_ver, sizeof(hooks.im.caps_ver));
	hooks.im.register_enabled = a->cfg.im.register_enabled != 0;

	int sfd = ctl_listen(sock);
	if (sfd < 0) {
		tls_server_unref(tls);
		rc = EXIT_RUNTIME;
		goto out_im;
	}
	a->server = server_new(&a->cfg, tls, &hooks, err, sizeof(err));
	tls_server_unref(tls);   /* the server holds its own reference */
	if (!a->server) {
		log_err("%s", err);
		rc = EXIT_RUNTIME;
		goto out_sock;
	}
	if (server_start(a->server) < 0) {
		server_free(a->server);
		rc = EXIT_RUNTIME;
		goto out_sock;
	}
	log_start(a, server_stats(a->server, 0, &st0));

	struct ctl_conf cc = {
		.server = a->server,
		.store = a->store,
		.cfg = &a->cfg,
		.im = &a->im,
		.socket_path = sock,
		.socket_fd = sfd,
		.reload = reload,
		.reload_arg = a,
	};
	rc = ctl_run(&cc) == 0 ? 0 : EXIT_RUNTIME;
	server_free(a->server);
	goto out_im;
out_sock:
	close(sfd);
	unlink(sock);
out_im:
	im_free(&a->im);
out_auth:
	auth_fini(&a->auth);
	store_close(a->store);
	dpdk_stop(&a->cfg);
	log_info("stanzad stopped%s", rc ? " after a failure" : "");
	return rc;
}
