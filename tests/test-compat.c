/* Integration tests: today's sleap-rtc workers and clients, which speak
 * the v2.0 protocol (they declare nothing in register), against the real
 * daemon.  What they send and how they react is in
 * docs/sleap-rtc.md: a non-admin worker exits on any
 * error frame, reconnects after a plain close, and on an admin failover
 * registers its peer id again on a second socket.  Sessions that declare
 * "protocol":"2.1" keep every error of docs/protocol.md. */
#include "nested.h"
#include "testd.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>

static struct testd *d;

static bool has(json_object *o, const char *key)
{
	return json_object_object_get_ex(o, key, NULL);
}

/* A v2.0 register as sleap-rtc's worker (W:3581) or client (C:1564)
 * sends it: no "protocol".  The reply must say 2.0. */
static struct wsc *v20_on(struct wsc *c, const char *room, const char *id, const char *role)
{
	wsc_sendf(c,
		  "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"%s\",\"role\":\"%s\","
		  "\"token\":\"\",\"metadata\":{\"tags\":[\"sleap-rtc\"],\"properties\":{\"status\":"
		  "\"available\"}}}",
		  id, room, role);
	json_object *o = wsc_expect(c, "registered_auth");
	g_assert_cmpstr(testd_str(o, "peer_id"), ==, id);
	g_assert_cmpstr(testd_str(o, "protocol"), ==, "2.0");
	json_object_put(o);
	return c;
}

static struct wsc *v20(const char *room, const char *id, const char *role)
{
	return v20_on(testd_connect(d), room, id, role);
}

static double metric(const char *name)
{
	double v = testd_metric(d, name);
	return isnan(v) ? 0 : v;
}

static double untold(const char *code)
{
	g_autofree char *name = g_strdup_printf("rtcsignald_suppressed_errors_total{code=\"%s\"}", code);
	return metric(name);
}

static double relayed(const char *type, const char *result)
{
	g_autofree char *name =
		g_strdup_printf("rtcsignald_relayed_total{type=\"%s\",result=\"%s\"}", type, result);
	return metric(name);
}

/* The error arrives with its code, and its message as "reason" too. */
static void expect_told(struct wsc *c, const char *code)
{
	json_object *o = wsc_expect_error(c, code);
	g_assert_nonnull(testd_str(o, "reason"));
	g_assert_cmpstr(testd_str(o, "reason"), ==, testd_str(o, "message"));
	json_object_put(o);
}

/* Situations where the original server sent a registered client no
 * error (docs/sleap-rtc.md section 4), and the code rtcsignald finds. */
static const struct {
	const char *what, *code;
	const char *text; /* sent by worker-1 */
} silent[] = {
	{ "answer to a client gone during ICE", "PEER_NOT_FOUND",
	  "{\"type\":\"answer\",\"sender\":\"worker-1\",\"target\":\"gone\",\"sdp\":\"v=0\"}" },
	{ "offer to a gone worker", "PEER_NOT_FOUND", "{\"type\":\"offer\",\"target\":\"gone\",\"sdp\":\"v=0\"}" },
	{ "candidate to a gone peer", "PEER_NOT_FOUND",
	  "{\"type\":\"candidate\",\"target\":\"gone\",\"candidate\":{}}" },
	{ "trickle to an admin that left", "PEER_NOT_FOUND",
	  "{\"type\":\"ice_candidate\",\"from_peer_id\":\"worker-1\",\"target_peer_id\":\"gone\","
	  "\"candidate\":{\"candidate\":\"c\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0}}" },
	{ "answer without target", "INVALID_MESSAGE", "{\"type\":\"answer\",\"sdp\":\"v=0\"}" },
	{ "offer naming another sender", "FORBIDDEN",
	  "{\"type\":\"offer\",\"sender\":\"someone-else\",\"target\":\"worker-1\",\"sdp\":\"v=0\"}" },
	{ "update_metadata for another peer", "FORBIDDEN",
	  "{\"type\":\"update_metadata\",\"peer_id\":\"someone-else\",\"metadata\":{}}" },
	{ "metadata over max_metadata_bytes", "INVALID_MESSAGE",
	  "{\"type\":\"update_metadata\",\"peer_id\":\"worker-1\",\"metadata\":{\"properties\":{\"x\":\""
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}}" },
	{ "unknown filter operator", "INVALID_FILTER",
	  "{\"type\":\"discover_peers\",\"from_peer_id\":\"worker-1\",\"filters\":{\"properties\":{\"x\":{\"$near\":1}}}}" },
	{ "discovery filters not an object", "INVALID_MESSAGE",
	  "{\"type\":\"discover_peers\",\"filters\":[]}" },
	{ "JSON that is no object", "INVALID_JSON", "[1,2]" },
};

