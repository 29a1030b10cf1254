/* What the router asks of the layers above it. The router never includes a
 * control/ header: cmd/ fills a struct router_hooks with control/'s
 * functions and hands it to server_new. Every hook documents the thread it
 * runs on. Worker-thread hooks must not block: anything slow (a store read
 * that may fault, PBKDF2) is returned as a request that the router posts to
 * the control thread, whose answer comes back to the same session.
 */
#ifndef STANZA_ROUTER_HOOKS_H
#define STANZA_ROUTER_HOOKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- authentication (SASL, RFC 6120 section 6) ------------------------- */

/* Channel-binding types as bits (the same values as control/'s enum
 * sasl_cb, which cmd/ checks at compile time). */
#define AUTH_CB_TLS_EXPORTER          1u
#define AUTH_CB_TLS_SERVER_END_POINT  2u
#define AUTH_CB_TLS_UNIQUE            4u

#define AUTH_DATA_MAX    1024u   /* challenge / success additional data, decoded */
#define AUTH_REQ_MAX     4096u   /* a request to the control thread */
#define AUTH_ANSWER_MAX  1024u   /* an answer from it */
#define AUTH_STATE_MAX   1024u   /* per-session state the hooks keep during the exchange */

/* What the connection offers; filled by the router before each call. */
struct auth_env {
	bool tls;                        /* TLS established on this connection */
	unsigned cb_avail;               /* AUTH_CB_* this connection can provide */
	const char *domain;              /* the vhost the stream is for (NUL-terminated) */
	const uint8_t *cb_exporter;      /* tls-exporter data (cb_avail & AUTH_CB_TLS_EXPORTER) */
	size_t cb_exporter_len;
	const uint8_t *cb_endpoint;      /* tls-server-end-point data */
	size_t cb_endpoint_len;
	const uint8_t *cb_unique;        /* tls-unique data */
	size_t cb_unique_len;
	const uint8_t *peer;             /* the client's address bytes (struct net_addr), for throttling */
	size_t peer_len;
};

enum auth_step {
	AUTH_CHALLENGE = 1,   /* send <challenge> with out->data */
	AUTH_SUCCESS,         /* send <success> with out->data; out->user is the authenticated localpart */
	AUTH_FAILURE,         /* send <failure> with out->condition; the exchange is over */
	AUTH_PENDING,         /* post out->req to the control thread; resume with its answer */
};

struct auth_out {
	uint32_t len;                    /* of data */
	uint8_t data[AUTH_DATA_MAX];     /* CHALLENGE / SUCCESS: raw bytes, the router base64-encodes */
	const char *condition;           /* FAILURE: RFC 6120 6.5 element name ("not-authorized") */
	uint32_t delay_ms;               /* FAILURE: hold the <failure/> back this long (throttling
					  * repeated failures from one address); 0: at once */
	uint16_t user_len;
	char user[1024];                 /* SUCCESS: the localpart, prepared (nodeprep), NUL-terminated */
	uint32_t req_len;
	uint8_t req[AUTH_REQ_MAX];       /* PENDING: opaque to the router */
};

struct router_auth_hooks {
	/* Any thread. The mechanisms to offer on a connection, in order of
	 * preference, as NUL-terminated names into names[0..cap). */
	size_t (*mechanisms)(bool tls, unsigned cb_avail, const char **names, size_t cap);

	/* Worker thread. <auth mechanism='mech'> with its decoded initial
	 * response (has_data false: the element was empty; "=" gives
	 * has_data with len 0). st: AUTH_STATE_MAX bytes the router keeps for
	 * this session until the exchange ends, zeroed before start. */
	enum auth_step (*start)(void *st, const char *mech, const uint8_t *data, size_t len, bool has_data,
				const struct auth_env *env, struct auth_out *out);

	/* Worker thread. <response> with its decoded data. */
	enum auth_step (*response)(void *st, const uint8_t *data, size_t len,
				   const struct auth_env *env, struct auth_out *out);

	/* Worker thread. The control thread's answer to the last PENDING. */
	enum auth_step (*resume)(void *st, const uint8_t *answer, size_t len,
				 const struct auth_env *env, struct auth_out *out);

	/* Worker thread. The exchange ended without success (abort, error,
	 * disconnect): wipe secrets in st. */
	void (*end)(void *st);

	/* Control thread. Serve one PENDING request: write the answer into
	 * ans[0..cap) and return its length. May block (store reads, PBKDF2).
	 * peer: the client's address bytes (for per-address throttling),
	 * peer_len 0 if unknown. */
	size_t (*serve)(const uint8_t *req, size_t len, const uint8_t *peer, size_t peer_len,
			uint8_t *ans, size_t cap);
};

