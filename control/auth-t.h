/* Types of the SASL hooks the router calls (see control/auth.h for the
 * functions): the process-wide authentication context and its per-address
 * failure table.
 */
#ifndef STANZA_CONTROL_AUTH_T_H
#define STANZA_CONTROL_AUTH_T_H

#include <stdatomic.h>
#include <stdint.h>
#include "control/sasl-t.h"

struct store;

/* The one set of results of auth_init; the cause is logged at the failure
 * site. */
enum auth_rc {
	AUTH_OK = 0,
	AUTH_ERROR,       /* bad argument, secret file unreadable, unsafe or not creatable */
};

/* Per-address failure throttling. A failure bumps the count of its
 * address's slot; counts halve every AUTH_THROTTLE_HALF_S seconds. Once an
 * address has more than AUTH_THROTTLE_FREE recent failures, each further
 * <failure/> is held back AUTH_THROTTLE_BASE_MS * 2^(count - 1), at most
 * AUTH_THROTTLE_CAP_MS. */
#define AUTH_THROTTLE_SLOTS   4096u   /* power of two */
#define AUTH_THROTTLE_HALF_S  60u
#define AUTH_THROTTLE_FREE    2u
#define AUTH_THROTTLE_BASE_MS 250u
#define AUTH_THROTTLE_CAP_MS  8000u

/* The authentication context. The router's hooks have no user pointer, so
 * auth_init makes one struct auth the process-wide one (see auth.h); the
 * caller owns the memory (static or heap, about 33 KiB) and keeps it alive
 * until auth_fini.
 *
 * Threads: store, iterations and secret are written by auth_init before
 * the router's threads start and only read afterwards (the control thread
 * reads store and secret, workers nothing of them). throttle is shared by
 * every worker: one 64-bit word per slot, read and written with relaxed
 * atomics and no locking. Two workers failing at the same instant may lose
 * one of their increments and a slot shared by two addresses (hash
 * collision) goes to whichever failed last: the counts are a heuristic to
 * slow guessing down, so approximate is enough and a lock on the worker
 * path is not worth it. */
struct auth {
	struct store *store;              /* borrowed; read by the control thread only */
	uint32_t iterations;              /* PBKDF2 count for fake credentials: the one new accounts get */
	uint32_t clock_skew_s;            /* added to the monotonic clock: tests age the table with it */
	uint8_t secret[SASL_SECRET_LEN];  /* server secret (fake salts), from the secret file */
	uint64_t hash_key[2];             /* random: keys the slot hash so addresses cannot be
					   * chosen to collide with a victim's */
	/* slot word: bits 0..15 count, 16..31 tag (other hash bits: a
	 * different address in the slot starts from 0), 32..63 the second
	 * (monotonic, + clock_skew_s) of the last halving. */
	_Atomic uint64_t throttle[AUTH_THROTTLE_SLOTS];
};

#endif
