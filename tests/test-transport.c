/* Integration tests: the WebSocket port's transport against hostile
 * clients, over raw TCP sockets: pipelined and reset POST /create-room
 * requests, half-sent upgrade requests (slowloris), empty fragments. */
#include "jwtmint.h"
#include "testd.h"

#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ISS "https://id.example.org/realms/lab"
#define AUD "rtcsignald"
#define ADMIN "admin-secret-for-tests"

static EVP_PKEY *key;
static char *jwks_path;

static char *token_for(const char *sub)
{
	return jwtmint_token(key, "k1", jwtmint_claims(ISS, AUD, sub));
}

static struct testd *start_auth(const char *extra)
{
	g_autofree char *c = g_strdup_printf("[admin]\ntoken = " ADMIN "\n[rooms]\nmax_ttl = 0\n"
					     "[issuer lab]\nissuer = " ISS "\naudience = " AUD
					     "\njwks_file = %s\n%s",
					     jwks_path, extra ? extra : "");
	return testd_start(c, NULL);
}

/* A TCP connection to the WebSocket port from SOURCE (NULL: 127.0.0.1). */
static int tcp_from(struct testd *d, const char *source)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)d->port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	g_assert_cmpint(fd, >=, 0);
	if (source) {
		struct sockaddr_in src = { .sin_family = AF_INET };
		g_assert_cmpint(inet_pton(AF_INET, source, &src.sin_addr), ==, 1);
		g_assert_cmpint(bind(fd, (struct sockaddr *)&src, sizeof src), ==, 0);
	}
	g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	return fd;
}

static void send_all(int fd, const char *text)
{
	size_t len = strlen(text);
	g_assert_cmpint(send(fd, text, len, MSG_NOSIGNAL), ==, (ssize_t)len);
}

/* Reads FD until the server closes it (0; -ECONNRESET for a reset) or
 * TIMEOUT_MS pass (-ETIMEDOUT); what came is appended to OUT (may be NULL). */
static int read_to_close(int fd, int timeout_ms, GString *out)
{
	gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
	char buf[4096];

	for (;;) {
		int left = (int)((deadline - g_get_monotonic_time()) / 1000);
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, left) == 0)
			return -ETIMEDOUT;
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n == 0)
			return 0;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (out)
			g_string_append_len(out, buf, n);
	}
}

/* Closes FD with a reset (SO_LINGER 0), as a client that vanishes does. */
static void reset_close(int fd)
{
	struct linger l = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
	close(fd);
}

