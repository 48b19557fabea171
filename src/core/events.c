#include "core/events.h"

#include "core/router-internal.h"
#include "core/watch.h"
#include "util/metrics.h"

#include <errno.h>
#include <string.h>

static int send_event(struct router *r, struct client *c, struct msgbuf *m, bool force)
{
	if (r->ops->event)
		return r->ops->event(r->ctx, c, m, force);
	return r->ops->send(r->ctx, c, m);
}

/* Ends W untold (C leaves, unwatches, or loses it). */
static void drop(struct client *c, struct watch *w)
{
	if (w == c->presence) {
		c->presence = NULL;
		metrics_dec(presence_subscriptions);
	} else {
		g_ptr_array_remove(c->watches, w);
		metrics_dec(watches);
	}
	watch_remove(w);
}

/* W ends, and its watcher is told why, so it can ask again. */
static void lose(struct router *r, struct client *c, struct watch *w, const char *reason)
{
	struct msgbuf *m = protocol_watch_lost(w->id, reason);

	if (strcmp(reason, "queue_full") == 0)
		metrics_inc(watches_lost);
	else
		metrics_inc(watches_lost_work);
	drop(c, w);
	send_event(r, c, m, true);
	msgbuf_unref(m);
}

/* Sends event EV about P to W's watcher (WHY for a peer_left); a
 * watcher too slow for it loses W.  Presence events are built once per
 * change: SHARED keeps them. */
static void tell(struct router *r, struct watch *w, const struct peer *p, enum protocol_event ev,
		 enum protocol_gone why, struct msgbuf **shared)
{
	struct client *c = w->owner;
	struct msgbuf *m;

	if (!w->filter && shared[ev]) {
		m = msgbuf_ref(shared[ev]);
	} else {
		m = ev == PROTOCOL_PEER_LEFT ? protocol_peer_left(r->scratch, w->id, p, why)
					     : protocol_peer_event(r->scratch, ev, w->id, p);
		if (!w->filter)
			shared[ev] = msgbuf_ref(m);
	}
	int rc = send_event(r, c, m, false);
	msgbuf_unref(m);
	if (rc == -ENOBUFS)
		lose(r, c, w, "queue_full");
	else if (rc == 0)
		metrics_inc(watch_events[ev]);
}

static void drop_shared(struct msgbuf **shared)
{
	for (int e = 0; e < PROTOCOL_EVENT__COUNT; e++)
		if (shared[e])
			msgbuf_unref(shared[e]);
}

/* Whether W is to hear of P: not its own watcher, not a closing one. */
static bool concerns(const struct watch *w, const struct peer *p)
{
	return w->self != p && !((struct client *)w->owner)->closing;
}

/* Whether W's filter matches P with metadata M; a filter over its
 * budget for one peer loses its watch (*GONE). */
static bool matches(struct router *r, struct watch *w, const struct peer *p, const struct meta *m,
		    bool *gone)
{
	bool lost, match;

	metrics_inc(watch_evaluations);
	match = watch_matches(w, p->role, m, &lost);
	*gone = lost;
	if (lost)
		lose(r, w->owner, w, "filter_work");
	return match;
}

void events_joined(struct router *r, struct peer *p)
{
	struct msgbuf *shared[PROTOCOL_EVENT__COUNT] = { 0 };
	bool gone;

	p->shown = true;
	if (!p->room->watches)
		return;
	g_autoptr(GPtrArray) cands = g_ptr_array_new();
	watch_candidates(p, cands);
	for (guint i = 0; i < cands->len; i++) {
		struct watch *w = g_ptr_array_index(cands, i);
		if (!concerns(w, p))
			continue;
		if (!w->filter) {
			tell(r, w, p, PROTOCOL_PEER_JOINED, 0, shared);
		} else if (matches(r, w, p, p->meta, &gone)) {
			watch_hold(w, p);
			tell(r, w, p, PROTOCOL_PEER_JOINED, 0, shared);
		}
	}
	drop_shared(shared);
}

void events_updated(struct router *r, struct peer *p, const struct meta *old)
{
	struct msgbuf *shared[PROTOCOL_EVENT__COUNT] = { 0 };
	bool gone;

	if (!p->shown || !p->room->watches)
		return;
	/* Presence first, as for every change.  The watches that read what
	 * changed may see P enter or leave; the rest keep their answer, and
	 * only those whose set holds P hear that it changed. */
	g_autoptr(GPtrArray) presence = g_ptr_array_new();
	watch_presence(p, presence);
	for (guint i = 0; i < presence->len; i++)
		if (concerns(g_ptr_array_index(presence, i), p))
			tell(r, g_ptr_array_index(presence, i), p, PROTOCOL_PEER_UPDATED, 0, shared);
	g_autoptr(GPtrArray) readers = g_ptr_array_new();
	watch_mark_members(p);
	watch_readers(p, old, p->meta, readers);
	for (guint i = 0; i < readers->len; i++) {
		struct watch *w = g_ptr_array_index(readers, i);
		bool was = watch_marked(w);
		w->member = 0; /* told here */
		if (!concerns(w, p))
			continue;
		bool now = matches(r, w, p, p->meta, &gone);
		if (gone)
			continue;
		if (was && !now)
			watch_release(w, p);
		else if (!was && now)
			watch_hold(w, p);
		if (was || now)
			tell(r, w, p, !was ? PROTOCOL_PEER_JOINED : now ? PROTOCOL_PEER_UPDATED : PROTOCOL_PEER_LEFT,
			     PROTOCOL_GONE_UNMATCHED, shared);
	}
	g_autoptr(GPtrArray) members = g_ptr_array_new();
	if (p->watches_in)
		g_ptr_array_extend(members, p->watches_in, NULL, NULL);
	for (guint i = 0; i < members->len; i++) {
		struct watch *w = g_ptr_array_index(members, i);
		if (watch_marked(w) && concerns(w, p))
			tell(r, w, p, PROTOCOL_PEER_UPDATED, 0, shared);
	}
	drop_shared(shared);
}

