#include "store/roomsvc.h"

#include "util/log.h"
#include "util/metrics.h"

#include <errno.h>

struct roomsvc {
	struct rooms *rooms;
	const struct config *cfg;
	roomsvc_close_fn close;
	void *close_data;
	struct log_rate quota_log; /* refusals: once a second at most */
};

struct roomsvc *roomsvc_new(struct rooms *rooms, const struct config *cfg)
{
	struct roomsvc *s = g_new0(struct roomsvc, 1);
	s->rooms = rooms;
	s->cfg = cfg;
	return s;
}

void roomsvc_free(struct roomsvc *s)
{
	g_free(s);
}

void roomsvc_set_config(struct roomsvc *s, const struct config *cfg)
{
	s->cfg = cfg;
}

void roomsvc_set_close(struct roomsvc *s, roomsvc_close_fn fn, void *data)
{
	s->close = fn;
	s->close_data = data;
}

static unsigned close_peers(struct roomsvc *s, const char *room_id, const char *reason)
{
	return s->close ? s->close(s->close_data, room_id, reason) : 0;
}

/* Whether CREATED_BY may create one more room from FROM (may be NULL);
 * -EDQUOT with *WHY naming the quota.  Refusals are logged once a second
 * at most, with how many went unlogged. */
static int check_quota(struct roomsvc *s, const char *created_by, const struct netaddr *from,
		       const char **why)
{
	static const struct {
		enum metrics_limit limit;
		const char *key, *why;
	} hits[] = {
		[ROOMS_QUOTA_TOTAL] = { LIMIT_ROOMS, "max_rooms",
					"Room quota reached: [rooms] max_rooms persistent rooms "
					"exist; try again once one expires" },
		[ROOMS_QUOTA_CREATOR] = { LIMIT_ROOMS_PER_CREATOR, "max_rooms_per_creator",
					  "Room quota reached: [rooms] max_rooms_per_creator rooms of "
					  "this creator exist; delete one or wait for one to expire" },
		[ROOMS_QUOTA_ADDRESS] = { LIMIT_ROOMS_PER_ADDRESS, "max_rooms_per_address",
					  "Room quota reached: [rooms] max_rooms_per_address rooms created "
					  "from this address exist; delete one or wait for one to expire" },
	};
	const struct rooms_quota q = { .total = s->cfg->rooms_max,
				       .per_creator = s->cfg->rooms_per_creator,
				       .per_address = s->cfg->rooms_per_address };
	enum rooms_quota_hit hit = rooms_quota_check(s->rooms, &q, created_by, from);
	unsigned skipped;

	if (hit == ROOMS_QUOTA_OK)
		return 0;
	metrics_inc(limit_hits[hits[hit].limit]);
	*why = hits[hit].why;
	if (log_rate_due(&s->quota_log, (uint64_t)g_get_monotonic_time() / 1000, &skipped)) {
		struct log_fields f = { .remote = from, .code = hits[hit].key };
		log_event(LOG_NOTICE, LOG_EVENT_LIMIT_HIT, &f, "create_room by %s refused: %s (%u more since)",
			  created_by, hits[hit].why, skipped);
	}
	return -EDQUOT;
}

/* A creation in flight: logged once durable, then the caller told. */
struct creation {
	rooms_created_fn done;
	void *data;
	bool by_operator;
};

static void created(int status, const struct store_room *room, const char *token, const char *why,
		    void *data)
{
	struct creation *c = data;

	if (status == 0) {
		struct log_fields f = { .room = room->id };
		if (c->by_operator)
			log_event(LOG_NOTICE, LOG_EVENT_NONE, &f, "room created through the admin API");
		else
			log_event(LOG_INFO, LOG_EVENT_NONE, &f, "room created by %s", room->created_by);
	}
	c->done(status, room, token, why, c->data);
	g_free(c);
}

int roomsvc_create(struct roomsvc *s, const struct roomsvc_request *req, gint64 now,
		   rooms_created_fn done, void *data, const char **why)
{
	const struct msg_create_room *spec = req->spec;
	struct rooms_spec rs = { .max_peers = spec->max_peers, .name = spec->name,
				 .open_to_issuer = spec->open_to_issuer, .from = req->from };

	if (rooms_expiry(s->cfg->rooms_default_ttl, s->cfg->rooms_max_ttl, spec->expires_in, now,
			 &rs.expires_at, why) < 0)
		return -EINVAL;
	/* The operator's own rooms are not held to the clients' quotas. */
	if (!req->by_operator && check_quota(s, req->created_by, req->from, why) < 0)
		return -EDQUOT;
	struct creation *c = g_new0(struct creation, 1);
	c->done = done;
	c->data = data;
	c->by_operator = req->by_operator;
	rooms_create(s->rooms, &rs, req->created_by, now, created, c);
	return 0;
}

struct deletion {
	struct roomsvc *s;
	char *id;
	roomsvc_deleted_fn done;
	void *data;
};

static void deleted(int status, const char *why, void *data)
{
	struct deletion *d = data;
	/* Durable: its peers go now, so none is left in a room a restart
	 * would not have. */
	unsigned closed = status == 0 ? close_peers(d->s, d->id, "deleted") : 0;

	d->done(status, closed, why, d->data);
	g_free(d->id);
	g_free(d);
}

int roomsvc_delete(struct roomsvc *s, const char *room_id, roomsvc_deleted_fn done, void *data)
{
	struct deletion *d = g_new0(struct deletion, 1);
	d->s = s;
	d->id = g_strdup(room_id);
	d->done = done;
	d->data = data;
	int r = rooms_delete(s->rooms, room_id, deleted, d);
	if (r < 0) {
		g_free(d->id);
		g_free(d);
	}
	return r;
}

const struct store_room *roomsvc_find(struct roomsvc *s, const char *room_id)
{
	return rooms_find(s->rooms, room_id);
}

void roomsvc_expire(struct roomsvc *s, gint64 now)
{
	gint64 next = rooms_next_expiry(s->rooms);

	if (!next || next > now)
		return;
	g_autoptr(GPtrArray) expired = rooms_take_expired(s->rooms, now);
	for (guint i = 0; i < expired->len; i++) {
		const char *id = g_ptr_array_index(expired, i);
		unsigned n = close_peers(s, id, "expired");
		struct log_fields f = { .room = id };
		log_event(LOG_INFO, LOG_EVENT_NONE, &f, "room expired, %u peers closed", n);
	}
}
