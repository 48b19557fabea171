/* Unit tests: decoding client messages and building server messages. */
#include "protocol.h"
#include "nested.h"
#include "registry.h"

#include <glib.h>
#include <string.h>

static json_tokener *tok;

static int decode(const char *text, struct msg *m, struct msg_error *e)
{
	return protocol_decode(tok, text, strlen(text), m, e);
}

static void expect_error(const char *text, enum err_code code, const char *message)
{
	struct msg m;
	struct msg_error e;
	g_assert_cmpint(decode(text, &m, &e), <, 0);
	g_assert_cmpstr(protocol_code_name(e.code), ==, protocol_code_name(code));
	if (message)
		g_assert_cmpstr(e.message, ==, message);
	msg_clear(&m);
}

static void test_invalid_json(void)
{
	expect_error("not json", ERR_INVALID_JSON, "Invalid JSON format");
	expect_error("", ERR_INVALID_JSON, NULL);
	expect_error("[1,2]", ERR_INVALID_JSON, NULL);
	expect_error("\"type\"", ERR_INVALID_JSON, NULL);
	expect_error("null", ERR_INVALID_JSON, NULL);
	expect_error("{\"type\":\"ping\"} trailing", ERR_INVALID_JSON, NULL);
	expect_error("{\"type\":\"ping\"", ERR_INVALID_JSON, NULL);
	expect_error("{'type':'ping'}", ERR_INVALID_JSON, NULL);
	expect_error("{\"type\":\"ping\",}", ERR_INVALID_JSON, NULL);
	/* Invalid UTF-8 (a binary frame may carry anything). */
	expect_error("{\"type\":\"ping\",\"x\":\"\xff\xfe\"}", ERR_INVALID_JSON, NULL);
	/* Deeper than the tokener allows. */
	GString *deep = nested_json("{\"type\":\"ping\",\"x\":", 100, true);
	expect_error(deep->str, ERR_INVALID_JSON, NULL);
	g_string_free(deep, TRUE);
}

static void test_unknown_type(void)
{
	expect_error("{\"type\":\"dance\"}", ERR_UNKNOWN_MESSAGE_TYPE, "Unknown message type: dance");
	expect_error("{\"no_type\":1}", ERR_UNKNOWN_MESSAGE_TYPE, "Unknown message type: None");
	expect_error("{\"type\":5}", ERR_UNKNOWN_MESSAGE_TYPE, "Unknown message type: 5");
}

