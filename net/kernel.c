/* The kernel backend: epoll, one epoll instance and one SO_REUSEPORT
 * listening socket per worker, nonblocking sockets.
 *
 * Connections are registered once, at attach (or net_connect), for EPOLLIN | EPOLLOUT |
 * EPOLLRDHUP edge-triggered; the loop never calls epoll_ctl for them again
 * (close removes them from epoll). What the router sees is level-triggered
 * with a budget (net/net-t.h), built from two per-connection flags:
 *   RD_READY    set by an input edge, cleared when recv sees the socket
 *               drained; while set (and reading is enabled) the connection
 *               sits on loop->ready and poll reports it every call.
 *   WANT_WRITE  set by a short sendv, cleared by the WRITABLE it causes or
 *               by a sendv that writes everything; EPOLLOUT edges without it
 *               are dropped.
 *   CONNECTING  set by net_connect until the socket's first EPOLLOUT edge
 *               (CONNECTED) or error edge (READABLE: recv gives SO_ERROR).
 * A short recv clears RD_READY: bytes that arrive after recv looked raise a
 * new edge, and with EPOLLRDHUP so does a FIN, so nothing is missed -
 * except when data and the FIN came before the recv, in one edge: then
 * (HUP seen) a short recv keeps RD_READY, and the next one sees the EOF.
 *
 * Listeners and the wake eventfd are level-triggered: a listener left with
 * connections after its accept burst is simply reported again.
 *
 * A conn id is (table slot << 32 | fd): recv and sendv use the fd without a
 * lookup, the rest index the table; both halves are reused after close.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include "net/net.h"

#define KCONN_ATTACHED    0x01u
#define KCONN_RD_READY    0x02u
#define KCONN_WANT_WRITE  0x04u
#define KCONN_RD_PAUSED   0x08u
#define KCONN_ON_READY    0x10u
#define KCONN_HUP         0x20u   /* a FIN, hang-up or error edge was seen: no edge will follow */
#define KCONN_CONNECTING  0x40u   /* net_connect in progress: the first EPOLLOUT edge is CONNECTED */

/* epoll_event.data: kind (bits 62-63), fd (32-61), index (0-31). The fd
 * lets poll drop a late event for a slot that closed and was reused. */
#define KTAG_CONN     0ull
#define KTAG_LISTENER 1ull
#define KTAG_WAKE     2ull
#define KDATA(tag, fd, idx) ((tag) << 62 | (uint64_t)(uint32_t)(fd) << 32 | (uint32_t)(idx))

#define ACCEPT_BURST      64    /* per listener per poll */
#define ACCEPT_PAUSE_MS   100   /* after EMFILE/ENFILE/ENOBUFS/ENOMEM */
#define CONN_HINT_DEFAULT 1024
#define EPOLL_EVENTS_MAX  512

struct kconn {
	void *udata;
	int fd;              /* -1: free slot */
	uint32_t flags;
	uint32_t link;       /* index in loop->ready while ON_READY; next free slot while free */
	uint32_t stamp;      /* the poll that last reported READABLE */
};

struct klistener {
	int fd;
	bool paused;
	uint64_t resume_ms;
};

struct kloop {
	struct net_loop base;
	int epfd;
	int evfd;

	struct kconn *conns;
	uint32_t nconns;      /* slots ever used: conns[0..nconns) */
	uint32_t cap;
	uint32_t free_head;   /* UINT32_MAX: none */

	/* Slots with RD_READY and reading enabled. */
	uint32_t *ready;
	uint32_t nready;
	uint32_t ready_cursor;

	uint32_t stamp;
	struct net_event *last_ev;   /* the array the last poll filled, for close */
	int last_n;

	struct klistener lis[NET_MAX_LISTENERS];
	unsigned nlis;
	unsigned npaused;

	struct epoll_event eev[EPOLL_EVENTS_MAX];

	/* Written by other threads: a line of their own. */
	_Alignas(64) atomic_uint sleeping;
	atomic_uint wake_pending;
	char pad_end[64 - 2 * sizeof(atomic_uint)];
};

#define KLOOP(l) ((struct kloop *)(l))

static inline struct net_conn conn_id(uint32_t slot, int fd)
{
	struct net_conn c = { ((uint64_t)slot << 32) | (uint32_t)fd };
	return c;
}

static inline int conn_fd(struct net_conn c)
{
	return (int)(uint32_t)c.id;
}

