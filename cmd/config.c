/* The configuration file (libconfig) and the command line. See config.h.
 *
 * Every option the file may hold is named in a table below; anything else
 * is an error, because a typo that passes silently leaves the server on a
 * default the operator thought they had changed.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include "cmd/config.h"
#include "net/net.h"
#include "parser/jid.h"
#include "parser/xml.h"
#include "util/log.h"

/* ---- names ---------------------------------------------------------------- */

static const char *const kind_names[] = {
	[LISTEN_C2S_STARTTLS] = "starttls",
	[LISTEN_C2S_DIRECT_TLS] = "direct",
};

static const char *const conflict_names[] = {
	[CONFLICT_KICK_OLD] = "kick_old",
	[CONFLICT_REFUSE_NEW] = "refuse_new",
	[CONFLICT_RENAME_NEW] = "rename_new",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

const char *config_listener_kind_name(unsigned kind)
{
	return kind < NELEM(kind_names) ? kind_names[kind] : "?";
}

const char *config_conflict_name(unsigned conflict)
{
	return conflict < NELEM(conflict_names) ? conflict_names[conflict] : "?";
}

static int name_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], s))
			return (int)i;
	return -1;
}

/* ---- defaults ------------------------------------------------------------- */

void config_defaults(struct server_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->vhost[0].domain, sizeof(cfg->vhost[0].domain), "localhost");
	cfg->nvhost = 1;
	snprintf(cfg->listener[0].addr, sizeof(cfg->listener[0].addr), "127.0.0.1:5222");
	cfg->listener[0].kind = LISTEN_C2S_STARTTLS;
	snprintf(cfg->listener[1].addr, sizeof(cfg->listener[1].addr), "127.0.0.1:5223");
	cfg->listener[1].kind = LISTEN_C2S_DIRECT_TLS;
	cfg->nlistener = 2;
	cfg->workers = 0;
	cfg->pin_workers = 1;
	snprintf(cfg->data_dir, sizeof(cfg->data_dir), "%s", CONFIG_DEFAULT_DATA_DIR);
	cfg->admin_socket[0] = '\0';
	cfg->log_level = LOG_INFO;
	xml_limits_default(&cfg->xml);
	cfg->max_output = 1u << 20;
	cfg->header_timeout_ms = 30000;
	cfg->auth_timeout_ms = 60000;
	cfg->max_auth_failures = 3;
	cfg->auth_fail_delay_ms = 250;
	cfg->scram_iterations = 4096;
	cfg->conflict = CONFLICT_KICK_OLD;
	cfg->store_map_size = (uint64_t)1 << 30;
	snprintf(cfg->transport, sizeof(cfg->transport), "kernel");
	cfg->dpdk.prefix = 24;
	cfg->dpdk.idle_sleep_us = 100;
	cfg->dpdk.arp_timeout_s = 300;
	cfg->im.roster_max = 2000;
	cfg->im.pending_max = 100;
	cfg->im.offline_max = 1000;
	cfg->im.privacy_max_items = 1000;
	cfg->im.register_enabled = 0;
	cfg->im.register_per_hour = 5;
	cfg->im.ping_idle_ms = 300000;
	cfg->im.ping_timeout_ms = 60000;
	cfg->im.sm_resume_ms = 300000;
	cfg->im.sm_max_unacked = 5000;
	cfg->im.csi_max_held = 256;
}

/* ---- ranges ---------------------------------------------------------------
 * One place for every bound, shared by the file and the flags. */

#define R_MAX_STANZA_MIN   10000u          /* RFC 6120 13.12: at least 10000 bytes */
#define R_MAX_STANZA_MAX   (64u << 20)
#define R_MAX_OUTPUT_MAX   (1u << 30)
#define R_TIMEOUT_MIN      1000u
#define R_TIMEOUT_MAX      86400000u       /* a day */
#define R_SCRAM_MIN        4096u           /* RFC 5802 5.1, RFC 7677 4: at least 4096 */
#define R_SCRAM_MAX        10000000u
#define R_MAP_MIN          ((uint64_t)1 << 20)
#define R_MAP_MAX          ((uint64_t)1 << 44)

/* ---- error reporting -------------------------------------------------------- */

struct loader {
	const char *file;
	char *err;
	size_t errlen;
};

/* The dotted path of a setting: "limits.max_depth", "listeners.[1].tls". */
static void setting_path(const config_setting_t *s, char *buf, size_t len)
{
	const config_setting_t *chain[16];
	size_t n = 0, used = 0;

	buf[0] = '\0';
	for (; s && !config_setting_is_root(s) && n < NELEM(chain); s = config_setting_parent(s))
		chain[n++] = s;
	while (n-- > 0 && used < len) {
		const config_setting_t *c = chain[n];
		int w;
		if (config_setting_name(c))
			w = snprintf(buf + used, len - used, "%s%s", used ? "." : "", config_setting_name(c));
		else
			w = snprintf(buf + used, len - used, "[%d]", config_setting_index(c));
		if (w < 0)
			break;
		used += (size_t)w;
	}
}

