/* The scenarios of opts.h, as engine callbacks.
 *
 * Messages carry their send time (CLOCK_MONOTONIC ns, 16 hex digits) in the
 * id attribute; the receiver reads only the start tag (xc_attr), never
 * builds a view, and records the delivery latency in its thread's hist.
 * A stanza counts as sent (and its delivery as received) when its stamp
 * lies inside the measurement window, so what is in flight at either edge
 * is neither counted nor lost; after the drain, sent - received is
 * ERR_LOST.
 *
 * pairs/raw: accounts 2p and 2p+1 live on the same thread, so the receiver
 * gives the window slot back to the sender directly: `window` messages in
 * flight per direction, no extra traffic, the next write batched with
 * everything else of the iteration.
 *
 * pairs with msg_rate (open loop): each thread owes msg_rate/threads
 * messages per second from the start of warm-up, sent round-robin over its
 * connections whatever the replies do, each stamped with the time it was
 * due, not the time it left: when the server (or the generator) falls
 * behind, the wait shows in the latency instead of silently lowering the
 * offered load (coordinated omission). `window` still caps what is in
 * flight per direction, so an overloaded server makes the backlog, and
 * the latency, grow rather than the generator's memory.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/harness/engine.h"
#include "bench/harness/xclient.h"

struct sc_thread {
	uint32_t next;          /* next unit (pair, session, user) to open, this thread's count */
	uint32_t units;         /* units this thread owns */
	uint32_t active;        /* login: logins in progress */
	uint64_t remaining;     /* login: logins still to start */
	uint32_t cap;           /* login: in flight at most */
	bool done;
	bool kicked;            /* pairs: windows filled at warm-up */
	double credit;          /* mixed/fanout: stanzas owed by the rate */
	uint64_t last;          /* mixed/fanout: when credit was last paid */
	uint64_t t0;            /* pairs open loop: when the schedule started */
	uint64_t issued;        /* pairs open loop: messages sent on the schedule */
	uint32_t rr;            /* pairs open loop: next connection to send from */
	uint64_t late;          /* pairs open loop: measured messages sent > 1 ms after they were due */
	uint8_t *busy;          /* login: per unit, a login of that account is in flight */
	char *body;
};

static struct sc_thread *st(struct eng_thread *t)
{
	return t->sc;
}

static unsigned nth(const struct eng_thread *t)
{
	return t->eng->nthreads;
}

/* Units u with u % T == t->id. */
static uint32_t share(uint64_t total, const struct eng_thread *t)
{
	return total > t->id ? (uint32_t)((total - t->id + nth(t) - 1) / nth(t)) : 0;
}

static bool loading(const struct engine *e)
{
	int ph = eng_phase(e);
	return ph == PH_WARMUP || ph == PH_MEASURE;
}

static void put_hex16(char *d, uint64_t v)
{
	static const char hx[] = "0123456789abcdef";
	for (int i = 15; i >= 0; i--) {
		d[i] = hx[v & 15];
		v >>= 4;
	}
}

static bool get_hex16(const char *s, size_t n, uint64_t *v)
{
	if (n != 16)
		return false;
	uint64_t x = 0;
	for (size_t i = 0; i < 16; i++) {
		char ch = s[i];
		unsigned d;
		if (ch >= '0' && ch <= '9')
			d = (unsigned)(ch - '0');
		else if (ch >= 'a' && ch <= 'f')
			d = (unsigned)(ch - 'a' + 10);
		else
			return false;
		x = x << 4 | d;
	}
	*v = x;
	return true;
}

/* <message to='JID/b' type='chat' id='TS'><body>BODY</body></message>
 * stamped with `due` (0: now); returns the stamp. */
static uint64_t send_message_at(struct xc *c, uint32_t to_user, uint64_t due)
{
	struct eng_thread *t = c->t;
	const struct bench_opts *o = t->eng->o;
	char jid[400];
	size_t jl = xc_jid(t, to_user, jid, sizeof(jid));
	size_t bl = o->body;
	size_t n = 14 + jl + 2 + 21 + 16 + 8 + bl + 17;
	char *d = xc_reserve(c, n);
	if (!d) {
		xc_close(c, ERR_CLOSED);
		return 0;
	}
	char *p = d;
	memcpy(p, "<message to='", 13); p += 13;
	memcpy(p, jid, jl); p += jl;
	memcpy(p, "/b' type='chat' id='", 20); p += 20;
	uint64_t ts = due ? due : now_ns();
	put_hex16(p, ts); p += 16;
	memcpy(p, "'><body>", 8); p += 8;
	memcpy(p, st(t)->body, bl); p += bl;
	memcpy(p, "</body></message>", 17); p += 17;
	xc_commit(c, (size_t)(p - d));
	if (eng_measured(t->eng, ts))
		eng_count(&t->sent, 1);
	return ts;
}