static inline struct kconn *conn_get(struct kloop *l, struct net_conn c)
{
	uint32_t slot = (uint32_t)(c.id >> 32);
	assert(slot < l->nconns && l->conns[slot].fd == conn_fd(c));
	return &l->conns[slot];
}

static inline void emit(struct net_event *e, uint8_t type, uint32_t slot, const struct kconn *k)
{
	e->type = type;
	e->pad = 0;
	e->listener = 0;
	e->pad2 = 0;
	e->conn = conn_id(slot, k->fd);
	e->udata = k->udata;
}

/* ---- the still-readable list ------------------------------------------ */

static void ready_add(struct kloop *l, uint32_t slot)
{
	struct kconn *k = &l->conns[slot];
	if (k->flags & KCONN_ON_READY)
		return;
	k->flags |= KCONN_ON_READY;
	k->link = l->nready;
	l->ready[l->nready++] = slot;
}

static void ready_del(struct kloop *l, struct kconn *k)
{
	uint32_t pos, last;

	if (!(k->flags & KCONN_ON_READY))
		return;
	k->flags &= ~KCONN_ON_READY;
	pos = k->link;
	last = l->ready[--l->nready];
	l->ready[pos] = last;
	l->conns[last].link = pos;
	if (l->ready_cursor >= l->nready)
		l->ready_cursor = 0;
}

/* ---- the connection table --------------------------------------------- */

static int slot_alloc(struct kloop *l, int fd, uint32_t *out)
{
	uint32_t slot;

	if (l->free_head != UINT32_MAX) {
		slot = l->free_head;
		l->free_head = l->conns[slot].link;
	} else {
		if (l->nconns == l->cap) {
			/* Rare (past conn_hint) and never while a pointer into
			 * the tables is held: both are indexed by slot. */
			uint32_t ncap = l->cap * 2;
			struct kconn *nc = realloc(l->conns, ncap * sizeof(*nc));
			if (nc == NULL)
				return -ENOMEM;
			l->conns = nc;
			uint32_t *nr = realloc(l->ready, ncap * sizeof(*nr));
			if (nr == NULL)
				return -ENOMEM;
			l->ready = nr;
			l->cap = ncap;
		}
		slot = l->nconns++;
	}
	l->conns[slot] = (struct kconn){ .udata = NULL, .fd = fd, .flags = 0, .link = 0, .stamp = 0 };
	*out = slot;
	return 0;
}

static void slot_free(struct kloop *l, uint32_t slot)
{
	l->conns[slot].fd = -1;
	l->conns[slot].flags = 0;
	l->conns[slot].link = l->free_head;
	l->free_head = slot;
}

/* ---- loop ------------------------------------------------------------- */

static void kernel_loop_free(struct net_loop *loop);

static struct net_loop *kernel_loop_new(unsigned worker, uint32_t conn_hint)
{
	struct kloop *l = aligned_alloc(_Alignof(struct kloop), sizeof(struct kloop));
	struct epoll_event ee = { .events = EPOLLIN };
	int err;

	if (l == NULL)
		return NULL;
	memset(l, 0, sizeof(*l));
	l->base.ops = &net_kernel_ops;
	l->base.worker = worker;
	l->epfd = -1;
	l->evfd = -1;
	l->free_head = UINT32_MAX;
	l->cap = conn_hint ? conn_hint : CONN_HINT_DEFAULT;
	atomic_init(&l->sleeping, 0);
	atomic_init(&l->wake_pending, 0);
	l->conns = calloc(l->cap, sizeof(*l->conns));
	l->ready = calloc(l->cap, sizeof(*l->ready));
	if (l->conns == NULL || l->ready == NULL) {
		err = ENOMEM;
		goto fail;
	}
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ee.data.u64 = KDATA(KTAG_WAKE, l->evfd, 0);
	if (l->epfd < 0 || l->evfd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ee) < 0) {
		err = errno;
		goto fail;
	}
	return &l->base;
fail:
	kernel_loop_free(&l->base);
	errno = err;
	return NULL;
}

static void kernel_loop_free(struct net_loop *loop)
{
	struct kloop *l = KLOOP(loop);

	for (uint32_t i = 0; i < l->nconns; i++)
		if (l->conns[i].fd >= 0)
			close(l->conns[i].fd);
	for (unsigned i = 0; i < l->nlis; i++)
		close(l->lis[i].fd);
	if (l->evfd >= 0)
		close(l->evfd);
	if (l->epfd >= 0)
		close(l->epfd);
	free(l->conns);
	free(l->ready);
	free(l);
}

