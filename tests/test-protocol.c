/* Unit tests: decoding client messages and building server messages. */
#include "core/protocol.h"
#include "nested.h"
#include "core/registry.h"
#include "util/json.h"

#include <glib.h>
#include <string.h>

static json_tokener *tok;
/* As the router sets them up: json-c's depth counts the innermost value. */
static const struct protocol_limits lim = { 31, 10000 };

static int decode(const char *text, struct msg *m, struct msg_error *e)
{
	return protocol_decode(tok, &lim, text, strlen(text), m, e);
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
	/* Echoed up to 64 bytes, never half a character; both paths. */
	GString *t = g_string_new("{\"type\":\"");
	for (int i = 0; i < 63; i++)
		g_string_append_c(t, 'x');
	g_string_append(t, "\xc3\xa9\"}");
	GString *want = g_string_new("Unknown message type: ");
	g_string_append_len(want, t->str + 9, 63);
	expect_error(t->str, ERR_UNKNOWN_MESSAGE_TYPE, want->str);
	g_string_insert(t, 1, "\"\\u0061\":1,");
	expect_error(t->str, ERR_UNKNOWN_MESSAGE_TYPE, want->str);
	g_string_free(t, TRUE);
	g_string_free(want, TRUE);
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
	/* every error says its message as reason too (old clients read it) */
	for (int c = 0; c < ERR__COUNT; c++) {
		json_object *o = parse_buf(protocol_error(c, "something happened", NULL, NULL));
		g_assert_cmpstr(field(o, "type"), ==, "error");
		g_assert_cmpstr(field(o, "code"), ==, protocol_code_name(c));
		g_assert_cmpstr(field(o, "message"), ==, "something happened");
		g_assert_cmpstr(field(o, "reason"), ==, "something happened");
		g_assert_cmpint(json_object_object_length(o), ==, 4);
		json_object_put(o);
	}
	/* routing errors carry the field concerned */
	json_object *o = parse_buf(protocol_error(ERR_PEER_NOT_FOUND, "Target peer \"x\" not found",
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
		/* a role the sender wrote: json-c's to remove (protocol_signal) */
		"{\"type\":\"offer\",\"target\":\"b\",\"role\":\"client\"}",
		"{\"type\":\"answer\",\"target\":\"b\",\"sender_role\":\"client\"}",
	};
	struct msg m, slow_m;
	struct msg_error e;

	for (size_t i = 0; i < G_N_ELEMENTS(fast); i++) {
		const char *t = fast[i].text;
		g_assert_cmpint(protocol_decode_routed(t, strlen(t), &lim, &m), ==, 0);
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
		g_assert_cmpint(protocol_decode_routed(slow[i], strlen(slow[i]), &lim, &m), <, 0);
}

/* Finding 7: what json-c takes but RFC 8259 does not is refused on every
 * path, before json-c sees it, and the fast path never takes it. */
static void test_not_rfc(void)
{
	static const char *const values[] = {
		"NaN", "Infinity", "-Infinity", "[0,NaN]", "{\"a\":{\"b\":-Infinity}}", "1.",
		"{'k':1}", "\"raw\ttab\"", "\"raw\x01\"",
	};
	static const char *const shapes[] = {
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":%s}",
		"{\"type\":\"peer_message\",\"to_peer_id\":7,\"payload\":%s}",
		"{\"type\":\"ice_candidate\",\"target_peer_id\":\"b\",\"candidate\":%s}",
		"{\"type\":\"offer\",\"target\":\"b\",\"sdp\":%s}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"metadata\":{\"properties\":{\"load\":%s}}}",
		"{\"type\":\"update_metadata\",\"metadata\":{\"x\":%s}}",
		"{\"type\":\"discover_peers\",\"filters\":{\"properties\":{\"load\":%s}}}",
		"{\"type\":\"create_room\",\"name\":\"n\",\"x\":%s}",
		"{\"type\":\"ping\",\"x\":%s}",
		"{\"type\":\"pong\",\"x\":%s}",
		"{\"type\":\"dance\",\"x\":%s}",
		"{\"x\":%s}",
	};
	for (size_t v = 0; v < G_N_ELEMENTS(values); v++)
		for (size_t i = 0; i < G_N_ELEMENTS(shapes); i++) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
			g_autofree char *t = g_strdup_printf(shapes[i], values[v]);
#pragma GCC diagnostic pop
			struct msg m;
			g_assert_cmpint(protocol_decode_routed(t, strlen(t), &lim, &m), <, 0);
			expect_error(t, ERR_INVALID_JSON, "Invalid JSON format");
		}
	/* POST /create-room bodies too. */
	g_assert_null(protocol_parse_object(tok, &lim, "{\"name\":NaN}", 12));
	json_object *o = protocol_parse_object(tok, &lim, " {\"name\":1e400} ", 16);
	g_assert_nonnull(o);
	json_object_put(o);
}

/* Finding 13: ids and credentials are what the client wrote or refused:
 * no NUL (C would end the string there), and numbers only when json-c
 * holds them exactly. */
static void test_ids_exact(void)
{
	static const char *const bad[] = {
		"{\"type\":\"register\",\"room_id\":\"a\\u0000b\"}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":\"a\\u0000b\"}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"role\":\"a\\u0000b\"}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"token\":\"a\\u0000b\"}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"jwt\":\"a\\u0000b\"}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"id_token\":\"a\\u0000b\"}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"api_key\":\"a\\u0000b\"}",
		"{\"type\":\"register\",\"room_id\\u0000x\":\"r\"}",
		"{\"type\\u0000\":\"ping\"}",
		"{\"type\":\"ping\",\"x\":[{\"\\u0000\":1}]}",
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\\u0000\",\"payload\":1}",
		"{\"type\":\"peer_message\",\"from_peer_id\":\"\\u0000\",\"to_peer_id\":\"b\",\"payload\":1}",
		"{\"type\":\"offer\",\"target\":\"b\\u0000c\"}",
		"{\"type\":\"offer\",\"target\":\"b\",\"sender\":\"a\\u0000\"}",
		"{\"type\":\"discover_peers\",\"from_peer_id\":\"a\\u0000\"}",
		"{\"type\":\"update_metadata\",\"peer_id\":\"a\\u0000\",\"metadata\":{}}",
		"{\"type\":\"create_room\",\"name\":\"a\\u0000\"}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":1000000000000000000000000000000}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":18446744073709551615}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":9223372036854775808}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":-9223372036854775808}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":-100000000000000000000}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":1.5}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":1.0}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":1e3}",
		"{\"type\":\"register\",\"room_id\":\"r\",\"peer_id\":1E400}",
		"{\"type\":\"peer_message\",\"to_peer_id\":2e0,\"payload\":1}",
		"{\"type\":\"offer\",\"target\":99999999999999999999}",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		struct msg m;
		struct msg_error e;
		if (decode(bad[i], &m, &e) == 0 || e.code != ERR_INVALID_MESSAGE)
			g_error("not refused with INVALID_MESSAGE: %s", bad[i]);
		msg_clear(&m);
	}
	static const struct {
		const char *num, *id;
	} good[] = {
		{ "9223372036854775807", "9223372036854775807" },
		{ "-9223372036854775807", "-9223372036854775807" },
		{ "0", "0" },
		{ "-0", "0" },
		{ "42", "42" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
		g_autofree char *t = g_strdup_printf(
			"{\"type\":\"peer_message\",\"to_peer_id\":%s,\"payload\":1}", good[i].num);
		struct msg m;
		struct msg_error e;
		g_assert_cmpint(decode(t, &m, &e), ==, 0);
		g_assert_cmpstr(m.route.to, ==, good[i].id);
		msg_clear(&m);
	}
	/* NUL inside a value that is not an id is kept, escaped, by json-c. */
	struct msg m;
	struct msg_error e;
	g_assert_cmpint(decode("{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":\"a\\u0000b\"}",
			       &m, &e), ==, 0);
	msg_clear(&m);
}

