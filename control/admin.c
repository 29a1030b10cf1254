/* The admin socket protocol. See admin.h. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "control/admin.h"
#include "router/server.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* RFC 6120 4.9.3, the ones an operator might mean; see-other-host and
 * the like need data the admin cannot give here. */
static const char *const conditions[] = {
	"conflict", "connection-timeout", "host-gone", "internal-server-error",
	"not-authorized", "policy-violation", "reset", "resource-constraint",
	"system-shutdown", "undefined-condition",
};

bool admin_condition_known(const char *s, size_t len)
{
	for (size_t i = 0; i < NELEM(conditions); i++)
		if (strlen(conditions[i]) == len && !memcmp(conditions[i], s, len))
			return true;
	return false;
}

static const char *const cmd_names[] = {
	[ADMIN_NONE] = "none",
	[ADMIN_ACCOUNT_ADD] = "account add",
	[ADMIN_ACCOUNT_PASSWD] = "account passwd",
	[ADMIN_ACCOUNT_DEL] = "account del",
	[ADMIN_ACCOUNT_LIST] = "account list",
	[ADMIN_SESSIONS] = "sessions",
	[ADMIN_KICK] = "kick",
	[ADMIN_STATS] = "stats",
	[ADMIN_RELOAD] = "reload",
};

const char *admin_cmd_name(enum admin_cmd cmd)
{
	return (unsigned)cmd < NELEM(cmd_names) ? cmd_names[cmd] : "?";
}

bool admin_needs_password(enum admin_cmd cmd)
{
	return cmd == ADMIN_ACCOUNT_ADD || cmd == ADMIN_ACCOUNT_PASSWD;
}

/* ---- requests -------------------------------------------------------------- */

struct word {
	const char *p;
	size_t len;
};

#define MAX_WORDS 8

static bool is_space(char c)
{
	return c == ' ' || c == '\t';
}

static bool word_is(const struct word *w, const char *s)
{
	return w->len == strlen(s) && !memcmp(w->p, s, w->len);
}

static int copy_arg(char *dst, size_t cap, const char *p, size_t len)
{
	if (len == 0 || len >= cap)
		return -1;
	memcpy(dst, p, len);
	dst[len] = '\0';
	return 0;
}

int admin_parse(const char *line, size_t len, struct admin_req *req, const char **why)
{
	struct word w[MAX_WORDS];
	size_t nw = 0, i = 0;

	memset(req, 0, sizeof(*req));
	if (len && line[len - 1] == '\r')
		len--;
	if (len > ADMIN_LINE_MAX) {
		*why = "line too long";
		return -1;
	}
	for (size_t k = 0; k < len; k++) {
		unsigned char c = (unsigned char)line[k];
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			*why = "control character in request";
			return -1;
		}
	}
	while (i < len) {
		while (i < len && is_space(line[i]))
			i++;
		if (i == len)
			break;
		if (nw == MAX_WORDS) {
			*why = "too many words";
			return -1;
		}
		w[nw].p = line + i;
		while (i < len && !is_space(line[i]))
			i++;
		w[nw].len = (size_t)(line + i - w[nw].p);
		nw++;
	}
	if (nw == 0) {
		*why = "empty request";
		return -1;
	}

	if (word_is(&w[0], "account")) {
		if (nw >= 2 && word_is(&w[1], "list")) {
			if (nw > 3)
				goto usage_list;
			req->cmd = ADMIN_ACCOUNT_LIST;
			if (nw == 3 && copy_arg(req->arg, sizeof(req->arg), w[2].p, w[2].len) < 0)
				goto usage_list;
			return 0;
		}
		if (nw >= 2 && word_is(&w[1], "add"))
			req->cmd = ADMIN_ACCOUNT_ADD;
		else if (nw >= 2 && word_is(&w[1], "passwd"))
			req->cmd = ADMIN_ACCOUNT_PASSWD;
		else if (nw >= 2 && word_is(&w[1], "del"))
			req->cmd = ADMIN_ACCOUNT_DEL;
		else {
			*why = "usage: account add|passwd|del JID, account list [DOMAIN]";
			return -1;
		}
		/* Bare JIDs have no spaces (Nodeprep and Nameprep refuse them). */
		if (nw != 3 || copy_arg(req->arg, sizeof(req->arg), w[2].p, w[2].len) < 0) {
			req->cmd = ADMIN_NONE;
			*why = "usage: account add|passwd|del JID";
			return -1;
		}
		return 0;
	}
	if (word_is(&w[0], "sessions") || word_is(&w[0], "stats") || word_is(&w[0], "reload")) {
		if (nw != 1) {
			*why = "this command takes no arguments";
			return -1;
		}
		req->cmd = word_is(&w[0], "sessions") ? ADMIN_SESSIONS
			 : word_is(&w[0], "stats") ? ADMIN_STATS : ADMIN_RELOAD;
		return 0;
	}
	if (word_is(&w[0], "kick")) {
		const char *end;
		if (nw < 2)
			goto usage_kick;
		end = w[nw - 1].p + w[nw - 1].len;
		if (nw >= 3 && admin_condition_known(w[nw - 1].p, w[nw - 1].len)) {
			memcpy(req->cond, w[nw - 1].p, w[nw - 1].len);
			req->cond[w[nw - 1].len] = '\0';
			end = w[nw - 2].p + w[nw - 2].len;
		}
		/* The JID runs from its first word to the end of its last, so a
		 * resource keeps its inner spaces. */
		if (copy_arg(req->arg, sizeof(req->arg), w[1].p, (size_t)(end - w[1].p)) < 0)
			goto usage_kick;
		req->cmd = ADMIN_KICK;
		return 0;
	}
	*why = "unknown command (account, sessions, kick, stats, reload)";
	return -1;

