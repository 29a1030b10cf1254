/* The load engine (see engine.h): one net loop per thread, phases driven
 * by the main thread, one publication of counters and latency per second. */
#include "bench/harness/engine.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/harness/xclient.h"
#include "net/dpdk/dpdk.h"
#include "net/net.h"
#include "parser/xml.h"
#include "tls/tls.h"

#define SWEEP_NS     (100ull * 1000000ull)   /* step timeouts checked 10 times a second */
#define MAX_EVENTS   512

/* ---- per-thread bookkeeping ------------------------------------------- */

int eng_add(struct eng_thread *t, struct xc *c)
{
	if (t->nconns == t->capconns) {
		uint32_t cap = t->capconns ? t->capconns * 2 : 1024;
		struct xc **p = realloc(t->conns, cap * sizeof(*p));
		if (!p)
			return -1;
		t->conns = p;
		t->capconns = cap;
	}
	c->slot = t->nconns;
	t->conns[t->nconns++] = c;
	return 0;
}

void eng_remove(struct eng_thread *t, struct xc *c)
{
	uint32_t i = c->slot;
	if (i >= t->nconns || t->conns[i] != c)
		return;
	struct xc *last = t->conns[--t->nconns];
	t->conns[i] = last;
	last->slot = i;
}

void eng_dirty(struct eng_thread *t, struct xc *c)
{
	if (c->in_dirty)
		return;
	c->in_dirty = 1;
	c->dirty_next = t->dirty;
	t->dirty = c;
}

bool eng_connect_token(struct eng_thread *t, uint64_t now)
{
	unsigned rate = t->eng->o->connect_rate;
	if (!rate)
		return true;
	double per = (double)rate / t->eng->nthreads;
	if (t->tokens_t == 0)
		t->tokens_t = now;
	t->tokens += (double)(now - t->tokens_t) * per / 1e9;
	t->tokens_t = now;
	double burst = per / 20 > 1 ? per / 20 : 1;   /* 50 ms worth */
	if (t->tokens > burst)
		t->tokens = burst;
	if (t->tokens < 1)
		return false;
	t->tokens -= 1;
	return true;
}

static void publish(struct eng_thread *t, uint64_t epoch)
{
	pthread_mutex_lock(&t->mu);
	hist_merge(&t->pub, &t->cur);
	pthread_mutex_unlock(&t->mu);
	hist_merge(&t->total, &t->cur);
	hist_init(&t->cur);
	atomic_store_explicit(&t->epoch_seen, epoch, memory_order_release);
}

static void sweep(struct eng_thread *t, uint64_t now)
{
	for (uint32_t i = t->nconns; i-- > 0;) {
		if (i >= t->nconns)
			continue;
		struct xc *c = t->conns[i];
		if (c->deadline && now > c->deadline)
			xc_close(c, ERR_TIMEOUT);
	}
}

static void *thread_main(void *arg)
{
	struct eng_thread *t = arg;
	struct engine *e = t->eng;
	struct net_event evs[MAX_EVENTS];

	if (e->sc->thread_start)
		e->sc->thread_start(t);
	while (eng_phase(e) != PH_DONE) {
		/* Open loop: messages leave at their scheduled times, so the
		 * thread polls instead of sleeping (a 2 ms sleep would show as
		 * 2 ms of latency). */
		int n = net_poll(t->loop, evs, MAX_EVENTS, e->o->msg_rate > 0 ? 0 : 2);
		for (int i = 0; i < n; i++) {
			struct xc *c = evs[i].udata;
			/* a connection closed by an earlier event of this batch
			 * has its events turned into NONE by net_close */
			if (evs[i].type == NET_EV_NONE || evs[i].type == NET_EV_WAKE || evs[i].type == NET_EV_ACCEPTED)
				continue;
			if (c->state != XC_DEAD)
				xc_on_event(c, evs[i].type);
		}
		uint64_t now = now_ns();
		if (e->sc->on_tick)
			e->sc->on_tick(t, now);
		if (now >= t->next_sweep) {
			sweep(t, now);
			t->next_sweep = now + SWEEP_NS;
		}
		while (t->dirty) {
			struct xc *c = t->dirty;
			t->dirty = c->dirty_next;
			c->in_dirty = 0;
			if (c->state != XC_DEAD)
				xc_flush(c);
		}
		while (t->dead) {
			struct xc *c = t->dead;
			t->dead = c->dead_next;
			xc_free(c);
		}
		uint64_t ep = atomic_load_explicit(&e->epoch, memory_order_acquire);
		if (ep != atomic_load_explicit(&t->epoch_seen, memory_order_relaxed))
			publish(t, ep);
	}
	publish(t, atomic_load_explicit(&e->epoch, memory_order_acquire));
	/* The run is over: connections go without a word (and uncounted). */
	while (t->nconns) {
		struct xc *c = t->conns[t->nconns - 1];
		t->nconns--;
		c->state = XC_DEAD;
		if (c->open)
			net_close(t->loop, c->conn);
		c->open = 0;
		xc_free(c);
	}
	while (t->dead) {
		struct xc *c = t->dead;
		t->dead = c->dead_next;
		xc_free(c);
	}
	return NULL;
}

