/* Integration tests: the v2 protocol over real WebSocket connections to
 * the real daemon. */
#include "nested.h"
#include "testd.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <math.h>
#include <string.h>

static struct testd *d;

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;
	json_object_object_get_ex(o, key, &v);
	return v;
}

static void drop(struct wsc *c)
{
	wsc_free(c);
}

static void test_register_reply(void)
{
	struct wsc *a = testd_register(d, "reg-room", "Client-1489",
				       ",\"role\":\"client\",\"metadata\":{\"tags\":[],\"properties\":{}}");
	struct wsc *b = testd_connect(d);
	static const char *order[] = { "type", "room_id", "token", "peer_id", "admin_peer_id",
				       "peer_list", "peer_metadata", "ice_servers", "mesh_ice_servers",
				       "protocol" };

	wsc_send_text(b, "{\"type\":\"register\",\"peer_id\":\"Worker-3108\",\"room_id\":\"reg-room\","
			 "\"token\":\"f7g8h9\",\"role\":\"worker\",\"metadata\":{\"tags\":[\"gpu\"],"
			 "\"properties\":{\"gpu_memory_mb\":16384}},\"is_admin\":false}");
	json_object *o = wsc_expect(b, "registered_auth");
	int i = 0;
	json_object_object_foreach(o, key, val) {
		(void)val;
		g_assert_cmpint(i, <, (int)G_N_ELEMENTS(order));
		g_assert_cmpstr(key, ==, order[i++]);
	}
	g_assert_cmpint(i, ==, G_N_ELEMENTS(order));
	g_assert_cmpstr(testd_str(o, "room_id"), ==, "reg-room");
	g_assert_cmpstr(testd_str(o, "token"), ==, "f7g8h9");
	g_assert_cmpstr(testd_str(o, "peer_id"), ==, "Worker-3108");
	g_assert_null(get(o, "admin_peer_id"));
	g_assert_cmpstr(json_object_to_json_string_ext(get(o, "peer_list"), JSON_C_TO_STRING_PLAIN), ==,
			"[\"Client-1489\"]");
	g_assert_cmpstr(json_object_to_json_string_ext(get(o, "peer_metadata"), JSON_C_TO_STRING_PLAIN), ==,
			"{\"Client-1489\":{\"tags\":[],\"properties\":{}}}");
	g_assert_cmpint(json_object_array_length(get(o, "ice_servers")), ==, 0);
	g_assert_cmpint(json_object_array_length(get(o, "mesh_ice_servers")), ==, 0);
	g_assert_cmpstr(testd_str(o, "protocol"), ==, "2.0"); /* it declared nothing */
	json_object_put(o);
	drop(a);
	drop(b);
}

static void test_generated_peer_id(void)
{
	struct wsc *c = testd_connect(d);
	wsc_send_text(c, "{\"type\":\"register\",\"room_id\":\"gen\"}");
	json_object *o = wsc_expect(c, "registered_auth");
	const char *id = testd_str(o, "peer_id");
	g_assert_true(g_str_has_prefix(id, "peer-"));
	g_assert_cmpuint(strlen(id), ==, 5 + 12);
	g_assert_cmpuint(strspn(id + 5, "0123456789abcdef"), ==, 12);
	g_assert_null(get(o, "token"));
	json_object_put(o);
	drop(c);
}

