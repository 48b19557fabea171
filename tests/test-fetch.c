/* Unit tests: fetch, on a real libuv loop beside the daemon's WebSocket
 * server (ws_server_new, as the daemon runs them) against a real HTTPS
 * server on 127.0.0.1
 * (fetch-server.py), with a test CA and certificates made here with the
 * openssl command.  Every wait is for an event, bounded by a guard timer. */
#include "util/config.h"
#include "auth/fetch.h"
#include "httpsd.h"
#include "util/log.h"
#include "core/registry.h"
#include "daemon/ws.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#define GUARD_MS 8000
/* The tests below wait for exactly this many at once. */
G_STATIC_ASSERT(FETCH_MAX_IN_FLIGHT == 4);
#define BODY_LEN 100000

/* Made once in main(). */
static struct httpsd *server;
static int port_good, port_otherca, port_othername, port_plain; /* server's */
static const char *ca1;
static guint8 body[BODY_LEN];

struct fx {
	uv_loop_t loop;
	struct config *cfg;
	struct registry *reg;
	struct ws_server *ws;
	struct fetch_client *fc;
	uv_timer_t guard;
	bool expired;
};

struct result {
	unsigned calls;
	int status;
	unsigned http_status;
	GBytes *body;
	char *why;
	gint64 at;
};

static void result_clear(struct result *r)
{
	if (r->body)
		g_bytes_unref(r->body);
	g_free(r->why);
	memset(r, 0, sizeof *r);
}

static void on_done(int status, unsigned http_status, const char *b, size_t len, const char *why,
		    void *data)
{
	struct result *r = data;

	r->calls++;
	r->status = status;
	r->http_status = http_status;
	if (b)
		r->body = g_bytes_new(b, len);
	g_assert_true(status == 0 ? why == NULL && b != NULL : why != NULL && *why && b == NULL);
	r->why = g_strdup(why);
	r->at = g_get_monotonic_time();
	if (g_test_verbose() && why)
		g_test_message("done: %d (HTTP %u) %s", status, http_status, why);
}

/* The daemon's setup: its config, registry and WebSocket server on the
 * loop fetch runs on. */
static void fx_setup(struct fx *fx, gconstpointer unused)
{
	g_assert_cmpint(uv_loop_init(&fx->loop), ==, 0);
	fx->cfg = config_new_defaults();
	fx->reg = registry_new();
	/* No rooms, auth or address limits: no session ever connects. */
	const struct ws_env env = { 0 };
	g_assert_cmpint(ws_server_new(&fx->loop, fx->cfg, &env, &fx->ws), ==, 0);
	g_assert_cmpint(fetch_client_new(&fx->loop, &fx->fc), ==, 0);
	uv_timer_init(&fx->loop, &fx->guard);
	fx->guard.data = fx;
}

/* The daemon's shutdown order: fetch, then the context, then the loop
 * runs until every handle is closed. */
static void fx_teardown(struct fx *fx, gconstpointer unused)
{
	fetch_client_free(fx->fc);
	ws_server_stop(fx->ws);
	uv_close((uv_handle_t *)&fx->guard, NULL);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	ws_server_free(fx->ws);
	registry_free(fx->reg);
	config_free(fx->cfg);
	g_assert_cmpint(uv_loop_close(&fx->loop), ==, 0);
}

static void on_guard(uv_timer_t *t)
{
	struct fx *fx = t->data;
	fx->expired = true;
}

/* Runs the loop until each of the N results has its callback. */
static void wait_all(struct fx *fx, struct result *const *r, unsigned n)
{
	fx->expired = false;
	uv_timer_start(&fx->guard, on_guard, GUARD_MS, 0);
	for (unsigned i = 0; i < n; i++) {
		while (!r[i]->calls) {
			g_assert_false(fx->expired);
			uv_run(&fx->loop, UV_RUN_ONCE);
		}
	}
	uv_timer_stop(&fx->guard);
}

