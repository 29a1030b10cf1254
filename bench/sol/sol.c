/* sol-forwarder: the speed-of-light baseline of bench/ (docs: DESIGN.md,
 * "How we know it works and how fast"). It moves the same message bytes
 * between the same paired connections as stanzad, with the same sockets and
 * the same batching, and no XML, so that a run against it says how fast
 * these sockets go on this machine and stanzad's result can be given as a
 * ratio of that.
 *
 * Protocol (stanza-bench's raw scenario is the client side): after connect
 * a client sends one line, "STANZA-BENCH-RAW <pair-id> <side>\n" (pair-id
 * decimal, up to 2^64-1; side 0 or 1). The two connections with the same
 * pair id and different sides are paired, whichever came first waiting for
 * the other; from then on every byte received on one is sent on the other,
 * unchanged and in order. When one closes, the other is closed once the
 * bytes already forwarded to it are written. A malformed first line, or a
 * second connection claiming the side that waits, is closed.
 *
 *   sol-forwarder [--listen ADDR:PORT] [--threads N] [--no-pin]
 *
 * prints the port it listens on (a line with the number) and then "ready"
 * on stdout once every thread runs;
 * SIGTERM or SIGINT stop it (exit 0).
 *
 * The data path copies stanzad's (router/worker.c, net/kernel.c):
 *   - one thread per worker (--threads, default the online CPUs, thread i
 *     pinned to the i-th CPU it may run on, modulo their count, unless
 *     --no-pin: stanzad's CPU i modulo the online CPUs when nothing
 *     restricts the process, and inside taskset when something does), each
 *     with its own
 *     epoll and its own SO_REUSEPORT listener, so the kernel spreads the
 *     accepts as it does for stanzad; nonblocking sockets, TCP_NODELAY;
 *   - connections registered once, edge-triggered, for input and output;
 *     a "still readable" list gives level-triggered reading with a budget:
 *     reads of 16 KiB, at most 64 KiB per connection per iteration;
 *   - bytes read are appended to the peer's output buffer and every
 *     connection with output gets one write per iteration (gathered, up to
 *     two iovecs), after all reads: the batching of stanzad's flush;
 *   - backpressure: a connection whose peer has more than OUT_HIGH bytes
 *     waiting is not read until the peer's writes bring it to OUT_LOW.
 * What it does not do is everything stanzad exists for: no parsing after the
 * first line, no per-byte work, no copy from a receive buffer (bytes are
 * read straight into the peer's output ring), no routing lookup.
 *
 * Threads and pairing. The two connections of a pair may be accepted by
 * different threads. Here the thread that pairs them (the second one's)
 * hands its connection over, once, to the first one's thread, so that both
 * ends of a pair live on one thread and no byte ever crosses threads. This
 * is the ceiling, on purpose: stanzad binds a session to the worker that
 * accepted it (it cannot know at accept which contacts it will talk to), so
 * a message between sessions of two workers costs it a ring hop: a copy into
 * an SPSC ring, a publish, a wake of the other worker (an eventfd write if
 * it sleeps) and a copy out. With T threads and accepts spread evenly about
 * (T-1)/T of the pairs pay that hop in stanzad and none do here, so the
 * stanzad/sol ratio of a T-thread run includes the hop along with the XML.
 * To tell the two apart, also run both with one thread (no hop anywhere).
 * The handoff is setup, not data path: one mutex, one epoll_ctl on each
 * thread and one eventfd write per pair, before the first message byte.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define RX_CAP       (16u * 1024u)           /* one read: router/worker.c RX_CAP */
#define READ_BUDGET  (64u * 1024u)           /* per connection per iteration: READ_BUDGET there */
#define OUT_CAP      (256u * 1024u)          /* a connection's output ring; a power of two */
#define OUT_HIGH     (OUT_CAP - RX_CAP)      /* above this, the sender is not read ... */
#define OUT_LOW      (OUT_CAP / 2)           /* ... until the ring drains to this */
#define HELLO_MAX    64                      /* the first line, '\n' included */
#define ACCEPT_BURST 64                      /* per listener per iteration, as net/kernel.c */
#define ACCEPT_PAUSE_MS 100                  /* out of descriptors or memory */
#define MAX_EVENTS   256
#define MAX_THREADS  256
#define PAIR_BUCKETS 4096
#define BUF_POOL     32                      /* free output rings kept per thread */
#define BACKLOG      1024

