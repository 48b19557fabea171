/* jscan, the fast scanner, against json-c (strict, as the router sets it
 * up): whatever jscan accepts at a depth bound, json-c must accept at the
 * same bound, with the same members, kinds and plain string values.  The
 * gate every message passes (jscan_check) likewise: what it lets through
 * json-c must read, and anything json-c writes back must be RFC 8259
 * (no NaN or Infinity).  And the fast path of the router
 * (protocol_decode_routed) against the slow one (protocol_decode): same
 * type, same ids.
 *
 * Input: one byte choosing the depth bound (1-64) and the member bound
 * (1-16), then the JSON text. */
#include "fuzz.h"

#include "core/jscan.h"
#include "util/json.h"
#include "util/msgbuf.h"
#include "core/protocol.h"

#include <json-c/json.h>
#include <string.h>


static bool kind_agrees(enum jscan_kind k, const char *v, size_t len, json_object *o)
{
	enum json_type t = json_object_get_type(o);
	switch (k) {
	case JSCAN_STRING:
		return t == json_type_string;
	case JSCAN_OBJECT:
		return t == json_type_object;
	case JSCAN_ARRAY:
		return t == json_type_array;
	case JSCAN_NUMBER:
		return memchr(v, '.', len) || memchr(v, 'e', len) || memchr(v, 'E', len)
			       ? t == json_type_double
			       : t == json_type_int;
	default:
		return len && *v == 'n' ? t == json_type_null : t == json_type_boolean;
	}
}

static void differential(json_tokener **toks, const char *text, size_t len, unsigned depth,
			 size_t max)
{
	struct jscan_member m[16];
	size_t n;

	if (jscan_object(text, len, depth, SIZE_MAX, m, max, &n) < 0)
		return;
	if (n > max)
		fuzz_fail("jscan returned %zu members, bound %zu", n, max);
	/* json-c counts the innermost value as a level of its own. */
	json_object *o = json_parse_object(toks[depth], text, len);
	if (!o)
		fuzz_fail("jscan (depth %u) accepts what json-c refuses: %.*s", depth, (int)len, text);
	if ((size_t)json_object_object_length(o) > n)
		fuzz_fail("json-c sees %d members, jscan %zu", json_object_object_length(o), n);
	for (size_t i = 0; i < n; i++) {
		if (m[i].key < text || m[i].key + m[i].key_len > text + len ||
		    m[i].value < text || m[i].value + m[i].value_len > text + len)
			fuzz_fail("member %zu outside the text", i);
		g_autofree char *key = g_strndup(m[i].key, m[i].key_len);
		json_object *v = NULL;
		if (strlen(key) != m[i].key_len || !json_object_object_get_ex(o, key, &v))
			fuzz_fail("jscan's member \"%s\" is not json-c's", key);
		bool last = true; /* json-c keeps the last of repeated keys */
		for (size_t j = i + 1; j < n; j++)
			last = last && !(m[j].key_len == m[i].key_len &&
					 !memcmp(m[j].key, m[i].key, m[i].key_len));
		if (!last)
			continue;
		if (!kind_agrees(m[i].kind, m[i].value, m[i].value_len, v))
			fuzz_fail("member \"%s\": jscan kind %d, json-c type %s", key, m[i].kind,
				  json_type_to_name(json_object_get_type(v)));
		if (m[i].kind == JSCAN_STRING && !m[i].escaped &&
		    ((size_t)json_object_get_string_len(v) != m[i].value_len ||
		     memcmp(json_object_get_string(v), m[i].value, m[i].value_len) != 0))
			fuzz_fail("member \"%s\": the string differs", key);
		if (m[i].kind == JSCAN_STRING && !m[i].escaped && memchr(m[i].value, '\\', m[i].value_len))
			fuzz_fail("member \"%s\": a backslash in a string not marked escaped", key);
	}
	json_object_put(o);
}

/* What the gate passes, json-c reads, and writes back as RFC 8259. */
static void gate(json_tokener *tok, const char *text, size_t len, unsigned depth)
{
	if (jscan_check(text, len, depth, SIZE_MAX, NULL, NULL) != JSCAN_OK)
		return;
	json_object *o = json_parse_object(tok, text, len);
	if (!o) {
		/* json_parse_object() wants an object; the gate takes any value. */
		size_t i = 0;
		while (i < len && strchr(" \t\r\n", text[i]))
			i++;
		if (i < len && text[i] == '{')
			fuzz_fail("jscan_check (depth %u) passes what json-c refuses: %.*s", depth,
				  (int)len, text);
		return;
	}
	const char *back = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (strstr(back, "NaN") || strstr(back, "Infinity")) {
		/* Only inside strings may they stand: check it the slow way. */
		if (jscan_check(back, strlen(back), depth + 1, SIZE_MAX, NULL, NULL) != JSCAN_OK)
			fuzz_fail("json-c writes back what is not RFC 8259: %s", back);
	}
	json_object_put(o);
}

/* The fast path's verdict must be the slow path's. */
static void routed(json_tokener *tok, const char *text, size_t len, unsigned depth)
{
	const struct protocol_limits lim = { .max_depth = depth, .max_values = SIZE_MAX };
	struct msg fast, slow;
	struct msg_error err;

	if (protocol_decode_routed(text, len, &lim, &fast) != 0)
		return;
	int rc = protocol_decode(tok, &lim, text, len, &slow, &err);
	if (rc < 0)
		fuzz_fail("the fast path routes what protocol_decode refuses (%s): %.*s", err.message,
			  (int)len, text);
	if (slow.type != fast.type)
		fuzz_fail("fast path type %d, slow path %d", fast.type, slow.type);
	bool route = fast.type == MSG_PEER_MESSAGE || fast.type == MSG_MESH_CONNECT ||
		     fast.type == MSG_MESH_ANSWER || fast.type == MSG_ICE_CANDIDATE;
	const char *ff = route ? fast.route.from : fast.signal.sender;
	const char *ft = route ? fast.route.to : fast.signal.target;
	const char *sf = route ? slow.route.from : slow.signal.sender;
	const char *st = route ? slow.route.to : slow.signal.target;
	if (g_strcmp0(ff, sf) != 0 || g_strcmp0(ft, st) != 0)
		fuzz_fail("fast path from/to %s/%s, slow path %s/%s", ff, ft, sf, st);
	msg_clear(&slow);
}

FUZZ_TARGET(jscan)
{
	static json_tokener *toks[JSCAN_MAX_DEPTH + 1];

	if (!toks[1]) {
		for (unsigned d = 1; d <= JSCAN_MAX_DEPTH; d++) {
			toks[d] = json_tokener_new_ex((int)d + 1);
			json_tokener_set_flags(toks[d], JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
		}
	}
	if (size < 1)
		return 0;
	unsigned depth = 1 + data[0] % JSCAN_MAX_DEPTH;
	size_t max = 1 + (data[0] >> 6) * 5; /* 1, 6, 11, 16 */
	/* A copy of exactly the text's bytes: reading past it is seen. */
	size_t len = size - 1;
	g_autofree char *text = g_malloc(len ? len : 1);
	memcpy(text, data + 1, len);

	/* jscan assumes UTF-8 (the transport checked it), as the router does. */
	if (!fuzz_utf8(text, len))
		return 0;
	differential(toks, text, len, depth, max);
	gate(toks[depth], text, len, depth);
	routed(toks[depth], text, len, depth);
	return 0;
}
