/* Types of the byte-stream transport under the router (functions: net/net.h).
 *
 * One struct net_loop per worker thread. Everything the router knows of a
 * connection is a struct net_conn (an opaque 64-bit id) and the udata it
 * attached; no fd, no sockaddr, so that the kernel backend (net/kernel.c,
 * epoll) and the userspace-TCP backend (net/dpdk, later) sit behind the same
 * table of functions, struct net_ops.
 *
 * Return codes, for every function of this module that returns int or
 * ssize_t: >= 0 success (a count, an index, or 0); -EAGAIN: nothing now,
 * an event will say when; any other negative value is -errno (-ECONNRESET,
 * -EPIPE, -ETIMEDOUT on a connection; -EINVAL, -EADDRINUSE, -EMFILE,
 * -ENOMEM on setup). Nothing here logs per event: callers log at the
 * failure site with the code they got.
 *
 * Triggering and fairness. The router sees level-triggered readiness with a
 * budget: READABLE is reported on every poll for as long as the connection
 * may still hold bytes, that is until recv has returned -EAGAIN, 0, an
 * error, or fewer bytes than asked. So the router reads at most its budget
 * (say 16 KiB) per connection per loop iteration and moves on; a flooding
 * client gets its budget again next iteration and cannot starve the others.
 * The kernel backend gets this from edge-triggered epoll (EPOLLET, both
 * directions registered once at attach, so no epoll_ctl per read or write)
 * plus a "still readable" list it keeps: a READABLE connection stays on the
 * list until recv sees it drained, and while the list is not empty poll
 * does not sleep. Why not plain level-triggered epoll: write interest would
 * then need an epoll_ctl to arm and another to drop per short write, and
 * epoll would re-check every drained socket on the next call; with the list
 * the backend knows exactly which connections the router left unread.
 *
 * A connection the router cannot serve right now (its buffers are full,
 * it is being shaped) must not be left unread while reading is enabled:
 * READABLE would come back on every poll and the loop would spin. Use
 * net_read_enable(loop, c, false) and turn it back on later (a timer).
 *
 * Writes: sendv writes what the socket takes. After a short count or
 * -EAGAIN the backend reports WRITABLE once, when the socket has room again;
 * it is one-shot: the next WRITABLE needs another short write. A sendv that
 * writes everything drops the pending interest. So the router calls sendv
 * when it has bytes (once per loop iteration, batched), and again on
 * WRITABLE, and never has to tell the backend it is idle.
 */
#ifndef STANZA_NET_NET_T_H
#define STANZA_NET_NET_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* A connection of one loop. Plain value: copy freely, compare with
 * net_conn_eq. Valid from its ACCEPTED event, or from a net_connect that
 * returned 0, until net_close; after net_close the same id may come back
 * in a later ACCEPTED event or net_connect (kernel: it holds the fd and a
 * table slot, both reused), so the router drops every copy when it
 * closes. */
struct net_conn {
	uint64_t id;
};

/* Address families of struct net_addr. */
enum net_family {
	NET_AF_NONE  = 0,
	NET_AF_ANY   = 1,   /* listen addresses only: "*": IPv6 and IPv4 on one socket where the host has IPv6 */
	NET_AF_INET  = 4,
	NET_AF_INET6 = 6,
};

/* An IP address and port, small enough to key per-IP throttling tables and
 * to print in logs (net_addr_format). IPv4 (also IPv4-mapped IPv6 peers of a
 * dual-stack listener) uses addr[0..3], the rest zero, so equal addresses
 * are equal bytes. */
struct net_addr {
	uint8_t  family;     /* enum net_family */
	uint8_t  pad;
	uint16_t port;       /* host byte order */
	uint8_t  addr[16];   /* network byte order */
};

#define NET_ADDR_STRLEN 48   /* "[ffff:...:ffff]:65535" and the NUL */

enum net_ev_type {
	NET_EV_NONE = 0,     /* nothing: skip (an event net_close cancelled) */
	NET_EV_ACCEPTED,     /* listener, conn, peer: a new connection, not yet attached */
	NET_EV_READABLE,     /* conn, udata: bytes, EOF, or an error to collect with recv */
	NET_EV_WRITABLE,     /* conn, udata: room again after a short sendv */
	NET_EV_WAKE,         /* net_wake was called since the last WAKE */
	NET_EV_CONNECTED,    /* conn, udata: a net_connect is established (also means writable) */
};

/* 40 bytes. Filled by net_poll into the caller's array; valid until the
 * next net_poll on that loop. */
struct net_event {
	uint8_t  type;           /* enum net_ev_type */
	uint8_t  pad;
	uint16_t listener;       /* ACCEPTED: the index net_listen returned */
	uint32_t pad2;
	struct net_conn conn;    /* ACCEPTED, READABLE, WRITABLE, CONNECTED */
	union {
		void *udata;             /* READABLE, WRITABLE, CONNECTED: as given to net_attach or net_connect */
		struct net_addr peer;    /* ACCEPTED */
	};
};

/* Listening sockets per loop, and the smallest events array net_poll takes
 * (room for the still-readable list, epoll's events and a WAKE). */
#define NET_MAX_LISTENERS 16
#define NET_POLL_MIN      4

struct net_loop;

/* One backend. Called through the inline wrappers of net/net.h, which are
 * the documentation of each entry. All entries but wake are called only by
 * the loop's own thread. */
struct net_ops {
	const char *name;
	struct net_loop *(*loop_new)(unsigned worker, uint32_t conn_hint);
	void (*loop_free)(struct net_loop *loop);
	int (*listen)(struct net_loop *loop, const struct net_addr *addr, int backlog);
	int (*listener_port)(struct net_loop *loop, int listener);
	int (*connect)(struct net_loop *loop, const struct net_addr *to, const struct net_addr *from,
		       void *udata, struct net_conn *out);
	int (*poll)(struct net_loop *loop, struct net_event *ev, int max, int timeout_ms);
	int (*attach)(struct net_loop *loop, struct net_conn c, void *udata);
	ssize_t (*recv)(struct net_loop *loop, struct net_conn c, void *buf, size_t cap);
	ssize_t (*sendv)(struct net_loop *loop, struct net_conn c, const struct iovec *iov, int iovcnt);
	int (*read_enable)(struct net_loop *loop, struct net_conn c, bool on);
	void (*close)(struct net_loop *loop, struct net_conn c);
	void (*wake)(struct net_loop *loop);
};

/* The part of every backend's loop that callers see; the backend's own
 * state follows it in a larger struct. */
struct net_loop {
	const struct net_ops *ops;
	unsigned worker;
};

#endif
