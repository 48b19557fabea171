#include "store/rooms.h"

#include "util/log.h"
#include "util/metrics.h"
#include "util/secret.h"

#include <errno.h>
#include <string.h>

struct rooms {
	struct store *st;
	GHashTable *rooms; /* id -> struct store_room */
	GHashTable *keys;  /* key_id -> struct store_key */
	GHashTable *announced; /* ids of expired rooms already reported */
	GHashTable *deleting;  /* ids of rooms whose deletion is being written */
	GHashTable *revoking;  /* ids of keys whose revocation is being written */
	/* Quotas: the rooms that count, id -> their address key ("" for
	 * none), and how many count per creator and per address. */
	GHashTable *counted;
	GHashTable *by_creator;
	GHashTable *by_address;
	/* room id -> (account -> struct store_member); a room's members may
	 * use it with their account keys. */
	GHashTable *members;
	GHashTable *unjoining; /* "ROOM\nACCOUNT" of removals being written */
};

struct rooms *rooms_new(struct store *st)
{
	struct rooms *r = g_new0(struct rooms, 1);
	r->st = st;
	r->rooms = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)store_room_free);
	r->keys = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)store_key_free);
	r->announced = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	r->deleting = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	r->revoking = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	r->counted = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	r->by_creator = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	r->by_address = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	r->members = g_hash_table_new_full(g_str_hash, g_str_equal, g_free,
					   (GDestroyNotify)g_hash_table_unref);
	r->unjoining = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
	return r;
}

void rooms_free(struct rooms *r)
{
	if (!r)
		return;
	g_hash_table_unref(r->announced);
	g_hash_table_unref(r->deleting);
	g_hash_table_unref(r->revoking);
	g_hash_table_unref(r->counted);
	g_hash_table_unref(r->by_creator);
	g_hash_table_unref(r->by_address);
	g_hash_table_unref(r->members);
	g_hash_table_unref(r->unjoining);
	g_hash_table_unref(r->keys);
	g_hash_table_unref(r->rooms);
	g_free(r);
}

/* --- quotas --- */

/* An address as a quota key: IPv4, or the /64 of IPv6 (one host usually
 * holds a whole /64, as in addrlimit). */
static void address_key(const struct netaddr *a, char out[NETADDR_STRLEN])
{
	struct netaddr net = *a;
	if (!netaddr_is_v4(&net))
		memset(net.b + 8, 0, 8);
	netaddr_to_string(&net, out);
}

static unsigned count_of(GHashTable *t, const char *key)
{
	return GPOINTER_TO_UINT(g_hash_table_lookup(t, key));
}

static void count_add(GHashTable *t, const char *key, int delta)
{
	unsigned n = count_of(t, key) + (unsigned)delta;
	if (n)
		g_hash_table_replace(t, g_strdup(key), GUINT_TO_POINTER(n));
	else
		g_hash_table_remove(t, key);
}

/* ROOM (by its id and created_by) counts from now on. */
static void count_room(struct rooms *r, const struct store_room *room, const struct netaddr *from)
{
	char addr[NETADDR_STRLEN] = "";

	if (g_hash_table_contains(r->counted, room->id))
		return;
	if (from)
		address_key(from, addr);
	g_hash_table_insert(r->counted, g_strdup(room->id), g_strdup(addr));
	count_add(r->by_creator, room->created_by ? room->created_by : "", 1);
	if (addr[0])
		count_add(r->by_address, addr, 1);
	metrics_set(persistent_rooms, g_hash_table_size(r->counted));
}

/* ROOM no longer counts (expired, deleted, or never written). */
static void uncount_room(struct rooms *r, const struct store_room *room)
{
	const char *addr = room->id ? g_hash_table_lookup(r->counted, room->id) : NULL;

	if (!addr)
		return;
	if (addr[0])
		count_add(r->by_address, addr, -1);
	count_add(r->by_creator, room->created_by ? room->created_by : "", -1);
	g_hash_table_remove(r->counted, room->id);
	metrics_set(persistent_rooms, g_hash_table_size(r->counted));
}

