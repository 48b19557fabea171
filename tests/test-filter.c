/* Unit tests: the discovery filter language (docs/protocol.md,
 * "discover_peers"). */
#include "core/filter.h"

#include <glib.h>
#include <string.h>

static const char *worker_md =
	"{\"tags\":[\"gpu\",\"training\"],"
	"\"properties\":{\"gpu_memory_mb\":16384,\"status\":\"available\",\"ratio\":0.5,"
	"\"cuda\":\"12.1\",\"busy\":false,\"slots\":[1,2],\"loc\":{\"dc\":\"eu\",\"rack\":3},"
	"\"nothing\":null,\"_secret\":\"hunter2\"}}";

static struct meta *meta_from(const char *text)
{
	json_object *o = json_tokener_parse(text);
	struct meta *m = NULL;
	const char *why = NULL;
	g_assert_nonnull(o);
	g_assert_cmpint(meta_new(o, 1 << 20, &m, &why), ==, 0);
	json_object_put(o);
	return m;
}

/* Compiles FILTERS and matches it against a worker with worker_md. */
static int match(const char *role, const char *md, const char *filters)
{
	json_object *f = json_tokener_parse(filters);
	struct filter *flt = NULL;
	char *why = NULL;
	struct meta *m = meta_from(md);
	int r;

	g_assert_nonnull(f);
	if (filter_compile(f, UINT64_MAX, &flt, &why) < 0) {
		g_assert_nonnull(why);
		g_free(why);
		r = -1;
	} else {
		r = filter_match(flt, role, m);
		filter_free(flt);
	}
	json_object_put(f);
	meta_free(m);
	return r;
}

#define MATCHES(f) g_assert_cmpint(match("worker", worker_md, f), ==, 1)
#define MISSES(f) g_assert_cmpint(match("worker", worker_md, f), ==, 0)
#define INVALID(f) g_assert_cmpint(match("worker", worker_md, f), ==, -1)

static void test_empty(void)
{
	MATCHES("{}");
	MATCHES("{\"room_id\":\"ignored\",\"other\":1}");
	MATCHES("{\"role\":null,\"tags\":null,\"properties\":null}");
}

static void test_role(void)
{
	MATCHES("{\"role\":\"worker\"}");
	MISSES("{\"role\":\"client\"}");
	MATCHES("{\"role\":[\"client\",\"worker\"]}");
	MISSES("{\"role\":[\"client\",\"admin\"]}");
	MISSES("{\"role\":[]}");
	/* Names sharing a prefix are different names. */
	MISSES("{\"role\":\"work\"}");
	MISSES("{\"role\":\"workers\"}");
	INVALID("{\"role\":5}");
	INVALID("{\"role\":[\"worker\",5]}");
}

static void test_tags(void)
{
	MATCHES("{\"tags\":[\"gpu\"]}");
	MATCHES("{\"tags\":[\"cpu\",\"training\"]}"); /* any */
	MISSES("{\"tags\":[\"cpu\"]}");
	MISSES("{\"tags\":[\"gp\"]}");
	MISSES("{\"tags\":[\"gpu2\"]}");
	MISSES("{\"tags\":[]}"); /* empty any matches nothing */
	MATCHES("{\"tags\":{\"$all\":[\"gpu\",\"training\"]}}");
	MISSES("{\"tags\":{\"$all\":[\"gpu\",\"inference\"]}}");
	MATCHES("{\"tags\":{\"$any\":[\"inference\",\"gpu\"]}}");
	MISSES("{\"tags\":{\"$any\":[\"inference\"]}}");
	INVALID("{\"tags\":{\"$some\":[\"gpu\"]}}");
	INVALID("{\"tags\":\"gpu\"}");
	INVALID("{\"tags\":[\"gpu\",1]}");
	/* A peer without tags. */
	g_assert_cmpint(match("worker", "{}", "{\"tags\":[\"gpu\"]}"), ==, 0);
	g_assert_cmpint(match("worker", "{}", "{\"tags\":{\"$all\":[]}}"), ==, 1);
}

