/* The DPDK transport: set-up from cmd/ and the net_ops backend "dpdk"
 * (types: net/dpdk/dpdk-t.h; the backend contract: net/net.h).
 *
 * One port, one RX/TX queue pair and one userspace TCP/IP stack
 * (net/dpdk/tcp.h) per worker. The process calls net_dpdk_init once,
 * before it creates loops with net_backend("dpdk"), and net_dpdk_fini
 * after it freed them:
 *
 *     if (net_dpdk_init(&cfg.dpdk, workers, err, sizeof err) < 0) fail;
 *     ... server_new: net_loop_new(net_backend("dpdk"), i, hint) for i < workers ...
 *     ... server_free ...
 *     net_dpdk_fini();
 *
 * Loop i owns queue i. Its worker thread registers itself with the EAL on
 * its first net_poll (rte_thread_register: an lcore id, so that mempool
 * caches are per thread). Builds without DPDK have the same functions;
 * net_dpdk_init then fails with -ENOTSUP.
 */
#ifndef STANZA_NET_DPDK_DPDK_H
#define STANZA_NET_DPDK_DPDK_H

#include <stddef.h>
#include "net/dpdk/dpdk-t.h"
#include "net/net-t.h"

extern const struct net_ops net_dpdk_ops;

/* rte_eal_init with conf->eal (once per process), then the port named by
 * conf->port (probed if it is devargs the EAL has not probed): nqueues
 * RX/TX queue pairs, RSS over them with a symmetric key when the port has
 * RSS, checksum offloads it offers, one mbuf pool and one steering ring per
 * queue; the port is started. The calling thread's CPU affinity is kept
 * (the EAL would pin it to its main lcore, and every thread created after
 * would inherit that). Returns 0, or -errno with a line in err:
 * -ENOTSUP (no DPDK in this build), -EINVAL (EAL arguments, the port,
 * fewer queues than nqueues), -ENOMEM, -EALREADY (called twice). */
int net_dpdk_init(const struct net_dpdk_conf *conf, unsigned nqueues, char *err, size_t errlen);

/* Stop and close the port, release the EAL. After every loop is freed. */
void net_dpdk_fini(void);

/* Counters summed over the live loops (zero before init). Also served by
 * DPDK telemetry as "/stanzad/stats" (usertools/dpdk-telemetry.py, or
 * tests/dpdk/rig.py). */
void net_dpdk_stats(struct net_dpdk_stats *out);

/* One line "rx 12 tx 10 ... drop_fragment 1" of every counter, into buf;
 * returns buf. For the log at shutdown. */
char *net_dpdk_stats_format(const struct net_dpdk_stats *s, char *buf, size_t len);

#endif
