/* adminapi: the admin API's requests (/api/rooms, /api/keys), answered on
 * the event loop where rooms and peers live.  JSON in, JSON out; never a
 * room token or key secret except once at creation, never an address or
 * metadata value.  GET /api/dashboard and /api/audit feed the page
 * of dashboard.c: aggregates and ids only. */
#pragma once

#include "daemon/admin.h"
#include "auth/auth.h"
#include "daemon/audit.h"
#include "util/config.h"
#include "core/registry.h"
#include "store/rooms.h"
#include "store/roomsvc.h"
#include "core/router.h"

struct adminapi {
	const struct config *const *cfg; /* the daemon's current config */
	struct rooms *rooms;
	struct roomsvc *roomsvc; /* creates and deletes rooms */
	struct registry *reg;
	struct router *router;
	struct audit *audit; /* admin actions (may be NULL: logged only) */
	struct auth *auth;   /* verifies administrators' JWTs (may be NULL: none) */
	const char *actor;   /* during adminapi_handle: who asks (audit_record's) */
};

/* admin_options.api */
void adminapi_handle(void *data, struct admin_request *req);
