/* Types of the admin socket protocol (see control/admin.h for the
 * functions and docs/CONFIG.md for the protocol as operators see it).
 *
 * One request per line (LF, an optional CR before it is dropped); the
 * server answers with "ok" or "err <reason>", then the command's lines,
 * then a line holding only ".". A response line that starts with "." gets
 * one more "." in front (as SMTP does), so no data line reads as the end.
 */
#ifndef STANZA_CONTROL_ADMIN_T_H
#define STANZA_CONTROL_ADMIN_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "parser/jid-t.h"

/* A request or password line, without its LF. A full JID is at most
 * JID_MAX bytes; the rest is the command words. */
#define ADMIN_LINE_MAX   4096u
#define ADMIN_ARG_MAX    (JID_MAX + 1u)
#define ADMIN_COND_MAX   32u
/* A password line: SASLprep output is bounded further down, this only
 * bounds what the socket buffers. */
#define ADMIN_PASSWORD_MAX 1023u

enum admin_cmd {
	ADMIN_NONE = 0,
	ADMIN_ACCOUNT_ADD,     /* "account add JID"    + a password line */
	ADMIN_ACCOUNT_PASSWD,  /* "account passwd JID" + a password line */
	ADMIN_ACCOUNT_DEL,     /* "account del JID" */
	ADMIN_ACCOUNT_LIST,    /* "account list [DOMAIN]": one bare JID per line */
	ADMIN_SESSIONS,        /* "sessions": "WORKER PRIORITY available|away JID" per line */
	ADMIN_KICK,            /* "kick JID [CONDITION]": the number of sessions told */
	ADMIN_STATS,           /* "stats": see admin_format_stats */
	ADMIN_RELOAD,          /* "reload": what SIGHUP does; one line saying what changed */
};

/* One parsed request. Plain data: the arguments are copied out of the
 * line, so the request outlives it (the password comes on the next). */
struct admin_req {
	enum admin_cmd cmd;
	char arg[ADMIN_ARG_MAX];     /* JID or DOMAIN, as given (not prepared); "" when absent */
	char cond[ADMIN_COND_MAX];   /* kick: stream error condition; "" for the default */
};

/* A response being built: grows up to max bytes, then stops taking lines
 * and remembers it (the caller answers "err" instead of a cut listing). */
struct admin_out {
	char *buf;
	size_t len;
	size_t cap;
	size_t max;
	bool overflow;
};

#endif
