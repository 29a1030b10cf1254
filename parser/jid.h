/* JIDs: parse and prepare per RFC 7622 3.1, with the RFC 6122 stringprep
 * profiles as deployed servers apply them (libidn: Nodeprep, Nameprep,
 * Resourceprep, unassigned code points allowed). Types are in
 * parser/jid-t.h.
 *
 * Typical use, the 'to' attribute of a stanza:
 *
 *     struct jid to;
 *     enum jid_err e = jid_parse(&to, val, val_len, 0);
 *     if (e != JID_OK)
 *         return stanza_error(..., "jid-malformed");   // log jid_err_str(e)
 *     route(jid_domain(&to), ...);
 *
 * Input is raw UTF-8 (XML entities already replaced), not NUL-terminated.
 * Parts that are plain ASCII are prepared here without libidn, byte for
 * byte as libidn would; other parts go through libidn, which allocates
 * internally and frees before returning. Nothing here allocates or keeps
 * global state, and libidn's stringprep keeps none either (its profiles are
 * read-only tables), so every function is safe to call from any thread on
 * distinct structs.
 */
#ifndef STANZA_PARSER_JID_H
#define STANZA_PARSER_JID_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include "parser/jid-t.h"

/* Split s[0..len) into parts (the first '/' starts the resource, which may
 * hold '/' and '@'; an '@' before it ends the localpart), prepare each and
 * write the canonical JID into *j. flags: 0 or JID_F_NO_FAST. On failure
 * *j is the empty JID (all lengths 0, str "") and the result names the
 * first part found bad, in the order local, domain, resource. s must not
 * point into *j. */
enum jid_err jid_parse(struct jid *j, const char *s, size_t len, unsigned flags);

/* Prepare one part alone into out[0..cap), NUL-terminated, its length
 * (without the NUL) in *out_len: what jid_parse does to that part,
 * including the domain's trailing-dot strip and IP-literal check. For a
 * resource chosen by a client at bind time, or a domain from the
 * configuration. cap >= JID_PART_MAX + 1 never gives JID_ERR_NOSPACE. */
enum jid_err jid_prep(enum jid_part part, const char *in, size_t len,
                      char *out, size_t cap, size_t *out_len, unsigned flags);

/* Replace the resource of *j by the prepared form of res[0..len); len 0
 * makes *j bare. On failure *j is unchanged. */
enum jid_err jid_set_resource(struct jid *j, const char *res, size_t len, unsigned flags);

/* "ok", "bad localpart", ... for logs. Never NULL. */
const char *jid_err_str(enum jid_err e);

/* ---- views and comparisons (inline: they sit on the routing path) ------ */

static inline size_t jid_bare_len(const struct jid *j)
{
	return (j->local_len ? j->local_len + 1u : 0u) + j->domain_len;
}

/* Bytes of the full canonical string, without the NUL. */
static inline size_t jid_size(const struct jid *j)
{
	return jid_bare_len(j) + (j->resource_len ? j->resource_len + 1u : 0u);
}

/* The whole JID; NUL-terminated. */
static inline struct jid_slice jid_full(const struct jid *j)
{
	return (struct jid_slice){ j->str, (uint16_t)jid_size(j) };
}

/* "local@domain" or "domain": a prefix of the full JID, so not
 * NUL-terminated when there is a resource. */
static inline struct jid_slice jid_bare(const struct jid *j)
{
	return (struct jid_slice){ j->str, (uint16_t)jid_bare_len(j) };
}

static inline struct jid_slice jid_local(const struct jid *j)
{
	return (struct jid_slice){ j->str, j->local_len };
}

static inline struct jid_slice jid_domain(const struct jid *j)
{
	return (struct jid_slice){ j->str + (j->local_len ? j->local_len + 1u : 0u), j->domain_len };
}

/* NUL-terminated (it ends the string). Empty when bare. */
static inline struct jid_slice jid_resource(const struct jid *j)
{
	return (struct jid_slice){ j->str + jid_size(j) - j->resource_len, j->resource_len };
}

static inline bool jid_is_bare(const struct jid *j)
{
	return j->resource_len == 0;
}

/* A server or component address: no localpart, no resource. */
static inline bool jid_is_domain(const struct jid *j)
{
	return j->local_len == 0 && j->resource_len == 0;
}

/* Drop the resource in place. */
static inline void jid_make_bare(struct jid *j)
{
	j->str[jid_bare_len(j)] = '\0';
	j->resource_len = 0;
}

/* Full-JID equality: same local, domain and resource. */
static inline bool jid_equal(const struct jid *a, const struct jid *b)
{
	return a->local_len == b->local_len && a->domain_len == b->domain_len &&
	       a->resource_len == b->resource_len &&
	       memcmp(a->str, b->str, jid_size(a)) == 0;
}

/* Bare-JID equality: resources ignored. */
static inline bool jid_bare_equal(const struct jid *a, const struct jid *b)
{
	return a->local_len == b->local_len && a->domain_len == b->domain_len &&
	       memcmp(a->str, b->str, jid_bare_len(a)) == 0;
}

#endif
