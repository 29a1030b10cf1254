/* Workers: one thread per core, run to completion. Each owns its listeners
 * (SO_REUSEPORT), its connections, its timers and the write side of its
 * rings. An iteration:
 *
 *   poll (sleeping only when nothing is pending)
 *   accept / read (a budget per connection) → TLS → c2s → deliver
 *   drain the rings from other workers and from the control thread
 *   expire timers
 *   flush: one sendv per connection with output, publish rings, wake peers
 *   announce an RCU quiescent state; free sessions closed this iteration
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "net/net.h"
#include "net/wheel.h"
#include "parser/simd.h"
#include "parser/xml.h"
#include "parser/jid.h"
#include "router/im.h"
#include "router/ring.h"
#include "router/route.h"
#include "router/router.h"
#include "router/sm.h"
#include "tls/tls.h"
#include "util/log.h"
#include "util/mem.h"

#define RX_CAP         (16u * 1024u)   /* one read */
#define PLAIN_CAP      (32u * 1024u)   /* decrypted per TLS read call: two records */
#define READ_BUDGET    (64u * 1024u)   /* per connection per iteration: fairness */
#define OVERFLOW_PAUSE (4u * 1024u * 1024u) /* stop reading while this much waits for rings */
#define MAX_EVENTS     256
#define TIMER_SESSION  0

/* ---- sessions ------------------------------------------------------------ */

uint64_t session_handle(const struct session *s)
{
	return handle_make(s->w->id, s->slot, s->gen);
}

struct session *worker_session(struct worker *w, uint64_t handle)
{
	uint32_t slot = handle_slot(handle);
	struct session *s;

	if (handle_worker(handle) != w->id || slot >= w->nslots)
		return NULL;
	s = w->slots[slot];
	if (!s || s->gen != handle_gen(handle) || session_dead(s))
		return NULL;
	return s;
}

static void session_timer_fired(struct wheel *wh, struct wheel_timer *t, uint64_t now)
{
	struct session *s = (struct session *)((char *)t - offsetof(struct session, timer));
	(void)wh;
	(void)now;
	if (!session_dead(s) && !(s->sm && sm_timeout(s)))
		c2s_timeout(s);
}

void session_timer(struct session *s, uint32_t ms)
{
	if (ms)
		wheel_add(&s->w->wheel, &s->timer, net_now_ms(), ms);
	else
		wheel_del(&s->w->wheel, &s->timer);
}

static struct session *session_new(struct worker *w, struct net_conn conn, const struct net_addr *peer,
				   unsigned listener)
{
	struct session *s;
	uint32_t slot;

	if (w->nfree == 0) {
		uint32_t n = w->nslots ? w->nslots * 2 : 256;
		struct session **ns = realloc(w->slots, n * sizeof(*ns));
		uint32_t *nf = realloc(w->free_slots, n * sizeof(*nf));
		uint32_t *ng = realloc(w->gens, n * sizeof(*ng));
		if (ns)
			w->slots = ns;
		if (nf)
			w->free_slots = nf;
		if (ng)
			w->gens = ng;
		if (!ns || !nf || !ng)
			return NULL;
		for (uint32_t i = w->nslots; i < n; i++) {
			w->slots[i] = NULL;
			w->gens[i] = 0;
		}
		/* Hand out low slots first. */
		for (uint32_t i = n; i-- > w->nslots;)
			w->free_slots[w->nfree++] = i;
		w->nslots = n;
	}
	s = mem_calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	slot = w->free_slots[--w->nfree];
	if (++w->gens[slot] == 0)
		w->gens[slot] = 1;   /* generation 0 never names a session */
	s->w = w;
	s->slot = slot;
	s->gen = w->gens[slot];
	s->conn = conn;
	s->peer = *peer;
	s->listener = (uint8_t)listener;
	xml_framer_init(&s->framer, &w->srv->cfg.xml);
	wheel_timer_init(&s->timer, TIMER_SESSION);
	w->slots[slot] = s;
	stat_add(&w->st.connections, 1);
	stat_add(&w->st.accepted, 1);
	return s;
}

/* Session buffers start at SBUF_BLOCK bytes and are freed when they empty,
 * so an idle session holds none. Blocks of that size come from a small
 * per-thread pool rather than malloc: a stanza delivered to an idle
 * session takes a block and its flush gives it back. */
#define SBUF_BLOCK 4096u
#define SBUF_POOL  64u

static _Thread_local struct {
	char *blk[SBUF_POOL];
	unsigned n;
} sbuf_pool;

