/* Integration tests: every bound, and bad input that must leave the daemon
 * and the other peers unharmed. */
#include "jwtmint.h"
#include "testd.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <openssl/rsa.h>
#include <poll.h>
#include <string.h>
#include <sys/wait.h>

/* Two peers that keep talking: proof that the others were not harmed. */
static void assert_bystanders_fine(struct testd *d, const char *room)
{
	struct wsc *a = testd_register(d, room, "bystander-a", NULL);
	struct wsc *b = testd_register(d, room, "bystander-b", NULL);
	for (int i = 0; i < 3; i++) {
		wsc_sendf(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"bystander-b\",\"payload\":%d}", i);
		json_object *o = wsc_expect(b, "peer_message");
		g_assert_cmpint(json_object_get_int(json_object_object_get(o, "payload")), ==, i);
		json_object_put(o);
	}
	wsc_free(a);
	wsc_free(b);
}

static void test_message_too_large(void)
{
	struct testd *d = testd_start(NULL, NULL);
	struct wsc *c = testd_register(d, "big", "sender", NULL);
	size_t n = 2 << 20; /* 2 MiB against the 1 MiB default */
	char *blob = g_malloc(n);

	memset(blob, 'x', n);
	wsc_send_frame(c, WSC_TEXT, true, blob, n);
	g_assert_cmpint(wsc_wait_close(c, WSC_TIMEOUT_MS), ==, 1009);
	g_assert_true(testd_wait_log(d, "event=peer_left room=big peer=sender", 5000));
	wsc_free(c);

	/* Split over frames, each small: the total still counts. */
	c = testd_connect(d);
	size_t chunk = 256 << 10;
	for (size_t sent = 0; sent < n && wsc_send_frame(c, sent ? 0 : WSC_TEXT, sent + chunk >= n,
							 blob, chunk) == 0;
	     sent += chunk)
		;
	g_assert_cmpint(wsc_wait_close(c, WSC_TIMEOUT_MS), ==, 1009);
	wsc_free(c);
	g_free(blob);
	g_assert_true(testd_wait_log(d, "max_message_bytes", 1000));
	assert_bystanders_fine(d, "big");
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_configured_message_limit(void)
{
	struct testd *d = testd_start("[limits]\nmax_message_bytes = 2048\nmax_queued_bytes = 65536\n", NULL);
	struct wsc *a = testd_register(d, "lim", "a", NULL);
	struct wsc *b = testd_register(d, "lim", "b", NULL);
	GString *s = g_string_new("{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":\"");
	while (s->len < 1900)
		g_string_append_c(s, 'y');
	g_string_append(s, "\"}");
	wsc_send_text(a, s->str); /* under the limit */
	json_object_put(wsc_expect(b, "peer_message"));
	while (s->len < 2100)
		g_string_insert_c(s, s->len - 2, 'z');
	wsc_send_text(a, s->str); /* over it */
	g_assert_cmpint(wsc_wait_close(a, WSC_TIMEOUT_MS), ==, 1009);
	g_string_free(s, TRUE);
	wsc_expect_quiet(b);
	wsc_free(a);
	wsc_free(b);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_invalid_utf8(void)
{
	struct testd *d = testd_start(NULL, NULL);
	struct wsc *c = testd_connect(d);
	const char bad[] = "{\"type\":\"ping\",\"x\":\"\xc3\x28\"}";
	wsc_send_frame(c, WSC_TEXT, true, bad, sizeof bad - 1);
	g_assert_cmpint(wsc_wait_close(c, WSC_TIMEOUT_MS), ==, 1007);
	wsc_free(c);
	/* In a binary frame it is merely invalid JSON. */
	c = testd_connect(d);
	wsc_send_frame(c, WSC_BINARY, true, bad, sizeof bad - 1);
	json_object_put(wsc_expect_error(c, "INVALID_JSON"));
	wsc_expect_quiet(c);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_slow_reader(void)
{
	/* A small queue bound makes the test quick; kernel buffers take the
	 * first few MiB, so the flood is well past them. */
	struct testd *d = testd_start("[limits]\nmax_message_bytes = 16384\nmax_queued_bytes = 262144\n"
				      "messages_per_second = 0\n", NULL);
	struct wsc *slow = testd_register_slow(d, "flood", "slow");
	struct wsc *fast = testd_register(d, "flood", "fast", NULL);
	long rss_before = testd_rss_kib(d);
	g_autofree char *msg = testd_message_to("slow", 8000);

	/* Send up to 40 MiB; the server must refuse long before. */
	json_object *failed = NULL;
	for (int i = 0; i < 5000 && !failed; i++) {
		wsc_send_text(fast, msg);
		struct pollfd p = { .fd = fast->fd, .events = POLLIN };
		if (poll(&p, 1, 0) == 1)
			failed = wsc_expect_error(fast, "DELIVERY_FAILED");
	}
	if (!failed)
		failed = wsc_expect_error(fast, "DELIVERY_FAILED");
	g_assert_cmpstr(testd_str(failed, "to_peer_id"), ==, "slow");
	json_object_put(failed);

	long rss_after = testd_rss_kib(d);
	g_test_message("daemon RSS before %ld KiB, after the flood %ld KiB", rss_before, rss_after);
	g_assert_cmpint(rss_after - rss_before, <, 16 * 1024);
	g_assert_true(testd_wait_log(d, "event=limit_hit room=flood peer=slow", 5000));

	/* The slow peer, once it reads, finds a 1008 close after what the
	 * kernel already held. */
	slow->auto_pong = true;
	g_assert_cmpint(wsc_wait_close(slow, 10000), ==, 1008);
	wsc_free(slow);
	g_assert_true(testd_wait_log(d, "event=peer_left room=flood peer=slow", 10000));

	/* The sender is still served (after the DELIVERY_FAILED answers to
	 * what it had in flight), and so is everyone else. */
	wsc_send_text(fast, "{\"type\":\"peer_message\",\"to_peer_id\":\"slow\",\"payload\":1}");
	for (int i = 0; i <= 5000; i++) {
		json_object *o = wsc_expect(fast, "error");
		bool done = g_strcmp0(testd_str(o, "code"), "PEER_NOT_FOUND") == 0;
		if (!done)
			g_assert_cmpstr(testd_str(o, "code"), ==, "DELIVERY_FAILED");
		json_object_put(o);
		if (done)
			break;
	}
	assert_bystanders_fine(d, "flood");
	wsc_free(fast);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_room_full(void)
{
	struct testd *d = testd_start("[limits]\nmax_peers_per_room = 2\n", NULL);
	struct wsc *a = testd_register(d, "small", "a", NULL);
	struct wsc *b = testd_register(d, "small", "b", NULL);
	struct wsc *c = testd_connect(d);
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"c\",\"room_id\":\"small\"}");
	json_object *o = wsc_expect_error(c, "ROOM_FULL");
	g_assert_cmpstr(testd_str(o, "reason"), ==, "Room is full");
	json_object_put(o);
	/* Replacing a member is not joining. */
	struct wsc *b2 = testd_register(d, "small", "b", NULL);
	json_object_put(wsc_expect_error(b, "SESSION_REPLACED"));
	/* Another room is fine; a seat that frees up can be taken. */
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"c\",\"room_id\":\"other\"}");
	json_object_put(wsc_expect(c, "registered_auth"));
	wsc_free(a);
	g_assert_true(testd_wait_log(d, "event=peer_left room=small peer=a", 5000));
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"c\",\"room_id\":\"small\"}");
	json_object_put(wsc_expect(c, "registered_auth"));
	wsc_free(b);
	wsc_free(b2);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_max_sessions(void)
{
	struct testd *d = testd_start("[limits]\nmax_sessions = 3\n", NULL);
	struct wsc *c[3];
	g_autoptr(GError) err = NULL;

	for (int i = 0; i < 3; i++)
		c[i] = testd_connect(d);
	struct wsc *extra = wsc_connect("127.0.0.1", d->port, "/", &err);
	g_assert_null(extra);
	g_assert_nonnull(err);
	g_clear_error(&err);
	g_assert_true(testd_wait_log(d, "code=max_sessions", 5000));
	/* A crowd at the door is counted, and logged once a second at most. */
	gint64 t0 = g_get_monotonic_time();
	for (int i = 0; i < 20; i++) {
		g_assert_null(wsc_connect("127.0.0.1", d->port, "/", &err));
		g_clear_error(&err);
	}
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_sessions_refused_total{reason=\"max_sessions\"}"), ==, 21);
	gint64 secs = (g_get_monotonic_time() - t0) / G_USEC_PER_SEC;
	g_assert_cmpuint(testd_log_count(d, "code=max_sessions"), <=, 2 + secs);
	/* The three are still served. */
	for (int i = 0; i < 3; i++)
		wsc_expect_quiet(c[i]);
	wsc_free(c[0]);
	/* A freed slot is available again. */
	g_assert_true(testd_wait_log(d, "connection released, 2 open", 5000));
	struct wsc *again = testd_connect(d);
	wsc_free(again);
	wsc_free(c[1]);
	wsc_free(c[2]);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_metadata_and_depth_limits(void)
{
	struct testd *d = testd_start("[limits]\nmax_metadata_bytes = 100\nmax_json_depth = 5\n", NULL);
	struct wsc *c = testd_connect(d);

	wsc_send_text(c, "{\"type\":\"register\",\"room_id\":\"m\",\"metadata\":{\"properties\":"
			 "{\"x\":\"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"}}}");
	json_object_put(wsc_expect_error(c, "INVALID_MESSAGE"));
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"m1\",\"room_id\":\"m\",\"protocol\":\"2.1\","
			 "\"metadata\":{\"properties\":{\"x\":1}}}");
	json_object_put(wsc_expect(c, "registered_auth"));
	wsc_send_text(c, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"y\":"
			 "\"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"}}}");
	json_object_put(wsc_expect_error(c, "INVALID_MESSAGE"));
	wsc_send_text(c, "{\"type\":\"ping\",\"a\":[[[[1]]]]}"); /* depth 5 */
	json_object_put(wsc_expect(c, "pong"));
	wsc_send_text(c, "{\"type\":\"ping\",\"a\":[[[[[1]]]]]}"); /* depth 6 */
	json_object_put(wsc_expect_error(c, "INVALID_JSON"));
	wsc_expect_quiet(c);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_keepalive(void)
{
	struct testd *d = testd_start("[server]\napp_ping_interval = 1\nws_ping_interval = 1\nws_ping_timeout = 3\n", NULL);
	struct wsc *registered = testd_register(d, "ka", "alive", NULL);
	struct wsc *unregistered = testd_connect(d);
	struct wsc *deaf = testd_connect(d);
	gint64 end = g_get_monotonic_time() + 15 * G_USEC_PER_SEC;
	int app_pings = 0, deaf_code = -1;

	/* Serve the two live clients (reading is what answers WebSocket
	 * pings) until the server hangs up on the one that never answers. */
	deaf->auto_pong = false;
	while (deaf_code < 0 && g_get_monotonic_time() < end) {
		GBytes *b = NULL;
		if (wsc_recv(registered, 100, &b, NULL) == 0) {
			g_assert_cmpmem(g_bytes_get_data(b, NULL), g_bytes_get_size(b), "{\"type\":\"ping\"}", 15);
			app_pings++;
			g_bytes_unref(b);
		}
		/* The application ping goes to registered peers only. */
		g_assert_cmpint(wsc_recv(unregistered, 100, &b, NULL), ==, -ETIMEDOUT);
		deaf_code = wsc_wait_close(deaf, 100);
	}
	g_assert_cmpint(deaf_code, >, 0);
	g_assert_cmpint(app_pings, >=, 2);
	/* Those that answered are still there (app pings may come first). */
	g_assert_cmpint(registered->close_code, ==, -1);
	wsc_send_text(registered, "{\"type\":\"pong\"}");
	wsc_send_text(registered, "{\"type\":\"ping\"}");
	bool pong = false;
	for (int i = 0; i < 10 && !pong; i++) {
		json_object *o = wsc_recv_json(registered);
		pong = strcmp(json_object_get_string(json_object_object_get(o, "type")), "pong") == 0;
		json_object_put(o);
	}
	g_assert_true(pong);
	wsc_expect_quiet(unregistered);
	wsc_free(deaf);
	wsc_free(registered);
	wsc_free(unregistered);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_message_rate(void)
{
	struct testd *d = testd_start("[limits]\nmessages_per_second = 20\nmessages_burst = 10\n", NULL);
	struct wsc *c = testd_connect(d);
	int pongs = 0, limited = 0;

	/* A burst of 10, then RATE_LIMITED: sent faster than 20/s. */
	for (int i = 0; i < 15; i++)
		wsc_send_text(c, "{\"type\":\"ping\"}");
	for (int i = 0; i < 15; i++) {
		json_object *o = wsc_recv_json(c);
		if (g_strcmp0(testd_str(o, "type"), "pong") == 0)
			pongs++;
		else if (g_strcmp0(testd_str(o, "code"), "RATE_LIMITED") == 0)
			limited++;
		json_object_put(o);
	}
	g_test_message("%d answered, %d refused", pongs, limited);
	g_assert_cmpint(pongs, >=, 10);
	g_assert_cmpint(pongs, <=, 11); /* a token may refill meanwhile */
	g_assert_cmpint(pongs + limited, ==, 15);
	/* It recovers: tokens come back at 20 a second.  Refill is a matter of
	 * time, not of an event: wait one token's worth. */
	g_usleep(G_USEC_PER_SEC / 20 + 20000);
	wsc_send_text(c, "{\"type\":\"ping\"}");
	json_object_put(wsc_expect(c, "pong"));
	g_assert_cmpint(c->close_code, ==, -1);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* Round trips of 200 pings from C, sorted, in milliseconds; peer messages
 * arriving meanwhile are counted in *OTHERS. */
static GArray *ping_times(struct wsc *c, unsigned *others)
{
	GArray *t = g_array_new(FALSE, FALSE, sizeof(double));
	for (int i = 0; i < 200; i++) {
		gint64 t0 = g_get_monotonic_time();
		wsc_send_text(c, "{\"type\":\"ping\"}");
		for (;;) {
			json_object *o = wsc_recv_json(c);
			bool pong = g_strcmp0(testd_str(o, "type"), "pong") == 0;
			if (!pong && g_strcmp0(testd_str(o, "type"), "peer_message") != 0)
				g_error("victim got %s", json_object_to_json_string(o));
			json_object_put(o);
			if (pong)
				break;
			(*others)++;
		}
		double ms = (double)(g_get_monotonic_time() - t0) / 1000.0;
		g_array_append_val(t, ms);
	}
	qsort(t->data, t->len, sizeof(double), cmp_double);
	return t;
}

struct flood {
	struct wsc *c;
	gint stop;
	unsigned sent;
};

static gpointer flood_main(gpointer data)
{
	struct flood *f = data;
	while (!g_atomic_int_get(&f->stop) && f->c->close_code < 0) {
		/* Never block in send(): once the server stops reading, a
		 * blocked attacker could not take its close frame either. */
		struct pollfd p = { .fd = f->c->fd, .events = POLLOUT };
		if (poll(&p, 1, 100) != 1)
			continue;
		if (wsc_send_text(f->c, "{\"type\":\"peer_message\",\"to_peer_id\":\"victim\",\"payload\":\"x\"}") < 0)
			break;
		f->sent++;
	}
	return NULL;
}

static void test_flood_isolation(void)
{
	/* A rate the victim's pings stay under and a flood does not. */
	struct testd *d = testd_start("[limits]\nmessages_per_second = 2000\nmessages_burst = 500\n", NULL);
	struct wsc *victim = testd_register(d, "iso", "victim", NULL);
	struct wsc *attacker = testd_register(d, "iso", "attacker", NULL);
	unsigned got = 0;
	g_autoptr(GArray) calm = ping_times(victim, &got);
	struct flood f = { .c = attacker };

	/* The attacker floods (peer_message to the victim, far over its rate)
	 * and never reads: it gets RATE_LIMITED, then a 1008 close. */
	GThread *t = g_thread_new("flood", flood_main, &f);
	g_autoptr(GArray) flooded = ping_times(victim, &got);
	g_assert_true(testd_wait_log(d, "kept sending over messages_per_second", 10000));
	g_atomic_int_set(&f.stop, 1);
	g_thread_join(t);
	g_assert_cmpint(wsc_wait_close(attacker, 10000), ==, 1008);

	double calm_p50 = g_array_index(calm, double, 100), calm_p99 = g_array_index(calm, double, 197);
	double fl_p50 = g_array_index(flooded, double, 100), fl_p99 = g_array_index(flooded, double, 197);
	g_test_message("victim ping round trip, calm: p50 %.3f ms p99 %.3f ms; during a flood of %u "
		       "messages: p50 %.3f ms p99 %.3f ms", calm_p50, calm_p99, f.sent, fl_p50, fl_p99);
	/* The bound: a flood costs the others little (these machines are
	 * shared and noisy, hence the generous margin). */
	g_assert_cmpfloat(fl_p99, <, 50.0);
	/* The victim got at most the burst of the attacker's messages (and
	 * what the rate let through until the close). */
	GBytes *b = NULL;
	while (wsc_recv(victim, 200, &b, NULL) == 0) {
		got++;
		g_bytes_unref(b);
	}
	g_assert_cmpuint(got, <=, 500 + 2000 * 10);
	wsc_free(attacker);
	wsc_free(victim);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static struct wsc *connect_from(struct testd *d, const char *source, const char *headers, GError **err)
{
	const struct wsc_opts o = { .source = source, .headers = headers };
	return wsc_connect_opts(&o, "127.0.0.1", d->port, "/", err);
}

static void test_connections_per_address(void)
{
	struct testd *d = testd_start("[limits]\nconnections_per_address = 3\n", NULL);
	struct wsc *c[3];
	g_autoptr(GError) err = NULL;

	for (int i = 0; i < 3; i++) {
		c[i] = connect_from(d, "127.0.0.1", NULL, &err);
		g_assert_no_error(err);
	}
	g_assert_null(connect_from(d, "127.0.0.1", NULL, &err));
	g_assert_nonnull(strstr(err->message, "429"));
	g_clear_error(&err);
	g_assert_true(testd_wait_log(d, "code=connections_per_address", 5000));
	/* Another address is another count. */
	struct wsc *other = connect_from(d, "127.0.0.2", NULL, &err);
	g_assert_no_error(err);
	wsc_expect_quiet(other);
	/* A closed connection gives its slot back. */
	wsc_free(c[0]);
	g_assert_true(testd_wait_log(d, "connection released", 5000));
	c[0] = connect_from(d, "127.0.0.1", NULL, &err);
	g_assert_no_error(err);
	for (int i = 0; i < 3; i++)
		wsc_free(c[i]);
	wsc_free(other);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_registrations_per_address(void)
{
	struct testd *d = testd_start("[limits]\nregistrations_per_address_per_minute = 3\n", NULL);
	struct wsc *c = testd_connect(d);
	g_autoptr(GError) err = NULL;

	/* Successes have their ceiling too (failures: tests/test-abuse.c). */
	for (int i = 0; i < 3; i++) {
		wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"p%d\",\"room_id\":\"r\"}", i);
		json_object_put(wsc_expect(c, "registered_auth"));
	}
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"p9\",\"room_id\":\"r\"}");
	json_object_put(wsc_expect_error(c, "RATE_LIMITED"));
	/* From another address it goes on. */
	struct wsc *other = connect_from(d, "127.0.0.3", NULL, &err);
	g_assert_no_error(err);
	wsc_send_text(other, "{\"type\":\"register\",\"peer_id\":\"o\",\"room_id\":\"r\"}");
	json_object_put(wsc_expect(other, "registered_auth"));
	/* And it recovers: 3 a minute is one every 20 s; not waited for here,
	 * the limiter's unit test covers the refill. */
	wsc_free(c);
	wsc_free(other);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* The registration limiter tracks as many addresses as max_sessions; one
 * more makes it forget the least recent, which the metrics show. */
static void test_address_evictions(void)
{
	struct testd *d = testd_start("[limits]\nmax_sessions = 2\nregistrations_per_address_per_minute = 1\n",
				      NULL);
	const char *const sources[] = { "127.0.0.1", "127.0.0.2", "127.0.0.3" };
	const char *name = "rtcsignald_address_evictions_total";
	g_autoptr(GError) err = NULL;

	g_assert_cmpfloat(testd_metric(d, name), ==, 0);
	for (size_t i = 0; i < G_N_ELEMENTS(sources); i++) {
		struct wsc *c = connect_from(d, sources[i], NULL, &err);
		g_assert_no_error(err);
		wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"p%zu\",\"room_id\":\"r\"}", i);
		json_object_put(wsc_expect(c, "registered_auth"));
		wsc_free(c);
		g_assert_true(testd_wait_log_count(d, "connection released", (unsigned)i + 1, 5000));
	}
	/* Published by the loop's once-a-second tick. */
	gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
	while (testd_metric(d, name) < 1 && g_get_monotonic_time() < deadline)
		g_usleep(50 * 1000);
	g_assert_cmpfloat(testd_metric(d, name), ==, 1);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_trusted_proxy(void)
{
	struct testd *d = testd_start("[server]\ntrusted_proxies = 127.0.0.1\n"
				      "[limits]\nconnections_per_address = 2\n", NULL);
	g_autoptr(GError) err = NULL;
	const char *alice = "X-Forwarded-For: 203.0.113.5\r\n", *bob = "X-Forwarded-For: 203.0.113.6\r\n";

	/* Behind the proxy the header names the client, also for the open-mode
	 * rule: a remote client is refused, though the proxy is on loopback. */
	g_assert_null(connect_from(d, "127.0.0.1", alice, &err));
	g_assert_nonnull(strstr(err->message, "403"));
	g_clear_error(&err);
	g_assert_true(testd_wait_log(d, "remote=203.0.113.5 code=not_loopback", 5000));
	/* A client padding the header's front past any small buffer is still
	 * judged by the entry the proxy appended, not taken for the proxy. */
	GString *padded = g_string_new("X-Forwarded-For: ");
	while (padded->len < 3000)
		g_string_append(padded, "198.51.100.1, ");
	g_string_append(padded, "203.0.113.7\r\n");
	g_assert_null(connect_from(d, "127.0.0.1", padded->str, &err));
	g_assert_nonnull(strstr(err->message, "403"));
	g_clear_error(&err);
	g_assert_true(testd_wait_log(d, "remote=203.0.113.7 code=not_loopback", 5000));
	g_string_free(padded, TRUE);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);

	d = testd_start("[server]\ntrusted_proxies = 127.0.0.1\nallow_anonymous = true\n"
			"[limits]\nconnections_per_address = 2\n", NULL);
	struct wsc *a[2];
	for (int i = 0; i < 2; i++) {
		a[i] = connect_from(d, "127.0.0.1", alice, &err);
		g_assert_no_error(err);
	}
	g_assert_null(connect_from(d, "127.0.0.1", alice, &err));
	g_assert_nonnull(strstr(err->message, "429"));
	g_clear_error(&err);
	struct wsc *b = connect_from(d, "127.0.0.1", bob, &err);
	g_assert_no_error(err);
	wsc_send_text(b, "{\"type\":\"register\",\"peer_id\":\"b\",\"room_id\":\"p\"}");
	json_object_put(wsc_expect(b, "registered_auth"));
	g_assert_true(testd_wait_log(d, "remote=203.0.113.6", 5000));
	/* An untrusted peer's header is ignored: 127.0.0.2 is itself. */
	struct wsc *spoof = connect_from(d, "127.0.0.2", alice, &err);
	g_assert_no_error(err);
	wsc_send_text(spoof, "{\"type\":\"register\",\"peer_id\":\"s\",\"room_id\":\"p\"}");
	json_object_put(wsc_expect(spoof, "registered_auth"));
	g_assert_true(testd_wait_log(d, "remote=127.0.0.2", 5000));
	wsc_free(spoof);
	wsc_free(b);
	wsc_free(a[0]);
	wsc_free(a[1]);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* ---- answers to a peer's own requests (issue 12, finding 6) ---- */

/* A room filled to max_peers_per_room, each peer with max_metadata_bytes
 * of public metadata, while the queue bound is at its minimum (the size
 * of one message): its registered_auth and peer_list are many times the
 * queue bound, and still they are answers, not a slow reader's backlog. */
#define BIG_PEERS 40
#define BIG_META 16000
static const char big_conf[] = "[limits]\nmax_peers_per_room = 40\nmax_metadata_bytes = 16000\n"
			       "max_message_bytes = 32768\nmax_queued_bytes = 32768\n"
			       "messages_per_second = 0\nregistrations_per_address_per_minute = 0\n";

/* A register's EXTRA with metadata of exactly BIG_META bytes. */
static char *big_metadata(void)
{
	static const char head[] = "{\"blob\":\"", tail[] = "\"}";
	g_autofree char *blob = g_strnfill(BIG_META - (sizeof head - 1) - (sizeof tail - 1), 'm');
	return g_strdup_printf(",\"metadata\":%s%s%s", head, blob, tail);
}

/* BIG_PEERS - 1 members with big metadata in room "big". */
static struct wsc **fill_big_room(struct testd *d)
{
	g_autofree char *extra = big_metadata();
	struct wsc **members = g_new0(struct wsc *, BIG_PEERS);
	for (int i = 0; i < BIG_PEERS - 1; i++) {
		g_autofree char *id = g_strdup_printf("m%02d", i);
		members[i] = testd_register(d, "big", id, extra);
	}
	return members;
}

static void free_members(struct wsc **members)
{
	for (int i = 0; i < BIG_PEERS; i++)
		if (members[i])
			wsc_free(members[i]);
	g_free(members);
}

static int peer_count(json_object *list)
{
	return json_object_get_int(json_object_object_get(list, "count"));
}

static void test_big_room_answers(void)
{
	struct testd *d = testd_start(big_conf, NULL);
	struct wsc **members = fill_big_room(d);
	g_autofree char *extra = big_metadata();

	/* The last seat: its registered_auth lists 39 mates (624 KB), 19
	 * times max_queued_bytes. */
	struct wsc *late = testd_connect(d);
	wsc_sendf(late, "{\"type\":\"register\",\"peer_id\":\"late\",\"room_id\":\"big\"%s}", extra);
	json_object *o = wsc_expect(late, "registered_auth");
	g_assert_cmpint(json_object_object_length(json_object_object_get(o, "peer_metadata")), ==,
			BIG_PEERS - 1);
	json_object_put(o);
	/* And it discovers the whole room. */
	wsc_send_text(late, "{\"type\":\"discover_peers\"}");
	o = wsc_expect(late, "peer_list");
	g_assert_cmpint(peer_count(o), ==, BIG_PEERS - 1);
	json_object_put(o);
	/* A member that was there first discovers too. */
	wsc_send_text(members[0], "{\"type\":\"discover_peers\"}");
	o = wsc_expect(members[0], "peer_list");
	g_assert_cmpint(peer_count(o), ==, BIG_PEERS - 1);
	json_object_put(o);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_limit_hits_total{limit=\"max_queued_bytes\"}"), ==, 0);

	/* The room is full now: max_peers_per_room still holds. */
	struct wsc *extra_peer = testd_connect(d);
	wsc_send_text(extra_peer, "{\"type\":\"register\",\"peer_id\":\"x\",\"room_id\":\"big\"}");
	json_object_put(wsc_expect_error(extra_peer, "ROOM_FULL"));
	wsc_free(extra_peer);

	/* A slow reader of peer messages is still closed with 1008: the
	 * exemption is for answers only. */
	wsc_free(members[1]);
	members[1] = NULL;
	g_assert_true(testd_wait_log(d, "event=peer_left room=big peer=m01", 5000));
	struct wsc *slow = testd_register_slow(d, "big", "slow");
	g_autofree char *msg = testd_message_to("slow", 8000);
	json_object *failed = NULL;
	for (int i = 0; i < 5000 && !failed; i++) {
		wsc_send_text(late, msg);
		struct pollfd p = { .fd = late->fd, .events = POLLIN };
		if (poll(&p, 1, 0) == 1)
			failed = wsc_expect_error(late, "DELIVERY_FAILED");
	}
	g_assert_nonnull(failed);
	json_object_put(failed);
	slow->auto_pong = true;
	g_assert_cmpint(wsc_wait_close(slow, 10000), ==, 1008);
	wsc_free(slow);

	wsc_free(late);
	free_members(members);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* At most one answer over the queue bound waits per session: a client
 * that asks again and again without reading gets RATE_LIMITED, is not
 * closed, and gets its answers once it reads. */
static void test_one_big_answer_waits(void)
{
	struct testd *d = testd_start(big_conf, NULL);
	struct wsc **members = fill_big_room(d);
	const struct wsc_opts small = { .rcvbuf = 4096 };
	g_autoptr(GError) err = NULL;
	struct wsc *c = wsc_connect_opts(&small, "127.0.0.1", d->port, "/", &err);
	g_assert_no_error(err);
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"asker\",\"room_id\":\"big\",\"protocol\":\"2.1\"}");
	json_object_put(wsc_expect(c, "registered_auth"));

	/* 40 asks of 624 KB: far more than the kernel buffers take. */
	enum { ASKS = 40 };
	const char *asked = "rtcsignald_messages_received_total{type=\"discover_peers\"}";
	double before = testd_metric(d, asked);
	for (int i = 0; i < ASKS; i++)
		wsc_send_text(c, "{\"type\":\"discover_peers\"}");
	/* Every ask in before reading any answer: however fast or slow the
	 * daemon, the answers then meet a full socket. */
	g_assert_cmpfloat(testd_await_metric(d, asked, before + ASKS, 60000), ==, before + ASKS);
	unsigned lists = 0, refused = 0;
	for (int i = 0; i < ASKS; i++) {
		json_object *o = wsc_recv_json(c);
		if (g_strcmp0(testd_str(o, "type"), "peer_list") == 0) {
			g_assert_cmpint(peer_count(o), ==, BIG_PEERS - 1);
			lists++;
		} else {
			g_assert_cmpstr(testd_str(o, "code"), ==, "RATE_LIMITED");
			refused++;
		}
		json_object_put(o);
	}
	g_test_message("%u answers, %u refused", lists, refused);
	g_assert_cmpuint(lists, >=, 2);
	g_assert_cmpuint(refused, >=, 1);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_limit_hits_total{limit=\"answer_in_flight\"}"), ==,
			  refused);
	/* Still served. */
	wsc_send_text(c, "{\"type\":\"discover_peers\"}");
	json_object *o = wsc_expect(c, "peer_list");
	json_object_put(o);
	wsc_free(c);
	free_members(members);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* A room's answer is bounded by max_peers_per_room x max_metadata_bytes:
 * configuration keeps that product in range. */
static void test_room_answer_bound_config(void)
{
	const char *bin = g_getenv("RTCSIGNALD") ? g_getenv("RTCSIGNALD") : "src/rtcsignald";
	g_autofree char *dir = g_dir_make_tmp("rtcsignald-limits-XXXXXX", NULL);
	g_autofree char *conf = g_build_filename(dir, "c.conf", NULL);
	g_autofree char *out = NULL, *err = NULL;
	int status = 0;

	g_assert_true(g_file_set_contents(conf, "[limits]\nmax_peers_per_room = 300000\n", -1, NULL));
	const char *argv[] = { bin, "--check-config", "--config", conf, NULL };
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
				   &status, NULL));
	g_assert_cmpint(WEXITSTATUS(status), ==, 78);
	g_assert_nonnull(strstr(err, "max_peers_per_room x max_metadata_bytes"));
	/* Smaller metadata makes the same room size fine. */
	g_assert_true(g_file_set_contents(conf, "[limits]\nmax_peers_per_room = 300000\n"
					  "max_metadata_bytes = 4096\n", -1, NULL));
	g_clear_pointer(&out, g_free);
	g_clear_pointer(&err, g_free);
	g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
				   &status, NULL));
	g_assert_cmpint(WEXITSTATUS(status), ==, 0);
	g_unlink(conf);
	g_rmdir(dir);
}

