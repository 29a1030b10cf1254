/* Unit tests for net/net.h on the kernel backend: real sockets on 127.0.0.1
 * and ::1, ephemeral ports. Every wait has a deadline. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "net/net.h"

#define DEADLINE_MS 5000
#define MAXEV 64

/* ---- helpers ---------------------------------------------------------- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static void set_timeouts(int fd)
{
	struct timeval tv = { .tv_sec = 5, .tv_usec = 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A blocking client on loopback; rcvbuf > 0 shrinks its receive buffer
 * before connecting (so the window stays small). */
static int client_connect(int family, int port, int rcvbuf)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int r;

	assert_true(fd >= 0);
	set_timeouts(fd);
	if (rcvbuf > 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (family == AF_INET) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
	} else {
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };
		sin6.sin6_addr = in6addr_loopback;
		r = connect(fd, (struct sockaddr *)&sin6, sizeof(sin6));
	}
	assert_int_equal(r, 0);
	return fd;
}

static int local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Poll until an event of `type` (for udata, if not NULL) comes; copy it to
 * out. Other events are dropped. false at the deadline. */
static bool wait_event(struct net_loop *l, int type, void *udata, struct net_event *out)
{
	struct net_event ev[MAXEV];
	uint64_t end = net_now_ms() + DEADLINE_MS;

	while (net_now_ms() < end) {
		int n = net_poll(l, ev, MAXEV, 50);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++)
			if (ev[i].type == type && (udata == NULL || ev[i].udata == udata)) {
				*out = ev[i];
				return true;
			}
	}
	return false;
}

/* A listening loop, one connected client, the server side accepted and
 * attached with udata. */
struct pair {
	struct net_loop *loop;
	int port;
	int client;
	struct net_conn conn;
	struct net_addr peer;
};

static char udata_tag;

static void pair_open(struct pair *p, int family, int rcvbuf)
{
	struct net_event e;
	int li;

	p->loop = net_loop_new(NULL, 0, 0);
	assert_non_null(p->loop);
	li = net_listen(p->loop, family == AF_INET ? "127.0.0.1:0" : "[::1]:0", 128);
	assert_true(li >= 0);
	p->port = net_listener_port(p->loop, li);
	assert_true(p->port > 0);
	p->client = client_connect(family, p->port, rcvbuf);
	assert_true(wait_event(p->loop, NET_EV_ACCEPTED, NULL, &e));
	assert_int_equal(e.listener, li);
	p->conn = e.conn;
	p->peer = e.peer;
	assert_int_equal(net_attach(p->loop, p->conn, &udata_tag), 0);
}

static void pair_close(struct pair *p)
{
	if (p->client >= 0)
		close(p->client);
	net_close(p->loop, p->conn);
	net_loop_free(p->loop);
}

/* ---- tests ------------------------------------------------------------ */

static void test_addr_parse(void **state)
{
	struct net_addr a;
	char buf[NET_ADDR_STRLEN];

	(void)state;
	assert_int_equal(net_addr_parse("127.0.0.1:5222", &a), 0);
	assert_int_equal(a.family, NET_AF_INET);
	assert_int_equal(a.port, 5222);
	assert_int_equal(a.addr[0], 127);
	assert_int_equal(a.addr[3], 1);
	assert_string_equal(net_addr_format(&a, buf, sizeof(buf)), "127.0.0.1:5222");
	assert_int_equal(net_addr_parse("[::1]:5269", &a), 0);
	assert_int_equal(a.family, NET_AF_INET6);
	assert_int_equal(a.addr[15], 1);
	assert_string_equal(net_addr_format(&a, buf, sizeof(buf)), "[::1]:5269");
	assert_int_equal(net_addr_parse("*:0", &a), 0);
	assert_int_equal(a.family, NET_AF_ANY);
	assert_int_equal(a.port, 0);
	assert_int_equal(net_addr_parse("127.0.0.1", &a), -EINVAL);
	assert_int_equal(net_addr_parse("127.0.0.1:65536", &a), -EINVAL);
	assert_int_equal(net_addr_parse("127.0.0.1:", &a), -EINVAL);
	assert_int_equal(net_addr_parse("127.0.0.1:-1", &a), -EINVAL);
	assert_int_equal(net_addr_parse("::1:5222", &a), -EINVAL);
	assert_int_equal(net_addr_parse("[::1]5222", &a), -EINVAL);
	assert_int_equal(net_addr_parse("localhost:5222", &a), -EINVAL);
	assert_int_equal(net_addr_parse("[]:1", &a), -EINVAL);
	assert_non_null(net_backend("kernel"));
	assert_null(net_backend("nonesuch"));
}