static void wait_for(struct fx *fx, struct result *r)
{
	wait_all(fx, &r, 1);
}

static char *url(const char *scheme, const char *host, int port, const char *path)
{
	return g_strdup_printf("%s://%s:%d%s", scheme, host, port, path);
}

/* Fetches URL trusting CA and waits for the outcome. */
static void get(struct fx *fx, const char *u, const char *ca, size_t max_body, unsigned timeout_ms,
		struct result *r)
{
	const struct fetch_request req = {
		.url = u, .ca_file = ca, .max_body = max_body, .timeout_ms = timeout_ms
	};
	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, r, NULL), ==, 0);
	g_assert_cmpuint(r->calls, ==, 0); /* never from inside fetch_start */
	wait_for(fx, r);
	g_assert_cmpuint(r->calls, ==, 1);
}

static void assert_body(struct result *r, const void *expected, size_t len)
{
	g_assert_cmpint(r->status, ==, 0);
	g_assert_cmpuint(r->http_status, ==, 200);
	g_assert_nonnull(r->body);
	g_assert_cmpmem(g_bytes_get_data(r->body, NULL), g_bytes_get_size(r->body), expected, len);
}

static void assert_failed(struct result *r, int status, const char *why_part)
{
	g_assert_cmpint(r->status, ==, status);
	g_assert_null(r->body);
	if (why_part && !strstr(r->why, why_part))
		g_error("reason \"%s\" lacks \"%s\"", r->why, why_part);
}

/* One fetch and its outcome. */
struct one_case {
	const char *name;
	const int *port; /* of a fetch-server.py listener */
	const char *host;
	const char *path;
	bool system_cas; /* trust the system's CAs rather than ca1 */
	size_t max_body;
	int status;
	unsigned http_status;
	const char *expect; /* the body when status is 0 (NULL: the file), else part of why */
};

#define SMALL "{\"keys\":[]}"

static const struct one_case one_cases[] = {
	{ "/fetch/ok", &port_good, "127.0.0.1", "/jwks.json", .http_status = 200 },
	/* a name: resolved (from /etc/hosts) and checked against the DNS SAN */
	{ "/fetch/ok-localhost", &port_good, "localhost", "/jwks.json", .http_status = 200 },
	{ "/fetch/chunked", &port_good, "127.0.0.1", "/chunked", .http_status = 200, .expect = SMALL },
	{ "/fetch/close-delimited", &port_good, "127.0.0.1", "/close-delimited", .http_status = 200,
	  .expect = SMALL },
	{ "/fetch/plain-loopback", &port_plain, "127.0.0.1", "/jwks.json", .http_status = 200 },
	{ "/fetch/exactly-max-body", &port_good, "127.0.0.1", "/jwks.json", .max_body = BODY_LEN,
	  .http_status = 200 },
	{ "/fetch/not-found", &port_good, "127.0.0.1", "/missing.json", .status = -EREMOTEIO,
	  .http_status = 404, .expect = "HTTP status 404" },
	{ "/fetch/redirect", &port_good, "127.0.0.1", "/redirect", .status = -EREMOTEIO,
	  .http_status = 302, .expect = "redirect to /jwks.json not followed" },
	{ "/fetch/too-big/announced", &port_good, "127.0.0.1", "/big", .status = -EFBIG,
	  .http_status = 200, .expect = "2097152 bytes is over the limit of 1048576" },
	{ "/fetch/too-big/chunked", &port_good, "127.0.0.1", "/big-chunked", .status = -EFBIG,
	  .http_status = 200, .expect = "over the limit of 1048576" },
	{ "/fetch/too-big/max-body", &port_good, "127.0.0.1", "/jwks.json", .max_body = BODY_LEN - 1,
	  .status = -EFBIG, .http_status = 200, .expect = "over the limit of 99999" },
	{ "/fetch/big-header", &port_good, "127.0.0.1", "/big-header", .status = -EIO,
	  .expect = "header" },
	{ "/fetch/untrusted", &port_otherca, "127.0.0.1", "/jwks.json", .status = -EPROTO,
	  .expect = "unable to get local issuer certificate" },
	/* the test CA is not among the system's */
	{ "/fetch/system-cas", &port_good, "127.0.0.1", "/jwks.json", .system_cas = true,
	  .status = -EPROTO, .expect = "unable to get local issuer certificate" },
	{ "/fetch/wrong-name/ip", &port_othername, "127.0.0.1", "/jwks.json", .status = -EPROTO,
	  .expect = "IP address mismatch" },
	{ "/fetch/wrong-name/dns", &port_othername, "localhost", "/jwks.json", .status = -EPROTO,
	  .expect = "hostname mismatch" },
};