#define TAG_LISTENER 1u                      /* epoll data; anything else is a struct conn * */
#define TAG_WAKE     2u

static const char hello_prefix[] = "STANZA-BENCH-RAW ";

enum conn_state {
	CS_HELLO,      /* waiting for the first line */
	CS_WAITING,    /* in the pairing table, not read */
	CS_PAIRED,     /* forwarding */
	CS_CLOSING,    /* the peer closed: write what is queued, then close */
	CS_HANDOFF,    /* on its way to another thread: not this thread's any more */
	CS_DEAD,       /* closed, freed at the end of the iteration */
};

#define CF_RD_READY   0x01u   /* may hold bytes, EOF or an error not read yet */
#define CF_WANT_WRITE 0x02u   /* a short write: the next EPOLLOUT edge flushes */
#define CF_PAUSED     0x04u   /* the peer's ring is above OUT_HIGH */
#define CF_ON_READY   0x08u   /* on the thread's ready list */
#define CF_DIRTY      0x10u   /* on the thread's flush list */
#define CF_HUP        0x20u   /* EPOLLRDHUP, HUP or ERR seen: no more edges will come */

struct link {
	struct link *prev, *next;
};

struct thread;

struct conn {
	struct link rl;              /* the ready list, while CF_ON_READY */
	int fd;
	uint8_t state;               /* enum conn_state */
	uint8_t side;
	uint16_t flags;
	uint32_t slot, gen;          /* in the owner's table: the handle other threads use */
	struct thread *t;            /* owner */
	struct conn *peer;           /* CS_PAIRED: on the same thread */
	struct conn *dirty_next;     /* flush list */
	struct conn *next;           /* dead list, handoff list, inbox */
	/* Bytes to write to this connection: a ring of OUT_CAP bytes while not
	 * empty (idle pairs hold none). in - done bytes wait; positions are
	 * taken modulo OUT_CAP. */
	char *out;
	uint64_t out_in, out_done;
	/* Pairing. While CS_WAITING the table (under pair_lock) links it and
	 * other threads read pair_id, side, t, slot and gen. */
	uint64_t pair_id;
	struct conn *hnext;
	/* CS_HANDOFF: the waiting connection it pairs with, on thread `to`. */
	struct thread *to;
	uint32_t to_slot, to_gen;
};

struct thread {
	unsigned id;
	pthread_t tid;
	int epfd, lfd, evfd;
	uint64_t accept_resume_ms;   /* 0: accepting */

	/* Connection table: handles (slot, gen) for the handoff. */
	struct conn **slots;
	uint32_t *gens;
	uint32_t *free_slots;
	uint32_t nslots, nfree;

	struct link ready;           /* list head */
	struct conn *dirty;
	struct conn *dead;
	struct conn *handoff;

	char *pool[BUF_POOL];
	unsigned npool;

	uint64_t bytes;              /* forwarded; these three read by main after join */
	uint64_t pairs;
	uint64_t handoffs;           /* pairs whose second connection came from another thread */

	/* Written by other threads. */
	pthread_mutex_t inbox_lock;
	struct conn *inbox;
};

static struct thread threads[MAX_THREADS];
static unsigned nthreads;
static int pin_cpu[MAX_THREADS];          /* -1: not pinned */
static atomic_bool stopping;

/* The pairing table: touched once per connection, at its first line. */
static pthread_mutex_t pair_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn *pair_table[PAIR_BUCKETS];

static unsigned online_cpus(void);

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- lists ------------------------------------------------------------- */

static void ready_del(struct conn *c)
{
	if (!(c->flags & CF_ON_READY))
		return;
	c->flags &= (uint16_t)~CF_ON_READY;
	c->rl.prev->next = c->rl.next;
	c->rl.next->prev = c->rl.prev;
}

