/* Integration tests: presence events and watched discovery (issue 15,
 * PROTOCOL.md 3.7) against the real daemon with real WebSocket clients:
 * every event and its fields, never about the receiver, never a private
 * key; order under a burst; a slow watcher gets watch_lost and stays
 * connected; the two bounds; old clients see nothing new. */
#include "testd.h"

#include <math.h>
#include <signal.h>
#include <string.h>

#define PRESENCE ",\"events\":[\"presence\"]"
/* Bursts of requests are the point here, not the rate limit. */
#define CONF "[limits]\nmessages_per_second = 0\n"

static double metric(struct testd *d, const char *name)
{
	double v = testd_metric(d, name);
	return isnan(v) ? 0 : v;
}

/* The names of O's members in order, space separated. */
static char *keys_of(json_object *o)
{
	GString *s = g_string_new(NULL);
	json_object_object_foreach(o, k, v) {
		(void)v;
		g_string_append_printf(s, "%s%s", s->len ? " " : "", k);
	}
	return g_string_free(s, FALSE);
}

/* peer_joined or peer_updated (checked by testd): the message; *PEER
 * its "peer". */
static json_object *expect_peer(struct wsc *c, const char *type, const char *watch_id,
				const char *peer_id, json_object **peer)
{
	json_object *o = testd_expect_peer_event(c, type, watch_id, peer_id);
	if (peer)
		*peer = json_object_object_get(o, "peer");
	return o;
}

static void expect_joined(struct wsc *c, const char *watch_id, const char *peer_id)
{
	json_object_put(testd_expect_peer_event(c, "peer_joined", watch_id, peer_id));
}

static void expect_updated(struct wsc *c, const char *watch_id, const char *peer_id)
{
	json_object_put(testd_expect_peer_event(c, "peer_updated", watch_id, peer_id));
}

#define expect_left testd_expect_peer_left

/* metadata.properties.KEY of a peer event's peer, as an integer. */
static int peer_prop(json_object *o, const char *key)
{
	json_object *p = json_object_object_get(json_object_object_get(o, "peer"), "metadata");
	json_object *v = json_object_object_get(json_object_object_get(p, "properties"), key);
	g_assert_nonnull(v);
	return json_object_get_int(v);
}

/* Gauges are read through the admin thread: until NAME is WANT, bounded
 * (a scrape is all there is to await). */
static double await_metric_eq(struct testd *d, const char *name, double want)
{
	gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;
	double v;

	while ((v = metric(d, name)) != want && g_get_monotonic_time() < deadline)
		g_usleep(10 * 1000);
	return v;
}

static void subscribe(struct wsc *c)
{
	wsc_send_text(c, "{\"type\":\"subscribe\",\"events\":[\"presence\"]}");
	json_object *o = wsc_expect(c, "subscribed");
	g_assert_cmpstr(json_object_to_json_string_ext(json_object_object_get(o, "events"),
						       JSON_C_TO_STRING_PLAIN), ==, "[\"presence\"]");
	json_object_put(o);
}

static void unsubscribe(struct wsc *c)
{
	wsc_send_text(c, "{\"type\":\"unsubscribe\",\"events\":[\"presence\"]}");
	json_object *o = wsc_expect(c, "unsubscribed");
	g_assert_cmpstr(json_object_to_json_string_ext(json_object_object_get(o, "events"),
						       JSON_C_TO_STRING_PLAIN), ==, "[\"presence\"]");
	json_object_put(o);
}

/* discover_peers with "watch":true and FILTERS (JSON, may be NULL) and
 * LIMIT (0: none): the peer_list's watch_id; its ids, space separated,
 * in *IDS (freed first) unless IDS is NULL. */
static char *watch(struct wsc *c, const char *filters, int limit, char **ids)
{
	g_autofree char *lim = limit ? g_strdup_printf(",\"limit\":%d", limit) : g_strdup("");
	wsc_sendf(c, "{\"type\":\"discover_peers\",\"watch\":true%s%s%s}", filters ? ",\"filters\":" : "",
		  filters ? filters : "", lim);
	json_object *o = wsc_expect(c, "peer_list"), *peers;
	const char *id = testd_str(o, "watch_id");
	g_assert_nonnull(id);
	g_assert_true(g_str_has_prefix(id, "w"));
	g_assert_true(json_object_object_get_ex(o, "peers", &peers));
	g_assert_cmpint(json_object_get_int(json_object_object_get(o, "count")), ==,
			(int)json_object_array_length(peers));
	if (ids) {
		GString *s = g_string_new(NULL);
		for (size_t i = 0; i < json_object_array_length(peers); i++)
			g_string_append_printf(s, "%s%s", i ? " " : "",
					       testd_str(json_object_array_get_idx(peers, i), "peer_id"));
		g_free(*ids); /* callers ask again with the same variable */
		*ids = g_string_free(s, FALSE);
	}
	char *copy = g_strdup(id);
	json_object_put(o);
	return copy;
}

static void unwatch(struct wsc *c, const char *watch_id)
{
	wsc_sendf(c, "{\"type\":\"unwatch\",\"watch_id\":\"%s\"}", watch_id);
	json_object *o = wsc_expect(c, "unwatched");
	g_assert_cmpstr(testd_str(o, "watch_id"), ==, watch_id);
	json_object_put(o);
}

static void update(struct wsc *c, const char *metadata)
{
	wsc_sendf(c, "{\"type\":\"update_metadata\",\"metadata\":%s}", metadata);
	json_object_put(wsc_expect(c, "metadata_updated"));
}

/* A v2.0 client, as today's sleap-rtc sends it: no "protocol", no
 * "events". */
static struct wsc *register_v20(struct testd *d, const char *room, const char *peer_id)
{
	struct wsc *c = testd_connect(d);
	wsc_sendf(c, "{\"type\":\"register\",\"peer_id\":\"%s\",\"room_id\":\"%s\",\"role\":\"worker\","
		     "\"token\":\"\",\"metadata\":{\"tags\":[\"sleap-rtc\"],\"properties\":{\"status\":"
		     "\"available\"}}}",
		  peer_id, room);
	json_object *o = wsc_expect(c, "registered_auth");
	g_assert_cmpstr(testd_str(o, "protocol"), ==, "2.0");
	json_object_put(o);
	return c;
}

/* 1. Presence, by subscribe and by register: every event with its fields,
 * every reason a single instance can give without waiting, never about
 * the receiver, never private metadata; unsubscribe stops it. */
