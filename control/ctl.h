/* The control thread's loop: signals, the router's requests, the admin
 * socket. cmd/stanzad runs it on its main thread once the workers are
 * started; it returns when SIGTERM or SIGINT has closed every stream.
 *
 *     ctl_signals_block();                  // before server_start
 *     server_start(s);
 *     rc = ctl_run(&conf);                  // until SIGTERM
 *
 * One epoll over:
 *   signalfd    SIGTERM, SIGINT: server_shutdown and return.
 *               SIGHUP: conf->reload (the configuration is cmd/'s business).
 *   ctl fd      server_ctl_process: the workers' SASL requests.
 *   admin       the listening socket and its clients (admin.h protocol):
 *               nonblocking, one request at a time per client, bounded
 *               buffers, so a slow or stuck client holds only its own slot.
 * The loop does block on the store and on PBKDF2 (account commands,
 * authentication): that is what the control plane is for.
 */
#ifndef STANZA_CONTROL_CTL_H
#define STANZA_CONTROL_CTL_H

#include <stddef.h>
#include <stdint.h>

struct im_ctx;
struct server;
struct server_config;
struct store;

/* How long workers may flush their closing streams on SIGTERM. */
#define CTL_SHUTDOWN_GRACE_MS  5000u
/* Admin clients at once; more are accepted and closed at once. */
#define CTL_MAX_CLIENTS        16u
/* The most one response may take (an account list of a very large
 * domain answers "err" past it: ask per domain). */
#define CTL_OUT_MAX            (64u << 20)

struct ctl_conf {
	struct server *server;
	struct store *store;                  /* account commands; borrowed */
	/* The live configuration (vhosts for account domains, iterations for
	 * new credentials). Borrowed; reload may change it, on this thread. */
	const struct server_config *cfg;
	/* The IM control plane (may be NULL): "account del" clears what it
	 * keeps of the user besides the store's records (im_purge_user). */
	struct im_ctx *im;
	const char *socket_path;              /* the admin socket, removed at the end */
	int socket_fd;                        /* from ctl_listen(socket_path); ctl_run closes it */
	/* SIGHUP and the admin "reload": re-read what can change live, log
	 * it, and write one line for the admin into msg. 0 or -1 (the old
	 * configuration stays). */
	int (*reload)(void *arg, char *msg, size_t len);
	void *reload_arg;
};

/* Block SIGTERM, SIGINT, SIGHUP and SIGPIPE in the calling thread, so that
 * threads it starts afterwards (the workers) inherit the mask and only the
 * loop's signalfd sees them. 0 or -1 (errno). */
int ctl_signals_block(void);

/* Create the admin socket at path (mode 0600), replacing a stale one left
 * by a daemon that died, refusing one that a live daemon answers on. Call
 * it before server_new, so that a second daemon on the same data directory
 * stops before it binds anything. The listening fd, or -1 (logged). */
int ctl_listen(const char *path);

/* Run the loop until SIGTERM or SIGINT, then server_shutdown(grace) and
 * remove the admin socket. The caller's thread becomes the control thread
 * (server_ctl_thread_init/exit are called here). 0 after a clean
 * shutdown; -1 if the loop could not start (logged), after shutting the
 * server down all the same. */
int ctl_run(const struct ctl_conf *conf);

#endif
