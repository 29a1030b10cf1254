/* Server side of SASL as pure functions (types in control/sasl-t.h).
 *
 * Nothing here does I/O or keeps global state: the session feeds decoded
 * client messages in and sends what comes out. XMPP carries SASL data in
 * base64 (RFC 6120 6.4.2), so the session decodes <auth>/<response> text
 * with sasl_b64_decode and encodes challenges with sasl_b64_encode.
 *
 * A SCRAM exchange, split so the credential lookup can be asynchronous:
 *
 *     struct sasl_names nm;                  // on the stack
 *     e = sasl_scram_start(&sess->scram, mech, cb_avail, msg, len, &nm);
 *     // check nm.authzid, look up nm.user (control plane) ... later:
 *     if (found) e = sasl_scram_challenge(&sess->scram, &cred, out, cap, &n);
 *     else       { sasl_scram_fake_cred(&cred, ...); same call }
 *     // send out[0..n) in <challenge/>; on the client's <response/>:
 *     e = sasl_scram_finish(&sess->scram, msg, len, cb, cb_len, out, cap, &n);
 *     // SASL_OK: send out[0..n) in <success/>
 *
 * Any failure ends the exchange; the session sends <failure> with
 * sasl_err_condition(e). SCRAM steps cost a few hashes; PLAIN and
 * sasl_scram_derive run PBKDF2 and belong on the control plane.
 *
 * Thread safety: functions touch only their arguments; OpenSSL and libidn
 * are thread-safe for this use. OpenSSL allocates internally (digest and
 * MAC contexts) and frees before returning.
 */
#ifndef STANZA_CONTROL_SASL_H
#define STANZA_CONTROL_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "control/sasl-t.h"

/* ---- conditions and mechanisms ----------------------------------------- */

/* The RFC 6120 6.5 element name ("not-authorized", ...); NULL for SASL_OK. */
const char *sasl_err_condition(enum sasl_err e);

/* "SCRAM-SHA-256-PLUS", ...; NULL for SASL_MECH_NONE or out of range. */
const char *sasl_mech_name(enum sasl_mech m);

/* The mechanism named name[0..len) (case-sensitive, RFC 4422 3.1), or
 * SASL_MECH_NONE. */
enum sasl_mech sasl_mech_parse(const char *name, size_t len);

/* The mechanisms to advertise, strongest first: every -PLUS (when cb_avail,
 * a set of enum sasl_cb bits, is not empty), then plain SCRAM, then PLAIN
 * (only when tls). Writes at most cap entries; returns how many it would
 * write (SASL_MECH_COUNT - 1 at most). */
size_t sasl_mech_list(enum sasl_mech *out, size_t cap, bool tls, unsigned cb_avail);

/* Whether the client may choose m on this connection: SASL_OK,
 * SASL_ERR_ENCRYPTION_REQUIRED (PLAIN without TLS) or
 * SASL_ERR_INVALID_MECHANISM (unknown, or -PLUS without a binding). */
enum sasl_err sasl_mech_check(enum sasl_mech m, bool tls, unsigned cb_avail);

/* The hash of a SCRAM mechanism; false for PLAIN and NONE. */
bool sasl_mech_hash(enum sasl_mech m, enum sasl_hash *h);

/* Digest bytes: 20, 32 or 64. */
size_t sasl_hash_len(enum sasl_hash h);

/* ---- base64 (RFC 4648 4, strict) --------------------------------------- */

/* Encode in[0..len) into out, NUL-terminated; returns the length without
 * the NUL, or 0 when cap < sasl_b64_enc_len(len) + 1. XMPP sends an empty
 * payload as "=" (RFC 6120 6.4.2); so does this, for len 0. */
size_t sasl_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap);

static inline size_t sasl_b64_enc_len(size_t len)
{
	return len ? (len + 2u) / 3u * 4u : 1u;
}

