/* libFuzzer target for net/dpdk/tcp.h: the input is a script of steps
 * run against one stack that has a listener, an accepted (established)
 * connection and an active open in SYN-SENT. Steps either feed raw bytes
 * as a TCP segment, or build a segment aimed at a connection's current
 * sequence space (so the fuzzer reaches past the acceptability checks),
 * or advance the clock, or act as the application. After every step the
 * stack's invariants are checked: bounded connections, TIME-WAIT entries
 * and buffer memory, and every emitted segment well formed with a correct
 * checksum and no more payload than the MSS. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include "net/dpdk/tcp.h"

#define IP_L 0x0100000au
#define IP_R 0x0200000au
#define MAX_CONNS 8
#define BUF 4096
#define TW_MAX 4

struct fz {
	const uint8_t *p, *end;
	uint8_t last[1600];
	size_t last_len;
};

static uint8_t take8(struct fz *f)
{
	return f->p < f->end ? *f->p++ : 0;
}

static uint16_t take16(struct fz *f)
{
	return (uint16_t)(take8(f) << 8 | take8(f));
}

static void check(int ok)
{
	if (!ok)
		abort();
}

static int emit(void *ctx, const struct tcp_seg_out *s)
{
	struct fz *f = ctx;
	struct tcp_seg_in in;
	size_t off;

	check(s->hdr_len >= 20 && s->hdr_len <= 60 && s->hdr_len % 4 == 0);
	check(s->iovcnt <= 2);
	check(s->data_len <= 1460);
	check(s->hdr_len + s->data_len <= sizeof(f->last));
	memcpy(f->last, s->hdr, s->hdr_len);
	off = s->hdr_len;
	for (int i = 0; i < s->iovcnt; i++) {
		memcpy(f->last + off, s->iov[i].iov_base, s->iov[i].iov_len);
		off += s->iov[i].iov_len;
	}
	check(off == s->hdr_len + s->data_len);
	f->last_len = off;
	check(tcp_seg_split(&in, f->last, off, s->src_ip, s->dst_ip) == 0);
	check(tcp_checksum_ok(&in));
	return 0;
}

static uint32_t ld32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Build and feed a segment from the remote side. */
static void feed(struct tcp_stack *st, uint16_t sport, uint16_t dport, uint32_t seq, uint32_t ack,
		 uint8_t flags, uint16_t win, const uint8_t *opt, size_t optlen, const uint8_t *data, size_t len)
{
	uint8_t b[1600];
	struct tcp_seg_in in;
	size_t hl;

	optlen &= ~(size_t)3;
	if (optlen > 40)
		optlen = 40;
	hl = 20 + optlen;
	if (len > sizeof(b) - hl)
		len = sizeof(b) - hl;
	memset(b, 0, 20);
	b[0] = (uint8_t)(sport >> 8); b[1] = (uint8_t)sport;
	b[2] = (uint8_t)(dport >> 8); b[3] = (uint8_t)dport;
	b[4] = (uint8_t)(seq >> 24); b[5] = (uint8_t)(seq >> 16); b[6] = (uint8_t)(seq >> 8); b[7] = (uint8_t)seq;
	b[8] = (uint8_t)(ack >> 24); b[9] = (uint8_t)(ack >> 16); b[10] = (uint8_t)(ack >> 8); b[11] = (uint8_t)ack;
	b[12] = (uint8_t)((hl / 4) << 4);
	b[13] = flags;
	b[14] = (uint8_t)(win >> 8); b[15] = (uint8_t)win;
	if (optlen)
		memcpy(b + 20, opt, optlen);
	if (len)
		memcpy(b + hl, data, len);
	if (tcp_seg_split(&in, b, hl + len, IP_R, IP_L) == 0)
		tcp_input(st, &in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t pattern[8192];
	struct fz f = { .p = data, .end = data + size };
	struct tcp_config cfg;
	struct tcp_stack *st;
	struct tcp_event ev[32];
	uint64_t now = 5000000, conns[2] = { 0, 0 };
	uint8_t opts[] = { 2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 2 };
	uint8_t tsopt[] = { 1, 1, 8, 10, 0, 0, 0, 2, 0, 0, 0, 0 };
	uint32_t peer_isn = 0xfffffff0u;

	if (pattern[1] == 0)
		for (size_t i = 0; i < sizeof(pattern); i++)
			pattern[i] = (uint8_t)(i * 7 + 1);

	tcp_config_default(&cfg);
	cfg.emit = emit;
	cfg.ctx = &f;
	cfg.secret[0] = 1;
	cfg.secret[1] = 2;
	cfg.max_conns = MAX_CONNS;
	cfg.snd_buf = cfg.rcv_buf = BUF;
	cfg.time_wait_max = TW_MAX;
	cfg.syn_backlog = 2;
	cfg.keepalive_ms = 20000;
	cfg.keepalive_intvl_ms = 1000;
	st = tcp_stack_new(&cfg, now);
	check(st != NULL);
	check(tcp_listen(st, 0, 80, 0) >= 0);

	/* the established connection: a handshake from port 1000 */
	feed(st, 1000, 80, peer_isn, 0, 0x02, 65535, opts, sizeof(opts), NULL, 0);
	check(f.last_len >= 20);
	feed(st, 1000, 80, peer_isn + 1, ld32(f.last + 4) + 1, 0x10, 65535, tsopt, sizeof(tsopt), NULL, 0);
	for (int n = tcp_poll(st, ev, 32), i = 0; i < n; i++)
		if (ev[i].type == TCP_EV_ACCEPTED)
			conns[0] = ev[i].conn;
	check(conns[0] != 0);
	/* the active open, to port 2000 */
	check(tcp_connect(st, IP_L, 40000, IP_R, 2000, &conns[1]) == 0);

	while (f.p < f.end) {
		uint8_t op = take8(&f);
		uint64_t c = conns[op >> 7];
		struct tcp_conn_info in;
		uint8_t buf[BUF];

		switch (op & 7) {
		case 0: {   /* raw bytes as a segment */
			size_t len = take8(&f);
			uint8_t seg[300];
			struct tcp_seg_in s;
			if (len > (size_t)(f.end - f.p))
				len = (size_t)(f.end - f.p);
			memcpy(seg, f.p, len);
			f.p += len;
			if (tcp_seg_split(&s, seg, len, (op & 8) ? IP_R : 0x03000000u, IP_L) == 0)
				tcp_input(st, &s);
			break;
		}
		case 1: {   /* a segment aimed at conns[op >> 7] */
			uint8_t flags = take8(&f);
			int16_t dseq = (int16_t)take16(&f), dack = (int16_t)take16(&f);
			uint16_t win = take16(&f);
			uint8_t ol = take8(&f) % 44, plen = take8(&f);
			uint8_t o[44] = { 0 };
			for (uint8_t i = 0; i < ol; i++)
				o[i] = take8(&f);
			if (tcp_conn_info(st, c, &in) < 0)
				break;
			feed(st, in.remote_port, in.local_port, in.rcv_nxt + (uint32_t)(int32_t)dseq * 16,
			     in.snd_una + (uint32_t)(int32_t)dack * 16, flags, win, o, ol,
			     pattern + (dseq & 0xff), (size_t)plen * 8);
			break;
		}
		case 2: {   /* a segment to the listener from another port */
			uint16_t port = (uint16_t)(1001 + take8(&f) % 16);
			uint8_t flags = take8(&f);
			uint32_t seq = (uint32_t)take16(&f) << 16, ack = f.last_len >= 8 ? ld32(f.last + 4) + 1 : 0;
			if (take8(&f) & 1)
				ack += take8(&f);
			feed(st, port, 80, seq, ack, flags, 65535, (flags & 2) ? opts : tsopt,
			     (flags & 2) ? sizeof(opts) : sizeof(tsopt), pattern, take8(&f) % 64);
			break;
		}
		case 3:     /* time */
			now += (uint64_t)take8(&f) * ((op & 8) ? 1000u : 8u);
			tcp_timers(st, now);
			break;
		case 4: {   /* the application */
			struct iovec iov = { pattern, (size_t)take8(&f) * 32 };
			switch ((op >> 3) & 7) {
			case 0: tcp_recv(st, c, buf, take8(&f) * 16u); break;
			case 1: tcp_sendv(st, c, &iov, 1); break;
			case 2: tcp_shutdown(st, c); break;
			case 3: tcp_close(st, c); break;
			case 4: tcp_abort(st, c); break;
			case 5: tcp_read_enable(st, c, take8(&f) & 1); break;
			case 6: tcp_sendv(st, c, &iov, 1); tcp_sendv(st, c, &iov, 1); break;
			default: {
				uint64_t n;
				if (tcp_connect(st, IP_L, 0, IP_R, (uint16_t)(2000 + take8(&f) % 4), &n) == 0)
					conns[op >> 7] = n;
				break;
			}
			}
			break;
		}
		default: {  /* take events: new connections become targets */
			int n = tcp_poll(st, ev, 32);
			for (int i = 0; i < n; i++) {
				check(ev[i].type >= TCP_EV_ACCEPTED && ev[i].type <= TCP_EV_CLOSED);
				if (ev[i].type == TCP_EV_ACCEPTED)
					conns[i & 1] = ev[i].conn;
			}
			break;
		}
		}
		{
			const struct tcp_stats *s = tcp_stats(st);
			check(s->conns <= MAX_CONNS);
			check(s->tw_conns <= TW_MAX);
			check(s->buf_bytes <= (uint64_t)s->conns * 2 * BUF);
			if (tcp_conn_info(st, c, &in) == 0) {
				check(in.unread <= BUF && in.ooo_bytes <= BUF && in.nsack_ranges <= 8);
				check(in.flight <= (uint32_t)BUF + 2);
				check(in.rto_ms <= cfg.rto_max_ms && in.rto_ms >= 1);
			}
		}
	}
	tcp_stack_free(st);
	return 0;
}
