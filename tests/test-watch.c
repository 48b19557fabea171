/* Unit tests: the watch index (src/core/watch.c) with the filter language
 * (src/core/filter.c).  For every operator a peer enters a watch's set,
 * stays in it through a change the filter reads, and leaves it: the index
 * must offer the watch for each (as a candidate when the peer joins, as a
 * reader of its update), and a random search checks that it never hides a
 * match from a join nor a change of the answer from an update. */
#include "core/filter.h"
#include "core/meta.h"
#include "core/registry.h"
#include "core/watch.h"

#include <glib.h>
#include <json-c/json.h>
#include <string.h>

static struct meta *meta_of(const char *json)
{
	json_object *o = json_tokener_parse(json);
	struct meta *m = NULL;
	const char *why = NULL;

	g_assert_nonnull(o);
	g_assert_cmpint(meta_new(o, 1 << 20, &m, &why), ==, 0);
	json_object_put(o);
	return m;
}

static struct filter *filter_of(const char *json)
{
	json_object *o = json_tokener_parse(json);
	struct filter *f = NULL;
	char *why = NULL;

	g_assert_nonnull(o);
	if (filter_compile(o, 1000000, &f, &why) < 0)
		g_error("%s: %s", json, why);
	json_object_put(o);
	return f;
}

static bool has(GPtrArray *list, const struct watch *w)
{
	for (guint i = 0; i < list->len; i++)
		if (g_ptr_array_index(list, i) == w)
			return true;
	return false;
}

/* W is a candidate when P joins (with its metadata M). */
static bool offered(struct peer *p, struct meta *m, const struct watch *w)
{
	g_autoptr(GPtrArray) out = g_ptr_array_new();
	struct meta *was = peer_swap_meta(p, m);
	watch_candidates(p, out);
	peer_swap_meta(p, was);
	return has(out, w);
}

static bool in_set(struct watch *w, const struct peer *p, const struct meta *m)
{
	bool lost;
	bool r = watch_matches(w, p->role, m, &lost);
	g_assert_false(lost);
	return r;
}

/* W is offered P's update from OLD to NEW: it reads what changed, and
 * holds P (as it would when P matched OLD) or may take it in. */
static bool reads(struct peer *p, const struct meta *old, const struct meta *new, struct watch *w)
{
	g_autoptr(GPtrArray) out = g_ptr_array_new();
	bool held = in_set(w, p, old);

	if (held)
		watch_hold(w, p);
	watch_mark_members(p);
	watch_readers(p, old, new, out);
	if (held)
		watch_release(w, p);
	return has(out, w);
}

struct op_case {
	const char *filter, *out, *in, *in2;
	bool in2_unread; /* IN2 differs from IN in nothing the filter reads */
};

/* OUT is outside the set, IN and IN2 inside, IN2 differing from IN in
 * something the filter reads unless IN2_UNREAD. */
