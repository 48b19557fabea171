/* store: the durable copy of persistent rooms and API keys.
 *
 * The daemon keeps every persistent room and key in memory and answers
 * from there; the store is written behind.  store_load() reads everything
 * once at start-up, synchronously.  Each change after that is copied into
 * a bounded queue and written by a backend on the store's own thread, so
 * disk I/O never stalls the event loop; the completion comes back on the
 * loop through a uv_async_t.  Backends sit behind struct
 * store_backend_ops: "sqlite" (store_sqlite.c), and "redis" (store_redis.c),
 * shared by the instances of a cluster. */
#pragma once

#include "util/secret.h"

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#define STORE_QUEUE_DEFAULT 10000 /* pending writes */
#define STORE_CLOSE_TIMEOUT_MS 5000
#define STORE_RETRY_DEFAULT_MS 5000 /* a busy (locked) database is retried this long */

struct store_room {
	char *id;
	char *name;       /* NULL: none */
	uint8_t token_hash[SECRET_HASH_LEN]; /* SHA-256 of the room token */
	char *created_by; /* principal */
	int64_t created_at; /* unix seconds */
	int64_t expires_at; /* 0: never; expired when <= now */
	unsigned max_peers; /* 0: the global limit */
	bool open_to_issuer; /* any valid JWT of the issuer may join without the token */
};

struct store_key {
	char *key_id;     /* public */
	uint8_t key_hash[SECRET_HASH_LEN]; /* SHA-256 of the secret */
	char *room_id;    /* the room it grants; keys go with their room */
	char *account;    /* instead of room_id: the "jwt:ISSUER:SUB" it speaks for,
			   * valid in every room that principal may use */
	char *name;       /* NULL: none */
	int64_t created_at;
	int64_t expires_at; /* 0: never */
	int64_t revoked_at; /* 0: not revoked */
};

/* A room's member: an account that may use it with an account key. */
struct store_member {
	char *room_id;
	char *account; /* "jwt:ISSUER:SUB" */
	int64_t added_at;
};

/* An Ed25519 public key an account published (pubkeys.h). */
struct store_pubkey {
	char *account;     /* "jwt:ISSUER:SUB" */
	char *public_key;  /* base64url, unpadded */
	char *device_name;
	char *username;    /* NULL: the subject */
	int64_t created_at;
};

void store_room_free(struct store_room *room);
void store_pubkey_free(struct store_pubkey *k);
void store_key_free(struct store_key *key);
void store_member_free(struct store_member *m);

/* Gives ROOM a fresh random id (when it has none) and a fresh token:
 * the token is written to TOKEN for the creator to see once, only its
 * hash is kept. */
int store_room_mint(struct store_room *room, char token[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)]);
/* The same for an API key: a fresh key_id (when none) and secret. */
int store_key_mint(struct store_key *key, char secret[SECRET_HEX_SIZE(SECRET_TOKEN_BYTES)]);

/* What a backend is opened with. */
struct store_params {
	const char *state_dir;   /* sqlite: its directory */
	const char *redis;       /* redis: [cluster] redis, the address */
	const char *password;    /* redis: AUTH, or NULL */
	const char *key_prefix;  /* redis: before every key and channel ("" for none) */
	const char *instance_id; /* redis: names this instance in its change notices */
};

/* A backend.  Every function but open returns 0 (purge_expired: the
 * number of rooms removed) or a negative errno, with ERR naming the file
 * or server and the reason.  The store calls them from one thread at a
 * time, never concurrently. */
struct store_backend_ops {
	const char *name;
	int (*open)(const struct store_params *p, void **out, GError **err);
	/* Appends every room and key (struct store_room / store_key, owned
	 * by the arrays) to ROOMS and KEYS. */
	int (*load)(void *be, GPtrArray *rooms, GPtrArray *keys, GError **err);
	/* Creates the room, or replaces its fields when the id exists. */
	int (*put_room)(void *be, const struct store_room *room, GError **err);
	/* Deletes the room and its keys; -ENOENT when there is none. */
	int (*delete_room)(void *be, const char *room_id, GError **err);
	/* Creates or replaces the key; -ENOENT when its room does not exist. */
	int (*put_key)(void *be, const struct store_key *key, GError **err);
	/* Appends every room membership (struct store_member) to MEMBERS. */
	int (*load_members)(void *be, GPtrArray *members, GError **err);
	/* Adds the membership (kept as it is when present); -ENOENT when the
	 * room does not exist.  Deleting the room deletes its members. */
	int (*put_member)(void *be, const struct store_member *m, GError **err);
	/* -ENOENT when there is no such membership. */
	int (*delete_member)(void *be, const char *room_id, const char *account, GError **err);
	/* Marks the key revoked at WHEN (a second revoke keeps the first
	 * time); -ENOENT when there is no such key. */
	int (*revoke_key)(void *be, const char *key_id, int64_t when, GError **err);
	/* Deletes the rooms with 0 < expires_at <= NOW, and their keys. */
	int (*purge_expired)(void *be, int64_t now, GError **err);
	/* Public keys: appends every struct store_pubkey to OUT; creates or
	 * replaces one (by account and key). */
	int (*load_pubkeys)(void *be, GPtrArray *out, GError **err);
	int (*put_pubkey)(void *be, const struct store_pubkey *k, GError **err);
	void (*close)(void *be);
};