enum rooms_quota_hit rooms_quota_check(struct rooms *r, const struct rooms_quota *q,
				       const char *created_by, const struct netaddr *from)
{
	char addr[NETADDR_STRLEN];

	if (q->total && g_hash_table_size(r->counted) >= q->total)
		return ROOMS_QUOTA_TOTAL;
	if (q->per_creator && count_of(r->by_creator, created_by ? created_by : "") >= q->per_creator)
		return ROOMS_QUOTA_CREATOR;
	if (q->per_address && from) {
		address_key(from, addr);
		if (count_of(r->by_address, addr) >= q->per_address)
			return ROOMS_QUOTA_ADDRESS;
	}
	return ROOMS_QUOTA_OK;
}

void rooms_load(struct rooms *r, GPtrArray *rooms, GPtrArray *keys)
{
	while (rooms->len) {
		struct store_room *room = g_ptr_array_steal_index_fast(rooms, rooms->len - 1);
		g_hash_table_replace(r->rooms, room->id, room);
		count_room(r, room, NULL); /* expired ones stop at rooms_take_expired */
	}
	while (keys->len) {
		struct store_key *key = g_ptr_array_steal_index_fast(keys, keys->len - 1);
		g_hash_table_replace(r->keys, key->key_id, key);
	}
}

const struct store_room *rooms_find(struct rooms *r, const char *room_id)
{
	if (g_hash_table_contains(r->deleting, room_id))
		return NULL;
	return g_hash_table_lookup(r->rooms, room_id);
}

bool rooms_expired(const struct store_room *room, gint64 now)
{
	return room->expires_at && room->expires_at <= now;
}

bool rooms_token_ok(const struct store_room *room, const char *token)
{
	uint8_t hash[SECRET_HASH_LEN];
	return token && secret_hash(token, hash) == 0 && secret_hash_equal(hash, room->token_hash);
}

int rooms_check_key(struct rooms *r, const char *api_key, gint64 now, const struct store_key **out)
{
	const char *dot = strchr(api_key, '.');
	uint8_t hash[SECRET_HASH_LEN];

	if (!dot || dot == api_key || (size_t)(dot - api_key) > 64)
		return -ENOENT;
	g_autofree char *key_id = g_strndup(api_key, (gsize)(dot - api_key));
	const struct store_key *key = g_hash_table_lookup(r->keys, key_id);
	/* Hash even for an unknown id, so timing does not tell ids apart. */
	if (secret_hash(dot + 1, hash) < 0 || !key || !secret_hash_equal(hash, key->key_hash))
		return -ENOENT;
	if (key->revoked_at || g_hash_table_contains(r->revoking, key_id))
		return -EKEYREVOKED;
	if (key->expires_at && key->expires_at <= now)
		return -EKEYEXPIRED;
	*out = key;
	return 0;
}

unsigned rooms_count_active_keys(struct rooms *r, gint64 now)
{
	GHashTableIter it;
	gpointer v;
	unsigned n = 0;

	g_hash_table_iter_init(&it, r->keys);
	while (g_hash_table_iter_next(&it, NULL, &v)) {
		const struct store_key *k = v;
		n += !k->revoked_at && (!k->expires_at || k->expires_at > now);
	}
	return n;
}

bool rooms_any_active_key(struct rooms *r, gint64 now)
{
	GHashTableIter it;
	gpointer v;

	g_hash_table_iter_init(&it, r->keys);
	while (g_hash_table_iter_next(&it, NULL, &v)) {
		const struct store_key *k = v;
		if (!k->revoked_at && (!k->expires_at || k->expires_at > now))
			return true;
	}
	return false;
}

/* --- writes --- */

static void store_failed(const char *what, const GError *err)
{
	struct log_fields f = { .code = "store" };
	log_event(LOG_ERR, LOG_EVENT_BACKEND_LOST, &f, "room store: %s: %s", what,
		  err ? err->message : "unknown error");
}

struct pending_room {
	struct rooms *r;
	struct store_room *room;
	char token[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];
	rooms_created_fn done;
	void *data;
};

