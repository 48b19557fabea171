/* router: what each client message means.  Takes decoded messages and the
 * registry, and answers through a sink (send, close) that the transport
 * implements; tests implement it too. */
#pragma once

#include "addrlimit.h"
#include "auth.h"
#include "config.h"
#include "msgbuf.h"
#include "protocol.h"
#include "registry.h"
#include "rooms.h"
#include "roomsvc.h"
#include "turn.h"

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
	/* PEER is a registration a newer connection took over: this one may
	 * still send as it (a v2.0 worker's first socket after an admin
	 * failover), and is sent nothing more.  PEER->former is this. */
	bool superseded;
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
	/* Closes C with CODE once what is already queued has gone out. */
	void (*close)(void *ctx, struct client *c, int code, const char *reason);
};

#define ROUTER_CLOSE_REPLACED 4001

struct router;

/* Persistent rooms and authentication; both outlive the router. */
struct router_env {
	struct rooms *rooms;
	struct roomsvc *roomsvc;     /* creates rooms (create_room) */
	struct auth *auth;
	struct addrlimit *addrlimit; /* per-address limits */
	struct pubkeys *pubkeys;     /* Ed25519 public keys of accounts */
	struct store *store;         /* where they are written; NULL: memory only */
};

struct router *router_new(const struct config *cfg, struct registry *reg,
			  const struct router_env *env, const struct router_ops *ops, void *ctx);
void router_free(struct router *r);
/* Applies a reloaded configuration (limits, TURN). */
void router_set_config(struct router *r, const struct config *cfg);

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