static void test_equality(void)
{
	MATCHES("{\"properties\":{\"status\":\"available\"}}");
	MISSES("{\"properties\":{\"status\":\"busy\"}}");
	MATCHES("{\"properties\":{\"gpu_memory_mb\":16384.0}}"); /* 1 == 1.0 */
	MISSES("{\"properties\":{\"gpu_memory_mb\":\"16384\"}}"); /* types differ */
	MATCHES("{\"properties\":{\"busy\":false}}");
	MATCHES("{\"properties\":{\"slots\":[1,2.0]}}");
	MISSES("{\"properties\":{\"slots\":[2,1]}}");
	MATCHES("{\"properties\":{\"loc\":{\"rack\":3,\"dc\":\"eu\"}}}"); /* deep, any order */
	MISSES("{\"properties\":{\"loc\":{\"dc\":\"eu\"}}}");
	MATCHES("{\"properties\":{\"nothing\":null}}");
	MATCHES("{\"properties\":{\"missing\":null}}"); /* missing matches null */
	MISSES("{\"properties\":{\"missing\":0}}");
	MISSES("{\"properties\":{\"gpu_memory\":16384}}"); /* a prefix of a key */
	MISSES("{\"properties\":{\"statuses\":\"available\"}}");
	MATCHES("{\"properties\":{\"status\":\"available\",\"busy\":false}}"); /* AND */
	MISSES("{\"properties\":{\"status\":\"available\",\"busy\":true}}");
	INVALID("{\"properties\":[1]}");
}

static void test_eq_ne(void)
{
	MATCHES("{\"properties\":{\"status\":{\"$eq\":\"available\"}}}");
	MISSES("{\"properties\":{\"status\":{\"$eq\":\"busy\"}}}");
	MATCHES("{\"properties\":{\"status\":{\"$ne\":\"busy\"}}}");
	MISSES("{\"properties\":{\"status\":{\"$ne\":\"available\"}}}");
	MATCHES("{\"properties\":{\"missing\":{\"$ne\":\"x\"}}}");
	MATCHES("{\"properties\":{\"gpu_memory_mb\":{\"$ne\":\"16384\"}}}"); /* mistyped: not equal */
	MATCHES("{\"properties\":{\"missing\":{\"$eq\":null}}}");
	MISSES("{\"properties\":{\"missing\":{\"$ne\":null}}}");
}

static void test_ordering(void)
{
	MATCHES("{\"properties\":{\"gpu_memory_mb\":{\"$gte\":8192}}}");
	MATCHES("{\"properties\":{\"gpu_memory_mb\":{\"$gte\":16384}}}");
	MISSES("{\"properties\":{\"gpu_memory_mb\":{\"$gte\":16385}}}");
	MATCHES("{\"properties\":{\"gpu_memory_mb\":{\"$gt\":16383.5}}}");
	MISSES("{\"properties\":{\"gpu_memory_mb\":{\"$gt\":16384}}}");
	MATCHES("{\"properties\":{\"gpu_memory_mb\":{\"$lt\":20000}}}");
	MISSES("{\"properties\":{\"gpu_memory_mb\":{\"$lt\":16384}}}");
	MATCHES("{\"properties\":{\"gpu_memory_mb\":{\"$lte\":16384}}}");
	MISSES("{\"properties\":{\"gpu_memory_mb\":{\"$lte\":100}}}");
	MATCHES("{\"properties\":{\"ratio\":{\"$gt\":0.25,\"$lt\":1}}}"); /* ANDed */
	MISSES("{\"properties\":{\"ratio\":{\"$gt\":0.25,\"$lt\":0.5}}}");
	/* strings by byte order */
	MATCHES("{\"properties\":{\"cuda\":{\"$gte\":\"12.0\"}}}");
	MISSES("{\"properties\":{\"cuda\":{\"$gt\":\"12.1\"}}}");
	MATCHES("{\"properties\":{\"cuda\":{\"$lt\":\"12.10\"}}}");
	/* type mismatches are false, never errors */
	MISSES("{\"properties\":{\"gpu_memory_mb\":{\"$gte\":\"8192\"}}}");
	MISSES("{\"properties\":{\"status\":{\"$gt\":5}}}");
	MISSES("{\"properties\":{\"busy\":{\"$lt\":true}}}");
	MISSES("{\"properties\":{\"slots\":{\"$gt\":[0]}}}");
	MISSES("{\"properties\":{\"missing\":{\"$gt\":0}}}");
	MISSES("{\"properties\":{\"missing\":{\"$lte\":0}}}");
}

