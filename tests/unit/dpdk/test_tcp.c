/* Unit tests for net/dpdk/tcp.h: two stacks joined by an in-memory wire
 * (programmable loss, reordering, duplication and delay, seeded PRNG) and
 * single stacks fed hand-built segments. Time is simulated: every test
 * drives the clock, so nothing sleeps and runs are deterministic. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <arpa/inet.h>
#include <cmocka.h>

#include "net/dpdk/tcp.h"

#define IP_A 0x0100000au   /* 10.0.0.1 in network order on little-endian */
#define IP_B 0x0200000au
#define PORT_B 5222

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10

/* ---- PRNG -------------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

/* ---- the wire ---------------------------------------------------------- */

struct pkt {
	uint64_t at;
	uint32_t src, dst;
	uint32_t len;
	uint32_t id;
	uint8_t  b[1600];
};

struct wire;
struct ep {
	struct tcp_stack *st;
	uint32_t ip;
	struct wire *w;
};

struct wire {
	struct pkt *q;
	uint32_t n, cap;
	uint64_t now;
	uint32_t delay_ms;        /* one way */
	uint32_t jitter_ms;       /* extra random delay: reorders */
	uint32_t loss_pct, dup_pct;
	bool (*drop)(struct wire *w, const struct pkt *p);   /* targeted loss */
	uint32_t sent, dropped;
	struct ep a, b;
	/* every emitted segment, for inspection (capture mode) */
	struct pkt *log;
	uint32_t nlog, logcap;
	bool hold;                /* do not deliver: capture only */
	uint32_t drop_count;      /* used by drop hooks */
	uint32_t drop_seq;
};

static int emit_cb(void *ctx, const struct tcp_seg_out *s)
{
	struct ep *e = ctx;
	struct wire *w = e->w;
	struct pkt p;
	uint32_t off;
	struct tcp_seg_in in;

	assert_true(s->hdr_len >= 20 && s->hdr_len <= 60);
	assert_true(s->hdr_len + s->data_len <= sizeof(p.b));
	assert_true(s->src_ip == e->ip);
	memset(&p, 0, offsetof(struct pkt, b));
	p.src = s->src_ip;
	p.dst = s->dst_ip;
	memcpy(p.b, s->hdr, s->hdr_len);
	off = s->hdr_len;
	for (int i = 0; i < s->iovcnt; i++) {
		memcpy(p.b + off, s->iov[i].iov_base, s->iov[i].iov_len);
		off += (uint32_t)s->iov[i].iov_len;
	}
	assert_int_equal(off - s->hdr_len, s->data_len);
	p.len = off;
	p.id = w->sent++;
	/* every segment carries a correct checksum */
	assert_int_equal(tcp_seg_split(&in, p.b, p.len, p.src, p.dst), 0);
	assert_true(tcp_checksum_ok(&in));
	if (w->log && w->nlog < w->logcap)
		w->log[w->nlog++] = p;
	if (w->drop && w->drop(w, &p)) {
		w->dropped++;
		return 0;
	}
	if (w->loss_pct && rnd() % 100 < w->loss_pct) {
		w->dropped++;
		return 0;
	}
	for (int copies = (w->dup_pct && rnd() % 100 < w->dup_pct) ? 2 : 1; copies > 0; copies--) {
		if (w->n == w->cap) {
			w->cap = w->cap ? w->cap * 2 : 256;
			w->q = realloc(w->q, w->cap * sizeof(*w->q));
			assert_non_null(w->q);
		}
		p.at = w->now + w->delay_ms + (w->jitter_ms ? rnd() % (w->jitter_ms + 1) : 0);
		w->q[w->n++] = p;
	}
	return 0;
}

static struct tcp_stack *mkstack(struct ep *e, struct wire *w, uint32_t ip, struct tcp_config *cfg)
{
	struct tcp_config c;
	if (!cfg) {
		tcp_config_default(&c);
		cfg = &c;
	}
	cfg->emit = emit_cb;
	cfg->ctx = e;
	cfg->secret[0] = 0x1234 + ip;
	cfg->secret[1] = 0x5678;
	e->ip = ip;
	e->w = w;
	e->st = tcp_stack_new(cfg, w->now);
	assert_non_null(e->st);
	return e->st;
}

static void wire_init(struct wire *w, struct tcp_config *ca, struct tcp_config *cb)
{
	memset(w, 0, sizeof(*w));
	w->now = 1000000;
	w->delay_ms = 5;
	mkstack(&w->a, w, IP_A, ca);
	mkstack(&w->b, w, IP_B, cb);
}

static void wire_free(struct wire *w)
{
	tcp_stack_free(w->a.st);
	tcp_stack_free(w->b.st);
	free(w->q);
	free(w->log);
}

static void wire_log(struct wire *w, uint32_t cap)
{
	w->log = calloc(cap, sizeof(struct pkt));
	w->logcap = cap;
	w->nlog = 0;
}

/* Deliver every packet due by w->now, in order of arrival time. */
static unsigned wire_deliver(struct wire *w)
{
	unsigned k = 0;
	if (w->hold)
		return 0;
	for (;;) {
		uint32_t best = UINT32_MAX;
		for (uint32_t i = 0; i < w->n; i++)
			if (w->q[i].at <= w->now && (best == UINT32_MAX || w->q[i].at < w->q[best].at ||
						     (w->q[i].at == w->q[best].at && w->q[i].id < w->q[best].id)))
				best = i;
		if (best == UINT32_MAX)
			return k;
		struct pkt p = w->q[best];
		w->q[best] = w->q[--w->n];
		struct tcp_seg_in in;
		assert_int_equal(tcp_seg_split(&in, p.b, p.len, p.src, p.dst), 0);
		struct tcp_stack *st = p.dst == IP_A ? w->a.st : w->b.st;
		tcp_now(st, w->now);
		assert_int_equal(tcp_input(st, &in), 0);
		k++;
	}
}

static uint64_t wire_next(const struct wire *w)
{
	uint64_t t = UINT64_MAX;
	for (uint32_t i = 0; i < w->n; i++)
		if (w->q[i].at < t)
			t = w->q[i].at;
	return t;
}

/* Advance time by ms, delivering packets and running timers as they fall due. */
static void wire_run(struct wire *w, uint64_t ms)
{
	uint64_t end = w->now + ms;
	while (w->now <= end) {
		wire_deliver(w);
		tcp_timers(w->a.st, w->now);
		tcp_timers(w->b.st, w->now);
		wire_deliver(w);
		uint64_t nx = w->hold ? UINT64_MAX : wire_next(w);
		int ta = tcp_next_timeout(w->a.st, w->now), tb = tcp_next_timeout(w->b.st, w->now);
		if (ta >= 0 && w->now + (uint64_t)ta < nx)
			nx = w->now + (uint64_t)(ta ? ta : 1);
		if (tb >= 0 && w->now + (uint64_t)tb < nx)
			nx = w->now + (uint64_t)(tb ? tb : 1);
		if (nx <= w->now)
			nx = w->now + 1;
		if (nx > end) {
			if (w->now == end)
				break;
			nx = end;
		}
		w->now = nx;
	}
	tcp_now(w->a.st, w->now);
	tcp_now(w->b.st, w->now);
}

/* ---- events ------------------------------------------------------------ */

struct evlog {
	struct tcp_event ev[64];
	int n;
};

static int poll_all(struct tcp_stack *st, struct evlog *l)
{
	l->n = tcp_poll(st, l->ev, 64);
	return l->n;
}

static const struct tcp_event *find_ev(const struct evlog *l, int type)
{
	for (int i = 0; i < l->n; i++)
		if (l->ev[i].type == type)
			return &l->ev[i];
	return NULL;
}

static int state_of(struct tcp_stack *st, uint64_t c)
{
	struct tcp_conn_info in;
	if (tcp_conn_info(st, c, &in) < 0)
		return -1;
	return in.state;
}

/* Connect a -> b:PORT_B and run until both sides are established. */
static void connect_pair(struct wire *w, uint64_t *ca, uint64_t *cb)
{
	struct evlog l;
	int li = tcp_listen(w->b.st, 0, PORT_B, 0);
	assert_true(li >= 0);
	assert_int_equal(tcp_connect(w->a.st, IP_A, 0, IP_B, PORT_B, ca), 0);
	assert_int_equal(state_of(w->a.st, *ca), TCP_SYN_SENT);
	for (int i = 0; i < 1000 && state_of(w->a.st, *ca) != TCP_ESTABLISHED; i++)
		wire_run(w, 10);
	wire_run(w, 2 * w->delay_ms + 10);
	poll_all(w->a.st, &l);
	assert_non_null(find_ev(&l, TCP_EV_CONNECTED));
	assert_int_equal(state_of(w->a.st, *ca), TCP_ESTABLISHED);
	poll_all(w->b.st, &l);
	const struct tcp_event *e = find_ev(&l, TCP_EV_ACCEPTED);
	assert_non_null(e);
	assert_int_equal(e->listener, li);
	assert_int_equal(e->remote_ip, IP_A);
	*cb = e->conn;
	assert_int_equal(state_of(w->b.st, *cb), TCP_ESTABLISHED);
}