static uint64_t send_message(struct xc *c, uint32_t to_user)
{
	return send_message_at(c, to_user, 0);
}

/* A message arrived at c: its latency if it carries our stamp. Returns
 * 1 delivered, 0 not ours, -1 an error bounce (c sent it). */
static int got_message(struct xc *c, const char *p, size_t n)
{
	const char *v;
	size_t vl;
	uint64_t ts;
	if (xc_attr(p, n, "type", &v, &vl) && vl == 5 && !memcmp(v, "error", 5)) {
		eng_err(c->t, ERR_STANZA);
		return -1;
	}
	if (!xc_attr(p, n, "id", &v, &vl) || !get_hex16(v, vl, &ts))
		return 0;
	if (eng_measured(c->t->eng, ts)) {
		eng_count(&c->t->recv, 1);
		eng_latency(c->t, ts, now_ns());
	}
	return 1;
}

static int setup_common(struct engine *e, uint64_t users)
{
	struct bench_opts *o = (struct bench_opts *)e->o;
	if (o->users == 0)
		o->users = (unsigned)users;
	if (o->users < users) {
		fprintf(stderr, "stanza-bench: %s needs %llu accounts, users is %u\n", e->sc->name,
			(unsigned long long)users, o->users);
		return -1;
	}
	e->nscache = o->users;
	e->scache = calloc(o->users ? o->users : 1, sizeof(*e->scache));
	return e->scache ? 0 : -1;
}

static void thread_common(struct eng_thread *t, uint32_t units)
{
	struct sc_thread *s = calloc(1, sizeof(*s));
	const struct bench_opts *o = t->eng->o;
	if (!s)
		abort();
	s->units = units;
	s->body = malloc(o->body + 1);
	if (!s->body)
		abort();
	for (unsigned i = 0; i < o->body; i++)
		s->body[i] = (char)('a' + i % 26);
	t->sc = s;
}

/* ---- pairs and raw ----------------------------------------------------- */

static int pairs_setup(struct engine *e)
{
	struct bench_opts *o = (struct bench_opts *)e->o;
	if (o->pairs == 0)
		o->pairs = o->users / 2;
	if (o->pairs == 0) {
		fprintf(stderr, "stanza-bench: pairs: no pairs\n");
		return -1;
	}
	if (o->window == 0)
		o->window = 1;
	return setup_common(e, 2ull * o->pairs);
}

static uint64_t pairs_expected(const struct engine *e)
{
	return 2ull * e->o->pairs;
}

static void pairs_start(struct eng_thread *t)
{
	thread_common(t, share(t->eng->o->pairs, t));
}

static void refill(struct xc *c)
{
	unsigned w = c->t->eng->o->window;
	if (c->t->eng->o->msg_rate > 0)
		return;   /* open loop: the schedule sends, not the replies */
	while (c->state == XC_READY && c->partner && c->outstanding < w) {
		send_message(c, c->partner->user);
		c->outstanding++;
	}
}

/* Open loop: send what the schedule owes by now, round-robin over the
 * connections that may send. */
static void pairs_schedule(struct eng_thread *t, uint64_t now)
{
	struct sc_thread *s = st(t);
	const struct bench_opts *o = t->eng->o;
	double per_ns = o->msg_rate / nth(t) / 1e9;

	if (!loading(t->eng) || t->nconns == 0)
		return;
	if (!s->t0)
		s->t0 = now;
	/* Message k is due at t0 + k / rate: by now, those up to
	 * floor((now - t0) * rate), the first one at t0 itself. */
	uint64_t owed = (uint64_t)((double)(now - s->t0) * per_ns) + 1;
	uint32_t blocked = 0;
	while (s->issued < owed && blocked < t->nconns) {
		struct xc *c = t->conns[s->rr++ % t->nconns];
		if (c->state != XC_READY || !c->partner || c->partner->state != XC_READY ||
		    c->outstanding >= o->window) {
			blocked++;
			continue;
		}
		blocked = 0;
		uint64_t due = s->t0 + (uint64_t)((double)s->issued / per_ns);
		if (now > due + 1000000 && eng_measured(t->eng, due))
			s->late++;
		send_message_at(c, c->partner->user, due);
		c->outstanding++;
		s->issued++;
	}
}