/* On the ready list exactly when there is something to read and the state
 * allows reading it. */
static void ready_update(struct thread *t, struct conn *c)
{
	bool want = (c->flags & CF_RD_READY) &&
		(c->state == CS_HELLO || (c->state == CS_PAIRED && !(c->flags & CF_PAUSED)));

	if (!want) {
		ready_del(c);
		return;
	}
	if (c->flags & CF_ON_READY)
		return;
	c->flags |= CF_ON_READY;
	c->rl.prev = t->ready.prev;
	c->rl.next = &t->ready;
	t->ready.prev->next = &c->rl;
	t->ready.prev = &c->rl;
}

static void mark_dirty(struct thread *t, struct conn *c)
{
	if (c->flags & CF_DIRTY)
		return;
	c->flags |= CF_DIRTY;
	c->dirty_next = t->dirty;
	t->dirty = c;
}

/* ---- output rings -------------------------------------------------------- */

static char *buf_get(struct thread *t)
{
	if (t->npool)
		return t->pool[--t->npool];
	return malloc(OUT_CAP);
}

static void buf_put(struct thread *t, char *b)
{
	if (t->npool < BUF_POOL)
		t->pool[t->npool++] = b;
	else
		free(b);
}

/* len bytes of ring b from position pos, as one or two iovecs. */
static int ring_span(char *b, uint64_t pos, size_t len, struct iovec iov[2])
{
	size_t off = (size_t)(pos & (OUT_CAP - 1));
	size_t first = OUT_CAP - off;

	iov[0].iov_base = b + off;
	if (len <= first) {
		iov[0].iov_len = len;
		return 1;
	}
	iov[0].iov_len = first;
	iov[1].iov_base = b;
	iov[1].iov_len = len - first;
	return 2;
}

/* ---- the connection table ---------------------------------------------- */

static int slot_alloc(struct thread *t, struct conn *c)
{
	if (t->nfree == 0) {
		uint32_t n = t->nslots ? t->nslots * 2 : 256;
		struct conn **ns = realloc(t->slots, n * sizeof(*ns));
		if (ns)
			t->slots = ns;
		uint32_t *ng = realloc(t->gens, n * sizeof(*ng));
		if (ng)
			t->gens = ng;
		uint32_t *nf = realloc(t->free_slots, n * sizeof(*nf));
		if (nf)
			t->free_slots = nf;
		if (!ns || !ng || !nf)
			return -1;
		for (uint32_t i = n; i-- > t->nslots;) {
			t->slots[i] = NULL;
			t->gens[i] = 0;
			t->free_slots[t->nfree++] = i;
		}
		t->nslots = n;
	}
	c->slot = t->free_slots[--t->nfree];
	c->gen = ++t->gens[c->slot];
	c->t = t;
	t->slots[c->slot] = c;
	return 0;
}

static void slot_free(struct thread *t, struct conn *c)
{
	t->slots[c->slot] = NULL;
	t->free_slots[t->nfree++] = c->slot;
}

static struct conn *slot_lookup(struct thread *t, uint32_t slot, uint32_t gen)
{
	if (slot >= t->nslots || !t->slots[slot] || t->slots[slot]->gen != gen)
		return NULL;
	return t->slots[slot];
}

/* ---- pairing table --------------------------------------------------------- */

/* Take c out of the table if it is still there (another thread may have
 * claimed it meanwhile: then its handoff finds c's handle stale). */
static void pair_unlink(struct conn *c)
{
	pthread_mutex_lock(&pair_lock);
	for (struct conn **pp = &pair_table[c->pair_id % PAIR_BUCKETS]; *pp; pp = &(*pp)->hnext) {
		if (*pp == c) {
			*pp = c->hnext;
			break;
		}
	}
	c->hnext = NULL;
	pthread_mutex_unlock(&pair_lock);
}

/* ---- closing ---------------------------------------------------------------- */

