/* The backend "dpdk" of struct net_ops: a loop is a DPDK queue pair and a
 * userspace TCP stack (net/dpdk/tcp.h), polled by its worker thread.
 *
 * poll runs passes of: transmit what the router's sendv queued, run due TCP
 * timers and ARP, receive a burst from the steering ring and one from the
 * queue, transmit what that caused, then collect events. It returns as soon
 * as a pass has events (or at once with timeout 0). With nothing to report
 * it spins, and after DP_SPIN_PASSES empty passes it naps on an eventfd
 * for 16 us, doubling up to dpdk.idle_sleep_us (0: never naps, for isolated
 * cores). A poll-mode driver raises no interrupt, so a nap is the latency
 * an idle worker adds to the next packet; it is what keeps a test machine
 * with fewer cores than threads usable. net_wake writes the eventfd only
 * while the loop naps (the kernel backend's protocol), and loops that hand
 * packets to a napping loop wake it the same way.
 *
 * Readiness for the router (net/net-t.h): the stack's READABLE is an edge;
 * the loop keeps each connection with unread bytes on a "still readable"
 * list until recv sees it drained, as the kernel backend does. A short
 * read with the peer's FIN already in keeps the connection on the list, so
 * the EOF that came with the last bytes is reported. The stack's CLOSED
 * (reset, timeout) is reported as READABLE: recv returns the error.
 *
 * A net_conn id is (generation << 32 | slot) into the loop's table; the
 * stack's udata for a connection is slot + 1.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <rte_ring.h>

#include "net/dpdk/port.h"
#include "net/net.h"

#define DCONN_ATTACHED    0x01u
#define DCONN_RD_READY    0x02u
#define DCONN_WANT_WRITE  0x04u
#define DCONN_RD_PAUSED   0x08u
#define DCONN_ON_READY    0x10u
#define DCONN_CLOSED      0x20u   /* the stack said CLOSED: recv gives the error */

#define DP_SPIN_PASSES    2000
#define DP_NAP_MIN_US     16
#define DP_CONNS_DEFAULT  16384   /* per loop: the stack's pool */
#define DP_HINT_DEFAULT   1024
#define DP_LINGER_MS      500     /* loop_free: closes still finishing */

#define DLOOP(l) ((struct dp_loop *)(l))

/* ---- thread registration ------------------------------------------------- */

static pthread_key_t reg_key;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void reg_release(void *arg)
{
	(void)arg;
	rte_thread_unregister();
}

static void reg_key_make(void)
{
	pthread_key_create(&reg_key, reg_release);
}

/* The worker thread gets an lcore id of its own, so that mempools keep a
 * per-thread cache; unregistered at thread exit. A thread the EAL cannot
 * register still works: mempools then go to their ring directly. */
static void thread_register(void)
{
	static __thread bool done;

	if (done)
		return;
	done = true;
	if (rte_lcore_id() != LCORE_ID_ANY)
		return;
	pthread_once(&reg_once, reg_key_make);
	if (rte_thread_register() == 0)
		pthread_setspecific(reg_key, (void *)1);
}

/* ---- connection table (as net/kernel.c's) ---------------------------------- */

static inline struct net_conn dconn_id(const struct dp_loop *l, uint32_t slot)
{
	struct net_conn c = { (uint64_t)l->conns[slot].gen << 32 | slot };
	return c;
}

static inline struct dconn *dconn_get(struct dp_loop *l, struct net_conn c)
{
	uint32_t slot = (uint32_t)c.id;

	if (slot >= l->nconns || l->conns[slot].gen != (uint32_t)(c.id >> 32))
		return NULL;
	return &l->conns[slot];
}

static void ready_add(struct dp_loop *l, uint32_t slot)
{
	struct dconn *d = &l->conns[slot];

	if (d->flags & DCONN_ON_READY)
		return;
	d->flags |= DCONN_ON_READY;
	d->link = l->nready;
	l->ready[l->nready++] = slot;
}

