/* Test doubles for the IM control plane's unit tests (test_privacy,
 * test_services): a struct im_out that records what the control plane
 * posts, a scripted roster, and weak stand-ins for every module entry
 * point, so that a test links im.c and the one module it tests from
 * source and the real module's definitions win over these. */
#ifndef STANZA_TESTS_IM_FAKES_H
#define STANZA_TESTS_IM_FAKES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "control/im.h"

enum fake_post_kind { POST_SESSION = 'S', POST_ROUTE = 'R', POST_EVENT = 'E', POST_USER = 'U' };

struct fake_post {
	int kind;                 /* enum fake_post_kind */
	uint64_t handle;          /* POST_SESSION, POST_EVENT */
	char bare[256];           /* POST_USER */
	unsigned ev;              /* POST_EVENT, POST_USER: IM_EV_* */
	uint8_t *data;            /* malloc'd copy, NUL-terminated */
	size_t len;
};

#define FAKE_POSTS_MAX 256
extern struct fake_post fake_posts[FAKE_POSTS_MAX];
extern size_t fake_nposts;
extern unsigned fake_user_sessions;   /* what user_event returns */

/* The recorded im_out. */
extern const struct im_out fake_out;
void fake_posts_clear(void);

/* Roster: owner's contact with subscription bits and one group ("" none). */
void fake_roster_add(const char *owner, const char *contact, unsigned sub, const char *group);
void fake_roster_clear(void);

/* Calls of offline_disco_info / offline_disco_items seen. */
extern unsigned fake_offline_info_calls, fake_offline_items_calls;

/* One decoded compiled rule. */
struct fake_rule {
	uint8_t match, action, kinds, subs;
	char jid[512];
};
/* Decode n struct im_rule records from p; returns the bytes used, or 0
 * for a malformed buffer. */
size_t fake_rules_decode(const uint8_t *p, size_t len, uint32_t n, struct fake_rule *out, size_t cap);

/* A control plane over a real LMDB store in a mkdtemp directory, one
 * vhost "example.com". */
struct im_fx {
	char root[64];
	char dir[96];
	struct store *st;
	struct server_config *cfg;
	struct im_ctx ctx;
};
struct im_fx *fx_new(void);
void fx_free(struct im_fx *f);
/* An account with throwaway credentials. */
void fx_account(struct im_fx *f, const char *bare);
/* im_serve one request; jid: the session's full JID. */
void fx_request(struct im_fx *f, unsigned type, uint64_t handle, const char *jid, const char *stanza);
static inline void fx_stanza(struct im_fx *f, uint64_t handle, const char *jid, const char *stanza)
{
	fx_request(f, IM_REQ_STANZA, handle, jid, stanza);
}
/* The last post of kind k (and ev, when k is an event kind and ev != 0),
 * or NULL. */
struct fake_post *fake_last(int kind, unsigned ev);
/* How many posts of kind k with event ev (0: any). */
size_t fake_count(int kind, unsigned ev);

#endif