/* Finding 4: the values of a message are counted before any tree, on both
 * paths; ping and pong never get one. */
static void test_value_limit(void)
{
	const struct protocol_limits small = { 31, 10 };
	struct msg m;
	struct msg_error e;
	/* 10 values: the object, its type, its target, the array and 6 in it. */
	const char *ok = "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":[1,2,3,4,5,6]}";
	const char *over = "{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":[1,2,3,4,5,6,7]}";

	g_assert_cmpint(protocol_decode_routed(ok, strlen(ok), &small, &m), ==, 0);
	g_assert_cmpint(protocol_decode(tok, &small, ok, strlen(ok), &m, &e), ==, 0);
	msg_clear(&m);
	g_assert_cmpint(protocol_decode_routed(over, strlen(over), &small, &m), <, 0);
	g_assert_cmpint(protocol_decode(tok, &small, over, strlen(over), &m, &e), <, 0);
	g_assert_null(m.root);
	g_assert_cmpint(e.code, ==, ERR_INVALID_JSON);
	g_assert_cmpint(e.limit, ==, PROTOCOL_LIMIT_VALUES);
	msg_clear(&m);

	/* Depth is reported as such; other faults as no limit. */
	const struct protocol_limits shallow = { 3, 10000 };
	g_assert_cmpint(protocol_decode(tok, &shallow, "{\"a\":[[1]]}", 11, &m, &e), ==, -EINVAL);
	g_assert_cmpint(e.limit, ==, PROTOCOL_LIMIT_NONE); /* no type: but within depth */
	msg_clear(&m);
	g_assert_cmpint(protocol_decode(tok, &shallow, "{\"a\":[[[1]]]}", 13, &m, &e), ==, -EINVAL);
	g_assert_cmpint(e.code, ==, ERR_INVALID_JSON);
	g_assert_cmpint(e.limit, ==, PROTOCOL_LIMIT_DEPTH);
	msg_clear(&m);
	expect_error("{\"type\":\"ping\",}", ERR_INVALID_JSON, "Invalid JSON format");
}

