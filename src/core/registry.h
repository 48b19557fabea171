/* registry: rooms and the peers registered in them.  Pure data; policy
 * (limits, who may replace whom) lives in the router. */
#pragma once

#include "core/meta.h"

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REGISTRY_ID_MAX 128

struct room;

struct peer {
	struct room *room;
	void *owner;     /* the connection that holds this registration */
	/* A v2.0 connection whose registration of this id the owner's took
	 * over: it may still send as this peer, receives nothing (router.c,
	 * "superseded"); at most one. */
	void *former;
	struct meta *meta;
	char *principal; /* who registered it; NULL when auth is off */
	gint64 connected_at; /* microseconds since the epoch */
	const char *id;
	const char *id_json; /* id as a JSON string, for building replies */
	const char *role;
	const char *role_json;
	size_t id_json_len, role_json_len;
	guint slot; /* index in room->order */
	/* [cluster]: the session's epoch (0 without a cluster), and for a
	 * peer of another instance (a replicated view: no owner, no
	 * principal, public metadata only) that instance; NULL for ours.
	 * Discovery and routing read both kinds alike. */
	uint64_t epoch;
	char *instance;
	/* A remote peer's principal tag (registry_principal_tag); ours
	 * until Redis has answered its claim: CLAIMING (the register waits). */
	char *principal_tag;
	bool claiming;
	bool shown; /* watchers were told it joined (core/events.h) */
	GPtrArray *watches_in; /* the watches whose set holds it (core/watch.h) */
	char data[];
};

struct room {
	char *id;
	/* Peers in registration order.  A peer that leaves leaves a NULL
	 * hole, compacted away once holes are half the array: leaving costs
	 * O(1) amortized, and discovery scans contiguous memory (a linked
	 * list made it wait on a cache miss per peer). */
	GPtrArray *order;
	GHashTable *by_id; /* id -> struct peer; its size is the room's */
	struct peer *admin;
	unsigned n_local; /* peers of this instance; the rest are remote */
	/* Its watches (core/watch.h), NULL when none: a watcher is a peer of
	 * the room and ends its watches before it leaves. */
	struct watch_room *watches;
};

static inline bool peer_is_remote(const struct peer *p)
{
	return p->instance != NULL;
}

/* Runs the statement that follows for each peer P of ROOM, in registration
 * order.  The room must not change meanwhile. */
#define ROOM_FOREACH_PEER(room, p)                                        \
	for (guint p##_slot_ = 0; p##_slot_ < (room)->order->len; p##_slot_++) \
		if (!((p) = g_ptr_array_index((room)->order, p##_slot_))) \
			continue;                                         \
		else

struct registry;

struct registry *registry_new(void);
void registry_free(struct registry *reg);

struct room *registry_find_room(struct registry *reg, const char *room_id);
/* The room, created empty when it does not exist yet. */
struct room *registry_ensure_room(struct registry *reg, const char *room_id);
struct peer *room_find_peer(struct room *room, const char *peer_id);
static inline unsigned room_size(const struct room *room)
{
	return g_hash_table_size(room->by_id);
}

/* Adds a peer to ROOM; the peer takes ownership of META and PRINCIPAL.
 * The id must not be registered in the room already. */
struct peer *registry_add(struct registry *reg, struct room *room, const char *peer_id,
			  const char *role, struct meta *meta, char *principal, void *owner,
			  gint64 now);
/* Adds a peer of another INSTANCE (a cluster view) to ROOM; the peer
 * takes META.  Not counted in registry_n_peers nor the role counts. */
struct peer *registry_add_remote(struct registry *reg, struct room *room, const char *peer_id,
				 const char *role, struct meta *meta, const char *instance,
				 const char *principal_tag, uint64_t epoch, gint64 connected_at);
/* What other instances learn of PRINCIPAL (NULL: auth off): "" for
 * anyone, else a SHA-256 of it, so who registered a peer never leaves in
 * clear text yet "the same principal" compares across instances. */
char *registry_principal_tag(const char *principal);
/* Our peers by their session epoch (set once, after registry_add). */
void registry_set_epoch(struct registry *reg, struct peer *peer, uint64_t epoch);
struct peer *registry_find_epoch(struct registry *reg, uint64_t epoch);
/* Removes the peer (and frees it); an empty room is freed too. */
void registry_remove(struct registry *reg, struct peer *peer);
void peer_set_meta(struct peer *peer, struct meta *meta);
/* The same, handing back the old metadata instead of freeing it. */
struct meta *peer_swap_meta(struct peer *peer, struct meta *meta);

/* True when a peer with this id is registered in any room. */
bool registry_id_exists(struct registry *reg, const char *peer_id);

/* Peers per role: FN for each of the TOP most numerous roles (most first,
 * then by name), then once for the rest summed as "other", so metric
 * labels stay few whatever roles clients invent. */
typedef void (*registry_role_fn)(const char *role, gint64 peers, void *data);
void registry_role_counts(struct registry *reg, unsigned top, registry_role_fn fn, void *data);

unsigned registry_n_rooms(const struct registry *reg);
unsigned registry_n_peers(const struct registry *reg);
typedef void (*registry_room_fn)(struct room *room, void *data);
void registry_foreach_room(struct registry *reg, registry_room_fn fn, void *data);