static void test_accept_echo(void **state)
{
	struct pair p;
	struct net_event e;
	char buf[64];
	struct iovec iov[2] = { { "he", 2 }, { "llo back", 8 } };
	ssize_t r;

	(void)state;
	pair_open(&p, AF_INET, 0);
	assert_int_equal(p.peer.family, NET_AF_INET);
	assert_int_equal(p.peer.addr[0], 127);
	assert_int_equal(p.peer.addr[3], 1);
	assert_int_equal(p.peer.port, local_port(p.client));

	/* nothing yet */
	assert_int_equal(net_recv(p.loop, p.conn, buf, sizeof(buf)), -EAGAIN);

	assert_int_equal(write(p.client, "hello", 5), 5);
	assert_true(wait_event(p.loop, NET_EV_READABLE, &udata_tag, &e));
	assert_true(net_conn_eq(e.conn, p.conn));
	r = net_recv(p.loop, p.conn, buf, sizeof(buf));
	assert_int_equal(r, 5);
	assert_memory_equal(buf, "hello", 5);
	assert_int_equal(net_recv(p.loop, p.conn, buf, sizeof(buf)), -EAGAIN);

	assert_int_equal(net_sendv(p.loop, p.conn, iov, 2), 10);
	r = recv(p.client, buf, sizeof(buf), 0);
	assert_true(r > 0);
	while (r < 10) {
		ssize_t k = recv(p.client, buf + r, sizeof(buf) - (size_t)r, 0);
		assert_true(k > 0);
		r += k;
	}
	assert_memory_equal(buf, "hello back", 10);

	/* a drained connection is not reported again */
	struct net_event ev[MAXEV];
	assert_int_equal(net_poll(p.loop, ev, MAXEV, 20), 0);
	pair_close(&p);
}

static void test_ipv6(void **state)
{
	struct net_loop *l = net_loop_new(NULL, 0, 0);
	struct pair p;
	int li;

	(void)state;
	assert_non_null(l);
	li = net_listen(l, "[::1]:0", 16);
	net_loop_free(l);
	if (li == -EADDRNOTAVAIL || li == -EAFNOSUPPORT) {
		skip();
	}
	assert_true(li >= 0);
	pair_open(&p, AF_INET6, 0);
	assert_int_equal(p.peer.family, NET_AF_INET6);
	assert_int_equal(p.peer.addr[15], 1);
	assert_int_equal(p.peer.port, local_port(p.client));
	pair_close(&p);
}

/* "*": one socket for both families; IPv4 peers come as NET_AF_INET. */
static void test_wildcard_dual_stack(void **state)
{
	struct net_loop *l = net_loop_new(NULL, 0, 0);
	struct net_event e;
	int li, port, c;

	(void)state;
	assert_non_null(l);
	li = net_listen(l, "*:0", 16);
	assert_true(li >= 0);
	port = net_listener_port(l, li);
	c = client_connect(AF_INET, port, 0);
	assert_true(wait_event(l, NET_EV_ACCEPTED, NULL, &e));
	assert_int_equal(e.peer.family, NET_AF_INET);
	assert_int_equal(e.peer.addr[0], 127);
	assert_int_equal(e.peer.addr[4], 0);
	net_close(l, e.conn);
	close(c);
	net_loop_free(l);
}

