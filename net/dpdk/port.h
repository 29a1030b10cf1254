/* Inside net/dpdk: the port (port.c), a worker's packet path (ip.c, arp.c)
 * and the loop the backend (dpdk.c) builds on them. Not for other folders:
 * they use net/dpdk/dpdk.h and net/net.h.
 *
 * Ownership of packets: an mbuf received on queue q belongs to loop q until
 * it is freed, transmitted, queued for ARP, or handed to another loop
 * through that loop's steering ring (then it is the other loop's). Each
 * loop transmits only on its own queue. Nothing here takes a lock: the
 * steering rings are DPDK's lock-free multi-producer rings, and the rest
 * is per loop.
 */
#ifndef STANZA_NET_DPDK_PORT_H
#define STANZA_NET_DPDK_PORT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "net/dpdk/dpdk.h"
#include "net/dpdk/tcp.h"
#include "net/net-t.h"

#define DP_MAX_QUEUES   64          /* the router's worker limit */
#define DP_RETA_MAX     2048        /* ice has 2048 entries, most NICs 128..512 */
#define DP_BURST        32
#define DP_STEER_RING   4096        /* mbufs waiting for one loop, from the others */
#define DP_MBUFS        8192        /* per queue, default */
#define DP_MBUF_CACHE   256
#define DP_NB_RXD       1024
#define DP_NB_TXD       1024

/* ---- the port (port.c): set at net_dpdk_init, read-only after ---------- */

struct dp_port {
	bool up;
	bool eal_up;
	uint16_t id;
	uint16_t nq;                    /* queue pairs = loops */
	uint16_t mtu;
	bool hw_rss;                    /* the NIC spreads flows; else software steering */
	bool tx_csum;                   /* IPv4 + TCP checksum offload on transmit */
	bool rx_csum;                   /* RX checksum flags are set by the port */
	struct rte_ether_addr mac;
	uint32_t ip, mask, gw;          /* network order; gw 0: none */
	uint32_t reta_size;             /* a power of two */
	uint16_t reta[DP_RETA_MAX];     /* hash bucket -> queue (the NIC's, or ours) */
	struct rte_mempool *pool[DP_MAX_QUEUES];
	struct rte_ring *steer[DP_MAX_QUEUES];
	struct dp_loop *loop[DP_MAX_QUEUES];   /* live loops, for kicks */
	/* Each loop's counters, outside the loop so that a reader (telemetry,
	 * another thread) never touches a loop's memory, which loop_free
	 * releases; one cache line apart. */
	struct dp_stats {
		_Alignas(64) struct net_dpdk_stats s;
	} stats[DP_MAX_QUEUES];
	struct net_dpdk_conf conf;
};

extern struct dp_port dp_port;

/* The queue whose loop owns a segment src -> dst (addresses network order,
 * ports host order): the bucket of the symmetric Toeplitz hash in the
 * RETA, so both directions of a flow give the same queue. */
uint16_t dp_owner(uint32_t src_ip, uint32_t dst_ip, uint16_t sport, uint16_t dport);

/* ---- ARP (arp.c) --------------------------------------------------------- */

#define ARP_WAYS        4
#define ARP_SETS        256          /* 1024 neighbours per loop */
#define ARP_WAIT_MAX    128          /* packets waiting for a resolution, per loop */
#define ARP_WAIT_MS     1000         /* then dropped */
#define ARP_RETRY_MS    200          /* between requests for one address */
#define ARP_REFRESH_MS  5000         /* re-ask this long before an entry expires */
#define ARP_REQ_BURST   32           /* requests a loop may send at once ... */
#define ARP_REQ_PER_MS  1            /* ... and per ms after that: a flood of SYNs from
				      * spoofed addresses must not become a flood of broadcasts */

struct arp_entry {
	uint32_t ip;                    /* 0: free */
	uint8_t valid;                  /* mac known */
	struct rte_ether_addr mac;
	uint64_t expires;               /* ms */
	uint64_t asked;                 /* last request, ms */
};