/* Each listed situation: a v2.0 worker gets no error frame (a ping is
 * answered by the pong alone, so nothing came before it), and each is
 * counted by code and logged. */
static void test_v20_not_told(void)
{
	struct wsc *w = v20("quiet", "worker-1", "worker");
	struct wsc *c = v20("quiet", "alice", "client");
	double before[G_N_ELEMENTS(silent)];
	GHashTable *expected = g_hash_table_new(g_str_hash, g_str_equal);

	for (size_t i = 0; i < G_N_ELEMENTS(silent); i++)
		before[i] = untold(silent[i].code);
	for (size_t i = 0; i < G_N_ELEMENTS(silent); i++) {
		g_test_message("%s", silent[i].what);
		wsc_send_text(w, silent[i].text);
		wsc_expect_quiet(w);
		unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(expected, silent[i].code));
		g_hash_table_insert(expected, (gpointer)silent[i].code, GUINT_TO_POINTER(n + 1));
	}
	/* JSON nested past max_json_depth: the original closed the
	 * connection over it; it is not told either. */
	GString *deep = nested_json("{\"type\":\"job_status\",\"x\":", 40, true);
	double deep_before = untold("INVALID_JSON");
	wsc_send_text(w, deep->str);
	g_string_free(deep, TRUE);
	wsc_expect_quiet(w);
	g_assert_cmpfloat(untold("INVALID_JSON"), >=, deep_before + 1);

	for (size_t i = 0; i < G_N_ELEMENTS(silent); i++) {
		unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(expected, silent[i].code));
		g_assert_cmpfloat(untold(silent[i].code), >=, before[i] + n);
	}
	g_assert_true(testd_wait_log(d, "not told to a v2.0 session", 5000));

	/* Where the original did send one, so does rtcsignald, with reason. */
	wsc_send_text(w, "{\"type\":\"peer_message\",\"from_peer_id\":\"worker-1\",\"to_peer_id\":\"ghost\","
			 "\"payload\":{}}");
	expect_told(w, "PEER_NOT_FOUND");
	wsc_send_text(w, "{\"type\":\"no_such_type\"}");
	expect_told(w, "UNKNOWN_MESSAGE_TYPE");
	wsc_send_text(w, "{not json");
	expect_told(w, "INVALID_JSON");
	wsc_send_text(w, "{\"type\":\"update_metadata\",\"peer_id\":\"worker-1\"}");
	expect_told(w, "INVALID_MESSAGE");

	/* What the worker sends in normal use is never answered with one. */
	wsc_send_text(w, "{\"type\":\"update_metadata\",\"peer_id\":\"worker-1\","
			 "\"metadata\":{\"properties\":{\"status\":\"reserved\"}}}");
	json_object *o = wsc_expect(w, "metadata_updated");
	json_object_put(o);
	wsc_send_text(c, "{\"type\":\"discover_peers\",\"from_peer_id\":\"alice\",\"filters\":{\"role\":"
			 "\"worker\",\"room_id\":\"quiet\",\"tags\":[\"sleap-rtc\"],\"properties\":{\"status\":"
			 "\"reserved\",\"gpu_memory_mb\":{\"$gte\":0}}}}");
	json_object_put(wsc_expect(c, "peer_list"));
	wsc_expect_quiet(c);
	g_hash_table_unref(expected);
	wsc_free(w);
	wsc_free(c);
}

/* A session that declares 2.1 is told each of them, with reason; its
 * registered_auth says 2.1. */
