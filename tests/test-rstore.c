/* Integration tests: [rooms] store = redis (issue 14).  Two real daemons
 * share one real redis-server: every instance accepts the same tokens and
 * keys, sees the same rooms, and ends the sessions a change elsewhere
 * ends; Redis lost, and back empty; --check-config's refusals. */
#include "jwtmint.h"
#include "testd.h"
#include "testredis.h"

#include <glib/gstdio.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define ADMIN_TOKEN "rstore-admin-token-7d1f"
#define WAIT_MS 5000
#define ISS "https://id.example.org/realms/lab"
#define AUD "rtcsignald"

static EVP_PKEY *rsa_key;
static char *jwks_path;

struct fx {
	struct testredis *redis;
	char *tmp;
	struct testd *a, *b;
	bool jwt; /* an [issuer] on both: authentication required */
};

/* B reaches Redis by its unix socket, A by TCP. */
static char *conf_for(struct fx *fx, const char *instance)
{
	g_autofree char *issuer = fx->jwt ? g_strdup_printf("[issuer lab]\nissuer = " ISS "\naudience = "
							   AUD "\njwks_file = %s\n", jwks_path)
					  : g_strdup("");
	return g_strdup_printf("[admin]\ntoken = %s\n[rooms]\nstore = redis\nmax_ttl = 0\n"
			       "[cluster]\nredis = %s\nkey_prefix = t:\ninstance_id = %s\n%s",
			       ADMIN_TOKEN, strcmp(instance, "b") == 0 ? fx->redis->unix_url : fx->redis->url,
			       instance, issuer);
}

static struct testd *start(struct fx *fx, const char *instance)
{
	g_autofree char *conf = conf_for(fx, instance);
	g_autofree char *state = g_build_filename(fx->tmp, instance, NULL);
	const char *args[] = { "--state-dir", state, NULL };
	struct testd *d = testd_start(conf, args);
	/* Subscribed (and reloaded once): changes elsewhere reach it from now. */
	g_assert_true(testd_wait_log(d, "reloaded from Redis", WAIT_MS));
	return d;
}

static void fx_setup(struct fx *fx, gconstpointer jwt)
{
	fx->jwt = jwt != NULL;
	fx->redis = testredis_start();
	fx->tmp = g_dir_make_tmp("rtcsignald-rstore-XXXXXX", NULL);
	fx->a = start(fx, "a");
	fx->b = start(fx, "b");
}

static void fx_teardown(struct fx *fx, gconstpointer unused)
{
	if (fx->a) {
		g_assert_cmpint(testd_stop(fx->a), ==, 0);
		testd_free(fx->a);
	}
	if (fx->b) {
		g_assert_cmpint(testd_stop(fx->b), ==, 0);
		testd_free(fx->b);
	}
	testredis_free(fx->redis);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", fx->tmp);
	g_assert_cmpint(system(rm), ==, 0);
	g_free(fx->tmp);
}

static json_object *api(struct testd *d, const char *method, const char *path, const char *body,
			int want)
{
	return testd_admin_api(d, ADMIN_TOKEN, method, path, body, want);
}

/* A room created through D's admin API: its id and token. */
static void new_room(struct testd *d, const char *body, char **id, char **token)
{
	json_object *o = api(d, "POST", "/api/rooms", body ? body : "{}", 201);
	*id = g_strdup(testd_str(o, "room_id"));
	*token = g_strdup(testd_str(o, "token"));
	json_object_put(o);
}

/* Waits until D has applied a change another instance logged with NEEDLE. */
static void await_change(struct testd *d, const char *what, const char *id)
{
	g_autofree char *needle = g_strdup_printf("%s", id);
	g_assert_true(testd_wait_log(d, what, WAIT_MS));
	g_assert_true(testd_wait_log(d, needle, WAIT_MS));
}

static char *with_token(const char *token)
{
	return g_strdup_printf(",\"token\":\"%s\"", token);
}

/* Registers PEER with EXTRA and expects the error CODE. */
static void register_refused(struct testd *d, const char *room, const char *peer, const char *extra,
			     const char *code)
{
	struct wsc *c = testd_connect(d);
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"%s\",\"protocol\":\"2.1\"%s}",
		  peer, room, extra ? extra : "");
	json_object_put(wsc_expect_error(c, code));
	wsc_free(c);
}