static void pairs_tick(struct eng_thread *t, uint64_t now)
{
	struct sc_thread *s = st(t);
	bool raw = t->eng->o->scenario == SC_RAW;
	while (s->next < s->units && eng_phase(t->eng) == PH_RAMP) {
		if (!eng_connect_token(t, now))
			break;
		uint32_t p = t->id + s->next * nth(t);
		s->next++;
		struct xc *a = xc_new(t, 2 * p, raw, p, 0);
		struct xc *b = xc_new(t, 2 * p + 1, raw, p, 1);
		if (a && b) {
			a->partner = b;
			b->partner = a;
		} else {
			if (a)
				xc_close(a, ERR_CONNECT);
			if (b)
				xc_close(b, ERR_CONNECT);
		}
	}
	if (t->eng->o->msg_rate > 0) {
		pairs_schedule(t, now);
		return;
	}
	if (!s->kicked && loading(t->eng)) {
		s->kicked = true;
		for (uint32_t i = 0; i < t->nconns; i++) {
			struct xc *c = t->conns[i];
			if (c->state == XC_READY && c->partner && c->partner->state == XC_READY)
				refill(c);
		}
	}
}

static void pairs_ready(struct xc *c)
{
	if (!c->raw)
		xc_send(c, "<presence/>", 11);
	c->keep_tx = 1;
	if (st(c->t)->kicked && loading(c->t->eng) && c->partner && c->partner->state == XC_READY) {
		refill(c);
		refill(c->partner);
	}
}

static void pairs_stanza(struct xc *c, const char *p, size_t n)
{
	if (n < 9 || memcmp(p, "<message", 8))
		return;
	int r = got_message(c, p, n);
	if (r < 0) {
		if (c->outstanding)
			c->outstanding--;
		return;
	}
	if (r == 0)
		return;
	struct xc *s = c->partner;
	if (!s)
		return;
	if (s->outstanding)
		s->outstanding--;
	if (loading(c->t->eng))
		refill(s);
}

static void pairs_close(struct xc *c, int err)
{
	if (c->partner) {
		c->partner->partner = NULL;
		c->partner = NULL;
	}
}

static void lost_finish(struct engine *e, struct bench_result *r)
{
	/* Open loop: the load threads poll without sleeping, so their CPU
	 * says nothing; whether they kept the schedule does. */
	if (e->o->msg_rate > 0) {
		r->late = 0;
		for (unsigned i = 0; i < e->nthreads; i++) {
			struct sc_thread *s = e->th[i].sc;
			if (s)
				r->late += s->late;
		}
		r->generator_bound = r->sent && r->late * 100 > r->sent;
	}
	if (r->sent > r->recv)
		r->errors[ERR_LOST] += r->sent - r->recv;
}

/* ---- login ------------------------------------------------------------- */

static int login_setup(struct engine *e)
{
	struct bench_opts *o = (struct bench_opts *)e->o;
	if (o->inflight == 0)
		o->inflight = 1;
	if (o->inflight < e->nthreads)
		e->nthreads = o->inflight;
	uint64_t need = o->inflight > e->nthreads ? o->inflight : e->nthreads;
	if (o->users == 0)
		o->users = (unsigned)need;
	if (o->users < need) {
		/* Two logins of one account at once would fight over the
		 * resource (conflict): each thread needs its share in flight. */
		fprintf(stderr, "stanza-bench: login needs users >= inflight (%u) and threads\n", o->inflight);
		return -1;
	}
	return setup_common(e, o->users);
}

static void login_start(struct eng_thread *t)
{
	const struct bench_opts *o = t->eng->o;
	thread_common(t, share(o->users, t));
	struct sc_thread *s = st(t);
	s->remaining = o->logins ? share(o->logins, t) : UINT64_MAX;
	s->cap = share(o->inflight, t);
	if (s->cap > s->units)
		s->cap = s->units;
	s->busy = calloc(s->units ? s->units : 1, 1);
	if (!s->busy)
		abort();
}

