/* The per-core userspace TCP stack: see net/dpdk/tcp.h for the contract
 * and the list of what is implemented.
 *
 * Shape. A connection (struct tcb) comes from a pool allocated once; a
 * hash on the 4-tuple finds it. Its send buffer is a ring holding every
 * byte from the oldest unacknowledged one (sbuf_seq) on, so retransmissions
 * are re-emitted straight from it. Its receive buffer is a ring whose first
 * rbuf_len bytes are in order and unread; out-of-order bytes are written at
 * their final place beyond them and tracked as a few [start, end) ranges
 * (which are also the SACK blocks we send), so reassembly is a change of
 * rbuf_len, never a copy, and costs no memory beyond the window: the window
 * we offer is never larger than the room left in the ring.
 *
 * Timers. Every connection has one wheel timer, armed at the earliest of
 * its deadlines (retransmission, delayed ACK, persist, keepalive, close).
 * Deadlines move often (every ACK restarts the retransmission timer) but
 * the wheel timer is only re-armed when a deadline moves earlier; when it
 * fires late for a deadline that moved later, the handler just re-arms it.
 *
 * TIME-WAIT is a compact table of tuples (struct tw, 40 bytes) in a FIFO
 * ring: entries are added in order of expiry, so expiry pops the head and
 * the cap recycles the oldest.
 *
 * The state machine follows RFC 9293 section 3.10.7 step by step; the
 * comments name the step where the order matters.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "net/dpdk/tcp.h"
#include "net/wheel.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

/* ---- constants --------------------------------------------------------- */

#define TH_FIN 0x01u
#define TH_SYN 0x02u
#define TH_RST 0x04u
#define TH_PSH 0x08u
#define TH_ACK 0x10u
#define TH_URG 0x20u

#define OPT_EOL   0
#define OPT_NOP   1
#define OPT_MSS   2
#define OPT_WS    3
#define OPT_SACKP 4
#define OPT_SACK  5
#define OPT_TS    8

#define DEFAULT_MSS     536u      /* RFC 9293 3.7.1: when the peer sends none */
#define MAX_WSCALE      14u
#define OOO_MAX         8u        /* out-of-order ranges held per connection */
#define SACK_MAX        8u        /* SACK scoreboard ranges per connection */
#define DUPTHRESH       3u
#define EPH_LO          32768u
#define EPH_HI          60999u
#define PAWS_IDLE_MS    (24ull * 24 * 3600 * 1000)   /* RFC 7323 5.5 */
#define COOKIE_PERIOD_MS 64000u   /* cookie clock: a cookie lives 1-2 periods */
#define TS_OPTBITS      6u        /* low TSval bits carrying cookie options */

#define WHEEL_KIND_CONN 0
#define WHEEL_KIND_TW   1

/* Per-connection flags. */
#define F_APP        0x0001u   /* the caller holds the id */
#define F_PASSIVE    0x0002u   /* from a listener (counted in its SYN queue while SYN-RECEIVED) */
#define F_FIN_QUEUED 0x0004u   /* shutdown: FIN after the data */
#define F_FIN_RCVD   0x0008u   /* peer's FIN consumed (rcv_nxt counts it) */
#define F_OOO_FIN    0x0010u   /* peer's FIN seen beyond a hole, at ooo_fin */
#define F_TS_OK      0x0020u
#define F_SACK_OK    0x0040u
#define F_WS_OK      0x0080u
#define F_ACK_NOW    0x0100u
#define F_ACK_PEND   0x0200u   /* unacknowledged in-order data (delayed ACK) */
#define F_RTT_TIMING 0x0400u   /* rtt_seq is timed (no timestamps) */
#define F_RECOVERY   0x0800u
#define F_WANT_WRITE 0x1000u
#define F_RD_OFF     0x2000u
#define F_RD_PEND    0x4000u   /* READABLE while reading was off */
#define F_ON_EVLIST  0x8000u
#define F_IN_USE     0x10000u

/* Pending events, in tcb.ev. */
#define EV_ACCEPTED  0x01u
#define EV_CONNECTED 0x02u
#define EV_READABLE  0x04u
#define EV_WRITABLE  0x08u
#define EV_CLOSED    0x10u

/* ---- sequence arithmetic (RFC 9293 3.4: modulo 2^32) -------------------- */

static inline bool seq_lt(uint32_t a, uint32_t b) { return (int32_t)(a - b) < 0; }
static inline bool seq_le(uint32_t a, uint32_t b) { return (int32_t)(a - b) <= 0; }
static inline bool seq_gt(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }
static inline bool seq_ge(uint32_t a, uint32_t b) { return (int32_t)(a - b) >= 0; }
static inline uint32_t seq_max(uint32_t a, uint32_t b) { return seq_gt(a, b) ? a : b; }
static inline uint32_t seq_min(uint32_t a, uint32_t b) { return seq_lt(a, b) ? a : b; }

static inline uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }
static inline uint32_t max_u32(uint32_t a, uint32_t b) { return a > b ? a : b; }

static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t ld32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline void st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void st32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* ---- structures -------------------------------------------------------- */

struct range {
	uint32_t start, end;   /* [start, end) in sequence space */
};

struct tcb {
	struct wheel_timer timer;
	uint64_t armed_at;        /* when timer fires, if armed */
	uint64_t t_rtx, t_delack, t_persist, t_keep, t_close;   /* deadlines, 0: off */

	uint32_t flags;
	uint32_t gen;
	uint32_t hnext;           /* hash chain: index + 1, 0 ends */
	uint32_t evnext;          /* event list: index + 1 */
	uint8_t  state;
	uint8_t  ev;
	int16_t  listener;
	int32_t  err;
	void    *udata;

	uint32_t lip, rip;
	uint16_t lport, rport;

	/* send side */
	uint32_t iss, snd_una, snd_nxt, snd_max;
	uint32_t snd_wnd, max_snd_wnd, snd_wl1, snd_wl2;
	uint32_t fin_seq;         /* valid with F_FIN_QUEUED */
	uint32_t sbuf_seq;        /* sequence of sbuf's first byte */
	uint32_t sbuf_len, sbuf_head;
	uint8_t *sbuf;
	uint16_t mss;             /* payload bytes per segment we send */
	uint16_t peer_mss;
	uint8_t  snd_wscale, rcv_wscale;
	uint8_t  backoff;         /* RTO exponent: RTOs (or persist probes) since the last RTT sample */
	uint8_t  retries;         /* RTOs since the last forward progress: the give-up count */
	uint8_t  nsack;
	uint8_t  dupacks;
	uint8_t  ka_probes;
	uint8_t  nooo, ooo_last;
	uint32_t cwnd, ssthresh, recover, bytes_acked, high_rxt;
	struct range sack[SACK_MAX];   /* scoreboard: SACKed ranges above snd_una, sorted */

	/* RTT, RFC 6298, in ms scaled as in the RFC's reference (srtt << 3, rttvar << 2) */
	uint32_t srtt8, rttvar4, rto;
	uint32_t rtt_seq;
	uint64_t rtt_time;

	/* timestamps, RFC 7323 */
	uint32_t ts_recent, last_ack_sent;
	uint64_t ts_recent_age;

	/* receive side */
	uint32_t irs, rcv_nxt, rcv_adv;
	uint32_t rbuf_len, rbuf_head;
	uint8_t *rbuf;
	uint32_t ooo_fin;
	uint8_t  segs_unacked;
	struct range ooo[OOO_MAX];     /* out-of-order data above rcv_nxt, sorted */
};

struct tw {
	uint32_t lip, rip;
	uint16_t lport, rport;
	uint32_t snd_nxt, rcv_nxt, ts_recent;
	uint32_t hnext;           /* index + 1 */
	uint8_t  live, ts_ok;
	uint8_t  pad[2];
	uint64_t expire;
};

struct listener {
	uint32_t ip;
	uint16_t port;
	bool     used;
	uint32_t backlog, nsyn;
};

struct bufcache {
	void   *head;
	uint32_t n;
};

struct tcp_stack {
	struct tcp_config cfg;
	uint64_t now;
	uint32_t ts_off;
	uint32_t sbuf_size, rbuf_size;    /* powers of two */
	uint8_t  rcv_wscale;

	struct tcb *conns;
	uint32_t nconns, free_head;       /* free list: index + 1 */
	uint32_t *hash;                   /* index + 1 */
	uint32_t hmask;

	struct tw *tws;
	uint32_t tw_cap, tw_head, tw_n;   /* FIFO ring */
	uint32_t *tw_hash;
	struct wheel_timer tw_timer;

	uint32_t ev_head, ev_tail;        /* index + 1 */

	struct listener lst[TCP_MAX_LISTENERS];
	struct bufcache scache, rcache;
	struct tcp_stats stats;
	uint8_t hdr[60];
	struct wheel wheel;
};

/* ---- keyed hashing: SipHash-2-4 over 64-bit words ----------------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do { \
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32); \
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2; \
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0; \
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32); \
} while (0)

static uint64_t siphash(const uint64_t key[2], const uint64_t *m, int n)
{
	uint64_t v0 = key[0] ^ 0x736f6d6570736575ull, v1 = key[1] ^ 0x646f72616e646f6dull;
	uint64_t v2 = key[0] ^ 0x6c7967656e657261ull, v3 = key[1] ^ 0x7465646279746573ull;
	uint64_t b = (uint64_t)(n * 8) << 56;

	for (int i = 0; i < n; i++) {
		v3 ^= m[i];
		SIPROUND; SIPROUND;
		v0 ^= m[i];
	}
	v3 ^= b;
	SIPROUND; SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND; SIPROUND; SIPROUND; SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

static inline uint64_t tuple_word(uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	(void)lip;
	return (uint64_t)rip << 32 | (uint32_t)lport << 16 | rport;
}

/* The lookup hash: per packet, so a cheap mix, keyed so that a peer cannot
 * aim at one chain without knowing the secret. */
static inline uint32_t tuple_hash(const struct tcp_stack *st, uint32_t lip, uint16_t lport,
				  uint32_t rip, uint16_t rport)
{
	uint64_t x = tuple_word(lip, lport, rip, rport) ^ st->cfg.secret[0];
	x ^= (uint64_t)lip * 0x9e3779b97f4a7c15ull;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return (uint32_t)x;
}

/* ---- checksum ---------------------------------------------------------- */

static uint64_t sum_bytes(uint64_t s, const uint8_t *p, size_t n, bool *odd)
{
	/* Bytes at an odd offset of the whole segment go in the low half. */
	if (*odd && n) {
		s += *p++;
		n--;
		*odd = false;
	}
	while (n >= 2) {
		s += (uint32_t)p[0] << 8 | p[1];
		p += 2;
		n -= 2;
	}
	if (n) {
		s += (uint32_t)p[0] << 8;
		*odd = true;
	}
	return s;
}

