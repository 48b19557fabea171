/* Unit tests: metadata storage, the public view and the merge rule. */
#include "core/meta.h"
#include "nested.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

static struct meta *meta_from(const char *text)
{
	json_object *o = json_tokener_parse(text);
	struct meta *m = NULL;
	const char *why = NULL;
	g_assert_cmpint(meta_new(o, 16384, &m, &why), ==, 0);
	json_object_put(o);
	return m;
}

static struct meta *merged(const char *old, const char *update)
{
	struct meta *m = meta_from(old), *out = NULL;
	json_object *u = json_tokener_parse(update);
	const char *why = NULL;
	g_assert_cmpint(meta_merge(m, u, 16384, &out, &why), ==, 0);
	json_object_put(u);
	meta_free(m);
	return out;
}

static void test_default_empty(void)
{
	struct meta *m = NULL;
	const char *why = NULL;
	g_assert_cmpint(meta_new(NULL, 16384, &m, &why), ==, 0);
	g_assert_cmpstr(m->public_json, ==, "{}");
	g_assert_cmpstr(m->full_json, ==, "{}");
	g_assert_cmpuint(m->n_tags, ==, 0);
	g_assert_cmpuint(m->n_props, ==, 0);
	meta_free(m);
}

static void test_index(void)
{
	struct meta *m = meta_from("{\"tags\":[\"gpu\",\"a\\u0000b\"],\"properties\":{\"n\":3,"
				   "\"s\":\"x\",\"o\":{\"k\":[1]}},\"version\":\"1.0\"}");
	g_assert_cmpuint(m->n_tags, ==, 2);
	g_assert_true(meta_has_tag(m, "gpu"));
	g_assert_false(meta_has_tag(m, "cpu"));
	g_assert_cmpuint(m->n_props, ==, 3);
	const struct meta_value *v = meta_find_prop(m, "n");
	g_assert_nonnull(v);
	g_assert_cmpint(v->type, ==, META_INT);
	g_assert_cmpint(v->i, ==, 3);
	v = meta_find_prop(m, "s");
	g_assert_cmpint(v->type, ==, META_STRING);
	g_assert_cmpmem(v->s.ptr, v->s.len, "x", 1);
	g_assert_cmpint(meta_find_prop(m, "o")->type, ==, META_COMPLEX);
	g_assert_null(meta_find_prop(m, "missing"));
	/* Everything public: one text serves both views. */
	g_assert_true(m->public_json == m->full_json);
	meta_free(m);
}

static void test_private_keys(void)
{
	struct meta *m = meta_from("{\"_api_key\":\"k\",\"tags\":[],\"properties\":{\"a\":1,\"_token\":\"t\"}}");
	g_assert_cmpstr(m->public_json, ==, "{\"tags\":[],\"properties\":{\"a\":1}}");
	g_assert_nonnull(strstr(m->full_json, "_token"));
	g_assert_nonnull(strstr(m->full_json, "_api_key"));
	g_assert_null(strstr(m->public_json, "\"t\""));
	g_assert_cmpuint(m->n_props, ==, 1);
	g_assert_null(meta_find_prop(m, "_token"));
	meta_free(m);
}

static void test_shape_errors(void)
{
	static const char *bad[] = {
		"[]",
		"{\"tags\":\"gpu\"}",
		"{\"tags\":[1]}",
		"{\"properties\":[]}",
		"{\"properties\":\"x\"}",
	};
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		json_object *o = json_tokener_parse(bad[i]);
		struct meta *m = NULL;
		const char *why = NULL;
		g_assert_cmpint(meta_new(o, 16384, &m, &why), ==, -EINVAL);
		g_assert_nonnull(why);
		g_assert_null(m);
		json_object_put(o);
	}
}

static void test_size_limit(void)
{
	GString *s = g_string_new("{\"properties\":{\"blob\":\"");
	for (int i = 0; i < 200; i++)
		g_string_append_c(s, 'x');
	g_string_append(s, "\"}}");
	json_object *o = json_tokener_parse(s->str);
	struct meta *m = NULL;
	const char *why = NULL;
	g_assert_cmpint(meta_new(o, 100, &m, &why), ==, -EMSGSIZE);
	g_assert_cmpint(meta_new(o, s->len, &m, &why), ==, 0);
	meta_free(m);
	json_object_put(o);
	g_string_free(s, TRUE);
}

