/* cluster: peers shared across rtcsignald instances through Redis.
 *
 * The edge between one instance and the others (docs/cluster-design.md):
 * it announces the instance's own peers into per-room Redis hashes (atomic
 * Lua scripts, with per-room sequence numbers published on the room's
 * channel), keeps replicated views of watched rooms, carries addressed
 * messages as one PUBLISH to the target instance's channel, keeps the
 * instance alive with a TTL key and sweeps dead instances' peers, and
 * survives Redis outages (degraded, then re-announce and reload).
 *
 * Everything runs on the caller's libuv loop through hiredis's libuv
 * adapter (one connection for commands, one for subscriptions); no call
 * blocks.  Callbacks (struct cluster_ops) run on that loop. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct cluster;

/* Why a cross-instance delivery failed (CLUSTER_OK: it did not). */
enum cluster_reason {
	CLUSTER_OK = 0,
	CLUSTER_GONE,        /* no such session there (any more), or no such instance */
	CLUSTER_QUEUE_FULL,  /* the target's outbound queue is full */
	CLUSTER_CLOSING,     /* the target session is closing */
	CLUSTER_UNREACHABLE, /* Redis is down: nothing can cross */
	CLUSTER_TOO_LARGE,   /* over max_payload */
	CLUSTER_BUSY,        /* max_outstanding commands in flight */
	CLUSTER_REASON__COUNT
};
const char *cluster_reason_name(enum cluster_reason r);

/* One peer as Redis holds it.  Strings must not contain '\n' (they
 * separate fields on the wire), except meta, which is JSON text. */
struct cluster_peer {
	const char *room;
	const char *peer;
	const char *instance; /* the owner; ignored by cluster_announce */
	const char *role;
	const char *meta;     /* public metadata, JSON text ("{}" if none) */
	/* Who registered it: an opaque tag (a hash of the principal, never
	 * the principal itself), "" or NULL for anyone (authentication off).
	 * Only the same tag may take the id over from another session. */
	const char *principal;
	int64_t connected_at; /* milliseconds since the epoch */
	uint64_t epoch;       /* the session's epoch (cluster_new_epoch) */
	/* cluster_announce only, checked in the same atomic step as the
	 * claim: a new id is refused when the room has MAX_PEERS (0: no
	 * bound); ADMIN asks for the room's admin seat. */
	unsigned max_peers;
	bool admin;
};

/* The answer to a new session's claim (cluster_ops.claimed). */
enum cluster_claim {
	CLUSTER_CLAIMED,     /* the id is ours (or Redis could not answer: as if down) */
	CLUSTER_CLAIM_TAKEN, /* another principal's session holds the id */
	CLUSTER_CLAIM_FULL,  /* the room has max_peers peers */
};

/* Callbacks must not free the cluster, nor unwatch the room they are
 * told about, from inside; view_ready alone may (it is the view's last
 * act), and its ROOM is freed then: copy it first. */
struct cluster_ops {
	/* Redis reachable and this instance announced (true), or lost (false). */
	void (*state)(void *user, bool up);
	/* A watched room's view finished loading (status 0), on every load. */
	void (*view_ready)(void *user, const char *room, int status);
	/* A peer of another instance joined a watched room or changed. */
	void (*peer_upsert)(void *user, const struct cluster_peer *p);
	/* A peer of another instance left a watched room; WHY as its
	 * instance said (cluster_withdraw), "timeout" when that died. */
	void (*peer_remove)(void *user, const char *room, const char *peer, const char *instance,
			    const char *why);
	/* Our session (room, peer, epoch) lost its id to BY_INSTANCE: evict it.
	 * It is no longer announced; do not withdraw it. */
	void (*replaced)(void *user, const char *room, const char *peer, uint64_t epoch,
			 const char *by_instance);
	/* The claim of our new session (room, peer, epoch) was answered; a
	 * refused one is no longer announced (do not withdraw it).  ADMIN:
	 * the peer id that holds the admin seat asked for, NULL if it is
	 * ours now (or was not asked for). */
	void (*claimed)(void *user, const char *room, const char *peer, uint64_t epoch,
			enum cluster_claim res, const char *admin);
	/* A message for our session TO_PEER (EPOCH as the sender's view knew
	 * it); CLUSTER_OK if queued, else why not (sent back to the sender). */
	enum cluster_reason (*deliver)(void *user, const char *to_peer, uint64_t epoch,
				       const char *from_instance, const char *from_peer,
				       const char *bytes, size_t len);
	/* A message FROM_PEER (ours) sent to TO_PEER with TAG (as given to
	 * cluster_forward) did not arrive. */
	void (*delivery_failed)(void *user, const char *from_peer, const char *to_peer, const char *tag,
				enum cluster_reason why);
};

