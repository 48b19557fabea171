/* Integration tests (issue 19): open mode ignores credentials it cannot
 * check, [rooms] default_room, account API keys valid in every room their
 * account may use, room members, rtcsignalctl --account, and the room
 * store's upgrade from the schema before account keys. */
#include "jwtmint.h"
#include "util/secret.h"
#include "testd.h"

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/wait.h>

#define ISS "https://id.example.org/realms/lab"
#define AUD "rtcsignald"
#define ADMIN "admin-secret-for-tests"

static EVP_PKEY *rsa_key;
static char *jwks_path, *ctl_conf;

static char *token_for(const char *sub)
{
	return jwtmint_token(rsa_key, "r1", jwtmint_claims(ISS, AUD, sub));
}

static char *auth_conf(const char *extra)
{
	return g_strdup_printf("[admin]\ntoken = " ADMIN "\n[rooms]\nmax_ttl = 0\n%s"
			       "[issuer lab]\nissuer = " ISS "\naudience = " AUD "\njwks_file = %s\n",
			       extra ? extra : "", jwks_path);
}

static json_object *admin(struct testd *d, const char *method, const char *path, const char *body,
			  int want)
{
	return testd_admin_api(d, ADMIN, method, path, body, want);
}

/* A room made by the operator (BODY: its options): its id. */
static char *admin_room(struct testd *d, const char *body)
{
	json_object *o = admin(d, "POST", "/api/rooms", body, 201);
	char *id = g_strdup(testd_str(o, "room_id"));
	json_object_put(o);
	return id;
}

/* A room SUB creates with its JWT (not open to the issuer): its id. */
static char *user_room(struct testd *d, const char *sub)
{
	g_autofree char *jwt = token_for(sub);
	g_autofree char *hdr = g_strdup_printf("Authorization: Bearer %s\r\nContent-Type: application/json\r\n", jwt);
	struct httpc_reply r;
	g_assert_cmpint(testd_http(d->port, "POST", "/create-room", hdr, "{\"expires_in\":600}", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 201);
	json_object *o = json_tokener_parse(r.body->str);
	httpc_reply_clear(&r);
	char *id = g_strdup(testd_str(o, "room_id"));
	json_object_put(o);
	return id;
}

/* A register with REST inside the object; the reply (registered_auth or
 * an error), and the connection in *OUT (NULL: closed). */
static json_object *reg(struct testd *d, const char *rest, struct wsc **out)
{
	struct wsc *c = testd_connect(d);
	wsc_sendf(c, "{\"type\":\"register\",\"protocol\":\"2.1\",\"role\":\"worker\"%s}", rest);
	json_object *o = wsc_recv_json(c);
	g_assert_nonnull(o);
	if (out)
		*out = c;
	else
		wsc_free(c);
	return o;
}

/* Expects registered_auth in ROOM (NULL: any); the session stays open. */
static struct wsc *reg_ok(struct testd *d, const char *room, const char *rest)
{
	struct wsc *c;
	json_object *o = reg(d, rest, &c);
	if (g_strcmp0(testd_str(o, "type"), "registered_auth") != 0)
		g_error("register %s: %s", rest, json_object_to_json_string(o));
	if (room)
		g_assert_cmpstr(testd_str(o, "room_id"), ==, room);
	json_object_put(o);
	return c;
}

static void reg_refused(struct testd *d, const char *rest, const char *code, const char *reason)
{
	json_object *o = reg(d, rest, NULL);
	if (g_strcmp0(testd_str(o, "code"), code) != 0 || (reason && g_strcmp0(testd_str(o, "reason"), reason) != 0))
		g_error("register %s: %s, wanted %s %s", rest, json_object_to_json_string(o), code,
			reason ? reason : "");
	json_object_put(o);
}

/* --- open mode --- */

static void test_open_mode(void)
{
	struct testd *d = testd_start(NULL, NULL);
	g_autofree char *jwt = token_for("ada");
	g_autofree char *w1 = NULL, *w2 = NULL, *c1 = NULL, *c2 = NULL;
	g_autoptr(GPtrArray) kept = g_ptr_array_new_with_free_func((GDestroyNotify)wsc_free);

	/* sleap-rtc's worker always sends api_key, its client always jwt. */
	for (int i = 0; i < 2; i++) {
		g_autofree char *k = g_strdup_printf(",\"peer_id\":\"w%d\",\"room_id\":\"lab\",\"api_key\":\"slp_acct_%032d\"", i, i);
		g_ptr_array_add(kept, reg_ok(d, "lab", k));
		g_autofree char *j = g_strdup_printf(",\"peer_id\":\"c%d\",\"room_id\":\"lab\",\"jwt\":\"%s\",\"token\":\"\"", i, jwt);
		g_ptr_array_add(kept, reg_ok(d, "lab", j));
		g_autofree char *t = g_strdup_printf(",\"peer_id\":\"t%d\",\"room_id\":\"lab\",\"id_token\":\"x.y.z\"", i);
		g_ptr_array_add(kept, reg_ok(d, "lab", t));
	}
	/* Both at once: each counted. */
	g_ptr_array_add(kept, reg_ok(d, "lab", ",\"peer_id\":\"b\",\"room_id\":\"lab\",\"api_key\":\"x\",\"jwt\":\"y\""));
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_credentials_ignored_total{field=\"api_key\"}"), ==, 3);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_credentials_ignored_total{field=\"jwt\"}"), ==, 3);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_credentials_ignored_total{field=\"id_token\"}"), ==, 2);
	/* Said once per field, in the whole log; never the credential. */
	g_assert_cmpint(testd_stop(d), ==, 0);
	g_assert_cmpuint(testd_log_count(d, "this api_key cannot be checked"), ==, 1);
	g_assert_cmpuint(testd_log_count(d, "this jwt cannot be checked"), ==, 1);
	g_assert_cmpuint(testd_log_count(d, "this id_token cannot be checked"), ==, 1);
	g_autofree char *log = testd_log_copy(d);
	g_assert_null(strstr(log, jwt));
	testd_free(d);
}