static uint16_t fold(uint64_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

static uint64_t phdr_sum(uint32_t src, uint32_t dst, size_t len)
{
	/* Addresses are in network order in memory: sum their bytes. */
	uint8_t b[8];
	bool odd = false;
	memcpy(b, &src, 4);
	memcpy(b + 4, &dst, 4);
	return sum_bytes(6 + (uint64_t)len, b, 8, &odd);
}

uint16_t tcp_checksum(uint32_t src_ip, uint32_t dst_ip, const void *hdr, size_t hdr_len,
		      const struct iovec *iov, int iovcnt)
{
	size_t len = hdr_len;
	uint64_t s;
	bool odd = false;
	uint16_t r;

	for (int i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	s = phdr_sum(src_ip, dst_ip, len);
	s = sum_bytes(s, hdr, hdr_len, &odd);
	for (int i = 0; i < iovcnt; i++)
		s = sum_bytes(s, iov[i].iov_base, iov[i].iov_len, &odd);
	r = (uint16_t)~fold(s);
	return (uint16_t)(r >> 8 | r << 8);   /* to network order in memory */
}

bool tcp_checksum_ok(const struct tcp_seg_in *seg)
{
	uint64_t s;
	bool odd = false;

	s = phdr_sum(seg->src_ip, seg->dst_ip, seg->hdr_len + seg->data_len);
	s = sum_bytes(s, seg->hdr, seg->hdr_len, &odd);
	s = sum_bytes(s, seg->data, seg->data_len, &odd);
	return fold(s) == 0xffff;
}

int tcp_seg_split(struct tcp_seg_in *seg, const void *l4, size_t l4_len,
		  uint32_t src_ip, uint32_t dst_ip)
{
	const uint8_t *p = l4;
	size_t doff;

	if (l4_len < 20)
		return -EINVAL;
	doff = (size_t)(p[12] >> 4) * 4;
	if (doff < 20 || doff > l4_len)
		return -EINVAL;
	seg->src_ip = src_ip;
	seg->dst_ip = dst_ip;
	seg->hdr = p;
	seg->hdr_len = doff;
	seg->data = p + doff;
	seg->data_len = l4_len - doff;
	return 0;
}

/* ---- buffers ----------------------------------------------------------- */

static uint8_t *buf_get(struct tcp_stack *st, struct bufcache *bc, uint32_t size)
{
	void *b = bc->head;

	if (b) {
		memcpy(&bc->head, b, sizeof(void *));
		bc->n--;
	} else {
		b = malloc(size);
		if (!b)
			return NULL;
	}
	st->stats.buf_bytes += size;
	return b;
}

static void buf_put(struct tcp_stack *st, struct bufcache *bc, uint8_t *b, uint32_t size)
{
	if (!b)
		return;
	st->stats.buf_bytes -= size;
	if (bc->n >= st->cfg.buf_cache) {
		free(b);
		return;
	}
	memcpy(b, &bc->head, sizeof(void *));
	bc->head = b;
	bc->n++;
}

static void cache_drain(struct bufcache *bc)
{
	while (bc->head) {
		void *b = bc->head;
		memcpy(&bc->head, b, sizeof(void *));
		free(b);
	}
	bc->n = 0;
}

/* Copy n bytes into ring r (size mask+1) at pos, wrapping. */
static void ring_write(uint8_t *r, uint32_t mask, uint32_t pos, const uint8_t *src, uint32_t n)
{
	uint32_t p = pos & mask, first = min_u32(n, mask + 1 - p);
	memcpy(r + p, src, first);
	if (n > first)
		memcpy(r, src + first, n - first);
}

static void ring_read(const uint8_t *r, uint32_t mask, uint32_t pos, uint8_t *dst, uint32_t n)
{
	uint32_t p = pos & mask, first = min_u32(n, mask + 1 - p);
	memcpy(dst, r + p, first);
	if (n > first)
		memcpy(dst + first, r, n - first);
}

/* ---- ids, pool, lookup ------------------------------------------------- */

static inline uint32_t conn_index(const struct tcp_stack *st, const struct tcb *c)
{
	return (uint32_t)(c - st->conns);
}

static inline uint64_t conn_id(const struct tcp_stack *st, const struct tcb *c)
{
	return (uint64_t)c->gen << 32 | (conn_index(st, c) + 1);
}

static struct tcb *conn_by_id(const struct tcp_stack *st, uint64_t id)
{
	uint32_t i = (uint32_t)id;
	struct tcb *c;

	if (i == 0 || i > st->nconns)
		return NULL;
	c = &st->conns[i - 1];
	if (!(c->flags & F_IN_USE) || !(c->flags & F_APP) || c->gen != (uint32_t)(id >> 32))
		return NULL;
	return c;
}

static struct tcb *conn_lookup(const struct tcp_stack *st, uint32_t lip, uint16_t lport,
			       uint32_t rip, uint16_t rport)
{
	uint32_t i = st->hash[tuple_hash(st, lip, lport, rip, rport) & st->hmask];

	while (i) {
		struct tcb *c = &st->conns[i - 1];
		if (c->rip == rip && c->rport == rport && c->lport == lport && c->lip == lip)
			return c;
		i = c->hnext;
	}
	return NULL;
}

static void hash_insert(struct tcp_stack *st, struct tcb *c)
{
	uint32_t *b = &st->hash[tuple_hash(st, c->lip, c->lport, c->rip, c->rport) & st->hmask];
	c->hnext = *b;
	*b = conn_index(st, c) + 1;
}

static void hash_remove(struct tcp_stack *st, struct tcb *c)
{
	uint32_t *p = &st->hash[tuple_hash(st, c->lip, c->lport, c->rip, c->rport) & st->hmask];
	uint32_t me = conn_index(st, c) + 1;

	while (*p) {
		if (*p == me) {
			*p = c->hnext;
			c->hnext = 0;
			return;
		}
		p = &st->conns[*p - 1].hnext;
	}
}

static struct tcb *conn_alloc(struct tcp_stack *st, uint32_t lip, uint16_t lport,
			      uint32_t rip, uint16_t rport)
{
	struct tcb *c;
	uint32_t gen, evflag;

	if (st->free_head == 0)
		return NULL;
	c = &st->conns[st->free_head - 1];
	st->free_head = c->hnext;
	gen = c->gen;
	evflag = c->flags & F_ON_EVLIST;
	/* The event list may still link this slot (see conn_free): keep it. */
	uint32_t evnext = c->evnext;
	memset(c, 0, sizeof(*c));
	c->gen = gen;
	c->evnext = evnext;
	c->flags = F_IN_USE | evflag;
	c->listener = -1;
	c->lip = lip;
	c->lport = lport;
	c->rip = rip;
	c->rport = rport;
	c->rto = st->cfg.rto_initial_ms;
	c->mss = DEFAULT_MSS;
	c->peer_mss = DEFAULT_MSS;
	wheel_timer_init(&c->timer, WHEEL_KIND_CONN);
	hash_insert(st, c);
	st->stats.conns++;
	return c;
}

static void conn_free(struct tcp_stack *st, struct tcb *c)
{
	if (c->state == TCP_SYN_RECEIVED && (c->flags & F_PASSIVE) && c->listener >= 0)
		st->lst[c->listener].nsyn--;
	wheel_del(&st->wheel, &c->timer);
	hash_remove(st, c);
	buf_put(st, &st->scache, c->sbuf, st->sbuf_size);
	buf_put(st, &st->rcache, c->rbuf, st->rbuf_size);
	c->sbuf = c->rbuf = NULL;
	/* A slot on the event list stays there with no events (removing from
	 * a singly linked list would be a walk); tcp_poll skips it. */
	c->flags &= F_ON_EVLIST;
	c->ev = 0;
	c->state = TCP_CLOSED;
	c->gen++;
	c->hnext = st->free_head;
	st->free_head = conn_index(st, c) + 1;
	st->stats.conns--;
}

static void ev_raise(struct tcp_stack *st, struct tcb *c, uint8_t ev)
{
	if (!(c->flags & F_APP))
		return;
	if (ev == EV_READABLE && (c->flags & F_RD_OFF)) {
		c->flags |= F_RD_PEND;
		return;
	}
	c->ev |= ev;
	if (!(c->flags & F_ON_EVLIST)) {
		c->flags |= F_ON_EVLIST;
		c->evnext = 0;
		if (st->ev_tail)
			st->conns[st->ev_tail - 1].evnext = conn_index(st, c) + 1;
		else
			st->ev_head = conn_index(st, c) + 1;
		st->ev_tail = conn_index(st, c) + 1;
	}
}

/* ---- TIME-WAIT table --------------------------------------------------- */

static struct tw *tw_lookup(const struct tcp_stack *st, uint32_t lip, uint16_t lport,
			    uint32_t rip, uint16_t rport)
{
	uint32_t i = st->tw_hash[tuple_hash(st, lip, lport, rip, rport) & st->hmask];

	while (i) {
		struct tw *t = &st->tws[i - 1];
		if (t->rip == rip && t->rport == rport && t->lport == lport && t->lip == lip)
			return t;
		i = t->hnext;
	}
	return NULL;
}

static void tw_unhash(struct tcp_stack *st, struct tw *t)
{
	uint32_t *p = &st->tw_hash[tuple_hash(st, t->lip, t->lport, t->rip, t->rport) & st->hmask];
	uint32_t me = (uint32_t)(t - st->tws) + 1;

	if (!t->live)
		return;
	while (*p) {
		if (*p == me) {
			*p = t->hnext;
			break;
		}
		p = &st->tws[*p - 1].hnext;
	}
	t->live = 0;
	st->stats.tw_conns--;
}

static void tw_pop(struct tcp_stack *st)
{
	struct tw *t = &st->tws[st->tw_head];
	tw_unhash(st, t);
	st->tw_head = (st->tw_head + 1) % st->tw_cap;
	st->tw_n--;
}

static void tw_arm(struct tcp_stack *st)
{
	while (st->tw_n && !st->tws[st->tw_head].live)
		tw_pop(st);
	if (st->tw_n)
		wheel_add(&st->wheel, &st->tw_timer, st->now,
			  st->tws[st->tw_head].expire > st->now ? st->tws[st->tw_head].expire - st->now : 0);
	else
		wheel_del(&st->wheel, &st->tw_timer);
}

static void tw_timer_fn(struct wheel *w, struct wheel_timer *t, uint64_t now)
{
	struct tcp_stack *st = container_of(t, struct tcp_stack, tw_timer);
	(void)w;
	while (st->tw_n && st->tws[st->tw_head].expire <= now)
		tw_pop(st);
	tw_arm(st);
}

/* Move c into the TIME-WAIT table and free it. */
static void tw_enter(struct tcp_stack *st, struct tcb *c)
{
	struct tw *t;
	uint32_t *b;

	if (st->tw_cap == 0) {
		conn_free(st, c);
		return;
	}
	if (st->tw_n == st->tw_cap) {
		if (st->tws[st->tw_head].live)
			st->stats.tw_recycled++;
		tw_pop(st);
	}
	t = &st->tws[(st->tw_head + st->tw_n) % st->tw_cap];
	st->tw_n++;
	t->lip = c->lip;
	t->rip = c->rip;
	t->lport = c->lport;
	t->rport = c->rport;
	t->snd_nxt = c->snd_max;
	t->rcv_nxt = c->rcv_nxt;
	t->ts_recent = c->ts_recent;
	t->ts_ok = (c->flags & F_TS_OK) != 0;
	t->live = 1;
	t->expire = st->now + st->cfg.time_wait_ms;
	b = &st->tw_hash[tuple_hash(st, t->lip, t->lport, t->rip, t->rport) & st->hmask];
	t->hnext = *b;
	*b = (uint32_t)(t - st->tws) + 1;
	st->stats.tw_conns++;
	conn_free(st, c);
	if (!wheel_armed(&st->tw_timer))
		tw_arm(st);
}

/* ---- timers ------------------------------------------------------------ */

static void conn_timer_arm(struct tcp_stack *st, struct tcb *c)
{
	uint64_t d[5] = { c->t_rtx, c->t_delack, c->t_persist, c->t_keep, c->t_close };
	uint64_t m = 0;

	for (int i = 0; i < 5; i++)
		if (d[i] && (m == 0 || d[i] < m))
			m = d[i];
	if (m == 0)
		return;   /* an armed timer fires and finds nothing: cheaper than a delete now */
	if (wheel_armed(&c->timer) && c->armed_at <= m)
		return;
	c->armed_at = m;
	wheel_add(&st->wheel, &c->timer, st->now, m > st->now ? m - st->now : 0);
}

static inline uint32_t rto_backed(const struct tcp_stack *st, const struct tcb *c)
{
	uint64_t r = (uint64_t)c->rto << min_u32(c->backoff, 20);
	return r > st->cfg.rto_max_ms ? st->cfg.rto_max_ms : (uint32_t)r;
}

static void rtx_restart(struct tcp_stack *st, struct tcb *c)
{
	c->t_rtx = st->now + rto_backed(st, c);
	conn_timer_arm(st, c);
}

static void keep_restart(struct tcp_stack *st, struct tcb *c)
{
	if (st->cfg.keepalive_ms && (c->flags & F_APP)) {
		c->t_keep = st->now + st->cfg.keepalive_ms;
		c->ka_probes = 0;
	}
}

/* ---- segment output ---------------------------------------------------- */

static inline uint32_t ts_now(const struct tcp_stack *st)
{
	return (uint32_t)st->now + st->ts_off;
}

static int emit_raw(struct tcp_stack *st, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport,
		    uint32_t seq, uint32_t ack, uint8_t flags, uint16_t win, size_t optlen,
		    const struct iovec *iov, int iovcnt, uint32_t dlen)
{
	uint8_t *h = st->hdr;
	struct tcp_seg_out out;
	size_t hl = 20 + optlen;
	int rc;

	assert(optlen <= 40 && optlen % 4 == 0);
	st16(h, lport);
	st16(h + 2, rport);
	st32(h + 4, seq);
	st32(h + 8, (flags & TH_ACK) ? ack : 0);
	h[12] = (uint8_t)(hl / 4) << 4;
	h[13] = flags;
	st16(h + 14, win);
	h[16] = h[17] = 0;
	h[18] = h[19] = 0;
	switch (st->cfg.csum) {
	case TCP_CSUM_FULL: {
		uint16_t s = tcp_checksum(lip, rip, h, hl, iov, iovcnt);
		memcpy(h + 16, &s, 2);
		break;
	}
	case TCP_CSUM_PSEUDO:
		st16(h + 16, fold(phdr_sum(lip, rip, hl + dlen)));
		break;
	default:
		break;
	}
	out.src_ip = lip;
	out.dst_ip = rip;
	out.hdr = h;
	out.hdr_len = (uint16_t)hl;
	out.iov = iov;
	out.iovcnt = (uint16_t)iovcnt;
	out.data_len = dlen;
	st->stats.segs_out++;
	st->stats.bytes_out += dlen;
	if (flags & TH_RST)
		st->stats.rst_out++;
	rc = st->cfg.emit(st->cfg.ctx, &out);
	if (rc < 0)
		st->stats.emit_fail++;
	return rc;
}

/* Options go into st->hdr + 20; these return their length. */
static size_t opt_ts(uint8_t *o, uint32_t val, uint32_t ecr)
{
	o[0] = OPT_NOP; o[1] = OPT_NOP; o[2] = OPT_TS; o[3] = 10;
	st32(o + 4, val);
	st32(o + 8, ecr);
	return 12;
}

static size_t opt_syn(uint8_t *o, uint16_t mss, bool ws, uint8_t wscale, bool sack, bool ts,
		      uint32_t tsval, uint32_t tsecr)
{
	size_t n = 0;
	o[n++] = OPT_MSS; o[n++] = 4; st16(o + n, mss); n += 2;
	if (ts) {
		if (sack) {
			o[n++] = OPT_SACKP; o[n++] = 2;
		} else {
			o[n++] = OPT_NOP; o[n++] = OPT_NOP;
		}
		o[n++] = OPT_TS; o[n++] = 10;
		st32(o + n, tsval); st32(o + n + 4, tsecr); n += 8;
	} else if (sack) {
		o[n++] = OPT_NOP; o[n++] = OPT_NOP; o[n++] = OPT_SACKP; o[n++] = 2;
	}
	if (ws) {
		o[n++] = OPT_NOP; o[n++] = OPT_WS; o[n++] = 3; o[n++] = wscale;
	}
	return n;
}

/* The window to advertise, moving rcv_adv. Receiver SWS avoidance (RFC
 * 9293 3.8.6.2.2): the right edge moves only by at least min(buffer/2,
 * MSS); it never moves left (no shrinking). */
static uint16_t rcv_window(struct tcp_stack *st, struct tcb *c, bool syn)
{
	uint32_t room = (c->flags & F_APP) ? st->rbuf_size - c->rbuf_len : st->rbuf_size;
	uint32_t edge = c->rcv_nxt + room;
	uint32_t win;

	if (syn) {
		win = min_u32(room, 65535);
		c->rcv_adv = c->rcv_nxt + win;
		return (uint16_t)win;
	}
	edge -= (edge - c->rcv_nxt) & ((1u << c->rcv_wscale) - 1);
	if (seq_lt(edge, c->rcv_adv) ||
	    (uint32_t)(edge - c->rcv_adv) < min_u32(st->rbuf_size / 2, c->mss))
		edge = seq_max(c->rcv_adv, c->rcv_nxt);
	win = edge - c->rcv_nxt;
	c->rcv_adv = edge;
	win >>= c->rcv_wscale;
	return (uint16_t)min_u32(win, 65535);
}

/* Send one segment of c: seq, flags, dlen payload bytes from the send
 * buffer at seq. Adds timestamps and, if there is room, SACK blocks. */
static int send_seg(struct tcp_stack *st, struct tcb *c, uint32_t seq, uint8_t flags, uint32_t dlen)
{
	uint8_t *o = st->hdr + 20;
	size_t ol = 0;
	struct iovec iov[2];
	int iovcnt = 0;
	uint16_t win;
	bool syn = flags & TH_SYN;

	if (c->state != TCP_SYN_SENT || !syn)
		flags |= TH_ACK;
	win = rcv_window(st, c, syn);
	if (syn) {
		ol = opt_syn(o, st->cfg.mss,
			     c->state == TCP_SYN_SENT ? !st->cfg.no_wscale : (c->flags & F_WS_OK) != 0,
			     st->rcv_wscale,
			     c->state == TCP_SYN_SENT ? !st->cfg.no_sack : (c->flags & F_SACK_OK) != 0,
			     c->state == TCP_SYN_SENT ? !st->cfg.no_timestamps : (c->flags & F_TS_OK) != 0,
			     ts_now(st), c->ts_recent);
		while (ol & 3)
			o[ol++] = OPT_NOP;
	} else {
		if (c->flags & F_TS_OK)
			ol = opt_ts(o, ts_now(st), c->ts_recent);
		if ((c->flags & F_SACK_OK) && c->nooo && !(flags & TH_RST)) {
			/* RFC 2018 4: the first block holds the most recent
			 * segment, then the others; never beyond 40 option bytes
			 * nor the MSS with the payload. */
			size_t room = 40 - ol;
			uint32_t nb = (uint32_t)((room - 4) / 8), k = 0;
			if (dlen && dlen + ol + 12 > c->mss + ((c->flags & F_TS_OK) ? 12u : 0u))
				nb = 0;
			nb = min_u32(nb, c->nooo);
			if (nb) {
				uint8_t *p = o + ol;
				p[0] = OPT_NOP; p[1] = OPT_NOP; p[2] = OPT_SACK; p[3] = (uint8_t)(2 + 8 * nb);
				p += 4;
				uint32_t first = c->ooo_last < c->nooo ? c->ooo_last : 0;
				st32(p, c->ooo[first].start); st32(p + 4, c->ooo[first].end);
				p += 8;
				k = 1;
				for (int i = (int)c->nooo - 1; i >= 0 && k < nb; i--) {
					if ((uint32_t)i == first)
						continue;
					st32(p, c->ooo[i].start); st32(p + 4, c->ooo[i].end);
					p += 8;
					k++;
				}
				ol += 4 + 8 * k;
			}
		}
	}
	if (dlen) {
		uint32_t mask = st->sbuf_size - 1;
		uint32_t pos = (c->sbuf_head + (seq - c->sbuf_seq)) & mask;
		uint32_t first = min_u32(dlen, st->sbuf_size - pos);
		iov[0].iov_base = c->sbuf + pos;
		iov[0].iov_len = first;
		iovcnt = 1;
		if (dlen > first) {
			iov[1].iov_base = c->sbuf;
			iov[1].iov_len = dlen - first;
			iovcnt = 2;
		}
		flags |= TH_PSH;
	}
	if (flags & TH_ACK) {
		c->last_ack_sent = c->rcv_nxt;
		c->flags &= ~(F_ACK_NOW | F_ACK_PEND);
		c->segs_unacked = 0;
		c->t_delack = 0;
	}
	return emit_raw(st, c->lip, c->lport, c->rip, c->rport, seq, c->rcv_nxt, flags, win, ol,
			iov, iovcnt, dlen);
}

/* A pure ACK carries snd_max, not snd_nxt: after a timeout snd_nxt goes
 * back to snd_una, and a peer that has those bytes would find an ACK with
 * that sequence number unacceptable and drop it. */
static void send_ack(struct tcp_stack *st, struct tcb *c)
{
	send_seg(st, c, c->snd_max, TH_ACK, 0);
}

/* RFC 5961: a challenge ACK, rate-unlimited (the per-core budget is the
 * RX burst anyway). */
static void challenge_ack(struct tcp_stack *st, struct tcb *c)
{
	st->stats.challenge_acks++;
	send_ack(st, c);
}

/* RST for a segment that reached no connection (RFC 9293 3.10.7.1). */
static void send_rst_reply(struct tcp_stack *st, const struct tcp_seg_in *seg, uint16_t sport,
			   uint16_t dport, uint32_t seq, uint32_t ack, uint8_t flags, uint32_t seglen)
{
	if (flags & TH_RST)
		return;
	if (flags & TH_ACK)
		emit_raw(st, seg->dst_ip, dport, seg->src_ip, sport, ack, 0, TH_RST, 0, 0, NULL, 0, 0);
	else
		emit_raw(st, seg->dst_ip, dport, seg->src_ip, sport, 0, seq + seglen, TH_RST | TH_ACK,
			 0, 0, NULL, 0, 0);
}

/* ---- RTT and congestion ------------------------------------------------ */

static void rtt_sample(struct tcp_stack *st, struct tcb *c, uint32_t r)
{
	if (r == 0)
		r = 1;
	if (c->srtt8 == 0) {
		c->srtt8 = r << 3;
		c->rttvar4 = r << 1;          /* RTTVAR = R/2, scaled by 4 */
	} else {
		int32_t delta = (int32_t)r - (int32_t)(c->srtt8 >> 3);
		uint32_t ad = delta < 0 ? (uint32_t)-delta : (uint32_t)delta;
		/* rttvar = 3/4 rttvar + 1/4 |delta|; srtt = 7/8 srtt + 1/8 r */
		c->rttvar4 = c->rttvar4 - (c->rttvar4 >> 2) + ad;
		c->srtt8 = (uint32_t)((int32_t)c->srtt8 + delta);
	}
	{
		uint32_t var = c->rttvar4 < 4 ? 1 : c->rttvar4;   /* max(G, 4*RTTVAR), G = 1 ms */
		uint32_t rto = (c->srtt8 >> 3) + var;
		c->rto = min_u32(max_u32(rto, st->cfg.rto_min_ms), st->cfg.rto_max_ms);
	}
	c->backoff = 0;   /* RFC 6298 5.7: a new sample ends the backoff */
}

static inline uint32_t iw(const struct tcb *c)
{
	/* RFC 6928 */
	return min_u32(10u * c->mss, max_u32(2u * c->mss, 14600u));
}

static void sack_trim(struct tcb *c)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < c->nsack; i++) {
		if (seq_le(c->sack[i].end, c->snd_una))
			continue;
		c->sack[k] = c->sack[i];
		if (seq_lt(c->sack[k].start, c->snd_una))
			c->sack[k].start = c->snd_una;
		k++;
	}
	c->nsack = (uint8_t)k;
}

