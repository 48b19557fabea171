/* Unit tests: the discovery filter language (PROTOCOL.md 3.2). */
#include "filter.h"

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
	if (filter_compile(f, &flt, &why) < 0) {
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
	return g_test_run();
}