static void test_presence_events(void)
{
	struct testd *d = testd_start(CONF, NULL);
	struct wsc *s = testd_register(d, "pres", "s", NULL);
	json_object *o, *peer;

	subscribe(s);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_presence_subscriptions", 1), ==, 1);
	struct wsc *r = testd_register(d, "pres", "r", PRESENCE);
	expect_joined(s, NULL, "r");
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_presence_subscriptions", 2), ==, 2);

	/* Joined: the public metadata only; a private key at the top and in
	 * properties stays out. */
	struct wsc *p = testd_register(d, "pres", "p",
				       ",\"role\":\"worker\",\"metadata\":{\"tags\":[\"gpu\"],\"note\":\"pub\","
				       "\"_secret\":\"y\",\"properties\":{\"mem\":16,\"_secret\":\"x\"}}");
	struct wsc *both[] = { s, r };
	for (int i = 0; i < 2; i++) {
		o = expect_peer(both[i], "peer_joined", NULL, "p", &peer);
		g_assert_cmpstr(testd_str(peer, "role"), ==, "worker");
		json_object *md = json_object_object_get(peer, "metadata");
		g_assert_cmpstr(testd_str(md, "note"), ==, "pub");
		g_assert_cmpint(peer_prop(o, "mem"), ==, 16);
		g_assert_false(json_object_object_get_ex(md, "_secret", NULL));
		g_assert_false(json_object_object_get_ex(json_object_object_get(md, "properties"), "_secret", NULL));
		/* Exactly the peer_list entry a discovery gives. */
		wsc_send_text(both[i], "{\"type\":\"discover_peers\",\"filters\":{\"role\":\"worker\"}}");
		json_object *list = wsc_expect(both[i], "peer_list");
		json_object *entry = json_object_array_get_idx(json_object_object_get(list, "peers"), 0);
		g_assert_nonnull(entry);
		if (!json_object_equal(entry, peer))
			g_error("peer_joined %s, peer_list entry %s", json_object_to_json_string(peer),
				json_object_to_json_string(entry));
		json_object_put(list);
		json_object_put(o);
	}

	/* Updated: the merged public metadata, to the others only. */
	update(p, "{\"properties\":{\"mem\":32,\"_secret\":\"z\"}}");
	for (int i = 0; i < 2; i++) {
		o = expect_peer(both[i], "peer_updated", NULL, "p", &peer);
		g_assert_cmpint(peer_prop(o, "mem"), ==, 32);
		g_assert_cmpstr(testd_str(json_object_object_get(peer, "metadata"), "note"), ==, "pub");
		json_object_put(o);
	}
	/* A refused update is no event; subscribing twice is one
	 * subscription (the next event comes once). */
	wsc_send_text(p, "{\"type\":\"update_metadata\",\"metadata\":\"busy\"}");
	json_object_put(wsc_expect_error(p, "INVALID_MESSAGE"));
	subscribe(r);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_presence_subscriptions", 2), ==, 2);
	update(s, "{\"properties\":{\"busy\":true}}");
	expect_updated(r, NULL, "s");
	wsc_expect_quiet(s); /* never about itself */
	wsc_expect_quiet(p); /* not subscribed */

	/* Left: the socket closed. */
	wsc_free(p);
	expect_left(s, NULL, "p", "disconnected");
	expect_left(r, NULL, "p", "disconnected");

	/* Replaced: the same id from a new connection, then joined again. */
	struct wsc *p2 = testd_register(d, "pres", "p", NULL);
	expect_joined(s, NULL, "p");
	expect_joined(r, NULL, "p");
	struct wsc *p3 = testd_register(d, "pres", "p", NULL);
	for (int i = 0; i < 2; i++) {
		expect_left(both[i], NULL, "p", "replaced");
		expect_joined(both[i], NULL, "p");
	}
	wsc_free(p2);

	/* Left: it registered again into another room. */
	wsc_send_text(p3, "{\"type\":\"register\",\"peer_id\":\"p\",\"room_id\":\"elsewhere\",\"protocol\":\"2.1\"}");
	json_object_put(wsc_expect(p3, "registered_auth"));
	expect_left(s, NULL, "p", "left");
	expect_left(r, NULL, "p", "left");

	/* A subscriber replaced by a new subscribing connection: the new one
	 * hears nothing about its own id, the old one only SESSION_REPLACED;
	 * the others left(replaced) then joined. */
	struct wsc *x1 = testd_register(d, "pres", "x", PRESENCE);
	expect_joined(s, NULL, "x");
	expect_joined(r, NULL, "x");
	struct wsc *x2 = testd_register(d, "pres", "x", PRESENCE);
	json_object_put(wsc_expect_error(x1, "SESSION_REPLACED"));
	for (int i = 0; i < 2; i++) {
		expect_left(both[i], NULL, "x", "replaced");
		expect_joined(both[i], NULL, "x");
	}
	wsc_expect_quiet(x2);
	wsc_free(x1);
	/* Moving with events: the new room's events, none of the old one's. */
	wsc_send_text(x2, "{\"type\":\"register\",\"peer_id\":\"x\",\"room_id\":\"pres-2\",\"protocol\":\"2.1\"" PRESENCE "}");
	json_object_put(wsc_expect(x2, "registered_auth"));
	expect_left(s, NULL, "x", "left");
	expect_left(r, NULL, "x", "left");
	struct wsc *y = testd_register(d, "pres-2", "y", NULL);
	expect_joined(x2, NULL, "y");
	update(s, "{\"properties\":{\"busy\":false}}");
	expect_updated(r, NULL, "s");
	wsc_expect_quiet(x2);
	wsc_free(y);
	expect_left(x2, NULL, "y", "disconnected");
	wsc_free(x2);

	/* Unsubscribed: a later join reaches s, and r got nothing before its
	 * pong.  Unsubscribing again is the same answer. */
	unsubscribe(r);
	struct wsc *q = testd_register(d, "pres", "q", NULL);
	expect_joined(s, NULL, "q");
	wsc_expect_quiet(r);
	unsubscribe(r);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_presence_subscriptions", 1), ==, 1);
	g_assert_cmpfloat(metric(d, "rtcsignald_watch_events_total{type=\"peer_joined\"}"), >=, 1);
	g_assert_cmpfloat(metric(d, "rtcsignald_watch_events_total{type=\"peer_updated\"}"), >=, 1);
	g_assert_cmpfloat(metric(d, "rtcsignald_watch_events_total{type=\"peer_left\"}"), >=, 1);

	/* Register again (this room) ends the subscription silently; one
	 * carrying events starts a new one. */
	wsc_send_text(s, "{\"type\":\"register\",\"peer_id\":\"s\",\"room_id\":\"pres\",\"protocol\":\"2.1\"}");
	json_object_put(wsc_expect(s, "registered_auth"));
	subscribe(r);
	wsc_free(q);
	expect_left(r, NULL, "q", "disconnected");
	wsc_expect_quiet(s);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_presence_subscriptions", 1), ==, 1);

	wsc_free(p3);
	wsc_free(r);
	wsc_free(s);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 1. Malformed subscriptions are errors, never a close; before register:
 * NOT_IN_ROOM. */
static void test_presence_errors(void)
{
	struct testd *d = testd_start(CONF, NULL);
	struct wsc *c = testd_connect(d);

	wsc_send_text(c, "{\"type\":\"subscribe\",\"events\":[\"presence\"]}");
	json_object_put(wsc_expect_error(c, "NOT_IN_ROOM"));
	wsc_expect_quiet(c);
	wsc_free(c);
	c = testd_register(d, "perr", "c", NULL);
	const char *bad[] = {
		"{\"type\":\"subscribe\",\"events\":[\"foo\"]}",
		"{\"type\":\"subscribe\",\"events\":[]}",
		"{\"type\":\"subscribe\",\"events\":\"presence\"}",
		"{\"type\":\"subscribe\",\"events\":[1]}",
		"{\"type\":\"subscribe\"}",
		"{\"type\":\"unsubscribe\",\"events\":[\"foo\"]}",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		wsc_send_text(c, bad[i]);
		json_object *o = wsc_expect_error(c, "INVALID_MESSAGE");
		if (i == 0)
			g_assert_nonnull(strstr(testd_str(o, "message"), "foo"));
		json_object_put(o);
	}
	wsc_expect_quiet(c);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_presence_subscriptions", 0), ==, 0);
	/* The same from a v2.0 session: only clients of the extension send them. */
	struct wsc *old = register_v20(d, "perr", "old");
	wsc_send_text(old, "{\"type\":\"subscribe\",\"events\":[\"foo\"]}");
	json_object_put(wsc_expect_error(old, "INVALID_MESSAGE"));
	wsc_send_text(old, "{\"type\":\"unwatch\",\"watch_id\":\"w9\"}");
	json_object_put(wsc_expect_error(old, "WATCH_NOT_FOUND"));
	wsc_expect_quiet(old);
	wsc_free(old);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

#define ADMIN_TOKEN "presence-admin-token"

/* 1. room_closed: the admin API deletes the room. */
static void test_presence_room_closed(void)
{
	struct testd *d = testd_start("[admin]\ntoken = " ADMIN_TOKEN "\n" CONF, NULL);
	json_object *o = testd_admin_api(d, ADMIN_TOKEN, "POST", "/api/rooms", "{}", 201);
	g_autofree char *room = g_strdup(testd_str(o, "room_id"));
	g_autofree char *extra = g_strdup_printf(",\"token\":\"%s\"", testd_str(o, "token"));
	g_autofree char *extra_sub = g_strdup_printf("%s" PRESENCE, extra);
	json_object_put(o);

	struct wsc *s = testd_register(d, room, "s", extra_sub);
	struct wsc *w = testd_register(d, room, "w", extra);
	g_autofree char *ids = NULL;
	g_autofree char *w1 = watch(w, NULL, 0, &ids);
	g_assert_cmpstr(ids, ==, "s");
	struct wsc *p = testd_register(d, room, "p", extra);
	expect_joined(s, NULL, "w");
	expect_joined(s, NULL, "p");
	expect_joined(w, w1, "p");
	g_autofree char *path = g_strconcat("/api/rooms/", room, NULL);
	json_object_put(testd_admin_api(d, ADMIN_TOKEN, "DELETE", path, NULL, 200));

	/* Everything the subscriber and the watcher (of the whole room) get
	 * until the server closes them: room_closed, once.  The members go
	 * together and the daemon tells none of them of the others' leaving
	 * (router.c dismiss()); a peer_left, were one sent, could only say
	 * room_closed about another member, once each, before room_closed. */
	struct wsc *both[] = { s, w };
	const char *others[] = { "p w", "p s" };
	for (int i = 0; i < 2; i++) {
		g_autoptr(GPtrArray) lefts = g_ptr_array_new_with_free_func(g_free);
		unsigned closed = 0;
		for (int n = 0; n < 10; n++) {
			if (!(o = testd_recv_json_within(both[i], WSC_TIMEOUT_MS)))
				break;
			g_test_message("%s got %s", i ? "watcher" : "subscriber", json_object_to_json_string(o));
			if (g_strcmp0(testd_str(o, "type"), "peer_left") == 0) {
				g_assert_cmpuint(closed, ==, 0);
				g_assert_cmpstr(testd_str(o, "watch_id"), ==, i ? w1 : NULL);
				g_assert_cmpstr(testd_str(o, "reason"), ==, "room_closed");
				g_assert_nonnull(strstr(others[i], testd_str(o, "peer_id")));
				for (guint k = 0; k < lefts->len; k++)
					g_assert_cmpstr(g_ptr_array_index(lefts, k), !=, testd_str(o, "peer_id"));
				g_ptr_array_add(lefts, g_strdup(testd_str(o, "peer_id")));
			} else {
				g_assert_cmpstr(testd_str(o, "type"), ==, "room_closed");
				g_assert_cmpstr(testd_str(o, "reason"), ==, "deleted");
				closed++;
			}
			json_object_put(o);
		}
		g_assert_cmpint(both[i]->close_code, ==, 1000);
		g_assert_cmpuint(closed, ==, 1);
	}
	wsc_free(p);
	wsc_free(w);
	wsc_free(s);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 1. timeout: a peer that stops answering keepalive pings. */
static void test_presence_timeout(void)
{
	struct testd *d = testd_start("[server]\nws_ping_interval = 1\nws_ping_timeout = 3\n" CONF, NULL);
	struct wsc *s = testd_register(d, "pto", "s", PRESENCE);
	struct wsc *deaf = testd_register(d, "pto", "deaf", NULL);

	expect_joined(s, NULL, "deaf");
	deaf->auto_pong = false; /* and never reads again */
	/* s answers the server's pings while it waits (reading does). */
	gint64 t0 = g_get_monotonic_time();
	json_object *o = testd_recv_json_within(s, 10000);
	g_assert_nonnull(o);
	g_test_message("peer_left after %" G_GINT64_FORMAT " ms (ws_ping_timeout 3 s): %s",
		       (g_get_monotonic_time() - t0) / 1000, json_object_to_json_string(o));
	g_assert_cmpstr(testd_str(o, "type"), ==, "peer_left");
	g_assert_cmpstr(testd_str(o, "peer_id"), ==, "deaf");
	g_assert_cmpstr(testd_str(o, "reason"), ==, "timeout");
	json_object_put(o);
	wsc_free(deaf);
	wsc_free(s);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 2. Watched discovery: the set a filter selects, followed. */
static void test_watch_events(void)
{
	struct testd *d = testd_start(CONF, NULL);
	/* The watcher matches its own filter: still nothing about itself. */
	struct wsc *w = testd_register(d, "wr", "w", ",\"role\":\"worker\",\"metadata\":{\"properties\":{\"mem\":64}}");
	struct wsc *a = testd_register(d, "wr", "a",
				       ",\"role\":\"worker\",\"metadata\":{\"properties\":{\"mem\":16,\"status\":\"idle\"}}");
	g_autofree char *ids = NULL;
	g_autofree char *w1 = watch(w, "{\"role\":\"worker\",\"properties\":{\"mem\":{\"$gte\":8}}}", 0, &ids);
	g_assert_cmpstr(ids, ==, "a");
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 1), ==, 1);

	/* b does not match, c does: the next event is c's. */
	struct wsc *b = testd_register(d, "wr", "b", ",\"role\":\"worker\",\"metadata\":{\"properties\":{\"mem\":4}}");
	struct wsc *c = testd_register(d, "wr", "c", ",\"role\":\"worker\",\"metadata\":{\"properties\":{\"mem\":32}}");
	expect_joined(w, w1, "c");
	/* An update makes b match: joined. */
	update(b, "{\"properties\":{\"mem\":8}}");
	json_object *o = expect_peer(w, "peer_joined", w1, "b", NULL);
	g_assert_cmpint(peer_prop(o, "mem"), ==, 8);
	json_object_put(o);
	/* A member changes and still matches: updated. */
	update(a, "{\"properties\":{\"status\":\"busy\"}}");
	expect_updated(w, w1, "a");
	/* It stops matching: left, no_longer_matches; changing again while
	 * outside is nothing (the next event is c's). */
	update(a, "{\"properties\":{\"mem\":2}}");
	expect_left(w, w1, "a", "no_longer_matches");
	update(a, "{\"properties\":{\"mem\":3}}");
	update(c, "{\"properties\":{\"mem\":33}}");
	o = expect_peer(w, "peer_updated", w1, "c", NULL);
	g_assert_cmpint(peer_prop(o, "mem"), ==, 33);
	json_object_put(o);
	update(w, "{\"properties\":{\"mem\":65}}"); /* itself */
	wsc_expect_quiet(w);
	/* It goes: disconnected; it moves to another room: left. */
	wsc_free(c);
	expect_left(w, w1, "c", "disconnected");
	wsc_send_text(b, "{\"type\":\"register\",\"peer_id\":\"b\",\"room_id\":\"wr-other\",\"protocol\":\"2.1\"}");
	json_object_put(wsc_expect(b, "registered_auth"));
	expect_left(w, w1, "b", "left");

	/* A second watch on the same socket, another filter: each event is
	 * tagged with its own watch. */
	g_autofree char *w2 = watch(w, "{\"tags\":[\"cpu\"]}", 0, &ids);
	g_assert_cmpstr(ids, ==, "");
	g_assert_cmpstr(w2, !=, w1);
	struct wsc *e = testd_register(d, "wr", "e",
				       ",\"role\":\"worker\",\"metadata\":{\"tags\":[\"cpu\"],\"properties\":{\"mem\":16}}");
	bool seen1 = false, seen2 = false;
	for (int i = 0; i < 2; i++) {
		o = wsc_expect(w, "peer_joined");
		const char *id = testd_str(o, "watch_id");
		g_assert_nonnull(id);
		g_assert_cmpstr(testd_str(json_object_object_get(o, "peer"), "peer_id"), ==, "e");
		if (strcmp(id, w1) == 0 && !seen1)
			seen1 = true;
		else if (strcmp(id, w2) == 0 && !seen2)
			seen2 = true;
		else
			g_error("unexpected %s", json_object_to_json_string(o));
		json_object_put(o);
	}
	struct wsc *f = testd_register(d, "wr", "f", ",\"metadata\":{\"tags\":[\"cpu\"]}");
	expect_joined(w, w2, "f");
	/* Tags replaced: out of the set. */
	update(f, "{\"tags\":[\"gpu\"]}");
	expect_left(w, w2, "f", "no_longer_matches");
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 2), ==, 2);

	/* unwatch: answered, then nothing more of that watch (the other
	 * watch's event is what the test awaits). */
	unwatch(w, w1);
	struct wsc *g = testd_register(d, "wr", "g",
				       ",\"role\":\"worker\",\"metadata\":{\"tags\":[\"cpu\"],\"properties\":{\"mem\":64}}");
	expect_joined(w, w2, "g");
	wsc_expect_quiet(w);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 1), ==, 1);
	g_assert_cmpfloat(metric(d, "rtcsignald_watch_evaluations_total"), >, 0);

	/* Moving to another room ends all of the socket's watches. */
	wsc_send_text(w, "{\"type\":\"register\",\"peer_id\":\"w\",\"room_id\":\"wr-moved\",\"protocol\":\"2.1\"}");
	json_object_put(wsc_expect(w, "registered_auth"));
	update(g, "{\"properties\":{\"mem\":1}}");
	wsc_expect_quiet(w);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 0), ==, 0);

	wsc_free(a);
	wsc_free(b);
	wsc_free(e);
	wsc_free(f);
	wsc_free(g);
	wsc_free(w);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 2. limit bounds the first answer only: the watch follows every match. */