/* The byte at offset i of a test stream. */
static uint8_t pat(uint64_t i, uint32_t seed)
{
	uint64_t x = (i / 8) * 0x9e3779b97f4a7c15ull + seed;
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 32;
	return (uint8_t)(x >> (8 * (i % 8)));
}

struct flow {
	uint64_t sent, rcvd, total;
	uint32_t seed;
	bool eof;
};

/* Push as much of f as the sender takes; read what the receiver has. */
static void pump(struct tcp_stack *sst, uint64_t sc, struct tcp_stack *rst, uint64_t rc, struct flow *f)
{
	uint8_t buf[8192];
	while (f->sent < f->total) {
		uint32_t n = (uint32_t)((f->total - f->sent) < sizeof(buf) ? f->total - f->sent : sizeof(buf));
		for (uint32_t i = 0; i < n; i++)
			buf[i] = pat(f->sent + i, f->seed);
		struct iovec iov = { buf, n };
		ssize_t r = tcp_sendv(sst, sc, &iov, 1);
		if (r == -EAGAIN)
			break;
		assert_true(r > 0);
		f->sent += (uint64_t)r;
		if ((uint32_t)r < n)
			break;
	}
	if (!rst)
		return;
	for (;;) {
		ssize_t r = tcp_recv(rst, rc, buf, sizeof(buf));
		if (r == -EAGAIN)
			break;
		if (r == 0) {
			f->eof = true;
			break;
		}
		assert_true(r > 0);
		for (ssize_t i = 0; i < r; i++)
			if (buf[i] != pat(f->rcvd + (uint64_t)i, f->seed))
				fail_msg("byte %llu differs", (unsigned long long)(f->rcvd + (uint64_t)i));
		f->rcvd += (uint64_t)r;
	}
}

/* ---- hand-built segments ----------------------------------------------- */

struct hs {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;
	uint8_t opt[40];
	uint8_t optlen;
	const void *data;
	uint32_t len;
};

static int inject(struct tcp_stack *st, uint32_t src, uint32_t dst, const struct hs *h)
{
	uint8_t b[1600];
	struct tcp_seg_in in;
	size_t hl = 20 + h->optlen;
	memset(b, 0, 20);
	b[0] = (uint8_t)(h->sport >> 8); b[1] = (uint8_t)h->sport;
	b[2] = (uint8_t)(h->dport >> 8); b[3] = (uint8_t)h->dport;
	uint32_t s = htonl(h->seq), a = htonl(h->ack);
	memcpy(b + 4, &s, 4);
	memcpy(b + 8, &a, 4);
	b[12] = (uint8_t)((hl / 4) << 4);
	b[13] = h->flags;
	b[14] = (uint8_t)(h->win >> 8); b[15] = (uint8_t)h->win;
	memcpy(b + 20, h->opt, h->optlen);
	if (h->len)
		memcpy(b + hl, h->data, h->len);
	assert_int_equal(tcp_seg_split(&in, b, hl + h->len, src, dst), 0);
	return tcp_input(st, &in);
}

struct parsed {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t flags;
	uint16_t win;
	uint32_t len;
	bool has_ts, has_mss, has_ws, sackp;
	uint32_t tsval, tsecr;
	uint16_t mss;
	uint8_t ws;
	int nsack;
	uint32_t sack[4][2];
};

static struct parsed parse(const struct pkt *p)
{
	struct parsed r;
	memset(&r, 0, sizeof(r));
	const uint8_t *b = p->b;
	r.sport = (uint16_t)(b[0] << 8 | b[1]);
	r.dport = (uint16_t)(b[2] << 8 | b[3]);
	memcpy(&r.seq, b + 4, 4); r.seq = ntohl(r.seq);
	memcpy(&r.ack, b + 8, 4); r.ack = ntohl(r.ack);
	r.flags = b[13];
	r.win = (uint16_t)(b[14] << 8 | b[15]);
	uint32_t hl = (uint32_t)(b[12] >> 4) * 4;
	r.len = p->len - hl;
	for (uint32_t i = 20; i < hl;) {
		uint8_t k = b[i];
		if (k == 0) break;
		if (k == 1) { i++; continue; }
		uint8_t l = b[i + 1];
		if (k == 2) { r.has_mss = true; r.mss = (uint16_t)(b[i + 2] << 8 | b[i + 3]); }
		if (k == 3) { r.has_ws = true; r.ws = b[i + 2]; }
		if (k == 4) r.sackp = true;
		if (k == 8) {
			r.has_ts = true;
			memcpy(&r.tsval, b + i + 2, 4); r.tsval = ntohl(r.tsval);
			memcpy(&r.tsecr, b + i + 6, 4); r.tsecr = ntohl(r.tsecr);
		}
		if (k == 5) {
			r.nsack = (l - 2) / 8;
			for (int j = 0; j < r.nsack && j < 4; j++) {
				uint32_t x;
				memcpy(&x, b + i + 2 + 8 * j, 4); r.sack[j][0] = ntohl(x);
				memcpy(&x, b + i + 6 + 8 * j, 4); r.sack[j][1] = ntohl(x);
			}
		}
		i += l;
	}
	return r;
}

/* A single stack whose output is only logged: wire with hold set. */
static void solo_init(struct wire *w, struct tcp_config *cfg)
{
	memset(w, 0, sizeof(*w));
	w->now = 1000000;
	mkstack(&w->b, w, IP_B, cfg);
	w->a.st = NULL;
	w->hold = true;
	wire_log(w, 4096);
}

static void solo_free(struct wire *w)
{
	tcp_stack_free(w->b.st);
	free(w->q);
	free(w->log);
}

static void solo_time(struct wire *w, uint64_t ms)
{
	uint64_t end = w->now + ms;
	while (w->now < end) {
		w->now++;
		tcp_timers(w->b.st, w->now);
	}
}

/* Handshake by hand with the solo stack's listener: returns the conn id
 * and our (the peer's) next seq; the stack's ISS goes in *iss. */
static uint64_t solo_accept(struct wire *w, uint16_t sport, uint32_t isn, uint32_t *iss, bool opts)
{
	struct hs h = { .sport = sport, .dport = PORT_B, .seq = isn, .flags = TH_SYN, .win = 65535 };
	if (opts) {
		uint8_t o[] = { 2, 4, 0x05, 0xb4, 1, 3, 3, 0, 4, 2, 1, 1 };   /* MSS 1460, WS 0, SACKP */
		memcpy(h.opt, o, sizeof(o));
		h.optlen = sizeof(o);
	}
	uint32_t before = w->nlog;
	assert_int_equal(inject(w->b.st, IP_A, IP_B, &h), 0);
	assert_int_equal(w->nlog, before + 1);
	struct parsed sa = parse(&w->log[w->nlog - 1]);
	assert_int_equal(sa.flags, TH_SYN | TH_ACK);
	assert_int_equal(sa.ack, isn + 1);
	*iss = sa.seq;
	struct hs a = { .sport = sport, .dport = PORT_B, .seq = isn + 1, .ack = sa.seq + 1,
			.flags = TH_ACK, .win = 65535 };
	assert_int_equal(inject(w->b.st, IP_A, IP_B, &a), 0);
	struct evlog l;
	poll_all(w->b.st, &l);
	const struct tcp_event *e = find_ev(&l, TCP_EV_ACCEPTED);
	assert_non_null(e);
	return e->conn;
}

/* ---- tests: open and data ---------------------------------------------- */

