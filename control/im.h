/* The IM control plane (RFC 6121 and the everyday XEPs): what the control
 * thread does with the router's IM requests (router/hooks.h, "IM and
 * presence", is the contract between the two and comes first).
 *
 * im_serve is the router's im.serve hook. It parses the request's stanza
 * once (a control-thread struct xml_view), classifies it and calls the
 * module that owns it:
 *
 *   roster.c    jabber:iq:roster (get, set, remove, versioning, pushes);
 *               the subscription state machine for outbound
 *               subscribe/subscribed/unsubscribe/unsubscribed and the
 *               inbound side for local contacts (RFC 6121 3, appendix A);
 *               pending requests kept and delivered at login; probes of
 *               offline contacts; the contacts part of IM_EV_STATE.
 *   offline.c   offline storage of messages (quota, XEP-0203 delay),
 *               XEP-0160 delivery at initial presence, XEP-0013 flexible
 *               retrieval, XEP-0198 unacknowledged stanzas of dead
 *               sessions; XEP-0012 last activity (server uptime, last
 *               logout of a contact) and its records.
 *   privacy.c   XEP-0191 blocking command and XEP-0016 privacy lists,
 *               compiled into the router's struct im_rule form (the rules
 *               part of IM_EV_STATE and IM_EV_RULES).
 *   services.c  XEP-0030 disco (server and account) and the XEP-0115 ver,
 *               XEP-0092 version, XEP-0202 time, XEP-0054 vcard-temp,
 *               XEP-0049 private storage, XEP-0280 carbons enable/disable.
 *   register.c  XEP-0077 in-band registration (pre-auth, rate limited per
 *               address), password change and account removal (with every
 *               per-user record: im_purge_user).
 *
 * Everything here runs on the control thread and may block on the store.
 * A module commits its store writes before it posts anything that
 * acknowledges them.
 */
#ifndef STANZA_CONTROL_IM_H
#define STANZA_CONTROL_IM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "parser/jid.h"
#include "parser/xml.h"
#include "router/config-t.h"
#include "router/hooks.h"

struct store;
struct roster_cache;
struct offline_state;
struct privacy_state;
struct services_state;
struct register_state;

/* The control plane's IM state: one per server, control thread only. */
struct im_ctx {
	struct store *store;
	const struct server_config *cfg;   /* live configuration, borrowed */
	time_t started;                    /* server start (XEP-0012 uptime) */
	bool group_commit;                 /* im_flush is the router's flush hook: offline
					    * messages of a burst share one commit */
	struct roster_cache *roster;       /* roster.c */
	struct offline_state *offline;     /* offline.c */
	struct privacy_state *privacy;     /* privacy.c */
	struct services_state *services;   /* services.c */
	struct register_state *reg;        /* register.c */
	/* Parsing: one view for the request being served. */
	struct xml_view view;
	struct xml_token *tok;
	struct xml_ns *ns;
	uint16_t *scope;
};

/* Where a stanza from a session is addressed. */
enum im_to {
	IM_TO_SERVER = 1,    /* the domain (or no 'to' for an iq: the account, see RFC 6120 10.3.3) */
	IM_TO_SELF,          /* the sender's own bare JID (or no 'to' for an iq) */
	IM_TO_USER,          /* another local account's bare or full JID */
	IM_TO_REMOTE,        /* another domain */
};

/* One request being served. */
struct im_call {
	struct im_ctx *ctx;
	const struct im_out *out;
	uint64_t handle;                   /* the session (0: none) */
	const struct im_req *req;
	const char *jid;                   /* the session's full JID (or the user's, see im_req_type) */
	size_t jid_len;
	size_t bare_len;                   /* jid[0..bare_len) is the bare JID */
	const char *stanza;
	size_t len;
	struct xml_view *v;                /* the stanza, parsed (NULL for requests without one) */
	enum im_to to_kind;
	struct jid to;                     /* the prepared 'to' (valid when has_to) */
	bool has_to;
	const char *domain;                /* the session's vhost */
	size_t domain_len;
};

/* ---- im.c: set-up and dispatch --------------------------------------- */

/* 0, or -1 (logged). */
int im_init(struct im_ctx *ctx, struct store *st, const struct server_config *cfg);
void im_free(struct im_ctx *ctx);

/* The router's im.serve hook (arg: the struct im_ctx). */
void im_serve(void *arg, uint64_t handle, const struct im_req *hdr, const char *jid, const char *stanza,
	      const struct im_out *out);
/* The router's im.flush hook: commit what the modules batched over a
 * burst of requests (offline_flush). */
void im_flush(void *arg, const struct im_out *out);

/* ---- helpers for the modules (im.c) ----------------------------------- */