/* ---- IM and presence (RFC 6121 and the XEPs; control/im*.c) ------------
 *
 * The split. Workers keep what every stanza needs, per session: the user's
 * contacts with their subscription state (who gets our presence broadcast,
 * whom we probe), the compiled privacy/block rules, the session's last
 * presence and directed-presence list, and flags (requested the roster,
 * carbons, CSI inactive). The control thread keeps everything durable:
 * rosters (cached, loaded lazily), pending subscriptions, offline
 * messages, vCards, private XML, privacy and block lists, last activity,
 * registration. Workers post it requests (MSG_IM_REQ); it answers through
 * struct im_out, whose functions post records to the workers (never touch
 * a session directly).
 *
 * Every store write is committed before the answer that acknowledges it
 * (result iq, roster push) is posted: a change the client saw
 * acknowledged survives kill -9.
 *
 * XEP-0198 acknowledgements (section 4: 'handled' means the server took
 * responsibility). A message stored offline has no answer of its own: the
 * only thing that acknowledges it is the sender's <a h='...'/>. So a
 * session with stream management marks each IM_REQ_STANZA it posts for one
 * of its stanzas (ring flag MSGF_IM_CONFIRM, its position in im_req.sm_h);
 * after serve returned (and after flush, when there is one) the router's
 * control side posts a completion record (MSG_IM_DONE) back, and the
 * session reports as handled only the stanzas before the oldest one
 * whose request is not complete yet (router/sm.h). serve therefore commits
 * what a request stores before it returns, or before flush returns when
 * the module batches (see flush below).
 */

/* What the router asks of the control thread (struct im_req.type). */
enum im_req_type {
	/* A resource was bound (jid: the full JID). Answer with exactly one
	 * IM_EV_STATE to the handle; the router holds the bind result (and
	 * the session's further input) until it arrives. */
	IM_REQ_SESSION_START = 1,
	/* The session ended (after unbind; jid: full JID). stanza: its last
	 * presence (the unavailable one it sent, or one the router made up),
	 * for XEP-0012 last activity when it was the user's last resource.
	 * No answer. */
	IM_REQ_SESSION_END,
	/* A stanza for the control plane (jid: the session's full JID, or of
	 * the user the stanza is for; stanza: 'from' already stamped, 'to'
	 * prepared). These are:
	 *   - iq get/set to the server's domain or to a local bare JID (own
	 *     account or another's: vcard-temp, last activity), except ping;
	 *   - presence subscribe/subscribed/unsubscribe/unsubscribed the
	 *     session sends (outbound, RFC 6121 3);
	 *   - presence probe for a local contact with no available resource
	 *     (made up by the router at initial presence);
	 *   - message of type normal/chat (or none) to a local user with no
	 *     available resource with priority >= 0 (offline storage,
	 *     RFC 6121 8.5.2.1.1 / 8.5.2.2.1; also for unknown users: the
	 *     control plane answers <service-unavailable/>).
	 * Answers (results, errors, pushes) go out through im_out. */
	IM_REQ_STANZA,
	/* The session sent its initial presence (jid: full JID; stanza:
	 * that presence). Deliver pending subscription requests (RFC 6121
	 * 3.1.3) and, unless the session uses XEP-0013 or the presence has a
	 * negative priority (RFC 6121 8.5.2.1.1: such a resource gets no
	 * messages for the bare JID; IM_REQ_OFFLINE follows when it goes
	 * non-negative), the offline messages (XEP-0160, with XEP-0203
	 * delay). */
	IM_REQ_INITIAL_PRESENCE,
	/* An iq on a stream that is not authenticated yet (jid empty):
	 * XEP-0077 in-band registration. Answer with im_out.to_session. */
	IM_REQ_PREAUTH_IQ,
	/* XEP-0198: a session died without being resumed; stanza: the
	 * stanzas it had not acknowledged, concatenated. Messages among them
	 * go to offline storage (or to another available resource) so that
	 * nothing the server accepted is lost. No answer. */
	IM_REQ_UNACKED,
	/* XEP-0198 resumption moved a session to a new handle (the
	 * request's; jid: the full JID, unchanged). stanza: the old handle,
	 * 8 bytes in host order (not XML). State the control plane keeps per
	 * handle (the XEP-0016 active list, XEP-0013 flexible retrieval)
	 * follows it. Posted after the routing table names the new handle.
	 * No answer. */
	IM_REQ_SESSION_MOVED,
	/* A resource whose available presence had a negative priority (no
	 * offline messages: RFC 6121 8.5.2.1.1, XEP-0160 section 3) now has
	 * priority >= 0 (jid: full JID; stanza: that presence): deliver the
	 * offline messages as IM_REQ_INITIAL_PRESENCE would, without the
	 * subscription requests (those went at the initial presence). */
	IM_REQ_OFFLINE,
};

/* The header of a MSG_IM_REQ record, followed by jid[jid_len] and
 * stanza[len]. arg of the record is the session handle (0: none). */