static int fail_at(struct loader *l, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail_at(struct loader *l, const config_setting_t *s, const char *fmt, ...)
{
	char path[256], msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	setting_path(s, path, sizeof(path));
	/* An @include'd file names itself. */
	snprintf(l->err, l->errlen, "%s:%u: %s: %s",
		 config_setting_source_file(s) ? config_setting_source_file(s) : l->file,
		 (unsigned)config_setting_source_line(s), path, msg);
	return -1;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- typed getters over a group --------------------------------------------
 * Each returns 0 when the option is absent (out untouched) or valid (out
 * set), -1 with the error written. */

static int check_keys(struct loader *l, const config_setting_t *grp, const char *const *known, size_t n)
{
	int len = config_setting_length(grp);

	for (int i = 0; i < len; i++) {
		const config_setting_t *c = config_setting_get_elem(grp, (unsigned)i);
		if (name_index(known, n, config_setting_name(c)) < 0)
			return fail_at(l, c, "unknown option");
	}
	return 0;
}

static int want_group(struct loader *l, const config_setting_t *s)
{
	if (!config_setting_is_group(s))
		return fail_at(l, s, "must be a group { ... }");
	return 0;
}

static int get_uint(struct loader *l, const config_setting_t *grp, const char *name,
		    uint64_t min, uint64_t max, uint64_t *out)
{
	const config_setting_t *s = config_setting_get_member(grp, name);
	long long v;

	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64)
		return fail_at(l, s, "must be an integer");
	v = config_setting_get_int64(s);
	if (v < 0 || (uint64_t)v < min || (uint64_t)v > max)
		return fail_at(l, s, "must be between %" PRIu64 " and %" PRIu64 " (got %lld)", min, max, v);
	*out = (uint64_t)v;
	return 0;
}

/* "1048576", "1024K", "1M", "1G", "1T" (powers of 1024) → bytes. */
static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	switch (*end) {
	case '\0': break;
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	case 'T': case 't': shift = 40; end++; break;
	default: return -1;
	}
	if (*end == 'i' || *end == 'B')   /* "1MiB", "1MB": still powers of 1024 */
		end += *end == 'i' ? (end[1] == 'B' ? 2 : 1) : 1;
	if (*end != '\0' || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

/* A byte count: an integer, or a string with a K/M/G/T suffix. */
static int get_size(struct loader *l, const config_setting_t *grp, const char *name,
		    uint64_t min, uint64_t max, uint64_t *out)
{
	const config_setting_t *s = config_setting_get_member(grp, name);
	uint64_t v = 0;

	if (!s)
		return 0;
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		if (parse_size(config_setting_get_string(s), &v) < 0)
			return fail_at(l, s, "not a size (\"%s\"; use bytes or a K, M, G, T suffix)",
				       config_setting_get_string(s));
		if (v < min || v > max)
			return fail_at(l, s, "must be between %" PRIu64 " and %" PRIu64 " bytes (got %" PRIu64 ")",
				       min, max, v);
		*out = v;
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_INT && config_setting_type(s) != CONFIG_TYPE_INT64)
		return fail_at(l, s, "must be a size (integer bytes or a string such as \"1M\")");
	return get_uint(l, grp, name, min, max, out);
}

static int get_bool(struct loader *l, const config_setting_t *grp, const char *name, int *out)
{
	const config_setting_t *s = config_setting_get_member(grp, name);

	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return fail_at(l, s, "must be true or false");
	*out = config_setting_get_bool(s);
	return 0;
}

/* Returns 1 when present and copied, 0 when absent, -1 on error. */
static int get_string(struct loader *l, const config_setting_t *grp, const char *name,
		      const char **out)
{
	const config_setting_t *s = config_setting_get_member(grp, name);

	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail_at(l, s, "must be a string");
	*out = config_setting_get_string(s);
	return 1;
}

static int get_path(struct loader *l, const config_setting_t *grp, const char *name,
		    char *out, size_t cap, bool allow_empty)
{
	const char *v = NULL;
	int r = get_string(l, grp, name, &v);

	if (r <= 0)
		return r;
	if (!allow_empty && !v[0])
		return fail_at(l, config_setting_get_member(grp, name), "must not be empty");
	if (strlen(v) >= cap)
		return fail_at(l, config_setting_get_member(grp, name), "longer than %zu bytes", cap - 1);
	memcpy(out, v, strlen(v) + 1);
	return 0;
}

/* ---- checks shared by the file and the flags ------------------------------- */

static int prep_domain(const char *in, char *out, char *why, size_t whylen)
{
	size_t n;
	enum jid_err e = jid_prep(JID_DOMAIN, in, strlen(in), out, CONFIG_DOMAIN_MAX + 1, &n, 0);

	if (e != JID_OK)
		return fail(why, whylen, "not a valid domain \"%s\" (%s)", in, jid_err_str(e));
	return 0;
}

static int check_addr(const char *s, char *why, size_t whylen)
{
	struct net_addr a;

	if (strlen(s) >= sizeof(((struct listener_config *)0)->addr) || net_addr_parse(s, &a) < 0)
		return fail(why, whylen, "not an address \"%s\" (use 127.0.0.1:5222, [::1]:5222 or *:5222)", s);
	return 0;
}

static int check_level(const char *s, int *level, char *why, size_t whylen)
{
	enum log_level lv;

	if (log_parse_level(s, &lv) < 0)
		return fail(why, whylen, "not a log level \"%s\" (error, warn, info, debug)", s);
	*level = (int)lv;
	return 0;
}

/* ---- sections of the file -------------------------------------------------- */

static int load_vhosts(struct loader *l, const config_setting_t *list, struct server_config *c)
{
	static const char *const keys[] = { "domain", "cert", "key" };
	char why[256];
	int n;

	if (!config_setting_is_list(list))
		return fail_at(l, list, "must be a list ( { domain = \"...\"; }, ... )");
	n = config_setting_length(list);
	if (n == 0)
		return fail_at(l, list, "at least one virtual host is needed");
	if (n > CONFIG_MAX_VHOSTS)
		return fail_at(l, list, "at most %d virtual hosts", CONFIG_MAX_VHOSTS);
	c->nvhost = 0;
	for (int i = 0; i < n; i++) {
		const config_setting_t *v = config_setting_get_elem(list, (unsigned)i);
		struct vhost_config *vh = &c->vhost[c->nvhost];
		const char *dom = NULL;

		if (want_group(l, v) < 0 || check_keys(l, v, keys, NELEM(keys)) < 0)
			return -1;
		memset(vh, 0, sizeof(*vh));
		if (get_string(l, v, "domain", &dom) < 0)
			return -1;
		if (!config_setting_get_member(v, "domain"))
			return fail_at(l, v, "domain is required");
		if (prep_domain(dom, vh->domain, why, sizeof(why)) < 0)
			return fail_at(l, config_setting_get_member(v, "domain"), "%s", why);
		if (get_path(l, v, "cert", vh->cert, sizeof(vh->cert), true) < 0 ||
		    get_path(l, v, "key", vh->key, sizeof(vh->key), true) < 0)
			return -1;
		if (!vh->cert[0] != !vh->key[0])
			return fail_at(l, v, "cert and key go together: set both, or neither to use a generated pair");
		c->nvhost++;
	}
	return 0;
}

static int load_listeners(struct loader *l, const config_setting_t *list, struct server_config *c)
{
	static const char *const keys[] = { "address", "tls" };
	char why[256];
	int n;

	if (!config_setting_is_list(list))
		return fail_at(l, list, "must be a list ( { address = \"...\"; tls = \"...\"; }, ... )");
	n = config_setting_length(list);
	if (n == 0)
		return fail_at(l, list, "at least one listener is needed");
	if (n > CONFIG_MAX_LISTENERS)
		return fail_at(l, list, "at most %d listeners", CONFIG_MAX_LISTENERS);
	c->nlistener = 0;
	for (int i = 0; i < n; i++) {
		const config_setting_t *v = config_setting_get_elem(list, (unsigned)i);
		struct listener_config *lc = &c->listener[c->nlistener];
		const char *addr = NULL, *tls = "starttls";
		int k;

		if (want_group(l, v) < 0 || check_keys(l, v, keys, NELEM(keys)) < 0)
			return -1;
		memset(lc, 0, sizeof(*lc));
		if (get_string(l, v, "address", &addr) < 0 || get_string(l, v, "tls", &tls) < 0)
			return -1;
		if (!config_setting_get_member(v, "address"))
			return fail_at(l, v, "address is required");
		if (check_addr(addr, why, sizeof(why)) < 0)
			return fail_at(l, config_setting_get_member(v, "address"), "%s", why);
		snprintf(lc->addr, sizeof(lc->addr), "%s", addr);
		k = name_index(kind_names, NELEM(kind_names), tls);
		if (k < 0)
			return fail_at(l, config_setting_get_member(v, "tls"),
				       "must be \"starttls\" or \"direct\" (got \"%s\")", tls);
		lc->kind = (uint8_t)k;
		c->nlistener++;
	}
	return 0;
}

static int load_limits(struct loader *l, const config_setting_t *g, struct server_config *c)
{
	static const char *const keys[] = {
		"max_stanza", "max_depth", "max_attributes", "max_namespaces", "max_output",
		"header_timeout_ms", "auth_timeout_ms",
	};
	uint64_t v;

	if (want_group(l, g) < 0 || check_keys(l, g, keys, NELEM(keys)) < 0)
		return -1;
	v = c->xml.max_stanza;
	if (get_size(l, g, "max_stanza", R_MAX_STANZA_MIN, R_MAX_STANZA_MAX, &v) < 0)
		return -1;
	c->xml.max_stanza = (uint32_t)v;
	v = c->xml.max_depth;
	if (get_uint(l, g, "max_depth", 4, UINT16_MAX, &v) < 0)
		return -1;
	c->xml.max_depth = (uint16_t)v;
	v = c->xml.max_attrs;
	if (get_uint(l, g, "max_attributes", 4, UINT16_MAX, &v) < 0)
		return -1;
	c->xml.max_attrs = (uint16_t)v;
	v = c->xml.max_ns;
	if (get_uint(l, g, "max_namespaces", 1, UINT16_MAX, &v) < 0)
		return -1;
	c->xml.max_ns = (uint16_t)v;
	v = c->max_output;
	if (get_size(l, g, "max_output", R_MAX_STANZA_MIN, R_MAX_OUTPUT_MAX, &v) < 0)
		return -1;
	c->max_output = (uint32_t)v;
	v = c->header_timeout_ms;
	if (get_uint(l, g, "header_timeout_ms", R_TIMEOUT_MIN, R_TIMEOUT_MAX, &v) < 0)
		return -1;
	c->header_timeout_ms = (uint32_t)v;
	v = c->auth_timeout_ms;
	if (get_uint(l, g, "auth_timeout_ms", R_TIMEOUT_MIN, R_TIMEOUT_MAX, &v) < 0)
		return -1;
	c->auth_timeout_ms = (uint32_t)v;
	return 0;
}

static int load_auth(struct loader *l, const config_setting_t *g, struct server_config *c)
{
	static const char *const keys[] = { "max_failures", "failure_delay_ms", "scram_iterations",
					    "allow_plaintext" };
	uint64_t v;

	if (want_group(l, g) < 0 || check_keys(l, g, keys, NELEM(keys)) < 0)
		return -1;
	v = c->max_auth_failures;
	if (get_uint(l, g, "max_failures", 1, 100, &v) < 0)
		return -1;
	c->max_auth_failures = (uint32_t)v;
	v = c->auth_fail_delay_ms;
	if (get_uint(l, g, "failure_delay_ms", 0, 60000, &v) < 0)
		return -1;
	c->auth_fail_delay_ms = (uint32_t)v;
	v = c->scram_iterations;
	if (get_uint(l, g, "scram_iterations", R_SCRAM_MIN, R_SCRAM_MAX, &v) < 0)
		return -1;
	c->scram_iterations = (uint32_t)v;
	int plain = c->allow_plaintext_auth;
	if (get_bool(l, g, "allow_plaintext", &plain) < 0)
		return -1;
	c->allow_plaintext_auth = (uint8_t)(plain != 0);
	return 0;
}

static int load_store(struct loader *l, const config_setting_t *g, struct server_config *c)
{
	static const char *const keys[] = { "map_size" };

	if (want_group(l, g) < 0 || check_keys(l, g, keys, NELEM(keys)) < 0)
		return -1;
	return get_size(l, g, "map_size", R_MAP_MIN, R_MAP_MAX, &c->store_map_size);
}

static int load_im(struct loader *l, const config_setting_t *g, struct server_config *c)
{
	static const char *const keys[] = {
		"roster_max", "pending_max", "offline_max", "privacy_max_items", "register",
		"register_per_hour", "ping_idle_ms", "ping_timeout_ms", "sm_resume_ms", "sm_max_unacked",
		"csi_max_held",
	};
	static const struct { const char *key; size_t off; uint64_t min, max; } nums[] = {
		{ "roster_max", offsetof(struct im_config, roster_max), 1, 1000000 },
		{ "pending_max", offsetof(struct im_config, pending_max), 1, 100000 },
		{ "offline_max", offsetof(struct im_config, offline_max), 0, 1000000 },
		{ "privacy_max_items", offsetof(struct im_config, privacy_max_items), 1, 100000 },
		{ "register_per_hour", offsetof(struct im_config, register_per_hour), 1, 1000000 },
		{ "ping_idle_ms", offsetof(struct im_config, ping_idle_ms), 0, R_TIMEOUT_MAX },
		{ "ping_timeout_ms", offsetof(struct im_config, ping_timeout_ms), R_TIMEOUT_MIN, R_TIMEOUT_MAX },
		{ "sm_resume_ms", offsetof(struct im_config, sm_resume_ms), 0, R_TIMEOUT_MAX },
		{ "sm_max_unacked", offsetof(struct im_config, sm_max_unacked), 16, 1000000 },
		{ "csi_max_held", offsetof(struct im_config, csi_max_held), 0, 100000 },
	};

	if (want_group(l, g) < 0 || check_keys(l, g, keys, NELEM(keys)) < 0)
		return -1;
	for (size_t i = 0; i < NELEM(nums); i++) {
		uint32_t *f = (uint32_t *)((char *)&c->im + nums[i].off);
		uint64_t v = *f;
		if (get_uint(l, g, nums[i].key, nums[i].min, nums[i].max, &v) < 0)
			return -1;
		*f = (uint32_t)v;
	}
	int reg = c->im.register_enabled;
	if (get_bool(l, g, "register", &reg) < 0)
		return -1;
	c->im.register_enabled = (uint8_t)(reg != 0);
	return 0;
}

/* ---- transport ---------------------------------------------------------------- */

/* "a.b.c.d" into 4 bytes, network order. */
static int parse_ip4(const char *s, uint8_t ip[4])
{
	struct in_addr in;

	if (inet_pton(AF_INET, s, &in) != 1)
		return -1;
	memcpy(ip, &in, 4);
	return 0;
}

/* "aa:bb:cc:dd:ee:ff" into 6 bytes. */
static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}

