/* Integration tests: JWT and API-key authentication, persistent rooms and
 * the admin API, against the real daemon.  Keys are generated here and the
 * JWKS written to a file the daemon reads; tokens are minted here. */
#include "ctl/httpc.h"
#include "httpsd.h"
#include "jwtmint.h"
#include "testd.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <signal.h>
#include <string.h>

#define ISS "https://id.example.org/realms/lab"
#define AUD "rtcsignald"
#define ADMIN "admin-secret-for-tests"

static EVP_PKEY *rsa_key, *ec_key, *stranger_key;
static char *jwks_path;

static gint64 now_s(void)
{
	return g_get_real_time() / G_USEC_PER_SEC;
}

static json_object *claims_for(const char *sub)
{
	return jwtmint_claims(ISS, AUD, sub);
}

static char *token_for(const char *sub)
{
	return jwtmint_token(rsa_key, "r1", claims_for(sub));
}

static char *conf(const char *extra)
{
	return g_strdup_printf("[admin]\ntoken = " ADMIN "\n[rooms]\nmax_ttl = 0\n"
			       "[issuer lab]\nissuer = " ISS "\naudience = " AUD "\njwks_file = %s\n%s",
			       jwks_path, extra ? extra : "");
}

static struct testd *start(const char *extra)
{
	g_autofree char *c = conf(extra);
	return testd_start(c, NULL);
}

static json_object *admin(struct testd *d, const char *method, const char *path, const char *body,
			  int want)
{
	return testd_admin_api(d, ADMIN, method, path, body, want);
}

/* A room made through the admin API: its id and token (g_free both). */
static void new_room(struct testd *d, const char *body, char **id, char **token)
{
	json_object *o = admin(d, "POST", "/api/rooms", body ? body : "{}", 201);
	*id = g_strdup(testd_str(o, "room_id"));
	*token = g_strdup(testd_str(o, "token"));
	g_assert_cmpuint(strlen(*id), >=, 16);    /* 64 random bits */
	g_assert_cmpuint(strlen(*token), >=, 32); /* 128 */
	json_object_put(o);
}

static void send_register(struct wsc *c, const char *room, const char *peer, const char *jwt,
			  const char *token)
{
	g_autofree char *tok = token ? g_strdup_printf(",\"token\":\"%s\"", token) : g_strdup("");
	g_autofree char *cred = jwt ? g_strdup_printf(",\"id_token\":\"%s\"", jwt) : g_strdup("");
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"%s\",\"protocol\":\"2.1\"%s%s}",
		  peer, room, tok, cred);
}

/* Registers and expects CODE with REASON (NULL: success). */
static struct wsc *reg_expect(struct testd *d, const char *room, const char *peer, const char *jwt,
			      const char *token, const char *code, const char *reason)
{
	struct wsc *c = testd_connect(d);
	send_register(c, room, peer, jwt, token);
	if (!code) {
		json_object_put(wsc_expect(c, "registered_auth"));
		return c;
	}
	json_object *o = wsc_expect_error(c, code);
	if (reason)
		g_assert_cmpstr(testd_str(o, "reason"), ==, reason);
	json_object_put(o);
	wsc_free(c);
	return NULL;
}

