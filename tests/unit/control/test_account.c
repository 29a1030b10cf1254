/* control/account: add, exists, passwd, del, list and the refusals,
 * against a real LMDB store in a mkdtemp directory. Credentials are
 * checked by recomputing them from the stored salt with OpenSSL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "control/account.h"
#include "store/store.h"

#define ITER 4096u

struct fx {
	char root[64];
	char dir[96];
	struct store *st;
};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	assert_non_null(f);
	strcpy(f->root, "/tmp/stanzad-account-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	snprintf(f->dir, sizeof f->dir, "%s/db", f->root);
	assert_int_equal(store_open(&f->st, f->dir, NULL), STORE_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	store_close(f->st);
	nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* Whether sc was made from pass: RFC 5802 StoredKey and ServerKey. */
static bool cred_matches(const struct store_scram *sc, const char *pass)
{
	const EVP_MD *md = sc->hash == STORE_SHA1 ? EVP_sha1()
			 : sc->hash == STORE_SHA256 ? EVP_sha256() : EVP_sha512();
	int hl = EVP_MD_get_size(md);
	uint8_t salted[64], ckey[64], skey[64], stored[64];
	unsigned int n;
	assert_int_equal(sc->key_len, hl);
	assert_int_equal(PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), sc->salt, sc->salt_len,
					   (int)sc->iterations, md, hl, salted), 1);
	assert_non_null(HMAC(md, salted, hl, (const uint8_t *)"Client Key", 10, ckey, &n));
	assert_non_null(HMAC(md, salted, hl, (const uint8_t *)"Server Key", 10, skey, &n));
	assert_int_equal(EVP_Digest(ckey, (size_t)hl, stored, &n, md, NULL), 1);
	return memcmp(stored, sc->stored_key, (size_t)hl) == 0 &&
	       memcmp(skey, sc->server_key, (size_t)hl) == 0;
}

static void get(struct fx *f, const char *jid, struct store_account *a)
{
	assert_int_equal(store_account_get(f->st, NULL, jid, strlen(jid), a), STORE_OK);
}

static void test_add(void **state)
{
	struct fx *f = *state;
	struct store_account a;
	assert_int_equal(account_add(f->st, "Juliet@Example.COM", "pencil", 6, ITER), ACCOUNT_OK);
	get(f, "juliet@example.com", &a);
	assert_int_equal(a.nscram, 3);
	assert_true(a.created > 1600000000);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(a.scram[i].iterations, ITER);
		assert_int_equal(a.scram[i].salt_len, 16);
		assert_true(cred_matches(&a.scram[i], "pencil"));
		assert_false(cred_matches(&a.scram[i], "pencil2"));
	}
	assert_non_null(store_account_scram(&a, STORE_SHA1));
	assert_non_null(store_account_scram(&a, STORE_SHA256));
	assert_non_null(store_account_scram(&a, STORE_SHA512));
	/* Each hash its own salt. */
	assert_memory_not_equal(a.scram[0].salt, a.scram[1].salt, 16);
	assert_memory_not_equal(a.scram[1].salt, a.scram[2].salt, 16);

	assert_int_equal(account_add(f->st, "juliet@example.com", "other", 5, ITER), ACCOUNT_EXISTS);
	struct store_account b;
	get(f, "juliet@example.com", &b);
	assert_memory_equal(&a.scram[0], &b.scram[0], sizeof a.scram[0]);

	/* Passwords are SASLprepped: U+00A0 maps to a space. */
	assert_int_equal(account_add(f->st, "romeo@example.com", "a\xc2\xa0" "b", 4, ITER), ACCOUNT_OK);
	get(f, "romeo@example.com", &a);
	assert_true(cred_matches(&a.scram[1], "a b"));
}