/* Merge [s, e) into the scoreboard. */
static void sack_add(struct tcb *c, uint32_t s, uint32_t e)
{
	struct range r = { s, e };
	uint32_t i = 0, k;

	while (i < c->nsack && seq_lt(c->sack[i].end, r.start))
		i++;
	/* ranges i.. overlapping or touching r merge into it */
	k = i;
	while (k < c->nsack && seq_le(c->sack[k].start, r.end)) {
		r.start = seq_min(r.start, c->sack[k].start);
		r.end = seq_max(r.end, c->sack[k].end);
		k++;
	}
	if (k == i) {
		if (c->nsack == SACK_MAX) {
			if (i == SACK_MAX)
				return;   /* full and r is the highest: forget it */
			c->nsack--;   /* drop the highest range */
		}
		memmove(&c->sack[i + 1], &c->sack[i], (c->nsack - i) * sizeof(struct range));
		c->sack[i] = r;
		c->nsack++;
	} else {
		c->sack[i] = r;
		memmove(&c->sack[i + 1], &c->sack[k], (c->nsack - k) * sizeof(struct range));
		c->nsack = (uint8_t)(c->nsack - (k - i - 1));
	}
}

static uint32_t sacked_bytes(const struct tcb *c)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->nsack; i++)
		n += c->sack[i].end - c->sack[i].start;
	return n;
}

/* RFC 6675 pipe, with IsLost simplified to "below the highest SACKed byte
 * and not SACKed": bytes above the highest SACK count, holes count once
 * retransmitted (below high_rxt). */
static uint32_t sack_pipe(const struct tcb *c)
{
	uint32_t hs, lim, holes = 0, cur;

	if (c->nsack == 0)
		return c->snd_nxt - c->snd_una;
	hs = c->sack[c->nsack - 1].end;
	lim = seq_min(c->high_rxt, hs);
	cur = c->snd_una;
	for (uint32_t i = 0; i < c->nsack && seq_lt(cur, lim); i++) {
		uint32_t hole_end = seq_min(c->sack[i].start, lim);
		if (seq_gt(hole_end, cur))
			holes += hole_end - cur;
		cur = seq_max(cur, c->sack[i].end);
	}
	return (seq_gt(c->snd_nxt, hs) ? c->snd_nxt - hs : 0) + holes;
}

static uint32_t flight(const struct tcb *c)
{
	if ((c->flags & (F_RECOVERY | F_SACK_OK)) == (F_RECOVERY | F_SACK_OK))
		return sack_pipe(c);
	return c->snd_nxt - c->snd_una;
}

static void enter_recovery(struct tcp_stack *st, struct tcb *c)
{
	uint32_t fl = c->snd_max - c->snd_una;

	st->stats.fast_retrans++;
	c->ssthresh = max_u32(fl / 2, 2u * c->mss);
	c->recover = c->snd_max;
	c->flags |= F_RECOVERY;
	c->flags &= ~F_RTT_TIMING;
	c->high_rxt = c->snd_una;
	if (c->flags & F_SACK_OK)
		c->cwnd = c->ssthresh;                 /* RFC 6675 5 */
	else
		c->cwnd = c->ssthresh + DUPTHRESH * c->mss;   /* RFC 6582 3.2 */
}

/* ---- sending data ------------------------------------------------------ */

static inline bool can_send_data(uint8_t s)
{
	return s == TCP_ESTABLISHED || s == TCP_CLOSE_WAIT || s == TCP_FIN_WAIT_1 ||
	       s == TCP_CLOSING || s == TCP_LAST_ACK;
}

static void sent_at(struct tcp_stack *st, struct tcb *c, uint32_t seq, uint32_t len)
{
	uint32_t end = seq + len;

	if (seq_lt(seq, c->snd_max)) {
		st->stats.retrans++;
		/* Karn: a timed segment sent again gives no sample */
		if ((c->flags & F_RTT_TIMING) && seq_le(seq, c->rtt_seq) && seq_lt(c->rtt_seq, end))
			c->flags &= ~F_RTT_TIMING;
	} else if (!(c->flags & (F_RTT_TIMING | F_TS_OK))) {
		c->flags |= F_RTT_TIMING;
		c->rtt_seq = seq;
		c->rtt_time = st->now;
	}
	if (seq_gt(end, c->snd_max))
		c->snd_max = end;
	if (c->t_rtx == 0)
		rtx_restart(st, c);
}

/* Retransmit one segment at seq (at most one MSS, not past a SACKed
 * range or the data's end). Returns the sequence space it covered. */
static uint32_t retransmit_at(struct tcp_stack *st, struct tcb *c, uint32_t seq, uint32_t limit)
{
	uint32_t data_end = c->sbuf_seq + c->sbuf_len;
	uint32_t len;
	uint8_t fl = 0;

	if (seq_ge(seq, data_end)) {
		if ((c->flags & F_FIN_QUEUED) && seq == c->fin_seq) {
			send_seg(st, c, seq, TH_FIN, 0);
			sent_at(st, c, seq, 1);
			return 1;
		}
		return 0;
	}
	len = min_u32(c->mss, min_u32(data_end - seq, limit - seq));
	if (len == 0)
		return 0;
	send_seg(st, c, seq, fl, len);
	sent_at(st, c, seq, len);
	return len;
}

