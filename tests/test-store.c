/* Unit tests: the room store (async front and SQLite backend) on a real
 * libuv loop, in a temporary state directory. */
#include "util/metrics.h"
#include "store/rooms.h"
#include "store/store.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

struct fx {
	char *tmp; /* removed at teardown */
	char *dir; /* the state directory: TMP/state, created by the store */
	char *db;
	uv_loop_t loop;
	struct store *st;
};

/* Completions of a batch of writes. */
struct done {
	unsigned n, ok, failed;
	int status; /* the last one */
	char *message;
	struct store *resubmit_to; /* when set: a completion tries to queue more */
	int resubmit;
};

static void rm_rf(const char *path)
{
	GDir *dir = g_dir_open(path, 0, NULL);
	const char *name;

	if (dir) {
		g_chmod(path, 0700);
		while ((name = g_dir_read_name(dir))) {
			g_autofree char *child = g_build_filename(path, name, NULL);
			rm_rf(child);
		}
		g_dir_close(dir);
		g_rmdir(path);
	} else {
		g_unlink(path);
	}
}

static void fx_setup(struct fx *fx, gconstpointer unused)
{
	fx->tmp = g_dir_make_tmp("test-store-XXXXXX", NULL);
	g_assert_nonnull(fx->tmp);
	fx->dir = g_build_filename(fx->tmp, "state", NULL);
	fx->db = g_build_filename(fx->dir, "rooms.db", NULL);
	g_assert_cmpint(uv_loop_init(&fx->loop), ==, 0);
}

static void fx_open(struct fx *fx)
{
	g_autoptr(GError) err = NULL;
	g_assert_cmpint(store_open(&fx->loop, "sqlite", fx->dir, &fx->st, &err), ==, 0);
	g_assert_no_error(err);
}

static void fx_close(struct fx *fx)
{
	g_assert_cmpint(store_close(fx->st, STORE_CLOSE_TIMEOUT_MS), ==, 0);
	fx->st = NULL;
	uv_run(&fx->loop, UV_RUN_DEFAULT); /* releases the handle */
}

static void fx_teardown(struct fx *fx, gconstpointer unused)
{
	if (fx->st)
		fx_close(fx);
	g_assert_cmpint(uv_loop_close(&fx->loop), ==, 0);
	rm_rf(fx->tmp);
	g_free(fx->tmp);
	g_free(fx->dir);
	g_free(fx->db);
}

static void on_done(int status, const GError *err, void *data)
{
	struct done *d = data;

	d->n++;
	d->status = status;
	if (status < 0) {
		d->failed++;
		g_assert_nonnull(err);
		g_free(d->message);
		d->message = g_strdup(err->message);
	} else {
		d->ok++;
		g_assert_null(err);
	}
	if (d->resubmit_to) {
		struct store_room room = { .id = "late", .created_by = "test" };
		d->resubmit = store_put_room(d->resubmit_to, &room, NULL, NULL);
	}
}

static void done_clear(struct done *d)
{
	g_free(d->message);
	memset(d, 0, sizeof *d);
}

/* Runs the loop until D has seen WANT completions: no sleeping. */
static void wait_done(struct fx *fx, struct done *d, unsigned want)
{
	while (d->n < want)
		uv_run(&fx->loop, UV_RUN_ONCE);
	g_assert_cmpuint(d->n, ==, want);
}

/* Loads everything, indexed by id. */
static void load(struct fx *fx, GHashTable **rooms, GHashTable **keys)
{
	g_autoptr(GError) err = NULL;
	GPtrArray *r_list, *k_list;

	g_assert_cmpint(store_load(fx->st, &r_list, &k_list, &err), ==, 0);
	g_assert_no_error(err);
	*rooms = g_hash_table_new_full(g_str_hash, g_str_equal, NULL,
				       (GDestroyNotify)store_room_free);
	*keys = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify)store_key_free);
	while (r_list->len) {
		struct store_room *room = g_ptr_array_steal_index_fast(r_list, 0);
		g_assert_true(g_hash_table_insert(*rooms, room->id, room));
	}
	while (k_list->len) {
		struct store_key *key = g_ptr_array_steal_index_fast(k_list, 0);
		g_assert_true(g_hash_table_insert(*keys, key->key_id, key));
	}
	g_ptr_array_unref(r_list);
	g_ptr_array_unref(k_list);
}

static void assert_room_eq(const struct store_room *a, const struct store_room *b)
{
	g_assert_nonnull(a);
	g_assert_nonnull(b);
	g_assert_cmpstr(a->id, ==, b->id);
	g_assert_cmpstr(a->name, ==, b->name);
	g_assert_cmpmem(a->token_hash, SECRET_HASH_LEN, b->token_hash, SECRET_HASH_LEN);
	g_assert_cmpstr(a->created_by, ==, b->created_by);
	g_assert_cmpint(a->created_at, ==, b->created_at);
	g_assert_cmpint(a->expires_at, ==, b->expires_at);
	g_assert_cmpuint(a->max_peers, ==, b->max_peers);
	g_assert_cmpint(a->open_to_issuer, ==, b->open_to_issuer);
}

static void assert_key_eq(const struct store_key *a, const struct store_key *b)
{
	g_assert_nonnull(a);
	g_assert_nonnull(b);
	g_assert_cmpstr(a->key_id, ==, b->key_id);
	g_assert_cmpmem(a->key_hash, SECRET_HASH_LEN, b->key_hash, SECRET_HASH_LEN);
	g_assert_cmpstr(a->room_id, ==, b->room_id);
	g_assert_cmpstr(a->name, ==, b->name);
	g_assert_cmpint(a->created_at, ==, b->created_at);
	g_assert_cmpint(a->expires_at, ==, b->expires_at);
	g_assert_cmpint(a->revoked_at, ==, b->revoked_at);
}