static void room_written(int status, const GError *err, void *data)
{
	struct pending_room *p = data;

	if (status < 0) {
		store_failed("cannot create a room", err);
		p->done(status, NULL, NULL, "the room store is unavailable", p->data);
		uncount_room(p->r, p->room);
		store_room_free(p->room);
	} else {
		g_hash_table_replace(p->r->rooms, p->room->id, p->room);
		p->done(0, p->room, p->token, NULL, p->data);
	}
	explicit_bzero(p->token, sizeof p->token);
	g_free(p);
}

void rooms_create(struct rooms *r, const struct rooms_spec *spec, const char *created_by,
		  gint64 now, rooms_created_fn done, void *data)
{
	struct pending_room *p = g_new0(struct pending_room, 1);
	struct store_room *room = g_new0(struct store_room, 1);
	int rc;

	room->name = g_strdup(spec->name);
	room->created_by = g_strdup(created_by);
	room->created_at = now;
	room->expires_at = spec->expires_at;
	room->max_peers = spec->max_peers;
	room->open_to_issuer = spec->open_to_issuer;
	p->r = r;
	p->room = room;
	p->done = done;
	p->data = data;
	/* A fresh random id can only clash by a miracle; mint again if so. */
	do {
		g_clear_pointer(&room->id, g_free);
		rc = store_room_mint(room, p->token);
	} while (rc == 0 && g_hash_table_contains(r->rooms, room->id));
	if (rc == 0)
		count_room(r, room, spec->from); /* from now: creations in flight count */
	if (rc == 0 && r->st)
		rc = store_put_room(r->st, room, room_written, p);
	else if (rc == 0)
		room_written(0, NULL, p);
	if (rc < 0) {
		done(rc, NULL, NULL, rc == -EAGAIN ? "the room store is busy" : "cannot create a room", data);
		uncount_room(r, room);
		store_room_free(room);
		g_free(p);
	}
}

struct pending_key {
	struct rooms *r;
	struct store_key *key;
	char api_key[SECRET_HEX_SIZE(SECRET_ID_BYTES) + 1 + SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];
	rooms_key_created_fn done;
	void *data;
};

static void key_written(int status, const GError *err, void *data)
{
	struct pending_key *p = data;

	if (status == 0 && p->key->room_id && !rooms_find(p->r, p->key->room_id)) {
		/* The room was deleted while the key was being written: the
		 * store dropped the key with it, and so do we. */
		p->done(-ENOENT, NULL, NULL, "room not found", p->data);
		store_key_free(p->key);
	} else if (status < 0) {
		store_failed("cannot create an API key", err);
		p->done(status, NULL, NULL,
			status == -ENOENT ? "room not found" : "the room store is unavailable", p->data);
		store_key_free(p->key);
	} else {
		g_hash_table_replace(p->r->keys, p->key->key_id, p->key);
		p->done(0, p->key, p->api_key, NULL, p->data);
	}
	explicit_bzero(p->api_key, sizeof p->api_key);
	g_free(p);
}

/* A key for ROOM_ID, or else for ACCOUNT. */
static void create_key(struct rooms *r, const char *room_id, const char *account, const char *name,
		       gint64 expires_at, gint64 now, rooms_key_created_fn done, void *data)
{
	char secret[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];
	struct pending_key *p;
	struct store_key *key;
	int rc;

	if (room_id && !rooms_find(r, room_id)) {
		done(-ENOENT, NULL, NULL, "room not found", data);
		return;
	}
	key = g_new0(struct store_key, 1);
	key->room_id = g_strdup(room_id);
	key->account = room_id ? NULL : g_strdup(account);
	key->name = g_strdup(name);
	key->created_at = now;
	key->expires_at = expires_at;
	do {
		g_clear_pointer(&key->key_id, g_free);
		rc = store_key_mint(key, secret);
	} while (rc == 0 && g_hash_table_contains(r->keys, key->key_id));
	if (rc < 0) {
		done(rc, NULL, NULL, "cannot create an API key", data);
		store_key_free(key);
		return;
	}
	p = g_new0(struct pending_key, 1);
	p->r = r;
	p->key = key;
	p->done = done;
	p->data = data;
	/* The key carries its id, so a check finds it without a scan. */
	g_snprintf(p->api_key, sizeof p->api_key, "%s.%s", key->key_id, secret);
	explicit_bzero(secret, sizeof secret);
	if (r->st)
		rc = store_put_key(r->st, key, key_written, p);
	else
		key_written(0, NULL, p);
	if (rc < 0) {
		done(rc, NULL, NULL, rc == -EAGAIN ? "the room store is busy" : "cannot create an API key",
		     data);
		explicit_bzero(p->api_key, sizeof p->api_key);
		store_key_free(key);
		g_free(p);
	}
}

