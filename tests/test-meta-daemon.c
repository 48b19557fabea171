/* Integration tests: hostile metadata and discovery filters against the
 * real daemon (issue 12). */
#include "testd.h"

#include <string.h>

static const char *str(json_object *o, const char *key)
{
	json_object *v;
	return json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : NULL;
}

/* The metadata peer_list shows for PEER, as text. */
static char *listed_metadata(json_object *list, const char *peer)
{
	json_object *peers = json_object_object_get(list, "peers");
	for (size_t i = 0; i < json_object_array_length(peers); i++) {
		json_object *p = json_object_array_get_idx(peers, i);
		if (g_strcmp0(str(p, "peer_id"), peer) == 0)
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

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/meta-daemon/null-metadata", test_null_metadata);
	return g_test_run();
}