/* ---- listeners -------------------------------------------------------- */

static int kernel_listen(struct net_loop *loop, const struct net_addr *a, int backlog)
{
	struct kloop *l = KLOOP(loop);
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1, v6only = 1, fd, idx, err;
	int domain = a->family == NET_AF_INET ? AF_INET : AF_INET6;
	struct epoll_event ee = { .events = EPOLLIN };

	if (l->nlis == NET_MAX_LISTENERS)
		return -ENOSPC;
	if (a->family != NET_AF_INET && a->family != NET_AF_INET6 && a->family != NET_AF_ANY)
		return -EINVAL;
	memset(&ss, 0, sizeof(ss));
	fd = socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 && a->family == NET_AF_ANY && errno == EAFNOSUPPORT) {
		domain = AF_INET;   /* a host without IPv6: "*" is 0.0.0.0 */
		fd = socket(domain, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0)
		return -errno;
	if (domain == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(a->port);
		if (a->family == NET_AF_INET)
			memcpy(&sin->sin_addr, a->addr, 4);
		sl = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(a->port);
		if (a->family == NET_AF_INET6)
			memcpy(&sin6->sin6_addr, a->addr, 16);
		else
			v6only = 0;
		sl = sizeof(*sin6);
		if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
			goto fail;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, sl) < 0 ||
	    listen(fd, backlog) < 0)
		goto fail;
	idx = (int)l->nlis;
	ee.data.u64 = KDATA(KTAG_LISTENER, fd, idx);
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ee) < 0)
		goto fail;
	l->lis[idx] = (struct klistener){ .fd = fd, .paused = false, .resume_ms = 0 };
	l->nlis++;
	return idx;
fail:
	err = errno;
	close(fd);
	return -err;
}

static int kernel_listener_port(struct net_loop *loop, int idx)
{
	struct kloop *l = KLOOP(loop);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (idx < 0 || (unsigned)idx >= l->nlis)
		return -EINVAL;
	if (getsockname(l->lis[idx].fd, (struct sockaddr *)&ss, &sl) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

static void peer_addr(const struct sockaddr_storage *ss, struct net_addr *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(a, 0, sizeof(*a));
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		a->family = NET_AF_INET;
		a->port = ntohs(sin->sin_port);
		memcpy(a->addr, &sin->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		a->port = ntohs(sin6->sin6_port);
		if (memcmp(&sin6->sin6_addr, mapped, 12) == 0) {
			a->family = NET_AF_INET;
			memcpy(a->addr, (const uint8_t *)&sin6->sin6_addr + 12, 4);
		} else {
			a->family = NET_AF_INET6;
			memcpy(a->addr, &sin6->sin6_addr, 16);
		}
	}
}

static void listener_pause(struct kloop *l, unsigned idx)
{
	struct epoll_event ee = { .events = 0, .data.u64 = KDATA(KTAG_LISTENER, l->lis[idx].fd, idx) };

	/* A level-triggered listener with a full accept queue would be
	 * reported on every poll; with no events it is not. */
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, l->lis[idx].fd, &ee) < 0)
		return;
	l->lis[idx].paused = true;
	l->lis[idx].resume_ms = net_now_ms() + ACCEPT_PAUSE_MS;
	l->npaused++;
}

/* Resume listeners whose pause is over; returns the ms until the next one
 * is due, or -1. */
static int listeners_resume(struct kloop *l)
{
	uint64_t now = net_now_ms();
	int next = -1;

	for (unsigned i = 0; i < l->nlis; i++) {
		struct klistener *li = &l->lis[i];
		if (!li->paused)
			continue;
		if (now >= li->resume_ms) {
			struct epoll_event ee = { .events = EPOLLIN, .data.u64 = KDATA(KTAG_LISTENER, li->fd, i) };
			if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, li->fd, &ee) == 0) {
				li->paused = false;
				l->npaused--;
				continue;
			}
			li->resume_ms = now + ACCEPT_PAUSE_MS;
		}
		int left = (int)(li->resume_ms - now);
		if (next < 0 || left < next)
			next = left;
	}
	return next;
}