static void test_handshake_options(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct tcp_config cfga, cfgb;
	tcp_config_default(&cfga);
	tcp_config_default(&cfgb);
	cfgb.rcv_buf = 256 * 1024;   /* needs a window scale of 3 */
	wire_init(&w, &cfga, &cfgb);
	wire_log(&w, 64);
	connect_pair(&w, &ca, &cb);

	struct parsed syn = parse(&w.log[0]), synack = parse(&w.log[1]);
	assert_int_equal(syn.flags, TH_SYN);
	assert_true(syn.has_mss && syn.mss == 1460 && syn.has_ws && syn.sackp && syn.has_ts);
	assert_int_equal(syn.ws, 1);
	assert_int_equal(synack.flags, TH_SYN | TH_ACK);
	assert_true(synack.has_mss && synack.has_ws && synack.sackp && synack.has_ts);
	assert_int_equal(synack.ws, 3);
	assert_int_equal(synack.tsecr, syn.tsval);

	struct tcp_conn_info ia, ib;
	assert_int_equal(tcp_conn_info(w.a.st, ca, &ia), 0);
	assert_int_equal(tcp_conn_info(w.b.st, cb, &ib), 0);
	assert_true(ia.sack_ok && ia.ts_ok && ib.sack_ok && ib.ts_ok);
	assert_int_equal(ia.snd_wscale, 3);
	assert_int_equal(ia.rcv_wscale, 1);
	assert_int_equal(ib.snd_wscale, 1);
	assert_int_equal(ib.rcv_wscale, 3);
	assert_int_equal(ia.mss, 1460 - 12);
	assert_int_equal(ia.snd_una, ib.rcv_nxt);
	assert_int_equal(ib.snd_una, ia.rcv_nxt);
	assert_int_equal(ia.snd_wnd, 65535);   /* from the SYN-ACK: never scaled */

	/* data both ways, and the stale-id check */
	struct flow f1 = { .total = 100000, .seed = 1 }, f2 = { .total = 5000, .seed = 2 };
	for (int i = 0; i < 200 && (f1.rcvd < f1.total || f2.rcvd < f2.total); i++) {
		pump(w.a.st, ca, w.b.st, cb, &f1);
		pump(w.b.st, cb, w.a.st, ca, &f2);
		wire_run(&w, 5);
	}
	assert_true(f1.rcvd == f1.total && f2.rcvd == f2.total);
	assert_int_equal(tcp_stats(w.a.st)->retrans, 0);
	tcp_close(w.a.st, ca);
	char b;
	assert_int_equal(tcp_recv(w.a.st, ca, &b, 1), -EBADF);
	assert_int_equal(tcp_set_udata(w.a.st, ca, NULL), -EBADF);
	wire_free(&w);
}

static void test_active_close_states(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct evlog l;
	char buf[16];
	wire_init(&w, NULL, NULL);
	connect_pair(&w, &ca, &cb);

	w.hold = true;
	assert_int_equal(tcp_shutdown(w.a.st, ca), 0);
	assert_int_equal(state_of(w.a.st, ca), TCP_FIN_WAIT_1);
	w.hold = false;
	wire_run(&w, 5);   /* FIN arrives at b; its ACK is on the way */
	assert_int_equal(state_of(w.b.st, cb), TCP_CLOSE_WAIT);
	poll_all(w.b.st, &l);
	assert_non_null(find_ev(&l, TCP_EV_READABLE));
	assert_int_equal(tcp_recv(w.b.st, cb, buf, sizeof(buf)), 0);
	wire_run(&w, 20);
	assert_int_equal(state_of(w.a.st, ca), TCP_FIN_WAIT_2);
	/* b can still send in CLOSE-WAIT; a can still read in FIN-WAIT-2 */
	struct iovec iov = { "late", 4 };
	assert_int_equal(tcp_sendv(w.b.st, cb, &iov, 1), 4);
	wire_run(&w, 20);
	assert_int_equal(tcp_recv(w.a.st, ca, buf, sizeof(buf)), 4);
	assert_int_equal(tcp_sendv(w.a.st, ca, &iov, 1), -EPIPE);

	assert_int_equal(tcp_shutdown(w.b.st, cb), 0);
	assert_int_equal(state_of(w.b.st, cb), TCP_LAST_ACK);
	wire_run(&w, 20);
	assert_int_equal(state_of(w.a.st, ca), TCP_TIME_WAIT);
	assert_int_equal(state_of(w.b.st, cb), TCP_CLOSED);
	assert_int_equal(tcp_recv(w.a.st, ca, buf, sizeof(buf)), 0);

	/* closing the TIME-WAIT tcb moves it into the compact table */
	struct tcp_conn_info ia;
	tcp_conn_info(w.a.st, ca, &ia);
	tcp_close(w.a.st, ca);
	tcp_close(w.b.st, cb);
	assert_int_equal(tcp_stats(w.a.st)->conns, 0);
	assert_int_equal(tcp_stats(w.b.st)->conns, 0);
	assert_int_equal(tcp_stats(w.a.st)->tw_conns, 1);
	assert_int_equal(tcp_tuple_state(w.a.st, IP_A, ia.local_port, IP_B, PORT_B), TCP_TIME_WAIT);
	wire_run(&w, 31000);
	assert_int_equal(tcp_stats(w.a.st)->tw_conns, 0);
	assert_int_equal(tcp_tuple_state(w.a.st, IP_A, ia.local_port, IP_B, PORT_B), -ENOENT);
	assert_int_equal(tcp_stats(w.a.st)->buf_bytes, 0);
	wire_free(&w);
}

static void test_close_orphan(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	wire_init(&w, NULL, NULL);
	connect_pair(&w, &ca, &cb);
	struct tcp_conn_info ia;
	tcp_conn_info(w.a.st, ca, &ia);
	/* close with data queued: the data is still delivered, then FIN */
	struct flow f = { .total = 200000, .seed = 9 };
	pump(w.a.st, ca, NULL, 0, &f);
	assert_true(f.sent > 0);
	tcp_close(w.a.st, ca);
	uint64_t total = f.sent;
	f.total = total;
	for (int i = 0; i < 100 && !f.eof; i++) {
		wire_run(&w, 10);
		pump(w.a.st, 0, w.b.st, cb, &f);
	}
	assert_true(f.eof);
	assert_int_equal(f.rcvd, total);
	assert_int_equal(tcp_tuple_state(w.a.st, IP_A, ia.local_port, IP_B, PORT_B), TCP_FIN_WAIT_2);
	/* orphaned FIN-WAIT-2 times out (the peer never closes) */
	wire_run(&w, 31000);
	assert_int_equal(tcp_tuple_state(w.a.st, IP_A, ia.local_port, IP_B, PORT_B), -ENOENT);
	assert_int_equal(tcp_stats(w.a.st)->conns, 0);
	tcp_close(w.b.st, cb);
	wire_run(&w, 1000);
	wire_free(&w);
}

static void test_simultaneous_close(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	wire_init(&w, NULL, NULL);
	connect_pair(&w, &ca, &cb);
	tcp_shutdown(w.a.st, ca);
	tcp_shutdown(w.b.st, cb);
	assert_int_equal(state_of(w.a.st, ca), TCP_FIN_WAIT_1);
	assert_int_equal(state_of(w.b.st, cb), TCP_FIN_WAIT_1);
	w.delay_ms = 5;
	/* both FINs cross: each sees the other's FIN before its own is ACKed */
	wire_run(&w, 5);
	assert_int_equal(state_of(w.a.st, ca), TCP_CLOSING);
	assert_int_equal(state_of(w.b.st, cb), TCP_CLOSING);
	wire_run(&w, 10);
	assert_int_equal(state_of(w.a.st, ca), TCP_TIME_WAIT);
	assert_int_equal(state_of(w.b.st, cb), TCP_TIME_WAIT);
	wire_run(&w, 31000);
	assert_int_equal(state_of(w.a.st, ca), TCP_CLOSED);
	tcp_close(w.a.st, ca);
	tcp_close(w.b.st, cb);
	assert_int_equal(tcp_stats(w.a.st)->tw_conns + tcp_stats(w.b.st)->tw_conns, 0);
	wire_free(&w);
}

static void test_simultaneous_open(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct evlog l;
	wire_init(&w, NULL, NULL);
	assert_int_equal(tcp_connect(w.a.st, IP_A, 4000, IP_B, 5000, &ca), 0);
	assert_int_equal(tcp_connect(w.b.st, IP_B, 5000, IP_A, 4000, &cb), 0);
	wire_run(&w, 5);
	assert_int_equal(state_of(w.a.st, ca), TCP_SYN_RECEIVED);
	assert_int_equal(state_of(w.b.st, cb), TCP_SYN_RECEIVED);
	wire_run(&w, 20);
	assert_int_equal(state_of(w.a.st, ca), TCP_ESTABLISHED);
	assert_int_equal(state_of(w.b.st, cb), TCP_ESTABLISHED);
	poll_all(w.a.st, &l);
	assert_non_null(find_ev(&l, TCP_EV_CONNECTED));
	poll_all(w.b.st, &l);
	assert_non_null(find_ev(&l, TCP_EV_CONNECTED));
	struct flow f = { .total = 3000, .seed = 3 };
	for (int i = 0; i < 10; i++) {
		pump(w.a.st, ca, w.b.st, cb, &f);
		wire_run(&w, 10);
	}
	assert_int_equal(f.rcvd, f.total);
	wire_free(&w);
}