/* A room with a fresh id and token hash. */
static struct store_room *new_room(const char *id, int64_t expires_at)
{
	struct store_room *room = g_new0(struct store_room, 1);
	char token[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];

	room->id = g_strdup(id);
	room->created_by = g_strdup("sub-1");
	room->created_at = 1700000000;
	room->expires_at = expires_at;
	g_assert_cmpint(store_room_mint(room, token), ==, 0);
	return room;
}

static struct store_key *new_key(const char *key_id, const char *room_id)
{
	struct store_key *key = g_new0(struct store_key, 1);
	char secret[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];

	key->key_id = g_strdup(key_id);
	key->room_id = g_strdup(room_id);
	key->name = g_strdup("worker key");
	key->created_at = 1700000100;
	g_assert_cmpint(store_key_mint(key, secret), ==, 0);
	return key;
}

static void test_secret(void)
{
	/* FIPS 180-2 test vector. */
	static const uint8_t abc[SECRET_HASH_LEN] = {
		0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
		0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
	};
	uint8_t h[SECRET_HASH_LEN], h2[SECRET_HASH_LEN];
	char token[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];
	struct store_room room = { 0 };
	struct store_key key = { .key_id = "fixed" };

	g_assert_cmpint(secret_hash("abc", h), ==, 0);
	g_assert_cmpmem(h, sizeof h, abc, sizeof abc);
	g_assert_true(secret_hash_equal(h, abc));
	h[31] ^= 1;
	g_assert_false(secret_hash_equal(h, abc));

	/* 64-bit ids, 128-bit tokens, only the hash kept. */
	g_assert_cmpint(store_room_mint(&room, token), ==, 0);
	g_assert_cmpuint(strlen(room.id), ==, 2 * SECRET_ID_BYTES);
	g_assert_cmpuint(strlen(token), ==, 2 * SECRET_TOKEN_BYTES);
	g_assert_cmpint(secret_hash(token, h2), ==, 0);
	g_assert_true(secret_hash_equal(h2, room.token_hash));
	g_free(room.id);
	g_assert_cmpint(store_key_mint(&key, token), ==, 0);
	g_assert_cmpstr(key.key_id, ==, "fixed"); /* an id given is kept */
	g_assert_cmpint(secret_hash(token, h2), ==, 0);
	g_assert_true(secret_hash_equal(h2, key.key_hash));
}

static void test_round_trip(struct fx *fx, gconstpointer unused)
{
	g_autoptr(GHashTable) rooms = NULL, keys = NULL;
	struct done d = { 0 };
	struct stat sb;
	struct store_room *r[3] = { new_room("r-plain", 0), new_room("r-full", 1700007200),
				    new_room("r-gone", 0) };
	struct store_key *k[3] = { new_key("k1", "r-plain"), new_key("k2", "r-full"),
				   new_key("k3", "r-gone") };

	r[1]->name = g_strdup("Lab \"A\" — ünïcode");
	r[1]->max_peers = 12;
	r[1]->open_to_issuer = true;
	k[1]->expires_at = 1700086400;
	g_clear_pointer(&k[2]->name, g_free);

	fx_open(fx);
	g_assert_cmpint(g_stat(fx->dir, &sb), ==, 0);
	g_assert_cmpint(sb.st_mode & 0777, ==, 0700);
	load(fx, &rooms, &keys);
	g_assert_cmpuint(g_hash_table_size(rooms), ==, 0);
	g_clear_pointer(&rooms, g_hash_table_unref);
	g_clear_pointer(&keys, g_hash_table_unref);

	for (int i = 0; i < 3; i++)
		g_assert_cmpint(store_put_room(fx->st, r[i], on_done, &d), ==, 0);
	for (int i = 0; i < 3; i++)
		g_assert_cmpint(store_put_key(fx->st, k[i], on_done, &d), ==, 0);
	wait_done(fx, &d, 6);
	g_assert_cmpuint(d.ok, ==, 6);
	g_assert_cmpuint(store_pending(fx->st), ==, 0);
	g_assert_cmpint(store_ping(fx->st), ==, 0);
	fx_close(fx);

	fx_open(fx);
	load(fx, &rooms, &keys);
	g_assert_cmpuint(g_hash_table_size(rooms), ==, 3);
	g_assert_cmpuint(g_hash_table_size(keys), ==, 3);
	for (int i = 0; i < 3; i++) {
		assert_room_eq(g_hash_table_lookup(rooms, r[i]->id), r[i]);
		assert_key_eq(g_hash_table_lookup(keys, k[i]->key_id), k[i]);
	}
	g_clear_pointer(&rooms, g_hash_table_unref);
	g_clear_pointer(&keys, g_hash_table_unref);

	/* Changes: an update, a delete (its key goes too), two revokes (the
	 * second keeps the first time), and writes naming nothing. */
	done_clear(&d);
	g_free(r[0]->name);
	r[0]->name = g_strdup("renamed");
	r[0]->max_peers = 3;
	g_assert_cmpint(store_put_room(fx->st, r[0], on_done, &d), ==, 0);
	g_assert_cmpint(store_delete_room(fx->st, "r-gone", on_done, &d), ==, 0);
	g_assert_cmpint(store_revoke_key(fx->st, "k1", 1700000500, on_done, &d), ==, 0);
	g_assert_cmpint(store_revoke_key(fx->st, "k1", 1700000900, on_done, &d), ==, 0);
	wait_done(fx, &d, 4);
	g_assert_cmpuint(d.ok, ==, 4);

	struct store_key *orphan = new_key("k-orphan", "no-such-room");
	done_clear(&d);
	g_assert_cmpint(store_delete_room(fx->st, "no-such-room", on_done, &d), ==, 0);
	wait_done(fx, &d, 1);
	g_assert_cmpint(d.status, ==, -ENOENT);
	g_assert_nonnull(strstr(d.message, fx->db));
	g_assert_nonnull(strstr(d.message, "no-such-room"));
	g_assert_cmpint(store_revoke_key(fx->st, "no-such-key", 1, on_done, &d), ==, 0);
	wait_done(fx, &d, 2);
	g_assert_cmpint(d.status, ==, -ENOENT);
	g_assert_cmpint(store_put_key(fx->st, orphan, on_done, &d), ==, 0);
	wait_done(fx, &d, 3);
	g_assert_cmpint(d.status, ==, -ENOENT);
	g_assert_nonnull(strstr(d.message, "no room \"no-such-room\""));
	/* The caller's mistakes say nothing about the backend's health. */
	g_assert_cmpint(store_ping(fx->st), ==, 0);
	store_key_free(orphan);

	/* Refused at once: no id. */
	struct store_room anonymous = { .created_by = "x" };
	g_assert_cmpint(store_put_room(fx->st, &anonymous, on_done, &d), ==, -EINVAL);
	g_assert_cmpint(store_delete_room(fx->st, "", on_done, &d), ==, -EINVAL);
	fx_close(fx);

	fx_open(fx);
	load(fx, &rooms, &keys);
	g_assert_cmpuint(g_hash_table_size(rooms), ==, 2);
	g_assert_cmpuint(g_hash_table_size(keys), ==, 2);
	assert_room_eq(g_hash_table_lookup(rooms, "r-plain"), r[0]);
	assert_room_eq(g_hash_table_lookup(rooms, "r-full"), r[1]);
	g_assert_null(g_hash_table_lookup(rooms, "r-gone"));
	g_assert_null(g_hash_table_lookup(keys, "k3"));
	k[0]->revoked_at = 1700000500;
	assert_key_eq(g_hash_table_lookup(keys, "k1"), k[0]);
	assert_key_eq(g_hash_table_lookup(keys, "k2"), k[1]);

	done_clear(&d);
	for (int i = 0; i < 3; i++) {
		store_room_free(r[i]);
		store_key_free(k[i]);
	}
}