/* eal: one string (split at blanks) or a list of strings (one argument
 * each, no blanks inside); kept blank-separated. */
static int load_eal(struct loader *l, const config_setting_t *s, struct net_dpdk_conf *d)
{
	size_t used = 0;
	int n;

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		const char *v = config_setting_get_string(s);
		if (strlen(v) >= sizeof(d->eal))
			return fail_at(l, s, "longer than %zu bytes", sizeof(d->eal) - 1);
		memcpy(d->eal, v, strlen(v) + 1);
		return 0;
	}
	if (!config_setting_is_list(s) && !config_setting_is_array(s))
		return fail_at(l, s, "must be a string or a list of strings");
	n = config_setting_length(s);
	d->eal[0] = '\0';
	for (int i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		const char *v;
		size_t len;
		if (config_setting_type(e) != CONFIG_TYPE_STRING)
			return fail_at(l, e, "must be a string");
		v = config_setting_get_string(e);
		len = strlen(v);
		if (len == 0 || strpbrk(v, " \t\n"))
			return fail_at(l, e, "an EAL argument must be one non-empty word");
		if (used + len + 2 > sizeof(d->eal))
			return fail_at(l, s, "longer than %zu bytes", sizeof(d->eal) - 1);
		if (used)
			d->eal[used++] = ' ';
		memcpy(d->eal + used, v, len + 1);
		used += len;
	}
	return 0;
}

