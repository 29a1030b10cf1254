/* stanzactl: administer stanzad over its admin socket; account commands
 * also work with the server stopped, directly on the store.
 *
 * Exit status:
 *   0  done
 *   1  refused: the account exists, no such account, bad JID or password,
 *      the two passwords typed differ, or the server answered "err"
 *   2  usage error
 *   3  the server is not running (sessions, kick, stats, reload need it)
 *   4  anything else: I/O, store, permission, protocol
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include "cmd/config.h"
#include "control/account.h"
#include "control/admin.h"
#include "parser/jid.h"
#include "router/server.h"
#include "store/store.h"
#include "util/log.h"

enum { RC_OK = 0, RC_REFUSED = 1, RC_USAGE = 2, RC_DOWN = 3, RC_FAIL = 4 };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: stanzactl [-c FILE] [-d DATA_DIR] [-s SOCKET] COMMAND\n"
		"  account add JID          create an account (password: prompt or stdin)\n"
		"  account passwd JID       set a new password (prompt or stdin)\n"
		"  account del JID          delete an account\n"
		"  account list [DOMAIN]    list accounts\n"
		"  sessions                 list bound sessions (server running)\n"
		"  kick JID [CONDITION]     close a session, or every session of a bare JID\n"
		"  stats [-i SECONDS] [-n COUNT]\n"
		"                           per-worker rates over SECONDS (default 1), COUNT times\n"
		"                           (default 1, 0: until interrupted)\n"
		"  reload                   reload certificates and live options (as SIGHUP)\n"
		"options:\n"
		"  -c FILE      stanzad's configuration: data directory, socket, domains\n"
		"  -d DATA_DIR  the data directory (default " CONFIG_DEFAULT_DATA_DIR ")\n"
		"  -s SOCKET    the admin socket (default DATA_DIR/" CONFIG_SOCKET_NAME ")\n"
		"Account commands use the store directly when the server is not running.\n"
		"Exit status: 0 done, 1 refused, 2 usage, 3 server not running, 4 failure.\n");
}

/* ---- passwords ---------------------------------------------------------------- */

static struct termios saved_tty;
static volatile sig_atomic_t tty_dirty;