static void test_v1_compat(void)
{
	/* A v1 client: numeric id, no role, no metadata. */
	struct wsc *v1 = testd_connect(d);
	wsc_send_text(v1, "{\"type\":\"register\",\"peer_id\":42,\"room_id\":\"compat\"}");
	json_object_put(wsc_expect(v1, "registered_auth"));
	struct wsc *v2 = testd_register(d, "compat", "w2", ",\"role\":\"worker\",\"metadata\":{\"tags\":[\"gpu\"]}");

	wsc_send_text(v2, "{\"type\":\"discover_peers\",\"from_peer_id\":\"w2\",\"filters\":{\"room_id\":\"compat\"}}");
	json_object *o = wsc_expect(v2, "peer_list");
	json_object *p = json_object_array_get_idx(get(o, "peers"), 0);
	g_assert_cmpstr(testd_str(p, "peer_id"), ==, "42");
	g_assert_cmpstr(testd_str(p, "role"), ==, "peer");
	g_assert_cmpstr(json_object_to_json_string_ext(get(p, "metadata"), JSON_C_TO_STRING_PLAIN), ==, "{}");
	json_object_put(o);

	/* v1 and v2 talk both ways. */
	wsc_send_text(v1, "{\"type\":\"peer_message\",\"from_peer_id\":42,\"to_peer_id\":\"w2\",\"payload\":\"hi\"}");
	o = wsc_expect(v2, "peer_message");
	g_assert_cmpstr(testd_str(o, "from_peer_id"), ==, "42");
	json_object_put(o);
	wsc_send_text(v2, "{\"type\":\"peer_message\",\"to_peer_id\":42,\"payload\":\"yo\"}");
	o = wsc_expect(v1, "peer_message");
	g_assert_cmpstr(testd_str(o, "payload"), ==, "yo");
	json_object_put(o);
	drop(v1);
	drop(v2);
}

static void test_offer_answer_candidate(void)
{
	struct wsc *a = testd_register(d, "webrtc", "Client-1489", NULL);
	struct wsc *b = testd_register(d, "webrtc", "Worker-3108", NULL);
	GBytes *raw;
	int opcode;
	const char *offer =
		"{\"type\":\"offer\",\"sender\":\"Client-1489\",\"target\":\"Worker-3108\","
		"\"sdp\":\"v=0\\r\\no=- 46117 2 IN IP4 127.0.0.1\\r\\n\",\"extra\":{\"n\":[1,2]},\"v\":1}";

	/* With the sender given, the object is forwarded byte for byte, and
	 * the sender's registered role added. */
	wsc_send_text(a, offer);
	g_assert_cmpint(wsc_recv(b, WSC_TIMEOUT_MS, &raw, &opcode), ==, 0);
	g_autofree char *want = g_strdup_printf("%.*s,\"sender_role\":\"peer\"}", (int)strlen(offer) - 1, offer);
	g_assert_cmpmem(g_bytes_get_data(raw, NULL), g_bytes_get_size(raw), want, strlen(want));
	g_bytes_unref(raw);

	/* Without it, the server fills it in and keeps every field. */
	wsc_send_text(b, "{\"type\":\"answer\",\"target\":\"Client-1489\",\"sdp\":\"v=0 answer\",\"seq\":7}");
	json_object *o = wsc_expect(a, "answer");
	g_assert_cmpstr(testd_str(o, "sender"), ==, "Worker-3108");
	g_assert_cmpstr(testd_str(o, "target"), ==, "Client-1489");
	g_assert_cmpstr(testd_str(o, "sdp"), ==, "v=0 answer");
	g_assert_cmpint(json_object_get_int(get(o, "seq")), ==, 7);
	json_object_put(o);

	wsc_send_text(a, "{\"type\":\"candidate\",\"sender\":\"Client-1489\",\"target\":\"Worker-3108\","
			 "\"candidate\":{\"candidate\":\"candidate:1 1 udp 2122260223 10.0.0.1 54321 typ host\","
			 "\"sdpMid\":\"0\",\"sdpMLineIndex\":0}}");
	o = wsc_expect(b, "candidate");
	g_assert_cmpstr(testd_str(get(o, "candidate"), "sdpMid"), ==, "0");
	g_assert_cmpint(json_object_get_int(get(get(o, "candidate"), "sdpMLineIndex")), ==, 0);
	json_object_put(o);

	/* Missing target, unknown target, spoofed sender. */
	wsc_send_text(a, "{\"type\":\"offer\",\"sdp\":\"v=0\"}");
	json_object_put(wsc_expect_error(a, "INVALID_MESSAGE"));
	wsc_send_text(a, "{\"type\":\"offer\",\"target\":\"nobody\",\"sdp\":\"v=0\"}");
	json_object_put(wsc_expect_error(a, "PEER_NOT_FOUND"));
	wsc_send_text(a, "{\"type\":\"offer\",\"sender\":\"Worker-3108\",\"target\":\"Worker-3108\",\"sdp\":\"v=0\"}");
	json_object_put(wsc_expect_error(a, "FORBIDDEN"));
	wsc_expect_quiet(b); /* nothing was forwarded */

	/* A repeated "sender" cannot smuggle another name to a receiver that
	 * reads the first: what arrives names only the real sender. */
	wsc_send_text(a, "{\"type\":\"offer\",\"sender\":\"Victim-1\",\"sender\":\"Client-1489\","
			 "\"target\":\"Worker-3108\",\"sdp\":\"v=0\"}");
	g_assert_cmpint(wsc_recv(b, WSC_TIMEOUT_MS, &raw, &opcode), ==, 0);
	g_autofree char *text = g_strndup(g_bytes_get_data(raw, NULL), g_bytes_get_size(raw));
	g_bytes_unref(raw);
	g_assert_null(strstr(text, "Victim-1"));
	o = json_tokener_parse(text);
	g_assert_cmpstr(testd_str(o, "sender"), ==, "Client-1489");
	json_object_put(o);
	drop(a);
	drop(b);
}

