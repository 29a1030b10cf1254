/* The load engine: threads, one net loop each (net/net.h: the kernel
 * backend, epoll over sockets, by default; with transport = dpdk the
 * userspace TCP stack on a DPDK port, one queue pair per thread), the
 * run's phases and the per-second collection of counters and latency.
 *
 * Every connection belongs to one thread for its whole life (struct xc in
 * xclient.h); so does the scenario state it touches, so the data path takes
 * no lock. The main thread only moves the phase forward and, once a second,
 * asks each thread to publish what it measured (a mutex held for a hist
 * merge once a second per thread, never on the data path).
 *
 * Output is batched: protocol code appends to a connection's buffer and
 * marks it dirty; the loop writes each dirty connection once per
 * iteration, after all events of the iteration were handled.
 */
#ifndef STANZA_BENCH_ENGINE_H
#define STANZA_BENCH_ENGINE_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include "bench/harness/hist.h"
#include "bench/harness/opts.h"
#include "bench/harness/report.h"
#include "net/net-t.h"
#include "parser/xml-t.h"

struct xc;
struct eng_thread;
struct engine;

enum eng_phase {
	PH_RAMP = 0,    /* connections being opened */
	PH_WARMUP,      /* load runs, nothing counted */
	PH_MEASURE,     /* load runs, counted */
	PH_DRAIN,       /* no new load; waiting for what is in flight */
	PH_DONE,        /* threads leave their loops */
};

/* What a scenario plugs into the engine. Every callback but setup and
 * finish runs on the thread that owns the connection or thread named. */
struct scenario {
	const char *name;
	/* Main thread, before the threads start: validate options, size
	 * users. Returns 0 or -1 (message printed). */
	int (*setup)(struct engine *e);
	/* Each thread once, at start: create its connections (xc_new). */
	void (*thread_start)(struct eng_thread *t);
	/* The session is bound (or, raw: paired); send initial stanzas. */
	void (*on_ready)(struct xc *c);
	/* One top-level stanza after on_ready; bytes valid for the call only. */
	void (*on_stanza)(struct xc *c, const char *p, size_t n);
	/* The connection ended (err: an enum bench_err, or -1 for a close we
	 * asked for). The xc is freed after this returns. */
	void (*on_close)(struct xc *c, int err);
	/* Every loop iteration (at least every few ms). */
	void (*on_tick)(struct eng_thread *t, uint64_t now);
	/* Main thread, after the threads ended: totals into r. */
	void (*finish)(struct engine *e, struct bench_result *r);
	/* How many sessions must be up before warm-up starts (0: none, the
	 * scenario measures from the start, as login does). */
	uint64_t (*expected)(const struct engine *e);
	/* Sessions must also have settled (eng_count(&t->settled, 1) once
	 * each: fanout's subscriptions all approved) before warm-up starts;
	 * false: being up is enough. */
	bool wait_settled;
};

struct eng_thread {
	struct engine *eng;
	unsigned id;
	pthread_t th;
	struct net_loop *loop;      /* this thread's; every connection of the thread is on it */

	struct xc **conns;          /* every live connection of this thread */
	uint32_t nconns, capconns;
	struct xc *dirty;           /* connections with output to write, linked by xc.dirty_next */
	struct xc *dead;            /* closed this iteration, freed at its end (xc.dead_next) */
	uint32_t conn_seq;          /* connections opened (source address spreading) */

	char *cin;                  /* scratch: bytes read from a socket */
	char *plain;                /* scratch: plaintext out of TLS */
	struct xml_view view;       /* handshake stanzas are checked with it */
	struct xml_token *vtok;
	struct xml_ns vns[2 + XML_NSCTX_MAX + XML_DEFAULT_MAX_NS];
	uint16_t vscope[2 + XML_NSCTX_MAX + XML_DEFAULT_MAX_NS];

	/* connect ramp: a token bucket of connect_rate / threads */
	double tokens;
	uint64_t tokens_t;
	uint64_t next_sweep;

	/* measurement: cur is this thread's, pub is handed over under mu */
	struct hist cur;
	struct hist total;
	pthread_mutex_t mu;
	struct hist pub;
	_Atomic uint64_t epoch_seen;

	_Atomic uint64_t sent, recv, logins, ready, failed, settled;
	_Atomic uint64_t errors[ERR_KINDS];

	uint64_t rng;
	void *sc;                   /* the scenario's per-thread state */
};

struct engine {
	const struct bench_opts *o;
	const struct scenario *sc;
	unsigned nthreads;          /* threads that run (a scenario's setup may lower it) */
	unsigned nalloc;            /* thread structs allocated */
	struct eng_thread *th;
	const struct net_ops *net;  /* the transport's backend */
	bool dpdk_up;               /* net_dpdk_init done: net_dpdk_fini at the end */
	struct net_addr to;         /* the server */
	bool loopback;              /* spread source addresses over 127.0.0.0/8 (kernel transport) */
	struct tls_client *tls_cl;  /* NULL without TLS */

	_Atomic int phase;
	_Atomic uint64_t epoch;
	_Atomic uint64_t t_meas0;   /* monotonic ns: start of measurement (UINT64_MAX before) */
	_Atomic uint64_t t_meas1;   /* end of measurement (UINT64_MAX before) */

	/* SCRAM: SaltedPassword per user index (see xclient.c) */
	struct scram_cache *scache;
	uint32_t nscache;

	void *sc_global;            /* scenario's shared state */
	_Atomic unsigned threads_done;  /* scenario: threads whose share of the work is done */
};

#define NS_PER_S 1000000000ull

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static inline void eng_err(struct eng_thread *t, enum bench_err k)
{
	atomic_fetch_add_explicit(&t->errors[k], 1, memory_order_relaxed);
}

static inline void eng_count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

static inline int eng_phase(const struct engine *e)
{
	return atomic_load_explicit(&e->phase, memory_order_relaxed);
}

/* Is a stanza stamped at ts inside the measurement window? */
static inline bool eng_measured(const struct engine *e, uint64_t ts)
{
	return ts >= atomic_load_explicit(&e->t_meas0, memory_order_relaxed) &&
	       ts < atomic_load_explicit(&e->t_meas1, memory_order_relaxed);
}

/* A latency sample of this thread (counted only inside the window). */
static inline void eng_latency(struct eng_thread *t, uint64_t ts, uint64_t now)
{
	hist_record(&t->cur, now > ts ? now - ts : 1);
}

/* xorshift64*: scenario randomness, per thread. */
static inline uint64_t eng_rand(struct eng_thread *t)
{
	uint64_t x = t->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	t->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* Take one connect token (ramp-up); false: not yet. */
bool eng_connect_token(struct eng_thread *t, uint64_t now);

/* Register and unregister a connection with its thread. */
int eng_add(struct eng_thread *t, struct xc *c);
void eng_remove(struct eng_thread *t, struct xc *c);

/* Queue c for the end-of-iteration write. */
void eng_dirty(struct eng_thread *t, struct xc *c);

/* Run the whole thing: threads, phases, ticks; fills r (not the
 * scenario's finish, which the engine calls). Returns 0 or -1. */
int engine_run(struct engine *e, struct bench_result *r);
int engine_init(struct engine *e, const struct bench_opts *o, const struct scenario *sc, char *err, size_t errlen);
void engine_free(struct engine *e);

const struct scenario *scenario_get(enum bench_scenario s);

/* provision.c: create accounts 0..users-1 as o->provision says (the admin
 * tool run with bounded parallelism, or in-band registration). Returns 0,
 * or -1 when some could not be created (counts printed). */
int provision_accounts(const struct bench_opts *o, unsigned users);

#endif