static void test_v21_told(void)
{
	struct wsc *w = testd_register(d, "loud", "worker-1", ",\"role\":\"worker\"");

	for (size_t i = 0; i < G_N_ELEMENTS(silent); i++) {
		g_test_message("%s", silent[i].what);
		wsc_send_text(w, silent[i].text);
		expect_told(w, silent[i].code);
	}
	wsc_free(w);

	struct wsc *c = testd_connect(d);
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"p\",\"room_id\":\"loud\",\"protocol\":\"2.1\"}");
	json_object *o = wsc_expect(c, "registered_auth");
	g_assert_cmpstr(testd_str(o, "protocol"), ==, "2.1");
	json_object_put(o);
	/* Any other version is refused at register, where errors are sent. */
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"p\",\"room_id\":\"loud\",\"protocol\":\"3\"}");
	expect_told(c, "INVALID_MESSAGE");
	wsc_free(c);
}

/* Admin failover (docs/sleap-rtc.md 2.3): the promoted worker registers its id
 * again on a second socket.  The first stays open and is told nothing,
 * may still send as the peer, and receives nothing more; frames to the
 * peer go to the newest socket.  A third registration closes the oldest
 * superseded socket (1000, no error); when a superseded socket closes,
 * the registration stays. */
static void test_failover(void)
{
	double kept = metric("rtcsignald_sessions_superseded_total");
	double closed = metric("rtcsignald_superseded_closed_total");
	struct wsc *alice = v20("fo", "alice", "client");
	struct wsc *first = v20("fo", "worker-x", "worker");
	struct wsc *second = v20("fo", "worker-x", "worker");
	json_object *o;

	wsc_expect_quiet(first); /* no SESSION_REPLACED, not closed */

	/* Frames to the peer go to the newest socket only. */
	wsc_send_text(alice, "{\"type\":\"offer\",\"sender\":\"alice\",\"target\":\"worker-x\",\"sdp\":\"v=0\"}");
	o = wsc_expect(second, "offer");
	g_assert_cmpstr(testd_str(o, "sender"), ==, "alice");
	json_object_put(o);
	wsc_expect_quiet(first);

	/* The first socket still sends as the peer (the job coordinator
	 * keeps using it). */
	wsc_send_text(first, "{\"type\":\"answer\",\"sender\":\"worker-x\",\"target\":\"alice\",\"sdp\":\"v=0 a\"}");
	o = wsc_expect(alice, "answer");
	g_assert_cmpstr(testd_str(o, "sender"), ==, "worker-x");
	json_object_put(o);
	wsc_send_text(first, "{\"type\":\"peer_message\",\"from_peer_id\":\"worker-x\",\"to_peer_id\":\"alice\","
			     "\"payload\":{\"app_message_type\":\"job_response\"}}");
	o = wsc_expect(alice, "peer_message");
	g_assert_cmpstr(testd_str(o, "from_peer_id"), ==, "worker-x");
	json_object_put(o);
	wsc_expect_quiet(first);

	/* One peer id, one entry in the room. */
	wsc_send_text(alice, "{\"type\":\"discover_peers\",\"filters\":{\"role\":\"worker\"}}");
	o = wsc_expect(alice, "peer_list");
	g_assert_cmpint(json_object_get_int(json_object_object_get(o, "count")), ==, 1);
	json_object_put(o);

	/* A third registration: the oldest superseded socket is closed,
	 * normally, without an error frame. */
	struct wsc *third = v20("fo", "worker-x", "worker");
	GBytes *b = NULL;
	g_assert_cmpint(wsc_recv(first, WSC_TIMEOUT_MS, &b, NULL), ==, -EPIPE);
	g_assert_cmpint(first->close_code, ==, 1000);
	wsc_free(first);
	wsc_expect_quiet(second);

	/* The superseded socket goes; the registration stays. */
	wsc_free(second);
	g_assert_true(testd_wait_log(d, "superseded socket gone; its peer id stays registered", 5000));
	wsc_send_text(alice, "{\"type\":\"offer\",\"target\":\"worker-x\",\"sdp\":\"v=0\"}");
	json_object_put(wsc_expect(third, "offer"));
	wsc_expect_quiet(alice);

	g_assert_cmpfloat(metric("rtcsignald_sessions_superseded_total"), ==, kept + 2);
	g_assert_cmpfloat(metric("rtcsignald_superseded_closed_total"), ==, closed + 1);
	wsc_free(third);
	wsc_free(alice);
}

