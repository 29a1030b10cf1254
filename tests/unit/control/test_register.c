/* control/register.c (XEP-0077) and account removal: the pre-auth form and
 * account creation with salted SCRAM credentials, conflict and refusals,
 * the per-address rate limit, password change, cancellation that removes
 * the account and every record of the user and then closes the sessions;
 * and account_del purging the user's records (stanzactl account del).
 * Credentials are checked by recomputing them with OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "im_fakes.h"
#include "control/account.h"
#include "store/store.h"

#define JULIET "juliet@" FX_DOMAIN

static int setup(void **state)
{
	struct im_fx *f = fx_new();
	assert_non_null(f);
	fake_route_takes = fake_user_sessions = fake_available = 0;   /* nobody online */
	assert_int_equal(fx_add_account(f, JULIET, "capulet"), ACCOUNT_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fx_free(*state);
	return 0;
}

/* Whether sc was made from pass (RFC 5802 StoredKey, ServerKey). */
static bool cred_matches(const struct store_scram *sc, const char *pass)
{
	const EVP_MD *md = sc->hash == STORE_SHA1 ? EVP_sha1() : sc->hash == STORE_SHA256 ? EVP_sha256() : EVP_sha512();
	int hl = EVP_MD_get_size(md);
	uint8_t salted[64], ckey[64], skey[64], stored[64];
	unsigned int n;
	assert_int_equal(PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), sc->salt, sc->salt_len, (int)sc->iterations, md,
					   hl, salted), 1);
	assert_non_null(HMAC(md, salted, hl, (const uint8_t *)"Client Key", 10, ckey, &n));
	assert_non_null(HMAC(md, salted, hl, (const uint8_t *)"Server Key", 10, skey, &n));
	assert_int_equal(EVP_Digest(ckey, (size_t)hl, stored, &n, md, NULL), 1);
	return memcmp(stored, sc->stored_key, (size_t)hl) == 0 && memcmp(skey, sc->server_key, (size_t)hl) == 0;
}

static bool password_is(struct im_fx *f, const char *jid, const char *pass)
{
	struct store_account a;
	assert_int_equal(store_account_get(f->st, NULL, jid, strlen(jid), &a), STORE_OK);
	assert_int_equal(a.nscram, 3);
	for (int i = 0; i < a.nscram; i++)
		if (!cred_matches(&a.scram[i], pass))
			return false;
	return true;
}

static void assert_error(struct im_fx *f, const char *etype, const char *cond)
{
	assert_int_equal(fake_nposts, 1);
	assert_int_equal(fake_posts[0].kind, POST_SESSION);
	char c[128];
	snprintf(c, sizeof(c), "<error type='%s'><%s xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>", etype, cond);
	assert_non_null(strstr(fake_posts[0].data, c));
}

static void assert_result(struct im_fx *f)
{
	assert_true(fake_nposts >= 1);
	assert_int_equal(fake_posts[0].kind, POST_SESSION);
	assert_non_null(strstr(fake_posts[0].data, "type='result'"));
}

static struct net_addr addr4(uint8_t last, uint16_t port)
{
	struct net_addr a;
	memset(&a, 0, sizeof(a));
	a.family = NET_AF_INET;
	a.port = port;
	a.addr[0] = 192;
	a.addr[1] = 0;
	a.addr[2] = 2;
	a.addr[3] = last;
	return a;
}

static void preauth(struct im_fx *f, const char *stanza, const struct net_addr *peer)
{
	fx_req_peer(f, IM_REQ_PREAUTH_IQ, 77, "", 0, stanza, peer);
}

static void reg(struct im_fx *f, const char *user, const char *pass, const struct net_addr *peer)
{
	char st[512];
	snprintf(st, sizeof(st),
		 "<iq type='set' id='reg2'><query xmlns='jabber:iq:register'><username>%s</username>"
		 "<password>%s</password></query></iq>", user, pass);
	preauth(f, st, peer);
}

