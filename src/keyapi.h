/* keyapi: the HTTP edges of Ed25519 peer authentication on the WebSocket
 * port (sleap-rtc): credentials are checked here (auth, rooms), the
 * decisions are pubkeys.h's, the transport is ws.c's.  Each call answers
 * at once: an HTTP status and a JSON body (g_free). */
#pragma once

#include "config.h"
#include "router.h"

/* POST /api/auth/public-keys: BEARER a JWT of a configured issuer, BODY
 * {"public_key","device_name"}.  The key is the account's (issuer and
 * subject) from now on; written behind to the store. */
unsigned keyapi_publish(const struct router_env *env, const struct config *cfg, const char *bearer,
			const char *body, size_t len, char **json);

/* GET /api/rooms/ROOM_ID/authorized-keys: BEARER an API key of the room,
 * or a JWT of an account that may use it. */
unsigned keyapi_authorized(const struct router_env *env, const struct config *cfg,
			   const char *room_id, const char *bearer, char **json);
