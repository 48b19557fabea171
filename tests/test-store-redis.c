/* Unit tests: the Redis backend of the room store (src/store_redis.c)
 * through the store's queue, against a real redis-server: records round
 * trip, cascades, expiry as Redis TTLs, notices in the same transaction,
 * key prefixes and database indexes keep deployments apart, and a Redis
 * that is gone fails writes with the address and the reason. */
#include "store/store.h"
#include "store/store_redis.h"
#include "testredis.h"

#include <errno.h>
#include <string.h>

struct fx {
	struct testredis *redis;
	uv_loop_t loop;
	struct store *st;
	int64_t now;
};

struct done {
	unsigned n, ok;
	int status;
	char *message;
};

static void on_done(int status, const GError *err, void *data)
{
	struct done *d = data;
	d->n++;
	d->status = status;
	if (status >= 0) {
		d->ok++;
		return;
	}
	g_assert_nonnull(err);
	g_free(d->message);
	d->message = g_strdup(err->message);
}

static void wait_done(struct fx *fx, struct done *d, unsigned want)
{
	while (d->n < want)
		uv_run(&fx->loop, UV_RUN_ONCE);
	g_assert_cmpuint(d->n, ==, want);
}

static struct store *open_store(struct fx *fx, const char *url, const char *prefix)
{
	const struct store_params p = { .redis = url, .key_prefix = prefix, .instance_id = "unit" };
	g_autoptr(GError) err = NULL;
	struct store *st = NULL;
	g_assert_cmpint(store_open_with(&fx->loop, "redis", &p, &st, &err), ==, 0);
	g_assert_no_error(err);
	return st;
}

/* The handle is released by the loop's next turn (the fixture's store
 * keeps the loop alive: no UV_RUN_DEFAULT here). */
static void close_store(struct fx *fx, struct store *st)
{
	g_assert_cmpint(store_close(st, STORE_CLOSE_TIMEOUT_MS), ==, 0);
	uv_run(&fx->loop, UV_RUN_NOWAIT);
}

static void fx_setup(struct fx *fx, gconstpointer unused)
{
	fx->redis = testredis_start();
	g_assert_cmpint(uv_loop_init(&fx->loop), ==, 0);
	fx->now = g_get_real_time() / G_USEC_PER_SEC;
	fx->st = open_store(fx, fx->redis->url, "u:");
}

static void fx_teardown(struct fx *fx, gconstpointer unused)
{
	if (fx->st)
		close_store(fx, fx->st);
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	g_assert_cmpint(uv_loop_close(&fx->loop), ==, 0);
	testredis_free(fx->redis);
}

static struct store_room *new_room(struct fx *fx, const char *id, int64_t expires_at)
{
	struct store_room *room = g_new0(struct store_room, 1);
	char token[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];
	room->id = g_strdup(id);
	room->created_by = g_strdup("sub-1");
	room->created_at = fx->now;
	room->expires_at = expires_at;
	g_assert_cmpint(store_room_mint(room, token), ==, 0);
	return room;
}

static struct store_key *new_key(const char *key_id, const char *room_id, const char *account)
{
	struct store_key *key = g_new0(struct store_key, 1);
	char secret[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];
	key->key_id = g_strdup(key_id);
	key->room_id = g_strdup(room_id);
	key->account = g_strdup(account);
	key->name = g_strdup("worker key");
	key->created_at = 1700000100;
	g_assert_cmpint(store_key_mint(key, secret), ==, 0);
	return key;
}

static void snap_free(struct store_snapshot *s)
{
	g_ptr_array_unref(s->rooms);
	g_ptr_array_unref(s->keys);
	g_ptr_array_unref(s->members);
	g_ptr_array_unref(s->pubkeys);
}

/* Everything the store holds now, read on its thread (store_reload). */
struct loaded {
	bool done;
	int status;
	struct store_snapshot snap;
};