void rooms_create_key(struct rooms *r, const char *room_id, const char *name, gint64 expires_at,
		      gint64 now, rooms_key_created_fn done, void *data)
{
	create_key(r, room_id, NULL, name, expires_at, now, done, data);
}

void rooms_create_account_key(struct rooms *r, const char *account, const char *name,
			      gint64 expires_at, gint64 now, rooms_key_created_fn done, void *data)
{
	create_key(r, NULL, account, name, expires_at, now, done, data);
}

static void written(int status, const GError *err, void *data)
{
	if (status < 0)
		store_failed(data, err);
}

/* Keys go with their room, in the store as here. */
static void drop_keys_of(struct rooms *r, const char *room_id)
{
	GHashTableIter it;
	gpointer v;

	g_hash_table_iter_init(&it, r->keys);
	while (g_hash_table_iter_next(&it, NULL, &v))
		if (g_strcmp0(((struct store_key *)v)->room_id, room_id) == 0)
			g_hash_table_iter_remove(&it);
	g_hash_table_remove(r->members, room_id); /* and so do its members */
}

/* A deletion or revocation on its way to the store. */
struct pending_change {
	struct rooms *r;
	char *id;
	gint64 when; /* revocation time */
	rooms_written_fn done;
	void *data;
};

static const char *change_failed(int status, const GError *err, const char *what)
{
	store_failed(what, err);
	return status == -EBUSY ? "the room store's database is locked: nothing was changed, try again"
				: "the room store cannot write: nothing was changed, try again";
}

static void room_deleted(int status, const GError *err, void *data)
{
	struct pending_change *p = data;
	struct rooms *r = p->r;

	g_hash_table_remove(r->deleting, p->id);
	if (status == -ENOENT) /* not in the store (purged meanwhile): gone all the same */
		status = 0;
	if (status < 0) {
		p->done(status, change_failed(status, err, "cannot delete a room"), p->data);
	} else {
		/* Purged meanwhile (rooms_take_expired): uncounted there. */
		const struct store_room *room = g_hash_table_lookup(r->rooms, p->id);
		if (room)
			uncount_room(r, room);
		drop_keys_of(r, p->id);
		g_hash_table_remove(r->announced, p->id);
		g_hash_table_remove(r->rooms, p->id);
		p->done(0, NULL, p->data);
	}
	g_free(p->id);
	g_free(p);
}

static void key_revoked(int status, const GError *err, void *data)
{
	struct pending_change *p = data;
	struct store_key *key;

	g_hash_table_remove(p->r->revoking, p->id);
	if (status < 0 && status != -ENOENT) {
		p->done(status, change_failed(status, err, "cannot revoke a key"), p->data);
	} else {
		/* -ENOENT: its room was deleted meanwhile, the key with it. */
		if ((key = g_hash_table_lookup(p->r->keys, p->id)) && !key->revoked_at)
			key->revoked_at = p->when;
		p->done(0, NULL, p->data);
	}
	g_free(p->id);
	g_free(p);
}

/* Queues a change marked in SET; on a full queue it is unmarked and
 * fails at once, logged by the store. */
static void submit_change(GHashTable *set, struct pending_change *p, int rc)
{
	if (rc >= 0)
		return;
	g_hash_table_remove(set, p->id);
	p->done(rc, rc == -EAGAIN ? "the room store's write queue is full: nothing was changed, try again"
				  : "the room store is closing: nothing was changed", p->data);
	g_free(p->id);
	g_free(p);
}

