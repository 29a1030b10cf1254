/* See im_fakes.h. Every module entry point is defined weak here; the
 * module under test, compiled into the same executable, overrides its own. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "im_fakes.h"
#include "store/store.h"

#define WEAK __attribute__((weak))

struct fake_post fake_posts[FAKE_POSTS_MAX];
size_t fake_nposts;
unsigned fake_user_sessions = 1;
unsigned fake_offline_info_calls, fake_offline_items_calls;

static void record(int kind, uint64_t handle, const char *bare, size_t blen, unsigned ev, const void *p, size_t len)
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
	return 1;
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
	return fake_user_sessions;
}

static size_t f_kick(void *srv, const char *jid, size_t len, const char *condition)
{
	return 0;
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

size_t fake_rules_decode(const uint8_t *p, size_t len, uint32_t n, struct fake_rule *out, size_t cap)
{
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

/* ---- scripted roster ------------------------------------------------------ */

static struct {
	char owner[128], contact[128], group[64];
	unsigned sub;
} roster[64];
static size_t nroster;

void fake_roster_add(const char *owner, const char *contact, unsigned sub, const char *group)
{
	if (nroster == 64)
		abort();
	strcpy(roster[nroster].owner, owner);
	strcpy(roster[nroster].contact, contact);
	strcpy(roster[nroster].group, group);
	roster[nroster++].sub = sub;
}

void fake_roster_clear(void)
{
	nroster = 0;
}

static bool eqn(const char *s, const char *p, size_t n)
{
	return strlen(s) == n && !memcmp(s, p, n);
}

WEAK unsigned roster_sub_of(struct im_ctx *ctx, const char *bare, size_t bare_len, const char *peer, size_t peer_len)
{
	for (size_t i = 0; i < nroster; i++)
		if (eqn(roster[i].owner, bare, bare_len) && eqn(roster[i].contact, peer, peer_len))
			return roster[i].sub;
	return 0;
}

WEAK void roster_group_members(struct im_ctx *ctx, const char *bare, size_t bare_len, const char *group, size_t glen,
			       void (*fn)(void *arg, const char *jid, size_t len), void *arg)
{
	for (size_t i = 0; i < nroster; i++)
		if (eqn(roster[i].owner, bare, bare_len) && eqn(roster[i].group, group, glen))
			fn(arg, roster[i].contact, strlen(roster[i].contact));
}

/* ---- the other modules, absent --------------------------------------------- */

WEAK int roster_init(struct im_ctx *ctx) { return 0; }
WEAK void roster_free(struct im_ctx *ctx) {}
WEAK void roster_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void roster_presence(struct im_call *c) {}
WEAK int roster_state(struct im_call *c, uint8_t *buf, size_t cap, size_t *len) { return 0; }
WEAK void roster_initial_presence(struct im_call *c) {}
WEAK int roster_purge(struct im_ctx *ctx, const char *bare, size_t len) { return 0; }

WEAK int offline_init(struct im_ctx *ctx) { return 0; }
WEAK void offline_free(struct im_ctx *ctx) {}
WEAK void offline_message(struct im_call *c) {}
WEAK void offline_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void offline_initial_presence(struct im_call *c) {}
WEAK void offline_unacked(struct im_call *c) {}
WEAK void last_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void last_session_end(struct im_call *c) {}
WEAK bool last_get(struct im_ctx *ctx, const char *bare, size_t len, time_t *when, char *status, size_t cap,
		   size_t *status_len) { return false; }
WEAK int offline_purge(struct im_ctx *ctx, const char *bare, size_t len) { return 0; }
WEAK void offline_session_moved(struct im_call *c, uint64_t old) {}
WEAK void offline_flush(struct im_ctx *ctx, const struct im_out *out) {}
WEAK void offline_disco_info(struct im_call *c, uint32_t query)
{
	fake_offline_info_calls++;
	im_result(c, NULL, 0);
}
WEAK void offline_disco_items(struct im_call *c, uint32_t query)
{
	fake_offline_items_calls++;
	im_result(c, NULL, 0);
}

WEAK int privacy_init(struct im_ctx *ctx) { return 0; }
WEAK void privacy_free(struct im_ctx *ctx) {}
WEAK void blocking_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void privacy_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK int privacy_state(struct im_call *c, uint8_t *buf, size_t cap, size_t *len) { return 0; }
WEAK void privacy_roster_changed(struct im_ctx *ctx, const struct im_out *out, const char *bare, size_t len) {}
WEAK int privacy_purge(struct im_ctx *ctx, const char *bare, size_t len) { return 0; }
WEAK void privacy_session_end(struct im_call *c) {}
WEAK void privacy_session_moved(struct im_call *c, uint64_t old) {}
WEAK unsigned privacy_check_in(struct im_ctx *ctx, const char *bare, size_t bare_len, unsigned kind, const char *peer,
			       size_t peer_len) { return 0; }

WEAK int services_init(struct im_ctx *ctx) { return 0; }
WEAK void services_free(struct im_ctx *ctx) {}
WEAK void disco_info_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void disco_items_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void version_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void time_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void vcard_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void private_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void carbons_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void services_caps_ver(char *out, size_t cap) { if (cap) out[0] = 0; }
WEAK int services_purge(struct im_ctx *ctx, const char *bare, size_t len) { return 0; }

WEAK int register_init(struct im_ctx *ctx) { return 0; }
WEAK void register_free(struct im_ctx *ctx) {}
WEAK void register_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }
WEAK void register_preauth_iq(struct im_call *c, uint32_t child) { im_error(c, "cancel", "service-unavailable"); }

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
	strcpy(f->cfg->vhost[0].domain, "example.com");
	f->cfg->nvhost = 1;
	f->cfg->im.privacy_max_items = 5;
	f->cfg->im.roster_max = 100;
	if (im_init(&f->ctx, f->st, f->cfg) < 0)
		abort();
	fake_posts_clear();
	fake_roster_clear();
	fake_user_sessions = 1;
	fake_offline_info_calls = fake_offline_items_calls = 0;
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

void fx_request(struct im_fx *f, unsigned type, uint64_t handle, const char *jid, const char *stanza)
{
	struct im_req h;
	memset(&h, 0, sizeof(h));
	h.type = (uint8_t)type;
	h.jid_len = (uint16_t)strlen(jid);
	h.len = stanza ? (uint32_t)strlen(stanza) : 0;
	im_serve(&f->ctx, handle, &h, jid, stanza ? stanza : "", &fake_out);
}

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
