/* audit: who changed what through the admin port (the API, the dashboard
 * or rtcsignalctl).  Each action is logged as LOG_EVENT_ADMIN_ACTION with
 * the actor and the object, and the last few are kept in a bounded ring
 * for GET /api/audit.  Never a secret: the object is a room or key id.
 * Used on the event loop only. */
#pragma once

#include <glib.h>
#include <json-c/json.h>

struct audit;

/* Keeps the last CAPACITY (at least 1) entries. */
struct audit *audit_new(unsigned capacity);
void audit_free(struct audit *a);
/* Logs and keeps: ACTION ("room_delete"), by ACTOR ("admin-token" or a
 * JWT subject), on OBJECT (a room or key id), with ROOM when the object
 * belongs to one (may be NULL), at NOW (seconds since the epoch). */
void audit_record(struct audit *a, const char *action, const char *actor, const char *object,
		  const char *room, gint64 now);
/* {"entries":[{"time","action","actor","object","room"}...]}, newest first. */
json_object *audit_to_json(const struct audit *a);
