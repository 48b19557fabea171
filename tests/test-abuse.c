/* Abuse limits that do not hurt real users (issue 16): failed
 * registrations per address have their own small budget, successful ones
 * a much higher ceiling, and a connection that keeps guessing is closed. */
#include "testd.h"

#include <string.h>

#define ADMIN "abuse-admin-token-0123456789abcdef"
#define CONF "[admin]\ntoken = " ADMIN "\nrequests_per_second = 0\n"
#define HITS(limit) "rtcsignald_limit_hits_total{limit=\"" limit "\"}"

/* A persistent room: its id and token (g_free both). */
static void make_room(struct testd *d, char **room, char **token)
{
	json_object *o = testd_admin_api(d, ADMIN, "POST", "/api/rooms", "{}", 201);
	*room = g_strdup(testd_str(o, "room_id"));
	*token = g_strdup(testd_str(o, "token"));
	json_object_put(o);
}

/* A lab of 100 workers behind one address restarting five times: 500
 * registrations with the right token, each on a new socket, within
 * seconds, on the defaults.  A few wrong guesses in between from the same
 * address do not change that. */
static void test_lab_reconnects(void)
{
	enum { N = 500, WORKERS = 100 };
	struct testd *d = testd_start(CONF, NULL);
	g_autofree char *room = NULL, *token = NULL;
	make_room(d, &room, &token);
	g_autofree char *extra = g_strdup_printf(",\"token\":\"%s\"", token);

	gint64 t0 = g_get_monotonic_time();
	for (int i = 0; i < N; i++) {
		g_autofree char *id = g_strdup_printf("w%d", i % WORKERS);
		struct wsc *c = testd_register(d, room, id, extra);
		if (i % 100 == 50) {
			wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"x\",\"room_id\":\"%s\",\"token\":\"no\"}",
				  room);
			json_object_put(wsc_expect_error(c, "AUTH_FAILED"));
		}
		wsc_free(c);
	}
	g_test_message("%d registrations in %.2f s", N, (double)(g_get_monotonic_time() - t0) / 1e6);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_rate_limited_total"), ==, 0);
	g_assert_cmpfloat(testd_metric(d, HITS("registrations_per_address_per_minute")), ==, 0);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* Guessing a room's token from one address, a new socket per guess:
 * refused with RATE_LIMITED after the failure budget (60 at once by
 * default), counted under its own label, and logged a bounded number of
 * times (the log's coalescing).  Another address is not affected. */
static void test_guessing_stopped(void)
{
	enum { GUESSES = 300 };
	struct testd *d = testd_start(CONF, NULL);
	g_autofree char *room = NULL, *token = NULL;
	make_room(d, &room, &token);
	unsigned failed = 0, limited = 0, refilled = 0;
	gint64 start = g_get_monotonic_time();

	for (int i = 0; i < GUESSES; i++) {
		struct wsc *c = testd_connect(d);
		wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"g\",\"room_id\":\"%s\",\"token\":\"guess%d\"}",
			  room, i);
		json_object *e = wsc_expect(c, "error");
		const char *code = testd_str(e, "code");
		if (!strcmp(code, "AUTH_FAILED")) {
			refilled += limited > 0; /* a guess the refill allowed */
			failed++;
		} else {
			g_assert_cmpstr(code, ==, "RATE_LIMITED");
			limited++;
		}
		json_object_put(e);
		wsc_free(c);
	}
	/* The right token from the guessing address waits too (at once: the
	 * refill, 1 a second, went to the guesses)... */
	g_autofree char *extra = g_strdup_printf(",\"token\":\"%s\"", token);
	struct wsc *c = testd_connect(d);
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"ok\",\"room_id\":\"%s\"%s}", room, extra);
	json_object_put(wsc_expect_error(c, "RATE_LIMITED"));
	wsc_free(c);
	limited++;
	/* The burst, plus what refilled (1 a second) while this ran: a few
	 * seconds here, longer under valgrind or a sanitizer. */
	unsigned seconds = (unsigned)((g_get_monotonic_time() - start) / G_USEC_PER_SEC) + 2;
	g_test_message("%u guesses in %u s: %u refused as wrong, %u rate limited", GUESSES, seconds - 2,
		       failed, limited);
	g_assert_cmpuint(failed, >=, 60);
	g_assert_cmpuint(failed, <=, 60 + seconds);
	g_assert_cmpuint(refilled, <=, seconds);
	g_assert_cmpuint(limited, >=, GUESSES + 1 - 60 - seconds);
	g_assert_cmpfloat(testd_metric(d, HITS("failed_registrations_per_address_per_minute")), ==, limited);
	g_assert_cmpfloat(testd_metric(d, HITS("registrations_per_address_per_minute")), ==, 0);
	/* ...and from another address it goes on. */
	g_autoptr(GError) err = NULL;
	const struct wsc_opts from = { .source = "127.0.0.3" };
	c = wsc_connect_opts(&from, "127.0.0.1", d->port, "/", &err);
	g_assert_no_error(err);
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"ok\",\"room_id\":\"%s\"%s}", room, extra);
	json_object_put(wsc_expect(c, "registered_auth"));
	wsc_free(c);
	/* 300 refusals, a handful of lines: at most repeat_burst (5) per
	 * code per 5 s window, and a summary when a window ends (a few
	 * windows: the run took SECONDS). */
	unsigned lines = testd_log_count(d, "event=registration_refused");
	g_test_message("%u refusals logged in %u lines", GUESSES + 1, lines);
	g_assert_cmpuint(lines, <=, 2 * 6 * (seconds / 5 + 1));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* One connection that keeps guessing after its refusals is closed with
 * 1008 after failed_registrations_per_connection (10) of them. */
static void test_guessing_connection_closed(void)
{
	struct testd *d = testd_start(CONF, NULL);
	g_autofree char *room = NULL, *token = NULL;
	make_room(d, &room, &token);
	struct wsc *c = testd_connect(d);
	int i;

	for (i = 0; i < 10; i++) {
		wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"g\",\"room_id\":\"%s\",\"token\":\"guess%d\"}",
			  room, i);
		json_object_put(wsc_expect_error(c, "AUTH_FAILED"));
	}
	g_assert_cmpint(wsc_wait_close(c, 5000), ==, 1008);
	wsc_free(c);
	g_assert_cmpfloat(testd_metric(d, HITS("failed_registrations_per_connection")), ==, 1);
	g_assert_true(testd_wait_log(d, "too many failed registrations", 5000));
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	g_test_add_func("/abuse/lab-reconnects", test_lab_reconnects);
	g_test_add_func("/abuse/guessing-stopped", test_guessing_stopped);
	g_test_add_func("/abuse/guessing-connection-closed", test_guessing_connection_closed);
	return g_test_run();
}