static void test_default_room(void)
{
	struct testd *d = testd_start("[rooms]\ndefault_room = lobby\n", NULL);
	struct wsc *w = reg_ok(d, "lobby", ",\"peer_id\":\"w\",\"api_key\":\"slp_acct_abc\"");
	struct wsc *c = reg_ok(d, "lab", ",\"peer_id\":\"c\",\"room_id\":\"lab\"");
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_default_room_registrations_total"), ==, 1);
	wsc_free(w);
	wsc_free(c);
	testd_free(d);

	/* Without it, room_id is required as before. */
	d = testd_start(NULL, NULL);
	reg_refused(d, ",\"peer_id\":\"w\"", "INVALID_MESSAGE", "Missing field: room_id");
	testd_free(d);
}

/* --- account keys --- */

static char *mint_account_key(struct testd *d, const char *body, char **key_id)
{
	json_object *k = admin(d, "POST", "/api/keys", body, 201);
	g_assert_null(testd_str(k, "room_id"));
	char *secret = g_strdup(testd_str(k, "api_key"));
	if (key_id)
		*key_id = g_strdup(testd_str(k, "key_id"));
	json_object_put(k);
	return secret;
}

static void test_account_keys(void)
{
	g_autofree char *c = auth_conf(NULL);
	struct testd *d = testd_start(c, NULL);
	g_autofree char *key_id = NULL;
	g_autofree char *key = mint_account_key(d, "{\"account\":\"ada\",\"issuer\":\"lab\",\"name\":\"gpu\"}",
						&key_id);
	/* The issuer by its iss too, or left out when only one is configured. */
	g_autofree char *key2 = mint_account_key(d, "{\"account\":\"ada\",\"issuer\":\"" ISS "\"}", NULL);
	g_autofree char *key3 = mint_account_key(d, "{\"account\":\"bob\"}", NULL);
	json_object_put(admin(d, "POST", "/api/keys", "{\"account\":\"ada\",\"issuer\":\"nope\"}", 400));
	json_object_put(admin(d, "POST", "/api/keys", "{\"account\":\"\"}", 400));

	g_autofree char *mine = user_room(d, "ada");                              /* created by ada */
	g_autofree char *open = admin_room(d, "{\"open_to_issuer\":true}");     /* open to lab */
	g_autofree char *added = admin_room(d, "{}");                             /* ada is added */
	g_autofree char *other = user_room(d, "mallory");                         /* none of these */
	g_autofree char *path = g_strdup_printf("/api/rooms/%s/members", added);
	json_object *m = admin(d, "POST", path, "{\"account\":\"ada\",\"issuer\":\"lab\"}", 201);
	g_assert_cmpstr(testd_str(m, "account"), ==, "ada");
	json_object_put(m);
	m = admin(d, "GET", path, NULL, 200);
	g_assert_nonnull(strstr(json_object_to_json_string_ext(m, JSON_C_TO_STRING_PLAIN), "\"account\":\"ada\""));
	json_object_put(m);

	const char *rooms[] = { mine, open, added };
	struct wsc *s[3];
	for (int i = 0; i < 3; i++) {
		g_autofree char *rest = g_strdup_printf(",\"peer_id\":\"w%d\",\"room_id\":\"%s\",\"api_key\":\"%s\"",
							i, rooms[i], key);
		s[i] = reg_ok(d, rooms[i], rest);
	}
	g_autofree char *rest = g_strdup_printf(",\"room_id\":\"%s\",\"api_key\":\"%s\"", other, key);
	g_autofree char *why = g_strdup_printf("API key's account may not use room %s", other);
	reg_refused(d, rest, "AUTH_FAILED", why);
	/* bob's key: only the room open to the issuer. */
	g_autofree char *bob_open = g_strdup_printf(",\"room_id\":\"%s\",\"api_key\":\"%s\"", open, key3);
	wsc_free(reg_ok(d, open, bob_open));
	g_autofree char *bob_added = g_strdup_printf(",\"room_id\":\"%s\",\"api_key\":\"%s\"", added, key3);
	g_autofree char *why_bob = g_strdup_printf("API key's account may not use room %s", added);
	reg_refused(d, bob_added, "AUTH_FAILED", why_bob);
	/* No room_id and no default_room. */
	g_autofree char *none = g_strdup_printf(",\"api_key\":\"%s\"", key2);
	reg_refused(d, none, "INVALID_MESSAGE", "Missing field: room_id");

	/* Removed from the room: new registrations refused there. */
	json_object_put(admin(d, "DELETE", path, "{\"account\":\"ada\"}", 200));
	json_object_put(admin(d, "DELETE", path, "{\"account\":\"ada\"}", 404));
	g_autofree char *again = g_strdup_printf(",\"room_id\":\"%s\",\"api_key\":\"%s\"", added, key2);
	g_autofree char *why_added = g_strdup_printf("API key's account may not use room %s", added);
	reg_refused(d, again, "AUTH_FAILED", why_added);

	/* The listing shows the account, never the secret. */
	json_object *keys = admin(d, "GET", "/api/keys", NULL, 200);
	const char *text = json_object_to_json_string_ext(keys, JSON_C_TO_STRING_PLAIN);
	g_assert_nonnull(strstr(text, "\"account\":\"ada\""));
	g_assert_null(strstr(text, key + strlen(key_id) + 1));
	json_object_put(keys);

	/* Revoked: its sessions end in every room, and it is refused. */
	g_autofree char *kpath = g_strdup_printf("/api/keys/%s", key_id);
	json_object_put(admin(d, "DELETE", kpath, NULL, 200));
	for (int i = 0; i < 3; i++) {
		json_object *e = wsc_expect_error(s[i], "AUTH_FAILED");
		g_assert_cmpstr(testd_str(e, "reason"), ==, "Token revoked");
		json_object_put(e);
		g_assert_cmpint(wsc_wait_close(s[i], WSC_TIMEOUT_MS), ==, 1008);
		wsc_free(s[i]);
	}
	g_autofree char *revoked = g_strdup_printf(",\"room_id\":\"%s\",\"api_key\":\"%s\"", mine, key);
	reg_refused(d, revoked, "AUTH_FAILED", "Token revoked");

	/* With default_room, an account key may leave room_id out. */
	g_autofree char *c2 = g_strdup_printf("default_room = %s\n", open);
	g_autofree char *conf2 = auth_conf(c2);
	testd_write_conf(d, conf2);
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log(d, "configuration reloaded", WSC_TIMEOUT_MS));
	wsc_free(reg_ok(d, open, none));

	g_assert_cmpint(testd_stop(d), ==, 0);
	g_autofree char *log = testd_log_copy(d);
	g_assert_null(strstr(log, key + strlen(key_id) + 1));
	testd_free(d);
}