static void test_purge(struct fx *fx, gconstpointer unused)
{
	g_autoptr(GHashTable) rooms = NULL, keys = NULL;
	const int64_t now = 1700003600;
	struct done d = { 0 };
	/* Expired: in the past, and exactly now.  Kept: never, future. */
	struct store_room *r[] = { new_room("never", 0), new_room("past", now - 1),
				   new_room("now", now), new_room("future", now + 1) };
	struct store_key *k[] = { new_key("k-never", "never"), new_key("k-past", "past"),
				  new_key("k-now", "now"), new_key("k-future", "future") };

	fx_open(fx);
	for (size_t i = 0; i < G_N_ELEMENTS(r); i++) {
		g_assert_cmpint(store_put_room(fx->st, r[i], on_done, &d), ==, 0);
		g_assert_cmpint(store_put_key(fx->st, k[i], on_done, &d), ==, 0);
	}
	wait_done(fx, &d, 8);
	g_assert_cmpuint(d.ok, ==, 8);
	g_assert_cmpint(store_purge_expired(fx->st, now, on_done, &d), ==, 0);
	wait_done(fx, &d, 9);
	g_assert_cmpint(d.status, ==, 2); /* rooms removed */
	g_assert_cmpint(store_purge_expired(fx->st, now, on_done, &d), ==, 0);
	wait_done(fx, &d, 10);
	g_assert_cmpint(d.status, ==, 0);
	fx_close(fx);

	fx_open(fx);
	load(fx, &rooms, &keys);
	g_assert_cmpuint(g_hash_table_size(rooms), ==, 2);
	g_assert_true(g_hash_table_contains(rooms, "never"));
	g_assert_true(g_hash_table_contains(rooms, "future"));
	g_assert_cmpuint(g_hash_table_size(keys), ==, 2);
	g_assert_true(g_hash_table_contains(keys, "k-never"));
	g_assert_true(g_hash_table_contains(keys, "k-future"));

	done_clear(&d);
	for (size_t i = 0; i < G_N_ELEMENTS(r); i++) {
		store_room_free(r[i]);
		store_key_free(k[i]);
	}
}

/* Whether NEEDLE occurs in any file of DIR. */
static bool dir_contains(const char *dir, const void *needle, size_t len)
{
	GDir *d = g_dir_open(dir, 0, NULL);
	const char *name;
	bool found = false;

	g_assert_nonnull(d);
	while (!found && (name = g_dir_read_name(d))) {
		g_autofree char *path = g_build_filename(dir, name, NULL);
		g_autofree char *data = NULL;
		gsize size;
		if (g_file_get_contents(path, &data, &size, NULL))
			found = memmem(data, size, needle, len) != NULL;
	}
	g_dir_close(d);
	return found;
}