static void on_loaded(int status, const GError *err, struct store_snapshot *snap, void *data)
{
	struct loaded *l = data;
	l->done = true;
	l->status = status;
	if (status < 0)
		return;
	l->snap = *snap;
	/* Ours now: the job frees what it still holds. */
	snap->rooms = snap->keys = snap->members = snap->pubkeys = NULL;
}

static struct store_snapshot reload(struct fx *fx, struct store *st)
{
	struct loaded l = { 0 };
	g_assert_cmpint(store_reload(st, on_loaded, &l), ==, 0);
	while (!l.done)
		uv_run(&fx->loop, UV_RUN_ONCE);
	g_assert_cmpint(l.status, ==, 0);
	return l.snap;
}

static const void *find(GPtrArray *a, size_t id_offset, const char *id)
{
	for (guint i = 0; i < a->len; i++) {
		const char *const *p = (const char *const *)((const char *)g_ptr_array_index(a, i) + id_offset);
		if (g_strcmp0(*p, id) == 0)
			return g_ptr_array_index(a, i);
	}
	return NULL;
}
#define FIND_ROOM(a, want) ((const struct store_room *)find(a, G_STRUCT_OFFSET(struct store_room, id), want))
#define FIND_KEY(a, want) ((const struct store_key *)find(a, G_STRUCT_OFFSET(struct store_key, key_id), want))

static long long redis_int(struct fx *fx, const char *fmt, const char *arg)
{
	redisReply *rep = testredis_command(fx->redis, fmt, arg);
	g_assert_nonnull(rep);
	g_assert_cmpint(rep->type, ==, REDIS_REPLY_INTEGER);
	long long v = rep->integer;
	freeReplyObject(rep);
	return v;
}

