/* What one stanza-bench run does: parsed from flags or a scenario file
 * (same keys: a flag --key value is the file line key = value). */
#ifndef STANZA_BENCH_OPTS_H
#define STANZA_BENCH_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

enum bench_scenario {
	SC_PAIRS = 1,   /* 1:1 chat messages between paired accounts, `window` outstanding per pair */
	SC_FANOUT,      /* presence changes broadcast to rosters of `contacts` contacts */
	SC_LOGIN,       /* a login storm: `logins` logins, `inflight` at once */
	SC_IDLE,        /* `sessions` sessions held for `duration`: memory per session */
	SC_MIXED,       /* roster, presence and messages at `rate` stanzas/s per user (ProcessOne RTB-like) */
	SC_RAW,         /* pairs over the speed-of-light forwarder: the same bytes, no XMPP */
};

enum bench_tls { TLS_NONE = 0, TLS_STARTTLS, TLS_DIRECT };
enum bench_mech { MECH_PLAIN = 1, MECH_SCRAM_SHA_1, MECH_SCRAM_SHA_256 };
enum bench_provision { PROV_NONE = 0, PROV_IBR, PROV_STANZACTL, PROV_PROSODYCTL, PROV_EJABBERDCTL };
enum bench_transport { TRANSPORT_KERNEL = 0, TRANSPORT_DPDK };

struct bench_opts {
	enum bench_scenario scenario;
	char host[256];            /* "127.0.0.1" */
	uint16_t port;             /* 5222 */
	char domain[256];          /* XMPP domain: "localhost" */
	enum bench_tls tls;
	enum bench_mech mech;
	char user_prefix[64];      /* accounts user_prefix0..N-1@domain */
	char password[128];
	unsigned users;            /* accounts; 0: as many as the scenario needs (pairs: 2 * pairs) */
	unsigned pairs;            /* pairs */
	unsigned window;           /* pairs: messages in flight per pair direction */
	unsigned body;             /* pairs/mixed: body bytes */
	unsigned contacts;         /* fanout: roster size */
	unsigned logins;           /* login: total logins */
	unsigned inflight;         /* login: concurrent logins */
	unsigned sessions;         /* idle */
	double rate;               /* mixed: stanzas/s per user */
	double msg_rate;           /* pairs: open loop, messages/s in all (0: closed loop with `window`);
				    * window then caps what may be in flight per direction */
	double duration;           /* seconds of measurement (after ramp-up) */
	double warmup;             /* seconds before measuring */
	unsigned threads;          /* load threads; 0: online CPUs */
	unsigned connect_rate;     /* connections/s while ramping up; 0: no limit */
	enum bench_provision provision;
	char provision_cmd[512];   /* path of stanzactl / prosodyctl / ejabberdctl and its fixed args */
	pid_t server_pid;          /* 0: not sampled */
	char label[64];            /* the target's name in reports ("stanzad", "prosody", ...); "" by default */
	char json_path[512];       /* "" : no JSON */
	char series_path[512];     /* "" : no per-second series file (for plots) */
	bool quiet;                /* no per-second line */
	/* The client side's transport (net/net.h): kernel sockets, or the
	 * userspace TCP stack on a DPDK port (net/dpdk/dpdk.h), which needs
	 * root, a port and an address. */
	enum bench_transport transport;
	char eal[1024];            /* dpdk: EAL arguments, blank-separated */
	char dpdk_port[256];       /* dpdk: the port, a name or devargs ("net_memif0,role=client,socket=...") */
	char dpdk_address[32];     /* dpdk: our IPv4 address/prefix, "198.18.0.2/15" */
	unsigned dpdk_idle_sleep_us;   /* dpdk: longest nap of an idle thread; 0: spin */
};

/* Defaults, then flags (argv) and/or a scenario file (path). Returns 0, or
 * -1 with a message in err naming the offending key.
 * parse_args skips argv[0]; flags are "--key value", "--key=value" or, for
 * quiet, "--quiet"; "--file PATH" reads a scenario file at that point, so
 * later flags override it and earlier ones are overridden by it. It ends
 * with bench_opts_check. -h/--help: returns 1 with err "" (print
 * bench_opts_usage). */
void bench_opts_default(struct bench_opts *o);
int bench_opts_parse_args(struct bench_opts *o, int argc, char **argv, char *err, size_t errlen);
int bench_opts_parse_file(struct bench_opts *o, const char *path, char *err, size_t errlen);
const char *bench_scenario_name(enum bench_scenario s);

/* One key (file spelling "window", "provision_cmd"; '-' and '_' are the
 * same) from its text: 0, or -1 with err naming the key. */
int bench_opts_set(struct bench_opts *o, const char *key, const char *value, char *err, size_t errlen);
/* Checks across keys, after all of them are set: 0 or -1 with err. Fills
 * provision_cmd with the tool's bare name (found on PATH) when it is empty
 * and provision is stanzactl, prosodyctl or ejabberdctl. */
int bench_opts_check(struct bench_opts *o, char *err, size_t errlen);
void bench_opts_usage(FILE *f, const char *argv0);

const char *bench_tls_name(enum bench_tls t);                /* "none", "starttls", "direct" */
const char *bench_mech_name(enum bench_mech m);              /* "plain", "scram-sha-1", "scram-sha-256" */
const char *bench_provision_name(enum bench_provision p);    /* "none", "ibr", "stanzactl", ... */
const char *bench_transport_name(enum bench_transport t);    /* "kernel", "dpdk" */

/* Every option in table order, for echoing them (the JSON report's "opts"):
 * bench_opts_key(i) is NULL past the last; bench_opts_value writes the
 * value of key i as text (enums by name) and says how to quote it. */
enum bench_opt_kind { OPT_KIND_NONE = 0, OPT_KIND_STRING, OPT_KIND_NUMBER, OPT_KIND_BOOL };
const char *bench_opts_key(unsigned i);
enum bench_opt_kind bench_opts_value(const struct bench_opts *o, unsigned i, char *buf, size_t len);

#endif
