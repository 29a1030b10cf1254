/* stanza-bench options: one table of keys drives the flags, the scenario
 * file, the range checks and the echo of every option in the JSON report,
 * so the four cannot disagree. */
#include "bench/harness/opts.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum opt_type {
	T_STR,      /* char[size], non-empty unless min == 0 */
	T_NAME,     /* T_STR that goes into a JID or a stream header: no spaces, @ / < > & ' " */
	T_UINT,     /* unsigned in min..max */
	T_PORT,     /* uint16_t in min..max */
	T_PID,      /* pid_t in min..max */
	T_DOUBLE,   /* double in dmin..dmax */
	T_ENUM,     /* int, one of names[] (names[i] is the value i + first) */
	T_BOOL,
};

struct opt_key {
	const char *key;        /* as in the file; the flag is --key with '-' for '_' */
	const char *alias;      /* a shorter flag spelling, or NULL */
	enum opt_type type;
	size_t off;
	size_t size;            /* T_STR/T_NAME: buffer size */
	unsigned long min, max; /* T_UINT, T_PORT, T_PID; T_STR: min 1 = required */
	double dmin, dmax;      /* T_DOUBLE; dmin_open: dmin itself excluded */
	bool dmin_open;
	const char *const *names;
	int first;              /* T_ENUM: value of names[0] */
};

static const char *const scenario_names[] = { "pairs", "fanout", "login", "idle", "mixed", "raw", NULL };
static const char *const tls_names[] = { "none", "starttls", "direct", NULL };
static const char *const mech_names[] = { "plain", "scram-sha-1", "scram-sha-256", NULL };
static const char *const provision_names[] = { "none", "ibr", "stanzactl", "prosodyctl", "ejabberdctl", NULL };
static const char *const transport_names[] = { "kernel", "dpdk", NULL };

#define F(field) offsetof(struct bench_opts, field)
#define STR(k, field, req)  { k, NULL, T_STR, F(field), sizeof(((struct bench_opts *)0)->field), req, 0, 0, 0, false, NULL, 0 }
#define NAME(k, field)      { k, NULL, T_NAME, F(field), sizeof(((struct bench_opts *)0)->field), 1, 0, 0, 0, false, NULL, 0 }
#define UINT(k, field, lo, hi) { k, NULL, T_UINT, F(field), 0, lo, hi, 0, 0, false, NULL, 0 }
#define DBL(k, field, lo, open, hi) { k, NULL, T_DOUBLE, F(field), 0, 0, 0, lo, hi, open, NULL, 0 }
#define ENUM(k, field, tab, first) { k, NULL, T_ENUM, F(field), 0, 0, 0, 0, 0, false, tab, first }