/* Reply to the request's iq: a result with payload (may be NULL: empty
 * result) or an error (RFC 6120 8.3: type and defined condition; never to
 * an error or result). 'from' is the iq's 'to' (or nothing), 'to' the
 * sender. Sent to the requesting session. */
void im_result(struct im_call *c, const char *payload, size_t len);
/* The same result as an IM_EV_SEND to the requesting session: the worker
 * applies set/clear to the session's IM_SF_* flags, then writes the result
 * (blocklist get: IM_SF_BLOCKLIST; carbons enable/disable: IM_SF_CARBONS). */
void im_result_flags(struct im_call *c, uint32_t set, uint32_t clear, const char *payload, size_t len);
void im_error(struct im_call *c, const char *etype, const char *condition);
/* The same, with an application-specific child after the defined
 * condition (e.g. <blocked xmlns='urn:xmpp:blocking:errors'/>). */
void im_error_app(struct im_call *c, const char *etype, const char *condition, const char *app, size_t app_len);

/* Build an error for any stanza (message, presence, iq) in v with 'from'
 * and 'to' swapped, into buf; returns its length (0 if it does not fit or
 * the stanza is itself an error). */
size_t im_build_error(struct xml_view *v, const char *etype, const char *condition, char *buf, size_t cap);

/* XEP-0203 stamp for now or t, "2026-11-22T17:20:00Z" (21 bytes with NUL). */
void im_stamp(time_t t, char out[21]);

/* Store keys: bare JID, NUL, then the rest (see store.h, "To visit one
 * user's records"). Returns the key length or 0 if it does not fit. */
size_t im_key(char *out, size_t cap, const char *bare, size_t bare_len, const char *rest, size_t rest_len);

/* Does a local account exist for this bare JID? */
bool im_account_exists(struct im_ctx *ctx, const char *bare, size_t len);

/* Is this domain one of ours? */
bool im_local_domain(const struct im_ctx *ctx, const char *d, size_t len);

/* The type of the iq in v. */
enum im_iq_kind { IM_IQ_OTHER, IM_IQ_GET, IM_IQ_SET };
enum im_iq_kind im_iq_kind(struct xml_view *v);

/* Attribute `name` (no namespace) of el decoded into buf: 1, 0 when absent,
 * -1 when longer than cap - 1. NUL-terminated. */
int im_attr_get(struct xml_view *v, uint32_t el, const char *name, char *buf, size_t cap, size_t *len);

/* ---- the modules' entry points (each in its own file) ----------------- */

/* roster.c */
int roster_init(struct im_ctx *ctx);
void roster_free(struct im_ctx *ctx);
void roster_iq(struct im_call *c, uint32_t child);
/* presence subscribe/subscribed/unsubscribe/unsubscribed from the session,
 * and probes for offline contacts */
void roster_presence(struct im_call *c);
/* Append the contacts of c's user to buf as struct im_contact records
 * (IM_REC_ALIGN padded) from *len on; returns how many, or -1 if cap is too
 * small. */
int roster_state(struct im_call *c, uint8_t *buf, size_t cap, size_t *len);
/* Pending subscription requests to deliver at initial presence. */
void roster_initial_presence(struct im_call *c);
/* The subscription state c's user has with peer (IM_SUB_* bits), for
 * privacy lists' subscription and group items. */
unsigned roster_sub_of(struct im_ctx *ctx, const char *bare, size_t bare_len, const char *peer, size_t peer_len);
/* Call fn for every contact of bare in roster group `group`. */
void roster_group_members(struct im_ctx *ctx, const char *bare, size_t bare_len, const char *group, size_t glen,
			  void (*fn)(void *arg, const char *jid, size_t len), void *arg);
/* The account of c's user goes away (XEP-0077 3.2): cancel its
 * subscriptions with local contacts both ways (their rosters, pushes and
 * presence as for RFC 6121 2.5.2). Before the records are deleted. */
void roster_cancel_all(struct im_call *c);
/* Delete every roster and pending record of a user (account removal). */
int roster_purge(struct im_ctx *ctx, const char *bare, size_t len);
/* How many rosters the cache keeps (default 4096; tests shrink it). */
void roster_cache_limit(struct im_ctx *ctx, unsigned max);

/* offline.c */
int offline_init(struct im_ctx *ctx);
void offline_free(struct im_ctx *ctx);
void offline_message(struct im_call *c);           /* a message for a user with no available resource */
void offline_iq(struct im_call *c, uint32_t child); /* XEP-0013 */
void offline_initial_presence(struct im_call *c);  /* XEP-0160 */
void offline_unacked(struct im_call *c);           /* XEP-0198 leftovers */
void last_iq(struct im_call *c, uint32_t child);    /* XEP-0012 */
void last_session_end(struct im_call *c);
/* The last logout of bare: time and status; false if never. */
bool last_get(struct im_ctx *ctx, const char *bare, size_t len, time_t *when, char *status, size_t cap,
	      size_t *status_len);