static void login_tick(struct eng_thread *t, uint64_t now)
{
	struct sc_thread *s = st(t);
	if (s->done || !loading(t->eng))
		return;
	bool measuring = eng_phase(t->eng) == PH_MEASURE;
	while (s->active < s->cap && s->remaining > 0) {
		if (!eng_connect_token(t, now))
			break;
		/* The next of this thread's accounts with no login in flight:
		 * two logins of one account at once would bind the same
		 * resource, and the later one would kick the earlier off
		 * (conflict). Logins end in any order, so taking accounts
		 * strictly in turn is not enough. Warm-up logins do not count
		 * against `logins`. */
		uint32_t k = 0, idx = 0;
		for (; k < s->units; k++) {
			idx = (s->next + k) % s->units;
			if (!s->busy[idx])
				break;
		}
		if (k == s->units)
			break;   /* cannot happen: cap <= units */
		s->next = idx + 1;
		uint32_t u = t->id + idx * nth(t);
		struct xc *c = xc_new(t, u, false, 0, 0);
		if (!c) {
			if (measuring)
				s->remaining--;   /* counted as a connect error: still bounded */
			continue;
		}
		s->busy[idx] = 1;
		c->aux = idx;
		s->active++;
		/* The same test decides both: a login started as measurement
		 * began counts once, in `remaining` and in `sent`. */
		if (eng_measured(t->eng, c->t_start)) {
			s->remaining--;
			eng_count(&t->sent, 1);
		}
	}
	if (s->remaining == 0 && s->active == 0) {
		s->done = true;
		atomic_fetch_add(&t->eng->threads_done, 1);
	}
}

static void login_ready(struct xc *c)
{
	struct eng_thread *t = c->t;
	if (eng_measured(t->eng, c->t_start)) {
		eng_count(&t->logins, 1);
		eng_latency(t, c->t_start, now_ns());
	}
	xc_close(c, -1);
}

static void login_stanza(struct xc *c, const char *p, size_t n)
{
}

static void login_close(struct xc *c, int err)
{
	struct sc_thread *s = st(c->t);
	if (s && s->active)
		s->active--;
	if (s && s->busy && c->aux < s->units)
		s->busy[c->aux] = 0;
}

/* ---- idle -------------------------------------------------------------- */

static int idle_setup(struct engine *e)
{
	return setup_common(e, e->o->sessions);
}

static uint64_t idle_expected(const struct engine *e)
{
	return e->o->sessions;
}

static void idle_start(struct eng_thread *t)
{
	thread_common(t, share(t->eng->o->sessions, t));
}

static void idle_tick(struct eng_thread *t, uint64_t now)
{
	struct sc_thread *s = st(t);
	while (s->next < s->units && eng_phase(t->eng) == PH_RAMP) {
		if (!eng_connect_token(t, now))
			break;
		xc_new(t, t->id + s->next * nth(t), false, 0, 0);
		s->next++;
	}
}

static void idle_ready(struct xc *c)
{
	xc_send(c, "<presence/>", 11);
}

/* ---- fanout ------------------------------------------------------------ */

/* Contacts of u: u±1 .. u±contacts/2 (mod users), a symmetric relation, so
 * both sides ask for and grant the subscription. */
static int fanout_setup(struct engine *e)
{
	struct bench_opts *o = (struct bench_opts *)e->o;
	if (o->contacts < 2)
		o->contacts = 2;
	o->contacts &= ~1u;
	if (o->users == 0)
		o->users = o->contacts * 10u;
	if (o->users <= o->contacts) {
		fprintf(stderr, "stanza-bench: fanout needs users > contacts\n");
		return -1;
	}
	if (o->rate <= 0)
		o->rate = 1;
	return setup_common(e, o->users);
}

static uint64_t users_expected(const struct engine *e)
{
	return e->o->users;
}

static void users_start(struct eng_thread *t)
{
	thread_common(t, share(t->eng->o->users, t));
}

static uint32_t contact(const struct engine *e, uint32_t u, unsigned k)
{
	unsigned half = e->o->contacts / 2, n = e->o->users;
	unsigned d = k % half + 1;
	return k < half ? (u + d) % n : (u + n - d) % n;
}

static void fanout_ready(struct xc *c)
{
	struct engine *e = c->t->eng;
	char jid[300], buf[700];
	for (unsigned k = 0; k < e->o->contacts; k++) {
		xc_jid(c->t, contact(e, c->user, k), jid, sizeof(jid));
		int n = snprintf(buf, sizeof(buf),
				 "<iq type='set' id='rs%u'><query xmlns='jabber:iq:roster'><item jid='%s'/></query></iq>"
				 "<presence to='%s' type='subscribe'/>", k, jid, jid);
		xc_send(c, buf, (size_t)n);
	}
	xc_send(c, "<presence/>", 11);
	c->aux = 0;
	c->next_t = 0;   /* contacts seen */
	c->seen = calloc((e->o->contacts + 7) / 8, 1);
}