static void ready_del(struct dp_loop *l, struct dconn *d)
{
	uint32_t pos, last;

	if (!(d->flags & DCONN_ON_READY))
		return;
	d->flags &= ~DCONN_ON_READY;
	pos = d->link;
	last = l->ready[--l->nready];
	l->ready[pos] = last;
	l->conns[last].link = pos;
	if (l->ready_cursor >= l->nready)
		l->ready_cursor = 0;
}

static int slot_alloc(struct dp_loop *l, uint64_t tcp, uint32_t *out)
{
	uint32_t slot, gen;

	if (l->free_head != UINT32_MAX) {
		slot = l->free_head;
		l->free_head = l->conns[slot].link;
	} else {
		if (l->nconns == l->cap) {
			uint32_t ncap = l->cap * 2;
			struct dconn *nc = realloc(l->conns, ncap * sizeof(*nc));
			if (!nc)
				return -ENOMEM;
			l->conns = nc;
			uint32_t *nr = realloc(l->ready, ncap * sizeof(*nr));
			if (!nr)
				return -ENOMEM;
			l->ready = nr;
			l->cap = ncap;
		}
		slot = l->nconns++;
		l->conns[slot].gen = 0;
	}
	gen = l->conns[slot].gen + 1;
	if (gen == 0)
		gen = 1;
	l->conns[slot] = (struct dconn){ .tcp = tcp, .udata = NULL, .gen = gen, .flags = 0, .link = 0, .stamp = 0 };
	*out = slot;
	return 0;
}

static void slot_free(struct dp_loop *l, uint32_t slot)
{
	l->conns[slot].flags = 0;
	l->conns[slot].tcp = 0;
	l->conns[slot].link = l->free_head;
	l->free_head = slot;
}

/* ---- loop ------------------------------------------------------------------ */

static void dpdk_loop_free(struct net_loop *loop);
static unsigned pass(struct dp_loop *l);

static struct net_loop *dpdk_loop_new(unsigned worker, uint32_t conn_hint)
{
	struct dp_loop *l;
	struct tcp_config tc;
	int err;

	if (!dp_port.up || worker >= dp_port.nq || dp_port.loop[worker]) {
		errno = dp_port.up ? EINVAL : ENODEV;
		return NULL;
	}
	l = aligned_alloc(_Alignof(struct dp_loop), sizeof(*l));
	if (!l) {
		errno = ENOMEM;
		return NULL;
	}
	memset(l, 0, sizeof(*l));
	l->base.ops = &net_dpdk_ops;
	l->base.worker = worker;
	l->q = (uint16_t)worker;
	l->pool = dp_port.pool[worker];
	l->st = &dp_port.stats[worker].s;
	l->free_head = UINT32_MAX;
	l->cap = conn_hint ? conn_hint : DP_HINT_DEFAULT;
	l->evfd = -1;
	atomic_init(&l->sleeping, 0);
	atomic_init(&l->wake_pending, 0);
	l->conns = calloc(l->cap, sizeof(*l->conns));
	l->ready = calloc(l->cap, sizeof(*l->ready));
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!l->conns || !l->ready || l->evfd < 0) {
		err = l->evfd < 0 ? errno : ENOMEM;
		goto fail;
	}
	tcp_config_default(&tc);
	tc.emit = dp_tcp_emit;
	tc.port_ok = dp_port_ok;
	tc.ctx = l;
	tc.max_conns = conn_hint > DP_CONNS_DEFAULT ? conn_hint : DP_CONNS_DEFAULT;
	/* A segment goes out in one mbuf: Ethernet, IPv4, TCP with options
	 * and the payload within its data room (no jumbo frames yet). */
	tc.mss = (uint16_t)(dp_port.mtu - 40);
	if (tc.mss > RTE_MBUF_DEFAULT_DATAROOM - 14 - 20 - 60)
		tc.mss = RTE_MBUF_DEFAULT_DATAROOM - 14 - 20 - 60;
	tc.csum = dp_port.tx_csum ? TCP_CSUM_PSEUDO : TCP_CSUM_FULL;
	l->tick = net_now_ms();
	l->tcp = tcp_stack_new(&tc, l->tick);
	if (!l->tcp) {
		err = errno ? errno : ENOMEM;
		goto fail;
	}
	dp_port.loop[worker] = l;
	return &l->base;