static struct wsc *register_key(struct testd *d, const char *peer, const char *api_key)
{
	struct wsc *c = testd_connect(d);
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"%s\",\"protocol\":\"2.1\",\"api_key\":\"%s\"}",
		  peer, api_key);
	json_object_put(wsc_expect(c, "registered_auth"));
	return c;
}

static bool listed(struct testd *d, const char *path, const char *id)
{
	json_object *o = api(d, "GET", path, NULL, 200);
	bool found = strstr(json_object_to_json_string(o), id) != NULL;
	json_object_put(o);
	return found;
}

/* A room made on A admits with its token on B; a wrong token is refused
 * on both; a key made on B admits on A; the record in Redis carries the
 * prefix and the room's hash tag. */
static void test_shared_tokens_and_keys(struct fx *fx, gconstpointer unused)
{
	g_autofree char *room = NULL, *token = NULL;

	gint64 t0 = g_get_monotonic_time();
	new_room(fx->a, "{\"name\":\"shared\"}", &room, &token);
	gint64 answered_us = g_get_monotonic_time() - t0;
	await_change(fx->b, "room created on instance a", room);
	/* The bound is a second.  B applies the notice as A's write
	 * completes, so usually before A's answer is out. */
	gint64 lag_us = g_get_monotonic_time() - t0;
	g_test_message("POST /api/rooms on A answered in %" G_GINT64_FORMAT " us, applied on B within %"
		       G_GINT64_FORMAT " us", answered_us, lag_us);
	g_assert_cmpint(lag_us, <, G_USEC_PER_SEC);
	g_autofree char *tok = with_token(token);
	struct wsc *pb = testd_register(fx->b, room, "on-b", tok);
	register_refused(fx->b, room, "wrong", ",\"token\":\"00000000000000000000000000000000\"",
			 "AUTH_FAILED");
	g_assert_true(listed(fx->b, "/api/rooms", room));

	g_autofree char *rk = g_strdup_printf("t:{%s}:room", room);
	redisReply *rep = testredis_command(fx->redis, "EXISTS %s", rk);
	g_assert_nonnull(rep);
	g_assert_cmpint(rep->integer, ==, 1);
	freeReplyObject(rep);

	g_autofree char *body = g_strdup_printf("{\"room_id\":\"%s\",\"name\":\"k\"}", room);
	json_object *o = api(fx->b, "POST", "/api/keys", body, 201);
	g_autofree char *api_key = g_strdup(testd_str(o, "api_key"));
	g_autofree char *key_id = g_strdup(testd_str(o, "key_id"));
	json_object_put(o);
	await_change(fx->a, "created on instance b", key_id);
	struct wsc *ka = register_key(fx->a, "key-on-a", api_key);
	g_assert_true(listed(fx->a, "/api/keys", key_id));
	wsc_free(ka);
	wsc_free(pb);
}

/* Revoked on A: the key's session on B ends with AUTH_FAILED, and B
 * refuses the key from then on.  Deleted on B: A's peers get
 * room_closed, and A no longer knows the room. */
static void test_revoke_and_delete_close_elsewhere(struct fx *fx, gconstpointer unused)
{
	g_autofree char *room = NULL, *token = NULL;

	new_room(fx->a, NULL, &room, &token);
	await_change(fx->b, "room created on instance a", room);
	g_autofree char *body = g_strdup_printf("{\"room_id\":\"%s\"}", room);
	json_object *o = api(fx->a, "POST", "/api/keys", body, 201);
	g_autofree char *api_key = g_strdup(testd_str(o, "api_key"));
	g_autofree char *key_id = g_strdup(testd_str(o, "key_id"));
	json_object_put(o);
	await_change(fx->b, "created on instance a", key_id);
	struct wsc *kb = register_key(fx->b, "key-on-b", api_key);

	g_autofree char *kpath = g_strconcat("/api/keys/", key_id, NULL);
	json_object_put(api(fx->a, "DELETE", kpath, NULL, 200));
	o = wsc_expect_error(kb, "AUTH_FAILED");
	g_assert_cmpstr(testd_str(o, "reason"), ==, "Token revoked");
	json_object_put(o);
	g_assert_cmpint(wsc_wait_close(kb, WAIT_MS), ==, 1008);
	wsc_free(kb);
	struct wsc *c = testd_connect(fx->b);
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"again\",\"protocol\":\"2.1\",\"api_key\":\"%s\"}",
		  api_key);
	json_object_put(wsc_expect_error(c, "AUTH_FAILED"));
	wsc_free(c);

	g_autofree char *tok = with_token(token);
	struct wsc *pa = testd_register(fx->a, room, "on-a", tok);
	g_autofree char *rpath = g_strconcat("/api/rooms/", room, NULL);
	json_object_put(api(fx->b, "DELETE", rpath, NULL, 200));
	o = wsc_expect(pa, "room_closed");
	g_assert_cmpstr(testd_str(o, "room_id"), ==, room);
	g_assert_cmpstr(testd_str(o, "reason"), ==, "deleted");
	json_object_put(o);
	wsc_free(pa);
	/* Gone from A too (a register now would make an ordinary room of the id). */
	g_assert_false(listed(fx->a, "/api/rooms", room));
}