static void test_form_and_create(void **state)
{
	struct im_fx *f = *state;
	struct net_addr a = addr4(1, 40000);

	/* XEP-0077 3.1: the fields. */
	preauth(f, "<iq type='get' id='reg1'><query xmlns='jabber:iq:register'/></iq>", &a);
	assert_result(f);
	assert_int_equal(fake_posts[0].handle, 77);
	assert_non_null(strstr(fake_posts[0].data, "<instructions>"));
	assert_non_null(strstr(fake_posts[0].data, "<username/><password/>"));
	assert_null(strstr(fake_posts[0].data, "<registered/>"));
	fake_posts_clear();

	/* Created, nodeprepped, salted SCRAM credentials for the password. */
	reg(f, "Bill", "Calliope &amp; co", &a);
	assert_result(f);
	assert_non_null(strstr(fake_posts[0].data, "id='reg2'"));
	fake_posts_clear();
	assert_true(im_account_exists(&f->ctx, "bill@" FX_DOMAIN, strlen("bill@" FX_DOMAIN)));
	assert_true(password_is(f, "bill@" FX_DOMAIN, "Calliope & co"));

	/* Taken: conflict. */
	reg(f, "bill", "other", &a);
	assert_error(f, "cancel", "conflict");
	fake_posts_clear();
	assert_true(password_is(f, "bill@" FX_DOMAIN, "Calliope & co"));
}

static void test_refusals(void **state)
{
	struct im_fx *f = *state;
	struct net_addr a = addr4(2, 40000);

	/* 3.1: missing or empty fields are not-acceptable. */
	preauth(f, "<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>x</username></query></iq>", &a);
	assert_error(f, "modify", "not-acceptable");
	fake_posts_clear();
	reg(f, "x", "", &a);
	assert_error(f, "modify", "not-acceptable");
	fake_posts_clear();
	reg(f, "", "pw", &a);
	assert_error(f, "modify", "not-acceptable");
	fake_posts_clear();
	/* A username nodeprep refuses. */
	reg(f, "a@b", "pw", &a);
	assert_error(f, "modify", "not-acceptable");
	fake_posts_clear();
	reg(f, "with space", "pw", &a);
	assert_error(f, "modify", "not-acceptable");
	fake_posts_clear();
	/* <remove/> before authentication. */
	preauth(f, "<iq type='set' id='r'><query xmlns='jabber:iq:register'><remove/></query></iq>", &a);
	assert_error(f, "cancel", "unexpected-request");
	fake_posts_clear();
	/* Registration off: service-unavailable. */
	f->cfg->im.register_enabled = 0;
	preauth(f, "<iq type='get' id='reg1'><query xmlns='jabber:iq:register'/></iq>", &a);
	assert_error(f, "cancel", "service-unavailable");
	fake_posts_clear();
	reg(f, "nope", "pw", &a);
	assert_error(f, "cancel", "service-unavailable");
	fake_posts_clear();
	assert_false(im_account_exists(&f->ctx, "nope@" FX_DOMAIN, strlen("nope@" FX_DOMAIN)));
	/* Other pre-auth iqs. */
	f->cfg->im.register_enabled = 1;
	preauth(f, "<iq type='get' id='v'><query xmlns='jabber:iq:version'/></iq>", &a);
	assert_error(f, "cancel", "service-unavailable");
	fake_posts_clear();
}

static void test_rate_limit(void **state)
{
	struct im_fx *f = *state;
	struct net_addr a = addr4(3, 1000), a2 = addr4(3, 2000), b = addr4(4, 1000);
	char user[32];

	f->cfg->im.register_per_hour = 2;
	/* Two from one address (any port), then refused, type wait. */
	reg(f, "u1", "pw", &a);
	assert_result(f);
	fake_posts_clear();
	reg(f, "u2", "pw", &a2);
	assert_result(f);
	fake_posts_clear();
	reg(f, "u3", "pw", &a);
	assert_error(f, "wait", "not-acceptable");
	assert_non_null(strstr(fake_posts[0].data, "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>"));
	fake_posts_clear();
	assert_false(im_account_exists(&f->ctx, "u3@" FX_DOMAIN, strlen("u3@" FX_DOMAIN)));
	/* Failed attempts do not count; other addresses are not affected. */
	reg(f, "u1", "pw", &b);
	assert_error(f, "cancel", "conflict");
	fake_posts_clear();
	reg(f, "u4", "pw", &b);
	assert_result(f);
	fake_posts_clear();
	/* Half an hour later one more (one per 30 minutes), not two. */
	register_clock_skew(&f->ctx, 30 * 60 * 1000 + 10);
	reg(f, "u5", "pw", &a);
	assert_result(f);
	fake_posts_clear();
	reg(f, "u6", "pw", &a);
	assert_error(f, "wait", "not-acceptable");
	fake_posts_clear();
	/* IPv6: one /64 is one client. */
	struct net_addr v6;
	memset(&v6, 0, sizeof(v6));
	v6.family = NET_AF_INET6;
	v6.addr[0] = 0x20;
	v6.addr[1] = 0x01;
	for (int i = 0; i < 3; i++) {
		v6.addr[15] = (uint8_t)i;
		snprintf(user, sizeof(user), "v6u%d", i);
		reg(f, user, "pw", &v6);
		if (i < 2)
			assert_result(f);
		else
			assert_error(f, "wait", "not-acceptable");
		fake_posts_clear();
	}
}