/* Decode in[0..len) into out[0..cap): SASL_OK and *out_len, or
 * SASL_ERR_INCORRECT_ENCODING for any character outside the alphabet
 * (whitespace included), a length not a multiple of 4, padding other than
 * one or two final '=', or non-zero bits in the last character before the
 * padding. "=" alone decodes to 0 bytes. An empty input also decodes to 0
 * bytes: telling "no data" from "=" is the session's job. A too small out
 * is SASL_ERR_TEMPORARY_AUTH_FAILURE; (len / 4) * 3 bytes always do. */
enum sasl_err sasl_b64_decode(const char *in, size_t len, uint8_t *out, size_t cap,
                              size_t *out_len);

/* ---- SASLprep (RFC 4013) ----------------------------------------------- */

/* Prepare in[0..len) (UTF-8, any NUL rejected) into out[0..cap),
 * NUL-terminated, length in *out_len. stored: the stored-strings rules
 * (unassigned code points refused), for a password being set; otherwise
 * query rules, for what a client sends. SASL_OK, or
 * SASL_ERR_MALFORMED_REQUEST for bad UTF-8, a prohibited character, a bidi
 * violation, an empty result or a result that does not fit. */
enum sasl_err sasl_saslprep(const char *in, size_t len, char *out, size_t cap,
                            size_t *out_len, bool stored);

/* Whether s[0..len) is well-formed UTF-8 (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF). */
bool sasl_utf8_valid(const char *s, size_t len);

/* ---- PLAIN (RFC 4616) -------------------------------------------------- */

/* Parse authzid NUL authcid NUL passwd: exactly two NULs, authcid and
 * passwd not empty, each field valid UTF-8 and within the limits of
 * sasl-t.h; authcid and passwd SASLprepped (query rules). Fills *p.
 * SASL_OK or SASL_ERR_MALFORMED_REQUEST. */
enum sasl_err sasl_plain_parse(struct sasl_plain *p, const char *msg, size_t len);

/* Check p->pass against cred (any hash): PBKDF2 with cred's salt and count,
 * then StoredKey, compared in constant time. A fake cred (unknown user)
 * does the same work and fails. Wipes p->pass. SASL_OK,
 * SASL_ERR_NOT_AUTHORIZED or SASL_ERR_TEMPORARY_AUTH_FAILURE. */
enum sasl_err sasl_plain_verify(struct sasl_plain *p, const struct sasl_scram_cred *cred);

/* ---- SCRAM credentials ------------------------------------------------- */

/* Credentials for a new password: SASLprep pass[0..len) (stored rules),
 * SaltedPassword = PBKDF2-HMAC-h(pass, salt, iterations), then StoredKey
 * and ServerKey. salt NULL: SASL_SALT_DEFAULT bytes from RAND_bytes.
 * iterations: the operator's setting, SASL_SCRAM_MIN_ITER (4096, the RFC
 * 7677 minimum) to SASL_SCRAM_MAX_ITER. SASL_OK, SASL_ERR_MALFORMED_REQUEST
 * (password refused by SASLprep) or SASL_ERR_TEMPORARY_AUTH_FAILURE (bad
 * arguments, OpenSSL failure). */
enum sasl_err sasl_scram_derive(struct sasl_scram_cred *out, enum sasl_hash h,
                                const char *pass, size_t len,
                                const uint8_t *salt, size_t salt_len,
                                uint32_t iterations);

/* Credentials for a user the store does not know, so that the exchange
 * looks the same as for a real one until it fails at the end: the salt is
 * HMAC-SHA-256(secret, hash name, user) cut to SASL_SALT_DEFAULT bytes, the
 * same on every attempt. secret must stay the same across restarts (keep it
 * in the store), and iterations should be the count new accounts get.
 * SASL_OK or SASL_ERR_TEMPORARY_AUTH_FAILURE. */
enum sasl_err sasl_scram_fake_cred(struct sasl_scram_cred *out, enum sasl_hash h,
                                   const char *user, size_t user_len,
                                   const uint8_t secret[SASL_SECRET_LEN],
                                   uint32_t iterations);

/* ---- SCRAM exchange (RFC 5802 5, RFC 7677, RFC 9266) -------------------- */