static void sbuf_free(struct sbuf *b)
{
	if (b->cap == SBUF_BLOCK && sbuf_pool.n < SBUF_POOL)
		sbuf_pool.blk[sbuf_pool.n++] = b->p;
	else
		mem_free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Room for n more bytes; false if memory ran out. */
bool sbuf_reserve(struct sbuf *b, size_t n)
{
	size_t want = (size_t)b->len + n, cap = b->cap ? b->cap : SBUF_BLOCK;
	char *p;

	if (want <= b->cap)
		return true;
	if (want > UINT32_MAX / 2)
		return false;
	while (cap < want)
		cap *= 2;
	if (!b->p && cap == SBUF_BLOCK && sbuf_pool.n) {
		b->p = sbuf_pool.blk[--sbuf_pool.n];
		b->cap = SBUF_BLOCK;
		return true;
	}
	if (b->cap == SBUF_BLOCK) {
		/* Growing out of a pool block: copy, give the block back. */
		p = mem_alloc(cap);
		if (!p)
			return false;
		memcpy(p, b->p, b->len);
		uint32_t len = b->len;
		sbuf_free(b);
		b->len = len;
	} else {
		p = mem_realloc(b->p, cap);
		if (!p)
			return false;
	}
	b->p = p;
	b->cap = (uint32_t)cap;
	return true;
}

void sbuf_drop(struct sbuf *b, size_t n)
{
	if (n >= b->len) {
		/* Empty: give the memory back, idle sessions hold no buffers. */
		sbuf_free(b);
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= (uint32_t)n;
}

/* At thread exit: the pool's blocks go back to the allocator. */
static void sbuf_pool_drain(void)
{
	while (sbuf_pool.n)
		mem_free(sbuf_pool.blk[--sbuf_pool.n]);
}

static void mark_dirty(struct session *s)
{
	if (!(s->flags & SF_DIRTY)) {
		s->flags |= SF_DIRTY;
		s->dirty_next = s->w->dirty;
		s->w->dirty = s;
	}
}

void session_writev(struct session *s, const struct iovec *iov, int iovcnt)
{
	struct sbuf *b = s->tls ? &s->pout : &s->out;
	size_t n = 0;

	if (session_dead(s) || (s->flags & SF_CLOSED_OUT) || sm_detached(s))
		return;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	/* With XEP-0198 the unacknowledged queue has its own bounds (sm.c) and
	 * a resumption resends all of it at once: it does not count here. */
	if ((size_t)s->out.len + s->pout.len + n > s->w->srv->cfg.max_output + sm_queued(s)) {
		/* It does not read: no stream error can reach it either. */
		session_close(s, "output limit (client not reading)");
		return;
	}
	if (!sbuf_reserve(b, n)) {
		session_close(s, "out of memory");
		return;
	}
	for (int i = 0; i < iovcnt; i++) {
		memcpy(b->p + b->len, iov[i].iov_base, iov[i].iov_len);
		b->len += (uint32_t)iov[i].iov_len;
	}
	stat_add(&s->w->st.bytes_out, n);
	mark_dirty(s);
}

void session_stanza(struct session *s, const struct iovec *iov, int iovcnt)
{
	/* The one door for stanzas to the client: stream management (sm.c)
	 * counts and keeps what passes here; nonzas and stream-level bytes
	 * use session_write. */
	if (s->sm) {
		sm_stanza(s, iov, iovcnt);
		return;
	}
	session_writev(s, iov, iovcnt);
	stat_add(&s->w->st.stanzas_out, 1);
}

void session_write(struct session *s, const void *p, size_t n)
{
	struct iovec iov = { (void *)p, n };
	session_writev(s, &iov, 1);
}

static void tls_io_setup(struct tls_io *io, struct session *s)
{
	io->in = NULL;
	io->in_len = 0;
	io->in_used = 0;
	io->out = (unsigned char *)s->out.p;
	io->out_cap = s->out.cap;
	io->out_len = s->out.len;
	io->eof = (s->flags & SF_EOF) != 0;
}

/* Encrypt what is waiting. Returns false if the session closed. */
static bool session_encrypt(struct session *s)
{
	while (s->pout.len) {
		struct tls_io io;
		size_t taken = 0;
		enum tls_status st;

		if (!sbuf_reserve(&s->out, (size_t)s->pout.len + 1024)) {
			session_close(s, "out of memory");
			return false;
		}
		tls_io_setup(&io, s);
		st = tls_conn_write(s->tls, &io, s->pout.p, s->pout.len, &taken);
		s->out.len = (uint32_t)io.out_len;
		sbuf_drop(&s->pout, taken);
		if (st == TLS_ERROR) {
			char why[160];
			session_close(s, tls_conn_error(s->tls, why, sizeof(why)));
			return false;
		}
		if (st != TLS_OK && st != TLS_WANT_WRITE)
			break;   /* WANT_READ: mid-handshake; the rest goes later */
	}
	return true;
}

void session_flush(struct session *s)
{
	if (session_dead(s) || sm_detached(s))
		return;
	if (s->tls && s->pout.len && tls_conn_established(s->tls) && !session_encrypt(s))
		return;
	while (s->out.len && !(s->flags & SF_WAIT_WRITE)) {
		struct iovec iov = { s->out.p, s->out.len };
		ssize_t n = net_sendv(s->w->loop, s->conn, &iov, 1);
		if (n == -EAGAIN) {
			s->flags |= SF_WAIT_WRITE;
			break;
		}
		if (n < 0) {
			session_close(s, "write failed");
			return;
		}
		sbuf_drop(&s->out, (size_t)n);
		if ((size_t)n < iov.iov_len)
			s->flags |= SF_WAIT_WRITE;
	}
	if (s->state == SS_CLOSING && !s->out.len && !s->pout.len)
		session_close(s, NULL);
}

void session_close_after_flush(struct session *s)
{
	if (session_dead(s))
		return;
	if (sm_detached(s)) {
		session_close(s, NULL);   /* no connection: nothing to flush */
		return;
	}
	s->state = SS_CLOSING;
	c2s_unbind(s);
	/* A peer that does not read gets a short grace, then the socket closes. */
	session_timer(s, 2000);
	mark_dirty(s);
}

void session_close(struct session *s, const char *why)
{
	struct worker *w = s->w;

	if (session_dead(s))
		return;
	/* XEP-0198: a resumable session outlives its connection (sm.c). */
	if (s->sm && sm_close(s))
		return;
	if (why)
		log_debug("session %u closed: %s", s->slot, why);
	c2s_unbind(s);
	wheel_del(&w->wheel, &s->timer);
	if (!sm_detached(s)) {
		net_close(w->loop, s->conn);
		stat_sub(&w->st.connections, 1);
	}
	s->conn.id = 0;    /* dead: freed at the end of the iteration */
	s->state = SS_CLOSING;
	s->dead_next = w->dead;
	w->dead = s;
}

static void session_free(struct session *s)
{
	struct worker *w = s->w;

	if (s->tls)
		tls_conn_free(s->tls);
	if (s->auth_state) {
		w->srv->hooks->auth.end(s->auth_state);
		mem_free(s->auth_state);
	}
	im_sess_free(s);
	sm_free(s);
	sbuf_free(&s->in);
	sbuf_free(&s->out);
	sbuf_free(&s->pout);
	mem_free(s->jid);
	w->slots[s->slot] = NULL;
	w->free_slots[w->nfree++] = s->slot;
	mem_free(s);
}

int session_start_tls(struct session *s)
{
	struct tls_server *srv = atomic_load_explicit(&s->w->srv->tls, memory_order_acquire);

	if (!srv)
		return -1;
	s->tls = tls_conn_server(srv);
	if (!s->tls)
		return -1;
	s->state = SS_TLS_HANDSHAKE;
	return 0;
}

/* Ciphertext from the network: decrypt and hand plaintext to c2s. */
static void session_tls_input(struct session *s, const uint8_t *p, size_t n)
{
	struct worker *w = s->w;
	struct tls_io io;

	for (;;) {
		size_t got = 0;
		enum tls_status st;
		bool was = tls_conn_established(s->tls);

		if (!sbuf_reserve(&s->out, 4096)) {
			session_close(s, "out of memory");
			return;
		}
		tls_io_setup(&io, s);
		io.in = p;
		io.in_len = n;
		st = tls_conn_read(s->tls, &io, w->plain, PLAIN_CAP, &got);
		p += io.in_used;
		n -= io.in_used;
		s->out.len = (uint32_t)io.out_len;
		if (s->out.len)
			mark_dirty(s);
		if (!was && tls_conn_established(s->tls)) {
			c2s_tls_established(s);
			if (session_dead(s))
				return;
		}
		switch (st) {
		case TLS_OK:
			c2s_input(s, w->plain, got);
			if (session_dead(s) || sm_detached(s))
				return;
			continue;
		case TLS_WANT_WRITE:
			continue;   /* out grows on the next round */
		case TLS_WANT_READ:
			return;
		case TLS_CLOSED:
			c2s_eof(s);
			return;
		case TLS_ERROR: {
			char why[160];
			session_close(s, tls_conn_error(s->tls, why, sizeof(why)));
			return;
		}
		}
	}
}

static void session_readable(struct session *s)
{
	struct worker *w = s->w;
	size_t budget = READ_BUDGET;

	while (!session_dead(s) && !sm_detached(s) && s->state != SS_CLOSING) {
		ssize_t n = net_recv(w->loop, s->conn, w->rx, RX_CAP);
		if (n == -EAGAIN)
			return;
		if (n == 0) {
			s->flags |= SF_EOF;
			if (s->tls)
				session_tls_input(s, w->rx, 0);
			if (!session_dead(s) && !sm_detached(s))
				c2s_eof(s);
			return;
		}
		if (n < 0) {
			session_close(s, "read failed");
			return;
		}
		stat_add(&w->st.bytes_in, (uint64_t)n);
		if (s->tls) {
			session_tls_input(s, w->rx, (size_t)n);
		} else {
			size_t used = c2s_input(s, w->rx, (size_t)n);
			/* <starttls/> mid-buffer: what follows is the handshake. */
			if (used < (size_t)n && !session_dead(s) && s->tls)
				session_tls_input(s, w->rx + used, (size_t)n - used);
		}
		if ((size_t)n < RX_CAP || budget <= (size_t)n)
			return;
		budget -= (size_t)n;
	}
	/* Closing: what the client still sends is not read any more. */
	if (!session_dead(s) && !sm_detached(s))
		net_read_enable(w->loop, s->conn, false);
}

/* ---- rings ----------------------------------------------------------------- */

static struct ring *ring_at(struct server *srv, unsigned from, unsigned to)
{
	return &srv->rings[from * (srv->nworkers + 1) + to];
}

static void wake_thread(struct server *srv, unsigned to)
{
	if (to == srv->nworkers) {
		uint64_t one = 1;
		ssize_t r = write(srv->ctl_efd, &one, sizeof(one));
		(void)r;
	} else {
		net_wake(srv->workers[to].loop);
	}
}

static bool ring_put(struct ring *r, uint16_t type, uint16_t flags, uint64_t arg,
		     const struct iovec *iov, int iovcnt, size_t len)
{
	uint8_t *d = ring_sp_reserve(r, type, flags, arg, (uint32_t)len);
	if (!d)
		return false;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(d, iov[i].iov_base, iov[i].iov_len);
		d += iov[i].iov_len;
	}
	return true;
}

void worker_post(struct worker *w, unsigned to, uint16_t type, uint16_t flags, uint64_t arg,
		 const struct iovec *iov, int iovcnt)
{
	struct ring *r = w->out[to];
	size_t len = 0;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	if (len <= ring_max_record(r) && !w->ovf_head[to] && ring_put(r, type, flags, arg, iov, iovcnt, len)) {
		w->out_pending[to] = true;
		return;
	}
	/* The ring is full (or this record waits behind others): keep it,
	 * in order, until the consumer catches up. */
	struct overflow *o = malloc(sizeof(*o) + len);
	if (!o) {
		log_err("ring overflow: out of memory, record of %zu bytes to %u lost", len, to);
		return;
	}
	o->next = NULL;
	o->type = type;
	o->flags = flags;
	o->len = (uint32_t)len;
	o->arg = arg;
	uint8_t *d = o->data;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(d, iov[i].iov_base, iov[i].iov_len);
		d += iov[i].iov_len;
	}
	if (w->ovf_tail[to])
		w->ovf_tail[to]->next = o;
	else
		w->ovf_head[to] = o;
	w->ovf_tail[to] = o;
	w->ovf_total += len;
}

