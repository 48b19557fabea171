/* The discovery filter language (docs/protocol.md, "discover_peers"):
 * filter_compile on any JSON, then filter_match against a room of peers:
 * metadata generated here (every value type, long tag lists and arrays;
 * the long one CROWD times more) and metadata from the input.  Checks:
 *  - budget: compiling and matching one input against the whole room costs
 *    at most FILTER_BUDGET_US of CPU (times fuzz_budget_scale()); inputs
 *    are at most 16 KiB (filter.options), so a query whose cost grows
 *    faster than its size and the room's (finding 3) is caught;
 *  - matching is deterministic, and {"$ne":v} / {"$nin":l} match exactly
 *    the peers {"$eq":v} / {"$in":l} do not, a plain value as {"$eq":v};
 *  - a refused filter says why.
 *
 * Input: the filters object, then metadata objects, one per peer,
 * separated by "%%" lines. */
#include "fuzz.h"

#include "core/protocol.h"
#include "core/filter.h"
#include "core/meta.h"

#include <stdio.h>
#include <string.h>

#define MAX_RECORDS 33
#define FILTER_BUDGET_US 50000
/* [limits] max_filter_work's default. */
#define MAX_WORK 1000000
/* The long generated peer is in the room this many times more: a room of
 * some size, as in finding 3 (200 peers, 4.4 s per query). */
#define CROWD 200

struct peer_md {
	const char *role;
	struct meta *m;
};

/* max_json_depth's default */
#define JSON_DEPTH 32

static json_tokener *tok;
static struct peer_md generated[12];
static size_t n_generated;

static json_object *parse(const char *text, size_t len)
{
	/* As the daemon parses: through the protocol's gate (RFC 8259, UTF-8,
	 * bounds), so that json-c never abandons a text part way, which in
	 * json-c 0.16 leaves a half-read \u escape for the next one. */
	static const struct protocol_limits lim = { JSON_DEPTH, SIZE_MAX };
	return protocol_parse_object(tok, &lim, text, len);
}

static void add_generated(const char *role, const char *text)
{
	json_object *md = parse(text, strlen(text));
	const char *why;
	g_assert_nonnull(md);
	g_assert_cmpint(meta_new(md, 1 << 20, &generated[n_generated].m, &why), ==, 0);
	generated[n_generated++].role = role;
	json_object_put(md);
}

static void generate(void)
{
	add_generated("worker", "{\"tags\":[\"gpu\",\"x\"],\"properties\":{\"gpu_memory_mb\":8192,"
				"\"status\":\"available\",\"load\":0.25,\"ok\":true,\"n\":null}}");
	add_generated("worker", "{\"tags\":[],\"properties\":{\"gpu_memory_mb\":4096.0,"
				"\"status\":\"busy\",\"a\":[1,2,3],\"o\":{\"k\":[{}]},\"_p\":1}}");
	add_generated("client", "{\"properties\":{\"status\":\"\",\"i\":-9223372036854775808,"
				"\"u\":9223372036854775807,\"d\":-0.0,\"e\":1e308}}");
	add_generated("client", "{}");
	add_generated("a", "{\"_x\":1,\"tags\":[\"\"],\"properties\":{\"a\":[],\"o\":{},\"s\":\"caf\xc3\xa9\"}}");
	/* long: the shapes that make comparisons costly */
	GString *s = g_string_new("{\"tags\":[");
	for (int i = 0; i < 300; i++)
		g_string_append_printf(s, "%s\"t%d\"", i ? "," : "", i);
	g_string_append(s, "],\"properties\":{\"a\":[");
	for (int i = 0; i < 2000; i++)
		g_string_append(s, i ? ",0" : "0");
	g_string_append(s, "],\"b\":[");
	for (int i = 0; i < 500; i++)
		g_string_append(s, i ? ",{}" : "{}");
	g_string_append(s, "],\"c\":[[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]],\"k\":\"");
	for (int i = 0; i < 4000; i++)
		g_string_append_c(s, 'k');
	g_string_append(s, "\"}}");
	add_generated("worker", s->str);
	add_generated("worker", s->str);
	g_string_free(s, TRUE);
}

static bool skip(json_object *md)
{
	return fuzz_has_nonfinite(md);
}

/* {"properties":{KEY:{OP:VALUE}}}, or {"properties":{KEY:VALUE}} with OP NULL. */
static struct filter *single(const char *key, const char *op, json_object *value)
{
	json_object *props = json_object_new_object(), *f = json_object_new_object();
	json_object *cond;
	struct filter *out = NULL;
	g_autofree char *why = NULL;