static const struct op_case op_cases[] = {
	{ "{\"properties\":{\"s\":\"ok\"}}", "{\"properties\":{\"s\":\"no\"}}",
	  "{\"properties\":{\"s\":\"ok\"}}", "{\"properties\":{\"s\":\"ok\",\"x\":1}}", true },
	{ "{\"properties\":{\"s\":{\"$eq\":true}}}", "{\"properties\":{\"s\":false}}",
	  "{\"properties\":{\"s\":true}}", "{\"properties\":{\"s\":true,\"x\":1}}", true },
	{ "{\"properties\":{\"n\":{\"$eq\":5}}}", "{\"properties\":{\"n\":6}}",
	  "{\"properties\":{\"n\":5}}", "{\"properties\":{\"n\":5.0}}", false },
	{ "{\"properties\":{\"n\":{\"$eq\":null}}}", "{\"properties\":{\"n\":1}}", "{}",
	  "{\"properties\":{\"n\":null}}", false },
	{ "{\"properties\":{\"s\":{\"$ne\":\"busy\"}}}", "{\"properties\":{\"s\":\"busy\"}}",
	  "{\"properties\":{\"s\":\"idle\"}}", "{}", false },
	{ "{\"properties\":{\"n\":{\"$gt\":8}}}", "{\"properties\":{\"n\":8}}",
	  "{\"properties\":{\"n\":9}}", "{\"properties\":{\"n\":90}}", false },
	{ "{\"properties\":{\"n\":{\"$gte\":8}}}", "{\"properties\":{\"n\":7.5}}",
	  "{\"properties\":{\"n\":8}}", "{\"properties\":{\"n\":16}}", false },
	{ "{\"properties\":{\"n\":{\"$lt\":8}}}", "{}", "{\"properties\":{\"n\":7}}",
	  "{\"properties\":{\"n\":-1}}", false },
	{ "{\"properties\":{\"n\":{\"$lte\":8}}}", "{\"properties\":{\"n\":\"8\"}}",
	  "{\"properties\":{\"n\":8}}", "{\"properties\":{\"n\":0}}", false },
	{ "{\"properties\":{\"s\":{\"$in\":[\"a\",\"b\"]}}}", "{\"properties\":{\"s\":\"c\"}}",
	  "{\"properties\":{\"s\":\"a\"}}", "{\"properties\":{\"s\":\"b\"}}", false },
	{ "{\"properties\":{\"n\":{\"$in\":[1,\"x\"]}}}", "{\"properties\":{\"n\":2}}",
	  "{\"properties\":{\"n\":1}}", "{\"properties\":{\"n\":\"x\"}}", false },
	{ "{\"properties\":{\"n\":{\"$in\":[1,null]}}}", "{\"properties\":{\"n\":2}}", "{}",
	  "{\"properties\":{\"n\":1}}", false },
	{ "{\"properties\":{\"s\":{\"$nin\":[\"a\",\"b\"]}}}", "{\"properties\":{\"s\":\"a\"}}",
	  "{\"properties\":{\"s\":\"c\"}}", "{}", false },
	{ "{\"properties\":{\"k\":{\"$exists\":true}}}", "{}", "{\"properties\":{\"k\":1}}",
	  "{\"properties\":{\"k\":\"v\"}}", false },
	{ "{\"properties\":{\"k\":{\"$exists\":false}}}", "{\"properties\":{\"k\":1}}", "{}",
	  "{\"properties\":{\"j\":1}}", true },
	{ "{\"properties\":{\"v\":[1,2]}}", "{\"properties\":{\"v\":[2,1]}}",
	  "{\"properties\":{\"v\":[1,2]}}", "{\"properties\":{\"v\":[1.0,2]}}", true },
	{ "{\"tags\":[\"gpu\",\"tpu\"]}", "{\"tags\":[\"cpu\"]}", "{\"tags\":[\"gpu\"]}",
	  "{\"tags\":[\"tpu\"]}", false },
	{ "{\"tags\":{\"$all\":[\"gpu\",\"big\"]}}", "{\"tags\":[\"gpu\"]}",
	  "{\"tags\":[\"gpu\",\"big\"]}", "{\"tags\":[\"big\",\"gpu\",\"x\"]}", false },
	{ "{\"tags\":{\"$any\":[\"gpu\"]}}", "{\"tags\":[]}", "{\"tags\":[\"gpu\"]}",
	  "{\"tags\":[\"gpu\",\"x\"]}", false },
	{ "{\"role\":\"worker\",\"properties\":{\"n\":{\"$gte\":1}}}", "{\"properties\":{\"n\":0}}",
	  "{\"properties\":{\"n\":1}}", "{\"properties\":{\"n\":2}}", false },
	{ "{}", NULL, "{}", "{\"properties\":{\"x\":1}}", true },
};

