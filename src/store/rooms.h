/* rooms: persistent rooms and API keys (docs/protocol.md,
 * "Authentication and rooms"), kept in memory and answered from there;
 * every change is written behind to the store.  Creations are visible once durable: their callbacks run after
 * the store's completion. */
#pragma once

#include "util/netaddr.h"
#include "store/store.h"

#include <glib.h>
#include <stdbool.h>

struct rooms;

/* ST may be NULL: memory only (tests). */
struct rooms *rooms_new(struct store *st);
void rooms_free(struct rooms *r);
/* Takes the records of store_load()'s arrays. */
void rooms_load(struct rooms *r, GPtrArray *rooms, GPtrArray *keys);

const struct store_room *rooms_find(struct rooms *r, const char *room_id);
bool rooms_expired(const struct store_room *room, gint64 now);
/* Constant time; a room always has a token. */
bool rooms_token_ok(const struct store_room *room, const char *token);
/* API keys present "KEY_ID.SECRET".  0 and *OUT; -ENOENT (not a key of
 * ours, or a wrong secret), -EKEYREVOKED, -EKEYEXPIRED. */
int rooms_check_key(struct rooms *r, const char *api_key, gint64 now, const struct store_key **out);
/* True when some key is neither revoked nor expired (it stops at the
 * first).  It does not decide the authentication mode: auth_required. */
/* Keys neither revoked nor expired at NOW. */
unsigned rooms_count_active_keys(struct rooms *r, gint64 now);
bool rooms_any_active_key(struct rooms *r, gint64 now);

struct rooms_spec {
	gint64 expires_at; /* 0: never */
	unsigned max_peers; /* 0: the global limit */
	const char *name;
	bool open_to_issuer;
	const struct netaddr *from; /* the creator's address, for its quota; NULL: none */
};

/* Quotas on persistent rooms (0: no limit).  Every unexpired room counts,
 * from its creation (while being written too) until it expires or is
 * deleted; rooms loaded at start count against their creator, and
 * against an address only if created since (addresses are not stored). */
struct rooms_quota {
	unsigned total;       /* [rooms] max_rooms */
	unsigned per_creator; /* max_rooms_per_creator: by created_by */
	unsigned per_address; /* max_rooms_per_address: IPv4 address or IPv6 /64 */
};
enum rooms_quota_hit { ROOMS_QUOTA_OK, ROOMS_QUOTA_TOTAL, ROOMS_QUOTA_CREATOR, ROOMS_QUOTA_ADDRESS };

/* Whether one more room by CREATED_BY from FROM (may be NULL) fits Q. */
enum rooms_quota_hit rooms_quota_check(struct rooms *r, const struct rooms_quota *q,
				       const char *created_by, const struct netaddr *from);

/* STATUS 0 with the room and its token (shown this once), or a negative
 * errno with WHY. */
typedef void (*rooms_created_fn)(int status, const struct store_room *room, const char *token,
				 const char *why, void *data);
typedef void (*rooms_key_created_fn)(int status, const struct store_key *key, const char *api_key,
				     const char *why, void *data);

/* Every creation completes through DONE, exactly once; it may already
 * have run when the call returns. */
void rooms_create(struct rooms *r, const struct rooms_spec *spec, const char *created_by,
		  gint64 now, rooms_created_fn done, void *data);
void rooms_create_key(struct rooms *r, const char *room_id, const char *name, gint64 expires_at,
		      gint64 now, rooms_key_created_fn done, void *data);
/* An API key of ACCOUNT (a "jwt:ISSUER:SUB" principal) instead of a
 * room: valid in the rooms that account may use (the router decides). */
void rooms_create_account_key(struct rooms *r, const char *account, const char *name,
			      gint64 expires_at, gint64 now, rooms_key_created_fn done, void *data);
/* STATUS 0 once the change is durable, or a negative errno with WHY:
 * nothing changed (-EAGAIN: the store's queue was full; -EBUSY: the
 * database stayed locked). */