static void rings_flush(struct worker *w)
{
	struct server *srv = w->srv;

	for (unsigned to = 0; to <= srv->nworkers; to++) {
		struct ring *r = w->out[to];
		if (!r)
			continue;
		while (w->ovf_head[to]) {
			struct overflow *o = w->ovf_head[to];
			struct iovec iov = { o->data, o->len };
			if (o->len > ring_max_record(r)) {
				log_err("record of %u bytes too large for a ring: dropped", o->len);
			} else if (!ring_put(r, o->type, o->flags, o->arg, &iov, 1, o->len)) {
				break;
			}
			w->ovf_head[to] = o->next;
			if (!o->next)
				w->ovf_tail[to] = NULL;
			w->ovf_total -= o->len;
			free(o);
			w->out_pending[to] = true;
		}
		if (w->out_pending[to]) {
			w->out_pending[to] = false;
			if (ring_sp_publish(r))
				wake_thread(srv, to);
		}
	}
}

/* IM records (router/im.h). */
static void rings_dispatch(struct worker *w, const struct ring_rec *rec)
{
	struct session *s = worker_session(w, rec->arg);

	if (!s)
		return;
	switch (rec->type) {
	case MSG_IM_DONE: {
		uint32_t pos;
		if (rec->len == sizeof(pos) && s->sm) {
			memcpy(&pos, rec->data, sizeof(pos));
			sm_done(s, pos);
		}
		break;
	}
	case MSG_IM_EV:
		if (s->im)
			im_event(s, rec->flags & ~RECF_MORE, rec->data, rec->len);
		break;
	case MSG_TO_SESSION: {
		struct iovec iov = { (void *)rec->data, rec->len };
		if (s->state == SS_CLOSING)
			break;
		if (s->im) {
			/* After the bind result if that still waits; no rules
			 * apply to the server's own answers. */
			struct im_peer p = { K_IQ, T_RESULT, NULL, 0, NULL, 0, NULL };
			im_deliver(s, &iov, 1, &p);
		} else {
			session_stanza(s, &iov, 1);
		}
		break;
	}
	default:
		break;
	}
}

/* Append a fragment of a control record to w->ctl_frag (a ring_rec
 * header first). Returns true when rec was the last fragment: the whole
 * record is in ctl_frag. The caller steps past rec either way. */
static bool ctl_fragment(struct worker *w, const struct ring_rec *rec)
{
	struct sbuf *b = &w->ctl_frag;

	if (!b->len) {
		struct ring_rec h = { 0, rec->type, (uint16_t)(rec->flags & ~RECF_MORE), rec->arg };
		if (!sbuf_reserve(b, sizeof(h) + rec->len)) {
			log_err("out of memory reassembling a control record: dropped");
			return false;
		}
		memcpy(b->p, &h, sizeof(h));
		b->len = sizeof(h);
	}
	if (!sbuf_reserve(b, rec->len)) {
		log_err("out of memory reassembling a control record: dropped");
		sbuf_drop(b, b->len);
		return false;
	}
	memcpy(b->p + b->len, rec->data, rec->len);
	b->len += rec->len;
	((struct ring_rec *)b->p)->len = b->len - (uint32_t)sizeof(struct ring_rec);
	return !(rec->flags & RECF_MORE);
}

