/* Integration tests: what the daemon lets in as JSON, and what one message
 * may cost to read.  Only RFC 8259 JSON is accepted and forwarded; ids are
 * taken only when they convert exactly; a message's values are bounded
 * before any tree is built. */
#include "testd.h"

#include <string.h>

/* A room with two peers, "a" sending and "b" watching. */
struct pair {
	struct testd *d;
	struct wsc *a, *b;
};

static void pair_open(struct pair *p, const char *conf, const char *room)
{
	p->d = testd_start(conf, NULL);
	p->a = testd_register(p->d, room, "a", NULL);
	p->b = testd_register(p->d, room, "b", NULL);
}

static void pair_close(struct pair *p)
{
	wsc_free(p->a);
	wsc_free(p->b);
	g_assert_cmpint(testd_stop(p->d), ==, 0);
	testd_free(p->d);
}

/* A sends TEXT and gets CODE; B receives nothing meanwhile. */
static void refused(struct pair *p, const char *text, const char *code)
{
	wsc_send_text(p->a, text);
	json_object_put(wsc_expect_error(p->a, code));
	wsc_expect_quiet(p->b);
}

/* The next message C receives ends with TAIL, as sent. */
static void received(struct wsc *c, const char *tail)
{
	GBytes *b = NULL;
	gsize n;
	g_assert_cmpint(wsc_recv(c, WSC_TIMEOUT_MS, &b, NULL), ==, 0);
	const char *text = g_bytes_get_data(b, &n);
	g_assert_cmpuint(n, >=, strlen(tail));
	g_assert_cmpmem(text + n - strlen(tail), strlen(tail), tail, strlen(tail));
	g_bytes_unref(b);
}

static const char *const not_rfc[] = {
	"NaN", "Infinity", "-Infinity", "[1,NaN]", "{\"x\":{\"y\":-Infinity}}",
	"1.",  /* a trailing dot */
	"{'k':1}", /* a single-quoted key */
	"\"tab\there\"", /* a raw control character in a string */
};

static void test_not_rfc_json(void)
{
	struct pair p;
	pair_open(&p, NULL, "rfc");

	for (size_t i = 0; i < G_N_ELEMENTS(not_rfc); i++) {
		const char *v = not_rfc[i];
		g_autofree char *fast = g_strdup_printf(
			"{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":%s}", v);
		g_autofree char *mesh = g_strdup_printf(
			"{\"type\":\"mesh_connect\",\"target_peer_id\":\"b\",\"offer\":%s}", v);
		g_autofree char *sig = g_strdup_printf(
			"{\"type\":\"offer\",\"target\":\"b\",\"sdp\":%s}", v);
		g_autofree char *upd = g_strdup_printf(
			"{\"type\":\"update_metadata\",\"metadata\":{\"properties\":{\"load\":%s}}}", v);
		g_autofree char *disc = g_strdup_printf(
			"{\"type\":\"discover_peers\",\"filters\":{\"properties\":{\"load\":%s}}}", v);
		refused(&p, fast, "INVALID_JSON");
		refused(&p, mesh, "INVALID_JSON");
		refused(&p, sig, "INVALID_JSON");
		refused(&p, upd, "INVALID_JSON");
		refused(&p, disc, "INVALID_JSON");
	}
	/* Registering with such metadata: refused, and nobody hears of it. */
	struct wsc *c = testd_connect(p.d);
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"n\",\"room_id\":\"rfc\","
			 "\"metadata\":{\"properties\":{\"load\":NaN}}}");
	json_object_put(wsc_expect_error(c, "INVALID_JSON"));
	wsc_send_text(c, "{\"type\":\"ping\",\"x\":Infinity}");
	json_object_put(wsc_expect_error(c, "INVALID_JSON"));
	wsc_expect_quiet(p.a);
	wsc_expect_quiet(p.b);
	wsc_free(c);

	/* What stays valid still goes through, both paths. */
	wsc_send_text(p.a, "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":[1e400,-0,\"NaN\"]}");
	received(p.b, "\"payload\":[1e400,-0,\"NaN\"]}");
	wsc_send_text(p.a, " {\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":{\"\\u0041\":1}} ");
	received(p.b, "\"payload\":{\"A\":1}}");
	pair_close(&p);
}

static void test_ids_exact(void)
{
	struct pair p;
	pair_open(&p, NULL, "ids");
	struct wsc *c = testd_connect(p.d);

	/* NUL in an id or a credential: json-c's C string would end there. */
	static const char *const bad_register[] = {
		"{\"type\":\"register\",\"room_id\":\"ids\\u0000x\",\"peer_id\":\"n\"}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":\"n\\u0000x\"}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":\"n\",\"api_key\":\"k\\u0000x\"}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":\"n\",\"token\":\"t\\u0000x\"}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":\"n\",\"jwt\":\"j\\u0000x\"}",
		/* a key json-c would cut to "room_id" */
		"{\"type\":\"register\",\"room_id\\u0000x\":\"ids\",\"peer_id\":\"n\"}",
		/* numbers that are not exactly one integer */
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":1000000000000000000000000000000}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":18446744073709551615}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":9223372036854775808}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":-9223372036854775809}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":1.5}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":1.0}",
		"{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":1e3}",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad_register); i++) {
		wsc_send_text(c, bad_register[i]);
		json_object *e = wsc_recv_json(c);
		json_object *code = json_object_object_get(e, "code");
		if (!code || strcmp(json_object_get_string(code), "INVALID_MESSAGE") != 0)
			g_error("%s: %s", bad_register[i], json_object_to_json_string(e));
		json_object_put(e);
	}
	wsc_expect_quiet(p.a);
	wsc_expect_quiet(p.b);

	/* Routed: to an id spelled with NUL or as an inexact number. */
	static const char *const bad_route[] = {
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\\u0000x\",\"payload\":1}",
		"{\"type\":\"peer_message\",\"to_peer_id\":1e0,\"payload\":1}",
		"{\"type\":\"offer\",\"target\":\"b\\u0000\",\"sdp\":\"x\"}",
		"{\"type\":\"peer_message\",\"from_peer_id\":\"a\\u0000\",\"to_peer_id\":\"b\",\"payload\":1}",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad_route); i++)
		refused(&p, bad_route[i], "INVALID_MESSAGE");

	/* Exact integers still work, up to int64's edges. */
	wsc_send_text(c, "{\"type\":\"register\",\"room_id\":\"ids\",\"peer_id\":9223372036854775807}");
	json_object *o = wsc_expect(c, "registered_auth");
	g_assert_cmpstr(json_object_get_string(json_object_object_get(o, "peer_id")), ==,
			"9223372036854775807");
	json_object_put(o);
	wsc_send_text(p.a, "{\"type\":\"peer_message\",\"to_peer_id\":9223372036854775807,\"payload\":7}");
	json_object_put(wsc_expect(c, "peer_message"));
	wsc_free(c);
	pair_close(&p);
}

