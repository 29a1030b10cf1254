/* libFuzzer target for JID preparation (parser/jid.h).
 *
 * The input is one JID string. Checked:
 *   - jid_parse never crashes, and fails leaving the empty JID;
 *   - a parsed JID is well-formed (separators where the lengths say, NUL
 *     at the end, no part over 1023 bytes) and stable: parsing its
 *     canonical string gives it back;
 *   - the ASCII fast path and libidn (JID_F_NO_FAST) agree on every result
 *     and every byte;
 *   - jid_parse agrees with jid_prep applied to each part as jid.h says the
 *     string is split, including which part is named on failure;
 *   - jid_prep honours cap exactly (out is an exactly sized allocation, so
 *     one byte too many is an ASan report) and is itself idempotent;
 *   - jid_set_resource leaves the JID unchanged on failure.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parser/jid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FAIL(...) do { fprintf(stderr, "fuzz_jid: " __VA_ARGS__); fputc('\n', stderr); abort(); } while (0)
#define CHECK(c) do { if (!(c)) FAIL("%s:%d: check failed: %s", __FILE__, __LINE__, #c); } while (0)

static const char *const part_names[] = { "local", "domain", "resource" };

static void check_empty(const struct jid *j)
{
	CHECK(j->local_len == 0 && j->domain_len == 0 && j->resource_len == 0 && j->str[0] == '\0');
}

static void check_shape(const struct jid *j)
{
	CHECK(j->domain_len > 0);
	CHECK(j->local_len <= JID_PART_MAX && j->domain_len <= JID_PART_MAX && j->resource_len <= JID_PART_MAX);
	size_t n = jid_size(j);
	CHECK(j->str[n] == '\0' && strlen(j->str) == n);
	if (j->local_len)
		CHECK(j->str[j->local_len] == '@');
	if (j->resource_len)
		CHECK(j->str[jid_bare_len(j)] == '/');
	struct jid_slice d = jid_domain(j);
	CHECK(memchr(d.ptr, '@', d.len) == NULL && memchr(d.ptr, '/', d.len) == NULL);
	struct jid_slice l = jid_local(j);
	CHECK(memchr(l.ptr, '@', l.len) == NULL && memchr(l.ptr, '/', l.len) == NULL);
}

static bool jid_same(const struct jid *a, const struct jid *b)
{
	return jid_equal(a, b) && strcmp(a->str, b->str) == 0;
}

/* jid_prep into a fresh buffer of exactly cap bytes. */
static enum jid_err prep(enum jid_part part, const char *in, size_t len, size_t cap,
			 char *copy_out, size_t *out_len, unsigned flags)
{
	char *out = malloc(cap ? cap : 1);
	enum jid_err e;

	if (!out)
		abort();
	*out_len = 0xdead;
	e = jid_prep(part, in, len, out, cap, out_len, flags);
	if (e == JID_OK) {
		CHECK(*out_len < cap && out[*out_len] == '\0');
		if (copy_out)
			memcpy(copy_out, out, *out_len + 1);
	}
	free(out);
	return e;
}

/* jid_prep of one part: fast vs libidn, cap handling, idempotence.
 * Returns the result; *out holds the prepared part on success. */
static enum jid_err check_prep(enum jid_part part, const char *in, size_t len, char *out, size_t *out_len)
{
	static char slow[JID_PART_MAX + 1], again[JID_PART_MAX + 1];
	size_t slow_len, again_len, tmp;
	enum jid_err e = prep(part, in, len, JID_PART_MAX + 1, out, out_len, 0);
	enum jid_err es = prep(part, in, len, JID_PART_MAX + 1, slow, &slow_len, JID_F_NO_FAST);

	CHECK(e != JID_ERR_NOSPACE && es != JID_ERR_NOSPACE);
	if (e != es)
		FAIL("jid_prep(%s): fast path says %s, libidn says %s", part_names[part], jid_err_str(e), jid_err_str(es));
	if (e != JID_OK)
		return e;
	if (*out_len != slow_len || memcmp(out, slow, slow_len) != 0)
		FAIL("jid_prep(%s): fast path gives \"%s\", libidn \"%s\"", part_names[part], out, slow);

	CHECK(*out_len > 0 && *out_len <= JID_PART_MAX);
	CHECK(prep(part, in, len, *out_len + 1, NULL, &tmp, 0) == JID_OK && tmp == *out_len);
	if (prep(part, in, len, *out_len, NULL, &tmp, 0) != JID_ERR_NOSPACE)
		FAIL("jid_prep(%s): cap one short of \"%s\" is not JID_ERR_NOSPACE", part_names[part], out);

