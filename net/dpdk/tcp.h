/* The per-core userspace TCP stack under the DPDK transport (types:
 * net/dpdk/tcp-t.h). Pure C, no DPDK: bytes in (tcp_input), segments out
 * (tcp_config.emit), time from the caller. One struct tcp_stack per worker
 * core, run to completion, no locks; the stack is not thread-safe and every
 * call for a stack comes from its worker.
 *
 * A worker's iteration with it (the DPDK port owns the loop):
 *
 *     now = net_now_ms();
 *     tcp_timers(st, now);                     // sets the clock, runs due timers
 *     for each received IPv4/TCP packet:
 *         tcp_seg_split(&seg, l4, l4_len, ip->src, ip->dst);
 *         tcp_input(st, &seg);                 // may emit ACKs, RSTs, data
 *     n = tcp_poll(st, ev, max);               // ACCEPTED, READABLE, ...
 *     ... the router's recv / sendv / close ...
 *     sleep at most tcp_next_timeout(st, now) ms
 *
 * Memory: connections come from a pool of tcp_config.max_conns allocated by
 * tcp_stack_new; a connection's send and receive buffers are taken when the
 * first byte needs them and given back when they are empty (a per-stack
 * cache of free buffers keeps malloc off the steady state). TIME-WAIT
 * lives in a compact table capped at time_wait_max entries (the oldest is
 * recycled early past it). Out-of-order data is written straight into its
 * place in the receive buffer (the window never exceeds the buffer's free
 * room), so holding it costs no memory beyond the buffer. Nothing is
 * allocated per segment.
 *
 * Implemented (RFC 9293 unless said):
 *   - passive and active open, simultaneous open, every close path
 *     (FIN-WAIT-1/2, CLOSING, TIME-WAIT, CLOSE-WAIT, LAST-ACK, simultaneous
 *     close), orphaned FIN-WAIT-2 timeout (fin_wait2_ms), RST for segments
 *     to no connection (3.10.7.1), RST in SYN-SENT only with an acceptable
 *     ACK; RFC 5961: RST accepted only at exactly RCV.NXT, a challenge ACK
 *     for an in-window RST or any SYN on a synchronized connection, the
 *     ACK-range check against MAX.SND.WND (no challenge-ACK rate limit);
 *   - options: MSS, window scale, timestamps (RFC 7323: RTTM on every
 *     new ACK, PAWS with the 24-day rule; one TSval offset per stack, not
 *     per connection), SACK-permitted and SACK blocks (RFC 2018: the newest
 *     block first, up to 3 with timestamps); the SYN's window never scaled;
 *   - wraparound-safe sequence arithmetic everywhere (tests start near 2^32);
 *   - retransmission timer per RFC 6298 (SRTT/RTTVAR, G = 1 ms, min/max
 *     RTO configurable, 200 ms floor by default like Linux; exponential
 *     backoff kept until a new sample, Karn's rule: no sample from a
 *     retransmitted segment unless timestamps make it unambiguous);
 *     go-back-N from snd_una after a timeout, SACK state dropped (RFC 2018 8);
 *   - congestion control: IW10 (RFC 6928), slow start with ABC L=2 and
 *     congestion avoidance (RFC 5681, RFC 3465), fast retransmit on 3
 *     duplicate ACKs (or 3 MSS SACKed), NewReno fast recovery (RFC 6582,
 *     Slow-but-Steady timer) without SACK, and with SACK a recovery that
 *     follows RFC 6675 (pipe, NextSeg: holes below the highest SACKed byte
 *     first, then new data; cwnd = ssthresh), IsLost simplified to "a hole
 *     below the highest SACKed byte". No CUBIC: Reno growth only.
 *   - delayed ACKs (RFC 1122 4.2.3.2, RFC 5681 4.2): an ACK for every
 *     second segment or after delack_ms (rounded up to the wheel's tick),
 *     at once for out-of-order data, for data filling a hole, and for a FIN;
 *   - receive window: never shrinks, receiver SWS avoidance (the edge moves
 *     by at least min(buffer/2, MSS)), a window update when tcp_recv opens it
 *     by enough; sender SWS avoidance without Nagle;
 *   - persist timer: zero-window probes (an ACK with SEG.SEQ = SND.UNA - 1,
 *     as Linux does, which the peer must answer with its window), backed
 *     off like the RTO, never giving up while the caller holds the
 *     connection (an orphan gives up after data_retries);
 *   - out-of-order queue in the receive buffer, up to 8 ranges (a segment
 *     that would need a 9th is dropped), a FIN beyond a hole waits for it;
 *   - keepalive (off by default, RFC 1122 4.2.3.6);
 *   - SYN queue per listener (backlog of half-open connections); past it,
 *     or with the pool full, SYN cookies (RFC 4987 3.6): 5 bits of a 64 s
 *     clock, 3 bits of MSS index and a 24-bit SipHash MAC in the ISS; the
 *     peer's window scale and SACK-permitted ride in our TSval's low 6 bits
 *     when the peer sends timestamps (else only the MSS survives); a cookie
 *     is good for 64 to 128 s;
 *   - TIME-WAIT: a RST at RCV.NXT ends it (RFC 9293, not RFC 1337); a new
 *     SYN reopens the tuple if its ISN or timestamp is newer (RFC 6191);
 *     a retransmitted FIN is ACKed but does not restart 2 MSL in the
 *     compact table;
 *   - ISNs per RFC 6528 (SipHash of the 4-tuple plus a 4 us clock).
 * Not implemented: IPv6, IP options/fragments (the caller's), urgent data
 * (URG is ignored), TCP Fast Open, ECN, CUBIC, Nagle's algorithm (the
 * caller batches; every sendv sends at once), path MTU discovery (we send
 * at most min(peer MSS, our MSS) less 12 bytes for timestamps), D-SACK,
 * RACK-TLP, F-RTO, MD5/AO options, data on a SYN (ignored; the peer
 * sends it again).

 * Ownership: the stack owns connections. An id given out (ACCEPTED,
 * tcp_connect) stays valid until the caller's tcp_close or tcp_abort, even
 * after the peer reset it (then calls return the error); after that the
 * stack finishes the protocol on its own (sends what was queued, FIN,
 * TIME-WAIT) and the id is stale: calls return -EBADF, since every id
 * carries a generation.
 */