struct arp_wait {
	struct rte_mbuf *m;             /* Ethernet header's destination still to fill */
	uint32_t nh;                    /* next hop */
	uint64_t since;
};

struct arp_table {
	struct arp_entry set[ARP_SETS][ARP_WAYS];
	struct arp_wait wait[ARP_WAIT_MAX];
	uint32_t nwait;
	uint32_t tokens;                /* requests allowed now */
	uint64_t refilled;              /* ms */
};

/* ---- a loop ---------------------------------------------------------------- */

struct dconn {
	uint64_t tcp;                   /* the stack's id */
	void *udata;
	uint32_t gen;                   /* part of the net_conn id; never 0 in use */
	uint32_t flags;
	uint32_t link;                  /* ready list index, or next free slot */
	uint32_t stamp;                 /* the poll that last reported READABLE */
};

struct dp_loop {
	struct net_loop base;
	uint16_t q;
	bool started;
	struct tcp_stack *tcp;
	struct rte_mempool *pool;
	uint16_t ip_id;

	struct rte_mbuf *tx[DP_BURST];
	unsigned ntx;

	struct dconn *conns;
	uint32_t nconns, cap, free_head;
	uint32_t *ready;
	uint32_t nready, ready_cursor;
	uint32_t stamp;
	struct net_event *last_ev;
	int last_n;

	uint16_t lis_port[NET_MAX_LISTENERS];
	int lis_tcp[NET_MAX_LISTENERS];
	unsigned nlis;

	uint64_t tick;                  /* ms of the last timer run */
	int evfd;
	struct net_dpdk_stats *st;       /* &dp_port.stats[q].s */
	struct arp_table arp;
	struct tcp_event tev[256];
	uint8_t linear[16384];          /* a multi-segment packet, made contiguous */

	/* Written by other threads: a line of their own. */
	_Alignas(64) atomic_uint sleeping;
	atomic_uint wake_pending;
	char pad_end[64 - 2 * sizeof(atomic_uint)];
};

/* A counter of this loop's struct net_dpdk_stats: only the loop writes it,
 * other threads (telemetry) read it; a relaxed store is a plain store on
 * x86, and keeps the reads well defined. */
static inline void st_add(uint64_t *c, uint64_t n)
{
	__atomic_store_n(c, *c + n, __ATOMIC_RELAXED);
}

/* ip.c: the packet path of one loop. */
void dp_rx(struct dp_loop *l, struct rte_mbuf **m, unsigned n, bool steered, uint64_t now);
int dp_tcp_emit(void *ctx, const struct tcp_seg_out *seg);
bool dp_port_ok(void *ctx, uint32_t remote_ip, uint16_t remote_port, uint32_t local_ip, uint16_t local_port);
void dp_tx(struct dp_loop *l, struct rte_mbuf *m);
void dp_tx_flush(struct dp_loop *l);
/* Send an IPv4 packet (Ethernet header in place, destination MAC to fill)
 * towards dst: on link or through the gateway, now or after ARP. */
void dp_output(struct dp_loop *l, struct rte_mbuf *m, uint32_t dst, uint64_t now);
/* Wake loop q if it naps (steered packets wait for it). */
void dp_kick(uint16_t q);

/* arp.c */
void arp_input(struct dp_loop *l, struct rte_mbuf *m, bool steered, uint64_t now);
/* The MAC for next hop nh, or NULL: then m (if not NULL) waits for the
 * answer (or is dropped) and a request goes out. */
const struct rte_ether_addr *arp_resolve(struct dp_loop *l, uint32_t nh, struct rte_mbuf *m, uint64_t now);
void arp_tick(struct dp_loop *l, uint64_t now);
void arp_announce(struct dp_loop *l);
void arp_free(struct dp_loop *l);

#endif
