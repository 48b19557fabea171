/* Integration tests: the real rtcsignalctl binary against the real daemon,
 * its output and exit status for every command.  The admin API's tests
 * skip while the daemon answers 404 on /api/rooms. */
#include "testd.h"

#include <json-c/json.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOKEN "e2e-admin-token-5f0c1d2a9b7e4f36"

static struct testd *d;
static char *dir;       /* the CLI's config files */
static char *conf;      /* [admin] listen and token_file */
static char *bare_conf; /* [admin] listen only */

struct run {
	int status;
	char *out, *err;
};

static void run_clear(struct run *r)
{
	g_free(r->out);
	g_free(r->err);
}

typedef struct run run_t;
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(run_t, run_clear)

/* rtcsignalctl ARGS with ENV (NAME=VALUE, may be NULL) added to a clean
 * environment; under $RTCSIGNALD_WRAPPER (valgrind in CI) like the daemon. */
static struct run ctl_env(const char *const *env, const char *const *args)
{
	g_autofree char *built = g_test_build_filename(G_TEST_BUILT, "..", "src", "rtcsignalctl", NULL);
	const char *bin = g_getenv("RTCSIGNALCTL") ? g_getenv("RTCSIGNALCTL") : built;
	const char *wrapper = g_getenv("RTCSIGNALD_WRAPPER");
	g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
	g_auto(GStrv) envp = g_get_environ();
	g_autoptr(GError) err = NULL;
	struct run r = { 0 };
	int status;

	if (wrapper && *wrapper) {
		g_auto(GStrv) w = NULL;
		g_assert_true(g_shell_parse_argv(wrapper, NULL, &w, NULL));
		for (char **p = w; *p; p++)
			g_ptr_array_add(argv, g_strdup(*p));
	}
	g_ptr_array_add(argv, g_strdup(bin));
	for (const char *const *a = args; *a; a++)
		g_ptr_array_add(argv, g_strdup(*a));
	g_ptr_array_add(argv, NULL);
	envp = g_environ_unsetenv(envp, "RTCSIGNALD_ADMIN_TOKEN");
	envp = g_environ_unsetenv(envp, "CREDENTIALS_DIRECTORY");
	envp = g_environ_unsetenv(envp, "LANGUAGE");
	envp = g_environ_setenv(envp, "LC_ALL", "C.UTF-8", TRUE);
	for (const char *const *e = env; e && *e; e++) {
		g_auto(GStrv) kv = g_strsplit(*e, "=", 2);
		envp = g_environ_setenv(envp, kv[0], kv[1], TRUE);
	}
	if (!g_spawn_sync(NULL, (char **)argv->pdata, envp, G_SPAWN_SEARCH_PATH, NULL, NULL, &r.out, &r.err,
			  &status, &err))
		g_error("cannot run %s: %s", bin, err->message);
	g_assert_true(WIFEXITED(status));
	r.status = WEXITSTATUS(status);
	g_autofree char *line = g_strjoinv(" ", (char **)argv->pdata);
	g_test_message("%s -> %d\n%s%s", line, r.status, r.out, r.err);
	return r;
}

#define CTL(...) ctl_env(NULL, (const char *const[]){ __VA_ARGS__, NULL })
#define CTL_ENV(env, ...) ctl_env((const char *const[]){ env, NULL }, (const char *const[]){ __VA_ARGS__, NULL })

/* The value after LABEL on a line of OUT ("Room ID:  x"), or NULL. */
static char *value_of(const char *out, const char *label)
{
	g_autofree char *needle = g_strdup_printf("\n%s", label);
	g_autofree char *text = g_strdup_printf("\n%s", out);
	const char *at = strstr(text, needle);

	if (!at)
		return NULL;
	at += strlen(needle);
	const char *eol = strchr(at, '\n');
	g_autofree char *v = eol ? g_strndup(at, (gsize)(eol - at)) : g_strdup(at);
	return g_strdup(g_strstrip(v));
}

static json_object *parse(const char *out)
{
	json_object *o = json_tokener_parse(out);
	g_assert_nonnull(o);
	g_assert_true(json_object_is_type(o, json_type_object));
	return o;
}

static const char *jstr(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : NULL;
}

static char *put(const char *name, const char *text)
{
	char *path = g_build_filename(dir, name, NULL);
	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	return path;
}

/* --- without the admin API --- */

