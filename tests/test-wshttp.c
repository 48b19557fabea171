/* Integration tests: plain HTTP on the WebSocket port (issue 19).  Every
 * request gets an answer; POST /delete-peer and /delete-peers-and-room
 * answer 200 and change nothing; Ed25519 public keys are published with
 * a JWT or an account key and listed for a room with a credential valid
 * for it (room members included), and survive a restart. */
#include "jwtmint.h"
#include "testd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ISS "https://id.example.org/realms/lab"
#define ISS2 "https://other.example.org"
#define AUD "rtcsignald"
#define ADMIN "admin-secret-for-tests"

static EVP_PKEY *key;
static char *jwks_path;

static char *token_from(const char *iss, const char *sub)
{
	return jwtmint_token(key, "k1", jwtmint_claims(iss, AUD, sub));
}

static char *token_for(const char *sub)
{
	return token_from(ISS, sub);
}

static char *conf_text(const char *extra)
{
	return g_strdup_printf("[admin]\ntoken = " ADMIN "\n[rooms]\nmax_ttl = 0\n"
			       "[issuer lab]\nissuer = " ISS "\naudience = " AUD "\njwks_file = %s\n"
			       "[issuer other]\nissuer = " ISS2 "\naudience = " AUD "\njwks_file = %s\n%s",
			       jwks_path, jwks_path, extra ? extra : "");
}

static struct testd *start_auth(const char *extra)
{
	g_autofree char *c = conf_text(extra);
	return testd_start(c, NULL);
}

static int tcp_to(struct testd *d)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)d->port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	g_assert_cmpint(fd, >=, 0);
	g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	return fd;
}

static void send_all(int fd, const char *text)
{
	size_t len = strlen(text);
	g_assert_cmpint(send(fd, text, len, MSG_NOSIGNAL), ==, (ssize_t)len);
}

/* Reads FD until the server closes it (0; -ECONNRESET for a reset), or
 * until OUT holds N answers' status lines and nothing more comes for
 * QUIET_MS (1), or TIMEOUT_MS pass (-ETIMEDOUT). */
static int read_answers(int fd, unsigned n, int timeout_ms, GString *out)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	char buf[4096];

	for (;;) {
		unsigned seen = 0;
		for (const char *p = out->str; (p = strstr(p, "HTTP/1.1 ")); p++)
			seen++;
		int left = (int)((deadline - g_get_monotonic_time()) / 1000);
		if (seen >= n && left > 200)
			left = 200;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, left) == 0)
			return seen >= n ? 1 : -ETIMEDOUT;
		ssize_t r = recv(fd, buf, sizeof buf, 0);
		if (r == 0)
			return 0;
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		g_string_append_len(out, buf, r);
	}
}

static unsigned count_answers(const char *text, const char *status_line)
{
	unsigned n = 0;
	for (const char *p = text; (p = strstr(p, status_line)); p++)
		n++;
	return n;
}

/* Sends RAW on a fresh connection; the answers until the server closes
 * or goes quiet after N of them. */
static GString *exchange(struct testd *d, const char *raw, unsigned n, int *how)
{
	GString *out = g_string_new(NULL);
	int fd = tcp_to(d);
	send_all(fd, raw);
	*how = read_answers(fd, n, 10000, out);
	close(fd);
	return out;
}

static unsigned ws_http(struct testd *d, const char *method, const char *path, const char *bearer,
			const char *body, json_object **json)
{
	g_autofree char *h = bearer ? g_strdup_printf("Authorization: Bearer %s\r\n", bearer) : NULL;
	struct httpc_reply r;

	g_assert_cmpint(testd_http(d->port, method, path, h, body, &r), ==, 0);
	unsigned status = r.status;
	if (json) {
		*json = json_tokener_parse(r.body->str);
		g_assert_nonnull(*json);
	}
	httpc_reply_clear(&r);
	return status;
}

/* sleap-rtc's exits: POST /delete-peer and /delete-peers-and-room answer
 * 200 and unroute nothing; a registered peer stays reachable. */
