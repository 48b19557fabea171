/* Unit tests of pubkeys: key validation, the per-account bound, which
 * accounts a room trusts, the listing's bound. */
#include "auth/pubkeys.h"

#include <errno.h>
#include <string.h>

static char *text_of(unsigned char seed)
{
	unsigned char raw[PUBKEYS_KEY_BYTES];
	memset(raw, seed, sizeof raw);
	char *b = g_base64_encode(raw, sizeof raw);
	b[PUBKEYS_KEY_TEXT] = '\0';
	g_strdelimit(b, "+", '-');
	g_strdelimit(b, "/", '_');
	return b;
}

static void test_decode(void)
{
	uint8_t raw[PUBKEYS_KEY_BYTES];
	g_autofree char *k = text_of(0xfb); /* '-' and '_' in the text */

	g_assert_cmpint(pubkeys_decode(k, raw), ==, 0);
	g_assert_cmpint(raw[0], ==, 0xfb);
	g_assert_cmpint(pubkeys_decode(NULL, NULL), ==, -EINVAL);
	g_assert_cmpint(pubkeys_decode("", NULL), ==, -EINVAL);
	g_autofree char *padded = g_strconcat(k, "=", NULL);
	g_assert_cmpint(pubkeys_decode(padded, NULL), ==, -EINVAL);
	g_autofree char *shorter = g_strndup(k, PUBKEYS_KEY_TEXT - 1);
	g_assert_cmpint(pubkeys_decode(shorter, NULL), ==, -EINVAL);
	g_autofree char *std = g_strdup(k); /* the standard alphabet */
	g_strdelimit(std, "-", '+');
	g_assert_cmpint(pubkeys_decode(std, NULL), ==, -EINVAL);
	/* Not canonical: the last character's unused bits set. */
	g_autofree char *odd = text_of(0);
	odd[PUBKEYS_KEY_TEXT - 1] = 'B';
	g_assert_cmpint(pubkeys_decode(odd, NULL), ==, -EINVAL);
	g_autofree char *space = g_strdup(k);
	space[5] = ' ';
	g_assert_cmpint(pubkeys_decode(space, NULL), ==, -EINVAL);
}

static void test_parse(void)
{
	g_autofree char *k = text_of(7);
	g_autofree char *good = g_strdup_printf("{\"public_key\":\"%s\",\"device_name\":\"cli\"}", k);
	g_autofree char *nodev = g_strdup_printf("{\"public_key\":\"%s\"}", k);
	g_autofree char *badev = g_strdup_printf("{\"public_key\":\"%s\",\"device_name\":5}", k);
	g_autofree char *trail = g_strdup_printf("{\"public_key\":\"%s\"}x", k);
	char *key, *dev;
	const char *why;

	g_assert_cmpint(pubkeys_parse_request(good, strlen(good), &key, &dev, &why), ==, 0);
	g_assert_cmpstr(key, ==, k);
	g_assert_cmpstr(dev, ==, "cli");
	g_free(key);
	g_free(dev);
	g_assert_cmpint(pubkeys_parse_request(nodev, strlen(nodev), &key, &dev, &why), ==, 0);
	g_assert_cmpstr(dev, ==, "");
	g_free(key);
	g_free(dev);
	g_autofree char *spaced = g_strdup_printf(" {\"public_key\":\"%s\"}\r\n", k);
	g_assert_cmpint(pubkeys_parse_request(spaced, strlen(spaced), &key, &dev, &why), ==, 0);
	g_free(key);
	g_free(dev);
	g_autofree char *nul = g_strdup_printf("{\"public_key\":\"%s\\u0000x\"}", k);
	g_autofree char *nuldev = g_strdup_printf("{\"public_key\":\"%s\",\"device_name\":\"a\\u0000b\"}", k);
	g_autofree char *longdev = g_strdup_printf("{\"public_key\":\"%s\",\"device_name\":\"%0129d\"}", k, 0);
	g_autofree char *nan = g_strdup_printf("{\"public_key\":\"%s\",\"x\":NaN}", k);
	const char *bad[] = { badev, trail, nul, nuldev, longdev, nan, "", "[]", "{\"public_key\":1}",
			      "{\"public_key\":\"AAAA\"}" };
	for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
		g_assert_cmpint(pubkeys_parse_request(bad[i], strlen(bad[i]), &key, &dev, &why), ==, -EINVAL);
		g_assert_null(key);
	}
}