/* {"type":TYPE,"a":[{},{},...]} of about BYTES bytes. */
static char *empties(const char *type, size_t bytes)
{
	GString *s = g_string_new(NULL);
	g_string_printf(s, "{\"type\":\"%s\",\"a\":[{}", type);
	while (s->len + 8 < bytes)
		g_string_append(s, ",{}");
	g_string_append(s, "]}");
	return g_string_free(s, FALSE);
}

static void test_value_limit(void)
{
	struct testd *d = testd_start("[limits]\nmax_json_values = 100\n", NULL);
	struct wsc *c = testd_connect(d);

	/* 100 values pass: the object, its "type", the array and 97 in it. */
	GString *s = g_string_new("{\"type\":\"ping\",\"a\":[0");
	for (int i = 1; i < 97; i++)
		g_string_append(s, ",0");
	g_string_append(s, "]}");
	wsc_send_text(c, s->str);
	json_object_put(wsc_expect(c, "pong"));
	/* 101 do not, whatever the type and path. */
	g_string_truncate(s, s->len - 2);
	g_string_append(s, ",0]}");
	wsc_send_text(c, s->str);
	json_object_put(wsc_expect_error(c, "INVALID_JSON"));
	g_string_free(s, TRUE);
	g_autofree char *reg = empties("register", 1000);
	wsc_send_text(c, reg);
	json_object_put(wsc_expect_error(c, "INVALID_JSON"));
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_limit_hits_total{limit=\"max_json_values\"}"), ==, 2);
	wsc_expect_quiet(c);
	wsc_free(c);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* One client floods 1 MiB pings of [{},{},...]; another's pings are still
 * answered and the daemon's memory stays bounded.  With the value limit
 * raised out of the way, the pings themselves are answered too: their
 * unknown fields are skipped, not built into a tree. */
static void flood(const char *conf, const char *answer)
{
	struct testd *d = testd_start(conf, NULL);
	struct wsc *flooder = testd_connect(d), *other = testd_connect(d);
	g_autofree char *big = empties("ping", (1 << 20) - 64);
	long base = testd_rss_kib(d), peak = base;

	for (int i = 0; i < 40; i++) {
		g_assert_cmpint(wsc_send_text(flooder, big), ==, 0);
		json_object *o = wsc_recv_json(flooder);
		json_object *type = json_object_object_get(o, "type");
		g_assert_cmpstr(json_object_get_string(type), ==, answer);
		json_object_put(o);
		wsc_expect_quiet(other);
		peak = MAX(peak, testd_rss_kib(d));
	}
	g_test_message("RSS %ld KiB before, %ld KiB at most during the flood", base, peak);
	/* A tree of the message would be some 270 MB. */
	g_assert_cmpint(peak - base, <, 64 * 1024);
	wsc_free(flooder);
	wsc_free(other);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

static void test_ping_flood(void)
{
	flood("[limits]\nmessages_per_second = 1000\nmessages_burst = 1000\n", "error");
}

static void test_ping_flood_unlimited(void)
{
	flood("[limits]\nmessages_per_second = 1000\nmessages_burst = 1000\nmax_json_values = 1000000\n",
	      "pong");
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/parse/not-rfc-json", test_not_rfc_json);
	g_test_add_func("/parse/ids-exact", test_ids_exact);
	g_test_add_func("/parse/value-limit", test_value_limit);
	g_test_add_func("/parse/ping-flood", test_ping_flood);
	g_test_add_func("/parse/ping-flood-unlimited", test_ping_flood_unlimited);
	return g_test_run();
}