static void conn_close(struct thread *t, struct conn *c)
{
	struct conn *p = c->peer;

	if (c->state == CS_DEAD || c->state == CS_HANDOFF)
		return;
	if (c->state == CS_WAITING)
		pair_unlink(c);
	ready_del(c);
	close(c->fd);   /* also leaves the epoll set */
	c->fd = -1;
	c->state = CS_DEAD;
	c->peer = NULL;
	slot_free(t, c);
	c->next = t->dead;
	t->dead = c;
	if (p) {
		/* What c sent before it went is still delivered. */
		p->peer = NULL;
		p->state = CS_CLOSING;
		ready_update(t, p);
		mark_dirty(t, p);
	}
}

static void conn_free(struct thread *t, struct conn *c)
{
	if (c->out)
		buf_put(t, c->out);
	free(c);
}

/* ---- pairing ------------------------------------------------------------------ */

static void pair_local(struct thread *t, struct conn *a, struct conn *b)
{
	a->peer = b;
	b->peer = a;
	a->state = CS_PAIRED;
	b->state = CS_PAIRED;
	ready_update(t, a);
	ready_update(t, b);
	t->pairs++;
}

/* Parse a first line (without its '\n'). Returns 0 or -1. */
static int hello_parse(const char *p, size_t n, uint64_t *id, uint8_t *side)
{
	size_t pl = sizeof(hello_prefix) - 1;
	uint64_t v = 0;
	size_t i;

	if (n < pl + 3 || memcmp(p, hello_prefix, pl) != 0)
		return -1;
	for (i = pl; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (i == pl || n - i != 2 || p[i] != ' ' || (p[i + 1] != '0' && p[i + 1] != '1'))
		return -1;
	*id = v;
	*side = (uint8_t)(p[i + 1] - '0');
	return 0;
}

/* The first line: peeked, so that what follows it stays in the socket and
 * is read by the forwarding path once the pair is complete. */
static void conn_hello(struct thread *t, struct conn *c)
{
	char line[HELLO_MAX];
	ssize_t n = recv(c->fd, line, sizeof(line), MSG_PEEK);
	uint64_t id;
	uint8_t side;

	if (n < 0 && errno == EINTR)
		return;
	if (n < 0 && errno == EAGAIN) {
		c->flags &= (uint16_t)~CF_RD_READY;
		return;
	}
	if (n <= 0) {
		conn_close(t, c);
		return;
	}
	char *nl = memchr(line, '\n', (size_t)n);
	if (!nl) {
		if ((size_t)n == sizeof(line) || (c->flags & CF_HUP))
			conn_close(t, c);
		else
			c->flags &= (uint16_t)~CF_RD_READY;   /* more bytes raise a new edge */
		return;
	}
	size_t len = (size_t)(nl - line) + 1;
	if (hello_parse(line, len - 1, &id, &side) < 0 || recv(c->fd, line, len, 0) != (ssize_t)len) {
		conn_close(t, c);
		return;
	}

	pthread_mutex_lock(&pair_lock);
	struct conn **pp = &pair_table[id % PAIR_BUCKETS];
	while (*pp && (*pp)->pair_id != id)
		pp = &(*pp)->hnext;
	struct conn *w = *pp;
	if (!w) {
		c->pair_id = id;
		c->side = side;
		c->state = CS_WAITING;
		c->hnext = pair_table[id % PAIR_BUCKETS];
		pair_table[id % PAIR_BUCKETS] = c;
		pthread_mutex_unlock(&pair_lock);
		ready_update(t, c);
		return;
	}
	if (w->side == side) {
		pthread_mutex_unlock(&pair_lock);
		conn_close(t, c);
		return;
	}
	*pp = w->hnext;
	w->hnext = NULL;
	struct thread *wt = w->t;
	uint32_t wslot = w->slot, wgen = w->gen;
	pthread_mutex_unlock(&pair_lock);

	c->pair_id = id;
	c->side = side;
	if (wt == t) {
		pair_local(t, w, c);
		return;
	}
	/* Ours no more: out of our epoll and table now, handed over at the end
	 * of the iteration (events of this batch may still name it). */
	ready_del(c);
	epoll_ctl(t->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	slot_free(t, c);
	c->state = CS_HANDOFF;
	c->to = wt;
	c->to_slot = wslot;
	c->to_gen = wgen;
	c->next = t->handoff;
	t->handoff = c;
}

static void handoff_push(struct thread *t)
{
	while (t->handoff) {
		struct conn *c = t->handoff;
		struct thread *to = c->to;
		uint64_t one = 1;

		t->handoff = c->next;
		pthread_mutex_lock(&to->inbox_lock);
		c->next = to->inbox;
		to->inbox = c;
		pthread_mutex_unlock(&to->inbox_lock);
		if (write(to->evfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			perror("sol-forwarder: eventfd write");
	}
}

/* Connections other threads handed to this one. */
static void inbox_drain(struct thread *t)
{
	struct conn *list;
	uint64_t v;

	if (read(t->evfd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		perror("sol-forwarder: eventfd read");
	pthread_mutex_lock(&t->inbox_lock);
	list = t->inbox;
	t->inbox = NULL;
	pthread_mutex_unlock(&t->inbox_lock);

	while (list) {
		struct conn *b = list;
		struct conn *a = slot_lookup(t, b->to_slot, b->to_gen);
		struct epoll_event ee = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = b };

		list = b->next;
		b->next = NULL;
		if (!a || a->state != CS_WAITING || slot_alloc(t, b) < 0) {
			/* Its partner closed before it came: close it too. */
			close(b->fd);
			conn_free(t, b);
			continue;
		}
		t->handoffs++;
		b->state = CS_HELLO;   /* a state conn_close knows, until paired */
		b->flags = (uint16_t)(CF_RD_READY | (b->flags & CF_HUP));   /* the rest is in the socket */
		if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, b->fd, &ee) < 0) {
			perror("sol-forwarder: epoll_ctl");
			conn_close(t, b);
			conn_close(t, a);
			continue;
		}
		pair_local(t, a, b);
	}
}

/* ---- forwarding ---------------------------------------------------------------- */

/* Read c into its peer's ring: reads of RX_CAP, at most READ_BUDGET. */
static void conn_read(struct thread *t, struct conn *c)
{
	struct conn *p = c->peer;
	size_t budget = READ_BUDGET;

	for (;;) {
		struct iovec iov[2];

		if (p->out_in - p->out_done > OUT_HIGH) {
			c->flags |= CF_PAUSED;
			return;
		}
		if (!p->out && !(p->out = buf_get(t))) {
			fprintf(stderr, "sol-forwarder: out of memory\n");
			conn_close(t, c);
			return;
		}
		int niov = ring_span(p->out, p->out_in, RX_CAP, iov);
		ssize_t n = readv(c->fd, iov, niov);
		if (n > 0) {
			p->out_in += (uint64_t)n;
			t->bytes += (uint64_t)n;
			mark_dirty(t, p);
		} else if (n < 0 && errno == EINTR) {
			return;   /* still ready: next iteration */
		} else if (n < 0 && errno == EAGAIN) {
			c->flags &= (uint16_t)~CF_RD_READY;
			return;
		} else {
			conn_close(t, c);   /* end of stream or an error */
			return;
		}
		/* A short read drained the socket; later bytes raise a new edge.
		 * Not so a FIN that came with the bytes: its edge was the one
		 * that brought us here, so read on to the end of stream. */
		if ((size_t)n < RX_CAP) {
			if (!(c->flags & CF_HUP))
				c->flags &= (uint16_t)~CF_RD_READY;
			return;
		}
		if (budget <= (size_t)n)
			return;
		budget -= (size_t)n;
	}
}

/* One write of what waits for c. */
static void conn_flush(struct thread *t, struct conn *c)
{
	uint64_t used = c->out_in - c->out_done;

	if (c->state != CS_PAIRED && c->state != CS_CLOSING)
		return;
	if (used && !(c->flags & CF_WANT_WRITE)) {
		struct iovec iov[2];
		struct msghdr mh = { 0 };
		ssize_t n;
		int tries = 0;

		mh.msg_iov = iov;
		mh.msg_iovlen = (size_t)ring_span(c->out, c->out_done, (size_t)used, iov);
		do
			n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		while (n < 0 && errno == EINTR && ++tries < 4);
		if (n < 0 && errno == EAGAIN) {
			c->flags |= CF_WANT_WRITE;
		} else if (n < 0) {
			conn_close(t, c);
			return;
		} else {
			c->out_done += (uint64_t)n;
			used -= (uint64_t)n;
			if (used)
				c->flags |= CF_WANT_WRITE;
		}
	}
	if (!used && c->out) {
		buf_put(t, c->out);
		c->out = NULL;
	}
	if (c->state == CS_CLOSING) {
		if (!used)
			conn_close(t, c);
		return;
	}
	struct conn *p = c->peer;
	if ((p->flags & CF_PAUSED) && used <= OUT_LOW) {
		p->flags &= (uint16_t)~CF_PAUSED;
		ready_update(t, p);
	}
}

/* ---- the thread ---------------------------------------------------------------- */

static void accept_burst(struct thread *t)
{
	for (int i = 0; i < ACCEPT_BURST; i++) {
		int one = 1;
		int fd = accept4(t->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Level-triggered: stop asking for a while or spin. */
				struct epoll_event ee = { .events = 0, .data.u64 = TAG_LISTENER };
				epoll_ctl(t->epfd, EPOLL_CTL_MOD, t->lfd, &ee);
				t->accept_resume_ms = now_ms() + ACCEPT_PAUSE_MS;
				fprintf(stderr, "sol-forwarder: accept: %s\n", strerror(errno));
				return;
			}
			if (errno == EAGAIN)
				return;
			continue;   /* EINTR, ECONNABORTED, a network error of that one connection */
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *c = calloc(1, sizeof(*c));
		if (!c || slot_alloc(t, c) < 0) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = CS_HELLO;
		struct epoll_event ee = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
		if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ee) < 0) {
			slot_free(t, c);
			free(c);
			close(fd);
		}
	}
}

static void accept_resume(struct thread *t)
{
	struct epoll_event ee = { .events = EPOLLIN, .data.u64 = TAG_LISTENER };

	if (!t->accept_resume_ms || now_ms() < t->accept_resume_ms)
		return;
	t->accept_resume_ms = 0;
	epoll_ctl(t->epfd, EPOLL_CTL_MOD, t->lfd, &ee);
}

static void conn_event(struct thread *t, struct conn *c, uint32_t e)
{
	if (c->state == CS_DEAD || c->state == CS_HANDOFF)
		return;   /* closed or handed over earlier in this batch */
	if (c->state == CS_WAITING && (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
		conn_close(t, c);   /* gone before its partner came */
		return;
	}
	if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->flags |= CF_HUP;
	if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
		c->flags |= CF_RD_READY;
		ready_update(t, c);
	}
	if ((e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && (c->flags & CF_WANT_WRITE)) {
		c->flags &= (uint16_t)~CF_WANT_WRITE;
		mark_dirty(t, c);
	}
}

/* Each connection on the ready list gets one turn (its budget). */
static void serve_ready(struct thread *t)
{
	struct link round = t->ready;

	if (t->ready.next == &t->ready)
		return;
	/* Move the list to `round`; what stays readable goes back to t->ready. */
	round.next->prev = &round;
	round.prev->next = &round;
	t->ready.next = t->ready.prev = &t->ready;
	while (round.next != &round) {
		struct conn *c = (struct conn *)((char *)round.next - offsetof(struct conn, rl));

		ready_del(c);
		if (c->state == CS_HELLO)
			conn_hello(t, c);
		else
			conn_read(t, c);
		if (c->state != CS_DEAD && c->state != CS_HANDOFF)
			ready_update(t, c);
	}
}

static void flush_dirty(struct thread *t)
{
	/* A flush may close a connection and so queue its peer: both are
	 * handled here, and each close happens once, so this ends. */
	while (t->dirty) {
		struct conn *c = t->dirty;
		t->dirty = c->dirty_next;
		c->dirty_next = NULL;
		c->flags &= (uint16_t)~CF_DIRTY;
		conn_flush(t, c);
	}
}

static void free_dead(struct thread *t)
{
	while (t->dead) {
		struct conn *c = t->dead;
		t->dead = c->next;
		conn_free(t, c);
	}
}

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	struct epoll_event ev[MAX_EVENTS];

	if (pin_cpu[t->id] >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET((unsigned)pin_cpu[t->id], &set);
		if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
			fprintf(stderr, "sol-forwarder: could not pin thread %u to CPU %d\n", t->id, pin_cpu[t->id]);
	}
	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		int timeout = -1;
		if (t->ready.next != &t->ready)
			timeout = 0;
		else if (t->accept_resume_ms)
			timeout = ACCEPT_PAUSE_MS;

		int n = epoll_wait(t->epfd, ev, MAX_EVENTS, timeout);
		if (n < 0 && errno != EINTR) {
			perror("sol-forwarder: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.u64 == TAG_LISTENER)
				accept_burst(t);
			else if (ev[i].data.u64 == TAG_WAKE)
				inbox_drain(t);
			else
				conn_event(t, ev[i].data.ptr, ev[i].events);
		}
		accept_resume(t);
		serve_ready(t);
		flush_dirty(t);
		handoff_push(t);
		free_dead(t);
	}

	for (uint32_t i = 0; i < t->nslots; i++)
		if (t->slots[i])
			conn_close(t, t->slots[i]);
	flush_dirty(t);   /* peers of the closed: they close too (their bytes are dropped) */
	for (uint32_t i = 0; i < t->nslots; i++)
		if (t->slots[i])
			conn_close(t, t->slots[i]);
	while (t->handoff) {
		struct conn *c = t->handoff;
		t->handoff = c->next;
		close(c->fd);
		conn_free(t, c);
	}
	free_dead(t);
	return NULL;
}

/* ---- setup ------------------------------------------------------------------ */

static int addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;
	size_t hl;

	if (!colon)
		return -1;
	hl = (size_t)(colon - s);
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno || port > 65535 || hl == 0 || hl >= sizeof(host))
		return -1;
	memcpy(host, s, hl);
	host[hl] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (host[0] == '[' && host[hl - 1] == ']') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
		host[hl - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
			return -1;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
		return 0;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
		return -1;
	a4->sin_family = AF_INET;
	a4->sin_port = htons((uint16_t)port);
	*len = sizeof(*a4);
	return 0;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)ss)->sin_port = htons(port);
}

