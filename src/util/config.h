/* config: the daemon's settings, from built-in defaults, the key file and
 * command-line flags, in that order of precedence (last wins). */
#pragma once

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The deepest JSON [limits] max_json_depth may allow. */
#define CONFIG_JSON_DEPTH_MAX 1000
/* The largest max_peers_per_room x max_metadata_bytes: the bound of one
 * registered_auth or peer_list, which max_queued_bytes does not limit. */
#define CONFIG_ROOM_ANSWER_MAX (1ull << 32)

struct netaddr_cidrs;

#define CONFIG_DEFAULT_PATH SYSCONFDIR "/rtcsignald/rtcsignald.conf"
/* --state-dir when neither it nor $STATE_DIRECTORY is given. */
#define CONFIG_DEFAULT_STATE_DIR LOCALSTATEDIR "/lib/rtcsignald"

struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char text[64]; /* as the operator wrote it, normalised */
};

/* One [issuer NAME] group: a JWT issuer whose tokens are accepted. */
struct config_issuer {
	char *name;
	char *issuer;
	char *audience;
	char *jwks_url;
	char *jwks_file;
	char *jwks_ca_file; /* CA bundle for jwks_url; NULL: the system's */
	unsigned jwks_refresh;
	unsigned jwks_refresh_min; /* between refetches on unknown kids */
	char *token_use;
	char *algorithms; /* "RS256;ES256" */
	char *cognito_region;
	char *cognito_user_pool_id;
	char *cognito_app_client_id;
};

struct config {
	char *path; /* the file read, or NULL for built-in defaults */
	char *state_dir;

	/* [server] */
	GArray *listen; /* of struct listen_addr */
	bool allow_anonymous;
	bool require_auth; /* credentials needed even with no [issuer] */
	char **trusted_proxies; /* CIDRs, as written */
	struct netaddr_cidrs *trusted; /* parsed; NULL: none */
	unsigned app_ping_interval;
	unsigned ws_ping_interval;
	unsigned ws_ping_timeout;
	unsigned drain_timeout;
	char *tls_certificate; /* PEM chain, resolved like token_file; NULL: plain ws:// */
	char *tls_key;         /* PEM key, not readable by group or others */

	/* [admin] */
	struct listen_addr admin_listen; /* ss_family AF_UNSPEC: no admin port */
	unsigned admin_max_connections;
	unsigned admin_connection_timeout;
	unsigned admin_connections_per_address;
	unsigned admin_request_timeout;
	unsigned admin_requests_per_second; /* per client address; 0: no limit */
	unsigned admin_audit_entries;       /* kept for GET /api/audit */
	char *admin_jwt_group;       /* JWTs whose group claim names it are admins; "": none */
	char *admin_jwt_group_claim; /* that claim, e.g. cognito:groups */
	unsigned metrics_top_roles;
	char *admin_token;      /* bearer token of the admin API, or from: */
	char *admin_token_file; /* resolved (see config_load) */
	char *metrics_token;

	/* [rooms] */
	char *rooms_store; /* "sqlite" */
	unsigned rooms_default_ttl;
	unsigned rooms_max_ttl;
	unsigned rooms_store_retry_timeout; /* seconds a locked database is retried */
	unsigned rooms_max;         /* unexpired persistent rooms; 0: no limit */
	unsigned rooms_per_creator; /* of them created by one principal */
	unsigned public_keys_per_account; /* Ed25519 keys one account may publish; 0: no limit */
	unsigned authorized_keys_max;     /* listed by GET /api/rooms/{id}/authorized-keys */
	unsigned rooms_per_address; /* created from one client address */
	char *rooms_default_room; /* a register without room_id joins it; NULL: none */

	/* [cluster] (issue 14) */
	char *cluster_redis; /* NULL: single instance, no Redis code on any path */
	char *cluster_password, *cluster_password_file;
	char *cluster_key_prefix;
	char *cluster_instance_id; /* NULL: host name and a random suffix, at start */
	unsigned cluster_instance_ttl;
	unsigned cluster_max_outstanding;     /* messages to other instances in flight */
	unsigned cluster_max_buffered_events; /* per room while its view loads */