usage_list:
	memset(req, 0, sizeof(*req));
	*why = "usage: account list [DOMAIN]";
	return -1;
usage_kick:
	memset(req, 0, sizeof(*req));
	*why = "usage: kick JID [CONDITION]";
	return -1;
}

/* ---- responses --------------------------------------------------------------- */

void admin_out_init(struct admin_out *o, size_t max)
{
	memset(o, 0, sizeof(*o));
	o->max = max;
}

void admin_out_free(struct admin_out *o)
{
	free(o->buf);
	o->buf = NULL;
	o->len = o->cap = 0;
	o->overflow = false;
}

void admin_out_reset(struct admin_out *o)
{
	o->len = 0;
	o->overflow = false;
}

static int out_reserve(struct admin_out *o, size_t n)
{
	size_t cap;
	char *b;

	if (o->overflow || n > o->max - o->len) {
		o->overflow = true;
		return -1;
	}
	if (o->len + n <= o->cap)
		return 0;
	cap = o->cap ? o->cap : 256;
	while (cap < o->len + n)
		cap *= 2;
	if (cap > o->max)
		cap = o->max;
	b = realloc(o->buf, cap);
	if (!b) {
		o->overflow = true;
		return -1;
	}
	o->buf = b;
	o->cap = cap;
	return 0;
}

int admin_out_line(struct admin_out *o, const char *s, size_t len)
{
	bool stuff = len > 0 && s[0] == '.';

	if (out_reserve(o, len + 1 + stuff) < 0)
		return -1;
	if (stuff)
		o->buf[o->len++] = '.';
	memcpy(o->buf + o->len, s, len);
	o->len += len;
	o->buf[o->len++] = '\n';
	return 0;
}

static int out_vprintf(struct admin_out *o, const char *prefix, const char *fmt, va_list ap)
{
	char line[ADMIN_LINE_MAX];
	size_t p = strlen(prefix);
	int n;

	memcpy(line, prefix, p);
	n = vsnprintf(line + p, sizeof(line) - p, fmt, ap);
	if (n < 0)
		return -1;
	if ((size_t)n >= sizeof(line) - p)
		n = (int)(sizeof(line) - p - 1);
	/* A reason may quote what the client sent: keep it on one line. */
	for (size_t i = 0; i < p + (size_t)n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	return admin_out_line(o, line, p + (size_t)n);
}

int admin_out_printf(struct admin_out *o, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = out_vprintf(o, "", fmt, ap);
	va_end(ap);
	return r;
}

int admin_out_ok(struct admin_out *o)
{
	return admin_out_line(o, "ok", 2);
}

int admin_out_err(struct admin_out *o, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = out_vprintf(o, "err ", fmt, ap);
	va_end(ap);
	return r;
}

int admin_out_end(struct admin_out *o)
{
	/* Not admin_out_line: the terminator is the one line never stuffed. */
	if (out_reserve(o, 2) < 0)
		return -1;
	o->buf[o->len++] = '.';
	o->buf[o->len++] = '\n';
	return 0;
}

int admin_unstuff(const char *line, size_t len, const char **data, size_t *dlen)
{
	if (len && line[len - 1] == '\r')
		len--;
	if (len == 1 && line[0] == '.')
		return 1;
	if (len && line[0] == '.') {
		line++;
		len--;
	}
	*data = line;
	*dlen = len;
	return 0;
}

/* ---- statistics ------------------------------------------------------------------ */

struct stat_field {
	const char *name;
	size_t off;
};

#define F(n) { #n, offsetof(struct server_worker_stats, n) }
static const struct stat_field stat_fields[] = {
	F(connections), F(sessions), F(accepted), F(stanzas_in), F(stanzas_out),
	F(bytes_in), F(bytes_out), F(stream_errors), F(auth_failures),
};
#undef F

int admin_format_stats(struct admin_out *o, unsigned worker, const struct server_worker_stats *st)
{
	char line[ADMIN_LINE_MAX];
	size_t n = (size_t)snprintf(line, sizeof(line), "worker %u", worker);

	for (size_t i = 0; i < NELEM(stat_fields); i++) {
		uint64_t v;
		memcpy(&v, (const char *)st + stat_fields[i].off, sizeof(v));
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s %" PRIu64, stat_fields[i].name, v);
	}
	return admin_out_line(o, line, n);
}

static bool parse_u64(const char *p, size_t len, uint64_t *v)
{
	uint64_t x = 0;

	if (len == 0 || len > 20)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		if (x > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
			return false;
		x = x * 10 + (uint64_t)(p[i] - '0');
	}
	*v = x;
	return true;
}

int admin_parse_stats(const char *line, size_t len, unsigned *worker, struct server_worker_stats *st)
{
	struct word w[2 + 2 * 32];
	size_t nw = 0, i = 0;
	uint64_t v;

	while (i < len && nw < NELEM(w)) {
		while (i < len && line[i] == ' ')
			i++;
		if (i == len)
			break;
		w[nw].p = line + i;
		while (i < len && line[i] != ' ')
			i++;
		w[nw].len = (size_t)(line + i - w[nw].p);
		nw++;
	}
	if (nw < 2 || nw % 2 || !word_is(&w[0], "worker") || !parse_u64(w[1].p, w[1].len, &v) || v > UINT32_MAX)
		return -1;
	*worker = (unsigned)v;
	memset(st, 0, sizeof(*st));
	for (size_t k = 2; k < nw; k += 2) {
		if (!parse_u64(w[k + 1].p, w[k + 1].len, &v))
			return -1;
		for (size_t f = 0; f < NELEM(stat_fields); f++)
			if (word_is(&w[k], stat_fields[f].name))
				memcpy((char *)st + stat_fields[f].off, &v, sizeof(v));
	}
	return 0;
}