static void iq(struct im_fx *f, const char *stanza)
{
	fx_req(f, IM_REQ_STANZA, 5, JULIET "/balcony", IM_SF_AVAILABLE, stanza);
}

static void test_password_change(void **state)
{
	struct im_fx *f = *state;

	/* get: registered, the username, never the password. */
	iq(f, "<iq type='get' id='g' from='" JULIET "/balcony'><query xmlns='jabber:iq:register'/></iq>");
	assert_result(f);
	assert_non_null(strstr(fake_posts[0].data, "<registered/>"));
	assert_non_null(strstr(fake_posts[0].data, "<username>juliet</username>"));
	assert_non_null(strstr(fake_posts[0].data, "<password/>"));
	fake_posts_clear();

	/* 3.3 */
	iq(f, "<iq type='set' id='c1' to='" FX_DOMAIN "' from='" JULIET "/balcony'><query xmlns='jabber:iq:register'>"
	      "<username>juliet</username><password>newpass</password></query></iq>");
	assert_result(f);
	assert_non_null(strstr(fake_posts[0].data, "id='c1'"));
	fake_posts_clear();
	assert_true(password_is(f, JULIET, "newpass"));

	/* Empty password: refused, the old one stays. */
	iq(f, "<iq type='set' id='c2' from='" JULIET "/balcony'><query xmlns='jabber:iq:register'>"
	      "<username>juliet</username><password/></query></iq>");
	assert_error(f, "modify", "not-acceptable");
	fake_posts_clear();
	/* Another user's name, or none: bad-request. */
	iq(f, "<iq type='set' id='c3' from='" JULIET "/balcony'><query xmlns='jabber:iq:register'>"
	      "<username>romeo</username><password>x</password></query></iq>");
	assert_error(f, "modify", "bad-request");
	fake_posts_clear();
	iq(f, "<iq type='set' id='c4' from='" JULIET "/balcony'><query xmlns='jabber:iq:register'>"
	      "<password>x</password></query></iq>");
	assert_error(f, "modify", "bad-request");
	fake_posts_clear();
	assert_true(password_is(f, JULIET, "newpass"));
	/* Addressed to another user: not handled for them. */
	assert_int_equal(fx_add_account(f, "romeo@" FX_DOMAIN, "m"), ACCOUNT_OK);
	iq(f, "<iq type='set' id='c5' to='romeo@" FX_DOMAIN "' from='" JULIET "/balcony'>"
	      "<query xmlns='jabber:iq:register'><username>romeo</username><password>x</password></query></iq>");
	assert_error(f, "cancel", "service-unavailable");
	fake_posts_clear();
	assert_true(password_is(f, "romeo@" FX_DOMAIN, "m"));
}

static void put_records(struct im_fx *f, const char *bare)
{
	char k[256];
	size_t bl = strlen(bare);
	memcpy(k, bare, bl);
	k[bl] = '\0';
	memcpy(k + bl + 1, "romeo@" FX_DOMAIN, strlen("romeo@" FX_DOMAIN));
	size_t kl = bl + 1 + strlen("romeo@" FX_DOMAIN);
	assert_int_equal(store_put(f->st, NULL, STORE_T_ROSTER, k, kl, "x", 1, 0), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_PENDING, k, kl, "x", 1, 0), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_BLOCKLIST, k, kl, "", 0, 0), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_PRIVATE, k, kl, "x", 1, 0), STORE_OK);
	assert_int_equal(store_put(f->st, NULL, STORE_T_VCARD, bare, bl, "<vCard/>", 8, 0), STORE_OK);
	assert_int_equal(store_queue_append(f->st, NULL, STORE_T_OFFLINE, bare, bl, "<message/>", 10, NULL), STORE_OK);
	/* A neighbour whose name starts the same must keep its records. */
	char n[256];
	snprintf(n, sizeof(n), "%s.evil", bare);
	assert_int_equal(store_put(f->st, NULL, STORE_T_VCARD, n, strlen(n), "<vCard/>", 8, 0), STORE_OK);
	fx_req(f, IM_REQ_SESSION_END, 5, JULIET "/balcony", 0, "<presence type='unavailable'/>");
	time_t w;
	size_t sl;
	assert_true(last_get(&f->ctx, bare, bl, &w, NULL, 0, &sl));
}