static void test_short_write_then_writable(void **state)
{
	enum { CHUNK = 65536, LIMIT = 64 << 20 };
	struct pair p;
	struct net_event e, ev[MAXEV];
	char *chunk = malloc(CHUNK), *rbuf = malloc(CHUNK);
	size_t sent = 0, got = 0;
	bool blocked = false;
	uint64_t end;
	int n;

	(void)state;
	assert_non_null(chunk);
	assert_non_null(rbuf);
	for (int i = 0; i < CHUNK; i++)
		chunk[i] = (char)(i * 7);
	pair_open(&p, AF_INET, 4096);

	/* the client does not read: fill the pipe, bounded */
	while (sent < LIMIT) {
		size_t off = sent % CHUNK;
		struct iovec iov = { chunk + off, CHUNK - off };
		ssize_t r = net_sendv(p.loop, p.conn, &iov, 1);
		if (r == -EAGAIN) {
			blocked = true;
			break;
		}
		assert_true(r > 0);
		sent += (size_t)r;
		if ((size_t)r < iov.iov_len) {
			blocked = true;
			break;
		}
	}
	assert_true(blocked);
	/* full, and nobody read: no WRITABLE */
	n = net_poll(p.loop, ev, MAXEV, 50);
	for (int i = 0; i < n; i++)
		assert_int_not_equal(ev[i].type, NET_EV_WRITABLE);

	/* the client drains everything; WRITABLE comes once the socket has room */
	end = net_now_ms() + DEADLINE_MS;
	bool writable = false;
	while (got < sent && net_now_ms() < end) {
		ssize_t r = recv(p.client, rbuf, CHUNK, MSG_DONTWAIT);
		if (r > 0) {
			for (ssize_t i = 0; i < r; i++)
				assert_int_equal(rbuf[i], chunk[(got + (size_t)i) % CHUNK]);
			got += (size_t)r;
		}
		n = net_poll(p.loop, ev, MAXEV, 0);
		for (int i = 0; i < n; i++)
			if (ev[i].type == NET_EV_WRITABLE) {
				assert_ptr_equal(ev[i].udata, &udata_tag);
				assert_false(writable);   /* once */
				writable = true;
			}
	}
	assert_int_equal(got, sent);
	if (!writable)
		assert_true(wait_event(p.loop, NET_EV_WRITABLE, &udata_tag, &e));

	/* after it, with nothing left to write: not reported again, even when
	 * input wakes the socket */
	assert_int_equal(write(p.client, "x", 1), 1);
	end = net_now_ms() + 200;
	bool readable = false;
	while (net_now_ms() < end) {
		n = net_poll(p.loop, ev, MAXEV, 20);
		for (int i = 0; i < n; i++) {
			assert_int_not_equal(ev[i].type, NET_EV_WRITABLE);
			if (ev[i].type == NET_EV_READABLE) {
				/* a read that fills cap leaves it reported: the
				 * next one sees -EAGAIN */
				char c;
				ssize_t r = net_recv(p.loop, p.conn, &c, 1);
				assert_true(r == 1 ? !readable : r == -EAGAIN);
				readable |= r == 1;
			}
		}
	}
	assert_true(readable);
	free(chunk);
	free(rbuf);
	pair_close(&p);
}

static void test_eof(void **state)
{
	struct pair p;
	struct net_event e;
	char buf[16];

	(void)state;
	pair_open(&p, AF_INET, 0);
	assert_int_equal(write(p.client, "bye", 3), 3);
	close(p.client);
	p.client = -1;
	assert_true(wait_event(p.loop, NET_EV_READABLE, &udata_tag, &e));
	assert_int_equal(net_recv(p.loop, p.conn, buf, sizeof(buf)), 3);
	assert_int_equal(net_recv(p.loop, p.conn, buf, sizeof(buf)), 0);
	pair_close(&p);
}

/* Data and FIN before the loop looks: one epoll edge for both. The router
 * stops reading after a short recv (net-t.h), so the EOF must be reported
 * by a later poll, not lost with the edge. */
static void test_eof_after_short_read(void **state)
{
	struct pair p;
	struct net_event e;
	char buf[16];

	(void)state;
	pair_open(&p, AF_INET, 0);
	assert_int_equal(write(p.client, "bye", 3), 3);
	close(p.client);
	p.client = -1;
	usleep(20000);   /* both have arrived before the first poll */
	assert_true(wait_event(p.loop, NET_EV_READABLE, &udata_tag, &e));
	assert_int_equal(net_recv(p.loop, p.conn, buf, sizeof(buf)), 3);
	/* The way the router reads: stop at the short count, poll again. */
	assert_true(wait_event(p.loop, NET_EV_READABLE, &udata_tag, &e));
	assert_int_equal(net_recv(p.loop, p.conn, buf, sizeof(buf)), 0);
	pair_close(&p);
}

static void test_eof_alone(void **state)
{
	struct pair p;
	struct net_event e;
	char buf[16];

	(void)state;
	pair_open(&p, AF_INET, 0);
	shutdown(p.client, SHUT_WR);
	assert_true(wait_event(p.loop, NET_EV_READABLE, &udata_tag, &e));
	assert_int_equal(net_recv(p.loop, p.conn, buf, sizeof(buf)), 0);
	/* the write side still works (half close) */
	struct iovec iov = { "ok", 2 };
	assert_int_equal(net_sendv(p.loop, p.conn, &iov, 1), 2);
	assert_int_equal(recv(p.client, buf, sizeof(buf), 0), 2);
	pair_close(&p);
}

