/* Backend selection and address helpers, shared by all backends. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include "net/net.h"
#include "net/dpdk/dpdk.h"

const struct net_ops *net_backend(const char *name)
{
	if (name == NULL || name[0] == '\0' || strcmp(name, "kernel") == 0)
		return &net_kernel_ops;
#ifdef HAVE_DPDK
	if (strcmp(name, "dpdk") == 0)
		return &net_dpdk_ops;
#endif
	return NULL;
}

struct net_loop *net_loop_new(const struct net_ops *ops, unsigned worker, uint32_t conn_hint)
{
	if (ops == NULL)
		ops = net_backend(NULL);
	return ops->loop_new(worker, conn_hint);
}

int net_listen(struct net_loop *loop, const char *addr, int backlog)
{
	struct net_addr a;
	int r = net_addr_parse(addr, &a);
	if (r < 0)
		return r;
	return loop->ops->listen(loop, &a, backlog);
}

static int parse_port(const char *s, uint16_t *port)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end != '\0' || v > 65535)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int net_addr_parse(const char *s, struct net_addr *a)
{
	/* INET6_ADDRSTRLEN with room for a rejected zone id */
	char host[64];
	const char *colon;
	size_t hl;

	memset(a, 0, sizeof(*a));
	if (s == NULL)
		return -EINVAL;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return -EINVAL;
		hl = (size_t)(close - s - 1);
		if (hl == 0 || hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hl);
		host[hl] = '\0';
		if (inet_pton(AF_INET6, host, a->addr) != 1)
			return -EINVAL;
		a->family = NET_AF_INET6;
		return parse_port(close + 2, &a->port);
	}
	colon = strrchr(s, ':');
	if (colon == NULL)
		return -EINVAL;
	hl = (size_t)(colon - s);
	if (hl == 0 || hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (strcmp(host, "*") == 0)
		a->family = NET_AF_ANY;
	else if (inet_pton(AF_INET, host, a->addr) == 1)
		a->family = NET_AF_INET;
	else
		return -EINVAL;
	return parse_port(colon + 1, &a->port);
}

char *net_addr_format(const struct net_addr *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	switch (a->family) {
	case NET_AF_INET:
		inet_ntop(AF_INET, a->addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, a->port);
		break;
	case NET_AF_INET6:
		inet_ntop(AF_INET6, a->addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, a->port);
		break;
	case NET_AF_ANY:
		snprintf(buf, len, "*:%u", a->port);
		break;
	default:
		snprintf(buf, len, "?");
		break;
	}
	return buf;
}