static void test_refusals(void **state)
{
	struct fx *f = *state;
	static const char *const bad[] = {
		"juliet@example.com/balcony",   /* full JID */
		"example.com",                  /* no localpart */
		"jul iet@example.com",          /* Nodeprep: space */
		"jul\"iet@example.com",         /* Nodeprep: '"' */
		"@example.com",
		"juliet@",
		"juliet@exa mple.com",
		"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(account_add(f->st, bad[i], "pencil", 6, ITER), ACCOUNT_BAD_JID);
		assert_int_equal(account_passwd(f->st, bad[i], "pencil", 6, ITER), ACCOUNT_BAD_JID);
		assert_int_equal(account_del(f->st, bad[i]), ACCOUNT_BAD_JID);
	}
	/* Longer than the store's keys. */
	char big[700];
	memset(big, 'a', 600);
	strcpy(big + 600, "@example.com");
	assert_int_equal(account_add(f->st, big, "pencil", 6, ITER), ACCOUNT_BAD_JID);

	assert_int_equal(account_add(f->st, "juliet@example.com", "", 0, ITER), ACCOUNT_BAD_PASSWORD);
	assert_int_equal(account_add(f->st, "juliet@example.com", "a\x07" "b", 3, ITER), ACCOUNT_BAD_PASSWORD);
	assert_int_equal(account_add(f->st, "juliet@example.com", "\xff\xfe", 2, ITER), ACCOUNT_BAD_PASSWORD);
	assert_int_equal(account_add(f->st, "juliet@example.com", "pencil", 6, 100), ACCOUNT_ERROR);
	uint64_t n = 1;
	assert_int_equal(store_account_count(f->st, NULL, NULL, &n), STORE_OK);
	assert_int_equal(n, 0);
	assert_string_equal(account_rc_str(ACCOUNT_EXISTS), "account exists");
}

static void test_passwd_del(void **state)
{
	struct fx *f = *state;
	struct store_account a, b;
	assert_int_equal(account_passwd(f->st, "juliet@example.com", "x", 1, ITER), ACCOUNT_NOTFOUND);
	assert_int_equal(account_del(f->st, "juliet@example.com"), ACCOUNT_NOTFOUND);
	assert_int_equal(account_add(f->st, "juliet@example.com", "pencil", 6, ITER), ACCOUNT_OK);
	get(f, "juliet@example.com", &a);
	assert_int_equal(account_passwd(f->st, "JULIET@example.com", "quill", 5, ITER + 1), ACCOUNT_OK);
	get(f, "juliet@example.com", &b);
	assert_int_equal(b.created, a.created);
	assert_int_equal(b.nscram, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(b.scram[i].iterations, ITER + 1);
		assert_true(cred_matches(&b.scram[i], "quill"));
		assert_false(cred_matches(&b.scram[i], "pencil"));
		assert_memory_not_equal(a.scram[i].salt, b.scram[i].salt, 16);
	}
	assert_int_equal(account_passwd(f->st, "juliet@example.com", "", 0, ITER), ACCOUNT_BAD_PASSWORD);
	assert_int_equal(account_del(f->st, "juliet@example.com"), ACCOUNT_OK);
	assert_int_equal(store_account_get(f->st, NULL, "juliet@example.com", 18, &a), STORE_NOTFOUND);
	assert_int_equal(account_del(f->st, "juliet@example.com"), ACCOUNT_NOTFOUND);
	assert_int_equal(account_passwd(f->st, "juliet@example.com", "x", 1, ITER), ACCOUNT_NOTFOUND);
}

struct seen {
	char jids[8][64];
	int n;
	int stop_after;
};

static int collect(void *arg, const char *jid, size_t len, int64_t created)
{
	struct seen *s = arg;
	assert_int_equal(strlen(jid), len);
	assert_true(created > 0);
	snprintf(s->jids[s->n++], sizeof s->jids[0], "%s", jid);
	return s->stop_after && s->n >= s->stop_after;
}

static void test_list(void **state)
{
	struct fx *f = *state;
	static const char *const jids[] = {
		"romeo@montague.lit", "juliet@capulet.lit", "nurse@capulet.lit", "benvolio@montague.lit",
	};
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(account_add(f->st, jids[i], "pw", 2, ITER), ACCOUNT_OK);
	struct seen s = { .n = 0 };
	assert_int_equal(account_list(f->st, NULL, collect, &s), ACCOUNT_OK);
	assert_int_equal(s.n, 4);
	assert_string_equal(s.jids[0], "juliet@capulet.lit");
	assert_string_equal(s.jids[1], "nurse@capulet.lit");
	assert_string_equal(s.jids[2], "benvolio@montague.lit");
	assert_string_equal(s.jids[3], "romeo@montague.lit");
	memset(&s, 0, sizeof s);
	assert_int_equal(account_list(f->st, "MONTAGUE.lit", collect, &s), ACCOUNT_OK);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.jids[0], "benvolio@montague.lit");
	memset(&s, 0, sizeof s);
	s.stop_after = 1;
	assert_int_equal(account_list(f->st, NULL, collect, &s), ACCOUNT_OK);
	assert_int_equal(s.n, 1);
	memset(&s, 0, sizeof s);
	assert_int_equal(account_list(f->st, "verona.lit", collect, &s), ACCOUNT_OK);
	assert_int_equal(s.n, 0);
	assert_int_equal(account_list(f->st, "bad domain", collect, &s), ACCOUNT_BAD_JID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_add, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_passwd_del, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
