/* watch: who in a room wants to hear about its peers (docs/protocol.md
 * "Presence and watches"), indexed so that a change is shown only to the
 * watches it can concern.
 *
 * A watch is a discovery filter kept alive, or (no filter) a presence
 * subscription.  Each filter watch is filed under its anchors (filter.h:
 * a role, a tag, a property, a property's value that every peer it
 * matches must have); a change of peer P looks up P's own role, tags,
 * properties and values, so a watch P cannot match is never evaluated.
 * Watches with no anchor, and presence, are tried on every change.
 * Membership is not stored: whether P is in a watch's set is the filter
 * applied to P's metadata, before and after a change, so a watch costs
 * its filter and its index entries, whatever the room's size.  Pure data:
 * what is sent, and to whom, is the router's. */
#pragma once

#include "core/filter.h"
#include "core/registry.h"

#include <glib.h>
#include <stdbool.h>

struct watch_room;

struct watch {
	char *id;              /* the watch_id; NULL for presence */
	void *owner;           /* the watcher's connection */
	const struct peer *self; /* the watcher: never told about itself */
	struct filter *filter; /* NULL: presence, every peer */
	struct watch_room *wr;
	GPtrArray *anchors;    /* the index entries it is filed under */
	guint mark;            /* watch_candidates' de-duplication */
};

/* A new watch in ROOM (taking FILTER; NULL: presence).  ID is copied. */
struct watch *watch_add(struct room *room, void *owner, const struct peer *self, const char *id,
			struct filter *filter);
/* Unfiles and frees W; the room's index goes with its last watch. */
void watch_remove(struct watch *w);
/* Filter watches (not presence) in ROOM. */
unsigned watch_room_count(const struct room *room);

/* Appends to OUT the watches of P's room that may match P with metadata
 * OLD or NEW (either NULL): every presence subscription, every watch
 * with no anchor, and those filed under something P has, each once.
 * P's own watches among them are the caller's to skip (watch.self). */
void watch_candidates(const struct peer *p, const struct meta *old, const struct meta *new,
		      GPtrArray *out);

/* Whether W's set holds a peer of ROLE with metadata M.  *LOST: the
 * filter needed more than its budget (the watch cannot be kept). */
bool watch_matches(struct watch *w, const char *role, const struct meta *m, bool *lost);
/* Whether going from OLD to NEW can change W's answer: a property or the
 * tags it reads differ. */
bool watch_reads_change(const struct watch *w, const struct meta *old, const struct meta *new);
