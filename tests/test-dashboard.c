/* Integration tests: the dashboard on the admin port (GET / and its
 * assets, /api/dashboard, /api/audit, a room's workers), its headers,
 * the per-address rate limit, and that no secret a client or the
 * operator handed the daemon ever comes back in a byte it serves. */
#include "jwtmint.h"
#include <openssl/rsa.h>
#include "testd.h"

#include <string.h>

#define ADMIN "ADMTOKEN-MARK-4b1d9e"

/* Unique strings that must never be served. */
#define META_MARK "META-MARK-91f3a7"
#define PAYLOAD_MARK "PAYLOAD-MARK-5c2e08"

static struct testd *start(const char *extra)
{
	g_autofree char *conf = g_strdup_printf("[admin]\ntoken = " ADMIN "\n%s", extra ? extra : "");
	return testd_start(conf, NULL);
}

static json_object *api(struct testd *d, const char *method, const char *path, const char *body,
			int want)
{
	return testd_admin_api(d, ADMIN, method, path, body, want);
}

/* GET PATH with the admin token (or none): status, headers and body in
 * ALL (appended), the reply in *OUT. */
static void get(struct testd *d, const char *path, bool auth, GString *all, struct httpc_reply *out)
{
	g_assert_cmpint(testd_http(d->admin_port, "GET", path,
				   auth ? "Authorization: Bearer " ADMIN "\r\n" : NULL, NULL, out),
			==, 0);
	if (all) {
		g_string_append(all, out->head->str);
		g_string_append(all, out->body->str);
	}
}

static void assert_header(const struct httpc_reply *r, const char *name, const char *want)
{
	g_autofree char *v = httpc_header(r, name);
	if (!v || !strstr(v, want))
		g_error("header %s: \"%s\", wanted \"%s\"", name, v ? v : "(none)", want);
}

/* The page: served from the binary, with a strict policy and no inline
 * script; the page itself and every answer of the API not cached. */
static void test_page(void)
{
	struct testd *d = start(NULL);
	struct httpc_reply r;

	get(d, "/", false, NULL, &r);
	g_assert_cmpint(r.status, ==, 200);
	assert_header(&r, "Content-Type", "text/html");
	assert_header(&r, "Content-Security-Policy", "script-src 'self'");
	assert_header(&r, "Content-Security-Policy", "default-src 'none'");
	assert_header(&r, "Content-Security-Policy", "frame-ancestors 'none'");
	assert_header(&r, "X-Frame-Options", "DENY");
	assert_header(&r, "Cache-Control", "no-store");
	g_autofree char *csp = httpc_header(&r, "Content-Security-Policy");
	g_assert_null(strstr(csp, "unsafe"));
	/* Every script is a file of the port's own: none inline, no CDN. */
	for (const char *p = r.body->str; (p = strstr(p, "<script")); p++)
		g_assert_true(g_str_has_prefix(p, "<script src=\"/"));
	g_assert_null(strstr(r.body->str, "http://"));
	g_assert_null(strstr(r.body->str, "https://"));
	g_assert_false(g_regex_match_simple("\\son[a-z]+\\s*=", r.body->str, 0, 0)); /* no handlers */
	httpc_reply_clear(&r);

	const char *assets[][2] = { { "/dashboard.js", "text/javascript" }, { "/dashboard.css", "text/css" } };
	for (size_t i = 0; i < G_N_ELEMENTS(assets); i++) {
		get(d, assets[i][0], false, NULL, &r);
		g_assert_cmpint(r.status, ==, 200);
		g_assert_cmpuint(r.body->len, >, 100);
		assert_header(&r, "Content-Type", assets[i][1]);
		assert_header(&r, "Cache-Control", "max-age");
		assert_header(&r, "X-Frame-Options", "DENY");
		g_assert_null(strstr(r.body->str, "innerHTML"));
		httpc_reply_clear(&r);
	}
	get(d, "/api/dashboard", true, NULL, &r);
	g_assert_cmpint(r.status, ==, 200);
	assert_header(&r, "Cache-Control", "no-store");
	assert_header(&r, "X-Frame-Options", "DENY");
	httpc_reply_clear(&r);
	/* Without a token the page loads (it asks for one); the API does not. */
	get(d, "/api/dashboard", false, NULL, &r);
	g_assert_cmpint(r.status, ==, 401);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->admin_port, "GET", "/api/rooms/x/peers",
				   "Authorization: Bearer wrong\r\n", NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 401);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->admin_port, "POST", "/", NULL, "x", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 405);
	assert_header(&r, "Allow", "GET");
	httpc_reply_clear(&r);
	get(d, "/nothing.js", false, NULL, &r);
	g_assert_cmpint(r.status, ==, 404);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void assert_absent(const GString *all, const char *what, const char *secret)
{
	if (secret && *secret && strstr(all->str, secret))
		g_error("%s (%s) served", what, secret);
}