static void test_operators(void)
{
	struct registry *reg = registry_new();
	struct room *room = registry_ensure_room(reg, "r");
	struct peer *watcher = registry_add(reg, room, "watcher", "client", meta_of("{}"), NULL, NULL, 0);

	for (size_t i = 0; i < G_N_ELEMENTS(op_cases); i++) {
		const struct op_case *c = &op_cases[i];
		struct watch *w = watch_add(room, NULL, watcher, "w1", filter_of(c->filter));
		struct meta *in = meta_of(c->in), *in2 = meta_of(c->in2);
		struct meta *out = c->out ? meta_of(c->out) : NULL;
		struct peer *p = registry_add(reg, room, "p", "worker", meta_of(c->out ? c->out : c->in), NULL,
					      NULL, 0);
		g_test_message("%s", c->filter);

		g_assert_true(offered(p, in, w)); /* joining with IN */
		if (out) { /* enter */
			g_assert_false(in_set(w, p, out));
			g_assert_true(reads(p, out, in, w));
			g_assert_true(in_set(w, p, in));
		}
		/* stay, through a change it reads (or not) */
		g_assert_true(reads(p, in, in2, w) == !c->in2_unread);
		g_assert_true(in_set(w, p, in2));
		if (out) { /* leave */
			g_assert_true(reads(p, in2, out, w));
			g_assert_false(in_set(w, p, out));
		}
		/* a change of something it does not read: not even looked at */
		json_object *u = json_tokener_parse("{\"properties\":{\"unrelated\":1},\"name\":\"n\"}");
		struct meta *other = NULL;
		const char *why;
		g_assert_cmpint(meta_merge(in, u, 1 << 20, &other, &why), ==, 0);
		g_assert_false(reads(p, in, other, w));
		json_object_put(u);
		meta_free(other);
		/* its set, filled from the room */
		g_assert_cmpint(watch_fill(w), ==, 0);
		g_assert_true(watch_holds(w, p) == (c->out == NULL));
		g_assert_false(watch_holds(w, watcher));

		watch_remove(w); /* lets go of its members */
		g_assert_null(p->watches_in);
		registry_remove(reg, p);
		g_assert_null(room->watches);
		meta_free(in);
		meta_free(in2);
		meta_free(out);
	}
	registry_remove(reg, watcher);
	registry_free(reg);
}

/* The index answers by what a peer has: a watch that names what this
 * peer lacks is not offered at all; one with no anchor always is. */