/* rtcsignalctl against B lists a room made on A; A restarted still has
 * it (from Redis; its state directory holds no rooms). */
static void test_ctl_and_restart(struct fx *fx, gconstpointer unused)
{
	g_autofree char *room = NULL, *token = NULL;
	g_autofree char *out = NULL, *err = NULL;
	int status = -1;

	new_room(fx->a, "{\"name\":\"ctl-listed\"}", &room, &token);
	await_change(fx->b, "room created on instance a", room);
	g_autofree char *ctl = g_test_build_filename(G_TEST_BUILT, "..", "src", "rtcsignalctl", NULL);
	g_autofree char *admin = g_strdup_printf("127.0.0.1:%d", fx->b->admin_port);
	const char *argv[] = { ctl, "--admin", admin, "rooms", "list", NULL };
	g_auto(GStrv) envp = g_environ_setenv(g_get_environ(), "RTCSIGNALD_ADMIN_TOKEN", ADMIN_TOKEN, TRUE);
	g_assert_true(g_spawn_sync(NULL, (char **)argv, envp, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
				   &status, NULL));
	g_test_message("rtcsignalctl: %s%s", out, err);
	g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	g_assert_nonnull(strstr(out, room));

	g_assert_cmpint(testd_stop(fx->a), ==, 0);
	testd_free(fx->a);
	fx->a = start(fx, "a");
	g_assert_true(listed(fx->a, "/api/rooms", room));
	g_autofree char *tok = with_token(token);
	wsc_free(testd_register(fx->a, room, "after-restart", tok));
}

/* A room expires on every instance (each closes its own peers), and Redis
 * drops its record by itself after the retention. */
static void test_expiry(struct fx *fx, gconstpointer unused)
{
	g_autofree char *room = NULL, *token = NULL;

	new_room(fx->a, "{\"expires_in\":2}", &room, &token);
	await_change(fx->b, "room created on instance a", room);
	g_autofree char *rk = g_strdup_printf("t:{%s}:room", room);
	redisReply *rep = testredis_command(fx->redis, "TTL %s", rk);
	g_assert_nonnull(rep);
	g_assert_cmpint(rep->integer, >, 0);
	g_assert_cmpint(rep->integer, <=, 2 + 3600);
	freeReplyObject(rep);
	g_autofree char *tok = with_token(token);
	struct wsc *pb = testd_register(fx->b, room, "on-b", tok);
	json_object *o = wsc_expect(pb, "room_closed");
	g_assert_cmpstr(testd_str(o, "reason"), ==, "expired");
	json_object_put(o);
	wsc_free(pb);
	register_refused(fx->a, room, "late", tok, "ROOM_EXPIRED");
}

/* Redis killed: a creation is refused at once with a reason (503), rooms
 * already known keep admitting with their tokens.  Redis back EMPTY (no
 * persistence): each instance resubscribes, reloads, and finds no rooms:
 * their peers get room_closed, the rooms are listed nowhere; creations work
 * again and are seen everywhere. */