static void test_peer_message(void)
{
	struct wsc *a = testd_register(d, "pm", "a", NULL);
	struct wsc *b = testd_register(d, "pm", "b", NULL);
	struct wsc *x = testd_register(d, "pm-other", "x", NULL);

	wsc_send_text(a, "{\"type\":\"peer_message\",\"from_peer_id\":\"a\",\"to_peer_id\":\"b\","
			 "\"payload\":{\"app_message_type\":\"job_request\",\"job_id\":\"uuid-123\",\"n\":[1,{\"d\":null}]},"
			 "\"extra\":\"dropped\"}");
	json_object *o = wsc_expect(b, "peer_message");
	g_assert_cmpint(json_object_object_length(o), ==, 4);
	g_assert_cmpstr(testd_str(o, "from_peer_id"), ==, "a");
	g_assert_cmpstr(testd_str(o, "to_peer_id"), ==, "b");
	g_assert_cmpstr(json_object_to_json_string_ext(get(o, "payload"), JSON_C_TO_STRING_PLAIN), ==,
			"{\"app_message_type\":\"job_request\",\"job_id\":\"uuid-123\",\"n\":[1,{\"d\":null}]}");
	json_object_put(o);
	wsc_expect_quiet(a); /* nothing comes back on success */

	wsc_send_text(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"x\",\"payload\":1}");
	o = wsc_expect_error(a, "PEER_NOT_IN_ROOM");
	g_assert_cmpstr(testd_str(o, "message"), ==, "Target peer x not in same room");
	g_assert_cmpstr(testd_str(o, "reason"), ==, "Target peer x not in same room"); /* every error */
	g_assert_cmpstr(testd_str(o, "to_peer_id"), ==, "x");
	json_object_put(o);
	wsc_send_text(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"ghost\",\"payload\":1}");
	o = wsc_expect_error(a, "PEER_NOT_FOUND");
	g_assert_cmpstr(testd_str(o, "message"), ==, "Target peer ghost not found");
	json_object_put(o);
	wsc_send_text(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"b\"}");
	json_object_put(wsc_expect_error(a, "INVALID_MESSAGE"));
	wsc_send_text(a, "{\"type\":\"peer_message\",\"payload\":{}}");
	json_object_put(wsc_expect_error(a, "INVALID_MESSAGE"));
	/* Spoofing another peer's id. */
	wsc_send_text(a, "{\"type\":\"peer_message\",\"from_peer_id\":\"b\",\"to_peer_id\":\"b\",\"payload\":1}");
	json_object_put(wsc_expect_error(a, "FORBIDDEN"));
	wsc_expect_quiet(b);
	wsc_expect_quiet(x);
	drop(a);
	drop(b);
	drop(x);
}

