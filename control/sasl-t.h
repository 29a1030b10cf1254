/* Types of the server side of SASL (see control/sasl.h for the functions).
 *
 * Mechanisms: SCRAM-SHA-{1,256,512} and their -PLUS variants (RFC 5802,
 * RFC 7677, channel bindings tls-exporter RFC 9266 and tls-server-end-point
 * RFC 5929), and PLAIN (RFC 4616) over TLS only. Everything here is plain
 * data: no pointers, no destructors; copy with memcpy, zero to reset.
 */
#ifndef STANZA_CONTROL_SASL_T_H
#define STANZA_CONTROL_SASL_T_H

#include <stdint.h>

/* The one set of results of this module: SASL_OK or an RFC 6120 6.5
 * condition, which the session sends as <failure><CONDITION/></failure>
 * (sasl_err_condition gives the element name). Functions document which
 * ones they return; bugs in the caller's arguments and OpenSSL failures
 * are SASL_ERR_TEMPORARY_AUTH_FAILURE. */
enum sasl_err {
	SASL_OK = 0,
	SASL_ERR_ABORTED,                /* the client sent <abort/> (never returned here; for the session) */
	SASL_ERR_ACCOUNT_DISABLED,       /* for the caller, from the account record */
	SASL_ERR_CREDENTIALS_EXPIRED,    /* for the caller, from the account record */
	SASL_ERR_ENCRYPTION_REQUIRED,    /* PLAIN before TLS */
	SASL_ERR_INCORRECT_ENCODING,     /* bad base64: in <auth>/<response>, or SCRAM's c= / p= / s= */
	SASL_ERR_INVALID_AUTHZID,        /* for the caller: authzid other than the user's own bare JID */
	SASL_ERR_INVALID_MECHANISM,      /* unknown or not offered on this connection */
	SASL_ERR_MALFORMED_REQUEST,      /* syntax of the mechanism violated, limits exceeded, bad UTF-8, SASLprep failed, out of order */
	SASL_ERR_MECHANISM_TOO_WEAK,     /* for the caller's policy */
	SASL_ERR_NOT_AUTHORIZED,         /* wrong password or proof, unknown user, channel binding mismatch or downgrade */
	SASL_ERR_TEMPORARY_AUTH_FAILURE, /* internal: OpenSSL or RNG failure, caller's buffer or arguments wrong */
};

enum sasl_mech {
	SASL_MECH_NONE = 0,
	SASL_MECH_SCRAM_SHA_512_PLUS,
	SASL_MECH_SCRAM_SHA_256_PLUS,
	SASL_MECH_SCRAM_SHA_1_PLUS,
	SASL_MECH_SCRAM_SHA_512,
	SASL_MECH_SCRAM_SHA_256,
	SASL_MECH_SCRAM_SHA_1,
	SASL_MECH_PLAIN,
	SASL_MECH_COUNT,
};

/* Channel-binding types, as bits: the set a TLS connection can provide.
 * tls-unique is not supported (RFC 9266: undefined for TLS 1.3). */
enum sasl_cb {
	SASL_CB_NONE                 = 0,
	SASL_CB_TLS_EXPORTER         = 1, /* RFC 9266: 32 bytes of SSL_export_keying_material, label "EXPORTER-Channel-Binding", no context */
	SASL_CB_TLS_SERVER_END_POINT = 2, /* RFC 5929 4.1: hash of our certificate (SHA-256 when its signature uses MD5 or SHA-1) */
	SASL_CB_TLS_UNIQUE           = 4, /* RFC 5929 3.1: the first Finished message (tls/tls.h says how, also on TLS 1.3) */
};

enum sasl_hash {
	SASL_SHA1 = 0,
	SASL_SHA256,
	SASL_SHA512,
};

#define SASL_HASH_MAX       64u   /* bytes of the largest digest (SHA-512) */
#define SASL_SALT_MAX       32u   /* bytes of a stored salt */
#define SASL_SALT_DEFAULT   16u
#define SASL_CB_DATA_MAX    64u   /* tls-server-end-point with a SHA-512 certificate */
#define SASL_SECRET_LEN     32u   /* server secret for fake credentials */

/* RFC 7677 4: at least 4096. sasl_scram_derive refuses fewer. */
#define SASL_SCRAM_MIN_ITER 4096u
/* Stored counts above this are refused: a corrupt record must not cost
 * the control plane minutes of PBKDF2. */