static const struct opt_key keys[] = {
	ENUM("scenario", scenario, scenario_names, SC_PAIRS),
	NAME("host", host),
	{ "port", NULL, T_PORT, F(port), 0, 1, 65535, 0, 0, false, NULL, 0 },
	NAME("domain", domain),
	ENUM("tls", tls, tls_names, TLS_NONE),
	ENUM("mech", mech, mech_names, MECH_PLAIN),
	NAME("user_prefix", user_prefix),
	STR("password", password, 1),
	UINT("users", users, 0, 10000000),
	UINT("pairs", pairs, 1, 5000000),
	UINT("window", window, 1, 65536),
	UINT("body", body, 0, 65536),
	UINT("contacts", contacts, 1, 100000),
	UINT("logins", logins, 1, 100000000),
	UINT("inflight", inflight, 1, 1000000),
	UINT("sessions", sessions, 1, 10000000),
	DBL("rate", rate, 0.0, true, 1e6),
	DBL("msg_rate", msg_rate, 0.0, false, 1e9),
	DBL("duration", duration, 0.0, true, 86400.0),
	DBL("warmup", warmup, 0.0, false, 86400.0),
	UINT("threads", threads, 0, 1024),
	UINT("connect_rate", connect_rate, 0, 10000000),
	ENUM("provision", provision, provision_names, PROV_NONE),
	STR("provision_cmd", provision_cmd, 0),
	{ "server_pid", NULL, T_PID, F(server_pid), 0, 0, 4194304, 0, 0, false, NULL, 0 },  /* PID_MAX_LIMIT */
	STR("label", label, 0),
	{ "json_path", "json", T_STR, F(json_path), sizeof(((struct bench_opts *)0)->json_path), 0, 0, 0, 0, false, NULL, 0 },
	{ "series_path", "series", T_STR, F(series_path), sizeof(((struct bench_opts *)0)->series_path), 0, 0, 0, 0, false, NULL, 0 },
	{ "quiet", NULL, T_BOOL, F(quiet), 0, 0, 0, 0, 0, false, NULL, 0 },
	ENUM("transport", transport, transport_names, TRANSPORT_KERNEL),
	STR("eal", eal, 0),
	STR("dpdk_port", dpdk_port, 0),
	STR("dpdk_address", dpdk_address, 0),
	UINT("dpdk_idle_sleep_us", dpdk_idle_sleep_us, 0, 100000),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* T_ENUM fields are read and written as int. */
_Static_assert(sizeof(enum bench_scenario) == sizeof(int) && sizeof(enum bench_tls) == sizeof(int)
               && sizeof(enum bench_mech) == sizeof(int) && sizeof(enum bench_provision) == sizeof(int)
               && sizeof(enum bench_transport) == sizeof(int),
               "enum fields are int-sized");

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void bench_opts_default(struct bench_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->scenario = SC_PAIRS;
	strcpy(o->host, "127.0.0.1");
	o->port = 5222;
	strcpy(o->domain, "localhost");
	o->tls = TLS_STARTTLS;
	o->mech = MECH_SCRAM_SHA_256;
	strcpy(o->user_prefix, "bench");
	strcpy(o->password, "bench-pass");
	o->users = 0;
	o->pairs = 100;
	o->window = 16;
	o->body = 100;
	o->contacts = 20;
	o->logins = 1000;
	o->inflight = 64;
	o->sessions = 1000;
	o->rate = 0.1;
	o->duration = 10.0;
	o->warmup = 2.0;
	o->threads = 0;
	o->connect_rate = 0;
	o->provision = PROV_NONE;
	o->server_pid = 0;
	o->quiet = false;
	o->transport = TRANSPORT_KERNEL;
	strcpy(o->eal, "--no-huge -m 512 --no-pci");
	o->dpdk_idle_sleep_us = 100;
}

static const char *enum_name(const char *const *names, int first, int v)
{
	for (int i = 0; names[i]; i++)
		if (i + first == v)
			return names[i];
	return "?";
}

const char *bench_scenario_name(enum bench_scenario s) { return enum_name(scenario_names, SC_PAIRS, (int)s); }
const char *bench_tls_name(enum bench_tls t) { return enum_name(tls_names, TLS_NONE, (int)t); }
const char *bench_mech_name(enum bench_mech m) { return enum_name(mech_names, MECH_PLAIN, (int)m); }
const char *bench_provision_name(enum bench_provision p) { return enum_name(provision_names, PROV_NONE, (int)p); }
const char *bench_transport_name(enum bench_transport t) { return enum_name(transport_names, TRANSPORT_KERNEL, (int)t); }

/* "json-path", "json_path" and the alias "json" all name the same key. */
static bool key_eq(const char *want, const char *got, size_t glen)
{
	size_t i;

	for (i = 0; i < glen && want[i]; i++) {
		char c = got[i] == '-' ? '_' : got[i];
		if (c != want[i])
			return false;
	}
	return i == glen && want[i] == '\0';
}

static const struct opt_key *key_find(const char *name, size_t len)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (key_eq(keys[i].key, name, len) || (keys[i].alias && key_eq(keys[i].alias, name, len)))
			return &keys[i];
	return NULL;
}

static int parse_ulong(const char *s, unsigned long *out)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return -1;        /* no sign, no empty string */
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v > ULONG_MAX)
		return -1;
	*out = (unsigned long)v;
	return 0;
}