static void test_reset(void **state)
{
	struct pair p;
	struct net_event e;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	char buf[16];
	ssize_t r;

	(void)state;
	pair_open(&p, AF_INET, 0);
	assert_int_equal(setsockopt(p.client, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	close(p.client);
	p.client = -1;
	assert_true(wait_event(p.loop, NET_EV_READABLE, &udata_tag, &e));
	r = net_recv(p.loop, p.conn, buf, sizeof(buf));
	assert_int_equal(r, -ECONNRESET);
	/* writing to it fails without SIGPIPE */
	struct iovec iov = { "x", 1 };
	r = net_sendv(p.loop, p.conn, &iov, 1);
	assert_true(r == -EPIPE || r == -ECONNRESET);
	pair_close(&p);
}

/* ---- active open (net_connect) ----------------------------------------- */

static char tag_client, tag_server;

/* One loop connects to its own listener: ACCEPTED on one side, CONNECTED
 * on the other, bytes both ways, the source address the client asked
 * for, and EOF when the server closes. */
static void connect_echo(const char *listen_addr, const char *from_addr)
{
	struct net_loop *l;
	struct net_event ev[MAXEV];
	struct net_addr to, from;
	struct net_conn cc = { 0 }, sc = { 0 };
	bool accepted = false, connected = false;
	char buf[64];
	uint64_t end;
	int li, before = count_fds();

	l = net_loop_new(NULL, 0, 0);
	assert_non_null(l);
	li = net_listen(l, listen_addr, 16);
	assert_true(li >= 0);
	assert_int_equal(net_addr_parse(listen_addr, &to), 0);
	to.port = (uint16_t)net_listener_port(l, li);
	if (from_addr)
		assert_int_equal(net_addr_parse(from_addr, &from), 0);
	assert_int_equal(net_connect(l, &to, from_addr ? &from : NULL, &tag_client, &cc), 0);

	end = net_now_ms() + DEADLINE_MS;
	while ((!accepted || !connected) && net_now_ms() < end) {
		int n = net_poll(l, ev, MAXEV, 50);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			if (ev[i].type == NET_EV_ACCEPTED) {
				assert_false(accepted);
				accepted = true;
				sc = ev[i].conn;
				assert_int_equal(ev[i].peer.family, to.family);
				if (from_addr)
					assert_memory_equal(ev[i].peer.addr, from.addr, 16);
				assert_int_equal(net_attach(l, sc, &tag_server), 0);
			} else if (ev[i].type == NET_EV_CONNECTED) {
				assert_false(connected);
				connected = true;
				assert_ptr_equal(ev[i].udata, &tag_client);
				assert_true(net_conn_eq(ev[i].conn, cc));
			} else {
				/* nothing else before either side said a word */
				assert_int_equal(ev[i].type, NET_EV_NONE);
			}
		}
	}
	assert_true(accepted);
	assert_true(connected);
	assert_false(net_conn_eq(cc, sc));

	struct iovec q = { "ping", 4 }, a = { "pong!", 5 };
	struct net_event e;
	assert_int_equal(net_sendv(l, cc, &q, 1), 4);
	assert_true(wait_event(l, NET_EV_READABLE, &tag_server, &e));
	assert_int_equal(net_recv(l, sc, buf, sizeof(buf)), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(net_sendv(l, sc, &a, 1), 5);
	assert_true(wait_event(l, NET_EV_READABLE, &tag_client, &e));
	assert_true(net_conn_eq(e.conn, cc));
	assert_int_equal(net_recv(l, cc, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "pong!", 5);

	net_close(l, sc);
	assert_true(wait_event(l, NET_EV_READABLE, &tag_client, &e));
	assert_int_equal(net_recv(l, cc, buf, sizeof(buf)), 0);
	net_close(l, cc);
	net_loop_free(l);
	assert_int_equal(count_fds(), before);
}

static void test_connect_echo(void **state)
{
	(void)state;
	connect_echo("127.0.0.1:0", NULL);
}

static void test_connect_ipv6(void **state)
{
	(void)state;
	connect_echo("[::1]:0", NULL);
}

/* A source address with port 0 (how stanza-bench spreads connections over
 * 127.0.0.0/8): the listener sees that address. */
static void test_connect_from(void **state)
{
	(void)state;
	connect_echo("127.0.0.1:0", "127.3.2.1:0");
}

/* A port nobody listens on: no CONNECTED, a READABLE whose recv says why,
 * and closing it leaks nothing. */
static void test_connect_refused(void **state)
{
	struct net_loop *l;
	struct net_event ev[MAXEV], e;
	struct net_addr to;
	struct net_conn c;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	char buf[8];
	int fd, before;

	(void)state;
	/* a free port: bound, never listened on, closed */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
	close(fd);

	before = count_fds();
	l = net_loop_new(NULL, 0, 0);
	assert_non_null(l);
	assert_int_equal(net_addr_parse("127.0.0.1:1", &to), 0);
	to.port = ntohs(sin.sin_port);
	assert_int_equal(net_connect(l, &to, NULL, &tag_client, &c), 0);
	assert_true(wait_event(l, NET_EV_READABLE, &tag_client, &e));
	assert_true(net_conn_eq(e.conn, c));
	assert_int_equal(net_recv(l, c, buf, sizeof(buf)), -ECONNREFUSED);
	net_close(l, c);
	/* and nothing more for it */
	int n = net_poll(l, ev, MAXEV, 20);
	assert_int_equal(n, 0);
	net_loop_free(l);
	assert_int_equal(count_fds(), before);
}

/* A server that writes and closes at once: CONNECTED comes before the
 * READABLE that carries the bytes and the EOF. */
static void test_connect_then_data_and_eof(void **state)
{
	struct net_loop *l;
	struct net_event ev[MAXEV];
	struct net_addr to;
	struct net_conn c;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sin);
	char buf[16];
	int lfd, afd, got_connected = 0, got = 0, eof = 0;
	uint64_t end;

	(void)state;
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(lfd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &sl), 0);

	l = net_loop_new(NULL, 0, 0);
	assert_non_null(l);
	assert_int_equal(net_addr_parse("127.0.0.1:1", &to), 0);
	to.port = ntohs(sin.sin_port);
	assert_int_equal(net_connect(l, &to, NULL, &tag_client, &c), 0);
	afd = accept(lfd, NULL, NULL);   /* the handshake is done in the kernel */
	assert_true(afd >= 0);
	assert_int_equal(write(afd, "hello", 5), 5);
	close(afd);

	end = net_now_ms() + DEADLINE_MS;
	while (!eof && net_now_ms() < end) {
		int n = net_poll(l, ev, MAXEV, 50);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			if (ev[i].type == NET_EV_CONNECTED) {
				assert_int_equal(got_connected, 0);
				got_connected = 1;
				continue;
			}
			if (ev[i].type != NET_EV_READABLE)
				continue;
			assert_int_equal(got_connected, 1);
			for (;;) {
				ssize_t r = net_recv(l, c, buf + got, sizeof(buf) - (size_t)got);
				if (r > 0) {
					got += (int)r;
					continue;
				}
				if (r == 0)
					eof = 1;
				else
					assert_int_equal(r, -EAGAIN);
				break;
			}
		}
	}
	assert_int_equal(eof, 1);
	assert_int_equal(got, 5);
	assert_memory_equal(buf, "hello", 5);
	net_close(l, c);
	net_loop_free(l);
	close(lfd);
}