static void test_mesh(void)
{
	struct wsc *a = testd_register(d, "mesh", "w1", ",\"role\":\"worker\"");
	struct wsc *b = testd_register(d, "mesh", "w2", ",\"role\":\"worker\"");
	json_object *o;

	wsc_send_text(a, "{\"type\":\"mesh_connect\",\"from_peer_id\":\"w1\",\"target_peer_id\":\"w2\","
			 "\"offer\":{\"type\":\"offer\",\"sdp\":\"v=0\"},\"junk\":1}");
	o = wsc_expect(b, "mesh_offer");
	g_assert_cmpint(json_object_object_length(o), ==, 3);
	g_assert_cmpstr(testd_str(o, "from_peer_id"), ==, "w1");
	g_assert_cmpstr(testd_str(get(o, "offer"), "sdp"), ==, "v=0");
	json_object_put(o);

	wsc_send_text(b, "{\"type\":\"mesh_answer\",\"target_peer_id\":\"w1\",\"answer\":{\"sdp\":\"v=1\"}}");
	o = wsc_expect(a, "mesh_answer");
	g_assert_cmpint(json_object_object_length(o), ==, 3);
	g_assert_cmpstr(testd_str(o, "from_peer_id"), ==, "w2");
	g_assert_cmpstr(testd_str(get(o, "answer"), "sdp"), ==, "v=1");
	json_object_put(o);

	wsc_send_text(a, "{\"type\":\"ice_candidate\",\"target_peer_id\":\"w2\",\"candidate\":{\"candidate\":\"c\"}}");
	o = wsc_expect(b, "ice_candidate");
	g_assert_cmpint(json_object_object_length(o), ==, 3);
	g_assert_cmpstr(testd_str(o, "from_peer_id"), ==, "w1");
	g_assert_cmpstr(testd_str(get(o, "candidate"), "candidate"), ==, "c");
	json_object_put(o);

	wsc_send_text(a, "{\"type\":\"mesh_connect\",\"target_peer_id\":\"w9\",\"offer\":{}}");
	o = wsc_expect_error(a, "PEER_NOT_FOUND");
	g_assert_cmpstr(testd_str(o, "target_peer_id"), ==, "w9");
	json_object_put(o);
	wsc_send_text(a, "{\"type\":\"ice_candidate\",\"from_peer_id\":\"w2\",\"target_peer_id\":\"w2\",\"candidate\":{}}");
	json_object_put(wsc_expect_error(a, "FORBIDDEN"));
	drop(a);
	drop(b);
}

/* Peer ids of a peer_list, comma-joined. */
static char *discover(struct wsc *c, const char *filters_and_limit)
{
	wsc_sendf(c, "{\"type\":\"discover_peers\"%s}", filters_and_limit);
	json_object *o = wsc_expect(c, "peer_list");
	json_object *peers = get(o, "peers");
	GString *s = g_string_new(NULL);
	g_assert_cmpint(json_object_get_int(get(o, "count")), ==, (int)json_object_array_length(peers));
	for (size_t i = 0; i < json_object_array_length(peers); i++) {
		json_object *p = json_object_array_get_idx(peers, i);
		g_assert_nonnull(get(p, "connected_at"));
		g_assert_true(json_object_is_type(get(p, "connected_at"), json_type_double));
		/* Seconds since the epoch: within this test's minute. */
		double at = json_object_get_double(get(p, "connected_at"));
		g_assert_cmpfloat(fabs(at - (double)g_get_real_time() / G_USEC_PER_SEC), <, 60.0);
		g_string_append_printf(s, "%s%s", i ? "," : "", testd_str(p, "peer_id"));
	}
	json_object_put(o);
	return g_string_free(s, FALSE);
}

#define DISCOVERS(c, q, want)                      \
	do {                                           \
		char *got_ = discover(c, q);               \
		g_assert_cmpstr(got_, ==, want);           \
		g_free(got_);                              \
	} while (0)

