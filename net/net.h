/* The byte-stream transport: one loop per worker, run to completion, never
 * blocking except inside net_poll with the timeout it is given. Types,
 * return codes and the triggering contract are in net/net-t.h.
 *
 * A worker's iteration:
 *
 *     int n = net_poll(loop, ev, 256, wheel_next_timeout(&w, now));
 *     for (int i = 0; i < n; i++) switch (ev[i].type) {
 *     case NET_EV_ACCEPTED: throttle by ev[i].peer, then net_attach(loop, ev[i].conn, session);
 *     case NET_EV_READABLE: read up to the budget; stop early on -EAGAIN, 0, < cap, or error
 *     case NET_EV_WRITABLE: flush what is queued with net_sendv
 *     case NET_EV_WAKE:     drain the rings
 *     case NET_EV_CONNECTED: (clients only, after net_connect) start talking
 *     case NET_EV_NONE:     skip
 *     }
 *     wheel_expire(&w, net_now_ms());
 *     flush: one net_sendv per connection with output
 */
#ifndef STANZA_NET_NET_H
#define STANZA_NET_NET_H

#include <time.h>
#include "net/net-t.h"

/* ---- backends ---------------------------------------------------------- */

extern const struct net_ops net_kernel_ops;

/* The backend by name ("kernel", "dpdk"; NULL or "" means kernel), or NULL if
 * it does not exist in this build. */
const struct net_ops *net_backend(const char *name);

/* ---- addresses --------------------------------------------------------- */

/* Parse "127.0.0.1:5222", "[::1]:5222" or "*:5222" (port 0: any free port).
 * Returns 0 or -EINVAL. */
int net_addr_parse(const char *s, struct net_addr *a);

/* "1.2.3.4:5" or "[::1]:5" into buf (NET_ADDR_STRLEN bytes suffice).
 * Returns buf. */
char *net_addr_format(const struct net_addr *a, char *buf, size_t len);

/* ---- time -------------------------------------------------------------- */

/* Monotonic milliseconds, from the coarse clock: no syscall (vDSO), a few
 * ms of resolution, which is all the timing wheel needs. */
static inline uint64_t net_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- the loop ---------------------------------------------------------- */

static inline bool net_conn_eq(struct net_conn a, struct net_conn b)
{
	return a.id == b.id;
}

/* A loop for worker `worker` on backend ops (NULL: the default), with room
 * for conn_hint connections before it grows (0: a default). NULL with errno
 * set on failure. Free with net_loop_free, which closes every connection and
 * listener of the loop. */
struct net_loop *net_loop_new(const struct net_ops *ops, unsigned worker, uint32_t conn_hint);

static inline void net_loop_free(struct net_loop *loop)
{
	if (loop)
		loop->ops->loop_free(loop);
}

/* Listen on addr (see net_addr_parse) with SO_REUSEPORT, so that every
 * worker listens on the same port with a socket of its own and the kernel
 * spreads new connections over them. Returns a listener index of this loop
 * (0, 1, ...) or -errno. The first loop may ask for port 0; the others then
 * ask for the port net_listener_port returned. */
int net_listen(struct net_loop *loop, const char *addr, int backlog);

static inline int net_listen_addr(struct net_loop *loop, const struct net_addr *addr, int backlog)
{
	return loop->ops->listen(loop, addr, backlog);
}

/* The port a listener is bound to (host order), or -EINVAL. */
static inline int net_listener_port(struct net_loop *loop, int listener)
{
	return loop->ops->listener_port(loop, listener);
}