static void test_one(struct fx *fx, gconstpointer data)
{
	const struct one_case *c = data;
	bool tls = c->port != &port_plain;
	g_autofree char *u = url(tls ? "https" : "http", c->host, *c->port, c->path);
	struct result r = { 0 };

	get(fx, u, tls && !c->system_cas ? ca1 : NULL, c->max_body, 0, &r);
	g_assert_cmpuint(r.http_status, ==, c->http_status);
	if (c->status == 0 && c->expect)
		assert_body(&r, c->expect, strlen(c->expect));
	else if (c->status == 0)
		assert_body(&r, body, sizeof body);
	else
		assert_failed(&r, c->status, c->expect);
	result_clear(&r);
}

static int listen_loopback(bool do_listen, int *port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	g_assert_cmpint(fd, >=, 0);
	g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof sa), ==, 0);
	if (do_listen)
		g_assert_cmpint(listen(fd, 16), ==, 0);
	g_assert_cmpint(getsockname(fd, (struct sockaddr *)&sa, &len), ==, 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

/* A server that accepts (the kernel does) and never answers. */
static void test_timeout(struct fx *fx, gconstpointer unused)
{
	struct result r = { 0 };
	int port, fd = listen_loopback(true, &port);
	g_autofree char *u = url("https", "127.0.0.1", port, "/jwks.json");
	g_autofree char *stall = url("https", "127.0.0.1", port_good, "/stall-body");
	gint64 t0 = g_get_monotonic_time();

	get(fx, u, ca1, 0, 300, &r);
	assert_failed(&r, -ETIMEDOUT, "300 ms");
	g_assert_cmpint(r.at - t0, >=, 300 * 1000);
	g_assert_cmpint(r.at - t0, <, 2000 * 1000); /* slack for valgrind */
	result_clear(&r);

	/* and one that stops in the middle of the body */
	t0 = g_get_monotonic_time();
	get(fx, stall, ca1, 0, 300, &r);
	assert_failed(&r, -ETIMEDOUT, NULL);
	g_assert_cmpuint(r.http_status, ==, 200);
	g_assert_cmpint(r.at - t0, <, 2000 * 1000); /* slack for valgrind */
	result_clear(&r);
	close(fd);
}

static void test_refused(struct fx *fx, gconstpointer unused)
{
	struct result r = { 0 };
	int port, fd = listen_loopback(false, &port); /* bound: nobody else gets the port */
	g_autofree char *u = url("https", "127.0.0.1", port, "/jwks.json");

	get(fx, u, ca1, 0, 0, &r);
	assert_failed(&r, -ECONNREFUSED, NULL);
	result_clear(&r);
	close(fd);
}

/* Cancelled while resolving, while connected and mid-body, and by
 * fetch_client_free: no callback ever, nothing leaked (valgrind). */
static void test_cancel(struct fx *fx, gconstpointer unused)
{
	struct result early = { 0 }, stalled = { 0 }, other = { 0 }, later = { 0 }, left = { 0 };
	g_autofree char *ok = url("https", "127.0.0.1", port_good, "/jwks.json");
	g_autofree char *stall = url("https", "127.0.0.1", port_good, "/stall-body");
	struct fetch_request req = { .url = ok, .ca_file = ca1 };
	struct fetch *f, *g;

	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &early, &f), ==, 0);
	fetch_cancel(f);

	req.url = stall;
	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &stalled, &g), ==, 0);
	/* by the time the larger body is in, the stalled one is most
	 * likely mid-body; in flight in any case */
	req.url = ok;
	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &other, NULL), ==, 0);
	wait_for(fx, &other);
	assert_body(&other, body, sizeof body);
	fetch_cancel(g);

	/* the loop goes on: another fetch completes, the cancelled do not */
	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &later, NULL), ==, 0);
	wait_for(fx, &later);
	assert_body(&later, body, sizeof body);
	g_assert_cmpuint(early.calls, ==, 0);
	g_assert_cmpuint(stalled.calls, ==, 0);

	/* in flight when the client goes */
	req.url = stall;
	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &left, NULL), ==, 0);
	fetch_client_free(fx->fc);
	fx->fc = NULL;
	uv_run(&fx->loop, UV_RUN_NOWAIT);
	g_assert_cmpuint(left.calls, ==, 0);
	result_clear(&other);
	result_clear(&later);
}