/* ---- setup ------------------------------------------------------------- */

int engine_init(struct engine *e, const struct bench_opts *o, const struct scenario *sc, char *err, size_t errlen)
{
	memset(e, 0, sizeof(*e));
	e->o = o;
	e->sc = sc;
	e->nthreads = o->threads ? o->threads : (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	if (e->nthreads == 0)
		e->nthreads = 1;
	e->to.family = NET_AF_INET;
	e->to.port = o->port;
	if (inet_pton(AF_INET, o->host, e->to.addr) != 1) {
		snprintf(err, errlen, "host: '%s' is not an IPv4 address", o->host);
		return -1;
	}
	e->net = net_backend(bench_transport_name(o->transport));
	if (!e->net) {
		snprintf(err, errlen, "transport: \"%s\" is not in this build (DPDK: install libdpdk-dev and rebuild)",
			 bench_transport_name(o->transport));
		return -1;
	}
	e->loopback = o->transport == TRANSPORT_KERNEL && e->to.addr[0] == 127;
	atomic_store(&e->t_meas0, UINT64_MAX);
	atomic_store(&e->t_meas1, UINT64_MAX);
	if (o->tls != TLS_NONE && o->scenario != SC_RAW) {
		static const char *const alpn[] = { "xmpp-client" };
		struct tls_client_conf tc = { .no_verify = true };
		if (o->tls == TLS_DIRECT) {
			tc.alpn = alpn;
			tc.nalpn = 1;
		}
		e->tls_cl = tls_client_new(&tc, err, errlen);
		if (!e->tls_cl)
			return -1;
	}
	e->nalloc = e->nthreads;
	e->th = calloc(e->nthreads, sizeof(*e->th));
	if (!e->th) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	struct xml_limits lim;
	xml_limits_default(&lim);
	uint32_t ntok = xml_view_storage_tokens(&lim);
	for (unsigned i = 0; i < e->nthreads; i++) {
		struct eng_thread *t = &e->th[i];
		t->eng = e;
		t->id = i;
		t->cin = malloc(65536);
		t->plain = malloc(65536);
		t->vtok = malloc(ntok * sizeof(*t->vtok));
		if (!t->cin || !t->plain || !t->vtok) {
			snprintf(err, errlen, "thread setup: %s", strerror(errno));
			return -1;
		}
		uint16_t nns = (uint16_t)(sizeof(t->vns) / sizeof(t->vns[0]));
		xml_view_init(&t->view, &lim, t->vtok, ntok, t->vns, nns, t->vscope, nns);
		hist_init(&t->cur);
		hist_init(&t->total);
		hist_init(&t->pub);
		pthread_mutex_init(&t->mu, NULL);
		t->rng = 0x9E3779B97F4A7C15ull * (i + 1) ^ now_ns();
		if (!t->rng)
			t->rng = 1;
	}
	return 0;
}

void engine_free(struct engine *e)
{
	if (e->th) {
		for (unsigned i = 0; i < e->nalloc; i++) {
			struct eng_thread *t = &e->th[i];
			net_loop_free(t->loop);
			free(t->cin);
			free(t->plain);
			free(t->vtok);
			free(t->conns);
			free(t->sc);
			pthread_mutex_destroy(&t->mu);
		}
		free(e->th);
	}
	free(e->scache);
	free(e->sc_global);
	if (e->tls_cl)
		tls_client_free(e->tls_cl);
	if (e->dpdk_up)
		net_dpdk_fini();
	memset(e, 0, sizeof(*e));
}

/* ---- the run --------------------------------------------------------- */

static uint64_t sum(struct engine *e, size_t field_off)
{
	uint64_t s = 0;
	for (unsigned i = 0; i < e->nthreads; i++)
		s += atomic_load_explicit((_Atomic uint64_t *)((char *)&e->th[i] + field_off), memory_order_relaxed);
	return s;
}
#define SUM(e, f) sum((e), offsetof(struct eng_thread, f))

static uint64_t sum_errors(struct engine *e)
{
	uint64_t s = 0;
	for (unsigned i = 0; i < e->nthreads; i++)
		for (unsigned k = 0; k < ERR_KINDS; k++)
			s += atomic_load_explicit(&e->th[i].errors[k], memory_order_relaxed);
	return s;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / NS_PER_S), (long)(ns % NS_PER_S) };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Ask every thread to publish its latency of the last second; merge. */