static void test_in_nin(void)
{
	MATCHES("{\"properties\":{\"status\":{\"$in\":[\"idle\",\"available\"]}}}");
	MISSES("{\"properties\":{\"status\":{\"$in\":[\"idle\",\"busy\"]}}}");
	MATCHES("{\"properties\":{\"gpu_memory_mb\":{\"$in\":[8192,16384.0]}}}");
	MISSES("{\"properties\":{\"gpu_memory_mb\":{\"$in\":[\"16384\"]}}}");
	MISSES("{\"properties\":{\"status\":{\"$in\":[]}}}");
	MATCHES("{\"properties\":{\"status\":{\"$nin\":[\"busy\",\"offline\"]}}}");
	MISSES("{\"properties\":{\"status\":{\"$nin\":[\"available\"]}}}");
	MATCHES("{\"properties\":{\"missing\":{\"$nin\":[\"x\"]}}}");
	MISSES("{\"properties\":{\"missing\":{\"$in\":[\"x\"]}}}");
	MATCHES("{\"properties\":{\"missing\":{\"$in\":[null]}}}");
	INVALID("{\"properties\":{\"status\":{\"$in\":\"available\"}}}");
	INVALID("{\"properties\":{\"status\":{\"$nin\":{}}}}");
}

static void test_exists(void)
{
	MATCHES("{\"properties\":{\"status\":{\"$exists\":true}}}");
	MISSES("{\"properties\":{\"status\":{\"$exists\":false}}}");
	MATCHES("{\"properties\":{\"missing\":{\"$exists\":false}}}");
	MISSES("{\"properties\":{\"missing\":{\"$exists\":true}}}");
	MATCHES("{\"properties\":{\"nothing\":{\"$exists\":true}}}"); /* present as null */
	INVALID("{\"properties\":{\"status\":{\"$exists\":1}}}");
}

static void test_unknown_operator(void)
{
	INVALID("{\"properties\":{\"status\":{\"$regex\":\"a.*\"}}}");
	INVALID("{\"properties\":{\"gpu_memory_mb\":{\"$gte\":1,\"$foo\":2}}}");
	/* Not all keys start with '$': a plain object compared deeply. */
	MISSES("{\"properties\":{\"loc\":{\"$gt\":1,\"dc\":\"eu\"}}}");
}

static void test_private_invisible(void)
{
	/* Private properties can be neither matched nor probed. */
	MISSES("{\"properties\":{\"_secret\":\"hunter2\"}}");
	MATCHES("{\"properties\":{\"_secret\":{\"$exists\":false}}}");
}