/* Accept up to `room` connections from listener idx into ev. */
static int accept_burst(struct kloop *l, unsigned idx, struct net_event *ev, int room)
{
	int n = 0, one = 1;

	if (room > ACCEPT_BURST)
		room = ACCEPT_BURST;
	while (n < room) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		uint32_t slot;
		int fd = accept4(l->lis[idx].fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			switch (errno) {
			case EINTR:
			case ECONNABORTED:
			/* Linux passes pending network errors of the new
			 * connection to accept (accept(2)): that one is lost,
			 * the listener is fine. */
			case EPROTO: case ENOPROTOOPT: case EHOSTDOWN: case ENONET:
			case EHOSTUNREACH: case EOPNOTSUPP: case ENETUNREACH: case ENETDOWN:
				continue;
			case EMFILE: case ENFILE: case ENOBUFS: case ENOMEM:
				listener_pause(l, idx);
				return n;
			default:   /* EAGAIN, or a broken listener: try next poll */
				return n;
			}
		}
		/* Stanzas are small and already batched per loop iteration:
		 * Nagle would only add latency. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (slot_alloc(l, fd, &slot) < 0) {
			close(fd);
			return n;
		}
		struct net_event *e = &ev[n++];
		memset(e, 0, sizeof(*e));
		e->type = NET_EV_ACCEPTED;
		e->listener = (uint16_t)idx;
		e->conn = conn_id(slot, fd);
		peer_addr(&ss, &e->peer);
	}
	return n;
}

/* ---- poll ------------------------------------------------------------- */

static int kernel_poll(struct net_loop *loop, struct net_event *ev, int max, int timeout_ms)
{
	struct kloop *l = KLOOP(loop);
	int n = 0, room, r;
	bool slept = false;

	if (max < NET_POLL_MIN)
		return -EINVAL;
	l->stamp++;
	l->last_ev = ev;
	l->last_n = 0;

	if (l->npaused) {
		int t = listeners_resume(l);
		if (t >= 0 && (timeout_ms < 0 || t < timeout_ms))
			timeout_ms = t;
	}

	/* Connections left readable. At most half the array, taken round
	 * robin, so that epoll (new data, accepts, wakes) always has room. */
	if (l->nready) {
		uint32_t quota = (uint32_t)max / 2, i;
		if (quota > l->nready)
			quota = l->nready;
		for (i = 0; i < quota; i++) {
			uint32_t slot = l->ready[(l->ready_cursor + i) % l->nready];
			struct kconn *k = &l->conns[slot];
			struct net_event *e = &ev[n++];
			k->stamp = l->stamp;
			emit(e, NET_EV_READABLE, slot, k);
		}
		l->ready_cursor = (l->ready_cursor + quota) % l->nready;
		timeout_ms = 0;
	}

	/* Wake protocol (pairs with kernel_wake): sleeping is stored before
	 * wake_pending is read here, wake_pending before sleeping there, all
	 * seq_cst; so either the waker sees us sleeping and writes the
	 * eventfd, or we see its flag and do not sleep. */
	if (timeout_ms != 0) {
		atomic_store(&l->sleeping, 1);
		slept = true;
		if (atomic_load(&l->wake_pending))
			timeout_ms = 0;
	}

	/* One slot for WAKE; each epoll event may become READABLE + WRITABLE. */
	room = (max - n - 1) / 2;
	if (room > EPOLL_EVENTS_MAX)
		room = EPOLL_EVENTS_MAX;
	r = epoll_wait(l->epfd, l->eev, room, timeout_ms);
	if (slept)
		atomic_store(&l->sleeping, 0);
	if (r < 0) {
		if (errno != EINTR)
			return -errno;
		r = 0;
	}

	for (int i = 0; i < r; i++) {
		uint64_t d = l->eev[i].data.u64;
		uint32_t ev_bits = l->eev[i].events;
		uint32_t idx = (uint32_t)d;

		switch (d >> 62) {
		case KTAG_WAKE: {
			uint64_t v;
			/* Only clears the level; WAKE comes from the flag. */
			if (read(l->evfd, &v, sizeof(v)) < 0) { /* EAGAIN: already drained */ }
			break;
		}
		case KTAG_LISTENER: {
			/* Accepts fill what the other events leave, keeping the
			 * WAKE slot and one READABLE + WRITABLE per remaining
			 * epoll event. */
			int spare = max - n - 1 - 2 * (r - i - 1);
			if (spare > 0 && !l->lis[idx].paused)
				n += accept_burst(l, idx, ev + n, spare);
			break;
		}
		default: {
			struct kconn *k = &l->conns[idx];
			if (k->fd != (int)((d >> 32) & 0x3fffffffu) || !(k->flags & KCONN_ATTACHED))
				break;
			/* An active open ends with its first EPOLLOUT edge, or
			 * with an error edge, which the READABLE below reports
			 * (recv returns the socket's error). CONNECTED stands for
			 * WRITABLE too, and comes before any READABLE: so an
			 * epoll event still gives at most two events. */
			if (k->flags & KCONN_CONNECTING) {
				if (ev_bits & (EPOLLERR | EPOLLHUP)) {
					k->flags &= ~KCONN_CONNECTING;
				} else if (ev_bits & EPOLLOUT) {
					k->flags &= ~(KCONN_CONNECTING | KCONN_WANT_WRITE);
					emit(&ev[n++], NET_EV_CONNECTED, idx, k);
				}
			}
			if (ev_bits & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
				k->flags |= KCONN_RD_READY;
				if (ev_bits & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
					k->flags |= KCONN_HUP;
				if (!(k->flags & KCONN_RD_PAUSED)) {
					ready_add(l, idx);
					if (k->stamp != l->stamp) {
						k->stamp = l->stamp;
						emit(&ev[n++], NET_EV_READABLE, idx, k);
					}
				}
			}
			if ((ev_bits & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && (k->flags & KCONN_WANT_WRITE)) {
				k->flags &= ~KCONN_WANT_WRITE;
				emit(&ev[n++], NET_EV_WRITABLE, idx, k);
			}
			break;
		}
		}
	}

	if (atomic_load_explicit(&l->wake_pending, memory_order_relaxed) &&
	    atomic_exchange(&l->wake_pending, 0)) {
		memset(&ev[n], 0, sizeof(ev[n]));
		ev[n++].type = NET_EV_WAKE;
	}
	l->last_n = n;
	return n;
}

static void kernel_wake(struct net_loop *loop)
{
	struct kloop *l = KLOOP(loop);
	uint64_t one = 1;

	/* A wake already pending will be seen by the loop (see kernel_poll);
	 * otherwise write only if the loop is in, or about to enter, its
	 * wait. */
	if (atomic_exchange(&l->wake_pending, 1))
		return;
	if (atomic_load(&l->sleeping)) {
		if (write(l->evfd, &one, sizeof(one)) < 0) { /* EAGAIN: counter full, already readable */ }
	}
}

/* ---- connections ------------------------------------------------------ */

static socklen_t to_sockaddr(const struct net_addr *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == NET_AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(a->port);
		memcpy(&sin->sin_addr, a->addr, 4);
		return sizeof(*sin);
	}
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	sin6->sin6_family = AF_INET6;
	sin6->sin6_port = htons(a->port);
	memcpy(&sin6->sin6_addr, a->addr, 16);
	return sizeof(*sin6);
}

static int kernel_connect(struct net_loop *loop, const struct net_addr *to, const struct net_addr *from,
			  void *udata, struct net_conn *out)
{
	struct kloop *l = KLOOP(loop);
	struct sockaddr_storage ss;
	socklen_t sl;
	uint32_t slot;
	int fd, one = 1, err;

	if (to->family != NET_AF_INET && to->family != NET_AF_INET6)
		return -EINVAL;
	if (from && from->family != to->family)
		return -EINVAL;
	fd = socket(to->family == NET_AF_INET ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (from) {
		/* Port 0: the port is picked at connect, per 4-tuple, so one
		 * source address serves more than 64k destinations. */
		if (from->port == 0)
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		sl = to_sockaddr(from, &ss);
		if (bind(fd, (struct sockaddr *)&ss, sl) < 0)
			goto fail;
	}
	sl = to_sockaddr(to, &ss);
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS)
		goto fail;
	err = slot_alloc(l, fd, &slot);
	if (err < 0) {
		close(fd);
		return err;
	}
	/* Registered now, so that the handshake's outcome raises an edge;
	 * a connect that completed at once is reported by the ADD itself. */
	struct kconn *k = &l->conns[slot];
	struct epoll_event ee = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.u64 = KDATA(KTAG_CONN, fd, slot),
	};
	k->udata = udata;
	k->flags = KCONN_ATTACHED | KCONN_CONNECTING;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
		err = -errno;
		close(fd);
		slot_free(l, slot);
		return err;
	}
	*out = conn_id(slot, fd);
	return 0;
fail:
	err = -errno;
	close(fd);
	return err;
}