static bool bob_member(void *data, const char *room_id, const char *account)
{
	(void)data;
	return strcmp(room_id, "r1") == 0 && strcmp(account, "jwt:lab:bob") == 0;
}

static void test_add_and_list(void)
{
	struct pubkeys *pk = pubkeys_new();
	g_autofree char *k1 = text_of(1), *k2 = text_of(2), *k3 = text_of(3);
	const struct store_pubkey *rec = NULL;
	struct store_room closed = { .id = "r1", .created_by = "jwt:lab:ada" };
	struct store_room open = { .id = "r2", .created_by = "jwt:lab:ada", .open_to_issuer = true };
	struct store_room admin_open = { .id = "r3", .created_by = "admin", .open_to_issuer = true };
	bool cut;

	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:bob", NULL, k2, "gui", 2, 1, &rec), ==, 0);
	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:ada", "Ada", k1, "cli", 2, 2, &rec), ==, 0);
	g_assert_cmpstr(rec->public_key, ==, k1);
	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:ada", "Ada", k1, "cli", 2, 3, &rec), ==, PUBKEYS_UNCHANGED);
	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:ada", "Ada", k1, "laptop", 2, 3, &rec), ==, PUBKEYS_UPDATED);
	g_assert_cmpstr(rec->device_name, ==, "laptop");
	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:ada", "Ada", k2, "cli", 2, 4, &rec), ==, 0);
	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:ada", "Ada", k3, "cli", 2, 5, &rec), ==, -EDQUOT);
	g_assert_cmpint(pubkeys_add(pk, "jwt:other:eve", NULL, k3, "cli", 0, 6, &rec), ==, 0);
	/* An addition taken back (not stored) frees its place. */
	g_assert_cmpint(pubkeys_add(pk, "jwt:other:eve", NULL, k1, "cli", 2, 7, &rec), ==, PUBKEYS_ADDED);
	pubkeys_remove(pk, "jwt:other:eve", k1);
	g_assert_cmpuint(pubkeys_count(pk, "jwt:other:eve"), ==, 1);
	g_assert_cmpint(pubkeys_add(pk, "jwt:other:eve", NULL, k2, "cli", 2, 8, &rec), ==, PUBKEYS_ADDED);
	pubkeys_remove(pk, "jwt:other:eve", k2);
	g_assert_cmpuint(pubkeys_count(pk, "jwt:lab:ada"), ==, 2);

	g_assert_true(pubkeys_account_may_use(&closed, "jwt:lab:ada", NULL));
	g_assert_false(pubkeys_account_may_use(&closed, "jwt:lab:bob", NULL));
	g_assert_true(pubkeys_account_may_use(&open, "jwt:lab:bob", NULL));
	g_assert_false(pubkeys_account_may_use(&open, "jwt:other:eve", NULL));
	g_assert_false(pubkeys_account_may_use(&open, "key:abc", NULL));
	g_assert_true(pubkeys_account_may_use(&admin_open, "jwt:other:eve", NULL));
	g_assert_false(pubkeys_account_may_use(&open, "jwt:labx:ada", NULL));
	/* A member of a closed room may use it, and is listed. */
	const struct pubkeys_members bob_in_r1 = { .is_member = bob_member };
	g_assert_true(pubkeys_account_may_use(&closed, "jwt:lab:bob", &bob_in_r1));
	g_assert_false(pubkeys_account_may_use(&closed, "jwt:other:eve", &bob_in_r1));
	g_autofree char *mem = pubkeys_authorized_json(pk, &closed, &bob_in_r1, 0, &cut);
	g_assert_nonnull(strstr(mem, "\"bob\""));
	g_assert_null(strstr(mem, k3));

	g_autofree char *c = pubkeys_authorized_json(pk, &closed, NULL, 0, &cut);
	g_autofree char *want_c = g_strdup_printf("{\"authorized_keys\":[{\"public_key\":\"%s\",\"username\":\"Ada\","
						  "\"device_name\":\"laptop\"},{\"public_key\":\"%s\",\"username\":\"Ada\","
						  "\"device_name\":\"cli\"}]}", k1, k2);
	g_assert_cmpstr(c, ==, want_c);
	g_assert_false(cut);
	/* Open: the creator's first although bob published earlier; the
	 * bound cuts the others. */
	g_autofree char *all = pubkeys_authorized_json(pk, &open, NULL, 3, &cut);
	g_assert_false(cut);
	g_assert_nonnull(strstr(all, "\"bob\""));
	g_assert_true(strstr(all, k1) < strstr(all, "\"bob\""));
	g_assert_null(strstr(all, k3));
	g_autofree char *o = pubkeys_authorized_json(pk, &open, NULL, 2, &cut);
	g_assert_true(cut);
	g_assert_null(strstr(o, "\"bob\""));
	g_autofree char *a = pubkeys_authorized_json(pk, &admin_open, NULL, 0, &cut);
	g_assert_nonnull(strstr(a, "\"eve\""));
	pubkeys_free(pk);
}