static int load_dpdk(struct loader *l, const config_setting_t *g, struct server_config *c)
{
	static const char *const keys[] = {
		"eal", "port", "address", "gateway", "mac", "idle_sleep_us", "mbufs", "arp_timeout",
	};
	struct net_dpdk_conf *d = &c->dpdk;
	const config_setting_t *s;
	const char *str = NULL;
	uint64_t v;
	int r;

	if (want_group(l, g) < 0 || check_keys(l, g, keys, NELEM(keys)) < 0)
		return -1;
	if ((s = config_setting_get_member(g, "eal")) && load_eal(l, s, d) < 0)
		return -1;
	if (get_path(l, g, "port", d->port, sizeof(d->port), false) < 0)
		return -1;
	if ((r = get_string(l, g, "address", &str)) < 0)
		return -1;
	if (r) {
		char ip[32], *slash;
		unsigned long pfx = 32;
		snprintf(ip, sizeof(ip), "%s", str);
		slash = strchr(ip, '/');
		if (slash) {
			char *end;
			*slash = '\0';
			pfx = strtoul(slash + 1, &end, 10);
			if (*end || end == slash + 1)
				pfx = 0;
		}
		if (strlen(str) >= sizeof(ip) || parse_ip4(ip, d->ip) < 0 || pfx < 1 || pfx > 32)
			return fail_at(l, config_setting_get_member(g, "address"),
				       "must be an IPv4 address with a prefix length, as \"198.18.0.1/15\" (got \"%s\")", str);
		d->prefix = (uint8_t)pfx;
	}
	if ((r = get_string(l, g, "gateway", &str)) < 0)
		return -1;
	if (r) {
		if (str[0] && parse_ip4(str, d->gateway) < 0)
			return fail_at(l, config_setting_get_member(g, "gateway"), "not an IPv4 address (\"%s\")", str);
		d->has_gateway = str[0] != '\0';
	}
	if ((r = get_string(l, g, "mac", &str)) < 0)
		return -1;
	if (r) {
		if (str[0] && parse_mac(str, d->mac) < 0)
			return fail_at(l, config_setting_get_member(g, "mac"),
				       "must be a MAC address as \"02:00:00:00:00:01\" (got \"%s\")", str);
		d->has_mac = str[0] != '\0';
	}
	v = d->idle_sleep_us;
	if (get_uint(l, g, "idle_sleep_us", 0, 100000, &v) < 0)
		return -1;
	d->idle_sleep_us = (uint32_t)v;
	v = d->mbufs;
	if (get_uint(l, g, "mbufs", 0, 16u << 20, &v) < 0)
		return -1;
	d->mbufs = (uint32_t)v;
	v = d->arp_timeout_s;
	if (get_uint(l, g, "arp_timeout", 1, 86400, &v) < 0)
		return -1;
	d->arp_timeout_s = (uint32_t)v;
	return 0;
}

