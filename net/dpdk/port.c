/* The port: EAL, ethdev, mbuf pools, steering rings and the flow-to-queue
 * function every loop and the TCP stack's port choice agree on.
 *
 * RSS. Both directions of a TCP flow must reach the same loop: the server
 * side because the loop owns the connection, the client side (active open)
 * because the loop that sent the SYN owns it too. A Toeplitz hash with the
 * key 0x6d5a repeated is symmetric (swapping source and destination address
 * and port gives the same hash; Woo and Park, "Scalable TCP Session
 * Monitoring with Symmetric Receive-side Scaling", 2012), so we give the NIC
 * that key and a RETA of bucket i -> queue i mod n, and compute the same
 * function in software (dp_owner) to pick local ports for active opens.
 * A port without RSS (af_packet, memif, ring) delivers flows to any queue;
 * then each loop computes dp_owner for every TCP segment it receives and
 * hands segments of other loops' flows over through that loop's steering
 * ring (software RSS). ARP is broadcast to every loop the same way, so each
 * keeps its own cache without sharing.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_dev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_telemetry.h>
#include <rte_thash.h>

#include "net/dpdk/port.h"

struct dp_port dp_port;

#define K 0x6d, 0x5a
static const uint8_t sym_key[40] = { K, K, K, K, K, K, K, K, K, K, K, K, K, K, K, K, K, K, K, K };
#undef K

static int failf(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int failf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

uint16_t dp_owner(uint32_t src_ip, uint32_t dst_ip, uint16_t sport, uint16_t dport)
{
	uint32_t t[3];

	if (dp_port.nq <= 1)
		return 0;
	/* struct rte_ipv4_tuple's layout: addresses in host order, then the
	 * ports as one word with the source port in the high half. */
	t[0] = rte_be_to_cpu_32(src_ip);
	t[1] = rte_be_to_cpu_32(dst_ip);
	t[2] = (uint32_t)sport << 16 | dport;
	return dp_port.reta[rte_softrss(t, 3, sym_key) & (dp_port.reta_size - 1)];
}

/* ---- stats ----------------------------------------------------------------- */

#define STAT_FIELDS(X) \
	X(rx_packets) X(tx_packets) X(rx_bytes) X(tx_bytes) X(steered) X(arp_rx) X(arp_replies) \
	X(arp_requests) X(icmp_echo) X(tcp_rx) X(tcp_rst_tx) X(drop_not_ip) X(drop_not_us) \
	X(drop_bad_ip) X(drop_ip_csum) X(drop_fragment) X(drop_bad_l4) X(drop_proto) \
	X(drop_arp_queue) X(drop_no_route) X(drop_tx_full) X(drop_nombuf) X(drop_ring_full) \
	X(conns) X(accepted) X(syn_dropped) X(syn_cookies)

void net_dpdk_stats(struct net_dpdk_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned q = 0; q < dp_port.nq; q++) {
		const struct net_dpdk_stats *st = &dp_port.stats[q].s;
		/* Each loop stores its own counters (relaxed); a reader gets a
		 * recent value of each, not a snapshot of all. */
#define ADD(f) out->f += __atomic_load_n(&st->f, __ATOMIC_RELAXED);
		STAT_FIELDS(ADD)
#undef ADD
	}
}

char *net_dpdk_stats_format(const struct net_dpdk_stats *s, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
#define FMT(f) if (n < len) n += (size_t)snprintf(buf + n, len - n, "%s" #f " %" PRIu64, n ? " " : "", s->f);
	STAT_FIELDS(FMT)
#undef FMT
	return buf;
}

static int telemetry_stats(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct net_dpdk_stats s;
	char name[32];

	(void)cmd;
	(void)params;
	net_dpdk_stats(&s);
	rte_tel_data_start_dict(d);
#define TEL(f) rte_tel_data_add_dict_u64(d, #f, s.f);
	STAT_FIELDS(TEL)
#undef TEL
	for (unsigned q = 0; q < dp_port.nq; q++) {
		const struct net_dpdk_stats *st = &dp_port.stats[q].s;
		snprintf(name, sizeof(name), "q%u_rx_packets", q);
		rte_tel_data_add_dict_u64(d, name, __atomic_load_n(&st->rx_packets, __ATOMIC_RELAXED));
		snprintf(name, sizeof(name), "q%u_conns", q);
		rte_tel_data_add_dict_u64(d, name, __atomic_load_n(&st->conns, __ATOMIC_RELAXED));
	}
	rte_tel_data_add_dict_u64(d, "queues", dp_port.nq);
	rte_tel_data_add_dict_u64(d, "hw_rss", dp_port.hw_rss);
	rte_tel_data_add_dict_u64(d, "tx_csum_offload", dp_port.tx_csum);
	return 0;
}