static void test_anchors(void)
{
	struct registry *reg = registry_new();
	struct room *room = registry_ensure_room(reg, "r");
	struct peer *watcher = registry_add(reg, room, "watcher", "client", meta_of("{}"), NULL, NULL, 0);
	struct peer *p = registry_add(reg, room, "p", "client",
				      meta_of("{\"tags\":[\"cpu\"],\"properties\":{\"status\":\"busy\",\"gb\":4}}"), NULL,
				      NULL, 0);
	struct watch *by_value = watch_add(room, NULL, watcher, "a", filter_of("{\"properties\":{\"status\":\"available\"}}"));
	struct watch *by_role = watch_add(room, NULL, watcher, "b", filter_of("{\"role\":\"worker\"}"));
	struct watch *by_tag = watch_add(room, NULL, watcher, "c", filter_of("{\"tags\":[\"gpu\"]}"));
	struct watch *by_key = watch_add(room, NULL, watcher, "d", filter_of("{\"properties\":{\"mem\":{\"$gt\":1}}}"));
	struct watch *any = watch_add(room, NULL, watcher, "e", filter_of("{\"properties\":{\"x\":{\"$ne\":1}}}"));
	struct watch *presence = watch_add(room, NULL, watcher, NULL, NULL);
	struct watch *dup = watch_add(room, NULL, watcher, "f",
				      filter_of("{\"properties\":{\"status\":{\"$in\":[\"busy\",\"busy\"]}}}"));
	/* filed under its fewest values: the one status this busy peer lacks,
	 * not the models it has */
	struct watch *fewest = watch_add(room, NULL, watcher, "g",
					 filter_of("{\"properties\":{\"model\":{\"$in\":[\"a100\",\"h100\"]},"
						   "\"status\":\"available\"}}"));
	g_autoptr(GPtrArray) out = g_ptr_array_new();

	peer_set_meta(p, meta_of("{\"tags\":[\"cpu\"],\"properties\":{\"status\":\"busy\",\"gb\":4,\"model\":\"a100\"}}"));
	watch_candidates(p, out);
	g_assert_cmpuint(out->len, ==, 3);
	g_assert_false(has(out, fewest));
	watch_remove(fewest);
	g_assert_true(has(out, any));
	g_assert_true(has(out, presence));
	g_assert_true(has(out, dup)); /* once, though filed twice over */
	g_assert_false(has(out, by_value));
	g_assert_false(has(out, by_role));
	g_assert_false(has(out, by_tag));
	g_assert_false(has(out, by_key));
	g_assert_cmpuint(watch_room_count(room), ==, 7); /* presence counts: it costs events too */

	/* 9 roles x 8 properties read: filed for updates by what it reads
	 * alone, and still offered every change of its answer */
	struct watch *wide = watch_add(room, NULL, watcher, "h",
				       filter_of("{\"role\":[\"r1\",\"r2\",\"r3\",\"r4\",\"r5\",\"r6\",\"r7\",\"r8\",\"client\"],"
						 "\"properties\":{\"k1\":{\"$ne\":1},\"k2\":{\"$ne\":1},\"k3\":{\"$ne\":1},"
						 "\"k4\":{\"$ne\":1},\"k5\":{\"$ne\":1},\"k6\":{\"$ne\":1},\"k7\":{\"$ne\":1},"
						 "\"k8\":{\"$ne\":1}}}"));
	struct meta *k8 = meta_of("{\"properties\":{\"k8\":1}}");
	g_assert_true(in_set(wide, p, p->meta));
	g_assert_false(in_set(wide, p, k8));
	g_assert_true(reads(p, p->meta, k8, wide));
	g_assert_true(reads(p, k8, p->meta, wide));
	g_assert_cmpuint(wide->filed->len, ==, 9 + 8); /* not 9 x 8 */
	meta_free(k8);
	watch_remove(wide);
	watch_remove(by_value);
	watch_remove(by_role);
	watch_remove(by_tag);
	watch_remove(by_key);
	watch_remove(any);
	watch_remove(presence);
	g_assert_nonnull(room->watches);
	watch_remove(dup);
	g_assert_null(room->watches);
	registry_remove(reg, p);
	registry_remove(reg, watcher);
	registry_free(reg);
}

/* Random filters and metadata from a small vocabulary, so that they meet
 * often: whenever a filter matches, the index offers its watch. */
static const char *const keys[] = { "a", "b", "c" };
static const char *const values[] = { "\"x\"", "\"y\"", "1", "2.5", "true", "false", "null", "[1]" };
static const char *const ops[] = { "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists" };
static const char *const roles[] = { "worker", "client" };
static const char *const tags[] = { "gpu", "cpu", "big" };

static const char *pick(const char *const *v, size_t n)
{
	return v[g_test_rand_int_range(0, (gint32)n)];
}
#define PICK(v) pick(v, G_N_ELEMENTS(v))

