/* Unit tests: rooms and peers. */
#include "core/registry.h"

#include <glib.h>

static struct meta *empty_meta(void)
{
	struct meta *m = NULL;
	const char *why;
	g_assert_cmpint(meta_new(NULL, 1024, &m, &why), ==, 0);
	return m;
}

static struct peer *add(struct registry *reg, const char *room, const char *id)
{
	return registry_add(reg, registry_ensure_room(reg, room), id, "peer", empty_meta(), NULL,
			    NULL, 0);
}

static void test_add_remove(void)
{
	struct registry *reg = registry_new();
	struct peer *a = add(reg, "r1", "a");
	struct peer *b = add(reg, "r1", "b");
	struct peer *c = add(reg, "r2", "a"); /* same id, other room */

	g_assert_cmpuint(registry_n_rooms(reg), ==, 2);
	g_assert_cmpuint(registry_n_peers(reg), ==, 3);
	g_assert_true(room_find_peer(registry_find_room(reg, "r1"), "a") == a);
	g_assert_true(room_find_peer(registry_find_room(reg, "r2"), "a") == c);
	g_assert_cmpstr(a->id_json, ==, "\"a\"");
	g_assert_cmpstr(b->role, ==, "peer");

	registry_remove(reg, c);
	g_assert_null(registry_find_room(reg, "r2")); /* empty room freed */
	g_assert_true(registry_id_exists(reg, "a")); /* still in r1 */
	registry_remove(reg, a);
	g_assert_false(registry_id_exists(reg, "a"));
	g_assert_cmpuint(room_size(registry_find_room(reg, "r1")), ==, 1);
	registry_remove(reg, b);
	g_assert_cmpuint(registry_n_rooms(reg), ==, 0);
	g_assert_cmpuint(registry_n_peers(reg), ==, 0);
	registry_free(reg);
}

static void test_order(void)
{
	struct registry *reg = registry_new();
	struct peer *p[4];
	const char *ids[] = { "d", "a", "c", "b" };
	for (int i = 0; i < 4; i++)
		p[i] = add(reg, "r", ids[i]);
	registry_remove(reg, p[1]);
	/* Replacing "a": it goes to the end, a new registration. */
	add(reg, "r", "a");
	struct room *room = registry_find_room(reg, "r");
	const char *want[] = { "d", "c", "b", "a" };
	struct peer *q;
	int i = 0;
	ROOM_FOREACH_PEER(room, q)
		g_assert_cmpstr(q->id, ==, want[i++]);
	g_assert_cmpint(i, ==, 4);
	registry_free(reg); /* frees what is left */
}

/* Leaving from the middle, the end and in bulk keeps registration order,
 * and the order never holds more holes than peers. */
static void test_order_after_leaving(void)
{
	enum { N = 100 };
	struct registry *reg = registry_new();
	struct peer *p[N];
	bool gone[N] = { false };
	struct room *room;

	for (int i = 0; i < N; i++) {
		char id[8];
		g_snprintf(id, sizeof id, "p%d", i);
		p[i] = add(reg, "r", id);
	}
	room = registry_find_room(reg, "r");
	/* every third, then the last ten, then most of the rest */
	for (int pass = 0; pass < 3; pass++) {
		for (int i = 0; i < N; i++) {
			bool leave = pass == 0 ? i % 3 == 1 : pass == 1 ? i >= N - 10 : i % 7 != 0;
			if (gone[i] || !leave)
				continue;
			registry_remove(reg, p[i]);
			gone[i] = true;
		}
		struct peer *q;
		int next = 0, seen = 0;
		ROOM_FOREACH_PEER(room, q) {
			while (gone[next])
				next++;
			g_assert_true(q == p[next]);
			g_assert_true(g_ptr_array_index(room->order, q->slot) == q);
			next++, seen++;
		}
		g_assert_cmpuint(room_size(room), ==, seen);
		g_assert_cmpuint(room->order->len, <=, 2 * room_size(room));
	}
	registry_free(reg);
}

static void test_admin_seat(void)
{
	struct registry *reg = registry_new();
	struct peer *a = add(reg, "r", "a");
	struct peer *b = add(reg, "r", "b");
	struct room *room = registry_find_room(reg, "r");
	room->admin = a;
	registry_remove(reg, a);
	g_assert_null(room->admin); /* the seat is empty when the admin leaves */
	room->admin = b;
	registry_remove(reg, b);
	registry_free(reg);
}

static void test_escaped_ids(void)
{
	struct registry *reg = registry_new();
	struct peer *p = registry_add(reg, registry_ensure_room(reg, "r"), "a\"b\\c", "w\"x",
				      empty_meta(), g_strdup("sub-1"), NULL, 1700000000123456);
	g_assert_cmpstr(p->id_json, ==, "\"a\\\"b\\\\c\"");
	g_assert_cmpstr(p->role_json, ==, "\"w\\\"x\"");
	g_assert_cmpstr(p->principal, ==, "sub-1");
	registry_free(reg);
}

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	g_test_add_func("/registry/add-remove", test_add_remove);
	g_test_add_func("/registry/order", test_order);
	g_test_add_func("/registry/order-after-leaving", test_order_after_leaving);
	g_test_add_func("/registry/admin-seat", test_admin_seat);
	g_test_add_func("/registry/escaped-ids", test_escaped_ids);
	return g_test_run();
}