static void test_outage_and_empty_restart(struct fx *fx, gconstpointer unused)
{
	g_autofree char *room = NULL, *token = NULL;

	new_room(fx->a, NULL, &room, &token);
	await_change(fx->b, "room created on instance a", room);
	g_autofree char *tok = with_token(token);
	struct wsc *pa = testd_register(fx->a, room, "before", tok);

	unsigned lost_a = testd_log_count(fx->a, "lost the change subscription");
	testredis_kill(fx->redis);
	g_assert_true(testd_wait_log_count(fx->a, "lost the change subscription", lost_a + 1, WAIT_MS));
	json_object *o = api(fx->a, "POST", "/api/rooms", "{}", 503);
	g_test_message("creation with Redis down: %s", json_object_to_json_string(o));
	g_assert_nonnull(strstr(testd_str(o, "error"), "unavailable"));
	json_object_put(o);
	o = api(fx->b, "POST", "/api/rooms", "{}", 503);
	json_object_put(o);
	/* create_room over the WebSocket too: SERVICE_UNAVAILABLE with the reason. */
	struct wsc *lobby = testd_register(fx->b, "lobby", "creator", NULL);
	wsc_send_text(lobby, "{\"type\":\"create_room\",\"expires_in\":60}");
	o = wsc_expect_error(lobby, "SERVICE_UNAVAILABLE");
	g_assert_nonnull(strstr(testd_str(o, "message") ? testd_str(o, "message") : testd_str(o, "reason"),
				"unavailable"));
	json_object_put(o);
	wsc_free(lobby);
	struct wsc *pb = testd_register(fx->b, room, "during", tok);
	wsc_free(testd_register(fx->a, room, "during-a", tok));
	g_assert_cmpfloat(testd_metric(fx->a, "rtcsignald_store_errors_total{backend=\"redis\"}"), >=, 1);
	/* Redis is the cluster's: its outage keeps the instance ready (its
	 * peers are served), and says so. */
	testd_expect_ready(fx->a, 200, "\"cluster\":\"degraded\"");

	unsigned reloads_a = testd_log_count(fx->a, "reloaded from Redis");
	unsigned reloads_b = testd_log_count(fx->b, "reloaded from Redis");
	testredis_restart(fx->redis);
	g_assert_true(testd_wait_log_count(fx->a, "reloaded from Redis", reloads_a + 1, WAIT_MS));
	g_assert_true(testd_wait_log_count(fx->b, "reloaded from Redis", reloads_b + 1, WAIT_MS));
	g_assert_true(testd_wait_log(fx->a, "subscription restored", WAIT_MS));
	o = wsc_expect(pa, "room_closed");
	g_assert_cmpstr(testd_str(o, "room_id"), ==, room);
	json_object_put(o);
	json_object_put(wsc_expect(pb, "room_closed"));
	testd_expect_ready(fx->a, 200, NULL); /* the reload reached Redis */
	wsc_free(pa);
	wsc_free(pb);
	g_assert_false(listed(fx->a, "/api/rooms", room));
	g_assert_false(listed(fx->b, "/api/rooms", room));

	g_autofree char *room2 = NULL, *token2 = NULL;
	new_room(fx->b, NULL, &room2, &token2);
	await_change(fx->a, "room created on instance b", room2);
	g_autofree char *tok2 = with_token(token2);
	wsc_free(testd_register(fx->a, room2, "new", tok2));
}

/* Rooms clients create (POST /create-room, WebSocket create_room) on one
 * instance admit on the other; an account key and a membership made on A
 * admit on B. */