static void test_passive_close_and_abort(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct evlog l;
	char buf[8];
	wire_init(&w, NULL, NULL);
	connect_pair(&w, &ca, &cb);
	/* abort: a RST that b takes as a reset */
	tcp_abort(w.a.st, ca);
	wire_run(&w, 10);
	poll_all(w.b.st, &l);
	const struct tcp_event *e = find_ev(&l, TCP_EV_CLOSED);
	assert_non_null(e);
	assert_int_equal(e->err, -ECONNRESET);
	assert_int_equal(tcp_recv(w.b.st, cb, buf, sizeof(buf)), -ECONNRESET);
	struct iovec iov = { "x", 1 };
	assert_int_equal(tcp_sendv(w.b.st, cb, &iov, 1), -ECONNRESET);
	tcp_close(w.b.st, cb);
	assert_int_equal(tcp_stats(w.b.st)->conns, 0);
	assert_int_equal(tcp_stats(w.a.st)->conns, 0);
	wire_free(&w);
}

/* ---- tests: RST -------------------------------------------------------- */

static void test_rst_closed_port(void **state)
{
	(void)state;
	struct wire w;
	struct tcp_config cfg;
	tcp_config_default(&cfg);
	solo_init(&w, &cfg);
	/* SYN to a closed port: RST|ACK, seq 0, ack = seq + 1 */
	struct hs h = { .sport = 1111, .dport = 80, .seq = 0xfffffff0u, .flags = TH_SYN, .win = 1000 };
	inject(w.b.st, IP_A, IP_B, &h);
	assert_int_equal(w.nlog, 1);
	struct parsed r = parse(&w.log[0]);
	assert_int_equal(r.flags, TH_RST | TH_ACK);
	assert_int_equal(r.seq, 0);
	assert_int_equal(r.ack, 0xfffffff1u);
	assert_int_equal(r.sport, 80);
	assert_int_equal(r.dport, 1111);
	/* an ACK to a closed port: RST with seq = its ack */
	struct hs a = { .sport = 1111, .dport = 80, .seq = 5, .ack = 777, .flags = TH_ACK, .win = 1000,
			.data = "abc", .len = 3 };
	inject(w.b.st, IP_A, IP_B, &a);
	r = parse(&w.log[1]);
	assert_int_equal(r.flags, TH_RST);
	assert_int_equal(r.seq, 777);
	/* a RST to a closed port: nothing */
	struct hs x = { .sport = 1111, .dport = 80, .seq = 5, .flags = TH_RST };
	inject(w.b.st, IP_A, IP_B, &x);
	assert_int_equal(w.nlog, 2);
	/* malformed: data offset past the header we give */
	uint8_t bad[20] = { 0 };
	bad[12] = 0xf0;
	struct tcp_seg_in in = { .src_ip = IP_A, .dst_ip = IP_B, .hdr = bad, .hdr_len = 20 };
	assert_int_equal(tcp_input(w.b.st, &in), -EINVAL);
	assert_int_equal(tcp_stats(w.b.st)->rst_out, 2);
	solo_free(&w);
}

static void test_rst_acceptability(void **state)
{
	(void)state;
	struct wire w;
	struct tcp_config cfg;
	struct evlog l;
	uint32_t iss;
	tcp_config_default(&cfg);
	solo_init(&w, &cfg);
	assert_true(tcp_listen(w.b.st, 0, PORT_B, 0) >= 0);
	uint32_t isn = 1000;
	uint64_t c = solo_accept(&w, 2000, isn, &iss, false);
	assert_int_equal(state_of(w.b.st, c), TCP_ESTABLISHED);
	uint32_t n0 = w.nlog;
	/* out of window: silently dropped */
	struct hs r = { .sport = 2000, .dport = PORT_B, .seq = isn + 1 + 10000000, .flags = TH_RST };
	inject(w.b.st, IP_A, IP_B, &r);
	assert_int_equal(w.nlog, n0);
	assert_int_equal(state_of(w.b.st, c), TCP_ESTABLISHED);
	/* in window, not exact: a challenge ACK */
	r.seq = isn + 1 + 100;
	inject(w.b.st, IP_A, IP_B, &r);
	assert_int_equal(w.nlog, n0 + 1);
	struct parsed p = parse(&w.log[n0]);
	assert_int_equal(p.flags, TH_ACK);
	assert_int_equal(p.ack, isn + 1);
	assert_int_equal(tcp_stats(w.b.st)->challenge_acks, 1);
	assert_int_equal(state_of(w.b.st, c), TCP_ESTABLISHED);
	/* a SYN on an established connection: challenge ACK too (RFC 5961 4) */
	struct hs s = { .sport = 2000, .dport = PORT_B, .seq = isn + 50, .flags = TH_SYN, .win = 100 };
	inject(w.b.st, IP_A, IP_B, &s);
	assert_int_equal(tcp_stats(w.b.st)->challenge_acks, 2);
	assert_int_equal(state_of(w.b.st, c), TCP_ESTABLISHED);
	/* ACK of data never sent: an ACK back, dropped */
	struct hs a = { .sport = 2000, .dport = PORT_B, .seq = isn + 1, .ack = iss + 1 + 5000,
			.flags = TH_ACK, .win = 100, .data = "zz", .len = 2 };
	inject(w.b.st, IP_A, IP_B, &a);
	char buf[4];
	assert_int_equal(tcp_recv(w.b.st, c, buf, 4), -EAGAIN);
	/* exact: reset */
	poll_all(w.b.st, &l);
	r.seq = isn + 1;
	inject(w.b.st, IP_A, IP_B, &r);
	poll_all(w.b.st, &l);
	assert_non_null(find_ev(&l, TCP_EV_CLOSED));
	assert_int_equal(l.ev[0].err, -ECONNRESET);
	assert_int_equal(state_of(w.b.st, c), TCP_CLOSED);
	tcp_close(w.b.st, c);
	solo_free(&w);
}

static void test_connect_refused_and_syn_sent_checks(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca;
	struct evlog l;
	wire_init(&w, NULL, NULL);
	/* b has no listener: a's SYN gets RST|ACK: refused */
	assert_int_equal(tcp_connect(w.a.st, IP_A, 0, IP_B, 9, &ca), 0);
	wire_run(&w, 20);
	poll_all(w.a.st, &l);
	const struct tcp_event *e = find_ev(&l, TCP_EV_CLOSED);
	assert_non_null(e);
	assert_int_equal(e->err, -ECONNREFUSED);
	assert_int_equal(e->conn, ca);
	tcp_close(w.a.st, ca);
	wire_free(&w);

	/* SYN-SENT: an ACK of something else gets a RST, the RST without an
	 * acceptable ACK is ignored */
	struct wire s;
	solo_init(&s, NULL);
	uint64_t c;
	assert_int_equal(tcp_connect(s.b.st, IP_B, 3000, IP_A, 80, &c), 0);
	struct parsed syn = parse(&s.log[0]);
	struct hs bad = { .sport = 80, .dport = 3000, .seq = 1, .ack = syn.seq + 77, .flags = TH_ACK | TH_SYN };
	inject(s.b.st, IP_A, IP_B, &bad);
	struct parsed r = parse(&s.log[1]);
	assert_int_equal(r.flags, TH_RST);
	assert_int_equal(r.seq, syn.seq + 77);
	struct hs rst = { .sport = 80, .dport = 3000, .seq = 1, .flags = TH_RST };
	inject(s.b.st, IP_A, IP_B, &rst);
	assert_int_equal(state_of(s.b.st, c), TCP_SYN_SENT);
	solo_free(&s);
}

/* ---- tests: sequence numbers ------------------------------------------- */

static uint32_t isn_near_wrap(void *ctx, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	(void)ctx; (void)lport; (void)rip; (void)rport;
	return lip == IP_A ? 0xffffffffu - 3000 : 0xffffffffu - 50000;
}

static void test_wraparound(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct tcp_config c1, c2;
	tcp_config_default(&c1);
	tcp_config_default(&c2);
	c1.isn = c2.isn = isn_near_wrap;
	wire_init(&w, &c1, &c2);
	connect_pair(&w, &ca, &cb);
	w.loss_pct = 3;
	w.jitter_ms = 4;
	struct tcp_conn_info ia;
	tcp_conn_info(w.a.st, ca, &ia);
	assert_true(ia.snd_una > 0xffff0000u);
	struct flow f1 = { .total = 300000, .seed = 4 }, f2 = { .total = 300000, .seed = 5 };
	for (int i = 0; i < 5000 && (f1.rcvd < f1.total || f2.rcvd < f2.total); i++) {
		pump(w.a.st, ca, w.b.st, cb, &f1);
		pump(w.b.st, cb, w.a.st, ca, &f2);
		wire_run(&w, 5);
	}
	assert_int_equal(f1.rcvd, f1.total);
	assert_int_equal(f2.rcvd, f2.total);
	tcp_conn_info(w.a.st, ca, &ia);
	assert_true(ia.snd_una < 400000);   /* wrapped */
	assert_true(tcp_stats(w.a.st)->fast_retrans > 0);   /* recovery works past the wrap */
	wire_free(&w);
}

