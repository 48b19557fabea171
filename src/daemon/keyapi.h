/* keyapi: the HTTP edges of Ed25519 peer authentication on the WebSocket
 * port (sleap-rtc): credentials are checked here (auth, rooms), the
 * decisions are pubkeys.h's, the transport is ws.c's.  Answers are an
 * HTTP status and a JSON body (g_free). */
#pragma once

#include "util/config.h"
#include "util/addrlimit.h"
#include "auth/auth.h"
#include "util/netaddr.h"
#include "auth/pubkeys.h"
#include "store/rooms.h"
#include "store/store.h"

/* What the key endpoints read and write; it outlives the requests. */
struct keyapi_env {
	struct rooms *rooms;
	struct auth *auth;
	struct addrlimit *addrlimit; /* per-address attempt limits */
	struct pubkeys *pubkeys;     /* Ed25519 public keys of accounts */
	struct store *store;         /* where they are written; NULL: memory only */
};

typedef void (*keyapi_done_fn)(unsigned status, char *json, void *data);
struct keyapi_pending;

/* POST /api/auth/public-keys from FROM (NULL: unknown): BEARER a JWT of
 * a configured issuer or an account API key, BODY {"public_key",
 * "device_name"}.  The key is the account's (issuer and subject) from
 * now on.  Attempts count as for keyapi_authorized.  DONE gets the answer (JSON, g_free) now (NULL
 * returned) or once the key is durable: sleap-rtc never posts a key
 * again once told it is registered.  keyapi_cancel() stops a pending
 * one (the connection went away); the key is kept. */
struct keyapi_pending *keyapi_publish(const struct keyapi_env *env, const struct config *cfg,
				      const struct netaddr *from, const char *bearer, const char *body,
				      size_t len, keyapi_done_fn done, void *data);
void keyapi_cancel(struct keyapi_pending *p);

/* GET /api/rooms/ROOM_ID/authorized-keys from FROM (NULL: unknown):
 * BEARER an API key of the room, or an account key or a JWT of an
 * account that may use it (as at register: pubkeys_account_may_use,
 * with the rooms' members).
 * Each attempt counts against the address's registrations, so keys are
 * no faster to guess here than at register. */
unsigned keyapi_authorized(const struct keyapi_env *env, const struct config *cfg,
			   const struct netaddr *from, const char *room_id, const char *bearer,
			   char **json);