static void test_client_rooms_and_accounts(struct fx *fx, gconstpointer unused)
{
	g_autofree char *jwt = jwtmint_token(rsa_key, "r1", jwtmint_claims(ISS, AUD, "ada"));
	g_autofree char *bearer = g_strdup_printf("Authorization: Bearer %s\r\nContent-Type: application/json\r\n", jwt);
	g_autofree char *cred = g_strdup_printf(",\"id_token\":\"%s\"", jwt);
	struct httpc_reply r;

	g_assert_cmpint(testd_http(fx->a->port, "POST", "/create-room", bearer, "{\"expires_in\":600}", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 201);
	json_object *o = json_tokener_parse(r.body->str);
	httpc_reply_clear(&r);
	g_autofree char *room = g_strdup(testd_str(o, "room_id")), *token = g_strdup(testd_str(o, "token"));
	json_object_put(o);
	await_change(fx->b, "room created on instance a", room);
	g_autofree char *extra = g_strdup_printf("%s,\"token\":\"%s\"", cred, token);
	struct wsc *pb = testd_register(fx->b, room, "ada-b", extra);

	/* create_room over B's WebSocket: A admits with its token. */
	wsc_send_text(pb, "{\"type\":\"create_room\",\"expires_in\":300}");
	o = wsc_expect(pb, "room_created");
	g_autofree char *room2 = g_strdup(testd_str(o, "room_id")), *token2 = g_strdup(testd_str(o, "token"));
	json_object_put(o);
	await_change(fx->a, "room created on instance b", room2);
	g_autofree char *extra2 = g_strdup_printf("%s,\"token\":\"%s\"", cred, token2);
	wsc_free(testd_register(fx->a, room2, "ada-a", extra2));
	wsc_free(pb);

	/* bob's account key, made on A, admits on B once A made him a member. */
	o = api(fx->a, "POST", "/api/keys", "{\"account\":\"bob\",\"issuer\":\"lab\"}", 201);
	g_autofree char *bob_key = g_strdup(testd_str(o, "api_key"));
	g_autofree char *bob_id = g_strdup(testd_str(o, "key_id"));
	json_object_put(o);
	await_change(fx->b, "created on instance a", bob_id);
	g_autofree char *key_extra = g_strdup_printf(",\"api_key\":\"%s\"", bob_key);
	register_refused(fx->b, room, "bob", key_extra, "AUTH_FAILED");
	g_autofree char *mpath = g_strdup_printf("/api/rooms/%s/members", room);
	json_object_put(api(fx->a, "POST", mpath, "{\"account\":\"bob\",\"issuer\":\"lab\"}", 201));
	await_change(fx->b, "account jwt:lab:bob added to the room on instance a", room);
	wsc_free(testd_register(fx->b, room, "bob", key_extra));
}

/* [cluster] password_file: AUTH on both connections (commands and the
 * subscription); a wrong password stops the start with the reason. */
static void test_password(void)
{
	struct testredis *redis = testredis_start();
	g_autofree char *tmp = g_dir_make_tmp("rtcsignald-rstore-pw-XXXXXX", NULL);
	g_autofree char *good = g_build_filename(tmp, "good", NULL), *bad = g_build_filename(tmp, "bad", NULL);
	g_autofree char *state = g_build_filename(tmp, "state", NULL);
	const char *args[] = { "--state-dir", state, NULL };

	redisReply *rep = testredis_command(redis, "CONFIG SET requirepass %s", "pw-1234");
	g_assert_nonnull(rep);
	freeReplyObject(rep);
	g_assert_true(g_file_set_contents(good, "pw-1234\n", -1, NULL));
	g_assert_true(g_file_set_contents(bad, "wrong\n", -1, NULL));

	g_autofree char *conf = g_strdup_printf("[admin]\ntoken = %s\n[rooms]\nstore = redis\n[cluster]\n"
						"redis = %s\npassword_file = %s\n", ADMIN_TOKEN, redis->url, good);
	struct testd *d = testd_start(conf, args);
	g_assert_true(testd_wait_log(d, "reloaded from Redis", WAIT_MS));
	g_assert_true(testd_wait_log(d, "cluster: instance ", WAIT_MS)); /* the generated id, logged */
	json_object_put(api(d, "POST", "/api/rooms", "{}", 201));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	g_autofree char *conf2 = g_strdup_printf("[rooms]\nstore = redis\n[cluster]\nredis = %s\n"
						 "password_file = %s\n", redis->url, bad);
	const struct testd_opts o = { .conf = conf2, .args = args, .no_wait = true };
	d = testd_start_opts(&o);
	g_assert_cmpint(testd_wait_exit(d, WAIT_MS), !=, 0);
	g_assert_true(testd_wait_log(d, "AUTH refused", 0));
	testd_free(d);
	testredis_free(redis);
	g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
	g_assert_cmpint(system(rm), ==, 0);
}

/* --- --check-config --- */

static int check_config(const char *text, char **err)
{
	g_autofree char *path = g_build_filename(g_get_tmp_dir(), "rstore-check.conf", NULL);
	g_autofree char *out = NULL;
	int status = -1;

	g_assert_true(g_file_set_contents(path, text, -1, NULL));
	const char *argv[] = { g_getenv("RTCSIGNALD"), "--check-config", "--config", path, NULL };
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, err,
				   &status, NULL));
	g_unlink(path);
	g_test_message("%s%s", out, *err);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void refused(const char *text, const char *reason)
{
	g_autofree char *err = NULL;
	g_assert_cmpint(check_config(text, &err), ==, 78);
	if (!strstr(err, reason))
		g_error("\"%s\" does not say \"%s\"", err, reason);
}

