/* The TLS layer: OpenSSL over the transport's own buffers. Types are in
 * tls/tls-t.h.
 *
 * Typical use, one connection (rx/tx are the connection's buffers):
 *
 *     struct tls_io io = { rx, rx_len, 0, tx + tx_len, tx_cap - tx_len, 0, peer_closed };
 *     enum tls_status st = tls_conn_read(c, &io, plain, sizeof plain, &n);
 *     drop(rx, io.in_used); tx_len += io.out_len;     // always, whatever st
 *     switch (st) {
 *     case TLS_OK:         feed the parser plain[0..n); call again;
 *     case TLS_WANT_READ:  wait for bytes (and flush tx);
 *     case TLS_WANT_WRITE: flush tx, then call again;
 *     case TLS_CLOSED:     tls_conn_shutdown, flush, close;
 *     case TLS_ERROR:      log tls_conn_error(), close;
 *     }
 *
 * The handshake runs inside tls_conn_read/tls_conn_write when it is not done
 * yet; tls_conn_handshake drives it alone (STARTTLS wants to know when it
 * ends before reading). Every call may produce ciphertext (handshake flights,
 * session tickets, alerts, key updates): flush io.out after each.
 *
 * Threads: a tls_server or tls_client is shared read-only by all workers;
 * a tls_conn belongs to one worker. OpenSSL's error queue is per thread and
 * left empty by every call here.
 *
 * Functions that return int return 0 on success and -1 on failure, with a
 * reason written into err[0..errlen) when they take one.
 */
#ifndef STANZA_TLS_TLS_H
#define STANZA_TLS_TLS_H

#include "tls/tls-t.h"

struct ssl_ctx_st;
struct x509_st;

/* ---- server contexts --------------------------------------------------- */

/* Load every vhost's certificate chain and key (checking that they match)
 * and build the contexts. Returns a server with one reference, or NULL with
 * the reason (file, OpenSSL's message) in err.
 *
 * Reload: build a new server from the files, publish the pointer (under
 * RCU), and after the grace period drop the old one with tls_server_unref.
 * Connections already made hold their own reference and keep the old
 * certificates until they close. Tickets issued under the old server do not
 * resume under the new one (fresh ticket keys): clients do a full handshake. */
struct tls_server *tls_server_new(const struct tls_server_conf *conf, char *err, size_t errlen);

/* References: any thread. A worker that reads the published pointer inside
 * an RCU read-side section needs no reference of its own; tls_conn_server
 * takes one per connection. The last unref frees. */
void tls_server_ref(struct tls_server *srv);
void tls_server_unref(struct tls_server *srv);

/* The SSL_CTX of vhost i (0: the default), borrowed from srv. For knobs
 * this API does not offer; change it only before the server is shared. */
struct ssl_ctx_st *tls_server_ctx(struct tls_server *srv, size_t i);

/* ---- client contexts --------------------------------------------------- */

struct tls_client *tls_client_new(const struct tls_client_conf *conf, char *err, size_t errlen);
void tls_client_free(struct tls_client *cl);   /* after its last tls_conn is freed */
struct ssl_ctx_st *tls_client_ctx(struct tls_client *cl);

/* ---- connections ------------------------------------------------------- */

/* A server-side session; takes a reference on srv. NULL: out of memory. */
struct tls_conn *tls_conn_server(struct tls_server *srv);

/* A client-side session. host (may be NULL) is sent as SNI and, unless the
 * client was made with no_verify, is the name the certificate must carry.
 * cl must outlive the connection. NULL: out of memory. */
struct tls_conn *tls_conn_client(struct tls_client *cl, const char *host);

/* Frees the session (no close_notify: call tls_conn_shutdown first for a
 * clean close). NULL is a no-op. */
void tls_conn_free(struct tls_conn *c);

/* Advance the handshake. TLS_OK once it is complete (and from then on). */
enum tls_status tls_conn_handshake(struct tls_conn *c, struct tls_io *io);

/* Decrypt into buf[0..cap), cap > 0: as many records as fit and are complete in
 * io->in. TLS_OK with *n > 0, or another status with *n == 0. Plaintext
 * that arrived before a close_notify or an error is returned first; the
 * close or error comes with the next call. */