/* No descriptor left for the socket: lws_client_connect_via_info fails
 * (4.1.6 returns NULL, no callback).  The outcome comes once, from the
 * loop. */
static void test_no_fds(struct fx *fx, gconstpointer unused)
{
	g_autofree char *u = url("https", "127.0.0.1", port_good, "/jwks.json");
	struct fetch_request req = { .url = u, .ca_file = ca1 };
	struct result r = { 0 };
	struct rlimit old, low;
	GArray *fill = g_array_new(FALSE, FALSE, sizeof(int));
	int fd;

	/* The vhost first: loading the CA file needs a descriptor too. */
	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r, NULL), ==, 0);
	wait_for(fx, &r);
	result_clear(&r);

	g_assert_cmpint(getrlimit(RLIMIT_NOFILE, &old), ==, 0);
	low = old;
	low.rlim_cur = 64;
	g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &low), ==, 0);
	while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		g_array_append_val(fill, fd);
	g_assert_cmpint(errno, ==, EMFILE);
	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r, NULL), ==, 0);
	wait_for(fx, &r);
	for (guint i = 0; i < fill->len; i++)
		close(g_array_index(fill, int, i));
	g_array_unref(fill);
	g_assert_cmpint(setrlimit(RLIMIT_NOFILE, &old), ==, 0);
	g_assert_cmpint(r.status, <, 0);
	result_clear(&r);
}

static void test_concurrent(struct fx *fx, gconstpointer unused)
{
	struct result a = { 0 }, b = { 0 };
	g_autofree char *ua = url("https", "127.0.0.1", port_good, "/jwks.json");
	g_autofree char *ub = url("https", "localhost", port_good, "/chunked");
	struct fetch_request ra = { .url = ua, .ca_file = ca1 }, rb = { .url = ub, .ca_file = ca1 };

	g_assert_cmpint(fetch_start(fx->fc, &ra, on_done, &a, NULL), ==, 0);
	g_assert_cmpint(fetch_start(fx->fc, &rb, on_done, &b, NULL), ==, 0);
	wait_all(fx, (struct result *[]){ &a, &b }, 2);
	assert_body(&a, body, sizeof body);
	assert_body(&b, "{\"keys\":[]}", 11);
	g_assert_cmpuint(a.calls, ==, 1);
	g_assert_cmpuint(b.calls, ==, 1);
	result_clear(&a);
	result_clear(&b);
}

static void test_in_flight_limit(struct fx *fx, gconstpointer unused)
{
	struct result r[FETCH_MAX_IN_FLIGHT + 1] = { 0 };
	g_autofree char *stall = url("https", "127.0.0.1", port_good, "/stall-body");
	struct fetch_request req = { .url = stall, .ca_file = ca1 };

	for (unsigned i = 0; i < FETCH_MAX_IN_FLIGHT; i++)
		g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r[i], NULL), ==, 0);
	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r[FETCH_MAX_IN_FLIGHT], NULL), ==, -EBUSY);
	/* teardown cancels them */
}

