/* SASL authentication for the router: control/sasl.h's mechanisms wired to
 * the store, as a struct router_auth_hooks (router/hooks.h). Types in
 * control/auth-t.h.
 *
 * One exchange, as the router drives it:
 *
 *     start(st, "SCRAM-SHA-256", client-first)  -> AUTH_PENDING  (out->req)
 *     serve(req) on the control thread          -> answer: the credentials
 *     resume(st, answer)                        -> AUTH_CHALLENGE (server-first)
 *     response(st, client-final)                -> AUTH_SUCCESS (server-final, out->user)
 *
 * and for PLAIN: start -> AUTH_PENDING, serve (PBKDF2 there), resume ->
 * AUTH_SUCCESS without data. A mechanism started without an initial
 * response gets an empty AUTH_CHALLENGE first, and the <response/> carries
 * what the initial response would have. Every AUTH_FAILURE ends the
 * exchange; a call after the end is malformed-request.
 *
 * Unknown users go through the same steps as known ones with credentials
 * from sasl_scram_fake_cred keyed by the server secret, so the challenge
 * and the timing do not tell whether an account exists. A SASL username
 * that is no valid localpart (Nodeprep refuses it) is not-authorized at
 * once: no account can have that name, so nothing is revealed.
 *
 * Lifetime: auth_init before the router starts its threads (the hooks read
 * the process-wide context it sets without synchronisation: thread
 * creation orders the write before them), auth_fini after they stopped.
 */
#ifndef STANZA_CONTROL_AUTH_H
#define STANZA_CONTROL_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "control/auth-t.h"
#include "router/hooks.h"

/* Fill *a and make it the process-wide context of the hooks (replacing any
 * earlier one). st: the open store, borrowed until auth_fini; the control
 * thread reads accounts from it. iterations: the PBKDF2 count new accounts
 * get (SASL_SCRAM_MIN_ITER..SASL_SCRAM_MAX_ITER), used for unknown users so
 * they cost what real ones do. secret_path: a file holding the 32-byte
 * server secret; created (mode 0600, random bytes, atomically: written
 * aside then linked into place) when missing; refused when it is not a
 * regular file of 32 bytes, or group or others may read it. The secret
 * must stay the same across restarts or fake salts change and reveal that
 * a user does not exist. AUTH_OK or AUTH_ERROR (logged). */
int auth_init(struct auth *a, struct store *st, uint32_t iterations, const char *secret_path);

/* Wipe the secret; if a is the process-wide context, there is none after.
 * The router's threads must have stopped. */
void auth_fini(struct auth *a);

/* The hooks, for cmd/ to put into struct router_hooks. Each is also
 * callable alone (tests); the threads and contracts are router/hooks.h's.
 * st: the router's AUTH_STATE_MAX bytes, aligned at least to 8. */
extern const struct router_auth_hooks auth_hooks;

size_t auth_mechanisms(bool tls, unsigned cb_avail, const char **names, size_t cap);
enum auth_step auth_start(void *st, const char *mech, const uint8_t *data, size_t len, bool has_data,
			  const struct auth_env *env, struct auth_out *out);
enum auth_step auth_response(void *st, const uint8_t *data, size_t len,
			     const struct auth_env *env, struct auth_out *out);
enum auth_step auth_resume(void *st, const uint8_t *answer, size_t len,
			   const struct auth_env *env, struct auth_out *out);
void auth_end(void *st);

/* Control thread. peer is not used: throttling is counted on the workers,
 * where the failure is decided. The PLAIN request carries the password: serve wipes it
 * in req although req is declared const (the router's request buffer is
 * its own writable memory; the hook type is shared with other callers).
 * The worker should wipe out->req itself once it has posted a copy. */
size_t auth_serve(const uint8_t *req, size_t len, const uint8_t *peer, size_t peer_len,
		  uint8_t *ans, size_t cap);

#endif