/* ---- persistent room quotas (issue 12, finding 9) ---- */

#define ADMIN_TOKEN "quota-admin-token-0123456789abcdef"

/* A registered open-mode peer from SOURCE, which may create rooms. */
static struct wsc *creator_from(struct testd *d, const char *source, const char *peer)
{
	g_autoptr(GError) err = NULL;
	struct wsc *c = connect_from(d, source, NULL, &err);
	g_assert_no_error(err);
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"lobby\"}", peer);
	json_object_put(wsc_expect(c, "registered_auth"));
	return c;
}

/* A create_room from C: the new room's id (g_free), or NULL when refused
 * with RATE_LIMITED naming QUOTA. */
static char *create_from(struct wsc *c, const char *body, const char *quota)
{
	wsc_sendf(c, "{\"type\":\"create_room\"%s}", body ? body : "");
	if (quota) {
		json_object *e = wsc_expect_error(c, "RATE_LIMITED");
		if (!strstr(testd_str(e, "message"), quota))
			g_error("refusal does not name %s: %s", quota, testd_str(e, "message"));
		json_object_put(e);
		return NULL;
	}
	json_object *o = wsc_expect(c, "room_created");
	char *id = g_strdup(testd_str(o, "room_id"));
	json_object_put(o);
	return id;
}