/* Send what the windows allow now. */
static void output(struct tcp_stack *st, struct tcb *c)
{
	int budget = 1024;   /* segments per call: bounds a call, windows bound it anyway */

	if (!can_send_data(c->state))
		goto ack;
	while (budget-- > 0) {
		uint32_t data_end = c->sbuf_seq + c->sbuf_len;
		uint32_t wnd = min_u32(c->snd_wnd, c->cwnd);
		uint32_t fl = flight(c);
		uint32_t len, avail;

		/* SACK recovery (RFC 6675 NextSeg): holes first, while the
		 * pipe has room. */
		if ((c->flags & (F_RECOVERY | F_SACK_OK)) == (F_RECOVERY | F_SACK_OK) && c->nsack) {
			uint32_t hs = c->sack[c->nsack - 1].end;
			uint32_t cur = seq_max(c->high_rxt, c->snd_una);
			bool sent = false;

			if (fl >= c->cwnd)
				break;
			for (uint32_t i = 0; i < c->nsack; i++) {
				if (seq_ge(cur, hs))
					break;
				if (seq_lt(cur, c->sack[i].start)) {
					uint32_t n = retransmit_at(st, c, cur, c->sack[i].start);
					if (n) {
						st->stats.sack_retrans++;
						c->high_rxt = cur + n;
						sent = true;
					}
					break;
				}
				cur = seq_max(cur, c->sack[i].end);
			}
			if (sent)
				continue;
			if (seq_lt(c->high_rxt, hs))
				c->high_rxt = hs;   /* no hole left below hs */
		}
		if (seq_lt(c->snd_nxt, data_end)) {
			uint32_t wnd_end = c->snd_una + wnd;
			avail = data_end - c->snd_nxt;
			if (seq_ge(c->snd_nxt, wnd_end) || fl >= wnd)
				break;
			len = min_u32(min_u32(avail, c->mss), min_u32(wnd_end - c->snd_nxt, wnd - fl));
			/* Sender SWS avoidance (RFC 9293 3.8.6.2.1), no Nagle: a
			 * full segment, all we have, half the largest window seen,
			 * or anything when nothing is in flight. */
			if (len < c->mss && len < avail && len < c->max_snd_wnd / 2 && fl != 0)
				break;
			send_seg(st, c, c->snd_nxt, 0, len);
			sent_at(st, c, c->snd_nxt, len);
			c->snd_nxt += len;
			continue;
		}
		if ((c->flags & F_FIN_QUEUED) && c->snd_nxt == c->fin_seq) {
			send_seg(st, c, c->snd_nxt, TH_FIN, 0);
			sent_at(st, c, c->snd_nxt, 1);
			c->snd_nxt++;
		}
		break;
	}
	/* Persist: data waits on a zero window and nothing is in flight
	 * that would bring an ACK. */
	if (seq_lt(c->snd_nxt, c->sbuf_seq + c->sbuf_len) && c->snd_nxt == c->snd_una &&
	    c->snd_wnd == 0) {
		if (c->t_persist == 0) {
			c->t_persist = st->now + rto_backed(st, c);
			conn_timer_arm(st, c);
		}
	} else {
		c->t_persist = 0;
	}
ack:
	if (c->flags & F_ACK_NOW) {
		send_ack(st, c);
	} else if ((c->flags & F_ACK_PEND) && c->t_delack == 0) {
		c->t_delack = st->now + st->cfg.delack_ms;
		conn_timer_arm(st, c);
	}
}

/* ---- connection teardown ----------------------------------------------- */

/* The connection died with err: the caller learns it, or it goes. */
static void conn_kill(struct tcp_stack *st, struct tcb *c, int err)
{
	if (!(c->flags & F_APP)) {
		conn_free(st, c);
		return;
	}
	c->err = err;
	c->state = TCP_CLOSED;
	c->t_rtx = c->t_delack = c->t_persist = c->t_keep = c->t_close = 0;
	wheel_del(&st->wheel, &c->timer);
	/* Flushes queues (RFC 9293 3.10.7.4 RST): no more bytes either way. */
	buf_put(st, &st->scache, c->sbuf, st->sbuf_size);
	buf_put(st, &st->rcache, c->rbuf, st->rbuf_size);
	c->sbuf = c->rbuf = NULL;
	c->sbuf_len = c->rbuf_len = 0;
	c->nooo = 0;
	ev_raise(st, c, EV_CLOSED);
}

/* TIME-WAIT: an orphan goes to the compact table; a connection the
 * caller still holds stays a tcb until close or 2 MSL. */
static void enter_time_wait(struct tcp_stack *st, struct tcb *c)
{
	c->state = TCP_TIME_WAIT;
	c->t_rtx = c->t_persist = c->t_keep = 0;
	if (!(c->flags & F_APP)) {
		tw_enter(st, c);
		return;
	}
	c->t_close = st->now + st->cfg.time_wait_ms;
	conn_timer_arm(st, c);
}

/* ---- timer handler ----------------------------------------------------- */

static void on_rto(struct tcp_stack *st, struct tcb *c)
{
	uint32_t limit = c->state == TCP_SYN_SENT || c->state == TCP_SYN_RECEIVED
		       ? st->cfg.syn_retries : st->cfg.data_retries;

	c->t_rtx = 0;
	if (c->snd_una == c->snd_max && c->state != TCP_SYN_SENT && c->state != TCP_SYN_RECEIVED)
		return;
	if (c->retries >= limit) {
		if (c->state == TCP_SYN_RECEIVED && (c->flags & F_PASSIVE)) {
			conn_free(st, c);
			return;
		}
		conn_kill(st, c, -ETIMEDOUT);
		return;
	}
	st->stats.rto_fired++;
	c->retries++;
	if (c->backoff < 30)
		c->backoff++;
	c->flags &= ~(F_RTT_TIMING | F_RECOVERY);
	c->dupacks = 0;
	if (c->state == TCP_SYN_SENT || c->state == TCP_SYN_RECEIVED) {
		st->stats.retrans++;
		send_seg(st, c, c->iss, TH_SYN, 0);
		c->cwnd = c->mss;   /* RFC 5681 3.1: a lost SYN means one segment */
		rtx_restart(st, c);
		return;
	}
	/* RFC 5681 (4) and RFC 6298 5.5-5.7; RFC 2018 8: SACK information is
	 * forgotten after a timeout. Go back to snd_una. */
	c->ssthresh = max_u32((c->snd_max - c->snd_una) / 2, 2u * c->mss);
	c->cwnd = c->mss;
	c->bytes_acked = 0;
	c->nsack = 0;
	c->snd_nxt = c->snd_una;
	rtx_restart(st, c);
	output(st, c);
}

static void on_persist(struct tcp_stack *st, struct tcb *c)
{
	c->t_persist = 0;
	if (c->snd_wnd != 0 || c->snd_nxt != c->snd_una)
		return;
	if (!(c->flags & F_APP) && c->backoff >= st->cfg.data_retries) {
		conn_free(st, c);
		return;
	}
	/* A probe the peer must answer with its window: one old sequence
	 * number, no data (it is outside the window, RFC 9293 3.10.7.4). */
	st->stats.win_probes++;
	send_seg(st, c, c->snd_una - 1, TH_ACK, 0);
	if (c->backoff < 30)
		c->backoff++;
	c->t_persist = st->now + rto_backed(st, c);
	conn_timer_arm(st, c);
}

static void on_keepalive(struct tcp_stack *st, struct tcb *c)
{
	c->t_keep = 0;
	if (c->state != TCP_ESTABLISHED && c->state != TCP_CLOSE_WAIT)
		return;
	if (c->ka_probes >= st->cfg.keepalive_probes) {
		conn_kill(st, c, -ETIMEDOUT);
		return;
	}
	c->ka_probes++;
	st->stats.keepalive_probes++;
	send_seg(st, c, c->snd_una - 1, TH_ACK, 0);
	c->t_keep = st->now + st->cfg.keepalive_intvl_ms;
	conn_timer_arm(st, c);
}

static void conn_timer_fn(struct wheel *w, struct wheel_timer *t, uint64_t now)
{
	struct tcb *c = container_of(t, struct tcb, timer);
	struct tcp_stack *st = container_of(w, struct tcp_stack, wheel);
	uint32_t gen = c->gen;

	c->armed_at = 0;
	if (c->t_close && c->t_close <= now) {
		c->t_close = 0;
		if (c->state == TCP_TIME_WAIT && (c->flags & F_APP)) {
			/* the caller holds it: keep the tcb, closed */
			c->state = TCP_CLOSED;
			c->t_rtx = c->t_delack = c->t_persist = c->t_keep = 0;
			return;
		}
		conn_free(st, c);   /* orphaned FIN-WAIT-2 */
		return;
	}
	if (c->t_delack && c->t_delack <= now) {
		c->t_delack = 0;
		if (c->flags & F_ACK_PEND)
			send_ack(st, c);
	}
	if (c->t_rtx && c->t_rtx <= now) {
		on_rto(st, c);
		if (c->gen != gen || !(c->flags & F_IN_USE) || c->state == TCP_CLOSED)
			return;
	}
	if (c->t_persist && c->t_persist <= now) {
		on_persist(st, c);
		if (c->gen != gen || !(c->flags & F_IN_USE))
			return;
	}
	if (c->t_keep && c->t_keep <= now) {
		on_keepalive(st, c);
		if (c->gen != gen || !(c->flags & F_IN_USE) || c->state == TCP_CLOSED)
			return;
	}
	conn_timer_arm(st, c);
}

/* ---- input: options ---------------------------------------------------- */

struct opts {
	bool mss_ok, ws_ok, sackp, ts_ok;
	uint8_t ws;
	uint8_t nsack;
	uint16_t mss;
	uint32_t tsval, tsecr;
	uint32_t sack[4][2];
};

static int parse_opts(const uint8_t *p, size_t n, bool syn, struct opts *o)
{
	size_t i = 0;

	memset(o, 0, sizeof(*o));
	while (i < n) {
		uint8_t kind = p[i], len;
		if (kind == OPT_EOL)
			break;
		if (kind == OPT_NOP) {
			i++;
			continue;
		}
		if (i + 1 >= n)
			return -EINVAL;
		len = p[i + 1];
		if (len < 2 || i + len > n)
			return -EINVAL;
		switch (kind) {
		case OPT_MSS:
			if (len == 4 && syn) {
				o->mss_ok = true;
				o->mss = ld16(p + i + 2);
			}
			break;
		case OPT_WS:
			if (len == 3 && syn) {
				o->ws_ok = true;
				o->ws = p[i + 2] > MAX_WSCALE ? MAX_WSCALE : p[i + 2];   /* RFC 7323 2.3 */
			}
			break;
		case OPT_SACKP:
			if (len == 2 && syn)
				o->sackp = true;
			break;
		case OPT_SACK:
			if (len >= 10 && (len - 2) % 8 == 0 && !syn) {
				for (uint32_t k = 0; k < (uint32_t)(len - 2) / 8 && k < 4; k++) {
					o->sack[k][0] = ld32(p + i + 2 + 8 * k);
					o->sack[k][1] = ld32(p + i + 6 + 8 * k);
				}
				o->nsack = (uint8_t)min_u32((uint32_t)(len - 2) / 8, 4);
			}
			break;
		case OPT_TS:
			if (len == 10) {
				o->ts_ok = true;
				o->tsval = ld32(p + i + 2);
				o->tsecr = ld32(p + i + 6);
			}
			break;
		default:
			break;
		}
		i += len;
	}
	return 0;
}

/* A parsed segment. */
struct seg {
	uint16_t sport, dport;
	uint32_t seq, ack;
	uint8_t  flags;
	uint16_t win;
	const uint8_t *data;
	uint32_t len;       /* payload bytes */
	struct opts o;
};

static inline uint32_t seg_len(const struct seg *s)
{
	return s->len + ((s->flags & TH_SYN) ? 1u : 0u) + ((s->flags & TH_FIN) ? 1u : 0u);
}

/* ---- input: options negotiated on the SYN ------------------------------ */

static void apply_syn_opts(struct tcp_stack *st, struct tcb *c, const struct opts *o, bool from_cookie)
{
	uint32_t hdr_opts;

	c->peer_mss = o->mss_ok ? max_u32(o->mss, 64) : DEFAULT_MSS;
	if (o->ws_ok && !st->cfg.no_wscale) {
		c->flags |= F_WS_OK;
		c->snd_wscale = o->ws;
		c->rcv_wscale = st->rcv_wscale;
	} else {
		c->snd_wscale = c->rcv_wscale = 0;
	}
	if (o->sackp && !st->cfg.no_sack)
		c->flags |= F_SACK_OK;
	if (o->ts_ok && !st->cfg.no_timestamps) {
		c->flags |= F_TS_OK;
		c->ts_recent = o->tsval;
		c->ts_recent_age = st->now;
	}
	(void)from_cookie;
	/* RFC 6691: the MSS counts no options; keep room for timestamps. */
	hdr_opts = (c->flags & F_TS_OK) ? 12 : 0;
	c->mss = (uint16_t)(min_u32(c->peer_mss, st->cfg.mss) - hdr_opts);
	c->cwnd = iw(c);
	c->ssthresh = UINT32_MAX / 2;
}

static uint32_t make_isn(struct tcp_stack *st, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	uint64_t m[2];

	if (st->cfg.isn)
		return st->cfg.isn(st->cfg.ctx, lip, lport, rip, rport);
	m[0] = tuple_word(lip, lport, rip, rport);
	m[1] = lip;
	/* RFC 6528: a 4 us clock plus a keyed hash of the tuple */
	return (uint32_t)siphash(st->cfg.secret, m, 2) + (uint32_t)(st->now * 250);
}

