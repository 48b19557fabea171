/* roomhttp: POST /create-room on the WebSocket port, the room service's
 * HTTP adapter (as keyapi is pubkeys'): the bearer JWT is checked
 * (auth), the body decoded as create_room's fields, the room created
 * (roomsvc), and the outcome told as an HTTP status and a JSON body.
 * The transport (ws.c) only carries the request and the answer. */
#pragma once

#include "auth/auth.h"
#include "util/config.h"
#include "util/netaddr.h"
#include "store/roomsvc.h"

#include <stddef.h>

struct roomhttp_env {
	struct auth *auth;
	struct roomsvc *roomsvc;
};

typedef void (*roomhttp_done_fn)(unsigned status, char *json, void *data);
struct roomhttp_pending;

/* POST /create-room from FROM (NULL: unknown, a unix socket): BEARER is
 * the Authorization header's token, BODY the request body (may be empty).
 * DONE gets the status (201; 400 a bad body or expiry; 401 no valid JWT;
 * 429 a room quota is full; 503 the store failed) and a JSON body
 * (g_free), now (NULL is returned) or once the room is durable;
 * roomhttp_cancel() stops a pending one (the connection went away). */
struct roomhttp_pending *roomhttp_create(const struct roomhttp_env *env, const struct config *cfg,
					 const struct netaddr *from, const char *bearer,
					 const char *body, size_t len, roomhttp_done_fn done,
					 void *data);
void roomhttp_cancel(struct roomhttp_pending *p);