struct im_req {
	uint8_t type;          /* enum im_req_type */
	uint8_t vhost;         /* index of the session's domain in cfg.vhost */
	uint16_t jid_len;
	uint32_t flags;        /* IM_SF_*: the session's flags when it posted */
	uint32_t len;          /* stanza bytes */
	uint8_t peer[20];      /* struct net_addr of the client (registration rate limits) */
	uint32_t sm_h;         /* router-owned (XEP-0198): the position of the stanza that caused
				* the request, echoed in its completion record; not for serve */
};

/* Session flags the control plane may read (im_req.flags) and set or
 * clear (IM_EV_SEND). */
#define IM_SF_AVAILABLE   0x01u   /* sent available presence */
#define IM_SF_ROSTER      0x02u   /* requested the roster: receives roster pushes (RFC 6121 2.1.6) */
#define IM_SF_BLOCKLIST   0x04u   /* requested the block list: receives block pushes (XEP-0191 3.3) */
#define IM_SF_CARBONS     0x08u   /* XEP-0280 enabled */
#define IM_SF_OFFLINE_FLEX 0x10u  /* XEP-0013 used before initial presence: no automatic offline delivery */
#define IM_SF_INACTIVE    0x20u   /* XEP-0352 inactive (router-owned: read only) */
#define IM_SF_SM          0x40u   /* XEP-0198 enabled (router-owned: read only) */

/* Control → session events (MSG_IM_EV records; flags = the event type,
 * arg = the handle). Payload layouts below; "stanza" is complete stanza
 * bytes, and a push stanza without 'to' gets the session's full JID
 * stamped by the worker. */
enum im_ev_type {
	/* Answer to IM_REQ_SESSION_START: struct im_state_hdr, then the
	 * contacts (struct im_contact each) then the rules (struct im_rule
	 * each). The worker finishes the bind. */
	IM_EV_STATE = 1,
	/* One contact changed: struct im_contact (sub = IM_SUB_REMOVE: gone),
	 * then an optional roster push stanza (without 'to'), written only
	 * if the session has IM_SF_ROSTER. */
	IM_EV_CONTACT,
	/* The privacy/block rules changed: struct im_rules_hdr, the rules,
	 * then an optional block push stanza (without 'to') written only if
	 * the session has IM_SF_BLOCKLIST. */
	IM_EV_RULES,
	/* struct im_send_hdr then a stanza: apply set/clear to the session's
	 * IM_SF_* flags, then write the stanza (if any) to the client. For
	 * iq results that change the session (roster get → IM_SF_ROSTER,
	 * carbons enable → IM_SF_CARBONS) and for stanzas delivered to this
	 * session alone (offline messages, pending subscription requests). */
	IM_EV_SEND,
	/* struct im_presence_to: send the session's current presence (if it
	 * is available), or unavailable presence (IM_PT_UNAVAILABLE: always),
	 * from its full JID to jid (bare: all that user's available
	 * resources). After an approval (RFC 6121 3.1.5: the contact's
	 * resources send their presence to the new subscriber) or a
	 * cancellation (3.2.3, 3.3.3: unavailable). IM_PT_PROBE: only if the
	 * session's contact jid has subscription 'from' or 'both' (a probe's
	 * authorisation). */
	IM_EV_PRESENCE_TO,
};

/* Subscription state of a contact, as bits (RFC 6121 3 and appendix A). */
#define IM_SUB_TO          0x01u   /* we receive the contact's presence */
#define IM_SUB_FROM        0x02u   /* the contact receives ours */
#define IM_SUB_PENDING_OUT 0x04u   /* we asked (ask='subscribe') */
#define IM_SUB_PENDING_IN  0x08u   /* the contact asked, we have not answered */
#define IM_SUB_PREAPPROVED 0x10u   /* RFC 6121 3.4 */
#define IM_SUB_REMOVE      0x80u   /* IM_EV_CONTACT: the item was removed */

/* Records in event payloads are packed back to back; each is padded to a
 * multiple of 4 bytes (IM_REC_ALIGN) so the worker can read them in place. */
#define IM_REC_ALIGN(n) (((n) + 3u) & ~3u)

struct im_state_hdr {
	uint32_t ncontacts;
	uint32_t nrules;
	uint32_t flags;          /* IM_STATE_* */
	uint32_t pad;
};
#define IM_STATE_NO_ACCOUNT 1u   /* the account is gone (deleted): the router closes the session */

struct im_contact {
	uint8_t sub;             /* IM_SUB_* */
	uint8_t pad;
	uint16_t len;            /* of the bare JID that follows */
	/* char jid[len], padded */
};

/* One compiled privacy rule (XEP-0016 items and XEP-0191 block list
 * entries share this form and one enforcement path). Rules are tried in
 * order, the first that matches the peer decides; none: allowed.
 * Groups are expanded by the control plane into one IM_MATCH_JID rule
 * per member. */