static struct pending_change *change_new(struct rooms *r, GHashTable *set, const char *id,
					 gint64 when, rooms_written_fn done, void *data)
{
	struct pending_change *p = g_new0(struct pending_change, 1);
	p->r = r;
	p->id = g_strdup(id);
	p->when = when;
	p->done = done;
	p->data = data;
	g_hash_table_add(set, g_strdup(id));
	return p;
}

int rooms_delete(struct rooms *r, const char *room_id, rooms_written_fn done, void *data)
{
	if (g_hash_table_contains(r->deleting, room_id))
		return -EINPROGRESS;
	if (!g_hash_table_contains(r->rooms, room_id))
		return -ENOENT;
	struct pending_change *p = change_new(r, r->deleting, room_id, 0, done, data);
	if (!r->st) {
		room_deleted(0, NULL, p);
		return 0;
	}
	submit_change(r->deleting, p, store_delete_room(r->st, room_id, room_deleted, p));
	return 0;
}

int rooms_revoke_key(struct rooms *r, const char *key_id, gint64 now, rooms_written_fn done,
		     void *data)
{
	struct store_key *key = g_hash_table_lookup(r->keys, key_id);
	if (!key)
		return -ENOENT;
	if (g_hash_table_contains(r->revoking, key_id))
		return -EINPROGRESS;
	/* A second revocation keeps the first time, in the store as here. */
	struct pending_change *p = change_new(r, r->revoking, key_id,
					      key->revoked_at ? key->revoked_at : now, done, data);
	if (!r->st) {
		key_revoked(0, NULL, p);
		return 0;
	}
	submit_change(r->revoking, p, store_revoke_key(r->st, key_id, p->when, key_revoked, p));
	return 0;
}

GPtrArray *rooms_take_expired(struct rooms *r, gint64 now)
{
	GPtrArray *ids = g_ptr_array_new_with_free_func(g_free);
	g_autoptr(GPtrArray) purge = g_ptr_array_new_with_free_func(g_free);
	GHashTableIter it;
	gpointer v;

	g_hash_table_iter_init(&it, r->rooms);
	while (g_hash_table_iter_next(&it, NULL, &v)) {
		const struct store_room *room = v;
		if (!rooms_expired(room, now))
			continue;
		uncount_room(r, room);
		if (room->expires_at <= now - ROOMS_EXPIRED_RETENTION)
			g_ptr_array_add(purge, g_strdup(room->id));
		else if (!g_hash_table_contains(r->announced, room->id))
			g_ptr_array_add(ids, g_strdup(room->id));
	}
	for (guint i = 0; i < ids->len; i++)
		g_hash_table_add(r->announced, g_strdup(g_ptr_array_index(ids, i)));
	for (guint i = 0; i < purge->len; i++) {
		const char *id = g_ptr_array_index(purge, i);
		/* A room may expire and be purged in one call: report it too. */
		if (!g_hash_table_remove(r->announced, id))
			g_ptr_array_add(ids, g_strdup(id));
		drop_keys_of(r, id);
		g_hash_table_remove(r->rooms, id);
	}
	if (purge->len && r->st)
		store_purge_expired(r->st, now - ROOMS_EXPIRED_RETENTION, written,
				    "cannot purge expired rooms");
	return ids;
}

gint64 rooms_next_expiry(struct rooms *r)
{
	GHashTableIter it;
	gpointer k, v;
	gint64 next = 0;

	g_hash_table_iter_init(&it, r->rooms);
	while (g_hash_table_iter_next(&it, &k, &v)) {
		gint64 e = ((struct store_room *)v)->expires_at;
		if (e && g_hash_table_contains(r->announced, k))
			e += ROOMS_EXPIRED_RETENTION;
		if (e && (!next || e < next))
			next = e;
	}
	return next;
}

int rooms_expiry(unsigned default_ttl, unsigned max_ttl, gint64 requested, gint64 now,
		 gint64 *expires_at, const char **why)
{
	gint64 ttl = requested < 0 ? default_ttl : requested;

	if (max_ttl && (ttl == 0 || ttl > max_ttl)) {
		*why = ttl ? "expires_in is over the configured maximum ([rooms] max_ttl)"
			   : "rooms must expire: [rooms] max_ttl is set";
		return -EINVAL;
	}
	*expires_at = ttl ? now + ttl : 0;
	return 0;
}