	/* [issuer NAME] */
	GPtrArray *issuers; /* of struct config_issuer */

	/* [limits] */
	uint64_t max_message_bytes;
	uint64_t max_metadata_bytes;
	uint64_t max_queued_bytes;
	unsigned max_sessions;
	unsigned max_peers_per_room;
	unsigned max_json_depth;
	unsigned max_json_values;
	unsigned messages_per_second;
	unsigned messages_burst;
	unsigned connections_per_address;
	unsigned handshake_timeout_ms; /* accept to upgrade (or a whole request) */
	unsigned registrations_per_address_per_minute; /* successful ones */
	unsigned failed_registrations_per_address_per_minute;
	unsigned failed_registrations_per_connection; /* then closed, 1008 */
	uint64_t max_filter_work; /* comparison steps per discovery query */
	unsigned watches_per_session; /* discover_peers "watch":true per connection */
	unsigned watches_per_room;

	/* [turn] */
	char **stun_uris;
	char **turn_uris;
	char *turn_secret;
	char *turn_secret_file;
	unsigned turn_credential_ttl;

	/* [log] */
	int log_level;
	unsigned log_repeat_interval;
	unsigned log_repeat_burst;
};

/* What the command line may override; NULL/0 means "not given". */
struct config_overrides {
	const char *listen;
	const char *admin_listen;
	const char *state_dir;
	const char *log_level;
	/* rtcsignalctl: resolve token_file and secret_file but read neither
	 * (it runs with the operator's rights and needs no TURN secret). */
	bool no_secret_files;
};

/* Loads PATH (or the default path when PATH is NULL; a missing default
 * file means built-in defaults), then applies OV.  A relative token_file or
 * secret_file resolves in $CREDENTIALS_DIRECTORY when set, else in the
 * config file's directory; the file's contents, stripped of surrounding
 * whitespace, become the token or secret.  On failure returns a negative
 * errno and sets ERR to a message naming the file, key and reason.
 * [issuer NAME] groups are parsed, not interpreted: the daemon reads its
 * configuration with auth_load_config(), which also checks them. */
int config_load(const char *path, const struct config_overrides *ov,
		struct config **out, GError **err);
struct config *config_new_defaults(void);
void config_free(struct config *cfg);

/* For a reload: reports through CHANGED each key whose value differs
 * between NEXT and RUNNING, and keeps in NEXT the running value of each
 * one only a restart can apply (APPLIED false). */
void config_carry_over(struct config *next, struct config *running,
		       void (*changed)(const char *group, const char *key, bool applied, void *data),
		       void *data);

/* Sets *ERR to a configuration error (G_KEY_FILE_ERROR_INVALID_VALUE)
 * of FMT; returns -EINVAL.  Also for the checks other modules make of
 * their own groups (auth_load_config). */
int config_invalid(GError **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Reads a token or secret from PATH, stripped of surrounding whitespace:
 * 0, -ENOENT, -EACCES, -EIO, or -EINVAL when it is empty. */
int config_read_secret(const char *path, char **out, GError **err);

/* One key as config.c's table has it, for tests/check-docs.sh, which
 * compares rtcsignald.conf(5) and data/rtcsignald.conf with it. */
struct config_key_info {
	const char *group; /* "issuer NAME" for the keys of every [issuer NAME] */
	const char *name;
	const char *def;   /* the default as the file writes it; "" is empty */
	bool bounded;      /* an integer, min to max */
	uint64_t min, max;
	bool restart;      /* a reload does not apply it */
};
/* The Ith key into OUT; false past the last. */
bool config_key_info(size_t i, struct config_key_info *out);

/* Parses "ADDR:PORT", "[V6ADDR]:PORT"; numeric only. */
int config_parse_listen(const char *text, struct listen_addr *out);
