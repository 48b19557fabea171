#include "core/registry.h"

#include "util/json.h"
#include "util/msgbuf.h"

#include <string.h>

struct registry {
	GHashTable *rooms; /* id -> struct room */
	GHashTable *ids;   /* peer id -> number of rooms it is registered in */
	GHashTable *roles; /* role -> number of peers */
	GHashTable *epochs; /* our peers: &peer->epoch -> struct peer */
	unsigned n_peers;
};

static void room_free(struct room *room)
{
	g_assert(!room->watches);
	g_hash_table_unref(room->by_id);
	g_ptr_array_unref(room->order);
	g_free(room->id);
	g_free(room);
}

struct registry *registry_new(void)
{
	struct registry *reg = g_new0(struct registry, 1);
	reg->rooms = g_hash_table_new(g_str_hash, g_str_equal);
	reg->ids = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	reg->roles = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	reg->epochs = g_hash_table_new(g_int64_hash, g_int64_equal);
	return reg;
}

static void peer_free(struct peer *peer)
{
	g_assert(!peer->watches_in); /* its watchers were told it left */
	meta_free(peer->meta);
	g_free(peer->principal);
	g_free(peer->principal_tag);
	g_free(peer->instance);
	g_free(peer);
}

void registry_free(struct registry *reg)
{
	GHashTableIter it;
	gpointer value;

	if (!reg)
		return;
	g_hash_table_iter_init(&it, reg->rooms);
	while (g_hash_table_iter_next(&it, NULL, &value)) {
		struct room *room = value;
		struct peer *p;
		ROOM_FOREACH_PEER(room, p)
			peer_free(p);
		room_free(room);
	}
	g_hash_table_unref(reg->rooms);
	g_hash_table_unref(reg->ids);
	g_hash_table_unref(reg->roles);
	g_hash_table_unref(reg->epochs);
	g_free(reg);
}

struct room *registry_find_room(struct registry *reg, const char *room_id)
{
	return g_hash_table_lookup(reg->rooms, room_id);
}

struct room *registry_ensure_room(struct registry *reg, const char *room_id)
{
	struct room *room = registry_find_room(reg, room_id);
	if (room)
		return room;
	room = g_new0(struct room, 1);
	room->id = g_strdup(room_id);
	room->order = g_ptr_array_new();
	room->by_id = g_hash_table_new(g_str_hash, g_str_equal);
	g_hash_table_insert(reg->rooms, room->id, room);
	return room;
}

struct peer *room_find_peer(struct room *room, const char *peer_id)
{
	return g_hash_table_lookup(room->by_id, peer_id);
}

/* A count per string key; the key is copied in and dropped at zero. */
static void count_up(GHashTable *counts, const char *key)
{
	guint n = GPOINTER_TO_UINT(g_hash_table_lookup(counts, key));
	g_hash_table_insert(counts, g_strdup(key), GUINT_TO_POINTER(n + 1));
}

static void count_down(GHashTable *counts, const char *key)
{
	guint n = GPOINTER_TO_UINT(g_hash_table_lookup(counts, key));
	if (n > 1)
		g_hash_table_insert(counts, g_strdup(key), GUINT_TO_POINTER(n - 1));
	else
		g_hash_table_remove(counts, key);
}

/* Drops PEER from ROOM's order (it has left by_id already): trailing holes
 * go at once, inner ones when they are half the array, so the order stays
 * dense and leaving is cheap. */
static void room_unlink(struct room *room, struct peer *peer)
{
	GPtrArray *order = room->order;
	guint len = order->len;

	g_ptr_array_index(order, peer->slot) = NULL;
	while (len && !g_ptr_array_index(order, len - 1))
		len--;
	if (len - room_size(room) > len / 2) {
		guint n = 0;
		for (guint i = 0; i < len; i++) {
			struct peer *p = g_ptr_array_index(order, i);
			if (!p)
				continue;
			p->slot = n;
			g_ptr_array_index(order, n++) = p;
		}
		len = n;
	}
	g_ptr_array_set_size(order, len);
}

static struct peer *peer_new(struct room *room, const char *peer_id, const char *role,
			     struct meta *meta, gint64 now)
{
	g_autoptr(GString) id_json = g_string_new(NULL);
	g_autoptr(GString) role_json = g_string_new(NULL);
	size_t id_len = strlen(peer_id), role_len = strlen(role);

	json_append_string(id_json, peer_id, id_len);
	json_append_string(role_json, role, role_len);