static void test_status(void)
{
	g_autoptr(GPtrArray) peers = g_ptr_array_new_with_free_func((GDestroyNotify)wsc_free);

	g_ptr_array_add(peers, testd_register(d, "ctl-room", "w1", ",\"role\":\"worker\""));
	g_ptr_array_add(peers, testd_register(d, "ctl-room", "w2", ",\"role\":\"worker\""));
	g_ptr_array_add(peers, testd_register(d, "ctl-room", "c1", ",\"role\":\"client\""));

	g_auto(run_t) r = CTL("-c", conf, "status");
	g_assert_cmpint(r.status, ==, 0);
	g_assert_cmpstr(r.err, ==, "");
	g_assert_nonnull(strstr(r.out, "Health:       healthy\n"));
	g_assert_nonnull(strstr(r.out, "Readiness:    ready\n"));
	g_assert_nonnull(strstr(r.out, "Version:      " PACKAGE_VERSION "\n"));
	/* Issue 18: the mode the configuration chose. */
	g_assert_nonnull(strstr(r.out, "Auth:         off: loopback clients only\n"));
	g_assert_nonnull(strstr(r.out, "Connections:  3\n"));
	g_assert_nonnull(strstr(r.out, "Rooms:        1\n"));
	g_assert_nonnull(strstr(r.out, "Peers:        3\n"));
	g_assert_nonnull(strstr(r.out, "  worker      2\n"));
	g_assert_nonnull(strstr(r.out, "  client      1\n"));

	/* status needs no token: a config without one works as well. */
	g_auto(run_t) j = CTL("--config", bare_conf, "status", "--json");
	g_assert_cmpint(j.status, ==, 0);
	json_object *o = parse(j.out), *m;
	g_assert_cmpstr(jstr(json_object_object_get(o, "health"), "status"), ==, "healthy");
	g_assert_cmpstr(jstr(json_object_object_get(o, "ready"), "status"), ==, "ready");
	g_assert_true(json_object_object_get_ex(o, "metrics", &m));
	g_assert_cmpint(json_object_get_int(json_object_object_get(m, "active_connections")), ==, 3);
	json_object_put(o);
}

static void test_usage(void)
{
	static const char *const lines[][4] = {
		{ "frob" }, { "rooms" }, { "rooms", "delete" }, { "keys", "create" },
		{ "status", "--name", "x" }, { "--token", TOKEN, "status" }, { "status", "extra" },
		{ "rooms", "create", "--max-peers", "zero" }, { "--admin", "localhost:1", "status" },
	};

	for (size_t i = 0; i < G_N_ELEMENTS(lines); i++) {
		const char *args[7] = { "-c", conf };
		memcpy(args + 2, lines[i], sizeof lines[i]);
		g_auto(run_t) r = ctl_env(NULL, args);
		g_assert_cmpint(r.status, ==, 64);
		g_assert_cmpstr(r.out, ==, "");
		g_assert_true(g_str_has_prefix(r.err, "rtcsignalctl: "));
		g_assert_nonnull(strstr(r.err, "--help"));
	}
	g_auto(run_t) none = CTL("--json");
	g_assert_cmpint(none.status, ==, 64);

	g_auto(run_t) h = CTL("--help");
	g_assert_cmpint(h.status, ==, 0);
	g_assert_nonnull(strstr(h.out, "Exit status:"));
	g_assert_cmpstr(h.err, ==, "");
	g_auto(run_t) v = CTL("--version");
	g_assert_cmpint(v.status, ==, 0);
	g_assert_cmpstr(v.out, ==, "rtcsignalctl " PACKAGE_VERSION "\n");
}

/* An operator with LANGUAGE=de reads the CLI in German: --help, errors
 * and output labels, from the catalogue built under tests/
 * (RTCSIGNALD_LOCALEDIR).  The labels are padded to the longest. */
