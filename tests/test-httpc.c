/* Unit tests: the blocking HTTP client against a one-shot server thread
 * that records the request and answers with canned bytes. */
#include "ctl/httpc.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct server {
	int fd;
	struct listen_addr addr;
	const char *reply; /* written after the request's head is in */
	bool hold;         /* keep the connection open after the reply */
	GString *request;
	GThread *thread;
};

static gpointer server_main(gpointer data)
{
	struct server *s = data;
	int c = accept(s->fd, NULL, NULL);
	char buf[4096];

	g_assert_cmpint(c, >=, 0);
	while (!strstr(s->request->str, "\r\n\r\n")) {
		ssize_t n = read(c, buf, sizeof buf);
		if (n <= 0)
			break;
		g_string_append_len(s->request, buf, n);
	}
	if (s->reply) /* may fail once the client has given up: SIGPIPE is ignored */
		(void)!write(c, s->reply, strlen(s->reply));
	if (s->hold) /* until the client gives up */
		while (read(c, buf, sizeof buf) > 0)
			;
	close(c);
	return NULL;
}

/* Listens on HOST (numeric, IPv6 in brackets) at a free port. */
static struct server *server_start(const char *host, const char *reply)
{
	struct server *s = g_new0(struct server, 1);
	g_autofree char *any = g_strdup_printf("%s:0", host);
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	g_assert_cmpint(config_parse_listen(any, &s->addr), ==, 0);
	s->fd = socket(s->addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	g_assert_cmpint(bind(s->fd, (struct sockaddr *)&s->addr.ss, s->addr.len), ==, 0);
	g_assert_cmpint(listen(s->fd, 4), ==, 0);
	g_assert_cmpint(getsockname(s->fd, (struct sockaddr *)&ss, &len), ==, 0);
	/* sin_port and sin6_port sit at the same offset */
	g_autofree char *bound = g_strdup_printf("%s:%u", host,
						 ntohs(((struct sockaddr_in *)&ss)->sin_port));
	g_assert_cmpint(config_parse_listen(bound, &s->addr), ==, 0);
	s->reply = reply;
	s->request = g_string_new(NULL);
	return s;
}

static void server_run(struct server *s)
{
	s->thread = g_thread_new("server", server_main, s);
}

static void server_free(struct server *s)
{
	if (s->thread)
		g_thread_join(s->thread);
	close(s->fd);
	g_string_free(s->request, TRUE);
	g_free(s);
}

static int exchange(struct server *s, const struct httpc_request *req, struct httpc_reply *r)
{
	server_run(s);
	return httpc_request(&s->addr, req, r);
}

static void test_content_length(void)
{
	struct server *s = server_start("127.0.0.1",
					"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
					"X-Spaced:   a b  \r\ncontent-length: 7\r\n\r\n{\"a\":1}trailing");
	const struct httpc_request req = { .method = "POST", .target = "/api/rooms?x=1",
					   .headers = "Authorization: Bearer t\r\n",
					   .body = "{\"name\":\"lab\"}" };
	struct httpc_reply r;

	g_assert_cmpint(exchange(s, &req, &r), ==, 0);
	g_assert_true(r.connected);
	g_assert_cmpint(r.status, ==, 201);
	g_assert_cmpstr(r.body->str, ==, "{\"a\":1}"); /* no more than Content-Length */
	g_autofree char *ct = httpc_header(&r, "Content-Type");
	g_assert_cmpstr(ct, ==, "application/json");
	g_autofree char *sp = httpc_header(&r, "x-spaced");
	g_assert_cmpstr(sp, ==, "a b");
	g_assert_null(httpc_header(&r, "content"));
	httpc_reply_clear(&r);
	server_free(s);
}

static void test_request_shape(void)
{
	struct server *s = server_start("127.0.0.1", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
	const struct httpc_request req = { .method = "DELETE", .target = "/api/keys/k1",
					   .headers = "Authorization: Bearer t\r\n" };
	struct httpc_reply r;
	g_autofree char *want = NULL;

	g_assert_cmpint(exchange(s, &req, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 200);
	g_assert_cmpstr(r.body->str, ==, "");
	httpc_reply_clear(&r);
	g_thread_join(s->thread);
	s->thread = NULL;
	want = g_strdup_printf("DELETE /api/keys/k1 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
			       "Authorization: Bearer t\r\nContent-Length: 0\r\n\r\n", s->addr.text);
	g_assert_cmpstr(s->request->str, ==, want);
	server_free(s);
}

/* Without Content-Length the body runs until the server closes. */
static void test_until_close(void)
{
	struct server *s = server_start("127.0.0.1", "HTTP/1.0 503 Busy\r\n\r\n{\"error\":\"busy\"}");
	const struct httpc_request req = { .method = "GET", .target = "/ready" };
	struct httpc_reply r;

	g_assert_cmpint(exchange(s, &req, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 503);
	g_assert_cmpstr(r.body->str, ==, "{\"error\":\"busy\"}");
	httpc_reply_clear(&r);
	server_free(s);
}

static void test_ipv6(void)
{
	int probe = socket(AF_INET6, SOCK_STREAM, 0);
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	bool have_v6 = probe >= 0 && bind(probe, (struct sockaddr *)&sin6, sizeof sin6) == 0;

	if (probe >= 0)
		close(probe);
	if (!have_v6) {
		g_test_skip("no IPv6 loopback here");
		return;
	}
	struct server *s = server_start("[::1]", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	const struct httpc_request req = { .method = "GET", .target = "/health" };
	struct httpc_reply r;

	g_assert_cmpint(exchange(s, &req, &r), ==, 0);
	g_assert_cmpstr(r.body->str, ==, "ok");
	httpc_reply_clear(&r);
	g_thread_join(s->thread);
	s->thread = NULL;
	g_autofree char *host = g_strdup_printf("\r\nHost: %s\r\n", s->addr.text);
	g_assert_true(g_str_has_prefix(s->addr.text, "[::1]:"));
	g_assert_nonnull(strstr(s->request->str, host));
	server_free(s);
}

static void test_refused(void)
{
	struct server *s = server_start("127.0.0.1", NULL);
	struct listen_addr to = s->addr;
	const struct httpc_request req = { .method = "GET", .target = "/health" };
	struct httpc_reply r;

	server_free(s); /* nobody listens on that port now */
	g_assert_cmpint(httpc_request(&to, &req, &r), ==, -ECONNREFUSED);
	g_assert_false(r.connected);
	httpc_reply_clear(&r);
}

static void test_timeout(void)
{
	struct server *s = server_start("127.0.0.1", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
	const struct httpc_request req = { .method = "GET", .target = "/health", .timeout_ms = 200 };
	struct httpc_reply r;
	gint64 start = g_get_monotonic_time();

	s->hold = true;
	g_assert_cmpint(exchange(s, &req, &r), ==, -ETIMEDOUT);
	g_assert_true(r.connected);
	g_assert_cmpint(g_get_monotonic_time() - start, <, 2 * G_USEC_PER_SEC);
	httpc_reply_clear(&r);
	server_free(s);
}

static void test_too_big(void)
{
	struct server *s = server_start("127.0.0.1",
					"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
	const struct httpc_request req = { .method = "GET", .target = "/", .max_reply = 1024 };
	struct httpc_reply r;

	g_assert_cmpint(exchange(s, &req, &r), ==, -EMSGSIZE);
	httpc_reply_clear(&r);
	server_free(s);

	/* Framed by close: the cap counts as it reads. */
	g_autofree char *big = g_strnfill(4096, 'x');
	g_autofree char *reply = g_strconcat("HTTP/1.1 200 OK\r\n\r\n", big, NULL);
	s = server_start("127.0.0.1", reply);
	g_assert_cmpint(exchange(s, &req, &r), ==, -EMSGSIZE);
	httpc_reply_clear(&r);
	server_free(s);
}

static void test_malformed(void)
{
	static const char *const replies[] = {
		"SSH-2.0-OpenSSH_9.2\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", /* closed early */
		"HTTP/1.1 200 OK\r\nContent-Le",                     /* no end of head */
		"",
	};
	const struct httpc_request req = { .method = "GET", .target = "/" };

	for (size_t i = 0; i < G_N_ELEMENTS(replies); i++) {
		struct server *s = server_start("127.0.0.1", replies[i]);
		struct httpc_reply r;
		g_test_message("reply %zu", i);
		g_assert_cmpint(exchange(s, &req, &r), ==, -EPROTO);
		httpc_reply_clear(&r);
		server_free(s);
	}
}

/* HEAD and 204 have no body whatever Content-Length says. */
static void test_no_body(void)
{
	struct server *s = server_start("127.0.0.1", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n");
	const struct httpc_request req = { .method = "HEAD", .target = "/health" };
	struct httpc_reply r;

	s->hold = true; /* the answer is complete without the server closing */
	g_assert_cmpint(exchange(s, &req, &r), ==, 0);
	g_assert_cmpint(r.status, ==, 200);
	g_assert_cmpuint(r.body->len, ==, 0);
	httpc_reply_clear(&r);
	server_free(s);
}

/* $http_proxy is for the operator's web traffic, not the local admin
 * port: nothing listens on port 9. */
static void test_no_proxy(void)
{
	struct server *s = server_start("127.0.0.1", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	const struct httpc_request req = { .method = "GET", .target = "/health" };
	struct httpc_reply r;

	g_setenv("http_proxy", "http://127.0.0.1:9", TRUE);
	g_setenv("all_proxy", "http://127.0.0.1:9", TRUE);
	g_assert_cmpint(exchange(s, &req, &r), ==, 0);
	g_unsetenv("http_proxy");
	g_unsetenv("all_proxy");
	g_assert_cmpint(r.status, ==, 200);
	g_assert_cmpstr(r.body->str, ==, "ok");
	httpc_reply_clear(&r);
	server_free(s);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	signal(SIGPIPE, SIG_IGN);
	g_assert_cmpint(curl_global_init(CURL_GLOBAL_DEFAULT), ==, CURLE_OK);
	g_test_add_func("/httpc/content-length", test_content_length);
	g_test_add_func("/httpc/request-shape", test_request_shape);
	g_test_add_func("/httpc/until-close", test_until_close);
	g_test_add_func("/httpc/ipv6", test_ipv6);
	g_test_add_func("/httpc/refused", test_refused);
	g_test_add_func("/httpc/timeout", test_timeout);
	g_test_add_func("/httpc/too-big", test_too_big);
	g_test_add_func("/httpc/malformed", test_malformed);
	g_test_add_func("/httpc/no-body", test_no_body);
	g_test_add_func("/httpc/no-proxy", test_no_proxy);
	int rc = g_test_run();
	curl_global_cleanup();
	return rc;
}