static gint by_created(gconstpointer a, gconstpointer b)
{
	const struct store_room *x = *(const struct store_room *const *)a;
	const struct store_room *y = *(const struct store_room *const *)b;
	if (x->created_at != y->created_at)
		return x->created_at < y->created_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

static gint key_by_created(gconstpointer a, gconstpointer b)
{
	const struct store_key *x = *(const struct store_key *const *)a;
	const struct store_key *y = *(const struct store_key *const *)b;
	if (x->created_at != y->created_at)
		return x->created_at < y->created_at ? -1 : 1;
	return strcmp(x->key_id, y->key_id);
}

static GPtrArray *sorted_values(GHashTable *t, GCompareFunc cmp)
{
	GPtrArray *a = g_ptr_array_sized_new(g_hash_table_size(t));
	GHashTableIter it;
	gpointer v;

	g_hash_table_iter_init(&it, t);
	while (g_hash_table_iter_next(&it, NULL, &v))
		g_ptr_array_add(a, v);
	g_ptr_array_sort(a, cmp);
	return a;
}

GPtrArray *rooms_list(struct rooms *r)
{
	return sorted_values(r->rooms, by_created);
}

GPtrArray *rooms_list_keys(struct rooms *r)
{
	return sorted_values(r->keys, key_by_created);
}

/* --- members --- */

void rooms_load_members(struct rooms *r, GPtrArray *members)
{
	while (members->len) {
		struct store_member *m = g_ptr_array_steal_index_fast(members, members->len - 1);
		GHashTable *set = g_hash_table_lookup(r->members, m->room_id);
		if (!set) {
			set = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
						    (GDestroyNotify)store_member_free);
			g_hash_table_insert(r->members, g_strdup(m->room_id), set);
		}
		g_hash_table_replace(set, m->account, m);
	}
}

static char *member_key(const char *room_id, const char *account)
{
	return g_strconcat(room_id, "\n", account, NULL);
}

bool rooms_is_member(struct rooms *r, const char *room_id, const char *account)
{
	GHashTable *set = g_hash_table_lookup(r->members, room_id);
	if (!set || !g_hash_table_contains(set, account))
		return false;
	g_autofree char *k = member_key(room_id, account);
	return !g_hash_table_contains(r->unjoining, k); /* fail closed while removed */
}

static gint member_by_added(gconstpointer a, gconstpointer b)
{
	const struct store_member *x = *(const struct store_member *const *)a;
	const struct store_member *y = *(const struct store_member *const *)b;
	if (x->added_at != y->added_at)
		return x->added_at < y->added_at ? -1 : 1;
	return strcmp(x->account, y->account);
}

GPtrArray *rooms_list_members(struct rooms *r, const char *room_id)
{
	GHashTable *set = g_hash_table_lookup(r->members, room_id);
	if (!set)
		return g_ptr_array_new();
	return sorted_values(set, member_by_added);
}

struct pending_member {
	struct rooms *r;
	struct store_member *m;
	bool add;
	rooms_written_fn done;
	void *data;
};

static void member_written(int status, const GError *err, void *data)
{
	struct pending_member *p = data;
	struct rooms *r = p->r;
	g_autofree char *k = member_key(p->m->room_id, p->m->account);

	if (!p->add)
		g_hash_table_remove(r->unjoining, k);
	if (status == -ENOENT && !p->add) /* gone meanwhile (with its room): gone all the same */
		status = 0;
	if (status == 0 && p->add && !rooms_find(r, p->m->room_id))
		status = -ENOENT; /* the room was deleted while this was written */
	if (status < 0) {
		p->done(status,
			status == -ENOENT ? "room not found"
					  : change_failed(status, err, p->add ? "cannot add a room member"
									      : "cannot remove a room member"),
			p->data);
	} else if (p->add) {
		GHashTable *set = g_hash_table_lookup(r->members, p->m->room_id);
		if (!set) {
			set = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
						    (GDestroyNotify)store_member_free);
			g_hash_table_insert(r->members, g_strdup(p->m->room_id), set);
		}
		if (!g_hash_table_contains(set, p->m->account)) {
			g_hash_table_replace(set, p->m->account, p->m);
			p->m = NULL;
		}
		p->done(0, NULL, p->data);
	} else {
		GHashTable *set = g_hash_table_lookup(r->members, p->m->room_id);
		if (set && g_hash_table_remove(set, p->m->account) && !g_hash_table_size(set))
			g_hash_table_remove(r->members, p->m->room_id);
		p->done(0, NULL, p->data);
	}
	store_member_free(p->m);
	g_free(p);
}