/* Ctrl-C at the prompt must not leave the terminal without echo. */
static void tty_restore_and_die(int sig)
{
	if (tty_dirty)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* One line from fd into buf[0..cap), without its LF (and CR). Byte by
 * byte: no stdio buffer keeps a copy of the password. -1 on EOF before
 * any byte, or a line longer than cap - 1. */
static int read_line_fd(int fd, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;
	bool any = false;

	for (;;) {
		char ch;
		ssize_t r = read(fd, &ch, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		any = true;
		if (ch == '\n')
			break;
		if (n + 1 >= cap) {
			explicit_bzero(buf, cap);
			return -1;
		}
		buf[n++] = ch;
	}
	if (!any)
		return -1;
	if (n && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	*len = n;
	return 0;
}

static int prompt(const char *what, char *buf, size_t cap, size_t *len)
{
	struct termios t;
	int r;

	fprintf(stderr, "%s", what);
	fflush(stderr);
	if (tcgetattr(STDIN_FILENO, &saved_tty) < 0)
		return -1;
	t = saved_tty;
	t.c_lflag &= ~(tcflag_t)ECHO;
	t.c_lflag |= ECHONL;
	signal(SIGINT, tty_restore_and_die);
	signal(SIGTERM, tty_restore_and_die);
	signal(SIGQUIT, tty_restore_and_die);
	tty_dirty = 1;
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) < 0) {
		tty_dirty = 0;
		return -1;
	}
	r = read_line_fd(STDIN_FILENO, buf, cap, len);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
	tty_dirty = 0;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	return r;
}

/* From a no-echo prompt (typed twice) on a terminal, else the first line
 * of stdin. Never from argv: the command line is visible in ps. */
static int read_password(char *buf, size_t cap, size_t *len)
{
	char again[ADMIN_PASSWORD_MAX + 2];
	size_t alen;
	int r;

	if (!isatty(STDIN_FILENO)) {
		if (read_line_fd(STDIN_FILENO, buf, cap, len) < 0) {
			fprintf(stderr, "stanzactl: no password on stdin (one line, at most %zu bytes)\n", cap - 1);
			return RC_USAGE;
		}
		return RC_OK;
	}
	if (prompt("Password: ", buf, cap, len) < 0) {
		fprintf(stderr, "stanzactl: no password read\n");
		return RC_USAGE;
	}
	if (prompt("Password again: ", again, sizeof(again), &alen) < 0) {
		explicit_bzero(buf, cap);
		fprintf(stderr, "stanzactl: no password read\n");
		return RC_USAGE;
	}
	r = alen == *len && !memcmp(again, buf, alen) ? RC_OK : RC_REFUSED;
	explicit_bzero(again, sizeof(again));
	if (r != RC_OK) {
		explicit_bzero(buf, cap);
		fprintf(stderr, "stanzactl: the passwords differ\n");
	}
	return r;
}

/* ---- the admin socket ---------------------------------------------------------- */

struct conn {
	int fd;
	size_t len;
	char buf[ADMIN_LINE_MAX * 4];
};

/* 0: connected. RC_DOWN: nobody listens (no socket, or a stale one).
 * RC_FAIL: something else (permission: logged). */
static int ctl_connect(struct conn *c, const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	c->len = 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "stanzactl: socket path too long: %s\n", path);
		return RC_FAIL;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		fprintf(stderr, "stanzactl: socket: %s\n", strerror(errno));
		return RC_FAIL;
	}
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return RC_OK;
	int e = errno;
	close(c->fd);
	c->fd = -1;
	if (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR)
		return RC_DOWN;
	fprintf(stderr, "stanzactl: %s: %s%s\n", path, strerror(e),
		e == EACCES ? " (run as the server's user or root)" : "");
	return RC_FAIL;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The next response line (without LF) in *line and *len, valid until the next
 * call. -1 on EOF or error. */
