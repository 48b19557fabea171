/* Unit tests: applying other instances' changes to the in-memory rooms
 * (rooms_apply_*, rooms_replace), as rsync.c does with the Redis store. */
#include "store/rooms.h"

#include <glib.h>
#include <string.h>

static struct store_room *room(const char *id)
{
	struct store_room *r = g_new0(struct store_room, 1);
	r->id = g_strdup(id);
	r->created_by = g_strdup("admin");
	r->created_at = 1;
	return r;
}

static struct store_key *key(const char *id, const char *room_id, const char *account)
{
	struct store_key *k = g_new0(struct store_key, 1);
	k->key_id = g_strdup(id);
	k->room_id = g_strdup(room_id);
	k->account = g_strdup(account);
	return k;
}

static bool has(GPtrArray *ids, const char *id)
{
	for (guint i = 0; i < ids->len; i++)
		if (strcmp(g_ptr_array_index(ids, i), id) == 0)
			return true;
	return false;
}

static struct store_snapshot snapshot(void)
{
	return (struct store_snapshot){
		.rooms = g_ptr_array_new_with_free_func((GDestroyNotify)store_room_free),
		.keys = g_ptr_array_new_with_free_func((GDestroyNotify)store_key_free),
		.members = g_ptr_array_new_with_free_func((GDestroyNotify)store_member_free),
		.pubkeys = g_ptr_array_new_with_free_func((GDestroyNotify)store_pubkey_free),
	};
}

static void snapshot_clear(struct store_snapshot *s)
{
	g_ptr_array_unref(s->rooms);
	g_ptr_array_unref(s->keys);
	g_ptr_array_unref(s->members);
	g_ptr_array_unref(s->pubkeys);
}

static void test_apply(void)
{
	struct rooms *r = rooms_new(NULL);

	rooms_apply_room(r, room("a"));
	g_assert_nonnull(rooms_find(r, "a"));
	rooms_apply_key(r, key("ka", "a", NULL));
	g_assert_true(rooms_apply_revoke(r, "ka", 100));
	g_assert_false(rooms_apply_revoke(r, "ka", 200)); /* the first time stays */
	/* A later copy of the key without its revocation keeps it. */
	rooms_apply_key(r, key("ka", "a", NULL));
	g_autoptr(GPtrArray) keys = rooms_list_keys(r);
	g_assert_cmpuint(keys->len, ==, 1);
	g_assert_cmpint(((const struct store_key *)g_ptr_array_index(keys, 0))->revoked_at, ==, 100);
	rooms_apply_member(r, "a", "jwt:lab:bob", 5, true);
	g_assert_true(rooms_is_member(r, "a", "jwt:lab:bob"));
	rooms_apply_member(r, "nope", "jwt:lab:bob", 5, true); /* no such room: ignored */
	g_assert_false(rooms_is_member(r, "nope", "jwt:lab:bob"));
	rooms_apply_member(r, "a", "jwt:lab:bob", 0, false);
	g_assert_false(rooms_is_member(r, "a", "jwt:lab:bob"));
	/* Deleting takes the room's keys along. */
	g_assert_true(rooms_apply_delete(r, "a"));
	g_assert_false(rooms_apply_delete(r, "a"));
	g_assert_null(rooms_find(r, "a"));
	g_autoptr(GPtrArray) none = rooms_list_keys(r);
	g_assert_cmpuint(none->len, ==, 0);
	rooms_free(r);
}

/* A reload: what the snapshot lacks is gone (rooms) or revoked (keys);
 * what changed after the snapshot was read (KEEP) stays as memory has it,
 * neither dropped nor brought back. */
static void test_replace(void)
{
	struct rooms *r = rooms_new(NULL);
	struct store_snapshot snap = snapshot();
	g_autoptr(GHashTable) keep = g_hash_table_new(g_str_hash, g_str_equal);
	g_autoptr(GPtrArray) gone = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) revoked = g_ptr_array_new_with_free_func(g_free);

	rooms_apply_room(r, room("a"));
	rooms_apply_room(r, room("b"));
	rooms_apply_room(r, room("d")); /* created after the snapshot */
	rooms_apply_key(r, key("ka", "a", NULL));
	rooms_apply_key(r, key("kacct", NULL, "jwt:lab:bob"));
	rooms_apply_key(r, key("kd", "d", NULL));
	rooms_apply_member(r, "b", "jwt:lab:bob", 1, true);
	g_hash_table_add(keep, "d");
	g_hash_table_add(keep, "kd");
	g_hash_table_add(keep, "e"); /* deleted after the snapshot */

	g_ptr_array_add(snap.rooms, room("a"));
	g_ptr_array_add(snap.rooms, room("c"));
	g_ptr_array_add(snap.rooms, room("e"));
	struct store_key *ka = key("ka", "a", NULL);
	ka->revoked_at = 7;
	g_ptr_array_add(snap.keys, ka);
	g_ptr_array_add(snap.keys, key("ke", "e", NULL));
	struct store_member *m = g_new0(struct store_member, 1);
	m->room_id = g_strdup("c");
	m->account = g_strdup("jwt:lab:carol");
	g_ptr_array_add(snap.members, m);

	rooms_replace(r, &snap, keep, gone, revoked);
	g_assert_cmpuint(gone->len, ==, 1);
	g_assert_true(has(gone, "b"));
	g_assert_cmpuint(revoked->len, ==, 2);
	g_assert_true(has(revoked, "ka"));
	g_assert_true(has(revoked, "kacct"));
	g_assert_nonnull(rooms_find(r, "a"));
	g_assert_null(rooms_find(r, "b"));
	g_assert_nonnull(rooms_find(r, "c"));
	g_assert_nonnull(rooms_find(r, "d"));
	g_assert_null(rooms_find(r, "e"));
	g_autoptr(GPtrArray) keys = rooms_list_keys(r);
	g_assert_cmpuint(keys->len, ==, 2); /* ka (revoked) and kd */
	g_assert_false(rooms_is_member(r, "b", "jwt:lab:bob"));
	g_assert_true(rooms_is_member(r, "c", "jwt:lab:carol"));
	snapshot_clear(&snap);
	rooms_free(r);
}

int main(int argc, char **argv)
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/rsync/apply", test_apply);
	g_test_add_func("/rsync/replace", test_replace);
	return g_test_run();
}