static void test_token_not_stored(struct fx *fx, gconstpointer unused)
{
	char token[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];
	char secret[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)];
	struct store_room room = { .created_by = "sub-1", .created_at = 1 };
	struct store_key key = { .room_id = NULL, .created_at = 1 };
	struct done d = { 0 };

	g_assert_cmpint(store_room_mint(&room, token), ==, 0);
	key.room_id = room.id;
	g_assert_cmpint(store_key_mint(&key, secret), ==, 0);
	fx_open(fx);
	g_assert_cmpint(store_put_room(fx->st, &room, on_done, &d), ==, 0);
	g_assert_cmpint(store_put_key(fx->st, &key, on_done, &d), ==, 0);
	wait_done(fx, &d, 2);
	g_assert_cmpuint(d.ok, ==, 2);
	/* While open (the WAL holds the rows) and after close (the
	 * database does): the hashes are there, the credentials never. */
	for (int pass = 0; pass < 2; pass++) {
		g_assert_true(dir_contains(fx->dir, room.token_hash, SECRET_HASH_LEN));
		g_assert_true(dir_contains(fx->dir, key.key_hash, SECRET_HASH_LEN));
		g_assert_true(dir_contains(fx->dir, room.id, strlen(room.id)));
		g_assert_false(dir_contains(fx->dir, token, strlen(token)));
		g_assert_false(dir_contains(fx->dir, secret, strlen(secret)));
		if (pass == 0)
			fx_close(fx);
	}
	g_free(room.id);
	g_free(key.key_id);
}

/* Another connection holding the database's write lock: the store's
 * thread then waits in its busy handler, and its queue fills. */
static sqlite3 *hold_write_lock(const char *db_path)
{
	sqlite3 *db = NULL;
	g_assert_cmpint(sqlite3_open(db_path, &db), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), ==, SQLITE_OK);
	return db;
}

static void release_write_lock(sqlite3 *db)
{
	g_assert_cmpint(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), ==, SQLITE_OK);
	sqlite3_close(db);
}

static void test_queue_full(struct fx *fx, gconstpointer unused)
{
	struct store_room *room = new_room("x", 0);
	struct done d = { 0 };
	unsigned accepted = 0;
	int r = 0;

	fx_open(fx);
	store_set_queue_limit(fx->st, 4);
	sqlite3 *blocker = hold_write_lock(fx->db);
	for (int i = 0; i < 10 && r == 0; i++) {
		g_free(room->id);
		room->id = g_strdup_printf("room-%d", i);
		if ((r = store_put_room(fx->st, room, on_done, &d)) == 0)
			accepted++;
	}
	g_assert_cmpint(r, ==, -EAGAIN);
	/* 4 waiting, plus the one in progress once the thread took it. */
	g_assert_cmpuint(accepted, >=, 4);
	g_assert_cmpuint(accepted, <=, 5);
	g_assert_cmpuint(store_pending(fx->st), ==, accepted);
	release_write_lock(blocker);
	wait_done(fx, &d, accepted);
	g_assert_cmpuint(d.ok, ==, accepted);
	g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0); /* room again */
	wait_done(fx, &d, accepted + 1);
	done_clear(&d);
	store_room_free(room);
}

static void test_close_drains(struct fx *fx, gconstpointer unused)
{
	g_autoptr(GHashTable) rooms = NULL, keys = NULL;
	struct store_room *room = new_room("x", 0);
	struct done d = { 0 };
	const unsigned n = 200;

	fx_open(fx);
	for (unsigned i = 0; i < n; i++) {
		g_free(room->id);
		room->id = g_strdup_printf("room-%u", i);
		g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	}
	/* Close without running the loop: every write is done, and every
	 * completion called, when it returns; none may queue more. */
	d.resubmit_to = fx->st;
	d.resubmit = 1;
	g_assert_cmpint(store_close(fx->st, STORE_CLOSE_TIMEOUT_MS), ==, 0);
	fx->st = NULL;
	g_assert_cmpuint(d.n, ==, n);
	g_assert_cmpuint(d.ok, ==, n);
	g_assert_cmpint(d.resubmit, ==, -ESHUTDOWN);
	uv_run(&fx->loop, UV_RUN_DEFAULT);

	fx_open(fx);
	load(fx, &rooms, &keys);
	g_assert_cmpuint(g_hash_table_size(rooms), ==, n);
	done_clear(&d);
	store_room_free(room);
}

static gpointer release_later(gpointer db)
{
	g_usleep(300 * 1000);
	release_write_lock(db);
	return NULL;
}

static void test_close_timeout(struct fx *fx, gconstpointer unused)
{
	struct store_room *room = new_room("x", 0);
	struct done d = { 0 };

	fx_open(fx);
	sqlite3 *blocker = hold_write_lock(fx->db);
	for (int i = 0; i < 5; i++) {
		g_free(room->id);
		room->id = g_strdup_printf("room-%d", i);
		g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	}
	/* The lock outlasts the close timeout: what waits is given up, the
	 * write in progress finishes once the lock goes. */
	GThread *t = g_thread_new("release", release_later, blocker);
	g_assert_cmpint(store_close(fx->st, 100), ==, -ETIMEDOUT);
	fx->st = NULL;
	g_thread_join(t);
	g_assert_cmpuint(d.n, ==, 5);
	g_assert_cmpuint(d.failed, >=, 4);
	g_assert_cmpuint(d.ok + d.failed, ==, 5);
	g_assert_cmpint(d.status, ==, -ECANCELED);
	g_assert_nonnull(strstr(d.message, "gave up"));
	uv_run(&fx->loop, UV_RUN_DEFAULT);
	done_clear(&d);
	store_room_free(room);
}

static void test_write_error(struct fx *fx, gconstpointer unused)
{
	struct store_room *room = new_room("x", 0);
	struct done d = { 0 };
	struct rlimit old, tiny;

	fx_open(fx);
	/* Disk full, as far as the process can tell: no write may extend a
	 * file past its first byte (SIGXFSZ is ignored in main). */
	g_assert_cmpint(getrlimit(RLIMIT_FSIZE, &old), ==, 0);
	tiny = old;
	tiny.rlim_cur = 1;
	g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &tiny), ==, 0);
	g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	wait_done(fx, &d, 1);
	g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &old), ==, 0);
	g_test_message("write error: %s", d.message);
	g_assert_cmpint(d.status, <, 0);
	g_assert_nonnull(strstr(d.message, fx->db));
	g_assert_cmpint(store_ping(fx->st), ==, d.status);

	/* Room again: the store recovers, and says so. */
	g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	wait_done(fx, &d, 2);
	g_assert_cmpint(d.status, ==, 0);
	g_assert_cmpint(store_ping(fx->st), ==, 0);
	done_clear(&d);
	store_room_free(room);
}