static void test_watch_limit(void)
{
	struct testd *d = testd_start(CONF, NULL);
	struct wsc *w = testd_register(d, "wl", "w", NULL);
	struct wsc *p[3];
	const char *names[] = { "p0", "p1", "p2" };
	g_autofree char *ids = NULL;

	for (int i = 0; i < 3; i++)
		p[i] = testd_register(d, "wl", names[i], ",\"role\":\"worker\"");
	g_autofree char *w1 = watch(w, "{\"role\":\"worker\"}", 1, &ids);
	g_assert_cmpstr(ids, ==, "p0");
	for (int i = 0; i < 3; i++) {
		update(p[i], "{\"properties\":{\"x\":1}}");
		expect_updated(w, w1, names[i]);
	}
	wsc_free(p[2]);
	expect_left(w, w1, "p2", "disconnected");
	struct wsc *q = testd_register(d, "wl", "q", ",\"role\":\"worker\"");
	expect_joined(w, w1, "q");
	wsc_expect_quiet(w);
	/* One change, a subscription and a watch on one socket: the presence
	 * event first, then the watch's. */
	subscribe(w);
	update(q, "{\"properties\":{\"x\":2}}");
	expect_updated(w, NULL, "q");
	expect_updated(w, w1, "q");
	wsc_free(q);
	expect_left(w, NULL, "q", "disconnected");
	expect_left(w, w1, "q", "disconnected");
	wsc_expect_quiet(w);
	wsc_free(p[0]);
	wsc_free(p[1]);
	wsc_free(w);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 2. Unknown and malformed watch requests: errors, never a close. */
static void test_watch_errors(void)
{
	struct testd *d = testd_start(CONF, NULL);
	struct wsc *c = testd_connect(d);
	json_object *o;

	wsc_send_text(c, "{\"type\":\"discover_peers\",\"watch\":true}");
	json_object_put(wsc_expect_error(c, "NOT_IN_ROOM"));
	wsc_free(c);
	c = testd_register(d, "we", "c", NULL);
	struct wsc *peer = testd_register(d, "we", "peer", NULL);

	wsc_send_text(c, "{\"type\":\"unwatch\",\"watch_id\":\"w9\"}");
	o = wsc_expect_error(c, "WATCH_NOT_FOUND");
	g_assert_cmpstr(testd_str(o, "watch_id"), ==, "w9");
	g_assert_cmpstr(testd_str(o, "message"), ==, "No watch w9 on this connection");
	json_object_put(o);
	/* Another connection's watch is not this one's. */
	g_autofree char *theirs = watch(peer, NULL, 0, NULL);
	wsc_sendf(c, "{\"type\":\"unwatch\",\"watch_id\":\"%s\"}", theirs);
	o = wsc_expect_error(c, "WATCH_NOT_FOUND");
	g_assert_cmpstr(testd_str(o, "watch_id"), ==, theirs);
	json_object_put(o);

	const struct {
		const char *msg, *code;
	} bad[] = {
		{ "{\"type\":\"discover_peers\",\"watch\":\"yes\"}", "INVALID_MESSAGE" },
		{ "{\"type\":\"discover_peers\",\"watch\":1}", "INVALID_MESSAGE" },
		{ "{\"type\":\"discover_peers\",\"watch\":true,\"filters\":{\"properties\":{\"m\":{\"$bogus\":1}}}}",
		  "INVALID_FILTER" },
		{ "{\"type\":\"discover_peers\",\"watch\":true,\"filters\":[]}", "INVALID_MESSAGE" },
		{ "{\"type\":\"unwatch\"}", "INVALID_MESSAGE" },
		{ "{\"type\":\"unwatch\",\"watch_id\":5}", "INVALID_MESSAGE" },
		{ "{\"type\":\"unwatch\",\"watch_id\":null}", "INVALID_MESSAGE" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		wsc_send_text(c, bad[i].msg);
		json_object_put(wsc_expect_error(c, bad[i].code));
	}
	/* "watch":false is a plain discovery. */
	wsc_send_text(c, "{\"type\":\"discover_peers\",\"watch\":false}");
	o = wsc_expect(c, "peer_list");
	g_assert_false(json_object_object_get_ex(o, "watch_id", NULL));
	json_object_put(o);
	/* None of them closed the socket or made a watch. */
	wsc_expect_quiet(c);
	g_assert_cmpint(c->close_code, ==, -1);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 1), ==, 1); /* peer's */
	update(peer, "{\"properties\":{\"x\":1}}");
	wsc_expect_quiet(c);
	/* unwatch answered once; the second time the id is unknown. */
	unwatch(peer, theirs);
	wsc_sendf(peer, "{\"type\":\"unwatch\",\"watch_id\":\"%s\"}", theirs);
	json_object_put(wsc_expect_error(peer, "WATCH_NOT_FOUND"));
	/* An id is not given out again on the connection. */
	g_autofree char *again = watch(peer, NULL, 0, NULL);
	g_assert_cmpstr(again, !=, theirs);
	unwatch(peer, again);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 0), ==, 0);
	wsc_free(peer);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 3. A burst of 200 updates: a watcher and a subscriber see them all, in
 * order, and the peer's leaving last. */
