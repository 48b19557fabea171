/* config: one table describes every key (group, name, type, default,
 * bounds, reload class), so defaults, parsing, validation, "unknown key"
 * errors and what a reload applies come from one place. */
#include "util/config.h"

#include "util/log.h"
#include "util/netaddr.h"
#include "util/redisurl.h"

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

enum key_type { KEY_BOOL, KEY_UINT, KEY_U64, KEY_STRING, KEY_STRLIST, KEY_LISTEN, KEY_ADDR, KEY_LOGLEVEL };

/* One row per key: where it goes, its default (as the file would write
 * it, parsed like the file's value; "" is the empty value), its bounds
 * (KEY_UINT, KEY_U64) and whether only a restart applies it.  Defaults
 * live here alone: config_new_defaults() and a new [issuer NAME] read
 * them, and tests/check-docs.sh compares rtcsignald.conf(5) and
 * data/rtcsignald.conf with them. */
struct key_spec {
	const char *group;
	const char *name;
	enum key_type type;
	size_t offset;
	const char *def;
	uint64_t min, max;
	bool restart;
};

#define K(g, n, t, field, def, lo, hi) { g, n, t, offsetof(struct config, field), def, lo, hi, false }
/* Only a restart applies these: they are bound at start-up. */
#define KR(g, n, t, field, def, lo, hi) { g, n, t, offsetof(struct config, field), def, lo, hi, true }