fail:
	dpdk_loop_free(&l->base);
	errno = err;
	return NULL;
}

static void dpdk_loop_free(struct net_loop *loop)
{
	struct dp_loop *l = DLOOP(loop);

	/* The router closed its connections before freeing the loop; as the
	 * kernel would after close(2), give the stack a moment to send what
	 * they queued (a stream error, the FIN) and finish the handshakes.
	 * The worker thread is gone: this thread is the queue's only user. */
	if (l->tcp && dp_port.up && dp_port.loop[l->q] == l) {
		uint64_t end = net_now_ms() + DP_LINGER_MS;
		for (unsigned i = 0; i < l->nlis; i++)
			tcp_unlisten(l->tcp, l->lis_tcp[i]);
		while (tcp_stats(l->tcp)->conns > 0 && net_now_ms() < end) {
			pass(l);
			tcp_poll(l->tcp, l->tev, (int)(sizeof(l->tev) / sizeof(l->tev[0])));
			usleep(200);
		}
		dp_tx_flush(l);
	}
	if (dp_port.loop[l->q] == l) {
		dp_port.loop[l->q] = NULL;
		__atomic_store_n(&l->st->conns, 0, __ATOMIC_RELAXED);
	}
	if (l->tcp)
		tcp_stack_free(l->tcp);
	arp_free(l);
	for (unsigned i = 0; i < l->ntx; i++)
		rte_pktmbuf_free(l->tx[i]);
	if (l->evfd >= 0)
		close(l->evfd);
	free(l->conns);
	free(l->ready);
	free(l);
}

/* ---- listeners --------------------------------------------------------------- */

static int dpdk_listen(struct net_loop *loop, const struct net_addr *a, int backlog)
{
	struct dp_loop *l = DLOOP(loop);
	static const uint8_t any[4];
	uint16_t port = a->port;
	int r;

	if (l->nlis == NET_MAX_LISTENERS)
		return -ENOSPC;
	if (a->family == NET_AF_INET6)
		return -EAFNOSUPPORT;
	if (a->family != NET_AF_ANY && a->family != NET_AF_INET)
		return -EINVAL;
	if (a->family == NET_AF_INET && memcmp(a->addr, any, 4) && memcmp(a->addr, &dp_port.ip, 4))
		return -EADDRNOTAVAIL;   /* the port has one address */
	if (port == 0) {
		/* Any free port: the same for every loop of the process, since
		 * the router asks loop 0 and gives the others its answer. */
		port = (uint16_t)(20000 + (getpid() + l->nlis * 7919) % 10000);
	}
	r = tcp_listen(l->tcp, dp_port.ip, port, backlog);
	if (r < 0)
		return r;
	l->lis_port[l->nlis] = port;
	l->lis_tcp[l->nlis] = r;
	return (int)l->nlis++;
}

static int dpdk_listener_port(struct net_loop *loop, int idx)
{
	struct dp_loop *l = DLOOP(loop);

	if (idx < 0 || (unsigned)idx >= l->nlis)
		return -EINVAL;
	return l->lis_port[idx];
}

static uint16_t listener_index(const struct dp_loop *l, int tcp_idx)
{
	for (unsigned i = 0; i < l->nlis; i++)
		if (l->lis_tcp[i] == tcp_idx)
			return (uint16_t)i;
	return 0;
}

/* ---- poll ---------------------------------------------------------------------- */