static void test_burst_order(void)
{
	enum { N = 200 };
	struct testd *d = testd_start(CONF, NULL);
	struct wsc *w = testd_register(d, "burst", "w", NULL);
	struct wsc *s = testd_register(d, "burst", "s", PRESENCE);
	g_autofree char *w1 = watch(w, "{\"role\":\"worker\"}", 0, NULL);
	struct wsc *p = testd_register(d, "burst", "p", ",\"role\":\"worker\"");
	expect_joined(w, w1, "p");
	expect_joined(s, NULL, "p");

	GString *burst = g_string_new(NULL);
	for (int i = 1; i <= N; i++) {
		/* One write per update, without awaiting any answer. */
		g_string_printf(burst, "{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"n\":%d}}}", i);
		g_assert_cmpint(wsc_send_text(p, burst->str), ==, 0);
	}
	g_string_free(burst, TRUE);
	/* Its answers read, so its close is a clean FIN after all of them. */
	for (int i = 1; i <= N; i++)
		json_object_put(wsc_expect(p, "metadata_updated"));
	wsc_free(p);

	struct wsc *both[] = { w, s };
	for (int k = 0; k < 2; k++) {
		const char *id = k ? NULL : w1;
		for (int i = 1; i <= N; i++) {
			json_object *o = wsc_recv_json(both[k]);
			if (strcmp(testd_str(o, "type"), "peer_updated") != 0)
				g_error("%s: update %d: got %s", k ? "subscriber" : "watcher", i,
					json_object_to_json_string(o));
			g_assert_cmpstr(testd_str(o, "watch_id"), ==, id);
			g_assert_cmpint(peer_prop(o, "n"), ==, i);
			json_object_put(o);
		}
		expect_left(both[k], id, "p", "disconnected");
		wsc_expect_quiet(both[k]);
	}
	wsc_free(w);
	wsc_free(s);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 4. A watcher and a subscriber that do not read: each loses its
 * watch with watch_lost (queue_full) once events would pass half the
 * queue bound; every event before it in order and none missing; still
 * connected, still served relayed messages; and it can watch again. */
static void test_slow_watcher(void)
{
	struct testd *d = testd_start("[limits]\nmax_message_bytes = 16384\nmax_queued_bytes = 16384\nmessages_per_second = 0\n", NULL);
	struct wsc *ss = testd_register_slow(d, "slow", "ss");
	subscribe(ss);
	struct wsc *sw = testd_register_slow(d, "slow", "sw");
	g_autofree char *w1 = watch(sw, "{\"role\":\"worker\"}", 0, NULL);
	/* 4 KiB of public metadata in every event. */
	GString *blob = g_string_new(NULL);
	while (blob->len < 4096)
		g_string_append_c(blob, 'b');
	g_autofree char *extra = g_strdup_printf(",\"role\":\"worker\",\"metadata\":{\"properties\":{\"blob\":\"%s\"}}",
						 blob->str);
	g_string_free(blob, TRUE);
	struct wsc *u = testd_register(d, "slow", "u", extra);

	int sent = 0;
	const char *lost = "rtcsignald_watches_lost_total{reason=\"queue_full\"}";
	while (sent < 4000 && !(sent % 25 == 0 && metric(d, lost) >= 2)) {
		sent++;
		g_autofree char *md = g_strdup_printf("{\"properties\":{\"n\":%d}}", sent);
		update(u, md);
	}
	g_test_message("both lost after %d updates of 4 KiB", sent);
	g_assert_cmpfloat(await_metric_eq(d, lost, 2), ==, 2);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 0), ==, 0);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_presence_subscriptions", 0), ==, 0);
	/* A relayed message still finds room. */
	wsc_send_text(u, "{\"type\":\"peer_message\",\"to_peer_id\":\"sw\",\"payload\":\"after\"}");
	wsc_send_text(u, "{\"type\":\"peer_message\",\"to_peer_id\":\"ss\",\"payload\":\"after\"}");
	wsc_expect_quiet(u); /* no DELIVERY_FAILED */

	/* Now read: joined, updates 1..k with none missing, watch_lost, and
	 * after it only the relayed message. */
	struct wsc *both[] = { sw, ss };
	for (int k = 0; k < 2; k++) {
		struct wsc *c = both[k];
		const char *id = k ? NULL : w1;
		int next = 1;
		if (k)
			expect_joined(c, NULL, "sw");
		expect_joined(c, id, "u");
		json_object *o;
		for (;;) {
			o = wsc_recv_json(c);
			if (strcmp(testd_str(o, "type"), "peer_updated") != 0)
				break;
			g_assert_cmpstr(testd_str(o, "watch_id"), ==, id);
			g_assert_cmpint(peer_prop(o, "n"), ==, next);
			next++;
			json_object_put(o);
		}
		g_test_message("%s: %d updates, then %s", k ? "subscriber" : "watcher", next - 1,
			       json_object_to_json_string(o));
		g_assert_cmpstr(testd_str(o, "type"), ==, "watch_lost");
		g_assert_cmpstr(testd_str(o, "reason"), ==, "queue_full");
		if (k) {
			g_assert_null(testd_str(o, "watch_id"));
			g_assert_cmpstr(json_object_to_json_string_ext(json_object_object_get(o, "events"),
								       JSON_C_TO_STRING_PLAIN), ==, "[\"presence\"]");
		} else {
			g_assert_cmpstr(testd_str(o, "watch_id"), ==, w1);
		}
		g_assert_cmpint(next - 1, <, sent);
		json_object_put(o);
		o = wsc_expect(c, "peer_message");
		g_assert_cmpstr(testd_str(o, "payload"), ==, "after");
		json_object_put(o);
		wsc_expect_quiet(c);
		g_assert_cmpint(c->close_code, ==, -1);
	}
	/* Query again: a new watch, and it is followed. */
	g_autofree char *w2 = watch(sw, "{\"role\":\"worker\"}", 0, NULL);
	g_assert_cmpstr(w2, !=, w1);
	update(u, "{\"properties\":{\"n\":0}}");
	expect_updated(sw, w2, "u");
	wsc_free(u);
	wsc_free(sw);
	wsc_free(ss);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 5. watches_per_session and watches_per_room: RATE_LIMITED naming the
 * key, counted; unwatch frees a slot; the gauge follows. */