static void rings_drain(struct worker *w)
{
	struct server *srv = w->srv;

	for (unsigned from = 0; from <= srv->nworkers; from++) {
		struct ring *r = w->in[from];
		const struct ring_rec *rec;
		unsigned n = 0;

		if (!r)
			continue;
		while ((rec = ring_sc_peek(r)) != NULL) {
			struct session *s;
			if (from == srv->nworkers && ((rec->flags & RECF_MORE) || w->ctl_frag.len)) {
				/* A control record in fragments: collect, then handle
				 * the whole as one record. */
				if (ctl_fragment(w, rec)) {
					rings_dispatch(w, (const struct ring_rec *)w->ctl_frag.p);
					sbuf_drop(&w->ctl_frag, w->ctl_frag.len);
				}
				ring_sc_next(r, rec);
				if (++n == 64) {
					ring_sc_release(r);
					n = 0;
				}
				continue;
			}
			switch (rec->type) {
			case MSG_STANZA:
				deliver_record(w, rec);
				break;
			case MSG_KICK:
				s = worker_session(w, rec->arg);
				if (s) {
					char cond[64];
					size_t l = rec->len < sizeof(cond) - 1 ? rec->len : sizeof(cond) - 1;
					memcpy(cond, rec->data, l);
					cond[l] = '\0';
					c2s_kick(s, cond);
				}
				break;
			case MSG_AUTH_ANS:
				s = worker_session(w, rec->arg);
				if (s)
					c2s_auth_answer(s, rec->data, rec->len);
				break;
			case MSG_SHUTDOWN:
				atomic_store_explicit(&w->stop, true, memory_order_relaxed);
				break;
			case MSG_SM_RESUME:
			case MSG_SM_MOVE:
				sm_record(w, rec);
				break;
			default:
				rings_dispatch(w, rec);
				break;
			}
			ring_sc_next(r, rec);
			if (++n == 64) {
				/* Give space back in bursts, not per record. */
				ring_sc_release(r);
				n = 0;
			}
		}
		ring_sc_release(r);
	}
}

/* ---- the loop -------------------------------------------------------------- */

struct session *router_session_open(struct worker *w, struct net_conn conn, const struct net_addr *peer,
				    unsigned listener)
{
	struct session *s = session_new(w, conn, peer, listener);

	if (s)
		c2s_accepted(s);
	return s;
}

void router_session_bytes(struct session *s, const uint8_t *p, size_t n)
{
	if (session_dead(s) || sm_detached(s))
		return;
	if (s->tls) {
		session_tls_input(s, p, n);
	} else {
		size_t used = c2s_input(s, p, n);
		if (used < n && !session_dead(s) && s->tls)
			session_tls_input(s, p + used, n - used);
	}
}

struct session *session_new_detached(struct worker *w, const struct net_addr *peer)
{
	struct net_addr none = { 0 };
	struct session *s = session_new(w, (struct net_conn){ SM_CONN_DETACHED }, peer ? peer : &none, 0);

	if (s) {
		/* Not a connection: session_new counted one. */
		stat_sub(&w->st.connections, 1);
		stat_sub(&w->st.accepted, 1);
		s->state = SS_OPEN;
	}
	return s;
}

static void accept_one(struct worker *w, const struct net_event *ev)
{
	struct session *s = session_new(w, ev->conn, &ev->peer, ev->listener);

	if (!s) {
		net_close(w->loop, ev->conn);
		log_warn("accept: out of memory");
		return;
	}
	if (net_attach(w->loop, ev->conn, s) < 0) {
		session_close(s, "attach failed");
		return;
	}
	c2s_accepted(s);
}

static void flush_dirty(struct worker *w)
{
	struct session *s = w->dirty;

	w->dirty = NULL;
	while (s) {
		struct session *next = s->dirty_next;
		s->flags &= (uint16_t)~SF_DIRTY;
		s->dirty_next = NULL;
		session_flush(s);
		s = next;
	}
}

static void free_dead(struct worker *w)
{
	/* Sessions closed this iteration: nothing refers to them any more
	 * (net_close cancelled their pending events, and the flush list was
	 * emptied before this runs). */
	while (w->dead) {
		struct session *s = w->dead;
		w->dead = s->dead_next;
		session_free(s);
	}
}

void router_worker_step(struct worker *w)
{
	rings_drain(w);
	wheel_expire(&w->wheel, net_now_ms());
	flush_dirty(w);
	rings_flush(w);
	free_dead(w);
	route_thread_quiescent();
}

static void worker_begin_shutdown(struct worker *w)
{
	w->stopping = true;
	w->stop_deadline = net_now_ms() + 5000;
	for (uint32_t i = 0; i < w->nslots; i++) {
		struct session *s = w->slots[i];
		if (s && !session_dead(s))
			c2s_stream_error(s, "system-shutdown");
	}
}

static bool worker_has_sessions(const struct worker *w)
{
	for (uint32_t i = 0; i < w->nslots; i++)
		if (w->slots[i])
			return true;
	return false;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct net_event ev[MAX_EVENTS];
	char tag[16];

	snprintf(tag, sizeof(tag), "w%u", w->id);
	log_set_thread_tag(tag);
	route_thread_register();
	if (w->srv->cfg.pin_workers) {
		/* Worker i on the i-th CPU this process may use (taskset, cgroup
		 * cpusets), wrapping around when there are more workers. */
		cpu_set_t allowed, set;
		int cpu = -1;
		if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0 && CPU_COUNT(&allowed) > 0) {
			int want = (int)(w->id % (unsigned)CPU_COUNT(&allowed));
			for (int c = 0, seen = 0; c < CPU_SETSIZE; c++)
				if (CPU_ISSET(c, &allowed) && seen++ == want) {
					cpu = c;
					break;
				}
		}
		CPU_ZERO(&set);
		if (cpu >= 0)
			CPU_SET(cpu, &set);
		if (cpu < 0 || pthread_setaffinity_np(pthread_self(), sizeof(set), &set))
			log_warn("could not pin worker %u to a CPU", w->id);
	}
	for (;;) {
		uint64_t now = net_now_ms();
		int timeout = wheel_next_timeout(&w->wheel, now);
		bool paused = w->ovf_total > OVERFLOW_PAUSE;

		if (atomic_load_explicit(&w->stop, memory_order_relaxed) && !w->stopping)
			worker_begin_shutdown(w);
		if (w->stopping) {
			if (!worker_has_sessions(w) || now >= w->stop_deadline)
				break;
			if (timeout < 0 || timeout > 100)
				timeout = 100;
		}
		if (paused || w->dirty)
			timeout = 0;

		route_thread_offline();
		int n = net_poll(w->loop, ev, MAX_EVENTS, timeout);
		route_thread_online();
		if (n < 0 && n != -EINTR)
			log_err("poll: %s", strerror(-n));
		for (int i = 0; i < n; i++) {
			switch (ev[i].type) {
			case NET_EV_ACCEPTED:
				if (w->stopping)
					net_close(w->loop, ev[i].conn);
				else
					accept_one(w, &ev[i]);
				break;
			case NET_EV_READABLE:
				if (!paused)
					session_readable(ev[i].udata);
				break;
			case NET_EV_WRITABLE: {
				struct session *s = ev[i].udata;
				s->flags &= (uint16_t)~SF_WAIT_WRITE;
				session_flush(s);
				break;
			}
			default:
				break;
			}
		}
		router_worker_step(w);
	}

	/* Whatever is left after the grace period is closed hard. */
	for (uint32_t i = 0; i < w->nslots; i++) {
		struct session *s = w->slots[i];
		if (s)
			session_close(s, NULL);
	}
	free_dead(w);
	rings_flush(w);
	sbuf_pool_drain();
	route_thread_unregister();
	return NULL;
}