static void assert_open_fails(struct fx *fx, int want, const char *needle)
{
	g_autoptr(GError) err = NULL;
	struct store *st = NULL;
	int r = store_open(&fx->loop, "sqlite", fx->dir, &st, &err);

	g_assert_cmpint(r, ==, want);
	g_assert_null(st);
	g_assert_nonnull(err);
	g_test_message("open: %s", err->message);
	g_assert_nonnull(strstr(err->message, needle));
}

static void test_bad_dir(struct fx *fx, gconstpointer unused)
{
	g_autoptr(GError) err = NULL;
	struct store *st = NULL;

	/* A state directory that cannot be made: a file is in the way. */
	g_assert_true(g_file_set_contents(fx->dir, "not a directory", -1, NULL));
	assert_open_fails(fx, -ENOTDIR, fx->dir);
	g_unlink(fx->dir);

	g_assert_cmpint(store_open(&fx->loop, "memcached", fx->dir, &st, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err->message, "unknown room store \"memcached\""));
	g_clear_error(&err);
	/* redis is known (issue 14) but needs its address. */
	g_assert_cmpint(store_open(&fx->loop, "redis", fx->dir, &st, &err), ==, -EINVAL);
	g_assert_nonnull(strstr(err->message, "no [cluster] redis address"));
}

static void test_readonly_dir(struct fx *fx, gconstpointer unused)
{
	g_autofree char *empty = g_build_filename(fx->tmp, "empty", NULL);
	g_autofree char *state = g_build_filename(fx->tmp, "state", NULL);
	g_autofree char *rodb = g_build_filename(fx->tmp, "rodb", NULL);
	g_autofree char *db = g_build_filename(rodb, "rooms.db", NULL);
	bool root = geteuid() == 0;

	/* Made writable, then read-only: a database in STATE, one in RODB
	 * whose file is read-only, none in EMPTY. */
	g_assert_cmpint(g_mkdir(empty, 0555), ==, 0);
	fx_open(fx);
	fx_close(fx);
	g_free(fx->dir);
	fx->dir = g_strdup(rodb);
	fx_open(fx);
	fx_close(fx);
	g_assert_cmpint(g_chmod(fx->tmp, 0755), ==, 0);
	g_assert_cmpint(g_chmod(state, 0555), ==, 0);
	g_assert_cmpint(g_chmod(rodb, 0777), ==, 0);
	g_assert_cmpint(g_chmod(db, 0444), ==, 0);

	/* Root writes anywhere: be nobody for a while (effective ids only,
	 * so root comes back). */
	if (root && (setegid(65534) < 0 || seteuid(65534) < 0)) {
		g_assert_cmpint(setegid(0), ==, 0);
		g_test_skip("cannot drop root for a permission test");
		return;
	}
	g_free(fx->dir);
	fx->dir = g_strdup(empty); /* no database, none can be made */
	assert_open_fails(fx, -EACCES, empty);
	g_free(fx->dir);
	fx->dir = g_strdup(state); /* a database, in a read-only directory */
	assert_open_fails(fx, -EACCES, state);
	g_free(fx->dir);
	fx->dir = g_strdup(rodb); /* a read-only database file */
	assert_open_fails(fx, -EROFS, db);
	if (root) {
		g_assert_cmpint(seteuid(0), ==, 0);
		g_assert_cmpint(setegid(0), ==, 0);
	}
}

static void test_corrupt(struct fx *fx, gconstpointer unused)
{
	g_autofree char *junk = g_strnfill(8192, 'J');
	g_autofree char *data = NULL;
	struct done d = { 0 };
	gsize size;

	/* Not a database at all. */
	g_assert_cmpint(g_mkdir(fx->dir, 0700), ==, 0);
	g_assert_true(g_file_set_contents(fx->db, junk, 8192, NULL));
	assert_open_fails(fx, -EBADMSG, fx->db);
	g_unlink(fx->db);

	/* A database whose pages past the header are damaged. */
	fx_open(fx);
	struct store_room *room = new_room("x", 0);
	for (int i = 0; i < 50; i++) {
		g_free(room->id);
		room->id = g_strdup_printf("room-%d", i);
		g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	}
	wait_done(fx, &d, 50);
	fx_close(fx);
	g_assert_true(g_file_get_contents(fx->db, &data, &size, NULL));
	g_assert_cmpuint(size, >, 3 * 4096);
	memset(data + 4096 + 100, 0x5a, size - 4096 - 200);
	g_assert_true(g_file_set_contents(fx->db, data, (gssize)size, NULL));
	assert_open_fails(fx, -EBADMSG, fx->db);
	g_unlink(fx->db);

	/* A row that breaks the schema's rules (edited by hand). */
	fx_open(fx);
	fx_close(fx);
	sqlite3 *db = NULL;
	g_assert_cmpint(sqlite3_open(fx->db, &db), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_exec(db, "PRAGMA ignore_check_constraints = 1;"
				     "INSERT INTO rooms (id, token_hash, created_by, created_at)"
				     " VALUES ('short', x'0102', 'me', 1)", NULL, NULL, NULL), ==, SQLITE_OK);
	sqlite3_close(db);
	g_autoptr(GError) err = NULL;
	GPtrArray *rooms = NULL, *keys = NULL;
	int r = store_open(&fx->loop, "sqlite", fx->dir, &fx->st, &err);
	if (r == 0)
		r = store_load(fx->st, &rooms, &keys, &err);
	g_assert_cmpint(r, ==, -EBADMSG);
	g_test_message("open or load: %s", err->message);
	g_assert_nonnull(strstr(err->message, fx->db));
	done_clear(&d);
	store_room_free(room);
}