static void collect(struct engine *e, struct hist *h)
{
	uint64_t ep = atomic_fetch_add(&e->epoch, 1) + 1;
	uint64_t until = now_ns() + 200ull * 1000000ull;
	for (unsigned i = 0; i < e->nthreads; i++)
		while (atomic_load_explicit(&e->th[i].epoch_seen, memory_order_acquire) != ep && now_ns() < until)
			sleep_ns(200000);
	for (unsigned i = 0; i < e->nthreads; i++) {
		struct eng_thread *t = &e->th[i];
		pthread_mutex_lock(&t->mu);
		hist_merge(h, &t->pub);
		hist_init(&t->pub);
		pthread_mutex_unlock(&t->mu);
	}
}

static bool push_tick(struct bench_result *r, const struct bench_tick *tk)
{
	if ((r->ntick & (r->ntick - 1)) == 0) {
		unsigned cap = r->ntick ? r->ntick * 2 : 16;
		struct bench_tick *p = realloc(r->ticks, cap * sizeof(*p));
		if (!p)
			return false;
		r->ticks = p;
	}
	r->ticks[r->ntick++] = *tk;
	return true;
}

/* "198.18.0.2/15" into conf->ip and conf->prefix. */
static int parse_cidr(const char *s, struct net_dpdk_conf *conf)
{
	char ip[32], *slash, *end;
	unsigned long pfx = 32;

	if (strlen(s) >= sizeof(ip))
		return -1;
	strcpy(ip, s);
	slash = strchr(ip, '/');
	if (slash) {
		*slash = '\0';
		pfx = strtoul(slash + 1, &end, 10);
		if (*end || end == slash + 1 || pfx < 1 || pfx > 32)
			return -1;
	}
	if (inet_pton(AF_INET, ip, conf->ip) != 1)
		return -1;
	conf->prefix = (uint8_t)pfx;
	return 0;
}

/* The transport, once the thread count is final (a scenario's setup may
 * lower it): DPDK's EAL and port with a queue pair per thread, then a loop
 * per thread. */