/* Ping, pong and unknown types are answered from the scan: no tree, however
 * much else the message holds; what json-c would read otherwise goes to it. */
/* A binary frame that is not UTF-8 is refused before json-c: json-c 0.16
 * would abandon it part way and carry a half-read \u escape into the next
 * message this tokener parses, someone else's. */
static void test_binary_not_utf8(void)
{
	struct msg m;
	struct msg_error e;

	expect_error("{\"\\u0074ype\":\"register\",\"a\":\"\\ud83d\xff\"}", ERR_INVALID_JSON,
		     "Invalid JSON format");
	g_assert_cmpint(decode("{\"type\":\"register\",\"peer_id\":\"p\",\"room_id\":\"r\","
			       "\"role\":\"x\\u0041y\"}", &m, &e), ==, 0);
	g_assert_cmpstr(m.reg.role, ==, "xAy");
	msg_clear(&m);
}

static void test_no_tree(void)
{
	GString *big = g_string_new("{\"a\":[{}");
	for (int i = 0; i < 3000; i++)
		g_string_append(big, ",{}");
	g_string_append(big, "],\"type\":\"ping\"}");
	struct msg m;
	struct msg_error e;

	g_assert_cmpint(decode(big->str, &m, &e), ==, 0);
	g_assert_cmpint(m.type, ==, MSG_PING);
	g_assert_null(m.root);
	msg_clear(&m);
	g_string_free(big, TRUE);

	static const struct {
		const char *text;
		int rc;
		enum msg_type type;
		bool tree;
		const char *message;
	} cases[] = {
		{ " {\"type\":\"pong\",\"x\":{\"y\":[1]}} ", 0, MSG_PONG, false, NULL },
		{ "{\"type\":\"dance\",\"x\":1}", -EINVAL, MSG_UNKNOWN, false, "Unknown message type: dance" },
		{ "{\"x\":1}", -EINVAL, MSG_UNKNOWN, false, "Unknown message type: None" },
		/* json-c keeps the last of repeated keys; so does the scan */
		{ "{\"type\":\"register\",\"type\":\"ping\"}", 0, MSG_PING, false, NULL },
		{ "{\"type\":\"ping\",\"type\":\"register\",\"room_id\":\"r\"}", 0, MSG_REGISTER, true, NULL },
		/* an escaped key could spell "type": json-c's to read */
		{ "{\"\\u0074ype\":\"ping\"}", 0, MSG_PING, true, NULL },
		{ "{\"type\":\"ping\",\"\\u0074ype\":\"pong\"}", 0, MSG_PONG, true, NULL },
		{ "{\"type\":\"p\\u0069ng\"}", 0, MSG_PING, true, NULL },
		{ "{\"type\":5}", -EINVAL, MSG_UNKNOWN, true, "Unknown message type: 5" },
		/* a binary frame's bytes are checked as json-c would */
		{ "{\"type\":\"ping\",\"x\":\"\xff\"}", -EINVAL, MSG_UNKNOWN, false, "Invalid JSON format" },
	};
	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		int rc = decode(cases[i].text, &m, &e);
		if (rc != cases[i].rc || m.type != cases[i].type || (m.root != NULL) != cases[i].tree ||
		    (cases[i].message && strcmp(e.message, cases[i].message) != 0))
			g_error("%s: rc %d type %d tree %d", cases[i].text, rc, m.type, m.root != NULL);
		msg_clear(&m);
	}
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
		"\"mesh_ice_servers\":[],\"protocol\":\"2.0\"}",
		"{\"type\":\"registered_auth\",\"room_id\":\"r1\",\"token\":\"t\",\"peer_id\":\"me\","
		"\"admin_peer_id\":null,\"peer_list\":[\"a\"],\"peer_metadata\":{\"a\":{\"tags\":[\"gpu\"]}},"
		"\"ice_servers\":[],\"mesh_ice_servers\":[],\"protocol\":\"2.0\"}",
		"{\"type\":\"registered_auth\",\"room_id\":\"r1\",\"token\":\"t\",\"peer_id\":\"me\","
		"\"admin_peer_id\":null,\"peer_list\":[\"a\",\"b\\\"q\"],"
		"\"peer_metadata\":{\"a\":{\"tags\":[\"gpu\"]},\"b\\\"q\":{\"x\":1}},"
		"\"ice_servers\":[],\"mesh_ice_servers\":[],\"protocol\":\"2.0\"}",
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
		struct msgbuf *m = protocol_registered(s, me, token, "[]", PROTOCOL_V20);
		g_assert_cmpstr(msgbuf_text(m), ==, expect[n]);
		g_assert_cmpuint(m->len, ==, strlen(expect[n]));
		msgbuf_unref(m);
		registry_free(reg);
	}
	g_string_free(s, TRUE);
	json_object_put(token);
}