static void test_connect_bad_args(void **state)
{
	struct net_loop *l;
	struct net_addr to, from;
	struct net_conn c;

	(void)state;
	l = net_loop_new(NULL, 0, 0);
	assert_non_null(l);
	assert_int_equal(net_addr_parse("*:5222", &to), 0);
	assert_int_equal(net_connect(l, &to, NULL, NULL, &c), -EINVAL);
	assert_int_equal(net_addr_parse("127.0.0.1:5222", &to), 0);
	assert_int_equal(net_addr_parse("[::1]:0", &from), 0);
	assert_int_equal(net_connect(l, &to, &from, NULL, &c), -EINVAL);
	net_loop_free(l);
}

/* A flooding client gets its budget per iteration, then is reported again
 * without new input; a quiet client on the same loop is served meanwhile. */
static void test_fair_budget_and_pause(void **state)
{
	enum { BUDGET = 1024, FLOOD = 256 * 1024 };
	struct net_loop *l = net_loop_new(NULL, 0, 0);
	struct net_event e, ev[MAXEV];
	char *big = calloc(1, FLOOD), buf[BUDGET];
	int li, port, cf, cq, n;
	char tag_f, tag_q;
	struct net_conn flood, quiet;

	(void)state;
	assert_non_null(l);
	assert_non_null(big);
	li = net_listen(l, "127.0.0.1:0", 16);
	port = net_listener_port(l, li);
	cf = client_connect(AF_INET, port, 0);
	assert_true(wait_event(l, NET_EV_ACCEPTED, NULL, &e));
	flood = e.conn;
	net_attach(l, flood, &tag_f);
	cq = client_connect(AF_INET, port, 0);
	assert_true(wait_event(l, NET_EV_ACCEPTED, NULL, &e));
	quiet = e.conn;
	net_attach(l, quiet, &tag_q);

	/* plenty queued at the server for the flooder */
	size_t queued = 0;
	while (queued < FLOOD) {
		ssize_t r = write(cf, big, FLOOD - queued);
		assert_true(r > 0);
		queued += (size_t)r;
	}
	assert_true(wait_event(l, NET_EV_READABLE, &tag_f, &e));
	assert_int_equal(net_recv(l, flood, buf, BUDGET), BUDGET);   /* budget used, stop */

	assert_int_equal(write(cq, "q", 1), 1);
	/* the next polls report both, the flooder without new input */
	bool saw_q = false, saw_f = false;
	uint64_t end = net_now_ms() + DEADLINE_MS;
	while (!(saw_q && saw_f) && net_now_ms() < end) {
		n = net_poll(l, ev, MAXEV, 10);
		for (int i = 0; i < n; i++) {
			if (ev[i].type != NET_EV_READABLE)
				continue;
			if (ev[i].udata == &tag_q) {
				assert_int_equal(net_recv(l, quiet, buf, BUDGET), 1);
				saw_q = true;
			} else if (ev[i].udata == &tag_f) {
				assert_int_equal(net_recv(l, flood, buf, BUDGET), BUDGET);
				saw_f = true;
			}
		}
	}
	assert_true(saw_q && saw_f);

	/* not reading while enabled keeps it reported; paused, it is not */
	n = net_poll(l, ev, MAXEV, 1000);
	assert_int_equal(n, 1);
	assert_ptr_equal(ev[0].udata, &tag_f);
	assert_int_equal(net_read_enable(l, flood, false), 0);
	n = net_poll(l, ev, MAXEV, 30);
	assert_int_equal(n, 0);
	assert_int_equal(net_read_enable(l, flood, true), 0);
	n = net_poll(l, ev, MAXEV, 1000);
	assert_int_equal(n, 1);
	assert_ptr_equal(ev[0].udata, &tag_f);

	/* closing a connection cancels its events later in the same array */
	assert_int_equal(write(cq, "q", 1), 1);
	end = net_now_ms() + DEADLINE_MS;
	n = 0;
	while (n < 2 && net_now_ms() < end)
		n = net_poll(l, ev, MAXEV, 10);
	assert_int_equal(n, 2);
	int iq = ev[0].udata == &tag_q ? 0 : 1;
	assert_ptr_equal(ev[iq].udata, &tag_q);
	net_close(l, quiet);
	assert_int_equal(ev[iq].type, NET_EV_NONE);
	assert_int_equal(ev[1 - iq].type, NET_EV_READABLE);

	close(cf);
	close(cq);
	net_close(l, flood);
	net_loop_free(l);
	free(big);
}