/* When the registration a socket lost ends too, the superseded socket
 * stays open, registered nowhere: what it sends is not answered with
 * NOT_IN_ROOM (a worker would exit), only counted. */
static void test_superseded_orphan(void)
{
	struct wsc *first = v20("orph", "worker-o", "worker");
	struct wsc *second = v20("orph", "worker-o", "worker");
	double before = untold("NOT_IN_ROOM");

	wsc_free(second);
	/* The first left once when superseded, the registration now. */
	g_assert_true(testd_wait_log_count(d, "event=peer_left room=orph peer=worker-o", 2, 5000));
	wsc_send_text(first, "{\"type\":\"answer\",\"sender\":\"worker-o\",\"target\":\"alice\",\"sdp\":\"v=0\"}");
	wsc_expect_quiet(first);
	g_assert_cmpfloat(untold("NOT_IN_ROOM"), ==, before + 1);
	/* It may register again. */
	v20_on(first, "orph", "worker-o", "worker");
	wsc_free(first);
}

/* A 2.1 session replaced keeps SESSION_REPLACED and 4001. */
static void test_replaced_v21(void)
{
	struct wsc *old = testd_register(d, "rep21", "w", NULL);
	struct wsc *new = v20("rep21", "w", "worker");
	expect_told(old, "SESSION_REPLACED");
	g_assert_cmpint(wsc_wait_close(old, WSC_TIMEOUT_MS), ==, 4001);
	wsc_free(old);
	wsc_free(new);
}

/* A busy worker rejects a second client with an error naming it
 * (W:1745): the client gets it, with the sender stamped from the worker's
 * registration, and the worker gets no UNKNOWN_MESSAGE_TYPE. */
static void test_busy_worker(void)
{
	double before = relayed("error", "forwarded");
	struct wsc *w = v20("busy", "worker-b", "worker");
	struct wsc *bob = v20("busy", "bob", "client");

	wsc_send_text(bob, "{\"type\":\"offer\",\"sender\":\"bob\",\"target\":\"worker-b\",\"sdp\":\"v=0\"}");
	json_object_put(wsc_expect(w, "offer"));
	wsc_send_text(w, "{\"type\":\"error\",\"target\":\"bob\",\"reason\":\"worker_busy\",\"message\":"
			 "\"Worker is currently busy. Please try again later.\",\"current_status\":\"busy\","
			 "\"sender\":\"forged\"}");
	json_object *o = wsc_expect(bob, "error");
	g_assert_cmpstr(testd_str(o, "sender"), ==, "worker-b");
	g_assert_cmpstr(testd_str(o, "sender_role"), ==, "worker");
	g_assert_cmpstr(testd_str(o, "target"), ==, "bob");
	g_assert_cmpstr(testd_str(o, "reason"), ==, "worker_busy");
	g_assert_cmpstr(testd_str(o, "current_status"), ==, "busy");
	json_object_put(o);
	wsc_expect_quiet(w);
	g_assert_cmpfloat(relayed("error", "forwarded"), ==, before + 1);
	wsc_free(w);
	wsc_free(bob);
}

static const char *const relay_types[] = {
	"job_status",  "job_progress",      "encrypted_relay",	        "fs_list_res",
	"worker_path_ok", "worker_path_error", "fs_check_videos_response", "key_exchange_response",
};

/* The other types today's workers send: accepted without an error frame,
 * by v2.0 and 2.1 sessions alike; forwarded when they name a peer of the
 * room, otherwise counted. */