static int recv_line(struct conn *c, const char **line, size_t *len)
{
	static char cur[sizeof(((struct conn *)0)->buf)];

	for (;;) {
		char *lf = memchr(c->buf, '\n', c->len);
		if (lf) {
			size_t n = (size_t)(lf - c->buf);
			memcpy(cur, c->buf, n);
			memmove(c->buf, lf + 1, c->len - n - 1);
			c->len -= n + 1;
			*line = cur;
			*len = n;
			return 0;
		}
		if (c->len == sizeof(c->buf))
			return -1;
		ssize_t r = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

/* Send one request (and its password line); call fn for each data line of
 * the answer. RC_OK, RC_REFUSED (the server said err; printed) or RC_FAIL. */
static int request(struct conn *c, const char *req, const char *pass, size_t plen,
		   void (*fn)(void *arg, const char *line, size_t len), void *arg)
{
	const char *line, *data;
	size_t len, dlen;
	bool first = true, ok = false;

	if (send_all(c->fd, req, strlen(req)) < 0 || send_all(c->fd, "\n", 1) < 0 ||
	    (pass && (send_all(c->fd, pass, plen) < 0 || send_all(c->fd, "\n", 1) < 0))) {
		fprintf(stderr, "stanzactl: the server closed the connection\n");
		return RC_FAIL;
	}
	for (;;) {
		if (recv_line(c, &line, &len) < 0) {
			fprintf(stderr, "stanzactl: the server closed the connection mid-answer\n");
			return RC_FAIL;
		}
		if (admin_unstuff(line, len, &data, &dlen))
			return ok ? RC_OK : RC_REFUSED;
		if (first) {
			first = false;
			if (dlen == 2 && !memcmp(data, "ok", 2))
				ok = true;
			else if (dlen >= 4 && !memcmp(data, "err ", 4))
				fprintf(stderr, "stanzactl: %.*s\n", (int)(dlen - 4), data + 4);
			else {
				fprintf(stderr, "stanzactl: unexpected answer: %.*s\n", (int)dlen, data);
				return RC_FAIL;
			}
		} else if (ok && fn) {
			fn(arg, data, dlen);
		}
	}
}

static void print_line(void *arg, const char *line, size_t len)
{
	(void)arg;
	printf("%.*s\n", (int)len, line);
}

/* ---- stats ---------------------------------------------------------------------- */

#define MAX_WORKERS 256

struct sample {
	uint64_t time_ms;
	unsigned n;
	struct server_worker_stats w[MAX_WORKERS];
};

static void stats_line(void *arg, const char *line, size_t len)
{
	struct sample *s = arg;
	struct server_worker_stats st;
	unsigned i;

	if (len > 8 && !memcmp(line, "time_ms ", 8)) {
		s->time_ms = strtoull(line + 8, NULL, 10);
	} else if (admin_parse_stats(line, len, &i, &st) == 0 && i < MAX_WORKERS) {
		s->w[i] = st;
		if (i + 1 > s->n)
			s->n = i + 1;
	}
}

static double rate(uint64_t a, uint64_t b, double secs)
{
	return b >= a && secs > 0 ? (double)(b - a) / secs : 0.0;
}

static int cmd_stats(struct conn *c, int argc, char **argv)
{
	static struct sample s[2];
	double interval = 1.0;
	long count = 1;
	int o, r;

	optind = 1;
	while ((o = getopt(argc, argv, "+i:n:")) != -1) {
		char *end;
		switch (o) {
		case 'i':
			interval = strtod(optarg, &end);
			if (*end || interval < 0.1 || interval > 3600) {
				fprintf(stderr, "stanzactl: -i: seconds between 0.1 and 3600\n");
				return RC_USAGE;
			}
			break;
		case 'n':
			count = strtol(optarg, &end, 10);
			if (*end || count < 0) {
				fprintf(stderr, "stanzactl: -n: a count, 0 for no end\n");
				return RC_USAGE;
			}
			break;
		default:
			usage(stderr);
			return RC_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return RC_USAGE;
	}
	memset(&s[0], 0, sizeof(s[0]));
	if ((r = request(c, "stats", NULL, 0, stats_line, &s[0])) != RC_OK)
		return r;
	for (long k = 0; count == 0 || k < count; k++) {
		struct timespec ts = { (time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9) };
		struct server_worker_stats tot = { 0 }, ptot = { 0 };
		double secs;

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		memset(&s[1], 0, sizeof(s[1]));
		if ((r = request(c, "stats", NULL, 0, stats_line, &s[1])) != RC_OK)
			return r;
		secs = (double)(s[1].time_ms - s[0].time_ms) / 1000.0;
		printf("%-7s %11s %9s %10s %13s %14s\n", "worker", "connections", "sessions", "accepts/s",
		       "stanzas_in/s", "stanzas_out/s");
		for (unsigned i = 0; i < s[1].n; i++) {
			const struct server_worker_stats *a = &s[0].w[i], *b = &s[1].w[i];
			printf("%-7u %11llu %9llu %10.1f %13.1f %14.1f\n", i, (unsigned long long)b->connections,
			       (unsigned long long)b->sessions, rate(a->accepted, b->accepted, secs),
			       rate(a->stanzas_in, b->stanzas_in, secs), rate(a->stanzas_out, b->stanzas_out, secs));
			tot.connections += b->connections;
			tot.sessions += b->sessions;
			tot.accepted += b->accepted;
			tot.stanzas_in += b->stanzas_in;
			tot.stanzas_out += b->stanzas_out;
			ptot.accepted += a->accepted;
			ptot.stanzas_in += a->stanzas_in;
			ptot.stanzas_out += a->stanzas_out;
		}
		printf("%-7s %11llu %9llu %10.1f %13.1f %14.1f\n", "total", (unsigned long long)tot.connections,
		       (unsigned long long)tot.sessions, rate(ptot.accepted, tot.accepted, secs),
		       rate(ptot.stanzas_in, tot.stanzas_in, secs), rate(ptot.stanzas_out, tot.stanzas_out, secs));
		fflush(stdout);
		s[0] = s[1];
	}
	return RC_OK;
}

/* ---- accounts without the server ------------------------------------------------- */

static int list_cb(void *arg, const char *jid, size_t jid_len, int64_t created)
{
	(void)arg;
	(void)created;
	printf("%.*s\n", (int)jid_len, jid);
	return 0;
}

static int account_offline(const struct server_config *cfg, enum admin_cmd cmd, const char *arg,
			   const char *pass, size_t plen)
{
	struct store_options so;
	struct store *st;
	struct stat sb;
	char dir[CONFIG_PATH_MAX];
	int rc;

	if (config_store_dir(cfg, dir, sizeof(dir)) < 0) {
		fprintf(stderr, "stanzactl: data directory path too long\n");
		return RC_FAIL;
	}
	if (stat(dir, &sb) < 0 && errno == ENOENT) {
		/* Nothing to read: say so without creating a store as a side
		 * effect of a query. */
		if (cmd == ADMIN_ACCOUNT_LIST)
			return RC_OK;
		if (cmd != ADMIN_ACCOUNT_ADD) {
			fprintf(stderr, "stanzactl: no such account (no store in %s)\n", cfg->data_dir);
			return RC_REFUSED;
		}
		/* Accounts may be made before the first start; the data
		 * directory gets the mode stanzad gives it. */
		if (mkdir(cfg->data_dir, 0700) < 0 && errno != EEXIST) {
			fprintf(stderr, "stanzactl: %s: %s\n", cfg->data_dir, strerror(errno));
			return RC_FAIL;
		}
	}
	store_options_default(&so);
	so.map_size = (size_t)cfg->store_map_size;
	rc = store_open(&st, dir, &so);
	if (rc != STORE_OK) {
		fprintf(stderr, "stanzactl: cannot open the store in %s: %s\n", dir, store_rc_str(rc));
		return RC_FAIL;
	}
	switch (cmd) {
	case ADMIN_ACCOUNT_ADD: rc = account_add(st, arg, pass, plen, cfg->scram_iterations); break;
	case ADMIN_ACCOUNT_PASSWD: rc = account_passwd(st, arg, pass, plen, cfg->scram_iterations); break;
	case ADMIN_ACCOUNT_DEL: rc = account_del(st, arg); break;
	default: rc = account_list(st, arg, list_cb, NULL); break;
	}
	store_close(st);
	switch (rc) {
	case ACCOUNT_OK:
		return RC_OK;
	case ACCOUNT_EXISTS:
	case ACCOUNT_NOTFOUND:
	case ACCOUNT_BAD_JID:
	case ACCOUNT_BAD_PASSWORD:
		fprintf(stderr, "stanzactl: %s\n", account_rc_str(rc));
		return RC_REFUSED;
	default:
		fprintf(stderr, "stanzactl: %s\n", account_rc_str(rc));
		return RC_FAIL;
	}
}

/* With a configuration file, the offline path refuses what the server
 * would: accounts for domains it does not serve. */
static bool domain_served(const struct server_config *cfg, const char *jid)
{
	struct jid j;
	struct jid_slice d;

	if (jid_parse(&j, jid, strlen(jid), 0) != JID_OK)
		return true;   /* account_add says what is wrong with it */
	d = jid_domain(&j);
	for (unsigned i = 0; i < cfg->nvhost; i++)
		if (strlen(cfg->vhost[i].domain) == d.len && !memcmp(cfg->vhost[i].domain, d.ptr, d.len))
			return true;
	return false;
}

/* ---- main --------------------------------------------------------------------- */

static struct server_config cfg;

int main(int argc, char **argv)
{
	const char *file = NULL, *data_dir = NULL, *sock_opt = NULL;
	char sock[CONFIG_PATH_MAX], req[ADMIN_LINE_MAX + 1], err[1024];
	char pass[ADMIN_PASSWORD_MAX + 2];
	size_t plen = 0;
	struct admin_req ar;
	const char *why;
	struct conn c;
	int o, rc;

	log_set_thread_tag("stanzactl");
	log_set_level(LOG_WARN);
	while ((o = getopt(argc, argv, "+c:d:s:h")) != -1) {
		switch (o) {
		case 'c': file = optarg; break;
		case 'd': data_dir = optarg; break;
		case 's': sock_opt = optarg; break;
		case 'h': usage(stdout); return RC_OK;
		default: usage(stderr); return RC_USAGE;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return RC_USAGE;
	}
	if (config_load(file, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "stanzactl: %s\n", err);
		return RC_USAGE;
	}
	if (data_dir) {
		if (strlen(data_dir) >= sizeof(cfg.data_dir)) {
			fprintf(stderr, "stanzactl: -d: path too long\n");
			return RC_USAGE;
		}
		snprintf(cfg.data_dir, sizeof(cfg.data_dir), "%s", data_dir);
	}
	if (sock_opt)
		snprintf(sock, sizeof(sock), "%s", sock_opt);
	else if (config_admin_socket(&cfg, sock, sizeof(sock)) < 0) {
		fprintf(stderr, "stanzactl: socket path too long\n");
		return RC_USAGE;
	}

	/* The command as the protocol spells it: the same parser as the
	 * server's checks it, so usage errors are caught before connecting
	 * or asking for a password. stats takes local options. */
	size_t n = 0;
	int last = argc;
	if (!strcmp(argv[optind], "stats"))
		last = optind + 1;
	for (int i = optind; i < last; i++) {
		int w = snprintf(req + n, sizeof(req) - n, "%s%s", n ? " " : "", argv[i]);
		if (w < 0 || (size_t)w >= sizeof(req) - n) {
			fprintf(stderr, "stanzactl: command too long\n");
			return RC_USAGE;
		}
		n += (size_t)w;
	}
	if (admin_parse(req, n, &ar, &why) < 0) {
		fprintf(stderr, "stanzactl: %s\n", why);
		usage(stderr);
		return RC_USAGE;
	}
	bool account = ar.cmd == ADMIN_ACCOUNT_ADD || ar.cmd == ADMIN_ACCOUNT_PASSWD ||
		       ar.cmd == ADMIN_ACCOUNT_DEL || ar.cmd == ADMIN_ACCOUNT_LIST;

	if (admin_needs_password(ar.cmd)) {
		rc = read_password(pass, sizeof(pass), &plen);
		if (rc != RC_OK)
			return rc;
	}

	rc = ctl_connect(&c, sock);
	if (rc == RC_OK) {
		if (ar.cmd == ADMIN_STATS)
			rc = cmd_stats(&c, argc - optind, argv + optind);
		else
			rc = request(&c, req, admin_needs_password(ar.cmd) ? pass : NULL, plen, print_line, NULL);
		close(c.fd);
	} else if (rc == RC_DOWN && account) {
		if (file && ar.cmd == ADMIN_ACCOUNT_ADD && !domain_served(&cfg, ar.arg)) {
			fprintf(stderr, "stanzactl: %s is not a domain of this server\n", ar.arg);
			rc = RC_REFUSED;
		} else {
			rc = account_offline(&cfg, ar.cmd, ar.arg[0] ? ar.arg : NULL, pass, plen);
		}
	} else if (rc == RC_DOWN) {
		fprintf(stderr, "stanzactl: stanzad is not running (nothing listens on %s)\n", sock);
	}
	explicit_bzero(pass, sizeof(pass));
	return rc;
}
