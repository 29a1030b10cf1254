/* ARP (RFC 826), one cache per loop.
 *
 * Every loop keeps its own neighbour cache, so lookups on the transmit
 * path touch nothing shared. ARP packets arrive on whichever queue the port
 * picks; the loop that receives one answers it (if it asks for our
 * address) and passes the same mbuf (one more reference, no copy) to every
 * other loop's steering ring, so that all caches learn alike.
 *
 * The cache is set-associative (ARP_SETS x ARP_WAYS, a full set evicts the
 * entry closest to expiry). Entries live dpdk.arp_timeout seconds and are
 * re-asked ARP_REFRESH_MS before they expire while in use, so a busy flow
 * never waits for a resolution. Packets to a neighbour not yet resolved
 * wait in a small per-loop queue, at most ARP_WAIT_MS (then they count as
 * drop_arp_queue, and TCP retransmits). Learning follows RFC 826's merge
 * rule: an entry is updated from any ARP packet of its address; a new one
 * is created only from packets addressed to us.
 */
#include <string.h>

#include <rte_arp.h>
#include <rte_ether.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "net/dpdk/port.h"

static inline uint32_t arp_set(uint32_t ip)
{
	return (rte_be_to_cpu_32(ip) * 2654435761u) >> 24;   /* 256 sets */
}

static struct arp_entry *arp_find(struct arp_table *t, uint32_t ip)
{
	struct arp_entry *s = t->set[arp_set(ip)];

	for (unsigned w = 0; w < ARP_WAYS; w++)
		if (s[w].ip == ip)
			return &s[w];
	return NULL;
}

static struct arp_entry *arp_take(struct arp_table *t, uint32_t ip)
{
	struct arp_entry *s = t->set[arp_set(ip)], *victim = &s[0];

	for (unsigned w = 0; w < ARP_WAYS; w++) {
		if (s[w].ip == 0) {
			victim = &s[w];
			break;
		}
		if (s[w].expires < victim->expires)
			victim = &s[w];
	}
	memset(victim, 0, sizeof(*victim));
	victim->ip = ip;
	return victim;
}

static struct rte_mbuf *arp_packet(struct dp_loop *l, uint16_t op, const struct rte_ether_addr *eth_dst,
				   const struct rte_ether_addr *tha, uint32_t tip)
{
	struct rte_mbuf *m = rte_pktmbuf_alloc(l->pool);
	struct rte_ether_hdr *eth;
	struct rte_arp_hdr *a;

	if (!m) {
		st_add(&l->st->drop_nombuf, 1);
		return NULL;
	}
	eth = (struct rte_ether_hdr *)rte_pktmbuf_append(m, sizeof(*eth) + sizeof(*a));
	rte_ether_addr_copy(eth_dst, &eth->dst_addr);
	rte_ether_addr_copy(&dp_port.mac, &eth->src_addr);
	eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_ARP);
	a = (struct rte_arp_hdr *)(eth + 1);
	a->arp_hardware = rte_cpu_to_be_16(RTE_ARP_HRD_ETHER);
	a->arp_protocol = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
	a->arp_hlen = RTE_ETHER_ADDR_LEN;
	a->arp_plen = 4;
	a->arp_opcode = rte_cpu_to_be_16(op);
	rte_ether_addr_copy(&dp_port.mac, &a->arp_data.arp_sha);
	a->arp_data.arp_sip = dp_port.ip;
	rte_ether_addr_copy(tha, &a->arp_data.arp_tha);
	a->arp_data.arp_tip = tip;
	return m;
}

static void arp_send_request(struct dp_loop *l, uint32_t tip)
{
	static const struct rte_ether_addr bcast = { .addr_bytes = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff } };
	static const struct rte_ether_addr zero;
	struct rte_mbuf *m = arp_packet(l, RTE_ARP_OP_REQUEST, &bcast, &zero, tip);

	if (m) {
		st_add(&l->st->arp_requests, 1);
		dp_tx(l, m);
	}
}

/* A request for tip within the loop's rate; false if over it (the caller
 * asks again later). */
static bool arp_request(struct dp_loop *l, uint32_t tip, uint64_t now)
{
	struct arp_table *t = &l->arp;

	if (now > t->refilled) {
		uint64_t add = (now - t->refilled) * ARP_REQ_PER_MS;
		t->tokens = add + t->tokens > ARP_REQ_BURST ? ARP_REQ_BURST : (uint32_t)(t->tokens + add);
		t->refilled = now;
	}
	if (t->tokens == 0)
		return false;
	t->tokens--;
	arp_send_request(l, tip);
	return true;
}

void arp_announce(struct dp_loop *l)
{
	/* Gratuitous ARP: a request for our own address, so that neighbours
	 * (and switches) learn where we are now. */
	arp_send_request(l, dp_port.ip);
}

/* Send every packet that waited for ip. */
static void arp_release(struct dp_loop *l, const struct arp_entry *e)
{
	struct arp_table *t = &l->arp;
	uint32_t k = 0;

	for (uint32_t i = 0; i < t->nwait; i++) {
		struct arp_wait *w = &t->wait[i];
		if (w->nh == e->ip) {
			struct rte_ether_hdr *eth = rte_pktmbuf_mtod(w->m, struct rte_ether_hdr *);
			rte_ether_addr_copy(&e->mac, &eth->dst_addr);
			dp_tx(l, w->m);
		} else {
			t->wait[k++] = *w;
		}
	}
	t->nwait = k;
}

