/* Test doubles for the IM control plane's unit tests (test_offline,
 * test_register, test_privacy, test_services): a struct im_out that
 * records what the control plane posts, and a control plane over a real
 * LMDB store in a mkdtemp directory, one vhost "example.com".
 *
 * test_privacy and test_services link im.c and the one module they test
 * from source, with im_stubs.c (im_stubs.h) for the others; the others
 * link the real modules (dep_im). */
#ifndef STANZA_TESTS_IM_FAKES_H
#define STANZA_TESTS_IM_FAKES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "control/im.h"
#include "net/net-t.h"

#define FX_DOMAIN "example.com"
#define FX_ITER   4096u

enum fake_post_kind { POST_SESSION = 'S', POST_ROUTE = 'R', POST_EVENT = 'E', POST_USER = 'U', POST_KICK = 'K' };

struct fake_post {
	int kind;                 /* enum fake_post_kind */
	uint64_t handle;          /* POST_SESSION, POST_EVENT */
	char bare[256];           /* POST_USER */
	unsigned ev;              /* POST_EVENT, POST_USER: IM_EV_* */
	char *data;               /* malloc'd copy, NUL-terminated; POST_KICK: the JID */
	size_t len;
	char cond[64];            /* POST_KICK: the stream error condition */
};

#define FAKE_POSTS_MAX 512
extern struct fake_post fake_posts[FAKE_POSTS_MAX];
extern size_t fake_nposts;

/* What the recorded im_out answers (fx_new sets each to 1): route() the
 * sessions that took a stanza, user_event() the sessions of the user,
 * available() its available sessions. */
extern unsigned fake_route_takes;
extern unsigned fake_user_sessions;
extern unsigned fake_available;

/* The recorded im_out. */
extern const struct im_out fake_out;
void fake_posts_clear(void);

/* The last post of kind k (and ev, when k is an event kind and ev != 0),
 * or NULL. */
struct fake_post *fake_last(int kind, unsigned ev);
/* How many posts of kind k with event ev (0: any). */
size_t fake_count(int kind, unsigned ev);

/* One decoded compiled rule. */
struct fake_rule {
	uint8_t match, action, kinds, subs;
	char jid[512];
};
/* Decode n struct im_rule records from p; returns the bytes used, or 0
 * for a malformed buffer. */
size_t fake_rules_decode(const void *p, size_t len, uint32_t n, struct fake_rule *out, size_t cap);

/* The stanza of an IM_EV_SEND payload (after struct im_send_hdr). */
const char *fx_send_stanza(const struct fake_post *p, struct im_send_hdr *h);

/* A control plane over a real LMDB store in a mkdtemp directory, one
 * vhost FX_DOMAIN; the posts cleared, the answers above set to 1. The
 * configuration can be changed at any time (it is read where used). */
struct im_fx {
	char root[64];
	char dir[96];
	struct store *st;
	struct server_config *cfg;
	struct im_ctx ctx;
};
struct im_fx *fx_new(void);
void fx_free(struct im_fx *f);

/* An account with a password (SCRAM, FX_ITER iterations); ACCOUNT_OK. */
int fx_add_account(struct im_fx *f, const char *jid, const char *pass);
/* An account with throwaway credentials. */
void fx_account(struct im_fx *f, const char *bare);

/* im_serve one request from peer (NULL: none); jid: the session's full
 * JID; stanza NULL: empty. */
void fx_req_peer(struct im_fx *f, unsigned type, uint64_t handle, const char *jid, uint32_t flags, const char *stanza,
		 const struct net_addr *peer);
static inline void fx_req(struct im_fx *f, unsigned type, uint64_t handle, const char *jid, uint32_t flags,
			  const char *stanza)
{
	fx_req_peer(f, type, handle, jid, flags, stanza, NULL);
}
static inline void fx_stanza(struct im_fx *f, uint64_t handle, const char *jid, const char *stanza)
{
	fx_req(f, IM_REQ_STANZA, handle, jid, 0, stanza);
}

/* How many offline messages bare has stored (UINT64_MAX: store error). */
uint64_t fx_queue_len(struct im_fx *f, const char *bare);

#endif