	/* One block: the struct, then id, id_json, role, role_json. */
	struct peer *peer = g_malloc0(sizeof *peer + id_len + 1 + id_json->len + 1 + role_len + 1 +
				      role_json->len + 1);
	char *p = peer->data;
	peer->id = memcpy(p, peer_id, id_len + 1), p += id_len + 1;
	peer->id_json = memcpy(p, id_json->str, id_json->len + 1), p += id_json->len + 1;
	peer->role = memcpy(p, role, role_len + 1), p += role_len + 1;
	peer->role_json = memcpy(p, role_json->str, role_json->len + 1);
	peer->id_json_len = id_json->len;
	peer->role_json_len = role_json->len;
	peer->room = room;
	peer->meta = meta;
	peer->connected_at = now;
	peer->slot = room->order->len;

	g_ptr_array_add(room->order, peer);
	g_hash_table_insert(room->by_id, (gpointer)peer->id, peer);
	return peer;
}

struct peer *registry_add(struct registry *reg, struct room *room, const char *peer_id,
			  const char *role, struct meta *meta, char *principal, void *owner,
			  gint64 now)
{
	struct peer *peer = peer_new(room, peer_id, role, meta, now);

	peer->principal = principal;
	peer->owner = owner;
	room->n_local++;
	count_up(reg->ids, peer_id);
	count_up(reg->roles, role);
	reg->n_peers++;
	return peer;
}

struct peer *registry_add_remote(struct registry *reg, struct room *room, const char *peer_id,
				 const char *role, struct meta *meta, const char *instance,
				 const char *principal_tag, uint64_t epoch, gint64 connected_at)
{
	struct peer *peer = peer_new(room, peer_id, role, meta, connected_at);

	peer->instance = g_strdup(instance);
	peer->principal_tag = g_strdup(principal_tag ? principal_tag : "");
	peer->epoch = epoch;
	count_up(reg->ids, peer_id);
	return peer;
}

void registry_set_epoch(struct registry *reg, struct peer *peer, uint64_t epoch)
{
	peer->epoch = epoch;
	g_hash_table_insert(reg->epochs, &peer->epoch, peer);
}

struct peer *registry_find_epoch(struct registry *reg, uint64_t epoch)
{
	return g_hash_table_lookup(reg->epochs, &epoch);
}

void registry_remove(struct registry *reg, struct peer *peer)
{
	struct room *room = peer->room;

	count_down(reg->ids, peer->id);
	if (!peer_is_remote(peer)) {
		count_down(reg->roles, peer->role);
		if (peer->epoch && g_hash_table_lookup(reg->epochs, &peer->epoch) == peer)
			g_hash_table_remove(reg->epochs, &peer->epoch);
		room->n_local--;
		reg->n_peers--;
	}
	g_hash_table_remove(room->by_id, peer->id);
	room_unlink(room, peer);
	if (room->admin == peer)
		room->admin = NULL;
	peer_free(peer);

	if (room_size(room) == 0) {
		g_hash_table_remove(reg->rooms, room->id);
		room_free(room);
	}
}

void peer_set_meta(struct peer *peer, struct meta *meta)
{
	meta_free(peer_swap_meta(peer, meta));
}

struct meta *peer_swap_meta(struct peer *peer, struct meta *meta)
{
	struct meta *old = peer->meta;
	peer->meta = meta;
	return old;
}

bool registry_id_exists(struct registry *reg, const char *peer_id)
{
	return g_hash_table_contains(reg->ids, peer_id);
}

static gint by_count_then_name(gconstpointer a, gconstpointer b, gpointer counts)
{
	guint ca = GPOINTER_TO_UINT(g_hash_table_lookup(counts, *(char *const *)a));
	guint cb = GPOINTER_TO_UINT(g_hash_table_lookup(counts, *(char *const *)b));
	if (ca != cb)
		return ca > cb ? -1 : 1;
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void registry_role_counts(struct registry *reg, unsigned top, registry_role_fn fn, void *data)
{
	guint n;
	gpointer *names = g_hash_table_get_keys_as_array(reg->roles, &n);
	gint64 other = 0;

	g_qsort_with_data(names, (gint)n, sizeof *names, by_count_then_name, reg->roles);
	for (guint i = 0; i < n; i++) {
		gint64 count = GPOINTER_TO_UINT(g_hash_table_lookup(reg->roles, names[i]));
		if (i < top && strcmp(names[i], "other") != 0)
			fn(names[i], count, data);
		else
			other += count;
	}
	if (other)
		fn("other", other, data);
	g_free(names);
}

unsigned registry_n_rooms(const struct registry *reg)
{
	return g_hash_table_size(reg->rooms);
}

unsigned registry_n_peers(const struct registry *reg)
{
	return reg->n_peers;
}

void registry_foreach_room(struct registry *reg, registry_room_fn fn, void *data)
{
	GHashTableIter it;
	gpointer value;

	g_hash_table_iter_init(&it, reg->rooms);
	while (g_hash_table_iter_next(&it, NULL, &value))
		fn(value, data);
}

char *registry_principal_tag(const char *principal)
{
	return principal ? g_compute_checksum_for_string(G_CHECKSUM_SHA256, principal, -1) : g_strdup("");
}