static const struct key_spec keys[] = {
	/* group, name, type, field, default, min, max */
	KR("server", "listen", KEY_LISTEN, listen, "0.0.0.0:8080", 0, 0),
	K("server", "allow_anonymous", KEY_BOOL, allow_anonymous, "false", 0, 0),
	K("server", "require_auth", KEY_BOOL, require_auth, "false", 0, 0),
	K("server", "trusted_proxies", KEY_STRLIST, trusted_proxies, "", 0, 0),
	K("server", "app_ping_interval", KEY_UINT, app_ping_interval, "30", 1, 3600),
	K("server", "ws_ping_interval", KEY_UINT, ws_ping_interval, "20", 1, 3600),
	K("server", "ws_ping_timeout", KEY_UINT, ws_ping_timeout, "30", 1, 3600),
	K("server", "drain_timeout", KEY_UINT, drain_timeout, "10", 0, 3600),
	K("server", "tls_certificate", KEY_STRING, tls_certificate, "", 0, 0),
	K("server", "tls_key", KEY_STRING, tls_key, "", 0, 0),
	KR("admin", "listen", KEY_ADDR, admin_listen, "127.0.0.1:8001", 0, 0),
	KR("admin", "max_connections", KEY_UINT, admin_max_connections, "64", 1, 10000),
	KR("admin", "connection_timeout", KEY_UINT, admin_connection_timeout, "10", 1, 3600),
	KR("admin", "connections_per_address", KEY_UINT, admin_connections_per_address, "8", 1, 10000),
	KR("admin", "request_timeout", KEY_UINT, admin_request_timeout, "10", 1, 3600),
	KR("admin", "requests_per_second", KEY_UINT, admin_requests_per_second, "20", 0, 100000),
	KR("admin", "audit_entries", KEY_UINT, admin_audit_entries, "200", 1, 100000),
	K("admin", "metrics_top_roles", KEY_UINT, metrics_top_roles, "10", 1, 100),
	K("admin", "token", KEY_STRING, admin_token, "", 0, 0),
	K("admin", "token_file", KEY_STRING, admin_token_file, "", 0, 0),
	K("admin", "metrics_token", KEY_STRING, metrics_token, "", 0, 0),
	K("admin", "jwt_group", KEY_STRING, admin_jwt_group, "", 0, 0),
	K("admin", "jwt_group_claim", KEY_STRING, admin_jwt_group_claim, "cognito:groups", 0, 0),
	KR("rooms", "store", KEY_STRING, rooms_store, "sqlite", 0, 0),
	K("rooms", "default_ttl", KEY_UINT, rooms_default_ttl, "7200", 0, 10u * 365 * 86400),
	K("rooms", "max_ttl", KEY_UINT, rooms_max_ttl, "2592000", 0, 10u * 365 * 86400),
	K("rooms", "store_retry_timeout", KEY_UINT, rooms_store_retry_timeout, "5", 0, 60),
	K("rooms", "max_rooms", KEY_UINT, rooms_max, "100000", 0, 100000000),
	K("rooms", "max_rooms_per_creator", KEY_UINT, rooms_per_creator, "1000", 0, 100000000),
	K("rooms", "max_rooms_per_address", KEY_UINT, rooms_per_address, "1000", 0, 100000000),
	K("rooms", "default_room", KEY_STRING, rooms_default_room, "", 0, 0),
	K("rooms", "max_public_keys_per_account", KEY_UINT, public_keys_per_account, "10", 0, 100000),
	K("rooms", "max_authorized_keys", KEY_UINT, authorized_keys_max, "1000", 1, 1000000),
	K("limits", "max_message_bytes", KEY_U64, max_message_bytes, "1048576", 1024, 64 << 20),
	K("limits", "max_metadata_bytes", KEY_U64, max_metadata_bytes, "16384", 64, 1 << 20),
	K("limits", "max_queued_bytes", KEY_U64, max_queued_bytes, "4194304", 4096, 1ull << 32),
	K("limits", "max_sessions", KEY_UINT, max_sessions, "100000", 1, 10000000),
	K("limits", "max_peers_per_room", KEY_UINT, max_peers_per_room, "1000", 1, 10000000),
	K("limits", "max_json_depth", KEY_UINT, max_json_depth, "32", 2, CONFIG_JSON_DEPTH_MAX),
	K("limits", "max_json_values", KEY_UINT, max_json_values, "10000", 16, 100000000),
	K("limits", "messages_per_second", KEY_UINT, messages_per_second, "50", 0, 1000000),
	K("limits", "messages_burst", KEY_UINT, messages_burst, "200", 1, 1000000),
	K("limits", "connections_per_address", KEY_UINT, connections_per_address, "100", 1, 10000000),
	K("limits", "handshake_timeout_ms", KEY_UINT, handshake_timeout_ms, "10000", 100, 3600000),
	K("limits", "registrations_per_address_per_minute", KEY_UINT,
	  registrations_per_address_per_minute, "6000", 0, 1000000),
	K("limits", "failed_registrations_per_address_per_minute", KEY_UINT,
	  failed_registrations_per_address_per_minute, "60", 0, 1000000),
	K("limits", "failed_registrations_per_connection", KEY_UINT,
	  failed_registrations_per_connection, "10", 0, 1000000),
	K("limits", "max_filter_work", KEY_U64, max_filter_work, "1000000", 1000, 1000000000000),
	K("limits", "watches_per_session", KEY_UINT, watches_per_session, "16", 0, 1024),
	K("limits", "watches_per_room", KEY_UINT, watches_per_room, "1000", 0, 100000),
	K("turn", "stun_uris", KEY_STRLIST, stun_uris, "", 0, 0),
	K("turn", "turn_uris", KEY_STRLIST, turn_uris, "", 0, 0),
	K("turn", "secret", KEY_STRING, turn_secret, "", 0, 0),
	K("turn", "secret_file", KEY_STRING, turn_secret_file, "", 0, 0),
	K("turn", "credential_ttl", KEY_UINT, turn_credential_ttl, "86400", 60, 30 * 86400),
	K("log", "level", KEY_LOGLEVEL, log_level, "info", 0, 0),
	K("log", "repeat_interval", KEY_UINT, log_repeat_interval, "5", 0, 3600),
	K("log", "repeat_burst", KEY_UINT, log_repeat_burst, "5", 1, 1000000),
	KR("cluster", "redis", KEY_STRING, cluster_redis, "", 0, 0),
	KR("cluster", "password_file", KEY_STRING, cluster_password_file, "", 0, 0),
	KR("cluster", "key_prefix", KEY_STRING, cluster_key_prefix, "rtcsignald:", 0, 0),
	KR("cluster", "instance_id", KEY_STRING, cluster_instance_id, "", 0, 0),
	KR("cluster", "instance_ttl", KEY_UINT, cluster_instance_ttl, "10", 1, 3600),
	KR("cluster", "max_outstanding", KEY_UINT, cluster_max_outstanding, "10000", 10, 1000000),
	KR("cluster", "max_buffered_events", KEY_UINT, cluster_max_buffered_events, "10000", 10, 1000000),
};