static bool name_ok(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || strchr("@/<>&'\"", *s))
			return false;
	return true;
}

/* Sets one key from its text value. k names the key in messages as the
 * user wrote it (a flag or a file key). */
static int set_key(struct bench_opts *o, const struct opt_key *k, const char *val,
                   char *err, size_t errlen)
{
	char *field = (char *)o + k->off;
	unsigned long u;

	switch (k->type) {
	case T_STR:
	case T_NAME: {
		size_t n = strlen(val);
		if (n >= k->size) {
			errf(err, errlen, "%s: value too long (%zu bytes, at most %zu)", k->key, n, k->size - 1);
			return -1;
		}
		if (n == 0 && k->min) {
			errf(err, errlen, "%s: must not be empty", k->key);
			return -1;
		}
		if (k->type == T_NAME && !name_ok(val)) {
			errf(err, errlen, "%s: '%s' has a space or one of @ / < > & ' \"", k->key, val);
			return -1;
		}
		memcpy(field, val, n + 1);
		return 0;
	}
	case T_UINT:
	case T_PORT:
	case T_PID:
		if (parse_ulong(val, &u) < 0) {
			errf(err, errlen, "%s: '%s' is not a whole number", k->key, val);
			return -1;
		}
		if (u < k->min || u > k->max) {
			errf(err, errlen, "%s: %lu is out of range %lu..%lu", k->key, u, k->min, k->max);
			return -1;
		}
		if (k->type == T_UINT)
			*(unsigned *)(void *)field = (unsigned)u;
		else if (k->type == T_PORT)
			*(uint16_t *)(void *)field = (uint16_t)u;
		else
			*(pid_t *)(void *)field = (pid_t)u;
		return 0;
	case T_DOUBLE: {
		char *end;
		errno = 0;
		double d = strtod(val, &end);
		while (isspace((unsigned char)*end))
			end++;
		if (end == val || *end != '\0' || errno || !isfinite(d)) {
			errf(err, errlen, "%s: '%s' is not a number", k->key, val);
			return -1;
		}
		if (d < k->dmin || (k->dmin_open && d == k->dmin) || d > k->dmax) {
			errf(err, errlen, "%s: %g is out of range %s%g..%g", k->key, d,
			     k->dmin_open ? "above " : "", k->dmin, k->dmax);
			return -1;
		}
		*(double *)(void *)field = d;
		return 0;
	}
	case T_ENUM: {
		for (int i = 0; k->names[i]; i++) {
			if (strcasecmp(val, k->names[i]) == 0) {
				*(int *)(void *)field = i + k->first;
				return 0;
			}
		}
		char list[160] = "";
		for (int i = 0; k->names[i]; i++) {
			if (i)
				strncat(list, "|", sizeof(list) - strlen(list) - 1);
			strncat(list, k->names[i], sizeof(list) - strlen(list) - 1);
		}
		errf(err, errlen, "%s: '%s' is not one of %s", k->key, val, list);
		return -1;
	}
	case T_BOOL:
		if (!strcasecmp(val, "true") || !strcasecmp(val, "yes") || !strcmp(val, "1") || !strcasecmp(val, "on")) {
			*(bool *)(void *)field = true;
			return 0;
		}
		if (!strcasecmp(val, "false") || !strcasecmp(val, "no") || !strcmp(val, "0") || !strcasecmp(val, "off")) {
			*(bool *)(void *)field = false;
			return 0;
		}
		errf(err, errlen, "%s: '%s' is not true or false", k->key, val);
		return -1;
	}
	return -1;
}

