/* store_redis: the room store in Redis ([rooms] store = redis), shared by
 * every instance of a cluster.
 *
 * Keys (P is [cluster] key_prefix; a room's own keys carry {ROOM}, a hash
 * tag, so they would stay on one shard of a Redis Cluster):
 *   P rooms             set of room ids (an index; may name expired rooms)
 *   P {ROOM}:room       the room, JSON; EXPIREAT its expiry + retention
 *   P {ROOM}:keys       hash key_id -> the room's API keys, JSON  } same
 *   P {ROOM}:revoked    hash key_id -> revocation time             } expiry
 *   P {ROOM}:members    hash account -> time added                 }
 *   P keyroom           hash key_id -> room id (revoking by key id)
 *   P akeys, P akeys:revoked   account keys and their revocations
 *   P pubkeys           hash "ACCOUNT\nKEY" -> public key, JSON
 *   P changes           channel: a notice after each durable write
 * Credentials are stored as their SHA-256 only, as with sqlite. */
#pragma once

#include "store/store.h"

#include <json-c/json.h>

#define STORE_REDIS_CHANNEL "changes"
/* Connecting, and each command, give up after this long. */
#define STORE_REDIS_TIMEOUT_MS 2000

/* The JSON of a record, in the store and in notices; parse returns NULL
 * for a malformed one. */
json_object *store_redis_room_json(const struct store_room *room);
struct store_room *store_redis_room_parse(json_object *o);
json_object *store_redis_key_json(const struct store_key *key);
struct store_key *store_redis_key_parse(json_object *o);
json_object *store_redis_pubkey_json(const struct store_pubkey *k);
struct store_pubkey *store_redis_pubkey_parse(json_object *o);