static void test_jwt_registration(void)
{
	struct testd *d = start(NULL);
	g_autofree char *room = NULL, *token = NULL;
	new_room(d, "{\"name\":\"lab\"}", &room, &token);
	g_autofree char *jwt = token_for("ada");
	g_autofree char *ec_jwt = jwtmint_token(ec_key, "e1", claims_for("ada"));

	struct wsc *ok = reg_expect(d, room, "ada-1", jwt, token, NULL, NULL);
	struct wsc *ok_ec = reg_expect(d, room, "ada-2", ec_jwt, token, NULL, NULL);
	reg_expect(d, room, "x", jwt, "wrong-token", "AUTH_FAILED", "Invalid token");
	reg_expect(d, room, "x", jwt, NULL, "AUTH_FAILED", "Room token required");
	reg_expect(d, "no-such-room", "x", jwt, token, "ROOM_NOT_FOUND", "Room not found");
	reg_expect(d, room, "x", NULL, token, "AUTH_REQUIRED", NULL);

	/* Each bad token is refused with its reason, and logged as such. */
	struct {
		const char *what, *log, *reason;
		char *jwt;
	} bad[] = {
		{ "expired", "code=expired", "Token expired",
		  jwtmint_token(rsa_key, "r1", ({ json_object *c = claims_for("ada");
			json_object_object_add(c, "exp", json_object_new_int64(now_s() - 120)); c; })) },
		{ "nbf in the future", "code=not_yet_valid", "Invalid token",
		  jwtmint_token(rsa_key, "r1", ({ json_object *c = claims_for("ada");
			json_object_object_add(c, "nbf", json_object_new_int64(now_s() + 600)); c; })) },
		{ "wrong iss", "code=bad_issuer", "Invalid token",
		  jwtmint_token(rsa_key, "r1", ({ json_object *c = claims_for("ada");
			json_object_object_add(c, "iss", json_object_new_string("https://evil.example")); c; })) },
		{ "wrong aud", "code=bad_audience", "Invalid token",
		  jwtmint_token(rsa_key, "r1", ({ json_object *c = claims_for("ada");
			json_object_object_add(c, "aud", json_object_new_string("someone-else")); c; })) },
		{ "missing exp", "code=missing_exp", "Invalid token",
		  jwtmint_token(rsa_key, "r1", ({ json_object *c = claims_for("ada");
			json_object_object_del(c, "exp"); c; })) },
		{ "unknown kid", "code=unknown_kid", "Invalid token", jwtmint_token(rsa_key, "r9", claims_for("ada")) },
		{ "signed by a stranger", "code=bad_signature", "Invalid token",
		  jwtmint_token(stranger_key, "r1", claims_for("ada")) },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_test_message("bad token: %s", bad[i].what);
		reg_expect(d, room, "x", bad[i].jwt, token, "AUTH_FAILED", bad[i].reason);
		g_assert_true(testd_wait_log(d, bad[i].log, 5000));
	}

	/* alg:none, HS256 keyed with the public key, a tampered payload. */
	g_autofree char *none_header = jwtmint_b64url("{\"alg\":\"none\"}", 15);
	g_autofree char *none = g_strdup_printf("%s.%s.", none_header, strchr(jwt, '.') + 1);
	none[strlen(none) - strlen(strrchr(jwt, '.'))] = '\0'; /* header.payload. */
	g_autofree char *none_tok = g_strconcat(none, ".", NULL);
	reg_expect(d, room, "x", none_tok, token, "AUTH_FAILED", "Invalid token");
	BIO *bio = BIO_new(BIO_s_mem());
	PEM_write_bio_PUBKEY(bio, rsa_key);
	char *pem;
	long pem_len = BIO_get_mem_data(bio, &pem);
	json_object *claims = claims_for("ada");
	g_autofree char *payload = g_strdup(json_object_to_json_string(claims));
	json_object_put(claims);
	g_autofree char *h = jwtmint_b64url("{\"alg\":\"HS256\",\"kid\":\"r1\"}", 26);
	g_autofree char *p = jwtmint_b64url(payload, strlen(payload));
	g_autofree char *input = g_strdup_printf("%s.%s", h, p);
	unsigned char mac[EVP_MAX_MD_SIZE];
	size_t mac_len = sizeof mac;
	g_assert_nonnull(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, pem, (size_t)pem_len,
				   (unsigned char *)input, strlen(input), mac, sizeof mac, &mac_len));
	g_autofree char *sig = jwtmint_b64url(mac, mac_len);
	g_autofree char *hs256 = g_strdup_printf("%s.%s", input, sig);
	BIO_free(bio);
	reg_expect(d, room, "x", hs256, token, "AUTH_FAILED", "Invalid token");
	g_assert_true(testd_wait_log(d, "code=bad_algorithm", 5000));
	g_autofree char *tampered = g_strdup(jwt);
	char *mid = strchr(tampered, '.') + 3;
	*mid = *mid == 'A' ? 'B' : 'A';
	reg_expect(d, room, "x", tampered, token, "AUTH_FAILED", "Invalid token");

	wsc_free(ok);
	wsc_free(ok_ec);
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++)
		g_free(bad[i].jwt);
	g_assert_cmpint(testd_stop(d), ==, 0);
	/* No token or room token ever reaches the log. */
	g_autofree char *log = testd_log_copy(d);
	g_assert_null(strstr(log, token));
	g_assert_null(strstr(log, strrchr(jwt, '.') + 1));
	testd_free(d);
}