/* ---- the server ------------------------------------------------------------ */

static void ctl_state_free(struct server *srv);

static unsigned online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1u;
}

static int worker_setup(struct server *srv, struct worker *w, unsigned id, char *err, size_t errlen)
{
	unsigned n = srv->nworkers;
	uint32_t toks = xml_view_storage_tokens(&srv->cfg.xml);
	uint16_t nscap = (uint16_t)(2 + XML_NSCTX_MAX + srv->cfg.xml.max_ns + 8);

	w->id = id;
	w->srv = srv;
	/* The transport by name (kernel, dpdk): nothing else here knows which. */
	const struct net_ops *ops = net_backend(srv->cfg.transport);
	if (!ops) {
		snprintf(err, errlen, "transport \"%s\" is not in this build", srv->cfg.transport);
		return -1;
	}
	w->loop = net_loop_new(ops, id, 1024);
	if (!w->loop) {
		snprintf(err, errlen, "worker %u: cannot create its event loop: %s", id, strerror(errno));
		return -1;
	}
	for (unsigned i = 0; i < srv->cfg.nlistener; i++) {
		struct net_addr a;
		int r = net_addr_parse(srv->cfg.listener[i].addr, &a);
		if (r < 0) {
			snprintf(err, errlen, "listener %s: bad address", srv->cfg.listener[i].addr);
			return -1;
		}
		/* Port 0 (tests): the first worker picks, the others follow. */
		if (a.port == 0 && id > 0) {
			int p = net_listener_port(srv->workers[0].loop, (int)i);
			if (p > 0)
				a.port = (uint16_t)p;
		}
		r = net_listen_addr(w->loop, &a, 1024);
		if (r < 0) {
			snprintf(err, errlen, "listen on %s: %s", srv->cfg.listener[i].addr, strerror(-r));
			return -1;
		}
	}
	w->in = calloc(n + 1, sizeof(*w->in));
	w->out = calloc(n + 1, sizeof(*w->out));
	w->ovf_head = calloc(n + 1, sizeof(*w->ovf_head));
	w->ovf_tail = calloc(n + 1, sizeof(*w->ovf_tail));
	w->out_pending = calloc(n + 1, sizeof(*w->out_pending));
	w->rx = malloc(RX_CAP);
	w->plain = malloc(PLAIN_CAP);
	w->scratch_cap = 128u * 1024u;
	w->scratch = malloc(w->scratch_cap);
	w->tok = malloc((size_t)toks * sizeof(*w->tok));
	w->ns = malloc(nscap * sizeof(*w->ns));
	w->scope = malloc(nscap * sizeof(*w->scope));
	if (!w->in || !w->out || !w->ovf_head || !w->ovf_tail || !w->out_pending || !w->rx || !w->plain ||
	    !w->scratch || !w->tok || !w->ns || !w->scope) {
		snprintf(err, errlen, "worker %u: out of memory", id);
		return -1;
	}
	for (unsigned j = 0; j <= n; j++) {
		if (j != id) {
			w->in[j] = ring_at(srv, j, id);
			w->out[j] = ring_at(srv, id, j);
		}
	}
	xml_view_init(&w->view, &srv->cfg.xml, w->tok, toks, w->ns, nscap, w->scope, nscap);
	wheel_init(&w->wheel, net_now_ms());
	wheel_handle(&w->wheel, TIMER_SESSION, session_timer_fired);
	return 0;
}

struct server *server_new(const struct server_config *cfg, struct tls_server *tls,
			  const struct router_hooks *hooks, char *err, size_t errlen)
{
	struct server *srv = calloc(1, sizeof(*srv));
	unsigned n;

	if (!srv) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	simd_init();
	srv->cfg = *cfg;
	srv->hooks = hooks;
	srv->ctl_efd = -1;
	if (cfg->nvhost == 0) {
		snprintf(err, errlen, "no virtual host configured");
		goto fail;
	}
	for (unsigned i = 0; i < cfg->nvhost; i++)
		srv->domain_len[i] = (uint16_t)strlen(cfg->vhost[i].domain);
	n = cfg->workers ? cfg->workers : online_cpus();
	if (n > ROUTER_MAX_WORKERS)
		n = ROUTER_MAX_WORKERS;
	srv->nworkers = n;
	if (tls)
		tls_server_ref(tls);
	atomic_store_explicit(&srv->tls, tls, memory_order_relaxed);
	srv->routes = route_table_new(1024);
	srv->ctl_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	/* A ring holds records up to half its size: the largest stanza must fit. */
	srv->ring_bytes = 256u * 1024u;
	while (srv->ring_bytes / 2 < (size_t)cfg->xml.max_stanza + 1024)
		srv->ring_bytes *= 2;
	srv->rings = calloc((size_t)(n + 1) * (n + 1), sizeof(*srv->rings));
	srv->ring_mem = aligned_alloc(64, (size_t)(n + 1) * (n + 1) * srv->ring_bytes);
	srv->workers = calloc(n, sizeof(*srv->workers));
	if (!srv->routes || srv->ctl_efd < 0 || !srv->rings || !srv->ring_mem || !srv->workers) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (unsigned i = 0; i <= n; i++)
		for (unsigned j = 0; j <= n; j++)
			if (i != j)
				ring_init(ring_at(srv, i, j), srv->ring_mem + ((size_t)i * (n + 1) + j) * srv->ring_bytes,
					  srv->ring_bytes);
	for (unsigned i = 0; i < n; i++)
		if (worker_setup(srv, &srv->workers[i], i, err, errlen))
			goto fail;
	return srv;
fail:
	server_free(srv);
	return NULL;
}

int server_start(struct server *srv)
{
	for (unsigned i = 0; i < srv->nworkers; i++) {
		int r = pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]);
		if (r) {
			log_err("cannot start worker %u: %s", i, strerror(r));
			for (unsigned j = 0; j < i; j++)
				atomic_store_explicit(&srv->workers[j].stop, true, memory_order_relaxed);
			for (unsigned j = 0; j < i; j++) {
				net_wake(srv->workers[j].loop);
				pthread_join(srv->workers[j].thread, NULL);
			}
			return -1;
		}
	}
	srv->started = true;
	return 0;
}

void server_request_shutdown(struct server *srv)
{
	atomic_store_explicit(&srv->shutdown_req, true, memory_order_relaxed);
}

bool server_shutdown_requested(struct server *srv)
{
	return atomic_load_explicit(&srv->shutdown_req, memory_order_relaxed);
}

void server_shutdown(struct server *srv, uint32_t grace_ms)
{
	if (!srv->started)
		return;
	for (unsigned i = 0; i < srv->nworkers; i++) {
		srv->workers[i].stop_deadline = 0;
		atomic_store_explicit(&srv->workers[i].stop, true, memory_order_relaxed);
		net_wake(srv->workers[i].loop);
	}
	(void)grace_ms;   /* each worker allows itself 5 s to flush */
	for (unsigned i = 0; i < srv->nworkers; i++)
		pthread_join(srv->workers[i].thread, NULL);
	srv->started = false;
}