static unsigned persistent_rooms(struct testd *d)
{
	struct httpc_reply r;
	json_object *rooms;

	g_assert_cmpint(testd_http(d->admin_port, "GET", "/api/rooms", "Authorization: Bearer " ADMIN "\r\n",
				     NULL, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 200);
	json_object *o = json_tokener_parse(r.body->str);
	httpc_reply_clear(&r);
	g_assert_true(json_object_object_get_ex(o, "rooms", &rooms));
	unsigned n = (unsigned)json_object_array_length(rooms);
	json_object_put(o);
	return n;
}

/* A create-room that answers 201: also a barrier, since the store
 * completes its writes in order. */
static void create_room_ok(struct testd *d, const char *jwt)
{
	g_autofree char *h = g_strdup_printf("Authorization: Bearer %s\r\n", jwt);
	struct httpc_reply r;
	g_assert_cmpint(testd_http(d->port, "POST", "/create-room", h, "{}", &r), ==, 0);
	g_assert_cmpint(r.status, ==, 201);
	httpc_reply_clear(&r);
}

static char *pipelined_request(const char *jwt)
{
	return g_strdup_printf("POST /create-room HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
			       "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
			       "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			       jwt);
}

/* One request, one completion: a request pipelined after the body of a
 * POST /create-room does not run the creation again.  The answer says
 * Connection: close and the connection ends after it. */
static void test_create_room_pipelined(void)
{
	struct testd *d = start_auth(NULL);
	g_autofree char *jwt = token_for("ada");
	g_autofree char *req = pipelined_request(jwt);
	g_autoptr(GString) answer = g_string_new(NULL);

	int fd = tcp_from(d, NULL);
	send_all(fd, req);
	g_assert_cmpint(read_to_close(fd, 10000, answer), ==, 0);
	close(fd);
	g_assert_true(g_str_has_prefix(answer->str, "HTTP/1.1 201"));
	g_assert_null(strstr(answer->str + 1, "HTTP/1.1 "));
	g_assert_nonnull(strcasestr(answer->str, "\r\nconnection: close\r\n"));
	/* The same, the extra bytes arriving in a second write. */
	fd = tcp_from(d, NULL);
	send_all(fd, "POST /create-room HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ");
	send_all(fd, jwt);
	send_all(fd, "\r\nContent-Length: 2\r\n\r\n{}");
	send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
	g_string_truncate(answer, 0);
	g_assert_cmpint(read_to_close(fd, 10000, answer), ==, 0);
	close(fd);
	g_assert_true(g_str_has_prefix(answer->str, "HTTP/1.1 201"));

	create_room_ok(d, jwt);
	g_assert_cmpuint(persistent_rooms(d), ==, 3);
	g_assert_true(testd_wait_log_count(d, "room created by", 3, 5000));
	g_assert_cmpuint(testd_log_count(d, "room created by"), ==, 3);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Clients that reset their connection while the creation is pending: the
 * completion is cancelled with the connection, nothing is written
 * through freed memory, and every connection makes one room at most. */
static void test_create_room_reset(void)
{
	enum { N = 200 };
	struct testd *d = start_auth("[limits]\nconnections_per_address = 1000\n");
	g_autofree char *jwt = token_for("ada");
	g_autofree char *req = pipelined_request(jwt);

	int fds[N];

	for (int i = 0; i < N; i++) {
		fds[i] = tcp_from(d, NULL);
		send_all(fds[i], req);
	}
	/* Reset once the store is at work: most creations are pending. */
	g_assert_true(testd_wait_log(d, "room created by", 60000));
	for (int i = 0; i < N; i++)
		reset_close(fds[i]);
	g_assert_true(testd_wait_log_count(d, "connection released", N, 60000));
	create_room_ok(d, jwt);
	unsigned rooms = persistent_rooms(d);
	g_assert_cmpuint(rooms, >=, 1);
	g_assert_cmpuint(rooms, <=, N + 1);
	/* The log is read by another thread: awaited, then exact. */
	g_assert_true(testd_wait_log_count(d, "room created by", rooms, 5000));
	g_assert_cmpuint(testd_log_count(d, "room created by"), ==, rooms);
	struct wsc *c = testd_connect(d);
	wsc_send_text(c, "{\"type\":\"ping\"}");
	json_object_put(wsc_expect(c, "pong"));
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Half-sent upgrade requests from one address: the connections over
 * connections_per_address are refused from accept on, the rest are cut
 * after handshake_timeout_ms, and a client from elsewhere is served at
 * once meanwhile. */
static void test_slowloris(void)
{
	enum { LIMIT = 8, EXTRA = 4, N = LIMIT + EXTRA };
	struct testd *d = testd_start("[limits]\nconnections_per_address = 8\nhandshake_timeout_ms = 4000\n",
				      NULL);
	const char *refused = "rtcsignald_sessions_refused_total{reason=\"connections_per_address\"}";
	const char *timed_out = "rtcsignald_limit_hits_total{limit=\"handshake_timeout_ms\"}";
	static const char partial[] = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: web";
	int fds[N];

	g_assert_cmpfloat(testd_metric(d, timed_out), ==, 0);
	/* A byte at a time, each connection a byte further per round. */
	for (int i = 0; i < N; i++)
		fds[i] = tcp_from(d, "127.0.0.2");
	for (size_t b = 0; b < 8; b++)
		for (int i = 0; i < N; i++)
			send(fds[i], partial + b, 1, MSG_NOSIGNAL);
	g_assert_cmpfloat(testd_await_metric(d, refused, EXTRA, 5000), ==, EXTRA);
	/* Refused at once, and told why (the answer goes before the count). */
	unsigned closed = 0;
	for (int i = 0; i < N; i++) {
		g_autoptr(GString) got = g_string_new(NULL);
		struct pollfd p = { .fd = fds[i], .events = POLLIN };
		if (poll(&p, 1, 0) == 1 && read_to_close(fds[i], 1000, got) != -ETIMEDOUT) {
			g_assert_true(g_str_has_prefix(got->str, "HTTP/1.1 429"));
			close(fds[i]);
			fds[i] = -1;
			closed++;
		}
	}
	g_assert_cmpuint(closed, ==, EXTRA);
	/* Logged, but not once per refusal. */
	g_assert_true(testd_wait_log(d, "code=connections_per_address", 5000));
	g_assert_cmpuint(testd_log_count(d, "code=connections_per_address"), <=, 2);

	/* Another client, meanwhile: served before any handshake is due. */
	struct wsc *legit = testd_register(d, "r", "legit", NULL);
	g_assert_cmpfloat(testd_metric(d, timed_out), ==, 0);

	/* The half-sent ones are cut once due, and it is counted and logged. */
	g_assert_cmpfloat(testd_await_metric(d, timed_out, LIMIT, 15000), ==, LIMIT);
	g_assert_true(testd_wait_log(d, "handshake_timeout_ms", 5000));
	for (int i = 0; i < N; i++) {
		if (fds[i] < 0)
			continue;
		g_assert_cmpint(read_to_close(fds[i], 5000, NULL), !=, -ETIMEDOUT);
		close(fds[i]);
	}
	/* The WebSocket session is not a handshake: it lives on. */
	wsc_send_text(legit, "{\"type\":\"ping\"}");
	json_object_put(wsc_expect(legit, "pong"));
	/* And the address has its slots back. */
	wsc_free(wsc_connect_opts(&(struct wsc_opts){ .source = "127.0.0.2" }, "127.0.0.1", d->port, "/",
				  NULL));
	g_assert_cmpfloat(testd_metric(d, refused), ==, EXTRA);
	wsc_free(legit);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Empty fragments (FIN=0 with no payload, empty continuations, an empty
 * message) are reassembled like any others.  Under UBSan a copy from an
 * empty buffer would halt the daemon. */
static void test_empty_fragments(void)
{
	struct testd *d = testd_start(NULL, NULL);
	struct wsc *c = testd_connect(d);
	static const char ping[] = "{\"type\":\"ping\"}";

	g_assert_cmpint(wsc_send_frame(c, WSC_TEXT, false, NULL, 0), ==, 0);
	g_assert_cmpint(wsc_send_frame(c, 0x0, true, ping, strlen(ping)), ==, 0);
	json_object_put(wsc_expect(c, "pong"));
	/* An empty fragment in the middle, and one at the end. */
	g_assert_cmpint(wsc_send_frame(c, WSC_TEXT, false, ping, 8), ==, 0);
	g_assert_cmpint(wsc_send_frame(c, 0x0, false, NULL, 0), ==, 0);
	g_assert_cmpint(wsc_send_frame(c, 0x0, false, ping + 8, strlen(ping) - 8), ==, 0);
	g_assert_cmpint(wsc_send_frame(c, 0x0, true, NULL, 0), ==, 0);
	json_object_put(wsc_expect(c, "pong"));
	/* An empty message: an error, and the session goes on. */
	g_assert_cmpint(wsc_send_frame(c, WSC_TEXT, true, NULL, 0), ==, 0);
	json_object_put(wsc_expect(c, "error"));
	wsc_send_text(c, ping);
	json_object_put(wsc_expect(c, "pong"));
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	key = EVP_EC_gen("P-256");
	jwks_path = jwtmint_jwks_file(key, "k1");

	g_test_add_func("/transport/create-room-pipelined", test_create_room_pipelined);
	g_test_add_func("/transport/create-room-reset", test_create_room_reset);
	g_test_add_func("/transport/slowloris", test_slowloris);
	g_test_add_func("/transport/empty-fragments", test_empty_fragments);
	int r = g_test_run();
	jwtmint_jwks_file_remove(jwks_path);
	EVP_PKEY_free(key);
	return r;
}