static void test_watch_bounds(void)
{
	struct testd *d = testd_start("[limits]\nwatches_per_session = 2\nwatches_per_room = 3\n"
				      "messages_per_second = 0\n", NULL);
	struct wsc *a = testd_register(d, "wb", "a", NULL);
	struct wsc *b = testd_register(d, "wb", "b", NULL);
	struct wsc *other = testd_register(d, "wb-other", "o", NULL);
	json_object *o;

	g_autofree char *a1 = watch(a, NULL, 0, NULL);
	g_autofree char *a2 = watch(a, "{\"role\":\"worker\"}", 0, NULL);
	wsc_send_text(a, "{\"type\":\"discover_peers\",\"watch\":true}");
	o = wsc_expect_error(a, "RATE_LIMITED");
	g_assert_cmpstr(testd_str(o, "message"), ==, "Too many watches on this connection (watches_per_session = 2)");
	json_object_put(o);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_limit_hits_total{limit=\"watches_per_session\"}", 1), ==, 1);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 2), ==, 2);

	g_autofree char *b1 = watch(b, NULL, 0, NULL);
	wsc_send_text(b, "{\"type\":\"discover_peers\",\"watch\":true}");
	o = wsc_expect_error(b, "RATE_LIMITED");
	g_assert_cmpstr(testd_str(o, "message"), ==, "Too many watches in this room (watches_per_room = 3)");
	json_object_put(o);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_limit_hits_total{limit=\"watches_per_room\"}", 1), ==, 1);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 3), ==, 3);
	/* Another room has its own count; a plain discovery is never refused. */
	g_autofree char *o1 = watch(other, NULL, 0, NULL);
	wsc_send_text(b, "{\"type\":\"discover_peers\"}");
	o = wsc_expect(b, "peer_list");
	g_assert_null(testd_str(o, "watch_id"));
	json_object_put(o);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 4), ==, 4);

	unwatch(a, a1);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 3), ==, 3);
	g_autofree char *b2 = watch(b, NULL, 0, NULL);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 4), ==, 4);
	/* Closing frees them all. */
	wsc_free(b);
	g_assert_true(testd_wait_log(d, "event=peer_left room=wb peer=b", 5000));
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 2), ==, 2);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_limit_hits_total{limit=\"watches_per_session\"}", 1), ==, 1);

	/* Both bounds are reloadable; 0 is no watches at all. */
	testd_write_conf(d, "[limits]\nwatches_per_session = 1\nwatches_per_room = 100\nmessages_per_second = 0\n");
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log(d, "configuration reloaded", 5000));
	struct wsc *c = testd_register(d, "wb", "c", NULL);
	g_autofree char *c1 = watch(c, NULL, 0, NULL);
	wsc_send_text(c, "{\"type\":\"discover_peers\",\"watch\":true}");
	o = wsc_expect_error(c, "RATE_LIMITED");
	g_assert_cmpstr(testd_str(o, "message"), ==, "Too many watches on this connection (watches_per_session = 1)");
	json_object_put(o);
	testd_write_conf(d, "[limits]\nwatches_per_session = 16\nwatches_per_room = 0\nmessages_per_second = 0\n");
	testd_signal(d, SIGHUP);
	g_assert_true(testd_wait_log_count(d, "configuration reloaded", 2, 5000));
	wsc_send_text(other, "{\"type\":\"discover_peers\",\"watch\":true}");
	o = wsc_expect_error(other, "RATE_LIMITED");
	g_assert_cmpstr(testd_str(o, "message"), ==, "Too many watches in this room (watches_per_room = 0)");
	json_object_put(o);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_limit_hits_total{limit=\"watches_per_room\"}", 2), ==, 2);
	wsc_free(c);
	wsc_free(a);
	wsc_free(other);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 5. Presence subscriptions count toward watches_per_room (a change of
 * a peer may cost an event for each); a register carrying events in a
 * full room is admitted, then told RATE_LIMITED, and not subscribed. */