void server_free(struct server *srv)
{
	if (!srv)
		return;
	if (srv->started)
		server_shutdown(srv, 0);
	for (unsigned i = 0; srv->workers && i < srv->nworkers; i++) {
		struct worker *w = &srv->workers[i];
		for (unsigned j = 0; w->ovf_head && j <= srv->nworkers; j++) {
			while (w->ovf_head[j]) {
				struct overflow *o = w->ovf_head[j];
				w->ovf_head[j] = o->next;
				free(o);
			}
		}
		net_loop_free(w->loop);
		free(w->slots);
		free(w->free_slots);
		free(w->gens);
		free(w->in);
		free(w->out);
		free(w->ovf_head);
		free(w->ovf_tail);
		free(w->out_pending);
		free(w->rx);
		free(w->plain);
		free(w->scratch);
		free(w->tok);
		free(w->ns);
		free(w->scope);
		sbuf_drop(&w->ctl_frag, w->ctl_frag.len);
	}
	free(srv->workers);
	ctl_state_free(srv);
	sbuf_pool_drain();   /* a test thread that drove sessions itself */
	free(srv->rings);
	free(srv->ring_mem);
	if (srv->routes)
		route_table_free(srv->routes);
	if (srv->ctl_efd >= 0)
		close(srv->ctl_efd);
	struct tls_server *t = atomic_load_explicit(&srv->tls, memory_order_relaxed);
	if (t)
		tls_server_unref(t);
	free(srv);
}

void server_set_tls(struct server *srv, struct tls_server *tls)
{
	struct tls_server *old;

	tls_server_ref(tls);
	old = atomic_exchange_explicit(&srv->tls, tls, memory_order_acq_rel);
	/* Workers read the pointer only to create a connection, which takes
	 * its own reference; after every worker's next quiescent state no
	 * one can be between the load and that reference. */
	route_thread_offline();
	route_synchronize();
	route_thread_online();
	if (old)
		tls_server_unref(old);
}

int server_listener_port(struct server *srv, unsigned listener)
{
	return net_listener_port(srv->workers[0].loop, (int)listener);
}

/* ---- the control thread ---------------------------------------------------- */

void server_ctl_thread_init(struct server *srv)
{
	(void)srv;
	log_set_thread_tag("ctl");
	route_thread_register();
}

void server_ctl_thread_exit(struct server *srv)
{
	(void)srv;
	route_thread_unregister();
}

int server_ctl_fd(struct server *srv)
{
	return srv->ctl_efd;
}

/* ---- the control thread's side of IM (struct im_out) ---------------------- */

/* The control thread's own state for im_out: a view to read the stanzas it
 * routes, and the table it hands the hook. */
struct ctl_state {
	struct im_out out;
	struct xml_view view;
	struct xml_token *tok;
	struct xml_ns *ns;
	uint16_t *scope;
	struct jid to;
	char jid[JID_MAX + 1];
	bool *pending;                 /* per worker: records reserved, not yet published */
	/* XEP-0198 completions of this burst (MSGF_IM_CONFIRM requests),
	 * posted after im.flush: handle, position. */
	struct ctl_done {
		uint64_t handle;
		uint32_t pos;
	} *done;
	size_t ndone, done_cap;
};

/* Post one record to worker wk from the control thread, in fragments when
 * it is larger than a ring record (RECF_MORE). The control thread is the
 * only producer of its rings: when one is full it publishes, wakes the
 * worker and waits (workers never block, so the wait ends). */
static void ctl_post(struct server *srv, unsigned wk, uint16_t type, uint16_t flags, uint64_t arg,
		     const struct iovec *iov, int iovcnt)
{
	struct ring *out = ring_at(srv, srv->nworkers, wk);
	size_t max = ring_max_record(out), total = 0;
	int i = 0;
	size_t ioff = 0;

	for (int k = 0; k < iovcnt; k++)
		total += iov[k].iov_len;
	do {
		size_t n = total < max ? total : max;
		uint16_t f = (uint16_t)(flags | (total > n ? RECF_MORE : 0));
		uint8_t *d;
		while (!(d = ring_sp_reserve(out, type, f, arg, (uint32_t)n))) {
			if (ring_sp_publish(out))
				net_wake(srv->workers[wk].loop);
			sched_yield();
		}
		for (size_t left = n; left;) {
			size_t c = iov[i].iov_len - ioff;
			if (c > left)
				c = left;
			memcpy(d, (const uint8_t *)iov[i].iov_base + ioff, c);
			d += c;
			left -= c;
			ioff += c;
			if (ioff == iov[i].iov_len) {
				i++;
				ioff = 0;
			}
		}
		total -= n;
	} while (total);
	srv->ctl->pending[wk] = true;
}

static void ctl_publish(struct server *srv)
{
	for (unsigned i = 0; i < srv->nworkers; i++) {
		if (!srv->ctl->pending[i])
			continue;
		srv->ctl->pending[i] = false;
		if (ring_sp_publish(ring_at(srv, srv->nworkers, i)))
			net_wake(srv->workers[i].loop);
	}
}

static void im_out_to_session(void *arg, uint64_t handle, const void *stanza, size_t len)
{
	struct server *srv = arg;
	struct iovec iov = { (void *)stanza, len };

	if (handle && handle_worker(handle) < srv->nworkers)
		ctl_post(srv, handle_worker(handle), MSG_TO_SESSION, 0, handle, &iov, 1);
}

static void im_out_event(void *arg, uint64_t handle, unsigned ev, const void *payload, size_t len)
{
	struct server *srv = arg;
	struct iovec iov = { (void *)payload, len };

	if (handle && handle_worker(handle) < srv->nworkers)
		ctl_post(srv, handle_worker(handle), MSG_IM_EV, (uint16_t)ev, handle, &iov, 1);
}

/* The handles of a bare JID's sessions that `how` picks (0: every bound
 * one), copied out of the snapshot. */
static unsigned ctl_handles(struct server *srv, const char *bare, size_t len, int how, bool nonneg, uint64_t *out)
{
	const struct route_snap *snap = len && len <= ROUTE_BARE_MAX ? route_lookup(srv->routes, bare, len) : NULL;
	unsigned n = 0;

	if (!snap)
		return 0;
	for (unsigned i = 0; i < snap->nres && n < ROUTE_MAX_RESOURCES; i++) {
		const struct route_res *r = &snap->res[i];
		if (how && !route_picks(snap, r, (enum route_pick)how))
			continue;
		if (nonneg && r->priority < 0)
			continue;
		out[n++] = r->handle;
	}
	return n;
}