struct cluster_options {
	const char *redis;        /* redis://HOST:PORT[/DB] or unix:/PATH */
	const char *password;     /* AUTH, or NULL */
	const char *key_prefix;   /* NULL: "rtcsignald:" */
	const char *instance_id;  /* required; no '\n', '{' or '}' */
	unsigned instance_ttl_ms; /* 0: 10000 */
	size_t max_payload;       /* forward's bound (max_message_size); 0: 65536 */
	unsigned max_outstanding; /* forwards in flight before CLUSTER_BUSY; 0: 10000 */
	unsigned max_buffered_events; /* per room while its view loads; 0: 10000 */
	unsigned reconnect_max_ms;    /* backoff ceiling; 0: 1000 */
};

/* Starts connecting at once; returns -EINVAL for bad options. */
int cluster_new(uv_loop_t *loop, const struct cluster_options *o, const struct cluster_ops *ops,
		void *user, struct cluster **out);
/* Disconnects without touching Redis (peers stay until they are swept
 * or withdrawn); the loop must run on for the handles to close.  No
 * callback runs from here on. */
void cluster_free(struct cluster *c);

bool cluster_is_up(const struct cluster *c);

/* The live instances and how many peers each owns, as the last sweep saw
 * them (at most min(ttl/4, 500 ms) old; kept through an outage), for
 * "rtcsignalctl status".  Valid until the loop runs on. */
struct cluster_instance_info {
	char *id;
	long long peers;
};
unsigned cluster_instances(const struct cluster *c, const struct cluster_instance_info **out);
const char *cluster_instance(const struct cluster *c);
/* Strictly increasing, time based (microseconds), so a newer session's
 * epoch is larger than an older one's on any instance with a sane clock. */
uint64_t cluster_new_epoch(struct cluster *c);

/* Claims P->peer in P->room for this instance.  A new session wins unless
 * another principal holds the id or the room is full (P->max_peers); the
 * previous owner elsewhere gets "replaced".  Recorded here and announced
 * again after an outage.  0: claimed now, "claimed" follows (always, also
 * when the connection is lost meanwhile); 1: Redis is down, announced
 * once it is back, no "claimed" follows (nor any check: conflicts
 * resolve by epoch then); -EINVAL. */
int cluster_announce(struct cluster *c, const struct cluster_peer *p);
/* New public metadata of our session; no effect if (room, peer, epoch)
 * is not ours (any more).  0, -EINVAL or -ENOENT. */
int cluster_update(struct cluster *c, const char *room, const char *peer, uint64_t epoch,
		   const char *meta);
/* Removes our session, for WHY (a word, told to other instances'
 * peer_remove); a newer session of the same id (here or on another
 * instance) stays.  0 or -ENOENT. */
int cluster_withdraw(struct cluster *c, const char *room, const char *peer, uint64_t epoch,
		     const char *why);

/* Keeps a view of ROOM: 1 if it is already loaded, 0 if loading
 * (view_ready follows), -ENOTCONN if Redis is not up (the view loads,
 * and view_ready follows, once it is). */
int cluster_watch(struct cluster *c, const char *room);
/* Forgets ROOM's view without telling peer_remove for its peers. */
void cluster_unwatch(struct cluster *c, const char *room);
/* Whether ROOM's view is loaded. */
bool cluster_view_ready(const struct cluster *c, const char *room);

/* One message to TO_PEER (session EPOCH) on TO_INSTANCE: one PUBLISH.
 * TAG (no '\n'; NULL: "") comes back with a failure (the router's
 * message type, so the sender is told as it would be on one instance).
 * Messages from one instance arrive in the order sent.  0, or at once
 * -ENOTCONN (Redis down), -EMSGSIZE (over max_payload), -ENOBUFS
 * (max_outstanding), -EINVAL; a failure later comes to delivery_failed. */
int cluster_forward(struct cluster *c, const char *to_instance, const char *to_peer,
		    uint64_t epoch, const char *from_peer, const char *tag, const char *bytes, size_t len);