static void test_newer_schema(struct fx *fx, gconstpointer unused)
{
	g_autoptr(GHashTable) rooms = NULL, keys = NULL;
	struct store_room *room = new_room("kept", 0);
	struct done d = { 0 };
	sqlite3 *db = NULL;

	fx_open(fx);
	g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	wait_done(fx, &d, 1);
	fx_close(fx);
	/* Written by a later release: refused, and left as it is. */
	g_assert_cmpint(sqlite3_open(fx->db, &db), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_exec(db, "UPDATE schema_version SET version = 99", NULL, NULL, NULL),
			==, SQLITE_OK);
	assert_open_fails(fx, -EPROTO, "schema version 99 is newer");
	g_assert_cmpint(sqlite3_exec(db, "UPDATE schema_version SET version = 2", NULL, NULL, NULL),
			==, SQLITE_OK);
	sqlite3_close(db);
	fx_open(fx);
	load(fx, &rooms, &keys);
	assert_room_eq(g_hash_table_lookup(rooms, "kept"), room);
	done_clear(&d);
	store_room_free(room);
}

static void test_many(struct fx *fx, gconstpointer unused)
{
	g_autoptr(GHashTable) rooms = NULL, keys = NULL;
	const unsigned n = g_test_perf() ? 10000 : 1000, trips = 200;
	struct store_room *room = new_room("x", 0);
	struct done d = { 0 };
	gint64 t0;

	fx_open(fx);
	/* Round trip: queue one, wait for its completion on the loop. */
	t0 = g_get_monotonic_time();
	for (unsigned i = 0; i < trips; i++) {
		g_free(room->id);
		room->id = g_strdup_printf("trip-%u", i);
		g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
		wait_done(fx, &d, i + 1);
	}
	g_test_message("put_room round trip: %.1f us", (double)(g_get_monotonic_time() - t0) / trips);
	g_assert_cmpint(store_purge_expired(fx->st, 1, NULL, NULL), ==, 0);

	done_clear(&d);
	t0 = g_get_monotonic_time();
	for (unsigned i = 0; i < n; i++) {
		g_free(room->id);
		room->id = g_strdup_printf("room-%06u", i);
		room->expires_at = 1800000000 + i;
		g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	}
	wait_done(fx, &d, n);
	g_assert_cmpuint(d.ok, ==, n);
	g_test_message("%u put_room queued at once: %.1f ms", n,
		       (double)(g_get_monotonic_time() - t0) / 1000);
	fx_close(fx);

	fx_open(fx);
	t0 = g_get_monotonic_time();
	load(fx, &rooms, &keys);
	g_test_message("load of %u rooms: %.1f ms", n + trips,
		       (double)(g_get_monotonic_time() - t0) / 1000);
	g_assert_cmpuint(g_hash_table_size(rooms), ==, n + trips);
	done_clear(&d);
	store_room_free(room);
}

/* What a rooms_create or rooms_create_key completion said. */
struct created {
	unsigned n;
	int status;
	char *id;
};

static void room_created(int status, const struct store_room *room, const char *token,
			 const char *why, void *data)
{
	struct created *c = data;
	(void)token, (void)why;
	c->n++;
	c->status = status;
	c->id = room ? g_strdup(room->id) : NULL;
}

static void key_created(int status, const struct store_key *key, const char *api_key,
			const char *why, void *data)
{
	struct created *c = data;
	(void)key, (void)api_key;
	c->n++;
	c->status = status;
	c->id = g_strdup(why);
}

struct written {
	unsigned n;
	int status;
};

static void on_written(int status, const char *why, void *data)
{
	struct written *w = data;
	w->n++;
	w->status = status;
	g_assert_true(status == 0 || (why && *why));
}

struct key_out {
	unsigned n;
	char *api_key, *key_id;
};

static void key_out_cb(int status, const struct store_key *key, const char *api_key,
		       const char *why, void *data)
{
	struct key_out *k = data;
	(void)why;
	g_assert_cmpint(status, ==, 0);
	k->n++;
	k->api_key = g_strdup(api_key);
	k->key_id = g_strdup(key->key_id);
}

static struct rooms *rooms_with_key(struct fx *fx, char **api_key, char **key_id)
{
	struct created room = { 0 };
	struct rooms *r = rooms_new(fx->st);
	gint64 now = g_get_real_time() / G_USEC_PER_SEC;

	rooms_create(r, &(struct rooms_spec){ .name = "r" }, "test", now, room_created, &room);
	while (!room.n)
		uv_run(&fx->loop, UV_RUN_ONCE);
	g_assert_cmpint(room.status, ==, 0);
	struct key_out k = { 0 };
	rooms_create_key(r, room.id, "k", 0, now, key_out_cb, &k);
	while (!k.n)
		uv_run(&fx->loop, UV_RUN_ONCE);
	*api_key = k.api_key;
	*key_id = k.key_id;
	g_free(room.id);
	return r;
}

/* A revocation is done when the store has it: refused while being
 * written, as it was when the write fails (busy past the retry window or
 * a full queue, which is counted), revoked once written. */