static void test_round_trip(struct fx *fx, gconstpointer unused)
{
	struct done d = { 0 };
	struct store_room *r[3] = { new_room(fx, "r-plain", 0), new_room(fx, "r-full", fx->now + 600),
				    new_room(fx, "r-gone", 0) };
	struct store_key *k[4] = { new_key("k1", "r-plain", NULL), new_key("k2", "r-full", NULL),
				   new_key("k3", "r-gone", NULL), new_key("ka", NULL, "jwt:lab:bob") };
	r[1]->name = g_strdup("Lab \"A\" — ünïcode");
	r[1]->max_peers = 12;
	r[1]->open_to_issuer = true;

	for (int i = 0; i < 3; i++)
		g_assert_cmpint(store_put_room(fx->st, r[i], on_done, &d), ==, 0);
	for (int i = 0; i < 4; i++)
		g_assert_cmpint(store_put_key(fx->st, k[i], on_done, &d), ==, 0);
	const struct store_member m = { .room_id = "r-full", .account = "jwt:lab:bob", .added_at = 42 };
	g_assert_cmpint(store_put_member(fx->st, &m, on_done, &d), ==, 0);
	wait_done(fx, &d, 8);
	g_assert_cmpuint(d.ok, ==, 8);

	/* Keys carry the prefix and the room's hash tag; the expiring room's
	 * keys go an hour (the ROOM_EXPIRED retention) after it. */
	g_assert_cmpint(redis_int(fx, "EXISTS %s", "u:{r-plain}:room"), ==, 1);
	g_assert_cmpint(redis_int(fx, "TTL %s", "u:{r-plain}:room"), ==, -1);
	long long ttl = redis_int(fx, "TTL %s", "u:{r-full}:room");
	g_assert_cmpint(ttl, >, 3600 + 590);
	g_assert_cmpint(ttl, <=, 3600 + 600);
	g_assert_cmpint(redis_int(fx, "TTL %s", "u:{r-full}:keys"), >, 3600 + 590);
	g_assert_cmpint(redis_int(fx, "TTL %s", "u:{r-full}:members"), >, 3600 + 590);

	/* Changes: a delete takes its keys, a second revoke keeps the first
	 * time; writes naming nothing are -ENOENT and say so. */
	g_assert_cmpint(store_delete_room(fx->st, "r-gone", on_done, &d), ==, 0);
	g_assert_cmpint(store_revoke_key(fx->st, "k1", 1700000500, on_done, &d), ==, 0);
	g_assert_cmpint(store_revoke_key(fx->st, "k1", 1700000900, on_done, &d), ==, 0);
	g_assert_cmpint(store_revoke_key(fx->st, "ka", 1700000600, on_done, &d), ==, 0);
	wait_done(fx, &d, 12);
	g_assert_cmpuint(d.ok, ==, 12);
	g_assert_cmpint(store_delete_room(fx->st, "r-gone", on_done, &d), ==, 0);
	wait_done(fx, &d, 13);
	g_assert_cmpint(d.status, ==, -ENOENT);
	g_assert_nonnull(strstr(d.message, fx->redis->url));
	g_assert_cmpint(store_revoke_key(fx->st, "k3", 1, on_done, &d), ==, 0); /* went with its room */
	wait_done(fx, &d, 14);
	g_assert_cmpint(d.status, ==, -ENOENT);
	struct store_key *orphan = new_key("k-orphan", "no-such-room", NULL);
	g_assert_cmpint(store_put_key(fx->st, orphan, on_done, &d), ==, 0);
	const struct store_member m2 = { .room_id = "no-such-room", .account = "jwt:lab:x", .added_at = 1 };
	g_assert_cmpint(store_put_member(fx->st, &m2, on_done, &d), ==, 0);
	g_assert_cmpint(store_delete_member(fx->st, "r-plain", "jwt:lab:nobody", on_done, &d), ==, 0);
	wait_done(fx, &d, 17);
	g_assert_cmpuint(d.ok, ==, 12);
	g_assert_cmpint(store_ping(fx->st), ==, 0); /* the caller's mistakes, not the backend's */
	store_key_free(orphan);

	/* Another store (another instance) reads exactly that. */
	struct store *other = open_store(fx, fx->redis->url, "u:");
	struct store_snapshot s = reload(fx, other);
	g_assert_cmpuint(s.rooms->len, ==, 2);
	const struct store_room *full = FIND_ROOM(s.rooms, "r-full");
	g_assert_nonnull(full);
	g_assert_cmpstr(full->name, ==, r[1]->name);
	g_assert_cmpmem(full->token_hash, SECRET_HASH_LEN, r[1]->token_hash, SECRET_HASH_LEN);
	g_assert_cmpuint(full->max_peers, ==, 12);
	g_assert_true(full->open_to_issuer);
	g_assert_cmpint(full->expires_at, ==, r[1]->expires_at);
	g_assert_null(FIND_ROOM(s.rooms, "r-gone"));
	g_assert_cmpuint(s.keys->len, ==, 3);
	g_assert_cmpint(FIND_KEY(s.keys, "k1")->revoked_at, ==, 1700000500);
	g_assert_cmpint(FIND_KEY(s.keys, "k2")->revoked_at, ==, 0);
	g_assert_cmpmem(FIND_KEY(s.keys, "k2")->key_hash, SECRET_HASH_LEN, k[1]->key_hash, SECRET_HASH_LEN);
	g_assert_cmpstr(FIND_KEY(s.keys, "ka")->account, ==, "jwt:lab:bob");
	g_assert_null(FIND_KEY(s.keys, "ka")->room_id);
	g_assert_cmpint(FIND_KEY(s.keys, "ka")->revoked_at, ==, 1700000600);
	g_assert_cmpuint(s.members->len, ==, 1);
	g_assert_cmpint(((struct store_member *)g_ptr_array_index(s.members, 0))->added_at, ==, 42);
	snap_free(&s);
	close_store(fx, other);

	/* Another prefix (another deployment on the same Redis) sees nothing. */
	other = open_store(fx, fx->redis->url, "v:");
	s = reload(fx, other);
	g_assert_cmpuint(s.rooms->len + s.keys->len + s.members->len, ==, 0);
	snap_free(&s);
	close_store(fx, other);

	for (int i = 0; i < 3; i++)
		store_room_free(r[i]);
	for (int i = 0; i < 4; i++)
		store_key_free(k[i]);
	g_free(d.message);
}