/* Listener, epoll and eventfd of thread t; port: 0 for the first thread
 * (then *port is what it got), the first one's for the others. */
static int thread_setup(struct thread *t, unsigned id, struct sockaddr_storage *ss, socklen_t sl,
			uint16_t *port)
{
	int one = 1;
	struct epoll_event lev = { .events = EPOLLIN, .data.u64 = TAG_LISTENER };
	struct epoll_event wev = { .events = EPOLLIN, .data.u64 = TAG_WAKE };

	t->id = id;
	t->ready.next = t->ready.prev = &t->ready;
	pthread_mutex_init(&t->inbox_lock, NULL);
	t->epfd = epoll_create1(EPOLL_CLOEXEC);
	t->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	t->lfd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (t->epfd < 0 || t->evfd < 0 || t->lfd < 0)
		return -1;
	if (id > 0)
		set_port(ss, *port);
	if (setsockopt(t->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(t->lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(t->lfd, (struct sockaddr *)ss, sl) < 0 || listen(t->lfd, BACKLOG) < 0)
		return -1;
	if (id == 0) {
		struct sockaddr_storage got;
		socklen_t gl = sizeof(got);
		if (getsockname(t->lfd, (struct sockaddr *)&got, &gl) < 0)
			return -1;
		*port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
							: ((struct sockaddr_in *)&got)->sin_port);
	}
	if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->lfd, &lev) < 0 ||
	    epoll_ctl(t->epfd, EPOLL_CTL_ADD, t->evfd, &wev) < 0)
		return -1;
	return 0;
}

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1u;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sol-forwarder [--listen ADDR:PORT] [--threads N] [--no-pin]\n"
		"  --listen ADDR:PORT  where to listen (default 127.0.0.1:5299; port 0: any)\n"
		"  --threads N         worker threads, each with its own listener (default: online CPUs)\n"
		"  --no-pin            do not pin thread i to the i-th allowed CPU (modulo their count)\n"
		"Prints the port, then \"ready\", when listening; SIGTERM or SIGINT stop it.\n");
}

