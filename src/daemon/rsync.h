/* rsync: keeps this instance's rooms, keys, members and public keys in
 * step with the Redis store's other instances ([rooms] store = redis).
 *
 * A subscription to the store's change channel (hiredis async, on the
 * daemon's own libuv loop) applies each notice another instance published
 * into memory (rooms.c) and closes what a deletion or revocation ends,
 * through the same paths a local change takes.  Each time the
 * subscription is (re)established the store is read again on its thread,
 * since notices sent meanwhile are lost (Redis pub/sub keeps none), and
 * memory becomes what Redis holds: with a Redis restarted empty and
 * without persistence, that means no rooms. */
#pragma once

#include "auth/pubkeys.h"
#include "store/rooms.h"
#include "store/store.h"

#include <glib.h>
#include <uv.h>

#define RSYNC_RETRY_MS 500 /* between attempts to subscribe again */

struct rsync_params {
	uv_loop_t *loop;
	const struct store_params *store_params; /* the address, password, prefix and instance */
	struct store *store;
	struct rooms *rooms;
	struct pubkeys *pubkeys;
	/* The peers of a deleted room get room_closed (reason "deleted"); the
	 * sessions of a revoked key ("key:KEY_ID") AUTH_FAILED. */
	void (*close_room)(void *data, const char *room_id, const char *reason);
	void (*close_principal)(void *data, const char *principal, const char *reason);
	void *data;
};

struct rsync;

/* Starts subscribing (asynchronously; it retries until Redis answers). */
int rsync_start(const struct rsync_params *p, struct rsync **out, GError **err);
/* Whether the subscription is up (notices are arriving). */
bool rsync_connected(struct rsync *s);
/* Unsubscribes; freed once the loop has run the last callbacks.  NULL is
 * fine. */
void rsync_stop(struct rsync *s);

/* [cluster] instance_id, or when NULL the host name and a random suffix
 * (g_free). */
char *rsync_instance_id(const char *configured);