int bench_opts_set(struct bench_opts *o, const char *key, const char *value, char *err, size_t errlen)
{
	const struct opt_key *k = key_find(key, strlen(key));

	if (!k) {
		errf(err, errlen, "%s: unknown key", key);
		return -1;
	}
	return set_key(o, k, value, err, errlen);
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	char *e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int bench_opts_parse_file(struct bench_opts *o, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	unsigned lineno = 0;
	char sub[256];

	if (!f) {
		errf(err, errlen, "file: %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		size_t n = strlen(line);
		if (n == sizeof(line) - 1 && line[n - 1] != '\n' && !feof(f)) {
			errf(err, errlen, "%s:%u: line longer than %zu bytes", path, lineno, sizeof(line) - 2);
			goto fail;
		}
		/* A comment starts at a '#' at the start of the line or after
		 * white space, outside double quotes. */
		bool quoted = false;
		for (char *p = line; *p; p++) {
			if (*p == '"')
				quoted = !quoted;
			else if (*p == '#' && !quoted && (p == line || isspace((unsigned char)p[-1]))) {
				*p = '\0';
				break;
			}
		}
		char *s = trim(line);
		if (*s == '\0')
			continue;
		char *eq = strchr(s, '=');
		char *key = s, *val;
		if (eq) {
			*eq = '\0';
			key = trim(s);
			val = trim(eq + 1);
		} else {
			val = NULL;
		}
		if (*key == '\0') {
			errf(err, errlen, "%s:%u: a line 'key = value' without a key", path, lineno);
			goto fail;
		}
		const struct opt_key *k = key_find(key, strlen(key));
		if (!k) {
			if (key_eq("file", key, strlen(key)))
				errf(err, errlen, "%s:%u: file: a scenario file cannot include another", path, lineno);
			else
				errf(err, errlen, "%s:%u: %s: unknown key", path, lineno, key);
			goto fail;
		}
		if (!val) {
			if (k->type != T_BOOL) {
				errf(err, errlen, "%s:%u: %s: expected '%s = value'", path, lineno, k->key, k->key);
				goto fail;
			}
			val = "true";                      /* a bare "quiet" line */
		}
		size_t vl = strlen(val);
		if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
			val[vl - 1] = '\0';
			val++;
		}
		if (set_key(o, k, val, sub, sizeof(sub)) < 0) {
			errf(err, errlen, "%s:%u: %s", path, lineno, sub);
			goto fail;
		}
	}
	if (ferror(f)) {
		errf(err, errlen, "file: %s: read error", path);
		goto fail;
	}
	fclose(f);
	return 0;
fail:
	fclose(f);
	return -1;
}

int bench_opts_check(struct bench_opts *o, char *err, size_t errlen)
{
	if (o->provision >= PROV_STANZACTL && o->provision_cmd[0] == '\0')
		snprintf(o->provision_cmd, sizeof(o->provision_cmd), "%s", bench_provision_name(o->provision));
	if ((o->scenario == SC_PAIRS || o->scenario == SC_RAW) && o->users && o->users < 2 * o->pairs) {
		errf(err, errlen, "users: %u is fewer than 2 * pairs (%u)", o->users, 2 * o->pairs);
		return -1;
	}
	if (o->transport == TRANSPORT_DPDK) {
		if (!o->dpdk_port[0]) {
			errf(err, errlen, "dpdk_port: transport dpdk needs a port (e.g. net_memif0,role=client,socket=/run/x.sock)");
			return -1;
		}
		if (!o->dpdk_address[0]) {
			errf(err, errlen, "dpdk_address: transport dpdk needs an address (e.g. 198.18.0.2/15)");
			return -1;
		}
		if (o->provision == PROV_IBR) {
			errf(err, errlen, "provision: ibr runs over kernel sockets; with transport dpdk use stanzactl");
			return -1;
		}
	}
	return 0;
}

int bench_opts_parse_args(struct bench_opts *o, int argc, char **argv, char *err, size_t errlen)
{
	char sub[512];

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			if (err && errlen)
				err[0] = '\0';
			return 1;
		}
		if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
			errf(err, errlen, "%s: unexpected argument (flags are --key value)", a);
			return -1;
		}
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const char *val = eq ? eq + 1 : NULL;

		if (key_eq("file", name, nlen)) {
			if (!val) {
				if (i + 1 >= argc) {
					errf(err, errlen, "file: missing value after --file");
					return -1;
				}
				val = argv[++i];
			}
			if (bench_opts_parse_file(o, val, err, errlen) < 0)
				return -1;
			continue;
		}
		const struct opt_key *k = key_find(name, nlen);
		if (!k) {
			errf(err, errlen, "%.*s: unknown key (flag %s)", (int)nlen, name, a);
			return -1;
		}
		if (!val) {
			if (k->type == T_BOOL) {
				val = "true";
			} else if (i + 1 >= argc) {
				errf(err, errlen, "%s: missing value after --%.*s", k->key, (int)nlen, name);
				return -1;
			} else {
				val = argv[++i];
			}
		}
		if (set_key(o, k, val, sub, sizeof(sub)) < 0) {
			errf(err, errlen, "%s", sub);
			return -1;
		}
	}
	return bench_opts_check(o, err, errlen);
}