static void emit_ev(struct net_event *e, uint8_t type, const struct dp_loop *l, uint32_t slot)
{
	e->type = type;
	e->pad = 0;
	e->listener = 0;
	e->pad2 = 0;
	e->conn = dconn_id(l, slot);
	e->udata = l->conns[slot].udata;
}

static void refresh_stats(struct dp_loop *l)
{
	const struct tcp_stats *ts = tcp_stats(l->tcp);

	__atomic_store_n(&l->st->conns, ts->conns, __ATOMIC_RELAXED);
	__atomic_store_n(&l->st->syn_dropped, ts->syn_drops, __ATOMIC_RELAXED);
	__atomic_store_n(&l->st->syn_cookies, ts->syn_cookies_sent, __ATOMIC_RELAXED);
}

/* One pass of packet work; returns how many packets it handled. */
static unsigned pass(struct dp_loop *l)
{
	struct rte_mbuf *pkts[DP_BURST];
	uint64_t now = net_now_ms();
	unsigned n, total = 0;

	dp_tx_flush(l);
	if (now != l->tick) {
		l->tick = now;
		tcp_timers(l->tcp, now);
		if (l->arp.nwait)
			arp_tick(l, now);
		refresh_stats(l);
	}
	n = rte_ring_sc_dequeue_burst(dp_port.steer[l->q], (void **)pkts, DP_BURST, NULL);
	if (n) {
		dp_rx(l, pkts, n, true, now);
		total += n;
	}
	n = rte_eth_rx_burst(dp_port.id, l->q, pkts, DP_BURST);
	if (n) {
		dp_rx(l, pkts, n, false, now);
		total += n;
	}
	dp_tx_flush(l);
	return total;
}

static void on_accept(struct dp_loop *l, const struct tcp_event *t, struct net_event *e, int *n)
{
	uint32_t slot;

	if (slot_alloc(l, t->conn, &slot) < 0) {
		tcp_abort(l->tcp, t->conn);   /* the peer sees a reset */
		return;
	}
	tcp_set_udata(l->tcp, t->conn, (void *)(uintptr_t)(slot + 1));
	st_add(&l->st->accepted, 1);
	memset(e, 0, sizeof(*e));
	e->type = NET_EV_ACCEPTED;
	e->listener = listener_index(l, t->listener);
	e->conn = dconn_id(l, slot);
	e->peer.family = NET_AF_INET;
	e->peer.port = t->remote_port;
	memcpy(e->peer.addr, &t->remote_ip, 4);
	(*n)++;
}

/* Events for the router: the still-readable list (at most half of max,
 * round robin), then the stack's events, then WAKE. */