static void test_check_config(void)
{
	g_autofree char *err = NULL;
	g_autofree char *pw = g_build_filename(g_get_tmp_dir(), "rstore-pw", NULL);
	g_autofree char *creds = g_dir_make_tmp("rstore-creds-XXXXXX", NULL);
	g_autofree char *cred = g_build_filename(creds, "redis-pw", NULL);

	refused("[cluster]\nredis = redis://127.0.0.1:6379\n", "instances would disagree on tokens");
	refused("[rooms]\nstore = sqlite\n[cluster]\nredis = unix:/run/redis.sock\n",
		"instances would disagree on tokens");
	refused("[rooms]\nstore = redis\n", "[rooms] store = redis needs [cluster] redis");
	refused("[rooms]\nstore = redis\n[cluster]\nredis = redis://h:1/x\n", "database");
	refused("[rooms]\nstore = redis\n[cluster]\nredis = 127.0.0.1:6379\n", "[cluster] redis");
	refused("[rooms]\nstore = redis\n[cluster]\nredis = redis://u:p@h:1\n", "password_file");
	refused("[rooms]\nstore = memcached\n", "not supported");
	refused("[rooms]\nstore = redis\n[cluster]\nredis = redis://h\ninstance_id = a b\n", "instance_id");
	refused("[rooms]\nstore = redis\n[cluster]\nredis = redis://h\ninstance_ttl = 0\n", "instance_ttl");
	refused("[rooms]\nstore = redis\n[cluster]\nredis = redis://h\npassword_file = /nonexistent/pw\n",
		"[cluster] password_file");

	g_assert_true(g_file_set_contents(pw, "secret\n", -1, NULL));
	g_autofree char *ok = g_strdup_printf("[rooms]\nstore = redis\n[cluster]\nredis = redis://h:1/2\n"
					      "password_file = %s\nkey_prefix = lab1:\ninstance_id = a-1\n"
					      "instance_ttl = 2\n", pw);
	g_assert_cmpint(check_config(ok, &err), ==, 0);
	g_unlink(pw);
	g_clear_pointer(&err, g_free);
	/* A relative password_file resolves in $CREDENTIALS_DIRECTORY. */
	g_assert_true(g_file_set_contents(cred, "s3cret\n", -1, NULL));
	g_setenv("CREDENTIALS_DIRECTORY", creds, TRUE);
	g_assert_cmpint(check_config("[rooms]\nstore = redis\n[cluster]\nredis = redis://h\n"
				     "password_file = redis-pw\n", &err), ==, 0);
	g_unsetenv("CREDENTIALS_DIRECTORY");
	g_unlink(cred);
	g_rmdir(creds);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	rsa_key = EVP_RSA_gen(2048);
	g_autofree char *jwk = jwtmint_jwk(rsa_key, "r1", "");
	g_autofree char *doc = g_strdup_printf("{\"keys\":[%s]}", jwk);
	g_autofree char *dir = g_dir_make_tmp("rstore-jwks-XXXXXX", NULL);
	jwks_path = g_build_filename(dir, "jwks.json", NULL);
	g_assert_true(g_file_set_contents(jwks_path, doc, -1, NULL));
	g_test_add_func("/rstore/check-config", test_check_config);
	g_test_add_func("/rstore/password", test_password);
#define T(path, fn) g_test_add(path, struct fx, NULL, fx_setup, fn, fx_teardown)
	T("/rstore/shared-tokens-and-keys", test_shared_tokens_and_keys);
	T("/rstore/revoke-and-delete-close-elsewhere", test_revoke_and_delete_close_elsewhere);
	T("/rstore/ctl-and-restart", test_ctl_and_restart);
	T("/rstore/expiry", test_expiry);
	T("/rstore/outage-and-empty-restart", test_outage_and_empty_restart);
	g_test_add("/rstore/client-rooms-and-accounts", struct fx, "jwt", fx_setup,
		   test_client_rooms_and_accounts, fx_teardown);
	int r = g_test_run();
	g_unlink(jwks_path);
	g_rmdir(dir);
	g_free(jwks_path);
	EVP_PKEY_free(rsa_key);
	return r;
}