struct waker {
	struct net_loop *loop;
	int delay_ms;
};

static void *waker_main(void *arg)
{
	struct waker *w = arg;
	usleep((useconds_t)w->delay_ms * 1000);
	net_wake(w->loop);
	return NULL;
}

static void test_wake(void **state)
{
	struct net_loop *l = net_loop_new(NULL, 0, 0);
	struct net_event ev[MAXEV];
	struct waker w = { l, 100 };
	pthread_t th;
	uint64_t t0;
	int n;

	(void)state;
	assert_non_null(l);
	/* from another thread, into a long wait */
	assert_int_equal(pthread_create(&th, NULL, waker_main, &w), 0);
	t0 = net_now_ms();
	n = net_poll(l, ev, MAXEV, 10000);
	pthread_join(th, NULL);
	assert_int_equal(n, 1);
	assert_int_equal(ev[0].type, NET_EV_WAKE);
	assert_true(net_now_ms() - t0 < 5000);

	/* coalesced: several wakes while busy make one WAKE, then none */
	net_wake(l);
	net_wake(l);
	net_wake(l);
	n = net_poll(l, ev, MAXEV, 10000);
	assert_int_equal(n, 1);
	assert_int_equal(ev[0].type, NET_EV_WAKE);
	n = net_poll(l, ev, MAXEV, 20);
	assert_int_equal(n, 0);

	/* many wakers, bounded: every round ends in a WAKE */
	for (int round = 0; round < 50; round++) {
		pthread_t ths[4];
		struct waker ws = { l, 1 };
		for (int i = 0; i < 4; i++)
			assert_int_equal(pthread_create(&ths[i], NULL, waker_main, &ws), 0);
		bool woke = false;
		uint64_t end = net_now_ms() + DEADLINE_MS;
		while (!woke && net_now_ms() < end) {
			n = net_poll(l, ev, MAXEV, 1000);
			for (int i = 0; i < n; i++)
				woke |= ev[i].type == NET_EV_WAKE;
		}
		for (int i = 0; i < 4; i++)
			pthread_join(ths[i], NULL);
		assert_true(woke);
		/* drain a WAKE left by a late waker */
		net_poll(l, ev, MAXEV, 0);
	}
	net_loop_free(l);
}

