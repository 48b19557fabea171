/* router: what each client message means.  Takes decoded messages and the
 * registry, and answers through a sink (send, close) that the transport
 * implements; tests implement it too. */
#pragma once

#include "config.h"
#include "msgbuf.h"
#include "registry.h"
#include "turn.h"

#include <stdbool.h>
#include <stddef.h>

/* A connection as the core sees it; the transport embeds it. */
struct client {
	struct peer *peer; /* NULL until registered */
	bool closing;      /* being closed: its input is ignored */
	char remote[48];   /* address for logs */
};

struct router_ops {
	/* Queues M for C (taking its own reference).  -ENOBUFS when C's
	 * queue bound is exceeded: C is then closed with 1008. */
	int (*send)(void *ctx, struct client *c, struct msgbuf *m);
	/* Closes C with CODE once what is already queued has gone out. */
	void (*close)(void *ctx, struct client *c, int code, const char *reason);
};

#define ROUTER_CLOSE_REPLACED 4001

struct router;

struct router *router_new(const struct config *cfg, struct registry *reg,
			  const struct router_ops *ops, void *ctx);
void router_free(struct router *r);
/* Applies a reloaded configuration (limits, TURN). */
void router_set_config(struct router *r, const struct config *cfg);

/* One complete message from C. */
void router_receive(struct router *r, struct client *c, const char *text, size_t len);
/* C's connection is gone: its registration (if it still owns one) ends. */
void router_disconnect(struct router *r, struct client *c);
