/* adminapi: the admin API's requests (/api/rooms, /api/keys), answered on
 * the event loop where rooms and peers live.  JSON in, JSON out; never a
 * room token or key secret except once at creation, never an address or
 * metadata value. */
#pragma once

#include "admin.h"
#include "config.h"
#include "registry.h"
#include "rooms.h"
#include "roomsvc.h"
#include "router.h"

struct adminapi {
	const struct config *const *cfg; /* the daemon's current config */
	struct rooms *rooms;
	struct roomsvc *roomsvc; /* creates and deletes rooms */
	struct registry *reg;
	struct router *router;
};

/* admin_options.api */
void adminapi_handle(void *data, struct admin_request *req);