/* ---- EAL ------------------------------------------------------------------- */

#define EAL_ARGV_MAX 64

static int eal_start(const char *args, char *err, size_t errlen)
{
	static char buf[NET_DPDK_EAL_MAX + 64];
	char *argv[EAL_ARGV_MAX + 4], *save = NULL, *tok;
	char lcore[32];
	int argc = 0, r;
	bool has_cores = false;
	cpu_set_t mine;

	snprintf(buf, sizeof(buf), "%s", args);
	argv[argc++] = (char *)"stanzad";
	for (tok = strtok_r(buf, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
		if (argc == EAL_ARGV_MAX)
			return failf(err, errlen, -EINVAL, "dpdk.eal: more than %d arguments", EAL_ARGV_MAX - 1);
		if (!strcmp(tok, "-l") || !strcmp(tok, "-c") || !strncmp(tok, "--lcores", 8) ||
		    !strncmp(tok, "-l", 2) || !strncmp(tok, "-c", 2))
			has_cores = true;
		argv[argc++] = tok;
	}
	if (sched_getaffinity(0, sizeof(mine), &mine) < 0)
		return failf(err, errlen, -errno, "sched_getaffinity: %s", strerror(errno));
	/* Our workers are our own threads (registered with the EAL when they
	 * start polling): the EAL needs one lcore, the main one, and no
	 * threads of its own on the others. */
	if (!has_cores) {
		int cpu = 0;
		while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &mine))
			cpu++;
		snprintf(lcore, sizeof(lcore), "%d", cpu == CPU_SETSIZE ? 0 : cpu);
		argv[argc++] = (char *)"-l";
		argv[argc++] = lcore;
	}
	argv[argc] = NULL;
	r = rte_eal_init(argc, argv);
	/* The EAL pinned this thread to its main lcore; threads created from
	 * here on would inherit that. Give back what we had. */
	sched_setaffinity(0, sizeof(mine), &mine);
	if (r < 0)
		return failf(err, errlen, -EINVAL, "rte_eal_init (dpdk.eal \"%s\"): %s", args, rte_strerror(rte_errno));
	dp_port.eal_up = true;
	return 0;
}

/* ---- the port ------------------------------------------------------------ */

static int port_find(const char *devargs, uint16_t *id, char *err, size_t errlen)
{
	char name[NET_DPDK_PORT_MAX];
	size_t n = strcspn(devargs, ",");
	int r;

	if (n >= sizeof(name))
		return failf(err, errlen, -EINVAL, "dpdk.port too long");
	memcpy(name, devargs, n);
	name[n] = '\0';
	if (rte_eth_dev_get_port_by_name(name, id) == 0)
		return 0;
	r = rte_dev_probe(devargs);
	if (r < 0)
		return failf(err, errlen, -EINVAL, "dpdk.port \"%s\": probe failed: %s", devargs, rte_strerror(-r));
	if (rte_eth_dev_get_port_by_name(name, id) != 0)
		return failf(err, errlen, -EINVAL, "dpdk.port \"%s\": probed, but no port named %s", devargs, name);
	return 0;
}

/* RETA: bucket i -> queue i mod nq, on the NIC if it has one; the software
 * copy either way. */