/* The URL rules hold at fetch_start too, whatever the configuration
 * check said: refused at once, no callback, no slot taken. */
static void test_refused_url(struct fx *fx, gconstpointer unused)
{
	g_autofree char *ok = url("https", "127.0.0.1", port_good, "/jwks.json");
	g_autofree char *name = url("http", "localhost", port_plain, "/jwks.json");
	g_autofree char *other = g_strdup_printf("http://192.0.2.1:%d/jwks.json", port_plain);
	g_autofree char *slashes = g_strdup_printf("https:///127.0.0.1:%d/jwks.json", port_good);
	g_autofree char *ftp = url("ftp", "127.0.0.1", port_plain, "/jwks.json");
	const char *const bad[] = { name, other, slashes, ftp, "http://[::ffff:10.0.0.1]/" };
	struct result r[FETCH_MAX_IN_FLIGHT] = { 0 };
	struct fetch_request req = { .ca_file = ca1 };

	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		req.url = bad[i];
		g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r[0], NULL), ==, -EINVAL);
	}
	req.url = ok;
	for (unsigned i = 0; i < FETCH_MAX_IN_FLIGHT; i++)
		g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r[i], NULL), ==, 0);
	wait_all(fx, (struct result *[]){ &r[0], &r[1], &r[2], &r[3] }, FETCH_MAX_IN_FLIGHT);
	for (unsigned i = 0; i < FETCH_MAX_IN_FLIGHT; i++) {
		g_assert_cmpuint(r[i].calls, ==, 1);
		assert_body(&r[i], body, sizeof body);
		result_clear(&r[i]);
	}
}

/* A slot is free again once its fetch is done, failed or cancelled. */
static void test_in_flight_freed(struct fx *fx, gconstpointer unused)
{
	g_autofree char *ok = url("https", "127.0.0.1", port_good, "/jwks.json");
	g_autofree char *missing = url("https", "127.0.0.1", port_good, "/missing.json");
	g_autofree char *stall = url("https", "127.0.0.1", port_good, "/stall-body");
	struct fetch_request req = { .url = ok, .ca_file = ca1 };
	struct result r[FETCH_MAX_IN_FLIGHT] = { 0 }, more = { 0 };
	struct fetch *f;

	for (unsigned round = 0; round < 3; round++) {
		req.url = round == 1 ? missing : ok;
		for (unsigned i = 0; i < FETCH_MAX_IN_FLIGHT; i++)
			g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r[i], NULL), ==, 0);
		wait_all(fx, (struct result *[]){ &r[0], &r[1], &r[2], &r[3] }, FETCH_MAX_IN_FLIGHT);
		for (unsigned i = 0; i < FETCH_MAX_IN_FLIGHT; i++)
			result_clear(&r[i]);
	}
	req.url = stall;
	for (unsigned i = 0; i < FETCH_MAX_IN_FLIGHT; i++) {
		g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r[i], &f), ==, 0);
		fetch_cancel(f);
	}
	get(fx, ok, ca1, 0, 0, &more);
	assert_body(&more, body, sizeof body);
	result_clear(&more);
}

static void test_bad_ca_file(struct fx *fx, gconstpointer unused)
{
	g_autofree char *u = url("https", "127.0.0.1", port_good, "/jwks.json");
	g_autofree char *missing = g_build_filename(server->dir, "missing.pem", NULL);
	g_autofree char *not_pem = g_build_filename(server->www, "jwks.json", NULL);
	struct fetch_request req = { .url = u, .ca_file = missing };
	struct result r = { 0 };

	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r, NULL), ==, -EIO);
	req.ca_file = not_pem;
	g_assert_cmpint(fetch_start(fx->fc, &req, on_done, &r, NULL), ==, -EIO);
	g_assert_cmpuint(r.calls, ==, 0);
}

