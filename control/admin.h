/* The admin socket protocol as pure functions: requests parsed from a
 * line, responses built into a bounded buffer, statistics formatted and
 * read back. No I/O here: control/ctl.c owns the socket, stanzactl the
 * client side; both use these so that the two ends agree by construction.
 * Types in control/admin-t.h.
 *
 * A session, C the client (stanzactl), S the daemon:
 *
 *     C: account add juliet@example.com
 *     C: <password>
 *     S: ok
 *     S: .
 *     C: sessions
 *     S: ok
 *     S: 0 5 available juliet@example.com/balcony
 *     S: .
 */
#ifndef STANZA_CONTROL_ADMIN_H
#define STANZA_CONTROL_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include "control/admin-t.h"

struct server_worker_stats;

/* The condition kick uses when none is given. */
#define ADMIN_KICK_DEFAULT "policy-violation"

/* Parse one request line line[0..len) (without its LF; a trailing CR is
 * ignored). Words are separated by spaces or tabs. Returns 0 with *req
 * filled, or -1 with *why a static one-line reason (the usage of the
 * command when its arguments are wrong). Arguments are copied, not
 * checked beyond their length and the absence of control characters:
 * JIDs are prepared by whoever uses them.
 *
 * kick's JID may hold spaces (in the resource): the last word is taken as
 * the condition only if it is a known stream error condition. */
int admin_parse(const char *line, size_t len, struct admin_req *req, const char **why);

/* The request is followed by a password line. */
bool admin_needs_password(enum admin_cmd cmd);

/* "account add", ... for logs. */
const char *admin_cmd_name(enum admin_cmd cmd);

/* s[0..len) is an RFC 6120 4.9.3 stream error condition. */
bool admin_condition_known(const char *s, size_t len);

/* ---- responses --------------------------------------------------------- */

/* Empty, growing to at most max bytes. */
void admin_out_init(struct admin_out *o, size_t max);
void admin_out_free(struct admin_out *o);
void admin_out_reset(struct admin_out *o);

/* Append s[0..len) and an LF, a "." put in front if s starts with one.
 * s must hold no LF. 0, or -1 once the response would pass max (it then
 * stays as it was and o->overflow is set). */
int admin_out_line(struct admin_out *o, const char *s, size_t len);
int admin_out_printf(struct admin_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "ok" / "err <reason>", and the final ".". */
int admin_out_ok(struct admin_out *o);
int admin_out_err(struct admin_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int admin_out_end(struct admin_out *o);

/* Client side: one response line line[0..len) (without LF). Returns 1 at
 * the final ".", else 0 with *data and *dlen the line's content (one leading
 * "." dropped). */
int admin_unstuff(const char *line, size_t len, const char **data, size_t *dlen);

/* ---- statistics --------------------------------------------------------
 * One line per worker:
 *   worker I connections N sessions N accepted N stanzas_in N stanzas_out N
 *   bytes_in N bytes_out N stream_errors N auth_failures N
 * Readers take the pairs by name and ignore names they do not know, so
 * counters can be added without breaking older stanzactl. */

int admin_format_stats(struct admin_out *o, unsigned worker, const struct server_worker_stats *st);

/* Parse such a line. 0, or -1 if it is not a worker line. */
int admin_parse_stats(const char *line, size_t len, unsigned *worker, struct server_worker_stats *st);

#endif