static void reta_setup(const struct rte_eth_dev_info *info)
{
	uint32_t size = DP_RETA_MAX;

	if (dp_port.hw_rss && info->reta_size > 0 && info->reta_size <= DP_RETA_MAX &&
	    (info->reta_size & (info->reta_size - 1)) == 0)
		size = info->reta_size;
	else if (dp_port.hw_rss)
		dp_port.hw_rss = false;   /* an odd table we cannot mirror: steer in software */
	dp_port.reta_size = size;
	for (uint32_t i = 0; i < size; i++)
		dp_port.reta[i] = (uint16_t)(i % dp_port.nq);
	if (!dp_port.hw_rss)
		return;

	struct rte_eth_rss_reta_entry64 conf[DP_RETA_MAX / RTE_ETH_RETA_GROUP_SIZE];
	memset(conf, 0, sizeof(conf));
	for (uint32_t i = 0; i < size; i++) {
		conf[i / RTE_ETH_RETA_GROUP_SIZE].mask |= 1ull << (i % RTE_ETH_RETA_GROUP_SIZE);
		conf[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE] = dp_port.reta[i];
	}
	if (rte_eth_dev_rss_reta_update(dp_port.id, conf, (uint16_t)size) == 0)
		return;
	/* The NIC keeps its own table: mirror it if it says what it is. */
	memset(conf, 0, sizeof(conf));
	for (uint32_t i = 0; i < size; i++)
		conf[i / RTE_ETH_RETA_GROUP_SIZE].mask |= 1ull << (i % RTE_ETH_RETA_GROUP_SIZE);
	if (rte_eth_dev_rss_reta_query(dp_port.id, conf, (uint16_t)size) == 0) {
		for (uint32_t i = 0; i < size; i++)
			dp_port.reta[i] = conf[i / RTE_ETH_RETA_GROUP_SIZE].reta[i % RTE_ETH_RETA_GROUP_SIZE];
		return;
	}
	dp_port.hw_rss = false;
}