static void test_url_check(void)
{
	static const char *const good[] = {
		"https://example.org/.well-known/jwks.json",
		"https://example.org",
		"https://EXAMPLE.org:8443/a/b?c=d",
		"https://[2001:db8::1]/jwks",
		"http://127.0.0.1:8080/jwks.json",
		"http://127.1.2.3/",
		"http://[::1]:80/jwks.json",
	};
	static const char *const bad[] = {
		"", "jwks.json", "/etc/jwks.json", "ftp://example.org/jwks.json",
		"http://example.org/jwks.json", "http://localhost/jwks.json", "http://10.0.0.1/",
		"https://user:secret@example.org/", "https:///jwks.json", "https://exa mple.org/",
		"https://example.org/a b", "https://example.org/a\r\nX-Injected: 1",
		"file:///etc/passwd",
	};
	const char *why;

	for (unsigned i = 0; i < G_N_ELEMENTS(good); i++) {
		why = NULL;
		if (fetch_url_check(good[i], &why) != 0)
			g_error("%s refused: %s", good[i], why);
	}
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		why = NULL;
		if (fetch_url_check(bad[i], &why) != -EINVAL)
			g_error("%s accepted", bad[i]);
		g_assert_nonnull(why);
	}
	g_autofree char *long_url = g_strdup_printf("https://example.org/%0*d", 3000, 0);
	g_assert_cmpint(fetch_url_check(long_url, &why), ==, -EINVAL);
	g_assert_cmpint(fetch_url_check(NULL, &why), ==, -EINVAL);
}

static void make_body(void)
{
	/* Binary on purpose, NULs included: the bytes must come back as
	 * they are. */
	for (unsigned i = 0; i < BODY_LEN; i++)
		body[i] = (guint8)(i * 7 ^ (i >> 8));
	httpsd_put(server, "jwks.json", body, sizeof body);
}

#define ADD(path, fn) g_test_add(path, struct fx, NULL, fx_setup, fn, fx_teardown)

int main(int argc, char *argv[])
{
	int rc;

	g_test_init(&argc, &argv, NULL);
	if (g_test_verbose())
		log_set_level(LOG_DEBUG);
	signal(SIGPIPE, SIG_IGN);
	g_assert_cmpint(curl_global_init(CURL_GLOBAL_DEFAULT), ==, CURLE_OK);
	/* curl (and lws 4.1.6) would take these as a proxy for every client
	 * connection; fetch must not (nothing listens on port 9). */
	g_setenv("http_proxy", "http://127.0.0.1:9", TRUE);
	g_setenv("https_proxy", "http://127.0.0.1:9", TRUE);
	server = httpsd_start();
	port_good = server->port_good;
	port_otherca = server->port_otherca;
	port_othername = server->port_othername;
	port_plain = server->port_plain;
	ca1 = server->ca_file;
	make_body();

	g_test_add_func("/fetch/url-check", test_url_check);
	for (unsigned i = 0; i < G_N_ELEMENTS(one_cases); i++)
		g_test_add(one_cases[i].name, struct fx, &one_cases[i], fx_setup, test_one, fx_teardown);
	ADD("/fetch/timeout", test_timeout);
	ADD("/fetch/refused", test_refused);
	ADD("/fetch/cancel", test_cancel);
	ADD("/fetch/no-fds", test_no_fds);
	ADD("/fetch/concurrent", test_concurrent);
	ADD("/fetch/in-flight-limit", test_in_flight_limit);
	ADD("/fetch/bad-ca-file", test_bad_ca_file);
	ADD("/fetch/refused-url", test_refused_url);
	ADD("/fetch/in-flight-freed", test_in_flight_freed);
	rc = g_test_run();

	httpsd_stop(server);
	curl_global_cleanup();
	return rc;
}
