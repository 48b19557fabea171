/* roomsvc: the room service, the one place persistent rooms are created
 * (expiry and quotas checked, then written through rooms), deleted and
 * expired, for every caller: the WebSocket create_room (through the
 * router's ops), POST /create-room (roomhttp) and the admin API.  It
 * answers with a negative errno and a reason; HTTP statuses belong to
 * the HTTP adapters.  The live peers of a room that goes are closed
 * through a hook the composition root sets (the router's). */
#pragma once

#include "util/config.h"
#include "util/netaddr.h"
#include "core/protocol.h"
#include "store/rooms.h"

#include <glib.h>

struct roomsvc;

/* Closes the peers of ROOM_ID (room_closed, REASON); returns how many. */
typedef unsigned (*roomsvc_close_fn)(void *data, const char *room_id, const char *reason);

struct roomsvc *roomsvc_new(struct rooms *rooms, const struct config *cfg);
void roomsvc_free(struct roomsvc *s);
void roomsvc_set_config(struct roomsvc *s, const struct config *cfg);
void roomsvc_set_close(struct roomsvc *s, roomsvc_close_fn fn, void *data);

struct roomsvc_request {
	const struct msg_create_room *spec;
	const char *created_by;     /* a principal; "admin" for the operator */
	const struct netaddr *from; /* for the per-address quota; NULL: unknown */
	bool by_operator;           /* the admin API: quotas do not apply */
};

/* Starts a creation at NOW (seconds).  0: DONE runs exactly once (it may
 * already have run), with the room once it is durable or the store's
 * error; -EINVAL (the expiry asked for is out of bounds) or -EDQUOT (a
 * quota is full, counted and logged) with *WHY, and DONE is not called. */
int roomsvc_create(struct roomsvc *s, const struct roomsvc_request *req, gint64 now,
		   rooms_created_fn done, void *data, const char **why);

/* STATUS 0 once the deletion is durable, with CLOSED the peers closed;
 * or the store's error with WHY (nothing changed). */
typedef void (*roomsvc_deleted_fn)(int status, unsigned closed, const char *why, void *data);
/* As rooms_delete: 0 and DONE exactly once; -ENOENT, -EINPROGRESS. */
int roomsvc_delete(struct roomsvc *s, const char *room_id, roomsvc_deleted_fn done, void *data);

const struct store_room *roomsvc_find(struct roomsvc *s, const char *room_id);

/* Rooms expired by NOW lose their peers (room_closed, "expired"). */
void roomsvc_expire(struct roomsvc *s, gint64 now);