static void test_reuseport_two_loops(void **state)
{
	enum { N = 200 };
	struct net_loop *l[2];
	struct net_event ev[MAXEV];
	int clients[N], port, seen[2] = { 0, 0 };
	uint8_t *hit = calloc(65536, 1);

	(void)state;
	assert_non_null(hit);
	l[0] = net_loop_new(NULL, 0, 0);
	l[1] = net_loop_new(NULL, 1, 0);
	assert_non_null(l[0]);
	assert_non_null(l[1]);
	assert_true(net_listen(l[0], "127.0.0.1:0", 512) >= 0);
	port = net_listener_port(l[0], 0);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	assert_true(net_listen(l[1], addr, 512) >= 0);
	assert_int_equal(net_listener_port(l[1], 0), port);

	int total = 0;
	uint64_t end = net_now_ms() + 10000;
	for (int i = 0; i < N; i++) {
		clients[i] = client_connect(AF_INET, port, 0);
		hit[local_port(clients[i])] = 1;
		for (int k = 0; k < 2; k++) {
			int n = net_poll(l[k], ev, MAXEV, 0);
			for (int j = 0; j < n; j++) {
				assert_int_equal(ev[j].type, NET_EV_ACCEPTED);
				assert_int_equal(hit[ev[j].peer.port], 1);
				hit[ev[j].peer.port] = 2;   /* exactly once */
				seen[k]++;
				total++;
				net_close(l[k], ev[j].conn);
			}
		}
	}
	while (total < N && net_now_ms() < end) {
		for (int k = 0; k < 2; k++) {
			int n = net_poll(l[k], ev, MAXEV, 5);
			for (int j = 0; j < n; j++) {
				assert_int_equal(ev[j].type, NET_EV_ACCEPTED);
				assert_int_equal(hit[ev[j].peer.port], 1);
				hit[ev[j].peer.port] = 2;
				seen[k]++;
				total++;
				net_close(l[k], ev[j].conn);
			}
		}
	}
	assert_int_equal(total, N);
	for (int i = 0; i < N; i++) {
		assert_int_equal(hit[local_port(clients[i])], 2);
		close(clients[i]);
	}
	print_message("reuseport: loop 0 accepted %d, loop 1 accepted %d\n", seen[0], seen[1]);
	/* the kernel hashes the 4-tuple: both get some of 200 */
	assert_true(seen[0] > 0 && seen[1] > 0);
	net_loop_free(l[0]);
	net_loop_free(l[1]);
	free(hit);
}