/* Available presence from account `from` arrived at c: once every
 * contact's has (the subscriptions are in place both ways, whether made
 * now or kept from an earlier run), c's set-up is done, and the engine
 * waits for every session's before warm-up. */
static void fanout_seen(struct xc *c, const char *from, size_t len)
{
	const struct bench_opts *o = c->t->eng->o;
	size_t pl = strlen(o->user_prefix);
	unsigned half = o->contacts / 2, n = o->users;
	uint64_t u = 0;
	size_t i = pl;

	if (!c->seen || c->next_t >= o->contacts || len <= pl || memcmp(from, o->user_prefix, pl))
		return;
	for (; i < len && from[i] >= '0' && from[i] <= '9' && u < n; i++)
		u = u * 10 + (uint64_t)(from[i] - '0');
	if (i == pl || i >= len || from[i] != '@' || u >= n)
		return;
	unsigned d = (unsigned)((u + n - c->user) % n), k;
	if (d >= 1 && d <= half)
		k = d - 1;
	else if (n - d >= 1 && n - d <= half)
		k = half + (n - d) - 1;
	else
		return;   /* not a contact */
	if (c->seen[k / 8] & (1u << (k % 8)))
		return;
	c->seen[k / 8] |= (uint8_t)(1u << (k % 8));
	if (++c->next_t == o->contacts)
		eng_count(&c->t->settled, 1);
}

static void fanout_stanza(struct xc *c, const char *p, size_t n)
{
	const char *v, *f;
	size_t vl, fl;
	if (n > 3 && !memcmp(p, "<iq", 3)) {
		if (xc_attr(p, n, "type", &v, &vl) && vl == 5 && !memcmp(v, "error", 5))
			eng_err(c->t, ERR_STANZA);
		else if (xc_attr(p, n, "type", &v, &vl) && vl == 3 && !memcmp(v, "set", 3) &&
			 xc_attr(p, n, "id", &f, &fl)) {
			/* roster push: acknowledge it */
			char buf[300];
			int k = snprintf(buf, sizeof(buf), "<iq type='result' id='%.*s'/>", (int)fl, f);
			xc_send(c, buf, (size_t)k);
		}
		return;
	}
	if (n < 10 || memcmp(p, "<presence", 9))
		return;
	if (xc_attr(p, n, "type", &v, &vl)) {
		if (vl == 9 && !memcmp(v, "subscribe", 9) && xc_attr(p, n, "from", &f, &fl)) {
			char buf[400];
			int k = snprintf(buf, sizeof(buf), "<presence to='%.*s' type='subscribed'/>", (int)fl, f);
			xc_send(c, buf, (size_t)k);
		} else if (vl == 10 && !memcmp(v, "subscribed", 10)) {
			c->aux++;
		} else if (vl == 5 && !memcmp(v, "error", 5)) {
			eng_err(c->t, ERR_STANZA);
		}
		return;
	}
	uint64_t ts;
	char me[300];
	size_t ml = xc_jid(c->t, c->user, me, sizeof(me));
	if (!xc_attr(p, n, "from", &f, &fl))
		return;
	if (fl > ml && !memcmp(f, me, ml) && f[ml] == '/')
		return;   /* our own presence, which the server sends back to us */
	fanout_seen(c, f, fl);
	if (xc_attr(p, n, "id", &v, &vl) && get_hex16(v, vl, &ts) && eng_measured(c->t->eng, ts)) {
		eng_count(&c->t->recv, 1);
		eng_latency(c->t, ts, now_ns());
	}
}

/* Stanzas owed by this thread's users since the last call, at `rate` per
 * user per second, each from a random ready connection. */
static uint32_t owed(struct eng_thread *t, uint64_t now)
{
	struct sc_thread *s = st(t);
	if (!loading(t->eng)) {
		s->last = 0;
		return 0;
	}
	if (s->last == 0)
		s->last = now;
	s->credit += (double)(now - s->last) / 1e9 * t->eng->o->rate * t->nconns;
	s->last = now;
	uint32_t k = (uint32_t)s->credit;
	s->credit -= k;
	return t->nconns ? k : 0;
}

