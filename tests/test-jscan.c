/* Unit tests: jscan, the fast JSON scanner, against json-c: whatever it
 * accepts, json-c (strict, as the router sets it up) must accept too, with
 * the same members. */
#include "core/jscan.h"
#include "util/json.h"
#include "util/msgbuf.h"
#include "nested.h"

#include <glib.h>
#include <json-c/json.h>
#include <stdint.h>
#include <string.h>

#define DEPTH 32

static json_tokener *tok;

static json_object *json_c(const char *text, size_t len)
{
	return json_parse_object(tok, text, len);
}

static enum json_type kind_type(enum jscan_kind k, const char *v)
{
	switch (k) {
	case JSCAN_STRING:
		return json_type_string;
	case JSCAN_OBJECT:
		return json_type_object;
	case JSCAN_ARRAY:
		return json_type_array;
	case JSCAN_NUMBER:
		return strpbrk(v, ".eE") ? json_type_double : json_type_int;
	default:
		return *v == 'n' ? json_type_null : json_type_boolean;
	}
}

/* When jscan accepts TEXT, json-c agrees, member by member. */
static bool agrees(const char *text, size_t len)
{
	struct jscan_member m[32];
	size_t n;

	if (jscan_object(text, len, DEPTH, SIZE_MAX, m, G_N_ELEMENTS(m), &n) < 0)
		return false;
	json_object *o = json_c(text, len);
	if (!o)
		g_error("jscan accepts what json-c refuses: %.*s", (int)len, text);
	g_assert_cmpuint(json_object_object_length(o), <=, n); /* fewer when a key repeats */
	for (size_t i = 0; i < n; i++) {
		g_autofree char *key = g_strndup(m[i].key, m[i].key_len);
		g_autofree char *value = g_strndup(m[i].value, m[i].value_len);
		json_object *v = NULL;
		g_assert_true(json_object_object_get_ex(o, key, &v));
		bool last = true; /* json-c keeps the last of repeated keys */
		for (size_t j = i + 1; j < n; j++)
			last = last && !(m[j].key_len == m[i].key_len && !memcmp(m[j].key, m[i].key, m[i].key_len));
		if (!last)
			continue;
		g_assert_cmpint(json_object_get_type(v), ==, kind_type(m[i].kind, value));
		if (m[i].kind == JSCAN_STRING && !m[i].escaped)
			g_assert_cmpstr(json_object_get_string(v), ==, value);
	}
	json_object_put(o);
	return true;
}

static bool accepts(const char *text)
{
	return agrees(text, strlen(text));
}

/* jscan_check's verdict on TEXT; when it passes, json-c (strict, as deep)
 * passes it too, and when jscan_object passes it, so does jscan_check. */