void events_left(struct router *r, struct peer *p, enum protocol_gone why)
{
	struct msgbuf *shared[PROTOCOL_EVENT__COUNT] = { 0 };
	g_autoptr(GPtrArray) told = g_ptr_array_new();

	if (p->shown)
		watch_presence(p, told);
	if (p->watches_in) {
		g_ptr_array_extend(told, p->watches_in, NULL, NULL);
		g_clear_pointer(&p->watches_in, g_ptr_array_unref);
	}
	p->shown = false;
	for (guint i = 0; i < told->len; i++) {
		struct watch *w = g_ptr_array_index(told, i);
		if (concerns(w, p))
			tell(r, w, p, PROTOCOL_PEER_LEFT, why, shared);
	}
	drop_shared(shared);
}

/* Whether C's room takes one more watch or subscription; if not, C is
 * told RATE_LIMITED about M. */
static bool room_has_place(struct router *r, struct client *c, const struct msg *m)
{
	/* A socket a newer one took over is sent nothing more. */
	if (c->superseded) {
		router_error_to(r, c, m, ERR_NOT_IN_ROOM, NULL, NULL,
				"This connection's peer id was registered again by another connection");
		return false;
	}
	if (watch_room_count(c->peer->room) < r->cfg->watches_per_room)
		return true;
	metrics_inc(limit_hits[LIMIT_WATCHES_PER_ROOM]);
	router_error_to(r, c, m, ERR_RATE_LIMITED, NULL, NULL,
			"Too many watches in this room (watches_per_room = %u)", r->cfg->watches_per_room);
	return false;
}

bool events_subscribe(struct router *r, struct client *c, const struct msg *m)
{
	if (c->presence)
		return true;
	if (!room_has_place(r, c, m))
		return false;
	c->presence = watch_add(c->peer->room, c, c->peer, NULL, NULL);
	metrics_inc(presence_subscriptions);
	return true;
}

void events_handle_subscribe(struct router *r, struct client *c, const struct msg *m)
{
	bool on = m->type == MSG_SUBSCRIBE;

	if (on && !events_subscribe(r, c, m))
		return;
	if (!on && c->presence)
		drop(c, c->presence);
	router_send_owned(r, c, protocol_subscribed(on));
}

static struct watch *find_watch(struct client *c, const char *id)
{
	for (guint i = 0; c->watches && i < c->watches->len; i++) {
		struct watch *w = g_ptr_array_index(c->watches, i);
		if (strcmp(w->id, id) == 0)
			return w;
	}
	return NULL;
}

void events_handle_unwatch(struct router *r, struct client *c, const struct msg *m)
{
	const char *id = m->unwatch.watch_id;
	struct watch *w = find_watch(c, id);

	if (!w) {
		router_error_to(r, c, m, ERR_WATCH_NOT_FOUND, "watch_id", id, "No watch %s on this connection", id);
		return;
	}
	drop(c, w);
	router_send_owned(r, c, protocol_unwatched(id));
}

bool events_may_watch(struct router *r, struct client *c, const struct msg *m)
{
	unsigned held = c->watches ? c->watches->len : 0;

	if (held >= r->cfg->watches_per_session) {
		metrics_inc(limit_hits[LIMIT_WATCHES_PER_SESSION]);
		router_error_to(r, c, m, ERR_RATE_LIMITED, NULL, NULL,
				"Too many watches on this connection (watches_per_session = %u)",
				r->cfg->watches_per_session);
		return false;
	}
	/* It is kept: its size is bounded as a peer's metadata is. */
	if (r->len > r->cfg->max_metadata_bytes) {
		metrics_inc(limit_hits[LIMIT_METADATA_BYTES]);
		router_error_to(r, c, m, ERR_INVALID_FILTER, NULL, NULL,
				"A watched discover_peers may be at most max_metadata_bytes (%" G_GUINT64_FORMAT
				") long", (guint64)r->cfg->max_metadata_bytes);
		return false;
	}
	return room_has_place(r, c, m);
}

const char *events_watch(struct router *r, struct client *c, struct filter *f)
{
	char id[16];

	(void)r;
	snprintf(id, sizeof id, "w%u", ++c->watch_seq);
	struct watch *w = watch_add(c->peer->room, c, c->peer, id, f);
	if (watch_fill(w) < 0) {
		watch_remove(w);
		return NULL;
	}
	if (!c->watches)
		c->watches = g_ptr_array_new();
	g_ptr_array_add(c->watches, w);
	metrics_inc(watches);
	return w->id;
}

void events_end(struct client *c)
{
	if (c->presence)
		drop(c, c->presence);
	while (c->watches && c->watches->len)
		drop(c, g_ptr_array_index(c->watches, c->watches->len - 1));
	g_clear_pointer(&c->watches, g_ptr_array_unref);
}