#ifndef STANZA_NET_DPDK_TCP_H
#define STANZA_NET_DPDK_TCP_H

#include "net/dpdk/tcp-t.h"

/* ---- the stack --------------------------------------------------------- */

/* Defaults documented in struct tcp_config; the caller then sets emit (and
 * ctx, port_ok) at least. */
void tcp_config_default(struct tcp_config *cfg);

/* A stack with its connection pool, at time now_ms. NULL with errno set
 * (EINVAL: no emit or a bad size; ENOMEM). cfg is copied. */
struct tcp_stack *tcp_stack_new(const struct tcp_config *cfg, uint64_t now_ms);

/* Free the stack and every connection, buffer and listener; sends nothing. */
void tcp_stack_free(struct tcp_stack *st);

/* Set the stack's clock (ms, monotonic, as net_now_ms). Every later call
 * uses it for timestamps and timers until the next tcp_now / tcp_timers. */
void tcp_now(struct tcp_stack *st, uint64_t now_ms);

/* Set the clock and run every timer due by now_ms (retransmissions,
 * delayed ACKs, probes, TIME-WAIT expiry). Returns how many ran. */
unsigned tcp_timers(struct tcp_stack *st, uint64_t now_ms);

/* Milliseconds until tcp_timers has work (0: now), -1 if nothing is armed:
 * a poll timeout. Timer precision is net/wheel.h's tick (64 ms). */
int tcp_next_timeout(const struct tcp_stack *st, uint64_t now_ms);

const struct tcp_stats *tcp_stats(const struct tcp_stack *st);

/* ---- segments in ------------------------------------------------------- */

/* Process one segment at the stack's clock. May call emit (ACK, RST,
 * data) before returning and queue events for tcp_poll. Returns 0 when the
 * segment was taken (also when TCP discarded it, as for an old duplicate),
 * -EINVAL if it was malformed (bad data offset, options that overrun). */
int tcp_input(struct tcp_stack *st, const struct tcp_seg_in *seg);

/* Split one contiguous L4 buffer (TCP header, options, payload) into seg.
 * Returns 0 or -EINVAL (shorter than its data offset, data offset < 5). */
int tcp_seg_split(struct tcp_seg_in *seg, const void *l4, size_t l4_len,
		  uint32_t src_ip, uint32_t dst_ip);

/* The Internet checksum of a TCP segment with its IPv4 pseudo-header, as
 * it goes in the header's checksum field (network order, to store with
 * memcpy). The checksum field of hdr is summed as is: zero it first. */
uint16_t tcp_checksum(uint32_t src_ip, uint32_t dst_ip, const void *hdr, size_t hdr_len,
		      const struct iovec *iov, int iovcnt);

/* true if a received segment's checksum verifies (software path, when the
 * NIC did not check it). */
bool tcp_checksum_ok(const struct tcp_seg_in *seg);

/* ---- listeners and connections ----------------------------------------- */

/* Passive open on local_ip (0: any address of this stack) and port.
 * backlog bounds half-open connections (0: tcp_config.syn_backlog); SYNs
 * beyond it are answered with SYN cookies. Returns a listener index (0,
 * 1, ...; at most TCP_MAX_LISTENERS) or -EADDRINUSE, -ENOSPC, -EINVAL. */
#define TCP_MAX_LISTENERS 16
int tcp_listen(struct tcp_stack *st, uint32_t local_ip, uint16_t port, int backlog);

