/* router: what each client message means.  A pure core: it takes
 * complete messages and the registry, decides, and hands every action to
 * the edges: sends and closes to the transport (router_ops), and log
 * lines, clock reads, JWT checks, key set waits and room creations to
 * the services (router_services), whose completions come back through
 * router_keys_ready() and router_room_created().  No I/O, no clock, no
 * logging of its own: tests/test-router.c drives it with fakes. */
#pragma once

#include "util/addrlimit.h"
#include "util/config.h"
#include "auth/jwt.h"
#include "util/log.h"
#include "util/msgbuf.h"
#include "core/protocol.h"
#include "core/registry.h"
#include "store/rooms.h"
#include "store/roomsvc.h"
#include "auth/turn.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

struct router_pending;

/* A connection as the core sees it; the transport embeds it. */
struct client {
	struct peer *peer; /* NULL until registered */
	bool closing;      /* being closed: its input is ignored */
	bool addr_known;   /* addr holds the client (not a unix socket) */
	struct netaddr addr; /* the client (behind trusted proxies: theirs) */
	struct router_pending *pending; /* a create_room awaiting the store */
	struct router_parked *parked;   /* a register awaiting its issuer's keys */
	bool answer_waiting; /* an answer over max_queued_bytes is still queued */
	/* What it declared at its last register; until then 2.0.  Once it
	 * has been registered, a 2.0 session is told only the errors the
	 * original v2.0 server sent (docs/protocol.md "v2.0 clients"). */
	enum protocol_version proto;
	bool was_registered;
	unsigned reg_failures; /* failed registers on this connection */
	/* PEER is a registration a newer connection took over: this one may
	 * still send as it (a v2.0 worker's first socket after an admin
	 * failover), and is sent nothing more.  PEER->former is this. */
	bool superseded;
	/* [cluster]: the register whose claim Redis has not answered yet
	 * (PEER->claiming), replayed with the answer. */
	char *claim_text;
	size_t claim_len;
	/* Presence and watches (core/events.h), this connection's. */
	struct watch *presence; /* its presence subscription, if any */
	GPtrArray *watches;     /* of struct watch; NULL until the first */
	unsigned watch_seq;     /* the number in the last watch_id */
	bool timed_out; /* the transport cut it for not answering its pings */
};

/* The client's address for log fields, or NULL. */
static inline const struct netaddr *client_remote(const struct client *c)
{
	return c->addr_known ? &c->addr : NULL;
}

struct router_ops {
	/* Queues M for C (taking its own reference).  -ENOBUFS when C's
	 * queue bound is exceeded: C is then closed with 1008; -EPIPE when C
	 * is closing already or its socket failed. */
	int (*send)(void *ctx, struct client *c, struct msgbuf *m);
	/* The same for an answer to C's own request (registered_auth,
	 * peer_list), which may be as large as a full room's metadata: one
	 * that does not fit within max_queued_bytes is queued anyway, outside
	 * that bound, and C->answer_waiting is set until it has left the
	 * queue.  NULL: send. */
	int (*answer)(void *ctx, struct client *c, struct msgbuf *m);
	/* An event (presence, watches) for C, within half of C's queue
	 * bound, so relayed messages always find room: -ENOBUFS over it, and
	 * C stays open.  FORCE: queued whatever (a watch_lost: one per watch
	 * at most).  NULL: send. */
	int (*event)(void *ctx, struct client *c, struct msgbuf *m, bool force);
	/* Closes C with CODE once what is already queued has gone out. */
	void (*close)(void *ctx, struct client *c, int code, const char *reason);
};

#define ROUTER_CLOSE_REPLACED 4001

struct router;
struct router_pending;

/* What the router asks of the rest of the daemon: it decides, these do
 * (the composition root wires them to auth, the room service, the log
 * and the clocks: routerio.h; tests fake them).  CTX is router_new's. */
struct router_services {
	/* CLOCK_MONOTONIC in nanoseconds (latencies, rate windows), and the
	 * wall clock in microseconds (expiry, TURN, connected_at). */
	uint64_t (*monotonic_ns)(void *ctx);
	gint64 (*real_us)(void *ctx);
	/* A line for the operator, as log_full: FILE, LINE and FUNC are the
	 * router's own (the journal's CODE_FILE names the caller); FMT is
	 * printf's. */
	void (*log)(void *ctx, int prio, enum log_event ev, const struct log_fields *f,
		    const char *file, int line, const char *func, const char *fmt, va_list ap)
		__attribute__((format(printf, 8, 0)));
	/* Whether every register needs a credential (auth_required). */
	bool (*auth_required)(void *ctx);
	/* Verifies a JWT at NOW (seconds), as auth_verify. */
	int (*verify_jwt)(void *ctx, const char *token, gint64 now, struct jwt_claims *claims,
			  enum jwt_error *why, const char **issuer);
	/* When ISSUER's key set is being fetched: 0, and router_keys_ready(P)
	 * runs once that fetch has ended; *WAIT is for cancel_wait.  -EAGAIN
	 * when nothing is in flight. */
	int (*await_keys)(void *ctx, const char *issuer, struct router_parked *p, void **wait);
	void (*cancel_wait)(void *ctx, void *wait);
	/* Asks the room service for a room, as roomsvc_create: 0, and
	 * router_room_created(.., P) runs exactly once (maybe already);
	 * -EINVAL or -EDQUOT with *WHY. */
	int (*create_room)(void *ctx, const struct roomsvc_request *req, struct router_pending *p,
			   const char **why);