#define FIELD(base, spec, type) ((type *)((char *)(base) + (spec)->offset))

/* The keys of an [issuer NAME] group, into struct config_issuer. */
#define I(n, t, field, def, lo, hi) \
	{ "issuer", n, t, offsetof(struct config_issuer, field), def, lo, hi, false }
static const struct key_spec issuer_keys[] = {
	/* name, type, field, default, min, max */
	I("issuer", KEY_STRING, issuer, "", 0, 0),
	I("audience", KEY_STRING, audience, "", 0, 0),
	I("jwks_url", KEY_STRING, jwks_url, "", 0, 0),
	I("jwks_file", KEY_STRING, jwks_file, "", 0, 0),
	I("jwks_ca_file", KEY_STRING, jwks_ca_file, "", 0, 0),
	I("jwks_refresh", KEY_UINT, jwks_refresh, "3600", 60, 7 * 86400),
	I("jwks_refresh_min", KEY_UINT, jwks_refresh_min, "30", 1, 86400),
	I("token_use", KEY_STRING, token_use, "", 0, 0),
	I("algorithms", KEY_STRING, algorithms, "RS256;ES256", 0, 0),
	I("cognito_region", KEY_STRING, cognito_region, "", 0, 0),
	I("cognito_user_pool_id", KEY_STRING, cognito_user_pool_id, "", 0, 0),
	I("cognito_app_client_id", KEY_STRING, cognito_app_client_id, "", 0, 0),
};
#define ISSUER_GROUP "issuer "

static void issuer_free(gpointer p)
{
	struct config_issuer *is = p;
	g_free(is->name);
	g_free(is->issuer);
	g_free(is->audience);
	g_free(is->jwks_url);
	g_free(is->jwks_file);
	g_free(is->jwks_ca_file);
	g_free(is->token_use);
	g_free(is->algorithms);
	g_free(is->cognito_region);
	g_free(is->cognito_user_pool_id);
	g_free(is->cognito_app_client_id);
	g_free(is);
}

static void free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	g_free(s);
}

static int set_key(void *base, const struct key_spec *k, const char *group, const char *value,
		   const char *where, GError **err);

/* Sets every key of TABLE in BASE to its default.  The zeroed struct is
 * the empty value; a default that does not parse is a bug of the table. */
static void set_defaults(void *base, const struct key_spec *table, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		g_autoptr(GError) err = NULL;
		if (*table[i].def && set_key(base, &table[i], table[i].group, table[i].def,
					     "built-in defaults", &err) < 0)
			g_error("%s", err->message);
	}
}

struct config *config_new_defaults(void)
{
	struct config *cfg = g_new0(struct config, 1);

	set_defaults(cfg, keys, G_N_ELEMENTS(keys));
	cfg->issuers = g_ptr_array_new_with_free_func(issuer_free);
	return cfg;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	g_free(cfg->path);
	g_free(cfg->state_dir);
	if (cfg->listen)
		g_array_unref(cfg->listen);
	g_strfreev(cfg->trusted_proxies);
	netaddr_cidrs_free(cfg->trusted);
	free_secret(cfg->admin_token);
	g_free(cfg->admin_token_file);
	free_secret(cfg->metrics_token);
	g_free(cfg->admin_jwt_group);
	g_free(cfg->admin_jwt_group_claim);
	g_free(cfg->rooms_store);
	g_free(cfg->rooms_default_room);
	if (cfg->issuers)
		g_ptr_array_unref(cfg->issuers);
	g_strfreev(cfg->stun_uris);
	g_strfreev(cfg->turn_uris);
	free_secret(cfg->turn_secret);
	g_free(cfg->turn_secret_file);
	g_free(cfg->cluster_redis);
	free_secret(cfg->cluster_password);
	g_free(cfg->cluster_password_file);
	g_free(cfg->cluster_key_prefix);
	g_free(cfg->cluster_instance_id);
	g_free(cfg->tls_certificate);
	g_free(cfg->tls_key);
	g_free(cfg);
}