static int collect(struct dp_loop *l, struct net_event *ev, int max)
{
	int n = 0, room, k;

	if (l->nready) {
		uint32_t quota = (uint32_t)max / 2, i;
		if (quota > l->nready)
			quota = l->nready;
		for (i = 0; i < quota; i++) {
			uint32_t slot = l->ready[(l->ready_cursor + i) % l->nready];
			l->conns[slot].stamp = l->stamp;
			emit_ev(&ev[n++], NET_EV_READABLE, l, slot);
		}
		l->ready_cursor = (l->ready_cursor + quota) % l->nready;
	}

	/* One slot for WAKE; a CLOSED may give WRITABLE and READABLE. */
	room = (max - n - 1) / 2;
	if (room > (int)(sizeof(l->tev) / sizeof(l->tev[0])))
		room = (int)(sizeof(l->tev) / sizeof(l->tev[0]));
	k = tcp_poll(l->tcp, l->tev, room);
	for (int i = 0; i < k; i++) {
		const struct tcp_event *t = &l->tev[i];
		uint32_t slot;
		struct dconn *d;

		if (t->type == TCP_EV_ACCEPTED) {
			int before = n;
			on_accept(l, t, &ev[n], &n);
			/* Later events of this batch for the same connection were
			 * filled before it had a udata. */
			if (n > before)
				for (int j = i + 1; j < k; j++)
					if (l->tev[j].conn == t->conn && !l->tev[j].udata)
						l->tev[j].udata = (void *)(uintptr_t)((uint32_t)ev[before].conn.id + 1);
			continue;
		}
		if (!t->udata)
			continue;   /* set at accept or connect: none is not ours */
		slot = (uint32_t)((uintptr_t)t->udata - 1);
		if (slot >= l->nconns || l->conns[slot].tcp != t->conn)
			continue;
		d = &l->conns[slot];
		switch (t->type) {
		case TCP_EV_CLOSED:
			d->flags |= DCONN_CLOSED;
			if ((d->flags & DCONN_WANT_WRITE) && (d->flags & DCONN_ATTACHED)) {
				d->flags &= ~DCONN_WANT_WRITE;
				emit_ev(&ev[n++], NET_EV_WRITABLE, l, slot);
			}
			/* recv returns the error */
			__attribute__((fallthrough));
		case TCP_EV_READABLE:
			d->flags |= DCONN_RD_READY;
			if ((d->flags & DCONN_ATTACHED) && !(d->flags & DCONN_RD_PAUSED)) {
				ready_add(l, slot);
				if (d->stamp != l->stamp) {
					d->stamp = l->stamp;
					emit_ev(&ev[n++], NET_EV_READABLE, l, slot);
				}
			}
			break;
		case TCP_EV_CONNECTED:
			/* net_connect: CONNECTED stands for WRITABLE too. */
			d->flags &= ~DCONN_WANT_WRITE;
			if (d->flags & DCONN_ATTACHED)
				emit_ev(&ev[n++], NET_EV_CONNECTED, l, slot);
			break;
		case TCP_EV_WRITABLE:
			if ((d->flags & DCONN_WANT_WRITE) && (d->flags & DCONN_ATTACHED)) {
				d->flags &= ~DCONN_WANT_WRITE;
				emit_ev(&ev[n++], NET_EV_WRITABLE, l, slot);
			}
			break;
		default:
			break;
		}
	}

	if (atomic_load_explicit(&l->wake_pending, memory_order_relaxed) && atomic_exchange(&l->wake_pending, 0)) {
		memset(&ev[n], 0, sizeof(ev[n]));
		ev[n++].type = NET_EV_WAKE;
	}
	return n;
}

static void nap(struct dp_loop *l, uint32_t us)
{
	struct pollfd pfd = { .fd = l->evfd, .events = POLLIN };
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)us * 1000 };
	uint64_t v;

	/* Pairs with dpdk_wake and dp_kick: sleeping is stored before
	 * wake_pending and the ring are looked at again, they store first and
	 * read sleeping after (all seq_cst). */
	atomic_store(&l->sleeping, 1);
	if (!atomic_load(&l->wake_pending) && rte_ring_empty(dp_port.steer[l->q]))
		ppoll(&pfd, 1, &ts, NULL);
	atomic_store(&l->sleeping, 0);
	if (read(l->evfd, &v, sizeof(v)) < 0) { /* EAGAIN: nobody wrote */ }
}

