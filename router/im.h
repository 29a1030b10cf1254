/* The worker side of IM and presence (RFC 6121 and the everyday XEPs): the
 * per-session IM state and everything the workers do without the control
 * thread. The protocol with the control plane is router/hooks.h, "IM and
 * presence".
 *
 * What lives here, per bound session (struct im_sess, one allocation made
 * at bind, freed at close; NULL when the server runs without an im hook):
 *   - contacts: bare JID -> IM_SUB_* bits, an open-addressing hash table
 *     over a string pool (who gets our presence, whom we probe, privacy
 *     subscription items, probe authorisation);
 *   - the compiled privacy/block rules (struct im_rule records, in order);
 *   - the last presence the session broadcast (its bytes, 'from' stamped,
 *     no 'to'), the directed-presence recipients (RFC 6121 4.6);
 *   - IM_SF_* flags, XEP-0352 held presence, XEP-0199 idle-ping state.
 *
 * The hot path (a message between two online sessions without rules, not
 * CSI-inactive) never comes here: struct session's imf byte is zero for
 * such a session and deliver.c writes to it directly.
 *
 * Every function runs on the worker that owns the session, unless it says
 * otherwise.
 */
#ifndef STANZA_ROUTER_IM_H
#define STANZA_ROUTER_IM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include "router/router-t.h"

struct xml_view;
struct im_sess;

/* struct session.imf: why a delivery to the session must look at it
 * (zero: write it straight out). */
#define IMG_WAIT     0x01u   /* bind waiting for IM_EV_STATE: stanzas are queued */
#define IMG_RULES    0x02u   /* privacy rules: inbound stanzas are checked */
#define IMG_INACTIVE 0x04u   /* XEP-0352 inactive: presence is held back */
#define IMG_HELD     0x08u   /* presence is held: flush it before anything else */

/* Is the im hook set (control plane present)? Any thread. */
bool im_enabled(const struct server *srv);

/* ---- session life ------------------------------------------------------ */

/* A resource was just bound (s->jid is the full JID). With the im hook:
 * allocate the session's state, post IM_REQ_SESSION_START and keep
 * `result` (the bind iq result, len bytes) until IM_EV_STATE; returns true
 * (the caller sends nothing). Without the hook, or out of memory: false
 * (the caller sends the result now). */
bool im_bind(struct session *s, const char *result, size_t len);

/* The session is closing (after unbind and the unavailable broadcast):
 * post IM_REQ_SESSION_END with its last presence. Idempotent. */
void im_session_end(struct session *s);

/* Free the state (session_free): IM_REQ_SESSION_END first if not sent. */
void im_sess_free(struct session *s);

/* The session's IM state moved to another session (XEP-0198 resumption,
 * after im_sess_export): free it without IM_REQ_SESSION_END. */
void im_sess_moved(struct session *s);

/* A MSG_IM_EV record for session s (complete, fragments reassembled). */
void im_event(struct session *s, unsigned ev, const uint8_t *p, size_t len);

/* ---- requests to the control thread -------------------------------------- */

/* Post a MSG_IM_REQ: type, the JID (jid_len bytes) and a stanza given as
 * iovecs. handle 0: no session (s may be NULL, then vhost 0 and no peer).
 * The whole record must fit in a ring record (im_req_max): a larger one
 * is not posted and false is returned (IM_REQ_UNACKED callers split
 * their stanzas over several requests). */
bool im_post_req(struct worker *w, struct session *s, unsigned type, const char *jid, size_t jid_len,
		 const struct iovec *iov, int iovcnt);
size_t im_req_max(const struct worker *w);

/* ---- delivery to a session (deliver.c) ------------------------------------ */

/* What deliver.c knows about a stanza it writes to a session; kind < 0:
 * unknown, im_deliver parses the bytes (a record from a ring). */
struct im_peer {
	int kind;                 /* enum kind (router.h) */
	int type;                 /* enum stype */
	const char *from;         /* the sender's JID as stamped */
	size_t from_len;
	const char *to;           /* the 'to' as addressed (NULL: the session's JID) */
	size_t to_len;
	struct xml_view *v;       /* the stanza's view (its id for a bounce), NULL if none */
};