static char *random_filter(void)
{
	GString *s = g_string_new("{");
	const char *sep = "";

	if (g_test_rand_bit()) {
		g_string_append_printf(s, "\"role\":\"%s\"", PICK(roles));
		sep = ",";
	}
	if (g_test_rand_int_range(0, 3) == 0) {
		static const char *const forms[][2] = { { "[", "]" }, { "{\"$all\":[", "]}" }, { "{\"$any\":[", "]}" } };
		int k = g_test_rand_int_range(0, G_N_ELEMENTS(forms));
		g_string_append_printf(s, "%s\"tags\":%s\"%s\",\"%s\"%s", sep, forms[k][0], PICK(tags), PICK(tags),
				       forms[k][1]);
		sep = ",";
	}
	int n = g_test_rand_int_range(0, 3);
	if (n) {
		g_string_append_printf(s, "%s\"properties\":{", sep);
		for (int i = 0; i < n; i++) {
			const char *op = PICK(ops);
			g_string_append_printf(s, "%s\"%s\":{\"%s\":", i ? "," : "", keys[i], op);
			if (!strcmp(op, "$in") || !strcmp(op, "$nin"))
				g_string_append_printf(s, "[%s,%s]}", PICK(values), PICK(values));
			else if (!strcmp(op, "$exists"))
				g_string_append_printf(s, "%s}", g_test_rand_bit() ? "true" : "false");
			else
				g_string_append_printf(s, "%s}", PICK(values));
		}
		g_string_append_c(s, '}');
	}
	g_string_append_c(s, '}');
	return g_string_free(s, FALSE);
}

static char *random_meta(void)
{
	GString *s = g_string_new("{\"tags\":[");
	for (int i = 0, n = g_test_rand_int_range(0, 3); i < n; i++)
		g_string_append_printf(s, "%s\"%s\"", i ? "," : "", PICK(tags));
	g_string_append(s, "],\"properties\":{");
	const char *sep = "";
	for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
		if (g_test_rand_bit()) {
			g_string_append_printf(s, "%s\"%s\":%s", sep, keys[i], PICK(values));
			sep = ",";
		}
	g_string_append(s, "}}");
	return g_string_free(s, FALSE);
}

static void test_never_hides(void)
{
	struct registry *reg = registry_new();
	struct room *room = registry_ensure_room(reg, "r");
	struct peer *watcher = registry_add(reg, room, "watcher", "client", meta_of("{}"), NULL, NULL, 0);
	unsigned matched = 0, skipped = 0, tried = 0, changed = 0, unread = 0;

	for (int i = 0; i < 400; i++) {
		g_autofree char *ftext = random_filter();
		struct watch *w = watch_add(room, NULL, watcher, "w", filter_of(ftext));
		for (int j = 0; j < 40; j++) {
			g_autofree char *mtext = random_meta(), *ntext = random_meta();
			struct meta *next = meta_of(ntext);
			struct peer *p = registry_add(reg, room, "p", PICK(roles), meta_of(mtext), NULL, NULL, 0);
			bool match = in_set(w, p, p->meta), offer = offered(p, p->meta, w);
			if (match && !offer)
				g_error("%s matches %s (%s) but the index hides it", ftext, mtext, p->role);
			/* an update that changes the answer is read */
			bool after = in_set(w, p, next), read = reads(p, p->meta, next, w);
			if (match != after && !read)
				g_error("%s: %s -> %s changes the answer unread", ftext, mtext, ntext);
			matched += match;
			skipped += !offer;
			changed += match != after;
			unread += !read;
			tried++;
			meta_free(next);
			registry_remove(reg, p);
		}
		watch_remove(w);
	}
	g_test_message("%u of %u joins matched, the index skipped %u; %u updates changed the answer, "
		       "%u were not read", matched, tried, skipped, changed, unread);
	/* the search means something only if each happens often */
	g_assert_cmpuint(matched, >, tried / 20);
	g_assert_cmpuint(skipped, >, tried / 5);
	g_assert_cmpuint(changed, >, tried / 20);
	g_assert_cmpuint(unread, >, tried / 20);
	registry_remove(reg, watcher);
	registry_free(reg);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/watch/operators", test_operators);
	g_test_add_func("/watch/anchors", test_anchors);
	g_test_add_func("/watch/never-hides-a-match", test_never_hides);
	return g_test_run();
}
