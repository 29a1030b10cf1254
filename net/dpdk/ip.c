/* A loop's packet path: Ethernet in, IPv4 checks, ICMP echo, TCP to the
 * stack (or to the loop that owns the flow), and segments out.
 *
 * Received packets are checked before anything reads past a header: the
 * Ethernet and IPv4 headers must sit in the first segment, the IPv4 total
 * length must fit the frame (padding beyond it is trimmed), the header
 * checksum must verify (or the NIC said it does). Fragments are dropped
 * and counted: nothing we serve needs them (our MSS keeps peers' segments
 * within the MTU), and reassembly would be memory an attacker controls.
 * Every drop has a counter and nothing is logged per packet.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>

#include <rte_ethdev.h>
#include <rte_icmp.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_tcp.h>

#include "net/dpdk/port.h"

#define ETH_LEN ((uint32_t)sizeof(struct rte_ether_hdr))

/* ---- transmit ------------------------------------------------------------ */

void dp_tx_flush(struct dp_loop *l)
{
	unsigned sent = 0;

	if (l->ntx == 0)
		return;
	/* One retry: a full ring usually has room again a moment later. */
	for (int tries = 0; tries < 2 && sent < l->ntx; tries++)
		sent += rte_eth_tx_burst(dp_port.id, l->q, l->tx + sent, (uint16_t)(l->ntx - sent));
	st_add(&l->st->tx_packets, sent);
	for (unsigned i = sent; i < l->ntx; i++) {
		st_add(&l->st->tx_bytes, -(uint64_t)rte_pktmbuf_pkt_len(l->tx[i]));
		rte_pktmbuf_free(l->tx[i]);
	}
	st_add(&l->st->drop_tx_full, l->ntx - sent);
	l->ntx = 0;
}

void dp_tx(struct dp_loop *l, struct rte_mbuf *m)
{
	st_add(&l->st->tx_bytes, rte_pktmbuf_pkt_len(m));
	l->tx[l->ntx++] = m;
	if (l->ntx == DP_BURST)
		dp_tx_flush(l);
}

void dp_output(struct dp_loop *l, struct rte_mbuf *m, uint32_t dst, uint64_t now)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	const struct rte_ether_addr *mac;
	uint32_t nh = dst;

	if ((dst & dp_port.mask) != (dp_port.ip & dp_port.mask)) {
		if (!dp_port.gw) {
			st_add(&l->st->drop_no_route, 1);
			rte_pktmbuf_free(m);
			return;
		}
		nh = dp_port.gw;
	}
	mac = arp_resolve(l, nh, m, now);
	if (!mac)
		return;   /* waits for the answer, or was dropped */
	rte_ether_addr_copy(mac, &eth->dst_addr);
	dp_tx(l, m);
}

void dp_kick(uint16_t q)
{
	struct dp_loop *o = dp_port.loop[q];
	uint64_t one = 1;

	if (o && atomic_load(&o->sleeping))
		if (write(o->evfd, &one, sizeof(one)) < 0) { /* EAGAIN: already readable */ }
}

/* ---- TCP out --------------------------------------------------------------- */

