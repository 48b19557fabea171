/* Issue 18, points 3 and 4: the journal MESSAGE carries the event's
 * values (log_format_message, the one place that writes them), and a
 * client repeating one event writes a bounded number of lines while the
 * metrics count every one. */
#include "util/log.h"
#include "util/netaddr.h"
#include "testd.h"

#include <glib.h>
#include <string.h>

static void test_message_fields(void)
{
	const struct log_fields f = { .room = "lab", .peer = "worker-1", .role = "worker",
				      .code = "ROOM_FULL", .close_code = 1001 };
	g_autofree char *m = log_format_message("peer registered", &f, "192.0.2.7", 0);
	g_assert_cmpstr(m, ==, "peer registered [room=lab peer=worker-1 role=worker remote=192.0.2.7 "
			       "code=ROOM_FULL close_code=1001]");

	/* Absent fields are left out; no fields, no brackets. */
	const struct log_fields some = { .peer = "p" };
	g_autofree char *m2 = log_format_message("peer left", &some, "", 3);
	g_assert_cmpstr(m2, ==, "peer left [peer=p repeated=3]");
	g_autofree char *m3 = log_format_message("stopped", NULL, "", 0);
	g_assert_cmpstr(m3, ==, "stopped");

	/* A client-chosen id cannot start a line or forge a field. */
	const struct log_fields evil = { .peer = "x]\nMESSAGE_ID=forged room=y" };
	g_autofree char *m4 = log_format_message("peer registered", &evil, "", 0);
	g_assert_null(strchr(m4, '\n'));
	g_assert_cmpstr(m4, ==, "peer registered [peer=\"x]\\nMESSAGE_ID=forged room=y\"]");
}

/* A client looping on register (a new peer id each time, then refused
 * once past registrations_per_address_per_minute): repeat_burst (5)
 * refusal lines per repeat_interval (5 s), not one per register, and
 * every register counted. */
static void test_register_loop(void)
{
	enum { N = 300 };
	struct testd *d = testd_start("[limits]\nregistrations_per_address_per_minute = 100\nmessages_burst = 1000\n", NULL);
	struct wsc *c = testd_connect(d);
	unsigned ok = 0, refused = 0;

	for (int i = 0; i < N; i++) {
		wsc_sendf(c, "{\"type\":\"register\",\"protocol\":\"2.1\",\"peer_id\":\"loop-%d\","
			     "\"room_id\":\"loop\"}", i);
		json_object *m = wsc_recv_json(c);
		g_assert_nonnull(m);
		const char *type = testd_str(m, "type");
		if (strcmp(type, "registered_auth") == 0)
			ok++;
		else if (strcmp(type, "error") == 0)
			refused++;
		json_object_put(m);
	}
	g_assert_cmpuint(ok + refused, ==, N);
	g_assert_cmpuint(refused, >, 0);
	/* The metrics count every one. */
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_registrations_total{result=\"ok\"}"), ==, ok);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_registrations_total{result=\"RATE_LIMITED\"}"),
			  ==, refused);

	/* The log: a few refusal lines, not hundreds (the loop takes well
	 * under 5 s: one window, two if it straddles).  Each registration
	 * that succeeded is logged; the rate limit bounds those. */
	unsigned regs = testd_log_count(d, "event=peer_registered"),
		 lefts = testd_log_count(d, "event=peer_left"),
		 refusals = testd_log_count(d, "event=registration_refused");
	g_test_message("%u registered, %u refused: %u + %u + %u lines", ok, refused, regs, lefts,
		       refusals);
	g_assert_cmpuint(regs, ==, ok);
	g_assert_cmpuint(lefts, <=, ok);
	g_assert_cmpuint(refusals, <=, 10);
	g_assert_cmpuint(refusals, >=, 1);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_log_lines_repeated_total"), >, 0);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* repeat_interval = 0 logs every one, as before. */
static void test_register_loop_unlimited(void)
{
	enum { N = 30 };
	struct testd *d = testd_start("[log]\nrepeat_interval = 0\n"
				      "[limits]\nregistrations_per_address_per_minute = 1\n", NULL);
	struct wsc *c = testd_connect(d);

	for (int i = 0; i < N; i++) {
		wsc_sendf(c, "{\"type\":\"register\",\"protocol\":\"2.1\",\"peer_id\":\"all-%d\","
			     "\"room_id\":\"all\"}", i);
		json_object_put(wsc_expect(c, i ? "error" : "registered_auth"));
	}
	g_assert_true(testd_wait_log_count(d, "event=registration_refused", N - 1, 5000));
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_log_lines_repeated_total"), ==, 0);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* The first line of a later window says how many were left out. */
static void test_repeated_count(void)
{
	struct testd *d = testd_start("[log]\nrepeat_interval = 1\nrepeat_burst = 2\n"
				      "[limits]\nregistrations_per_address_per_minute = 1\n"
				      "messages_burst = 1000\n", NULL);
	struct wsc *c = testd_connect(d);
	int sent = 0;

	wsc_send_text(c, "{\"type\":\"register\",\"protocol\":\"2.1\",\"peer_id\":\"a\",\"room_id\":\"r\"}");
	json_object_put(wsc_expect(c, "registered_auth"));
	for (; sent < 10; sent++) {
		wsc_send_text(c, "{\"type\":\"register\",\"protocol\":\"2.1\",\"peer_id\":\"b\",\"room_id\":\"r\"}");
		json_object_put(wsc_expect_error(c, "RATE_LIMITED"));
	}
	g_assert_true(testd_wait_log_count(d, "event=registration_refused", 2, 5000));
	/* One more a little later each time, until the window has passed
	 * (1 s; bounded at 10 s). */
	for (int i = 0; i < 50 && !testd_wait_log(d, "repeated=", 200); i++, sent++) {
		wsc_send_text(c, "{\"type\":\"register\",\"protocol\":\"2.1\",\"peer_id\":\"b\",\"room_id\":\"r\"}");
		json_object_put(wsc_expect_error(c, "RATE_LIMITED"));
	}
	g_assert_true(testd_wait_log(d, "code=RATE_LIMITED repeated=", 0));
	unsigned lines = testd_log_count(d, "event=registration_refused");
	double left_out = testd_metric(d, "rtcsignald_log_lines_repeated_total");
	g_test_message("%d refusals: %u lines, %.0f left out", sent, lines, left_out);
	g_assert_cmpfloat(lines + left_out, ==, sent);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/log/message-fields", test_message_fields);
	g_test_add_func("/log/register-loop", test_register_loop);
	g_test_add_func("/log/register-loop-unlimited", test_register_loop_unlimited);
	g_test_add_func("/log/repeated-count", test_repeated_count);
	return g_test_run();
}
