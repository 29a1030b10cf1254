/* A test rig for the IM control plane (control/im.h): a real LMDB store in
 * a mkdtemp directory, a configuration with one domain, and a fake struct
 * im_out that records every post so that a test can read what the control
 * thread sent and to whom. Header-only: each test includes it once. */
#ifndef STANZA_TESTS_IM_FAKE_H
#define STANZA_TESTS_IM_FAKE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "control/account.h"
#include "control/im.h"
#include "net/net-t.h"
#include "store/store.h"

#define FX_DOMAIN "example.com"
#define FX_ITER   4096u
#define FX_POSTS  512

enum post_kind { P_TO_SESSION = 1, P_ROUTE, P_EVENT, P_USER_EVENT, P_KICK };

struct post {
	enum post_kind kind;
	uint64_t handle;
	unsigned ev;
	char *data;       /* NUL-terminated copy */
	size_t len;
	char cond[64];    /* P_KICK */
};

struct fx {
	char root[64];
	char dir[96];
	struct store *st;
	struct server_config *cfg;
	struct im_ctx im;
	struct im_out out;
	struct post p[FX_POSTS];
	int n;
	unsigned route_takes;   /* what route() answers */
	unsigned avail;         /* what available() answers */
};

static inline void fx_record(struct fx *f, enum post_kind k, uint64_t h, unsigned ev, const void *d, size_t len)
{
	if (f->n >= FX_POSTS)
		return;
	struct post *p = &f->p[f->n++];
	memset(p, 0, sizeof(*p));
	p->kind = k;
	p->handle = h;
	p->ev = ev;
	p->data = malloc(len + 1);
	memcpy(p->data, d, len);
	p->data[len] = '\0';
	p->len = len;
}

static inline void fx_to_session(void *srv, uint64_t h, const void *st, size_t len)
{
	fx_record(srv, P_TO_SESSION, h, 0, st, len);
}

static inline unsigned fx_route(void *srv, const void *st, size_t len)
{
	struct fx *f = srv;
	fx_record(f, P_ROUTE, 0, 0, st, len);
	return f->route_takes;
}

static inline void fx_event(void *srv, uint64_t h, unsigned ev, const void *pl, size_t len)
{
	fx_record(srv, P_EVENT, h, ev, pl, len);
}

static inline unsigned fx_user_event(void *srv, const char *bare, size_t blen, unsigned ev, const void *pl, size_t len)
{
	(void)bare;
	(void)blen;
	fx_record(srv, P_USER_EVENT, 0, ev, pl, len);
	return 0;
}

static inline unsigned fx_available(void *srv, const char *bare, size_t blen, bool nonneg)
{
	(void)bare;
	(void)blen;
	(void)nonneg;
	return ((struct fx *)srv)->avail;
}

static inline size_t fx_kick(void *srv, const char *jid, size_t len, const char *cond)
{
	struct fx *f = srv;
	fx_record(f, P_KICK, 0, 0, jid, len);
	snprintf(f->p[f->n - 1].cond, sizeof(f->p[0].cond), "%s", cond);
	return 1;
}

static inline void fx_clear(struct fx *f)
{
	for (int i = 0; i < f->n; i++)
		free(f->p[i].data);
	f->n = 0;
}

static inline int fx_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static struct fx *fx_new(void)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	strcpy(f->root, "/tmp/stanzad-im-XXXXXX");
	if (!mkdtemp(f->root))
		return NULL;
	snprintf(f->dir, sizeof(f->dir), "%s/db", f->root);
	if (store_open(&f->st, f->dir, NULL) != STORE_OK)
		return NULL;
	f->cfg = calloc(1, sizeof(*f->cfg));
	xml_limits_default(&f->cfg->xml);
	f->cfg->nvhost = 1;
	strcpy(f->cfg->vhost[0].domain, FX_DOMAIN);
	f->cfg->scram_iterations = FX_ITER;
	f->cfg->im.roster_max = 2000;
	f->cfg->im.pending_max = 100;
	f->cfg->im.offline_max = 1000;
	f->cfg->im.privacy_max_items = 1000;
	f->cfg->im.register_enabled = 1;
	f->cfg->im.register_per_hour = 5;
	if (im_init(&f->im, f->st, f->cfg) < 0)
		return NULL;
	f->out.srv = f;
	f->out.to_session = fx_to_session;
	f->out.route = fx_route;
	f->out.event = fx_event;
	f->out.user_event = fx_user_event;
	f->out.available = fx_available;
	f->out.kick = fx_kick;
	return f;
}

static inline void fx_free(struct fx *f)
{
	fx_clear(f);
	im_free(&f->im);
	store_close(f->st);
	nftw(f->root, fx_rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f->cfg);
	free(f);
}

/* One request through the real dispatcher. */
static inline void fx_req_peer(struct fx *f, enum im_req_type type, uint64_t handle, const char *jid, uint32_t flags,
			const char *stanza, const struct net_addr *peer)
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
	im_serve(&f->im, handle, &h, jid, stanza ? stanza : "", &f->out);
}

static inline void fx_req(struct fx *f, enum im_req_type type, uint64_t handle, const char *jid, uint32_t flags,
		   const char *stanza)
{
	fx_req_peer(f, type, handle, jid, flags, stanza, NULL);
}

static inline int fx_add_account(struct fx *f, const char *jid, const char *pass)
{
	return account_add(f->st, jid, pass, strlen(pass), FX_ITER);
}

/* The stanza of an IM_EV_SEND payload (after struct im_send_hdr). */
static inline const char *fx_send_stanza(const struct post *p, struct im_send_hdr *h)
{
	memcpy(h, p->data, sizeof(*h));
	return p->data + sizeof(*h);
}

static inline uint64_t fx_queue_len(struct fx *f, const char *bare)
{
	uint64_t n = 0;
	if (store_queue_count(f->st, NULL, STORE_T_OFFLINE, bare, strlen(bare), &n) != STORE_OK)
		return UINT64_MAX;
	return n;
}

#endif