/* Composite values compare deeply through their canonical text. */
static void test_composite(void)
{
	const char *md = "{\"properties\":{\"v\":{\"b\":[1,2.5,\"x\",null,{\"z\":true,\"y\":[]}],\"a\":-0.0},"
			 "\"s\":[\"ab\"],\"n\":[null],\"big\":[18446744073709551615,-9223372036854775808]}}";
	g_assert_cmpint(match("w", md, "{\"properties\":{\"v\":{\"a\":0,\"b\":[1.0,2.5,\"x\",null,"
				       "{\"y\":[],\"z\":true}]}}}"), ==, 1);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"v\":{\"a\":0,\"b\":[1.0,2.5,\"x\",null,"
				       "{\"y\":[],\"z\":false}]}}}"), ==, 0);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"v\":{\"a\":0,\"b\":[1,2.5,\"x\",null]}}}"), ==, 0);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"s\":[\"ab\"]}}"), ==, 1);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"s\":[\"a\",\"b\"]}}"), ==, 0);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"s\":[\"a\\u0062\"]}}"), ==, 1);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"n\":[null]}}"), ==, 1);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"n\":[]}}"), ==, 0);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"n\":{\"$in\":[[0],[null]]}}}"), ==, 1);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"big\":[18446744073709551615,"
				       "-9223372036854775808]}}"), ==, 1);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"big\":[9223372036854775807,"
				       "-9223372036854775808]}}"), ==, 0);
	/* Numbers by exact value: 2^53 + 1 is not the double 2^53. */
	g_assert_cmpint(match("w", "{\"properties\":{\"i\":9007199254740993}}",
			      "{\"properties\":{\"i\":9007199254740992.0}}"), ==, 0);
	g_assert_cmpint(match("w", "{\"properties\":{\"i\":[9007199254740992]}}",
			      "{\"properties\":{\"i\":[9007199254740992.0]}}"), ==, 1);
	/* JSON null anywhere in a filter is null. */
	g_assert_cmpint(match("w", md, "{\"role\":null,\"tags\":null,\"properties\":{\"n\":{\"$nin\":[null,[]]}}}"), ==, 1);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"v\":{\"$eq\":null}}}"), ==, 0);
	g_assert_cmpint(match("w", md, "{\"properties\":{\"v\":{\"$in\":null}}}"), ==, -1);
	g_assert_cmpint(match("w", md, "{\"tags\":{\"$any\":null}}"), ==, -1);
	g_assert_cmpint(match("w", md, "{\"tags\":[null]}"), ==, -1);
}

/* Compiles FILTERS with a budget of MAX_WORK and matches it against each
 * of N peers with metadata MD: how many matched. */
static int scan(const char *md, unsigned n, const char *filters, uint64_t max_work, struct filter **out)
{
	json_object *f = json_tokener_parse(filters);
	struct meta *m = meta_from(md);
	char *why = NULL;
	int hits = 0;

	g_assert_nonnull(f);
	g_assert_cmpint(filter_compile(f, max_work, out, &why), ==, 0);
	for (unsigned i = 0; i < n; i++)
		hits += filter_match(*out, "worker", m);
	json_object_put(f);
	meta_free(m);
	return hits;
}

static GString *zeros(GString *s, unsigned n, int last)
{
	g_string_append_c(s, '[');
	for (unsigned i = 0; i + 1 < n; i++)
		g_string_append(s, "0,");
	g_string_append_printf(s, "%d]", last);
	return s;
}

/* Issue 12, finding 3: a peer holding a long array and a $nin of many
 * near-identical arrays cost a deep comparison each. */
static void test_composite_cost(void)
{
	g_autoptr(GString) md = g_string_new("{\"properties\":{\"a\":");
	zeros(md, 5000, 0);
	g_string_append(md, "}}");
	g_autoptr(GString) f = g_string_new("{\"properties\":{\"a\":{\"$nin\":[");
	for (int k = 0; k < 100; k++) {
		if (k)
			g_string_append_c(f, ',');
		zeros(f, 5000, k + 1);
	}
	g_string_append(f, "]}}}");
	struct filter *flt;
	g_assert_cmpint(scan(md->str, 200, f->str, UINT64_MAX, &flt), ==, 200);
	/* One unit per operand and peer, and the lookups: no deep walks. */
	g_test_message("work for 200 peers: %" G_GUINT64_FORMAT, filter_work(flt));
	g_assert_cmpuint(filter_work(flt), <, 200 * 110);
	filter_free(flt);

	/* An equal array reads the text once per comparison, and pays. */
	g_string_assign(f, "{\"properties\":{\"a\":{\"$in\":[");
	zeros(f, 5000, 0);
	g_string_append(f, "]}}}");
	g_assert_cmpint(scan(md->str, 10, f->str, UINT64_MAX, &flt), ==, 10);
	g_assert_cmpuint(filter_work(flt), >, 10 * 10000 / META_WORK_BYTES);
	filter_free(flt);
}