static int check_len(const char *text, size_t len)
{
	struct jscan_member m[32];
	size_t n;
	int rc = jscan_check(text, len, DEPTH, SIZE_MAX, NULL, NULL);

	if (rc == JSCAN_OK) {
		/* In brackets: json-c wants a number's end to be seen. */
		g_autoptr(GString) w = g_string_new("[");
		g_string_append_len(w, text, (gssize)len);
		g_string_append_c(w, ']');
		json_tokener *t = json_tokener_new_ex(DEPTH + 2);
		json_tokener_set_flags(t, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
		json_object *o = json_tokener_parse_ex(t, w->str, (int)w->len);
		if (json_tokener_get_error(t) != json_tokener_success ||
		    json_tokener_get_parse_end(t) != w->len)
			g_error("jscan_check accepts what json-c refuses: %.*s", (int)len, text);
		json_object_put(o);
		json_tokener_free(t);
	}
	if (jscan_object(text, len, DEPTH, SIZE_MAX, m, G_N_ELEMENTS(m), &n) == 0)
		g_assert_cmpint(rc, ==, JSCAN_OK);
	return rc;
}

static int check(const char *text)
{
	return check_len(text, strlen(text));
}

static void test_valid(void)
{
	static const char *const good[] = {
		"{}",
		"{\"type\":\"peer_message\",\"to_peer_id\":\"b\",\"payload\":{\"x\":[1,2.5,-3e+4,0,true,false,null]}}",
		"{\"a\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u0041\"}",
		"{\"a\" : [ ] , \"b\" :\t{ }\r\n}",
		"{\"a\":-0.0e-0,\"b\":1E5,\"c\":123456789012345678901234567890}",
		"{\"\":\"\",\"k\":\"caf\xc3\xa9 \xe2\x82\xac\"}",
		"{\"a\":[[[[[\"deep\"]]]]]}",
		"{\"a\":1,\"a\":2}",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(good); i++) {
		if (!accepts(good[i]))
			g_error("refused: %s", good[i]);
		g_assert_cmpint(check(good[i]), ==, JSCAN_OK);
	}
}

static void test_invalid(void)
{
	static const char *const bad[] = {
		"", "{", "}", "[]", "{\"a\":1", "{\"a\":1,}", "{\"a\"}", "{\"a\" 1}", "{a:1}",
		"{'a':1}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":+1}", "{\"a\":1e}",
		"{\"a\":-}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":tru}", "{\"a\":nul}",
		"{\"a\":True}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}", "{\"a\":\"\\u12\"}",
		"{\"a\":\"tab\there\"}", "{\"a\":\"nl\nhere\"}", "{\"a\":\"open}", "{\"a\":[1,]}",
		"{\"a\":[1 2]}", "{\"a\":{\"b\"}}", "{\"a\":1}{}", "{\"a\":1}x", "{\"a\":/*c*/1}",
		"{\"a\":1,,\"b\":2}", "{,\"a\":1}",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		if (accepts(bad[i]))
			g_error("accepted: %s", bad[i]);
		/* "[]" is JSON, just not an object. */
		if (strcmp(bad[i], "[]") != 0 && check(bad[i]) != JSCAN_INVALID)
			g_error("jscan_check accepted: %s", bad[i]);
	}
	/* A NUL inside the text. */
	g_assert_false(agrees("{\"a\":\"x\0y\"}", 11));
	g_assert_cmpint(check_len("{\"a\":\"x\0y\"}", 11), ==, JSCAN_INVALID);
}

/* Valid, but left to json-c. */
static void test_gives_up(void)
{
	g_assert_false(accepts(" {\"a\":1}"));
	g_assert_false(accepts("{\"a\":1} "));
	g_assert_false(accepts("{\"\\u0074ype\":\"ping\"}"));
	g_assert_false(accepts("{\"a\":\"\\ud83d\\ude00\"}"));
	/* A key with \u0000 at any depth: the slow path refuses it. */
	g_assert_false(accepts("{\"p\":{\"\\u0000\":1}}"));
	g_assert_true(accepts("{\"p\":{\"a\":\"\\u0000\"}}")); /* in a value: forwarded */
	GString *deep = nested_json("{\"a\":", DEPTH - 1, true);
	g_assert_true(accepts(deep->str)); /* DEPTH levels, the object's included */
	g_string_insert_c(deep, 5, '[');
	g_string_insert_c(deep, deep->len - 1, ']');
	g_assert_false(accepts(deep->str));
	g_string_free(deep, TRUE);
	struct jscan_member m[2];
	size_t n;
	g_assert_cmpint(jscan_object("{\"a\":1,\"b\":2,\"c\":3}", 19, DEPTH, SIZE_MAX, m, 2, &n), <, 0);
}

/* Strings are scanned eight bytes at a time: a special byte anywhere in a
 * word, or in the tail, is seen. */
static void test_long_strings(void)
{
	for (int at = 0; at < 40; at++) {
		g_autoptr(GString) s = g_string_new("{\"a\":\"");
		for (int i = 0; i < 40; i++)
			g_string_append_c(s, 'x');
		g_string_append(s, "\"}");
		gsize pos = 6 + (gsize)at;

		s->str[pos] = '\x01';
		g_assert_false(agrees(s->str, s->len));
		s->str[pos] = '"'; /* ends the string early: what follows is not JSON */
		g_assert_false(agrees(s->str, s->len));
		s->str[pos] = '\xc3';
		g_string_insert_c(s, (gssize)pos + 1, '\xa9'); /* é */
		g_assert_true(agrees(s->str, s->len));
		g_string_erase(s, (gssize)pos, 2);
		g_string_insert(s, (gssize)pos, "\\n");
		struct jscan_member m[1];
		size_t n;
		g_assert_cmpint(jscan_object(s->str, s->len, DEPTH, SIZE_MAX, m, 1, &n), ==, 0);
		g_assert_true(m[0].escaped);
		g_assert_cmpuint(m[0].value_len, ==, 41);
	}
}

/* Random damage to valid messages: jscan never accepts what json-c
 * refuses.  Bounded: a fixed number of rounds. */
static void test_mutations(void)
{
	static const char *const seeds[] = {
		"{\"type\":\"peer_message\",\"to_peer_id\":\"w-1\",\"payload\":{\"t\":12345,\"s\":[1,2,3],\"p\":\"xx\\\"yy\"}}",
		"{\"type\":\"offer\",\"target\":\"b\",\"sdp\":\"v=0\\r\\no=- 1 2 IN IP4 0.0.0.0\",\"n\":-1.5e3}",
		"{\"a\":[true,false,null,{},[],\"\\u00e9\"],\"b\":{\"c\":{\"d\":0}}}",
	};
	static const char alphabet[] = "{}[]\":,\\ \t\n0123456789-+.eEtfnulrsaux'/";
	unsigned accepted = 0, left = 0;

	for (int round = 0; round < 20000; round++) {
		const char *seed = seeds[round % G_N_ELEMENTS(seeds)];
		g_autoptr(GString) s = g_string_new(seed);
		int edits = g_test_rand_int_range(1, 4);
		for (int e = 0; e < edits && s->len; e++) {
			gsize at = (gsize)g_test_rand_int_range(0, (gint32)s->len);
			char c = alphabet[g_test_rand_int_range(0, sizeof alphabet - 1)];
			switch (g_test_rand_int_range(0, 3)) {
			case 0:
				s->str[at] = c;
				break;
			case 1:
				g_string_insert_c(s, (gssize)at, c);
				break;
			default:
				g_string_erase(s, (gssize)at, 1);
				break;
			}
		}
		check_len(s->str, s->len);
		if (agrees(s->str, s->len)) {
			accepted++;
		} else {
			json_object *o = json_c(s->str, s->len);
			left += o != NULL;
			json_object_put(o);
		}
	}
	g_test_message("of 20000 mutations, %u accepted, %u valid but left to json-c", accepted, left);
	/* And it is the fast path for most of what is valid (json-c also
	 * takes raw tabs and newlines in strings and numbers like -.5). */
	g_assert_cmpuint(accepted, >, 0);
	g_assert_cmpuint(left, <=, accepted / 5);
}

/* What json-c takes, even strict, and RFC 8259 does not: refused
 * everywhere in a message, whatever jscan_object gives up on. */
static void test_check_not_rfc(void)
{
	static const char *const not_rfc[] = {
		"NaN", "Infinity", "-Infinity", "-NaN", "nan", "inf", "1.", "-", "+1", ".5", "01",
		"0x10", "'x'", "\"tab\there\"", "\"\x01\"", "\"\\x41\"", "\"\\'\"", "[1,]",
		"{'k':1}", "{\"k\":1,}", "[1 /* c */]", "[1 // c\n]", "True", "NULL",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(not_rfc); i++) {
		const char *v = not_rfc[i];
		g_autofree char *top = g_strdup_printf(" {\"type\":\"ping\",\"x\":%s} ", v);
		g_autofree char *deep = g_strdup_printf("{\"\\u0061\":[{\"b\":[1,%s,2]}]}", v);
		g_autofree char *alone = g_strdup(v);
		if (check(top) != JSCAN_INVALID || check(deep) != JSCAN_INVALID ||
		    check(alone) != JSCAN_INVALID)
			g_error("not refused everywhere: %s", v);
	}
	/* Valid forms jscan_object leaves to json-c all pass. */
	static const char *const valid[] = {
		" {\"a\":1} ", "\t[1]\n", "{\"\\u0074ype\":\"ping\"}", "{\"a\":\"\\ud83d\\ude00\"}",
		"{\"a\":\"\\udc00\"}", "\"s\"", "0", "-0.5e-3", "true", "null", "[]", "{}",
		"{\"a\":1e400,\"b\":123456789012345678901234567890}",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(valid); i++)
		if (check(valid[i]) != JSCAN_OK)
			g_error("refused: %s", valid[i]);
	g_assert_cmpint(check(""), ==, JSCAN_INVALID);
	g_assert_cmpint(check("   "), ==, JSCAN_INVALID);
	g_assert_cmpint(check("1 2"), ==, JSCAN_INVALID);
	g_assert_cmpint(check("{}}"), ==, JSCAN_INVALID);
	g_assert_cmpint(check("[}"), ==, JSCAN_INVALID);
	g_assert_cmpint(check("{]"), ==, JSCAN_INVALID);
	g_assert_cmpint(check("{\"a\":[}]}"), ==, JSCAN_INVALID);
}

static size_t count_values(const char *text)
{
	for (size_t max = 1; max < 1000; max++)
		if (jscan_check(text, strlen(text), DEPTH, max, NULL, NULL) != JSCAN_TOO_MANY)
			return max;
	return 0;
}

static void test_check_limits(void)
{
	/* Every value counts, keys do not. */
	g_assert_cmpuint(count_values("{}"), ==, 1);
	g_assert_cmpuint(count_values("{\"type\":\"ping\"}"), ==, 2);
	g_assert_cmpuint(count_values("[{},[],0,\"s\",true,null]"), ==, 7);
	g_assert_cmpuint(count_values("{\"a\":{\"b\":{\"c\":[1,2]}}}"), ==, 6);
	/* jscan_object counts alike, and gives up past the bound. */
	struct jscan_member m[4];
	size_t n;
	const char *t = "{\"a\":{\"b\":{\"c\":[1,2]}}}";
	g_assert_cmpint(jscan_object(t, strlen(t), DEPTH, 6, m, 4, &n), ==, 0);
	g_assert_cmpint(jscan_object(t, strlen(t), DEPTH, 5, m, 4, &n), <, 0);
	g_assert_cmpint(jscan_object("{}", 2, DEPTH, 0, m, 4, &n), <, 0);

	/* Depth: containers, the outermost counting 1; no recursion, so a
	 * configured 1000 is scanned as such. */
	for (unsigned depth = 2; depth <= 1000; depth = depth < 40 ? depth + 1 : depth * 2 + 100) {
		unsigned limit = MIN(depth, 1000);
		GString *ok = nested_json("{\"a\":", limit - 1, true);
		GString *over = nested_json("{\"a\":", limit, true);
		g_assert_cmpint(jscan_check(ok->str, ok->len, limit, SIZE_MAX, NULL, NULL), ==, JSCAN_OK);
		g_assert_cmpint(jscan_check(over->str, over->len, limit, SIZE_MAX, NULL, NULL), ==,
				JSCAN_TOO_DEEP);
		g_string_free(ok, TRUE);
		g_string_free(over, TRUE);
	}
	/* Beyond its own bound, whatever is asked. */
	GString *deep = nested_json("{\"a\":", JSCAN_CHECK_DEPTH_MAX, true);
	g_assert_cmpint(jscan_check(deep->str, deep->len, UINT32_MAX, SIZE_MAX, NULL, NULL), ==,
			JSCAN_TOO_DEEP);
	g_string_free(deep, TRUE);
	/* A fault or a bound, whichever comes first in the text. */
	g_assert_cmpint(jscan_check("[[[NaN]]]", 9, 2, SIZE_MAX, NULL, NULL), ==, JSCAN_TOO_DEEP);
	g_assert_cmpint(jscan_check("[NaN,[[1]]]", 11, 2, SIZE_MAX, NULL, NULL), ==, JSCAN_INVALID);

	/* A key json-c would cut short, at any level; NUL in values is fine. */
	g_assert_cmpint(check("{\"type\\u0000x\":\"ping\"}"), ==, JSCAN_NUL_KEY);
	g_assert_cmpint(check("[{\"a\":{\"\\u0000\":1}}]"), ==, JSCAN_NUL_KEY);
	g_assert_cmpint(check("{\"a\":\"\\u0000\"}"), ==, JSCAN_OK);
}

static void note(const struct jscan_member *m, void *data)
{
	GString *s = data;
	g_string_append_printf(s, "%.*s%s=%.*s/%d%s;", (int)m->key_len, m->key, m->key_escaped ? "(e)" : "",
			       (int)m->value_len, m->value, m->kind, m->escaped ? "(e)" : "");
}

/* The members of the outermost object, as they end, and only those. */
static void test_check_members(void)
{
	g_autoptr(GString) s = g_string_new(NULL);
	const char *t = " { \"a\" : 1 , \"b\":{\"x\":[2]},\"c\\n\":\"s\\t\",\"a\":[],\"d\":true,\"e\":\"\"} ";

	g_assert_cmpint(jscan_check(t, strlen(t), DEPTH, SIZE_MAX, note, s), ==, JSCAN_OK);
	g_assert_cmpstr(s->str, ==,
			"a=1/1;b={\"x\":[2]}/2;c\\n(e)=s\\t/0(e);a=[]/3;d=true/4;e=/0;");
	g_string_truncate(s, 0);
	g_assert_cmpint(jscan_check("[{\"a\":1}]", 9, DEPTH, SIZE_MAX, note, s), ==, JSCAN_OK);
	g_assert_cmpint(jscan_check("{}", 2, DEPTH, SIZE_MAX, note, s), ==, JSCAN_OK);
	g_assert_cmpstr(s->str, ==, "");
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	tok = json_tokener_new_ex(DEPTH + 1);
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	g_test_add_func("/jscan/valid", test_valid);
	g_test_add_func("/jscan/invalid", test_invalid);
	g_test_add_func("/jscan/gives-up", test_gives_up);
	g_test_add_func("/jscan/long-strings", test_long_strings);
	g_test_add_func("/jscan/mutations", test_mutations);
	g_test_add_func("/jscan/check-not-rfc", test_check_not_rfc);
	g_test_add_func("/jscan/check-limits", test_check_limits);
	g_test_add_func("/jscan/check-members", test_check_members);
	int r = g_test_run();
	json_tokener_free(tok);
	return r;
}
