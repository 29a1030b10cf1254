/* Accounts for a run: user_prefix0 .. user_prefix<users-1> at domain, all
 * with the run's password.
 *
 *   stanzactl:   CMD account add JID          (password on stdin)
 *   prosodyctl:  CMD register USER DOMAIN PASSWORD
 *   ejabberdctl: CMD register USER DOMAIN PASSWORD
 *   ibr:         in-band registration (XEP-0077) over the bench's own
 *                client, where the server allows it
 *
 * CMD is provision_cmd split at spaces (the tool's path and its fixed
 * arguments, e.g. "build/cmd/stanzactl -d /srv/data"). At most PARALLEL
 * tools run at once; an account that exists already counts as done.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>

#include "bench/harness/engine.h"

#define PARALLEL 8
#define MAX_ARGS 32

struct job {
	pid_t pid;
	unsigned user;
};

static int split(char *s, char **argv, int max)
{
	int n = 0;
	for (char *tok = strtok(s, " \t"); tok && n < max; tok = strtok(NULL, " \t"))
		argv[n++] = tok;
	return n;
}

static pid_t spawn(const struct bench_opts *o, unsigned user)
{
	char cmd[sizeof(o->provision_cmd)], name[128], jid[400];
	char *argv[MAX_ARGS + 6];
	memcpy(cmd, o->provision_cmd, sizeof(cmd));
	int n = split(cmd, argv, MAX_ARGS);
	if (n == 0)
		return -1;
	snprintf(name, sizeof(name), "%s%u", o->user_prefix, user);
	snprintf(jid, sizeof(jid), "%s@%s", name, o->domain);
	bool stdin_pw = o->provision == PROV_STANZACTL;
	if (stdin_pw) {
		argv[n++] = "account";
		argv[n++] = "add";
		argv[n++] = jid;
	} else {
		argv[n++] = "register";
		argv[n++] = name;
		argv[n++] = (char *)o->domain;
		argv[n++] = (char *)o->password;
	}
	argv[n] = NULL;

	int pfd[2] = { -1, -1 };
	if (stdin_pw && pipe2(pfd, O_CLOEXEC))
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		int dn = open("/dev/null", O_RDWR);
		if (stdin_pw)
			dup2(pfd[0], 0);
		else if (dn >= 0)
			dup2(dn, 0);
		if (dn >= 0) {
			dup2(dn, 1);
			dup2(dn, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (stdin_pw) {
		close(pfd[0]);
		if (pid > 0) {
			size_t pl = strlen(o->password);
			char line[sizeof(o->password) + 1];
			memcpy(line, o->password, pl);
			line[pl] = '\n';
			if (write(pfd[1], line, pl + 1) < 0)
				perror("stanza-bench: provision: write");
		}
		close(pfd[1]);
	}
	return pid;
}

static int provision_cmds(const struct bench_opts *o, unsigned users)
{
	struct job jobs[PARALLEL];
	unsigned running = 0, next = 0, ok = 0, existed = 0, failed = 0;
	int first_status = 0;
	unsigned first_user = 0;
	time_t t0 = time(NULL), last = t0;

	while (next < users || running) {
		while (running < PARALLEL && next < users) {
			pid_t pid = spawn(o, next);
			if (pid < 0) {
				fprintf(stderr, "stanza-bench: provision: cannot run '%s': %s\n", o->provision_cmd, strerror(errno));
				failed += users - next;
				next = users;
				break;
			}
			jobs[running].pid = pid;
			jobs[running].user = next++;
			running++;
		}
		if (!running)
			break;
		int status;
		pid_t pid = waitpid(-1, &status, 0);
		if (pid < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (unsigned i = 0; i < running; i++) {
			if (jobs[i].pid != pid)
				continue;
			int rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			if (rc == 0) {
				ok++;
			} else if (rc == 1 && o->provision == PROV_STANZACTL) {
				existed++;   /* refused: the account exists (or a bad JID: the login will tell) */
			} else {
				if (!failed) {
					first_status = rc;
					first_user = jobs[i].user;
				}
				failed++;
			}
			jobs[i] = jobs[--running];
			break;
		}
		time_t now = time(NULL);
		if (!o->quiet && now != last) {
			fprintf(stderr, "provision: %u/%u\n", ok + existed + failed, users);
			last = now;
		}
	}
	fprintf(stderr, "provision: %u created, %u refused (existing), %u failed in %lds\n", ok, existed, failed,
		(long)(time(NULL) - t0));
	if (failed)
		fprintf(stderr, "provision: first failure: %s%u, exit status %d\n", o->user_prefix, first_user, first_status);
	return failed ? -1 : 0;
}

/* ---- in-band registration -------------------------------------------------
 * A blocking client per account, run from PARALLEL threads: registration is
 * setup, not measurement. The stream is secured the way the run's `tls`
 * says (STARTTLS, or TLS from the first byte), because a server that
 * offers registration usually requires TLS for it (stanzad does, unless
 * auth.allow_plaintext). Certificates are not verified: this is a load
 * generator talking to the server it was pointed at. */

struct ibr_ctx {
	const struct bench_opts *o;
	_Atomic unsigned next, ok, failed;
	unsigned users;
	SSL_CTX *ssl;
};