static void test_merge(void)
{
	struct meta *m = merged("{\"tags\":[\"a\"],\"properties\":{\"status\":\"available\",\"mem\":1},\"v\":1}",
				"{\"properties\":{\"status\":\"busy\",\"load\":0.5}}");
	/* properties merged key by key; everything else kept */
	g_assert_cmpstr(m->full_json, ==,
			"{\"tags\":[\"a\"],\"properties\":{\"status\":\"busy\",\"mem\":1,\"load\":0.5},\"v\":1}");
	meta_free(m);

	m = merged("{\"tags\":[\"a\"],\"properties\":{\"status\":\"x\",\"mem\":1}}",
		   "{\"properties\":{\"mem\":null}}");
	g_assert_cmpstr(m->full_json, ==, "{\"tags\":[\"a\"],\"properties\":{\"status\":\"x\"}}");
	meta_free(m);

	m = merged("{\"tags\":[\"a\",\"b\"],\"properties\":{}}", "{\"tags\":[\"c\"]}");
	g_assert_cmpstr(m->full_json, ==, "{\"tags\":[\"c\"],\"properties\":{}}");
	meta_free(m);

	m = merged("{\"v\":1}", "{\"v\":{\"x\":2},\"new\":true}");
	g_assert_cmpstr(m->full_json, ==, "{\"v\":{\"x\":2},\"new\":true}");
	meta_free(m);

	m = merged("{}", "{\"properties\":{\"a\":1,\"_k\":2}}");
	g_assert_cmpstr(m->full_json, ==, "{\"properties\":{\"a\":1,\"_k\":2}}");
	g_assert_cmpstr(m->public_json, ==, "{\"properties\":{\"a\":1}}");
	meta_free(m);

	/* Private keys survive an update that does not name them. */
	m = merged("{\"_cred\":\"c\",\"properties\":{\"_p\":1}}", "{\"properties\":{\"q\":2}}");
	g_assert_cmpstr(m->full_json, ==, "{\"_cred\":\"c\",\"properties\":{\"_p\":1,\"q\":2}}");
	meta_free(m);
}

static void test_merge_errors(void)
{
	static const char *bad[] = { "{\"properties\":[]}", "{\"tags\":\"x\"}", "{\"properties\":null}" };
	struct meta *m = meta_from("{\"properties\":{\"a\":1}}");
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		json_object *u = json_tokener_parse(bad[i]);
		struct meta *out = NULL;
		const char *why = NULL;
		g_assert_cmpint(meta_merge(m, u, 16384, &out, &why), ==, -EINVAL);
		g_assert_null(out);
		json_object_put(u);
	}
	/* Too large after the merge: refused, nothing changes. */
	json_object *u = json_tokener_parse("{\"properties\":{\"big\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}}");
	struct meta *out = NULL;
	const char *why = NULL;
	g_assert_cmpint(meta_merge(m, u, 40, &out, &why), ==, -EMSGSIZE);
	json_object_put(u);
	meta_free(m);
}

/* Metadata deeper than json-c's default depth (taken in with a larger
 * max_json_depth) still merges. */