static void test_discovery(void)
{
	struct wsc *w1 = testd_register(d, "disc", "w1", ",\"role\":\"worker\",\"metadata\":{\"tags\":[\"gpu\",\"training\"],"
							   "\"properties\":{\"gpu_memory_mb\":16384,\"status\":\"available\",\"model\":\"A100\"}}");
	struct wsc *w2 = testd_register(d, "disc", "w2", ",\"role\":\"worker\",\"metadata\":{\"tags\":[\"gpu\"],"
							   "\"properties\":{\"gpu_memory_mb\":8192,\"status\":\"busy\",\"model\":\"T4\"}}");
	struct wsc *w3 = testd_register(d, "disc", "w3", ",\"role\":\"worker\",\"metadata\":{\"tags\":[\"cpu\"],"
							   "\"properties\":{\"status\":\"available\"}}");
	struct wsc *c = testd_register(d, "disc", "c1", ",\"role\":\"client\"");
	struct wsc *o1 = testd_register(d, "disc-other", "w9", ",\"role\":\"worker\"");

	DISCOVERS(c, "", "w1,w2,w3");              /* requester excluded, registration order */
	DISCOVERS(w1, ",\"filters\":{}", "w2,w3,c1");
	DISCOVERS(c, ",\"filters\":{\"role\":\"client\"}", ""); /* empty result */
	DISCOVERS(w1, ",\"filters\":{\"role\":[\"client\",\"admin\"]}", "c1");
	DISCOVERS(c, ",\"filters\":{\"tags\":[\"gpu\"]}", "w1,w2");
	DISCOVERS(c, ",\"filters\":{\"tags\":{\"$all\":[\"gpu\",\"training\"]}}", "w1");
	DISCOVERS(c, ",\"filters\":{\"tags\":{\"$any\":[\"cpu\",\"training\"]}}", "w1,w3");
	DISCOVERS(c, ",\"filters\":{\"role\":\"worker\",\"tags\":[\"gpu\"],\"properties\":"
		     "{\"gpu_memory_mb\":{\"$gte\":8192},\"status\":\"available\"}}", "w1");
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"gpu_memory_mb\":{\"$eq\":8192}}}", "w2");
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"status\":{\"$ne\":\"busy\"}}}", "w1,w3");
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"gpu_memory_mb\":{\"$gt\":8192}}}", "w1");
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"gpu_memory_mb\":{\"$lt\":16384}}}", "w2");
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"gpu_memory_mb\":{\"$lte\":16384}}}", "w1,w2");
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"model\":{\"$in\":[\"T4\",\"V100\"]}}}", "w2");
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"model\":{\"$nin\":[\"T4\"]}}}", "w1,w3");
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"model\":{\"$exists\":false}}}", "w3");
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"gpu_memory_mb\":{\"$gte\":\"8192\"}}}", ""); /* mistyped */
	DISCOVERS(c, ",\"limit\":2", "w1,w2");
	DISCOVERS(c, ",\"filters\":{\"role\":\"worker\"},\"limit\":1", "w1");

	wsc_send_text(c, "{\"type\":\"discover_peers\",\"filters\":{\"properties\":{\"x\":{\"$regex\":\".*\"}}}}");
	json_object_put(wsc_expect_error(c, "INVALID_FILTER"));
	wsc_send_text(c, "{\"type\":\"discover_peers\",\"filters\":\"worker\"}");
	json_object_put(wsc_expect_error(c, "INVALID_MESSAGE"));
	wsc_send_text(c, "{\"type\":\"discover_peers\",\"from_peer_id\":\"w1\"}");
	json_object_put(wsc_expect_error(c, "FORBIDDEN"));
	/* the socket is still fine after every error */
	DISCOVERS(c, ",\"filters\":{\"role\":\"worker\"},\"limit\":1", "w1");

	/* Disconnect: gone from discovery. */
	drop(w2);
	g_assert_true(testd_wait_log(d, "event=peer_left room=disc peer=w2", 5000));
	DISCOVERS(c, "", "w1,w3");
	drop(w1);
	drop(w3);
	drop(c);
	drop(o1);
}