int config_parse_listen(const char *text, struct listen_addr *out)
{
	g_autofree char *host = NULL;
	const char *port;
	const char *colon;

	if (text[0] == '[') {
		const char *end = strchr(text, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		host = g_strndup(text + 1, (size_t)(end - text - 1));
		port = end + 2;
	} else {
		colon = strrchr(text, ':');
		if (!colon || strchr(text, ':') != colon)
			return -EINVAL;
		host = g_strndup(text, (size_t)(colon - text));
		port = colon + 1;
	}
	if (!*host || !*port || strspn(port, "0123456789") != strlen(port) || strlen(port) > 5 ||
	    atoi(port) > 65535)
		return -EINVAL;

	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
	};
	struct addrinfo *res = NULL;
	if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
		return -EINVAL;
	memset(out, 0, sizeof *out);
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	snprintf(out->text, sizeof out->text, res->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
		 host, port);
	freeaddrinfo(res);
	return 0;
}

static int parse_listen_list(const char *value, GArray **out)
{
	g_auto(GStrv) parts = g_strsplit(value, ";", -1);
	g_autoptr(GArray) list = g_array_new(FALSE, TRUE, sizeof(struct listen_addr));

	for (char **p = parts; *p; p++) {
		g_strstrip(*p);
		if (!**p)
			continue;
		struct listen_addr a;
		if (config_parse_listen(*p, &a) < 0)
			return -EINVAL;
		g_array_append_val(list, a);
	}
	if (list->len == 0)
		return -EINVAL;
	*out = g_steal_pointer(&list);
	return 0;
}

static char **parse_strlist(const char *value)
{
	g_auto(GStrv) parts = g_strsplit(value, ";", -1);
	GPtrArray *list = g_ptr_array_new();

	for (char **p = parts; *p; p++) {
		g_strstrip(*p);
		if (**p)
			g_ptr_array_add(list, g_strdup(*p));
	}
	/* An empty list is NULL, the default, as an empty string is. */
	if (list->len == 0) {
		g_ptr_array_free(list, TRUE);
		return NULL;
	}
	g_ptr_array_add(list, NULL);
	return (char **)g_ptr_array_free(list, FALSE);
}

static const struct key_spec *find_issuer_key(const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(issuer_keys); i++)
		if (strcmp(issuer_keys[i].name, name) == 0)
			return &issuer_keys[i];
	return NULL;
}

static const struct key_spec *find_key(const char *group, const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
		if (strcmp(keys[i].group, group) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* Sets one key from its text form; on failure ERR names the key.  BASE
 * is the struct the key's offset is in: struct config, or struct
 * config_issuer for an [issuer NAME] group. */
static int set_key(void *base, const struct key_spec *k, const char *group, const char *value,
		   const char *where, GError **err)
{
	g_autoptr(GError) parse_err = NULL;
	guint64 u;

	switch (k->type) {
	case KEY_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
			*FIELD(base, k, bool) = true;
		else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
			*FIELD(base, k, bool) = false;
		else
			goto invalid;
		return 0;
	case KEY_UINT:
	case KEY_U64:
		if (!g_ascii_string_to_unsigned(value, 10, k->min, k->max, &u, &parse_err)) {
			if (!g_error_matches(parse_err, G_NUMBER_PARSER_ERROR,
					     G_NUMBER_PARSER_ERROR_OUT_OF_BOUNDS))
				goto invalid;
			g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
				    "%s: [%s] %s: %s is out of range (%" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ")",
				    where, group, k->name, value, (guint64)k->min, (guint64)k->max);
			return -ERANGE;
		}
		if (k->type == KEY_UINT)
			*FIELD(base, k, unsigned) = (unsigned)u;
		else
			*FIELD(base, k, uint64_t) = u;
		return 0;
	case KEY_STRING:
		g_free(*FIELD(base, k, char *));
		*FIELD(base, k, char *) = *value ? g_strdup(value) : NULL;
		return 0;
	case KEY_STRLIST:
		g_strfreev(*FIELD(base, k, char **));
		*FIELD(base, k, char **) = parse_strlist(value);
		return 0;
	case KEY_LISTEN: {
		GArray *list;
		if (parse_listen_list(value, &list) < 0) {
			g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
				    "%s: [%s] %s: \"%s\" is not a list of numeric ADDRESS:PORT "
				    "(IPv6 as [ADDRESS]:PORT, several separated by ';')",
				    where, group, k->name, value);
			return -EINVAL;
		}
		if (*FIELD(base, k, GArray *))
			g_array_unref(*FIELD(base, k, GArray *));
		*FIELD(base, k, GArray *) = list;
		return 0;
	}
	case KEY_ADDR: {
		struct listen_addr *a = FIELD(base, k, struct listen_addr);
		if (!*value) { /* empty: disabled */
			memset(a, 0, sizeof *a);
			return 0;
		}
		if (config_parse_listen(value, a) == 0)
			return 0;
		g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
			    "%s: [%s] %s: \"%s\" is not a numeric ADDRESS:PORT (IPv6 as [ADDRESS]:PORT), "
			    "or empty for none", where, group, k->name, value);
		return -EINVAL;
	}
	case KEY_LOGLEVEL:
		if (log_level_parse(value, FIELD(base, k, int)) < 0) {
			g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
				    "%s: [%s] %s: \"%s\" is not one of debug, info, notice, warning, err",
				    where, group, k->name, value);
			return -EINVAL;
		}
		return 0;
	}