static unsigned im_out_user_event(void *arg, const char *bare, size_t bare_len, unsigned ev, const void *payload,
				  size_t len)
{
	struct server *srv = arg;
	uint64_t h[ROUTE_MAX_RESOURCES];
	unsigned n = ctl_handles(srv, bare, bare_len, 0, false, h);

	for (unsigned i = 0; i < n; i++)
		im_out_event(srv, h[i], ev, payload, len);
	return n;
}

static unsigned im_out_available(void *arg, const char *bare, size_t bare_len, bool nonneg)
{
	struct server *srv = arg;
	uint64_t h[ROUTE_MAX_RESOURCES];

	return ctl_handles(srv, bare, bare_len, ROUTE_PICK_ALL, nonneg, h);
}

/* As a worker delivers from a local sender (RFC 6120 10, RFC 6121 8.5),
 * without errors: the caller decides what a 0 means. */
static unsigned im_out_route(void *arg, const void *stanza, size_t len)
{
	struct server *srv = arg;
	struct ctl_state *c = srv->ctl;
	struct xml_view *v = &c->view;
	uint64_t h[ROUTE_MAX_RESOURCES];
	unsigned n = 0;
	char tb[16];

	if (xml_view_build(v, NULL, stanza, len) || v->info.to == XML_NO_TOK || v->tok[v->info.to].b > JID_MAX)
		return 0;
	struct xml_slice tv = xml_tok_value(v, v->info.to, c->jid);
	if (jid_parse(&c->to, tv.ptr, tv.len, 0) != JID_OK || c->to.local_len == 0)
		return 0;
	struct xml_slice name = xml_tok_local(v, 0);
	bool msg = xml_slice_eq(name, "message"), pres = xml_slice_eq(name, "presence");
	struct xml_slice type = { "", 0 };
	if (v->info.type != XML_NO_TOK && v->tok[v->info.type].b < sizeof(tb))
		type = xml_tok_value(v, v->info.type, tb);
	bool headline = xml_slice_eq(type, "headline"), groupchat = xml_slice_eq(type, "groupchat");
	bool fallback = msg && !groupchat && !xml_slice_eq(type, "error");
	struct jid_slice bare = jid_bare(&c->to);
	const struct route_snap *snap = route_lookup(srv->routes, bare.ptr, bare.len);
	if (!snap)
		return 0;
	if (c->to.resource_len) {
		struct jid_slice res = jid_resource(&c->to);
		const struct route_res *r = route_find(snap, res.ptr, res.len);
		if (r)
			h[n++] = r->handle;
		else if (!fallback)
			return 0;
	}
	if (!n) {
		if (msg && !groupchat)
			n = ctl_handles(srv, bare.ptr, bare.len, headline ? ROUTE_PICK_AVAILABLE : ROUTE_PICK_BEST,
					false, h);
		else if (pres)
			n = ctl_handles(srv, bare.ptr, bare.len, ROUTE_PICK_ALL, false, h);
	}
	struct iovec iov = { (void *)stanza, len };
	for (unsigned i = 0; i < n; i++)
		ctl_post(srv, handle_worker(h[i]), MSG_STANZA, fallback ? MSGF_BARE_FALLBACK : 0, h[i], &iov, 1);
	return n;
}

static size_t im_out_kick(void *arg, const char *jid, size_t len, const char *condition)
{
	return server_kick(arg, jid, len, condition);
}

static void ctl_state_free(struct server *srv)
{
	if (srv->ctl)
		free(srv->ctl->done);
	free(srv->ctl);
	srv->ctl = NULL;
}

/* Lazily, on the control thread: the state im.serve needs. */
static struct ctl_state *ctl_state(struct server *srv)
{
	if (srv->ctl)
		return srv->ctl;
	uint32_t toks = xml_view_storage_tokens(&srv->cfg.xml);
	uint16_t nscap = (uint16_t)(2 + XML_NSCTX_MAX + srv->cfg.xml.max_ns + 8);
	struct ctl_state *c = calloc(1, sizeof(*c) + (size_t)toks * sizeof(struct xml_token) +
					    (size_t)nscap * (sizeof(struct xml_ns) + sizeof(uint16_t)) +
					    srv->nworkers * sizeof(bool) + 16);
	if (!c)
		return NULL;
	c->tok = (struct xml_token *)(c + 1);
	c->ns = (struct xml_ns *)(c->tok + toks);
	c->scope = (uint16_t *)(c->ns + nscap);
	c->pending = (bool *)(c->scope + nscap);
	xml_view_init(&c->view, &srv->cfg.xml, c->tok, toks, c->ns, nscap, c->scope, nscap);
	c->out.srv = srv;
	c->out.to_session = im_out_to_session;
	c->out.route = im_out_route;
	c->out.event = im_out_event;
	c->out.user_event = im_out_user_event;
	c->out.available = im_out_available;
	c->out.kick = im_out_kick;
	srv->ctl = c;
	return c;
}

const struct im_out *server_ctl_im_out(struct server *srv)
{
	struct ctl_state *c = ctl_state(srv);
	return c ? &c->out : NULL;
}

void server_ctl_publish(struct server *srv)
{
	if (srv->ctl)
		ctl_publish(srv);
}

/* One MSG_IM_REQ: the header, the JID (given to the hook NUL-terminated),
 * the stanza. */
static void ctl_im_request(struct server *srv, const struct ring_rec *rec)
{
	struct ctl_state *c = ctl_state(srv);
	struct im_req hdr;

	if (!c || rec->len < sizeof(hdr))
		return;
	memcpy(&hdr, rec->data, sizeof(hdr));
	if (sizeof(hdr) + (size_t)hdr.jid_len + hdr.len > rec->len || hdr.jid_len > JID_MAX) {
		log_err("malformed IM request dropped");
		return;
	}
	char jid[JID_MAX + 1];
	memcpy(jid, rec->data + sizeof(hdr), hdr.jid_len);
	jid[hdr.jid_len] = '\0';
	srv->hooks->im.serve(srv->hooks->im.arg, rec->arg, &hdr, jid,
			     (const char *)rec->data + sizeof(hdr) + hdr.jid_len, &c->out);
}

/* A MSGF_IM_CONFIRM request was served: its completion goes out after
 * the burst's flush (router/hooks.h). */
static void ctl_done_add(struct server *srv, const struct ring_rec *rec)
{
	struct ctl_state *c = ctl_state(srv);
	struct im_req hdr;

	if (!c || rec->len < sizeof(hdr) || !rec->arg || handle_worker(rec->arg) >= srv->nworkers)
		return;
	memcpy(&hdr, rec->data, sizeof(hdr));
	if (c->ndone == c->done_cap) {
		size_t cap = c->done_cap ? c->done_cap * 2 : 64;
		struct ctl_done *d = realloc(c->done, cap * sizeof(*d));
		if (!d) {
			/* Later than the flush is never early: post it now. */
			if (srv->hooks->im.flush)
				srv->hooks->im.flush(srv->hooks->im.arg, &c->out);
			struct iovec iov = { &hdr.sm_h, sizeof(hdr.sm_h) };
			ctl_post(srv, handle_worker(rec->arg), MSG_IM_DONE, 0, rec->arg, &iov, 1);
			return;
		}
		c->done = d;
		c->done_cap = cap;
	}
	c->done[c->ndone].handle = rec->arg;
	c->done[c->ndone].pos = hdr.sm_h;
	c->ndone++;
}