/* ---- SYN cookies (RFC 4987 3.6) ---------------------------------------- */

static const uint16_t cookie_mss[8] = { 536, 1200, 1300, 1400, 1440, 1460, 4312, 8960 };

static uint32_t cookie_hash(const struct tcp_stack *st, const struct seg *s, uint32_t lip, uint32_t rip,
			    uint32_t count, uint32_t client_isn)
{
	uint64_t m[3] = { tuple_word(lip, s->dport, rip, s->sport), (uint64_t)lip << 32 | count,
			  (uint64_t)client_isn << 8 | 0xc0 };
	return (uint32_t)siphash(st->cfg.secret, m, 3);
}

/* The ISS: 5 bits of a 64 s clock, 3 bits of MSS index, 24 bits of MAC
 * over the tuple, the clock and the client's ISN. */
static uint32_t cookie_make(const struct tcp_stack *st, const struct seg *s, uint32_t lip, uint32_t rip,
			    uint8_t mss_idx)
{
	uint32_t count = (uint32_t)(st->now / COOKIE_PERIOD_MS);
	return (count & 31u) << 27 | (uint32_t)mss_idx << 24 |
	       (cookie_hash(st, s, lip, rip, count, s->seq) & 0xffffffu);
}

/* The MSS index if ack-1 is a cookie we made in the last two periods for
 * this tuple, else -1. */
static int cookie_check(const struct tcp_stack *st, const struct seg *s, uint32_t lip, uint32_t rip)
{
	uint32_t cookie = s->ack - 1;
	uint32_t now = (uint32_t)(st->now / COOKIE_PERIOD_MS);
	uint32_t age = (now - (cookie >> 27)) & 31u;
	uint32_t count = now - age;

	if (age > 1)
		return -1;
	if ((cookie_hash(st, s, lip, rip, count, s->seq - 1) & 0xffffffu) != (cookie & 0xffffffu))
		return -1;
	return (int)((cookie >> 24) & 7u);
}

/* ---- input: receive side ----------------------------------------------- */

static int rbuf_ensure(struct tcp_stack *st, struct tcb *c)
{
	if (!c->rbuf) {
		c->rbuf = buf_get(st, &st->rcache, st->rbuf_size);
		if (!c->rbuf)
			return -ENOMEM;
		c->rbuf_head = 0;
	}
	return 0;
}

/* Queue data [seq, seq+len) that lies above rcv_nxt. Returns false when
 * it cannot be held (too many ranges): dropped, the peer sends it again. */
static bool ooo_insert(struct tcp_stack *st, struct tcb *c, uint32_t seq, const uint8_t *d, uint32_t len)
{
	struct range r = { seq, seq + len };
	uint32_t i = 0, k;

	while (i < c->nooo && seq_lt(c->ooo[i].end, r.start))
		i++;
	k = i;
	while (k < c->nooo && seq_le(c->ooo[k].start, r.end))
		k++;
	if (k == i && c->nooo == OOO_MAX)
		return false;
	if (rbuf_ensure(st, c) < 0)
		return false;
	ring_write(c->rbuf, st->rbuf_size - 1, c->rbuf_head + c->rbuf_len + (seq - c->rcv_nxt), d, len);
	if (k == i) {
		memmove(&c->ooo[i + 1], &c->ooo[i], (c->nooo - i) * sizeof(struct range));
		c->ooo[i] = r;
		c->nooo++;
	} else {
		r.start = seq_min(r.start, c->ooo[i].start);
		r.end = seq_max(r.end, c->ooo[k - 1].end);
		c->ooo[i] = r;
		memmove(&c->ooo[i + 1], &c->ooo[k], (c->nooo - k) * sizeof(struct range));
		c->nooo = (uint8_t)(c->nooo - (k - i - 1));
	}
	c->ooo_last = (uint8_t)i;
	st->stats.ooo_segs++;
	return true;
}

/* Take in-order or out-of-order payload, already trimmed to
 * [rcv_nxt, right edge). Sets the ACK flags. */
static void rcv_data(struct tcp_stack *st, struct tcb *c, uint32_t seq, const uint8_t *d, uint32_t len)
{
	uint32_t old = c->rcv_nxt;

	if (!(c->flags & F_APP)) {
		/* Orphan: the reader is gone; take in-order bytes and forget them. */
		if (seq == c->rcv_nxt)
			c->rcv_nxt += len;
		c->flags |= F_ACK_NOW;
		return;
	}
	if (seq != c->rcv_nxt) {
		ooo_insert(st, c, seq, d, len);
		c->flags |= F_ACK_NOW;   /* RFC 5681 4.2: at once for out-of-order data */
		return;
	}
	if (rbuf_ensure(st, c) < 0)
		return;   /* dropped: no ACK moves, the peer retransmits */
	ring_write(c->rbuf, st->rbuf_size - 1, c->rbuf_head + c->rbuf_len, d, len);
	c->rcv_nxt += len;
	c->rbuf_len += len;
	if (c->nooo) {
		/* filling a hole: ACK at once (RFC 5681 4.2) */
		c->flags |= F_ACK_NOW;
		while (c->nooo && seq_le(c->ooo[0].start, c->rcv_nxt)) {
			if (seq_gt(c->ooo[0].end, c->rcv_nxt)) {
				c->rbuf_len += c->ooo[0].end - c->rcv_nxt;
				c->rcv_nxt = c->ooo[0].end;
			}
			memmove(&c->ooo[0], &c->ooo[1], (c->nooo - 1) * sizeof(struct range));
			c->nooo--;
			c->ooo_last = 0;
		}
	}
	if (c->rcv_nxt != old) {
		st->stats.bytes_in += c->rcv_nxt - old;
		ev_raise(st, c, EV_READABLE);
		/* RFC 1122 4.2.3.2 / RFC 5681 4.2: every second segment; a
		 * lone one waits for the delayed-ACK timer or rides on the
		 * reply the application sends meanwhile */
		if (++c->segs_unacked >= 2)
			c->flags |= F_ACK_NOW;
		else
			c->flags |= F_ACK_PEND;
	}
}

/* The peer's FIN at rcv_nxt: consume it and move the state. */
static void rcv_fin(struct tcp_stack *st, struct tcb *c)
{
	c->rcv_nxt++;
	c->flags |= F_FIN_RCVD | F_ACK_NOW;
	c->flags &= ~F_OOO_FIN;
	ev_raise(st, c, EV_READABLE);
	switch (c->state) {
	case TCP_SYN_RECEIVED:
	case TCP_ESTABLISHED:
		c->state = TCP_CLOSE_WAIT;
		break;
	case TCP_FIN_WAIT_1:
		/* our FIN not yet acknowledged (else we would be in FIN-WAIT-2) */
		c->state = TCP_CLOSING;
		break;
	case TCP_FIN_WAIT_2:
		send_ack(st, c);
		enter_time_wait(st, c);
		break;
	default:
		break;
	}
}

/* ---- input: established and closing states ------------------------------ */

/* Process an acceptable ACK field (RFC 9293 3.10.7.4, fifth step). Returns
 * false if the segment is to be dropped. */
static bool rcv_ack(struct tcp_stack *st, struct tcb *c, const struct seg *s)
{
	uint32_t ack = s->ack;
	uint32_t win = (uint32_t)s->win << c->snd_wscale;
	bool new_ack = seq_gt(ack, c->snd_una);

	/* RFC 5961 5.2 */
	if (seq_gt(ack, c->snd_max)) {
		send_ack(st, c);
		return false;
	}
	if (seq_lt(ack, c->snd_una - c->max_snd_wnd)) {
		challenge_ack(st, c);
		return false;
	}

	/* SACK blocks: only ones inside (snd_una, snd_max] count */
	if ((c->flags & F_SACK_OK) && s->o.nsack) {
		for (uint32_t i = 0; i < s->o.nsack; i++) {
			uint32_t a = s->o.sack[i][0], b = s->o.sack[i][1];
			if (seq_lt(a, b) && seq_ge(a, ack) && seq_gt(a, c->snd_una) &&
			    seq_le(b, c->snd_max))
				sack_add(c, a, b);
		}
	}

	if (new_ack) {
		uint32_t acked = ack - c->snd_una;
		uint32_t data_acked;

		/* RTT: timestamps (RFC 7323 4) or the one timed segment (Karn) */
		if ((c->flags & F_TS_OK) && s->o.ts_ok && s->o.tsecr) {
			uint32_t r = ts_now(st) - s->o.tsecr;
			if (r < 600000u)
				rtt_sample(st, c, r);
		} else if ((c->flags & F_RTT_TIMING) && seq_gt(ack, c->rtt_seq)) {
			c->flags &= ~F_RTT_TIMING;
			rtt_sample(st, c, (uint32_t)(st->now - c->rtt_time));
		}

		/* drop acknowledged bytes from the send buffer */
		if (seq_gt(ack, c->sbuf_seq)) {
			data_acked = min_u32(ack - c->sbuf_seq, c->sbuf_len);
			c->sbuf_seq += data_acked;
			c->sbuf_head = (c->sbuf_head + data_acked) & (st->sbuf_size - 1);
			c->sbuf_len -= data_acked;
			if (c->sbuf_len == 0 && c->sbuf) {
				buf_put(st, &st->scache, c->sbuf, st->sbuf_size);
				c->sbuf = NULL;
				c->sbuf_head = 0;
			}
			if ((c->flags & F_WANT_WRITE) && st->sbuf_size - c->sbuf_len >= st->sbuf_size / 4) {
				c->flags &= ~F_WANT_WRITE;
				ev_raise(st, c, EV_WRITABLE);
			}
		}
		c->snd_una = ack;
		if (seq_lt(c->snd_nxt, ack))
			c->snd_nxt = ack;
		sack_trim(c);

		/* congestion control */
		if (c->flags & F_RECOVERY) {
			if (seq_ge(ack, c->recover)) {
				/* full ACK: RFC 6582 3.2 (3) */
				c->flags &= ~F_RECOVERY;
				c->cwnd = (c->flags & F_SACK_OK) ? c->ssthresh
					: min_u32(c->ssthresh, max_u32(c->snd_max - c->snd_una, c->mss) + c->mss);
				c->bytes_acked = 0;
			} else if (!(c->flags & F_SACK_OK)) {
				/* partial ACK: retransmit the next hole, deflate */
				retransmit_at(st, c, c->snd_una, c->snd_max);
				c->cwnd = c->cwnd > acked ? c->cwnd - acked : 0;
				c->cwnd += c->mss;
				rtx_restart(st, c);   /* on every partial ACK: RFC 6582's Slow-but-Steady variant */
			} else {
				if (seq_lt(c->high_rxt, c->snd_una))
					c->high_rxt = c->snd_una;
			}
		} else if (c->cwnd < c->ssthresh) {
			c->cwnd += min_u32(acked, 2u * c->mss);   /* RFC 3465, L = 2 */
		} else {
			c->bytes_acked += acked;
			if (c->bytes_acked >= c->cwnd) {
				c->bytes_acked -= c->cwnd;
				c->cwnd += c->mss;
			}
		}
		if (c->cwnd > (1u << 30))
			c->cwnd = 1u << 30;
		c->dupacks = 0;
		c->retries = 0;
		c->ka_probes = 0;
		/* Karn (RFC 6298 5.7): the backed-off RTO stays until a new
		 * sample; only the timer stops when everything is acknowledged. */
		if (c->snd_una == c->snd_max) {
			c->t_rtx = 0;
		} else {
			rtx_restart(st, c);
		}
	} else if (ack == c->snd_una && s->len == 0 && !(s->flags & (TH_SYN | TH_FIN)) &&
		   win == c->snd_wnd && c->snd_max != c->snd_una) {
		/* a duplicate ACK, RFC 5681 2 */
		st->stats.dup_acks++;
		c->dupacks = (uint8_t)min_u32(c->dupacks + 1u, 255);
		if (!(c->flags & F_RECOVERY) && seq_gt(c->snd_una, c->recover - 1) &&
		    (c->dupacks == DUPTHRESH ||
		     ((c->flags & F_SACK_OK) && sacked_bytes(c) >= DUPTHRESH * c->mss))) {
			enter_recovery(st, c);
			c->high_rxt = c->snd_una + retransmit_at(st, c, c->snd_una, c->snd_max);
		} else if ((c->flags & F_RECOVERY) && !(c->flags & F_SACK_OK)) {
			c->cwnd += c->mss;   /* RFC 6582: inflate per further duplicate */
		}
	}

	/* window update, RFC 9293 3.10.7.4 */
	if (seq_lt(c->snd_wl1, s->seq) || (c->snd_wl1 == s->seq && seq_le(c->snd_wl2, ack))) {
		c->snd_wnd = win;
		c->snd_wl1 = s->seq;
		c->snd_wl2 = ack;
		if (win > c->max_snd_wnd)
			c->max_snd_wnd = win;
		if (win && c->t_persist) {
			c->t_persist = 0;
			c->backoff = 0;
		}
	}

	/* our FIN acknowledged? */
	if ((c->flags & F_FIN_QUEUED) && seq_gt(c->snd_una, c->fin_seq)) {
		switch (c->state) {
		case TCP_FIN_WAIT_1:
			c->state = TCP_FIN_WAIT_2;
			c->t_rtx = 0;
			if (!(c->flags & F_APP)) {
				c->t_close = st->now + st->cfg.fin_wait2_ms;
				conn_timer_arm(st, c);
			}
			break;
		case TCP_CLOSING:
			enter_time_wait(st, c);
			return false;
		case TCP_LAST_ACK:
			if (c->flags & F_APP) {
				c->state = TCP_CLOSED;
				c->t_rtx = c->t_delack = c->t_persist = c->t_keep = 0;
			} else {
				conn_free(st, c);
			}
			return false;
		default:
			break;
		}
	}
	return true;
}