/* Every way to make a query long is counted: once over budget every
 * match fails and the filter says so. */
static void test_budget(void)
{
	g_autoptr(GString) md = g_string_new("{\"tags\":[");
	for (int i = 0; i < 1000; i++)
		g_string_append_printf(md, "%s\"t%d\"", i ? "," : "", i);
	g_string_append(md, "],\"properties\":{");
	for (int i = 0; i < 1000; i++)
		g_string_append_printf(md, "%s\"k%d\":%d", i ? "," : "", i, i);
	g_string_append(md, "}}");

	g_autoptr(GString) tags = g_string_new("{\"tags\":{\"$any\":[");
	for (int i = 0; i < 5000; i++)
		g_string_append_printf(tags, "%s\"x%d\"", i ? "," : "", i);
	g_string_append(tags, "]}}");
	g_autoptr(GString) props = g_string_new("{\"properties\":{");
	for (int i = 0; i < 5000; i++)
		g_string_append_printf(props, "%s\"k%d\":{\"$ne\":-1}", i ? "," : "", i);
	g_string_append(props, "}}");
	g_autoptr(GString) in = g_string_new("{\"properties\":{\"k1\":{\"$in\":[");
	for (int i = 0; i < 5000; i++)
		g_string_append_printf(in, "%s%d", i ? "," : "", i + 2);
	g_string_append(in, "]}}}");
	g_autoptr(GString) roles = g_string_new("{\"role\":[");
	for (int i = 0; i < 5000; i++)
		g_string_append_printf(roles, "%s\"r%d\"", i ? "," : "", i);
	g_string_append(roles, "]}");
	const char *queries[] = { tags->str, props->str, in->str, roles->str };

	for (size_t q = 0; q < G_N_ELEMENTS(queries); q++) {
		struct filter *flt;
		int hits = scan(md->str, 100, queries[q], 100000, &flt);
		g_assert_cmpint(hits, <, 2); /* the first peer may fit */
		g_assert_true(filter_exhausted(flt));
		g_test_message("query %zu: %d hits, %" G_GUINT64_FORMAT " units", q, hits, filter_work(flt));
		/* Stopped close to the budget: no peer ran far past it. */
		g_assert_cmpuint(filter_work(flt), <, 100000 + 100);
		filter_free(flt);
	}
	/* With room to spare, the same queries answer and are not exhausted. */
	struct filter *flt;
	g_assert_cmpint(scan(md->str, 3, props->str, UINT64_MAX, &flt), ==, 3); /* $ne holds for every key */
	g_assert_false(filter_exhausted(flt));
	filter_free(flt);
	g_assert_cmpint(scan(md->str, 3, "{\"tags\":[\"t999\"],\"properties\":{\"k7\":7}}", 1000, &flt), ==, 3);
	g_assert_false(filter_exhausted(flt));
	filter_free(flt);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/filter/empty", test_empty);
	g_test_add_func("/filter/role", test_role);
	g_test_add_func("/filter/tags", test_tags);
	g_test_add_func("/filter/equality", test_equality);
	g_test_add_func("/filter/eq-ne", test_eq_ne);
	g_test_add_func("/filter/ordering", test_ordering);
	g_test_add_func("/filter/in-nin", test_in_nin);
	g_test_add_func("/filter/exists", test_exists);
	g_test_add_func("/filter/unknown-operator", test_unknown_operator);
	g_test_add_func("/filter/private-invisible", test_private_invisible);
	g_test_add_func("/filter/composite", test_composite);
	g_test_add_func("/filter/composite-cost", test_composite_cost);
	g_test_add_func("/filter/budget", test_budget);
	return g_test_run();
}