/* The relayed types name their peer in target, else to_peer_id; an id
 * of the wrong type is no target, never an error. */
static void test_relay(void)
{
	static const struct {
		const char *text, *target;
		enum msg_type type;
	} cases[] = {
		{ "{\"type\":\"error\",\"target\":\"alice\",\"reason\":\"worker_busy\"}", "alice", MSG_ERROR },
		{ "{\"type\":\"job_status\",\"job_id\":\"j\"}", NULL, MSG_JOB_STATUS },
		{ "{\"type\":\"fs_list_res\",\"to_peer_id\":7}", "7", MSG_FS_LIST_RES },
		{ "{\"type\":\"encrypted_relay\",\"target\":{},\"to_peer_id\":\"b\"}", "b", MSG_ENCRYPTED_RELAY },
		{ "{\"type\":\"key_exchange_response\",\"target\":[1]}", NULL, MSG_KEY_EXCHANGE_RESPONSE },
	};
	struct msg m;
	struct msg_error e;

	for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
		g_assert_cmpint(decode(cases[i].text, &m, &e), ==, 0);
		g_assert_cmpint(m.type, ==, cases[i].type);
		g_assert_true(protocol_is_relay(m.type));
		g_assert_cmpstr(m.relay.target, ==, cases[i].target);
		msg_clear(&m);
	}
	g_assert_false(protocol_is_relay(MSG_OFFER));
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
	g_test_add_func("/protocol/not-rfc", test_not_rfc);
	g_test_add_func("/protocol/ids-exact", test_ids_exact);
	g_test_add_func("/protocol/value-limit", test_value_limit);
	g_test_add_func("/protocol/no-tree", test_no_tree);
	g_test_add_func("/protocol/binary-not-utf8", test_binary_not_utf8);
	g_test_add_func("/protocol/relay", test_relay);
	int r = g_test_run();
	json_tokener_free(tok);
	return r;
}