/* ---- tests: windows ---------------------------------------------------- */

static void test_zero_window_probe(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct tcp_config c1, c2;
	struct evlog l;
	tcp_config_default(&c1);
	tcp_config_default(&c2);
	c2.rcv_buf = 16384;
	wire_init(&w, &c1, &c2);
	wire_log(&w, 20000);
	connect_pair(&w, &ca, &cb);
	/* b does not read: its window closes */
	struct flow f = { .total = 100000, .seed = 6 };
	for (int i = 0; i < 20; i++) {
		pump(w.a.st, ca, NULL, 0, &f);
		wire_run(&w, 10);
	}
	struct tcp_conn_info ia, ib;
	tcp_conn_info(w.a.st, ca, &ia);
	tcp_conn_info(w.b.st, cb, &ib);
	assert_int_equal(ia.snd_wnd, 0);
	assert_int_equal(ib.unread, 16384);
	assert_int_equal(ib.rcv_wnd, 0);
	assert_true(ia.unsent > 0);
	/* probes go out, backed off (RTO, 2 RTO, ...) while the window stays shut */
	uint64_t probes0 = tcp_stats(w.a.st)->win_probes;
	uint32_t log0 = w.nlog;
	wire_run(&w, 6000);
	uint64_t probes = tcp_stats(w.a.st)->win_probes - probes0;
	assert_true(probes >= 3 && probes <= 6);
	/* each probe is answered with a zero window */
	uint32_t answers = 0;
	for (uint32_t i = log0; i < w.nlog; i++) {
		if (w.log[i].src == IP_B) {
			struct parsed p = parse(&w.log[i]);
			assert_int_equal(p.win, 0);
			answers++;
		}
	}
	assert_true(answers >= probes);
	tcp_conn_info(w.a.st, ca, &ia);
	assert_true(ia.state == TCP_ESTABLISHED);
	/* the writer is blocked (-EAGAIN); the reader drains: a window
	 * update reopens the flow and the writer hears WRITABLE */
	struct iovec one = { "x", 1 };
	assert_int_equal(tcp_sendv(w.a.st, ca, &one, 1), -EAGAIN);
	poll_all(w.a.st, &l);
	assert_null(find_ev(&l, TCP_EV_WRITABLE));
	for (int i = 0; i < 100 && l.n == 0; i++) {
		struct flow g = f;
		g.total = g.sent;   /* read only */
		pump(w.a.st, ca, w.b.st, cb, &g);
		f = g;
		f.total = 100000;
		wire_run(&w, 5);
		poll_all(w.a.st, &l);
	}
	assert_non_null(find_ev(&l, TCP_EV_WRITABLE));
	for (int i = 0; i < 3000 && f.rcvd < f.total; i++) {
		pump(w.a.st, ca, w.b.st, cb, &f);
		wire_run(&w, 5);
	}
	assert_int_equal(f.rcvd, f.total);
	wire_free(&w);
}

static void test_read_enable(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct evlog l;
	wire_init(&w, NULL, NULL);
	connect_pair(&w, &ca, &cb);
	int tag;
	tcp_set_udata(w.b.st, cb, &tag);
	tcp_read_enable(w.b.st, cb, false);
	struct iovec iov = { "hello", 5 };
	tcp_sendv(w.a.st, ca, &iov, 1);
	wire_run(&w, 20);
	poll_all(w.b.st, &l);
	assert_null(find_ev(&l, TCP_EV_READABLE));
	tcp_read_enable(w.b.st, cb, true);
	poll_all(w.b.st, &l);
	const struct tcp_event *e = find_ev(&l, TCP_EV_READABLE);
	assert_non_null(e);
	assert_ptr_equal(e->udata, &tag);
	char buf[8];
	assert_int_equal(tcp_recv(w.b.st, cb, buf, 8), 5);
	assert_int_equal(tcp_recv(w.b.st, cb, buf, 8), -EAGAIN);
	wire_free(&w);
}

/* ---- tests: timers ----------------------------------------------------- */

static bool drop_all(struct wire *w, const struct pkt *p)
{
	(void)w; (void)p;
	return true;
}

static void test_syn_rto_backoff(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca;
	struct evlog l;
	wire_init(&w, NULL, NULL);
	wire_log(&w, 64);
	w.drop = drop_all;
	uint64_t t0 = w.now;
	assert_int_equal(tcp_connect(w.a.st, IP_A, 0, IP_B, PORT_B, &ca), 0);
	wire_run(&w, 70000);
	/* SYN, then 5 retransmissions after 1, 2, 4, 8, 16 s (one wheel tick late at most) */
	assert_int_equal(w.nlog, 6);
	uint64_t expect = 0, at[6];
	uint32_t k = 0;
	(void)at;
	for (uint32_t i = 0; i < w.nlog; i++)
		assert_int_equal(parse(&w.log[i]).flags, TH_SYN);
	/* the wire's log has no times: recompute from the stats instead */
	assert_int_equal(tcp_stats(w.a.st)->rto_fired, 5);
	(void)expect; (void)k; (void)t0;
	poll_all(w.a.st, &l);
	const struct tcp_event *e = find_ev(&l, TCP_EV_CLOSED);
	assert_non_null(e);
	assert_int_equal(e->err, -ETIMEDOUT);
	tcp_close(w.a.st, ca);
	wire_free(&w);
}

/* Record the times of a's data segments in the log's `at` field. */
static uint64_t *rx_times;
static uint32_t nrx_times;
static bool drop_a_data_timed(struct wire *w, const struct pkt *p)
{
	if (p->src == IP_A && parse(p).len > 0) {
		rx_times[nrx_times++] = w->now;
		return true;
	}
	return false;
}

static void test_data_rto_backoff_karn(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct tcp_config c1, c2;
	struct evlog l;
	tcp_config_default(&c1);
	tcp_config_default(&c2);
	c1.no_timestamps = true;   /* Karn's rule matters without timestamps */
	c1.data_retries = 4;
	wire_init(&w, &c1, &c2);
	w.delay_ms = 50;
	connect_pair(&w, &ca, &cb);
	wire_run(&w, 200);
	/* a few round trips to get an RTT estimate: ~100 ms */
	struct flow f = { .total = 20000, .seed = 7 };
	for (int i = 0; i < 40; i++) {
		pump(w.a.st, ca, w.b.st, cb, &f);
		wire_run(&w, 50);
	}
	assert_int_equal(f.rcvd, f.total);
	struct tcp_conn_info ia;
	tcp_conn_info(w.a.st, ca, &ia);
	assert_true(ia.srtt_ms >= 95 && ia.srtt_ms <= 200);
	uint32_t rto = ia.rto_ms;
	assert_true(rto >= 200 && rto <= 700);

	/* now everything a sends is lost: retransmissions at RTO, 2, 4, 8 x */
	uint64_t times[16];
	rx_times = times;
	nrx_times = 0;
	w.drop = drop_a_data_timed;
	struct iovec iov = { "0123456789", 10 };
	assert_int_equal(tcp_sendv(w.a.st, ca, &iov, 1), 10);
	wire_run(&w, 60000);
	assert_int_equal(nrx_times, 5);   /* the send and 4 retries, then give up */
	for (uint32_t i = 1; i < nrx_times; i++) {
		uint64_t gap = times[i] - times[i - 1];
		uint64_t want = (uint64_t)rto << (i - 1);
		assert_true(gap >= want && gap <= want + 2 * 64);
	}
	poll_all(w.a.st, &l);
	const struct tcp_event *e = find_ev(&l, TCP_EV_CLOSED);
	assert_non_null(e);
	assert_int_equal(e->err, -ETIMEDOUT);
	wire_free(&w);
}

static uint32_t karn_drops;
static bool drop_first_data_once(struct wire *w, const struct pkt *p)
{
	(void)w;
	if (p->src == IP_A && parse(p).len > 0 && karn_drops == 0) {
		karn_drops++;
		return true;
	}
	return false;
}