static void test_update_metadata(void)
{
	struct wsc *w = testd_register(d, "upd", "w", ",\"role\":\"worker\",\"metadata\":{\"tags\":[\"gpu\"],"
						 "\"properties\":{\"status\":\"available\",\"mem\":1,\"_cred\":\"s3cret\"}}");
	struct wsc *c = testd_register(d, "upd", "c", NULL);

	wsc_send_text(w, "{\"type\":\"update_metadata\",\"peer_id\":\"w\",\"metadata\":{\"properties\":{\"status\":\"busy\",\"mem\":null}}}");
	json_object *o = wsc_expect(w, "metadata_updated");
	g_assert_cmpstr(testd_str(o, "peer_id"), ==, "w");
	g_assert_cmpstr(json_object_to_json_string_ext(get(o, "metadata"), JSON_C_TO_STRING_PLAIN), ==,
			"{\"tags\":[\"gpu\"],\"properties\":{\"status\":\"busy\",\"_cred\":\"s3cret\"}}");
	json_object_put(o);
	DISCOVERS(c, ",\"filters\":{\"properties\":{\"status\":\"busy\",\"mem\":{\"$exists\":false}}}", "w");

	/* Others never see private keys. */
	wsc_send_text(c, "{\"type\":\"discover_peers\"}");
	o = wsc_expect(c, "peer_list");
	g_assert_null(strstr(json_object_to_json_string(o), "s3cret"));
	g_assert_null(strstr(json_object_to_json_string(o), "_cred"));
	json_object_put(o);

	wsc_send_text(w, "{\"type\":\"update_metadata\",\"peer_id\":\"c\",\"metadata\":{}}");
	json_object_put(wsc_expect_error(w, "FORBIDDEN"));
	wsc_send_text(w, "{\"type\":\"update_metadata\",\"metadata\":{\"tags\":\"x\"}}");
	json_object_put(wsc_expect_error(w, "INVALID_MESSAGE"));
	drop(w);
	drop(c);
}

static void test_not_in_room(void)
{
	struct wsc *c = testd_connect(d);
	static const char *msgs[] = {
		"{\"type\":\"discover_peers\"}",
		"{\"type\":\"update_metadata\",\"metadata\":{}}",
		"{\"type\":\"peer_message\",\"to_peer_id\":\"a\",\"payload\":1}",
		"{\"type\":\"peer_message\"}",
		"{\"type\":\"offer\",\"target\":\"a\",\"sdp\":\"\"}",
		"{\"type\":\"mesh_connect\",\"target_peer_id\":\"a\",\"offer\":{}}",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(msgs); i++) {
		wsc_send_text(c, msgs[i]);
		json_object_put(wsc_expect_error(c, "NOT_IN_ROOM"));
	}
	wsc_expect_quiet(c); /* ping works unregistered */
	drop(c);
}

static void test_bad_input_keeps_socket(void)
{
	struct wsc *c = testd_register(d, "bad", "b", NULL);
	json_object *o;

	wsc_send_text(c, "{not json");
	o = wsc_expect_error(c, "INVALID_JSON");
	g_assert_cmpstr(testd_str(o, "message"), ==, "Invalid JSON format");
	json_object_put(o);
	wsc_send_text(c, "[1,2,3]");
	json_object_put(wsc_expect_error(c, "INVALID_JSON"));
	wsc_send_text(c, "{\"type\":\"teleport\"}");
	o = wsc_expect_error(c, "UNKNOWN_MESSAGE_TYPE");
	g_assert_cmpstr(testd_str(o, "message"), ==, "Unknown message type: teleport");
	json_object_put(o);
	wsc_send_text(c, "{\"hello\":1}");
	json_object_put(wsc_expect_error(c, "UNKNOWN_MESSAGE_TYPE"));
	/* JSON in a binary frame is accepted. */
	const char *ping = "{\"type\":\"ping\"}";
	wsc_send_frame(c, WSC_BINARY, true, ping, strlen(ping));
	json_object_put(wsc_expect(c, "pong"));
	/* A message in several frames. */
	wsc_send_frame(c, WSC_TEXT, false, "{\"type\"", 7);
	wsc_send_frame(c, 0, false, ":\"pi", 4);
	wsc_send_frame(c, 0, true, "ng\"}", 4);
	json_object_put(wsc_expect(c, "pong"));
	/* A nesting bomb is refused, not followed. */
	GString *deep = nested_json("{\"type\":\"ping\",\"x\":", 5000, false);
	wsc_send_text(c, deep->str);
	g_string_free(deep, TRUE);
	json_object_put(wsc_expect_error(c, "INVALID_JSON"));
	/* Still registered and served. */
	wsc_expect_quiet(c);
	drop(c);
}