/* sleap-rtc's client registers with its JWT and never a room token: it
 * gets in where its account may go (as an account key would), and only
 * there. */
static void test_jwt_account_rooms(void)
{
	g_autofree char *c = auth_conf(NULL);
	struct testd *d = testd_start(c, NULL);
	g_autofree char *mine = user_room(d, "ada");
	g_autofree char *added = admin_room(d, "{}");
	g_autofree char *other = user_room(d, "mallory");
	g_autofree char *path = g_strdup_printf("/api/rooms/%s/members", added);
	json_object_put(admin(d, "POST", path, "{\"account\":\"ada\",\"issuer\":\"lab\"}", 201));
	g_autofree char *jwt = token_for("ada");

	const char *rooms[] = { mine, added };
	for (int i = 0; i < 2; i++) {
		g_autofree char *rest = g_strdup_printf(",\"peer_id\":\"ada%d\",\"room_id\":\"%s\","
							"\"token\":\"\",\"jwt\":\"%s\"", i, rooms[i], jwt);
		wsc_free(reg_ok(d, rooms[i], rest));
	}
	g_autofree char *rest = g_strdup_printf(",\"room_id\":\"%s\",\"token\":\"\",\"jwt\":\"%s\"", other, jwt);
	reg_refused(d, rest, "AUTH_FAILED", "Room token required");
	/* No longer a member: refused there too. */
	json_object_put(admin(d, "DELETE", path, "{\"account\":\"ada\",\"issuer\":\"lab\"}", 200));
	g_autofree char *again = g_strdup_printf(",\"room_id\":\"%s\",\"token\":\"\",\"jwt\":\"%s\"", added, jwt);
	reg_refused(d, again, "AUTH_FAILED", "Room token required");
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* A room-bound key names its room: another room_id is refused, said. */
static void test_room_key_other_room(void)
{
	g_autofree char *c = auth_conf(NULL);
	struct testd *d = testd_start(c, NULL);
	g_autofree char *a = admin_room(d, "{}"), *b = admin_room(d, "{}");
	g_autofree char *body = g_strdup_printf("{\"room_id\":\"%s\"}", a);
	json_object *k = admin(d, "POST", "/api/keys", body, 201);
	g_autofree char *key = g_strdup(testd_str(k, "api_key"));
	json_object_put(k);
	g_autofree char *rest = g_strdup_printf(",\"room_id\":\"%s\",\"api_key\":\"%s\"", b, key);
	g_autofree char *why = g_strdup_printf("API key is for room %s, not room %s", a, b);
	reg_refused(d, rest, "AUTH_FAILED", why);
	g_autofree char *same = g_strdup_printf(",\"room_id\":\"%s\",\"api_key\":\"%s\"", a, key);
	wsc_free(reg_ok(d, a, same));
	g_autofree char *bad = g_strdup_printf("{\"room_id\":\"%s\",\"account\":\"ada\"}", a);
	json_object_put(admin(d, "POST", "/api/keys", bad, 400));
	testd_free(d);
}

/* --- rtcsignalctl --- */

static int ctl(struct testd *d, char **out, char **err, ...)
{
	g_autofree char *built = g_test_build_filename(G_TEST_BUILT, "..", "src", "rtcsignalctl", NULL);
	g_autofree char *where = g_strdup_printf("127.0.0.1:%d", d->admin_port);
	g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
	g_auto(GStrv) envp = g_environ_setenv(g_get_environ(), "RTCSIGNALD_ADMIN_TOKEN", ADMIN, TRUE);
	g_autoptr(GError) e = NULL;
	const char *arg;
	va_list ap;
	int status;

	envp = g_environ_setenv(envp, "LC_ALL", "C.UTF-8", TRUE);
	envp = g_environ_unsetenv(envp, "LANGUAGE");
	g_ptr_array_add(argv, g_strdup(built));
	g_ptr_array_add(argv, g_strdup("--config"));
	g_ptr_array_add(argv, g_strdup(ctl_conf));
	g_ptr_array_add(argv, g_strdup("--admin"));
	g_ptr_array_add(argv, g_strdup(where));
	va_start(ap, err);
	while ((arg = va_arg(ap, const char *)))
		g_ptr_array_add(argv, g_strdup(arg));
	va_end(ap);
	g_ptr_array_add(argv, NULL);
	if (!g_spawn_sync(NULL, (char **)argv->pdata, envp, 0, NULL, NULL, out, err, &status, &e))
		g_error("rtcsignalctl: %s", e->message);
	g_test_message("rtcsignalctl -> %d\n%s%s", status, *out, *err);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *value_of(const char *out, const char *label)
{
	const char *at = strstr(out, label);
	if (!at)
		return NULL;
	at += strlen(label);
	g_autofree char *line = g_strndup(at, strcspn(at, "\n"));
	return g_strdup(g_strstrip(line));
}

static void test_ctl_account(void)
{
	g_autofree char *c = auth_conf(NULL);
	struct testd *d = testd_start(c, NULL);
	g_autofree char *room = admin_room(d, "{}");
	char *out = NULL, *err = NULL;

	g_assert_cmpint(ctl(d, &out, &err, "keys", "create", "--account", "ada", "--name", "sleap", NULL), ==, 0);
	g_autofree char *key_id = value_of(out, "Key ID:"), *key = value_of(out, "API key:");
	g_autofree char *account = value_of(out, "Account:"), *issuer = value_of(out, "Issuer:");
	g_assert_cmpstr(account, ==, "ada");
	g_assert_cmpstr(issuer, ==, "lab");
	g_assert_nonnull(strstr(err, "not shown again"));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);

	g_autofree char *rest = g_strdup_printf(",\"room_id\":\"%s\",\"api_key\":\"%s\"", room, key);
	g_autofree char *why = g_strdup_printf("API key's account may not use room %s", room);
	reg_refused(d, rest, "AUTH_FAILED", why);
	g_assert_cmpint(ctl(d, &out, &err, "rooms", "add-member", room, "--account", "ada", NULL), ==, 0);
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	wsc_free(reg_ok(d, room, rest));
	g_assert_cmpint(ctl(d, &out, &err, "rooms", "members", room, NULL), ==, 0);
	g_assert_true(g_str_has_prefix(out, "ACCOUNT"));
	g_assert_nonnull(strstr(out, "ada "));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);

	g_assert_cmpint(ctl(d, &out, &err, "keys", "list", NULL), ==, 0);
	g_assert_nonnull(strstr(out, "account ada (lab)"));
	g_assert_null(strstr(out, key + strlen(key_id) + 1));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);

	g_assert_cmpint(ctl(d, &out, &err, "rooms", "remove-member", room, "--account", "ada", NULL), ==, 0);
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	reg_refused(d, rest, "AUTH_FAILED", why);
	g_assert_cmpint(ctl(d, &out, &err, "keys", "revoke", key_id, NULL), ==, 0);
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	g_assert_cmpint(ctl(d, &out, &err, "keys", "create", "--room", room, "--account", "ada", NULL), ==, 64);
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	testd_free(d);
}

