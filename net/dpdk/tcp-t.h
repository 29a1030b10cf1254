/* Types of the per-core userspace TCP stack (functions and the full
 * contract: net/dpdk/tcp.h).
 *
 * Nothing here depends on DPDK: the stack takes TCP segments in as bytes
 * with their IPv4 addresses and gives segments out through a callback, so
 * the DPDK port (net/dpdk/) wraps IPv4/Ethernet around it and the unit
 * tests wire two stacks together in memory.
 *
 * Addresses: IPv4 addresses are uint32_t in network byte order (as they sit
 * in the IPv4 header); ports are uint16_t in host byte order.
 *
 * Return codes, for every function of this module that returns int or
 * ssize_t: >= 0 success; -EAGAIN nothing now, an event will say when; any
 * other negative value is -errno: -ECONNRESET, -ECONNREFUSED, -ETIMEDOUT,
 * -EPIPE on a connection; -EBADF for an unknown or stale connection id;
 * -EINVAL, -EADDRINUSE, -ENOSPC, -ENOMEM, -EADDRNOTAVAIL on setup.
 * Nothing in the stack logs: callers log at the failure site.
 */
#ifndef STANZA_NET_DPDK_TCP_T_H
#define STANZA_NET_DPDK_TCP_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* A received segment. The caller has validated the IPv4 header (version,
 * lengths, not a fragment) and, unless the NIC did, the TCP checksum
 * (tcp_checksum_ok). hdr is the TCP header with its options (hdr_len is the
 * header's data offset * 4, 20..60); data/data_len the payload, which may
 * live elsewhere (another mbuf segment). tcp_seg_split fills hdr and data
 * from one contiguous L4 buffer. All pointers are borrowed for the call of
 * tcp_input only: the stack copies the payload into the connection's
 * receive buffer. */
struct tcp_seg_in {
	uint32_t src_ip;          /* remote, network order */
	uint32_t dst_ip;          /* local, network order */
	const uint8_t *hdr;
	size_t hdr_len;
	const uint8_t *data;
	size_t data_len;
};

/* A segment to send, given to tcp_config.emit. hdr is the TCP header with
 * options in the stack's scratch space; iov the payload, 0..2 pieces
 * pointing into the connection's send buffer. Everything is valid during
 * the emit call only: copy it into the packet. The checksum field of hdr
 * holds what tcp_config.csum asks for. The IPv4 header to build around it:
 * protocol 6, src_ip -> dst_ip, total length 20 + hdr_len + data_len, DF
 * set (the stack never sends more than the peer's MSS). */
struct tcp_seg_out {
	uint32_t src_ip;          /* local, network order */
	uint32_t dst_ip;          /* remote, network order */
	const uint8_t *hdr;
	uint16_t hdr_len;
	uint16_t iovcnt;
	uint32_t data_len;        /* sum of the iov lengths */
	const struct iovec *iov;
};

/* What the checksum field of emitted headers holds. */
enum tcp_csum_mode {
	TCP_CSUM_FULL = 0,        /* the complete checksum (software path) */
	TCP_CSUM_PSEUDO = 1,      /* the pseudo-header sum only, not inverted: what
				   * NICs with TCP checksum offload expect
				   * (DPDK: RTE_MBUF_F_TX_TCP_CKSUM, as
				   * rte_ipv4_phdr_cksum gives) */
	TCP_CSUM_NONE = 2,        /* zero */
};

/* Connection states, RFC 9293 section 3.3.2. A connection the caller
 * still holds keeps its id through TIME-WAIT (and then shows TCP_CLOSED);
 * once closed by the caller it moves to the compact TIME-WAIT table. */
enum tcp_state {
	TCP_CLOSED = 0,
	TCP_LISTEN,
	TCP_SYN_SENT,
	TCP_SYN_RECEIVED,
	TCP_ESTABLISHED,
	TCP_FIN_WAIT_1,
	TCP_FIN_WAIT_2,
	TCP_CLOSE_WAIT,
	TCP_CLOSING,
	TCP_LAST_ACK,
	TCP_TIME_WAIT,
};

enum tcp_ev_type {
	TCP_EV_NONE = 0,
	TCP_EV_ACCEPTED,     /* conn, listener, addresses: established on a listener */
	TCP_EV_CONNECTED,    /* conn: an active open (tcp_connect) is established */
	TCP_EV_READABLE,     /* conn: new bytes or the peer's FIN, collect with tcp_recv */
	TCP_EV_WRITABLE,     /* conn: send room again after a short tcp_sendv (one-shot) */
	TCP_EV_CLOSED,       /* conn, err: the connection died (RST, retransmission
			      * timeout, refused connect); tcp_recv/tcp_sendv now
			      * return err; the id stays valid until tcp_close */
};

/* Filled by tcp_poll. 40 bytes. */
struct tcp_event {
	uint8_t  type;            /* enum tcp_ev_type */
	uint8_t  pad;
	uint16_t listener;        /* ACCEPTED: the index tcp_listen returned */
	int32_t  err;             /* CLOSED: -ECONNRESET, -ETIMEDOUT, -ECONNREFUSED */
	uint64_t conn;            /* the connection id */
	void    *udata;           /* as given to tcp_set_udata (NULL before) */
	uint32_t local_ip, remote_ip;     /* network order */
	uint16_t local_port, remote_port; /* host order */
	uint32_t pad2;
};

/* Counters of one stack, for stats pages and tests. */
struct tcp_stats {
	uint64_t segs_in, segs_out, bytes_in, bytes_out;
	uint64_t bad_segs;            /* malformed: dropped */
	uint64_t no_conn;             /* to no connection or listener: RST sent (unless RST) */
	uint64_t rst_in, rst_out;
	uint64_t challenge_acks;      /* RFC 5961 */
	uint64_t retrans;             /* segments sent again (any reason) */
	uint64_t rto_fired;           /* retransmission timeouts */
	uint64_t fast_retrans;        /* entries into fast recovery */
	uint64_t sack_retrans;        /* retransmissions chosen from the SACK scoreboard */
	uint64_t dup_acks;
	uint64_t ooo_segs;            /* segments queued out of order */
	uint64_t dup_segs;            /* wholly old data */
	uint64_t paws_drops;
	uint64_t win_probes;          /* zero-window probes sent */
	uint64_t keepalive_probes;
	uint64_t syn_cookies_sent, syn_cookies_ok, syn_cookies_bad;
	uint64_t syn_drops;           /* SYNs dropped: no memory, listener full */
	uint64_t emit_fail;           /* emit returned an error: counted as loss */
	uint64_t tw_conns;            /* in TIME-WAIT now */
	uint64_t tw_recycled;         /* TIME-WAIT entries evicted early by the cap */
	uint64_t accepted, connected;
	uint64_t conns;               /* connections in the pool now */
	uint64_t buf_bytes;           /* send + receive buffer memory now */
};

/* What tcp_conn_info reports; for tests and diagnostics. */
struct tcp_conn_info {
	uint8_t  state;               /* enum tcp_state */
	bool     sack_ok, ts_ok;
	uint8_t  snd_wscale, rcv_wscale;
	uint16_t mss;                 /* effective send MSS (payload bytes) */
	uint32_t local_ip, remote_ip;
	uint16_t local_port, remote_port;
	uint32_t snd_una, snd_nxt, snd_wnd;   /* snd_wnd in bytes, scaled */
	uint32_t rcv_nxt, rcv_wnd;
	uint32_t cwnd, ssthresh, flight;      /* bytes */
	uint32_t srtt_ms, rttvar_ms, rto_ms;
	uint32_t unsent, unread;              /* bytes in the send buffer not yet sent; received, not read */
	uint32_t retransmits;                 /* consecutive timeouts (backoff exponent) */
	uint32_t ooo_bytes;                   /* out-of-order bytes held */
	uint8_t  nsack_ranges;                /* out-of-order ranges held */
};

struct tcp_stack;

/* Everything a stack is made with; start from tcp_config_default. */
struct tcp_config {
	/* Output: called for every segment the stack sends. Returns 0, or a
	 * negative value if the segment was dropped (no mbuf, TX ring full):
	 * the stack treats it as loss and its timers recover. Must not call
	 * back into the stack. */
	int (*emit)(void *ctx, const struct tcp_seg_out *seg);
	void *ctx;                    /* given to emit, port_ok and isn */

	/* Active open, local port choice: true if a segment remote -> local
	 * (src = remote) with this 4-tuple reaches this core (the RSS hash of
	 * the port's key and RETA). NULL: every port is fine. */
	bool (*port_ok)(void *ctx, uint32_t remote_ip, uint16_t remote_port,
			uint32_t local_ip, uint16_t local_port);

	/* Initial sequence numbers. NULL: RFC 6528 (clock + keyed hash of the
	 * 4-tuple). Tests set it to start near 2^32. */
	uint32_t (*isn)(void *ctx, uint32_t local_ip, uint16_t local_port,
			uint32_t remote_ip, uint16_t remote_port);

	uint64_t secret[2];           /* key of ISNs and SYN cookies; all zero: from getrandom */

	uint32_t max_conns;           /* connections in the pool (not counting TIME-WAIT): 4096 */
	uint32_t snd_buf;             /* send buffer per connection, bytes: 64 KiB */
	uint32_t rcv_buf;             /* receive buffer per connection (and the most we advertise): 64 KiB */
	uint32_t buf_cache;           /* free buffers kept for reuse per stack: 64 */
	uint16_t mss;                 /* our MSS: MTU - 40; 1460 */
	uint8_t  csum;                /* enum tcp_csum_mode: TCP_CSUM_FULL */
	bool     no_sack, no_timestamps, no_wscale;   /* turn options off (default: all on) */

	uint32_t syn_backlog;         /* default backlog of half-open connections per listener: 256 */
	uint32_t time_wait_ms;        /* TIME-WAIT duration (2 MSL): 30000 */
	uint32_t time_wait_max;       /* TIME-WAIT entries, oldest recycled beyond it; 0: max_conns */
	uint32_t rto_initial_ms;      /* 1000 (RFC 6298) */
	uint32_t rto_min_ms;          /* 200 (Linux's; RFC 6298 says 1000) */
	uint32_t rto_max_ms;          /* 60000 */
	uint32_t delack_ms;           /* 40 */
	uint32_t syn_retries;         /* SYN or SYN-ACK retransmissions before giving up: 5 */
	uint32_t data_retries;        /* data retransmission timeouts in a row before reset: 10 */
	uint32_t fin_wait2_ms;        /* orphaned FIN-WAIT-2 lifetime: 30000 */
	uint32_t keepalive_ms;        /* idle time before the first probe; 0: off (default) */
	uint32_t keepalive_intvl_ms;  /* 75000 */
	uint32_t keepalive_probes;    /* 9 */
};

#endif