/* Account keys: a publication names no user (a known key keeps the name
 * its JWT gave); a key may list a room as its account may use it. */
static void test_account_keys(void)
{
	struct pubkeys *pk = pubkeys_new();
	g_autofree char *k1 = text_of(1), *k2 = text_of(2);
	const struct store_pubkey *rec = NULL;
	struct store_room closed = { .id = "r1", .created_by = "jwt:lab:ada" };
	struct store_room other = { .id = "r9", .created_by = "admin" };
	struct store_room open = { .id = "r2", .created_by = "jwt:lab:ada", .open_to_issuer = true };
	struct store_key room_key = { .key_id = "k", .room_id = "r1" };
	struct store_key ada_key = { .key_id = "a", .account = "jwt:lab:ada" };
	struct store_key bob_key = { .key_id = "b", .account = "jwt:lab:bob" };
	struct store_key eve_key = { .key_id = "e", .account = "jwt:other:eve" };
	const struct pubkeys_members bob_in_r1 = { .is_member = bob_member };
	bool cut;

	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:ada", "Ada", k1, "cli", 0, 1, &rec), ==, PUBKEYS_ADDED);
	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:ada", NULL, k1, "cli", 0, 2, &rec), ==, PUBKEYS_UNCHANGED);
	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:ada", NULL, k1, "gui", 0, 3, &rec), ==, PUBKEYS_UPDATED);
	g_assert_cmpstr(rec->username, ==, "Ada");
	g_assert_cmpint(pubkeys_add(pk, "jwt:lab:bob", NULL, k2, "cli", 0, 4, &rec), ==, PUBKEYS_ADDED);
	g_assert_null(rec->username);

	g_assert_true(pubkeys_key_may_use(&closed, &room_key, &bob_in_r1));
	g_assert_false(pubkeys_key_may_use(&open, &room_key, &bob_in_r1));
	g_assert_true(pubkeys_key_may_use(&closed, &ada_key, NULL));     /* created it */
	g_assert_false(pubkeys_key_may_use(&closed, &bob_key, NULL));
	g_assert_true(pubkeys_key_may_use(&closed, &bob_key, &bob_in_r1)); /* a member */
	g_assert_false(pubkeys_key_may_use(&other, &bob_key, &bob_in_r1));
	g_assert_true(pubkeys_key_may_use(&open, &bob_key, NULL));        /* its issuer's */
	g_assert_false(pubkeys_key_may_use(&open, &eve_key, &bob_in_r1));
	/* The member's key is listed (by its subject), after the creator's. */
	g_autofree char *c = pubkeys_authorized_json(pk, &closed, &bob_in_r1, 0, &cut);
	g_autofree char *want = g_strdup_printf("{\"authorized_keys\":[{\"public_key\":\"%s\",\"username\":\"Ada\","
						"\"device_name\":\"gui\"},{\"public_key\":\"%s\",\"username\":\"bob\","
						"\"device_name\":\"cli\"}]}", k1, k2);
	g_assert_cmpstr(c, ==, want);
	pubkeys_free(pk);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/pubkeys/decode", test_decode);
	g_test_add_func("/pubkeys/parse", test_parse);
	g_test_add_func("/pubkeys/add-and-list", test_add_and_list);
	g_test_add_func("/pubkeys/account-keys", test_account_keys);
	return g_test_run();
}