/* --- the store's schema --- */

/* rooms.db as the release before account keys wrote it (schema 1): a
 * room and a key of it, whose secret goes to *SECRET. */
static void write_v1_db(const char *state, char **room, char **api_key)
{
	static const char schema[] =
		"CREATE TABLE schema_version (version INTEGER NOT NULL);"
		"INSERT INTO schema_version VALUES (1);"
		"CREATE TABLE rooms (id TEXT PRIMARY KEY NOT NULL, name TEXT,"
		" token_hash BLOB NOT NULL CHECK (length(token_hash) = 32), created_by TEXT NOT NULL,"
		" created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL DEFAULT 0,"
		" max_peers INTEGER NOT NULL DEFAULT 0, open_to_issuer INTEGER NOT NULL DEFAULT 0);"
		"CREATE INDEX rooms_expires_at ON rooms (expires_at) WHERE expires_at > 0;"
		"CREATE TABLE api_keys (key_id TEXT PRIMARY KEY NOT NULL,"
		" key_hash BLOB NOT NULL CHECK (length(key_hash) = 32),"
		" room_id TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE, name TEXT,"
		" created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL DEFAULT 0,"
		" revoked_at INTEGER NOT NULL DEFAULT 0);"
		"CREATE INDEX api_keys_room_id ON api_keys (room_id);";
	uint8_t hash[SECRET_HASH_LEN];
	g_autofree char *path = g_build_filename(state, "rooms.db", NULL);
	sqlite3 *db;
	sqlite3_stmt *st;

	g_assert_cmpint(g_mkdir_with_parents(state, 0700), ==, 0);
	g_assert_cmpint(sqlite3_open(path, &db), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_exec(db, schema, NULL, NULL, NULL), ==, SQLITE_OK);
	g_assert_cmpint(secret_hash("roomtoken", hash), ==, 0);
	g_assert_cmpint(sqlite3_prepare_v2(db, "INSERT INTO rooms (id, token_hash, created_by, created_at)"
					   " VALUES ('oldroom', ?1, 'admin', 1)", -1, &st, NULL), ==, SQLITE_OK);
	sqlite3_bind_blob(st, 1, hash, SECRET_HASH_LEN, SQLITE_STATIC);
	g_assert_cmpint(sqlite3_step(st), ==, SQLITE_DONE);
	sqlite3_finalize(st);
	g_assert_cmpint(secret_hash("0123456789abcdef0123456789abcdef", hash), ==, 0);
	g_assert_cmpint(sqlite3_prepare_v2(db, "INSERT INTO api_keys (key_id, key_hash, room_id, name, created_at)"
					   " VALUES ('00112233aabbccdd', ?1, 'oldroom', 'old', 2)", -1, &st, NULL),
			==, SQLITE_OK);
	sqlite3_bind_blob(st, 1, hash, SECRET_HASH_LEN, SQLITE_STATIC);
	g_assert_cmpint(sqlite3_step(st), ==, SQLITE_DONE);
	sqlite3_finalize(st);
	sqlite3_close(db);
	*room = g_strdup("oldroom");
	*api_key = g_strdup("00112233aabbccdd.0123456789abcdef0123456789abcdef");
}