static void test_revoke_durable(struct fx *fx, gconstpointer unused)
{
	g_autofree char *api_key = NULL, *key_id = NULL;
	const struct store_key *k;
	struct written w = { 0 };
	gint64 now = g_get_real_time() / G_USEC_PER_SEC;

	fx_open(fx);
	store_set_retry_timeout(fx->st, 300);
	struct rooms *r = rooms_with_key(fx, &api_key, &key_id);

	sqlite3 *blocker = hold_write_lock(fx->db);
	uint64_t retries = metrics_get(store_retries);
	g_assert_cmpint(rooms_revoke_key(r, key_id, now, on_written, &w), ==, 0);
	g_assert_cmpint(rooms_check_key(r, api_key, now, &k), ==, -EKEYREVOKED); /* fail closed */
	g_assert_cmpint(rooms_revoke_key(r, key_id, now, on_written, &w), ==, -EINPROGRESS);
	while (!w.n)
		uv_run(&fx->loop, UV_RUN_ONCE);
	g_assert_cmpint(w.status, ==, -EBUSY);
	g_assert_cmpuint(metrics_get(store_retries), >, retries);
	g_assert_cmpint(rooms_check_key(r, api_key, now, &k), ==, 0); /* as it was */

	/* A full queue: refused at once, nothing changed, counted.  The
	 * write in progress keeps retrying meanwhile (a slow run under
	 * valgrind must not see the queue drain). */
	store_set_retry_timeout(fx->st, 60000);
	store_set_queue_limit(fx->st, 1);
	struct store_room *filler = new_room("filler", 0);
	struct done d = { 0 };
	const unsigned queued = 2;
	/* The first is in progress once it is being retried, the second
	 * then fills the queue. */
	uint64_t tries = metrics_get(store_retries);
	g_assert_cmpint(store_put_room(fx->st, filler, on_done, &d), ==, 0);
	for (int i = 0; i < 10000 && metrics_get(store_retries) == tries; i++)
		g_usleep(1000);
	g_assert_cmpuint(metrics_get(store_retries), >, tries);
	g_assert_cmpint(store_put_room(fx->st, filler, on_done, &d), ==, 0);
	g_assert_cmpint(store_put_room(fx->st, filler, on_done, &d), ==, -EAGAIN);
	uint64_t full = metrics_get(store_queue_full);
	g_assert_cmpint(rooms_revoke_key(r, key_id, now, on_written, &w), ==, 0);
	g_assert_cmpuint(w.n, ==, 2);
	g_assert_cmpint(w.status, ==, -EAGAIN);
	g_assert_cmpuint(metrics_get(store_queue_full), ==, full + 1);
	g_assert_cmpint(rooms_check_key(r, api_key, now, &k), ==, 0);
	release_write_lock(blocker);
	wait_done(fx, &d, queued);

	g_assert_cmpint(rooms_revoke_key(r, key_id, now, on_written, &w), ==, 0);
	while (w.n < 3)
		uv_run(&fx->loop, UV_RUN_ONCE);
	g_assert_cmpint(w.status, ==, 0);
	g_assert_cmpint(rooms_check_key(r, api_key, now, &k), ==, -EKEYREVOKED);
	done_clear(&d);
	store_room_free(filler);
	rooms_free(r);
	(void)unused;
}

/* A key still being written when its room is deleted must not come back
 * as created: the store drops it with the room. */
static void test_key_of_deleted_room(struct fx *fx, gconstpointer unused)
{
	struct created room = { 0 }, key = { 0 };
	struct rooms *r;
	gint64 now = g_get_real_time() / G_USEC_PER_SEC;

	fx_open(fx);
	r = rooms_new(fx->st);
	rooms_create(r, &(struct rooms_spec){ .name = "r", .expires_at = now + 3600 }, "test", now,
		     room_created, &room);
	while (!room.n)
		uv_run(&fx->loop, UV_RUN_ONCE);
	g_assert_cmpint(room.status, ==, 0);

	rooms_create_key(r, room.id, "k", 0, now, key_created, &key);
	g_assert_cmpuint(key.n, ==, 0); /* queued behind the store */
	struct written del = { 0 };
	g_assert_cmpint(rooms_delete(r, room.id, on_written, &del), ==, 0);
	while (!key.n || !del.n)
		uv_run(&fx->loop, UV_RUN_ONCE);
	g_assert_cmpint(key.status, ==, -ENOENT);
	g_assert_cmpstr(key.id, ==, "room not found");
	g_autoptr(GPtrArray) keys = rooms_list_keys(r);
	g_assert_cmpuint(keys->len, ==, 0);
	g_assert_false(rooms_any_active_key(r, now));

	rooms_free(r);
	g_free(room.id);
	g_free(key.id);
	(void)unused;
}

/* Account keys (no room) and room members: stored, loaded, and gone
 * with their room. */
