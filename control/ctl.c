/* The control thread's loop. See ctl.h. */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "control/account.h"
#include "control/admin.h"
#include "control/ctl.h"
#include "control/im.h"
#include "parser/jid.h"
#include "router/server.h"
#include "util/log.h"

/* epoll tags: the fixed descriptors, then client i at TAG_CLIENT + i. */
enum { TAG_SIGNAL = 0, TAG_SERVER, TAG_LISTEN, TAG_CLIENT };

/* Requests one client may have served per loop iteration, so that one
 * client pipelining many requests does not starve the workers' SASL
 * requests or the other clients. */
#define CLIENT_BUDGET 8

struct client {
	int fd;                        /* -1: a free slot */
	uint32_t events;               /* what epoll watches now */
	bool want_password;            /* req is waiting for its password line */
	bool closing;                  /* close once out is flushed */
	bool again;                    /* lines left in `in` after the budget ran out */
	uid_t uid;
	size_t in_len;
	size_t out_off;                /* sent of out */
	struct admin_out out;
	struct admin_req req;
	char in[ADMIN_LINE_MAX + 2];   /* one line, CR, LF */
};

struct ctl {
	const struct ctl_conf *conf;
	int ep;
	int sfd;
	int lfd;
	bool stop;
	struct client cl[CTL_MAX_CLIENTS];
};

int ctl_signals_block(void)
{
	sigset_t set;
	int e;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGPIPE);
	e = pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (e) {
		errno = e;
		return -1;
	}
	return 0;
}

/* ---- the admin socket ------------------------------------------------------ */