static void test_migration(void)
{
	g_autofree char *dir = g_dir_make_tmp("accounts-XXXXXX", NULL);
	g_autofree char *state = g_build_filename(dir, "state", NULL);
	g_autofree char *room = NULL, *old_key = NULL;
	write_v1_db(state, &room, &old_key);
	g_autofree char *c = auth_conf(NULL);
	const char *args[] = { "--state-dir", state, NULL };

	struct testd *d = testd_start(c, args);
	/* The old key still works, and account keys and members can be stored. */
	g_autofree char *rest = g_strdup_printf(",\"api_key\":\"%s\"", old_key);
	wsc_free(reg_ok(d, room, rest));
	g_autofree char *key = mint_account_key(d, "{\"account\":\"ada\"}", NULL);
	g_autofree char *path = g_strdup_printf("/api/rooms/%s/members", room);
	json_object_put(admin(d, "POST", path, "{\"account\":\"ada\"}", 201));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	/* Both kept across a restart. */
	d = testd_start(c, args);
	wsc_free(reg_ok(d, room, rest));
	g_autofree char *acct = g_strdup_printf(",\"room_id\":\"%s\",\"api_key\":\"%s\"", room, key);
	wsc_free(reg_ok(d, room, acct));
	/* The room's deletion takes its members and stays durable. */
	g_autofree char *rpath = g_strdup_printf("/api/rooms/%s", room);
	json_object_put(admin(d, "DELETE", rpath, NULL, 200));
	json_object_put(admin(d, "GET", path, NULL, 404));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	g_autofree char *db = g_build_filename(state, "rooms.db", NULL);
	sqlite3 *h;
	sqlite3_stmt *st;
	g_assert_cmpint(sqlite3_open(db, &h), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_prepare_v2(h, "SELECT (SELECT max(version) FROM schema_version),"
					   " (SELECT count(*) FROM room_members),"
					   " (SELECT count(*) FROM api_keys WHERE account = 'jwt:lab:ada')",
					   -1, &st, NULL), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_step(st), ==, SQLITE_ROW);
	g_assert_cmpint(sqlite3_column_int(st, 0), >=, 2); /* past the account keys step */
	g_assert_cmpint(sqlite3_column_int(st, 1), ==, 0);
	g_assert_cmpint(sqlite3_column_int(st, 2), ==, 1);
	sqlite3_finalize(st);
	sqlite3_close(h);
	g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);
	g_assert_cmpint(system(cmd), ==, 0);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	rsa_key = EVP_RSA_gen(2048);
	g_autofree char *j1 = jwtmint_jwk(rsa_key, "r1", "");
	g_autofree char *doc = g_strdup_printf("{\"keys\":[%s]}", j1);
	g_autofree char *dir = g_dir_make_tmp("jwks-XXXXXX", NULL);
	jwks_path = g_build_filename(dir, "jwks.json", NULL);
	g_assert_true(g_file_set_contents(jwks_path, doc, -1, NULL));
	ctl_conf = g_build_filename(dir, "ctl.conf", NULL);
	g_assert_true(g_file_set_contents(ctl_conf, "", -1, NULL));

	g_test_add_func("/accounts/open-mode", test_open_mode);
	g_test_add_func("/accounts/default-room", test_default_room);
	g_test_add_func("/accounts/account-keys", test_account_keys);
	g_test_add_func("/accounts/jwt-account-rooms", test_jwt_account_rooms);
	g_test_add_func("/accounts/room-key-other-room", test_room_key_other_room);
	g_test_add_func("/accounts/ctl", test_ctl_account);
	g_test_add_func("/accounts/migration", test_migration);
	int r = g_test_run();
	unlink(jwks_path);
	unlink(ctl_conf);
	rmdir(dir);
	g_free(jwks_path);
	g_free(ctl_conf);
	EVP_PKEY_free(rsa_key);
	return r;
}