static int member_change(struct rooms *r, bool add, const char *room_id, const char *account,
			 gint64 now, rooms_written_fn done, void *data)
{
	struct pending_member *p = g_new0(struct pending_member, 1);
	g_autofree char *k = member_key(room_id, account);
	int rc = 0;

	p->r = r;
	p->add = add;
	p->done = done;
	p->data = data;
	p->m = g_new0(struct store_member, 1);
	p->m->room_id = g_strdup(room_id);
	p->m->account = g_strdup(account);
	p->m->added_at = now;
	if (!add)
		g_hash_table_add(r->unjoining, g_strdup(k));
	if (!r->st) {
		member_written(0, NULL, p);
		return 0;
	}
	rc = add ? store_put_member(r->st, p->m, member_written, p)
		 : store_delete_member(r->st, room_id, account, member_written, p);
	if (rc < 0) {
		if (!add)
			g_hash_table_remove(r->unjoining, k);
		done(rc, rc == -EAGAIN ? "the room store's write queue is full: nothing was changed, try again"
				       : "the room store is closing: nothing was changed", data);
		store_member_free(p->m);
		g_free(p);
	}
	return 0;
}

int rooms_add_member(struct rooms *r, const char *room_id, const char *account, gint64 now,
		     rooms_written_fn done, void *data)
{
	if (!rooms_find(r, room_id))
		return -ENOENT;
	return member_change(r, true, room_id, account, now, done, data);
}

int rooms_remove_member(struct rooms *r, const char *room_id, const char *account,
			rooms_written_fn done, void *data)
{
	g_autofree char *k = member_key(room_id, account);
	GHashTable *set = g_hash_table_lookup(r->members, room_id);

	if (g_hash_table_contains(r->unjoining, k))
		return -EINPROGRESS;
	if (!set || !g_hash_table_contains(set, account))
		return -ENOENT;
	return member_change(r, false, room_id, account, 0, done, data);
}

/* --- changes from other instances --- */

void rooms_apply_room(struct rooms *r, struct store_room *room)
{
	const struct store_room *old = g_hash_table_lookup(r->rooms, room->id);

	if (old)
		uncount_room(r, old);
	g_hash_table_replace(r->rooms, room->id, room);
	if (!rooms_expired(room, g_get_real_time() / G_USEC_PER_SEC))
		count_room(r, room, NULL);
}

bool rooms_apply_delete(struct rooms *r, const char *room_id)
{
	const struct store_room *room = g_hash_table_lookup(r->rooms, room_id);

	if (!room)
		return false;
	uncount_room(r, room);
	drop_keys_of(r, room_id);
	g_hash_table_remove(r->announced, room_id);
	g_hash_table_remove(r->rooms, room_id);
	return true;
}

void rooms_apply_key(struct rooms *r, struct store_key *key)
{
	const struct store_key *old = g_hash_table_lookup(r->keys, key->key_id);

	/* A revocation already seen stays (the store keeps the first one). */
	if (old && old->revoked_at && !key->revoked_at)
		key->revoked_at = old->revoked_at;
	g_hash_table_replace(r->keys, key->key_id, key);
}

bool rooms_apply_revoke(struct rooms *r, const char *key_id, gint64 when)
{
	struct store_key *key = g_hash_table_lookup(r->keys, key_id);

	if (!key || key->revoked_at)
		return false;
	key->revoked_at = when;
	return true;
}

static void add_member(struct rooms *r, struct store_member *m)
{
	GHashTable *set = g_hash_table_lookup(r->members, m->room_id);

	if (!set) {
		set = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)store_member_free);
		g_hash_table_insert(r->members, g_strdup(m->room_id), set);
	}
	if (g_hash_table_contains(set, m->account))
		store_member_free(m);
	else
		g_hash_table_replace(set, m->account, m);
}