static int dpdk_poll(struct net_loop *loop, struct net_event *ev, int max, int timeout_ms)
{
	struct dp_loop *l = DLOOP(loop);
	uint64_t start = net_now_ms();
	uint32_t idle = 0, nap_us = DP_NAP_MIN_US, nap_max = dp_port.conf.idle_sleep_us;
	int n;

	if (max < NET_POLL_MIN)
		return -EINVAL;
	thread_register();
	if (!l->started) {
		l->started = true;
		if (l->q == 0)
			arp_announce(l);
	}
	l->stamp++;
	l->last_ev = ev;
	l->last_n = 0;
	for (;;) {
		unsigned got = pass(l);
		n = collect(l, ev, max);
		if (n > 0 || timeout_ms == 0)
			break;
		uint64_t now = net_now_ms();
		if (timeout_ms > 0 && now >= start + (uint64_t)timeout_ms)
			break;
		if (got) {
			idle = 0;
			nap_us = DP_NAP_MIN_US;
			continue;
		}
		if (++idle < DP_SPIN_PASSES || nap_max == 0) {
			rte_pause();
			continue;
		}
		/* Not past the caller's deadline or the stack's next timer. */
		uint32_t us = nap_us;
		int t = tcp_next_timeout(l->tcp, now);
		if (t == 0)
			us = 0;
		if (timeout_ms > 0 && (start + (uint64_t)timeout_ms - now) * 1000u < us)
			us = (uint32_t)((start + (uint64_t)timeout_ms - now) * 1000u);
		if (us)
			nap(l, us);
		if (nap_us < nap_max)
			nap_us = nap_us * 2 < nap_max ? nap_us * 2 : nap_max;
	}
	l->last_n = n;
	return n;
}

static void dpdk_wake(struct net_loop *loop)
{
	struct dp_loop *l = DLOOP(loop);
	uint64_t one = 1;

	if (atomic_exchange(&l->wake_pending, 1))
		return;
	if (atomic_load(&l->sleeping))
		if (write(l->evfd, &one, sizeof(one)) < 0) { /* EAGAIN: already readable */ }
}

/* ---- connections --------------------------------------------------------------- */

static int dpdk_attach(struct net_loop *loop, struct net_conn c, void *udata)
{
	struct dp_loop *l = DLOOP(loop);
	struct dconn *d = dconn_get(l, c);

	if (!d)
		return -EBADF;
	d->udata = udata;
	if (d->flags & DCONN_ATTACHED)
		return 0;
	d->flags |= DCONN_ATTACHED;
	if ((d->flags & DCONN_RD_READY) && !(d->flags & DCONN_RD_PAUSED))
		ready_add(l, (uint32_t)c.id);
	return 0;
}

/* After a short read: is the peer's FIN (or an error) in, so that the
 * next recv reports it although no new segment will raise an event? */
static bool peer_done(struct dp_loop *l, const struct dconn *d)
{
	struct tcp_conn_info ci;

	if (d->flags & DCONN_CLOSED)
		return true;
	if (tcp_conn_info(l->tcp, d->tcp, &ci) < 0)
		return true;
	switch (ci.state) {
	case TCP_CLOSE_WAIT: case TCP_LAST_ACK: case TCP_CLOSING: case TCP_TIME_WAIT: case TCP_CLOSED:
		return true;
	default:
		return false;
	}
}

static ssize_t dpdk_recv(struct net_loop *loop, struct net_conn c, void *buf, size_t cap)
{
	struct dp_loop *l = DLOOP(loop);
	struct dconn *d = dconn_get(l, c);
	ssize_t r;

	if (!d)
		return -EBADF;
	if (cap == 0)
		return -EINVAL;
	r = tcp_recv(l->tcp, d->tcp, buf, cap);
	if (r < (ssize_t)cap) {
		if (r > 0 && peer_done(l, d))
			return r;
		d->flags &= ~DCONN_RD_READY;
		ready_del(l, d);
	}
	return r;
}

static ssize_t dpdk_sendv(struct net_loop *loop, struct net_conn c, const struct iovec *iov, int iovcnt)
{
	struct dp_loop *l = DLOOP(loop);
	struct dconn *d = dconn_get(l, c);
	size_t want = 0;
	ssize_t r;

	if (!d)
		return -EBADF;
	for (int i = 0; i < iovcnt; i++)
		want += iov[i].iov_len;
	r = tcp_sendv(l->tcp, d->tcp, iov, iovcnt);
	if (r == -EAGAIN || (r >= 0 && (size_t)r < want))
		d->flags |= DCONN_WANT_WRITE;
	else
		d->flags &= ~DCONN_WANT_WRITE;
	/* Segments go out at the next poll's first step: the router sends
	 * to every connection in one flush, then polls. */
	return r;
}

