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

struct router_hooks {
	struct router_auth_hooks auth;
};

#endif