typedef void (*rooms_written_fn)(int status, const char *why, void *data);
/* A deletion or revocation takes effect, here and in the store, when the
 * store has it: an answer never claims what a restart would undo.  While
 * it is being written the room is not found and the key is refused (fail
 * closed); if the write fails both are as they were.  0 and DONE is
 * called exactly once (it may already have run); -ENOENT if unknown,
 * -EINPROGRESS while the same change is being written (DONE is not
 * called then). */
int rooms_delete(struct rooms *r, const char *room_id, rooms_written_fn done, void *data);
int rooms_revoke_key(struct rooms *r, const char *key_id, gint64 now, rooms_written_fn done,
		     void *data);

/* An expired room is kept this long, so registrations are told
 * ROOM_EXPIRED rather than ROOM_NOT_FOUND; then it is purged. */
#define ROOMS_EXPIRED_RETENTION 3600

/* The ids of the rooms that expired by NOW and were not reported yet (the
 * caller closes their peers); rooms expired over ROOMS_EXPIRED_RETENTION
 * ago are purged, here and in the store.  g_ptr_array_unref. */
GPtrArray *rooms_take_expired(struct rooms *r, gint64 now);
/* When rooms_take_expired has something to do next, or 0. */
gint64 rooms_next_expiry(struct rooms *r);

/* The expiry of a room created at NOW: REQUESTED seconds (-1: DEFAULT_TTL;
 * 0: never), within MAX_TTL (0: unbounded).  -EINVAL with *WHY. */
int rooms_expiry(unsigned default_ttl, unsigned max_ttl, gint64 requested, gint64 now,
		 gint64 *expires_at, const char **why);

/* In creation order (created_at, then id). */
GPtrArray *rooms_list(struct rooms *r); /* of const struct store_room *, container only */
GPtrArray *rooms_list_keys(struct rooms *r); /* of const struct store_key * */

/* Room members: accounts ("jwt:ISSUER:SUB") added to a room by the
 * operator, so their account keys are valid there.  They go with their
 * room.  Takes the records of store_load_members()'s array. */
void rooms_load_members(struct rooms *r, GPtrArray *members);
/* False while its removal is being written (fail closed). */
bool rooms_is_member(struct rooms *r, const char *room_id, const char *account);
/* Of const struct store_member *, by when added; container only. */
GPtrArray *rooms_list_members(struct rooms *r, const char *room_id);
/* As rooms_delete: DONE once durable (adding a member twice is not an
 * error); -ENOENT for an unknown room (add) or member (remove),
 * -EINPROGRESS while the same removal is being written. */
int rooms_add_member(struct rooms *r, const char *room_id, const char *account, gint64 now,
		     rooms_written_fn done, void *data);
int rooms_remove_member(struct rooms *r, const char *room_id, const char *account,
			rooms_written_fn done, void *data);

/* Changes another instance made and wrote (the Redis store's notices, or
 * a reload from it): applied to memory only.  apply_room and apply_key
 * take the record.  apply_delete: true when the room was here (the caller
 * closes its peers); apply_revoke: true when the key was not revoked yet
 * (the caller closes its sessions). */
void rooms_apply_room(struct rooms *r, struct store_room *room);
bool rooms_apply_delete(struct rooms *r, const char *room_id);
void rooms_apply_key(struct rooms *r, struct store_key *key);
bool rooms_apply_revoke(struct rooms *r, const char *key_id, gint64 when);
void rooms_apply_member(struct rooms *r, const char *room_id, const char *account, gint64 added_at,
			bool add);
/* Memory becomes what the store holds (SNAP's rooms, keys and members,
 * taken): the ids of rooms no longer there go to GONE, of keys revoked
 * or no longer there to REVOKED (g_free'd strings), for the caller to
 * close.  Changes being written here are left alone, and so are the rooms
 * and keys whose ids are in KEEP (may be NULL): changed since SNAP was
 * read, which it may not show yet. */
void rooms_replace(struct rooms *r, struct store_snapshot *snap, GHashTable *keep, GPtrArray *gone,
		   GPtrArray *revoked);
