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

enum change { JOINED, UPDATED, LEFT };

/* What change CH of P (from OLD metadata, for UPDATED) is to W: an event
 * type, or -1 for none.  *WHY is set for a peer_left. */
static int event_for(struct watch *w, const struct peer *p, const struct meta *old, enum change ch,
		     enum protocol_gone *why, bool *lost)
{
	bool was, now, lost_old = false;

	*lost = false;
	if (!w->filter)
		return ch == JOINED ? PROTOCOL_PEER_JOINED : ch == UPDATED ? PROTOCOL_PEER_UPDATED : PROTOCOL_PEER_LEFT;
	metrics_inc(watch_evaluations);
	now = watch_matches(w, p->role, p->meta, lost);
	if (ch == JOINED)
		return now ? PROTOCOL_PEER_JOINED : -1;
	if (ch == LEFT)
		return now ? PROTOCOL_PEER_LEFT : -1;
	/* a change of nothing it reads leaves P in or out as it was */
	was = now;
	if (watch_reads_change(w, old, p->meta)) {
		metrics_inc(watch_evaluations);
		was = watch_matches(w, p->role, old, &lost_old);
		*lost |= lost_old;
	}
	if (was && now)
		return PROTOCOL_PEER_UPDATED;
	if (now)
		return PROTOCOL_PEER_JOINED;
	if (was) {
		*why = PROTOCOL_GONE_UNMATCHED;
		return PROTOCOL_PEER_LEFT;
	}
	return -1;
}

/* Tells every watch of P's room what change CH of P means to it. */
static void notify(struct router *r, struct peer *p, const struct meta *old, enum change ch,
		   enum protocol_gone gone)
{
	struct msgbuf *shared[PROTOCOL_EVENT__COUNT] = { 0 }; /* presence's, built once */

	if (!p->room->watches)
		return;
	g_autoptr(GPtrArray) cands = g_ptr_array_new();
	watch_candidates(p, old, p->meta, cands);
	for (guint i = 0; i < cands->len; i++) {
		struct watch *w = g_ptr_array_index(cands, i);
		struct client *c = w->owner;
		enum protocol_gone why = gone;
		bool lost;
		if (w->self == p || c->closing)
			continue;
		int ev = event_for(w, p, old, ch, &why, &lost);
		if (lost) {
			lose(r, c, w, "filter_work");
			continue;
		}
		if (ev < 0)
			continue;
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
	for (int e = 0; e < PROTOCOL_EVENT__COUNT; e++)
		if (shared[e])
			msgbuf_unref(shared[e]);
}

void events_joined(struct router *r, struct peer *p)
{
	p->shown = true;
	notify(r, p, NULL, JOINED, PROTOCOL_GONE_LEFT);
}

void events_updated(struct router *r, struct peer *p, const struct meta *old)
{
	if (p->shown)
		notify(r, p, old, UPDATED, PROTOCOL_GONE_LEFT);
}

void events_left(struct router *r, struct peer *p, enum protocol_gone why)
{
	if (p->shown)
		notify(r, p, NULL, LEFT, why);
	p->shown = false;
}

void events_subscribe(struct router *r, struct client *c)
{
	(void)r;
	if (c->presence)
		return;
	c->presence = watch_add(c->peer->room, c, c->peer, NULL, NULL);
	metrics_inc(presence_subscriptions);
}

void events_handle_subscribe(struct router *r, struct client *c, const struct msg *m)
{
	bool on = m->type == MSG_SUBSCRIBE;

	if (on)
		events_subscribe(r, c);
	else if (c->presence)
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
	if (watch_room_count(c->peer->room) >= r->cfg->watches_per_room) {
		metrics_inc(limit_hits[LIMIT_WATCHES_PER_ROOM]);
		router_error_to(r, c, m, ERR_RATE_LIMITED, NULL, NULL,
				"Too many watches in this room (watches_per_room = %u)", r->cfg->watches_per_room);
		return false;
	}
	return true;
}

const char *events_watch(struct router *r, struct client *c, struct filter *f)
{
	char id[16];

	(void)r;
	snprintf(id, sizeof id, "w%u", ++c->watch_seq);
	if (!c->watches)
		c->watches = g_ptr_array_new();
	struct watch *w = watch_add(c->peer->room, c, c->peer, id, f);
	g_ptr_array_add(c->watches, w);
	metrics_inc(watches);
	return w->id;
}

void events_forget(struct client *c, const char *id)
{
	struct watch *w = find_watch(c, id);

	if (w)
		drop(c, w);
}

void events_end(struct client *c)
{
	if (c->presence)
		drop(c, c->presence);
	while (c->watches && c->watches->len)
		drop(c, g_ptr_array_index(c->watches, c->watches->len - 1));
	g_clear_pointer(&c->watches, g_ptr_array_unref);
}