/* Step 1: client-first-message msg[0..len) for mechanism mech (a SCRAM one
 * that sasl_mech_check accepted). cb_avail: the binding types this
 * connection offers (the -PLUS mechanisms were advertised iff non-zero).
 * Resets *st and fills *names. Refuses: gs2 flag 'y' while cb_avail is not
 * empty (a downgrade, RFC 5802 6) and 'p' with a type outside cb_avail:
 * SASL_ERR_NOT_AUTHORIZED; 'p' with a non-PLUS mechanism or 'n'/'y' with a
 * -PLUS one, the m= extension, missing or misordered attributes, bad
 * saslname escapes, a nonce with non-printable characters, bad UTF-8, a
 * username refused by SASLprep, too long (client-first-message-bare plus the
 * server-first-message to come must fit SASL_SCRAM_BUF: a username and
 * twice the client nonce of about 240 bytes together):
 * SASL_ERR_MALFORMED_REQUEST. */
enum sasl_err sasl_scram_start(struct sasl_scram *st, enum sasl_mech mech,
                               unsigned cb_avail, const char *msg, size_t len,
                               struct sasl_names *names);

/* Step 2: server-first-message into out[0..cap) (not NUL-terminated),
 * *out_len its length, with a nonce of SASL_SCRAM_SNONCE_LEN characters
 * from RAND_bytes (OpenSSL's DRBG: thread-safe and seeded by the library,
 * so callers need no randomness of their own). cred: the stored
 * credentials for the mechanism's hash, or from sasl_scram_fake_cred; it is
 * copied, the caller may wipe it after. SASL_OK,
 * SASL_ERR_MALFORMED_REQUEST (out of order) or
 * SASL_ERR_TEMPORARY_AUTH_FAILURE (cred for another hash or out of range,
 * out too small: SASL_SCRAM_FIRST_MAX always does, RNG failure). */
enum sasl_err sasl_scram_challenge(struct sasl_scram *st, const struct sasl_scram_cred *cred,
                                   char *out, size_t cap, size_t *out_len);

/* Step 2 with the server nonce given (printable ASCII but ',', 1..32
 * characters): for tests that replay RFC examples. Servers use the above. */
enum sasl_err sasl_scram_challenge_nonce(struct sasl_scram *st,
                                         const struct sasl_scram_cred *cred,
                                         const char *snonce, size_t snonce_len,
                                         char *out, size_t cap, size_t *out_len);

/* Step 3: client-final-message msg[0..len). cb[0..cb_len): the binding data
 * of the type sasl_scram_cb_type(st) gave, from this TLS connection (NULL, 0
 * when that is SASL_CB_NONE). Checks c= (the gs2 header sent in step 1 and,
 * with 'p', cb), the nonce echo and the proof (constant time); writes
 * server-final-message "v=..." into out[0..cap) (not NUL-terminated).
 * Wipes the keys in *st whatever the result. SASL_OK;
 * SASL_ERR_NOT_AUTHORIZED (wrong proof, unknown user, channel binding or
 * nonce mismatch); SASL_ERR_INCORRECT_ENCODING (c= or p= not base64);
 * SASL_ERR_MALFORMED_REQUEST (syntax, proof of the wrong size, out of
 * order); SASL_ERR_TEMPORARY_AUTH_FAILURE (out too small: SASL_SCRAM_FINAL_MAX
 * always does; no cb, or cb_len > SASL_CB_DATA_MAX, with 'p'; OpenSSL
 * failure). */
enum sasl_err sasl_scram_finish(struct sasl_scram *st, const char *msg, size_t len,
                                const uint8_t *cb, size_t cb_len,
                                char *out, size_t cap, size_t *out_len);

/* The binding type the client chose in step 1 (SASL_CB_NONE unless 'p'):
 * what the session must extract from TLS before step 3. */
static inline enum sasl_cb sasl_scram_cb_type(const struct sasl_scram *st)
{
	return (enum sasl_cb)st->cb_type;
}

#endif
