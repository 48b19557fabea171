/* Integration tests: hostile metadata and discovery filters against the
 * real daemon (issue 12, findings 1, 3 and 4). */
#include "testd.h"

#include <math.h>
#include <string.h>

/* The metadata peer_list shows for PEER, as text. */
static char *listed_metadata(json_object *list, const char *peer)
{
	json_object *peers = json_object_object_get(list, "peers");
	for (size_t i = 0; i < json_object_array_length(peers); i++) {
		json_object *p = json_object_array_get_idx(peers, i);
		if (g_strcmp0(testd_str(p, "peer_id"), peer) == 0)
			return g_strdup(json_object_to_json_string_ext(json_object_object_get(p, "metadata"),
								       JSON_C_TO_STRING_PLAIN));
	}
	return NULL;
}

static char *discover_metadata(struct wsc *asker, const char *peer)
{
	wsc_send_text(asker, "{\"type\":\"discover_peers\"}");
	json_object *list = wsc_expect(asker, "peer_list");
	char *md = listed_metadata(list, peer);
	json_object_put(list);
	return md;
}

/* JSON null where public_view() expected an object crashed the daemon. */
static void test_null_metadata(void)
{
	struct testd *d = testd_start(NULL, NULL);
	struct wsc *asker = testd_register(d, "nulls", "asker", NULL);
	struct wsc *a = testd_register(d, "nulls", "a", ",\"metadata\":{\"_a\":1,\"b\":null}");
	struct wsc *b = testd_register(d, "nulls", "b", ",\"metadata\":{\"_a\":1,\"properties\":null}");
	g_autofree char *md_a = discover_metadata(asker, "a");
	g_assert_cmpstr(md_a, ==, "{\"b\":null}");
	g_autofree char *md_b = discover_metadata(asker, "b");
	g_assert_cmpstr(md_b, ==, "{\"properties\":null}");

	/* A private key, then an update naming a key with null. */
	wsc_send_text(a, "{\"type\":\"update_metadata\",\"metadata\":{\"status\":null}}");
	json_object *o = wsc_expect(a, "metadata_updated");
	g_assert_nonnull(strstr(json_object_to_json_string(o), "\"_a\""));
	json_object_put(o);
	g_autofree char *md_a2 = discover_metadata(asker, "a");
	g_assert_cmpstr(md_a2, ==, "{\"b\":null,\"status\":null}");

	/* The daemon is alive and serves everyone. */
	wsc_sendf(b, "{\"type\":\"peer_message\",\"to_peer_id\":\"asker\",\"payload\":7}");
	o = wsc_expect(asker, "peer_message");
	g_assert_cmpint(json_object_get_int(json_object_object_get(o, "payload")), ==, 7);
	json_object_put(o);
	wsc_free(a);
	wsc_free(b);
	wsc_free(asker);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

#define ARRAY_LEN 500

/* [0,0,...,LAST] of ARRAY_LEN numbers. */
static void append_zeros(GString *s, int last)
{
	g_string_append_c(s, '[');
	for (int i = 0; i < ARRAY_LEN - 1; i++)
		g_string_append(s, "0,");
	g_string_append_printf(s, "%d]", last);
}

/* Discovery's work is counted: composite values compare by hash (the
 * attack shape of finding 3 costs little), and a query over the budget
 * ends with INVALID_FILTER, counted, instead of stalling the loop. */
static void test_filter_work(void)
{
	/* max_json_values raised: the filter must bound its own work, whatever
	 * the parse let in. */
	struct testd *d = testd_start("[limits]\nmax_filter_work = 100000\nmax_json_values = 1000000\n",
				      NULL);
	enum { PEERS = 20 };
	struct wsc *peers[PEERS];
	GString *s = g_string_new(NULL);

	for (int i = 0; i < PEERS; i++) {
		char id[16];
		g_snprintf(id, sizeof id, "p%d", i);
		g_string_assign(s, ",\"metadata\":{\"tags\":[\"x\",\"y\"],\"properties\":{\"a\":");
		append_zeros(s, 0);
		g_string_append(s, "}}");
		peers[i] = testd_register(d, "work", id, s->str);
	}
	struct wsc *asker = testd_register(d, "work", "asker", NULL);

	/* 100 arrays that differ from every peer's only in their last value:
	 * cheap now, each peer matches $nin. */
	g_string_assign(s, "{\"type\":\"discover_peers\",\"filters\":{\"properties\":{\"a\":{\"$nin\":[");
	for (int k = 0; k < 100; k++) {
		if (k)
			g_string_append_c(s, ',');
		append_zeros(s, k + 1);
	}
	g_string_append(s, "]}}}}");
	gint64 t0 = g_get_monotonic_time();
	wsc_send_text(asker, s->str);
	json_object *o = wsc_expect(asker, "peer_list");
	g_test_message("near-identical $nin over %d peers answered in %.1f ms", PEERS,
		       (double)(g_get_monotonic_time() - t0) / 1000);
	g_assert_cmpint(json_object_get_int(json_object_object_get(o, "count")), ==, PEERS);
	json_object_put(o);

	/* An equal array still matches. */
	g_string_assign(s, "{\"type\":\"discover_peers\",\"filters\":{\"properties\":{\"a\":");
	append_zeros(s, 0);
	g_string_append(s, "}}}");
	wsc_send_text(asker, s->str);
	o = wsc_expect(asker, "peer_list");
	g_assert_cmpint(json_object_get_int(json_object_object_get(o, "count")), ==, PEERS);
	json_object_put(o);

	/* 10,000 tags, none held, against every peer: over 100,000 units. */
	g_string_assign(s, "{\"type\":\"discover_peers\",\"filters\":{\"tags\":{\"$any\":[\"z\"");
	for (int k = 0; k < 10000; k++)
		g_string_append_printf(s, ",\"z%d\"", k);
	g_string_append(s, "]}}}");
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_limit_hits_total{limit=\"max_filter_work\"}"), ==, 0);
	wsc_send_text(asker, s->str);
	o = wsc_expect_error(asker, "INVALID_FILTER");
	g_assert_nonnull(strstr(testd_str(o, "message"), "max_filter_work"));
	json_object_put(o);
	g_assert_cmpfloat(testd_metric(d, "rtcsignald_limit_hits_total{limit=\"max_filter_work\"}"), ==, 1);

	/* The next query is served. */
	wsc_send_text(asker, "{\"type\":\"discover_peers\",\"filters\":{\"tags\":[\"y\"]}}");
	o = wsc_expect(asker, "peer_list");
	g_assert_cmpint(json_object_get_int(json_object_object_get(o, "count")), ==, PEERS);
	json_object_put(o);

	for (int i = 0; i < PEERS; i++)
		wsc_free(peers[i]);
	wsc_free(asker);
	g_string_free(s, TRUE);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

/* What a peer's metadata keeps is proportional to its size: 16 KiB of
 * [{},{},...] kept about 4 MB as json-c trees. */
static void test_kept_memory(void)
{
#ifdef __SANITIZE_ADDRESS__
	/* ASan's quarantine would hold every freed request tree. */
	g_autofree char *asan = g_strdup_printf("ASAN_OPTIONS=%s:quarantine_size_mb=0",
						g_getenv("ASAN_OPTIONS") ? g_getenv("ASAN_OPTIONS") : "");
	const char *env[] = { asan, NULL };
	const struct testd_opts opts = { .env = env };
#else
	const struct testd_opts opts = { 0 };
#endif
	struct testd *d = testd_start_opts(&opts);
	if (!testd_rss_meaningful(d)) {
		g_test_skip("the daemon's RSS is its sanitizer's or valgrind's here");
		g_assert_cmpint(testd_stop(d), ==, 0);
		testd_free(d);
		return;
	}
	enum { WARM = 4, PEERS = 40 };
	struct wsc *peers[WARM + PEERS];
	GString *md = g_string_new(",\"metadata\":{\"properties\":{\"a\":[");
	while (md->len < 16000)
		g_string_append(md, "{},");
	g_string_append(md, "{}]}}");
	long before = 0;

	/* Own rooms, so no registered_auth lists the others' metadata. */
	for (int i = 0; i < WARM + PEERS; i++) {
		char id[16];
		if (i == WARM)
			before = testd_rss_kib(d);
		g_snprintf(id, sizeof id, "m%d", i);
		peers[i] = testd_register(d, id, id, md->str);
	}
	long after = testd_rss_kib(d);
	double per_peer = (double)(after - before) / PEERS;
	g_test_message("RSS %ld -> %ld KiB: %.1f KiB per peer of %zu bytes of metadata", before, after,
		       per_peer, md->len);
	g_assert_cmpfloat(per_peer, <, 4 * 16);

	for (int i = 0; i < WARM + PEERS; i++)
		wsc_free(peers[i]);
	g_string_free(md, TRUE);
	g_assert_cmpint(testd_stop(d), ==, 0);
	testd_free(d);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/meta-daemon/null-metadata", test_null_metadata);
	g_test_add_func("/meta-daemon/filter-work", test_filter_work);
	g_test_add_func("/meta-daemon/kept-memory", test_kept_memory);
	return g_test_run();
}