int ctl_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	mode_t old;
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_err("admin socket path too long: %s", path);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);

	/* A socket file left by a daemon that died is removed; one that a
	 * live daemon answers on is not ours to take. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_err("admin socket %s: exists and is not a socket", path);
			return -1;
		}
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			log_err("admin socket: socket: %s", strerror(errno));
			return -1;
		}
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (r == 0) {
			log_err("admin socket %s: another stanzad answers there", path);
			return -1;
		}
		if (unlink(path) < 0 && errno != ENOENT) {
			log_err("admin socket %s: cannot remove the stale one: %s", path, strerror(errno));
			return -1;
		}
	}

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_err("admin socket: socket: %s", strerror(errno));
		return -1;
	}
	/* The file is born 0600: no window in which others could connect.
	 * The workers create no files, so the process-wide umask is ours
	 * for these few lines. */
	old = umask(0177);
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0) {
		log_err("admin socket %s: bind: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
		log_err("admin socket %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	return fd;
}

static int ep_set(struct ctl *c, int op, int fd, uint32_t events, uint64_t tag)
{
	struct epoll_event ev = { .events = events, .data.u64 = tag };

	if (epoll_ctl(c->ep, op, fd, &ev) < 0) {
		log_err("ctl: epoll_ctl: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void client_close(struct ctl *c, struct client *k)
{
	epoll_ctl(c->ep, EPOLL_CTL_DEL, k->fd, NULL);
	close(k->fd);
	k->fd = -1;
	/* The buffer may have held a password line. */
	explicit_bzero(k->in, sizeof(k->in));
	k->in_len = 0;
	admin_out_free(&k->out);
}

static void client_accept(struct ctl *c)
{
	for (;;) {
		struct ucred cred;
		socklen_t clen = sizeof(cred);
		struct client *k = NULL;
		int fd = accept4(c->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN)
				log_warn("admin socket: accept: %s", strerror(errno));
			return;
		}
		/* The file mode already keeps others out; the peer's
		 * credentials are the check that does not depend on the
		 * directory or the umask being right. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
		    (cred.uid != 0 && cred.uid != geteuid())) {
			log_warn("admin socket: refused a client with uid %ld", clen == sizeof(cred) ? (long)cred.uid : -1L);
			close(fd);
			continue;
		}
		for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++) {
			if (c->cl[i].fd < 0) {
				k = &c->cl[i];
				break;
			}
		}
		if (!k) {
			static const char busy[] = "err too many admin clients\n.\n";
			ssize_t w = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
			(void)w;
			close(fd);
			continue;
		}
		memset(k, 0, offsetof(struct client, in));
		k->fd = fd;
		k->uid = cred.uid;
		k->events = EPOLLIN;
		admin_out_init(&k->out, CTL_OUT_MAX);
		if (ep_set(c, EPOLL_CTL_ADD, fd, EPOLLIN, TAG_CLIENT + (uint64_t)(k - c->cl)) < 0) {
			close(fd);
			k->fd = -1;
			admin_out_free(&k->out);
		}
	}
}

/* ---- commands ------------------------------------------------------------------ */

static void say_account_rc(struct admin_out *o, int rc)
{
	switch (rc) {
	case ACCOUNT_OK: admin_out_ok(o); break;
	case ACCOUNT_EXISTS: admin_out_err(o, "exists"); break;
	case ACCOUNT_NOTFOUND: admin_out_err(o, "no such account"); break;
	case ACCOUNT_BAD_JID: admin_out_err(o, "not a valid bare JID local@domain"); break;
	case ACCOUNT_BAD_PASSWORD: admin_out_err(o, "password refused (empty or not allowed by SASLprep)"); break;
	default: admin_out_err(o, "internal error (see the server log)"); break;
	}
}

/* req->arg as a bare JID with a localpart, prepared into *j. */
static bool account_jid(const struct admin_req *req, struct jid *j)
{
	return jid_parse(j, req->arg, strlen(req->arg), 0) == JID_OK && j->local_len && jid_is_bare(j);
}

static bool domain_served(const struct server_config *cfg, const struct jid *j)
{
	struct jid_slice d = jid_domain(j);

	for (unsigned i = 0; i < cfg->nvhost; i++)
		if (strlen(cfg->vhost[i].domain) == d.len && !memcmp(cfg->vhost[i].domain, d.ptr, d.len))
			return true;
	return false;
}

static void run_password_cmd(struct ctl *c, struct client *k, const char *pass, size_t len)
{
	const struct ctl_conf *cf = c->conf;
	struct admin_out *o = &k->out;
	struct jid j;
	int rc;

	if (!account_jid(&k->req, &j)) {
		say_account_rc(o, ACCOUNT_BAD_JID);
		return;
	}
	if (k->req.cmd == ADMIN_ACCOUNT_ADD) {
		if (!domain_served(cf->cfg, &j)) {
			admin_out_err(o, "this server does not serve %.*s", (int)jid_domain(&j).len, jid_domain(&j).ptr);
			return;
		}
		rc = account_add(cf->store, j.str, pass, len, cf->cfg->scram_iterations);
	} else {
		rc = account_passwd(cf->store, j.str, pass, len, cf->cfg->scram_iterations);
	}
	/* account.c logs the change itself. */
	say_account_rc(o, rc);
}

static int list_cb(void *arg, const char *jid, size_t jid_len, int64_t created)
{
	struct admin_out *o = arg;

	(void)created;
	return admin_out_line(o, jid, jid_len) < 0;
}

static void session_cb(void *arg, const struct server_session_info *si)
{
	struct admin_out *o = arg;

	/* The JID last: a resource may hold spaces. */
	admin_out_printf(o, "%u %d %s %.*s", si->worker, si->priority,
			 si->available ? "available" : "away", (int)si->jid_len, si->jid);
}

static void run_cmd(struct ctl *c, struct client *k)
{
	const struct ctl_conf *cf = c->conf;
	struct admin_out *o = &k->out;
	struct jid j;
	int rc;

	switch (k->req.cmd) {
	case ADMIN_ACCOUNT_DEL:
		if (!account_jid(&k->req, &j)) {
			say_account_rc(o, ACCOUNT_BAD_JID);
			break;
		}
		/* Its local contacts first lose their subscriptions with it
		 * (XEP-0077 3.2, as for a removal through the client). */
		if (cf->im && cf->server) {
			const struct im_out *io = server_ctl_im_out(cf->server);
			if (io) {
				struct im_call ic;
				memset(&ic, 0, sizeof(ic));
				ic.ctx = cf->im;
				ic.out = io;
				ic.jid = j.str;
				ic.jid_len = ic.bare_len = jid_size(&j);
				roster_cancel_all(&ic);
				server_ctl_publish(cf->server);
			}
		}
		/* The account and its store records go in one commit. */
		rc = account_del(cf->store, j.str);
		say_account_rc(o, rc);
		if (rc == ACCOUNT_OK && cf->im && im_purge_user(cf->im, j.str, jid_size(&j)) < 0)
			log_err("admin: %s deleted, but some of its records were not", j.str);
		if (rc == ACCOUNT_OK) {
			/* A deleted account must not stay logged in. */
			size_t n = server_kick(cf->server, j.str, jid_size(&j), "not-authorized");
			if (n)
				log_info("admin: %s deleted: %zu sessions closed", j.str, n);
		}
		break;
	case ADMIN_ACCOUNT_LIST:
		admin_out_ok(o);
		rc = account_list(cf->store, k->req.arg[0] ? k->req.arg : NULL, list_cb, o);
		if (o->overflow) {
			admin_out_reset(o);
			admin_out_err(o, "too many accounts for one answer: list one domain at a time");
		} else if (rc != ACCOUNT_OK) {
			admin_out_reset(o);
			admin_out_err(o, "%s", rc == ACCOUNT_BAD_JID ? "not a valid domain"
					       : "internal error (see the server log)");
		}
		break;
	case ADMIN_SESSIONS:
		admin_out_ok(o);
		server_sessions(cf->server, session_cb, o);
		if (o->overflow) {
			admin_out_reset(o);
			admin_out_err(o, "too many sessions for one answer");
		}
		break;
	case ADMIN_KICK: {
		size_t n;
		if (jid_parse(&j, k->req.arg, strlen(k->req.arg), 0) != JID_OK || !j.local_len) {
			admin_out_err(o, "not a valid JID local@domain[/resource]");
			break;
		}
		n = server_kick(cf->server, j.str, jid_size(&j), k->req.cond[0] ? k->req.cond : ADMIN_KICK_DEFAULT);
		log_info("admin: kick %s: %zu sessions", j.str, n);
		admin_out_ok(o);
		admin_out_printf(o, "%zu", n);
		break;
	}
	case ADMIN_STATS: {
		struct server_worker_stats st;
		struct timespec ts;
		unsigned n = server_stats(cf->server, 0, &st);

		clock_gettime(CLOCK_MONOTONIC, &ts);
		admin_out_ok(o);
		/* The server's clock, so that rates do not depend on how long
		 * the answer took to reach the client. */
		admin_out_printf(o, "time_ms %llu",
				 (unsigned long long)ts.tv_sec * 1000u + (unsigned long long)ts.tv_nsec / 1000000u);
		admin_out_printf(o, "workers %u", n);
		for (unsigned i = 0; i < n; i++) {
			server_stats(cf->server, i, &st);
			admin_format_stats(o, i, &st);
		}
		break;
	}
	case ADMIN_RELOAD: {
		char msg[512] = "";
		if (!cf->reload) {
			admin_out_err(o, "reload is not available");
		} else if (cf->reload(cf->reload_arg, msg, sizeof(msg)) < 0) {
			admin_out_err(o, "%s", msg);
		} else {
			admin_out_ok(o);
			if (msg[0])
				admin_out_printf(o, "%s", msg);
		}
		break;
	}
	default:
		admin_out_err(o, "unknown command");
		break;
	}
	admin_out_end(o);
}

static void client_line(struct ctl *c, struct client *k, char *line, size_t len)
{
	const char *why;

	if (k->want_password) {
		k->want_password = false;
		if (len && line[len - 1] == '\r')
			len--;
		if (len > ADMIN_PASSWORD_MAX) {
			admin_out_err(&k->out, "password longer than %u bytes", ADMIN_PASSWORD_MAX);
			admin_out_end(&k->out);
		} else {
			run_password_cmd(c, k, line, len);
			admin_out_end(&k->out);
		}
		explicit_bzero(line, len);
		return;
	}
	if (admin_parse(line, len, &k->req, &why) < 0) {
		admin_out_err(&k->out, "%s", why);
		admin_out_end(&k->out);
		return;
	}
	if (admin_needs_password(k->req.cmd)) {
		k->want_password = true;
		return;
	}
	run_cmd(c, k);
}

static void client_want(struct ctl *c, struct client *k, uint32_t events)
{
	if (k->events == events)
		return;
	if (ep_set(c, EPOLL_CTL_MOD, k->fd, events, TAG_CLIENT + (uint64_t)(k - c->cl)) < 0) {
		client_close(c, k);
		return;
	}
	k->events = events;
}

/* Flush, then serve buffered lines, then read; whichever cannot go on
 * decides what epoll watches next. One request's answer is sent before
 * the next request is read, so a client that does not read its answers
 * stops being read: its buffers never grow past one line and one answer. */
static void client_service(struct ctl *c, struct client *k)
{
	int budget = CLIENT_BUDGET;

	k->again = false;
	for (;;) {
		while (k->out_off < k->out.len) {
			ssize_t w = send(k->fd, k->out.buf + k->out_off, k->out.len - k->out_off, MSG_NOSIGNAL);
			if (w > 0) {
				k->out_off += (size_t)w;
			} else if (w < 0 && errno == EINTR) {
				continue;
			} else if (w < 0 && errno == EAGAIN) {
				client_want(c, k, EPOLLOUT);
				return;
			} else {
				client_close(c, k);
				return;
			}
		}
		admin_out_reset(&k->out);
		k->out_off = 0;
		if (k->closing) {
			client_close(c, k);
			return;
		}

		char *lf = memchr(k->in, '\n', k->in_len);
		if (lf) {
			size_t n = (size_t)(lf - k->in), rest = k->in_len - n - 1;
			if (budget-- == 0) {
				k->again = true;
				client_want(c, k, EPOLLIN);
				return;
			}
			client_line(c, k, k->in, n);
			memmove(k->in, lf + 1, rest);
			explicit_bzero(k->in + rest, n + 1);
			k->in_len = rest;
			continue;
		}
		if (k->in_len == sizeof(k->in)) {
			admin_out_err(&k->out, "line too long (at most %u bytes)", ADMIN_LINE_MAX);
			admin_out_end(&k->out);
			k->closing = true;
			continue;
		}
		ssize_t r = recv(k->fd, k->in + k->in_len, sizeof(k->in) - k->in_len, 0);
		if (r > 0) {
			k->in_len += (size_t)r;
		} else if (r < 0 && errno == EINTR) {
			continue;
		} else if (r < 0 && errno == EAGAIN) {
			client_want(c, k, EPOLLIN);
			return;
		} else {
			/* End of stream (or an error): nobody is left to answer. */
			client_close(c, k);
			return;
		}
	}
}

/* ---- signals -------------------------------------------------------------------- */

static void on_signal(struct ctl *c)
{
	struct signalfd_siginfo si;

	while (read(c->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			char msg[512] = "";
			if (!c->conf->reload)
				continue;
			/* The callback logs what it did; a failure keeps the
			 * running configuration. */
			c->conf->reload(c->conf->reload_arg, msg, sizeof(msg));
		} else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			log_info("%s: shutting down", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			c->stop = true;
		}
	}
}

/* ---- the loop ------------------------------------------------------------------- */

int ctl_run(const struct ctl_conf *conf)
{
	static struct ctl ctl;   /* 16 clients' line buffers: not for the stack */
	struct ctl *c = &ctl;
	struct epoll_event ev[32];
	sigset_t set;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	c->conf = conf;
	c->ep = c->sfd = -1;
	c->lfd = conf->socket_fd;
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		c->cl[i].fd = -1;
	log_set_thread_tag("ctl");
	server_ctl_thread_init(conf->server);

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	c->ep = epoll_create1(EPOLL_CLOEXEC);
	c->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (c->ep < 0 || c->sfd < 0) {
		log_err("ctl: %s", strerror(errno));
		goto out;
	}
	if (ep_set(c, EPOLL_CTL_ADD, c->sfd, EPOLLIN, TAG_SIGNAL) < 0 ||
	    ep_set(c, EPOLL_CTL_ADD, server_ctl_fd(conf->server), EPOLLIN, TAG_SERVER) < 0 ||
	    ep_set(c, EPOLL_CTL_ADD, c->lfd, EPOLLIN, TAG_LISTEN) < 0)
		goto out;

	while (!c->stop) {
		bool again = false;
		for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
			again |= c->cl[i].fd >= 0 && c->cl[i].again;
		int n = epoll_wait(c->ep, ev, (int)(sizeof(ev) / sizeof(ev[0])), again ? 0 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("ctl: epoll_wait: %s", strerror(errno));
			goto out;
		}
		for (int i = 0; i < n; i++) {
			uint64_t tag = ev[i].data.u64;
			if (tag == TAG_SIGNAL) {
				on_signal(c);
			} else if (tag == TAG_SERVER) {
				server_ctl_process(conf->server);
			} else if (tag == TAG_LISTEN) {
				client_accept(c);
			} else {
				struct client *k = &c->cl[tag - TAG_CLIENT];
				if (k->fd >= 0)
					client_service(c, k);
			}
		}
		for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
			if (c->cl[i].fd >= 0 && c->cl[i].again)
				client_service(c, &c->cl[i]);
	}
	rc = 0;
out:
	server_shutdown(conf->server, CTL_SHUTDOWN_GRACE_MS);
	for (unsigned i = 0; i < CTL_MAX_CLIENTS; i++)
		if (c->cl[i].fd >= 0)
			client_close(c, &c->cl[i]);
	if (c->lfd >= 0) {
		close(c->lfd);
		unlink(conf->socket_path);
	}
	if (c->sfd >= 0)
		close(c->sfd);
	if (c->ep >= 0)
		close(c->ep);
	server_ctl_thread_exit(conf->server);
	log_set_thread_tag("main");
	return rc;
}