/* Established (first three of SYN-RECEIVED's exits): set up the send
 * side from the segment that completed the handshake. */
static void establish(struct tcp_stack *st, struct tcb *c, const struct seg *s)
{
	c->state = TCP_ESTABLISHED;
	c->snd_wnd = (uint32_t)s->win << c->snd_wscale;
	c->max_snd_wnd = c->snd_wnd;
	c->snd_wl1 = s->seq;
	c->snd_wl2 = s->ack;
	/* RFC 6582: recover starts at the ISS side; a zero would make the
	 * wrap-safe "snd_una > recover" test false for half the ISN space */
	c->recover = c->snd_una;
	keep_restart(st, c);
	if (c->flags & F_FIN_QUEUED)
		c->state = TCP_FIN_WAIT_1;
}

static void syn_received_done(struct tcp_stack *st, struct tcb *c, const struct seg *s)
{
	if (c->flags & F_PASSIVE) {
		if (c->listener >= 0)
			st->lst[c->listener].nsyn--;
		c->flags |= F_APP;
		st->stats.accepted++;
		establish(st, c, s);
		ev_raise(st, c, EV_ACCEPTED);
	} else {
		st->stats.connected++;
		establish(st, c, s);
		ev_raise(st, c, EV_CONNECTED);
	}
}

static void conn_input(struct tcp_stack *st, struct tcb *c, struct seg *s)
{
	uint32_t rwnd, slen;
	uint32_t gen = c->gen;

	if (c->state == TCP_SYN_SENT) {
		bool ack_ok = (s->flags & TH_ACK) && seq_gt(s->ack, c->iss) && seq_le(s->ack, c->snd_max);
		if ((s->flags & TH_ACK) && !ack_ok) {
			if (!(s->flags & TH_RST))
				emit_raw(st, c->lip, c->lport, c->rip, c->rport, s->ack, 0, TH_RST, 0, 0, NULL, 0, 0);
			return;
		}
		if (s->flags & TH_RST) {
			if (ack_ok)
				conn_kill(st, c, -ECONNREFUSED);
			return;
		}
		if (!(s->flags & TH_SYN))
			return;
		c->irs = s->seq;
		c->rcv_nxt = s->seq + 1;
		c->rcv_adv = c->rcv_nxt;   /* the SYN's window was counted from nothing */
		apply_syn_opts(st, c, &s->o, false);
		if (c->backoff)
			c->cwnd = c->mss;   /* RFC 5681 3.1: the SYN was lost */
		if (ack_ok) {
			c->snd_una = s->ack;
			c->sbuf_seq = c->iss + 1;
			if (seq_lt(c->snd_nxt, c->snd_una))
				c->snd_nxt = c->snd_una;
			c->t_rtx = 0;
			/* SYN timing (no timestamps): Karn applies to SYNs too */
			if ((c->flags & F_TS_OK) && s->o.ts_ok && s->o.tsecr)
				rtt_sample(st, c, ts_now(st) - s->o.tsecr);
			else if (c->backoff == 0)
				rtt_sample(st, c, (uint32_t)(st->now - c->rtt_time));
			c->backoff = 0;
			st->stats.connected++;
			establish(st, c, s);
			/* RFC 7323 2.2: the window of a SYN is never scaled */
			c->snd_wnd = c->max_snd_wnd = s->win;
			ev_raise(st, c, EV_CONNECTED);
			c->flags |= F_ACK_NOW;
			/* data on a SYN-ACK is rare; take it like any other */
			if (s->len)
				rcv_data(st, c, s->seq + 1, s->data, min_u32(s->len, st->rbuf_size));
			output(st, c);
		} else {
			/* simultaneous open: SYN-RECEIVED, SYN-ACK with our ISS */
			c->state = TCP_SYN_RECEIVED;
			send_seg(st, c, c->iss, TH_SYN, 0);
			rtx_restart(st, c);
		}
		return;
	}

	/* SYN-RECEIVED: the peer sent its SYN again (our SYN-ACK was lost) */
	if (c->state == TCP_SYN_RECEIVED && (s->flags & TH_SYN) && !(s->flags & TH_ACK) && s->seq == c->irs) {
		send_seg(st, c, c->iss, TH_SYN, 0);
		return;
	}

	if (c->state == TCP_CLOSED) {
		/* dead, held by the caller: answer like a closed port */
		return;
	}

	/* PAWS, RFC 7323 5.3 */
	if ((c->flags & F_TS_OK) && s->o.ts_ok && !(s->flags & TH_RST) &&
	    seq_lt(s->o.tsval, c->ts_recent)) {
		if (st->now - c->ts_recent_age > PAWS_IDLE_MS) {
			c->ts_recent = s->o.tsval;   /* RFC 7323 5.5: TS.Recent is stale */
		} else {
			st->stats.paws_drops++;
			send_ack(st, c);
			return;
		}
	}

	/* first step: sequence acceptability (RFC 9293 3.10.7.4) */
	rwnd = (c->flags & F_APP) ? st->rbuf_size - c->rbuf_len : st->rbuf_size;
	rwnd = max_u32(rwnd, (uint32_t)(c->rcv_adv - c->rcv_nxt) <= st->rbuf_size ? c->rcv_adv - c->rcv_nxt : 0);
	slen = seg_len(s);
	{
		bool ok;
		if (slen == 0)
			ok = rwnd == 0 ? s->seq == c->rcv_nxt
				: seq_ge(s->seq, c->rcv_nxt) && seq_lt(s->seq, c->rcv_nxt + rwnd);
		else
			ok = rwnd != 0 &&
			     ((seq_ge(s->seq, c->rcv_nxt) && seq_lt(s->seq, c->rcv_nxt + rwnd)) ||
			      (seq_ge(s->seq + slen - 1, c->rcv_nxt) && seq_lt(s->seq + slen - 1, c->rcv_nxt + rwnd)));
		/* a zero window still takes ACKs and RSTs at rcv_nxt */
		if (!ok && rwnd == 0 && s->seq == c->rcv_nxt)
			ok = true;
		if (!ok) {
			if (!(s->flags & TH_RST)) {
				if (slen)
					st->stats.dup_segs++;
				send_ack(st, c);
			}
			return;
		}
	}

	/* second step: RST, RFC 5961 3.2 */
	if (s->flags & TH_RST) {
		st->stats.rst_in++;
		if (s->seq != c->rcv_nxt) {
			challenge_ack(st, c);
			return;
		}
		switch (c->state) {
		case TCP_SYN_RECEIVED:
			if (c->flags & F_PASSIVE) {
				conn_free(st, c);
				return;
			}
			conn_kill(st, c, -ECONNREFUSED);
			return;
		case TCP_CLOSING:
		case TCP_LAST_ACK:
		case TCP_TIME_WAIT:
			if (c->flags & F_APP)
				conn_kill(st, c, -ECONNRESET);
			else
				conn_free(st, c);
			return;
		default:
			conn_kill(st, c, -ECONNRESET);
			return;
		}
	}

	/* update TS.Recent, RFC 7323 4.3 */
	if ((c->flags & F_TS_OK) && s->o.ts_ok && seq_le(s->seq, c->last_ack_sent) &&
	    seq_ge(s->o.tsval, c->ts_recent)) {
		c->ts_recent = s->o.tsval;
		c->ts_recent_age = st->now;
	}

	/* fourth step: SYN in a synchronized state, RFC 5961 4.2 */
	if (s->flags & TH_SYN) {
		if (c->state == TCP_SYN_RECEIVED && (c->flags & F_PASSIVE)) {
			conn_free(st, c);
			return;
		}
		challenge_ack(st, c);
		return;
	}

	/* fifth step: ACK */
	if (!(s->flags & TH_ACK))
		return;
	if (c->state == TCP_SYN_RECEIVED) {
		if (!(seq_gt(s->ack, c->snd_una) && seq_le(s->ack, c->snd_max))) {
			emit_raw(st, c->lip, c->lport, c->rip, c->rport, s->ack, 0, TH_RST, 0, 0, NULL, 0, 0);
			return;
		}
		if ((c->flags & F_TS_OK) && s->o.ts_ok && s->o.tsecr)
			rtt_sample(st, c, ts_now(st) - s->o.tsecr);
		else if (c->backoff == 0)
			rtt_sample(st, c, (uint32_t)(st->now - c->rtt_time));
		c->snd_una = s->ack;
		c->sbuf_seq = c->iss + 1;
		if (seq_lt(c->snd_nxt, c->snd_una))
			c->snd_nxt = c->snd_una;
		c->t_rtx = 0;
		c->backoff = 0;
		syn_received_done(st, c, s);
	} else {
		if (!rcv_ack(st, c, s))
			return;
		if (c->gen != gen || !(c->flags & F_IN_USE))
			return;
	}
	keep_restart(st, c);

	/* seventh step: text */
	if (s->len && (c->state == TCP_ESTABLISHED || c->state == TCP_FIN_WAIT_1 ||
		       c->state == TCP_FIN_WAIT_2)) {
		uint32_t seq = s->seq;
		const uint8_t *d = s->data;
		uint32_t len = s->len;
		uint32_t room = (c->flags & F_APP) ? st->rbuf_size - c->rbuf_len : UINT32_MAX / 2;

		if (seq_lt(seq, c->rcv_nxt)) {
			uint32_t cut = c->rcv_nxt - seq;
			if (cut >= len) {
				len = 0;
			} else {
				d += cut;
				len -= cut;
				seq = c->rcv_nxt;
			}
		}
		if (len) {
			uint32_t off = seq - c->rcv_nxt;
			if (off >= room) {
				len = 0;
				s->flags &= (uint8_t)~TH_FIN;
			} else if (len > room - off) {
				len = room - off;
				s->flags &= (uint8_t)~TH_FIN;   /* the FIN lies beyond the window */
			}
		}
		if (len)
			rcv_data(st, c, seq, d, len);
		else
			c->flags |= F_ACK_NOW;
	}

	/* eighth step: FIN */
	if (s->flags & TH_FIN) {
		uint32_t fseq = s->seq + s->len;
		if (c->state == TCP_CLOSE_WAIT || c->state == TCP_CLOSING || c->state == TCP_LAST_ACK ||
		    c->state == TCP_TIME_WAIT) {
			c->flags |= F_ACK_NOW;   /* a retransmitted FIN */
			if (c->state == TCP_TIME_WAIT && c->t_close)
				c->t_close = st->now + st->cfg.time_wait_ms;
		} else if (fseq == c->rcv_nxt) {
			rcv_fin(st, c);
			if (c->gen != gen || !(c->flags & F_IN_USE))
				return;
		} else if (seq_gt(fseq, c->rcv_nxt)) {
			c->flags |= F_OOO_FIN;
			c->ooo_fin = fseq;
		}
	}
	if ((c->flags & F_OOO_FIN) && c->ooo_fin == c->rcv_nxt &&
	    (c->state == TCP_ESTABLISHED || c->state == TCP_FIN_WAIT_1 || c->state == TCP_FIN_WAIT_2)) {
		rcv_fin(st, c);
		if (c->gen != gen || !(c->flags & F_IN_USE))
			return;
	}
	if (c->state == TCP_TIME_WAIT) {
		if (c->flags & F_ACK_NOW)
			send_ack(st, c);
		return;
	}
	output(st, c);
}

/* ---- input: listeners, TIME-WAIT, no connection ------------------------- */

static int find_listener(const struct tcp_stack *st, uint32_t ip, uint16_t port)
{
	int any = -1;
	for (int i = 0; i < TCP_MAX_LISTENERS; i++) {
		if (!st->lst[i].used || st->lst[i].port != port)
			continue;
		if (st->lst[i].ip == ip)
			return i;
		if (st->lst[i].ip == 0)
			any = i;
	}
	return any;
}

static void send_cookie_synack(struct tcp_stack *st, const struct tcp_seg_in *in, const struct seg *s)
{
	uint8_t *o = st->hdr + 20;
	uint16_t mss = s->o.mss_ok ? s->o.mss : DEFAULT_MSS;
	uint8_t idx = 0;
	size_t ol;
	uint32_t tsval = 0;
	bool ts = s->o.ts_ok && !st->cfg.no_timestamps;
	bool ws = s->o.ws_ok && !st->cfg.no_wscale;
	bool sack = s->o.sackp && !st->cfg.no_sack;

	mss = (uint16_t)min_u32(mss, st->cfg.mss);
	for (uint8_t i = 0; i < 8; i++)
		if (cookie_mss[i] <= mss)
			idx = i;
	if (ts) {
		/* options the cookie cannot hold ride in the TSval's low bits:
		 * 4 bits of the peer's window scale (15: none), 1 bit SACK */
		tsval = (ts_now(st) & ~((1u << TS_OPTBITS) - 1)) |
			(uint32_t)(ws ? s->o.ws : 15u) | (sack ? 0x10u : 0u);
	} else {
		ws = sack = false;   /* without timestamps only the MSS survives */
	}
	st->stats.syn_cookies_sent++;
	ol = opt_syn(o, cookie_mss[idx], ws, st->rcv_wscale, sack, ts, tsval, s->o.tsval);
	while (ol & 3)
		o[ol++] = OPT_NOP;
	emit_raw(st, in->dst_ip, s->dport, in->src_ip, s->sport, cookie_make(st, s, in->dst_ip, in->src_ip, idx),
		 s->seq + 1, TH_SYN | TH_ACK, (uint16_t)min_u32(st->rbuf_size, 65535), ol, NULL, 0, 0);
}