static void test_room_bound_presence(void)
{
	struct testd *d = testd_start("[limits]\nwatches_per_room = 2\nmessages_per_second = 0\n", NULL);
	struct wsc *s = testd_register(d, "rp", "s", PRESENCE);
	struct wsc *w = testd_register(d, "rp", "w", NULL);
	g_autofree char *w1 = watch(w, NULL, 0, NULL);
	struct wsc *b = testd_register(d, "rp", "b", NULL);
	json_object *o;
	const char *full = "Too many watches in this room (watches_per_room = 2)";

	expect_joined(s, NULL, "w");
	expect_joined(s, NULL, "b");
	expect_joined(w, w1, "b");
	wsc_send_text(b, "{\"type\":\"subscribe\",\"events\":[\"presence\"]}");
	o = wsc_expect_error(b, "RATE_LIMITED");
	g_assert_cmpstr(testd_str(o, "message"), ==, full);
	json_object_put(o);
	struct wsc *c = testd_register(d, "rp", "c", PRESENCE);
	o = wsc_expect_error(c, "RATE_LIMITED");
	g_assert_cmpstr(testd_str(o, "message"), ==, full);
	json_object_put(o);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_limit_hits_total{limit=\"watches_per_room\"}", 2), ==, 2);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_presence_subscriptions", 1), ==, 1);
	expect_joined(s, NULL, "c");
	expect_joined(w, w1, "c");
	update(b, "{\"properties\":{\"x\":1}}");
	expect_updated(s, NULL, "b");
	expect_updated(w, w1, "b");
	wsc_expect_quiet(c); /* not subscribed */
	/* A place freed is a place taken. */
	unsubscribe(s);
	subscribe(b);
	wsc_send_text(w, "{\"type\":\"discover_peers\",\"watch\":true}");
	json_object_put(wsc_expect_error(w, "RATE_LIMITED"));
	wsc_free(b);
	wsc_free(c);
	wsc_free(s);
	wsc_free(w);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 5. A watch keeps its filter: a watched discover_peers longer than
 * max_metadata_bytes is INVALID_FILTER and counted; a plain one is not
 * bounded by it. */