static void arp_learn(struct dp_loop *l, struct arp_entry *e, const struct rte_ether_addr *mac, uint64_t now)
{
	rte_ether_addr_copy(mac, &e->mac);
	e->valid = 1;
	e->expires = now + (uint64_t)dp_port.conf.arp_timeout_s * 1000u;
	arp_release(l, e);
}

void arp_input(struct dp_loop *l, struct rte_mbuf *m, bool steered, uint64_t now)
{
	struct rte_ether_hdr *eth = rte_pktmbuf_mtod(m, struct rte_ether_hdr *);
	struct rte_arp_hdr *a = (struct rte_arp_hdr *)(eth + 1);
	struct arp_entry *e;
	uint32_t sip, tip;
	uint16_t op;

	if (!steered) {
		st_add(&l->st->arp_rx, 1);
		for (uint16_t q = 0; q < dp_port.nq; q++) {
			if (q == l->q)
				continue;
			rte_mbuf_refcnt_update(m, 1);
			if (rte_ring_mp_enqueue(dp_port.steer[q], m) != 0) {
				rte_mbuf_refcnt_update(m, -1);
				st_add(&l->st->drop_ring_full, 1);
			} else {
				dp_kick(q);
			}
		}
	}
	if (rte_pktmbuf_data_len(m) < sizeof(*eth) + sizeof(*a) ||
	    a->arp_hardware != rte_cpu_to_be_16(RTE_ARP_HRD_ETHER) ||
	    a->arp_protocol != rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4) ||
	    a->arp_hlen != RTE_ETHER_ADDR_LEN || a->arp_plen != 4) {
		if (!steered)
			st_add(&l->st->drop_bad_l4, 1);
		rte_pktmbuf_free(m);
		return;
	}
	op = rte_be_to_cpu_16(a->arp_opcode);
	sip = a->arp_data.arp_sip;
	tip = a->arp_data.arp_tip;
	/* A probe (sender 0.0.0.0) teaches nothing; our own address from
	 * someone else is a conflict we do not resolve here. */
	if (sip != 0 && sip != dp_port.ip && !rte_is_multicast_ether_addr(&a->arp_data.arp_sha)) {
		e = arp_find(&l->arp, sip);
		if (!e && tip == dp_port.ip)
			e = arp_take(&l->arp, sip);
		if (e)
			arp_learn(l, e, &a->arp_data.arp_sha, now);
	}
	if (!steered && op == RTE_ARP_OP_REQUEST && tip == dp_port.ip && sip != dp_port.ip) {
		/* The mbuf may be shared with the other loops: answer from a
		 * new one. */
		struct rte_mbuf *r = arp_packet(l, RTE_ARP_OP_REPLY, &a->arp_data.arp_sha, &a->arp_data.arp_sha, sip);
		if (r) {
			st_add(&l->st->arp_replies, 1);
			dp_tx(l, r);
		}
	}
	rte_pktmbuf_free(m);
}

const struct rte_ether_addr *arp_resolve(struct dp_loop *l, uint32_t nh, struct rte_mbuf *m, uint64_t now)
{
	struct arp_table *t = &l->arp;
	struct arp_entry *e = arp_find(t, nh);

	if (e && e->valid && now < e->expires) {
		if (now + ARP_REFRESH_MS > e->expires && now >= e->asked + ARP_RETRY_MS && arp_request(l, nh, now))
			e->asked = now;
		return &e->mac;
	}
	if (!e)
		e = arp_take(t, nh);
	if ((e->asked == 0 || now >= e->asked + ARP_RETRY_MS) && arp_request(l, nh, now))
		e->asked = now ? now : 1;
	if (m) {
		if (t->nwait == ARP_WAIT_MAX) {
			st_add(&l->st->drop_arp_queue, 1);
			rte_pktmbuf_free(m);
		} else {
			t->wait[t->nwait++] = (struct arp_wait){ .m = m, .nh = nh, .since = now };
		}
	}
	return NULL;
}

void arp_tick(struct dp_loop *l, uint64_t now)
{
	struct arp_table *t = &l->arp;
	uint32_t k = 0;

	for (uint32_t i = 0; i < t->nwait; i++) {
		struct arp_wait *w = &t->wait[i];
		if (now >= w->since + ARP_WAIT_MS) {
			st_add(&l->st->drop_arp_queue, 1);
			rte_pktmbuf_free(w->m);
			continue;
		}
		struct arp_entry *e = arp_find(t, w->nh);
		if (!e)
			e = arp_take(t, w->nh);
		if (now >= e->asked + ARP_RETRY_MS && arp_request(l, w->nh, now))
			e->asked = now;
		t->wait[k++] = *w;
	}
	t->nwait = k;
}

void arp_free(struct dp_loop *l)
{
	for (uint32_t i = 0; i < l->arp.nwait; i++)
		rte_pktmbuf_free(l->arp.wait[i].m);
	l->arp.nwait = 0;
}