static void admin_call(struct testd *d, const char *method, const char *path, const char *body,
		       int want)
{
	struct httpc_reply r;
	g_assert_cmpint(testd_http(d->admin_port, method, path,
				     "Authorization: Bearer " ADMIN_TOKEN "\r\nContent-Type: application/json\r\n",
				     body, &r), ==, 0);
	g_assert_cmpint(r.status, ==, want);
	httpc_reply_clear(&r);
}

static double quota_hits(struct testd *d, const char *key)
{
	g_autofree char *name = g_strdup_printf("rtcsignald_limit_hits_total{limit=\"%s\"}", key);
	return testd_metric(d, name);
}

static void test_room_quotas(void)
{
	struct testd *d = testd_start("[admin]\ntoken = " ADMIN_TOKEN "\n"
				      "[rooms]\nmax_rooms_per_address = 3\nmax_rooms_per_creator = 5\n"
				      "max_rooms = 7\n", NULL);
	struct wsc *a = creator_from(d, "127.0.0.1", "a");
	struct wsc *b = creator_from(d, "127.0.0.2", "b");
	char *ids[3];

	/* Per address: the fourth from 127.0.0.1 is refused... */
	for (int i = 0; i < 3; i++)
		ids[i] = create_from(a, NULL, NULL);
	g_assert_null(create_from(a, NULL, "max_rooms_per_address"));
	/* ...per creator (in open mode every creator is "anonymous"): 5. */
	g_free(create_from(b, NULL, NULL));
	g_free(create_from(b, NULL, NULL));
	g_assert_null(create_from(b, NULL, "max_rooms_per_creator"));

	/* A deleted room frees its quotas: address and creator (both were
	 * full, so this creation proves both). */
	g_autofree char *path = g_strdup_printf("/api/rooms/%s", ids[0]);
	admin_call(d, "DELETE", path, NULL, 200);
	g_free(create_from(a, NULL, NULL));
	g_assert_null(create_from(a, NULL, "max_rooms_per_creator"));

	/* Globally: rooms the operator made count too (and are never refused). */
	admin_call(d, "POST", "/api/rooms", "{}", 201);
	admin_call(d, "POST", "/api/rooms", "{}", 201);
	g_assert_null(create_from(b, NULL, "max_rooms"));
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_persistent_rooms"), ==, 7);

	g_assert_cmpfloat(quota_hits(d, "max_rooms_per_address"), ==, 1);
	g_assert_cmpfloat(quota_hits(d, "max_rooms_per_creator"), ==, 2);
	g_assert_cmpfloat(quota_hits(d, "max_rooms"), ==, 1);
	g_assert_true(testd_wait_log(d, "max_rooms_per_address", 0));
	for (int i = 0; i < 3; i++)
		g_free(ids[i]);
	wsc_free(a);
	wsc_free(b);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* An expired room frees its quota at expiry. */
static void test_room_quota_expiry(void)
{
	struct testd *d = testd_start("[rooms]\nmax_rooms_per_address = 1\n", NULL);
	struct wsc *a = creator_from(d, "127.0.0.1", "a");

	g_free(create_from(a, ",\"expires_in\":2", NULL));
	g_assert_null(create_from(a, NULL, "max_rooms_per_address"));
	g_assert_true(testd_wait_log(d, "room expired", 10000));
	g_free(create_from(a, NULL, NULL));
	wsc_free(a);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* POST /create-room shares the quotas: per creator (the JWT subject) and
 * per address, answered 429 naming the key. */
static json_object *quota_claims(const char *sub)
{
	gint64 now = g_get_real_time() / G_USEC_PER_SEC;
	json_object *o = json_object_new_object();
	json_object_object_add(o, "iss", json_object_new_string("https://id.example.org/q"));
	json_object_object_add(o, "aud", json_object_new_string("rtcsignald"));
	json_object_object_add(o, "sub", json_object_new_string(sub));
	json_object_object_add(o, "exp", json_object_new_int64(now + 600));
	json_object_object_add(o, "iat", json_object_new_int64(now - 5));
	return o;
}

static void http_create(struct testd *d, EVP_PKEY *key, const char *sub, int want, const char *quota)
{
	g_autofree char *jwt = jwtmint_token(key, "q1", quota_claims(sub));
	g_autofree char *hdr = g_strdup_printf("Authorization: Bearer %s\r\n", jwt);
	struct httpc_reply r;
	g_assert_cmpint(testd_http(d->port, "POST", "/create-room", hdr, "{}", &r), ==, 0);
	g_assert_cmpint(r.status, ==, want);
	if (quota)
		g_assert_nonnull(strstr(r.body->str, quota));
	httpc_reply_clear(&r);
}

static void test_room_quota_http(void)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	g_autofree char *jwk = jwtmint_jwk(key, "q1", "");
	g_autofree char *doc = g_strdup_printf("{\"keys\":[%s]}", jwk);
	g_autofree char *dir = g_dir_make_tmp("rtcsignald-quota-XXXXXX", NULL);
	g_autofree char *jwks = g_build_filename(dir, "jwks.json", NULL);
	g_assert_true(g_file_set_contents(jwks, doc, -1, NULL));
	g_autofree char *conf = g_strdup_printf(
		"[issuer q]\nissuer = https://id.example.org/q\naudience = rtcsignald\njwks_file = %s\n"
		"[rooms]\nmax_rooms_per_creator = 2\nmax_rooms_per_address = 3\n", jwks);
	struct testd *d = testd_start(conf, NULL);

	http_create(d, key, "ada", 201, NULL);
	http_create(d, key, "ada", 201, NULL);
	http_create(d, key, "ada", 429, "max_rooms_per_creator");
	http_create(d, key, "bob", 201, NULL); /* another creator: its own quota */
	http_create(d, key, "bob", 429, "max_rooms_per_address");
	g_assert_cmpfloat(quota_hits(d, "max_rooms_per_creator"), ==, 1);
	g_assert_cmpfloat(quota_hits(d, "max_rooms_per_address"), ==, 1);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	g_unlink(jwks);
	g_rmdir(dir);
	EVP_PKEY_free(key);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	g_test_add_func("/limits/message-too-large", test_message_too_large);
	g_test_add_func("/limits/configured-message-limit", test_configured_message_limit);
	g_test_add_func("/limits/invalid-utf8", test_invalid_utf8);
	g_test_add_func("/limits/slow-reader", test_slow_reader);
	g_test_add_func("/limits/room-full", test_room_full);
	g_test_add_func("/limits/max-sessions", test_max_sessions);
	g_test_add_func("/limits/metadata-and-depth", test_metadata_and_depth_limits);
	g_test_add_func("/limits/keepalive", test_keepalive);
	g_test_add_func("/limits/message-rate", test_message_rate);
	g_test_add_func("/limits/flood-isolation", test_flood_isolation);
	g_test_add_func("/limits/connections-per-address", test_connections_per_address);
	g_test_add_func("/limits/registrations-per-address", test_registrations_per_address);
	g_test_add_func("/limits/address-evictions", test_address_evictions);
	g_test_add_func("/limits/trusted-proxy", test_trusted_proxy);
	g_test_add_func("/limits/big-room-answers", test_big_room_answers);
	g_test_add_func("/limits/one-big-answer-waits", test_one_big_answer_waits);
	g_test_add_func("/limits/room-answer-bound-config", test_room_answer_bound_config);
	g_test_add_func("/limits/room-quotas", test_room_quotas);
	g_test_add_func("/limits/room-quota-expiry", test_room_quota_expiry);
	g_test_add_func("/limits/room-quota-http", test_room_quota_http);
	return g_test_run();
}