static void test_watch_size(void)
{
	struct testd *d = testd_start("[limits]\nmax_metadata_bytes = 256\nmessages_per_second = 0\n", NULL);
	struct wsc *c = testd_register(d, "ws", "c", NULL);
	GString *f = g_string_new("{\"properties\":{\"status\":{\"$in\":[");
	for (int i = 0; i < 40; i++)
		g_string_append_printf(f, "%s\"s%03d\"", i ? "," : "", i);
	g_string_append(f, "]}}}");
	g_assert_cmpuint(f->len, >, 256);

	wsc_sendf(c, "{\"type\":\"discover_peers\",\"watch\":true,\"filters\":%s}", f->str);
	json_object_put(wsc_expect_error(c, "INVALID_FILTER"));
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_limit_hits_total{limit=\"max_metadata_bytes\"}", 1), ==, 1);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 0), ==, 0);
	wsc_sendf(c, "{\"type\":\"discover_peers\",\"filters\":%s}", f->str);
	json_object_put(wsc_expect(c, "peer_list"));
	g_free(watch(c, "{\"properties\":{\"status\":\"s001\"}}", 0, NULL));
	g_string_free(f, TRUE);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* A watch whose filter would take one peer more than max_filter_work
 * ends with watch_lost (filter_work, docs/monitoring.md): never a
 * silently wrong set. */
static void test_watch_filter_work(void)
{
	struct testd *d = testd_start("[limits]\nmax_filter_work = 1000\nmessages_per_second = 0\n", NULL);
	struct wsc *w = testd_register(d, "fw", "w", NULL);
	GString *f = g_string_new("{\"properties\":{\"k\":{\"$in\":[");
	for (int i = 1; i <= 1500; i++)
		g_string_append_printf(f, "%s%d", i > 1 ? "," : "", i);
	g_string_append(f, "]}}}");
	g_autofree char *ids = NULL;
	g_autofree char *filter = g_string_free(f, FALSE);
	g_autofree char *w1 = watch(w, filter, 0, &ids);
	g_assert_cmpstr(ids, ==, "");

	struct wsc *p = testd_register(d, "fw", "p", ",\"metadata\":{\"properties\":{\"k\":1500}}");
	json_object *o = wsc_expect(w, "watch_lost");
	g_assert_cmpstr(testd_str(o, "watch_id"), ==, w1);
	g_assert_cmpstr(testd_str(o, "reason"), ==, "filter_work");
	json_object_put(o);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches_lost_total{reason=\"filter_work\"}", 1), ==, 1);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 0), ==, 0);
	update(p, "{\"properties\":{\"k\":1499}}");
	wsc_expect_quiet(w);
	/* Asking again: the first answer is bounded as a discovery is, and
	 * no watch is made. */
	wsc_sendf(w, "{\"type\":\"discover_peers\",\"watch\":true,\"filters\":%s}", filter);
	json_object_put(wsc_expect_error(w, "INVALID_FILTER"));
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 0), ==, 0);
	wsc_free(p);
	wsc_free(w);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* A v2.0 socket whose peer id a newer one took over stays open (as
 * today's workers expect) but its watch and subscription end: no more
 * events, and it cannot start new ones (NOT_IN_ROOM). */
static void test_superseded(void)
{
	struct testd *d = testd_start(CONF, NULL);
	struct wsc *x1 = testd_connect(d);
	wsc_send_text(x1, "{\"type\":\"register\",\"peer_id\":\"x\",\"room_id\":\"sup\"" PRESENCE "}");
	json_object_put(wsc_expect(x1, "registered_auth"));
	g_autofree char *w1 = watch(x1, NULL, 0, NULL);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 1), ==, 1);
	struct wsc *x2 = testd_connect(d);
	wsc_send_text(x2, "{\"type\":\"register\",\"peer_id\":\"x\",\"room_id\":\"sup\"}");
	json_object_put(wsc_expect(x2, "registered_auth"));
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_watches", 0), ==, 0);
	g_assert_cmpfloat(await_metric_eq(d, "rtcsignald_presence_subscriptions", 0), ==, 0);
	struct wsc *a = testd_register(d, "sup", "a", NULL);
	update(a, "{\"properties\":{\"z\":1}}");
	wsc_expect_quiet(x1);
	wsc_send_text(x1, "{\"type\":\"subscribe\",\"events\":[\"presence\"]}");
	json_object_put(wsc_expect_error(x1, "NOT_IN_ROOM"));
	wsc_send_text(x1, "{\"type\":\"discover_peers\",\"watch\":true}");
	json_object_put(wsc_expect_error(x1, "NOT_IN_ROOM"));
	wsc_expect_quiet(x1);
	g_assert_cmpint(x1->close_code, ==, -1);
	wsc_free(a);
	wsc_free(x2);
	wsc_free(x1);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* 6. Clients that never asked see nothing of it: a v2.0 client and a
 * plain 2.1 client in the room of all this activity; registered_auth is
 * the same with and without events. */
