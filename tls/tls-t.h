/* Types of the TLS layer (see tls/tls.h for the functions).
 *
 * OpenSSL behind a byte-shuffling interface: no file descriptors, no I/O.
 * The transport (kernel sockets or the DPDK TCP stack) owns the receive and
 * send buffers; every TLS call borrows them through a struct tls_io, reads
 * ciphertext straight out of the receive buffer and writes ciphertext
 * straight into the send buffer. So there is no BIO buffer of our own per
 * connection: an idle connection holds only OpenSSL's SSL object (its record
 * buffers are released while idle), and no ciphertext is copied twice.
 *
 *   struct tls_server  the contexts of one listener: one SSL_CTX per virtual
 *                      host, shared by every worker, refcounted, immutable
 *                      once built (reload builds a new one).
 *   struct tls_client  one client context (bench, s2s out).
 *   struct tls_conn    one TLS session over one TCP connection; owned by the
 *                      worker that owns the connection, never shared.
 *
 * The three are opaque so that OpenSSL's headers stay out of every other
 * module; tls_*_ctx() hands out the SSL_CTX for the odd knob tls.h lacks.
 */
#ifndef STANZA_TLS_TLS_T_H
#define STANZA_TLS_TLS_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tls_server;
struct tls_client;
struct tls_conn;

/* The one set of results of the per-connection calls. */
enum tls_status {
	TLS_OK = 0,      /* done (read: *n > 0 bytes of plaintext) */
	TLS_WANT_READ,   /* needs more ciphertext in io->in */
	TLS_WANT_WRITE,  /* needs room in io->out: send what is there, call again */
	TLS_CLOSED,      /* the peer sent close_notify: no more plaintext */
	TLS_ERROR,       /* fatal, sticky; tls_conn_error() says why. Close the connection */
};

/* Protocol versions, with the wire values (which are also OpenSSL's). */
#define TLS_V1_2 0x0303
#define TLS_V1_3 0x0304

/* The transport's buffers, lent to one TLS call.
 *
 * in[0..in_len) is ciphertext received and not yet consumed. A call consumes
 * a prefix and adds its length to in_used; the caller drops in_used bytes
 * from its receive buffer (and zeroes in_used) before the next call. Bytes
 * not consumed stay the caller's: OpenSSL reads one record at a time and
 * keeps a partial record inside itself, so after TLS_WANT_READ all of in[]
 * has been consumed.
 *
 * out[out_len..out_cap) is free room in the send buffer. A call appends
 * ciphertext and advances out_len; the caller sends out[0..out_len) and
 * resets out_len when it has. When out is full OpenSSL keeps the record it
 * could not place and the call returns TLS_WANT_WRITE.
 *
 * eof: the peer closed its side of TCP; no byte will follow in[]. A TLS
 * stream that ends without close_notify is then reported as TLS_ERROR
 * (truncation), one that had close_notify as TLS_CLOSED.
 *
 * The pointers are borrowed for the duration of the call only. */
struct tls_io {
	const unsigned char *in;
	size_t in_len;
	size_t in_used;
	unsigned char *out;
	size_t out_cap;
	size_t out_len;
	bool eof;
};

/* One virtual host: certificate chain (PEM, leaf first) and private key. */
struct tls_vhost_conf {
	const char *domain;
	const char *cert_file;
	const char *key_file;
};

/* A listener's TLS configuration. Strings are copied by tls_server_new. */
struct tls_server_conf {
	const struct tls_vhost_conf *vhosts;   /* vhosts[0] is the default (no SNI or an unknown name) */
	size_t nvhosts;
	/* ALPN protocols this listener accepts, in the server's preference
	 * order ("xmpp-client" for c2s direct TLS, "xmpp-server" for s2s).
	 * nalpn 0: ALPN is ignored. Otherwise a client that offers ALPN but
	 * none of these gets a no_application_protocol alert (RFC 7301 3.2);
	 * a client that offers none is accepted (STARTTLS clients rarely do). */
	const char *const *alpn;
	size_t nalpn;
	uint16_t min_version;  /* 0: TLS_V1_2 */
	uint16_t max_version;  /* 0: the highest OpenSSL knows (TLS 1.3) */
};

struct tls_client_conf {
	const char *ca_file;   /* PEM trust anchors; NULL: the system's default paths */
	bool no_verify;        /* accept any certificate (bench, tests); the handshake still runs */
	const char *const *alpn;  /* protocols to offer; nalpn 0: none */
	size_t nalpn;
	uint16_t min_version;  /* 0: TLS_V1_2 */
	uint16_t max_version;  /* 0: the highest */
};

/* Channel binding types for SCRAM-*-PLUS. */
enum tls_cb_type {
	TLS_CB_EXPORTER = 1,      /* "tls-exporter", RFC 9266: 32 bytes */
	TLS_CB_SERVER_END_POINT,  /* "tls-server-end-point", RFC 5929: a hash of the server certificate */
	TLS_CB_UNIQUE,            /* "tls-unique", RFC 5929: the first Finished message (see tls.h) */
};

#define TLS_CB_MAX 64  /* bytes; the largest digest (SHA-512) */

#endif