/* Stop listening. Connections it accepted are unaffected; half-open ones
 * are dropped. Returns 0 or -EINVAL. */
int tcp_unlisten(struct tcp_stack *st, int listener);

/* Active open from local_ip:local_port (0: a port chosen with
 * tcp_config.port_ok, see tcp_pick_port) to remote_ip:remote_port. Sends
 * the SYN now. On success stores the id in *conn and returns 0; the outcome
 * comes as TCP_EV_CONNECTED or TCP_EV_CLOSED (-ECONNREFUSED, -ETIMEDOUT).
 * sendv before CONNECTED queues bytes (sent once established). Errors:
 * -ENOMEM (pool full), -EADDRINUSE (tuple in use), -EADDRNOTAVAIL (no
 * free port fits port_ok). */
int tcp_connect(struct tcp_stack *st, uint32_t local_ip, uint16_t local_port,
		uint32_t remote_ip, uint16_t remote_port, uint64_t *conn);

/* A free local port in the ephemeral range 32768..60999 for a connection
 * to remote_ip:remote_port, such that port_ok accepts it (so the peer's
 * answers land on this core) and no connection or TIME-WAIT entry of this
 * stack has the tuple. Returns the port or -EADDRNOTAVAIL. */
int tcp_pick_port(struct tcp_stack *st, uint32_t local_ip, uint32_t remote_ip, uint16_t remote_port);

/* Attach the caller's pointer, returned in every later event of conn.
 * Returns 0 or -EBADF. */
int tcp_set_udata(struct tcp_stack *st, uint64_t conn, void *udata);

/* Copy up to cap received in-order bytes into buf and open the window as
 * room frees (a window update goes out when it grows by 2 MSS or half the
 * buffer). Returns the count, 0 at end of stream (FIN received and every
 * byte read), -EAGAIN when nothing is there now (READABLE will follow), or
 * the error that killed the connection (-ECONNRESET, -ETIMEDOUT ...). */
ssize_t tcp_recv(struct tcp_stack *st, uint64_t conn, void *buf, size_t cap);

/* Copy the iovecs into the send buffer, as much as fits, and send what the
 * windows allow now. Returns the bytes taken (fewer than asked when the
 * buffer filled: WRITABLE follows once there is room), -EAGAIN (nothing
 * taken), -EPIPE after tcp_shutdown, or the connection's error. Bytes taken
 * are delivered or the connection dies with an error event. */
ssize_t tcp_sendv(struct tcp_stack *st, uint64_t conn, const struct iovec *iov, int iovcnt);

/* Stop (on = false) or resume READABLE events for conn. The receive window
 * closes by itself as unread bytes fill the buffer. Resuming reports
 * READABLE at the next tcp_poll if there are bytes or EOF. 0 or -EBADF. */
int tcp_read_enable(struct tcp_stack *st, uint64_t conn, bool on);

/* Half-close: send a FIN after every queued byte; reading goes on.
 * Returns 0, or -EBADF. Idempotent. */
int tcp_shutdown(struct tcp_stack *st, uint64_t conn);

/* Release conn: queued bytes are still sent, then a FIN (an orderly
 * close); unread and later received bytes are dropped. The id is stale
 * from now on; no further events for it. The stack keeps the connection
 * until the close handshake ends (bounded by retransmission limits and
 * fin_wait2_ms). */
void tcp_close(struct tcp_stack *st, uint64_t conn);

/* Release conn with a RST (when the connection is still synchronized),
 * dropping everything queued. The id is stale from now on. */
void tcp_abort(struct tcp_stack *st, uint64_t conn);

/* State and counters of conn; 0 or -EBADF. */
int tcp_conn_info(const struct tcp_stack *st, uint64_t conn, struct tcp_conn_info *info);

/* The state of the connection with this tuple, TCP_TIME_WAIT for an
 * entry of the TIME-WAIT table, or -ENOENT. Also sees connections the
 * caller has closed that are still finishing: for tests and diagnostics. */
int tcp_tuple_state(const struct tcp_stack *st, uint32_t local_ip, uint16_t local_port,
		    uint32_t remote_ip, uint16_t remote_port);

/* ---- events ------------------------------------------------------------ */

/* Fill ev with up to max events (ACCEPTED, CONNECTED, READABLE, WRITABLE,
 * CLOSED) that happened since the last call; returns how many. Events are
 * edges: READABLE comes once per batch of arrivals (and again after
 * tcp_read_enable(on)), so a caller that wants level-triggered reading keeps
 * a connection on its own "still readable" list until tcp_recv returns
 * fewer bytes than asked, -EAGAIN, 0 or an error. A connection with
 * several pending events gives them in the order ACCEPTED/CONNECTED,
 * READABLE, WRITABLE, CLOSED. Events of a connection closed since are not
 * given. Pending events never overflow: they are flags on the connection
 * and a list of connections with any set. */
int tcp_poll(struct tcp_stack *st, struct tcp_event *ev, int max);

#endif