static void assert_no_records(struct im_fx *f, const char *bare)
{
	char k[256];
	size_t bl = strlen(bare);
	memcpy(k, bare, bl);
	k[bl] = '\0';
	for (int tb = 0; tb < STORE_T_NPUBLIC; tb++) {
		uint64_t n = 1;
		assert_int_equal(store_count(f->st, NULL, (enum store_table)tb, k, bl + 1, &n), STORE_OK);
		assert_int_equal(n, 0);
		struct store_buf b = { 0 };
		assert_int_equal(store_get(f->st, NULL, (enum store_table)tb, bare, bl, &b), STORE_NOTFOUND);
		store_buf_free(&b);
	}
	char n[256];
	snprintf(n, sizeof(n), "%s.evil", bare);
	struct store_buf b = { 0 };
	assert_int_equal(store_get(f->st, NULL, STORE_T_VCARD, n, strlen(n), &b), STORE_OK);
	store_buf_free(&b);
}

static void test_remove(void **state)
{
	struct im_fx *f = *state;

	put_records(f, JULIET);
	fake_posts_clear();
	/* <remove/> with something else: bad-request, nothing removed. */
	iq(f, "<iq type='set' id='u0' from='" JULIET "/balcony'><query xmlns='jabber:iq:register'><remove/>"
	      "<username>juliet</username></query></iq>");
	assert_error(f, "modify", "bad-request");
	fake_posts_clear();
	assert_true(im_account_exists(&f->ctx, JULIET, strlen(JULIET)));

	/* 3.2: result, then every session closed with not-authorized. */
	iq(f, "<iq type='set' id='u1' from='" JULIET "/balcony'><query xmlns='jabber:iq:register'><remove/></query></iq>");
	assert_int_equal(fake_nposts, 2);
	assert_result(f);
	assert_non_null(strstr(fake_posts[0].data, "id='u1'"));
	assert_int_equal(fake_posts[1].kind, POST_KICK);
	assert_string_equal(fake_posts[1].data, JULIET);
	assert_string_equal(fake_posts[1].cond, "not-authorized");
	fake_posts_clear();
	assert_false(im_account_exists(&f->ctx, JULIET, strlen(JULIET)));
	assert_no_records(f, JULIET);
	/* The kicked sessions end afterwards: no last-activity record comes
	 * back for the deleted account. */
	fx_req(f, IM_REQ_SESSION_END, 5, JULIET "/balcony", 0, "<presence type='unavailable'/>");
	assert_no_records(f, JULIET);
	/* A message to the deleted account is bounced, not stored. */
	fx_req(f, IM_REQ_STANZA, 0, JULIET, 0, "<message from='romeo@" FX_DOMAIN "/o' to='" JULIET "'><body>x</body></message>");
	assert_int_equal(fake_nposts, 1);
	assert_non_null(strstr(fake_posts[0].data, "service-unavailable"));
	fake_posts_clear();
	assert_no_records(f, JULIET);
}

/* stanzactl account del (offline) and the admin socket's: account_del
 * takes the records with the account. */
static void test_account_del_purges(void **state)
{
	struct im_fx *f = *state;

	put_records(f, JULIET);
	assert_int_equal(account_del(f->st, JULIET), ACCOUNT_OK);
	assert_no_records(f, JULIET);
	assert_int_equal(account_del(f->st, JULIET), ACCOUNT_NOTFOUND);
	/* The same name again starts empty. */
	assert_int_equal(fx_add_account(f, JULIET, "again"), ACCOUNT_OK);
	assert_no_records(f, JULIET);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_form_and_create, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_password_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_account_del_purges, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