static int port_start(const struct net_dpdk_conf *c, unsigned nq, char *err, size_t errlen)
{
	struct rte_eth_dev_info info;
	struct rte_eth_conf pc;
	struct rte_eth_rxconf rxc;
	struct rte_eth_txconf txc;
	uint16_t nrxd = DP_NB_RXD, ntxd = DP_NB_TXD, mtu = 1500;
	const uint64_t tx_want = RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | RTE_ETH_TX_OFFLOAD_TCP_CKSUM;
	const uint64_t rx_want = RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | RTE_ETH_RX_OFFLOAD_TCP_CKSUM;
	uint16_t id;
	int r, socket;
	char name[32];

	r = port_find(c->port, &id, err, errlen);
	if (r < 0)
		return r;
	dp_port.id = id;
	r = rte_eth_dev_info_get(id, &info);
	if (r < 0)
		return failf(err, errlen, r, "dpdk.port %s: rte_eth_dev_info_get: %s", c->port, rte_strerror(-r));
	if (info.max_rx_queues < nq || info.max_tx_queues < nq)
		return failf(err, errlen, -EINVAL,
			     "dpdk.port %s has %u RX and %u TX queues, %u workers need one pair each "
			     "(af_packet: qpairs=%u in the devargs; or fewer workers)",
			     c->port, info.max_rx_queues, info.max_tx_queues, nq, nq);

	memset(&pc, 0, sizeof(pc));
	dp_port.hw_rss = nq > 1 && (info.flow_type_rss_offloads & RTE_ETH_RSS_NONFRAG_IPV4_TCP);
	if (dp_port.hw_rss) {
		pc.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		/* A key size other than 40 (some NICs take 52): the pattern
		 * repeats, so it stays symmetric. */
		static uint8_t key[64];
		uint8_t klen = info.hash_key_size && info.hash_key_size <= sizeof(key) ? info.hash_key_size : 40;
		for (unsigned i = 0; i < sizeof(key); i++)
			key[i] = i & 1 ? 0x5a : 0x6d;
		pc.rx_adv_conf.rss_conf.rss_key = key;
		pc.rx_adv_conf.rss_conf.rss_key_len = klen;
		pc.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads &
			(RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_IPV4);
	}
	dp_port.tx_csum = (info.tx_offload_capa & tx_want) == tx_want;
	if (dp_port.tx_csum)
		pc.txmode.offloads |= tx_want;
	dp_port.rx_csum = (info.rx_offload_capa & rx_want) == rx_want;
	if (dp_port.rx_csum)
		pc.rxmode.offloads |= rx_want;

	r = rte_eth_dev_configure(id, (uint16_t)nq, (uint16_t)nq, &pc);
	if (r < 0)
		return failf(err, errlen, r, "dpdk.port %s: configure: %s", c->port, rte_strerror(-r));
	rte_eth_dev_adjust_nb_rx_tx_desc(id, &nrxd, &ntxd);
	socket = rte_eth_dev_socket_id(id);
	if (socket < 0)
		socket = (int)rte_socket_id();

	rxc = info.default_rxconf;
	rxc.offloads = pc.rxmode.offloads;
	txc = info.default_txconf;
	txc.offloads = pc.txmode.offloads;
	for (unsigned q = 0; q < nq; q++) {
		unsigned n = c->mbufs ? c->mbufs : DP_MBUFS;
		if (n < 2u * (nrxd + ntxd))
			n = 2u * (nrxd + ntxd);
		snprintf(name, sizeof(name), "stanza_mb%u", q);
		dp_port.pool[q] = rte_pktmbuf_pool_create(name, n, DP_MBUF_CACHE, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
		if (!dp_port.pool[q])
			return failf(err, errlen, -ENOMEM, "mbuf pool of %u for queue %u: %s (more memory: EAL -m)", n, q,
				     rte_strerror(rte_errno));
		snprintf(name, sizeof(name), "stanza_st%u", q);
		dp_port.steer[q] = rte_ring_create(name, DP_STEER_RING, socket, RING_F_SC_DEQ);
		if (!dp_port.steer[q])
			return failf(err, errlen, -ENOMEM, "steering ring %u: %s", q, rte_strerror(rte_errno));
		r = rte_eth_rx_queue_setup(id, (uint16_t)q, nrxd, (unsigned)socket, &rxc, dp_port.pool[q]);
		if (r == 0)
			r = rte_eth_tx_queue_setup(id, (uint16_t)q, ntxd, (unsigned)socket, &txc);
		if (r < 0)
			return failf(err, errlen, r, "dpdk.port %s: queue %u: %s", c->port, q, rte_strerror(-r));
	}
	reta_setup(&info);

	if (c->has_mac) {
		memcpy(dp_port.mac.addr_bytes, c->mac, 6);
		/* A port that cannot change its address still receives ours in
		 * promiscuous mode; we filter by address ourselves. */
		if (rte_eth_dev_default_mac_addr_set(id, &dp_port.mac) < 0)
			rte_eth_promiscuous_enable(id);
	} else if (rte_eth_macaddr_get(id, &dp_port.mac) < 0) {
		return failf(err, errlen, -EINVAL, "dpdk.port %s: no MAC address (set dpdk.mac)", c->port);
	}
	if (rte_eth_dev_get_mtu(id, &mtu) < 0 || mtu < 576)
		mtu = 1500;
	dp_port.mtu = mtu;

	r = rte_eth_dev_start(id);
	if (r < 0)
		return failf(err, errlen, r, "dpdk.port %s: start: %s", c->port, rte_strerror(-r));
	dp_port.up = true;
	return 0;
}

int net_dpdk_init(const struct net_dpdk_conf *c, unsigned nqueues, char *err, size_t errlen)
{
	int r;

	if (dp_port.eal_up)
		return failf(err, errlen, -EALREADY, "the DPDK port is already set up");
	if (nqueues == 0 || nqueues > DP_MAX_QUEUES)
		return failf(err, errlen, -EINVAL, "%u workers: DPDK takes 1 to %u", nqueues, DP_MAX_QUEUES);
	dp_port.conf = *c;
	if (dp_port.conf.arp_timeout_s == 0)
		dp_port.conf.arp_timeout_s = 300;
	dp_port.nq = (uint16_t)nqueues;
	memcpy(&dp_port.ip, c->ip, 4);
	dp_port.mask = c->prefix ? rte_cpu_to_be_32(~0u << (32 - c->prefix)) : 0;
	if (c->has_gateway)
		memcpy(&dp_port.gw, c->gateway, 4);
	r = eal_start(c->eal, err, errlen);
	if (r < 0)
		return r;
	r = port_start(c, nqueues, err, errlen);
	if (r < 0)
		return r;
	rte_telemetry_register_cmd("/stanzad/stats", telemetry_stats,
				   "stanzad's DPDK transport counters, summed over workers. No parameters.");
	return 0;
}

void net_dpdk_fini(void)
{
	if (dp_port.up) {
		rte_eth_dev_stop(dp_port.id);
		rte_eth_dev_close(dp_port.id);
		dp_port.up = false;
	}
	for (unsigned q = 0; q < DP_MAX_QUEUES; q++) {
		if (dp_port.steer[q]) {
			struct rte_mbuf *m;
			while (rte_ring_sc_dequeue(dp_port.steer[q], (void **)&m) == 0)
				rte_pktmbuf_free(m);
			rte_ring_free(dp_port.steer[q]);
			dp_port.steer[q] = NULL;
		}
	}
	for (unsigned q = 0; q < DP_MAX_QUEUES; q++) {
		rte_mempool_free(dp_port.pool[q]);
		dp_port.pool[q] = NULL;
	}
	if (dp_port.eal_up) {
		rte_eal_cleanup();
		dp_port.eal_up = false;
	}
}