struct ibr_io {
	int fd;
	SSL *ssl;
};

static int ibr_send(struct ibr_io *io, const char *p, int n)
{
	if (io->ssl)
		return SSL_write(io->ssl, p, n) == n ? 0 : -1;
	return send(io->fd, p, (size_t)n, MSG_NOSIGNAL) == n ? 0 : -1;
}

static int ibr_expect(struct ibr_io *io, char *buf, size_t cap, const char *needle, const char *bad)
{
	size_t len = 0;
	for (int tries = 0; tries < 200; tries++) {
		ssize_t r = io->ssl ? SSL_read(io->ssl, buf + len, (int)(cap - 1 - len))
				    : recv(io->fd, buf + len, cap - 1 - len, 0);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		buf[len] = 0;
		if (strstr(buf, needle))
			return 0;
		if (bad && strstr(buf, bad))
			return -1;
		if (len + 1 >= cap)
			len = 0;
	}
	return -1;
}

static int ibr_tls(struct ibr_ctx *x, struct ibr_io *io)
{
	io->ssl = SSL_new(x->ssl);
	if (!io->ssl || !SSL_set_fd(io->ssl, io->fd))
		return -1;
	SSL_set_tlsext_host_name(io->ssl, x->o->domain);
	return SSL_connect(io->ssl) == 1 ? 0 : -1;
}

static int ibr_one(struct ibr_ctx *x, unsigned user)
{
	const struct bench_opts *o = x->o;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(o->port) };
	char buf[16384], msg[1024], hdr[512];
	struct ibr_io io = { -1, NULL };
	int ok = -1;
	inet_pton(AF_INET, o->host, &a.sin_addr);
	io.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (io.fd < 0)
		return -1;
	struct timeval tv = { 10, 0 };
	setsockopt(io.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(io.fd, (struct sockaddr *)&a, sizeof(a)))
		goto out;
	if (o->tls == TLS_DIRECT && ibr_tls(x, &io))
		goto out;
	int hl = snprintf(hdr, sizeof(hdr),
			  "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
			  "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>", o->domain);
	if (ibr_send(&io, hdr, hl) || ibr_expect(&io, buf, sizeof(buf), "</stream:features>", NULL))
		goto out;
	if (o->tls == TLS_STARTTLS) {
		static const char st[] = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
		if (ibr_send(&io, st, (int)sizeof(st) - 1) || ibr_expect(&io, buf, sizeof(buf), "<proceed", "<failure") ||
		    ibr_tls(x, &io) || ibr_send(&io, hdr, hl) ||
		    ibr_expect(&io, buf, sizeof(buf), "</stream:features>", NULL))
			goto out;
	}
	int n = snprintf(msg, sizeof(msg),
			 "<iq type='set' id='reg1'><query xmlns='jabber:iq:register'><username>%s%u</username>"
			 "<password>%s</password></query></iq>", o->user_prefix, user, o->password);
	if (ibr_send(&io, msg, n))
		goto out;
	if (ibr_expect(&io, buf, sizeof(buf), "id='reg1'", NULL) && !strstr(buf, "id=\"reg1\""))
		goto out;
	ok = strstr(buf, "type='result'") || strstr(buf, "type=\"result\"") || strstr(buf, "<conflict") ? 0 : -1;
	ibr_send(&io, "</stream:stream>", 16);
out:
	if (io.ssl)
		SSL_free(io.ssl);
	close(io.fd);
	return ok;
}

static void *ibr_thread(void *arg)
{
	struct ibr_ctx *x = arg;
	for (;;) {
		unsigned u = atomic_fetch_add(&x->next, 1);
		if (u >= x->users)
			break;
		if (ibr_one(x, u))
			atomic_fetch_add(&x->failed, 1);
		else
			atomic_fetch_add(&x->ok, 1);
	}
	return NULL;
}

static int provision_ibr(const struct bench_opts *o, unsigned users)
{
	struct ibr_ctx x = { .o = o, .users = users };
	pthread_t th[PARALLEL];
	unsigned n = 0;
	if (o->tls != TLS_NONE) {
		x.ssl = SSL_CTX_new(TLS_client_method());
		if (!x.ssl) {
			fprintf(stderr, "provision: no TLS context\n");
			return -1;
		}
		SSL_CTX_set_min_proto_version(x.ssl, TLS1_2_VERSION);
		SSL_CTX_set_verify(x.ssl, SSL_VERIFY_NONE, NULL);
	}
	for (; n < PARALLEL; n++)
		if (pthread_create(&th[n], NULL, ibr_thread, &x))
			break;
	for (unsigned i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	fprintf(stderr, "provision: %u registered (or existing), %u failed\n", atomic_load(&x.ok), atomic_load(&x.failed));
	SSL_CTX_free(x.ssl);
	return atomic_load(&x.failed) ? -1 : 0;
}

int provision_accounts(const struct bench_opts *o, unsigned users)
{
	switch (o->provision) {
	case PROV_NONE:
		return 0;
	case PROV_IBR:
		return provision_ibr(o, users);
	default:
		if (!o->provision_cmd[0]) {
			fprintf(stderr, "stanza-bench: provision needs provision_cmd (the admin tool and its fixed arguments)\n");
			return -1;
		}
		return provision_cmds(o, users);
	}
}