static int kernel_attach(struct net_loop *loop, struct net_conn c, void *udata)
{
	struct kloop *l = KLOOP(loop);
	struct kconn *k = conn_get(l, c);
	struct epoll_event ee = {
		.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
		.data.u64 = KDATA(KTAG_CONN, conn_fd(c), c.id >> 32),
	};

	k->udata = udata;
	if (k->flags & KCONN_ATTACHED)
		return 0;
	/* Adding reports the current state at the next epoll_wait: bytes
	 * that came before attach are not lost to edge triggering. */
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, k->fd, &ee) < 0)
		return -errno;
	k->flags |= KCONN_ATTACHED;
	return 0;
}

static ssize_t kernel_recv(struct net_loop *loop, struct net_conn c, void *buf, size_t cap)
{
	struct kloop *l = KLOOP(loop);
	ssize_t r;

	if (cap == 0)
		return -EINVAL;   /* recv would return 0, which means EOF here */
	do
		r = recv(conn_fd(c), buf, cap, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		r = -errno;
	if (r < (ssize_t)cap) {
		struct kconn *k = conn_get(l, c);
		/* After a hang-up edge no edge will come for what is left (the
		 * EOF or the error): stay readable until recv returns it. */
		if (r > 0 && (k->flags & KCONN_HUP))
			return r;
		k->flags &= ~KCONN_RD_READY;
		ready_del(l, k);
	}
	return r;
}

static ssize_t kernel_sendv(struct net_loop *loop, struct net_conn c, const struct iovec *iov, int iovcnt)
{
	struct kloop *l = KLOOP(loop);
	struct msghdr m;
	size_t want = 0;
	ssize_t r;

	if (iovcnt > IOV_MAX)
		iovcnt = IOV_MAX;   /* a short count; the caller sends the rest later */
	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	memset(&m, 0, sizeof(m));
	m.msg_iov = (struct iovec *)iov;
	m.msg_iovlen = (size_t)iovcnt;
	do
		r = sendmsg(conn_fd(c), &m, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (r < 0 && errno == EINTR);

	struct kconn *k = conn_get(l, c);
	if (r < 0) {
		r = -errno;
		if (r == -EAGAIN)
			k->flags |= KCONN_WANT_WRITE;
	} else if ((size_t)r < want) {
		k->flags |= KCONN_WANT_WRITE;
	} else {
		k->flags &= ~KCONN_WANT_WRITE;
	}
	return r;
}

static int kernel_read_enable(struct net_loop *loop, struct net_conn c, bool on)
{
	struct kloop *l = KLOOP(loop);
	struct kconn *k = conn_get(l, c);

	if (on) {
		k->flags &= ~KCONN_RD_PAUSED;
		if ((k->flags & KCONN_RD_READY) && (k->flags & KCONN_ATTACHED))
			ready_add(l, (uint32_t)(c.id >> 32));
	} else {
		k->flags |= KCONN_RD_PAUSED;
		ready_del(l, k);
	}
	return 0;
}

static void kernel_close(struct net_loop *loop, struct net_conn c)
{
	struct kloop *l = KLOOP(loop);
	struct kconn *k = conn_get(l, c);

	ready_del(l, k);
	/* Closing the only descriptor of the socket also removes it from
	 * the epoll set. */
	close(k->fd);
	for (int i = 0; i < l->last_n; i++) {
		struct net_event *e = &l->last_ev[i];
		if ((e->type == NET_EV_READABLE || e->type == NET_EV_WRITABLE) && net_conn_eq(e->conn, c))
			e->type = NET_EV_NONE;
	}
	slot_free(l, (uint32_t)(c.id >> 32));
}

const struct net_ops net_kernel_ops = {
	.name = "kernel",
	.loop_new = kernel_loop_new,
	.loop_free = kernel_loop_free,
	.listen = kernel_listen,
	.listener_port = kernel_listener_port,
	.connect = kernel_connect,
	.poll = kernel_poll,
	.attach = kernel_attach,
	.recv = kernel_recv,
	.sendv = kernel_sendv,
	.read_enable = kernel_read_enable,
	.close = kernel_close,
	.wake = kernel_wake,
};