static void test_karn_no_sample_from_retransmission(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct tcp_config c1;
	tcp_config_default(&c1);
	c1.no_timestamps = true;
	wire_init(&w, &c1, NULL);
	w.delay_ms = 10;
	connect_pair(&w, &ca, &cb);
	struct tcp_conn_info ia;
	tcp_conn_info(w.a.st, ca, &ia);
	uint32_t srtt0 = ia.srtt_ms;   /* from the SYN: ~20 ms */
	assert_true(srtt0 >= 19 && srtt0 <= 21);
	karn_drops = 0;
	w.drop = drop_first_data_once;
	struct iovec iov = { "abc", 3 };
	tcp_sendv(w.a.st, ca, &iov, 1);
	wire_run(&w, 3000);
	assert_int_equal(tcp_stats(w.a.st)->rto_fired, 1);
	tcp_conn_info(w.a.st, ca, &ia);
	/* the ACK of the retransmission is ambiguous: no sample taken, and
	 * the backed-off RTO (2 x the 200 ms floor) stays until one is */
	assert_int_equal(ia.srtt_ms, srtt0);
	assert_int_equal(ia.retransmits, 1);
	assert_int_equal(ia.rto_ms, 2 * 200);
	/* fresh data gives a sample and ends the backoff */
	w.drop = NULL;
	tcp_sendv(w.a.st, ca, &iov, 1);
	wire_run(&w, 100);
	tcp_conn_info(w.a.st, ca, &ia);
	assert_int_equal(ia.retransmits, 0);
	assert_true(ia.rto_ms == 200);
	wire_free(&w);
}

static void test_delayed_ack(void **state)
{
	(void)state;
	struct wire w;
	struct tcp_config cfg;
	uint32_t iss;
	tcp_config_default(&cfg);
	solo_init(&w, &cfg);
	assert_true(tcp_listen(w.b.st, 0, PORT_B, 0) >= 0);
	uint32_t isn = 77;
	uint64_t c = solo_accept(&w, 2100, isn, &iss, true);
	(void)c;
	uint8_t data[1460];
	memset(data, 'x', sizeof(data));
	uint32_t n0 = w.nlog;
	struct hs d = { .sport = 2100, .dport = PORT_B, .seq = isn + 1, .ack = iss + 1, .flags = TH_ACK,
			.win = 65535, .data = data, .len = 1460 };
	inject(w.b.st, IP_A, IP_B, &d);
	assert_int_equal(w.nlog, n0);   /* one full segment: ACK delayed */
	d.seq += 1460;
	inject(w.b.st, IP_A, IP_B, &d);
	assert_int_equal(w.nlog, n0 + 1);   /* the second: ACK at once */
	assert_int_equal(parse(&w.log[n0]).ack, isn + 1 + 2920);
	d.seq += 1460;
	inject(w.b.st, IP_A, IP_B, &d);
	assert_int_equal(w.nlog, n0 + 1);
	solo_time(&w, 30);
	assert_int_equal(w.nlog, n0 + 1);
	solo_time(&w, 150);   /* 40 ms, rounded up to wheel ticks */
	assert_int_equal(w.nlog, n0 + 2);
	assert_int_equal(parse(&w.log[n0 + 1]).ack, isn + 1 + 3 * 1460);
	/* out of order: ACK at once, with a SACK block */
	d.seq += 2 * 1460;
	inject(w.b.st, IP_A, IP_B, &d);
	assert_int_equal(w.nlog, n0 + 3);
	struct parsed p = parse(&w.log[n0 + 2]);
	assert_int_equal(p.ack, isn + 1 + 3 * 1460);
	assert_int_equal(p.nsack, 1);
	assert_int_equal(p.sack[0][0], isn + 1 + 4 * 1460);
	assert_int_equal(p.sack[0][1], isn + 1 + 5 * 1460);
	solo_free(&w);
}

/* ---- tests: reassembly and SACK ---------------------------------------- */

static void test_ooo_reassembly(void **state)
{
	(void)state;
	struct wire w;
	uint32_t iss;
	struct evlog l;
	solo_init(&w, NULL);
	assert_true(tcp_listen(w.b.st, 0, PORT_B, 0) >= 0);
	uint32_t isn = 0xfffff000u;   /* the data crosses 2^32 */
	uint64_t c = solo_accept(&w, 2200, isn, &iss, true);
	poll_all(w.b.st, &l);
	/* 10 segments of 1000 bytes, delivered in a shuffled order with
	 * overlaps and duplicates */
	uint8_t data[10000];
	for (int i = 0; i < 10000; i++)
		data[i] = pat((uint64_t)i, 11);
	int order[] = { 3, 7, 1, 9, 8, 5, 6, 2, 4, 0 };
	for (int k = 0; k < 10; k++) {
		int i = order[k];
		struct hs d = { .sport = 2200, .dport = PORT_B, .seq = isn + 1 + (uint32_t)i * 1000,
				.ack = iss + 1, .flags = TH_ACK, .win = 65535, .data = data + i * 1000, .len = 1000 };
		inject(w.b.st, IP_A, IP_B, &d);
		if (k == 2) {
			struct tcp_conn_info in;
			tcp_conn_info(w.b.st, c, &in);
			assert_int_equal(in.nsack_ranges, 3);
			assert_int_equal(in.ooo_bytes, 3000);
			/* the last SACK names the newest block first */
			struct parsed p = parse(&w.log[w.nlog - 1]);
			assert_int_equal(p.nsack, 3);
			assert_int_equal(p.sack[0][0], isn + 1 + 1000);
			assert_int_equal(p.sack[0][1], isn + 1 + 2000);
		}
		if (k == 5) {
			/* a duplicate and an overlapping segment */
			inject(w.b.st, IP_A, IP_B, &d);
			struct hs o = { .sport = 2200, .dport = PORT_B, .seq = isn + 1 + 5500, .ack = iss + 1,
					.flags = TH_ACK, .win = 65535, .data = data + 5500, .len = 1400 };
			inject(w.b.st, IP_A, IP_B, &o);
		}
		if (k < 9) {
			char b;
			assert_int_equal(tcp_recv(w.b.st, c, &b, 1), -EAGAIN);
		}
	}
	struct parsed p = parse(&w.log[w.nlog - 1]);
	assert_int_equal(p.ack, isn + 1 + 10000);
	assert_int_equal(p.nsack, 0);
	uint8_t out[10000];
	assert_int_equal(tcp_recv(w.b.st, c, out, sizeof(out)), 10000);
	assert_memory_equal(out, data, 10000);
	/* a FIN ahead of a hole waits for the hole */
	struct hs fin = { .sport = 2200, .dport = PORT_B, .seq = isn + 1 + 10500, .ack = iss + 1,
			  .flags = TH_ACK | TH_FIN, .win = 65535 };
	inject(w.b.st, IP_A, IP_B, &fin);
	assert_int_equal(tcp_recv(w.b.st, c, out, 10), -EAGAIN);
	struct hs gap = { .sport = 2200, .dport = PORT_B, .seq = isn + 1 + 10000, .ack = iss + 1,
			  .flags = TH_ACK, .win = 65535, .data = data, .len = 500 };
	inject(w.b.st, IP_A, IP_B, &gap);
	assert_int_equal(tcp_recv(w.b.st, c, out, sizeof(out)), 500);
	assert_int_equal(tcp_recv(w.b.st, c, out, sizeof(out)), 0);
	assert_int_equal(state_of(w.b.st, c), TCP_CLOSE_WAIT);
	solo_free(&w);
}

static uint32_t drop_nth_target;
static bool drop_nth_data(struct wire *w, const struct pkt *p)
{
	if (p->src == IP_A && parse(p).len > 0) {
		if (w->drop_count++ == drop_nth_target)
			return true;
	}
	return false;
}

static void run_one_loss(bool sack, uint64_t *fast, uint64_t *rto, uint64_t *sack_rtx, uint32_t *sack_acks)
{
	struct wire w;
	uint64_t ca, cb;
	struct tcp_config c1, c2;
	tcp_config_default(&c1);
	tcp_config_default(&c2);
	c1.no_sack = !sack;
	c1.snd_buf = 256 * 1024;
	c2.rcv_buf = 256 * 1024;
	wire_init(&w, &c1, &c2);
	w.delay_ms = 10;
	wire_log(&w, 4000);
	connect_pair(&w, &ca, &cb);
	drop_nth_target = 20;
	w.drop = drop_nth_data;
	struct flow f = { .total = 400000, .seed = 12 };
	for (int i = 0; i < 2000 && f.rcvd < f.total; i++) {
		pump(w.a.st, ca, w.b.st, cb, &f);
		wire_run(&w, 2);
	}
	assert_int_equal(f.rcvd, f.total);
	*fast = tcp_stats(w.a.st)->fast_retrans;
	*rto = tcp_stats(w.a.st)->rto_fired;
	*sack_rtx = tcp_stats(w.a.st)->sack_retrans;
	*sack_acks = 0;
	for (uint32_t i = 0; i < w.nlog; i++)
		if (w.log[i].src == IP_B && parse(&w.log[i]).nsack)
			(*sack_acks)++;
	wire_free(&w);
}