/* Deliver to session d when d->imf is non-zero: queue while the bind
 * waits, enforce inbound privacy rules (XEP-0016 / XEP-0191: message and
 * iq get/set bounce with <service-unavailable/>, presence is dropped),
 * hold presence for an inactive client (XEP-0352), flush what is held
 * before anything else. */
void im_deliver(struct session *d, const struct iovec *iov, int n, const struct im_peer *p);

/* Write one stanza to the client (held presence first). */
void im_write(struct session *s, const struct iovec *iov, int n);

/* ---- privacy (XEP-0016 section 2, XEP-0191 3.4-3.5) ------------------------ */

enum im_verdict { IM_ALLOW = 0, IM_DENY, IM_DENY_BLOCKED /* a XEP-0191 rule: errors carry <blocked/> */ };

/* May s send a stanza of this kind (IM_KIND_*) to peer (a JID as
 * prepared)? Outbound rules apply to items that name every kind and to
 * presence-out. Own resources are always allowed. */
enum im_verdict im_check_out(const struct session *s, unsigned kind, const char *peer, size_t len);
/* May s receive a stanza of this kind from peer? */
enum im_verdict im_check_in(const struct session *s, unsigned kind, const char *peer, size_t len);

/* ---- contacts ------------------------------------------------------------- */

/* IM_SUB_* of bare JID in s's roster (0: none or not a contact). */
unsigned im_contact_sub(const struct session *s, const char *bare, size_t len);

/* ---- presence (RFC 6121 4) -------------------------------------------------- */

/* Presence without 'to' from bound session s, in v, already rewritten
 * into iov (our 'from'). type: deliver.c's T_NONE (available) or
 * T_UNAVAILABLE; avail/prio as parsed. Records availability, broadcasts
 * to the user's own resources and the contacts with IM_SUB_FROM, probes
 * at initial presence, sends unavailable to directed-presence recipients. */
void im_presence_broadcast(struct session *s, struct xml_view *v, bool avail, int8_t prio,
			   const struct iovec *iov, int n);

/* Directed presence (RFC 6121 4.6) from s to the full or bare JID `to`:
 * available adds it to the recipients, unavailable removes it. */
void im_directed(struct session *s, bool avail, const char *to, size_t len);

/* The session ends while available (after unbind): unavailable to the
 * user's other resources, the FROM contacts and directed recipients. */
void im_gone(struct session *s);

/* ---- XEP-0280 carbons -------------------------------------------------------- */

/* Is the message in v eligible (XEP-0280 6.1, no <private/>, no no-copy
 * hint)? */
bool im_carbon_eligible(struct xml_view *v, int type);

/* Send carbon copies of the message in v (iov: as delivered, our 'from'):
 * 'sent' to the sender's other carbons-enabled resources (XEP-0280 7),
 * 'received' to the recipient's carbons-enabled resources that did not get
 * the original (6): took is the resource a full-JID message went to, 0
 * when it went by the bare JID rules (the "best" resources got it). */
void im_carbons(struct session *s, struct xml_view *v, const struct iovec *iov, int n, const char *rcpt_bare,
		size_t rcpt_len, uint64_t took);

/* ---- XEP-0352, XEP-0199 ------------------------------------------------------- */

/* <active/> or <inactive/> from the client. */
void im_csi(struct session *s, bool active);

/* Bound session input arrived (idle-ping bookkeeping; s->im non-NULL). */
void im_input_seen(struct session *s);

/* The session timer fired on a bound session: ping it, or close it when
 * the ping went unanswered. Returns true if it handled the timer. */
bool im_timer(struct session *s);

/* ---- XEP-0198 resumption across workers (R2) ----------------------------------- */

/* Serialise everything im_sess holds (flags, contacts, rules, last
 * presence, directed recipients; held CSI presence is flushed first and
 * not kept) into a malloc'd buffer: *out, *len. 0, or -1 (out of memory).
 * The bytes are for im_sess_import on any worker of this process. */
int im_sess_export(const struct session *s, uint8_t **out, size_t *len);

/* Replace s's IM state with one exported elsewhere. 0, or -1 (malformed or
 * out of memory; s keeps an empty state). */
int im_sess_import(struct session *s, const uint8_t *p, size_t len);

#endif