static void test_relay_types(void)
{
	struct wsc *w = v20("relay", "worker-r", "worker");
	struct wsc *w21 = testd_register(d, "relay", "worker-21", ",\"role\":\"worker\"");
	struct wsc *alice = v20("relay", "alice", "client");

	for (size_t i = 0; i < G_N_ELEMENTS(relay_types); i++) {
		const char *t = relay_types[i];
		double none = relayed(t, "no_target"), fwd = relayed(t, "forwarded");
		g_test_message("%s", t);
		/* As the worker sends them: no peer named. */
		wsc_sendf(w, "{\"type\":\"%s\",\"job_id\":\"j1\",\"session_id\":\"s\",\"status\":\"running\"}", t);
		wsc_expect_quiet(w);
		wsc_sendf(w21, "{\"type\":\"%s\",\"req_id\":7}", t);
		wsc_expect_quiet(w21);
		/* Naming a peer, in either field; one not in the room. */
		wsc_sendf(w, "{\"type\":\"%s\",\"to_peer_id\":\"alice\",\"job_id\":\"j1\"}", t);
		json_object *o = wsc_expect(alice, t);
		g_assert_cmpstr(testd_str(o, "sender"), ==, "worker-r");
		g_assert_cmpstr(testd_str(o, "job_id"), ==, "j1");
		json_object_put(o);
		wsc_sendf(w21, "{\"type\":\"%s\",\"target\":\"alice\"}", t);
		o = wsc_expect(alice, t);
		g_assert_cmpstr(testd_str(o, "sender"), ==, "worker-21");
		json_object_put(o);
		wsc_sendf(w, "{\"type\":\"%s\",\"target\":\"nobody\"}", t);
		wsc_expect_quiet(w);
		g_assert_cmpfloat(relayed(t, "no_target"), ==, none + 3);
		g_assert_cmpfloat(relayed(t, "forwarded"), ==, fwd + 2);
	}
	wsc_expect_quiet(alice);
	wsc_free(w);
	wsc_free(w21);
	wsc_free(alice);
}

/* docs/sleap-rtc.md section 6: the worker skips its challenge when the offer says
 * "role":"client", and no sleap-rtc client writes a role in its offers.
 * So a role the sender wrote is removed (never stamped as "role", which
 * would switch every challenge off); the registered role arrives as
 * "sender_role", which no sleap-rtc code reads. */
static void test_role_stripped(void)
{
	struct wsc *w = v20("roles", "worker-q", "worker");
	struct wsc *mallory = v20("roles", "mallory", "peer");
	struct wsc *alice = v20("roles", "alice", "client");
	GBytes *raw;
	int op;
	json_object *o;

	/* A forged role, by the fast path's shape and by json-c's. */
	wsc_send_text(mallory, "{\"type\":\"offer\",\"sender\":\"mallory\",\"target\":\"worker-q\","
			       "\"sdp\":\"v=0\",\"role\":\"client\"}");
	o = wsc_expect(w, "offer");
	g_assert_false(has(o, "role"));
	g_assert_cmpstr(testd_str(o, "sender"), ==, "mallory");
	g_assert_cmpstr(testd_str(o, "sender_role"), ==, "peer");
	json_object_put(o);
	wsc_send_text(mallory, "{\"type\":\"offer\", \"target\":\"worker-q\",\"role\":\"client\","
			       "\"sender_role\":\"client\",\"sdp\":\"v=0\"}");
	o = wsc_expect(w, "offer");
	g_assert_false(has(o, "role"));
	g_assert_cmpstr(testd_str(o, "sender"), ==, "mallory");
	g_assert_cmpstr(testd_str(o, "sender_role"), ==, "peer");
	json_object_put(o);

	/* A real client's offer (C:2622): no role comes out of it either,
	 * and the rest is forwarded as written. */
	const char *offer = "{\"type\":\"offer\",\"sender\":\"alice\",\"target\":\"worker-q\",\"sdp\":\"v=0\"}";
	wsc_send_text(alice, offer);
	g_assert_cmpint(wsc_recv(w, WSC_TIMEOUT_MS, &raw, &op), ==, 0);
	g_autofree char *text = g_strndup(g_bytes_get_data(raw, NULL), g_bytes_get_size(raw));
	g_bytes_unref(raw);
	g_assert_cmpstr(text, ==,
			"{\"type\":\"offer\",\"sender\":\"alice\",\"target\":\"worker-q\",\"sdp\":\"v=0\","
			"\"sender_role\":\"client\"}");

	/* Answers and candidates too. */
	wsc_send_text(w, "{\"type\":\"answer\",\"target\":\"alice\",\"sdp\":\"v=0\",\"role\":\"admin\"}");
	o = wsc_expect(alice, "answer");
	g_assert_false(has(o, "role"));
	g_assert_cmpstr(testd_str(o, "sender"), ==, "worker-q");
	g_assert_cmpstr(testd_str(o, "sender_role"), ==, "worker");
	json_object_put(o);
	wsc_send_text(alice, "{\"type\":\"candidate\",\"target\":\"worker-q\",\"candidate\":{\"role\":\"x\"},"
			     "\"role\":\"client\"}");
	o = wsc_expect(w, "candidate");
	g_assert_false(has(o, "role"));
	g_assert_cmpstr(testd_str(json_object_object_get(o, "candidate"), "role"), ==, "x");
	json_object_put(o);
	wsc_free(w);
	wsc_free(mallory);
	wsc_free(alice);
}