static void test_german(void)
{
	g_autofree char *locale = g_test_build_filename(G_TEST_BUILT, "locale", NULL);
	g_autofree char *localedir = g_strconcat("RTCSIGNALD_LOCALEDIR=", locale, NULL);
	const char *const de[] = { "LANGUAGE=de", "LANG=C.UTF-8", "LC_ALL=", "LC_MESSAGES=", localedir, NULL };

	g_auto(run_t) h = ctl_env(de, (const char *const[]){ "--help", NULL });
	g_assert_cmpint(h.status, ==, 0);
	g_assert_cmpstr(h.err, ==, "");
	if (!strstr(h.out, "Einen laufenden rtcsignald über seinen Admin-Port bedienen.") ||
	    !strstr(h.out, "\n  rooms delete RAUM_ID   Raum löschen") || !strstr(h.out, "--config=PFAD") ||
	    !strstr(h.out, "\nOptionen von rooms create und keys create:\n") ||
	    !strstr(h.out, "\n  77  nicht berechtigt: "))
		g_error("--help is not in German:\n%s", h.out);

	g_auto(run_t) u = ctl_env(de, (const char *const[]){ "-c", conf, "rooms", "delete", NULL });
	g_assert_cmpint(u.status, ==, 64);
	g_assert_cmpstr(u.out, ==, "");
	g_assert_cmpstr(u.err, ==, "rtcsignalctl: »rooms delete« erfordert RAUM_ID\n"
				   "»rtcsignalctl --help« zeigt weitere Informationen.\n");

	g_auto(run_t) n = ctl_env(de, (const char *const[]){ "-c", bare_conf, "keys", "list", NULL });
	g_assert_cmpint(n.status, ==, 77);
	g_assert_true(g_str_has_prefix(n.err, "rtcsignalctl: nicht berechtigt: kein Admin-Token gefunden"));

	g_auto(run_t) s = ctl_env(de, (const char *const[]){ "-c", bare_conf, "status", NULL });
	g_assert_cmpint(s.status, ==, 0);
	g_assert_true(g_str_has_prefix(s.out, "Zustand:       healthy\nBereitschaft:  ready\n"));
	g_assert_nonnull(strstr(s.out, "\nRäume:         "));

	/* The version line is the same in every language. */
	g_auto(run_t) v = ctl_env(de, (const char *const[]){ "--version", NULL });
	g_assert_cmpstr(v.out, ==, "rtcsignalctl " PACKAGE_VERSION "\n");
}

static void test_config_errors(void)
{
	g_autofree char *broken = put("broken.conf", "[admin]\nlisten = nowhere\n");
	g_autofree char *unknown = put("unknown.conf", "[admin]\ncolour = blue\n");
	g_autofree char *no_port = put("noport.conf", "[admin]\nlisten =\ntoken = x\n");
	g_autofree char *lost = put("lost.conf", "[admin]\nlisten = 127.0.0.1:1\ntoken_file = lost.token\n");
	g_autofree char *absent = g_build_filename(dir, "absent.conf", NULL);

	g_auto(run_t) b = CTL("-c", broken, "status");
	g_assert_cmpint(b.status, ==, 78);
	g_assert_nonnull(strstr(b.err, "invalid configuration"));
	g_assert_nonnull(strstr(b.err, "[admin] listen"));
	g_auto(run_t) u = CTL("-c", unknown, "rooms", "list");
	g_assert_cmpint(u.status, ==, 78);
	g_assert_nonnull(strstr(u.err, "unknown key"));
	g_auto(run_t) a = CTL("-c", absent, "status");
	g_assert_cmpint(a.status, ==, 78);
	g_auto(run_t) n = CTL("-c", no_port, "status");
	g_assert_cmpint(n.status, ==, 78);
	g_assert_nonnull(strstr(n.err, "no admin port"));
	g_auto(run_t) l = CTL("-c", lost, "keys", "list");
	g_assert_cmpint(l.status, ==, 78);
	g_assert_nonnull(strstr(l.err, "cannot read the admin token"));
	g_assert_nonnull(strstr(l.err, "lost.token"));
}

static void test_port_down(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sin;

	/* A port just free: nobody listens there. */
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sin, sizeof sin), ==, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&sin, &len), ==, 0);
	close(fd);
	g_autofree char *addr = g_strdup_printf("127.0.0.1:%u", ntohs(sin.sin_port));

	g_auto(run_t) s = CTL("-c", conf, "--admin", addr, "status");
	g_assert_cmpint(s.status, ==, 69);
	g_assert_cmpstr(s.out, ==, "");
	g_autofree char *says = g_strdup_printf("cannot connect to the admin port at %s", addr);
	g_assert_nonnull(strstr(s.err, says));
	g_auto(run_t) r = CTL("-c", conf, "--admin", addr, "rooms", "list");
	g_assert_cmpint(r.status, ==, 69);
}

static void test_no_token(void)
{
	g_auto(run_t) r = CTL("-c", bare_conf, "rooms", "list");
	g_assert_cmpint(r.status, ==, 77);
	g_assert_nonnull(strstr(r.err, "no admin token found"));
	g_auto(run_t) k = CTL_ENV("RTCSIGNALD_ADMIN_TOKEN=", "-c", bare_conf, "keys", "list");
	g_assert_cmpint(k.status, ==, 77);
}