static void test_token_use(void)
{
	struct testd *d = start("token_use = id\n");
	g_autofree char *room = NULL, *token = NULL;
	new_room(d, NULL, &room, &token);
	json_object *id = claims_for("ada"), *access = claims_for("ada");
	json_object_object_add(id, "token_use", json_object_new_string("id"));
	json_object_object_add(access, "token_use", json_object_new_string("access"));
	g_autofree char *id_tok = jwtmint_token(rsa_key, "r1", id);
	g_autofree char *access_tok = jwtmint_token(rsa_key, "r1", access);
	wsc_free(reg_expect(d, room, "a", id_tok, token, NULL, NULL));
	reg_expect(d, room, "b", access_tok, token, "AUTH_FAILED", "Invalid token");
	g_assert_true(testd_wait_log(d, "code=bad_token_use", 5000));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_principals(void)
{
	struct testd *d = start(NULL);
	g_autofree char *room = NULL, *token = NULL;
	new_room(d, NULL, &room, &token);
	g_autofree char *ada = token_for("ada"), *bob = token_for("bob");

	struct wsc *first = reg_expect(d, room, "laptop", ada, token, NULL, NULL);
	/* Another user cannot take the id... */
	reg_expect(d, room, "laptop", bob, token, "PEER_ID_TAKEN", NULL);
	/* ...the same user replaces her own session. */
	struct wsc *second = reg_expect(d, room, "laptop", ada, token, NULL, NULL);
	json_object_put(wsc_expect_error(first, "SESSION_REPLACED"));
	g_assert_cmpint(wsc_wait_close(first, WSC_TIMEOUT_MS), ==, 4001);
	wsc_free(first);
	wsc_free(second);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_api_keys(void)
{
	struct testd *d = start(NULL);
	g_autofree char *room = NULL, *token = NULL;
	new_room(d, NULL, &room, &token);
	g_autofree char *body = g_strdup_printf("{\"room_id\":\"%s\",\"name\":\"worker-pool\"}", room);
	json_object *k = admin(d, "POST", "/api/keys", body, 201);
	g_autofree char *key_id = g_strdup(testd_str(k, "key_id")), *secret = g_strdup(testd_str(k, "api_key"));
	json_object_put(k);
	g_assert_true(g_str_has_prefix(secret, key_id));

	/* The key brings its room: no room id, no token. */
	struct wsc *w = testd_connect(d);
	wsc_sendf(w, "{\"type\":\"register\",\"peer_id\":\"w1\",\"role\":\"worker\",\"protocol\":\"2.1\",\"api_key\":\"%s\","
		     "\"metadata\":{\"properties\":{\"gpu\":1}}}", secret);
	json_object *reply = wsc_expect(w, "registered_auth");
	g_assert_cmpstr(testd_str(reply, "room_id"), ==, room);
	json_object_put(reply);
	g_autofree char *ada = token_for("ada");
	struct wsc *other = reg_expect(d, room, "c1", ada, token, NULL, NULL);
	wsc_send_text(other, "{\"type\":\"discover_peers\"}");
	json_object *list = wsc_expect(other, "peer_list");
	g_assert_null(strstr(json_object_to_json_string(list), secret + strlen(key_id) + 1));
	json_object_put(list);

	/* The secret is shown once: not in the listing. */
	json_object *keys = admin(d, "GET", "/api/keys", NULL, 200);
	g_assert_null(strstr(json_object_to_json_string(keys), secret + strlen(key_id) + 1));
	g_assert_nonnull(strstr(json_object_to_json_string(keys), key_id));
	json_object_put(keys);

	struct wsc *bad = testd_connect(d);
	wsc_sendf(bad, "{\"type\":\"register\",\"api_key\":\"%s.0000\"}", key_id);
	json_object *e = wsc_expect_error(bad, "AUTH_FAILED");
	g_assert_cmpstr(testd_str(e, "reason"), ==, "Invalid API key");
	json_object_put(e);
	wsc_free(bad);

	/* Revoked: new registrations refused, and its sessions end. */
	g_autofree char *path = g_strdup_printf("/api/keys/%s", key_id);
	json_object_put(admin(d, "DELETE", path, NULL, 200));
	e = wsc_expect_error(w, "AUTH_FAILED");
	g_assert_cmpstr(testd_str(e, "message"), ==, "Token revoked");
	json_object_put(e);
	g_assert_cmpint(wsc_wait_close(w, WSC_TIMEOUT_MS), ==, 1008);
	wsc_free(w);
	bad = testd_connect(d);
	wsc_sendf(bad, "{\"type\":\"register\",\"api_key\":\"%s\"}", secret);
	e = wsc_expect_error(bad, "AUTH_FAILED");
	g_assert_cmpstr(testd_str(e, "reason"), ==, "Token revoked");
	json_object_put(e);
	wsc_free(bad);
	json_object_put(admin(d, "DELETE", "/api/keys/0000000000000000", NULL, 404));
	/* Bodies are small JSON objects: 64 KiB at most. */
	GString *big = g_string_new("{\"name\":\"");
	while (big->len < 70000)
		g_string_append_c(big, 'x');
	g_string_append(big, "\"}");
	json_object_put(admin(d, "POST", "/api/rooms", big->str, 413));
	g_string_free(big, TRUE);
	/* A wrong method names the right ones. */
	const char *allowed[][3] = { { "PUT", "/api/rooms", "GET, POST" }, { "GET", "/api/keys/x", "DELETE" } };
	for (size_t i = 0; i < G_N_ELEMENTS(allowed); i++) {
		struct httpc_reply r;
		g_assert_cmpint(testd_http(d->admin_port, allowed[i][0], allowed[i][1],
					     "Authorization: Bearer " ADMIN "\r\n", NULL, &r), ==, 0);
		g_assert_cmpint(r.status, ==, 405);
		g_autofree char *allow = httpc_header(&r, "allow");
		g_assert_cmpstr(allow, ==, allowed[i][2]);
		httpc_reply_clear(&r);
	}

	/* A lifetime past 68 years would overflow the expiry time. */
	g_autofree char *forever = g_strdup_printf("{\"room_id\":\"%s\",\"expires_in\":9223372036854775807}", room);
	json_object_put(admin(d, "POST", "/api/keys", forever, 400));

	/* An expiring key stops working at its time. */
	g_autofree char *body2 = g_strdup_printf("{\"room_id\":\"%s\",\"expires_in\":1}", room);
	k = admin(d, "POST", "/api/keys", body2, 201);
	g_autofree char *short_lived = g_strdup(testd_str(k, "api_key"));
	json_object_put(k);
	gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
	bool expired = false;
	while (!expired && g_get_monotonic_time() < deadline) {
		struct wsc *c = testd_connect(d);
		wsc_sendf(c, "{\"type\":\"register\",\"api_key\":\"%s\"}", short_lived);
		json_object *o = wsc_recv_json(c);
		expired = g_strcmp0(testd_str(o, "reason"), "Token expired") == 0;
		json_object_put(o);
		wsc_free(c);
	}
	g_assert_true(expired);

	wsc_free(other);
	g_assert_cmpint(testd_stop(d), ==, 0);
	g_autofree char *log = testd_log_copy(d);
	g_assert_null(strstr(log, secret + strlen(key_id) + 1));
	testd_free(d);
}

static void test_room_persists(void)
{
	struct testd *d = start(NULL);
	g_autofree char *room = NULL, *token = NULL;
	new_room(d, "{\"name\":\"durable\",\"max_peers\":3}", &room, &token);
	g_autofree char *state = g_build_filename(d->dir, "state", NULL);
	g_autofree char *keep = g_dir_make_tmp("state-XXXXXX", NULL);
	g_assert_cmpint(testd_stop(d), ==, 0);
	g_autofree char *mv = g_strdup_printf("cp -a %s/. %s/", state, keep);
	g_assert_true(g_spawn_command_line_sync(mv, NULL, NULL, NULL, NULL));
	testd_free(d);

	/* A new daemon on the same state directory knows the room. */
	g_autofree char *c = conf(NULL);
	const char *args[] = { "--state-dir", keep, NULL };
	d = testd_start(c, args);
	g_assert_true(testd_wait_log(d, "1 rooms, 0 API keys", 0));
	g_autofree char *ada = token_for("ada");
	wsc_free(reg_expect(d, room, "back", ada, token, NULL, NULL));
	json_object *rooms = admin(d, "GET", "/api/rooms", NULL, 200);
	json_object *r0 = json_object_array_get_idx(json_object_object_get(rooms, "rooms"), 0);
	g_assert_cmpstr(testd_str(r0, "room_id"), ==, room);
	g_assert_cmpstr(testd_str(r0, "name"), ==, "durable");
	g_assert_cmpint(json_object_get_int(json_object_object_get(r0, "max_peers")), ==, 3);
	g_assert_null(strstr(json_object_to_json_string(rooms), token));
	json_object_put(rooms);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_autofree char *rm = g_strdup_printf("rm -rf %s", keep);
	g_spawn_command_line_sync(rm, NULL, NULL, NULL, NULL);
}

static void test_expiry_and_delete(void)
{
	struct testd *d = start(NULL);
	g_autofree char *room = NULL, *token = NULL, *gone = NULL, *gone_token = NULL;
	new_room(d, "{\"expires_in\":2}", &room, &token);
	new_room(d, NULL, &gone, &gone_token);
	g_autofree char *jwt = token_for("ada");
	struct wsc *a = reg_expect(d, room, "a", jwt, token, NULL, NULL);
	struct wsc *b = reg_expect(d, gone, "b", jwt, gone_token, NULL, NULL);

	/* Expiry while connected: room_closed, then the session ends. */
	json_object *closed = wsc_expect(a, "room_closed");
	g_assert_cmpstr(testd_str(closed, "room_id"), ==, room);
	g_assert_cmpstr(testd_str(closed, "reason"), ==, "expired");
	json_object_put(closed);
	g_assert_cmpint(wsc_wait_close(a, WSC_TIMEOUT_MS), ==, 1000);
	wsc_free(a);
	reg_expect(d, room, "late", jwt, token, "ROOM_EXPIRED", "Room expired");

	/* Deleted through the admin API: the same, with reason deleted. */
	g_autofree char *path = g_strdup_printf("/api/rooms/%s", gone);
	json_object *del = admin(d, "DELETE", path, NULL, 200);
	g_assert_cmpint(json_object_get_int(json_object_object_get(del, "peers_closed")), ==, 1);
	json_object_put(del);
	closed = wsc_expect(b, "room_closed");
	g_assert_cmpstr(testd_str(closed, "reason"), ==, "deleted");
	json_object_put(closed);
	g_assert_cmpint(wsc_wait_close(b, WSC_TIMEOUT_MS), ==, 1000);
	wsc_free(b);
	reg_expect(d, gone, "late", jwt, gone_token, "ROOM_NOT_FOUND", NULL);
	json_object_put(admin(d, "DELETE", path, NULL, 404));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_room_max_peers(void)
{
	struct testd *d = start(NULL);
	g_autofree char *room = NULL, *token = NULL;
	new_room(d, "{\"max_peers\":1}", &room, &token);
	g_autofree char *jwt = token_for("ada");
	struct wsc *a = reg_expect(d, room, "a", jwt, token, NULL, NULL);
	reg_expect(d, room, "b", jwt, token, "ROOM_FULL", "Room is full");
	wsc_free(a);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_ttl_rules(void)
{
	struct testd *d = testd_start("[admin]\ntoken = " ADMIN "\n[rooms]\ndefault_ttl = 60\nmax_ttl = 120\n", NULL);
	json_object *o = admin(d, "POST", "/api/rooms", "{}", 201);
	gint64 exp = json_object_get_int64(json_object_object_get(o, "expires_at"));
	g_assert_cmpint(exp, >=, now_s() + 55);
	g_assert_cmpint(exp, <=, now_s() + 65);
	json_object_put(o);
	json_object_put(admin(d, "POST", "/api/rooms", "{\"expires_in\":500}", 400));
	json_object_put(admin(d, "POST", "/api/rooms", "{\"expires_in\":0}", 400));
	json_object_put(admin(d, "POST", "/api/rooms", "{\"max_peers\":0}", 400));
	json_object_put(admin(d, "POST", "/api/rooms", "not json", 400));
	json_object_put(admin(d, "POST", "/api/keys", "{\"room_id\":\"nope\"}", 404));
	json_object_put(admin(d, "POST", "/api/keys", "{}", 400));
	json_object_put(admin(d, "PUT", "/api/rooms", "{}", 405));
	json_object_put(admin(d, "GET", "/api/nothing", NULL, 404));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_admin_auth(void)
{
	struct testd *d = start("[admin]\nmetrics_token = scrape-me\n");
	struct httpc_reply r;
	struct {
		const char *headers;
		int status;
	} cases[] = {
		{ NULL, 401 },
		{ "Authorization: Bearer wrong\r\n", 401 },
		{ "Authorization: Basic " ADMIN "\r\n", 401 },
		{ "Authorization: Bearer " ADMIN "\r\n", 200 },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_assert_cmpint(testd_http(d->admin_port, "GET", "/api/rooms", cases[i].headers, NULL, &r), ==, 0);
		g_assert_cmpint(r.status, ==, cases[i].status);
		if (r.status == 401) {
			g_autofree char *www = httpc_header(&r, "www-authenticate");
			g_assert_cmpstr(www, ==, "Bearer");
		}
		httpc_reply_clear(&r);
	}
	g_assert_cmpint(testd_http(d->admin_port, "GET", "/metrics", NULL, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 401);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->admin_port, "GET", "/metrics", "Authorization: Bearer scrape-me\r\n",
				     NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 200);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->admin_port, "GET", "/health", NULL, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 200); /* health stays open for probes */
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	/* No admin token configured: the API is off. */
	d = testd_start(NULL, NULL);
	g_assert_cmpint(testd_http(d->admin_port, "GET", "/api/rooms", "Authorization: Bearer x\r\n", NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 403);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_create_room_http_and_ws(void)
{
	struct testd *d = start(NULL);
	g_autofree char *jwt = token_for("ada");
	g_autofree char *bearer = g_strdup_printf("Authorization: Bearer %s\r\nContent-Type: application/json\r\n", jwt);
	struct httpc_reply r;

	/* POST /create-room on the WebSocket port, with a JWT. */
	g_assert_cmpint(testd_http(d->port, "POST", "/create-room", NULL, "{}", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 401);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->port, "POST", "/create-room", "Authorization: Bearer nonsense\r\n", "", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 401);
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->port, "POST", "/create-room", bearer, "{\"expires_in\":-1}", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 400);
	httpc_reply_clear(&r);
	/* Too large a body, in many chunks: answered once, 413. */
	GString *huge = g_string_new("{\"name\":\"");
	while (huge->len < 200000)
		g_string_append_c(huge, 'x');
	g_string_append(huge, "\"}");
	g_assert_cmpint(testd_http(d->port, "POST", "/create-room", bearer, huge->str, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 413);
	httpc_reply_clear(&r);
	g_string_free(huge, TRUE);
	/* One object and nothing after it. */
	g_assert_cmpint(testd_http(d->port, "POST", "/create-room", bearer, "{\"expires_in\":60}xyz", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 400);
	g_assert_cmpstr(r.body->str, ==, "{\"error\":\"the body must be a JSON object\"}");
	httpc_reply_clear(&r);
	g_assert_cmpint(testd_http(d->port, "POST", "/create-room", bearer,
				     "{\"expires_in\":600,\"open_to_issuer\":true}", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 201);
	json_object *o = json_tokener_parse(r.body->str);
	httpc_reply_clear(&r);
	g_autofree char *room = g_strdup(testd_str(o, "room_id")), *token = g_strdup(testd_str(o, "token"));
	g_assert_cmpint(json_object_get_int64(json_object_object_get(o, "expires_at")), >, now_s() + 590);
	json_object_put(o);

	/* The creator joins with the token; the room is open to the issuer,
	 * so another user of it joins without one; a stranger cannot. */
	struct wsc *a = reg_expect(d, room, "ada", jwt, token, NULL, NULL);
	g_autofree char *bob = token_for("bob");
	struct wsc *b = reg_expect(d, room, "bob", bob, NULL, NULL, NULL);
	reg_expect(d, room, "eve", NULL, NULL, "AUTH_REQUIRED", NULL);

	/* create_room over WebSocket from the JWT session. */
	wsc_send_text(a, "{\"type\":\"create_room\",\"expires_in\":300,\"max_peers\":4}");
	o = wsc_expect(a, "room_created");
	g_autofree char *room2 = g_strdup(testd_str(o, "room_id")), *token2 = g_strdup(testd_str(o, "token"));
	json_object_put(o);
	wsc_free(reg_expect(d, room2, "ada-2", jwt, token2, NULL, NULL));
	reg_expect(d, room2, "bob-2", bob, NULL, "AUTH_FAILED", "Room token required"); /* not open */
	wsc_send_text(b, "{\"type\":\"create_room\",\"expires_in\":-5}");
	json_object_put(wsc_expect_error(b, "INVALID_MESSAGE"));
	wsc_send_text(b, "{\"type\":\"create_room\",\"expires_in\":9223372036854775807}");
	json_object_put(wsc_expect_error(b, "INVALID_MESSAGE"));

	/* A 426 for anything else on that port. */
	g_assert_cmpint(testd_http(d->port, "GET", "/create-room", NULL, NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 426);
	httpc_reply_clear(&r);
	wsc_free(a);
	wsc_free(b);
	g_assert_cmpint(testd_stop(d), ==, 0);
	g_autofree char *log = testd_log_copy(d);
	g_assert_null(strstr(log, token));
	g_assert_null(strstr(log, token2));
	testd_free(d);
}

/* A key for ROOM (EXPIRES_IN 0: none): its secret. */
static char *mint_key(struct testd *d, const char *room, int expires_in)
{
	g_autofree char *body = expires_in ? g_strdup_printf("{\"room_id\":\"%s\",\"expires_in\":%d}", room, expires_in)
					   : g_strdup_printf("{\"room_id\":\"%s\"}", room);
	json_object *k = admin(d, "POST", "/api/keys", body, 201);
	char *secret = g_strdup(testd_str(k, "api_key"));
	json_object_put(k);
	return secret;
}

/* Whether authentication is on is the configuration's to say, never the
 * keys': minting, expiring or revoking one does not switch it, and the
 * mode is logged at start and on reload. */
static void test_auth_mode_is_configured(void)
{
#define MODE_CONF "[admin]\ntoken = " ADMIN "\n[limits]\nregistrations_per_address_per_minute = 0\n"
	struct testd *d = testd_start(MODE_CONF, NULL);
	g_assert_true(testd_wait_log(d, "authentication is off", WSC_TIMEOUT_MS));
	wsc_free(testd_register(d, "adhoc", "early", NULL)); /* open mode */
	g_autofree char *room = NULL, *token = NULL;
	new_room(d, NULL, &room, &token);
	/* A persistent room wants its token even in open mode. */
	reg_expect(d, room, "x", NULL, "wrong", "AUTH_FAILED", "Invalid token");
	wsc_free(reg_expect(d, room, "y", NULL, token, NULL, NULL));
	/* A key minted in open mode admits to its room, but is not required
	 * and does not turn authentication on. */
	g_autofree char *key = mint_key(d, room, 0);
	g_assert_true(testd_wait_log(d, "created while authentication is off", WSC_TIMEOUT_MS));
	wsc_free(testd_register(d, "adhoc", "late", NULL));
	struct wsc *k = testd_connect(d);
	wsc_sendf(k, "{\"type\":\"register\",\"api_key\":\"%s\"}", key);
	json_object_put(wsc_expect(k, "registered_auth"));
	wsc_free(k);

	/* Required by the configuration alone, with no issuer: no key at all
	 * yet is needed for that, and none expiring turns it off. */
	testd_write_conf(d, MODE_CONF "[server]\nrequire_auth = true\n");
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log(d, "authentication: required", WSC_TIMEOUT_MS));
	reg_expect(d, "adhoc", "later", NULL, NULL, "AUTH_REQUIRED", "Authentication required");
	g_autofree char *short_lived = mint_key(d, room, 1);
	g_autofree char *path = g_strdup_printf("/api/keys/%.*s", (int)strcspn(key, "."), key);
	json_object_put(admin(d, "DELETE", path, NULL, 200));
	/* Once the short-lived key has expired no key is valid: still on. */
	gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
	bool expired = false;
	while (!expired && g_get_monotonic_time() < deadline) {
		struct wsc *c = testd_connect(d);
		wsc_sendf(c, "{\"type\":\"register\",\"api_key\":\"%s\"}", short_lived);
		json_object *o = wsc_recv_json(c);
		expired = g_strcmp0(testd_str(o, "reason"), "Token expired") == 0;
		json_object_put(o);
		wsc_free(c);
	}
	g_assert_true(expired);
	reg_expect(d, "adhoc", "latest", NULL, NULL, "AUTH_REQUIRED", "Authentication required");
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Key sets from jwks_url, served by a real HTTPS server with a CA of the
 * test's own: fetched without a restart when a token names a new key, and
 * not refetched at every unknown kid. */
static void test_jwks_url(void)
{
	struct httpsd *h = httpsd_start();
	g_autofree char *conf = g_strdup_printf(
		"[admin]\ntoken = " ADMIN "\n[rooms]\nmax_ttl = 0\n[issuer lab]\nissuer = " ISS
		"\naudience = " AUD "\njwks_url = https://127.0.0.1:%d/lab.json\njwks_ca_file = %s\n",
		h->port_good, h->ca_file);
	struct testd *d = testd_start(conf, NULL);
	g_autofree char *room = NULL, *room_token = NULL;
	EVP_PKEY *rotated = EVP_RSA_gen(2048);

	/* Nothing served yet: the daemon says it is not ready, and why. */
	g_assert_true(testd_wait_log(d, "lab.json: HTTP status 404; no keys yet", 10000));
	testd_expect_ready(d, 503, "key set");
	new_room(d, NULL, &room, &room_token);

	/* Once the key set is there, a token finds its key: having none at
	 * all, the daemon fetches at once, and the register waits for it. */
	g_autofree char *doc1 = jwtmint_key_set(rsa_key, "r1", NULL, NULL);
	httpsd_put(h, "lab.json", doc1, strlen(doc1));
	g_autofree char *jwt1 = token_for("ada");
	wsc_free(reg_expect(d, room, "ada", jwt1, room_token, NULL, NULL));
	testd_expect_ready(d, 200, NULL);

	/* Rotation: the issuer starts signing with a new key and serves it;
	 * its first token is accepted, without a restart or a reload. */
	g_autofree char *doc2 = jwtmint_key_set(rsa_key, "r1", rotated, "r2");
	httpsd_put(h, "lab.json", doc2, strlen(doc2));
	g_autofree char *jwt2 = jwtmint_token(rotated, "r2", claims_for("bob"));
	wsc_free(reg_expect(d, room, "bob", jwt2, room_token, NULL, NULL));
	g_assert_true(testd_wait_log(d, "a token names an unknown key", 1000));

	/* Then the identity provider serves garbage, and a kid it does not
	 * have comes: one fetch, which fails; the keys in hand stay, and for
	 * jwks_refresh_min (30 s) no unknown kid fetches again. */
	const char *ok = "rtcsignald_jwks_fetches_total{result=\"ok\"}";
	const char *failed = "rtcsignald_jwks_fetches_total{result=\"error\"}";
	double n_ok = testd_metric(d, ok), n_failed = testd_metric(d, failed);
	httpsd_put(h, "lab.json", "not json", 8);
	g_autofree char *jwt3 = jwtmint_token(stranger_key, "r3", claims_for("eve"));
	for (int i = 0; i < 4; i++)
		reg_expect(d, room, "eve", jwt3, room_token, "AUTH_FAILED", "Invalid token");
	g_assert_cmpfloat(testd_metric(d, failed), ==, n_failed + 1);
	g_assert_cmpfloat(testd_metric(d, ok), ==, n_ok);
	g_assert_true(testd_wait_log_count(d, "code=unknown_kid", 4, 1000));
	g_assert_cmpuint(testd_log_count(d, "code=unknown_kid"), ==, 4);
	wsc_free(reg_expect(d, room, "ada-2", jwt1, room_token, NULL, NULL));

	/* A reload keeps a key set whose URL did not change. */
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log(d, "configuration reloaded", 5000));
	wsc_free(reg_expect(d, room, "bob-2", jwt2, room_token, NULL, NULL));
	testd_expect_ready(d, 200, NULL);

	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	httpsd_stop(h);
	EVP_PKEY_free(rotated);
}

/* More key sets than fetches run at once (FETCH_MAX_IN_FLIGHT, 4): the
 * others wait their turn, which is no failure. */
static void test_many_key_sets(void)
{
	enum { N = 6 };
	struct httpsd *h = httpsd_start();
	g_autoptr(GString) conf = g_string_new(NULL);
	g_autofree char *doc = jwtmint_key_set(rsa_key, "k", NULL, NULL);

	for (int i = 0; i < N; i++) {
		g_autofree char *name = g_strdup_printf("i%d.json", i);
		httpsd_put(h, name, doc, strlen(doc));
		g_string_append_printf(conf,
				       "[issuer i%d]\nissuer = https://i%d.example\naudience = " AUD
				       "\njwks_url = https://127.0.0.1:%d/%s\njwks_ca_file = %s\n",
				       i, i, h->port_good, name, h->ca_file);
	}
	struct testd *d = testd_start(conf->str, NULL);
	g_assert_true(testd_wait_log_count(d, ": 1 keys", N, 10000));
	testd_expect_ready(d, 200, NULL);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_jwks_fetches_total{result=\"error\"}"), ==, 0);
	g_assert_cmpuint(testd_log_count(d, "busy"), ==, 0);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	httpsd_stop(h);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	rsa_key = EVP_RSA_gen(2048);
	ec_key = EVP_EC_gen("P-256");
	stranger_key = EVP_RSA_gen(2048);
	g_autofree char *j1 = jwtmint_jwk(rsa_key, "r1", "");
	g_autofree char *j2 = jwtmint_jwk(ec_key, "e1", "");
	g_autofree char *doc = g_strdup_printf("{\"keys\":[%s,%s]}", j1, j2);
	g_autofree char *dir = g_dir_make_tmp("jwks-XXXXXX", NULL);
	jwks_path = g_build_filename(dir, "jwks.json", NULL);
	g_assert_true(g_file_set_contents(jwks_path, doc, -1, NULL));

	g_test_add_func("/auth/jwt-registration", test_jwt_registration);
	g_test_add_func("/auth/token-use", test_token_use);
	g_test_add_func("/auth/principals", test_principals);
	g_test_add_func("/auth/api-keys", test_api_keys);
	g_test_add_func("/auth/room-persists", test_room_persists);
	g_test_add_func("/auth/expiry-and-delete", test_expiry_and_delete);
	g_test_add_func("/auth/room-max-peers", test_room_max_peers);
	g_test_add_func("/auth/ttl-rules", test_ttl_rules);
	g_test_add_func("/auth/admin-auth", test_admin_auth);
	g_test_add_func("/auth/create-room", test_create_room_http_and_ws);
	g_test_add_func("/auth/many-key-sets", test_many_key_sets);
	g_test_add_func("/auth/auth-mode-is-configured", test_auth_mode_is_configured);
	g_test_add_func("/auth/jwks-url", test_jwks_url);
	int r = g_test_run();
	unlink(jwks_path);
	rmdir(dir);
	g_free(jwks_path);
	EVP_PKEY_free(rsa_key);
	EVP_PKEY_free(ec_key);
	EVP_PKEY_free(stranger_key);
	return r;
}