static int load_root(struct loader *l, const config_setting_t *root, struct server_config *c)
{
	static const char *const keys[] = {
		"log_level", "workers", "pin_workers", "data_dir", "admin_socket", "resource_conflict",
		"vhosts", "listeners", "limits", "auth", "store", "im",
		"transport", "dpdk",
	};
	const config_setting_t *s;
	const char *str = NULL;
	char why[256];
	uint64_t v;
	int r;

	if (check_keys(l, root, keys, NELEM(keys)) < 0)
		return -1;
	if ((r = get_string(l, root, "log_level", &str)) < 0)
		return -1;
	if (r && check_level(str, &c->log_level, why, sizeof(why)) < 0)
		return fail_at(l, config_setting_get_member(root, "log_level"), "%s", why);
	v = c->workers;
	if (get_uint(l, root, "workers", 0, CONFIG_MAX_WORKERS, &v) < 0)
		return -1;
	c->workers = (unsigned)v;
	if (get_bool(l, root, "pin_workers", &c->pin_workers) < 0)
		return -1;
	if (get_path(l, root, "data_dir", c->data_dir, sizeof(c->data_dir), false) < 0 ||
	    get_path(l, root, "admin_socket", c->admin_socket, sizeof(c->admin_socket), true) < 0)
		return -1;
	if ((r = get_string(l, root, "resource_conflict", &str)) < 0)
		return -1;
	if (r) {
		int k = name_index(conflict_names, NELEM(conflict_names), str);
		if (k < 0)
			return fail_at(l, config_setting_get_member(root, "resource_conflict"),
				       "must be \"kick_old\", \"refuse_new\" or \"rename_new\" (got \"%s\")", str);
		c->conflict = (uint8_t)k;
	}
	if ((s = config_setting_get_member(root, "vhosts")) && load_vhosts(l, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "listeners")) && load_listeners(l, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "limits")) && load_limits(l, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "auth")) && load_auth(l, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "store")) && load_store(l, s, c) < 0)
		return -1;
	if ((s = config_setting_get_member(root, "im")) && load_im(l, s, c) < 0)
		return -1;
	if ((r = get_string(l, root, "transport", &str)) < 0)
		return -1;
	if (r) {
		if (strcmp(str, "kernel") && strcmp(str, "dpdk"))
			return fail_at(l, config_setting_get_member(root, "transport"),
				       "must be \"kernel\" or \"dpdk\" (got \"%s\")", str);
		snprintf(c->transport, sizeof(c->transport), "%s", str);
	}
	if ((s = config_setting_get_member(root, "dpdk")) && load_dpdk(l, s, c) < 0)
		return -1;
	return 0;
}