/* --- the admin API --- */

static void test_auth(void)
{
	g_auto(run_t) wrong = CTL_ENV("RTCSIGNALD_ADMIN_TOKEN=not-the-token", "-c", bare_conf, "rooms", "list");
	g_assert_cmpint(wrong.status, ==, 77);
	g_assert_nonnull(strstr(wrong.err, "refused the admin token from $RTCSIGNALD_ADMIN_TOKEN"));
	g_assert_null(strstr(wrong.err, "not-the-token"));

	g_auto(run_t) file = CTL("-c", conf, "rooms", "list");
	g_assert_cmpint(file.status, ==, 0);
	g_auto(run_t) env = CTL_ENV("RTCSIGNALD_ADMIN_TOKEN=" TOKEN, "-c", bare_conf, "keys", "list");
	g_assert_cmpint(env.status, ==, 0);
	g_autofree char *tok = g_build_filename(dir, "admin.token", NULL);
	g_auto(run_t) flag = CTL_ENV("RTCSIGNALD_ADMIN_TOKEN=not-the-token", "-c", bare_conf,
				     "--token-file", tok, "rooms", "list");
	g_assert_cmpint(flag.status, ==, 0);
}

static void test_rooms(void)
{
	g_auto(run_t) c = CTL("-c", conf, "rooms", "create", "--name", "e2e-lab", "--max-peers", "5",
			      "--expires-in", "1h");
	g_assert_cmpint(c.status, ==, 0);
	g_assert_nonnull(strstr(c.err, "not shown again"));
	g_autofree char *id = value_of(c.out, "Room ID:");
	g_autofree char *token = value_of(c.out, "Token:");
	g_autofree char *expires = value_of(c.out, "Expires:");
	g_assert_nonnull(id);
	g_assert_cmpuint(strlen(token), >=, 32);
	g_assert_true(g_str_has_suffix(expires, "Z"));

	g_auto(run_t) l = CTL("-c", conf, "room", "list");
	g_assert_cmpint(l.status, ==, 0);
	g_assert_true(g_str_has_prefix(l.out, "ROOM ID"));
	g_assert_nonnull(strstr(l.out, id));
	g_assert_nonnull(strstr(l.out, "e2e-lab"));
	g_assert_null(strstr(l.out, token)); /* said once */

	g_auto(run_t) j = CTL("-c", conf, "--json", "rooms", "list");
	g_assert_cmpint(j.status, ==, 0);
	json_object *o = parse(j.out), *rooms;
	bool found = false;
	g_assert_true(json_object_object_get_ex(o, "rooms", &rooms));
	for (size_t i = 0; i < json_object_array_length(rooms); i++) {
		json_object *room = json_object_array_get_idx(rooms, i);
		if (g_strcmp0(jstr(room, "room_id"), id) == 0) {
			found = true;
			g_assert_cmpstr(jstr(room, "name"), ==, "e2e-lab");
			g_assert_cmpint(json_object_get_int(json_object_object_get(room, "max_peers")), ==, 5);
		}
	}
	g_assert_true(found);
	g_assert_null(strstr(j.out, token));
	json_object_put(o);

	g_auto(run_t) del = CTL("-c", conf, "rooms", "delete", id);
	g_assert_cmpint(del.status, ==, 0);
	g_autofree char *said = g_strdup_printf("Room %s deleted; 0 peers closed.\n", id);
	g_assert_cmpstr(del.out, ==, said);
	g_auto(run_t) again = CTL("-c", conf, "rooms", "delete", id);
	g_assert_cmpint(again.status, ==, 1);
	g_assert_nonnull(strstr(again.err, "HTTP 404"));
	g_auto(run_t) unknown = CTL("-c", conf, "rooms", "delete", "no-such-room");
	g_assert_cmpint(unknown.status, ==, 1);

	g_auto(run_t) cj = CTL("-c", conf, "rooms", "create", "--json");
	g_assert_cmpint(cj.status, ==, 0);
	o = parse(cj.out);
	g_assert_nonnull(jstr(o, "room_id"));
	g_assert_nonnull(jstr(o, "token"));
	g_auto(run_t) dj = CTL("-c", conf, "--json", "rooms", "delete", jstr(o, "room_id"));
	g_assert_cmpint(dj.status, ==, 0);
	json_object_put(parse(dj.out));
	json_object_put(o);
}