extern const struct store_backend_ops store_sqlite_ops;
extern const struct store_backend_ops store_redis_ops;

struct store;

/* Completion of an asynchronous write, called on the loop thread.
 * STATUS is 0 (store_purge_expired: the number of rooms removed) or a
 * negative errno, and then ERR says why: -EAGAIN never comes here (the
 * call itself fails), -ECANCELED means store_close gave up on it. */
typedef void (*store_done_fn)(int status, const GError *err, void *data);

/* Opens BACKEND ("sqlite") with its data under STATE_DIR (created 0700
 * when missing) and starts the store's thread.  The store's uv_async_t
 * keeps LOOP alive until store_close. */
int store_open(uv_loop_t *loop, const char *backend, const char *state_dir, struct store **out,
	       GError **err);
/* The same with every parameter a backend may need ("redis"). */
int store_open_with(uv_loop_t *loop, const char *backend, const struct store_params *p,
		    struct store **out, GError **err);

/* Everything the backend holds, read again on the store's thread (after
 * the writes queued before it): the Redis store reloads this way when its
 * notices may have been missed.  DONE runs on the loop with the arrays
 * (owned by the callee only for the call) or a negative errno. */
struct store_snapshot {
	GPtrArray *rooms, *keys, *members, *pubkeys;
};
typedef void (*store_loaded_fn)(int status, const GError *err, struct store_snapshot *snap,
				void *data);
int store_reload(struct store *st, store_loaded_fn done, void *data);
/* At most MAX writes wait in the queue (default STORE_QUEUE_DEFAULT). */
void store_set_queue_limit(struct store *st, unsigned max);
/* A write the backend refuses with -EBUSY (the database is locked by
 * another process) is tried again, with a growing pause, until MS have
 * passed since its first try (default STORE_RETRY_DEFAULT_MS; 0: no
 * retry); then it completes with -EBUSY. */
void store_set_retry_timeout(struct store *st, unsigned ms);

/* Reads every room and key, synchronously: at start-up, before serving
 * and before any write.  The arrays own their elements. */
int store_load(struct store *st, GPtrArray **rooms, GPtrArray **keys, GError **err);
/* The same for the room memberships, right after store_load. */
int store_load_members(struct store *st, GPtrArray **members, GError **err);
/* The same for the public keys (struct store_pubkey). */
int store_load_pubkeys(struct store *st, GPtrArray **out, GError **err);

/* Queue one write; the record is copied.  Return 0 (DONE, when not NULL,
 * will be called exactly once, completions in the order of the calls),
 * -EAGAIN when the queue is full, -EINVAL for a record without id (or a
 * room without created_by, a key without exactly one of room_id and
 * account), -ESHUTDOWN once the
 * store is closing. */
int store_put_room(struct store *st, const struct store_room *room, store_done_fn done,
		   void *data);
int store_delete_room(struct store *st, const char *room_id, store_done_fn done, void *data);
int store_put_key(struct store *st, const struct store_key *key, store_done_fn done, void *data);
int store_put_member(struct store *st, const struct store_member *m, store_done_fn done, void *data);
int store_delete_member(struct store *st, const char *room_id, const char *account,
			store_done_fn done, void *data);
int store_revoke_key(struct store *st, const char *key_id, int64_t when, store_done_fn done,
		     void *data);
int store_purge_expired(struct store *st, int64_t now, store_done_fn done, void *data);
int store_put_pubkey(struct store *st, const struct store_pubkey *k, store_done_fn done, void *data);

/* 0 while the backend answers (the last write reached it), else the
 * negative errno of the last backend failure; a write naming a missing
 * room or key is the caller's error and does not count.  Any thread may
 * call it while the store is open. */
int store_ping(struct store *st);
/* Writes whose completion has not run yet: queued, in progress, or
 * written and about to complete on the loop.  Any thread, while the store
 * is open. */
unsigned store_pending(struct store *st);

/* Stops taking writes, waits up to TIMEOUT_MS for the queued ones, joins
 * the thread and closes the backend; writes still queued then complete
 * with -ECANCELED.  Every completion left is called before it returns.
 * Returns 0, or -ETIMEDOUT when some writes were given up.  The handle is
 * released once the loop runs again. */
int store_close(struct store *st, unsigned timeout_ms);