/* lws checks UTF-8 in text frames only: in a binary frame, text that is
 * not UTF-8 is invalid JSON, also where the payload would be forwarded as
 * written (it would leave in a text frame, which browsers drop their
 * connection over). */
static void test_binary_not_utf8(void)
{
	struct wsc *a = testd_register(d, "utf8", "a", NULL);
	struct wsc *b = testd_register(d, "utf8", "b", NULL);
	const char bad[] = "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":\"\xff\xfe\"}";

	wsc_send_frame(a, WSC_BINARY, true, bad, sizeof bad - 1);
	json_object_put(wsc_expect_error(a, "INVALID_JSON"));
	wsc_expect_quiet(b);
	drop(a);
	drop(b);
}

static void test_replace_and_move(void)
{
	struct wsc *old = testd_register(d, "rep", "dup", NULL);
	struct wsc *other = testd_register(d, "rep", "other", NULL);
	struct wsc *fresh = testd_register(d, "rep", "dup", ",\"role\":\"new\"");
	json_object *o;

	o = wsc_expect_error(old, "SESSION_REPLACED");
	json_object_put(o);
	g_assert_cmpint(wsc_wait_close(old, WSC_TIMEOUT_MS), ==, 4001);
	drop(old);
	/* The old socket's close did not remove the new registration. */
	DISCOVERS(other, "", "dup");
	wsc_send_text(other, "{\"type\":\"peer_message\",\"to_peer_id\":\"dup\",\"payload\":\"to-new\"}");
	o = wsc_expect(fresh, "peer_message");
	g_assert_cmpstr(testd_str(o, "payload"), ==, "to-new");
	json_object_put(o);

	/* A second register on a registered socket moves it. */
	wsc_send_text(fresh, "{\"type\":\"register\",\"peer_id\":\"moved\",\"room_id\":\"rep-2\"}");
	o = wsc_expect(fresh, "registered_auth");
	g_assert_cmpint(json_object_array_length(get(o, "peer_list")), ==, 0);
	json_object_put(o);
	DISCOVERS(other, "", "");
	wsc_send_text(other, "{\"type\":\"peer_message\",\"to_peer_id\":\"moved\",\"payload\":1}");
	json_object_put(wsc_expect_error(other, "PEER_NOT_IN_ROOM"));
	drop(fresh);
	drop(other);
}

static void test_admin_seat(void)
{
	struct wsc *a = testd_register(d, "adm", "boss", ",\"is_admin\":true");
	struct wsc *b = testd_connect(d);
	json_object *o;

	wsc_send_text(b, "{\"type\":\"register\",\"peer_id\":\"pretender\",\"room_id\":\"adm\",\"is_admin\":true}");
	o = wsc_expect(b, "admin_conflict");
	g_assert_cmpstr(testd_str(o, "room_id"), ==, "adm");
	g_assert_cmpstr(testd_str(o, "current_admin"), ==, "boss");
	json_object_put(o);
	o = wsc_expect(b, "registered_auth");
	g_assert_cmpstr(testd_str(o, "admin_peer_id"), ==, "boss");
	json_object_put(o);

	/* When the admin leaves, the seat is empty and can be taken. */
	drop(a);
	g_assert_true(testd_wait_log(d, "event=peer_left room=adm peer=boss", 5000));
	struct wsc *c = testd_connect(d);
	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"next\",\"room_id\":\"adm\",\"is_admin\":true}");
	o = wsc_expect(c, "registered_auth");
	g_assert_cmpstr(testd_str(o, "admin_peer_id"), ==, "next");
	json_object_put(o);
	drop(b);
	drop(c);
}

static void test_empty_room_freed(void)
{
	struct wsc *a = testd_register(d, "ephemeral", "first", ",\"is_admin\":true");
	drop(a);
	g_assert_true(testd_wait_log(d, "room ephemeral freed", 5000));
	struct wsc *b = testd_connect(d);
	wsc_send_text(b, "{\"type\":\"register\",\"peer_id\":\"second\",\"room_id\":\"ephemeral\"}");
	json_object *o = wsc_expect(b, "registered_auth");
	g_assert_null(get(o, "admin_peer_id"));
	g_assert_cmpint(json_object_array_length(get(o, "peer_list")), ==, 0);
	json_object_put(o);
	drop(b);
}

