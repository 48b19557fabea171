/* config: one table describes every key (group, name, type, bounds), so
 * parsing, validation and "unknown key" errors come from one place. */
#include "config.h"

#include "log.h"

#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

enum key_type { KEY_BOOL, KEY_UINT, KEY_U64, KEY_STRING, KEY_STRLIST, KEY_LISTEN, KEY_ADDR, KEY_LOGLEVEL };

struct key_spec {
	const char *group;
	const char *name;
	enum key_type type;
	size_t offset;
	uint64_t min, max; /* for KEY_UINT and KEY_U64 */
	bool restart;      /* SIGHUP cannot apply it */
};

#define K(g, n, t, field, lo, hi) { g, n, t, offsetof(struct config, field), lo, hi, false }
/* Only a restart applies these: they are bound at start-up. */
#define KR(g, n, t, field, lo, hi) { g, n, t, offsetof(struct config, field), lo, hi, true }

static const struct key_spec keys[] = {
	KR("server", "listen", KEY_LISTEN, listen, 0, 0),
	K("server", "allow_anonymous", KEY_BOOL, allow_anonymous, 0, 0),
	K("server", "app_ping_interval", KEY_UINT, app_ping_interval, 1, 3600),
	K("server", "ws_ping_interval", KEY_UINT, ws_ping_interval, 1, 3600),
	K("server", "ws_ping_timeout", KEY_UINT, ws_ping_timeout, 1, 3600),
	K("server", "drain_timeout", KEY_UINT, drain_timeout, 0, 3600),
	KR("admin", "listen", KEY_ADDR, admin_listen, 0, 0),
	KR("admin", "max_connections", KEY_UINT, admin_max_connections, 1, 10000),
	KR("admin", "connection_timeout", KEY_UINT, admin_connection_timeout, 1, 3600),
	K("admin", "metrics_top_roles", KEY_UINT, metrics_top_roles, 1, 100),
	K("admin", "token", KEY_STRING, admin_token, 0, 0),
	K("admin", "token_file", KEY_STRING, admin_token_file, 0, 0),
	K("limits", "max_message_bytes", KEY_U64, max_message_bytes, 1024, 64 << 20),
	K("limits", "max_metadata_bytes", KEY_U64, max_metadata_bytes, 64, 1 << 20),
	K("limits", "max_queued_bytes", KEY_U64, max_queued_bytes, 4096, 1ull << 32),
	K("limits", "max_sessions", KEY_UINT, max_sessions, 1, 10000000),
	K("limits", "max_peers_per_room", KEY_UINT, max_peers_per_room, 1, 10000000),
	K("limits", "max_json_depth", KEY_UINT, max_json_depth, 2, 1000),
	K("turn", "stun_uris", KEY_STRLIST, stun_uris, 0, 0),
	K("turn", "turn_uris", KEY_STRLIST, turn_uris, 0, 0),
	K("turn", "secret", KEY_STRING, turn_secret, 0, 0),
	K("turn", "secret_file", KEY_STRING, turn_secret_file, 0, 0),
	K("turn", "credential_ttl", KEY_UINT, turn_credential_ttl, 60, 30 * 86400),
	K("log", "level", KEY_LOGLEVEL, log_level, 0, 0),
};

#define FIELD(cfg, spec, type) ((type *)((char *)(cfg) + (spec)->offset))

/* Secrets that may instead come from a file: KEY or FILE_KEY, not both. */
static const struct secret_spec {
	const char *group, *key, *file_key;
	size_t secret, file;
} secrets[] = {
	{ "turn", "secret", "secret_file", offsetof(struct config, turn_secret),
	  offsetof(struct config, turn_secret_file) },
	{ "admin", "token", "token_file", offsetof(struct config, admin_token),
	  offsetof(struct config, admin_token_file) },
};

#define SECRET(cfg, spec, field) ((char **)((char *)(cfg) + (spec)->field))

struct config *config_new_defaults(void)
{
	struct config *cfg = g_new0(struct config, 1);
	struct listen_addr def;