static void test_many_connections_no_leak(void **state)
{
	enum { N = 2000 };
	struct net_loop *l;
	struct net_event ev[256];
	struct net_conn *conns = calloc(N, sizeof(*conns));
	int *clients = calloc(N, sizeof(*clients));
	int before, port, accepted = 0, connected = 0;
	uint64_t end;

	(void)state;
	assert_non_null(conns);
	assert_non_null(clients);
	before = count_fds();
	l = net_loop_new(NULL, 0, 64);   /* small hint: the table grows */
	assert_non_null(l);
	assert_true(net_listen(l, "127.0.0.1:0", 1024) >= 0);
	port = net_listener_port(l, 0);

	/* nonblocking connects interleaved with accepting, so the accept
	 * queue never overflows */
	end = net_now_ms() + 20000;
	while ((connected < N || accepted < N) && net_now_ms() < end) {
		for (int k = 0; k < 100 && connected < N; k++) {
			int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
			assert_true(fd >= 0);
			sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			int r = connect(fd, (struct sockaddr *)&sin, sizeof(sin));
			assert_true(r == 0 || errno == EINPROGRESS);
			clients[connected++] = fd;
		}
		int n = net_poll(l, ev, 256, 5);
		assert_true(n >= 0);
		for (int i = 0; i < n; i++) {
			assert_int_equal(ev[i].type, NET_EV_ACCEPTED);
			assert_true(accepted < N);
			conns[accepted] = ev[i].conn;
			assert_int_equal(net_attach(l, ev[i].conn, &conns[accepted]), 0);
			accepted++;
		}
	}
	assert_int_equal(connected, N);
	assert_int_equal(accepted, N);
	assert_int_equal(count_fds(), before + 3 /* epoll, eventfd, listener */ + 2 * N);

	/* ids are distinct while open */
	for (int i = 1; i < N; i++)
		assert_false(net_conn_eq(conns[i], conns[i - 1]));

	/* half closed by the clients (EOF seen by the loop), half by the server */
	for (int i = 0; i < N; i += 2)
		close(clients[i]);
	int eofs = 0;
	end = net_now_ms() + DEADLINE_MS;
	while (eofs < N / 2 && net_now_ms() < end) {
		int n = net_poll(l, ev, 256, 10);
		for (int i = 0; i < n; i++) {
			char c;
			if (ev[i].type != NET_EV_READABLE)
				continue;
			struct net_conn *pc = ev[i].udata;
			assert_true(pc >= conns && pc < conns + N);
			assert_int_equal((pc - conns) % 2, 0);
			assert_int_equal(net_recv(l, *pc, &c, 1), 0);
			net_close(l, *pc);
			eofs++;
		}
	}
	assert_int_equal(eofs, N / 2);
	for (int i = 1; i < N; i += 2) {
		net_close(l, conns[i]);
		close(clients[i]);
	}
	net_loop_free(l);
	assert_int_equal(count_fds(), before);
	free(conns);
	free(clients);
}

/* Out of descriptors: the loop stops accepting for a while instead of
 * being woken by the full accept queue on every poll, then resumes. */
static void test_emfile_pauses_accept(void **state)
{
	enum { K = 5 };
	struct net_loop *l = net_loop_new(NULL, 0, 0);
	struct net_event ev[MAXEV];
	struct rlimit old, low;
	int port, clients[K], accepted = 0, n;
	uint64_t t0, end;

	(void)state;
	assert_non_null(l);
	assert_true(net_listen(l, "127.0.0.1:0", 16) >= 0);
	port = net_listener_port(l, 0);
	for (int i = 0; i < K; i++)
		clients[i] = client_connect(AF_INET, port, 0);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	/* the limit is on descriptor numbers: the lowest free one is the
	 * next to be allocated, so cap there */
	int lowest = dup(0);
	assert_true(lowest >= 0);
	close(lowest);
	low.rlim_cur = (rlim_t)lowest;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);

	n = net_poll(l, ev, MAXEV, 0);
	assert_int_equal(n, 0);
	/* paused: a poll with a timeout sleeps instead of spinning */
	t0 = net_now_ms();
	n = net_poll(l, ev, MAXEV, 40);
	assert_int_equal(n, 0);
	assert_true(net_now_ms() - t0 >= 20);

	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	end = net_now_ms() + DEADLINE_MS;
	while (accepted < K && net_now_ms() < end) {
		n = net_poll(l, ev, MAXEV, 200);
		for (int i = 0; i < n; i++) {
			assert_int_equal(ev[i].type, NET_EV_ACCEPTED);
			net_close(l, ev[i].conn);
			accepted++;
		}
	}
	assert_int_equal(accepted, K);
	for (int i = 0; i < K; i++)
		close(clients[i]);
	net_loop_free(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test(test_accept_echo),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_wildcard_dual_stack),
		cmocka_unit_test(test_short_write_then_writable),
		cmocka_unit_test(test_eof),
		cmocka_unit_test(test_eof_after_short_read),
		cmocka_unit_test(test_eof_alone),
		cmocka_unit_test(test_reset),
		cmocka_unit_test(test_connect_echo),
		cmocka_unit_test(test_connect_ipv6),
		cmocka_unit_test(test_connect_from),
		cmocka_unit_test(test_connect_refused),
		cmocka_unit_test(test_connect_then_data_and_eof),
		cmocka_unit_test(test_connect_bad_args),
		cmocka_unit_test(test_fair_budget_and_pause),
		cmocka_unit_test(test_wake),
		cmocka_unit_test(test_reuseport_two_loops),
		cmocka_unit_test(test_many_connections_no_leak),
		cmocka_unit_test(test_emfile_pauses_accept),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