int dp_tcp_emit(void *ctx, const struct tcp_seg_out *seg)
{
	struct dp_loop *l = ctx;
	uint32_t l4 = (uint32_t)seg->hdr_len + seg->data_len;
	uint32_t total = ETH_LEN + (uint32_t)sizeof(struct rte_ipv4_hdr) + l4;
	struct rte_mbuf *m;
	struct rte_ether_hdr *eth;
	struct rte_ipv4_hdr *ip;
	uint8_t *p;

	m = rte_pktmbuf_alloc(l->pool);
	if (!m) {
		st_add(&l->st->drop_nombuf, 1);
		return -ENOBUFS;
	}
	p = (uint8_t *)rte_pktmbuf_append(m, (uint16_t)total);
	if (!p) {
		/* The stack sends at most our MSS (MTU - 40): always fits. */
		rte_pktmbuf_free(m);
		st_add(&l->st->drop_nombuf, 1);
		return -EMSGSIZE;
	}
	eth = (struct rte_ether_hdr *)p;
	rte_ether_addr_copy(&dp_port.mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	ip = (struct rte_ipv4_hdr *)(eth + 1);
	ip->version_ihl = RTE_IPV4_VHL_DEF;
	ip->type_of_service = 0;
	ip->total_length = rte_cpu_to_be_16((uint16_t)(sizeof(*ip) + l4));
	ip->packet_id = rte_cpu_to_be_16(l->ip_id++);
	ip->fragment_offset = rte_cpu_to_be_16(RTE_IPV4_HDR_DF_FLAG);
	ip->time_to_live = 64;
	ip->next_proto_id = IPPROTO_TCP;
	ip->hdr_checksum = 0;
	ip->src_addr = seg->src_ip;
	ip->dst_addr = seg->dst_ip;
	p = (uint8_t *)(ip + 1);
	memcpy(p, seg->hdr, seg->hdr_len);
	p += seg->hdr_len;
	for (unsigned i = 0; i < seg->iovcnt; i++) {
		memcpy(p, seg->iov[i].iov_base, seg->iov[i].iov_len);
		p += seg->iov[i].iov_len;
	}
	if (dp_port.tx_csum) {
		/* The stack wrote the pseudo-header sum (TCP_CSUM_PSEUDO). */
		m->ol_flags = RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_TCP_CKSUM;
		m->l2_len = ETH_LEN;
		m->l3_len = sizeof(*ip);
	} else {
		ip->hdr_checksum = rte_ipv4_cksum(ip);
	}
	if (seg->hdr_len >= 14 && (seg->hdr[13] & RTE_TCP_RST_FLAG))
		st_add(&l->st->tcp_rst_tx, 1);
	dp_output(l, m, seg->dst_ip, l->tick);
	return 0;
}

bool dp_port_ok(void *ctx, uint32_t remote_ip, uint16_t remote_port, uint32_t local_ip, uint16_t local_port)
{
	const struct dp_loop *l = ctx;
	return dp_owner(remote_ip, local_ip, remote_port, local_port) == l->q;
}

/* ---- receive --------------------------------------------------------------- */

static void drop(struct rte_mbuf *m, uint64_t *counter)
{
	st_add(counter, 1);
	rte_pktmbuf_free(m);
}

static void icmp_input(struct dp_loop *l, struct rte_mbuf *m, struct rte_ipv4_hdr *ip, uint32_t ihl, uint32_t len)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_icmp_hdr *ic = (struct rte_icmp_hdr *)((uint8_t *)ip + ihl);
	uint32_t tmp;

	if (len < sizeof(*ic) || !rte_pktmbuf_is_contiguous(m) || rte_raw_cksum(ic, len) != 0xffff) {
		drop(m, &l->st->drop_bad_l4);
		return;
	}
	if (ic->icmp_type != RTE_IP_ICMP_ECHO_REQUEST || ic->icmp_code != 0) {
		drop(m, &l->st->drop_proto);
		return;
	}
	/* The reply in place, to the MAC it came from. */
	ic->icmp_type = RTE_IP_ICMP_ECHO_REPLY;
	ic->icmp_cksum = 0;
	ic->icmp_cksum = (uint16_t)~rte_raw_cksum(ic, len);
	tmp = ip->src_addr;
	ip->src_addr = ip->dst_addr;
	ip->dst_addr = tmp;
	ip->time_to_live = 64;
	ip->hdr_checksum = 0;
	ip->hdr_checksum = (uint16_t)~rte_raw_cksum(ip, ihl);
	rte_ether_addr_copy(&eth->src_addr, &eth->dst_addr);
	rte_ether_addr_copy(&dp_port.mac, &eth->src_addr);
	m->ol_flags = 0;
	st_add(&l->st->icmp_echo, 1);
	dp_tx(l, m);
}

/* Returns true if m went to another loop. */
static bool steer(struct dp_loop *l, struct rte_mbuf *m, const struct rte_ipv4_hdr *ip, uint32_t ihl,
		  uint32_t len, uint64_t *kick)
{
	const struct rte_tcp_hdr *th;
	uint16_t q;

	if (len < 4 || rte_pktmbuf_data_len(m) < ETH_LEN + ihl + 4)
		return false;   /* tcp_in drops it */
	th = (const struct rte_tcp_hdr *)((const uint8_t *)ip + ihl);
	q = dp_owner(ip->src_addr, ip->dst_addr, rte_be_to_cpu_16(th->src_port), rte_be_to_cpu_16(th->dst_port));
	if (q == l->q)
		return false;
	if (rte_ring_mp_enqueue(dp_port.steer[q], m) != 0) {
		drop(m, &l->st->drop_ring_full);
		return true;
	}
	st_add(&l->st->steered, 1);
	*kick |= 1ull << q;
	return true;
}