void rooms_apply_member(struct rooms *r, const char *room_id, const char *account, gint64 added_at,
			bool add)
{
	if (add) {
		if (!g_hash_table_contains(r->rooms, room_id))
			return;
		struct store_member *m = g_new0(struct store_member, 1);
		m->room_id = g_strdup(room_id);
		m->account = g_strdup(account);
		m->added_at = added_at;
		add_member(r, m);
		return;
	}
	GHashTable *set = g_hash_table_lookup(r->members, room_id);
	if (set && g_hash_table_remove(set, account) && !g_hash_table_size(set))
		g_hash_table_remove(r->members, room_id);
}

void rooms_replace(struct rooms *r, struct store_snapshot *snap, GHashTable *keep, GPtrArray *gone,
		   GPtrArray *revoked)
{
	g_autoptr(GHashTable) room_ids = g_hash_table_new(g_str_hash, g_str_equal);
	g_autoptr(GHashTable) key_ids = g_hash_table_new(g_str_hash, g_str_equal);
	g_autoptr(GPtrArray) drop = g_ptr_array_new_with_free_func(g_free);
	GHashTableIter it;
	gpointer k, v;

	for (guint i = 0; i < snap->rooms->len; i++)
		g_hash_table_add(room_ids, ((struct store_room *)g_ptr_array_index(snap->rooms, i))->id);
	for (guint i = 0; i < snap->keys->len; i++)
		g_hash_table_add(key_ids, ((struct store_key *)g_ptr_array_index(snap->keys, i))->key_id);

	/* What is here and no longer there was deleted, or lost with Redis. */
	g_hash_table_iter_init(&it, r->rooms);
	while (g_hash_table_iter_next(&it, &k, NULL))
		if (!g_hash_table_contains(room_ids, k) && !g_hash_table_contains(r->deleting, k) &&
		    !(keep && g_hash_table_contains(keep, k)))
			g_ptr_array_add(drop, g_strdup(k));
	for (guint i = 0; i < drop->len; i++) {
		rooms_apply_delete(r, g_ptr_array_index(drop, i));
		g_ptr_array_add(gone, g_strdup(g_ptr_array_index(drop, i)));
	}
	g_ptr_array_set_size(drop, 0);
	g_hash_table_iter_init(&it, r->keys);
	while (g_hash_table_iter_next(&it, &k, &v))
		if (!g_hash_table_contains(key_ids, k) && !g_hash_table_contains(r->revoking, k) &&
		    !(keep && g_hash_table_contains(keep, k)))
			g_ptr_array_add(drop, g_strdup(k));
	for (guint i = 0; i < drop->len; i++) {
		g_hash_table_remove(r->keys, g_ptr_array_index(drop, i));
		g_ptr_array_add(revoked, g_strdup(g_ptr_array_index(drop, i)));
	}

	while (snap->rooms->len) {
		struct store_room *room = g_ptr_array_steal_index_fast(snap->rooms, snap->rooms->len - 1);
		if ((keep && g_hash_table_contains(keep, room->id)) || g_hash_table_contains(r->deleting, room->id))
			store_room_free(room);
		else
			rooms_apply_room(r, room);
	}
	while (snap->keys->len) {
		struct store_key *key = g_ptr_array_steal_index_fast(snap->keys, snap->keys->len - 1);
		const struct store_key *old = g_hash_table_lookup(r->keys, key->key_id);
		/* A key of a room not here (deleted since, or kept out) goes too. */
		if ((keep && g_hash_table_contains(keep, key->key_id)) ||
		    (key->room_id && !g_hash_table_contains(r->rooms, key->room_id))) {
			store_key_free(key);
			continue;
		}
		if (key->revoked_at && old && !old->revoked_at)
			g_ptr_array_add(revoked, g_strdup(key->key_id));
		rooms_apply_key(r, key);
	}
	g_hash_table_remove_all(r->members);
	while (snap->members->len)
		add_member(r, g_ptr_array_steal_index_fast(snap->members, snap->members->len - 1));
}