/* Public keys come back in the order they were published. */
static void test_pubkeys(struct fx *fx, gconstpointer unused)
{
	struct done d = { 0 };
	struct store_pubkey a = { .account = "jwt:lab:ada", .public_key = "AAA", .device_name = "laptop",
				  .created_at = 20 };
	struct store_pubkey b = { .account = "jwt:lab:bob", .public_key = "BBB", .username = "Bob", .created_at = 5 };
	g_assert_cmpint(store_put_pubkey(fx->st, &a, on_done, &d), ==, 0);
	g_assert_cmpint(store_put_pubkey(fx->st, &b, on_done, &d), ==, 0);
	a.device_name = "desktop"; /* a replacement, by account and key */
	g_assert_cmpint(store_put_pubkey(fx->st, &a, on_done, &d), ==, 0);
	wait_done(fx, &d, 3);
	g_assert_cmpuint(d.ok, ==, 3);
	struct store_snapshot s = reload(fx, fx->st);
	g_assert_cmpuint(s.pubkeys->len, ==, 2);
	const struct store_pubkey *x = g_ptr_array_index(s.pubkeys, 0), *y = g_ptr_array_index(s.pubkeys, 1);
	g_assert_cmpstr(x->public_key, ==, "BBB");
	g_assert_cmpstr(x->username, ==, "Bob");
	g_assert_cmpstr(y->device_name, ==, "desktop");
	snap_free(&s);
}

/* Rooms Redis expired are dropped from the index by a purge, with the key
 * index entries of their keys. */
static void test_purge(struct fx *fx, gconstpointer unused)
{
	struct done d = { 0 };
	struct store_room *keep = new_room(fx, "keep", 0), *gone = new_room(fx, "gone", 0);
	struct store_key *k = new_key("k-gone", "gone", NULL);

	g_assert_cmpint(store_put_room(fx->st, keep, on_done, &d), ==, 0);
	g_assert_cmpint(store_put_room(fx->st, gone, on_done, &d), ==, 0);
	g_assert_cmpint(store_put_key(fx->st, k, on_done, &d), ==, 0);
	wait_done(fx, &d, 3);
	/* As its TTL would: the room's keys vanish, the indexes stay. */
	redisReply *rep = testredis_command(fx->redis, "DEL u:{gone}:room u:{gone}:keys");
	freeReplyObject(rep);
	g_assert_cmpint(redis_int(fx, "SCARD %s", "u:rooms"), ==, 2);
	g_assert_cmpint(store_purge_expired(fx->st, fx->now, on_done, &d), ==, 0);
	wait_done(fx, &d, 4);
	g_assert_cmpint(d.status, ==, 1);
	g_assert_cmpint(redis_int(fx, "SCARD %s", "u:rooms"), ==, 1);
	g_assert_cmpint(redis_int(fx, "HLEN %s", "u:keyroom"), ==, 0);
	store_room_free(keep);
	store_room_free(gone);
	store_key_free(k);
	g_free(d.message);
}

