/* events: presence and watched discovery, the router's third half
 * (docs/protocol.md "Presence and watches").  What each change of a peer
 * means to the watches of its room (core/watch.h), and the messages that
 * start and end them.  Events go through router_ops.event, within half of
 * the watcher's queue bound: a watcher too slow for them loses the watch
 * (watch_lost), never its connection. */
#pragma once

#include "core/filter.h"
#include "core/protocol.h"
#include "core/router.h"

struct router;

/* P became visible in its room (registered, or another instance's peer
 * appeared); P changed from OLD metadata to its current one; P is about
 * to leave its room for WHY (it is still there). */
void events_joined(struct router *r, struct peer *p);
void events_updated(struct router *r, struct peer *p, const struct meta *old);
void events_left(struct router *r, struct peer *p, enum protocol_gone why);

/* subscribe, unsubscribe, unwatch from registered C. */
void events_handle_subscribe(struct router *r, struct client *c, const struct msg *m);
void events_handle_unwatch(struct router *r, struct client *c, const struct msg *m);
/* C starts its presence subscription (register "events"): false, and C
 * told RATE_LIMITED about M, when its room has watches_per_room. */
bool events_subscribe(struct router *r, struct client *c, const struct msg *m);
/* Whether C may hold one more watch asked for by M (its size, the
 * bounds); if not it is told why. */
bool events_may_watch(struct router *r, struct client *c, const struct msg *m);
/* C's discover_peers with "watch":true: a watch on F (taken) starts,
 * its set the room's peers F matches; returns its id, or NULL (F freed)
 * when finding them needed more than F's budget. */
const char *events_watch(struct router *r, struct client *c, struct filter *f);
/* C's watches and subscription end, untold (it leaves its room). */
void events_end(struct client *c);