static void test_fast_retransmit_newreno(void **state)
{
	(void)state;
	uint64_t fast, rto, srtx;
	uint32_t sacks;
	run_one_loss(false, &fast, &rto, &srtx, &sacks);
	assert_int_equal(fast, 1);
	assert_int_equal(rto, 0);
	assert_int_equal(srtx, 0);
	assert_int_equal(sacks, 0);
}

static void test_sack_recovery(void **state)
{
	(void)state;
	uint64_t fast, rto, srtx;
	uint32_t sacks;
	run_one_loss(true, &fast, &rto, &srtx, &sacks);
	assert_int_equal(fast, 1);
	assert_int_equal(rto, 0);
	assert_true(sacks >= 3);
}

/* Several losses in one window: SACK recovers them all without a timeout. */
static bool drop_several(struct wire *w, const struct pkt *p)
{
	if (p->src == IP_A && parse(p).len > 0) {
		uint32_t n = w->drop_count++;
		return n == 30 || n == 33 || n == 36 || n == 40;
	}
	return false;
}

static void test_sack_multiple_losses(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct tcp_config c1, c2;
	tcp_config_default(&c1);
	tcp_config_default(&c2);
	c1.snd_buf = 256 * 1024;
	c2.rcv_buf = 256 * 1024;
	wire_init(&w, &c1, &c2);
	w.delay_ms = 10;
	connect_pair(&w, &ca, &cb);
	w.drop = drop_several;
	struct flow f = { .total = 400000, .seed = 13 };
	for (int i = 0; i < 2000 && f.rcvd < f.total; i++) {
		pump(w.a.st, ca, w.b.st, cb, &f);
		wire_run(&w, 2);
	}
	assert_int_equal(f.rcvd, f.total);
	const struct tcp_stats *s = tcp_stats(w.a.st);
	assert_int_equal(s->rto_fired, 0);
	assert_int_equal(s->fast_retrans, 1);
	assert_true(s->sack_retrans >= 3);
	assert_true(s->retrans <= 6);
	wire_free(&w);
}

/* ---- tests: SYN cookies ------------------------------------------------ */

static void test_syn_cookies(void **state)
{
	(void)state;
	struct wire w;
	struct tcp_config cfg;
	struct evlog l;
	tcp_config_default(&cfg);
	solo_init(&w, &cfg);
	assert_true(tcp_listen(w.b.st, 0, PORT_B, 1) >= 0);
	/* the first SYN fills the queue (backlog 1) */
	struct hs s1 = { .sport = 3001, .dport = PORT_B, .seq = 100, .flags = TH_SYN, .win = 65535 };
	inject(w.b.st, IP_A, IP_B, &s1);
	assert_int_equal(tcp_stats(w.b.st)->conns, 1);
	/* the second gets a cookie; nothing is allocated */
	uint8_t o[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 9, 0, 0, 0, 0, 1, 3, 3, 5 };
	struct hs s2 = { .sport = 3002, .dport = PORT_B, .seq = 0xfffffffeu, .flags = TH_SYN, .win = 65535 };
	memcpy(s2.opt, o, sizeof(o));
	s2.optlen = sizeof(o);
	inject(w.b.st, IP_A, IP_B, &s2);
	assert_int_equal(tcp_stats(w.b.st)->conns, 1);
	assert_int_equal(tcp_stats(w.b.st)->syn_cookies_sent, 1);
	struct parsed sa = parse(&w.log[w.nlog - 1]);
	assert_int_equal(sa.flags, TH_SYN | TH_ACK);
	assert_int_equal(sa.ack, 0xffffffffu);
	assert_true(sa.has_ts && sa.has_ws && sa.sackp);
	assert_int_equal(sa.mss, 1460);
	/* a forged ACK (wrong cookie) gets a RST and no connection */
	struct hs bad = { .sport = 3002, .dport = PORT_B, .seq = 0xffffffffu, .ack = sa.seq + 2,
			  .flags = TH_ACK, .win = 100 };
	uint8_t ts[] = { 1, 1, 8, 10, 0, 0, 0, 10, 0, 0, 0, 0 };
	memcpy(ts + 8, &(uint32_t){ htonl(sa.tsval) }, 4);
	memcpy(bad.opt, ts, sizeof(ts));
	bad.optlen = sizeof(ts);
	inject(w.b.st, IP_A, IP_B, &bad);
	assert_int_equal(tcp_stats(w.b.st)->conns, 1);
	assert_int_equal(tcp_stats(w.b.st)->syn_cookies_bad, 1);
	/* the right ACK, 70 s later (a cookie lives one to two 64 s periods),
	 * carrying data: the connection exists */
	solo_time(&w, 50000);
	struct hs ack = bad;
	ack.ack = sa.seq + 1;
	ack.data = "hi";
	ack.len = 2;
	ack.flags = TH_ACK | TH_PSH;
	inject(w.b.st, IP_A, IP_B, &ack);
	assert_int_equal(tcp_stats(w.b.st)->syn_cookies_ok, 1);
	poll_all(w.b.st, &l);
	const struct tcp_event *e = find_ev(&l, TCP_EV_ACCEPTED);
	assert_non_null(e);
	assert_int_equal(e->remote_port, 3002);
	struct tcp_conn_info in;
	assert_int_equal(tcp_conn_info(w.b.st, e->conn, &in), 0);
	assert_int_equal(in.state, TCP_ESTABLISHED);
	assert_true(in.ts_ok && in.sack_ok);
	assert_int_equal(in.snd_wscale, 5);
	assert_int_equal(in.mss, 1460 - 12);
	char buf[4];
	assert_int_equal(tcp_recv(w.b.st, e->conn, buf, 4), 2);
	assert_memory_equal(buf, "hi", 2);
	/* a cookie from too long ago is refused */
	struct hs s3 = { .sport = 3003, .dport = PORT_B, .seq = 500, .flags = TH_SYN, .win = 65535 };
	inject(w.b.st, IP_A, IP_B, &s3);
	struct parsed sa3 = parse(&w.log[w.nlog - 1]);
	solo_time(&w, 3 * 64000);
	struct hs late = { .sport = 3003, .dport = PORT_B, .seq = 501, .ack = sa3.seq + 1, .flags = TH_ACK,
			   .win = 100 };
	inject(w.b.st, IP_A, IP_B, &late);
	assert_int_equal(tcp_stats(w.b.st)->syn_cookies_ok, 1);
	solo_free(&w);
}

/* Two real stacks: many connects against backlog 1 all succeed, most
 * through cookies. */
static void test_syn_cookies_pair(void **state)
{
	(void)state;
	struct wire w;
	struct evlog l;
	wire_init(&w, NULL, NULL);
	assert_true(tcp_listen(w.b.st, 0, PORT_B, 1) >= 0);
	uint64_t c[20];
	for (int i = 0; i < 20; i++)
		assert_int_equal(tcp_connect(w.a.st, IP_A, 0, IP_B, PORT_B, &c[i]), 0);
	wire_run(&w, 100);
	int acc = 0, con = 0;
	while (poll_all(w.b.st, &l) > 0)
		for (int i = 0; i < l.n; i++)
			acc += l.ev[i].type == TCP_EV_ACCEPTED;
	while (poll_all(w.a.st, &l) > 0)
		for (int i = 0; i < l.n; i++)
			con += l.ev[i].type == TCP_EV_CONNECTED;
	assert_int_equal(acc, 20);
	assert_int_equal(con, 20);
	assert_true(tcp_stats(w.b.st)->syn_cookies_ok >= 18);
	wire_free(&w);
}

/* ---- tests: memory ----------------------------------------------------- */