static void test_register(void)
{
	struct msg m;
	struct msg_error e;

	g_assert_cmpint(decode("{\"type\":\"register\",\"peer_id\":\"w1\",\"room_id\":\"r.1_x-Y\","
			       "\"token\":\"t\",\"role\":\"worker\",\"is_admin\":true,"
			       "\"metadata\":{\"tags\":[]},\"id_token\":\"jwt\"}",
			       &m, &e), ==, 0);
	g_assert_cmpint(m.type, ==, MSG_REGISTER);
	g_assert_cmpstr(m.reg.peer_id, ==, "w1");
	g_assert_cmpstr(m.reg.room_id, ==, "r.1_x-Y");
	g_assert_cmpstr(m.reg.role, ==, "worker");
	g_assert_cmpstr(m.reg.jwt, ==, "jwt");
	g_assert_true(m.reg.is_admin);
	g_assert_nonnull(m.reg.metadata);
	msg_clear(&m);

	/* v1: no role, no metadata, numeric peer id */
	g_assert_cmpint(decode("{\"type\":\"register\",\"peer_id\":3108,\"room_id\":\"abc\"}", &m, &e), ==, 0);
	g_assert_cmpstr(m.reg.peer_id, ==, "3108");
	g_assert_cmpstr(m.reg.role, ==, "peer");
	g_assert_null(m.reg.metadata);
	g_assert_false(m.reg.is_admin);
	g_assert_null(m.reg.token);
	msg_clear(&m);

	/* no peer id: the server generates one */
	g_assert_cmpint(decode("{\"type\":\"register\",\"room_id\":\"abc\"}", &m, &e), ==, 0);
	g_assert_null(m.reg.peer_id);
	msg_clear(&m);

	static const char *const bad[] = {
		"\"room_id\":\"a b\"", "\"room_id\":\"\"", "\"room_id\":5",
		"\"room_id\":\"r\",\"peer_id\":\"\"", "\"room_id\":\"r\",\"peer_id\":[1]",
		"\"room_id\":\"r\",\"role\":7", "\"room_id\":\"r\",\"metadata\":[]",
		"\"room_id\":\"r\",\"is_admin\":\"yes\"", "\"room_id\":\"r\",\"token\":12",
		"\"room_id\":\"r\",\"jwt\":{}", "\"room_id\":\"r\",\"api_key\":1",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_autofree char *text = g_strdup_printf("{\"type\":\"register\",%s}", bad[i]);
		expect_error(text, ERR_INVALID_MESSAGE, NULL);
	}

	GString *long_id = g_string_new("{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"");
	for (int i = 0; i < 129; i++)
		g_string_append_c(long_id, 'p');
	g_string_append(long_id, "\"}");
	expect_error(long_id->str, ERR_INVALID_MESSAGE, NULL);
	g_string_free(long_id, TRUE);
}

static void test_routing_fields(void)
{
	struct msg m;
	struct msg_error e;

	g_assert_cmpint(decode("{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":null}", &m, &e), ==, 0);
	g_assert_cmpstr(m.route.to, ==, "b");
	g_assert_null(m.route.from);
	msg_clear(&m);
	expect_error("{\"type\":\"peer_message\",\"payload\":{}}", ERR_INVALID_MESSAGE,
		     "Missing field: to_peer_id");
	expect_error("{\"type\":\"peer_message\",\"to_peer_id\":\"b\"}", ERR_INVALID_MESSAGE,
		     "Missing field: payload");
	expect_error("{\"type\":\"mesh_connect\",\"target_peer_id\":\"b\"}", ERR_INVALID_MESSAGE,
		     "Missing field: offer");
	expect_error("{\"type\":\"mesh_answer\",\"offer\":{}}", ERR_INVALID_MESSAGE,
		     "Missing field: target_peer_id");
	expect_error("{\"type\":\"ice_candidate\",\"target_peer_id\":\"b\"}", ERR_INVALID_MESSAGE,
		     "Missing field: candidate");
	expect_error("{\"type\":\"offer\",\"sdp\":\"v=0\"}", ERR_INVALID_MESSAGE, "Missing field: target");
	expect_error("{\"type\":\"discover_peers\",\"filters\":[]}", ERR_INVALID_MESSAGE, NULL);
	expect_error("{\"type\":\"discover_peers\",\"limit\":0}", ERR_INVALID_MESSAGE, NULL);
	expect_error("{\"type\":\"discover_peers\",\"limit\":\"5\"}", ERR_INVALID_MESSAGE, NULL);
	expect_error("{\"type\":\"update_metadata\"}", ERR_INVALID_MESSAGE, NULL);
	expect_error("{\"type\":\"update_metadata\",\"metadata\":5}", ERR_INVALID_MESSAGE, NULL);

	g_assert_cmpint(decode("{\"type\":\"discover_peers\",\"limit\":5000}", &m, &e), ==, 0);
	g_assert_cmpuint(m.discover.limit, ==, PROTOCOL_DISCOVER_LIMIT);
	msg_clear(&m);
	g_assert_cmpint(decode("{\"type\":\"discover_peers\",\"limit\":3}", &m, &e), ==, 0);
	g_assert_cmpuint(m.discover.limit, ==, 3);
	msg_clear(&m);
}

static json_object *parse_buf(struct msgbuf *b)
{
	json_object *o = json_tokener_parse(msgbuf_text(b));
	g_assert_nonnull(o);
	g_assert_cmpuint(strlen(msgbuf_text(b)), ==, b->len);
	msgbuf_unref(b);
	return o;
}

static const char *field(json_object *o, const char *k)
{
	json_object *v;
	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

static void test_error_builders(void)
{
	for (int c = 0; c < ERR__COUNT; c++) {
		json_object *o = parse_buf(protocol_error(c, "something happened", false, NULL, NULL));
		g_assert_cmpstr(field(o, "type"), ==, "error");
		g_assert_cmpstr(field(o, "code"), ==, protocol_code_name(c));
		g_assert_cmpstr(field(o, "message"), ==, "something happened");
		g_assert_null(field(o, "reason"));
		g_assert_cmpint(json_object_object_length(o), ==, 3);
		json_object_put(o);
	}
	/* register errors carry reason, routing errors the field concerned */
	json_object *o = parse_buf(protocol_error(ERR_ROOM_FULL, "Room is full", true, NULL, NULL));
	g_assert_cmpstr(field(o, "reason"), ==, "Room is full");
	json_object_put(o);
	o = parse_buf(protocol_error(ERR_PEER_NOT_FOUND, "Target peer \"x\" not found", false,
				     "to_peer_id", "\"x\""));
	g_assert_cmpstr(field(o, "to_peer_id"), ==, "\"x\"");
	g_assert_cmpstr(field(o, "message"), ==, "Target peer \"x\" not found");
	json_object_put(o);
	/* the stable code list */
	g_assert_cmpstr(protocol_code_name(ERR_SERVER_SHUTTING_DOWN), ==, "SERVER_SHUTTING_DOWN");
	g_assert_cmpstr(protocol_code_name(ERR_INVALID_JSON), ==, "INVALID_JSON");
}

static void test_simple(void)
{
	json_object *o = parse_buf(protocol_simple("pong"));
	g_assert_cmpstr(json_object_to_json_string_ext(o, JSON_FLAGS), ==, "{\"type\":\"pong\"}");
	json_object_put(o);
}

/* The fast path decodes plain routed messages as protocol_decode does,
 * and leaves everything else to it. */
static void test_decode_routed(void)
{
	static const struct {
		const char *text;
		enum msg_type type;
		const char *from, *to, *body;
	} fast[] = {
		{ "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":{\"x\":[1,\"\\u00e9\"]}}",
		  MSG_PEER_MESSAGE, NULL, "b", "{\"x\":[1,\"\\u00e9\"]}" },
		{ "{\"payload\":\"hi\",\"from_peer_id\":\"a\",\"type\":\"peer_message\",\"to_peer_id\":\"b\"}",
		  MSG_PEER_MESSAGE, "a", "b", "\"hi\"" },
		{ "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":null,\"extra\":1}",
		  MSG_PEER_MESSAGE, NULL, "b", "null" },
		{ "{\"type\":\"mesh_connect\",\"target_peer_id\":\"b\",\"offer\":{\"sdp\":\"v=0\"}}",
		  MSG_MESH_CONNECT, NULL, "b", "{\"sdp\":\"v=0\"}" },
		{ "{\"type\":\"ice_candidate\",\"target_peer_id\":\"b\",\"candidate\":{}}", MSG_ICE_CANDIDATE,
		  NULL, "b", "{}" },
		{ "{\"type\":\"offer\",\"target\":\"b\",\"sender\":\"a\",\"sdp\":\"v=0\"}", MSG_OFFER, "a", "b", NULL },
	};
	static const char *const slow[] = {
		"{\"type\":\"register\",\"peer_id\":\"a\",\"room_id\":\"r\"}",
		"{\"type\":\"ping\"}",
		"{\"type\":\"peer_message\",\"to_peer_id\":7,\"payload\":1}",          /* number id */
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\\u0041\",\"payload\":1}", /* escaped id */
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"from_peer_id\":null,\"payload\":1}",
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"to_peer_id\":\"c\",\"payload\":1}",
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":1,\"type\":\"ping\"}",
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\"}",                    /* no payload */
		"{\"type\":\"peer_message\",\"to_peer_id\":\"\",\"payload\":1}",       /* empty id */
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":tru}",    /* not JSON */
		"{\"type\":\"peer_messages\",\"to_peer_id\":\"b\",\"payload\":1}",
		"{\"type\":\"offer\",\"sdp\":\"v=0\"}",
	};
	struct msg m, slow_m;
	struct msg_error e;

	for (size_t i = 0; i < G_N_ELEMENTS(fast); i++) {
		const char *t = fast[i].text;
		g_assert_cmpint(protocol_decode_routed(t, strlen(t), 32, &m), ==, 0);
		g_assert_null(m.root);
		g_assert_cmpint(decode(t, &slow_m, &e), ==, 0);
		g_assert_cmpint(m.type, ==, fast[i].type);
		g_assert_cmpint(slow_m.type, ==, fast[i].type);
		if (fast[i].body) {
			g_assert_cmpstr(m.route.from, ==, fast[i].from);
			g_assert_cmpstr(m.route.to, ==, fast[i].to);
			g_assert_cmpstr(m.route.to_field, ==, slow_m.route.to_field);
			g_autofree char *body = g_strndup(m.route.body_text, m.route.body_len);
			g_assert_cmpstr(body, ==, fast[i].body);
		} else {
			g_assert_cmpstr(m.signal.sender, ==, fast[i].from);
			g_assert_cmpstr(m.signal.target, ==, fast[i].to);
		}
		msg_clear(&slow_m);
	}
	for (size_t i = 0; i < G_N_ELEMENTS(slow); i++)
		g_assert_cmpint(protocol_decode_routed(slow[i], strlen(slow[i]), 32, &m), <, 0);
}

static struct peer *add_peer(struct registry *reg, const char *id, const char *md)
{
	json_object *o = json_tokener_parse(md);
	struct meta *meta = NULL;
	const char *why = NULL;
	g_assert_cmpint(meta_new(o, 1 << 16, &meta, &why), ==, 0);
	json_object_put(o);
	return registry_add(reg, registry_ensure_room(reg, "r1"), id, "worker", meta, NULL, NULL, 0);
}

/* registered_auth is sized before it is written: alone, with one mate,
 * and with mates around a hole left by one that went. */
static void test_registered(void)
{
	static const struct {
		const char *id, *md;
	} mates[] = { { "a", "{\"tags\":[\"gpu\"]}" }, { "gone", "{}" }, { "b\"q", "{\"x\":1}" } };
	static const char *const expect[] = {
		"{\"type\":\"registered_auth\",\"room_id\":\"r1\",\"token\":\"t\",\"peer_id\":\"me\","
		"\"admin_peer_id\":null,\"peer_list\":[],\"peer_metadata\":{},\"ice_servers\":[],"
		"\"mesh_ice_servers\":[]}",
		"{\"type\":\"registered_auth\",\"room_id\":\"r1\",\"token\":\"t\",\"peer_id\":\"me\","
		"\"admin_peer_id\":null,\"peer_list\":[\"a\"],\"peer_metadata\":{\"a\":{\"tags\":[\"gpu\"]}},"
		"\"ice_servers\":[],\"mesh_ice_servers\":[]}",
		"{\"type\":\"registered_auth\",\"room_id\":\"r1\",\"token\":\"t\",\"peer_id\":\"me\","
		"\"admin_peer_id\":null,\"peer_list\":[\"a\",\"b\\\"q\"],"
		"\"peer_metadata\":{\"a\":{\"tags\":[\"gpu\"]},\"b\\\"q\":{\"x\":1}},"
		"\"ice_servers\":[],\"mesh_ice_servers\":[]}",
	};
	json_object *token = json_object_new_string("t");
	GString *s = g_string_new(NULL);

	for (unsigned n = 0; n < G_N_ELEMENTS(expect); n++) {
		struct registry *reg = registry_new();
		struct peer *gone = NULL;
		for (unsigned i = 0; i < n + (n == 2); i++) {
			struct peer *p = add_peer(reg, mates[i].id, mates[i].md);
			if (strcmp(mates[i].id, "gone") == 0)
				gone = p;
		}
		if (gone)
			registry_remove(reg, gone);
		struct peer *me = add_peer(reg, "me", "{}");
		struct msgbuf *m = protocol_registered(s, me, token, "[]");
		g_assert_cmpstr(msgbuf_text(m), ==, expect[n]);
		g_assert_cmpuint(m->len, ==, strlen(expect[n]));
		msgbuf_unref(m);
		registry_free(reg);
	}
	g_string_free(s, TRUE);
	json_object_put(token);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	tok = json_tokener_new_ex(32);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	g_test_add_func("/protocol/invalid-json", test_invalid_json);
	g_test_add_func("/protocol/unknown-type", test_unknown_type);
	g_test_add_func("/protocol/register", test_register);
	g_test_add_func("/protocol/routing-fields", test_routing_fields);
	g_test_add_func("/protocol/decode-routed", test_decode_routed);
	g_test_add_func("/protocol/error-builders", test_error_builders);
	g_test_add_func("/protocol/simple", test_simple);
	g_test_add_func("/protocol/registered", test_registered);
	int r = g_test_run();
	json_tokener_free(tok);
	return r;
}