invalid:
	g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
		    "%s: [%s] %s: \"%s\" is not a valid %s", where, group, k->name, value,
		    k->type == KEY_BOOL ? "boolean (true or false)" : "non-negative integer");
	return -EINVAL;
}

static int load_file(struct config *cfg, const char *path, GError **err)
{
	g_autoptr(GKeyFile) kf = g_key_file_new();
	g_autoptr(GError) local = NULL;

	if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &local)) {
		g_set_error(err, local->domain, local->code, "%s: %s", path, local->message);
		return g_error_matches(local, G_FILE_ERROR, G_FILE_ERROR_NOENT) ? -ENOENT : -EINVAL;
	}

	g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
	for (char **g = groups; *g; g++) {
		g_auto(GStrv) names = g_key_file_get_keys(kf, *g, NULL, NULL);
		void *base = cfg;
		if (g_str_has_prefix(*g, ISSUER_GROUP)) {
			struct config_issuer *is = g_new0(struct config_issuer, 1);
			is->name = g_strstrip(g_strdup(*g + strlen(ISSUER_GROUP)));
			set_defaults(is, issuer_keys, G_N_ELEMENTS(issuer_keys));
			g_ptr_array_add(cfg->issuers, is);
			base = is;
		}
		for (char **n = names; n && *n; n++) {
			const struct key_spec *k = base == cfg ? find_key(*g, *n) : find_issuer_key(*n);
			if (!k) {
				g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
					    "%s: [%s] %s: unknown key", path, *g, *n);
				return -EINVAL;
			}
			/* Raw value: GKeyFile's string unescaping is not wanted for
			 * lists of URIs, and comments were already stripped. */
			g_autofree char *raw = g_key_file_get_value(kf, *g, *n, NULL);
			g_strstrip(raw);
			int r = set_key(base, k, *g, raw, path, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int config_invalid(GError **err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	g_autofree char *msg = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	g_set_error_literal(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, msg);
	return -EINVAL;
}

/* [cluster] and the store that goes with it: several instances on one
 * Redis must share their tokens and keys, so each needs the Redis store. */
static int validate_cluster(const struct config *cfg, const char *where, GError **err)
{
	const char *id = cfg->cluster_instance_id, *why;
	struct redisurl u;

	if (cfg->cluster_redis && redisurl_parse(cfg->cluster_redis, &u, &why) < 0)
		return config_invalid(err, "%s: [cluster] redis: \"%s\": %s", where, cfg->cluster_redis, why);
	if (cfg->cluster_redis)
		redisurl_clear(&u);
	if (cfg->cluster_redis && strcmp(cfg->rooms_store, "sqlite") == 0)
		return config_invalid(err, "%s: [rooms] store = sqlite with [cluster] redis set: each instance "
				      "would keep its own rooms, so instances would disagree on tokens and "
				      "keys; set [rooms] store = redis", where);
	if (!cfg->cluster_redis && strcmp(cfg->rooms_store, "redis") == 0)
		return config_invalid(err, "%s: [rooms] store = redis needs [cluster] redis (the server's "
				      "address)", where);
	if (id && (strlen(id) > 64 || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
						 "0123456789._-") != strlen(id)))
		return config_invalid(err, "%s: [cluster] instance_id: \"%s\" must be 1 to 64 of A-Z a-z "
				      "0-9 . _ -", where, id);
	return 0;
}

static int validate(struct config *cfg, const char *where, GError **err)
{
	int r;

	if (cfg->ws_ping_timeout <= cfg->ws_ping_interval)
		return config_invalid(err, "%s: [server] ws_ping_timeout (%u) must be greater than ws_ping_interval (%u)",
			       where, cfg->ws_ping_timeout, cfg->ws_ping_interval);
	if (cfg->max_queued_bytes < cfg->max_message_bytes)
		return config_invalid(err, "%s: [limits] max_queued_bytes must be at least max_message_bytes", where);
	/* A registered_auth or peer_list lists a whole room's metadata; it is
	 * queued outside max_queued_bytes, so this product is its bound. */
	if ((uint64_t)cfg->max_peers_per_room * cfg->max_metadata_bytes > CONFIG_ROOM_ANSWER_MAX)
		return config_invalid(err, "%s: [limits] max_peers_per_room x max_metadata_bytes must be at most "
				    "%llu (4 GiB): one answer lists a whole room's metadata",
			       where, (unsigned long long)CONFIG_ROOM_ANSWER_MAX);
	if (cfg->turn_uris && cfg->turn_uris[0] && !cfg->turn_secret && !cfg->turn_secret_file)
		return config_invalid(err, "%s: [turn] turn_uris needs secret or secret_file (credentials are minted per peer)",
			       where);
	if (cfg->turn_secret && cfg->turn_secret_file)
		return config_invalid(err, "%s: [turn] secret and secret_file are mutually exclusive", where);
	if (cfg->admin_token && cfg->admin_token_file)
		return config_invalid(err, "%s: [admin] token and token_file are mutually exclusive", where);
	if (!cfg->tls_certificate != !cfg->tls_key)
		return config_invalid(err, "%s: [server] tls_certificate and tls_key go together", where);
	/* An empty value is NULL, as for every string key. */
	if (g_strcmp0(cfg->rooms_store, "sqlite") != 0 && g_strcmp0(cfg->rooms_store, "redis") != 0)
		return config_invalid(err, "%s: [rooms] store: \"%s\" is not supported (sqlite, redis)", where,
				      cfg->rooms_store ? cfg->rooms_store : "");
	if ((r = validate_cluster(cfg, where, err)) < 0)
		return r;
	if (cfg->rooms_default_room &&
	    (strlen(cfg->rooms_default_room) > 128 ||
	     strspn(cfg->rooms_default_room, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") !=
		     strlen(cfg->rooms_default_room)))
		return config_invalid(err, "%s: [rooms] default_room: \"%s\" is not a room id (1 to 128 of "
				    "A-Z a-z 0-9 . _ -)", where, cfg->rooms_default_room);
	if (cfg->rooms_max_ttl && (!cfg->rooms_default_ttl || cfg->rooms_default_ttl > cfg->rooms_max_ttl))
		return config_invalid(err, "%s: [rooms] default_ttl (%u) must be between 1 and max_ttl (%u); "
				    "0 (no expiry) needs max_ttl = 0",
			       where, cfg->rooms_default_ttl, cfg->rooms_max_ttl);
	if (cfg->trusted_proxies && cfg->trusted_proxies[0]) {
		g_autofree char *list = g_strjoinv(";", cfg->trusted_proxies);
		g_autoptr(GError) local = NULL;
		if (netaddr_cidrs_parse(list, &cfg->trusted, &local) < 0)
			return config_invalid(err, "%s: [server] trusted_proxies: %s", where, local->message);
	}
	/* What an [issuer NAME] means (Cognito, JWKS URLs, algorithms) the
	 * daemon checks: auth_load_config(). */
	return 0;
}

int config_read_secret(const char *path, char **out, GError **err)
{
	g_autofree char *contents = NULL;
	g_autoptr(GError) local = NULL;
	gsize len;

	if (!g_file_get_contents(path, &contents, &len, &local)) {
		int code = local->code;
		g_propagate_error(err, g_steal_pointer(&local));
		return code == G_FILE_ERROR_NOENT ? -ENOENT : code == G_FILE_ERROR_ACCES ? -EACCES : -EIO;
	}
	g_strstrip(contents);
	if (!*contents) {
		explicit_bzero(contents, len);
		g_set_error(err, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s is empty", path);
		return -EINVAL;
	}
	*out = g_steal_pointer(&contents);
	return 0;
}

/* A relative name resolves where systemd's LoadCredential= puts files,
 * else next to the config file (the daemon's working directory is /). */
static char *credential_path(const struct config *cfg, const char *name)
{
	const char *creds = g_getenv("CREDENTIALS_DIRECTORY");
	g_autofree char *dir = NULL;

	if (g_path_is_absolute(name))
		return g_strdup(name);
	if (creds && *creds)
		return g_build_filename(creds, name, NULL);
	dir = cfg->path ? g_path_get_dirname(cfg->path) : g_get_current_dir();
	return g_build_filename(dir, name, NULL);
}

/* The TLS key is checked now (ws reads both files): a key others may read
 * is refused, so that --check-config and a reload say so before it is
 * served. */
static int check_tls_key(const char *path, GError **err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return config_invalid(err, "[server] tls_key: %s: %s", path, g_strerror(errno));
	if (st.st_mode & (S_IRWXG | S_IRWXO))
		return config_invalid(err, "[server] tls_key: %s has mode %04o, so group or others may read "
				      "it; run: chmod 600 %s (or hand it over with systemd's LoadCredential=)",
				      path, (unsigned)(st.st_mode & 07777), path);
	return 0;
}

/* Secrets named by *_file keys are read now, so a missing one is a
 * configuration error, caught by --check-config.  READ false only resolves
 * the paths (rtcsignalctl reads the token itself, with its own rights). */
static int load_secrets(struct config *cfg, bool read, GError **err)
{
	struct {
		const char *what;
		char **file, **value;
	} files[] = {
		{ "[turn] secret_file", &cfg->turn_secret_file, &cfg->turn_secret },
		{ "[admin] token_file", &cfg->admin_token_file, &cfg->admin_token },
		{ "[cluster] password_file", &cfg->cluster_password_file, &cfg->cluster_password },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
		g_autoptr(GError) local = NULL;
		if (!*files[i].file)
			continue;
		char *path = credential_path(cfg, *files[i].file);
		g_free(*files[i].file);
		*files[i].file = path;
		int r = read ? config_read_secret(path, files[i].value, &local) : 0;
		if (r < 0) {
			config_invalid(err, "%s: %s", files[i].what, local->message);
			return r;
		}
	}
	/* The TLS files resolve like the secrets; ws loads them. */
	char **tls[] = { &cfg->tls_certificate, &cfg->tls_key };
	for (size_t i = 0; i < G_N_ELEMENTS(tls); i++) {
		if (!*tls[i])
			continue;
		char *path = credential_path(cfg, *tls[i]);
		g_free(*tls[i]);
		*tls[i] = path;
	}
	if (read && cfg->tls_key)
		return check_tls_key(cfg->tls_key, err);
	return 0;
}

static char *default_state_dir(void)
{
	const char *sd = g_getenv("STATE_DIRECTORY"); /* systemd's StateDirectory= */
	if (sd && *sd)
		return g_strndup(sd, strcspn(sd, ":"));
	return g_strdup(CONFIG_DEFAULT_STATE_DIR);
}

int config_load(const char *path, const struct config_overrides *ov, struct config **out,
		GError **err)
{
	struct config *cfg = config_new_defaults();
	int r;

	r = load_file(cfg, path ? path : CONFIG_DEFAULT_PATH, err);
	if (r == -ENOENT && !path) {
		g_clear_error(err);
	} else if (r < 0) {
		goto fail;
	} else {
		cfg->path = g_strdup(path ? path : CONFIG_DEFAULT_PATH);
	}

	if (ov && ov->listen &&
	    (r = set_key(cfg, find_key("server", "listen"), "server", ov->listen, "--listen", err)) < 0)
		goto fail;
	if (ov && ov->admin_listen &&
	    (r = set_key(cfg, find_key("admin", "listen"), "admin", ov->admin_listen, "--admin-listen", err)) < 0)
		goto fail;
	if (ov && ov->log_level &&
	    (r = set_key(cfg, find_key("log", "level"), "log", ov->log_level, "--log-level", err)) < 0)
		goto fail;
	cfg->state_dir = ov && ov->state_dir ? g_strdup(ov->state_dir) : default_state_dir();
	if ((r = validate(cfg, cfg->path ? cfg->path : "built-in defaults", err)) < 0 ||
	    (r = load_secrets(cfg, !(ov && ov->no_secret_files), err)) < 0)
		goto fail;
	*out = cfg;
	return 0;
fail:
	config_free(cfg);
	return r;
}

static bool listen_equal(const GArray *a, const GArray *b)
{
	if (a->len != b->len)
		return false;
	for (guint i = 0; i < a->len; i++) {
		const struct listen_addr *x = &g_array_index(a, struct listen_addr, i);
		const struct listen_addr *y = &g_array_index(b, struct listen_addr, i);
		if (x->len != y->len || memcmp(&x->ss, &y->ss, x->len) != 0)
			return false;
	}
	return true;
}

static bool key_equal(const struct config *a, const struct config *b, const struct key_spec *k)
{
	switch (k->type) {
	case KEY_BOOL:
		return *FIELD(a, k, bool) == *FIELD(b, k, bool);
	case KEY_UINT:
		return *FIELD(a, k, unsigned) == *FIELD(b, k, unsigned);
	case KEY_U64:
		return *FIELD(a, k, uint64_t) == *FIELD(b, k, uint64_t);
	case KEY_LOGLEVEL:
		return *FIELD(a, k, int) == *FIELD(b, k, int);
	case KEY_STRING:
		return g_strcmp0(*FIELD(a, k, char *), *FIELD(b, k, char *)) == 0;
	case KEY_STRLIST: {
		char **x = *FIELD(a, k, char **), **y = *FIELD(b, k, char **);
		return (!x && !y) || (x && y && g_strv_equal((const char *const *)x, (const char *const *)y));
	}
	case KEY_LISTEN:
		return listen_equal(*FIELD(a, k, GArray *), *FIELD(b, k, GArray *));
	case KEY_ADDR:
		return memcmp(FIELD(a, k, struct listen_addr), FIELD(b, k, struct listen_addr),
			      sizeof(struct listen_addr)) == 0;
	}
	return false;
}

/* Swaps one key's value between two configurations. */
static void key_swap(struct config *a, struct config *b, const struct key_spec *k)
{
	static const size_t sizes[] = {
		[KEY_BOOL] = sizeof(bool),	   [KEY_UINT] = sizeof(unsigned),
		[KEY_U64] = sizeof(uint64_t),	   [KEY_STRING] = sizeof(char *),
		[KEY_STRLIST] = sizeof(char **),   [KEY_LISTEN] = sizeof(GArray *),
		[KEY_ADDR] = sizeof(struct listen_addr), [KEY_LOGLEVEL] = sizeof(int),
	};
	struct listen_addr tmp;
	void *x = (char *)a + k->offset, *y = (char *)b + k->offset;

	memcpy(&tmp, x, sizes[k->type]);
	memcpy(x, y, sizes[k->type]);
	memcpy(y, &tmp, sizes[k->type]);
}

void config_carry_over(struct config *next, struct config *running,
		       void (*changed)(const char *group, const char *key, bool applied, void *data),
		       void *data)
{
	for (size_t i = 0; i < G_N_ELEMENTS(keys); i++) {
		const struct key_spec *k = &keys[i];
		if (key_equal(next, running, k))
			continue;
		if (k->restart)
			key_swap(next, running, k); /* keep what runs */
		changed(k->group, k->name, !k->restart, data);
	}
}

bool config_key_info(size_t i, struct config_key_info *out)
{
	const size_t n = G_N_ELEMENTS(keys);
	const struct key_spec *k;

	if (i < n)
		k = &keys[i];
	else if (i - n < G_N_ELEMENTS(issuer_keys))
		k = &issuer_keys[i - n];
	else
		return false;
	*out = (struct config_key_info){
		.group = i < n ? k->group : "issuer NAME",
		.name = k->name,
		.def = k->def,
		.bounded = k->type == KEY_UINT || k->type == KEY_U64,
		.min = k->min,
		.max = k->max,
		.restart = k->restart,
	};
	return true;
}