static void test_accounts(struct fx *fx, gconstpointer unused)
{
	g_autoptr(GHashTable) rooms = NULL, keys = NULL;
	g_autoptr(GError) err = NULL;
	g_autoptr(GPtrArray) members = NULL;
	struct store_room *room = new_room("r1", 0);
	struct store_key *key = new_key("acct1", NULL);
	struct store_member m = { .room_id = "r1", .account = "jwt:lab:ada", .added_at = 5 };
	struct done d = { 0 };

	key->account = g_strdup("jwt:lab:ada");
	fx_open(fx);
	/* Exactly one of a room and an account. */
	struct store_key both = *key;
	both.room_id = "r1";
	g_assert_cmpint(store_put_key(fx->st, &both, on_done, &d), ==, -EINVAL);
	g_assert_cmpint(store_put_room(fx->st, room, on_done, &d), ==, 0);
	g_assert_cmpint(store_put_key(fx->st, key, on_done, &d), ==, 0);
	g_assert_cmpint(store_put_member(fx->st, &m, on_done, &d), ==, 0);
	g_assert_cmpint(store_put_member(fx->st, &m, on_done, &d), ==, 0); /* twice: no error */
	wait_done(fx, &d, 4);
	g_assert_cmpuint(d.failed, ==, 0);
	fx_close(fx);
	fx_open(fx);
	load(fx, &rooms, &keys);
	const struct store_key *k = g_hash_table_lookup(keys, "acct1");
	assert_key_eq(k, key);
	g_assert_cmpstr(k->account, ==, "jwt:lab:ada");
	g_assert_cmpint(store_load_members(fx->st, &members, &err), ==, 0);
	g_assert_cmpuint(members->len, ==, 1);
	g_assert_cmpstr(((struct store_member *)members->pdata[0])->account, ==, "jwt:lab:ada");
	g_clear_pointer(&members, g_ptr_array_unref);
	/* The room's deletion takes its members, not the account's key. */
	g_assert_cmpint(store_delete_room(fx->st, "r1", on_done, &d), ==, 0);
	g_assert_cmpint(store_delete_member(fx->st, "r1", "jwt:lab:ada", on_done, &d), ==, 0);
	wait_done(fx, &d, 6);
	g_assert_cmpint(d.status, ==, -ENOENT);
	g_assert_cmpint(store_load_members(fx->st, &members, &err), ==, 0);
	g_assert_cmpuint(members->len, ==, 0);
	g_clear_pointer(&rooms, g_hash_table_unref);
	g_clear_pointer(&keys, g_hash_table_unref);
	load(fx, &rooms, &keys);
	g_assert_nonnull(g_hash_table_lookup(keys, "acct1"));
	done_clear(&d);
	store_room_free(room);
	store_key_free(key);
}

/* Public keys: stored, replaced by account and key, loaded; a database
 * of the schema before them gets their table when opened. */
static void test_pubkeys(struct fx *fx, gconstpointer unused)
{
	struct store_pubkey a = { .account = "jwt:lab:ada", .public_key = "k1", .device_name = "cli",
				  .created_at = 5 };
	struct store_pubkey b = { .account = "jwt:lab:bob", .public_key = "k1", .username = "Bob",
				  .created_at = 6 };
	g_autoptr(GPtrArray) out = NULL;
	g_autoptr(GError) err = NULL;
	struct done d = { 0 };
	sqlite3 *db = NULL;

	fx_open(fx);
	fx_close(fx);
	/* Back to the version before the public keys (the last step), as a
	 * release before them left it. */
	g_assert_cmpint(sqlite3_open(fx->db, &db), ==, SQLITE_OK);
	g_assert_cmpint(sqlite3_exec(db, "DROP TABLE public_keys; UPDATE schema_version SET version = version - 1",
				     NULL, NULL, NULL), ==, SQLITE_OK);
	sqlite3_close(db);
	fx_open(fx);
	g_assert_cmpint(store_put_pubkey(fx->st, &a, on_done, &d), ==, 0);
	g_assert_cmpint(store_put_pubkey(fx->st, &b, on_done, &d), ==, 0);
	a.device_name = "laptop"; /* the same account and key: replaced */
	g_assert_cmpint(store_put_pubkey(fx->st, &a, on_done, &d), ==, 0);
	struct store_pubkey bad = { .account = "", .public_key = "k" };
	g_assert_cmpint(store_put_pubkey(fx->st, &bad, on_done, &d), ==, -EINVAL);
	wait_done(fx, &d, 3);
	g_assert_cmpuint(d.ok, ==, 3);
	fx_close(fx);
	fx_open(fx);
	g_assert_cmpint(store_load_pubkeys(fx->st, &out, &err), ==, 0);
	g_assert_no_error(err);
	g_assert_cmpuint(out->len, ==, 2);
	const struct store_pubkey *x = g_ptr_array_index(out, 0), *y = g_ptr_array_index(out, 1);
	g_assert_cmpstr(x->account, ==, "jwt:lab:ada");
	g_assert_cmpstr(x->device_name, ==, "laptop");
	g_assert_null(x->username);
	g_assert_cmpint(x->created_at, ==, 5);
	g_assert_cmpstr(y->account, ==, "jwt:lab:bob");
	g_assert_cmpstr(y->username, ==, "Bob");
	g_assert_null(y->device_name);
	done_clear(&d);
}

#define ADD(path, fn) g_test_add(path, struct fx, NULL, fx_setup, fn, fx_teardown)

int main(int argc, char *argv[])
{
	g_test_init(&argc, &argv, NULL);
	signal(SIGXFSZ, SIG_IGN);
	alarm(120); /* a lost completion would hang the loop */
	g_test_add_func("/store/secret", test_secret);
	ADD("/store/round-trip", test_round_trip);
	ADD("/store/purge-expired", test_purge);
	ADD("/store/token-not-stored", test_token_not_stored);
	ADD("/store/queue-full", test_queue_full);
	ADD("/store/close-drains", test_close_drains);
	ADD("/store/close-timeout", test_close_timeout);
	ADD("/store/write-error", test_write_error);
	ADD("/store/bad-dir", test_bad_dir);
	ADD("/store/readonly-dir", test_readonly_dir);
	ADD("/store/corrupt", test_corrupt);
	ADD("/store/newer-schema", test_newer_schema);
	ADD("/store/many", test_many);
	ADD("/store/key-of-deleted-room", test_key_of_deleted_room);
	ADD("/store/revoke-durable", test_revoke_durable);
	ADD("/store/accounts", test_accounts);
	ADD("/store/public-keys", test_pubkeys);
	return g_test_run();
}