/* End of a burst: the hook commits what it batched, then the completions
 * that acknowledge it go out. */
static void ctl_burst_end(struct server *srv)
{
	struct ctl_state *c = srv->ctl;

	if (!c)
		return;
	if (srv->hooks->im.flush)
		srv->hooks->im.flush(srv->hooks->im.arg, &c->out);
	for (size_t i = 0; i < c->ndone; i++) {
		struct iovec iov = { &c->done[i].pos, sizeof(c->done[i].pos) };
		ctl_post(srv, handle_worker(c->done[i].handle), MSG_IM_DONE, 0, c->done[i].handle, &iov, 1);
	}
	c->ndone = 0;
	ctl_publish(srv);
}

size_t server_ctl_process(struct server *srv)
{
	unsigned n = srv->nworkers;
	uint8_t *ans = malloc(AUTH_ANSWER_MAX);
	size_t served = 0;
	uint64_t junk;
	ssize_t r = read(srv->ctl_efd, &junk, sizeof(junk));

	(void)r;
	if (!ans)
		return 0;
	for (unsigned i = 0; i < n; i++) {
		struct ring *in = ring_at(srv, i, n);
		struct ring *out = ring_at(srv, n, i);
		const struct ring_rec *rec;
		bool posted = false;

		while ((rec = ring_sc_peek(in)) != NULL) {
			if (rec->type == MSG_AUTH_REQ && rec->len >= sizeof(struct net_addr)) {
				size_t alen = srv->hooks->auth.serve(rec->data + sizeof(struct net_addr),
								     rec->len - sizeof(struct net_addr),
								     rec->data, sizeof(struct net_addr),
								     ans, AUTH_ANSWER_MAX);
				/* The control thread is the only producer of this
				 * ring; if it is full, wait for the worker. */
				uint8_t *d;
				while (!(d = ring_sp_reserve(out, MSG_AUTH_ANS, 0, rec->arg, (uint32_t)alen))) {
					ring_sp_publish(out);
					net_wake(srv->workers[i].loop);
					sched_yield();
				}
				memcpy(d, ans, alen);
				posted = true;
				served++;
			} else if (rec->type == MSG_IM_REQ) {
				if (srv->hooks->im.serve)
					ctl_im_request(srv, rec);
				if (rec->flags & MSGF_IM_CONFIRM)
					ctl_done_add(srv, rec);
				served++;
			}
			ring_sc_next(in, rec);
		}
		ring_sc_release(in);
		if (posted && ring_sp_publish(out))
			net_wake(srv->workers[i].loop);
		if (srv->ctl)
			ctl_publish(srv);
	}
	ctl_burst_end(srv);
	free(ans);
	route_thread_quiescent();
	return served;
}

/* ---- administration -------------------------------------------------------- */

unsigned server_stats(struct server *srv, unsigned i, struct server_worker_stats *o)
{
	if (i < srv->nworkers) {
		struct worker_stats *st = &srv->workers[i].st;
		o->connections = atomic_load_explicit(&st->connections, memory_order_relaxed);
		o->sessions = atomic_load_explicit(&st->sessions, memory_order_relaxed);
		o->accepted = atomic_load_explicit(&st->accepted, memory_order_relaxed);
		o->stanzas_in = atomic_load_explicit(&st->stanzas_in, memory_order_relaxed);
		o->stanzas_out = atomic_load_explicit(&st->stanzas_out, memory_order_relaxed);
		o->bytes_in = atomic_load_explicit(&st->bytes_in, memory_order_relaxed);
		o->bytes_out = atomic_load_explicit(&st->bytes_out, memory_order_relaxed);
		o->stream_errors = atomic_load_explicit(&st->stream_errors, memory_order_relaxed);
		o->auth_failures = atomic_load_explicit(&st->auth_failures, memory_order_relaxed);
	}
	return srv->nworkers;
}

struct sessions_walk {
	void (*cb)(void *arg, const struct server_session_info *si);
	void *arg;
	size_t n;
	char buf[ROUTE_BARE_MAX + ROUTE_RESOURCE_MAX + 2];
};

static int sessions_visit(const struct route_snap *snap, void *arg)
{
	struct sessions_walk *sw = arg;

	for (unsigned i = 0; i < snap->nres; i++) {
		const struct route_res *r = &snap->res[i];
		struct server_session_info si;
		memcpy(sw->buf, route_snap_bare(snap), snap->bare_len);
		sw->buf[snap->bare_len] = '/';
		memcpy(sw->buf + snap->bare_len + 1, route_res_name(snap, r), r->len);
		si.jid = sw->buf;
		si.jid_len = (size_t)snap->bare_len + 1 + r->len;
		sw->buf[si.jid_len] = '\0';
		si.worker = handle_worker(r->handle);
		si.priority = r->priority;
		si.available = r->available;
		sw->cb(sw->arg, &si);
		sw->n++;
	}
	return 0;
}

size_t server_sessions(struct server *srv, void (*cb)(void *arg, const struct server_session_info *si), void *arg)
{
	struct sessions_walk *sw = malloc(sizeof(*sw));
	size_t n;

	if (!sw)
		return 0;
	sw->cb = cb;
	sw->arg = arg;
	sw->n = 0;
	route_foreach(srv->routes, sessions_visit, sw);
	n = sw->n;
	free(sw);
	route_thread_quiescent();
	return n;
}

size_t server_kick(struct server *srv, const char *jid, size_t len, const char *condition)
{
	const char *slash = memchr(jid, '/', len);
	size_t bare_len = slash ? (size_t)(slash - jid) : len;
	const struct route_snap *snap = route_lookup(srv->routes, jid, bare_len);
	uint64_t handles[ROUTE_MAX_RESOURCES];
	unsigned nh = 0;
	unsigned n = srv->nworkers;
	size_t told = 0;

	if (snap) {
		for (unsigned i = 0; i < snap->nres && nh < ROUTE_MAX_RESOURCES; i++) {
			const struct route_res *r = &snap->res[i];
			if (slash && !(r->len == len - bare_len - 1 &&
				       !memcmp(route_res_name(snap, r), slash + 1, r->len)))
				continue;
			handles[nh++] = r->handle;
		}
	}
	route_thread_quiescent();
	for (unsigned i = 0; i < nh; i++) {
		unsigned wk = handle_worker(handles[i]);
		struct ring *out = ring_at(srv, n, wk);
		size_t cl = strlen(condition);
		uint8_t *d = ring_sp_reserve(out, MSG_KICK, 0, handles[i], (uint32_t)cl);
		if (!d)
			continue;
		memcpy(d, condition, cl);
		ring_sp_publish(out);
		net_wake(srv->workers[wk].loop);
		told++;
	}
	return told;
}
