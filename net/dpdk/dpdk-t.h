/* Types of the DPDK transport's set-up (functions: net/dpdk/dpdk.h).
 *
 * Plain data with no DPDK type in it, so that the configuration
 * (router/config-t.h, cmd/config.c) carries it in builds without DPDK.
 */
#ifndef STANZA_NET_DPDK_DPDK_T_H
#define STANZA_NET_DPDK_DPDK_T_H

#include <stdint.h>

#define NET_DPDK_EAL_MAX   1024   /* EAL arguments, blank-separated */
#define NET_DPDK_PORT_MAX  256    /* devargs of the port */

/* What the operator sets (docs/CONFIG.md, group "dpdk"). */
struct net_dpdk_conf {
	char eal[NET_DPDK_EAL_MAX];    /* e.g. "--no-huge -m 512 --no-pci --vdev net_af_packet0,iface=veth0,qpairs=2" */
	char port[NET_DPDK_PORT_MAX];  /* the port: a name the EAL probed ("0000:01:00.0",
					* "net_af_packet0") or devargs to probe ("net_memif0,role=client") */
	uint8_t ip[4];                 /* our IPv4 address, network order */
	uint8_t prefix;                /* on-link prefix length, 1..32; 0: every address is on link */
	uint8_t has_gateway;
	uint8_t has_mac;
	uint8_t pad;
	uint8_t gateway[4];            /* next hop for off-link peers, network order */
	uint8_t mac[6];                /* MAC override (has_mac) */
	uint16_t pad2;
	uint32_t idle_sleep_us;        /* longest nap of an idle worker; 0: spin (isolated cores) */
	uint32_t mbufs;                /* per worker; 0: a default */
	uint32_t arp_timeout_s;        /* ARP cache entry lifetime; 0: 300 s */
};

/* Counters of the whole port, summed over workers (net_dpdk_stats). Each
 * worker counts into its own copy; reads are racy snapshots, which is all
 * a log line or a test needs. */
struct net_dpdk_stats {
	uint64_t rx_packets;
	uint64_t tx_packets;
	uint64_t rx_bytes;
	uint64_t tx_bytes;
	uint64_t steered;          /* handed to another worker (software RSS) */
	uint64_t arp_rx;
	uint64_t arp_replies;      /* answers we sent to requests for our address */
	uint64_t arp_requests;     /* requests we sent */
	uint64_t icmp_echo;        /* echo requests answered */
	uint64_t tcp_rx;           /* segments given to the TCP stack */
	uint64_t tcp_rst_tx;       /* RSTs sent (closed ports and aborts) */
	uint64_t drop_not_ip;      /* other ethertypes (IPv6, LLDP...) */
	uint64_t drop_not_us;      /* another MAC or IP address */
	uint64_t drop_bad_ip;      /* version, header length, total length, TTL */
	uint64_t drop_ip_csum;
	uint64_t drop_fragment;
	uint64_t drop_bad_l4;      /* short or bad-checksum ICMP/TCP */
	uint64_t drop_proto;       /* UDP and others */
	uint64_t drop_arp_queue;   /* waited for ARP too long, or the queue was full */
	uint64_t drop_no_route;    /* off-link destination and no gateway */
	uint64_t drop_tx_full;     /* the TX queue took fewer than offered */
	uint64_t drop_nombuf;      /* the pool was empty */
	uint64_t drop_ring_full;   /* the steering ring to another worker was full */
	uint64_t conns;            /* open TCP connections now */
	uint64_t accepted;
	uint64_t syn_dropped;      /* SYNs refused (backlog full, out of memory) */
	uint64_t syn_cookies;      /* SYN-ACKs sent as SYN cookies (a listener's queue was full) */
};

#endif