enum im_match {
	IM_MATCH_ALL = 0,        /* fall-through item */
	IM_MATCH_JID,            /* jid as in XEP-0016 2.1: full, bare, domain/resource or domain */
	IM_MATCH_SUB,            /* the peer's subscription state is in `subs` (IM_SUB_TO|FROM bits;
				  * 0 means 'none') */
};
#define IM_RULE_DENY     0x01u   /* action: deny (else allow) */
#define IM_RULE_BLOCKCMD 0x02u   /* from XEP-0191 (errors carry <blocked/>) */
/* Stanza kinds a rule applies to (XEP-0016 2.1); 0: all of them. */
#define IM_KIND_MESSAGE  0x01u
#define IM_KIND_IQ       0x02u
#define IM_KIND_PRES_IN  0x04u
#define IM_KIND_PRES_OUT 0x08u

struct im_rule {
	uint8_t match;           /* enum im_match */
	uint8_t action;          /* IM_RULE_* */
	uint8_t kinds;           /* IM_KIND_*, 0: all */
	uint8_t subs;            /* IM_MATCH_SUB */
	uint16_t len;            /* of the JID that follows (IM_MATCH_JID) */
	uint16_t pad;
	/* char jid[len], padded */
};

struct im_rules_hdr {
	uint32_t nrules;
	uint32_t pad;
};

struct im_send_hdr {
	uint32_t set;            /* IM_SF_* to set, then */
	uint32_t clear;          /* IM_SF_* to clear */
};

#define IM_PT_UNAVAILABLE 1u
#define IM_PT_PROBE       2u
struct im_presence_to {
	uint16_t flags;          /* IM_PT_* */
	uint16_t len;
	/* char jid[len] */
};

/* How the control thread reaches sessions. Every function posts a record
 * to a worker (the control thread never touches a session); they may
 * block briefly while a ring is full. Control thread only. */
enum im_route_how {
	IM_ROUTE_NORMAL = 0,     /* as if sent by a local entity: RFC 6120 10 / RFC 6121 8 rules */
};
struct im_out {
	void *srv;
	/* Write a complete stanza (final 'from' and 'to') to the session
	 * named by handle, bound or not (pre-auth registration answers). */
	void (*to_session)(void *srv, uint64_t handle, const void *stanza, size_t len);
	/* Deliver a stanza to its 'to' the way a worker would deliver it
	 * from a local sender (bare JID: the RFC 6121 8.5 rules; full JID:
	 * that resource, else the bare JID's rules for messages). Returns
	 * how many sessions took it: 0 lets the caller store a message
	 * offline or drop a presence. Never stores offline itself. */
	unsigned (*route)(void *srv, const void *stanza, size_t len);
	/* One event to one session; to every bound session of a bare JID
	 * (returns how many). */
	void (*event)(void *srv, uint64_t handle, unsigned ev, const void *payload, size_t len);
	unsigned (*user_event)(void *srv, const char *bare, size_t bare_len, unsigned ev,
			       const void *payload, size_t len);
	/* Available sessions of a bare JID (priority >= 0 when nonneg). */
	unsigned (*available)(void *srv, const char *bare, size_t bare_len, bool nonneg);
	/* Close the session(s) of a full or bare JID with a stream error
	 * (account deleted, password changed elsewhere: not-authorized). */
	size_t (*kick)(void *srv, const char *jid, size_t len, const char *condition);
};

struct router_im_hooks {
	/* Control thread. Serve one request (hdr, then jid and stanza as
	 * described for its type) for session `handle`; answer through out.
	 * May block on the store. NULL: the router answers iqs with
	 * <service-unavailable/> and stores nothing (tests of the router
	 * alone). */
	void (*serve)(void *arg, uint64_t handle, const struct im_req *hdr, const char *jid,
		      const char *stanza, const struct im_out *out);
	/* Control thread, optional (NULL: none). Called after a burst of
	 * requests (every one the rings held when the control thread woke)
	 * was served, before the router posts the XEP-0198 completions of
	 * that burst: a module may keep one store write batch open across
	 * the burst's requests (group commit: one durable commit instead of
	 * one per request) and commit it here. serve must still commit
	 * before it posts anything that acknowledges a write (a result, a
	 * push), and before any write of another module. */
	void (*flush)(void *arg, const struct im_out *out);
	void *arg;
	/* Any thread, read only after server_new: the XEP-0115 'ver' of the
	 * server's disco#info (for <c/> in stream features), NUL-terminated;
	 * empty: no <c/>. And whether XEP-0077 registration is offered in
	 * stream features. */
	char caps_ver[64];
	bool register_enabled;
};

struct router_hooks {
	struct router_auth_hooks auth;
	struct router_im_hooks im;
};

#endif