static void listen_input(struct tcp_stack *st, const struct tcp_seg_in *in, struct seg *s, int li)
{
	struct listener *l = &st->lst[li];
	struct tcb *c;

	if (s->flags & TH_RST)
		return;
	if (s->flags & TH_ACK) {
		int idx;
		struct opts o;

		if (s->flags & TH_SYN) {
			send_rst_reply(st, in, s->sport, s->dport, s->seq, s->ack, s->flags, seg_len(s));
			return;
		}
		idx = cookie_check(st, s, in->dst_ip, in->src_ip);
		if (idx < 0) {
			if (st->stats.syn_cookies_sent)
				st->stats.syn_cookies_bad++;
			send_rst_reply(st, in, s->sport, s->dport, s->seq, s->ack, s->flags, seg_len(s));
			return;
		}
		c = conn_alloc(st, in->dst_ip, s->dport, in->src_ip, s->sport);
		if (!c) {
			st->stats.syn_drops++;
			return;
		}
		st->stats.syn_cookies_ok++;
		memset(&o, 0, sizeof(o));
		o.mss_ok = true;
		o.mss = cookie_mss[idx];
		if (s->o.ts_ok && !st->cfg.no_timestamps) {
			uint32_t bits = s->o.tsecr & ((1u << TS_OPTBITS) - 1);
			o.ts_ok = true;
			o.tsval = s->o.tsval;
			if ((bits & 15u) != 15u) {
				o.ws_ok = true;
				o.ws = (uint8_t)min_u32(bits & 15u, MAX_WSCALE);
			}
			o.sackp = (bits & 0x10u) != 0;
		}
		c->flags |= F_PASSIVE;
		c->listener = (int16_t)li;
		c->iss = s->ack - 1;
		c->irs = s->seq - 1;
		c->rcv_nxt = s->seq;
		c->snd_una = c->snd_nxt = c->snd_max = s->ack;
		c->sbuf_seq = s->ack;
		apply_syn_opts(st, c, &o, true);
		c->rcv_adv = c->rcv_nxt + min_u32(st->rbuf_size, 65535);
		c->last_ack_sent = c->rcv_nxt;
		c->flags |= F_APP;
		st->stats.accepted++;
		establish(st, c, s);
		ev_raise(st, c, EV_ACCEPTED);
		/* the rest (data, FIN) as in ESTABLISHED; the ACK is not new */
		conn_input(st, c, s);
		return;
	}
	if (!(s->flags & TH_SYN))
		return;
	if (l->nsyn >= l->backlog || st->free_head == 0) {
		send_cookie_synack(st, in, s);
		return;
	}
	c = conn_alloc(st, in->dst_ip, s->dport, in->src_ip, s->sport);
	if (!c) {
		st->stats.syn_drops++;
		return;
	}
	c->flags |= F_PASSIVE;
	c->listener = (int16_t)li;
	c->state = TCP_SYN_RECEIVED;
	l->nsyn++;
	c->irs = s->seq;
	c->rcv_nxt = s->seq + 1;
	apply_syn_opts(st, c, &s->o, false);
	c->iss = make_isn(st, c->lip, c->lport, c->rip, c->rport);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->sbuf_seq = c->iss + 1;
	c->rtt_time = st->now;
	send_seg(st, c, c->iss, TH_SYN, 0);
	rtx_restart(st, c);
}

static void tw_input(struct tcp_stack *st, const struct tcp_seg_in *in, struct seg *s, struct tw *t)
{
	if (s->flags & TH_RST) {
		if (s->seq == t->rcv_nxt)
			tw_unhash(st, t);   /* RFC 9293: RST in TIME-WAIT closes */
		return;
	}
	if ((s->flags & TH_SYN) && !(s->flags & TH_ACK)) {
		/* RFC 6191 / RFC 1122 4.2.2.13: a new incarnation may reuse the
		 * tuple if its ISN (or timestamp) is beyond the old one's. */
		int li = find_listener(st, in->dst_ip, s->dport);
		if (li >= 0 && (seq_gt(s->seq, t->rcv_nxt) ||
				(t->ts_ok && s->o.ts_ok && seq_gt(s->o.tsval, t->ts_recent)))) {
			tw_unhash(st, t);
			listen_input(st, in, s, li);
			return;
		}
	}
	if (seg_len(s) == 0)
		return;
	/* a retransmitted FIN (our ACK was lost) or anything else: ACK */
	{
		size_t ol = 0;
		if (t->ts_ok)
			ol = opt_ts(st->hdr + 20, ts_now(st), s->o.ts_ok ? s->o.tsval : t->ts_recent);
		emit_raw(st, t->lip, t->lport, t->rip, t->rport, t->snd_nxt, t->rcv_nxt, TH_ACK, 0, ol,
			 NULL, 0, 0);
	}
}

int tcp_input(struct tcp_stack *st, const struct tcp_seg_in *in)
{
	const uint8_t *h = in->hdr;
	struct seg s;
	struct tcb *c;
	struct tw *t;
	size_t doff;
	int li;

	st->stats.segs_in++;
	if (in->hdr_len < 20 || in->hdr_len > 60 || (!in->data && in->data_len)) {
		st->stats.bad_segs++;
		return -EINVAL;
	}
	doff = (size_t)(h[12] >> 4) * 4;
	if (doff != in->hdr_len || in->data_len > 0xffff) {
		st->stats.bad_segs++;
		return -EINVAL;
	}
	s.sport = ld16(h);
	s.dport = ld16(h + 2);
	s.seq = ld32(h + 4);
	s.ack = ld32(h + 8);
	s.flags = h[13] & 0x3f;
	s.win = ld16(h + 14);
	s.data = in->data;
	s.len = (uint32_t)in->data_len;
	if (parse_opts(h + 20, doff - 20, (s.flags & TH_SYN) != 0, &s.o) < 0 ||
	    s.sport == 0 || s.dport == 0) {
		st->stats.bad_segs++;
		return -EINVAL;
	}

	c = conn_lookup(st, in->dst_ip, s.dport, in->src_ip, s.sport);
	if (c) {
		conn_input(st, c, &s);
		return 0;
	}
	t = tw_lookup(st, in->dst_ip, s.dport, in->src_ip, s.sport);
	if (t) {
		tw_input(st, in, &s, t);
		return 0;
	}
	li = find_listener(st, in->dst_ip, s.dport);
	if (li >= 0) {
		listen_input(st, in, &s, li);
		return 0;
	}
	st->stats.no_conn++;
	send_rst_reply(st, in, s.sport, s.dport, s.seq, s.ack, s.flags, seg_len(&s));
	return 0;
}

/* ---- the stack --------------------------------------------------------- */

void tcp_config_default(struct tcp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_conns = 4096;
	cfg->snd_buf = 64 * 1024;
	cfg->rcv_buf = 64 * 1024;
	cfg->buf_cache = 64;
	cfg->mss = 1460;
	cfg->csum = TCP_CSUM_FULL;
	cfg->syn_backlog = 256;
	cfg->time_wait_ms = 30000;
	cfg->time_wait_max = 0;   /* 0: max_conns */
	cfg->rto_initial_ms = 1000;
	cfg->rto_min_ms = 200;
	cfg->rto_max_ms = 60000;
	cfg->delack_ms = 40;
	cfg->syn_retries = 5;
	cfg->data_retries = 10;
	cfg->fin_wait2_ms = 30000;
	cfg->keepalive_ms = 0;
	cfg->keepalive_intvl_ms = 75000;
	cfg->keepalive_probes = 9;
}

static uint32_t pow2_at_least(uint32_t v)
{
	uint32_t p = 1;
	while (p < v && p < (1u << 30))
		p <<= 1;
	return p;
}

struct tcp_stack *tcp_stack_new(const struct tcp_config *cfg, uint64_t now_ms)
{
	struct tcp_stack *st;
	uint32_t hsize;

	if (!cfg || !cfg->emit || cfg->max_conns == 0 || cfg->max_conns > (1u << 24) ||
	    cfg->snd_buf < 1024 || cfg->rcv_buf < 1024 || cfg->snd_buf > (1u << 30) ||
	    cfg->rcv_buf > (1u << 30) || cfg->mss < 88 || cfg->rto_min_ms == 0 ||
	    cfg->rto_max_ms < cfg->rto_min_ms || cfg->csum > TCP_CSUM_NONE) {
		errno = EINVAL;
		return NULL;
	}
	st = calloc(1, sizeof(*st));
	if (!st) {
		errno = ENOMEM;
		return NULL;
	}
	st->cfg = *cfg;
	if (st->cfg.time_wait_max == 0)
		st->cfg.time_wait_max = cfg->max_conns;
	if (st->cfg.syn_backlog == 0)
		st->cfg.syn_backlog = 1;
	if (st->cfg.secret[0] == 0 && st->cfg.secret[1] == 0) {
		if (getrandom(st->cfg.secret, sizeof(st->cfg.secret), 0) != sizeof(st->cfg.secret))
			st->cfg.secret[0] = now_ms ^ (uint64_t)(uintptr_t)st;
	}
	st->now = now_ms;
	st->ts_off = (uint32_t)(st->cfg.secret[1] >> 7);
	st->sbuf_size = pow2_at_least(cfg->snd_buf);
	st->rbuf_size = pow2_at_least(cfg->rcv_buf);
	while (st->rcv_wscale < MAX_WSCALE && (st->rbuf_size >> st->rcv_wscale) > 65535)
		st->rcv_wscale++;
	st->nconns = cfg->max_conns;
	hsize = pow2_at_least(cfg->max_conns * 2 > 64 ? cfg->max_conns * 2 : 64);
	st->hmask = hsize - 1;
	st->tw_cap = st->cfg.time_wait_max;
	st->conns = calloc(st->nconns, sizeof(*st->conns));
	st->hash = calloc(hsize, sizeof(uint32_t));
	st->tw_hash = calloc(hsize, sizeof(uint32_t));
	st->tws = calloc(st->tw_cap ? st->tw_cap : 1, sizeof(struct tw));
	if (!st->conns || !st->hash || !st->tw_hash || !st->tws) {
		tcp_stack_free(st);
		errno = ENOMEM;
		return NULL;
	}
	for (uint32_t i = st->nconns; i-- > 0;) {
		st->conns[i].hnext = st->free_head;
		st->free_head = i + 1;
	}
	wheel_init(&st->wheel, now_ms);
	wheel_handle(&st->wheel, WHEEL_KIND_CONN, conn_timer_fn);
	wheel_handle(&st->wheel, WHEEL_KIND_TW, tw_timer_fn);
	wheel_timer_init(&st->tw_timer, WHEEL_KIND_TW);
	return st;
}

void tcp_stack_free(struct tcp_stack *st)
{
	if (!st)
		return;
	if (st->conns) {
		for (uint32_t i = 0; i < st->nconns; i++) {
			free(st->conns[i].sbuf);
			free(st->conns[i].rbuf);
		}
	}
	cache_drain(&st->scache);
	cache_drain(&st->rcache);
	free(st->conns);
	free(st->hash);
	free(st->tw_hash);
	free(st->tws);
	free(st);
}

void tcp_now(struct tcp_stack *st, uint64_t now_ms)
{
	if (now_ms > st->now)
		st->now = now_ms;
}

unsigned tcp_timers(struct tcp_stack *st, uint64_t now_ms)
{
	tcp_now(st, now_ms);
	return wheel_expire(&st->wheel, st->now);
}

int tcp_next_timeout(const struct tcp_stack *st, uint64_t now_ms)
{
	return wheel_next_timeout(&st->wheel, now_ms);
}

const struct tcp_stats *tcp_stats(const struct tcp_stack *st)
{
	return &st->stats;
}

/* ---- listeners and connections ----------------------------------------- */

int tcp_listen(struct tcp_stack *st, uint32_t local_ip, uint16_t port, int backlog)
{
	int free_i = -1;

	if (port == 0 || backlog < 0)
		return -EINVAL;
	for (int i = 0; i < TCP_MAX_LISTENERS; i++) {
		if (st->lst[i].used && st->lst[i].port == port &&
		    (st->lst[i].ip == local_ip || st->lst[i].ip == 0 || local_ip == 0))
			return -EADDRINUSE;
		if (!st->lst[i].used && free_i < 0)
			free_i = i;
	}
	if (free_i < 0)
		return -ENOSPC;
	st->lst[free_i].used = true;
	st->lst[free_i].ip = local_ip;
	st->lst[free_i].port = port;
	st->lst[free_i].backlog = backlog ? (uint32_t)backlog : st->cfg.syn_backlog;
	st->lst[free_i].nsyn = 0;
	return free_i;
}

int tcp_unlisten(struct tcp_stack *st, int li)
{
	if (li < 0 || li >= TCP_MAX_LISTENERS || !st->lst[li].used)
		return -EINVAL;
	for (uint32_t i = 0; i < st->nconns; i++) {
		struct tcb *c = &st->conns[i];
		if ((c->flags & F_IN_USE) && c->listener == li) {
			if (c->state == TCP_SYN_RECEIVED && !(c->flags & F_APP))
				conn_free(st, c);
			else
				c->listener = -1;
		}
	}
	st->lst[li].used = false;
	return 0;
}