	cfg->listen = g_array_new(FALSE, TRUE, sizeof(struct listen_addr));
	if (config_parse_listen("0.0.0.0:8080", &def) == 0)
		g_array_append_val(cfg->listen, def);
	config_parse_listen("127.0.0.1:8001", &cfg->admin_listen);
	cfg->admin_max_connections = 64;
	cfg->admin_connection_timeout = 10;
	cfg->metrics_top_roles = 10;
	cfg->allow_anonymous = false;
	cfg->app_ping_interval = 30;
	cfg->ws_ping_interval = 20;
	cfg->ws_ping_timeout = 30;
	cfg->drain_timeout = 10;
	cfg->max_message_bytes = 1048576;
	cfg->max_metadata_bytes = 16384;
	cfg->max_queued_bytes = 4194304;
	cfg->max_sessions = 100000;
	cfg->max_peers_per_room = 1000;
	cfg->max_json_depth = 32;
	cfg->turn_credential_ttl = 86400;
	cfg->log_level = LOG_INFO;
	return cfg;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	g_free(cfg->path);
	if (cfg->listen)
		g_array_unref(cfg->listen);
	g_strfreev(cfg->stun_uris);
	g_strfreev(cfg->turn_uris);
	for (size_t i = 0; i < G_N_ELEMENTS(secrets); i++) {
		char *secret = *SECRET(cfg, &secrets[i], secret);
		if (secret)
			explicit_bzero(secret, strlen(secret));
		g_free(secret);
		g_free(*SECRET(cfg, &secrets[i], file));
	}
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
	g_ptr_array_add(list, NULL);
	return (char **)g_ptr_array_free(list, FALSE);
}

static const struct key_spec *find_key(const char *group, const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
		if (strcmp(keys[i].group, group) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/* Sets one key from its text form; on failure ERR names the key. */
static int set_key(struct config *cfg, const struct key_spec *k, const char *value,
		   const char *where, GError **err)
{
	char *end = NULL;
	guint64 u;

	switch (k->type) {
	case KEY_BOOL:
		if (strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "1") == 0)
			*FIELD(cfg, k, bool) = true;
		else if (strcmp(value, "false") == 0 || strcmp(value, "no") == 0 || strcmp(value, "0") == 0)
			*FIELD(cfg, k, bool) = false;
		else
			goto invalid;
		return 0;
	case KEY_UINT:
	case KEY_U64:
		if (!*value || strspn(value, "0123456789") != strlen(value))
			goto invalid;
		errno = 0;
		u = g_ascii_strtoull(value, &end, 10);
		if (errno || u < k->min || u > k->max) {
			g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
				    "%s: [%s] %s: %s is out of range (%" G_GUINT64_FORMAT "..%" G_GUINT64_FORMAT ")",
				    where, k->group, k->name, value, (guint64)k->min, (guint64)k->max);
			return -ERANGE;
		}
		if (k->type == KEY_UINT)
			*FIELD(cfg, k, unsigned) = (unsigned)u;
		else
			*FIELD(cfg, k, uint64_t) = u;
		return 0;
	case KEY_STRING:
		g_free(*FIELD(cfg, k, char *));
		*FIELD(cfg, k, char *) = *value ? g_strdup(value) : NULL;
		return 0;
	case KEY_STRLIST:
		g_strfreev(*FIELD(cfg, k, char **));
		*FIELD(cfg, k, char **) = parse_strlist(value);
		return 0;
	case KEY_LISTEN: {
		GArray *list;
		if (parse_listen_list(value, &list) < 0) {
			g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
				    "%s: [%s] %s: \"%s\" is not a list of numeric ADDRESS:PORT "
				    "(IPv6 as [ADDRESS]:PORT, several separated by ';')",
				    where, k->group, k->name, value);
			return -EINVAL;
		}
		g_array_unref(*FIELD(cfg, k, GArray *));
		*FIELD(cfg, k, GArray *) = list;
		return 0;
	}
	case KEY_ADDR: {
		struct listen_addr *a = FIELD(cfg, k, struct listen_addr);
		if (!*value) { /* empty: disabled */
			memset(a, 0, sizeof *a);
			return 0;
		}
		if (config_parse_listen(value, a) == 0)
			return 0;
		g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
			    "%s: [%s] %s: \"%s\" is not a numeric ADDRESS:PORT (IPv6 as [ADDRESS]:PORT), "
			    "or empty for none", where, k->group, k->name, value);
		return -EINVAL;
	}
	case KEY_LOGLEVEL:
		if (log_level_parse(value, FIELD(cfg, k, int)) < 0) {
			g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
				    "%s: [%s] %s: \"%s\" is not one of debug, info, notice, warning, err",
				    where, k->group, k->name, value);
			return -EINVAL;
		}
		return 0;
	}