	/* [cluster] (docs/operations.md "Running several instances"): all
	 * NULL without one, and then the router runs alone.  Our peers are
	 * announced (the session's new epoch returned), updated and
	 * withdrawn; a room with a peer of ours is watched, and the router
	 * learns of other instances' peers through router_cluster_*(). */
	/* Claims P's id for it (MAX_PEERS: the room's bound; ADMIN: it asks
	 * for the admin seat), its new epoch in *EPOCH: 1 when
	 * router_cluster_claimed() follows, 0 when nothing will answer
	 * (Redis down: it is announced later). */
	int (*cluster_announce)(void *ctx, const struct peer *p, unsigned max_peers, bool admin,
				uint64_t *epoch);
	void (*cluster_update)(void *ctx, const struct peer *p);
	/* WHY: what other instances' watchers are told (peer_left). */
	void (*cluster_withdraw)(void *ctx, const struct peer *p, enum protocol_gone why);
	/* 1: ROOM's view is loaded; 0: loading, router_cluster_view_ready()
	 * follows; -ENOTCONN: Redis is down (the view follows later). */
	int (*cluster_watch)(void *ctx, const char *room);
	void (*cluster_unwatch)(void *ctx, const char *room);
	/* M (as TO's session gets it) from FROM to TO, a peer of another
	 * instance: 0, or -ENOTCONN, -EMSGSIZE, -ENOBUFS at once; a later
	 * failure comes back through router_cluster_delivery_failed(). */
	int (*cluster_forward)(void *ctx, const struct peer *to, const struct peer *from,
			       enum msg_type type, struct msgbuf *m);
};

/* In-memory state the router reads; it outlives the router. */
struct router_env {
	struct rooms *rooms;         /* persistent rooms and API keys */
	struct addrlimit *addrlimit; /* per-address limits */
};

struct router *router_new(const struct config *cfg, struct registry *reg,
			  const struct router_env *env, const struct router_services *svc,
			  void *svc_ctx);
void router_free(struct router *r);
/* The transport: where the router's sends and closes go.  Set once,
 * before the first message. */
void router_set_transport(struct router *r, const struct router_ops *ops, void *ctx);
/* Applies a reloaded configuration (limits, TURN). */
void router_set_config(struct router *r, const struct config *cfg);

/* Completions of what the router asked for (router_services). */
void router_keys_ready(struct router_parked *p);
/* rooms_created_fn, DATA the router_pending. */
void router_room_created(int status, const struct store_room *room, const char *token,
			 const char *why, void *data);

/* [cluster]: what other instances tell, from the cluster's callbacks. */
struct router_remote_peer {
	const char *room, *peer, *instance, *role;
	const char *meta; /* its public metadata, JSON text */
	const char *principal; /* the tag of who registered it (registry_principal_tag) */
	gint64 connected_at; /* milliseconds since the epoch */
	uint64_t epoch;
};
/* ROOM's view loaded (again): registers waiting for it go on. */
void router_cluster_view_ready(struct router *r, const char *room);
void router_cluster_peer_upsert(struct router *r, const struct router_remote_peer *p);
/* WHY: why it left (its instance's word, or timeout when it died). */
void router_cluster_peer_remove(struct router *r, const char *room, const char *peer,
				const char *instance, enum protocol_gone why);
/* The claim of our new session (ROOM, PEER, EPOCH) was answered: its
 * register ends, registered or refused; ADMIN names who holds the admin
 * seat it asked for, NULL if it got it. */
enum router_claim_result { ROUTER_CLAIMED, ROUTER_CLAIM_TAKEN, ROUTER_CLAIM_FULL };
void router_cluster_claimed(struct router *r, const char *room, const char *peer, uint64_t epoch,
			    enum router_claim_result res, const char *admin);
/* Our session (ROOM, PEER, EPOCH) lost its id to another instance. */
void router_cluster_replaced(struct router *r, const char *room, const char *peer, uint64_t epoch);
/* A message for our session EPOCH (TO_PEER): 0, or -ENOENT (no such
 * session), -ENOBUFS (its queue is full), -EPIPE (it is closing). */
int router_cluster_deliver(struct router *r, const char *to_peer, uint64_t epoch, const char *bytes,
			   size_t len);
/* A message of TYPE (cluster_forward's) our FROM_PEER sent to TO_PEER did
 * not arrive: WHY.  The sender is told as a same-instance failure tells. */
void router_cluster_delivery_failed(struct router *r, const char *from_peer, const char *to_peer,
				    enum msg_type type, const char *why);

/* Open mode: no issuer and no API key configured, so no authentication. */
bool router_open_mode(struct router *r);

/* Tells C it is over its message rate. */
void router_rate_limited(struct router *r, struct client *c);
/* The server is stopping and C is about to be closed with 1001: a session
 * that declared 2.1 gets SERVER_SHUTTING_DOWN; others are not told (the
 * original server sent nothing), only counted. */
void router_shutting_down(struct router *r, struct client *c);

/* One complete message from C.  UTF8: the transport has checked that TEXT
 * is UTF-8 (lws does for text frames, not for binary ones); only then may
 * the fast path, which forwards strings as written, take it. */
void router_receive(struct router *r, struct client *c, const char *text, size_t len, bool utf8);
/* C's connection is gone: its registration (if it still owns one) ends. */
void router_disconnect(struct router *r, struct client *c);

/* The peers of ROOM_ID get {"type":"room_closed",...,"reason":REASON} and
 * are disconnected; returns how many. */
unsigned router_close_room(struct router *r, const char *room_id, const char *reason);
/* The sessions registered as PRINCIPAL (a revoked API key) get AUTH_FAILED
 * with REASON and are disconnected; returns how many. */
unsigned router_close_principal(struct router *r, const char *principal, const char *reason);