static void test_old_clients(void)
{
	struct testd *d = testd_start(CONF, NULL);
	struct wsc *old = register_v20(d, "mixed", "old");
	struct wsc *plain = testd_register(d, "mixed", "plain", NULL);

	/* registered_auth: the same keys in the same order. */
	struct wsc *s = testd_connect(d);
	wsc_send_text(s, "{\"type\":\"register\",\"peer_id\":\"s\",\"room_id\":\"mixed\",\"protocol\":\"2.1\"" PRESENCE "}");
	json_object *with = wsc_expect(s, "registered_auth");
	struct wsc *n = testd_connect(d);
	wsc_send_text(n, "{\"type\":\"register\",\"peer_id\":\"n\",\"room_id\":\"mixed\",\"protocol\":\"2.1\"}");
	json_object *without = wsc_expect(n, "registered_auth");
	g_autofree char *kw = keys_of(with), *kn = keys_of(without);
	g_assert_cmpstr(kw, ==, kn);
	json_object_put(with);
	json_object_put(without);
	/* A v2.0 register carrying events: the same keys as without, too. */
	struct wsc *s20 = testd_connect(d);
	wsc_send_text(s20, "{\"type\":\"register\",\"peer_id\":\"s20\",\"room_id\":\"mixed\"" PRESENCE "}");
	with = wsc_expect(s20, "registered_auth");
	struct wsc *old2 = testd_connect(d);
	wsc_send_text(old2, "{\"type\":\"register\",\"peer_id\":\"old2\",\"room_id\":\"mixed\"}");
	without = wsc_expect(old2, "registered_auth");
	g_autofree char *kw20 = keys_of(with), *kn20 = keys_of(without);
	g_assert_cmpstr(kw20, ==, kn20);
	json_object_put(with);
	json_object_put(without);
	expect_joined(s, NULL, "n");
	expect_joined(s, NULL, "s20");
	expect_joined(s, NULL, "old2");
	expect_joined(s20, NULL, "old2");

	/* Everything that makes events and errors, by others. */
	struct wsc *w = testd_register(d, "mixed", "w", NULL);
	g_autofree char *w1 = watch(w, "{\"role\":\"worker\"}", 0, NULL);
	wsc_send_text(w, "{\"type\":\"unwatch\",\"watch_id\":\"w77\"}");
	json_object_put(wsc_expect_error(w, "WATCH_NOT_FOUND"));
	struct wsc *p = testd_register(d, "mixed", "p", ",\"role\":\"worker\"");
	update(p, "{\"properties\":{\"x\":1}}");
	struct wsc *p2 = testd_register(d, "mixed", "p", ",\"role\":\"worker\"");
	wsc_free(p);
	update(p2, "{\"properties\":{\"x\":2}}");
	wsc_free(p2);
	struct wsc *waiters[] = { s, s20 };
	for (int i = 0; i < 2; i++) {
		expect_joined(waiters[i], NULL, "w");
		expect_joined(waiters[i], NULL, "p");
		expect_updated(waiters[i], NULL, "p");
		expect_left(waiters[i], NULL, "p", "replaced");
		expect_joined(waiters[i], NULL, "p");
		expect_updated(waiters[i], NULL, "p");
		expect_left(waiters[i], NULL, "p", "disconnected");
	}
	expect_joined(w, w1, "p");
	expect_updated(w, w1, "p");
	expect_left(w, w1, "p", "replaced");
	expect_joined(w, w1, "p");
	expect_updated(w, w1, "p");
	expect_left(w, w1, "p", "disconnected");

	/* The old ones: the first thing they get is the answer they asked
	 * for, and nothing after it. */
	struct wsc *quiet[] = { old, plain, n, old2 };
	for (size_t i = 0; i < G_N_ELEMENTS(quiet); i++) {
		wsc_send_text(quiet[i], "{\"type\":\"discover_peers\"}");
		json_object *o = wsc_recv_json(quiet[i]);
		if (strcmp(testd_str(o, "type"), "peer_list") != 0)
			g_error("client %zu got %s", i, json_object_to_json_string(o));
		g_assert_null(testd_str(o, "watch_id"));
		json_object_put(o);
		wsc_expect_quiet(quiet[i]);
	}
	wsc_free(w);
	wsc_free(s);
	wsc_free(s20);
	wsc_free(n);
	wsc_free(old);
	wsc_free(old2);
	wsc_free(plain);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	signal(SIGPIPE, SIG_IGN);
	g_test_add_func("/presence/events", test_presence_events);
	g_test_add_func("/presence/errors", test_presence_errors);
	g_test_add_func("/presence/room-closed", test_presence_room_closed);
	g_test_add_func("/presence/timeout", test_presence_timeout);
	g_test_add_func("/presence/watch-events", test_watch_events);
	g_test_add_func("/presence/watch-limit", test_watch_limit);
	g_test_add_func("/presence/watch-errors", test_watch_errors);
	g_test_add_func("/presence/burst-order", test_burst_order);
	g_test_add_func("/presence/slow-watcher", test_slow_watcher);
	g_test_add_func("/presence/watch-bounds", test_watch_bounds);
	g_test_add_func("/presence/room-bound-presence", test_room_bound_presence);
	g_test_add_func("/presence/watch-size", test_watch_size);
	g_test_add_func("/presence/watch-filter-work", test_watch_filter_work);
	g_test_add_func("/presence/old-clients", test_old_clients);
	g_test_add_func("/presence/superseded", test_superseded);
	return g_test_run();
}