invalid:
	g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
		    "%s: [%s] %s: \"%s\" is not a valid %s", where, k->group, k->name, value,
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
		for (char **n = names; n && *n; n++) {
			const struct key_spec *k = find_key(*g, *n);
			if (!k) {
				g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
					    "%s: [%s] %s: unknown key", path, *g, *n);
				return -EINVAL;
			}
			/* Raw value: GKeyFile's string unescaping is not wanted for
			 * lists of URIs, and comments were already stripped. */
			g_autofree char *raw = g_key_file_get_value(kf, *g, *n, NULL);
			g_strstrip(raw);
			int r = set_key(cfg, k, raw, path, err);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

static int validate(const struct config *cfg, const char *where, GError **err)
{
	if (cfg->ws_ping_timeout <= cfg->ws_ping_interval) {
		g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
			    "%s: [server] ws_ping_timeout (%u) must be greater than ws_ping_interval (%u)",
			    where, cfg->ws_ping_timeout, cfg->ws_ping_interval);
		return -EINVAL;
	}
	if (cfg->max_queued_bytes < cfg->max_message_bytes) {
		g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
			    "%s: [limits] max_queued_bytes must be at least max_message_bytes", where);
		return -EINVAL;
	}
	if (cfg->turn_uris && cfg->turn_uris[0] && !cfg->turn_secret && !cfg->turn_secret_file) {
		g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
			    "%s: [turn] turn_uris needs secret or secret_file (credentials are minted per peer)",
			    where);
		return -EINVAL;
	}
	for (size_t i = 0; i < G_N_ELEMENTS(secrets); i++) {
		const struct secret_spec *s = &secrets[i];
		if (*SECRET(cfg, s, secret) && *SECRET(cfg, s, file)) {
			g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
				    "%s: [%s] %s and %s are mutually exclusive", where, s->group,
				    s->key, s->file_key);
			return -EINVAL;
		}
	}
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

static int load_secret_files(struct config *cfg, bool read, GError **err)
{
	for (size_t i = 0; i < G_N_ELEMENTS(secrets); i++) {
		const struct secret_spec *s = &secrets[i];
		char **file = SECRET(cfg, s, file);
		g_autoptr(GError) local = NULL;
		int r;

		if (!*file)
			continue;
		char *path = credential_path(cfg, *file);
		g_free(*file);
		*file = path;
		if (read && (r = config_read_secret(path, SECRET(cfg, s, secret), &local)) < 0) {
			g_set_error(err, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
				    "[%s] %s: %s", s->group, s->file_key, local->message);
			return r;
		}
	}
	return 0;
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
	    (r = set_key(cfg, find_key("server", "listen"), ov->listen, "--listen", err)) < 0)
		goto fail;
	if (ov && ov->admin_listen &&
	    (r = set_key(cfg, find_key("admin", "listen"), ov->admin_listen, "--admin-listen", err)) < 0)
		goto fail;
	if (ov && ov->log_level &&
	    (r = set_key(cfg, find_key("log", "level"), ov->log_level, "--log-level", err)) < 0)
		goto fail;
	if ((r = validate(cfg, cfg->path ? cfg->path : "built-in defaults", err)) < 0 ||
	    (r = load_secret_files(cfg, !(ov && ov->no_secret_files), err)) < 0)
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