static void test_time_wait_bounded(void **state)
{
	(void)state;
	struct wire w;
	struct tcp_config c1;
	struct evlog l;
	tcp_config_default(&c1);
	c1.time_wait_max = 8;
	c1.max_conns = 16;
	wire_init(&w, &c1, NULL);
	assert_true(tcp_listen(w.b.st, 0, PORT_B, 0) >= 0);
	for (int i = 0; i < 100; i++) {
		uint64_t ca;
		assert_int_equal(tcp_connect(w.a.st, IP_A, 0, IP_B, PORT_B, &ca), 0);
		wire_run(&w, 20);
		poll_all(w.b.st, &l);
		const struct tcp_event *e = find_ev(&l, TCP_EV_ACCEPTED);
		assert_non_null(e);
		tcp_close(w.a.st, ca);   /* a closes first: a gets TIME-WAIT */
		wire_run(&w, 20);
		tcp_close(w.b.st, e->conn);
		wire_run(&w, 20);
		poll_all(w.a.st, &l);
		assert_true(tcp_stats(w.a.st)->tw_conns <= 8);
		assert_true(tcp_stats(w.a.st)->conns <= 1);
	}
	assert_int_equal(tcp_stats(w.a.st)->tw_conns, 8);
	assert_true(tcp_stats(w.a.st)->tw_recycled >= 90);
	assert_int_equal(tcp_stats(w.b.st)->conns, 0);
	assert_int_equal(tcp_stats(w.b.st)->tw_conns, 0);
	wire_free(&w);
}

/* ---- the bulk test ----------------------------------------------------- */

static void test_bulk_lossy(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct tcp_config c1, c2;
	tcp_config_default(&c1);
	tcp_config_default(&c2);
	c1.snd_buf = c2.snd_buf = 128 * 1024;
	c1.rcv_buf = c2.rcv_buf = 128 * 1024;
	/* TCP_BULK_SEED=n runs the same test with another PRNG seed */
	rng = getenv("TCP_BULK_SEED") ? strtoull(getenv("TCP_BULK_SEED"), NULL, 0) : 42;
	wire_init(&w, &c1, &c2);
	connect_pair(&w, &ca, &cb);
	w.loss_pct = 2;
	w.dup_pct = 2;
	w.jitter_ms = 6;
	w.delay_ms = 3;
	struct flow f1 = { .total = 4u << 20, .seed = 21 }, f2 = { .total = 1u << 20, .seed = 22 };
	int iters = 0;
	uint64_t t0 = w.now;
	for (; iters < 100000 && (f1.rcvd < f1.total || f2.rcvd < f2.total); iters++) {
		pump(w.a.st, ca, w.b.st, cb, &f1);
		pump(w.b.st, cb, w.a.st, ca, &f2);
		wire_run(&w, 2);
	}
	assert_int_equal(f1.rcvd, f1.total);
	assert_int_equal(f2.rcvd, f2.total);
	assert_true(w.now - t0 < 600000);   /* simulated time: 10 minutes at most */
	/* orderly close after the transfer, both ways */
	tcp_shutdown(w.a.st, ca);
	tcp_shutdown(w.b.st, cb);
	for (int i = 0; i < 2000 && !(f1.eof && f2.eof); i++) {
		pump(w.a.st, ca, w.b.st, cb, &f1);
		pump(w.b.st, cb, w.a.st, ca, &f2);
		wire_run(&w, 5);
	}
	assert_true(f1.eof && f2.eof);
	const struct tcp_stats *s = tcp_stats(w.a.st);
	print_message("bulk: %d iterations, %llu ms simulated, a: %llu segs, %llu retrans, %llu rto, %llu fast, %llu sack rtx, %llu dup segs\n",
		      iters, (unsigned long long)(w.now - t0), (unsigned long long)s->segs_out,
		      (unsigned long long)s->retrans, (unsigned long long)s->rto_fired,
		      (unsigned long long)s->fast_retrans, (unsigned long long)s->sack_retrans,
		      (unsigned long long)tcp_stats(w.b.st)->dup_segs);
	tcp_close(w.a.st, ca);
	tcp_close(w.b.st, cb);
	wire_run(&w, 1000);
	assert_int_equal(tcp_stats(w.a.st)->conns + tcp_stats(w.b.st)->conns, 0);
	assert_int_equal(tcp_stats(w.a.st)->buf_bytes + tcp_stats(w.b.st)->buf_bytes, 0);
	wire_free(&w);
}

static void test_keepalive(void **state)
{
	(void)state;
	struct wire w;
	uint64_t ca, cb;
	struct tcp_config c1;
	struct evlog l;
	tcp_config_default(&c1);
	c1.keepalive_ms = 10000;
	c1.keepalive_intvl_ms = 1000;
	c1.keepalive_probes = 3;
	wire_init(&w, &c1, NULL);
	connect_pair(&w, &ca, &cb);
	wire_run(&w, 25000);   /* the peer answers: probes but no death */
	assert_true(tcp_stats(w.a.st)->keepalive_probes >= 2);
	assert_int_equal(state_of(w.a.st, ca), TCP_ESTABLISHED);
	w.drop = drop_all;     /* the peer vanishes */
	wire_run(&w, 20000);
	poll_all(w.a.st, &l);
	const struct tcp_event *e = find_ev(&l, TCP_EV_CLOSED);
	assert_non_null(e);
	assert_int_equal(e->err, -ETIMEDOUT);
	wire_free(&w);
}

static bool port_is_even(void *ctx, uint32_t rip, uint16_t rport, uint32_t lip, uint16_t lport)
{
	(void)ctx; (void)rip; (void)rport; (void)lip;
	return (lport & 1) == 0;
}

static void test_pick_port(void **state)
{
	(void)state;
	struct wire w;
	struct tcp_config c1;
	tcp_config_default(&c1);
	c1.port_ok = port_is_even;
	wire_init(&w, &c1, NULL);
	for (int i = 0; i < 50; i++) {
		uint64_t c;
		assert_int_equal(tcp_connect(w.a.st, IP_A, 0, IP_B, PORT_B, &c), 0);
		struct tcp_conn_info in;
		tcp_conn_info(w.a.st, c, &in);
		assert_int_equal(in.local_port & 1, 0);
		assert_true(in.local_port >= 32768 && in.local_port <= 60999);
	}
	assert_int_equal(tcp_stats(w.a.st)->conns, 50);
	uint64_t c;
	struct tcp_conn_info in;
	assert_int_equal(tcp_connect(w.a.st, IP_A, 40000, IP_B, PORT_B, &c), 0);
	tcp_conn_info(w.a.st, c, &in);
	assert_int_equal(tcp_connect(w.a.st, IP_A, 40000, IP_B, PORT_B, &c), -EADDRINUSE);
	wire_free(&w);
}

static void test_checksum(void **state)
{
	(void)state;
	/* RFC 1071 style check: a segment whose checksum field holds the
	 * computed value sums to all ones, for odd and even lengths and
	 * split payloads */
	uint8_t h[20] = { 0x12, 0x34, 0x00, 0x50, 1, 2, 3, 4, 5, 6, 7, 8, 0x50, 0x18, 0xff, 0xff };
	uint8_t d[7] = { 1, 2, 3, 4, 5, 6, 7 };
	struct iovec iov[2] = { { d, 3 }, { d + 3, 4 } };
	uint16_t s = tcp_checksum(IP_A, IP_B, h, 20, iov, 2);
	memcpy(h + 16, &s, 2);
	struct tcp_seg_in in = { .src_ip = IP_A, .dst_ip = IP_B, .hdr = h, .hdr_len = 20, .data = d, .data_len = 7 };
	assert_true(tcp_checksum_ok(&in));
	h[4] ^= 1;
	assert_false(tcp_checksum_ok(&in));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checksum),
		cmocka_unit_test(test_handshake_options),
		cmocka_unit_test(test_active_close_states),
		cmocka_unit_test(test_close_orphan),
		cmocka_unit_test(test_simultaneous_close),
		cmocka_unit_test(test_simultaneous_open),
		cmocka_unit_test(test_passive_close_and_abort),
		cmocka_unit_test(test_rst_closed_port),
		cmocka_unit_test(test_rst_acceptability),
		cmocka_unit_test(test_connect_refused_and_syn_sent_checks),
		cmocka_unit_test(test_wraparound),
		cmocka_unit_test(test_zero_window_probe),
		cmocka_unit_test(test_read_enable),
		cmocka_unit_test(test_syn_rto_backoff),
		cmocka_unit_test(test_data_rto_backoff_karn),
		cmocka_unit_test(test_karn_no_sample_from_retransmission),
		cmocka_unit_test(test_delayed_ack),
		cmocka_unit_test(test_ooo_reassembly),
		cmocka_unit_test(test_fast_retransmit_newreno),
		cmocka_unit_test(test_sack_recovery),
		cmocka_unit_test(test_sack_multiple_losses),
		cmocka_unit_test(test_syn_cookies),
		cmocka_unit_test(test_syn_cookies_pair),
		cmocka_unit_test(test_time_wait_bounded),
		cmocka_unit_test(test_keepalive),
		cmocka_unit_test(test_pick_port),
		cmocka_unit_test(test_bulk_lossy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