/* Active open (clients: stanza-bench; the router never calls it). Start a
 * nonblocking TCP connection to `to` (IPv4 or IPv6; the dpdk backend:
 * IPv4 only) from `from` (NULL: the backend chooses address and port; an
 * address with port 0: that source address, any port, which is how a
 * client on loopback spreads its connections over 127.0.0.0/8). The
 * connection comes back in *out already attached with udata (no
 * net_attach needed; calling it later replaces udata). The outcome is an
 * event of a later poll:
 *   NET_EV_CONNECTED   established; it also stands for WRITABLE (a sendv
 *                      made before it and left short gets no separate
 *                      WRITABLE). Comes before any READABLE of the
 *                      connection.
 *   NET_EV_READABLE    before CONNECTED: the connect failed, and recv
 *                      returns why (-ECONNREFUSED, -ETIMEDOUT,
 *                      -ENETUNREACH ...). Close it.
 * Before CONNECTED, sendv may return -EAGAIN (kernel) or queue the bytes
 * (dpdk, sent once established); wait for CONNECTED to be portable. The
 * dpdk backend picks the local port so that the peer's answers hash to
 * this loop's queue (RSS), since the loop that sent the SYN owns the
 * flow. Returns 0, or -errno at once (-EINVAL, -EAFNOSUPPORT,
 * -EADDRNOTAVAIL: no free local port, -EMFILE, -ENOMEM; the kernel may
 * also refuse at once, e.g. -ENETUNREACH): then there is no connection to
 * close. */
static inline int net_connect(struct net_loop *loop, const struct net_addr *to, const struct net_addr *from,
			      void *udata, struct net_conn *out)
{
	return loop->ops->connect(loop, to, from, udata, out);
}

/* Wait at most timeout_ms (-1: no limit, 0: do not wait) and fill ev with
 * up to max (>= NET_POLL_MIN) events. Returns how many (0 on timeout) or
 * -errno. Accepts a bounded burst per listener per call; when out of file
 * descriptors (EMFILE, ENFILE) or memory it stops accepting on that listener
 * for a short while instead of spinning. Events in one array may name a
 * connection that an earlier event's handling closed: net_close turns
 * those into NET_EV_NONE. */
static inline int net_poll(struct net_loop *loop, struct net_event *ev, int max, int timeout_ms)
{
	return loop->ops->poll(loop, ev, max, timeout_ms);
}

/* Start events for an ACCEPTED connection, with udata (the router's session
 * handle; borrowed, returned in every event). Bytes that arrived before
 * attach are reported by the next poll. Calling it again replaces udata.
 * Returns 0 or -errno (then close the connection). recv, sendv and close
 * also work before attach; events do not. */
static inline int net_attach(struct net_loop *loop, struct net_conn c, void *udata)
{
	return loop->ops->attach(loop, c, udata);
}

/* Copy up to cap received bytes into buf. Returns the count, 0 at end of
 * stream (the peer closed), -EAGAIN when there is nothing now, or -errno
 * (-ECONNRESET ...). A count below cap, -EAGAIN, 0 and errors end this
 * connection's READABLE until new bytes arrive. */
static inline ssize_t net_recv(struct net_loop *loop, struct net_conn c, void *buf, size_t cap)
{
	return loop->ops->recv(loop, c, buf, cap);
}

/* Write the iovecs in order, as much as the socket takes now. Returns bytes
 * written (may be fewer than asked: keep the rest and wait for WRITABLE),
 * -EAGAIN (nothing written, WRITABLE will follow) or -errno (-EPIPE,
 * -ECONNRESET: the connection is dead; close it). The iovecs are borrowed
 * for the call only. Never raises SIGPIPE. */
static inline ssize_t net_sendv(struct net_loop *loop, struct net_conn c, const struct iovec *iov, int iovcnt)
{
	return loop->ops->sendv(loop, c, iov, iovcnt);
}

/* Stop (on = false) or resume reporting READABLE for c, to shape a client
 * or to stop reading while the router cannot take more bytes. Resuming
 * reports READABLE on the next poll if bytes came meanwhile. Returns 0 or
 * -errno. */
static inline int net_read_enable(struct net_loop *loop, struct net_conn c, bool on)
{
	return loop->ops->read_enable(loop, c, on);
}

/* Close c: bytes already given to sendv are still delivered by the backend
 * (an orderly close), unread received bytes are dropped. c is invalid from
 * now on and its id may be reused by a later ACCEPTED event. */
static inline void net_close(struct net_loop *loop, struct net_conn c)
{
	loop->ops->close(loop, c);
}

/* Make the loop's current or next net_poll return a NET_EV_WAKE soon.
 * Any thread, any time while the loop exists; lock-free. Calls coalesce:
 * many wakes before the loop looks give one WAKE event, and a wake while
 * the loop is busy (not inside poll's wait) costs one atomic exchange and
 * no syscall. */
static inline void net_wake(struct net_loop *loop)
{
	loop->ops->wake(loop);
}

#endif