int config_load(const char *path, struct server_config *cfg, char *err, size_t errlen)
{
	/* Large: built on the heap so a reload on the control thread does not
	 * put two of them on its stack. */
	struct server_config *c = malloc(sizeof(*c));
	struct loader l = { path, err, errlen };
	config_t lc;
	char dir[CONFIG_PATH_MAX];
	int rc = -1;

	if (!c)
		return fail(err, errlen, "out of memory");
	config_defaults(c);
	if (!path) {
		rc = config_check(c, err, errlen);
		goto out;
	}
	config_init(&lc);
	/* @include "x" is relative to the including file's directory. */
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (slash) {
		slash[slash == dir] = '\0';
		config_set_include_dir(&lc, dir);
	}
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			fail(err, errlen, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
		else
			fail(err, errlen, "%s:%d: %s", config_error_file(&lc) ? config_error_file(&lc) : path,
			     config_error_line(&lc), config_error_text(&lc));
	} else if (load_root(&l, config_root_setting(&lc), c) == 0) {
		char e2[512];
		if (config_check(c, e2, sizeof(e2)) < 0)
			fail(err, errlen, "%s: %s", path, e2);
		else
			rc = 0;
	}
	config_destroy(&lc);
out:
	if (rc == 0)
		*cfg = *c;
	free(c);
	return rc;
}