int offline_purge(struct im_ctx *ctx, const char *bare, size_t len);
/* IM_REQ_SESSION_MOVED: c->handle replaces old for XEP-0013 tracking. */
void offline_session_moved(struct im_call *c, uint64_t old);
/* Commit the offline messages batched since the last flush (group commit,
 * router/hooks.h im.flush). Any module that writes to the store, and
 * anything that reads what offline.c wrote, calls it first. */
void offline_flush(struct im_ctx *ctx, const struct im_out *out);
/* XEP-0013 2.2, 2.3: services.c's disco#info and disco#items handlers call
 * these for a query whose node is OFFLINE_NODE (query: the token of the
 * <query/> element). They answer the iq themselves: to the own account
 * (IM_TO_SELF) the message count or the headers, and flag the session
 * IM_SF_OFFLINE_FLEX (no flood at initial presence); from anyone else
 * <forbidden/>. */
#define OFFLINE_NODE "http://jabber.org/protocol/offline"
void offline_disco_info(struct im_call *c, uint32_t query);
void offline_disco_items(struct im_call *c, uint32_t query);

/* privacy.c */
int privacy_init(struct im_ctx *ctx);
void privacy_free(struct im_ctx *ctx);
void blocking_iq(struct im_call *c, uint32_t child); /* XEP-0191 */
void privacy_iq(struct im_call *c, uint32_t child);  /* XEP-0016 */
/* Append c's user's compiled rules (struct im_rule records) to buf; returns
 * how many or -1. */
int privacy_state(struct im_call *c, uint8_t *buf, size_t cap, size_t *len);
/* The user's roster changed (groups or subscriptions that rules expand):
 * recompile and send IM_EV_RULES if the rules differ. */
void privacy_roster_changed(struct im_ctx *ctx, const struct im_out *out, const char *bare, size_t len);
int privacy_purge(struct im_ctx *ctx, const char *bare, size_t len);
/* IM_REQ_SESSION_END: forget the session's active list (XEP-0016). */
void privacy_session_end(struct im_call *c);
/* A session of c's user now lives under c->handle instead of old (XEP-0198
 * resumption): its active list moves with it (IM_REQ_SESSION_MOVED). */
void privacy_session_moved(struct im_call *c, uint64_t old);
/* For stanzas to bare that no session of it decides (offline storage,
 * subscription requests to a user with no session): what its default rules
 * (block list, then the default list: XEP-0016 2.2 rule 2) say about one
 * from peer (a full or bare JID) of kind IM_KIND_* (0: a stanza that only
 * items blocking everything stop, e.g. a subscription request). 0: allowed;
 * else IM_RULE_DENY, with IM_RULE_BLOCKCMD when the block list stopped it
 * (XEP-0191 3.3: presence silently dropped, message and iq get/set answered
 * <service-unavailable/>). Reads the store. */
unsigned privacy_check_in(struct im_ctx *ctx, const char *bare, size_t bare_len, unsigned kind, const char *peer,
			  size_t peer_len);

/* services.c */
int services_init(struct im_ctx *ctx);
void services_free(struct im_ctx *ctx);
void disco_info_iq(struct im_call *c, uint32_t child);
void disco_items_iq(struct im_call *c, uint32_t child);
void version_iq(struct im_call *c, uint32_t child);
void time_iq(struct im_call *c, uint32_t child);
void vcard_iq(struct im_call *c, uint32_t child);
void private_iq(struct im_call *c, uint32_t child);
void carbons_iq(struct im_call *c, uint32_t child);
/* XEP-0115 'ver' of the server's disco#info into out (NUL-terminated). */
void services_caps_ver(char *out, size_t cap);
/* XEP-0115 5.1 over any identities ("category/type/lang/name") and
 * features: base64 SHA-1 into out (NUL-terminated); its length, 0 if cap is
 * too small. services_caps_ver is this over the server's disco#info. */
size_t services_caps_hash(const char *const *identities, size_t nid, const char *const *features, size_t nfeat,
			  char *out, size_t cap);
int services_purge(struct im_ctx *ctx, const char *bare, size_t len);

/* register.c */
int register_init(struct im_ctx *ctx);
void register_free(struct im_ctx *ctx);
void register_iq(struct im_call *c, uint32_t child);        /* authenticated: password change, removal */
void register_preauth_iq(struct im_call *c, uint32_t child); /* IM_REQ_PREAUTH_IQ */
/* Tests: move the registration rate limiter's clock forward by ms. */
void register_clock_skew(struct im_ctx *ctx, int64_t ms);

/* Remove an account and everything kept for it (roster, pending, offline,
 * privacy, vcard, private, last). 0 or -1. */
int im_purge_user(struct im_ctx *ctx, const char *bare, size_t len);

#endif
