/* watch: who in a room wants to hear about its peers (docs/protocol.md
 * "Presence and watches"), indexed so that a change is shown only to the
 * watches it can concern.
 *
 * A watch is a discovery filter kept alive, or (no filter) a presence
 * subscription.  Two indexes per room find the watches a change can
 * concern without trying the others:
 * - by anchor (filter.h: a role, a tag, a property, a property's value
 *   that every peer the filter matches must have): a peer that joins is
 *   tried only against the watches filed under something it has (and
 *   those with no anchor);
 * - by what a filter reads (its properties, the tags), each with each of
 *   its anchors: an update is tried only against the watches that read
 *   something it changed and hold the peer or have an anchor it has, in
 *   lookups of what changed times what the peer has, whatever the number
 *   of watches.
 * Each peer lists the watches whose set holds it, so an update that
 * changes nothing a watch reads tells that watch's members "updated" and
 * costs the others nothing, and leaving costs no evaluation at all.
 * Pure data: what is sent, and to whom, is the router's (core/events.h). */
#pragma once

#include "core/filter.h"
#include "core/registry.h"

#include <glib.h>
#include <stdbool.h>

struct watch_room;

struct watch {
	char *id;              /* the watch_id; NULL for presence */
	void *owner;           /* the watcher's connection */
	const struct peer *self; /* the watcher: never in its own set */
	struct filter *filter; /* NULL: presence, every peer */
	struct watch_room *wr;
	GPtrArray *filed;      /* the index entries it is filed under */
	bool anchored;         /* filed under anchors, not with everyone */
	guint mark;            /* de-duplication of candidates */
	guint member;          /* watch_mark_members() */
};

/* A new watch in ROOM (taking FILTER; NULL: presence), its set empty
 * (watch_fill).  ID is copied. */
struct watch *watch_add(struct room *room, void *owner, const struct peer *self, const char *id,
			struct filter *filter);
/* Puts in W's set every peer of its room its filter matches: 0, or
 * -E2BIG when that needed more than the filter's budget (W stays empty). */
int watch_fill(struct watch *w);
/* Takes W out of its members' lists and the indexes and frees it; the
 * room's index goes with its last watch. */
void watch_remove(struct watch *w);
/* Watches in ROOM, presence subscriptions included: each change of a
 * peer may cost one event per watch. */
unsigned watch_room_count(const struct room *room);

/* The watches a peer P joining its room may concern: every presence
 * subscription, and the filter watches filed under something P has or
 * under nothing.  Each once; P's own are the caller's to skip. */
void watch_candidates(const struct peer *p, GPtrArray *out);
/* The filter watches of P's room that read something that differs
 * between OLD and NEW metadata (P's update), and that hold P or may take
 * it in (filed under the change with something it has now, or with
 * nothing).  Each once. */
void watch_readers(const struct peer *p, const struct meta *old, const struct meta *new,
		   GPtrArray *out);
/* The presence subscriptions of P's room. */
void watch_presence(const struct peer *p, GPtrArray *out);

/* Whether W's filter matches a peer of ROLE with metadata M.  *LOST: the
 * filter needed more than its budget (the watch cannot be kept). */
bool watch_matches(struct watch *w, const char *role, const struct meta *m, bool *lost);

/* P's membership of W's set. */
bool watch_holds(const struct watch *w, const struct peer *p);
void watch_hold(struct watch *w, struct peer *p);
void watch_release(struct watch *w, struct peer *p);
/* Marks the watches P is in, so that watch_marked() answers
 * watch_holds() for them in O(1) until the next mark of the room. */
void watch_mark_members(struct peer *p);
bool watch_marked(const struct watch *w);