static void test_keys(void)
{
	g_auto(run_t) room = CTL("-c", conf, "rooms", "create", "--name", "e2e-keys");
	g_assert_cmpint(room.status, ==, 0);
	g_autofree char *room_id = value_of(room.out, "Room ID:");

	g_auto(run_t) c = CTL("-c", conf, "key", "create", "--room", room_id, "--name", "ci",
			      "--expires-in", "1d");
	g_assert_cmpint(c.status, ==, 0);
	g_assert_nonnull(strstr(c.err, "not shown again"));
	g_autofree char *key_id = value_of(c.out, "Key ID:");
	g_autofree char *api_key = value_of(c.out, "API key:");
	g_assert_nonnull(key_id);
	g_assert_true(g_str_has_prefix(api_key, key_id));
	g_autofree char *key_room = value_of(c.out, "Room ID:");
	g_assert_cmpstr(key_room, ==, room_id);

	g_auto(run_t) l = CTL("-c", conf, "keys", "list");
	g_assert_cmpint(l.status, ==, 0);
	g_assert_true(g_str_has_prefix(l.out, "KEY ID"));
	g_assert_nonnull(strstr(l.out, key_id));
	g_assert_null(strstr(l.out, api_key + strlen(key_id) + 1)); /* never the secret */

	g_auto(run_t) v = CTL("-c", conf, "keys", "revoke", key_id);
	g_assert_cmpint(v.status, ==, 0);
	g_autofree char *said = g_strdup_printf("Key %s revoked.\n", key_id);
	g_assert_cmpstr(v.out, ==, said);

	g_auto(run_t) j = CTL("-c", conf, "keys", "list", "--json");
	g_assert_cmpint(j.status, ==, 0);
	json_object *o = parse(j.out), *keys, *revoked = NULL;
	g_assert_true(json_object_object_get_ex(o, "keys", &keys));
	for (size_t i = 0; i < json_object_array_length(keys); i++) {
		json_object *k = json_object_array_get_idx(keys, i);
		if (g_strcmp0(jstr(k, "key_id"), key_id) == 0)
			g_assert_true(json_object_object_get_ex(k, "revoked_at", &revoked));
	}
	g_assert_true(json_object_is_type(revoked, json_type_int));
	json_object_put(o);

	g_auto(run_t) u = CTL("-c", conf, "keys", "revoke", "0000000000000000");
	g_assert_cmpint(u.status, ==, 1);
	g_auto(run_t) nr = CTL("-c", conf, "keys", "create", "--room", "no-such-room");
	g_assert_cmpint(nr.status, ==, 1);
	g_assert_nonnull(strstr(nr.err, "HTTP 404"));
	g_auto(run_t) cleanup = CTL("-c", conf, "rooms", "delete", room_id);
	g_assert_cmpint(cleanup.status, ==, 0);
}

int main(int argc, char *argv[])
{
	int status;

	g_test_init(&argc, &argv, NULL);
	d = testd_start("[admin]\ntoken = " TOKEN "\n", NULL);

	dir = g_dir_make_tmp("ctl-e2e-XXXXXX", NULL);
	g_autofree char *tok = put("admin.token", TOKEN "\n");
	g_autofree char *text = g_strdup_printf("[admin]\nlisten = 127.0.0.1:%d\ntoken_file = admin.token\n",
						d->admin_port);
	conf = put("ctl.conf", text);
	g_autofree char *bare = g_strdup_printf("[admin]\nlisten = 127.0.0.1:%d\n", d->admin_port);
	bare_conf = put("bare.conf", bare);

	g_test_add_func("/ctl-e2e/status", test_status);
	g_test_add_func("/ctl-e2e/usage", test_usage);
	g_test_add_func("/ctl-e2e/german", test_german);
	g_test_add_func("/ctl-e2e/config-errors", test_config_errors);
	g_test_add_func("/ctl-e2e/port-down", test_port_down);
	g_test_add_func("/ctl-e2e/no-token", test_no_token);
	g_test_add_func("/ctl-e2e/auth", test_auth);
	g_test_add_func("/ctl-e2e/rooms", test_rooms);
	g_test_add_func("/ctl-e2e/keys", test_keys);
	status = g_test_run();

	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", dir);
	g_assert_cmpint(system(rm), ==, 0);
	g_free(dir);
	g_free(conf);
	g_free(bare_conf);
	return status;
}