static void test_register_errors(void)
{
	struct wsc *c = testd_connect(d);
	json_object *o;

	wsc_send_text(c, "{\"type\":\"register\",\"peer_id\":\"p\"}");
	o = wsc_expect_error(c, "INVALID_MESSAGE");
	g_assert_cmpstr(testd_str(o, "reason"), ==, testd_str(o, "message"));
	json_object_put(o);
	wsc_send_text(c, "{\"type\":\"register\",\"room_id\":\"bad room!\"}");
	json_object_put(wsc_expect_error(c, "INVALID_MESSAGE"));
	wsc_send_text(c, "{\"type\":\"register\",\"room_id\":\"r\",\"metadata\":{\"tags\":[5]}}");
	json_object_put(wsc_expect_error(c, "INVALID_MESSAGE"));
	/* Over max_metadata_bytes (16 KiB by default). */
	GString *big = g_string_new("{\"type\":\"register\",\"room_id\":\"r\",\"metadata\":{\"properties\":{\"b\":\"");
	for (int i = 0; i < 17000; i++)
		g_string_append_c(big, 'x');
	g_string_append(big, "\"}}}");
	wsc_send_text(c, big->str);
	g_string_free(big, TRUE);
	o = wsc_expect_error(c, "INVALID_MESSAGE");
	g_assert_cmpstr(testd_str(o, "reason"), ==, "metadata is too large");
	json_object_put(o);
	wsc_expect_quiet(c);
	drop(c);
}

static void test_payload_never_logged(void)
{
	struct wsc *a = testd_register(d, "secret", "a", NULL);
	struct wsc *b = testd_register(d, "secret", "b", NULL);
	const char *marker = "UNIQUE-PAYLOAD-7f3c9a";

	wsc_sendf(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":\"%s\"}", marker);
	json_object_put(wsc_expect(b, "peer_message"));
	wsc_sendf(a, "{\"type\":\"offer\",\"target\":\"b\",\"sdp\":\"%s-sdp\"}", marker);
	json_object_put(wsc_expect(b, "offer"));
	wsc_sendf(a, "{\"type\":\"peer_message\",\"to_peer_id\":\"nobody\",\"payload\":\"%s\"}", marker);
	json_object_put(wsc_expect_error(a, "PEER_NOT_FOUND"));
	wsc_sendf(a, "{\"type\":\"%s\"}", "x");
	json_object_put(wsc_expect_error(a, "UNKNOWN_MESSAGE_TYPE"));
	drop(a);
	drop(b);
	g_assert_true(testd_wait_log(d, "event=peer_left room=secret peer=b", 5000));
	g_autofree char *log = testd_log_copy(d);
	g_assert_null(strstr(log, marker));
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, G_TEST_OPTION_ISOLATE_DIRS, NULL);
	d = testd_start(NULL, NULL);
	g_test_add_func("/signaling/register-reply", test_register_reply);
	g_test_add_func("/signaling/generated-peer-id", test_generated_peer_id);
	g_test_add_func("/signaling/v1-compat", test_v1_compat);
	g_test_add_func("/signaling/offer-answer-candidate", test_offer_answer_candidate);
	g_test_add_func("/signaling/peer-message", test_peer_message);
	g_test_add_func("/signaling/mesh", test_mesh);
	g_test_add_func("/signaling/discovery", test_discovery);
	g_test_add_func("/signaling/update-metadata", test_update_metadata);
	g_test_add_func("/signaling/not-in-room", test_not_in_room);
	g_test_add_func("/signaling/bad-input-keeps-socket", test_bad_input_keeps_socket);
	g_test_add_func("/signaling/binary-not-utf8", test_binary_not_utf8);
	g_test_add_func("/signaling/replace-and-move", test_replace_and_move);
	g_test_add_func("/signaling/admin-seat", test_admin_seat);
	g_test_add_func("/signaling/empty-room-freed", test_empty_room_freed);
	g_test_add_func("/signaling/register-errors", test_register_errors);
	g_test_add_func("/signaling/payload-never-logged", test_payload_never_logged);
	int r = g_test_run();
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
	return r;
}
