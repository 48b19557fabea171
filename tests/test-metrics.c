/* Unit tests: metric arithmetic, health, role folding, rendering. */
#include "util/metrics.h"
#include "core/registry.h"

#include <glib.h>
#include <math.h>
#include <string.h>

static void test_health(void)
{
	gint64 now_ms = 1000000;

	metrics_set(draining, false);
	metrics_set(heartbeat_ms, now_ms - 100);
	g_assert_cmpint(metrics_health(now_ms), ==, HEALTH_OK);
	metrics_set(heartbeat_ms, now_ms - METRICS_STALL_MS);
	g_assert_cmpint(metrics_health(now_ms), ==, HEALTH_OK);
	metrics_set(heartbeat_ms, now_ms - METRICS_STALL_MS - 1); /* the loop stalled */
	g_assert_cmpint(metrics_health(now_ms), ==, HEALTH_UNHEALTHY);
	metrics_set(draining, true);
	g_assert_cmpint(metrics_health(now_ms), ==, HEALTH_DRAINING);
	metrics_set(draining, false);
}

static double value(const char *text, const char *series)
{
	g_autofree char *needle = g_strdup_printf("\n%s ", series);
	const char *at = strstr(text, needle);
	return at ? g_ascii_strtod(at + strlen(needle), NULL) : NAN;
}

static void test_histogram(void)
{
	struct metrics_histogram *h = &metrics.route_latency;
	memset(h, 0, sizeof *h);
	metrics_observe(h, 3000);       /* 3 us: first bucket */
	metrics_observe(h, 5000);       /* exactly on the 5 us bound */
	metrics_observe(h, 40000);      /* 40 us */
	metrics_observe(h, 2000000000); /* 2 s: +Inf only */
	g_autoptr(GString) s = g_string_new(NULL);
	metrics_render_prometheus(s, NULL);
	g_assert_cmpfloat(value(s->str, "rtcsignald_route_latency_seconds_bucket{le=\"5e-06\"}"), ==, 2);
	g_assert_cmpfloat(value(s->str, "rtcsignald_route_latency_seconds_bucket{le=\"5e-05\"}"), ==, 3);
	g_assert_cmpfloat(value(s->str, "rtcsignald_route_latency_seconds_bucket{le=\"1\"}"), ==, 3);
	g_assert_cmpfloat(value(s->str, "rtcsignald_route_latency_seconds_bucket{le=\"+Inf\"}"), ==, 4);
	g_assert_cmpfloat(value(s->str, "rtcsignald_route_latency_seconds_count"), ==, 4);
	g_assert_cmpfloat(fabs(value(s->str, "rtcsignald_route_latency_seconds_sum") - 2.000048), <, 1e-9);
}

static struct meta *empty_meta(void)
{
	struct meta *m = NULL;
	const char *why;
	g_assert_cmpint(meta_new(NULL, 1024, &m, &why), ==, 0);
	return m;
}

static void test_role_folding(void)
{
	struct registry *reg = registry_new();
	struct room *room = registry_ensure_room(reg, "r");
	struct metrics_roles roles = { 0 };
	/* 5 workers, 3 clients, 2 "quo\"te", 1 each of x, y; and a role that is
	 * literally "other" */
	const char *plan[][2] = { { "worker", "5" }, { "client", "3" }, { "quo\"te", "2" },
				  { "x", "1" }, { "y", "1" }, { "other", "1" } };
	int n = 0;
	for (size_t i = 0; i < G_N_ELEMENTS(plan); i++)
		for (int k = 0; k < atoi(plan[i][1]); k++) {
			g_autofree char *id = g_strdup_printf("p%d", n++);
			registry_add(reg, room, id, plan[i][0], empty_meta(), NULL, NULL, 0);
		}
	registry_role_counts(reg, 3, metrics_roles_add, &roles);
	g_assert_cmpuint(roles.n, ==, 4);
	g_assert_cmpstr(roles.items[0].role, ==, "worker");
	g_assert_cmpint(roles.items[0].peers, ==, 5);
	g_assert_cmpstr(roles.items[1].role, ==, "client");
	g_assert_cmpstr(roles.items[2].role, ==, "quo\"te");
	g_assert_cmpstr(roles.items[3].role, ==, "other");
	g_assert_cmpint(roles.items[3].peers, ==, 3); /* x, y and "other" */

	g_autoptr(GString) s = g_string_new(NULL);
	metrics_render_prometheus(s, &roles);
	g_assert_cmpfloat(value(s->str, "rtcsignald_peers{role=\"quo\\\"te\"}"), ==, 2);
	g_string_truncate(s, 0);
	metrics_render_json(s, &roles);
	json_object *o = json_tokener_parse(s->str);
	g_assert_nonnull(o);
	json_object *by_role = json_object_object_get(o, "peers_by_role");
	g_assert_cmpint(json_object_get_int(json_object_object_get(by_role, "worker")), ==, 5);
	g_assert_cmpint(json_object_get_int(json_object_object_get(by_role, "other")), ==, 3);
	json_object_put(o);
	metrics_roles_clear(&roles);
	registry_free(reg);
}

static void test_every_family_described(void)
{
	g_autoptr(GString) s = g_string_new(NULL);
	metrics_render_prometheus(s, NULL);
	g_auto(GStrv) lines = g_strsplit(s->str, "\n", -1);
	g_autoptr(GHashTable) typed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	for (char **l = lines; *l; l++) {
		if (g_str_has_prefix(*l, "# TYPE ")) {
			g_auto(GStrv) f = g_strsplit(*l + 7, " ", 2);
			g_assert_false(g_hash_table_contains(typed, f[0])); /* one block per family */
			g_hash_table_add(typed, g_strdup(f[0]));
		} else if (**l && **l != '#') {
			g_autofree char *name = g_strndup(*l, strcspn(*l, "{ "));
			const char *suffixes[] = { "_bucket", "_sum", "_count" };
			bool ok = g_hash_table_contains(typed, name);
			for (size_t i = 0; !ok && i < G_N_ELEMENTS(suffixes); i++) {
				if (g_str_has_suffix(name, suffixes[i])) {
					name[strlen(name) - strlen(suffixes[i])] = '\0';
					ok = g_hash_table_contains(typed, name);
				}
			}
			if (!ok)
				g_error("sample without a TYPE line: %s", *l);
		}
	}
	g_assert_true(g_str_has_suffix(s->str, "\n"));
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/metrics/health", test_health);
	g_test_add_func("/metrics/histogram", test_histogram);
	g_test_add_func("/metrics/role-folding", test_role_folding);
	g_test_add_func("/metrics/every-family-described", test_every_family_described);
	return g_test_run();
}