static int dpdk_read_enable(struct net_loop *loop, struct net_conn c, bool on)
{
	struct dp_loop *l = DLOOP(loop);
	struct dconn *d = dconn_get(l, c);
	int r;

	if (!d)
		return -EBADF;
	r = tcp_read_enable(l->tcp, d->tcp, on);
	if (on) {
		d->flags &= ~DCONN_RD_PAUSED;
		if ((d->flags & DCONN_RD_READY) && (d->flags & DCONN_ATTACHED))
			ready_add(l, (uint32_t)c.id);
	} else {
		d->flags |= DCONN_RD_PAUSED;
		ready_del(l, d);
	}
	return r == -EBADF ? 0 : r;
}

static void dpdk_close(struct net_loop *loop, struct net_conn c)
{
	struct dp_loop *l = DLOOP(loop);
	struct dconn *d = dconn_get(l, c);

	if (!d)
		return;
	ready_del(l, d);
	tcp_close(l->tcp, d->tcp);
	for (int i = 0; i < l->last_n; i++) {
		struct net_event *e = &l->last_ev[i];
		if ((e->type == NET_EV_READABLE || e->type == NET_EV_WRITABLE) && net_conn_eq(e->conn, c))
			e->type = NET_EV_NONE;
	}
	slot_free(l, (uint32_t)c.id);
}

/* ---- active open (stanza-bench's client side; the router never calls it) ---- */

/* The SYN is queued at once (after ARP for the first one). The local port
 * is one whose answers hash to this loop's queue (dp_port_ok through
 * tcp_pick_port), since this loop owns the flow; a caller's own port must
 * hash there too. A refused or timed-out connect is the stack's CLOSED,
 * reported as READABLE with the error for recv. */
static int dpdk_connect(struct net_loop *loop, const struct net_addr *to, const struct net_addr *from,
			void *udata, struct net_conn *out)
{
	struct dp_loop *l = DLOOP(loop);
	uint32_t rip, slot;
	uint16_t lport = 0;
	uint64_t id;
	int r;

	if (to->family == NET_AF_INET6)
		return -EAFNOSUPPORT;
	if (to->family != NET_AF_INET || to->port == 0)
		return -EINVAL;
	memcpy(&rip, to->addr, 4);
	if (from) {
		static const uint8_t any[4];
		if (from->family != NET_AF_INET)
			return -EAFNOSUPPORT;
		if (memcmp(from->addr, any, 4) && memcmp(from->addr, &dp_port.ip, 4))
			return -EADDRNOTAVAIL;   /* the port has one address */
		lport = from->port;
		if (lport && !dp_port_ok(l, rip, to->port, dp_port.ip, lport))
			return -EADDRNOTAVAIL;
	}
	r = tcp_connect(l->tcp, dp_port.ip, lport, rip, to->port, &id);
	if (r < 0)
		return r;
	r = slot_alloc(l, id, &slot);
	if (r < 0) {
		tcp_abort(l->tcp, id);
		return r;
	}
	tcp_set_udata(l->tcp, id, (void *)(uintptr_t)(slot + 1));
	l->conns[slot].udata = udata;
	l->conns[slot].flags = DCONN_ATTACHED;
	*out = dconn_id(l, slot);
	return 0;
}

const struct net_ops net_dpdk_ops = {
	.name = "dpdk",
	.loop_new = dpdk_loop_new,
	.loop_free = dpdk_loop_free,
	.listen = dpdk_listen,
	.listener_port = dpdk_listener_port,
	.connect = dpdk_connect,
	.poll = dpdk_poll,
	.attach = dpdk_attach,
	.recv = dpdk_recv,
	.sendv = dpdk_sendv,
	.read_enable = dpdk_read_enable,
	.close = dpdk_close,
	.wake = dpdk_wake,
};