int main(int argc, char **argv)
{
	const char *listen_addr = "127.0.0.1:5299";
	unsigned nthr = online_cpus();
	bool pin = true;
	struct sockaddr_storage ss;
	socklen_t sl;
	sigset_t sigs;
	uint16_t port = 0;
	int sig = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--listen") && i + 1 < argc) {
			listen_addr = argv[++i];
		} else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			char *end;
			unsigned long v = strtoul(argv[++i], &end, 10);
			if (*end || v == 0 || v > MAX_THREADS) {
				fprintf(stderr, "sol-forwarder: --threads: 1 to %u\n", MAX_THREADS);
				return 2;
			}
			nthr = (unsigned)v;
		} else if (!strcmp(argv[i], "--no-pin")) {
			pin = false;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (nthr > MAX_THREADS)
		nthr = MAX_THREADS;
	if (addr_parse(listen_addr, &ss, &sl) < 0) {
		fprintf(stderr, "sol-forwarder: --listen %s: expected IPv4:PORT or [IPv6]:PORT\n", listen_addr);
		return 2;
	}

	/* Signals go to main's sigwait only; workers never see EINTR from them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (unsigned i = 0; i < nthr; i++) {
		if (thread_setup(&threads[i], i, &ss, sl, &port) < 0) {
			fprintf(stderr, "sol-forwarder: thread %u: listen on %s: %s\n", i, listen_addr, strerror(errno));
			return 1;
		}
	}
	nthreads = nthr;
	/* The CPUs this process may use (all online ones unless taskset or a
	 * cpuset says otherwise), in order. */
	cpu_set_t allowed;
	int cpus[CPU_SETSIZE], ncpus = 0;
	if (pin && sched_getaffinity(0, sizeof(allowed), &allowed) == 0)
		for (int c = 0; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &allowed))
				cpus[ncpus++] = c;
	for (unsigned i = 0; i < nthreads; i++)
		pin_cpu[i] = ncpus ? cpus[i % (unsigned)ncpus] : -1;
	for (unsigned i = 0; i < nthreads; i++) {
		int r = pthread_create(&threads[i].tid, NULL, thread_main, &threads[i]);
		if (r) {
			fprintf(stderr, "sol-forwarder: thread %u: %s\n", i, strerror(r));
			return 1;
		}
	}
	printf("%u\nready\n", (unsigned)port);
	fflush(stdout);

	if (sigwait(&sigs, &sig) != 0)
		sig = SIGTERM;
	atomic_store_explicit(&stopping, true, memory_order_relaxed);
	for (unsigned i = 0; i < nthreads; i++) {
		uint64_t one = 1;
		if (write(threads[i].evfd, &one, sizeof(one)) < 0)
			perror("sol-forwarder: eventfd write");
	}

	uint64_t bytes = 0, pairs = 0, handoffs = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(threads[i].tid, NULL);
		bytes += threads[i].bytes;
		pairs += threads[i].pairs;
		handoffs += threads[i].handoffs;
	}
	/* Handed over to a thread that had already stopped. */
	for (unsigned i = 0; i < nthreads; i++) {
		struct thread *t = &threads[i];
		while (t->inbox) {
			struct conn *c = t->inbox;
			t->inbox = c->next;
			close(c->fd);
			conn_free(t, c);
		}
		while (t->npool)
			free(t->pool[--t->npool]);
		free(t->slots);
		free(t->gens);
		free(t->free_slots);
		close(t->lfd);
		close(t->evfd);
		close(t->epfd);
		pthread_mutex_destroy(&t->inbox_lock);
	}
	fprintf(stderr, "sol-forwarder: signal %d: stopped; %" PRIu64 " pairs (%" PRIu64 " across threads), %"
		PRIu64 " bytes forwarded\n", sig, pairs, handoffs, bytes);
	return 0;
}