static void tcp_in(struct dp_loop *l, struct rte_mbuf *m, const struct rte_ipv4_hdr *ip, uint32_t ihl, uint32_t len)
{
	struct tcp_seg_in seg;
	const void *l4;
	uint64_t ck = m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK;

	if (rte_pktmbuf_is_contiguous(m)) {
		l4 = (const uint8_t *)ip + ihl;
	} else {
		if (len > sizeof(l->linear)) {
			drop(m, &l->st->drop_bad_l4);
			return;
		}
		l4 = rte_pktmbuf_read(m, ETH_LEN + ihl, len, l->linear);
	}
	if (!l4 || tcp_seg_split(&seg, l4, len, ip->src_addr, ip->dst_addr) < 0) {
		drop(m, &l->st->drop_bad_l4);
		return;
	}
	if (dp_port.rx_csum && ck == RTE_MBUF_F_RX_L4_CKSUM_BAD) {
		drop(m, &l->st->drop_bad_l4);
		return;
	}
	if (!(dp_port.rx_csum && ck == RTE_MBUF_F_RX_L4_CKSUM_GOOD) && !tcp_checksum_ok(&seg)) {
		drop(m, &l->st->drop_bad_l4);
		return;
	}
	st_add(&l->st->tcp_rx, 1);
	tcp_input(l->tcp, &seg);
	rte_pktmbuf_free(m);
}

static void ip_input(struct dp_loop *l, struct rte_mbuf *m, bool steered, uint64_t *kick)
{
	struct rte_ipv4_hdr *ip;
	uint32_t ihl, tot, avail = rte_pktmbuf_pkt_len(m) - ETH_LEN;
	uint64_t ck = m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK;

	if (rte_pktmbuf_data_len(m) < ETH_LEN + sizeof(*ip)) {
		drop(m, &l->st->drop_bad_ip);
		return;
	}
	ip = rte_pktmbuf_mtod_offset(m, struct rte_ipv4_hdr *, ETH_LEN);
	ihl = (uint32_t)(ip->version_ihl & RTE_IPV4_HDR_IHL_MASK) * 4;
	tot = rte_be_to_cpu_16(ip->total_length);
	if ((ip->version_ihl >> 4) != 4 || ihl < sizeof(*ip) || rte_pktmbuf_data_len(m) < ETH_LEN + ihl ||
	    tot < ihl || tot > avail) {
		drop(m, &l->st->drop_bad_ip);
		return;
	}
	if (!steered) {
		if (dp_port.rx_csum && ck == RTE_MBUF_F_RX_IP_CKSUM_BAD) {
			drop(m, &l->st->drop_ip_csum);
			return;
		}
		if (!(dp_port.rx_csum && ck == RTE_MBUF_F_RX_IP_CKSUM_GOOD) && rte_raw_cksum(ip, ihl) != 0xffff) {
			drop(m, &l->st->drop_ip_csum);
			return;
		}
	}
	if (ip->dst_addr != dp_port.ip) {
		drop(m, &l->st->drop_not_us);
		return;
	}
	if (ip->fragment_offset & rte_cpu_to_be_16(RTE_IPV4_HDR_MF_FLAG | RTE_IPV4_HDR_OFFSET_MASK)) {
		drop(m, &l->st->drop_fragment);
		return;
	}
	if (avail > tot)
		rte_pktmbuf_trim(m, (uint16_t)(avail - tot));   /* Ethernet padding */
	switch (ip->next_proto_id) {
	case IPPROTO_TCP:
		if (!steered && !dp_port.hw_rss && dp_port.nq > 1 && steer(l, m, ip, ihl, tot - ihl, kick))
			return;
		tcp_in(l, m, ip, ihl, tot - ihl);
		break;
	case IPPROTO_ICMP:
		icmp_input(l, m, ip, ihl, tot - ihl);
		break;
	default:
		drop(m, &l->st->drop_proto);
		break;
	}
}

void dp_rx(struct dp_loop *l, struct rte_mbuf **pkts, unsigned n, bool steered, uint64_t now)
{
	uint64_t kick = 0;

	for (unsigned i = 0; i < n; i++) {
		struct rte_mbuf *m = pkts[i];
		const struct rte_ether_hdr *eth;

		if (i + 1 < n)
			rte_prefetch0(rte_pktmbuf_mtod(pkts[i + 1], void *));
		if (!steered) {
			st_add(&l->st->rx_packets, 1);
			st_add(&l->st->rx_bytes, rte_pktmbuf_pkt_len(m));
		}
		if (rte_pktmbuf_data_len(m) < ETH_LEN) {
			drop(m, &l->st->drop_bad_ip);
			continue;
		}
		eth = rte_pktmbuf_mtod(m, const struct rte_ether_hdr *);
		switch (rte_be_to_cpu_16(eth->ether_type)) {
		case RTE_ETHER_TYPE_ARP:
			arp_input(l, m, steered, now);
			break;
		case RTE_ETHER_TYPE_IPV4:
			if (!steered && !rte_is_same_ether_addr(&eth->dst_addr, &dp_port.mac)) {
				drop(m, &l->st->drop_not_us);
				break;
			}
			ip_input(l, m, steered, &kick);
			break;
		default:
			drop(m, &l->st->drop_not_ip);
			break;
		}
	}
	while (kick) {
		uint16_t q = (uint16_t)__builtin_ctzll(kick);
		kick &= kick - 1;
		dp_kick(q);
	}
}