static bool tuple_free(const struct tcp_stack *st, uint32_t lip, uint16_t lport, uint32_t rip, uint16_t rport)
{
	return !conn_lookup(st, lip, lport, rip, rport) && !tw_lookup(st, lip, lport, rip, rport);
}

int tcp_pick_port(struct tcp_stack *st, uint32_t local_ip, uint32_t remote_ip, uint16_t remote_port)
{
	uint32_t n = EPH_HI - EPH_LO + 1;
	uint64_t m[2] = { (uint64_t)remote_ip << 16 | remote_port, (uint64_t)local_ip << 32 | (uint32_t)st->now };
	uint32_t start = (uint32_t)siphash(st->cfg.secret, m, 2) % n;

	for (uint32_t k = 0; k < n; k++) {
		uint16_t p = (uint16_t)(EPH_LO + (start + k) % n);
		if (st->cfg.port_ok && !st->cfg.port_ok(st->cfg.ctx, remote_ip, remote_port, local_ip, p))
			continue;
		if (tuple_free(st, local_ip, p, remote_ip, remote_port))
			return p;
	}
	return -EADDRNOTAVAIL;
}

int tcp_connect(struct tcp_stack *st, uint32_t local_ip, uint16_t local_port,
		uint32_t remote_ip, uint16_t remote_port, uint64_t *conn)
{
	struct tcb *c;

	if (remote_port == 0 || remote_ip == 0 || local_ip == 0)
		return -EINVAL;
	if (local_port == 0) {
		int p = tcp_pick_port(st, local_ip, remote_ip, remote_port);
		if (p < 0)
			return p;
		local_port = (uint16_t)p;
	} else if (!tuple_free(st, local_ip, local_port, remote_ip, remote_port)) {
		return -EADDRINUSE;
	}
	c = conn_alloc(st, local_ip, local_port, remote_ip, remote_port);
	if (!c)
		return -ENOMEM;
	c->flags |= F_APP;
	c->state = TCP_SYN_SENT;
	c->iss = make_isn(st, local_ip, local_port, remote_ip, remote_port);
	c->snd_una = c->iss;
	c->snd_nxt = c->snd_max = c->iss + 1;
	c->sbuf_seq = c->iss + 1;
	c->rcv_wscale = st->cfg.no_wscale ? 0 : st->rcv_wscale;
	c->rtt_time = st->now;
	c->cwnd = iw(c);
	c->ssthresh = UINT32_MAX / 2;
	send_seg(st, c, c->iss, TH_SYN, 0);
	c->rcv_wscale = 0;   /* in force only once the peer's SYN has the option too */
	rtx_restart(st, c);
	*conn = conn_id(st, c);
	return 0;
}

int tcp_set_udata(struct tcp_stack *st, uint64_t conn, void *udata)
{
	struct tcb *c = conn_by_id(st, conn);
	if (!c)
		return -EBADF;
	c->udata = udata;
	return 0;
}

ssize_t tcp_recv(struct tcp_stack *st, uint64_t conn, void *buf, size_t cap)
{
	struct tcb *c = conn_by_id(st, conn);
	uint32_t n, before, after;

	if (!c)
		return -EBADF;
	if (c->err)
		return c->err;
	if (c->rbuf_len == 0)
		return (c->flags & F_FIN_RCVD) ? 0 : -EAGAIN;
	if (cap == 0)
		return 0;
	n = (uint32_t)(cap < c->rbuf_len ? cap : c->rbuf_len);
	before = seq_gt(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	ring_read(c->rbuf, st->rbuf_size - 1, c->rbuf_head, buf, n);
	c->rbuf_head = (c->rbuf_head + n) & (st->rbuf_size - 1);
	c->rbuf_len -= n;
	if (c->rbuf_len == 0 && c->nooo == 0) {
		buf_put(st, &st->rcache, c->rbuf, st->rbuf_size);
		c->rbuf = NULL;
		c->rbuf_head = 0;
	}
	/* Window update (RFC 9293 3.8.6.2.2): when the edge would move by
	 * enough to matter to a sender that is waiting on it. */
	after = st->rbuf_size - c->rbuf_len;
	if ((c->state == TCP_ESTABLISHED || c->state == TCP_FIN_WAIT_1 || c->state == TCP_FIN_WAIT_2) &&
	    after - before >= min_u32(st->rbuf_size / 2, max_u32(2u * c->mss, st->rbuf_size / 4)) &&
	    before < st->rbuf_size / 2)
		send_ack(st, c);
	return (ssize_t)n;
}

ssize_t tcp_sendv(struct tcp_stack *st, uint64_t conn, const struct iovec *iov, int iovcnt)
{
	struct tcb *c = conn_by_id(st, conn);
	uint32_t room, took = 0;

	if (!c)
		return -EBADF;
	if (c->err)
		return c->err;
	if ((c->flags & F_FIN_QUEUED) || c->state == TCP_CLOSED || c->state == TCP_TIME_WAIT)
		return -EPIPE;
	room = st->sbuf_size - c->sbuf_len;
	for (int i = 0; i < iovcnt && room; i++) {
		uint32_t n = (uint32_t)(iov[i].iov_len < room ? iov[i].iov_len : room);
		if (n == 0)
			continue;
		if (!c->sbuf) {
			c->sbuf = buf_get(st, &st->scache, st->sbuf_size);
			if (!c->sbuf)
				return took ? (ssize_t)took : -ENOMEM;
			c->sbuf_head = 0;
		}
		ring_write(c->sbuf, st->sbuf_size - 1, c->sbuf_head + c->sbuf_len, iov[i].iov_base, n);
		c->sbuf_len += n;
		took += n;
		room -= n;
	}
	{
		size_t want = 0;
		for (int i = 0; i < iovcnt; i++)
			want += iov[i].iov_len;
		if (took < want)
			c->flags |= F_WANT_WRITE;
		else
			c->flags &= ~F_WANT_WRITE;
	}
	if (took && can_send_data(c->state))
		output(st, c);
	if (took == 0 && iovcnt && (c->flags & F_WANT_WRITE))
		return -EAGAIN;
	return (ssize_t)took;
}

int tcp_read_enable(struct tcp_stack *st, uint64_t conn, bool on)
{
	struct tcb *c = conn_by_id(st, conn);
	if (!c)
		return -EBADF;
	if (on) {
		c->flags &= ~F_RD_OFF;
		if ((c->flags & F_RD_PEND) || c->rbuf_len || (c->flags & F_FIN_RCVD) || c->err) {
			c->flags &= ~F_RD_PEND;
			ev_raise(st, c, EV_READABLE);
		}
	} else {
		c->flags |= F_RD_OFF;
		if (c->ev & EV_READABLE) {
			c->ev &= (uint8_t)~EV_READABLE;
			c->flags |= F_RD_PEND;
		}
	}
	return 0;
}

/* Queue our FIN after the data and move the state (RFC 9293 3.10.4). */
static void queue_fin(struct tcp_stack *st, struct tcb *c)
{
	if (c->flags & F_FIN_QUEUED)
		return;
	c->flags |= F_FIN_QUEUED;
	c->fin_seq = c->sbuf_seq + c->sbuf_len;
	switch (c->state) {
	case TCP_ESTABLISHED:
		c->state = TCP_FIN_WAIT_1;
		break;
	case TCP_CLOSE_WAIT:
		c->state = TCP_LAST_ACK;
		break;
	default:
		break;   /* SYN-RECEIVED: FIN-WAIT-1 once established */
	}
	output(st, c);
}

int tcp_shutdown(struct tcp_stack *st, uint64_t conn)
{
	struct tcb *c = conn_by_id(st, conn);
	if (!c)
		return -EBADF;
	if (c->state == TCP_SYN_SENT) {
		/* nothing sent yet but the SYN: the FIN waits for the handshake */
		c->flags |= F_FIN_QUEUED;
		c->fin_seq = c->sbuf_seq + c->sbuf_len;
		return 0;
	}
	if (c->state == TCP_CLOSED || c->state == TCP_TIME_WAIT)
		return 0;
	queue_fin(st, c);
	return 0;
}

void tcp_close(struct tcp_stack *st, uint64_t conn)
{
	struct tcb *c = conn_by_id(st, conn);

	if (!c)
		return;
	c->flags &= ~F_APP;
	c->ev = 0;
	c->t_keep = 0;
	/* unread bytes go; what arrives later is taken and dropped */
	c->rbuf_len = 0;
	c->nooo = 0;
	buf_put(st, &st->rcache, c->rbuf, st->rbuf_size);
	c->rbuf = NULL;
	switch (c->state) {
	case TCP_SYN_SENT:
	case TCP_CLOSED:
		conn_free(st, c);
		return;
	case TCP_TIME_WAIT:
		tw_enter(st, c);
		return;
	case TCP_FIN_WAIT_2:
		c->t_close = st->now + st->cfg.fin_wait2_ms;
		conn_timer_arm(st, c);
		return;
	case TCP_SYN_RECEIVED:
		c->flags |= F_FIN_QUEUED;
		c->fin_seq = c->sbuf_seq + c->sbuf_len;
		return;
	default:
		queue_fin(st, c);
		return;
	}
}

void tcp_abort(struct tcp_stack *st, uint64_t conn)
{
	struct tcb *c = conn_by_id(st, conn);

	if (!c)
		return;
	if (c->state != TCP_SYN_SENT && c->state != TCP_CLOSED && c->state != TCP_TIME_WAIT)
		emit_raw(st, c->lip, c->lport, c->rip, c->rport, c->snd_max, 0, TH_RST, 0, 0, NULL, 0, 0);
	c->flags &= ~F_APP;
	conn_free(st, c);
}

int tcp_conn_info(const struct tcp_stack *st, uint64_t conn, struct tcp_conn_info *in)
{
	const struct tcb *c = conn_by_id(st, conn);

	if (!c)
		return -EBADF;
	memset(in, 0, sizeof(*in));
	in->state = c->state;
	in->sack_ok = (c->flags & F_SACK_OK) != 0;
	in->ts_ok = (c->flags & F_TS_OK) != 0;
	in->snd_wscale = c->snd_wscale;
	in->rcv_wscale = c->rcv_wscale;
	in->mss = c->mss;
	in->local_ip = c->lip;
	in->remote_ip = c->rip;
	in->local_port = c->lport;
	in->remote_port = c->rport;
	in->snd_una = c->snd_una;
	in->snd_nxt = c->snd_nxt;
	in->snd_wnd = c->snd_wnd;
	in->rcv_nxt = c->rcv_nxt;
	in->rcv_wnd = seq_gt(c->rcv_adv, c->rcv_nxt) ? c->rcv_adv - c->rcv_nxt : 0;
	in->cwnd = c->cwnd;
	in->ssthresh = c->ssthresh;
	in->flight = flight(c);
	in->srtt_ms = c->srtt8 >> 3;
	in->rttvar_ms = c->rttvar4 >> 2;
	in->rto_ms = rto_backed(st, c);
	in->unsent = (uint32_t)(c->sbuf_seq + c->sbuf_len - seq_max(c->snd_nxt, c->sbuf_seq));
	in->unread = c->rbuf_len;
	in->retransmits = c->backoff;
	for (uint32_t i = 0; i < c->nooo; i++)
		in->ooo_bytes += c->ooo[i].end - c->ooo[i].start;
	in->nsack_ranges = c->nooo;
	return 0;
}

int tcp_tuple_state(const struct tcp_stack *st, uint32_t local_ip, uint16_t local_port,
		    uint32_t remote_ip, uint16_t remote_port)
{
	const struct tcb *c = conn_lookup(st, local_ip, local_port, remote_ip, remote_port);
	if (c)
		return c->state;
	if (tw_lookup(st, local_ip, local_port, remote_ip, remote_port))
		return TCP_TIME_WAIT;
	return -ENOENT;
}

/* ---- events ------------------------------------------------------------ */

static void fill_ev(const struct tcp_stack *st, const struct tcb *c, struct tcp_event *e, uint8_t type)
{
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->conn = conn_id(st, c);
	e->udata = c->udata;
	e->listener = c->listener >= 0 ? (uint16_t)c->listener : 0;
	e->err = c->err;
	e->local_ip = c->lip;
	e->remote_ip = c->rip;
	e->local_port = c->lport;
	e->remote_port = c->rport;
}

int tcp_poll(struct tcp_stack *st, struct tcp_event *ev, int max)
{
	static const struct { uint8_t bit, type; } order[] = {
		{ EV_ACCEPTED, TCP_EV_ACCEPTED }, { EV_CONNECTED, TCP_EV_CONNECTED },
		{ EV_READABLE, TCP_EV_READABLE }, { EV_WRITABLE, TCP_EV_WRITABLE },
		{ EV_CLOSED, TCP_EV_CLOSED },
	};
	int n = 0;

	while (st->ev_head && n < max) {
		struct tcb *c = &st->conns[st->ev_head - 1];
		int need = __builtin_popcount(c->ev);

		if (need > max - n && n > 0)
			break;
		for (unsigned k = 0; k < sizeof(order) / sizeof(order[0]) && n < max; k++) {
			if (c->ev & order[k].bit) {
				c->ev &= (uint8_t)~order[k].bit;
				fill_ev(st, c, &ev[n++], order[k].type);
			}
		}
		if (c->ev)
			break;   /* max reached mid-connection: it stays at the head */
		st->ev_head = c->evnext;
		if (st->ev_head == 0)
			st->ev_tail = 0;
		c->evnext = 0;
		c->flags &= ~F_ON_EVLIST;
	}
	return n;
}