/* Peers with a room token, an API key and marked metadata exchange a
 * marked payload; everything the page reads is then fetched, and none
 * of those bytes holds a secret, a metadata value, a payload or an
 * address, while the numbers and ids the page needs are there. */
static void test_no_secrets(void)
{
	struct testd *d = start(NULL);
	json_object *o = api(d, "POST", "/api/rooms", "{\"name\":\"lab\"}", 201);
	g_autofree char *room = g_strdup(testd_str(o, "room_id"));
	g_autofree char *room_token = g_strdup(testd_str(o, "token"));
	json_object_put(o);
	g_autofree char *key_body = g_strdup_printf("{\"room_id\":\"%s\"}", room);
	o = api(d, "POST", "/api/keys", key_body, 201);
	g_autofree char *api_key = g_strdup(testd_str(o, "api_key"));
	json_object_put(o);
	const char *key_secret = strchr(api_key, '.') ? strchr(api_key, '.') + 1 : api_key;

	g_autofree char *worker_extra = g_strdup_printf(
		",\"token\":\"%s\",\"role\":\"worker\",\"metadata\":{\"tags\":[\"%s\"],\"properties\":"
		"{\"gpu\":\"%s\"}}", room_token, META_MARK, META_MARK);
	struct wsc *w = testd_register(d, room, "worker-1", worker_extra);
	g_autofree char *client_extra = g_strdup_printf(",\"api_key\":\"%s\",\"role\":\"client\"", api_key);
	struct wsc *c = testd_register(d, room, "client-1", client_extra);
	wsc_send_text(c, "{\"type\":\"peer_message\",\"to_peer_id\":\"worker-1\",\"payload\":\"" PAYLOAD_MARK "\"}");
	json_object_put(wsc_expect(w, "peer_message"));

	g_autoptr(GString) all = g_string_new(NULL);
	g_autofree char *peers_path = g_strdup_printf("/api/rooms/%s/peers", room);
	const char *paths[] = { "/", "/dashboard.js", "/dashboard.css", "/api/dashboard", "/api/audit",
				peers_path };
	json_object *dash = NULL, *peers = NULL;
	for (size_t i = 0; i < G_N_ELEMENTS(paths); i++) {
		struct httpc_reply r;
		get(d, paths[i], i >= 3, all, &r);
		g_assert_cmpint(r.status, ==, 200);
		if (strcmp(paths[i], "/api/dashboard") == 0)
			dash = json_tokener_parse(r.body->str);
		else if (paths[i] == peers_path)
			peers = json_tokener_parse(r.body->str);
		httpc_reply_clear(&r);
	}
	assert_absent(all, "the admin token", ADMIN);
	assert_absent(all, "a room token", room_token);
	assert_absent(all, "an API key", key_secret);
	assert_absent(all, "a metadata value", META_MARK);
	assert_absent(all, "a payload", PAYLOAD_MARK);
	assert_absent(all, "a client address", "127.0.0.1");

	/* What the page shows is there. */
	g_assert_nonnull(dash);
	json_object *m = json_object_object_get(json_object_object_get(dash, "metrics"), "rtcsignald_peers");
	g_assert_cmpint(json_object_get_int(json_object_object_get(m, "worker")), ==, 1);
	g_assert_cmpint(json_object_get_int(json_object_object_get(m, "client")), ==, 1);
	json_object *rooms = json_object_object_get(dash, "rooms");
	g_assert_cmpuint(json_object_array_length(rooms), ==, 1);
	json_object *r0 = json_object_array_get_idx(rooms, 0);
	g_assert_cmpstr(testd_str(r0, "room_id"), ==, room);
	g_assert_cmpint(json_object_get_int(json_object_object_get(r0, "peers")), ==, 2);
	g_assert_nonnull(testd_str(r0, "expires_at"));
	g_assert_cmpstr(testd_str(dash, "version"), ==, PACKAGE_VERSION);
	g_assert_nonnull(peers);
	json_object *list = json_object_object_get(peers, "peers");
	g_assert_cmpuint(json_object_array_length(list), ==, 2);
	g_assert_cmpstr(testd_str(json_object_array_get_idx(list, 0), "peer_id"), ==, "worker-1");
	g_assert_cmpstr(testd_str(json_object_array_get_idx(list, 0), "role"), ==, "worker");
	json_object_put(dash);
	json_object_put(peers);
	wsc_free(w);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static const char *entry(json_object *audit, size_t i, const char *key)
{
	return testd_str(json_object_array_get_idx(json_object_object_get(audit, "entries"), i), key);
}

/* Each admin action is logged with its event, actor and object, never
 * its secret, and kept (the last [admin] audit_entries) for /api/audit;
 * a deleted room's peers get room_closed before they are closed. */
static void test_audit(void)
{
	struct testd *d = start("audit_entries = 3\n");
	json_object *o = api(d, "GET", "/api/audit", NULL, 200);
	g_assert_cmpuint(json_object_array_length(json_object_object_get(o, "entries")), ==, 0);
	json_object_put(o);

	o = api(d, "POST", "/api/rooms", "{}", 201);
	g_autofree char *room = g_strdup(testd_str(o, "room_id"));
	g_autofree char *room_token = g_strdup(testd_str(o, "token"));
	json_object_put(o);
	g_autofree char *key_body = g_strdup_printf("{\"room_id\":\"%s\"}", room);
	o = api(d, "POST", "/api/keys", key_body, 201);
	g_autofree char *key_id = g_strdup(testd_str(o, "key_id"));
	g_autofree char *api_key = g_strdup(testd_str(o, "api_key"));
	json_object_put(o);
	g_autofree char *key_path = g_strconcat("/api/keys/", key_id, NULL);
	json_object_put(api(d, "DELETE", key_path, NULL, 200));
	g_autofree char *extra = g_strdup_printf(",\"token\":\"%s\"", room_token);
	struct wsc *p = testd_register(d, room, "p1", extra);
	g_autofree char *room_path = g_strconcat("/api/rooms/", room, NULL);
	json_object_put(api(d, "DELETE", room_path, NULL, 200));
	json_object_put(wsc_expect(p, "room_closed"));
	g_assert_cmpint(wsc_wait_close(p, 5000), ==, 1000); /* after room_closed */
	wsc_free(p);

	o = api(d, "GET", "/api/audit", NULL, 200);
	/* Newest first, three kept of four. */
	g_assert_cmpuint(json_object_array_length(json_object_object_get(o, "entries")), ==, 3);
	g_assert_cmpstr(entry(o, 0, "action"), ==, "room_delete");
	g_assert_cmpstr(entry(o, 0, "object"), ==, room);
	g_assert_cmpstr(entry(o, 0, "actor"), ==, "admin-token");
	g_assert_cmpstr(entry(o, 1, "action"), ==, "key_revoke");
	g_assert_cmpstr(entry(o, 1, "object"), ==, key_id);
	g_assert_cmpstr(entry(o, 2, "action"), ==, "key_create");
	g_assert_nonnull(entry(o, 2, "time"));
	json_object_put(o);

	g_assert_true(testd_wait_log_count(d, "event=admin_action", 4, 5000));
	g_autofree char *line = g_strdup_printf("code=room_create actor=admin-token object=%s", room);
	g_assert_true(testd_wait_log(d, line, 5000));
	g_autofree char *log = testd_log_copy(d);
	g_assert_null(strstr(log, room_token));
	g_assert_null(strstr(log, strchr(api_key, '.') ? strchr(api_key, '.') + 1 : api_key));
	g_assert_null(strstr(log, ADMIN));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* One address past [admin] requests_per_second gets 429 with
 * Retry-After, counted; the probes and the scrape are not limited, and
 * the bucket refills. */
static void test_rate_limit(void)
{
	struct testd *d = start("requests_per_second = 2\n");
	unsigned ok = 0, limited = 0;

	/* A burst of twice the rate, then refusals (bounded: the burst is 4). */
	for (int i = 0; i < 12; i++) {
		struct httpc_reply r;
		get(d, i % 2 ? "/" : "/api/dashboard", true, NULL, &r);
		if (r.status == 429) {
			assert_header(&r, "Retry-After", "1");
			limited++;
		} else {
			g_assert_cmpint(r.status, ==, 200);
			ok++;
		}
		httpc_reply_clear(&r);
	}
	g_test_message("%u answered, %u refused", ok, limited);
	g_assert_cmpuint(ok, >=, 4);
	g_assert_cmpuint(ok, <=, 6); /* 4 of burst, and what refilled meanwhile */
	g_assert_cmpuint(limited, >=, 6);
	for (int i = 0; i < 10; i++) {
		struct httpc_reply r;
		get(d, i % 2 ? "/health" : "/ready", false, NULL, &r);
		g_assert_cmpint(r.status, ==, 200);
		httpc_reply_clear(&r);
	}
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_admin_refused_total{reason=\"rate_limited\"}"), ==,
			  limited);
	/* Refilled within a second: allowed again, awaited, not slept. */
	gint64 deadline = g_get_monotonic_time() + 3 * G_USEC_PER_SEC;
	int status = 0;
	while (status != 200 && g_get_monotonic_time() < deadline) {
		struct httpc_reply r;
		get(d, "/api/audit", true, NULL, &r);
		status = r.status;
		httpc_reply_clear(&r);
		if (status != 200)
			g_usleep(100 * 1000);
	}
	g_assert_cmpint(status, ==, 200);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

#define ISS "https://id.example.org/realms/lab"
#define AUD "rtcsignald"

/* A token of SUB in GROUPS (a JSON array), signed by K, expiring at EXP
 * (0: in 600 s). */
#define EMAIL_MARK "ada.EMAIL-MARK-0c4f@example.org"

static char *jwt_for(EVP_PKEY *k, const char *sub, const char *groups, gint64 exp)
{
	json_object *c = jwtmint_claims(ISS, AUD, sub);
	json_object_object_add(c, "email", json_object_new_string(EMAIL_MARK));
	if (groups)
		json_object_object_add(c, "cognito:groups", json_tokener_parse(groups));
	if (exp) {
		json_object_object_add(c, "exp", json_object_new_int64(exp));
		json_object_object_add(c, "iat", json_object_new_int64(exp - 600));
	}
	return jwtmint_token(k, "r1", c);
}

static int jwt_get(struct testd *d, const char *jwt, const char *method, const char *path,
		   char **error)
{
	g_autofree char *h = g_strdup_printf("Authorization: Bearer %s\r\n", jwt);
	struct httpc_reply r;
	g_assert_cmpint(testd_http(d->admin_port, method, path, h, NULL, &r), ==, 0);
	int status = r.status;
	json_object *o = json_tokener_parse(r.body->str);
	if (error)
		*error = g_strdup(o ? testd_str(o, "error") : NULL);
	json_object_put(o);
	httpc_reply_clear(&r);
	return status;
}

/* A room's workers, and every other admin request, for a JWT of a
 * configured issuer whose group claim names [admin] jwt_group; a valid
 * token without it is refused (403), an expired one or a stranger's is
 * not taken (401), each with a message the page shows.  The admin's
 * actions are audited under the token's subject. */
static void test_jwt_admins(void)
{
	EVP_PKEY *key = EVP_RSA_gen(2048), *stranger = EVP_RSA_gen(2048);
	char *jwks = jwtmint_jwks_file(key, "r1");
	g_autofree char *conf = g_strdup_printf("[admin]\ntoken = " ADMIN "\njwt_group = admins\n"
						"[issuer lab]\nissuer = " ISS "\naudience = " AUD
						"\njwks_file = %s\n", jwks);
	struct testd *d = testd_start(conf, NULL);
	json_object *o = api(d, "POST", "/api/rooms", "{}", 201);
	g_autofree char *room = g_strdup(testd_str(o, "room_id"));
	json_object_put(o);
	g_autofree char *peers = g_strdup_printf("/api/rooms/%s/peers", room);
	g_autofree char *admin = jwt_for(key, "sub-ada", "[\"users\",\"admins\"]", 0);
	g_autofree char *user = jwt_for(key, "sub-bob", "[\"users\"]", 0);
	g_autofree char *nogroup = jwt_for(key, "sub-cy", NULL, 0);
	g_autofree char *expired = jwt_for(key, "sub-ada", "[\"admins\"]", g_get_real_time() / G_USEC_PER_SEC - 120);
	g_autofree char *forged = jwt_for(stranger, "sub-eve", "[\"admins\"]", 0);
	char *why = NULL;

	g_assert_cmpint(jwt_get(d, admin, "GET", peers, NULL), ==, 200);
	g_assert_cmpint(jwt_get(d, admin, "GET", "/api/dashboard", NULL), ==, 200);

	/* A peer that came with a JWT (and an e-mail in it): what the
	 * dashboard reads holds neither, nor the admin's JWT. */
	o = api(d, "POST", "/api/rooms", "{}", 201);
	g_autofree char *lab = g_strdup(testd_str(o, "room_id"));
	g_autofree char *lab_extra = g_strdup_printf(",\"token\":\"%s\",\"id_token\":\"%s\",\"role\":\"worker\"",
						     testd_str(o, "token"), user);
	json_object_put(o);
	struct wsc *p = testd_register(d, lab, "w-jwt", lab_extra);
	g_autofree char *lab_peers = g_strdup_printf("/api/rooms/%s/peers", lab);
	const char *reads[] = { "/api/dashboard", "/api/audit", lab_peers };
	for (size_t i = 0; i < G_N_ELEMENTS(reads); i++) {
		g_autofree char *h = g_strdup_printf("Authorization: Bearer %s\r\n", admin);
		struct httpc_reply r;
		g_assert_cmpint(testd_http(d->admin_port, "GET", reads[i], h, NULL, &r), ==, 0);
		g_assert_cmpint(r.status, ==, 200);
		g_assert_null(strstr(r.head->str, EMAIL_MARK));
		g_assert_null(strstr(r.body->str, EMAIL_MARK));
		g_assert_null(strstr(r.body->str, strrchr(user, '.') + 1));
		g_assert_null(strstr(r.body->str, strrchr(admin, '.') + 1));
		g_assert_null(strstr(r.body->str, "127.0.0.1"));
		if (reads[i] == lab_peers)
			g_assert_nonnull(strstr(r.body->str, "\"w-jwt\""));
		httpc_reply_clear(&r);
	}
	wsc_free(p);
	g_assert_cmpint(jwt_get(d, user, "GET", peers, &why), ==, 403);
	g_assert_nonnull(strstr(why, "not an administrator"));
	g_free(why);
	g_assert_cmpint(jwt_get(d, nogroup, "GET", peers, NULL), ==, 403);
	g_assert_cmpint(jwt_get(d, user, "GET", "/api/dashboard", NULL), ==, 403);
	g_assert_cmpint(jwt_get(d, expired, "GET", peers, &why), ==, 401);
	g_assert_nonnull(strstr(why, "expired"));
	g_free(why);
	g_assert_cmpint(jwt_get(d, forged, "GET", peers, NULL), ==, 401);
	g_assert_cmpint(jwt_get(d, "a.b.c", "GET", peers, NULL), ==, 401);

	g_autofree char *room_path = g_strconcat("/api/rooms/", room, NULL);
	g_assert_cmpint(jwt_get(d, user, "DELETE", room_path, NULL), ==, 403);
	g_assert_cmpint(jwt_get(d, admin, "DELETE", room_path, NULL), ==, 200);
	o = api(d, "GET", "/api/audit", NULL, 200);
	g_assert_cmpstr(entry(o, 0, "action"), ==, "room_delete");
	g_assert_cmpstr(entry(o, 0, "actor"), ==, "sub-ada");
	g_assert_cmpstr(entry(o, 1, "actor"), ==, "admin-token");
	json_object_put(o);
	g_autofree char *log = testd_log_copy(d);
	g_assert_null(strstr(log, strrchr(admin, '.')));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	/* Without jwt_group no JWT is an admin's, whatever its claims. */
	g_autofree char *conf2 = g_strdup_printf("[admin]\ntoken = " ADMIN "\n[issuer lab]\nissuer = " ISS
						 "\naudience = " AUD "\njwks_file = %s\n", jwks);
	d = testd_start(conf2, NULL);
	g_assert_cmpint(jwt_get(d, admin, "GET", "/api/dashboard", NULL), ==, 401);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	/* Another claim, as a string: Keycloak's or Auth0's "groups". */
	g_autofree char *conf3 = g_strdup_printf("[admin]\njwt_group = ops\njwt_group_claim = groups\n"
						 "[issuer lab]\nissuer = " ISS "\naudience = " AUD
						 "\njwks_file = %s\n", jwks);
	json_object *c = jwtmint_claims(ISS, AUD, "sub-kc");
	json_object_object_add(c, "groups", json_object_new_string("ops"));
	g_autofree char *kc = jwtmint_token(key, "r1", c);
	g_autofree char *cognito_ops = jwt_for(key, "sub-ada", "[\"ops\"]", 0);
	d = testd_start(conf3, NULL);
	g_assert_cmpint(jwt_get(d, kc, "GET", "/api/dashboard", NULL), ==, 200);
	g_assert_cmpint(jwt_get(d, cognito_ops, "GET", "/api/dashboard", NULL), ==, 403);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	jwtmint_jwks_file_remove(jwks);
	EVP_PKEY_free(key);
	EVP_PKEY_free(stranger);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/dashboard/page", test_page);
	g_test_add_func("/dashboard/no-secrets", test_no_secrets);
	g_test_add_func("/dashboard/audit", test_audit);
	g_test_add_func("/dashboard/rate-limit", test_rate_limit);
	g_test_add_func("/dashboard/jwt-admins", test_jwt_admins);
	return g_test_run();
}
