/* See im_fakes.h. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "im_fakes.h"
#include "control/account.h"
#include "store/store.h"

struct fake_post fake_posts[FAKE_POSTS_MAX];
size_t fake_nposts;
unsigned fake_route_takes = 1;
unsigned fake_user_sessions = 1;
unsigned fake_available = 1;

static struct fake_post *record(int kind, uint64_t handle, const char *bare, size_t blen, unsigned ev, const void *p,
				size_t len)
{
	if (fake_nposts == FAKE_POSTS_MAX)
		abort();
	struct fake_post *f = &fake_posts[fake_nposts++];
	memset(f, 0, sizeof(*f));
	f->kind = kind;
	f->handle = handle;
	if (bare) {
		if (blen >= sizeof(f->bare))
			abort();
		memcpy(f->bare, bare, blen);
	}
	f->ev = ev;
	f->data = malloc(len + 1);
	if (!f->data)
		abort();
	memcpy(f->data, p, len);
	f->data[len] = 0;
	f->len = len;
	return f;
}

void fake_posts_clear(void)
{
	for (size_t i = 0; i < fake_nposts; i++)
		free(fake_posts[i].data);
	fake_nposts = 0;
}

static void f_to_session(void *srv, uint64_t handle, const void *stanza, size_t len)
{
	record(POST_SESSION, handle, NULL, 0, 0, stanza, len);
}

static unsigned f_route(void *srv, const void *stanza, size_t len)
{
	record(POST_ROUTE, 0, NULL, 0, 0, stanza, len);
	return fake_route_takes;
}

static void f_event(void *srv, uint64_t handle, unsigned ev, const void *payload, size_t len)
{
	record(POST_EVENT, handle, NULL, 0, ev, payload, len);
}

static unsigned f_user_event(void *srv, const char *bare, size_t bare_len, unsigned ev, const void *payload,
			     size_t len)
{
	record(POST_USER, 0, bare, bare_len, ev, payload, len);
	return fake_user_sessions;
}

static unsigned f_available(void *srv, const char *bare, size_t bare_len, bool nonneg)
{
	return fake_available;
}

static size_t f_kick(void *srv, const char *jid, size_t len, const char *condition)
{
	struct fake_post *p = record(POST_KICK, 0, NULL, 0, 0, jid, len);
	snprintf(p->cond, sizeof(p->cond), "%s", condition);
	return 1;
}

const struct im_out fake_out = {
	.srv = NULL,
	.to_session = f_to_session,
	.route = f_route,
	.event = f_event,
	.user_event = f_user_event,
	.available = f_available,
	.kick = f_kick,
};

struct fake_post *fake_last(int kind, unsigned ev)
{
	for (size_t i = fake_nposts; i-- > 0;)
		if (fake_posts[i].kind == kind && (!ev || fake_posts[i].ev == ev))
			return &fake_posts[i];
	return NULL;
}

size_t fake_count(int kind, unsigned ev)
{
	size_t n = 0;
	for (size_t i = 0; i < fake_nposts; i++)
		if (fake_posts[i].kind == kind && (!ev || fake_posts[i].ev == ev))
			n++;
	return n;
}

size_t fake_rules_decode(const void *buf, size_t len, uint32_t n, struct fake_rule *out, size_t cap)
{
	const uint8_t *p = buf;
	size_t off = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct im_rule r;
		if (i >= cap || len - off < sizeof(r))
			return 0;
		memcpy(&r, p + off, sizeof(r));
		off += sizeof(r);
		if (len - off < IM_REC_ALIGN(r.len) || r.len >= sizeof(out[i].jid))
			return 0;
		out[i].match = r.match;
		out[i].action = r.action;
		out[i].kinds = r.kinds;
		out[i].subs = r.subs;
		memcpy(out[i].jid, p + off, r.len);
		out[i].jid[r.len] = 0;
		for (size_t k = r.len; k < IM_REC_ALIGN(r.len); k++)
			if (p[off + k] != 0)
				return 0;   /* padding must be zero */
		off += IM_REC_ALIGN(r.len);
	}
	return off;
}

const char *fx_send_stanza(const struct fake_post *p, struct im_send_hdr *h)
{
	memcpy(h, p->data, sizeof(*h));
	return p->data + sizeof(*h);
}

/* ---- fixture ---------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

struct im_fx *fx_new(void)
{
	struct im_fx *f = calloc(1, sizeof(*f));
	if (!f)
		abort();
	strcpy(f->root, "/tmp/stanzad-im-XXXXXX");
	if (!mkdtemp(f->root))
		abort();
	snprintf(f->dir, sizeof(f->dir), "%s/db", f->root);
	struct store_options o;
	store_options_default(&o);
	o.sync = STORE_SYNC_NONE;   /* durability is the store's own tests' business */
	if (store_open(&f->st, f->dir, &o) != STORE_OK)
		abort();
	f->cfg = calloc(1, sizeof(*f->cfg));
	if (!f->cfg)
		abort();
	xml_limits_default(&f->cfg->xml);
	strcpy(f->cfg->vhost[0].domain, FX_DOMAIN);
	f->cfg->nvhost = 1;
	f->cfg->scram_iterations = FX_ITER;
	f->cfg->im.roster_max = 2000;
	f->cfg->im.pending_max = 100;
	f->cfg->im.offline_max = 1000;
	f->cfg->im.privacy_max_items = 1000;
	f->cfg->im.register_enabled = 1;
	f->cfg->im.register_per_hour = 5;
	if (im_init(&f->ctx, f->st, f->cfg) < 0)
		abort();
	fake_posts_clear();
	fake_route_takes = fake_user_sessions = fake_available = 1;
	return f;
}

void fx_free(struct im_fx *f)
{
	im_free(&f->ctx);
	store_close(f->st);
	nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f->cfg);
	free(f);
	fake_posts_clear();
}

int fx_add_account(struct im_fx *f, const char *jid, const char *pass)
{
	return account_add(f->st, jid, pass, strlen(pass), FX_ITER);
}

void fx_account(struct im_fx *f, const char *bare)
{
	struct store_account a;
	memset(&a, 0, sizeof(a));
	a.created = 1;
	a.nscram = 1;
	a.scram[0].hash = STORE_SHA1;
	a.scram[0].salt_len = STORE_SALT_MIN;
	a.scram[0].key_len = 20;
	a.scram[0].iterations = 4096;
	if (store_account_put(f->st, NULL, bare, strlen(bare), &a, false) != STORE_OK)
		abort();
}

void fx_req_peer(struct im_fx *f, unsigned type, uint64_t handle, const char *jid, uint32_t flags, const char *stanza,
		 const struct net_addr *peer)
{
	struct im_req h;
	memset(&h, 0, sizeof(h));
	h.type = (uint8_t)type;
	h.vhost = 0;
	h.jid_len = (uint16_t)strlen(jid);
	h.flags = flags;
	h.len = stanza ? (uint32_t)strlen(stanza) : 0;
	if (peer)
		memcpy(h.peer, peer, sizeof(*peer));
	im_serve(&f->ctx, handle, &h, jid, stanza ? stanza : "", &fake_out);
}

uint64_t fx_queue_len(struct im_fx *f, const char *bare)
{
	uint64_t n = 0;
	if (store_queue_count(f->st, NULL, STORE_T_OFFLINE, bare, strlen(bare), &n) != STORE_OK)
		return UINT64_MAX;
	return n;
}
