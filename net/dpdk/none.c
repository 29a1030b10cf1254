/* net/dpdk/dpdk.h in a build without DPDK: the transport is absent, and
 * says so when asked for. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net/dpdk/dpdk.h"

int net_dpdk_init(const struct net_dpdk_conf *conf, unsigned nqueues, char *err, size_t errlen)
{
	(void)conf;
	(void)nqueues;
	snprintf(err, errlen, "transport \"dpdk\": this stanzad was built without DPDK (install libdpdk-dev and rebuild)");
	return -ENOTSUP;
}

void net_dpdk_fini(void)
{
}

void net_dpdk_stats(struct net_dpdk_stats *out)
{
	memset(out, 0, sizeof(*out));
}

char *net_dpdk_stats_format(const struct net_dpdk_stats *s, char *buf, size_t len)
{
	(void)s;
	snprintf(buf, len, "no DPDK in this build");
	return buf;
}