static void test_delete_peer(void)
{
	struct testd *d = testd_start(NULL, NULL); /* open mode */
	struct wsc *a = testd_register(d, "lab", "worker-1", ",\"role\":\"worker\"");
	struct wsc *b = testd_register(d, "lab", "alice", NULL);
	json_object *o, *v;

	for (int i = 0; i < 2; i++) {
		const char *path = i ? "/delete-peers-and-room" : "/delete-peer";
		g_assert_cmpuint(ws_http(d, "POST", path, NULL, "{\"peer_id\":\"worker-1\"}", &o), ==, 200);
		g_assert_true(json_object_object_get_ex(o, "status", &v));
		g_assert_cmpstr(json_object_get_string(v), ==, "ignored");
		json_object_put(o);
		g_assert_cmpuint(ws_http(d, "POST", path, NULL, "{\"room_id\":\"lab\"}", NULL), ==, 200);
		/* A body that is no JSON at all: still answered. */
		g_assert_cmpuint(ws_http(d, "POST", path, NULL, "not json", NULL), ==, 200);
	}
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_http_deletes_ignored_total"), ==, 6);
	wsc_sendf(b, "{\"type\":\"offer\",\"target\":\"worker-1\",\"sdp\":\"x\"}");
	o = wsc_expect(a, "offer");
	json_object_put(o);
	wsc_sendf(b, "{\"type\":\"discover_peers\",\"filters\":{\"role\":\"worker\"}}");
	o = wsc_expect(b, "peer_list");
	g_assert_nonnull(strstr(json_object_to_json_string(o), "worker-1"));
	json_object_put(o);
	wsc_free(a);
	wsc_free(b);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Every request shape gets an answer, and the connection is closed when
 * and only when the answer says so. */
static void test_every_request_answered(void)
{
	struct testd *d = start_auth(NULL);
	int how;

	/* GET: 426, kept alive. */
	g_autoptr(GString) a = exchange(d, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1, &how);
	g_assert_cmpint(how, ==, 1);
	g_assert_true(g_str_has_prefix(a->str, "HTTP/1.1 426"));
	/* A POST with a body to a path that is not ours: 426 after the body. */
	g_autoptr(GString) b = exchange(d, "POST /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}",
					1, &how);
	g_assert_cmpint(how, >=, 0);
	g_assert_true(g_str_has_prefix(b->str, "HTTP/1.1 426"));
	/* HEAD: the status and headers. */
	g_autoptr(GString) c = exchange(d, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 1, &how);
	g_assert_cmpint(how, >=, 0);
	g_assert_true(g_str_has_prefix(c->str, "HTTP/1.1 426"));
	/* Pipelined requests without bodies: each is answered in turn. */
	g_autoptr(GString) e = exchange(d, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n"
					"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", 3, &how);
	g_assert_cmpint(how, ==, 1);
	g_assert_cmpuint(count_answers(e->str, "HTTP/1.1 426"), ==, 3);
	/* A POST then a GET, pipelined: the POST is answered and says the
	 * connection ends (so the client knows the GET was not read) or both
	 * are answered. */
	g_autoptr(GString) f = exchange(d, "POST /delete-peer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
					"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 2, &how);
	g_assert_true(g_str_has_prefix(f->str, "HTTP/1.1 200"));
	g_assert_true(count_answers(f->str, "HTTP/1.1 ") == 2 ||
		      (how == 0 && strcasestr(f->str, "\r\nconnection: close\r\n")));
	/* POSTs without a body (Content-Length: 0, or none) and one with, a
	 * request pipelined behind: one completion each (a create-room runs
	 * once).  Without a body the connection is kept and the next
	 * request answered (but after /create-room, which is one request
	 * per connection); with one it is closed. */
	g_autofree char *ada = token_for("ada");
	g_autofree char *k = g_strdup("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE");
	char *posts[] = {
		g_strdup("POST /delete-peer HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
		g_strdup("POST /delete-peer HTTP/1.1\r\nHost: x\r\n\r\n"),
		g_strdup_printf("POST /create-room HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", ada),
		g_strdup_printf("POST /create-room HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
				"Content-Length: 0\r\n\r\n", ada),
		g_strdup_printf("POST /api/auth/public-keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
				"Content-Length: %zu\r\n\r\n{\"public_key\":\"%s\"}", ada, strlen(k) + 17, k),
	};
	const char *want[] = { "HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 201", "HTTP/1.1 201", "HTTP/1.1 201" };
	/* (lws takes what follows a POST without Content-Length for its
	 * body: the GET is not read, and the connection ends.) */
	const bool kept[] = { true, false, false, false, false };
	for (size_t n = 0; n < G_N_ELEMENTS(posts); n++) {
		g_autofree char *raw = g_strconcat(posts[n], "GET / HTTP/1.1\r\nHost: x\r\n\r\n", NULL);
		g_autoptr(GString) p = exchange(d, raw, 2, &how);
		g_assert_true(g_str_has_prefix(p->str, want[n]));
		if (kept[n]) {
			g_assert_cmpint(how, ==, 1);
			g_assert_cmpuint(count_answers(p->str, "HTTP/1.1 426"), ==, 1);
		} else {
			g_assert_cmpint(how, ==, 0);
			g_assert_cmpuint(count_answers(p->str, "HTTP/1.1 "), ==, 1);
			g_assert_nonnull(strcasestr(p->str, "\r\nconnection: close\r\n"));
		}
		g_free(posts[n]);
	}
	g_assert_true(testd_wait_log_count(d, "room created by", 2, 5000));
	g_assert_cmpuint(testd_log_count(d, "room created by"), ==, 2);
	/* (Chunked request bodies are not tested: lws 4.1's parser drops
	 * such a connection before the daemon sees the request.) */
	/* Over the body bound: 413, and the connection ends. */
	g_autofree char *big = g_strdup_printf("POST /delete-peer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%0*d",
					       70000, 70000, 0);
	g_autoptr(GString) i = exchange(d, big, 1, &how);
	g_assert_true(g_str_has_prefix(i->str, "HTTP/1.1 413"));
	g_assert_cmpint(how, ==, 0);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* A raw 32-byte key as base64url without padding: SEED repeated. */
static char *pubkey_text(unsigned char seed)
{
	unsigned char raw[32];
	memset(raw, seed, sizeof raw);
	g_autofree char *b = g_base64_encode(raw, sizeof raw);
	b[43] = '\0';
	g_strdelimit(b, "+", '-');
	g_strdelimit(b, "/", '_');
	return g_strdup(b);
}

static unsigned publish(struct testd *d, const char *bearer, const char *pub, const char *device)
{
	g_autofree char *body = g_strdup_printf("{\"public_key\":\"%s\",\"device_name\":\"%s\"}", pub, device);
	return ws_http(d, "POST", "/api/auth/public-keys", bearer, body, NULL);
}

static char *create_room(struct testd *d, const char *jwt, bool open)
{
	json_object *o, *v;
	g_assert_cmpuint(ws_http(d, "POST", "/create-room", jwt, open ? "{\"open_to_issuer\":true}" : "{}", &o),
			 ==, 201);
	g_assert_true(json_object_object_get_ex(o, "room_id", &v));
	char *id = g_strdup(json_object_get_string(v));
	json_object_put(o);
	return id;
}

static char *api_key_for(struct testd *d, const char *room)
{
	g_autofree char *body = g_strdup_printf("{\"room_id\":\"%s\"}", room);
	struct httpc_reply r;
	json_object *v;
	g_assert_cmpint(testd_http(d->admin_port, "POST", "/api/keys", "Authorization: Bearer " ADMIN "\r\n", body, &r),
			==, 0);
	g_assert_cmpint(r.status, ==, 201);
	json_object *o = json_tokener_parse(r.body->str);
	httpc_reply_clear(&r);
	g_assert_true(json_object_object_get_ex(o, "api_key", &v));
	char *k = g_strdup(json_object_get_string(v));
	json_object_put(o);
	return k;
}

/* GET /api/rooms/ROOM/authorized-keys with BEARER: the status; *KEYS the
 * listed public keys joined by spaces, in order. */
static unsigned list_keys(struct testd *d, const char *room, const char *bearer, char **keys)
{
	g_autofree char *path = g_strdup_printf("/api/rooms/%s/authorized-keys", room);
	json_object *o, *list, *v;
	unsigned status = ws_http(d, "GET", path, bearer, NULL, &o);
	if (keys) {
		GString *k = g_string_new(NULL);
		if (json_object_object_get_ex(o, "authorized_keys", &list))
			for (size_t i = 0; i < json_object_array_length(list); i++) {
				json_object *e = json_object_array_get_idx(list, i);
				g_assert_true(json_object_object_get_ex(e, "public_key", &v));
				g_string_append_printf(k, "%s%s", i ? " " : "", json_object_get_string(v));
				g_assert_true(json_object_object_get_ex(e, "username", &v));
				g_assert_true(json_object_object_get_ex(e, "device_name", &v));
			}
		*keys = g_string_free(k, FALSE);
	}
	json_object_put(o);
	return status;
}

/* Publishing: a JWT of a configured issuer, a key of exactly 32 bytes;
 * the same key again changes nothing; an account has a bounded number. */
static void test_publish(void)
{
	struct testd *d = start_auth("[rooms]\nmax_public_keys_per_account = 2\n");
	g_autofree char *ada = token_for("ada"), *k1 = pubkey_text(1), *k2 = pubkey_text(2), *k3 = pubkey_text(3);

	g_assert_cmpuint(publish(d, ada, k1, "cli"), ==, 201);
	g_assert_cmpuint(publish(d, ada, k1, "cli"), ==, 200); /* idempotent */
	g_assert_cmpuint(publish(d, NULL, k2, "cli"), ==, 401);
	g_assert_cmpuint(publish(d, "not.a.jwt", k2, "cli"), ==, 401);
	g_assert_cmpuint(publish(d, ada, "not base64!", "cli"), ==, 400);
	g_assert_cmpuint(publish(d, ada, "AAAA", "cli"), ==, 400);  /* 3 bytes */
	g_autofree char *longer = g_strconcat(k1, "AAAA", NULL); /* 35 bytes */
	g_assert_cmpuint(publish(d, ada, longer, "cli"), ==, 400);
	g_autofree char *padded = g_strconcat(k1, "=", NULL);
	g_assert_cmpuint(publish(d, ada, padded, "cli"), ==, 400);
	g_assert_cmpuint(ws_http(d, "POST", "/api/auth/public-keys", ada, "[1]", NULL), ==, 400);
	g_assert_cmpuint(publish(d, ada, k2, "gui"), ==, 201);
	g_assert_cmpuint(publish(d, ada, k3, "laptop"), ==, 429); /* over the bound */
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_limit_hits_total{limit=\"max_public_keys_per_account\"}"), ==, 1);
	g_assert_cmpuint(publish(d, ada, k2, "gui"), ==, 200); /* a key it has: still fine */
	g_autofree char *bob = token_for("bob");
	/* Clients that reset while their key may be being stored: the
	 * answer is dropped with the connection (whether the key got in
	 * depends on when the reset came). */
	for (int i = 0; i < 20; i++) {
		g_autofree char *raw = g_strdup_printf("POST /api/auth/public-keys HTTP/1.1\r\nHost: x\r\n"
						       "Authorization: Bearer %s\r\nContent-Length: %zu\r\n\r\n"
						       "{\"public_key\":\"%s\"}", bob, strlen(k3) + 17, k3);
		int fd = tcp_to(d);
		send_all(fd, raw);
		struct linger l = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
		close(fd);
	}
	unsigned st = publish(d, bob, k3, "cli");
	g_assert_true(st == 200 || st == 201);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Listing: with an API key of the room or a JWT that may use it; the
 * creator's keys, and for a room open to its issuer every account of
 * that issuer with a key; kept across a restart. */
static void test_authorized_keys(void)
{
	struct testd *d = start_auth(NULL);
	g_autofree char *ada = token_for("ada"), *bob = token_for("bob"), *eve = token_from(ISS2, "eve");
	g_autofree char *k1 = pubkey_text(1), *k2 = pubkey_text(2), *k3 = pubkey_text(3);
	g_autofree char *closed = create_room(d, ada, false), *open = create_room(d, ada, true);
	g_autofree char *room_key = api_key_for(d, closed), *open_key = api_key_for(d, open);
	char *keys = NULL;

	g_assert_cmpuint(publish(d, ada, k1, "cli"), ==, 201);
	g_assert_cmpuint(publish(d, bob, k2, "gui"), ==, 201);
	g_assert_cmpuint(publish(d, eve, k3, "cli"), ==, 201);
	/* The closed room: its creator's keys only. */
	g_assert_cmpuint(list_keys(d, closed, room_key, &keys), ==, 200);
	g_assert_cmpstr(keys, ==, k1);
	g_clear_pointer(&keys, g_free);
	g_assert_cmpuint(list_keys(d, closed, ada, &keys), ==, 200);
	g_assert_cmpstr(keys, ==, k1);
	g_clear_pointer(&keys, g_free);
	/* The open room: every account of its issuer, not the other's. */
	g_autofree char *both = g_strdup_printf("%s %s", k1, k2);
	g_assert_cmpuint(list_keys(d, open, bob, &keys), ==, 200);
	g_assert_cmpstr(keys, ==, both);
	g_clear_pointer(&keys, g_free);
	g_assert_cmpuint(list_keys(d, open, open_key, &keys), ==, 200);
	g_assert_cmpstr(keys, ==, both);
	g_clear_pointer(&keys, g_free);
	/* Refused: no credential, a bad one, another room's key, an account
	 * that may not use the room; an unknown room. */
	g_assert_cmpuint(list_keys(d, closed, NULL, NULL), ==, 401);
	g_assert_cmpuint(list_keys(d, closed, "garbage", NULL), ==, 401);
	g_assert_cmpuint(list_keys(d, closed, open_key, NULL), ==, 403);
	g_assert_cmpuint(list_keys(d, closed, bob, NULL), ==, 403);
	g_assert_cmpuint(list_keys(d, open, eve, NULL), ==, 403);
	g_assert_cmpuint(list_keys(d, "no-such-room", ada, NULL), ==, 404);

	/* The keys survive a restart on the same state directory. */
	g_autofree char *state = g_build_filename(d->dir, "state", NULL);
	g_autofree char *keep = g_dir_make_tmp("state-XXXXXX", NULL);
	g_assert_cmpint(testd_stop(d), ==, 0);
	g_autofree char *cp = g_strdup_printf("cp -a %s/. %s/", state, keep);
	g_assert_true(g_spawn_command_line_sync(cp, NULL, NULL, NULL, NULL));
	testd_free(d);
	g_autofree char *c = conf_text("[rooms]\nmax_authorized_keys = 1\n");
	const char *args[] = { "--state-dir", keep, NULL };
	d = testd_start(c, args);
	g_assert_true(testd_wait_log(d, "3 public keys", 0));
	g_assert_cmpuint(list_keys(d, open, open_key, &keys), ==, 200);
	g_assert_cmpstr(keys, ==, k1); /* bounded: the creator's first */
	g_clear_pointer(&keys, g_free);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_limit_hits_total{limit=\"max_authorized_keys\"}"), ==, 1);
	g_assert_cmpuint(publish(d, bob, k2, "gui"), ==, 200); /* known after the restart */
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_autofree char *rm = g_strdup_printf("rm -rf %s", keep);
	g_assert_true(g_spawn_command_line_sync(rm, NULL, NULL, NULL, NULL));
}

/* An account key of SUB (issuer lab), and its id in *KEY_ID. */
static char *account_key_for(struct testd *d, const char *sub, char **key_id)
{
	g_autofree char *body = g_strdup_printf("{\"account\":\"%s\",\"issuer\":\"lab\"}", sub);
	json_object *o = testd_admin_api(d, ADMIN, "POST", "/api/keys", body, 201);
	*key_id = g_strdup(testd_str(o, "key_id"));
	char *k = g_strdup(testd_str(o, "api_key"));
	json_object_put(o);
	return k;
}

/* sleap-rtc's account keys: the CLI publishes with one, the worker lists
 * with one.  Valid where its account may go (created, member, open to its
 * issuer), as at register; room members' keys are listed; a revoked key
 * is refused. */
static void test_account_keys(void)
{
	struct testd *d = start_auth(NULL);
	g_autofree char *ada = token_for("ada"), *bob = token_for("bob");
	g_autofree char *k1 = pubkey_text(1), *k2 = pubkey_text(2), *k3 = pubkey_text(3);
	g_autofree char *ada_id = NULL, *bob_id = NULL;
	g_autofree char *ada_key = account_key_for(d, "ada", &ada_id), *bob_key = account_key_for(d, "bob", &bob_id);
	g_autofree char *closed = create_room(d, ada, false);
	json_object *o = testd_admin_api(d, ADMIN, "POST", "/api/rooms", "{}", 201); /* the operator's, closed */
	g_autofree char *theirs = g_strdup(testd_str(o, "room_id"));
	json_object_put(o);
	g_autofree char *room_key = api_key_for(d, closed);
	char *keys = NULL;

	/* Published with an account key: the key's account's. */
	g_assert_cmpuint(publish(d, ada_key, k1, "cli"), ==, 201);
	g_assert_cmpuint(publish(d, ada, k1, "cli"), ==, 200); /* the same account */
	g_assert_cmpuint(publish(d, bob_key, k2, "cli"), ==, 201);
	g_assert_cmpuint(publish(d, room_key, k3, "cli"), ==, 403); /* speaks for no account */
	/* Listed with an account key of the creator; not yet by bob. */
	g_assert_cmpuint(list_keys(d, closed, ada_key, &keys), ==, 200);
	g_assert_cmpstr(keys, ==, k1);
	g_clear_pointer(&keys, g_free);
	g_assert_cmpuint(list_keys(d, closed, bob_key, NULL), ==, 403);
	g_assert_cmpuint(list_keys(d, closed, bob, NULL), ==, 403);
	/* Bob a member: his key lists the room, and his key is listed. */
	g_autofree char *mpath = g_strdup_printf("/api/rooms/%s/members", closed);
	json_object_put(testd_admin_api(d, ADMIN, "POST", mpath, "{\"account\":\"bob\",\"issuer\":\"lab\"}", 201));
	g_autofree char *both = g_strdup_printf("%s %s", k1, k2);
	g_assert_cmpuint(list_keys(d, closed, bob_key, &keys), ==, 200);
	g_assert_cmpstr(keys, ==, both);
	g_clear_pointer(&keys, g_free);
	g_assert_cmpuint(list_keys(d, closed, bob, &keys), ==, 200);
	g_assert_cmpstr(keys, ==, both);
	g_clear_pointer(&keys, g_free);
	g_assert_cmpuint(list_keys(d, closed, room_key, &keys), ==, 200);
	g_assert_cmpstr(keys, ==, both);
	g_clear_pointer(&keys, g_free);
	/* A room neither may use. */
	g_assert_cmpuint(list_keys(d, theirs, bob_key, NULL), ==, 403);
	g_assert_cmpuint(list_keys(d, theirs, ada_key, NULL), ==, 403);
	/* Revoked: refused on both endpoints. */
	g_autofree char *kpath = g_strdup_printf("/api/keys/%s", bob_id);
	json_object_put(testd_admin_api(d, ADMIN, "DELETE", kpath, NULL, 200));
	g_assert_cmpuint(list_keys(d, closed, bob_key, NULL), ==, 401);
	g_assert_cmpuint(publish(d, bob_key, k2, "cli"), ==, 401);
	g_assert_cmpuint(list_keys(d, closed, ada_key, NULL), ==, 200);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Listing and publishing count against the address's registration
 * attempts, so API keys are no faster to guess here than at register. */
static void test_list_rate(void)
{
	struct testd *d = start_auth("[limits]\nregistrations_per_address_per_minute = 3\n");
	g_autofree char *k = pubkey_text(1);
	for (int i = 0; i < 3; i++)
		g_assert_cmpuint(list_keys(d, "no-such-room", "guess", NULL), ==, 401);
	g_assert_cmpuint(list_keys(d, "no-such-room", "guess", NULL), ==, 429);
	/* Publishing takes an API key too: counted alike. */
	g_assert_cmpuint(publish(d, "guess", k, "cli"), ==, 429);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_limit_hits_total{limit=\"registrations_per_address_per_minute\"}"),
			  ==, 2);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	key = EVP_EC_gen("P-256");
	jwks_path = jwtmint_jwks_file(key, "k1");
	g_test_add_func("/wshttp/delete-peer", test_delete_peer);
	g_test_add_func("/wshttp/every-request-answered", test_every_request_answered);
	g_test_add_func("/wshttp/publish", test_publish);
	g_test_add_func("/wshttp/authorized-keys", test_authorized_keys);
	g_test_add_func("/wshttp/account-keys", test_account_keys);
	g_test_add_func("/wshttp/list-rate", test_list_rate);
	int r = g_test_run();
	jwtmint_jwks_file_remove(jwks_path);
	EVP_PKEY_free(key);
	return r;
}
