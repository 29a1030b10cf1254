/* stanzad's configuration: the file (libconfig syntax, docs/CONFIG.md is
 * the reference), the command line over it, and the checks both pass
 * through. The result is a struct server_config (router/config-t.h), plain
 * data that the router copies.
 *
 * Typical use, start and reload alike:
 *
 *     struct config_overrides ov;
 *     if (config_args(argc, argv, &ov, err, sizeof err) < 0) usage;
 *     struct server_config cfg;
 *     if (config_load(ov.file, &cfg, err, sizeof err) < 0 ||
 *         config_override(&cfg, &ov, err, sizeof err) < 0)
 *             fail with err;     // "stanzad.conf:12: limits.max_depth: ..."
 *
 * The flags are applied again after every reload, so a flag keeps winning
 * over the file for the life of the process.
 *
 * Every function returns 0 on success and -1 on failure with one line of
 * explanation in err[0..errlen). Nothing here logs or keeps global state
 * (config_args uses getopt's, and resets it).
 */
#ifndef STANZA_CMD_CONFIG_H
#define STANZA_CMD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "router/config-t.h"

#define CONFIG_DEFAULT_DATA_DIR   "./data"
#define CONFIG_SOCKET_NAME        "stanzad.sock"
/* The router's limit (router/router-t.h ROUTER_MAX_WORKERS); checked here
 * so that the operator hears it from the configuration, with a line number. */
#define CONFIG_MAX_WORKERS        64

/* The command line, as given. Strings are borrowed from argv. */
struct config_overrides {
	const char *file;                              /* -c: NULL runs on the defaults */
	const char *data_dir;                          /* -d */
	const char *domain[CONFIG_MAX_VHOSTS];         /* -D, in order: replace the file's vhosts */
	unsigned ndomain;
	const char *listen[CONFIG_MAX_LISTENERS];      /* --listen, --listen-tls, in order: */
	uint8_t listen_kind[CONFIG_MAX_LISTENERS];     /* replace the file's listeners */
	unsigned nlisten;
	const char *workers;                           /* -w */
	const char *log_level;                         /* -l */
	bool check_only;                               /* --check-config */
	bool allow_plaintext_auth;                     /* --allow-plaintext-auth */
	bool help;                                     /* -h */
	bool version;                                  /* -V */
};

/* The embedded defaults: vhost localhost (certificate generated in the data
 * directory), c2s on 127.0.0.1:5222 (STARTTLS) and 127.0.0.1:5223 (direct
 * TLS), one worker per online CPU, data in ./data, log level info. */
void config_defaults(struct server_config *cfg);

/* The defaults, then the file at path (NULL: no file). Unknown options,
 * wrong types and values out of range are errors, reported with the file
 * and line. cfg is written only on success. */
int config_load(const char *path, struct server_config *cfg, char *err, size_t errlen);

/* Parse stanzad's command line into *ov (zeroed first). Usage errors only:
 * the values are checked by config_override. */
int config_args(int argc, char **argv, struct config_overrides *ov, char *err, size_t errlen);

/* Apply the flags of ov to cfg and check the result as config_load does.
 * cfg is written only on success. */
int config_override(struct server_config *cfg, const struct config_overrides *ov,
		    char *err, size_t errlen);

/* The checks that span options (at least one vhost and one listener, no
 * duplicates, output room for a whole stanza, socket path length).
 * config_load and config_override call it. */
int config_check(const struct server_config *cfg, char *err, size_t errlen);

/* ---- derived paths (-1 if they do not fit in len) ------------------------ */

/* The admin socket: admin_socket, or <data_dir>/stanzad.sock. */
int config_admin_socket(const struct server_config *cfg, char *buf, size_t len);

/* The store's directory: <data_dir>/store. */
int config_store_dir(const struct server_config *cfg, char *buf, size_t len);

/* Certificate chain and key of vhost i: as configured, or
 * <data_dir>/certs/<domain>.crt and .key. *generated tells which (only the
 * generated ones may be created by tls_cert_ensure). */
int config_cert_paths(const struct server_config *cfg, unsigned i, char *cert, char *key,
		      size_t len, bool *generated);

/* Names for logs and the docs: "starttls", "direct"; "kick_old", ... */
const char *config_listener_kind_name(unsigned kind);
const char *config_conflict_name(unsigned conflict);

#endif