static void fanout_tick(struct eng_thread *t, uint64_t now)
{
	idle_tick(t, now);
	for (uint32_t k = owed(t, now); k > 0; k--) {
		struct xc *c = t->conns[eng_rand(t) % t->nconns];
		if (c->state != XC_READY)
			continue;
		char buf[64] = "<presence id='";
		uint64_t ts = now_ns();
		put_hex16(buf + 14, ts);
		memcpy(buf + 30, "'><show>chat</show></presence>", 31);
		xc_send(c, buf, strlen(buf));
		/* counted once per broadcast; recv counts each copy delivered */
		if (eng_measured(t->eng, ts))
			eng_count(&t->sent, 1);
	}
}

static void fanout_finish(struct engine *e, struct bench_result *r)
{
	if (r->errors[ERR_STANZA])
		fprintf(stderr, "stanza-bench: fanout: %llu roster/subscription errors: the server did not "
			"accept the roster setup, so no presence was broadcast to contacts\n",
			(unsigned long long)r->errors[ERR_STANZA]);
	else if (r->sent && !r->recv)
		fprintf(stderr, "stanza-bench: fanout: no presence reached a contact (subscriptions not in place?)\n");
}

/* ---- mixed (ProcessOne RTB-like) ---------------------------------------- */

static int mixed_setup(struct engine *e)
{
	struct bench_opts *o = (struct bench_opts *)e->o;
	if (o->users == 0)
		o->users = 1000;
	if (o->users < 2) {
		fprintf(stderr, "stanza-bench: mixed needs 2 users at least\n");
		return -1;
	}
	if (o->rate <= 0)
		o->rate = 0.1;
	return setup_common(e, o->users);
}

static void mixed_ready(struct xc *c)
{
	xc_send(c, "<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq><presence/>", 77);
	c->keep_tx = 0;
}

static void mixed_stanza(struct xc *c, const char *p, size_t n)
{
	const char *v;
	size_t vl;

	if (n > 9 && !memcmp(p, "<message", 8)) {
		got_message(c, p, n);
	} else if (n > 3 && !memcmp(p, "<iq", 3) && xc_attr(p, n, "type", &v, &vl) && vl == 5 &&
		   !memcmp(v, "error", 5)) {
		/* The roster get (or a ping) was refused: the mix is not what
		 * the scenario claims to measure. */
		eng_err(c->t, ERR_STANZA);
	}
}

/* Per stanza owed: 8 in 10 a message to a random user, 1 a presence
 * change, 1 a ping to the server. Only messages are counted and timed. */
static void mixed_tick(struct eng_thread *t, uint64_t now)
{
	idle_tick(t, now);
	uint32_t users = t->eng->o->users;
	for (uint32_t k = owed(t, now); k > 0; k--) {
		uint64_t r = eng_rand(t);
		struct xc *c = t->conns[r % t->nconns];
		if (c->state != XC_READY)
			continue;
		unsigned kind = (unsigned)(r >> 40) % 10;
		if (kind < 8) {
			uint32_t to = (uint32_t)((r >> 16) % (users - 1));
			if (to >= c->user)
				to++;
			send_message(c, to);
		} else if (kind == 8) {
			xc_send(c, "<presence><show>away</show></presence>", 38);
		} else {
			xc_send(c, "<iq type='get' id='ping'><ping xmlns='urn:xmpp:ping'/></iq>", 59);
		}
	}
}

/* ---- table ------------------------------------------------------------- */

static const struct scenario scenarios[] = {
	[SC_PAIRS] = { "pairs", pairs_setup, pairs_start, pairs_ready, pairs_stanza, pairs_close, pairs_tick,
		       lost_finish, pairs_expected },
	[SC_RAW] = { "raw", pairs_setup, pairs_start, pairs_ready, pairs_stanza, pairs_close, pairs_tick,
		     lost_finish, pairs_expected },
	[SC_LOGIN] = { "login", login_setup, login_start, login_ready, login_stanza, login_close, login_tick,
		       NULL, NULL },
	[SC_IDLE] = { "idle", idle_setup, idle_start, idle_ready, login_stanza, NULL, idle_tick, NULL,
		      idle_expected },
	[SC_FANOUT] = { "fanout", fanout_setup, users_start, fanout_ready, fanout_stanza, NULL, fanout_tick,
			fanout_finish, users_expected, true },
	[SC_MIXED] = { "mixed", mixed_setup, users_start, mixed_ready, mixed_stanza, NULL, mixed_tick,
		       lost_finish, users_expected },
};

const struct scenario *scenario_get(enum bench_scenario s)
{
	if ((unsigned)s >= sizeof(scenarios) / sizeof(scenarios[0]) || !scenarios[s].name)
		return NULL;
	return &scenarios[s];
}
