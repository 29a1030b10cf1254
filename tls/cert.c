/* Self-signed certificates for a first start (tls_cert_ensure, tls/tls.h).
 *
 * Boot-time only: blocking file I/O is fine here, never on a worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/tls.h"

#define VALID_DAYS 365
/* Backdate notBefore a little: a client whose clock lags the server's by
 * a minute would otherwise reject a certificate made just now. */
#define BACKDATE_SECONDS 3600
#define MAX_DOMAIN 253

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	unsigned long e = ERR_peek_last_error();
	va_list ap;
	size_t n;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
		n = strlen(err);
		if (e && n + 2 < errlen) {
			const char *r = ERR_reason_error_string(e);
			snprintf(err + n, errlen - n, ": %s", r ? r : "(no reason)");
		}
	}
	ERR_clear_error();
	return -1;
}

/* A DNS name we can put into a certificate: LDH labels and dots. The
 * certificate goes to clients; a name with anything else in it is a
 * configuration mistake better caught here. */
static bool domain_ok(const char *d)
{
	size_t len = strlen(d), label = 0;

	if (len == 0 || len > MAX_DOMAIN || d[0] == '.' || d[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)d[i];
		if (ch == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '-'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

static int add_dns(GENERAL_NAMES *gens, const char *prefix, const char *domain)
{
	char name[MAX_DOMAIN + 3];
	GENERAL_NAME *g = GENERAL_NAME_new();
	ASN1_IA5STRING *s = ASN1_IA5STRING_new();

	snprintf(name, sizeof name, "%s%s", prefix, domain);
	if (!g || !s || !ASN1_STRING_set(s, name, (int)strlen(name)))
		goto fail;
	GENERAL_NAME_set0_value(g, GEN_DNS, s);
	s = NULL;
	if (!sk_GENERAL_NAME_push(gens, g))
		goto fail;
	return 0;
fail:
	ASN1_IA5STRING_free(s);
	GENERAL_NAME_free(g);
	return -1;
}

static int add_ext_conf(X509 *x, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (!ext)
		return -1;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *key, const char *const *domains, size_t n)
{
	X509 *x = X509_new();
	X509_NAME *name;
	GENERAL_NAMES *gens = NULL;
	BIGNUM *serial = BN_new();

	if (!x || !serial)
		goto fail;
	/* 159 random bits: positive, at most 20 octets (RFC 5280 4.1.2.2),
	 * unguessable (CA/B forum asks for 64 bits of entropy). */
	if (!X509_set_version(x, X509_VERSION_3) ||
	    !BN_rand(serial, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
	    !BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(x)) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -BACKDATE_SECONDS) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), VALID_DAYS, 0, NULL) ||
	    !X509_set_pubkey(x, key))
		goto fail;
	name = X509_get_subject_name(x);
	if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
					(const unsigned char *)domains[0], -1, -1, 0) ||
	    !X509_set_issuer_name(x, name))
		goto fail;

	gens = sk_GENERAL_NAME_new_null();
	if (!gens)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (add_dns(gens, "", domains[i]) < 0 || add_dns(gens, "*.", domains[i]) < 0)
			goto fail;
	if (!X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT))
		goto fail;
	if (add_ext_conf(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext_conf(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext_conf(x, NID_ext_key_usage, "serverAuth") < 0 ||
	    add_ext_conf(x, NID_subject_key_identifier, "hash") < 0)
		goto fail;
	if (!X509_sign(x, key, EVP_sha256()))
		goto fail;
	GENERAL_NAMES_free(gens);
	BN_free(serial);
	return x;
fail:
	GENERAL_NAMES_free(gens);
	BN_free(serial);
	X509_free(x);
	return NULL;
}

static int fsync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, r = -1;

	if (!copy)
		return -1;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		r = fsync(fd);
		close(fd);
	}
	free(copy);
	return r;
}

/* Write the PEM in mem to a temporary file beside path, then move it to
 * path unless path exists by then (RENAME_NOREPLACE: another process that
 * raced us wins, and nothing is ever overwritten). */
static int write_atomic(const char *path, BIO *mem, mode_t mode, char *err, size_t errlen)
{
	char tmp[4096];
	char *data;
	long len = BIO_get_mem_data(mem, &data);
	int fd;
	ssize_t w;

	if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
		return fail(err, errlen, "%s: path too long", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return fail(err, errlen, "%s: %s", tmp, strerror(errno));
	for (long off = 0; off < len; off += w) {
		w = write(fd, data + off, (size_t)(len - off));
		if (w < 0 && errno == EINTR) {
			w = 0;
			continue;
		}
		if (w <= 0)
			goto fail_unlink;
	}
	if (fsync(fd) < 0)
		goto fail_unlink;
	if (close(fd) < 0) {
		fd = -1;
		goto fail_unlink;
	}
	fd = -1;
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
		/* Filesystems without RENAME_NOREPLACE: link() also refuses to
		 * replace. */
		if (errno != EINVAL || link(tmp, path) < 0)
			goto fail_unlink;
		unlink(tmp);
	}
	fsync_dir(path);
	return 0;
fail_unlink: {
		int e = errno;
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		return fail(err, errlen, "%s: %s", path, strerror(e));
	}
}

int tls_cert_ensure(const char *cert_file, const char *key_file,
		    const char *const *domains, size_t n, char *err, size_t errlen)
{
	bool have_cert = access(cert_file, F_OK) == 0;
	bool have_key = access(key_file, F_OK) == 0;
	EVP_PKEY *key = NULL;
	X509 *x = NULL;
	BIO *kmem = NULL, *cmem = NULL;
	int r = -1;

	if (have_cert && have_key)
		return 0;
	if (have_cert || have_key)
		return fail(err, errlen, "only one of %s and %s exists; not generating", cert_file, key_file);
	if (n == 0)
		return fail(err, errlen, "no domain");
	for (size_t i = 0; i < n; i++)
		if (!domain_ok(domains[i]))
			return fail(err, errlen, "'%s' is not a DNS name", domains[i]);

	ERR_clear_error();
	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!key) {
		fail(err, errlen, "EC key generation");
		goto out;
	}
	x = make_cert(key, domains, n);
	if (!x) {
		fail(err, errlen, "certificate");
		goto out;
	}
	kmem = BIO_new(BIO_s_mem());
	cmem = BIO_new(BIO_s_mem());
	if (!kmem || !cmem || !PEM_write_bio_PrivateKey(kmem, key, NULL, NULL, 0, NULL, NULL) ||
	    !PEM_write_bio_X509(cmem, x)) {
		fail(err, errlen, "PEM encoding");
		goto out;
	}
	/* Key first: a certificate on disk always has its key beside it. */
	if (write_atomic(key_file, kmem, 0600, err, errlen) < 0)
		goto out;
	if (write_atomic(cert_file, cmem, 0644, err, errlen) < 0) {
		unlink(key_file);
		goto out;
	}
	r = 1;
out:
	/* The key's bytes were in kmem; BIO_free_all of a mem BIO does not
	 * wipe them. */
	if (kmem) {
		char *p;
		long l = BIO_get_mem_data(kmem, &p);
		if (l > 0)
			OPENSSL_cleanse(p, (size_t)l);
	}
	BIO_free(kmem);
	BIO_free(cmem);
	X509_free(x);
	EVP_PKEY_free(key);
	return r;
}