	if (op) {
		cond = json_object_new_object();
		json_object_object_add(cond, op, json_object_get(value));
	} else {
		cond = json_object_get(value);
	}
	json_object_object_add(props, key, cond);
	json_object_object_add(f, "properties", props);
	if (filter_compile(f, MAX_WORK, &out, &why) < 0)
		out = NULL;
	json_object_put(f);
	return out;
}

static void complement(struct peer_md *peers, size_t n, const char *key, const char *op,
		       const char *neg, json_object *value)
{
	struct filter *a = single(key, op, value), *b = single(key, neg, value);
	for (size_t i = 0; a && b && i < n; i++)
		if (filter_match(a, peers[i].role, peers[i].m) ==
			    filter_match(b, peers[i].role, peers[i].m) &&
		    !filter_exhausted(a) && !filter_exhausted(b))
			fuzz_fail("%s %s and %s agree on peer %zu", key, op ? op : "(plain)", neg, i);
	filter_free(a);
	filter_free(b);
}

/* The equivalences of the property conditions of F. */
static void equivalences(json_object *f, struct peer_md *peers, size_t n)
{
	json_object *props;
	if (!json_object_is_type(f, json_type_object) ||
	    !json_object_object_get_ex(f, "properties", &props) ||
	    !json_object_is_type(props, json_type_object))
		return;
	json_object_object_foreach(props, key, cond) {
		if (!json_object_is_type(cond, json_type_object)) {
			/* a plain value: equality, and $ne its complement */
			if (cond)
				complement(peers, n, key, NULL, "$ne", cond);
			continue;
		}
		json_object *v;
		if (json_object_object_get_ex(cond, "$eq", &v))
			complement(peers, n, key, "$eq", "$ne", v);
		if (json_object_object_get_ex(cond, "$in", &v))
			complement(peers, n, key, "$in", "$nin", v);
	}
}

FUZZ_TARGET(filter)
{
	struct fuzz_rec rec[MAX_RECORDS];
	struct peer_md peers[MAX_RECORDS - 1 + G_N_ELEMENTS(generated) + CROWD];
	size_t n_peers = 0;

	if (!tok) {
		fuzz_quiet();
		tok = json_tokener_new_ex(JSON_DEPTH + 1);
		json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
		generate();
	}
	size_t n = fuzz_split(data, size, rec, MAX_RECORDS);
	json_object *f = parse(rec[0].p, rec[0].len);
	if (!f || skip(f)) {
		json_object_put(f);
		return 0;
	}
	for (size_t i = 0; i < n_generated; i++)
		peers[n_peers++] = generated[i];
	for (size_t i = 0; i < CROWD; i++)
		peers[n_peers++] = generated[n_generated - 1];
	size_t n_fixed = n_peers;
	for (size_t i = 1; i < n; i++) {
		json_object *md = parse(rec[i].p, rec[i].len);
		struct meta *m;
		const char *why;
		if (md && !skip(md) && meta_new(md, 16384, &m, &why) == 0)
			peers[n_peers++] = (struct peer_md){ i % 2 ? "worker" : "client", m };
		json_object_put(md);
	}

	int64_t start = fuzz_cpu_us();
	struct filter *flt = NULL;
	g_autofree char *why = NULL;
	bool match[G_N_ELEMENTS(peers)];
	if (filter_compile(f, MAX_WORK, &flt, &why) < 0) {
		if (!why)
			fuzz_fail("filter refused without a reason");
	} else {
		for (size_t i = 0; i < n_peers; i++)
			match[i] = filter_match(flt, peers[i].role, peers[i].m);
	}
	int64_t spent = fuzz_cpu_us() - start;
	int64_t bound = (int64_t)FILTER_BUDGET_US * fuzz_budget_scale();
	if (g_getenv("FUZZ_DEBUG"))
		fprintf(stderr, "filter: %lld us of CPU, %zu peers\n", (long long)spent, n_peers);
	if (spent > bound)
		fuzz_fail("budget: %lld us of CPU for %zu input bytes and %zu peers (bound %d us)",
			  (long long)spent, size, n_peers, FILTER_BUDGET_US);
	/* The count that bounds the work stops near its budget (the last
	 * comparison may overrun it by its own cost). */
	if (flt && filter_work(flt) > 2 * MAX_WORK)
		fuzz_fail("work: %llu steps, budget %d", (unsigned long long)filter_work(flt), MAX_WORK);
	if (flt && !filter_exhausted(flt)) {
		for (size_t i = 0; i < n_peers; i++)
			if (filter_match(flt, peers[i].role, peers[i].m) != match[i])
				fuzz_fail("peer %zu: two matches disagree", i);
		equivalences(f, peers, n_peers);
	}
	filter_free(flt);
	for (size_t i = n_fixed; i < n_peers; i++)
		meta_free(peers[i].m);
	json_object_put(f);
	return 0;
}