static void test_merge_deep(void)
{
	GString *text = nested_json("{\"deep\":", 40, true);
	json_tokener *tok = json_tokener_new_ex(64);
	json_object *md = json_tokener_parse_ex(tok, text->str, (int)text->len);
	json_tokener_free(tok);
	g_assert_nonnull(md);
	struct meta *m = NULL, *out = NULL;
	const char *why = NULL;
	g_assert_cmpint(meta_new(md, 16384, &m, &why), ==, 0);
	json_object *u = json_tokener_parse("{\"properties\":{\"a\":1}}");
	g_assert_cmpint(meta_merge(m, u, 16384, &out, &why), ==, 0);
	g_assert_nonnull(strstr(out->full_json, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["));
	g_assert_nonnull(meta_find_prop(out, "a"));
	json_object_put(u);
	json_object_put(md);
	meta_free(m);
	meta_free(out);
	g_string_free(text, TRUE);
}

static void test_values(void)
{
	struct meta_value a = { .type = META_INT, .i = 1 }, b = { .type = META_DOUBLE, .d = 1.0 };
	struct meta_value s1 = { .type = META_STRING, .s = { "ab", 2 } };
	struct meta_value s2 = { .type = META_STRING, .s = { "abc", 3 } };
	int cmp;
	g_assert_true(meta_value_equal(&a, &b));
	g_assert_true(meta_value_compare(&a, &b, &cmp));
	g_assert_cmpint(cmp, ==, 0);
	g_assert_true(meta_value_compare(&s1, &s2, &cmp));
	g_assert_cmpint(cmp, <, 0);
	g_assert_false(meta_value_compare(&a, &s1, &cmp));
	g_assert_false(meta_value_equal(&a, &s1));
	/* Large integers compare exactly. */
	struct meta_value big1 = { .type = META_INT, .i = 9007199254740993 };
	struct meta_value big2 = { .type = META_INT, .i = 9007199254740992 };
	g_assert_false(meta_value_equal(&big1, &big2));
}

/* JSON null arrives as a NULL json_object: every walker must take it as
 * null, wherever it sits (issue 12, finding 1). */
static void test_null_values(void)
{
	struct meta *m = meta_from("{\"_a\":1,\"b\":null}");
	g_assert_cmpstr(m->public_json, ==, "{\"b\":null}");
	meta_free(m);

	m = meta_from("{\"_a\":1,\"properties\":null}");
	g_assert_cmpstr(m->public_json, ==, "{\"properties\":null}");
	g_assert_cmpuint(m->n_props, ==, 0);
	meta_free(m);

	m = meta_from("{\"_a\":1,\"b\":null,\"properties\":{\"_p\":null,\"q\":null},\"c\":[null,{\"x\":null}]}");
	g_assert_cmpstr(m->public_json, ==,
			"{\"b\":null,\"properties\":{\"q\":null},\"c\":[null,{\"x\":null}]}");
	const struct meta_value *v = meta_find_prop(m, "q");
	g_assert_nonnull(v);
	g_assert_cmpint(v->type, ==, META_NULL);
	meta_free(m);

	m = meta_from("{\"tags\":null,\"properties\":{\"a\":[null],\"b\":{\"n\":null}}}");
	g_assert_cmpuint(m->n_tags, ==, 0);
	g_assert_cmpint(meta_find_prop(m, "a")->type, ==, META_COMPLEX);
	meta_free(m);

	/* A private key, then an update with a null top-level key. */
	m = merged("{\"_a\":1,\"properties\":{\"s\":\"x\"}}", "{\"status\":null}");
	g_assert_cmpstr(m->public_json, ==, "{\"properties\":{\"s\":\"x\"},\"status\":null}");
	meta_free(m);
	m = merged("{\"_a\":1}", "{\"status\":null}");
	g_assert_cmpstr(m->public_json, ==, "{\"status\":null}");
	meta_free(m);
	m = merged("{\"_a\":1,\"properties\":null}", "{\"properties\":{\"k\":null,\"j\":2}}");
	g_assert_cmpstr(m->public_json, ==, "{\"properties\":{\"j\":2}}");
	meta_free(m);
}

/* Issue 12, finding 4: what is kept is proportional to the metadata's
 * size, whatever its shape (json-c trees of [{},{},...] cost 265 times). */
static void test_kept_bytes(void)
{
	static const char *shapes[][3] = {
		{ "{\"properties\":{\"a\":[", "{},", "{}]}}" },
		{ "{\"properties\":{\"a\":[", "[],", "[]]}}" },
		{ "{\"properties\":{\"a\":[", "0.1,", "0]}}" },
		{ "{\"_p\":1,\"a\":[", "{},", "{}]}" },
		{ "{\"tags\":[", "\"\",", "\"\"]}" },
		{ "{\"properties\":{\"b\":0", ",\"c\":0", "}}" },
	};
	for (size_t k = 0; k < G_N_ELEMENTS(shapes); k++) {
		GString *s = g_string_new(shapes[k][0]);
		while (s->len < 16000)
			g_string_append(s, shapes[k][1]);
		g_string_append(s, shapes[k][2]);
		if (k == 5) { /* distinct keys */
			g_string_assign(s, shapes[k][0]);
			for (int i = 0; s->len < 16000; i++)
				g_string_append_printf(s, ",\"%x\":0", i);
			g_string_append(s, shapes[k][2]);
		}
		struct meta *m = meta_from(s->str);
		g_test_message("%.24s...: %zu bytes kept for %zu", s->str, m->kept_bytes, s->len);
		g_assert_cmpuint(m->kept_bytes, <, 8 * s->len);
		meta_free(m);
		g_string_free(s, TRUE);
	}
}

/* The index is sorted for lookups; every tag and key is still found,
 * bytes and lengths both count. */
static void test_lookup(void)
{
	struct meta *m = meta_from("{\"tags\":[\"b\",\"a\",\"ab\",\"a\\u0000\",\"a\"],"
				   "\"properties\":{\"zz\":1,\"z\":2,\"a\":3,\"_q\":4,\"\":5}}");
	static const char *tags[] = { "a", "b", "ab" };
	uint64_t work = 0;
	for (size_t i = 0; i < G_N_ELEMENTS(tags); i++)
		g_assert_true(meta_has_tag(m, tags[i]));
	g_assert_true(meta_lookup_tag(m, "a\0", 2, &work));
	g_assert_false(meta_lookup_tag(m, "b\0", 2, &work));
	g_assert_false(meta_has_tag(m, "c"));
	g_assert_false(meta_has_tag(m, ""));
	g_assert_cmpuint(m->n_props, ==, 4);
	g_assert_cmpint(meta_find_prop(m, "zz")->i, ==, 1);
	g_assert_cmpint(meta_find_prop(m, "z")->i, ==, 2);
	g_assert_cmpint(meta_find_prop(m, "a")->i, ==, 3);
	g_assert_cmpint(meta_find_prop(m, "")->i, ==, 5);
	g_assert_null(meta_find_prop(m, "_q"));
	g_assert_cmpuint(work, >, 0);
	meta_free(m);
}

/* Canonical text: equal JSON, equal text; anything else differs. */
static void test_canonical(void)
{
	static const char *same[][2] = {
		{ "{\"a\":1,\"b\":[1.0,\"x\"]}", "{\"b\":[1,\"x\"],\"a\":1.0}" },
		{ "[0.1,-0.0,1e2]", "[0.1,0,100]" },
		{ "[\"\\u00e9\"]", "[\"\xc3\xa9\"]" },
	};
	static const char *differ[][2] = {
		{ "[\"ab\"]", "[\"a\",\"b\"]" },
		{ "{\"a\":\"b\"}", "{\"ab\":\"\"}" },
		{ "[null]", "[]" },
		{ "[[]]", "[{}]" },
		{ "[1]", "[\"1\"]" },
		{ "[true]", "[1]" },
		{ "[0.1]", "[0.10000000000000002]" },
	};
	for (int pass = 0; pass < 2; pass++) {
		size_t n = pass ? G_N_ELEMENTS(differ) : G_N_ELEMENTS(same);
		for (size_t i = 0; i < n; i++) {
			const char *const *pair = pass ? differ[i] : same[i];
			json_object *x = json_tokener_parse(pair[0]), *y = json_tokener_parse(pair[1]);
			struct meta_value a, b;
			g_autofree char *ta = meta_value_from_json(x, &a);
			g_autofree char *tb = meta_value_from_json(y, &b);
			g_assert_nonnull(ta);
			g_assert_cmpint(meta_value_equal(&a, &b), ==, !pass);
			json_object_put(x);
			json_object_put(y);
		}
	}
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/meta/default-empty", test_default_empty);
	g_test_add_func("/meta/index", test_index);
	g_test_add_func("/meta/private-keys", test_private_keys);
	g_test_add_func("/meta/shape-errors", test_shape_errors);
	g_test_add_func("/meta/size-limit", test_size_limit);
	g_test_add_func("/meta/merge", test_merge);
	g_test_add_func("/meta/merge-errors", test_merge_errors);
	g_test_add_func("/meta/merge-deep", test_merge_deep);
	g_test_add_func("/meta/values", test_values);
	g_test_add_func("/meta/null-values", test_null_values);
	g_test_add_func("/meta/kept-bytes", test_kept_bytes);
	g_test_add_func("/meta/lookup", test_lookup);
	g_test_add_func("/meta/canonical", test_canonical);
	return g_test_run();
}