/* ---- cross-option checks ------------------------------------------------------ */

int config_check(const struct server_config *c, char *err, size_t errlen)
{
	char sock[sizeof(((struct sockaddr_un *)0)->sun_path)];

	if (c->nvhost == 0)
		return fail(err, errlen, "no virtual host configured");
	if (c->nlistener == 0)
		return fail(err, errlen, "no listener configured");
	for (unsigned i = 0; i < c->nvhost; i++)
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(c->vhost[i].domain, c->vhost[j].domain))
				return fail(err, errlen, "virtual host %s configured twice", c->vhost[i].domain);
	for (unsigned i = 0; i < c->nlistener; i++)
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(c->listener[i].addr, c->listener[j].addr))
				return fail(err, errlen, "listener %s configured twice", c->listener[i].addr);
	if (c->max_output < c->xml.max_stanza)
		return fail(err, errlen, "limits.max_output (%" PRIu32 ") must be at least limits.max_stanza (%" PRIu32
			    "): a stanza that was accepted must fit in a recipient's output",
			    c->max_output, c->xml.max_stanza);
	if (!c->data_dir[0])
		return fail(err, errlen, "data_dir must not be empty");
	if (!strcmp(c->transport, "dpdk") && (!c->dpdk.port[0] || !(c->dpdk.ip[0] | c->dpdk.ip[1] | c->dpdk.ip[2] | c->dpdk.ip[3])))
		return fail(err, errlen, "transport \"dpdk\" needs dpdk.port and dpdk.address");
	if (config_admin_socket(c, sock, sizeof(sock)) < 0)
		return fail(err, errlen, "the admin socket path is longer than a Unix socket allows (%zu bytes): "
			    "set admin_socket to a shorter path", sizeof(sock) - 1);
	return 0;
}

/* ---- the command line ---------------------------------------------------------- */

enum { OPT_LISTEN = 256, OPT_LISTEN_TLS, OPT_CHECK, OPT_PLAINTEXT };

int config_args(int argc, char **argv, struct config_overrides *ov, char *err, size_t errlen)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "data-dir", required_argument, NULL, 'd' },
		{ "domain", required_argument, NULL, 'D' },
		{ "workers", required_argument, NULL, 'w' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "listen", required_argument, NULL, OPT_LISTEN },
		{ "listen-tls", required_argument, NULL, OPT_LISTEN_TLS },
		{ "foreground", no_argument, NULL, 'f' },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "allow-plaintext-auth", no_argument, NULL, OPT_PLAINTEXT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int o;

	memset(ov, 0, sizeof(*ov));
	optind = 0;     /* glibc: 0 re-initialises getopt, so tests may call us twice */
	opterr = 0;     /* we report, in err */
	while ((o = getopt_long(argc, argv, ":c:d:D:w:l:fhV", longopts, NULL)) != -1) {
		switch (o) {
		case 'c': ov->file = optarg; break;
		case 'd': ov->data_dir = optarg; break;
		case 'D':
			if (ov->ndomain == CONFIG_MAX_VHOSTS)
				return fail(err, errlen, "-D: at most %d domains", CONFIG_MAX_VHOSTS);
			ov->domain[ov->ndomain++] = optarg;
			break;
		case 'w': ov->workers = optarg; break;
		case 'l': ov->log_level = optarg; break;
		case OPT_LISTEN:
		case OPT_LISTEN_TLS:
			if (ov->nlisten == CONFIG_MAX_LISTENERS)
				return fail(err, errlen, "--listen: at most %d listeners", CONFIG_MAX_LISTENERS);
			ov->listen_kind[ov->nlisten] = o == OPT_LISTEN ? LISTEN_C2S_STARTTLS : LISTEN_C2S_DIRECT_TLS;
			ov->listen[ov->nlisten++] = optarg;
			break;
		case 'f': break;   /* always in the foreground: systemd or a terminal supervises us */
		case OPT_CHECK: ov->check_only = true; break;
		case OPT_PLAINTEXT: ov->allow_plaintext_auth = true; break;
		case 'h': ov->help = true; break;
		case 'V': ov->version = true; break;
		case ':':
			return fail(err, errlen, "option %s needs a value", argv[optind - 1]);
		default:
			if (optopt)
				return fail(err, errlen, "unknown option -%c", optopt);
			return fail(err, errlen, "unknown option %s", argv[optind - 1]);
		}
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument \"%s\"", argv[optind]);
	return 0;
}

