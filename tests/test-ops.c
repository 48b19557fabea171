/* Issue 18, points 2 and 7, against the real daemon: the authentication
 * mode is the configuration's and reported; the start-up line counts keys
 * in force only; rtcsignald_registrations_total exports only results a
 * register can have; rtcsignald_peers has a series with no peers; a
 * descriptor limit below max_sessions is warned about and exported; a
 * persistent room joined without its token says one is required. */
#include "testd.h"

#include <glib.h>
#include <json-c/json.h>
#include <math.h>
#include <string.h>

#define TOKEN "ops-admin-token-0123456789abcdef"

static char *scrape(struct testd *d, const char *path)
{
	struct httpc_reply r;
	g_assert_cmpint(testd_http(d->admin_port, "GET", path, NULL, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 200);
	char *body = g_strdup(r.body->str);
	httpc_reply_clear(&r);
	return body;
}

static void test_registration_results(void)
{
	struct testd *d = testd_start(NULL, NULL);
	g_autofree char *text = scrape(d, "/metrics");

	/* Results a register can have: present before they occur. */
	static const char *const can[] = { "ok", "INVALID_MESSAGE", "AUTH_REQUIRED", "AUTH_FAILED",
					   "ROOM_NOT_FOUND", "ROOM_EXPIRED", "ROOM_FULL",
					   "PEER_ID_TAKEN", "RATE_LIMITED" };
	for (size_t i = 0; i < G_N_ELEMENTS(can); i++) {
		g_autofree char *s = g_strdup_printf("rtcsignald_registrations_total{result=\"%s\"}", can[i]);
		g_assert_cmpfloat(testd_series(text, s), ==, 0);
	}
	/* Codes of other messages: no series. */
	static const char *const cannot[] = { "PEER_NOT_FOUND", "DELIVERY_FAILED", "NOT_IN_ROOM",
					      "UNKNOWN_MESSAGE_TYPE", "SERVER_SHUTTING_DOWN",
					      "SESSION_REPLACED", "INVALID_FILTER" };
	for (size_t i = 0; i < G_N_ELEMENTS(cannot); i++) {
		g_autofree char *s = g_strdup_printf("rtcsignald_registrations_total{result=\"%s\"", cannot[i]);
		if (strstr(text, s))
			g_error("%s exported", s);
	}

	/* No peers: a 0 series, not none. */
	g_assert_cmpfloat(testd_series(text, "rtcsignald_peers{role=\"other\"}"), ==, 0);
	struct wsc *c = testd_register(d, "r", "w", ",\"role\":\"worker\"");
	g_free(text);
	text = scrape(d, "/metrics");
	g_assert_cmpfloat(testd_series(text, "rtcsignald_peers{role=\"worker\"}"), ==, 1);
	g_assert_cmpfloat(testd_series(text, "rtcsignald_peers{role=\"other\"}"), ==, 0);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_descriptor_limit(void)
{
	g_autofree char *prlimit = g_find_program_in_path("prlimit");
	if (!prlimit) {
		g_test_skip("prlimit (util-linux) not found");
		return;
	}
	const char *prefix[] = { prlimit, "--nofile=512:512", "--", NULL };
	struct testd *d = testd_start_opts(&(struct testd_opts){
		.conf = "[limits]\nmax_sessions = 1000\n", .prefix = prefix });
	/* 512, or a little less under valgrind, which keeps a few. */
	g_assert_true(testd_wait_log(d, ", LimitNOFILE=) is below [limits] max_sessions (1000)", 0));
	double max_fds = testd_metric(d, "process_max_fds");
	g_assert_cmpfloat(max_fds, <=, 512);
	g_assert_cmpfloat(max_fds, >, 400);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_max_sessions"), ==, 1000);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	/* Above it: no warning. */
	d = testd_start_opts(&(struct testd_opts){ .conf = "[limits]\nmax_sessions = 100\n",
						   .prefix = prefix });
	g_assert_cmpuint(testd_log_count(d, "descriptor limit"), ==, 0);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static const char *auth_of(struct testd *d)
{
	static char mode[64];
	g_autofree char *body = scrape(d, "/metrics?format=json");
	json_object *o = json_tokener_parse(body), *v;
	g_assert_nonnull(o);
	g_assert_true(json_object_object_get_ex(o, "authentication", &v));
	g_strlcpy(mode, json_object_get_string(v), sizeof mode);
	json_object_put(o);
	return mode;
}

/* Keys never switch the mode; the start-up line counts keys in force. */
static void test_auth_mode(void)
{
	g_autofree char *tmp = g_dir_make_tmp("rtcsignald-ops-XXXXXX", NULL);
	g_autofree char *state = g_build_filename(tmp, "state", NULL);
	const char *args[] = { "--state-dir", state, NULL };
	const char *conf = "[admin]\ntoken = " TOKEN "\n";
	struct testd *d = testd_start(conf, args);

	g_assert_cmpstr(auth_of(d), ==, "off: loopback clients only");
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_authentication_required"), ==, 0);
	json_object *room = testd_admin_api(d, TOKEN, "POST", "/api/rooms", "{\"name\":\"k\"}", 201);
	g_autofree char *body = g_strdup_printf("{\"room_id\":\"%s\"}", testd_str(room, "room_id"));
	json_object *k1 = testd_admin_api(d, TOKEN, "POST", "/api/keys", body, 201);
	json_object *k2 = testd_admin_api(d, TOKEN, "POST", "/api/keys", body, 201);
	g_autofree char *path = g_strdup_printf("/api/keys/%s", testd_str(k2, "key_id"));
	json_object_put(testd_admin_api(d, TOKEN, "DELETE", path, NULL, 200));
	/* A key in force does not switch authentication on. */
	g_assert_cmpstr(auth_of(d), ==, "off: loopback clients only");
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	d = testd_start(conf, args);
	g_assert_true(testd_wait_log(d, "1 API keys in force (1 revoked or expired)", 0));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	/* The configuration switches it. */
	g_autofree char *req = g_strconcat(conf, "[server]\nrequire_auth = true\n", NULL);
	d = testd_start(req, args);
	g_assert_cmpstr(auth_of(d), ==, "required");
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_authentication_required"), ==, 1);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	json_object_put(room);
	json_object_put(k1);
	json_object_put(k2);
}

/* Point 6: a persistent room without its token says that one is needed;
 * a wrong one is still "Invalid token". */
static void test_room_token_required(void)
{
	struct testd *d = testd_start("[admin]\ntoken = " TOKEN "\n", NULL);
	json_object *room = testd_admin_api(d, TOKEN, "POST", "/api/rooms", "{\"name\":\"t\"}", 201);
	const char *id = testd_str(room, "room_id");
	static const struct {
		const char *token_field, *reason;
	} cases[] = {
		{ "", "Room token required" },
		{ ",\"token\":\"\"", "Room token required" },
		{ ",\"token\":null", "Room token required" },
		{ ",\"token\":\"wrong\"", "Invalid token" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		struct wsc *c = testd_connect(d);
		wsc_sendf(c, "{\"type\":\"register\",\"protocol\":\"2.1\",\"peer_id\":\"p\","
			     "\"room_id\":\"%s\"%s}", id, cases[i].token_field);
		json_object *e = wsc_expect_error(c, "AUTH_FAILED");
		g_assert_cmpstr(testd_str(e, "reason"), ==, cases[i].reason);
		g_assert_cmpstr(testd_str(e, "message"), ==, cases[i].reason);
		json_object_put(e);
		wsc_free(c);
	}
	json_object_put(room);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/ops/registration-results-and-peers", test_registration_results);
	g_test_add_func("/ops/descriptor-limit", test_descriptor_limit);
	g_test_add_func("/ops/auth-mode", test_auth_mode);
	g_test_add_func("/ops/room-token-required", test_room_token_required);
	return g_test_run();
}