#define SASL_SCRAM_MAX_ITER 10000000u

/* Input limits. A longer client message is SASL_ERR_MALFORMED_REQUEST.
 * Names are bytes after saslname decoding and SASLprep; 1023 is the JID
 * localpart limit (RFC 7622) and 3071 a whole JID, as an authzid is one. */
#define SASL_MSG_MAX        4096u
#define SASL_NAME_MAX       1023u
#define SASL_AUTHZID_MAX    3071u
#define SASL_PASS_MAX       1023u

/* Output sizes: buffers this large never give SASL_ERR_TEMPORARY_AUTH_FAILURE
 * for lack of room. Server-first: "r=" nonce ",s=" salt ",i=" count. */
#define SASL_SCRAM_SNONCE_LEN   24u  /* printable chars of our nonce: base64 of 18 random bytes */
#define SASL_SCRAM_FIRST_MAX    512u
#define SASL_SCRAM_FINAL_MAX    96u  /* "v=" + base64 of 64 bytes */

/* Stored SCRAM credentials for one account and one hash: what the store
 * keeps instead of a password. Plain data; zero it after use. */
struct sasl_scram_cred {
	uint8_t  hash;                      /* enum sasl_hash */
	uint8_t  salt_len;                  /* 1..SASL_SALT_MAX */
	uint8_t  fake;                      /* from sasl_scram_fake_cred: never verifies */
	uint8_t  pad;
	uint32_t iterations;
	uint8_t  salt[SASL_SALT_MAX];
	uint8_t  stored_key[SASL_HASH_MAX]; /* H(ClientKey), digest-size bytes used */
	uint8_t  server_key[SASL_HASH_MAX]; /* HMAC(SaltedPassword, "Server Key") */
};

/* What the client asked to be: the user to look up and the identity to act
 * as. Filled by sasl_scram_start and sasl_plain_parse; NUL-terminated.
 * user is SASLprepped (query rules); the caller still maps it to an account
 * (Nodeprep, jid_prep JID_LOCAL). authzid is decoded but not prepared: the
 * caller parses it as a JID and answers SASL_ERR_INVALID_AUTHZID unless it
 * is empty or the user's own bare JID (RFC 6120 6.3.8). Transient: keep on
 * the stack, about 4 KiB. */
struct sasl_names {
	uint16_t user_len;
	uint16_t authzid_len;
	char user[SASL_NAME_MAX + 1];
	char authzid[SASL_AUTHZID_MAX + 1];
};

/* PLAIN's message once parsed: names plus the SASLprepped password.
 * Transient; sasl_plain_verify wipes the password. */
struct sasl_plain {
	struct sasl_names names;
	uint16_t pass_len;
	char pass[SASL_PASS_MAX + 1];
};

/* One SCRAM exchange in progress, kept in the session between the client's
 * messages. 512 bytes, plain data, no pointers; the keys are wiped when the
 * exchange ends either way (sasl_scram_finish, or any failure).
 *
 * msg holds client-first-message-bare then server-first-message, the two
 * first parts of AuthMessage (RFC 5802 3); the gs2 header is kept as its
 * SHA-256 only, to compare with the c= attribute, so a long authzid costs
 * no room. */
#define SASL_SCRAM_BUF 336u
struct sasl_scram {
	uint8_t  mech;      /* enum sasl_mech */
	uint8_t  step;      /* private */
	uint8_t  cb_flag;   /* 'n', 'y' or 'p' */
	uint8_t  cb_type;   /* enum sasl_cb, with 'p' */
	uint8_t  fake;      /* unknown user: fail at the end */
	uint8_t  pad;
	uint16_t gs2_len;   /* bytes of the gs2 header */
	uint16_t cfb_len;   /* client-first-message-bare: msg[0..cfb_len) */
	uint16_t sf_len;    /* server-first-message: msg[cfb_len + 0..sf_len) */
	uint16_t nonce_off; /* client nonce in msg */
	uint16_t nonce_len; /* client nonce, then the whole nonce after server-first */
	uint8_t  gs2_sha256[32];
	uint8_t  stored_key[SASL_HASH_MAX];
	uint8_t  server_key[SASL_HASH_MAX];
	char     msg[SASL_SCRAM_BUF];
};

#endif