/* Each write publishes one notice, after it, on PREFIXchanges. */
static void test_notices(struct fx *fx, gconstpointer unused)
{
	redisContext *sub = redisConnect("127.0.0.1", fx->redis->port);
	struct done d = { 0 };
	redisReply *rep;

	g_assert_true(sub && !sub->err);
	rep = redisCommand(sub, "SUBSCRIBE u:" STORE_REDIS_CHANNEL);
	freeReplyObject(rep);
	struct store_room *room = new_room(fx, "n1", 0);
	g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	g_assert_cmpint(store_delete_room(fx->st, "n1", on_done, &d), ==, 0);
	g_assert_cmpint(store_delete_room(fx->st, "n1", on_done, &d), ==, 0); /* nothing: no notice */
	g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	wait_done(fx, &d, 4);
	const char *want[] = { "\"op\":\"room\"", "\"op\":\"delete_room\"", "\"op\":\"room\"" };
	for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
		g_assert_cmpint(redisGetReply(sub, (void **)&rep), ==, REDIS_OK);
		g_assert_cmpuint(rep->elements, ==, 3);
		g_test_message("notice: %s", rep->element[2]->str);
		g_assert_nonnull(strstr(rep->element[2]->str, want[i]));
		g_assert_nonnull(strstr(rep->element[2]->str, "\"from\":\"unit\""));
		/* Hashes only: the token itself is never stored nor sent. */
		g_assert_null(strstr(rep->element[2]->str, "\"token\""));
		freeReplyObject(rep);
	}
	redisFree(sub);
	store_room_free(room);
	g_free(d.message);
}

/* redis://HOST:PORT/DB and unix:/PATH reach the same server: DB 3 is
 * apart from DB 0. */
static void test_db_and_unix(struct fx *fx, gconstpointer unused)
{
	struct done d = { 0 };
	g_autofree char *db3 = g_strdup_printf("%s/3", fx->redis->url);
	struct store *st3 = open_store(fx, db3, "u:"), *su = open_store(fx, fx->redis->unix_url, "u:");
	struct store_room *room = new_room(fx, "in-db3", 0);

	g_assert_cmpint(store_put_room(st3, room, on_done, &d), ==, 0);
	wait_done(fx, &d, 1);
	g_assert_cmpuint(d.ok, ==, 1);
	struct store_snapshot s = reload(fx, su); /* DB 0, by the socket */
	g_assert_cmpuint(s.rooms->len, ==, 0);
	snap_free(&s);
	s = reload(fx, st3);
	g_assert_cmpuint(s.rooms->len, ==, 1);
	snap_free(&s);
	close_store(fx, st3);
	close_store(fx, su);
	store_room_free(room);
}

/* Redis gone: writes fail at once, naming the address, and the store says
 * it is unwell; back (empty), the next write works and it is well again. */
static void test_outage(struct fx *fx, gconstpointer unused)
{
	struct done d = { 0 };
	struct store_room *room = new_room(fx, "r", 0);

	testredis_kill(fx->redis);
	gint64 t0 = g_get_monotonic_time();
	g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	wait_done(fx, &d, 1);
	g_test_message("write with Redis down failed in %" G_GINT64_FORMAT " us: %s",
		       g_get_monotonic_time() - t0, d.message);
	g_assert_cmpint(d.status, <, 0);
	g_assert_cmpint(d.status, !=, -ENOENT);
	g_assert_nonnull(strstr(d.message, fx->redis->url));
	g_assert_cmpint(store_ping(fx->st), <, 0);
	testredis_restart(fx->redis);
	g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	wait_done(fx, &d, 2);
	g_assert_cmpint(d.status, ==, 0);
	g_assert_cmpint(store_ping(fx->st), ==, 0);
	store_room_free(room);
	g_free(d.message);
}

#define ADD(path, fn) g_test_add(path, struct fx, NULL, fx_setup, fn, fx_teardown)

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	alarm(60); /* a lost completion would hang the loop */
	ADD("/store-redis/round-trip", test_round_trip);
	ADD("/store-redis/public-keys", test_pubkeys);
	ADD("/store-redis/purge", test_purge);
	ADD("/store-redis/notices", test_notices);
	ADD("/store-redis/db-and-unix", test_db_and_unix);
	ADD("/store-redis/outage", test_outage);
	return g_test_run();
}
