/* Results of a run and how they are printed. The per-second line while
 * running, the final text report and the JSON report all come from here,
 * so every scenario reports the same way. */
#ifndef STANZA_BENCH_REPORT_H
#define STANZA_BENCH_REPORT_H

#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include "bench/harness/hist.h"
#include "bench/harness/opts.h"

/* CPU time and memory of a process from /proc (pid 0: this process). */
struct proc_sample {
	uint64_t t_ns;         /* CLOCK_MONOTONIC when sampled */
	uint64_t cpu_ns;       /* utime + stime */
	uint64_t rss_kib;      /* VmRSS */
};
int proc_sample(pid_t pid, struct proc_sample *out);                 /* 0 or -1 */
double proc_cores(const struct proc_sample *a, const struct proc_sample *b);  /* CPU cores used between a and b */

enum bench_err {
	ERR_CONNECT = 0,       /* TCP connect failed */
	ERR_TLS,               /* handshake failed */
	ERR_AUTH,              /* SASL failure */
	ERR_BIND,
	ERR_STREAM,            /* a stream error from the server */
	ERR_STANZA,            /* a stanza error reply */
	ERR_TIMEOUT,           /* a step took too long */
	ERR_CLOSED,            /* the server closed the connection */
	ERR_LOST,              /* a message sent and never received by the end */
	ERR_KINDS,
};
const char *bench_err_name(enum bench_err e);

/* One second of the run. */
struct bench_tick {
	double t;              /* seconds since measurement start */
	uint64_t sent, recv;   /* stanzas in that second */
	uint64_t errors;
	uint64_t p50_ns, p99_ns;
	double server_cores, self_cores;
	uint64_t server_rss_kib;
};

struct bench_result {
	const struct bench_opts *opts;
	double seconds;                /* measured duration */
	uint64_t sent, recv;           /* stanzas during measurement */
	uint64_t logins;               /* login scenario: completed logins */
	uint64_t sessions;             /* idle: sessions held */
	uint64_t errors[ERR_KINDS];
	struct hist lat;               /* delivery latency (pairs, fanout, mixed) or login time (login) */
	struct proc_sample srv0, srv1; /* server at start and end of measurement (pid given) */
	struct proc_sample self0, self1;
	uint64_t server_rss_idle_kib;  /* idle: server RSS before the sessions were opened */
	struct bench_tick *ticks;      /* per second, ntick of them */
	unsigned ntick;
	bool generator_bound;          /* the load generator used nearly all its CPU: the figures measure it, not the server */
	uint64_t late;                 /* open loop: messages that left more than 1 ms after they were due */
};

/* The per-second line:
 * "t=3s sent=123456/s recv=123400/s p50=0.210ms p99=0.800ms err=0 srv=1.62c rss=48.2MiB gen=0.910c"
 * (srv=- rss=- without --server-pid; numbers with 3 significant digits). */
void report_tick(FILE *f, const struct bench_result *r, const struct bench_tick *t);
/* Final report: throughput, latency p50/p90/p99/p99.9/max, errors by kind,
 * server CPU and RSS, own CPU, the generator-bound warning. */
void report_text(FILE *f, const struct bench_result *r);
/* The same as one JSON object (schema in bench/README.md). path "-" is
 * stdout. 0, or -1 with errno. */
int report_json(const char *path, const struct bench_result *r);
/* Per-second series as whitespace-separated columns for gnuplot:
 * t sent recv p50_ms p99_ms server_cores self_cores server_rss_kib,
 * after two '#' comment lines. path "-" is stdout. 0, or -1 with errno. */
int report_series(const char *path, const struct bench_result *r);

#endif