const char *bench_opts_key(unsigned i)
{
	return i < NKEYS ? keys[i].key : NULL;
}

enum bench_opt_kind bench_opts_value(const struct bench_opts *o, unsigned i, char *buf, size_t len)
{
	const struct opt_key *k;
	const char *field;

	if (i >= NKEYS) {
		if (len)
			buf[0] = '\0';
		return OPT_KIND_NONE;
	}
	k = &keys[i];
	field = (const char *)o + k->off;
	switch (k->type) {
	case T_STR:
	case T_NAME:
		snprintf(buf, len, "%s", field);
		return OPT_KIND_STRING;
	case T_UINT:
		snprintf(buf, len, "%u", *(const unsigned *)(const void *)field);
		return OPT_KIND_NUMBER;
	case T_PORT:
		snprintf(buf, len, "%u", (unsigned)*(const uint16_t *)(const void *)field);
		return OPT_KIND_NUMBER;
	case T_PID:
		snprintf(buf, len, "%ld", (long)*(const pid_t *)(const void *)field);
		return OPT_KIND_NUMBER;
	case T_DOUBLE:
		snprintf(buf, len, "%.17g", *(const double *)(const void *)field);
		return OPT_KIND_NUMBER;
	case T_ENUM:
		snprintf(buf, len, "%s", enum_name(k->names, k->first, *(const int *)(const void *)field));
		return OPT_KIND_STRING;
	case T_BOOL:
		snprintf(buf, len, "%s", *(const bool *)(const void *)field ? "true" : "false");
		return OPT_KIND_BOOL;
	}
	return OPT_KIND_NONE;
}

void bench_opts_usage(FILE *f, const char *argv0)
{
	fprintf(f,
	        "usage: %s [--file SCENARIO_FILE] [--key value]...\n"
	        "  --scenario pairs|fanout|login|idle|mixed|raw   (pairs)\n"
	        "  --host H (127.0.0.1)  --port P (5222)  --domain D (localhost)\n"
	        "  --tls none|starttls|direct (starttls)  --mech plain|scram-sha-1|scram-sha-256 (scram-sha-256)\n"
	        "  --user-prefix P (bench)  --password S (bench-pass)  --users N (0: as the scenario needs)\n"
	        "  --pairs N (100)  --window N (16)  --body BYTES (100)  --contacts N (20)\n"
	        "  --logins N (1000)  --inflight N (64)  --sessions N (1000)  --rate R (0.1)\n"
	        "  --msg-rate R (0: closed loop; pairs: open loop at R messages/s in all)\n"
	        "  --duration S (10)  --warmup S (2)  --threads N (0: online CPUs)  --connect-rate N (0: no limit)\n"
	        "  --provision none|ibr|stanzactl|prosodyctl|ejabberdctl (none)  --provision-cmd \"CMD ARGS\"\n"
	        "  --server-pid PID  --label NAME  --json FILE  --series FILE  --quiet\n"
	        "  --transport kernel|dpdk (kernel)  --eal \"EAL ARGS\" (--no-huge -m 512 --no-pci)\n"
	        "  --dpdk-port DEVARGS  --dpdk-address A.B.C.D/LEN  --dpdk-idle-sleep-us US (100)\n"
	        "A scenario file has the same keys, one 'key = value' a line, # comments;\n"
	        "flags after --file override it. See bench/README.md.\n",
	        argv0 ? argv0 : "stanza-bench");
}