	if (prep(part, out, *out_len, JID_PART_MAX + 1, again, &again_len, 0) != JID_OK ||
	    again_len != *out_len || memcmp(again, out, again_len) != 0)
		FAIL("jid_prep(%s) is not idempotent on \"%s\"", part_names[part], out);
	return JID_OK;
}

/* What jid_parse must return, from the parts as jid.h splits the string. */
static enum jid_err expected(const char *s, size_t n, struct jid *want)
{
	static char lp[JID_PART_MAX + 1], dp[JID_PART_MAX + 1], rp[JID_PART_MAX + 1];
	const char *slash = memchr(s, '/', n);
	size_t bare = slash ? (size_t)(slash - s) : n;
	const char *at = memchr(s, '@', bare);
	const char *dom = at ? at + 1 : s;
	size_t ll = 0, dl = 0, rl = 0;
	enum jid_err e;

	if (at && (e = check_prep(JID_LOCAL, s, (size_t)(at - s), lp, &ll)) != JID_OK)
		return e;
	if (at && ll == 0)
		return JID_ERR_LOCAL;
	if ((e = check_prep(JID_DOMAIN, dom, (size_t)(s + bare - dom), dp, &dl)) != JID_OK)
		return e;
	if (dl == 0)
		return JID_ERR_DOMAIN;
	if (slash && (e = check_prep(JID_RESOURCE, slash + 1, n - bare - 1, rp, &rl)) != JID_OK)
		return e;
	if (slash && rl == 0)
		return JID_ERR_RESOURCE;

	size_t o = 0;
	memset(want, 0, sizeof *want);
	if (ll) {
		memcpy(want->str, lp, ll);
		want->str[ll] = '@';
		o = ll + 1;
	}
	memcpy(want->str + o, dp, dl);
	o += dl;
	if (rl) {
		want->str[o++] = '/';
		memcpy(want->str + o, rp, rl);
		o += rl;
	}
	want->str[o] = '\0';
	want->local_len = (uint16_t)ll;
	want->domain_len = (uint16_t)dl;
	want->resource_len = (uint16_t)rl;
	return JID_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct jid j, js, j2, want, saved;
	const char *s = (const char *)data;

	enum jid_err e = jid_parse(&j, s, size, 0);
	enum jid_err es = jid_parse(&js, s, size, JID_F_NO_FAST);
	CHECK(e != JID_ERR_NOSPACE);
	CHECK(jid_err_str(e) != NULL);
	if (e != es)
		FAIL("jid_parse: fast path says %s, libidn says %s", jid_err_str(e), jid_err_str(es));
	if (e != JID_OK) {
		check_empty(&j);
		check_empty(&js);
	} else {
		check_shape(&j);
		if (!jid_same(&j, &js))
			FAIL("jid_parse: fast path gives \"%s\", libidn \"%s\"", j.str, js.str);
		/* prepare(prepare(x)) == prepare(x) */
		struct jid_slice full = jid_full(&j);
		enum jid_err e2 = jid_parse(&j2, full.ptr, full.len, 0);
		if (e2 != JID_OK || !jid_same(&j, &j2))
			FAIL("jid_parse is not idempotent on \"%s\": %s, \"%s\"", j.str, jid_err_str(e2), j2.str);
	}

	/* Parts are split and prepared the way jid.h documents. */
	enum jid_err ew = expected(s, size, &want);
	if (ew != e)
		FAIL("jid_parse says %s, its parts prepared alone say %s", jid_err_str(e), jid_err_str(ew));
	if (e == JID_OK && !jid_same(&j, &want))
		FAIL("jid_parse gives \"%s\", its parts prepared alone \"%s\"", j.str, want.str);

	/* The input as a resource of a fixed JID. */
	CHECK(jid_parse(&j2, "user@example.com", 16, 0) == JID_OK);
	saved = j2;
	char rbuf[JID_PART_MAX + 1];
	size_t rlen;
	enum jid_err er = size ? check_prep(JID_RESOURCE, s, size, rbuf, &rlen) : JID_OK;
	enum jid_err ex = jid_set_resource(&j2, s, size, 0);
	if (er != ex)
		FAIL("jid_set_resource says %s, jid_prep(resource) %s", jid_err_str(ex), jid_err_str(er));
	if (ex != JID_OK) {
		if (!jid_same(&j2, &saved))
			FAIL("jid_set_resource failed and changed the JID to \"%s\"", j2.str);
	} else {
		check_shape(&j2);
		CHECK(jid_bare_equal(&j2, &saved));
		struct jid_slice r = jid_resource(&j2);
		CHECK(size ? (r.len == rlen && memcmp(r.ptr, rbuf, rlen) == 0) : r.len == 0);
	}
	return 0;
}