enum tls_status tls_conn_read(struct tls_conn *c, struct tls_io *io, void *buf, size_t cap, size_t *n);

/* Encrypt a prefix of buf[0..len) into io->out; *n is how much of buf was
 * taken (then the caller may forget it). On TLS_WANT_WRITE, OpenSSL may hold
 * an encrypted record of buf that it could not place: call again with the
 * same untaken bytes, which may have moved in memory (compacted) but not
 * changed. TLS_OK means all of buf was taken. */
enum tls_status tls_conn_write(struct tls_conn *c, struct tls_io *io, const void *buf, size_t len, size_t *n);

/* Send close_notify (once) and, if the peer's already arrived, report it.
 * TLS_OK: ours is in io->out (or was sent before); TLS_CLOSED: both sides
 * have closed; TLS_WANT_WRITE: no room yet. Waiting for the peer's is the
 * caller's choice: XMPP needs no answer after </stream:stream>. */
enum tls_status tls_conn_shutdown(struct tls_conn *c, struct tls_io *io);

/* ---- facts about an established connection ------------------------------ */

bool tls_conn_established(const struct tls_conn *c);

/* TLS_V1_2, TLS_V1_3; 0 before the handshake. */
uint16_t tls_conn_version(const struct tls_conn *c);

/* The ALPN protocol agreed on, not NUL-terminated, borrowed from c; NULL
 * (and *len 0) when none. */
const char *tls_conn_alpn(const struct tls_conn *c, size_t *len);

/* Server side: the SNI name the client sent, NUL-terminated, borrowed from
 * c; NULL when none. */
const char *tls_conn_servername(const struct tls_conn *c);

/* Server side: the domain of the vhost whose certificate was used (the
 * default one if SNI named none). Borrowed from the connection's server. */
const char *tls_conn_vhost(const struct tls_conn *c);

/* The peer's certificate (X509 *), borrowed from c, valid while c is; NULL
 * when it sent none. For s2s identity checks (XmppAddr, SASL EXTERNAL). */
struct x509_st *tls_conn_peer_cert(const struct tls_conn *c);

/* Channel binding data (tls/tls-t.h) into out[0..cap), cap >= TLS_CB_MAX;
 * *len is its length. -1 when the type is not available on this
 * connection (then do not offer the -PLUS mechanisms with it):
 *   TLS_CB_EXPORTER: TLS 1.3, or TLS 1.2 with extended master secret
 *                    (RFC 7627); the exporter label with an empty context.
 *   TLS_CB_SERVER_END_POINT: a server certificate signed with a hash that
 *                    RFC 5929 names (MD5 and SHA-1 become SHA-256); not for
 *                    Ed25519/Ed448 certificates, which have no such hash.
 *   TLS_CB_UNIQUE:   TLS 1.3, or TLS 1.2 with extended master secret: the
 *                    first Finished message, the client's after a full
 *                    handshake and the server's after a resumption. RFC
 *                    9266 leaves it undefined for TLS 1.3; OpenSSL-based
 *                    clients (Python's ssl, so slixmpp, which knows no
 *                    other binding) compute it by this same rule, and it
 *                    still ties the exchange to this handshake.
 * Either side computes the same bytes. */
int tls_conn_channel_binding(const struct tls_conn *c, enum tls_cb_type type,
			     unsigned char *out, size_t cap, size_t *len);

/* After TLS_ERROR: what went wrong, for the log, in buf[0..len). Returns buf. */
const char *tls_conn_error(const struct tls_conn *c, char *buf, size_t len);

/* ---- certificates (tls/cert.c) ------------------------------------------ */

/* Make a self-signed certificate for domains[0..n) if key_file and
 * cert_file do not exist: an EC P-256 key, an X.509 v3 certificate valid
 * for a year, CN domains[0], subjectAltName DNS:d and DNS:*.d for each d,
 * signed with SHA-256. Each file is written to a temporary name and
 * renamed without replacing, the key with mode 0600. Returns 1 when it
 * created them, 0 when both existed (untouched), -1 on error (also when
 * only one of the two exists: the operator has to look). */
int tls_cert_ensure(const char *cert_file, const char *key_file,
		    const char *const *domains, size_t n, char *err, size_t errlen);

#endif