static int net_start(struct engine *e)
{
	const struct bench_opts *o = e->o;
	char err[1024];

	if (o->transport == TRANSPORT_DPDK) {
		static struct net_dpdk_conf conf;   /* 1.4 KiB: not for the stack */
		memset(&conf, 0, sizeof(conf));
		/* Two DPDK processes on one host (stanzad and this) need
		 * runtime directories of their own. */
		int n = snprintf(conf.eal, sizeof(conf.eal), "%s", o->eal);
		if (!strstr(o->eal, "--file-prefix") &&
		    snprintf(conf.eal + n, sizeof(conf.eal) - (size_t)n, " --file-prefix stanza-bench-%ld",
			     (long)getpid()) >= (int)(sizeof(conf.eal) - (size_t)n)) {
			fprintf(stderr, "stanza-bench: eal: too long to add --file-prefix (give one)\n");
			return -1;
		}
		snprintf(conf.port, sizeof(conf.port), "%s", o->dpdk_port);
		if (parse_cidr(o->dpdk_address, &conf) < 0) {
			fprintf(stderr, "stanza-bench: dpdk_address: '%s' is not an IPv4 address/prefix\n", o->dpdk_address);
			return -1;
		}
		conf.idle_sleep_us = o->dpdk_idle_sleep_us;
		conf.arp_timeout_s = 300;
		if (net_dpdk_init(&conf, e->nthreads, err, sizeof(err)) < 0) {
			fprintf(stderr, "stanza-bench: dpdk: %s\n", err);
			return -1;
		}
		e->dpdk_up = true;
	}
	for (unsigned i = 0; i < e->nthreads; i++) {
		e->th[i].loop = net_loop_new(e->net, i, 0);
		if (!e->th[i].loop) {
			fprintf(stderr, "stanza-bench: %s loop %u: %s\n", e->net->name, i, strerror(errno));
			return -1;
		}
	}
	return 0;
}