/* Over the message rate a v2.0 session is not told RATE_LIMITED: the
 * refused messages are counted. */
static void test_rate_untold(void)
{
	struct testd *rd = testd_start("[limits]\nmessages_per_second = 1\nmessages_burst = 4\n", NULL);
	struct testd *saved = d;
	d = rd;
	struct wsc *w = v20("rate", "worker-1", "worker"); /* 1 of the burst */
	double before = untold("RATE_LIMITED");
	unsigned pongs = 0, others = 0;

	for (int i = 0; i < 6; i++)
		wsc_send_text(w, "{\"type\":\"ping\"}");
	/* Three pings within the burst, three counted, in bounded time. */
	for (int i = 0; i < 100 && untold("RATE_LIMITED") < before + 3; i++)
		g_usleep(20000);
	g_assert_cmpfloat(untold("RATE_LIMITED"), >=, before + 3);
	for (;;) {
		GBytes *b = NULL;
		int op;
		if (wsc_recv(w, 300, &b, &op) < 0)
			break;
		if (strstr(g_bytes_get_data(b, NULL), "\"pong\""))
			pongs++;
		else
			others++;
		g_bytes_unref(b);
	}
	g_assert_cmpuint(others, ==, 0);
	g_assert_cmpuint(pongs, <=, 4);
	wsc_free(w);
	d = saved;
	g_assert_cmpint(testd_stop(rd), ==, 0);
	testd_free(rd);
}

/* SIGTERM (systemctl restart): a v2.0 worker, registered or still
 * registering, gets the 1001 close alone, and reconnects; a 2.1 session
 * gets SERVER_SHUTTING_DOWN first. */
static void test_shutdown(void)
{
	struct testd *sd = testd_start(NULL, NULL);
	struct testd *saved = d;
	d = sd;
	struct wsc *w = v20("bye", "worker-1", "worker");
	struct wsc *fresh = testd_connect(sd);
	struct wsc *c21 = testd_register(sd, "bye", "c21", NULL);
	GBytes *b = NULL;
	int op;

	wsc_expect_quiet(fresh); /* the server has taken it in */
	testd_signal(sd, SIGTERM);
	expect_told(c21, "SERVER_SHUTTING_DOWN");
	g_assert_cmpint(wsc_wait_close(c21, WSC_TIMEOUT_MS), ==, 1001);
	struct wsc *quiet[] = { w, fresh };
	for (size_t i = 0; i < G_N_ELEMENTS(quiet); i++) {
		g_assert_cmpint(wsc_recv(quiet[i], WSC_TIMEOUT_MS, &b, &op), ==, -EPIPE);
		g_assert_cmpint(quiet[i]->close_code, ==, 1001);
		wsc_free(quiet[i]);
	}
	wsc_free(c21);
	g_assert_cmpint(testd_wait_exit(sd, 10000), ==, 0);
	g_assert_true(testd_wait_log(sd, "Server is shutting down", 0));
	d = saved;
	testd_free(sd);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	d = testd_start("[limits]\nmax_metadata_bytes = 256\n", NULL);
	g_test_add_func("/compat/v20-not-told", test_v20_not_told);
	g_test_add_func("/compat/v21-told", test_v21_told);
	g_test_add_func("/compat/failover", test_failover);
	g_test_add_func("/compat/superseded-orphan", test_superseded_orphan);
	g_test_add_func("/compat/replaced-v21", test_replaced_v21);
	g_test_add_func("/compat/busy-worker", test_busy_worker);
	g_test_add_func("/compat/relay-types", test_relay_types);
	g_test_add_func("/compat/role-stripped", test_role_stripped);
	g_test_add_func("/compat/rate-untold", test_rate_untold);
	g_test_add_func("/compat/shutdown", test_shutdown);
	int r = g_test_run();
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	return r;
}