int config_override(struct server_config *cfg, const struct config_overrides *ov, char *err, size_t errlen)
{
	struct server_config *c = malloc(sizeof(*c));
	char why[256];
	int rc = -1;

	if (!c)
		return fail(err, errlen, "out of memory");
	*c = *cfg;
	if (ov->data_dir) {
		if (!ov->data_dir[0] || strlen(ov->data_dir) >= sizeof(c->data_dir)) {
			fail(err, errlen, "-d: not a usable directory name");
			goto out;
		}
		snprintf(c->data_dir, sizeof(c->data_dir), "%s", ov->data_dir);
	}
	if (ov->allow_plaintext_auth)
		c->allow_plaintext_auth = 1;
	if (ov->ndomain) {
		/* The flag names the whole set: the file's vhosts, with their
		 * certificate paths, are replaced, not extended. */
		c->nvhost = 0;
		for (unsigned i = 0; i < ov->ndomain; i++) {
			struct vhost_config *vh = &c->vhost[c->nvhost++];
			memset(vh, 0, sizeof(*vh));
			if (prep_domain(ov->domain[i], vh->domain, why, sizeof(why)) < 0) {
				fail(err, errlen, "-D: %s", why);
				goto out;
			}
		}
	}
	if (ov->nlisten) {
		c->nlistener = 0;
		for (unsigned i = 0; i < ov->nlisten; i++) {
			struct listener_config *lc = &c->listener[c->nlistener++];
			if (check_addr(ov->listen[i], why, sizeof(why)) < 0) {
				fail(err, errlen, "%s: %s",
				     ov->listen_kind[i] == LISTEN_C2S_STARTTLS ? "--listen" : "--listen-tls", why);
				goto out;
			}
			snprintf(lc->addr, sizeof(lc->addr), "%s", ov->listen[i]);
			lc->kind = ov->listen_kind[i];
		}
	}
	if (ov->workers) {
		char *end;
		errno = 0;
		unsigned long w = strtoul(ov->workers, &end, 10);
		if (errno || end == ov->workers || *end || ov->workers[0] == '-' || w > CONFIG_MAX_WORKERS) {
			fail(err, errlen, "-w: must be between 0 (one per CPU) and %d (got \"%s\")",
			     CONFIG_MAX_WORKERS, ov->workers);
			goto out;
		}
		c->workers = (unsigned)w;
	}
	if (ov->log_level && check_level(ov->log_level, &c->log_level, why, sizeof(why)) < 0) {
		fail(err, errlen, "-l: %s", why);
		goto out;
	}
	if (config_check(c, err, errlen) < 0)
		goto out;
	*cfg = *c;
	rc = 0;
out:
	free(c);
	return rc;
}

/* ---- derived paths -------------------------------------------------------------- */

static int path_join(char *buf, size_t len, const char *a, const char *b, const char *ext)
{
	int n = snprintf(buf, len, "%s/%s%s", a, b, ext);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int config_admin_socket(const struct server_config *cfg, char *buf, size_t len)
{
	if (cfg->admin_socket[0]) {
		if (strlen(cfg->admin_socket) >= len)
			return -1;
		memcpy(buf, cfg->admin_socket, strlen(cfg->admin_socket) + 1);
		return 0;
	}
	return path_join(buf, len, cfg->data_dir, CONFIG_SOCKET_NAME, "");
}

int config_store_dir(const struct server_config *cfg, char *buf, size_t len)
{
	return path_join(buf, len, cfg->data_dir, "store", "");
}

int config_cert_paths(const struct server_config *cfg, unsigned i, char *cert, char *key,
		      size_t len, bool *generated)
{
	const struct vhost_config *vh = &cfg->vhost[i];
	char dir[CONFIG_PATH_MAX];

	if (vh->cert[0]) {
		*generated = false;
		if (strlen(vh->cert) >= len || strlen(vh->key) >= len)
			return -1;
		memcpy(cert, vh->cert, strlen(vh->cert) + 1);
		memcpy(key, vh->key, strlen(vh->key) + 1);
		return 0;
	}
	*generated = true;
	if (path_join(dir, sizeof(dir), cfg->data_dir, "certs", "") < 0)
		return -1;
	if (path_join(cert, len, dir, vh->domain, ".crt") < 0 || path_join(key, len, dir, vh->domain, ".key") < 0)
		return -1;
	return 0;
}