int engine_run(struct engine *e, struct bench_result *r)
{
	const struct bench_opts *o = e->o;
	pid_t spid = o->server_pid;
	struct hist *h = malloc(sizeof(*h));
	if (!h)
		return -1;
	if (net_start(e) < 0) {
		free(h);
		return -1;
	}

	atomic_store(&e->phase, PH_RAMP);
	for (unsigned i = 0; i < e->nthreads; i++)
		if (pthread_create(&e->th[i].th, NULL, thread_main, &e->th[i])) {
			fprintf(stderr, "stanza-bench: cannot start thread %u\n", i);
			atomic_store(&e->phase, PH_DONE);
			for (unsigned k = 0; k < i; k++)
				pthread_join(e->th[k].th, NULL);
			free(h);
			return -1;
		}

	/* Ramp-up: until every expected session is up or has failed. */
	uint64_t expected = e->sc->expected ? e->sc->expected(e) : 0;
	if (expected) {
		uint64_t t0 = now_ns(), last = t0;
		double limit = 30.0 + (o->connect_rate ? 2.0 * (double)expected / o->connect_rate : 0.0);
		for (;;) {
			uint64_t ready = SUM(e, ready), failed = SUM(e, failed);
			uint64_t now = now_ns();
			/* A scenario that sets state up after login (fanout's
			 * rosters) waits for it too: measuring while the server
			 * still works through the set-up would time that. */
			if (e->sc->wait_settled)
				ready = SUM(e, settled);
			if (ready + failed >= expected)
				break;
			if ((double)(now - t0) / 1e9 > limit) {
				fprintf(stderr, "stanza-bench: ramp-up timed out: %llu of %llu sessions %s\n",
					(unsigned long long)ready, (unsigned long long)expected,
					e->sc->wait_settled ? "settled" : "up");
				break;
			}
			if (!o->quiet && now - last >= NS_PER_S) {
				fprintf(stderr, "ramp: %llu/%llu sessions %s, %llu failed\n", (unsigned long long)ready,
					(unsigned long long)expected, e->sc->wait_settled ? "settled" : "up",
					(unsigned long long)failed);
				last = now;
			}
			sleep_ns(10 * 1000000ull);
		}
		uint64_t failed = SUM(e, failed);
		if (failed && !o->quiet)
			fprintf(stderr, "ramp: %llu sessions failed (see errors)\n", (unsigned long long)failed);
	}
	if (o->scenario == SC_IDLE)
		r->sessions = SUM(e, ready);

	atomic_store(&e->phase, PH_WARMUP);
	if (o->warmup > 0)
		sleep_ns((uint64_t)(o->warmup * 1e9));
	collect(e, h);   /* whatever warm-up left in the threads' current hists is not measured */
	hist_init(h);

	proc_sample(spid, &r->srv0);
	proc_sample(0, &r->self0);
	uint64_t t0 = now_ns();
	atomic_store(&e->t_meas0, t0);
	atomic_store(&e->phase, PH_MEASURE);

	uint64_t psent = SUM(e, sent), precv = SUM(e, recv), perr = sum_errors(e), plog = SUM(e, logins);
	struct proc_sample sp = r->srv0, ss = r->self0;
	uint64_t end = t0 + (uint64_t)(o->duration * 1e9);
	for (unsigned sec = 1;; sec++) {
		uint64_t next = t0 + sec * NS_PER_S;
		if (next > end)
			next = end;
		while (now_ns() < next) {
			if (atomic_load(&e->threads_done) >= e->nthreads)
				break;
			sleep_ns(5 * 1000000ull);
		}
		struct bench_tick tk = { 0 };
		struct proc_sample s1, m1;
		hist_init(h);
		collect(e, h);
		uint64_t now = now_ns();
		tk.t = (double)(now - t0) / 1e9;
		uint64_t cs = SUM(e, sent), cr = SUM(e, recv), ce = sum_errors(e), cl = SUM(e, logins);
		tk.sent = cs - psent;
		tk.recv = (o->scenario == SC_LOGIN ? cl - plog : cr - precv);
		tk.errors = ce - perr;
		psent = cs, precv = cr, perr = ce, plog = cl;
		tk.p50_ns = hist_percentile(h, 50);
		tk.p99_ns = hist_percentile(h, 99);
		if (spid && !proc_sample(spid, &s1)) {
			tk.server_cores = proc_cores(&sp, &s1);
			tk.server_rss_kib = s1.rss_kib;
			sp = s1;
		}
		if (!proc_sample(0, &m1)) {
			tk.self_cores = proc_cores(&ss, &m1);
			ss = m1;
		}
		push_tick(r, &tk);
		if (!o->quiet)
			report_tick(stderr, r, &tk);
		if (now >= end || atomic_load(&e->threads_done) >= e->nthreads)
			break;
	}
	uint64_t t1 = now_ns();
	atomic_store(&e->t_meas1, t1);
	proc_sample(spid, &r->srv1);
	proc_sample(0, &r->self1);
	r->seconds = (double)(t1 - t0) / 1e9;

	/* Drain: no new load; wait for what is in flight (5 s at most). */
	atomic_store(&e->phase, PH_DRAIN);
	uint64_t dl = now_ns() + 5 * NS_PER_S, lastr = SUM(e, recv), lastchange = now_ns();
	while (now_ns() < dl && o->scenario != SC_LOGIN && o->scenario != SC_IDLE) {
		uint64_t cr = SUM(e, recv);
		if (cr >= SUM(e, sent))
			break;
		if (cr != lastr) {
			lastr = cr;
			lastchange = now_ns();
		} else if (now_ns() - lastchange > 2 * NS_PER_S) {
			break;
		}
		sleep_ns(10 * 1000000ull);
	}
	atomic_store(&e->phase, PH_DONE);
	for (unsigned i = 0; i < e->nthreads; i++)
		pthread_join(e->th[i].th, NULL);

	hist_init(&r->lat);
	for (unsigned i = 0; i < e->nthreads; i++) {
		struct eng_thread *t = &e->th[i];
		hist_merge(&t->total, &t->cur);
		hist_merge(&r->lat, &t->total);
		for (unsigned k = 0; k < ERR_KINDS; k++)
			r->errors[k] += atomic_load(&t->errors[k]);
	}
	r->sent = SUM(e, sent);
	r->recv = SUM(e, recv);
	r->logins = SUM(e, logins);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	double cores = (double)e->nthreads;
	if (ncpu > 0 && cores > (double)ncpu)
		cores = (double)ncpu;
	r->generator_bound = proc_cores(&r->self0, &r->self1) >= 0.9 * cores;
	if (e->sc->finish)
		e->sc->finish(e, r);
	free(h);
	return 0;
}
